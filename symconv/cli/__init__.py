"""The ``symconv`` command line: one module per command in this package.

Each command module defines ``COMMAND`` (its name), ``HELP`` and ``register(parser)`` (which
adds its arguments and returns the function that runs it). Errors in arguments print one line
naming the argument and exit with status 2; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main", "CLIError", "ArgParser"]

EXIT_OK, EXIT_TORCH_ERROR, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class CLIError(Exception):
    """A bad argument: ``argument`` names it (e.g. ``--input``)."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"argument {argument}: {message}")
        self.argument = argument


MAX_LINE = 400  # an error line echoes the user's text: a 5,000-character argument is clipped


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """``text`` on one line (whitespace runs become one space), clipped to ``limit``."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[:limit - 30] + f"... ({len(text) - limit + 30} more characters)"
    return text


class ArgParser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(one_line(f"{self.prog}: error: {message}") + "\n")
        raise SystemExit(EXIT_USAGE)


def _commands() -> dict[str, Any]:
    out = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        name = getattr(mod, "COMMAND", None)
        if name:
            out[name] = mod
    return out


_PARSER: tuple[ArgParser, dict[str, Callable]] | None = None


def build_parser() -> tuple[ArgParser, dict[str, Callable]]:
    """The parser and each command's runner, built once per process (parsing keeps no
    state in the parser, and building it costs more than most answers)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = _build_parser()
    return _PARSER


def _build_parser() -> tuple[ArgParser, dict[str, Callable]]:
    from symconv import __version__
    parser = ArgParser(prog="symconv", description="PyTorch's convolution front-end, "
                       "symbolically: backend selection, shapes, proofs and queries.")
    parser.add_argument("--version", action="version", version=f"symconv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgParser)
    runners = {}
    for name, mod in _commands().items():
        p = sub.add_parser(name, help=getattr(mod, "HELP", ""),
                           description=getattr(mod, "DESCRIPTION", getattr(mod, "HELP", "")))
        runners[name] = mod.register(p)
    return parser, runners


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser, runners = build_parser()
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return EXIT_USAGE
        return int(runners[args.command](args) or 0)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    except CLIError as e:
        cmd = argv[0] if argv else ""
        sys.stderr.write(one_line(f"symconv {cmd}: error: {e}") + "\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("symconv: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - never show users a traceback
        msg = one_line(str(e))
        sys.stderr.write(f"symconv: internal error: {type(e).__name__}: {msg}\n"
                         "  please report it with the command line that caused it\n")
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
