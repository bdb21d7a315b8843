"""Time ``symconv.diff`` on the pairs of docs/diff.md (the issue's pairs).

Each pair runs cold (caches of structures and condition values cleared) and then warm
(the same diff again in this process), side by side in one run; the target is under 5 s per
pair on a 2-core machine. Prints regions, validated witnesses and times; ``--samples N`` also
runs the sampled check (N random calls per pair) and prints its result.

    python3 benchmarks/diff_bench.py [--pairs threads,seed] [--samples 0] [--no-validate]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from symconv import preset
from symconv.queries.diff import diff, sampled_check
from symconv.queries.space import clear_caches

PAIRS = {
    "threads": ("cpu", "cpu-mt"),
    "mkldnn": ("cpu", preset("cpu").replace(mkldnn_enabled=False)),
    "avx512bf16": ("cpu", "cpu-avx512bf16"),
    "seed_vs_2.13": ("2.4", "2.13"),
    "2.13_vs_main": ("2.13", "main"),
    "h100_vs_cudnn8": ("cuda-h100", "cuda-cudnn8"),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=",".join(PAIRS))
    ap.add_argument("--samples", type=int, default=0)
    ap.add_argument("--no-validate", action="store_true")
    args = ap.parse_args()
    names = [n for n in args.pairs.split(",") if n]
    for n in names:
        if n not in PAIRS:
            sys.exit(f"unknown pair {n!r}; expected: {', '.join(PAIRS)}")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"{'pair':<16} {'regions':>7} {'validated':>9} {'cold s':>8} {'warm s':>8} "
          f"{'warm/cold':>9}  verdict")
    for n in names:
        a, b = PAIRS[n]
        clear_caches()
        t = time.perf_counter()
        res = diff(a, b, validate=not args.no_validate)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        diff(a, b, validate=not args.no_validate)
        warm = time.perf_counter() - t
        val = sum(1 for r in res.regions if r.witness
                  for c in r.witness.checks if c.status == "validated")
        print(f"{n:<16} {len(res.regions):>7} {val:>9} {cold:>8.2f} {warm:>8.2f} "
              f"{warm / cold:>9.2f}  {res.verdict}", flush=True)
        if args.samples:
            t = time.perf_counter()
            c = sampled_check(res, n=args.samples, seed=1)
            print(f"{'':<16} sampled check: {c.samples} calls, {c.differing} differ, "
                  f"{len(c.uncovered)} outside every region, {len(c.false_regions)} in a "
                  f"region without a difference ({time.perf_counter() - t:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
