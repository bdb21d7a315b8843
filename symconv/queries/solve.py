"""Z3 work of the queries: incremental solvers (limits from :mod:`symconv.solver`), small
witnesses, readable formulas.

Every verdict is ``"sat"``, ``"unsat"`` or ``"unknown"``; an ``unknown`` is never turned into a
proof.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import z3

from .. import solver as S

__all__ = ["new_solver", "verdict", "minimise", "nnf_conjuncts", "text", "simplify_conjuncts",
           "preferred_value", "ORDER"]


def new_solver(timeout_ms: int | None = None) -> z3.Solver:
    """A Z3 solver with symconv's limits (:func:`symconv.solver.new_solver`)."""
    return S.new_solver(timeout_ms)


def verdict(s: z3.Solver, *assumptions) -> tuple[str, str]:
    r = s.check(*assumptions)
    if r == z3.sat:
        return "sat", ""
    if r == z3.unsat:
        return "unsat", ""
    return "unknown", s.reason_unknown()


def limited_check(s: z3.Solver, *assumptions, rlimit: int | None = None) -> Any:
    """``s.check(*assumptions)`` bounded by Z3's resource limit (``STEP_RLIMIT`` by default):
    a deterministic step budget, unlike time; past it the answer is ``unknown``."""
    s.set("rlimit", STEP_RLIMIT if rlimit is None else int(rlimit))
    try:
        return s.check(*assumptions)
    finally:
        s.set("rlimit", 0)


def verdict_small_first(s: z3.Solver, symbols, bound: int = 64) -> tuple[str, str]:
    """Like :func:`verdict`, trying small values first: a model with every symbol in
    ``[-bound, bound]`` is a model (often found much faster); otherwise the unbounded check
    decides."""
    s.push()
    try:
        s.add(*[z3.And(x >= -bound, x <= bound) for x in symbols])
        s.set("rlimit", STEP_RLIMIT)
        small = s.check()
    finally:
        s.set("rlimit", 0)
        s.pop()
    if small == z3.sat:
        return "sat", ""
    return verdict(s)


# --------------------------------------------------------------------------------------
# Small witnesses


def preferred_value(name: str) -> int:
    """What a size or parameter is, when nothing forces otherwise."""
    if name.startswith("pad") or name.startswith("opad"):
        return 0
    return 1


def _order_key(name: str) -> tuple:
    for i, prefix in enumerate(ORDER):
        if name == prefix or (len(prefix) > 1 and name.startswith(prefix) and prefix != "C"):
            return (i, name)
    return (len(ORDER), name)


ORDER = ("G", "dil", "stride", "pad", "opad", "N", "C", "Cout", "Cg", "k", "L", "D", "H", "W")


STEP_RLIMIT = 5_000_000  # Z3 resource units per search step (deterministic, unlike time)
SHRINK_RLIMIT = 200_000  # per step of the binary search for values far from their targets
_SHRINK_STEPS = 32  # steps of that search per witness


_BOUNDS = (8, 64, 1024, 2**20)
_WITHIN: dict = {}


def _within(x: Any, bound: int) -> Any:
    """``-bound <= x <= bound``, made once per symbol and bound (witness searches ask it
    thousands of times)."""
    key = (x.get_id(), bound)
    hit = _WITHIN.get(key)
    if hit is None or not hit[0].eq(x):
        hit = _WITHIN[key] = (x, z3.And(x >= -bound, x <= bound))
    return hit[1]


def minimise(s: z3.Solver, symbols: dict, *, targets: dict | None = None,
             budget_s: float = 60.0, step_rlimit: int = STEP_RLIMIT,
             shrink: bool = True, start: dict | None = None) -> dict | None:
    """A model of the solver's assertions with values close to ``targets`` (default: the
    preferred values: strides, dilations and groups 1, paddings 0, sizes 1).

    Greedy: pin each symbol to its target where that stays satisfiable, then shrink the
    distance of the others by binary search. Every step only adds constraints to a satisfiable
    set, so the final model always satisfies the assertions. ``None`` when the assertions are
    not satisfiable (or the first check is undecided). Steps are bounded by Z3's resource
    limit, not by time, so the answer does not depend on the machine's load (``budget_s`` is
    only a safety net). ``shrink=False`` stops after pinning (no binary search on the
    symbols that could not be pinned): a valid model at a fraction of the cost.

    ``start`` (symbol name -> int), a known model of the assertions, replaces the first search
    for a small model: the search stays within the smallest of the bounds (8, 64, 1024, 2**20)
    that holds it (within the start's largest magnitude beyond them), pins are added one by
    one from it (:func:`_pin_from`: cheaper than unsat cores where the conditions are
    nonlinear), and where a step is undecided the answer is the best model so far (``start``
    at worst), never ``None``.
    """
    deadline = time.monotonic() + budget_s
    names = sorted(symbols, key=_order_key)
    tgt = {n: (targets or {}).get(n, preferred_value(n)) for n in names}
    base = s.num_scopes()
    cur: dict | None = None

    def take(m) -> dict:
        return {n: m.eval(symbols[n], model_completion=True).as_long() for n in names}

    s.set("rlimit", int(step_rlimit))
    try:
        if start is not None:
            cur = {n: int(start[n]) for n in names}
            top = max([abs(v) for v in cur.values()] + [1])
            bound = next((b for b in _BOUNDS if top <= b), top)
            s.push()
            s.add(*[_within(symbols[n], bound) for n in names])
        else:
            # bounded first: keeps models small and the later steps fast
            for bound in _BOUNDS:
                s.push()
                s.add(*[_within(symbols[n], bound) for n in names])
                if s.check() == z3.sat:
                    cur = take(s.model())
                    break
                s.pop()
            if cur is None:
                s.set("rlimit", 0)
                if s.check() != z3.sat:
                    return None
                cur = take(s.model())
                s.set("rlimit", int(step_rlimit))
        if all(cur[n] == tgt[n] for n in names):
            return cur
        eqs = {n: symbols[n] == tgt[n] for n in names}
        if start is not None:
            cur, pinned = _pin_from(s, symbols, names, tgt, eqs, cur, take, step_rlimit)
        else:
            cur, pinned = _pin_by_cores(s, symbols, names, eqs, cur, take, deadline)
        s.push()
        s.add(*[eqs[n] for n in pinned])
        # where a target can't be met, stay on its side of 0 (dilation 2 rather than 0: both
        # are "dilated", but torch's kernels refuse 0)
        for n in names:
            if n in pinned or tgt[n] < 1 or time.monotonic() > deadline:
                continue
            if start is not None and cur[n] >= 1:  # the current model is one
                s.push()
                s.add(symbols[n] >= 1)
                continue
            s.push()
            s.add(symbols[n] >= 1)
            if s.check() == z3.sat:
                cur = take(s.model())
            else:
                s.pop()
        for n in (names if shrink else ()):
            x = symbols[n]
            lo, hi = 0, abs(cur[n] - tgt[n])
            while lo < hi and time.monotonic() < deadline:
                mid = (lo + hi) // 2
                s.push()
                s.add(x - tgt[n] <= mid, tgt[n] - x <= mid)
                if s.check() == z3.sat:
                    cur = take(s.model())
                    hi = abs(cur[n] - tgt[n])
                    s.pop()
                else:
                    s.pop()
                    lo = mid + 1
            s.push()
            s.add(x == cur[n])
        return cur
    finally:
        s.set("rlimit", 0)
        while s.num_scopes() > base:
            s.pop()


def _pin_by_cores(s, symbols, names, eqs, cur, take, deadline) -> tuple[dict, list]:
    """Pin as many symbols to their targets as possible: assume them all, and drop the least
    important member of each unsat core."""
    lits = {n: z3.Bool(f"__pin_{n}") for n in names}
    s.push()
    s.add(*[z3.Implies(lits[n], eqs[n]) for n in names])
    active = list(names)
    pinned: list = []
    while active and time.monotonic() < deadline:
        r = s.check(*[lits[n] for n in active])
        if r == z3.sat:
            cur = take(s.model())
            pinned = list(active)
            break
        if r != z3.sat and r != z3.unsat:
            break
        core = {str(c) for c in s.unsat_core()}
        drop = [n for n in active if f"__pin_{n}" in core]
        if not drop:
            break
        active.remove(drop[-1])  # the last in ORDER: sizes give way before parameters
    s.pop()
    return cur, pinned


def _pin_from(s, symbols, names, tgt, eqs, cur, take, step_rlimit) -> tuple[dict, list]:
    """Pin symbols to their targets starting from a model ``cur``: first each symbol in ORDER
    whose target keeps the model a model (the assertions evaluated there), then, letting
    the unpinned symbols move, each further symbol in ORDER whose target stays satisfiable
    with the pins so far; last, each unpinned symbol in ORDER moved as close to its target as
    the assertions allow with the others kept (a binary search on the model, no solver), and
    a value still 65 to 2**20 away by a binary search with the solver (small steps, at most
    32 per model), in a solver holding the values fixed so far as assertions (a step the
    incremental solver decides where that one cannot).
    Undecided steps pin or move nothing; every step keeps a model of the assertions."""
    every = z3.And(*s.assertions())
    mdl = None
    if s.check(*[symbols[m] == cur[m] for m in names]) == z3.sat:
        # move one symbol of a model to its target and evaluate every assertion there (no
        # search): a model of them all is a model
        mdl = s.model()
        for m in names:
            mdl.update_value(symbols[m], z3.IntVal(cur[m]))
        for n in names:
            if cur[n] != tgt[n]:
                if _holds(mdl, every, symbols[n], tgt[n], cur[n]):
                    cur = dict(cur)
                    cur[n] = tgt[n]
    pinned = [n for n in names if cur[n] == tgt[n]]
    for n in names:
        if n in pinned:
            continue
        if s.check(*[eqs[m] for m in pinned + [n]]) == z3.sat:
            mdl = s.model()
            cur = take(mdl)
            pinned = [m for m in names if m in pinned or m == n]
    if mdl is not None:
        for m in names:
            mdl.update_value(symbols[m], z3.IntVal(cur[m]))
        # in ORDER, and again while a pass moves something (a value moved late can free an
        # earlier one: padding after the kernel size)
        for _ in range(4):
            before = dict(cur)
            cur = _shrink_on_model(mdl, every, symbols, names, tgt, pinned, cur)
            if cur == before:
                break
    # values still far from their targets (coupled ones, C = Cg * G, move together): a binary
    # search with the solver, each step limited to a small budget (undecided: stop there)
    fixed = [eqs[m] for m in pinned]
    steps = _SHRINK_STEPS
    for n in names:
        if n in pinned or not _BOUNDS[1] < abs(cur[n] - tgt[n]) <= _BOUNDS[3]:
            fixed.append(symbols[n] == cur[n])
            continue
        x, t = symbols[n], tgt[n]
        lo, hi = 0, abs(cur[n] - t)
        # the values fixed so far asserted (not assumed) in a solver of their own: Z3
        # substitutes them once, and each step searches the few values left free
        sub = new_solver()
        sub.add(every, *fixed)
        # (cur is a model: this first check takes the assertions in; undecided, skip the symbol)
        ready = limited_check(sub, rlimit=step_rlimit) == z3.sat
        while ready and lo < hi and steps > 0:
            steps -= 1
            mid = (lo + hi) // 2
            near = (x - t <= mid, t - x <= mid)
            r, m = limited_check(sub, *near, rlimit=SHRINK_RLIMIT), sub
            if r == z3.unknown:  # undecided there: the incremental solver (it learnt more)
                r, m = limited_check(s, *fixed, *near, rlimit=SHRINK_RLIMIT), s
            if r == z3.sat:
                cur = take(m.model())
                hi = abs(cur[n] - t)
            elif r == z3.unsat:
                lo = mid + 1
            else:
                break
        fixed.append(x == cur[n])
    s.set("rlimit", int(step_rlimit))  # limited_check cleared the caller's step limit
    return cur, pinned


def shrink_model(s: z3.Solver, symbols: dict, start: dict) -> dict | None:
    """``start`` (symbol name -> int) with its values moved towards their preferred values,
    in ORDER and again while a pass moves something, each as far as keeps it a model of the
    solver's assertions (a binary search by evaluation on the model, no search), then each pair
    of values still off target both at their targets where that keeps it a model; ``None`` if
    ``start`` is not a model of them (Z3 with every value fixed)."""
    names = sorted(symbols, key=_order_key)
    cur = {n: int(start[n]) for n in names}
    if limited_check(s, *[symbols[n] == cur[n] for n in names]) != z3.sat:
        return None
    mdl = s.model()
    for n in names:
        mdl.update_value(symbols[n], z3.IntVal(cur[n]))
    every = conjunction(s.assertions())
    if not z3.is_true(mdl.eval(every, model_completion=True)):  # pragma: no cover - a model
        return None
    tgt = {n: preferred_value(n) for n in names}
    for _ in range(4):
        before = dict(cur)
        for n in names:  # each value at its target where the others allow it
            if cur[n] != tgt[n] and _holds(mdl, every, symbols[n], tgt[n], cur[n]):
                cur[n] = tgt[n]
        cur = _shrink_on_model(mdl, every, symbols, names, tgt, [], cur)
        # coupled values (C and Cg with C = Cg*G, a kernel and its padding) move together:
        # each pair of values still off target, both at their targets
        off = [n for n in names if cur[n] != tgt[n]]
        for i, a in enumerate(off):
            for b in off[i + 1:]:
                if cur[a] == tgt[a] or cur[b] == tgt[b]:
                    continue
                mdl.update_value(symbols[a], z3.IntVal(tgt[a]))
                if _holds(mdl, every, symbols[b], tgt[b], cur[b]):
                    cur[a], cur[b] = tgt[a], tgt[b]
                else:
                    mdl.update_value(symbols[a], z3.IntVal(cur[a]))
        if cur == before:
            break
    return cur


def conjunction(terms) -> Any:
    """``z3.And(*terms)`` without its per-argument coercion (the terms are boolean)."""
    terms = list(terms)
    if len(terms) == 1:
        return terms[0]
    ctx = terms[0].ctx
    arr = (z3.Ast * len(terms))()
    for i, x in enumerate(terms):
        arr[i] = x.as_ast()
    return z3.BoolRef(z3.z3core.Z3_mk_and(ctx.ref(), len(terms), arr), ctx)


def _shrink_on_model(mdl, every, symbols, names, tgt, pinned, cur) -> dict:
    """Each unpinned symbol in ORDER moved to the value closest to its target that keeps
    ``mdl`` a model of ``every`` (binary search by evaluation, the others kept)."""
    cur = dict(cur)
    for n in names:
        if n in pinned or cur[n] == tgt[n]:
            continue
        t, v = tgt[n], cur[n]
        step = 1 if v > t else -1
        lo, hi = t + step, v  # hi holds; lo is the nearest candidate
        if abs(v - t) > _BOUNDS[1]:
            # a large value (sizes past 32-bit indexing): its thresholds are bounds, so one
            # that can't move one step is left (one evaluation, not a search of 30 or more)
            if not _holds(mdl, every, symbols[n], v - step, v):
                continue
            hi = v - step
        while lo != hi:
            mid = (lo + hi) // 2 if step > 0 else -((-lo - hi) // 2)
            if _holds(mdl, every, symbols[n], mid, hi):
                hi = mid
            else:
                lo = mid + step
        if hi != v:
            mdl.update_value(symbols[n], z3.IntVal(hi))
            cur[n] = hi
    return cur


def _holds(mdl, every, x, value: int, back: int) -> bool:
    """Whether the model with ``x`` set to ``value`` satisfies ``every``; if not, ``x`` is set
    back to ``back``."""
    mdl.update_value(x, z3.IntVal(value))
    if z3.is_true(mdl.eval(every, model_completion=True)):
        return True
    mdl.update_value(x, z3.IntVal(back))
    return False


# --------------------------------------------------------------------------------------
# Readable formulas

_NEG = {z3.Z3_OP_LE: z3.Z3_OP_GT, z3.Z3_OP_LT: z3.Z3_OP_GE, z3.Z3_OP_GE: z3.Z3_OP_LT,
        z3.Z3_OP_GT: z3.Z3_OP_LE, z3.Z3_OP_EQ: z3.Z3_OP_DISTINCT,
        z3.Z3_OP_DISTINCT: z3.Z3_OP_EQ}
_MK = {z3.Z3_OP_LE: lambda a, b: a <= b, z3.Z3_OP_LT: lambda a, b: a < b,
       z3.Z3_OP_GE: lambda a, b: a >= b, z3.Z3_OP_GT: lambda a, b: a > b,
       z3.Z3_OP_EQ: lambda a, b: a == b, z3.Z3_OP_DISTINCT: lambda a, b: a != b}


def nnf(e: Any, neg: bool = False, memo: dict | None = None) -> Any:
    """Negation normal form (comparisons absorb negations). ``memo`` (a dict the caller keeps)
    shares the work between formulas with common sub-terms."""
    if memo is not None:
        hit = memo.get((e.get_id(), neg))
        if hit is not None:  # the term is kept alive in the memo, so its id is not reused
            return hit[1]
    out = _nnf(e, neg, memo)
    if memo is not None:
        memo[(e.get_id(), neg)] = (e, out)
    return out


def _nnf(e: Any, neg: bool, memo: dict | None) -> Any:
    if z3.is_true(e) or z3.is_false(e):
        return z3.BoolVal(z3.is_false(e) if neg else z3.is_true(e))
    k = e.decl().kind() if z3.is_app(e) else None
    if k == z3.Z3_OP_NOT:
        return nnf(e.arg(0), not neg, memo)
    if k in (z3.Z3_OP_AND, z3.Z3_OP_OR):
        args = [nnf(a, neg, memo) for a in e.children()]
        is_and = (k == z3.Z3_OP_AND) != neg
        return z3.And(*args) if is_and else z3.Or(*args)
    if k in _NEG and e.num_args() == 2 and e.arg(0).sort() == z3.IntSort():
        op = _NEG[k] if neg else k
        return _MK[op](e.arg(0), e.arg(1))
    return z3.Not(e) if neg else e


def _flatten(e: Any, op: int, memo: dict | None = None) -> list:
    """The arguments of nested ``op`` (And, Or) applications, in order; ``memo`` as for
    :func:`nnf` (a caller's dict)."""
    key = ("flat", e.get_id(), op)
    if memo is not None:
        hit = memo.get(key)
        if hit is not None:
            return hit[1]
    out = [e]
    if z3.is_app(e) and e.decl().kind() == op:
        out = []
        for a in e.children():
            out.extend(_flatten(a, op, memo))
    if memo is not None:
        memo[key] = (e, out)
    return out


def flat_and(e: Any, memo: dict | None = None) -> list:
    """The conjuncts of nested Ands, in order."""
    return _flatten(e, z3.Z3_OP_AND, memo)


def nnf_conjuncts(e: Any, memo: dict | None = None) -> list:
    out = []
    seen = set()
    for c in _flatten(nnf(e, False, memo), z3.Z3_OP_AND, memo):
        if z3.is_true(c):
            continue
        if z3.is_app(c) and c.decl().kind() == z3.Z3_OP_OR:
            ds = []
            dseen = set()
            for d in _flatten(c, z3.Z3_OP_OR, memo):
                if d.get_id() not in dseen:
                    dseen.add(d.get_id())
                    ds.append(d)
            c = ds[0] if len(ds) == 1 else z3.Or(*ds)
        if c.get_id() not in seen:
            seen.add(c.get_id())
            out.append(c)
    return out


def simplify_conjuncts(conjuncts: list, context: Sequence[Any], *, timeout_ms: int = 300,
                       budget_s: float = 2.0) -> list:
    """Drop conjuncts implied by the others and the context, and disjuncts that can't hold
    there. Only checks that answer "unsat" remove anything."""
    deadline = time.monotonic() + budget_s
    s = new_solver(timeout_ms)
    s.add(*context)

    def unsat(terms: list) -> bool:  # past the budget nothing more is removed
        return time.monotonic() <= deadline and s.check(*terms) == z3.unsat

    return _drop_implied(conjuncts, unsat, lambda: time.monotonic() < deadline)


def _drop_implied(conjuncts: list, unsat, go_on=lambda: True) -> list:
    """Drop the conjuncts that the others imply and the disjuncts that can't hold with the
    others; ``unsat(terms)`` says whether the terms can't hold together (with the context)."""
    cur = list(conjuncts)
    i = 0
    while i < len(cur) and go_on():
        others = cur[:i] + cur[i + 1:]
        if unsat(others + [z3.Not(cur[i])]):
            cur.pop(i)
            continue
        c = cur[i]
        if z3.is_app(c) and c.decl().kind() == z3.Z3_OP_OR:
            ds = _flatten(c, z3.Z3_OP_OR)
            keep = [d for d in ds if not unsat(others + [d])]
            if keep and len(keep) < len(ds):
                if len(keep) == 1:
                    cur[i:i + 1] = nnf_conjuncts(keep[0])
                    continue
                cur[i] = z3.Or(*keep)
        i += 1
    return cur


SIMPLIFY_RLIMIT = 200_000  # Z3 resource units per simplification check (deterministic)


class Simplifier:
    """:func:`simplify_conjuncts` whose answer does not depend on the machine or its load: each
    check is bounded by Z3's resource limit (not by time, and with no overall time budget), one
    incremental solver holds the context, and checks are memoised (formulas that share
    conjuncts share their checks). As there, only checks that answer "unsat" remove anything,
    so the result is equivalent to the input under the context."""

    def __init__(self, context: Sequence[Any], rlimit: int = SIMPLIFY_RLIMIT) -> None:
        self.s = new_solver()
        self.s.add(*context)
        self.rlimit = rlimit
        self._memo: dict = {}
        self._done: dict = {}

    def _unsat(self, terms: list) -> bool:
        key = tuple(sorted(t.get_id() for t in terms))
        hit = self._memo.get(key)
        if hit is not None:
            return hit[1]
        out = limited_check(self.s, *terms, rlimit=self.rlimit) == z3.unsat
        self._memo[key] = (terms, out)  # the terms are kept alive, so their ids are not reused
        return out

    def simplify(self, conjuncts: list) -> list:
        """The conjuncts less those implied (memoised on the list: regions of other facts
        often have the very same conjuncts)."""
        key = tuple(c.get_id() for c in conjuncts)
        hit = self._done.get(key)
        if hit is None:
            # the entry keeps the conjuncts alive, so their ids are not reused
            hit = self._done[key] = (list(conjuncts), _drop_implied(conjuncts, self._unsat))
        return list(hit[1])


_OPS = {z3.Z3_OP_LE: "<=", z3.Z3_OP_LT: "<", z3.Z3_OP_GE: ">=", z3.Z3_OP_GT: ">",
        z3.Z3_OP_EQ: "==", z3.Z3_OP_DISTINCT: "!="}
_FLIP = {"<=": ">=", "<": ">", ">=": "<=", ">": "<", "==": "==", "!=": "!="}


def _int_text(e: Any, prec: int = 0) -> str:
    if z3.is_int_value(e):
        v = e.as_long()
        return f"({v})" if v < 0 and prec > 1 else str(v)
    if z3.is_const(e):
        return str(e)
    k = e.decl().kind()
    if k == z3.Z3_OP_ADD:
        parts = []
        for i, a in enumerate(e.children()):
            t = _int_text(a, 1)
            if i and t.startswith("-"):
                parts.append(" - " + t[1:])
            else:
                parts.append((" + " if i else "") + t)
        s = "".join(parts)
        return f"({s})" if prec > 1 else s
    if k == z3.Z3_OP_SUB:
        s = " - ".join(_int_text(a, 2) for a in e.children())
        return f"({s})" if prec > 1 else s
    if k == z3.Z3_OP_MUL:
        args = [a for a in e.children() if not (z3.is_int_value(a) and a.as_long() == 1)]
        if not args:
            return "1"
        if len(args) >= 2 and z3.is_int_value(args[0]) and args[0].as_long() == -1:
            return "-" + "*".join(_int_text(a, 2) for a in args[1:])
        return "*".join(_int_text(a, 2) for a in args)
    if k == z3.Z3_OP_UMINUS:
        return "-" + _int_text(e.arg(0), 2)
    if k == z3.Z3_OP_IDIV:
        return f"{_int_text(e.arg(0), 2)} div {_int_text(e.arg(1), 2)}"
    if k == z3.Z3_OP_MOD:
        return f"{_int_text(e.arg(0), 2)} mod {_int_text(e.arg(1), 2)}"
    if k == z3.Z3_OP_ITE:
        c, a, b = e.children()
        if z3.is_app(c) and c.num_args() == 2 and c.arg(0).eq(a) and c.arg(1).eq(b):
            if c.decl().kind() == z3.Z3_OP_GE:
                return f"max({_int_text(a)}, {_int_text(b)})"
            if c.decl().kind() == z3.Z3_OP_LE:
                return f"min({_int_text(a)}, {_int_text(b)})"
        return f"({_int_text(a)} if {text(c)} else {_int_text(b)})"
    return str(e)


def text(e: Any, memo: dict | None = None) -> str:
    """A boolean Z3 formula in user terms: ``N >= 16 and kH <= 16``. ``memo`` (a dict the
    caller keeps) shares the work between formulas with common sub-terms."""
    if memo is None:
        return _text(e, None)
    hit = memo.get(e.get_id())
    if hit is not None:  # the term is kept alive in the memo, so its id is not reused
        return hit[1]
    out = _text(e, memo)
    memo[e.get_id()] = (e, out)
    return out


def _text(e: Any, memo: dict | None) -> str:
    if z3.is_true(e):
        return "true"
    if z3.is_false(e):
        return "false"
    k = e.decl().kind() if z3.is_app(e) else None
    if k == z3.Z3_OP_AND:
        return " and ".join(_wrap(a, False, memo) for a in e.children())
    if k == z3.Z3_OP_OR:
        return " or ".join(_wrap(a, True, memo) for a in e.children())
    if k == z3.Z3_OP_NOT:
        return "not " + _wrap(e.arg(0), False, memo)
    if k in _OPS and e.num_args() == 2 and e.arg(0).sort() == z3.IntSort():
        a, b = e.arg(0), e.arg(1)
        op = _OPS[k]
        if z3.is_int_value(a) and not z3.is_int_value(b):
            a, b, op = b, a, _FLIP[op]
        if z3.is_int_value(b):
            v = b.as_long()
            if op == "<":
                op, v = "<=", v - 1
            elif op == ">":
                op, v = ">=", v + 1
            return f"{_int_text(a)} {op} {v}"
        return f"{_int_text(a)} {op} {_int_text(b)}"
    if k == z3.Z3_OP_ITE:
        return f"({text(e.arg(1), memo)} if {text(e.arg(0), memo)} else {text(e.arg(2), memo)})"
    return str(e)


def _wrap(e: Any, in_or: bool = False, memo: dict | None = None) -> str:
    t = text(e, memo)
    k = e.decl().kind() if z3.is_app(e) else None
    if k == z3.Z3_OP_OR or (k == z3.Z3_OP_AND and in_or):
        return f"({t})"
    return t


def named_atoms(conjuncts: list, spatial: Sequence[str], memo: dict | None = None
                ) -> list[str]:
    """Texts of the conjuncts, with ``dilH == 1 and dilW == 1`` written ``not dilated`` (and
    likewise strided, padded); ``memo`` as for :func:`text`."""
    texts = [_wrap(c, True, memo) for c in conjuncts]
    names = {"dil": ("1", "not dilated"), "stride": ("1", "not strided"),
             "pad": ("0", "not padded"), "opad": ("0", "no output padding")}
    out = list(texts)
    for prefix, (val, label) in names.items():
        want = [f"{prefix}{x} == {val}" for x in spatial]
        if all(w in out for w in want):
            idx = min(out.index(w) for w in want)
            out = [t for t in out if t not in want]
            out.insert(idx, label)
    return out
