"""Overhead of ``symconv.convolution`` over ``torch.convolution`` on ResNet-50's conv layers.

Both run side by side in one process, on the same tensors, alternating (torch, symconv,
symconv, torch, ...) so that load on the machine hits both alike. Each layer shape of a
torchvision ResNet-50 (v1.5: stride on the 3x3 convolutions) is timed at every batch size; the
"network" line sums the per-layer times over all 53 convolutions (weighted by how often each
shape occurs), and a "sequence" line times the 53 convolutions run back to back. Times are the
minimum over the alternating timings (robust on a shared, throttled machine: a timing can only
be slowed down by load); the median is kept in the JSON. "paired" is the median difference
between each symconv timing and the torch timing next to it, relative to torch's time. A
"dispatch" line measures the fixed per-call cost alone, on a convolution whose kernel takes next
to nothing; "estimate" is what 53 such costs add to the network's time.

    python3 benchmarks/lower_bench.py                       # CPU, batch 1 and 32
    python3 benchmarks/lower_bench.py --device cuda --dtype float16 --channels-last
    python3 benchmarks/lower_bench.py --json out.json       # also write the numbers
    python3 benchmarks/lower_bench.py --native              # the compiled warm path

Inference (no autograd): both get tensors that do not require grad. The first call of each
shape fills symconv's plan cache (and oneDNN's / cuDNN's own caches); warm-up calls are not
timed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

import symconv

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resnet50_convs(size: int = 224) -> list[dict]:
    """The 53 convolutions of torchvision's resnet50, in order: in/out channels, kernel, stride,
    padding and the input's spatial size."""
    layers = [dict(cin=3, cout=64, k=7, s=2, p=3, hw=size)]
    hw = size // 4  # after the stride-2 stem and the max-pool
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        cout = width * 4
        for b in range(blocks):
            s = stride if b == 0 else 1
            layers.append(dict(cin=cin, cout=width, k=1, s=1, p=0, hw=hw))
            layers.append(dict(cin=width, cout=width, k=3, s=s, p=1, hw=hw))
            hw_out = (hw + 2 - 3) // s + 1
            layers.append(dict(cin=width, cout=cout, k=1, s=1, p=0, hw=hw_out))
            if b == 0:
                layers.append(dict(cin=cin, cout=cout, k=1, s=s, p=0, hw=hw))
            cin, hw = cout, hw_out
    assert len(layers) == 53
    return layers


def _name(layer: dict) -> str:
    return (f"{layer['cin']}->{layer['cout']} k{layer['k']} s{layer['s']} "
            f"@{layer['hw']}x{layer['hw']}")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn, number: int, device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / number


PARAMS = {"type": tuple}


def _params(args: tuple) -> tuple:
    """The int parameters as tuples (what nn.Conv2d passes) or, with --list-params, lists."""
    conv = PARAMS["type"]
    return tuple(conv(a) if isinstance(a, tuple) else a for a in args)


def _calls(layer: dict, batch: int, device: str, dtype, channels_last: bool):
    x = torch.randn(batch, layer["cin"], layer["hw"], layer["hw"], device=device, dtype=dtype)
    w = torch.randn(layer["cout"], layer["cin"], layer["k"], layer["k"], device=device,
                    dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
    s, p = (layer["s"],) * 2, (layer["p"],) * 2
    args = _params((x, w, None, s, p, (1, 1), False, (0, 0), 1))
    return (lambda: torch.convolution(*args)), (lambda: symconv.convolution(*args)), args


def _number(fn, device: str, min_time: float) -> int:
    """Calls per timing so that one timing lasts about ``min_time`` seconds."""
    t = _time(fn, 1, device)
    return max(1, min(2000, int(min_time / max(t, 1e-7))))


def bench_batch(batch: int, device: str, dtype, channels_last: bool, repeat: int,
                min_time: float) -> dict:
    layers = resnet50_convs()
    counts: dict[str, int] = {}
    shapes: dict[str, dict] = {}
    for layer in layers:
        counts[_name(layer)] = counts.get(_name(layer), 0) + 1
        shapes.setdefault(_name(layer), layer)
    rows = []
    for name, layer in shapes.items():
        f_torch, f_sym, args = _calls(layer, batch, device, dtype, channels_last)
        with torch.no_grad():
            ref, got = f_torch(), f_sym()  # warm-up, and the two must agree exactly
            same = bool(torch.equal(ref, got))
            backend = symconv.lowering.plan(*args).backend.name
            for _ in range(2):
                f_torch(), f_sym()
            number = _number(f_torch, device, min_time)
            ts, tt = [], []
            for r in range(repeat):
                order = (f_torch, f_sym) if r % 2 == 0 else (f_sym, f_torch)
                for f in order:
                    (tt if f is f_torch else ts).append(_time(f, number, device))
        t_torch, t_sym = min(tt), min(ts)
        # paired: each symconv timing against the torch timing next to it
        diff = statistics.median(s_ - t_ for s_, t_ in zip(ts, tt))
        rows.append(dict(layer=name, count=counts[name], backend=backend, identical=same,
                         paired_diff_us=diff * 1e6, paired_pct=diff / t_torch * 100,
                         torch_us=t_torch * 1e6, symconv_us=t_sym * 1e6,
                         overhead_pct=(t_sym / t_torch - 1) * 100, number=number,
                         torch_median_us=statistics.median(tt) * 1e6,
                         symconv_median_us=statistics.median(ts) * 1e6))
        del args, ref, got
    total_torch = sum(r["torch_us"] * r["count"] for r in rows)
    total_sym = sum(r["symconv_us"] * r["count"] for r in rows)
    seq = _sequence(layers, batch, device, dtype, channels_last, repeat)
    paired = sum(r["paired_diff_us"] * r["count"] for r in rows)
    return dict(batch=batch, rows=rows, network_torch_us=total_torch,
                network_symconv_us=total_sym,
                network_overhead_pct=(total_sym / total_torch - 1) * 100,
                network_paired_pct=paired / total_torch * 100, sequence=seq)


def _sequence(layers, batch, device, dtype, channels_last, repeat) -> dict:
    """The 53 convolutions back to back (one forward pass's worth of convolutions)."""
    calls = [_calls(layer, batch, device, dtype, channels_last) for layer in layers]

    def run_torch():
        for f, _, _ in calls:
            f()

    def run_sym():
        for _, f, _ in calls:
            f()
    # the floor of any plan cache kept in Python, in this sequence: per call, the two tensors'
    # sizes and strides, a 4-part key, one dict lookup and the kernel symconv's warm path calls
    table = {}
    with torch.no_grad():
        for _, _, args in calls:
            x, w = args[0], args[1]
            fn, pre, post = symconv.lowering._fast_entry(symconv.lowering.plan(*args), False,
                                                         None, None)
            extra = (None,) if pre is None else (pre if post is None else pre + (None,) + post)
            table[(x.shape, x.stride(), w.shape, w.stride())] = (fn, extra)
    floor_args = [args[:2] for _, _, args in calls]

    def run_floor():
        for x, w in floor_args:
            f, a = table[(x.shape, x.stride(), w.shape, w.stride())]
            f(x, w, *a)
    runs = {"torch": run_torch, "symconv": run_sym, "floor": run_floor}
    times: dict[str, list] = {k: [] for k in runs}
    with torch.no_grad():
        for f in runs.values():
            f()
        names = list(runs)
        for r in range(repeat):
            for k in (names if r % 2 == 0 else names[::-1]):
                times[k].append(_time(runs[k], 1, device))
    tt, ts, tf = times["torch"], times["symconv"], times["floor"]
    return dict(torch_ms=min(tt) * 1e3, symconv_ms=min(ts) * 1e3,
                overhead_pct=(min(ts) / min(tt) - 1) * 100, floor_ms=min(tf) * 1e3,
                floor_overhead_pct=(min(tf) / min(tt) - 1) * 100,
                torch_median_ms=statistics.median(tt) * 1e3,
                symconv_median_ms=statistics.median(ts) * 1e3)


def dispatch(device: str, dtype, channels_last: bool = False, repeat: int = 30,
             number: int = 500) -> dict:
    """The fixed per-call cost: a 1x1 convolution of one element, and a ladder of what a
    Python wrapper cannot avoid, on the same tensors:

    * ``torch``: ``torch.convolution`` (torch's C++ front-end, then the kernel);
    * ``kernel``: the kernel symconv's warm path calls, called directly (``fn(x, w, *args)``:
      no front-end at all);
    * ``wrapper``: a bare Python function with ``torch.convolution``'s signature that calls
      that kernel (the cost of one Python call);
    * ``lookup``: that wrapper plus the least a cache of plans must read: the two tensors'
      sizes and strides, a 4-part key and one dict lookup;
    * ``symconv``: ``symconv.convolution`` (warm)."""
    x = torch.randn(1, 1, 1, 1, device=device, dtype=dtype)
    w = torch.randn(1, 1, 1, 1, device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
    args = _params((x, w, None, (1, 1), (0, 0), (1, 1), False, (0, 0), 1))
    lowering = symconv.lowering
    with torch.no_grad():
        pl = lowering.plan(*args)
        fn, pre, post = lowering._fast_entry(pl, False, None, None)
    if pre is None:  # the kernel is reached through a closure (group split, copies, ...)
        extra = (None,)
    else:
        extra = pre if post is None else pre + (None,) + post

    def wrapped(input, weight, bias=None, stride=1, padding=0, dilation=1, transposed=False,
                output_padding=0, groups=1):
        return fn(input, weight, *extra)
    table = {(x.shape, x.stride(), w.shape, w.stride()): (fn, extra)}

    def looked_up(input, weight, bias=None, stride=1, padding=0, dilation=1,
                  transposed=False, output_padding=0, groups=1):
        f, a = table[(input.shape, input.stride(), weight.shape, weight.stride())]
        return f(input, weight, *a)
    fns = {"torch": lambda: torch.convolution(*args), "kernel": lambda: fn(x, w, *extra),
           "wrapper": lambda: wrapped(*args), "lookup": lambda: looked_up(*args),
           "symconv": lambda: symconv.convolution(*args)}
    times: dict[str, list] = {k: [] for k in fns}
    with torch.no_grad():
        for f in fns.values():
            f()
        names = list(fns)
        for r in range(repeat):
            for k in (names if r % 2 == 0 else names[::-1]):
                times[k].append(_time(fns[k], number, device))
    out = {f"{k}_us": min(v) * 1e6 for k, v in times.items()}
    out["backend"] = pl.backend.name
    out["extra_us"] = out["symconv_us"] - out["torch_us"]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--repeat", type=int, default=15, help="alternating timings per layer")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--min-time", type=float, default=0.02,
                    help="seconds per timing (calls are repeated to last about this long)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--list-params", action="store_true",
                    help="pass stride, padding, ... as lists (default: tuples, as nn.Conv2d "
                    "does; symconv then converts them for its cache key)")
    ap.add_argument("--native", action="store_true",
                    help="the compiled warm path (symconv.native.enable(); builds it on first "
                    "use: a C++ compiler and ninja are needed)")
    ap.add_argument("--dispatch-only", action="store_true",
                    help="only the per-call cost (the 1-element convolution)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    PARAMS["type"] = list if args.list_params else tuple
    if args.native:
        import symconv.native
        symconv.native.enable()
    dtype = DTYPES[args.dtype]
    card = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or \
        platform.machine()
    info = dict(torch=torch.__version__, device=args.device, card=card, dtype=args.dtype,
                channels_last=args.channels_last, threads=torch.get_num_threads(),
                python=sys.version.split()[0], repeat=args.repeat, min_time=args.min_time,
                params="list" if args.list_params else "tuple",
                warm_path="compiled (symconv.native)" if args.native else "python")
    print(f"symconv.convolution vs torch.convolution, ResNet-50 conv layers: torch "
          f"{info['torch']}, {args.device} ({card}), {args.dtype}"
          f"{', channels_last' if args.channels_last else ''}, {info['threads']} threads, "
          f"parameters as {info['params']}s, {info['warm_path']} warm path; "
          f"minimum of {args.repeat} alternating timings")
    disp = dispatch(args.device, dtype, args.channels_last)
    print(f"dispatch (1-element conv, {disp['backend']}): torch {disp['torch_us']:.2f} us, "
          f"symconv {disp['symconv_us']:.2f} us: {disp['extra_us']:.2f} us more per call")
    print("  the floor, same tensors: kernel called directly "
          f"{disp['kernel_us']:.2f} us; from a bare Python function {disp['wrapper_us']:.2f} us; "
          f"+ a sizes/strides key and a dict lookup {disp['lookup_us']:.2f} us")
    if args.dispatch_only:
        out = dict(info=info, dispatch=disp, results=[])
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
        return out
    results = []
    for batch in args.batches:
        res = bench_batch(batch, args.device, dtype, args.channels_last, args.repeat,
                          args.min_time)
        results.append(res)
        print(f"\nbatch {batch}")
        print(f"{'layer':28s} {'n':>2s} {'backend':15s} {'torch us':>10s} {'symconv us':>11s} "
              f"{'overhead':>9s} {'paired':>8s}")
        for r in res["rows"]:
            flag = "" if r["identical"] else "  (results differ!)"
            print(f"{r['layer']:28s} {r['count']:2d} {r['backend']:15s} {r['torch_us']:10.1f} "
                  f"{r['symconv_us']:11.1f} {r['overhead_pct']:8.2f}% {r['paired_pct']:7.2f}%"
                  f"{flag}")
        print(f"{'network (sum of 53 layers)':47s} {res['network_torch_us']:10.1f} "
              f"{res['network_symconv_us']:11.1f} {res['network_overhead_pct']:8.2f}% "
              f"{res['network_paired_pct']:7.2f}%")
        sq = res["sequence"]
        print(f"{'sequence (53 back to back), ms':47s} {sq['torch_ms']:10.3f} "
              f"{sq['symconv_ms']:11.3f} {sq['overhead_pct']:8.2f}%")
        print(f"{'  its floor (sizes/strides key + lookup), ms':47s} {sq['torch_ms']:10.3f} "
              f"{sq['floor_ms']:11.3f} {sq['floor_overhead_pct']:8.2f}%")
        # what the fixed per-call cost alone adds to the 53 convolutions (not noise-limited)
        res["estimate_pct"] = 53 * disp["extra_us"] / res["network_torch_us"] * 100
        print(f"{'estimate: 53 x dispatch cost / network time':58s} "
              f"{res['estimate_pct']:8.2f}%")
    out = dict(info=info, dispatch=disp, results=results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
