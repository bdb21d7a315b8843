"""Lowering: run the backend that symconv selected, through the real torch kernels.

This is the only module of symconv that runs convolution kernels. It follows the seed's
``_convolution`` switch (forward), ``convolution_backward`` switch (backward) and
``_convolution_double_backward`` (double backward), with symconv deciding everything the C++
decides: the shape checks and their messages (:func:`symconv.api.prepare`), the backend (the
rule table, :mod:`symconv.rules`), the memory format the backend wants, the 1-D -> 2-D view,
splitting groups for the kernels that take none, and the kernel checks
(:mod:`symconv.kernels`). Only the kernel itself is torch's.

Public entry points:

* :func:`convolution` — ``torch.convolution``'s arguments (plus what ``F.conv*`` adds:
  unbatched inputs, ``padding='same'|'valid'``, complex tensors); ``backend=`` forces a backend.
* :func:`convolution_backward` — ``torch.ops.aten.convolution_backward``.
* :func:`convolution_double_backward` — ``torch.ops.aten._convolution_double_backward``.
* :func:`plan` — what :func:`convolution` would run, without running it (raises torch's errors).

Gradients of :func:`convolution` flow through :func:`convolution_backward` (and its double
backward through :func:`convolution_double_backward`), so backward runs symconv's choice too.

Backward kernels that torch exposes only through ``aten::convolution_backward`` (every backward
stub except ``_slow_conv2d_backward``) are reached by calling that op on the arguments the seed
would hand the stub, after confirming with ``torch._C._select_conv_backend`` that torch picks
the same backend for them; a forced slow or NNPACK backend is reached by switching oneDNN /
NNPACK / cuDNN off for that call ("steering"). See docs/lowering.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import warnings
from collections.abc import Callable
from typing import Any, overload

import torch

from . import domain as D
from .backends import ConvBackend
from .env import Environment
from .errors import Checker, ConvError, fmt_sizes
from .kernels import kernel_checks
from .rules import (EMPTY, NOT_DILATED, NOT_TRANSPOSED, RULES, Cond,
                    ErrorOutcome, Rule, determine_backend_memory_format, evaluate, first_failing)
from .shapes import calc_output_size, pooling_same_mode_padding_lr
from .spec import (MKLDNN_LAYOUT, TensorSpec, dtype_name, is_channels_last_strides_2d,
                   is_channels_last_strides_3d, memory_format_from_code)

__all__ = ["convolution", "convolution_backward", "convolution_double_backward", "plan", "Plan",
           "TensorProps", "forced_requirements", "clear_cache", "BACKWARD_VIA_ATEN", "KERNELS",
           "type_string"]

B = ConvBackend
INT_MAX = 2**31 - 1
_STRIDED = torch.strided
_MKLDNN_LAYOUT = MKLDNN_LAYOUT

# Backends whose kernels take no groups: the seed narrows each group out and concatenates.
GROUP_SPLIT = frozenset({B.NnpackSpatial, B.Slow2d, B.SlowDilated2d, B.SlowDilated3d,
                         B.SlowTranspose2d, B.SlowTranspose3d})
# Backends whose ``_convolution`` case checks that input, weight and bias are of one type first.
_TYPE_CHECKED = frozenset({B.Cudnn, B.CudnnTranspose, B.Miopen, B.MiopenTranspose, B.Mkldnn,
                           B.MkldnnTranspose, B.Mps, B.MpsTranspose})
# Backward kernels reachable from Python only through aten::convolution_backward (which
# re-selects): everything but Slow2d (_slow_conv2d_backward) and the empty paths (zeros).
BACKWARD_VIA_ATEN = frozenset(set(B) - {B.Slow2d, B.Empty, B.MkldnnEmpty, B.Winograd3x3Depthwise,
                                        B.Xnnpack2d, B.Overrideable})
# Backends that share a backward kernel: NNPACK's backward is the dilated slow kernel's.
_SAME_BACKWARD_KERNEL = {B.NnpackSpatial: frozenset({B.NnpackSpatial, B.SlowDilated2d}),
                         B.SlowDilated2d: frozenset({B.NnpackSpatial, B.SlowDilated2d})}

# What each forward case calls (for Plan.kernel and the docs).
KERNELS = {
    B.CudaDepthwise2d: "aten::_conv_depthwise2d",
    B.CudaDepthwise3d: "aten::conv_depthwise3d",
    B.Cudnn: "aten::cudnn_convolution (+ bias)",
    B.CudnnTranspose: "aten::cudnn_convolution_transpose (+ bias)",
    B.Empty: "empty path (input * weight[0], view)",
    B.Miopen: "aten::miopen_convolution",
    B.MiopenDepthwise: "aten::miopen_depthwise_convolution",
    B.MiopenTranspose: "aten::miopen_convolution_transpose",
    B.Mkldnn: "aten::mkldnn_convolution",
    B.MkldnnTranspose: "mkldnn::_convolution_transpose_pointwise (attr 'none')",
    B.MkldnnEmpty: "empty MKLDNN tensor",
    B.NnpackSpatial: "aten::_nnpack_spatial_convolution",
    B.Overrideable: "aten::convolution_overrideable",
    B.Slow2d: "aten::thnn_conv2d",
    B.Slow3d: "aten::slow_conv3d",
    B.SlowDilated2d: "aten::slow_conv_dilated2d",
    B.SlowDilated3d: "aten::slow_conv_dilated3d",
    B.SlowTranspose2d: "aten::slow_conv_transpose2d",
    B.SlowTranspose3d: "aten::slow_conv_transpose3d",
    B.Winograd3x3Depthwise: None,  # an internal stub: no Python-callable kernel
    B.Xnnpack2d: None,  # xnnpack::convolution2d: internal to mobile builds
    B.Mps: "aten::_mps_convolution",
    B.MpsTranspose: "aten::_mps_convolution_transpose (+ bias)",
}


# --------------------------------------------------------------------------------------
# The environment of the running process, cheaply: flags are read every call (they are what
# torch reads every call); the Environment for a given set of flags is built once.

_C = torch._C
_get_depthwise_kernel = getattr(_C, "_get_cudnn_depthwise_kernel", None)
_ENVS: dict = {}


def _flags_key() -> tuple:
    return (_C._get_mkldnn_enabled(), _C._get_nnpack_enabled(), _C._get_cudnn_enabled(),
            _C._get_cudnn_deterministic(), _C._get_deterministic_algorithms(),
            _C._get_cudnn_benchmark(), _C._get_cudnn_allow_tf32(),
            _get_depthwise_kernel() if _get_depthwise_kernel is not None else None,
            torch.get_num_threads(), _C.is_grad_enabled())


def _running_env(key: tuple) -> Environment:
    env = _ENVS.get(key)
    if env is None:
        env = Environment.from_torch()
        _ENVS[key] = env
    return env


def _resolve_env(env: Environment | None) -> tuple[Environment, Any]:
    if env is None:
        key = _flags_key()
        return _running_env(key), key
    if not isinstance(env, Environment):
        raise TypeError(f"env must be a symconv.Environment, got {type(env).__name__}")
    return env, env


# --------------------------------------------------------------------------------------
# Forcing a backend: the conditions under which its kernel computes these arguments.

NOT_EMPTY = Cond("input is not empty (zero batch or zero channels take the Empty path)",
                 lambda c: D.not_(EMPTY(c)))
NOT_MKLDNN_INPUT = Cond("input is not an MKLDNN tensor", lambda c: not c.input.is_mkldnn)

# backend -> alternatives; each alternative: (rule name in RULES, extra conditions). The rule's
# own conditions say when the rule table reaches the backend; the extra ones are what the
# table's order guarantees (an earlier rule took the other arguments) and the kernel needs.
_FORCE: dict[ConvBackend, tuple] = {
    B.Empty: (("empty", (NOT_MKLDNN_INPUT,)),),
    B.MkldnnEmpty: (("mkldnn_empty", ()),),
    B.Cudnn: (("cudnn", (NOT_TRANSPOSED,)), ("cudnn_depthwise", ())),
    B.CudnnTranspose: (("cudnn_transpose", ()),),
    B.Miopen: (("miopen", (NOT_TRANSPOSED,)),),
    B.MiopenDepthwise: (("miopen_depthwise", ()),),
    B.MiopenTranspose: (("miopen_transpose", ()),),
    B.Mkldnn: (("mkldnn", (NOT_TRANSPOSED,)),),
    B.MkldnnTranspose: (("mkldnn_transpose", ()),),
    B.Xnnpack2d: (("xnnpack", ()),),
    B.Winograd3x3Depthwise: (("winograd", ()),),
    B.Slow3d: (("slow3d_cpu", ()),),
    B.SlowTranspose2d: (("slow_transpose2d", ()),),
    B.SlowTranspose3d: (("slow_transpose3d", ()),),
    B.SlowDilated2d: (("slow_dilated2d", (NOT_TRANSPOSED,)),),
    B.NnpackSpatial: (("nnpack", ()),),
    B.Slow2d: (("slow2d", (NOT_TRANSPOSED, NOT_DILATED)),),
    B.SlowDilated3d: (("slow_dilated3d", (NOT_TRANSPOSED,)),),
    B.CudaDepthwise2d: (("cuda_depthwise2d", ()),),
    B.CudaDepthwise3d: (("cuda_depthwise3d", ()),),
    B.Mps: (("mps", (NOT_TRANSPOSED,)),),
    B.MpsTranspose: (("mps_transpose", ()),),
    B.Overrideable: (("overrideable", ()),),
}
_RULES_BY_NAME = {r.name: r for r in RULES}


def forced_requirements(backend) -> list[Rule]:
    """The alternatives (as :class:`~symconv.rules.Rule` objects) under which ``backend`` may be
    forced: every condition of one alternative must hold."""
    backend = _parse_backend(backend)
    out = []
    for rule_name, extra in _FORCE[backend]:
        rule = _RULES_BY_NAME[rule_name]
        pre = () if backend in (B.Empty, B.MkldnnEmpty) else (NOT_EMPTY,)
        out.append(Rule(f"force:{rule.name}", backend, pre + tuple(rule.conds) + tuple(extra)))
    return out


def _parse_backend(backend) -> ConvBackend:
    if isinstance(backend, ConvBackend):
        return backend
    if isinstance(backend, str):
        return ConvBackend.parse(backend)
    if isinstance(backend, int) and not isinstance(backend, bool):
        return ConvBackend(backend)
    return ConvBackend.from_torch(backend)  # a torch._C._ConvBackend


def _check_forced(ctx, backend: ConvBackend, selected: ConvBackend) -> None:
    alternatives = forced_requirements(backend)
    failing = []
    for rule in alternatives:
        cond = first_failing(ctx, rule)
        if cond is None:
            return
        failing.append(cond)
    why = _explain(failing[0].text, ctx)
    raise ConvError(f"backend {backend.name} cannot run these arguments: the condition "
                    f"'{failing[0].text}' does not hold{': ' + why if why else ''} "
                    f"(symconv selects {selected.name} here)")


def _first_false(*named) -> str | None:
    for text, value in named:
        if D.truth(value) is False:
            return text
    return None


def _explain(cond_text: str, ctx) -> str | None:
    """Which part of a composite backend predicate fails (concrete arguments)."""
    inp, w, pr, env = ctx.input, ctx.weight, ctx.params, ctx.env
    if cond_text == "use_mkldnn":
        if not env.mkldnn_available:
            return "this build has no oneDNN (MKLDNN)"
        if not env.mkldnn_enabled:
            return "torch.backends.mkldnn.enabled is False"
        if pr.transposed and D.truth(pr.is_output_padding_big()):
            return "some output_padding >= stride"
        if inp.is_mkldnn:
            return None
        if not inp.is_cpu:
            return "the input is not on the CPU"
        if inp.dtype == torch.bfloat16:
            return "bfloat16 needs a CPU with oneDNN bf16 support"
        if inp.dtype == torch.float16:
            return "float16 needs a CPU with oneDNN fp16 support"
        if inp.dtype != torch.float32:
            return f"dtype {dtype_name(inp.dtype)} is not float32, bfloat16 or float16"
        n, kw, kh = inp.size(0), w.size(-1), w.size(-2)
        first = D.or_(pr.is_strided(), pr.is_dilated(), D.ge(n, 16), D.ne(kw, 1), D.ne(kh, 1),
                      env.num_threads > 1)
        if D.truth(first) is False:
            return "float32 heuristic: not strided, not dilated, batch < 16, a 1x1 kernel and " \
                   "one thread"
        return "float32 heuristic: groups == 1, kernel not larger than 3x3 in both " \
               "dimensions, batch 1 and N*C*H*W <= 20480"
    if cond_text == "use_nnpack":
        if not env.nnpack_available:
            return "this build has no NNPACK"
        if not env.nnpack_enabled:
            return "NNPACK is disabled (torch.backends.nnpack)"
        if not inp.is_cpu or inp.dtype != torch.float32 or pr.transposed or inp.ndim != 4:
            return "NNPACK takes float32, non-transposed 2-D convolutions on the CPU"
        return _first_false(
            ("dilated", D.not_(pr.is_dilated())),
            ("a kernel size >= 17", D.and_(D.lt(w.size(2), 17), D.lt(w.size(3), 17))),
            ("padding >= kernel size", D.and_(D.lt(pr.padding[0], w.size(2)),
                                              D.lt(pr.padding[1], w.size(3)))),
            (f"batch {inp.size(0)} < 16", True if env.mobile else D.ge(inp.size(0), 16)))
    if cond_text == "use_cudnn":
        if not env.compiled_with_cudnn:
            return "this build has no cuDNN"
        if not inp.is_cuda:
            return "the input is not on CUDA"
        if not pr.cudnn_enabled:
            return "torch.backends.cudnn.enabled is False"
        return _first_false(("some output_padding >= stride",
                             D.not_(pr.is_output_padding_big())))
    return None


# --------------------------------------------------------------------------------------
# Type checks of the seed's _convolution switch (check_input_same_type_as_parameters).

_LEGACY_NAMES = {torch.float32: "Float", torch.float64: "Double", torch.float16: "Half",
                 torch.uint8: "Byte", torch.int8: "Char", torch.int16: "Short",
                 torch.int32: "Int", torch.int64: "Long"}
_SCALAR_NAMES = dict(_LEGACY_NAMES)
_SCALAR_NAMES.update({torch.bfloat16: "BFloat16", torch.bool: "Bool",
                      torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble",
                      torch.complex32: "ComplexHalf"})
for _n, _s in (("uint16", "UInt16"), ("uint32", "UInt32"), ("uint64", "UInt64"),
               ("float8_e4m3fn", "Float8_e4m3fn"), ("float8_e5m2", "Float8_e5m2"),
               ("float8_e4m3fnuz", "Float8_e4m3fnuz"), ("float8_e5m2fnuz", "Float8_e5m2fnuz")):
    if hasattr(torch, _n):
        _SCALAR_NAMES[getattr(torch, _n)] = _s


def type_string(t) -> str:
    """How torch's error messages print a tensor's type (``Tensor::toString`` as the Python
    binding rewrites it): ``torch.FloatTensor``, ``torch.cuda.HalfTensor``, ``CPUBFloat16Type``."""
    dev = t.device.type if isinstance(t, torch.Tensor) else t.device
    layout = t.layout
    if layout == _STRIDED and dev in ("cpu", "cuda") and t.dtype in _LEGACY_NAMES:
        return ("torch." if dev == "cpu" else "torch.cuda.") + _LEGACY_NAMES[t.dtype] + "Tensor"
    key = {"cpu": "CPU", "cuda": "CUDA", "mps": "MPS", "xpu": "XPU", "meta": "Meta"}.get(
        dev, dev.upper())
    if layout == _MKLDNN_LAYOUT:
        key = "MkldnnCPU"
    elif layout == torch.sparse_coo:
        key = "Sparse" + key
    name = _SCALAR_NAMES.get(t.dtype, str(t.dtype).replace("torch.", ""))
    return f"{key}{name}Type"


def _type_equal(a, b) -> bool:
    return a.dtype == b.dtype and a.device == b.device and a.layout == b.layout


def _check_same_type(backend: ConvBackend, inp: TensorSpec, w: TensorSpec,
                     b: TensorSpec | None) -> None:
    if backend in (B.Mkldnn, B.MkldnnTranspose):
        if not (_type_equal(inp, w) or (inp.is_mkldnn and w.is_cpu and w.dtype == torch.float32)):
            raise ConvError(f"Input type ({type_string(inp)}) and weight type ({type_string(w)}) "
                            "should be the same or input should be a MKLDNN tensor and weight "
                            "is a dense tensor")
        if b is not None and not (_type_equal(inp, b) or (inp.is_mkldnn and b.is_cpu
                                                          and b.dtype == torch.float32)):
            raise ConvError(f"Input type ({type_string(inp)}) and bias type ({type_string(b)}) "
                            "should be the same or input should be a MKLDNN tensor and bias is "
                            "a dense tensor")
        return
    if not _type_equal(inp, w):
        raise ConvError(f"Input type ({type_string(inp)}) and weight type ({type_string(w)}) "
                        "should be the same")
    if b is not None and not _type_equal(inp, b):
        raise ConvError(f"Input type ({type_string(inp)}) and bias type ({type_string(b)}) "
                        "should be the same")


# --------------------------------------------------------------------------------------
# Plans: everything decided before a kernel runs, for one set of argument properties.


@dataclasses.dataclass(frozen=True)
class Plan:
    """What :func:`convolution` (or :func:`convolution_backward`) runs for these arguments.

    ``selected`` is the backend of symconv's rule table, ``backend`` the one that runs (they
    differ only when a backend is forced). Parameters are expanded and, for 1-D convolutions,
    viewed as 2-D (``view1d``), as the kernel sees them."""

    backend: ConvBackend
    selected: ConvBackend
    rule: str
    memory_format: torch.memory_format
    view1d: bool
    stride: list
    padding: list
    dilation: list
    transposed: bool
    output_padding: list
    groups: int
    kernel_size: list
    output_size: list  # of the (viewed) call, calc_output_size
    env: Environment
    need_backward: bool
    input_in_format: bool = False  # the (viewed) input is already contiguous in memory_format
    weight_in_format: bool = False
    split_batch: bool = False  # cuDNN < 9.3: the batch is split for 32-bit indexing

    @property
    def kernel(self) -> str | None:
        return KERNELS.get(self.backend)

    @property
    def splits_groups(self) -> bool:
        return self.backend in GROUP_SPLIT and self.groups != 1

    def describe(self) -> str:
        forced = "" if self.backend == self.selected else f" (forced; symconv selects " \
            f"{self.selected.name})"
        mf = str(self.memory_format).replace("torch.", "")
        parts = [f"{self.backend.name}{forced} via {self.kernel}", f"memory format {mf}"]
        if self.view1d:
            parts.append("1-D viewed as 2-D")
        if self.splits_groups:
            parts.append(f"{self.groups} groups split with narrow + cat")
        if self.split_batch:
            parts.append("batch split for 32-bit indexing")
        return ", ".join(parts)


_PLANS: dict = {}
_BACKWARD_PLANS: dict = {}
_PLAN_CACHE_SIZE = 4096
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget cached plans and environments (they are pure functions of their keys; this only
    frees memory, or picks up a changed environment variable)."""
    with _cache_lock:
        _PLANS.clear()
        _FAST.clear()
        _BACKWARD_PLANS.clear()
        _ENVS.clear()
        if _native_clear is not None:
            _native_clear()


def _remember(cache: dict, key, value) -> None:
    with _cache_lock:
        if len(cache) >= _PLAN_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = value


def _tkey(t):
    """The properties of a tensor that selection, checks and memory formats read."""
    if t is None:
        return None
    if t.layout == _STRIDED:
        return (t.shape, t.stride(), t.dtype, t.device, t.requires_grad)
    return (t.shape, None, t.dtype, t.device, t.requires_grad, t.layout)


def _pkey(x):
    """An int parameter as a plan cache key: a tuple of exact ints (so that 1.0 or True, equal
    to 1 as Python compares, never share a key with it); raises as the plan builder does."""
    tx = type(x)
    if tx is int:
        return (x,)
    if (tx is tuple or tx is list) and all(type(v) is int for v in x):
        return tuple(x)
    return _param_tuple(x)


def _param_tuple(x) -> tuple:
    if isinstance(x, (list, tuple)):
        # torch's argument parser reads a bool as an int after the first element (measured)
        return tuple(_as_int(v, i > 0) for i, v in enumerate(x))
    return (_as_int(x),)


def _as_int(v, bool_ok: bool = False):
    if isinstance(v, bool) and not bool_ok:
        raise TypeError("expected an int, got bool")
    if isinstance(v, int):
        return int(v)
    if hasattr(v, "__index__"):
        return int(v.__index__())
    raise TypeError(f"expected an int or a list of ints, got {type(v).__name__}")


@overload
def _spec(t: None, hint: Callable[[Any], int] | None = None) -> None: ...
@overload
def _spec(t: torch.Tensor, hint: Callable[[Any], int] | None = None) -> TensorSpec: ...
def _spec(t, hint=None) -> TensorSpec | None:
    """A TensorSpec of a real (or fake) tensor; ``hint`` maps a size to an int."""
    if t is None:
        return None
    if hint is None:
        return TensorSpec.from_tensor(t)
    strides = None if t.layout != _STRIDED else tuple(hint(s) for s in t.stride())
    return TensorSpec(tuple(hint(s) for s in t.shape), dtype=t.dtype, device=t.device.type,
                      requires_grad=t.requires_grad, layout=t.layout, strides=strides)


def _in_format(spec: TensorSpec, mf) -> bool:
    if spec.layout != _STRIDED:
        return False
    return bool(spec.is_contiguous(mf))


def _build_plan(inp: TensorSpec, w: TensorSpec, b: TensorSpec | None, stride, padding, dilation,
                transposed, output_padding, groups, backend, env: Environment, *,
                backward: bool = False, bias_sizes=None, grad_output_dim: int | None = None
                ) -> Plan:
    from .api import prepare  # api sits above the rules; lowering sits beside it
    if backward:
        if w.ndim - 2 <= 0:
            raise ConvError("weight should have at least three dimensions")
        p = prepare(inp, w, None, list(stride), list(padding), list(dilation), transposed,
                    list(output_padding), groups, env=env, need_backward=True,
                    bias_sizes=bias_sizes, checker=Checker())
        if inp.ndim != grad_output_dim:
            raise ConvError("Expected input and grad_output to have the same number of "
                            f"dimensions, but got: {inp.ndim} and {grad_output_dim}")
        if not transposed:
            op = [int(x) for x in p.ctx.params.output_padding[(1 if p.viewed_1d else 0):]]
            if any(x != 0 for x in op):
                raise ConvError("output_padding is not supported for non-transposed "
                                f"convolutions; got: {fmt_sizes(op)}")
    else:
        p = prepare(inp, w, b, list(stride), list(padding), list(dilation), transposed,
                    list(output_padding), groups, env=env, checker=Checker(),
                    entry="convolution")
    if p.stopped or p.checker.symbolic:  # pragma: no cover - concrete checks raise at once
        raise TypeError("symconv.convolution needs concrete sizes")
    ctx = p.ctx
    rule, outcome = evaluate(ctx)
    if isinstance(outcome, ErrorOutcome):
        raise outcome.exception(ctx)
    selected = outcome
    chosen = selected
    rule_name = rule.name
    if backend is not None:
        chosen = _parse_backend(backend)
        if chosen != selected:
            _check_forced(ctx, chosen, selected)
            rule_name = f"forced ({rule.name} selects {selected.name})"
    if chosen in _TYPE_CHECKED and not backward:
        _check_same_type(chosen, ctx.input, ctx.weight, ctx.bias)
    if not backward:
        kernel_checks(chosen, p, Checker())
    mf = memory_format_from_code(determine_backend_memory_format(ctx.input, ctx.weight, chosen,
                                                                 env))
    pr = ctx.params
    out_size = [int(x) for x in calc_output_size(ctx.input, ctx.weight, pr)]
    split = chosen in (B.Cudnn, B.CudnnTranspose) and (
        env.cudnn_version is None or env.cudnn_version < 90300 or not env.cudnn_v8_api_enabled)
    return Plan(
        backend=chosen, selected=selected, rule=rule_name, memory_format=mf,
        view1d=p.viewed_1d, stride=[int(x) for x in pr.stride],
        padding=[int(x) for x in pr.padding], dilation=[int(x) for x in pr.dilation],
        transposed=bool(pr.transposed), output_padding=[int(x) for x in pr.output_padding],
        groups=int(pr.groups), kernel_size=[int(x) for x in ctx.weight.shape[2:]],
        output_size=out_size, env=env, need_backward=ctx.need_backward,
        input_in_format=_in_format(ctx.input, mf), weight_in_format=_in_format(ctx.weight, mf),
        split_batch=split)


def _forward_plan(input, weight, bias, stride, padding, dilation, transposed, output_padding,
                  groups, backend, env) -> Plan:
    env_obj, env_key = _resolve_env(env)
    key: tuple | None = (_tkey(input), _tkey(weight), _tkey(bias), _pkey(stride),
                         _pkey(padding), _pkey(dilation), transposed, _pkey(output_padding),
                         _groups(groups), backend, env_key)
    try:
        hit = _PLANS.get(key)
    except TypeError:  # an unhashable argument: no caching, the builder says what is wrong
        hit, key = None, None
    if hit is not None:
        return hit
    p = _build_plan(_spec(input), _spec(weight), _spec(bias), _param_tuple(stride),
                    _param_tuple(padding), _param_tuple(dilation), _transposed(transposed),
                    _param_tuple(output_padding), _groups(groups), backend, env_obj)
    if key is not None:
        _remember(_PLANS, key, p)
    return p


def _check_tensor_args(fn: str, **tensors) -> None:
    """The tensors a lowered call runs on: torch's Python argument parser's message for
    anything else (``None`` is accepted only for ``bias``)."""
    for pos, (name, t) in enumerate(tensors.items(), 1):
        if t is None and name == "bias":
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{fn}(): argument '{name}' (position {pos}) must be Tensor, not "
                            f"{type(t).__name__}")


def _transposed(t) -> bool:
    """``torch.convolution``'s argument parser takes only a Python bool here (not 0/1, numpy
    or tensor bools; ``torch.ops.aten.convolution_backward`` takes any truth value)."""
    if type(t) is not bool:
        raise TypeError("convolution(): argument 'transposed' (position 7) must be bool, "
                        f"not {type(t).__name__}")
    return t


def _groups(g):
    if isinstance(g, bool):
        raise TypeError("groups must be an int, got bool")
    return _as_int(g)


# --------------------------------------------------------------------------------------
# Forward kernels (the seed's _convolution switch), on the viewed tensors.

# the legacy kernels (thnn_conv2d, slow_conv3d, ...) are not in torch's stubs
_nn: Any = torch._C._nn


def _suggest_memory_format(t: torch.Tensor):
    """``Tensor::suggest_memory_format()`` of a real tensor."""
    if t.layout != _STRIDED:
        return torch.contiguous_format
    if t.dim() == 4 and is_channels_last_strides_2d(tuple(t.shape), t.stride()):
        return torch.channels_last
    if t.dim() == 5 and is_channels_last_strides_3d(tuple(t.shape), t.stride()):
        return torch.channels_last_3d
    return torch.contiguous_format


def _subtensor(t, dim: int, groups: int, g: int):
    """The seed's ``subtensor``: group ``g`` of ``t`` along ``dim``, contiguous in its format."""
    if t is None:
        return None
    mf = _suggest_memory_format(t)
    n = t.size(dim) // groups
    return t.narrow(dim, n * g, n).contiguous(memory_format=mf)


def _reshape_bias(dim: int, bias):
    return bias.reshape([1, -1] + [1] * (dim - 2))


def _split_batch_32bit(fn, inp, out_numel: int, max_worksize: int, int_max: int = INT_MAX):
    """cuDNN's ``split_batch_dim_to_32bit_out``: run ``fn`` on batch chunks whose input and
    output stay within 32-bit indexing (cuDNN < 9.3 does this inside the kernel)."""
    ni = inp.numel()
    if ni <= int_max and out_numel <= int_max:
        return fn(inp)
    n = inp.size(0)
    max_inner = max(ni, out_numel) // n
    split = max(max_worksize // max_inner, 1)
    if split * max_inner < int_max:
        return torch.cat([fn(inp.narrow(0, s, min(split, n - s))) for s in range(0, n, split)], 0)
    raise ConvError("This case should not be dispatched to cuDNN.")


def _nogroup_forward(backend: ConvBackend, pl: Plan, inp, w, b):
    ks = w.shape[2:]
    if backend == B.NnpackSpatial:
        return torch._nnpack_spatial_convolution(inp, w, b, pl.padding, pl.stride)
    if backend == B.Slow2d:
        return _nn.thnn_conv2d(inp, w, ks, b, pl.stride, pl.padding)
    if backend == B.SlowDilated2d:
        return _nn.slow_conv_dilated2d(inp, w, ks, b, pl.stride, pl.padding, pl.dilation)
    if backend == B.SlowDilated3d:
        return _nn.slow_conv_dilated3d(inp, w, ks, b, pl.stride, pl.padding, pl.dilation)
    if backend == B.SlowTranspose2d:
        return _nn.slow_conv_transpose2d(inp, w, ks, b, pl.stride, pl.padding, pl.output_padding,
                                         pl.dilation)
    if backend == B.SlowTranspose3d:
        return _nn.slow_conv_transpose3d(inp, w, ks, b, pl.stride, pl.padding, pl.output_padding,
                                         pl.dilation)
    raise ConvError("Unsupported conv nogroup backend encountered")  # pragma: no cover


def _fw_group_split(pl: Plan, inp, w, b):
    mf = pl.memory_format
    if not pl.input_in_format:
        inp = inp.contiguous(memory_format=mf)
    if not pl.weight_in_format:
        w = w.contiguous(memory_format=mf)
    if pl.groups == 1:
        return _nogroup_forward(pl.backend, pl, inp, w, b)
    outs = [_nogroup_forward(pl.backend, pl, _subtensor(inp, 1, pl.groups, g),
                             _subtensor(w, 0, pl.groups, g), _subtensor(b, 0, pl.groups, g))
            for g in range(pl.groups)]
    return torch.cat(outs, 1)


def _fw_depthwise2d(pl, inp, w, b):
    return _nn._conv_depthwise2d(inp.contiguous(), w, w.shape[2:], b, pl.stride, pl.padding,
                                 pl.dilation)


def _fw_depthwise3d(pl, inp, w, b):
    return _nn.conv_depthwise3d(inp.contiguous(), w, w.shape[2:], b, pl.stride, pl.padding,
                                pl.dilation)


def _cudnn_forward(pl, inp, w, b, run, max_worksize: int):
    """The cuDNN arms of the switch: the input in the plan's memory format, the batch split
    for 32-bit indexing where the plan says so (``max_worksize`` elements of output per piece),
    the bias added afterwards."""
    inp = inp.contiguous(memory_format=pl.memory_format)
    if pl.split_batch:
        out = _split_batch_32bit(run, inp, _numel(pl.output_size), max_worksize)
    else:
        out = run(inp)
    if b is not None:
        out.add_(_reshape_bias(inp.dim(), b))
    return out


def _fw_cudnn(pl, inp, w, b):
    def run(x):
        return torch.cudnn_convolution(x, w, pl.padding, pl.stride, pl.dilation, pl.groups,
                                       pl.env.cudnn_benchmark, pl.env.deterministic,
                                       pl.env.cudnn_allow_tf32)
    return _cudnn_forward(pl, inp, w, b, run, 1024 * 1024 * 256)


def _fw_cudnn_transpose(pl, inp, w, b):
    def run(x):
        return torch.cudnn_convolution_transpose(
            x, w, pl.padding, pl.output_padding, pl.stride, pl.dilation, pl.groups,
            pl.env.cudnn_benchmark, pl.env.deterministic, pl.env.cudnn_allow_tf32)
    return _cudnn_forward(pl, inp, w, b, run, 1024 * 1024 * 128)


def _numel(sizes) -> int:
    n = 1
    for s in sizes:
        n *= s
    return n


def _fw_empty(pl, inp, w, b):
    if w.is_contiguous():
        wv = w.reshape(-1)
    elif w.dim() == 4 and w.is_contiguous(memory_format=torch.channels_last):
        wv = w.permute(0, 2, 3, 1).reshape(-1)
    elif w.dim() == 5 and w.is_contiguous(memory_format=torch.channels_last_3d):
        wv = w.permute(0, 2, 3, 4, 1).reshape(-1)
    else:
        wv = w.clone(memory_format=torch.contiguous_format).reshape(-1)
    out = inp.reshape(-1) * wv if inp.size(1) == 0 else inp * wv[0]
    if b is not None:
        out.add_(b[0])
    return out.view(pl.output_size)


def _fw_miopen(pl, inp, w, b):
    return torch.miopen_convolution(inp.contiguous(memory_format=pl.memory_format), w, b,
                                    pl.padding, pl.stride, pl.dilation, pl.groups,
                                    pl.env.cudnn_benchmark, pl.env.deterministic)


def _fw_miopen_depthwise(pl, inp, w, b):
    return torch.miopen_depthwise_convolution(inp.contiguous(memory_format=pl.memory_format), w,
                                              b, pl.padding, pl.stride, pl.dilation, pl.groups,
                                              pl.env.cudnn_benchmark, pl.env.deterministic)


def _fw_miopen_transpose(pl, inp, w, b):
    return torch.miopen_convolution_transpose(
        inp.contiguous(memory_format=pl.memory_format), w, b, pl.padding, pl.output_padding,
        pl.stride, pl.dilation, pl.groups, pl.env.cudnn_benchmark, pl.env.deterministic)


def _mkldnn_args(pl, inp, w, b):
    if inp.layout != _MKLDNN_LAYOUT:
        if not pl.input_in_format:
            inp = inp.contiguous(memory_format=pl.memory_format)
        if not pl.weight_in_format:
            w = w.contiguous(memory_format=pl.memory_format)
        if b is not None:
            b = b.contiguous()
    return inp, w, b


def _fw_mkldnn(pl, inp, w, b):
    inp, w, b = _mkldnn_args(pl, inp, w, b)
    return torch.mkldnn_convolution(inp, w, b, pl.padding, pl.stride, pl.dilation, pl.groups)


def _fw_mkldnn_transpose(pl, inp, w, b):
    inp, w, b = _mkldnn_args(pl, inp, w, b)
    # The same oneDNN deconvolution as the internal mkldnn_convolution_transpose_stub (for a
    # dense weight both pick channels-last by mkldnn_conv_use_channels_last).
    return torch.ops.mkldnn._convolution_transpose_pointwise(
        inp, w, b, pl.padding, pl.output_padding, pl.stride, pl.dilation, pl.groups, "none", [],
        None)


def _fw_mkldnn_empty(pl, inp, w, b):
    return torch.empty(pl.output_size, dtype=inp.dtype, layout=inp.layout, device=inp.device)


def _fw_overrideable(pl, inp, w, b):
    return torch.ops.aten.convolution_overrideable(inp, w, b, pl.stride, pl.padding, pl.dilation,
                                                   pl.transposed, pl.output_padding, pl.groups)


def _fw_slow3d(pl, inp, w, b):
    return _nn.slow_conv3d(inp, w, w.shape[2:], b, pl.stride, pl.padding)


def _fw_unreachable(pl, inp, w, b):
    raise ConvError(f"symconv cannot run {pl.backend.name}: torch exposes no Python-callable "
                    "kernel for it")


def _fw_mps(pl, inp, w, b):
    _check_same_type_tensors(inp, w, b)
    return torch._mps_convolution(inp.contiguous(), w, b.contiguous() if b is not None else b,
                                  pl.padding, pl.stride, pl.dilation, pl.groups)


def _fw_mps_transpose(pl, inp, w, b):
    out = torch._mps_convolution_transpose(inp.contiguous(memory_format=pl.memory_format), w,
                                           pl.padding, pl.output_padding, pl.stride,
                                           pl.dilation, pl.groups)
    if b is not None:
        out.add_(_reshape_bias(inp.dim(), b))
    return out


def _check_same_type_tensors(inp, w, b):
    if not _type_equal(inp, w):
        raise ConvError(f"Input type ({type_string(inp)}) and weight type ({type_string(w)}) "
                        "should be the same")
    if b is not None and not _type_equal(inp, b):
        raise ConvError(f"Input type ({type_string(inp)}) and bias type ({type_string(b)}) "
                        "should be the same")


_FORWARD = {
    B.CudaDepthwise2d: _fw_depthwise2d, B.CudaDepthwise3d: _fw_depthwise3d,
    B.Cudnn: _fw_cudnn, B.CudnnTranspose: _fw_cudnn_transpose, B.Empty: _fw_empty,
    B.Miopen: _fw_miopen, B.MiopenDepthwise: _fw_miopen_depthwise,
    B.MiopenTranspose: _fw_miopen_transpose, B.Mkldnn: _fw_mkldnn,
    B.MkldnnTranspose: _fw_mkldnn_transpose, B.MkldnnEmpty: _fw_mkldnn_empty,
    B.Overrideable: _fw_overrideable, B.Slow3d: _fw_slow3d,
    B.Winograd3x3Depthwise: _fw_unreachable, B.Xnnpack2d: _fw_unreachable,
    B.Mps: _fw_mps, B.MpsTranspose: _fw_mps_transpose,
}
for _b in GROUP_SPLIT:
    _FORWARD[_b] = _fw_group_split


def _execute(pl: Plan, input, weight, bias):
    """Run the plan's kernel (no autograd recording)."""
    if pl.view1d:
        input = input.contiguous().unsqueeze(2)
        weight = weight.unsqueeze(2)
    out = _FORWARD[pl.backend](pl, input, weight, bias)
    if pl.view1d:
        out = out.squeeze(2)
    return out


# --------------------------------------------------------------------------------------
# Forward entry points


def plan(input, weight, bias=None, stride=1, padding=0, dilation=1, transposed=False,
         output_padding=0, groups=1, *, backend=None, env: Environment | None = None) -> Plan:
    """What :func:`convolution` runs for these arguments (raises torch's error where torch
    would). For unbatched inputs and ``padding='same'|'valid'`` it is the plan of the batched
    ``torch.convolution`` call that :func:`convolution` makes."""
    input, weight, bias, stride, padding, dilation, transposed, output_padding, groups = \
        _front(input, weight, bias, stride, padding, dilation, transposed, output_padding,
               groups)
    return _forward_plan(input, weight, bias, stride, padding, dilation, transposed,
                         output_padding, groups, backend, env)


def convolution(input, weight, bias=None, stride=1, padding=0, dilation=1, transposed=False,
                output_padding=0, groups=1, *, backend=None, env: Environment | None = None):
    """``torch.convolution`` with symconv's checks, selection and lowering.

    Also takes what ``F.conv{1,2,3}d`` / ``F.conv_transpose{1,2,3}d`` take (the number of
    spatial dimensions is the weight's): an unbatched input (batchify), ``padding='same'`` /
    ``'valid'`` and complex tensors. ``backend=`` (a :class:`ConvBackend`, its name or int)
    forces a backend: :class:`ConvError` says which of its conditions fails when it cannot run
    these arguments. ``env`` defaults to the running process's environment; pass another only
    to run a backend as symconv decides it for that environment.
    """
    # The warm path: everything symconv decides is a function of the tensors' sizes, strides,
    # dtypes, devices, the parameters, the flags torch reads and whether a gradient is needed;
    # a call seen before is answered from the plan cache (errors are never cached). The key
    # reads only the flags that selection reads for the input's device (see _DEVICE_FLAGS),
    # and a hit calls the kernel without a Python frame in between where it can. The key holds
    # the parameters as passed: a hit is taken only when they are the very objects the entry
    # was made from (ints and tuples of ints are immutable) or convert exactly to its values;
    # else (1.0 == 1, True == 1) the general path decides (_hit_params).
    if _is_compiling():  # dynamo: run it eagerly, outside the graph (see _eager_convolution)
        return _eager_convolution(input, weight, bias, stride, padding, dilation, transposed,
                                  output_padding, groups, backend=backend, env=env)
    if _native_conv is not None and env is None and backend is None:
        out = _native_conv(input, weight, bias, stride, padding, dilation, transposed,
                           output_padding, groups)
        if out is not None:
            return out
    key: tuple | None = None
    if env is None:
        try:
            # (a CUDA input's device as its index, a CPU one's not at all: cheaper to read
            # and to compare than torch.device objects)
            if input.is_cuda:
                key = (input.shape, input.stride(), input.dtype, input.get_device(),
                       weight.shape, weight.stride(), weight.dtype, weight.device,
                       None if bias is None else (bias.shape, bias.stride(), bias.dtype,
                                                  bias.device),
                       stride, padding, dilation, transposed, output_padding, groups, backend,
                       _grad_enabled() and (input.requires_grad or weight.requires_grad or (
                           bias is not None and bias.requires_grad)),
                       _cudnn_enabled(), _cudnn_deterministic(), _deterministic_algorithms(),
                       _cudnn_benchmark(), _cudnn_allow_tf32(),
                       _get_depthwise_kernel() if _get_depthwise_kernel is not None else None)
            elif input.is_cpu:
                key = (input.shape, input.stride(), input.dtype, None,
                       weight.shape, weight.stride(), weight.dtype, weight.is_cpu,
                       None if bias is None else (bias.shape, bias.stride(), bias.dtype,
                                                  bias.is_cpu),
                       stride, padding, dilation, transposed, output_padding, groups, backend,
                       _grad_enabled() and (input.requires_grad or weight.requires_grad or (
                           bias is not None and bias.requires_grad)),
                       _mkldnn_enabled(), _nnpack_enabled(), _num_threads())
            else:
                key = (input.shape, input.stride(), input.dtype, input.device,
                       weight.shape, weight.stride(), weight.dtype, weight.device,
                       None if bias is None else (bias.shape, bias.stride(), bias.dtype,
                                                  bias.device, bias.requires_grad),
                       stride, padding, dilation, transposed, output_padding, groups, backend,
                       input.requires_grad, weight.requires_grad, _flags_key())
            if type(stride) is not list:
                hit = _fast_get(key)
                listed = False
            else:  # (lists are unhashable: without raising, as a rule, see below)
                key, hit = _listed_key(key, stride, padding, dilation, transposed,
                                       output_padding, groups)
                listed = True
        except TypeError:  # a list parameter (unhashable): its exact int tuple is the key
            key, hit = _listed_key(key, stride, padding, dilation, transposed, output_padding,
                                   groups)
            listed = True
        except (RuntimeError, AttributeError):  # MKLDNN tensors have no strides; non-tensors
            key, hit = None, None
        if hit is not None:
            fn, pre, post, same = hit
            if listed or (same[0] is stride and same[1] is padding and same[2] is dilation
                    and same[3] is transposed and same[4] is output_padding
                    and same[5] is groups) or _hit_params(hit, stride, padding, dilation,
                                                          transposed, output_padding, groups):
                if pre is None:
                    return fn(input, weight, bias)
                if post is None:
                    return fn(input, weight, *pre)
                return fn(input, weight, *pre, bias, *post)
    if not (isinstance(input, _Tensor) and isinstance(weight, _Tensor) and (
            bias is None or isinstance(bias, _Tensor))):  # (a Parameter passes without a call)
        _check_tensor_args("convolution", input=input, weight=weight, bias=bias)
    if type(padding) is str or input.is_complex() or (
            3 <= weight.dim() <= 5 and input.dim() != weight.dim()) or (
            3 <= weight.dim() <= 5 and not transposed and bias is not None
            and bias.dtype != input.dtype):
        return _convolution_front(input, weight, bias, stride, padding, dilation, transposed,
                                  output_padding, groups, backend, env)
    pl = _forward_plan(input, weight, bias, stride, padding, dilation, transposed,
                       output_padding, groups, backend, env)
    if pl.backend == B.Overrideable and backend is None and input.is_meta:
        return _meta_convolution(input, weight, bias, stride, padding, dilation, transposed,
                                 output_padding, groups)
    grad = _C.is_grad_enabled() and (input.requires_grad or weight.requires_grad
                                     or (bias is not None and bias.requires_grad))
    if key is not None:
        params = _exact_params(stride, padding, dilation, transposed, output_padding, groups)
        if params is not None:
            _remember(_FAST, key, _fast_entry(pl, grad, bias, backend) + (
                _immutable_params(stride, padding, dilation, transposed, output_padding, groups,
                                  params),))
            if backend is None:
                _register_native(pl, grad, input, weight, bias, stride, padding, dilation,
                                 transposed, output_padding, groups)
    if grad:
        return _autograd(pl, input, weight, bias, backend, env)
    return _execute(pl, input, weight, bias)


# Under torch.compile, symconv.convolution runs eagerly at a graph break: it calls the backend
# kernels themselves, and some have no fake-tensor (meta) implementation for dynamo to trace
# (oneDNN's mkldnn_convolution). symconv.nn's modules are the graph-friendly form: symconv
# checks the call while tracing and torch's own convolution enters the graph.
# (made on first use: importing torch._dynamo costs about 1.8 s, which plain use never pays;
# dynamo, which is running then, steps out of the graph to make it)
_EAGER: list = []


def _eager_convolution(*args, **kwargs):
    if not _EAGER:
        import torch._dynamo
        _EAGER.append(torch._dynamo.disable(convolution, recursive=True))
    return _EAGER[0](*args, **kwargs)


# The warm path's parameters. An entry of _FAST is (fn, pre, post, same): ``same`` holds the
# six parameter objects of the call that made it where they are immutable and exact (an int, a
# bool, a tuple of ints), else _NOT_SAME, then the exact values, as _exact_params makes them,
# then whether stride, padding, dilation and output_padding are all pairs (2-D). A hit compares
# by identity first (a call site passing the same tuples every time), then by the types of the
# elements (_hit_params: each layer of a model has its own tuples, equal ones share an entry).
_NOT_SAME = object()
_INT_ONLY = frozenset({int})


def _exact_params(stride, padding, dilation, transposed, output_padding, groups) -> tuple | None:
    """The parameters as exact ints (int lists as tuples), or None when one of them is anything
    else (a float, a bool in an int list, a numpy int, a tensor, ...): such calls take the
    general path, which accepts or rejects them as a cold call does."""
    if type(transposed) is not bool or type(groups) is not int:
        return None
    out = []
    for x in (stride, padding, dilation, output_padding):
        tx = type(x)
        if tx is int:
            out.append(x)
        elif tx is tuple or tx is list:
            if len(x) == 2:  # (the common case, spelled out: a third of the time of the set)
                if type(x[0]) is not int or type(x[1]) is not int:
                    return None
            elif not set(map(type, x)) <= _INT_ONLY:
                return None
            out.append(tuple(x))
        else:
            return None
    return (out[0], out[1], out[2], transposed, out[3], groups)


def _immutable_params(stride, padding, dilation, transposed, output_padding, groups,
                      exact: tuple) -> tuple:
    """An entry's ``same``: the objects that can be compared by identity, then ``exact``."""
    objs = (stride, padding, dilation, transposed, output_padding, groups)
    pairs = all(type(x) is tuple and len(x) == 2 for x in (exact[0], exact[1], exact[2],
                                                           exact[4]))
    return tuple(x if type(x) is not list else _NOT_SAME for x in objs) + exact + (pairs,)


def _hit_params(hit: tuple, stride, padding, dilation, transposed, output_padding,
                groups) -> bool:
    """Whether a cache hit whose parameter objects are not the entry's may be taken: they are
    exact ints, so (the key being equal) they are the entry's values. Equal tuples that are
    other objects are the rule in a model (each layer has its own; layers of one shape share
    an entry), so the common case, four tuples, is one check of the element types."""
    if type(transposed) is not bool or type(groups) is not int:
        return False
    if hit[3][12]:  # the entry's four are pairs, so (the key being equal) are these: 2-D
        return type(stride[0]) is int and type(stride[1]) is int and \
            type(padding[0]) is int and type(padding[1]) is int and \
            type(dilation[0]) is int and type(dilation[1]) is int and \
            type(output_padding[0]) is int and type(output_padding[1]) is int
    if type(stride) is tuple and type(padding) is tuple and type(dilation) is tuple and \
            type(output_padding) is tuple:
        return set(map(type, stride + padding + dilation + output_padding)) <= _INT_ONLY
    exact = _exact_params(stride, padding, dilation, transposed, output_padding, groups)
    return exact is not None and exact == hit[3][6:12]


def _listed_key(key: tuple | None, stride, padding, dilation, transposed, output_padding,
                groups) -> tuple:
    """``(key, hit)`` for a call whose parameters are not hashable (lists): the key with their
    exact values in their place (so a hit needs no further check: entries are made only from
    exact values), or ``(None, None)`` when they have none."""
    if key is None:
        return None, None
    exact = _exact_params(stride, padding, dilation, transposed, output_padding, groups)
    if exact is None:
        return None, None
    k = key[:9] + exact + key[15:]
    return k, _fast_get(k)


_FAST: dict = {}
_fast_get = _FAST.get
_Tensor = torch.Tensor
_grad_enabled = _C.is_grad_enabled
_mkldnn_enabled = _C._get_mkldnn_enabled
_nnpack_enabled = _C._get_nnpack_enabled
_num_threads = torch.get_num_threads
_cudnn_enabled = _C._get_cudnn_enabled
_cudnn_deterministic = _C._get_cudnn_deterministic
_deterministic_algorithms = _C._get_deterministic_algorithms
_cudnn_benchmark = _C._get_cudnn_benchmark
_cudnn_allow_tf32 = _C._get_cudnn_allow_tf32

# Which runtime flags selection, the kernel checks and the lowering can read, by the input's
# device (the warm path's key holds only these; any other device reads them all). Every
# predicate that reads a cuDNN / MIOpen flag, the deterministic flags or the depthwise-kernel
# flag first requires ``input.is_cuda``; oneDNN, NNPACK and XNNPACK (and with them the thread
# count) require a CPU input (or an MKLDNN one, which is a CPU tensor). Grad mode and the
# tensors' requires_grad are read only as ``need_backward`` (grad mode and any requires_grad),
# except by XNNPACK's rule, which only mobile builds have (Environment.from_torch: never the
# running process), so the key holds that one bit. tests/test_lowering.py checks this against
# the rule table.
_DEVICE_FLAGS = {
    "cuda": ("cudnn_enabled", "cudnn_deterministic", "deterministic_algorithms",
             "cudnn_benchmark", "cudnn_allow_tf32", "cudnn_depthwise_kernel", "grad_enabled"),
    "cpu": ("mkldnn_enabled", "nnpack_enabled", "num_threads", "grad_enabled"),
}


# Backends whose kernel takes cuDNN's benchmark / deterministic / allow_tf32 flags as arguments.
KERNEL_TAKES_FLAGS = frozenset({B.Cudnn, B.CudnnTranspose, B.Miopen, B.MiopenDepthwise,
                                B.MiopenTranspose})


def _direct_kind(pl: Plan, grad: bool, bias) -> ConvBackend | None:
    """The backend whose kernel a cache hit may call directly (no views, copies, group splits
    or batch splits, no autograd), or None: such calls run the general :func:`_execute`. The
    one list of these conditions, for the Python warm path and the compiled one
    (symconv.native)."""
    if grad:
        return None
    be = pl.backend
    plain = not pl.view1d and pl.input_in_format and pl.weight_in_format
    if plain and be == B.Cudnn and not pl.split_batch:
        return be
    if plain and be == B.Mkldnn and (bias is None or bias.is_contiguous()):
        return be
    if plain and pl.groups == 1 and be in _DIRECT:
        return be
    if be == B.Slow3d and not pl.view1d:
        return be
    if plain and be in (B.CudaDepthwise2d, B.CudaDepthwise3d) and \
            pl.memory_format == torch.contiguous_format:
        return be
    return None


def _fast_entry(pl: Plan, grad: bool, bias, backend):
    """What a cache hit runs, ``(fn, pre, post)``: ``fn(input, weight, bias)`` when ``pre`` is
    None, ``fn(input, weight, *pre)`` when only ``post`` is None (no bias), else
    ``fn(input, weight, *pre, bias, *post)``. The kernel is called directly (no Python frame in
    between) where :func:`_direct_kind` allows; else through the general :func:`_execute` (or
    autograd). ``bias`` is the call's bias tensor or None: its properties are part of the cache
    key."""
    if grad:
        return (lambda inp, w, b: _autograd(pl, inp, w, b, backend, None)), None, None
    be = _direct_kind(pl, grad, bias)
    s, p, d, g, ks = pl.stride, pl.padding, pl.dilation, pl.groups, pl.kernel_size
    direct: tuple[Any, tuple, tuple] | None = None
    if be == B.Cudnn:
        env = pl.env
        tail = (p, s, d, g, env.cudnn_benchmark, env.deterministic, env.cudnn_allow_tf32)
        if bias is None:
            return torch.cudnn_convolution, tail, None
        conv = torch.cudnn_convolution

        def run(inp, w, b):
            out = conv(inp, w, *tail)
            out.add_(_reshape_bias(inp.dim(), b))
            return out
        return run, None, None
    if be == B.Mkldnn:
        direct = torch.mkldnn_convolution, (), (p, s, d, g)
    elif be == B.Slow3d:
        direct = _nn.slow_conv3d, (ks,), (s, p)
    elif be in (B.CudaDepthwise2d, B.CudaDepthwise3d):
        fn = _nn._conv_depthwise2d if be == B.CudaDepthwise2d else _nn.conv_depthwise3d
        direct = fn, (ks,), (s, p, d)
    elif be is not None:
        kernel, pre_args, post_args = _DIRECT[be]
        direct = kernel, pre_args(pl), post_args(pl)
    if direct is not None:
        fn, pre, post = direct
        return (fn, pre + (None,) + post, None) if bias is None else direct
    return (lambda inp, w, b: _execute(pl, inp, w, b)), None, None


# The compiled warm path (symconv.native.enable sets these; None: the Python one alone).
_native_conv: Callable[..., Any] | None = None
_native_register: Callable[..., Any] | None = None
_native_clear: Callable[[], Any] | None = None
_is_compiling = torch.compiler.is_compiling


def _set_native(conv, register, clear) -> None:
    """Install (or, with Nones, remove) the compiled warm path: ``conv`` answers a call seen
    before, ``register`` remembers what the Python path chose (symconv.native)."""
    global _native_conv, _native_register, _native_clear
    with _cache_lock:
        _native_conv, _native_register, _native_clear = conv, register, clear


def _register_native(pl: Plan, grad: bool, input, weight, bias, stride, padding, dilation,
                     transposed, output_padding, groups) -> None:
    """Hand a decided call's plan to the compiled warm path, where it runs one kernel."""
    register = _native_register
    be = _direct_kind(pl, grad, bias)
    if register is None or be is None:
        return
    env = pl.env
    register(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups,
             int(be), pl.kernel_size, pl.stride, pl.padding, pl.dilation,
             pl.output_padding or [0] * len(pl.stride), pl.groups, env.cudnn_benchmark,
             env.deterministic, env.cudnn_allow_tf32)


# The kernels of the group-split backends (groups == 1), as (kernel, arguments before the bias,
# arguments after it): the calls of _nogroup_forward (a kernel this torch lacks is left out).
# backend -> (kernel, its arguments before the bias, after the bias), each from the plan
_DIRECT: dict[ConvBackend, tuple[Callable[..., torch.Tensor], Callable[[Plan], tuple],
                                 Callable[[Plan], tuple]]] = {}
for _b, _mod, _name, _pre, _post in (
        (B.NnpackSpatial, torch, "_nnpack_spatial_convolution", lambda pl: (),
         lambda pl: (pl.padding, pl.stride)),
        (B.Slow2d, _nn, "thnn_conv2d", lambda pl: (pl.kernel_size,),
         lambda pl: (pl.stride, pl.padding)),
        (B.SlowDilated2d, _nn, "slow_conv_dilated2d", lambda pl: (pl.kernel_size,),
         lambda pl: (pl.stride, pl.padding, pl.dilation)),
        (B.SlowDilated3d, _nn, "slow_conv_dilated3d", lambda pl: (pl.kernel_size,),
         lambda pl: (pl.stride, pl.padding, pl.dilation)),
        (B.SlowTranspose2d, _nn, "slow_conv_transpose2d", lambda pl: (pl.kernel_size,),
         lambda pl: (pl.stride, pl.padding, pl.output_padding, pl.dilation)),
        (B.SlowTranspose3d, _nn, "slow_conv_transpose3d", lambda pl: (pl.kernel_size,),
         lambda pl: (pl.stride, pl.padding, pl.output_padding, pl.dilation))):
    if hasattr(_mod, _name):
        _DIRECT[_b] = (getattr(_mod, _name), _pre, _post)


def _batchify_check(input, weight, transposed):
    nd = weight.dim() - 2
    name = f"conv_transpose{nd}d" if transposed else f"conv{nd}d"
    if input.dim() not in (nd + 1, nd + 2):
        raise ConvError(f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to {name}, "
                        f"but got input of size: {fmt_sizes(input.shape)}")
    return input.dim() == nd + 2


def _front(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    """The F.conv* front half for plan(): batchify, complex and padding modes, on shapes."""
    is_str = type(padding) is str
    if is_str and transposed:
        nd = weight.dim() - 2
        raise TypeError(f"conv_transpose{nd}d(): argument 'padding' must be tuple of ints, "
                        "not str")
    if 3 <= weight.dim() <= 5:
        if not transposed and not is_str and bias is not None and bias.dtype != input.dtype:
            raise ConvError(f"Input type ({dtype_name(input.dtype)}) and bias type "
                            f"({dtype_name(bias.dtype)}) should be the same")
        if not _batchify_check(input, weight, transposed):
            input = input.unsqueeze(0)
    if input.is_complex():  # the plan of the first of the three real convolutions
        input, weight, bias = _real_part(input), _real_part(weight), _real_part(bias)
    if is_str:
        stride, padding, dilation, pad_nd = _padding_mode(input, weight, stride, padding,
                                                          dilation, groups)
        if pad_nd is not None:
            input = _padded_meta(input, pad_nd)
        output_padding = [0] * (weight.dim() - 2) if weight.dim() > 2 else [0]
        transposed = False
    return input, weight, bias, stride, padding, dilation, transposed, output_padding, groups


def _padded_meta(input, pad_nd):
    """The properties of F.pad(input, pad_nd) without padding anything (for plan())."""
    shape = list(input.shape)
    for i in range(len(pad_nd) // 2):
        d = len(shape) - 1 - i
        shape[d] += pad_nd[2 * i] + pad_nd[2 * i + 1]
    return TensorProps(shape, _contiguous_strides(shape), input.dtype, input.device,
                       input.requires_grad)


class TensorProps:
    """What planning reads of a tensor (sizes, strides, dtype, device, layout, requires_grad),
    without the tensor: :func:`plan` takes these wherever it takes tensors. ``of(t, hint)``
    reads a (fake) tensor, mapping each size through ``hint`` (e.g. a SymInt to its example
    value, without guarding on it)."""

    __slots__ = ("_stride", "device", "dtype", "layout", "requires_grad", "shape")

    def __init__(self, shape, stride, dtype, device, requires_grad=False, layout=_STRIDED):
        self.shape = torch.Size(shape)
        self._stride = None if stride is None else tuple(stride)
        self.dtype = dtype
        self.device = torch.device(device)
        self.requires_grad = bool(requires_grad)
        self.layout = layout

    @classmethod
    def of(cls, t, hint=None):
        if t is None:
            return None
        h = hint if hint is not None else (lambda v: v)
        stride = tuple(h(v) for v in t.stride()) if t.layout == _STRIDED else None
        return cls(tuple(h(v) for v in t.shape), stride, t.dtype, t.device, t.requires_grad,
                   t.layout)

    def stride(self):
        return self._stride

    def dim(self) -> int:
        return len(self.shape)

    def is_complex(self) -> bool:
        return self.dtype.is_complex

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def unsqueeze(self, d: int) -> TensorProps:
        assert d == 0
        st = self._stride
        if st is not None:
            st = ((self.shape[0] * st[0]) if st else 1,) + st
        return TensorProps((1,) + tuple(self.shape), st, self.dtype, self.device,
                           self.requires_grad, self.layout)

    def real_part(self) -> TensorProps:
        real = torch.empty((), dtype=self.dtype).real.dtype
        st = None if self._stride is None else tuple(2 * v for v in self._stride)
        return TensorProps(self.shape, st, real, self.device, self.requires_grad, self.layout)


def _real_part(t):
    if t is None or not t.is_complex():
        return t
    return t.real_part() if isinstance(t, TensorProps) else _complex_to_real(t)[0]


def _contiguous_strides(shape):
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(out))


def _padding_mode(input, weight, stride, padding: str, dilation, groups):
    """``_convolution_mode``'s padding: (stride, padding, dilation, pad_nd or None)."""
    if padding == "valid":
        return stride, [0], dilation, None
    if padding != "same":
        raise ConvError(f"Invalid padding string: '{padding}'")
    k = weight.dim()
    if not k > 2:
        raise ConvError("weight should have at least three dimensions")
    if not _groups(groups) > 0:
        raise ConvError("non-positive groups is not supported")
    dim = k - 2
    ws, ins = list(weight.shape), list(input.shape)
    if k != input.dim():
        raise ConvError(f"Expected {k}-dimensional input for {k}-dimensional weight"
                        f"{fmt_sizes(ws)}, but got {input.dim()}-dimensional input of size "
                        f"{fmt_sizes(ins)} instead")
    st, dl = list(_param_tuple(stride)), list(_param_tuple(dilation))
    if len(st) not in (dim, 1):
        raise ConvError(f"stride cannot broadcast to {dim} dimensions")
    if len(dl) not in (dim, 1):
        raise ConvError(f"dilation cannot broadcast to {dim} dimensions")
    for s in st:
        if s != 1:
            raise ConvError("padding='same' is not supported for strided convolutions")
    pad_l, pad_r = [], []
    symmetric = True
    for i in range(dim):
        s = st[0] if len(st) == 1 else st[i]
        d = dl[0] if len(dl) == 1 else dl[i]
        left, right = pooling_same_mode_padding_lr(ins[i + 2], ws[i + 2], s, d)
        pad_l.append(int(left))
        pad_r.append(int(right))
        if left != right:
            symmetric = False
    if symmetric:
        return st, pad_l, dl, None
    warnings.warn("Using padding='same' with even kernel lengths and odd dilation may require a "
                  "zero-padded copy of the input be created", UserWarning, stacklevel=4)
    pad_nd = [0] * (2 * dim)
    for i in range(dim):
        delta = pad_r[i] - pad_l[i]
        idx = 2 * (dim - 1 - i)
        if delta > 0:
            pad_nd[idx + 1] = delta
        else:
            pad_nd[idx] = delta
            pad_l[i] = pad_r[i]
    return st, pad_l, dl, pad_nd


def _convolution_front(input, weight, bias, stride, padding, dilation, transposed,
                       output_padding, groups, backend, env):
    is_str = type(padding) is str
    if is_str and transposed:
        nd = weight.dim() - 2
        raise TypeError(f"conv_transpose{nd}d(): argument 'padding' must be tuple of ints, "
                        "not str")
    batched = True
    if 3 <= weight.dim() <= 5:
        if not transposed and not is_str and bias is not None and bias.dtype != input.dtype:
            raise ConvError(f"Input type ({dtype_name(input.dtype)}) and bias type "
                            f"({dtype_name(bias.dtype)}) should be the same")
        batched = _batchify_check(input, weight, transposed)
        if not batched:
            input = input.unsqueeze(0)
    if input.is_complex():
        out = _complex_convolution(input, weight, bias, stride, padding, dilation, transposed,
                                   output_padding, groups, backend, env)
    elif is_str:
        out = _convolution_mode(input, weight, bias, stride, padding, dilation, groups, backend,
                                env)
    else:
        out = _conv(input, weight, bias, stride, padding, dilation, transposed, output_padding,
                    groups, backend, env)
    return out if batched else out.squeeze(0)


def _convolution_mode(input, weight, bias, stride, padding: str, dilation, groups, backend,
                      env):
    stride, pads, dilation, pad_nd = _padding_mode(input, weight, stride, padding, dilation,
                                                   groups)
    if pad_nd is not None:
        input = torch.constant_pad_nd(input, pad_nd, 0)
    op = [0] * max(weight.dim() - 2, 1)
    return _conv(input, weight, bias, stride, pads, dilation, False, op, groups, backend, env)


def _complex_convolution(input, weight, bias, stride, padding, dilation, transposed,
                         output_padding, groups, backend, env):
    """The seed's complex_convolution(_mode): three real convolutions (Gauss's trick)."""
    _check_same_type_tensors(input, weight, bias)
    i_r, i_i = _complex_to_real(input.resolve_conj())
    w_r, w_i = _complex_to_real(weight.resolve_conj())
    if type(padding) is str:
        def conv(x, w, b):
            return _convolution_mode(x, w, b, stride, padding, dilation, groups, backend, env)
    else:
        def conv(x, w, b):
            return _conv(x, w, b, stride, padding, dilation, transposed, output_padding, groups,
                         backend, env)
    if bias is None:
        a = conv(i_r, w_r, None)
        b = conv(i_i, w_i, None)
        c = conv(i_r + i_i, w_r + w_i, None)
    else:
        b_r, b_i = _complex_to_real(bias.resolve_conj())
        a = conv(i_r, w_r, b_r)
        b = conv(i_i, w_i, None)
        c = conv(i_r + i_i, w_r + w_i, b_r + b_i)
    return (a - b) + 1j * (c - a - b)


def _complex_to_real(t):
    v = torch.view_as_real(t)
    return v.select(-1, 0), v.select(-1, 1)


def _conv(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups,
          backend, env):
    """``at::convolution`` -> ``_convolution``: plan (cached) and run, recording autograd."""
    pl = _forward_plan(input, weight, bias, stride, padding, dilation, transposed,
                       output_padding, groups, backend, env)
    if pl.backend == B.Overrideable and backend is None and input.is_meta:
        return _meta_convolution(input, weight, bias, stride, padding, dilation, transposed,
                                 output_padding, groups)
    if _C.is_grad_enabled() and (input.requires_grad or weight.requires_grad
                                 or (bias is not None and bias.requires_grad)):
        return _autograd(pl, input, weight, bias, backend, env)
    return _execute(pl, input, weight, bias)


def _meta_convolution(input, weight, bias, stride, padding, dilation, transposed,
                      output_padding, groups):
    """A meta input: torch never reaches ``_convolution`` (``aten::convolution`` has a meta
    kernel, and selection would say Overrideable); symconv has checked the call, torch's meta
    kernel gives the output (shape, strides, dtype), as ``torch.convolution`` does."""
    return torch.convolution(input, weight, bias, list(_param_tuple(stride)),
                             list(_param_tuple(padding)), list(_param_tuple(dilation)),
                             transposed, list(_param_tuple(output_padding)), _groups(groups))


def _autograd(pl: Plan, input, weight, bias, backend, env):
    args = (pl.stride, pl.padding, pl.dilation, pl.transposed, pl.output_padding, pl.groups,
            backend, env)
    if pl.view1d:  # the user-level (1-D) parameters, for convolution_backward
        args = (pl.stride[1:], pl.padding[1:], pl.dilation[1:], pl.transposed,
                pl.output_padding[1:], pl.groups, backend, env)
    return _ConvFunction.apply(input, weight, bias, pl, args)


# --------------------------------------------------------------------------------------
# Backward (the seed's convolution_backward switch)


def _backward_plan(grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed,
                   output_padding, groups, backend, env) -> Plan:
    env_obj, env_key = _resolve_env(env)
    bs = None if bias_sizes is None else _pkey(bias_sizes)
    key: tuple | None = (_tkey(input), _tkey(weight), bs, _pkey(stride), _pkey(padding),
                         _pkey(dilation), transposed, _pkey(output_padding), _groups(groups),
                         backend, env_key, grad_output.dim())
    try:
        hit = _BACKWARD_PLANS.get(key)
    except TypeError:
        hit, key = None, None
    if hit is not None:
        return hit
    p = _build_plan(_spec(input), _spec(weight), None, _param_tuple(stride),
                    _param_tuple(padding), _param_tuple(dilation), bool(transposed),
                    _param_tuple(output_padding), _groups(groups), backend, env_obj,
                    backward=True, bias_sizes=None if bs is None else list(bs),
                    grad_output_dim=grad_output.dim())
    if key is not None:
        _remember(_BACKWARD_PLANS, key, p)
    return p


@contextlib.contextmanager
def _torch_flags(mkldnn=None, nnpack=None, cudnn=None, depthwise_kernel=None):
    saved = (_C._get_mkldnn_enabled(), _C._get_nnpack_enabled(), _C._get_cudnn_enabled(),
             _get_depthwise_kernel() if _get_depthwise_kernel is not None else None)
    try:
        if mkldnn is not None:
            _C._set_mkldnn_enabled(mkldnn)
        if nnpack is not None:
            _C._set_nnpack_enabled(nnpack)
        if cudnn is not None:
            _C._set_cudnn_enabled(cudnn)
        if depthwise_kernel is not None and _get_depthwise_kernel is not None:
            _C._set_cudnn_depthwise_kernel(depthwise_kernel)
        yield
    finally:
        _C._set_mkldnn_enabled(saved[0])
        _C._set_nnpack_enabled(saved[1])
        _C._set_cudnn_enabled(saved[2])
        if saved[3] is not None:
            _C._set_cudnn_depthwise_kernel(saved[3])


_SLOW = frozenset({B.Slow2d, B.Slow3d, B.SlowDilated2d, B.SlowDilated3d, B.SlowTranspose2d,
                   B.SlowTranspose3d})


def _steering(target: ConvBackend) -> list[dict]:
    """Flag settings under which torch's own selection may land on ``target`` (tried in order,
    the current flags first)."""
    opts: list[dict] = [{}]
    if target in _SLOW:
        opts.append(dict(mkldnn=False, nnpack=False, cudnn=False))
    elif target == B.NnpackSpatial:
        opts.append(dict(mkldnn=False, nnpack=True))
    elif target in (B.Mkldnn, B.MkldnnTranspose):
        opts.append(dict(mkldnn=True))
    elif target in (B.Cudnn, B.CudnnTranspose):
        opts.append(dict(cudnn=True, depthwise_kernel="cudnn"))
    elif target in (B.CudaDepthwise2d, B.CudaDepthwise3d):
        opts.append(dict(cudnn=False))
    return opts


def _torch_backward_kernel(target: ConvBackend, go, inp, w, bias_sizes, stride, padding,
                           dilation, transposed, output_padding, groups, mask):
    """``aten::convolution_backward`` on arguments for which torch selects ``target`` (checked
    with torch's own selection; flags steered when needed): the backward kernel of ``target``
    on exactly the tensors the seed would hand it."""
    accepted = _SAME_BACKWARD_KERNEL.get(target, frozenset({target}))
    got = None
    for opts in _steering(target):
        with _torch_flags(**opts) if opts else contextlib.nullcontext():
            got = ConvBackend.from_torch(torch._C._select_conv_backend(
                inp, w, None, stride, padding, dilation, transposed, output_padding, groups,
                bias_sizes))
            if got in accepted:
                return torch.ops.aten.convolution_backward(go, inp, w, bias_sizes, stride,
                                                           padding, dilation, transposed,
                                                           output_padding, groups, list(mask))
    if target == B.Cudnn and inp.is_cuda and w.dim() in (4, 5):
        # torch picks cuDNN for a depthwise convolution only when a tensor is channels-last:
        # hand cuDNN a channels-last copy of the weight (or, where the weight's shape makes
        # channels-last strides ambiguous, e.g. [C, 1, 1, 1], of the input), and the gradients
        # back in the layouts of the tensors they belong to.
        mf = torch.channels_last if w.dim() == 4 else torch.channels_last_3d

        def cl_copy(t):
            # (not t.contiguous(mf): a [C, 1, k, k] weight is already "channels-last
            # contiguous" and would keep strides that suggest the contiguous format)
            return torch.empty_like(t, memory_format=mf).copy_(t)
        for use_inp, use_w in ((False, True), (True, False)):
            inp2 = cl_copy(inp) if use_inp else inp
            w2 = cl_copy(w) if use_w else w
            got = ConvBackend.from_torch(torch._C._select_conv_backend(
                inp2, w2, None, stride, padding, dilation, transposed, output_padding, groups,
                bias_sizes))
            if got in accepted:
                gi, gw, gb = torch.ops.aten.convolution_backward(
                    go, inp2, w2, bias_sizes, stride, padding, dilation, transposed,
                    output_padding, groups, list(mask))
                if gi is not None:
                    gi = gi.contiguous(memory_format=_suggest_memory_format(inp))
                if gw is not None:
                    gw = gw.contiguous(memory_format=_suggest_memory_format(w))
                return gi, gw, gb
    raise ConvError(f"the backward kernel of {target.name} is reachable from Python only "
                    "through aten::convolution_backward, and torch selects "
                    f"{got.name if got is not None else '?'} for these arguments under every "
                    "flag setting symconv tries")


def _bw_group_split(pl: Plan, go, inp, w, bias_sizes, mask):
    mf = pl.memory_format
    inp = inp.contiguous(memory_format=mf)
    w = w.contiguous(memory_format=mf)
    if pl.groups == 1:
        return _bw_nogroup(pl, go, inp, w, bias_sizes, mask)
    gis, gws, gbs = [], [], []
    gb_sizes = None if bias_sizes is None else [bias_sizes[0] // pl.groups]
    for g in range(pl.groups):
        gi, gw, gb = _bw_nogroup(pl, _subtensor(go, 1, pl.groups, g),
                                 _subtensor(inp, 1, pl.groups, g), _subtensor(w, 0, pl.groups, g),
                                 gb_sizes, mask)
        gis.append(gi)
        gws.append(gw)
        gbs.append(gb)
    return (torch.cat(gis, 1) if mask[0] else None, torch.cat(gws, 0) if mask[1] else None,
            torch.cat(gbs, 0) if mask[2] and gbs[0] is not None else None)


def _bw_nogroup(pl: Plan, go, inp, w, bias_sizes, mask):
    """The seed's _convolution_backward_nogroup_backend (groups == 1)."""
    if pl.backend == B.Slow2d:
        return torch.ops.aten._slow_conv2d_backward.output_mask(
            go, inp, w, w.shape[2:], pl.stride, pl.padding, list(mask))
    # NNPACK and SlowDilated2d share slow_conv_dilated2d_backward; the others have their own
    # stubs. All are reached through aten::convolution_backward with torch selecting them.
    return _torch_backward_kernel(pl.backend, go, inp, w, bias_sizes, pl.stride, pl.padding,
                                  pl.dilation, pl.transposed, pl.output_padding, 1, mask)


def _bw_empty(pl, go, inp, w, bias_sizes, mask):
    gi = torch.zeros_like(inp) if mask[0] else None
    gw = torch.zeros_like(w) if mask[1] else None
    gb = torch.zeros(bias_sizes, dtype=w.dtype, device=w.device) if mask[2] else None
    return gi, gw, gb


def _bw_mkldnn_empty(pl, go, inp, w, bias_sizes, mask):
    gi = None
    if mask[0]:
        if inp.layout == _MKLDNN_LAYOUT:
            gi = torch.zeros(inp.shape, dtype=inp.dtype).to_mkldnn()
        else:
            gi = torch.zeros_like(inp)
    gw = torch.zeros_like(w) if mask[1] else None
    gb = torch.zeros(bias_sizes, dtype=w.dtype, device=w.device) if mask[2] else None
    return gi, gw, gb


def _bw_via_aten(pl, go, inp, w, bias_sizes, mask):
    if pl.backend in (B.Mkldnn, B.MkldnnTranspose):
        if w.layout == _MKLDNN_LAYOUT:
            raise ConvError("The MKLDNN backend does not support weight as an MKLDNN tensor "
                            "during training")
        if inp.layout != _MKLDNN_LAYOUT:
            inp = inp.contiguous(memory_format=pl.memory_format)
            w = w.contiguous(memory_format=pl.memory_format)
    elif pl.backend in (B.Cudnn, B.CudnnTranspose, B.Mps, B.MpsTranspose, B.Miopen,
                        B.MiopenTranspose):
        _check_same_type_tensors(inp, w, None)
    if pl.backend in (B.Cudnn, B.CudnnTranspose, B.MpsTranspose) and mask[1]:
        inp = inp.contiguous(memory_format=pl.memory_format)
    elif pl.backend in (B.Miopen, B.MiopenDepthwise, B.MiopenTranspose):
        inp = inp.contiguous(memory_format=pl.memory_format)
    return _torch_backward_kernel(pl.backend, go, inp, w, bias_sizes, pl.stride, pl.padding,
                                  pl.dilation, pl.transposed, pl.output_padding, pl.groups, mask)


def _bw_slow2d_or_split(pl, go, inp, w, bias_sizes, mask):
    return _bw_group_split(pl, go, inp, w, bias_sizes, mask)


def _bw_unsupported(pl, go, inp, w, bias_sizes, mask):
    what = "depthwise 3x3 winograd" if pl.backend == B.Winograd3x3Depthwise else "xnnpack"
    raise ConvError(f"Backward is not supported for {what}")


def _bw_overrideable(pl, go, inp, w, bias_sizes, mask):
    return torch.ops.aten.convolution_backward_overrideable(
        go, inp, w, pl.stride, pl.padding, pl.dilation, pl.transposed, pl.output_padding,
        pl.groups, list(mask))


_BACKWARD = {B.Empty: _bw_empty, B.MkldnnEmpty: _bw_mkldnn_empty,
             B.Winograd3x3Depthwise: _bw_unsupported, B.Xnnpack2d: _bw_unsupported,
             B.Overrideable: _bw_overrideable}
for _b in GROUP_SPLIT:
    _BACKWARD[_b] = _bw_slow2d_or_split
for _b in (B.CudaDepthwise2d, B.CudaDepthwise3d, B.Cudnn, B.CudnnTranspose, B.Mps,
           B.MpsTranspose, B.Miopen, B.MiopenDepthwise, B.MiopenTranspose, B.Mkldnn,
           B.MkldnnTranspose, B.Slow3d):
    _BACKWARD[_b] = _bw_via_aten


def convolution_backward(grad_output, input, weight, bias_sizes, stride, padding, dilation,
                         transposed, output_padding, groups, output_mask, *, backend=None,
                         env: Environment | None = None):
    """``aten::convolution_backward`` with symconv's checks, selection and lowering: returns
    ``(grad_input, grad_weight, grad_bias)``, ``None`` where ``output_mask`` is false."""
    _check_tensor_args("convolution_backward", grad_output=grad_output, input=input,
                       weight=weight)
    mask = tuple(bool(m) for m in output_mask)
    if len(mask) != 3:
        raise ValueError("output_mask must have 3 entries")
    pl = _backward_plan(grad_output, input, weight, bias_sizes, stride, padding, dilation,
                        bool(transposed), output_padding, groups, backend, env)
    with torch.no_grad():
        return _backward_execute(pl, grad_output, input, weight,
                                 None if bias_sizes is None else list(_pkey(bias_sizes)), mask)


def _backward_execute(pl: Plan, go, inp, w, bias_sizes, mask):
    if pl.view1d:
        inp = inp.contiguous()
        go, inp, w = go.unsqueeze(2), inp.unsqueeze(2), w.unsqueeze(2)
    gi, gw, gb = _BACKWARD[pl.backend](pl, go, inp, w, bias_sizes, mask)
    if pl.view1d:
        gi = gi.squeeze(2) if mask[0] and gi is not None else gi
        gw = gw.squeeze(2) if mask[1] and gw is not None else gw
    if not mask[0]:
        gi = None
    if not mask[1]:
        gw = None
    if mask[2]:
        if gb is None:
            gb = go.sum((0, 2, 3, 4) if w.dim() == 5 else (0, 2, 3))
    else:
        gb = None
    return gi, gw, gb


# --------------------------------------------------------------------------------------
# Double backward (the seed's _convolution_double_backward), every convolution through symconv


def convolution_double_backward(ggI, ggW, ggb, gO, weight, input, stride, padding, dilation,
                                transposed, output_padding, groups, output_mask=(True, True, True),
                                *, env: Environment | None = None):
    """``aten::_convolution_double_backward``: ``(ggO, gI, gW)``. Its convolutions run through
    :func:`convolution` (symconv's selection), including the groups inferred for 3-D
    convolutions and the output_padding inferred for the grad-input convolution."""
    dim = weight.dim() - 2
    from .params import expand_param_if_needed
    stride = expand_param_if_needed(list(_param_tuple(stride)), "stride", dim)
    padding = expand_param_if_needed(list(_param_tuple(padding)), "padding", dim)
    dilation = expand_param_if_needed(list(_param_tuple(dilation)), "dilation", dim)
    output_padding = expand_param_if_needed(list(_param_tuple(output_padding)), "output_padding",
                                            dim)
    if not transposed and input.dim() > 4:
        # the seed's "hacky way of inferring the groups number for grouped Conv3D"
        g = input.size(1) // weight.size(1) if weight.size(1) > 0 else -1
    else:
        g = _groups(groups)

    def conv(x, w, s, p, d, t, op, gr):
        return _conv(x, w, None, s, p, d, t, op, gr, None, env)

    ggO = None
    if input.numel() != 0:
        if ggI is not None:
            w = weight.contiguous() if weight.is_cuda else weight
            ggO = conv(ggI, w, stride, padding, dilation, transposed, output_padding, g)
        if ggW is not None:
            ggW_c = ggW.contiguous() if ggW.is_cuda else ggW
            term = conv(input, ggW_c, stride, padding, dilation, transposed, output_padding, g)
            ggO = term if ggO is None else ggO + term
    if ggb is not None:
        new_size = [1] * gO.dim()
        new_size[1] = ggb.size(0)
        expanded = ggb.contiguous().view(new_size).expand(gO.shape)
        ggO = expanded if ggO is None else ggO + expanded

    gW = None
    if ggI is not None and input.numel() != 0:
        # gW = conv(ggI, gO): dilation and stride swap, groups handled one by one
        gOt, ggIt = gO.transpose(0, 1), ggI.transpose(0, 1)
        if g == 1:
            if gOt.is_cuda:
                gOt = gOt.contiguous()
            if transposed:
                gWt = conv(gOt, ggIt, dilation, padding, stride, False, output_padding, 1)
            else:
                gWt = conv(ggIt, gOt, dilation, padding, stride, False, output_padding, 1)
        else:
            parts = []
            for k in range(g):
                ggIt_g = _subvariable(ggIt, 0, g, k)
                gOt_g = _subvariable(gOt, 0, g, k)
                if gOt_g.is_cuda:
                    gOt_g = gOt_g.contiguous()
                if transposed:
                    parts.append(conv(gOt_g, ggIt_g, dilation, padding, stride, False,
                                      output_padding, 1))
                else:
                    parts.append(conv(ggIt_g, gOt_g, dilation, padding, stride, False,
                                      output_padding, 1))
            gWt = torch.cat(parts, 1)
        gW = gWt.transpose(0, 1)
        for i in range(2, gW.dim()):
            if gW.size(i) > weight.size(i):
                gW = gW.narrow(i, 0, weight.size(i))

    gI = None
    if input.numel() != 0 and ggW is not None:
        if transposed:
            gO_c = gO.contiguous() if gO.is_cuda else gO
            gI = conv(gO_c, ggW, stride, padding, dilation, False, output_padding, g)
            for i in range(2, gI.dim()):
                if gI.size(i) > input.size(i):
                    gI = gI.narrow(i, 0, input.size(i))
        else:
            # the output_padding that makes the transposed convolution give input's size
            gi_op = list(output_padding)
            ks, ins, gos = weight.shape[2:], input.shape[2:], gO.shape[2:]
            for i in range(len(ks)):
                expected = (ks[i] - 1) * dilation[i] - 2 * padding[i] + \
                    (stride[i] * (gos[i] - 1) + 1)
                if expected != ins[i]:
                    gi_op[i] = ins[i] - expected
            gO_c = gO.contiguous() if gO.is_cuda else gO
            gI = conv(gO_c, ggW, stride, padding, dilation, True, gi_op, g)
    return ggO, gI, gW


def _subvariable(var, dim: int, groups: int, g: int):
    n = var.size(dim) // groups
    return var.narrow(dim, n * g, n)


# --------------------------------------------------------------------------------------
# Autograd: symconv's forward, backward and double backward


class _ConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias, pl, args):
        ctx.save_for_backward(input, weight)
        ctx.args = args
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        return _execute(pl, input, weight, bias)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        mask = (ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                ctx.needs_input_grad[2] and ctx.bias_sizes is not None)
        gi, gw, gb = _ConvBackwardFunction.apply(grad_output, input, weight, ctx.bias_sizes,
                                                 ctx.args, mask)
        return gi, gw, gb, None, None


class _ConvBackwardFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad_output, input, weight, bias_sizes, args, mask):
        stride, padding, dilation, transposed, output_padding, groups, backend, env = args
        ctx.save_for_backward(grad_output, input, weight)
        ctx.args = args
        gi, gw, gb = convolution_backward(grad_output, input, weight, bias_sizes, stride, padding,
                                          dilation, transposed, output_padding, groups, mask,
                                          backend=backend, env=env)
        return gi, gw, gb

    @staticmethod
    def backward(ctx, ggI, ggW, ggb):
        grad_output, input, weight = ctx.saved_tensors
        stride, padding, dilation, transposed, output_padding, groups, _backend, env = ctx.args
        ggO, gI, gW = convolution_double_backward(ggI, ggW, ggb, grad_output, weight, input,
                                                  stride, padding, dilation, transposed,
                                                  output_padding, groups, env=env)
        return ggO, gI, gW, None, None, None
