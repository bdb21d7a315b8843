"""Dispatch invariants: the ordered rule table of ``_select_conv_backend`` and the memory format.

Each statement is proven per environment profile and spatial rank, for every enumerated
choice of device, dtype, layout, memory format, transposed and need_backward (see
``proofs.worlds.keys``), with every size and parameter a symbol. "check passes" is symconv's
``check_shape_forward`` for the profile's torch version; "selects B" is the first-match case of
``symconv.rules.RULES`` whose outcome is B (``symconv.rules.cases``).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Callable, Iterable

import torch
import z3

from symconv import rules
from symconv import domain as D
from symconv.backends import ConvBackend as B
from symconv.rules import ErrorOutcome
from symconv.spec import MF_CHANNELS_LAST, MF_CHANNELS_LAST_3D, TensorSpec

from .common import at, fmt_values
from .core import PROVED, REFUTED, Group, Obligation, exactly_one, iff, implies, invariant, zs
from .worlds import World, WorldKey, conj, disj, keys, neg, profile, truth

TRANSPOSE_BACKENDS = (B.CudnnTranspose, B.MiopenTranspose, B.MkldnnTranspose,
                      B.SlowTranspose2d, B.SlowTranspose3d, B.MpsTranspose)
EITHER_BACKENDS = (B.Empty, B.MkldnnEmpty, B.Overrideable)


# --------------------------------------------------------------------------------------
# helpers


def _rule_at(w: World, values: dict[str, int]) -> str:
    for cond, rule in w.cases:
        if at(cond, values) is True:
            o = rule.outcome
            return f"rule '{rule.name}' -> {o.name if isinstance(o, B) else o}"
    return "no rule"


def _explain(w: World) -> Callable[[dict[str, int]], str]:
    def f(values):
        valid = at(w.valid, values)
        return (f"{w.key}: {fmt_values(values, w.sym)}; checks "
                f"{'pass' if valid is True else 'fail'}; symconv: {_rule_at(w, values)}")
    return f


def obligations(run, world_keys: Iterable[WorldKey], claim: Callable[[World], Any], *,
                replay: str | None = "select", extra: Callable[[World], list] | None = None,
                case_extra: Callable[[World, dict], dict] | None = None, split: bool = False
                ) -> Iterable[Obligation]:
    """One obligation per group (environment, rank): the claim for every world of the group,
    each under its own validity condition; identical formulas of different worlds are kept
    once. With ``split``, each conjunct of a world's claim is its own obligation (easier for
    the solver when the conjuncts are non-linear). A counterexample names its world."""
    groups: dict[Group, list[tuple[World, Any, list]]] = {}
    for key in world_keys:
        w = run.worlds.get(key)
        c = claim(w)
        if c is None:
            continue
        pre = [w.valid] + (extra(w) if extra else [])
        groups.setdefault(Group(key.dims, key.env), []).append((w, c, pre))
    for group, items in groups.items():
        live = [(w, c, pre) for w, c, pre in items if truth(c) is not True]
        if not live:
            yield Obligation(group, True, [], {}, f"{group}: {len(items)} worlds")
            continue
        # worlds often give the very same formulas (Z3 terms are hash-consed): keep one each
        seen, parts = set(), []
        for _w, c, pre in live:
            zc = zs(c)
            pieces = zc.children() if split and z3.is_and(zc) else [zc]
            for piece in pieces:
                part = z3.Implies(z3.And(*[zs(p) for p in pre]), piece)
                if part.get_id() not in seen:
                    seen.add(part.get_id())
                    parts.append(part)
        by_id: dict[int, Any] = {}
        names: dict[str, Any] = {}
        for w, _, _ in live:
            for f in w.facts:
                by_id.setdefault(f.get_id(), f)
            names.update(w.symbols())
        facts = list(by_id.values())

        def failing(values, live=live):
            for w, c, pre in live:
                if all(at(p, values) is True for p in pre) and at(c, values) is False:
                    return w
            return live[0][0]

        def witness(values, failing=failing):
            if replay is None:
                return None
            w = failing(values)
            case = w.case(values, run=replay)
            if case_extra is not None:
                case.update(case_extra(w, values))
            return case

        def explain(values, failing=failing):
            return _explain(failing(values))(values)

        def label(values, failing=failing):
            return str(failing(values).key)
        chunks = [[p] for p in parts] if split else [parts]
        for chunk in chunks:
            yield Obligation(group, z3.And(*chunk), facts, names,
                             f"{group}: {len(items)} worlds, {len(parts)} distinct formulas",
                             witness=witness, explain=explain, relabel=label)


def _demo_envs(run, applies=lambda env: True) -> list[str]:
    """For an expected-refuted statement: the first environment it applies to that the
    installed torch can replay (else the first it applies to). Its proved counterparts run in
    every environment; one torch-checked counterexample per rank is what the statement is for."""
    from .replay import environment_match
    cands = [e for e in run.all_envs if applies(profile(e))]
    pick = next((e for e in cands if environment_match(e)[0]), cands[0] if cands else None)
    return [pick] if pick is not None and pick in run.envs else []


def _all_keys(run, **kw):
    return keys(run.envs, run.dims, **kw)


def _is_unsupported(rule) -> bool:
    return isinstance(rule.outcome, ErrorOutcome) and rule.outcome.name == "unsupported"


def _cuda_envs(run):
    return [e for e in run.envs if profile(e).cuda_available]


# --------------------------------------------------------------------------------------
# 5. Totality and determinism


def _abstract_table(table):
    """The table with every condition replaced by a Boolean atom (one per ``Cond`` object):
    what holds for it holds for every environment, argument set and categorical choice."""
    atoms: dict[int, Any] = {}
    out = []
    for r in table:
        conds = []
        for c in r.conds:
            a = atoms.setdefault(id(c), z3.Bool(f"{r.name}:{c.text}"))
            conds.append(rules.Cond(c.text, lambda _ctx, a=a: a))
        out.append(rules.Rule(r.name, r.outcome, tuple(conds)))
    return tuple(out), {str(a): a for a in atoms.values()}


def _table_or_worlds(run, abstract_claim, concrete_claim, label):
    """One obligation over the abstract table; if it is refuted there, the enumerated worlds
    decide (a refutation of the abstraction need not be a real one)."""
    table, atoms = _abstract_table(rules.RULES)
    claim = abstract_claim(table)
    r = run.decide(Obligation(Group(), claim, [], atoms, label))
    if r.unsat:
        yield Obligation(Group(), z3.BoolVal(True), [], {}, f"{label} (abstract table)")
        return
    # world by world, each group stopping at its first counterexample
    for key in _all_keys(run, need_backward=(False, True)):
        group = Group(key.dims, key.env)
        if run.is_refuted(group):
            continue
        yield from obligations(run, [key], concrete_claim)


def _first_match_claim(cases, guards):
    case_of: dict[int, list] = {}
    for cond, rule in cases:
        case_of.setdefault(id(rule), []).append(cond)
    parts = [exactly_one([c for c, _ in cases])]
    earlier = []
    for g, rule in guards:
        mine = D.or_(*case_of.get(id(rule), [False]))
        parts.append(iff(mine, D.and_(g, *[D.not_(e) for e in earlier])))
        earlier.append(g)
    return z3.And(*[zs(p) for p in parts])


@invariant(item="5", kind="dispatch", expect=lambda g: PROVED)
def dispatch_total(run):
    """check passes  ⟹  ⋁_r guard_r, for every rule r of symconv.rules.RULES.

    Some rule of the ordered table fires for every argument set, in every environment and
    categorical world: proven for the table with its conditions replaced by free Boolean
    atoms (so for every valuation the world could give them — the last rule, Overrideable,
    has no condition). Where the abstraction is refuted, every enumerated world is checked
    with its real conditions, and a counterexample is a real argument set."""
    yield from _table_or_worlds(
        run, lambda table: z3.Or(*[zs(r.guard(None)) for r in table]),
        lambda w: D.or_(*[g for g, _ in w.guards]), "some rule fires")


@invariant(item="5", kind="dispatch", expect=lambda g: PROVED)
def dispatch_deterministic(run):
    """exactly one case of symconv.rules.cases holds, and for every rule r:
    case_r ⟺ guard_r ∧ ⋀_{q before r} ¬guard_q.

    The symbolic selection (what users read from ``select_conv_backend`` over symbols) is a
    function: its cases are disjoint, cover everything, and each is the first-match region of
    its rule. Proven for the abstract table (every condition a free Boolean atom), which
    covers every environment and argument set; world by world where that is refuted."""
    def abstract(table):
        return _first_match_claim(rules.cases(None, table), [(r.guard(None), r) for r in table])

    def concrete(w):
        return _first_match_claim(rules.cases(w.ctx, rules.RULES), w.guards)
    yield from _table_or_worlds(run, abstract, concrete, "first match")


def _unsupported(w: World) -> Any:
    return disj(*[w.case_at(i) for i, r in enumerate(w.rules) if _is_unsupported(r)])


@invariant(item="5", kind="dispatch")
def unsupported_unreachable(run):
    """1-D, 2-D, 3-D convolutions of strided (dense) tensors: check passes  ⟹  no case with
    outcome "unsupported ConvNd parameters" holds.

    No such argument set reaches torch's "unsupported ConvNd parameters" (depthwise,
    transposed or general); MKLDNN tensors are the exception, see unsupported_exactly."""
    yield from obligations(run, _all_keys(run, need_backward=(False, True),
                                          layouts=("strided",)),
                           lambda w: neg(_unsupported(w)))


@invariant(item="5", kind="dispatch")
def unsupported_exactly(run):
    """Spatial rank 0 to 4, strided or MKLDNN input: check passes  ⟹
    (reaches "unsupported ConvNd parameters"  ⟺  N ≠ 0 ∧ C ≠ 0 ∧ numel(input) ≠ 0 ∧ input on
    CPU or CUDA ∧ the input the rules see is neither 4-D nor 5-D ∧ ¬use_cudnn ∧ ¬use_miopen ∧
    ¬use_mkldnn ∧ use_mkldnn does not read input.size(3) of a 0-D convolution's 2-D input,
    which raises IndexError in torch).

    The rules see a 1-D convolution's input viewed as 4-D, except an MKLDNN tensor, which
    stays 3-D: so besides 0-D and 4-D convolutions (weights of 2 or 6 dims) the error is
    reached by a 1-D convolution of an MKLDNN tensor that use_mkldnn turns down — a transposed
    one with output_padding >= stride, or any with MKLDNN disabled (replayed on torch).
    Elsewhere the slow kernels take what cuDNN, MIOpen and MKLDNN do not, and other devices go
    to Overrideable. With unsupported_unreachable this characterises the error exactly."""
    def claim(w):
        c = w.ctx
        spec = conj(D.ne(w.sym.N, 0), D.ne(w.sym.C, 0), D.ne(c.input.numel(), 0),
                    c.cpu_or_cuda, c.input.ndim not in (4, 5),
                    neg(c.params.use_cudnn(c.input, c.weight, c.env)),
                    neg(c.params.use_miopen(c.input, c.weight, c.bias_sizes is not None, c.env)),
                    neg(c.params.use_mkldnn(c.input, c.weight, c.env)),
                    neg(c.params.use_mkldnn_reads_missing_dims(c.input, c.weight, c.env)))
        return iff(_unsupported(w), spec)

    def all_keys():
        yield from keys(run.envs, (0, 4), dtypes=("float32", "float64"))
        yield from keys(run.envs, run.dims, layouts=("mkldnn",), need_backward=(False, True))
    yield from obligations(run, all_keys(), claim)


# --------------------------------------------------------------------------------------
# 6, 7. Backends tied to need_backward and depthwise convolutions


@invariant(item="6", kind="dispatch")
def no_backward_backends(run):
    """need_backward  ⟹  ¬(selects Xnnpack2d ∨ selects Winograd3x3Depthwise), with and without
    bias sizes (the overload convolution_backward calls).

    Xnnpack2d and Winograd3x3Depthwise have no backward ("Backward is not supported"); they
    are never chosen when one is needed."""
    yield from obligations(run, _all_keys(run, need_backward=(True,), bias=("none", "sizes")),
                           lambda w: D.not_(w.selects(B.Xnnpack2d, B.Winograd3x3Depthwise)))


@invariant(item="7", kind="dispatch")
def depthwise_backends_need_depthwise(run):
    """selects CudaDepthwise2d ∨ selects CudaDepthwise3d ∨ selects MiopenDepthwise ∨ rule
    cudnn_depthwise (cuDNN through use_cudnn_depthwise)  ⟹  G = C > 1 ∧ O mod C = 0.

    The depthwise kernels only see depthwise convolutions: groups equal to the input
    channels, more than one, and a whole number of output channels per group."""
    def claim(w):
        s = w.sym
        dw = D.or_(w.selects(B.CudaDepthwise2d, B.CudaDepthwise3d, B.MiopenDepthwise),
                   w.rule_case("cudnn_depthwise"))
        return implies(dw, z3.And(s.G == s.C, s.C > 1, s.O % s.C == 0))
    yield from obligations(run, keys(_cuda_envs(run), run.dims, devices=("cuda",)), claim)


# --------------------------------------------------------------------------------------
# 8. NNPACK


def _nnpack_spec(w: World) -> Any:
    """4-D float32 strided CPU input (a 1-D convolution viewed as 1 x L, or 2-D), not
    transposed, not dilated, every kernel size <= 16, padding < kernel, batch >= 16 unless
    mobile, NNPACK built and enabled."""
    k, env, s = w.key, w.env, w.sym
    if not (k.device == "cpu" and k.dtype == "float32" and k.layout == "strided"
            and not k.transposed and k.dims in (1, 2) and env.nnpack_available
            and env.nnpack_enabled):
        return False
    return z3.And(*[d == 1 for d in s.d], *[kk <= 16 for kk in s.k],
                  *[p < kk for p, kk in zip(s.p, s.k)],
                  *([] if env.mobile else [s.N >= 16]))


@invariant(item="8", kind="dispatch")
def nnpack_implies(run):
    """selects NnpackSpatial  ⟹  4-D float32 strided CPU input (1-D viewed as 1 x L, or 2-D),
    ¬transposed, ∀i: d_i = 1 ∧ k_i ≤ 16 ∧ p_i < k_i, N ≥ 16 (unless mobile), NNPACK built and
    enabled."""
    yield from obligations(run, _all_keys(run),
                           lambda w: implies(w.selects(B.NnpackSpatial), _nnpack_spec(w)))


def _env(g: Group) -> str:
    """The environment of a per-environment invariant's group (those always have one)."""
    assert g.env is not None, f"group {g} has no environment"
    return g.env


def _earlier(w: World, name: str) -> list:
    out: list[Any] = []
    for g, rule in w.guards:
        if rule.name == name:
            return out
        out.append(g)
    raise KeyError(name)


@invariant(item="8", kind="dispatch")
def nnpack_converse(run):
    """check passes ∧ the nnpack_implies conditions ∧ no rule ordered before 'nnpack' fires
    ⟹  selects NnpackSpatial.

    The conditions are exact up to the rules before it (MKLDNN, the empty paths, XNNPACK,
    Winograd, ...; see nnpack_preempted_by_mkldnn)."""
    def claim(w):
        return implies(D.and_(_nnpack_spec(w), *[D.not_(g) for g in _earlier(w, "nnpack")]),
                       w.selects(B.NnpackSpatial))
    yield from obligations(run, _all_keys(run), claim)


def _mkldnn_on(name):
    env = profile(name)
    return env.mkldnn_available and env.mkldnn_enabled


@invariant(item="8", kind="dispatch",
           expect=lambda g: PROVED if _mkldnn_on(g.env) else None)
def nnpack_preempted_by_mkldnn(run):
    """MKLDNN built and enabled  ⟹  check passes ⟹ ¬selects NnpackSpatial.

    Wherever MKLDNN is on, every argument set that meets the NNPACK conditions (batch ≥ 16)
    also meets use_mkldnn, which is ordered first: NNPACK is only reached with MKLDNN off
    (the mobile profile, or torch.backends.mkldnn disabled)."""
    yield from obligations(run, _all_keys(run),
                           lambda w: D.not_(w.selects(B.NnpackSpatial)))


# --------------------------------------------------------------------------------------
# 9. cuDNN and 64-bit indexing


def _new_rules(name: str) -> bool:
    """torch >= 2.11's CUDA rules (a fact about the profile, kept apart from symconv's own
    switch so that a mutation of symconv cannot move the expected verdict)."""
    return profile(name).version >= (2, 11)


def _cudnn_takes_64bit(name: str) -> bool:
    env = profile(name)
    return _new_rules(name) and (env.cudnn_version or 0) >= 90300 and env.cudnn_v8_api_enabled


def _needs_64bit(w: World) -> Any:
    c = w.ctx
    return c.params.needs_64bit_indexing_no_split(c.input, c.weight)


def _cuda_keys(run):
    envs = [e for e in run.with_profiles("seed-cuda") if profile(e).cuda_available]
    return keys(envs, run.dims, devices=("cuda",), dtypes=("float32", "float16"))


def _expect_cudnn_any(g: Group) -> str | None:
    if not profile(_env(g)).cuda_available:
        return None
    if _cudnn_takes_64bit(_env(g)):
        return REFUTED
    # the depthwise channels-last path: 2-D and 3-D only (a 1-D input is viewed contiguous)
    return REFUTED if _new_rules(_env(g)) and g.dims in (2, 3) else PROVED


@invariant(item="9", kind="dispatch", expect=_expect_cudnn_any)
def cudnn_never_64bit_indexing(run):
    """selects Cudnn ∨ selects CudnnTranspose  ⟹  ¬needs_64bit_indexing_no_split(input, weight).

    Proven for the seed's rules (profile seed-cuda: torch 2.4, cuDNN 9.1). Expected refuted
    for torch >= 2.11: with cuDNN >= 9.3 (cuda-h100) cuDNN takes inputs that need 64-bit
    indexing; and for any cuDNN (cuda-cudnn8: 8.9), use_cudnn_depthwise sends a 2-D or 3-D
    channels-last depthwise convolution whose input and weight fit 32-bit indexing to cuDNN
    without asking whether its output does (a large padding makes the output need 64-bit
    indexing; a 1-D input is viewed contiguous, so 1-D stays proved there) — see
    cudnn_path_never_64bit_indexing for the use_cudnn path alone. CUDA counterexamples cannot run
    on a CPU torch; the replay cites the H100 records instead."""
    yield from obligations(run, _cuda_keys(run), lambda w: implies(
        w.selects(B.Cudnn, B.CudnnTranspose), neg(_needs_64bit(w))),
        case_extra=_probe)


def _probe(w: World, values: dict) -> dict:
    dw = values.get("G", 1) > 1 and values.get("G") == values.get("C")
    return {"records_probe": {"kind": "cudnn_64bit", "depthwise": bool(dw)}}


@invariant(item="9", kind="dispatch",
           expect=lambda g: (None if not profile(_env(g)).cuda_available else
                             REFUTED if _cudnn_takes_64bit(_env(g)) else PROVED))
def cudnn_path_never_64bit_indexing(run):
    """rule cudnn ∨ rule cudnn_transpose (cuDNN through use_cudnn)  ⟹
    ¬needs_64bit_indexing_no_split(input, weight).

    Proven for the seed's rules and for cuDNN < 9.3 (seed-cuda, cuda-cudnn8); expected refuted
    for torch >= 2.11 with cuDNN >= 9.3 and the v8 API (cuda-h100), where use_cudnn no longer
    asks."""
    yield from obligations(run, _cuda_keys(run), lambda w: implies(
        disj(w.rule_case("cudnn"), w.rule_case("cudnn_transpose")), neg(_needs_64bit(w))),
        case_extra=_probe)


# --------------------------------------------------------------------------------------
# 10. MKLDNN and small 1x1 convolutions


def _small_1x1(w: World) -> Any:
    s = w.sym
    return z3.And(*[k == 1 for k in s.k], *[v == 1 for v in s.s], *[d == 1 for d in s.d],
                  s.N < 16)


def _mkldnn_keys(run):
    return _all_keys(run, devices=("cpu",), dtypes=("float32",), layouts=("strided",))


@invariant(item="10", kind="dispatch",
           expect=lambda g: PROVED if profile(_env(g)).num_threads == 1 else None)
def mkldnn_not_for_small_1x1(run):
    """One thread, float32 strided CPU input, ∀i: k_i = 1 ∧ s_i = 1 ∧ d_i = 1, N < 16
    ⟹  ¬selects Mkldnn ∧ ¬selects MkldnnTranspose."""
    yield from obligations(run, _mkldnn_keys(run), lambda w: implies(
        _small_1x1(w), D.not_(w.selects(B.Mkldnn, B.MkldnnTranspose))))


@invariant(item="10", kind="dispatch",
           expect=lambda g: (REFUTED if profile(_env(g)).num_threads > 1 and _mkldnn_on(_env(g))
                             else None))
def mkldnn_not_for_small_1x1_multithreaded(run):
    """Several threads, float32 strided CPU input, ∀i: k_i = 1 ∧ s_i = 1 ∧ d_i = 1, N < 16
    ⟹  ¬selects Mkldnn ∧ ¬selects MkldnnTranspose.

    Expected refuted: use_mkldnn's "small 1x1" exception only holds for one thread; with
    more, MKLDNN takes such a convolution as soon as N > 1 (replayed on torch with the
    thread count set)."""
    envs = _demo_envs(run, lambda e: e.num_threads > 1 and e.mkldnn_available and
                      e.mkldnn_enabled)
    yield from obligations(run, keys(envs, run.dims, devices=("cpu",), dtypes=("float32",),
                                     layouts=("strided",)),
                           lambda w: implies(_small_1x1(w),
                                             D.not_(w.selects(B.Mkldnn, B.MkldnnTranspose))))


# --------------------------------------------------------------------------------------
# 11. The empty paths


@invariant(item="11", kind="dispatch", expect=REFUTED)
def empty_iff_no_elements(run):
    """check passes  ⟹  (selects Empty ∨ selects MkldnnEmpty  ⟺  numel(input) = 0).

    Expected refuted: an input with N, C > 0 and a spatial size 0 (accepted when the padding
    covers the kernel) has no elements but reaches "Only zero batch or zero channel inputs
    are supported" instead (see empty_exactly)."""
    yield from obligations(run, keys(_demo_envs(run), run.dims, devices=("cpu",),
                                     dtypes=("float32",), layouts=("strided",),
                                     memory_formats=("contiguous",)),
                           lambda w: iff(w.selects(B.Empty, B.MkldnnEmpty),
                                         D.eq(w.input.numel(), 0)))


@invariant(item="11", kind="dispatch")
def empty_exactly(run):
    """check passes  ⟹  (selects Empty ∨ selects MkldnnEmpty  ⟺  N = 0 ∨ C = 0) ∧
    (selects MkldnnEmpty  ⟺  (N = 0 ∨ C = 0) ∧ the input is an MKLDNN tensor)."""
    def claim(w):
        empty = z3.Or(w.sym.N == 0, w.sym.C == 0)
        mk = z3.And(empty, z3.BoolVal(w.key.layout == "mkldnn"))
        return z3.And(iff(w.selects(B.Empty, B.MkldnnEmpty), empty),
                      iff(w.selects(B.MkldnnEmpty), mk))
    yield from obligations(run, _all_keys(run, need_backward=(False, True)), claim)


@invariant(item="11", kind="dispatch")
def zero_numel_error_exactly(run):
    """check passes  ⟹  (reaches "Only zero batch or zero channel inputs are supported"  ⟺
    N ≠ 0 ∧ C ≠ 0 ∧ ∃i: x_i = 0)."""
    def claim(w):
        s = w.sym
        return iff(w.rule_case("zero_numel"),
                   z3.And(s.N != 0, s.C != 0, z3.Or(*[x == 0 for x in s.x])))
    yield from obligations(run, _all_keys(run, need_backward=(False, True)), claim)


# --------------------------------------------------------------------------------------
# 12. Unbatched inputs


def _pair_claim(run, key: WorldKey, with_format: bool = True) -> tuple[Any, list, World, World]:
    """The unbatched world and the batch-1 world select the same backend, with the same
    backend memory format, and pass the checks together."""
    bw = run.worlds.get(key)
    uw = run.worlds.get(dataclasses.replace(key, variant="unbatched"))
    one = [(bw.sym.N, z3.IntVal(1))]

    def b1(e):
        """The batch-1 world's term at N = 1, simplified (a sound rewrite that leaves the
        two sides syntactically equal wherever they agree for a simple reason)."""
        return z3.simplify(z3.substitute(zs(e), *one))

    def un(e):
        return z3.simplify(zs(e))
    parts = [un(uw.valid) == b1(bw.valid)]
    for b in B:
        su, sb = uw.selects(b), bw.selects(b)
        if truth(su) is False and truth(sb) is False:
            continue
        mu = rules.determine_backend_memory_format(uw.ctx.input, uw.ctx.weight, b, uw.env)
        mb = rules.determine_backend_memory_format(bw.ctx.input, bw.ctx.weight, b, bw.env)
        parts.append(un(su) == b1(sb))
        if with_format:
            parts.append(z3.Implies(b1(sb), un(mu) == b1(mb)))
    return z3.And(*parts), [bw.sym.N == 1, *bw.facts], uw, bw


def _unbatched_obligations(run, world_keys, with_format: bool = True):
    """One obligation per pair and conjunct (the formulas are non-linear in the strides: the
    solver does better on each backend's part alone)."""
    for key in world_keys:
        group = Group(key.dims, key.env)
        if run.is_refuted(group):
            continue
        claim, pre, uw, bw = _pair_claim(run, key, with_format)
        pieces = claim.children() if z3.is_and(claim) else [claim]
        # the first piece says the checks agree; the others are about valid argument sets
        valid = z3.substitute(zs(bw.valid), (bw.sym.N, z3.IntVal(1)))
        for n, piece in enumerate(pieces):
            yield from _pair_obligation(key, piece, pre + ([valid] if n else []), uw, bw)


def _pair_obligation(key, claim, pre, uw, bw):
    def witness(values):
        k = bw.key
        a = bw.sym.conv_args(values)
        ushape = a["input"][1:]
        strides = _unbatched_strides_int(ushape, k.memory_format != "contiguous")
        return {"run": "unbatched", "env": k.env,
                "unbatched": {"shape": ushape, "strides": strides, "dtype": k.dtype},
                "batched_memory_format": k.memory_format, "device": k.device,
                "batched_strides": [at(t, dict(values, N=1)) for t in bw.input.stride()],
                "input": {"shape": [1] + ushape}, "weight": {"shape": a["weight"]},
                "stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"],
                "transposed": k.transposed, "output_padding": a["output_padding"],
                "groups": a["groups"]}

    def explain(values):
        v1 = dict(values, N=1)
        return (f"{bw.key}: {fmt_values(v1, bw.sym)}; unbatched: {_rule_at(uw, v1)}, "
                f"{_mf_at(uw, v1)}; batch 1: {_rule_at(bw, v1)}, {_mf_at(bw, v1)}")

    names = {n: v for n, v in bw.sym.named().items() if n != "N"}
    yield Obligation(Group(key.dims, key.env), claim, pre, names, f"{key} (unbatched)",
                     witness=witness, explain=explain)


def _mf_at(w: World, values) -> str:
    for cond, rule in w.cases:
        if isinstance(rule.outcome, B) and at(cond, values) is True:
            mf = at(rules.determine_backend_memory_format(w.ctx.input, w.ctx.weight,
                                                          rule.outcome, w.env), values)
            return {0: "contiguous_format", 1: "channels_last", 2: "channels_last_3d"}.get(
                mf, str(mf))
    return "-"


def _unbatched_strides_int(shape, channels_last):
    from .worlds import unbatched_strides
    st = unbatched_strides(tuple(shape), channels_last)
    if st is not None:
        return list(st)
    out, acc = [], 1
    for v in reversed(shape):
        out.append(acc)
        acc *= max(v, 1)
    return list(reversed(out))


def _pair_keys(run, dims, memory_formats, envs=None):
    for k in keys(envs if envs is not None else run.envs, dims, layouts=("strided",),
                  memory_formats=memory_formats, meta=False, dtypes=("float32", "float16")):
        if k.dtype == "float16" and k.device != "cuda":
            continue
        yield k


@invariant(item="12", kind="dispatch")
def unbatched_same_backend(run):
    """u = [C, x...] contiguous (float32; float16 too on CUDA), u' = unsqueeze(0)(u) (how
    F.conv*d batches it), b = the contiguous [1, C, x...]:
    (check passes for u' ⟺ check passes for b) ∧ ∀ backends B: (selects_u'(B) ⟺ selects_b(B)).

    An unbatched input selects what the same input with batch 1 selects. (Channels-last
    unbatched inputs differ in memory format: unbatched_channels_last_same_format.)"""
    yield from _unbatched_obligations(run, _pair_keys(run, run.dims, ("contiguous",)),
                                      with_format=False)


@invariant(item="12", kind="dispatch",
           expect=lambda g: PROVED if profile(_env(g)).mobile else REFUTED)
def unbatched_channels_last_same_format(run):
    """u = [C, x...] laid out channels-last (stride 1 for C, then the spatial dims inwards;
    float32, CPU), u' = unsqueeze(0)(u), b = the channels_last [1, C, x...]:
    ∀ backends B: (selects_u'(B) ⟺ selects_b(B)) ∧ (selects_b(B) ⟹
    memory_format_u'(B) = memory_format_b(B)).

    Expected refuted (except on mobile builds, which never use channels-last): unsqueeze(0)
    gives the new batch dimension the stride C (sizes[0] * strides[0]), not C·∏x, and c10's
    channels-last test then answers "contiguous" unless every spatial size is 1; torch computes
    such a convolution in contiguous format (replayed)."""
    yield from _unbatched_obligations(
        run, _pair_keys(run, [d for d in run.dims if d in (2, 3)], ("channels_last",),
                        envs=_demo_envs(run)))


# --------------------------------------------------------------------------------------
# 21. determine_backend_memory_format


def _mf_keys(run):
    return keys(run.envs, run.dims, devices=("cpu", "cuda", "xpu"), dtypes=("float32", "float64"),
                transposed=(False,), meta=False)


def _suggests_cl(t: TensorSpec):
    f = t.suggest_memory_format()
    return D.or_(D.eq(f, MF_CHANNELS_LAST), D.eq(f, MF_CHANNELS_LAST_3D))



def _cl_spec(w: World, backend: B) -> Any:
    """The exact set of (backend, input) pairs given a channels-last format."""
    c, env = w.ctx, w.env
    inp, wt = c.input, c.weight
    if env.mobile:
        return False
    not64 = inp.dtype != torch.float64 and wt.dtype != torch.float64
    either = D.or_(_suggests_cl(inp), _suggests_cl(wt))
    rank45 = wt.ndim in (4, 5)
    if backend in (B.Cudnn, B.CudnnTranspose):
        return D.and_(env.compiled_with_cudnn and not64 and rank45, either)
    if backend in (B.Miopen, B.MiopenDepthwise, B.MiopenTranspose):
        return D.and_(env.compiled_with_miopen and env.miopen_suggest_nhwc and not64 and rank45,
                      either)
    if backend in (B.Mkldnn, B.MkldnnTranspose):
        return D.and_(not64 and not inp.is_mkldnn and not wt.is_mkldnn and not inp.is_sparse,
                      either)
    if backend in (B.Slow2d, B.SlowDilated2d, B.SlowTranspose2d):
        return D.and_(inp.is_cpu, D.or_(D.eq(inp.suggest_memory_format(), MF_CHANNELS_LAST),
                                         D.eq(wt.suggest_memory_format(), MF_CHANNELS_LAST)))
    if backend == B.Overrideable:
        return D.and_(inp.is_xpu and wt.is_xpu and not inp.is_sparse, either)
    return False


def _mf(w: World, backend: B):
    return rules.determine_backend_memory_format(w.ctx.input, w.ctx.weight, backend, w.env)


@invariant(item="21", kind="dispatch")
def memory_format_channels_last_exactly(run):
    """For every backend b: determine_backend_memory_format(input, weight, b) is channels_last
    or channels_last_3d  ⟺  not a mobile build and
    b ∈ {Cudnn, CudnnTranspose}: built with cuDNN, no float64, 4-D/5-D weight, input or weight suggests channels-last;
    b ∈ {Miopen, MiopenDepthwise, MiopenTranspose}: built with MIOpen, PYTORCH_MIOPEN_SUGGEST_NHWC, no float64, 4-D/5-D weight, either suggests it;
    b ∈ {Mkldnn, MkldnnTranspose}: no float64, neither an MKLDNN tensor, input not sparse, either suggests it;
    b ∈ {Slow2d, SlowDilated2d, SlowTranspose2d}: input on the CPU, either suggests channels_last;
    b = Overrideable: input and weight on XPU, input not sparse, either suggests it;
    never for any other backend (NnpackSpatial, Slow3d, SlowDilated3d, SlowTranspose3d, the
    depthwise and empty backends, Winograd, XNNPACK, MPS).

    Tensors are the (1-D-viewed) ones _convolution passes; devices cpu, cuda, xpu."""  # noqa: E501 (statement lines as docs/proofs.md shows them)
    def claim(w):
        parts = []
        for b in B:
            mf = _mf(w, b)
            is_cl = D.or_(D.eq(mf, MF_CHANNELS_LAST), D.eq(mf, MF_CHANNELS_LAST_3D))
            parts.append(iff(is_cl, _cl_spec(w, b)))
        return z3.And(*[zs(p) for p in parts])
    yield from obligations(run, _mf_keys(run), claim, replay=None)


@invariant(item="21", kind="dispatch")
def memory_format_rank_matches(run):
    """check passes  ⟹  for every backend b: determine_backend_memory_format(input, weight, b)
    = channels_last ⟹ the input is 4-D, and = channels_last_3d ⟹ the input is 5-D.

    The format _convolution makes its tensors contiguous in always fits their rank."""
    def claim(w):
        parts = []
        n = w.ctx.input.ndim
        for b in B:
            mf = _mf(w, b)
            parts.append(implies(D.eq(mf, MF_CHANNELS_LAST), z3.BoolVal(n == 4)))
            parts.append(implies(D.eq(mf, MF_CHANNELS_LAST_3D), z3.BoolVal(n == 5)))
        return z3.And(*[zs(p) for p in parts])
    yield from obligations(run, _mf_keys(run), claim, replay=None)


# --------------------------------------------------------------------------------------
# Further dispatch invariants


_CUDA_ONLY = (B.CudaDepthwise2d, B.CudaDepthwise3d, B.Cudnn, B.CudnnTranspose, B.Miopen,
              B.MiopenDepthwise, B.MiopenTranspose)
_CPU_ONLY = (B.Mkldnn, B.MkldnnTranspose, B.NnpackSpatial, B.Xnnpack2d,
             B.Winograd3x3Depthwise, B.Slow3d)
_CPU_OR_CUDA = (B.Slow2d, B.SlowDilated2d, B.SlowDilated3d, B.SlowTranspose2d,
                B.SlowTranspose3d)


def _device_ok(w: World, b: B) -> bool:
    t = w.ctx.input
    if b in _CUDA_ONLY:
        return t.is_cuda
    if b in _CPU_ONLY:
        return t.is_cpu
    if b in _CPU_OR_CUDA:
        return t.is_cpu or t.is_cuda
    if b in (B.Mps, B.MpsTranspose):
        return t.is_mps
    if b == B.Overrideable:
        return not (t.is_cpu or t.is_cuda)
    return True  # Empty, MkldnnEmpty: any device


@invariant(item="extra", kind="dispatch")
def backend_matches_device(run):
    """check passes ∧ selects b  ⟹  the input's device runs b: CUDA for the cuDNN, MIOpen and
    CUDA depthwise backends; CPU for MKLDNN, NNPACK, XNNPACK, Winograd and Slow3d; CPU or
    CUDA for the other slow backends; MPS for the MPS backends; neither CPU nor CUDA for
    Overrideable; any device for the empty paths."""
    def claim(w):
        return z3.And(*[zs(implies(c, _device_ok(w, r.outcome))) for c, r in w.cases
                        if isinstance(r.outcome, B)] or [z3.BoolVal(True)])
    yield from obligations(run, _all_keys(run), claim)


@invariant(item="extra", kind="dispatch")
def transposed_backend_iff_transposed(run):
    """check passes ∧ selects b  ⟹  (b ∈ {CudnnTranspose, MiopenTranspose, MkldnnTranspose,
    SlowTranspose2d, SlowTranspose3d, MpsTranspose}  ⟺  transposed), except for Empty,
    MkldnnEmpty and Overrideable, which serve both."""
    def claim(w):
        tr = w.key.transposed
        return z3.And(*[zs(implies(c, (r.outcome in TRANSPOSE_BACKENDS) == tr))
                        for c, r in w.cases
                        if isinstance(r.outcome, B) and r.outcome not in EITHER_BACKENDS]
                      or [z3.BoolVal(True)])
    yield from obligations(run, _all_keys(run), claim)


@invariant(item="extra", kind="dispatch")
def fast_transposed_rejects_big_output_padding(run):
    """Transposed: selects CudnnTranspose ∨ selects MkldnnTranspose  ⟹  ∀i: op_i < s_i.

    An output padding of at least the stride ("big") always goes to the slow kernels."""
    def claim(w):
        s = w.sym
        return implies(w.selects(B.CudnnTranspose, B.MkldnnTranspose),
                       z3.And(*[o < st for o, st in zip(s.op, s.s)]))
    yield from obligations(run, _all_keys(run, transposed=(True,)), claim)
