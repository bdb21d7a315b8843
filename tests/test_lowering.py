"""symconv.convolution / convolution_backward / the double backward against torch.

Kernels run in a worker subprocess (tests/oracle.py's ``ConvWorker`` serving :func:`run_case`):
torch can crash on valid input, and a crash must not take the test run down. A case is a JSON-able
dict; the worker builds seeded tensors, runs ``torch.nn.functional.conv*`` (and autograd) as the
reference and ``symconv.convolution`` with symconv's selection and with every backend that symconv
accepts as forced for the arguments, and compares: forward output, gradients through autograd (which
run ``symconv.convolution_backward``), ``convolution_backward`` called directly, and for some cases
the double backward. Errors must agree (type and first line).

Tolerance: float64 references; symconv's error may be at most 4x torch's own error (plus a
dtype epsilon scaled by the output's magnitude). When symconv runs the kernel torch selects,
the results are also counted as bitwise identical or not.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import symconv
from symconv import ConvBackend, ConvError
from symconv import lowering as L
from tests.oracle import ConvWorker, serve
from tests.oracle import first_line as _first_line
from tests.oracle import flags as _flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "float16": torch.float16}
MF = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last,
      "channels_last_3d": torch.channels_last_3d}
# Every backend this CPU build can reach (MkldnnEmpty needs an MKLDNN-layout input).
CPU_BACKENDS = ["Slow2d", "SlowDilated2d", "SlowDilated3d", "SlowTranspose2d", "SlowTranspose3d",
                "Slow3d", "Mkldnn", "MkldnnTranspose", "NnpackSpatial", "Empty", "MkldnnEmpty"]


# ======================================================================================
# The worker side


def _err(e: BaseException) -> dict:
    name = type(e).__name__
    if isinstance(e, RuntimeError):
        name = "RuntimeError"  # ConvError / ConvShapeError are torch's RuntimeError
    return {"type": name, "message": _first_line(e)}


def _build(spec: dict | None, gen: torch.Generator, requires_grad: bool):
    if spec is None:
        return None
    dtype = DTYPES[spec.get("dtype", "float32")]
    t = torch.rand(spec["shape"], generator=gen, dtype=torch.float64) * 2 - 1
    t = t.to(dtype)
    mf = spec.get("memory_format", "contiguous")
    if mf != "contiguous":
        t = t.contiguous(memory_format=MF[mf])
    if spec.get("transpose_last2"):  # non-contiguous: strides of a transposed copy
        t = t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if spec.get("mkldnn"):
        return t.to_mkldnn()
    return t.requires_grad_(requires_grad)


def _load_gpu_tool():
    path = os.path.join(ROOT, "tools", "gpu_lowering.py")
    spec = importlib.util.spec_from_file_location("gpu_lowering", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# The reference call (torch.nn.functional), symconv's call, the tolerance against the float64
# truth and the gradients are the GPU tool's (tools/gpu_lowering.py): one copy for both runs.
_GPU = _load_gpu_tool()
_reference, _symconv, _compare, _grads = _GPU.reference, _GPU.sym, _GPU.compare, _GPU.grads


def run_case(case: dict) -> dict:
    """Run one case (in the worker). See the module docstring."""
    gen = torch.Generator().manual_seed(case.get("seed", 0))
    backward = case.get("backward", True) and not case["input"].get("mkldnn")
    dtype = DTYPES[case["input"].get("dtype", "float32")]
    with _flags(case):
        x = _build(case["input"], gen, backward)
        w = _build(case["weight"], gen, backward)
        b = _build(case.get("bias"), gen, backward)
        out = {"runs": []}
        try:
            torch_sel = ConvBackend.from_torch(torch._C._select_conv_backend(
                x, w, b, case["stride"], case["padding"], case["dilation"], case["transposed"],
                case["output_padding"], case["groups"])).name
        except Exception:  # noqa: BLE001
            torch_sel = "error"
        out["torch_selected"] = torch_sel
        try:
            ref = _reference(case, x, w, b)
        except Exception as e:  # noqa: BLE001 - torch's answer
            ref, ref_err = None, _err(e)
        if ref is None:
            try:
                _symconv(case, x, w, b, None)
                out["runs"].append({"backend": None, "ok": False, "why": "symconv ran, torch "
                                    f"raised {ref_err}"})
            except Exception as e:  # noqa: BLE001
                mine = _err(e)
                out["runs"].append({"backend": "error", "ok": mine == ref_err,
                                    "why": f"torch {ref_err} symconv {mine}"})
            return out
        # float64 truth for the comparisons
        if x.layout == torch.strided:
            x64, w64 = x.detach().double(), w.detach().double()
            b64 = None if b is None else b.detach().double()
            try:
                truth = _reference(case, x64, w64, b64)
            except RuntimeError:  # e.g. float64 takes the slow kernel, which refuses an
                truth = ref.detach().double()  # empty output that oneDNN accepts
        else:
            x64 = w64 = b64 = None
            truth = ref.to_dense().double() if ref.layout != torch.strided else ref.double()
        go = torch.rand(ref.shape, generator=gen, dtype=torch.float64).to(dtype) * 2 - 1 \
            if backward else None
        if backward:
            ref_grads = _grads(ref, [x, w, b], go)
            x64r, w64r = x64.requires_grad_(), w64.requires_grad_()
            b64r = None if b64 is None else b64.requires_grad_()
            try:
                truth_grads = _grads(_reference(case, x64r, w64r, b64r), [x64r, w64r, b64r],
                                     go.double())
            except RuntimeError:
                truth_grads = [None if g is None else g.double() for g in ref_grads]
        candidates = [None] + (case.get("force") or [])
        for be in candidates:
            run = {"backend": None, "forced": be is not None}
            try:
                pl = L.plan(x, w, b, case["stride"], case["padding"], case["dilation"],
                            case["transposed"], case["output_padding"], case["groups"],
                            backend=be)
            except ConvError as e:
                if be is None:
                    run.update(ok=False, why=f"plan raised {_err(e)} but torch ran")
                    out["runs"].append(run)
                continue  # not accepted as forced: nothing to run
            run["backend"] = pl.backend.name
            if be is None:
                out["selected"] = pl.backend.name
            try:
                got = _symconv(case, x, w, b, be)
                # the same call again takes the warm path (a plan-cache hit, the kernel called
                # directly): it must compute exactly what the first call computed
                again = _symconv(case, x, w, b, be)
            except Exception as e:  # noqa: BLE001
                run.update(ok=False, why=f"symconv forward raised {_err(e)}")
                out["runs"].append(run)
                continue
            if got.layout != torch.strided:
                ok = got.layout == ref.layout and got.shape == ref.shape and \
                    again.layout == got.layout and again.shape == got.shape
                run.update(ok=ok, fwd_err=0.0, identical=ok)
                out["runs"].append(run)
                continue
            ok, err, err_t = _compare(got, ref, truth, dtype)
            run.update(ok=ok, fwd_err=err, torch_err=err_t,
                       identical=bool(torch.equal(got, ref)) if got.shape == ref.shape else False)
            if not ok:
                run["why"] = f"forward error {err:.3g} vs torch's {err_t:.3g}"
            elif not (again.shape == got.shape and again.stride() == got.stride()
                      and again.dtype == got.dtype and torch.equal(again, got)):
                ok = False
                run.update(ok=False, why="the warm path (second call) computed something else")
            if backward and ok:
                try:
                    sg = _grads(got, [x, w, b], go)
                    direct = symconv.convolution_backward(
                        go, x, w, None if b is None else list(b.shape), case["stride"],
                        case["padding"], case["dilation"], case["transposed"],
                        case["output_padding"], case["groups"], [True, True, b is not None],
                        backend=be)
                except Exception as e:  # noqa: BLE001
                    run.update(ok=False, why=f"symconv backward raised {_err(e)}")
                    out["runs"].append(run)
                    continue
                for name, a, c, d, t in zip("iwb", sg, ref_grads, direct, truth_grads):
                    ok1, e1, et = _compare(a, c, t, dtype)
                    ok2, e2, _ = _compare(d, c, t, dtype)
                    if not (ok1 and ok2):
                        run.update(ok=False, why=f"grad {name}: autograd {e1:.3g}, direct "
                                   f"{e2:.3g} vs torch's {et:.3g}")
                        break
                    run.setdefault("bwd_identical", True)
                    if a is not None and not torch.equal(a, c):
                        run["bwd_identical"] = False
                run["bwd"] = True
            if backward and run["ok"] and case.get("double"):
                ran, why = _double_backward(case, x, w, b, be, go, gen)
                if why:
                    run.update(ok=False, why=why)
                run["double"] = ran
            out["runs"].append(run)
    return out


def _double_backward(case, x, w, b, be, go, gen) -> tuple[bool, str | None]:
    """Second derivatives through symconv (convolution_double_backward) vs torch, float64.
    A forced backend that does not take float64 is skipped."""
    x64 = x.detach().double().requires_grad_()
    w64 = w.detach().double().requires_grad_()
    b64 = None if b is None else b.detach().double().requires_grad_()
    go64 = go.detach().double().requires_grad_()
    if be is not None:
        try:
            L.plan(x64, w64, b64, case["stride"], case["padding"], case["dilation"],
                   case["transposed"], case["output_padding"], case["groups"], backend=be)
        except ConvError:
            return False, None
    ins = [x64, w64, b64, go64]
    res, errs = {}, {}
    for name, fn in (("torch", lambda: _reference(case, x64, w64, b64)),
                     ("symconv", lambda: _symconv(case, x64, w64, b64, be))):
        try:
            out = fn()
            g = _grads(out, [x64, w64, b64], go64, create_graph=True)
            vs = [torch.rand(t.shape, generator=torch.Generator().manual_seed(7 + i),
                             dtype=torch.float64) if t is not None else None
                  for i, t in enumerate(g)]
            s = sum((gi * v).sum() for gi, v in zip(g, vs) if gi is not None)
            res[name] = _grads(s, ins, None) if s.requires_grad else [None] * 4
        except RuntimeError as e:  # torch's double backward can fail (zero channels): so
            errs[name] = _first_line(e)  # must symconv's, with the same message
    if errs:
        if errs.get("torch") != errs.get("symconv"):
            return True, f"double backward errors differ: {errs}"
        return True, None
    for name, a, c in zip(("input", "weight", "bias", "grad_output"), res["symconv"],
                          res["torch"]):
        if (a is None) != (c is None) and not (
                (a is None and c is not None and not c.any()) or
                (c is None and a is not None and not a.any())):
            return True, f"double backward {name}: one side is None"
        if a is not None and c is not None:
            err = (a - c).abs().max().item() if a.numel() else 0.0
            if err > 1e-8 * max(1.0, c.abs().max().item() if c.numel() else 1.0):
                return True, f"double backward {name}: error {err:.3g}"
    return True, None


def _serve() -> None:  # pragma: no cover - runs in the worker
    serve(run_case, catch=True)


@pytest.fixture(scope="module")
def worker():
    """tests.oracle's crash-surviving worker, serving :func:`run_case` (a crash is reported
    as ``{"crash": exit code}``)."""
    w = ConvWorker(serve="tests.test_lowering")
    yield w
    w.close()


# ======================================================================================
# Cases

STATS: dict = collections.defaultdict(collections.Counter)


def _record(res: dict) -> None:
    for run in res.get("runs", []):
        key = (run.get("backend") or "error") + (" (forced)" if run.get("forced") else "")
        STATS[key]["runs"] += 1
        STATS[key]["agree"] += bool(run.get("ok"))
        STATS[key]["identical"] += bool(run.get("identical"))
        STATS[key]["backward"] += bool(run.get("bwd"))
        STATS[key]["double"] += bool(run.get("double"))


def _assert_ok(case: dict, res: dict) -> None:
    assert "crash" not in res, f"worker crashed ({res['crash']}) on {case}"
    assert "worker_error" not in res, f"{res['worker_error']} on {case}"
    _record(res)
    bad = [r for r in res["runs"] if not r.get("ok")]
    assert not bad, f"{bad} on {json.dumps(case)}"
    if res.get("selected") and res.get("torch_selected") not in (None, "error"):
        assert res["selected"] == res["torch_selected"], (res, case)


def _t(shape, dtype="float32", mf="contiguous", **kw) -> dict:
    return {"shape": list(shape), "dtype": dtype, "memory_format": mf, **kw}


def _case(inp, wgt, bias=None, stride=1, padding=0, dilation=1, transposed=False,
          output_padding=0, groups=1, flags=None, force=None, seed=0, double=False) -> dict:
    nd = len(wgt["shape"]) - 2
    def ex(v):
        return list(v) if isinstance(v, (list, tuple)) else [v] * nd
    return {"input": inp, "weight": wgt, "bias": bias, "stride": ex(stride),
            "padding": ex(padding), "dilation": ex(dilation), "transposed": transposed,
            "output_padding": ex(output_padding), "groups": groups, "flags": flags or {},
            "force": force, "seed": seed, "double": double}


# One hand-made case per backend this build reaches (and the selection torch makes there).
REACH = {
    "Slow2d": _case(_t([1, 4, 6, 6]), _t([4, 4, 1, 1]), _t([4]), force=["Slow2d"]),
    "SlowDilated2d": _case(_t([2, 4, 7, 7], "float64"), _t([6, 2, 3, 3], "float64"),
                           dilation=[2, 1], groups=2, double=True),
    "SlowDilated3d": _case(_t([1, 2, 5, 6, 5], "float64"), _t([4, 2, 2, 2, 2], "float64"),
                           _t([4], "float64"), dilation=2, double=True),
    "SlowTranspose2d": _case(_t([2, 4, 5, 5], "float64"), _t([4, 3, 3, 3], "float64"),
                             _t([6], "float64"), stride=2, output_padding=1, groups=2,
                             transposed=True, double=True),
    "SlowTranspose3d": _case(_t([1, 2, 3, 4, 3], "float64"), _t([2, 3, 2, 2, 2], "float64"),
                             stride=[2, 1, 2], output_padding=[1, 0, 0], transposed=True,
                             double=True),
    "Slow3d": _case(_t([2, 4, 5, 5, 5], "float64"), _t([4, 2, 3, 3, 3], "float64"),
                    _t([4], "float64"), padding=1, groups=2, double=True),
    "Mkldnn": _case(_t([2, 4, 8, 8]), _t([6, 2, 3, 3]), _t([6]), padding=1, groups=2,
                    force=["Slow2d"], double=True),
    "MkldnnTranspose": _case(_t([2, 4, 5, 5]), _t([4, 3, 3, 3]), _t([3]), stride=2,
                             output_padding=1, transposed=True, force=["SlowTranspose2d"],
                             double=True),
    "NnpackSpatial": _case(_t([16, 3, 6, 6]), _t([4, 3, 3, 3]), _t([4]), padding=1,
                           flags={"mkldnn": False}, force=["Slow2d"], double=True),
    "Empty": _case(_t([0, 4, 6, 6]), _t([6, 4, 3, 3]), _t([6])),
    "MkldnnEmpty": dict(_case(_t([0, 4, 6, 6], mkldnn=True), _t([6, 4, 3, 3])), backward=False),
}


@pytest.mark.parametrize("name", sorted(REACH))
def test_each_reachable_backend(worker, name):
    case = REACH[name]
    res = worker.run(case)
    _assert_ok(case, res)
    assert res["selected"] == name
    assert any(r["backend"] == name and r["ok"] for r in res["runs"])
    if name not in ("MkldnnEmpty", "Empty"):
        assert all(r.get("bwd") for r in res["runs"]), res


@st.composite
def lowering_case(draw, *, force: bool = True):
    """Valid convolutions over the CPU backends: 1-3 spatial dims, groups, depthwise, strides,
    dilation, transposed, zero batch/channels, channels_last, float32/64, bf16, fp16, flags."""
    # a third of the cases aim at the backends that random arguments rarely reach
    target = draw(st.sampled_from(["any"] * 6 + ["nnpack", "dilated", "slow"]))
    nd = 2 if target == "nnpack" else draw(st.sampled_from([1, 2, 2, 2, 3]))
    transposed = False if target in ("nnpack", "dilated") else draw(st.booleans())
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    n = 16 if target == "nnpack" else draw(st.sampled_from([0, 1, 1, 2, 3, 16, 16]))
    if target == "any" and draw(st.integers(0, 8)) == 0:
        cin = 0 if not transposed else cin
    kernel = [draw(st.sampled_from([1, 1, 2, 3])) for _ in range(nd)]
    stride = [draw(st.sampled_from([1, 1, 2])) for _ in range(nd)]
    dilation = [draw(st.sampled_from([1, 1, 1, 2])) for _ in range(nd)]
    padding = [draw(st.integers(0, 2)) for _ in range(nd)]
    if target == "nnpack":
        dilation = [1] * nd
        padding = [min(p, k - 1) for p, k in zip(padding, kernel)]
    elif target == "dilated":
        dilation[0] = 2
    output_padding = ([draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)]
                      if transposed else [0] * nd)
    exact = draw(st.integers(0, 7)) != 0  # else sizes may make the output empty or negative
    spatial = []
    for i in range(nd):
        if transposed:  # (in - 1) * s - 2p + d(k - 1) + op + 1 >= 1
            short = 2 * padding[i] - dilation[i] * (kernel[i] - 1) - output_padding[i]
            need = 1 + max(0, -(-short // stride[i]))
        else:
            need = dilation[i] * (kernel[i] - 1) + 1 - 2 * padding[i]
        spatial.append(max(1, need if exact else 1) + draw(st.integers(0, 4)))
    if transposed:
        wshape = [cin, cout // groups] + kernel
        bias_n = (cout // groups) * groups
    else:
        wshape = [cout, (cin // groups) if cin else 1] + kernel
        bias_n = cout
    if cin == 0:  # zero input channels: weight [cout, 0, ...] with groups 1
        groups, wshape = 1, [cout, 0] + kernel
    dtype = "float32" if target == "nnpack" else draw(st.sampled_from(
        ["float32", "float32", "float32", "float64", "bfloat16", "float16"]))
    mf = "contiguous"
    if nd == 2 and draw(st.integers(0, 3)) == 0:
        mf = "channels_last"
    if nd == 3 and draw(st.integers(0, 5)) == 0:
        mf = "channels_last_3d"
    inp = _t([n, cin] + spatial, dtype, mf,
             transpose_last2=(mf == "contiguous" and draw(st.integers(0, 7)) == 0))
    wgt = _t(wshape, dtype, "channels_last" if nd == 2 and draw(st.integers(0, 5)) == 0
             else "contiguous")
    bias = _t([bias_n], dtype) if draw(st.booleans()) else None
    flags = {"mkldnn": False if target != "any" else draw(st.sampled_from([True, False])),
             "nnpack": True if target == "nnpack" else draw(st.sampled_from([True, False])),
             "threads": draw(st.sampled_from([1, 2]))}
    return _case(inp, wgt, bias, stride, padding, dilation, transposed, output_padding, groups,
                 flags=flags, force=CPU_BACKENDS if force else None,
                 seed=draw(st.integers(0, 2**16)), double=draw(st.integers(0, 3)) == 0)


@settings(max_examples=60)
@given(case=lowering_case())
def test_drawn_cases_agree_with_torch(worker, case):
    _assert_ok(case, worker.run(case))


@pytest.mark.slow
@settings(max_examples=1500)
@given(case=lowering_case())
def test_drawn_cases_agree_with_torch_many(worker, case):
    _assert_ok(case, worker.run(case))


def test_print_stats():
    """Runs last in this module: the agreement counts per backend (pytest -s shows them)."""
    for key in sorted(STATS):
        c = STATS[key]
        print(f"{key:28s} runs {c['runs']:5d} agree {c['agree']:5d} identical "
              f"{c['identical']:5d} backward {c['backward']:5d} double {c['double']:4d}")
    assert all(c["agree"] == c["runs"] for c in STATS.values())


# ======================================================================================
# Errors: torch's, before any kernel runs


INVALID = [
    # (args for torch.convolution / symconv.convolution)
    dict(i=[1, 4, 6, 6], w=[4, 3, 3, 3], kw={}),  # channels
    dict(i=[1, 4, 2, 2], w=[4, 4, 3, 3], kw={}),  # kernel larger than input
    dict(i=[1, 4, 6, 6], w=[4, 4, 3, 3], kw=dict(stride=[0, 1])),
    dict(i=[1, 4, 6, 6], w=[4, 4, 3, 3], kw=dict(padding=[-1, 0])),
    dict(i=[1, 4, 6, 6], w=[4, 4, 3, 3], kw=dict(groups=0)),
    dict(i=[1, 4, 6, 6], w=[4, 4, 3, 3], kw=dict(groups=3)),
    dict(i=[1, 4, 6, 6], w=[4, 4], kw={}),
    dict(i=[1, 4, 6, 6], w=[4, 4, 3, 3], kw=dict(stride=[1, 1, 1])),
    dict(i=[1, 4, 6, 6], w=[3, 4, 3, 3], kw=dict(transposed=True)),
    dict(i=[1, 4, 6, 0], w=[4, 4, 1, 1], kw=dict(padding=[0, 1])),  # zero numel
    dict(i=[6, 6], w=[4, 4, 3, 3], kw={}),  # batchify
]


@pytest.mark.parametrize("k", range(len(INVALID)))
def test_invalid_arguments_raise_torchs_error(k):
    c = INVALID[k]
    x, w = torch.zeros(c["i"]), torch.zeros(c["w"])
    kw = dict(stride=[1, 1], padding=[0, 0], dilation=[1, 1], transposed=False,
              output_padding=[0, 0], groups=1)
    kw.update(c["kw"])
    F = torch.nn.functional
    with pytest.raises(Exception) as want:
        if len(c["i"]) == 2:
            F.conv2d(x, w)
        else:
            torch.convolution(x, w, None, kw["stride"], kw["padding"], kw["dilation"],
                              kw["transposed"], kw["output_padding"], kw["groups"])
    with pytest.raises(Exception) as got:
        symconv.convolution(x, w, None, kw["stride"], kw["padding"], kw["dilation"],
                            kw["transposed"], kw["output_padding"], kw["groups"])
    assert isinstance(got.value, type(want.value)), (got.value, want.value)
    assert _first_line(got.value) == _first_line(want.value)


def test_type_mismatch_messages_match_torch():
    x = torch.zeros(16, 4, 6, 6)
    for dt in (torch.float64, torch.bfloat16, torch.float16, torch.int32, torch.bool):
        w = torch.zeros(8, 4, 3, 3, dtype=dt)
        with pytest.raises(RuntimeError) as want:
            torch.convolution(x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
        with pytest.raises(ConvError) as got:
            L.plan(x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
        assert _first_line(got.value) == _first_line(want.value)
    with pytest.raises(RuntimeError) as want:
        torch.nn.functional.conv2d(x, torch.zeros(8, 4, 3, 3), torch.zeros(8).double())
    with pytest.raises(ConvError) as got:
        symconv.convolution(x, torch.zeros(8, 4, 3, 3), torch.zeros(8).double())
    assert _first_line(got.value) == _first_line(want.value)


def test_padding_mode_errors_match_torch():
    F = torch.nn.functional
    x, w = torch.zeros(1, 4, 6, 6), torch.zeros(8, 4, 2, 2)
    for kw in (dict(padding="same", stride=2), dict(padding="foo"),
               dict(padding="same", groups=0)):
        with pytest.raises(RuntimeError) as want:
            F.conv2d(x, w, **kw)
        with pytest.raises(ConvError) as got:
            symconv.convolution(x, w, **kw)
        assert _first_line(got.value) == _first_line(want.value), kw


# ======================================================================================
# Forcing: which condition fails


def _plan(x, w, **kw):
    args = dict(bias=None, stride=1, padding=0, dilation=1, transposed=False, output_padding=0,
                groups=1)
    args.update(kw)
    return L.plan(x, w, **args)


def test_forcing_names_the_failing_condition():
    x, w = torch.zeros(2, 4, 8, 8), torch.zeros(6, 4, 3, 3)
    with pytest.raises(ConvError, match="'dilated \\(some dilation != 1\\)' does not hold"):
        _plan(x, w, backend="SlowDilated2d")
    with pytest.raises(ConvError, match="'use_nnpack' does not hold: batch 2 < 16"):
        _plan(x, w, backend=ConvBackend.NnpackSpatial)
    with pytest.raises(ConvError, match=r"'not dilated' does not hold"):
        _plan(x, w, dilation=2, backend="Slow2d")
    with pytest.raises(ConvError, match=r"'input is 5-D"):
        _plan(x, w, backend="Slow3d")
    with pytest.raises(ConvError, match=r"'input is on CUDA'|'use_cudnn' does not hold: the "
                                        "input is not on CUDA|this build has no cuDNN"):
        _plan(x, w, backend="Cudnn")
    with pytest.raises(ConvError, match="'input is not empty"):
        _plan(torch.zeros(0, 4, 8, 8), w, backend="Slow2d")
    with pytest.raises(ConvError, match="'input has zero batch or zero channels' does not hold"):
        _plan(x, w, backend="Empty")
    with torch.backends.mkldnn.flags(enabled=False):
        with pytest.raises(ConvError, match=r"torch.backends.mkldnn.enabled is False"):
            _plan(x, w, backend="Mkldnn")
    with pytest.raises(ConvError, match="float32 heuristic"):
        _plan(torch.zeros(1, 4, 8, 8), torch.zeros(4, 4, 1, 1), backend="Mkldnn")
    # accepted: the forced plan says so
    p = _plan(x, w, backend="Slow2d")
    assert p.backend == ConvBackend.Slow2d and p.selected == ConvBackend.Mkldnn
    assert "forced" in p.describe()


def test_forced_requirements_cover_every_backend():
    for b in ConvBackend:
        alts = L.forced_requirements(b)
        assert alts and all(r.outcome == b for r in alts)


def test_plan_describes_the_lowering():
    p = _plan(torch.zeros(2, 4, 10), torch.zeros(6, 2, 3), groups=2, backend="Slow2d")
    assert p.view1d and p.splits_groups and p.kernel == "aten::thnn_conv2d"
    assert p.stride == [1, 1] and p.output_size == [2, 6, 1, 8]
    p = _plan(torch.zeros(2, 4, 8, 8).contiguous(memory_format=torch.channels_last),
              torch.zeros(6, 4, 3, 3), backend="Slow2d")
    assert p.memory_format == torch.channels_last
    p = _plan(torch.zeros(4, 6, 6), torch.zeros(8, 4, 3, 3), padding="same")
    assert p.padding == [1, 1]


def test_type_string():
    assert L.type_string(torch.zeros(1)) == "torch.FloatTensor"
    assert L.type_string(torch.zeros(1, dtype=torch.bfloat16)) == "CPUBFloat16Type"
    assert L.type_string(torch.zeros(1, dtype=torch.complex64)) == "CPUComplexFloatType"


def test_split_batch_for_32bit_indexing_matches_one_call():
    # cuDNN < 9.3's split, exercised on the CPU with a small index limit
    x, w = torch.randn(7, 3, 5, 5), torch.randn(4, 3, 3, 3)
    calls = []

    def fn(inp):
        calls.append(inp.shape[0])
        return torch.convolution(inp, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    out = L._split_batch_32bit(fn, x, 7 * 4 * 25, max_worksize=250, int_max=300)
    assert calls == [2, 2, 2, 1]
    assert torch.allclose(out, fn(x), atol=1e-5)
    with pytest.raises(ConvError, match="should not be dispatched to cuDNN"):
        L._split_batch_32bit(fn, x, 7 * 4 * 25, max_worksize=250, int_max=90)


def test_plans_are_cached_and_follow_flags():
    x, w = torch.zeros(16, 3, 6, 6), torch.zeros(4, 3, 3, 3)
    assert _plan(x, w).backend == ConvBackend.Mkldnn
    assert _plan(x, w) is _plan(x, w)
    with torch.backends.mkldnn.flags(enabled=False):
        assert _plan(x, w).backend == ConvBackend.NnpackSpatial
        with torch.backends.nnpack.flags(enabled=False):
            assert _plan(x, w).backend == ConvBackend.Slow2d
    env = symconv.preset("cpu").replace(mkldnn_enabled=False, nnpack_enabled=False)
    assert _plan(x, w, env=env).backend == ConvBackend.Slow2d


# The warm path's key reads, for a CPU or CUDA input, only the runtime flags in
# L._DEVICE_FLAGS: every other flag must leave the plan unchanged (checked on the rule table,
# for the running CPU build and the H100 preset).
RUNTIME_FLAGS = {"mkldnn_enabled": (True, False), "nnpack_enabled": (True, False),
                 "cudnn_enabled": (True, False), "cudnn_deterministic": (False, True),
                 "deterministic_algorithms": (False, True), "cudnn_benchmark": (False, True),
                 "cudnn_allow_tf32": (True, False), "cudnn_depthwise_kernel": ("auto", "cudnn",
                                                                               "native"),
                 "num_threads": (1, 2, 16), "grad_enabled": (True, False)}


def _plan_outcome(x, w, b, args, env):
    try:
        p = L.plan(x, w, b, *args, env=env)
    except (ConvError, ValueError, IndexError, TypeError, NotImplementedError) as e:
        return ("error", type(e).__name__, _first_line(e))
    # the flags a cuDNN / MIOpen kernel takes as arguments
    kernel_args = (p.env.cudnn_benchmark, p.env.deterministic, p.env.cudnn_allow_tf32) \
        if p.backend in L.KERNEL_TAKES_FLAGS else None
    return (p.backend, p.selected, p.rule, p.memory_format, p.view1d, p.stride, p.padding,
            p.dilation, p.transposed, p.output_padding, p.groups, p.output_size,
            p.need_backward, p.input_in_format, p.weight_in_format, p.split_batch, kernel_args)


def _props(shape, dtype=torch.float32, device="cpu", rg=False):
    return L.TensorProps(shape, L._contiguous_strides(shape), dtype, device, rg)


@st.composite
def _props_call(draw):
    nd = draw(st.sampled_from([1, 2, 2, 3]))
    transposed = draw(st.booleans())
    groups = draw(st.sampled_from([1, 1, 2, 4]))
    depthwise = draw(st.integers(0, 2)) == 0
    cin = groups * (1 if depthwise else draw(st.integers(1, 3)))
    cout = groups * draw(st.integers(1, 2))
    n = draw(st.sampled_from([0, 1, 2, 16]))
    kernel = [draw(st.sampled_from([1, 2, 3])) for _ in range(nd)]
    stride = [draw(st.sampled_from([1, 2])) for _ in range(nd)]
    dilation = [draw(st.sampled_from([1, 1, 2])) for _ in range(nd)]
    padding = [draw(st.integers(0, 1)) for _ in range(nd)]
    op = [draw(st.integers(0, 1)) for _ in range(nd)] if transposed else [0] * nd
    spatial = [draw(st.integers(1, 9)) + d * (k - 1) for k, d in zip(kernel, dilation)]
    dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16,
                                  torch.float64]))
    device = draw(st.sampled_from(["cpu", "cuda"]))
    cl = nd == 2 and draw(st.booleans())
    ishape = [n, cin] + spatial
    wshape = ([cin, cout // groups] if transposed else [cout, cin // groups]) + kernel

    def props(shape, channels_last, rg):
        if channels_last:
            _n, c, h, w_ = shape
            strides = (h * w_ * c, 1, w_ * c, c)
        else:
            strides = L._contiguous_strides(shape)
        return L.TensorProps(shape, strides, dtype, device, rg)
    rg = draw(st.sampled_from([(False, False), (True, False), (False, True)]))
    x = props(ishape, cl, rg[0])
    w = props(wshape, cl and draw(st.booleans()), rg[1])
    b = props([cout], False, False) if draw(st.booleans()) else None
    return x, w, b, (stride, padding, dilation, transposed, op, groups)


_CONV2D = ([1, 1], [0, 0], [1, 1], False, [0, 0], 1)


@settings(max_examples=120, deadline=None)
@given(call=_props_call(), which=st.sampled_from(["running", "cuda-h100", "cuda-cudnn8"]))
# oneDNN's float32 heuristic reads the thread count (1x1 kernel, batch 1, large input)
@example(call=(_props([1, 4, 80, 80]), _props([4, 4, 1, 1]), None, _CONV2D), which="running")
# torch >= 2.13 reads torch.backends.cudnn.depthwise_kernel for an fp16 depthwise convolution
@example(call=(_props([2, 32, 8, 8], torch.float16, "cuda"),
               _props([32, 1, 3, 3], torch.float16, "cuda"), None, _CONV2D[:5] + (32,)),
         which="cuda-cudnn8")
def test_warm_path_key_holds_every_flag_selection_reads(call, which):
    x, w, b, args = call
    device = x.device.type
    base = symconv.Environment.from_torch() if which == "running" else symconv.preset(which)
    want = _plan_outcome(x, w, b, args, base)
    for name, values in RUNTIME_FLAGS.items():
        if name in L._DEVICE_FLAGS[device]:
            continue
        for v in values:
            got = _plan_outcome(x, w, b, args, base.replace(**{name: v}))
            assert got == want, (name, v, device)
    # requires_grad is read only through need_backward (grad mode and any requires_grad)
    if want[0] != "error" and want[12]:
        for rg in ((True, False), (False, True), (True, True)):
            x2 = L.TensorProps(x.shape, x.stride(), x.dtype, x.device, rg[0])
            w2 = L.TensorProps(w.shape, w.stride(), w.dtype, w.device, rg[1])
            assert _plan_outcome(x2, w2, b, args, base) == want


def test_device_flags_cover_the_runtime_flags():
    assert set(L._DEVICE_FLAGS) == {"cpu", "cuda"}
    for flags in L._DEVICE_FLAGS.values():
        assert set(flags) <= set(RUNTIME_FLAGS) and "grad_enabled" in flags
    assert not symconv.Environment.from_torch().mobile  # XNNPACK's rule never applies here


def test_warm_path_key_follows_the_cpu_flags_only():
    x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 1, 1)
    L.clear_cache()
    with torch.no_grad():
        ref = torch.convolution(x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
        for cudnn in (True, False):
            with torch.backends.cudnn.flags(enabled=cudnn, deterministic=not cudnn):
                assert torch.equal(symconv.convolution(x, w), ref)
        assert len(L._FAST) == 1  # cuDNN's flags do not reach a CPU input's key
        old = torch.get_num_threads()
        try:
            torch.set_num_threads(2 if old == 1 else 1)
            assert torch.equal(symconv.convolution(x, w), ref)
        finally:
            torch.set_num_threads(old)
        assert len(L._FAST) == 2  # the oneDNN heuristic reads the thread count
        with torch.backends.mkldnn.flags(enabled=False):
            symconv.convolution(x, w)
        assert len(L._FAST) == 3
    x.requires_grad_()
    out = symconv.convolution(x, w)
    assert out.requires_grad and len(L._FAST) == 4  # need_backward is part of the key
    out.sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("name,bad", [
    ("stride", (1.0, 1.0)), ("stride", (True, 1)), ("padding", [0.0, 0]), ("stride", 1.0),
    ("groups", 1.0), ("groups", True), ("dilation", (1, 1.0))])
def test_warm_path_never_takes_what_a_cold_call_refuses(name, bad):
    """1.0 == 1 and True == 1 in Python, and hash alike: the warm path's key holds the
    parameters as passed, so a hit must still check their types (found: after a call with
    (1, 1), stride=(1.0, 1.0) ran where torch and a cold call raise TypeError)."""
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    good = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1)
    args = lambda kw: (x, w, None, kw["stride"], kw["padding"], kw["dilation"], False,  # noqa: E731
                       (0, 0), kw["groups"])
    with torch.no_grad():
        L.clear_cache()
        with pytest.raises(TypeError) as cold:
            symconv.convolution(*args({**good, name: bad}))
        symconv.convolution(*args(good))
        symconv.convolution(*args(good))  # warm
        with pytest.raises(TypeError) as warm:
            symconv.convolution(*args({**good, name: bad}))
        assert str(warm.value) == str(cold.value)
        with pytest.raises(TypeError):  # and torch refuses it too
            torch.convolution(*args({**good, name: bad if not isinstance(bad, int) or
                                     isinstance(bad, bool) else (bad, bad)}))


def test_warm_path_parameter_objects():
    """Hits by identity (the same tuples every call), by value (equal tuples, lists, ints), and
    a bool after the first element of an int list, which torch's parser reads as an int."""
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with torch.no_grad():
        ref = torch.convolution(x, w, None, (2, 1), (1, 0), (1, 1), False, (0, 0), 1)
        L.clear_cache()
        calls = [((2, 1), (1, 0), (1, 1), (0, 0)), ([2, 1], [1, 0], [1, 1], [0, 0]),
                 (tuple([2, 1]), tuple([1, 0]), tuple([1, 1]), tuple([0, 0])),
                 ([2, 1], (1, 0), [1, 1], (0, 0)), ((2, True), (1, 0), (1, True), (0, 0))]
        for s, p, d, op in calls + calls:
            assert torch.equal(symconv.convolution(x, w, None, s, p, d, False, op, 1), ref)
        assert torch.equal(torch.convolution(x, w, None, (2, True), (1, 0), (1, True), False,
                                             (0, 0), 1), ref)
        assert len(L._FAST) == 1  # lists are keyed by their exact tuples: one entry
    # 1-D and 3-D (no pairs), each call with its own equal tuples, then floats: refused
    for shape_x, shape_w in (((1, 2, 7), (3, 2, 3)), ((1, 2, 5, 5, 5), (3, 2, 3, 3, 3))):
        x, w = torch.randn(shape_x), torch.randn(shape_w)
        n = len(shape_x) - 2
        ref = torch.convolution(x, w, None, (2,) * n, (1,) * n, (1,) * n, False, (0,) * n, 1)
        with torch.no_grad():
            for _ in range(3):
                got = symconv.convolution(x, w, None, tuple([2] * n), tuple([1] * n),
                                          tuple([1] * n), False, tuple([0] * n), 1)
                assert torch.equal(got, ref)
            with pytest.raises(TypeError):
                symconv.convolution(x, w, None, (2,) * n, (1.0,) * n, (1,) * n, False,
                                    (0,) * n, 1)


# ======================================================================================
# Recorded GPU results (tools/gpu_lowering.py on the GPU machine)

CUDA_RESULTS = os.path.join(ROOT, "tests", "data", "cuda_lowering.json")


@pytest.mark.skipif(not os.path.exists(CUDA_RESULTS), reason="no recorded GPU results")
def test_recorded_cuda_lowering_all_agree():
    with open(CUDA_RESULTS) as f:
        rec = json.load(f)
    assert rec["environment"]["cuda_available"] and rec["environment"]["device_name"]
    runs = rec["runs"]
    assert runs, "no runs recorded"
    bad = [r for r in runs if not r["ok"]]
    assert not bad, bad[:5]
    seen = collections.Counter(r["backend"] for r in runs)
    for name in ("Cudnn", "CudnnTranspose", "CudaDepthwise2d", "CudaDepthwise3d", "Slow2d",
                 "SlowDilated2d", "SlowDilated3d", "SlowTranspose2d", "SlowTranspose3d",
                 "Empty"):
        assert seen[name] > 0, f"no recorded run of {name}"
    dtypes = {r["dtype"] for r in runs}
    assert {"float32", "float16", "bfloat16"} <= dtypes
    assert any(r["memory_format"] == "channels_last" for r in runs)
    # symconv's selection agreed with torch's in every recorded case
    assert all(r["selected"] == r["torch_selected"] for r in runs if not r["forced"])
    # every backward ran, forced cuDNN on depthwise convolutions included (its kernel reached
    # through a channels-last copy); only cuDNN's float64 depthwise backward, which torch never
    # selects, is recorded as unreachable (the float32 cases' double backward runs in float64)
    assert not any(r.get("bwd_unreachable") for r in runs)
    forced_dw = [r for r in runs if r["forced"] and r["backend"] == "Cudnn"
                 and r["selected"] in ("CudaDepthwise2d", "CudaDepthwise3d")]
    assert forced_dw and all(r.get("bwd") for r in forced_dw)
    assert {r["dtype"] for r in forced_dw} == {"float32", "float16", "bfloat16"}
    assert all(r["dtype"] == "float32" and r["backend"] == "Cudnn" and r["forced"]
               for r in runs if r.get("double_unreachable"))
    # the compiled warm path (tools/gpu_lowering.py --native): every run's two calls without
    # autograd agreed with torch; plans were registered for exactly the backends whose kernel
    # it calls (symconv/_fastpath.cpp), never for a forced backend
    if "--native" in rec["generator"]["argv"]:
        assert all(r["native_ok"] for r in runs if "native_ok" in r)
        registered = collections.Counter(r["backend"] for r in runs if r.get("native_registered"))
        assert not any(r["forced"] for r in runs if r.get("native_registered"))
        assert {"Cudnn", "CudaDepthwise2d", "CudaDepthwise3d"} <= set(registered)
        assert set(registered) <= {"Cudnn", "CudaDepthwise2d", "CudaDepthwise3d", "Slow2d",
                                   "SlowDilated2d", "SlowDilated3d", "SlowTranspose2d",
                                   "SlowTranspose3d", "Slow3d", "Mkldnn", "NnpackSpatial"}


def test_convolution_under_torch_compile_runs_eagerly_and_agrees():
    """symconv.convolution calls backend kernels that dynamo cannot trace on fake tensors
    (oneDNN's has no meta kernel): under torch.compile it runs outside the graph, with the
    same result; the rest of the function is compiled."""
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)

    def f(x, w):
        return symconv.convolution(x, w, None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1).relu()
    torch._dynamo.reset()
    with torch.no_grad():
        g = torch.compile(f, backend="eager")
        for _ in range(2):
            assert torch.equal(g(x, w), f(x, w))
    with pytest.raises(symconv.ConvError, match="expected input"):
        torch.compile(f, backend="eager")(torch.randn(2, 5, 8, 8), w)


def test_meta_tensors_answer_as_torch():
    """On meta tensors torch runs aten::convolution's meta kernel (selection would say
    Overrideable, whose kernel no meta build has): symconv checks the call, then gives torch's
    meta output. 600 seeded calls, valid and invalid: the same shape, strides and dtype, or the
    same error (symconv's is a subclass of torch's type, same first line)."""
    import random
    rng = random.Random(0)
    tried = 0
    for _ in range(600):
        nd, tr = rng.choice([1, 2, 3]), rng.random() < 0.3
        n, c, g = rng.choice([1, 2]), rng.choice([2, 4]), rng.choice([1, 1, 2])
        k, h, cout = rng.choice([1, 2, 3]), rng.choice([1, 3, 6, 9]), rng.choice([2, 4, 6])
        x = torch.empty((n, c) + (h,) * nd, device="meta")
        if nd == 2 and rng.random() < 0.2:
            x = x.contiguous(memory_format=torch.channels_last)
        w = torch.empty(((c, cout // g) if tr else (cout, c // g)) + (k,) * nd, device="meta")
        b = torch.empty(cout, device="meta") if rng.random() < 0.5 else None
        args = (x, w, b, [rng.choice([1, 2])] * nd, [rng.choice([0, 1, 3])] * nd,
                [rng.choice([1, 2])] * nd, tr, [rng.choice([0, 1])] * nd if tr else [0] * nd, g)

        def outcome(f, args=args):
            try:
                o = f(*args)
                return "ok", tuple(o.shape), o.stride(), o.dtype, o.device.type
            except Exception as e:  # noqa: BLE001 - compared below
                return type(e), str(e).splitlines()[0]
        theirs, ours = outcome(torch.convolution), outcome(symconv.convolution)
        tried += 1
        if theirs[0] == "ok" or ours[0] == "ok":
            assert ours == theirs, args[3:]
        else:
            assert issubclass(ours[0], theirs[0]) and ours[1] == theirs[1], (args[3:], ours)
    assert tried == 600
