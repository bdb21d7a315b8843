#!/usr/bin/env python3
"""Record what real torch does when it picks a convolution backend on CUDA.

symconv mirrors ``aten/src/ATen/native/Convolution.cpp``.  The CUDA half of that
logic cannot be observed on a CPU-only machine, so this script is run once on a
GPU machine and its output (``tests/data/cuda_records.json[.gz]``) is kept in
the repository for CPU tests to replay.  ``tests/data/README.md`` documents the
format.

For a fixed, seeded set of configurations it calls

* ``torch._C._select_conv_backend`` (the forward overload, and the overload with
  ``bias_sizes`` that ``convolution_backward`` uses),
* ``torch._C._conv_determine_backend_memory_format`` where selection returns,
* ``torch.convolution`` for small configurations, in a child process so that a
  kernel crash or a sticky CUDA error cannot take the recording down.

It needs only torch and the standard library.  ``--device cpu --limit 50`` is a
dry run that works on a CPU-only machine (backends then differ; that is fine).

    python3 tools/record_cuda.py --out $OUT/cuda_records.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import multiprocessing as mp
import os
import platform
import random
import sys
import time
import traceback
import warnings

import torch

FORMAT_VERSION = 1
SEED = 20240917

# C++ order of at::native::ConvBackend (the Python enum lacks MkldnnTranspose and
# misnames MpsTranspose, so ints are mapped with this list).
BACKEND_NAMES = [
    "CudaDepthwise2d", "CudaDepthwise3d", "Cudnn", "CudnnTranspose", "Empty",
    "Miopen", "MiopenDepthwise", "MiopenTranspose", "Mkldnn", "MkldnnTranspose",
    "MkldnnEmpty", "NnpackSpatial", "Overrideable", "Slow2d", "Slow3d",
    "SlowDilated2d", "SlowDilated3d", "SlowTranspose2d", "SlowTranspose3d",
    "Winograd3x3Depthwise", "Xnnpack2d", "Mps", "MpsTranspose",
]

DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "int32": torch.int32,
}
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "complex64": 8, "int32": 4}
MEMORY_FORMATS = {
    "contiguous_format": torch.contiguous_format,
    "channels_last": torch.channels_last,
    "channels_last_3d": torch.channels_last_3d,
    "preserve_format": torch.preserve_format,
}
INT_MAX = 2**31 - 1

HAS_DEPTHWISE_KERNEL = hasattr(torch.backends.cudnn, "depthwise_kernel") and hasattr(
    torch._C, "_set_cudnn_depthwise_kernel")
DEPTHWISE_KERNEL_VALUES = ["auto", "cudnn", "native"] if HAS_DEPTHWISE_KERNEL else [None]

# Where the 'device' of a spec ("cuda" / "cpu") really goes.  A CPU dry run maps
# "cuda" to "cpu".
DEVICE_MAP = {"cuda": "cuda", "cpu": "cpu"}

DEFAULT_FLAGS = {
    "grad_enabled": True,
    "cudnn_enabled": True,
    "cudnn_deterministic": False,
    "cudnn_benchmark": False,
    "cudnn_allow_tf32": True,
    "deterministic_algorithms": False,
    "depthwise_kernel": "auto" if HAS_DEPTHWISE_KERNEL else None,
}


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------

def first_line(msg: str) -> str:
    msg = str(msg).strip()
    return msg.splitlines()[0] if msg else ""


def err_dict(e: BaseException) -> dict:
    return {"type": type(e).__name__, "message": first_line(str(e))}


def prod(xs):
    p = 1
    for x in xs:
        p *= x
    return p


def contiguous_strides(shape):
    st, acc = [], 1
    for s in reversed(shape):
        st.append(acc)
        acc *= max(s, 1)
    return list(reversed(st))


def perm_strides(shape, perm):
    """Strides of a tensor of `shape` whose physical dim order is `perm` (outer->inner)."""
    phys = [shape[p] for p in perm]
    pst = contiguous_strides(phys)
    st = [0] * len(shape)
    for i, p in enumerate(perm):
        st[p] = pst[i]
    return st


def mf_name(mf) -> str:
    s = str(mf)
    return s[len("torch."):] if s.startswith("torch.") else s


def expand_list(v, n):
    v = list(v)
    return v * n if len(v) == 1 else v


# ----------------------------------------------------------------------------
# tensor specs
# ----------------------------------------------------------------------------
# A tensor spec is a dict:
#   shape, dtype, device, requires_grad,
#   construction: "empty"      torch.empty(shape, memory_format=memory_format)
#                 "permute"    torch.empty([shape[p] for p in perm]).permute(argsort(perm))
#                 "expand"     torch.empty(base_shape).expand(shape)   (base_shape default all ones)
#                 "as_strided" torch.empty(storage_numel).as_strided(shape, stride)
#   memory_format (for "empty"), perm (for "permute"), base_shape (for "expand"),
#   stride + storage_numel (for "as_strided").
# After building, the record also stores the strides the tensor really had.

def tspec(shape, dtype, device="cuda", requires_grad=False, construction="empty",
          memory_format="contiguous_format", **kw):
    d = {"shape": list(shape), "dtype": dtype, "device": device,
         "requires_grad": bool(requires_grad), "construction": construction}
    if construction == "empty":
        d["memory_format"] = memory_format
    d.update(kw)
    return d


def as_strided_spec(shape, stride, dtype, **kw):
    storage = 1 + sum((s - 1) * st for s, st in zip(shape, stride) if s > 0)
    if any(s == 0 for s in shape):
        storage = 0
    return tspec(shape, dtype, construction="as_strided", stride=list(stride),
                 storage_numel=storage, **kw)


def spec_numel(spec):
    return prod(spec["shape"])


def spec_alloc_bytes(spec):
    c = spec["construction"]
    it = ITEMSIZE[spec["dtype"]]
    if c == "expand":
        return prod(spec.get("base_shape", [1])) * it
    if c == "as_strided":
        return spec["storage_numel"] * it
    return prod(spec["shape"]) * it


def build_tensor(spec, fill: bool):
    dtype = DTYPES[spec["dtype"]]
    device = DEVICE_MAP[spec["device"]]
    c = spec["construction"]
    shape = spec["shape"]

    def fill_(t):
        if fill and t.numel() > 0:
            with torch.no_grad():
                if t.dtype.is_floating_point or t.dtype.is_complex:
                    t.copy_(torch.randn(t.shape, dtype=t.dtype, device=t.device))
                else:
                    t.copy_(torch.randint(-3, 4, t.shape, dtype=t.dtype, device=t.device))
        return t

    if c == "empty":
        base = fill_(torch.empty(shape, dtype=dtype, device=device,
                                 memory_format=MEMORY_FORMATS[spec["memory_format"]]))
        view = None
    elif c == "permute":
        perm = spec["perm"]
        inv = [perm.index(i) for i in range(len(perm))]
        base = fill_(torch.empty([shape[p] for p in perm], dtype=dtype, device=device))
        view = lambda b: b.permute(inv)
    elif c == "expand":
        bs = spec.get("base_shape", [1] * len(shape))
        base = fill_(torch.empty(bs, dtype=dtype, device=device))
        view = lambda b: b.expand(shape)
    elif c == "as_strided":
        base = fill_(torch.empty(spec["storage_numel"], dtype=dtype, device=device))
        view = lambda b: b.as_strided(shape, spec["stride"])
    else:
        raise ValueError(c)
    if spec["requires_grad"]:
        base.requires_grad_(True)
    return base if view is None else view(base)


# ----------------------------------------------------------------------------
# flags
# ----------------------------------------------------------------------------

def apply_flags(f):
    torch._C._set_cudnn_enabled(f["cudnn_enabled"])
    torch._C._set_cudnn_deterministic(f["cudnn_deterministic"])
    torch._C._set_cudnn_benchmark(f["cudnn_benchmark"])
    torch._C._set_cudnn_allow_tf32(f["cudnn_allow_tf32"])
    if HAS_DEPTHWISE_KERNEL and f.get("depthwise_kernel") is not None:
        torch._C._set_cudnn_depthwise_kernel(f["depthwise_kernel"])
    torch.use_deterministic_algorithms(f["deterministic_algorithms"])
    torch.set_grad_enabled(f["grad_enabled"])


def read_flags():
    d = {
        "grad_enabled": torch.is_grad_enabled(),
        "cudnn_enabled": torch._C._get_cudnn_enabled(),
        "cudnn_deterministic": torch._C._get_cudnn_deterministic(),
        "cudnn_benchmark": torch._C._get_cudnn_benchmark(),
        "cudnn_allow_tf32": torch._C._get_cudnn_allow_tf32(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "depthwise_kernel": torch._C._get_cudnn_depthwise_kernel() if HAS_DEPTHWISE_KERNEL else None,
    }
    return d


def random_flags(rng, p_default=0.5):
    if rng.random() < p_default:
        f = dict(DEFAULT_FLAGS)
        f["grad_enabled"] = rng.random() < 0.7
        return f
    return {
        "grad_enabled": rng.random() < 0.7,
        "cudnn_enabled": rng.random() < 0.8,
        "cudnn_deterministic": rng.random() < 0.3,
        "cudnn_benchmark": rng.random() < 0.3,
        "cudnn_allow_tf32": rng.random() < 0.7,
        "deterministic_algorithms": rng.random() < 0.2,
        "depthwise_kernel": rng.choice(DEPTHWISE_KERNEL_VALUES),
    }


# ----------------------------------------------------------------------------
# shape arithmetic (only to decide whether a forward run is small enough)
# ----------------------------------------------------------------------------

def estimated_output_numel(cfg):
    try:
        inp, w = cfg["input"]["shape"], cfg["weight"]["shape"]
        k = len(inp) - 2
        if k < 1 or len(w) != len(inp):
            return 0
        st = expand_list(cfg["stride"], k)
        pd = expand_list(cfg["padding"], k)
        dl = expand_list(cfg["dilation"], k)
        op = expand_list(cfg["output_padding"], k)
        g = cfg["groups"]
        out = [inp[0]]
        if cfg["transposed"]:
            out.append(w[1] * g)
            for i in range(k):
                out.append((inp[i + 2] - 1) * st[i] - 2 * pd[i] + dl[i] * (w[i + 2] - 1) + op[i] + 1)
        else:
            out.append(w[0])
            for i in range(k):
                if st[i] <= 0:
                    return 0
                out.append((inp[i + 2] + 2 * pd[i] - dl[i] * (w[i + 2] - 1) - 1) // st[i] + 1)
        return prod(max(o, 0) for o in out)
    except Exception:  # noqa: BLE001 - a size estimate only: any odd configuration counts as 0
        return 0


def forward_eligible(cfg, limit=10**6):
    specs = [cfg["input"], cfg["weight"]] + ([cfg["bias"]] if cfg.get("bias") else [])
    if any(spec_numel(s) > limit for s in specs):
        return False
    if any(spec_alloc_bytes(s) > 64 * 2**20 for s in specs):
        return False
    return estimated_output_numel(cfg) <= limit


# ----------------------------------------------------------------------------
# configuration generators
# ----------------------------------------------------------------------------

def pick(rng, weighted):
    items, weights = zip(*weighted)
    return rng.choices(items, weights=weights, k=1)[0]


def make_cfg(family, inp, weight, bias, stride, padding, dilation, transposed,
             output_padding, groups, flags, **extra):
    cfg = {"family": family, "input": inp, "weight": weight, "bias": bias,
           "stride": list(stride), "padding": list(padding), "dilation": list(dilation),
           "transposed": bool(transposed), "output_padding": list(output_padding),
           "groups": groups, "flags": flags}
    cfg.update(extra)
    return cfg


def float_rg(rng, dtype, p=0.4):
    return dtype != "int32" and rng.random() < p


def layout_for(rng, ndim, p_cl=0.35, p_perm=0.05):
    """Return (construction, extra kwargs) for an ordinary tensor of ndim dims."""
    r = rng.random()
    if ndim == 4 and r < p_cl:
        return "empty", {"memory_format": "channels_last"}
    if ndim == 5 and r < p_cl:
        return "empty", {"memory_format": "channels_last_3d"}
    if r < p_cl + p_perm and ndim >= 3:
        perm = list(range(ndim))
        rng.shuffle(perm)
        return "permute", {"perm": perm}
    return "empty", {"memory_format": "contiguous_format"}


def mk(shape, dtype, rng, rg_p=0.4, layout=True, p_cl=0.35, p_perm=0.05, device="cuda"):
    if layout:
        cons, kw = layout_for(rng, len(shape), p_cl, p_perm)
    else:
        cons, kw = "empty", {"memory_format": "contiguous_format"}
    return tspec(shape, dtype, device=device, requires_grad=float_rg(rng, dtype, rg_p),
                 construction=cons, **kw)


def gen_random(rng, n):
    out = []
    for _ in range(n):
        d = pick(rng, [(1, 2), (2, 5), (3, 3)])
        dtype = pick(rng, [("float16", 25), ("bfloat16", 20), ("float32", 30),
                           ("float64", 15), ("complex64", 10)])
        transposed = rng.random() < 0.3
        groups = pick(rng, [(1, 12), (2, 3), (3, 2), (4, 2), (8, 1)])
        cin_g = rng.choice([1, 1, 2, 3, 4, 8, 16])
        cout_g = rng.choice([1, 1, 2, 3, 4, 8, 16])
        # sometimes make it depthwise-like
        if rng.random() < 0.15:
            groups = rng.choice([2, 3, 4, 8, 16, 32])
            cin_g = 1
            cout_g = rng.choice([1, 1, 2])
        N = rng.choice([1, 1, 2, 3, 4, 8, 16])
        smax = {1: 96, 2: 40, 3: 12}[d]
        spatial = [rng.randint(1, smax) for _ in range(d)]
        if rng.random() < 0.2:
            spatial = [spatial[0]] * d
        k = [rng.choice([1, 1, 2, 3, 3, 5]) for _ in range(d)]
        if rng.random() < 0.5:
            k = [k[0]] * d
        s = [rng.choice([1, 1, 1, 2, 3]) for _ in range(d)]
        if rng.random() < 0.6:
            s = [s[0]] * d
        p = [rng.choice([0, 0, 1, 2]) for _ in range(d)]
        dl = [rng.choice([1, 1, 1, 1, 2, 3]) for _ in range(d)]
        if rng.random() < 0.6:
            dl = [dl[0]] * d
        if rng.random() < 0.9:  # mostly valid: the padded input holds the dilated kernel
            spatial = [max(si, (ki - 1) * di + 1 - 2 * pi) for si, ki, di, pi in zip(spatial, k, dl, p)]
        op = [0] * d
        if transposed and rng.random() < 0.4:
            op = [rng.randint(0, max(si, di) - 1) for si, di in zip(s, dl)]
        C_in, C_out = groups * cin_g, groups * cout_g
        if transposed:
            wshape = [C_in, cout_g] + k
        else:
            wshape = [C_out, cin_g] + k
        inp = mk([N, C_in] + spatial, dtype, rng)
        wt = mk(wshape, dtype, rng, p_cl=0.3)
        bias = mk([C_out], dtype, rng, layout=False) if rng.random() < 0.5 else None
        # parameters as passed: sometimes a single-element list that torch expands
        def maybe_short(v):  # called at once, inside this iteration (so d is this one's)
            return [v[0]] if (d > 1 and len(set(v)) == 1 and rng.random() < 0.15) else v  # noqa: B023
        out.append(make_cfg("random", inp, wt, bias, maybe_short(s), maybe_short(p),
                            maybe_short(dl), transposed, maybe_short(op), groups,
                            random_flags(rng, 0.45)))
    return out


DW_BATCH = [1, 2, 4, 8, 16, 17, 32, 64, 127, 128, 256]
DW_CH = [16, 24, 31, 32, 48, 64, 128, 255, 256, 512, 1024, 2048]
DW_W = [1, 2, 6, 7, 8, 13, 14, 15, 27, 28, 29, 55, 56, 57, 111, 112, 113, 224, 256]


def gen_depthwise(rng, n):
    out = []
    for _ in range(n):
        three_d = rng.random() < 0.1
        dtype = pick(rng, [("float16", 60), ("bfloat16", 15), ("float32", 15),
                           ("float64", 5), ("complex64", 5)])
        N = rng.choice(DW_BATCH)
        C = rng.choice(DW_CH)
        m = pick(rng, [(1, 80), (2, 12), (4, 8)])
        if three_d:
            N = rng.choice([1, 2, 4, 8, 16])
            C = rng.choice([16, 32, 64, 128, 256])
            sp = [rng.choice([1, 4, 7, 8, 16]) for _ in range(3)]
            kk = rng.choice([1, 3, 5])
            k = [kk] * 3 if rng.random() < 0.8 else [1, kk, kk]
            ss = rng.choice([1, 2])
            s = [ss] * 3
            dl = [rng.choice([1, 1, 1, 2])] * 3
        else:
            W = rng.choice(DW_W)
            hr = rng.random()
            H = 1 if hr < 0.3 else (W if hr < 0.8 else rng.choice(DW_W))
            sp = [H, W]
            if rng.random() < 0.7:
                kk = rng.choice([1, 3, 5, 7])
                k = [kk, kk]
            else:
                k = list(rng.choice([(1, 3), (3, 1), (3, 5), (5, 3), (1, 5), (1, 7), (7, 1), (5, 7)]))
            if rng.random() < 0.85:
                ss = rng.choice([1, 1, 2, 2, 3])
                s = [ss, ss]
            else:
                s = list(rng.choice([(1, 2), (2, 1), (1, 3), (3, 1), (2, 3)]))
            dr = rng.random()
            dl = [1, 1] if dr < 0.85 else ([2, 2] if dr < 0.95 else [1, 2])
        pad = [ki // 2 for ki in k]
        if rng.random() < 0.2 and all(si >= ki for si, ki in zip(sp, k)):
            pad = [0] * len(k)
        ishape = [N, C] + sp
        wshape = [C * m, 1] + k
        # keep real strides unless the input is too large to allocate
        construction = None
        nbytes = prod(ishape) * ITEMSIZE[dtype]
        if nbytes > 2 * 2**30:
            if rng.random() < 0.5:
                construction = "expand"
            else:
                while prod(ishape) * ITEMSIZE[dtype] > 2 * 2**30 and ishape[0] > 1:
                    ishape[0] //= 2
                if prod(ishape) * ITEMSIZE[dtype] > 2 * 2**30:
                    construction = "expand"
        if construction == "expand":
            inp = tspec(ishape, dtype, requires_grad=float_rg(rng, dtype, 0.3), construction="expand")
        else:
            mfmt = "contiguous_format"
            if rng.random() < 0.25:
                mfmt = "channels_last_3d" if three_d else "channels_last"
            inp = tspec(ishape, dtype, requires_grad=float_rg(rng, dtype, 0.3), memory_format=mfmt)
        wmf = "contiguous_format"
        if rng.random() < 0.2:
            wmf = "channels_last_3d" if three_d else "channels_last"
        wt = tspec(wshape, dtype, requires_grad=float_rg(rng, dtype, 0.3), memory_format=wmf)
        bias = tspec([C * m], dtype, requires_grad=float_rg(rng, dtype, 0.3)) if rng.random() < 0.3 else None
        flags = random_flags(rng, 0.55)
        if rng.random() < 0.3 and HAS_DEPTHWISE_KERNEL:
            flags = dict(flags)
            flags["depthwise_kernel"] = rng.choice(["cudnn", "native"])
        out.append(make_cfg("depthwise", inp, wt, bias, s, pad, dl, False, [0] * len(k), C, flags))
    return out


def gen_huge(rng, n):
    """Sizes past 2^31 elements, built without allocating the data (mostly)."""
    out = []
    kinds = ["per_sample_input", "batch_splittable", "output_padding", "output_transposed",
             "output_channels", "depthwise", "three_d", "transposed_input"]
    real_budget = [8]  # a few real (dense) allocations of several GiB
    for i in range(n):
        kind = kinds[i % len(kinds)]
        dtype = pick(rng, [("float16", 40), ("bfloat16", 20), ("float32", 30), ("float64", 10)])
        flags = random_flags(rng, 0.6)
        bias = None
        transposed = False
        op = None
        groups = 1
        if kind == "per_sample_input":
            C = rng.choice([1, 2, 4, 8, 64])
            HW = math.isqrt((2**31 + rng.randint(0, 2**30)) // C) + 1
            ishape = [rng.choice([1, 2, 4]), C, HW, HW]
            wshape = [rng.choice([1, 4]), C, 3, 3]
            s, p, dl = [1, 1], [1, 1], [1, 1]
        elif kind == "batch_splittable":
            C = rng.choice([3, 16, 64])
            HW = rng.choice([128, 256, 512])
            N = (2**31 // (C * HW * HW)) + rng.randint(1, 64)
            ishape = [N, C, HW, HW]
            wshape = [rng.choice([8, 16, 64]), C, 3, 3]
            s, p, dl = [1, 1], [1, 1], [rng.choice([1, 2])] * 2
        elif kind == "output_padding":
            C = rng.choice([1, 3])
            ishape = [1, C, rng.randint(1, 8), rng.randint(1, 8)]
            P = rng.choice([24000, 30000, 50000])
            wshape = [rng.choice([1, 2, 4]), C, 1, 1]
            s, p, dl = [1, 1], [P, P], [1, 1]
        elif kind == "output_transposed":
            C = rng.choice([4, 16])
            HW = rng.choice([512, 1024])
            ishape = [1, C, HW, HW]
            Cout = rng.choice([8, 32, 64])
            wshape = [C, Cout, 3, 3]
            st = rng.choice([4, 8])
            s, p, dl = [st, st], [0, 0], [1, 1]
            transposed = True
        elif kind == "output_channels":
            ishape = [1, 16, 512, 512]
            wshape = [8193 + rng.randint(0, 8000), 16, 1, 1]
            s, p, dl = [1, 1], [0, 0], [1, 1]
        elif kind == "depthwise":
            C = rng.choice([32, 64, 256, 1024])
            HW = math.isqrt(2**31 // C) + rng.randint(1, 500)
            ishape = [rng.choice([1, 2]), C, HW, HW]
            wshape = [C, 1, 3, 3]
            s, p, dl = [rng.choice([1, 2])] * 2, [1, 1], [1, 1]
            groups = C
            dtype = pick(rng, [("float16", 70), ("float32", 30)])
        elif kind == "three_d":
            C = rng.choice([1, 8])
            D = round((2**31 // C) ** (1 / 3)) + rng.randint(1, 50)
            ishape = [1, C, D, D, D]
            wshape = [rng.choice([1, 4]), C, 3, 3, 3]
            s, p, dl = [1] * 3, [1] * 3, [1] * 3
        else:  # transposed_input
            C = rng.choice([1, 4])
            HW = math.isqrt(2**31 // C) + rng.randint(1, 1000)
            ishape = [1, C, HW, HW]
            wshape = [C, rng.choice([1, 2]), 2, 2]
            s, p, dl = [1, 1], [0, 0], [1, 1]
            transposed = True
        d = len(ishape) - 2
        op = [0] * d
        numel = prod(ishape)
        it = ITEMSIZE[dtype]
        # choose how to build the input
        choices = ["expand", "as_strided_bcast_batch", "as_strided_cl_bcast",
                   "as_strided_bcast_hw", "real", "expand_partial"]
        how = rng.choice(choices)
        per_sample = prod(ishape[1:])
        if how == "real" and (numel * it > 8 * 2**30 or real_budget[0] <= 0):
            how = "expand"
        if how == "as_strided_bcast_batch" and per_sample * it > 2**30:
            how = "as_strided_bcast_hw"
        if how == "real" or numel * it <= 2**30:
            real_budget[0] -= 1 if numel * it > 2**30 else 0
            inp = tspec(ishape, dtype, requires_grad=float_rg(rng, dtype, 0.3),
                        memory_format=rng.choice(["contiguous_format",
                                                  "channels_last_3d" if d == 3 else "channels_last"]))
            how = "real"
        elif how == "expand":
            inp = tspec(ishape, dtype, requires_grad=float_rg(rng, dtype, 0.3), construction="expand")
        elif how == "expand_partial":
            base = [1, ishape[1]] + [1] * (d - 1) + [ishape[-1]]
            inp = tspec(ishape, dtype, requires_grad=float_rg(rng, dtype, 0.3), construction="expand",
                        base_shape=base)
        elif how == "as_strided_bcast_batch":
            st = [0] + contiguous_strides(ishape[1:])
            inp = as_strided_spec(ishape, st, dtype, requires_grad=float_rg(rng, dtype, 0.3))
        elif how == "as_strided_cl_bcast":
            C = ishape[1]
            st = [0, 1] + [0] * (d - 1) + [C]
            inp = as_strided_spec(ishape, st, dtype, requires_grad=float_rg(rng, dtype, 0.3))
        else:  # as_strided_bcast_hw
            st = [ishape[1], 1] + [0] * d
            inp = as_strided_spec(ishape, st, dtype, requires_grad=float_rg(rng, dtype, 0.3))
        wmf = "contiguous_format"
        if rng.random() < 0.3:
            wmf = "channels_last_3d" if d == 3 else "channels_last"
        wt = tspec(wshape, dtype, requires_grad=float_rg(rng, dtype, 0.3), memory_format=wmf)
        cout = wshape[1] * groups if transposed else wshape[0]
        if rng.random() < 0.3:
            bias = tspec([cout], dtype)
        out.append(make_cfg("huge", inp, wt, bias, s, p, dl, transposed, op, groups, flags,
                            subfamily=kind + ":" + how))
    return out


def valid_small(rng, d=None, dtype=None, transposed=None):
    d = d or rng.choice([1, 2, 2, 3])
    dtype = dtype or rng.choice(["float16", "bfloat16", "float32", "float64"])
    transposed = (rng.random() < 0.3) if transposed is None else transposed
    groups = rng.choice([1, 1, 2])
    cin_g, cout_g = rng.choice([1, 2, 3]), rng.choice([1, 2, 4])
    N = rng.choice([1, 2, 4])
    sp = [rng.randint(4, 12 if d == 3 else 20) for _ in range(d)]
    k = [rng.choice([1, 3])] * d
    s = [rng.choice([1, 2])] * d
    p = [rng.choice([0, 1])] * d
    dl = [1] * d
    C_in, C_out = groups * cin_g, groups * cout_g
    wshape = ([C_in, cout_g] if transposed else [C_out, cin_g]) + k
    return dict(d=d, dtype=dtype, transposed=transposed, groups=groups, N=N, sp=sp, k=k, s=s, p=p,
                dl=dl, op=[0] * d, C_in=C_in, C_out=C_out, cin_g=cin_g, cout_g=cout_g,
                ishape=[N, C_in] + sp, wshape=wshape, bias=rng.random() < 0.5)


INVALID_MUTATIONS = [
    "channel_mismatch", "groups_not_dividing_cin", "groups_not_dividing_cout", "groups_zero",
    "groups_negative", "negative_padding", "negative_stride", "zero_stride", "negative_dilation",
    "zero_dilation", "output_padding_ge_stride", "output_padding_non_transposed",
    "kernel_bigger_than_input", "weight_ndim_low", "weight_ndim_high", "input_ndim_2",
    "input_ndim_6", "param_len_wrong", "bias_wrong_size", "bias_2d", "dtype_mismatch",
    "bias_dtype_mismatch", "int_dtype", "weight_on_cpu", "bias_on_cpu", "huge_padding",
    "zero_spatial", "depthwise_mismatch", "transposed_cout_zero", "kernel_zero",
]


def gen_invalid(rng, n):
    out = []
    for i in range(n):
        mut = INVALID_MUTATIONS[i % len(INVALID_MUTATIONS)]
        v = valid_small(rng, transposed=(True if mut == "output_padding_ge_stride" else
                                         (False if mut == "output_padding_non_transposed" else None)))
        d, dtype = v["d"], v["dtype"]
        ishape, wshape = list(v["ishape"]), list(v["wshape"])
        s, p, dl, op, g = list(v["s"]), list(v["p"]), list(v["dl"]), list(v["op"]), v["groups"]
        transposed = v["transposed"]
        idtype = wdtype = bdtype = dtype
        wdev = bdev = "cuda"
        bias_shape = [v["C_out"]] if v["bias"] else None
        if mut == "channel_mismatch":
            if transposed:
                wshape[0] += rng.choice([1, 2])
            else:
                wshape[1] += 1
        elif mut == "groups_not_dividing_cin":
            g = 2
            ishape[1] = 3
            wshape = ([3, 2] if transposed else [4, 1]) + v["k"]
        elif mut == "groups_not_dividing_cout":
            g = 2
            ishape[1] = 4
            wshape = ([4, 1] if transposed else [3, 2]) + v["k"]
            if transposed:
                g = 3
        elif mut == "groups_zero":
            g = 0
        elif mut == "groups_negative":
            g = -1
        elif mut == "negative_padding":
            p[0] = -1
        elif mut == "negative_stride":
            s[0] = -1
        elif mut == "zero_stride":
            s[-1] = 0
        elif mut == "negative_dilation":
            dl[0] = -1
        elif mut == "zero_dilation":
            dl = [0] * d
        elif mut == "output_padding_ge_stride":
            op = [max(s[0], dl[0]) + rng.choice([0, 1])] * d
        elif mut == "output_padding_non_transposed":
            op = [1] * d
        elif mut == "kernel_bigger_than_input":
            p = [0] * d
            wshape[2] = ishape[2] + rng.choice([1, 3])
            if transposed:
                transposed = False
                wshape[0], wshape[1] = v["C_out"], v["cin_g"]
        elif mut == "weight_ndim_low":
            wshape = wshape[:-1]
        elif mut == "weight_ndim_high":
            wshape = wshape + [1]
        elif mut == "input_ndim_2":
            ishape = ishape[:2]
        elif mut == "input_ndim_6":
            ishape = ishape + [2] * (4 - d)
        elif mut == "param_len_wrong":
            s = s + [1]
        elif mut == "bias_wrong_size":
            bias_shape = [v["C_out"] + 1]
        elif mut == "bias_2d":
            bias_shape = [v["C_out"], 1]
        elif mut == "dtype_mismatch":
            wdtype = "float32" if dtype != "float32" else "float16"
        elif mut == "bias_dtype_mismatch":
            bias_shape = [v["C_out"]]
            bdtype = "float64" if dtype != "float64" else "float32"
        elif mut == "int_dtype":
            idtype = wdtype = bdtype = "int32"
        elif mut == "weight_on_cpu":
            wdev = "cpu"
        elif mut == "bias_on_cpu":
            bias_shape = [v["C_out"]]
            bdev = "cpu"
        elif mut == "huge_padding":
            p = [2**62] * d
        elif mut == "zero_spatial":
            ishape[2] = 0
        elif mut == "depthwise_mismatch":
            # groups == C_in but C_out not a multiple of C_in
            transposed = False
            ishape[1] = 4
            g = 4
            wshape = [6, 1] + v["k"]
            bias_shape = None
        elif mut == "transposed_cout_zero":
            transposed = True
            wshape = [ishape[1], 0] + v["k"]
            g = 1
            bias_shape = None
        elif mut == "kernel_zero":
            wshape[2] = 0
        inp = tspec(ishape, idtype, requires_grad=float_rg(rng, idtype, 0.3))
        wt = tspec(wshape, wdtype, device=wdev, requires_grad=float_rg(rng, wdtype, 0.3))
        bias = tspec(bias_shape, bdtype, device=bdev) if bias_shape is not None else None
        out.append(make_cfg("invalid", inp, wt, bias, s, p, dl, transposed, op, g,
                            random_flags(rng, 0.7), mutation=mut))
    return out


def gen_empty(rng, n):
    out = []
    subs = ["zero_batch", "zero_cin", "zero_batch_and_cin", "zero_cout", "zero_spatial_error",
            "zero_batch_transposed", "zero_cin_transposed", "zero_batch_depthwise"]
    for i in range(n):
        sub = subs[i % len(subs)]
        transposed = sub.endswith("transposed")
        v = valid_small(rng, transposed=transposed)
        dtype = rng.choice(["float16", "bfloat16", "float32", "float64", "complex64"])
        ishape, wshape = list(v["ishape"]), list(v["wshape"])
        g = v["groups"]
        if sub in ("zero_batch", "zero_batch_transposed"):
            ishape[0] = 0
        elif sub in ("zero_cin", "zero_cin_transposed"):
            ishape[1] = 0
            g = 1
            wshape = ([0, v["cout_g"]] if transposed else [v["C_out"], 0]) + v["k"]
            if rng.random() < 0.3:  # mismatched weight with zero channels
                wshape = ([0, 3] if transposed else [3, 2]) + v["k"]
        elif sub == "zero_batch_and_cin":
            ishape[0] = 0
            ishape[1] = 0
            g = 1
            wshape = [v["C_out"], 0] + v["k"]
        elif sub == "zero_cout":
            g = 1
            ishape[1] = v["cin_g"]
            wshape = [0, v["cin_g"]] + v["k"] if not transposed else [v["cin_g"], 0] + v["k"]
        elif sub == "zero_spatial_error":
            ishape[-1] = 0
        elif sub == "zero_batch_depthwise":
            transposed = False
            C = rng.choice([32, 64])
            ishape = [0, C] + v["sp"]
            wshape = [C, 1] + v["k"]
            g = C
        cout = (wshape[1] * g if transposed else wshape[0]) if len(wshape) > 1 else 1
        inp = mk(ishape, dtype, rng, rg_p=0.4)
        wt = mk(wshape, dtype, rng, rg_p=0.4, p_cl=0.2)
        bias = tspec([cout], dtype) if rng.random() < 0.4 else None
        out.append(make_cfg("empty", inp, wt, bias, v["s"], v["p"], v["dl"], transposed, v["op"], g,
                            random_flags(rng, 0.5), subfamily=sub))
    return out


def flag_combos():
    combos = []
    for en in (True, False):
        for det in (False, True):
            for bench in (False, True):
                for detalg in (False, True):
                    for dk in DEPTHWISE_KERNEL_VALUES:
                        combos.append({"cudnn_enabled": en, "cudnn_deterministic": det,
                                       "cudnn_benchmark": bench, "deterministic_algorithms": detalg,
                                       "depthwise_kernel": dk})
    return combos


def sweep_bases():
    T = tspec
    B = []
    # (name, input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    B.append(("dw_fp16_table_yes", T([32, 256, 56, 56], "float16"), T([256, 1, 3, 3], "float16"), None,
              [1, 1], [1, 1], [1, 1], False, [0, 0], 256))
    B.append(("dw_fp16_stride2_bs8_ch128", T([8, 128, 28, 28], "float16"), T([128, 1, 3, 3], "float16"), None,
              [2, 2], [1, 1], [1, 1], False, [0, 0], 128))
    B.append(("dw_fp16_small_w", T([4, 64, 6, 6], "float16"), T([64, 1, 3, 3], "float16"), None,
              [1, 1], [1, 1], [1, 1], False, [0, 0], 64))
    B.append(("dw_fp16_channels_last", T([2, 64, 14, 14], "float16", memory_format="channels_last"),
              T([64, 1, 3, 3], "float16"), None, [1, 1], [1, 1], [1, 1], False, [0, 0], 64))
    B.append(("dw_bf16", T([2, 64, 14, 14], "bfloat16"), T([64, 1, 3, 3], "bfloat16"), None,
              [1, 1], [1, 1], [1, 1], False, [0, 0], 64))
    B.append(("dw_fp32", T([2, 64, 14, 14], "float32"), T([128, 1, 5, 5], "float32"), T([128], "float32"),
              [1, 1], [2, 2], [1, 1], False, [0, 0], 64))
    B.append(("dw_fp16_dilated", T([16, 512, 28, 28], "float16"), T([512, 1, 3, 3], "float16"), None,
              [1, 1], [2, 2], [2, 2], False, [0, 0], 512))
    B.append(("dw_fp16_3d", T([2, 32, 8, 8, 8], "float16"), T([32, 1, 3, 3, 3], "float16"), None,
              [1, 1, 1], [1, 1, 1], [1, 1, 1], False, [0, 0, 0], 32))
    B.append(("fp32_dilated", T([2, 8, 20, 20], "float32"), T([16, 8, 3, 3], "float32"), None,
              [1, 1], [2, 2], [2, 2], False, [0, 0], 1))
    B.append(("fp16_dilated_cl", T([2, 8, 20, 20], "float16", memory_format="channels_last"),
              T([16, 8, 3, 3], "float16", memory_format="channels_last"), None,
              [1, 1], [2, 2], [2, 2], False, [0, 0], 1))
    B.append(("fp32_transposed_op", T([2, 8, 9, 9], "float32"), T([8, 4, 3, 3], "float32"), T([4], "float32"),
              [2, 2], [1, 1], [1, 1], True, [1, 1], 1))
    B.append(("fp32_transposed_op_big", T([2, 8, 9, 9], "float32"), T([8, 4, 3, 3], "float32"), None,
              [2, 2], [1, 1], [3, 3], True, [2, 2], 1))
    B.append(("fp32_3d", T([2, 4, 6, 6, 6], "float32"), T([8, 4, 3, 3, 3], "float32"), None,
              [1, 1, 1], [0, 0, 0], [1, 1, 1], False, [0, 0, 0], 1))
    B.append(("fp16_1d", T([4, 16, 50], "float16"), T([32, 16, 5], "float16"), None,
              [1], [2], [1], False, [0], 1))
    B.append(("fp64_2d", T([2, 3, 10, 10], "float64"), T([6, 3, 3, 3], "float64"), None,
              [1, 1], [1, 1], [1, 1], False, [0, 0], 1))
    B.append(("complex64_2d", T([2, 3, 10, 10], "complex64"), T([6, 3, 3, 3], "complex64"), None,
              [1, 1], [1, 1], [1, 1], False, [0, 0], 1))
    B.append(("huge_per_sample_expand", T([1, 1, 50000, 50000], "float16", construction="expand"),
              T([4, 1, 3, 3], "float16"), None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1))
    B.append(("huge_dw_cl_as_strided", as_strided_spec([1, 64, 6000, 6000], [0, 1, 0, 64], "float16"),
              T([64, 1, 3, 3], "float16"), None, [1, 1], [1, 1], [1, 1], False, [0, 0], 64))
    return B


def gen_sweep():
    out = []
    for bi, base in enumerate(sweep_bases()):
        name, inp, wt, bias, s, p, dl, tr, op, g = base
        for ci, c in enumerate(flag_combos()):
            f = dict(DEFAULT_FLAGS)
            f.update(c)
            f["grad_enabled"] = (ci + bi) % 2 == 0
            f["cudnn_allow_tf32"] = (ci // 2 + bi) % 2 == 0
            i2, w2 = dict(inp), dict(wt)
            i2["requires_grad"] = (ci + bi) % 3 == 0
            w2["requires_grad"] = (ci + bi) % 3 == 1
            out.append(make_cfg("flag_sweep", i2, w2, bias, s, p, dl, tr, op, g, f, subfamily=name))
    return out


def generate(limit=None):
    rng = lambda k: random.Random(SEED * 1000 + k)
    cfgs = []
    cfgs += gen_random(rng(1), 2000)
    cfgs += gen_depthwise(rng(2), 1600)
    cfgs += gen_huge(rng(3), 200)
    cfgs += gen_invalid(rng(4), 450)
    cfgs += gen_empty(rng(5), 200)
    cfgs += gen_sweep()
    if limit is not None and limit < len(cfgs):
        step = len(cfgs) / limit
        cfgs = [cfgs[int(i * step)] for i in range(limit)]
    for i, c in enumerate(cfgs):
        c["id"] = i
    return cfgs


def depthwise_grid():
    rows = []
    for N in (1, 2, 8, 16, 17, 32):
        for C in (32, 64, 128, 256, 512, 1024):
            for W in (1, 6, 7, 14, 27, 28, 56, 112):
                for H in sorted({1, W}):
                    for k in (1, 3, 5, 7):
                        for s in (1, 2):
                            rows.append((N, C, H, W, k, s))
    return rows


# ----------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------

def describe_tensor(spec, t):
    d = dict(spec)
    if t is not None:
        d["actual_stride"] = list(t.stride())
        d["is_leaf"] = t.is_leaf
    return d


def select_one(cfg):
    """Build empties, call the two selection overloads and the memory-format query."""
    rec = {k: v for k, v in cfg.items()}
    apply_flags(cfg["flags"])
    rec["flags_read_back"] = read_flags()
    caught = []
    try:
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter("always")
            try:
                inp = build_tensor(cfg["input"], fill=False)
                wt = build_tensor(cfg["weight"], fill=False)
                bias = build_tensor(cfg["bias"], fill=False) if cfg.get("bias") else None
            except Exception as e:  # noqa: BLE001
                rec["build_error"] = err_dict(e)
                return rec
            rec["input"] = describe_tensor(cfg["input"], inp)
            rec["weight"] = describe_tensor(cfg["weight"], wt)
            if bias is not None:
                rec["bias"] = describe_tensor(cfg["bias"], bias)
            args = (inp, wt, bias, cfg["stride"], cfg["padding"], cfg["dilation"],
                    cfg["transposed"], cfg["output_padding"], cfg["groups"])
            rec["select"] = run_select(args, inp, wt)
            bias_sizes = list(cfg["bias"]["shape"]) if cfg.get("bias") else None
            args_bwd = (inp, wt, None, cfg["stride"], cfg["padding"], cfg["dilation"],
                        cfg["transposed"], cfg["output_padding"], cfg["groups"], bias_sizes)
            rec["select_bias_sizes"] = run_select(args_bwd, inp, wt)
            del inp, wt, bias
            caught = [first_line(str(w.message)) for w in ws]
    finally:
        torch.set_grad_enabled(True)
    if caught:
        rec["warnings"] = sorted(set(caught))
    return rec


def run_select(args, inp, wt):
    try:
        b = torch._C._select_conv_backend(*args)
    except Exception as e:  # noqa: BLE001
        return {"error": err_dict(e)}
    bi = int(b)
    r = {"backend": bi, "backend_name": BACKEND_NAMES[bi] if 0 <= bi < len(BACKEND_NAMES) else None,
         "python_enum_name": getattr(b, "name", str(b))}
    try:
        r["memory_format"] = mf_name(torch._C._conv_determine_backend_memory_format(inp, wt, b))
    except Exception as e:  # noqa: BLE001
        r["memory_format_error"] = err_dict(e)
    return r


def forward_one(cfg):
    """Run torch.convolution for one small cfg (in the child process)."""
    apply_flags(cfg["flags"])
    try:
        torch.manual_seed(cfg["id"])
        inp = build_tensor(cfg["input"], fill=True)
        wt = build_tensor(cfg["weight"], fill=True)
        bias = build_tensor(cfg["bias"], fill=True) if cfg.get("bias") else None
    except Exception as e:  # noqa: BLE001
        return {"build_error": err_dict(e)}
    try:
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter("always")
            out = torch.convolution(inp, wt, bias, cfg["stride"], cfg["padding"], cfg["dilation"],
                                    cfg["transposed"], cfg["output_padding"], cfg["groups"])
            if out.is_cuda:
                torch.cuda.synchronize()
        r = {"shape": list(out.shape), "stride": list(out.stride()), "dtype": str(out.dtype)[6:],
             "requires_grad": out.requires_grad}
        if out.numel() > 0 and (out.dtype.is_floating_point or out.dtype.is_complex):
            r["finite"] = bool(torch.isfinite(out).all().item())
        w = sorted({first_line(str(x.message)) for x in ws})
        if w:
            r["warnings"] = w
        return r
    except Exception as e:  # noqa: BLE001
        r = {"error": err_dict(e)}
        return r
    finally:
        torch.set_grad_enabled(True)


def child_main(conn, device_map):
    DEVICE_MAP.update(device_map)
    while True:
        msg = conn.recv()
        if msg is None:
            break
        cfg = msg
        res = forward_one(cfg)
        sticky = False
        if DEVICE_MAP["cuda"] == "cuda":
            try:
                torch.cuda.synchronize()
            except Exception as e:  # noqa: BLE001
                sticky = True
                res["sticky_cuda_error"] = err_dict(e)
        conn.send(res)
        if sticky:
            os._exit(3)


class ForwardRunner:
    def __init__(self, device_map, per_case_timeout=60.0):
        self.ctx = mp.get_context("spawn")
        self.device_map = device_map
        self.timeout = per_case_timeout
        self.proc = None
        self.conn = None
        self.restarts = 0

    def _start(self):
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=child_main, args=(child, self.device_map), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        self.restarts += 1

    def _stop(self):
        if self.proc is not None:
            try:
                self.conn.send(None)
            except Exception:  # noqa: BLE001
                pass
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)
        self.proc = None

    def run(self, cfg):
        if self.proc is None or not self.proc.is_alive():
            self._start()
        try:
            self.conn.send(cfg)
            if not self.conn.poll(self.timeout):
                self.proc.kill()
                self.proc.join(5)
                self.proc = None
                return {"crash": f"timeout after {self.timeout:.0f} s"}
            res = self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            self.proc.join(5)
            code = self.proc.exitcode
            self.proc = None
            return {"crash": f"child died, exit code {code}"}
        if "sticky_cuda_error" in res:
            self.proc.join(5)
            self.proc = None
        return res

    def close(self):
        self._stop()


def environment():
    env = {
        "torch_version": torch.__version__,
        "torch_git_version": getattr(torch.version, "git_version", None),
        "cuda_version": torch.version.cuda,
        "hip_version": getattr(torch.version, "hip", None),
        "cudnn_available": torch.backends.cudnn.is_available(),
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "has_cudnn_compiled": bool(getattr(torch._C, "_has_cudnn", False)),
        "has_mkldnn": bool(getattr(torch._C, "_has_mkldnn", False)),
        "mkldnn_enabled": torch._C._get_mkldnn_enabled(),
        "nnpack_enabled": torch._C._get_nnpack_enabled() if hasattr(torch._C, "_get_nnpack_enabled") else None,
        "nnpack_available": torch._nnpack_available() if hasattr(torch, "_nnpack_available") else None,
        "xnnpack_enabled": torch._C._is_xnnpack_enabled() if hasattr(torch._C, "_is_xnnpack_enabled") else None,
        "num_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "default_flags": read_flags(),
        "has_depthwise_kernel": HAS_DEPTHWISE_KERNEL,
        "depthwise_kernel_values": DEPTHWISE_KERNEL_VALUES if HAS_DEPTHWISE_KERNEL else [],
        "deterministic_algorithms_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "fill_uninitialized_memory": getattr(getattr(torch.utils, "deterministic", None),
                                             "fill_uninitialized_memory", None),
        "env_vars": {k: v for k, v in sorted(os.environ.items())
                     if k.startswith(("TORCH_CUDNN", "CUDNN", "CUBLAS", "PYTORCH", "TORCH_", "CUDA_"))
                     and "TOKEN" not in k and "KEY" not in k},
    }
    try:
        env["cudnn_fp32_precision"] = torch.backends.cudnn.fp32_precision
        env["cudnn_conv_fp32_precision"] = torch.backends.cudnn.conv.fp32_precision
    except Exception as e:  # noqa: BLE001
        env["cudnn_fp32_precision_error"] = err_dict(e)
    try:
        env["cudnn_benchmark_limit"] = torch._C._cuda_get_cudnn_benchmark_limit()
    except Exception:  # noqa: BLE001
        env["cudnn_benchmark_limit"] = None
    if torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(0)
        env["device_capability"] = list(torch.cuda.get_device_capability(0))
        props = torch.cuda.get_device_properties(0)
        env["device_total_memory"] = props.total_memory
        env["device_multi_processor_count"] = props.multi_processor_count
    else:
        env["device_name"] = None
        env["device_capability"] = None
    if HAS_DEPTHWISE_KERNEL:
        bad = {}
        try:
            torch._C._set_cudnn_depthwise_kernel("bogus")
        except Exception as e:  # noqa: BLE001
            bad = err_dict(e)
        torch._C._set_cudnn_depthwise_kernel("auto")
        env["depthwise_kernel_bad_value_error"] = bad
    env["cudnn_module_attrs"] = sorted(a for a in dir(type(torch.backends.cudnn)) if not a.startswith("_"))
    env["cudnn_flags_signature"] = str(__import__("inspect").signature(torch.backends.cudnn.flags))
    return env


def run_grid(limit=None):
    rows_in = depthwise_grid()
    if limit is not None:
        rows_in = rows_in[:: max(1, len(rows_in) // limit)][:limit]
    apply_flags(DEFAULT_FLAGS)
    rows = []
    for (N, C, H, W, k, s) in rows_in:
        inp = torch.empty([N, C, H, W], dtype=torch.float16, device=DEVICE_MAP["cuda"])
        wt = torch.empty([C, 1, k, k], dtype=torch.float16, device=DEVICE_MAP["cuda"])
        p = k // 2
        r = run_select((inp, wt, None, [s, s], [p, p], [1, 1], False, [0, 0], C), inp, wt)
        if "error" in r:
            rows.append([N, C, H, W, k, s, p, None, None, None, r["error"]["message"]])
        else:
            rows.append([N, C, H, W, k, s, p, r["backend"], r["backend_name"], r.get("memory_format"), None])
    return {
        "description": "fp16 NCHW contiguous depthwise (C_out == C_in == groups), input [N, C, H, W], "
                       "weight [C, 1, k, k], stride [s, s], padding [k//2, k//2], dilation [1, 1], "
                       "no bias, default flags; forward selection overload",
        "flags": read_flags(),
        "columns": ["batch", "channels", "H", "W", "kernel", "stride", "padding", "backend",
                    "backend_name", "memory_format", "error"],
        "rows": rows,
    }


def write_out(path, doc):
    tmp = path + ".tmp"
    if path.endswith(".gz"):
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            dump(doc, f)
    else:
        with open(tmp, "w", encoding="utf-8") as f:
            dump(doc, f)
    os.replace(tmp, path)


def dump(doc, f):
    """JSON with one record (and one grid row) per line: compact but diffable."""
    f.write("{\n")
    keys = list(doc.keys())
    for i, k in enumerate(keys):
        v = doc[k]
        f.write(json.dumps(k) + ": ")
        if k == "records":
            f.write("[\n")
            for j, r in enumerate(v):
                f.write(json.dumps(r, separators=(",", ":"), sort_keys=True))
                f.write(",\n" if j + 1 < len(v) else "\n")
            f.write("]")
        elif k == "depthwise_grid":
            f.write("{\n")
            gk = list(v.keys())
            for a, kk in enumerate(gk):
                f.write(json.dumps(kk) + ": ")
                if kk == "rows":
                    f.write("[\n")
                    for j, r in enumerate(v[kk]):
                        f.write(json.dumps(r, separators=(",", ":")))
                        f.write(",\n" if j + 1 < len(v[kk]) else "\n")
                    f.write("]")
                else:
                    f.write(json.dumps(v[kk], sort_keys=True))
                f.write(",\n" if a + 1 < len(gk) else "\n")
            f.write("}")
        else:
            f.write(json.dumps(v, sort_keys=True))
        f.write(",\n" if i + 1 < len(keys) else "\n")
    f.write("}\n")


def summarize(doc):
    from collections import Counter
    recs = doc["records"]
    sel = Counter()
    err = Counter()
    fam = Counter()
    fwd = Counter()
    for r in recs:
        fam[r["family"]] += 1
        s = r.get("select", {})
        if "backend_name" in s:
            sel[s["backend_name"]] += 1
        elif "error" in s:
            err[s["error"]["message"][:90]] += 1
        else:
            sel["<build_error>"] += 1
        f = r.get("forward")
        if f is None:
            fwd["not run"] += 1
        elif "shape" in f:
            fwd["ok"] += 1
        elif "error" in f:
            fwd["error: " + f["error"]["message"][:70]] += 1
        else:
            fwd[str(sorted(f.keys()))] += 1
    print("families:", dict(fam))
    print("backends:", dict(sel.most_common()))
    print("selection errors (%d kinds):" % len(err))
    for m, c in err.most_common(40):
        print("  %5d  %s" % (c, m))
    print("forward:")
    for m, c in fwd.most_common(30):
        print("  %5d  %s" % (c, m))
    g = Counter(row[8] or ("error: " + str(row[10])[:60]) for row in doc["depthwise_grid"]["rows"])
    print("grid:", dict(g))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--limit", type=int, default=None, help="record only this many configurations")
    ap.add_argument("--forward-budget", type=float, default=180.0,
                    help="seconds allowed for the forward (torch.convolution) phase")
    ap.add_argument("--no-forward", action="store_true")
    args = ap.parse_args()

    if args.device == "cpu":
        DEVICE_MAP["cuda"] = "cpu"
    elif not torch.cuda.is_available():
        sys.exit("CUDA is not available; use --device cpu for a dry run")

    t0 = time.time()
    doc = {
        "format_version": FORMAT_VERSION,
        "generator": {"script": "tools/record_cuda.py", "seed": SEED, "argv": sys.argv[1:],
                      "dry_run_on_cpu": args.device == "cpu", "limit": args.limit},
        "backend_names": BACKEND_NAMES,
        "environment": environment(),
    }
    cfgs = generate(args.limit)
    print("generated %d configurations in %.1fs" % (len(cfgs), time.time() - t0), flush=True)

    records = []
    t1 = time.time()
    for i, cfg in enumerate(cfgs):
        try:
            records.append(select_one(cfg))
        except Exception as e:  # noqa: BLE001  (should not happen; keep going)
            rec = dict(cfg)
            rec["internal_error"] = err_dict(e)
            rec["traceback"] = traceback.format_exc()[-2000:]
            records.append(rec)
        if cfg["family"] == "huge" and DEVICE_MAP["cuda"] == "cuda":
            torch.cuda.empty_cache()
        if (i + 1) % 1000 == 0:
            print("  selected %d / %d (%.1fs)" % (i + 1, len(cfgs), time.time() - t1), flush=True)
    apply_flags(DEFAULT_FLAGS)
    doc["records"] = records
    t2 = time.time()
    doc["depthwise_grid"] = run_grid(args.limit)
    t3 = time.time()
    doc["timing_s"] = {"select": round(t2 - t1, 2), "grid": round(t3 - t2, 2)}
    write_out(args.out, doc)
    print(f"selection phase written ({t2 - t1:.1f}s select, {t3 - t2:.1f}s grid)", flush=True)

    # forward runs in a child process, in a shuffled order so that a budget cut is unbiased
    if not args.no_forward:
        if DEVICE_MAP["cuda"] == "cuda":
            torch.cuda.empty_cache()
        elig = [r["id"] for r in records if "build_error" not in r and forward_eligible(r)]
        random.Random(SEED).shuffle(elig)
        runner = ForwardRunner(dict(DEVICE_MAP))
        t4 = time.time()
        done = 0
        by_id = {r["id"]: r for r in records}
        fwd_keys = ("family", "input", "weight", "bias", "stride", "padding", "dilation",
                    "transposed", "output_padding", "groups", "flags", "id")
        for rid in elig:
            if time.time() - t4 > args.forward_budget:
                by_id[rid]["forward"] = {"skipped": "time budget"}
                continue
            cfg = {k: by_id[rid][k] for k in fwd_keys if k in by_id[rid]}
            by_id[rid]["forward"] = runner.run(cfg)
            done += 1
            if done % 500 == 0:
                print("  forward %d / %d (%.1fs)" % (done, len(elig), time.time() - t4), flush=True)
        runner.close()
        doc["timing_s"]["forward"] = round(time.time() - t4, 2)
        doc["forward_info"] = {"eligible": len(elig), "run": done, "child_starts": runner.restarts,
                               "rule": "input, weight, bias and estimated output each <= 1e6 elements"}
        write_out(args.out, doc)
    doc["timing_s"]["total"] = round(time.time() - t0, 2)
    write_out(args.out, doc)
    summarize(doc)
    print("total %.1fs; wrote %s (%d bytes)" % (time.time() - t0, args.out, os.path.getsize(args.out)))


if __name__ == "__main__":
    main()
