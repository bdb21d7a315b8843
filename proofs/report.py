"""Reports of a run: compiler-style text, JSON, JUnit XML and Markdown (docs/proofs.md)."""

from __future__ import annotations

import dataclasses
import platform
import textwrap
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from .core import PROVED, REFUTED, UNKNOWN, InvariantResult

__all__ = ["Summary", "summarize", "line", "notes", "summary_line", "to_json", "to_junit",
           "to_markdown"]


@dataclasses.dataclass
class Summary:
    total: int
    proved: int
    refuted_expected: int
    failed: int
    unknown: int
    errors: int
    skipped: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.unknown == 0 and self.errors == 0


def summarize(results: Sequence[InvariantResult], seconds: float) -> Summary:
    s = Summary(len(results), 0, 0, 0, 0, 0, 0, seconds)
    for r in results:
        if r.error:
            s.errors += 1
        elif r.skipped:
            s.skipped += 1
        elif not r.ok:
            if r.verdict == UNKNOWN:
                s.unknown += 1
            else:
                s.failed += 1
        elif r.verdict == REFUTED:
            s.refuted_expected += 1
        else:
            s.proved += 1
    return s


def statements(results: Sequence[InvariantResult]) -> int:
    """Distinct statements: an invariant counts once however many ranks and environments."""
    return sum(1 for r in results if not r.skipped)


def summary_line(s: Summary) -> str:
    parts = [f"{s.proved} proved", f"{s.refuted_expected} refuted as expected"]
    if s.failed:
        parts.append(f"{s.failed} with an unexpected verdict")
    if s.unknown:
        parts.append(f"{s.unknown} unknown")
    if s.errors:
        parts.append(f"{s.errors} errors")
    if s.skipped:
        parts.append(f"{s.skipped} not applicable")
    verdict = "ok" if s.ok else "FAILED"
    return (f"symconv prove: {s.total} invariants: {', '.join(parts)}; {verdict} "
            f"in {s.seconds:.1f}s")


def _groups_text(groups) -> str:
    names = [str(g.group) for g in groups]
    if len(names) > 6:
        return ", ".join(names[:5]) + f", ... ({len(names)} in all)"
    return ", ".join(names)


def _scope(r: InvariantResult) -> str:
    gs = [str(g.group) for g in r.groups]
    dims = sorted({g.group.dims for g in r.groups if g.group.dims is not None})
    envs = sorted({g.group.env for g in r.groups if g.group.env})
    parts = []
    if dims:
        parts.append(" ".join(f"{d}d" for d in dims))
    if envs:
        parts.append(f"{len(envs)} env" + ("s" if len(envs) != 1 else ""))
    if not gs:
        return "not applicable"
    return "; ".join(parts) or "all"


def line(r: InvariantResult) -> str:
    """One compiler-style line: location, status, name, scope, time."""
    loc = r.invariant.location
    t = f"({r.seconds:.2f}s)"
    if r.error:
        return f"{loc}: error: {r.invariant.name}: crashed: {r.error} {t}"
    if r.skipped:
        return f"{loc}: skipped: {r.invariant.name}: not applicable to the chosen environments {t}"
    if r.ok:
        expected = {g.expected for g in r.groups}
        if expected == {PROVED}:
            return f"{loc}: proved: {r.invariant.name} [{_scope(r)}] {t}"
        if expected == {REFUTED}:
            return f"{loc}: refuted as expected: {r.invariant.name} [{_scope(r)}] {t}"
        ref = [g for g in r.groups if g.verdict == REFUTED]
        return (f"{loc}: proved, refuted as expected in {_groups_text(ref)}: "
                f"{r.invariant.name} [{_scope(r)}] {t}")
    bad = [g for g in r.groups if not g.ok]
    what = "/".join(sorted({g.verdict for g in bad}))
    exp = "/".join(sorted({g.expected for g in bad}))
    return (f"{loc}: error: {r.invariant.name}: {what}, expected {exp}, in "
            f"{_groups_text(bad)} [{_scope(r)}] {t}")


def notes(r: InvariantResult, *, limit: int = 1) -> list[str]:
    """Indented notes: counterexamples (and what torch did), unknown reasons."""
    loc = r.invariant.location
    out = []
    bad = [g for g in r.groups if not g.ok]
    shown = bad if bad else [g for g in r.groups if g.counterexample is not None]
    for g in shown[: (3 if bad else limit)]:
        if g.verdict == UNKNOWN:
            out.append(f"  {loc}: note: {g.group}: unknown: {g.reason}")
            continue
        cx = g.counterexample
        if cx is None:
            if g.verdict == PROVED and g.expected == REFUTED:
                out.append(f"  {loc}: note: {g.group}: no counterexample exists")
            continue
        out.append(f"  {loc}: note: counterexample ({cx.label}): "
                   f"{cx.explanation or _values(cx.values)}")
        if cx.torch:
            out.append(f"  {loc}: note: {cx.torch}")
    more = len([g for g in r.groups if g.counterexample is not None]) - len(shown[:limit])
    if not bad and more > 0:
        out.append(f"  {loc}: note: {more} more counterexample(s); see --json")
    return out


def _values(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


# --------------------------------------------------------------------------------------
# JSON and JUnit


def to_json(results: Sequence[InvariantResult], s: Summary) -> dict:
    return {"summary": {**dataclasses.asdict(s), "ok": s.ok, "statements": statements(results),
                        "line": summary_line(s)},
            "invariants": [r.as_dict() for r in results]}


def to_junit(results: Sequence[InvariantResult], s: Summary) -> str:
    failures = sum(1 for r in results if not r.ok and not r.error and not r.skipped)
    errors = sum(1 for r in results if r.error)
    rows = ['<?xml version="1.0" encoding="UTF-8"?>',
            f'<testsuites tests="{len(results)}" failures="{failures}" errors="{errors}" '
            f'time="{s.seconds:.3f}">',
            f'  <testsuite name="symconv prove" tests="{len(results)}" failures="{failures}" '
            f'errors="{errors}" skipped="{s.skipped}" time="{s.seconds:.3f}">']
    for r in results:
        mod = r.invariant.fn.__module__
        head = (f'    <testcase classname={quoteattr(mod)} name={quoteattr(r.invariant.name)} '
                f'time="{r.seconds:.3f}"')
        body = "\n".join(notes(r, limit=3))
        if r.error:
            rows.append(head + ">")
            rows.append(f"      <error message={quoteattr(r.error)}/>")
            rows.append("    </testcase>")
        elif r.skipped:
            rows.append(head + ">")
            rows.append('      <skipped message="not applicable to the chosen environments"/>')
            rows.append("    </testcase>")
        elif not r.ok:
            rows.append(head + ">")
            rows.append(f"      <failure message={quoteattr(line(r))}>{escape(body)}</failure>")
            rows.append("    </testcase>")
        else:
            rows.append(head + ">")
            rows.append(f"      <system-out>{escape(line(r) + chr(10) + body)}</system-out>")
            rows.append("    </testcase>")
    rows.append("  </testsuite>")
    rows.append("</testsuites>")
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------------------
# Markdown


def to_markdown(results: Sequence[InvariantResult], s: Summary, *, command: str) -> str:
    import torch
    import z3

    out = ["# Proof catalogue", "",
           "Generated by `python -m proofs.docs` (it runs "
           f"`{command}`); do not edit by hand.", "",
           "Each invariant below is a named function in `proofs/` whose docstring is the "
           "statement. It is proven over unbounded integers (Z3: the negation is unsat, through "
           "`symconv.solver`) from symconv's own formulas, for 1-D, 2-D and 3-D convolutions, "
           "and, for dispatch invariants, in every environment preset and every enumerated "
           "choice of device, dtype, layout, memory format, transposed and need_backward "
           "(a statement's text says where its scope is narrower; an expected-refuted dispatch "
           "statement is shown in one environment the installed torch can replay). "
           "Verdicts: **proved**; **refuted**, with a counterexample that is replayed on the "
           "installed torch; **unknown** (solver timeout; never reported as proved). "
           "`symconv prove` exits 0 exactly when every invariant has its expected verdict.", "",
           f"Run: torch {torch.__version__}, z3 {z3.get_version_string()}, Python "
           f"{platform.python_version()}.", "",
           f"**{summary_line(s)}** — {statements(results)} distinct statements.", "",
           "| # | invariant | issue item | expected | verdict | time |",
           "|---|---|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        out.append(f"| {i} | [`{r.invariant.name}`](#{r.invariant.name}) | "
                   f"{r.invariant.item} | {r.expected} | {_md_verdict(r)} | {r.seconds:.2f}s |")
    out.append("")
    for r in results:
        inv = r.invariant
        out.append(f"## {inv.name}")
        out.append("")
        out.append(f"`{inv.name}` — `{inv.location}` — issue item {inv.item} — "
                   f"{_md_verdict(r)} in {r.seconds:.2f}s")
        out.append("")
        out.append(textwrap.indent(inv.statement, "> ", lambda _: True))
        out.append("")
        by: dict[tuple, list] = {}
        for g in r.groups:
            by.setdefault((g.verdict, g.expected), []).append(str(g.group))
        for (v, e), gs in by.items():
            mark = "as expected" if v == e else f"**expected {e}**"
            out.append(f"- {v} ({mark}): {', '.join(gs)}")
        if r.error:
            out.append(f"- error: {r.error}")
        for g in r.groups:
            if g.verdict == UNKNOWN:
                out.append(f"- {g.group}: unknown — {g.reason}")
        cxs = [g.counterexample for g in r.groups if g.counterexample is not None]
        if cxs:
            out.append("")
            out.append("Counterexamples (each replayed on torch):")
            out.append("")
            for cx in cxs:
                out.append(f"- **{cx.label}** — {cx.explanation or _values(cx.values)}")
                out.append(f"  - torch: {cx.torch}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _md_verdict(r: InvariantResult) -> str:
    if r.error:
        return "error"
    if r.skipped:
        return "not applicable"
    v = r.verdict
    if r.ok:
        kinds = sorted({g.verdict for g in r.groups})
        return " / ".join(kinds) + " (as expected)"
    return f"**{v}** (expected {r.expected})"
