"""Regression tests for defects found by fuzzing (issue "Harden and ship"): each asserts the
contract the defect broke, through the public API. The CLI's side is tests/test_cli_defects.py.
"""

from __future__ import annotations

import pytest

import symconv
from symconv import TensorSpec as T
from symconv.errors import ConvError, ConvShapeError

# --------------------------------------------------------------------------------------
# 1. groups == 0 under the seed's profile: torch 2.4's check_shape_forward has no groups check
#    before weight.size(0) % groups; symconv refused it with a Python ZeroDivisionError.


SEED_GROUPS_LINE = "non-positive groups is not supported"


def _seed_call(groups, **kw):
    return symconv.select_conv_backend(T((1, 3, 8, 8)), T((1, 3, 8, 8)), None, 1, 0, 0, True, 0,
                                       groups, env=symconv.preset("seed"), **kw)


def test_seed_groups_zero_is_the_seeds_groups_error():
    with pytest.raises(ConvShapeError) as e:
        _seed_call(0)
    lines = str(e.value).splitlines()
    # the line the seed's _convolution gives (it checks groups before any shape check) ...
    assert lines[0] == SEED_GROUPS_LINE
    # ... and it says why: the seed's selection itself divides by groups
    assert "groups=0" in lines[1] and "divides" in lines[1]
    assert e.value.check is not None and e.value.check.name == "groups_zero_division"
    # the same first line as the convolution entry of the same profile
    with pytest.raises(ConvError) as conv:
        symconv.convolution_output_shape(T((1, 3, 8, 8)), T((1, 3, 8, 8)), None, 1, 0, 0, True,
                                         0, 0, env=symconv.preset("seed"))
    assert str(conv.value).splitlines()[0] == SEED_GROUPS_LINE


def test_seed_negative_groups_keep_the_seeds_order():
    """Only 0 divides by zero: negative groups go on to the seed's channel check."""
    with pytest.raises(ConvShapeError, match=r"^Given groups=-1, weight of size"):
        symconv.select_conv_backend(T((1, 3, 8, 8)), T((1, 3, 8, 8)), None, 1, 0, 1, False, 0,
                                    -1, env=symconv.preset("seed"))


def test_seed_symbolic_groups_name_zero_before_the_division():
    sel = symconv.select_conv_backend(T((1, 3, 8, 8)), T((1, 3, 8, 8)), None, 1, 0, 1, False, 0,
                                      "G", env=symconv.preset("seed"))
    assert sel.at(G=1) == symconv.ConvBackend.Mkldnn
    with pytest.raises(ConvShapeError, match=f"^{SEED_GROUPS_LINE}"):
        sel.at(G=0)
    # torch 2.13's profile keeps its own groups check and message
    with pytest.raises(ConvShapeError, match=r"^expected groups to be greater than 0, but got "
                                             r"groups=0$"):
        symconv.select_conv_backend(T((1, 3, 8, 8)), T((1, 3, 8, 8)), None, 1, 0, 1, False, 0, 0,
                                    env=symconv.preset("cpu"))


def test_seed_groups_zero_is_still_a_crash_for_diff():
    """symconv diff keeps calling the seed's groups == 0 a crash (its concrete answer)."""
    from symconv.queries.diff import CRASH, concrete_outcome
    values = {"N": 1, "C": 3, "L": 8, "Cout": 1, "Cg": 3, "kL": 8, "strideL": 1, "padL": 0,
              "dilL": 1, "opadL": 0, "G": 0}
    facts = {"device": "cpu", "dtype": "float32", "layout": "strided", "input_mf": "contiguous",
             "weight_mf": "contiguous", "requires_grad": False}
    label, shape, message = concrete_outcome(symconv.preset("seed"), 1, False, values, facts)
    assert label == ("crash",) and shape is None and message == CRASH
