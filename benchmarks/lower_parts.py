"""Where the warm path's time goes on this host: what each part of a plan-cache key costs.

Times (timeit, GC off, minimum of 7) of each attribute and flag read the key makes, of building
the whole key and looking it up, of the kernel bindings (``torch.cudnn_convolution`` against
``torch.ops.aten.cudnn_convolution``), ``torch.convolution`` and ``symconv.convolution``, on a
1-element convolution (CUDA when available). ``old`` as the first argument imports symconv
from ``.gpuwork/old`` (a copy of an earlier checkout) instead of this one.

    python3 benchmarks/lower_parts.py

On the H100 host (torch 2.11): a flag read 21-49 ns, ``x.shape`` 125 ns, ``x.stride()`` 101 ns,
``x.dtype`` 55 ns, ``x.device`` 67 ns; the key's tensor and parameter parts 890 ns, built and
looked up 1293 ns;
``torch.cudnn_convolution`` 10.1 us, ``torch.ops.aten.cudnn_convolution.default`` 16.5 us.
"""
import sys
import timeit

import torch

which = sys.argv[1] if len(sys.argv) > 1 else "new"
if which == "old":
    sys.path.insert(0, ".gpuwork/old")
import symconv  # noqa: E402

print("symconv from", symconv.__file__)
dev = "cuda" if torch.cuda.is_available() else "cpu"
_C = torch._C
torch.set_grad_enabled(False)
x = torch.randn(1, 1, 1, 1, device=dev)
w = torch.randn(1, 1, 1, 1, device=dev)
s, p, d, op = [1, 1], [0, 0], [1, 1], [0, 0]
args = (x, w, None, s, p, d, False, op, 1)
symconv.convolution(*args)
key = (x.shape, x.stride(), x.dtype, x.device, False, w.shape, w.stride(), w.dtype, w.device,
       None, (1, 1), (0, 0), (1, 1), False, (0, 0), 1, None, False, True, False, False, False,
       True, None)
D = {key: 1}
cc = torch.cudnn_convolution
g = dict(globals())


def f9(a, b, c=None, d=1, e=0, f=1, g=False, h=0, i=1):
    return None


g["f9"] = f9
stmts = [
    "pass", "f9(*args)", "x.shape", "x.stride()", "x.dtype", "x.device", "x.requires_grad",
    "x.is_cuda", "x.get_device()", "tuple(s)", "type(s) is int",
    "_C._get_mkldnn_enabled()", "_C._get_nnpack_enabled()", "torch.get_num_threads()",
    "_C.is_grad_enabled()", "_C._get_cudnn_enabled()", "_C._get_cudnn_deterministic()",
    "_C._get_deterministic_algorithms()", "_C._get_cudnn_benchmark()",
    "_C._get_cudnn_allow_tf32()",
    "(x.shape, x.stride(), x.dtype, x.device, False, w.shape, w.stride(), w.dtype, w.device, "
    "None, tuple(s), tuple(p), tuple(d), False, tuple(op), 1, None, False, True, False, False, "
    "False, True, None)",
    "hash(key)", "D[key]",
    "D[(x.shape, x.stride(), x.dtype, x.device, False, w.shape, w.stride(), w.dtype, w.device, "
    "None, tuple(s), tuple(p), tuple(d), False, tuple(op), 1, None, False, True, False, False, "
    "False, True, None)]",
]
if dev == "cuda":
    stmts += [
        "cc(x, w, p, s, d, 1, False, False, True)",
        "torch.ops.aten.cudnn_convolution.default(x, w, p, s, d, 1, False, False, True)",
        "torch.ops.aten.cudnn_convolution(x, w, p, s, d, 1, False, False, True)",
        "torch.convolution(*args)",
        "symconv.convolution(*args)",
    ]
else:
    stmts += ["torch.convolution(*args)", "symconv.convolution(*args)"]
for st in stmts:
    n = 20000 if "conv" in st else 200000
    t = min(timeit.repeat(st, globals=g, number=n, repeat=7)) / n * 1e9
    if dev == "cuda":
        torch.cuda.synchronize()
    print(f"{which:4s} {t:9.1f} ns  {st[:100]}")
