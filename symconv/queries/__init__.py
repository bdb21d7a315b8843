"""Questions to the dispatcher, answered from the same symbolic rules.

* :func:`reach` — is a backend reachable under an environment and constraints? A witness that
  torch confirms, the region of calls that reach it, or the proof that none does.
* :func:`explain` — which backend a call gets, why no earlier rule fired, and the smallest
  change that reaches another backend.
* :func:`dispatch_map` — the backend chosen over a 2-D slice of argument space (numpy).

Layering: this package imports rules, api and solver; nothing below imports it.
"""

from __future__ import annotations

from .explain import Explanation, WantResult, explain
from .reach import ReachResult, reach
from .where import WhereError, parse_where
from .witness import Validation, Witness, replay

__all__ = ["reach", "ReachResult", "explain", "Explanation", "WantResult", "Witness",
           "Validation", "replay", "WhereError", "parse_where"]
