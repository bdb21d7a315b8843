"""Fuzz every ``symconv`` command with malformed arguments: no traceback ever reaches a user.

Each command gets 1,000 derandomized examples in the default run and 10,000 random ones in the
slow suite (``-m slow``). ``symconv.cli.main`` runs in-process; the oracle is the CLI contract:

* exit status 0 (answer), 1 (torch raises / unknown verdict) or 2 (bad argument) -- never 3,
  the "internal error" status that stands for a caught traceback;
* nothing that looks like a traceback on stdout or stderr;
* status 2 prints exactly one line, ``symconv[ <cmd>]: error: ...`` naming the argument;
* ``--json`` answers parse as JSON.

Interrupted runs (SIGINT) and non-UTF-8 argv need a real process: tests/test_solver_limits.py
and the subprocess tests at the end of this file.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from symconv.cli import main

from . import fuzz_strategies as fz

DEFAULT = settings(max_examples=1000, deadline=None)
SLOW = settings(max_examples=10_000, deadline=None, derandomize=False)

COMMANDS = ["select", "explain", "map", "reach", "prove"]


class ReachedProver(BaseException):
    """A fuzz input got past prove's argument checks (the strategy keeps them invalid)."""


@pytest.fixture(autouse=True)
def _no_proof_runs(monkeypatch):
    import proofs.runner

    def refuse(*a, **k):
        raise ReachedProver(f"a fuzz input started the proof catalogue: {sys.argv!r} {a!r}")
    monkeypatch.setattr(proofs.runner, "execute", refuse)
    # any solver query a fuzz input reaches is cheap: the single limit in symconv.solver
    from symconv import solver
    monkeypatch.setattr(solver.LIMITS, "timeout_ms", 200)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def check_contract(argv: list[str]) -> tuple[int, str, str]:
    rc, out, err = run_cli(argv)
    shown = f"argv={argv!r}\nstatus={rc}\nstdout={out[:2000]!r}\nstderr={err[:2000]!r}"
    assert "Traceback" not in out and "Traceback" not in err, shown
    assert rc != 3, "internal error (a caught traceback):\n" + shown
    assert rc in (0, 1, 2), shown
    if rc == 2 and err:
        lines = err.splitlines()
        assert len(lines) == 1, "a usage error must be one line:\n" + shown
        line = lines[0]
        assert line.startswith("symconv"), shown
        assert ": error: " in line, shown
        assert any(w in line for w in ("argument", "option")), \
            "the error must name the argument:\n" + shown
        assert len(line) <= 1000, "the error line must stay readable:\n" + shown
    elif rc == 2:
        # no command: argparse prints the help (a usage, not an error)
        assert out.startswith("usage:"), shown
    if rc in (0, 1) and "--json" in argv and out.strip():
        json.loads(out)
    return rc, out, err


# --------------------------------------------------------------------------------------
# argument vectors


def _argv(cmd: str, required: list, optional: list, rich: bool,
          positional: list | None = None, max_optional: int = 4) -> st.SearchStrategy:
    """``cmd`` + (mostly) the required options + a few optional ones (+ syntax noise).

    ``required``/``optional`` hold ``(flag, pool)`` (``pool`` None for a switch); a positional
    is ``[pool]``."""
    def value(p):
        return fz.pool(p, rich)

    @st.composite
    def build(draw):
        parts: list[list[str]] = []
        for flag, p in required:
            if draw(st.integers(0, 19)) > 0:  # 5%: leave a required option out
                parts.append([flag, draw(value(p))])
        n = draw(st.integers(0, max_optional))
        for _ in range(n):
            flag, p = draw(st.sampled_from(optional))
            parts.append([flag] if p is None else [flag, draw(value(p))])
        if positional is not None and draw(st.integers(0, 9)) > 0:
            parts.append([draw(value(positional[0]))])
        noise = draw(st.integers(0, 29))
        if noise == 0:
            parts.append([draw(st.sampled_from(["--bogus", "-x", "--", "--inp", "-", "--json=1",
                                                "--help-me", "--dims", "--input"]))])
        elif noise == 1 and parts:
            parts[-1] = parts[-1][:1]  # an option without its value
        return [cmd] + [t for p in parts for t in p]
    return build()


CONV_REQUIRED = [("--input", fz.SHAPE_POOL), ("--weight", fz.SHAPE_POOL)]
CONV_OPTIONAL = [
    ("--bias", None), ("--bias-shape", fz.SHAPE_POOL), ("--stride", fz.INT_LIST_POOL),
    ("--padding", fz.INT_LIST_POOL), ("--dilation", fz.INT_LIST_POOL), ("--transposed", None),
    ("--output-padding", fz.INT_LIST_POOL), ("--groups", fz.INT_POOL),
    ("--dtype", fz.DTYPE_POOL), ("--weight-dtype", fz.DTYPE_POOL),
    ("--device", ["cpu", "cuda", "meta", "mps", "xpu", "tpu", "CPU", ""]),
    ("--memory-format", ["contiguous", "channels_last", "channels_last_3d", "preserve", ""]),
    ("--weight-memory-format", ["contiguous", "channels_last", "channels_last_3d", "x"]),
    ("--requires-grad", None), ("--mkldnn-tensor", None), ("--env", fz.PRESET_POOL),
    ("--set", fz.SET_POOL), ("--json", None),
]
MAP_EXTRA = [("--check", ["0", "1", "-1", "x", "2", ""]), ("--title", fz.JUNK),
             ("--out", ["/nonexistent-dir/m.png", "m.unknownext", ""])]
REACH_OPTIONAL = [
    ("--env", fz.PRESET_POOL), ("--set", fz.SET_POOL),
    ("--dims", ["1", "2", "3", "0", "4", "1,2", "", ",", "x", "-1", "1,4"] + fz.JUNK),
    ("--where", fz.WHERE_POOL), ("--fixed-flags", None), ("--no-validate", None),
    ("--region-limit", ["0", "3", "-1", "x", ""] + fz.INT_TEXTS), ("--json", None),
    ("--all", None)]


def _concrete(argv: list[str]) -> list[str]:
    """Sizes written with symbol names make the selection symbolic (seconds, not
    milliseconds): the default run keeps them for the slow suite and explicit examples,
    except where the call fails before the symbolic work (a 1-d or 0-d input)."""
    out = list(argv)
    for i, t in enumerate(out[:-1]):
        if t in ("--input", "--weight", "--bias-shape", "--stride", "--padding", "--dilation",
                 "--output-padding", "--groups"):
            toks = out[i + 1].strip().strip("[]()").split(",")
            if t == "--input" and len(toks) <= 1:
                continue
            out[i + 1] = ",".join("7" if (x.strip().isidentifier() and x.strip().isascii())
                                  else x for x in toks)
    return out


def select_argv(rich=False):
    return _argv("select", CONV_REQUIRED, CONV_OPTIONAL, rich)


def explain_argv(rich=False):
    return _argv("explain", CONV_REQUIRED, CONV_OPTIONAL + [("--want", fz.BACKEND_POOL)], rich)


def map_argv(rich=False):
    return _argv("map", CONV_REQUIRED + [("--x", fz.AXIS_POOL), ("--y", fz.AXIS_POOL)],
                 CONV_OPTIONAL + MAP_EXTRA, rich)


def _refused(values: list[str], check) -> list[str]:
    """The values that ``check`` refuses (the pools mix good and bad ones)."""
    out = []
    for v in values:
        try:
            check(v)
        except Exception:  # noqa: BLE001 - any refusal
            out.append(v)
    return out


@functools.lru_cache(maxsize=None)
def _bad_reach_values() -> dict:
    from symconv import ConvBackend
    from symconv.cli._args import parse_env
    from symconv.queries.where import parse_where
    return {
        "BACKEND": _refused(fz.BACKEND_POOL, ConvBackend.parse),
        "--env": _refused(fz.PRESET_POOL, parse_env),
        "--set": _refused(fz.SET_POOL, lambda v: parse_env("cpu", [v])),
        "--where": _refused(fz.WHERE_POOL, parse_where),
        "--dims": ["0", "4", "", ",", "x", "-1", "1,4"],
        "--region-limit": ["x", "", "1.5"],
    }


@st.composite
def reach_argv(draw, rich=False):
    """Reach inputs with (nearly always) one argument that must be refused: a well-formed
    query costs 0.1-1 s of solver work, so the default run keeps 1 in 50 of them (with
    --no-validate and one dimension)."""
    bad_values = _bad_reach_values()
    argv = draw(_argv("reach", [], REACH_OPTIONAL, rich, positional=[fz.BACKEND_POOL]))
    if draw(st.integers(0, 49)) == 0:
        argv = [a for a in argv if a != "--all"] + ["--no-validate", "--dims", "1"]
        return argv
    which = draw(st.sampled_from(sorted(bad_values) + ["syntax"]))
    if which == "syntax":
        return argv + [draw(st.sampled_from(["--bogus", "--where", "--env", "-q"]))]
    v = draw(fz.pool(bad_values[which], rich))
    if which == "BACKEND":
        return ["reach", v] + argv[1:]
    return argv + [which, v]


@st.composite
def prove_argv(draw, rich=False):
    """Exactly the inputs that prove's argument checks must refuse (or --list)."""
    def one(values):
        return draw(fz.pool(values, rich))
    good = {
        "names": [draw(st.sampled_from(["trunc_division_is_floor", "output_size_positive"]))],
        "--dims": ["--dims", draw(st.sampled_from(["1", "2", "3", "1,2", "3,1"]))],
        "--env": ["--env", draw(st.sampled_from(["cpu", "cuda-h100", "cpu,seed"]))],
        "--timeout": ["--timeout", draw(st.sampled_from(["1", "0.5", "30"]))],
        "--jobs": ["--jobs", draw(st.sampled_from(["1", "2"]))],
    }
    bad_values = {
        # ("--" ends the options: it is no name)
        "names": ["no_such_invariant", "", "x" * 3000, "é"] + [j for j in fz.JUNK
                                                               if not j.startswith("-")],
        "--dims": ["0", "4", "", ",", "1,,2", "x", "1 2", "-1"] + fz.JUNK,
        "--env": ["native", "", ",", "nope", "cpu,nope", "cpu,native"] + fz.JUNK,
        "--timeout": ["0", "-1", "nan", "inf", "1e9", "x", "", "86401", "-0"],
        "--jobs": ["0", "-1", "65", "x", "1.5", "", "99999999999999999999", "-(2**63)"],
        "--junit": ["/nonexistent-dir/r.xml", "/", "", "/proc/nonexistent/x"],
    }
    which = draw(st.sampled_from(sorted(bad_values) + ["syntax"]))
    if which == "syntax":
        bad = [draw(st.sampled_from(["--bogus", "--timeout", "--jobs", "--dims", "-z",
                                     "--junit"]))]
    else:
        v = one(bad_values[which])
        if which == "names" and v in ("trunc_division_is_floor", "output_size_positive"):
            v = "no_such_invariant"
        bad = [v] if which == "names" else [which, v]
    parts = []
    for k in ("names", "--dims", "--env", "--timeout", "--jobs"):
        if k != which and draw(st.booleans()):
            parts.append(good[k])
    if which != "syntax":
        parts.insert(draw(st.integers(0, len(parts))), bad)
    for f in ("--json", "--markdown", "--no-replay"):
        if draw(st.booleans()):
            parts.append([f])
    if which == "syntax":  # an option missing its value (or unknown) ends the line
        parts.append(bad)
    argv = ["prove"] + [t for p in parts for t in p]
    if draw(st.integers(0, 49)) == 0:
        argv = ["prove", "--list"] + draw(st.sampled_from([[], ["--json"], ["x"]]))
    return argv


# --------------------------------------------------------------------------------------
# the default run: 1,000 derandomized examples per command


@DEFAULT
@given(select_argv().map(_concrete))
@example(["select", "--input", "x" * 5000, "--weight", "4,3,3,3"])
@example(["select", "--input", "1,3,8", "--weight", "4,3,3", "--bias-shape", "a"])
@example(["select", "--input", "N,3,8", "--weight", "4,3", "--json"])
@example(["select", "--input", "", "--weight", ""])
@example(["select", "--input", "1,2,3,4,5,6,7", "--weight", "1,2,3,4,5,6,7"])
@example(["select", "--input", "9223372036854775807,3,8,8", "--weight", "4,3,3,3"])
@example(["select", "--input", "1,3,8,8", "--weight", "4,3,3,3", "--set", "cuda_capability=9"])
def test_fuzz_select(argv):
    check_contract(argv)


@DEFAULT
@given(explain_argv().map(_concrete))
@example(["explain", "--input", "1,3,8,8", "--weight", "4,3,3,3", "--want", "Nope"])
@example(["explain", "--input", "N,3,8,8", "--weight", "4,3,3,3"])
def test_fuzz_explain(argv):
    check_contract(argv)


@DEFAULT
@given(map_argv())
@example(["map", "--input", "N,3,H,H", "--weight", "4,3,3,3", "--x", "H=1:100000000",
          "--y", "N=1:4"])
@example(["map", "--input", "N,3,H,H", "--weight", "4,3,3,3", "--x", "H=0:9223372036854775807",
          "--y", "N=1:4"])
@example(["map", "--input", "N,3,H,H", "--weight", "4,3,3,3", "--x", "H=99999999999999999999:1",
          "--y", "N=1:4"])
@example(["map", "--input", "N,3,H,H", "--weight", "4,3,3,3", "--x", "H=1:8", "--y",
          "N=1,99999999999999999999"])
def test_fuzz_map(argv):
    check_contract(argv)


@DEFAULT
@given(reach_argv())
@example(["reach", "Mkldnn", "--where", "+".join(["N"] * 3000) + "==1"])
@example(["reach", "Mkldnn", "--where", "N<=" + "9" * 5000])
@example(["reach", "Mkldnn", "--region-limit", "-5", "--dims", "1", "--no-validate"])
def test_fuzz_reach(argv):
    check_contract(argv)


def check_prove(argv):
    try:
        check_contract(argv)
    except ReachedProver:
        pytest.fail(f"prove's argument checks accepted {argv!r}")


@DEFAULT
@given(prove_argv())
def test_fuzz_prove(argv):
    check_prove(argv)


@DEFAULT
@given(st.lists(st.sampled_from(fz.JUNK + COMMANDS + ["--version", "-h", "--json", "--input"]),
                max_size=4))
def test_fuzz_top_level(argv):
    """Anything at all as the command line: unknown commands, stray options, junk."""
    if "-h" in argv or "--help" in argv or "--version" in argv:
        argv = [a for a in argv if a not in ("-h", "--help", "--version")]
    if argv and argv[0] in COMMANDS:
        argv = argv + ["--bogus-option"]  # keep it a usage error: real runs are above
    check_contract(argv)


# --------------------------------------------------------------------------------------
# the slow suite: 10,000 random examples per command (symbols allowed in select/explain)


@pytest.mark.slow
@SLOW
@given(select_argv(rich=True))
def test_fuzz_select_slow(argv):
    check_contract(argv)


@pytest.mark.slow
@SLOW
@given(explain_argv(rich=True))
def test_fuzz_explain_slow(argv):
    check_contract(argv)


@pytest.mark.slow
@SLOW
@given(map_argv(rich=True))
def test_fuzz_map_slow(argv):
    check_contract(argv)


@pytest.mark.slow
@SLOW
@given(reach_argv(rich=True))
def test_fuzz_reach_slow(argv):
    check_contract(argv)


@pytest.mark.slow
@SLOW
@given(prove_argv(rich=True))
def test_fuzz_prove_slow(argv):
    check_prove(argv)


# --------------------------------------------------------------------------------------
# what needs a real process: non-UTF-8 argv (bytes that are not UTF-8 reach Python as lone
# surrogates and break a strict UTF-8 stdout)


MAIN = b"import sys; from symconv.cli import main; sys.exit(main())"


def _run_bytes(args: list[bytes]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING="", LC_ALL="C.UTF-8")
    env.pop("PYTHONIOENCODING")
    return subprocess.run([os.fsencode(sys.executable), b"-c", MAIN, *args],
                          capture_output=True, timeout=120, env=env)


@pytest.mark.parametrize("args", [
    [b"select", b"--input", b"1,3,\xff,8", b"--weight", b"4,3,3,3"],
    [b"select", b"--input", b"1,3,8,8", b"--weight", b"4,3,3,3", b"--env", b"\xfe\xff"],
    [b"select", b"--input", b"1,3,8,8", b"--weight", b"4,3,3,3", b"--set", b"torch_version=\xff"],
    [b"reach", b"Mkl\xffdnn"],
    [b"reach", b"Mkldnn", b"--where", b"N<=\xff"],
    [b"map", b"--input", b"N,3,H,H", b"--weight", b"4,3,3,3", b"--x", b"H=1:4", b"--y",
     b"N=1:2", b"--out", b"/nonexistent-\xff/m.png"],
    [b"prove", b"inv\xff"],
    [b"\xff\xfe"],
])
def test_non_utf8_argv(args):
    p = _run_bytes(args)
    err = p.stderr.decode("utf-8", "replace")
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode in (1, 2), (args, p.returncode, out, err)
    assert "Traceback" not in err and "Traceback" not in out, (args, err)
    if p.returncode == 2:
        assert len(err.splitlines()) == 1 and ": error: " in err, (args, err)


def test_non_utf8_in_json_output():
    """A symbol name is ASCII, but a preset label or a --title is echoed: JSON stays valid."""
    p = _run_bytes([b"map", b"--input", b"N,3,H,H", b"--weight", b"4,3,3,3", b"--x", b"H=1:4",
                    b"--y", b"N=1:2", b"--title", b"t\xff", b"--json"])
    assert p.returncode == 0, p.stderr
    json.loads(p.stdout)
