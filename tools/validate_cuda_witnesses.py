#!/usr/bin/env python3
"""Validate symconv's reach witnesses for the 'cuda-h100' preset on a real GPU machine.

Two steps:

1. Here (CPU, symconv installed): make the witnesses, one per backend that symconv says is
   reachable under the preset (the cheapest witness, and one whose tensors are on CUDA where
   such a call exists), and list the backends it proves unreachable::

       python tools/validate_cuda_witnesses.py make --out tools/cuda_witnesses_in.json

2. On the GPU machine (imports symconv from the checkout it sits in, for the flag setting and
   tensor building that ``symconv.queries.witness`` uses for its own replays; needs torch,
   numpy, sympy and z3-solver)::

       python3 tools/validate_cuda_witnesses.py replay tools/cuda_witnesses_in.json \\
           --out $OUT/cuda_witnesses.json

   Every witness is replayed: the global flags are set, the tensors built, and
   ``torch._C._select_conv_backend`` and ``_conv_determine_backend_memory_format`` asked; a
   forward ``torch.convolution`` is also run. The output holds the input plus the answers and
   the machine's facts; it is kept as ``tests/data/cuda_witnesses.json``, which
   ``tests/test_queries.py`` checks on the CPU (symconv's witnesses must still be the recorded
   ones, and torch's recorded answers must be the backends).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from symconv.queries.witness import build_tensor, torch_flags

BACKEND_NAMES = [
    "CudaDepthwise2d", "CudaDepthwise3d", "Cudnn", "CudnnTranspose", "Empty", "Miopen",
    "MiopenDepthwise", "MiopenTranspose", "Mkldnn", "MkldnnTranspose", "MkldnnEmpty",
    "NnpackSpatial", "Overrideable", "Slow2d", "Slow3d", "SlowDilated2d", "SlowDilated3d",
    "SlowTranspose2d", "SlowTranspose3d", "Winograd3x3Depthwise", "Xnnpack2d", "Mps",
    "MpsTranspose"]
PRESET = "cuda-h100"

# more CUDA paths, each asked with constraints (all on CUDA tensors)
EXTRA = [
    ("Slow2d", "device == cuda, opadH == 0, opadW == 0"),
    ("SlowDilated2d", "device == cuda, opadH == 0, opadW == 0"),
    ("Cudnn", "device == cuda, dtype == float16, G >= 2"),
    ("Cudnn", "device == cuda, dtype == float16, G >= 2, C >= 32, H >= 7, W >= 7, kH == 3, "
              "kW == 3, input_mf == contiguous, weight_mf == contiguous"),
    ("Cudnn", "device == cuda, G >= 2, input_mf == channels_last"),
    ("Cudnn", "device == cuda, dilH >= 2, cudnn_deterministic"),
    ("Cudnn", "device == cuda, dtype == bfloat16"),
    ("CudaDepthwise2d", "dtype == float16"),
    ("CudaDepthwise2d", "dtype == float16, C >= 32, kH == 3, kW == 3, H >= 7, W >= 7, "
                        "strideH == 2, strideW == 2, N >= 2"),
    ("CudnnTranspose", "dims == 3"),
    ("CudnnTranspose", "dtype == float16, input_mf == channels_last"),
]


# --------------------------------------------------------------------------------------
# make (symconv)


def make_witnesses(preset: str = PRESET) -> dict:
    """The witness file's input part (also used by the tests to compare with the recording)."""
    from symconv import ConvBackend
    from symconv.queries import reach
    out = {"format_version": 1, "preset": preset, "witnesses": [], "unreachable": {}}
    for b in ConvBackend:
        r = reach(b, env=preset, validate=False)
        if r.verdict == "unreachable":
            out["unreachable"][b.name] = r.proof
            continue
        if r.verdict != "reachable":
            out["unreachable"][b.name] = ["unknown"] + r.unknown
            continue
        out["witnesses"].append({"backend": b.name, "where": None, "call": r.witness.to_json()})
        if r.witness.facts["device"] != "cuda":
            rc = reach(b, env=preset, where="device == cuda", validate=False)
            if rc.verdict == "reachable":
                out["witnesses"].append({"backend": b.name, "where": "device == cuda",
                                         "call": rc.witness.to_json()})
    for backend, where in EXTRA:
        r = reach(backend, env=preset, where=where, validate=False)
        if r.verdict == "reachable":
            out["witnesses"].append({"backend": backend, "where": where,
                                     "call": r.witness.to_json()})
        else:
            out.setdefault("extra_not_reachable", []).append(
                {"backend": backend, "where": where, "verdict": r.verdict})
    return out


# --------------------------------------------------------------------------------------
# replay (torch; flags and tensors as symconv.queries.witness sets and builds them)


def machine_facts(torch) -> dict:
    cuda = torch.cuda.is_available()
    facts = {
        "torch_version": torch.__version__, "cuda_version": torch.version.cuda,
        "cuda_available": cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
        else None,
        "device_name": torch.cuda.get_device_name() if cuda else None,
        "device_capability": list(torch.cuda.get_device_capability()) if cuda else None,
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "nnpack_available": torch.backends.nnpack.is_available(),
        "num_threads": torch.get_num_threads(),
        "has_depthwise_kernel": hasattr(torch._C, "_get_cudnn_depthwise_kernel"),
        "python": platform.python_version(),
    }
    try:
        facts["mkldnn_bf16_supported"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        facts["mkldnn_fp16_supported"] = bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except Exception as e:  # noqa: BLE001
        facts["mkldnn_bf16_supported"] = f"unknown: {e}"
    return facts


def replay_file(data: dict) -> dict:
    import torch
    t0 = time.time()
    names = {}
    for i, n in enumerate(BACKEND_NAMES):
        names[i] = n
    results = []
    for item in data["witnesses"]:
        c = item["call"]
        rec = {}
        with torch_flags(c["flags"]):
            try:
                x = build_tensor(c["input"], fill=True)
                w = build_tensor(c["weight"], fill=True)
                b = build_tensor(c["bias"], fill=True) if c.get("bias") else None
                args = (x, w, b, c["stride"], c["padding"], c["dilation"], c["transposed"],
                        c["output_padding"], c["groups"])
                raw = torch._C._select_conv_backend(*args)
                rec["backend"] = names.get(int(raw), str(raw))
                rec["backend_int"] = int(raw)
                try:
                    mf = torch._C._conv_determine_backend_memory_format(x, w, raw)
                    rec["memory_format"] = str(mf).replace("torch.", "")
                except Exception as e:  # noqa: BLE001
                    rec["memory_format"] = f"error: {type(e).__name__}"
                try:
                    out = torch.convolution(*args)
                    if out.is_cuda:
                        torch.cuda.synchronize()
                    rec["forward"] = {"shape": list(out.shape)}
                except Exception as e:  # noqa: BLE001
                    rec["forward"] = {"error": f"{type(e).__name__}: "
                                               f"{(str(e).splitlines() or [''])[0][:200]}"}
            except Exception as e:  # noqa: BLE001
                rec["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
            rec["flags_read_back"] = {
                "mkldnn_enabled": torch._C._get_mkldnn_enabled(),
                "nnpack_enabled": torch._C._get_nnpack_enabled(),
                "cudnn_enabled": torch._C._get_cudnn_enabled(),
                "num_threads": torch.get_num_threads(), "grad_enabled": torch.is_grad_enabled()}
        rec["matches"] = rec.get("backend") == item["backend"]
        results.append(rec)
    out = dict(data)
    out["recorded_on"] = machine_facts(torch)
    out["recorded_on"]["seconds"] = round(time.time() - t0, 3)
    out["witnesses"] = [dict(item, torch=r) for item, r in zip(data["witnesses"], results)]
    out["summary"] = {"witnesses": len(results),
                      "matching": sum(1 for r in results if r["matches"]),
                      "mismatching": [i["backend"] for i, r in zip(data["witnesses"], results)
                                      if not r["matches"]]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="make the witnesses with symconv (CPU)")
    mk.add_argument("--out", required=True)
    mk.add_argument("--preset", default=PRESET)
    rp = sub.add_parser("replay", help="replay witnesses on this machine's torch (torch only)")
    rp.add_argument("input")
    rp.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "make":
        data = make_witnesses(args.preset)
        with open(args.out, "w") as f:
            json.dump(data, f, indent=1)
        print(f"{len(data['witnesses'])} witnesses, {len(data['unreachable'])} unreachable "
              f"backends -> {args.out}")
        return 0
    with open(args.input) as f:
        data = json.load(f)
    out = replay_file(data)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    s = out["summary"]
    print(json.dumps(out["recorded_on"], indent=1))
    print(f"{s['matching']} of {s['witnesses']} witnesses reach their backend on this torch; "
          f"mismatching: {s['mismatching']}")
    for item in out["witnesses"]:
        r = item["torch"]
        print(f"  {item['backend']:<16} where={item['where']!s:<16} torch={r.get('backend')} "
              f"mf={r.get('memory_format')} forward={r.get('forward')} {r.get('error', '')}")
    return 0 if not s["mismatching"] else 1


if __name__ == "__main__":
    sys.exit(main())
