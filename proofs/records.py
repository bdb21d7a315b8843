"""Evidence from the recorded CUDA runs (``tests/data/cuda_records.json.gz``, a repository
checkout only) for counterexamples that cannot run on a CPU torch.

The records were taken on an H100 with torch 2.11 and cuDNN 9.19 (``tests/data/README.md``). A
probe names a property; ``find`` returns the first record where symconv, evaluated on the
record's concrete call, says the property holds and torch's recorded answer shows what the
counterexample claims.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["find", "record_spec", "record_env"]


def record_spec(t: dict | None):
    """The TensorSpec of a record's tensor (its recorded strides), or None."""
    from symconv import TensorSpec
    if t is None:
        return None
    return TensorSpec(tuple(t["shape"]), dtype=getattr(torch, t["dtype"]), device=t["device"],
                      requires_grad=t["requires_grad"], strides=tuple(t["actual_stride"]))


def record_env(data: dict, flags: dict):
    """The Environment of the recording machine with a record's global flags."""
    from symconv import Environment
    e = data["environment"]
    return Environment(
        torch_version=e["torch_version"].split("+")[0], cuda_available=True,
        cudnn_version=e["cudnn_version"], cuda_capability=tuple(e["device_capability"]),
        mkldnn_available=e["has_mkldnn"], nnpack_available=e["nnpack_available"],
        mkldnn_enabled=e["mkldnn_enabled"], nnpack_enabled=e["nnpack_enabled"],
        cudnn_enabled=flags["cudnn_enabled"], cudnn_deterministic=flags["cudnn_deterministic"],
        deterministic_algorithms=flags["deterministic_algorithms"],
        cudnn_benchmark=flags["cudnn_benchmark"], cudnn_allow_tf32=flags["cudnn_allow_tf32"],
        num_threads=e["num_threads"], grad_enabled=flags["grad_enabled"])


def _cudnn_64bit(data: dict, r: dict, depthwise: bool) -> str | None:
    from symconv import api
    sel = r.get("select", {})
    if sel.get("backend_name") not in ("Cudnn", "CudnnTranspose"):
        return None
    if depthwise and not (r["groups"] > 1 and r["groups"] == r["input"]["shape"][1]):
        return None
    try:
        p = api.prepare(record_spec(r["input"]), record_spec(r["weight"]),
                        record_spec(r.get("bias")), r["stride"], r["padding"], r["dilation"],
                        r["transposed"], r["output_padding"], r["groups"],
                        env=record_env(data, r["flags_read_back"]))
        c = p.ctx
        if c.params.needs_64bit_indexing_no_split(c.input, c.weight) is not True:
            return None
    except Exception:  # noqa: BLE001 - a record symconv cannot read is no evidence
        return None
    e = data["environment"]
    i = r["input"]
    return (f"recorded evidence: H100 record #{r['id']} (torch {e['torch_version']}, cuDNN "
            f"{e['cudnn_version']}): input {i['shape']} ({i['dtype']}, {i['construction']}, "
            f"strides {i['actual_stride']}), weight {r['weight']['shape']}, groups "
            f"{r['groups']}{', transposed' if r['transposed'] else ''}: torch selected "
            f"{sel['backend_name']} although needs_64bit_indexing_no_split holds")


def find(data: dict, probe: Any) -> str:
    if isinstance(probe, str):
        probe = {"kind": probe}
    kind = probe.get("kind")
    if kind == "cudnn_64bit":
        for depthwise in ((True, False) if probe.get("depthwise") else (False,)):
            for r in data.get("records", []):
                found = _cudnn_64bit(data, r, depthwise)
                if found:
                    return found
        return "no H100 record shows it"
    return ""
