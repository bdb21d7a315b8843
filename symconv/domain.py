"""Integer domains: one set of operations over ``int``, SymPy, Z3 and numpy arrays.

Every formula and predicate in symconv is written with the functions of this module only,
so that the same code answers for a plain call (``int``), a symbolic one (SymPy or Z3) and a
vectorised one (numpy ``int64`` arrays, millions of configurations at once).

Conventions
-----------
* Integers: ``int``, ``sympy.Expr`` (integer valued), ``z3.ArithRef`` (sort Int) or
  ``numpy.ndarray`` of ``int64``.
* Booleans: ``bool`` for ints, ``sympy.logic.boolalg.Boolean`` for SymPy, ``z3.BoolRef`` for
  Z3 and ``numpy.ndarray`` of ``bool`` for numpy.
* Mixing SymPy and Z3 in one operation is refused; ints mix with everything.
* C++ semantics: :func:`cdiv` / :func:`cmod` are int64 truncating division and remainder, the
  one place where they are defined. :func:`floordiv` / :func:`floormod` are Python's.
"""

from __future__ import annotations

import functools
import operator
from typing import Any
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import sympy
import z3

__all__ = [
    "INT", "SYMPY", "Z3", "NUMPY", "kind", "is_concrete", "is_symbolic", "cdiv", "cmod",
    "floordiv", "floormod", "floordiv_total", "floormod_total", "cdiv_total",
    "floordiv_size", "floormod_size",
    "min_", "max_", "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_",
    "not_", "ite", "any_", "all_", "prod", "TruncDiv", "TruncMod", "to_z3", "to_sympy",
    "simplify", "substitute", "truth", "INT64_MAX", "INT_MAX", "sym",
]

INT, SYMPY, Z3, NUMPY = "int", "sympy", "z3", "numpy"

INT64_MAX = 2**63 - 1
INT_MAX = 2**31 - 1

_INT_TYPES = (int, np.integer, bool, np.bool_)


def kind(*xs: Any) -> str:
    """The domain of an operation over ``xs``: the "widest" of their domains.

    Raises ``TypeError`` when SymPy and Z3 values meet, or when a value is of no domain.
    """
    k = INT
    for x in xs:
        t = type(x)
        if t is int or t is bool or isinstance(x, _INT_TYPES):
            continue
        if isinstance(x, (z3.ExprRef,)):
            if k == SYMPY:
                raise TypeError("cannot mix SymPy and Z3 values in one formula; convert with "
                                "symconv.domain.to_z3 or to_sympy first")
            if k != NUMPY:
                k = Z3
        elif isinstance(x, sympy.Basic):
            if k == Z3:
                raise TypeError("cannot mix SymPy and Z3 values in one formula; convert with "
                                "symconv.domain.to_z3 or to_sympy first")
            if k != NUMPY:
                k = SYMPY
        elif isinstance(x, np.ndarray):
            if k in (SYMPY, Z3):
                raise TypeError("cannot mix numpy arrays with symbolic values")
            k = NUMPY
        else:
            raise TypeError(f"not an integer or boolean of any domain: {x!r} ({t.__name__})")
    return k


def is_concrete(x: Any) -> bool:
    """True for Python/numpy scalars, and for SymPy/Z3 values that are literal constants."""
    if isinstance(x, _INT_TYPES):
        return True
    if isinstance(x, sympy.Basic):
        return bool(x.is_Integer) or x in (sympy.true, sympy.false)
    if isinstance(x, z3.ExprRef):
        return z3.is_int_value(x) or z3.is_true(x) or z3.is_false(x)
    return False


def is_symbolic(x: Any) -> bool:
    return isinstance(x, (sympy.Basic, z3.ExprRef)) and not is_concrete(x)


_TERM_MEMO: dict = {}


def memo_terms(tag: str, args: Sequence[Any], compute: Callable[[], Any]) -> Any:
    """``compute()``, memoised on ``args`` when they are Z3 terms and ints (at least one term):
    the symbolic queries build the same predicate over the same size terms again and again.
    Other domains (ints alone, SymPy) compute every time. ``compute`` must read nothing but
    ``args`` (a tracked fact read inside it would be skipped on a hit)."""
    key: list = [tag]
    symbolic = False
    for x in args:
        if isinstance(x, z3.ExprRef):
            key.append(x.get_id())
            symbolic = True
        elif type(x) is int:
            key.append(("i", x))
        else:
            return compute()
    if not symbolic:
        return compute()
    k = tuple(key)
    hit = _TERM_MEMO.get(k)
    if hit is None:  # the entry keeps the terms alive, so their ids stay theirs
        hit = _TERM_MEMO[k] = (tuple(args), compute())
    return hit[1]


def clear_term_memo() -> None:
    _TERM_MEMO.clear()


def truth(x: Any) -> bool | None:
    """The Python truth of a boolean when it is decided, else ``None``."""
    if type(x) is bool:
        return x
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if x is sympy.true:
        return True
    if x is sympy.false:
        return False
    if isinstance(x, z3.ExprRef):
        if z3.is_true(x):
            return True
        if z3.is_false(x):
            return False
        return None
    if isinstance(x, sympy.Basic):
        return None
    if isinstance(x, np.ndarray):
        return None
    return bool(x)


def sym(name: str, domain: str = SYMPY) -> Any:
    """A size symbol (a non-negative integer) in the given domain."""
    if domain == SYMPY:
        return sympy.Symbol(name, integer=True, nonnegative=True)
    if domain == Z3:
        return z3.Int(name)
    raise ValueError(f"domain must be 'sympy' or 'z3', got {domain!r}")


# --------------------------------------------------------------------------------------
# SymPy functions for C++ division


def _c_trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _paren(printer: Any, e: Any) -> str:
    text = printer._print(e)
    return text if (e.is_Atom or isinstance(e, sympy.Function)) else f"({text})"


class TruncDiv(sympy.Function):
    """C++ int64 ``a / b`` (rounds toward zero) as a SymPy function."""

    is_integer = True

    @classmethod
    def eval(cls, a: Any, b: Any) -> Any:
        if a.is_Integer and b.is_Integer:
            if b == 0:
                raise ZeroDivisionError("integer division by zero")
            return sympy.Integer(_c_trunc_div(int(a), int(b)))
        if b == 1:
            return a
        if a == 0:
            return sympy.Integer(0)
        if a.is_nonnegative and b.is_positive:
            return sympy.floor(a / b)
        return None

    def _sympystr(self, printer: Any) -> str:
        return f"trunc({_paren(printer, self.args[0])}/{_paren(printer, self.args[1])})"


class TruncMod(sympy.Function):
    """C++ int64 ``a % b`` (sign of the dividend) as a SymPy function."""

    is_integer = True

    @classmethod
    def eval(cls, a: Any, b: Any) -> Any:
        if a.is_Integer and b.is_Integer:
            if b == 0:
                raise ZeroDivisionError("integer modulo by zero")
            return sympy.Integer(int(a) - int(b) * _c_trunc_div(int(a), int(b)))
        if b == 1 or a == 0:
            return sympy.Integer(0)
        if a.is_nonnegative and b.is_positive:
            return sympy.Mod(a, b)
        return None

    def _sympystr(self, printer: Any) -> str:
        return f"cmod({printer._print(self.args[0])}, {printer._print(self.args[1])})"


class Ite(sympy.Function):
    """Integer if-then-else for SymPy without Piecewise's (costly) canonicalisation.

    Folds when the condition is decided or both branches are equal; ``subs`` re-evaluates.
    """

    is_integer = True

    @classmethod
    def eval(cls, c: Any, a: Any, b: Any) -> Any:
        if c is sympy.true:
            return a
        if c is sympy.false:
            return b
        if a == b:
            return a
        return None

    def _sympystr(self, printer: Any) -> str:
        c, a, b = (printer._print(x) for x in self.args)
        return f"({a} if {c} else {b})"


def _z3_nonneg_div(a: Any, b: Any) -> Any:
    """Z3 ``/`` is Euclidean; with a positive divisor it is floor division."""
    return a / b


def _z3_cdiv(a: Any, b: Any) -> Any:
    if isinstance(b, (int, np.integer)) and not isinstance(b, bool) and b != 0:
        a = _z3(a)
        b = int(b)
        if b > 0:
            return z3.If(a >= 0, a / b, -((-a) / b))
        return z3.If(a >= 0, -(a / -b), (-a) / (-b))
    a, b = _z3(a), _z3(b)
    pa = z3.If(a >= 0, a, -a)
    pb = z3.If(b > 0, b, -b)
    q = pa / pb
    return z3.If((a >= 0) == (b > 0), q, -q)


def _z3(x: Any) -> Any:
    if isinstance(x, z3.ExprRef):
        return x
    if isinstance(x, (bool, np.bool_)):
        return z3.BoolVal(bool(x))
    return z3.IntVal(int(x))


def _sp(x: Any) -> Any:
    if isinstance(x, sympy.Basic):
        return x
    if isinstance(x, (bool, np.bool_)):
        return sympy.true if x else sympy.false
    return sympy.Integer(int(x))


# --------------------------------------------------------------------------------------
# Arithmetic


def cdiv(a: Any, b: Any) -> Any:
    """C++ int64 division ``a / b``: truncates toward zero. The only definition in symconv."""
    if type(a) is int and type(b) is int:
        if b == 0:
            raise ZeroDivisionError("integer division by zero")
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b > 0) else -q
    k = kind(a, b)
    if k == INT:
        return cdiv(int(a), int(b))
    if k == SYMPY:
        return TruncDiv(_sp(a), _sp(b))
    if k == Z3:
        return _z3_cdiv(a, b if not isinstance(b, z3.ExprRef) or not z3.is_int_value(b)
                        else b.as_long())
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    bb = np.where(b == 0, 1, b)
    q = np.abs(a) // np.abs(bb)
    return np.where((a >= 0) == (bb > 0), q, -q)


def cmod(a: Any, b: Any) -> Any:
    """C++ int64 remainder ``a % b``: has the sign of ``a``."""
    if type(a) is int and type(b) is int:
        return a - b * cdiv(a, b)
    k = kind(a, b)
    if k == SYMPY:
        return TruncMod(_sp(a), _sp(b))
    if k == Z3:
        a, b = _z3(a), _z3(b)
        return a - b * _z3_cdiv(a, b)
    return a - b * cdiv(a, b)


def floordiv(a: Any, b: Any) -> Any:
    """Python floor division."""
    if type(a) is int and type(b) is int:
        return a // b
    k = kind(a, b)
    if k == SYMPY:
        return sympy.floor(_sp(a) / _sp(b))
    if k == Z3:
        a, b = _z3(a), _z3(b)
        # Euclidean division agrees with floor for b > 0; for b < 0 floor(a/b) = floor(-a/-b).
        return z3.If(b > 0, a / b, (-a) / (-b))
    if k == INT:
        return int(a) // int(b)
    return np.floor_divide(a, b)


def floormod(a: Any, b: Any) -> Any:
    """Python ``%``: has the sign of ``b``."""
    if type(a) is int and type(b) is int:
        return a % b
    k = kind(a, b)
    if k == SYMPY:
        return sympy.Mod(_sp(a), _sp(b))
    if k == Z3:
        a, b = _z3(a), _z3(b)
        return a - b * floordiv(a, b)
    if k == INT:
        return int(a) % int(b)
    return np.mod(a, b)


def _is_pos_literal(b: Any) -> bool:
    if isinstance(b, z3.ExprRef):
        return z3.is_int_value(b) and b.as_long() > 0
    return isinstance(b, (int, np.integer)) and not isinstance(b, bool) and bool(b > 0)


def _zero_guard(b: Any, value: Any) -> Any:
    """``value`` where ``b != 0`` and 0 where ``b == 0`` (symbolic domains)."""
    k = kind(b, value)
    if k == Z3:
        return z3.If(_z3(b) == 0, z3.IntVal(0), _z3(value))
    if k == SYMPY:
        return sympy.Piecewise((sympy.Integer(0), sympy.Eq(_sp(b), 0)), (_sp(value), True))
    return value


def floordiv_total(a: Any, b: Any) -> Any:
    """Python ``a // b`` as a total function of symbols: the value is 0 where ``b == 0``.

    Concrete operands behave as Python (``ZeroDivisionError: integer division or modulo by
    zero``). Symbolic results never contain Z3's or SymPy's unspecified ``x / 0``, so a formula
    built with it is a function of its symbols alone; a caller that divides by a possibly-zero
    size records ``b != 0`` itself (the error Python would raise).
    """
    if type(a) is int and type(b) is int:
        if b == 0:
            raise ZeroDivisionError("integer division or modulo by zero")
        return a // b
    k = kind(a, b)
    if k == INT:
        return floordiv_total(int(a), int(b))
    if k == NUMPY:
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        return np.where(b == 0, 0, np.floor_divide(a, np.where(b == 0, 1, b)))
    if _is_pos_literal(b):
        return _z3(a) / _z3(b) if k == Z3 else floordiv(a, b)
    if k == Z3:
        a, b = _z3(a), _z3(b)
        return z3.If(b == 0, z3.IntVal(0), z3.If(b > 0, a / b, (-a) / (-b)))
    return _zero_guard(b, floordiv(a, b))


def floormod_total(a: Any, b: Any) -> Any:
    """Python ``a % b`` as a total function of symbols: the value is ``a`` where ``b == 0``
    (``a - b * floordiv_total(a, b)``); concrete operands behave as Python
    (``ZeroDivisionError: integer modulo by zero``)."""
    if type(a) is int and type(b) is int:
        if b == 0:
            raise ZeroDivisionError("integer modulo by zero")
        return a % b
    k = kind(a, b)
    if k == INT:
        return floormod_total(int(a), int(b))
    if k == Z3 and _is_pos_literal(b):
        return _z3(a) % _z3(b)
    if k == Z3:
        a, b = _z3(a), _z3(b)
    return a - b * floordiv_total(a, b)


def floordiv_size(a: Any, b: Any) -> Any:
    """:func:`floordiv_total` for a divisor that is >= 0 wherever it matters (a size or a
    product of sizes): Z3 drops the negative-divisor case (``If(b == 0, 0, a / b)``; Z3's
    Euclidean ``/`` is floor division for ``b > 0``). Other domains: :func:`floordiv_total`."""
    if kind(a, b) == Z3 and not _is_pos_literal(b):
        a, b = _z3(a), _z3(b)
        return z3.If(b == 0, z3.IntVal(0), a / b)
    return floordiv_total(a, b)


def floormod_size(a: Any, b: Any) -> Any:
    """:func:`floormod_total` for a divisor that is >= 0 wherever it matters (see
    :func:`floordiv_size`): ``If(b == 0, a, a % b')`` in Z3, ``b'`` being ``b`` made nonzero."""
    if kind(a, b) == Z3 and not _is_pos_literal(b):
        a, b = _z3(a), _z3(b)
        # the divisor is never a literal 0, even after z3.simplify rewrites inside the If
        return z3.If(b == 0, a, a % z3.If(b == 0, z3.IntVal(1), b))
    return floormod_total(a, b)


def cdiv_total(a: Any, b: Any) -> Any:
    """C++ ``a / b`` (:func:`cdiv`) as a total function of symbols: 0 where ``b == 0``.

    Concrete operands raise as :func:`cdiv` does."""
    if type(a) is int and type(b) is int:
        return cdiv(a, b)
    k = kind(a, b)
    if k in (INT, NUMPY) or _is_pos_literal(b):
        return cdiv(a, b)
    return _zero_guard(b, cdiv(a, b))


def min_(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return a if a <= b else b
    k = kind(a, b)
    if k == SYMPY:
        return Ite(sympy.Le(_sp(a), _sp(b)), _sp(a), _sp(b))
    if k == Z3:
        a, b = _z3(a), _z3(b)
        return z3.If(a <= b, a, b)
    if k == INT:
        return min(a, b)
    return np.minimum(a, b)


def max_(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return a if a >= b else b
    k = kind(a, b)
    if k == SYMPY:
        return Ite(sympy.Ge(_sp(a), _sp(b)), _sp(a), _sp(b))
    if k == Z3:
        a, b = _z3(a), _z3(b)
        return z3.If(a >= b, a, b)
    if k == INT:
        return max(a, b)
    return np.maximum(a, b)


def prod(xs: Iterable[Any]) -> Any:
    """Product of sizes (``c10::multiply_integers``)."""
    return functools.reduce(operator.mul, xs, 1)


# --------------------------------------------------------------------------------------
# Comparisons


def _push_ite(a: Any, b: Any, cmp: Any) -> Any:
    """``cmp(Ite(c, x, y), b)`` as ``c ? cmp(x, b) : cmp(y, b)`` when ``b`` is concrete."""
    c, x, y = a.args
    return ite(c, cmp(x, b), cmp(y, b))


def eq(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return a == b
    k = kind(a, b)
    if k == SYMPY:
        if isinstance(a, Ite) and is_concrete(b):
            return _push_ite(a, b, eq)
        if isinstance(b, Ite) and is_concrete(a):
            return _push_ite(b, a, eq)
        return sympy.Eq(_sp(a), _sp(b))
    if k == Z3:
        return _z3(a) == _z3(b)
    if k == INT:
        return bool(a == b)
    return np.asarray(a) == np.asarray(b)


def ne(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return a != b
    k = kind(a, b)
    if k == SYMPY:
        if isinstance(a, Ite) and is_concrete(b):
            return _push_ite(a, b, ne)
        if isinstance(b, Ite) and is_concrete(a):
            return _push_ite(b, a, ne)
        return sympy.Ne(_sp(a), _sp(b))
    if k == Z3:
        return _z3(a) != _z3(b)
    if k == INT:
        return bool(a != b)
    return np.asarray(a) != np.asarray(b)


def _cmp(op: Any, spop: Any) -> Any:
    def f(a: Any, b: Any) -> Any:
        if type(a) is int and type(b) is int:
            return op(a, b)
        k = kind(a, b)
        if k == SYMPY:
            return spop(_sp(a), _sp(b))
        if k == Z3:
            return op(_z3(a), _z3(b))
        if k == INT:
            return bool(op(a, b))
        return op(np.asarray(a), np.asarray(b))
    return f


lt = _cmp(operator.lt, sympy.Lt)
le = _cmp(operator.le, sympy.Le)
gt = _cmp(operator.gt, sympy.Gt)
ge = _cmp(operator.ge, sympy.Ge)
lt.__doc__, le.__doc__, gt.__doc__, ge.__doc__ = "a < b", "a <= b", "a > b", "a >= b"


# --------------------------------------------------------------------------------------
# Logic: short-circuits on decided values, so concrete flags fold away in symbolic formulas.


def and_(*xs: Any) -> Any:
    """Conjunction; ``True`` for no arguments. Decided operands fold away."""
    if all(type(x) is bool for x in xs):
        return all(xs)
    return _junction(xs, False, sympy.And, z3.And, np.logical_and)


def or_(*xs: Any) -> Any:
    """Disjunction; ``False`` for no arguments. Decided operands fold away."""
    if all(type(x) is bool for x in xs):
        return any(xs)
    return _junction(xs, True, sympy.Or, z3.Or, np.logical_or)


def _junction(xs: tuple, absorbing: bool, sp_op: Any, z3_op: Any, np_op: Any) -> Any:
    """``and_`` (absorbing ``False``) or ``or_`` (absorbing ``True``) of operands that are not
    all Python bools: an operand decided to ``absorbing`` decides the result, other decided
    operands drop out, and what is left is combined in its kind's connective."""
    rest = []
    for x in xs:
        t = truth(x)
        if t is absorbing:
            return _like_any(xs, absorbing)
        if t is None:
            rest.append(x)
    if not rest:
        return _like_any(xs, not absorbing)
    if len(rest) == 1:
        return rest[0]
    k = kind(*rest)
    if k == SYMPY:
        # evaluate=False: SymPy's own normalisation of And/Or/Not is exponential on our formulas
        return sp_op(*rest, evaluate=False)
    if k == Z3:
        return z3_op(*rest)
    return functools.reduce(np_op, rest)


def not_(x: Any) -> Any:
    if type(x) is bool:
        return not x
    t = truth(x)
    if t is not None:
        return _like(x, not t)
    if isinstance(x, sympy.Basic):
        if isinstance(x, sympy.Not):
            return x.args[0]
        return sympy.Not(x, evaluate=False)
    if isinstance(x, z3.ExprRef):
        return z3.Not(x)
    return np.logical_not(x)


def any_(xs: Iterable[Any]) -> Any:
    return or_(*xs)


def all_(xs: Iterable[Any]) -> Any:
    return and_(*xs)


def ite(c: Any, a: Any, b: Any) -> Any:
    """If-then-else over integers or booleans."""
    t = truth(c)
    if t is True:
        return a
    if t is False:
        return b
    ta, tb = _bool_truth(a), _bool_truth(b)
    if ta is not None or tb is not None:
        # a boolean ite with a decided branch is a conjunction or disjunction
        if ta is True:
            return or_(c, b)
        if ta is False:
            return and_(not_(c), b)
        if tb is True:
            return or_(not_(c), a)
        return and_(c, a)
    k = kind(c, a, b)
    if k == SYMPY:
        a, b = _sp(a), _sp(b)
        Boolean = sympy.logic.boolalg.Boolean
        if isinstance(a, Boolean) and isinstance(b, Boolean):
            return sympy.ITE(c, a, b, evaluate=False)
        return Ite(c, a, b)
    if k == Z3:
        return z3.If(c, _z3(a), _z3(b))
    return np.where(c, a, b)


def _bool_truth(x: Any) -> Any:
    """truth() for boolean values only (an int 0/1 branch is not a boolean)."""
    if isinstance(x, (bool, np.bool_)) or x is sympy.true or x is sympy.false:
        return truth(x)
    if isinstance(x, z3.BoolRef):
        return truth(x)
    return None


def _like_any(xs: Any, value: bool) -> Any:
    # A decided result stays a Python bool unless an operand is a Z3/SymPy/numpy boolean.
    for x in xs:
        if isinstance(x, z3.ExprRef):
            return z3.BoolVal(value)
        if isinstance(x, np.ndarray):
            return np.full(x.shape, value)
    for x in xs:
        if isinstance(x, sympy.Basic):
            return sympy.true if value else sympy.false
    return value


def _like(x: Any, value: bool) -> Any:
    return _like_any([x], value)


# --------------------------------------------------------------------------------------
# Conversions


def to_z3(e: Any, symbols: dict[str, Any] | None = None) -> Any:
    """Convert a SymPy integer/boolean expression (or an int/bool) into Z3.

    ``symbols`` maps symbol names to Z3 variables; new names become ``z3.Int``.
    """
    if symbols is None:
        symbols = {}
    if isinstance(e, z3.ExprRef):
        return e
    if isinstance(e, (bool, np.bool_)):
        return z3.BoolVal(bool(e))
    if isinstance(e, _INT_TYPES):
        return z3.IntVal(int(e))
    conv = functools.partial(to_z3, symbols=symbols)
    if e is sympy.true:
        return z3.BoolVal(True)
    if e is sympy.false:
        return z3.BoolVal(False)
    if e.is_Symbol:
        if e.name not in symbols:
            symbols[e.name] = z3.Int(e.name)
        return symbols[e.name]
    if e.is_Integer:
        return z3.IntVal(int(e))
    if e.is_Rational:
        raise TypeError(f"not an integer expression: {e}")
    if e.is_Add:
        return functools.reduce(operator.add, [conv(a) for a in e.args])
    if e.is_Mul:
        # integer-valued products may carry rationals only under floor/mod, handled below
        return functools.reduce(operator.mul, [conv(a) for a in e.args])
    if e.is_Pow and e.exp.is_Integer and int(e.exp) >= 0:
        return functools.reduce(operator.mul, [conv(e.base)] * int(e.exp), z3.IntVal(1))
    if isinstance(e, TruncDiv):
        return _z3_cdiv(conv(e.args[0]), conv(e.args[1]))
    if isinstance(e, TruncMod):
        a, b = conv(e.args[0]), conv(e.args[1])
        return a - b * _z3_cdiv(a, b)
    if isinstance(e, sympy.floor):
        num, den = sympy.fraction(sympy.together(e.args[0]))
        return floordiv(conv(num), conv(den))
    if isinstance(e, sympy.Mod):
        return floormod(conv(e.args[0]), conv(e.args[1]))
    if isinstance(e, sympy.Min):
        return functools.reduce(min_, [conv(a) for a in e.args])
    if isinstance(e, sympy.Max):
        return functools.reduce(max_, [conv(a) for a in e.args])
    if isinstance(e, Ite):
        return z3.If(*[conv(a) for a in e.args])
    if isinstance(e, sympy.Piecewise):
        out = None
        for val, cond in reversed(e.args):
            out = conv(val) if out is None else z3.If(conv(cond), conv(val), out)
        return out
    if isinstance(e, sympy.Eq):
        return conv(e.lhs) == conv(e.rhs)
    if isinstance(e, sympy.Ne):
        return conv(e.lhs) != conv(e.rhs)
    if isinstance(e, sympy.StrictLessThan):
        return conv(e.lhs) < conv(e.rhs)
    if isinstance(e, sympy.LessThan):
        return conv(e.lhs) <= conv(e.rhs)
    if isinstance(e, sympy.StrictGreaterThan):
        return conv(e.lhs) > conv(e.rhs)
    if isinstance(e, sympy.GreaterThan):
        return conv(e.lhs) >= conv(e.rhs)
    if isinstance(e, sympy.And):
        return z3.And(*[conv(a) for a in e.args])
    if isinstance(e, sympy.Or):
        return z3.Or(*[conv(a) for a in e.args])
    if isinstance(e, sympy.Not):
        return z3.Not(conv(e.args[0]))
    if isinstance(e, sympy.ITE):
        return z3.If(*[conv(a) for a in e.args])
    raise TypeError(f"cannot convert {type(e).__name__} to Z3: {e}")


def to_sympy(e: Any, symbols: dict[str, Any] | None = None) -> Any:
    """Convert a Z3 integer/boolean expression (or an int/bool) into SymPy.

    Z3's ``div``/``mod`` are Euclidean; they are mapped to floor forms when the divisor is a
    positive literal, and refused otherwise.
    """
    if symbols is None:
        symbols = {}
    if isinstance(e, sympy.Basic):
        return e
    if isinstance(e, (bool, np.bool_)):
        return sympy.true if e else sympy.false
    if isinstance(e, _INT_TYPES):
        return sympy.Integer(int(e))
    conv = functools.partial(to_sympy, symbols=symbols)
    if z3.is_int_value(e):
        return sympy.Integer(e.as_long())
    if z3.is_true(e):
        return sympy.true
    if z3.is_false(e):
        return sympy.false
    if z3.is_const(e) and e.sort() == z3.IntSort():
        name = str(e)
        if name not in symbols:
            symbols[name] = sympy.Symbol(name, integer=True)
        return symbols[name]
    args = [conv(c) for c in e.children()]
    k = e.decl().kind()
    table = {
        z3.Z3_OP_ADD: lambda: sympy.Add(*args),
        z3.Z3_OP_MUL: lambda: sympy.Mul(*args),
        z3.Z3_OP_SUB: lambda: args[0] - sympy.Add(*args[1:]),
        z3.Z3_OP_UMINUS: lambda: -args[0],
        z3.Z3_OP_EQ: lambda: sympy.Eq(*args),
        z3.Z3_OP_DISTINCT: lambda: sympy.Ne(*args),
        z3.Z3_OP_LE: lambda: sympy.Le(*args),
        z3.Z3_OP_LT: lambda: sympy.Lt(*args),
        z3.Z3_OP_GE: lambda: sympy.Ge(*args),
        z3.Z3_OP_GT: lambda: sympy.Gt(*args),
        z3.Z3_OP_AND: lambda: sympy.And(*args),
        z3.Z3_OP_OR: lambda: sympy.Or(*args),
        z3.Z3_OP_NOT: lambda: sympy.Not(*args),
        z3.Z3_OP_ITE: lambda: (sympy.ITE(*args) if isinstance(args[1], sympy.logic.boolalg.Boolean)
                               else sympy.Piecewise((args[1], args[0]), (args[2], True))),
    }
    if k in table:
        return table[k]()
    if k in (z3.Z3_OP_IDIV, z3.Z3_OP_MOD) and args[1].is_Integer and args[1] > 0:
        return sympy.floor(args[0] / args[1]) if k == z3.Z3_OP_IDIV else sympy.Mod(*args)
    raise TypeError(f"cannot convert Z3 term to SymPy: {e}")


def simplify(e: Any) -> Any:
    """Simplify a symbolic value in its own domain; concrete values are returned as they are."""
    if isinstance(e, z3.ExprRef):
        return z3.simplify(e)
    if isinstance(e, sympy.Basic):
        return sympy.simplify(e)
    return e


def substitute(x: Any, values: dict[str, int]) -> Any:
    """``x`` (SymPy or Z3) with the symbols ``values`` names put in: an int or bool when that
    decides it, else the (Z3: simplified) rest. Other values are returned as they are."""
    if isinstance(x, sympy.Basic):
        r = x.subs({s: values[s.name] for s in x.free_symbols if s.name in values})
        if r.is_Integer:
            return int(r)
        if r in (sympy.true, sympy.false):
            return bool(r)
        return r
    if isinstance(x, z3.ExprRef):
        subs = [(z3.Int(k), z3.IntVal(v)) for k, v in values.items()]
        r = z3.simplify(z3.substitute(x, *subs)) if subs else z3.simplify(x)
        if z3.is_int_value(r):
            return r.as_long()
        if z3.is_true(r):
            return True
        if z3.is_false(r):
            return False
        return r
    return x


def wrap64(x: Any) -> Any:
    """C++ int64 wrap-around for plain ints; symbolic values are mathematical integers.

    Used where the seed computes in int64 and large arguments overflow (e.g. ``input + 2 *
    padding`` with padding near 2**62): the int path reproduces torch's wrapped numbers, the
    symbolic path reasons over unbounded integers (see docs/differences.md).
    """
    if type(x) is int:
        if -(2**63) <= x <= INT64_MAX:
            return x
        return ((x + 2**63) % 2**64) - 2**63
    if isinstance(x, np.ndarray):
        return x  # numpy int64 arithmetic already wraps
    return x
