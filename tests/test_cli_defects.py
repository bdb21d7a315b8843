"""Regression tests for CLI defects found by fuzzing (issue "Harden and ship"): a bad argument
is ONE stderr line ``symconv <cmd>: error: argument --x: ...``, exit status 2, no traceback;
an answer is exit status 0 or 1. The API side is tests/test_defects.py."""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import signal
import subprocess
import sys
import tomllib

import pytest

from symconv.cli import main


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def usage_error(argv: list[str], argument: str) -> str:
    """Run ``argv``; assert the one-line usage error naming ``argument``; return its message."""
    rc, out, err = run_cli(argv)
    shown = f"argv={argv!r} status={rc} stdout={out!r} stderr={err!r}"
    assert rc == 2, shown
    assert "Traceback" not in out + err, shown
    lines = err.splitlines()
    assert len(lines) == 1, shown
    prefix = f"symconv {argv[0]}: error: argument {argument}: "
    assert lines[0].startswith(prefix), shown
    return lines[0][len(prefix):]


# 1. the seed's groups == 0 -------------------------------------------------------------


def test_select_seed_groups_zero_reports_the_seeds_error():
    rc, out, err = run_cli(["select", "--input", "1,3,8,8", "--weight", "1,3,8,8", "--groups",
                            "0", "--env", "seed"])
    assert (rc, out, err) == (1, "torch raises RuntimeError: non-positive groups is not "
                                 "supported\n", "")


# 2. environment fields and versions ----------------------------------------------------


@pytest.mark.parametrize("item,says", [
    ("cuda_capability=9", "cuda_capability is MAJOR.MINOR (e.g. 9.0) or none, got '9'"),
    ("cuda_capability=9.0.1", "cuda_capability is MAJOR.MINOR"),
    ("cuda_capability=9.-1", "Environment.cuda_capability must have non-negative major"),
    ("torch_version=9.99", "Environment.torch_version: unknown torch version '9.99'"),
    ("torch_version=2.99.1", "Environment.torch_version: unknown torch version '2.99.1'"),
    ("cudnn_depthwise_kernel=fast", "Environment.cudnn_depthwise_kernel must be 'auto'"),
    ("cudnn_version=0", "Environment.cudnn_version must be None"),
])
def test_set_refuses_bad_environment_values(item, says):
    msg = usage_error(["select", "--input", "1,3,8,8", "--weight", "4,3,3,3", "--set", item],
                      "--set")
    assert msg.startswith(says), msg


@pytest.mark.parametrize("flag", ["--from", "--to"])
@pytest.mark.parametrize("version", ["9.99", "2.99.1", "1.13"])
def test_diff_refuses_versions_without_a_profile(flag, version):
    other = "--to" if flag == "--from" else "--from"
    msg = usage_error(["diff", flag, version, other, "cpu", "--no-validate"], flag)
    assert msg.startswith(f"unknown torch version '{version}': symconv has profiles for torch "
                          "2.4 to 2.15 only (seed: 2.4.0, "), msg


def test_diff_still_takes_a_version_between_profiles():
    rc, out, err = run_cli(["diff", "--from", "2.12", "--to", "2.11", "--dims", "1",
                            "--where", "not transposed", "--no-validate"])
    assert rc == 0 and out.startswith("diff 2.12 (torch 2.12.0"), (rc, out, err)
    assert "no difference (proof)" in out


# 3. contradictory --where --------------------------------------------------------------

CONTRADICTIONS = [
    (["--where", "N>=4", "--where", "N<=2"], "the constraints contradict each other: no sizes "
                                             "satisfy 'N>=4, N<=2'"),
    (["--where", "N<0"], "the constraints contradict each other: no sizes satisfy 'N<0'"),
    (["--where", "num_threads>=4, num_threads<=2"],
     "the constraints contradict each other: num_threads"),
    (["--where", "dtype==float16, dtype==float32"],
     "the constraints contradict each other: nothing satisfies every constraint on dtype"),
]


@pytest.mark.parametrize("where,says", CONTRADICTIONS)
def test_diff_refuses_contradictory_where_in_one_line(where, says):
    msg = usage_error(["diff", "--from", "cpu", "--to", "seed", "--dims", "2", "--no-validate"]
                      + where, "--where")
    assert msg == says


@pytest.mark.parametrize("where,says", CONTRADICTIONS)
def test_reach_refuses_them_alike(where, says):
    msg = usage_error(["reach", "Mkldnn", "--env", "cpu", "--dims", "2", "--no-validate"]
                      + where, "--where")
    assert msg == says


def test_reach_table_refuses_them_too():
    msg = usage_error(["reach", "--all", "--dims", "2", "--no-validate", "--where", "N<0"],
                      "--where")
    assert msg == "the constraints contradict each other: no sizes satisfy 'N<0'"


def test_diff_progress_still_starts_with_the_comparison_line():
    rc, out, err = run_cli(["diff", "--from", "cpu", "--to", "cpu-mt", "--dims", "1", "--where",
                            "not transposed, N<=4", "--no-validate"])
    assert rc == 0, (out, err)
    lines = err.splitlines()
    assert lines[0] == "symconv diff: comparing cpu and cpu-mt ..."
    assert lines[1].startswith("symconv diff: structure 1/1: 1-D")


@pytest.mark.parametrize("axis,flag,says", [
    ("H=-5:-1", "--x", "H is a size (in --input): its values must be >= 0, got -5"),
    ("N=-1,2", "--y", "N is a size (in --input): its values must be >= 0, got -1"),
])
def test_map_refuses_negative_sizes_on_an_axis(axis, flag, says):
    other = "N=1:2" if flag == "--x" else "H=1:4"
    argv = ["map", "--input", "N,3,H,H", "--weight", "4,3,3,3", "--env", "cpu", flag, axis,
            "--y" if flag == "--x" else "--x", other]
    assert usage_error(argv, flag) == says


def test_map_keeps_negative_parameters_on_an_axis():
    """A parameter is not a size: torch's own error answers for negative paddings."""
    rc, out, err = run_cli(["map", "--input", "N,3,8,8", "--weight", "4,3,3,3", "--padding",
                            "P", "--env", "cpu", "--x", "P=-2:1", "--y", "N=1:2"])
    assert rc == 0 and "error: padding_neg" in out and "Slow2d" in out, (out, err)


# 4. Ctrl-C while `import symconv` loads torch and Z3 ------------------------------------

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Makes the child's first `import torch` wait (after saying so on stderr), so that the signal
# lands inside the console script's import of symconv, where a real Ctrl-C in the first second
# lands.
SLOW_IMPORT = '''
import sys, time

class _SlowTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            sys.stderr.write("child: importing torch\\n")
            sys.stderr.flush()
            time.sleep(60)
        return None

sys.meta_path.insert(0, _SlowTorch())
'''


def console_script_entry() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]["symconv"]


def sigint_as_from_a_terminal() -> None:
    """In the child before exec: SIGINT's default action. A runner started as a background
    job of a non-interactive shell ignores SIGINT, and a child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_during_import(entry: str, tmp_path: pathlib.Path) -> tuple[int, str]:
    """Run what pip's console script runs for ``entry`` (``module:function``), send SIGINT
    while it imports torch; return (status, stderr after the child's marker line)."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_IMPORT)
    module, func = entry.split(":")
    code = f"import sys\nfrom {module} import {func}\nsys.exit({func}())\n"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    p = subprocess.Popen([sys.executable, "-c", code, "--version"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=sigint_as_from_a_terminal)
    try:
        assert p.stderr is not None
        marker = p.stderr.readline()
        assert marker == "child: importing torch\n", marker
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out == ""
    return p.returncode, err


def test_console_script_is_outside_the_package():
    assert console_script_entry() == "symconv_launcher:main"
    with open(ROOT / "pyproject.toml", "rb") as f:
        assert "symconv_launcher" in tomllib.load(f)["tool"]["setuptools"]["py-modules"]


def test_ctrl_c_during_import_is_one_line_and_status_130(tmp_path):
    status, err = interrupt_during_import(console_script_entry(), tmp_path)
    assert (status, err) == (130, "symconv: interrupted\n")


def test_the_old_entry_point_showed_a_traceback(tmp_path):
    """What the defect looked like: the same signal with the package's own main as entry."""
    status, err = interrupt_during_import("symconv.cli:main", tmp_path)
    assert "Traceback" in err and "KeyboardInterrupt" in err and status != 0


def test_launcher_runs_commands():
    p = subprocess.run([sys.executable, "-c", "import sys\nfrom symconv_launcher import main\n"
                        "sys.exit(main())", "select", "--input", "1,3,8,8", "--weight",
                        "4,3,3,3", "--env", "cpu", "--json"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    rc, out, _ = run_cli(["select", "--input", "1,3,8,8", "--weight", "4,3,3,3", "--env", "cpu",
                          "--json"])
    assert rc == 0 and p.stdout == out  # the same answer as the package's main in-process
