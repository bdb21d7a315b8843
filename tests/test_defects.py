"""Regression tests for defects found by fuzzing (issue "Harden and ship"): each asserts the
contract the defect broke, through the public API. The CLI's side is tests/test_cli_defects.py.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import z3

import symconv
from symconv import TensorSpec as T
from symconv.env import PRESETS, Environment, environment_for, preset, preset_names
from symconv.errors import ConvError, ConvShapeError
from symconv.profiles import PROFILES, profile

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


# --------------------------------------------------------------------------------------
# 2. Environment fields were not checked: cuda_capability=9, torch_version={}, a Z3 term as
#    cudnn_depthwise_kernel, and environment_for took any dotted version ("9.99", "2.99.1").


BAD_FIELDS = [
    # (field, value, exception type) -- the first three are tests/test_fuzz_api.py's reproducers
    ("cuda_capability", 9, TypeError),
    ("torch_version", {}, TypeError),
    ("cudnn_depthwise_kernel", z3.Bool("b"), TypeError),
    ("cuda_capability", (9,), TypeError),
    ("cuda_capability", (9, 0, 1), TypeError),
    ("cuda_capability", (9.0, 0), TypeError),
    ("cuda_capability", (True, 0), TypeError),
    ("cuda_capability", (9, -1), ValueError),
    ("torch_version", None, TypeError),
    ("torch_version", 2.13, TypeError),
    ("torch_version", "2.x", ValueError),
    ("torch_version", "9.99", ValueError),
    ("torch_version", "2.99.1", ValueError),
    ("torch_version", "2.3.0", ValueError),
    ("cudnn_depthwise_kernel", None, TypeError),
    ("cudnn_depthwise_kernel", "fast", ValueError),
    ("cudnn_version", "91900", TypeError),
    ("cudnn_version", True, TypeError),
    ("cudnn_version", 0, ValueError),
    ("num_threads", True, TypeError),
    ("num_threads", 2.0, TypeError),
    ("num_threads", 0, ValueError),
    ("num_threads", 2**40, ValueError),
    ("mkldnn_enabled", 1, TypeError),
    ("grad_enabled", None, TypeError),
    ("cuda_available", "yes", TypeError),
    ("mkldnn_bf16_supported", z3.Bool("b"), TypeError),
]


@pytest.mark.parametrize("field,value,exc", BAD_FIELDS)
def test_environment_refuses_a_bad_field_naming_it(field, value, exc):
    with pytest.raises(exc) as e:
        dataclasses.replace(preset("cpu"), **{field: value})
    assert type(e.value) is exc
    assert re.match(rf"Environment\.{field}[ :]", str(e.value)), str(e.value)
    with pytest.raises(exc):
        Environment(**{field: value})


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Environment)])
def test_every_field_is_checked(field):
    """No field takes an arbitrary object: each one's check names it."""
    with pytest.raises(TypeError, match=rf"^Environment\.{field} must be"):
        preset("cpu").replace(**{field: object()})


def test_good_values_are_kept_and_normalised():
    env = preset("cpu").replace(cuda_capability=[8, 6], mkldnn_enabled=np.bool_(False),
                                num_threads=np.int64(4), cudnn_version=np.int32(8902))
    assert env.cuda_capability == (8, 6) and type(env.cuda_capability[0]) is int
    assert env.mkldnn_enabled is False and type(env.num_threads) is int
    assert env.cudnn_version == 8902 and type(env.cudnn_version) is int
    assert preset("cpu").replace(cuda_capability=None, cudnn_version=None).cuda_capability is None


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_still_builds(name):
    env = preset(name)
    assert dataclasses.replace(env) == env
    assert Environment(**{f.name: getattr(env, f.name)
                          for f in dataclasses.fields(Environment)}) == env


@pytest.mark.parametrize("text", ["9.99", "2.99.1", "1.13", "2.3", "2.16", "3.0"])
def test_environment_for_refuses_versions_without_a_profile(text):
    with pytest.raises(ValueError) as e:
        environment_for(text)
    msg = str(e.value)
    assert msg.startswith(f"unknown torch version {text!r}")
    for p in PROFILES:  # it lists the known ones
        assert f"{p.name}: {p.torch_version}" in msg


@pytest.mark.parametrize("text,profile_name", [
    ("2.4", "seed"), ("2.4.1", "seed"), ("2.9", "seed"), ("2.10", "2.10"), ("2.12", "2.11"),
    ("2.13", "2.13"), ("2.14", "2.13"), ("main", "main"), ("seed", "seed"), ("2.15", "main")])
def test_environment_for_maps_a_version_to_the_newest_profile_not_above_it(text, profile_name):
    env = environment_for(text)
    assert profile(env.version).name == profile_name
    assert env == PRESETS["cpu"][1].replace(torch_version=env.torch_version)


def test_environment_for_names_a_wrong_argument_type():
    with pytest.raises(TypeError, match=r"^name must be"):
        environment_for(z3.Int("v"))
    with pytest.raises(TypeError, match=r"^base must be"):
        environment_for("2.13", "cpu")


# --------------------------------------------------------------------------------------
# 3. diff accepted contradictory constraints and answered "no difference (proof)" over an
#    empty set of calls; reach refused them.


@pytest.mark.parametrize("where", [["N>=4", "N<=2"], "N<0", "H < 0, not transposed",
                                   "N >= 9223372036854775808"])
def test_diff_refuses_contradictory_constraints(where):
    from symconv.queries.where import WhereError
    with pytest.raises(WhereError, match=r"^the constraints contradict each other: no sizes "
                                         r"satisfy "):
        symconv.diff("cpu", "seed", dims=2, where=where, validate=False)


def test_reach_and_diff_refuse_the_same_constraints_alike():
    from symconv.queries.where import WhereError
    messages = []
    for call in (lambda: symconv.diff("cpu", "seed", dims=2, where="N>=4, N<=2", validate=False),
                 lambda: symconv.reach("Mkldnn", env="cpu", dims=2, where="N>=4, N<=2",
                                       validate=False)):
        with pytest.raises(WhereError) as e:
            call()
        messages.append(str(e.value))
    assert messages[0] == messages[1]


def test_diff_still_compares_under_satisfiable_constraints():
    res = symconv.diff("cpu", "cpu-mt", dims=1, where="N>=4, N<=4, not transposed",
                       validate=False)
    assert res.verdict in ("different", "no difference")


# --------------------------------------------------------------------------------------
# 5. explain --want suggested "dilation 0" (torch's checks accept it, no kernel computes it)
#    to reach Mkldnn from a 1x1 convolution.


def _want(want, input_shape=(2, 3, 8, 8)):
    return symconv.explain(T(input_shape), T((4, 3, 1, 1)), None, [1], [0], [1], False, [0], 1,
                           env="cpu", want=want).want


def test_explain_suggests_no_degenerate_dilation():
    w = _want("Mkldnn")
    assert w.verdict == "reachable" and w.changes and not w.note
    assert all(v >= 1 for n, v in w.witness.values.items() if n.startswith("dil"))
    assert all(v >= 1 for n, v in w.witness.values.items() if n in ("N", "C", "H", "W"))
    assert w.validation.status == "validated"  # torch picks Mkldnn for the suggested call
    assert w.witness.symconv_backend() == symconv.ConvBackend.Mkldnn


def test_explain_says_when_only_degenerate_values_reach_a_backend():
    w = _want("Empty")
    assert w.verdict == "reachable" and w.validation.status == "validated"
    assert min(w.witness.values[n] for n in ("N", "C")) == 0
    assert w.note.startswith("note: only degenerate values reach Empty from this call (")
    assert "an empty tensor" in w.note
