"""The proof catalogue (proofs/) and ``symconv prove``.

* Every invariant has a mutation test: symconv (or the proof's model of seed code symconv
  lacks) is changed the way a bug would change it, and the invariant must then miss its
  expected verdict. A proof that cannot fail counts for nothing.
* ``symconv prove`` runs the whole catalogue end to end and exits 0; bad arguments give one
  line naming the argument and exit status 2.

Mutation runs are scoped to one rank and one environment, without torch replays, so that each
takes a fraction of a second; the end-to-end run covers every scope.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import sympy

import proofs.core as core
import proofs.model as pmodel
import symconv.functional as sfunctional
from symconv import api, rules
from symconv import domain as D
from symconv import params as P
from symconv import shapes as S
from symconv import solver
from symconv.backends import ConvBackend as B
from symconv.cli import main as cli_main
from symconv.errors import ConvError
from symconv.params import ConvParams
from symconv.spec import MF_CHANNELS_LAST

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def result(name: str, *, dims=(2,), envs=("cpu",)):
    core.load()
    run = core.Run(dims=dims, envs=envs, profiles=[], replay=False)
    try:
        return core.run_invariant(core.CATALOGUE[name], run)
    finally:
        run.close()


# --------------------------------------------------------------------------------------
# mutation helpers


def drop_check(mp, *names):
    """check_shape_forward (and so check_shape_backward) without the named checks."""
    orig = S.check_shape_forward

    def mutant(input, weight_sizes, bias, params, check, *, version=(2, 13)):
        def filtered(cond, message, *, name, error=ConvError):
            if name not in names:
                check(cond, message, name=name, error=error)
        return orig(input, weight_sizes, bias, params, filtered, version=version)
    mp.setattr(api, "check_shape_forward", mutant)
    mp.setattr(S, "check_shape_forward", mutant)


def add_check(mp, cond_fn):
    """check_shape_forward with one more check, cond_fn(input, weight_sizes, params)."""
    orig = S.check_shape_forward

    def mutant(input, weight_sizes, bias, params, check, *, version=(2, 13)):
        orig(input, weight_sizes, bias, params, check, version=version)
        check(cond_fn(input, weight_sizes, params), lambda: "mutant", name="mutant")
    mp.setattr(api, "check_shape_forward", mutant)
    mp.setattr(S, "check_shape_forward", mutant)


def set_rules(mp, edit):
    table = list(rules.RULES)
    mp.setattr(rules, "RULES", tuple(edit(table)))


def without_rule(name):
    return lambda table: [r for r in table if r.name != name]


def rule_with(name, conds=None, drop=()):
    def edit(table):
        out = []
        for r in table:
            if r.name == name:
                cs = conds if conds is not None else tuple(c for c in r.conds if c not in drop)
                r = rules.Rule(r.name, r.outcome, tuple(cs))
            out.append(r)
        return out
    return edit


def ceil_div(a, b):
    """C++ division mutated to round up."""
    return -D.floordiv(-a if not isinstance(a, bool) else -int(a), b)


def wrap(mp, owner, attr, fn):
    orig = getattr(owner, attr)
    mp.setattr(owner, attr, lambda *a, **k: fn(orig, *a, **k))


def spatial_map(f):
    return lambda out: list(out[:2]) + [f(v) for v in out[2:]]


def _floor_truncdiv(cls, a, b):
    if a.is_Integer and b.is_Integer:
        return sympy.Integer(int(a) // int(b))
    return sympy.floor(a / b)


# --------------------------------------------------------------------------------------
# one mutation per invariant: (invariant, dims, envs, mutate(monkeypatch))


MUTATIONS = {
    "output_size_positive": ((1,), ("cpu",), lambda mp: mp.setattr(
        ConvParams, "is_stride_nonpos", lambda self: False)),
    "trunc_division_is_floor": ((1,), ("cpu",), lambda mp: mp.setattr(D, "cdiv", ceil_div)),
    "transposed_output_positive": ((1,), ("cpu",), lambda mp: wrap(
        mp, S, "conv_input_size",
        lambda f, *a: spatial_map(lambda v: D.max_(v, 1))(f(*a)))),
    "transposed_output_positive_exactly": ((1,), ("cpu",), lambda mp: wrap(
        mp, S, "conv_input_size", lambda f, o, w, p, op, s, d, g: f(o, w, p, [0] * len(op),
                                                                       s, d, g))),
    "roundtrip_recovers_input": ((1,), ("cpu",), lambda mp: mp.setattr(D, "cdiv", ceil_div)),
    "roundtrip_output_padding_not_big": ((1,), ("cpu",), lambda mp: mp.setattr(
        ConvParams, "is_stride_nonpos", lambda self: False)),
    "roundtrip_transposed_accepted": ((1,), ("cpu",), lambda mp: mp.setattr(
        ConvParams, "is_output_padding_neg",
        lambda self: D.any_(D.le(p, 0) for p in self.output_padding))),
    "weight_size_roundtrip": ((1,), ("cpu",), lambda mp: wrap(
        mp, S, "conv_weight_size", lambda f, *a: spatial_map(lambda v: v + 1)(f(*a)))),
    "same_padding_keeps_size": ((1,), ("cpu",), lambda mp: wrap(
        mp, S, "pooling_same_mode_padding_lr",
        lambda f, x, k, s, d: (lambda lr: (lr[1], lr[0]))(f(x, k, s, d)))),
    "same_padding_accepted_exactly": ((1,), ("cpu",), lambda mp: wrap(
        mp, S, "pooling_same_mode_padding_lr", lambda f, x, k, s, d: f(x, k + 1, s, d))),
    "same_padding_split_balanced": ((1,), ("cpu",), lambda mp: wrap(
        mp, S, "pooling_same_mode_padding_lr",
        lambda f, x, k, s, d: (lambda lr: (lr[1], lr[0]))(f(x, k, s, d)))),
    "same_padding_symmetric_exactly": ((1,), ("cpu",), lambda mp: wrap(
        mp, S, "pooling_same_mode_padding_lr", lambda f, x, k, s, d: f(x, k + 1, s, d))),
    "dispatch_total": ((2,), ("cpu",), lambda mp: set_rules(mp, without_rule("overrideable"))),
    "dispatch_deterministic": ((2,), ("cpu",), lambda mp: mp.setattr(
        rules, "cases", lambda ctx, table=None: [(r.guard(ctx), r) for r in table])),
    "unsupported_unreachable": ((2,), ("cpu",), lambda mp: set_rules(mp, without_rule("slow2d"))),
    "unsupported_exactly": ((1,), ("cpu",), lambda mp: set_rules(
        mp, rule_with("unsupported", conds=()))),
    "no_backward_backends": ((2,), ("mobile",), lambda mp: set_rules(
        mp, rule_with("xnnpack", drop=(rules.NO_BACKWARD,)))),
    "depthwise_backends_need_depthwise": ((2,), ("cuda-h100",), lambda mp: mp.setattr(
        ConvParams, "is_depthwise",
        lambda self, i, w: D.eq(i.size(1), self.groups) if i.is_cuda and i.ndim in (4, 5)
        and not self.transposed else False)),
    "nnpack_implies": ((2,), ("mobile",), lambda mp: wrap(
        mp, ConvParams, "use_nnpack",
        lambda f, self, i, w, env: f(self, i, dataclasses.replace(
            w, shape=w.shape[:2] + tuple(k - 1 for k in w.shape[2:])), env))),
    "nnpack_converse": ((2,), ("mobile",), lambda mp: wrap(
        mp, ConvParams, "use_nnpack",
        lambda f, self, i, w, env: D.and_(f(self, i, w, env), D.lt(w.size(2), 16)))),
    "nnpack_preempted_by_mkldnn": ((2,), ("cpu",), lambda mp: mp.setattr(
        ConvParams, "use_mkldnn", lambda self, i, w, env: False)),
    "cudnn_never_64bit_indexing": ((2,), ("seed-cuda",), lambda mp: mp.setattr(
        P, "CUDA_RULES_NEW", (2, 0))),
    "cudnn_path_never_64bit_indexing": ((2,), ("seed-cuda",), lambda mp: mp.setattr(
        ConvParams, "_use_cudnn_seed", lambda self, i, w, env: i.is_cuda)),
    "mkldnn_not_for_small_1x1": ((2,), ("cpu",), lambda mp: wrap(
        mp, ConvParams, "use_mkldnn",
        lambda f, self, i, w, env: f(self, i, w, dataclasses.replace(env, num_threads=2)))),
    "mkldnn_not_for_small_1x1_multithreaded": ((2,), ("cpu-mt",), lambda mp: mp.setattr(
        ConvParams, "use_mkldnn", lambda self, i, w, env: False)),
    "empty_iff_no_elements": ((2,), ("cpu",), lambda mp: set_rules(mp, rule_with(
        "empty", conds=(rules.Cond("no elements", lambda c: D.eq(c.input.numel(), 0)),)))),
    "empty_exactly": ((2,), ("cpu",), lambda mp: set_rules(mp, rule_with(
        "empty", conds=(rules.Cond("zero batch", lambda c: D.eq(c.input.size(0), 0)),)))),
    "zero_numel_error_exactly": ((2,), ("cpu",), lambda mp: set_rules(
        mp, without_rule("zero_numel"))),
    # symconv's unsqueeze(0) with the wrong dimension order, then with the batch-1 stride
    "unbatched_same_backend": ((2,), ("cpu",), lambda mp: mp.setattr(
        sfunctional, "_unsqueeze0", lambda t: dataclasses.replace(
            t, shape=(t.shape[0], 1) + tuple(t.shape[1:]), strides=None))),
    "unbatched_channels_last_same_format": ((2,), ("cpu",), lambda mp: mp.setattr(
        sfunctional, "_unsqueeze0", lambda t: dataclasses.replace(
            t, shape=(1,) + tuple(t.shape),
            strides=(D.prod(t.shape),) + tuple(t.stride())))),
    "backward_checks_are_forward_without_bias": ((1,), ("cpu",), lambda mp: mp.setattr(
        S, "check_shape_backward", lambda i, w, pr, check, version=(2, 13): _backward_mutant(
            i, w, pr, check, version))),
    "double_backward_groups_match": ((3,), ("cpu",), lambda mp: mp.setattr(
        pmodel, "double_backward_groups", lambda i, w, tr, g: g)),
    "double_backward_groups_match_where_used": ((3,), ("cpu",),
                                                lambda mp: drop_check(mp, "input_channels")),
    "double_backward_output_padding_gives_input": ((1,), ("cpu",), lambda mp: wrap(
        mp, S, "conv_input_size", lambda f, o, w, p, op, s, d, g: f(o, w, p, [0] * len(op),
                                                                       s, d, g))),
    "output_monotone_in_input_and_padding": ((1,), ("cpu",), lambda mp: wrap(
        mp, S, "conv_output_size",
        lambda f, i, w, p, s, d=None: f(i, w, [-v for v in p], s, d))),
    "output_antitone_in_stride_dilation_kernel": ((1,), ("cpu",), lambda mp: wrap(
        mp, S, "conv_output_size",
        lambda f, i, w, p, s, d=None: f(i, w, p, s, [-v for v in d]))),
    "dilation_antitone_any_kernel": ((1,), ("cpu",), lambda mp: add_check(
        mp, lambda i, ws, pr: D.all_(D.ge(k, 1) for k in ws[2:]))),
    "transposed_output_monotone": ((1,), ("cpu",), lambda mp: wrap(
        mp, S, "conv_input_size",
        lambda f, o, w, p, op, s, d, g: f(o, w, [-v for v in p], op, s, d, g))),
    "group_decomposition": ((1,), ("cpu",), lambda mp: drop_check(mp, "groups_weight_divisible")),
    "sympy_z3_forms_agree": ((1,), ("cpu",), lambda mp: mp.setattr(
        D.TruncDiv, "eval", classmethod(_floor_truncdiv))),
    "batch_split_preserves_shape": ((1,), ("cpu",), lambda mp: wrap(
        mp, S, "calc_output_size", lambda f, i, w, pr: (lambda out: [
            out[0], D.ite(D.eq(i.size(0), 0), 0, out[1]), *out[2:]])(f(i, w, pr)))),
    "unit_kernel_ignores_dilation": ((1,), ("cpu",), lambda mp: wrap(
        mp, S, "conv_output_size", lambda f, i, w, p, s, d=None: f(
            i, list(w[:2]) + [k + 1 for k in w[2:]], p, s, d))),
    "backward_grad_shapes": ((2,), ("cpu",), lambda mp: drop_check(mp, "groups_weight_divisible")),
    "memory_format_channels_last_exactly": ((2,), ("cpu",), lambda mp: wrap(
        mp, rules, "determine_backend_memory_format",
        lambda f, i, w, b, env: f(i, w, B.Slow2d if b == B.NnpackSpatial else b, env))),
    "memory_format_rank_matches": ((3,), ("cpu",), lambda mp: wrap(
        mp, rules, "determine_backend_memory_format",
        lambda f, i, w, b, env: MF_CHANNELS_LAST if b == B.Slow3d else f(i, w, b, env))),
    "backend_matches_device": ((2,), ("cpu",), lambda mp: set_rules(
        mp, rule_with("slow2d", drop=(rules.CPU_OR_CUDA,)))),
    "transposed_backend_iff_transposed": ((2,), ("cuda-h100",), lambda mp: set_rules(
        mp, lambda t: sorted(t, key=lambda r: r.name != "cudnn"))),
    "fast_transposed_rejects_big_output_padding": ((2,), ("cpu",), lambda mp: wrap(
        mp, ConvParams, "use_mkldnn", lambda f, self, i, w, env: f(
            dataclasses.replace(self, output_padding=[0] * len(self.output_padding)),
            i, w, env))),
}


def _backward_mutant(i, w, pr, check, version):
    """check_shape_backward that also drops the negative-padding check."""
    def filtered(cond, message, *, name, error=ConvError):
        if name != "padding_neg":
            check(cond, message, name=name, error=error)
    S.check_shape_forward(i, w, None, pr, filtered, version=version)


def test_every_invariant_has_a_mutation_test():
    core.load()
    assert sorted(MUTATIONS) == sorted(core.CATALOGUE)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutation_makes_the_proof_fail(name, monkeypatch):
    dims, envs, mutate = MUTATIONS[name]
    mutate(monkeypatch)
    res = result(name, dims=dims, envs=envs)
    assert not res.error, res.error
    assert res.groups, "the mutation scope must apply"
    # a definite verdict (not a timeout) that differs from the expected one
    kept = [(str(g.group), g.verdict, g.expected) for g in res.groups]
    assert any(g.verdict in ("proved", "refuted") and g.verdict != g.expected
               for g in res.groups), f"{name} kept its expected verdict under the mutation: {kept}"


@pytest.mark.parametrize("name,dims,envs", [
    ("output_size_positive", (1,), ("cpu",)),
    ("transposed_output_positive", (1,), ("cpu",)),
    ("dispatch_deterministic", (2,), ("cpu",)),
    ("empty_exactly", (2,), ("cpu",)),
    ("transposed_backend_iff_transposed", (2,), ("cuda-h100",)),
])
def test_unmutated_scopes_hold(name, dims, envs):
    res = result(name, dims=dims, envs=envs)
    assert res.ok, [(str(g.group), g.verdict, g.expected, g.reason) for g in res.groups]


# --------------------------------------------------------------------------------------
# verdict semantics


def test_unknown_is_never_proved(monkeypatch):
    monkeypatch.setattr(solver, "prove", lambda *a, **k: solver.Result("unknown",
                                                                       reason="timeout"))
    res = result("output_size_positive", dims=(1,))
    assert res.verdict == "unknown" and not res.ok


def test_counterexamples_are_small_and_replayed():
    core.load()
    run = core.Run(dims=(1,), envs=("cpu",), profiles=[], replay=True)
    try:
        res = core.run_invariant(core.CATALOGUE["transposed_output_positive"], run)
    finally:
        run.close()
    assert res.ok and res.verdict == "refuted"
    cx = res.groups[0].counterexample
    assert cx is not None and all(abs(v) <= 4 for v in cx.values.values())
    assert "Output size is too small" in cx.torch or "returned shape" in cx.torch


def test_catalogue_has_enough_statements():
    core.load()
    assert len(core.CATALOGUE) >= 25
    for inv in core.CATALOGUE.values():
        assert inv.statement, f"{inv.name} has no statement"
        assert "⟹" in inv.statement or "⟺" in inv.statement, inv.name


def test_layering_symconv_never_imports_proofs():
    for dirpath, _, files in os.walk(os.path.join(ROOT, "symconv")):
        for f in files:
            if not f.endswith(".py") or (f == "prove.py" and dirpath.endswith("cli")):
                continue
            text = open(os.path.join(dirpath, f), encoding="utf-8").read()
            assert "import proofs" not in text and "from proofs" not in text, f


def test_docs_cover_the_catalogue():
    core.load()
    text = open(os.path.join(ROOT, "docs", "proofs.md"), encoding="utf-8").read()
    for name in core.CATALOGUE:
        assert f"`{name}`" in text, name


# --------------------------------------------------------------------------------------
# the command line


@pytest.mark.parametrize("argv,argument", [
    (["prove", "no_such_invariant"], "NAME"),
    (["prove", "--dims", "4"], "--dims"),
    (["prove", "--dims", "1,x"], "--dims"),
    (["prove", "--dims", ""], "--dims"),
    (["prove", "--env", "nope"], "--env"),
    (["prove", "--timeout", "-1"], "--timeout"),
    (["prove", "--timeout", "soon"], "--timeout"),
    (["prove", "--jobs", "0"], "--jobs"),
    (["prove", "--junit", "/nonexistent-dir/x.xml"], "--junit"),
])
def test_bad_arguments_exit_2_with_one_line(argv, argument, capsys):
    code = cli_main(argv)
    _out, err = capsys.readouterr()
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert argument in lines[0] and "Traceback" not in err


def test_list(capsys):
    assert cli_main(["prove", "--list"]) == 0
    out = capsys.readouterr().out
    core.load()
    assert all(name in out for name in core.CATALOGUE)


def test_json_subset(capsys):
    code = cli_main(["prove", "output_size_positive", "roundtrip_recovers_input", "--json",
                     "--dims", "1", "--jobs", "1", "--no-replay"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["summary"]["ok"]
    assert [r["name"] for r in data["invariants"]] == ["output_size_positive",
                                                       "roundtrip_recovers_input"]


def test_exit_1_on_an_unexpected_verdict(monkeypatch, capsys):
    monkeypatch.setattr(ConvParams, "is_stride_nonpos", lambda self: False)
    code = cli_main(["prove", "output_size_positive", "--dims", "1", "--jobs", "1",
                     "--no-replay"])
    out = capsys.readouterr().out
    assert code == 1
    assert "error: output_size_positive" in out and "FAILED" in out.splitlines()[-1]


def test_symconv_prove_end_to_end(tmp_path):
    """The whole catalogue, as CI runs it: exit 0, one line per invariant, JUnit report.

    The per-query solver limit is raised to 60 s: this test checks verdicts, not speed, and on
    a loaded 2-core machine one query once hit the default 10 s limit
    (reported, correctly, as unknown). The speed of the default is benchmarks/prove_bench.py's.
    """
    junit = tmp_path / "prove.xml"
    p = subprocess.run([sys.executable, "-c", "from symconv.cli import main; "
                        "raise SystemExit(main())", "prove", "--timeout", "60",
                        "--junit", str(junit)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith("symconv prove: ") and "; ok in" in last
    core.load()
    for name in core.CATALOGUE:
        assert f": {name} " in p.stdout or f"{name} [" in p.stdout, name
    tree = ET.parse(junit)
    suite = tree.getroot().find("testsuite")
    assert int(suite.get("tests")) == len(core.CATALOGUE)
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
