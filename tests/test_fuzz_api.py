"""Fuzz symconv's public functions with malformed arguments: every error is a symconv
exception or the exception type torch raises for the same mistake, never a Python accident.

Allowed: ``ConvError`` (torch's ``RuntimeError``), ``ConvValueError``/``ValueError``,
``TypeError``, ``IndexError``, ``NotImplementedError`` -- and a ``TypeError``/``ValueError``
only with symconv's own message, not one of Python's internal ones ("unsupported operand",
"object is not subscriptable", "invalid literal for int()", ...), which would mean the
argument was never checked. 1,000 fixed (seeded) examples per function family in the default
run, 10,000 random ones (Hypothesis) in the slow suite. Nothing here runs a convolution kernel
(tensors are on the meta device or the call fails in argument checking;
``symconv.convolution`` is fuzzed with wrong types only).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import sympy
import torch
import z3
from hypothesis import given, settings

import symconv
from symconv import functional as F
from symconv.errors import ConvError, ConvValueError

from . import fuzz_strategies as fz

SLOW = settings(max_examples=10_000, deadline=None, derandomize=False)

ALLOWED = (ConvError, ConvValueError, TypeError, ValueError, IndexError, NotImplementedError)
PYTHON_ACCIDENTS = re.compile(
    r"unsupported operand|not subscriptable|is not iterable|object is not callable|"
    r"invalid literal for int|can't multiply|must be real number|'NoneType' object|"
    r"has no attribute|not supported between instances|too many values to unpack|"
    r"not enough values to unpack|object cannot be interpreted as an integer|"
    r"unhashable type|missing \d+ required|"
    r"argument must be a string or a|Cannot convert|SympifyError|can only concatenate|"
    r"math domain error|division by zero|sort mismatch", re.I)


def call_contract(fn, *args, **kwargs):
    """Run ``fn``; return its result or the (allowed) exception."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)
        except ALLOWED as e:
            msg = str(e)
            if type(e) in (TypeError, ValueError) and PYTHON_ACCIDENTS.search(msg):
                raise AssertionError(f"an unchecked argument reached Python: "
                                     f"{type(e).__name__}: {msg}\n{_show(fn, args, kwargs)}"
                                     ) from e
            if isinstance(e, RuntimeError) and not isinstance(e, (ConvError,
                                                                  NotImplementedError)):
                raise AssertionError(f"a RuntimeError that is not symconv's: {msg}\n"
                                     + _show(fn, args, kwargs)) from e
            return e
        except Exception as e:
            raise AssertionError(f"{type(e).__name__}: {e}\n{_show(fn, args, kwargs)}") from e


def _show(fn, args, kwargs) -> str:
    return f"call: {getattr(fn, '__name__', fn)}(*{args!r:.1500}, **{kwargs!r:.500})"


# --------------------------------------------------------------------------------------
# values: mostly wrong, some right


def _spec(shape, **kw):
    return symconv.TensorSpec(tuple(shape), **kw)


GOOD_SHAPES = [(1, 3, 8, 8), (4, 3, 3, 3), (1, 3, 8), (4, 3, 3), (1, 2, 4, 4, 4), (4, 2, 2, 2, 2),
               (3, 8, 8), (8, 1, 3, 3), (4,), (0, 3, 8, 8), (1, 3, 0, 8), (4, 1, 3, 3),
               (1, 4, 5, 5), (2, 2, 2, 2)]
ODD_SHAPES = [(), (1,), (1, 2, 3, 4, 5, 6, 7), (1, 1, 1, 1, 1, 1, 1, 1), (2**62, 3, 8, 8),
              (2**63 - 1, 1, 1, 1), (1, 2**40, 2**40, 1), (0, 0, 0, 0)]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64,
          torch.int64, torch.bool, torch.uint8]


def _tensors():
    out = []
    for s in GOOD_SHAPES + ODD_SHAPES[:4]:
        out.append(_spec(s))
        out.append(_spec(s, dtype=DTYPES[len(out) % len(DTYPES)]))
    for s in ODD_SHAPES[4:]:
        out.append(_spec(s))
    out += [_spec((1, 3, 8, 8), device="cuda"), _spec((4, 3, 3, 3), device="meta"),
            _spec((1, 3, 8, 8), layout=torch._mkldnn), _spec((1, 3, 8, 8), requires_grad=True),
            _spec((1, 3, 8, 8), memory_format=torch.channels_last),
            torch.empty(1, 3, 8, 8, device="meta"), torch.empty(4, 3, 3, 3, device="meta"),
            torch.empty(3, 3, 3, device="meta"), torch.empty((), device="meta"),
            torch.empty(1, 3, 8, 8, device="meta", dtype=torch.float64),
            torch.empty(2, 3, 8, 8, device="meta").transpose(2, 3)]
    return out


TENSORS = _tensors()
SCALARS = ([0, 1, 2, 3, -1, -2, 7, 2**31, 2**62, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1,
            2**70, True, False, 1.5, 2.0, -0.0, float("nan"), float("inf"), None, "", "1.5",
            "a b", "é", "x" * 300, "\udcff", "\x00", b"1", 1j, np.int64(2), np.int32(-1),
            np.float64(2.0), np.array(2), np.array([1, 2]), torch.tensor(2),
            torch.tensor([1, 2]), torch.tensor(2.0), object(), {}, {1: 2}, set(), Ellipsis,
            slice(1, 2), sympy.Rational(1, 2), sympy.Float(1.5), z3.Real("r"), z3.Bool("b"),
            range(3), iter([1])]
            + [1, 1, 2, 0] * 6)
LISTS = ([[1], [1, 1], [2, 2], [0, 0], [1, 1, 1], [], [-1, 1], [1, -1], [2**63, 1],
          [1, 2**70], [1.5, 1], [1, None], [None], ["a", 1], [True, 1], [[1], [1]], (1, 1),
          (1,), [1, 1, 1, 1, 1, 1, 1, 1, 1], [np.int64(1), 1], [torch.tensor(1), 1],
          [1, 1.0], [object()]] + [[1, 1], [1], 1, 2] * 4)
PARAMS = SCALARS + LISTS
GROUPS = SCALARS + [[1], (2,), 1, 1, 1, 2, 3, 4, 0]
BOOLS = [True, False, 0, 1, None, "yes", 2, np.bool_(True)]
ENVS = [None, None, "cpu", "cuda-h100", "nope", 3, symconv.preset("cpu"), symconv.preset("seed"),
        symconv.preset("cuda-h100"), {}, "native"]
BACKENDS = fz.BACKENDS + ["nope", "", 3, -1, None, 2.5, symconv.ConvBackend.Mkldnn,
                          symconv.ConvBackend.Cudnn, "mkldnn", "SLOW2D"]


def _tensor_arg(c):
    return c.pick(TENSORS) if c.num(0, 9) else c.pick(SCALARS + LISTS)


def _conv_args(c):
    """(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)."""
    bias = c.pick([None, None, _spec((4,)), _spec((3,)), _spec(()), _spec((4, 1)),
                   torch.empty(4, device="meta"), "b", 1.5, _spec((4,), dtype=torch.float64)])
    return (_tensor_arg(c), _tensor_arg(c), bias, c.pick(PARAMS), c.pick(PARAMS),
            c.pick(PARAMS), c.pick(BOOLS), c.pick(PARAMS), c.pick(GROUPS))


def _symbolic_free(x):
    """Strings are symbol names in symconv: a symbolic answer costs seconds, so the default
    run keeps them out of the parameters (identifier strings become ints)."""
    if isinstance(x, str) and x.strip().isidentifier():
        return 3
    if isinstance(x, (list, tuple)):
        return type(x)(_symbolic_free(v) for v in x)
    return x


# --------------------------------------------------------------------------------------
# the families


def _api_call(c):
    args = [_symbolic_free(a) for a in _conv_args(c)]
    env = c.pick(ENVS)
    env = symconv.preset(env) if env in ("cpu", "cuda-h100") else env
    which = c.num(0, 2)
    if which == 0:
        return symconv.select_conv_backend, args, {"env": env}
    if which == 1:
        return symconv.convolution_output_shape, args, {"env": env}
    backend = c.pick(list(symconv.ConvBackend) + [None, "Mkldnn", 3])
    return symconv.determine_backend_memory_format, args[:2] + [backend], {"env": env}


FUNCTIONAL = [(F.conv1d, 1), (F.conv2d, 2), (F.conv3d, 3), (F.conv_transpose1d, 1),
              (F.conv_transpose2d, 2), (F.conv_transpose3d, 3)]
PADDINGS = ["same", "valid", "SAME", "full", ""]


def _functional_call(c):
    fn, _ = c.pick(FUNCTIONAL)
    x, w, b, stride, padding, dilation, _, opad, groups = [_symbolic_free(a)
                                                           for a in _conv_args(c)]
    if c.num(0, 4) == 0:
        padding = c.pick(PADDINGS)
    kw = {"stride": stride, "padding": padding, "groups": groups}
    if fn in (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d):
        kw["output_padding"] = opad
        kw["dilation"] = dilation
    else:
        kw["dilation"] = dilation
    for k in list(kw):
        if c.num(0, 2) == 0:
            del kw[k]
    if c.num(0, 9) == 0:
        kw["env"] = c.pick(ENVS)
    return fn, [x, w, b], kw


def _pad_call(c):
    x = _tensor_arg(c)
    pad = c.pick(LISTS + [[1, 1, 1, 1], [1, 2, 3], [2**63, 0], [-5, -5], [1] * 12, "a", None])
    mode = c.pick(["constant", "reflect", "replicate", "circular", "zeros", "", None, 3])
    value = c.pick([None, 0.0, 1, "v", float("nan"), 1j])
    return F.pad, [x, _symbolic_free(pad)], {"mode": mode, "value": value}


MODULES = [torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose1d,
           torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d, torch.nn.LazyConv2d, torch.nn.Linear,
           "Conv2d", None, 3]


def _module_call(c):
    if c.num(0, 1):
        cls = c.pick(MODULES)
        args = [c.pick(SCALARS), c.pick(SCALARS), c.pick(PARAMS)]
        args = [_symbolic_free(a) for a in args[:c.num(0, 3)]]
        kw = {}
        for k, pool in (("stride", PARAMS), ("padding", PARAMS + PADDINGS), ("groups", GROUPS),
                        ("bias", BOOLS), ("padding_mode", ["zeros", "reflect", "bogus", 3]),
                        ("dilation", PARAMS), ("device", ["cpu", "meta", "bogus", 3]),
                        ("dtype", [torch.float32, "float32", 3, None])):
            if c.num(0, 3) == 0:
                kw[k] = _symbolic_free(c.pick(pool))
        return symconv.check_module_args, [cls] + args, kw
    spec = c.pick([symconv.check_module_args(torch.nn.Conv2d, 3, 4, 3),
                   symconv.check_module_args(torch.nn.Conv1d, 3, 4, 3, padding="same"),
                   symconv.check_module_args(torch.nn.ConvTranspose2d, 4, 3, 3, stride=2),
                   None, "m", 3, torch.nn.ReLU()])
    x = _tensor_arg(c)
    kw = {}
    if c.num(0, 3) == 0:
        kw["output_size"] = _symbolic_free(c.pick(PARAMS))
    return symconv.module_output, [spec, x], kw


def _constructor_call(c):
    which = c.num(0, 3)
    if which == 0:
        shape = c.pick(LISTS + [(1, 3, 8, 8), "N,3", 3, None, [1, -1], [2**63], [np.int64(3)],
                                [np.array([1, 2])], [sympy.Integer(3)], [z3.IntVal(2)]])
        kw = {}
        for k, pool in (("dtype", [torch.float32, "float16", "int3", 3, None]),
                        ("device", ["cpu", "cuda", "bogus", "", 3]),
                        ("memory_format", [torch.channels_last, torch.channels_last_3d,
                                           torch.preserve_format, "cl", 3]),
                        ("layout", [torch.strided, torch._mkldnn, torch.sparse_coo, "x"]),
                        ("strides", [None, (1,), (1, 1, 1, 1), (-1, 1), "x", (1.5,)]),
                        ("requires_grad", BOOLS)):
            if c.num(0, 3) == 0:
                kw[k] = c.pick(pool)
        return symconv.TensorSpec, [_symbolic_free(shape)], kw
    if which == 1:
        return symconv.preset, [c.pick(fz.PRESET_POOL + [None, 3, b"cpu"])], {}
    if which == 2:
        import dataclasses
        field = c.pick([f.name for f in dataclasses.fields(symconv.Environment)])
        value = c.pick(SCALARS + ["2.13.0", "x", (9, 0), (9,), None])
        return _replace_env, [field, value], {}
    return symconv.ConvBackend.parse, [c.pick(BACKENDS)], {}


def _replace_env(field, value):
    import dataclasses
    return dataclasses.replace(symconv.preset("cpu"), **{field: value})


# Defects the fuzz found (fixed; kept as regression cases): Environment fields of the wrong
# type reached deep code (cuda_capability=9 was "'int' object is not iterable"), and under the
# seed's (torch 2.4) version gate groups=0 divided by zero.
@pytest.mark.parametrize("field,value", [("cuda_capability", 9), ("torch_version", {}),
                                         ("cudnn_depthwise_kernel", z3.Bool("b"))])
def test_env_field_types_regression(field, value):
    call_contract(_replace_env, field, value)
    with pytest.raises(TypeError, match=rf"Environment\.{field}"):
        _replace_env(field, value)


def test_seed_groups_zero_regression():
    T = symconv.TensorSpec
    call_contract(symconv.select_conv_backend, T((1, 3, 8, 8)), T((1, 3, 8, 8)), None, 1, 0, 0,
                  True, 0, 0, env=symconv.preset("seed"))


def _query_call(c):
    """reach/explain: well-formed queries cost 0.1-1 s, so each call gets one bad argument."""
    if c.coin():
        kw = {"env": c.pick(ENVS + ["cpu"]), "dims": c.pick([None, 1, 2, 3, 0, 4, (1, 2), (),
                                                             "2", 1.5, [5]]),
              "where": c.pick([None, "N<=8"] + fz.WHERE_POOL[:60] + [3, ["N<=8", 3]]),
              "validate": False}
        bad = c.pick(["backend", "env", "dims", "where"])
        backend = c.pick(BACKENDS) if bad != "backend" else c.pick(["nope", "", 3, None, 2.5])
        if bad == "env":
            kw["env"] = c.pick(["nope", 3, {}, b"cpu"])
        elif bad == "dims":
            kw["dims"] = c.pick([0, 4, (), "2", 1.5, [5], (1, 9), -1])
        elif bad == "where":
            kw["where"] = c.pick(["N<=", "N<=8, N>=9", 3, ["N<=8", 3], "Q<=1", "lambda: 1",
                                  "D and 1", "N//0==1", "(" * 200])
        return symconv.reach, [backend], kw
    args = [_symbolic_free(a) for a in _conv_args(c)]
    kw = {"env": c.pick(ENVS), "want": c.pick([None] + BACKENDS)}
    bad_arg = c.pick(["stride", "groups", "input", "want", "env"])
    if bad_arg == "stride":
        args[3] = c.pick([1.5, None, "", [None], [1.5, 1], object(), -(2**63) - 1])
    elif bad_arg == "groups":
        args[8] = c.pick([1.5, None, True, "", [1, 2]])
    elif bad_arg == "input":
        args[0] = c.pick([None, 3, "x", [1, 2], _spec(())])
    elif bad_arg == "want":
        kw["want"] = c.pick(["nope", 3, 2.5, ""])
    else:
        kw["env"] = c.pick(["nope", 3, {}])
    return symconv.explain, args, kw


def _lowering_call(c):
    """symconv.convolution with arguments it must refuse before any kernel runs."""
    x = c.pick(["x", None, 3, 1.5, [1, 2], _spec((1, 3, 8, 8)), object()])
    w = c.pick(["w", None, 3, torch.empty(4, 3, 3, 3), _spec((4, 3, 3, 3))])
    kw = {}
    if c.coin():
        kw["backend"] = c.pick(["nope", 99, -1, 2.5, ""])
    if c.coin():
        kw["env"] = c.pick([3, "nope", {}])
    if isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor) and not kw:
        kw["backend"] = "nope"
    return symconv.convolution, [x, w], kw


FAMILIES = {"api": _api_call, "functional": _functional_call, "pad": _pad_call,
            "modules": _module_call, "constructors": _constructor_call, "queries": _query_call,
            "lowering": _lowering_call}


def check_call(call) -> None:
    fn, args, kw = call
    call_contract(fn, *args, **kw)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fuzz_api(family):
    tried = fz.run_seeded(f"api/{family}", FAMILIES[family], check_call)
    print(f"fuzz api[{family}]: {tried} calls")
    assert tried >= fz.DEFAULT_EXAMPLES


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fuzz_api_slow(family):
    tried = [0]

    @SLOW
    @given(fz.drawn(FAMILIES[family]))
    def run(call):
        tried[0] += 1
        check_call(call)
    run()
    # (a small family, e.g. lowering's wrong types, can be exhausted before 10,000)
    print(f"fuzz api[{family}] (slow): {tried[0]} calls")


# --------------------------------------------------------------------------------------
# torch's Python argument parser: for arguments of the wrong Python type, symconv's
# functional layer raises what torch raises (type and first line), measured on meta tensors
# (no kernel runs; a call torch's parser accepts is not compared)

TORCH_FUNCS = [("conv1d", 1), ("conv2d", 2), ("conv3d", 3), ("conv_transpose1d", 1),
               ("conv_transpose2d", 2), ("conv_transpose3d", 3)]
WRONG = [1.5, None, True, False, "1.5", "", "a b", object(), {}, {1: 2}, 1j, np.float64(2.0),
         np.int64(2), np.bool_(True), torch.tensor([2, 2]), torch.tensor(2.0), torch.tensor(2),
         [1.5, 1], [1, 1.5], [1, None], [None, 1], [True, 1], [1, True], [2**70, 1], [1, 2**70],
         2**70, -(2**63) - 1, 2**63 - 1, [], (1,), range(2), [np.float64(1), 1], [1, "a b"],
         [object()], 1, 2, [1, 1], 0, -1]
ARG_NAMES = {"conv": ["bias", "stride", "padding", "dilation", "groups"],
             "conv_transpose": ["bias", "stride", "padding", "output_padding", "groups",
                                "dilation"]}


def _meta(shape):
    return torch.empty(shape, device="meta")


def _parser_call(c):
    name, n = c.pick(TORCH_FUNCS + [("pad", 2)])
    x = _meta((1, 4) + (6,) * n) if c.num(0, 9) else c.pick(WRONG)
    if name == "pad":
        args = [x, c.pick(WRONG + [[1, 1], [1, 1, 1, 1], 3])]
        kw = {}
        if c.coin():
            kw["mode"] = c.pick(["constant", "reflect", None, 3, 1.5, "bogus"])
        if c.coin():
            kw["value"] = c.pick([None, 1.0, 2, "v", 1j, True, object()])
        if c.coin():
            args += [kw.pop("mode", "constant")]
        return name, args, kw
    w = _meta((4, 4) + (3,) * n) if c.num(0, 9) else c.pick(WRONG)
    names = ARG_NAMES["conv_transpose" if "transpose" in name else "conv"]
    # (an identifier string is a symbol name in symconv: only torch's own padding strings are
    # drawn, and "full", a bad one, where torch's parser takes a string)
    paddings = ["same", "valid"] + (["full"] if "transpose" not in name else [])
    kw = {k: c.pick(WRONG + (paddings if k == "padding" else []))
          for k in names if c.num(0, 2) == 0}
    args = [x, w]
    # some arguments positionally (in order), the rest by keyword
    for k in names:
        if k in kw and c.coin() and len(args) == 2 + names.index(k):
            args.append(kw.pop(k))
    return name, args, kw


def _outcome(fn, args, kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn(*args, **kw)
            return None
        except Exception as e:  # noqa: BLE001 - compared below
            return type(e), (str(e).splitlines() or [""])[0]


_GOT = re.compile(r"^(.*received an invalid combination of arguments - got \()(.*)(\), but .*)$")


def _kw_order_free(out):
    """torch lists keyword arguments in the iteration order of a C++ hash map (reverse call
    order up to four of them, measured; not modelled beyond): compare them as a set."""
    etype, msg = out
    m = _GOT.match(msg)
    if not m:
        return out
    items = m.group(2).split(", ")
    pos = [i for i in items if "=" not in i]
    kws = sorted(i for i in items if "=" in i)
    return etype, m.group(1) + ", ".join(pos + kws) + m.group(3)


def _torch_parser_error(name: str, out) -> bool:
    """An error of torch's argument parser (not of a meta kernel run after it)."""
    if out is None:
        return False
    etype, msg = out
    return (etype is TypeError and msg.startswith(name + "(")) or (
        etype is ValueError and msg.startswith("Overflow"))


def check_parser_call(call) -> None:
    name, args, kw = call
    theirs = _outcome(getattr(torch.nn.functional, name), args, kw)
    if not _torch_parser_error(name, theirs):
        return
    ours = _outcome(getattr(F, name), args, kw)
    assert ours is not None, f"symconv accepted what torch's parser refused: {theirs}\n" + \
        _show(getattr(F, name), args, kw)
    assert ours[0] is theirs[0], f"\ntorch:   {theirs}\nsymconv: {ours}\n" + \
        _show(getattr(F, name), args, kw)
    if sum(1 for _ in kw) <= 4 and ours[1] == theirs[1]:
        return
    assert _kw_order_free(ours) == _kw_order_free(theirs), \
        f"\ntorch:   {theirs}\nsymconv: {ours}\n" + _show(getattr(F, name), args, kw)


def test_functional_argument_errors_match_torch():
    tried = fz.run_seeded("api/parser", _parser_call, check_parser_call)
    assert tried >= fz.DEFAULT_EXAMPLES
