"""Version profiles (symconv/profiles.py): the table is consistent, the version gates of the
rules are derived from it, and each profile's behaviour shows where it can be measured (the
installed torch 2.13 for the 2.13 side; the H100 records replay under the 2.11 profile in
tests/test_cuda_records.py)."""

from __future__ import annotations

import itertools

import pytest
import torch

import symconv
from symconv import ConvBackend, TensorSpec, preset
from symconv import params as P
from symconv.env import Environment, environment_for
from symconv.errors import ConvShapeError
from symconv.profiles import (FEATURES, NEWEST, PROFILES, SEED, profile, since,
                              torch_version_for, version_names)


def test_each_profile_is_the_previous_one_plus_its_changes():
    prev = None
    for p in PROFILES:
        assert set(p.features) == set(FEATURES)
        if prev is not None:
            assert p.version > prev.version
            assert p.changes, f"profile {p.name} changes nothing"
            expected = dict(prev.features)
            for c in p.changes:
                assert c.feature in FEATURES
                assert c.ref.strip(), f"{p.name}: {c.feature} has no upstream reference"
                assert prev.features[c.feature] != c.value, (p.name, c.feature)
                expected[c.feature] = c.value
            assert p.features == expected
        prev = p


def test_every_feature_changes_at_most_once_so_gates_are_versions():
    for f in FEATURES:
        values = [p.features[f] for p in PROFILES]
        changes = sum(1 for a, b in itertools.pairwise(values) if a != b)
        assert changes <= 1, f
        gate = since(f, values[-1])
        for p in PROFILES:
            assert (p.features[f] == values[-1]) == (p.version >= gate) or changes == 0


def test_profile_lookup_takes_the_newest_not_above():
    assert profile((1, 13)) is SEED
    assert profile((2, 4)) is SEED
    assert profile((2, 9)).name == "seed"
    assert profile((2, 10)).name == "2.10"
    assert profile((2, 12)).name == "2.11"
    assert profile((2, 14)).name == "2.13"
    assert profile((2, 15)) is NEWEST and profile((3, 0)) is NEWEST


def test_rule_gates_are_read_from_the_table():
    assert P.CUDA_RULES_NEW == since("cuda_rules", "2.11") == (2, 11)
    assert P.DEPTHWISE_KERNEL_FLAG == since("depthwise_kernel_flag") == (2, 13)
    assert P.MIOPEN_64BIT == since("miopen_64bit")
    assert P.NNPACK_REMOVED == since("nnpack", False) == NEWEST.version
    with pytest.raises(KeyError):
        since("no_such_feature")


def test_presets_read_the_expected_profiles():
    assert profile(preset("seed").version) is SEED
    assert profile(preset("cuda-h100").version).name == "2.11"
    assert profile(preset("cpu").version).name == "2.13"
    native = Environment.from_torch()
    assert profile(native.version).version <= native.version


def test_sides_by_version():
    assert torch_version_for("2.13") == "2.13.0"
    assert torch_version_for("2.4.1") == "2.4.1"
    assert torch_version_for("main") == NEWEST.torch_version
    assert torch_version_for("nonsense") is None
    assert environment_for("2.4") == preset("cpu").replace(torch_version="2.4.0")
    assert environment_for("main", preset("cuda-h100")).cudnn_version == 91900
    assert environment_for("cpu-mt") == preset("cpu-mt")
    with pytest.raises(ValueError, match="unknown environment preset or torch version"):
        environment_for("2,13")
    assert "main" in version_names() and "seed" in version_names()


def test_torch_2_13_answers_like_its_profile_and_not_like_the_seed():
    """The 2.13 profile's groups check is torch's (measured here); the seed's C++ has no check
    before weight_sizes[0] % groups: the seed profile refuses groups == 0 there instead of
    dividing by it, with the line its _convolution gives."""
    x, w = torch.empty(1, 4, 8, 8), torch.empty(4, 4, 3, 3)
    with pytest.raises(RuntimeError) as e:
        torch._C._select_conv_backend(x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 0)
    with pytest.raises(ConvShapeError) as m:
        symconv.select_conv_backend(x, w, None, [1], [0], [1], False, [0], 0,
                                    env=environment_for("2.13"))
    assert str(m.value).splitlines()[0] == str(e.value).splitlines()[0]
    with pytest.raises(ConvShapeError, match=r"^non-positive groups is not supported\n"):
        symconv.select_conv_backend(TensorSpec((1, 4, 8, 8)), TensorSpec((4, 4, 3, 3)), None,
                                    [1], [0], [1], False, [0], 0, env=environment_for("2.4"))


def test_newest_main_has_no_nnpack():
    """A call that torch 2.13 sends to NNPACK (measured) is Slow2d on the newest main."""
    x, w = torch.empty(16, 3, 8, 8), torch.empty(4, 3, 3, 3)
    from symconv.queries.witness import torch_flags
    with torch_flags({"mkldnn_enabled": False}):
        got = ConvBackend.from_torch(torch._C._select_conv_backend(
            x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1))
    env13 = environment_for("2.13").replace(mkldnn_enabled=False)
    args = (TensorSpec(x.shape), TensorSpec(w.shape), None, [1], [0], [1], False, [0], 1)
    assert got == symconv.select_conv_backend(*args, env=env13) == ConvBackend.NnpackSpatial
    main = env13.replace(torch_version=NEWEST.torch_version)
    assert symconv.select_conv_backend(*args, env=main) == ConvBackend.Slow2d


@pytest.mark.parametrize("inp,wgt,transposed", [
    ((1, 1, 1), (0, 1, 1), False),   # weight smaller than groups
    ((1, 2, 1), (1, 1, 1), False),   # input channels
    ((1, 1, 1), (1, 1, 1), False),   # valid otherwise
    ((1, 1, 4), (1, 1, 9), False),   # kernel larger than the padded input
    ((1, 2, 1), (1, 1, 1), True),    # transposed: the bound comes before the channels
    ((1, 1, 1), (0, 1, 1), True),
])
def test_padding_bound_is_checked_where_torch_checks_it(inp, wgt, transposed):
    """The padding bound of torch >= 2.10 sits after the channel/bias checks in the
    non-transposed branch and first in the transposed one (found by `symconv diff` seed vs
    2.13: its witness disagreed with torch)."""
    pad = 2**62
    try:
        torch._C._select_conv_backend(torch.empty(inp), torch.empty(wgt), None, [1], [pad], [1],
                                      transposed, [0], 1)
        want = None
    except RuntimeError as e:
        want = str(e).splitlines()[0]
    with pytest.raises(ConvShapeError) as m:
        symconv.select_conv_backend(TensorSpec(inp), TensorSpec(wgt), None, [1], [pad], [1],
                                    transposed, [0], 1, env=environment_for("2.13"))
    assert str(m.value).splitlines()[0] == want
