"""``symconv reach``: can a backend be reached, with a torch-validated witness, or why not."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import CLIError, emit_json
from ._args import add_query_arguments, parse_env, query_scope, where_errors

COMMAND = "reach"
HELP = "decide whether a backend is reachable: a witness torch confirms, or the proof it is not"
DESCRIPTION = (HELP + ". Runtime flags (mkldnn, nnpack, cuDNN flags, threads, grad mode) may "
               "differ from the environment's; build facts never do. --all prints the backend x "
               "environment-preset table.")


def register(p: argparse.ArgumentParser):
    p.add_argument("backend", nargs="?", metavar="BACKEND",
                   help="a ConvBackend name, e.g. NnpackSpatial (case-insensitive)")
    p.add_argument("--env", default=None,
                   help="environment preset (default: this process, 'native'); see "
                        "'symconv reach --all'")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override an Environment field, e.g. --set num_threads=2")
    add_query_arguments(p, "N<=8, H==W, dtype==float16, not mkldnn_enabled")
    p.add_argument("--fixed-flags", action="store_true",
                   help="keep the environment's runtime flags as they are")
    p.add_argument("--no-validate", action="store_true", help="do not replay witnesses on torch")
    p.add_argument("--all", action="store_true",
                   help="the table of every backend under every environment preset")
    p.add_argument("--region-limit", type=int, default=12, metavar="N",
                   help="print at most N parts of the region (default 12; --json has all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return run


def parse_backend(name: str | None):
    from symconv import ConvBackend
    if name is None:
        raise CLIError("BACKEND", "give a backend name (or --all)")
    try:
        return ConvBackend.parse(name)
    except ValueError:
        raise CLIError("BACKEND", f"unknown backend {name!r}; expected one of: "
                       + ", ".join(b.name for b in ConvBackend)) from None


def run(args: argparse.Namespace) -> int:
    from symconv.queries import reach
    dims, where = query_scope(args)
    if args.region_limit < 0:
        raise CLIError("--region-limit", f"must be >= 0, got {args.region_limit}")
    if args.all:
        if args.env is not None:
            raise CLIError("--env", "--all covers every environment preset; give --env "
                           "without --all")
        return _table(args, dims, where)
    backend = parse_backend(args.backend)
    args.env = "native" if args.env is None else args.env
    env = parse_env(args.env, args.set)
    with where_errors():
        res = reach(backend, env=env, dims=dims, where=where, validate=not args.no_validate,
                    vary_flags=not args.fixed_flags)
    res.env_label = args.env + (" (with --set)" if args.set else "")
    if args.json:
        emit_json(res.to_json())
    else:
        sys.stdout.write(res.text(region_limit=args.region_limit) + "\n")
    if res.verdict == "unknown" or (res.validation is not None
                                    and res.validation.status == "mismatch"):
        return 1
    return 0


def _table(args, dims, where) -> int:
    from symconv import ConvBackend
    from symconv.env import PRESETS
    from symconv.queries import reach
    presets = list(PRESETS) + ["native"]
    backends = [parse_backend(args.backend)] if args.backend else list(ConvBackend)
    rows = []
    status = 0
    for b in backends:
        row: dict[str, dict[str, Any]] = {}
        for name in presets:
            env = parse_env(name, args.set)
            with where_errors():
                r = reach(b, env=env, dims=dims, where=where, validate=not args.no_validate,
                          vary_flags=not args.fixed_flags)
            if r.verdict == "reachable":
                v = r.validation.status if r.validation else "not-validated"
                cell = {"validated": "yes, torch", "recorded": "yes, GPU",
                        "not-validated": "yes", "mismatch": "MISMATCH"}[v]
                if v == "mismatch":
                    status = 1
            elif r.verdict == "unreachable":
                cell = "no (proof)"
            else:
                cell = "unknown"
                status = 1
            row[name] = {"cell": cell, "verdict": r.verdict,
                         "validation": r.validation.status if r.validation else None,
                         "witness": r.witness.to_json() if r.witness else None,
                         "seconds": round(r.seconds, 4)}
        rows.append((b, row))
    if args.json:
        emit_json({"presets": presets, "rows": {b.name: row for b, row in rows}})
        return status
    w0 = max([len("backend")] + [len(b.name) for b, _ in rows])
    widths = {p: max(len(p), max(len(row[p]["cell"]) for _, row in rows)) for p in presets}
    sys.stdout.write(f"{'backend':<{w0}}  " + "  ".join(f"{p:<{widths[p]}}" for p in presets)
                     + "\n")
    for b, row in rows:
        sys.stdout.write(f"{b.name:<{w0}}  " + "  ".join(f"{row[p]['cell']:<{widths[p]}}"
                                                       for p in presets) + "\n")
    sys.stdout.write("yes, torch = reachable, witness replayed on this torch; yes, GPU = "
                     "witness replayed on the GPU machine (tests/data/cuda_witnesses.json); yes "
                     "= reachable (another build: not replayable here); no (proof) = proved "
                     "unreachable\n")
    return status
