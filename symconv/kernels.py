"""Shape and type checks of the backend kernels that ``_convolution`` calls after selection.

``torch.convolution`` can still fail after the front-end checks pass: the chosen kernel checks
its own arguments (the slow transposed kernels' "Output size is too small", the empty path's
``view`` of a negative size, oneDNN's refusals, dtype mismatches, dtypes a kernel is not
compiled for) and allocates its outputs and buffers (sizes that wrapped around in int64). Each
backend's checks are written here, in the kernel's order, over the integer domains; the
transcriptions name the torch 2.13 source they follow (``ConvolutionMM2d.cpp``,
``ConvolutionMM3d.cpp``, ``NaiveDilatedConvolution.cpp`` + ``DilatedConvolutionUtils.h``,
``NaiveConvolutionTranspose{2,3}d.cpp``, ``mkldnn/Conv.cpp``, ``NNPACK.cpp``, the
``_convolution`` switch of ``Convolution.cpp``) and every message was confirmed on the installed
torch 2.13 CPU wheel (``tests/test_differential_convolution.py``, ``tests/test_kernels.py``).

Conventions:

* Sizes and parameters are domain integers; dtypes, layouts, devices are concrete (categorical).
* C++ ``int`` parameters (the slow transposed kernels' shape checks, ``div_rtn``'s quotient) are
  truncated with :func:`wrap32`, int64 arithmetic with :func:`symconv.domain.wrap64`; both wrap
  plain ints and leave symbolic values as unbounded integers (as ``wrap64`` does).
* :func:`kernel_checks` returns the output shape the kernel produces (after the 1-D ``view3d``);
  it differs from ``calc_output_size`` only where a kernel computes sizes differently (the
  dilated kernels' ``div_rtn`` truncation).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

import torch

from . import domain as D
from .backends import ConvBackend as B
from .errors import Checker, ConvValueError, fmt_int, fmt_sizes
from .rules import mkldnn_conv_use_channels_last, thnn_conv_use_channels_last
from .shapes import calc_output_size, conv_input_size, conv_output_size

if TYPE_CHECKING:  # pragma: no cover
    from .api import Prepared
    from .spec import TensorSpec

__all__ = ["kernel_checks", "wrap32", "div_rtn", "type_string", "scalar_type_name",
           "result_type", "SYMINT_MIN", "ALLOC_FAIL_BYTES"]

w64 = D.wrap64

SYMINT_MIN = -(2**62)  # c10::SymInt::check_range: i > -(2**62) - 1
ALLOC_FAIL_BYTES = 2**47  # x86-64 user address space: posix_memalign of this much always fails
STORAGE_MAX = D.INT64_MAX
MAX_SAFE_PAD_3D = 2**61  # ConvolutionMM3d.cpp: TORCH_CHECK_VALUE(pad <= 1LL << 61)

AUTOGRAD_COMPLEX = ("convolution does not support automatic differentiation for outputs with "
                    "complex dtype.")
DECONV_PRIMITIVE = ("could not create a primitive descriptor for the deconvolution forward "
                    "propagation primitive. Run workload with environment variable "
                    "ONEDNN_VERBOSE=all to get additional diagnostic information.")
CONV_PRIMITIVE = ("could not create a primitive descriptor for the convolution forward "
                  "propagation primitive. Run workload with environment variable "
                  "ONEDNN_VERBOSE=all to get additional diagnostic information.")
DESC_TAG = "could not construct a memory descriptor using a format tag"
DESC_STRIDES = "could not construct a memory descriptor using strides"

# --------------------------------------------------------------------------------------
# integer helpers


def wrap32(x):
    """C++ ``int`` (32-bit) wrap-around for plain ints; symbolic values are unbounded."""
    if type(x) is int:
        if -(2**31) <= x < 2**31:
            return x
        return ((x + 2**31) % 2**32) - 2**31
    return x


def _xor(a, b):
    return D.or_(D.and_(a, D.not_(b)), D.and_(D.not_(a), b))


def div_rtn(x, y):
    """``ATen/div_rtn.h``: floor division whose quotient and remainder are stored in ``int``."""
    q = wrap32(D.cdiv(x, y))
    r = wrap32(D.cmod(x, y))
    adjust = D.and_(D.ne(r, 0), _xor(D.lt(r, 0), D.lt(y, 0)))
    return q - D.ite(adjust, 1, 0)


def _u64(x):
    """``static_cast<uint64_t>`` of an int64."""
    return D.ite(D.lt(x, 0), x + 2**64, x)


def _u64_product(xs: Sequence[Any]):
    """``c10::safe_multiplies_u64``: (sticky overflow flag, product modulo 2**64)."""
    over: Any = False
    prod: Any = 1
    for x in xs:
        full = prod * _u64(x)
        big = D.ge(full, 2**64)
        over = D.or_(over, big)
        prod = full if D.is_symbolic(full) else D.floormod(full, 2**64)
    return over, prod


def _join(xs: Sequence[Any], sep: str = " x ") -> str:
    return sep.join(fmt_int(x) for x in xs)


# --------------------------------------------------------------------------------------
# dtype facts (categorical: concrete torch dtypes)

_SCALAR_NAMES = {
    torch.float32: "Float", torch.float64: "Double", torch.float16: "Half",
    torch.bfloat16: "BFloat16", torch.complex64: "ComplexFloat",
    torch.complex128: "ComplexDouble", torch.complex32: "ComplexHalf", torch.int64: "Long",
    torch.int32: "Int", torch.int16: "Short", torch.int8: "Char", torch.uint8: "Byte",
    torch.bool: "Bool",
}
# Tensor::toString(): the legacy THTensor names where they exist, else "<Backend><Scalar>Type".
_LEGACY = {"Float", "Double", "Half", "Long", "Int", "Short", "Char", "Byte"}


def scalar_type_name(dtype: torch.dtype) -> str:
    """``c10::toString(ScalarType)``: ``Float``, ``BFloat16``, ``ComplexFloat`` ..."""
    return _SCALAR_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def type_string(t: TensorSpec) -> str:
    """``Tensor::toString()`` as torch prints it in 'Input type (...)' messages."""
    name = scalar_type_name(t.dtype)
    if t.is_mkldnn:
        return f"MkldnnCPU{name}Type"
    if t.is_sparse:
        return f"Sparse{'CUDA' if t.is_cuda else 'CPU'}{name}Type"
    if name in _LEGACY and t.device in ("cpu", "cuda"):
        return f"torch.{'cuda.' if t.is_cuda else ''}{name}Tensor"
    backend = {"cpu": "CPU", "cuda": "CUDA", "mps": "MPS", "xpu": "XPU", "meta": "Meta"}.get(
        t.device, t.device.upper())
    return f"{backend}{name}Type"


@functools.cache
def result_type(dim: torch.dtype, zero_dim: torch.dtype | None = None,
                other_dim: torch.dtype | None = None) -> torch.dtype:
    """``at::result_type`` of a dimensioned tensor of dtype ``dim`` with a 0-dim tensor
    (``zero_dim``) or another dimensioned tensor (``other_dim``): the categorical promotion
    rules, asked of torch on empty tensors."""
    a = torch.empty((0,), dtype=dim)
    if other_dim is not None:
        return torch.result_type(a, torch.empty((0,), dtype=other_dim))
    if zero_dim is not None:
        return torch.result_type(a, torch.empty((), dtype=zero_dim))
    return dim


def _can_cast(frm: torch.dtype, to: torch.dtype) -> bool:
    return bool(torch.can_cast(frm, to))


# ATen dispatch macros: which dtypes a kernel is compiled for.
_FLOATING = {torch.float32, torch.float64}
_INTEGRAL = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}
ALL_TYPES_AND_BF16_HALF = _FLOATING | _INTEGRAL | {torch.bfloat16, torch.float16}
FLOATING_AND_LONG_BF16_HALF = _FLOATING | {torch.int64, torch.bfloat16, torch.float16}


def _dispatch(check: Checker, dtype: torch.dtype, supported: set, name: str) -> None:
    check(dtype in supported,
          lambda: f"\"{name}\" not implemented for '{scalar_type_name(dtype)}'",
          name=f"dispatch:{name}", error=NotImplementedError)


def _data_ptr(check: Checker, expected: torch.dtype, found: torch.dtype, what: str) -> None:
    """``TensorBase::data_ptr<scalar_t>()`` / accessors: the tensor must have the kernel's
    dtype (the input's)."""
    check(expected == found,
          lambda: f"expected scalar type {scalar_type_name(expected)} but found "
                  f"{scalar_type_name(found)}", name=f"scalar_type_{what}")


# --------------------------------------------------------------------------------------
# allocation: at::empty, Tensor::resize_, structured outputs, oneDNN memory descriptors


def _limit(check: Checker):
    """The int64 / address-space limit checks apply where they are decided: symbolic answers
    reason over unbounded integers (as :func:`symconv.domain.wrap64` does), so a symbolic size
    is taken to stay below the limits (docs/differences.md)."""
    def sub(cond, message, *, name, error=None):
        if D.truth(cond) is None:
            return
        kw = {} if error is None else {"error": error}
        check(cond, message, name=name, **kw)
    return sub


def _symint(check: Checker, sizes: Sequence[Any], where: str) -> None:
    """``c10::fromIntArrayRefSlow``: every size must be representable as a SymInt."""
    check = _limit(check)
    for s in sizes:
        check(D.ge(s, SYMINT_MIN),
              lambda s=s: f"IntArrayRef contains an int that cannot be represented as a "
                          f"SymInt: {fmt_int(s)}", name=f"{where}_symint")


def _nonneg(check: Checker, sizes: Sequence[Any], where: str) -> None:
    """``check_size_nonnegative``."""
    for s in sizes:
        check(D.ge(s, 0), lambda s=s: f"Trying to create tensor with negative dimension "
                                      f"{fmt_int(s)}: {fmt_sizes(sizes)}",
              name=f"{where}_negative")


def _numel(check: Checker, sizes: Sequence[Any], where: str) -> None:
    """``TensorImpl::safe_compute_numel``."""
    over, n = _u64_product(sizes)
    _limit(check)(D.and_(D.not_(over), D.le(n, D.INT64_MAX)),
          lambda: "numel: integer multiplication overflow", name=f"{where}_numel")


def _storage(check: Checker, sizes: Sequence[Any], itemsize: int, where: str) -> Any:
    """``computeStorageNbytesContiguous``: returns the byte count."""
    over, n = _u64_product(list(sizes) + [itemsize])
    _limit(check)(D.and_(D.not_(over), D.le(n, STORAGE_MAX)),
          lambda: f"Storage size calculation overflowed with sizes={fmt_sizes(sizes)}",
          name=f"{where}_storage")
    return n


def _alloc(check: Checker, nbytes: Any, where: str) -> None:
    """The CPU allocator: allocations beyond the x86-64 address space always fail. (Smaller
    allocations that exceed the machine's memory fail too; that depends on the machine and is
    not modelled, see docs/differences.md.)"""
    _limit(check)(D.lt(nbytes, ALLOC_FAIL_BYTES),
          lambda: "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                  f"allocate memory: you tried to allocate {fmt_int(nbytes)} bytes. Error code "
                  "12 (Cannot allocate memory)", name=f"{where}_alloc")


def _empty(check: Checker, sizes: Sequence[Any], itemsize: int, where: str) -> None:
    """``at::empty(IntArrayRef)``: SymInt conversion, then ``empty_cpu``."""
    _symint(check, sizes, where)
    _raw(check, sizes, itemsize, where)


def _raw(check: Checker, sizes: Sequence[Any], itemsize: int, where: str) -> None:
    """``at::detail::empty_cpu`` (structured kernels' ``set_output_raw_strided``)."""
    _nonneg(check, sizes, where)
    n = _storage(check, sizes, itemsize, where)
    _alloc(check, n, where)


def _resize(check: Checker, sizes: Sequence[Any], itemsize: int, where: str) -> None:
    """``Tensor::resize_(IntArrayRef)`` of an empty tensor (no size check on negatives)."""
    _symint(check, sizes, where)
    _numel(check, sizes, where)
    n = _storage(check, sizes, itemsize, where)
    _alloc(check, n, where)


def _onednn_tag_desc(check: Checker, sizes: Sequence[Any], itemsize: int, where: str,
                     sizes_nonneg: bool = False) -> None:
    """oneDNN ``memory::desc(dims, dt, tag)``: no negative dims, the byte size fits int64."""
    over, n = _u64_product(list(sizes) + [itemsize])
    fits = D.and_(D.not_(over), D.le(n, D.INT64_MAX))
    if D.truth(fits) is None:
        fits = True  # a symbolic size stays below the int64 limit (see _limit)
    nonneg = True if sizes_nonneg else D.and_(*[D.ge(s, 0) for s in sizes])
    check(D.and_(nonneg, fits), lambda: DESC_TAG, name=f"{where}_desc_tag")


def _guarded(check: Checker, guard: Any):
    """A checker that applies only where ``guard`` holds (decided guards skip entirely)."""
    t = D.truth(guard)
    if t is False:
        return None
    if t is True:
        return check

    def sub(cond, message, *, name, error=None):
        kw = {} if error is None else {"error": error}
        check(D.or_(D.not_(guard), cond), message, name=name, **kw)
    return sub


# --------------------------------------------------------------------------------------
# the kernels


def _itemsize(dtype: torch.dtype) -> int:
    return dtype.itemsize


class _Args:
    """The kernel's view of one call: sizes (per group where the backend is grouped),
    dtypes and parameters."""

    def __init__(self, p: Prepared, grouped: bool):
        ctx = p.ctx
        pr = ctx.params
        g = pr.groups
        self.ctx = ctx
        self.env = ctx.env
        self.inp_spec, self.w_spec, self.b_spec = ctx.input, ctx.weight, ctx.bias
        self.inp = list(ctx.input.shape)
        self.w = list(ctx.weight.shape)
        self.bias = list(ctx.bias.shape) if ctx.bias is not None else None
        if grouped:
            # subtensor(t, dim, groups, 0) narrows dim to size(dim) / groups (only when g != 1)
            self.inp[1] = D.ite(D.eq(g, 1), self.inp[1], D.cdiv(self.inp[1], g))
            self.w[0] = D.ite(D.eq(g, 1), self.w[0], D.cdiv(self.w[0], g))
            if self.bias is not None:
                self.bias[0] = D.ite(D.eq(g, 1), self.bias[0], D.cdiv(self.bias[0], g))
        self.dt = ctx.input.dtype
        self.wdt = ctx.weight.dtype
        self.bdt = ctx.bias.dtype if ctx.bias is not None else None
        self.itemsize = _itemsize(self.dt)
        self.stride, self.padding = list(pr.stride), list(pr.padding)
        self.dilation, self.output_padding = list(pr.dilation), list(pr.output_padding)
        self.groups = g
        self.transposed = pr.transposed


def _empty_path(p: Prepared, check: Checker):
    """``case ConvBackend::Empty`` of ``_convolution``."""
    ctx = p.ctx
    inp, w, bias = ctx.input, ctx.weight, ctx.bias
    # output = (C == 0) ? input.view(-1) * weight_view : input * weight_view[0]
    c_zero = D.eq(inp.size(1), 0)
    w_numel = w.numel()
    # Tensor::operator[](0) is select(0, 0) on the flattened weight
    check(D.or_(c_zero, D.ne(w_numel, 0)),
          lambda: f"select(): index 0 out of range for tensor of size {fmt_sizes([w_numel])} at "
                  "dimension 0", name="empty_weight_index", error=IndexError)
    check(D.or_(D.not_(c_zero), D.eq(w_numel, 1), D.eq(w_numel, 0), D.eq(inp.numel(), 1)),
          lambda: f"The size of tensor a ({inp.numel()}) must match the size of tensor b "
                  f"({w_numel}) at non-singleton dimension 0", name="empty_broadcast")
    # the product's dtype: both operands dimensioned (C == 0), or a 0-dim weight element
    dt_zero_c = result_type(inp.dtype, None, w.dtype)
    dt_pos_c = result_type(inp.dtype, w.dtype)
    if bias is not None:
        # (unreachable after the front-end checks: a bias of 0 elements needs a weight of 0)
        check(D.ne(bias.numel(), 0),
              lambda: f"select(): index 0 out of range for tensor of size {fmt_sizes(bias.shape)} "
                      "at dimension 0", name="empty_bias_index", error=IndexError)
        # output.add_(bias[0]): in place, so the promoted type must cast back to the output's
        for branch, out_dt in ((c_zero, dt_zero_c), (D.not_(c_zero), dt_pos_c)):
            rt = result_type(out_dt, bias.dtype)
            check(D.or_(D.not_(branch), _can_cast(rt, out_dt)),
                  lambda rt=rt, out_dt=out_dt: f"result type {scalar_type_name(rt)} can't be cast "
                                               f"to the desired output type "
                                               f"{scalar_type_name(out_dt)}",
                  name="empty_bias_cast")
    out = calc_output_size(inp, w, ctx.params)
    _view_infer(check, out, 0, "empty_view")
    for branch, out_dt in ((c_zero, dt_zero_c), (D.not_(c_zero), dt_pos_c)):
        _autograd_complex(check, p, out_dt, guard=branch)
    return out


def _view_infer(check: Checker, shape: Sequence[Any], numel: Any, where: str) -> None:
    """``Tensor::view(IntArrayRef)`` of a tensor with ``numel`` elements: SymInt conversion,
    then ``infer_size_impl``."""
    _symint(check, shape, where)
    seen_infer: Any = False
    newsize: Any = 1
    for i, s in enumerate(shape):
        is_m1 = D.eq(s, -1)
        check(D.not_(D.and_(is_m1, seen_infer)), lambda: "only one dimension can be inferred",
              name=f"{where}_infer_two")
        check(D.or_(is_m1, D.ge(s, 0)),
              lambda i=i, s=s: f"invalid shape dimension {fmt_int(s)} at index {i} of shape "
                               f"{fmt_sizes(shape)}", name=f"{where}_invalid_dim")
        newsize = w64(newsize * D.ite(is_m1, 1, s))
        seen_infer = D.or_(seen_infer, is_m1)
    fits = D.or_(D.eq(numel, newsize),
                 D.and_(seen_infer, D.gt(newsize, 0), D.eq(D.cmod(numel, D.max_(newsize, 1)), 0)))
    check(D.or_(D.not_(fits), D.not_(seen_infer), D.ne(newsize, 0)),
          lambda: f"cannot reshape tensor of 0 elements into shape {fmt_sizes(shape)} because "
                  "the unspecified dimension size -1 can be any value and is ambiguous",
          name=f"{where}_ambiguous")
    check(fits, lambda: f"shape '{fmt_sizes(shape)}' is invalid for input of size "
                        f"{fmt_int(numel)}", name=f"{where}_numel")


def _autograd_complex(check: Checker, p: Prepared, out_dtype: torch.dtype, guard: Any = True):
    """The autograd kernel of ``convolution``: complex outputs that require grad are refused
    after the forward ran (``throw_error_for_complex_autograd``)."""
    bad = bool(p.ctx.need_backward) and out_dtype.is_complex
    check(D.or_(D.not_(guard), not bad), lambda: AUTOGRAD_COMPLEX, name="autograd_complex")


def _same_type(a: TensorSpec, b: TensorSpec) -> bool:
    """``TensorOptions::type_equal``: same backend (device and layout) and dtype."""
    return a.dtype == b.dtype and a.device == b.device and a.layout == b.layout


def _check_same_type_as_parameters(check: Checker, a: _Args, mkldnn: bool) -> None:
    """``check_input_same_type_as_parameters`` (the MKLDNN overload when ``mkldnn``)."""
    inp, w, b = a.inp_spec, a.w_spec, a.b_spec
    if mkldnn:
        ok_w = _same_type(inp, w) or (inp.is_mkldnn and w.is_cpu and w.dtype == torch.float32)
        check(ok_w, lambda: f"Input type ({type_string(inp)}) and weight type ({type_string(w)}) "
                            "should be the same or input should be a MKLDNN tensor and weight is "
                            "a dense tensor", name="mkldnn_weight_type")
        if b is not None:
            ok_b = _same_type(inp, b) or (inp.is_mkldnn and b.is_cpu and
                                          b.dtype == torch.float32)
            check(ok_b, lambda: f"Input type ({type_string(inp)}) and bias type "
                                f"({type_string(b)}) should be the same or input should be a "
                                "MKLDNN tensor and bias is a dense tensor",
                  name="mkldnn_bias_type")
        return
    check(_same_type(inp, w), lambda: f"Input type ({type_string(inp)}) and weight type "
                                      f"({type_string(w)}) should be the same",
          name="weight_type")
    if b is not None:
        check(_same_type(inp, b), lambda: f"Input type ({type_string(inp)}) and bias type "
                                          f"({type_string(b)}) should be the same",
              name="bias_type")


def _mkldnn_low_precision(check: Checker, a: _Args, op: str) -> None:
    """``mkldnn_check_low_precision``."""
    if a.dt == torch.bfloat16:
        check(a.env.mkldnn_bf16_supported,
              lambda: f"{op}: bf16 path needs the cpu support avx_ne_convert or avx512bw, "
                      "avx512vl and avx512dq", name="mkldnn_bf16")
    elif a.dt == torch.float16:
        check(a.env.mkldnn_fp16_supported,
              lambda: f"{op}: fp16 path needs the cpu support avx_ne_convert or avx512_fp16",
              name="mkldnn_fp16")


class _Probe:
    """A checker that only notes whether every check passes for sure."""

    def __init__(self) -> None:
        self.ok = True

    def __call__(self, cond, message, *, name, error=None):
        if D.truth(cond) is not True:
            self.ok = False


class _Layout:
    """A channels-last decision computed at most once, and only when it matters: deciding it
    for symbolic strides is slow, and often both layouts' checks pass anyway."""

    def __init__(self, decide):
        self._decide = decide
        self._value = None

    @property
    def value(self):
        if self._value is None:
            self._value = self._decide()
        return self._value

    def run(self, check: Checker, on_cl, on_contiguous) -> None:
        """``on_cl(check)`` where channels-last, ``on_contiguous(check)`` elsewhere."""
        passes = []
        for fn in (on_cl, on_contiguous):
            probe = _Probe()
            fn(probe)
            passes.append(probe.ok)
        if all(passes):
            return
        for guard, fn in ((self.value, on_cl), (D.not_(self.value), on_contiguous)):
            c = _guarded(check, guard)
            if c is not None:
                fn(c)


def _mkldnn(p: Prepared, check: Checker):
    """``mkldnn_convolution`` (``mkldnn/Conv.cpp``)."""
    a = _Args(p, grouped=False)
    _check_same_type_as_parameters(check, a, mkldnn=True)
    _mkldnn_low_precision(check, a, "mkldnn_convolution")
    # its own check_shape_forward: only the dilation test is stricter than the front-end's
    check(D.not_(D.any_(D.le(d, 0) for d in a.dilation)),
          lambda: "non-positive dilation is not supported", name="mkldnn_dilation")
    out = conv_output_size(a.inp, a.w, a.padding, a.stride, a.dilation)
    lay = _Layout(lambda: mkldnn_conv_use_channels_last(a.inp_spec, a.w_spec))
    # (the front-end's kernel-size check makes every output size >= 1 here)
    _mkldnn_dst(check, out, a.itemsize, lay, "mkldnn", sizes_nonneg=True)
    check(D.all_(D.ne(k, 0) for k in a.w[2:]), lambda: CONV_PRIMITIVE, name="mkldnn_primitive")
    # ideep allocates a contiguous-layout destination after creating the primitive
    lay.run(check, lambda c: None,
            lambda c: _alloc(c, _u64_product(list(out) + [a.itemsize])[1], "mkldnn_dst"))
    return out


def _mkldnn_dst(check: Checker, out: Sequence[Any], itemsize: int, lay: _Layout, where: str,
                sizes_nonneg: bool = False) -> None:
    """The destination: ``output.resize_(sizes, channels_last)`` then a strided oneDNN view
    (channels-last), or a oneDNN-allocated tensor described by a format tag."""
    def on_cl(c):
        _resize(c, out, itemsize, f"{where}_output")
        if not sizes_nonneg:
            c(D.all_(D.ge(s, 0) for s in out), lambda: DESC_STRIDES,
              name=f"{where}_desc_strides")

    def on_contiguous(c):
        _onednn_tag_desc(c, out, itemsize, where, sizes_nonneg=sizes_nonneg)

    lay.run(check, on_cl, on_contiguous)


def _mkldnn_transpose(p: Prepared, check: Checker):
    """``mkldnn_convolution_transpose`` (``mkldnn/Conv.cpp``, ideep deconvolution)."""
    a = _Args(p, grouped=False)
    _check_same_type_as_parameters(check, a, mkldnn=True)
    _mkldnn_low_precision(check, a, "mkldnn_convolution_transpose")
    out = conv_input_size(a.inp, a.w, a.padding, a.output_padding, a.stride, a.dilation, a.groups)
    lay = _Layout(lambda: mkldnn_conv_use_channels_last(a.inp_spec, a.w_spec))
    _mkldnn_dst(check, out, a.itemsize, lay, "mkldnn_transpose")
    # ideep's get_compatible_dilates: any dilation <= 0 replaces all dilations by "none"
    # (torch's 1), as a 2-element list: a 3-D deconvolution then has invalid dimensions; a 2-D
    # one goes on with dilation 1 against the sizes torch computed with the real dilations.
    kernel = a.w[2:]
    dil_bad = D.any_(D.le(d, 0) for d in a.dilation)
    if len(a.dilation) == 3:
        check(D.not_(dil_bad), lambda: "dimensions are invalid", name="mkldnn_deconv_dilates")
    # oneDNN's deconvolution_desc_init: per spatial dimension, with oneDNN's dilation d' (torch's
    # minus one), ker_range = 1 + (k - 1) * (d' + 1), pad_r = padding - output_padding:
    # d' >= 0, pad_l >= 0, pad_r + stride > 0 and (dst - ker_range + pad_l + pad_r) / stride + 1
    # == src (C++ division). Zero output channels or a zero kernel size: no implementation.
    consistent = []
    for i, (k, d, s, pd, op) in enumerate(zip(kernel, a.dilation, a.stride, a.padding,
                                            a.output_padding)):
        d1 = D.ite(dil_bad, 0, d - 1)
        ker_range = 1 + (k - 1) * (d1 + 1)
        pad_r = pd - op
        consistent += [D.ge(d1, 0), D.ge(pd, 0), D.gt(pad_r + s, 0),
                       D.eq(D.cdiv(out[2 + i] - ker_range + pd + pad_r, s) + 1, a.inp[2 + i])]
    check(D.and_(D.ne(out[1], 0), *[D.ne(k, 0) for k in kernel], *consistent),
          lambda: DECONV_PRIMITIVE, name="mkldnn_deconv_primitive")
    lay.run(check, lambda c: None,
            lambda c: _alloc(c, _u64_product(list(out) + [a.itemsize])[1],
                             "mkldnn_transpose_dst"))
    return out


def _nnpack(a: _Args, check: Checker):
    """``_nnpack_spatial_convolution`` (``NNPACK.cpp``), per group."""
    out = conv_output_size(a.inp, a.w, a.padding, a.stride)
    _empty(check, out, a.itemsize, "nnpack_output")
    ok = a.dt == torch.float32 and a.wdt == torch.float32 and \
        (a.bdt is None or a.bdt == torch.float32)
    check(ok, lambda: "Mismatched Tensor types in NNPack convolutionOutput",
          name="nnpack_types")
    return out


def _slow2d(a: _Args, check: Checker):
    """``thnn_conv2d`` -> ``slow_conv2d_forward_out_cpu`` (``ConvolutionMM2d.cpp``), per group."""
    N, C, H, W = a.inp
    O, _, kh, kw = a.w
    sh, sw = a.stride
    ph, pw = a.padding
    check(D.and_(D.gt(kw, 0), D.gt(kh, 0)),
          lambda: f"kernel size should be greater than zero, but got kernel_height: "
                  f"{fmt_int(kh)} kernel_width: {fmt_int(kw)}", name="slow2d_kernel")
    w2d = [O, w64(w64(a.w[1] * kh) * kw)]
    check(D.gt(w64(w2d[0] * w2d[1]), 0),
          lambda: f"non-empty 2D or 4D weight tensor expected, but got: {fmt_sizes(w2d)}",
          name="slow2d_weight")
    eh, ew = w64(H + 2 * ph), w64(W + 2 * pw)
    check(D.and_(D.ge(eh, kh), D.ge(ew, kw)),
          lambda: f"Calculated padded input size per channel: ({fmt_int(eh)} x {fmt_int(ew)}). "
                  f"Kernel size: ({fmt_int(kh)} x {fmt_int(kw)}). Kernel size can't be greater "
                  "than actual input size", name="slow2d_kernel_size")
    oh_c = div_rtn(w64(eh - kh), sh) + 1
    ow_c = div_rtn(w64(ew - kw), sw) + 1
    check(D.and_(D.ge(ow_c, 1), D.ge(oh_c, 1)),
          lambda: f"Given input size per channel: ({fmt_int(H)} x {fmt_int(W)}). Calculated "
                  f"output size per channel: ({fmt_int(oh_c)} x {fmt_int(ow_c)}). Output size "
                  "is too small", name="slow2d_output_size")
    oh = w64(D.cdiv(w64(H + 2 * ph - kh), sh) + 1)
    ow = w64(D.cdiv(w64(W + 2 * pw - kw), sw) + 1)
    lay = _Layout(lambda: thnn_conv_use_channels_last(a.inp_spec, a.w_spec))
    special = D.and_(D.eq(kh, 1), D.eq(sh, 1), D.eq(ph, 0), D.eq(kw, 1), D.eq(sw, 1),
                     D.eq(pw, 0))
    general = _guarded(check, D.not_(special))
    if general is not None:
        rows_cf = w64(w64(C * kh) * kw)
        cols = w64(oh * ow)
        lay.run(general,
                lambda c: _empty(c, [N, cols, w64(w64(kh * kw) * C)], a.itemsize,
                                 "slow2d_columns"),
                lambda c: _empty(c, [N, rows_cf, cols], a.itemsize, "slow2d_columns"))
        _dispatch(general, a.dt, ALL_TYPES_AND_BF16_HALF, "slow_conv2d_cpu")
    out = [N, O, oh, ow]
    _resize(check, out, a.itemsize, "slow2d_output")
    _dispatch(check, a.dt, ALL_TYPES_AND_BF16_HALF, "slow_conv2d_cpu")
    _data_ptr(check, a.dt, a.wdt, "weight")
    return out


def _dilated(a: _Args, check: Checker, dim: int):
    """``slow_conv_dilated{2,3}d_cpu`` (``NaiveDilatedConvolution.cpp``), per group."""
    N = a.inp[0]
    kernel = a.w[2:]
    check(D.all_(D.gt(k, 0) for k in kernel),
          lambda: f"kernel size should be greater than zero, but got {fmt_sizes(kernel)}",
          name="dilated_kernel")
    check(D.all_(D.gt(d, 0) for d in a.dilation),
          lambda: f"dilation should be greater than zero, but got {fmt_sizes(a.dilation)}",
          name="dilated_dilation")
    osz = [div_rtn(w64(a.inp[2 + i] + 2 * a.padding[i]
                       - w64(a.dilation[i] * (kernel[i] - 1) + 1)), a.stride[i]) + 1
           for i in range(dim)]
    check(D.all_(D.ge(o, 0) for o in osz),
          lambda: f"calculated output size {_join(osz, ' ')} is too small (all sizes must be "
                  "non-negative)", name="dilated_output_size")
    out = [N, a.w[0]] + osz
    _empty(check, out, a.itemsize, "dilated_output")
    m = w64(D.prod(kernel))
    n = w64(D.prod(osz))
    lay = _Layout(lambda: thnn_conv_use_channels_last(a.inp_spec, a.w_spec) if dim == 2
                  else False)
    lay.run(check, lambda c: _resize(c, [n, w64(m * a.w[1])], a.itemsize, "dilated_columns"),
            lambda c: _resize(c, [w64(a.w[1] * m), n], a.itemsize, "dilated_columns"))
    _dispatch(check, a.dt, FLOATING_AND_LONG_BF16_HALF, "slow_conv_dilated<>")
    _data_ptr(check, a.dt, a.wdt, "weight")
    return out


def _transpose_out(in_size, k, s, p, op, d):
    """The transposed kernels' output size with C++ ``int`` parameters (shape checks)."""
    return w64(w64(w64((in_size - 1) * s) - wrap32(2 * p))
               + wrap32(wrap32(d * wrap32(k - 1)) + 1) + op)


def _transpose_out64(in_size, k, s, p, op, d):
    return w64((in_size - 1) * s - 2 * p + w64(d * (k - 1) + 1) + op)


def _slow_transpose2d(a: _Args, check: Checker):
    """``slow_conv_transpose2d`` (``NaiveConvolutionTranspose2d.cpp``: meta, then impl),
    per group."""
    N, _C, H, W = a.inp
    kh, kw = (wrap32(x) for x in a.w[2:])
    sh, sw = (wrap32(x) for x in a.stride)
    ph, pw = (wrap32(x) for x in a.padding)
    oph, opw = (wrap32(x) for x in a.output_padding)
    dh, dw = (wrap32(x) for x in a.dilation)
    check(D.and_(D.gt(kw, 0), D.gt(kh, 0)),
          lambda: f"kernel size should be greater than zero, but got kernel_height: "
                  f"{fmt_int(kh)} kernel_width: {fmt_int(kw)}", name="transpose2d_kernel")
    check(D.and_(D.gt(sw, 0), D.gt(sh, 0)),
          lambda: f"stride should be greater than zero, but got stride_height: {fmt_int(sh)} "
                  f"stride_width: {fmt_int(sw)}", name="transpose2d_stride")
    check(D.and_(D.gt(dw, 0), D.gt(dh, 0)),
          lambda: f"dilation should be greater than zero, but got dilation_height: "
                  f"{fmt_int(dh)}, dilation_width: {fmt_int(dw)}", name="transpose2d_dilation")
    check(D.and_(D.or_(D.lt(opw, sw), D.lt(opw, dw)), D.or_(D.lt(oph, sh), D.lt(oph, dh))),
          lambda: f"output padding must be smaller than either stride or dilation, but got "
                  f"output_padding_height: {fmt_int(oph)} output_padding_width: {fmt_int(opw)} "
                  f"stride_height: {fmt_int(sh)} stride_width: {fmt_int(sw)} dilation_height: "
                  f"{fmt_int(dh)} dilation_width: {fmt_int(dw)}", name="transpose2d_output_padding")
    check(D.ne(D.prod(a.w), 0),
          lambda: f"non-empty 2D or 4D weight tensor expected, but got: {fmt_sizes(a.w)}",
          name="transpose2d_weight")
    oh_c = _transpose_out(H, kh, sh, ph, oph, dh)
    ow_c = _transpose_out(W, kw, sw, pw, opw, dw)
    check(D.and_(D.ge(ow_c, 1), D.ge(oh_c, 1)),
          lambda: f"Given input size per channel: ({fmt_int(H)} x {fmt_int(W)}). Calculated "
                  f"output size per channel: ({fmt_int(oh_c)} x {fmt_int(ow_c)}). Output size "
                  "is too small", name="transpose2d_output_size")
    oh = _transpose_out64(H, a.w[2], a.stride[0], a.padding[0], a.output_padding[0],
                          a.dilation[0])
    ow = _transpose_out64(W, a.w[3], a.stride[1], a.padding[1], a.output_padding[1],
                          a.dilation[1])
    out = [N, a.w[1], oh, ow]
    _raw(check, out, a.itemsize, "transpose2d_output")
    lay = _Layout(lambda: thnn_conv_use_channels_last(a.inp_spec, a.w_spec))
    kk = w64(a.w[2] * a.w[3])
    hw = w64(H * W)
    lay.run(check,
            lambda c: _resize(c, [N, hw, w64(kk * a.w[1])], a.itemsize, "transpose2d_columns"),
            lambda c: _resize(c, [N, w64(a.w[1] * kk), hw], a.itemsize, "transpose2d_columns"))
    _dispatch(check, a.dt, FLOATING_AND_LONG_BF16_HALF, "slow_conv_transpose2d_out_cpu")
    _data_ptr(check, a.dt, a.wdt, "weight")
    if a.bdt is not None:
        rt = result_type(a.dt, None, a.bdt)
        check(_can_cast(rt, a.dt),
              lambda: f"result type {scalar_type_name(rt)} can't be cast to the desired output "
                      f"type {scalar_type_name(a.dt)}", name="transpose2d_bias_cast")
    return out


def _slow_transpose3d(a: _Args, check: Checker):
    """``slow_conv_transpose3d_out_cpu_template`` (``NaiveConvolutionTranspose3d.cpp``),
    per group."""
    N, _C, Dd, H, W = a.inp
    kd, kh, kw = (wrap32(x) for x in a.w[2:])
    sd, sh, sw = (wrap32(x) for x in a.stride)
    pd, ph, pw = (wrap32(x) for x in a.padding)
    opd, oph, opw = (wrap32(x) for x in a.output_padding)
    dd, dh, dw = (wrap32(x) for x in a.dilation)
    check(D.and_(D.gt(sd, 0), D.gt(sw, 0), D.gt(sh, 0)),
          lambda: f"stride should be greater than zero, but got stride_depth: {fmt_int(sd)} "
                  f"stride_height: {fmt_int(sh)} stride_width: {fmt_int(sw)}",
          name="transpose3d_stride")
    check(D.and_(D.gt(dd, 0), D.gt(dw, 0), D.gt(dh, 0)),
          lambda: f"dilation should be greater than zero, but got dilation_depth: {fmt_int(dd)}, "
                  f"dilation_height: {fmt_int(dh)}, dilation_width: {fmt_int(dw)}",
          name="transpose3d_dilation")
    check(D.and_(D.or_(D.lt(opd, sd), D.lt(opd, dd)), D.or_(D.lt(opw, sw), D.lt(opw, dw)),
                 D.or_(D.lt(oph, sh), D.lt(oph, dh))),
          lambda: f"output padding must be smaller than either stride or dilation, but got "
                  f"output_padding_depth: {fmt_int(opd)} output_padding_height: {fmt_int(oph)} "
                  f"output_padding_width: {fmt_int(opw)} stride_depth: {fmt_int(sd)} "
                  f"stride_height: {fmt_int(sh)} stride_width: {fmt_int(sw)} dilation_depth: "
                  f"{fmt_int(dd)} dilation_height: {fmt_int(dh)} dilation_width: {fmt_int(dw)}",
          name="transpose3d_output_padding")
    check(D.ne(D.prod(a.w), 0),
          lambda: "non-empty 5D (n_output_plane x n_input_plane x kernel_depth x kernel_height x "
                  f"kernel_width) tensor expected for weight, but got: {fmt_sizes(a.w)}",
          name="transpose3d_weight")
    check(D.and_(D.eq(a.w[2], kd), D.eq(a.w[3], kh), D.eq(a.w[4], kw)),
          lambda: f"kernel_size ({fmt_int(kd)}, {fmt_int(kh)}, {fmt_int(kw)}) must match weight "
                  f"spatial dimensions ({fmt_int(a.w[2])}, {fmt_int(a.w[3])}, "
                  f"{fmt_int(a.w[4])})", name="transpose3d_kernel_match")
    od_c = _transpose_out(Dd, kd, sd, pd, opd, dd)
    oh_c = _transpose_out(H, kh, sh, ph, oph, dh)
    ow_c = _transpose_out(W, kw, sw, pw, opw, dw)
    check(D.and_(D.ge(od_c, 1), D.ge(ow_c, 1), D.ge(oh_c, 1)),
          lambda: f"Given input size per channel: ({fmt_int(Dd)} x {fmt_int(H)} x {fmt_int(W)}). "
                  f"Calculated output size per channel: ({fmt_int(od_c)} x {fmt_int(oh_c)} x "
                  f"{fmt_int(ow_c)}). Output size is too small", name="transpose3d_output_size")
    osz = [_transpose_out64(a.inp[2 + i], a.w[2 + i], a.stride[i], a.padding[i],
                            a.output_padding[i], a.dilation[i]) for i in range(3)]
    out = [N, a.w[1]] + osz
    _resize(check, out, a.itemsize, "transpose3d_output")
    kk = w64(w64(a.w[4] * a.w[3]) * a.w[2])
    _empty(check, [w64(a.w[1] * kk), w64(w64(Dd * H) * W)], a.itemsize, "transpose3d_columns")
    if a.bdt is not None:
        _empty(check, osz, a.itemsize, "transpose3d_ones")
    _dispatch(check, a.dt, FLOATING_AND_LONG_BF16_HALF, "slow_conv_transpose3d_out_cpu")
    _data_ptr(check, a.dt, a.wdt, "weight")
    if a.bdt is not None:
        _data_ptr(check, a.dt, a.bdt, "bias")
    return out


def _slow3d(a: _Args, check: Checker):
    """``slow_conv3d_forward_out_cpu`` (``ConvolutionMM3d.cpp``); groups handled inside."""
    N, C, Dd, H, W = a.inp
    O, I, kd, kh, kw = a.w
    _sd, _sh, _sw = a.stride
    pd, ph, pw = a.padding
    groups = D.ite(D.gt(I, 0), D.cdiv(C, D.max_(I, 1)), 0)
    check(D.and_(D.gt(kw, 0), D.gt(kh, 0), D.gt(kd, 0)),
          lambda: f"kernel size should be greater than zero, but got: {fmt_int(kd)} x "
                  f"{fmt_int(kh)} x {fmt_int(kw)} (TxHxW)", name="slow3d_kernel")
    check(D.gt(D.prod(a.w), 0),
          lambda: f"non-empty 2D or 5D weight tensor expected, but got: {fmt_sizes(a.w)}",
          name="slow3d_weight")
    for nm, pv in (("height", ph), ("width", pw), ("depth", pd)):
        check(D.le(pv, MAX_SAFE_PAD_3D),
              lambda nm=nm, pv=pv: f"Padding {nm} too large: pad_{nm}={fmt_int(pv)}",
              name=f"slow3d_pad_{nm}", error=ConvValueError)
    e = [w64(Dd + 2 * pd), w64(H + 2 * ph), w64(W + 2 * pw)]
    k = [kd, kh, kw]
    check(D.all_(D.ge(x, y) for x, y in zip(e, k)),
          lambda: f"Calculated padded input size per channel: ({_join(e)}). Kernel size: "
                  f"({_join(k)}). Kernel size can't be greater than actual input size",
          name="slow3d_kernel_size")
    oc = [div_rtn(w64(x - y), s) + 1 for x, y, s in zip(e, k, a.stride)]
    check(D.all_(D.ge(o, 1) for o in oc),
          lambda: f"Given input size per channel: ({_join([Dd, H, W])}). Calculated output size "
                  f"per channel: ({_join(oc)}). Output size is too small",
          name="slow3d_output_size")
    o = [w64(D.cdiv(w64(x - y), s) + 1) for x, y, s in zip(e, k, a.stride)]
    special = D.and_(*[D.eq(x, 1) for x in k], *[D.eq(x, 0) for x in a.padding],
                     *[D.eq(x, 1) for x in a.stride], D.eq(groups, 1))
    general = _guarded(check, D.not_(special))
    if general is not None:
        _empty(general, [N, w64(w64(w64(C * kd) * kh) * kw), w64(w64(o[0] * o[1]) * o[2])],
               a.itemsize, "slow3d_columns")
        _dispatch(general, a.dt, ALL_TYPES_AND_BF16_HALF, "compute_columns3d")
    out = [N, O] + o
    _resize(check, out, a.itemsize, "slow3d_output")
    _dispatch(check, a.dt, ALL_TYPES_AND_BF16_HALF, "slow_conv3d_cpu")
    _data_ptr(check, a.dt, a.wdt, "weight")
    return out


_GROUPED = {
    B.NnpackSpatial: _nnpack,
    B.Slow2d: _slow2d,
    B.SlowDilated2d: lambda a, c: _dilated(a, c, 2),
    B.SlowDilated3d: lambda a, c: _dilated(a, c, 3),
    B.SlowTranspose2d: _slow_transpose2d,
    B.SlowTranspose3d: _slow_transpose3d,
}


def _grouped(backend: B, p: Prepared, check: Checker):
    """The backends without native groups: the kernel runs on each group's slices (all alike,
    so the first group's checks decide) and the outputs are concatenated along dim 1."""
    a = _Args(p, grouped=True)
    out = list(_GROUPED[backend](a, check))
    g = a.groups
    out[1] = D.ite(D.eq(g, 1), out[1], w64(out[1] * g))
    cat = _guarded(check, D.ne(g, 1))
    if cat is not None:  # at::cat(outputs, 1) allocates the whole output
        _alloc(cat, _storage(cat, out, a.itemsize, "cat_output"), "cat_output")
    return out


def kernel_checks(backend: Any, p: Prepared, check: Checker):
    """Raise (or record, for symbols) the errors the kernel for ``backend`` raises, in torch's
    order, and return the output shape it produces (``None``: ``calc_output_size``)."""
    if backend in (B.Empty, B.MkldnnEmpty):
        out = _empty_path(p, check)
        return _view3d(p, out)
    a = None
    if backend in _GROUPED:
        out = _grouped(backend, p, check)
    elif backend == B.Slow3d:
        a = _Args(p, grouped=False)
        out = _slow3d(a, check)
    elif backend == B.Mkldnn:
        out = _mkldnn(p, check)
    elif backend == B.MkldnnTranspose:
        out = _mkldnn_transpose(p, check)
    elif backend in (B.Cudnn, B.CudnnTranspose, B.Miopen, B.MiopenTranspose, B.Mps,
                     B.MpsTranspose):
        # check_input_same_type_as_parameters in the _convolution switch (seed and upstream);
        # the device kernels' own checks are not modelled (no device to confirm them on)
        _check_same_type_as_parameters(check, _Args(p, grouped=False), mkldnn=False)
        return None
    else:
        return None
    _autograd_complex(check, p, p.ctx.input.dtype)
    return _view3d(p, out)


def _view3d(p: Prepared, out: Sequence[Any]) -> list:
    out = list(out)
    if p.viewed_1d:
        out = out[:2] + out[3:]
    return out
