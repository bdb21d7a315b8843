"""``diff``: for which calls do two environments (builds, machines, flags or torch versions)
answer differently?

Both sides are the same rule table read under two environments, so the difference is exact: a
decision tree over the categorical facts (side A's tree, refined by side B's under each of its
leaves, then by the facts the memory format reads), and under each leaf every pair of outcomes
(side A's case, side B's case) with different answers whose conjunction Z3 finds satisfiable is a
region. An outcome is the error of the shape checks or of selection (which check), or the backend
with its memory format; the output shape is compared where both sides answer with a backend.
"No difference" is a proof: every candidate pair was unsatisfiable.

Runtime flags that are equal on both sides vary together (set the same on both machines); flags
that differ are each side's own. Build facts never vary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import operator
import os
import signal
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import z3

from .. import domain as D
from ..api import prepare
from ..backends import ConvBackend
from ..env import Environment, environment_for, preset
from ..errors import ConvError
from ..params import ConvParams
from ..profiles import profile
from ..rules import RULES, ErrorOutcome, determine_backend_memory_format, evaluate
from ..shapes import SEED_GROUPS_ZERO, calc_output_size
from ..spec import (MF_CHANNELS_LAST, MF_CHANNELS_LAST_3D, MF_CONTIGUOUS, MKLDNN_LAYOUT,
                    TensorSpec)
from . import pretty, solve
from .reach import env_summary
from .space import (FLAG_VARS, SPATIAL, TENSOR_VARS, Space, Structure, _build_key, _Evaluator,
                    _valid_combo, fact_text, value_name, variables)
from .where import Where, WhereError, parse_where, require_satisfiable
from .witness import build_tensor, env_name, fact_tags, torch_flags

__all__ = ["diff", "DiffResult", "DiffRegion", "DiffWitness", "resolve_sides", "sampled_check",
           "DEFAULT_BOX", "concrete_outcome"]

MF_TEXT = {MF_CONTIGUOUS: "contiguous", MF_CHANNELS_LAST: "channels_last",
           MF_CHANNELS_LAST_3D: "channels_last_3d"}
CRASH = "crash: integer division by zero (groups == 0)"

# The bounded box of the coverage estimate: every integer uniform in its range.
DEFAULT_BOX = {"N": (0, 16), "C": (0, 16), "Cout": (0, 16), "Cg": (0, 16), "G": (0, 4),
               "k": (0, 5), "L": (0, 40), "D": (0, 40), "H": (0, 40), "W": (0, 40),
               "stride": (1, 3), "pad": (0, 3), "dil": (1, 3), "opad": (0, 2)}


def _box_range(name: str, box: dict) -> tuple[int, int]:
    if name in box:
        return box[name]
    for prefix in ("stride", "opad", "pad", "dil", "k"):
        if name.startswith(prefix):
            return box[prefix]
    raise KeyError(name)


# --------------------------------------------------------------------------------------
# Outcomes


def outcome_text(label: tuple) -> str:
    if label[0] == "error":
        return f"error: {label[1]}"
    if label[0] == "crash":
        return CRASH
    if label[0] == "passes":
        return "passes the shape checks"
    return f"{label[1]} ({MF_TEXT.get(label[2], label[2])})"


def _side_env(env: Environment, flags: dict) -> Environment:
    return env.replace(**flags) if flags else env


def concrete_outcome(env: Environment, dims: int, transposed: bool, values: dict,
                     facts: dict) -> tuple[tuple, Any, str]:
    """symconv's concrete (int) answer for one call: ``(label, output shape or None,
    message)``; a label is ``('error', check or rule name)``, ``('crash',)`` or
    ``('backend', name, memory format code)``."""
    inp, wgt, args = _call(dims, transposed, values, facts)
    try:
        p = prepare(inp, wgt, None, *args, env=env)
    except ZeroDivisionError:
        return ("crash",), None, CRASH
    except ConvError as e:
        name = getattr(getattr(e, "check", None), "name", None) or type(e).__name__
        if name == SEED_GROUPS_ZERO:
            return ("crash",), None, CRASH
        return ("error", name), None, str(e).splitlines()[0] if str(e) else ""
    try:
        _, outcome = evaluate(p.ctx)
    except IndexError as e:  # pragma: no cover - the rule table has an error rule for it
        return ("error", "IndexError"), None, str(e)
    if isinstance(outcome, ErrorOutcome):
        exc = outcome.exception(p.ctx)
        return ("error", outcome.name), None, str(exc).splitlines()[0]
    mf = determine_backend_memory_format(p.ctx.input, p.ctx.weight, outcome, env)
    stride, padding, dilation, transposed_, output_padding, groups = args
    params = ConvParams(stride, padding, dilation, transposed_, output_padding, groups)
    shape = tuple(int(x) for x in calc_output_size(inp, wgt, params))
    return ("backend", outcome.name, int(mf)), shape, ""


_DT = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
       "bfloat16": torch.bfloat16}
_MFS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last,
        "channels_last_3d": torch.channels_last_3d}


def _call(dims: int, transposed: bool, v: dict, facts: dict
          ) -> tuple[TensorSpec, TensorSpec, tuple[list, list, list, bool, list, int]]:
    """The call's input and weight specs and its ``(stride, padding, dilation, transposed,
    output_padding, groups)``."""
    sp = SPATIAL[dims]
    ishape = (v["N"], v["C"]) + tuple(v[s] for s in sp)
    wshape = ((v["C"] if transposed else v["Cout"]), v["Cg"]) + tuple(v["k" + s] for s in sp)
    f = facts
    layout = MKLDNN_LAYOUT if f["layout"] == "mkldnn" else torch.strided
    inp = TensorSpec(ishape, dtype=_DT[f["dtype"]], device=f["device"],
                     requires_grad=f["requires_grad"], layout=layout,
                     memory_format=_MFS[f["input_mf"]])
    wgt = TensorSpec(wshape, dtype=_DT[f["dtype"]], device=f["device"],
                     memory_format=_MFS[f["weight_mf"]])
    args = ([v["stride" + s] for s in sp], [v["pad" + s] for s in sp],
            [v["dil" + s] for s in sp], transposed, [v["opad" + s] for s in sp], v["G"])
    return inp, wgt, args


def torch_outcome(flags: dict, dims: int, transposed: bool, values: dict, facts: dict
                  ) -> tuple[str, str]:
    """Ask the installed torch (flags set) for ``(kind, text)``: ``('backend', 'Mkldnn
    (contiguous)')`` or ``('error', first line)``."""
    inp, wgt, args = _call(dims, transposed, values, facts)
    with torch_flags(flags):
        try:
            x = build_tensor({"shape": list(inp.shape), "dtype": facts["dtype"],
                              "device": facts["device"], "memory_format": facts["input_mf"],
                              "layout": facts["layout"],
                              "requires_grad": facts["requires_grad"]})
            w = build_tensor({"shape": list(wgt.shape), "dtype": facts["dtype"],
                              "device": facts["device"], "memory_format": facts["weight_mf"]})
        except Exception as e:  # noqa: BLE001 - e.g. a storage beyond int64 bytes
            return "unbuildable", (str(e).splitlines()[0] if str(e) else type(e).__name__)
        try:
            raw = torch._C._select_conv_backend(x, w, None, *args)
        except Exception as e:  # noqa: BLE001 - torch's answer
            return "error", (str(e).splitlines()[0] if str(e) else type(e).__name__)
        b = ConvBackend.from_torch(raw)
        mf = torch._C._conv_determine_backend_memory_format(x, w, raw)
    name = {torch.contiguous_format: "contiguous", torch.channels_last: "channels_last",
            torch.channels_last_3d: "channels_last_3d"}.get(mf, str(mf))
    return "backend", f"{b.name} ({name})"


# --------------------------------------------------------------------------------------
# Results


@dataclasses.dataclass
class SideCheck:
    side: str             # "A" | "B"
    status: str           # "validated" | "mismatch" | "not-validated"
    message: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class DiffWitness:
    dims: int
    transposed: bool
    values: dict
    facts: dict
    flags_a: dict
    flags_b: dict
    outcome_a: str        # symconv's concrete answers (the int path)
    outcome_b: str
    differs: bool         # the concrete answers really differ
    checks: list          # SideCheck per side: torch's answer where this process is that side

    def call_text(self) -> str:
        inp, wgt, args = _call(self.dims, self.transposed, self.values, self.facts)
        extra, wextra = fact_tags(self.facts)
        w = f" {wextra[0]}" if wextra else ""
        return (f"input {list(inp.shape)} {' '.join(extra)}, weight {list(wgt.shape)}{w}, "
                f"stride={args[0]} padding={args[1]} dilation={args[2]} "
                f"transposed={self.transposed} output_padding={args[4]} groups={args[5]}")

    def to_json(self) -> dict:
        inp, wgt, args = _call(self.dims, self.transposed, self.values, self.facts)
        return {"input": list(inp.shape), "weight": list(wgt.shape), "stride": args[0],
                "padding": args[1], "dilation": args[2], "transposed": self.transposed,
                "output_padding": args[4], "groups": args[5], "facts": dict(self.facts),
                "flags_a": dict(self.flags_a), "flags_b": dict(self.flags_b),
                "values": dict(self.values), "outcome_a": self.outcome_a,
                "outcome_b": self.outcome_b, "differs": self.differs,
                "checks": [c.to_json() for c in self.checks]}


@dataclasses.dataclass
class DiffRegion:
    facts: dict             # categorical facts (dims, transposed, then the leaf's literals)
    a: str                  # side A's answer
    b: str                  # side B's answer
    conditions: list        # readable integer conditions (all hold)
    kind: str               # "backend" | "memory format" | "error" | "output shape"
    structure: Structure
    assign: dict
    # z3: the region's integer condition (exact; :attr:`formula`); from a worker process, a
    # _Deferred read back when first used
    formula_: Any
    witness: DiffWitness | None = None
    coverage: float | None = None
    hits: int = 0
    unknown: bool = False
    # the regions merged into this one, each with its own facts and formula (none: unmerged)
    merged: list = dataclasses.field(default_factory=list, repr=False, compare=False)
    # a model of the formula (symbol name -> int), found when the region was proved
    model: dict | None = dataclasses.field(default=None, repr=False, compare=False)
    # a call of the coverage box in the region (small values: the witness starts there)
    box_start: dict | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def formula(self) -> Any:
        """The region's integer condition (a z3 boolean over the structure's symbols)."""
        f = self.formula_
        if isinstance(f, _Deferred):
            f = self.formula_ = f.get()
        return f

    @property
    def parts(self) -> list:
        """The regions this one was merged from (itself if it was not merged)."""
        return self.merged or [self]

    def facts_text(self) -> str:
        out = []
        for k, v in self.facts.items():
            if isinstance(v, tuple):
                out.append(f"{k} in ({', '.join(value_name(k, x) for x in v)})")
            else:
                out.append(fact_text(k, v))
        return " and ".join(out)

    def text(self) -> str:
        conds = " and ".join(self.conditions) if self.conditions else "always"
        return f"{self.facts_text()} and {conds}"

    def to_json(self) -> dict:
        return {"kind": self.kind, "a": self.a, "b": self.b,
                "facts": {k: ([value_name(k, x) for x in v] if isinstance(v, tuple) else
                              value_name(k, v) if not isinstance(v, (bool, int)) else v)
                          for k, v in self.facts.items()},
                "conditions": self.conditions, "text": self.text(),
                "formula": str(self.formula),
                "witness": self.witness.to_json() if self.witness else None,
                "coverage": self.coverage, "box_hits": self.hits, "unknown": self.unknown}


@dataclasses.dataclass
class DiffResult:
    env_a: Environment
    env_b: Environment
    label_a: str
    label_b: str
    dims: tuple
    where: str
    regions: list
    verdict: str            # "different" | "no difference" | "unknown"
    notes: list             # what was held equal or left out, and why
    proof: list             # for "no difference": why
    unknown: list
    seconds: float
    box: dict
    box_samples: int
    leaves: int = 0         # joint combinations of categorical facts compared
    timing: dict = dataclasses.field(default_factory=dict)  # seconds per phase
    _ctx: Any = None

    @property
    def different(self) -> bool:
        return self.verdict == "different"

    def counts(self) -> dict:
        out: dict = {}
        for r in self.regions:
            out[r.kind] = out.get(r.kind, 0) + 1
        return out

    def text(self, limit: int | None = None) -> str:
        head = (f"diff {self.label_a} ({env_summary(self.env_a)}) -> {self.label_b} "
                f"({env_summary(self.env_b)}), dims {','.join(map(str, self.dims))}")
        if self.where:
            head += f", where {self.where}"
        lines = [head]
        lines += [f"note: {n}" for n in self.notes]
        if self.verdict == "no difference":
            lines.append("no difference (proof): " + "; ".join(self.proof))
        elif self.verdict == "unknown" and not self.regions:
            lines.append("unknown: the solver did not decide every part")
        else:
            c = self.counts()
            lines.append(f"{len(self.regions)} region(s) where the answers differ ("
                         + ", ".join(f"{n} {k}" for k, n in c.items()) + "); coverage of the box "
                         f"estimated from {self.box_samples} samples per structure")
        shown = self.regions if limit is None else self.regions[:limit]
        for i, r in enumerate(shown, 1):
            cov = "" if r.coverage is None else (
                f"  [{_pct(r.coverage)} of the box]")
            lines.append(f"{i}. {r.a}  ->  {r.b}{cov}")
            lines.append(f"   when {r.text()}")
            if r.unknown:
                lines.append("   (satisfiability unknown: no witness)")
            if r.witness is not None:
                w = r.witness
                lines.append(f"   witness: {w.call_text()}")
                fl = {k: v for k, v in w.flags_a.items() if getattr(self.env_a, k) != v}
                if fl:
                    lines.append("            flags: "
                                 + ", ".join(f"{k}={v}" for k, v in fl.items()))
                mark = "differ" if w.differs else "DO NOT DIFFER (bug)"
                lines.append(f"            symconv: {w.outcome_a} -> {w.outcome_b} ({mark})")
                for ch in w.checks:
                    if ch.status != "not-validated":
                        lines.append(f"            side {ch.side}: {ch.message}")
        if limit is not None and len(self.regions) > limit:
            lines.append(f"... and {len(self.regions) - limit} more region(s) (--json lists all)")
        if self.unknown:
            lines.append("unknown (the solver did not decide):")
            lines += ["  " + u for u in self.unknown]
        lines.append(f"({self.seconds:.2f} s)")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"from": self.label_a, "to": self.label_b,
                "from_fields": self.env_a.as_dict(), "to_fields": self.env_b.as_dict(),
                "dims": list(self.dims), "where": self.where, "verdict": self.verdict,
                "notes": self.notes, "proof": self.proof, "unknown": self.unknown,
                "counts": self.counts(), "box": {k: list(v) for k, v in self.box.items()},
                "box_samples": self.box_samples, "leaves": self.leaves, "timing": self.timing,
                "regions": [r.to_json() for r in self.regions],
                "seconds": round(self.seconds, 4)}


def _pct(x: float) -> str:
    if x == 0:
        return "0% (none sampled)"
    if x < 0.0001:
        return f"{x * 100:.2g}%"
    return f"{x * 100:.2f}%"


# --------------------------------------------------------------------------------------
# Sides


def resolve_sides(a: Environment | str | None, b: Environment | str | None
                  ) -> tuple[Environment, str, Environment, str]:
    """Environments and labels of the two sides: an Environment, a preset name, ``None`` (this
    process) or a torch version (``'2.4'``, ``'2.13'``, ``'main'``), which takes the other
    side's build (the ``cpu`` preset when both are versions)."""
    def direct(x):
        if x is None:
            return Environment.from_torch(), "native"
        if isinstance(x, Environment):
            return x, env_name(x)
        if not isinstance(x, str):
            raise TypeError(f"a side must be an Environment, a preset name, a version or None, "
                            f"got {type(x).__name__}")
        if x == "native":
            return preset(x), x
        from ..env import PRESETS
        if x in PRESETS:
            return PRESETS[x][1], x
        return None, x

    ea, la = direct(a)
    eb, lb = direct(b)
    if ea is None:
        ea = environment_for(la, eb)
    if eb is None:
        eb = environment_for(lb, ea)
    return ea, la, eb, lb


# --------------------------------------------------------------------------------------
# The per-side case lists


def _checks(env: Environment, st: Structure) -> list[tuple[str, Any]]:
    """``(name, z3 pass condition)`` of the structure's shape checks, in torch's order; a
    profile without the groups check divides by ``groups`` in the divisibility check: its
    ``groups != 0`` check (shapes.SEED_GROUPS_ZERO) is that crash."""
    out = []
    for c in st.checks:
        name = "__crash__" if c.name == SEED_GROUPS_ZERO else c.name
        out.append((name, D.to_z3(c.cond) if not isinstance(c.cond, bool) else
                    z3.BoolVal(c.cond)))
    return out


def _z(x) -> Any:
    """A z3 term of a bool, an int or a symbolic value."""
    if isinstance(x, bool):
        return z3.BoolVal(x)
    if isinstance(x, int):
        return z3.IntVal(x)
    if isinstance(x, z3.ExprRef):
        return x
    return D.to_z3(x)


_TRUE = z3.BoolVal(True)
_FALSE = z3.BoolVal(False)
_TRUE_ID = _TRUE.get_id()
_FALSE_ID = _FALSE.get_id()


def _and(*xs):
    """``z3.And`` without its per-argument coercion (a tenth of the cost; the leaves build
    thousands of these), dropping ``True`` and short-cutting ``False``."""
    kept = []
    for x in xs:
        if not isinstance(x, z3.ExprRef):
            x = _z(x)
        i = x.get_id()
        if i == _TRUE_ID:
            continue
        if i == _FALSE_ID:
            return _FALSE
        kept.append(x)
    if not kept:
        return _TRUE
    return solve.conjunction(kept)


class _SideCtx:
    """One side: its environment, space and per-structure checks and output shapes."""

    def __init__(self, env: Environment, restrict: dict, dims: tuple) -> None:
        self.env = env
        self.restrict = restrict
        self.dims = dims
        self._checks: dict = {}
        self._shapes: dict = {}
        self._spec_keys: dict = {}

    def space(self, restrict_extra: dict | None = None) -> Space:
        r = dict(self.restrict)
        for k, v in (restrict_extra or {}).items():
            r[k] = v
        return Space(self.env, dims=self.dims, restrict=r)

    def memory_formats(self, st: Structure, backend: ConvBackend, ev: _Evaluator, ctx,
                       log: list) -> list:
        """``[(code, z3 condition)]`` of the backend's memory format in this context, memoised
        on the categorical facts and the build facts it read (the categorical ones are appended
        to ``log``), so sides share it wherever they read the same (the same build, or torch
        versions whose memory-format logic reads no version). The key holds the tensors' shape
        terms, so a structure that another build prepares differently has entries of its
        own."""
        sk = self._spec_keys.get(st.key)
        if sk is None or sk[0] is not ctx.input or sk[1] is not ctx.weight:
            sk = self._spec_keys[st.key] = (ctx.input, ctx.weight, _spec_key(ctx.input),
                                            _spec_key(ctx.weight))
        key = (st.key, backend, sk[2], sk[3])
        hit = _MF_CACHE.get(key)
        if hit is None:  # the specs keep their terms (the key's ids) alive
            hit = _MF_CACHE[key] = ((ctx.input.shape, ctx.weight.shape, ctx.input.strides,
                                     ctx.weight.strides), [])
        entries: list = hit[1]
        vals = ev.values
        env = self.env
        for reads, build, value in entries:
            if all(vals[v] == x for v, x in reads) and all(getattr(env, f) == x
                                                            for f, x in build):
                log.extend(v for v, _ in reads)
                return value
        ev.log, ev.facts = [], []
        try:
            mf = determine_backend_memory_format(ctx.input, ctx.weight, backend, ctx.env)
        finally:
            got, facts = ev.log, ev.facts
            ev.log = ev.facts = None
        log.extend(got)
        reads = tuple((v, vals[v]) for v in dict.fromkeys(got))
        build = tuple((f, getattr(env, f)) for f in dict.fromkeys(facts))
        if isinstance(mf, int) and not isinstance(mf, bool):
            value = [(int(mf), z3.BoolVal(True))]
        else:
            m = _z(mf)
            value = [(code, m == code) for code in _ite_values(m)]
        entries.append((reads, build, value))
        return value

    def checks(self, st: Structure) -> list:
        if st.key not in self._checks:
            self._checks[st.key] = _checks(self.env, st)
        return self._checks[st.key]

    def shape(self, st: Structure) -> list:
        if st.key not in self._shapes:
            params = ConvParams(st.stride, st.padding, st.dilation, st.transposed,
                                st.output_padding, st.groups)
            out = calc_output_size(TensorSpec(st.input_shape), TensorSpec(st.weight_shape),
                                   params)
            self._shapes[st.key] = [_z(x) for x in out]
        return self._shapes[st.key]


def _error_cases(side: _SideCtx, st: Structure) -> tuple[list, Any]:
    cases = []
    prev: list = []
    for name, cond in side.checks(st):
        label = ("crash",) if name == "__crash__" else ("error", name)
        f = _and(*(prev + [z3.Not(cond)]))
        if f.get_id() != _FALSE_ID:
            cases.append((f, label))
        prev.append(cond)
    return cases, _and(*prev)


def _rule_cases(side: _SideCtx, space: Space, leaf, st: Structure, assign: dict,
                valid: Any, log: list) -> list:
    """The leaf's rule cases, backends split by memory format (reads are logged)."""
    out: list = []
    ev, ctx = space._shared(st, space.full(st.dims, assign))
    for rname, terms in leaf.parts.items():
        rule = _RULE_BY_NAME[rname]
        f = _and(valid, *[t for _, t in terms])
        if f.get_id() == _FALSE_ID:
            continue
        if isinstance(rule.outcome, ErrorOutcome):
            out.append((f, ("error", rule.outcome.name)))
            continue
        for code, cond in side.memory_formats(st, rule.outcome, ev, ctx, log):
            out.append((_and(f, cond), ("backend", rule.outcome.name, code)))
    return out


_RULE_BY_NAME = {r.name: r for r in RULES}
# memory formats per (structure, backend, tensor shapes): see _SideCtx.memory_formats
_MF_CACHE: dict = {}


def _spec_key(spec: TensorSpec) -> tuple:
    """The z3 ids of a spec's shape and explicit strides (z3 shares equal terms: equal ids are
    equal terms while they are alive)."""
    def ids(xs) -> tuple:
        return tuple(x.get_id() if isinstance(x, z3.ExprRef) else ("int", x) for x in xs)

    return (ids(spec.shape), None if spec.strides is None else ids(spec.strides))


def _ite_values(m) -> list:
    """The constants an integer If-tree can take (all memory formats when it is not one)."""
    if z3.is_int_value(m):
        return [m.as_long()]
    if z3.is_app(m) and m.decl().kind() == z3.Z3_OP_ITE:
        out = _ite_values(m.arg(1))
        for v in _ite_values(m.arg(2)):
            if v not in out:
                out.append(v)
        return out
    return [MF_CONTIGUOUS, MF_CHANNELS_LAST, MF_CHANNELS_LAST_3D]


# --------------------------------------------------------------------------------------
# numpy evaluation of z3 formulas (coverage and the sampled check)


# numpy counterparts of z3's operators: n-ary ones folded left to right, and binary ones
_NP_FOLD: dict[int, Callable[[Any, Any], Any]] = {
    z3.Z3_OP_AND: np.logical_and, z3.Z3_OP_OR: np.logical_or, z3.Z3_OP_ADD: operator.add,
    z3.Z3_OP_SUB: operator.sub, z3.Z3_OP_MUL: operator.mul}
_NP_BINARY: dict[int, Callable[[Any, Any], Any]] = {
    z3.Z3_OP_IMPLIES: lambda x, y: np.logical_or(np.logical_not(x), y),
    z3.Z3_OP_EQ: np.equal, z3.Z3_OP_DISTINCT: np.not_equal, z3.Z3_OP_LE: np.less_equal,
    z3.Z3_OP_LT: np.less, z3.Z3_OP_GE: np.greater_equal, z3.Z3_OP_GT: np.greater}


def np_eval(e: Any, env: dict, memo: dict | None = None):
    """Evaluate a z3 integer/boolean term on numpy arrays (int64 or object) of symbol values,
    with Z3's semantics (``div``/``mod`` round towards minus infinity for positive divisors).
    ``memo`` (a dict the caller keeps for one ``env``) shares subterms across calls; each entry
    holds a reference on its term, so its id is not reused while the memo lives. The term is
    walked through Z3's C API (the Python wrappers cost most of the time)."""
    if memo is None:
        memo = {}
    ctx = e.ctx
    return _np_eval(ctx.ref(), ctx, e.as_ast(), env, memo)


_Z = z3.z3core


def _np_eval(c: Any, ctx: Any, a: Any, env: dict, memo: dict):
    key = _Z.Z3_get_ast_id(c, a)
    hit = memo.get(key)
    if hit is not None:
        return hit[1]
    ak = _Z.Z3_get_ast_kind(c, a)
    if ak == z3.Z3_NUMERAL_AST:
        r: Any = int(_Z.Z3_get_numeral_string(c, a))
    elif ak != z3.Z3_APP_AST:
        raise NotImplementedError(f"np_eval: {z3.AstRef(a, ctx)}")
    else:
        d = _Z.Z3_get_app_decl(c, a)
        k = _Z.Z3_get_decl_kind(c, d)
        n = _Z.Z3_get_app_num_args(c, a)
        if k == z3.Z3_OP_TRUE:
            r = True
        elif k == z3.Z3_OP_FALSE:
            r = False
        elif k == z3.Z3_OP_UNINTERPRETED and n == 0:
            r = env[_Z.Z3_get_symbol_string(c, _Z.Z3_get_decl_name(c, d))]
        else:
            args = [_np_eval(c, ctx, _Z.Z3_get_app_arg(c, a, i), env, memo) for i in range(n)]
            fold = _NP_FOLD.get(k)
            if fold is not None:  # n-ary, folded left to right
                r = args[0]
                for x in args[1:]:
                    r = fold(r, x)
            elif k in _NP_BINARY:
                r = _NP_BINARY[k](args[0], args[1])
            elif k == z3.Z3_OP_NOT:
                r = np.logical_not(args[0])
            elif k == z3.Z3_OP_UMINUS:
                r = -args[0]
            elif k in (z3.Z3_OP_IDIV, z3.Z3_OP_MOD):
                x, y = args
                y_safe = np.where(np.equal(y, 0), 1, y)
                q = np.where(np.greater(y_safe, 0), x // y_safe, -(x // -y_safe))
                r = q if k == z3.Z3_OP_IDIV else x - y_safe * q
            elif k == z3.Z3_OP_ITE:
                r = np.where(args[0], args[1], args[2])
            else:
                raise NotImplementedError(f"np_eval: {z3.AstRef(a, ctx)}")
    memo[key] = (z3.AstRef(a, ctx), r)  # the reference keeps the id this term's
    return r


# --------------------------------------------------------------------------------------
# diff


@dataclasses.dataclass
class _Plan:
    A: _SideCtx
    B: _SideCtx
    shared: dict            # shared categorical var -> allowed values (per dims)
    flags_a: dict           # differing flags: side A's values
    flags_b: dict
    where: Where
    dims: tuple
    bounded_padding: bool = False
    native_side: bool = False  # this process's build is one of the sides (torch can answer)
    describe_cache: dict = dataclasses.field(default_factory=dict)
    names_cache: dict = dataclasses.field(default_factory=dict)
    # memos of the readable conditions, shared by every region of the diff
    fold_memo: dict = dataclasses.field(default_factory=dict)
    nnf_memo: dict = dataclasses.field(default_factory=dict)
    text_memo: dict = dataclasses.field(default_factory=dict)
    simplifiers: dict = dataclasses.field(default_factory=dict)
    check_ids: dict = dataclasses.field(default_factory=dict)
    domain_cache: dict = dataclasses.field(default_factory=dict)

    def domain(self, st: Structure):
        """The linear part of the calls compared: when one side has the padding bound and the
        other has not, paddings stay at or below it."""
        if not self.bounded_padding:
            return _TRUE
        from ..shapes import PADDING_MAX
        return _and(*[p <= PADDING_MAX for p in st.padding])

    def fit(self, st: Structure):
        """The rest of the calls compared: those whose shape arithmetic fits int64
        (:func:`_int64_fits`). Nonlinear, so not asserted in every query: a model must satisfy
        it (else the query is asked again within it), and so must witnesses and sampled
        calls."""
        hit = self.domain_cache.get(st.key)
        if hit is None:
            hit = self.domain_cache[st.key] = _and(*_int64_fits(self, st))
        return hit

    def compared(self, st: Structure):
        """Every condition on the calls compared (``domain`` and ``fit``)."""
        return _and(self.domain(st), self.fit(st))


def _int64_fits(plan: _Plan, st: Structure) -> list:
    """Torch computes the output sizes (padded input, kernel extent, their difference over the
    stride), the channel count ``weight.size(1) * groups`` and element counts in int64 and
    wraps around where they overflow (C++); symbolic integers do not. The calls compared are
    those where every sum, difference and product of these fits int64: ``[z3 condition]``,
    one per such term that can leave int64 at all (interval bounds over int64 values, sizes
    >= 0)."""
    stb = plan.B.space().structure(st.dims, st.transposed)
    roots = (plan.A.shape(st) + plan.B.shape(stb)
             + [_z(st.weight_shape[1] * st.groups), _z(D.prod(st.input_shape)),
                _z(D.prod(st.weight_shape))])
    sizes = {st.symbols[n].get_id() for n in st.sizes}
    lo, hi = -D.INT64_MAX - 1, D.INT64_MAX
    out: list = []
    seen: dict = {}

    def interval(t) -> tuple:
        i = t.get_id()
        if i in seen:
            return seen[i]
        if z3.is_int_value(t):
            r = (t.as_long(), t.as_long())
        elif z3.is_const(t):
            r = (0 if i in sizes else lo, hi)
        elif t.sort() != z3.IntSort():  # a condition (of an If)
            for c in t.children():
                interval(c)
            r = (lo, hi)
        else:
            k = t.decl().kind()
            args = [interval(c) for c in t.children()]
            if k == z3.Z3_OP_ADD:
                r = (sum(a for a, _ in args), sum(b for _, b in args))
            elif k == z3.Z3_OP_SUB:
                r = (args[0][0] - sum(b for _, b in args[1:]),
                     args[0][1] - sum(a for a, _ in args[1:]))
            elif k == z3.Z3_OP_MUL:
                r = args[0]
                for a, b in args[1:]:
                    ps = [r[0] * a, r[0] * b, r[1] * a, r[1] * b]
                    r = (min(ps), max(ps))
            elif k == z3.Z3_OP_UMINUS:
                r = (-args[0][1], -args[0][0])
            elif k == z3.Z3_OP_IDIV:  # |x div y| <= |x| (y != 0)
                m = max(abs(args[0][0]), abs(args[0][1]))
                r = (-m, m)
            elif k == z3.Z3_OP_ITE:
                r = (min(args[1][0], args[2][0]), max(args[1][1], args[2][1]))
            else:
                r = (lo, hi)
            if k in (z3.Z3_OP_ADD, z3.Z3_OP_SUB, z3.Z3_OP_MUL) and (r[0] < lo or r[1] > hi):
                out.append(z3.And(t >= lo, t <= hi))
                r = (max(r[0], lo), min(r[1], hi))
        seen[i] = r
        return r

    for t in roots:
        interval(t)
    return out


def _plan(ea: Environment, eb: Environment, dims, where: Where) -> tuple[_Plan, list]:
    notes = []
    r = dict(where.restrict)
    dl = tuple(dims) if dims else None
    if "dims" in r:
        allowed = r.pop("dims")
        dl = tuple(d for d in (dl or (2, 1, 3)) if d in allowed)
        if not dl:
            raise WhereError("the constraints contradict each other: no number of dims is left")
    dl = dl or (2, 1, 3)
    differing = [f for f in FLAG_VARS if getattr(ea, f) != getattr(eb, f)]
    flags_a = {f: getattr(ea, f) for f in differing}
    flags_b = {f: getattr(eb, f) for f in differing}
    for f in differing:
        if f in r:
            for side, v in (("from", flags_a[f]), ("to", flags_b[f])):
                if v not in r[f]:
                    raise WhereError(f"the constraints exclude the {side} side's {f}={v!r}")
            r.pop(f)
    if where.threads:
        if "num_threads" in differing:
            for side, v in (("from", flags_a["num_threads"]), ("to", flags_b["num_threads"])):
                if not where.thread_values((v,)):
                    raise WhereError(f"the constraints exclude the {side} side's "
                                     f"num_threads={v}")
        else:
            cur = ea.num_threads
            vals = where.thread_values((cur, 2 if cur == 1 else 1))
            if not vals:
                raise WhereError("the constraints contradict each other: num_threads")
            r["num_threads"] = vals
    shared: dict = {}
    ra, rb = dict(r), dict(r)
    for d in dl:
        va, vb = variables(ea, d), variables(eb, d)
        for name in TENSOR_VARS + FLAG_VARS:
            if name in differing:
                continue
            vals = tuple(x for x in va[name].values if x in vb[name].values)
            if name in r:
                vals = tuple(x for x in vals if x in r[name])
            only = [x for x in list(va[name].values) + list(vb[name].values) if x not in vals
                    and (name not in r or x in r[name])]
            if only and name in ("device", "layout", "cudnn_depthwise_kernel"):
                n = (f"{name} {', '.join(sorted(set(value_name(name, x) for x in only)))} "
                     "exists on one side only: left out")
                if n not in notes:
                    notes.append(n)
            prev = shared.get(name)
            shared[name] = tuple(dict.fromkeys((prev or ()) + vals))
    for name, vals in shared.items():
        if not vals:
            raise WhereError(f"no value of {name} is possible on both sides under these "
                             "constraints")
        ra[name] = vals
        rb[name] = vals
    for f in differing:
        ra[f] = (flags_a[f],)
        rb[f] = (flags_b[f],)
    if differing:
        notes.append("runtime flags that differ are each side's own: " + ", ".join(
            f"{f} {flags_a[f]!r} -> {flags_b[f]!r}" for f in differing)
            + "; the other flags vary together")
    bounded = profile(ea.version).padding_bound_check != profile(eb.version).padding_bound_check
    if bounded:
        notes.append("paddings above 4611686018427387903 are left out: there the newer side "
                     "raises 'expected padding to be at most 4611686018427387903' and the older "
                     "side's int64 arithmetic wraps around (not modelled symbolically)")
    native = _build_key(Environment.from_torch())
    plan = _Plan(_SideCtx(ea, ra, dl), _SideCtx(eb, rb, dl), shared, flags_a, flags_b, where,
                 dl, bounded, native in (_build_key(ea), _build_key(eb)))
    return plan, notes


def _full_facts(space: Space, dims: int, assign: dict) -> dict:
    full = space.full(dims, assign)
    return {"device": full["device"], "dtype": value_name("dtype", full["dtype"]),
            "layout": value_name("layout", full["layout"]),
            "input_mf": value_name("input_mf", full["input_mf"]),
            "weight_mf": value_name("weight_mf", full["weight_mf"]),
            "requires_grad": bool(full["requires_grad"])}


def _flags(space: Space, dims: int, assign: dict) -> dict:
    full = space.full(dims, assign)
    return {k: full[k] for k in FLAG_VARS}


def diff(env_a: Environment | str | None, env_b: Environment | str | None, *,
         dims: int | Sequence[int] | None = None, where: str | Sequence[str] | Where | None = None,
         validate: bool = True, box: dict | None = None, box_samples: int = 2048,
         seed: int = 0, minimize: bool = False, jobs: int | None = None,
         progress=None) -> DiffResult:
    """Every region of calls where ``env_a`` and ``env_b`` answer differently: the selected
    backend, its memory format, the output shape, or the error.

    Sides are Environments, preset names, ``None`` (this process) or torch versions (``'2.4'``,
    ``'2.13'``, ``'main'``: the other side's build at that version). ``dims`` and ``where``
    restrict the calls as in :func:`symconv.reach`. Each region has a witness (a concrete call,
    answered by symconv's concrete path on both sides and, where this process is one of the
    sides, by torch) and its estimated share of a bounded box (``box``: name or prefix ->
    inclusive range, default :data:`DEFAULT_BOX`). ``verdict == 'no difference'`` is a proof.
    A witness is any call of its region with as many values as possible at their preferred
    values (strides 1, paddings 0, ...); ``minimize=True`` also shrinks the others (slower).

    ``jobs`` (default :data:`JOBS`, 2, or ``SYMCONV_DIFF_JOBS``): how many processes share the
    structures (dims x transposed): this one and ``jobs - 1`` forked workers; each structure is
    done whole by one of them, and the regions do not depend on which (a witness may be
    another call of its region: Z3's search depends on the terms a process made before). A
    worker that cannot be started or fails leaves its structures
    to this process; torch answers the witnesses here only. ``jobs=1``: no worker.
    """
    t0 = time.perf_counter()
    ea, la, eb, lb = resolve_sides(env_a, env_b)
    w = where if isinstance(where, Where) else parse_where(where)
    dims = _dims_arg(dims)
    n_jobs = _jobs_arg(jobs)
    plan, notes = _plan(ea, eb, dims, w)
    boxd = dict(DEFAULT_BOX)
    boxd.update(box or {})
    proof: list[str] = []
    sa = plan.A.space()
    structures = [st for st in sa.structures() if w.applies_to(st)]
    if not structures:
        raise WhereError("the constraints name sizes that no requested number of dims has")
    require_satisfiable(w, structures)
    args = _RunArgs(structures, boxd, box_samples, seed, validate, minimize)
    out = _run(plan, args, min(n_jobs, len(structures)), progress)
    regions, unknown, n_pairs, n_leaves, timing = out
    t1 = time.perf_counter()
    if validate:
        for r in regions:
            if r.witness is not None:
                _check_witness(plan, r)
    timing["torch_checks"] = time.perf_counter() - t1
    if regions:
        verdict = "different"
    elif unknown:
        verdict = "unknown"
    else:
        verdict = "no difference"
        proof.append(f"Z3 found every one of {n_pairs} pair(s) of differing answers "
                     f"unsatisfiable, over {n_leaves} combination(s) of categorical facts in "
                     f"{len(structures)} structure(s)" if n_pairs else
                     f"both sides give the same case split in all {n_leaves} combination(s) of "
                     f"categorical facts of {len(structures)} structure(s): no pair of "
                     "differing answers can hold together")
        if n_pairs:
            proof.append("for the calls whose shape arithmetic fits int64 (beyond it torch's "
                         "int64 arithmetic wraps around)")
        if w:
            proof.append(f"within the constraints {w.text!r}")
    res = DiffResult(ea, eb, la, lb, plan.dims, w.text, regions, verdict, notes, proof,
                     unknown, time.perf_counter() - t0, boxd, box_samples, _ctx=plan)
    res.timing = {k: round(v, 3) for k, v in timing.items()}
    res.leaves = n_leaves
    return res


JOBS = 2  # processes of a diff by default (our machines have 2 cores)


def _jobs_arg(jobs: object) -> int:
    """``jobs`` checked (an int >= 1; ``None``: ``SYMCONV_DIFF_JOBS`` or :data:`JOBS`)."""
    if jobs is None:
        text = os.environ.get("SYMCONV_DIFF_JOBS", "").strip()
        if not text:
            return JOBS
        try:
            jobs = int(text)
        except ValueError:
            raise ValueError(f"SYMCONV_DIFF_JOBS must be an integer >= 1, got {text!r}") from None
        if jobs < 1:
            raise ValueError(f"SYMCONV_DIFF_JOBS must be an integer >= 1, got {text!r}")
        return jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    return jobs


# the relative cost of a structure's diff (measured on the pairs: 2-D and 3-D calls
# have the most categorical leaves and the hardest integer conditions): the most costly are
# started first
_COST = {(2, False): 5.0, (3, False): 4.0, (3, True): 2.0, (2, True): 2.0, (1, False): 1.3,
         (1, True): 1.0}


@dataclasses.dataclass
class _RunArgs:
    structures: list   # every structure of the diff (the coverage draws for all of them)
    box: dict
    box_samples: int
    seed: int
    validate: bool
    minimize: bool


def _run(plan: _Plan, args: _RunArgs, jobs: int, progress=None) -> tuple:
    """Each structure's diff (:func:`_run_structure`), the most costly first, in this process
    and ``jobs - 1`` forked workers: each takes the next structure not yet taken when it is
    free. A worker's regions come back as plain data, their formulas as SMT-LIB text read
    back when first used; a structure a worker does not deliver (it could not be started,
    died or failed) is done here. The regions are in the structures' order, the unknown pairs
    too, whichever process did them: one process gives the same list."""
    import multiprocessing as mp
    structs = args.structures
    order = sorted(range(len(structs)), key=lambda i: (-_COST.get(structs[i].key, 1.0), i))
    done: dict = {}
    workers: list = []
    counter = None
    ctx: Any = None
    try:
        if jobs > 1:
            try:
                ctx = mp.get_context("fork")
                counter = ctx.Value("i", 0)
            except (ValueError, OSError):  # pragma: no cover - no fork here
                ctx = None
            for _ in range(jobs - 1 if ctx is not None else 0):
                try:
                    recv, send = ctx.Pipe(duplex=False)
                    proc = ctx.Process(target=_worker, args=(send, plan, args, order, counter),
                                       daemon=True)
                    with warnings.catch_warnings():
                        # forking a process that has threads (torch's): the worker runs no
                        # torch kernel, only Python, numpy and Z3 work of its own
                        warnings.simplefilter("ignore", DeprecationWarning)
                        proc.start()
                    send.close()
                    workers.append((proc, recv))
                except OSError:  # pragma: no cover - cannot fork (limits)
                    break
            if progress is not None and workers:
                progress(f"{len(workers)} worker process(es) share the {len(structs)} "
                         "structures")
        for i in _take(order, counter):
            done[i] = _run_structure(plan, args, i, progress)
        for k, (_proc, conn) in enumerate(workers, start=1):
            if progress is not None:
                progress(f"waiting for worker {k}")
            try:
                status, payload = conn.recv()
                if status == "ok":
                    done.update(_import_results(args, payload))
            except (EOFError, OSError, ValueError):  # the worker died
                pass
        for i in order:  # what no worker delivered
            if i not in done:
                done[i] = _run_structure(plan, args, i, progress)
    finally:
        for proc, conn in workers:
            conn.close()
            if proc.is_alive():
                proc.kill()
            proc.join()
    results = [done[i] for i in range(len(structs))]
    regions = [r for res in results for r in res[0]]
    unknown = [u for res in results for u in res[1]]
    n_pairs = sum(res[2] for res in results)
    n_leaves = sum(res[3] for res in results)
    timing = {"explore_compare": sum(res[4] for res in results),
              "describe_coverage_witness": sum(res[5] for res in results)}
    return regions, unknown, n_pairs, n_leaves, timing


def _take(order: list, counter):
    """The structures this process does: the next one not yet taken, while any is left (no
    counter: all of them)."""
    if counter is None:
        yield from order
        return
    while True:
        with counter.get_lock():
            k = counter.value
            counter.value += 1
        if k >= len(order):
            return
        yield order[k]


def _run_structure(plan: _Plan, args: _RunArgs, i: int, progress=None) -> tuple:
    """The diff of structure ``i``: its regions (described, merged, with coverage and
    witnesses, not yet checked on torch), the unknown pairs, the numbers of queries and of
    leaves, and the seconds of the two phases."""
    t0 = time.perf_counter()
    w = plan.where
    st = args.structures[i]
    regions: list[DiffRegion] = []
    unknown: list[str] = []
    n_leaves = n_pairs = 0
    targets = list(range(len(RULES)))
    sa = plan.A.space()
    shared_names = set(plan.shared)
    if progress is not None:
        progress(f"structure {i + 1}/{len(args.structures)}: {_st_name(st)}")
    q = _Solver(st, [st.symbols[n] >= 0 for n in st.sizes] + [
        # torch's sizes and parameters are int64
        z3.And(x >= -D.INT64_MAX - 1, x <= D.INT64_MAX) for x in st.symbols.values()] + [
        w.formula(st), plan.domain(st)], plan.fit(st))
    if w.items and solve.verdict(q.s)[0] == "unsat":
        return [], [], 0, 0, time.perf_counter() - t0, 0.0
    errs_a, valid_a = _error_cases(plan.A, st)
    sb0 = plan.B.space()
    stb = sb0.structure(st.dims, st.transposed)
    errs_b, valid_b = _error_cases(plan.B, stb)
    shape_same = all(x.eq(y) for x, y in zip(plan.A.shape(st), plan.B.shape(stb)))
    # the shape checks read no categorical fact: their differences are decided once per
    # structure (a side that passes them answers with a backend or a selection error)
    passes = ("passes",)
    found, np_ = _compare(plan, st, q, {}, errs_a + [(valid_a, passes)],
                          errs_b + [(valid_b, passes)], True, [], [], unknown)
    n_pairs += np_
    regions.extend(found)
    for la_item in sa.explore(targets, structures=[st]):
        if not hasattr(la_item, "parts"):
            continue
        shared_a = {k: v for k, v in la_item.assign.items() if k in shared_names}
        sb = plan.B.space({k: (v,) for k, v in shared_a.items()})
        stb = sb.structure(st.dims, st.transposed)
        for lb_item in sb.explore(targets, structures=[stb]):
            if not hasattr(lb_item, "parts"):
                continue
            joint = dict(shared_a)
            joint.update({k: v for k, v in lb_item.assign.items() if k in shared_names})
            for assign, ca, cb in _expand(plan, sa, sb, st, stb, la_item, lb_item, joint,
                                          valid_a, valid_b):
                n_leaves += 1
                found, np_ = _compare(plan, st, q, assign, ca, cb, shape_same,
                                      plan.A.shape(st), plan.B.shape(stb), unknown)
                n_pairs += np_
                regions.extend(found)
    t_explore = time.perf_counter() - t0
    # readable conditions, coverage, merging, witnesses
    for r in regions:
        _describe(plan, r, sa)
    _coverage(plan, regions, args.structures, args.box, args.box_samples, args.seed,
              {st.key: q})
    regions = _merge(plan, sa, regions)
    for r in regions:
        if not r.unknown:
            _witness(plan, r, r.parts[0], sa, q, args.validate, args.minimize)
    return regions, unknown, n_pairs, n_leaves, t_explore, time.perf_counter() - t0 - t_explore


def _st_name(st: Structure) -> str:
    return f"{st.dims}-D" + (" transposed" if st.transposed else "")


def _worker(conn, plan: _Plan, args: _RunArgs, order: list, counter) -> None:
    """A forked worker: the structures it takes, as plain data (:func:`_export_results`)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent stops it
        out = {i: _run_structure(plan, args, i) for i in _take(order, counter)}
        conn.send(("ok", _export_results(out)))
    except BaseException as e:  # noqa: BLE001 - reported; the parent does the structures
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def _region_record(r: DiffRegion, index: dict) -> dict:
    return {"facts": r.facts, "a": r.a, "b": r.b, "conditions": r.conditions, "kind": r.kind,
            "key": r.structure.key, "assign": r.assign, "formula": index[id(r)],
            "witness": r.witness, "coverage": r.coverage, "hits": r.hits,
            "unknown": r.unknown, "model": r.model, "box_start": r.box_start}


def _export_results(out: dict) -> dict:
    """Structure results without Z3 terms: each region (and each region it was merged from)
    as a dict, the structure's formulas as one SMT-LIB text (shared subterms written once), a
    region's formula as its index there."""
    sent = {}
    for i, (regions, unknown, n_pairs, n_leaves, t1, t2) in out.items():
        terms: list = []
        index: dict = {}
        for r in regions:
            for x in [r, *r.merged]:
                index[id(x)] = len(terms)
                terms.append(x.formula)
        s = solve.new_solver()  # only to write the terms as SMT-LIB
        s.add(*terms)
        recs = []
        for r in regions:
            rec = _region_record(r, index)
            rec["merged"] = [_region_record(x, index) for x in r.merged]
            recs.append(rec)
        sent[i] = (recs, (len(terms), s.to_smt2() if terms else ""), unknown, n_pairs,
                   n_leaves, t1, t2)
    return sent


class _Formulas:
    """A structure's region formulas from a worker: SMT-LIB text, read back (with the
    structure's own symbols) when a formula is first used."""

    def __init__(self, st: Structure, count: int, text: str) -> None:
        self.st, self.count, self.text = st, count, text
        self.terms: list | None = None

    def get(self, i: int) -> Any:
        if self.terms is None:
            body = "\n".join(line for line in self.text.splitlines()
                              if not line.startswith("(declare-fun"))
            got = z3.parse_smt2_string(body, decls=dict(self.st.symbols))
            if len(got) != self.count:  # pragma: no cover - one assertion per formula
                raise AssertionError(f"diff: {len(got)} formulas read back, {self.count} sent")
            self.terms = [got[k] for k in range(len(got))]
        return self.terms[i]


def _import_results(args: _RunArgs, payload: dict) -> dict:
    got = {}
    for i, (recs, (count, text), unknown, n_pairs, n_leaves, t1, t2) in payload.items():
        st = args.structures[i]
        forms = _Formulas(st, count, text)

        def region(rec: dict, st=st, forms=forms) -> DiffRegion:
            r = DiffRegion(rec["facts"], rec["a"], rec["b"], rec["conditions"], rec["kind"],
                           st, rec["assign"], _Deferred(forms, rec["formula"]),
                           rec["witness"], rec["coverage"], rec["hits"], rec["unknown"])
            r.model, r.box_start = rec["model"], rec["box_start"]
            return r

        regions = []
        for rec in recs:
            r = region(rec)
            r.merged = [region(x) for x in rec["merged"]]
            regions.append(r)
        got[i] = (regions, unknown, n_pairs, n_leaves, t1, t2)
    return got


@dataclasses.dataclass
class _Deferred:
    """A formula a worker computed: read back when first used."""
    source: _Formulas
    index: int

    def get(self) -> Any:
        return self.source.get(self.index)


def _dims_arg(dims: object) -> tuple[int, ...] | None:
    """``dims`` as a tuple (``None``: every number of dims); a bool or anything but 1, 2 or 3
    is refused (``True`` is not 1 here)."""
    if dims is None:
        return None
    if isinstance(dims, bool) or not isinstance(dims, (int, Sequence)) or isinstance(dims, str):
        raise ValueError(f"dims must be 1, 2 or 3 or a sequence of them, got {dims!r}")
    items = [dims] if isinstance(dims, int) else list(dims)
    for d in items:
        if isinstance(d, bool) or d not in (1, 2, 3):
            raise ValueError(f"dims must be 1, 2 or 3, got {d!r}")
    return tuple(items)


def _expand(plan: _Plan, sa: Space, sb: Space, st, stb, leaf_a, leaf_b, joint: dict,
            valid_a, valid_b):
    """Refine ``joint`` by the facts the memory formats read; yield ``(assign, cases A,
    cases B)``."""
    log: list = []
    ca = _rule_cases(plan.A, sa, leaf_a, st, joint, valid_a, log)
    cb = _rule_cases(plan.B, sb, leaf_b, stb, joint, valid_b, log)
    unfixed = [v for v in dict.fromkeys(log) if v not in joint and v in plan.shared]
    if not unfixed:
        yield joint, ca, cb
        return
    var = unfixed[0]
    vals = sa.vars(st.dims)[var].values
    for v in vals:
        child = dict(joint)
        child[var] = v
        ev = _Evaluator(sa.full(st.dims, child), plan.A.env)
        if not _valid_combo(ev):
            continue
        yield from _expand(plan, sa, sb, st, stb, leaf_a, leaf_b, child, valid_a, valid_b)


def _check_names(plan: _Plan, st: Structure) -> set:
    """The names of both sides' shape checks (the checks lists are cached by structure key
    while diffing, each side's from its own structure)."""
    return {n for n, _ in plan.A.checks(st)} | {n for n, _ in plan.B.checks(st)}


def _agrees(text: str, label: tuple, names: set) -> bool:
    """Whether a concrete answer is what a region says for that side."""
    if text == "passes the shape checks":
        return not (label[0] == "crash" or (label[0] == "error" and label[1] in names))
    return outcome_text(label) == text


def _kind(a: tuple, b: tuple) -> str:
    if a[0] != "backend" or b[0] != "backend":
        return "error"
    if a[1] != b[1]:
        return "backend"
    return "memory format"


def _compare(plan: _Plan, st: Structure, q: _Solver, assign: dict, ca: list, cb: list,
             shape_same: bool, shape_a: list, shape_b: list, unknown: list) -> tuple[list, int]:
    """Regions of one leaf: satisfiable pairs of differing answers."""
    def key(f, lbl):
        return (f.get_id(), lbl)

    kb = {key(f, l) for f, l in cb}
    ka = {key(f, l) for f, l in ca}
    ua = [(f, l) for f, l in ca if key(f, l) not in kb]
    ub = [(f, l) for f, l in cb if key(f, l) not in ka]
    out: list = []
    cands = []
    for (fa, la_), (fb, lb_) in itertools.product(ua, ub):
        if la_ == ("passes",) and lb_ == ("passes",):
            continue
        if la_ == lb_:
            if shape_same or la_[0] != "backend":
                continue
            g = _and(fa, fb, z3.Or(*[x != y for x, y in zip(shape_a, shape_b)]))
            kind = "output shape"
        else:
            g = _and(fa, fb)
            kind = _kind(la_, lb_)
        if g.get_id() == _FALSE_ID:
            continue
        cands.append((g, la_, lb_, kind))
    if not cands:
        return out, 0
    # leaves under other categorical facts often ask the very same pairs: their answers are
    # memoised on the pairs' terms (the entry keeps them alive, so their ids stay theirs)
    memo_key = tuple(c[0].get_id() for c in cands)
    hit_memo = q.compared.get(memo_key)
    if hit_memo is not None:
        sat_by, pairs = dict(hit_memo[1]), hit_memo[2]
    else:
        sat_by, pairs = _sat_pairs(q, [c[0] for c in cands])
        q.compared[memo_key] = ([c[0] for c in cands], dict(sat_by), pairs)
    for i, (g, la_, lb_, kind) in enumerate(cands):
        if i not in sat_by or sat_by[i][0] == "unsat":
            continue
        v, why, m = sat_by[i]
        facts = {"dims": st.dims, "transposed": st.transposed}
        facts.update(assign)
        r = DiffRegion(facts, outcome_text(la_), outcome_text(lb_), [], kind, st, dict(assign),
                       g, unknown=(v != "sat"))
        if v == "sat":
            # the model that proved the region: where its witness search starts
            r.model = q.values(m)
        else:
            unknown.append(f"{r.facts_text()}: {r.a} -> {r.b}: {why}")
        out.append(r)
    return out, pairs


def _sat_pairs(q: _Solver, gs: list) -> tuple[dict, int]:
    """Which of the pairs ``gs`` can hold: index -> ``(verdict, reason, model)`` for every pair
    not found unsatisfiable, and the number of queries asked. One query asks whether any of
    the remaining pairs can hold; its model shows which do (each of those is a region, the
    model its proof), and they leave the query. Most leaves end at the first query (unsat:
    none of the pairs can hold, a proof)."""
    sat_by: dict = {}
    pairs = 0
    rest = list(range(len(gs)))
    while rest:
        g_any = gs[rest[0]] if len(rest) == 1 else z3.Or(*[gs[i] for i in rest])
        pairs += 1
        v, why, m = _check(q, g_any)
        if v == "unsat":
            break
        if v != "sat":  # undecided together: ask each pair on its own
            for i in rest:
                if len(rest) > 1:
                    pairs += 1
                    sat_by[i] = _check(q, gs[i])
                else:
                    sat_by[i] = (v, why, m)
            break
        hit = [i for i, h in zip(rest, _true_in(m, [gs[i] for i in rest])) if h]
        if not hit:  # pragma: no cover - the model satisfies the disjunction
            raise AssertionError("diff: a model of the disjunction satisfies no pair")
        for i in hit:
            sat_by[i] = ("sat", "", m)
        rest = [i for i in rest if i not in hit]
    return sat_by, pairs


def _true_in(m, terms: list) -> list[bool]:
    """Which of the boolean ``terms`` the model satisfies (with model completion): one
    evaluation of ``sum(If(t_i, 2**i, 0))`` instead of one per term, so the subterms the terms
    share are evaluated once. The sum is built through Z3's C API (the Python wrappers'
    coercions were most of the cost)."""
    if len(terms) == 1:
        return [z3.is_true(m.eval(terms[0], model_completion=True))]
    ctx = terms[0].ctx
    c = ctx.ref()
    zero = z3.IntVal(0, ctx)
    ites = []  # each held by a reference while the sum is made
    for i, t in enumerate(terms):
        one = z3.IntVal(1 << i, ctx)
        ites.append(z3.ArithRef(z3.z3core.Z3_mk_ite(c, t.as_ast(), one.as_ast(),
                                                    zero.as_ast()), ctx))
    arr = (z3.Ast * len(ites))()
    for i, x in enumerate(ites):
        arr[i] = x.as_ast()
    total = z3.ArithRef(z3.z3core.Z3_mk_add(c, len(ites), arr), ctx)
    code = m.eval(total, model_completion=True)
    if not z3.is_int_value(code):  # pragma: no cover - every term evaluates to a constant
        return [z3.is_true(m.eval(t, model_completion=True)) for t in terms]
    v = code.as_long()
    return [bool(v >> i & 1) for i in range(len(terms))]


class _Solver:
    """The incremental solver of one structure and what its queries share: the memo of
    answers, the literal that bounds every symbol to [-64, 64] when assumed, the models of
    recent satisfiable queries and the probe points' numpy memo."""

    def __init__(self, st: Structure, assertions: list, fit: Any = None) -> None:
        self.st = st
        # calls outside ``fit`` are not compared: every model returned satisfies it
        self.fit = _TRUE if fit is None else fit
        self.s = solve.new_solver()
        self.s.add(*assertions)
        self.base = _and(*assertions)
        self.bound = z3.Bool("__diff_bound")
        self.s.add(z3.Implies(self.bound, z3.And(*[z3.And(x >= -64, x <= 64)
                                                   for x in st.symbols.values()])))
        # every symbol within 4096: the shape arithmetic of such calls fits int64 (at most
        # five factors of 2**12 in an element count)
        self.mid = z3.Bool("__diff_mid")
        self.s.add(z3.Implies(self.mid, z3.And(*[z3.And(x >= -4096, x <= 4096)
                                                 for x in st.symbols.values()])))
        self.cache: dict = {}
        self.compared: dict = {}  # the pairs of a leaf (their term ids) -> their answers
        self.models: list = []
        self.probe: dict = {}  # the probe points and their numpy memo, made when first used
        self._values: dict = {}

    def values(self, m) -> dict:
        """A model's value of every symbol (memoised: leaves share models)."""
        hit = self._values.get(id(m))
        if hit is None or hit[0] is not m:
            hit = self._values[id(m)] = (m, {n: m.eval(x, model_completion=True).as_long()
                                             for n, x in self.st.symbols.items()})
        return dict(hit[1])


def _check(q: _Solver, g) -> tuple[str, str, Any]:
    """Satisfiability of ``g`` with the solver's context: ``(verdict, reason, model or
    None)``. Memoised on the term (the same term under the same assertions has the same
    answer)."""
    hit = q.cache.get(g.get_id())
    if hit is not None:
        return hit[1]
    out = _check_uncached(q, g)
    q.cache[g.get_id()] = (g, out)  # the term is kept alive, so its id is not reused
    return out


_POOL = 10  # models of a solver's recent satisfiable queries tried on each new query


def _check_uncached(q: _Solver, g) -> tuple[str, str, Any]:
    # neighbouring leaves ask about the same integer conditions under other categorical facts:
    # a model of an earlier query (it satisfies the solver's assertions) that satisfies ``g``
    # is a model of this one, found without a search
    for m in reversed(q.models):
        if z3.is_true(m.eval(g, model_completion=True)):
            return "sat", "", m
    out = _search(q, g)
    if out[0] == "sat":
        q.models.append(out[2])
        del q.models[:-_POOL]
    return out


SMALL_RLIMIT = 1_500_000  # the small-value step: it finds most models well within this


def _fits(q: _Solver, m) -> bool:
    return z3.is_true(m.eval(q.fit, model_completion=True))


def _values_fit(q: _Solver, values: dict) -> bool:
    got = z3.simplify(z3.substitute(q.fit, *[(x, z3.IntVal(values[n]))
                                             for n, x in q.st.symbols.items()]))
    return z3.is_true(got)


def _search(q: _Solver, g) -> tuple[str, str, Any]:
    """A model of ``g`` within the calls compared (``q.fit``), or the proof that none exists:
    the structure's probe points first (numpy; a hit is confirmed by Z3), then an unbounded
    step-limited check (most pairs are decided there; its model counts if it fits, else the
    check is asked again with the fit conditions), then small values (every symbol in
    [-64, 64], which fit), then an unlimited search with the fit conditions asserted."""
    # the structure's probe points first (numpy, most of them near the preferred values,
    # some with huge sizes): a hit is a model within the calls compared, confirmed by Z3
    m = _probe(q, g)
    if m is not None:
        return "sat", "", m
    s, lit = q.s, q.bound
    s.push()
    try:
        s.add(g)
        quick = solve.limited_check(s)
        if quick == z3.unsat:
            return "unsat", "", None
        if quick == z3.sat:
            if _fits(q, s.model()):
                return "sat", "", s.model()
            # a model where torch's int64 arithmetic would wrap: values within 4096 (which
            # fit), else ask within the calls compared
            if solve.limited_check(s, q.mid, rlimit=SMALL_RLIMIT) == z3.sat and \
                    _fits(q, s.model()):
                return "sat", "", s.model()
            s.push()
            try:
                s.add(q.fit)
                within = solve.limited_check(s)
                if within != z3.unknown:
                    return str(within), "", (s.model() if within == z3.sat else None)
            finally:
                s.pop()
        small = solve.limited_check(s, lit, rlimit=SMALL_RLIMIT)
        if small == z3.sat:
            return "sat", "", s.model()
        s.add(q.fit)
        v, why = solve.verdict(s)
        return v, why, (s.model() if v == "sat" else None)
    finally:
        s.pop()


_PROBE_N = 4096
# the values a probe point gives a parameter or a size: mostly the preferred value, else a
# small one (0 and -1 included: the checks' edges)
_P_STEP = np.array([1, 1, 1, 2, 3, 0])          # strides, dilations, kernel sizes
_P_PAD = np.array([0, 0, 0, 1, 2, -1])          # paddings, output paddings
_P_SIZE = np.array([1, 1, 1, 2, 3, 4, 0])       # batch and spatial sizes
_P_GROUPS = np.array([1, 1, 2, 3, 4, 8])
_P_MULT = np.array([1, 1, 2, 3])                # channels per group
# one large size: past 32-bit indexing (2**31 and beyond), or large; two: their product is
_P_BIG1 = np.array([2**31, 2**31 + 1, 2**32, 2**16, 2**20, 2**62])
_P_BIG2 = np.array([2**16, 2**20, 2**11, 2**21])


def _probe_points(st: Structure) -> dict:
    """Fixed pseudo-random calls of a structure (int64 arrays; shape arithmetic past int64
    wraps, which only loses a point: every hit is confirmed by Z3): each value at its
    preferred value or a small one, channel counts mostly consistent (plain, grouped or
    depthwise), and in two thirds of them one size made large (2**31 and beyond: 64-bit
    indexing) or two sizes made moderately large. The points are near the preferred values,
    so a region's best point is a readable witness start."""
    rng = np.random.default_rng(1234)
    n = _PROBE_N
    out: dict = {}
    for name in st.symbols:
        if name.startswith(("stride", "dil", "k")):
            vals = _P_STEP
        elif name.startswith(("pad", "opad")):
            vals = _P_PAD
        else:
            vals = _P_SIZE
        out[name] = rng.choice(vals, n).astype(np.int64)
    g = out["G"] = rng.choice(_P_GROUPS, n).astype(np.int64)
    kind = rng.random(n)
    m = rng.choice(_P_MULT, n).astype(np.int64)
    cg = rng.choice(_P_MULT, n).astype(np.int64)
    cons = kind < 0.9  # the rest keep independent channel counts (the checks' errors)
    if st.transposed:
        out["C"] = np.where(cons, m * g, out["C"])
        out["Cg"] = np.where(cons, cg, out["Cg"])
    else:
        out["Cg"] = np.where(kind < 0.35, 1, np.where(cons, cg, out["Cg"]))  # depthwise
        out["C"] = np.where(cons, out["Cg"] * g, out["C"])
        out["Cout"] = np.where(cons, m * g, out["Cout"])
    spatial = list(SPATIAL[st.dims])
    big_names = ["N", *spatial, *("k" + x for x in spatial), "Cg", "C",
                 *("pad" + x for x in spatial), *("dil" + x for x in spatial)]
    if not st.transposed:
        big_names.append("Cout")
    big = rng.random(n)
    picks = rng.integers(0, len(big_names), size=(n, 2))
    v1 = rng.choice(_P_BIG1, n)
    v2 = rng.choice(_P_BIG2, (n, 2))
    for i in np.flatnonzero(big >= 1 / 3):
        chosen = [picks[i, 0]] if big[i] < 2 / 3 else list(dict.fromkeys(picks[i]))
        for j, c in enumerate(chosen):
            name = big_names[c]
            v = int(v1[i]) if len(chosen) == 1 else int(v2[i, j])
            gi = int(out["G"][i])
            if name in ("C", "Cg") and not st.transposed:  # channels stay consistent
                out["Cg"][i] = v
                out["C"][i] = _wrap64(v * gi)
            elif name in ("Cout", "C"):
                out[name][i] = _wrap64(v * gi)
            else:
                out[name][i] = v
    return out


def _wrap64(v: int) -> int:
    """``v`` as int64 arithmetic gives it (two's complement)."""
    return (v + 2**63) % 2**64 - 2**63


def _probe_hits(q: _Solver, g) -> np.ndarray | None:
    """The structure's probe points (:func:`_probe_points`) that satisfy the solver's
    assertions, the calls compared and ``g`` by numpy's evaluation, best witness starts first
    (:func:`_start_order`); ``None`` if numpy cannot evaluate a term (Z3 alone decides). The
    per-solver memo shares the assertions' and the leaves' common subterms across queries."""
    st = q.st
    if not q.probe:
        pts = _probe_points(st)
        q.probe = {"pts": pts, "memo": {}, "ok": True,
                   "order": _start_order(st, pts, _PROBE_N), "base": None}
    pr = q.probe
    if not pr["ok"]:
        return None
    n = _PROBE_N
    try:
        with np.errstate(all="ignore"):
            if pr["base"] is None:
                pr["base"] = np.logical_and(
                    np.broadcast_to(np.asarray(np_eval(q.base, pr["pts"], pr["memo"]),
                                               dtype=bool), (n,)),
                    np.broadcast_to(np.asarray(np_eval(q.fit, pr["pts"], pr["memo"]),
                                               dtype=bool), (n,)))
            hold = pr["base"] & np.broadcast_to(
                np.asarray(np_eval(g, pr["pts"], pr["memo"]), dtype=bool), (n,))
    except (NotImplementedError, KeyError, TypeError, ValueError, OverflowError):
        pr["ok"] = False
        return None
    order = pr["order"]
    return order[hold[order]]


def _probe(q: _Solver, g) -> Any:
    """A model of the solver's assertions, the calls compared and ``g`` among the structure's
    probe points, or ``None``: numpy finds the candidates, Z3 confirms one with every symbol
    fixed, so a result is always a real model."""
    idx = _probe_hits(q, g)
    if idx is None:
        return None
    s, st, pts = q.s, q.st, q.probe["pts"]
    for i in idx[:3]:
        s.push()
        try:
            s.add(g, q.fit)
            s.add(*[x == int(pts[n][i]) for n, x in st.symbols.items()])
            if solve.limited_check(s) == z3.sat:
                return s.model()
        finally:
            s.pop()
    return None


def _describe(plan: _Plan, r: DiffRegion, sa: Space) -> None:
    """The region's readable conditions. Leaves share formulas (the same rule terms under
    different flags or dtypes), so the text is memoised on the structure, the kind, the
    formula and the named sub-predicates (which read the memory formats)."""
    st = r.structure
    names = _names(plan, sa, st, r.assign)
    cache = plan.describe_cache
    key = (st.key, r.kind, r.formula.get_id(), id(names))  # names: kept in names_cache
    hit = cache.get(key)
    if hit is not None:
        r.conditions = list(hit[1])
        return
    _describe_uncached(plan, r, names)
    cache[key] = (r.formula, list(r.conditions))


def _describe_uncached(plan: _Plan, r: DiffRegion, names: list) -> None:
    st = r.structure
    prefix = []
    f = r.formula
    valid = False
    if r.kind != "error":
        # both sides answer with a backend: the call passes both sides' shape checks; say so
        # once instead of listing every check (they are the very same z3 terms)
        ids = plan.check_ids.get(st.key)
        if ids is None:
            checks = [c for _, c in plan.A.checks(st)] + [c for _, c in plan.B.checks(st)]
            ids = {c.get_id() for c in checks}
            ids |= {x.get_id() for c in checks for x in solve.flat_and(c)}
            plan.check_ids[st.key] = ids  # the checks are kept alive by the sides' caches
        flat = solve.flat_and(f, plan.nnf_memo)
        kept = [c for c in flat if c.get_id() not in ids]
        if len(kept) < len(flat):
            prefix = ["valid call"]
            valid = True
            f = _and(*kept)
    try:
        e = pretty.abstract(f, names, plan.fold_memo)
    except Exception:  # noqa: BLE001 - naming is cosmetic; the raw formula is exact
        e = f
    conj = solve.nnf_conjuncts(e, plan.nnf_memo)
    skey = (st.key, valid)
    simp = plan.simplifiers.get(skey)
    if simp is None:
        ctx = [st.symbols[n] >= 0 for n in st.sizes] + [plan.where.formula(st), plan.domain(st)]
        if valid:
            ctx.append(_and(*[c for _, c in plan.A.checks(st)],
                            *[c for _, c in plan.B.checks(st)]))
        simp = plan.simplifiers[skey] = solve.Simplifier(ctx)
    conj = simp.simplify(conj)
    r.conditions = prefix + solve.named_atoms(conj, SPATIAL[st.dims], plan.text_memo)


def _names(plan: _Plan, sa: Space, st: Structure, assign: dict) -> list:
    """``pretty.named_terms`` of the leaf, memoised on the categorical facts they read (the
    memory formats, today)."""
    entries = plan.names_cache.setdefault(st.key, [])
    full = sa.full(st.dims, assign)
    for reads, names in entries:
        if all(full[v] == x for v, x in reads):
            return names
    ev = _Evaluator(full, sa.env)
    ctx = sa._tracked(st, ev)
    ev.log, ev.facts = [], []
    try:
        names = pretty.named_terms(ctx)
    except Exception:  # noqa: BLE001 - naming is cosmetic; the raw formula is exact
        names = []
    finally:
        got = ev.log
        ev.log = ev.facts = None
    entries.append((tuple((v, full[v]) for v in dict.fromkeys(got)), names))
    return names


def _witness(plan: _Plan, r: DiffRegion, part: DiffRegion, sa: Space, q: _Solver,
             validate: bool, minimize: bool = False) -> None:
    st = r.structure
    facts = _full_facts(sa, st.dims, part.assign)
    fl = _flags(sa, st.dims, part.assign)
    fa = dict(fl)
    fa.update(plan.flags_a)
    fb = dict(fl)
    fb.update(plan.flags_b)
    names = _check_names(plan, st)
    found = None
    replay = validate and plan.native_side
    # starts, each taken while the concrete answers of the witness so far do not differ: the
    # region's box call, else its best probe points (each shrunk on a model, no search); then
    # the model that proved the region (no search for a first model), within the calls
    # compared (shape arithmetic in int64: asked again with those conditions if the witness
    # leaves them); last, a search for small values
    box = [part.box_start] if part.box_start is not None and not minimize else []
    if not box and not minimize:
        # no box call: the best probe points of the part (near the preferred values, large
        # sizes included), where numpy finds some (int64 arithmetic that wraps can make a
        # point look like one: Z3 confirms each before it is shrunk)
        idx = _probe_hits(q, part.formula)
        if idx is not None:
            pts = q.probe["pts"]
            box = [{n: int(pts[n][i]) for n in st.symbols} for i in idx[:_PROBE_STARTS]]
    starts = box + ([part.model] if part.model is not None else []) + [None]
    for k, start in enumerate(starts):
        if k < len(box):
            values = _shrunk_box_call(q, part, box[k])
        else:
            values = _witness_values(q.s, st, part, minimize, start, replay)
            if values is not None and not _values_fit(q, values):
                values = _witness_values(q.s, st, part, minimize, start, replay, q.fit)
        if values is None:  # a probe point Z3 refuses: the next start
            continue
        oa, sha, ma = concrete_outcome(_side_env(plan.A.env, fa), st.dims, st.transposed,
                                       values, facts)
        ob, shb, mb = concrete_outcome(_side_env(plan.B.env, fb), st.dims, st.transposed,
                                       values, facts)
        differs = ((oa != ob or sha != shb) and _agrees(r.a, oa, names)
                   and _agrees(r.b, ob, names))
        found = (values, oa, sha, ma, ob, shb, mb, differs)
        if differs:
            break
    if found is None:  # pragma: no cover - the pair was just found satisfiable
        r.unknown = True
        return
    values, oa, sha, ma, ob, shb, mb, differs = found
    ta = outcome_text(oa) + (f" {list(sha)}" if sha else "")
    tb = outcome_text(ob) + (f" {list(shb)}" if shb else "")
    r.witness = DiffWitness(st.dims, st.transposed, values, facts, fa, fb, ta, tb, differs,
                            [])


def _check_witness(plan: _Plan, r: DiffRegion) -> None:
    """torch's answers to the region's witness, side by side with symconv's (each side
    torch can answer here: this process is that side): ``r.witness.checks``. Always in the
    calling process (a worker process of the diff runs no torch kernel)."""
    w = r.witness
    if w is None:  # pragma: no cover - called for regions with a witness
        return
    st = r.structure
    names = _check_names(plan, st)
    checks = []
    for side, env, flags in (("A", plan.A.env, w.flags_a), ("B", plan.B.env, w.flags_b)):
        lbl, _, msg = concrete_outcome(_side_env(env, flags), st.dims, st.transposed,
                                       w.values, w.facts)
        checks.append(_torch_check(side, env, flags, st, w.values, w.facts, lbl, msg, names))
    w.checks = checks


def _shrunk_box_call(q: _Solver, part: DiffRegion, start: dict) -> dict | None:
    """The box call ``start`` with each value moved towards its preferred value as far as
    the region, the solver's assertions and the calls compared allow (evaluated on a model,
    no search); None if Z3 does not confirm ``start`` is a call of the region. Values only
    move towards their preferred values (0 or 1), so a start within 4096 stays within it, where
    the shape arithmetic fits int64 (see ``_Solver.mid``): the calls-compared conditions are
    then left out of the evaluations (the costly part of them)."""
    s = q.s
    s.push()
    try:
        s.add(part.formula)
        if max(abs(v) for v in start.values()) > _FITS_BOUND:
            s.add(q.fit)
        return solve.shrink_model(s, q.st.symbols, start)
    finally:
        s.pop()


def _witness_values(s: z3.Solver, st: Structure, part: DiffRegion, minimize: bool,
                    start: dict | None, replay: bool, extra: Any = None) -> dict | None:
    """A call of the region part (and of ``extra``) with as many values as possible at their
    preferred values, searched from ``start`` (a model of both) or, with ``None``, from
    scratch; with ``replay`` (torch here answers for a side), calls whose tensors torch can
    build here are preferred."""
    values = None
    s.push()
    try:
        s.add(part.formula)
        if extra is not None:
            s.add(extra)
        if start is not None:
            values = solve.minimise(s, st.symbols, shrink=minimize, start=start,
                                    step_rlimit=PIN_RLIMIT)
        if values is None or (replay and not _buildable(st, values)):
            # prefer calls whose tensors torch can build (the replay limit), if Z3 finds one soon
            s.push()
            s.add(D.to_z3(D.prod(st.input_shape)) <= MAX_REPLAY,
                  D.to_z3(D.prod(st.weight_shape)) <= MAX_REPLAY)
            if solve.limited_check(s) == z3.sat:
                m = s.model()
                values = solve.minimise(s, st.symbols, shrink=minimize, start={
                    n: m.eval(x, model_completion=True).as_long()
                    for n, x in st.symbols.items()})
            s.pop()
        if values is None:
            values = solve.minimise(s, st.symbols, shrink=minimize)
    finally:
        s.pop()
    return values


MAX_REPLAY = 2**26
_PROBE_STARTS = 4  # probe points tried as a witness start, best first
_FITS_BOUND = 4096  # every symbol within it: the shape arithmetic fits int64
# each step of a witness search from a model: a step that needs more pins nothing more (the
# model is kept), where nonlinear conditions (64-bit indexing) make single steps expensive
PIN_RLIMIT = 1_000_000


def _buildable(st: Structure, values: dict) -> bool:
    """Whether torch can build both tensors of the call here (at most ``MAX_REPLAY``
    elements each)."""
    return max(_numel(values[str(x)] for x in st.input_shape),
               _numel(values[str(x)] for x in st.weight_shape)) <= MAX_REPLAY


def _torch_check(side: str, env: Environment, flags: dict, st: Structure, values: dict,
                 facts: dict, label: tuple, message: str, names: set) -> SideCheck:
    want = _side_env(env, flags)
    with torch_flags(flags):
        here = Environment.from_torch()
    if here != want:
        return SideCheck(side, "not-validated", "this process is not this side")
    if label[0] == "crash":  # pragma: no cover - no installed torch has the seed's division
        return SideCheck(side, "not-validated", "would crash the process")
    inp, wgt, _ = _call(st.dims, st.transposed, values, facts)
    asked = facts
    if max(_numel(inp.shape), _numel(wgt.shape)) > MAX_REPLAY:
        if not (label[0] == "error" and label[1] in names):
            return SideCheck(side, "not-validated", "too many elements to build here")
        # the shape checks read sizes only (before any device logic): ask on meta tensors
        asked = dict(facts, device="meta", layout="strided")
    kind, text = torch_outcome(flags, st.dims, st.transposed, values, asked)
    if kind == "unbuildable":
        return SideCheck(side, "not-validated", f"torch cannot build these tensors: {text}")
    mine = outcome_text(label)
    if label[0] == "error":
        ok = kind == "error" and (not message or text == message)
        got = f"raised: {text}" if kind == "error" else text
    else:
        ok = kind == "backend" and text == mine
        got = text
    if ok:
        return SideCheck(side, "validated", f"torch {torch.__version__} agrees: {got}")
    return SideCheck(side, "mismatch", f"MISMATCH: torch {torch.__version__} says {got}, "
                     f"symconv says {mine}" + (f" ({message})" if message else ""))


def _numel(shape) -> int:
    n = 1
    for x in shape:
        n *= int(x)
    return n


def _merge(plan: _Plan, sa: Space, regions: list) -> list:
    """Merge regions with the same answers and conditions whose facts differ in one fact only
    (``v == a`` or ``v == b`` -> ``v in (a, b)``; a fact whose every value is covered is
    dropped). The merged formula is the disjunction; the first witness is kept. Pairs merge in
    list order: always the first mergeable pair (i, j), i < j, of the current list."""
    def as_set(v):
        return v if isinstance(v, tuple) else (v,)

    def sig(r) -> int:  # equal for every pair that may merge
        return hash((r.kind, r.a, r.b, tuple(r.conditions), r.structure.key,
                     frozenset(r.facts)))

    def differ_in(r, q):
        """The one fact in which two regions of equal ``sig`` differ, or None."""
        if (r.kind, r.a, r.b, r.conditions, r.structure.key) != \
                (q.kind, q.a, q.b, q.conditions, q.structure.key) or set(r.facts) != set(q.facts):
            return None
        diffk = [k for k in r.facts if r.facts[k] != q.facts[k]]
        return diffk[0] if len(diffk) == 1 else None

    def merged(r, q, k):
        vals = tuple(dict.fromkeys(as_set(r.facts[k]) + as_set(q.facts[k])))
        facts = dict(r.facts)
        dom = sa.vars(r.structure.dims)[k].values if k in plan.shared else ()
        if dom and all(x in vals for x in dom):
            facts.pop(k)
        else:
            facts[k] = vals
        assign = {a: b for a, b in facts.items() if a not in ("dims", "transposed")}
        m = DiffRegion(facts, r.a, r.b, r.conditions, r.kind, r.structure, assign,
                       z3.Or(r.formula, q.formula), r.witness or q.witness,
                       None if r.coverage is None else r.coverage + (q.coverage or 0),
                       r.hits + q.hits, r.unknown or q.unknown)
        m.merged = r.parts + q.parts
        return m

    regions = list(regions)
    sigs = [sig(r) for r in regions]
    i = 0
    while i < len(regions):
        hit = None
        for j in range(i + 1, len(regions)):
            if sigs[j] == sigs[i]:
                k = differ_in(regions[i], regions[j])
                if k is not None:
                    hit = (j, k)
                    break
        if hit is None:
            i += 1
            continue
        j, k = hit
        regions[i] = merged(regions[i], regions[j], k)
        sigs[i] = sig(regions[i])
        del regions[j], sigs[j]
        # no earlier pair was mergeable before; the merged region may make one with an earlier
        # region, and the first such pair comes next
        for e in range(i):
            if sigs[e] == sigs[i] and differ_in(regions[e], regions[i]) is not None:
                i = e
                break
    return regions


# --------------------------------------------------------------------------------------
# Coverage of a bounded box


def _fact_prob(sa: Space, plan: _Plan, dims: int, facts: dict) -> float:
    p = 1.0
    for k in facts:
        if k in ("dims", "transposed") or k not in plan.shared:
            continue
        p /= max(1, len(sa.vars(dims)[k].values))
    return p


def _sample_box(st: Structure, box: dict, n: int, rng: np.random.Generator) -> dict:
    """Calls of the box: every integer uniform in its range, channel counts consistent
    (``C = Cg*G``, ``Cout = m*G`` with ``m`` uniform in the Cout range; transposed:
    ``C = m*G``)."""
    out = {}
    for name in st.symbols:
        lo, hi = _box_range(name, box)
        out[name] = rng.integers(lo, hi + 1, size=n, dtype=np.int64)
    _consistent_channels(st, out, box, rng, n)
    return out


def _consistent_channels(st: Structure, out: dict, box: dict, rng, n=None) -> None:
    lo, hi = _box_range("Cout", box)
    m = rng.integers(max(lo, 1), max(hi, 1) + 1, size=n)
    if n is None:
        m = int(m)
    if st.transposed:
        out["C"] = m * out["G"]
    else:
        out["C"] = out["Cg"] * out["G"]
        out["Cout"] = m * out["G"]


def _coverage(plan: _Plan, regions: list, structures: list, box: dict, n: int,
              seed: int, solvers: dict | None = None) -> None:
    """Each region's share of the box (``coverage``, ``hits``) and, given the structures'
    solvers, its box call nearest the preferred values among those the calls compared admit
    (``box_start``, where its witness search starts: numpy's choice, confirmed by Z3 there)."""
    if not regions or n <= 0:
        return
    rng = np.random.default_rng(seed)
    sa = plan.A.space()
    n_struct = len(structures)
    samples = {st.key: _sample_box(st, box, n, rng) for st in structures}
    memos: dict = {}
    admitted: dict = {}
    for r in regions:
        st = r.structure
        vals = samples[st.key]
        memo = memos.setdefault(st.key, {})
        with np.errstate(all="ignore"):
            hit = np.broadcast_to(np.asarray(np_eval(r.formula, vals, memo), dtype=bool), (n,))
        r.hits = int(hit.sum())
        r.coverage = (r.hits / n) * _fact_prob(sa, plan, st.dims, r.facts) / n_struct
        if not r.hits or solvers is None or st.key not in solvers:
            continue
        if st.key not in admitted:
            q = solvers[st.key]
            # within 4096 the shape arithmetic fits int64: the calls-compared conditions hold
            top = max(int(np.max(np.abs(np.asarray(vals[m])))) for m in st.symbols)
            cond = q.base if top <= _FITS_BOUND else _and(q.base, q.fit)
            with np.errstate(all="ignore"):
                ok = np.broadcast_to(np.asarray(np_eval(cond, vals, memo), dtype=bool), (n,))
            admitted[st.key] = (ok, _start_order(st, vals, n))
        ok, order = admitted[st.key]
        idx = order[(hit & ok)[order]]
        if len(idx):
            r.box_start = {name: int(vals[name][idx[0]]) for name in st.symbols}


def _start_order(st: Structure, vals: dict, n: int) -> np.ndarray:
    """The box calls' indices, best witness starts first: fewer values off their preferred
    values, then the smaller distance from them."""
    off = sum(np.broadcast_to(np.asarray(vals[m]) != solve.preferred_value(m), (n,))
              .astype(np.int64) for m in st.symbols)
    dist = sum(np.abs(np.broadcast_to(np.asarray(vals[m]), (n,)) - solve.preferred_value(m))
               for m in st.symbols)
    return np.lexsort([dist, off])


# --------------------------------------------------------------------------------------
# The sampled check: random calls, answered by symconv's concrete path on both sides


@dataclasses.dataclass
class SampledCheck:
    samples: int
    differing: int          # calls whose concrete answers differ
    uncovered: list         # differing calls outside every reported region
    false_regions: list     # calls inside a region whose answers do not differ

    @property
    def ok(self) -> bool:
        return not self.uncovered and not self.false_regions


def _draw_values(st: Structure, box: dict, rng) -> dict:
    """Half the draws with consistent channel counts (as the coverage box), half independent;
    a tenth with some huge or edge values."""
    out = {}
    consistent = rng.random() < 0.5
    wide = rng.random() < 0.1
    for name in st.symbols:
        lo, hi = _box_range(name, box)
        if wide and rng.random() < 0.3:
            if name in st.sizes:
                out[name] = int(rng.choice([0, 1, 2**16, 2**31 - 1, 2**31, 2**20 + 3]))
            else:
                out[name] = int(rng.choice([-1, 0, 1, 2, 2**31, 2**62]))
        else:
            out[name] = int(rng.integers(lo, hi + 1))
    if consistent and out["G"] >= 0 and out["Cg"] >= 0:
        _consistent_channels(st, out, box, rng)
    return out


def _assign_from_witness(sa: Space, st: Structure, w: DiffWitness, plan: _Plan) -> dict:
    full = {"device": w.facts["device"], "requires_grad": w.facts["requires_grad"]}
    for k, table in (("dtype", _DT), ("input_mf", _MFS), ("weight_mf", _MFS)):
        full[k] = table[w.facts[k]]
    full["layout"] = MKLDNN_LAYOUT if w.facts["layout"] == "mkldnn" else torch.strided
    for k in FLAG_VARS:
        full[k] = w.flags_a[k]
    return {k: full[k] for k in plan.shared}


def _compared_mask(plan: _Plan, pending: list) -> list:
    """For each pending draw ``(structure, assign, values)``: whether it is a call compared
    (where constraints, domain, shape arithmetic within int64)."""
    ok = [False] * len(pending)
    groups: dict = {}
    for i, (st, _, _) in enumerate(pending):
        groups.setdefault(st.key, (st, []))[1].append(i)
    for st, idx in groups.values():
        names = list(pending[idx[0]][2])
        env = {k: np.array([pending[i][2][k] for i in idx], dtype=object) for k in names}
        with np.errstate(all="ignore"):
            hold = np.broadcast_to(np.asarray(np_eval(
                _and(plan.where.formula(st), plan.compared(st)), env), dtype=bool), (len(idx),))
        for i, h in zip(idx, hold):
            ok[i] = bool(h)
    return ok


def sampled_check(res: DiffResult, n: int = 10_000, seed: int = 0,
                  box: dict | None = None, near_witness: float = 0.3) -> SampledCheck:
    """Draw ``n`` random calls and compare both sides' concrete answers with the reported
    regions: every call whose answers differ lies in a region, and every call in a region has
    differing answers. Draws: categorical facts uniform over the shared values, integers from
    the box (half with consistent channel counts, a tenth with some huge or edge values); a
    share ``near_witness`` of them are region witnesses with a few values moved."""
    plan: _Plan = res._ctx
    boxd = dict(res.box)
    boxd.update(box or {})
    rng = np.random.default_rng(seed)
    sa = plan.A.space()
    structures = [st for st in sa.structures() if plan.where.applies_to(st)]
    by_struct: dict = {}
    for r in res.regions:
        for part in r.parts:
            by_struct.setdefault(r.structure.key, []).append((r, part))
    uncovered, false_regions = [], []
    differing = 0
    done = 0
    seeds = [r for r in res.regions if r.witness is not None]
    by_key = {st.key: st for st in structures}
    draws: dict = {}
    pending: list = []
    while done < n:
        near = seeds and rng.random() < near_witness
        if near:
            # a witness with one to three integers moved (by one, or redrawn from the box) and
            # sometimes one categorical fact changed: probes the regions' boundaries
            wr = seeds[int(rng.integers(len(seeds)))].witness
            st = by_key[(wr.dims, wr.transposed)]
            assign = _assign_from_witness(sa, st, wr, plan)
            values = dict(wr.values)
            for name in rng.choice(list(values), size=int(rng.integers(1, 4)), replace=False):
                if rng.random() < 0.5:
                    values[name] = int(values[name]) + int(rng.choice([-1, 1]))
                else:
                    lo, hi = _box_range(name, boxd)
                    values[name] = int(rng.integers(lo, hi + 1))
            if any(values[k] < 0 for k in st.sizes):
                continue
            if rng.random() < 0.3:
                name = list(plan.shared)[int(rng.integers(len(plan.shared)))]
                dom = sa.vars(st.dims)[name].values
                assign[name] = dom[int(rng.integers(len(dom)))]
        else:
            st = structures[int(rng.integers(len(structures)))]
            assign = {}
            for name in plan.shared:
                dom = sa.vars(st.dims)[name].values
                assign[name] = dom[int(rng.integers(len(dom)))]
            values = _draw_values(st, boxd, rng)
        if any(not -D.INT64_MAX - 1 <= v <= D.INT64_MAX for v in values.values()):
            # outside the compared calls (torch's sizes and parameters are int64): consistent
            # channel counts of huge groups overflow it
            continue
        ev = _Evaluator(sa.full(st.dims, assign), plan.A.env)
        if not _valid_combo(ev):
            continue
        pending.append((st, assign, values))
        if len(pending) < max(n - done, 256) and len(pending) < 4096:
            continue
        # the calls compared (the where constraints, shape arithmetic within int64), asked of
        # the pending draws at once, one numpy evaluation per structure; the first passing
        # draws in drawing order are kept
        ok = _compared_mask(plan, pending)
        for (st, assign, values), keep in zip(pending, ok):
            if not keep or done >= n:
                continue
            done += 1
            facts = _full_facts(sa, st.dims, assign)
            fl = _flags(sa, st.dims, assign)
            fa = dict(fl)
            fa.update(plan.flags_a)
            fb = dict(fl)
            fb.update(plan.flags_b)
            oa, sha, _ = concrete_outcome(_side_env(plan.A.env, fa), st.dims, st.transposed,
                                          values, facts)
            ob, shb, _ = concrete_outcome(_side_env(plan.B.env, fb), st.dims, st.transposed,
                                          values, facts)
            differ = oa != ob or sha != shb
            call = {"dims": st.dims, "transposed": st.transposed, "facts": facts, "flags": fl,
                    "values": values, "a": outcome_text(oa), "b": outcome_text(ob)}
            draws.setdefault(st.key, []).append((assign, values, differ, call))
            differing += int(differ)
        pending = []
    # every region part evaluated once over all the draws of its structure
    for key, items in draws.items():
        names = list(items[0][1])
        env = {k: np.array([it[1][k] for it in items], dtype=object) for k in names}
        inside = np.full(len(items), -1)
        for idx, (_, part) in enumerate(by_struct.get(key, [])):
            facts_ok = np.array([all(it[0].get(k) == v for k, v in part.assign.items())
                                 for it in items])
            if not facts_ok.any():
                continue
            hold = np.broadcast_to(np.asarray(np_eval(part.formula, env), dtype=bool),
                                   (len(items),))
            inside = np.where((inside < 0) & facts_ok & hold, idx, inside)
        regs = by_struct.get(key, [])
        for j, (_, _, differ, call) in enumerate(items):
            if differ and inside[j] < 0:
                uncovered.append(call)
            elif not differ and inside[j] >= 0:
                call["region"] = regs[inside[j]][0].text()
                false_regions.append(call)
    return SampledCheck(n, differing, uncovered, false_regions)
