"""The environment: everything outside the call's arguments that backend selection reads.

Build facts (what torch was compiled with), runtime flags (``torch.backends.*``, the thread
count, grad mode) and CPU facts (oneDNN bf16/fp16 support) are one frozen dataclass, read from
the running process by :meth:`Environment.from_torch` or taken from a named preset.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from typing import Any

import torch

__all__ = ["Environment", "PRESETS", "preset", "parse_version", "preset_names", "environment_for"]


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
        if not isinstance(self.num_threads, int) or self.num_threads < 1:
            raise ValueError(f"num_threads must be a positive int, got {self.num_threads!r}")
        if self.cudnn_depthwise_kernel not in ("auto", "cudnn", "native"):
            raise ValueError("cudnn_depthwise_kernel must be 'auto', 'cudnn' or 'native', "
                             f"got {self.cudnn_depthwise_kernel!r}")
        parse_version(self.torch_version)
        if self.cuda_capability is not None:
            object.__setattr__(self, "cuda_capability", tuple(self.cuda_capability))

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
    the same build on torch 2.13."""
    from .profiles import torch_version_for, version_names
    if name == "native" or name in PRESETS:
        return preset(name)
    tv = torch_version_for(name)
    if tv is None:
        raise ValueError(f"unknown environment preset or torch version {name!r}; expected a "
                         "preset (" + ", ".join(preset_names()) + "), a version like 2.13, or "
                         "a profile name (" + ", ".join(version_names()) + ")")
    env = base if base is not None else PRESETS["cpu"][1]
    return dataclasses.replace(env, torch_version=tv)
