"""Generate docs/proofs.md from the catalogue: ``python -m proofs.docs > docs/proofs.md``.

It runs the whole catalogue (as ``symconv prove`` does, counterexamples replayed on the
installed torch) and prints the Markdown report: every statement, its verdict and time, and
each counterexample with what torch did with it. ``--out FILE`` writes the file instead.
"""

from __future__ import annotations

import argparse
import sys
import time

from . import report, runner


# Counterexamples of CUDA profiles cannot run on a CPU torch. These were replayed once on the GPU
# machine (NVIDIA H100 80GB HBM3, torch 2.11.0+cu130, cuDNN 91900), with tensors built with
# exactly symconv's strides (torch.empty(...).as_strided), selection only unless said.
H100_EVIDENCE = """## Appendix: CUDA counterexamples replayed on an H100

`symconv prove` replays CUDA counterexamples against the recorded H100 runs in
`tests/data/cuda_records.json.gz` when the repository is checked out. In addition, the
counterexamples below were run once on an H100 (torch 2.11.0+cu130, cuDNN 9.19; tensors built
with exactly symconv's strides). symconv's answer for the `cuda-h100` profile is in brackets.

| call | torch on the H100 | symconv |
|---|---|---|
| input [1, 1, 1, 1] f32, weight [1, 1, 1, 1], padding [65536, 65536], dilation [0, 0] (output needs 64-bit indexing) | `Cudnn` | `Cudnn`, needs_64bit_indexing_no_split true |
| transposed: input [1, 1, 1], weight [1, 1, 65536], dilation [46516] | `CudnnTranspose` | `CudnnTranspose`, needs_64bit_indexing_no_split true |
| depthwise channels-last: input [1, 2, 1, 1] strides (2, 1, 2, 2), weight [2, 1, 1, 1], groups 2, padding [40000, 40000] | `Cudnn`, channels_last | `Cudnn` (also for the `cuda-cudnn8` profile: the 2.11+ depthwise rule asks only whether input and weight fit 32-bit indexing) |
| the same in float16 with padding [16384, 16384], run with `torch.convolution` | ran on cuDNN: output [1, 2, 32769, 32769] = 2,147,614,722 elements (> 2^31 - 1), values correct | — |

The H100 cannot show what cuDNN 8.9 does with such a call (the `cuda-cudnn8` counterexample
of `cudnn_never_64bit_indexing`); that verdict rests on the upstream source symconv models.
Note also that torch's own `x.contiguous(memory_format=torch.channels_last)` leaves a
[1, 2, 1, 1] tensor with contiguous strides (it already counts as channels-last contiguous),
and torch then selects `CudaDepthwise2d` for it: the channels-last path needs the channels-last
strides.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m proofs.docs", description=__doc__)
    ap.add_argument("--out", help="write to this file instead of stdout")
    ap.add_argument("--jobs", type=int, default=runner.default_jobs())
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    results = runner.execute(runner.Plan(jobs=args.jobs))
    summary = report.summarize(results, time.perf_counter() - t0)
    text = report.to_markdown(results, summary, command="symconv prove") + "\n" + H100_EVIDENCE
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    sys.stderr.write(report.summary_line(summary) + "\n")
    return 0 if summary.ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
