"""The integer domains agree: every operation, formula and predicate gives the same answer over
int, SymPy (after substitution), Z3 (after substitution) and numpy arrays."""

from __future__ import annotations

import random

import numpy as np
import pytest
import sympy
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from symconv import domain as D
from symconv import shapes

ints = st.integers(-50, 50)
nonzero = ints.filter(lambda v: v != 0)


def sp_eval(e, env):
    r = sympy.sympify(e).subs({sympy.Symbol(k, integer=True, nonnegative=True): v
                               for k, v in env.items()})
    r = r.subs({sympy.Symbol(k, integer=True): v for k, v in env.items()})
    if r in (sympy.true, sympy.false):
        return bool(r)
    return int(r)


def z3_eval(e, env):
    r = z3.simplify(z3.substitute(e, *[(z3.Int(k), z3.IntVal(v)) for k, v in env.items()]))
    if z3.is_true(r) or z3.is_false(r):
        return z3.is_true(r)
    return r.as_long()


OPS = {
    "cdiv": D.cdiv, "cmod": D.cmod, "floordiv": D.floordiv, "floormod": D.floormod,
    "min": D.min_, "max": D.max_, "eq": D.eq, "ne": D.ne, "lt": D.lt, "le": D.le,
    "gt": D.gt, "ge": D.ge,
}


@pytest.mark.parametrize("name", sorted(OPS))
@settings(max_examples=150)
@given(a=ints, b=nonzero)
def test_binary_ops_agree_across_domains(name, a, b):
    op = OPS[name]
    want = op(a, b)
    sa, sb = D.sym("a"), D.sym("b", D.SYMPY)
    sa = sympy.Symbol("a", integer=True)
    sb = sympy.Symbol("b", integer=True)
    assert sp_eval(op(sa, sb), {"a": a, "b": b}) == want
    za, zb = z3.Int("a"), z3.Int("b")
    assert z3_eval(op(za, zb), {"a": a, "b": b}) == want
    got = op(np.array([a], dtype=np.int64), np.array([b], dtype=np.int64))
    assert int(np.asarray(got)[0]) == int(want)


def test_cdiv_is_cpp_truncation():
    assert [D.cdiv(a, b) for a, b in [(7, 2), (-7, 2), (7, -2), (-7, -2)]] == [3, -3, -3, 3]
    assert [D.cmod(a, b) for a, b in [(7, 2), (-7, 2), (7, -2), (-7, -2)]] == [1, -1, 1, -1]
    assert D.floordiv(-7, 2) == -4


@settings(max_examples=100)
@given(a=st.booleans(), b=st.booleans(), c=st.booleans(), x=ints, y=ints)
def test_logic_agrees_across_domains(a, b, c, x, y):
    def formula(p, q, r, u, v):
        return D.or_(D.and_(p, D.not_(q)), D.ite(r, D.lt(u, v), D.ge(u, v)))
    want = formula(a, b, c, x, y)
    P, Q, R = (sympy.Symbol(n) for n in "pqr")
    U, V = sympy.Symbol("u", integer=True), sympy.Symbol("v", integer=True)
    got_sp = formula(P, Q, R, U, V).subs({P: a, Q: b, R: c, U: x, V: y})
    assert bool(got_sp) == want
    zp, zq, zr = z3.Bools("p q r")
    zu, zv = z3.Ints("u v")
    ze = formula(zp, zq, zr, zu, zv)
    ze = z3.simplify(z3.substitute(ze, (zp, z3.BoolVal(a)), (zq, z3.BoolVal(b)),
                                   (zr, z3.BoolVal(c)), (zu, z3.IntVal(x)), (zv, z3.IntVal(y))))
    assert z3.is_true(ze) == want


def test_to_z3_round_trips_truncating_division():
    a, b = sympy.Symbol("a", integer=True), sympy.Symbol("b", integer=True)
    e = D.cdiv(a + 3, b) * 2 + D.cmod(a, b)
    z = D.to_z3(e)
    for av, bv in [(7, 2), (-7, 2), (7, -3), (-8, -3), (0, 5)]:
        assert z3_eval(z, {"a": av, "b": bv}) == D.cdiv(av + 3, bv) * 2 + D.cmod(av, bv)


def test_mixing_sympy_and_z3_is_refused():
    with pytest.raises(TypeError, match="cannot mix SymPy and Z3"):
        D.eq(sympy.Symbol("a"), z3.Int("b"))


def test_wrap64_reproduces_int64_overflow():
    assert D.wrap64(4 + 2 * (2**62 - 1)) == -9223372036854775806
    assert D.wrap64(5) == 5


@settings(max_examples=200)
@given(x=st.integers(0, 60), k=st.integers(1, 7), p=st.integers(0, 5), s=st.integers(1, 4),
       d=st.integers(1, 3), op=st.integers(0, 3), g=st.integers(1, 3))
def test_size_formulas_agree_across_domains(x, k, p, s, d, op, g):
    X, K, P, S, Dl, O, G = (sympy.Symbol(n, integer=True)
                            for n in ("X", "K", "P", "S", "Dl", "O", "G"))
    vals = {"X": x, "K": k, "P": p, "S": s, "Dl": d, "O": op, "G": g}
    out_i = shapes.conv_output_size([2, 3, x], [4, 3, k], [p], [s], [d])
    out_s = shapes.conv_output_size([2, 3, X], [4, 3, K], [P], [S], [Dl])
    out_z = shapes.conv_output_size([2, 3, z3.Int("X")], [4, 3, z3.Int("K")], [z3.Int("P")],
                                    [z3.Int("S")], [z3.Int("Dl")])
    assert sp_eval(out_s[2], vals) == out_i[2] == z3_eval(out_z[2], vals)
    in_i = shapes.conv_input_size([2, 3, x], [3, 4, k], [p], [op], [s], [d], g)
    in_s = shapes.conv_input_size([2, 3, X], [3, 4, K], [P], [O], [S], [Dl], G)
    assert [sp_eval(v, vals) for v in in_s] == in_i
    lr_i = shapes.pooling_same_mode_padding_lr(x, k, s, d)
    lr_s = shapes.pooling_same_mode_padding_lr(X, K, S, Dl)
    lr_z = shapes.pooling_same_mode_padding_lr(*(z3.Int(n) for n in ("X", "K", "S", "Dl")))
    assert tuple(sp_eval(v, vals) for v in lr_s) == lr_i == tuple(z3_eval(v, vals) for v in lr_z)


def test_numpy_formula_matches_int_elementwise():
    rng = random.Random(0)
    xs = np.array([rng.randint(0, 100) for _ in range(500)], dtype=np.int64)
    ks = np.array([rng.randint(1, 9) for _ in range(500)], dtype=np.int64)
    out = shapes.conv_output_size([1, 1, xs], [1, 1, ks], [1], [2], [1])[2]
    for i in range(500):
        assert out[i] == shapes.conv_output_size([1, 1, int(xs[i])], [1, 1, int(ks[i])],
                                                 [1], [2], [1])[2]
