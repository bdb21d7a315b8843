"""The proof machinery: invariants, obligations, verdicts and counterexamples.

An *invariant* is a named function in ``proofs/`` whose docstring states it in math. Called with
a :class:`Run`, it yields :class:`Obligation` objects: a claim, the assumptions under which it
must hold and the named symbols of a counterexample. Every obligation is decided by
:func:`symconv.solver.prove` (``unsat`` of the negation), so time and memory limits come from
one place and a timeout is ``unknown``, never ``proved``.

Obligations are grouped (by spatial rank, and by environment for dispatch invariants); each
group has an expected verdict. A group is *refuted* as soon as one of its obligations is, and
the counterexample is then shrunk to small numbers (with further solver calls) and replayed on
the installed torch by :mod:`proofs.replay`.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
from typing import Any
from collections.abc import Callable, Iterable, Sequence

import z3

from symconv import domain as D
from symconv import solver

__all__ = ["Invariant", "Obligation", "Group", "GroupResult", "InvariantResult", "Run",
           "CATALOGUE", "invariant", "PROVED", "REFUTED", "UNKNOWN", "ERROR", "ConvSymbols",
           "exactly_one", "iff", "implies", "zs"]

PROVED, REFUTED, UNKNOWN, ERROR = "proved", "refuted", "unknown", "error"


# --------------------------------------------------------------------------------------
# Symbols


def zs(x: Any) -> Any:
    """A domain value (int, bool or Z3) as a Z3 term."""
    if isinstance(x, z3.ExprRef):
        return x
    if isinstance(x, bool):
        return z3.BoolVal(x)
    if isinstance(x, int):
        return z3.IntVal(x)
    return D.to_z3(x)


def implies(a: Any, b: Any) -> Any:
    return z3.Implies(zs(a), zs(b))


def iff(a: Any, b: Any) -> Any:
    return zs(a) == zs(b)


def exactly_one(conds: Sequence[Any]) -> Any:
    """At least one of ``conds`` holds, and no two hold together."""
    cs = [zs(c) for c in conds]
    if not cs:
        return z3.BoolVal(False)
    pairs = [z3.Not(z3.And(cs[i], cs[j])) for i in range(len(cs)) for j in range(i + 1, len(cs))]
    return z3.And(z3.Or(*cs), *pairs)


@dataclasses.dataclass
class ConvSymbols:
    """Z3 integer symbols for one convolution of ``dims`` spatial dimensions.

    ``N, C`` (input batch, channels), ``O, I`` (weight dims 0 and 1), ``G`` (groups) and per
    spatial dimension ``x`` (input size), ``k`` (kernel), ``s`` (stride), ``p`` (padding), ``d``
    (dilation), ``op`` (output padding). ``suffix`` makes a second, independent set.
    """

    dims: int
    suffix: str = ""

    def __post_init__(self):
        sfx = self.suffix
        self.N, self.C, self.O, self.I, self.G = (z3.Int(n + sfx)
                                                  for n in ("N", "C", "O", "I", "G"))
        r = range(self.dims)
        self.x = [z3.Int(f"x{i}{sfx}") for i in r]
        self.k = [z3.Int(f"k{i}{sfx}") for i in r]
        self.s = [z3.Int(f"s{i}{sfx}") for i in r]
        self.p = [z3.Int(f"p{i}{sfx}") for i in r]
        self.d = [z3.Int(f"d{i}{sfx}") for i in r]
        self.op = [z3.Int(f"op{i}{sfx}") for i in r]

    @property
    def input_shape(self) -> tuple:
        return (self.N, self.C, *self.x)

    @property
    def weight_shape(self) -> tuple:
        return (self.O, self.I, *self.k)

    @property
    def sizes(self) -> list:
        """Every tensor size symbol (non-negative by construction)."""
        return [self.N, self.C, self.O, self.I, *self.x, *self.k]

    @property
    def params(self) -> list:
        return [*self.s, *self.p, *self.d, *self.op, self.G]

    def named(self) -> dict[str, Any]:
        out = {"N": self.N, "C": self.C, "O": self.O, "I": self.I, "G": self.G}
        for name in ("x", "k", "s", "p", "d", "op"):
            for i, v in enumerate(getattr(self, name)):
                out[f"{name}{i}"] = v
        return out

    def facts(self) -> list:
        """Sizes are non-negative integers (``symconv.solver.nonneg``)."""
        return solver.nonneg(self.sizes)

    def conv_args(self, values: dict[str, int]) -> dict[str, Any]:
        """Concrete arguments from counterexample values (missing ones: 0 sizes, stride 1)."""
        def v(name, default):
            return int(values.get(name + self.suffix, default))
        r = range(self.dims)
        return {
            "input": [v("N", 1), v("C", 1)] + [v(f"x{i}", 1) for i in r],
            "weight": [v("O", 1), v("I", 1)] + [v(f"k{i}", 1) for i in r],
            "stride": [v(f"s{i}", 1) for i in r], "padding": [v(f"p{i}", 0) for i in r],
            "dilation": [v(f"d{i}", 1) for i in r],
            "output_padding": [v(f"op{i}", 0) for i in r], "groups": v("G", 1)}


# --------------------------------------------------------------------------------------
# Obligations and results


@dataclasses.dataclass(frozen=True)
class Group:
    """Obligations whose verdicts are read together: a spatial rank and an environment."""

    dims: int | None = None
    env: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.env:
            parts.append(self.env)
        if self.dims is not None:
            parts.append(f"{self.dims}d")
        return "/".join(parts) or "all"


@dataclasses.dataclass
class Obligation:
    """``assumptions => claim`` for all integers (of Z3 sort Int)."""

    group: Group
    claim: Any
    assumptions: Sequence[Any] = ()
    symbols: dict[str, Any] = dataclasses.field(default_factory=dict)
    label: str = ""
    # values -> a JSON-able torch case for proofs.replay (None: nothing to replay)
    witness: Callable[[dict[str, int]], dict | None] | None = None
    # values -> a one-line account of what symconv computes there
    explain: Callable[[dict[str, int]], str] | None = None
    # plain values the counterexample search tries first (default: plain_value(name))
    plain: dict[str, int] = dataclasses.field(default_factory=dict)
    # values -> a label naming where the counterexample falls (batched obligations)
    relabel: Callable[[dict[str, int]], str] | None = None


@dataclasses.dataclass
class Counterexample:
    group: str
    label: str
    values: dict[str, int]
    explanation: str = ""
    case: dict | None = None
    torch: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class GroupResult:
    group: Group
    expected: str
    verdict: str = PROVED
    obligations: int = 0
    reason: str = ""
    counterexample: Counterexample | None = None

    @property
    def ok(self) -> bool:
        return self.verdict == self.expected


@dataclasses.dataclass
class InvariantResult:
    invariant: Invariant
    groups: list[GroupResult]
    seconds: float
    error: str = ""

    @property
    def verdict(self) -> str:
        if self.error:
            return ERROR
        vs = [g.verdict for g in self.groups]
        if REFUTED in vs:
            return REFUTED
        if UNKNOWN in vs:
            return UNKNOWN
        return PROVED

    @property
    def expected(self) -> str:
        es = sorted({g.expected for g in self.groups})
        if not es:
            return self.invariant.default_expected
        return es[0] if len(es) == 1 else "/".join(es)

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.groups) and all(g.ok for g in self.groups)

    @property
    def skipped(self) -> bool:
        return not self.error and not self.groups

    @property
    def counterexamples(self) -> list[Counterexample]:
        return [g.counterexample for g in self.groups if g.counterexample is not None]

    def as_dict(self) -> dict:
        inv = self.invariant
        return {
            "name": inv.name, "issue_item": inv.item, "statement": inv.statement,
            "location": inv.location, "verdict": self.verdict, "expected": self.expected,
            "ok": self.ok, "skipped": self.skipped, "seconds": round(self.seconds, 3),
            "error": self.error,
            "groups": [{"group": str(g.group), "verdict": g.verdict, "expected": g.expected,
                        "obligations": g.obligations, "reason": g.reason,
                        "counterexample": g.counterexample.as_dict() if g.counterexample else None}
                       for g in self.groups]}


# --------------------------------------------------------------------------------------
# Invariants


@dataclasses.dataclass
class Invariant:
    name: str
    fn: Callable[[Run], Iterable[Obligation]]
    item: str
    expect: Callable[[Group], str | None]
    default_expected: str
    kind: str  # "shape" | "dispatch"

    @property
    def statement(self) -> str:
        """The docstring: the statement in math, then notes."""
        return inspect.cleandoc(self.fn.__doc__ or "")

    @property
    def summary(self) -> str:
        return self.statement.split("\n\n")[0].replace("\n", " ")

    @property
    def location(self) -> str:
        fn = inspect.unwrap(self.fn)
        path = inspect.getsourcefile(fn) or "?"
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        rel = os.path.relpath(path, root) if path.startswith(root) else path
        return f"{rel}:{inspect.getsourcelines(fn)[1]}"


CATALOGUE: dict[str, Invariant] = {}


def invariant(*, item: str, expect: str | Callable[[Group], str | None] = PROVED,
              kind: str = "shape"):
    """Register an invariant. ``expect`` is the expected verdict, or a function of the group
    (``None``: the group does not apply and its obligations are not run)."""
    def deco(fn):
        if callable(expect):
            exp, default = expect, PROVED
        else:
            exp, default = (lambda g, e=expect: e), expect
        inv = Invariant(fn.__name__, fn, item, exp, default, kind)
        if inv.name in CATALOGUE:
            raise ValueError(f"duplicate invariant {inv.name}")
        CATALOGUE[inv.name] = inv
        return fn
    return deco


# --------------------------------------------------------------------------------------
# Running


class Run:
    """One run of (part of) the catalogue: the options and shared caches."""

    def __init__(self, *, dims: Sequence[int] = (1, 2, 3), envs: Sequence[str] | None = None,
                 profiles: Sequence[str] | None = None, timeout_ms: int | None = None,
                 replay: bool = True, cache=None, replayer: Run | None = None,
                 eager_replay: bool = True, all_envs: Sequence[str] | None = None) -> None:
        """``envs``: the environments of per-environment invariants (default: symconv's
        presets); ``profiles``: proof-only profiles the invariants that need them add (default:
        all of them when ``envs`` is the default, none otherwise)."""
        from . import worlds
        self.dims = tuple(dims)
        self.envs = tuple(envs) if envs is not None else tuple(worlds.PRESET_NAMES)
        # every environment of the whole run (workers get a share of them in envs)
        self.all_envs = tuple(all_envs) if all_envs is not None else self.envs
        if profiles is None:
            profiles = [n for n in worlds.ENV_NAMES if n not in worlds.PRESET_NAMES] \
                if envs is None else []
        self.profiles = tuple(profiles)
        self.timeout_ms = int(timeout_ms if timeout_ms is not None else solver.LIMITS.timeout_ms)
        self.replay = replay
        self.worlds = cache if cache is not None else worlds.WorldCache()
        self._replayer = None
        self._shared = replayer
        self._decided: dict[tuple, tuple] = {}
        self._refuted: set = set()
        if replay and eager_replay and replayer is None:
            self.replayer.start()  # the worker imports torch while the proofs run

    def replayable(self, env: str | None) -> bool:
        """Whether counterexamples found in ``env`` can run on the installed torch."""
        if env is None:
            return True
        cache = self.__dict__.setdefault("_replayable", {})
        if env not in cache:
            from .replay import environment_match
            cache[env] = environment_match(env)[0]
        return cache[env]

    def is_refuted(self, group: Group) -> bool:
        """Whether the invariant being run already has a counterexample in ``group`` (a
        generator may then skip building that group's remaining obligations)."""
        return group in self._refuted

    def with_profiles(self, *names: str) -> list[str]:
        """run.envs, plus those of the proof-only profiles ``names`` this run includes."""
        return list(self.envs) + [n for n in names if n in self.profiles and n not in self.envs]

    # the replayer (a worker process for kernel runs) starts on first use
    @property
    def replayer(self):
        if self._shared is not None:
            return self._shared.replayer
        if self._replayer is None:
            from .replay import Replayer
            self._replayer = Replayer()
        return self._replayer

    def close(self) -> None:
        if self._replayer is not None:
            self._replayer.close()
            self._replayer = None

    # ---- deciding obligations
    def decide(self, ob: Obligation) -> solver.Result:
        claim = zs(ob.claim)
        if z3.is_true(claim):
            return solver.Result("unsat")
        assumptions = [zs(a) for a in ob.assumptions]
        # the same formula (Z3 terms are hash-consed) has the same verdict: environments and
        # worlds often give identical obligations. The terms are kept alive so ids stay unique.
        key = (claim.get_id(), tuple(sorted(a.get_id() for a in assumptions)))
        hit = self._decided.get(key)
        if hit is not None:
            return hit[0]
        r = solver.prove(claim, *assumptions, timeout_ms=self.timeout_ms)
        if r.verdict != "unknown":
            self._decided[key] = (r, claim, assumptions)
        return r

    def small_model(self, ob: Obligation, first: solver.Result, *,
                    queries: int = 60, cap_s: float = 4.0) -> dict[str, int]:
        """Counterexample values, made small and plain with at most ``queries`` more solver
        calls (short ones; ``cap_s`` seconds in all): first a box search (|v| <= 4, 64,
        2**16, 2**34), then each symbol in turn is set to its plain value (1 for sizes,
        strides, dilations and groups, 0 for paddings) -- or as close to it as a
        counterexample allows. Counting calls rather than seconds keeps the result the same on
        a busy machine."""
        t0 = time.perf_counter()
        neg = [zs(a) for a in ob.assumptions] + [z3.Not(zs(ob.claim))]
        names = dict(ob.symbols)
        left = [queries]

        def ask(*extra, ms):
            if left[0] <= 0 or time.perf_counter() - t0 > cap_s:
                return None
            left[0] -= 1
            return solver.check(*neg, *extra, timeout_ms=min(self.timeout_ms, ms))

        values, box = None, []
        for bound in (4, 64, 2**16, 2**34):
            box = [c for v in names.values() for c in (v >= -bound, v <= bound)]
            r = ask(*box, ms=1000)
            if r is None:
                break
            if r.sat:
                values = _values(r.model, names)
                break
        if values is None:
            return _values(first.model, names)
        fixed = list(box)
        for n, v in names.items():
            plain = ob.plain.get(n, plain_value(n))
            if values.get(n) != plain:
                for c in (0, 2, 16, 256, 2**12, 2**16, 2**24, 2**32):
                    if c >= abs(values[n] - plain):
                        break
                    r = ask(*fixed, v - plain <= c, plain - v <= c, ms=300)
                    if r is None:
                        break
                    if r.sat:
                        values = _values(r.model, names)
                        break
            fixed.append(v == values[n])
        return values


def plain_value(name: str) -> int:
    """The value a counterexample should show for a symbol when it can: 0 for paddings and
    output paddings, 1 for everything else (sizes, strides, dilations, groups)."""
    return 0 if name.startswith(("p", "op")) else 1


def _values(model, names: dict[str, Any]) -> dict[str, int]:
    out = {}
    for n, v in names.items():
        val = model.eval(v, model_completion=True)
        if z3.is_int_value(val):
            out[n] = val.as_long()
        elif z3.is_true(val) or z3.is_false(val):
            out[n] = int(z3.is_true(val))
    return out


def run_invariant(inv: Invariant, run: Run) -> InvariantResult:
    t0 = time.perf_counter()
    run._refuted = set()
    groups: dict[Group, GroupResult] = {}
    try:
        for ob in inv.fn(run):
            g = groups.get(ob.group)
            if g is None:
                exp = inv.expect(ob.group)
                if exp is None:
                    continue
                g = groups[ob.group] = GroupResult(ob.group, exp)
            if g.verdict == REFUTED:
                continue
            g.obligations += 1
            r = run.decide(ob)
            if r.unsat:
                continue
            if r.verdict == "unknown":
                g.verdict = UNKNOWN
                g.reason = f"{ob.label}: {r.reason}" if ob.label else r.reason
                continue
            g.verdict = REFUTED
            run._refuted.add(ob.group)
            # the first counterexamples of an invariant are made small and plain; later groups
            # get a quick bounded search only
            shown = sum(1 for x in groups.values() if x.counterexample is not None)
            if not run.replayable(ob.group.env):
                # shown, not run: a quick bounded search is enough
                values = run.small_model(ob, r, queries=20, cap_s=0.7)
            else:
                values = run.small_model(ob, r, queries=60 if shown < 2 else 30,
                                         cap_s=3.0 if shown < 2 else 1.0)
            label = ob.label
            if ob.relabel is not None:
                try:
                    label = ob.relabel(values)
                except Exception:  # noqa: BLE001
                    pass
            cx = Counterexample(str(ob.group), label, values)
            if ob.explain is not None:
                try:
                    cx.explanation = ob.explain(values)
                except Exception as e:  # noqa: BLE001 - an explanation must not lose the verdict
                    cx.explanation = f"(could not evaluate: {type(e).__name__}: {e})"
            if ob.witness is not None:
                try:
                    cx.case = ob.witness(values)
                except Exception as e:  # noqa: BLE001
                    cx.torch = f"not replayed: building the call failed ({type(e).__name__}: {e})"
            if run.replay and cx.case is not None:
                cx.torch = run.replayer.replay(cx.case)
            elif cx.case is None and not cx.torch:
                cx.torch = "not replayed: no torch call corresponds to this counterexample"
            elif not run.replay:
                cx.torch = "not replayed (--no-replay)"
            g.counterexample = cx
    except Exception as e:  # noqa: BLE001 - a crashing proof is an error, never a verdict
        import traceback
        tb = traceback.extract_tb(e.__traceback__)[-1]
        return InvariantResult(inv, list(groups.values()), time.perf_counter() - t0,
                               error=f"{type(e).__name__}: {e} ({os.path.basename(tb.filename)}:"
                                     f"{tb.lineno})")
    return InvariantResult(inv, list(groups.values()), time.perf_counter() - t0)


def select(names: Sequence[str] | None = None) -> list[Invariant]:
    """The invariants to run, in catalogue order (all when ``names`` is empty)."""
    load()
    if not names:
        return list(CATALOGUE.values())
    missing = [n for n in names if n not in CATALOGUE]
    if missing:
        raise KeyError(missing[0])
    wanted = set(names)
    return [inv for inv in CATALOGUE.values() if inv.name in wanted]


def load() -> None:
    """Import every module of the catalogue (registration happens on import) and put the
    catalogue in the issue's order (by item number; extra statements last)."""
    from . import shapes  # noqa: F401  (registration order: shapes, dispatch, backward)
    from . import dispatch  # noqa: F401
    from . import backward  # noqa: F401
    items = list(CATALOGUE.items())
    items.sort(key=lambda kv: _item_key(kv[1].item))
    CATALOGUE.clear()
    CATALOGUE.update(items)


def _item_key(item: str) -> int:
    import re
    m = re.match(r"\s*(\d+)", item)
    return int(m.group(1)) if m else 1000


def run_catalogue(names: Sequence[str] | None = None, *, run: Run | None = None,
                  on_result: Callable[[InvariantResult], None] | None = None
                  ) -> list[InvariantResult]:
    """Run invariants in this process (see proofs.runner for the parallel runner)."""
    run = run or Run()
    out = []
    try:
        for inv in select(names):
            res = run_invariant(inv, run)
            out.append(res)
            if on_result is not None:
                on_result(res)
    finally:
        run.close()
    return out
