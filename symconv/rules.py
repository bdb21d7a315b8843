"""``_select_conv_backend`` as data: an ordered table of guarded rules.

Each :class:`Rule` names an outcome (a :class:`~symconv.backends.ConvBackend`, or an error that
torch raises) and the conditions that must all hold; the first rule whose conditions hold is
torch's choice. The table reads like the seed's nested ifs flattened: every rule's guard
implicitly includes "no earlier rule fired". Over ints the table is evaluated lazily; over
SymPy/Z3 it becomes exhaustive, mutually exclusive ``(condition, outcome)`` cases.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Callable, Sequence

from . import domain as D
from .backends import ConvBackend as B
from .env import Environment
from .errors import ConvError, fmt_sizes
from .params import ConvParams, cudnn_conv_suggest_memory_format, conv_suggest_memory_format_impl
from .spec import MF_CHANNELS_LAST, MF_CHANNELS_LAST_3D, MF_CONTIGUOUS, TensorSpec

__all__ = ["Ctx", "Cond", "Rule", "ErrorOutcome", "RULES", "evaluate", "cases",
           "determine_backend_memory_format", "first_failing"]


@dataclasses.dataclass(frozen=True)
class Ctx:
    """What a rule reads: the (viewed) tensors, parameters, environment and need_backward."""

    input: TensorSpec
    weight: TensorSpec
    bias: TensorSpec | None
    bias_sizes: tuple | None
    params: ConvParams
    env: Environment
    need_backward: bool

    @property
    def cpu_or_cuda(self) -> bool:
        return self.input.is_cpu or self.input.is_cuda


@dataclasses.dataclass(frozen=True)
class ErrorOutcome:
    """A rule whose outcome is an exception torch raises during selection."""

    name: str
    message: Callable[[Ctx], str]
    error: type = ConvError

    def exception(self, ctx: Ctx) -> ConvError:
        exc = self.error(self.message(ctx))
        exc.rule = self.name
        return exc

    def __str__(self) -> str:
        return f"error:{self.name}"


@dataclasses.dataclass(frozen=True)
class Cond:
    """One named condition of a rule; ``text`` says it in the user's terms."""

    text: str
    fn: Callable[[Ctx], Any]

    def __call__(self, ctx: Ctx):
        return self.fn(ctx)


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    outcome: Any  # ConvBackend | ErrorOutcome
    conds: tuple[Cond, ...]

    def guard(self, ctx: Ctx):
        """The conjunction of the rule's conditions, evaluated lazily on decided values."""
        acc = []
        for c in self.conds:
            v = c(ctx)
            t = D.truth(v)
            if t is False:
                return v if not isinstance(v, bool) else False
            if t is None:
                acc.append(v)
        return D.and_(*acc) if acc else True


def _c(text: str):
    def deco(fn):
        return Cond(text, fn)
    return deco


# ---- conditions (each reads the seed's predicate of the same name)
EMPTY = Cond("input has zero batch or zero channels",
             lambda c: D.or_(D.eq(c.input.size(0), 0), D.eq(c.input.size(1), 0)))
MKLDNN_INPUT = Cond("input is an MKLDNN tensor", lambda c: c.input.is_mkldnn)
ZERO_NUMEL = Cond("input has no elements", lambda c: D.eq(c.input.numel(), 0))
DEPTHWISE = Cond("is_depthwise: CUDA, not transposed, 4-D/5-D, groups == C_in > 1, "
                 "C_out % C_in == 0", lambda c: c.params.is_depthwise(c.input, c.weight))
USE_CUDNN_DW = Cond("use_cudnn_depthwise",
                    lambda c: c.params.use_cudnn_depthwise(c.input, c.weight, c.env))
USE_MIOPEN = Cond("use_miopen", lambda c: c.params.use_miopen(c.input, c.weight,
                                                               c.bias_sizes is not None, c.env))
USE_CUDNN = Cond("use_cudnn", lambda c: c.params.use_cudnn(c.input, c.weight, c.env))
USE_MKLDNN = Cond("use_mkldnn", lambda c: c.params.use_mkldnn(c.input, c.weight, c.env))
MKLDNN_READS_MISSING_DIMS = Cond(
    "use_mkldnn reads input.size(3) of an input with fewer than 4 dims",
    lambda c: c.params.use_mkldnn_reads_missing_dims(c.input, c.weight, c.env))
USE_XNNPACK = Cond("use_xnnpack", lambda c: c.params.use_xnnpack(c.input, c.weight,
                                                                  c.bias_sizes, c.env))
USE_WINOGRAD = Cond("use_cpu_depthwise3x3_winograd",
                    lambda c: c.params.use_cpu_depthwise3x3_winograd(c.input, c.weight, c.bias,
                                                                     c.env))
USE_NNPACK = Cond("use_nnpack", lambda c: c.params.use_nnpack(c.input, c.weight, c.env))
USE_MPS = Cond("use_mps", lambda c: c.params.use_mps(c.input, c.weight, c.env))
NO_BACKWARD = Cond("no backward is needed", lambda c: not c.need_backward)
TRANSPOSED = Cond("transposed", lambda c: c.params.transposed)
NOT_TRANSPOSED = Cond("not transposed", lambda c: not c.params.transposed)
DIM4 = Cond("input is 4-D (2-D convolution, or 1-D viewed as 2-D)", lambda c: c.input.ndim == 4)
DIM5 = Cond("input is 5-D (3-D convolution)", lambda c: c.input.ndim == 5)
CPU = Cond("input is on the CPU", lambda c: c.input.is_cpu)
CPU_OR_CUDA = Cond("input is on the CPU or CUDA", lambda c: c.cpu_or_cuda)
DILATED = Cond("dilated (some dilation != 1)", lambda c: c.params.is_dilated())
NOT_DILATED = Cond("not dilated", lambda c: D.not_(c.params.is_dilated()))
CUDA_OR_DILATED = Cond("input is on CUDA or dilated",
                       lambda c: D.or_(c.input.is_cuda, c.params.is_dilated()))

ZERO_NUMEL_ERROR = ErrorOutcome(
    "zero_numel",
    lambda c: "Only zero batch or zero channel inputs are supported, but got input shape: "
              + fmt_sizes(c.input.shape))
UNSUPPORTED = ErrorOutcome("unsupported", lambda c: "unsupported ConvNd parameters")
MKLDNN_DIM_ERROR = ErrorOutcome(
    "mkldnn_size_index",
    lambda c: f"Dimension out of range (expected to be in range of [-{c.input.ndim}, "
              f"{c.input.ndim - 1}], but got 3)", IndexError)

RULES: tuple[Rule, ...] = (
    Rule("mkldnn_empty", B.MkldnnEmpty, (EMPTY, MKLDNN_INPUT)),
    Rule("empty", B.Empty, (EMPTY,)),
    Rule("zero_numel", ZERO_NUMEL_ERROR, (ZERO_NUMEL,)),
    Rule("cudnn_depthwise", B.Cudnn, (DEPTHWISE, USE_CUDNN_DW)),
    Rule("miopen_depthwise", B.MiopenDepthwise, (DEPTHWISE, USE_MIOPEN)),
    Rule("cuda_depthwise2d", B.CudaDepthwise2d, (DEPTHWISE, DIM4)),
    Rule("cuda_depthwise3d", B.CudaDepthwise3d, (DEPTHWISE, DIM5)),
    Rule("depthwise_unsupported", UNSUPPORTED, (DEPTHWISE,)),
    Rule("cudnn_transpose", B.CudnnTranspose, (USE_CUDNN, TRANSPOSED)),
    Rule("cudnn", B.Cudnn, (USE_CUDNN,)),
    Rule("miopen_transpose", B.MiopenTranspose, (USE_MIOPEN, TRANSPOSED)),
    Rule("miopen", B.Miopen, (USE_MIOPEN,)),
    Rule("mkldnn_size_index", MKLDNN_DIM_ERROR, (MKLDNN_READS_MISSING_DIMS,)),
    Rule("mkldnn_transpose", B.MkldnnTranspose, (USE_MKLDNN, TRANSPOSED)),
    Rule("mkldnn", B.Mkldnn, (USE_MKLDNN,)),
    Rule("xnnpack", B.Xnnpack2d, (NO_BACKWARD, USE_XNNPACK)),
    Rule("winograd", B.Winograd3x3Depthwise, (NO_BACKWARD, USE_WINOGRAD)),
    Rule("slow3d_cpu", B.Slow3d, (NOT_TRANSPOSED, DIM5, CPU, NOT_DILATED)),
    Rule("slow_transpose2d", B.SlowTranspose2d, (CPU_OR_CUDA, TRANSPOSED, DIM4)),
    Rule("slow_transpose3d", B.SlowTranspose3d, (CPU_OR_CUDA, TRANSPOSED, DIM5)),
    Rule("transposed_unsupported", UNSUPPORTED, (CPU_OR_CUDA, TRANSPOSED)),
    Rule("slow_dilated2d", B.SlowDilated2d, (CPU_OR_CUDA, DIM4, DILATED)),
    Rule("nnpack", B.NnpackSpatial, (CPU_OR_CUDA, DIM4, USE_NNPACK)),
    Rule("slow2d", B.Slow2d, (CPU_OR_CUDA, DIM4)),
    Rule("slow_dilated3d", B.SlowDilated3d, (CPU_OR_CUDA, DIM5, CUDA_OR_DILATED)),
    Rule("slow3d", B.Slow3d, (CPU_OR_CUDA, DIM5)),
    Rule("unsupported", UNSUPPORTED, (CPU_OR_CUDA,)),
    Rule("mps_transpose", B.MpsTranspose, (USE_MPS, TRANSPOSED)),
    Rule("mps", B.Mps, (USE_MPS,)),
    Rule("overrideable", B.Overrideable, ()),
)


def evaluate(ctx: Ctx, rules: Sequence[Rule] = RULES) -> tuple[Rule, Any]:
    """The first rule that fires for concrete arguments, and its outcome."""
    for rule in rules:
        g = rule.guard(ctx)
        t = D.truth(g)
        if t is None:
            raise TypeError("evaluate() needs concrete arguments; use cases() for symbols")
        if t:
            return rule, rule.outcome
    raise AssertionError("the rule table is not total")  # pragma: no cover - last rule is True


def cases(ctx: Ctx, rules: Sequence[Rule] = RULES) -> list[tuple[Any, Rule]]:
    """Exhaustive, mutually exclusive ``(condition, rule)`` pairs over the symbols."""
    out = []
    remaining: Any = True
    for rule in rules:
        g = rule.guard(ctx)
        cond = D.and_(remaining, g)
        if D.truth(cond) is not False:
            out.append((cond, rule))
        remaining = D.and_(remaining, D.not_(g))
        if D.truth(remaining) is False:
            break
    return out


def first_failing(ctx: Ctx, rule: Rule) -> Cond | None:
    """The first condition of ``rule`` that is false for concrete arguments (for explain)."""
    for c in rule.conds:
        if D.truth(c(ctx)) is False:
            return c
    return None


# --------------------------------------------------------------------------------------
# determine_backend_memory_format


def _use_channels_last_impl(input: TensorSpec, weight: TensorSpec, enabled: bool,
                            exact_match: bool):
    if not enabled or input.is_sparse:
        return False

    def is_cl(t):
        f = t.suggest_memory_format(exact_match)
        return D.or_(D.eq(f, MF_CHANNELS_LAST), D.eq(f, MF_CHANNELS_LAST_3D))
    return D.or_(is_cl(input), is_cl(weight))


def mkldnn_conv_use_channels_last(input: TensorSpec, weight: TensorSpec):
    import torch
    enabled = input.dtype != torch.float64 and weight.dtype != torch.float64 and \
        not input.is_mkldnn and not weight.is_mkldnn
    return _use_channels_last_impl(input, weight, enabled, False)


def thnn_conv_use_channels_last(input: TensorSpec, weight: TensorSpec):
    return D.and_(input.is_cpu, D.or_(D.eq(input.suggest_memory_format(), MF_CHANNELS_LAST),
                                      D.eq(weight.suggest_memory_format(), MF_CHANNELS_LAST)))


def determine_backend_memory_format(input: TensorSpec, weight: TensorSpec, backend: B,
                                    env: Environment):
    """The seed's ``determine_backend_memory_format`` as an ``MF_*`` code (domain integer)."""
    import torch
    if env.mobile:
        return MF_CONTIGUOUS
    k = weight.ndim
    cl_for_k = MF_CHANNELS_LAST_3D if k == 5 else MF_CHANNELS_LAST
    if backend in (B.Cudnn, B.CudnnTranspose):
        if env.compiled_with_cudnn:
            return cudnn_conv_suggest_memory_format(input, weight, env)
        return MF_CONTIGUOUS
    if backend in (B.Miopen, B.MiopenDepthwise, B.MiopenTranspose):
        if env.compiled_with_miopen:
            enabled = env.miopen_suggest_nhwc and input.dtype != torch.float64 and \
                weight.dtype != torch.float64
            return conv_suggest_memory_format_impl(input, weight, enabled)
        return MF_CONTIGUOUS
    if backend in (B.Mkldnn, B.MkldnnTranspose):
        return D.ite(mkldnn_conv_use_channels_last(input, weight), cl_for_k, MF_CONTIGUOUS)
    if backend in (B.Slow2d, B.SlowDilated2d, B.SlowTranspose2d):
        return D.ite(thnn_conv_use_channels_last(input, weight), MF_CHANNELS_LAST, MF_CONTIGUOUS)
    if backend == B.Overrideable:
        enabled = input.is_xpu and weight.is_xpu
        return D.ite(_use_channels_last_impl(input, weight, enabled, False), cl_for_k,
                     MF_CONTIGUOUS)
    return MF_CONTIGUOUS
