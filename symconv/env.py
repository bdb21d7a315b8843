"""The environment: everything outside the call's arguments that backend selection reads.

Build facts (what torch was compiled with), runtime flags (``torch.backends.*``, the thread
count, grad mode) and CPU facts (oneDNN bf16/fp16 support) are one frozen dataclass, read from
the running process by :meth:`Environment.from_torch` or taken from a named preset.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import re
from typing import Any

import numpy as np
import torch

from .profiles import NEWEST, PROFILES, SEED, torch_version_for, version_names

__all__ = ["Environment", "PRESETS", "preset", "parse_version", "preset_names", "environment_for",
           "check_torch_version", "known_versions_text"]


@functools.lru_cache(maxsize=64)
def parse_version(v: str | tuple | None) -> tuple[int, int]:
    """``'2.13.0+cpu'`` -> ``(2, 13)``."""
    if v is None:
        return (0, 0)
    if isinstance(v, tuple):
        return tuple(int(x) for x in v[:2])  # type: ignore[return-value]
    m = re.match(r"\s*(\d+)\.(\d+)", str(v))
    if not m:
        raise ValueError(f"cannot read a torch version from {v!r}")
    return (int(m.group(1)), int(m.group(2)))


@dataclasses.dataclass(frozen=True)
class Environment:
    """What ``_select_conv_backend`` and ``_determine_backend_memory_format`` read besides
    their arguments. Make variants with ``dataclasses.replace`` (or :meth:`replace`)."""

    torch_version: str = "2.13.0"
    # build
    cuda_available: bool = False
    cudnn_version: int | None = None  # None: not built with cuDNN
    cuda_capability: tuple[int, int] | None = None
    miopen_available: bool = False
    mkldnn_available: bool = True
    nnpack_available: bool = True
    mps_available: bool = False
    xnnpack_available: bool = False
    mobile: bool = False
    arm_neon: bool = False
    # runtime flags
    mkldnn_enabled: bool = True
    nnpack_enabled: bool = True
    cudnn_enabled: bool = True
    cudnn_deterministic: bool = False
    deterministic_algorithms: bool = False
    cudnn_benchmark: bool = False
    cudnn_allow_tf32: bool = True
    cudnn_depthwise_kernel: str = "auto"
    cudnn_v8_api_enabled: bool = True
    miopen_suggest_nhwc: bool = False
    num_threads: int = 1
    grad_enabled: bool = True
    # CPU facts
    mkldnn_bf16_supported: bool = False
    mkldnn_fp16_supported: bool = False

    def __post_init__(self) -> None:
        """Every field is checked here (types and ranges): a wrong value is a ``TypeError``
        or ``ValueError`` naming the field, never a failure later inside a query."""
        for name, check, label in _CHECKS:
            value = getattr(self, name)
            if type(value) is bool and check is _check_bool:
                continue  # the common case, kept cheap (queries make many variants)
            checked = check(value, label)
            if checked is not value:
                object.__setattr__(self, name, checked)

    # ---- derived facts (CUDAHooks)
    @property
    def version(self) -> tuple[int, int]:
        return parse_version(self.torch_version)

    @property
    def compiled_with_cudnn(self) -> bool:
        return self.cudnn_version is not None and not self.mobile

    @property
    def compiled_with_miopen(self) -> bool:
        return self.miopen_available and not self.mobile

    @property
    def supports_dilated_cudnn(self) -> bool:
        return self.compiled_with_cudnn

    @property
    def supports_depthwise_cudnn(self) -> bool:
        return self.compiled_with_cudnn and self.cuda_capability is not None and \
            self.cuda_capability[0] >= 7

    @property
    def supports_bf16_cudnn_v8(self) -> bool:
        return self.compiled_with_cudnn and self.cuda_capability is not None and \
            self.cuda_capability[0] >= 8

    @property
    def deterministic(self) -> bool:
        """``ctx.deterministicCuDNN() || ctx.deterministicAlgorithms()``."""
        return self.cudnn_deterministic or self.deterministic_algorithms

    def replace(self, **changes: Any) -> Environment:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    # ---- the running process
    @classmethod
    def from_torch(cls) -> Environment:
        """Read the build, runtime flags and CPU facts of the running torch."""
        cuda = torch.cuda.is_available()
        cudnn_version = None
        if torch.backends.cudnn.is_available():
            cudnn_version = torch.backends.cudnn.version()
        cap = torch.cuda.get_device_capability() if cuda else None
        hip = getattr(torch.version, "hip", None) is not None
        mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        kernel = "auto"
        getter = getattr(torch._C, "_get_cudnn_depthwise_kernel", None)
        if getter is not None:  # pragma: no cover - only on builds that have it
            kernel = str(getter())
        return cls(
            torch_version=torch.__version__.split("+")[0],
            cuda_available=cuda,
            cudnn_version=cudnn_version if not hip else None,
            cuda_capability=cap,
            miopen_available=hip and torch.backends.cudnn.is_available(),
            mkldnn_available=torch.backends.mkldnn.is_available(),
            nnpack_available=torch.backends.nnpack.is_available(),
            mps_available=mps,
            xnnpack_available=False,  # XNNPACK selection exists only in mobile builds
            mobile=False,
            arm_neon=False,
            mkldnn_enabled=bool(torch.backends.mkldnn.enabled),
            nnpack_enabled=bool(torch._C._get_nnpack_enabled()),
            cudnn_enabled=bool(torch.backends.cudnn.enabled),
            cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
            deterministic_algorithms=bool(torch.are_deterministic_algorithms_enabled()),
            cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
            cudnn_allow_tf32=bool(torch.backends.cudnn.allow_tf32),
            cudnn_depthwise_kernel=kernel,
            cudnn_v8_api_enabled=os.environ.get("TORCH_CUDNN_V8_API_DISABLED", "0") in ("", "0"),
            miopen_suggest_nhwc=os.environ.get("PYTORCH_MIOPEN_SUGGEST_NHWC", "0") not in ("", "0"),
            num_threads=torch.get_num_threads(),
            grad_enabled=torch.is_grad_enabled(),
            mkldnn_bf16_supported=bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
            mkldnn_fp16_supported=bool(torch.ops.mkldnn._is_mkldnn_fp16_supported()),
        )

    def matches_running_torch(self) -> bool:
        """Whether this environment is the running process's (so torch can confirm answers)."""
        return self == Environment.from_torch()


# --------------------------------------------------------------------------------------
# Field checks: each takes (value, name for messages) and returns the value to store.


def _show(value: Any) -> str:
    """A bad value in a message: its repr, clipped, and its type where the repr hides it."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still named by its type
        text = "<unprintable>"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_show(value)}")
    return bool(value)


MAX_THREADS = 2**31 - 1  # torch.set_num_threads takes a C int


def _check_threads(value: Any, name: str) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive int, got {_show(value)}")
    if not 1 <= value <= MAX_THREADS:
        raise ValueError(f"{name} must be a positive int (at most {MAX_THREADS}), got {value}")
    return int(value)


def _check_cudnn_version(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not _is_int(value):
        raise TypeError(f"{name} must be None (no cuDNN) or cuDNN's version number as a "
                        f"positive int (e.g. 91900 for 9.19), got {_show(value)}")
    if value < 1:
        raise ValueError(f"{name} must be None (no cuDNN) or a positive int, got {value}")
    return int(value)


def _check_capability(value: Any, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2 or \
            not all(_is_int(v) for v in value):
        raise TypeError(f"{name} must be None or a (major, minor) tuple of two ints, e.g. "
                        f"(9, 0), got {_show(value)}")
    if any(v < 0 for v in value):
        raise ValueError(f"{name} must have non-negative major and minor, got {tuple(value)}")
    return (int(value[0]), int(value[1]))


DEPTHWISE_KERNELS = ("auto", "cudnn", "native")  # torch.backends.cudnn.depthwise_kernel


def _check_depthwise_kernel(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of the strings 'auto', 'cudnn', 'native' "
                        f"(torch.backends.cudnn.depthwise_kernel), got {_show(value)}")
    if value not in DEPTHWISE_KERNELS:
        raise ValueError(f"{name} must be 'auto', 'cudnn' or 'native', got {value!r:.80}")
    return value


_VERSION_TEXT = re.compile(r"^(\d+)\.(\d+)(?:\.\d+)?[a-z0-9+.]*$", re.IGNORECASE)


def known_versions_text() -> str:
    """The torch versions symconv has a profile for, and the rule for those in between."""
    lo, hi = SEED.version, NEWEST.version
    return (f"symconv has profiles for torch {lo[0]}.{lo[1]} to {hi[0]}.{hi[1]} only ("
            + ", ".join(f"{p.name}: {p.torch_version}" for p in PROFILES)
            + "; a version in between reads the newest profile not above it)")


def check_torch_version(value: Any, name: str = "torch_version") -> str:
    """``value`` if it is a torch version string symconv has a profile for.

    The rule: a version from the seed's (2.4) to the newest profile's (2.15) reads the newest
    profile whose version is not above it (:func:`symconv.profiles.profile`: 2.12 reads the
    2.11 profile, 2.14 the 2.13 one); older and newer versions have no profile and are refused,
    naming ``name`` and listing the known ones."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a torch version string such as '2.13.0', got "
                        f"{_show(value)}")
    m = _VERSION_TEXT.match(value)
    if not m:
        raise ValueError(f"{name} must be a torch version such as '2.13.0', got {value!r:.80}")
    if not SEED.version <= (int(m.group(1)), int(m.group(2))) <= NEWEST.version:
        raise ValueError(f"{name}: unknown torch version {value!r:.40}: "
                         + known_versions_text())
    return value


_FIELD_CHECKS: dict[str, Any] = {
    "torch_version": check_torch_version,
    "cudnn_version": _check_cudnn_version,
    "cuda_capability": _check_capability,
    "cudnn_depthwise_kernel": _check_depthwise_kernel,
    "num_threads": _check_threads,
}
for _f in dataclasses.fields(Environment):
    if _f.name not in _FIELD_CHECKS:
        if _f.type != "bool":  # pragma: no cover - a new field needs its check here
            raise AssertionError(f"Environment.{_f.name} ({_f.type}) has no check")
        _FIELD_CHECKS[_f.name] = _check_bool
_CHECKS = tuple((f.name, _FIELD_CHECKS[f.name], f"Environment.{f.name}")
                for f in dataclasses.fields(Environment))


# --------------------------------------------------------------------------------------
# Presets: documented builds users care about.

PRESETS: dict[str, tuple[str, Environment]] = {
    "cpu": ("torch 2.13 CPU wheel (MKLDNN + NNPACK, AVX2 CPU, 1 thread)", Environment()),
    "cpu-mt": ("torch 2.13 CPU wheel with 2 threads", Environment(num_threads=2)),
    "cpu-avx512bf16": ("torch 2.13 CPU wheel on an AVX512-BF16 CPU (oneDNN bf16/fp16 kernels)",
                       Environment(mkldnn_bf16_supported=True, mkldnn_fp16_supported=True)),
    "cuda-h100": ("torch 2.11 CUDA 13 + cuDNN 9.19 on an H100 (sm_90)",
                  Environment(torch_version="2.11.0", cuda_available=True, cudnn_version=91900,
                              cuda_capability=(9, 0), nnpack_available=True,
                              num_threads=16)),
    "cuda-cudnn8": ("a CUDA build with cuDNN 8.9 on an A100 (sm_80)",
                    Environment(torch_version="2.13.0", cuda_available=True, cudnn_version=8902,
                                cuda_capability=(8, 0), num_threads=16)),
    "mobile": ("a mobile (C10_MOBILE) ARM build with XNNPACK",
               Environment(mobile=True, arm_neon=True, xnnpack_available=True,
                           mkldnn_available=False, nnpack_available=True)),
    "arm": ("an aarch64 Linux CPU build (ARM NEON: depthwise 3x3 Winograd)",
            Environment(arm_neon=True, mkldnn_available=True)),
    "seed": ("the seed's torch 2.4 CPU build", Environment(torch_version="2.4.0")),
}


def preset_names() -> list[str]:
    return sorted(PRESETS) + ["native"]


def preset(name: str) -> Environment:
    """A preset by name; ``'native'`` is :meth:`Environment.from_torch`."""
    if name == "native":
        return Environment.from_torch()
    if name not in PRESETS:
        raise ValueError(f"unknown environment preset {name!r}; expected one of: "
                         + ", ".join(preset_names()))
    return PRESETS[name][1]


def environment_for(name: str, base: Environment | None = None) -> Environment:
    """A preset name, or a torch version naming a side of a comparison: ``'2.13'``,
    ``'2.4.0'``, ``'main'`` (the newest upstream profile). A version is ``base`` (default: the
    ``cpu`` preset) with its ``torch_version`` replaced, so ``--from cuda-h100 --to 2.13`` is
    the same build on torch 2.13. Versions follow :func:`check_torch_version`'s rule (2.4 to
    2.15, each reading the newest profile not above it); others are refused."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a preset name or a torch version string, got "
                        f"{_show(name)}")
    if base is not None and not isinstance(base, Environment):
        raise TypeError(f"base must be a symconv.Environment or None, got {_show(base)}")
    if name == "native" or name in PRESETS:
        return preset(name)
    tv = torch_version_for(name)
    if tv is None:
        raise ValueError(f"unknown environment preset or torch version {name!r:.80}; expected "
                         "a preset (" + ", ".join(preset_names()) + "), a version like 2.13, "
                         "or a profile name (" + ", ".join(version_names()) + ")")
    try:
        check_torch_version(tv)
    except ValueError:
        raise ValueError(f"unknown torch version {name!r:.40}: "
                         + known_versions_text()) from None
    env = base if base is not None else PRESETS["cpu"][1]
    return dataclasses.replace(env, torch_version=tv)
