"""Replay counterexamples on the installed torch, and say what torch did.

A counterexample becomes a JSON-able *case* (tensor shapes, dtype, device, layout, memory
format, parameters, the environment profile it was found in, and what to run). Selection and
memory-format questions are asked in this process (they run no kernel); anything that runs a
kernel (``torch.convolution``, ``F.conv*`` with ``padding='same'``,
``_convolution_double_backward``) runs in a worker process, so that a torch crash is reported
as torch's answer instead of taking the run down.

A case found in an environment this torch cannot reproduce (CUDA, mobile, ARM, another CPU's
oneDNN support) is not run; for CUDA profiles the H100 records in ``tests/data`` (a repository
checkout has them) are searched for a recorded call with the same property.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import pathlib
import subprocess
import sys
import warnings
from typing import overload

import torch

from symconv import ConvBackend
from symconv.spec import MKLDNN_LAYOUT

from .worker import ask, spawn, stop

__all__ = ["Replayer", "run_case", "environment_match"]

_DT = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
       "bfloat16": torch.bfloat16}
_MF = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last,
       "channels_last_3d": torch.channels_last_3d}
_MF_NAME = {torch.contiguous_format: "contiguous_format", torch.channels_last: "channels_last",
            torch.channels_last_3d: "channels_last_3d", torch.preserve_format: "preserve_format"}
MAX_ELEMENTS = 2**25  # kernel runs and dense tensors above this are not attempted
KERNEL_TIMEOUT_S = 120
RECORDS = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "cuda_records.json.gz"


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else ""


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {_first_line(e)}"


# --------------------------------------------------------------------------------------
# Environments


def environment_match(env_name: str) -> tuple[bool, str]:
    """Whether the installed torch can stand for the profile ``env_name`` (with its flags set),
    and a note (the version stand-in, or why not)."""
    from symconv.env import Environment
    from .worlds import profile
    want = profile(env_name)
    with flags_for(env_name):
        have = Environment.from_torch()
    diffs = [f for f in ("cuda_available", "cudnn_version", "cuda_capability", "miopen_available",
                         "mkldnn_available", "nnpack_available", "mps_available",
                         "xnnpack_available", "mobile", "arm_neon", "mkldnn_enabled",
                         "nnpack_enabled", "num_threads", "mkldnn_bf16_supported",
                         "mkldnn_fp16_supported")
             if getattr(want, f) != getattr(have, f)]
    if diffs:
        why = ", ".join(f"{f}={getattr(want, f)!r} (here {getattr(have, f)!r})" for f in diffs[:3])
        return False, f"installed torch {have.torch_version} cannot stand for '{env_name}': {why}"
    note = ""
    if want.version != have.version:
        note = (f" standing in for torch {want.torch_version} (the CPU rules are the same; "
                "2.13 adds the groups > 0 and padding-bound checks)")
    return True, note


@contextlib.contextmanager
def flags_for(env_name: str):
    from .worlds import profile
    env = profile(env_name)
    old = torch.get_num_threads()
    with contextlib.ExitStack() as st:
        st.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        st.enter_context(torch.backends.mkldnn.flags(enabled=env.mkldnn_enabled))
        st.enter_context(torch.backends.nnpack.flags(enabled=env.nnpack_enabled))
        st.enter_context(torch.set_grad_enabled(env.grad_enabled))
        torch.set_num_threads(env.num_threads)
        try:
            yield
        finally:
            torch.set_num_threads(old)


# --------------------------------------------------------------------------------------
# Building tensors


@overload
def build(t: dict, *, allow_expand: bool = True) -> torch.Tensor: ...
@overload
def build(t: None, *, allow_expand: bool = True) -> None: ...
def build(t: dict | None, *, allow_expand: bool = True) -> torch.Tensor | None:
    if t is None:
        return None
    shape = tuple(int(s) for s in t["shape"])
    dtype = _DT[t.get("dtype", "float32")]
    n = _numel(shape)
    if t.get("strides") is not None:
        strides = tuple(int(s) for s in t["strides"])
        span = 1 + sum((s - 1) * st for s, st in zip(shape, strides) if s > 0)
        if n == 0:
            span = 1
        x = torch.zeros(max(span, 1), dtype=dtype).as_strided(shape, strides)
    elif n > MAX_ELEMENTS:
        if not allow_expand:
            raise MemoryError(f"the tensor would hold {n} elements")
        x = torch.zeros(1, dtype=dtype).expand(shape)
    else:
        x = torch.zeros(shape, dtype=dtype).contiguous(
            memory_format=_MF[t.get("memory_format", "contiguous")])
        if n and not dtype.is_complex:
            x.uniform_(-1, 1)
    if t.get("mkldnn"):
        x = x.to_mkldnn()
    if t.get("requires_grad"):
        x.requires_grad_(True)
    return x


def _args(case: dict, *, allow_expand: bool = True):
    return (build(case["input"], allow_expand=allow_expand),
            build(case["weight"], allow_expand=allow_expand),
            build(case.get("bias"), allow_expand=allow_expand), case["stride"], case["padding"],
            case["dilation"], case["transposed"], case["output_padding"], case["groups"])


def _describe_call(case: dict) -> str:
    i, w = case["input"], case["weight"]
    extra = [i.get("dtype", "float32")]
    if i.get("memory_format", "contiguous") != "contiguous":
        extra.append(i["memory_format"])
    if i.get("strides") is not None:
        extra.append(f"strides={list(i['strides'])}")
    if i.get("mkldnn"):
        extra.append("mkldnn")
    if i.get("requires_grad"):
        extra.append("requires_grad")
    s = (f"input {list(i['shape'])} ({', '.join(extra)}), weight {list(w['shape'])}, "
         f"stride={case['stride']}, padding={case['padding']}, dilation={case['dilation']}")
    if case["transposed"]:
        s += f", transposed, output_padding={case['output_padding']}"
    s += f", groups={case['groups']}"
    if case.get("bias") is not None:
        s += f", bias {list(case['bias']['shape'])}"
    if case.get("bias_sizes") is not None:
        s += f", bias_sizes={case['bias_sizes']}"
    return s


# --------------------------------------------------------------------------------------
# In-process answers (no kernel runs)


def _select(case: dict) -> str:
    a = _args(case)
    try:
        if case.get("bias_sizes") is not None:
            raw = torch._C._select_conv_backend(*a, case["bias_sizes"])
        else:
            raw = torch._C._select_conv_backend(*a)
    except Exception as e:  # noqa: BLE001 - torch's answer, whatever it is
        return f"_select_conv_backend raised {_err(e)}"
    be = ConvBackend.from_torch(raw)
    mf = torch._C._conv_determine_backend_memory_format(a[0], a[1], raw)
    return f"_select_conv_backend -> {be.name} (memory format {_MF_NAME[mf]})"


def _symconv_select(case: dict) -> str:
    import symconv
    from symconv.errors import ConvValueError
    from .worlds import profile
    env = profile(case["env"])
    a = _spec_args(case)
    try:
        be = symconv.select_conv_backend(*a, env=env, need_backward=case.get("need_backward"),
                                         bias_sizes=case.get("bias_sizes"))
    except (symconv.ConvError, ConvValueError, IndexError) as e:
        kind = "RuntimeError" if isinstance(e, symconv.ConvError) else type(e).__name__
        return f"_select_conv_backend raised {kind}: {_first_line(e)}"
    mf = symconv.determine_backend_memory_format(a[0], a[1], be, env=env)
    return f"_select_conv_backend -> {be.name} (memory format {_MF_NAME[mf]})"


def _spec_args(case: dict):
    from symconv import TensorSpec

    def spec(t):
        if t is None:
            return None
        return TensorSpec(tuple(t["shape"]), dtype=_DT[t.get("dtype", "float32")],
                          device=t.get("device", "cpu"),
                          requires_grad=t.get("requires_grad", False),
                          memory_format=_MF[t.get("memory_format", "contiguous")],
                          layout=MKLDNN_LAYOUT if t.get("mkldnn") else torch.strided,
                          strides=tuple(t["strides"]) if t.get("strides") is not None else None)
    return (spec(case["input"]), spec(case["weight"]), spec(case.get("bias")), case["stride"],
            case["padding"], case["dilation"], case["transposed"], case["output_padding"],
            case["groups"])


def _unbatched(case: dict) -> str:
    """An unbatched input as F.conv*d batches it (unsqueeze(0)) vs the batch-1 tensor."""
    u = case["unbatched"]
    shape = tuple(u["shape"])
    dtype = _DT[u.get("dtype", "float32")]
    span = 1 + sum((s - 1) * st for s, st in zip(shape, u["strides"]) if s > 0)
    x = torch.zeros(max(span, 1), dtype=dtype).as_strided(shape, tuple(u["strides"]))
    xb = x.unsqueeze(0)
    bshape = (1,) + shape
    bstrides = tuple(case["batched_strides"])
    b1 = torch.zeros(1 + sum((n - 1) * st for n, st in zip(bshape, bstrides) if n > 0),
                     dtype=dtype).as_strided(bshape, bstrides)
    w = build(case["weight"])
    out = []
    for label, t in (("unbatched input (as F.conv batches it, strides "
                      f"{list(xb.stride())})", xb),
                     (f"batch-1 {case['batched_memory_format']} input (strides "
                      f"{list(b1.stride())})", b1)):
        try:
            raw = torch._C._select_conv_backend(t, w, None, case["stride"], case["padding"],
                                                case["dilation"], False, case["output_padding"],
                                                case["groups"])
            mf = torch._C._conv_determine_backend_memory_format(t, w, raw)
            out.append(f"{label}: {ConvBackend.from_torch(raw).name}, {_MF_NAME[mf]}")
        except Exception as e:  # noqa: BLE001
            out.append(f"{label}: raised {_err(e)}")
    return "; ".join(out)


# --------------------------------------------------------------------------------------
# Kernel runs (in the worker process)


def run_case(case: dict) -> dict:
    """Run what ``case['run']`` names; returns {'result': text}. Called in the worker."""
    kind = case["run"]
    with flags_for(case["env"]):
        try:
            if kind == "convolution":
                a = _args(case, allow_expand=False)
                out = torch.convolution(*a)
                return {"result": f"torch.convolution returned shape {list(out.shape)}"}
            if kind == "same":
                import torch.nn.functional as F
                x = build(case["input"], allow_expand=False)
                w = build(case["weight"], allow_expand=False)
                fn = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[w.dim()]
                out = fn(x, w, None, 1, "same", case["dilation"], case["groups"])
                return {"result": f"F.conv{w.dim() - 2}d(padding='same') returned shape "
                                  f"{list(out.shape)}"}
            if kind == "double_backward":
                a = _args(case, allow_expand=False)
                x, w = a[0], a[1]
                go_shape = case["grad_output"]
                go = torch.randn(go_shape)
                ggI = torch.randn(x.shape)
                ggW = torch.randn(w.shape)
                res = torch.ops.aten._convolution_double_backward(
                    ggI, ggW, None, go, w, x, case["stride"], case["padding"], case["dilation"],
                    case["transposed"], case["output_padding"], case["groups"],
                    [True, True, True])
                names = ("ggO", "gI", "gW")
                parts = [f"{n}={'undefined' if r is None else list(r.shape)}"
                         for n, r in zip(names, res)]
                return {"result": "_convolution_double_backward returned " + ", ".join(parts)}
        except Exception as e:  # noqa: BLE001 - torch's answer
            name = "convolution" if kind == "convolution" else kind
            return {"result": f"{name} raised {_err(e)}"}
    return {"result": f"unknown run kind {kind!r}"}


def _serve() -> None:  # pragma: no cover - runs in the worker
    for line in sys.stdin:
        case = json.loads(line)
        try:
            out = run_case(case)
        except BaseException as e:  # noqa: BLE001
            out = {"result": f"worker error {_err(e)}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


class Replayer:
    """Replays cases; starts the kernel worker on first need and keeps it for the run."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self._records: dict | None = None

    def _start(self) -> None:
        self.proc = spawn("from proofs.replay import _serve; _serve()", quiet=True)

    def start(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._start()

    def _kernel(self, case: dict) -> str:
        self.start()
        assert self.proc is not None
        answer = ask(self.proc, case)
        if answer is None:
            code = self.proc.wait()
            self.proc = None
            return f"torch crashed the worker process (exit status {code})"
        return answer["result"]

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        self.proc = None

    def replay(self, case: dict) -> str:
        """What the installed torch does with ``case`` (one line)."""
        ok, note = environment_match(case["env"])
        head = f"torch {torch.__version__}{note}"
        if not ok:
            rec = self.records_evidence(case)
            return f"not replayed: {note}" + (f"; {rec}" if rec else "")
        kind = case["run"]
        parts = []
        if kind == "unbatched":
            with flags_for(case["env"]):
                return f"{head}: {_unbatched(case)}"
        if kind in ("select", "convolution"):
            with flags_for(case["env"]):
                got = _select(case)
                ours = _symconv_select(case)
            parts.append(got)
            parts.append("symconv agrees" if got == ours else f"symconv says: {ours}")
        if kind in ("convolution", "same", "double_backward"):
            sizes = [case["input"]["shape"], case["weight"]["shape"]]
            if any(_numel(s) > MAX_ELEMENTS for s in sizes):
                parts.append(f"{kind} not run: the tensors would hold more than {MAX_ELEMENTS} "
                             "elements")
            else:
                parts.append(self._kernel(case))
        return f"{head}: {_describe_call(case)}: " + "; ".join(parts)

    # ---- recorded CUDA evidence
    def records_evidence(self, case: dict) -> str:
        probe = case.get("records_probe")
        if not probe or not RECORDS.exists():
            return ""
        if self._records is None:
            self._records = json.loads(gzip.decompress(RECORDS.read_bytes()))
        from . import records
        return records.find(self._records, probe)
