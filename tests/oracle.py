"""The torch side of the differential tests: what the installed torch answers for a case.

A *case* is a JSON-able dict (see ``tests/strategies.py``). Selection and memory format are
asked in-process (they run no kernel); ``torch.convolution`` runs in a worker subprocess that is
restarted when torch crashes (oneDNN can segfault on valid input), and a crash is reported as
torch's answer.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import warnings

import torch

# symconv is imported where it is used: the worker process only needs torch (fast start).

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "float16": torch.float16, "complex64": torch.complex64, "complex128": torch.complex128,
          "int64": torch.int64}
MF = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last,
      "channels_last_3d": torch.channels_last_3d}
MF_NAME = {torch.contiguous_format: "contiguous", torch.channels_last: "channels_last",
           torch.channels_last_3d: "channels_last_3d", torch.preserve_format: "preserve"}

HUGE = 2**24  # tensors with more elements are built with expand() from one element


def tensor_spec(t: dict | None):
    from symconv import TensorSpec
    if t is None:
        return None
    strides = t.get("strides")
    if strides is None and _numel(t["shape"]) > HUGE:
        strides = [0] * len(t["shape"])  # build_tensor expands one element
    return TensorSpec(tuple(t["shape"]), dtype=DTYPES[t.get("dtype", "float32")],
                      requires_grad=t.get("requires_grad", False),
                      memory_format=MF[t.get("memory_format", "contiguous")],
                      strides=tuple(strides) if strides is not None else None)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def build_tensor(t: dict | None) -> torch.Tensor | None:
    if t is None:
        return None
    tensor_spec(t)  # a malformed case fails here (TensorSpec checks it)
    shape = tuple(t["shape"])
    numel = 1
    for s in shape:
        numel *= s
    dtype = DTYPES[t.get("dtype", "float32")]
    if t.get("strides") is not None:
        x = torch.empty(1, dtype=dtype).as_strided(shape, tuple(t["strides"]))
    elif numel > HUGE:
        x = torch.empty(1, dtype=dtype).expand(shape)
    else:
        x = torch.empty(shape, dtype=dtype, memory_format=MF[t.get("memory_format", "contiguous")])
        x.zero_()
        if dtype.is_floating_point:
            x.uniform_(-1, 1)
    if t.get("requires_grad"):
        x.requires_grad_(True)
    return x


@contextlib.contextmanager
def flags(case: dict):
    f = case.get("flags", {})
    old_threads = torch.get_num_threads()
    with contextlib.ExitStack() as st:
        st.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        st.enter_context(torch.backends.mkldnn.flags(enabled=f.get("mkldnn", True)))
        st.enter_context(torch.backends.nnpack.flags(enabled=f.get("nnpack", True)))
        st.enter_context(torch.backends.cudnn.flags(enabled=f.get("cudnn", True),
                                                    deterministic=f.get("deterministic", False),
                                                    benchmark=False))
        st.enter_context(torch.set_grad_enabled(f.get("grad", True)))
        torch.set_num_threads(f.get("threads", 1))
        try:
            yield
        finally:
            torch.set_num_threads(old_threads)


def args(case: dict):
    return (build_tensor(case["input"]), build_tensor(case["weight"]),
            build_tensor(case.get("bias")),
            case["stride"], case["padding"], case["dilation"], case["transposed"],
            case["output_padding"], case["groups"])


def first_line(e: BaseException) -> str:
    s = str(e)
    return s.splitlines()[0] if s else ""


def torch_select(case: dict) -> dict:
    """Backend and memory format from the installed torch (in-process: no kernel runs)."""
    with flags(case):
        a = args(case)
        try:
            raw = torch._C._select_conv_backend(*a)
        except Exception as e:  # noqa: BLE001 - torch's answer, whatever it is
            return {"error": type(e).__name__, "message": first_line(e)}
        from symconv import ConvBackend
        be = ConvBackend.from_torch(raw)
        mf = torch._C._conv_determine_backend_memory_format(a[0], a[1], raw)
        return {"backend": be.name, "memory_format": MF_NAME[mf]}


def symconv_env():
    from symconv import Environment
    return Environment.from_torch()


def _symconv_call(case: dict):
    """symconv's Environment for the case's flags, and the case's arguments as TensorSpecs."""
    from symconv import Environment
    with flags(case):
        env = Environment.from_torch()
    return env, (tensor_spec(case["input"]), tensor_spec(case["weight"]),
                 tensor_spec(case.get("bias")), case["stride"], case["padding"],
                 case["dilation"], case["transposed"], case["output_padding"], case["groups"])


def symconv_select(case: dict) -> dict:
    import symconv
    from symconv.errors import ConvValueError
    env, a = _symconv_call(case)
    try:
        be = symconv.select_conv_backend(*a, env=env)
    except (symconv.ConvError, ConvValueError, IndexError) as e:
        return {"error": type(e).__name__ if not isinstance(e, symconv.ConvError)
                else "RuntimeError", "message": first_line(e)}
    mf = symconv.determine_backend_memory_format(a[0], a[1], be, env=env)
    return {"backend": be.name, "memory_format": MF_NAME[mf]}


def symconv_convolution(case: dict) -> dict:
    import symconv
    from symconv.errors import ConvValueError
    env, a = _symconv_call(case)
    try:
        shape = symconv.convolution_output_shape(*a, env=env)
    except symconv.ConvError as e:
        return {"error": "RuntimeError" if type(e).__name__ in ("ConvError", "ConvShapeError")
                else type(e).__name__, "message": first_line(e)}
    except (ConvValueError, IndexError, NotImplementedError) as e:
        name = "ValueError" if isinstance(e, ConvValueError) else type(e).__name__
        return {"error": name, "message": first_line(e)}
    return {"shape": list(shape)}


def run_convolution(case: dict) -> dict:
    """Execute ``torch.convolution`` for a case (call this in a worker process)."""
    with flags(case):
        a = args(case)
        try:
            out = torch.convolution(*a)
        except Exception as e:  # noqa: BLE001
            name = type(e).__name__
            if name in ("OutOfMemoryError",):
                name = "RuntimeError"
            return {"error": name, "message": first_line(e)}
        return {"shape": list(out.shape)}


class ConvWorker:
    """A subprocess that runs ``torch.convolution`` for cases; survives torch crashes."""

    def __init__(self, env: dict | None = None, serve: str = "tests.oracle") -> None:
        self.proc: subprocess.Popen | None = None
        self.extra_env = dict(env or {})  # e.g. ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA
        # the module whose _serve() answers one JSON line per JSON line (other workers reuse
        # the crash handling, e.g. tests.trace_oracle runs whole models)
        self.serve = serve

    # proofs.worker is imported in these methods, not at the top: the worker process imports
    # this module and needs only torch (fast start); proofs would bring symconv in.

    def _start(self) -> None:
        from proofs.worker import spawn
        self.proc = spawn(f"import {self.serve} as o; o._serve()", env=self.extra_env)

    def run(self, case: dict) -> dict:
        from proofs.worker import ask
        self.start()
        assert self.proc is not None
        answer = ask(self.proc, case)
        if answer is None:
            code = self.proc.wait()
            self.proc = None
            return {"crash": code}
        return answer

    def start(self) -> ConvWorker:
        """Start the process now (it imports torch while the caller does other work)."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        return self

    def close(self) -> None:
        from proofs.worker import stop
        if self.proc is not None:
            stop(self.proc)
        self.proc = None


def worker_facts() -> dict:
    """What the worker's torch sees of the CPU (ask with ``ConvWorker.run({"query": 1})``)."""
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
            "mkldnn_fp16": bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())}


def serve(handler, catch: bool = False) -> None:  # pragma: no cover - runs in the worker
    """The worker's loop: one JSON answer line, ``handler(case)``, per JSON case line. With
    ``catch`` an exception of the handler is answered ``{"worker_error": "Type: message"}``
    and the worker keeps serving; without it the worker dies and the caller sees a crash."""
    for line in sys.stdin:
        case = json.loads(line)
        if catch:
            try:
                answer = handler(case)
            except Exception as e:  # noqa: BLE001 - report, keep serving
                answer = {"worker_error": f"{type(e).__name__}: {first_line(e)}"}
        else:
            answer = handler(case)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def _serve() -> None:  # pragma: no cover - runs in the worker
    serve(lambda case: worker_facts() if "query" in case else run_convolution(case))
