"""Fuzz every ``symconv`` command with malformed arguments: no traceback ever reaches a user.

Each command gets 1,000 fixed (seeded) examples in the default run and 10,000 random ones
(Hypothesis) in the slow suite (``-m slow``). ``symconv.cli.main`` runs in-process; the oracle
is the CLI contract:

* exit status 0 (answer), 1 (torch raises / unknown verdict) or 2 (bad argument) -- never 3,
  the "internal error" status that stands for a caught traceback;
* nothing that looks like a traceback on stdout or stderr;
* status 2 prints exactly one line, ``symconv[ <cmd>]: error: ...`` naming the argument;
* ``--json`` answers parse as JSON.

Interrupted runs (SIGINT) need a real process (tests/test_solver_limits.py); non-UTF-8 argv is
decoded as a real process decodes it, with stdout/stderr encoded as a real process's, in-process
in the default run and in a real child process in the slow suite (the end of this file).
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
from hypothesis import given, settings
from hypothesis import strategies as st

from symconv.cli import main

from . import fuzz_strategies as fz

SLOW = settings(max_examples=10_000, deadline=None, derandomize=False)

COMMANDS = ["select", "explain", "map", "reach", "prove", "trace", "diff"]


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


NOISE = ["--bogus", "-x", "--", "--inp", "-", "--json=1", "--help-me", "--dims", "--input"]


def _argv(c, cmd: str, required: list, optional: list, positional: list | None = None,
          max_optional: int = 4) -> list[str]:
    """``cmd`` + (mostly) the required options + a few optional ones (+ syntax noise).

    ``required``/``optional`` hold ``(flag, pool)`` (``pool`` None for a switch); a positional
    is ``[pool]``; ``c`` is a chooser (tests/fuzz_strategies.py)."""
    parts: list[list[str]] = []
    for flag, p in required:
        if c.num(0, 19) > 0:  # 5%: leave a required option out
            parts.append([flag, c.value(p)])
    for _ in range(c.num(0, max_optional)):
        flag, p = c.pick(optional)
        parts.append([flag] if p is None else [flag, c.value(p)])
    if positional is not None and c.num(0, 9) > 0:
        parts.append([c.value(positional[0])])
    noise = c.num(0, 29)
    if noise == 0:
        parts.append([c.pick(NOISE)])
    elif noise == 1 and parts:
        parts[-1] = parts[-1][:1]  # an option without its value
    return [cmd] + [t for p in parts for t in p]


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


def _select(c) -> list[str]:
    return _argv(c, "select", CONV_REQUIRED, CONV_OPTIONAL)


def _explain(c) -> list[str]:
    return _argv(c, "explain", CONV_REQUIRED, CONV_OPTIONAL + [("--want", fz.BACKEND_POOL)])


def _map(c) -> list[str]:
    return _argv(c, "map", CONV_REQUIRED + [("--x", fz.AXIS_POOL), ("--y", fz.AXIS_POOL)],
                 CONV_OPTIONAL + MAP_EXTRA)


def _refused(values: list[str], check) -> list[str]:
    """The values that ``check`` refuses (the pools mix good and bad ones)."""
    out = []
    for v in values:
        try:
            check(v)
        except Exception:  # noqa: BLE001 - any refusal
            out.append(v)
    return out


@functools.cache
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


def _reach(c) -> list[str]:
    """Reach inputs with (nearly always) one argument that must be refused: a well-formed
    query costs 0.1-1 s of solver work, so the default run keeps 1 in 50 of them (with
    --no-validate and one dimension)."""
    bad_values = _bad_reach_values()
    argv = _argv(c, "reach", [], REACH_OPTIONAL, positional=[fz.BACKEND_POOL])
    if c.num(0, 49) == 0:
        return [a for a in argv if a != "--all"] + ["--no-validate", "--dims", "1"]
    which = c.pick(sorted(bad_values) + ["syntax"])
    if which == "syntax":
        return argv + [c.pick(["--bogus", "--where", "--env", "-q"])]
    v = c.pick(bad_values[which])
    if which == "BACKEND":
        return ["reach", v] + argv[1:]
    return argv + [which, v]


PROVE_GOOD_NAMES = ["trunc_division_is_floor", "output_size_positive"]
PROVE_BAD = {
    # ("--" ends the options: it is no name)
    "names": ["no_such_invariant", "", "x" * 3000, "é"] + [j for j in fz.JUNK
                                                           if not j.startswith("-")],
    "--dims": ["0", "4", "", ",", "1,,2", "x", "1 2", "-1"] + fz.JUNK,
    "--env": ["native", "", ",", "nope", "cpu,nope", "cpu,native"] + fz.JUNK,
    "--timeout": ["0", "-1", "nan", "inf", "1e9", "x", "", "86401", "-0"],
    "--jobs": ["0", "-1", "65", "x", "1.5", "", "99999999999999999999", "-(2**63)"],
    "--junit": ["/nonexistent-dir/r.xml", "/", "", "/proc/nonexistent/x"],
}


def _prove(c) -> list[str]:
    """Exactly the inputs that prove's argument checks must refuse (or --list)."""
    if c.num(0, 49) == 0:
        return ["prove", "--list"] + c.pick([[], ["--json"], ["x"]])
    good = {
        "names": [c.pick(PROVE_GOOD_NAMES)],
        "--dims": ["--dims", c.pick(["1", "2", "3", "1,2", "3,1"])],
        "--env": ["--env", c.pick(["cpu", "cuda-h100", "cpu,seed"])],
        "--timeout": ["--timeout", c.pick(["1", "0.5", "30"])],
        "--jobs": ["--jobs", c.pick(["1", "2"])],
    }
    which = c.pick(sorted(PROVE_BAD) + ["syntax"])
    if which == "syntax":
        bad = [c.pick(["--bogus", "--timeout", "--jobs", "--dims", "-z", "--junit"])]
    else:
        v = c.pick(PROVE_BAD[which])
        if which == "names" and (v in PROVE_GOOD_NAMES or v.startswith("-")):
            v = "no_such_invariant"
        bad = [v] if which == "names" else [which, v]
    parts = []
    for k in ("names", "--dims", "--env", "--timeout", "--jobs"):
        if k != which and c.coin():
            parts.append(good[k])
    if which != "syntax":
        parts.insert(c.num(0, len(parts)), bad)
    for f in ("--json", "--markdown", "--no-replay"):
        if c.coin():
            parts.append([f])
    if which == "syntax":  # an option missing its value (or unknown) ends the line
        parts.append(bad)
    return ["prove"] + [t for p in parts for t in p]


TRACE_MODELS = (["no_such_module_xyz:f", "nonexistent_dir/model.py:f", "tests/trace_models.py:nope",
                 "tests/trace_models.py:", "tests/trace_models.py", ":f", "", "a:b:c",
                 "tests/trace_models.py:1bad", "tests/:f", "x.py:f"]
                + [j for j in fz.JUNK if ":" not in j or j in (":", "1:2")])
TRACE_GOOD_MODEL = "tests/trace_models.py:resnet_small"
TRACE_BAD = {
    # (a symbol name is a valid size: "x" * 5000 would trace the model)
    "--input": ["", "x-" * 2500, "-1,3,8,8", "1,,3", "1.5,3", "99999999999999999999,3,8,8",
                "1,2,3,4,5,6,7,8,9", "\udcff", "[", "1,3,8,8,"],
    "--dtype": ["int8", "bool", "", "float128", "x"],
    "--env": ["nope", "", "CPU", "cpu,seed"],
}


def _trace(c) -> list[str]:
    """Trace inputs with one argument that must be refused (a model run costs seconds)."""
    which = c.pick(["MODEL", "--input", "--dtype", "--env", "syntax"])
    model = c.pick(TRACE_MODELS) if which == "MODEL" else TRACE_GOOD_MODEL
    argv = ["trace", model] if not model.startswith("-") else ["trace", "--", model]
    inputs = ["1,3,32,32"] if which != "--input" else [c.pick(TRACE_BAD["--input"])]
    if c.coin():
        inputs.append(c.pick(fz.SHAPE_POOL) if which != "--input" else "1,3,32,32")
    for i in inputs:
        argv += ["--input", i]
    for flag in ("--dtype", "--env"):
        if flag == which:
            argv += [flag, c.pick(TRACE_BAD[flag])]
        elif c.coin():
            argv += [flag, c.pick({"--dtype": ["float32", "float64"],
                                   "--env": ["cpu", "native", "seed"]}[flag])]
    for f in ("--train", "--json"):
        if c.coin():
            argv.append(f)
    if which == "syntax":
        argv.append(c.pick(["--bogus", "--input", "--dtype", "-q"]))
    if which == "MODEL" and model in ("", ":f") and c.coin():
        argv = [a for a in argv if a != "--"]
    return argv


DIFF_OPTIONAL = [("--from", fz.PRESET_POOL + ["2.4", "2.13.0", "1.0", "9.9", "2.x"]),
                 ("--to", fz.PRESET_POOL + ["2.4", "2.13.0", "1.0", "9.9", "2.x"]),
                 ("--set-from", fz.SET_POOL), ("--set-to", fz.SET_POOL),
                 ("--dims", ["1", "2", "3", "0", "4", "", "x"]), ("--where", fz.WHERE_POOL),
                 ("--no-validate", None), ("--limit", ["0", "3", "-1", "x", ""]),
                 ("--json", None)]


@functools.cache
def _bad_diff_values() -> dict:
    from symconv.cli._args import parse_env
    from symconv.queries.where import parse_where
    from symconv.env import PRESETS, environment_for

    def side(v):
        if v == "native" or v in PRESETS:
            return
        environment_for(v, None)
    sides = _refused(["nope", "", "CPU", "9.9.9.9", "x" * 300, "2.x", "gpu", "abc", "-",
                      "1.2.3.4.5", "1.0", "99.0"] + fz.JUNK[:20], side)
    return {
        "--from": sides,
        "--to": sides,
        "--set-from": _refused(fz.SET_POOL, lambda v: parse_env("cpu", [v])),
        "--set-to": _refused(fz.SET_POOL, lambda v: parse_env("cpu", [v])),
        "--where": _refused(fz.WHERE_POOL, parse_where),
        "--dims": ["0", "4", "", ",", "x", "-1", "1,4"],
        "--limit": ["x", "", "1.5", "-1"],
    }


def _diff(c) -> list[str]:
    """Diff inputs with one argument that must be refused (a comparison costs seconds)."""
    argv = _argv(c, "diff", [], DIFF_OPTIONAL)
    which = c.pick(sorted(_bad_diff_values()) + ["syntax"])
    if which == "syntax":
        return argv + [c.pick(["--bogus", "--where", "--from", "-q"])]
    return argv + [which, c.pick(_bad_diff_values()[which])]


# --------------------------------------------------------------------------------------
# the default run: 1,000 fixed examples per command, after the explicit cases (failures found
# earlier, and edge cases)

SELECT_CASES = [
    ["select", "--input", "x" * 5000, "--weight", "4,3,3,3"],
    ["select", "--input", "1,3,8", "--weight", "4,3,3", "--bias-shape", "a"],
    ["select", "--input", "N,3,8", "--weight", "4,3", "--json"],
    ["select", "--input", "", "--weight", ""],
    ["select", "--input", "1,2,3,4,5,6,7", "--weight", "1,2,3,4,5,6,7"],
    ["select", "--input", "9223372036854775807,3,8,8", "--weight", "4,3,3,3"],
    ["select", "--input", "1,3,8,8", "--weight", "4,3,3,3", "--set", "cuda_capability=9"],
]
EXPLAIN_CASES = [
    ["explain", "--input", "1,3,8,8", "--weight", "4,3,3,3", "--want", "Nope"],
    ["explain", "--input", "N,3,8,8", "--weight", "4,3,3,3"],
]
_MAP_NH = ["map", "--input", "N,3,H,H", "--weight", "4,3,3,3"]
MAP_CASES = [
    _MAP_NH + ["--x", "H=1:100000000", "--y", "N=1:4"],
    _MAP_NH + ["--x", "H=0:9223372036854775807", "--y", "N=1:4"],
    _MAP_NH + ["--x", "H=99999999999999999999:1", "--y", "N=1:4"],
    _MAP_NH + ["--x", "H=1:8", "--y", "N=1,99999999999999999999"],
]
REACH_CASES = [
    ["reach", "Mkldnn", "--where", "+".join(["N"] * 3000) + "==1"],
    ["reach", "Mkldnn", "--where", "N<=" + "9" * 5000],
    ["reach", "Mkldnn", "--region-limit", "-5", "--dims", "1", "--no-validate"],
]


def check_prove(argv):
    try:
        check_contract(argv)
    except ReachedProver:
        pytest.fail(f"prove's argument checks accepted {argv!r}")


TOP_LEVEL_WORDS = fz.JUNK + COMMANDS + ["--version", "-h", "--json", "--input"]


def _top_level(c) -> list[str]:
    """Anything at all as the command line: unknown commands, stray options, junk (no help or
    version output; a command's own runs are the other tests')."""
    argv = [c.pick(TOP_LEVEL_WORDS) for _ in range(c.num(0, 4))]
    argv = [a for a in argv if a not in ("-h", "--help", "--version")]
    if argv and argv[0] in COMMANDS:
        argv = argv + ["--bogus-option"]  # keep it a usage error: real runs are above
    return argv


DEFAULT_RUNS = {
    "select": (lambda c: _concrete(_select(c)), check_contract, SELECT_CASES),
    "explain": (lambda c: _concrete(_explain(c)), check_contract, EXPLAIN_CASES),
    "map": (_map, check_contract, MAP_CASES),
    "reach": (_reach, check_contract, REACH_CASES),
    "prove": (_prove, check_prove, []),
    "trace": (_trace, check_contract, []),
    "diff": (_diff, check_contract, []),
    "top_level": (_top_level, check_contract, []),
}


@pytest.mark.parametrize("command", list(DEFAULT_RUNS))
def test_fuzz(command):
    builder, check, cases = DEFAULT_RUNS[command]
    checked = fz.run_seeded(f"cli/{command}", builder, check, examples=cases)
    assert checked >= fz.DEFAULT_EXAMPLES + len(cases)


def test_seed_groups_zero_regression():
    """Found by the slow API fuzz: the seed's groups=0 divided by zero (exit 3); fixed."""
    check_contract(["select", "--input", "1,3,8,8", "--weight", "1,3,8,8", "--groups", "0",
                    "--env", "seed"])


# --------------------------------------------------------------------------------------
# the slow suite: 10,000 random examples per command (symbolic selections, seconds each, get
# their own 300)


SLOW_RUNS = {
    "select": (fz.drawn(_select).map(_concrete), check_contract),
    "explain": (fz.drawn(_explain).map(_concrete), check_contract),
    "map": (fz.drawn(_map), check_contract),
    "reach": (fz.drawn(_reach), check_contract),
    "prove": (fz.drawn(_prove), check_prove),
    "trace": (fz.drawn(_trace), check_contract),
    "diff": (fz.drawn(_diff), check_contract),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(SLOW_RUNS))
def test_fuzz_slow(command):
    strategy, check = SLOW_RUNS[command]

    @SLOW
    @given(strategy)
    def run(argv):
        check(argv)
    run()


SYMBOLIC_SHAPES = ["N,3,H,W", "N,C,8,8", "1,3,H", "N,3,H,W,D", "N,C,H,W", "4,3,K,K", "O,I,3,3",
                   "8,C", "G,1,3,3"]


@pytest.mark.slow
@settings(max_examples=300, deadline=None, derandomize=False)
@given(fz.drawn(_select), st.sampled_from(SYMBOLIC_SHAPES),
       st.sampled_from(SYMBOLIC_SHAPES + ["4,3,3,3", "4,3,3"]))
def test_fuzz_select_symbolic_slow(argv, inp, wgt):
    check_contract(argv + ["--input", inp, "--weight", wgt])


# --------------------------------------------------------------------------------------
# non-UTF-8 argv. Bytes that are not UTF-8 reach Python as lone surrogates (surrogateescape,
# under a UTF-8 locale) and break a strict UTF-8 stdout. The default run decodes each case so
# and runs main() with stdout/stderr encoded as a real process encodes them (stdout strict,
# stderr backslashreplace); the slow suite passes every case in one child process's real argv
# (separated by SEP), which does the same there.

NON_UTF8_CASES = [
    [b"select", b"--input", b"1,3,\xff,8", b"--weight", b"4,3,3,3"],
    [b"select", b"--input", b"1,3,8,8", b"--weight", b"4,3,3,3", b"--env", b"\xfe\xff"],
    [b"select", b"--input", b"1,3,8,8", b"--weight", b"4,3,3,3", b"--set",
     b"torch_version=\xff"],
    [b"reach", b"Mkl\xffdnn"],
    [b"reach", b"Mkldnn", b"--where", b"N<=\xff"],
    [b"explain", b"--input", b"1,3,8,8", b"--weight", b"4,3,3,3", b"--want", b"\xff"],
    [b"map", b"--input", b"N,3,H,H", b"--weight", b"4,3,3,3", b"--x", b"H=1:4", b"--y",
     b"N=1:2", b"--out", b"/nonexistent-\xff/m.png"],
    [b"map", b"--input", b"N,3,H,H", b"--weight", b"4,3,3,3", b"--x", b"H=1:4", b"--y",
     b"N=1:2", b"--title", b"t\xff", b"--json"],
    [b"prove", b"inv\xff"],
    [b"prove", b"--junit", b"/nonexistent-\xff/r.xml"],
    [b"\xff\xfe"],
]


def run_encoded(argv: list[str]) -> dict:
    """main() with stdout and stderr encoded as a real process's; what escapes it is
    reported (``rc`` "escaped: ..."), as the child process below reports it."""
    ob, eb = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(ob, encoding="utf-8", errors="strict")
    err = io.TextIOWrapper(eb, encoding="utf-8", errors="backslashreplace")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc: int | str = main(argv)
    except BaseException as e:  # noqa: BLE001 - reported and asserted on by the caller
        rc = "escaped: " + type(e).__name__ + ": " + str(e)
    out.flush()
    err.flush()
    return {"rc": rc, "out": ob.getvalue().decode("utf-8", "replace"),
            "err": eb.getvalue().decode("utf-8", "replace")}


def check_non_utf8(case: list[bytes], r: dict) -> None:
    shown = f"{case!r}: {r!r}"
    assert r["rc"] in (0, 1, 2), shown
    assert "Traceback" not in r["err"] and "Traceback" not in r["out"], shown
    if r["rc"] == 2:
        assert len(r["err"].splitlines()) == 1 and ": error: " in r["err"], shown
    if "--json" in case[-1:] and r["rc"] == 0:
        json.loads(r["out"])


def test_non_utf8_argv():
    for case in NON_UTF8_CASES:
        check_non_utf8(case, run_encoded([a.decode("utf-8", "surrogateescape") for a in case]))


SEP = b"--next-case--"
CHILD = b"""
import json, sys
from tests.test_fuzz_cli import run_encoded
cases, cur = [], []
for a in sys.argv[1:]:
    if a == "--next-case--":
        cases.append(cur); cur = []
    else:
        cur.append(a)
cases.append(cur)
sys.stdout.write(json.dumps([run_encoded(argv) for argv in cases]))
"""


@pytest.mark.slow
def test_non_utf8_argv_real_process():
    args = [a for case in NON_UTF8_CASES for a in case + [SEP]][:-1]
    env = dict(os.environ, LC_ALL="C.UTF-8")
    p = subprocess.run([os.fsencode(sys.executable), b"-c", CHILD, *args], capture_output=True,
                       timeout=300, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert p.returncode == 0, p.stderr.decode("utf-8", "replace")
    results = json.loads(p.stdout)
    assert len(results) == len(NON_UTF8_CASES)
    for case, r in zip(NON_UTF8_CASES, results):
        check_non_utf8(case, r)
