"""Every Z3 query of symconv goes through here: one place for time and memory limits.

Verdicts are ``"sat"``, ``"unsat"`` or ``"unknown"``; a timeout or resource limit is always
``"unknown"`` (with the reason), never a proof.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable

import z3

from . import domain as D

__all__ = ["LIMITS", "Limits", "Result", "check", "prove", "find_model", "nonneg"]


@dataclasses.dataclass
class Limits:
    """Solver limits: per query time (ms) and memory (MB); ``SYMCONV_Z3_TIMEOUT_MS`` and
    ``SYMCONV_Z3_MEMORY_MB`` override the defaults."""

    timeout_ms: int = int(os.environ.get("SYMCONV_Z3_TIMEOUT_MS", "10000"))
    memory_mb: int = int(os.environ.get("SYMCONV_Z3_MEMORY_MB", "2048"))


LIMITS = Limits()


@dataclasses.dataclass
class Result:
    verdict: str  # "sat" | "unsat" | "unknown"
    model: Any = None
    reason: str = ""

    @property
    def sat(self) -> bool:
        return self.verdict == "sat"

    @property
    def unsat(self) -> bool:
        return self.verdict == "unsat"


def _solver(timeout_ms: int | None) -> z3.Solver:
    s = z3.Solver()
    s.set("timeout", int(timeout_ms if timeout_ms is not None else LIMITS.timeout_ms))
    s.set("max_memory", int(LIMITS.memory_mb))
    return s


def _z3(f: Any) -> Any:
    if isinstance(f, z3.ExprRef):
        return f
    return D.to_z3(f)


def check(*formulas: Any, timeout_ms: int | None = None) -> Result:
    """Satisfiability of the conjunction of ``formulas`` (SymPy, Z3 or Python bools)."""
    s = _solver(timeout_ms)
    for f in formulas:
        s.add(_z3(f))
    r = s.check()
    if r == z3.sat:
        return Result("sat", s.model())
    if r == z3.unsat:
        return Result("unsat")
    return Result("unknown", reason=f"{s.reason_unknown()} (limit {timeout_ms or LIMITS.timeout_ms} ms, "
                                     f"{LIMITS.memory_mb} MB)")


def prove(claim: Any, *assumptions: Any, timeout_ms: int | None = None) -> Result:
    """``assumptions => claim`` for all integers: "unsat" of the negation means proved.

    Returns the Result of the negation: ``unsat`` = proved, ``sat`` = refuted (model is a
    counterexample), ``unknown`` = undecided.
    """
    return check(*assumptions, z3.Not(_z3(claim)), timeout_ms=timeout_ms)


def find_model(*formulas: Any, timeout_ms: int | None = None) -> Result:
    return check(*formulas, timeout_ms=timeout_ms)


def nonneg(symbols: Iterable[Any]) -> list:
    """``s >= 0`` for each size symbol (Z3)."""
    out = []
    for s in symbols:
        zs = _z3(s)
        out.append(zs >= 0)
    return out
