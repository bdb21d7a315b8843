"""A worker process that answers one JSON line per JSON line, and whose death is an answer.

torch can kill the process on valid input (oneDNN segfaults, sticky errors), so kernels run in
a child process: a crash there is reported to the caller instead of taking the run down. The
replay of counterexamples (:class:`proofs.replay.Replayer`) and the differential tests
(``tests/oracle.py``'s ``ConvWorker``, which imports these functions only in the parent, so that
its worker process starts with torch alone) both drive their worker with these functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys

__all__ = ["spawn", "ask", "stop"]

ROOT = str(pathlib.Path(__file__).resolve().parent.parent)


def spawn(code: str, *, env: dict | None = None, quiet: bool = False) -> subprocess.Popen:
    """Start ``python -c code`` in the repository root with the root on ``PYTHONPATH``; ``env``
    adds variables (e.g. ATEN_CPU_CAPABILITY); ``quiet`` drops the child's stderr."""
    full = dict(os.environ)
    # idle OpenMP threads must not spin: on a 2-core machine they starve the parent process
    # (3x slower); the wait policy changes no answer
    full["OMP_WAIT_POLICY"] = "PASSIVE"
    full.update(env or {})
    full["PYTHONPATH"] = os.pathsep.join([ROOT, full.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, "-u", "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL if quiet else None, text=True, env=full,
                            cwd=ROOT)


def ask(proc: subprocess.Popen, case: dict) -> dict | None:
    """The worker's answer to ``case``, or ``None`` when the process died (``proc.wait()`` then
    gives its exit status)."""
    assert proc.stdin and proc.stdout
    try:
        proc.stdin.write(json.dumps(case) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
    except BrokenPipeError:
        line = ""
    return json.loads(line) if line else None


def stop(proc: subprocess.Popen) -> None:
    """End the worker: close its input, and kill it if it has not exited 2 s later."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(OSError):  # its end of the pipe may be gone already
        proc.stdin.close()  # type: ignore[union-attr]
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()  # torch's interpreter shutdown can take seconds
        proc.wait(timeout=10)
