"""Do ``symconv.convolution`` and ``torch.convolution`` launch the same kernels? (GPU only)

For four ResNet-50 layer shapes, float32 and float16 channels-last, batch 1 and 32: the CUDA
kernels each launches (``torch.profiler``), with their counts and mean device times, and a rough
per-call CPU issue time and stream time from 7 loops of 100 calls. The issue/stream columns run
between profiler sessions and right after them, which slows both sides (20-50 us per call where
``lower_bench.py`` measures 12-25 us): use ``lower_bench.py`` for the overhead; this script
answers only which kernels run.

    python3 benchmarks/lower_kernels.py
"""
import sys
import time

import torch

import symconv

torch.set_grad_enabled(False)
dev = "cuda"
LAYERS = [("64->64 k1 @56", 64, 64, 1, 1, 0, 56), ("64->256 k1 @56", 64, 256, 1, 1, 0, 56),
          ("256->256 k3 @14", 256, 256, 3, 1, 1, 14), ("512->2048 k1 @7", 512, 2048, 1, 1, 0, 7)]
for dtype, cl in ((torch.float32, False), (torch.float16, True)):
    for batch in (1, 32):
        for name, cin, cout, k, s, p, hw in LAYERS:
            x = torch.randn(batch, cin, hw, hw, device=dev, dtype=dtype)
            w = torch.randn(cout, cin, k, k, device=dev, dtype=dtype)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
                w = w.contiguous(memory_format=torch.channels_last)
            args = (x, w, None, [s, s], [p, p], [1, 1], False, [0, 0], 1)
            # both lambdas are timed within this iteration, so reading `args` late is fine
            fns = {"torch": lambda: torch.convolution(*args),  # noqa: B023
                   "symconv": lambda: symconv.convolution(*args)}  # noqa: B023
            res = {}
            for tag, f in fns.items():
                for _ in range(20):
                    f()
                torch.cuda.synchronize()
                cpu, gpu = [], []
                for _rep in range(7):
                    n = 100
                    e0 = torch.cuda.Event(enable_timing=True)
                    e1 = torch.cuda.Event(enable_timing=True)
                    torch.cuda.synchronize()
                    e0.record()
                    t0 = time.perf_counter()
                    for _ in range(n):
                        f()
                    t1 = time.perf_counter()
                    e1.record()
                    torch.cuda.synchronize()
                    cpu.append((t1 - t0) / n * 1e6)
                    gpu.append(e0.elapsed_time(e1) / n * 1e3)
                # device time of the kernels alone
                cuda_activity = torch.profiler.ProfilerActivity.CUDA
                with torch.profiler.profile(activities=[cuda_activity]) as prof:
                    for _ in range(50):
                        f()
                    torch.cuda.synchronize()
                kern = {}
                for evt in prof.key_averages():
                    if evt.device_type == torch.autograd.DeviceType.CUDA and evt.count:
                        kern[evt.key[:60]] = (evt.count, evt.device_time_total / evt.count)
                res[tag] = (min(cpu), min(gpu), kern)
            t, sy = res["torch"], res["symconv"]
            print(f"{str(dtype)[6:]:8s} {'CL' if cl else '  '} b{batch:<3d} {name:16s} "
                  f"issue us: torch {t[0]:6.2f} symconv {sy[0]:6.2f} | stream us: torch "
                  f"{t[1]:6.2f} symconv {sy[1]:6.2f}")
            for tag in ("torch", "symconv"):
                for k_, (c, us) in res[tag][2].items():
                    print(f"      {tag:7s} {c:4d} x {us:7.2f} us  {k_}")
            sys.stdout.flush()
