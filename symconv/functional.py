"""The functional layer: ``F.conv*``, ``F.conv_transpose*`` and ``F.pad`` as meta functions.

Users call ``torch.nn.functional.conv2d``, not ``torch.convolution``. Between the two, torch adds:

* the Python argument parser, which broadcasts an int ``stride=2`` to ``[2, 2]`` (the length
  of the schema's ``SymInt[N]``) before ``aten::convolution`` sees it;
* ``conv1d/2d/3d``'s bias dtype check ("Input type (float) and bias type (double) should be
  the same"), before batchify (not in the string-padding overloads nor in ``conv_transpose*``);
* ``batchify``: an unbatched input gets ``unsqueeze(0)`` and the output ``squeeze(0)``;
* string padding: ``'valid'`` is padding 0; ``'same'`` is ``convolution_same`` (its own checks,
  ``pooling_same_mode_padding_lr`` and, for asymmetric padding, a warning and a
  ``constant_pad_nd`` of the input before the convolution);
* complex inputs: ``complex_convolution``'s type check (with torch's legacy type names), then
  three real convolutions on ``view_as_real`` slices; the output is complex;
* ``F.pad`` (for the modules' ``padding_mode``), mirrored here as :func:`pad`.

Everything else is the foundation: :func:`symconv.api.prepare` (``_convolution``'s checks, the
1-d view), the rule table (the backend), :func:`symconv.kernels.kernel_checks`,
:func:`symconv.shapes.calc_output_size` and ``determine_backend_memory_format`` (the output's
memory format, which is the format the CPU kernels produce).

Each function takes TensorSpecs (or tensors) and returns the output :class:`TensorSpec`
(shape, dtype, device, strides / memory format, ``requires_grad``), or raises torch's error
(:class:`~symconv.errors.ConvError` is a ``RuntimeError``; ``NotImplementedError``,
``ValueError`` and ``IndexError`` are raised as such) with torch's first line. Warnings torch
emits (the 'same' even-kernel warning) are emitted with :func:`warnings.warn`.

With symbolic sizes (symbol names, SymPy or Z3 integers) the answer is a
:class:`SymbolicOutput`: the output spec with symbolic sizes and strides, the memory format as
an ``MF_*`` code expression (an int when it is decided), and the ordered cases under which torch
raises which error.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings as _warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np
import torch

from . import api as _api
from . import domain as D
from .api import Case, _check_cases, prepare
from .env import Environment
from .errors import Checker, ConvError, ConvValueError, StopSymbolic, fmt_int, fmt_sizes
from .rules import (RULES, determine_backend_memory_format, mkldnn_conv_use_channels_last,
                    thnn_conv_use_channels_last)
from .shapes import pooling_same_mode_padding_lr
from .spec import (MF_CHANNELS_LAST, MF_CHANNELS_LAST_3D, MF_CONTIGUOUS, TensorSpec, as_spec,
                   channels_last_strides_2d, channels_last_strides_3d, contiguous_strides,
                   dtype_name, memory_format_from_code)

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "pad", "SymbolicOutput", "FUNCTIONS", "SAME_WARNING",
           "torch_type_string"]

SAME_WARNING = ("Using padding='same' with even kernel lengths and odd dilation may require a "
                "zero-padded copy of the input be created")

_RULES_BY_NAME = {r.name: r for r in RULES}

# ``Tensor::toString()`` after torch's Python error translation: the legacy tensor types get
# their ``torch.XTensor`` names, the others stay ``CPU<ScalarType>Type``.
_SCALAR_TYPE = {
    torch.float32: "Float", torch.float64: "Double", torch.float16: "Half",
    torch.bfloat16: "BFloat16", torch.complex32: "ComplexHalf", torch.complex64: "ComplexFloat",
    torch.complex128: "ComplexDouble", torch.int64: "Long", torch.int32: "Int",
    torch.int16: "Short", torch.int8: "Char", torch.uint8: "Byte", torch.bool: "Bool",
}
_LEGACY = {"Float", "Double", "Half", "Long", "Int", "Short", "Char", "Byte"}


def torch_type_string(t: TensorSpec) -> str:
    """What torch prints for ``tensor.toString()`` in a Python error message."""
    st = _SCALAR_TYPE.get(t.dtype, str(t.dtype).replace("torch.", ""))
    dev = {"cpu": "CPU", "cuda": "CUDA", "meta": "Meta", "mps": "MPS", "xpu": "XPU"}.get(
        t.device, t.device.upper())
    if t.is_sparse:
        dev = "Sparse" + dev
    if t.device == "cpu" and st in _LEGACY and t.layout == torch.strided:
        return f"torch.{st}Tensor"
    if t.device == "cuda" and st in _LEGACY and t.layout == torch.strided:
        return f"torch.cuda.{st}Tensor"
    return f"{dev}{st}Type"


# --------------------------------------------------------------------------------------
# Results


@dataclasses.dataclass
class SymbolicOutput:
    """A symbolic functional call: the output spec where torch succeeds, the errors elsewhere.

    ``spec`` has symbolic sizes and strides (``None`` when no case succeeds); ``memory_format``
    is the ``MF_*`` code of the output layout (``symconv.spec.MF_CONTIGUOUS`` = 0,
    ``MF_CHANNELS_LAST`` = 1, ``MF_CHANNELS_LAST_3D`` = 2), an int when decided, else a domain
    expression; for unbatched and 1-d outputs it is the code of the 4-d/5-d convolution output
    before the squeeze. ``cases`` cover the symbol space in torch's order (errors first);
    ``warnings`` are ``(condition, message)`` pairs.
    """

    spec: TensorSpec | None
    memory_format: Any
    valid: Any
    cases: list[Case]
    warnings: list[tuple[Any, str]]
    replay: Any = None  # values -> the concrete call's answer

    @property
    def shape(self) -> tuple | None:
        return None if self.spec is None else self.spec.shape

    def errors(self) -> list[Case]:
        return [c for c in self.cases if isinstance(c.outcome, BaseException)]

    def case_at(self, **values: int) -> Case:
        """The case whose condition holds at these symbol values."""
        for c in self.cases:
            if _api._holds(c.condition, values):
                return c
        raise AssertionError("no case holds: the cases are not exhaustive")  # pragma: no cover

    def outcome_at(self, **values: int):
        """The symbolic answer at these values: the case's TensorSpec with the values put in,
        or its exception (whose message still names the symbols)."""
        c = self.case_at(**values)
        if isinstance(c.outcome, BaseException):
            return c.outcome
        return _concretize(c.outcome, values)

    def at(self, **values: int) -> TensorSpec:
        """The call at concrete symbol values (replayed with the values put in): the output
        TensorSpec, or torch's error with concrete numbers in its message."""
        self.case_at(**values)
        return self.replay(values)

    def __str__(self) -> str:
        lines = []
        for c in self.cases:
            cond = "always" if D.truth(c.condition) is True else "if " + _show(c.condition)
            lines.append(f"{cond:60s} -> {_outcome_str(c.outcome)}")
        return "\n".join(lines)


def _show(cond: Any) -> str:
    try:
        return str(D.simplify(cond))
    except Exception:  # noqa: BLE001 - SymPy's simplify can fail on Piecewise relations
        return str(cond)


def _outcome_str(o: Any) -> str:
    if isinstance(o, BaseException):
        return f"{type(o).__name__}: {str(o).splitlines()[0]}"
    return str(o)


def _concretize(spec: TensorSpec, values: dict) -> TensorSpec:
    shape = tuple(_api._subs(s, values) for s in spec.shape)
    strides = None if spec.strides is None else \
        tuple(_api._subs(s, values) for s in spec.strides)
    return _present(spec.replace(shape=shape, strides=strides))


def substitute(x: Any, values: dict) -> Any:
    """Put concrete symbol values into a spec, a (nested) parameter list or a size."""
    if isinstance(x, TensorSpec):
        return dataclasses.replace(
            x, shape=tuple(_api._subs(v, values) for v in x.shape),
            strides=None if x.strides is None else
            tuple(_api._subs(v, values) for v in x.strides))
    if isinstance(x, torch.Size):
        return x
    if isinstance(x, (list, tuple)):
        return type(x)(substitute(v, values) for v in x)
    if isinstance(x, dict):
        return {k: substitute(v, values) for k, v in x.items()}
    if isinstance(x, str):
        return values.get(x, x)
    if isinstance(x, (bool, torch.dtype)) or x is None:
        return x
    return _api._subs(x, values)


def _with_replay(out, replay):
    if isinstance(out, SymbolicOutput):
        out.replay = replay
    return out


def _present(spec: TensorSpec) -> TensorSpec:
    """Drop explicit strides that are exactly a memory format's (concrete specs only)."""
    if spec.strides is None or not spec.is_concrete:
        return spec
    st = tuple(spec.strides)
    if st == tuple(contiguous_strides(spec.shape)):
        return spec.replace(strides=None, memory_format=torch.contiguous_format)
    if spec.ndim == 4 and st == tuple(channels_last_strides_2d(spec.shape)):
        return spec.replace(strides=None, memory_format=torch.channels_last)
    if spec.ndim == 5 and st == tuple(channels_last_strides_3d(spec.shape)):
        return spec.replace(strides=None, memory_format=torch.channels_last_3d)
    return spec


# --------------------------------------------------------------------------------------
# One call: ordered checks, warnings, and the final aten::convolution


class _Run:
    """The state of one front-end evaluation: the Checker (torch's order), the environment and
    the warnings (each with the condition under which torch emits it)."""

    def __init__(self, env: Environment | None, checker: Checker | None = None):
        self.env = Environment.from_torch() if env is None else env
        if not isinstance(self.env, Environment):
            raise TypeError(f"env must be a symconv.Environment, got {type(self.env).__name__}")
        self.check = checker if checker is not None else Checker()
        self.warnings: list[tuple[Any, str]] = []
        self.symbols: set = set()

    def fail(self, message: str, *, name: str, error: type = ConvError) -> NoReturn:
        """An unconditional error at this point (after the checks recorded so far): torch's
        error, or StopSymbolic where undecided checks precede it."""
        self.check(False, lambda: message, name=name, error=error)
        raise AssertionError("a check of False always raises")  # pragma: no cover

    def warn(self, cond: Any, message: str) -> None:
        t = D.truth(cond)
        if t is False:
            return
        if t is True and not self.check.symbolic:
            _warnings.warn(message, UserWarning, stacklevel=4)
        self.warnings.append((D.and_(self.check.condition(), cond), message))

    def note(self, *specs: TensorSpec | None) -> None:
        for s in specs:
            if s is not None:
                self.symbols |= s.symbols


def _lift(fn: Callable[[], Any], run: _Run):
    """Run a front stage; convert errors raised after undecided checks into a final case."""
    try:
        return fn()
    except StopSymbolic:
        raise
    except (ConvError, ConvValueError, NotImplementedError, IndexError, ValueError) as e:
        if run.check.symbolic and getattr(e, "check", None) is None:
            msg = str(e)
            run.check(False, lambda: msg, name="raised", error=type(e))
        raise


@dataclasses.dataclass
class _Post:
    """What happens to the aten::convolution output before the user sees it."""

    drops: list = dataclasses.field(default_factory=list)  # dims removed in order (squeeze)
    dtype: torch.dtype | None = None


def _strides_for(shape: Sequence[Any], code: Any) -> tuple:
    cont = contiguous_strides(shape)
    if len(shape) == 4:
        other, mf = channels_last_strides_2d(shape), MF_CHANNELS_LAST
    elif len(shape) == 5:
        other, mf = channels_last_strides_3d(shape), MF_CHANNELS_LAST_3D
    else:
        return tuple(cont)
    t = D.truth(D.eq(code, mf)) if not isinstance(code, int) else (code == mf)
    if t is True:
        return tuple(other)
    if t is False:
        return tuple(cont)
    sel = D.eq(code, mf)
    return tuple(D.ite(sel, a, b) for a, b in zip(other, cont))


def _output_spec(shape: Sequence[Any], layout: Any, viewed_1d: bool, post: _Post,
                 base: TensorSpec, requires_grad: bool) -> TensorSpec:
    """The user's output: ``shape`` is aten::convolution's output (after the 1-d view3d);
    ``layout`` the memory-format code of the kernel's (4-d for 1-d) output, or a function of
    that output's shape giving its strides; then ``post`` (squeeze, complex dtype)."""
    shape = list(shape)
    if isinstance(layout, int) and not viewed_1d and not post.drops:
        return TensorSpec(tuple(shape), dtype=post.dtype or base.dtype, device=base.device,
                          requires_grad=requires_grad,
                          memory_format=memory_format_from_code(layout))
    full = shape[:2] + [1] + shape[2:] if viewed_1d else shape  # view3d squeezes dim 2
    strides = list(layout(full) if callable(layout) else _strides_for(full, layout))
    if viewed_1d:
        del strides[2]
    for d in post.drops:
        del shape[d]
        del strides[d]
    spec = TensorSpec(tuple(shape), dtype=post.dtype or base.dtype, device=base.device,
                      requires_grad=requires_grad, strides=tuple(strides))
    return _present(spec)


def _dense_like(sizes: Sequence[Any], strides: Sequence[Any], *,
                infer: bool = False, decide: Callable[[Any], Any] | None = None) -> list | None:
    """Dense strides in the order of ``strides``: the insertion sort of TensorIterator's
    ``reorder_dimensions`` (``infer=False``: the output of an elementwise op on one tensor and a
    broadcast 0-dim operand) or of ``infer_dense_strides`` (``infer=True``: ``empty_like`` of a
    strided, non-dense tensor; sizes 0 and 1 count as 1). Ties go to the smaller size. A symbolic
    comparison is put to ``decide`` (which returns True, False or None); ``None`` when one stays
    undecided."""
    nd = len(sizes)
    perm = list(range(nd - 1, -1, -1))

    def decided(x):
        t = D.truth(x)
        if t is None and decide is not None:
            t = decide(x)
        if t is None:
            raise _Undecided
        return t

    def should_swap(d0, d1):
        s0, s1 = strides[d0], strides[d1]
        if decided(D.or_(D.eq(s0, 0), D.eq(s1, 0))):
            return 0
        if decided(D.lt(s0, s1)):
            return -1
        if decided(D.gt(s0, s1)):
            return 1
        return 1 if decided(D.gt(sizes[d0], sizes[d1])) else 0

    try:
        for i in range(1, nd):
            dim1 = i
            for dim0 in range(i - 1, -1, -1):
                c = should_swap(perm[dim0], perm[dim1])
                if c > 0:
                    perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
                    dim1 = dim0
                elif c < 0:
                    break
    except _Undecided:
        return None
    if not infer and perm == list(range(nd - 1, -1, -1)):
        return list(contiguous_strides(sizes))  # "inverted": a plain contiguous output
    out: list = [0] * nd
    nxt: Any = 1
    for d in perm:
        out[d] = nxt
        nxt = nxt * (D.max_(sizes[d], 1) if infer else sizes[d])
    return out


class _Undecided(Exception):
    pass


def _decider(run: _Run | None, cond: Any) -> Callable[[Any], Any] | None:
    """Decide a symbolic comparison where ``cond`` holds (Z3, bounded time)."""
    if run is None or D.truth(cond) is not None:
        return None
    from . import solver
    facts = _nonneg_facts(run)

    def decide(x):
        try:
            if solver.prove(x, cond, *facts, timeout_ms=1000).unsat:
                return True
            if solver.prove(D.not_(x), cond, *facts, timeout_ms=1000).unsat:
                return False
        except TypeError:  # pragma: no cover - an expression Z3 cannot take
            return None
        return None
    return decide


def _empty_layout(p, decide=None) -> Callable[[Sequence[Any]], list]:
    """The Empty backend's output strides (``_convolution``'s ``case ConvBackend::Empty``):
    ``(C == 0 ? input.view(-1) * w : input * w[0]).view(output_size)``. The product follows the
    input's layout; ``view`` of a 0-element tensor keeps the strides only for an unchanged shape,
    else gives contiguous ones."""
    inp = p.ctx.input
    like = _dense_like(inp.shape, inp.stride(), decide=decide)
    if like is None:  # undecided stride order: the input's suggested memory format
        like = list(_strides_for(inp.shape, inp.suggest_memory_format()))

    def layout(shape):
        cont = list(contiguous_strides(shape))
        if len(shape) != inp.ndim:
            return cont
        keep = D.and_(D.ne(inp.size(1), 0), *[D.eq(a, b) for a, b in zip(inp.shape, shape)])
        t = D.truth(keep)
        if t is True:
            return list(like)
        if t is False:
            return cont
        return [D.ite(keep, a, b) for a, b in zip(like, cont)]
    return layout


def _contiguous_as(t: TensorSpec, code: Any) -> TensorSpec:
    """``t.contiguous(memory_format)``: ``t`` itself where it is already contiguous in that
    format, else a copy with the format's strides."""
    if t.ndim not in (4, 5):
        return t if D.truth(t.is_contiguous()) is True else t.replace(
            strides=tuple(contiguous_strides(t.shape)))
    cl = torch.channels_last if t.ndim == 4 else torch.channels_last_3d
    mf = MF_CHANNELS_LAST if t.ndim == 4 else MF_CHANNELS_LAST_3D
    own = None if t.strides is not None else \
        (MF_CONTIGUOUS if t.memory_format == torch.contiguous_format else mf)

    def is_in(f):  # a spec without explicit strides is contiguous in its own format
        if own is not None and own == f:
            return True
        return t.is_contiguous(cl) if f == mf else t.is_contiguous()

    if isinstance(code, int):
        keep = is_in(code)
    else:
        keep = D.ite(D.eq(code, mf), is_in(mf), is_in(MF_CONTIGUOUS))
    tk = D.truth(keep)
    if tk is True:
        return t
    canon = _strides_for(t.shape, code)
    if tk is False:
        strides = tuple(canon)
    else:
        strides = tuple(D.ite(keep, a, c) for a, c in zip(t.stride(), canon))
    return t.replace(strides=strides)


def _narrow(t: TensorSpec, dim: int, length: Any) -> TensorSpec:
    shape = list(t.shape)
    shape[dim] = length
    return t.replace(shape=tuple(shape), strides=tuple(t.stride()))


def _subtensor(t: TensorSpec, dim: int, groups: Any) -> TensorSpec:
    """``subtensor(t, dim, groups, g)``: one group's slice, ``.contiguous`` in the whole
    tensor's suggested format."""
    part = _narrow(t, dim, D.cdiv(t.size(dim), groups))
    return _contiguous_as(part, t.suggest_memory_format())


def _thnn_code(inp: TensorSpec, w: TensorSpec) -> Any:
    return D.ite(thnn_conv_use_channels_last(inp, w), MF_CHANNELS_LAST, MF_CONTIGUOUS)


def _kernel_layout(p, backend, env, decide=None) -> Any:
    """The layout of the output the selected kernel writes (``_convolution``'s switch).

    The kernels decide their output format themselves, from the tensors ``_convolution`` hands
    them (``input.contiguous(backend_memory_format)``, ...): oneDNN with
    ``mkldnn_conv_use_channels_last``, the slow 2-d kernels with ``thnn_conv_use_channels_last``
    (per group for ``groups > 1``, the groups' outputs then ``at::cat``-ed: channels-last only if
    a group's output suggests it), the 3-d CPU kernels and NNPACK contiguously; the Empty path
    follows the input (:func:`_empty_layout`). Other backends (CUDA, MPS, XPU, mobile) write the
    backend memory format. Returns an ``MF_*`` code, or a function of the output shape giving
    its strides."""
    from .backends import ConvBackend as B
    ctx = p.ctx
    if backend == B.Empty:
        return _empty_layout(p, decide)
    bmf = determine_backend_memory_format(ctx.input, ctx.weight, backend, env)
    if not isinstance(bmf, int):
        # Symbolic: the backend memory format. The kernels' own decision differs from it only
        # for layouts that unit sizes make ambiguous; tracking the .contiguous() copies through
        # it symbolically multiplies the expression, so symconv does not (docs/functional.md).
        return bmf
    if backend in (B.Mkldnn, B.MkldnnTranspose):
        if ctx.input.is_mkldnn:
            return bmf
        inp, w = _contiguous_as(ctx.input, bmf), _contiguous_as(ctx.weight, bmf)
        cl = MF_CHANNELS_LAST_3D if ctx.weight.ndim == 5 else MF_CHANNELS_LAST
        return D.ite(mkldnn_conv_use_channels_last(inp, w), cl, MF_CONTIGUOUS)
    if backend in (B.Slow2d, B.SlowDilated2d, B.SlowTranspose2d):
        inp, w = _contiguous_as(ctx.input, bmf), _contiguous_as(ctx.weight, bmf)
        g = ctx.params.groups
        whole = _thnn_code(inp, w)
        if D.truth(D.eq(g, 1)) is True:
            return whole
        per = _thnn_code(_subtensor(inp, 1, g), _subtensor(w, 0, g))

        def layout(shape):
            part = list(shape)
            part[1] = D.cdiv(part[1], g)
            cat = TensorSpec(tuple(part), strides=_strides_for(part, per)).suggest_memory_format()
            return _strides_for(shape, D.ite(D.eq(g, 1), whole, cat))
        return layout
    if backend in (B.NnpackSpatial, B.Slow3d, B.SlowDilated3d, B.SlowTranspose3d):
        return MF_CONTIGUOUS
    return bmf


def _nonneg_facts(run: _Run) -> list:
    from . import solver
    return solver.nonneg(run.symbols)


def _prune(run: _Run, found: list[Case]) -> list[Case]:
    return _api.drop_unsat(found, _nonneg_facts(run))


def _stopped_output(run: _Run) -> SymbolicOutput:
    cases = _check_cases(run.check.checks)
    return SymbolicOutput(None, None, False, _prune(run, cases), run.warnings)


def _convolution(run: _Run, x: TensorSpec, w: TensorSpec, b: TensorSpec | None, stride, padding,
                 dilation, transposed: bool, output_padding, groups, post: _Post,
                 requires_grad: bool):
    """``at::convolution`` on the (front-processed) arguments, then ``post``."""
    try:
        p = prepare(x, w, b, stride, padding, dilation, transposed, output_padding, groups,
                    env=run.env, checker=run.check, entry="convolution")
    except StopSymbolic:
        return _stopped_output(run)
    except (ConvError, ConvValueError) as e:
        if run.check.symbolic and getattr(e, "check", None) is None:
            msg = str(e)
            try:
                run.check(False, lambda: msg, name="expand_param", error=type(e))
            except StopSymbolic:
                return _stopped_output(run)
        raise
    run.note(p.original_input, p.original_weight, p.ctx.bias)
    env = run.env
    if not _api._is_symbolic_call(p):
        outcome, shape = _api.concrete_output(p)
        return _output_spec([int(v) for v in shape], _kernel_layout(p, outcome, env),
                            p.viewed_1d,
                            post, x, requires_grad)
    ss = _api._symbolic_shape(p)
    cases: list[Case] = []
    valid_codes: list[tuple[Any, Any, TensorSpec]] = []  # (condition, MF_* code, output)
    for c in ss.cases:
        if isinstance(c.outcome, BaseException):
            cases.append(c)
            continue
        backend = _RULES_BY_NAME[c.rule].outcome
        layout = _resolve_code(run, _kernel_layout(p, backend, env, _decider(run, c.condition)),
                               c.condition)
        spec = _output_spec(tuple(c.outcome), layout, p.viewed_1d, post, x, requires_grad)
        code = layout if not callable(layout) else spec.suggest_memory_format()
        valid_codes.append((c.condition, code, spec))
        cases.append(Case(c.condition, spec, c.rule))
    if not valid_codes:
        return SymbolicOutput(None, None, False, cases, run.warnings)
    code = valid_codes[-1][1]
    strides = list(valid_codes[-1][2].stride())
    for cond, cd, sp in reversed(valid_codes[:-1]):
        if not (isinstance(cd, int) and isinstance(code, int) and cd == code):
            code = D.ite(cond, cd, code)
        strides = [a if _same(a, b) else D.ite(cond, a, b) for a, b in zip(sp.stride(), strides)]
    spec = valid_codes[-1][2].replace(strides=tuple(strides))
    return SymbolicOutput(_present(spec), code, ss.valid, cases, run.warnings)


def _same(a, b) -> bool:
    try:
        return D.truth(D.eq(a, b)) is True
    except TypeError:  # pragma: no cover - mixed domains
        return False


def _resolve_code(run: _Run, code: Any, cond: Any) -> Any:
    """A symbolic memory-format code that is constant where ``cond`` holds (for non-negative
    sizes) becomes that constant (Z3, bounded time; undecided codes stay symbolic)."""
    if callable(code) or isinstance(code, int) or not D.is_symbolic(code):
        return code
    from . import solver
    facts = _nonneg_facts(run)
    for c in (MF_CONTIGUOUS, MF_CHANNELS_LAST, MF_CHANNELS_LAST_3D):
        try:
            if solver.prove(D.eq(code, c), cond, *facts, timeout_ms=1000).unsat:
                return c
        except TypeError:  # pragma: no cover - an expression Z3 cannot take
            return code
    return code


def _finish(run: _Run, fn: Callable[[], Any]):
    """Run a whole call: front stages and the convolution; symbolic stops become a result."""
    try:
        return fn()
    except StopSymbolic:
        return _stopped_output(run)


# --------------------------------------------------------------------------------------
# Argument handling (the Python argument parser)


def _is_int_like(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or D.is_symbolic(v) or \
        isinstance(v, str) or (hasattr(v, "__index__") and not isinstance(v, bool))


def _int_list(x: Any, n: int, name: str) -> list:
    """``SymInt[n]``: a single int is repeated ``n`` times; a sequence is passed as it is."""
    if isinstance(x, (list, tuple, torch.Size)):
        return _api._param_list(list(x), name)
    if isinstance(x, bool) or not _is_int_like(x):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {type(x).__name__}")
    return _api._param_list(x, name) * n


def _groups(g: Any) -> Any:
    return _api._groups(g)


def _spec(x: Any, name: str) -> TensorSpec | None:
    return as_spec(x, name)


def _unsqueeze0(t: TensorSpec) -> TensorSpec:
    st = t.stride()
    new = (D.prod([t.shape[0], st[0]]) if t.ndim else 1,)
    return TensorSpec((1,) + tuple(t.shape), dtype=t.dtype, device=t.device,
                      requires_grad=t.requires_grad, layout=t.layout, strides=new + tuple(st))


def _batchify(run: _Run, x: TensorSpec, n: int, func: str) -> tuple[TensorSpec, bool]:
    no_batch, batch = n + 1, n + 2
    if x.ndim not in (no_batch, batch):
        run.fail(f"Expected {no_batch}D (unbatched) or {batch}D (batched) input to {func}, but got "
                 f"input of size: {fmt_sizes(x.shape)}", name="batchify")
    if x.ndim == batch:
        return x, True
    return _unsqueeze0(x), False


def _requires_grad(run: _Run, *ts: TensorSpec | None) -> bool:
    return run.env.grad_enabled and any(t is not None and t.requires_grad for t in ts)


def _check_same_type(run: _Run, x: TensorSpec, w: TensorSpec, b: TensorSpec | None) -> None:
    """``check_input_same_type_as_parameters`` (``complex_convolution``'s first step)."""
    def same(a, c):
        return a.dtype == c.dtype and a.device == c.device and a.layout == c.layout
    if not same(x, w):
        run.fail(f"Input type ({torch_type_string(x)}) and weight type ({torch_type_string(w)}) "
                 "should be the same", name="input_weight_type")
    if b is not None and not same(x, b):
        run.fail(f"Input type ({torch_type_string(x)}) and bias type ({torch_type_string(b)}) "
                 "should be the same", name="input_bias_type")


_REAL_OF = {torch.complex64: torch.float32, torch.complex128: torch.float64,
            torch.complex32: torch.float16}


def _real_view(t: TensorSpec | None) -> TensorSpec | None:
    """``view_as_real(t).select(-1, 0)``: the real parts, strides doubled (in real elements)."""
    if t is None:
        return None
    return TensorSpec(t.shape, dtype=_REAL_OF[t.dtype], device=t.device,
                      requires_grad=t.requires_grad, layout=t.layout,
                      strides=tuple(2 * s for s in t.stride()))


# --------------------------------------------------------------------------------------
# constant_pad_nd and convolution_same


def _constant_pad_nd(run: _Run, x: TensorSpec, pad: Sequence[Any]) -> TensorSpec:
    """``at::constant_pad_nd`` (its checks, its output size and memory format)."""
    if len(pad) % 2 != 0:
        run.fail(f"Length of pad must be even but instead it equals {len(pad)}", name="pad_even")
    l_inp = x.ndim
    l_pad = len(pad) // 2
    l_diff = l_inp - l_pad
    if l_inp < l_pad:
        run.fail("Length of pad should be no more than twice the number of dimensions of the "
                 f"input. Pad length is {len(pad)}while the input has {l_inp}dimensions.",
                 name="pad_length")
    sizes = list(x.shape)
    for i in range(l_diff, l_inp):
        pad_idx = 2 * (l_inp - i - 1)
        pl, pr = pad[pad_idx], pad[pad_idx + 1]
        cur = sizes[i]
        run.check(D.or_(D.ge(pl, 0), D.ge(cur + pl, 0)),
                  lambda: "narrow(): length must be non-negative.", name="narrow_length")
        cur = D.ite(D.lt(pl, 0), cur + pl, cur)
        run.check(D.or_(D.ge(pr, 0), D.ge(cur + pr, 0)),
                  lambda: "narrow(): length must be non-negative.", name="narrow_length")
    all_non_positive = D.all_(D.le(p, 0) for p in pad)
    if D.truth(all_non_positive) is True:
        # no positive pad: c_input (the input narrowed by the negative pads).clone()
        narrowed = list(sizes[:l_diff])
        for i in range(l_pad):
            pad_idx = len(pad) - (i + 1) * 2
            narrowed.append(sizes[l_diff + i] + pad[pad_idx] + pad[pad_idx + 1])
        return _clone(x.replace(shape=tuple(narrowed), strides=tuple(x.stride())))
    new_shape = sizes[:l_diff]
    for i in range(l_pad):
        pad_idx = len(pad) - (i + 1) * 2
        size = sizes[l_diff + i]
        pl, pr = pad[pad_idx], pad[pad_idx + 1]
        new_dim = size + pl + pr
        run.check(D.or_(all_non_positive, D.ge(new_dim, 0)),
                  lambda size=size, pl=pl, pr=pr, d=l_diff + i:
                  f"The input size {fmt_int(size)}, plus negative padding {fmt_int(pl)} and "
                  f"{fmt_int(pr)} resulted in a negative output size, which is invalid. Check "
                  f"dimension {d} of your input.", name="constant_pad_negative")
        new_shape.append(new_dim)
    code = x.suggest_memory_format()
    return _with_format(x, tuple(new_shape), code)


def _clone(x: TensorSpec) -> TensorSpec:
    """``Tensor.clone()`` (preserve_format): the strides of a non-overlapping and dense tensor,
    else ``empty_like``'s: dense strides in the input's dimension order (the suggested memory
    format where symbolic sizes leave that order undecided)."""
    dense = D.truth(x.is_contiguous())
    if dense is not True and x.ndim in (4, 5):
        dense = D.truth(x.is_contiguous(torch.channels_last if x.ndim == 4
                                        else torch.channels_last_3d))
    if dense is not True:
        dense = _non_overlapping_and_dense(x.shape, x.stride())
    if dense is True:
        return _present(TensorSpec(x.shape, dtype=x.dtype, device=x.device,
                                   requires_grad=x.requires_grad, layout=x.layout,
                                   strides=tuple(x.stride())))
    like = _dense_like(x.shape, x.stride(), infer=True) if dense is False else None
    if like is not None:  # empty_like of a strided tensor keeps its dimension order
        return _present(TensorSpec(x.shape, dtype=x.dtype, device=x.device,
                                   requires_grad=x.requires_grad, layout=x.layout,
                                   strides=tuple(like)))
    return _with_format(x, tuple(x.shape), x.suggest_memory_format())


def _non_overlapping_and_dense(sizes, strides) -> bool | None:
    """c10's ``compute_non_overlapping_and_dense`` for concrete sizes (``None`` if symbolic)."""
    if not all(isinstance(v, int) for v in list(sizes) + list(strides)):
        return None
    nd = len(sizes)
    if nd == 1:
        return sizes[0] < 2 or strides[0] == 1
    perm = list(range(nd))
    import functools

    def cmp(a, b):  # size < 2 dimensions go last, else by stride
        if sizes[a] < 2 and sizes[b] < 2:
            return 0
        if sizes[a] < 2:
            return 1
        if sizes[b] < 2:
            return -1
        return -1 if strides[a] < strides[b] else (1 if strides[a] > strides[b] else 0)
    perm.sort(key=functools.cmp_to_key(cmp))
    require = 1
    for d in perm:
        if sizes[d] < 2:
            return True
        if strides[d] != require:
            return False
        require *= sizes[d]
    return True


def _with_format(x: TensorSpec, shape: tuple, code: Any, dtype=None) -> TensorSpec:
    """A fresh tensor of ``shape`` in the memory format ``code`` (``at::empty(..., fmt)``)."""
    if (isinstance(code, int) and code == MF_CONTIGUOUS) or len(shape) not in (4, 5):
        strides = tuple(contiguous_strides(shape))
    else:
        strides = _strides_for(shape, code)
    return _present(TensorSpec(shape, dtype=dtype or x.dtype, device=x.device,
                               requires_grad=x.requires_grad, layout=x.layout, strides=strides))


def _convolution_mode(run: _Run, x: TensorSpec, w: TensorSpec, b: TensorSpec | None, stride,
                      padding: str, dilation, groups, post: _Post, requires_grad: bool):
    """``_convolution_mode``: 'same' -> ``convolution_same``; 'valid' -> padding 0."""
    if padding == "same":
        return _convolution_same(run, x, w, b, stride, dilation, groups, post, requires_grad)
    if padding == "valid":
        return _convolution(run, x, w, b, stride, [0], dilation, False, [0], groups, post,
                            requires_grad)
    run.fail(f"Invalid padding string: '{padding}'", name="padding_string")


def _convolution_same(run: _Run, x: TensorSpec, w: TensorSpec, b: TensorSpec | None, stride,
                      dilation, groups, post: _Post, requires_grad: bool):
    k = w.ndim
    check = run.check
    if not k > 2:
        run.fail("weight should have at least three dimensions", name="same_weight_dim")
    check(D.gt(groups, 0), lambda: "non-positive groups is not supported",
          name="same_groups_nonpos")
    dim = k - 2
    if k != x.ndim:
        run.fail(f"Expected {k}-dimensional input for {k}-dimensional weight{fmt_sizes(w.shape)}, "
                 f"but got {x.ndim}-dimensional input of size {fmt_sizes(x.shape)} instead",
                 name="same_input_dim")
    if not (len(stride) == dim or len(stride) == 1):
        run.fail(f"stride cannot broadcast to {dim} dimensions", name="same_stride_broadcast")
    if not (len(dilation) == dim or len(dilation) == 1):
        run.fail(f"dilation cannot broadcast to {dim} dimensions", name="same_dilation_broadcast")
    for s in stride:
        check(D.eq(s, 1), lambda: "padding='same' is not supported for strided convolutions",
              name="same_strided")
    padding_l, padding_r = [], []
    for i in range(dim):
        s = stride[0] if len(stride) == 1 else stride[i]
        d = dilation[0] if len(dilation) == 1 else dilation[i]
        left, right = pooling_same_mode_padding_lr(x.size(i + 2), w.size(i + 2), s, d)
        padding_l.append(left)
        padding_r.append(right)
    symmetric = D.all_(D.eq(a, c) for a, c in zip(padding_l, padding_r))
    if D.truth(symmetric) is True:
        return _convolution(run, x, w, b, stride, padding_l, dilation, False, [0] * dim, groups,
                            post, requires_grad)
    run.warn(D.not_(symmetric), SAME_WARNING)
    pad_nd: list[Any] = [0] * (2 * dim)
    for i in range(dim):
        pad_idx = 2 * (dim - 1 - i)
        pad_nd[pad_idx + 1] = padding_r[i] - padding_l[i]
    padded = _constant_pad_nd(run, x, pad_nd)
    if D.truth(symmetric) is None:
        # Undecided: the padded input equals the input where the padding is symmetric (all
        # pads are 0), so one spec covers both; its strides follow the input's where symmetric.
        pst = padded.stride()
        xst = x.stride()
        padded = TensorSpec(padded.shape, dtype=x.dtype, device=x.device,
                            requires_grad=x.requires_grad, layout=x.layout,
                            strides=tuple(D.ite(symmetric, a, c) for a, c in zip(xst, pst)))
    return _convolution(run, padded, w, b, stride, padding_l, dilation, False, [0] * dim, groups,
                        post, requires_grad)


# --------------------------------------------------------------------------------------
# The public functions


def _conv_body(run: _Run, n: int, inp: TensorSpec, wgt: TensorSpec, b: TensorSpec | None,
               stride_l: list, padding: Any, dilation_l: list, g: Any, rg: bool):
    """``conv{n}d_symint`` / ``conv{n}d_padding_symint`` after argument parsing."""
    name = f"conv{n}d"
    string_padding = isinstance(padding, str)  # any string selects the padding= overload
    if not string_padding and b is not None and b.dtype != inp.dtype:
        run.fail(f"Input type ({dtype_name(inp.dtype)}) and bias type ({dtype_name(b.dtype)}) "
                 "should be the same", name="bias_dtype")
    x, batched = _batchify(run, inp, n, name)
    post = _Post(drops=[] if batched else [0])
    xr, wr, br = _complex_split(run, x, wgt, b, post)
    if string_padding:
        return _convolution_mode(run, xr, wr, br, stride_l, padding, dilation_l, g, post, rg)
    return _convolution(run, xr, wr, br, stride_l, list(padding), dilation_l, False, [0] * n, g,
                        post, rg)


def _conv_transpose_body(run: _Run, n: int, inp: TensorSpec, wgt: TensorSpec,
                         b: TensorSpec | None, stride_l: list, padding_l: list,
                         output_padding_l: list, g: Any, dilation_l: list, rg: bool):
    """``conv_transpose{n}d_symint`` after argument parsing."""
    x, batched = _batchify(run, inp, n, f"conv_transpose{n}d")
    post = _Post(drops=[] if batched else [0])
    xr, wr, br = _complex_split(run, x, wgt, b, post)
    return _convolution(run, xr, wr, br, stride_l, padding_l, dilation_l, True, output_padding_l,
                        g, post, rg)


def _complex_split(run: _Run, x: TensorSpec, w: TensorSpec, b: TensorSpec | None, post: _Post):
    """``complex_convolution``: the type check, then the real parts (the first of the three
    real convolutions decides errors, backend and memory format); the output is complex."""
    if not x.dtype.is_complex:
        return x, w, b
    _check_same_type(run, x, w, b)
    post.dtype = x.dtype
    return _real_view(x), _real_view(w), _real_view(b)


def _specs(name: str, input, weight, bias):
    inp, wgt, b = _spec(input, "input"), _spec(weight, "weight"), _spec(bias, "bias")
    if inp is None or wgt is None:
        raise TypeError(f"{name}(): input and weight must be tensors or TensorSpecs")
    return inp, wgt, b


# --------------------------------------------------------------------------------------
# torch's Python argument parser: the TypeError (or ValueError) it raises for arguments of the
# wrong Python type, with its first line. Measured on torch 2.13 (tests/test_fuzz_api.py
# compares each case with torch): conv{1,2,3}d have two overloads (padding as ints or a
# string), so a mismatch is "received an invalid combination of arguments"; conv_transpose and
# pad have one, so the message names the argument (with its position when passed
# positionally). A sequence matches an int list when its first element is an int; the other
# elements are read afterwards ("failed to unpack the object at pos i"). Ints must fit in
# int64. symconv also takes symbols wherever an int goes (identifier strings, SymPy, Z3).

_INT64 = (-(2**63), 2**63 - 1)
_OVERFLOW = "Overflow when unpacking long long"


def _py_type_name(x: Any) -> str:
    if isinstance(x, (torch.Tensor, TensorSpec)):
        return "Tensor"
    t = type(x)
    if t.__module__ in ("builtins", "__main__") or t.__flags__ & (1 << 9):  # heap type
        return t.__name__
    return f"{t.__module__.split('.')[0]}.{t.__name__}"


def _int_like(x: Any, first: bool) -> bool:
    if isinstance(x, bool) or isinstance(x, np.bool_):
        return not first  # torch reads a bool as an int only after the first element
    if isinstance(x, (int, np.integer)):
        return True
    if isinstance(x, str):  # a symbol name (never torch's padding strings)
        return x.strip().isidentifier() and x.strip() not in ("same", "valid")
    if isinstance(x, torch.Tensor):
        return x.dim() == 0 and not x.dtype.is_floating_point and not x.dtype.is_complex
    return D.is_symbolic(x)


def _matches(kind: str, x: Any) -> bool:
    if kind == "Tensor":
        return isinstance(x, (torch.Tensor, TensorSpec))
    if kind == "Tensor?":
        return x is None or isinstance(x, (torch.Tensor, TensorSpec))
    if kind in ("int[n]", "int[]"):
        if isinstance(x, (list, tuple, torch.Size)):
            return len(x) == 0 or _int_like(x[0], True)
        return kind == "int[n]" and _int_like(x, True)
    if kind == "int":
        return _int_like(x, True)
    if kind == "str":
        return isinstance(x, str)
    if kind == "float?":
        return x is None or isinstance(x, (int, float, np.integer, np.floating, np.bool_)) \
            or D.is_symbolic(x)  # (a bool is a float to torch's parser, measured)
    raise AssertionError(kind)  # pragma: no cover


_TORCH_KIND = {"Tensor": "Tensor", "Tensor?": "Tensor", "int[n]": "tuple of ints",
               "int[]": "tuple of ints", "int": "int", "str": "str", "float?": "float"}


def _unpack(fn: str, name: str, kind: str, x: Any) -> None:
    """What torch's parser raises while reading an argument that matched."""
    if kind in ("int[n]", "int[]") and isinstance(x, (list, tuple, torch.Size)):
        for i, v in enumerate(x):
            if not _int_like(v, i == 0):
                raise TypeError(f"{fn}(): argument '{name}' failed to unpack the object at pos "
                                f"{i + 1} with error \"type must be tuple of ints,but got "
                                f"{_py_type_name(v)}\"")
            if isinstance(v, (int, np.integer)) and not _INT64[0] <= int(v) <= _INT64[1]:
                raise TypeError(f"{fn}(): argument '{name}' failed to unpack the object at pos "
                                f"{i + 1} with error \"{_OVERFLOW}")
    elif kind in ("int[n]", "int") and isinstance(x, (int, np.integer)) and \
            not _INT64[0] <= int(x) <= _INT64[1]:
        raise ValueError(_OVERFLOW)


class _Schema:
    """One torch function's Python signature (and, for conv*d, its second overload)."""

    def __init__(self, fn: str, params: list[tuple[str, str, str]], alt: dict | None = None,
                 positional: bool = False):
        self.fn, self.params, self.alt = fn, params, alt  # (name, kind, default text)
        self.positional = positional  # F.pad passes everything on positionally

    def _bind(self, args: tuple, kwargs: dict) -> list[tuple[str, str, Any, int | None]]:
        """Positional arguments in order, then keyword arguments in reverse call order (the
        order torch's message lists them in, measured)."""
        names = [p[0] for p in self.params]
        out: list[tuple[str, str, Any, int | None]] = [
            (names[i], self.params[i][1], a, i + 1) for i, a in enumerate(args) if i < len(names)]
        out += [(k, self.params[names.index(k)][1], v, None)
                for k, v in reversed(list(kwargs.items())) if k in names]
        return out

    def signature(self, alt: dict | None = None) -> str:
        parts = []
        for name, kind, default in self.params:
            kind = (alt or {}).get(name, (kind, default))
            k, d = kind if isinstance(kind, tuple) else (kind, default)
            parts.append(f"{_TORCH_KIND[k]} {name}" + (f" = {d}" if d else ""))
        return "(" + ", ".join(parts) + ")"

    def check(self, args: tuple, kwargs: dict) -> None:
        bound = self._bind(args, kwargs)
        names = [p[0] for p in self.params]
        in_order = sorted(bound, key=lambda b: names.index(b[0]))  # torch reads them so
        chosen: dict[str, tuple[str, str]]  # the overload's (kind, default) per parameter
        if self.alt is None:
            for name, kind, v, pos in in_order:
                if not _matches(kind, v):
                    if pos is None and self.positional:
                        pos = [p[0] for p in self.params].index(name) + 1
                    where = f" (position {pos})" if pos is not None else ""
                    what = _py_type_name(v)
                    if kind in ("int[n]", "int[]") and isinstance(v, (list, tuple)) and v \
                            and pos is not None:  # (measured: keywords say "not list")
                        raise TypeError(f"{self.fn}(): argument '{name}'{where} must be tuple "
                                        f"of ints, but found element of type "
                                        f"{_py_type_name(v[0])} at pos 0")
                    raise TypeError(f"{self.fn}(): argument '{name}'{where} must be "
                                    f"{_TORCH_KIND[kind]}, not {what}")
            chosen = {}
        else:
            def fits(alt):
                return all(_matches(alt.get(n, (k, ""))[0], v) for n, k, v, _ in bound)
            if fits({}):
                chosen = {}
            elif fits(self.alt):
                chosen = self.alt
            else:
                got = ", ".join(_py_type_name(v) if pos is not None else
                                f"{n}={_py_type_name(v)}" for n, _, v, pos in bound)
                raise TypeError(
                    f"{self.fn}() received an invalid combination of arguments - got ({got}), "
                    f"but expected one of:\n * {self.signature()}\n * {self.signature(self.alt)}"
                    "\n")
        # torch's binding reads the arguments as C++ call arguments, which GCC evaluates from
        # the last to the first: the last bad one is reported (measured)
        for name, kind, v, _ in reversed(in_order):
            _unpack(self.fn, name, chosen.get(name, (kind, ""))[0], v)


def _python_args(schema: _Schema):
    """Check a public function's arguments as torch's Python argument parser does."""
    def deco(impl):
        @functools.wraps(impl)
        def wrapper(*args, **kwargs):
            schema.check(args, {k: v for k, v in kwargs.items() if k != "env"})
            return impl(*args, **kwargs)
        return wrapper
    return deco


def _conv_schema(n: int) -> _Schema:
    return _Schema(f"conv{n}d", [("input", "Tensor", ""), ("weight", "Tensor", ""),
                                 ("bias", "Tensor?", "None"), ("stride", "int[n]", "1"),
                                 ("padding", "int[n]", "0"), ("dilation", "int[n]", "1"),
                                 ("groups", "int", "1")],
                   alt={"padding": ("str", '"valid"')})


def _conv_transpose_schema(n: int) -> _Schema:
    return _Schema(f"conv_transpose{n}d", [
        ("input", "Tensor", ""), ("weight", "Tensor", ""), ("bias", "Tensor?", "None"),
        ("stride", "int[n]", "1"), ("padding", "int[n]", "0"), ("output_padding", "int[n]", "0"),
        ("groups", "int", "1"), ("dilation", "int[n]", "1")])


_PAD_SCHEMA = _Schema("pad", [("input", "Tensor", ""), ("pad", "int[]", ""),
                              ("mode", "str", '"constant"'), ("value", "float?", "None")],
                      positional=True)


def _conv_nd(n: int, input, weight, bias, stride, padding, dilation, groups, *,
             env: Environment | None):
    run = _Run(env)
    inp, wgt, b = _specs(f"conv{n}d", input, weight, bias)
    run.note(inp, wgt, b)
    stride_l = _int_list(stride, n, "stride")
    dilation_l = _int_list(dilation, n, "dilation")
    padding_a = padding if isinstance(padding, str) else _int_list(padding, n, "padding")
    g = _groups(groups)
    rg = _requires_grad(run, inp, wgt, b)
    out = _finish(run, lambda: _lift(
        lambda: _conv_body(run, n, inp, wgt, b, stride_l, padding_a, dilation_l, g, rg), run))
    call = [input, weight, bias, stride, padding, dilation, groups]
    return _with_replay(out, lambda values: _conv_nd(n, *substitute(call, values), env=env))


def _conv_transpose_nd(n: int, input, weight, bias, stride, padding, output_padding, groups,
                       dilation, *, env: Environment | None):
    run = _Run(env)
    inp, wgt, b = _specs(f"conv_transpose{n}d", input, weight, bias)
    run.note(inp, wgt, b)
    stride_l = _int_list(stride, n, "stride")
    padding_l = _int_list(padding, n, "padding")
    output_padding_l = _int_list(output_padding, n, "output_padding")
    dilation_l = _int_list(dilation, n, "dilation")
    g = _groups(groups)
    rg = _requires_grad(run, inp, wgt, b)
    out = _finish(run, lambda: _lift(
        lambda: _conv_transpose_body(run, n, inp, wgt, b, stride_l, padding_l, output_padding_l,
                                     g, dilation_l, rg), run))
    call = [input, weight, bias, stride, padding, output_padding, groups, dilation]
    return _with_replay(out, lambda values: _conv_transpose_nd(n, *substitute(call, values),
                                                               env=env))


@_python_args(_conv_schema(1))
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           env: Environment | None = None):
    """``torch.nn.functional.conv1d`` over specs: the output TensorSpec (or torch's error)."""
    return _conv_nd(1, input, weight, bias, stride, padding, dilation, groups, env=env)


@_python_args(_conv_schema(2))
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           env: Environment | None = None):
    """``torch.nn.functional.conv2d`` over specs: the output TensorSpec (or torch's error)."""
    return _conv_nd(2, input, weight, bias, stride, padding, dilation, groups, env=env)


@_python_args(_conv_schema(3))
def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           env: Environment | None = None):
    """``torch.nn.functional.conv3d`` over specs: the output TensorSpec (or torch's error)."""
    return _conv_nd(3, input, weight, bias, stride, padding, dilation, groups, env=env)


@_python_args(_conv_transpose_schema(1))
def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, env: Environment | None = None):
    """``torch.nn.functional.conv_transpose1d`` over specs."""
    return _conv_transpose_nd(1, input, weight, bias, stride, padding, output_padding, groups,
                              dilation, env=env)


@_python_args(_conv_transpose_schema(2))
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, env: Environment | None = None):
    """``torch.nn.functional.conv_transpose2d`` over specs."""
    return _conv_transpose_nd(2, input, weight, bias, stride, padding, output_padding, groups,
                              dilation, env=env)


@_python_args(_conv_transpose_schema(3))
def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, env: Environment | None = None):
    """``torch.nn.functional.conv_transpose3d`` over specs."""
    return _conv_transpose_nd(3, input, weight, bias, stride, padding, output_padding, groups,
                              dilation, env=env)


FUNCTIONS = {"conv1d": conv1d, "conv2d": conv2d, "conv3d": conv3d,
             "conv_transpose1d": conv_transpose1d, "conv_transpose2d": conv_transpose2d,
             "conv_transpose3d": conv_transpose3d}


# --------------------------------------------------------------------------------------
# F.pad (PadNd.cpp, ReflectionPad.cpp, ReplicationPadding.cpp, Padding.h of torch 2.13)

_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _check_valid_input(run: _Run, x: TensorSpec, dim: int) -> None:
    """``padding::check_valid_input<dim>``: batch mode allows a zero batch only."""
    nd = x.ndim
    if nd == dim + 2:
        ok = D.all_(D.ne(x.size(d), 0) for d in range(1, nd))
    elif nd == dim + 1:
        ok = D.all_(D.ne(x.size(d), 0) for d in range(nd))
    else:
        ok = False
    run.check(ok, lambda: f"Expected {dim + 1}D or {dim + 2}D (batch mode) tensor with possibly 0 "
                          "batch size and other non-zero dimensions for input, but got: "
                          f"{fmt_sizes(x.shape)}", name="pad_valid_input")


def _negative_dim_check(check: Checker, shape: Sequence[Any]) -> None:
    """``at::empty`` / ``set_output`` with a negative size: torch names the first one."""
    for s in shape:
        check(D.ge(s, 0), lambda s=s: f"Trying to create tensor with negative dimension "
                                          f"{fmt_int(s)}: {fmt_sizes(shape)}",
                  name="negative_dimension")


def _resize_check(run: _Run, shape: Sequence[Any]) -> None:
    """``Tensor.resize_`` with a negative size: the element count overflows as uint64 unless
    some size is 0."""
    run.check(D.or_(D.any_(D.eq(s, 0) for s in shape), D.all_(D.ge(s, 0) for s in shape)),
              lambda: "numel: integer multiplication overflow", name="resize_numel")


def _pad_out(x: TensorSpec, shape: list, code: Any) -> TensorSpec:
    return _with_format(x, tuple(shape), code)


def _reflect_pad(run: _Run, x: TensorSpec, p: Sequence[Any], dim: int) -> TensorSpec:
    _check_valid_input(run, x, dim)
    batch = x.ndim == dim + 2
    off = 1 if batch else 0
    # spatial dims in order (d, h, w) for dim 3, (h, w) for 2, (w) for 1
    sp = [x.size(off + 1 + i) for i in range(dim)]
    # torch's pads: (left, right) for w, (top, bottom) for h, (front, back) for d
    pads = [(p[2 * j], p[2 * j + 1]) for j in range(dim)]  # j = 0: w, 1: h, 2: d
    arg = {0: 4, 1: 6, 2: 8}
    for j in range(dim):
        size = sp[dim - 1 - j]
        pl, pr = pads[j]
        run.check(D.and_(D.lt(pl, size), D.lt(pr, size)),
                  lambda pl=pl, pr=pr, j=j: f"Argument #{arg[j]}: Padding size should be less than "
                  "the corresponding input dimension, but got: padding ("
                  f"{fmt_int(pl)}, {fmt_int(pr)}) at dimension {off + dim - j} of input "
                  f"{fmt_sizes(x.shape)}", name="reflect_pad_size")
    outs = [sp[dim - 1 - j] + pads[j][0] + pads[j][1] for j in range(dim)]  # w, h, d
    out_shape = list(x.shape[:off + 1]) + [outs[dim - 1 - i] for i in range(dim)]
    _too_small_check(run, sp, outs, "reflect_too_small")
    if dim == 1:
        _negative_dim_check(run.check, out_shape)
        return _pad_out(x, out_shape, MF_CONTIGUOUS)
    if dim == 2:
        # output.resize_ with a negative size
        _resize_check(run, out_shape)
    else:
        _negative_dim_check(run.check, out_shape)
    return _pad_out(x, out_shape, x.suggest_memory_format() if batch else MF_CONTIGUOUS)


def _too_small_check(run: _Run, sp: list, outs: list, name: str, close: str = ")") -> None:
    """The reflect/replicate kernels' "input (...) is too small" check: some output size is at
    least 1. ``sp``: the input's sizes (d, h, w order), ``outs``: the output's (w, h, d order);
    ``close`` ends the 2-d message's input part (replicate's has a space before it: torch's
    text)."""
    f = fmt_int
    if len(sp) == 1:
        def message() -> str:
            return f"input (W: {f(sp[0])}) is too small. Calculated output W: {f(outs[0])}"
    elif len(sp) == 2:
        def message() -> str:
            return (f"input (H: {f(sp[0])}, W: {f(sp[1])}{close} is too small. Calculated output "
                    f"H: {f(outs[1])} W: {f(outs[0])}")
    else:
        def message() -> str:
            return (f"input (D: {f(sp[0])} H: {f(sp[1])}, W: {f(sp[2])}) is too small. "
                    f"Calculated output D: {f(outs[2])} H: {f(outs[1])} W: {f(outs[0])}")
    ok = [D.ge(o, 1) for o in outs]
    run.check(ok[0] if len(ok) == 1 else D.or_(*ok), message, name=name)


def _replicate_pad(run: _Run, x: TensorSpec, p: Sequence[Any], dim: int) -> TensorSpec:
    _check_valid_input(run, x, dim)
    batch = x.ndim == dim + 2
    off = 1 if batch else 0
    sp = [x.size(off + 1 + i) for i in range(dim)]
    outs = [sp[dim - 1 - j] + p[2 * j] + p[2 * j + 1] for j in range(dim)]  # w, h, d
    out_shape = list(x.shape[:off + 1]) + [outs[dim - 1 - i] for i in range(dim)]
    _too_small_check(run, sp, outs, "replicate_too_small", close=" )")
    _negative_dim_check(run.check, out_shape)
    return _pad_out(x, out_shape, MF_CONTIGUOUS if dim == 1 else x.suggest_memory_format())


def _circular_pad(run: _Run, x: TensorSpec, p: Sequence[Any]) -> TensorSpec:
    nd = x.ndim
    ndim_padded = len(p) // 2
    ndim_nonpadded = nd - ndim_padded
    if ndim_nonpadded not in (1, 2):
        run.fail("Invalid padding size, expected 1 or 2 non-padded dimensions, which would be "
                 f"equivalent to padding of length {(nd - 1) * 2} or {(nd - 2) * 2} respectively "
                 f"but got {len(p)}", name="circular_ndim")
    out_shape = list(x.shape[:ndim_nonpadded])
    for i in range(ndim_padded):
        pl = p[2 * (ndim_padded - i - 1)]
        pr = p[2 * (ndim_padded - i - 1) + 1]
        size = x.size(ndim_nonpadded + i)
        out = size + pl + pr
        out_shape.append(out)
        run.check(D.and_(D.le(pl, size), D.le(pr, size)),
                  lambda: "Padding value causes wrapping around more than once.",
                  name="circular_wrap")
        run.check(D.ge(out, 0), lambda: "Negative padding value is resulting in an empty dimension",
                  name="circular_negative")
    return _pad_out(x, out_shape, MF_CONTIGUOUS)


def _pad(run: _Run, x: TensorSpec, p: list, mode: str, value: Any) -> TensorSpec:
    """``at::pad``: mode dispatch, then the mode's kernel checks and output spec."""
    if mode not in _PAD_MODES:
        run.fail(f"Unrecognised padding mode {mode}", name="pad_mode", error=NotImplementedError)
    nd = x.ndim
    if len(p) % 2 != 0:
        run.fail("Padding length must be divisible by 2", name="pad_length_even")
    if len(p) > nd * 2:
        run.fail("Padding length should be less than or equal to two times the input dimension "
                 f"but got padding length {len(p)} and input of dimension {nd}",
                 name="pad_length")
    if mode == "constant":
        return _constant_pad_nd(run, x, p)
    if value is not None and value != 0:
        run.fail(f'Padding mode "{mode}" doesn\'t take in value argument', name="pad_value")
    for size, dims in ((2, (2, 3)), (4, (3, 4)), (6, (4, 5))):
        if len(p) == size and nd in dims:
            dim = size // 2
            if mode == "reflect":
                return _reflect_pad(run, x, p, dim)
            if mode == "replicate":
                return _replicate_pad(run, x, p, dim)
            return _circular_pad(run, x, p)
    run.fail(f"Padding size {len(p)} is not supported for {nd}D input tensor.",
             name="pad_unsupported", error=NotImplementedError)


@_python_args(_PAD_SCHEMA)
def pad(input, pad, mode: str = "constant", value: float | None = None, *,
        env: Environment | None = None):
    """``torch.nn.functional.pad`` over specs: the padded TensorSpec (or torch's error)."""
    run = _Run(env)
    x = _spec(input, "input")
    if x is None:
        raise TypeError("pad(): input must be a tensor or a TensorSpec")
    run.note(x)
    p = _api._param_list(list(pad) if isinstance(pad, (list, tuple, torch.Size)) else pad, "pad")
    try:
        out = _lift(lambda: _pad(run, x, p, mode, value), run)
        out = out.replace(requires_grad=_requires_grad(run, x))
        out = _symbolic_pad_result(run, out)
    except StopSymbolic:
        out = _stopped_output(run)
    call = [input, pad]
    return _with_replay(out, lambda values: globals()["pad"](
        *substitute(call, values), mode=mode, value=value, env=env))


def _symbolic_pad_result(run: _Run, out: TensorSpec):
    if not run.check.symbolic and out.is_concrete:
        return out
    cases = _check_cases(run.check.checks)
    valid = run.check.condition()
    cases.append(Case(valid, out, "pad"))
    return SymbolicOutput(out, out.suggest_memory_format(), valid, _prune(run, cases),
                          run.warnings)
