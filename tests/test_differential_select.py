"""Differential tests: symconv's backend, memory format and first error line vs the installed torch.

The default run draws 2,000 cases with the derandomized CI profile; ``-m slow`` draws 20,000.
Selection runs no kernel, so torch is asked in-process.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from tests import oracle
from tests.strategies import conv_case

REGRESSIONS = [
    # groups <= 0 is refused before the padding bound (torch >= 2.10 ordering)
    {"input": {"shape": [2, 3, 4, 5]}, "weight": {"shape": [4, 3, 3, 3]}, "bias": None,
     "stride": [1], "padding": [2**62], "dilation": [1], "transposed": False,
     "output_padding": [0], "groups": 0},
    # 2-D weight: selection does not require >= 3 weight dims
    {"input": {"shape": [2, 3]}, "weight": {"shape": [4, 3]}, "bias": None, "stride": [],
     "padding": [], "dilation": [], "transposed": False, "output_padding": [], "groups": 1},
    # dilation 0 passes the shape checks
    {"input": {"shape": [1, 3, 8, 8]}, "weight": {"shape": [4, 3, 3, 3]}, "bias": None,
     "stride": [1], "padding": [0], "dilation": [0], "transposed": False,
     "output_padding": [0], "groups": 1},
    # input + 2 * padding overflows int64 in the message
    {"input": {"shape": [2, 3, 4, 5]}, "weight": {"shape": [4, 3, 3, 3]}, "bias": None,
     "stride": [1], "padding": [2**62 - 1], "dilation": [1], "transposed": False,
     "output_padding": [0], "groups": 1},
    # 2-D weight and input: use_mkldnn's 20480 heuristic reads input.size(3) (found by the slow
    # run of tests/test_differential_convolution.py's round; IndexError in torch)
    {"input": {"shape": [1, 1]}, "weight": {"shape": [2, 1]}, "bias": None, "stride": [1],
     "padding": [0], "dilation": [1], "transposed": False, "output_padding": [0], "groups": 1,
     "flags": {"threads": 1, "mkldnn": True}},
    # channels_last input with a unit channel dimension
    {"input": {"shape": [2, 1, 5, 5], "memory_format": "channels_last"},
     "weight": {"shape": [4, 1, 3, 3]}, "bias": None, "stride": [1], "padding": [0],
     "dilation": [1], "transposed": False, "output_padding": [0], "groups": 1},
]


def check_case(case: dict) -> None:
    want = oracle.torch_select(case)
    got = oracle.symconv_select(case)
    assert got == want, f"case {json.dumps(case)}\n torch:   {want}\n symconv: {got}"


@pytest.mark.parametrize("case", REGRESSIONS)
def test_regressions(case):
    check_case(case)


@settings(max_examples=2000)
@given(conv_case())
def test_select_matches_torch(case):
    check_case(case)


@pytest.mark.slow
@settings(max_examples=20000, derandomize=False)
@given(conv_case())
def test_select_matches_torch_slow(case):
    check_case(case)


def test_two_threads_change_the_answer_as_torch_does():
    # batch 1, 1x1 kernel, 3*128*128 > 20480 elements: oneDNN only when multi-threaded
    case = {"input": {"shape": [1, 3, 128, 128]}, "weight": {"shape": [4, 3, 1, 1]},
            "bias": None, "stride": [1], "padding": [0], "dilation": [1], "transposed": False,
            "output_padding": [0], "groups": 1, "flags": {"threads": 1}}
    one = oracle.torch_select(case)
    check_case(case)
    case["flags"] = {"threads": 2}
    two = oracle.torch_select(case)
    check_case(case)
    assert (one["backend"], two["backend"]) == ("Slow2d", "Mkldnn")
