"""Hypothesis strategies that draw convolution arguments reaching a chosen backend.

The draws are solver-guided, not filtered: a strategy picks a region of the backend (a
categorical leaf of :mod:`symconv.queries`), draws *target* values for every size and
parameter, and asks Z3 for the valid call of that region closest to the targets. Every example
satisfies the request, so nothing is rejected, and shrinking the targets shrinks the call.

Example (in another project's test suite)::

    from hypothesis import given, settings
    import torch
    from symconv.strategies import conv_args

    @settings(max_examples=50, deadline=None)
    @given(conv_args(backend="NnpackSpatial", env="native"))
    def test_my_kernel_on_nnpack_shapes(args):
        with args.flags_context():           # e.g. torch.backends.mkldnn.enabled = False
            x, w, b = args.tensors()
            out = torch.nn.functional.conv2d(x, w, b, args.stride, args.padding,
                                             args.dilation, args.groups)
            ...

``args.torch_backend()`` asks the installed torch which backend it picks (it is the requested
one whenever ``env`` is this process's); ``valid=False`` draws calls that torch rejects, with
the error expected in ``args.error``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import torch
import z3
from hypothesis import strategies as st

from .backends import ConvBackend
from .env import Environment
from .spec import MKLDNN_LAYOUT, TensorSpec

__all__ = ["conv_args", "ConvArgs", "backends"]

_LOCK = threading.Lock()
_CACHE: dict = {}

# where the drawn targets come from (the solver may move away from them)
_TARGET_RANGES = {"N": (0, 32), "C": (1, 16), "Cout": (1, 16), "Cg": (1, 8), "G": (1, 4),
                  "stride": (1, 3), "pad": (0, 3), "dil": (1, 3), "opad": (0, 2), "k": (1, 5),
                  "spatial": (1, 24)}
_BOUND = 4096  # regions that need no size above this are preferred (tensors stay buildable)


def _range(name: str) -> tuple:
    for prefix in ("stride", "opad", "pad", "dil"):
        if name.startswith(prefix):
            return _TARGET_RANGES[prefix]
    if name in _TARGET_RANGES:
        return _TARGET_RANGES[name]
    if name.startswith("k"):
        return _TARGET_RANGES["k"]
    return _TARGET_RANGES["spatial"]


@dataclasses.dataclass
class ConvArgs:
    """A drawn call: the arguments of ``torch.convolution`` plus the global flags to set."""

    input: TensorSpec
    weight: TensorSpec
    bias: TensorSpec | None
    stride: list
    padding: list
    dilation: list
    transposed: bool
    output_padding: list
    groups: int
    flags: dict
    env: Environment
    backend: ConvBackend | None      # what symconv says torch picks (None when invalid)
    error: str | None = None         # the check torch fails (valid=False)
    layout: str = "strided"

    def args(self) -> tuple:
        """``select_conv_backend`` / ``torch.convolution`` arguments, as TensorSpecs."""
        return (self.input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                self.transposed, self.output_padding, self.groups)

    def call_env(self) -> Environment:
        return self.env.replace(**self.flags)

    def tensors(self) -> tuple:
        """Real tensors (uninitialised; MKLDNN layout where drawn)."""
        out: list[torch.Tensor | None] = []
        for s in (self.input, self.weight, self.bias):
            if s is None:
                out.append(None)
                continue
            if s.layout == MKLDNN_LAYOUT:
                t = torch.zeros(s.shape, dtype=s.dtype).to_mkldnn()
            else:
                t = torch.empty(s.shape, dtype=s.dtype, device=s.device,
                                memory_format=s.memory_format)
            if s.requires_grad:
                t.requires_grad_(True)
            out.append(t)
        return tuple(out)

    def torch_args(self) -> tuple:
        x, w, b = self.tensors()
        return (x, w, b, self.stride, self.padding, self.dilation, self.transposed,
                self.output_padding, self.groups)

    def flags_context(self):
        """A context manager setting torch's global flags to this call's."""
        from .queries.witness import torch_flags
        return torch_flags(self.flags)

    def torch_backend(self) -> ConvBackend:
        """The backend the installed torch picks (raises what torch raises)."""
        with self.flags_context():
            raw = torch._C._select_conv_backend(*self.torch_args())
        return ConvBackend.from_torch(raw)

    def symconv_backend(self) -> ConvBackend:
        from .api import select_conv_backend
        return select_conv_backend(*self.args(), env=self.call_env())

    def __repr__(self) -> str:  # short, for hypothesis' falsifying-example output
        return (f"ConvArgs(input={list(self.input.shape)} {str(self.input.dtype)[6:]} "
                f"{self.input.device}, weight={list(self.weight.shape)}, "
                f"bias={None if self.bias is None else list(self.bias.shape)}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"transposed={self.transposed}, output_padding={self.output_padding}, "
                f"groups={self.groups}, flags={self.flags}, backend={self.backend}, "
                f"error={self.error})")


class _Plan:
    """The satisfiable regions of a request, computed once per process."""

    def __init__(self, backend, env, dims, where, vary_flags) -> None:
        from .queries.reach import Query, _targets, resolve_backend
        from .queries.space import Leaf
        from .queries import solve
        self.query = Query(env, dims, where, vary_flags=vary_flags)
        q = self.query
        self.backend = resolve_backend(backend) if backend is not None else None
        if self.backend is not None:
            targets = _targets(self.backend)
        else:
            targets = [i for i, r in enumerate(__import__("symconv.rules", fromlist=["RULES"])
                                              .RULES) if isinstance(r.outcome, ConvBackend)]
        leaves = [x for x in q.space.explore(targets, structures=q.structures)
                  if isinstance(x, Leaf)]
        small: list[Any] = []
        large: list[Any] = []
        for leaf in leaves:
            s = q.solver(leaf.structure)
            s.push()
            try:
                s.add(leaf.formula)
                v, _ = solve.verdict(s)
                if v != "sat":
                    continue
                s.push()
                s.add(*[z3.And(x >= -_BOUND, x <= _BOUND)
                        for x in leaf.structure.symbols.values()])
                v2, _ = solve.verdict(s)
                s.pop()
            finally:
                s.pop()
            (small if v2 == "sat" else large).append(leaf)
        self.leaves = small or large
        if not self.leaves:
            what = self.backend.name if self.backend else "any backend"
            raise ValueError(f"{what} is not reachable under {q.env_label}"
                             + (f" where {q.where.text}" if q.where else ""))


def _plan(backend, env, dims, where, vary_flags) -> _Plan:
    from .queries.reach import resolve_env
    env_obj, _ = resolve_env(env)
    key = (str(backend) if backend is not None else None, env_obj,
           tuple(dims) if isinstance(dims, (list, tuple)) else dims,
           tuple(where) if isinstance(where, (list, tuple)) else where, vary_flags)
    with _LOCK:
        p = _CACHE.get(key)
        if p is None:
            p = _Plan(backend, env_obj, dims, where, vary_flags)
            _CACHE[key] = p
    return p


def _draw_facts(draw, q, leaf) -> dict:
    """The leaf's facts, and random values for the facts it does not care about."""
    from .queries.space import _Evaluator, _valid_combo
    dims = leaf.structure.dims
    vars_ = q.space.vars(dims)
    full = q.space.full(dims, leaf.assign)
    free = [n for n in vars_ if n not in leaf.assign and len(vars_[n].values) > 1
            and vars_[n].kind == "tensor" and n not in ("layout", "device")]
    for n in free:
        choice = draw(st.sampled_from(vars_[n].values))
        trial = dict(full)
        trial[n] = choice
        if _valid_combo(_Evaluator(trial, q.env)):
            full = trial
    return full


def _build(q, leaf, full: dict, values: dict, backend, bias: bool, error=None) -> ConvArgs:
    from .queries.space import FLAG_VARS, SPATIAL
    st_ = leaf.structure
    sp = SPATIAL[st_.dims]
    v = values
    shape_in = (v["N"], v["C"]) + tuple(v[s] for s in sp)
    w0 = v["C"] if st_.transposed else v["Cout"]
    shape_w = (w0, v["Cg"]) + tuple(v["k" + s] for s in sp)
    dt = full["dtype"]
    inp = TensorSpec(shape_in, dtype=dt, device=full["device"],
                     requires_grad=full["requires_grad"], layout=full["layout"],
                     memory_format=full["input_mf"])
    wgt = TensorSpec(shape_w, dtype=dt, device=full["device"], memory_format=full["weight_mf"])
    b = None
    if bias:
        n = v["Cg"] * v["G"] if st_.transposed else v["Cout"]
        b = TensorSpec((n,), dtype=dt, device=full["device"])
    flags = {k: full[k] for k in FLAG_VARS}
    return ConvArgs(inp, wgt, b, [v["stride" + s] for s in sp], [v["pad" + s] for s in sp],
                    [v["dil" + s] for s in sp], st_.transposed, [v["opad" + s] for s in sp],
                    v["G"], flags, q.env, backend, error,
                    "mkldnn" if full["layout"] == MKLDNN_LAYOUT else "strided")


@st.composite
def conv_args(draw, backend: ConvBackend | str | None = None, *,
              env: Environment | str | None = None, dims: int | Sequence[int] | None = None,
              where: str | Sequence[str] | None = None, valid: bool = True,
              vary_flags: bool = True, bias: bool | None = None) -> ConvArgs:
    """Arguments of a convolution call that reach ``backend`` under ``env`` (an Environment,
    a preset name, or ``None`` for this process), with ``dims`` spatial dims and the
    ``where`` constraints of :func:`symconv.reach`. With ``backend=None`` any backend; with
    ``valid=False`` a call torch rejects (``backend`` must then be ``None``): ``error`` names
    the failing check. ``bias``: always, never, or drawn (``None``)."""
    from .queries import solve
    if not valid and backend is not None:
        raise ValueError("valid=False draws calls torch rejects; they reach no backend")
    plan = _plan(backend, env, dims, where, vary_flags)
    q = plan.query
    leaf = draw(st.sampled_from(plan.leaves))
    st_ = leaf.structure
    full = _draw_facts(draw, q, leaf)
    targets = {}
    for n in st_.symbols:
        lo, hi = _range(n)
        targets[n] = draw(st.integers(lo, hi), label=n)
    if "Cout" in st_.symbols and draw(st.booleans(), label="Cout multiple of G"):
        targets["Cout"] = targets["Cg"] * targets["G"]
    if not st_.transposed:
        targets["C"] = targets["Cg"] * targets["G"]
    use_bias = draw(st.booleans(), label="bias") if bias is None else bool(bias)
    # a fresh solver per draw: the same draws give the same call (hypothesis replays them)
    s = solve.new_solver()
    s.push()
    error = None
    try:
        if valid:
            s.add(st_.valid, q.where_formula(st_), leaf.formula)
        else:
            # a call that fails the i-th shape check (and passes the ones before it)
            checks = st_.checks
            i = draw(st.integers(0, len(checks) - 1), label="failing check")
            import symconv.domain as D
            nonneg = [st_.symbols[n] >= 0 for n in st_.sizes]
            s.add(*nonneg, *[D.to_z3(c.cond) for c in checks[:i]], z3.Not(D.to_z3(checks[i].cond)))
            if s.check() != z3.sat:
                # this check can't fail on its own here: take the first one that can
                for j, c in enumerate(checks):
                    s.pop()
                    s.push()
                    s.add(*nonneg, *[D.to_z3(x.cond) for x in checks[:j]],
                          z3.Not(D.to_z3(c.cond)))
                    if s.check() == z3.sat:
                        i = j
                        break
            error = checks[i].name
        values = solve.minimise(s, st_.symbols, targets=targets)
    finally:
        s.pop()
    if values is None:  # pragma: no cover - the leaf was checked satisfiable
        raise AssertionError("the solver lost a satisfiable region")
    out = _build(q, leaf, full, values, plan.backend if valid else None, use_bias and valid,
                 error)
    if valid and out.backend is None:
        out.backend = out.symconv_backend()
    return out


def backends(env: Environment | str | None = None) -> st.SearchStrategy:
    """The backends reachable under ``env`` (a strategy over :class:`ConvBackend`)."""
    from .queries import reach
    ok = [b for b in ConvBackend if reach(b, env=env, validate=False).reachable]
    return st.sampled_from(ok)
