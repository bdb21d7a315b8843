"""``explain``: which backend torch picks for a call, why every earlier rule did not fire (in
the user's terms: the sub-condition that failed, with the call's values), and optionally the
smallest change of the call's arguments or flags that reaches another backend."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
import z3

from .. import domain as D
from ..api import prepare
from ..backends import ConvBackend
from ..env import Environment
from ..errors import ConvError, ConvValueError
from ..rules import RULES, ErrorOutcome, evaluate, first_failing
from ..spec import MKLDNN_LAYOUT, TensorSpec, as_spec, channels_last_strides_2d, \
    channels_last_strides_3d, contiguous_strides
from . import pretty, solve
from .reach import Query, _targets, env_summary, reach, resolve_backend, resolve_env
from .space import (DTYPES, FLAG_VARS, SPATIAL, Leaf, _Evaluator, fact_text,
                    value_name)
from .witness import Validation, Witness, replay

__all__ = ["explain", "Explanation", "RuleReason", "WantResult"]


@dataclasses.dataclass
class RuleReason:
    rule: str
    outcome: str
    condition: str            # the rule's first failing condition (its text)
    details: list             # why, in the call's terms
    categorical: bool         # decided by categorical facts alone

    def text(self) -> str:
        d = "; ".join(self.details)
        return f"{self.condition} is false" + (f": {d}" if d else "")


@dataclasses.dataclass
class WantResult:
    backend: ConvBackend
    verdict: str                    # "reachable" | "unreachable" | "unknown" | "already"
    changes: list = dataclasses.field(default_factory=list)   # (what, from, to)
    witness: Witness | None = None
    validation: Validation | None = None
    proof: list = dataclasses.field(default_factory=list)
    minimal: bool = False           # the integer part was minimised by z3's optimiser
    note: str = ""

    def lines(self) -> list[str]:
        b = self.backend.name
        if self.verdict == "already":
            return [f"the call already reaches {b}"]
        if self.verdict == "reachable":
            out = [f"to reach {b}, change (smallest change found"
                   + (", minimised by Z3" if self.minimal else "") + "):"]
            out += [f"  {what}: {old} -> {new}" for what, old, new in self.changes]
            if self.validation is not None:
                out.append("  " + self.validation.message)
            if self.note:
                out.append("  " + self.note)
            return out
        if self.verdict == "unreachable":
            return [f"no change of the arguments or flags reaches {b} under this environment:"] \
                + ["  " + p for p in self.proof]
        return [f"unknown: the solver did not decide whether {b} is reachable"] + \
            ["  " + p for p in self.proof]

    def to_json(self) -> dict:
        return {"backend": self.backend.name, "verdict": self.verdict,
                "changes": [{"what": w, "from": _jsonable(a), "to": _jsonable(b)}
                            for w, a, b in self.changes],
                "call": self.witness.to_json() if self.witness else None,
                "validation": self.validation.to_json() if self.validation else None,
                "minimal": self.minimal, "proof": self.proof, "note": self.note}


def _jsonable(x):
    if isinstance(x, (bool, int, float, str)) or x is None:
        return x
    return str(x)


@dataclasses.dataclass
class Explanation:
    env: Environment
    env_label: str
    call: str
    backend: ConvBackend | None
    rule: str | None
    error: str | None
    reasons: list
    memory_format: str | None = None
    want: WantResult | None = None
    notes: list = dataclasses.field(default_factory=list)

    def text(self) -> str:
        lines = [f"call         {self.call}",
                 f"environment  {self.env_label} ({env_summary(self.env)})"]
        if self.error is not None:
            lines.append(f"torch raises {self.error}")
        else:
            assert self.backend is not None  # no error: torch picked a backend
            lines.append(f"torch picks  {self.backend.name} (rule '{self.rule}'"
                         + (f", memory format {self.memory_format}" if self.memory_format else "")
                         + ")")
        if self.reasons:
            lines.append("rules before it, and the first condition that failed:")
            w = max(len(r.rule) for r in self.reasons)
            wo = max(len(r.outcome) for r in self.reasons)
            for r in self.reasons:
                lines.append(f"  {r.rule:<{w}}  {r.outcome:<{wo}}  {r.text()}")
        lines += self.notes
        if self.want is not None:
            lines += self.want.lines()
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"environment": self.env_label, "environment_fields": self.env.as_dict(),
                "call": self.call, "backend": self.backend.name if self.backend else None,
                "rule": self.rule, "error": self.error, "memory_format": self.memory_format,
                "reasons": [dataclasses.asdict(r) for r in self.reasons], "notes": self.notes,
                "want": self.want.to_json() if self.want else None}


# --------------------------------------------------------------------------------------


def _mf_name(spec: TensorSpec) -> str | None:
    """contiguous / channels_last / channels_last_3d, or None for other strides."""
    if spec.layout != torch.strided:
        return "contiguous"
    if spec.strides is None:
        return {torch.contiguous_format: "contiguous", torch.channels_last: "channels_last",
                torch.channels_last_3d: "channels_last_3d"}[spec.memory_format]
    st = tuple(spec.strides)
    if st == tuple(contiguous_strides(spec.shape)):
        return "contiguous"
    if spec.ndim == 4 and st == tuple(channels_last_strides_2d(spec.shape)):
        return "channels_last"
    if spec.ndim == 5 and st == tuple(channels_last_strides_3d(spec.shape)):
        return "channels_last_3d"
    return None


def _call_text(inp: TensorSpec, w: TensorSpec, bias, stride, padding, dilation, transposed,
               output_padding, groups) -> str:
    extra = [value_name("dtype", inp.dtype) if inp.dtype in DTYPES else str(inp.dtype)]
    if inp.device != "cpu":
        extra.append(inp.device)
    mf = _mf_name(inp)
    if mf and mf != "contiguous":
        extra.append(mf)
    if inp.layout == MKLDNN_LAYOUT:
        extra.append("mkldnn")
    if inp.requires_grad:
        extra.append("requires_grad")
    parts = [f"input {list(inp.shape)} {' '.join(extra)}", f"weight {list(w.shape)}"]
    if bias is not None:
        parts.append(f"bias {list(bias.shape)}")
    parts.append(f"stride={list(stride)} padding={list(padding)} dilation={list(dilation)}")
    if transposed:
        parts.append(f"transposed output_padding={list(output_padding)}")
    if groups != 1:
        parts.append(f"groups={groups}")
    return ", ".join(parts)


class _Call:
    """The user's call mapped onto a query structure: symbol values and categorical facts."""

    def __init__(self, q: Query, inp: TensorSpec, w: TensorSpec, bias, stride, padding,
                 dilation, transposed, output_padding, groups, env: Environment) -> None:
        self.ok = False
        self.why = ""
        dims = w.ndim - 2
        if dims not in (1, 2, 3) or inp.ndim != w.ndim:
            self.why = "the call's dims are not 1, 2 or 3"
            return
        if inp.dtype not in DTYPES:
            self.why = f"dtype {inp.dtype} is not among the enumerated dtypes"
            return
        if w.dtype != inp.dtype:
            self.why = "the weight's dtype differs from the input's"
            return
        mf_in, mf_w = _mf_name(inp), _mf_name(w)
        if mf_in is None or mf_w is None:
            self.why = "a tensor's strides are neither contiguous nor channels-last"
            return
        if not all(isinstance(x, int) for x in inp.shape + w.shape):
            self.why = "symbolic sizes"
            return
        sp = SPATIAL[dims]

        def expand(xs):
            xs = list(xs)
            return xs * dims if len(xs) == 1 else xs

        lists = {"stride": expand(stride), "pad": expand(padding), "dil": expand(dilation),
                 "opad": expand(output_padding)}
        if any(len(v) != dims for v in lists.values()):
            self.why = "parameter lists of the wrong length"
            return
        if transposed and w.shape[0] != inp.shape[1]:
            self.why = "weight.size(0) differs from the input channels"
            return
        vals = {"N": inp.shape[0], "C": inp.shape[1], "Cg": w.shape[1], "G": int(groups)}
        if not transposed:
            vals["Cout"] = w.shape[0]
        for i, s in enumerate(sp):
            vals[s] = inp.shape[2 + i]
            vals["k" + s] = w.shape[2 + i]
            for k, v in lists.items():
                vals[k + s] = int(v[i])
        self.dims, self.transposed, self.values = dims, bool(transposed), vals
        layout = "mkldnn" if inp.layout == MKLDNN_LAYOUT else "strided"
        self.assign = {
            "device": inp.device, "dtype": inp.dtype,
            "layout": MKLDNN_LAYOUT if layout == "mkldnn" else torch.strided,
            "input_mf": {"contiguous": torch.contiguous_format,
                         "channels_last": torch.channels_last,
                         "channels_last_3d": torch.channels_last_3d}[mf_in],
            "weight_mf": {"contiguous": torch.contiguous_format,
                          "channels_last": torch.channels_last,
                          "channels_last_3d": torch.channels_last_3d}[mf_w],
            "requires_grad": bool(inp.requires_grad or w.requires_grad
                                  or (bias is not None and bias.requires_grad)),
        }
        for f in FLAG_VARS:
            self.assign[f] = getattr(env, f)
        vars_ = q.space.vars(dims)
        for k, v in self.assign.items():
            if k in vars_ and v not in vars_[k].values:
                self.why = f"{k} = {v} is not among the values this environment offers"
                return
        self.structure = q.space.structure(dims, self.transposed)
        self.ok = True

    def subst(self, term):
        st = self.structure
        pairs = [(st.symbols[n], z3.IntVal(v)) for n, v in self.values.items()
                 if n in st.symbols]
        return z3.simplify(z3.substitute(term, *pairs))


def _values_text(term, values: dict) -> str:
    names = sorted({str(c) for c in _consts(term)} & set(values),
                   key=lambda n: list(values).index(n))
    return ", ".join(f"{n} = {values[n]}" for n in names)


def _consts(e, acc=None):
    if acc is None:
        acc = {}
    if z3.is_const(e) and e.sort() == z3.IntSort() and not z3.is_int_value(e):
        acc[str(e)] = e
    elif z3.is_app(e):
        for c in e.children():
            _consts(c, acc)
    return acc.values()


def _drill(q: Query, call: _Call, ri: int, ci: int) -> tuple[list[str], bool]:
    """Why condition ``ci`` of rule ``ri`` is false for the call, in its terms."""
    st = call.structure
    sp = q.space
    ev = _Evaluator(sp.full(st.dims, call.assign), q.env)
    ctx = sp._tracked(st, ev)
    value, reads, facts = sp._cond(st, ev, ctx, ri, ci)
    if D.truth(value) is False:
        lits = [fact_text(v, x) for v, x in reads]
        build = [f"{f}={getattr(q.env, f)!r}" for f in facts if f != "torch_version"]
        out = []
        if lits:
            out.append("given " + " and ".join(lits))
        if build:
            out.append("build: " + ", ".join(build))
        return out, True
    if D.truth(value) is True:  # pragma: no cover - the concrete evaluation said false
        return ["(symbolic evaluation disagrees; please report)"], False
    names = pretty.named_terms(ctx)
    back = [(z3.Bool(n) if t.sort() == z3.BoolSort() else z3.Int(n), t) for n, t in names]
    conj = solve.nnf_conjuncts(pretty.abstract(value, names))
    out = []
    for c in conj:
        concrete = z3.substitute(c, *back) if back else c
        v = call.subst(concrete)
        if z3.is_false(v):
            vt = _values_text(concrete, call.values)
            out.append(f"{solve.text(c)} does not hold" + (f" ({vt})" if vt else ""))
    lits = [fact_text(v, x) for v, x in reads]
    if lits:
        out.append("given " + " and ".join(lits))
    return out or ["(no single sub-condition is false)"], False


def explain(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups,
            *, env: Environment | str | None = None, want: ConvBackend | str | None = None,
            need_backward: bool | None = None) -> Explanation:
    """The backend torch picks for this call (arguments as for ``select_conv_backend``), and
    for every rule ordered before the chosen one, the first condition that failed, in the
    call's terms. ``want`` adds the smallest change of the arguments or runtime flags that
    reaches that backend (or the proof that none does)."""
    env_obj, label = resolve_env(env)
    inp = as_spec(input, "input")
    w = as_spec(weight, "weight")
    if inp is None or w is None:
        raise TypeError("input and weight must be tensors or TensorSpecs, not None")
    b = as_spec(bias, "bias")
    if want is not None:
        resolve_backend(want)  # a bad name is refused before any work
    q = Query(env_obj, None, None)
    stride_l = list(stride) if isinstance(stride, (list, tuple)) else [stride]
    padding_l = list(padding) if isinstance(padding, (list, tuple)) else [padding]
    dilation_l = list(dilation) if isinstance(dilation, (list, tuple)) else [dilation]
    op_l = list(output_padding) if isinstance(output_padding, (list, tuple)) else [output_padding]
    # the argument types first, as select_conv_backend checks them (the call's text and the
    # solver would otherwise meet a float, a None or a Z3 Bool)
    from ..api import _groups, _param_list
    for vals, name in ((stride_l, "stride"), (padding_l, "padding"), (dilation_l, "dilation"),
                       (op_l, "output_padding")):
        if not all(isinstance(v, int) for v in _param_list(vals, name)):
            raise TypeError(f"explain needs integer {name}, got {vals!r:.80} (symbols: use "
                            "select_conv_backend or reach)")
    if not isinstance(_groups(groups), int):
        raise TypeError(f"explain needs an integer groups, got {groups!r:.80}")
    if not (inp.is_concrete and w.is_concrete and (b is None or b.is_concrete)):
        raise TypeError("explain needs concrete sizes (symbols: use select_conv_backend or "
                        "reach)")
    call_text = _call_text(inp, w, b, stride_l, padding_l, dilation_l, transposed, op_l, groups)
    ex = Explanation(env_obj, label, call_text, None, None, None, [])
    try:
        p = prepare(inp, w, b, stride_l, padding_l, dilation_l, transposed, op_l, groups,
                    env=env_obj, need_backward=need_backward)
    except (ConvError, ConvValueError) as e:
        ex.error = f"{'RuntimeError' if isinstance(e, ConvError) else 'ValueError'}: " \
                   f"{str(e).splitlines()[0]}"
        ex.notes.append("(the shape checks fail before any backend rule is tried)")
        call = _Call(q, inp, w, b, stride_l, padding_l, dilation_l, transposed, op_l, groups,
                     env_obj)
        if want is not None:
            ex.want = _want(q, call, resolve_backend(want), None)
        return ex
    if p.checker.checks:
        raise ValueError("explain needs concrete sizes; use reach() or select_conv_backend() "
                         "for symbolic ones")
    rule, outcome = evaluate(p.ctx)
    ex.rule = rule.name
    if isinstance(outcome, ErrorOutcome):
        ex.error = f"RuntimeError: {outcome.message(p.ctx)}"
    else:
        ex.backend = outcome
        from ..api import determine_backend_memory_format_api
        mf = determine_backend_memory_format_api(inp, w, outcome, env=env_obj)
        ex.memory_format = str(mf).replace("torch.", "")
    call = _Call(q, inp, w, b, stride_l, padding_l, dilation_l, transposed, op_l, groups,
                 env_obj)
    if not call.ok:
        ex.notes.append(f"(sub-conditions are not broken down: {call.why})")
    idx = next(i for i, r in enumerate(RULES) if r is rule)  # the rule that decided it
    for ri in range(idx):
        r = RULES[ri]
        cond = first_failing(p.ctx, r)
        if cond is None:  # pragma: no cover - an earlier rule would have fired
            continue
        ci = r.conds.index(cond)
        details, categorical = (_drill(q, call, ri, ci) if call.ok else ([], True))
        out = r.outcome.name if isinstance(r.outcome, ConvBackend) else f"error:{r.outcome.name}"
        ex.reasons.append(RuleReason(r.name, out, cond.text, details, categorical))
    if want is not None:
        wb = resolve_backend(want)
        if ex.backend == wb:
            ex.want = WantResult(wb, "already")
        else:
            ex.want = _want(q, call, wb, ex)
    return ex


# --------------------------------------------------------------------------------------
# want: the smallest change


def _cat_changes(call: _Call, facts: dict) -> list:
    out: list[tuple[str, Any, Any]] = []  # (what, from, to)
    for k, v in facts.items():
        if k == "dims":
            if v != call.dims:
                out.append(("dims", call.dims, v))
        elif k == "transposed":
            if v != call.transposed:
                out.append(("transposed", call.transposed, v))
        elif call.assign.get(k) != v:
            out.append((k, value_name(k, call.assign.get(k)), value_name(k, v)))
    return out


def _want(q: Query, call: _Call, target: ConvBackend, ex: Explanation | None,
          budget_s: float = 8.0) -> WantResult:
    if not call.ok:
        return WantResult(target, "unknown", note=f"cannot map the call onto the query space: "
                                                   f"{call.why}")
    r = reach(target, env=q.env, validate=False)
    if r.verdict == "unreachable":
        return WantResult(target, "unreachable", proof=r.proof)
    deadline = time.monotonic() + budget_s
    leaves = [x for x in q.space.explore(_targets(target), structures=q.structures)
              if isinstance(x, Leaf)]
    scored = []
    for leaf in leaves:
        facts = {"dims": leaf.structure.dims, "transposed": leaf.structure.transposed,
                 **leaf.assign}
        scored.append((len(_cat_changes(call, facts)), leaf))
    scored.sort(key=lambda t: t[0])
    # A change that needs a degenerate value (dilation 0, an empty tensor where the call has
    # none) ranks after every sensible one: torch accepts dilation 0 in its checks, but no
    # kernel computes it, and an empty call computes nothing.
    best = None  # (degenerate, total changes, distance, leaf, values, minimal)
    for ncat, leaf in scored:
        if best is not None and not best[0] and ncat >= best[1]:
            break
        if time.monotonic() > deadline and best is not None:
            break
        st = leaf.structure
        targets = {n: call.values.get(n, solve.preferred_value(n)) for n in st.symbols}
        if "Cout" in st.symbols and "Cout" not in call.values:
            targets["Cout"] = call.values["C"] if "C" in call.values else 1
        values, minimal = _closest(q, st, leaf.formula, targets, _sensible(st, targets))
        degenerate = False
        if values is None:
            if best is not None and not best[0]:
                continue  # a degenerate change cannot beat a sensible one
            values, minimal = _closest(q, st, leaf.formula, targets)
            degenerate = True
        if values is None:
            continue
        nint = sum(1 for n in st.symbols if values[n] != targets[n])
        dist = sum(abs(values[n] - targets[n]) for n in st.symbols)
        key = (degenerate, ncat + nint, dist)
        if best is None or key < best[:3]:
            best = (degenerate, ncat + nint, dist, leaf, values, minimal)
    if best is None:
        return WantResult(target, "unknown", proof=["no satisfiable region was found within "
                                                    f"{budget_s:.0f} s"])
    degenerate, _, _, leaf, values, minimal = best
    st = leaf.structure
    # the new call keeps the user's facts where the leaf does not care
    facts = dict(call.assign)
    facts.update(leaf.assign)
    full = {**q.space.full(st.dims, {}), **{k: v for k, v in facts.items()
                                            if k in q.space.vars(st.dims)}}
    wfacts = {"device": full["device"], "dtype": value_name("dtype", full["dtype"]),
              "layout": value_name("layout", full["layout"]),
              "input_mf": value_name("input_mf", full["input_mf"]),
              "weight_mf": value_name("weight_mf", full["weight_mf"]),
              "requires_grad": bool(full["requires_grad"])}
    flags = {k: full[k] for k in FLAG_VARS}
    wit = Witness(target, q.env, st.dims, st.transposed, dict(values), wfacts, flags)
    changes = _cat_changes(call, {"dims": st.dims, "transposed": st.transposed, **leaf.assign})
    changes += _int_changes(call, st, values)
    res = WantResult(target, "reachable", changes, wit, minimal=minimal)
    res.validation = replay(wit)
    if degenerate:
        res.note = (f"note: only degenerate values reach {target.name} from this call ("
                    + "; ".join(_degenerate_text(st, call.values, values))
                    + "): no change with dilations >= 1 and the call's non-empty sizes kept "
                    "non-empty does")
    if wit.symconv_backend() != target:  # pragma: no cover - internal consistency
        res.note = "warning: symconv's concrete rules disagree with the symbolic answer"
    return res


def _sensible(st, targets: dict) -> list:
    """What a meaningful suggestion keeps: every dilation >= 1, groups >= 1, and every size
    that the call has non-empty stays >= 1."""
    out = []
    for n, x in st.symbols.items():
        if n.startswith("dil") or n == "G" or (n in st.sizes and targets.get(n, 1) >= 1):
            out.append(x >= 1)
    return out


def _degenerate_text(st, old: dict, values: dict) -> list:
    out = []
    for n in st.symbols:
        v = values[n]
        if v >= 1 or old.get(n) == v:
            continue
        if n.startswith("dil"):
            out.append(f"{n} = {v}: torch's shape checks accept it, but no kernel computes it")
        elif n == "G":
            out.append(f"G = {v}")
        elif n in st.sizes:
            out.append(f"{n} = {v}: an empty tensor")
    return out


def _int_changes(call: _Call, st, values: dict) -> list:
    out = []
    sp = SPATIAL[st.dims]
    groups = [("input", ["N", "C"] + list(sp)),
              ("weight", (["C"] if st.transposed else ["Cout"]) + ["Cg"] + ["k" + s for s in sp]),
              ("stride", ["stride" + s for s in sp]), ("padding", ["pad" + s for s in sp]),
              ("dilation", ["dil" + s for s in sp]),
              ("output_padding", ["opad" + s for s in sp]), ("groups", ["G"])]
    for what, names in groups:
        old = [call.values.get(n) for n in names]
        new = [values.get(n) for n in names]
        if old != new:
            if what == "groups":
                out.append((what, old[0], new[0]))
            else:
                out.append((what, old, new))
    return out


def _closest(q: Query, st, formula, targets: dict, extra: list | None = None,
             timeout_ms: int = 2000):
    """Values satisfying the formula (and the call's validity, constraints and ``extra``) with
    as few changed values as possible (Z3 MaxSAT over "unchanged" soft constraints), then,
    keeping the unchanged ones, the least total change (Z3's optimiser). ``minimal`` says
    whether the count was proved minimal; otherwise the greedy search's answer is returned."""
    from .. import solver as S
    syms = st.symbols
    extra = list(extra or [])
    opt = S.new_optimize(min(timeout_ms, S.LIMITS.timeout_ms))
    opt.add(st.valid, q.where_formula(st), formula, *extra)
    for n in syms:
        opt.add_soft(syms[n] == targets[n])
    r = opt.check()
    if r == z3.unsat:
        return None, False
    if r == z3.sat:
        m = opt.model()
        vals = {n: m.eval(syms[n], model_completion=True).as_long() for n in syms}
        changed = [n for n in syms if vals[n] != targets[n]]
        opt2 = S.new_optimize(min(timeout_ms, S.LIMITS.timeout_ms))
        opt2.add(st.valid, q.where_formula(st), formula, *extra)
        opt2.add(*[syms[n] == targets[n] for n in syms if n not in changed])
        opt2.minimize(z3.Sum([z3.If(syms[n] >= targets[n], syms[n] - targets[n],
                                    targets[n] - syms[n]) for n in changed] or [z3.IntVal(0)]))
        if opt2.check() == z3.sat:
            m2 = opt2.model()
            vals = {n: m2.eval(syms[n], model_completion=True).as_long() for n in syms}
        return vals, True
    s = q.solver(st)
    s.push()
    try:
        s.add(formula, *extra)
        found = solve.minimise(s, syms, targets=targets)
    finally:
        s.pop()
    return found, False
