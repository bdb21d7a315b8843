"""``symconv explain``: the backend torch picks, why no earlier rule fired, and what to change."""

from __future__ import annotations

import argparse
import sys

from . import CLIError, emit_json
from .select import add_conv_arguments, conv_args_from

COMMAND = "explain"
HELP = "why a convolution gets its backend, and the smallest change that gets another one"
DESCRIPTION = (HELP + ": for every rule ordered before the chosen one, the first condition that "
               "failed, in the call's terms; --want adds the smallest change of the arguments "
               "or flags that reaches BACKEND (solver-minimised), or why none exists.")


def register(p: argparse.ArgumentParser):
    add_conv_arguments(p)
    p.add_argument("--want", metavar="BACKEND", help="the backend you would like to get")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return run


def run(args: argparse.Namespace) -> int:
    from symconv.queries import explain
    from .reach import parse_backend
    a = conv_args_from(args)
    env = a.pop("env")
    want = parse_backend(args.want) if args.want is not None else None
    if not (a["input"].is_concrete and a["weight"].is_concrete):
        raise CLIError("--input" if not a["input"].is_concrete else "--weight",
                       "explain needs concrete sizes (use 'symconv select' or 'symconv reach' "
                       "for symbols)")
    for k in ("stride", "padding", "dilation", "output_padding"):
        if not all(isinstance(v, int) for v in a[k]):
            raise CLIError("--" + k.replace("_", "-"), "explain needs integers")
    if not isinstance(a["groups"], int):
        raise CLIError("--groups", "explain needs an integer")
    ex = explain(a["input"], a["weight"], a["bias"], a["stride"], a["padding"], a["dilation"],
                 a["transposed"], a["output_padding"], a["groups"], env=env, want=want)
    ex.env_label = args.env + (" (with --set)" if args.set else "")
    if args.json:
        emit_json(ex.to_json())
    else:
        sys.stdout.write(ex.text() + "\n")
    return 0
