"""symconv's exceptions, torch's message formatting, and the check accumulator.

A check is ``check(cond, message)``: with a decided condition it passes or raises (the message
is built only then, as ``torch._check`` does); with a symbolic condition it is recorded, in
order, so that a symbolic call returns the exact conditions under which torch raises which
message.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Callable, Sequence

from . import domain as D

__all__ = ["ConvError", "ConvShapeError", "ConvValueError", "Check", "Checker", "fmt_sizes",
           "fmt_int", "fmt_bool", "StopSymbolic"]


class ConvError(RuntimeError):
    """An error torch raises (``RuntimeError``) for these convolution arguments; its first line
    is torch's first line."""

    check: Check | None = None


class ConvShapeError(ConvError):
    """A shape check failed (``check_shape_forward`` and friends)."""


class ConvValueError(ValueError):
    """An error torch raises as ``ValueError`` (e.g. a negative parameter count in a vector)."""


def fmt_int(x: Any) -> str:
    """How torch prints an int64 / SymInt."""
    if isinstance(x, bool):
        return "1" if x else "0"
    return str(x)


def fmt_bool(x: bool) -> str:
    """``std::ostream << bool`` prints 1 / 0."""
    return "1" if x else "0"


def fmt_sizes(xs: Sequence[Any]) -> str:
    """``IntArrayRef`` printing: ``[4, 3, 3, 3]``."""
    return "[" + ", ".join(fmt_int(x) for x in xs) + "]"


@dataclasses.dataclass
class Check:
    """One ordered check: ``cond`` is the domain boolean for "passes"."""

    name: str
    cond: Any
    error: type
    message: Callable[[], str]

    def render(self) -> str:
        return self.message()

    def failure(self) -> BaseException:
        exc = self.error(self.message())
        if isinstance(exc, ConvError):
            exc.check = self
        return exc


class StopSymbolic(Exception):
    """Raised inside a symbolic evaluation when a check fails unconditionally after earlier
    undecided checks: nothing after it can run, and the recorded checks say when it fails."""


class Checker:
    """Collects checks in order. Decided failures raise when no undecided check precedes them."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    @property
    def symbolic(self) -> bool:
        return bool(self.checks)

    # ``message`` is called with no arguments; it is typed ``Callable[..., str]`` because the
    # checks bind loop values as lambda defaults (``lambda s=s: ...``).
    def __call__(self, cond: Any, message: Callable[..., str], *, name: str,
                 error: type = ConvError) -> None:
        t = D.truth(cond)
        if t is True:
            return
        chk = Check(name, cond, error, message)
        if t is False:
            if not self.checks:
                raise chk.failure()
            self.checks.append(chk)
            raise StopSymbolic(name)
        self.checks.append(chk)

    def condition(self) -> Any:
        """The conjunction of every recorded condition: all checks pass."""
        return D.and_(*[c.cond for c in self.checks])
