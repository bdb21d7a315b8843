"""Symbolic tracing of a model's forward: ``symconv.trace(model, *specs)`` -> ``Trace``.

See docs/tracing.md. Modules: ``tensor`` (symbolic sizes and tensor), ``ops`` (op rules),
``engine`` (path exploration), ``result`` (Trace), ``helpers`` (branch-free model helpers).
"""

from .result import Explanation, Trace, trace
from .tensor import TraceError, UnsupportedOp

__all__ = ["trace", "Trace", "Explanation", "TraceError", "UnsupportedOp"]
