"""The compiled warm path of :func:`symconv.convolution` (opt-in).

``symconv.convolution`` decides every call in Python: the checks, the backend, the kernel and its
arguments. A call seen before is answered from a plan cache, and in Python that lookup (reading
sizes, strides, dtypes, devices and the runtime flags through torch's bindings) costs about as
much as torch's whole C++ front-end. :func:`enable` compiles a small C++ extension
(``symconv/_fastpath.cpp``, with ``torch.utils.cpp_extension``: a C++ compiler and ninja are
needed, the first build takes about a minute and is cached) that keeps the plans of calls that run
one kernel directly and answers them without entering the interpreter. It decides nothing: a
plan is registered only by the Python path, after symconv chose it, under a key of everything the
choice read; any call it cannot key exactly (tensor subclasses or ``__torch_function__`` modes,
symbolic sizes, autograd, a float or bool where torch wants an int, a forced ``backend=``, an
``env=``) returns to the Python path.

    import symconv.native
    symconv.native.enable()        # builds on first use; raises NativeBuildError if it cannot
    symconv.convolution(x, w, ...) # as before, cheaper when warm
    symconv.native.disable()
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from types import ModuleType
from collections.abc import Callable

import torch

from . import lowering
from .backends import ConvBackend

__all__ = ["NativeBuildError", "build", "enable", "disable", "enabled", "plan_count"]

SOURCE = Path(__file__).with_name("_fastpath.cpp")
_module: ModuleType | None = None


class NativeBuildError(RuntimeError):
    """The compiled warm path could not be built or loaded (the message says why)."""


def _name() -> str:
    # one build per torch version and source text: a module built for another torch must not load
    tag = re.sub(r"[^0-9A-Za-z]+", "_", torch.__version__)
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:10]
    return f"symconv_fastpath_{tag}_{digest}"


def build(verbose: bool = False) -> ModuleType:
    """Compile (or load the cached build of) the extension and return it."""
    global _module
    if _module is not None:
        return _module
    try:
        from torch.utils.cpp_extension import load
        mod = load(name=_name(), sources=[str(SOURCE)], extra_cflags=["-O2"], verbose=verbose)
    except Exception as e:  # compiler, ninja or linker missing: one clear error
        last = (str(e).strip().splitlines() or [""])[-1]
        raise NativeBuildError(f"symconv.native: could not build {SOURCE.name}: "
                               f"{type(e).__name__}: {last}") from e
    _module = mod
    return mod


def _depthwise_flag() -> Callable[[], int] | None:
    """The cuDNN depthwise-kernel flag as an int (torch >= 2.13 has one), for the key."""
    get = lowering._get_depthwise_kernel
    if get is None:
        return None
    codes: dict = {}

    def read() -> int:
        v = get()
        return codes.setdefault(v, len(codes))
    return read


def enable(verbose: bool = False) -> None:
    """Answer warm :func:`symconv.convolution` calls from the compiled plan cache."""
    mod = build(verbose)
    mod.configure(lowering._PLAN_CACHE_SIZE, _depthwise_flag())
    mod.clear()
    lowering._set_native(mod.convolution, mod.register, mod.clear)


def disable() -> None:
    """Back to the Python warm path alone (the compiled plans are forgotten)."""
    if _module is not None:
        _module.clear()
    lowering._set_native(None, None, None)


def enabled() -> bool:
    return lowering._native_conv is not None


def plan_count() -> int:
    """How many plans the compiled cache holds (0 when it is not built)."""
    return 0 if _module is None else int(_module.size())


def backend_codes() -> dict[str, int]:
    """symconv's ConvBackend values, which the extension reads as ATen's own (checked by
    tests/test_native.py against ATen/native/ConvUtils.h)."""
    return {b.name: int(b) for b in ConvBackend}
