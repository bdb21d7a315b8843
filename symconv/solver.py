"""Every Z3 query of symconv goes through here: one place for time and memory limits.

Verdicts are ``"sat"``, ``"unknown"`` or ``"unsat"``; a timeout or resource limit is always
``"unknown"`` (with the reason and the limits), never a proof. Ctrl-C during a query raises
KeyboardInterrupt (Z3 would otherwise swallow it into an "unknown" and the run would go on).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import z3

from . import domain as D

__all__ = ["LIMITS", "Limits", "Result", "check", "prove", "find_model", "nonneg", "new_solver",
           "new_optimize", "LimitedSolver", "LimitedOptimize"]


DEFAULT_TIMEOUT_MS = 10_000
DEFAULT_MEMORY_MB = 2048


def _env_int(name: str, default: int, lo: int, hi: int) -> int:
    """A positive int from the environment; a malformed value is refused with a warning
    (the default stays), never a crash at import."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        v = int(text.strip())
    except ValueError:
        v = None
    if v is None or not lo <= v <= hi:
        warnings.warn(f"{name}={text!r} is not an integer in [{lo}, {hi}]; using {default}",
                      RuntimeWarning, stacklevel=2)
        return default
    return v


@dataclasses.dataclass
class Limits:
    """Solver limits: per query time (ms) and memory (MB); ``SYMCONV_Z3_TIMEOUT_MS`` and
    ``SYMCONV_Z3_MEMORY_MB`` override the defaults. Every solver symconv creates
    (:func:`new_solver`, :func:`new_optimize`) takes them from here."""

    timeout_ms: int = dataclasses.field(default_factory=lambda: _env_int(
        "SYMCONV_Z3_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, 1, 2**31 - 1))
    memory_mb: int = dataclasses.field(default_factory=lambda: _env_int(
        "SYMCONV_Z3_MEMORY_MB", DEFAULT_MEMORY_MB, 16, 2**31 - 1))

    def describe(self, timeout_ms: int | None = None) -> str:
        t = self.timeout_ms if timeout_ms is None else timeout_ms
        return (f"limits: {t} ms, {self.memory_mb} MB per query; raise them with "
                "SYMCONV_Z3_TIMEOUT_MS / SYMCONV_Z3_MEMORY_MB")


LIMITS = Limits()

# Z3's reason for a check it stopped on SIGINT ("interrupted from keyboard"); a check stopped by
# its timer says "timeout" or "canceled", which is a limit, not Ctrl-C
_INTERRUPTED = ("interrupted",)


def _interrupted(reason: str) -> bool:
    return any(w in reason.lower() for w in _INTERRUPTED)


if TYPE_CHECKING:
    # z3 ships no type information: to the checker, the mixin's base is Z3's solver (untyped)
    from z3 import Solver as _Z3Base
else:
    _Z3Base = object


class _Limited(_Z3Base):
    """``check()`` with symconv's rules, shared by the solver and the optimiser: Z3 catches
    SIGINT itself during a check and answers "unknown"; here that is a KeyboardInterrupt (Ctrl-C
    stops the run), and a memory limit Z3 reports as an exception is "unknown" as well."""

    _limit_reason: str = ""
    _timeout_ms: int  # set by _apply, which every constructor below goes through

    def check(self, *assumptions: Any) -> Any:
        self._limit_reason = ""
        try:
            r = super().check(*assumptions)
        except z3.Z3Exception as e:
            text = str(e.value if hasattr(e, "value") else e)
            if _interrupted(text):
                raise KeyboardInterrupt from None
            self._limit_reason = f"{text} ({LIMITS.describe(self._timeout_ms)})"
            return z3.unknown
        if r == z3.unknown:
            reason = super().reason_unknown()
            if _interrupted(reason):
                raise KeyboardInterrupt
        return r

    def reason_unknown(self) -> str:
        if self._limit_reason:
            return self._limit_reason
        reason = super().reason_unknown()
        if reason == "canceled":  # Z3's word when its timer stopped the check
            reason = "timeout"
        return f"{reason} ({LIMITS.describe(self._timeout_ms)})"


class LimitedSolver(_Limited, z3.Solver):
    pass


class LimitedOptimize(_Limited, z3.Optimize):
    pass


_L = TypeVar("_L", bound=_Limited)


def _apply(s: _L, timeout_ms: int | None) -> _L:
    t = int(timeout_ms if timeout_ms is not None else LIMITS.timeout_ms)
    s._timeout_ms = t
    s.set("timeout", t)
    if isinstance(s, z3.Solver):
        s.set("max_memory", int(LIMITS.memory_mb))
    global _MEMORY_SET
    if _MEMORY_SET != LIMITS.memory_mb:  # Z3's process-wide cap (the optimiser has no own)
        z3.set_param("memory_max_size", int(LIMITS.memory_mb))
        _MEMORY_SET = LIMITS.memory_mb
    return s


_MEMORY_SET: int | None = None


def new_solver(timeout_ms: int | None = None) -> LimitedSolver:
    """A Z3 solver with symconv's limits (:data:`LIMITS`, or ``timeout_ms`` for this one)."""
    return _apply(LimitedSolver(), timeout_ms)


def new_optimize(timeout_ms: int | None = None) -> LimitedOptimize:
    """A Z3 optimiser with symconv's limits."""
    return _apply(LimitedOptimize(), timeout_ms)


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
    return new_solver(timeout_ms)


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
    return Result("unknown", reason=s.reason_unknown())


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
