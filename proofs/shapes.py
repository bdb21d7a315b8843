"""Shape invariants: output sizes, the transposed inverse, same padding, monotonicity, groups.

Notation (per spatial dimension i): input size x, kernel k, stride s, padding p, dilation d,
output padding op; N, C the input's batch and channels, the weight is [O, I, k...], G groups.
"check passes" means symconv's ``check_shape_forward`` accepts the arguments (the seed's
checks; see ``proofs.common.SHAPE_ENV``). Sizes are non-negative integers and G >= 1; nothing
else is assumed unless the statement says so. Every invariant is proven for 1-D, 2-D and 3-D.
"""

from __future__ import annotations

import sympy
import z3

from symconv import api
from symconv import domain as D
from symconv import shapes as S
from symconv.env import PRESETS
from symconv.params import ConvParams
from symconv.spec import TensorSpec

from . import model
from .common import all_, at, base, checks_pass, conv_case, fmt_values, params_of
from .core import REFUTED, ConvSymbols, Group, Obligation, iff, invariant, zs

def _ob(sym, claim, assumptions, label, *, witness=None, explain=None):
    return Obligation(Group(sym.dims), claim, list(assumptions), sym.named(), label,
                      witness=witness, explain=explain)


def _fwd_out(sym, **over):
    return S.conv_output_size(over.get("input_shape", sym.input_shape),
                              over.get("weight_shape", sym.weight_shape),
                              over.get("padding", sym.p), over.get("stride", sym.s),
                              over.get("dilation", sym.d))


def _t_out(sym, **over):
    return S.conv_input_size(over.get("input_shape", sym.input_shape),
                             over.get("weight_shape", sym.weight_shape),
                             over.get("padding", sym.p), over.get("output_padding", sym.op),
                             over.get("stride", sym.s), over.get("dilation", sym.d),
                             over.get("groups", sym.G))


def _roundtrip_op(sym):
    """output_padding = (x + 2p - d(k-1) - 1) mod s."""
    return [D.floormod(sym.x[i] + 2 * sym.p[i] - sym.d[i] * (sym.k[i] - 1) - 1, sym.s[i])
            for i in range(sym.dims)]


def _explain_sizes(sym, sizes, what):
    def f(values):
        return f"{fmt_values(values, sym)}: {what} {[at(v, values) for v in sizes]}"
    return f


def _sizes_positive(run, transposed):
    """Every spatial output size (conv_input_size when transposed) is >= 1 where the checks
    pass, for each dimensionality of the run."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        out = _t_out(s) if transposed else _fwd_out(s)
        what = "transposed output sizes" if transposed else "output sizes"
        yield _ob(s, all_(D.ge(o, 1) for o in out[2:]), [checks_pass(s, transposed), *base(s)],
                  f"{dims}d", witness=lambda v, s=s: conv_case(s, v, transposed),
                  explain=_explain_sizes(s, out[2:], what))


# ---------------------------------------------------------------------------------------
# 1. Non-transposed output sizes


@invariant(item="1")
def output_size_positive(run):
    """check passes (not transposed)  ⟹  ∀i: out_i ≥ 1,
    where out_i = trunc((x_i + 2p_i − d_i(k_i − 1) − 1) / s_i) + 1 (``conv_output_size``).

    The kernel-size check (x + 2p ≥ d(k − 1) + 1) and s ≥ 1 make the numerator non-negative."""
    yield from _sizes_positive(run, False)


@invariant(item="1")
def trunc_division_is_floor(run):
    """check passes (not transposed)  ⟹  ∀i: out_i = ⌊(x_i + 2p_i − d_i(k_i − 1) − 1) / s_i⌋ + 1.

    C++ truncating division in ``conv_output_size`` equals the floor division of the
    documented formula wherever the checks pass."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        out = _fwd_out(s)
        floor = [D.floordiv(s.x[i] + 2 * s.p[i] - s.d[i] * (s.k[i] - 1) - 1, s.s[i]) + 1
                 for i in range(dims)]
        yield _ob(s, all_(D.eq(o, f) for o, f in zip(out[2:], floor)),
                  [checks_pass(s, False), *base(s)], f"{dims}d",
                  witness=lambda v, s=s: conv_case(s, v, False),
                  explain=lambda v, s=s, out=out, floor=floor: (
                      f"{fmt_values(v, s)}: trunc form {[at(o, v) for o in out[2:]]}, "
                      f"floor form {[at(f, v) for f in floor]}"))


# ---------------------------------------------------------------------------------------
# 2. Transposed output sizes


@invariant(item="2", expect=REFUTED)
def transposed_output_positive(run):
    """check passes (transposed)  ⟹  ∀i: out_i ≥ 1,
    where out_i = (x_i − 1)s_i − 2p_i + d_i(k_i − 1) + 1 + op_i (``conv_input_size``).

    Expected refuted: check_shape_forward has no output-size check for transposed
    convolutions, so sizes <= 0 pass it; the counterexample is run on torch, whose kernels
    reject them (see transposed_output_positive_exactly for the exact condition)."""
    yield from _sizes_positive(run, True)


@invariant(item="2")
def transposed_output_positive_exactly(run):
    """check passes (transposed)  ⟹  ∀i: (out_i ≥ 1  ⟺  2p_i ≤ s_i(x_i − 1) + d_i(k_i − 1) + op_i).

    The exact condition for a positive transposed output size; in particular every size is
    >= 1 when p_i = 0 and x_i >= 1 (all terms on the right are then >= 0)."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        out = _t_out(s)
        cond = [D.le(2 * s.p[i], s.s[i] * (s.x[i] - 1) + s.d[i] * (s.k[i] - 1) + s.op[i])
                for i in range(dims)]
        yield _ob(s, all_(iff(D.ge(o, 1), c) for o, c in zip(out[2:], cond)),
                  [checks_pass(s, True), *base(s)], f"{dims}d",
                  witness=lambda v, s=s: conv_case(s, v, True),
                  explain=_explain_sizes(s, out[2:], "transposed output sizes"))


# ---------------------------------------------------------------------------------------
# 3. Round trip through the transposed convolution


@invariant(item="3")
def roundtrip_recovers_input(run):
    """check passes (not transposed), y = conv_output_size(x), op_i = (x_i + 2p_i − d_i(k_i − 1) − 1) mod s_i
    ⟹  conv_input_size(y, w, p, op, s, d, G) = [N, C, x_1, ..., x_n].

    The transposed convolution with the same weight and parameters and this output padding
    gives back the input's channels and every spatial size."""  # noqa: E501 (statement lines as docs/proofs.md shows them)
    for dims in run.dims:
        s = ConvSymbols(dims)
        y = _fwd_out(s)
        op = _roundtrip_op(s)
        back = _t_out(s, input_shape=y, output_padding=op)
        claim = all_([D.eq(back[0], s.N), D.eq(back[1], s.C)] +
                     [D.eq(b, x) for b, x in zip(back[2:], s.x)])
        yield _ob(s, claim, [checks_pass(s, False), *base(s)], f"{dims}d",
                  explain=_explain_sizes(s, back, "round trip gives"))


@invariant(item="3")
def roundtrip_output_padding_not_big(run):
    """check passes (not transposed), op_i = (x_i + 2p_i − d_i(k_i − 1) − 1) mod s_i
    ⟹  ¬is_output_padding_big(op, s) ∧ ¬is_output_padding_neg(op), i.e. 0 ≤ op_i < s_i.

    The round-trip output padding is never one that the seed's ``is_output_padding_big``
    turns away from cuDNN / MKLDNN."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        op = _roundtrip_op(s)
        pr = params_of(s, True, output_padding=op)
        claim = D.and_(D.not_(pr.is_output_padding_big()), D.not_(pr.is_output_padding_neg()))
        yield _ob(s, claim, [checks_pass(s, False), *base(s)], f"{dims}d",
                  explain=_explain_sizes(s, op, "output padding"))


@invariant(item="3")
def roundtrip_transposed_accepted(run):
    """check passes (not transposed), y = conv_output_size(x), op as in roundtrip_recovers_input
    ⟹  check passes (transposed) for input [N, O, y...], the same weight, s, p, d, G and op.

    The transposed convolution of the round trip is itself accepted by check_shape_forward."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        y = _fwd_out(s)
        op = _roundtrip_op(s)
        ok_t = checks_pass(s, True, input_shape=y, output_padding=op)
        yield _ob(s, ok_t, [checks_pass(s, False), *base(s)], f"{dims}d",
                  witness=lambda v, s=s, y=y, op=op: _transposed_case(s, v, y, op))


def _transposed_case(s, v, y, op):
    case = conv_case(s, v, True)
    case["input"]["shape"] = [at(t, v) for t in y]
    case["output_padding"] = [at(t, v) for t in op]
    return case


@invariant(item="14, 20")
def weight_size_roundtrip(run):
    """check passes (not transposed), d_i ≥ 1, y = conv_output_size(x), op as in roundtrip_recovers_input
    ⟹  conv_weight_size(x, y, p, op, s, d, G) = [O, I, k_1, ..., k_n].

    The weight-gradient kernels size grad_weight from the input and grad_output; they recover
    the weight's shape. (Dilation 0 passes the checks, but every kernel rejects it.)"""  # noqa: E501 (statement lines as docs/proofs.md shows them)
    for dims in run.dims:
        s = ConvSymbols(dims)
        y = _fwd_out(s)
        op = _roundtrip_op(s)
        ws = S.conv_weight_size(s.input_shape, y, s.p, op, s.s, s.d, s.G)
        claim = all_(D.eq(a, b) for a, b in zip(ws, s.weight_shape))
        yield _ob(s, claim, [checks_pass(s, False), *base(s), *[d >= 1 for d in s.d]],
                  f"{dims}d", explain=_explain_sizes(s, ws, "weight size"))


# ---------------------------------------------------------------------------------------
# 4. padding='same'


@invariant(item="4")
def same_padding_keeps_size(run):
    """For stride 1, every kernel size and dilation: with (l_i, r_i) = pooling_same_mode_padding_lr(x_i, k_i, 1, d_i)
    and convolution_same's padded input x'_i = x_i + (r_i − l_i) and padding q_i = (l_i if r_i > l_i else r_i):
    check passes for (x', q)  ⟹  ∀i: conv_output_size(x', q)_i = x_i.

    padding='same' keeps every spatial size wherever torch accepts it."""  # noqa: E501 (statement lines as docs/proofs.md shows them)
    for dims in run.dims:
        s = ConvSymbols(dims)
        sizes, pad = model.convolution_same(s.input_shape, s.weight_shape, s.d)
        ok = checks_pass(s, False, input_shape=sizes, stride=[1] * dims, padding=pad,
                         output_padding=[0] * dims)
        out = _fwd_out(s, input_shape=sizes, padding=pad, stride=[1] * dims)
        yield _ob(s, all_(D.eq(o, x) for o, x in zip(out[2:], s.x)), [ok, *base(s)],
                  f"{dims}d", witness=lambda v, s=s: _same_case(s, v),
                  explain=_explain_sizes(s, out[2:], "output sizes"))


def _same_case(s, v):
    case = conv_case(s, v, False, run="same")
    case["stride"] = [1] * s.dims
    return case


@invariant(item="4")
def same_padding_accepted_exactly(run):
    """For stride 1, k_i ≥ 1, d_i ≥ 0, C = I·G, O ≥ G, O mod G = 0 (the channel checks):
    check passes for convolution_same's (x', q)  ⟺  ∀i: x_i ≥ 1.

    padding='same' is refused exactly when a spatial size is 0 ("Kernel size can't be
    greater than actual input size": the padded size is d(k − 1), one short of the kernel)."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        sizes, pad = model.convolution_same(s.input_shape, s.weight_shape, s.d)
        ok = checks_pass(s, False, input_shape=sizes, stride=[1] * dims, padding=pad,
                         output_padding=[0] * dims)
        chan = [s.C == s.I * s.G, s.O >= s.G, D.floormod(s.O, s.G) == 0]
        pre = [*[k >= 1 for k in s.k], *[d >= 0 for d in s.d], *chan]
        yield _ob(s, iff(ok, all_(x >= 1 for x in s.x)), [*base(s), *pre], f"{dims}d",
                  witness=lambda v, s=s: _same_case(s, v))


@invariant(item="4")
def same_padding_split_balanced(run):
    """For every s ≥ 1, k ≥ 1, d ≥ 0, x ≥ 0: (l, r) = pooling_same_mode_padding_lr(x, k, s, d)
    ⟹  l ≥ 0 ∧ r − l ∈ {0, 1}.

    The same-mode padding is split evenly, the odd unit going to the right."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        split = model.same_split(s.input_shape, s.weight_shape, s.s, s.d)
        claim = all_(D.and_(D.ge(l, 0), D.ge(r - l, 0), D.le(r - l, 1)) for l, r in split)
        pre = [*[v >= 1 for v in s.s + s.k], *[d >= 0 for d in s.d]]
        yield _ob(s, claim, [*s.facts(), *pre], f"{dims}d",
                  explain=lambda v, s=s, split=split: f"{fmt_values(v, s)}: (left, right) = "
                                                      f"{[(at(a, v), at(b, v)) for a, b in split]}")


@invariant(item="4")
def same_padding_symmetric_exactly(run):
    """For stride 1, k ≥ 1, d ≥ 0: l = r  ⟺  d(k − 1) ≡ 0 (mod 2)  ⟺  k odd ∨ d even.

    No zero-padded copy of the input is made exactly then (torch warns "Using padding='same'
    with even kernel lengths and odd dilation may require a zero-padded copy"). The first
    equivalence is about symconv's formula; the second, pure arithmetic, is proven by cases
    on k mod 2 and d mod 2 (k = 2a + r, d = 2b + t), where Z3 decides it at once."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        split = model.same_split(s.input_shape, s.weight_shape, [1] * dims, s.d)
        claim = all_(iff(D.eq(l, r), (s.d[i] * (s.k[i] - 1)) % 2 == 0)
                     for i, (l, r) in enumerate(split))
        pre = [*[k >= 1 for k in s.k], *[d >= 0 for d in s.d]]
        yield _ob(s, claim, [*s.facts(), *pre], f"{dims}d")
        if dims == run.dims[0]:
            a, b = z3.Ints("a b")
            for r in (0, 1):
                for t in (0, 1):
                    k, d = 2 * a + r, 2 * b + t
                    yield Obligation(Group(dims), iff((d * (k - 1)) % 2 == 0,
                                                      z3.Or(k % 2 == 1, d % 2 == 0)),
                                     [], {"a": a, "b": b}, f"k mod 2 = {r}, d mod 2 = {t}")


# ---------------------------------------------------------------------------------------
# 15. Monotonicity


def _vary(s: ConvSymbols, what: str, i: int):
    """A copy of one parameter list with entry i replaced by a fresh symbol."""
    fresh = z3.Int(f"{what}{i}_2")
    lst = list(getattr(s, what))
    lst[i] = fresh
    return fresh, lst


def _monotone_obligations(run, *, transposed, what, direction, extra_pre=(), label=""):
    for dims in run.dims:
        s = ConvSymbols(dims)
        out_fn = _t_out if transposed else _fwd_out
        ok = checks_pass(s, transposed)
        out = out_fn(s)
        for i in range(dims):
            fresh, lst = _vary(s, what, i)
            if what == "x":
                shape = dict(input_shape=(s.N, s.C, *lst))
                over = dict(input_shape=shape["input_shape"])
            elif what == "k":
                over = dict(weight_shape=(s.O, s.I, *lst))
            else:
                over = {{"p": "padding", "s": "stride", "d": "dilation",
                         "op": "output_padding"}[what]: lst}
            ok2 = checks_pass(s, transposed, **over)
            out2 = out_fn(s, **over)
            old = getattr(s, what)[i]
            bigger = fresh >= old
            claim = D.ge(out2[i + 2], out[i + 2]) if direction > 0 else \
                D.le(out2[i + 2], out[i + 2])
            names = dict(s.named())
            names[f"{what}{i}_2"] = fresh
            pre = [c(s, i) for c in extra_pre]
            yield Obligation(Group(dims), claim, [ok, ok2, bigger, *base(s), *pre], names,
                             f"{dims}d {what}{i}" + label,
                             explain=lambda v, s=s, out=out, out2=out2, i=i, what=what: (
                                 f"{fmt_values(v, s)}, {what}{i} -> {v.get(f'{what}{i}_2')}: "
                                 f"output size {at(out[i + 2], v)} -> {at(out2[i + 2], v)}"),
                             witness=(lambda v, s=s, what=what, i=i, tr=transposed:
                                      _vary_case(s, v, what, i, tr)))


def _vary_case(s, v, what, i, transposed):
    """The varied argument set (the one whose output breaks the order)."""
    v2 = dict(v)
    v2[f"{what}{i}"] = v[f"{what}{i}_2"]
    return conv_case(s, v2, transposed)


@invariant(item="15")
def output_monotone_in_input_and_padding(run):
    """Not transposed, both argument sets pass the checks, they differ in one x_i (or p_i)
    only, and x'_i ≥ x_i (p'_i ≥ p_i)  ⟹  out'_i ≥ out_i."""
    yield from _monotone_obligations(run, transposed=False, what="x", direction=+1)
    yield from _monotone_obligations(run, transposed=False, what="p", direction=+1)


@invariant(item="15")
def output_antitone_in_stride_dilation_kernel(run):
    """Not transposed, both argument sets pass the checks, they differ in one s_i, d_i or
    k_i only, which grows, and k_i ≥ 1 when d_i varies  ⟹  out'_i ≤ out_i.

    (Without k_i ≥ 1 the dilation claim fails: see dilation_antitone_any_kernel.)"""
    yield from _monotone_obligations(run, transposed=False, what="s", direction=-1)
    yield from _monotone_obligations(run, transposed=False, what="d", direction=-1,
                                     extra_pre=[lambda s, i: s.k[i] >= 1])
    yield from _monotone_obligations(run, transposed=False, what="k", direction=-1)


@invariant(item="15", expect=REFUTED)
def dilation_antitone_any_kernel(run):
    """Not transposed, both argument sets pass the checks, d'_i ≥ d_i, nothing else differs
    ⟹  out'_i ≤ out_i — for every kernel size, 0 included.

    Expected refuted: a weight with spatial size 0 passes check_shape_forward, and there the
    kernel extent d(k − 1) + 1 = 1 − d shrinks as d grows. Torch's kernels reject the empty
    kernel ("kernel size should be greater than zero"), which the replay shows."""
    yield from _monotone_obligations(run, transposed=False, what="d", direction=-1)


@invariant(item="15")
def transposed_output_monotone(run):
    """Transposed, both argument sets pass the checks, one parameter grows, nothing else
    differs  ⟹  out'_i ≥ out_i for x_i, s_i (when x_i ≥ 1), d_i (when k_i ≥ 1), k_i and op_i,
    and out'_i ≤ out_i for p_i."""
    yield from _monotone_obligations(run, transposed=True, what="x", direction=+1)
    yield from _monotone_obligations(run, transposed=True, what="s", direction=+1,
                                     extra_pre=[lambda s, i: s.x[i] >= 1])
    yield from _monotone_obligations(run, transposed=True, what="d", direction=+1,
                                     extra_pre=[lambda s, i: s.k[i] >= 1])
    yield from _monotone_obligations(run, transposed=True, what="k", direction=+1)
    yield from _monotone_obligations(run, transposed=True, what="op", direction=+1)
    yield from _monotone_obligations(run, transposed=True, what="p", direction=-1)


# ---------------------------------------------------------------------------------------
# 16. Groups


@invariant(item="16")
def group_decomposition(run):
    """check passes with G groups  ⟹  each group's convolution (input [N, C/G, x...],
    weight [O/G, I, k...] — transposed: [C/G, I, k...] — groups 1) passes the checks and
    concat_dim1(its outputs, G times) = calc_output_size(grouped call).

    A grouped convolution's shape is that of its per-group convolutions, concatenated along
    the channel dimension; for transposed and non-transposed convolutions."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        for transposed in (False, True):
            full = S.calc_output_size(TensorSpec(s.input_shape), TensorSpec(s.weight_shape),
                                      params_of(s, transposed))
            cg = D.cdiv(s.C, s.G)
            og = D.cdiv(s.O, s.G)
            gin = (s.N, cg, *s.x)
            gw = (og, s.I, *s.k)
            ok_g = checks_pass(s, transposed, input_shape=gin, weight_shape=gw, groups=1)
            part = S.calc_output_size(TensorSpec(gin), TensorSpec(gw),
                                      params_of(s, transposed, groups=1))
            cat = [part[0], s.G * part[1], *part[2:]]
            claim = D.and_(ok_g, all_(D.eq(a, b) for a, b in zip(cat, full)))
            yield _ob(s, claim, [checks_pass(s, transposed), *base(s)],
                      f"{dims}d{' transposed' if transposed else ''}",
                      explain=lambda v, s=s, cat=cat, full=full: (
                          f"{fmt_values(v, s)}: per-group concat {[at(c, v) for c in cat]}, "
                          f"grouped {[at(c, v) for c in full]}"))


# ---------------------------------------------------------------------------------------
# 18. Batch splitting


@invariant(item="18")
def batch_split_preserves_shape(run):
    """N = N₁ + N₂ (N₁, N₂ ≥ 0), check passes for N  ⟹  the checks pass for N₁ and N₂, and
    calc_output_size(N₁) ++_dim0 calc_output_size(N₂) = calc_output_size(N).

    Splitting the batch (the 64-bit-indexing fallback runs the convolution on batch chunks)
    never changes the output shape; transposed and non-transposed."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        n1, n2 = z3.Ints("N_1 N_2")
        for transposed in (False, True):
            pr = params_of(s, transposed)
            whole = (n1 + n2, s.C, *s.x)
            full = S.calc_output_size(TensorSpec(whole), TensorSpec(s.weight_shape), pr)
            parts = []
            oks = []
            for n in (n1, n2):
                shape = (n, s.C, *s.x)
                parts.append(S.calc_output_size(TensorSpec(shape), TensorSpec(s.weight_shape),
                                                params_of(s, transposed)))
                oks.append(checks_pass(s, transposed, input_shape=shape))
            same = all_(D.and_(*[D.eq(a, b) for a, b in zip(part[1:], full[1:])])
                        for part in parts)
            claim = D.and_(*oks, D.eq(parts[0][0] + parts[1][0], full[0]), same)
            names = dict(s.named(), N_1=n1, N_2=n2)
            yield Obligation(Group(dims), claim,
                             [checks_pass(s, transposed, input_shape=whole), n1 >= 0, n2 >= 0,
                              *base(s)], names, f"{dims}d{' transposed' if transposed else ''}",
                             explain=lambda v, parts=parts, full=full: (
                                 f"N_1={v.get('N_1')}, N_2={v.get('N_2')}: chunks "
                                 f"{[[at(c, v) for c in p] for p in parts]}, whole "
                                 f"{[at(c, v) for c in full]}"))


# ---------------------------------------------------------------------------------------
# 19. Unit kernels


@invariant(item="19")
def unit_kernel_ignores_dilation(run):
    """∀i: k_i = 1, d, d' ≥ 0  ⟹  (check passes with d ⟺ check passes with d') ∧
    out(d) = out(d'), for transposed and non-transposed convolutions.

    A kernel of size 1 makes the checks and the output sizes independent of dilation."""
    for dims in run.dims:
        s = ConvSymbols(dims)
        d2 = [z3.Int(f"d{i}_2") for i in range(dims)]
        ones = (s.O, s.I, *([1] * dims))
        for transposed in (False, True):
            fn = _t_out if transposed else _fwd_out
            a = fn(s, weight_shape=ones)
            b = fn(s, weight_shape=ones, dilation=d2)
            ok_a = checks_pass(s, transposed, weight_shape=ones)
            ok_b = checks_pass(s, transposed, weight_shape=ones, dilation=d2)
            claim = D.and_(iff(ok_a, ok_b), all_(D.eq(x, y) for x, y in zip(a, b)))
            names = dict(s.named(), **{f"d{i}_2": d2[i] for i in range(dims)})
            yield Obligation(Group(dims), claim,
                             [*base(s), *[d >= 0 for d in s.d + d2]], names,
                             f"{dims}d{' transposed' if transposed else ''}",
                             explain=lambda v, a=a, b=b: (
                                 f"{[at(x, v) for x in a]} vs {[at(x, v) for x in b]}"))


# ---------------------------------------------------------------------------------------
# 17. SymPy and Z3 forms


def _formulas(sp, zz, dims):
    """(name, sympy value, z3 value) for every formula of symconv.shapes and the checks."""
    out = []

    def both(name, fn):
        out.append((name, fn(sp), fn(zz)))

    both("conv_output_size", lambda s: S.conv_output_size(s["in"], s["w"], s["p"], s["s"],
                                                          s["d"])[2:])
    both("conv_input_size", lambda s: S.conv_input_size(s["in"], s["w"], s["p"], s["op"],
                                                        s["s"], s["d"], s["G"])[1:])
    both("conv_weight_size", lambda s: S.conv_weight_size(s["in"], s["y"], s["p"], s["op"],
                                                          s["s"], s["d"], s["G"])[1:])
    both("pooling_same_mode_padding_lr", lambda s: [
        v for i in range(dims) for v in S.pooling_same_mode_padding_lr(
            s["in"][i + 2], s["w"][i + 2], s["s"][i], s["d"][i])])
    for tr in (False, True):
        both(f"calc_output_size{' (transposed)' if tr else ''}", lambda s, tr=tr: list(
            S.calc_output_size(TensorSpec(tuple(s["in"])), TensorSpec(tuple(s["w"])),
                               ConvParams(s["s"], s["p"], s["d"], tr, s["op"], s["G"]))))
        both(f"check_shape_forward{' (transposed)' if tr else ''}", lambda s, tr=tr: [
            api.prepare(TensorSpec(tuple(s["in"])), TensorSpec(tuple(s["w"])), None, s["s"],
                        s["p"], s["d"], tr, s["op"], s["G"], env=PRESETS["cpu"][1],
                        need_backward=False).checker.condition()])
        both(f"needs_64bit_indexing_no_split{' (transposed)' if tr else ''}",
             lambda s, tr=tr: [ConvParams(s["s"], s["p"], s["d"], tr, s["op"], s["G"])
                               .needs_64bit_indexing_no_split(TensorSpec(tuple(s["in"])),
                                                              TensorSpec(tuple(s["w"])))])
    return out


def _sym_sets(dims):
    names_sizes = ["N", "C", "O", "I"] + [f"x{i}" for i in range(dims)] + \
        [f"k{i}" for i in range(dims)] + [f"y{i}" for i in range(dims)]
    names_params = [f"{n}{i}" for n in ("s", "p", "d", "op") for i in range(dims)] + ["G"]
    sp = {n: D.sym(n) for n in names_sizes}
    sp.update({n: sympy.Symbol(n, integer=True) for n in names_params})
    zz = {n: z3.Int(n) for n in names_sizes + names_params}

    def pack(t):
        return {"in": [t["N"], t["C"]] + [t[f"x{i}"] for i in range(dims)],
                "w": [t["O"], t["I"]] + [t[f"k{i}"] for i in range(dims)],
                "y": [t["N"], t["O"]] + [t[f"y{i}"] for i in range(dims)],
                "s": [t[f"s{i}"] for i in range(dims)], "p": [t[f"p{i}"] for i in range(dims)],
                "d": [t[f"d{i}"] for i in range(dims)],
                "op": [t[f"op{i}"] for i in range(dims)], "G": t["G"]}
    return pack(sp), pack(zz), zz, names_sizes


def _normal(e):
    """A term as a sum of monomials with sums and products in a fixed order (a sound rewrite:
    polynomial identities become syntactic, which spares the solver non-linear reasoning)."""
    return _canon(z3.simplify(zs(e), som=True, arith_lhs=True), {})


def _canon(e, memo):
    key = e.get_id()
    if key in memo:
        return memo[key]
    if z3.is_app(e) and e.num_args() > 0:
        kids = [_canon(c, memo) for c in e.children()]
        if e.decl().kind() in (z3.Z3_OP_ADD, z3.Z3_OP_MUL):
            kids.sort(key=lambda c: c.sexpr())
        out = e.decl()(*kids)
    else:
        out = e
    memo[key] = out
    return out


@invariant(item="17")
def sympy_z3_forms_agree(run):
    """For every formula F of symconv's shape logic (conv_output_size, conv_input_size,
    conv_weight_size, pooling_same_mode_padding_lr, calc_output_size, the check_shape_forward
    condition, needs_64bit_indexing_no_split; transposed and not): sizes ≥ 0 (as the SymPy
    size symbols declare)  ⟹  to_z3(F over SymPy symbols) = F over Z3 symbols, for all
    integers.

    The SymPy answers users read and the Z3 terms the proofs use are the same functions."""
    for dims in run.dims:
        sp, zz, zmap, size_names = _sym_sets(dims)
        facts = [zmap[n] >= 0 for n in size_names]
        for name, a, b in _formulas(sp, zz, dims):
            conv = [D.to_z3(v, symbols=dict(zmap)) for v in a]
            claim = all_(_normal(x) == _normal(y) for x, y in zip(conv, b))
            yield Obligation(Group(dims), claim, facts, dict(zmap), f"{dims}d {name}",
                             explain=lambda v, conv=conv, b=b, name=name: (
                                 f"{name}: SymPy form {[at(x, v) for x in conv]}, Z3 form "
                                 f"{[at(x, v) for x in b]}"))
