"""symconv.strategies: drawn calls reach the requested backend (torch agrees), without
rejection, and invalid draws are calls torch rejects."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symconv import ConvBackend, ConvError
from symconv.strategies import ConvArgs, backends, conv_args

FAST = settings(max_examples=15, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.mark.parametrize("backend", ["NnpackSpatial", "Mkldnn", "SlowDilated2d", "Empty",
                                     "SlowTranspose3d"])
def test_draws_reach_the_backend_on_torch(backend):
    seen = set()

    @FAST
    @given(conv_args(backend=backend, env="native"))
    def check(a: ConvArgs):
        assert a.backend == ConvBackend.parse(backend)
        assert a.symconv_backend() == a.backend
        assert a.torch_backend() == a.backend, a
        seen.add((tuple(a.input.shape), tuple(a.weight.shape)))

    check()
    assert len(seen) > 5  # the draws vary


@FAST
@given(conv_args(env="native", where="N >= 2, H == W", dims=2, bias=True))
def test_any_backend_with_constraints(a: ConvArgs):
    assert a.input.shape[0] >= 2 and a.input.shape[2] == a.input.shape[3]
    assert a.bias is not None and a.bias.shape[0] == (a.weight.shape[0] if not a.transposed
                                                      else a.weight.shape[1] * a.groups)
    assert a.torch_backend() == a.backend


@FAST
@given(conv_args(valid=False, env="native"))
def test_invalid_draws_are_rejected_by_torch(a: ConvArgs):
    assert a.backend is None and a.error
    with pytest.raises(RuntimeError):
        a.torch_backend()
    with pytest.raises(ConvError) as e:
        a.symconv_backend()
    assert e.value.check.name == a.error


@settings(FAST, max_examples=8)
@given(conv_args(backend="Cudnn", env="cuda-h100", dims=2, where="G >= 2, dtype == float16"))
def test_cuda_draws_follow_symconv(a: ConvArgs):
    # not replayable here (no CUDA): symconv's int path must agree with the region
    assert a.input.device == "cuda" and a.groups >= 2 and a.input.dtype == torch.float16
    assert a.symconv_backend() == ConvBackend.Cudnn


@FAST
@given(backends(env="native"), st.data())
def test_backends_strategy(b, data):
    a = data.draw(conv_args(backend=b, env="native"))
    assert a.torch_backend() == b


def test_unreachable_and_bad_requests():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="not reachable"):
            conv_args(backend="Cudnn", env="cpu").example()
        with pytest.raises(ValueError):
            conv_args(backend="Slow2d", valid=False).example()


def test_draws_are_deterministic_and_start_small():
    def run():
        out = []

        @settings(max_examples=6, deadline=None, database=None, derandomize=True)
        @given(conv_args(backend="NnpackSpatial", env="native"))
        def collect(a):
            out.append((tuple(a.input.shape), tuple(a.weight.shape), tuple(a.padding)))

        collect()
        return out

    first = run()
    assert first == run()
    assert first[0][0][0] == 16  # the simplest draw: the smallest batch NNPACK takes
