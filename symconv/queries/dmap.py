"""Dispatch maps: the backend chosen over a 2-D slice of argument space.

Sizes on an axis become numpy ``int64`` arrays and the same rules run once over the whole grid
(:mod:`symconv.domain` is vectorised); a parameter on an axis (stride, padding, ..., groups)
is looped over, the other axis staying vectorised.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, cast

import numpy as np
import sympy
import torch

from .. import domain as D
from ..api import prepare
from ..backends import ConvBackend
from ..env import Environment
from ..errors import ConvError, ConvValueError
from ..rules import RULES, ErrorOutcome
from ..spec import MKLDNN_LAYOUT, TensorSpec, as_spec
from .reach import env_summary, resolve_env
from .witness import torch_flags

__all__ = ["Axis", "parse_axis", "dispatch_map", "DispatchMap", "MapCheck"]

MAX_CELLS = 4_000_000


@dataclasses.dataclass
class Axis:
    name: str
    values: np.ndarray

    def __post_init__(self):
        self.values = np.asarray(self.values, dtype=np.int64).reshape(-1)
        if self.values.size == 0:
            raise ValueError(f"axis {self.name} has no values")


_AXIS = re.compile(r"^\s*([A-Za-z_][A-Za-z_0-9]*)\s*=\s*(.+)$")


def parse_axis(text: str) -> Axis:
    """``H=1:512`` (inclusive), ``H=1:512:4`` (step) or ``H=1,2,4,8``."""
    m = _AXIS.match(text or "")
    if not m:
        raise ValueError(f"expected NAME=START:STOP[:STEP] or NAME=V1,V2,..., got {text!r}")
    name, spec = m.group(1), m.group(2).strip()
    bad = ValueError(f"bad values for axis {name}: {spec!r} (START:STOP with START <= STOP, "
                     "an optional positive STEP, or a comma list of integers)")
    try:
        if ":" in spec:
            parts = [int(p) for p in spec.split(":")]
            if len(parts) not in (2, 3):
                raise bad
            start, stop = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 1
            if step <= 0 or stop < start:
                raise bad
            ends = [start, stop]
            count = (stop - start) // step + 1
        else:
            ends = [int(p) for p in spec.split(",")]
            count = len(ends)
    except ValueError:
        raise bad from None
    # range and size are checked on Python ints, before numpy builds (or overflows on) them
    if any(abs(v) > D.INT64_MAX // 4 for v in ends):
        raise ValueError(f"axis {name}: values out of range (at most {D.INT64_MAX // 4} in "
                         "absolute value)")
    if count > 100_000:
        raise ValueError(f"axis {name} has {count} values; at most 100000")
    if ":" in spec:
        values = np.arange(start, stop + 1, step, dtype=np.int64)
    else:
        values = np.array(ends, dtype=np.int64)
    return Axis(name, values)


def _names(x: Any) -> set:
    if isinstance(x, sympy.Basic):
        return {s.name for s in x.free_symbols}
    if isinstance(x, str):
        return {x.strip()}
    return set()


def _subst(x: Any, values: dict) -> Any:
    if isinstance(x, str):
        x = sympy.Symbol(x.strip())
    if isinstance(x, sympy.Basic):
        if x.is_Symbol and x.name in values:
            return values[x.name]
        if x.free_symbols:
            subs = {s: values[s.name] for s in x.free_symbols if s.name in values
                    and not isinstance(values[s.name], np.ndarray)}
            y = x.subs(subs)
            if y.free_symbols:
                raise ValueError(f"only plain symbols may carry array values, got {x}")
            return int(y)
        return int(x)
    return x


def _spec_subst(spec: TensorSpec | None, values: dict) -> TensorSpec | None:
    if spec is None:
        return None
    if spec.strides is not None and any(_names(s) for s in spec.strides):
        raise ValueError("symbolic strides are not supported on a map")
    return dataclasses.replace(spec, shape=tuple(_subst(s, values) for s in spec.shape))


@dataclasses.dataclass
class MapCheck:
    checked: int
    mismatches: list       # (x, y, symconv label, torch label)
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return not self.skipped and not self.mismatches


@dataclasses.dataclass
class DispatchMap:
    x: Axis
    y: Axis
    labels: list                  # label index -> "Mkldnn" | "error: ..." names
    grid: np.ndarray              # (len(y), len(x)) label indices
    env: Environment
    env_label: str
    call: dict                    # the call with the axis names left as symbols
    seconds: float = 0.0
    messages: dict = dataclasses.field(default_factory=dict)  # error label -> example message

    @property
    def cells(self) -> int:
        return int(self.grid.size)

    def counts(self) -> dict:
        idx, n = np.unique(self.grid, return_counts=True)
        return {self.labels[i]: int(c) for i, c in zip(idx, n)}

    def label_at(self, xv: int, yv: int) -> str:
        i = int(np.nonzero(self.y.values == yv)[0][0])
        j = int(np.nonzero(self.x.values == xv)[0][0])
        return self.labels[self.grid[i, j]]

    def to_json(self) -> dict:
        return {"x": {"name": self.x.name, "values": self.x.values.tolist()},
                "y": {"name": self.y.name, "values": self.y.values.tolist()},
                "labels": self.labels, "grid": self.grid.tolist(), "counts": self.counts(),
                "environment": self.env_label, "environment_fields": self.env.as_dict(),
                "call": {k: _jsonable(v) for k, v in self.call.items()},
                "error_examples": self.messages, "seconds": round(self.seconds, 4)}

    def summary(self) -> str:
        lines = [f"{self.cells} cells ({len(self.y.values)} {self.y.name} x "
                 f"{len(self.x.values)} {self.x.name}) under {self.env_label} "
                 f"({env_summary(self.env)}), evaluated in {self.seconds * 1000:.1f} ms"]
        for label, n in sorted(self.counts().items(), key=lambda kv: -kv[1]):
            lines.append(f"  {label:<28} {n:>9} cells")
        return "\n".join(lines)

    # ---- picture
    def plot(self, path: str, *, title: str | None = None, dpi: int = 110) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.collections import LineCollection
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        used = sorted(set(np.unique(self.grid).tolist()))
        # RGB triples; matplotlib types them as any colour-like array
        palette: Any = cast(ListedColormap, plt.get_cmap("tab20")).colors
        colors = {}
        for k, i in enumerate(used):
            label = self.labels[i]
            colors[i] = (0.82, 0.82, 0.82) if label.startswith("error") and \
                len([u for u in used if self.labels[u].startswith("error")]) == 1 \
                else palette[(2 * k) % 20 if k < 10 else (2 * k + 1) % 20]
        remap = np.zeros(len(self.labels), dtype=np.int64)
        for k, i in enumerate(used):
            remap[i] = k
        g = remap[self.grid]
        cmap = ListedColormap([colors[i] for i in used])
        xe = _edges(self.x.values)
        ye = _edges(self.y.values)
        fig, ax = plt.subplots(figsize=(9, 5.6))
        ax.pcolormesh(xe, ye, g, cmap=cmap, vmin=-0.5, vmax=len(used) - 0.5, shading="flat")
        segs = []
        dx = np.nonzero(self.grid[:, 1:] != self.grid[:, :-1])
        for i, j in zip(*dx):
            segs.append([(xe[j + 1], ye[i]), (xe[j + 1], ye[i + 1])])
        dy = np.nonzero(self.grid[1:, :] != self.grid[:-1, :])
        for i, j in zip(*dy):
            segs.append([(xe[j], ye[i + 1]), (xe[j + 1], ye[i + 1])])
        if segs:
            ax.add_collection(LineCollection(segs, colors="black", linewidths=1.2))
        ax.set_xlim(xe[0], xe[-1])
        ax.set_ylim(ye[0], ye[-1])
        ax.set_xlabel(self.x.name)
        ax.set_ylabel(self.y.name)
        counts = self.counts()
        handles = [Patch(facecolor=colors[i], edgecolor="black",
                         label=f"{self.labels[i]} ({counts[self.labels[i]]})") for i in used]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                  title="backend (cells)", title_fontsize=9)
        ax.set_title(title or f"backend chosen over {self.y.name} x {self.x.name}: "
                     f"{self.env_label} ({env_summary(self.env)})", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
        plt.close(fig)

    # ---- torch
    def check_against_torch(self, sample: int = 200, seed: int = 0) -> MapCheck:
        """Ask the installed torch for a sample of cells (only when the environment is this
        process's); symconv's label must be torch's backend, or an error where torch raises."""
        flags = {k: getattr(self.env, k) for k in (
            "mkldnn_enabled", "nnpack_enabled", "cudnn_enabled", "cudnn_deterministic",
            "deterministic_algorithms", "cudnn_benchmark", "cudnn_allow_tf32", "num_threads",
            "grad_enabled", "cudnn_depthwise_kernel")}
        with torch_flags(flags):
            here = Environment.from_torch()
        if here != self.env:
            return MapCheck(0, [], "the environment is not this process")
        rng = np.random.default_rng(seed)
        n = self.cells
        picks = rng.choice(n, size=min(sample, n), replace=False)
        mism = []
        checked = 0
        with torch_flags(flags):
            for flat in picks:
                i, j = divmod(int(flat), self.grid.shape[1])
                xv, yv = int(self.x.values[j]), int(self.y.values[i])
                got = _torch_label(self.call, {self.x.name: xv, self.y.name: yv})
                if got is None:
                    continue
                checked += 1
                mine = self.labels[self.grid[i, j]]
                if (mine.startswith("error")) != (got.startswith("error")) or \
                        (not mine.startswith("error") and mine != got):
                    mism.append((xv, yv, mine, got))
        return MapCheck(checked, mism)


def _jsonable(v):
    if isinstance(v, TensorSpec):
        return {"shape": [str(s) for s in v.shape], "dtype": str(v.dtype).replace("torch.", ""),
                "device": v.device, "memory_format": str(v.memory_format).replace("torch.", "")}
    if isinstance(v, (list, tuple)):
        return [str(x) if not isinstance(x, (int, bool)) else x for x in v]
    if isinstance(v, (int, bool)) or v is None:
        return v
    return str(v)


def _edges(v: np.ndarray) -> np.ndarray:
    v = v.astype(float)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def _call_at(call: dict, values: dict) -> tuple:
    """The call's input, weight and bias specs, its [stride, padding, dilation, output_padding]
    and groups, with ``values`` put in."""
    specs = [_spec_subst(call[k], values) for k in ("input", "weight", "bias")]
    args = [[_subst(v, values) for v in call[k]] for k in
            ("stride", "padding", "dilation", "output_padding")]
    return (*specs, args, _subst(call["groups"], values))


def _torch_label(call: dict, values: dict) -> str | None:
    """torch's answer for one cell (``None`` when the cell is too big to build)."""
    inp, w, b, args, groups = _call_at(call, values)
    tensors: list[torch.Tensor | None] = []
    for s in (inp, w, b):
        if s is None:
            tensors.append(None)
            continue
        n = 1
        for d in s.shape:
            n *= d
        if n > 2**26:
            return None
        try:
            t = torch.empty(s.shape, dtype=s.dtype, device=s.device,
                            memory_format=s.memory_format)
        except Exception:  # noqa: BLE001 - not buildable here
            return None
        if s.layout == MKLDNN_LAYOUT:
            t = t.to_mkldnn()
        if s.requires_grad:
            t.requires_grad_(True)
        tensors.append(t)
    try:
        raw = torch._C._select_conv_backend(tensors[0], tensors[1], tensors[2], args[0], args[1],
                                            args[2], call["transposed"], args[3], groups)
    except Exception as e:  # noqa: BLE001 - torch's answer
        return f"error: {type(e).__name__}"
    return ConvBackend.from_torch(raw).name


def _evaluate(call: dict, values: dict, env: Environment, shape: tuple, labels: list,
              messages: dict) -> np.ndarray:
    """Label indices for one block (values may be numpy arrays of ``shape``)."""
    out = np.full(shape, -1, dtype=np.int32)

    def label(name: str) -> int:
        if name not in labels:
            labels.append(name)
        return labels.index(name)

    inp, w, b, args, groups = _call_at(call, values)
    try:
        p = prepare(inp, w, b, args[0], args[1], args[2], call["transposed"], args[3], groups,
                    env=env, need_backward=call.get("need_backward"))
    except (ConvError, ConvValueError) as e:
        name = f"error: {getattr(getattr(e, 'check', None), 'name', None) or 'invalid call'}"
        messages.setdefault(name, str(e).splitlines()[0])
        out[...] = label(name)
        return out
    undecided = np.ones(shape, dtype=bool)
    for chk in p.checker.checks:
        ok = chk.cond
        fail = undecided & ~np.broadcast_to(np.asarray(ok, dtype=bool), shape)
        if fail.any():
            name = f"error: {chk.name}"
            out[fail] = label(name)
            undecided &= ~fail
    if p.stopped or not undecided.any():
        return out
    for rule in RULES:
        g = rule.guard(p.ctx)
        t = D.truth(g)
        if t is False:
            continue
        name = rule.outcome.name if isinstance(rule.outcome, ConvBackend) else \
            f"error: {rule.outcome.name}"
        if t is True:
            out[undecided] = label(name)
            undecided[...] = False
            break
        g = np.broadcast_to(np.asarray(g, dtype=bool), shape)
        hit = undecided & g
        if hit.any():
            out[hit] = label(name)
            if isinstance(rule.outcome, ErrorOutcome):
                messages.setdefault(name, rule.outcome.name)
        undecided &= ~g
        if not undecided.any():
            break
    return out


def dispatch_map(input, weight, bias, stride, padding, dilation, transposed, output_padding,
                 groups, *, x: Axis | str, y: Axis | str, env: Environment | str | None = None,
                 need_backward: bool | None = None) -> DispatchMap:
    """The backend (or error) chosen at every cell of the grid ``y`` x ``x``.

    The call's arguments are those of ``select_conv_backend``; sizes and parameters named by
    an axis are symbols (e.g. ``TensorSpec(("N", 3, "H", "H"))``, ``stride=["S"]``), every
    other value is an int.
    """
    t0 = time.perf_counter()
    env_obj, label = resolve_env(env)
    ax = parse_axis(x) if isinstance(x, str) else x
    ay = parse_axis(y) if isinstance(y, str) else y
    if ax.name == ay.name:
        raise ValueError(f"--x and --y name the same symbol {ax.name!r}")
    if ax.values.size * ay.values.size > MAX_CELLS:
        raise ValueError(f"{ax.values.size * ay.values.size} cells; at most {MAX_CELLS}")
    inp, w, b = as_spec(input, "input"), as_spec(weight, "weight"), as_spec(bias, "bias")

    def as_list(v):
        return list(v) if isinstance(v, (list, tuple)) else [v]

    call = {"input": inp, "weight": w, "bias": b, "stride": as_list(stride),
            "padding": as_list(padding), "dilation": as_list(dilation),
            "transposed": bool(transposed), "output_padding": as_list(output_padding),
            "groups": groups, "need_backward": need_backward}
    size_names, param_names = set(), set()
    for s in (inp, w, b):
        if s is not None:
            for d in s.shape:
                size_names |= _names(d)
    for k in ("stride", "padding", "dilation", "output_padding"):
        for v in call[k]:
            param_names |= _names(v)
    param_names |= _names(groups)
    every = size_names | param_names
    for a in (ax, ay):
        if a.name not in every:
            raise ValueError(f"axis {a.name!r} does not appear in the call (its symbols: "
                             f"{', '.join(sorted(every)) or 'none'})")
    extra = every - {ax.name, ay.name}
    if extra:
        raise ValueError(f"symbol(s) {', '.join(sorted(extra))} are on no axis; give them "
                         "values or put them on --x/--y")
    loop = [a for a in (ax, ay) if a.name in param_names]
    vec = [a for a in (ax, ay) if a not in loop]
    ny, nx = ay.values.size, ax.values.size
    grid = np.full((ny, nx), -1, dtype=np.int32)
    labels: list = []
    messages: dict = {}
    if not loop:
        Y, X = np.meshgrid(ay.values, ax.values, indexing="ij")
        grid[...] = _evaluate(call, {ax.name: X, ay.name: Y}, env_obj, (ny, nx), labels,
                              messages)
    elif len(loop) == 1:
        la = loop[0]
        va = vec[0]
        for pos, lv in enumerate(la.values):
            vals = {la.name: int(lv), va.name: va.values}
            col = _evaluate(call, vals, env_obj, (va.values.size,), labels, messages)
            if la is ax:
                grid[:, pos] = col
            else:
                grid[pos, :] = col
    else:
        for i, yv in enumerate(ay.values):
            for j, xv in enumerate(ax.values):
                grid[i, j] = _evaluate(call, {ax.name: int(xv), ay.name: int(yv)}, env_obj,
                                       (), labels, messages)
    if (grid < 0).any():  # pragma: no cover - the rule table is total
        raise AssertionError("some cells got no label")
    return DispatchMap(ax, ay, labels, grid, env_obj, label, call,
                       time.perf_counter() - t0, messages)
