"""symconv.domain's total division helpers: Python's ``//`` and ``%`` (and C++ ``/``) as
functions of the symbols alone, with the divisor 0 defined (0 for the quotient)."""

import itertools

import numpy as np
import pytest
import sympy
import z3

import symconv.domain as D

VALS = range(-7, 8)


def test_int_matches_python_and_zero_raises_pythons_error():
    for a, b in itertools.product(VALS, VALS):
        if b == 0:
            with pytest.raises(ZeroDivisionError, match=r"^integer division or modulo by zero$"):
                D.floordiv_total(a, b)
            with pytest.raises(ZeroDivisionError, match=r"^integer modulo by zero$"):
                D.floormod_total(a, b)
            with pytest.raises(ZeroDivisionError):
                D.cdiv_total(a, b)
            continue
        assert D.floordiv_total(a, b) == a // b
        assert D.floormod_total(a, b) == a % b
        assert D.cdiv_total(a, b) == D.cdiv(a, b)
        assert D.floordiv_total(np.int64(a), b) == a // b


def test_z3_is_total_and_agrees_with_python_for_nonzero_divisors():
    a, b = z3.Ints("a b")
    q, r, c = D.floordiv_total(a, b), D.floormod_total(a, b), D.cdiv_total(a, b)
    for x, y in itertools.product(VALS, VALS):
        sub = [(a, z3.IntVal(x)), (b, z3.IntVal(y))]
        got = [z3.simplify(z3.substitute(e, *sub)).as_long() for e in (q, r, c)]
        if y == 0:
            assert got == [0, x, 0]
        else:
            assert got == [x // y, x % y, D.cdiv(x, y)]
    # no unspecified x/0 left: at b == 0 the value is fixed whatever Z3's x/0 means
    s = z3.Solver()
    s.add(b == 0, z3.Or(q != 0, r != a, c != 0))
    assert s.check() == z3.unsat
    # a positive literal divisor keeps Z3's plain (fast) division
    assert z3.eq(D.floordiv_total(a, 4), a / 4) and z3.eq(D.floormod_total(a, 4), a % 4)


def test_sympy_and_numpy():
    x, y = sympy.symbols("x y", integer=True)
    q, r = D.floordiv_total(x, y), D.floormod_total(x, y)
    for a, b in itertools.product(VALS, VALS):
        want = (0, a) if b == 0 else (a // b, a % b)
        assert (int(q.subs({x: a, y: b})), int(r.subs({x: a, y: b}))) == want
    av = np.array([a for a, _ in itertools.product(VALS, VALS)], dtype=np.int64)
    bv = np.array([b for _, b in itertools.product(VALS, VALS)], dtype=np.int64)
    want_q = [0 if b == 0 else a // b for a, b in zip(av.tolist(), bv.tolist())]
    want_r = [a if b == 0 else a % b for a, b in zip(av.tolist(), bv.tolist())]
    assert D.floordiv_total(av, bv).tolist() == want_q
    assert D.floormod_total(av, bv).tolist() == want_r


def test_size_divisor_variants_agree_for_nonnegative_divisors():
    a, b = z3.Ints("a b")
    s = z3.Solver()
    s.add(b >= 0, z3.Or(D.floordiv_size(a, b) != D.floordiv_total(a, b),
                        D.floormod_size(a, b) != D.floormod_total(a, b)))
    assert s.check() == z3.unsat
    assert D.floordiv_size(7, 2) == 3 and D.floormod_size(-7, 2) == 1
    with pytest.raises(ZeroDivisionError):
        D.floordiv_size(1, 0)
