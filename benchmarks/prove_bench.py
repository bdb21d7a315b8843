"""Seconds per invariant of the proof catalogue, and the total, as ``symconv prove`` runs it.

    python benchmarks/prove_bench.py                 # the whole catalogue, default workers
    python benchmarks/prove_bench.py --jobs 1        # one process: times add up to the total
    python benchmarks/prove_bench.py --no-replay NAME ...

Each invariant's time is what its proofs took in the worker(s) that ran them (summed over
workers when its environments are split), counterexample search and torch replays included.
The acceptance target is the whole catalogue in under 60 s (aim: 30 s) on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from proofs import report, runner


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--jobs", type=int, default=runner.default_jobs())
    ap.add_argument("--dims", default="1,2,3")
    ap.add_argument("--env", action="append")
    ap.add_argument("--no-replay", action="store_true")
    ap.add_argument("--sort", action="store_true", help="slowest first")
    args = ap.parse_args()
    plan = runner.Plan(names=args.names or None,
                       dims=tuple(int(d) for d in args.dims.split(",")), envs=args.env,
                       replay=not args.no_replay, jobs=args.jobs)
    t0, c0 = time.perf_counter(), time.process_time()
    results = runner.execute(plan)
    wall = time.perf_counter() - t0
    rows = sorted(results, key=lambda r: -r.seconds) if args.sort else results
    width = max(len(r.invariant.name) for r in results)
    print(f"{'invariant':{width}}  {'seconds':>8}  verdict")
    for r in rows:
        v = r.verdict + ("" if r.ok else f" (expected {r.expected})")
        print(f"{r.invariant.name:{width}}  {r.seconds:8.2f}  {v}")
    print(f"{'sum of invariant times':{width}}  {sum(r.seconds for r in results):8.2f}")
    print(f"{'wall clock':{width}}  {wall:8.2f}  ({args.jobs} worker(s), {os.cpu_count()} CPUs; "
          f"parent CPU {time.process_time() - c0:.2f}s)")
    print(report.summary_line(report.summarize(results, wall)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
