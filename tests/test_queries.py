"""reach / explain / dispatch maps: answers from the symbolic rules, confirmed by torch.

* every backend is reachable with a witness torch confirms, or proved unreachable, under this
  process's environment and the 'cpu' preset; under 'cuda-h100' the witnesses are the ones
  recorded on an H100 (tests/data/cuda_witnesses.json) and torch's recorded answers agree;
* the lazy categorical enumeration agrees with the concrete rules: at random calls, the
  leaf's formula holds exactly when the int path picks the backend;
* explain's reasons and --want changes; maps cell by cell against the int path and torch.
"""

from __future__ import annotations

import json
import pathlib
import random

import pytest
import torch
import z3

import symconv
from symconv import ConvBackend, Environment, TensorSpec, preset
from symconv.errors import ConvValueError
from symconv.queries import WhereError, explain, parse_where, reach
from symconv.queries import solve
from symconv.queries.dmap import dispatch_map, parse_axis
from symconv.queries.explain import _Call
from symconv.queries.reach import Query, _targets
from symconv.queries.space import Leaf
from symconv.queries.witness import Witness, replay, torch_flags

DATA = pathlib.Path(__file__).parent / "data" / "cuda_witnesses.json"
TOOLS = pathlib.Path(__file__).parent.parent / "tools"
NATIVE = Environment.from_torch()


def cpu_preset_is_this_process() -> bool:
    return NATIVE.replace(num_threads=1) == preset("cpu")


# --------------------------------------------------------------------------------------
# reach


@pytest.mark.parametrize("env", ["native", "cpu"])
def test_every_backend_is_validated_or_proved_unreachable(env):
    if env == "cpu" and not cpu_preset_is_this_process():
        pytest.skip("the 'cpu' preset is not this machine's build")
    for b in ConvBackend:
        r = reach(b, env=env)
        assert r.verdict in ("reachable", "unreachable"), (b, r.unknown)
        if r.reachable:
            assert r.validation.status == "validated", (b, r.validation.message)
            assert r.witness.symconv_backend() == b
            assert r.validation.message.startswith("validated by torch")
        else:
            assert r.proof and r.witness is None
            assert "proof:" in r.text()  # (no region is computed for unreachable ones)


def test_cpu_table_is_the_expected_one():
    reachable = {b.name for b in ConvBackend if reach(b, env="cpu", validate=False).reachable}
    assert reachable == {"Empty", "Mkldnn", "MkldnnTranspose", "MkldnnEmpty", "NnpackSpatial",
                         "Overrideable", "Slow2d", "Slow3d", "SlowDilated2d", "SlowDilated3d",
                         "SlowTranspose2d", "SlowTranspose3d"}


def test_nnpack_needs_mkldnn_off_and_a_batch_of_16():
    r = reach("NnpackSpatial", env="cpu", dims=2)
    w = r.witness
    assert w.changed_flags() == {"mkldnn_enabled": False}
    assert w.input_shape == (16, 1, 1, 1) and w.weight_shape == (1, 1, 1, 1)
    text = " ".join(r.region_text(None))
    for atom in ("not mkldnn_enabled", "nnpack_enabled", "dtype == float32", "N >= 16",
                 "kH <= 16", "padH < kH", "not dilated"):
        assert atom in text, (atom, text)
    # with the flags fixed it is unreachable, and the proof says rule 'mkldnn' fires first
    r2 = reach("NnpackSpatial", env="cpu", dims=2, vary_flags=False)
    assert r2.verdict == "unreachable"
    assert any("mkldnn" in line for line in r2.proof)


def test_where_constraints():
    r = reach("NnpackSpatial", env="cpu", where="N <= 8")
    assert r.verdict == "unreachable"
    assert any("constraints exclude" in p for p in r.proof)
    r = reach("Slow2d", env="cpu", where="N >= 3, H == W, H >= 5, dtype == float64")
    assert r.reachable and r.validated
    w = r.witness
    assert w.values["N"] >= 3 and w.values["H"] == w.values["W"] >= 5
    assert w.facts["dtype"] == "float64"
    r = reach("SlowDilated3d", env="cpu", where="D >= 2")  # D restricts to 3-D calls
    assert r.reachable and r.witness.dims == 3
    with pytest.raises(WhereError, match="contradict"):
        reach("Slow2d", env="cpu", where="N <= 2, N >= 5")
    with pytest.raises(WhereError, match="unknown name"):
        reach("Slow2d", env="cpu", where="Q <= 2")
    with pytest.raises(WhereError, match="contradict"):
        parse_where("dtype == float16, dtype == float32")
    with pytest.raises(WhereError):
        parse_where("N <=")
    assert parse_where("not mkldnn_enabled").restrict == {"mkldnn_enabled": (False,)}


def test_unknown_is_never_a_proof(monkeypatch):
    import importlib
    reach_mod = importlib.import_module("symconv.queries.reach")
    monkeypatch.setattr(reach_mod.solve, "verdict", lambda s, *a: ("unknown", "timeout (test)"))
    r = reach("NnpackSpatial", env="cpu", where="N <= 8")
    assert r.verdict == "unknown" and r.unknown
    assert "unknown" in r.text()
    # a backend ruled out by categorical facts alone needs no solver: still a proof
    assert reach("Cudnn", env="cpu").verdict == "unreachable"


def test_solver_timeouts_say_unknown():
    x, y, z = z3.Ints("x y z")
    s = solve.new_solver(timeout_ms=1)
    s.add(x * x * x + y * y * y == z * z * z, x > 1000, y > 1000)
    v, why = solve.verdict(s)
    assert v in ("unknown", "sat")  # never "unsat" from a timeout
    if v == "unknown":
        assert "limits" in why


# --------------------------------------------------------------------------------------
# CUDA witnesses recorded on the GPU machine


def test_cuda_witnesses_match_the_recording():
    rec = json.loads(DATA.read_text())
    assert rec["preset"] == "cuda-h100"
    assert rec["recorded_on"]["device_name"].startswith("NVIDIA H100")
    assert rec["recorded_on"]["cudnn_version"] == 91900
    assert rec["recorded_on"]["torch_version"].startswith("2.11")
    # torch agreed with every witness
    assert rec["summary"]["mismatching"] == []
    for item in rec["witnesses"]:
        assert item["torch"]["backend"] == item["backend"], item
    # symconv still produces exactly the recorded witnesses and unreachability verdicts
    import importlib.util
    spec = importlib.util.spec_from_file_location("vcw", TOOLS / "validate_cuda_witnesses.py")
    vcw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vcw)
    now = vcw.make_witnesses("cuda-h100")
    assert sorted(now["unreachable"]) == sorted(rec["unreachable"])
    got = [(w["backend"], w["where"], w["call"]) for w in now["witnesses"]]
    want = [(w["backend"], w["where"], w["call"]) for w in rec["witnesses"]]
    assert got == want
    # every backend of the preset is covered: reachable with a recorded witness, or proved not
    covered = {w["backend"] for w in rec["witnesses"]} | set(rec["unreachable"])
    assert covered == {b.name for b in ConvBackend}
    # and reach() reports the recorded replay
    r = reach("CudaDepthwise2d", env="cuda-h100")
    assert r.validation.status == "recorded" and r.validated
    assert "NVIDIA H100" in r.validation.message


def test_recorded_cuda_calls_replay_through_symconv():
    rec = json.loads(DATA.read_text())
    env = preset("cuda-h100")
    for item in rec["witnesses"]:
        w = Witness.from_json(item["call"], env)
        assert w.symconv_backend().name == item["torch"]["backend"]
        mf = symconv.determine_backend_memory_format(w.input_spec(), w.weight_spec(),
                                                     w.symconv_backend(), env=w.call_env())
        assert str(mf).replace("torch.", "") == item["torch"]["memory_format"], item
        # not this process: replay says so instead of pretending
        assert replay(w).status == "not-validated"


# --------------------------------------------------------------------------------------
# the lazy enumeration agrees with the concrete rules


def _random_call(rng: random.Random, env: Environment):
    d = rng.choice([1, 2, 2, 3])
    transposed = rng.random() < 0.3
    g = rng.choice([1, 1, 2, 3])
    cg = rng.choice([1, 2])
    cout = g * rng.choice([1, 2])
    n = rng.choice([0, 1, 2, 15, 16, 17])
    c = cg * g if not transposed else g * rng.choice([1, 2])
    k = [rng.choice([1, 2, 3, 5, 17]) for _ in range(d)]
    stride = [rng.choice([1, 1, 2]) for _ in range(d)]
    dil = [rng.choice([1, 1, 2]) for _ in range(d)]
    pad = [rng.choice([0, 1, 3]) for _ in range(d)]
    opad = [rng.choice([0, 0, 1]) for _ in range(d)]
    sp = [max(1, dil[i] * (k[i] - 1) + 1 - 2 * pad[i]) + rng.randint(0, 6) for i in range(d)]
    dtype = rng.choice([torch.float32, torch.float32, torch.float64, torch.float16,
                        torch.bfloat16])
    device = rng.choice(["cpu", "cpu", "meta"] + (["cuda", "cuda"] if env.cuda_available else []))
    mf = torch.contiguous_format
    if d == 2 and rng.random() < 0.3:
        mf = torch.channels_last
    wshape = [c, cout // g] + k if transposed else [cout, cg] + k
    inp = TensorSpec([n, c] + sp, dtype=dtype, device=device, memory_format=mf,
                     requires_grad=rng.random() < 0.3)
    wt = TensorSpec(wshape, dtype=dtype, device=device)
    flags = {"mkldnn_enabled": rng.random() < 0.7, "nnpack_enabled": rng.random() < 0.8,
             "cudnn_enabled": rng.random() < 0.8, "num_threads": rng.choice([1, 2]),
             "grad_enabled": rng.random() < 0.8, "cudnn_deterministic": rng.random() < 0.3}
    return (inp, wt, None, stride, pad, dil, transposed, opad, g), env.replace(**flags)


@pytest.mark.parametrize("env_name", ["cpu", "cuda-h100", "mobile"])
def test_leaf_formulas_agree_with_the_int_path(env_name):
    rng = random.Random(1234)
    base = preset(env_name)
    checked = 0
    for _ in range(120):
        call, env = _random_call(rng, base)
        try:
            want = symconv.select_conv_backend(*call, env=env)
        except (symconv.ConvError, ConvValueError):
            want = None
        q = Query(env, None, None, vary_flags=True)
        c = _Call(q, *call, env)
        assert c.ok, c.why
        st = c.structure
        for b in (want,) if want is not None else (ConvBackend.Slow2d,):
            leaves = [x for x in q.space.explore(_targets(b), structures=[st])]
            holds = []
            for leaf in leaves:
                if all(c.assign.get(k) == v for k, v in leaf.assign.items()):
                    if isinstance(leaf, Leaf):
                        v = c.subst(z3.And(st.valid, leaf.formula))
                        holds.append(z3.is_true(v))
                    else:
                        holds.append(False)
            assert len(holds) == 1, (call, b, len(holds))  # the leaves partition the facts
            assert holds[0] == (want == b), (call, env, b, want)
            checked += 1
    assert checked == 120


# --------------------------------------------------------------------------------------
# explain


def test_explain_names_the_failing_conditions_and_the_smallest_change():
    inp, w = TensorSpec((8, 3, 224, 224)), TensorSpec((64, 3, 7, 7))
    ex = explain(inp, w, None, [2], [3], [1], False, [0], 1, env="native",
                 want="NnpackSpatial")
    assert ex.backend == symconv.select_conv_backend(inp, w, None, [2], [3], [1], False, [0],
                                                     1, env=NATIVE)
    x, wt = torch.empty(8, 3, 224, 224), torch.empty(64, 3, 7, 7)
    assert ex.backend == ConvBackend.from_torch(torch._C._select_conv_backend(
        x, wt, None, [2, 2], [3, 3], [1, 1], False, [0, 0], 1))
    names = [r.rule for r in ex.reasons]
    assert names[:3] == ["mkldnn_empty", "empty", "zero_numel"]
    first = ex.reasons[0]
    assert "N == 0 or C == 0" in first.text() and "N = 8" in first.text()
    cud = next(r for r in ex.reasons if r.rule == "cudnn")
    assert cud.categorical and "cudnn_version=None" in cud.text()
    want = ex.want
    assert want.verdict == "reachable"
    assert ("mkldnn_enabled", "True", "False") in want.changes
    assert ("input", [8, 3, 224, 224], [16, 3, 224, 224]) in want.changes
    assert len(want.changes) == 2 and want.validation.status == "validated"


def test_explain_want_unreachable_and_invalid_calls():
    inp, w = TensorSpec((8, 3, 32, 32)), TensorSpec((4, 3, 3, 3))
    ex = explain(inp, w, None, [1], [0], [1], False, [0], 1, env="cpu", want="Cudnn")
    assert ex.want.verdict == "unreachable" and ex.want.proof
    bad = explain(TensorSpec((8, 3, 2, 2)), w, None, [1], [0], [1], False, [0], 1, env="cpu",
                  want="Slow2d")
    assert bad.error.startswith("RuntimeError: Calculated padded input size")
    assert bad.want.verdict == "reachable"
    # the suggested change makes the call valid and picks Slow2d
    assert bad.want.witness.symconv_backend() == ConvBackend.Slow2d


def test_explain_cuda_depthwise_in_user_terms():
    inp = TensorSpec((8, 3, 224, 224), dtype=torch.float16, device="cuda")
    w = TensorSpec((64, 3, 7, 7), dtype=torch.float16, device="cuda")
    ex = explain(inp, w, None, [2], [3], [1], False, [0], 1, env="cuda-h100",
                 want="CudaDepthwise2d")
    assert ex.backend == ConvBackend.Cudnn
    dw = ex.reasons[3]
    assert dw.rule == "cudnn_depthwise" and "G >= 2 does not hold (G = 1)" in dw.text()
    assert ex.want.verdict == "reachable"
    assert ex.want.witness.symconv_backend() == ConvBackend.CudaDepthwise2d
    assert len(ex.want.changes) <= 3


# --------------------------------------------------------------------------------------
# maps


def test_map_matches_the_int_path_cell_by_cell_and_torch_on_a_sample():
    inp, w = TensorSpec(("N", 3, "H", "H")), TensorSpec((8, 3, 3, 3))
    m = dispatch_map(inp, w, None, [1], [1], [1], False, [0], 1, x="H=0:40:3", y="N=0:20",
                     env="native")
    assert m.grid.shape == (21, 14)
    for i, nv in enumerate(m.y.values):
        for j, hv in enumerate(m.x.values):
            try:
                want = symconv.select_conv_backend(
                    TensorSpec((int(nv), 3, int(hv), int(hv))), w, None, [1], [1], [1], False,
                    [0], 1, env=NATIVE).name
            except symconv.ConvError:
                want = "error"
            got = m.labels[m.grid[i, j]]
            assert (got.startswith("error") and want == "error") or got == want, (nv, hv)
    check = m.check_against_torch(sample=120)
    assert check.ok and check.checked == 120, check


def test_map_over_a_parameter_and_in_another_environment(tmp_path):
    inp, w = TensorSpec((16, 3, 20, 20)), TensorSpec((8, 3, "K", "K"))
    env = preset("cpu").replace(mkldnn_enabled=False)
    m = dispatch_map(inp, w, None, [1], ["P"], [1], False, [0], 1, x="P=0:4", y="K=1:25",
                     env=env)
    counts = m.counts()
    assert set(counts) == {"NnpackSpatial", "Slow2d", "error: kernel_size"}
    assert m.label_at(1, 3) == "NnpackSpatial"   # padding 1 < kernel 3 <= 16
    assert m.label_at(1, 17) == "Slow2d"          # kernel 17 > 16
    assert m.label_at(0, 25) == "error: kernel_size"
    out = tmp_path / "map.png"
    m.plot(str(out))
    assert out.stat().st_size > 5000
    obj = m.to_json()
    assert obj["x"]["name"] == "P" and len(obj["grid"]) == 25
    if cpu_preset_is_this_process():
        with torch_flags({"num_threads": 1}):
            pass
        assert m.check_against_torch(60).ok


def test_map_bad_axes():
    inp, w = TensorSpec(("N", 3, "H", "H")), TensorSpec((8, 3, 3, 3))
    with pytest.raises(ValueError, match="does not appear"):
        dispatch_map(inp, w, None, [1], [1], [1], False, [0], 1, x="Q=1:3", y="N=1:3")
    with pytest.raises(ValueError, match="on no axis"):
        dispatch_map(TensorSpec(("N", 3, "H", "W")), w, None, [1], [1], [1], False, [0], 1,
                     x="H=1:3", y="N=1:3")
    for bad in ("H=5:1", "H", "H=1:2:0", "H=a,b"):
        with pytest.raises(ValueError):
            parse_axis(bad)
