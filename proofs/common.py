"""Helpers shared by the invariant modules: the front-end checks over symbols, evaluation of a
term at counterexample values, and torch cases for shape counterexamples."""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence

from symconv import api
from symconv import domain as D
from symconv.params import ConvParams
from symconv.spec import TensorSpec

from .core import ConvSymbols, zs
from .worlds import profile

__all__ = ["SHAPE_ENV", "REPLAY_ENV", "checks_pass", "base", "at", "fmt_values", "conv_case",
           "params_of"]

# Shape invariants are proven under the seed's check_shape_forward (torch 2.4: no groups > 0
# check, no padding bound) plus groups >= 1, which the seed needs not to divide by zero; torch
# 2.13's checks are these and more, so every proof holds for both.
SHAPE_ENV = "seed"
# Shape counterexamples are replayed with the installed torch's CPU build, one thread.
REPLAY_ENV = "cpu"


def checks_pass(sym: ConvSymbols, transposed: bool, *, input_shape: Sequence[Any] | None = None,
                weight_shape: Sequence[Any] | None = None, stride=None, padding=None,
                dilation=None, output_padding=None, groups=None, bias: TensorSpec | None = None,
                env: str = SHAPE_ENV) -> Any:
    """The condition under which ``check_shape_forward`` (via ``symconv.api.prepare``) passes."""
    inp = TensorSpec(tuple(input_shape if input_shape is not None else sym.input_shape))
    w = TensorSpec(tuple(weight_shape if weight_shape is not None else sym.weight_shape))
    p = api.prepare(inp, w, bias, list(stride if stride is not None else sym.s),
                    list(padding if padding is not None else sym.p),
                    list(dilation if dilation is not None else sym.d), transposed,
                    list(output_padding if output_padding is not None else sym.op),
                    groups if groups is not None else sym.G, env=profile(env),
                    need_backward=False)
    return p.checker.condition()


def params_of(sym: ConvSymbols, transposed: bool, **over) -> ConvParams:
    return ConvParams(list(over.get("stride", sym.s)), list(over.get("padding", sym.p)),
                      list(over.get("dilation", sym.d)), transposed,
                      list(over.get("output_padding", sym.op)), over.get("groups", sym.G))


def base(sym: ConvSymbols) -> list:
    """Sizes are non-negative; groups >= 1 (the seed divides by groups)."""
    return sym.facts() + [sym.G >= 1]


def at(expr: Any, values: dict[str, int]) -> Any:
    """``expr`` with the counterexample's values put in (a Python int/bool when decided)."""
    return D.substitute(zs(expr), values)


def fmt_values(values: dict[str, int], sym: ConvSymbols | None = None) -> str:
    if sym is None:
        return ", ".join(f"{k}={v}" for k, v in values.items())
    a = sym.conv_args(values)
    return (f"input {a['input']}, weight {a['weight']}, stride={a['stride']}, "
            f"padding={a['padding']}, dilation={a['dilation']}, "
            f"output_padding={a['output_padding']}, groups={a['groups']}")


def conv_case(sym: ConvSymbols, values: dict[str, int], transposed: bool, *,
              run: str = "convolution", env: str = REPLAY_ENV, **extra) -> dict:
    a = sym.conv_args(values)
    case = {"run": run, "env": env, "input": {"shape": a["input"]},
            "weight": {"shape": a["weight"]}, "bias": None, "stride": a["stride"],
            "padding": a["padding"], "dilation": a["dilation"], "transposed": transposed,
            "output_padding": a["output_padding"],
            "groups": a["groups"], "need_backward": False}
    case.update(extra)
    return case


def all_(xs) -> Any:
    return D.and_(*list(xs))
