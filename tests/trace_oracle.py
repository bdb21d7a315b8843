"""The eager oracle of the tracing tests: a model's TRUE valid input domain, measured.

For each grid point the model (built from a ``module:function`` factory, see
``tests/trace_models.py``) runs an eager forward on real tensors of that point's shapes. The
answer per point is either the output shapes (the leaves of the output in order: tensors of
tuples, lists and dicts/ModelOutputs, ``None`` skipped) or the exception's type and the first
line of its message. Forwards run in a worker subprocess (``tests.oracle.ConvWorker`` with this
module's ``_serve``) so that a crashing kernel is reported as ``{"crash": exit code}`` instead
of killing pytest; points are sent in batches and a batch that crashed is replayed point by
point to find the one that crashed.
"""

from __future__ import annotations

import itertools
import json
import sys
from typing import Any
from collections.abc import Iterable, Sequence

from tests.oracle import ConvWorker, first_line

__all__ = ["EagerOracle", "grid_points", "concrete_shapes", "parse_input", "output_leaves",
           "shape_leaves", "symbols_of"]

BATCH = 64


def parse_input(text: str) -> tuple:
    """``"N,3,H,W"`` -> ``("N", 3, "H", "W")`` (the ``--input`` syntax)."""
    out = []
    for tok in text.split(","):
        tok = tok.strip()
        out.append(int(tok) if tok.lstrip("-").isdigit() else tok)
    return tuple(out)


def symbols_of(inputs: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for text in inputs:
        for d in parse_input(text):
            if isinstance(d, str) and d not in seen:
                seen.append(d)
    return seen


def concrete_shapes(inputs: Sequence[str], point: dict) -> list[list[int]]:
    return [[point[d] if isinstance(d, str) else d for d in parse_input(t)] for t in inputs]


def grid_points(grid: dict) -> list[dict]:
    """Every combination of the grid's values (a dict symbol -> values), in order."""
    names = list(grid)
    return [dict(zip(names, vals)) for vals in itertools.product(*(grid[n] for n in names))]


def output_leaves(out: Any) -> list:
    """The tensors of a model output, in order (tuples, lists, dicts, ModelOutput)."""
    import torch
    if out is None:
        return []
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):  # ModelOutput is an OrderedDict holding only its non-None fields
        return [x for v in out.values() for x in output_leaves(v)]
    if isinstance(out, (tuple, list)):
        return [x for v in out for x in output_leaves(v)]
    return []


def shape_leaves(out) -> list[list[int]]:
    """The shapes in ``Trace.output_shapes``'s answer, in order: a tuple of ints is one shape;
    dicts, tuples and lists of shapes are walked like ``output_leaves`` walks tensors."""
    if isinstance(out, tuple) and all(isinstance(v, int) for v in out):
        return [list(out)]
    if isinstance(out, dict):
        return [x for v in out.values() for x in shape_leaves(v)]
    if isinstance(out, (tuple, list)):
        return [x for v in out for x in shape_leaves(v)]
    return []


class EagerOracle:
    """Runs models eagerly in a crash-surviving worker; answers per grid point."""

    def __init__(self) -> None:
        self.worker = ConvWorker(serve="tests.trace_oracle")

    def start(self) -> EagerOracle:
        self.worker.start()
        return self

    def close(self) -> None:
        self.worker.close()

    def __enter__(self) -> EagerOracle:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _batch(self, factory: str, train: bool, shapes: list, backends: bool = False
               ) -> list[dict]:
        answer = self.worker.run({"factory": factory, "train": train, "points": shapes,
                                  "backends": backends})
        if "crash" not in answer:
            if "fatal" in answer:
                raise RuntimeError(f"eager oracle could not run {factory}: {answer['fatal']}")
            return answer["results"]
        if len(shapes) == 1:
            return [answer]
        return [r for s in shapes for r in self._batch(factory, train, [s], backends)]

    def run(self, factory: str, inputs: Sequence[str], points: Iterable[dict],
            train: bool = False, backends: bool = False) -> dict[tuple, dict]:
        """``{point values tuple (symbol order of inputs): answer}`` for every point; with
        ``backends`` the answer is ``{"result": answer, "backends": {layer: [name, ...]}}``."""
        names = symbols_of(inputs)
        points = list(points)
        out: dict[tuple, dict] = {}
        for i in range(0, len(points), BATCH):
            chunk = points[i:i + BATCH]
            shapes = [concrete_shapes(inputs, p) for p in chunk]
            for p, r in zip(chunk, self._batch(factory, train, shapes, backends)):
                out[tuple(p[n] for n in names)] = r
        return out


# ---- worker side ---------------------------------------------------------------------------------

_MODELS: dict = {}


def _model(factory: str, train: bool):
    key = (factory, train)
    if key not in _MODELS:
        import importlib
        mod, _, fn = factory.partition(":")
        _MODELS[key] = getattr(importlib.import_module(mod), fn)(train=train)
    return _MODELS[key]


def run_point(model, shapes: list[list[int]]) -> dict:
    import torch
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(*s, generator=gen) for s in shapes]
    try:
        with torch.no_grad():
            out = model(*xs)
    except Exception as e:  # noqa: BLE001 - torch's (or the model's) answer, whatever it is
        return {"error": type(e).__name__, "message": first_line(e)}
    return {"shapes": [list(t.shape) for t in output_leaves(out)]}


def conv_backends(model, shapes: list[list[int]]) -> dict:
    """Per convolution module call of one forward: the backend torch selects for its actual
    arguments (``torch._C._select_conv_backend``, 'same'/'valid' padding as F.conv does for
    odd kernels), keyed by qualified module name."""
    import torch
    from torch import nn

    from symconv.backends import ConvBackend
    out: dict = {}
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
             nn.ConvTranspose3d)

    def hook(name):
        def pre(mod, args):
            x = args[0]
            if x.dim() == mod.weight.dim() - 1:
                x = x.unsqueeze(0)
            n = mod.weight.dim() - 2
            pad = mod.padding
            if isinstance(pad, str):
                pad = [0] * n if pad == "valid" else [
                    mod.dilation[i] * (mod.kernel_size[i] - 1) // 2 for i in range(n)]
            transposed = isinstance(mod, nn.modules.conv._ConvTransposeNd)
            raw = torch._C._select_conv_backend(
                x, mod.weight, mod.bias, list(mod.stride), list(pad), list(mod.dilation),
                transposed, list(mod.output_padding) if transposed else [0] * n, mod.groups)
            out.setdefault(name, []).append(ConvBackend.from_torch(raw).name)
        return pre

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in model.named_modules()
               if isinstance(m, convs)]
    try:
        r = run_point(model, shapes)
    finally:
        for h in handles:
            h.remove()
    return {"result": r, "backends": out}


def _serve() -> None:  # pragma: no cover - runs in the worker
    import os
    import warnings
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.simplefilter("ignore")
    import torch
    torch.set_num_threads(1)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            model = _model(req["factory"], req.get("train", False))
        except Exception as e:  # noqa: BLE001
            answer: dict = {"fatal": f"{type(e).__name__}: {first_line(e)}"}
        else:
            run = conv_backends if req.get("backends") else run_point
            answer = {"results": [run(model, s) for s in req["points"]]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
