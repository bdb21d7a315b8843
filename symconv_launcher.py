"""The ``symconv`` console script's entry point (``[project.scripts]`` in pyproject.toml).

``import symconv`` loads torch, SymPy and Z3 (about a second). The entry point lives outside the
package so that a Ctrl-C during that import ends like a Ctrl-C during a command (one line,
``symconv: interrupted``, exit status 130) instead of a traceback: ``symconv.cli.main`` handles
the interrupts that come later itself.
"""

from __future__ import annotations

import contextlib
import signal
import sys

EXIT_INTERRUPTED = 130  # symconv.cli.EXIT_INTERRUPTED (not imported: that is the slow part)


def _interrupted() -> int:
    with contextlib.suppress(ValueError):  # ValueError: not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the report
    try:
        sys.stderr.write("symconv: interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: the exit status still says it
        pass
    return EXIT_INTERRUPTED


def main() -> int:
    try:
        from symconv.cli import main as cli_main
        status = cli_main()
        # the answer is out: a Ctrl-C while the interpreter shuts down (torch's exit handlers)
        # would only print "Exception ignored ... KeyboardInterrupt"
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        return _interrupted()
    return status


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
