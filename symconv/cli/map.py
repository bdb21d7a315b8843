"""``symconv map``: a picture of which backend is chosen over a 2-D slice of argument space."""

from __future__ import annotations

import argparse
import sys

from . import CLIError, emit_json
from .select import add_conv_arguments, conv_args_from

COMMAND = "map"
HELP = "which backend is chosen over a 2-D slice (a picture, or the grid as JSON)"
DESCRIPTION = (HELP + ". Name the varying sizes or parameters with symbols in the call (e.g. "
               "--input N,3,H,H) and give their ranges with --x and --y (e.g. --x H=1:512 "
               "--y N=1:64). The grid is evaluated at once with numpy over the same rules.")


def register(p: argparse.ArgumentParser):
    add_conv_arguments(p)
    p.add_argument("--x", required=True, metavar="NAME=A:B[:STEP]",
                   help="horizontal axis, e.g. H=1:512, H=1:512:8 or H=7,14,28")
    p.add_argument("--y", required=True, metavar="NAME=A:B[:STEP]", help="vertical axis")
    p.add_argument("--out", metavar="PATH", help="write the picture here (.png, .svg, .pdf)")
    p.add_argument("--title", help="the picture's title")
    p.add_argument("--check", type=int, default=0, metavar="N",
                   help="also ask the installed torch for N random cells (this process only)")
    p.add_argument("--json", action="store_true", help="print the grid as JSON")
    return run


def run(args: argparse.Namespace) -> int:
    from symconv.queries.dmap import dispatch_map, parse_axis
    axes = []
    for flag, text in (("--x", args.x), ("--y", args.y)):
        try:
            axes.append(parse_axis(text))
        except ValueError as e:
            raise CLIError(flag, str(e)) from None
    if args.check < 0:
        raise CLIError("--check", "must be >= 0")
    a = conv_args_from(args)
    env = a.pop("env")
    _check_size_axes(a, axes)
    try:
        m = dispatch_map(a["input"], a["weight"], a["bias"], a["stride"], a["padding"],
                         a["dilation"], a["transposed"], a["output_padding"], a["groups"],
                         x=axes[0], y=axes[1], env=env)
    except ValueError as e:
        msg = str(e)
        arg = "--y" if msg.startswith(f"axis {axes[1].name!r}") else "--x"
        if "on no axis" in msg:
            arg = "--input"
        raise CLIError(arg, msg) from None
    m.env_label = args.env + (" (with --set)" if args.set else "")
    if args.out:
        try:
            m.plot(args.out, title=args.title)
        except (OSError, ValueError) as e:
            raise CLIError("--out", str(e).splitlines()[0]) from None
    check = m.check_against_torch(args.check) if args.check else None
    if args.json:
        obj = m.to_json()
        if check is not None:
            obj["torch_check"] = {"checked": check.checked, "mismatches": check.mismatches,
                                  "skipped": check.skipped}
        emit_json(obj)
    else:
        sys.stdout.write(m.summary() + "\n")
        if args.out:
            sys.stdout.write(f"picture written to {args.out}\n")
        if check is not None:
            if check.skipped:
                sys.stdout.write(f"torch check skipped: {check.skipped}\n")
            else:
                sys.stdout.write(f"torch agrees on {check.checked - len(check.mismatches)} of "
                                 f"{check.checked} sampled cells\n")
                for xv, yv, mine, got in check.mismatches[:10]:
                    sys.stdout.write(f"  MISMATCH at {m.x.name}={xv} {m.y.name}={yv}: symconv "
                                     f"{mine}, torch {got}\n")
    return 1 if check is not None and check.mismatches else 0


def _check_size_axes(call: dict, axes: list) -> None:
    """A symbol in a tensor's shape is a size: an axis giving it a negative value describes no
    call (as ``N<0`` in reach's and diff's --where, or a negative entry of --input)."""
    sizes: dict[str, str] = {}
    for flag, spec in (("--input", call["input"]), ("--weight", call["weight"]),
                       ("--bias-shape", call["bias"])):
        for x in spec.shape if spec is not None else ():
            for sym in getattr(x, "free_symbols", ()):
                sizes.setdefault(sym.name, flag)
    for flag, axis in zip(("--x", "--y"), axes):
        if axis.name in sizes and int(axis.values.min()) < 0:
            raise CLIError(flag, f"{axis.name} is a size (in {sizes[axis.name]}): its values must "
                                 f"be >= 0, got {int(axis.values.min())}")
