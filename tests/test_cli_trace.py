"""``symconv trace``: output on real models, one-line errors with the documented exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from symconv.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "tests", "trace_models.py")

USER_FILE = textwrap.dedent("""
    import torch
    from torch import nn

    def good():
        return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 4, 3))

    def raises():
        raise ValueError("no weights for this one")

    def not_a_model():
        return 42

    class Odd(nn.Module):
        def forward(self, x):
            return torch.special.bessel_j0(x)

    def odd():
        return Odd()

    def bn():
        return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4))

    NOT_CALLABLE = 3
""")


@pytest.fixture
def user_file(tmp_path):
    p = tmp_path / "user_models.py"
    p.write_text(USER_FILE)
    return str(p)


def run(capsys, *argv):
    code = main(["trace", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, want_code, argument):
    assert code == want_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    if argument:
        assert f"argument {argument}:" in lines[0], lines[0]
    return lines[0]


# ---- argument errors: exit 2, one line naming the argument -----------------------------------

def test_missing_file(capsys, tmp_path):
    code, out, err = run(capsys, str(tmp_path / "nope.py") + ":f", "--input", "N,3,H,W")
    line = one_line_error(code, err, 2, "MODEL")
    assert "does not exist" in line and out == ""


def test_no_such_factory(capsys, user_file):
    code, _, err = run(capsys, user_file + ":missing", "--input", "N,3,H,W")
    assert "no factory 'missing'" in one_line_error(code, err, 2, "MODEL")


def test_not_callable_and_not_a_module(capsys, user_file):
    code, _, err = run(capsys, user_file + ":NOT_CALLABLE", "--input", "N,3,H,W")
    assert "not callable" in one_line_error(code, err, 2, "MODEL")
    code, _, err = run(capsys, user_file + ":not_a_model", "--input", "N,3,H,W")
    assert "returned int, not a torch.nn.Module" in one_line_error(code, err, 2, "MODEL")


def test_factory_that_raises(capsys, user_file):
    code, _, err = run(capsys, user_file + ":raises", "--input", "N,3,H,W")
    line = one_line_error(code, err, 2, "MODEL")
    assert "raises() raised ValueError: no weights for this one" in line


def test_model_without_colon_and_unknown_module(capsys):
    code, _, err = run(capsys, "justaname", "--input", "N,3,H,W")
    assert "is not FILE.py:FACTORY" in one_line_error(code, err, 2, "MODEL")
    code, _, err = run(capsys, "no_such_pkg_xyz:f", "--input", "N,3,H,W")
    assert "no module named 'no_such_pkg_xyz'" in one_line_error(code, err, 2, "MODEL")


@pytest.mark.parametrize("bad,msg", [("N,3,H-1,W", "neither an integer nor a symbol"),
                                     ("N,-3,H,W", "negative"), ("N,,H,W", "entry 1 is empty"),
                                     ("", "has no dimension")])
def test_bad_input(capsys, user_file, bad, msg):
    code, _, err = run(capsys, user_file + ":good", "--input", bad)
    assert msg in one_line_error(code, err, 2, "--input")


def test_missing_input_and_unknown_preset(capsys, user_file):
    code, _, err = run(capsys, user_file + ":good")
    assert code == 2 and "--input" in err and "Traceback" not in err
    code, _, err = run(capsys, user_file + ":good", "--input", "N,3,H,W", "--env", "tpu-v9")
    assert "unknown environment preset 'tpu-v9'" in one_line_error(code, err, 2, "--env")


# ---- torch/symconv errors: exit 1, one line ----------------------------------------------------

def test_unsupported_op_is_one_line(capsys, user_file):
    code, _, err = run(capsys, user_file + ":odd", "--input", "N,3,H,W")
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("tracing ", "traced "))]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert "unsupported op" in lines[0] and "bessel_j0" in lines[0], lines[0]


# ---- real output -------------------------------------------------------------------------------

def test_trace_table_domain_and_backends(capsys, user_file):
    code, out, err = run(capsys, user_file + ":good", "--input", "N,3,H,W", "--env", "cpu")
    assert code == 0, err
    for text in ("layer", "Conv2d", "backends (cpu)", "(N, 3, H, W)", "Mkldnn", "Empty"):
        assert text in out, (text, out)
    # Conv2d(3, 4, 3, stride=2) then Conv2d(4, 4, 3): H >= 7 is where both kernels fit
    assert "domain    H >= 7 and W >= 7" in out
    # error regions of a convolution lie outside the model's domain: not listed
    assert "error:" not in out


def test_trace_json(capsys, user_file):
    code, out, err = run(capsys, user_file + ":good", "--input", "N,3,H,W", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["inputs"] == [["N", "3", "H", "W"]]
    names = [lay["name"] for lay in doc["layers"]]
    assert "0" in names and "2" in names
    assert len(doc["backends"]) == 2
    assert doc["mode"] == "eval"


def test_trace_module_factory_and_train_flag(capsys, user_file, monkeypatch):
    """MODULE:FACTORY form; --train traces in training mode: BatchNorm then needs more than one
    value per channel, so N=1 with a 1x1 map (H, W in 3..4) leaves the domain."""
    monkeypatch.syspath_prepend(os.path.dirname(user_file))
    code, out_eval, err = run(capsys, "user_models:bn", "--input", "N,3,H,W", "--json")
    assert code == 0, err
    code, out_train, err = run(capsys, "user_models:bn", "--input", "N,3,H,W", "--json",
                               "--train")
    assert code == 0, err
    ev, tr = json.loads(out_eval), json.loads(out_train)
    assert tr["mode"] == "train" and ev["mode"] == "eval"
    assert ev["domain"] == "H >= 3 and W >= 3", ev["domain"]
    assert ev["domain"] != tr["domain"]


def test_file_with_dataclass_and_repo_models(capsys):
    """A file whose dataclasses need their module registered (tests/trace_models.py)."""
    code, out, err = run(capsys, MODELS + ":unet_transpose", "--input", "N,3,H,W", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["domain"] == "H >= 4 and H % 4 == 0 and W >= 4 and W % 4 == 0"
    assert {lay["type"] for lay in doc["layers"]} >= {"ConvTranspose2d", "MaxPool2d", "Conv2d"}


@pytest.mark.slow
def test_console_script_never_prints_a_traceback(user_file):
    """In a fresh process, as the console script runs it."""
    p = subprocess.run([sys.executable, "-c", "import sys; from symconv.cli import main; "
                        "sys.exit(main())", "trace", user_file + ":raises", "--input", "N,3,H,W"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("symconv trace: error: argument MODEL:"), p.stderr
