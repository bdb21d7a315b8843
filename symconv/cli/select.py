"""``symconv select``: the backend, output shape and memory format torch will use."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import symconv
from symconv import domain as D
from symconv.errors import ConvValueError
from symconv.spec import MKLDNN_LAYOUT

from . import EXIT_TORCH_ERROR, CLIError, emit_json
from ._args import (parse_dtype, parse_env, parse_int, parse_int_list, parse_memory_format,
                    parse_shape, tensor_spec)

COMMAND = "select"
HELP = "which backend torch picks for a convolution, its output shape and memory format"
DESCRIPTION = (HELP + ". Sizes may be symbols (e.g. --input N,3,H,W): the answer is then the "
               "list of conditions and the backend chosen under each.")


def add_conv_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of torch.convolution (shared with explain)."""
    p.add_argument("--input", required=True, metavar="SHAPE",
                   help="input sizes, e.g. 8,3,224,224 or N,3,H,W")
    p.add_argument("--weight", required=True, metavar="SHAPE", help="weight sizes, e.g. 64,3,7,7")
    p.add_argument("--bias", action="store_true", help="pass a bias of C_out elements")
    p.add_argument("--bias-shape", metavar="SHAPE", help="pass a bias of this shape")
    p.add_argument("--stride", metavar="INTS", help="stride (default 1)")
    p.add_argument("--padding", metavar="INTS", help="padding (default 0)")
    p.add_argument("--dilation", metavar="INTS", help="dilation (default 1)")
    p.add_argument("--transposed", action="store_true", help="transposed convolution")
    p.add_argument("--output-padding", metavar="INTS", help="output padding (default 0)")
    p.add_argument("--groups", metavar="INT", help="groups (default 1)")
    p.add_argument("--dtype", default="float32",
                   help="float32, float64, float16, bfloat16, complex64")
    p.add_argument("--weight-dtype", help="weight dtype when it differs from --dtype")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "meta", "mps", "xpu"])
    p.add_argument("--memory-format", default="contiguous", help="input memory format")
    p.add_argument("--weight-memory-format", default="contiguous", help="weight memory format")
    p.add_argument("--requires-grad", action="store_true", help="input requires grad")
    p.add_argument("--mkldnn-tensor", action="store_true", help="the input is an MKLDNN tensor")
    p.add_argument("--env", default="native", help="environment preset (default: this process)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override an Environment field, e.g. --set num_threads=2")


def conv_args_from(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    inp = parse_shape(args.input, "--input")
    wshape = parse_shape(args.weight, "--weight")
    dtype = parse_dtype(args.dtype)
    wdtype = parse_dtype(args.weight_dtype, "--weight-dtype") if args.weight_dtype else dtype
    layout = MKLDNN_LAYOUT if args.mkldnn_tensor else torch.strided
    input_spec = tensor_spec(inp, "--input", dtype=dtype, device=args.device,
                             requires_grad=args.requires_grad,
                             memory_format=parse_memory_format(args.memory_format), layout=layout)
    weight_spec = tensor_spec(wshape, "--weight", dtype=wdtype, device=args.device,
                              memory_format=parse_memory_format(args.weight_memory_format,
                                                                "--weight-memory-format"))
    bias = None
    if args.bias_shape is not None:
        bias = tensor_spec(parse_shape(args.bias_shape, "--bias-shape"), "--bias-shape",
                           dtype=dtype, device=args.device)
    elif args.bias:
        if not wshape:
            raise CLIError("--bias", "needs a weight with at least one dimension")
        n = wshape[0] if not args.transposed else (
            wshape[1] * parse_int(args.groups, "--groups", 1) if len(wshape) > 1 else wshape[0])
        bias = tensor_spec((n,), "--bias", dtype=dtype, device=args.device)
    env = parse_env(args.env, args.set)
    return dict(
        input=input_spec, weight=weight_spec, bias=bias,
        stride=parse_int_list(args.stride, "--stride", [1]),
        padding=parse_int_list(args.padding, "--padding", [0]),
        dilation=parse_int_list(args.dilation, "--dilation", [1]),
        transposed=args.transposed,
        output_padding=parse_int_list(args.output_padding, "--output-padding", [0]),
        groups=parse_int(args.groups, "--groups", 1), env=env)


def register(p: argparse.ArgumentParser):
    add_conv_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return run


def env_summary(env: symconv.Environment) -> str:
    parts = [f"torch {env.torch_version}",
             f"{env.num_threads} thread" + ("s" if env.num_threads != 1 else "")]
    parts.append("mkldnn " + ("on" if env.mkldnn_available and env.mkldnn_enabled else "off"))
    parts.append("nnpack " + ("on" if env.nnpack_available and env.nnpack_enabled else "off"))
    if env.cudnn_version:
        parts.append(f"cuDNN {env.cudnn_version}" + ("" if env.cudnn_enabled else " (disabled)"))
    if env.mkldnn_bf16_supported:
        parts.append("oneDNN bf16")
    if env.mobile:
        parts.append("mobile")
    return ", ".join(parts)


def _fmt(x: Any) -> str:
    return str(D.simplify(x)) if D.is_symbolic(x) else str(x)


TORCH_ERRORS = (symconv.ConvError, ConvValueError, IndexError, NotImplementedError)


def torch_error(args: argparse.Namespace, env: symconv.Environment, e: BaseException) -> int:
    """Report the error torch raises for this call (exit status 1)."""
    kind = "RuntimeError" if isinstance(e, symconv.ConvError) else (
        "ValueError" if isinstance(e, ConvValueError) else type(e).__name__)
    first = (str(e).splitlines() or [""])[0]
    if args.json:
        emit_json({"error": {"type": kind, "message": first}, "environment": env.as_dict()})
    else:
        sys.stdout.write(f"torch raises {kind}: {first}\n")
    return EXIT_TORCH_ERROR


def is_symbolic_call(a: dict[str, Any]) -> bool:
    specs = [a["input"], a["weight"]] + ([a["bias"]] if a["bias"] is not None else [])
    return not (all(t.is_concrete for t in specs) and
                all(isinstance(v, int) for v in a["stride"] + a["padding"] + a["dilation"]
                    + a["output_padding"] + [a["groups"]]))


def run(args: argparse.Namespace) -> int:
    a = conv_args_from(args)
    env = a.pop("env")
    call = (a["input"], a["weight"], a["bias"], a["stride"], a["padding"], a["dilation"],
            a["transposed"], a["output_padding"], a["groups"])
    if is_symbolic_call(a):
        try:
            return _run_symbolic(args, call, env)
        except TORCH_ERRORS as e:  # fails whatever the symbols are
            return torch_error(args, env, e)
    try:
        backend = symconv.select_conv_backend(*call, env=env)
        shape = symconv.convolution_output_shape(*call, env=env)
    except TORCH_ERRORS as e:
        return torch_error(args, env, e)
    mf = symconv.determine_backend_memory_format(a["input"], a["weight"], backend, env=env)
    mf_name = str(mf).replace("torch.", "")
    if args.json:
        emit_json({"backend": backend.name, "output_shape": list(shape), "memory_format": mf_name,
                   "environment": env.as_dict()})
        return 0
    rows = [("backend", backend.name), ("output shape", "[" + ", ".join(map(str, shape)) + "]"),
            ("memory format", mf_name), ("environment", f"{args.env} ({env_summary(env)})")]
    for k, v in rows:
        sys.stdout.write(f"{k:<14} {v}\n")
    return 0


def _run_symbolic(args, call, env) -> int:
    sel = symconv.select_conv_backend(*call, env=env)
    shp = symconv.convolution_output_shape(*call, env=env)
    if args.json:
        emit_json({
            "output_shape": [_fmt(x) for x in shp.shape],
            "cases": [{"condition": _fmt(c.condition),
                       "outcome": (c.outcome.name if isinstance(c.outcome, symconv.ConvBackend)
                                   else {"error": str(c.outcome).splitlines()[0]}),
                       "rule": c.rule} for c in sel.cases],
            "environment": env.as_dict()})
        return 0
    sys.stdout.write("output shape   [" + ", ".join(_fmt(x) for x in shp.shape) + "]\n")
    sys.stdout.write(f"environment    {args.env} ({env_summary(env)})\n")
    sys.stdout.write("backend by region (first match wins, regions are disjoint):\n")
    for c in sel.cases:
        out = c.outcome.name if isinstance(c.outcome, symconv.ConvBackend) else \
            "error: " + str(c.outcome).splitlines()[0]
        sys.stdout.write(f"  {out}\n      when {_fmt(c.condition)}\n")
    return 0
