"""The module layer: ``nn.Conv*``, ``nn.ConvTranspose*`` and their lazy variants over specs.

:func:`check_module_args` mirrors a module's constructor (``_ConvNd.__init__`` and friends): the
same ``ValueError`` messages, in the same order, the ``torch.empty`` of the weight and bias, and
the normalised attributes (``kernel_size`` tuple, ``_reversed_padding_repeated_twice``, ...),
as a :class:`ModuleSpec`. Arguments may be symbolic (symbol names, SymPy or Z3 integers); the
undecided checks are kept in the spec and become error cases of :func:`module_output`.

:func:`module_output` mirrors ``module(input)`` / ``module(input, output_size=...)``: the lazy
modules' parameter inference, ``padding_mode`` (``F.pad`` before ``F.conv*``), ConvTranspose's
``_output_padding`` (with its ``ValueError``), then the functional layer
(:mod:`symconv.functional`). It takes an ``nn`` module instance (its parameters are read as
TensorSpecs; nothing runs) or a :class:`ModuleSpec`.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch

from . import domain as D
from . import functional as F
from .env import Environment
from .errors import Checker, ConvError, ConvValueError, StopSymbolic, fmt_int, fmt_sizes
from .spec import TensorSpec, _parse_dtype, as_spec

__all__ = ["ModuleSpec", "check_module_args", "module_output", "MODULE_CLASSES"]

# name -> (spatial dims, transposed, lazy)
MODULE_CLASSES = {
    "Conv1d": (1, False, False), "Conv2d": (2, False, False), "Conv3d": (3, False, False),
    "ConvTranspose1d": (1, True, False), "ConvTranspose2d": (2, True, False),
    "ConvTranspose3d": (3, True, False),
    "LazyConv1d": (1, False, True), "LazyConv2d": (2, False, True), "LazyConv3d": (3, False, True),
    "LazyConvTranspose1d": (1, True, True), "LazyConvTranspose2d": (2, True, True),
    "LazyConvTranspose3d": (3, True, True),
}


@dataclasses.dataclass(frozen=True)
class ModuleSpec:
    """A convolution module without data: what its constructor leaves behind.

    ``checks`` are the constructor checks that symbolic arguments leave undecided (torch raises
    where one fails); for lazy modules ``in_channels`` is 0 and ``weight`` is ``None`` until an
    input is seen.
    """

    cls_name: str  # the module's class name (as torch prints it)
    kind: str  # the nn class it behaves as, e.g. "Conv2d" or "LazyConvTranspose1d"
    in_channels: Any
    out_channels: Any
    kernel_size: tuple
    stride: tuple
    padding: Any  # tuple or 'same' / 'valid'
    dilation: tuple
    transposed: bool
    output_padding: tuple
    groups: Any
    bias: bool
    padding_mode: str
    reversed_padding_repeated_twice: tuple
    weight: TensorSpec | None
    bias_spec: TensorSpec | None
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    checks: tuple = ()
    stopped: bool = False  # a symbolic constructor check fails unconditionally
    ctor: tuple | None = None  # (cls, args, kwargs) as given to check_module_args

    @property
    def n(self) -> int:
        return MODULE_CLASSES[self.kind][0]

    @property
    def lazy(self) -> bool:
        return MODULE_CLASSES[self.kind][2]

    @property
    def valid(self) -> Any:
        """The condition under which the constructor does not raise."""
        return D.and_(*[c.cond for c in self.checks])


def _kind_of(cls: Any) -> tuple[str, str]:
    """(class name, nn kind) for an nn class, an instance's class, or a name."""
    if isinstance(cls, str):
        if cls not in MODULE_CLASSES:
            raise ValueError(f"unknown module class {cls!r}; expected one of "
                             + ", ".join(MODULE_CLASSES))
        return cls, cls
    if not isinstance(cls, type):
        cls = type(cls)
    for klass in cls.__mro__:
        if klass.__module__.startswith("torch.nn") and klass.__name__ in MODULE_CLASSES:
            return cls.__name__, klass.__name__
    raise TypeError(f"{cls.__name__} is not a torch.nn convolution module")


def _ntuple(x: Any, n: int) -> tuple:
    """``torch.nn.modules.utils._ntuple``: iterables are kept, scalars repeated."""
    if isinstance(x, (list, tuple, torch.Size, str)):
        return tuple(x)
    return tuple([x] * n)


def _value(x: Any, name: str) -> Any:
    if isinstance(x, str):
        return D.sym(x)
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int) or D.is_symbolic(x):
        return x
    if hasattr(x, "__index__"):
        return int(x.__index__())
    if D.is_concrete(x):
        return int(x)
    raise TypeError(f"{name} must be an int or a symbol, got {type(x).__name__}")


def _values(xs: tuple, name: str) -> tuple:
    return tuple(_value(v, name) for v in xs)


_SIGNATURES = {
    False: ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
            "groups", "bias", "padding_mode", "device", "dtype"],
    True: ["in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding",
           "groups", "bias", "dilation", "padding_mode", "device", "dtype"],
}
_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True,
             "padding_mode": "zeros", "output_padding": 0, "device": None, "dtype": None}


def _bind(kind: str, args: tuple, kwargs: dict) -> dict:
    _n, transposed, lazy = MODULE_CLASSES[kind]
    names = list(_SIGNATURES[transposed])
    if lazy:
        names = names[1:]  # no in_channels
    params = [inspect.Parameter(nm, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=_DEFAULTS.get(nm, inspect.Parameter.empty))
              for nm in names]
    sig = inspect.Signature(params)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{kind}.__init__(): {e}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def check_module_args(cls: Any, *args: Any, **kwargs: Any) -> ModuleSpec:
    """Mirror ``cls(*args, **kwargs)`` for a convolution module class (or its name).

    Returns the :class:`ModuleSpec`, or raises torch's error (``ValueError`` as
    :class:`~symconv.errors.ConvValueError`, ``RuntimeError`` as
    :class:`~symconv.errors.ConvError`); symbolic arguments keep undecided checks in
    ``ModuleSpec.checks``.
    """
    check = Checker()
    ctor = (cls, args, kwargs)
    try:
        return dataclasses.replace(_construct(cls, args, kwargs, check), ctor=ctor)
    except StopSymbolic:
        cls_name, kind = _kind_of(cls)
        return ModuleSpec(cls_name, kind, None, None, (), (), (), (), MODULE_CLASSES[kind][1], (),
                          None, False, "zeros", (), None, None, checks=tuple(check.checks),
                          stopped=True, ctor=ctor)


def _construct(cls: Any, args: Any, kwargs: Any, check: Checker) -> ModuleSpec:
    cls_name, kind = _kind_of(cls)
    n, transposed, lazy = MODULE_CLASSES[kind]
    a = _bind(kind, args, kwargs)
    dtype = a["dtype"] if a["dtype"] is not None else torch.get_default_dtype()
    if isinstance(dtype, str):
        dtype = _parse_dtype(dtype)
    device = a["device"] if a["device"] is not None else "cpu"
    try:  # torch's parsing of the device (no device is touched: cuda works on any build)
        device = torch.device(device).type
    except RuntimeError as e:  # 'bogus', or an index with no accelerator: torch's error
        raise ConvError(str(e).splitlines()[0]) from None
    padding_mode = a["padding_mode"]
    in_channels = 0 if lazy else _value(a["in_channels"], "in_channels")
    out_channels_arg = _value(a["out_channels"], "out_channels")
    out_channels = 0 if lazy else out_channels_arg
    has_bias = False if lazy else bool(a["bias"])
    kernel_size = _values(_ntuple(a["kernel_size"], n), "kernel_size")
    stride = _values(_ntuple(a["stride"], n), "stride")
    dilation = _values(_ntuple(a["dilation"], n), "dilation")
    padding: Any  # a tuple, or 'same' / 'valid'
    if transposed:
        padding = _values(_ntuple(a["padding"], n), "padding") \
            if not isinstance(a["padding"], str) else _ntuple(a["padding"], n)
        output_padding = _values(_ntuple(a["output_padding"], n), "output_padding")
    else:
        padding = a["padding"] if isinstance(a["padding"], str) else \
            _values(_ntuple(a["padding"], n), "padding")
        output_padding = _values(_ntuple(0, n), "output_padding")
    groups = _value(a["groups"], "groups")

    if transposed and padding_mode != "zeros":
        check(False, lambda: f'Only "zeros" padding mode is supported for {cls_name}',
              name="transpose_padding_mode", error=ConvValueError)
    # _ConvNd.__init__
    check(D.gt(groups, 0), lambda: "groups must be a positive integer", name="groups_positive",
          error=ConvValueError)
    check(D.eq(D.floormod(in_channels, groups), 0),
          lambda: "in_channels must be divisible by groups", name="in_channels_divisible",
          error=ConvValueError)
    check(D.eq(D.floormod(out_channels, groups), 0),
          lambda: "out_channels must be divisible by groups", name="out_channels_divisible",
          error=ConvValueError)
    valid_padding_strings = {"same", "valid"}
    if isinstance(padding, str):
        if padding not in valid_padding_strings:
            msg = (f"Invalid padding string {padding!r}, should be one of "
                   f"{valid_padding_strings}")
            check(False, lambda: msg, name="padding_string", error=ConvValueError)
        if padding == "same":
            check(D.all_(D.eq(s, 1) for s in stride),
                  lambda: "padding='same' is not supported for strided convolutions",
                  name="same_strided", error=ConvValueError)
    valid_padding_modes = _torch_padding_modes()
    if padding_mode not in valid_padding_modes:
        msg = (f"padding_mode must be one of {valid_padding_modes}, but got "
               f"padding_mode='{padding_mode}'")
        check(False, lambda: msg, name="padding_mode", error=ConvValueError)
    rev: tuple
    if isinstance(padding, str):
        pads: list[Any] = [0, 0] * len(kernel_size)
        if padding == "same":
            for d, k, i in zip(dilation, kernel_size, range(len(kernel_size) - 1, -1, -1)):
                total = d * (k - 1)
                left = D.floordiv(total, 2)
                pads[2 * i] = left
                pads[2 * i + 1] = total - left
        rev = tuple(pads)
    else:
        rev = tuple(x for x in reversed(padding) for _ in range(2))
    weight = bias_spec = None
    if not lazy:
        if transposed:
            wshape = (in_channels, D.floordiv(out_channels, groups)) + kernel_size
        else:
            wshape = (out_channels, D.floordiv(in_channels, groups)) + kernel_size
        F._negative_dim_check(check, wshape)
        weight = _param_spec(wshape, dtype, device)
        if has_bias:
            F._negative_dim_check(check, (out_channels,))
            bias_spec = _param_spec((out_channels,), dtype, device)
    else:
        out_channels = out_channels_arg
        has_bias = bool(a["bias"])
    return ModuleSpec(cls_name, kind, in_channels, out_channels, kernel_size, stride, padding,
                      dilation, transposed, output_padding, groups, has_bias, padding_mode, rev,
                      weight, bias_spec, dtype, device, tuple(check.checks))


def _torch_padding_modes() -> set:
    """``{"zeros", "reflect", "replicate", "circular"}`` built as torch builds it: a set display
    of constants is a frozenset constant of torch's .pyc (its order fixed when that file was
    compiled) copied into a new set, and the message prints the set in that order."""
    want = frozenset(("zeros", "reflect", "replicate", "circular"))
    init = getattr(torch.nn.modules.conv._ConvNd.__init__, "__code__", None)
    for c in getattr(init, "co_consts", ()):
        if isinstance(c, frozenset) and c == want:
            out: set = set()
            out.update(c)
            return out
    return set(want)  # pragma: no cover - torch without the constant


def _param_spec(shape: Any, dtype: Any, device: Any) -> TensorSpec | None:
    if any(isinstance(s, int) and s < 0 for s in shape):
        return None
    return TensorSpec(tuple(shape), dtype=dtype, device=device, requires_grad=True)


def _from_instance(m: Any) -> ModuleSpec:
    # ``m`` is an nn.Conv*/ConvTranspose*/LazyConv* instance; its attributes are read as such
    # (typed as nn.Module, they would all be ``Tensor | Module``).
    cls_name, kind = _kind_of(m)
    _n, _transposed, lazy = MODULE_CLASSES[kind]
    from torch.nn.parameter import UninitializedParameter
    uninit = isinstance(m.weight, UninitializedParameter)
    if lazy and uninit:
        weight = None
        has_bias = m.bias is not None
        bias_spec = None
        dtype, device = m.weight.dtype, m.weight.device.type
    else:
        kind = kind.replace("Lazy", "")
        weight = TensorSpec.from_tensor(m.weight)
        bias_spec = TensorSpec.from_tensor(m.bias) if m.bias is not None else None
        has_bias = m.bias is not None
        dtype, device = m.weight.dtype, m.weight.device.type
    padding = m.padding if isinstance(m.padding, str) else tuple(m.padding)
    return ModuleSpec(cls_name, kind, m.in_channels, m.out_channels, tuple(m.kernel_size),
                      tuple(m.stride), padding, tuple(m.dilation), bool(m.transposed),
                      tuple(m.output_padding), m.groups, has_bias, m.padding_mode,
                      tuple(m._reversed_padding_repeated_twice), weight, bias_spec, dtype, device)


def _torch_size(xs: Any) -> str:
    return f"torch.Size({fmt_sizes(xs)})"


def _seq_repr(xs: Any, like: Any) -> str:
    if isinstance(like, torch.Size):
        return _torch_size(xs)
    body = ", ".join(fmt_int(x) for x in xs)
    if isinstance(like, tuple):
        return f"({body},)" if len(xs) == 1 else f"({body})"
    return f"[{body}]"


def _output_padding(run: Any, spec: ModuleSpec, x: TensorSpec, output_size: Any) -> list:
    """``_ConvTransposeNd._output_padding`` (with its ValueErrors)."""
    if output_size is None:
        return list(spec.output_padding)
    n = spec.n
    has_batch_dim = x.ndim == n + 2
    num_non_spatial = 2 if has_batch_dim else 1
    like = output_size
    if not isinstance(output_size, (list, tuple, torch.Size)):
        # what torch's len(output_size) raises
        raise TypeError(f"object of type '{type(output_size).__name__}' has no len()")
    sizes = [_value(v, "output_size") for v in output_size]
    if len(sizes) == num_non_spatial + n:
        sizes = sizes[num_non_spatial:]
    if len(sizes) != n:
        run.fail(f"ConvTranspose{n}D: for {x.ndim}D input, output_size must have {n} or "
                 f"{num_non_spatial + n} elements (got {len(sizes)})", name="output_size_len",
                 error=ConvValueError)
    min_sizes, max_sizes = [], []
    for d in range(n):
        idx = d + num_non_spatial
        if idx >= x.ndim:
            run.fail(f"Dimension out of range (expected to be in range of [{-x.ndim}, "
                     f"{x.ndim - 1}], but got {idx})", name="output_size_dim", error=IndexError)
        dim_size = ((x.size(idx) - 1) * spec.stride[d] - 2 * spec.padding[d]
                    + spec.dilation[d] * (spec.kernel_size[d] - 1) + 1)
        min_sizes.append(dim_size)
        max_sizes.append(dim_size + spec.stride[d] - 1)
    ok = D.all_(D.and_(D.ge(s, lo), D.le(s, hi)) for s, lo, hi in zip(sizes, min_sizes, max_sizes))
    run.check(ok, lambda: f"requested an output size of {_seq_repr(sizes, like)}, but valid sizes "
                          f"range from {_seq_repr(min_sizes, [])} to {_seq_repr(max_sizes, [])} "
                          f"(for an input of {_torch_size(x.shape[2:])})",
              name="output_size_range", error=ConvValueError)
    return [s - lo for s, lo in zip(sizes, min_sizes)]


def module_output(module: Any, *input_specs: Any, output_size: Any = None,
                  env: Environment | None = None) -> Any:
    """The output of ``module(input)`` (``module(input, output_size=...)`` for ConvTranspose).

    ``module`` is a convolution module instance (``nn.Conv2d(...)``, ``nn.LazyConvTranspose3d``,
    ...) or a :class:`ModuleSpec` from :func:`check_module_args`. Returns the output
    :class:`~symconv.spec.TensorSpec` or raises torch's error; symbolic sizes give a
    :class:`symconv.functional.SymbolicOutput`.
    """
    spec = module if isinstance(module, ModuleSpec) else _from_instance(module)
    if len(input_specs) != 1:
        raise TypeError(f"forward() takes 2 positional arguments but {len(input_specs) + 1} "
                        "were given")
    n, transposed, lazy = MODULE_CLASSES[spec.kind]
    if output_size is not None and not transposed:
        raise TypeError("forward() got an unexpected keyword argument 'output_size'")
    run = F._Run(env)
    run.check.checks.extend(spec.checks)

    def replay(values: Any) -> Any:
        m = module
        if isinstance(module, ModuleSpec) and module.ctor is not None:
            cls, args, kwargs = module.ctor
            m = check_module_args(cls, *F.substitute(list(args), values),
                                  **F.substitute(dict(kwargs), values))
        return module_output(m, *F.substitute(list(input_specs), values),
                             output_size=F.substitute(output_size, values), env=env)

    if spec.stopped:
        return F._with_replay(F._stopped_output(run), replay)
    x = as_spec(input_specs[0], "input")
    if x is None:
        raise TypeError("module_output(): the input must be a tensor or a TensorSpec")
    run.note(x, spec.weight, spec.bias_spec)

    def body() -> Any:
        s = spec
        if lazy and s.weight is None:
            s = _infer_parameters(run, s, x)
        weight, bias = s.weight, s.bias_spec
        # a module that constructed has a weight; a lazy one has just inferred it
        assert weight is not None, "module without a weight after parameter inference"
        rg = F._requires_grad(run, x, weight, bias)
        if not transposed:
            if s.padding_mode != "zeros":
                xp = F._pad(run, x, list(s.reversed_padding_repeated_twice), s.padding_mode,
                            None)
                return F._conv_body(run, n, xp, weight, bias, list(s.stride), [0] * n,
                                    list(s.dilation), s.groups, rg)
            return F._conv_body(run, n, x, weight, bias, list(s.stride), s.padding,
                                list(s.dilation), s.groups, rg)
        if s.padding_mode != "zeros":
            run.fail(f"Only `zeros` padding mode is supported for ConvTranspose{n}d",
                     name="transpose_forward_padding_mode", error=ConvValueError)
        if not isinstance(s.padding, tuple):
            run.fail("self.padding must be a tuple", name="padding_tuple", error=AssertionError)
        op = _output_padding(run, s, x, output_size)
        return F._conv_transpose_body(run, n, x, weight, bias, list(s.stride), list(s.padding),
                                      op, s.groups, list(s.dilation), rg)

    return F._with_replay(F._finish(run, lambda: F._lift(body, run)), replay)


def _infer_parameters(run: Any, s: ModuleSpec, x: TensorSpec) -> ModuleSpec:
    """``_LazyConvXdMixin.initialize_parameters``: in_channels from the input, then the
    parameters are materialized (``torch.empty``)."""
    n = s.n
    no_batch, batch = n + 1, n + 2
    if x.ndim not in (no_batch, batch):
        run.fail(f"Expected {no_batch}D (unbatched) or {batch}D (batched) input to {s.cls_name}, "
                 f"but got input of size: {_torch_size(x.shape)}", name="lazy_input_dim")
    in_channels = x.shape[1] if x.ndim == batch else x.shape[0]
    run.check(D.eq(D.floormod(in_channels, s.groups), 0),
              lambda: "in_channels must be divisible by groups", name="lazy_in_channels",
              error=ConvValueError)
    if s.transposed:
        wshape = (in_channels, D.floordiv(s.out_channels, s.groups)) + s.kernel_size
    else:
        wshape = (s.out_channels, D.floordiv(in_channels, s.groups)) + s.kernel_size
    F._negative_dim_check(run.check, wshape)
    weight = TensorSpec(wshape, dtype=s.dtype, device=s.device, requires_grad=True)
    bias = None
    if s.bias:
        F._negative_dim_check(run.check, (s.out_channels,))
        bias = TensorSpec((s.out_channels,), dtype=s.dtype, device=s.device, requires_grad=True)
    return dataclasses.replace(s, in_channels=in_channels, weight=weight, bias_spec=bias)
