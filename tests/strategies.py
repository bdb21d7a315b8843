"""Hypothesis strategies for differential cases: valid and invalid convolution arguments.

Cases are JSON-able dicts (``tests/oracle.py`` builds tensors from them). Most cases are built
valid and then, with some probability, mutated in one argument (mismatched channels or ranks,
negative or zero parameters, too-big output_padding, kernel larger than input, ...).
"""

from __future__ import annotations

from hypothesis import strategies as st

DTYPES = ["float32", "float32", "float32", "float64", "bfloat16", "float16", "complex64"]


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
    output_padding = [draw(st.integers(0, max(0, s - 1))) for s in stride] if transposed else [0] * d
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
    if allow_huge and not execute and draw(st.integers(0, 15)) == 0:
        _hugify(draw, case)
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
