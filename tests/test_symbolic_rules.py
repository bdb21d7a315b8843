"""Symbolic answers agree with the int path, and the symbolic case split is a partition.

For templates with every size and parameter symbolic, and for each environment preset:
(1) at random concrete points, the case whose condition holds predicts what the int path does
(same backend, or the same check/rule raising); (2) with Z3, the cases are exhaustive (their
disjunction is valid for non-negative sizes) and mutually exclusive (pairwise unsat).
"""

from __future__ import annotations

import itertools
import random

import pytest
import sympy
import torch
import z3

import symconv
from symconv import ConvBackend, TensorSpec, preset
from symconv import solver
from symconv.errors import ConvValueError

PRESETS = ["cpu", "cpu-mt", "cpu-avx512bf16", "cuda-h100", "cuda-cudnn8", "mobile", "arm", "seed"]


def template(dims: int, transposed: bool, domain: str, device: str, dtype, memory_format):
    mk = ((lambda n: sympy.Symbol(n, integer=True, nonnegative=True)) if domain == "sympy"
          else z3.Int)
    spatial = [mk(f"X{i}") for i in range(dims)]
    kernel = [mk(f"K{i}") for i in range(dims)]
    N, C, O = mk("N"), mk("C"), mk("O")
    G = mk("G")
    inp = TensorSpec((N, C, *spatial), dtype=dtype, device=device,
                     memory_format=memory_format if dims == 2 else torch.contiguous_format)
    w = TensorSpec((C if transposed else O, O if transposed else C, *kernel), dtype=dtype,
                   device=device)
    stride = [mk(f"S{i}") for i in range(dims)]
    padding = [mk(f"P{i}") for i in range(dims)]
    dilation = [mk(f"D{i}") for i in range(dims)]
    opad = [mk(f"Q{i}") for i in range(dims)] if transposed else [0] * dims
    names = ["N", "C", "O", "G"] + [f"{p}{i}" for p in "XKSPD" for i in range(dims)]
    if transposed:
        names += [f"Q{i}" for i in range(dims)]
    return (inp, w, None, stride, padding, dilation, transposed, opad, G), names


def draw_values(rng: random.Random, names: list[str], *, groups_zero: bool = True) -> dict:
    v = {}
    for n in names:
        if n == "G":
            # torch 2.4 (the seed) divides by groups before checking it: groups=0 is undefined
            v[n] = rng.choice([1, 1, 2, 3, 0] if groups_zero else [1, 1, 2, 3])
        elif n[0] in "NCO":
            v[n] = rng.choice([0, 1, 2, 3, 4, 6, 16, 17, 32, 64])
        elif n[0] == "X":
            v[n] = rng.choice([1, 2, 3, 5, 7, 8, 14, 28, 112])
        elif n[0] == "K":
            v[n] = rng.choice([1, 2, 3, 5, 17])
        elif n[0] == "S":
            v[n] = rng.choice([1, 1, 2, 3, 0])
        elif n[0] == "P":
            v[n] = rng.choice([0, 0, 1, 2, 3])
        elif n[0] == "D":
            v[n] = rng.choice([1, 1, 2, 0])
        else:
            v[n] = rng.choice([0, 0, 1, 2])
    return v


def outcome_name(fn):
    try:
        r = fn()
    except (symconv.ConvError, ConvValueError, IndexError) as e:
        chk = getattr(e, "check", None)
        return ("error", chk.name if chk is not None else getattr(e, "rule", type(e).__name__))
    return ("backend", r)


def case_name(case):
    o = case.outcome
    if isinstance(o, ConvBackend):
        return ("backend", o)
    chk = getattr(o, "check", None)
    return ("error", chk.name if chk is not None else getattr(o, "rule", type(o).__name__))


CONFIGS = [
    (dims, tr, dev, dt, mf)
    for dims in (1, 2, 3) for tr in (False, True)
    for dev, dt in (("cpu", torch.float32), ("cpu", torch.bfloat16), ("cuda", torch.float16),
                    ("cuda", torch.float32))
    for mf in (torch.contiguous_format, torch.channels_last)
    if not (mf == torch.channels_last and dims != 2)
]


def check_predictions(env_name: str, configs, draws: int) -> int:
    env = preset(env_name)
    rng = random.Random(sum(map(ord, env_name)))
    checked = 0
    for dims, tr, dev, dt, mf in configs:
        if dev == "cuda" and env_name in ("cpu", "cpu-mt", "mobile", "arm", "seed",
                                          "cpu-avx512bf16"):
            continue
        for domain in ("sympy", "z3"):
            call, names = template(dims, tr, domain, dev, dt, mf)
            sel = symconv.select_conv_backend(*call, env=env, need_backward=False)
            for _ in range(draws):
                vals = draw_values(rng, names, groups_zero=env.version >= (2, 10))
                got = case_name(sel.case_at(**vals))
                want = outcome_name(lambda sel=sel, vals=vals: sel.replay(vals))
                assert got == want, (env_name, dims, tr, dev, dt, mf, domain, vals, got, want)
                checked += 1
    return checked


@pytest.mark.parametrize("env_name", ["cpu", "cuda-h100", "seed", "mobile"])
def test_symbolic_cases_predict_the_int_path(env_name):
    assert check_predictions(env_name, CONFIGS[::2], 3) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("env_name", PRESETS)
def test_symbolic_cases_predict_the_int_path_all(env_name):
    assert check_predictions(env_name, CONFIGS, 12) >= 80


@pytest.mark.parametrize("env_name", ["cpu", "cuda-h100", "seed", "mobile"])
def test_cases_are_a_partition(env_name):
    env = preset(env_name)
    for dims, tr, dev, dt, mf in CONFIGS[::5]:
        if dev == "cuda" and not env.cuda_available:
            continue
        call, names = template(dims, tr, "z3", dev, dt, mf)
        sel = symconv.select_conv_backend(*call, env=env, need_backward=False)
        facts = [z3.Int(n) >= 0 for n in names]
        conds = [c.condition for c in sel.cases]
        exhaustive = solver.prove(z3.Or(*conds), *facts)
        assert exhaustive.unsat, (env_name, dims, tr, dev, dt, mf, exhaustive)
        for a, b in itertools.combinations(range(len(conds)), 2):
            r = solver.check(conds[a], conds[b], *facts)
            assert r.unsat, (env_name, sel.cases[a].rule, sel.cases[b].rule, r.verdict)
