"""Differential tests of symconv.functional against torch.nn.functional.

Hypothesis draws calls of conv1d/2d/3d and conv_transpose1d/2d/3d, valid and invalid (unbatched
and wrong-rank inputs, string padding, complex inputs, dtype mismatches, bad groups, strides,
paddings, dilations, bias shapes, parameter lengths, zero sizes, memory formats and strides,
thread and oneDNN flags, grad mode); symconv must give torch's output shape, dtype, layout
(``is_contiguous`` for the contiguous and channels-last formats) and ``requires_grad``, or
torch's exception type and first line. torch runs in a worker subprocess
(tests/oracle_functional.py).

The drawn errors include those the backend kernels raise after selection (input/weight dtype
mismatches, ``dilation=0``, transposed outputs <= 0, ``output_padding`` not smaller than stride
or dilation), answered by ``symconv.kernels``; drawn calls that crash torch itself are rejected
and counted (``CRASHES``; one is kept as ``TORCH_CRASH``).

The default run draws ``DEFAULT_EXAMPLES`` cases (derandomized CI profile); ``-m slow`` draws
``SLOW_EXAMPLES`` with fresh randomness.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import sympy
from hypothesis import given, reject, settings
from hypothesis import strategies as st

import symconv
from symconv import TensorSpec
from symconv import functional as SF
from symconv.spec import contiguous_strides
from tests import oracle_functional as O

DEFAULT_EXAMPLES = 900
SLOW_EXAMPLES = 12000

FLOAT_DTYPES = ["float32"] * 6 + ["float64", "float64", "bfloat16", "float16", "int64"]
COMPLEX_DTYPES = ["complex64", "complex128"]


# --------------------------------------------------------------------------------------
# Strategy


def tensor_dict(draw, shape, dtype, *, n_spatial: int, batched: bool, allow_formats=True) -> dict:
    t = {"shape": list(shape), "dtype": dtype, "memory_format": "contiguous",
         "requires_grad": draw(st.booleans()) and dtype != "int64"}
    if not allow_formats:
        return t
    r = draw(st.integers(0, 11))
    nd = len(shape)
    if r < 3 and nd == 4:
        t["memory_format"] = "channels_last"
    elif r < 2 and nd == 5:
        t["memory_format"] = "channels_last_3d"
    elif r == 3 and nd >= 2:
        # a sliced view: every other element of the last dimension
        big = list(shape[:-1]) + [2 * shape[-1]]
        st_ = list(contiguous_strides(big))
        st_[-1] = 2
        t["strides"] = st_
    elif r == 4 and nd >= 3:
        # the last two dimensions swapped in memory
        sw = list(shape[:-2]) + [shape[-1], shape[-2]]
        s = list(contiguous_strides(sw))
        t["strides"] = s[:-2] + [s[-1], s[-2]]
    elif r == 5 and nd >= 2:
        # dense, in any dimension order
        perm = draw(st.permutations(list(range(nd))))
        strides, acc = [0] * nd, 1
        for d in reversed(perm):
            strides[d] = acc
            acc *= max(shape[d], 1)
        t["strides"] = strides
    return t


@st.composite
def functional_case(draw, *, allow_invalid: bool = True):
    fn = draw(st.sampled_from(O.FUNCTIONAL))
    transposed = fn.startswith("conv_transpose")
    n = int(fn[-2])
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    batch = draw(st.sampled_from([0, 1, 1, 2, 3]))
    batched = draw(st.integers(0, 4)) != 0
    kernel = [draw(st.sampled_from([1, 2, 3, 3, 4, 5])) for _ in range(n)]
    dilation = [draw(st.sampled_from([1, 1, 1, 2])) for _ in range(n)]
    padding_mode = None
    if not transposed and draw(st.integers(0, 3)) == 0:
        padding_mode = draw(st.sampled_from(["same", "same", "valid"]))
    if padding_mode == "same":
        stride = [1] * n
    else:
        stride = [draw(st.sampled_from([1, 1, 2, 3])) for _ in range(n)]
    padding = [draw(st.integers(0, 3)) for _ in range(n)] if padding_mode is None else [0] * n
    output_padding = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)] \
        if transposed else [0] * n
    spatial = []
    for i in range(n):
        eff = dilation[i] * (kernel[i] - 1) + 1
        if transposed:
            # (in - 1) * s - 2p + eff + op >= 1
            lo = 1
            while (lo - 1) * stride[i] - 2 * padding[i] + eff + output_padding[i] < 1:
                lo += 1
        elif padding_mode == "same":
            lo = 1
        else:
            lo = max(1, eff - 2 * padding[i])
        spatial.append(lo + draw(st.integers(0, 5)))
    cplx = draw(st.integers(0, 7)) == 0
    dtype = draw(st.sampled_from(COMPLEX_DTYPES if cplx else FLOAT_DTYPES))
    ishape = ([batch] if batched else []) + [cin] + spatial
    wshape = ([cin, cout // groups] if transposed else [cout, cin // groups]) + kernel
    case = {
        "kind": "functional", "fn": fn,
        "input": tensor_dict(draw, ishape, dtype, n_spatial=n, batched=batched),
        "weight": tensor_dict(draw, wshape, dtype, n_spatial=n, batched=True),
        "bias": ({"shape": [cout], "dtype": dtype, "requires_grad": draw(st.booleans())
                  and dtype != "int64"} if draw(st.booleans()) else None),
        "args": {},
        "flags": {"threads": draw(st.sampled_from([1, 2])),
                  "mkldnn": draw(st.integers(0, 4)) != 0,
                  "grad": draw(st.sampled_from([True, True, False]))},
    }
    a = case["args"]
    a["stride"] = _as_arg(draw, stride)
    a["padding"] = padding_mode if padding_mode is not None else _as_arg(draw, padding)
    a["dilation"] = _as_arg(draw, dilation)
    if transposed:
        a["output_padding"] = _as_arg(draw, output_padding)
    a["groups"] = groups
    if allow_invalid and draw(st.integers(0, 2)) == 0:
        _mutate(draw, case, n, transposed)
    return case


def _as_arg(draw, xs):
    """How a user passes a parameter: an int, a 1-list, a tuple or a list."""
    if len(set(xs)) == 1:
        r = draw(st.integers(0, 3))
        if r == 0:
            return xs[0]
        if r == 1:
            return [xs[0]]
    return list(xs) if draw(st.booleans()) else tuple(xs)


MUTATIONS = ["rank_low", "rank_high", "channels", "groups_bad", "groups_nonpos", "neg_padding",
             "stride_nonpos", "neg_dilation", "kernel_too_big", "bias_shape", "bias_rank",
             "bias_dtype", "complex_mismatch", "pad_string", "same_strided", "same_even",
             "param_len", "weight_rank_low", "weight_rank_high", "zero_channels",
             "zero_spatial", "huge_padding", "zero_batch",
             # errors of the kernels after backend selection
             "weight_dtype", "bias_dtype_any", "zero_dilation", "transposed_small",
             "big_output_padding"]


def _mutate(draw, case, n, transposed):
    kind = draw(st.sampled_from(MUTATIONS))
    inp, w, a = case["input"], case["weight"], case["args"]
    string_padding = isinstance(a["padding"], str)
    dtype = inp["dtype"]
    if kind == "rank_low":
        inp["shape"] = inp["shape"][1:] if len(inp["shape"]) > 1 else inp["shape"]
    elif kind == "rank_high":
        inp["shape"] = [1] + inp["shape"]
    elif kind == "channels":
        ci = 1 if len(inp["shape"]) == n + 2 else 0
        inp["shape"][ci] += draw(st.integers(1, 2))
    elif kind == "groups_bad":
        a["groups"] = draw(st.integers(2, 5))
    elif kind == "groups_nonpos":
        a["groups"] = draw(st.sampled_from([0, -1]))
    elif kind == "neg_padding" and not string_padding:
        a["padding"] = -1
    elif kind == "stride_nonpos":
        a["stride"] = draw(st.sampled_from([0, -1, [0] * n]))
    elif kind == "neg_dilation":
        a["dilation"] = -1
    elif kind == "kernel_too_big" and not transposed:
        w["shape"][-1] = inp["shape"][-1] + 7
    elif kind == "bias_shape":
        case["bias"] = {"shape": [draw(st.integers(0, 7))], "dtype": dtype}
    elif kind == "bias_rank":
        case["bias"] = {"shape": [1, 2], "dtype": dtype}
    elif kind == "bias_dtype" and not transposed and not string_padding \
            and not dtype.startswith("complex"):
        other = draw(st.sampled_from([d for d in ("float32", "float64", "bfloat16", "float16")
                                      if d != dtype]))
        case["bias"] = {"shape": [w["shape"][0]], "dtype": other}
    elif kind == "complex_mismatch" and dtype.startswith("complex"):
        other = draw(st.sampled_from(["float32", "float64", "bfloat16", "int64", "complex64",
                                      "complex128"]))
        if draw(st.booleans()) or case["bias"] is None:
            w["dtype"] = other
        else:
            case["bias"]["dtype"] = other
    elif kind == "pad_string" and not transposed:
        a["padding"] = draw(st.sampled_from(["foo", "SAME", "same", "valid"]))
    elif kind == "same_strided" and not transposed:
        a["padding"] = "same"
        a["stride"] = draw(st.sampled_from([2, [1] * (n - 1) + [2]]))
    elif kind == "same_even" and not transposed:
        a["padding"] = "same"
        a["stride"] = 1
        w["shape"][-1] = 2
    elif kind == "param_len":
        key = draw(st.sampled_from(["stride", "dilation", "padding"]))
        if key == "padding" and string_padding:
            key = "stride"
        a[key] = [1] * (n + 1)
    elif kind == "weight_rank_low":
        w["shape"] = w["shape"][:2]
        w["memory_format"] = "contiguous"
        w.pop("strides", None)
    elif kind == "weight_rank_high":
        w["shape"] = w["shape"] + [1]
        w["memory_format"] = "contiguous"
        w.pop("strides", None)
    elif kind == "zero_channels":
        ci = 1 if len(inp["shape"]) == n + 2 else 0
        inp["shape"][ci] = 0
        w["shape"][0 if transposed else 1] = 0
    elif kind == "zero_spatial" and not transposed:
        inp["shape"][-1] = 0
    elif kind == "huge_padding" and not transposed and not string_padding:
        a["padding"] = draw(st.sampled_from([2**62 - 1, 2**62]))
    elif kind == "zero_batch" and len(inp["shape"]) == n + 2:
        inp["shape"][0] = 0
    elif kind == "weight_dtype":
        w["dtype"] = draw(st.sampled_from(["float32", "float64", "bfloat16", "float16",
                                           "int64", "complex64"]))
    elif kind == "bias_dtype_any":
        nb = w["shape"][1] * a["groups"] if transposed else w["shape"][0]
        case["bias"] = {"shape": [nb], "dtype": draw(st.sampled_from(
            ["float32", "float64", "bfloat16", "complex64", "int64"]))}
    elif kind == "zero_dilation":
        a["dilation"] = [draw(st.sampled_from([0, 1])) for _ in range(n - 1)] + [0]
    elif kind == "transposed_small" and transposed:
        a.update(padding=draw(st.integers(2, 6)), output_padding=0, stride=1, dilation=1)
    elif kind == "big_output_padding" and transposed:
        a["output_padding"] = draw(st.integers(1, 4))
    case["mutation"] = kind
    _fix_formats(case)


def _fix_formats(case):
    for key in ("input", "weight", "bias"):
        t = case[key]
        if t is not None and t["dtype"] == "int64":
            t["requires_grad"] = False  # torch refuses integer tensors that require grad
    for key in ("input", "weight"):
        t = case[key]
        nd = len(t["shape"])
        if (t["memory_format"] == "channels_last" and nd != 4) or \
                (t["memory_format"] == "channels_last_3d" and nd != 5):
            t["memory_format"] = "contiguous"
        if t.get("strides") is not None and len(t["strides"]) != nd:
            t.pop("strides")


# --------------------------------------------------------------------------------------
# Regressions: every disagreement random exploration found, as an explicit case


def _t(shape, dtype="float32", **kw):
    return {"shape": list(shape), "dtype": dtype, "memory_format": "contiguous", **kw}


REGRESSIONS = [
    # unbatched input with a 5-D tensor for conv2d (the example)
    {"kind": "functional", "fn": "conv2d", "input": _t([1, 10, 1, 28, 28]),
     "weight": _t([4, 10, 3, 3]), "bias": None, "args": {}},
    # bias dtype is checked before batchify
    {"kind": "functional", "fn": "conv2d", "input": _t([1, 3, 8, 8, 1]),
     "weight": _t([4, 3, 3, 3]), "bias": _t([4], "float64"), "args": {}},
    # ... but not for string padding, which goes straight to batchify
    {"kind": "functional", "fn": "conv2d", "input": _t([1, 3, 8, 8, 1]),
     "weight": _t([4, 3, 3, 3]), "bias": _t([4], "float64"), "args": {"padding": "same"}},
    # 'same' with an even kernel: constant_pad_nd, then the convolution
    {"kind": "functional", "fn": "conv2d", "input": _t([2, 3, 7, 6]),
     "weight": _t([4, 3, 2, 4]), "bias": None, "args": {"padding": "same"}},
    # 'same' with a zero-size dimension that needs no extra padding
    {"kind": "functional", "fn": "conv2d", "input": _t([1, 1, 0, 5]),
     "weight": _t([1, 1, 1, 2]), "bias": None, "args": {"padding": "same"}},
    # 'same' and groups=0: convolution_same's own message
    {"kind": "functional", "fn": "conv1d", "input": _t([2, 4, 9]),
     "weight": _t([4, 2, 3]), "bias": None, "args": {"padding": "same", "groups": 0}},
    # the parser repeats an int stride to the function's rank: a 3-D weight to conv2d
    {"kind": "functional", "fn": "conv2d", "input": _t([3, 8, 8]),
     "weight": _t([4, 3, 3]), "bias": None, "args": {"stride": 2}},
    # complex input, real weight: complex_convolution's legacy type names
    {"kind": "functional", "fn": "conv_transpose2d", "input": _t([1, 3, 5, 5], "complex64"),
     "weight": _t([3, 2, 3, 3], "bfloat16"), "bias": None, "args": {}},
    # complex channels-last input keeps its layout
    {"kind": "functional", "fn": "conv2d",
     "input": _t([2, 3, 6, 6], "complex64", memory_format="channels_last"),
     "weight": _t([4, 3, 3, 3], "complex64"), "bias": None, "args": {}},
    # channels-last weight turns a contiguous input's output channels-last (Mkldnn)
    {"kind": "functional", "fn": "conv2d", "input": _t([2, 3, 6, 6]),
     "weight": _t([4, 3, 3, 3], memory_format="channels_last"), "bias": None, "args": {},
     "flags": {"threads": 2}},
    # a 1-d input that is already contiguous keeps its (odd) size-1 strides through
    # .contiguous() and view4d, and then suggests channels-last: non-contiguous output
    {"kind": "functional", "fn": "conv_transpose1d", "input": _t([3, 9, 1], "float16",
                                                                 strides=[9, 1, 9]),
     "weight": _t([9, 2, 3], "float16"), "bias": _t([6], "float16"),
     "args": {"groups": 3}, "flags": {"threads": 2, "mkldnn": False}},
    # the Empty path keeps a channels-last input's strides when the output size is unchanged
    {"kind": "functional", "fn": "conv_transpose2d",
     "input": _t([0, 4, 5, 3], memory_format="channels_last"), "weight": _t([4, 2, 1, 1]),
     "bias": None, "args": {"groups": 2}, "flags": {"mkldnn": False}},
    # ... and gives contiguous strides when it changes
    {"kind": "functional", "fn": "conv2d",
     "input": _t([0, 4, 5, 3], memory_format="channels_last"), "weight": _t([4, 4, 2, 1]),
     "bias": None, "args": {}},
]


@pytest.fixture(scope="module")
def worker():
    with O.worker() as w:
        yield w


CRASHES: list = []  # drawn cases that crash torch itself (no answer to compare with)


def check_case(case: dict, w) -> None:
    want, got = O.compare(case, w)
    if "crash" in want:
        CRASHES.append(case)
        reject()
    assert got == want, f"case {json.dumps(case)}\n torch:   {want}\n symconv: {got}"


@pytest.mark.parametrize("case", REGRESSIONS)
def test_regressions(case, worker):
    check_case(case, worker)


# torch 2.13 itself crashes (SIGSEGV in oneDNN) on this valid call: conv3d (Mkldnn) of a
# channels_last_3d input with a [2, 1, 1, 1, 1] weight whose strides are not the canonical ones,
# with a bias. Found by random exploration; symconv answers what torch's model says.
TORCH_CRASH = {"kind": "functional", "fn": "conv3d",
               "input": _t([2, 1, 1, 2, 1], memory_format="channels_last_3d"),
               "weight": _t([2, 1, 1, 1, 1], strides=[2, 2, 2, 2, 2]), "bias": _t([2]),
               "args": {"stride": [3, 1, 3], "padding": [3, 2, 2], "dilation": [1, 1, 2]},
               "flags": {"threads": 2}}


def test_torch_crash_is_a_crash(worker):
    want, got = O.compare(TORCH_CRASH, worker)
    if "crash" not in want:  # pragma: no cover - a torch that fixed the bug must agree
        assert got == want
    assert got["shape"] == [2, 2, 3, 6, 2] and got["channels_last"]


@settings(max_examples=DEFAULT_EXAMPLES)
@given(functional_case())
def test_functional_matches_torch(worker, case):
    check_case(case, worker)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, derandomize=False)
@given(functional_case())
def test_functional_matches_torch_slow(worker, case):
    check_case(case, worker)


# --------------------------------------------------------------------------------------
# Warnings (TORCH_WARN_ONCE: one fresh process per check)


WARNING_CALLS = [((3, 3), 1), ((2, 2), 2), ((1, 5), 3), ((2, 3), 1)]  # only the last warns


def test_same_warning_matches_torch():
    """The even-kernel warning is TORCH_WARN_ONCE: one fresh process, the warning call last."""
    prog = ("import warnings, torch, torch.nn.functional as F\n"
            "out = []\n"
            f"for k, d in {WARNING_CALLS!r}:\n"
            "    with warnings.catch_warnings(record=True) as ws:\n"
            "        warnings.simplefilter('always')\n"
            "        F.conv2d(torch.randn(1, 2, 6, 6), torch.randn(3, 2, *k), padding='same',"
            " dilation=d)\n"
            "    out.append([str(w.message).split(' (Triggered')[0] for w in ws])\n"
            "print(repr(out))\n")
    res = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True,
                         timeout=300)
    want = eval(res.stdout.strip().splitlines()[-1])  # our own repr
    got = []
    for k, d in WARNING_CALLS:
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter("always")
            SF.conv2d(TensorSpec((1, 2, 6, 6)), TensorSpec((3, 2) + k), padding="same",
                      dilation=d)
        got.append([str(x.message) for x in ws])
    assert got == want
    assert want[-1] == [SF.SAME_WARNING] and not any(want[:-1])


# --------------------------------------------------------------------------------------
# Symbolic calls: one formula, checked against the concrete answers


def test_symbolic_conv2d_agrees_with_concrete():
    out = SF.conv2d(TensorSpec(("N", 3, "H", "W")), TensorSpec((8, 3, 3, 3)), stride=2,
                    padding=1)
    assert isinstance(out, SF.SymbolicOutput)
    for n, h, w in [(1, 1, 1), (2, 7, 9), (0, 5, 5), (3, 32, 17)]:
        want = SF.conv2d(TensorSpec((n, 3, h, w)), TensorSpec((8, 3, 3, 3)), stride=2, padding=1)
        assert out.at(N=n, H=h, W=w) == want
    with pytest.raises(symconv.ConvError) as e:
        out.at(N=1, H=0, W=4)
    assert str(e.value).startswith("Calculated padded input size per channel: (2 x 6)")


def test_symbolic_same_warning_condition():
    out = SF.conv1d(TensorSpec((2, 4, "L")), TensorSpec((4, 4, "K")), padding="same")
    assert isinstance(out, SF.SymbolicOutput)
    [(cond, msg)] = out.warnings
    assert msg == SF.SAME_WARNING
    K = sympy.Symbol("K", integer=True, nonnegative=True)
    assert bool(cond.subs({K: 2})) and not bool(cond.subs({K: 3}))
    for k in (1, 2, 3, 4):
        for length in (1, 5):
            want = SF.conv1d(TensorSpec((2, 4, length)), TensorSpec((4, 4, k)), padding="same")
            assert out.at(L=length, K=k) == want
            assert out.outcome_at(L=length, K=k) == want


def test_symbolic_memory_format_is_a_code_expression():
    out = SF.conv2d(TensorSpec(("N", 3, "H", "W"), memory_format="channels_last"),
                    TensorSpec((8, 3, 3, 3)), padding=1)
    # channels-last unless the empty path is taken (N == 0)
    assert out.at(N=2, H=5, W=5).memory_format == symconv.spec.memory_format_from_code(1)
    assert out.at(N=0, H=5, W=5).memory_format == symconv.spec.memory_format_from_code(0)
    assert D_is_symbolic(out.memory_format)


def D_is_symbolic(x):
    from symconv import domain as D
    return D.is_symbolic(x)


def test_symbolic_unbatched_and_transpose():
    out = SF.conv_transpose2d(TensorSpec((3, "H", "W")), TensorSpec((3, 4, 3, 3)), stride=2,
                              padding=1, output_padding=1)
    for h, w in [(1, 1), (4, 7)]:
        want = SF.conv_transpose2d(TensorSpec((3, h, w)), TensorSpec((3, 4, 3, 3)), stride=2,
                                   padding=1, output_padding=1)
        assert out.at(H=h, W=w) == want
    assert out.shape[0] == 4


def test_symbolic_stride_same_error():
    s = sympy.Symbol("s", integer=True)
    out = SF.conv2d(TensorSpec((1, 3, 8, 8)), TensorSpec((4, 3, 3, 3)), stride=s, padding="same")
    with pytest.raises(symconv.ConvError, match="not supported for strided"):
        out.at(s=2)
    assert out.at(s=1).shape == (1, 4, 8, 8)


def test_z3_sizes():
    import z3
    H = z3.Int("H")
    out = SF.conv2d(TensorSpec((1, 3, H, 8)), TensorSpec((4, 3, 3, 3)))
    assert out.at(H=5).shape == (1, 4, 3, 6)


# --------------------------------------------------------------------------------------
# Symbolic against concrete: the same drawn calls with sizes made symbols


@st.composite
def symbolized_case(draw):
    case = draw(functional_case())
    shape = case["input"]["shape"]
    if case["input"].get("strides") is not None:
        case["input"].pop("strides")
    dims = draw(st.sets(st.integers(0, len(shape) - 1), min_size=1, max_size=2))
    names = {d: f"s{d}" for d in dims}
    return case, names


def _symbolic_answer(case, names):
    spec = O.spec_of(case["input"])
    sym = spec.replace(shape=tuple(sympy.Symbol(names[i], integer=True, nonnegative=True)
                                   if i in names else s for i, s in enumerate(spec.shape)))
    fn = SF.FUNCTIONS[case["fn"]]
    env = O._env(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(sym, O.spec_of(case["weight"]), O.spec_of(case.get("bias")), **case["args"],
                  env=env)


def check_symbolic(case, names):
    values = {names[i]: case["input"]["shape"][i] for i in names}
    concrete = O.symconv_run(case)
    try:
        out = _symbolic_answer(case, names)
    except Exception as e:  # noqa: BLE001 - a decided error (its message may name symbols)
        msg = O.first_line(e)
        assert O.etype(e) == concrete.get("error"), (json.dumps(case), names, e, concrete)
        if not any(name in msg for name in values):
            assert msg == concrete["message"], (json.dumps(case), names, e, concrete)
        return
    if not isinstance(out, SF.SymbolicOutput):  # the symbols did not matter
        assert O.describe(out) == concrete
        return
    got = out.outcome_at(**values)
    if isinstance(got, BaseException):
        assert O.etype(got) == concrete.get("error"), (json.dumps(case), names, got, concrete)
        try:
            out.at(**values)
        except Exception as e:  # noqa: BLE001
            assert O.error(e) == concrete
        else:  # pragma: no cover
            raise AssertionError("the replay did not raise")
    else:
        assert O.describe(got) == concrete, (json.dumps(case), names, got, concrete)
        assert O.describe(out.at(**values)) == concrete


SYMBOLIC_REGRESSIONS = [
    # a symbolic batch on the Empty path: the layout's stride order is decided under the
    # case's condition (N == 0), as the concrete call decides it
    ({"kind": "functional", "fn": "conv3d",
      "input": _t([0, 2, 1, 1, 2], "complex64", memory_format="channels_last_3d"),
      "weight": _t([2, 2, 1, 1, 1], "complex64", memory_format="channels_last_3d"),
      "bias": None, "args": {"padding": "same"}, "flags": {"mkldnn": False}}, {0: "s0"}),
]


@pytest.mark.parametrize("arg", SYMBOLIC_REGRESSIONS)
def test_symbolic_regressions(arg):
    check_symbolic(*arg)


@settings(max_examples=12)
@given(symbolized_case())
def test_symbolic_matches_concrete(arg):
    check_symbolic(*arg)


@pytest.mark.slow
@settings(max_examples=300, derandomize=False)
@given(symbolized_case())
def test_symbolic_matches_concrete_slow(arg):
    check_symbolic(*arg)
