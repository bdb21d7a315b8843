"""Example builders for the fuzz suites (tests/test_fuzz_cli.py, tests/test_fuzz_api.py).

The builders make argument vectors and API arguments that are mostly malformed (wrong types,
negative and huge sizes, 0-d and 7-d shapes, unknown presets and backends, contradictory
constraints, very long, non-ASCII and non-UTF-8 text), mixed with well-formed values so that
the later stages of argument checking are reached as well.

Speed: the default run checks 1,000 examples per command and API family
(:func:`run_seeded`: a fixed seed per example, no Hypothesis engine), so each value is one pick
from a pool of a few hundred texts built once (seeded, so the pools are the same in every run).
The slow suite (:func:`drawn`, Hypothesis) adds freely generated text and integers on top of
the pools and shrinks what it finds.
"""

from __future__ import annotations

import random

from hypothesis import strategies as st

INT64_MAX = 2**63 - 1

# integers that sit on the edges of what the front-end and torch accept
EDGE_INTS = [0, 1, 2, 3, -1, -2, 7, 64, 2**31 - 1, 2**31, 2**32, 2**62, INT64_MAX, 2**63,
             -(2**63), -(2**63) - 1, 2**70, 10**30]

# text that is not a number, a symbol or anything a parser expects ("\udcff" is how Python
# shows a byte that is not UTF-8 in argv)
JUNK = ["", " ", ",", ",,", "1,,2", "1.5", "-0.5", "1e3", "0x10", "nan", "inf", "-inf", "--",
        "-", "+", "[", "]", "()", "[1,2", "1 2", "a-b", "a b", "é", "Ω", "名", "😀", "\t",
        "\n", "1\n2", "\udcff", "\udc80abc", "\x00", "x" * 5000, "9" * 5000, "1," * 300,
        "((((((((((", "N" * 300, "__import__('os')", "None", "True", "-1", "-9", "0", "%s",
        "{}", "\\", "'", '"', "=", "a=b=c", ":", "1:2"]

_rng = random.Random(20261125)


def _pick(xs):
    return xs[_rng.randrange(len(xs))]


SMALL = [str(i) for i in range(10)]
INT_TEXTS = SMALL + [str(v) for v in EDGE_INTS]
TOKENS = SMALL * 6 + INT_TEXTS + JUNK + ["N", "H", "x"]


def _list_text(n_max: int, tokens=TOKENS) -> str:
    body = ",".join(_pick(tokens) for _ in range(_rng.randrange(n_max + 1)))
    return _pick(["", "", "", "[", "(", " "]) + body + _pick(["", "", "", "]", ")", " "])


SHAPES = [",".join(map(str, s)) for s in [
    (), (1,), (3, 8), (1, 3, 8), (1, 3, 8, 8), (2, 4, 6, 6), (1, 4, 5, 5, 5), (4, 3, 3, 3),
    (4, 1, 3, 3), (8, 3, 3), (4, 3, 3, 3, 3), (1, 2, 3, 4, 5, 6, 7), (0, 3, 8, 8), (1, 0, 8, 8),
    (1, 3, 0, 8), (4, 3, 0, 3), (0, 0, 0, 0), (1, 3, 8, 8, 8, 8), (64, 3, 7, 7),
    (1, 3, 224, 224), (1, 1, 1, 1, 1, 1, 1, 1)]]
SHAPE_POOL = (SHAPES * 4
              + [",".join(str(_rng.randrange(10)) for _ in range(_rng.randrange(9)))
                 for _ in range(150)]
              + [_list_text(9) for _ in range(150)] + JUNK)
INT_LIST_POOL = (["1", "2", "0", "1,1", "2,2", "1,2,3", "", "[1]", "(2, 2)", "3,1", "1,1,1"] * 4
                 + [_list_text(4) for _ in range(200)] + JUNK)
INT_POOL = INT_TEXTS * 3 + JUNK + ["G", "g", "x"]

PRESETS = ["native", "cpu", "cpu-mt", "cpu-avx512bf16", "cuda-h100", "cuda-cudnn8", "mobile",
           "arm", "seed"]
PRESET_POOL = PRESETS * 4 + ["CPU", "cuda", "gpu", "h100", "cpu,seed"] + JUNK
BACKENDS = ["CudaDepthwise2d", "CudaDepthwise3d", "Cudnn", "CudnnTranspose", "Empty", "Miopen",
            "MiopenDepthwise", "MiopenTranspose", "Mkldnn", "MkldnnTranspose", "MkldnnEmpty",
            "NnpackSpatial", "Overrideable", "Slow2d", "Slow3d", "SlowDilated2d",
            "SlowDilated3d"]
BACKEND_POOL = BACKENDS * 2 + ["mkldnn", "SLOW2D", "cudnn", "slow_2d", "Mkldnn "] + JUNK
ENV_FIELDS = ["num_threads", "mkldnn_enabled", "nnpack_enabled", "cudnn_enabled",
              "cudnn_version", "cuda_capability", "torch_version", "mobile", "grad_enabled",
              "mkldnn_bf16_supported", "deterministic", "benchmark", "bogus_field", ""]
_SET_VALUES = ["true", "false", "on", "off", "0", "1", "none", "8.0", "9.0", "2.13.0", "a.b",
               "1.2.3.4", "90100", "maybe", "-1", "-2", "99999999999999999999", ""] + JUNK
SET_POOL = ([f"{_pick(ENV_FIELDS)}={_pick(_SET_VALUES)}" for _ in range(300)]
            + ["num_threads", "=1", "num_threads==2"] + JUNK)
DTYPES = ["float32", "float", "float64", "double", "float16", "half", "bfloat16", "complex64",
          "complex128", "int8", "int64", "torch.float32", "FLOAT32", "bool"]
DTYPE_POOL = DTYPES * 3 + JUNK

_WHERE_NAMES = ["N", "C", "H", "W", "L", "D", "G", "Cg", "Cout", "kH", "strideH", "padH",
                "dilH", "opadH", "Q", "dtype", "device", "num_threads", "mkldnn_enabled",
                "transposed", "dims", "layout", "input_mf"]
_WHERE_OPS = ["<=", "<", "==", "!=", ">=", ">", "=", " in ", "+", "//", "%", " and ", " or "]
_WHERE_VALUES = INT_TEXTS + ["H", "float16", "cuda", "True", "channels_last", "(1)", "mkldnn",
                             "torch.float16", "1.5", "'a'", "[1]"]
_WHERE_ATOMS = (
    [f"{_pick(_WHERE_NAMES)}{_pick(_WHERE_OPS)}{_pick(_WHERE_VALUES)}" for _ in range(300)]
    + ["not mkldnn_enabled", "transposed", "not transposed", "dtype==float16", "dtype==int8",
       "device==cuda", "N<=8, N>=9", "H==W", "1==0", "N%0==1", "N//0==1", "N*N*N*N*N*N==H",
       "num_threads==0", "num_threads==-1", "num_threads==x", "dims==4", "dims==1, D==2",
       "(" * 300 + "N" + ")" * 300, "+".join(["N"] * 3000) + "==1", "+".join(["N"] * 80) + "==1",
       "N<=" + "9" * 5000, "lambda: 1", "N if H else W", "import os", "N[0]==1", "N.x==1",
       "f(N)==1", "N==1.5", "N=='a'", "N<=2**64", "N<=H<=W<=8", "not N", "N", "-N<=0",
       "dtype==float16, dtype==float32", "device!=cpu, device!=cuda, device!=mps, device!=meta"]
    + JUNK)
WHERE_POOL = [", ".join(_pick(_WHERE_ATOMS) for _ in range(1 + _rng.randrange(3)))
              for _ in range(400)]

_AXIS_SPECS = ([f"{_pick(INT_TEXTS)}:{_pick(INT_TEXTS)}" for _ in range(60)]
               + [f"{_rng.randrange(17)}:{_rng.randrange(17)}:{_rng.randrange(-2, 5)}"
                  for _ in range(60)]
               + [",".join(_pick(INT_TEXTS) for _ in range(_rng.randrange(5)))
                  for _ in range(40)]
               + ["1:8", "1:16", "1:4", "1:100000000", "0:" + str(INT64_MAX),
                  str(-(2**63)) + ":0", "1:2:3:4", "1:", ":", "a:b", "1:8:0", "8:1"] + JUNK)
AXIS_POOL = ([f"{_pick(['H', 'N', 'W', 'C', 'G', 's', 'Q', '', '1', 'H '])}={_pick(_AXIS_SPECS)}"
              for _ in range(300)] + ["H=1:8", "N=1:4", "W=1:8"] * 10 + JUNK)


def _text(max_size: int) -> st.SearchStrategy[str]:
    alphabet = st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(
        ["\udcff", "\udc80", "\x00", ",", ":", "=", "-", "1", "N", "[", "]"])
    return st.text(alphabet, max_size=max_size)


_POOLS: dict[tuple, st.SearchStrategy[str]] = {}


def pool(values: list[str], max_size: int = 20) -> st.SearchStrategy[str]:
    """The slow suite's draw of an argument's text: one of ``values`` (half the time), free
    text or an integer. (Built once per pool: building a strategy costs more than drawing from
    it.)"""
    key = (tuple(values), max_size)
    if key not in _POOLS:
        base = st.sampled_from(values)
        _POOLS[key] = st.one_of(base, base, _text(max_size), st.integers().map(str))
    return _POOLS[key]


# --------------------------------------------------------------------------------------
# Choosers: the builders of argument vectors ask a chooser for each choice (``pick``: one
# of the given values; ``value``: an argument's text, where the slow suite adds free text).
# The default run uses a seeded random.Random per example (run_seeded: the examples are fixed,
# and Hypothesis's engine, which cost more than most examples themselves, is not involved);
# the slow suite lets Hypothesis draw every choice (and free text on top of the pools), so it
# shrinks failures to small inputs.


class SeedChooser:
    def __init__(self, seed: int | str) -> None:
        self.rng = random.Random(seed)

    def pick(self, values):
        return values[self.rng.randrange(len(values))]

    value = pick

    def num(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def coin(self) -> bool:
        return self.rng.random() < 0.5


_INTS: dict[tuple[int, int], st.SearchStrategy[int]] = {}


class DrawChooser:
    def __init__(self, draw) -> None:
        self.draw = draw

    def pick(self, values):
        """A structural choice: always one of ``values``."""
        return self.draw(st.sampled_from(values))

    def value(self, values):
        """An argument's text: one of ``values``, or free text and integers."""
        return self.draw(pool(values))

    def num(self, lo: int, hi: int) -> int:
        if (lo, hi) not in _INTS:
            _INTS[(lo, hi)] = st.integers(lo, hi)
        return self.draw(_INTS[(lo, hi)])

    def coin(self) -> bool:
        return self.num(0, 1) == 1


def drawn(builder) -> st.SearchStrategy:
    """The slow suite's strategy of ``builder(chooser)``: Hypothesis draws every choice."""
    @st.composite
    def draw_all(draw):
        return builder(DrawChooser(draw))
    return draw_all()


DEFAULT_EXAMPLES = 1000


def run_seeded(name: str, builder, check, n: int = DEFAULT_EXAMPLES, examples=()) -> int:
    """The default run: ``check`` each of the explicit ``examples`` (found failures, kept as
    regression cases), then ``builder(SeedChooser(f"{name}/{i}"))`` for i < ``n``: the same
    examples in every run. A failure names its seed (rebuild it with
    ``builder(SeedChooser(seed))``). Returns how many examples were checked."""
    for value in examples:
        check(value)
    for i in range(n):
        seed = f"{name}/{i}"
        value = builder(SeedChooser(seed))
        try:
            check(value)
        except Exception as e:
            raise AssertionError(f"fuzz example {seed!r} failed: {value!r:.3000}") from e
    return len(examples) + n
