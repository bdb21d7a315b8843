"""µs per call: symconv's int path vs torch._C._select_conv_backend, measured in one run.

Tensors (and TensorSpecs) are made outside the timed loops; both sides see the same arguments
and the same environment (symconv gets it once, as a caller holding an Environment would).
Run: python benchmarks/select_bench.py [--repeat 5] [--number 2000]
"""

from __future__ import annotations

import argparse
import statistics
import timeit

import torch

import symconv

CASES = {
    "resnet50 stem 8x3x224x224 k7 s2":
        ((8, 3, 224, 224), (64, 3, 7, 7), [2, 2], [3, 3], [1, 1], False, [0, 0], 1),
    "1x1 conv 32x256x56x56":
        ((32, 256, 56, 56), (64, 256, 1, 1), [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
    "depthwise 1x32x112x112":
        ((1, 32, 112, 112), (32, 1, 3, 3), [1, 1], [1, 1], [1, 1], False, [0, 0], 32),
    "conv1d 4x80x3000": ((4, 80, 3000), (384, 80, 3), [1], [1], [1], False, [0], 1),
    "transposed 2x64x32x32 s2":
        ((2, 64, 32, 32), (64, 32, 4, 4), [2, 2], [1, 1], [1, 1], True, [0, 0], 1),
    "conv3d 2x3x16x112x112":
        ((2, 3, 16, 112, 112), (64, 3, 3, 7, 7), [1, 2, 2], [1, 3, 3], [1, 1, 1], False,
         [0, 0, 0], 1),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--number", type=int, default=2000)
    args = ap.parse_args()
    env = symconv.Environment.from_torch()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"median of {args.repeat} x {args.number} calls")
    print("symconv cold: rules evaluated every call (cache cleared); warm: repeated call, "
          "answered from symconv's selection cache")
    print(f"{'case':36s} {'torch µs':>9s} {'cold µs':>9s} {'ratio':>7s} "
          f"{'warm µs':>9s} {'ratio':>7s}")
    ratios, cold_ratios = [], []
    from symconv import api
    for name, (ishape, wshape, s, p, d, tr, op, g) in CASES.items():
        x = torch.empty(ishape)
        w = torch.empty(wshape)
        xs, ws = symconv.TensorSpec.from_tensor(x), symconv.TensorSpec.from_tensor(w)
        want = symconv.ConvBackend.from_torch(
            torch._C._select_conv_backend(x, w, None, s, p, d, tr, op, g))
        got = symconv.select_conv_backend(xs, ws, None, s, p, d, tr, op, g, env=env)
        assert want == got, (name, want, got)
        # the timed functions run within this iteration, so reading the loop's names late is
        # fine (B023)
        t_torch = statistics.median(timeit.repeat(
            lambda: torch._C._select_conv_backend(x, w, None, s, p, d, tr, op, g),  # noqa: B023
            repeat=args.repeat, number=args.number)) / args.number * 1e6
        t_sym = statistics.median(timeit.repeat(
            lambda: symconv.select_conv_backend(xs, ws, None, s, p, d, tr, op, g, env=env),  # noqa: B023
            repeat=args.repeat, number=args.number)) / args.number * 1e6

        def cold():
            api._SELECT_CACHE.clear()
            symconv.select_conv_backend(xs, ws, None, s, p, d, tr, op, g, env=env)  # noqa: B023
        t_cold = statistics.median(timeit.repeat(cold, repeat=args.repeat,
                                                 number=args.number)) / args.number * 1e6
        ratios.append(t_sym / t_torch)
        cold_ratios.append(t_cold / t_torch)
        print(f"{name:36s} {t_torch:9.2f} {t_cold:9.2f} {t_cold / t_torch:6.1f}x "
              f"{t_sym:9.2f} {t_sym / t_torch:6.1f}x   ({got.name})")
    print("geometric-mean ratio symconv/torch: "
          f"cold {statistics.geometric_mean(cold_ratios):.1f}x, "
          f"warm {statistics.geometric_mean(ratios):.1f}x")


if __name__ == "__main__":
    main()
