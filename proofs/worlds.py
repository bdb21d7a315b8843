"""Worlds: one enumerated choice of every categorical fact, with symbolic integers inside.

Backend selection reads categorical facts (environment, device, dtype, layout, memory format,
transposed, need_backward, bias) and integers (sizes and parameters). Dispatch invariants
enumerate the categorical facts -- one :class:`World` per combination -- and keep every integer
a Z3 symbol. A world holds what symconv computes for it: ``symconv.api.prepare`` (the checks
and the 1-D view), the validity condition, and the ordered rule table as guards and
first-match cases (``symconv.rules``). Worlds are built lazily and cached per run.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, overload
from collections.abc import Iterable, Iterator, Sequence

import torch
import z3

from symconv import api, rules
from symconv import domain as D
from symconv.env import PRESETS, Environment
from symconv.spec import MKLDNN_LAYOUT, TensorSpec

from .core import ConvSymbols

__all__ = ["PROFILES", "ENV_NAMES", "PRESET_NAMES", "WorldKey", "World", "WorldCache", "keys",
           "DTYPES", "profile", "describe_env"]

# Environments: symconv's presets, plus proof-only profiles for versions no preset covers.
PROFILES: dict[str, tuple[str, Environment]] = dict(PRESETS)
PROFILES["seed-cuda"] = (
    "the seed's rules (torch 2.4) on a CUDA build with cuDNN 9.1 on an A100 (sm_80)",
    Environment(torch_version="2.4.0", cuda_available=True, cudnn_version=90100,
                cuda_capability=(8, 0), num_threads=16))
PRESET_NAMES = tuple(PRESETS)  # the environments every dispatch invariant runs in by default
ENV_NAMES = tuple(PROFILES)  # what --env accepts (with 'native')

DTYPES = ("float32", "float64", "float16", "bfloat16")
_DT = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
       "bfloat16": torch.bfloat16}
_MF = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last,
       "channels_last_3d": torch.channels_last_3d}


def profile(name: str) -> Environment:
    if name == "native":
        return Environment.from_torch()
    return PROFILES[name][1]


def describe_env(name: str) -> str:
    return "this process's torch" if name == "native" else PROFILES[name][0]


@dataclasses.dataclass(frozen=True)
class WorldKey:
    env: str
    dims: int
    device: str = "cpu"
    dtype: str = "float32"
    layout: str = "strided"  # or "mkldnn"
    transposed: bool = False
    need_backward: bool = False
    memory_format: str = "contiguous"  # the input's; the weight is contiguous
    bias: str = "none"  # "none" | "tensor" (a bias TensorSpec [B]) | "sizes" (bias_sizes=[B])
    # "unbatched": the input is F.conv*d's unsqueeze(0) of an unbatched [C, x...] tensor laid
    # out in ``memory_format`` (N is then 1)
    variant: str = ""

    def __str__(self) -> str:
        parts = [f"{self.env}/{self.dims}d", self.device, self.dtype]
        if self.variant:
            parts.append(self.variant)
        if self.layout != "strided":
            parts.append(self.layout)
        if self.memory_format != "contiguous":
            parts.append(self.memory_format)
        if self.transposed:
            parts.append("transposed")
        if self.need_backward:
            parts.append("need_backward")
        if self.bias != "none":
            parts.append(f"bias={self.bias}")
        return " ".join(parts)


class CachedSpec(TensorSpec):
    """A TensorSpec that remembers its strides and memory-format answers: they are pure
    functions of its frozen fields, and symconv's predicates ask them many times over."""

    def _memo(self, key, fn):
        cache = self.__dict__.get("_memo_")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_memo_", cache)
        if key not in cache:
            cache[key] = fn()
        return cache[key]

    def stride(self) -> tuple:
        return self._memo("stride", super().stride)

    def suggest_memory_format(self, exact_match: bool = False):
        return self._memo(("suggest", exact_match),
                          lambda: super(CachedSpec, self).suggest_memory_format(exact_match))

    def is_contiguous(self, memory_format=torch.contiguous_format):
        return self._memo(("contiguous", memory_format),
                          lambda: super(CachedSpec, self).is_contiguous(memory_format))

    def numel(self):
        return self._memo("numel", super().numel)


def unbatched_strides(shape: Sequence[Any], channels_last: bool) -> tuple | None:
    """Strides of an unbatched [C, x...] tensor: contiguous (None), or channels-last (C
    fastest, then the spatial dimensions from the last one outwards)."""
    if not channels_last:
        return None
    strides = [1] * len(shape)
    acc = shape[0]
    for i in range(len(shape) - 1, 0, -1):
        strides[i] = acc
        acc = acc * shape[i]
    return tuple(strides)


@overload
def cached(t: TensorSpec) -> TensorSpec: ...
@overload
def cached(t: None) -> None: ...
def cached(t: TensorSpec | None) -> TensorSpec | None:
    if t is None or isinstance(t, CachedSpec):
        return t
    return CachedSpec(**{f.name: getattr(t, f.name) for f in dataclasses.fields(TensorSpec)})


class _Poison:
    """Stands for need_backward while the conditions that do not read it are evaluated once
    for both values: any condition that looks at it raises, and is evaluated per value."""

    def __bool__(self):
        raise _ReadsNeedBackward

    __index__ = __int__ = __bool__

    def __eq__(self, other):
        raise _ReadsNeedBackward

    __hash__ = object.__hash__


class _ReadsNeedBackward(Exception):
    pass


class _Base:
    """Everything of a world but need_backward: the prepared call and a memo of the rule
    conditions that do not read need_backward."""

    def __init__(self, key: WorldKey) -> None:
        self.key = key
        self.env = profile(key.env)
        self.sym = ConvSymbols(key.dims)
        self.B = z3.Int("B")
        s = self.sym
        dt = _DT[key.dtype]
        layout = MKLDNN_LAYOUT if key.layout == "mkldnn" else torch.strided
        if key.variant == "unbatched":
            from .model import batchify
            ushape = (s.C, *s.x)
            u = TensorSpec(ushape, dtype=dt, device=key.device,
                           strides=unbatched_strides(ushape, key.memory_format != "contiguous"))
            self.input = cached(batchify(u))
        else:
            self.input = CachedSpec(s.input_shape, dtype=dt, device=key.device, layout=layout,
                                    memory_format=_MF[key.memory_format])
        self.weight = CachedSpec(s.weight_shape, dtype=dt, device=key.device)
        bias = CachedSpec((self.B,), dtype=dt, device=key.device) if key.bias == "tensor" \
            else None
        bias_sizes = (self.B,) if key.bias == "sizes" else None
        self.prepared = api.prepare(self.input, self.weight, bias, list(s.s), list(s.p),
                                    list(s.d), key.transposed, list(s.op), s.G, env=self.env,
                                    need_backward=False, bias_sizes=bias_sizes)
        self.valid = self.prepared.checker.condition()
        ctx = self.prepared.ctx
        self.ctx = dataclasses.replace(ctx, input=cached(ctx.input), weight=cached(ctx.weight),
                                       bias=cached(ctx.bias))
        poison: Any = _Poison()  # stands in for the bool on purpose (see _Poison)
        self.poisoned = dataclasses.replace(self.ctx, need_backward=poison)
        self.memo: dict[int, Any] = {}


_NB = object()
_MISSING = object()
_IDS: dict[str, int] = {}


def truth(v: Any) -> bool | None:
    """``symconv.domain.truth`` with a fast path for Z3 terms (one id comparison instead of
    ``is_true``/``is_false``; Z3 terms are hash-consed, so ``true`` has one id)."""
    if type(v) is bool:
        return v
    if isinstance(v, z3.BoolRef):
        if not _IDS:
            _IDS["t"], _IDS["f"] = z3.BoolVal(True).get_id(), z3.BoolVal(False).get_id()
        i = v.get_id()
        if i == _IDS["t"]:
            return True
        if i == _IDS["f"]:
            return False
        return None
    return D.truth(v)


def conj(*xs: Any) -> Any:
    """Conjunction folding decided operands (as ``symconv.domain.and_``)."""
    return _fold(xs, False, z3.And)


def disj(*xs: Any) -> Any:
    """Disjunction folding decided operands (as ``symconv.domain.or_``)."""
    return _fold(xs, True, z3.Or)


def _fold(xs: tuple, absorbing: bool, op: Any) -> Any:
    rest = []
    for x in xs:
        t = truth(x)
        if t is absorbing:
            return absorbing
        if t is None:
            rest.append(x)
    if not rest:
        return not absorbing
    return rest[0] if len(rest) == 1 else op(*rest)


def neg(x: Any) -> Any:
    t = truth(x)
    return (not t) if t is not None else z3.Not(x)


class World:
    """symconv's view of one categorical choice, over symbolic sizes and parameters.

    Rule guards are evaluated lazily, one condition at a time and each condition once (the
    same ``Cond`` is shared by several rules), with ``Rule.guard``'s semantics: the conjunction
    of the conditions, folded where decided. ``case(rule)`` is the first-match region
    ``guard_r ∧ ⋀_{q before r} ¬guard_q`` -- what ``symconv.rules.cases`` computes (their
    agreement is the invariant dispatch_deterministic) -- built only as far as a question needs.
    """

    def __init__(self, key: WorldKey, base: _Base) -> None:
        self.key = key
        self.base = base
        self.env = base.env
        self.sym = base.sym
        self.B = base.B
        self.input, self.weight = base.input, base.weight
        self.prepared = base.prepared
        self.ctx = dataclasses.replace(base.ctx, need_backward=key.need_backward)
        self.valid = base.valid
        self.facts = self.sym.facts() + ([self.B >= 0] if key.bias != "none" else [])
        self.rules = rules.RULES
        self._memo: dict[int, Any] = {}
        self._guards: dict[int, Any] = {}
        self._remaining: list = [True]  # _remaining[i] = no rule before i fires
        self._cases: list[tuple[Any, rules.Rule]] | None = None

    @property
    def assumptions(self) -> list:
        return [self.valid, *self.facts]

    # ---- conditions and guards
    def cond(self, c) -> Any:
        k = id(c)
        v = self.base.memo.get(k, _MISSING)
        if v is _MISSING:
            try:
                v = c(self.base.poisoned)
            except _ReadsNeedBackward:
                v = _NB
            self.base.memo[k] = v
        if v is _NB:
            if k not in self._memo:
                self._memo[k] = c(self.ctx)
            v = self._memo[k]
        return v

    def guard_at(self, i: int) -> Any:
        g = self._guards.get(i, _MISSING)
        if g is _MISSING:
            g = self._guards[i] = self._guard(self.rules[i])
        return g

    def _guard(self, rule) -> Any:
        acc = []
        for c in rule.conds:
            v = self.cond(c)
            t = truth(v)
            if t is False:
                return False
            if t is None:
                acc.append(v)
        return conj(*acc)

    def remaining_at(self, i: int) -> Any:
        while len(self._remaining) <= i:
            j = len(self._remaining) - 1
            self._remaining.append(conj(self._remaining[j], neg(self.guard_at(j))))
        return self._remaining[i]

    def case_at(self, i: int) -> Any:
        g = self.guard_at(i)
        if truth(g) is False:
            return False
        return conj(self.remaining_at(i), g)

    @property
    def guards(self) -> list[tuple[Any, rules.Rule]]:
        return [(self.guard_at(i), r) for i, r in enumerate(self.rules)]

    @property
    def cases(self) -> list[tuple[Any, rules.Rule]]:
        """Every rule's first-match region that is not decided false."""
        if self._cases is None:
            out = []
            for i, r in enumerate(self.rules):
                c = self.case_at(i)
                if truth(c) is not False:
                    out.append((c, r))
                if truth(self.remaining_at(i + 1)) is False:
                    break
            self._cases = out
        return self._cases

    def selects(self, *outcomes: Any) -> Any:
        """The condition under which the table's outcome is one of ``outcomes``."""
        return disj(*[self.case_at(i) for i, r in enumerate(self.rules)
                      if _outcome_in(r.outcome, outcomes)])

    def rule_case(self, name: str) -> Any:
        return disj(*[self.case_at(i) for i, r in enumerate(self.rules) if r.name == name])

    def symbols(self) -> dict[str, Any]:
        out = self.sym.named()
        if self.key.bias != "none":
            out["B"] = self.B
        return out

    def case(self, values: dict[str, int], *, run: str = "select") -> dict:
        """A JSON-able torch call for proofs.replay at these values."""
        k = self.key
        a = self.sym.conv_args(values)
        t = {"shape": a["input"], "dtype": k.dtype, "device": k.device,
             "memory_format": k.memory_format, "mkldnn": k.layout == "mkldnn",
             "requires_grad": k.need_backward}
        w = {"shape": a["weight"], "dtype": k.dtype, "device": k.device}
        bias = None
        if k.bias == "tensor":
            bias = {"shape": [int(values.get("B", 0))], "dtype": k.dtype, "device": k.device}
        return {"run": run, "env": k.env, "input": t, "weight": w, "bias": bias,
                "bias_sizes": [int(values.get("B", 0))] if k.bias == "sizes" else None,
                "stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"],
                "transposed": k.transposed, "output_padding": a["output_padding"],
                "groups": a["groups"], "need_backward": k.need_backward}


def _outcome_in(outcome, outcomes) -> bool:
    return any(outcome is o or outcome == o for o in outcomes)


class WorldCache:
    def __init__(self) -> None:
        self._worlds: dict[WorldKey, World] = {}
        self._bases: dict[WorldKey, _Base] = {}

    def get(self, key: WorldKey) -> World:
        w = self._worlds.get(key)
        if w is None:
            bkey = dataclasses.replace(key, need_backward=False)
            base = self._bases.get(bkey)
            if base is None:
                base = self._bases[bkey] = _Base(bkey)
            w = self._worlds[key] = World(key, base)
        return w

    def __len__(self) -> int:
        return len(self._worlds)


def keys(envs: Iterable[str], dims: Iterable[int], *, devices: Sequence[str] | None = None,
         dtypes: Sequence[str] = DTYPES, layouts: Sequence[str] = ("strided", "mkldnn"),
         transposed: Sequence[bool] = (False, True), need_backward: Sequence[bool] = (False,),
         memory_formats: Sequence[str] = ("contiguous", "channels_last"),
         bias: Sequence[str] = ("none",), meta: bool = True) -> Iterator[WorldKey]:
    """Every meaningful combination of the categorical facts.

    ``devices`` defaults to the CPU, CUDA where the environment has it, and ``meta`` (one
    representative world, float32 contiguous, for devices no rule names). The MKLDNN layout is
    only for float32 CPU tensors of builds with MKLDNN; ``channels_last`` means channels_last for
    2-D and channels_last_3d for 3-D convolutions (a 1-D input is made contiguous by the view).
    """
    for env_name in envs:
        env = profile(env_name)
        devs = list(devices) if devices is not None else (
            ["cpu"] + (["cuda"] if env.cuda_available else []) + (["meta"] if meta else []))
        for d in dims:
            for dev, dt, lay, tr, nb, mf, b in itertools.product(
                    devs, dtypes, layouts, transposed, need_backward, memory_formats, bias):
                if dev == "cuda" and not env.cuda_available:
                    continue
                if dev == "meta" and (dt != "float32" or lay != "strided" or mf != "contiguous"):
                    continue
                if lay == "mkldnn" and (dev != "cpu" or dt != "float32" or mf != "contiguous"
                                        or not env.mkldnn_available):
                    continue
                if mf != "contiguous":
                    if d not in (2, 3) or lay != "strided":
                        continue
                    mf = "channels_last" if d == 2 else "channels_last_3d"
                yield WorldKey(env_name, d, dev, dt, lay, tr, nb, mf, b)
