"""Path exploration: run a model's forward on symbolic tensors, once per feasible path.

One run (:class:`PathRun`) executes ``model(*inputs)`` on :class:`~.tensor.STensor` inputs.
Every torch function reaches :func:`dispatch`, which applies the op's rule from
:mod:`symconv.tracing.ops`: the rule computes output shapes and records ordered checks
``(condition, error type, torch's message)``. Every ``bool()`` of a symbolic condition in the
model's Python code reaches :meth:`PathRun.decide`: under the path condition (and the checks
recorded so far, which the code only passes when they hold) the solver says which sides are
feasible; when both are, the run takes ``True`` and queues the other side, which a later run
re-executes with the earlier decisions forced. The domain is the OR over paths of
``path condition AND every check passes``.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any

import torch
import z3

from .. import solver
from ..spec import TensorSpec
from .tensor import (STATE, STensor, SymInt, SymSize, TraceError, UnsupportedOp, decided_check,
                     wrap, zsub)

__all__ = ["Check", "LayerRecord", "PathRun", "PathResult", "dispatch", "explore",
           "MAX_PATHS"]

MAX_PATHS = 64
DECIDE_TIMEOUT_MS = 3000
_VALUES = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 224, 256,
           511, 1000]


@dataclasses.dataclass
class Check:
    """One ordered check: ``cond`` (Z3) is "passes"; otherwise torch raises ``error(message)``."""

    cond: Any
    error: type
    message: Callable[[], str]
    layer: str
    op: str


@dataclasses.dataclass
class LayerRecord:
    """One module call: qualified name, type, symbolic input and output shapes."""

    name: str
    type: str
    inputs: list
    outputs: list = dataclasses.field(default_factory=list)
    convs: list = dataclasses.field(default_factory=list)  # ConvCall records (lazy backends)

    def __str__(self):
        def fmt(shapes):
            return ", ".join("(" + ", ".join(str(s) for s in sh) + ")" for sh in shapes)
        return f"{self.name or '<model>'} [{self.type}]: {fmt(self.inputs)} -> {fmt(self.outputs)}"


@dataclasses.dataclass
class PathResult:
    decisions: list  # [(cond, value)]
    pc: list  # Z3 conditions of the decisions
    checks: list  # [Check]
    layers: list  # [LayerRecord]
    output: Any = None  # the forward's result with STensor leaves replaced by SymSize
    error: BaseException | None = None
    error_layer: str | None = None
    error_op: str | None = None
    notes: set = dataclasses.field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.error is None

    def condition(self):
        """Where this path is taken and every check passes (Z3)."""
        if not self.ok:
            return z3.BoolVal(False)
        return z3.And(*(self.pc + [c.cond for c in self.checks])) if (self.pc or self.checks) \
            else z3.BoolVal(True)

    def reached(self):
        return z3.And(*self.pc) if self.pc else z3.BoolVal(True)


class PathRun:
    """The state of one execution of the forward."""

    def __init__(self, facts: list, forced: list, env=None):
        self.facts = facts
        self.forced = forced
        self.decisions: list = []
        self.pc: list = []
        self.checks: list[Check] = []
        self.alternatives: list[list] = []
        self.stack: list[LayerRecord] = []
        self.layers: list[LayerRecord] = []
        self.pending_index: list = []
        self.env = env
        self.current_op = ""
        self.error_op: str | None = None
        self.solver_calls = 0
        self._check_keys: set = set()
        self._pool: list[list[tuple[Any, Any]]] | None = None  # (symbol, value) points
        self._pt_state: dict = {}
        self._decided: dict = {}
        self._keep: list = []
        self.memo: dict = {}
        self.notes: set = set()

    # --- where we are -----------------------------------------------------------------
    def layer_name(self) -> str:
        """The qualified name of the module running now; the top-level module (whose
        ``named_modules()`` name is empty) and code outside any module are ``<model>``."""
        return (self.stack[-1].name or "<model>") if self.stack else "<model>"

    def layer(self) -> LayerRecord | None:
        return self.stack[-1] if self.stack else None

    # --- branches ---------------------------------------------------------------------
    def _known(self) -> list:
        return self.facts + self.pc + [c.cond for c in self.checks]

    def _sat(self, *conds) -> bool:
        self.solver_calls += 1
        r = solver.check(*self._known(), *conds, timeout_ms=DECIDE_TIMEOUT_MS)
        return not r.unsat  # unknown: explore it (an infeasible path only costs time)

    def _points(self) -> list[list[tuple[Any, Any]]]:
        """Concrete points tried before the solver: a side seen true at a point of the
        reached region is feasible without a query (nonlinear size terms are slow in Z3)."""
        if self._pool is None:
            syms = [f.arg(0) for f in self.facts]
            rnd = random.Random(0)
            pts = [[(s, z3.IntVal(v)) for s in syms] for v in _VALUES]
            for _ in range(48):
                pts.append([(s, z3.IntVal(rnd.choice(_VALUES))) for s in syms])
            self._pool = pts
        return self._pool

    def _alive(self, i: int, pt) -> bool:
        """Is sampled point ``i`` inside the reached region (facts, path condition, checks)?
        Evaluated incrementally: the lists only grow within a run."""
        st = self._pt_state.get(i)
        if st is None:
            st = self._pt_state[i] = [0, 0, 0, True]  # facts, pc, checks seen; alive
        if not st[3]:
            return False
        for idx, seq in ((0, self.facts), (1, self.pc), (2, [c.cond for c in self.checks])):
            new = seq[st[idx]:]
            if new:
                st[idx] = len(seq)
                v = z3.simplify(zsub(z3.And(*new) if len(new) > 1 else new[0], *pt))
                if not z3.is_true(v):
                    st[3] = False
                    return False
        return True

    def _sides_by_sampling(self, cond) -> tuple[bool, bool]:
        t_ok = f_ok = False
        for i, pt in enumerate(self._points()):
            if not pt:
                break
            c = z3.simplify(zsub(cond, *pt))
            if z3.is_true(c):
                if t_ok:
                    continue
            elif z3.is_false(c):
                if f_ok:
                    continue
            else:
                continue
            if not self._alive(i, pt):
                continue
            if z3.is_true(c):
                t_ok = True
            else:
                f_ok = True
            if t_ok and f_ok:
                break
        return t_ok, f_ok

    def decide(self, cond) -> bool:
        cond = z3.simplify(cond)
        if z3.is_true(cond):
            return True
        if z3.is_false(cond):
            return False
        known = self._decided.get(cond.get_id())
        if known is not None:  # the same condition (or its negation) was decided on this path
            return known
        i = len(self.decisions)
        if i < len(self.forced):
            value = self.forced[i]
        else:
            t_ok, f_ok = self._sides_by_sampling(cond)
            t_ok = t_ok or self._sat(cond)
            f_ok = f_ok or self._sat(z3.Not(cond))
            if t_ok and f_ok:
                value = True
                self.alternatives.append([v for _, v in self.decisions] + [False])
            elif t_ok:
                value = True
            elif f_ok:
                value = False
            else:  # the path itself is infeasible: an earlier unknown let it through
                raise _Infeasible()
        self.decisions.append((cond, value))
        self.pc.append(cond if value else z3.Not(cond))
        neg = z3.simplify(z3.Not(cond))
        self._decided[cond.get_id()] = value
        self._decided[neg.get_id()] = not value
        self._keep.append((cond, neg))  # ids stay valid while the terms live
        return value

    def fixed_value(self, x: SymInt) -> int | None:
        """The value of ``x`` when the path condition fixes it, else None."""
        self.solver_calls += 1
        r = solver.check(*self._known())
        if not r.sat:
            return None
        v = r.model.eval(x.e, model_completion=True)
        if not z3.is_int_value(v):
            return None
        v = v.as_long()
        if self._sat(x.e != v):
            return None
        return v

    # --- checks -----------------------------------------------------------------------
    def check(self, cond, error: type, message: Callable[[], str]) -> None:
        """Record a check; raise torch's error at once when it fails for every point here."""
        c = decided_check(cond, error, message)
        if c is None:
            return
        key = c.get_id()
        if key in self._check_keys:
            return
        self._check_keys.add(key)
        self.checks.append(Check(c, error, message, self.layer_name(), self.current_op))


class _Infeasible(Exception):
    pass


# --- dispatch -------------------------------------------------------------------------

def _func_name(func) -> str:
    if getattr(func, "__name__", "") == "__get__":
        return "Tensor." + getattr(getattr(func, "__self__", None), "__name__", "?")
    mod = getattr(func, "__module__", None) or ""
    qual = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    if "TensorBase" in qual or qual.startswith("Tensor."):
        return "Tensor." + qual.split(".")[-1]
    if qual.startswith("_VariableFunctionsClass."):
        return "torch." + qual.split(".")[-1]
    if mod.startswith("torch.nn.functional"):
        return "F." + qual
    return (mod + "." if mod else "torch.") + qual


def _scan(x, out: list) -> None:
    if isinstance(x, SymInt):
        out.append(x)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _scan(v, out)
    elif isinstance(x, dict):
        for v in x.values():
            _scan(v, out)


def dispatch(func, args, kwargs):
    """``__torch_function__`` of STensor: apply the op's rule."""
    from .ops import lookup
    run = STATE.run
    name = _func_name(func)
    if run is None:
        raise TraceError(f"a symbolic tensor reached {name} outside a trace")
    if run.pending_index:
        seen: list = []
        _scan(args, seen)
        _scan(kwargs, seen)
        ids = {id(s) for s in seen}
        left = [s for s in run.pending_index if id(s) not in ids]
        run.pending_index = []
        if left:
            raise TraceError(f"the symbolic size {left[0]} was used as a Python int (__index__) "
                             f"before {name} at layer {run.layer_name()}: that would pin it to "
                             "one value")
    rule = lookup(func)
    if rule is None:
        raise UnsupportedOp(f"unsupported op {name} at layer {run.layer_name()}")
    prev = run.current_op
    run.current_op = name
    try:
        return rule(run, *args, **kwargs)
    except Exception:
        if run.error_op is None:
            run.error_op = name
        raise
    finally:
        run.current_op = prev


# --- module hooks ---------------------------------------------------------------------

def _shapes_of(x, out: list) -> list:
    if isinstance(x, STensor):
        out.append(x.shape)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _shapes_of(v, out)
    elif isinstance(x, dict) or hasattr(x, "items"):
        try:
            for v in x.values():
                _shapes_of(v, out)
        except Exception:  # noqa: BLE001 - not a mapping after all
            pass
    return out


class _Hooks:
    def __init__(self, model: torch.nn.Module, run_ref: Callable[[], PathRun]):
        self.names = {id(m): n for n, m in model.named_modules()}
        self.run_ref = run_ref
        self.handles: list = []

    def __enter__(self):
        mm = torch.nn.modules.module
        self.handles.append(mm.register_module_forward_pre_hook(self.pre))
        self.handles.append(mm.register_module_forward_hook(self.post))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()

    def pre(self, module, args):
        name = self.names.get(id(module))
        if name is None:
            return None
        run = self.run_ref()
        rec = LayerRecord(name, type(module).__name__, _shapes_of(args, []))
        run.stack.append(rec)
        run.layers.append(rec)
        return None

    def post(self, module, args, output):
        if id(module) not in self.names:
            return None
        run = self.run_ref()
        if run.stack and run.stack[-1].name == self.names[id(module)]:
            rec = run.stack[-1]
            if output is not None:
                rec.outputs = _shapes_of(output, [])
            run.stack.pop()
        return None


def _outputs(x):
    """The forward's result with every STensor replaced by its shape (structure kept)."""
    if isinstance(x, STensor):
        return SymSize(x.shape)
    if isinstance(x, torch.Tensor):  # a real tensor the forward made without the inputs
        return SymSize(tuple(x.shape))
    if isinstance(x, tuple) and not hasattr(x, "keys"):
        return tuple(_outputs(v) for v in x)
    if isinstance(x, list):
        return [_outputs(v) for v in x]
    if hasattr(x, "keys") and hasattr(x, "__getitem__"):
        return {k: _outputs(x[k]) for k in x.keys()}
    return x


# --- exploration ----------------------------------------------------------------------

def make_inputs(specs: list, symbols: dict) -> list:
    out = []
    for s in specs:
        if not isinstance(s, TensorSpec):
            out.append(s)
            continue
        shape = []
        for d in s.shape:
            if isinstance(d, int):
                shape.append(d)
            else:
                shape.append(wrap(_to_z3(d, symbols)))
        out.append(STensor(tuple(shape), dtype=s.dtype, device=s.device,
                           requires_grad=s.requires_grad))
    return out


def _to_z3(d, symbols):
    from .. import domain as D
    return D.to_z3(d, symbols)


def run_once(model, specs, symbols, facts, forced, env, patches) -> tuple[PathRun, PathResult]:
    run = PathRun(facts, forced, env)
    prev = STATE.run
    STATE.run = run
    result = PathResult(run.decisions, run.pc, run.checks, run.layers, notes=run.notes)
    try:
        inputs = make_inputs(specs, symbols)
        with _Hooks(model, lambda: run), patches():
            try:
                out = model(*inputs)
                if run.pending_index:
                    raise TraceError(f"the symbolic size {run.pending_index[0]} was used as a "
                                     "Python int (__index__) in the model's code")
                result.output = _outputs(out)
            except _Infeasible:
                result.error = _Infeasible()
            except TraceError:
                raise
            except Exception as e:  # noqa: BLE001 - torch's error for this path
                result.error = e
                result.error_layer = run.layer_name()
                result.error_op = run.error_op
    finally:
        STATE.run = prev
    return run, result


def explore(model, specs, symbols, facts, env, patches, max_paths: int = MAX_PATHS):
    """Every feasible path: re-execution with forced decision prefixes (depth first)."""
    work: list[list] = [[]]
    paths: list[PathResult] = []
    calls = 0
    t0 = time.perf_counter()
    while work:
        forced = work.pop()
        if len(paths) >= max_paths:
            raise TraceError(f"more than {max_paths} paths through the forward: shape-dependent "
                             "branches multiply (raise max_paths, or register a branch-free "
                             "helper in symconv.tracing.helpers)")
        run, res = run_once(model, specs, symbols, facts, forced, env, patches)
        calls += run.solver_calls
        if not isinstance(res.error, _Infeasible):
            paths.append(res)
        work.extend(reversed(run.alternatives))
    return paths, {"solver_calls": calls, "seconds": time.perf_counter() - t0}
