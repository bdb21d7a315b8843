"""Time ``symconv.diff`` on the pairs of docs/diff.md (the issue's pairs).

Each pair runs cold (caches of structures and condition values cleared) and then warm
(the same diff again in this process), side by side in one run; the target is under 5 s per
pair on a 2-core machine. Prints regions, validated witnesses and times; ``--samples N`` also
runs the sampled check (N random calls per pair) and prints its result.

    python3 benchmarks/diff_bench.py [--pairs threads,seed] [--samples 0] [--no-validate]
                                     [--baseline DIR] [--timeout S]

``--baseline DIR`` (a tree holding another version of the ``symconv`` package, e.g. from
``git archive OLD symconv | tar -x -C DIR``) also times each pair in a fresh process of that
version and of this one, side by side: CPU seconds (user+sys of the child, which the machine's
load inflates far less than wall time) and wall seconds, imports included.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
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


_CHILD = """
import sys, time
from symconv import preset
from symconv.queries.diff import diff
a, b = {a!r}, {b!r}
if b == "mkldnn-off":
    b = preset("cpu").replace(mkldnn_enabled=False)
res = diff(a, b)
bad = sum(1 for r in res.regions if r.witness is None or not r.witness.differs)
print(len(res.regions), bad, res.verdict)
"""


def _child(tree: str, a: str, b: str, timeout: float) -> tuple:
    """``(cpu s, wall s, regions, regions without a differing witness, verdict)`` of one
    diff in a fresh process importing ``symconv`` from ``tree``."""
    env = dict(os.environ, PYTHONPATH=tree)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-c", _CHILD.format(a=a, b=b)], env=env,
                           capture_output=True, text=True, timeout=timeout, cwd="/")
        out = p.stdout.split()
    except subprocess.TimeoutExpired:
        out = []
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if len(out) != 3:
        return cpu, wall, None, None, f"no answer within {timeout:.0f} s"
    return cpu, wall, int(out[0]), int(out[1]), out[2]


def _side_by_side(names: list, baseline: str, timeout: float) -> None:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"fresh processes, imports included; baseline {baseline}, current {here}")
    print(f"{'pair':<16} {'base cpu':>8} {'base wall':>9} {'cur cpu':>8} {'cur wall':>8} "
          f"{'cpu ratio':>9} {'regions b/c':>11}  verdict (current)")
    for n in names:
        a, b = PAIRS[n]
        if not isinstance(b, str):
            b = "mkldnn-off"
        bc, bw, br, _, bv = _child(baseline, a, b, timeout)
        cc, cw, cr, bad, cv = _child(here, a, b, timeout)
        ratio = f"{bc / cc:.2f}x" if br is not None and cr is not None else "-"
        print(f"{n:<16} {bc:>8.2f} {bw:>9.2f} {cc:>8.2f} {cw:>8.2f} {ratio:>9} "
              f"{br!s:>5}/{cr!s:<5}  {cv}" + (f" (baseline: {bv})" if br is None else "")
              + (f", {bad} witness(es) NOT differing" if bad else ""), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=",".join(PAIRS))
    ap.add_argument("--samples", type=int, default=0)
    ap.add_argument("--no-validate", action="store_true")
    ap.add_argument("--baseline", metavar="DIR")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    names = [n for n in args.pairs.split(",") if n]
    for n in names:
        if n not in PAIRS:
            sys.exit(f"unknown pair {n!r}; expected: {', '.join(PAIRS)}")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    if args.baseline:
        _side_by_side(names, args.baseline, args.timeout)
        print(f"load average {os.getloadavg()[0]:.2f}")
        return 0
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
