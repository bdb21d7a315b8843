"""Version profiles: which torch release reads which version of the convolution front-end.

A profile is a set of *features* (named behaviours of ``Convolution.cpp`` that changed between
releases). The table is data: the seed's features, then for each later profile the list of
changes from the previous one, each with its upstream reference (the prose summaries are in
docs/upstream-notes.md; no upstream source is copied here). ``Environment.torch_version`` selects
the newest profile whose version is not above it, so 2.12 reads the 2.11 profile and 2.14 the
2.13 one.

Nothing in this module imports the rest of symconv: params, shapes and rules read
:func:`profile` (``profile(env.version).nnpack`` and the like).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

__all__ = ["Change", "Profile", "PROFILES", "profile", "FEATURES", "NEWEST", "SEED",
           "version_names", "torch_version_for", "since"]


# feature -> what it means (True/False unless stated)
FEATURES: dict[str, str] = {
    "groups_positive_check": "check_shape_forward refuses groups <= 0 ('expected groups to be "
                             "greater than 0'); without it the seed divides by zero",
    "padding_bound_check": "check_shape_forward refuses padding > INT64_MAX - padding",
    "cuda_rules": "'seed': use_cudnn refuses 64-bit indexing first and deterministic dilated "
                  "convolutions, use_cudnn_depthwise has the cuDNN 7.6 table; '2.11': the "
                  "cuDNN >= 9.3 64-bit path, deterministic dilation allowed, the depthwise "
                  "64-bit / channels-last / pre-gate changes",
    "miopen_64bit": "use_miopen accepts inputs that need 64-bit indexing",
    "depthwise_kernel_flag": "use_cudnn_depthwise reads torch.backends.cudnn.depthwise_kernel",
    "nnpack": "_select_conv_backend has the NnpackSpatial branch (use_nnpack)",
    "xnnpack": "use_xnnpack can hold (mobile builds)",
    "mps_conv3d_64bit": "use_mps accepts 5-D non-transposed inputs that need 64-bit indexing",
}


@dataclasses.dataclass(frozen=True)
class Change:
    """One feature's new value in a profile, and where upstream it comes from."""

    feature: str
    value: Any
    ref: str


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    version: tuple[int, int]
    torch_version: str          # what Environment.torch_version says for this profile
    description: str
    changes: tuple[Change, ...]  # differences from the previous profile
    features: dict               # the resulting feature values

    def __getattr__(self, name: str) -> Any:
        feats = object.__getattribute__(self, "features")
        if name in feats:
            return feats[name]
        raise AttributeError(name)

    def __hash__(self) -> int:
        return hash((self.name, self.version))


SEED_FEATURES = {
    "groups_positive_check": False,
    "padding_bound_check": False,
    "cuda_rules": "seed",
    "miopen_64bit": False,
    "depthwise_kernel_flag": False,
    "nnpack": True,
    "xnnpack": True,
    "mps_conv3d_64bit": False,
}

# (name, version, torch_version, description, changes from the previous profile)
_TABLE = (
    ("seed", (2, 4), "2.4.0",
     "the seed's Convolution.cpp (PyTorch main of mid-2024, about v2.4)", ()),
    ("2.10", (2, 10), "2.10.0",
     "check_shape_forward's groups and padding checks (torch 2.10; measured on the 2.13 wheel)",
     (Change("groups_positive_check", True,
             "PR #165669 'Improve error message for non-positive groups in convolution' "
             "(merged ~2025-10-17)"),
      Change("padding_bound_check", True,
             "PR #162363 '[Conv1d] Check overflow before we compute padding size' "
             "(Sep-Oct 2025)"))),
    ("2.11", (2, 11), "2.11.0",
     "the CUDA/ROCm rules of torch 2.11 (upstream main of early 2026; confirmed by the H100 "
     "records in tests/data, torch 2.11 + cuDNN 9.19)",
     (Change("cuda_rules", "2.11",
             "PR #134890 (cuDNN >= 9.3 64-bit non-splittable convolutions), PR #154292 "
             "(dilation for deterministic cuDNN convolutions), PR #153101 / #163171 / #168364 "
             "(64-bit depthwise convolutions), PR #167111 (runtime cuDNN version)"),
      Change("miopen_64bit", True,
             "PR #170281 '[ROCm] ... test_depthwise_conv_64bit_indexing' (Dec 2025, "
             "miopenSetTensorDescriptorV2)"))),
    ("2.13", (2, 13), "2.13.0",
     "torch 2.13 (the installed wheel; measured)",
     (Change("depthwise_kernel_flag", True,
             "PR #176500 'Add cuDNN depthwise convolution backend flag' (merged ~2026-04-14); "
             "the 2.13 wheel has torch.backends.cudnn.depthwise_kernel"),)),
    ("main", (2, 15), "2.15.0a0",
     "the newest upstream main found (version.txt 2.15.0a0, after the 2.14 branch cut)",
     (Change("nnpack", False,
             "NNPACK removed from Convolution.cpp: no use_nnpack, no NnpackSpatial (the enum "
             "shifts by one); the removal PR was not found (docs/upstream-notes.md, source C)"),
      Change("xnnpack", False,
             "xnnpack_use_convolution2d and its include are gone from Convolution.cpp "
             "(same source C)"),
      Change("mps_conv3d_64bit", True,
             "PR #188802 (Jul 2026): conv3d forward on MPS handles 64-bit shapes"))),
)


def _build() -> tuple[Profile, ...]:
    out = []
    feats = dict(SEED_FEATURES)
    for name, version, tv, desc, changes in _TABLE:
        feats = dict(feats)
        for c in changes:
            if c.feature not in FEATURES:
                raise AssertionError(f"profile {name}: unknown feature {c.feature!r}")
            feats[c.feature] = c.value
        out.append(Profile(name, version, tv, desc, tuple(changes), feats))
    return tuple(out)


PROFILES: tuple[Profile, ...] = _build()
SEED = PROFILES[0]
NEWEST = PROFILES[-1]


@functools.lru_cache(maxsize=64)
def profile(version: tuple[int, int]) -> Profile:
    """The profile a torch version reads: the newest whose version is not above it (versions
    older than the seed read the seed's)."""
    best = PROFILES[0]
    for p in PROFILES:
        if p.version <= tuple(version):
            best = p
    return best


def version_names() -> list[str]:
    return [p.name for p in PROFILES]


_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?([a-z0-9+.]*)\s*$")


def torch_version_for(text: str) -> str | None:
    """``'2.13'`` -> ``'2.13.0'``, ``'main'`` -> the newest profile's, ``'seed'`` -> ``'2.4.0'``;
    ``None`` when ``text`` names no version."""
    t = str(text).strip()
    for p in PROFILES:
        if t == p.name and not _VERSION.match(t):
            return p.torch_version
    m = _VERSION.match(t)
    if not m:
        return None
    if m.group(3) is None:
        return f"{int(m.group(1))}.{int(m.group(2))}.0"
    return t


def since(feature: str, value: Any = True) -> tuple[int, int]:
    """The first profile version whose ``feature`` has ``value`` (a version gate); a version
    above every profile when none has it."""
    if feature not in FEATURES:
        raise KeyError(f"unknown feature {feature!r}")
    for p in PROFILES:
        if p.features[feature] == value:
            return p.version
    return (10**6, 0)
