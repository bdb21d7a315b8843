"""Output-size formulas and shape checks, with torch's exact messages.

``conv_output_size`` / ``conv_input_size`` are ``ConvUtils.h``'s; ``check_shape_forward`` is the
seed's with torch 2.13's added checks (groups > 0, padding bound); ``pooling_same_mode_padding_lr``
is ``Pool.h``'s. All are written over :mod:`symconv.domain`.
"""

from __future__ import annotations

from typing import Any, Sequence

from . import domain as D
from .errors import Checker, ConvShapeError, fmt_bool, fmt_int, fmt_sizes
from .params import ConvParams
from .spec import TensorSpec
from .profiles import since

__all__ = ["conv_output_size", "conv_input_size", "conv_weight_size", "check_shape_forward",
           "check_shape_backward", "calc_output_size", "pooling_same_mode_padding_lr",
           "PADDING_MAX"]

PADDING_MAX = D.INT64_MAX // 2  # torch >= 2.5: 'expected padding to be at most ...'

w64 = D.wrap64


def conv_output_size(input_size: Sequence[Any], weight_size: Sequence[Any],
                     padding: Sequence[Any], stride: Sequence[Any],
                     dilation: Sequence[Any] | None = None) -> list:
    """``_conv_output_size``: ``(in + 2p - (d(k-1)+1)) / s + 1`` with C++ truncation."""
    out = [input_size[0], weight_size[0]]
    for d in range(2, len(input_size)):
        dil = dilation[d - 2] if dilation else 1
        kernel = w64(dil * (weight_size[d] - 1) + 1)
        out.append(w64(D.cdiv(w64(input_size[d] + 2 * padding[d - 2] - kernel), stride[d - 2]) + 1))
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


def calc_output_size(input: TensorSpec, weight: TensorSpec, params: ConvParams) -> list:
    """The seed's ``calc_output_size``: zero input channels force zero output channels."""
    if params.transposed:
        out = conv_input_size(input.shape, weight.shape, params.padding, params.output_padding,
                              params.stride, params.dilation, params.groups)
    else:
        out = conv_output_size(input.shape, weight.shape, params.padding, params.stride,
                               params.dilation)
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
    if version >= since("padding_bound_check"):
        for i, p in enumerate(padding):
            check(D.le(p, PADDING_MAX),
                  lambda i=i, p=p: f"Given padding={fmt_int(p)} at dimension {i} , expected "
                                   f"padding to be at most {PADDING_MAX}",
                  name="padding_too_big", error=ConvShapeError)

    check(weight_dim == k,
          lambda: f"Expected {weight_dim}-dimensional input for {weight_dim}-dimensional weight "
                  f"{fmt_sizes(ws)}, but got {k}-dimensional input of size {fmt_sizes(in_sizes)}"
                  " instead", name="weight_dim", error=ConvShapeError)
    check(D.ge(ws[0], groups),
          lambda: f"Given groups={fmt_int(groups)}, expected weight to be at least "
                  f"{fmt_int(groups)} at dimension 0, but got weight of size {fmt_sizes(ws)} "
                  "instead", name="groups_weight_at_least", error=ConvShapeError)
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
