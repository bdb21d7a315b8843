"""Op rules as data: torch function -> rule.

A rule takes the run (:class:`~.engine.PathRun`) and the op's arguments as torch passes them to
``__torch_function__``; it returns the result (:class:`~.tensor.STensor`, sizes, ...) and records
its checks with ``run.check(passes, ErrorType, message)`` in torch's order. A check whose
condition is decided raises at once (torch's message with concrete numbers); a symbolic one is
recorded and the rule continues as if it passed. Messages are torch 2.13's first lines (measured
in tests/test_trace.py).

Convolutions use symconv's own front-end (:func:`symconv.api.prepare`: ``check_shape_forward``
in torch's order) plus the rule table's zero-numel error, with the output sizes written in floor
division (the checks make every numerator non-negative). With all sizes concrete (explain) a
convolution is answered by :mod:`symconv.functional` itself, kernel checks included.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import z3

from .. import domain as D
from .. import shapes as S
from .tensor import (STensor, SymInt, TraceError, UnsupportedOp, decided_check, is_sym, wrap,
                     zexpr, zsub)

__all__ = ["RULES", "lookup", "rule", "wrap_dim", "ConvCall"]

RULES: dict[Any, Callable] = {}
GETTERS: dict[str, Callable] = {}

_NS = {"F": F, "torch": torch, "Tensor": torch.Tensor, "nn": torch._C._nn}


def _resolve(name: str):
    ns, _, attr = name.partition(".")
    obj = _NS[ns]
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def rule(*names: str):
    """Register a rule under torch functions given as 'F.x', 'torch.x', 'Tensor.x', 'nn.x'."""
    def deco(fn):
        for n in names:
            if n.startswith("get."):
                GETTERS[n[4:]] = fn
                continue
            obj = _resolve(n)
            if obj is not None:
                RULES[obj] = fn
        return fn
    return deco


def lookup(func) -> Callable | None:
    r = RULES.get(func)
    if r is not None:
        return r
    if getattr(func, "__name__", "") == "__get__":
        return GETTERS.get(getattr(getattr(func, "__self__", None), "__name__", ""))
    return None


# --- helpers ---------------------------------------------------------------------------

def is_int(x) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool)) or isinstance(x, SymInt)


def fmt(x) -> str:
    return str(x)


def fmt_list(xs) -> str:
    return "[" + ", ".join(str(x) for x in xs) + "]"


def fmt_size(xs) -> str:
    return "torch.Size(" + fmt_list(xs) + ")"


def eq(a, b):
    if type(a) is int and type(b) is int:
        return a == b
    return wrap(zexpr(a) == zexpr(b))


def new(like: STensor, shape, dtype=None, contiguous=True) -> STensor:
    return STensor(tuple(shape), dtype=dtype or like.dtype, device=like.device,
                   requires_grad=like.requires_grad, contiguous=contiguous)


def shape_of(x):
    if isinstance(x, STensor):
        return tuple(x.shape)
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, (int, float, bool, complex)) or is_sym(x):
        return ()
    raise UnsupportedOp(f"unsupported operand {type(x).__name__}")


def dtype_of(x):
    if isinstance(x, torch.Tensor):
        return x.dtype
    return None


def wrap_dim(dim, ndim: int) -> int:
    if not isinstance(dim, int):
        raise TraceError(f"symbolic dimension index {dim}")
    n = max(ndim, 1)
    if dim < -n or dim >= n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return dim + n if dim < 0 else dim


def numel(shape):
    """The product of sizes: ints multiplied first, one simplification for the symbolic rest."""
    r = 1
    terms = []
    for s in shape:
        if isinstance(s, SymInt):
            terms.append(s.e)
        else:
            r *= s
    if not terms or r == 0:
        return r
    e = terms[0]
    for t in terms[1:]:
        e = e * t
    return wrap(e * r if r != 1 else e)


def _run_check(run, cond, err, msg):
    run.check(cond, err, msg)


# --- elementwise, unary ------------------------------------------------------------------

_UNARY = ["relu", "relu_", "relu6", "gelu", "silu", "silu_", "sigmoid", "sigmoid_", "tanh",
          "tanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "leaky_relu",
          "leaky_relu_", "elu", "elu_", "selu", "celu", "mish", "softplus", "hardtanh",
          "hardtanh_", "abs", "exp", "log", "sqrt", "rsqrt", "neg", "erf", "sin", "cos",
          "clone", "contiguous", "detach", "float", "half", "double", "bfloat16", "clamp",
          "clamp_", "clamp_min", "clamp_max", "square", "reciprocal", "exp_", "mul_scalar",
          "logsigmoid", "prelu", "glu_unused", "nan_to_num", "sign", "floor", "ceil", "round",
          "zero_", "fill_", "normal_", "uniform_", "requires_grad_", "cpu", "log_sigmoid",
          "_hardtanh", "threshold", "threshold_", "rrelu", "tanhshrink", "softsign",
          "hardshrink", "softshrink", "__neg__", "__abs__", "pow_", "copy"]


def _unary(run, input, *args, **kwargs):
    if not isinstance(input, STensor):
        raise UnsupportedOp(f"unsupported operand {type(input).__name__} for {run.current_op}")
    dtype = None
    name = run.current_op.split(".")[-1]
    if name in ("float",):
        dtype = torch.float32
    elif name == "half":
        dtype = torch.float16
    elif name == "double":
        dtype = torch.float64
    elif name == "bfloat16":
        dtype = torch.bfloat16
    layout = True if name == "contiguous" else _layout(input)
    return new(input, input.shape, dtype, contiguous=layout)


for _n in _UNARY:
    rule(f"F.{_n}", f"torch.{_n}", f"Tensor.{_n}", f"nn.{_n}")(_unary)
rule("F.prelu", "torch.prelu", "F.rrelu", "F.logsigmoid", "nn.log_sigmoid", "F.hardtanh",
     "F.relu6", "nn.gelu", "nn.silu", "nn.hardswish", "nn.hardsigmoid", "nn.elu",
     "nn.leaky_relu", "nn.softplus", "nn.mish")(_unary)


@rule("F.dropout", "F.dropout1d", "F.dropout2d", "F.dropout3d", "F.alpha_dropout",
      "F.feature_alpha_dropout", "torch.dropout", "torch.dropout_", "torch.alpha_dropout",
      "torch.feature_dropout", "torch.feature_alpha_dropout", "Tensor.dropout")
def _dropout(run, input, p=0.5, training=True, inplace=False):
    if not isinstance(p, (int, float)) or p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return new(input, input.shape)


@rule("Tensor.to", "Tensor.type", "Tensor.type_as", "Tensor.cuda")
def _to(run, input, *args, **kwargs):
    dtype = kwargs.get("dtype")
    for a in args:
        if isinstance(a, torch.dtype):
            dtype = a
        elif isinstance(a, torch.Tensor):
            dtype = a.dtype
    return new(input, input.shape, dtype, contiguous=_layout(input))


@rule("F.softmax", "F.log_softmax", "torch.softmax", "torch.log_softmax", "Tensor.softmax",
      "Tensor.log_softmax", "torch._softmax", "torch.cumsum", "Tensor.cumsum")
def _softmax(run, input, dim=None, *args, **kwargs):
    if dim is None:
        raise UnsupportedOp(f"{run.current_op} without dim at layer {run.layer_name()}")
    wrap_dim(dim, input.ndim)
    return new(input, input.shape, kwargs.get("dtype"))


# --- broadcasting binary ops ------------------------------------------------------------

def broadcast_shapes(run, a, b):
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(a)
    b = (1,) * (n - len(b)) + tuple(b)
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x is y or (isinstance(x, int) and isinstance(y, int) and x == y) or \
                (isinstance(x, SymInt) and isinstance(y, SymInt) and x.e.eq(y.e)):
            out.append(x)
            continue
        if isinstance(x, int) and x == 1:
            out.append(y)
            continue
        if isinstance(y, int) and y == 1:
            out.append(x)
            continue
        ex, ey = zexpr(x), zexpr(y)
        run.check(z3.Or(ex == ey, ex == 1, ey == 1), RuntimeError,
                  lambda x=x, y=y, i=i: f"The size of tensor a ({x}) must match the size of tensor "
                                        f"b ({y}) at non-singleton dimension {i}")
        out.append(wrap(z3.If(ex == 1, ey, ex)))
    return tuple(out)


def _binary(run, a, b=None, *args, **kwargs):
    other = b if b is not None else kwargs.get("other")
    sa, sb = shape_of(a), shape_of(other)
    shape = broadcast_shapes(run, sa, sb)
    like = a if isinstance(a, STensor) else other
    name = run.current_op.split(".")[-1]
    if name.endswith("_") or name.startswith("__i"):
        # in place: the result keeps a's shape
        if len(shape) != len(sa) or not all(_same_size(x, y) for x, y in zip(shape, sa)):
            for x, y in zip(shape, sa):
                run.check(eq(x, y), RuntimeError,
                          lambda: f"output with shape {fmt_list(sa)} doesn't match the "
                                  f"broadcast shape {fmt_list(shape)}")
            shape = sa
    dt = like.dtype
    return new(like, shape, dt)


for _n in ["add", "sub", "mul", "div", "true_divide", "maximum", "minimum", "pow", "rsub",
           "floor_divide", "remainder", "fmod", "atan2", "eq", "ne", "lt", "le", "gt", "ge",
           "logical_and", "logical_or", "add_", "sub_", "mul_", "div_", "__add__", "__radd__",
           "__iadd__", "__sub__", "__rsub__", "__isub__", "__mul__", "__rmul__", "__imul__",
           "__truediv__", "__rtruediv__", "__itruediv__", "__pow__", "__rpow__", "__eq__",
           "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__and__", "__or__",
           "__floordiv__", "__mod__", "masked_fill", "masked_fill_"]:
    rule(f"torch.{_n}", f"Tensor.{_n}")(_binary)


@rule("torch.where")
def _where(run, cond, a=None, b=None):
    s = broadcast_shapes(run, broadcast_shapes(run, shape_of(cond), shape_of(a)), shape_of(b))
    like = a if isinstance(a, STensor) else (b if isinstance(b, STensor) else cond)
    return new(like, s)


@rule("torch.addcmul", "torch.addcdiv", "torch.lerp", "Tensor.addcmul", "Tensor.lerp")
def _ternary(run, a, b, c, *args, **kwargs):
    s = broadcast_shapes(run, broadcast_shapes(run, shape_of(a), shape_of(b)), shape_of(c))
    like = next(t for t in (a, b, c) if isinstance(t, STensor))
    return new(like, s)


# --- reductions -------------------------------------------------------------------------

def _dims(dim, ndim):
    if dim is None:
        return list(range(ndim))
    if isinstance(dim, int):
        return [wrap_dim(dim, ndim)]
    return [wrap_dim(d, ndim) for d in dim]


@rule("torch.mean", "Tensor.mean", "torch.sum", "Tensor.sum", "torch.amax", "Tensor.amax",
      "torch.amin", "Tensor.amin", "torch.std", "Tensor.std", "torch.var", "Tensor.var",
      "torch.norm", "Tensor.norm", "torch.logsumexp", "Tensor.logsumexp", "torch.prod",
      "Tensor.prod")
def _reduce(run, input, dim=None, keepdim=False, *args, **kwargs):
    if "dim" in kwargs:
        dim = kwargs["dim"]
    if "keepdim" in kwargs:
        keepdim = kwargs["keepdim"]
    if isinstance(dim, torch.dtype):
        dim = None
    if run.current_op.endswith("norm") and not isinstance(dim, (int, list, tuple)):
        dim = kwargs.get("dim")
    dims = _dims(dim, input.ndim)
    shape = [(1 if keepdim else None) if i in dims else s for i, s in enumerate(input.shape)]
    return new(input, [s for s in shape if s is not None], kwargs.get("dtype"))


@rule("torch.max", "Tensor.max", "torch.min", "Tensor.min")
def _max(run, input, dim=None, keepdim=False, *args, **kwargs):
    if isinstance(dim, torch.Tensor):
        return _binary(run, input, dim)
    if dim is None:
        return new(input, ())
    d = wrap_dim(dim, input.ndim)
    shape = [1 if i == d else s for i, s in enumerate(input.shape)] if keepdim else \
        [s for i, s in enumerate(input.shape) if i != d]
    vals = new(input, shape)
    idx = new(input, shape, torch.int64)
    return torch.return_types.max((vals, idx)) if "max" in run.current_op else \
        torch.return_types.min((vals, idx))


# --- view and layout ops ----------------------------------------------------------------

def _size_args(args):
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return list(args[0])
    return list(args)


def _infer_size(run, input, target, op):
    """``infer_size``: the -1 dimension and the numel check (torch's messages)."""
    n = numel(input.shape)
    neg = [i for i, s in enumerate(target) if isinstance(s, int) and s == -1]
    if len(neg) > 1:
        raise RuntimeError("only one dimension can be inferred")
    known = numel([s for i, s in enumerate(target) if i not in neg])
    def tl():
        return fmt_list(target)
    if neg:
        run.check(z3.Not(zexpr(known) == 0), RuntimeError,
                  lambda: f"cannot reshape tensor of 0 elements into shape {tl()} because the "
                          "unspecified dimension size -1 can be any value and is ambiguous")
        # sizes are >= 0, so C++'s numel / newsize is floor division; known == 0 fails above
        run.check(D.floormod_total(zexpr(n), zexpr(known)) == 0
                  if not isinstance(known, int) or known > 0
                  else z3.BoolVal(True), RuntimeError,
                  lambda: f"shape '{tl()}' is invalid for input of size {n}")
        rest = wrap(D.floordiv_size(zexpr(n), zexpr(known))) \
            if not (isinstance(known, int) and known == 1) else n
        out = list(target)
        out[neg[0]] = rest
        return out
    run.check(eq(known, n), RuntimeError,
              lambda: f"shape '{tl()}' is invalid for input of size {n}")
    return list(target)


@rule("Tensor.view", "Tensor.reshape", "torch.reshape", "Tensor.view_as", "Tensor.reshape_as")
def _view(run, input, *shape):
    name = run.current_op.split(".")[-1]
    if name.endswith("_as"):
        target = list(shape[0].shape)
    else:
        if len(shape) == 1 and isinstance(shape[0], torch.dtype):
            return new(input, input.shape, shape[0])
        target = _size_args(shape)
    out = _infer_size(run, input, target, name)
    if input._sym_contig:
        return new(input, out)
    layout = _view_layout(input, out)
    if layout is None:
        if name.startswith("view"):
            raise UnsupportedOp(f"unsupported op Tensor.view of a non-contiguous tensor at layer "
                                f"{run.layer_name()}: its stride compatibility is not decided "
                                "by the layout model (splits of one dimension and merges of "
                                "physically adjacent dimensions are)")
        layout = True  # reshape copies
    return new(input, out, contiguous=layout)


def _layout(t):
    """The layout to give a result that keeps ``t``'s strides."""
    if t._sym_perm is None:
        return False
    return t._sym_perm


def _same_size(a, b) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, SymInt) and isinstance(b, SymInt) and a.e.eq(b.e):
        return True
    return z3.is_true(z3.simplify(zexpr(a) == zexpr(b)))


def _view_layout(input, target):
    """The layout of ``input.view(target)`` when it is a view without a copy for every size:
    every old dimension is split into consecutive new ones, or physically adjacent old
    dimensions (in order) merge into one; size-1 dimensions go anywhere. None: undecided."""
    perm = input._sym_perm
    if perm is None:
        return None
    old = [(i, s) for i, s in enumerate(input.shape) if not (isinstance(s, int) and s == 1)]
    new_ = [(j, s) for j, s in enumerate(target) if not (isinstance(s, int) and s == 1)]
    groups = {}  # old dim -> list of new dims (split) ; merges recorded as ('m', [old dims], j)
    merges = []
    a = b = 0
    while a < len(old) and b < len(new_):
        done = False
        prod = 1
        for k in range(b, len(new_)):  # split old[a] into new[b..k]
            prod = prod * new_[k][1]
            if _same_size(prod, old[a][1]):
                groups[old[a][0]] = [new_[x][0] for x in range(b, k + 1)]
                a, b = a + 1, k + 1
                done = True
                break
        if done:
            continue
        prod = 1
        for k in range(a, len(old)):  # merge old[a..k] into new[b]
            prod = prod * old[k][1]
            if k > a and _same_size(prod, new_[b][1]):
                dims = [old[x][0] for x in range(a, k + 1)]
                pos = [perm.index(d) for d in dims]
                if pos != list(range(pos[0], pos[0] + len(pos))):
                    return None
                merges.append((dims, new_[b][0]))
                a, b = k + 1, b + 1
                done = True
                break
        if not done:
            return None
    if a != len(old) or b != len(new_):
        return None
    order = []
    merged = {d: j for dims, j in merges for d in dims}
    for d in perm:
        if d in groups:
            order.extend(groups[d])
        elif d in merged:
            if merged[d] not in order:
                order.append(merged[d])
    rest = [j for j in range(len(target)) if j not in order]
    for j in rest:  # size-1 dims: place them before their right neighbour
        order.insert(order.index(j + 1) if j + 1 in order else len(order), j)
    return tuple(order)


@rule("torch.flatten", "Tensor.flatten")
def _flatten(run, input, start_dim=0, end_dim=-1):
    if input.ndim == 0:
        return new(input, (1,))
    s, e = wrap_dim(start_dim, input.ndim), wrap_dim(end_dim, input.ndim)
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    sh = list(input.shape)
    out = sh[:s] + [numel(sh[s:e + 1])] + sh[e + 1:]
    if input._sym_contig or s == e:
        return new(input, out, contiguous=True if input._sym_contig else _layout(input))
    layout = _view_layout(input, out)
    return new(input, out, contiguous=True if layout is None else layout)


@rule("torch.unflatten", "Tensor.unflatten")
def _unflatten(run, input, dim, sizes):
    d = wrap_dim(dim, input.ndim)
    sub = STensor((input.shape[d],), input.dtype)
    sizes = _infer_size(run, sub, list(sizes), "unflatten")
    sh = list(input.shape)
    out = sh[:d] + sizes + sh[d + 1:]
    return new(input, out, contiguous=True if input._sym_contig else _view_layout(input, out))


@rule("torch.permute", "Tensor.permute")
def _permute(run, input, *dims):
    dims = _size_args(dims)
    if len(dims) != input.ndim:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does "
                           f"not match the length of the desired ordering of dimensions i.e. "
                           f"input.dim() = {input.ndim} is not equal to len(dims) = {len(dims)}")
    ds = [wrap_dim(d, input.ndim) for d in dims]
    if len(set(ds)) != len(ds):
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    perm = input._sym_perm
    layout = False if perm is None else tuple(ds.index(d) for d in perm)
    return new(input, [input.shape[d] for d in ds], contiguous=layout)


@rule("torch.transpose", "Tensor.transpose", "torch.swapaxes", "Tensor.swapaxes")
def _transpose(run, input, d0, d1):
    a, b = wrap_dim(d0, input.ndim), wrap_dim(d1, input.ndim)
    sh = list(input.shape)
    sh[a], sh[b] = sh[b], sh[a]
    perm = input._sym_perm
    sw = {a: b, b: a}
    layout = False if perm is None else tuple(sw.get(d, d) for d in perm)
    return new(input, sh, contiguous=layout)


@rule("get.T", "get.mT")
def _t_get(run, input):
    return new(input, list(reversed(input.shape)), contiguous=input.ndim < 2)


@rule("torch.t", "Tensor.t")
def _t(run, input):
    return new(input, list(reversed(input.shape)), contiguous=input.ndim < 2)


@rule("torch.unsqueeze", "Tensor.unsqueeze")
def _unsqueeze(run, input, dim):
    d = wrap_dim(dim, input.ndim + 1)
    sh = list(input.shape)
    perm = input._sym_perm
    if perm is None:
        return new(input, sh[:d] + [1] + sh[d:], contiguous=False)
    order = [x + 1 if x >= d else x for x in perm]
    order.insert(order.index(d + 1) if d + 1 in order else len(order), d)
    return new(input, sh[:d] + [1] + sh[d:], contiguous=tuple(order))


@rule("torch.squeeze", "Tensor.squeeze")
def _squeeze(run, input, dim=None):
    sh = list(input.shape)
    if dim is None:
        dims = list(range(len(sh)))
    else:
        dims = _dims(dim, input.ndim)
    out = []
    for i, s in enumerate(sh):
        if i in dims:
            if isinstance(s, int):
                if s == 1:
                    continue
            else:
                if s == 1:  # a branch: squeeze depends on the size
                    continue
        out.append(s)
    return new(input, out, contiguous=True if input._sym_contig else False)


@rule("Tensor.expand")
def _expand(run, input, *sizes):
    sizes = _size_args(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError(f"expand(torch.FloatTensor{{{fmt_list(input.shape)}}}, size="
                           f"{fmt_list(sizes)}): the number of sizes provided ({len(sizes)}) "
                           "must be greater or equal to the number of dimensions in the tensor "
                           f"({input.ndim})")
    off = len(sizes) - input.ndim
    out = []
    for i, s in enumerate(sizes):
        if i < off:
            out.append(s)
            continue
        cur = input.shape[i - off]
        if isinstance(s, int) and s == -1:
            out.append(cur)
            continue
        run.check(z3.Or(zexpr(cur) == zexpr(s), zexpr(cur) == 1), RuntimeError,
                  lambda i=i, s=s, cur=cur: f"The expanded size of the tensor ({s}) must match the "
                                            f"existing size ({cur}) at non-singleton dimension "
                                            f"{i}.  Target sizes: {fmt_list(sizes)}.  Tensor "
                                            f"sizes: {fmt_list(input.shape)}")
        out.append(s)
    return new(input, out, contiguous=False)


@rule("Tensor.expand_as")
def _expand_as(run, input, other):
    return _expand(run, input, *other.shape)


@rule("Tensor.repeat")
def _repeat(run, input, *reps):
    reps = _size_args(reps)
    sh = [1] * (len(reps) - input.ndim) + list(input.shape)
    return new(input, [a * b for a, b in zip(sh, reps)])


@rule("Tensor.size")
def _size(run, input, dim=None):
    return input.size(dim)


@rule("Tensor.dim", "Tensor.ndimension")
def _dim(run, input):
    return input.ndim


@rule("Tensor.numel", "torch.numel")
def _numel(run, input):
    return numel(input.shape)


@rule("get.shape")
def _shape_get(run, input):
    return input.shape


@rule("get.data")
def _data_get(run, input):
    return input


@rule("Tensor.__getitem__")
def _getitem(run, input, idx):
    if not isinstance(idx, tuple):
        idx = (idx,)
    sh = list(input.shape)
    out = []
    d = 0
    n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
    for it in idx:
        if it is None:
            out.append(1)
        elif it is Ellipsis:
            k = len(sh) - n_real
            out.extend(sh[d:d + k])
            d += k
        elif isinstance(it, slice):
            if d >= len(sh):
                raise IndexError(f"too many indices for tensor of dimension {len(sh)}")
            size = sh[d]
            out.append(_slice_len(size, it))
            d += 1
        elif is_int(it):
            if d >= len(sh):
                raise IndexError(f"too many indices for tensor of dimension {len(sh)}")
            size = sh[d]
            run.check(z3.And(zexpr(it) < zexpr(size), zexpr(it) >= -zexpr(size)), IndexError,
                      lambda it=it, d=d, size=size: f"index {it} is out of bounds for dimension "
                                                    f"{d} with size {size}")
            d += 1
        else:
            raise UnsupportedOp(f"unsupported op Tensor.__getitem__ with a "
                                f"{type(it).__name__} index at layer {run.layer_name()}")
    out.extend(sh[d:])
    return new(input, out, contiguous=False)


def _clampz(v, lo, hi):
    return z3.If(v < lo, lo, z3.If(v > hi, hi, v))


def _slice_len(size, s: slice):
    step = 1 if s.step is None else s.step
    if not isinstance(step, int) or step <= 0:
        raise TraceError("slices need a positive constant step")
    if s.start is None and s.stop is None and step == 1:
        return size
    n = zexpr(size)
    start = zexpr(0 if s.start is None else s.start)
    stop = n if s.stop is None else zexpr(s.stop)
    start = _clampz(z3.If(start < 0, start + n, start), z3.IntVal(0), n)
    stop = _clampz(z3.If(stop < 0, stop + n, stop), z3.IntVal(0), n)
    length = z3.If(stop > start, D.floordiv_total(stop - start + step - 1, step), 0)
    return wrap(length)


@rule("torch.chunk", "Tensor.chunk", "torch.split", "Tensor.split")
def _split(run, input, size_or_chunks, dim=0):
    d = wrap_dim(dim, input.ndim)
    n = input.shape[d]
    if "chunk" in run.current_op:
        chunks = size_or_chunks
        if not isinstance(n, int):
            raise UnsupportedOp(f"unsupported op {run.current_op} of a symbolic dimension at "
                                f"layer {run.layer_name()}")
        step = -(-n // chunks)
        sizes = [min(step, n - i) for i in range(0, n, step)] if step else [0]
    elif isinstance(size_or_chunks, (list, tuple)):
        sizes = list(size_or_chunks)
        run.check(eq(sum(sizes), n), RuntimeError,
                  lambda: f"split_with_sizes expects split_sizes to sum exactly to {n} (input "
                          f"tensor's size at dimension {d}), but got split_sizes="
                          f"{fmt_list(sizes)}")
    else:
        if not isinstance(n, int):
            raise UnsupportedOp(f"unsupported op {run.current_op} of a symbolic dimension at "
                                f"layer {run.layer_name()}")
        sizes = [min(size_or_chunks, n - i) for i in range(0, n, size_or_chunks)]
    out = []
    for s in sizes:
        sh = list(input.shape)
        sh[d] = s
        out.append(new(input, sh, contiguous=False))
    return tuple(out)


@rule("torch.cat", "torch.concat", "torch.concatenate")
def _cat(run, tensors, dim=0, *, out=None):
    ts = [t for t in tensors]
    real = [t for t in ts if not (t.ndim == 1 and isinstance(t.shape[0], int) and t.shape[0] == 0)]
    if not real:
        return new(ts[0], (0,))
    ref = real[0]
    d = wrap_dim(dim, ref.ndim)
    total = 0
    real_ids = {id(t) for t in real}
    for j, t in enumerate(ts):
        if id(t) not in real_ids:
            continue
        if t.ndim != ref.ndim:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {ref.ndim} and "
                               f"{t.ndim}")
        for i in range(ref.ndim):
            if i == d:
                continue
            a, b = ref.shape[i], t.shape[i]
            run.check(eq(a, b), RuntimeError,
                      lambda a=a, b=b, j=j: f"Sizes of tensors must match except in dimension "
                                            f"{d}. Expected size {a} but got size {b} for tensor "
                                            f"number {j} in the list.")
        total = total + t.shape[d]
    sh = list(ref.shape)
    sh[d] = total
    dt = ref.dtype
    return new(ref, sh, dt)


@rule("torch.stack")
def _stack(run, tensors, dim=0):
    ref = tensors[0]
    d = wrap_dim(dim, ref.ndim + 1)
    for j, t in enumerate(tensors):
        if tuple(t.shape) is not tuple(ref.shape):
            for a, b in zip(ref.shape, t.shape):
                run.check(eq(a, b), RuntimeError,
                          lambda t=t, j=j: f"stack expects each tensor to be equal size, but got "
                                           f"{fmt_list(ref.shape)} at entry 0 and "
                                           f"{fmt_list(t.shape)} at entry {j}")
    sh = list(ref.shape)
    return new(ref, sh[:d] + [len(tensors)] + sh[d:])


# --- linear algebra ---------------------------------------------------------------------

@rule("F.linear", "torch._C._nn.linear")
def _linear(run, input, weight, bias=None):
    wsh = shape_of(weight)
    sh = list(input.shape)
    if input.ndim == 0:
        raise RuntimeError("both arguments to linear need to be at least 1D, but they are 0D "
                           f"and {len(wsh)}D")
    k = sh[-1]
    rows = numel(sh[:-1]) if len(sh) > 1 else 1
    kin = wsh[-1] if len(wsh) == 2 else wsh[0]
    out_f = wsh[0] if len(wsh) == 2 else None
    run.check(eq(k, kin), RuntimeError,
              lambda: f"mat1 and mat2 shapes cannot be multiplied ({rows}x{k} and {kin}x{out_f})")
    out = sh[:-1] + ([out_f] if out_f is not None else [])
    if bias is not None:
        out = list(broadcast_shapes(run, out, shape_of(bias)))
    return new(input, out)


@rule("torch.matmul", "Tensor.matmul", "Tensor.__matmul__", "torch.bmm", "Tensor.bmm",
      "torch.mm", "Tensor.mm")
def _matmul(run, a, b):
    sa, sb = list(shape_of(a)), list(shape_of(b))
    like = a if isinstance(a, STensor) else b
    if len(sa) == 1 and len(sb) == 1:
        run.check(eq(sa[0], sb[0]), RuntimeError,
                  lambda: f"inconsistent tensor size, expected tensor [{sa[0]}] and src [{sb[0]}]"
                          " to have the same number of elements, but got "
                          f"{sa[0]} and {sb[0]} elements respectively")
        return new(like, ())
    va = [1] + sa if len(sa) == 1 else sa
    vb = sb + [1] if len(sb) == 1 else sb
    batch = broadcast_shapes(run, va[:-2], vb[:-2])
    run.check(eq(va[-1], vb[-2]), RuntimeError,
              lambda: f"Expected size for first two dimensions of batch2 tensor to be: "
                      f"[{fmt_list(batch)[1:-1]}, {va[-1]}] but got: "
                      f"[{fmt_list(batch)[1:-1]}, {vb[-2]}].")
    out = list(batch) + ([va[-2]] if len(sa) > 1 else []) + ([vb[-1]] if len(sb) > 1 else [])
    return new(like, out)


@rule("F.embedding", "torch.embedding")
def _embedding(run, input, weight, *args, **kwargs):
    if isinstance(input, STensor) and not isinstance(weight, STensor):
        return new(input, list(input.shape) + [shape_of(weight)[-1]], weight.dtype)
    raise UnsupportedOp(f"unsupported op {run.current_op} with a symbolic weight at layer "
                        f"{run.layer_name()}")


# --- normalisation ----------------------------------------------------------------------

def _verify_batch_size(run, size, size_repr):
    prods = size[0]
    for s in size[2:]:
        prods = prods * s
    run.check(z3.Not(zexpr(prods) == 1), ValueError,
              lambda: "Expected more than 1 value per channel when training, got input size "
                      f"{size_repr()}")


@rule("F.batch_norm")
def _batch_norm(run, input, running_mean, running_var, weight=None, bias=None, training=False,
                momentum=0.1, eps=1e-5):
    if training:
        _verify_batch_size(run, list(input.shape), lambda: fmt_size(input.shape))
    if training and eps <= 0.0:
        raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    if eps < 0.0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")
    return _batch_norm_core(run, input, running_mean, running_var, weight, bias, training)


def _batch_norm_core(run, input, running_mean, running_var, weight, bias, training):
    if input.ndim < 2:
        raise UnsupportedOp(f"unsupported batch_norm of a {input.ndim}-D input at layer "
                            f"{run.layer_name()}")
    c = input.shape[1]
    total = None
    # an empty input skips the kernel's checks: the output is input.clone() * weight[0] + bias[0]
    for t in (weight, bias):
        if t is not None and numel(shape_of(t)) == 0:
            total = zexpr(numel(input.shape))
            run.check(total != 0, IndexError,
                      lambda: "select(): index 0 out of range for tensor of size [0] at "
                              "dimension 0")
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is None:
            continue
        n = numel(shape_of(t))
        if isinstance(c, int) and n == c:
            continue
        if total is None:
            total = zexpr(numel(input.shape))
        run.check(z3.Or(total == 0, zexpr(n) == zexpr(c)), RuntimeError,
                  lambda name=name, n=n: f"{name} should contain {c} elements not {n}")
    return new(input, input.shape)


@rule("torch.batch_norm")
def _torch_batch_norm(run, input, weight, bias, running_mean, running_var, training, momentum,
                      eps, cudnn_enabled=True):
    return _batch_norm_core(run, input, running_mean, running_var, weight, bias, training)


@rule("F.instance_norm")
def _instance_norm(run, input, running_mean=None, running_var=None, weight=None, bias=None,
                   use_input_stats=True, momentum=0.1, eps=1e-5):
    if use_input_stats:
        sp = list(input.shape[2:])
        prods = numel(sp)
        run.check(z3.Not(zexpr(prods) == 1), ValueError,
                  lambda: "Expected more than 1 spatial element when training, got input size "
                          f"{fmt_size(input.shape)}")
    return new(input, input.shape)


@rule("F.group_norm")
def _group_norm(run, input, num_groups, weight=None, bias=None, eps=1e-5):
    if input.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received "
                           f"{input.ndim}")
    sh = list(input.shape)
    first = sh[0] * sh[1] // num_groups
    size = [first, num_groups] + sh[2:]
    _verify_batch_size(run, size, lambda: fmt_list(size))
    c = sh[1]
    run.check(D.floormod_total(zexpr(c), num_groups) == 0, RuntimeError,
              lambda: "Expected number of channels in input to be divisible by num_groups, but "
                      f"got input of shape {fmt_list(sh)} and num_groups={num_groups}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        n = numel(shape_of(t))
        run.check(z3.And(zexpr(n) == zexpr(c), len(shape_of(t)) == 1), RuntimeError,
                  lambda name=name, t=t: f"Expected {name} to be a vector of size equal to the "
                                         f"number of channels in input, but got {name} of shape "
                                         f"{fmt_list(shape_of(t))} and input of shape "
                                         f"{fmt_list(sh)}")
    return new(input, sh)


@rule("F.layer_norm", "torch.layer_norm", "F.rms_norm", "torch.rms_norm")
def _layer_norm(run, input, normalized_shape, weight=None, bias=None, eps=1e-5, *a, **k):
    ns = [normalized_shape] if isinstance(normalized_shape, int) else list(normalized_shape)
    sh = list(input.shape)
    ok = len(sh) >= len(ns)
    conds = [zexpr(a) == zexpr(b) for a, b in zip(sh[len(sh) - len(ns):], ns)] if ok else []
    run.check(z3.And(*conds) if ok else False, RuntimeError,
              lambda: f"Given normalized_shape={fmt_list(ns)}, expected input with shape "
                      f"[*, {fmt_list(ns)[1:-1]}], but got input of size{fmt_list(sh)}")
    return new(input, sh)


# --- pooling ----------------------------------------------------------------------------

def _tuple(x, n):
    if isinstance(x, (list, tuple)):
        if len(x) == 1:
            return list(x) * n
        return list(x)
    return [x] * n


def _pool_nd(run, input, n, kernel_size, stride, padding, dilation, ceil_mode, kind,
             count_include_pad=True, divisor_override=None):
    k = _tuple(kernel_size, n)
    s = k if (stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0)) \
        else _tuple(stride, n)
    p = _tuple(padding, n)
    d = _tuple(dilation, n)
    if n in (1, 2):
        return _pool2d(run, input, n, k, s, p, d, ceil_mode, kind)
    return _pool3d(run, input, k, s, p, d, ceil_mode, kind)


def _pool_out(run, size, k, p, s, d, ceil_mode):
    """``pooling_output_shape`` (symconv.shapes) with its checks."""
    return S.pooling_output_shape(size, k, p, s, d, ceil_mode)


def _pool2d(run, input, n, k, s, p, d, ceil_mode, kind):
    sh = list(input.shape)
    if n == 1:
        # max_pool1d / avg_pool1d: the 1-d ops view the input as 2-d
        if len(sh) not in (2, 3):
            raise RuntimeError(f"Expected 2 to 3 dimensions, but got {len(sh)}-dimensional "
                               f"tensor for argument #1 'self' (while checking arguments for "
                               f"{'max_pool1d' if kind == 'max' else 'avg_pool1d'})")
        k, s, p, d = [1] + k, [1] + s, [0] + p, [1] + d
        view = sh[:-1] + [1] + sh[-1:]
        out = _pool2d_core(run, view, k, s, p, d, ceil_mode, kind, n1=True)
        out = out[:-2] + out[-1:]
        return new(input, out)
    return new(input, _pool2d_core(run, sh, k, s, p, d, ceil_mode, kind))


def _pool2d_core(run, sh, k, s, p, d, ceil_mode, kind, n1=False):
    kH, kW = k
    dH, dW = s
    pH, pW = p
    dilH, dilW = d
    if kind == "max":
        if not all(isinstance(v, int) for v in (kH, kW, dH, dW, pH, pW, dilH, dilW)):
            raise TraceError("symbolic pooling parameters")
        if not (kH > 0 and kW > 0):
            raise RuntimeError(f"max_pool2d: kernel_size must be greater than zero, but got "
                               f"kH: {kH} kW: {kW}")
    ndim = len(sh)
    if ndim not in (3, 4):
        if kind == "max":
            raise RuntimeError("non-empty 3D or 4D (batch mode) tensor expected for input")
        raise IndexError(f"Dimension out of range (expected to be in range of [-{ndim}, "
                         f"{ndim - 1}], but got -3)")
    zs = [_zv(v) for v in sh]
    C, H, W = zs[-3], zs[-2], zs[-1]
    chk = _checker(run)
    oH = S.pooling_output_shape(H, kH, pH, dH, dilH, ceil_mode, check=chk)
    oW = S.pooling_output_shape(W, kW, pW, dW, dilW, ceil_mode, check=chk)
    S.pool2d_shape_check(zs, kH, kW, dH, dW, pH, pW, dilH, dilW, C, H, W, oH, oW, check=chk)
    return sh[:-2] + [wrap(oH), wrap(oW)]


def _zv(v):
    return v.e if isinstance(v, SymInt) else v


def _checker(run):
    def chk(cond, message, error=RuntimeError):
        run.check(cond, error, message)
    return chk


def _pool3d(run, input, k, s, p, d, ceil_mode, kind):
    sh = list(input.shape)
    fn = "max_pool3d_with_indices_out_cpu_template()" if kind == "max" else "avg_pool3d()"
    if len(sh) not in (4, 5):
        raise RuntimeError("non-empty 4D or 5D (batch mode) tensor expected for input")
    zs = [_zv(v) for v in sh]
    T, H, W = zs[-3], zs[-2], zs[-1]
    chk = _checker(run)
    outs = [S.pooling_output_shape(v, kk, pp, ss, dd, ceil_mode, check=chk)
            for v, kk, pp, ss, dd in zip((T, H, W), k, p, s, d)]
    S.pool3d_shape_check(zs, zs[-4], k, s, p, d, (T, H, W), outs, fn,
                         check_input_size=(kind == "avg"), check=chk)
    return new(input, sh[:-3] + [wrap(o) for o in outs])


@rule("F.max_pool1d", "F._max_pool1d", "F.max_pool1d_with_indices", "torch.max_pool1d",
      "torch.max_pool1d_with_indices")
def _max_pool1d(run, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                return_indices=False):
    if return_indices or "with_indices" in run.current_op or input.requires_grad:
        # max_pool1d_with_indices: max_pool2d on the input unsqueezed at -2
        out = _pool_nd(run, input, 1, kernel_size, stride, padding, dilation, ceil_mode, "max")
        return (out, new(out, out.shape, torch.int64)) if (
            return_indices or "with_indices" in run.current_op) else out
    # at::max_pool1d (MaxPooling.cpp) and check_max_pool1d (MaxPooling.h), in torch's order
    sh = list(input.shape)
    zs = [_zv(v) for v in sh]
    nd = len(sh)
    ok = z3.And(zexpr(zs[0]) != 0, zexpr(zs[1]) != 0) if nd == 2 else (
        z3.And(zexpr(zs[1]) != 0, zexpr(zs[2]) != 0) if nd == 3 else False)
    run.check(ok, RuntimeError,
              lambda: "max_pool1d: Expected 2D or 3D (batch mode) tensor with optional 0 dim "
                      "batch size for input, but got:" + fmt_list(sh))
    k = _tuple(kernel_size, 1)[0]
    st = k if stride is None or (isinstance(stride, (list, tuple)) and not stride) \
        else _tuple(stride, 1)[0]
    p = _tuple(padding, 1)[0]
    d = _tuple(dilation, 1)[0]
    if not k > 0:
        raise RuntimeError(f"max_pool1d() kernel_size must be greater than zero, but got {k}")
    if not st > 0:
        raise RuntimeError(f"max_pool1d() stride must be greater than zero, but got {st}")
    if not p >= 0:
        raise RuntimeError(f"max_pool1d() padding must be non-negative, but got {p}")
    if not p <= k // 2:
        raise RuntimeError(f"max_pool1d() padding should be at most half of kernel size, but "
                           f"got padding={p} and kernel_size={k}")
    if not d > 0:
        raise RuntimeError(f"max_pool1d() dilation must be greater than zero, but got {d}")
    ow = S.pooling_output_shape(zs[-1], k, p, st, d, ceil_mode, check=_checker(run))
    run.check(D_ge(ow, 1), RuntimeError,
              lambda: f"max_pool1d() Invalid computed output size: {ow}")
    return new(input, sh[:-1] + [wrap(ow)])


def D_ge(a, b):
    from .. import domain as D
    return D.ge(a, b)


def _max_pool_rule(n: int) -> Callable:
    """max_pool2d/3d: the pooling checks; the indices (int64, the output's shape) when asked
    for or when the op is the ``_with_indices`` one."""
    def max_pool(run, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                 return_indices=False):
        out = _pool_nd(run, input, n, kernel_size, stride, padding, dilation, ceil_mode, "max")
        if "with_indices" in run.current_op or return_indices:
            return out, new(out, out.shape, torch.int64)
        return out
    return max_pool


for _nd in (2, 3):
    rule(f"F.max_pool{_nd}d", f"F._max_pool{_nd}d", f"F.max_pool{_nd}d_with_indices",
         f"torch.max_pool{_nd}d", f"nn.max_pool{_nd}d_with_indices")(_max_pool_rule(_nd))


@rule("torch.avg_pool1d", "F.avg_pool1d")
def _avg_pool1d(run, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True):
    return _pool_nd(run, input, 1, kernel_size, stride, padding, 1, ceil_mode, "avg")


@rule("nn.avg_pool2d", "F.avg_pool2d")
def _avg_pool2d(run, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None):
    return _pool_nd(run, input, 2, kernel_size, stride, padding, 1, ceil_mode, "avg")


@rule("nn.avg_pool3d", "F.avg_pool3d")
def _avg_pool3d(run, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None):
    return _pool_nd(run, input, 3, kernel_size, stride, padding, 1, ceil_mode, "avg")


def _adaptive(run, input, output_size, n, kind):
    sh = list(input.shape)
    osz = _tuple(output_size, n)
    osz = [sh[len(sh) - n + i] if o is None else o for i, o in enumerate(osz)]
    fn = f"adaptive_{kind}_pool{n}d"
    if len(sh) not in (n + 1, n + 2):
        if kind == "avg" and n == 2:
            raise RuntimeError(f"adaptive_avg_pool2d(): Expected 3D or 4D tensor, but got "
                               f"{fmt_list(sh)}")
        raise RuntimeError(f"{fn}(): Expected {n + 1}D or {n + 2}D tensor, but got: "
                           f"{fmt_list(sh)}")
    if kind == "max" or n != 2:
        for i in range(1, len(sh)) if len(sh) == n + 2 else range(len(sh)):
            v = sh[i]
            run.check(zexpr(v) > 0, RuntimeError,
                      lambda i=i: f"{fn}(): Expected input to have non-zero size for non-batch "
                                  f"dimensions, but input has sizes {fmt_list(sh)} with "
                                  f"dimension {i} being empty")
    out = new(input, sh[:len(sh) - n] + osz)
    if kind == "max":
        return out, new(out, out.shape, torch.int64)
    return out


@rule("F.adaptive_avg_pool1d", "torch.adaptive_avg_pool1d")
def _aap1(run, input, output_size):
    return _adaptive(run, input, output_size, 1, "avg")


@rule("F.adaptive_avg_pool2d", "nn.adaptive_avg_pool2d")
def _aap2(run, input, output_size):
    return _adaptive(run, input, output_size, 2, "avg")


@rule("F.adaptive_avg_pool3d", "nn.adaptive_avg_pool3d")
def _aap3(run, input, output_size):
    return _adaptive(run, input, output_size, 3, "avg")


def _amp(n):
    def f(run, input, output_size, return_indices=False):
        out, idx = _adaptive(run, input, output_size, n, "max")
        if return_indices or "with_indices" in run.current_op:
            return out, idx
        return out
    return f


rule("F.adaptive_max_pool1d", "F._adaptive_max_pool1d", "F.adaptive_max_pool1d_with_indices",
     "torch.adaptive_max_pool1d")(_amp(1))
rule("F.adaptive_max_pool2d", "F._adaptive_max_pool2d", "F.adaptive_max_pool2d_with_indices",
     "nn.adaptive_max_pool2d")(_amp(2))
rule("F.adaptive_max_pool3d", "F._adaptive_max_pool3d", "F.adaptive_max_pool3d_with_indices",
     "nn.adaptive_max_pool3d")(_amp(3))


# --- interpolate ------------------------------------------------------------------------

@rule("F.interpolate", "F.upsample", "F.upsample_nearest", "F.upsample_bilinear")
def _interpolate(run, input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None, antialias=False):
    name = run.current_op.split(".")[-1]
    if name == "upsample_bilinear":
        mode = "bilinear"  # align_corners does not change the output size
    sh = list(input.shape)
    dim = len(sh) - 2
    if dim < 1 or dim > 3:
        raise NotImplementedError(
            f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {len(sh)}D) for the "
            f"modes: nearest | linear | bilinear | bicubic | trilinear | area | nearest-exact "
            f"(got {mode})")
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is None and scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    if size is not None:
        out = _tuple(size, dim)
        if len(out) != dim:
            raise ValueError(f"Input and output must have the same number of spatial dimensions,"
                             f" but got input with spatial dimensions of {fmt_list(sh[2:])} and "
                             f"output size of {fmt_list(out)}. Please provide input tensor in "
                             "(N, C, d1, d2, ...,dK) format and output size in (o1, o2, ...,oK) "
                             "format.")
    else:
        sf = _tuple(scale_factor, dim)
        out = []
        for v, f in zip(sh[2:], sf):
            fr = Fraction(f)
            if fr.denominator & (fr.denominator - 1) or fr.denominator > 2**20:
                raise TraceError(f"scale_factor={f} is not exactly representable as a dyadic "
                                 "fraction: floor(size * scale) is not tracked exactly")
            out.append(wrap(D.floordiv_total(zexpr(v) * fr.numerator, fr.denominator))
                       if fr.denominator != 1 else v * fr.numerator)
    if antialias:
        raise UnsupportedOp(f"unsupported op F.interpolate(antialias=True) at layer "
                            f"{run.layer_name()}")
    names = "DHW"[3 - dim:]
    ins = sh[2:]

    def msg():
        i = ", ".join(f"{names[j]}: {ins[j]}" for j in range(dim))
        o = ", ".join(f"{names[j]}: {out[j]}" for j in range(dim))
        return (f"Input and output sizes should be greater than 0, but got input ({i}) output "
                f"({o})")
    conds = [zexpr(v) > 0 for v in ins] + [zexpr(v) > 0 for v in out]
    run.check(z3.And(*conds), RuntimeError, msg)
    return new(input, sh[:2] + out)


# --- pad --------------------------------------------------------------------------------

@rule("F.pad", "nn.pad", "torch.constant_pad_nd")
def _pad(run, input, pad, mode="constant", value=None):
    sh = list(input.shape)
    pad = list(pad)
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    if len(pad) // 2 > len(sh):
        raise RuntimeError(f"Padding length should be less than or equal to two times the input "
                           f"dimension but got padding length {len(pad)} and input of dimension "
                           f"{len(sh)}")
    out = list(sh)
    npairs = len(pad) // 2
    if mode == "constant":
        for i in range(npairs):
            d = len(sh) - 1 - i
            lo, hi = pad[2 * i], pad[2 * i + 1]
            r = sh[d] + lo + hi
            run.check(zexpr(r) >= 0, RuntimeError,
                      lambda d=d, lo=lo, hi=hi: f"The input size {sh[d]}, plus negative padding "
                                                f"{lo} and {hi} resulted in a negative output "
                                                f"size, which is invalid. Check dimension {d} of "
                                                "your input.")
            out[d] = r
        return new(input, out)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    # the kernels: symconv.functional.pad, exact for concrete sizes; for symbolic sizes once
    # per configuration over fresh symbols, its error cases substituted
    from .. import functional as SF
    from ..spec import TensorSpec
    if all(isinstance(v, int) for v in sh + pad):
        res = SF.pad(TensorSpec(tuple(sh), dtype=input.dtype), pad, mode, value)
        return new(input, list(res.shape))
    if not all(isinstance(v, int) for v in pad):
        raise UnsupportedOp(f"unsupported op F.pad(mode={mode!r}) with symbolic pads at layer "
                            f"{run.layer_name()}")
    key = ("pad", mode, tuple(pad), value, tuple(v if isinstance(v, int) else None for v in sh),
           input.dtype, run.env)
    entry = _CONV_CACHE.get(key)
    if entry is None:
        fresh = [z3.Int(f"_p{i}") if not isinstance(v, int) else v for i, v in enumerate(sh)]
        res = SF.pad(TensorSpec(tuple(fresh), dtype=input.dtype), pad, mode, value, env=run.env)
        from .. import domain as D
        errs = [(D.to_z3(c.condition), type(c.outcome), str(c.outcome).splitlines()[0])
                for c in res.errors()]
        entry = ([f for f in fresh if not isinstance(f, int)], errs,
                 None if res.shape is None else [zexpr(v) for v in res.shape])
        _CONV_CACHE[key] = entry
    fresh_syms, errs, outs = entry
    pairs = list(zip(fresh_syms, [zexpr(v) for v in sh if not isinstance(v, int)]))
    for cond, etype, msg in errs:
        err = next(c for c in etype.__mro__ if c.__module__ == "builtins")
        run.check(z3.Not(zsub(cond, *pairs)), err, lambda msg=msg: msg)
    if outs is None:
        raise RuntimeError(f"F.pad(mode={mode!r}) fails for every size here")
    return new(input, [wrap(zsub(o, *pairs)) for o in outs])


# --- convolution ------------------------------------------------------------------------

@dataclasses.dataclass
class ConvCall:
    """One convolution call, kept for ``Trace.backends(env)`` (evaluated lazily)."""

    layer: str
    fn: str
    input_shape: tuple
    weight_shape: tuple
    bias: bool
    stride: Any
    padding: Any
    dilation: Any
    groups: int
    output_padding: Any = 0
    transposed: bool = False
    dtype: Any = torch.float32


def _conv(run, n, transposed, input, weight, bias=None, stride=1, padding=0, dilation=1,
          groups=1, output_padding=0):
    from .. import functional as SF
    from ..spec import TensorSpec
    fname = f"conv_transpose{n}d" if transposed else f"conv{n}d"
    wsh = tuple(shape_of(weight))
    sh = tuple(input.shape)
    call = ConvCall(run.layer_name(), fname, sh, wsh, bias is not None, stride, padding, dilation,
                    groups, output_padding, transposed, input.dtype)
    if run.layer() is not None:
        run.layer().convs.append(call)
    if all(isinstance(v, int) for v in sh):
        # concrete: symconv.functional answers exactly (kernel checks included)
        fn = getattr(SF, fname)
        x = TensorSpec(sh, dtype=input.dtype)
        w = TensorSpec(wsh, dtype=weight.dtype)
        b = TensorSpec(tuple(shape_of(bias)), dtype=bias.dtype) if bias is not None else None
        if transposed:
            res = fn(x, w, b, stride, padding, output_padding, groups, dilation, env=run.env)
        else:
            res = fn(x, w, b, stride, padding, dilation, groups, env=run.env)
        return new(input, list(res.shape))
    return _conv_symbolic(run, n, transposed, input, wsh, bias, stride, padding, dilation,
                          groups, output_padding)


_CONV_CACHE: dict = {}
_CHAN_FAILS: dict = {}


class _Recorder:
    """Collects a convolution's checks over fresh symbols (cached per configuration)."""

    def __init__(self):
        self.checks: list = []

    def check(self, cond, error, message):
        c = decided_check(cond, error, message)
        if c is not None:
            self.checks.append((c, error, message))


def _conv_symbolic(run, n, transposed, input, wsh, bias, stride, padding, dilation, groups,
                   output_padding):
    """Each distinct configuration (weights, parameters, which input sizes are concrete) is
    evaluated once over fresh symbols; a call substitutes its own size terms."""
    sh = list(input.shape)
    bsh = None if bias is None else tuple(shape_of(bias))
    cdim = 1 if len(sh) == n + 2 else 0
    general = isinstance(sh[cdim], int) and sh[cdim] > 0 and len(wsh) == n + 2 and \
        (bsh is None or len(bsh) == 1)
    if general:
        # channel counts become template symbols too: one entry per kernel geometry
        wt = (SymInt(z3.Int("_w0")), SymInt(z3.Int("_w1"))) + tuple(wsh[2:])
        bt = None if bsh is None else (SymInt(z3.Int("_b0")),)
        ckey = ("general",)
    else:
        wt, bt, ckey = tuple(wsh), bsh, (tuple(wsh), bsh)
    key = (n, transposed, tuple(wsh[2:]), bsh is not None, ckey, repr(stride), repr(padding),
           repr(dilation), groups, repr(output_padding),
           tuple(v if isinstance(v, int) and i != cdim else None for i, v in enumerate(sh)),
           len(sh), input.dtype, run.env)
    entry = _CONV_CACHE.get(key)
    if entry is None:
        fresh = [SymInt(z3.Int(f"_c{i}")) if (not isinstance(v, int) or (general and i == cdim))
                 else v for i, v in enumerate(sh)]
        rec = _Recorder()
        try:
            out = _conv_compute(rec, run.env, n, transposed, fresh, wt, bt, stride, padding,
                                dilation, groups, output_padding)
            syms = [f.e for f in fresh if isinstance(f, SymInt)]
            if general:
                syms += [wt[0].e, wt[1].e] + ([bt[0].e] if bt is not None else [])
            entry = ("ok", syms, rec.checks, [zexpr(o) for o in out], run.env)
        except (RuntimeError, ValueError, IndexError, NotImplementedError) as e:
            if general:  # decided for this geometry only with concrete channels
                entry = None
            else:
                entry = ("raise", e, run.env)
        if entry is not None:
            _CONV_CACHE[key] = entry
    if entry is None:
        entry = _direct(run, n, transposed, sh, wsh, bias, stride, padding, dilation, groups,
                        output_padding)
    _raise_recorded(entry)
    _, fresh_syms, checks, outs, _ = entry
    actual = [zexpr(v) for i, v in enumerate(sh) if not isinstance(v, int) or
              (general and i == cdim)]
    if general:
        actual += [z3.IntVal(wsh[0]), z3.IntVal(wsh[1])] + \
            ([z3.IntVal(bsh[0])] if bsh is not None else [])
    subst = list(zip(fresh_syms, actual))
    if general:
        # a check that fails for these channels: answer with this call's own messages
        csub = list(zip(fresh_syms[len(fresh_syms) - (3 if bsh is not None else 2):],
                        actual[len(actual) - (3 if bsh is not None else 2):]))
        csub.append((fresh_syms[[i for i, v in enumerate(sh) if not isinstance(v, int) or
                                 i == cdim].index(cdim)], z3.IntVal(sh[cdim])))
        ck = (key, sh[cdim], tuple(wsh[:2]), bsh)
        fails = _CHAN_FAILS.get(ck)
        if fails is None:
            fails = any(z3.is_false(z3.simplify(zsub(c, *csub))) for c, _, _ in checks)
            _CHAN_FAILS[ck] = fails
        if fails:
            entry = _direct(run, n, transposed, sh, wsh, bias, stride, padding, dilation,
                            groups, output_padding)
            _raise_recorded(entry)
            _, fresh_syms, checks, outs, _ = entry
            actual = [zexpr(v) for v in sh if not isinstance(v, int)]
            subst = list(zip(fresh_syms, actual))
    akey = tuple(a.get_id() for a in actual)
    memo = run.memo
    for c, err, msg in checks:
        run.check(zsub(c, *subst) if subst else c, err, msg)
    res = []
    for o in outs:
        if not subst:
            res.append(wrap(o))
            continue
        k = (o.get_id(), akey)
        hit = memo.get(k)
        if hit is None:
            hit = (wrap(zsub(o, *subst)), o, actual)  # keep the terms alive
            memo[k] = hit
        res.append(hit[0])
    cin = sh[cdim]
    if isinstance(cin, int) and cin == 0 and len(res) == len(sh):
        res[1 if cdim == 1 else 0] = 0  # zero input channels give zero output channels
    return new(input, res)


def _raise_recorded(entry: tuple) -> None:
    """A recorded ("raise", error, env) entry: raise its error afresh (a new instance each
    call, so one call's traceback never sticks to the cached one)."""
    if entry[0] == "raise":
        err = entry[1]
        raise type(err)(*err.args)


def _direct(run, n, transposed, sh, wsh, bias, stride, padding, dilation, groups,
            output_padding):
    """The configuration with its own channel counts (messages with this call's numbers)."""
    fresh = [SymInt(z3.Int(f"_c{i}")) if not isinstance(v, int) else v for i, v in enumerate(sh)]
    rec = _Recorder()
    try:
        out = _conv_compute(rec, run.env, n, transposed, fresh, tuple(wsh),
                            None if bias is None else tuple(shape_of(bias)), stride, padding,
                            dilation, groups, output_padding)
    except (RuntimeError, ValueError, IndexError, NotImplementedError) as e:
        return ("raise", e, run.env)
    return ("ok", [f.e for f in fresh if isinstance(f, SymInt)], rec.checks,
            [zexpr(o) for o in out], run.env)


def _conv_compute(run, env, n, transposed, sh, wsh, bias, stride, padding, dilation, groups,
                  output_padding):
    from .. import api
    from ..errors import Checker
    from ..spec import TensorSpec
    sh = list(sh)
    if len(sh) not in (n + 1, n + 2):
        raise RuntimeError(f"Expected {n + 1}D (unbatched) or {n + 2}D (batched) input to "
                           f"{'conv_transpose' if transposed else 'conv'}{n}d, but got input of "
                           f"size: {fmt_list(sh)}")
    unbatched = len(sh) == n + 1
    if unbatched:
        sh = [1] + sh
    s = _tuple(stride, n)
    dl = _tuple(dilation, n)
    op = _tuple(output_padding, n)
    pre_pad = [0] * n
    if isinstance(padding, str):
        if padding == "valid":
            p = [0] * n
        elif padding == "same":
            if any(v != 1 for v in s):
                raise RuntimeError("padding='same' is not supported for strided convolutions")
            p = []
            for i in range(n):
                # stride 1: the split of Pool.h's 'same' helper (its stride-dependent shrink is
                # off), the extra right padding of an even kernel goes before the convolution
                left, right = S.pooling_same_mode_padding_lr(0, wsh[2 + i], 1, dl[i])
                p.append(left)
                pre_pad[i] = right - left
        else:
            raise RuntimeError(f"Invalid padding string: '{padding}'")
    else:
        p = _tuple(padding, n)
    x_sh = [sh[0], sh[1]] + [sh[2 + i] + pre_pad[i] for i in range(n)]
    zs = [zexpr(v) for v in x_sh]
    x = TensorSpec(tuple(zs))
    w = TensorSpec(tuple(_zv(v) for v in wsh))
    b = TensorSpec(tuple(_zv(v) for v in bias)) if bias is not None else None
    chk = Checker()
    p_ = api.prepare(x, w, b, s, p, dl, transposed, op, groups, env=env, checker=chk,
                     entry="convolution")
    for c in chk.checks:
        run.check(D_to_z3(c.cond), c.error, c.render)
    if p_.stopped:
        raise RuntimeError("convolution: a check fails for every size here")
    # the rule table's error before any backend: zero elements without a zero batch/channel
    empty = z3.Or(zs[0] == 0, zs[1] == 0)
    nz = z3.Or(*[v == 0 for v in zs])
    shown = list(sh)
    run.check(z3.Or(empty, z3.Not(nz)), RuntimeError,
              lambda: "Only zero batch or zero channel inputs are supported, but got input shape: "
                      + fmt_list(shown))
    out = [sh[0]]
    if transposed:
        out.append(wsh[1] * groups)  # a SymInt template or an int
        for i in range(n):
            out.append(wrap((zs[2 + i] - 1) * s[i] - 2 * p[i] + dl[i] * (wsh[2 + i] - 1) + op[i]
                            + 1))
    else:
        out.append(wsh[0])
        # shapes' formula; floor division equals C++ truncation wherever the kernel-size
        # check above passes (numerator >= 0), and the domain only counts those points
        osz = S.conv_output_size(zs, [0, 0, *(_zv(v) for v in wsh[2:])], p, s, dl,
                                 div=D.floordiv_total)
        out.extend(wrap(v) for v in osz[2:])
    # zero input channels give zero output channels (calc_output_size)
    if isinstance(sh[1], int) and sh[1] == 0:
        out[1] = 0
    if unbatched:
        out = out[1:]
    return out


def D_to_z3(c):
    from .. import domain as D
    return D.to_z3(c)


def _conv_rule(n: int) -> Callable:
    def conv(run, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        return _conv(run, n, False, input, weight, bias, stride, padding, dilation, groups)
    return conv


def _conv_transpose_rule(n: int) -> Callable:
    def conv_transpose(run, input, weight, bias=None, stride=1, padding=0, output_padding=0,
                       groups=1, dilation=1):
        return _conv(run, n, True, input, weight, bias, stride, padding, dilation, groups,
                     output_padding)
    return conv_transpose


for _nd in (1, 2, 3):
    rule(f"F.conv{_nd}d", f"torch.conv{_nd}d")(_conv_rule(_nd))
    rule(f"F.conv_transpose{_nd}d", f"torch.conv_transpose{_nd}d")(_conv_transpose_rule(_nd))


# --- attention ----------------------------------------------------------------------------

@rule("F.scaled_dot_product_attention", "nn.scaled_dot_product_attention")
def _sdpa(run, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
          enable_gqa=False):
    q, k, v = list(shape_of(query)), list(shape_of(key)), list(shape_of(value))
    if len(q) < 2 or len(k) < 2 or len(v) < 2:
        raise UnsupportedOp(f"unsupported op scaled_dot_product_attention with inputs of rank "
                            f"< 2 at layer {run.layer_name()}")
    if enable_gqa:
        raise UnsupportedOp(f"unsupported op scaled_dot_product_attention(enable_gqa=True) at "
                            f"layer {run.layer_name()}")
    # the math: softmax(q @ k^T) @ v, with the batch dimensions broadcast
    scores = _matmul(run, new(query, q), new(key, k[:-2] + [k[-1], k[-2]]))
    if attn_mask is not None:
        broadcast_shapes(run, shape_of(scores), shape_of(attn_mask))
    return _matmul(run, scores, new(value, v))
