"""Shape and type checks of the backend kernels that ``_convolution`` calls after selection.

``torch.convolution`` can still fail after the front-end checks pass: the chosen kernel checks
its own arguments (the slow transposed kernels' "Output size is too small", the empty path's
``view`` of a negative size, oneDNN's refusals, dtype mismatches). Each backend's checks are
written here, in the kernel's order, over the integer domains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import domain as D
from .backends import ConvBackend as B
from .errors import Checker, ConvError, fmt_sizes
from .shapes import calc_output_size

if TYPE_CHECKING:  # pragma: no cover
    from .api import Prepared

__all__ = ["kernel_checks"]


def _empty_path(p: "Prepared", check: Checker) -> None:
    ctx = p.ctx
    inp, w, bias = ctx.input, ctx.weight, ctx.bias
    # output = (C == 0) ? input.view(-1) * weight_view : input * weight_view[0]
    c_zero = D.eq(inp.size(1), 0)
    w_numel = w.numel()
    check(D.or_(c_zero, D.ne(w_numel, 0)),
          lambda: "index 0 is out of bounds for dimension 0 with size 0", name="empty_weight_index",
          error=IndexError)
    check(D.or_(D.not_(c_zero), D.eq(w_numel, 1), D.eq(w_numel, 0), D.eq(inp.numel(), 1)),
          lambda: f"The size of tensor a ({inp.numel()}) must match the size of tensor b "
                  f"({w_numel}) at non-singleton dimension 0", name="empty_broadcast")
    if bias is not None:
        check(D.ne(bias.numel(), 0), lambda: "index 0 is out of bounds for dimension 0 with size 0",
              name="empty_bias_index", error=IndexError)
    out = calc_output_size(inp, w, ctx.params)
    for i, s in enumerate(out):
        check(D.ge(s, 0), lambda i=i, s=s: f"invalid shape dimension {s} at index {i} of shape "
                                           f"{fmt_sizes(out)}", name="empty_view_negative")


def kernel_checks(backend: Any, p: "Prepared", check: Checker) -> None:
    """Raise (or record, for symbols) the errors the kernel for ``backend`` raises."""
    if backend in (B.Empty, B.MkldnnEmpty):
        _empty_path(p, check)
