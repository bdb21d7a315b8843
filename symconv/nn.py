"""Drop-in convolution modules that check each call with symconv before torch runs it.

``symconv.nn.Conv1d/2d/3d`` and ``ConvTranspose1d/2d/3d`` are subclasses of torch's modules
(same constructor, parameters, ``state_dict`` and results). Before the convolution runs, the
call it makes (``F.conv*`` after ``F.pad`` for non-zero padding modes, ``F.conv_transpose*``
after ``_output_padding``) is checked by :func:`symconv.lowering.plan`: an invalid input raises
symconv's :class:`~symconv.ConvError`, whose message is torch's, before any kernel runs.

Under ``torch.compile`` the check is a ``torch._dynamo.nonstrict_trace`` function: dynamo does
not trace into symconv (no graph break); it runs at trace time on the fake tensors (a symbolic
size is read through its example value, without adding a guard) and, with the ``eager``
backend, again at run time on the real tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn as _nn

from . import lowering as _lowering

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
           "check_call"]


def check_call(input, weight, bias, stride, padding, dilation, transposed, output_padding,
               groups):
    """Check a convolution call with symconv (raise torch's error as ConvError); returns the
    :class:`~symconv.lowering.Plan` of what would run."""
    return _lowering.plan(input, weight, bias, stride, padding, dilation, transposed,
                          output_padding, groups)


class _NoHint(Exception):
    pass


def _hint(v):
    if isinstance(v, int):
        return v
    node = getattr(v, "node", None)
    h = getattr(node, "hint", None) if node is not None else None
    if h is None:
        raise _NoHint()
    return int(h)


def _has_symbols(*ts) -> bool:
    for t in ts:
        if t is None:
            continue
        sizes = tuple(t.shape) + (tuple(t.stride()) if t.layout == torch.strided else ())
        if any(not isinstance(v, int) for v in sizes):
            return True
    return False


def _traced_check_impl(input, weight, bias, stride, padding, dilation, transposed,
                       output_padding, groups):
    if _has_symbols(input, weight, bias):
        try:
            props = [_lowering.TensorProps.of(t, _hint) for t in (input, weight, bias)]
        except _NoHint:  # a size without an example value: torch's own checks apply
            return input.new_zeros(())
        check_call(*props, stride, padding, dilation, transposed, output_padding, groups)
    else:
        check_call(input, weight, bias, stride, padding, dilation, transposed, output_padding,
                   groups)
    return input.new_zeros(())


_nonstrict_trace: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None
try:  # torch >= 2.7
    from torch._dynamo import nonstrict_trace as _nonstrict_trace
except Exception:  # noqa: BLE001  # pragma: no cover - older torch: no check under torch.compile
    _nonstrict_trace = None
_traced_check = _nonstrict_trace(_traced_check_impl) if _nonstrict_trace is not None else None


def _check(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    if torch.compiler.is_compiling():
        if _traced_check is not None:
            _traced_check(input, weight, bias, tuple(stride) if not isinstance(stride, str)
                          else stride, padding if isinstance(padding, str) else tuple(padding),
                          tuple(dilation), transposed, tuple(output_padding), groups)
        return
    check_call(input, weight, bias, stride, padding, dilation, transposed, output_padding,
               groups)


def _zeros(n: int) -> tuple:
    return (0,) * n


class _ConvMixin:
    _nd = 0
    _fn: Callable[..., torch.Tensor] | None = None  # the functional form, per subclass

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            _check(padded, weight, bias, self.stride, _zeros(self._nd), self.dilation, False,
                   _zeros(self._nd), self.groups)
            return type(self)._fn(padded, weight, bias, self.stride, _zeros(self._nd),
                                  self.dilation, self.groups)
        _check(input, weight, bias, self.stride, self.padding, self.dilation, False,
               _zeros(self._nd), self.groups)
        return type(self)._fn(input, weight, bias, self.stride, self.padding, self.dilation,
                              self.groups)


class _ConvTransposeMixin:
    _nd = 0

    def forward(self, input, output_size=None):
        if self.padding_mode == "zeros":
            output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                                  self.kernel_size, self._nd, self.dilation)
            _check(input, self.weight, self.bias, self.stride, self.padding, self.dilation, True,
                   output_padding, self.groups)
        return super().forward(input, output_size)


class Conv1d(_ConvMixin, _nn.Conv1d):
    """``torch.nn.Conv1d`` whose calls are checked by symconv first."""

    _nd = 1
    _fn = staticmethod(F.conv1d)


class Conv2d(_ConvMixin, _nn.Conv2d):
    """``torch.nn.Conv2d`` whose calls are checked by symconv first."""

    _nd = 2
    _fn = staticmethod(F.conv2d)


class Conv3d(_ConvMixin, _nn.Conv3d):
    """``torch.nn.Conv3d`` whose calls are checked by symconv first."""

    _nd = 3
    _fn = staticmethod(F.conv3d)


class ConvTranspose1d(_ConvTransposeMixin, _nn.ConvTranspose1d):
    """``torch.nn.ConvTranspose1d`` whose calls are checked by symconv first."""

    _nd = 1


class ConvTranspose2d(_ConvTransposeMixin, _nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` whose calls are checked by symconv first."""

    _nd = 2


class ConvTranspose3d(_ConvTransposeMixin, _nn.ConvTranspose3d):
    """``torch.nn.ConvTranspose3d`` whose calls are checked by symconv first."""

    _nd = 3
