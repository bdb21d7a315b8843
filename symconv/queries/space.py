"""The argument space of a convolution call, split into categorical facts and integers.

Categorical facts (dims, transposed, device, dtype, layout, memory formats, requires_grad and the
runtime flags of the :class:`~symconv.env.Environment`) are concrete in the rules, so queries
enumerate them. They are enumerated *lazily*: the rules read them through tracking proxies, and
only the facts a rule actually read are branched on (a decision tree whose leaves are partial
assignments: every fact a leaf leaves out is "don't care"). The integers (sizes and parameters)
stay Z3 symbols; each leaf carries the Z3 formula under which its outcome holds.

Build facts of the environment (what torch was compiled with, which CPU it runs on) are fixed by
the preset; their reads are logged only to explain answers.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from typing import Any, ClassVar
from collections.abc import Iterator, Sequence

import torch
import z3

from .. import domain as D
from ..api import prepare
from ..backends import ConvBackend
from ..env import Environment
from ..params import ConvParams
from ..rules import RULES, Ctx
from ..spec import MKLDNN_LAYOUT, TensorSpec

__all__ = ["Space", "Leaf", "Pruned", "Structure", "FLAG_VARS", "TENSOR_VARS", "space",
           "SPATIAL", "fact_text", "assignment_text"]

SPATIAL = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}

# Runtime flags: the settable part of an Environment (build facts stay fixed by the preset).
FLAG_VARS = ("mkldnn_enabled", "nnpack_enabled", "cudnn_enabled", "cudnn_deterministic",
             "deterministic_algorithms", "cudnn_benchmark", "cudnn_allow_tf32",
             "cudnn_depthwise_kernel", "num_threads", "grad_enabled")
TENSOR_VARS = ("device", "dtype", "layout", "input_mf", "weight_mf", "requires_grad")
STRUCT_VARS = ("dims", "transposed")
_ENV_FIELDS = frozenset(f.name for f in dataclasses.fields(Environment))
_BUILD_FIELDS = _ENV_FIELDS - frozenset(FLAG_VARS)

DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
               torch.bfloat16: "bfloat16"}
MF_NAMES = {torch.contiguous_format: "contiguous", torch.channels_last: "channels_last",
            torch.channels_last_3d: "channels_last_3d"}
LAYOUT_NAMES = {torch.strided: "strided", MKLDNN_LAYOUT: "mkldnn"}

# how a value of a categorical fact is written (and parsed back) in user-facing text
def value_name(var: str, value: Any) -> str:
    if var == "dtype":
        return DTYPE_NAMES[value]
    if var in ("input_mf", "weight_mf"):
        return MF_NAMES[value]
    if var == "layout":
        return LAYOUT_NAMES[value]
    return str(value)


def fact_text(var: str, value: Any, env: Environment | None = None) -> str:
    """One categorical literal in user terms: ``dtype == float32``, ``not mkldnn_enabled``."""
    if isinstance(value, bool):
        return var if value else f"not {var}"
    if var == "dims":
        return f"{value}-D"
    if var == "num_threads":
        return "num_threads > 1" if value > 1 else "num_threads == 1"
    return f"{var} == {value_name(var, value)}"


def assignment_text(assign: dict, env: Environment | None = None) -> list[str]:
    return [fact_text(k, v, env) for k, v in assign.items()]


# --------------------------------------------------------------------------------------
# Tracking proxies: subclasses whose categorical attributes come from an evaluator, which
# logs every read.


class _Evaluator:
    """The current categorical assignment; logs the facts rules read."""

    def __init__(self, values: dict, env: Environment) -> None:
        self.values = values  # var -> value (a full assignment)
        self.env = env        # the base environment (build facts)
        self.log: list | None = None
        self.facts: list | None = None

    def get(self, var: str):
        if self.log is not None:
            self.log.append(var)
        return self.values[var]

    def fact(self, name: str):
        if self.facts is not None:
            self.facts.append(name)


_SPEC_BIND_FIELDS = frozenset({"dtype", "device", "layout", "memory_format", "requires_grad"})


class _TSpec(TensorSpec):
    _bind: ClassVar[dict] = {}  # the class's default; _tspec sets each instance's own
    _ev: Any = None

    def __getattribute__(self, name):
        if name in _SPEC_BIND_FIELDS:
            bind = object.__getattribute__(self, "_bind")
            var = bind.get(name)
            if var is not None:
                return object.__getattribute__(self, "_ev").get(var)
        return object.__getattribute__(self, name)

    __hash__ = object.__hash__

    def suggest_memory_format(self, exact_match: bool = False) -> Any:
        """:meth:`TensorSpec.suggest_memory_format`, memoised on the shape terms, the explicit
        strides and the facts it reads (the layout, then the memory format when no strides are
        given: read here in that order, as the original reads them, so the logged reads are
        the same). Nodes of the decision tree ask it again and again with other dtypes or
        flags; the terms it builds (channels-last stride tests) are the costly part."""
        layout = self.layout
        if layout != torch.strided:
            return TensorSpec.suggest_memory_format(self, exact_match)
        strides = object.__getattribute__(self, "strides")
        mf = self.memory_format if strides is None else None
        shape = object.__getattribute__(self, "shape")
        key = (_term_ids(shape), None if strides is None else _term_ids(strides), mf,
               bool(exact_match))
        hit = _SUGGEST_MEMO.get(key)
        if hit is None:  # the entry keeps the shape and strides alive: their ids stay theirs
            hit = _SUGGEST_MEMO[key] = ((shape, strides),
                                        TensorSpec.suggest_memory_format(self, exact_match))
        return hit[1]


def _term_ids(xs) -> tuple:
    return tuple(x.get_id() if isinstance(x, z3.ExprRef) else ("v", x) for x in xs)


_SUGGEST_MEMO: dict = {}


def _tspec(spec: TensorSpec, ev: _Evaluator, bind: dict) -> _TSpec:
    t = _TSpec(spec.shape, dtype=spec.dtype, device=spec.device,
               requires_grad=spec.requires_grad, memory_format=spec.memory_format,
               layout=spec.layout, strides=spec.strides)
    object.__setattr__(t, "_bind", bind)
    object.__setattr__(t, "_ev", ev)
    return t


class _TEnv(Environment):
    _ev: Any = None

    def __getattribute__(self, name):
        if name in _ENV_FIELDS:
            ev = object.__getattribute__(self, "_ev")
            if ev is not None:
                if name in _FLAG_SET:
                    return ev.get(name)
                ev.fact(name)
        return object.__getattribute__(self, name)

    __hash__ = object.__hash__


_FLAG_SET = frozenset(FLAG_VARS)


def _tenv(env: Environment, ev: _Evaluator) -> _TEnv:
    t = _TEnv(**{f.name: getattr(env, f.name) for f in dataclasses.fields(Environment)})
    object.__setattr__(t, "_ev", ev)
    return t


_PARAM_FLAGS = {"benchmark": "cudnn_benchmark", "deterministic": "deterministic",
                "cudnn_enabled": "cudnn_enabled", "allow_tf32": "cudnn_allow_tf32"}


class _TParams(ConvParams):
    _tenv: Any = None

    def __getattribute__(self, name):
        mapped = _PARAM_FLAGS.get(name)
        if mapped is not None:
            tenv = object.__getattribute__(self, "_tenv")
            if tenv is not None:
                return getattr(tenv, mapped)
        return object.__getattribute__(self, name)


class _TCtx(Ctx):
    def __getattribute__(self, name):
        if name == "need_backward":
            env = object.__getattribute__(self, "env")
            inp = object.__getattribute__(self, "input")
            return bool(env.grad_enabled and inp.requires_grad)
        return object.__getattribute__(self, name)

    __hash__ = object.__hash__


# --------------------------------------------------------------------------------------
# Structures: one prepare() per (dims, transposed), with Z3 symbols for every integer.


@dataclasses.dataclass
class Structure:
    dims: int
    transposed: bool
    symbols: dict          # name -> z3 Int
    sizes: tuple           # names of tensor sizes (non-negative)
    params: tuple          # names of parameters
    derived: dict          # extra names usable in constraints (name -> z3 term)
    checks: list           # prepare()'s recorded checks (z3 conditions that must hold)
    valid: Any             # their conjunction and the non-negativity of sizes
    input_shape: tuple     # z3 terms
    weight_shape: tuple
    stride: list
    padding: list
    dilation: list
    output_padding: list
    groups: Any
    ctx: Ctx               # the untracked ctx of prepare() (default categorical facts)
    viewed_1d: bool

    @property
    def key(self) -> tuple:
        return (self.dims, self.transposed)

    def names(self) -> dict:
        out = dict(self.symbols)
        out.update(self.derived)
        return out


def _preferred(name: str) -> int:
    if name.startswith("pad") or name.startswith("opad"):
        return 0
    return 1


def build_structure(env: Environment, dims: int, transposed: bool) -> Structure:
    sp = SPATIAL[dims]
    Z = z3.Int
    syms: dict = {}

    def s(name):
        if name not in syms:
            syms[name] = Z(name)
        return syms[name]

    inp = (s("N"), s("C")) + tuple(s(x) for x in sp)
    if transposed:
        wt = (s("C"), s("Cg")) + tuple(s("k" + x) for x in sp)
    else:
        wt = (s("Cout"), s("Cg")) + tuple(s("k" + x) for x in sp)
    sizes = tuple(syms)
    stride = [s("stride" + x) for x in sp]
    padding = [s("pad" + x) for x in sp]
    dilation = [s("dil" + x) for x in sp]
    opad = [s("opad" + x) for x in sp]
    groups = s("G")
    params = tuple(n for n in syms if n not in sizes)
    derived = {"Cout": syms["Cg"] * groups} if transposed else {}
    p = prepare(TensorSpec(inp), TensorSpec(wt), None, stride, padding, dilation, transposed,
                opad, groups, env=env, need_backward=False)
    if p.stopped:  # pragma: no cover - every check is undecided for free symbols
        raise AssertionError("symbolic prepare stopped")
    checks = [c.cond for c in p.checker.checks]
    nonneg = [syms[n] >= 0 for n in sizes]
    valid = z3.And(*(nonneg + [D.to_z3(c) for c in checks]))
    return Structure(dims, transposed, syms, sizes, params, derived, list(p.checker.checks),
                     valid, inp, wt, stride, padding, dilation, opad, groups, p.ctx,
                     p.viewed_1d)


# --------------------------------------------------------------------------------------
# Categorical variables


@dataclasses.dataclass(frozen=True)
class Var:
    name: str
    values: tuple
    default: Any
    kind: str  # "struct" | "tensor" | "flag"


def variables(env: Environment, dims: int) -> dict[str, Var]:
    """The categorical facts (and their values) for one number of spatial dims."""
    devices = ["cpu"]
    if env.cuda_available:
        devices.append("cuda")
    if env.mps_available:
        devices.append("mps")
    devices.append("meta")
    mfs = [torch.contiguous_format]
    if dims == 2:
        mfs.append(torch.channels_last)
    elif dims == 3:
        mfs.append(torch.channels_last_3d)
    layouts = [torch.strided]
    if env.mkldnn_available and dims in (2, 3):
        layouts.append(MKLDNN_LAYOUT)
    out = [
        Var("device", tuple(devices), "cpu", "tensor"),
        Var("dtype", DTYPES, torch.float32, "tensor"),
        Var("layout", tuple(layouts), torch.strided, "tensor"),
        Var("input_mf", tuple(mfs), torch.contiguous_format, "tensor"),
        Var("weight_mf", tuple(mfs), torch.contiguous_format, "tensor"),
        Var("requires_grad", (False, True), False, "tensor"),
    ]
    for name in FLAG_VARS:
        cur = getattr(env, name)
        if name == "num_threads":
            vals = (cur, 2 if cur == 1 else 1)
        elif name == "cudnn_depthwise_kernel":
            vals = (cur,) + tuple(v for v in ("auto", "cudnn", "native") if v != cur) \
                if env.version >= (2, 13) else (cur,)
        else:
            vals = (cur, not cur)
        out.append(Var(name, vals, cur, "flag"))
    return {v.name: v for v in out}


_VARS_CACHE: dict = {}


def _variables(env: Environment, dims: int) -> dict[str, Var]:
    """:func:`variables`, made once per environment and dims (do not modify the result)."""
    key = (env, dims)
    hit = _VARS_CACHE.get(key)
    if hit is None:
        if len(_VARS_CACHE) > 256:
            _VARS_CACHE.clear()
        hit = _VARS_CACHE[key] = variables(env, dims)
    return hit


def _valid_combo(ev: _Evaluator) -> bool:
    """Combinations that can't be built as tensors (read lazily, so tracked)."""
    if ev.get("layout") == MKLDNN_LAYOUT:
        return ev.get("device") == "cpu" and ev.get("dtype") == torch.float32 and \
            ev.get("input_mf") == torch.contiguous_format and not ev.get("requires_grad")
    if ev.get("device") == "mps":
        return ev.get("dtype") != torch.float64
    return True


# --------------------------------------------------------------------------------------
# Leaves


@dataclasses.dataclass
class Leaf:
    """A partial categorical assignment under which ``formula`` (over the structure's symbols)
    is the condition for the queried outcome; facts not in ``assign`` don't matter."""

    structure: Structure
    assign: dict            # var -> value (only vars that were branched on)
    formula: Any            # z3 bool: the outcome holds (valid-call conditions not included)
    parts: dict             # rule name -> [(label, z3 term)]: the formula, rule by rule
    cost: tuple

    @property
    def rules(self) -> tuple:
        return tuple(self.parts)

    def full_assignment(self, space: Space) -> dict:
        return space.full(self.structure.dims, self.assign)


@dataclasses.dataclass
class Pruned:
    """A partial assignment under which the queried outcome is impossible, and why."""

    structure: Structure
    assign: dict
    reasons: list           # [(rule name, text)]


class Space:
    """All convolution calls under one environment (build facts fixed; flags vary), optionally
    restricted to some dims, transposed values or categorical values."""

    def __init__(self, env: Environment, *, dims: Sequence[int] | None = None,
                 restrict: dict | None = None, vary_flags: bool = True) -> None:
        self.env = env
        self.dims = tuple(dims) if dims else (2, 1, 3)
        self.restrict = dict(restrict or {})
        self.vary_flags = vary_flags
        self._structures: dict = {}
        self._vars = {d: dict(_variables(env, d)) for d in self.dims}
        for d in self.dims:
            for name, values in self.restrict.items():
                if name in self._vars[d]:
                    v = self._vars[d][name]
                    keep = tuple(x for x in v.values if x in values)
                    self._vars[d][name] = dataclasses.replace(
                        v, values=keep, default=v.default if v.default in keep else
                        (keep[0] if keep else None))
            if not vary_flags:
                for name in FLAG_VARS:
                    v = self._vars[d][name]
                    if name not in self.restrict:
                        self._vars[d][name] = dataclasses.replace(v, values=(v.default,))
        # condition values depend on the facts they read and the build facts only: share
        # them between spaces of the same build (whatever their flags' defaults)
        shared = _SHARED.setdefault(_build_key(env), ({}, {}))
        self._cond_cache: dict = shared[0]
        self._ctx_cache: dict = shared[1]

    # ---- structure and variables
    def transposed_values(self) -> tuple:
        vals: tuple[bool, ...] = (False, True)
        if "transposed" in self.restrict:
            vals = tuple(v for v in vals if v in self.restrict["transposed"])
        return vals

    def _dims_ok(self, d: int) -> bool:
        """False when a restriction leaves some fact of ``d``-D calls without a value (e.g.
        channels_last asked of 1-D calls)."""
        return all(v.values for v in self._vars[d].values())

    def structures(self) -> list[Structure]:
        return [self.structure(d, t) for d in self.dims if self._dims_ok(d)
                for t in self.transposed_values()]

    def structure(self, dims: int, transposed: bool) -> Structure:
        key = (dims, transposed)
        if key not in self._structures:
            self._structures[key] = _cached_structure(self.env, dims, transposed)
        return self._structures[key]

    def vars(self, dims: int) -> dict[str, Var]:
        return self._vars[dims]

    def full(self, dims: int, assign: dict) -> dict:
        out = {n: v.default for n, v in self._vars[dims].items()}
        out.update(assign)
        return out

    def empty_domain(self) -> str | None:
        if not any(self._dims_ok(d) for d in self.dims):
            for name, v in self._vars[self.dims[0]].items():
                if not v.values:
                    return name
        if not self.transposed_values():
            return "transposed"
        return None

    # ---- tracked contexts
    def leaf_ctx(self, st: Structure, assign: dict) -> Ctx:
        """The rules' view of a (partial) categorical assignment (defaults elsewhere)."""
        return self._tracked(st, _Evaluator(self.full(st.dims, assign), self.env))

    def _shared(self, st: Structure, values: dict) -> tuple:
        """One evaluator and tracked context per structure, re-pointed at each node."""
        hit = self._ctx_cache.get(st.key)
        if hit is None:
            ev = _Evaluator(values, self.env)
            hit = (ev, self._tracked(st, ev))
            self._ctx_cache[st.key] = hit
        hit[0].values = values
        return hit

    def _tracked(self, st: Structure, ev: _Evaluator) -> Ctx:
        tenv = _tenv(self.env, ev)
        base = st.ctx
        in_bind = {"dtype": "dtype", "device": "device", "layout": "layout",
                   "requires_grad": "requires_grad"}
        w_bind = {"dtype": "dtype", "device": "device"}
        if not st.viewed_1d:
            in_bind["memory_format"] = "input_mf"
            w_bind["memory_format"] = "weight_mf"
        inp = _tspec(base.input, ev, in_bind)
        wgt = _tspec(base.weight, ev, w_bind)
        bp = base.params
        params = _TParams(list(bp.stride), list(bp.padding), list(bp.dilation), bp.transposed,
                          list(bp.output_padding), bp.groups)
        object.__setattr__(params, "_tenv", tenv)
        return _TCtx(inp, wgt, None, None, params, tenv, False)

    def _cond(self, st: Structure, ev: _Evaluator, ctx: Ctx, ri: int, ci: int):
        """(value, reads, facts) of one condition, memoised on the facts it read."""
        return self._cond_truth(st, ev, ctx, ri, ci)[:3]

    def _cond_truth(self, st: Structure, ev: _Evaluator, ctx: Ctx, ri: int, ci: int):
        """(value, reads, facts, truth) of one condition, memoised on the facts it read."""
        # keyed on the condition itself: rules share conditions (use_cudnn, is_depthwise),
        # and a condition's value depends only on the facts it read
        key = (st.key, RULES[ri].conds[ci])
        entries = self._cond_cache.setdefault(key, [])
        vals = ev.values
        for hit in entries:
            for v, x in hit[1]:
                if vals[v] != x:
                    break
            else:
                return hit[0]
        ev.log, ev.facts = [], []
        try:
            value = RULES[ri].conds[ci](ctx)
        finally:
            log, facts = ev.log, ev.facts
            ev.log = ev.facts = None
        reads = tuple((v, vals[v]) for v in dict.fromkeys(log))
        if not isinstance(value, (bool, z3.ExprRef)):
            if isinstance(value, (int,)):
                value = bool(value)
            else:
                value = D.to_z3(value)
        out = (value, reads, tuple(dict.fromkeys(facts)), D.truth(value))
        entries.append((out, reads))
        return out

    def _rule(self, st, ev, ctx, ri: int, fixed: dict):
        """Status of rule ``ri``: ('F', reads, (cond, facts)) with as few unfixed reads as
        possible, ('T', reads, None) or ('S', reads, formula)."""
        rule = RULES[ri]
        best = None
        allreads: dict = {}
        parts = []
        decided_true = True
        for ci, cond in enumerate(rule.conds):
            try:
                value, reads, facts, t = self._cond_truth(st, ev, ctx, ri, ci)
            except Exception:  # torch would not evaluate it after a false one
                if best is not None:
                    continue
                raise
            if t is False:
                unfixed = sum(1 for v, _ in reads if v not in fixed)
                if best is None or unfixed < best[0]:
                    best = (unfixed, reads, (cond, facts))
                if unfixed == 0:
                    break
                continue
            for r in reads:
                allreads[r] = True
            if t is None:
                decided_true = False
                parts.append(value)
        if best is not None:
            return "F", best[1], best[2]
        if decided_true:
            return "T", tuple(allreads), None
        return "S", tuple(allreads), (parts[0] if len(parts) == 1 else _and(parts))

    def _false_text(self, info) -> str:
        cond, facts = info
        shown = [f for f in facts if f not in ("torch_version",)]
        if not shown:
            return f"{cond.text} is false"
        vals = ", ".join(f"{f}={getattr(self.env, f)!r}" for f in shown)
        return f"{cond.text} is false (build: {vals})"

    def _node(self, st: Structure, fixed: dict, targets: Sequence[int]):
        """Evaluate one node: ('pruned', reads, reasons) or ('leaf', reads, formula, rules)."""
        ev, ctx = self._shared(st, self.full(st.dims, fixed))
        # impossible combinations first
        ev.log, ev.facts = [], []
        ok = _valid_combo(ev)
        vreads = tuple((v, ev.values[v]) for v in dict.fromkeys(ev.log))
        ev.log = ev.facts = None
        if not ok:
            return ("pruned", vreads, [("", "these facts can't be combined in a tensor")])
        reads: dict = dict.fromkeys(vreads)
        statuses: dict = {}

        def status(ri):
            if ri not in statuses:
                statuses[ri] = self._rule(st, ev, ctx, ri, fixed)
            return statuses[ri]

        live = []
        reasons = []
        for ri in targets:
            s = status(ri)
            if s[0] == "F":
                for r in s[1]:
                    reads[r] = True
                reasons.append((RULES[ri].name, self._false_text(s[2])))
            else:
                live.append(ri)
        if not live:
            return ("pruned", tuple(reads), reasons)
        parts: dict = {}
        # the rules before each live rule, walked once: the first that always fires shadows
        # every later rule; the undecided ones must not fire (their negations, made once)
        prefix: list = []     # (label, not cond) of the undecided rules before ``upto``
        upto = 0              # rules [0, upto) are in ``prefix``
        logged = 0            # the reads of rules [0, logged) are in ``reads``
        shadow = None
        for ri in live:
            while upto < ri and shadow is None:
                s = status(upto)
                if s[0] == "T":
                    shadow = upto
                elif s[0] == "S":
                    prefix.append((f"not {RULES[upto].name}", _not(s[2])))
                upto += 1
            if shadow is not None and shadow < ri:
                for r in status(shadow)[1]:
                    reads[r] = True
                reasons.append((RULES[ri].name, f"rule '{RULES[shadow].name}' "
                                f"({_outcome_name(RULES[shadow].outcome)}) always fires first"))
                continue
            for j in range(logged, ri):
                for r in status(j)[1]:
                    reads[r] = True
            logged = ri
            s = status(ri)
            for r in s[1]:
                reads[r] = True
            terms = list(prefix)
            if s[0] == "S":
                terms.append((RULES[ri].name, s[2]))
            parts[RULES[ri].name] = terms
        if not parts:
            return ("pruned", tuple(reads), reasons)
        formulas = [_conj([t for _, t in terms]) for terms in parts.values()]
        f = formulas[0] if len(formulas) == 1 else _or(formulas)
        return ("leaf", tuple(reads), f, parts)

    def explore(self, targets: Sequence[int], *, structures: Sequence[Structure] | None = None
                ) -> Iterator[Leaf | Pruned]:
        """Leaves (and pruned nodes) of the decision tree for the rules ``targets``, cheapest
        first: the cost of a node counts the facts that differ from the environment's
        defaults (flags weigh more than tensor facts)."""
        targets = sorted(targets)
        heap: list = []
        counter = itertools.count()
        for st in (structures if structures is not None else self.structures()):
            base = (0 if st.dims == self.dims[0] else 1) + (1 if st.transposed else 0)
            heapq.heappush(heap, ((0, base, 0), next(counter), st, {}))
        while heap:
            cost, _, st, fixed = heapq.heappop(heap)
            vars_ = self._vars[st.dims]
            res = self._node(st, fixed, targets)
            unfixed = [v for v, _ in res[1] if v not in fixed]
            if unfixed:
                name = unfixed[0]
                var = vars_[name]
                for value in var.values:
                    nf = dict(fixed)
                    nf[name] = value
                    c = _cost(cost, var, value)
                    heapq.heappush(heap, (c, next(counter), st, nf))
                continue
            if res[0] == "pruned":
                yield Pruned(st, fixed, res[2])
            else:
                yield Leaf(st, fixed, res[2], res[3], cost)


def _conj(terms: list):
    if not terms:
        return z3.BoolVal(True)
    return terms[0] if len(terms) == 1 else _and(terms)


def _mk(fn, terms: list):
    """``z3.And``/``z3.Or`` of boolean terms without the per-argument coercion (the same
    term, at a fraction of the cost)."""
    ctx = terms[0].ctx
    arr = (z3.Ast * len(terms))()
    for i, x in enumerate(terms):
        arr[i] = x.as_ast()
    return z3.BoolRef(fn(ctx.ref(), len(terms), arr), ctx)


def _and(terms: list):
    return _mk(z3.z3core.Z3_mk_and, terms)


def _or(terms: list):
    return _mk(z3.z3core.Z3_mk_or, terms)


_NOT_MEMO: dict = {}


def _not(t):
    """``z3.Not(t)``, memoised on the term (rules' conditions are negated at every node)."""
    hit = _NOT_MEMO.get(t.get_id())
    if hit is None or not hit[0].eq(t):
        hit = _NOT_MEMO[t.get_id()] = (t, z3.Not(t))
    return hit[1]


def _cost(cost: tuple, var: Var, value: Any) -> tuple:
    flags, base, tensor = cost
    if value == var.default:
        return cost
    if var.kind == "flag":
        return (flags + 1, base, tensor)
    return (flags, base, tensor + 1)


def _outcome_name(o: Any) -> str:
    if isinstance(o, ConvBackend):
        return o.name
    return f"error: {o.name}"


_STRUCT_CACHE: dict = {}
_SHARED: dict = {}


def _build_key(env: Environment) -> tuple:
    return tuple((f, getattr(env, f)) for f in sorted(_BUILD_FIELDS))


def _struct_env_key(env: Environment) -> tuple:
    # prepare()'s checks depend on build facts (the version, today); its flags are overridden
    # by the tracking proxies
    return _build_key(env)


def _cached_structure(env: Environment, dims: int, transposed: bool) -> Structure:
    key = (_struct_env_key(env), dims, transposed)
    st = _STRUCT_CACHE.get(key)
    if st is None:
        st = build_structure(env, dims, transposed)
        _STRUCT_CACHE[key] = st
    return st


_SPACE_CACHE: dict = {}


def clear_caches() -> None:
    """Forget every cached structure, condition value and space (for cold measurements)."""
    _STRUCT_CACHE.clear()
    _SHARED.clear()
    _SPACE_CACHE.clear()
    _NOT_MEMO.clear()
    _SUGGEST_MEMO.clear()
    D.clear_term_memo()


def space(env: Environment, *, dims: Sequence[int] | None = None, restrict: dict | None = None,
          vary_flags: bool = True) -> Space:
    """A (cached) :class:`Space`: condition evaluations are memoised across queries."""
    key = (env, tuple(dims) if dims else None,
           tuple(sorted(((k, tuple(v)) for k, v in (restrict or {}).items()), key=str)),
           vary_flags)
    try:
        sp = _SPACE_CACHE.get(key)
    except TypeError:
        return Space(env, dims=dims, restrict=restrict, vary_flags=vary_flags)
    if sp is None:
        if len(_SPACE_CACHE) > 32:
            _SPACE_CACHE.pop(next(iter(_SPACE_CACHE)))
        sp = Space(env, dims=dims, restrict=restrict, vary_flags=vary_flags)
        _SPACE_CACHE[key] = sp
    return sp
