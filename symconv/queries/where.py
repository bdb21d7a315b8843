"""Constraints on a query: ``"N<=8, H==W, dtype==float16, not mkldnn_enabled"``.

Items are separated by commas (all must hold). An item is either

* a categorical fact at the top level: ``dtype == float16``, ``device != cuda``,
  ``input_mf == channels_last``, ``transposed``, ``not nnpack_enabled``, ``num_threads == 1``;
* an integer formula over sizes and parameters: comparisons (chains allowed), ``and``, ``or``,
  ``not``, ``+ - * // %`` and integer literals. Names: ``N, C, L | D, H, W`` (input),
  ``Cout, Cg, kL | kD, kH, kW`` (weight: ``[Cout, Cg, k...]``, or ``[C, Cg, k...]`` when
  transposed, where ``Cout`` means ``Cg*G``), ``strideH, padH, dilH, opadH`` (per spatial dim),
  ``G`` (groups).

A name that exists only for some numbers of dims (``D`` is 3-D only) restricts the query to them.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Any
from collections.abc import Sequence

import torch
import z3

from .. import domain as D
from ..spec import MKLDNN_LAYOUT
from . import solve
from .space import FLAG_VARS, SPATIAL, Structure

__all__ = ["Where", "WhereError", "parse_where", "INT_NAMES", "CATEGORICAL",
           "require_satisfiable"]


class WhereError(ValueError):
    """A malformed or contradictory constraint."""


_DTYPES = {"float32": torch.float32, "float": torch.float32, "fp32": torch.float32,
           "float64": torch.float64, "double": torch.float64, "float16": torch.float16,
           "half": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16}
_MFS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last,
        "channels_last_3d": torch.channels_last_3d}
_LAYOUTS = {"strided": torch.strided, "mkldnn": MKLDNN_LAYOUT}
_DEVICES = {"cpu": "cpu", "cuda": "cuda", "mps": "mps", "meta": "meta"}
_BOOLS = {"true": True, "false": False, "1": True, "0": False}

# categorical name -> value parser
CATEGORICAL: dict[str, dict[str, Any]] = {
    "dtype": _DTYPES, "device": _DEVICES, "layout": _LAYOUTS, "input_mf": _MFS,
    "memory_format": _MFS, "weight_mf": _MFS, "requires_grad": _BOOLS, "transposed": _BOOLS,
    "dims": {"1": 1, "2": 2, "3": 3},
    "cudnn_depthwise_kernel": {"auto": "auto", "cudnn": "cudnn", "native": "native"},
}
for _f in FLAG_VARS:
    if _f not in CATEGORICAL and _f != "num_threads":
        CATEGORICAL[_f] = _BOOLS
_ALIASES = {"memory_format": "input_mf"}
_BOOL_NAMES = {k for k, v in CATEGORICAL.items() if v is _BOOLS}


def _int_names() -> set:
    out = {"N", "C", "Cout", "Cg", "G"}
    for sp in SPATIAL.values():
        for x in sp:
            out |= {x, "k" + x, "stride" + x, "pad" + x, "dil" + x, "opad" + x}
    return out


INT_NAMES = frozenset(_int_names())


@dataclasses.dataclass
class Where:
    text: str
    restrict: dict            # categorical var -> tuple of allowed values
    items: list               # integer constraints: (source text, ast node)
    threads: list             # (op, value) constraints on num_threads

    def names(self) -> set:
        out = set()
        for _, node in self.items:
            out |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        return out

    def applies_to(self, st: Structure) -> bool:
        known = st.names()
        return all(n in known for n in self.names())

    def formula(self, st: Structure):
        """The integer constraints as one Z3 term over the structure's symbols."""
        names = st.names()
        terms = [_to_z3(node, names) for _, node in self.items]
        if not terms:
            return z3.BoolVal(True)
        return terms[0] if len(terms) == 1 else z3.And(*terms)

    def thread_values(self, values: Sequence[int]) -> tuple:
        out = []
        for v in values:
            if all(_cmp(op, v, x) for op, x in self.threads):
                out.append(v)
        return tuple(out)

    def __bool__(self) -> bool:
        return bool(self.restrict or self.items or self.threads)


def _cmp(op, a, b) -> bool:
    return {ast.Eq: a == b, ast.NotEq: a != b, ast.Lt: a < b, ast.LtE: a <= b, ast.Gt: a > b,
            ast.GtE: a >= b}[type(op)]


def _split(text: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [x.strip() for x in out if x.strip()]


def parse_where(where: str | Sequence[str] | None) -> Where:
    """Parse constraints; raises :class:`WhereError` naming the bad item."""
    if where is None:
        return Where("", {}, [], [])
    if isinstance(where, str):
        texts = [where]
    elif isinstance(where, (list, tuple)) and all(isinstance(t, str) for t in where):
        texts = list(where)
    else:
        raise TypeError(f"where must be a string or a list of strings, got {where!r:.80}")
    items: list = []
    for t in texts:
        items.extend(_split(str(t)))
    restrict: dict = {}
    ints: list = []
    threads: list = []
    for item in items:
        node = _parse_item(item)
        cat = _categorical(node, item)
        if cat is not None:
            name, allowed = cat
            if name == "num_threads":
                threads.extend(allowed)
                continue
            prev = restrict.get(name)
            restrict[name] = tuple(v for v in allowed if prev is None or v in prev)
            if not restrict[name]:
                raise WhereError(f"the constraints contradict each other: nothing satisfies "
                                 f"every constraint on {name}")
            continue
        _check_int(node, item)
        ints.append((item, node))
    text = ", ".join(items)
    return Where(text, restrict, ints, threads)


def require_satisfiable(where: Where, structures: Sequence[Structure]) -> None:
    """Raise :class:`WhereError` when the integer constraints hold for no call of any of the
    structures: sizes are non-negative and every value is an int64 (``N >= 4, N <= 2`` or
    ``N < 0`` describe no call at all). An undecided check (solver limit) is not a
    contradiction."""
    if not where.items:
        return
    for st in structures:
        s = solve.new_solver()
        s.add(*[st.symbols[n] >= 0 for n in st.sizes])
        s.add(*[z3.And(x >= -D.INT64_MAX - 1, x <= D.INT64_MAX) for x in st.symbols.values()])
        s.add(where.formula(st))
        if solve.verdict(s)[0] != "unsat":
            return
    raise WhereError(f"the constraints contradict each other: no sizes satisfy {where.text!r}")


MAX_ITEM_CHARS = 1000  # one constraint; longer ones are refused before Python parses them
MAX_DEPTH = 60  # nesting of one constraint's syntax tree (the translation to Z3 recurses)


def _parse_item(item: str) -> ast.AST:
    if len(item) > MAX_ITEM_CHARS:
        raise WhereError(f"constraint {item[:40]!r}... is {len(item)} characters long; at most "
                         f"{MAX_ITEM_CHARS}")
    try:
        node = ast.parse(item, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # ValueError: a null byte or an integer literal of too many digits
        raise WhereError(f"cannot parse {item!r}") from None
    depth = 0
    stack: list[tuple[ast.AST, int]] = [(node, 1)]
    while stack:
        n, d = stack.pop()
        depth = max(depth, d)
        if depth > MAX_DEPTH:
            raise WhereError(f"{item!r} is nested too deeply (at most {MAX_DEPTH} levels)")
        stack.extend((c, d + 1) for c in ast.iter_child_nodes(n))
    return node


def _value(node: ast.AST, name: str, item: str) -> Any:
    table = CATEGORICAL[name]
    if isinstance(node, ast.Name):
        key = node.id
    elif isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, str)):
        key = str(node.value)
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
            node.value.id == "torch":
        key = node.attr
    else:
        raise WhereError(f"{item!r}: expected a value of {name}")
    k = key.lower() if table is _BOOLS else key
    if k not in table:
        raise WhereError(f"{item!r}: unknown {name} {key!r}; expected one of: "
                         + ", ".join(dict.fromkeys(table)))
    return table[k]


def _all_values(name: str) -> list:
    return list(dict.fromkeys(CATEGORICAL[name].values()))


def _categorical(node: ast.AST, item: str):
    """``(var, allowed values)`` for a top-level categorical item, else ``None``."""
    if isinstance(node, ast.Name) and node.id in _BOOL_NAMES:
        return _ALIASES.get(node.id, node.id), (True,)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) and \
            isinstance(node.operand, ast.Name) and node.operand.id in _BOOL_NAMES:
        return node.operand.id, (False,)
    if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name):
        name = node.left.id
        if name == "num_threads":
            out = []
            for op, comp in zip(node.ops, node.comparators):
                if not (isinstance(comp, ast.Constant) and type(comp.value) is int):
                    raise WhereError(f"{item!r}: num_threads is compared with an integer")
                out.append((op, comp.value))
            return "num_threads", out
        if name in CATEGORICAL:
            if len(node.ops) != 1:
                raise WhereError(f"{item!r}: one comparison per categorical fact")
            op, comp = node.ops[0], node.comparators[0]
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(comp, (ast.Tuple, ast.List, ast.Set)):
                    raise WhereError(f"{item!r}: 'in' needs a list of values")
                vals = [_value(e, name, item) for e in comp.elts]
                allowed = vals if isinstance(op, ast.In) else \
                    [v for v in _all_values(name) if v not in vals]
            elif isinstance(op, (ast.Eq, ast.NotEq)):
                v = _value(comp, name, item)
                allowed = [v] if isinstance(op, ast.Eq) else \
                    [x for x in _all_values(name) if x != v]
            else:
                raise WhereError(f"{item!r}: {name} is compared with ==, != or in")
            return _ALIASES.get(name, name), tuple(allowed)
    return None


_ALLOWED = (ast.Compare, ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.Name, ast.Constant, ast.And,
            ast.Or, ast.Not, ast.USub, ast.UAdd, ast.Add, ast.Sub, ast.Mult, ast.FloorDiv,
            ast.Mod, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Load)


def _check_int(node: ast.AST, item: str) -> None:
    for n in ast.walk(node):
        if not isinstance(n, _ALLOWED):
            raise WhereError(f"{item!r}: {type(n).__name__} is not allowed (use comparisons, "
                             "and/or/not, + - * // % and integers)")
        if isinstance(n, ast.Name):
            if n.id in CATEGORICAL or n.id == "num_threads":
                raise WhereError(f"{item!r}: {n.id} is a categorical fact; constrain it on its "
                                 f"own, e.g. '{n.id} == ...'")
            if n.id not in INT_NAMES:
                raise WhereError(f"{item!r}: unknown name {n.id!r}; sizes and parameters are "
                                 + ", ".join(sorted(INT_NAMES)))
        if isinstance(n, ast.Constant) and type(n.value) is not int:
            raise WhereError(f"{item!r}: only integer literals are allowed, got {n.value!r}")
    if _kind(node, item) != "bool":
        raise WhereError(f"{item!r} is not a condition (compare it, e.g. 'N <= 8')")


def _kind(node: ast.AST, item: str) -> str:
    """``"int"`` or ``"bool"``: and/or/not take conditions, comparisons and arithmetic take
    integers (Z3 would refuse the mix with a sort error)."""
    def need(n, want):
        got = _kind(n, item)
        if got != want:
            part = ast.unparse(n)
            raise WhereError(f"{item!r}: {part!r} is " + ("a condition where an integer is "
                             "expected" if got == "bool" else "an integer where a condition "
                             "is expected (compare it, e.g. 'N <= 8')"))
    if isinstance(node, (ast.Name, ast.Constant)):
        return "int"
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            need(node.operand, "bool")
            return "bool"
        need(node.operand, "int")
        return "int"
    if isinstance(node, ast.BinOp):
        need(node.left, "int")
        need(node.right, "int")
        if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and isinstance(node.right, ast.Constant) \
                and node.right.value == 0:
            raise WhereError(f"{item!r}: division by zero")
        return "int"
    if isinstance(node, ast.BoolOp):
        for v in node.values:
            need(v, "bool")
        return "bool"
    if isinstance(node, ast.Compare):
        for v in [node.left] + list(node.comparators):
            need(v, "int")
        return "bool"
    raise WhereError(f"{item!r}: {type(node).__name__} is not allowed")  # pragma: no cover


def _to_z3(node: ast.AST, names: dict):
    if isinstance(node, ast.Constant):
        return z3.IntVal(node.value)
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.UnaryOp):
        v = _to_z3(node.operand, names)
        if isinstance(node.op, ast.Not):
            return z3.Not(v)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        a, b = _to_z3(node.left, names), _to_z3(node.right, names)
        op = type(node.op)
        if op is ast.Add:
            return a + b
        if op is ast.Sub:
            return a - b
        if op is ast.Mult:
            return a * b
        if op is ast.FloorDiv:  # Python floor division
            return z3.If(b > 0, a / b, (-a) / (-b))
        return a - b * z3.If(b > 0, a / b, (-a) / (-b))
    if isinstance(node, ast.BoolOp):
        vals = [_to_z3(v, names) for v in node.values]
        return z3.And(*vals) if isinstance(node.op, ast.And) else z3.Or(*vals)
    if isinstance(node, ast.Compare):
        terms = []
        left = _to_z3(node.left, names)
        for cmp, comp in zip(node.ops, node.comparators):
            right = _to_z3(comp, names)
            terms.append({ast.Eq: left == right, ast.NotEq: left != right, ast.Lt: left < right,
                          ast.LtE: left <= right, ast.Gt: left > right,
                          ast.GtE: left >= right}[type(cmp)])
            left = right
        return terms[0] if len(terms) == 1 else z3.And(*terms)
    raise WhereError(f"unsupported expression {ast.dump(node)}")  # pragma: no cover
