"""The torch side of the functional/module differential tests, and symconv's answer for a case.

A case is a JSON-able dict:

* ``{"kind": "functional", "fn": "conv2d", "input": T, "weight": T, "bias": T | None,
  "args": {...}, "flags": {...}}`` with ``args`` the keyword arguments of ``F.<fn>``;
* ``{"kind": "module", "cls": "Conv2d", "ctor": {...}, "module_mf": "contiguous",
  "input": T, "output_size": [...] | None, "flags": {...}}``;
* ``{"kind": "pad", "input": T, "pad": [...], "mode": "reflect", "value": None}``;

where ``T`` is ``{"shape", "dtype", "memory_format", "strides" (optional), "requires_grad"}``.

Torch's answer (shape, dtype, layout flags, requires_grad, or the exception type and first
line) comes from a worker subprocess (:class:`FunctionalWorker`), restarted when torch crashes;
module constructors, which run no convolution, are also asked in-process (their messages print
Python sets, whose order depends on the process's hash seed).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import warnings
from typing import Any

import torch

from tests.oracle import ConvWorker, first_line, flags

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "float16": torch.float16, "complex64": torch.complex64,
          "complex128": torch.complex128, "int64": torch.int64}
MF = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last,
      "channels_last_3d": torch.channels_last_3d}
FUNCTIONAL = ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d")
_ETYPES = (NotImplementedError, IndexError, ValueError, TypeError, AssertionError, RuntimeError)


def etype(e: BaseException) -> str:
    """The builtin exception class a user would catch (ConvError -> RuntimeError, ...)."""
    for t in _ETYPES:
        if isinstance(e, t):
            return t.__name__
    return type(e).__name__


def error(e: BaseException) -> dict:
    return {"error": etype(e), "message": first_line(e)}


# --------------------------------------------------------------------------------------
# Building tensors and specs from a case


def spec_of(t: dict | None):
    from symconv import TensorSpec
    if t is None:
        return None
    st = t.get("strides")
    return TensorSpec(tuple(t["shape"]), dtype=DTYPES[t.get("dtype", "float32")],
                      requires_grad=t.get("requires_grad", False),
                      memory_format=MF[t.get("memory_format", "contiguous")],
                      strides=tuple(st) if st is not None else None)


def tensor_of(t: dict | None) -> torch.Tensor | None:
    if t is None:
        return None
    dtype = DTYPES[t.get("dtype", "float32")]
    shape = tuple(t["shape"])
    if t.get("strides") is not None:
        x = torch.empty_strided(shape, tuple(t["strides"]), dtype=dtype)
    else:
        x = torch.empty(shape, dtype=dtype, memory_format=MF[t.get("memory_format", "contiguous")])
    if dtype.is_floating_point or dtype.is_complex:
        x.uniform_(-1, 1) if not dtype.is_complex else x.zero_()
    else:
        x.zero_()
    if t.get("requires_grad"):
        x.requires_grad_(True)
    return x


def describe(out) -> dict:
    """Shape, dtype, layout flags and requires_grad of a tensor or a TensorSpec."""
    if isinstance(out, torch.Tensor):
        nd = out.dim()
        cl = (out.is_contiguous(memory_format=torch.channels_last) if nd == 4 else
              out.is_contiguous(memory_format=torch.channels_last_3d) if nd == 5 else None)
        return {"shape": list(out.shape), "dtype": str(out.dtype).replace("torch.", ""),
                "contiguous": bool(out.is_contiguous()), "channels_last": cl,
                "requires_grad": bool(out.requires_grad)}
    nd = out.ndim
    cl = (out.is_contiguous(torch.channels_last) if nd == 4 else
          out.is_contiguous(torch.channels_last_3d) if nd == 5 else None)
    return {"shape": [int(s) for s in out.shape], "dtype": str(out.dtype).replace("torch.", ""),
            "contiguous": bool(out.is_contiguous()), "channels_last": None if cl is None else
            bool(cl), "requires_grad": bool(out.requires_grad)}


# --------------------------------------------------------------------------------------
# torch


def _module(case: dict) -> torch.nn.Module:
    ctor = dict(case["ctor"])
    if "dtype" in ctor:
        ctor["dtype"] = DTYPES[ctor["dtype"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = getattr(torch.nn, case["cls"])(**ctor)
    mf = case.get("module_mf", "contiguous")
    if mf != "contiguous":
        m = m.to(memory_format=MF[mf])
    return m


def torch_module_ctor(case: dict) -> dict | None:
    """The constructor's error (in-process: no convolution runs), or None."""
    try:
        _module(case)
    except Exception as e:  # noqa: BLE001 - torch's answer
        return error(e)
    return None


def torch_run(case: dict) -> dict:
    """Run a case with torch (call this in the worker process)."""
    kind = case.get("kind", "functional")
    with flags(case):
        try:
            if kind == "pad":
                x = tensor_of(case["input"])
                out = torch.nn.functional.pad(x, case["pad"], mode=case["mode"],
                                              value=case.get("value"))
            elif kind == "module":
                m = _module(case)
                x = tensor_of(case["input"])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if case.get("output_size") is not None:
                        out = m(x, output_size=case["output_size"])
                    else:
                        out = m(x)
            else:
                fn = getattr(torch.nn.functional, case["fn"])
                out = fn(tensor_of(case["input"]), tensor_of(case["weight"]),
                         tensor_of(case.get("bias")), **case["args"])
        except Exception as e:  # noqa: BLE001 - torch's answer, whatever it is
            return error(e)
    return describe(out)


class FunctionalWorker(ConvWorker):
    """:class:`tests.oracle.ConvWorker` serving :func:`torch_run` instead."""

    def _start(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-W", "ignore", "-c",
             "import tests.oracle_functional as o; o._serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=root)


def _serve() -> None:  # pragma: no cover - runs in the worker
    for line in sys.stdin:
        case = json.loads(line)
        sys.stdout.write(json.dumps(torch_run(case)) + "\n")
        sys.stdout.flush()


# --------------------------------------------------------------------------------------
# symconv


def _env(case: dict):
    from symconv import Environment
    with flags(case):
        return Environment.from_torch()


def symconv_run(case: dict, *, via: str = "spec") -> dict:
    """symconv's answer for a case. ``via`` (modules): "spec" (check_module_args) or
    "instance" (a real module built in-process, read as specs)."""
    import symconv
    from symconv import functional as SF
    env = _env(case)
    kind = case.get("kind", "functional")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "pad":
                out = SF.pad(spec_of(case["input"]), case["pad"], mode=case["mode"],
                             value=case.get("value"), env=env)
            elif kind == "module":
                if via == "instance":
                    m = _module(case)
                else:
                    ctor = dict(case["ctor"])
                    if "dtype" in ctor:
                        ctor["dtype"] = DTYPES[ctor["dtype"]]
                    m = symconv.check_module_args(case["cls"], **ctor)
                out = symconv.module_output(m, spec_of(case["input"]),
                                            output_size=case.get("output_size"), env=env)
            else:
                fn = SF.FUNCTIONS[case["fn"]]
                out = fn(spec_of(case["input"]), spec_of(case["weight"]),
                         spec_of(case.get("bias")), **case["args"], env=env)
    except Exception as e:  # noqa: BLE001 - compared with torch's
        return error(e)
    return describe(out)


@contextlib.contextmanager
def worker():
    w = FunctionalWorker()
    try:
        yield w
    finally:
        w.close()


def compare(case: dict, w: FunctionalWorker, *, via: str = "spec") -> tuple[dict, dict]:
    """(torch's answer, symconv's answer) for a case."""
    want = None
    if case.get("kind") == "module":
        want = torch_module_ctor(case)
    if want is None:
        want = w.run(case)
    got = symconv_run(case, via=via)
    return want, got


# --------------------------------------------------------------------------------------
# PyTorch's OpInfo entries (torch.testing._internal.common_methods_invocations.op_db)

OPINFO_NAMES = tuple(f"nn.functional.{f}" for f in FUNCTIONAL)


def _tdict(t: torch.Tensor) -> dict:
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
            "strides": list(t.stride()), "requires_grad": bool(t.requires_grad)}


def _jsonify(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return {"tensor": _tdict(x)}
    if isinstance(x, (tuple, list, torch.Size)):
        return [_jsonify(v) for v in x]
    if isinstance(x, dict):
        return {k: _jsonify(v) for k, v in x.items()}
    return x


def _opinfo_items(dtypes: list[str], requires_grad: list[bool]):
    """Every (op name, kind, SampleInput, error regex) of the conv OpInfos, in a fixed order."""
    from torch.testing._internal.common_methods_invocations import op_db
    ops = sorted((o for o in op_db if o.name in OPINFO_NAMES),
                 key=lambda o: (o.name, o.variant_test_name))
    for o in ops:
        supported = {str(d).replace("torch.", "") for d in o.supported_dtypes("cpu")}
        for dt in dtypes:
            if dt not in supported:
                continue
            for rg in requires_grad:
                if rg and not (DTYPES[dt].is_floating_point or DTYPES[dt].is_complex):
                    continue
                torch.manual_seed(0)
                for s in o.sample_inputs("cpu", DTYPES[dt], requires_grad=rg):
                    yield o, "sample", s, None, None
        if o.error_inputs_func is not None:
            torch.manual_seed(0)
            for e in o.error_inputs("cpu"):
                yield o, "error", e.sample_input, e.error_type.__name__, e.error_regex


def opinfo_serve(start: int, dtypes: list[str],
                 requires_grad: list[bool]) -> None:  # pragma: no cover
    """Worker: one JSON line per OpInfo item from ``start`` on (torch runs the op here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (o, kind, s, etype_, regex) in enumerate(_opinfo_items(dtypes, requires_grad)):
            if i < start:
                continue
            item = {"index": i, "op": o.name, "kind": kind, "input": _tdict(s.input),
                    "args": _jsonify(list(s.args)), "kwargs": _jsonify(dict(s.kwargs)),
                    "error_type": etype_, "error_regex": regex}
            try:
                out = o.op(s.input, *s.args, **s.kwargs)
                item["torch"] = describe(out)
            except Exception as e:  # noqa: BLE001 - torch's answer
                item["torch"] = error(e)
            sys.stdout.write(json.dumps(item) + "\n")
            sys.stdout.flush()


def collect_opinfo(dtypes: list[str], requires_grad: list[bool], timeout: float = 600) -> list:
    """Torch's answers for every conv OpInfo sample and error input (from a subprocess that is
    restarted past a sample that crashes it)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    items: list = []
    start = 0
    while True:
        code = ("import tests.oracle_functional as o; "
                f"o.opinfo_serve({start}, {dtypes!r}, {requires_grad!r})")
        proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                              text=True, env=env, cwd=root, timeout=timeout)
        lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
        items.extend(lines)
        if proc.returncode == 0:
            return items
        crashed = lines[-1]["index"] + 1 if lines else start
        items.append({"index": crashed, "crash": proc.returncode, "stderr": proc.stderr[-2000:]})
        start = crashed + 1


def symconv_opinfo(item: dict) -> dict:
    """symconv's answer for a collected OpInfo item."""
    from symconv import TensorSpec
    from symconv import functional as SF

    def spec(d):
        return TensorSpec(tuple(d["shape"]), dtype=DTYPES[d["dtype"]],
                          requires_grad=d["requires_grad"], strides=tuple(d["strides"]))

    def unjson(x):
        if isinstance(x, dict) and "tensor" in x:
            return spec(x["tensor"])
        if isinstance(x, list):
            return [unjson(v) for v in x]
        if isinstance(x, dict):
            return {k: unjson(v) for k, v in x.items()}
        return x

    fn = SF.FUNCTIONS[item["op"].split(".")[-1]]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn(spec(item["input"]), *unjson(item["args"]), **unjson(item["kwargs"]))
    except Exception as e:  # noqa: BLE001
        return error(e)
    return describe(out)
