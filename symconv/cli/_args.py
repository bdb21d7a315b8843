"""Argument parsers shared by the commands: shapes, int lists, dtypes, presets, and the
query options (``--dims``, ``--where``) of reach and diff."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any, overload

import torch

from symconv import domain as D
from symconv.env import Environment, preset, preset_names
from symconv.spec import TensorSpec

from . import CLIError

DTYPES = {"float32": torch.float32, "float": torch.float32, "float64": torch.float64,
          "double": torch.float64, "float16": torch.float16, "half": torch.float16,
          "bfloat16": torch.bfloat16, "complex64": torch.complex64,
          "complex128": torch.complex128}
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last,
                  "channels_last_3d": torch.channels_last_3d}
MAX_DIMS = 8


def parse_dim(tok: str, arg: str, i: int) -> Any:
    tok = tok.strip()
    if not tok:
        raise CLIError(arg, f"entry {i} is empty")
    try:
        v = int(tok)
    except ValueError:
        if tok.isidentifier() and tok.isascii():
            return D.sym(tok)
        raise CLIError(
            arg, f"entry {i} ({tok!r}) is neither an integer nor a symbol name") from None
    return v


@overload
def parse_shape(text: str, arg: str) -> tuple: ...
@overload
def parse_shape(text: None, arg: str) -> None: ...
def parse_shape(text: str | None, arg: str) -> tuple | None:
    if text is None:
        return None
    text = text.strip().strip("[]()")
    if not text:
        return ()
    parts = text.split(",")
    if len(parts) > MAX_DIMS:
        raise CLIError(arg, f"{len(parts)} dimensions given; at most {MAX_DIMS} are supported")
    out = tuple(parse_dim(p, arg, i) for i, p in enumerate(parts))
    for i, v in enumerate(out):
        if isinstance(v, int) and v < 0:
            raise CLIError(arg, f"size {v} at index {i} is negative")
        if isinstance(v, int) and v > D.INT64_MAX:
            raise CLIError(arg, f"size {v} at index {i} does not fit in int64")
    return out


def parse_int_list(text: str | None, arg: str, default: list) -> list:
    if text is None:
        return list(default)
    text = text.strip().strip("[]()")
    if not text:
        return []
    out = []
    for i, p in enumerate(text.split(",")):
        v = parse_dim(p, arg, i)
        if isinstance(v, int) and not (-(2**63) <= v <= D.INT64_MAX):
            raise CLIError(arg, f"value {v} does not fit in int64")
        out.append(v)
    return out


def parse_int(text: str | None, arg: str, default: Any) -> Any:
    if text is None:
        return default
    v = parse_dim(text, arg, 0)
    if isinstance(v, int) and not (-(2**63) <= v <= D.INT64_MAX):
        raise CLIError(arg, f"value {v} does not fit in int64")
    return v


def parse_dtype(text: str, arg: str = "--dtype") -> torch.dtype:
    key = text.strip().lower().replace("torch.", "")
    if key not in DTYPES:
        raise CLIError(arg, f"unknown dtype {text!r}; expected one of: " + ", ".join(DTYPES))
    return DTYPES[key]


def parse_memory_format(text: str, arg: str = "--memory-format") -> torch.memory_format:
    key = text.strip().lower()
    if key not in MEMORY_FORMATS:
        raise CLIError(arg, f"unknown memory format {text!r}; expected one of: "
                       + ", ".join(MEMORY_FORMATS))
    return MEMORY_FORMATS[key]


def parse_env(name: str, overrides: list[str] | None = None, arg: str = "--env") -> Environment:
    try:
        env = preset(name)
    except ValueError:
        raise CLIError(arg, f"unknown environment preset {name!r}; expected one of: "
                       + ", ".join(preset_names())) from None
    fields = {f.name: f for f in dataclasses.fields(Environment)}
    changes: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise CLIError("--set", f"{item!r} is not KEY=VALUE")
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in fields:
            raise CLIError("--set", f"unknown environment field {key!r}; expected one of: "
                           + ", ".join(sorted(fields)))
        current = getattr(env, key)
        try:
            if isinstance(current, bool):
                if value.lower() not in ("true", "false", "1", "0", "on", "off"):
                    raise ValueError(value)
                changes[key] = value.lower() in ("true", "1", "on")
            elif isinstance(current, int) or key == "cudnn_version":
                changes[key] = None if value.lower() == "none" else int(value)
            elif key == "cuda_capability":
                if value.lower() != "none" and len(value.split(".")) != 2:
                    raise CLIError("--set", f"cuda_capability is MAJOR.MINOR (e.g. 9.0) or "
                                   f"none, got {value!r}")
                changes[key] = None if value.lower() == "none" else tuple(
                    int(x) for x in value.split("."))
            else:
                changes[key] = value
        except ValueError:
            raise CLIError("--set", f"bad value {value!r} for {key}") from None
    try:
        return dataclasses.replace(env, **changes)
    except (ValueError, TypeError) as e:  # Environment's field checks name the field
        raise CLIError("--set", str(e)) from None


def tensor_spec(shape: tuple, arg: str, **kw: Any) -> TensorSpec:
    try:
        return TensorSpec(shape, **kw)
    except (ValueError, TypeError) as e:
        raise CLIError(arg, str(e)) from None


# --------------------------------------------------------------------------------------
# The query options of reach and diff: which calls to consider.


def add_query_arguments(p: argparse.ArgumentParser, where_example: str) -> None:
    """``--dims`` and ``--where`` (``where_example`` shows a constraint in the help)."""
    p.add_argument("--dims", metavar="D", help="spatial dims: 1, 2, 3 or a list like 1,2 "
                   "(default: all)")
    p.add_argument("--where", action="append", metavar="CONSTRAINTS",
                   help=f'constraints, e.g. "{where_example}"')


def parse_dims(text: str | None) -> tuple | None:
    if text is None:
        return None
    try:
        out = tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise CLIError("--dims", f"expected 1, 2 or 3 (or a comma list), got {text!r}") from None
    if not out or any(d not in (1, 2, 3) for d in out):
        raise CLIError("--dims", f"expected 1, 2 or 3 (or a comma list), got {text!r}")
    return out


@contextlib.contextmanager
def where_errors() -> Iterator[None]:
    """A contradictory or malformed constraint found inside a query is an error of --where."""
    from symconv.queries.where import WhereError
    try:
        yield
    except WhereError as e:
        raise CLIError("--where", str(e)) from None


def query_scope(args: argparse.Namespace) -> tuple[tuple | None, Any]:
    """``(dims, parsed --where)`` of a query command's arguments."""
    from symconv.queries.where import parse_where
    dims = parse_dims(args.dims)
    with where_errors():
        where = parse_where(args.where)
    return dims, where
