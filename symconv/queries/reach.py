"""``reach``: is a backend reachable under an environment and constraints, with a witness that
torch confirms, the region of calls that reach it, or the proof that none does."""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any
from collections.abc import Sequence

import z3

from ..backends import ConvBackend
from ..env import Environment, preset
from ..rules import RULES
from . import pretty, solve
from .space import (FLAG_VARS, Leaf, Pruned, Space, Structure, fact_text,
                    space, value_name)
from .where import Where, WhereError, parse_where, require_satisfiable
from .witness import Validation, Witness, env_name, recorded, replay

__all__ = ["reach", "ReachResult", "resolve_env", "resolve_backend", "Query", "env_summary"]


def resolve_env(env: Environment | str | None) -> tuple[Environment, str]:
    """An Environment and its label from an Environment, a preset name or ``None`` (this
    process)."""
    if env is None:
        return Environment.from_torch(), "native"
    if isinstance(env, str):
        return preset(env), env
    if isinstance(env, Environment):
        return env, env_name(env)
    raise TypeError(f"env must be an Environment, a preset name or None, got {type(env).__name__}")


def resolve_backend(backend: ConvBackend | str | int) -> ConvBackend:
    if isinstance(backend, ConvBackend):
        return backend
    if isinstance(backend, int) and not isinstance(backend, bool):
        return ConvBackend(backend)
    return ConvBackend.parse(str(backend))


def env_summary(env: Environment) -> str:
    parts = [f"torch {env.torch_version}"]
    parts.append(f"{env.num_threads} thread" + ("s" if env.num_threads != 1 else ""))
    if env.cudnn_version:
        parts.append(f"cuDNN {env.cudnn_version}, sm_{env.cuda_capability[0]}"
                     f"{env.cuda_capability[1]}" if env.cuda_capability else
                     f"cuDNN {env.cudnn_version}")
    parts.append("mkldnn " + ("on" if env.mkldnn_available and env.mkldnn_enabled else "off"))
    parts.append("nnpack " + ("on" if env.nnpack_available and env.nnpack_enabled else "off"))
    if env.mkldnn_bf16_supported:
        parts.append("oneDNN bf16")
    if env.mobile:
        parts.append("mobile, XNNPACK" if env.xnnpack_available else "mobile")
    if env.arm_neon:
        parts.append("ARM NEON")
    return ", ".join(parts)


def _dims_list(dims) -> tuple | None:
    if dims is None:
        return None
    if isinstance(dims, int) and not isinstance(dims, bool):
        dims = (dims,)
    if not isinstance(dims, (tuple, list, range)) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise TypeError(f"dims must be 1, 2, 3 or a sequence of them, got {dims!r:.80}")
    out = tuple(dims)
    if not out:
        raise ValueError("dims must name at least one of 1, 2, 3")
    for d in out:
        if d not in (1, 2, 3):
            raise ValueError(f"dims must be 1, 2 or 3, got {d}")
    return out


class Query:
    """An environment, dims and constraints, resolved once: the space of calls to query."""

    def __init__(self, env=None, dims=None, where=None, *, vary_flags: bool = True) -> None:
        self.env, self.env_label = resolve_env(env)
        self.where: Where = where if isinstance(where, Where) else parse_where(where)
        dl = _dims_list(dims)
        r = dict(self.where.restrict)
        if "dims" in r:
            allowed = r.pop("dims")
            dl = tuple(d for d in (dl or (2, 1, 3)) if d in allowed)
            if not dl:
                raise WhereError("the constraints contradict each other: no number of dims is "
                                 "left")
        self.dims = dl or (2, 1, 3)
        if self.where.threads:
            cur = self.env.num_threads
            vals = self.where.thread_values((cur, 2 if cur == 1 else 1))
            if not vals:
                raise WhereError("the constraints contradict each other: num_threads")
            r["num_threads"] = vals
        self.space: Space = space(self.env, dims=self.dims, restrict=r, vary_flags=vary_flags)
        bad = self.space.empty_domain()
        if bad is not None:
            raise WhereError(f"no value of {bad} is possible under this environment and "
                             "these constraints")
        self.structures = [st for st in self.space.structures() if self.where.applies_to(st)]
        if not self.structures:
            raise WhereError("the constraints name sizes that no requested number of dims has "
                             f"(dims {', '.join(map(str, self.dims))})")
        self._solvers: dict = {}
        self._where_f: dict = {}
        require_satisfiable(self.where, self.structures)

    def where_formula(self, st: Structure):
        if st.key not in self._where_f:
            self._where_f[st.key] = self.where.formula(st)
        return self._where_f[st.key]

    def solver(self, st: Structure) -> z3.Solver:
        """An incremental solver holding the structure's valid-call conditions and the
        constraints; callers push/pop around their own assertions."""
        s = self._solvers.get(st.key)
        if s is None:
            s = solve.new_solver()
            s.add(st.valid, self.where_formula(st))
            self._solvers[st.key] = s
        return s

    def context(self, st: Structure) -> list:
        return [st.valid, self.where_formula(st)]

    def witness(self, backend: ConvBackend, leaf: Leaf, values: dict) -> Witness:
        full = self.space.full(leaf.structure.dims, leaf.assign)
        facts = {"device": full["device"], "dtype": value_name("dtype", full["dtype"]),
                 "layout": value_name("layout", full["layout"]),
                 "input_mf": value_name("input_mf", full["input_mf"]),
                 "weight_mf": value_name("weight_mf", full["weight_mf"]),
                 "requires_grad": bool(full["requires_grad"])}
        flags = {k: full[k] for k in FLAG_VARS}
        st = leaf.structure
        vals = {n: int(values[n]) for n in st.symbols}
        return Witness(backend, self.env, st.dims, st.transposed, vals, facts, flags)

    def leaf_facts(self, leaf: Leaf) -> dict:
        out = {"dims": leaf.structure.dims, "transposed": leaf.structure.transposed}
        out.update(leaf.assign)
        return out


@dataclasses.dataclass
class RegionPart:
    facts: dict          # categorical literals (var -> value or tuple of values)
    conditions: list     # texts of integer conditions (all must hold)

    def text(self) -> str:
        lits = []
        for k, v in self.facts.items():
            if isinstance(v, tuple):
                lits.append(f"{k} in ({', '.join(value_name(k, x) for x in v)})")
            else:
                lits.append(fact_text(k, v))
        return " and ".join(lits + self.conditions) or "always"


@dataclasses.dataclass
class ReachResult:
    backend: ConvBackend
    env: Environment
    env_label: str
    dims: tuple
    where: str
    verdict: str                      # "reachable" | "unreachable" | "unknown"
    witness: Witness | None = None
    validation: Validation | None = None
    proof: list = dataclasses.field(default_factory=list)
    unknown: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    _query: Any = None
    _region: Any = None

    @property
    def reachable(self) -> bool:
        return self.verdict == "reachable"

    @property
    def validated(self) -> bool:
        """Torch confirmed the witness: here, or on the preset's machine (recorded)."""
        return self.validation is not None and self.validation.status in ("validated",
                                                                          "recorded")

    def region(self) -> list[RegionPart]:
        """The calls (valid ones) that reach the backend, as a disjunction of parts, each a
        conjunction of categorical facts and simplified integer conditions. Facts a part
        doesn't name don't matter there."""
        if self._region is None:
            self._region = _region(self._query, self.backend) if self.reachable else []
        return self._region

    def region_text(self, limit: int | None = None) -> list[str]:
        parts = self.region()
        lines = [p.text() for p in parts]
        if limit is not None and len(lines) > limit:
            lines = lines[:limit] + [f"... and {len(parts) - limit} more part(s) (--json lists "
                                     "all)"]
        return lines

    def summary(self) -> str:
        if self.verdict == "reachable":
            status = self.validation.status if self.validation else ""
            mark = {"validated": " (validated by torch)",
                    "recorded": " (validated on the GPU machine)",
                    "mismatch": " (MISMATCH with torch)"}.get(status, "")
            return f"reachable{mark}"
        return self.verdict

    def text(self, region_limit: int | None = 12) -> str:
        head = (f"{self.backend.name} is {self.verdict} under {self.env_label} "
                f"({env_summary(self.env)})")
        if self.where:
            head += f" where {self.where}"
        lines = [head]
        if self.witness is not None:
            lines.append("witness:")
            lines += ["  " + x for x in self.witness.lines()]
            if self.validation is not None:
                lines.append("  " + self.validation.message)
            lines.append("region (valid calls that reach it; facts not named don't matter):")
            for i, t in enumerate(self.region_text(region_limit)):
                lines.append(("     " if i == 0 else "  or ") + t)
        if self.verdict == "unreachable":
            lines.append("proof:")
            lines += ["  " + p for p in self.proof]
        if self.unknown:
            lines.append("unknown (the solver did not decide):")
            lines += ["  " + u for u in self.unknown]
        return "\n".join(lines)

    def to_json(self, region: bool = True) -> dict:
        out = {"backend": self.backend.name, "environment": self.env_label,
               "environment_fields": self.env.as_dict(), "dims": list(self.dims),
               "where": self.where, "verdict": self.verdict,
               "witness": self.witness.to_json() if self.witness else None,
               "validation": self.validation.to_json() if self.validation else None,
               "proof": self.proof, "unknown": self.unknown, "seconds": round(self.seconds, 4)}
        if self.witness is not None:
            out["witness_code"] = self.witness.code()
        if region:
            out["region"] = [{"facts": {k: (list(map(lambda x: value_name(k, x), v))
                                            if isinstance(v, tuple) else value_name(k, v))
                                        for k, v in p.facts.items()},
                              "conditions": p.conditions, "text": p.text()}
                             for p in self.region()]
        return out


def _targets(backend: ConvBackend) -> list[int]:
    return [i for i, r in enumerate(RULES) if r.outcome is backend or r.outcome == backend]


def reach(backend: ConvBackend | str, *, env: Environment | str | None = None,
          dims: int | Sequence[int] | None = None,
          where: str | Sequence[str] | Where | None = None, validate: bool = True,
          vary_flags: bool = True) -> ReachResult:
    """Decide whether ``backend`` is reachable under ``env`` (an Environment, a preset name, or
    ``None`` for this process) by calls with ``dims`` spatial dims (1, 2, 3; default all)
    that satisfy ``where`` (see :mod:`symconv.queries.where`). Runtime flags (mkldnn, nnpack,
    cuDNN flags, threads, grad mode) may differ from the environment's values unless
    ``vary_flags=False``; build facts never do.

    Reachable: ``witness`` is the cheapest call found (fewest changed flags and facts, then the
    smallest sizes), replayed on the installed torch when ``validate`` and the environment is
    this process's (``validation``); :meth:`ReachResult.region` describes all of them.
    Unreachable: ``proof`` says why, for every combination of categorical facts.
    """
    t0 = time.perf_counter()
    b = resolve_backend(backend)
    q = Query(env, dims, where, vary_flags=vary_flags)
    res = ReachResult(b, q.env, q.env_label, q.dims, q.where.text, "unreachable", _query=q)
    targets = _targets(b)
    pruned: list[Pruned] = []
    unsat: list[Leaf] = []
    for item in q.space.explore(targets, structures=q.structures):
        if isinstance(item, Pruned):
            pruned.append(item)
            continue
        s = q.solver(item.structure)
        s.push()
        try:
            s.add(item.formula)
            v, why = solve.verdict_small_first(s, item.structure.symbols.values())
            if v == "sat":
                values = solve.minimise(s, item.structure.symbols)
                if values is None:  # pragma: no cover - the first check just said sat
                    v, why = "unknown", "the model search did not finish"
                else:
                    res.witness = q.witness(b, item, values)
        finally:
            s.pop()
        if v == "sat":
            res.verdict = "reachable"
            break
        if v == "unsat":
            unsat.append(item)
        else:
            res.unknown.append(f"{_facts_text(q, item)}: {why}")
    if res.verdict != "reachable":
        if res.unknown:
            res.verdict = "unknown"
        res.proof = _proof(q, b, targets, pruned, unsat)
    elif validate:
        assert res.witness is not None  # a reachable verdict always has its witness
        res.validation = replay(res.witness)
        if res.validation.status == "not-validated":
            res.validation = recorded(res.witness) or res.validation
    res.seconds = time.perf_counter() - t0
    return res


def _facts_text(q: Query, leaf: Leaf | Pruned) -> str:
    facts = q.leaf_facts(leaf) if isinstance(leaf, Leaf) else \
        {"dims": leaf.structure.dims, "transposed": leaf.structure.transposed, **leaf.assign}
    return " and ".join(fact_text(k, v) for k, v in facts.items())


def _proof(q: Query, b: ConvBackend, targets: list, pruned: list, unsat: list) -> list[str]:
    lines = []
    if not targets:  # pragma: no cover - every backend has a rule
        return [f"no rule of the table selects {b.name}"]
    names = ", ".join(f"'{RULES[i].name}' ({' and '.join(c.text for c in RULES[i].conds)})"
                      for i in targets)
    lines.append(f"{b.name} is chosen only by rule{'s' if len(targets) > 1 else ''} {names}.")
    # categorical: group by reason
    groups: dict = {}
    for p in pruned:
        key = tuple(p.reasons)
        groups.setdefault(key, []).append(p)
    for reasons, ps in groups.items():
        where = _where_list(q, ps)
        why = "; ".join(f"rule '{r}': {t}" if r else t for r, t in reasons)
        lines.append(f"{where}: {why}")
    for leaf in unsat:
        lines.append(f"{_facts_text(q, leaf)}: {_core_text(q, leaf)}")
    if q.where:
        lines.append(f"(within the constraints {q.where.text!r})")
    return lines


def _where_list(q: Query, ps: list) -> str:
    texts = [_facts_text(q, p) for p in ps]
    if len(texts) > 3:
        return f"in {len(texts)} combinations of facts (e.g. {texts[0]})"
    return "when " + " | ".join(texts) if texts else "always"


def _core_text(q: Query, leaf: Leaf) -> str:
    """Why Z3 found the leaf's integer conditions unsatisfiable: its unsat core."""
    st = leaf.structure
    out = []
    for rule, terms in leaf.parts.items():
        s = solve.new_solver()
        labels = {}
        for i, (label, term) in enumerate([("the call is valid (shape checks pass)", st.valid),
                                           (f"the constraints {q.where.text!r}",
                                            q.where_formula(st))] + list(terms)):
            b = z3.Bool(f"__p{i}")
            labels[str(b)] = label
            s.assert_and_track(term, b)
        r = s.check()
        if r != z3.unsat:  # pragma: no cover - the leaf was unsat as a whole
            out.append(f"rule '{rule}': undecided")
            continue
        core = [labels[str(c)] for c in s.unsat_core()]
        earlier = [c[4:] for c in core if c.startswith("not ")]
        says = []
        if earlier:
            says.append(f"earlier rule{'s' if len(earlier) > 1 else ''} "
                        + ", ".join(repr(e) for e in earlier) + " fire first")
        if any(c.startswith("the constraints") for c in core):
            says.append("the constraints exclude it")
        if "the call is valid (shape checks pass)" in core and not says:
            says.append("no valid call satisfies it")
        if rule not in core and not earlier:
            says.append("(independently of the rule's own conditions)")
        out.append(f"whenever rule '{rule}' could hold, " + " and ".join(says) + " (Z3: unsat)")
    return "; ".join(out)


# --------------------------------------------------------------------------------------
# Regions


def _region(q: Query, b: ConvBackend, budget_s: float = 8.0) -> list[RegionPart]:
    """Parts found after ``budget_s`` seconds are kept as they are (correct, not simplified)."""
    deadline = time.monotonic() + budget_s
    parts: list[RegionPart] = []
    for item in q.space.explore(_targets(b), structures=q.structures):
        if isinstance(item, Pruned):
            continue
        st = item.structure
        names = None
        for terms in item.parts.values():
            f = z3.And(*[t for _, t in terms]) if terms else z3.BoolVal(True)
            s = q.solver(st)
            s.push()
            try:
                s.add(f)
                v, _ = solve.verdict(s)
            finally:
                s.pop()
            if v == "unsat":
                continue
            if names is None:
                names = pretty.named_terms(q.space.leaf_ctx(st, item.assign))
            conj = solve.nnf_conjuncts(pretty.abstract(f, names))
            left = deadline - time.monotonic()
            if left > 0:
                conj = solve.simplify_conjuncts(conj, q.context(st), budget_s=min(2.0, left))
            conds = solve.named_atoms(conj, _spatial(st))
            if v == "unknown":
                conds.append("(satisfiability unknown)")
            parts.append(RegionPart(q.leaf_facts(item), conds))
    return _merge(q, parts)


def _spatial(st: Structure) -> tuple:
    from .space import SPATIAL
    return SPATIAL[st.dims]


def _domain(q: Query, var: str, dims) -> tuple:
    if var == "dims":
        return q.dims
    if var == "transposed":
        return q.space.transposed_values()
    out: list = []
    for d in (dims if isinstance(dims, tuple) else (dims,)):
        for v in q.space.vars(d)[var].values:
            if v not in out:
                out.append(v)
    return tuple(out)


_VALIDITY_VARS = ("layout", "device", "dtype", "input_mf", "requires_grad")


def _impossible(q: Query, dims: int, facts: dict) -> bool:
    """Whether no tensor has these facts (whatever the facts left out)."""
    from .space import _Evaluator, _valid_combo
    for d in (dims if isinstance(dims, tuple) else (dims,)):
        vars_ = q.space.vars(d)
        free = [v for v in _VALIDITY_VARS if v not in facts]
        fixed = {k: v for k, v in facts.items() if k not in ("dims", "transposed")}
        choices = [[(k, x) for x in (v if isinstance(v, tuple) else (v,))]
                   for k, v in fixed.items()]
        for combo in itertools.product(*[vars_[v].values for v in free]):
            for fx in itertools.product(*choices):
                full = q.space.full(d, dict(fx))
                full.update(dict(zip(free, combo)))
                if _valid_combo(_Evaluator(full, q.env)):
                    return False
    return True


def _merge(q: Query, parts: list[RegionPart]) -> list[RegionPart]:
    """Merge parts that differ in one fact only: ``v == a`` or ``v == b`` becomes
    ``v in (a, b)``, and a fact whose possible values are all covered is dropped."""
    def as_set(v):
        return v if isinstance(v, tuple) else (v,)

    changed = True
    while changed:
        changed = False
        for var in ["dims", "transposed"] + list(q.space.vars(q.dims[0])):
            groups: dict = {}
            for i, p in enumerate(parts):
                if var not in p.facts:
                    continue
                rest = tuple((k, v) for k, v in p.facts.items() if k != var)
                groups.setdefault((rest, tuple(p.conditions)), []).append(i)
            for (rest, conds), idx in groups.items():
                values: list = []
                for i in idx:
                    for v in as_set(parts[i].facts[var]):
                        if v not in values:
                            values.append(v)
                dims = dict(rest).get("dims", q.dims[0])
                domain = _domain(q, var, dims)
                rest_d = dict(rest)
                possible = [v for v in domain if v in values or
                            not _impossible(q, dims, {**rest_d, var: v})]
                covered = all(v in values for v in possible)
                if len(idx) < 2 and not covered:
                    continue
                facts = dict(rest)
                if not covered:
                    ordered = tuple(v for v in domain if v in values)
                    facts = {}
                    for k, v in parts[idx[0]].facts.items():
                        facts[k] = ordered if k == var else v
                merged = RegionPart(facts, list(conds))
                first = min(idx)
                keep = [p for i, p in enumerate(parts) if i not in idx]
                pos = sum(1 for i in range(first) if i not in idx)
                keep.insert(pos, merged)
                parts = keep
                changed = True
                break
            if changed:
                break
    return parts
