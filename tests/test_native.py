"""The compiled warm path (symconv.native): it answers only calls whose plan the Python path
chose, with that plan's kernel, and hands back every call it cannot key exactly.

The module builds the extension once (about 30 s on a 2-core machine; cached afterwards)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

import symconv
from symconv import lowering, native


@pytest.fixture(scope="module")
def fast():
    native.enable()
    yield native
    native.disable()
    lowering.clear_cache()


def _python_path_off(mp: pytest.MonkeyPatch) -> None:
    """Make the Python warm and cold paths fail the test: a call that still succeeds was
    answered by the compiled path."""
    def ran(*a, **k):
        pytest.fail("the Python path ran")
    for name in ("_fast_get", "_forward_plan", "_listed_key"):
        mp.setattr(lowering, name, ran)


def _call(shape_in, shape_w, *, bias=True, stride=1, padding=0, dilation=1, transposed=False,
          output_padding=0, groups=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape_in, generator=g)
    w = torch.randn(*shape_w, generator=g)
    cout = shape_w[1] * groups if transposed else shape_w[0]
    b = torch.randn(cout, generator=g) if bias else None
    nd = len(shape_in) - 2

    def t(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd
    return (x, w, b, t(stride), t(padding), t(dilation), transposed, t(output_padding), groups)


# (name, arguments, mkldnn enabled): one call for every backend the compiled path runs on CPU
CPU_CASES = [
    ("Mkldnn", _call((2, 4, 9, 9), (6, 4, 3, 3), padding=1), True),
    ("Mkldnn", _call((2, 4, 9, 9), (6, 4, 3, 3), bias=False, stride=2), True),
    ("Slow2d", _call((1, 4, 9, 9), (6, 4, 3, 3), padding=1), False),
    ("SlowDilated2d", _call((1, 4, 9, 9), (6, 4, 3, 3), dilation=2), False),
    ("SlowDilated3d", _call((1, 2, 7, 7, 7), (3, 2, 3, 3, 3), dilation=2), False),
    ("SlowTranspose2d", _call((2, 4, 6, 6), (4, 3, 3, 3), transposed=True, stride=2,
                              output_padding=1), False),
    ("SlowTranspose3d", _call((1, 2, 4, 4, 4), (2, 3, 3, 3, 3), transposed=True), False),
    ("Slow3d", _call((1, 2, 6, 6, 6), (3, 2, 3, 3, 3)), False),
    ("NnpackSpatial", _call((16, 3, 8, 8), (4, 3, 3, 3), padding=1), False),
]


def test_backend_codes_are_atens():
    """The extension names backends by ATen's ConvBackend values; symconv's enum must have the
    same values (ConvUtils.h of the installed wheel)."""
    header = Path(torch.__file__).parent / "include" / "ATen" / "native" / "ConvUtils.h"
    body = re.search(r"enum class ConvBackend \{(.*?)\};", header.read_text(), re.S)
    assert body is not None
    names = [n.strip() for n in body.group(1).split(",") if n.strip()]
    assert native.backend_codes() == {n: i for i, n in enumerate(names)}


@pytest.mark.parametrize("name,args,mkldnn", CPU_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CPU_CASES)])
def test_warm_call_runs_the_python_paths_kernel(fast, name, args, mkldnn):
    if name == "NnpackSpatial" and not torch.backends.nnpack.is_available():
        pytest.skip("this torch has no NNPACK")
    with torch.backends.mkldnn.flags(enabled=mkldnn), torch.no_grad():
        assert lowering.plan(*args).backend.name == name
        want = torch.convolution(*args)
        before = fast.plan_count()
        first = symconv.convolution(*args)  # the Python path decides and registers
        assert fast.plan_count() == before + 1
        with pytest.MonkeyPatch.context() as mp:
            _python_path_off(mp)
            second = symconv.convolution(*args)  # answered by the compiled path
    assert torch.equal(first, want) and torch.equal(second, want)
    assert second.stride() == want.stride() and second.dtype == want.dtype


def test_list_and_int_parameters(fast):
    lowering.clear_cache()
    x, w, b, *_ = _call((2, 4, 9, 9), (6, 4, 3, 3))
    with torch.no_grad():
        want = torch.convolution(x, w, b, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
        for params in (([1, 1], [1, 1], [1, 1], False, [0, 0], 1),
                       ((1, 1), 1, (1, 1), False, 0, 1)):
            before = fast.plan_count()
            first = symconv.convolution(x, w, b, *params)
            assert fast.plan_count() == before + 1
            with pytest.MonkeyPatch.context() as mp:
                _python_path_off(mp)
                second = symconv.convolution(x, w, b, *params)
            assert torch.equal(first, want) and torch.equal(second, want)


@pytest.mark.parametrize("bad", [dict(stride=(1.0, 1.0)), dict(padding=(1, True)),
                                 dict(groups=True), dict(groups=1.0), dict(transposed=1),
                                 dict(stride=(2 ** 70, 1))])
def test_parameters_torch_would_refuse_take_the_python_path(fast, bad):
    """After a call with exact ints, the same values as floats, bools or out of int64 are not
    a hit: the Python path answers, as torch would (the error type, or the result)."""
    x, w, b, *_ = _call((1, 4, 9, 9), (6, 4, 3, 3))
    good = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), transposed=False,
                output_padding=(0, 0), groups=1)
    with torch.no_grad():
        symconv.convolution(x, w, b, **good)
        symconv.convolution(x, w, b, **good)
        args = dict(good, **bad)
        try:
            want = torch.convolution(x, w, b, **args)
        except Exception as e:  # noqa: BLE001 - the type is what is compared
            with pytest.raises(type(e)):
                symconv.convolution(x, w, b, **args)
        else:
            assert torch.equal(symconv.convolution(x, w, b, **args), want)


def test_autograd_calls_take_the_python_path(fast):
    x, w, b, s, p, d, t, op, g = _call((2, 4, 9, 9), (6, 4, 3, 3), padding=1)
    with torch.no_grad():
        symconv.convolution(x, w, b, s, p, d, t, op, g)
    w.requires_grad_(True)
    before = fast.plan_count()
    out = symconv.convolution(x, w, b, s, p, d, t, op, g)
    assert out.grad_fn is not None and fast.plan_count() == before
    (gw,) = torch.autograd.grad(out.sum(), w)
    w2 = w.detach().requires_grad_(True)
    (gw_t,) = torch.autograd.grad(torch.convolution(x, w2, b, s, p, d, t, op, g).sum(), w2)
    assert torch.allclose(gw, gw_t, atol=1e-5)


def test_flags_are_part_of_the_key(fast):
    """mkldnn off, or another thread count, is another key: the plan chosen under the old flags
    is not replayed (a 1x1 call of batch 2 goes to oneDNN only with more than one thread)."""
    args = _call((2, 4, 5, 5), (3, 4, 1, 1), bias=False)
    threads = torch.get_num_threads()
    try:
        with torch.no_grad():
            seen = {}
            for n_threads, mkldnn in ((1, True), (2, True), (2, False), (1, True)):
                torch.set_num_threads(n_threads)
                with torch.backends.mkldnn.flags(enabled=mkldnn):
                    backend = lowering.plan(*args).backend.name
                    want = torch.convolution(*args)
                    for _ in range(2):
                        assert torch.equal(symconv.convolution(*args), want)
                    seen[(n_threads, mkldnn)] = backend
    finally:
        torch.set_num_threads(threads)
    assert seen[(1, True)] == "Slow2d" and seen[(2, True)] == "Mkldnn"
    assert seen[(2, False)] == "Slow2d"


def test_strides_are_part_of_the_key(fast):
    x, w, b, s, p, d, t, op, g = _call((2, 4, 9, 9), (6, 4, 3, 3), padding=1)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)  # same shape, other strides
    with torch.no_grad():
        for inp in (x, x, xt, xt):
            assert torch.equal(symconv.convolution(inp, w, b, s, p, d, t, op, g),
                               torch.convolution(inp, w, b, s, p, d, t, op, g))


def test_modes_and_subclasses_take_the_python_path(fast):
    args = _call((2, 4, 9, 9), (6, 4, 3, 3), padding=1)
    with torch.no_grad():
        symconv.convolution(*args)
        symconv.convolution(*args)

        class Seen(TorchFunctionMode):
            def __init__(self):
                super().__init__()
                self.calls = 0

            def __torch_function__(self, func, types, a=(), kwargs=None):
                self.calls += 1
                return func(*a, **(kwargs or {}))
        with Seen() as mode:
            symconv.convolution(*args)
        assert mode.calls > 0  # the mode saw the kernel call

        class Sub(torch.Tensor):
            pass
        x = args[0].as_subclass(Sub)
        out = symconv.convolution(x, *args[1:])
        assert type(out) is type(torch.convolution(x, *args[1:]))


def test_clear_and_disable(fast):
    args = _call((2, 4, 9, 9), (6, 4, 3, 3), padding=1)
    with torch.no_grad():
        symconv.convolution(*args)
        assert fast.plan_count() > 0
        lowering.clear_cache()
        assert fast.plan_count() == 0
        native.disable()
        try:
            assert not native.enabled()
            assert torch.equal(symconv.convolution(*args), torch.convolution(*args))
            assert fast.plan_count() == 0
        finally:
            native.enable()
        assert native.enabled()


def test_threads_share_the_cache_while_it_is_cleared(fast):
    """Plans are kept alive while a call runs without the GIL: calls from several threads,
    with the cache cleared and refilled under them, all compute torch's result."""
    import threading
    cases = [_call((2, 4, 9, 9), (6, 4, 3, 3), padding=1, seed=s) for s in range(3)]
    with torch.no_grad():
        wants = [torch.convolution(*a) for a in cases]
    bad: list = []

    def work(k: int) -> None:
        with torch.no_grad():
            for i in range(150):
                a = cases[(i + k) % 3]
                if not torch.equal(symconv.convolution(*a), wants[(i + k) % 3]):
                    bad.append((k, i))
                if k == 0 and i % 10 == 0:
                    lowering.clear_cache()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


# --------------------------------------------------------------------------------------
# Fuzz: with the compiled path on, symconv.convolution answers every call exactly as the
# Python path alone does (result bitwise, or the error's type and first line), cold and warm;
# 1,000 seeded calls mixing valid small convolutions with wrong parameter values.

_X = {nd: torch.randn((2, 2) + (5,) * nd, generator=torch.Generator().manual_seed(nd))
      for nd in (1, 2, 3)}
_W = {(nd, t): torch.randn(((2, 3) if t else (3, 2)) + (2,) * nd,
                           generator=torch.Generator().manual_seed(10 + nd))
      for nd in (1, 2, 3) for t in (False, True)}
_B = torch.randn(3, generator=torch.Generator().manual_seed(99))


def _native_fuzz_call(c):
    from tests.test_fuzz_api import WRONG
    nd = c.num(1, 3)
    transposed = c.pick([False, True]) if c.num(0, 9) else c.pick([0, 1, None, "x"])
    x = _X[nd] if c.num(0, 9) else c.pick([_X[1 + nd % 3], _X[nd][0]])
    w = _W[(nd, transposed is True)]
    b = c.pick([None, _B]) if c.num(0, 9) else c.pick([_B[:2], _B.double(), 3])

    def param(lo: int, hi: int):
        if c.num(0, 5):
            v = [c.num(lo, hi) for _ in range(nd)]
            return c.pick([v, tuple(v)])
        return c.pick(WRONG)
    args = (x, w, b, param(1, 2), param(0, 1), param(1, 2), transposed, param(0, 1),
            c.pick([1] * 6 + [2, True, 1.0, 0, -1]))
    return args


def _outcome(args):
    try:
        with torch.no_grad():
            out = symconv.convolution(*args)
        return ("ok", out)
    except Exception as e:  # noqa: BLE001 - compared below
        return (type(e), (str(e).splitlines() or [""])[0])


def _same(a, b) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "ok":
        return bool(a[1].shape == b[1].shape and a[1].stride() == b[1].stride()
                    and torch.equal(a[1], b[1]))
    return a[1] == b[1]


@pytest.mark.parametrize("n", [1000, pytest.param(10_000, marks=pytest.mark.slow)])
def test_fuzz_compiled_path_answers_as_the_python_path(fast, n):
    from tests import fuzz_strategies as fz
    answered = [0]

    def check(args) -> None:
        native.disable()
        lowering.clear_cache()
        python = [_outcome(args), _outcome(args)]  # cold, then the Python warm path
        native.enable()
        lowering.clear_cache()
        before = fast.plan_count()
        compiled = [_outcome(args), _outcome(args)]  # cold (registers), then compiled
        answered[0] += fast.plan_count() > before
        for p, q in zip(python, compiled):
            assert _same(p, q), (args[3:], p[:1], q[:1])
    tried = fz.run_seeded(f"native/convolution/{n}", _native_fuzz_call, check, n=n)
    print(f"fuzz native: {tried} calls, {answered[0]} answered by compiled plans")
    assert tried >= n
    assert answered[0] >= n // 20  # a good share of the calls really went through the compiled path


def test_symconv_native_environment_variable(fast):
    """SYMCONV_NATIVE=1 enables the compiled path when symconv is imported (built already by the
    fixture, so this loads the cached build)."""
    import os
    import subprocess
    import sys
    code = ("import torch, symconv, symconv.native as n; x = torch.randn(1, 2, 5, 5); "
            "w = torch.randn(3, 2, 3, 3); a = (x, w, None, [1, 1], [0, 0], [1, 1], False, "
            "[0, 0], 1)\nwith torch.no_grad(): symconv.convolution(*a)\n"
            "print(n.enabled(), n.plan_count())")
    env = dict(os.environ, SYMCONV_NATIVE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "1"]
    env["SYMCONV_NATIVE"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.stdout.split() == ["False", "0"]
