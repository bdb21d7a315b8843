"""Tensor specifications: what selection and shape checks read of a tensor, without its data.

A :class:`TensorSpec` holds a shape whose entries are ints, symbol names (strings), SymPy or
Z3 integers, plus the dtype, device, layout, ``requires_grad`` and the memory format (or
explicit strides). The memory-format queries (``suggest_memory_format``, ``is_contiguous``) are
c10's, written over the integer domains so that they stay exact for symbolic sizes (sizes 0
and 1 change the answer).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Sequence

import numpy as np
import sympy
import torch
import z3

from . import domain as D

__all__ = ["TensorSpec", "as_spec", "MF_CONTIGUOUS", "MF_CHANNELS_LAST", "MF_CHANNELS_LAST_3D",
           "memory_format_code", "memory_format_from_code", "dtype_name", "MKLDNN_LAYOUT"]

# The layout of MKLDNN (oneDNN) tensors: torch has it, torch's type stubs do not.
MKLDNN_LAYOUT: torch.layout = torch._mkldnn  # type: ignore[attr-defined]

# Memory formats are encoded as small integers so that a symbolic choice is one integer term.
MF_CONTIGUOUS, MF_CHANNELS_LAST, MF_CHANNELS_LAST_3D, MF_PRESERVE = 0, 1, 2, 3
_MF = {
    torch.contiguous_format: MF_CONTIGUOUS,
    torch.channels_last: MF_CHANNELS_LAST,
    torch.channels_last_3d: MF_CHANNELS_LAST_3D,
    torch.preserve_format: MF_PRESERVE,
}
_MF_INV = {v: k for k, v in _MF.items()}
_MF_NAMES = {"contiguous": torch.contiguous_format, "contiguous_format": torch.contiguous_format,
             "channels_last": torch.channels_last, "channels_last_3d": torch.channels_last_3d,
             "preserve_format": torch.preserve_format}


def memory_format_code(mf: Any) -> int:
    if isinstance(mf, str):
        if mf not in _MF_NAMES:
            raise ValueError(f"unknown memory_format {mf!r}; expected one of "
                             + ", ".join(sorted(_MF_NAMES)))
        mf = _MF_NAMES[mf]
    if mf not in _MF:
        raise ValueError(f"unknown memory_format {mf!r}")
    return _MF[mf]


def memory_format_from_code(code: int) -> torch.memory_format:
    return _MF_INV[int(code)]


_DTYPE_NAMES = {
    torch.float32: "float", torch.float64: "double", torch.float16: "c10::Half",
    torch.bfloat16: "c10::BFloat16", torch.complex64: "c10::complex<float>",
    torch.complex128: "c10::complex<double>", torch.int64: "long int", torch.int32: "int",
    torch.int16: "short int", torch.int8: "signed char", torch.uint8: "unsigned char",
    torch.bool: "bool",
}


def dtype_name(dtype: torch.dtype) -> str:
    """The C++ type name torch prints for a dtype in messages such as 'Input type (float)'."""
    return _DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def _parse_dtype(d: Any) -> torch.dtype:
    if isinstance(d, torch.dtype):
        return d
    if isinstance(d, str):
        name = d.strip().replace("torch.", "")
        aliases = {"float": "float32", "double": "float64", "half": "float16", "bf16": "bfloat16",
                   "fp16": "float16", "fp32": "float32", "fp64": "float64"}
        name = aliases.get(name, name)
        dt = getattr(torch, name, None)
        if isinstance(dt, torch.dtype):
            return dt
    raise ValueError(f"unknown dtype {d!r}")


def _parse_dim(x: Any, where: str) -> Any:
    if isinstance(x, bool):
        raise TypeError(f"{where}: expected an int or a symbol, got a bool")
    if isinstance(x, int):
        return x
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.integer):
            raise TypeError(f"{where}: a numpy array of sizes must be of an integer dtype")
        return x.astype(np.int64)
    if hasattr(x, "__index__") and not isinstance(x, (sympy.Basic, z3.ExprRef)):
        return int(x.__index__())
    if isinstance(x, str):
        name = x.strip()
        if not name.isidentifier():
            raise ValueError(f"{where}: {x!r} is not a valid symbol name")
        return D.sym(name)
    if isinstance(x, sympy.Basic):
        if x.is_Integer:
            return int(x)
        return x
    if isinstance(x, z3.ArithRef):
        if z3.is_int_value(x):
            return x.as_long()
        if not x.is_int():
            raise TypeError(f"{where}: Z3 term {x} is not of sort Int")
        return x
    raise TypeError(f"{where}: expected an int, a symbol name, a SymPy or Z3 integer, "
                    f"got {type(x).__name__}")


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """A tensor without data: shape (ints or symbols), dtype, device, layout and strides."""

    shape: tuple
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    requires_grad: bool = False
    memory_format: torch.memory_format = torch.contiguous_format
    layout: torch.layout = torch.strided
    strides: tuple | None = None

    def __post_init__(self) -> None:
        shape = self.shape
        if isinstance(shape, (int, str)) or (not isinstance(shape, Sequence)
                                             and not isinstance(shape, torch.Size)):
            raise TypeError(f"shape must be a sequence of sizes, got {type(shape).__name__}")
        shape = tuple(_parse_dim(s, f"shape[{i}]") for i, s in enumerate(shape))
        for i, s in enumerate(shape):
            if isinstance(s, int) and s < 0:
                raise ValueError(f"shape[{i}] must be non-negative, got {s}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", _parse_dtype(self.dtype))
        dev = self.device
        if isinstance(dev, torch.device):
            dev = dev.type
        dev = str(dev).split(":")[0]
        object.__setattr__(self, "device", dev)
        mf = self.memory_format
        if isinstance(mf, str):
            mf = _MF_NAMES.get(mf, mf)
        code = memory_format_code(mf)
        if code == MF_CHANNELS_LAST and len(shape) != 4:
            raise ValueError(f"memory_format=channels_last needs a 4-D shape, got {len(shape)}-D")
        if code == MF_CHANNELS_LAST_3D and len(shape) != 5:
            raise ValueError("memory_format=channels_last_3d needs a 5-D shape, "
                             f"got {len(shape)}-D")
        if code == MF_PRESERVE:
            raise ValueError("memory_format=preserve_format does not describe a tensor")
        object.__setattr__(self, "memory_format", mf)
        if self.layout not in (torch.strided, MKLDNN_LAYOUT, torch.sparse_coo):
            raise ValueError(f"unsupported layout {self.layout}")
        if self.strides is not None:
            st = tuple(_parse_dim(s, f"strides[{i}]") for i, s in enumerate(self.strides))
            if len(st) != len(shape):
                raise ValueError(f"strides has {len(st)} entries for a {len(shape)}-D shape")
            object.__setattr__(self, "strides", st)
        object.__setattr__(self, "requires_grad", bool(self.requires_grad))

    # ---- construction
    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> TensorSpec:
        strides = None if t.layout != torch.strided else tuple(t.stride())
        return cls(tuple(t.shape), dtype=t.dtype, device=t.device.type,
                   requires_grad=t.requires_grad, layout=t.layout, strides=strides)

    def to_tensor(self, *, materialize: bool = False) -> torch.Tensor:
        """A real tensor with these sizes/strides (data shared from one element unless
        ``materialize``); only for concrete shapes."""
        if not self.is_concrete:
            raise ValueError("to_tensor needs a concrete shape")
        dev = self.device
        if self.layout == MKLDNN_LAYOUT:
            t = torch.zeros(self.shape, dtype=self.dtype).to_mkldnn()
        elif materialize or self.numel() <= 2**24:
            t = torch.empty_strided(self.shape, self.stride(), dtype=self.dtype, device=dev)
        else:
            t = torch.empty(1, dtype=self.dtype, device=dev).as_strided(self.shape, self.stride())
        if self.requires_grad:
            t.requires_grad_(True)
        return t

    # ---- basic queries
    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def size(self, i: int) -> Any:
        return self.shape[i]

    def numel(self) -> Any:
        return D.prod(self.shape)

    @property
    def is_concrete(self) -> bool:
        return all(type(s) is int for s in self.shape) and (
            self.strides is None or all(isinstance(s, int) for s in self.strides))

    @property
    def symbols(self) -> set:
        out = set()
        for s in self.shape + (self.strides or ()):
            if isinstance(s, sympy.Basic):
                out |= s.free_symbols
            elif isinstance(s, np.ndarray):
                continue
            elif isinstance(s, z3.ExprRef):
                out.add(s)
        return out

    @property
    def is_cpu(self) -> bool:
        return self.device == "cpu"

    @property
    def is_cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def is_mps(self) -> bool:
        return self.device == "mps"

    @property
    def is_xpu(self) -> bool:
        return self.device == "xpu"

    @property
    def is_meta(self) -> bool:
        return self.device == "meta"

    @property
    def is_mkldnn(self) -> bool:
        return self.layout == MKLDNN_LAYOUT

    @property
    def is_sparse(self) -> bool:
        return self.layout == torch.sparse_coo

    def replace(self, **kw: Any) -> TensorSpec:
        return dataclasses.replace(self, **kw)

    # ---- strides and memory formats (c10/core/MemoryFormat.h, TensorImpl)
    def stride(self) -> tuple:
        if self.strides is not None:
            return self.strides
        code = memory_format_code(self.memory_format)
        if code == MF_CHANNELS_LAST:
            return channels_last_strides_2d(self.shape)
        if code == MF_CHANNELS_LAST_3D:
            return channels_last_strides_3d(self.shape)
        return contiguous_strides(self.shape)

    def is_contiguous(self, memory_format: Any = torch.contiguous_format) -> Any:
        """``Tensor.is_contiguous(memory_format)`` over the integer domains."""
        code = memory_format_code(memory_format)
        sizes, strides = self.shape, self.stride()
        if code == MF_CONTIGUOUS:
            return _is_contiguous_strides(sizes, strides)
        if code == MF_CHANNELS_LAST:
            if self.ndim != 4:
                return False
            return _is_dense_in_order(sizes, strides, (1, 3, 2, 0))
        if code == MF_CHANNELS_LAST_3D:
            if self.ndim != 5:
                return False
            return _is_dense_in_order(sizes, strides, (1, 4, 3, 2, 0))
        raise ValueError(memory_format)

    def suggest_memory_format(self, exact_match: bool = False) -> Any:
        """``Tensor.suggest_memory_format(exact_match)`` as an integer code (``MF_*``)."""
        if self.layout != torch.strided:
            return MF_CONTIGUOUS
        sizes, strides = self.shape, self.stride()
        if self.ndim == 4:
            cl = is_channels_last_strides_2d(sizes, strides)
            if exact_match:
                cl = D.and_(cl, _strides_equal(strides, channels_last_strides_2d(sizes)))
            return D.ite(cl, MF_CHANNELS_LAST, MF_CONTIGUOUS)
        if self.ndim == 5:
            cl3 = is_channels_last_strides_3d(sizes, strides)
            if exact_match:
                cl3 = D.and_(cl3, _strides_equal(strides, channels_last_strides_3d(sizes)))
            return D.ite(cl3, MF_CHANNELS_LAST_3D, MF_CONTIGUOUS)
        return MF_CONTIGUOUS

    def __str__(self) -> str:
        dims = ", ".join(str(s) for s in self.shape)
        extra = [str(self.dtype).replace("torch.", "")]
        if self.device != "cpu":
            extra.append(self.device)
        if self.memory_format != torch.contiguous_format:
            extra.append(str(self.memory_format).replace("torch.", ""))
        if self.layout != torch.strided:
            extra.append(str(self.layout).replace("torch.", ""))
        if self.requires_grad:
            extra.append("requires_grad")
        return f"TensorSpec([{dims}], {', '.join(extra)})"


def as_spec(x: Any, name: str = "tensor") -> TensorSpec | None:
    """Accept a TensorSpec, a tensor, or ``None``."""
    if x is None:
        return None
    if isinstance(x, TensorSpec):
        return x
    if isinstance(x, torch.Tensor):
        return TensorSpec.from_tensor(x)
    raise TypeError(f"{name} must be a torch.Tensor, a symconv.TensorSpec or None, "
                    f"got {type(x).__name__}")


def contiguous_strides(sizes: Sequence[Any]) -> tuple:
    out = []
    acc = 1
    for s in reversed(sizes):
        out.append(acc)
        acc = acc * D.max_(s, 1)
    return tuple(reversed(out))


def channels_last_strides_2d(sizes: Sequence[Any]) -> tuple:
    _n, c, h, w = sizes
    s1 = 1
    s3 = c
    s2 = s3 * w
    s0 = s2 * h
    return (s0, s1, s2, s3)


def channels_last_strides_3d(sizes: Sequence[Any]) -> tuple:
    _n, c, d, h, w = sizes
    s1 = 1
    s4 = c
    s3 = s4 * w
    s2 = s3 * h
    s0 = s2 * d
    return (s0, s1, s2, s3, s4)


def _strides_equal(a: Any, b: Any) -> Any:
    return D.and_(*[D.eq(x, y) for x, y in zip(a, b)])


def _is_channels_last_strides(sizes: Any, strides: Any, order: Any) -> Any:
    """c10's ``is_channels_last_strides_{2d,3d}_s{4,5}`` written without early returns."""
    ok = D.ne(strides[1], 0)
    minimum = 0
    for d in order:
        ok = D.and_(ok, D.ne(sizes[d], 0), D.ge(strides[d], minimum))
        if d == 0:
            ok = D.and_(ok, D.ne(minimum, strides[1]))
        minimum = D.ite(D.gt(sizes[d], 1), strides[d] * sizes[d], strides[d])
    return ok


def _is_dense_in_order(sizes: Any, strides: Any, order: Any) -> Any:
    """c10's ``compute_channels_last_contiguous_{2d,3d}``: dense strides in dimension order."""
    ok = True
    expected = 1
    for d in order:
        ok = D.and_(ok, D.or_(D.eq(sizes[d], 1), D.eq(strides[d], expected)))
        expected = expected * sizes[d]
    return ok


def is_channels_last_strides_2d(sizes: Any, strides: Any) -> Any:
    if len(sizes) != 4:
        return False
    return _is_channels_last_strides(sizes, strides, (1, 3, 2, 0))


def is_channels_last_strides_3d(sizes: Any, strides: Any) -> Any:
    if len(sizes) != 5:
        return False
    return _is_channels_last_strides(sizes, strides, (1, 4, 3, 2, 0))


def _is_contiguous_strides(sizes: Any, strides: Any) -> Any:
    """TensorImpl::compute_contiguous: numel == 0 or strides match for non-1 sizes."""
    empty = D.or_(*[D.eq(s, 0) for s in sizes])
    return D.or_(empty, _is_dense_in_order(sizes, strides, range(len(sizes) - 1, -1, -1)))
