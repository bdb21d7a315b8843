"""Hypothesis strategies for differential cases: valid and invalid convolution arguments.

Cases are JSON-able dicts (``tests/oracle.py`` builds tensors from them). Most cases are built
valid and then, with some probability, mutated in one argument (mismatched channels or ranks,
negative or zero parameters, too-big output_padding, kernel larger than input, ...).
"""

from __future__ import annotations

from hypothesis import strategies as st

DTYPES = ["float32", "float32", "float32", "float64", "bfloat16", "float16", "complex64"]
# dtypes the kernel mutations draw from (execute=True only: selection draws are unchanged)
KERNEL_DTYPES = ["float32", "float64", "bfloat16", "float16", "complex64", "complex128", "int64"]


@st.composite
def conv_case(draw, *, allow_invalid: bool = True, allow_huge: bool = True, execute: bool = False):
    d = draw(st.sampled_from([1, 2, 2, 2, 3]))
    transposed = draw(st.booleans())
    groups = draw(st.sampled_from([1, 1, 1, 2, 3, 4]))
    depthwise = draw(st.booleans()) and not transposed
    cin_per_group = 1 if depthwise else draw(st.integers(1, 3))
    mult = draw(st.integers(1, 3))
    cin = cin_per_group * groups
    cout = groups * mult
    n = draw(st.sampled_from([0, 1, 1, 2, 3, 16, 17, 32]))
    kernel = [draw(st.sampled_from([1, 1, 2, 3, 3, 4, 5, 17])) for _ in range(d)]
    stride = [draw(st.sampled_from([1, 1, 2, 3])) for _ in range(d)]
    dilation = [draw(st.sampled_from([1, 1, 1, 2])) for _ in range(d)]
    padding = [draw(st.integers(0, 3)) for _ in range(d)]
    output_padding = ([draw(st.integers(0, max(0, s - 1))) for s in stride] if transposed
                      else [0] * d)
    spatial = []
    for i in range(d):
        need = dilation[i] * (kernel[i] - 1) + 1 - 2 * padding[i]
        spatial.append(max(1, need) + draw(st.integers(0, 9)))
    if transposed:
        wshape = [cin, cout // groups] + kernel
    else:
        wshape = [cout, cin // groups] + kernel
    ishape = [n, cin] + spatial
    dtype = draw(st.sampled_from(DTYPES))
    mf_in = "contiguous"
    mf_w = "contiguous"
    if d == 2 and draw(st.integers(0, 3)) == 0:
        mf_in = "channels_last"
    if d == 2 and draw(st.integers(0, 5)) == 0:
        mf_w = "channels_last"
    if d == 3 and draw(st.integers(0, 5)) == 0:
        mf_in = "channels_last_3d"
    rg = draw(st.booleans())
    has_bias = draw(st.booleans())
    bias_n = (cout if not transposed else (cout // groups) * groups)
    case = {
        "input": {"shape": ishape, "dtype": dtype, "memory_format": mf_in, "requires_grad": rg},
        "weight": {"shape": wshape, "dtype": dtype, "memory_format": mf_w,
                   "requires_grad": draw(st.booleans())},
        "bias": {"shape": [bias_n], "dtype": dtype} if has_bias else None,
        "stride": _maybe_short(draw, stride), "padding": _maybe_short(draw, padding),
        "dilation": _maybe_short(draw, dilation), "transposed": transposed,
        "output_padding": _maybe_short(draw, output_padding), "groups": groups,
        "flags": {"threads": draw(st.sampled_from([1, 2])), "mkldnn": draw(st.booleans()) or True,
                  "nnpack": draw(st.sampled_from([True, True, False])),
                  "cudnn": draw(st.booleans()), "grad": draw(st.sampled_from([True, True, False])),
                  "deterministic": draw(st.booleans())},
    }
    if draw(st.integers(0, 4)) == 0:
        case["flags"]["mkldnn"] = False
    if allow_invalid and draw(st.integers(0, 2)) == 0:
        _mutate(draw, case)
        if execute and draw(st.integers(0, 1)) == 0:
            _mutate_kernel(draw, case)
    elif execute and allow_invalid and draw(st.integers(0, 3)) == 0:
        _mutate_kernel(draw, case)
    if allow_huge and not execute and draw(st.integers(0, 15)) == 0:
        _hugify(draw, case)
    if execute:
        _cap_execution_cost(case)
    if d == 2 and ishape and len(case["input"]["shape"]) != 4:
        case["input"]["memory_format"] = "contiguous"
    for key in ("input", "weight"):
        t = case[key]
        if t["memory_format"] == "channels_last" and len(t["shape"]) != 4:
            t["memory_format"] = "contiguous"
        if t["memory_format"] == "channels_last_3d" and len(t["shape"]) != 5:
            t["memory_format"] = "contiguous"
    return case


def _maybe_short(draw, xs):
    if len(set(xs)) == 1 and draw(st.booleans()):
        return [xs[0]]
    return list(xs)


def _mutate(draw, case):
    kind = draw(st.sampled_from([
        "channels", "groups", "groups0", "rank", "unbatched", "neg_padding", "zero_stride",
        "neg_stride", "zero_dilation", "neg_dilation", "big_output_padding", "neg_output_padding",
        "kernel_too_big", "bias_shape", "bias_rank", "param_len", "zero_channels", "zero_spatial",
        "dtype_mismatch", "bias_dtype", "huge_padding", "weight_rank2", "transposed_small",
    ]))
    inp, w = case["input"], case["weight"]
    d = len(w["shape"]) - 2
    if kind == "channels":
        inp["shape"][1] += draw(st.integers(1, 3))
    elif kind == "groups":
        case["groups"] = draw(st.integers(2, 7))
    elif kind == "groups0":
        case["groups"] = draw(st.sampled_from([0, -1]))
    elif kind == "rank":
        w["shape"] = w["shape"] + [2]
    elif kind == "unbatched":
        inp["shape"] = inp["shape"][1:]
    elif kind == "neg_padding":
        case["padding"] = [-1] * d
    elif kind == "zero_stride":
        case["stride"] = [0] * d
    elif kind == "neg_stride":
        case["stride"] = [-2]
    elif kind == "zero_dilation":
        case["dilation"] = [draw(st.sampled_from([0, 1])) for _ in range(d - 1)] + [0]
    elif kind == "neg_dilation":
        case["dilation"] = [-1]
    elif kind == "big_output_padding":
        case["output_padding"] = [draw(st.integers(1, 4))] * d
    elif kind == "neg_output_padding":
        case["output_padding"] = [-1] * d
    elif kind == "kernel_too_big":
        w["shape"][-1] = inp["shape"][-1] + 2 * (case["padding"][-1]) + draw(st.integers(1, 3))
    elif kind == "bias_shape":
        case["bias"] = {"shape": [draw(st.integers(0, 9))], "dtype": inp["dtype"]}
    elif kind == "bias_rank":
        case["bias"] = {"shape": [1, 2], "dtype": inp["dtype"]}
    elif kind == "param_len":
        case["stride"] = [1] * (d + 1)
    elif kind == "zero_channels":
        inp["shape"][1] = 0
        w["shape"][0 if case["transposed"] else 1] = 0
        if case["transposed"]:
            w["shape"][0] = 0
    elif kind == "zero_spatial":
        inp["shape"][-1] = 0
    elif kind == "dtype_mismatch":
        w["dtype"] = draw(st.sampled_from(["float64", "float32", "bfloat16", "float16"]))
    elif kind == "bias_dtype":
        if case["bias"] is None:
            case["bias"] = {"shape": [w["shape"][0]], "dtype": "float64"}
        else:
            case["bias"]["dtype"] = "float64"
    elif kind == "huge_padding":
        case["padding"] = [draw(st.sampled_from([2**62 - 1, 2**62, 2**62 + 5]))] * d
    elif kind == "weight_rank2":
        w["shape"] = w["shape"][:2]
        inp["shape"] = inp["shape"][:2]
    elif kind == "transposed_small":
        case["transposed"] = True
        case["padding"] = [draw(st.integers(2, 6))] * d
        case["output_padding"] = [0] * d
        case["stride"] = [1] * d
        case["dilation"] = [1] * d
        inp["shape"][1] = w["shape"][0]
        case["bias"] = None
    case["mutation"] = kind


def _hugify(draw, case):
    """Make the input exceed 2**31 elements per sample (built with as_strided, no memory)."""
    inp = case["input"]
    if len(inp["shape"]) < 4 or inp["shape"][0] == 0:
        return
    inp["shape"][-1] = inp["shape"][-1] * draw(st.sampled_from([2**22, 2**27, 2**31]))
    inp["memory_format"] = "contiguous"
    case["huge"] = True


def _mutate_kernel(draw, case):
    """Mutations aimed at the kernels that run after selection (``execute=True`` only, so the
    selection tests draw exactly the cases they always drew): dtype mixes, zero kernel sizes,
    zero output channels, dilation 0, paddings that wrap in C++ ``int``, 1-D and unit sizes."""
    kind = draw(st.sampled_from([
        "weight_dtype", "bias_dtype", "all_dtype", "zero_kernel", "zero_out_channels",
        "zero_dilation_t", "int32_padding", "big_output_padding_t", "unit_spatial",
        "requires_grad", "padding_eats_output",
    ]))
    inp, w = case["input"], case["weight"]
    d = len(w["shape"]) - 2
    if d < 1 or len(inp["shape"]) < 2:
        return
    if kind == "weight_dtype":
        w["dtype"] = draw(st.sampled_from(KERNEL_DTYPES))
    elif kind == "bias_dtype":
        groups = case["groups"] if case["groups"] > 0 else 1  # after the groups0 mutation
        n = w["shape"][1] * groups if case["transposed"] else w["shape"][0]
        b = case["bias"] or {"shape": [n]}
        b["dtype"] = draw(st.sampled_from(KERNEL_DTYPES))
        case["bias"] = b
    elif kind == "all_dtype":
        dt = draw(st.sampled_from(KERNEL_DTYPES))
        for t in (inp, w, case["bias"]):
            if t is not None:
                t["dtype"] = dt
    elif kind == "zero_kernel":
        w["shape"][2 + draw(st.integers(0, d - 1))] = 0
    elif kind == "zero_out_channels":
        case["transposed"] = True
        case["output_padding"] = [0]
        case["stride"] = [max(1, s) for s in case["stride"]]
        inp["shape"][1] = w["shape"][0]
        w["shape"][1] = 0
        if case["bias"] is not None:
            case["bias"]["shape"] = [0]
    elif kind == "zero_dilation_t":
        case["transposed"] = True
        inp["shape"][1] = w["shape"][0]
        case["bias"] = None
        case["dilation"] = [draw(st.sampled_from([0, 1, 2])) for _ in range(d - 1)] + [0]
        case["output_padding"] = [0]
    elif kind == "int32_padding":
        # C++ int truncation in the slow transposed kernels' shape checks
        case["transposed"] = True
        inp["shape"][1] = w["shape"][0]
        case["bias"] = None
        case["output_padding"] = [0]
        case["padding"] = [draw(st.sampled_from([2**31 - 1, 2**31, 2**32, 2**32 + 1,
                                                 2**33 + 3]))] * d
    elif kind == "big_output_padding_t":
        case["transposed"] = True
        inp["shape"][1] = w["shape"][0]
        case["bias"] = None
        case["output_padding"] = [draw(st.integers(0, 3)) for _ in range(d)]
        case["dilation"] = [draw(st.integers(1, 3)) for _ in range(d)]
        case["stride"] = [draw(st.integers(1, 3)) for _ in range(d)]
    elif kind == "unit_spatial":
        for i in range(2, len(inp["shape"])):
            inp["shape"][i] = 1
    elif kind == "requires_grad":
        inp["requires_grad"] = True
        case["flags"]["grad"] = True
    elif kind == "padding_eats_output":
        # transposed outputs of size <= 0 (slow kernels refuse, oneDNN varies)
        case["transposed"] = True
        inp["shape"][1] = w["shape"][0]
        case["bias"] = None
        case["output_padding"] = [0]
        case["padding"] = [draw(st.integers(0, 12)) for _ in range(d)]
    for t in (inp, w, case["bias"]):
        if t is not None and t.get("dtype") == "int64":
            t["requires_grad"] = False  # only floating point tensors can require grad
    case["kernel_mutation"] = kind


EXECUTION_BUDGET = 4 * 10**6  # multiply-adds (weighted by dtype) a drawn execution may cost
_SLOW_DTYPES = {"bfloat16": 8, "float16": 8, "int64": 4, "complex64": 4, "complex128": 4}


def _execution_cost(case) -> int:
    inp, w = case["input"]["shape"], case["weight"]["shape"]
    if len(inp) < 3 or len(w) < 3:
        return 0
    n, c = inp[0], inp[1]
    spatial = 1
    for x in inp[2:]:
        spatial *= max(x, 0)
    if case["transposed"]:
        for s in case["stride"]:
            spatial *= max(1, min(s, 4))
    kern = 1
    for k in w[2:]:
        kern *= max(k, 0)
    groups = max(1, case["groups"]) if isinstance(case["groups"], int) else 1
    cout = w[1] * groups if case["transposed"] else w[0]
    cost = n * c * max(cout, 1) * kern * spatial // groups
    return cost * _SLOW_DTYPES.get(case["input"].get("dtype", "float32"), 1)


def _cap_execution_cost(case) -> None:
    """Keep executed cases cheap (the slow bf16/fp16 kernels run ~100x slower than BLAS):
    over the budget, the batch becomes 1, then each spatial size shrinks towards the smallest
    size its kernel allows. No draws: the same data always gives the same case."""
    if _execution_cost(case) <= EXECUTION_BUDGET:
        return
    inp = case["input"]["shape"]
    if inp and inp[0] > 1:
        inp[0] = 1
    w = case["weight"]["shape"]
    d = len(w) - 2
    for i in range(2, len(inp)):
        if _execution_cost(case) <= EXECUTION_BUDGET:
            return
        j = i - 2
        k = w[2 + j] if 2 + j < len(w) else 1

        def at(xs, j=j):
            return xs[j] if len(xs) > j else xs[0] if xs else 1
        dil, pad = at(case["dilation"]), at(case["padding"])
        need = 1 if case["transposed"] else dil * (k - 1) + 1 - 2 * pad
        if inp[i] > max(1, need):
            inp[i] = max(1, need)
    del d
