#!/usr/bin/env python3
"""Record ``symconv diff`` of a CUDA host against the cuDNN 8 preset, every witness checked by
the installed torch on the GPU (this process is side A), for CPU tests to replay.

On the GPU machine (imports symconv from the checkout it sits in; needs torch, numpy, sympy
and z3-solver)::

    python3 tools/gpu_diff.py --out $OUT/cuda_diff_witnesses.json

The diff is ``symconv.diff(None, 'cuda-cudnn8')``: side A is this process (its build, flags,
CPU and GPU), side B the cuDNN 8.9 / sm_80 / torch 2.13 preset. Tensors of up to 2**32
elements are built on the GPU for the checks (``--max-elements``; the 64-bit-indexing
regions need 2**31 and more), so every witness of side A is asked of torch's own
``_select_conv_backend`` and ``_conv_determine_backend_memory_format``. The record keeps, for
each region, its answers, the witness (values, facts, flags) and torch's checks; it is
``tests/data/cuda_diff_witnesses.json``, which ``tests/test_diff.py`` replays on the CPU:
symconv's concrete path for side A's recorded environment must give torch's recorded answer
for every witness, and side B's answer must differ.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def compact(res_json: dict) -> dict:
    """What the replay needs from ``DiffResult.to_json()`` (no formulas)."""
    regions = []
    for r in res_json["regions"]:
        w = r["witness"]
        regions.append({"kind": r["kind"], "a": r["a"], "b": r["b"], "witness": {
            k: w[k] for k in ("values", "facts", "flags_a", "flags_b", "transposed", "input",
                              "outcome_a", "outcome_b", "differs", "checks")}})
    return {"format_version": 1, "from_fields": res_json["from_fields"],
            "to": res_json["to"], "to_fields": res_json["to_fields"],
            "seconds": res_json["seconds"], "regions": regions}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--to", default="cuda-cudnn8")
    ap.add_argument("--max-elements", type=int, default=2**32)
    args = ap.parse_args()
    import torch

    import symconv.queries.diff as dm
    dm.MAX_REPLAY = args.max_elements
    t = time.perf_counter()
    res = dm.diff(None, args.to)
    out = compact(res.to_json())
    out["machine"] = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                      "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                      "max_elements": args.max_elements,
                      "wall_s": round(time.perf_counter() - t, 2)}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    st = collections.Counter((c["side"], c["status"]) for r in out["regions"]
                             for c in r["witness"]["checks"])
    print(f"{len(out['regions'])} regions; checks: {dict(st)}; written to {args.out}")
    return 1 if st.get(("A", "mismatch")) else 0


if __name__ == "__main__":
    raise SystemExit(main())
