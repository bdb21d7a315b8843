"""Known model helper functions replaced, during a trace, by branch-free symbolic versions.

Some model code branches on the parity or remainder of a size at every stride-2 layer (paths
multiply) or converts sizes to Python ints (a pin). Where such a helper is known, the tracer
swaps it for a version written over symbolic sizes with ``z3.If`` (one path, exact) while the
forward runs. Each entry: module name, attribute, replacement factory. The replacement must
compute exactly what the original computes for every size (tests compare them on grids).
"""

from __future__ import annotations

import contextlib
import sys

import z3

from .. import domain as D

from .tensor import SymInt, wrap, zexpr

__all__ = ["HELPERS", "patches", "tf_same_padding"]


def _mod(a, m: int):
    return wrap(D.floormod_total(zexpr(a), m)) if isinstance(a, SymInt) else a % m


def _max0(x):
    return wrap(z3.If(zexpr(x) > 0, zexpr(x), 0)) if isinstance(x, SymInt) else max(x, 0)


def _ite(c, a, b):
    if isinstance(c, bool):
        return a if c else b
    return wrap(z3.If(zexpr(c), zexpr(a), zexpr(b)))


def tf_same_padding(size, kernel: int, stride: int):
    """TensorFlow 'SAME' padding along one axis: ``max(k - s, 0)`` when ``size % s == 0``,
    else ``max(k - size % s, 0)``; returns (before, after) as torch's helper splits it."""
    if stride == 1:  # size % 1 == 0 always: max(k - 1, 0)
        total = max(kernel - 1, 0)
        return total // 2, total - total // 2
    r = _mod(size, stride)
    total = _ite(wrap(zexpr(r) == 0) if isinstance(r, SymInt) else r == 0,
                 max(kernel - stride, 0), _max0(kernel - r))
    before = total // 2
    return before, total - before


def _mobilenet_v2_apply_tf_padding(original):
    import torch.nn.functional as F

    def apply_tf_padding(features, conv_layer):
        in_h, in_w = features.shape[-2], features.shape[-1]
        sh, sw = conv_layer.stride
        kh, kw = conv_layer.kernel_size
        dh, dw = conv_layer.dilation
        top, bottom = tf_same_padding(in_h, kh, sh)
        left, right = tf_same_padding(in_w, kw, sw)
        return F.pad(features, (left * dw, right * dw, top * dh, bottom * dh), "constant", 0.0)
    apply_tf_padding.__wrapped__ = original
    apply_tf_padding.export_note = (
        "the model's apply_tf_padding converts sizes with int(): torch.export specialises "
        "H and W there, so no dynamic_shapes make it export dynamically without the same "
        "branch-free rewrite symconv.tracing.helpers uses")
    return apply_tf_padding


# (module, attribute, factory(original) -> replacement)
HELPERS = [
    ("transformers.models.mobilenet_v2.modeling_mobilenet_v2", "apply_tf_padding",
     _mobilenet_v2_apply_tf_padding),
    ("transformers.models.mobilenet_v1.modeling_mobilenet_v1", "apply_tf_padding",
     _mobilenet_v2_apply_tf_padding),
]


def _recording(fn):
    """Record on the running path that this helper was used (for export notes)."""
    from .tensor import STATE

    def wrapper(*args, **kwargs):
        run = STATE.run
        if run is not None and getattr(fn, "export_note", None):
            run.notes.add(fn.export_note)
        return fn(*args, **kwargs)
    wrapper.__wrapped__ = fn
    return wrapper


@contextlib.contextmanager
def patches():
    """Swap every known helper of an already imported module for its symbolic version."""
    done = []
    try:
        for modname, attr, factory in HELPERS:
            mod = sys.modules.get(modname)
            if mod is None or not hasattr(mod, attr):
                continue
            orig = getattr(mod, attr)
            setattr(mod, attr, _recording(factory(orig)))
            done.append((mod, attr, orig))
        yield
    finally:
        for mod, attr, orig in reversed(done):
            setattr(mod, attr, orig)
