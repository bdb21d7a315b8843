"""``ConvParams<T>``: the seed's parameter struct and every predicate on it, once, over all domains.

Each method mirrors the C++ method of the same name; branches on sizes are written with
:mod:`symconv.domain` operations, so one definition answers for ints, SymPy, Z3 and numpy.
Version differences are read from the profile table (:mod:`symconv.profiles`): the version
gates below are derived from it, never written here.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Sequence

import torch

from . import domain as D
from .env import Environment
from .errors import ConvError, ConvValueError, fmt_sizes
from .profiles import since
from .spec import MF_CONTIGUOUS, TensorSpec

__all__ = ["ConvParams", "expand_param_if_needed", "cudnn_conv_suggest_memory_format",
           "check_cudnn_depthwise_workload", "check_cudnn_depthwise_workload_with_filter",
           "MIOPEN_DIM_MAX"]

MIOPEN_DIM_MAX = 5

# Version gates, derived from the profile table (symconv/profiles.py holds the data and the
# upstream references): the CUDA rules of torch >= 2.11 (confirmed by the H100 records in
# tests/data), the depthwise-kernel flag of torch >= 2.13, MIOpen's 64-bit indexing, and the
# removal of NNPACK / XNNPACK and the MPS conv3d 64-bit path on the newest main.
CUDA_RULES_NEW = since("cuda_rules", "2.11")
DEPTHWISE_KERNEL_FLAG = since("depthwise_kernel_flag", True)
MIOPEN_64BIT = since("miopen_64bit", True)
NNPACK_REMOVED = since("nnpack", False)
XNNPACK_REMOVED = since("xnnpack", False)
MPS_CONV3D_64BIT = since("mps_conv3d_64bit", True)


def can_use_32bit_index_math(t: TensorSpec, max_elem: int = D.INT_MAX):
    """``canUse32BitIndexMath``: fewer than ``max_elem`` elements and a last-element offset
    below it (``IndexingUtils.cpp``)."""
    shape, strides = tuple(t.shape), tuple(t.stride())  # stride() reads the memory format

    def compute():
        numel = D.prod(shape)
        offset = 0
        for size, stride in zip(shape, strides):
            offset = offset + (size - 1) * stride
        return D.or_(D.and_(D.eq(numel, 0), max_elem > 0),
                     D.and_(D.lt(numel, max_elem), D.ne(numel, 0), D.lt(offset, max_elem)))
    return D.memo_terms("can_use_32bit_index_math", (*shape, *strides, max_elem), compute)


def expand_param_if_needed(list_param: Sequence[Any], param_name: str, expected_dim: int) -> list:
    """``utils/ParamUtils.h``: a single value is broadcast, otherwise the length must match."""
    list_param = list(list_param)
    if len(list_param) == 1:
        if expected_dim < 0:
            raise ConvValueError("cannot create std::vector larger than max_size()")
        return [list_param[0]] * expected_dim
    if len(list_param) != expected_dim:
        raise ConvError(
            f"expected {param_name} to be a single integer value or a list of {expected_dim} "
            f"values to match the convolution dimensions, but got {param_name}="
            f"{fmt_sizes(list_param)}")
    return list_param


def cudnn_conv_suggest_memory_format(input: TensorSpec, weight: TensorSpec, env: Environment):
    """``ConvUtils.h``: channels-last when cuDNN is built and either tensor suggests it."""
    enabled = env.compiled_with_cudnn and input.dtype != torch.float64 and \
        weight.dtype != torch.float64
    return conv_suggest_memory_format_impl(input, weight, enabled)


def conv_suggest_memory_format_impl(input: TensorSpec, weight: TensorSpec, enabled: bool):
    from .spec import MF_CHANNELS_LAST, MF_CHANNELS_LAST_3D
    if not enabled:
        return MF_CONTIGUOUS
    imf = input.suggest_memory_format()
    wmf = weight.suggest_memory_format()
    if weight.ndim == 4:
        return D.ite(D.or_(D.eq(imf, MF_CHANNELS_LAST), D.eq(wmf, MF_CHANNELS_LAST)),
                     MF_CHANNELS_LAST, MF_CONTIGUOUS)
    if weight.ndim == 5:
        return D.ite(D.or_(D.eq(imf, MF_CHANNELS_LAST_3D), D.eq(wmf, MF_CHANNELS_LAST_3D)),
                     MF_CHANNELS_LAST_3D, MF_CONTIGUOUS)
    return MF_CONTIGUOUS


def check_cudnn_depthwise_workload(input: TensorSpec, stride):
    """The cuDNN >= 7600 fp16 depthwise workload table (seed ``check_cudnn_depthwise_workload``)."""
    w, ch, bs = input.size(3), input.size(1), input.size(0)
    ge, and_, or_ = D.ge, D.and_, D.or_
    s1 = and_(ge(w, 7), or_(
        ge(w, 112),
        and_(ge(ch, 1024), or_(ge(w, 56), ge(bs, 32))),
        D.ite(ge(bs, 128),
              or_(ge(ch, 512), and_(ge(ch, 64), ge(w, 14)), and_(ge(ch, 32), ge(w, 28))),
              D.ite(ge(bs, 64),
                    or_(and_(ge(ch, 256), ge(w, 14)), and_(ge(ch, 32), ge(w, 28))),
                    D.ite(ge(bs, 32),
                          or_(and_(ge(ch, 256), ge(w, 14)), and_(ge(ch, 128), ge(w, 28)),
                              and_(ge(ch, 32), ge(w, 56))),
                          D.ite(ge(bs, 16),
                                or_(and_(ge(ch, 1024), ge(w, 14)), and_(ge(ch, 256), ge(w, 28)),
                                    and_(ge(ch, 32), ge(w, 56))),
                                D.ite(ge(bs, 8),
                                      or_(and_(ge(ch, 512), ge(w, 28)),
                                          and_(ge(ch, 64), ge(w, 56))),
                                      False)))))))
    s2 = and_(ge(ch, 256), ge(w, 7), D.ite(
        ge(bs, 128), or_(ge(ch, 1024), and_(ge(ch, 512), ge(w, 14)), ge(w, 28)),
        D.ite(ge(bs, 64), or_(and_(ge(ch, 512), ge(w, 14)), ge(w, 28)),
              D.ite(ge(bs, 32), or_(and_(ge(ch, 1024), ge(w, 14)), ge(w, 28)),
                    D.ite(ge(bs, 16), or_(and_(ge(ch, 512), ge(w, 28)), ge(w, 56)),
                          D.ite(ge(bs, 8), or_(and_(ge(ch, 1024), ge(w, 28)), ge(w, 56)),
                                D.ite(ge(bs, 1), and_(ge(ch, 512), ge(w, 112)), False)))))))
    return D.ite(D.eq(stride, 1), s1, D.ite(D.eq(stride, 2), s2, False))


def check_cudnn_depthwise_workload_with_filter(input: TensorSpec, stride, weight: TensorSpec):
    """The cuDNN >= 8200 fp16 depthwise rule with the filter size (lost from the seed text;
    upstream's definition, see docs/differences.md)."""
    w, h, ch, bs = input.size(3), input.size(2), input.size(1), input.size(0)
    fw, fh = weight.size(3), weight.size(2)
    return D.memo_terms("check_cudnn_depthwise_workload_with_filter",
                        (w, h, ch, bs, fw, fh, stride),
                        lambda: _depthwise_workload_with_filter(w, h, ch, bs, fw, fh, stride))


def _depthwise_workload_with_filter(w, h, ch, bs, fw, fh, stride):
    eq, ge, le, and_, or_ = D.eq, D.ge, D.le, D.and_, D.or_
    f135 = or_(eq(fw, 1), eq(fw, 3), eq(fw, 5))
    f35 = or_(eq(fw, 3), eq(fw, 5))
    general = and_(eq(fw, fh), f135, ge(w, 7), D.ite(
        eq(stride, 1), True,
        D.ite(D.ne(stride, 2), False,
              D.ite(eq(bs, 1),
                    or_(and_(eq(fw, 1), le(w, 28)), f35),
                    or_(and_(eq(fw, 1), le(bs, 16), ge(ch, 128), le(w, 7)),
                        and_(f35, or_(ge(ch, 512), and_(ge(ch, 256), ge(w, 28)))))))))
    return or_(and_(eq(h, 1), eq(stride, 1)), general)


@dataclasses.dataclass
class ConvParams:
    """The seed's ``ConvParams<T>``; sizes and parameters may be of any integer domain."""

    stride: list
    padding: list
    dilation: list
    transposed: bool
    output_padding: list
    groups: Any
    benchmark: bool = False
    deterministic: bool = False
    cudnn_enabled: bool = True
    allow_tf32: bool = True

    @classmethod
    def from_env(cls, stride, padding, dilation, transposed, output_padding, groups,
                 env: Environment) -> ConvParams:
        return cls(list(stride), list(padding), list(dilation), bool(transposed),
                   list(output_padding), groups, benchmark=env.cudnn_benchmark,
                   deterministic=env.deterministic, cudnn_enabled=env.cudnn_enabled,
                   allow_tf32=env.cudnn_allow_tf32)

    # ---- parameter predicates
    def is_strided(self):
        return D.any_(D.ne(s, 1) for s in self.stride)

    def is_dilated(self):
        return D.any_(D.ne(d, 1) for d in self.dilation)

    def is_padded(self):
        return D.any_(D.ne(p, 0) for p in self.padding)

    def is_output_padding_neg(self):
        return D.any_(D.lt(p, 0) for p in self.output_padding)

    def is_output_padding_big(self):
        return D.any_(D.ge(op, s) for op, s in zip(self.output_padding, self.stride))

    def is_padding_neg(self):
        return D.any_(D.lt(p, 0) for p in self.padding)

    def is_dilation_neg(self):
        return D.any_(D.lt(d, 0) for d in self.dilation)

    def is_stride_nonpos(self):
        return D.any_(D.le(s, 0) for s in self.stride)

    def view1d_as_2d(self) -> ConvParams:
        """A copy with a leading unit spatial dimension (the seed mutates in place)."""
        if len(self.stride) != 1:
            return self
        return dataclasses.replace(
            self, stride=[1] + self.stride, padding=[0] + self.padding,
            dilation=[1] + self.dilation, output_padding=[0] + self.output_padding)

    # ---- backend predicates
    def use_cpu_depthwise3x3_winograd(self, input: TensorSpec, weight: TensorSpec,
                                      bias: TensorSpec | None, env: Environment):
        if not env.arm_neon:
            return False
        if input.ndim != 4 or weight.ndim != 4:
            return False
        return D.and_(
            D.eq(input.size(1), self.groups),
            D.eq(D.cmod(weight.size(0), input.size(1)), 0),
            D.eq(weight.size(1), 1), D.eq(weight.size(2), 3), D.eq(weight.size(3), 3),
            input.is_cpu, input.dtype == torch.float32, input.is_contiguous(),
            weight.is_cpu, weight.dtype == torch.float32, weight.is_contiguous(),
            True if bias is None else bias.is_contiguous(),
            D.not_(self.is_strided()), D.not_(self.is_dilated()), not self.transposed)

    def needs_64bit_indexing_no_split(self, input: TensorSpec, weight: TensorSpec):
        from .shapes import params_output_size
        numel_input = input.numel()
        n = input.size(0)
        per_sample = D.cdiv(numel_input, D.ite(D.eq(n, 0), 1, n))
        outsize = D.prod(params_output_size(input, weight, self)[1:])
        return D.and_(D.ne(numel_input, 0),
                      D.or_(D.gt(per_sample, D.INT_MAX), D.gt(outsize, D.INT_MAX)))

    def use_cudnn(self, input: TensorSpec, weight: TensorSpec, env: Environment):
        if env.version >= CUDA_RULES_NEW:
            return self._use_cudnn_new(input, weight, env)
        return self._use_cudnn_seed(input, weight, env)

    def _bf16_ok(self, input, weight, env):
        bf16 = input.dtype == torch.bfloat16 or weight.dtype == torch.bfloat16
        return not bf16 or (env.supports_bf16_cudnn_v8 and env.cudnn_v8_api_enabled)

    def _use_cudnn_seed(self, input, weight, env):
        if env.mobile:
            return False
        not_64 = D.not_(self.needs_64bit_indexing_no_split(input, weight))
        if not env.compiled_with_cudnn or not input.is_cuda or not self.cudnn_enabled:
            return D.and_(not_64, False)
        if not self._bf16_ok(input, weight, env):
            return False
        contiguous = D.eq(cudnn_conv_suggest_memory_format(input, weight, env), MF_CONTIGUOUS)
        dilated_ok = D.or_(D.not_(contiguous), D.not_(self.is_dilated()),
                           D.and_(not self.deterministic, env.supports_dilated_cudnn))
        return D.and_(not_64, dilated_ok, D.not_(self.is_output_padding_big()))

    def _use_cudnn_new(self, input, weight, env):
        """torch >= 2.11: cuDNN >= 9.3 takes 64-bit indexing; deterministic dilation allowed."""
        if env.mobile or not env.compiled_with_cudnn or not input.is_cuda or not self.cudnn_enabled:
            return False
        if env.cudnn_version >= 90300 and env.cudnn_v8_api_enabled:
            not_64 = True
        else:
            not_64 = D.not_(self.needs_64bit_indexing_no_split(input, weight))
        if not self._bf16_ok(input, weight, env):
            return D.and_(not_64, False)
        contiguous = D.eq(cudnn_conv_suggest_memory_format(input, weight, env), MF_CONTIGUOUS)
        dilated_ok = D.or_(D.not_(contiguous), D.not_(self.is_dilated()),
                           env.supports_dilated_cudnn)
        return D.and_(not_64, dilated_ok, D.not_(self.is_output_padding_big()))

    def is_depthwise(self, input: TensorSpec, weight: TensorSpec):
        if not input.is_cuda or self.transposed or input.ndim not in (4, 5):
            return False
        return D.and_(D.eq(input.size(1), self.groups), D.gt(self.groups, 1),
                      D.eq(D.cmod(weight.size(0), input.size(1)), 0))

    def use_cudnn_depthwise(self, input: TensorSpec, weight: TensorSpec, env: Environment):
        if env.version >= CUDA_RULES_NEW:
            return self._use_cudnn_depthwise_new(input, weight, env)
        return self._use_cudnn_depthwise_seed(input, weight, env)

    def _depthwise_fp16_cond(self, input, weight, env):
        if input.ndim != 4:
            return False
        return D.and_(
            self.use_cudnn(input, weight, env), input.dtype == torch.float16,
            weight.dtype == torch.float16, self.is_depthwise(input, weight),
            D.not_(self.is_dilated()),
            D.or_(D.eq(self.stride[0], self.stride[1]), D.eq(input.size(2), 1)),
            D.ge(input.size(1), 32))

    def _use_cudnn_depthwise_seed(self, input, weight, env):
        channels_last = D.ne(cudnn_conv_suggest_memory_format(input, weight, env), MF_CONTIGUOUS)
        first = D.and_(channels_last, self.use_cudnn(input, weight, env))
        if not env.supports_depthwise_cudnn:
            return first
        if env.cudnn_version >= 8200:
            cond = self._depthwise_fp16_cond(input, weight, env)
            filt = check_cudnn_depthwise_workload_with_filter(input, self.stride[1], weight) \
                if input.ndim == 4 else False
            # When the >= 8200 condition holds the filter rule decides; otherwise the older
            # table is consulted.
            return D.or_(first, D.and_(cond, filt),
                         D.and_(D.not_(cond), self._old_table(input, weight, env)))
        return D.or_(first, self._old_table(input, weight, env))

    def _old_table(self, input, weight, env):
        if input.ndim != 4 or env.cudnn_version < 7600:
            return False
        cond = D.and_(
            self.use_cudnn(input, weight, env), input.dtype == torch.float16,
            weight.dtype == torch.float16, self.is_depthwise(input, weight),
            D.eq(weight.size(2), weight.size(3)), D.ge(input.size(2), 7),
            D.not_(self.is_dilated()), D.eq(self.stride[0], self.stride[1]),
            D.or_(D.eq(weight.size(3), 3), D.eq(weight.size(3), 1)), D.ge(input.size(1), 32))
        return D.and_(cond, check_cudnn_depthwise_workload(input, self.stride[0]))

    def _use_cudnn_depthwise_new(self, input, weight, env):
        """torch >= 2.11 (upstream, confirmed on the H100 records): 64-bit inputs go to cuDNN
        >= 9.3, channels-last always takes cuDNN, the 7600 table is gone; torch >= 2.13 also
        reads ``torch.backends.cudnn.depthwise_kernel``."""
        if not self.cudnn_enabled or not env.compiled_with_cudnn or not input.is_cuda or \
                env.mobile:
            return False
        v = env.cudnn_version
        channels_last = D.ne(cudnn_conv_suggest_memory_format(input, weight, env), MF_CONTIGUOUS)
        large = D.not_(D.and_(can_use_32bit_index_math(input), can_use_32bit_index_math(weight)))
        if 91000 < v < 91500:
            large_answer = D.and_(D.not_(channels_last), v >= 90300 and env.cudnn_v8_api_enabled)
        else:
            large_answer = v >= 90300 and env.cudnn_v8_api_enabled
        if not env.supports_depthwise_cudnn:
            small_answer = channels_last
        else:
            cond = self._depthwise_fp16_cond(input, weight, env)
            filt = check_cudnn_depthwise_workload_with_filter(input, self.stride[1], weight) \
                if input.ndim == 4 else False
            if env.version >= DEPTHWISE_KERNEL_FLAG and env.cudnn_depthwise_kernel != "auto":
                filt = env.cudnn_depthwise_kernel == "cudnn"
            small_answer = D.or_(channels_last, D.and_(cond, filt))
        return D.ite(large, large_answer, small_answer)

    def use_miopen(self, input: TensorSpec, weight: TensorSpec, bias_defined: bool,
                   env: Environment):
        if env.mobile or not env.compiled_with_miopen or not input.is_cuda:
            return False
        if env.version >= MIOPEN_64BIT:
            not_64 = True
        else:
            not_64 = D.not_(self.needs_64bit_indexing_no_split(input, weight))
        return D.and_(
            not_64,
            input.dtype in (torch.float32, torch.float16, torch.bfloat16),
            env.compiled_with_miopen, input.is_cuda, input.ndim <= MIOPEN_DIM_MAX,
            D.not_(D.and_(D.gt(self.groups, 1), self.is_dilated())), self.cudnn_enabled)

    def use_mkldnn(self, input: TensorSpec, weight: TensorSpec, env: Environment):
        if not env.mkldnn_available or not env.mkldnn_enabled:
            return False
        if self.transposed:
            big = self.is_output_padding_big()
        else:
            big = False
        cpu = input.is_cpu
        low_precision = cpu and (
            (input.dtype == torch.bfloat16 and env.mkldnn_bf16_supported)
            or (input.dtype == torch.float16 and env.mkldnn_fp16_supported))
        if input.is_mkldnn:
            rest = True
        elif cpu and input.dtype == torch.float32:
            n = input.size(0)
            kw, kh = weight.size(-1), weight.size(-2)
            rest = D.and_(
                D.or_(self.is_strided(), self.is_dilated(), D.ge(n, 16), D.ne(kw, 1),
                      D.ne(kh, 1), env.num_threads > 1),
                D.or_(D.gt(self.groups, 1), D.and_(D.gt(kw, 3), D.gt(kh, 3)), D.gt(n, 1),
                      D.gt(D.prod(input.shape[:4]), 20480)))
        else:
            rest = False
        return D.and_(D.not_(big), D.or_(low_precision, rest))

    def use_mkldnn_reads_missing_dims(self, input: TensorSpec, weight: TensorSpec,
                                      env: Environment):
        """``use_mkldnn`` evaluates ``input.size(3)`` (the 20480 heuristic, reached when the
        earlier terms are false) of an input with fewer than 4 dimensions (a 2-D weight gives a
        2-D input): torch raises ``IndexError`` there."""
        if input.ndim >= 4 or not env.mkldnn_available or not env.mkldnn_enabled:
            return False
        if input.is_mkldnn or not input.is_cpu or input.dtype != torch.float32:
            return False
        n = input.size(0)
        kw, kh = weight.size(-1), weight.size(-2)
        return D.and_(
            D.not_(self.is_output_padding_big()) if self.transposed else True,
            D.or_(self.is_strided(), self.is_dilated(), D.ge(n, 16), D.ne(kw, 1), D.ne(kh, 1),
                  env.num_threads > 1),
            D.not_(D.or_(D.gt(self.groups, 1), D.and_(D.gt(kw, 3), D.gt(kh, 3)), D.gt(n, 1))))

    def use_nnpack(self, input: TensorSpec, weight: TensorSpec, env: Environment):
        if env.version >= NNPACK_REMOVED:  # the branch is gone from _select_conv_backend
            return False
        if not env.nnpack_available or not env.nnpack_enabled:
            return False
        if not (input.is_cpu and input.dtype == torch.float32 and not self.transposed
                and input.ndim == 4 and weight.ndim == 4):
            return False
        return D.and_(
            D.not_(self.is_dilated()),
            D.lt(weight.size(2), 17), D.lt(weight.size(3), 17),
            D.lt(self.padding[0], weight.size(2)), D.lt(self.padding[1], weight.size(3)),
            True if env.mobile else D.ge(input.size(0), 16))

    def use_xnnpack(self, input: TensorSpec, weight: TensorSpec, bias_sizes, env: Environment):
        """``xnnpack::use_convolution2d`` (mobile builds only; from upstream source)."""
        if not env.mobile or not env.xnnpack_available or self.transposed:
            return False
        if env.version >= XNNPACK_REMOVED:
            return False
        if weight.ndim != 4 or input.ndim != 4:
            return False
        if bias_sizes is None:
            bias_ok = True
        elif len(bias_sizes) != 1:
            bias_ok = False
        else:
            bias_ok = D.eq(weight.size(0), bias_sizes[0])
        return D.and_(
            D.eq(input.size(1), self.groups),
            D.gt(weight.size(2), 0), D.gt(weight.size(3), 0),
            weight.is_cpu, weight.dtype == torch.float32, bias_ok,
            D.ge(self.padding[0], 0), D.ge(self.padding[1], 0),
            D.gt(self.stride[0], 0), D.gt(self.stride[1], 0),
            D.gt(self.dilation[0], 0), D.gt(self.dilation[1], 0), D.gt(self.groups, 0),
            input.is_cpu, input.dtype == torch.float32, D.ge(input.size(0), 0),
            D.gt(input.size(1), 0), D.gt(input.size(2), 0), D.gt(input.size(3), 0),
            not input.requires_grad)

    def use_mps(self, input: TensorSpec, weight: TensorSpec, env: Environment):
        if not env.mps_available or not input.is_mps:
            return False
        if env.version >= MPS_CONV3D_64BIT and input.ndim == 5 and not self.transposed:
            return True  # conv3d forward has a 64-bit-indexed kernel
        return D.not_(self.needs_64bit_indexing_no_split(input, weight))
