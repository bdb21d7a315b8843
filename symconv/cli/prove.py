"""``symconv prove``: run the proof catalogue (``proofs/``) and report like a compiler.

One line per invariant (``file:line: verdict: name [scope] (time)``), notes with counterexamples
and what torch did with them, and a summary line. Exit status 0 exactly when every invariant
has its expected verdict; 1 otherwise (refuted where a proof was expected, unknown, or a proof
that crashed); 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

from . import CLIError

COMMAND = "prove"
HELP = "prove the catalogue of convolution invariants (for CI): proved / refuted / unknown"
DESCRIPTION = (HELP + ". Each invariant is proven over unbounded integers for 1-D, 2-D and 3-D "
               "convolutions; counterexamples are replayed on the installed torch. Exit status "
               "0 exactly when every invariant has its expected verdict.")


def _proofs(name: str):
    return importlib.import_module(f"proofs.{name}")


def register(p: argparse.ArgumentParser):
    p.add_argument("names", nargs="*", metavar="NAME", help="invariants to run (default: all)")
    p.add_argument("--dims", metavar="DIMS", default="1,2,3",
                   help="spatial ranks to prove, a comma-separated subset of 1,2,3")
    p.add_argument("--env", metavar="PRESET", action="append",
                   help="environment preset(s) for the dispatch invariants (default: every "
                        "preset; repeat or comma-separate for several)")
    p.add_argument("--timeout", metavar="S", help="solver time limit per query, in seconds "
                   "(default: symconv.solver's, 10); a timeout is 'unknown', never 'proved'")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report to FILE")
    p.add_argument("--markdown", action="store_true",
                   help="print the Markdown catalogue (docs/proofs.md) instead of the log")
    p.add_argument("--list", action="store_true", help="list the invariants and exit")
    p.add_argument("--no-replay", action="store_true",
                   help="do not replay counterexamples on torch")
    p.add_argument("--jobs", metavar="N", help="worker processes (default: up to 2)")
    return run


def _parse_dims(text: str) -> tuple[int, ...]:
    parts = [t.strip() for t in str(text).split(",")]
    out = []
    for t in parts:
        if t not in ("1", "2", "3"):
            raise CLIError("--dims", f"expected a comma-separated subset of 1,2,3, got {text!r}")
        if int(t) not in out:
            out.append(int(t))
    return tuple(sorted(out))


def _parse_envs(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    worlds = _proofs("worlds")
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    known = list(worlds.ENV_NAMES) + ["native"]
    if not names:
        raise CLIError("--env", "expected a preset name")
    for n in names:
        if n not in known:
            raise CLIError("--env", f"unknown environment preset {n!r}; expected one of: "
                           + ", ".join(known))
    return names


def _parse_timeout(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        raise CLIError("--timeout", f"expected a number of seconds, got {text!r}") from None
    if not (v > 0) or v > 86400:
        raise CLIError("--timeout", f"expected a number of seconds in (0, 86400], got {text!r}")
    return max(1, round(v * 1000))


def _parse_jobs(text: str | None) -> int:
    runner = _proofs("runner")
    if text is None:
        return runner.default_jobs()
    try:
        v = int(text)
    except ValueError:
        raise CLIError("--jobs", f"expected a positive integer, got {text!r}") from None
    if v < 1 or v > 64:
        raise CLIError("--jobs", f"expected a positive integer up to 64, got {text!r}")
    return v


def run(args: argparse.Namespace) -> int:
    core = _proofs("core")
    report = _proofs("report")
    runner = _proofs("runner")
    catalogue = core.select(None)
    if args.list:
        if args.json:
            sys.stdout.write(json.dumps([{"name": inv.name, "item": inv.item,
                                          "summary": inv.summary} for inv in catalogue],
                                        indent=2) + "\n")
            return 0
        for inv in catalogue:
            sys.stdout.write(f"{inv.name:48s} item {inv.item:8s} {inv.summary}\n")
        return 0
    known = {inv.name for inv in catalogue}
    for n in args.names:
        if n not in known:
            raise CLIError("NAME", f"unknown invariant {n!r}; 'symconv prove --list' lists the "
                           f"{len(known)} invariants")
    dims = _parse_dims(args.dims)
    envs = _parse_envs(args.env)
    if envs == ["native"] or (envs and "native" in envs):
        raise CLIError("--env", "'native' is not a proof environment; name a preset")
    timeout_ms = _parse_timeout(args.timeout)
    jobs = _parse_jobs(args.jobs)
    if args.junit is not None:
        try:
            open(args.junit, "a").close()
        except OSError as e:
            raise CLIError("--junit", f"cannot write {args.junit!r}: {e.strerror or e}") from None
    plan = runner.Plan(names=args.names or None, dims=dims, envs=envs, timeout_ms=timeout_ms,
                       replay=not args.no_replay, jobs=jobs)
    stream = not (args.json or args.markdown)
    t0 = time.perf_counter()

    def on_result(r):
        if stream:
            sys.stdout.write(report.line(r) + "\n")
            for n in report.notes(r):
                sys.stdout.write(n + "\n")
            sys.stdout.flush()
    results = runner.execute(plan, on_result)
    summary = report.summarize(results, time.perf_counter() - t0)
    if args.junit is not None:
        with open(args.junit, "w", encoding="utf-8") as f:
            f.write(report.to_junit(results, summary))
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(results, summary), indent=2, default=str)
                         + "\n")
    elif args.markdown:
        cmd = "symconv prove " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["prove"] \
            else "symconv prove"
        sys.stdout.write(report.to_markdown(results, summary, command=cmd.strip()))
    else:
        sys.stdout.write(report.summary_line(summary) + "\n")
    return 0 if summary.ok else 1
