"""The places where mypy's findings in symconv/functional.py looked like bugs, pinned by
behaviour. None was a runtime bug (each was checked); the type fixes changed the code there
(keyword-only ``env`` in the replay calls, ``_Run.fail`` typed ``NoReturn``), and these tests
keep the behaviour.
"""

from __future__ import annotations

import pytest
import torch

import symconv
from symconv import TensorSpec
from symconv import functional as SF

# mobile (no oneDNN, no NNPACK) writes a channels-last 2-d input's output contiguously, the CPU
# preset in channels-last: the answer depends on the environment
CALLS = [
    (SF.conv1d, (2, 4, 6), (4, 4, 3), {"stride": 2, "dilation": 1}),
    (SF.conv2d, (2, 4, 6, 6), (4, 2, 3, 3), {"groups": 2, "padding": 1}),
    (SF.conv3d, (2, 4, 5, 5, 5), (4, 4, 3, 3, 3), {"dilation": 2}),
    (SF.conv_transpose1d, (2, 4, 6), (4, 4, 3), {"output_padding": 1, "stride": 2}),
    (SF.conv_transpose2d, (2, 4, 6, 6), (4, 4, 3, 3), {"stride": 2, "output_padding": 1}),
    (SF.conv_transpose3d, (2, 4, 5, 5, 5), (4, 4, 3, 3, 3), {"padding": 1}),
]


@pytest.mark.parametrize("fn,xshape,wshape,kw", CALLS, ids=[c[0].__name__ for c in CALLS])
def test_symbolic_replay_keeps_the_environment_and_arguments(fn, xshape, wshape, kw):
    """``SymbolicOutput.at`` replays the call with the symbol values put in, with the same
    parameters (in their positions) and the same environment."""
    mf = torch.channels_last if len(xshape) == 4 else torch.contiguous_format
    sym = xshape[:2] + ("H",) + xshape[3:]  # (one symbol: a symbolic call costs per symbol)
    values = {"H": xshape[2]}
    for env in (symconv.preset("mobile"), symconv.preset("cpu")):
        out = fn(TensorSpec(sym, memory_format=mf), TensorSpec(wshape), env=env, **kw)
        assert isinstance(out, SF.SymbolicOutput)
        want = fn(TensorSpec(xshape, memory_format=mf), TensorSpec(wshape), env=env, **kw)
        assert out.at(**values) == want
        assert out.outcome_at(**values) == want
    if len(xshape) == 4:  # the environment matters here: a replay without it would not match
        mobile, cpu = (fn(TensorSpec(xshape, memory_format=mf), TensorSpec(wshape),
                          env=symconv.preset(e), **kw) for e in ("mobile", "cpu"))
        assert mobile.stride() != cpu.stride()


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), ("N", 3, 8, 8)])
def test_pad_unsupported_size_raises_like_torch(shape):
    """``_pad``'s last line (``run.fail``, NoReturn) raises; a symbolic input too."""
    with pytest.raises(NotImplementedError) as theirs:
        torch.nn.functional.pad(torch.empty(1, 3, 8, 8, device="meta"), [1] * 8, mode="reflect")
    with pytest.raises(NotImplementedError) as ours:
        SF.pad(TensorSpec(shape), [1] * 8, mode="reflect")
    assert str(ours.value).splitlines()[0] == str(theirs.value).splitlines()[0]
