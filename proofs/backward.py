"""Backward invariants: check_shape_backward, _convolution_double_backward's inferred
parameters, and the shapes convolution_backward returns for every backend."""

from __future__ import annotations

from typing import Any

import z3

from symconv import api
from symconv import domain as D
from symconv import shapes as S
from symconv.backends import ConvBackend as B
from symconv.errors import Checker, StopSymbolic
from symconv.spec import TensorSpec

from . import model
from .common import at, base, checks_pass, conv_case, fmt_values, params_of
from .core import (PROVED, REFUTED, ConvSymbols, Group, Obligation, iff, implies, invariant,
                   zs)
from .dispatch import obligations
from .worlds import keys


# --------------------------------------------------------------------------------------
# 13. check_shape_backward


def _checks(fn) -> list:
    chk = Checker()
    try:
        fn(chk)
    except StopSymbolic:
        pass
    return chk.checks


@invariant(item="13")
def backward_checks_are_forward_without_bias(run):
    """For all arguments and a bias [B]: the checks of check_shape_backward, in order, are those
    of check_shape_forward without the bias check — the same names, equivalent conditions —
    and so (check_shape_forward passes ⟺ check_shape_backward passes ∧ the bias check passes).

    Proven for the seed's checks and torch 2.13's (groups > 0, padding bound), transposed and
    not; nothing is assumed about the arguments but non-negative sizes."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        bsym = z3.Int("B")
        inp = TensorSpec(s.input_shape)
        bias = TensorSpec((bsym,))
        for version in ((2, 4), (2, 13)):
            for transposed in (False, True):
                pr = params_of(s, transposed)
                # _checks calls each function at once, inside this iteration
                fwd = _checks(lambda c: S.check_shape_forward(
                    inp, s.weight_shape, bias, pr, c, version=version))  # noqa: B023
                bwd = _checks(lambda c: S.check_shape_backward(
                    inp, s.weight_shape, pr, c, version=version))  # noqa: B023
                kept = [c for c in fwd if c.name != "bias_shape"]
                bias_checks = [c for c in fwd if c.name == "bias_shape"]
                same_names = [c.name for c in kept] == [c.name for c in bwd]
                parts = [z3.BoolVal(same_names)]
                if same_names:
                    parts += [zs(iff(a.cond, b.cond)) for a, b in zip(kept, bwd)]
                fwd_ok = D.and_(*[c.cond for c in fwd])
                bwd_ok = D.and_(*[c.cond for c in bwd], *[c.cond for c in bias_checks])
                parts.append(zs(iff(fwd_ok, bwd_ok)))
                names = dict(s.named(), B=bsym)
                yield Obligation(
                    Group(dims), z3.And(*parts), [*s.facts(), bsym >= 0], names,
                    f"{dims}d torch {version[0]}.{version[1]}"
                    f"{' transposed' if transposed else ''}",
                    explain=lambda v, kept=kept, bwd=bwd: (
                        "forward checks without bias: " + ", ".join(
                            f"{c.name}={at(c.cond, v)}" for c in kept) + "; backward checks: "
                        + ", ".join(f"{c.name}={at(c.cond, v)}" for c in bwd)))


# --------------------------------------------------------------------------------------
# 14. _convolution_double_backward


def _double_backward_case(s, v, transposed, grad_output):
    case = conv_case(s, v, transposed, run="double_backward")
    case["grad_output"] = [at(t, v) for t in grad_output]
    return case


@invariant(item="14", expect=lambda g: REFUTED if g.dims == 3 else PROVED)
def double_backward_groups_match(run):
    """check passes (transposed or not)  ⟹  the groups _convolution_double_backward uses
    = G, where for a non-transposed 3-D convolution it infers
    G' = (I > 0 ? C / I : −1) and otherwise takes G.

    Expected refuted for 3-D: a weight with I = 0 (so C = 0) is valid, and G' = −1. The replay
    shows torch returns without using it: every convolution that would read the groups is
    skipped for an input without elements (see double_backward_groups_match_where_used)."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        for transposed in (False, True):
            g = model.double_backward_groups(TensorSpec(s.input_shape),
                                             TensorSpec(s.weight_shape), transposed, s.G)
            yield Obligation(
                Group(dims), D.eq(g, s.G), [checks_pass(s, transposed), *base(s)], s.named(),
                f"{dims}d{' transposed' if transposed else ''}",
                witness=lambda v, s=s, tr=transposed: _double_backward_case(
                    s, v, tr, _go(s, tr, v)),
                explain=lambda v, g=g, s=s: f"{fmt_values(v, s)}: inferred groups {at(g, v)}")


def _go(s, transposed, v):
    """The forward output's sizes (grad_output) at values v."""
    return S.calc_output_size(TensorSpec(s.input_shape), TensorSpec(s.weight_shape),
                              params_of(s, transposed))


@invariant(item="14")
def double_backward_groups_match_where_used(run):
    """check passes ∧ numel(input) ≠ 0  ⟹  the groups _convolution_double_backward uses = G.

    Every convolution of the double backward that reads the groups runs only for an input
    with elements; there the inferred groups are exact (C = I·G with I > 0 gives C / I = G)."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        for transposed in (False, True):
            inp = TensorSpec(s.input_shape)
            g = model.double_backward_groups(inp, TensorSpec(s.weight_shape), transposed, s.G)
            yield Obligation(Group(dims), D.eq(g, s.G),
                             [checks_pass(s, transposed), *base(s), D.ne(inp.numel(), 0)],
                             s.named(), f"{dims}d{' transposed' if transposed else ''}",
                             explain=lambda v, g=g: f"inferred groups {at(g, v)}")


@invariant(item="14")
def double_backward_output_padding_gives_input(run):
    """Not transposed: check passes, op = 0 (convolution_backward refuses any other),
    gO = conv_output_size(x)  ⟹  the output padding that
    _convolution_double_backward infers for gI = conv_transpose(gO, ggW) is
    (x_i + 2p_i − d_i(k_i − 1) − 1) mod s_i, that transposed call passes the checks, and
    conv_input_size(gO, ...) = [N, C, x...].
    Transposed (where the forward has outputs, ∀i: out_i ≥ 1): gI = conv(gO, ggW) passes the
    checks and has every spatial size ≥ x_i, so narrowing it to the input's size is exact.
    Both for inputs with elements: _convolution_double_backward skips these convolutions for
    empty inputs."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        # non-transposed
        go = S.conv_output_size(s.input_shape, s.weight_shape, s.p, s.s, s.d)
        op = model.double_backward_output_padding(s.input_shape, s.weight_shape, go, s.s, s.p,
                                                  s.d, s.op)
        expect = [D.floormod(s.x[i] + 2 * s.p[i] - s.d[i] * (s.k[i] - 1) - 1, s.s[i])
                  for i in range(dims)]
        gi = S.conv_input_size(go, s.weight_shape, s.p, op, s.s, s.d, s.G)
        ok_t = checks_pass(s, True, input_shape=go, output_padding=op)
        claim = D.and_(*[D.eq(a, b) for a, b in zip(op, expect)], ok_t,
                       *[D.eq(a, b) for a, b in zip(gi, (s.N, s.C, *s.x))])
        # convolution_backward refuses a non-zero output_padding for non-transposed
        # convolutions, so a double backward only ever sees zeros there
        numel = D.ne(TensorSpec(s.input_shape).numel(), 0)
        yield Obligation(Group(dims), claim,
                         [checks_pass(s, False), *base(s), *[o == 0 for o in s.op], numel],
                         s.named(),
                         f"{dims}d", explain=lambda v, op=op, gi=gi: (
                             f"output padding {[at(t, v) for t in op]}, "
                             f"gI {[at(t, v) for t in gi]}"))
        # transposed
        go_t = S.conv_input_size(s.input_shape, s.weight_shape, s.p, s.op, s.s, s.d, s.G)
        gi_t = S.conv_output_size(go_t, s.weight_shape, s.p, s.s, s.d)
        ok_n = checks_pass(s, False, input_shape=(s.N, go_t[1], *go_t[2:]))
        claim = D.and_(ok_n, *[D.ge(a, x) for a, x in zip(gi_t[2:], s.x)])
        yield Obligation(Group(dims), claim,
                         [checks_pass(s, True), *base(s), *[D.ge(o, 1) for o in go_t[2:]],
                          numel],
                         s.named(), f"{dims}d transposed",
                         explain=lambda v, gi_t=gi_t: f"gI {[at(t, v) for t in gi_t]}")


# --------------------------------------------------------------------------------------
# 20. convolution_backward


def _shapes_ok(w, b, go):
    """The claim for backend b: None when b has no backward."""
    s, c = w.sym, w.ctx
    shapes = model.backward_grad_shapes(b, c.input.shape, c.weight.shape, go, c.params.groups,
                                        (w.B,))
    if shapes is None:
        return None
    gi, gw, gb = shapes
    if w.prepared.viewed_1d:
        gi, gw = model.view3d(gi), model.view3d(gw)
    return D.and_(D.eq(len(gi), len(s.input_shape)), D.eq(len(gw), len(s.weight_shape)),
                  *[D.eq(a, e) for a, e in zip(gi, s.input_shape)],
                  *[D.eq(a, e) for a, e in zip(gw, s.weight_shape)],
                  D.eq(gb[0], _c_out(w)))


def _c_out(w):
    s = w.sym
    return s.I * s.G if w.key.transposed else s.O


@invariant(item="20", kind="dispatch")
def backward_grad_shapes(run):
    """The forward (with a bias [B]) passes its checks, need_backward, bias_sizes = [B],
    grad_output has the forward's output shape, and b is a backend the table can select
    (b = Empty/MkldnnEmpty, or any other b where neither empty rule — ordered first — fires)
    ⟹  b has a backward (Xnnpack2d and Winograd3x3Depthwise are never selected), and
    grad_input, grad_weight, grad_bias have the sizes [N, C, x...], [O, I, k...] and [C_out]
    (C_out = O, or I·G transposed).

    For every backend b of ConvBackend (reachable or not), per environment, rank, transposed
    and layout (strided or MKLDNN), float32 CPU tensors, need_backward and bias sizes (the
    overload convolution_backward calls). The sizes are proofs.model.backward_grad_shapes:
    the empty paths' zeros, the per-group slow paths' concatenations, the other kernels' sums;
    they depend on the world only through the empty rules' guards, which are the same for
    every dtype and device (no_backward_backends covers the two backends without a backward
    in every world). Proven on the region where the empty rules do not fire, which contains
    the region of every rule after them."""
    def claim(w):
        c = w.ctx
        go = S.calc_output_size(c.input, c.weight, c.params)
        parts = []
        empty_guards = []
        oks: dict[B, Any] = {}
        for i, rule in enumerate(w.rules):
            b = rule.outcome
            if not isinstance(b, B):
                continue
            if b not in oks:
                oks[b] = _shapes_ok(w, b, go)
            ok = oks[b]
            if ok is None:
                parts.append(zs(D.not_(w.case_at(i))))
                continue
            region = D.and_(*[D.not_(g) for g in empty_guards])
            parts.append(zs(implies(region, ok)))
            if b in (B.Empty, B.MkldnnEmpty):
                empty_guards.append(w.guard_at(i))
        return z3.And(*parts) if parts else z3.BoolVal(True)

    def fwd_with_bias(w):
        bias = TensorSpec((w.B,), dtype=w.input.dtype, device=w.key.device)
        s = w.sym
        p = api.prepare(w.input, w.weight, bias, list(s.s), list(s.p), list(s.d),
                        w.key.transposed, list(s.op), s.G, env=w.env, need_backward=True)
        return [p.checker.condition()]
    yield from obligations(run, keys(run.envs, run.dims, need_backward=(True,), bias=("sizes",),
                                     devices=("cpu",), dtypes=("float32",),
                                     memory_formats=("contiguous",)),
                           claim, extra=fwd_with_bias, replay=None, split=True)
