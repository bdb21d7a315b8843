"""Time ``symconv.diff`` on the pairs of docs/diff.md (the issue's pairs).

Each pair runs in a fresh Python process, which reports two figures:

* **in-process**: the wall seconds of the ``diff(...)`` call itself (cold: the process has
  computed nothing before it), and its CPU seconds summed over the process and the worker
  processes the diff forks (``jobs``: 2 by default, one per core of our 2-core machines);
* **fresh process**: the same from the child's start to the end of the diff (interpreter
  start, ``import symconv`` with torch, and the diff).

The target is under 5 s per pair on a 2-core machine: the wall seconds are what a user waits
for, and what the ``< target?`` columns read (with ``--jobs 1`` the diff runs in one process
and wall and CPU seconds are about equal). Wall time on a shared machine is inflated by other
jobs: the load average is printed before and after, and ``--repeat N`` runs each pair N times
and keeps the fastest run (the least disturbed). ``--warm`` also times the same diff a second
time in the child (caches kept). ``--samples N`` also runs the sampled check (N random calls)
in the child and prints its result and time.

    python3 benchmarks/diff_bench.py [--pairs threads,seed] [--repeat 1] [--jobs N] [--warm]
                                     [--samples 0] [--no-validate] [--baseline DIR]
                                     [--timeout S]

``--baseline DIR`` (a tree holding another version of the ``symconv`` package, e.g. from
``git archive OLD symconv | tar -x -C DIR``) runs each pair in that tree too, one after the
other, and prints the two side by side with their wall-time ratio (a tree whose ``diff`` has
no ``jobs`` runs in one process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TARGET_S = 5.0

# name -> (from, to); "mkldnn-off" is the cpu preset with torch.backends.mkldnn disabled
PAIRS = {
    "threads": ("cpu", "cpu-mt"),
    "mkldnn": ("cpu", "mkldnn-off"),
    "avx512bf16": ("cpu", "cpu-avx512bf16"),
    "seed_vs_2.13": ("2.4", "2.13"),
    "2.13_vs_main": ("2.13", "main"),
    "h100_vs_cudnn8": ("cuda-h100", "cuda-cudnn8"),
}

_CHILD = r"""
import inspect, json, resource, sys, time


def cpu():  # this process and its waited-for children (the diff's workers)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


c0, w0 = cpu(), time.perf_counter()
from symconv import preset
from symconv.queries.diff import diff, sampled_check
imports = cpu() - c0
a, b, validate, warm, samples, jobs = {a!r}, {b!r}, {validate!r}, {warm!r}, {samples!r}, {jobs!r}
if b == "mkldnn-off":
    b = preset("cpu").replace(mkldnn_enabled=False)
kw = {{}}
if "jobs" in inspect.signature(diff).parameters:
    kw["jobs"] = jobs
c, w = cpu(), time.perf_counter()
res = diff(a, b, validate=validate, **kw)
# process_time counts from the process's start: interpreter, imports and this diff
out = dict(imports=imports, cpu=cpu() - c, wall=time.perf_counter() - w,
           fresh_cpu=cpu(), fresh_end=time.time(), jobs=kw.get("jobs", 1),
           regions=len(res.regions), verdict=res.verdict, unknown=len(res.unknown),
           bad=sum(1 for r in res.regions if r.witness is None or not r.witness.differs),
           mismatch=sum(1 for r in res.regions if r.witness
                        for ch in r.witness.checks if ch.status == "mismatch"),
           validated=sum(1 for r in res.regions if r.witness
                         for ch in r.witness.checks if ch.status == "validated"))
if warm:
    c, w = cpu(), time.perf_counter()
    diff(a, b, validate=validate, **kw)
    out["warm"] = time.perf_counter() - w
if samples:
    c = time.process_time()
    chk = sampled_check(res, n=samples, seed=1)
    out["sampled"] = dict(n=chk.samples, differ=chk.differing, outside=len(chk.uncovered),
                          false=len(chk.false_regions), cpu=time.process_time() - c)
print("@@" + json.dumps(out))
"""


def _child(tree: str, a: str, b: str, args) -> dict:
    """One diff in a fresh process importing ``symconv`` from ``tree``: the diff's own
    figures plus ``total_cpu`` / ``total_wall``, the process from its start to the end of the
    diff (interpreter, imports, diff; not the warm run or the sampled check)."""
    env = dict(os.environ, PYTHONPATH=tree)
    code = _CHILD.format(a=a, b=b, validate=not args.no_validate, warm=args.warm,
                         samples=args.samples, jobs=args.jobs)
    t = time.time()
    try:
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=args.timeout, cwd="/")
        lines = [x for x in p.stdout.splitlines() if x.startswith("@@")]
        out = json.loads(lines[-1][2:]) if lines else {
            "error": (p.stderr.strip().splitlines() or ["no answer"])[-1]}
    except subprocess.TimeoutExpired:
        out = {"error": f"no answer within {args.timeout:.0f} s"}
    if "fresh_end" in out:
        out["total_wall"] = out["fresh_end"] - t  # from the start to the end of the diff
        out["total_cpu"] = out["fresh_cpu"]
    return out


def _best(tree: str, a: str, b: str, args) -> dict:
    runs = [_child(tree, a, b, args) for _ in range(max(1, args.repeat))]
    ok = [r for r in runs if "error" not in r]
    return min(ok, key=lambda r: r["wall"]) if ok else runs[-1]


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} CPUs)"


def _row(name: str, r: dict) -> str:
    if "error" in r:
        return f"{name:<16} {r['error']}"
    ok_in = "yes" if r["wall"] < TARGET_S else "no"
    ok_fresh = "yes" if r["total_wall"] < TARGET_S else "no"
    s = (f"{name:<16} {r['regions']:>7} {r['wall']:>8.2f} {r['cpu']:>8.2f} "
         f"{r['imports']:>7.2f} {r['total_wall']:>8.2f} {r['total_cpu']:>8.2f} "
         f"{ok_in:>7} {ok_fresh:>6}  {r['verdict']}")
    if r.get("warm") is not None:
        s += f", warm {r['warm']:.2f} s"
    if r["bad"]:
        s += f", {r['bad']} witness(es) NOT differing"
    if r["mismatch"]:
        s += f", {r['mismatch']} torch MISMATCH(es)"
    if r["unknown"]:
        s += f", {r['unknown']} unknown"
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=",".join(PAIRS))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--warm", action="store_true")
    ap.add_argument("--samples", type=int, default=0)
    ap.add_argument("--no-validate", action="store_true")
    ap.add_argument("--baseline", metavar="DIR")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--jobs", type=int, default=None,
                    help="the diff's processes (default: the library's, 2)")
    args = ap.parse_args()
    names = [n for n in args.pairs.split(",") if n]
    for n in names:
        if n not in PAIRS:
            sys.exit(f"unknown pair {n!r}; expected: {', '.join(PAIRS)}")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    jobs = "the default" if args.jobs is None else args.jobs
    print(f"before: {_load()}; best of {max(1, args.repeat)} fresh process(es) per pair; "
          f"jobs {jobs}; target < {TARGET_S:g} s (wall)")
    if args.baseline:
        print(f"baseline {args.baseline}, current {here}; wall seconds of the diff call "
              "(in-process) and of the whole process (fresh, imports included); CPU seconds "
              "of the diff summed over its processes")
        print(f"{'pair':<16} {'base in':>8} {'cur in':>8} {'ratio':>6} {'base fresh':>10} "
              f"{'cur fresh':>9} {'base cpu':>8} {'cur cpu':>8} {'regions b/c':>11}  "
              "verdict (current)")
        for n in names:
            a, b = PAIRS[n]
            br = _best(args.baseline, a, b, args)
            cr = _best(here, a, b, args)
            if "error" in br or "error" in cr:
                print(f"{n:<16} baseline: {br.get('error', 'ok')}; current: "
                      f"{cr.get('error', 'ok')}", flush=True)
                continue
            print(f"{n:<16} {br['wall']:>8.2f} {cr['wall']:>8.2f} "
                  f"{br['wall'] / cr['wall']:>5.2f}x {br['total_wall']:>10.2f} "
                  f"{cr['total_wall']:>9.2f} {br['cpu']:>8.2f} {cr['cpu']:>8.2f} "
                  f"{br['regions']:>5}/{cr['regions']:<5}  {cr['verdict']}", flush=True)
        print(f"after: {_load()}")
        return 0
    print(f"{'':<16} {'':>7} {'in-process diff':>17} {'fresh process (imports incl.)':>33} "
          f"{'< target?':>14}")
    print(f"{'pair':<16} {'regions':>7} {'wall s':>8} {'cpu s':>8} {'imports':>7} "
          f"{'wall s':>8} {'cpu s':>8} {'in-proc':>7} {'fresh':>6}  verdict")
    for n in names:
        a, b = PAIRS[n]
        r = _best(here, a, b, args)
        print(_row(n, r), flush=True)
        if "sampled" in r:
            c = r["sampled"]
            print(f"{'':<16} sampled check: {c['n']} calls, {c['differ']} differ, "
                  f"{c['outside']} outside every region, {c['false']} in a region without a "
                  f"difference ({c['cpu']:.1f} s CPU)", flush=True)
    print(f"after: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
