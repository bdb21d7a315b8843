"""Replay the H100 records (tests/data/cuda_records.json.gz) through symconv on the CPU.

The records were taken with ``tools/record_cuda.py`` on torch 2.11 + CUDA 13 + cuDNN 9.19; each
gives the arguments, the global flags and what ``torch._C._select_conv_backend`` and
``_conv_determine_backend_memory_format`` answered. symconv, given the matching Environment,
must answer the same for every record.
"""

from __future__ import annotations

import gzip
import json
import pathlib

import torch

import symconv
from symconv import Environment, TensorSpec
from symconv.errors import ConvValueError

from proofs import records
from proofs.records import record_spec as spec

DATA = pathlib.Path(__file__).parent / "data" / "cuda_records.json.gz"
RECORDS = json.loads(gzip.decompress(DATA.read_bytes()))
MF = {"contiguous_format": torch.contiguous_format, "channels_last": torch.channels_last,
      "channels_last_3d": torch.channels_last_3d, "preserve_format": torch.preserve_format}


def record_env(flags: dict) -> Environment:
    return records.record_env(RECORDS, flags)


def symconv_answer(r: dict, *, with_bias_sizes: bool = False) -> dict:
    env = record_env(r["flags_read_back"])
    inp, w, b = spec(r["input"]), spec(r["weight"]), spec(r.get("bias"))
    kwargs = {}
    if with_bias_sizes:
        kwargs["bias_sizes"] = tuple(b.shape) if b is not None else None
        b = None
    try:
        be = symconv.select_conv_backend(inp, w, b, r["stride"], r["padding"], r["dilation"],
                                         r["transposed"], r["output_padding"], r["groups"],
                                         env=env, **kwargs)
    except (symconv.ConvError, ConvValueError, IndexError) as e:
        kind = "RuntimeError" if isinstance(e, symconv.ConvError) else (
            "ValueError" if isinstance(e, ConvValueError) else type(e).__name__)
        return {"error": {"type": kind, "message": str(e).splitlines()[0]}}
    mf = symconv.determine_backend_memory_format(inp, w, be, env=env)
    return {"backend": int(be), "backend_name": be.name,
            "memory_format": {v: k for k, v in MF.items()}[mf]}


def torch_answer(sel: dict) -> dict:
    if "error" in sel:
        return {"error": {"type": sel["error"]["type"],
                          "message": sel["error"]["message"].splitlines()[0]}}
    return {"backend": sel["backend"], "backend_name": sel["backend_name"],
            "memory_format": sel["memory_format"]}


def test_records_environment_is_the_h100_build():
    e = RECORDS["environment"]
    assert e["cudnn_version"] == 91900 and tuple(e["device_capability"]) == (9, 0)
    assert e["torch_version"].startswith("2.11")
    assert len(RECORDS["records"]) >= 4000


def test_every_cuda_record_replays():
    mismatches = []
    for r in RECORDS["records"]:
        want = torch_answer(r["select"])
        got = symconv_answer(r)
        if want != got:
            mismatches.append((r["id"], r["family"], want, got))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:5]}"


def test_every_cuda_record_replays_with_bias_sizes():
    mismatches = []
    for r in RECORDS["records"]:
        want = torch_answer(r["select_bias_sizes"])
        got = symconv_answer(r, with_bias_sizes=True)
        if want != got:
            mismatches.append((r["id"], r["family"], want, got))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:5]}"


def test_depthwise_grid_replays():
    grid = RECORDS["depthwise_grid"]
    cols = grid["columns"]
    mismatches = []
    env = record_env(RECORDS["environment"]["default_flags"])
    for row in grid["rows"]:
        r = dict(zip(cols, row))
        n, c, h, w, k, s = (r[x] for x in ("batch", "channels", "H", "W", "kernel", "stride"))
        inp = TensorSpec((n, c, h, w), dtype=torch.float16, device="cuda")
        wt = TensorSpec((c, 1, k, k), dtype=torch.float16, device="cuda")
        be = symconv.select_conv_backend(inp, wt, None, [s], [r["padding"]], [1], False, [0],
                                         c, env=env)
        if be.name != r["backend_name"]:
            mismatches.append((r, be.name))
    assert not mismatches, mismatches[:5]
