"""symconv.nn: drop-in convolution modules checked by symconv, eager and under torch.compile.

Arguments here are fixed and small (not drawn), so kernels run in-process.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from symconv import ConvError
from symconv import nn as snn

PAIRS = [
    (snn.Conv1d, torch.nn.Conv1d, dict(in_channels=4, out_channels=6, kernel_size=3), (2, 4, 9)),
    (snn.Conv2d, torch.nn.Conv2d, dict(in_channels=4, out_channels=6, kernel_size=3, stride=2,
                                       padding=1, groups=2), (2, 4, 9, 8)),
    (snn.Conv2d, torch.nn.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=(2, 3),
                                       padding="same", dilation=2), (1, 3, 7, 7)),
    (snn.Conv2d, torch.nn.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=3, padding=2,
                                       padding_mode="reflect"), (2, 3, 6, 6)),
    (snn.Conv2d, torch.nn.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=3, padding=1,
                                       padding_mode="circular", bias=False), (3, 6, 6)),
    (snn.Conv3d, torch.nn.Conv3d, dict(in_channels=2, out_channels=4, kernel_size=3, padding=1,
                                       dilation=(1, 2, 1)), (1, 2, 5, 6, 5)),
    (snn.ConvTranspose1d, torch.nn.ConvTranspose1d,
     dict(in_channels=4, out_channels=2, kernel_size=3, stride=2, output_padding=1), (2, 4, 7)),
    (snn.ConvTranspose2d, torch.nn.ConvTranspose2d,
     dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, groups=2), (2, 4, 5, 5)),
    (snn.ConvTranspose3d, torch.nn.ConvTranspose3d,
     dict(in_channels=2, out_channels=3, kernel_size=2, stride=(2, 1, 2)), (1, 2, 3, 4, 3)),
]


def _pair(k):
    mine_cls, torch_cls, kw, shape = PAIRS[k]
    torch.manual_seed(k)
    ref = torch_cls(**kw)
    mine = mine_cls(**kw)
    mine.load_state_dict(ref.state_dict())
    return mine, ref, shape


@pytest.mark.parametrize("k", range(len(PAIRS)))
def test_same_results_and_gradients_as_torch(k):
    mine, ref, shape = _pair(k)
    assert isinstance(mine, type(ref)) and repr(mine) == repr(ref)
    assert mine.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(shape, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = mine(x), ref(x)
    assert torch.equal(a, b)
    ga = torch.autograd.grad(a.sum(), [x, mine.weight])
    gb = torch.autograd.grad(b.sum(), [x, ref.weight])
    for u, v in zip(ga, gb):
        assert torch.equal(u, v)


def test_transposed_output_size_like_torch():
    torch.manual_seed(0)
    ref = torch.nn.ConvTranspose2d(3, 4, 3, stride=2)
    mine = snn.ConvTranspose2d(3, 4, 3, stride=2)
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(mine(x, output_size=[18, 18]), ref(x, output_size=[18, 18]))
    with pytest.raises(ValueError) as want:
        ref(x, output_size=[30, 30])
    with pytest.raises(ValueError) as got:
        mine(x, output_size=[30, 30])
    assert str(got.value) == str(want.value)


INVALID = [
    (0, (2, 5, 9)),  # channels
    (0, (9,)),  # batchify
    (0, (2, 4, 2)),  # kernel larger than the input
    (5, (1, 2, 4, 1, 5)),  # dilated kernel larger than the padded input
    (7, (2, 3, 5, 5)),  # transposed: channels
    (1, (2, 4, 9, 8, 1)),  # 5-D input to Conv2d
]


@pytest.mark.parametrize("k", range(len(INVALID)))
def test_invalid_inputs_raise_torchs_error_before_running(k, monkeypatch):
    pair, shape = INVALID[k]
    mine, ref, _ = _pair(pair)
    x = torch.randn(shape)
    with pytest.raises(RuntimeError) as want:
        ref(x)

    def ran(*a, **kw):  # the convolution must not be reached
        raise AssertionError("the convolution ran")
    monkeypatch.setattr(type(mine), "_fn", staticmethod(ran), raising=False)
    monkeypatch.setattr(torch.nn.functional, "conv_transpose2d", ran)
    with pytest.raises(ConvError) as got:
        mine(x)
    assert str(got.value).splitlines()[0] == str(want.value).splitlines()[0]


def test_padding_mode_pad_errors_stay_torchs():
    mine, ref, _ = _pair(3)  # reflect padding 2 on a 2x2 input: F.pad refuses
    x = torch.randn(2, 3, 2, 2)
    with pytest.raises(RuntimeError) as want:
        ref(x)
    with pytest.raises(RuntimeError) as got:
        mine(x)
    assert str(got.value) == str(want.value)


def test_check_call_returns_the_plan():
    m = snn.Conv2d(4, 6, 3, groups=2)
    pl = snn.check_call(torch.zeros(2, 4, 8, 8), m.weight, m.bias, m.stride, m.padding,
                        m.dilation, False, (0, 0), m.groups)
    assert pl.backend.name in ("Mkldnn", "Slow2d") and pl.output_size == [2, 6, 6, 6]


# ----------------------------------------------------------------------------------------
# torch.compile: no graph breaks, symconv's check still runs


def _compiled_run(module, shapes, backend, monkeypatch):
    import torch._dynamo
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    calls = []
    real = snn.check_call
    monkeypatch.setattr(snn, "check_call", lambda *a: calls.append(a) or real(*a))
    compiled = torch.compile(module, backend=backend, fullgraph=True)
    outs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for shape in shapes:
            x = torch.randn(shape)
            outs.append((compiled(x), module(x)))
    assert not torch._dynamo.utils.counters["graph_break"], \
        dict(torch._dynamo.utils.counters["graph_break"])
    for a, b in outs:
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    return calls


def test_compile_eager_backend_no_graph_breaks(monkeypatch):
    m = snn.Conv2d(3, 4, 3, padding=1)
    # the second shape makes dynamo recompile with dynamic sizes (read through their hints)
    calls = _compiled_run(m, [(2, 3, 8, 8), (2, 3, 10, 10), (3, 3, 12, 9)], "eager",
                          monkeypatch)
    # at trace time (fake tensors) and at run time (the eager backend runs the check)
    assert len(calls) >= 4


def test_compile_aot_eager_transposed(monkeypatch):
    m = snn.ConvTranspose2d(3, 4, 3, stride=2)
    calls = _compiled_run(m, [(2, 3, 5, 5), (2, 3, 7, 6)], "aot_eager", monkeypatch)
    assert calls


def test_compile_falls_back_to_symconvs_error_without_fullgraph():
    import torch._dynamo
    torch._dynamo.reset()
    m = snn.Conv2d(3, 4, 3)
    compiled = torch.compile(m, backend="eager")
    compiled(torch.randn(1, 3, 6, 6))
    with pytest.raises(ConvError, match="expected input\\[1, 5, 6, 6\\] to have 3 channels"):
        compiled(torch.randn(1, 5, 6, 6))


@pytest.mark.slow
@pytest.mark.parametrize("cls,args,shapes", [
    (snn.Conv2d, (3, 8, 3), [(2, 3, 16, 16), (2, 3, 20, 18), (4, 3, 9, 9)]),
    (snn.Conv1d, (4, 4, 3), [(2, 4, 16), (3, 4, 20)]),
    (snn.ConvTranspose2d, (3, 4, 3), [(2, 3, 8, 8), (2, 3, 9, 11)]),
    (snn.Conv3d, (2, 4, 3), [(1, 2, 6, 6, 6), (1, 2, 7, 8, 6)]),
])
def test_compile_inductor(cls, args, shapes, monkeypatch):
    m = cls(*args)
    calls = _compiled_run(m, shapes, "inductor", monkeypatch)
    assert calls
