"""symconv.trace vs torch.export.export on the same models, in one run: time and exactness.

For every model of ``tests/trace_models.py`` this script

* times ``symconv.trace`` (best of ``--repeat``) on the model's symbolic input specs;
* times ``torch.export.export`` with the dynamic shapes users write: a Dim-range *guess*
  (``Dim("H", min=32, max=2048)``...), ``Dim.AUTO`` (export infers the ranges), and the
  ``dynamic_shapes`` that ``trace.export_dynamic_shapes()`` builds from the traced domain;
* prints the wall-time ratio export / trace for each (the goal is >= 20x);
* measures each tool's accepted domain on a grid against the TRUE domain, which the eager oracle
  (``tests/trace_oracle.py``, forwards in a worker process) gives: a point agrees when both
  accept it with the same output shapes, or both reject it. The trace accepts a point when
  ``trace.is_valid`` holds there; an exported program accepts it when ``ep.module()`` runs on
  tensors of that shape (its input guards and runtime asserts pass and the graph runs).

Run: python benchmarks/trace_vs_export.py [--config default|small] [--models resnet,unet_upsample]
     [--repeat 3] [--no-domain]
Progress goes to stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch.export import Dim

import symconv
from tests import trace_models as tm
from tests.trace_oracle import (EagerOracle, concrete_shapes, grid_points, output_leaves,
                                parse_input, shape_leaves, symbols_of)

SPARSE = [0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64]
AUDIO = [0, 1, 399, 400, 401, 719, 720, 1000, 1600, 1999, 2000, 4000]

# The Dim ranges a user writes without knowing the domain (what export tutorials show).
GUESS = {"N": (1, 256), "H": (32, 2048), "W": (32, 2048), "L": (400, 480000)}
EXAMPLE = {"N": 2, "H": 64, "W": 64, "L": 4000}


def log(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def bench_grid(case: tm.ModelCase) -> list[dict]:
    """N in {0,1,2} on the diagonal, N=1 on the whole H x W product (or L for audio)."""
    names = symbols_of(case.inputs)
    if "L" in names:
        return grid_points({"N": [0, 1, 2], "L": AUDIO})
    pts = grid_points({"N": [1], "H": SPARSE, "W": SPARSE})
    pts += [{"N": n, "H": h, "W": h} for n in (0, 2) for h in SPARSE]
    return pts


def _clear_trace_caches() -> None:
    from symconv.tracing import ops
    cache = getattr(ops, "_CONV_CACHE", None)
    if isinstance(cache, dict):
        cache.clear()


def specs(case: tm.ModelCase) -> list:
    return [symconv.TensorSpec(parse_input(t)) for t in case.inputs]


def dims_guess(case: tm.ModelCase) -> tuple:
    dims = {n: Dim(n, min=GUESS[n][0], max=GUESS[n][1]) for n in symbols_of(case.inputs)}
    return tuple({i: dims[d] for i, d in enumerate(parse_input(t)) if isinstance(d, str)}
                 for t in case.inputs)


def dims_auto(case: tm.ModelCase) -> tuple:
    return tuple({i: Dim.AUTO for i, d in enumerate(parse_input(t)) if isinstance(d, str)}
                 for t in case.inputs)


def example(case: tm.ModelCase) -> tuple:
    return tuple(torch.randn(*s) for s in concrete_shapes(case.inputs, EXAMPLE))


def time_best(fn, repeat: int):
    """(first call's seconds, best seconds, result, exception)."""
    best, first, out, err = float("inf"), None, None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        try:
            out, err = fn(), None
        except Exception as e:  # noqa: BLE001 - the tool's answer
            out, err = None, e
        dt = time.perf_counter() - t0
        first = dt if first is None else first
        best = min(best, dt)
    return first, best, out, err


def accepted_by_export(ep, case: tm.ModelCase, points: list[dict]) -> dict:
    mod = ep.module()
    names = symbols_of(case.inputs)
    out = {}
    gen = torch.Generator().manual_seed(0)
    for p in points:
        xs = [torch.randn(*s, generator=gen) for s in concrete_shapes(case.inputs, p)]
        try:
            with torch.no_grad():
                res = mod(*xs)
            shapes = [list(t.shape) for t in output_leaves(res)]
            out[tuple(p[n] for n in names)] = {"shapes": shapes}
        except Exception as e:  # noqa: BLE001
            out[tuple(p[n] for n in names)] = {"error": type(e).__name__}
    return out


def accepted_by_trace(tr, case: tm.ModelCase, points: list[dict]) -> dict:
    names = symbols_of(case.inputs)
    out = {}
    for p in points:
        key = tuple(p[n] for n in names)
        if tr.is_valid(**p):
            out[key] = {"shapes": shape_leaves(tr.output_shapes(**p))}
        else:
            out[key] = {"error": "rejected"}
    return out


def agreement(tool: dict, truth: dict) -> tuple[int, int, int, int]:
    """(agree, false accepts, false rejects, wrong shapes) over the points of ``truth``."""
    agree = fa = fr = ws = 0
    for k, t in truth.items():
        g = tool[k]
        if "shapes" in t and "shapes" in g:
            if [list(s) for s in g["shapes"]] == t["shapes"]:
                agree += 1
            else:
                ws += 1
        elif "shapes" in g:
            fa += 1
        elif "shapes" in t:
            fr += 1
        else:
            agree += 1
    return agree, fa, fr, ws


def fmt_agree(a: tuple | None, n: int) -> str:
    if a is None:
        return "-"
    agree, fa, fr, ws = a
    s = f"{agree}/{n}"
    extra = [f"{fa} false acc" if fa else "", f"{fr} false rej" if fr else "",
             f"{ws} bad shape" if ws else ""]
    extra = [e for e in extra if e]
    return s + (" (" + ", ".join(extra) + ")" if extra else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=["default", "small"], default="default")
    ap.add_argument("--models", help="comma-separated names (default: all)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many trace runs")
    ap.add_argument("--export-repeat", type=int, default=1, help="best of this many exports")
    ap.add_argument("--no-domain", action="store_true", help="time only")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    names = args.models.split(",") if args.models else list(tm.MODELS)
    for n in names:
        if n not in tm.MODELS:
            ap.error(f"argument --models: unknown model {n!r}; expected one of "
                     + ", ".join(tm.MODELS))
    small = args.config == "small"
    print(f"torch {torch.__version__}, symconv {symconv.__version__}, 1 thread, "
          f"{args.config} configs; trace: best of {args.repeat}, export: best of "
          f"{args.export_repeat}")
    print(f"export variants: guess = Dim ranges {GUESS}; auto = Dim.AUTO; "
          f"trace = trace.export_dynamic_shapes(); example input {EXAMPLE}")
    print("per model as measured: timing line (T), domain line (D); summary tables at the end")
    rows = []
    oracle = EagerOracle().start() if not args.no_domain else None
    try:
        for name in names:
            case = tm.MODELS[name]
            factory = case.factory(small)
            log(f"[{name}] building {factory}")
            model = tm.build(factory)
            sp = specs(case)
            _clear_trace_caches()  # the first call is cold: no convolution answered before
            t_first, t_trace, tr, err = time_best(lambda m=model, s=sp: symconv.trace(m, *s),
                                                  args.repeat)
            row = {"model": name, "trace_s": t_trace, "trace_first_s": t_first, "trace_err": err,
                   "export": {}}
            log(f"[{name}] trace first {t_first:.3f}s best {t_trace:.3f}s"
                + (f" FAILED {type(err).__name__}: {err}" if err else ""))
            x = example(case)
            variants = [("guess", dims_guess(case), x), ("auto", dims_auto(case), x)]
            if tr is not None:
                try:
                    ds, unexpressed = tr.export_dynamic_shapes(with_notes=True)
                    # the same example as the other variants where the trace accepts it
                    ok = tr.is_valid(**{n: EXAMPLE[n] for n in symbols_of(case.inputs)})
                    variants.append(("trace", ds, x if ok else tr.export_example()))
                    row["unexpressed"] = unexpressed
                except Exception as e:  # noqa: BLE001
                    row["trace_ds_err"] = f"{type(e).__name__}: {e}"
            for label, ds, x in variants:
                _, t, ep, e = time_best(
                    lambda m=model, x=x, ds=ds: torch.export.export(m, x, dynamic_shapes=ds),
                    args.export_repeat)
                row["export"][label] = {"s": t, "ep": ep,
                                        "err": f"{type(e).__name__}: {str(e).splitlines()[0]}"
                                        if e else None}
                log(f"[{name}] export {label} {t:.2f}s" + (f" FAILED {row['export'][label]['err']}"
                                                          if e else ""))
            if oracle is not None:
                pts = bench_grid(case)
                log(f"[{name}] eager oracle on {len(pts)} points")
                truth = oracle.run(factory, case.inputs, pts)
                crashed = [k for k, v in truth.items() if "crash" in v]
                truth = {k: v for k, v in truth.items() if "crash" not in v}
                row["points"] = len(truth)
                row["true_valid"] = sum("shapes" in v for v in truth.values())
                row["crashed"] = len(crashed)
                if tr is not None:
                    try:
                        row["agree_trace"] = agreement(accepted_by_trace(tr, case, pts), truth)
                    except Exception as e:  # noqa: BLE001
                        row["trace_eval_err"] = f"{type(e).__name__}: {e}"
                for label, v in row["export"].items():
                    if v["ep"] is not None:
                        log(f"[{name}] running export '{label}' on the grid")
                        v["agree"] = agreement(accepted_by_export(v["ep"], case, pts), truth)
            rows.append(row)
            print_timing_row(row)
            if "points" in row:
                print_domain_row(row)
            sys.stdout.flush()
    finally:
        if oracle is not None:
            oracle.close()
    report(rows)


def print_timing_row(r: dict) -> None:
    t = r["trace_first_s"] if r["trace_err"] is None else None
    parts = [f"T {r['model']}: trace {t:.3f}s (warm {r['trace_s']:.3f}s)" if t
             else f"T {r['model']}: trace FAILED"]
    for label, v in r["export"].items():
        parts.append(f"export {label} {v['s']:.2f}s" + (" (raised)" if v["err"] else "")
                     + (f" = {v['s'] / t:.0f}x" if t else ""))
    print(", ".join(parts))


def print_domain_row(r: dict) -> None:
    n = r["points"]
    cells = [f"trace {fmt_agree(r.get('agree_trace'), n)}"]
    for label, v in r["export"].items():
        cells.append(f"export {label} " + ("failed" if v["err"] else fmt_agree(v.get("agree"), n)))
    print(f"D {r['model']}: {n} points, {r['true_valid']} valid; " + "; ".join(cells))


def report(rows: list[dict]) -> None:
    print()
    print("ratio = export seconds / cold trace seconds (first call, symconv's caches cleared); "
          "warm = best repeated trace")
    print(f"{'model':18s} {'trace s':>8s} {'warm':>6s} | {'export s: guess':>15s} {'auto':>7s} "
          f"{'trace-ds':>8s} | {'ratio: guess':>12s} {'auto':>6s} {'trace-ds':>8s}")
    ratios = []
    for r in rows:
        t = r["trace_first_s"] if r["trace_err"] is None else None
        cells, rats = [], []
        for label in ("guess", "auto", "trace"):
            v = r["export"].get(label)
            if v is None:
                cells.append("-")
                rats.append("-")
                continue
            cells.append(f"{v['s']:.2f}" + ("*" if v["err"] else ""))
            if t:
                ratio = v["s"] / t
                rats.append(f"{ratio:.0f}x")
                if label == "auto" and not v["err"]:
                    ratios.append(ratio)
            else:
                rats.append("-")
        tcell = f"{t:.3f}" if t else "FAILED"
        wcell = f"{r['trace_s']:.3f}" if t else ""
        print(f"{r['model']:18s} {tcell:>8s} {wcell:>6s} | {cells[0]:>15s} {cells[1]:>7s} "
              f"{cells[2]:>8s} | {rats[0]:>12s} {rats[1]:>6s} {rats[2]:>8s}")
    print("(* = export raised; its time is the time to the error)")
    if ratios:
        ratios.sort()
        print(f"export(auto)/trace ratio: min {ratios[0]:.0f}x, median "
              f"{ratios[len(ratios) // 2]:.0f}x, max {ratios[-1]:.0f}x over {len(ratios)} models")
    if any("points" in r for r in rows):
        print()
        print("accepted domain vs the TRUE domain (eager oracle); agree/points")
        print(f"{'model':18s} {'points':>6s} {'valid':>5s} | {'trace':24s} | "
              f"{'export guess':24s} | {'export auto':24s} | {'export trace-ds':24s}")
        for r in rows:
            if "points" not in r:
                continue
            n = r["points"]
            tcell = fmt_agree(r.get("agree_trace"), n) if "trace_eval_err" not in r else "error"
            ecells = []
            for label in ("guess", "auto", "trace"):
                v = r["export"].get(label)
                ecells.append("-" if v is None else ("export failed" if v["err"] else
                                                     fmt_agree(v.get("agree"), n)))
            print(f"{r['model']:18s} {n:>6d} {r['true_valid']:>5d} | {tcell:24s} | "
                  f"{ecells[0]:24s} | {ecells[1]:24s} | {ecells[2]:24s}")
    notes = [(r["model"], r[k]) for r in rows
             for k in ("trace_err", "trace_ds_err", "trace_eval_err") if r.get(k)]
    for r in rows:
        for label, v in r["export"].items():
            if v["err"]:
                notes.append((r["model"], f"export {label}: {v['err']}"))
        if r.get("unexpressed"):
            notes.append((r["model"], f"not expressible as export Dims: {r['unexpressed']}"))
        if r.get("crashed"):
            notes.append((r["model"], f"{r['crashed']} grid points crashed eager (left out)"))
    if notes:
        print()
        for m, msg in notes:
            print(f"{m}: {' '.join(str(msg).split())[:300]}")


if __name__ == "__main__":
    main()
