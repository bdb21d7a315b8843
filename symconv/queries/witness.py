"""Witnesses: concrete convolution calls (shapes, parameters, tensor facts and global flags) and
their replay on the installed torch.

A :class:`Witness` is JSON-portable (``to_json`` / ``from_json``), so the same description can be
replayed on another machine by a script that needs only torch
(``tools/validate_cuda_witnesses.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any
from collections.abc import Iterator

import torch

from ..backends import ConvBackend
from ..env import Environment, PRESETS
from ..spec import MKLDNN_LAYOUT, TensorSpec
from .space import MF_NAMES, DTYPE_NAMES, SPATIAL

__all__ = ["Witness", "Validation", "torch_flags", "replay", "build_tensor", "env_name"]

_DTYPE_BY_NAME = {v: k for k, v in DTYPE_NAMES.items()}
_MF_BY_NAME = {v: k for k, v in MF_NAMES.items()}


def env_name(env: Environment) -> str:
    for name, (_, e) in PRESETS.items():
        if e == env:
            return name
    if env == Environment.from_torch():
        return "native"
    return "custom"



def fact_tags(f: dict) -> tuple[list[str], list[str]]:
    """The input's and the weight's categorical facts as shown after their shapes: dtype and
    device always, memory format, layout and requires_grad where not the default."""
    extra = [f["dtype"], f["device"]]
    if f["input_mf"] != "contiguous":
        extra.append(f["input_mf"])
    if f["layout"] != "strided":
        extra.append(f"layout={f['layout']}")
    if f["requires_grad"]:
        extra.append("requires_grad")
    return extra, ([f["weight_mf"]] if f["weight_mf"] != "contiguous" else [])

@dataclasses.dataclass
class Witness:
    """A concrete call that reaches ``backend`` (according to symconv's rules)."""

    backend: ConvBackend
    env: Environment
    dims: int
    transposed: bool
    values: dict      # symbol name -> int (N, C, H, W, Cout, Cg, kH, strideH, ..., G)
    facts: dict       # device, dtype, layout, input_mf, weight_mf, requires_grad
    flags: dict       # every runtime flag of the Environment, as it must be set

    # ---- the call
    @property
    def spatial(self) -> tuple:
        return SPATIAL[self.dims]

    @property
    def input_shape(self) -> tuple:
        v = self.values
        return (v["N"], v["C"]) + tuple(v[s] for s in self.spatial)

    @property
    def weight_shape(self) -> tuple:
        v = self.values
        first = v["C"] if self.transposed else v["Cout"]
        return (first, v["Cg"]) + tuple(v["k" + s] for s in self.spatial)

    def _list(self, prefix: str) -> list:
        return [self.values[prefix + s] for s in self.spatial]

    @property
    def stride(self) -> list:
        return self._list("stride")

    @property
    def padding(self) -> list:
        return self._list("pad")

    @property
    def dilation(self) -> list:
        return self._list("dil")

    @property
    def output_padding(self) -> list:
        return self._list("opad")

    @property
    def groups(self) -> int:
        return self.values["G"]

    def input_spec(self) -> TensorSpec:
        f = self.facts
        layout = MKLDNN_LAYOUT if f["layout"] == "mkldnn" else torch.strided
        return TensorSpec(self.input_shape, dtype=_DTYPE_BY_NAME[f["dtype"]], device=f["device"],
                          requires_grad=f["requires_grad"], layout=layout,
                          memory_format=_MF_BY_NAME[f["input_mf"]])

    def weight_spec(self) -> TensorSpec:
        f = self.facts
        return TensorSpec(self.weight_shape, dtype=_DTYPE_BY_NAME[f["dtype"]], device=f["device"],
                          memory_format=_MF_BY_NAME[f["weight_mf"]])

    def args(self) -> tuple:
        """The positional arguments of ``select_conv_backend`` (TensorSpecs)."""
        return (self.input_spec(), self.weight_spec(), None, self.stride, self.padding,
                self.dilation, self.transposed, self.output_padding, self.groups)

    def call_env(self) -> Environment:
        """The environment with this witness's flags set."""
        return self.env.replace(**self.flags)

    def changed_flags(self) -> dict:
        return {k: v for k, v in self.flags.items() if getattr(self.env, k) != v}

    def symconv_backend(self) -> ConvBackend:
        """symconv's concrete (int) answer for this call: must be ``backend``."""
        from ..api import select_conv_backend
        return select_conv_backend(*self.args(), env=self.call_env())

    # ---- text and JSON
    def to_json(self) -> dict:
        inp, wgt = self.input_spec(), self.weight_spec()
        return {
            "backend": self.backend.name,
            "input": _tensor_json(inp, self.facts, "input_mf"),
            "weight": _tensor_json(wgt, self.facts, "weight_mf"),
            "bias": None,
            "stride": self.stride, "padding": self.padding, "dilation": self.dilation,
            "transposed": self.transposed, "output_padding": self.output_padding,
            "groups": self.groups,
            "flags": dict(self.flags),
            "values": dict(self.values),
        }

    @classmethod
    def from_json(cls, obj: dict, env: Environment) -> Witness:
        dims = len(obj["input"]["shape"]) - 2
        facts = {"device": obj["input"]["device"], "dtype": obj["input"]["dtype"],
                 "layout": obj["input"].get("layout", "strided"),
                 "input_mf": obj["input"].get("memory_format", "contiguous"),
                 "weight_mf": obj["weight"].get("memory_format", "contiguous"),
                 "requires_grad": bool(obj["input"].get("requires_grad", False))}
        return cls(ConvBackend.parse(obj["backend"]), env, dims, bool(obj["transposed"]),
                   dict(obj["values"]), facts, dict(obj["flags"]))

    def lines(self) -> list[str]:
        extra, wextra = fact_tags(self.facts)
        out = [f"input   {list(self.input_shape)} {' '.join(extra)}",
               f"weight  {list(self.weight_shape)}" + (f" {' '.join(wextra)}" if wextra else ""),
               "bias    none",
               f"stride={self.stride} padding={self.padding} dilation={self.dilation} "
               f"transposed={self.transposed} output_padding={self.output_padding} "
               f"groups={self.groups}"]
        changed = self.changed_flags()
        out.append("flags   " + (", ".join(f"{k}={v}" for k, v in changed.items())
                                 if changed else "the environment's defaults"))
        return out

    def code(self) -> str:
        """A Python snippet that asks torch the same question."""
        inp, wgt = self.input_spec(), self.weight_spec()
        lines = ["import torch"]
        for k, v in self.changed_flags().items():
            lines.append(_flag_code(k, v))
        lines.append(f"x = {_tensor_code(inp, self.facts['layout'], self.facts['input_mf'])}")
        lines.append(f"w = {_tensor_code(wgt, 'strided', self.facts['weight_mf'])}")
        lines.append(f"torch._C._select_conv_backend(x, w, None, {self.stride}, {self.padding}, "
                     f"{self.dilation}, {self.transposed}, {self.output_padding}, {self.groups})")
        return "\n".join(lines)


def _tensor_json(spec: TensorSpec, facts: dict, mf_key: str) -> dict:
    return {"shape": list(spec.shape), "dtype": DTYPE_NAMES[spec.dtype], "device": spec.device,
            "memory_format": facts[mf_key],
            "layout": facts["layout"] if mf_key == "input_mf" else "strided",
            "requires_grad": bool(spec.requires_grad)}


def _tensor_code(spec: TensorSpec, layout: str, mf: str) -> str:
    dt = "torch." + DTYPE_NAMES[spec.dtype]
    if layout == "mkldnn":
        return f"torch.zeros({list(spec.shape)}, dtype={dt}).to_mkldnn()"
    args = [str(list(spec.shape)), f"dtype={dt}"]
    if spec.device != "cpu":
        args.append(f"device={spec.device!r}")
    if mf != "contiguous":
        args.append(f"memory_format=torch.{mf}")
    if spec.requires_grad:
        args.append("requires_grad=True")
    return f"torch.empty({', '.join(args)})"


def _flag_code(k: str, v: Any) -> str:
    return {
        "mkldnn_enabled": f"torch.backends.mkldnn.enabled = {v}",
        "nnpack_enabled": f"torch._C._set_nnpack_enabled({v})",
        "cudnn_enabled": f"torch.backends.cudnn.enabled = {v}",
        "cudnn_deterministic": f"torch.backends.cudnn.deterministic = {v}",
        "deterministic_algorithms": f"torch.use_deterministic_algorithms({v})",
        "cudnn_benchmark": f"torch.backends.cudnn.benchmark = {v}",
        "cudnn_allow_tf32": f"torch.backends.cudnn.allow_tf32 = {v}",
        "cudnn_depthwise_kernel": f"torch.backends.cudnn.depthwise_kernel = {v!r}",
        "num_threads": f"torch.set_num_threads({v})",
        "grad_enabled": f"torch.set_grad_enabled({v})",
    }[k]


# --------------------------------------------------------------------------------------
# Replay


_C_BOOL_FLAGS = ("mkldnn_enabled", "nnpack_enabled", "cudnn_enabled", "cudnn_deterministic",
                 "cudnn_benchmark", "cudnn_allow_tf32")


@contextlib.contextmanager
def torch_flags(flags: dict) -> Iterator[None]:
    """Set torch's global flags (Environment field names) for the duration of the block."""
    C = torch._C
    saved: list = []
    try:
        for k, v in flags.items():
            if k in _C_BOOL_FLAGS:  # torch._C._get_<name> / _set_<name>
                setter = getattr(C, f"_set_{k}")
                saved.append((setter, getattr(C, f"_get_{k}")()))
                setter(bool(v))
            elif k == "deterministic_algorithms":
                # torch._C's setter: torch.use_deterministic_algorithms imports the compiler
                old = (torch.are_deterministic_algorithms_enabled(),
                       torch.is_deterministic_algorithms_warn_only_enabled())
                if old[0] == bool(v):
                    continue
                saved.append((lambda o: C._set_deterministic_algorithms(o[0], warn_only=o[1]),
                              old))
                C._set_deterministic_algorithms(bool(v), warn_only=True)
            elif k == "num_threads":
                saved.append((torch.set_num_threads, torch.get_num_threads()))
                torch.set_num_threads(int(v))
            elif k == "grad_enabled":
                saved.append((torch._C._set_grad_enabled, torch.is_grad_enabled()))
                torch._C._set_grad_enabled(bool(v))
            elif k == "cudnn_depthwise_kernel":
                getter = getattr(C, "_get_cudnn_depthwise_kernel", None)
                if getter is not None:
                    saved.append((C._set_cudnn_depthwise_kernel, str(getter())))
                    C._set_cudnn_depthwise_kernel(str(v))
        yield
    finally:
        for setter, old in reversed(saved):
            setter(old)


MAX_REPLAY_ELEMENTS = 2**26


def build_tensor(t: dict, fill: bool = False) -> torch.Tensor:
    """A real tensor for a witness's JSON tensor description; ``fill``: uniform values in
    [-1, 1] (for running a kernel) where the tensor is strided, holds data and is not complex."""
    dtype = getattr(torch, t["dtype"])
    shape = tuple(t["shape"])
    if t.get("layout", "strided") == "mkldnn":
        x = torch.zeros(shape, dtype=dtype).to_mkldnn()
    else:
        mf = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last,
              "channels_last_3d": torch.channels_last_3d}[t.get("memory_format", "contiguous")]
        x = torch.empty(shape, dtype=dtype, device=t["device"], memory_format=mf)
        if fill and t["device"] != "meta" and x.numel() and not dtype.is_complex:
            x.uniform_(-1, 1)
    if t.get("requires_grad"):
        x.requires_grad_(True)
    return x


@dataclasses.dataclass
class Validation:
    status: str          # "validated" | "recorded" | "mismatch" | "not-validated"
    message: str
    torch_backend: str | None = None
    torch_version: str = torch.__version__

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _env_diff(a: Environment, b: Environment) -> list[str]:
    return [f"{f.name} (this process: {getattr(a, f.name)!r}, asked: {getattr(b, f.name)!r})"
            for f in dataclasses.fields(Environment) if getattr(a, f.name) != getattr(b, f.name)]


def replay(w: Witness) -> Validation:
    """Ask the installed torch, with the witness's flags set, which backend it picks.

    Only possible when the witness's environment (with its flags) is this process's; otherwise
    the answer says which facts differ.
    """
    want = w.call_env()
    with torch_flags(w.flags):
        here = Environment.from_torch()
    if here != want:
        diff = _env_diff(here, want)
        return Validation("not-validated", "not validated by torch: the environment is not this "
                          "process (differs in " + "; ".join(diff[:4])
                          + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "") + ")")
    n = 1
    for s in w.input_shape:
        n *= s
    m = 1
    for s in w.weight_shape:
        m *= s
    if max(n, m) > MAX_REPLAY_ELEMENTS:
        return Validation("not-validated", f"not validated by torch: the witness has {max(n, m)} "
                          f"elements, more than the replay limit {MAX_REPLAY_ELEMENTS}")
    obj = w.to_json()
    with torch_flags(w.flags):
        try:
            x = build_tensor(obj["input"])
            wt = build_tensor(obj["weight"])
            raw = torch._C._select_conv_backend(x, wt, None, w.stride, w.padding, w.dilation,
                                                w.transposed, w.output_padding, w.groups)
        except Exception as e:  # noqa: BLE001 - torch's answer, whatever it is
            first = str(e).splitlines()[0] if str(e) else ""
            return Validation("mismatch", f"torch raised {type(e).__name__}: {first}",
                              f"error: {type(e).__name__}")
    got = ConvBackend.from_torch(raw)
    if got == w.backend:
        return Validation("validated", f"validated by torch {torch.__version__}: "
                          f"torch._C._select_conv_backend returned {got.name}", got.name)
    return Validation("mismatch", f"MISMATCH: torch {torch.__version__} chose {got.name}, "
                      f"symconv's rules say {w.backend.name}", got.name)


# Witnesses replayed on a GPU machine (tools/validate_cuda_witnesses.py), in a source checkout.
RECORDINGS = {"cuda-h100": "tests/data/cuda_witnesses.json"}


def recorded(w: Witness) -> Validation | None:
    """The recorded replay of this very witness on the preset's machine, if the recording is
    at hand (a source checkout) and holds it."""
    import json
    import pathlib
    name = env_name(w.env)
    rel = RECORDINGS.get(name)
    if rel is None:
        return None
    path = pathlib.Path(__file__).resolve().parents[2] / rel
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    call = w.to_json()
    for item in data.get("witnesses", []):
        if item.get("call") == call and "torch" in item:
            got = item["torch"].get("backend")
            on = data.get("recorded_on", {})
            where = f"{on.get('device_name')}, torch {on.get('torch_version')}, cuDNN " \
                    f"{on.get('cudnn_version')}"
            if got == w.backend.name:
                return Validation("recorded", f"validated on the GPU machine ({where}): "
                                  f"recorded in {rel}", got, on.get("torch_version", ""))
            return Validation("mismatch", f"MISMATCH recorded on the GPU machine ({where}): "
                              f"torch chose {got}", got, on.get("torch_version", ""))
    return None
