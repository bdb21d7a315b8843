"""Output-size formulas and shape checks, with torch's exact messages.

``conv_output_size`` / ``conv_input_size`` are ``ConvUtils.h``'s; ``check_shape_forward`` is the
seed's with torch 2.13's added checks (groups > 0, padding bound; under the seed's profile,
groups == 0 is refused where the seed divides by it); ``pooling_same_mode_padding_lr`` is
``Pool.h``'s. All are written over :mod:`symconv.domain`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import domain as D
from .errors import Checker, ConvShapeError, fmt_bool, fmt_int, fmt_sizes
from .params import ConvParams
from .spec import TensorSpec
from .profiles import since

__all__ = ["conv_output_size", "conv_input_size", "conv_weight_size", "check_shape_forward",
           "check_shape_backward", "params_output_size", "calc_output_size",
           "pooling_same_mode_padding_lr",
           "PADDING_MAX", "pooling_output_shape", "pooling_output_shape_pad_lr",
           "pool2d_shape_check", "pool3d_shape_check", "SEED_GROUPS_ZERO",
           "SEED_GROUPS_ZERO_MESSAGE"]

PADDING_MAX = D.INT64_MAX // 2  # torch >= 2.5: 'expected padding to be at most ...'

# The check the seed profile has instead of a groups check: groups == 0 reaches
# ``weight.size(0) % groups`` (see check_shape_forward).
SEED_GROUPS_ZERO = "groups_zero_division"
SEED_GROUPS_ZERO_MESSAGE = (
    "non-positive groups is not supported\n"
    "(groups=0: torch 2.4's _select_conv_backend has no groups check and divides "
    "weight.size(0) by zero, which kills the process; torch.convolution and the F.conv* "
    "functions refuse groups <= 0 with the line above first)")

w64 = D.wrap64


def conv_output_size(input_size: Sequence[Any], weight_size: Sequence[Any],
                     padding: Sequence[Any], stride: Sequence[Any],
                     dilation: Sequence[Any] | None = None, div: Any = None) -> list:
    """``_conv_output_size``: ``(in + 2p - (d(k-1)+1)) / s + 1`` with C++ truncation.

    ``div`` replaces the division (default :func:`symconv.domain.cdiv`); the tracer passes
    ``domain.floordiv_total``, equal wherever the kernel-size check passes (numerator >= 0),
    which keeps its symbolic sizes free of the sign case split."""
    div = D.cdiv if div is None else div
    out = [input_size[0], weight_size[0]]
    for d in range(2, len(input_size)):
        dil = dilation[d - 2] if dilation else 1
        kernel = w64(dil * (weight_size[d] - 1) + 1)
        out.append(w64(div(w64(input_size[d] + 2 * padding[d - 2] - kernel), stride[d - 2]) + 1))
    return out


def conv_input_size(output_size: Sequence[Any], weight_size: Sequence[Any],
                    padding: Sequence[Any], output_padding: Sequence[Any],
                    stride: Sequence[Any], dilation: Sequence[Any], groups: Any) -> list:
    """``_conv_input_size``: the transposed convolution's output size."""
    out = [output_size[0], w64(weight_size[1] * groups)]
    for d in range(2, len(output_size)):
        kernel = w64((weight_size[d] - 1) * dilation[d - 2] + 1)
        out.append(w64((output_size[d] - 1) * stride[d - 2] - padding[d - 2] * 2 + kernel
                       + output_padding[d - 2]))
    return out


def conv_weight_size(input_size, output_size, padding, output_padding, stride, dilation,
                     groups) -> list:
    """``_conv_weight_size``."""
    out = [output_size[1], D.cdiv(input_size[1], groups)]
    for d in range(2, len(input_size)):
        kernel = input_size[d] - (output_size[d] - 1) * stride[d - 2] + padding[d - 2] * 2 \
            - output_padding[d - 2]
        out.append(D.cdiv(kernel - 1, dilation[d - 2]) + 1)
    return out


def params_output_size(input: TensorSpec, weight: TensorSpec, params: ConvParams) -> list:
    """The output size by the parameters' formula: ``conv_input_size`` when transposed, else
    ``conv_output_size``."""
    if params.transposed:
        return conv_input_size(input.shape, weight.shape, params.padding, params.output_padding,
                               params.stride, params.dilation, params.groups)
    return conv_output_size(input.shape, weight.shape, params.padding, params.stride,
                            params.dilation)


def calc_output_size(input: TensorSpec, weight: TensorSpec, params: ConvParams) -> list:
    """The seed's ``calc_output_size``: zero input channels force zero output channels."""
    out = params_output_size(input, weight, params)
    out[1] = D.ite(D.eq(input.size(1), 0), 0, out[1])
    return out


def pooling_same_mode_padding_lr(input_size, kernel_size, stride, dilation):
    """``Pool.h``: left and right padding for ``padding='same'``."""
    total = dilation * (kernel_size - 1)
    wiggle = D.cmod(input_size, stride) - 1
    shrink = D.and_(D.gt(stride, 2), D.eq(D.cmod(total, 2), 1), D.gt(wiggle, 0))
    total = D.ite(shrink, total - 1, total)
    left = D.cdiv(total, 2)
    return left, total - left


def check_shape_forward(input: TensorSpec, weight_sizes: Sequence[Any], bias: TensorSpec | None,
                        params: ConvParams, check: Checker, *, version=(2, 13)) -> None:
    """The seed's ``check_shape_forward`` with torch 2.13's checks, in torch's order."""
    k = input.ndim
    weight_dim = len(weight_sizes)
    groups = params.groups
    padding, dilation = params.padding, params.dilation
    transposed = params.transposed
    ws = list(weight_sizes)
    in_sizes = list(input.shape)

    check(D.not_(params.is_padding_neg()), lambda: "negative padding is not supported",
          name="padding_neg", error=ConvShapeError)
    check(D.not_(params.is_output_padding_neg()),
          lambda: "negative output_padding is not supported", name="output_padding_neg",
          error=ConvShapeError)
    check(D.not_(params.is_stride_nonpos()), lambda: "non-positive stride is not supported",
          name="stride_nonpos", error=ConvShapeError)
    check(D.not_(params.is_dilation_neg()), lambda: "dilation should be greater than zero",
          name="dilation_neg", error=ConvShapeError)
    if version >= since("groups_positive_check"):  # version gates: symconv/profiles.py
        check(D.gt(groups, 0),
              lambda: f"expected groups to be greater than 0, but got groups={fmt_int(groups)}",
              name="groups_nonpos", error=ConvShapeError)

    def padding_bound():
        # torch checks it inside the non-transposed per-dim loop (after the channel and bias
        # checks) and first in the transposed branch (found by symconv diff, measured on 2.13)
        if version >= since("padding_bound_check"):
            for i, p in enumerate(padding):
                check(D.le(p, PADDING_MAX),
                      lambda i=i, p=p: f"Given padding={fmt_int(p)} at dimension {i} , "
                                       f"expected padding to be at most {PADDING_MAX}",
                      name="padding_too_big", error=ConvShapeError)

    check(weight_dim == k,
          lambda: f"Expected {weight_dim}-dimensional input for {weight_dim}-dimensional weight "
                  f"{fmt_sizes(ws)}, but got {k}-dimensional input of size {fmt_sizes(in_sizes)}"
                  " instead", name="weight_dim", error=ConvShapeError)
    check(D.ge(ws[0], groups),
          lambda: f"Given groups={fmt_int(groups)}, expected weight to be at least "
                  f"{fmt_int(groups)} at dimension 0, but got weight of size {fmt_sizes(ws)} "
                  "instead", name="groups_weight_at_least", error=ConvShapeError)
    if version < since("groups_positive_check"):
        # Without torch 2.10's groups check, the seed's check_shape_forward computes
        # weight.size(0) % groups right here: with groups == 0 an integer division by zero
        # (SIGFPE) in _select_conv_backend. _convolution, behind every convolution call, refuses
        # groups <= 0 with this message before its shape checks.
        check(D.ne(groups, 0), lambda: SEED_GROUPS_ZERO_MESSAGE, name=SEED_GROUPS_ZERO,
              error=ConvShapeError)
    check(D.eq(D.cmod(ws[0], groups), 0),
          lambda: f"Given groups={fmt_int(groups)}, expected weight to be divisible by "
                  f"{fmt_int(groups)} at dimension 0, but got weight of size "
                  f"[{fmt_sizes(ws)}] instead", name="groups_weight_divisible",
          error=ConvShapeError)

    def bias_sizes():
        return fmt_sizes(bias.shape) if bias is not None else "[]"

    if not transposed:
        channels = w64(ws[1] * groups)
        check(D.eq(input.size(1), channels),
              lambda: f"Given groups={fmt_int(groups)}, weight of size {fmt_sizes(ws)}, expected "
                      f"input{fmt_sizes(in_sizes)} to have {fmt_int(channels)} channels, but got "
                      f"{fmt_int(input.size(1))} channels instead", name="input_channels",
              error=ConvShapeError)
        if bias is not None:
            ok = D.eq(bias.size(0), ws[0]) if bias.ndim == 1 else False
            check(ok, lambda: f"Given weight of size {fmt_sizes(ws)}, expected bias to be "
                              f"1-dimensional with {fmt_int(ws[0])} elements, but got bias of "
                              f"size {bias_sizes()} instead", name="bias_shape",
                  error=ConvShapeError)
        padding_bound()
        input_shape = [w64(input.size(i) + 2 * padding[i - 2]) for i in range(2, k)]
        kernel_shape = [w64(dilation[i - 2] * (ws[i] - 1) + 1) for i in range(2, k)]
        fits = D.all_(D.ge(a, b) for a, b in zip(input_shape, kernel_shape))
        check(fits,
              lambda: "Calculated padded input size per channel: ("
                      + " x ".join(fmt_int(x) for x in input_shape) + "). Kernel size: ("
                      + " x ".join(fmt_int(x) for x in kernel_shape)
                      + "). Kernel size can't be greater than actual input size",
              name="kernel_size", error=ConvShapeError)
    else:
        padding_bound()
        check(D.eq(input.size(1), ws[0]),
              lambda: f"Given transposed={fmt_bool(transposed)}, weight of size {fmt_sizes(ws)}, "
                      f"expected input{fmt_sizes(in_sizes)} to have {fmt_int(ws[0])} channels, "
                      f"but got {fmt_int(input.size(1))} channels instead",
              name="input_channels", error=ConvShapeError)
        if bias is not None:
            out_ch = w64(ws[1] * groups)
            ok = D.eq(bias.size(0), out_ch) if bias.ndim == 1 else False
            check(ok, lambda: f"Given transposed={fmt_bool(transposed)}, weight of size "
                              f"{fmt_sizes(ws)}, expected bias to be 1-dimensional with "
                              f"{fmt_int(out_ch)} elements, but got bias of size {bias_sizes()} "
                              "instead", name="bias_shape", error=ConvShapeError)


def check_shape_backward(input: TensorSpec, weight_sizes: Sequence[Any], params: ConvParams,
                         check: Checker, *, version=(2, 13)) -> None:
    """``check_shape_backward``: the forward checks without a bias."""
    check_shape_forward(input, weight_sizes, None, params, check, version=version)


# --------------------------------------------------------------------------------------
# Pooling (ATen/native/Pool.h): output sizes and the shape checks, torch's messages.
# ``check(passes, message_fn, error=RuntimeError)`` records or raises, as the caller decides.


def pooling_output_shape_pad_lr(input_size, kernel_size, pad_l, pad_r, stride, dilation,
                                ceil_mode: bool):
    """``pooling_output_shape_pad_lr``: ``div_rtn`` (floor) of the padded extent by the stride,
    plus one; in ceil mode rounded up, then one less where the last window would start in the
    right padding."""
    out = D.floordiv(input_size + pad_l + pad_r - dilation * (kernel_size - 1) - 1
                     + ((stride - 1) if ceil_mode else 0), stride) + 1
    if ceil_mode:
        out = D.ite(D.ge((out - 1) * stride, input_size + pad_l), out - 1, out)
    return out


def pooling_output_shape(input_size, kernel_size, pad, stride, dilation, ceil_mode: bool, *,
                         check):
    """``pooling_output_shape`` with its three checks (stride, pad sign, pad bound)."""
    check(D.ne(stride, 0), lambda: "stride should not be zero")
    check(D.ge(pad, 0), lambda: f"pad must be non-negative, but got pad: {fmt_int(pad)}")
    check(D.le(pad, D.cdiv((kernel_size - 1) * dilation + 1, 2)),
          lambda: f"pad should be at most half of effective kernel size, but got pad="
                  f"{fmt_int(pad)}, kernel_size={fmt_int(kernel_size)} and dilation="
                  f"{fmt_int(dilation)}")
    return pooling_output_shape_pad_lr(input_size, kernel_size, pad, pad, stride, dilation,
                                       ceil_mode)


def pool2d_shape_check(sizes, kH, kW, dH, dW, padH, padW, dilationH, dilationW, n_input_plane,
                       input_height, input_width, output_height, output_width, *, check,
                       channels_last: bool = False):
    """``pool2d_shape_check`` (max and average pooling, 2-d, forward)."""
    ndim = len(sizes)
    check(D.and_(D.gt(kW, 0), D.gt(kH, 0)),
          lambda: f"kernel size should be greater than zero, but got kH: {fmt_int(kH)} kW: "
                  f"{fmt_int(kW)}")
    check(D.and_(D.gt(dW, 0), D.gt(dH, 0)),
          lambda: f"stride should be greater than zero, but got dH: {fmt_int(dH)} dW: "
                  f"{fmt_int(dW)}")
    check(D.and_(D.gt(dilationH, 0), D.gt(dilationW, 0)),
          lambda: f"dilation should be greater than zero, but got dilationH: "
                  f"{fmt_int(dilationH)} dilationW: {fmt_int(dilationW)}")
    valid_dims = D.and_(D.ne(sizes[1], 0), D.ne(sizes[2], 0))
    if channels_last:
        check(D.and_(ndim == 4, valid_dims, D.ne(sizes[3], 0)) if ndim == 4 else False,
              lambda: "Expected 4D (batch mode) tensor expected for input with channels_last "
                      "layout with optional 0 dim batch size for input, but got: "
                      + fmt_sizes(sizes))
    else:
        ok3 = D.and_(D.ne(sizes[0], 0), valid_dims) if ndim == 3 else False
        ok4 = D.and_(valid_dims, D.ne(sizes[3], 0)) if ndim == 4 else False
        check(D.or_(ok3, ok4),
              lambda: "Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for "
                      "input, but got:" + fmt_sizes(sizes))
    check(D.and_(D.ge(D.cdiv(kW, 2), padW), D.ge(D.cdiv(kH, 2), padH)),
          lambda: f"pad should be smaller than or equal to half of kernel size, but got padW = "
                  f"{fmt_int(padW)}, padH = {fmt_int(padH)}, kW = {fmt_int(kW)}, kH = "
                  f"{fmt_int(kH)}")
    check(D.and_(D.ge(output_width, 1), D.ge(output_height, 1)),
          lambda: f"Given input size: ({fmt_int(n_input_plane)}x{fmt_int(input_height)}x"
                  f"{fmt_int(input_width)}). Calculated output size: ({fmt_int(n_input_plane)}x"
                  f"{fmt_int(output_height)}x{fmt_int(output_width)}). Output size is too small")


def pool3d_shape_check(sizes, nslices, k, d, p, dil, in_thw, out_thw, fn_name: str, *,
                       check_input_size: bool = False, check):
    """``pool3d_shape_check`` (max and average pooling, 3-d, forward)."""
    kT, kH, kW = k
    dT, dH, dW = d
    pT, pH, pW = p
    dilT, dilH, dilW = dil
    it, ih, iw = in_thw
    ot, oh, ow = out_thw
    ndim = len(sizes)
    check(D.and_(D.gt(kT, 0), D.gt(kW, 0), D.gt(kH, 0)),
          lambda: f"kernel size should be greater than zero, but got kT: {kT} kH: {kH} kW: {kW}")
    check(D.and_(D.gt(dT, 0), D.gt(dW, 0), D.gt(dH, 0)),
          lambda: f"stride should be greater than zero, but got dT: {dT} dH: {dH} dW: {dW}")
    check(D.and_(D.gt(dilT, 0), D.gt(dilW, 0), D.gt(dilH, 0)),
          lambda: f"dilation should be greater than zero, but got dilationT: {dilT} dilationH: "
                  f"{dilH} dilationW: {dilW}")
    check(ndim in (4, 5),
          lambda: f"{fn_name}: Expected 4D or 5D tensor for input, but got: {fmt_sizes(sizes)}")
    for i in range(ndim):
        if ndim == 5 and i == 0:
            continue
        check(D.gt(sizes[i], 0),
              lambda i=i: f"{fn_name}: Expected input's non-batch dimensions to have positive "
                          f"length, but input has a shape of {fmt_sizes(sizes)} and non-batch "
                          f"dimension {fmt_int(sizes[i])} has length zero!")
    if check_input_size:
        check(D.and_(D.ge(it, kT), D.ge(ih, kH), D.ge(iw, kW)),
              lambda: f"input image (T: {fmt_int(it)} H: {fmt_int(ih)} W: {fmt_int(iw)}) smaller "
                      f"than kernel size (kT: {kT} kH: {kH} kW: {kW})")
    check(D.and_(D.ge(D.cdiv(kT, 2), pT), D.ge(D.cdiv(kW, 2), pW), D.ge(D.cdiv(kH, 2), pH)),
          lambda: f"pad should be smaller than or equal to half of kernel size, but got kT: {kT} "
                  f"kW: {kW} kH: {kH} padT: {pT} padW: {pW} padH: {pH}")
    check(D.and_(D.ge(ot, 1), D.ge(ow, 1), D.ge(oh, 1)),
          lambda: f"Given input size: ({fmt_int(nslices)}x{fmt_int(it)}x{fmt_int(ih)}x"
                  f"{fmt_int(iw)}). Calculated output size: ({fmt_int(nslices)}x{fmt_int(ot)}x"
                  f"{fmt_int(oh)}x{fmt_int(ow)}). Output size is too small")
