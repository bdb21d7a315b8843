"""Differential tests of symconv.module_output / check_module_args / functional.pad against torch.

Hypothesis draws nn.Conv1d/2d/3d, nn.ConvTranspose1d/2d/3d and their lazy variants, valid and
invalid constructor arguments (groups, channel divisibility, padding strings, 'same' with
strides, padding modes, negative sizes), inputs (batched, unbatched, wrong rank or channels,
sizes that reflect/circular padding cannot handle, zero sizes, other dtypes) and ConvTranspose
``output_size`` values (in range, out of range, with the batch dimensions, of the wrong length).
symconv must give torch's output (shape, dtype, layout flags, requires_grad) or torch's
exception type and first line, both from a ModuleSpec (check_module_args) and from a real module
instance read as specs. ``F.pad`` itself is drawn separately (every mode, pad lengths, negative
pads, zero sizes, memory formats).

Module constructors run in-process (they run no convolution); forward calls run in the worker.
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, reject, settings
from hypothesis import strategies as st

import symconv
from symconv import TensorSpec
from symconv import functional as SF
from tests import oracle_functional as O
from tests.test_functional import _t, check_case, tensor_dict

DEFAULT_MODULE_EXAMPLES = 450
DEFAULT_PAD_EXAMPLES = 300
SLOW_MODULE_EXAMPLES = 8000
SLOW_PAD_EXAMPLES = 3000

CLASSES = list(symconv.modules.MODULE_CLASSES)
MODULE_DTYPES = ["float32"] * 5 + ["float64", "bfloat16"]


def _ntuple(x, n):
    return list(x) if isinstance(x, (list, tuple)) else [x] * n


def _param(draw, values, n):
    """An int or a per-dimension tuple, as users pass module parameters."""
    if draw(st.booleans()):
        return draw(st.sampled_from(values))
    return [draw(st.sampled_from(values)) for _ in range(n)]


@st.composite
def module_case(draw, *, allow_invalid: bool = True):
    cls = draw(st.sampled_from(CLASSES))
    n, transposed, lazy = symconv.modules.MODULE_CLASSES[cls]
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    kernel = _param(draw, [1, 2, 3, 3, 4], n)
    dilation = _param(draw, [1, 1, 1, 2], n)
    string_padding = None
    if not transposed and draw(st.integers(0, 4)) == 0:
        string_padding = draw(st.sampled_from(["same", "same", "valid"]))
    stride = 1 if string_padding == "same" else _param(draw, [1, 1, 2, 3], n)
    padding = string_padding if string_padding else _param(draw, [0, 0, 1, 2, 3], n)
    padding_mode = "zeros"
    if not transposed and draw(st.booleans()):
        padding_mode = draw(st.sampled_from(["reflect", "replicate", "circular"]))
    dtype = draw(st.sampled_from(MODULE_DTYPES))
    bias = draw(st.booleans())
    ctor = {"out_channels": cout, "kernel_size": kernel, "stride": stride, "padding": padding,
            "dilation": dilation, "groups": groups, "bias": bias, "padding_mode": padding_mode,
            "dtype": dtype}
    if not lazy:
        ctor["in_channels"] = cin
    ks, ss, ds = _ntuple(kernel, n), _ntuple(stride, n), _ntuple(dilation, n)
    ps = [0] * n if string_padding else _ntuple(padding, n)
    output_padding = [0] * n
    if transposed:
        output_padding = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(ss, ds)]
        ctor["output_padding"] = output_padding if draw(st.booleans()) or \
            len(set(output_padding)) > 1 else output_padding[0]
    # input sizes that the padding mode and the convolution accept
    spatial = []
    for i in range(n):
        eff = ds[i] * (ks[i] - 1) + 1
        if transposed:
            lo = 1
            while (lo - 1) * ss[i] - 2 * ps[i] + eff + output_padding[i] < 1:
                lo += 1
        else:
            lo = max(1, eff - 2 * ps[i])
            if padding_mode == "reflect":
                pad = max(ps[i], eff // 2 + 1) if string_padding == "same" else ps[i]
                lo = max(lo, pad + 1)
            elif padding_mode == "circular":
                lo = max(lo, ps[i], eff // 2 + 1 if string_padding == "same" else 0)
        spatial.append(lo + draw(st.integers(0, 4)))
    batched = draw(st.integers(0, 4)) != 0
    batch = draw(st.sampled_from([0, 1, 1, 2, 3]))
    shape = ([batch] if batched else []) + [cin] + spatial
    case = {"kind": "module", "cls": cls, "ctor": ctor,
            "module_mf": "contiguous",
            "input": tensor_dict(draw, shape, dtype, n_spatial=n, batched=batched),
            "output_size": None,
            "flags": {"threads": draw(st.sampled_from([1, 2])),
                      "mkldnn": draw(st.integers(0, 4)) != 0,
                      "grad": draw(st.sampled_from([True, True, False]))}}
    if not lazy and n in (2, 3) and draw(st.integers(0, 5)) == 0:
        case["module_mf"] = "channels_last" if n == 2 else "channels_last_3d"
    if transposed and draw(st.booleans()):
        lo = [(spatial[i] - 1) * ss[i] - 2 * ps[i] + ds[i] * (ks[i] - 1) + 1 for i in range(n)]
        out = [lo[i] + draw(st.integers(0, ss[i] - 1)) for i in range(n)]
        if draw(st.integers(0, 2)) == 0:
            out = shape[:-n] + out  # with the batch / channel dimensions
        case["output_size"] = out
    if allow_invalid and draw(st.integers(0, 2)) == 0:
        _mutate(draw, case, n, transposed, lazy)
    _fix(case)
    return case


MUTATIONS = ["groups_nonpos", "in_not_divisible", "out_not_divisible", "padding_string",
             "same_strided", "padding_mode_bad", "transpose_padding_mode", "negative_channels",
             "rank", "channels", "reflect_too_big", "circular_wrap", "zero_spatial",
             "input_dtype", "output_size_range", "output_size_len", "negative_padding",
             "zero_channels", "kernel_zero"]


def _mutate(draw, case, n, transposed, lazy):
    kind = draw(st.sampled_from(MUTATIONS))
    c, inp = case["ctor"], case["input"]
    ci = 1 if len(inp["shape"]) == n + 2 else 0
    if kind == "groups_nonpos":
        c["groups"] = draw(st.sampled_from([0, -1]))
    elif kind == "in_not_divisible":
        if lazy:
            c["groups"] = 2
            inp["shape"][ci] = 3
        else:
            c["in_channels"] = c["groups"] * 2 + 1 if c["groups"] > 1 else 3
            c["groups"] = max(c["groups"], 2)
    elif kind == "out_not_divisible":
        c["groups"] = 2
        c["out_channels"] = 3
        if not lazy:
            c["in_channels"] = 2
        inp["shape"][ci] = 2
    elif kind == "padding_string" and not transposed:
        c["padding"] = draw(st.sampled_from(["foo", "Same", "valid", "same"]))
    elif kind == "same_strided" and not transposed:
        c["padding"] = "same"
        c["stride"] = 2
    elif kind == "padding_mode_bad":
        c["padding_mode"] = draw(st.sampled_from(["zero", "reflection", "Circular"]))
    elif kind == "transpose_padding_mode" and transposed:
        c["padding_mode"] = draw(st.sampled_from(["reflect", "circular", "bad"]))
    elif kind == "negative_channels":
        key = "out_channels" if lazy or draw(st.booleans()) else "in_channels"
        c[key] = -c["groups"]
    elif kind == "rank":
        inp["shape"] = draw(st.sampled_from([[1] + inp["shape"], inp["shape"][1:] or [1]]))
    elif kind == "channels":
        inp["shape"][ci] += draw(st.integers(1, 2))
    elif kind == "reflect_too_big" and not transposed:
        c["padding_mode"] = "reflect"
        if isinstance(c["padding"], str):
            c["padding"] = 0
        c["padding"] = _ntuple(c["padding"], n)
        c["padding"][-1] = inp["shape"][-1] + draw(st.integers(0, 2))
    elif kind == "circular_wrap" and not transposed:
        c["padding_mode"] = "circular"
        c["padding"] = [0] * n
        c["padding"][-1] = inp["shape"][-1] + draw(st.integers(1, 2))
    elif kind == "zero_spatial":
        inp["shape"][-1] = 0
    elif kind == "input_dtype":
        # F.conv*d's bias check where it applies, else the kernel's type checks
        inp["dtype"] = draw(st.sampled_from([d for d in ("float32", "float64", "bfloat16",
                                                         "complex64")
                                             if d != inp["dtype"]]))
    elif kind == "output_size_range" and transposed:
        out = case["output_size"] or [3] * n
        out = list(out)
        out[-1] += draw(st.sampled_from([-3, -1, 5, 40]))
        case["output_size"] = out
    elif kind == "output_size_len" and transposed:
        case["output_size"] = [5] * draw(st.sampled_from([1, n + 3, n + 1]))
    elif kind == "negative_padding" and not isinstance(c["padding"], str):
        c["padding"] = -1
    elif kind == "zero_channels":
        inp["shape"][ci] = 0
        if not lazy:
            c["in_channels"] = 0
    elif kind == "kernel_zero":
        c["kernel_size"] = 0
    case["mutation"] = kind


def _fix(case):
    t = case["input"]
    nd = len(t["shape"])
    if (t["memory_format"] == "channels_last" and nd != 4) or \
            (t["memory_format"] == "channels_last_3d" and nd != 5):
        t["memory_format"] = "contiguous"
    if t.get("strides") is not None and len(t["strides"]) != nd:
        t.pop("strides")
    if t["dtype"] in ("int64",):
        t["requires_grad"] = False


@st.composite
def pad_case(draw):
    nd = draw(st.integers(1, 6))
    shape = [draw(st.sampled_from([0, 1, 2, 3, 4, 5])) for _ in range(nd)]
    npad = draw(st.sampled_from([2, 2, 4, 4, 6, 6, 1, 3, 8]))
    pad = [draw(st.sampled_from([0, 0, 1, 1, 2, 3, 4, -1, -2, -3])) for _ in range(npad)]
    mode = draw(st.sampled_from(["constant", "reflect", "reflect", "replicate", "replicate",
                                 "circular", "circular", "symmetric"]))
    value = draw(st.sampled_from([None, None, None, 0.0, 1.5]))
    dtype = draw(st.sampled_from(["float32", "float64", "bfloat16"]))
    t = tensor_dict(draw, shape, dtype, n_spatial=max(nd - 2, 1), batched=True)
    return {"kind": "pad", "input": t, "pad": pad, "mode": mode, "value": value,
            "flags": {"grad": draw(st.booleans())}}


# --------------------------------------------------------------------------------------


MODULE_REGRESSIONS = [
    # reflect padding not smaller than the input (F.pad's error through the module)
    {"kind": "module", "cls": "Conv2d", "ctor": {"in_channels": 2, "out_channels": 3,
     "kernel_size": 3, "padding": 4, "padding_mode": "reflect"}, "input": _t([1, 2, 4, 6]),
     "output_size": None},
    # output_size out of range: _output_padding's ValueError
    {"kind": "module", "cls": "ConvTranspose2d", "ctor": {"in_channels": 2, "out_channels": 3,
     "kernel_size": 3, "stride": 2, "padding": 1}, "input": _t([1, 2, 6, 6]),
     "output_size": [14, 12]},
    # output_size with the batch and channel dimensions
    {"kind": "module", "cls": "ConvTranspose1d", "ctor": {"in_channels": 2, "out_channels": 4,
     "kernel_size": 3, "stride": 2}, "input": _t([3, 2, 5]), "output_size": [3, 4, 12]},
    # unbatched input to a ConvTranspose3d: output_size's message prints input.size()[2:]
    {"kind": "module", "cls": "ConvTranspose3d", "ctor": {"in_channels": 2, "out_channels": 2,
     "kernel_size": 2, "stride": 3}, "input": _t([2, 3, 3, 3]), "output_size": [9, 9, 20]},
    # the lazy module names its class and prints torch.Size
    {"kind": "module", "cls": "LazyConv2d", "ctor": {"out_channels": 3, "kernel_size": 3},
     "input": _t([2, 3, 8, 8, 8]), "output_size": None},
    # lazy: in_channels from the input, then divisibility
    {"kind": "module", "cls": "LazyConvTranspose1d", "ctor": {"out_channels": 4,
     "kernel_size": 3, "groups": 2}, "input": _t([3, 7]), "output_size": None},
    # the constructor's messages (padding='same' with a stride; a bad padding_mode)
    {"kind": "module", "cls": "Conv3d", "ctor": {"in_channels": 2, "out_channels": 2,
     "kernel_size": 3, "stride": 2, "padding": "same"}, "input": _t([1, 2, 5, 5, 5]),
     "output_size": None},
    {"kind": "module", "cls": "Conv1d", "ctor": {"in_channels": 2, "out_channels": 2,
     "kernel_size": 3, "padding_mode": "reflection"}, "input": _t([1, 2, 5]),
     "output_size": None},
    # ConvTranspose refuses padding modes in its constructor, with its class name
    {"kind": "module", "cls": "ConvTranspose2d", "ctor": {"in_channels": 2, "out_channels": 2,
     "kernel_size": 3, "padding_mode": "circular"}, "input": _t([1, 2, 5, 5]),
     "output_size": None},
    # circular padding that wraps around more than once
    {"kind": "module", "cls": "Conv1d", "ctor": {"in_channels": 1, "out_channels": 1,
     "kernel_size": 1, "padding": 4, "padding_mode": "circular"}, "input": _t([1, 1, 3]),
     "output_size": None},
    # 'same' with reflect: the module pads total//2 left, the rest right
    {"kind": "module", "cls": "Conv2d", "ctor": {"in_channels": 1, "out_channels": 1,
     "kernel_size": [2, 4], "padding": "same", "padding_mode": "reflect"},
     "input": _t([1, 1, 5, 5]), "output_size": None},
    # a grouped slow kernel writes each group's output in its own layout, then at::cat: here
    # contiguous although the backend memory format is channels-last
    {"kind": "module", "cls": "Conv2d", "ctor": {"in_channels": 3, "out_channels": 3,
     "kernel_size": 1, "padding": 3, "groups": 3, "dtype": "bfloat16"},
     "module_mf": "channels_last", "input": _t([3, 3, 1, 1], "bfloat16",
                                               memory_format="channels_last"),
     "output_size": None, "flags": {"threads": 2}},
    # zero kernel and zero batch: the Empty path indexes the empty weight (select())
    {"kind": "module", "cls": "Conv2d", "ctor": {"in_channels": 2, "out_channels": 3,
     "kernel_size": 0, "stride": [2, 1], "padding": 3, "dtype": "float64"},
     "input": _t([0, 2, 5, 3], "float64", requires_grad=True), "output_size": None,
     "flags": {"threads": 2, "grad": False}},
    # negative out_channels: torch.empty's message
    {"kind": "module", "cls": "Conv2d", "ctor": {"in_channels": 2, "out_channels": -2,
     "kernel_size": 3}, "input": _t([1, 2, 5, 5]), "output_size": None},
]

PAD_REGRESSIONS = [
    {"kind": "pad", "input": _t([1, 2, 3, 4]), "pad": [3, 1, 1, 1], "mode": "reflect"},
    {"kind": "pad", "input": _t([1, 2, 3, 4]), "pad": [-3, -3, 0, 0], "mode": "reflect"},
    {"kind": "pad", "input": _t([1, 2, 3]), "pad": [-3, -1, -2, -1], "mode": "replicate"},
    {"kind": "pad", "input": _t([1, 0, 3, 4]), "pad": [1, 1, 1, 1], "mode": "reflect"},
    {"kind": "pad", "input": _t([2, 3, 4]), "pad": [1, 1] * 4, "mode": "constant"},
    {"kind": "pad", "input": _t([2, 3, 4]), "pad": [1, 1], "mode": "reflect", "value": 1.0},
    {"kind": "pad", "input": _t([1, 2, 3, 4], memory_format="channels_last"),
     "pad": [1, 1, 1, 1], "mode": "replicate"},
    # no positive pad: constant_pad_nd returns a clone, which keeps dense strides (here
    # channels-last strides of a 0-element tensor)
    {"kind": "pad", "input": _t([5, 0, 0, 0], memory_format="channels_last"), "pad": [0, 0],
     "mode": "constant"},
    {"kind": "pad", "input": _t([3, 3, 2, 0], memory_format="channels_last"), "pad": [0, 0],
     "mode": "constant"},
    # no positive pad on a non-dense view: clone() keeps the dimension order (empty_like)
    {"kind": "pad", "input": _t([1, 2, 2, 3], strides=[12, 6, 1, 2]), "pad": [0, -1],
     "mode": "constant"},
    # the output requires grad only in grad mode
    {"kind": "pad", "input": _t([5, 5], requires_grad=True), "pad": [2, -3, 4, 1],
     "mode": "constant", "value": 1.5, "flags": {"grad": False}},
]


@pytest.fixture(scope="module")
def worker():
    with O.worker() as w:
        yield w


def check_module_case(case: dict, w) -> None:
    ctor_error = O.torch_module_ctor(case)
    want = ctor_error if ctor_error is not None else w.run(case)
    if "crash" in want:
        reject()
    vias = ["spec"] if case.get("module_mf", "contiguous") == "contiguous" else []
    if ctor_error is None:
        vias.append("instance")
    for via in vias:
        got = O.symconv_run(case, via=via)
        assert got == want, (f"case {json.dumps(case)}\n via {via}\n torch:   {want}\n"
                             f" symconv: {got}")


@pytest.mark.parametrize("case", MODULE_REGRESSIONS)
def test_module_regressions(case, worker):
    check_module_case(case, worker)


@pytest.mark.parametrize("case", PAD_REGRESSIONS)
def test_pad_regressions(case, worker):
    check_case(case, worker)


@settings(max_examples=DEFAULT_MODULE_EXAMPLES)
@given(module_case())
def test_modules_match_torch(worker, case):
    check_module_case(case, worker)


@settings(max_examples=DEFAULT_PAD_EXAMPLES)
@given(pad_case())
def test_pad_matches_torch(worker, case):
    check_case(case, worker)


@pytest.mark.slow
@settings(max_examples=SLOW_MODULE_EXAMPLES, derandomize=False)
@given(module_case())
def test_modules_match_torch_slow(worker, case):
    check_module_case(case, worker)


@pytest.mark.slow
@settings(max_examples=SLOW_PAD_EXAMPLES, derandomize=False)
@given(pad_case())
def test_pad_matches_torch_slow(worker, case):
    check_case(case, worker)


# --------------------------------------------------------------------------------------
# check_module_args and symbolic modules


def test_check_module_args_messages():
    with pytest.raises(ValueError, match=r"^padding='same' is not supported for strided"):
        symconv.check_module_args(torch.nn.Conv2d, 3, 8, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"^groups must be a positive integer$"):
        symconv.check_module_args(torch.nn.Conv2d, in_channels=3, out_channels=8,
                                  kernel_size=3, groups=0)
    with pytest.raises(ValueError, match=r'^Only "zeros" padding mode is supported for '
                                         'LazyConvTranspose2d$'):
        symconv.check_module_args("LazyConvTranspose2d", 8, 3, padding_mode="reflect")
    spec = symconv.check_module_args(torch.nn.Conv2d, 4, 8, (3, 5), padding="same",
                                     dilation=2)
    assert spec.weight.shape == (8, 4, 3, 5)
    assert spec.reversed_padding_repeated_twice == tuple(
        torch.nn.Conv2d(4, 8, (3, 5), padding="same", dilation=2,
                        device="meta")._reversed_padding_repeated_twice)


def test_symbolic_module():
    spec = symconv.check_module_args(torch.nn.Conv2d, "C", 8, 3, groups=2,
                                     padding_mode="circular", padding=1)
    out = symconv.module_output(spec, TensorSpec(("N", "C", "H", "W")))
    assert isinstance(out, SF.SymbolicOutput)
    for c, h, w in [(2, 5, 5), (3, 5, 5), (4, 1, 1), (2, 0, 3)]:
        try:
            want = symconv.module_output(symconv.check_module_args(torch.nn.Conv2d, c, 8, 3,
                                                                   groups=2,
                                                                   padding_mode="circular",
                                                                   padding=1),
                                         TensorSpec((2, c, h, w)))
        except Exception as e:  # noqa: BLE001
            got = out.outcome_at(N=2, C=c, H=h, W=w)
            assert isinstance(got, type(e)) or type(e).__name__ == type(got).__name__
            with pytest.raises(type(e)):
                out.at(N=2, C=c, H=h, W=w)
            continue
        assert out.at(N=2, C=c, H=h, W=w) == want
        assert out.outcome_at(N=2, C=c, H=h, W=w) == want


def test_symbolic_output_size():
    m = torch.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1)
    out = symconv.module_output(m, TensorSpec((1, 3, "H", 7)), output_size=["Ho", 14])
    assert out.at(H=5, Ho=10).shape == (1, 4, 10, 14)
    with pytest.raises(ValueError, match=r"requested an output size of \[12, 14\], but valid "
                                         r"sizes range from \[9, 13\] to \[10, 14\]"):
        out.at(H=5, Ho=12)
