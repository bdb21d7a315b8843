"""Public API: torch's positional signatures, answered by symconv's rules.

``select_conv_backend`` mirrors ``torch._C._select_conv_backend`` (the public C++
``select_conv_backend``); ``convolution_output_shape`` mirrors the shape (or the error) of
``torch.convolution``. With symbolic sizes both return symbolic answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from . import domain as D
from .backends import ConvBackend
from .env import Environment
from .errors import Check, Checker, ConvError, ConvValueError, StopSymbolic
from .kernels import kernel_checks
from .params import ConvParams, expand_param_if_needed
from .rules import (Ctx, ErrorOutcome, Rule, cases, determine_backend_memory_format,
                    evaluate)
from .shapes import calc_output_size, check_shape_forward
from .spec import TensorSpec, as_spec, memory_format_from_code

__all__ = ["select_conv_backend", "convolution_output_shape", "determine_backend_memory_format_api",
           "SymbolicSelection", "SymbolicShape", "Prepared", "prepare", "Case"]


def _param_list(x: Any, name: str) -> list:
    if isinstance(x, (list, tuple, torch.Size)):
        vals = list(x)
    elif isinstance(x, (int, str)) or D.is_symbolic(x):
        vals = [x]
    else:
        raise TypeError(f"{name} must be an int or a list of ints, got {type(x).__name__}")
    out = []
    for i, v in enumerate(vals):
        if isinstance(v, bool):
            raise TypeError(f"{name}[{i}] must be an int, got bool")
        if isinstance(v, str):
            if not v.strip().isidentifier():
                raise TypeError(f"{name}[{i}] must be an int or a symbol name, got {v!r:.60}")
            v = D.sym(v.strip())
        elif D.is_symbolic(v):
            v = _symbolic_int(v, f"{name}[{i}]")
        elif not isinstance(v, int):
            if hasattr(v, "__index__"):
                v = int(v.__index__())
            else:
                raise TypeError(f"{name}[{i}] must be an int, got {type(v).__name__}")
        out.append(v)
    return out


def _symbolic_int(v: Any, name: str) -> Any:
    """A SymPy or Z3 value as a parameter: integers only (a Z3 Bool or Real, a SymPy float or
    fraction would reach the solver as a sort error)."""
    import sympy
    import z3
    if isinstance(v, z3.ExprRef):
        if not (isinstance(v, z3.ArithRef) and v.is_int()):
            raise TypeError(f"{name} must be an int, got a Z3 term of sort {v.sort()}")
        return v.as_long() if z3.is_int_value(v) else v
    if isinstance(v, sympy.Basic):
        if v.is_Integer:
            return int(v)
        from sympy.logic.boolalg import BooleanAtom, BooleanFunction
        if v.is_number or v.is_integer is False or isinstance(
                v, (BooleanAtom, BooleanFunction, sympy.core.relational.Relational)):
            raise TypeError(f"{name} must be an int, got {v!r}")
    return v


def _groups(g: Any) -> Any:
    if isinstance(g, bool):
        raise TypeError("groups must be an int, got bool")
    if isinstance(g, str):
        if not g.strip().isidentifier():
            raise TypeError(f"groups must be an int or a symbol name, got {g!r:.60}")
        return D.sym(g.strip())
    if D.is_symbolic(g):
        return _symbolic_int(g, "groups")
    if isinstance(g, int):
        return g
    if hasattr(g, "__index__"):
        return int(g.__index__())
    raise TypeError(f"groups must be an int, got {type(g).__name__}")


def _view4d(t: TensorSpec, *, contiguous_first: bool) -> TensorSpec:
    """``view4d``: ``unsqueeze(2)`` (after ``.contiguous()`` for the input)."""
    if contiguous_first:
        # .contiguous() returns the tensor itself when it is already contiguous: strides of
        # size-1 dimensions are kept (they decide channels-last suggestions after the view).
        keep = t.is_contiguous()
        if D.truth(keep) is not True:
            canon = TensorSpec(t.shape).stride()
            strides = canon if D.truth(keep) is False else \
                tuple(D.ite(keep, a, c) for a, c in zip(t.stride(), canon))
            t = dataclasses.replace(t, strides=strides, memory_format=torch.contiguous_format)
    sizes, strides = t.shape, t.stride()
    new_sizes = sizes[:2] + (1,) + sizes[2:]
    new_strides = strides[:2] + (sizes[2] * strides[2],) + strides[2:]
    return TensorSpec(new_sizes, dtype=t.dtype, device=t.device, requires_grad=t.requires_grad,
                      layout=t.layout, strides=new_strides)


@dataclasses.dataclass
class Prepared:
    """Arguments after expansion, checks and the 1-D view: what the rules read."""

    ctx: Ctx
    checker: Checker
    original_input: TensorSpec
    original_weight: TensorSpec
    viewed_1d: bool
    stopped: bool = False


def prepare(input: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any,
            transposed: Any, output_padding: Any, groups: Any, *,
            env: Environment | None = None, need_backward: bool | None = None,
            bias_sizes: Sequence[Any] | None = None, checker: Checker | None = None,
            entry: str = "select") -> Prepared:
    """Run the shared front half of ``select_conv_backend`` and ``_convolution``."""
    env, inp, wgt = _env_and_specs(env, input, weight)
    b = as_spec(bias, "bias")
    stride_l = _param_list(stride, "stride")
    padding_l = _param_list(padding, "padding")
    dilation_l = _param_list(dilation, "dilation")
    output_padding_l = _param_list(output_padding, "output_padding")
    g = _groups(groups)
    check = checker if checker is not None else Checker()
    k = wgt.ndim
    dim = k - 2
    version = env.version
    if entry == "convolution":
        check(dim > 0, lambda: "weight should have at least three dimensions", name="weight_dim3")
        check(D.gt(g, 0), lambda: "non-positive groups is not supported", name="groups_nonpos_conv")
    params = ConvParams.from_env(
        expand_param_if_needed(stride_l, "stride", dim),
        expand_param_if_needed(padding_l, "padding", dim),
        expand_param_if_needed(dilation_l, "dilation", dim),
        bool(transposed),
        expand_param_if_needed(output_padding_l, "output_padding", dim),
        g, env)
    stopped = False
    try:
        check_shape_forward(inp, wgt.shape, b, params, check, version=version)
    except StopSymbolic:
        stopped = True
    view_in, view_w = inp, wgt
    viewed = False
    if not stopped and k == 3 and not inp.is_mkldnn and not inp.is_xpu:
        params = params.view1d_as_2d()
        view_in = _view4d(inp, contiguous_first=True)
        view_w = _view4d(wgt, contiguous_first=False)
        viewed = True
    bs = tuple(b.shape) if b is not None else \
        (tuple(bias_sizes) if bias_sizes is not None else None)
    if need_backward is None:
        need_backward = env.grad_enabled and (inp.requires_grad or wgt.requires_grad or
                                              (b is not None and b.requires_grad))
    ctx = Ctx(view_in, view_w, b, bs, params, env, bool(need_backward))
    return Prepared(ctx, check, inp, wgt, viewed, stopped)


def _env_and_specs(env: Environment | None, input: Any,
                   weight: Any) -> tuple[Environment, TensorSpec, TensorSpec]:
    """The environment (the running torch's by default) and the input and weight specs, each
    checked."""
    env = Environment.from_torch() if env is None else env
    if not isinstance(env, Environment):
        raise TypeError(f"env must be a symconv.Environment, got {type(env).__name__}")
    inp = as_spec(input, "input")
    wgt = as_spec(weight, "weight")
    if inp is None or wgt is None:
        raise TypeError("input and weight must be tensors or TensorSpecs, not None")
    return env, inp, wgt


@dataclasses.dataclass
class Case:
    """One region of a symbolic answer: ``condition`` over the symbols, and the outcome
    (a ConvBackend, an output shape, or the ConvError torch raises there)."""

    condition: Any
    outcome: Any
    rule: str

    def __iter__(self) -> Iterator[Any]:
        yield self.condition
        yield self.outcome


class _Cases:
    """What the symbolic answers share: ``cases`` that cover the symbol space, and ``replay``
    (symbol values -> the concrete call's answer)."""

    cases: list[Case]
    replay: Any

    def case_at(self, **values: int) -> Case:
        """The case whose condition holds at these symbol values."""
        for c in self.cases:
            if _holds(c.condition, values):
                return c
        raise AssertionError("no case holds: the cases are not exhaustive")  # pragma: no cover

    def _replay_at(self, values: dict) -> Any:
        self.case_at(**values)
        return self.replay(values)


@dataclasses.dataclass
class SymbolicSelection(_Cases):
    """A symbolic ``select_conv_backend``: ordered check failures, then backend cases.

    ``cases`` covers the whole symbol space exactly once (checks first, in torch's order).
    """

    checks: list[Check]
    cases: list[Case]
    env: Environment
    replay: Any = None  # values -> the concrete call's answer

    @property
    def valid(self) -> Any:
        """The condition under which every shape check passes."""
        return D.and_(*[c.cond for c in self.checks])

    def backends(self) -> list[tuple[Any, ConvBackend]]:
        """The (condition, backend) pairs (checks-pass conditions included)."""
        return [(c.condition, c.outcome) for c in self.cases if isinstance(c.outcome, ConvBackend)]

    def errors(self) -> list[Case]:
        return [c for c in self.cases if not isinstance(c.outcome, ConvBackend)]

    def at(self, **values: int) -> ConvBackend:
        """The answer at concrete symbol values: the backend, or raise torch's error."""
        return self._replay_at(values)

    def __str__(self) -> str:
        lines = [f"{'if ' + str(D.simplify(c.condition)):60s} -> {_outcome_str(c.outcome)}"
                 for c in self.cases]
        return "\n".join(lines)


@dataclasses.dataclass
class SymbolicShape(_Cases):
    """A symbolic ``convolution_output_shape``: the shape where valid, the error cases else."""

    shape: tuple
    valid: Any
    cases: list[Case]
    replay: Any = None

    def at(self, **values: int) -> tuple:
        """The shape at concrete symbol values, or raise torch's error."""
        return self._replay_at(values)


def _outcome_str(o: Any) -> str:
    if isinstance(o, ConvBackend):
        return o.name
    if isinstance(o, BaseException):
        return f"{type(o).__name__}: {str(o).splitlines()[0]}"
    return str(o)


_subs = D.substitute  # (the functional layer uses it too)


def _holds(cond: Any, values: dict) -> bool:
    r = _subs(cond, values)
    t = D.truth(r)
    if t is None:
        raise ValueError(f"values {values} do not decide the condition {cond}; give every symbol")
    return t


def substitute(x: Any, values: dict) -> Any:
    """Put concrete symbol values into a spec, a list of parameters or a size."""
    if isinstance(x, TensorSpec):
        return dataclasses.replace(
            x, shape=tuple(_subs(v, values) for v in x.shape),
            strides=None if x.strides is None else tuple(_subs(v, values) for v in x.strides))
    if isinstance(x, (list, tuple)):
        return type(x)(substitute(v, values) for v in x)
    if isinstance(x, str):
        return values.get(x, x)
    return _subs(x, values)


# --------------------------------------------------------------------------------------


def _is_symbolic_call(p: Prepared) -> bool:
    return p.checker.symbolic or _ctx_symbolic(p.ctx)


def _ctx_symbolic(ctx: Ctx) -> bool:
    vals = list(ctx.input.shape) + list(ctx.weight.shape) + list(ctx.input.stride()) + \
        list(ctx.weight.stride())
    if ctx.bias is not None:
        vals += list(ctx.bias.shape)
    pr = ctx.params
    vals += pr.stride + pr.padding + pr.dilation + pr.output_padding + [pr.groups]
    if all(type(v) is int for v in vals):
        return False
    return any(D.is_symbolic(v) or not isinstance(v, int) for v in vals)


def _check_cases(checks: list[Check]) -> list[Case]:
    out = []
    prefix: Any = True
    for chk in checks:
        cond = D.and_(prefix, D.not_(chk.cond))
        if D.truth(cond) is not False:
            out.append(Case(cond, chk.failure(), chk.name))
        prefix = D.and_(prefix, chk.cond)
    return out


def select_conv_backend(input: Any, weight: Any, bias: Any, stride: Any, padding: Any,
                        dilation: Any, transposed: Any, output_padding: Any, groups: Any, *,
                        env: Environment | None = None, need_backward: bool | None = None,
                        bias_sizes: Sequence[Any] | None = None) -> Any:
    """``torch._C._select_conv_backend`` with symconv's rules.

    Concrete arguments give a :class:`ConvBackend` (or raise torch's error as
    :class:`ConvError`); symbolic sizes give a :class:`SymbolicSelection`. (Typed ``Any``:
    the caller knows which it passed, and a union would make every concrete caller narrow it.)
    """
    env = Environment.from_torch() if env is None else env
    key = _cache_key(input, weight, bias, stride, padding, dilation, transposed, output_padding,
                     groups, env, need_backward, bias_sizes)
    if key is not None:
        hit = _SELECT_CACHE.get(key)
        if hit is not None:
            if isinstance(hit, ConvBackend):
                return hit
            raise hit[0](*hit[1])
    p = prepare(input, weight, bias, stride, padding, dilation, transposed, output_padding,
                groups, env=env, need_backward=need_backward, bias_sizes=bias_sizes)
    if not _is_symbolic_call(p):
        try:
            _, outcome = evaluate(p.ctx)
            if isinstance(outcome, ErrorOutcome):
                raise outcome.exception(p.ctx)
        except Exception as e:
            if key is not None:
                _remember(key, (type(e), e.args))
            raise
        if key is not None:
            _remember(key, outcome)
        return outcome
    sel = _symbolic_selection(p)
    call = (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    sel.replay = lambda values: select_conv_backend(
        *substitute(list(call), values), env=env, need_backward=need_backward,
        bias_sizes=None if bias_sizes is None else substitute(list(bias_sizes), values))
    return sel


# Concrete selections are pure functions of their (hashable) arguments: remember recent ones.
_SELECT_CACHE: dict = {}
_SELECT_CACHE_SIZE = 4096


def _remember(key: tuple, value: Any) -> None:
    if len(_SELECT_CACHE) >= _SELECT_CACHE_SIZE:
        _SELECT_CACHE.pop(next(iter(_SELECT_CACHE)))
    _SELECT_CACHE[key] = value


def _cache_key(input: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any,
               transposed: Any, output_padding: Any, groups: Any, env: Environment,
               need_backward: bool | None, bias_sizes: Sequence[Any] | None) -> tuple | None:
    """A hashable key for an all-int call with TensorSpec arguments, else ``None``."""
    if not (isinstance(input, TensorSpec) and isinstance(weight, TensorSpec)
            and (bias is None or isinstance(bias, TensorSpec))):
        return None
    try:
        key = (input, weight, bias, tuple(stride), tuple(padding), tuple(dilation),
               bool(transposed), tuple(output_padding), groups, env, need_backward,
               None if bias_sizes is None else tuple(bias_sizes))
        if not (input.is_concrete and weight.is_concrete and (bias is None or bias.is_concrete)):
            return None
        for part in key[3:9]:
            if isinstance(part, tuple) and not all(type(v) is int for v in part):
                return None
        if type(groups) is not int:
            return None
        hash(key)
    except TypeError:
        return None
    return key


def size_facts(p: Prepared) -> list:
    """``s >= 0`` for every symbol that appears in a tensor's sizes (Z3)."""
    from . import solver
    syms = set()
    for t in (p.original_input, p.original_weight, p.ctx.bias):
        if t is not None:
            syms |= t.symbols
    return solver.nonneg(syms)


def _prune(p: Prepared, found: list) -> list:
    """Drop cases whose condition is unsatisfiable for non-negative sizes (Z3, bounded time;
    a case the solver cannot decide is kept)."""
    import numpy as np
    if any(isinstance(c.condition, np.ndarray) for c in found):
        return found
    return drop_unsat(found, size_facts(p))


def drop_unsat(found: list[Case], facts: list) -> list[Case]:
    """The cases whose condition the solver does not refute under ``facts`` (2 s each; an
    undecided one is kept)."""
    from . import solver
    return [c for c in found
            if not (D.is_symbolic(c.condition)
                    and solver.check(c.condition, *facts, timeout_ms=2000).unsat)]


def _rule_cases(p: Prepared, valid: Any) -> Iterator[tuple[Any, Rule, Any]]:
    """The selection rules in order, each with the condition under which it fires where
    ``valid`` holds (not those that never do), and its outcome: a ConvBackend, or the error
    torch raises there."""
    for cond, rule in cases(p.ctx):
        c = D.and_(valid, cond)
        if D.truth(c) is False:
            continue
        outcome = rule.outcome
        yield c, rule, outcome.exception(p.ctx) if isinstance(outcome, ErrorOutcome) else outcome


def _symbolic_selection(p: Prepared) -> SymbolicSelection:
    checks = p.checker.checks
    out = _check_cases(checks)
    if not p.stopped:
        valid = D.and_(*[c.cond for c in checks])
        out += [Case(c, outcome, rule.name) for c, rule, outcome in _rule_cases(p, valid)]
    return SymbolicSelection(checks, _prune(p, out), p.ctx.env)


def determine_backend_memory_format_api(input: Any, weight: Any,
                                        backend: ConvBackend | int | str, *,
                                        env: Environment | None = None) -> Any:
    """``torch._C._conv_determine_backend_memory_format(input, weight, backend)``.

    ``backend`` is a :class:`ConvBackend` (its int value or name are accepted too). Concrete
    sizes give a ``torch.memory_format``; symbolic ones an ``MF_*`` code expression (``Any``,
    as for :func:`select_conv_backend`)."""
    env, inp, wgt = _env_and_specs(env, input, weight)
    if isinstance(backend, str):
        backend = ConvBackend.parse(backend)
    elif isinstance(backend, bool) or not isinstance(backend, int):
        raise TypeError(f"backend must be a symconv.ConvBackend, got {type(backend).__name__}")
    else:
        try:
            backend = ConvBackend(int(backend))
        except ValueError:
            raise ValueError(f"backend {int(backend)} is not a ConvBackend value") from None
    code = determine_backend_memory_format(inp, wgt, backend, env)
    if isinstance(code, int):
        return memory_format_from_code(code)
    return code


def convolution_output_shape(input: Any, weight: Any, bias: Any, stride: Any, padding: Any,
                             dilation: Any, transposed: Any, output_padding: Any, groups: Any,
                             *, env: Environment | None = None,
                             need_backward: bool | None = None) -> Any:
    """The shape ``torch.convolution(...)`` returns (a tuple of ints), or its error (as
    :class:`ConvError`).

    Symbolic sizes give a :class:`SymbolicShape` (``Any``, as for :func:`select_conv_backend`).
    """
    p = prepare(input, weight, bias, stride, padding, dilation, transposed, output_padding,
                groups, env=env, need_backward=need_backward, entry="convolution")
    if not _is_symbolic_call(p):
        _, out = concrete_output(p)
        return tuple(int(x) for x in out)
    shp = _symbolic_shape(p)
    call = (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    shp.replay = lambda values: convolution_output_shape(
        *substitute(list(call), values), env=env, need_backward=need_backward)
    return shp


def concrete_output(p: Prepared) -> tuple[ConvBackend, list]:
    """A concrete call's backend and aten::convolution's output shape, or torch's error: the
    selection, then the kernel's checks; the shape is the kernel's own where symconv.kernels
    gives one, else ``calc_output_size`` (after the 1-d view3d)."""
    _, outcome = evaluate(p.ctx)
    if isinstance(outcome, ErrorOutcome):
        raise outcome.exception(p.ctx)
    kshape = kernel_checks(outcome, p, Checker())
    if kshape is not None:
        return outcome, list(kshape)
    out = list(calc_output_size(p.ctx.input, p.ctx.weight, p.ctx.params))
    if p.viewed_1d:
        out = out[:2] + out[3:]
    return outcome, out


def _symbolic_shape(p: Prepared) -> SymbolicShape:
    checks = p.checker.checks
    out = _check_cases(checks)
    valid_all = D.and_(*[c.cond for c in checks])
    shape: tuple[Any, ...] = ()
    if not p.stopped:
        sizes = calc_output_size(p.ctx.input, p.ctx.weight, p.ctx.params)
        if p.viewed_1d:
            sizes = sizes[:2] + sizes[3:]
        shape = tuple(sizes)
        for c, rule, outcome in _rule_cases(p, valid_all):
            if isinstance(outcome, BaseException):
                out.append(Case(c, outcome, rule.name))
                continue
            kc = Checker()
            stopped = False
            kshape = None
            try:
                kshape = kernel_checks(outcome, p, kc)
            except StopSymbolic:
                stopped = True
            except (ConvError, ConvValueError, IndexError, NotImplementedError) as exc:
                out.append(Case(c, exc, rule.name))
                continue
            prefix = c
            for chk in kc.checks:
                fc = D.and_(prefix, D.not_(chk.cond))
                if D.truth(fc) is not False:
                    out.append(Case(fc, chk.failure(), f"{rule.name}:{chk.name}"))
                prefix = D.and_(prefix, chk.cond)
            if not stopped and D.truth(prefix) is not False:
                out.append(Case(prefix, shape if kshape is None else tuple(kshape), rule.name))
    out = _prune(p, out)
    valid = D.or_(*[c.condition for c in out if not isinstance(c.outcome, BaseException)])
    return SymbolicShape(shape, valid, out)
