"""``symconv trace``: a whole model over symbolic input shapes: its layers, domain, backends."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import sys
import time
from typing import Any

from . import EXIT_TORCH_ERROR, CLIError, emit_json
from ._args import parse_dtype, parse_env, parse_shape, tensor_spec

COMMAND = "trace"
HELP = "trace a model over symbolic input shapes: per-layer shapes, valid domain, backends"
DESCRIPTION = (HELP + ". MODEL is FILE.py:FACTORY or MODULE:FACTORY, a function that takes no "
               "argument and returns an nn.Module (e.g. tests/trace_models.py:resnet_small). "
               "Every --input gives one positional input of the forward, e.g. --input N,3,H,W.")


def register(p: argparse.ArgumentParser):
    p.add_argument("model", metavar="MODEL", help="FILE.py:FACTORY or MODULE:FACTORY")
    p.add_argument("--input", action="append", metavar="SHAPE", required=True,
                   help="one forward input's sizes, ints or symbol names (repeat for more)")
    p.add_argument("--dtype", default="float32", help="dtype of the inputs (default float32)")
    p.add_argument("--env", default="native",
                   help="environment preset for the backends (default: this process)")
    p.add_argument("--train", action="store_true",
                   help="trace in training mode (default: eval; the mode changes the domain)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return run


# ---- loading the model ---------------------------------------------------------------------------

def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return f"{type(e).__name__}: {s.splitlines()[0]}" if s else type(e).__name__


def _import_source(where: str):
    looks_like_file = where.endswith(".py") or os.sep in where or "/" in where
    if looks_like_file:
        path = os.path.abspath(where)
        if not os.path.isfile(path):
            raise CLIError("MODEL", f"file {where!r} does not exist")
        name = "_symconv_trace_" + os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise CLIError("MODEL", f"cannot import {where!r} as Python source")
        mod = importlib.util.module_from_spec(spec)
        # registered before it runs, as an import does (dataclasses and pickle look it up);
        # the file's siblings import as they do when the file runs as a script
        sys.modules[name] = mod
        sys.path.insert(0, os.path.dirname(path))
        try:
            spec.loader.exec_module(mod)
        except Exception as e:  # noqa: BLE001 - the user's code, whatever it raises
            sys.modules.pop(name, None)
            raise CLIError("MODEL", f"importing {where} raised {_first_line(e)}") from None
        finally:
            sys.path.remove(os.path.dirname(path))
        return mod
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        if e.name and where.startswith(e.name):
            raise CLIError("MODEL", f"no module named {where!r} (and no file of that name)") \
                from None
        raise CLIError("MODEL", f"importing {where} raised {_first_line(e)}") from None
    except Exception as e:  # noqa: BLE001
        raise CLIError("MODEL", f"importing {where} raised {_first_line(e)}") from None


def load_model(text: str, train: bool):
    import torch
    where, sep, name = text.rpartition(":")
    if not sep or not where or not name:
        raise CLIError("MODEL", f"{text!r} is not FILE.py:FACTORY or MODULE:FACTORY")
    if not name.isidentifier():
        raise CLIError("MODEL", f"factory name {name!r} is not a Python identifier")
    mod = _import_source(where)
    factory = getattr(mod, name, None)
    if factory is None:
        raise CLIError("MODEL", f"{where} has no factory {name!r}")
    if not callable(factory):
        raise CLIError("MODEL", f"{where}:{name} is not callable")
    try:
        model = factory()
    except Exception as e:  # noqa: BLE001
        raise CLIError("MODEL", f"factory {name}() raised {_first_line(e)}") from None
    if not isinstance(model, torch.nn.Module):
        raise CLIError("MODEL", f"factory {name}() returned {type(model).__name__}, "
                       "not a torch.nn.Module")
    model.train(train)
    return model


# ---- formatting ----------------------------------------------------------------------------------

def _size(x: Any) -> str:
    return " ".join(str(x).split())  # Z3 breaks long terms over lines


def _shape(s: Any) -> str:
    return "(" + ", ".join(_size(x) for x in s) + ")"


def _shapes(ss: Any) -> str:
    return ", ".join(_shape(s) for s in ss) if ss else ""


def _conv_label(c: Any) -> str:
    """``conv2d w=(64, 3, 7, 7) stride=2 padding=3`` (defaults left out)."""
    parts = [f"{c.fn} w={_shape(c.weight_shape)}"]
    for key, default in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1),
                         ("output_padding", 0)):
        v = getattr(c, key)
        vs = list(v) if isinstance(v, (list, tuple)) else [v]
        if any(x != default for x in vs):
            parts.append(f"{key}={v if isinstance(v, str) else ','.join(map(str, vs))}")
    if c.bias:
        parts.append("bias")
    return " ".join(parts)


def _cond(c: Any) -> str:
    return " ".join(str(c).split())


def _outcome(o: Any) -> str:
    if isinstance(o, BaseException):
        return "error: " + (str(o).splitlines()[0] if str(o) else type(o).__name__)
    return getattr(o, "name", str(o))


def _output_leaves(x: Any, path: str = "") -> list[tuple[str, list[str]]]:
    """(name, shape) for every tensor of the traced output (structure walked in order)."""
    from symconv.tracing.tensor import SymSize
    if isinstance(x, SymSize):
        return [(path or "output", [_size(s) for s in x])]
    if isinstance(x, dict):
        return [o for k, v in x.items() for o in _output_leaves(v, k)]
    if isinstance(x, (tuple, list)):
        return [o for i, v in enumerate(x) for o in _output_leaves(v, f"{path}[{i}]")]
    return []


def _layers(tr) -> list[dict]:
    rows = []
    for lay in tr.layers:
        rows.append({"name": lay.name or "<model>", "type": lay.type,
                     "inputs": [[_size(x) for x in s] for s in lay.inputs],
                     "outputs": [[_size(x) for x in s] for s in lay.outputs],
                     "convs": [_conv_label(c) for c in lay.convs]})
    return rows


def _backends(tr, env) -> list[dict]:
    """Per convolution layer: the backend regions that meet the model's domain (first match
    wins; a region outside the domain is never reached because an earlier layer fails)."""
    import z3

    from symconv import solver
    out = []
    for layer, cases in tr.backends(env).items():
        regions = []
        for c, o in cases:
            if z3.is_false(z3.simplify(c)):
                continue
            r = solver.check(tr.domain, c)
            if r.unsat:
                continue
            regions.append({"backend": _outcome(o), "when": _cond(c),
                            "reachable": True if r.sat else "unknown"})
        out.append({"layer": layer, "regions": regions})
    return out


def _console():
    from rich.console import Console
    width = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else 160
    return Console(file=sys.stdout, width=max(width, 100), soft_wrap=True, highlight=False)


def run(args: argparse.Namespace) -> int:
    import torch

    import symconv
    from symconv.tracing import TraceError

    dtype = parse_dtype(args.dtype)
    specs = [tensor_spec(parse_shape(t, "--input"), "--input", dtype=dtype) for t in args.input]
    for t, s in zip(args.input, specs):
        if not s.shape:
            raise CLIError("--input", f"{t!r} has no dimension")
    env = parse_env(args.env)
    model = load_model(args.model, args.train)
    sys.stderr.write(f"tracing {args.model} ({'train' if args.train else 'eval'} mode) ...\n")
    t0 = time.perf_counter()
    try:
        tr = symconv.trace(model, *specs)
        backends = _backends(tr, env)
    except (TraceError, symconv.ConvError, RuntimeError, ValueError, TypeError,
            NotImplementedError, IndexError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        if args.json:
            emit_json({"model": args.model, "error": {"type": type(e).__name__, "message": msg}})
        else:
            sys.stderr.write(f"symconv trace: {type(e).__name__}: {msg}\n")
        return EXIT_TORCH_ERROR
    dt = time.perf_counter() - t0
    sys.stderr.write(f"traced in {dt:.2f} s\n")
    layers = _layers(tr)
    domain = " ".join(tr.readable().split())
    witness = tr.witness()
    outputs = _output_leaves(tr.outputs)
    if args.json:
        emit_json({"model": args.model, "mode": "train" if args.train else "eval",
                   "inputs": [[_size(x) for x in s.shape] for s in specs],
                   "domain": domain, "witness": witness,
                   "outputs": [{"name": n, "shape": s} for n, s in outputs],
                   "layers": layers, "backends": backends, "trace_seconds": round(dt, 4),
                   "environment": env.as_dict(), "torch": torch.__version__})
        return 0
    from rich.table import Table
    con = _console()
    table = Table(title=f"{args.model} ({'train' if args.train else 'eval'} mode)",
                  title_justify="left", box=None, pad_edge=False)
    for col in ("layer", "type", "input", "output", "convolutions"):
        table.add_column(col, overflow="fold")
    for r in layers:
        table.add_row(r["name"], r["type"], _shapes(r["inputs"]), _shapes(r["outputs"]),
                      "; ".join(r["convs"]))
    con.print(table)
    con.print()
    for n, out_shape in outputs:
        con.print(f"output    {n}: {_shape(out_shape)}", markup=False)
    con.print(f"domain    {domain}", markup=False)
    con.print(f"witness   {witness}")
    con.print()
    con.print(f"backends ({args.env}), regions inside the domain:")
    for b in backends:
        con.print(f"  {b['layer']}")
        for reg in b["regions"]:
            con.print(f"    {reg['backend']:<18} when {reg['when']}", markup=False)
    return 0
