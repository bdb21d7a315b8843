"""Solver limits and Ctrl-C: every Z3 query has a time and memory limit from one place
(symconv/solver.py); hitting it is "unknown" naming the limit, never a proof or an
"unreachable"; Ctrl-C stops a run cleanly (one line, exit status 130, no traceback)."""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import z3

from symconv import solver as S
from symconv.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]

# x^3 + y^3 = z^3 has no positive solution (Fermat, n = 3); Z3 can neither find a model nor
# prove it: every check of it runs into the time limit
X, Y, Z = z3.Ints("x y z")
HARD = [X * X * X + Y * Y * Y == Z * Z * Z, X > 1, Y > 1, Z > 1]
HARD_WHERE = "N*N*N + H*H*H == W*W*W, N>=2, H>=2, W>=2"


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SYMCONV_Z3_TIMEOUT_MS", "1234")
    monkeypatch.setenv("SYMCONV_Z3_MEMORY_MB", "512")
    lim = S.Limits()
    assert (lim.timeout_ms, lim.memory_mb) == (1234, 512)


@pytest.mark.parametrize("value", ["abc", "", "-5", "0", "1e3", "99999999999999999999"])
def test_malformed_limit_is_refused_with_a_warning(monkeypatch, value):
    """A bad SYMCONV_Z3_TIMEOUT_MS used to make every 'import symconv' fail (int() at import)."""
    monkeypatch.setenv("SYMCONV_Z3_TIMEOUT_MS", value)
    with pytest.warns(RuntimeWarning, match="SYMCONV_Z3_TIMEOUT_MS"):
        lim = S.Limits()
    assert lim.timeout_ms == S.DEFAULT_TIMEOUT_MS


def test_malformed_limit_does_not_break_the_cli():
    env = dict(os.environ, SYMCONV_Z3_TIMEOUT_MS="abc")
    p = subprocess.run([sys.executable, "-c", "import sys; from symconv.cli import main; "
                        "sys.exit(main(['select', '--input', '1,3,8,8', '--weight', '4,3,3,3']))"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert "SYMCONV_Z3_TIMEOUT_MS='abc'" in p.stderr  # the warning says what was ignored


def test_timeout_is_unknown_and_names_the_limit():
    t0 = time.perf_counter()
    r = S.check(*HARD, timeout_ms=150)
    assert r.verdict == "unknown"
    assert "150 ms" in r.reason and "MB" in r.reason, r.reason
    assert time.perf_counter() - t0 < 30
    # the negation of a true-but-undecidable-here claim: never "proved" (unsat)
    p = S.prove(X * X * X + Y * Y * Y != Z * Z * Z, X > 1, Y > 1, Z > 1, timeout_ms=150)
    assert p.verdict == "unknown" and not p.unsat


def test_the_single_limit_applies_to_every_solver(monkeypatch):
    monkeypatch.setattr(S.LIMITS, "timeout_ms", 120)
    from symconv.queries import solve
    for make in (S.new_solver, solve.new_solver, S.new_optimize):
        s = make()
        s.add(*HARD)
        t0 = time.perf_counter()
        assert s.check() == z3.unknown
        assert time.perf_counter() - t0 < 30
        assert "120 ms" in s.reason_unknown(), s.reason_unknown()
    assert solve.verdict(_hard_solver())[0] == "unknown"


def _hard_solver():
    s = S.new_solver()
    s.add(*HARD)
    return s


def test_no_solver_is_made_outside_symconv_solver():
    """One place for the limits: nothing else constructs a Z3 solver, optimiser or tactic."""
    pat = re.compile(r"z3\.(Solver|SolverFor|SimpleSolver|Optimize|Tactic|Then|OrElse|"
                     r"ParThen|With|Fixedpoint)\s*\(")
    offenders = []
    for base in ("symconv", "proofs"):
        for f in (ROOT / base).rglob("*.py"):
            if f.name == "solver.py" and f.parent.name == "symconv":
                continue
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                if pat.search(line):
                    offenders.append(f"{f.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_reach_at_the_limit_is_unknown_never_unreachable(monkeypatch):
    monkeypatch.setattr(S.LIMITS, "timeout_ms", 100)
    from symconv import preset
    from symconv.queries import reach
    res = reach("Mkldnn", env=preset("cpu"), dims=(2,), where=HARD_WHERE, validate=False)
    assert res.verdict == "unknown", res.text()
    assert res.unknown and all("100 ms" in u for u in res.unknown), res.unknown
    rc, out, err = run_cli(["reach", "Mkldnn", "--env", "cpu", "--dims", "2", "--no-validate",
                            "--where", HARD_WHERE])
    assert rc == 1, (out, err)
    assert "Mkldnn is unknown" in out and "100 ms" in out and "unreachable" not in out


def test_prove_at_the_limit_is_unknown_never_refuted():
    """With a 1 ms limit an invariant is proved (Z3 was quick enough) or unknown naming the
    limit: never refuted, and any unknown fails the run."""
    rc, out, err = run_cli(["prove", "output_size_positive", "trunc_division_is_floor", "--dims",
                            "1", "--no-replay", "--jobs", "1", "--timeout", "0.001"])
    lines = [ln for ln in out.splitlines() if ln.startswith("proofs/") and ": note:" not in ln]
    assert len(lines) == 2, out
    unknown = [ln for ln in lines if "unknown" in ln]
    assert all(": proved:" in ln or "unknown" in ln for ln in lines), out
    assert "refuted" not in " ".join(lines)
    if unknown:
        assert rc == 1 and "limits: 1 ms" in out, (rc, out)
    else:
        assert rc == 0, (rc, out, err)


def _interrupt_soon(delay: float) -> threading.Timer:
    t = threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGINT))
    t.start()
    return t


def test_ctrl_c_inside_a_z3_check_stops(monkeypatch):
    """Z3 handles SIGINT itself during a check and answers "unknown": symconv's solvers turn
    that back into KeyboardInterrupt, so Ctrl-C is never taken for a verdict."""
    monkeypatch.setattr(S.LIMITS, "timeout_ms", 120_000)
    s = _hard_solver()
    t = _interrupt_soon(0.5)
    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            s.check()
    finally:
        t.cancel()
    assert time.perf_counter() - t0 < 60


def test_ctrl_c_in_reach_is_one_line_and_status_130(monkeypatch):
    monkeypatch.setattr(S.LIMITS, "timeout_ms", 120_000)
    t = _interrupt_soon(1.0)
    t0 = time.perf_counter()
    try:
        rc, out, err = run_cli(["reach", "Mkldnn", "--env", "cpu", "--dims", "2",
                                "--no-validate", "--where", HARD_WHERE])
    finally:
        t.cancel()
    assert time.perf_counter() - t0 < 60
    assert rc == 130, (out, err)
    assert err == "symconv: interrupted\n"
    assert "unknown" not in out


def test_ctrl_c_in_prove_with_worker_processes():
    """A real process (prove forks two workers): SIGINT after the first result line."""
    code = ("import sys; from symconv.cli import main; "
            "sys.exit(main(['prove', '--no-replay', '--jobs', '2']))")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=ROOT,
                         # SIGINT's default action in the child: a runner started as a
                         # background job of a non-interactive shell ignores it
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = p.stdout.readline()
        assert first, p.stderr.read()
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    err = err.decode("utf-8", "replace")
    assert p.returncode == 130, err
    assert err == "symconv: interrupted\n", err
    assert "Traceback" not in out.decode("utf-8", "replace")
