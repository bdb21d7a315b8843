"""The CLI reference, rendered from the argparse parsers themselves.

``symconv`` finds its commands at run time (every module of ``symconv/cli/`` with ``COMMAND``,
``HELP`` and ``register``); this script asks the same parser that ``symconv`` builds which
commands exist and prints what ``symconv --help`` and ``symconv <command> --help`` print, so the
reference cannot go stale: a new command module appears in it by itself.

The documentation build calls :func:`render` (``tools/mkdocs_hooks.py`` puts it into
``docs/cli.md``); ``python tools/gen_cli_docs.py`` prints the same Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys

# argparse wraps help text to the terminal width: fix it so the output does not depend on
# where the documentation is built.
WIDTH = "100"


def _parser_and_commands() -> tuple[argparse.ArgumentParser, list[tuple[str, str]]]:
    from symconv.cli import build_parser

    parser, _runners = build_parser()
    commands: list[tuple[str, str]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            commands = [(name, str(helps.get(name, ""))) for name in action.choices]
    return parser, commands


def help_text(argv: list[str]) -> str:
    """What ``symconv <argv>`` prints (``argv`` ending in ``--help``), exactly."""
    from symconv.cli import main

    out = io.StringIO()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            main(argv)
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    return out.getvalue().rstrip("\n")


def commands() -> list[tuple[str, str]]:
    """(name, one-line help) of every ``symconv`` command, in the order ``--help`` lists them."""
    return _parser_and_commands()[1]


def render(heading_level: int = 2) -> str:
    """The reference as Markdown: a table of commands, then each command's ``--help``."""
    h = "#" * heading_level
    cmds = commands()
    lines = ["| command | what it does |", "|---|---|"]
    for name, text in cmds:
        lines.append(f"| [`symconv {name}`](#symconv-{name}) | {text} |")
    lines += ["", f"{h} `symconv`", "", "```text", "$ symconv --help",
              help_text(["--help"]), "```", ""]
    for name, _text in cmds:
        lines += [f'{h} `symconv {name}` {{#symconv-{name}}}', "", "```text",
                  f"$ symconv {name} --help", help_text([name, "--help"]), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/gen_cli_docs.py", description=__doc__)
    ap.add_argument("--list", action="store_true", help="print the command names only")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(name for name, _ in commands()))
    else:
        print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
