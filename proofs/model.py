"""Seed code the proofs need in symbolic form, written with symconv's own formulas.

Each function transcribes a few lines of the seed's ``Convolution.cpp`` (cited) whose only
arithmetic is symconv's: ``symconv.shapes`` for output sizes and the same-mode padding split,
``symconv.domain`` for C++ division, ``symconv.functional``'s unsqueeze. They are looked up
through their modules at call time, so that a mutation of symconv shows in every proof built on
these. (symconv.functional and symconv.lowering run the same seed code on concrete or fully
symbolic calls, which is far slower than these few formulas; convolution_same here keeps the
seed's branch for right < left, which same_padding_split_balanced proves unreachable.)
"""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence

from symconv import domain as D
from symconv import shapes as S
from symconv.backends import ConvBackend as B
from symconv.spec import TensorSpec

__all__ = ["convolution_same", "batchify", "double_backward_groups",
           "double_backward_output_padding", "backward_grad_shapes", "GROUPED_BACKENDS"]


def convolution_same(input_sizes: Sequence[Any], weight_sizes: Sequence[Any],
                     dilation: Sequence[Any]) -> tuple[list, list]:
    """``convolution_same`` (stride 1): the padded input's sizes and the symmetric padding.

    Per spatial dimension ``pooling_same_mode_padding_lr`` splits the padding into (left,
    right); where they differ the input is padded by ``right - left`` on the right (or, when the
    difference is negative, cropped by it on the left and ``right`` is used) before a symmetric
    convolution. Where every dimension is symmetric no copy is made; the formula is the same.
    """
    sizes = list(input_sizes[:2])
    padding = []
    for i in range(len(weight_sizes) - 2):
        left, right = S.pooling_same_mode_padding_lr(input_sizes[i + 2], weight_sizes[i + 2], 1,
                                                     dilation[i])
        delta = right - left
        sizes.append(input_sizes[i + 2] + delta)
        padding.append(D.ite(D.gt(delta, 0), left, right))
    return sizes, padding


def same_split(input_sizes, weight_sizes, stride, dilation) -> list[tuple[Any, Any]]:
    return [S.pooling_same_mode_padding_lr(input_sizes[i + 2], weight_sizes[i + 2], stride[i],
                                           dilation[i]) for i in range(len(weight_sizes) - 2)]


def batchify(t: TensorSpec) -> TensorSpec:
    """``input.unsqueeze(0)`` as ``F.conv*d`` batches an unbatched input: symconv's own
    ``symconv.functional._unsqueeze0`` (size 1, stride ``sizes[0] * strides[0]``, ATen's
    ``inferUnsqueezeGeometry``), looked up at call time."""
    import symconv.functional as F
    return F._unsqueeze0(t)


def double_backward_groups(input: TensorSpec, weight: TensorSpec, transposed: bool, groups):
    """``_convolution_double_backward``'s groups: inferred for non-transposed 3-D convolutions
    ("hacky way of inferring the groups number for grouped Conv3D")."""
    if not transposed and input.ndim > 4:
        return D.ite(D.gt(weight.size(1), 0), D.cdiv(input.size(1), weight.size(1)), -1)
    return groups


def double_backward_output_padding(input_sizes, weight_sizes, grad_output_sizes, stride,
                                   padding, dilation, output_padding) -> list:
    """The non-transposed branch of ``_convolution_double_backward``: the output padding of the
    transposed convolution that computes gI, made so that it gives back the input's size."""
    out = []
    for i in range(len(weight_sizes) - 2):
        expected = (weight_sizes[i + 2] - 1) * dilation[i] - 2 * padding[i] + \
            (stride[i] * (grad_output_sizes[i + 2] - 1) + 1)
        out.append(D.ite(D.ne(expected, input_sizes[i + 2]), input_sizes[i + 2] - expected,
                         output_padding[i]))
    return out


# Backends whose backward runs per group (``subtensor`` + ``cat``) when groups != 1.
GROUPED_BACKENDS = (B.NnpackSpatial, B.Slow2d, B.SlowDilated2d, B.SlowDilated3d,
                    B.SlowTranspose2d, B.SlowTranspose3d)
NO_BACKWARD = (B.Winograd3x3Depthwise, B.Xnnpack2d)


def backward_grad_shapes(backend: B, input_sizes, weight_sizes, grad_output_sizes, groups,
                         bias_sizes) -> tuple[list, list, list] | None:
    """``convolution_backward``'s (grad_input, grad_weight, grad_bias) sizes for ``backend``
    (all three requested), on the (viewed) tensors; ``None`` where the seed raises
    ("Backward is not supported for ...").

    * Empty / MkldnnEmpty: ``zeros_like(input)``, ``zeros_like(weight)``,
      ``zeros(bias_sizes)``.
    * NnpackSpatial and the slow backends with ``groups != 1``: per group ``g`` the sub-tensors
      ``subtensor(t, dim, groups, g)`` (``t.size(dim) / groups`` of dim) are differentiated and
      the results concatenated: grad_input along dim 1, grad_weight and grad_bias along dim 0.
    * every other kernel: grad_input and grad_weight of the input's and weight's sizes, and
      grad_bias, where the kernel does not compute one, ``grad_output.sum(all but dim 1)``.
    """
    if backend in NO_BACKWARD:
        return None
    gi, gw = list(input_sizes), list(weight_sizes)
    if backend in (B.Empty, B.MkldnnEmpty):
        return gi, gw, list(bias_sizes)
    gb = [grad_output_sizes[1]]
    if backend in GROUPED_BACKENDS:
        one = D.eq(groups, 1)
        gi[1] = D.ite(one, gi[1], groups * D.cdiv(input_sizes[1], groups))
        gw[0] = D.ite(one, gw[0], groups * D.cdiv(weight_sizes[0], groups))
        gb = [D.ite(one, gb[0], groups * D.cdiv(grad_output_sizes[1], groups))]
    return gi, gw, gb


def view3d(sizes: Sequence[Any]) -> list:
    """``view3d``: drop the unit dimension ``view4d`` inserted at index 2."""
    return list(sizes[:2]) + list(sizes[3:])
