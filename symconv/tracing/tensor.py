"""Symbolic sizes and the symbolic tensor the tracer runs a model's forward on.

* :class:`SymInt` wraps a Z3 integer term. Arithmetic builds terms (Python floor semantics for
  ``//`` and ``%``, through :mod:`symconv.domain`); comparisons give a :class:`SymBool`.
* :class:`SymBool`'s ``__bool__`` is a branch of the model's Python code: it asks the running
  engine (:mod:`symconv.tracing.engine`), which decides it under the path condition, or forks.
* :class:`STensor` is a ``torch.Tensor`` wrapper subclass without data (so ``isinstance(x,
  torch.Tensor)`` holds in model code): ``shape``/``size()``/``dim()`` answer with ints and
  SymInts, every torch function reaches :func:`symconv.tracing.engine.dispatch` through
  ``__torch_function__``, and nothing ever reaches a kernel (``__torch_dispatch__`` refuses).

Concrete sizes stay plain ``int`` everywhere: a term that Z3 simplifies to a literal becomes an
``int``.
"""

from __future__ import annotations

from typing import Any

import torch
import z3

from .. import domain as D
from z3.z3 import _to_expr_ref

__all__ = ["SymInt", "SymBool", "SymSize", "STensor", "UnsupportedOp", "TraceError", "zexpr",
           "wrap", "is_sym", "STATE"]


class TraceError(Exception):
    """The tracer cannot give an exact answer for this model (path cap, pinned size, ...)."""


class UnsupportedOp(TraceError):
    """An op without a rule: ``unsupported op X at layer Y``."""


class _State:
    """The run the symbolic values report to (set by the engine while a forward runs)."""

    run: Any = None


STATE = _State()


def zexpr(x: Any):
    """The Z3 term of an int, a SymInt, a bool or a SymBool."""
    if isinstance(x, SymInt):
        return x.e
    if isinstance(x, SymBool):
        return x.e
    if isinstance(x, bool):
        return z3.BoolVal(x)
    if isinstance(x, int):
        return z3.IntVal(x)
    if isinstance(x, z3.ExprRef):
        return x
    raise TypeError(f"not a size: {x!r} ({type(x).__name__})")


def decided_check(cond: Any, error: type, message: Any):
    """A check's condition simplified: ``None`` when it always passes; raises ``error(message())``
    when it always fails; else the Z3 condition to record."""
    c = zexpr(cond) if not isinstance(cond, bool) else z3.BoolVal(cond)
    c = z3.simplify(c)
    if z3.is_true(c):
        return None
    if z3.is_false(c):
        raise error(message())
    return c


def wrap(e: Any) -> Any:
    """A Z3 integer term as an int (literal) or a SymInt; Z3 booleans as bool or SymBool."""
    if isinstance(e, (int, bool)):
        return e
    if isinstance(e, (SymInt, SymBool)):
        return e
    e = z3.simplify(e)
    if z3.is_int_value(e):
        return e.as_long()
    if z3.is_true(e):
        return True
    if z3.is_false(e):
        return False
    if z3.is_bool(e):
        return SymBool(e)
    return SymInt(e)


def zsub(t, *pairs):
    """``z3.substitute(t, *pairs)`` without z3's debug-mode argument assertions (they cost more
    than the substitution itself on every call of a trace)."""
    n = len(pairs)
    if n == 0:
        return t
    frm = (z3.Ast * n)()
    to = (z3.Ast * n)()
    for i, (a, b) in enumerate(pairs):
        frm[i] = a.as_ast()
        to[i] = b.as_ast()
    return _to_expr_ref(z3.Z3_substitute(t.ctx.ref(), t.as_ast(), n, frm, to), t.ctx)


def is_sym(x: Any) -> bool:
    return isinstance(x, (SymInt, SymBool))


def _other(x: Any):
    if isinstance(x, (SymInt, int)) and not isinstance(x, bool):
        return zexpr(x)
    if isinstance(x, bool):
        return z3.IntVal(int(x))
    return None


class SymInt:
    """A symbolic size (a Z3 Int term). Behaves like a Python int in model code."""

    __slots__ = ("e",)

    def __init__(self, e):
        self.e = e

    # arithmetic -------------------------------------------------------------------
    def _bin(self, o, f):
        oe = _other(o)
        if oe is None:
            return NotImplemented
        return wrap(f(self.e, oe))

    def __add__(self, o):
        return self._bin(o, lambda a, b: a + b)

    def __radd__(self, o):
        return self._bin(o, lambda a, b: b + a)

    def __sub__(self, o):
        return self._bin(o, lambda a, b: a - b)

    def __rsub__(self, o):
        return self._bin(o, lambda a, b: b - a)

    def __mul__(self, o):
        return self._bin(o, lambda a, b: a * b)

    def __rmul__(self, o):
        return self._bin(o, lambda a, b: b * a)

    def __floordiv__(self, o):
        return self._bin(o, floordiv_z)

    def __rfloordiv__(self, o):
        return self._bin(o, lambda a, b: floordiv_z(b, a))

    def __mod__(self, o):
        return self._bin(o, floormod_z)

    def __rmod__(self, o):
        return self._bin(o, lambda a, b: floormod_z(b, a))

    def __neg__(self):
        return wrap(-self.e)

    def __pos__(self):
        return self

    def __abs__(self):
        return wrap(z3.If(self.e >= 0, self.e, -self.e))

    def __pow__(self, o):
        if isinstance(o, int) and not isinstance(o, bool) and o >= 0:
            r = z3.IntVal(1)
            for _ in range(o):
                r = r * self.e
            return wrap(r)
        return NotImplemented

    def __truediv__(self, o):
        raise TraceError(f"true division of the symbolic size {self} gives a float: the tracer "
                         "keeps sizes integer (use // in shape arithmetic)")

    __rtruediv__ = __truediv__

    # comparisons ------------------------------------------------------------------
    def _cmp(self, o, f):
        oe = _other(o)
        if oe is None:
            return NotImplemented
        r = wrap(f(self.e, oe))
        return bool(r) if STATE.run is not None else r

    def __eq__(self, o):
        if isinstance(o, float):
            if not o.is_integer():
                return False
            o = int(o)
        elif not isinstance(o, (int, SymInt)):
            return False
        return self._cmp(o, lambda a, b: a == b)

    def __ne__(self, o):
        if isinstance(o, float):
            if not o.is_integer():
                return True
            o = int(o)
        elif not isinstance(o, (int, SymInt)):
            return True
        return self._cmp(o, lambda a, b: a != b)

    def __lt__(self, o):
        return self._cmp(o, lambda a, b: a < b)

    def __le__(self, o):
        return self._cmp(o, lambda a, b: a <= b)

    def __gt__(self, o):
        return self._cmp(o, lambda a, b: a > b)

    def __ge__(self, o):
        return self._cmp(o, lambda a, b: a >= b)

    def __hash__(self):
        return self.e.hash()

    # conversions --------------------------------------------------------------------
    def __bool__(self):
        return bool(wrap(self.e != 0))

    def __int__(self):
        return _pin(self, "int()")

    def __index__(self):
        # torch's argument parser calls __index__ to type-check int lists before it hands the
        # original objects to __torch_function__: the engine clears the pending pin when the
        # value arrives there; a pin nobody clears is reported at the next op.
        run = STATE.run
        if run is None:
            raise TraceError(f"symbolic size {self} used as an int outside a trace")
        run.pending_index.append(self)
        return 1

    def __float__(self):
        return float(_pin(self, "float()"))

    def __round__(self, n=None):
        return self

    def __trunc__(self):
        return self

    def __floor__(self):
        return self

    def __ceil__(self):
        return self

    def __repr__(self):
        return str(self.e)

    __str__ = __repr__

    def __format__(self, spec):
        return format(str(self), spec)


def _nonzero_divisor(b, message: str) -> None:
    """Python raises ZeroDivisionError for a zero divisor: decided at once for a literal,
    recorded as a check of the path for a symbolic size."""
    if z3.is_int_value(b):
        if b.as_long() == 0:
            raise ZeroDivisionError(message)
        return
    run = STATE.run
    if run is not None:
        run.check(b != 0, ZeroDivisionError, lambda: message)


def floordiv_z(a, b):
    """Python ``a // b`` on Z3 terms (``symconv.domain.floordiv_total``), checking ``b != 0``."""
    _nonzero_divisor(b, "integer division or modulo by zero")
    return D.floordiv_total(a, b)


def floormod_z(a, b):
    """Python ``a % b`` on Z3 terms (``symconv.domain.floormod_total``), checking ``b != 0``."""
    _nonzero_divisor(b, "integer modulo by zero")
    return D.floormod_total(a, b)


def _pin(x: SymInt, what: str) -> int:
    run = STATE.run
    if run is None:
        raise TraceError(f"{what} of the symbolic size {x} outside a trace")
    v = run.fixed_value(x)
    if v is None:
        raise TraceError(f"{what} of the symbolic size {x} at layer {run.layer_name()}: the "
                         "model converts a symbolic size to a Python number, which would pin "
                         "it to one value (a helper in symconv.tracing.helpers can replace such "
                         "code with a branch-free version)")
    return v


class SymBool:
    """A symbolic condition; ``bool()`` of it is a branch the engine decides or forks on."""

    __slots__ = ("e",)

    def __init__(self, e):
        self.e = e

    def __bool__(self):
        run = STATE.run
        if run is None:
            raise TraceError(f"branch on the symbolic condition {self.e} outside a trace")
        return run.decide(self.e)

    def __and__(self, o):
        return wrap(z3.And(self.e, zexpr(o)))

    __rand__ = __and__

    def __or__(self, o):
        return wrap(z3.Or(self.e, zexpr(o)))

    __ror__ = __or__

    def __invert__(self):
        return wrap(z3.Not(self.e))

    def __repr__(self):
        return str(self.e)


class SymSize(tuple):
    """``tensor.shape``: a tuple of ints and SymInts (like ``torch.Size``)."""

    def __getitem__(self, i):
        r = tuple.__getitem__(self, i)
        return SymSize(r) if isinstance(i, slice) else r

    def numel(self):
        r = 1
        for s in self:
            r = r * s
        return r

    def __repr__(self):
        return "torch.Size([" + ", ".join(str(s) for s in self) + "])"


class STensor(torch.Tensor):
    """A tensor with a symbolic shape and no data."""

    @staticmethod
    def __new__(cls, shape, dtype=torch.float32, device="cpu", requires_grad=False,
                contiguous=True):
        r = torch.Tensor._make_wrapper_subclass(cls, (), dtype=dtype, device="meta")
        r._sym_shape = SymSize(shape)
        r._sym_dtype = dtype
        r._sym_device = torch.device(device)
        r._sym_rg = requires_grad
        # layout: the logical dimensions in physical order (outermost first); identity =
        # contiguous; None = unknown (expand, slicing, ...): view of it is refused
        n = len(shape)
        if contiguous is True:
            r._sym_perm = tuple(range(n))
        elif contiguous is False or contiguous is None:
            r._sym_perm = None
        else:
            r._sym_perm = tuple(contiguous)
        r._sym_contig = r._sym_perm == tuple(range(n))
        return r

    def __init__(self, *a, **k):
        pass

    @property
    def shape(self):
        return self._sym_shape

    @property
    def dtype(self):
        return self._sym_dtype

    @property
    def device(self):
        return self._sym_device

    @property
    def ndim(self):
        return len(self._sym_shape)

    @property
    def requires_grad(self):
        return self._sym_rg

    @property
    def is_cuda(self):
        return self._sym_device.type == "cuda"

    @property
    def is_sparse(self):
        return False

    @property
    def is_quantized(self):
        return False

    @property
    def is_nested(self):
        return False

    def size(self, dim=None):
        if dim is None:
            return self._sym_shape
        from .ops import wrap_dim
        return self._sym_shape[wrap_dim(dim, len(self._sym_shape))]

    def dim(self):
        return len(self._sym_shape)

    def ndimension(self):
        return len(self._sym_shape)

    def numel(self):
        return self._sym_shape.numel()

    def nelement(self):
        return self._sym_shape.numel()

    def __len__(self):
        if not self._sym_shape:
            raise TypeError("len() of a 0-d tensor")
        return self._sym_shape[0]

    def __repr__(self):
        return f"STensor({list(self._sym_shape)}, {self._sym_dtype})"

    __str__ = __repr__

    def __hash__(self):
        return id(self)

    def __bool__(self):
        raise TraceError("bool() of a tensor's values: data-dependent control flow cannot be "
                         "traced symbolically")

    def __iter__(self):
        raise TraceError("iterating over a tensor's values is data-dependent")

    def __reduce_ex__(self, proto):
        raise TraceError("symbolic tensors cannot be pickled")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        from .engine import dispatch
        return dispatch(func, args, kwargs or {})

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise TraceError(f"symconv.tracing reached the kernel {func}: an op was not handled "
                         "by its rules")
