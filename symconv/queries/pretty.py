"""Making rule formulas readable: name well-known sub-predicates, fold memory-format codes.

The predicates of :mod:`symconv.params` are recomputed on a leaf's context; since Z3 shares
identical terms, every occurrence of, say, ``can_use_32bit_index_math(input)`` inside a rule's
formula is the very same term and is replaced by a named atom ("input fits 32-bit indexing").
The abstraction only hides structure: a fact proved about the abstracted formula holds for the
original, so simplifications made on it stay sound.
"""

from __future__ import annotations

from typing import Any

import z3

from .. import domain as D
from ..params import (can_use_32bit_index_math, check_cudnn_depthwise_workload,
                      check_cudnn_depthwise_workload_with_filter)
from ..rules import Ctx
from ..spec import is_channels_last_strides_2d, is_channels_last_strides_3d

__all__ = ["named_terms", "abstract", "fold"]


def _z(x) -> Any:
    if isinstance(x, z3.ExprRef):
        return x
    return None


def named_terms(ctx: Ctx) -> list[tuple[str, Any]]:
    """``(name, z3 term)`` for the sub-predicates worth naming in this context."""
    out: list = []
    inp, w = ctx.input, ctx.weight

    def add(name, fn):
        try:
            t = _z(fn())
        except Exception:  # noqa: BLE001 - a predicate that does not apply here
            return
        if t is not None and not z3.is_const(t) and not z3.is_true(t) and not z3.is_false(t):
            out.append((name, t))

    w0 = "C" if ctx.params.transposed else "Cout"
    add("input fits 32-bit indexing", lambda: can_use_32bit_index_math(inp))
    add("weight fits 32-bit indexing", lambda: can_use_32bit_index_math(w))
    add("needs 64-bit indexing", lambda: ctx.params.needs_64bit_indexing_no_split(inp, w))
    if inp.ndim == 4:
        add("input suggests channels_last",
            lambda: is_channels_last_strides_2d(inp.shape, inp.stride()))
        add("weight suggests channels_last",
            lambda: is_channels_last_strides_2d(w.shape, w.stride()))
        add("the cuDNN depthwise filter table holds",
            lambda: check_cudnn_depthwise_workload_with_filter(inp, ctx.params.stride[1], w))
        add("the cuDNN 7.6 depthwise table holds",
            lambda: check_cudnn_depthwise_workload(inp, ctx.params.stride[0]))
    elif inp.ndim == 5:
        add("input suggests channels_last_3d",
            lambda: is_channels_last_strides_3d(inp.shape, inp.stride()))
        add("weight suggests channels_last_3d",
            lambda: is_channels_last_strides_3d(w.shape, w.stride()))
    try:
        m = _z(D.cmod(w.size(0), inp.size(1)))
        if m is not None:
            out.append((f"{w0} % C", m))
    except Exception:  # noqa: BLE001
        pass
    return out


def abstract(e: Any, names: list[tuple[str, Any]], memo: dict | None = None) -> Any:
    """Replace the named sub-terms by atoms, then fold (``memo`` as for :func:`fold`)."""
    pairs = []
    seen = set()
    for name, t in names:
        if t.get_id() in seen:
            continue
        seen.add(t.get_id())
        atom = z3.Bool(name) if t.sort() == z3.BoolSort() else z3.Int(name)
        pairs.append((t, atom))
    if pairs:
        e = z3.substitute(e, *pairs)
    return fold(e, memo)


def _num(e) -> int | None:
    return e.as_long() if z3.is_int_value(e) else None


def fold(e: Any, memo: dict | None = None) -> Any:
    """Fold ``If(c, 1, 0) == 1`` into ``c`` (and the like), double negations and constants."""
    if memo is None:
        memo = {}
    key = e.get_id()
    hit = memo.get(key)
    if hit is not None and hit[0].eq(e):  # the term is kept alive, so its id is not reused
        return hit[1]
    out = e
    if z3.is_app(e) and e.num_args() > 0:
        k = e.decl().kind()
        args = [fold(a, memo) for a in e.children()]
        if k == z3.Z3_OP_AND:
            args = [a for a in args if not z3.is_true(a)]
            out = z3.BoolVal(False) if any(z3.is_false(a) for a in args) else (
                z3.BoolVal(True) if not args else (args[0] if len(args) == 1 else z3.And(*args)))
        elif k == z3.Z3_OP_OR:
            args = [a for a in args if not z3.is_false(a)]
            out = z3.BoolVal(True) if any(z3.is_true(a) for a in args) else (
                z3.BoolVal(False) if not args else (args[0] if len(args) == 1 else z3.Or(*args)))
        elif k == z3.Z3_OP_NOT:
            a = args[0]
            if z3.is_true(a) or z3.is_false(a):
                out = z3.BoolVal(z3.is_false(a))
            elif z3.is_app(a) and a.decl().kind() == z3.Z3_OP_NOT:
                out = a.arg(0)
            else:
                out = z3.Not(a)
        elif k in (z3.Z3_OP_EQ, z3.Z3_OP_DISTINCT) and len(args) == 2:
            out = _fold_cmp(k, args[0], args[1])
            if out is None:
                out = e.decl()(*args)
        elif k == z3.Z3_OP_ITE:
            c, a, b = args
            if z3.is_true(c):
                out = a
            elif z3.is_false(c):
                out = b
            elif a.sort() == z3.BoolSort():
                out = fold(z3.Or(z3.And(c, a), z3.And(z3.Not(c), b)), memo)
                if z3.is_true(a):
                    out = fold(z3.Or(c, b), memo)
                elif z3.is_false(a):
                    out = fold(z3.And(z3.Not(c), b), memo)
                elif z3.is_true(b):
                    out = fold(z3.Or(z3.Not(c), a), memo)
                elif z3.is_false(b):
                    out = fold(z3.And(c, a), memo)
            else:
                out = z3.If(c, a, b)
        else:
            try:
                out = e.decl()(*args)
            except Exception:  # noqa: BLE001 - keep the original term
                out = e
    memo[key] = (e, out)
    return out


def _fold_cmp(k, a, b):
    if z3.is_int_value(a) and not z3.is_int_value(b):
        a, b = b, a
    kb = _num(b)
    if kb is None or not (z3.is_app(a) and a.decl().kind() == z3.Z3_OP_ITE):
        if z3.is_int_value(a) and kb is not None:
            same = a.as_long() == kb
            return z3.BoolVal(same if k == z3.Z3_OP_EQ else not same)
        return None
    c, x, y = a.children()
    vx, vy = _num(x), _num(y)
    if vx is None or vy is None:
        return None
    hx, hy = vx == kb, vy == kb
    if hx and hy:
        r = z3.BoolVal(True)
    elif not hx and not hy:
        r = z3.BoolVal(False)
    elif hx:
        r = c
    else:
        r = fold(z3.Not(c))
    if k == z3.Z3_OP_DISTINCT:
        r = fold(z3.Not(r))
    return r
