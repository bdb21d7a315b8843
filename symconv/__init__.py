"""symconv: PyTorch's convolution front-end, over int, SymPy and Z3.

Every shape check, output-size formula and backend predicate of
``aten/src/ATen/native/Convolution.cpp`` is written once over :mod:`symconv.domain` and answers
for plain ints (exactly what torch answers) and for symbolic sizes (conditions and formulas).
"""

from __future__ import annotations

from .api import (SymbolicSelection, SymbolicShape, convolution_output_shape,
                  determine_backend_memory_format_api as determine_backend_memory_format,
                  select_conv_backend)
from .backends import ConvBackend
from .env import PRESETS, Environment, preset
from .errors import ConvError, ConvShapeError
from .spec import TensorSpec
from .lowering import convolution, convolution_backward
from . import functional
from .modules import check_module_args, module_output

__version__ = "0.1.0"

__all__ = ["ConvBackend", "ConvError", "ConvShapeError", "Environment", "PRESETS", "preset",
           "TensorSpec", "select_conv_backend", "convolution_output_shape",
           "determine_backend_memory_format", "SymbolicSelection", "SymbolicShape", "__version__",
           "functional", "module_output", "check_module_args"]
__all__ += ["convolution", "convolution_backward", "nn"]


def __getattr__(name: str) -> object:
    # symconv.nn imports torch._dynamo (for torch.compile support): only when first used.
    if name == "nn":
        import importlib
        return importlib.import_module(".nn", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# The queries sit on top of the rules (nothing below imports them).
from .queries import explain, reach  # noqa: E402

__all__ += ["reach", "explain"]
from .tracing import Trace, trace  # noqa: E402
__all__ += ["trace", "Trace"]
from .queries.diff import diff  # noqa: E402,F401  (where two environments answer differently)


def _native_from_environment() -> None:
    """``SYMCONV_NATIVE=1``: enable the compiled warm path at import (symconv.native), so that
    a script runs with it unchanged. A build failure is a warning, not an import error: the
    Python warm path answers as before."""
    import os
    if os.environ.get("SYMCONV_NATIVE", "") not in ("1", "true", "yes"):
        return
    import warnings

    from . import native
    try:
        native.enable()
    except native.NativeBuildError as e:
        warnings.warn(f"SYMCONV_NATIVE is set but {e}; the Python warm path answers",
                      RuntimeWarning, stacklevel=2)


_native_from_environment()
