"""The ``ConvBackend`` enum in the order of ``ATen/native/ConvUtils.h``.

``torch._C._ConvBackend`` (the Python enum) lacks ``MkldnnTranspose`` and spells ``MpsTranspose``
as ``'MpsTranspose,'``; its integer values still follow the C++ order, so ``from_torch`` maps
``int(value)`` through this enum.
"""

from __future__ import annotations

import enum
from typing import Any


class ConvBackend(enum.IntEnum):
    CudaDepthwise2d = 0
    CudaDepthwise3d = 1
    Cudnn = 2
    CudnnTranspose = 3
    Empty = 4
    Miopen = 5
    MiopenDepthwise = 6
    MiopenTranspose = 7
    Mkldnn = 8
    MkldnnTranspose = 9
    MkldnnEmpty = 10
    NnpackSpatial = 11
    Overrideable = 12
    Slow2d = 13
    Slow3d = 14
    SlowDilated2d = 15
    SlowDilated3d = 16
    SlowTranspose2d = 17
    SlowTranspose3d = 18
    Winograd3x3Depthwise = 19
    Xnnpack2d = 20
    Mps = 21
    MpsTranspose = 22

    @classmethod
    def from_torch(cls, value: Any) -> ConvBackend:
        """Map a ``torch._C._ConvBackend`` (or its ``int``) to the C++ enumerator."""
        return cls(int(value))

    @classmethod
    def parse(cls, name: str) -> ConvBackend:
        """Look a backend up by name, case-insensitively; ``ValueError`` names the choices."""
        for b in cls:
            if b.name.lower() == str(name).strip().lower():
                return b
        raise ValueError(f"unknown backend {name!r}; expected one of: "
                         + ", ".join(b.name for b in cls))

    def __str__(self) -> str:
        return self.name
