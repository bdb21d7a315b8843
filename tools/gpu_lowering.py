#!/usr/bin/env python3
"""Run symconv's lowering on a GPU and compare it with torch: forward, backward, double backward.

For a fixed, seeded list of convolutions aimed at each CUDA backend (Cudnn, CudnnTranspose,
CudaDepthwise2d, CudaDepthwise3d, the CUDA slow fallbacks Slow2d / SlowDilated2d /
SlowDilated3d / SlowTranspose2d / SlowTranspose3d, and Empty), in float32, float16 and
bfloat16, contiguous and channels-last, it runs

* ``torch.nn.functional.conv*`` / ``conv_transpose*`` and autograd (the reference),
* ``symconv.convolution`` with symconv's own selection, and forced to every CUDA backend that
  symconv accepts for the arguments,
* gradients through autograd (symconv.convolution_backward) and ``convolution_backward``
  called directly; for float32 cases also the double backward in float64,

and checks that symconv's selection equals ``torch._C._select_conv_backend``. Errors are
compared against a float64 reference: symconv's may be at most 4x torch's own (plus a dtype
epsilon). The results go to ``--out`` (JSON; tests/data/cuda_lowering.json keeps a copy that
tests/test_lowering.py checks on the CPU).

    python3 tools/gpu_lowering.py --out $OUT/cuda_lowering.json
    python3 tools/gpu_lowering.py --device cpu --limit 20 --out /tmp/dry.json   # dry run

It imports symconv from the checkout it sits in (needs torch, numpy, sympy and z3-solver).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import random
import sys
import time
import traceback
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

import symconv
from symconv import ConvBackend, ConvError
from symconv import lowering as L

SEED = 20261125
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}
EPS = {torch.float32: 1.2e-7, torch.float64: 2.3e-16, torch.bfloat16: 7.9e-3,
       torch.float16: 9.8e-4}
CUDA_BACKENDS = ["Cudnn", "CudnnTranspose", "CudaDepthwise2d", "CudaDepthwise3d", "Slow2d",
                 "SlowDilated2d", "SlowDilated3d", "SlowTranspose2d", "SlowTranspose3d", "Empty"]
MF = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last,
      "channels_last_3d": torch.channels_last_3d}


def first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


# ----------------------------------------------------------------------------------------
# cases


def make_cases(rng: random.Random, limit: int | None) -> list[dict]:
    cases = []

    def add(target, nd, transposed, groups, cin, cout, n, kernel, stride, padding, dilation,
            output_padding, dtype, mf, bias, cudnn=True):
        spatial = []
        for i in range(nd):
            if transposed:
                short = 2 * padding[i] - dilation[i] * (kernel[i] - 1) - output_padding[i]
                need = 1 + max(0, -(-short // stride[i]))
            else:
                need = max(1, dilation[i] * (kernel[i] - 1) + 1 - 2 * padding[i])
            spatial.append(need + rng.randint(0, 6))
        wshape = ([cin, cout // groups] if transposed else [cout, cin // groups]) + kernel
        cases.append(dict(
            id=len(cases), target=target, input=[n, cin] + spatial, weight=wshape,
            bias=[(cout // groups) * groups if transposed else cout] if bias else None,
            stride=stride, padding=padding, dilation=dilation, transposed=transposed,
            output_padding=output_padding, groups=groups, dtype=dtype, memory_format=mf,
            cudnn=cudnn, seed=rng.randint(0, 2**31)))

    def pick(xs):
        return rng.choice(xs)

    for _ in range(26):  # Cudnn: 1-3 spatial dims, groups
        nd = pick([1, 2, 2, 3])
        g = pick([1, 1, 2])
        k = [pick([1, 3]) for _ in range(nd)]
        add("Cudnn", nd, False, g, g * pick([1, 3]), g * pick([2, 4]), pick([1, 2, 5]), k,
            [pick([1, 2]) for _ in range(nd)], [pick([0, 1]) for _ in range(nd)],
            [pick([1, 1, 2]) for _ in range(nd)], [0] * nd, pick(["float32", "float16",
                                                                   "bfloat16"]),
            pick(["contiguous", "channels_last"]) if nd == 2 else "contiguous", pick([True,
                                                                                       False]))
    for _ in range(20):  # CudnnTranspose (output_padding < stride)
        nd = pick([1, 2, 2, 3])
        g = pick([1, 2])
        s = [pick([1, 2]) for _ in range(nd)]
        add("CudnnTranspose", nd, True, g, g * pick([1, 2]), g * pick([1, 3]), pick([1, 3]),
            [pick([1, 2, 3]) for _ in range(nd)], s, [pick([0, 1]) for _ in range(nd)],
            [1] * nd, [rng.randint(0, si - 1) for si in s],
            pick(["float32", "float16", "bfloat16"]),
            pick(["contiguous", "channels_last"]) if nd == 2 else "contiguous", pick([True,
                                                                                       False]))
    for _ in range(20):  # CudaDepthwise2d: depthwise, contiguous (cuDNN takes channels-last)
        c = pick([2, 3, 8])
        add("CudaDepthwise2d", 2, False, c, c, c * pick([1, 2]), pick([1, 2]),
            [pick([3, 5]), pick([1, 3])], [pick([1, 2])] * 2, [pick([0, 1])] * 2,
            [pick([1, 2]), 1], [0, 0], pick(["float32", "float16", "bfloat16"]), "contiguous",
            pick([True, False]))
    for _ in range(14):  # CudaDepthwise3d
        c = pick([2, 4])
        add("CudaDepthwise3d", 3, False, c, c, c * pick([1, 2]), pick([1, 2]),
            [pick([1, 3]) for _ in range(3)], [pick([1, 2]) for _ in range(3)],
            [pick([0, 1]) for _ in range(3)], [pick([1, 2]) for _ in range(3)], [0, 0, 0],
            pick(["float32", "float16", "bfloat16"]), "contiguous", pick([True, False]))
    for _ in range(30):  # CUDA slow fallbacks: cuDNN disabled
        nd = pick([2, 2, 3])
        tr = pick([False, True])
        g = pick([1, 2])
        s = [pick([1, 2]) for _ in range(nd)]
        d = [pick([1, 2]) for _ in range(nd)]
        op = [rng.randint(0, max(si, di) - 1) for si, di in zip(s, d)] if tr else [0] * nd
        add("slow", nd, tr, g, g * pick([1, 2]), g * pick([1, 2]), pick([1, 2]),
            [pick([1, 2, 3]) for _ in range(nd)], s, [pick([0, 1]) for _ in range(nd)], d, op,
            pick(["float32", "float16", "bfloat16"]),
            pick(["contiguous", "channels_last"]) if nd == 2 else "contiguous",
            pick([True, False]), cudnn=False)
    for _ in range(8):  # transposed with output_padding >= stride: slow even with cuDNN on
        nd = pick([2, 3])
        add("big_output_padding", nd, True, 1, 2, 3, 2, [3] * nd, [1] * nd, [1] * nd,
            [2] * nd, [1] * nd, pick(["float32", "float16", "bfloat16"]), "contiguous", True)
    for _ in range(6):  # Empty
        nd = pick([1, 2, 3])
        add("Empty", nd, pick([False, True]), 1, 3, 4, 0, [3] * nd, [1] * nd, [1] * nd,
            [1] * nd, [0] * nd, pick(["float32", "float16", "bfloat16"]), "contiguous", True)
    if limit is not None:
        cases = cases[:limit]
    return cases


# ----------------------------------------------------------------------------------------
# running one case


@contextlib.contextmanager
def cudnn_flags(enabled: bool):
    old = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.enabled = old


def build(shape, dtype, device, mf, gen):
    t = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype).to(device)
    if mf != "contiguous" and len(shape) == (4 if mf == "channels_last" else 5):
        t = t.contiguous(memory_format=MF[mf])
    return t


# reference, sym, compare and grads are also the CPU suite's (tests/test_lowering.py loads them)


def reference(c, x, w, b):
    F = torch.nn.functional
    nd = w.dim() - 2
    if c["transposed"]:
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
        return fn(x, w, b, c["stride"], c["padding"], c["output_padding"], c["groups"],
                  c["dilation"])
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    return fn(x, w, b, c["stride"], c["padding"], c["dilation"], c["groups"])


def sym(c, x, w, b, backend):
    return symconv.convolution(x, w, b, c["stride"], c["padding"], c["dilation"],
                               c["transposed"], c["output_padding"], c["groups"],
                               backend=backend)


def compare(got, want, truth, dtype, tf32=False):
    if got is None or want is None:
        return (got is None) == (want is None), 0.0, 0.0
    if got.shape != want.shape or got.dtype != want.dtype:
        return False, float("inf"), 0.0
    if got.numel() == 0:
        return True, 0.0, 0.0
    g, t = got.detach().double(), truth.detach().double()
    err = (g - t).abs().max().item()
    err_t = (want.detach().double() - t).abs().max().item()
    scale = max(1.0, t.abs().max().item())
    eps = 2.0 ** -10 if tf32 and dtype == torch.float32 else EPS[dtype]
    return err <= 4 * err_t + 16 * eps * scale, err, err_t


def grads(out, inputs, go, create_graph=False):
    idx = [i for i, t in enumerate(inputs) if t is not None and t.requires_grad]
    got = torch.autograd.grad(out, [inputs[i] for i in idx], go, create_graph=create_graph,
                              allow_unused=True)
    res = [None] * len(inputs)
    for i, g in zip(idx, got):
        res[i] = g
    return res


def run_case(c: dict, device: str) -> list[dict]:
    dtype = DTYPES[c["dtype"]]
    gen = torch.Generator().manual_seed(c["seed"])
    runs = []
    with cudnn_flags(c["cudnn"]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = build(c["input"], dtype, device, c["memory_format"], gen).requires_grad_()
        w = build(c["weight"], dtype, device, c["memory_format"], gen).requires_grad_()
        b = None if c["bias"] is None else build(c["bias"], dtype, device, "contiguous",
                                                  gen).requires_grad_()
        base = dict(case=c["id"], target=c["target"], dtype=c["dtype"],
                    memory_format=c["memory_format"], cudnn=c["cudnn"])
        try:
            torch_sel = ConvBackend.from_torch(torch._C._select_conv_backend(
                x, w, b, c["stride"], c["padding"], c["dilation"], c["transposed"],
                c["output_padding"], c["groups"])).name
        except Exception as e:  # noqa: BLE001
            torch_sel = "error: " + first_line(e)
        try:
            ref = reference(c, x, w, b)
        except Exception as e:  # noqa: BLE001 - torch's answer: symconv must raise the same
            try:
                sym(c, x, w, b, None)
                mine = "no error"
            except Exception as e2:  # noqa: BLE001
                mine = first_line(e2)
            runs.append(dict(base, backend="error", selected="error",
                             torch_selected=torch_sel, forced=False,
                             ok=mine == first_line(e), why=f"torch: {first_line(e)}; "
                             f"symconv: {mine}"))
            return runs
        x64 = x.detach().double().requires_grad_()
        w64 = w.detach().double().requires_grad_()
        b64 = None if b is None else b.detach().double().requires_grad_()
        try:
            truth = reference(c, x64, w64, b64)
        except RuntimeError:
            truth = ref.detach().double()
        go = (torch.rand(ref.shape, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype) \
            .to(device)
        ref_g = grads(ref, [x, w, b], go)
        try:
            truth_g = grads(truth, [x64, w64, b64], go.double()) if truth.requires_grad \
                else [None if g is None else g.double() for g in ref_g]
        except RuntimeError:
            truth_g = [None if g is None else g.double() for g in ref_g]
        for be in [None] + CUDA_BACKENDS:
            run = dict(base, forced=be is not None, torch_selected=torch_sel)
            try:
                pl = L.plan(x, w, b, c["stride"], c["padding"], c["dilation"], c["transposed"],
                            c["output_padding"], c["groups"], backend=be)
            except ConvError as e:
                if be is None:
                    runs.append(dict(run, backend="error", selected="error", ok=False,
                                     why=f"plan raised {first_line(e)}; torch ran"))
                continue
            run.update(backend=pl.backend.name, selected=pl.selected.name,
                       plan=pl.describe())
            if be is not None and pl.backend == pl.selected:
                continue  # the unforced run covers it
            # cuDNN computes float32 in TF32 by default (torch.backends.cudnn.allow_tf32): a
            # forced cuDNN run is held to TF32's precision where torch ran an exact kernel
            tf32 = pl.backend.name in ("Cudnn", "CudnnTranspose") and pl.env.cudnn_allow_tf32
            run["tf32"] = tf32
            try:
                out = sym(c, x, w, b, be)
                ok, err, err_t = compare(out, ref, truth, dtype, tf32)
                # the same call again takes the warm path (plan-cache hit, kernel called directly)
                again = sym(c, x, w, b, be)
                ok_w, err_w, _ = compare(again, ref, truth, dtype, tf32)
                run["warm_identical"] = bool(again.shape == out.shape and
                                             again.stride() == out.stride() and
                                             torch.equal(again, out))
                if ok and not ok_w:
                    ok, err = False, err_w
                if NATIVE["on"]:
                    # without autograd, twice: the second is answered by the compiled warm path
                    # when the first registered its plan (symconv.native)
                    import symconv.native
                    before = symconv.native.plan_count()
                    with torch.no_grad():
                        first = sym(c, x, w, b, be)
                        registered = symconv.native.plan_count() > before
                        second = sym(c, x, w, b, be)
                    run["native_registered"] = registered
                    # held to torch like the first call (some cuDNN algorithms are not
                    # bit-reproducible); bit-identity is recorded besides
                    ok_1, err_1, _ = compare(first, ref, truth, dtype, tf32)
                    ok_2, err_2, _ = compare(second, ref, truth, dtype, tf32)
                    run["native_ok"] = bool(ok_1 and ok_2 and second.shape == first.shape
                                            and second.stride() == first.stride())
                    run["native_identical"] = bool(run["native_ok"] and
                                                   torch.equal(second, first))
                    if ok and not run["native_ok"]:
                        ok, err = False, max(err_1, err_2)
                run.update(ok=ok, fwd_err=err, torch_err=err_t,
                           identical=bool(out.shape == ref.shape and torch.equal(out, ref)))
                if not ok:
                    run["why"] = f"forward error {err:.3g} vs torch's {err_t:.3g}"
                else:
                    try:
                        sg = grads(out, [x, w, b], go)
                    except ConvError as e:
                        if "reachable from Python only through" not in str(e):
                            raise
                        # a forced backend whose backward kernel torch will not select here
                        run.update(bwd_unreachable=first_line(e))
                        runs.append(run)
                        continue
                    direct = symconv.convolution_backward(
                        go, x, w, None if b is None else list(b.shape), c["stride"],
                        c["padding"], c["dilation"], c["transposed"], c["output_padding"],
                        c["groups"], [True, True, b is not None], backend=be)
                    run["bwd"] = True
                    for name, a, r, d, t in zip("iwb", sg, ref_g, direct, truth_g):
                        ok1, e1, et = compare(a, r, t, dtype, tf32)
                        ok2, e2, _ = compare(d, r, t, dtype, tf32)
                        if not (ok1 and ok2):
                            run.update(ok=False, why=f"grad {name}: autograd {e1:.3g}, "
                                       f"direct {e2:.3g} vs torch's {et:.3g}")
                            break
                    if run["ok"] and c["dtype"] == "float32":
                        why = double_backward(c, x64, w64, b64, be, go.double())
                        run["double"] = why is None or not why.startswith(("skipped",
                                                                           "unreachable"))
                        if why is not None and why.startswith("unreachable"):
                            # the forced backend's float64 backward kernel: torch never
                            # selects it there (cuDNN for a float64 depthwise convolution)
                            run["double_unreachable"] = why
                        elif why not in (None, "skipped"):
                            run.update(ok=False, why=why)
            except Exception as e:  # noqa: BLE001
                run.update(ok=False, why=f"{type(e).__name__}: {first_line(e)}",
                           trace=traceback.format_exc(limit=4)[-800:])
            runs.append(run)
    return runs


def double_backward(c, x64, w64, b64, be, go64):
    if be is not None:
        try:
            L.plan(x64, w64, b64, c["stride"], c["padding"], c["dilation"], c["transposed"],
                   c["output_padding"], c["groups"], backend=be)
        except ConvError:
            return "skipped"
    go64 = go64.detach().requires_grad_()
    ins = [x64, w64, b64, go64]
    res = {}
    for name, fn in (("torch", lambda: reference(c, x64, w64, b64)),
                     ("symconv", lambda: sym(c, x64, w64, b64, be))):
        try:
            g = grads(fn(), [x64, w64, b64], go64, create_graph=True)
        except ConvError as e:
            if name == "symconv" and "reachable from Python only through" in str(e):
                return "unreachable: " + first_line(e)
            raise
        vs = [None if t is None else torch.rand(t.shape, dtype=torch.float64,
                                                generator=torch.Generator().manual_seed(i))
              .to(t.device) for i, t in enumerate(g)]
        s = sum((gi * v).sum() for gi, v in zip(g, vs) if gi is not None)
        res[name] = grads(s, ins, None)
    for name, a, r in zip(("input", "weight", "bias", "grad_output"), res["symconv"],
                          res["torch"]):
        if a is None or r is None:
            if (a is not None and a.any()) or (r is not None and r.any()):
                return f"double backward {name}: one side is None"
            continue
        err = (a - r).abs().max().item() if a.numel() else 0.0
        if err > 1e-7 * max(1.0, r.abs().max().item() if r.numel() else 1.0):
            return f"double backward {name}: error {err:.3g}"
    return None


# ----------------------------------------------------------------------------------------


def environment(device: str) -> dict:
    env = dict(torch_version=torch.__version__, python=sys.version.split()[0],
               platform=platform.platform(), device=device,
               cuda_available=torch.cuda.is_available(),
               cudnn_version=torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
               else None, symconv_environment=symconv.Environment.from_torch().as_dict())
    if device == "cuda":
        env.update(device_name=torch.cuda.get_device_name(),
                   device_capability=list(torch.cuda.get_device_capability()),
                   cuda_version=torch.version.cuda)
    return env


NATIVE = {"on": False}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--native", action="store_true",
                    help="also run each call twice without autograd with the compiled warm "
                    "path enabled (symconv.native) and check it against the Python path")
    args = ap.parse_args(argv)
    if args.native:
        import symconv.native
        symconv.native.enable()
        NATIVE["on"] = True
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    t0 = time.time()
    cases = make_cases(random.Random(SEED), args.limit)
    runs = []
    for c in cases:
        try:
            runs.extend(run_case(c, args.device))
        except Exception as e:  # noqa: BLE001 - keep going, record it
            runs.append(dict(case=c["id"], target=c["target"], backend="crash", selected="?",
                             torch_selected="?", forced=False, ok=False, dtype=c["dtype"],
                             memory_format=c["memory_format"], why=first_line(e),
                             trace=traceback.format_exc(limit=6)[-1200:]))
    summary = collections.defaultdict(collections.Counter)
    for r in runs:
        key = r["backend"] + (" (forced)" if r.get("forced") else "")
        summary[key]["runs"] += 1
        summary[key]["agree"] += bool(r["ok"])
        summary[key]["identical"] += bool(r.get("identical"))
        summary[key]["backward"] += bool(r.get("bwd"))
        summary[key]["double"] += bool(r.get("double"))
        summary[key]["backward_unreachable"] += bool(r.get("bwd_unreachable"))
        summary[key]["double_unreachable"] += bool(r.get("double_unreachable"))
        summary[key]["warm_identical"] += bool(r.get("warm_identical"))
        summary[key]["native_registered"] += bool(r.get("native_registered"))
        summary[key]["native_ok"] += bool(r.get("native_ok"))
        summary[key]["native_identical"] += bool(r.get("native_identical"))
        summary[key][r["dtype"]] += 1
    selection_agrees = sum(r["selected"] == r["torch_selected"] for r in runs
                           if not r.get("forced"))
    out = dict(format_version=1, generator=dict(script="tools/gpu_lowering.py", seed=SEED,
                                                argv=sys.argv[1:], cases=len(cases)),
               environment=environment(args.device), cases=cases, runs=runs,
               summary={k: dict(v) for k, v in sorted(summary.items())},
               selection_agrees=selection_agrees,
               selection_runs=sum(not r.get("forced") for r in runs),
               seconds=round(time.time() - t0, 1))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"{len(cases)} cases, {len(runs)} runs in {out['seconds']} s on "
          f"{out['environment'].get('device_name', args.device)}")
    for k, v in sorted(summary.items()):
        print(f"  {k:28s} runs {v['runs']:4d} agree {v['agree']:4d} identical "
              f"{v['identical']:4d} backward {v['backward']:4d} double {v['double']:3d} "
              f"backward unreachable {v['backward_unreachable']} double backward unreachable "
              f"{v['double_unreachable']} warm path identical {v['warm_identical']}"
              + (f" compiled warm path: registered {v['native_registered']} agree "
                 f"{v['native_ok']} identical {v['native_identical']}" if NATIVE["on"]
                 else ""))
    print(f"  selection agrees with torch in {selection_agrees} of {out['selection_runs']}")
    bad = [r for r in runs if not r["ok"]]
    for r in bad[:20]:
        print("  MISMATCH", {k: r.get(k) for k in ("case", "backend", "forced", "dtype",
                                                   "memory_format", "why")})
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
