"""``symconv diff``: where two environments (presets, flags, torch versions) answer differently."""

from __future__ import annotations

import argparse
import sys

from . import CLIError, emit_json
from ._args import add_query_arguments, parse_env, query_scope, where_errors

COMMAND = "diff"
HELP = "every region of calls where two environments pick another backend, memory format, " \
       "output shape or error"
DESCRIPTION = (HELP + ". A side is a preset (symconv reach --all lists them), 'native' (this "
               "process) or a torch version (2.4, 2.13, main: the other side's build at that "
               "version). Runtime flags equal on both sides vary together; flags that differ "
               "are each side's own. 'no difference' is a proof. Exit status 1 when the answer "
               "is unknown or a witness disagrees with torch.")


def register(p: argparse.ArgumentParser):
    p.add_argument("--from", dest="a", required=False, metavar="PRESET_OR_VERSION",
                   help="side A: a preset, 'native', or a torch version (2.4, 2.13, main)")
    p.add_argument("--to", dest="b", required=False, metavar="PRESET_OR_VERSION",
                   help="side B, as --from")
    p.add_argument("--set-from", action="append", metavar="KEY=VALUE",
                   help="override an Environment field of side A, e.g. --set-from "
                        "mkldnn_enabled=false")
    p.add_argument("--set-to", action="append", metavar="KEY=VALUE",
                   help="override an Environment field of side B")
    add_query_arguments(p, "N<=8, dtype==float16, not transposed")
    p.add_argument("--no-validate", action="store_true",
                   help="do not replay witnesses on the installed torch")
    p.add_argument("--limit", type=int, default=20, metavar="N",
                   help="print at most N regions (default 20; --json has all)")
    p.add_argument("--minimize", action="store_true",
                   help="shrink every witness value towards its preferred value (slower; by "
                   "default only values that can be pinned are)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes sharing the work: this one and N-1 forked workers "
                        "(default: SYMCONV_DIFF_JOBS or 2; 1: no worker). The regions do not "
                        "depend on it")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return run


def _side(text: str | None, sets: list | None, other, arg: str, set_arg: str):
    from symconv.env import PRESETS, environment_for
    if text is None:
        raise CLIError(arg, "give a preset, 'native' or a torch version")
    if text == "native" or text in PRESETS:
        env = parse_env(text, sets, arg)
        return env, text
    try:
        env = environment_for(text, other)
    except ValueError as e:
        raise CLIError(arg, str(e)) from None
    if sets:
        import dataclasses
        from symconv.env import Environment
        from symconv.env import PRESETS as P
        # reuse parse_env's value parsing on a preset with the same field types
        base = parse_env("cpu", sets, set_arg)
        fields = {f.name for f in dataclasses.fields(Environment)}
        changes = {k: getattr(base, k) for k in fields
                   if getattr(base, k) != getattr(P["cpu"][1], k)}
        try:
            env = dataclasses.replace(env, **changes)
        except ValueError as e:
            raise CLIError(set_arg, str(e)) from None
    return env, text


def run(args: argparse.Namespace) -> int:
    from symconv.env import PRESETS
    from symconv.queries.diff import diff
    dims, where = query_scope(args)
    if args.limit < 0:
        raise CLIError("--limit", f"expected a non-negative number, got {args.limit}")
    from symconv.queries.diff import _jobs_arg
    if args.jobs is not None and args.jobs < 1:
        raise CLIError("--jobs", f"expected a number >= 1, got {args.jobs}")
    try:
        jobs = _jobs_arg(args.jobs)
    except ValueError as e:  # SYMCONV_DIFF_JOBS
        raise CLIError("SYMCONV_DIFF_JOBS", str(e).replace("SYMCONV_DIFF_JOBS must", "must")
                       ) from None
    # a version side takes the other side's build: resolve presets first
    a_is_preset = args.a == "native" or args.a in PRESETS
    if a_is_preset or args.b is None or not (args.b == "native" or args.b in PRESETS):
        ea, la = _side(args.a, args.set_from, None, "--from", "--set-from")
        eb, lb = _side(args.b, args.set_to, ea, "--to", "--set-to")
    else:
        eb, lb = _side(args.b, args.set_to, None, "--to", "--set-to")
        ea, la = _side(args.a, args.set_from, eb, "--from", "--set-from")
    la += " (with --set-from)" if args.set_from else ""
    lb += " (with --set-to)" if args.set_to else ""
    # the first line comes with the first progress report: an argument that the comparison
    # refuses before any work (a contradictory --where) stays a one-line error
    header = [f"symconv diff: comparing {la} and {lb} ...\n"]

    def progress(message: str) -> None:
        if header:
            sys.stderr.write(header.pop())
        sys.stderr.write(f"symconv diff: {message}\n")
    with where_errors():
        res = diff(ea, eb, dims=dims, where=where, validate=not args.no_validate,
                   minimize=args.minimize, jobs=jobs, progress=progress)
    res.label_a, res.label_b = la, lb
    if args.json:
        emit_json(res.to_json())
    else:
        sys.stdout.write(res.text(limit=args.limit) + "\n")
    bad = any(c.status == "mismatch" for r in res.regions if r.witness
              for c in r.witness.checks) or any(r.witness is not None and not r.witness.differs
                                                for r in res.regions)
    return 1 if res.verdict == "unknown" or bad else 0
