"""The reach / explain / map commands: real output, JSON, and one-line errors (exit 2)."""

from __future__ import annotations

import json

import pytest

from symconv.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_reach_prints_witness_validation_and_region(capsys):
    code, out, err = run(capsys, "reach", "NnpackSpatial", "--env", "native", "--dims", "2")
    assert code == 0, err
    assert "NnpackSpatial is reachable under native" in out
    assert "input   [16, 1, 1, 1] float32 cpu" in out
    assert "flags   mkldnn_enabled=False" in out
    assert "validated by torch" in out
    assert "N >= 16" in out and "not mkldnn_enabled" in out


def test_reach_json_and_unreachable(capsys):
    code, out, _ = run(capsys, "reach", "cudnn", "--env", "cpu", "--json")
    obj = json.loads(out)
    assert code == 0 and obj["verdict"] == "unreachable" and obj["proof"]
    code, out, _ = run(capsys, "reach", "Slow2d", "--env", "native", "--where",
                       "N >= 2, H == W", "--json")
    obj = json.loads(out)
    assert obj["verdict"] == "reachable" and obj["validation"]["status"] == "validated"
    assert obj["witness"]["input"]["shape"][0] >= 2 and obj["region"]
    assert "torch._C._select_conv_backend" in obj["witness_code"]


def test_reach_all_table(capsys):
    code, out, _ = run(capsys, "reach", "--all", "NnpackSpatial", "--dims", "2")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert "cuda-h100" in header and "native" in header
    assert row.startswith("NnpackSpatial") and "yes, torch" in row


def test_reach_unknown_says_unknown(capsys, monkeypatch):
    import importlib
    reach_mod = importlib.import_module("symconv.queries.reach")
    monkeypatch.setattr(reach_mod.solve, "verdict", lambda s, *a: ("unknown", "timeout"))
    code, out, _ = run(capsys, "reach", "NnpackSpatial", "--env", "cpu", "--where", "N <= 8")
    assert code == 1 and "is unknown" in out and "unknown (the solver did not decide)" in out


def test_explain_output_and_want(capsys):
    code, out, err = run(capsys, "explain", "--input", "8,3,224,224", "--weight", "64,3,7,7",
                         "--stride", "2", "--padding", "3", "--env", "native", "--want",
                         "NnpackSpatial")
    assert code == 0, err
    assert "torch picks  Mkldnn" in out
    assert "mkldnn_empty" in out and "N == 0 or C == 0 does not hold (N = 8, C = 3)" in out
    assert "mkldnn_enabled: True -> False" in out
    assert "input: [8, 3, 224, 224] -> [16, 3, 224, 224]" in out
    code, out, _ = run(capsys, "explain", "--input", "8,3,224,224", "--weight", "64,3,7,7",
                       "--env", "cpu", "--want", "Cudnn", "--json")
    obj = json.loads(out)
    assert obj["want"]["verdict"] == "unreachable" and obj["reasons"]


def test_map_picture_and_json(capsys, tmp_path):
    png = tmp_path / "m.png"
    code, out, err = run(capsys, "map", "--input", "N,3,H,H", "--weight", "8,3,3,3",
                         "--padding", "1", "--x", "H=1:64", "--y", "N=1:20", "--out", str(png),
                         "--check", "40")
    assert code == 0, err
    assert "1280 cells" in out and "torch agrees on 40 of 40" in out
    assert png.stat().st_size > 5000
    code, out, _ = run(capsys, "map", "--input", "16,3,20,20", "--weight", "8,3,K,K",
                       "--padding", "P", "--x", "P=0:3", "--y", "K=1:25", "--env", "cpu",
                       "--set", "mkldnn_enabled=false", "--json")
    obj = json.loads(out)
    assert code == 0 and set(obj["counts"]) == {"NnpackSpatial", "Slow2d", "error: kernel_size"}
    assert len(obj["grid"]) == 25 and len(obj["grid"][0]) == 4


BAD = [
    (["reach", "Foo"], "argument BACKEND: unknown backend 'Foo'"),
    (["reach"], "argument BACKEND"),
    (["reach", "Cudnn", "--env", "nope"], "argument --env: unknown environment preset"),
    (["reach", "Cudnn", "--dims", "4"], "argument --dims"),
    (["reach", "Cudnn", "--where", "N<=2, N>=5"], "argument --where: the constraints contradict"),
    (["reach", "Cudnn", "--where", "N <="], "argument --where: cannot parse"),
    (["reach", "Cudnn", "--where", "dtype == float8"], "argument --where"),
    (["reach", "Cudnn", "--where", "Z > 1"], "argument --where: 'Z > 1': unknown name"),
    (["reach", "--all", "--env", "cpu", "--where", "dtype==half, dtype==float"],
     "argument --where"),
    (["explain", "--input", "8,3,x-1,2", "--weight", "4,3,3,3"], "argument --input"),
    (["explain", "--input", "8,3,H,W", "--weight", "4,3,3,3"], "argument --input"),
    (["explain", "--input", "8,3,5,5", "--weight", "4,3,3,3", "--want", "Nope"],
     "argument BACKEND"),
    (["explain", "--input", "8,3,5,5", "--weight", "4,3,3,3", "--env", "x"], "argument --env"),
    (["explain", "--input", "8,3,5,5", "--weight", "4,3,3,3", "--dtype", "f8"],
     "argument --dtype"),
    (["map", "--input", "N,3,H,H", "--weight", "4,3,3,3", "--x", "H=9:1", "--y", "N=1:2"],
     "argument --x"),
    (["map", "--input", "N,3,H,H", "--weight", "4,3,3,3", "--x", "H=1:9", "--y", "Q=1:2"],
     "argument --y"),
    (["map", "--input", "N,3,H,W", "--weight", "4,3,3,3", "--x", "H=1:9", "--y", "N=1:2"],
     "argument --input"),
    (["map", "--input", "N,3,-1,H", "--weight", "4,3,3,3", "--x", "H=1:9", "--y", "N=1:2"],
     "argument --input"),
    (["map", "--input", "N,3,H,H", "--weight", "4,3,3,3", "--x", "H=1:9", "--y", "N=1:2",
      "--env", "bogus"], "argument --env"),
]


@pytest.mark.parametrize("argv,msg", BAD)
def test_bad_input_is_one_line_naming_the_argument(capsys, argv, msg):
    code, out, err = run(capsys, *argv)
    assert code == 2, (argv, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], err
