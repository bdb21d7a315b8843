"""The result of a trace: domain, output shapes, layers, backends, explain, export shapes."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import re
import time
from collections.abc import Mapping

import torch
import z3

from .. import solver
from ..spec import TensorSpec
from .engine import PathResult, explore, run_once
from .tensor import SymInt, SymSize, zexpr, zsub

__all__ = ["Trace", "Explanation", "trace"]

_BIG = 2 ** 40


@dataclasses.dataclass
class Explanation:
    """Why a point is invalid: the first layer that fails and torch's error there."""

    layer: str
    error: str  # the exception type's name
    message: str  # torch's first line
    op: str | None = None  # the torch function that raised (None: the model's own code)

    def __str__(self):
        where = f"{self.layer} ({self.op})" if self.op else self.layer
        return f"{where}: {self.error}: {self.message}"


def _ev(e, subs):
    v = z3.simplify(zsub(e, *subs)) if subs else z3.simplify(e)
    if z3.is_int_value(v):
        return v.as_long()
    if z3.is_true(v):
        return True
    if z3.is_false(v):
        return False
    raise ValueError(f"not decided by the given values: {v}")


def _map_out(x, f):
    if isinstance(x, SymSize):
        return f(x)
    if isinstance(x, tuple):
        return tuple(_map_out(v, f) for v in x)
    if isinstance(x, list):
        return [_map_out(v, f) for v in x]
    if isinstance(x, dict):
        return {k: _map_out(v, f) for k, v in x.items()}
    return x


class Trace:
    """``symconv.trace(model, *specs)``'s answer (see docs/tracing.md)."""

    def __init__(self, model, specs, symbols: dict, facts: list, paths: list[PathResult], env,
                 stats: dict, train: bool):
        self.model = model
        self.specs = list(specs)
        self._symbols = symbols  # name -> z3.Int
        self.facts = facts
        self.paths = paths
        self.env = env
        self.stats = stats
        self.train = train
        self._domain = None
        self._readable: str | None = None

    # --- symbols and domain -----------------------------------------------------------
    @property
    def symbols(self) -> list[str]:
        return list(self._symbols)

    @property
    def domain(self):
        """Where forward succeeds (Z3), for non-negative symbols."""
        if self._domain is None:
            ok = [p.condition() for p in self.paths if p.ok]
            d = z3.Or(*ok) if len(ok) > 1 else (ok[0] if ok else z3.BoolVal(False))
            self._domain = z3.simplify(z3.And(*self.facts, d) if self.facts else d)
        return self._domain

    def _subs(self, values: dict) -> list:
        missing = [s for s in self._symbols if s not in values]
        if missing:
            raise TypeError(f"missing values for symbols: {', '.join(missing)}")
        extra = [k for k in values if k not in self._symbols]
        if extra:
            raise TypeError(f"unknown symbols: {', '.join(extra)} (the trace's symbols: "
                            f"{', '.join(self._symbols)})")
        return [(self._symbols[k], z3.IntVal(int(v))) for k, v in values.items()]

    def is_valid(self, **values: int) -> bool:
        """Does forward succeed at these sizes? (evaluates the domain)"""
        return bool(_ev(self.domain, self._subs(values)))

    def witness(self) -> dict | None:
        """A valid point with small sizes: every size >= 1 where possible, then the sum of the
        sizes minimised (symconv.solver's optimiser, then a bounded descent with the solver,
        each under a short time limit; on "unknown" the best point found so far)."""
        for bound in (64, 1024, 2 ** 16, None):
            extra = [] if bound is None else [s <= bound for s in self._symbols.values()]
            prefer = [s >= 1 for s in self._symbols.values()]
            r = solver.check(self.domain, *prefer, *extra)
            if not r.sat:
                prefer = []
                r = solver.check(self.domain, *extra)
            if r.sat:
                return self._smaller(self._point(r.model), prefer)
        return None

    def _point(self, model) -> dict:
        return {k: model.eval(s, model_completion=True).as_long()
                for k, s in self._symbols.items()}

    def _smaller(self, point: dict, prefer: list, timeout_ms: int = 2000) -> dict:
        """``point`` improved toward the smallest sum of sizes (``prefer`` kept)."""
        syms = self._symbols
        if not syms:
            return point
        total = z3.Sum(*syms.values())
        opt = solver.new_optimize(timeout_ms)
        opt.add(self.domain, *prefer, total <= sum(point.values()))
        opt.minimize(total)
        if opt.check() == z3.sat:
            return self._point(opt.model())
        # the optimiser gave up (nonlinear domains): bounded descent, each step a short query
        best = point
        for _ in range(8):
            cur = sum(best.values())
            if cur == 0:
                break
            r = solver.check(self.domain, *prefer, total <= cur // 2 if cur > 8 else total < cur,
                             timeout_ms=timeout_ms // 4)
            if not r.sat:
                if cur <= 8:
                    break
                r = solver.check(self.domain, *prefer, total < cur, timeout_ms=timeout_ms // 4)
                if not r.sat:
                    break
            best = self._point(r.model)
        return best

    # --- outputs ----------------------------------------------------------------------
    def _path_at(self, values: dict) -> PathResult | None:
        subs = self._subs(values)
        for p in self.paths:
            if p.ok and _ev(p.condition(), subs):
                return p
        return None

    @property
    def outputs(self):
        """The symbolic output shapes (of the first successful path; see ``output_cases``)."""
        for p in self.paths:
            if p.ok:
                return p.output
        return None

    @property
    def output_cases(self) -> list:
        """``(condition, output shapes)`` for every successful path."""
        return [(p.condition(), p.output) for p in self.paths if p.ok]

    def output_shapes(self, **values: int):
        """The output shape(s) at these sizes: a tuple for a single tensor output, else the
        output's structure (dict / tuple / list) with a tuple per tensor."""
        p = self._path_at(values)
        if p is None:
            ex = self.explain(**values)
            raise ValueError(f"forward fails at {values}: {ex}")
        subs = self._subs(values)
        return _map_out(p.output, lambda sh: tuple(
            s if isinstance(s, int) else _ev(zexpr(s), subs) for s in sh))

    # --- layers and backends ------------------------------------------------------------
    @property
    def layers(self) -> list:
        """Per module call: qualified name, type, symbolic input/output shapes (first
        successful path, else the first path)."""
        for p in self.paths:
            if p.ok:
                return p.layers
        return self.paths[0].layers if self.paths else []

    def backends(self, env=None) -> Mapping:
        """For every convolution: ``{layer name: [(condition, backend or exception), ...]}``
        under ``env`` (default: the running torch), a lazy mapping: a layer's entry is computed
        when it is first read. Each distinct convolution configuration is evaluated once with
        fresh symbols (symconv.select_conv_backend, cached across traces) and substituted;
        error messages show the layer's own size terms."""
        from ..env import Environment
        env = env if env is not None else Environment.from_torch()
        calls: dict = {}
        for rec in self.layers:
            for call in rec.convs:
                calls.setdefault(call.layer, []).append(call)
        return _LazyBackends(calls, lambda call: self._conv_backends(call, env))

    def _conv_backends(self, call, env) -> list:
        from .. import api
        from .. import domain as D
        fresh = []
        shape = []
        names = {}
        for i, s in enumerate(call.input_shape):
            if isinstance(s, int):
                shape.append(s)
            else:
                v = z3.Int(f"_b{i}")
                fresh.append((v, zexpr(s)))
                names[f"_b{i}"] = _term_str(zexpr(s))
                shape.append(v)
        key = (call.fn, tuple(s if isinstance(s, int) else None for s in call.input_shape),
               call.weight_shape, call.bias, str(call.stride), str(call.padding),
               str(call.dilation), call.groups, str(call.output_padding), str(call.dtype), env)
        cases = _BACKENDS.get(key)
        if cases is None:
            n = len(call.weight_shape) - 2
            x_shape = tuple(shape)
            if len(x_shape) == n + 1:
                x_shape = (1,) + x_shape
            pad = call.padding
            if isinstance(pad, str):
                pad = _same_or_valid(pad, call)
            sel = api.select_conv_backend(
                TensorSpec(x_shape, dtype=call.dtype), TensorSpec(call.weight_shape),
                TensorSpec((call.weight_shape[1] * call.groups if call.transposed
                            else call.weight_shape[0],)) if call.bias else None,
                _lst(call.stride, n), _lst(pad, n), _lst(call.dilation, n), call.transposed,
                _lst(call.output_padding, n), call.groups, env=env)
            if hasattr(sel, "cases"):
                cases = [(D.to_z3(c.condition), c.outcome) for c in sel.cases]
            else:
                cases = [(z3.BoolVal(True), sel)]
            _BACKENDS[key] = cases
        return [(z3.simplify(zsub(c, *fresh)) if fresh else c, _rename(o, names))
                for c, o in cases]

    # --- explain ------------------------------------------------------------------------
    def explain(self, **values: int) -> Explanation | None:
        """For an invalid point, the first layer that fails and torch's message there (the
        forward re-run with these sizes: every check decided, convolutions answered by
        symconv.functional); None when forward succeeds."""
        self._subs(values)
        specs = [_concrete_spec(s, values, self._symbols) for s in self.specs]
        from .helpers import patches
        with _mode(self.model, self.train):
            _, res = run_once(self.model, specs, {}, [], [], self.env, patches)
        if res.ok:
            return None
        e = res.error
        # torch's exception type: symconv's ConvError family are RuntimeError/ValueError
        etype = next(c for c in type(e).__mro__ if c.__module__ == "builtins")
        return Explanation(res.error_layer or "<model>", etype.__name__,
                           str(e).splitlines()[0] if str(e) else "", res.error_op)

    # --- readable form --------------------------------------------------------------------
    def readable(self, timeout_ms: int | None = None) -> str:
        """The domain as ``H >= 32 and H % 16 == 0 and ...`` where that form is proven
        equivalent (Z3); otherwise the implied per-symbol facts and the raw form.

        The whole search runs within ``timeout_ms`` (default: symconv.solver's limit,
        ``SYMCONV_Z3_TIMEOUT_MS``); when it is spent the answer is "not simplified" with the
        raw domain, never an unproven simplification."""
        if self._readable is not None:
            return self._readable
        budget = solver.LIMITS.timeout_ms if timeout_ms is None else timeout_ms
        _DEADLINE.append(time.monotonic() + budget / 1000)
        try:
            self._readable = _readable(self.domain, self._symbols, self.facts)
            return self._readable
        except _OutOfBudget:
            return (f"not simplified (time budget of {budget} ms spent; "
                    f"{solver.LIMITS.describe(budget)}); raw: {z3.simplify(self.domain)}")
        finally:
            _DEADLINE.pop()

    def symbol_facts(self) -> dict:
        """Per symbol: minimum, maximum (None: unbounded), (modulus, remainder) implied by the
        domain (each proven with Z3)."""
        samples = _sample_valid(self.domain, self._symbols)
        return {k: _facts(self.domain, s, samples, self._symbols) for k, s in self._symbols.items()}

    def __str__(self):
        return self.readable()

    def __repr__(self):
        return f"Trace({', '.join(self._symbols)}: {self.readable()})"

    # --- torch.export --------------------------------------------------------------------
    def _size_terms(self) -> list:
        """Every symbolic size the forward computes (layer inputs/outputs, outputs)."""
        seen, out = set(), []

        def add(sh):
            for v in sh:
                if isinstance(v, SymInt) and v.e.get_id() not in seen:
                    seen.add(v.e.get_id())
                    out.append(v.e)
        for rec in self.layers:
            for sh in list(rec.inputs) + list(rec.outputs):
                add(sh)
        _map_out(self.outputs, lambda sh: add(sh))
        return out

    def _export_domain(self):
        """The domain where every input size and every intermediate size that can be is at
        least 2: torch.export specialises sizes 0 and 1 (of inputs and of intermediate sizes
        it guards on). Sizes the domain forces below 2 are left out."""
        if getattr(self, "_dom2", None) is not None:
            return self._dom2
        base = z3.And(self.domain, *[s >= 2 for s in self._symbols.values()])
        samples = _sample_valid(base, self._symbols)
        if not samples and not solver.check(base, timeout_ms=5000).sat:
            base = self.domain
            samples = _sample_valid(base, self._symbols)
        terms = self._size_terms()
        if samples:
            # the sampled valid point where most intermediate sizes are >= 2 decides which
            # sizes can be kept >= 2 together (a witness, no solver query)
            best, kept = -1, []
            for p in samples:
                subs = [(self._symbols[k], z3.IntVal(v)) for k, v in p.items()]
                ok = [t for t in terms if _ev_int(t, subs) >= 2]
                if len(ok) > best:
                    best, kept = len(ok), ok
            self._dom2 = z3.And(base, *[t >= 2 for t in kept]) if kept else base
            return self._dom2
        conds = [t >= 2 for t in terms]
        if conds and solver.check(base, *conds, timeout_ms=5000).sat:
            self._dom2 = z3.And(base, *conds)
            return self._dom2
        kept = []
        for c in conds:
            if solver.check(base, *kept, c, timeout_ms=2000).sat:
                kept.append(c)
        self._dom2 = z3.And(base, *kept) if kept else base
        return self._dom2

    def export_dynamic_shapes(self, with_notes: bool = False):
        """``dynamic_shapes`` for ``torch.export.export(model, args, dynamic_shapes=...)``:
        a tuple with one ``{dim: Dim}`` dict per positional input (None where static). Ranges
        and divisibility come from the domain restricted to every size (input and
        intermediate) >= 2, since torch.export specialises 0 and 1. ``with_notes=True`` also
        returns what it cannot express."""
        from torch.export import Dim
        dom2 = self._export_domain()
        samples = _sample_valid(dom2, self._symbols)
        facts = {k: _facts(dom2, s, samples, self._symbols) for k, s in self._symbols.items()}
        full = self.symbol_facts()
        notes = []
        dims = {}
        region = []
        for name, s in self._symbols.items():
            f = facts[name]
            if f["min"] is None:
                notes.append(f"{name}: no valid value with every size >= 2")
                continue
            lo = max(f["min"], 2)
            if full[name]["min"] is not None and full[name]["min"] < lo:
                notes.append(f"{name}: forward also succeeds for {name} in "
                             f"[{full[name]['min']}, {lo - 1}] (where some size is 0 or 1), "
                             "which torch.export specialises: the range starts at "
                             f"{lo}")
            hi = f["max"]
            m, r = f["mod"]
            if m > 1:
                base_lo = max(-(-(lo - r) // m), 1)
                base = Dim(f"{name}_{m}", min=base_lo, max=(hi - r) // m) if hi is not None \
                    else Dim(f"{name}_{m}", min=base_lo)
                dims[name] = m * base + r if r else m * base
                region += [s >= m * base_lo + r, s % m == r]
            else:
                dims[name] = Dim(name, min=lo, max=hi) if hi is not None else Dim(name, min=lo)
                region.append(s >= lo)
            if hi is not None:
                region.append(s <= hi)
        self._export_region = region
        for p in self.paths:
            for n in sorted(p.notes):
                if n not in notes:
                    notes.append(n)
        if region:
            chk = solver.prove(self.domain, *region, timeout_ms=20000)
            if not chk.unsat:
                notes.append("the domain is not a box with divisibility (holes, or conditions "
                             "joining symbols): the exported range contains sizes where "
                             "forward fails" + (f" (e.g. {_model_str(chk.model, self._symbols)})"
                                                if chk.sat else " (undecided)"))
        out: list = []
        for spec in self.specs:
            if not isinstance(spec, TensorSpec):
                out.append(None)
                continue
            d = {}
            for i, size in enumerate(spec.shape):
                if isinstance(size, int):
                    continue
                name = str(size)
                if name in dims:
                    d[i] = dims[name]
                else:
                    notes.append(f"dimension {i} is the expression {size}: only plain symbols "
                                 "become Dims")
            out.append(d or None)
        shapes = tuple(out)
        return (shapes, notes) if with_notes else shapes

    def export_example(self) -> tuple:
        """Example inputs for torch.export inside ``export_dynamic_shapes``'s ranges, away from
        their lower ends (export specialises on example sizes 0 and 1, also intermediate)."""
        if not hasattr(self, "_export_region"):
            self.export_dynamic_shapes()
        dom2 = z3.And(self._export_domain(), *self._export_region)
        syms = list(self._symbols.values())
        vals = None
        samples = _sample_valid(dom2, self._symbols)
        for floor in (16, 8, 2):  # the smallest sampled point with every size >= floor
            ok = [p for p in samples if min(p.values()) >= floor]
            if ok:
                vals = min(ok, key=lambda p: (math.prod(p.values()), sorted(p.items())))
                break
        for lo in (32, 16, 8, 2):
            if vals is not None:
                break
            r = solver.check(dom2, *[s >= lo for s in syms], *[s <= 4096 for s in syms])
            if r.sat:
                vals = {k: r.model.eval(s, model_completion=True).as_long()
                        for k, s in self._symbols.items()}
        if vals is None:
            raise ValueError("no valid point with every size >= 2")
        return tuple(torch.randn(_concrete_spec(s, vals, self._symbols).shape)
                     if isinstance(s, TensorSpec) else s for s in self.specs)


_BACKENDS: dict = {}
_FRESH_NAME = re.compile(r"\b_b\d+\b")


class _LazyBackends(Mapping):
    """``Trace.backends``: layer name -> cases, each layer computed on first access."""

    def __init__(self, calls: dict, compute):
        self._calls = calls
        self._compute = compute
        self._done: dict = {}

    def __getitem__(self, layer):
        if layer not in self._done:
            calls = self._calls[layer]
            self._done[layer] = [case for call in calls for case in self._compute(call)]
        return self._done[layer]

    def __iter__(self):
        return iter(self._calls)

    def __len__(self):
        return len(self._calls)

    def __repr__(self):
        return f"<backends of {len(self)} convolution layers (computed on access)>"


def _term_str(e) -> str:
    t = str(e).replace("\n", " ")
    return t if re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*|\d+", t) else f"({t})"


def _rename(outcome, names: dict):
    """An error outcome computed over the fresh ``_b<i>`` symbols, with the layer's own size
    terms in its message; other outcomes as they are."""
    if not names or not isinstance(outcome, BaseException):
        return outcome
    args = tuple(_FRESH_NAME.sub(lambda m: names.get(m.group(0), m.group(0)), a)
                 if isinstance(a, str) else a for a in outcome.args)
    if args == outcome.args:
        return outcome
    new = copy.copy(outcome)
    new.args = args
    return new


def _ev_int(e, subs) -> int:
    v = z3.simplify(zsub(e, *subs))
    return v.as_long() if z3.is_int_value(v) else -1


def _model_str(m, symbols):
    return ", ".join(f"{k}={m.eval(s, model_completion=True)}" for k, s in symbols.items())


def _lst(x, n):
    if isinstance(x, (list, tuple)):
        return list(x) if len(x) != 1 else list(x) * n
    return [x] * n


def _same_or_valid(pad, call):
    n = len(call.weight_shape) - 2
    if pad == "valid":
        return [0] * n
    dl = _lst(call.dilation, n)
    return [dl[i] * (call.weight_shape[2 + i] - 1) // 2 for i in range(n)]


def _concrete_spec(spec, values, symbols):
    if not isinstance(spec, TensorSpec):
        return spec
    subs = [(symbols[k], z3.IntVal(int(v))) for k, v in values.items() if k in symbols]
    from .. import domain as D
    shape = []
    for s in spec.shape:
        if isinstance(s, int):
            shape.append(s)
        else:
            shape.append(_ev(D.to_z3(s, dict(symbols)), subs))
    return TensorSpec(tuple(shape), dtype=spec.dtype, device=spec.device,
                      requires_grad=spec.requires_grad)


@contextlib.contextmanager
def _mode(model, train):
    was = model.training
    saved = {n: b.clone() for n, b in model.named_buffers()
             if n.endswith("num_batches_tracked")} if train else {}
    if was != train:
        model.train(train)
    try:
        yield
    finally:
        if model.training != was:
            model.train(was)
        if saved:
            bufs = dict(model.named_buffers())
            for n, v in saved.items():
                bufs[n].copy_(v)


# --- per-symbol facts and the readable form ---------------------------------------------

class _OutOfBudget(Exception):
    """``readable()``'s time budget is spent."""


_DEADLINE: list = []  # the monotonic deadline of the running readable(), if any


def _budget_ms(timeout_ms):
    t = solver.LIMITS.timeout_ms if timeout_ms is None else timeout_ms
    if _DEADLINE:
        left = int((_DEADLINE[-1] - time.monotonic()) * 1000)
        if left <= 0:
            raise _OutOfBudget
        t = min(t, left)
    return t


def _bcheck(*formulas, timeout_ms=None):
    return solver.check(*formulas, timeout_ms=_budget_ms(timeout_ms))


def _bprove(claim, *assumptions, timeout_ms=None):
    return solver.prove(claim, *assumptions, timeout_ms=_budget_ms(timeout_ms))


def _min(dom, s, samples=None):
    """The least value of ``s`` over ``dom`` (bisection; undecided queries count as
    unsatisfiable, so the answer can only be too high, never too low)."""
    vals = [p[str(s)] for p in (samples or [])]
    if vals:
        lo, hi = 0, min(vals)
    else:
        if not _bcheck(dom).sat:
            return None
        lo, hi = 0, 1
        while not _bcheck(dom, s <= hi).sat:
            lo, hi = hi + 1, hi * 2
            if hi > _BIG:
                return None
    while lo < hi:  # smallest v with dom & s <= v satisfiable
        mid = (lo + hi) // 2
        if _bcheck(dom, s <= mid).sat:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _max(dom, s, samples=None, symbols=None):
    # evidence first: a valid sample point moved to a huge value of s (same residue mod 1024)
    for p in (samples or [])[:20]:
        big = 2 ** 30 + p[str(s)] % 1024
        subs = [(symbols[k], z3.IntVal(big if k == str(s) else v)) for k, v in p.items()]
        if z3.is_true(z3.simplify(zsub(dom, *subs))):
            return None
    if _bcheck(dom, s >= _BIG).sat:
        return None
    lo, hi = 0, _BIG
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _bcheck(dom, s >= mid).sat:
            lo = mid
        else:
            hi = mid - 1
    return lo


_MODS = [2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024]


def _sample_valid(dom, symbols: dict) -> list:
    """Valid points among a fixed sample (diagonal and seeded random combinations of typical
    sizes): cheap evidence that rules out divisibility candidates without solver queries."""
    import random
    from .engine import _VALUES
    syms = list(symbols.values())
    rnd = random.Random(1)
    pts = [[v] * len(syms) for v in _VALUES]
    pts += [[rnd.choice(_VALUES) + rnd.choice((0, 1, 2, 3)) for _ in syms] for _ in range(80)]
    out = []
    for p in pts:
        v = z3.simplify(zsub(dom, *[(s, z3.IntVal(x)) for s, x in zip(syms, p)]))
        if z3.is_true(v):
            out.append(dict(zip([str(s) for s in syms], p)))
    return out


def _facts(dom, s, samples=None, symbols=None) -> dict:
    lo = _min(dom, s, samples)
    if lo is None:
        return {"min": None, "max": None, "mod": (1, 0)}
    hi = _max(dom, s, samples, symbols)
    best = (1, 0)
    if hi is None or hi - lo > 64:
        seen = [p[str(s)] for p in (samples or [])]
        if not seen:
            w = _bcheck(dom)
            if not w.sat:
                return {"min": lo, "max": hi, "mod": best}
            seen = [w.model.eval(s, model_completion=True).as_long()]
        v = seen[0]
        for m in _MODS:
            if m % best[0]:
                continue
            if len({x % m for x in seen}) > 1:
                continue
            if _bprove(s % m == v % m, dom, timeout_ms=5000).unsat:
                best = (m, v % m)
    return {"min": lo, "max": hi, "mod": best}


def _readable(dom, symbols: dict, facts: list, split: bool = True) -> str:
    r = _readable_form(dom, symbols, facts)
    if r is not None:
        return r
    if split:
        # a zero size often switches checks off (an empty batch skips the kernels): try
        # "X == 0 or (...)" with both sides in the simple form, proven piecewise
        for k, s in symbols.items():
            zero = z3.And(dom, s == 0)
            rest = z3.And(dom, s >= 1)
            if not _bcheck(zero).sat or not _bcheck(rest).sat:
                continue
            a = _readable_form(zero, symbols, facts + [s == 0])
            b = _readable_form(rest, symbols, facts + [s >= 1])
            if a is not None and b is not None:
                a = a.replace("always (every size >= 0)", "")
                a = " and ".join(x for x in a.split(" and ") if x and not x.startswith(f"{k} "))
                a = f"{k} == 0" + (f" and {a}" if a else "")
                b = b if k in b.split(" ")[0:1] else f"{k} >= 1 and {b}"
                return f"({a}) or ({b})"
    head = _box_parts(dom, symbols)[0]
    return (f"{' and '.join(head) if head else 'every size >= 0'} and more (not simplified: "
            f"no equivalent form of this kind was proven); raw: {z3.simplify(dom)}")


def _box_parts(dom, symbols):
    parts, cand = [], []
    samples = _sample_valid(dom, symbols)
    for k, s in symbols.items():
        f = _facts(dom, s, samples, symbols)
        if f["min"] and f["min"] > 0:
            parts.append(f"{k} >= {f['min']}")
            cand.append(s >= f["min"])
        if f["max"] is not None:
            parts.append(f"{k} <= {f['max']}")
            cand.append(s <= f["max"])
        m, r = f["mod"]
        if m > 1:
            parts.append(f"{k} % {m} == {r}")
            cand.append(s % m == r)
    return parts, cand


def _readable_form(dom, symbols: dict, facts: list) -> str | None:
    """The box-with-divisibility form (plus excluded atoms) proven equivalent, else None."""
    if _bprove(dom, *facts).unsat:
        return "always (every size >= 0)"
    if not _bcheck(dom).sat:
        return "never"
    parts, cand = _box_parts(dom, symbols)
    box = z3.And(*facts, *cand) if (facts or cand) else z3.BoolVal(True)
    eqv = _bprove(dom == box, timeout_ms=20000)
    if eqv.unsat:
        return " and ".join(parts) if parts else "always (every size >= 0)"
    # holes: points of the box outside the domain, generalised and proven
    atoms = _joint(dom, box, symbols)
    if atoms:
        return " and ".join(parts + atoms)
    return None


def _joint(dom, box, symbols) -> list | None:
    """Atoms ``X != v`` or ``A * B * ... != 1`` with ``dom == box and atoms`` (proven)."""
    atoms = []
    names = list(symbols)
    cur = box
    for _ in range(8):
        r = _bcheck(cur, z3.Not(dom))
        if r.unsat:
            break
        if not r.sat:
            return None
        vals = {k: r.model.eval(s, model_completion=True).as_long() for k, s in symbols.items()}
        found = None
        for k in names:
            cand = symbols[k] != vals[k]
            if _bprove(z3.Implies(dom, cand)).unsat:
                found = (f"{k} != {vals[k]}", cand)
                break
        if found is None:
            for group in _groups(names):
                prod = 1
                for k in group:
                    prod = prod * symbols[k]
                cand = prod != 1
                if all(vals[k] == 1 for k in group) and \
                        _bprove(z3.Implies(dom, cand)).unsat:
                    found = (" * ".join(group) + " != 1", cand)
                    break
        if found is None:
            return None
        atoms.append(found[0])
        cur = z3.And(cur, found[1])
    if not atoms or not _bprove(dom == cur, timeout_ms=20000).unsat:
        return None
    return atoms


def _groups(names):
    out = []
    n = len(names)
    for mask in range(1, 2 ** n):
        g = [names[i] for i in range(n) if mask >> i & 1]
        if len(g) >= 2:
            out.append(g)
    return sorted(out, key=len)


def trace(model: torch.nn.Module, *specs, train: bool | None = None, env=None,
          max_paths: int = 64) -> Trace:
    """Run ``model``'s forward once over symbolic sizes (see docs/tracing.md).

    ``specs``: one :class:`symconv.TensorSpec` per positional input (symbol names as sizes);
    other values are passed as they are. ``train``: the mode to trace in (default: the
    model's current mode; the domain depends on it). ``env``: the
    :class:`symconv.Environment` for convolution front-ends (default: the running torch).
    """
    from ..env import Environment
    from .helpers import patches
    from .. import domain as D
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    spec_list = [TensorSpec(tuple(s)) if isinstance(s, (tuple, list)) else s for s in specs]
    symbols: dict = {}
    for s in spec_list:
        if isinstance(s, TensorSpec):
            for d in s.shape:
                if not isinstance(d, int):
                    D.to_z3(d, symbols)
    facts = [v >= 0 for v in symbols.values()]
    env = env if env is not None else Environment.from_torch()
    train = model.training if train is None else bool(train)
    t0 = time.perf_counter()
    with _mode(model, train):
        paths, stats = explore(model, spec_list, symbols, facts, env, patches, max_paths)
    stats["seconds"] = time.perf_counter() - t0
    stats["paths"] = len(paths)
    return Trace(model, spec_list, symbols, facts, paths, env, stats, train)
