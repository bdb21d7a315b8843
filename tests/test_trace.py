"""symconv.trace against eager torch on small hand-built modules.

Every model is traced once; at every point of a grid the prediction (``is_valid``) must agree
with running the model eagerly, output shapes must match where it runs, and where it fails
``explain`` must name torch's first line of the error.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import z3

import symconv
from symconv import TensorSpec as T
from symconv.tracing import TraceError, UnsupportedOp

torch.manual_seed(0)


def _eager(model, shape_args):
    try:
        with torch.no_grad():
            out = model(*[torch.randn(*s) if isinstance(s, tuple) else s for s in shape_args])
        return True, out
    except Exception as e:  # noqa: BLE001 - torch's error is the expected answer
        return False, e


def _shapes(out):
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)):
        return type(out)(_shapes(o) for o in out)
    if isinstance(out, dict):
        return {k: _shapes(v) for k, v in out.items()}
    return out


def agree(model, specs, grid, *, train=None):
    """Trace once, then compare with eager at every grid point; returns the trace."""
    tr = symconv.trace(model, *specs, train=train)
    was = model.training
    if train is not None:
        model.train(train)
    try:
        for values in grid:
            shapes = [tuple(values.get(d, d) if isinstance(d, str) else d
                            for d in (s if isinstance(s, tuple) else ()))
                      for s in [_raw(sp) for sp in specs]]
            ok, out = _eager(model, shapes)
            assert tr.is_valid(**values) == ok, (values, out if not ok else "eager ran",
                                                 tr.explain(**values))
            if ok:
                assert tr.output_shapes(**values) == _shapes(out), values
                assert tr.explain(**values) is None
            else:
                ex = tr.explain(**values)
                assert ex is not None, values
                assert ex.message == str(out).splitlines()[0], (values, ex)
                assert ex.error == type(out).__name__
    finally:
        model.train(was)
    return tr


def _raw(spec):
    return tuple(str(d) if not isinstance(d, int) else d for d in spec.shape)


def grid(**axes):
    names = list(axes)
    return [dict(zip(names, vals)) for vals in itertools.product(*axes.values())]


SMALL = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 15, 16, 17, 24, 31, 32, 33]


# --- basic layers ------------------------------------------------------------------------

def test_conv_relu_maxpool_linear():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(16, 10)).eval()
    tr = agree(m, [T(("N", 3, "H", "W"))], grid(N=[0, 1, 2], H=SMALL, W=[0, 5, 11, 16]))
    assert tr.readable() == "H >= 11 and W >= 11"
    assert str(tr.outputs) == "torch.Size([N, 10])"
    assert [l.name for l in tr.layers][:3] == ["", "0", "1"]
    assert tr.layers[1].type == "Conv2d"
    w = tr.witness()
    assert tr.is_valid(**w) and _eager(m, [(w["N"], 3, w["H"], w["W"])])[0]


def test_explain_names_first_failing_layer_and_torch_message():
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 5)).eval()
    tr = symconv.trace(m, T(("N", 3, "H", "W")))
    ex = tr.explain(N=1, H=6, W=9)
    assert ex.layer == "2"
    assert ex.message.startswith("Calculated padded input size per channel: (4 x 7). "
                                 "Kernel size: (5 x 5).")
    assert tr.explain(N=1, H=7, W=7) is None
    with pytest.raises(ValueError):
        tr.output_shapes(N=1, H=6, W=9)
    with pytest.raises(TypeError, match="missing values"):
        tr.is_valid(N=1)


def test_conv_variants_1d_3d_transposed_same_dilation_groups():
    m1 = nn.Sequential(nn.Conv1d(2, 4, 5, stride=3, dilation=2), nn.Conv1d(4, 4, 4, padding="same"),
                       nn.ConvTranspose1d(4, 2, 3, stride=2, output_padding=1)).eval()
    agree(m1, [T(("N", 2, "L"))], grid(N=[0, 1, 2], L=list(range(0, 20)) + [31, 32]))
    m3 = nn.Sequential(nn.Conv3d(1, 2, 3, stride=(1, 2, 2), padding=1, groups=1),
                       nn.ConvTranspose3d(2, 2, 2, stride=2)).eval()
    agree(m3, [T((1, 1, "D", "H", 4))], grid(D=[0, 1, 2, 3], H=[0, 1, 2, 5]))
    m2 = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4, dilation=2, padding=1),
                       nn.Conv2d(4, 4, (2, 3), padding="same", padding_mode="zeros")).eval()
    agree(m2, [T(("N", 4, "H", "W"))], grid(N=[0, 1], H=[0, 1, 2, 3, 4, 7], W=[1, 2, 3, 9]))


def test_pooling_ceil_mode_dilation_avg_adaptive():
    m = nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                      nn.MaxPool2d(2, dilation=2), nn.AvgPool2d(3, stride=2, ceil_mode=True,
                                                               padding=1),
                      nn.AdaptiveMaxPool2d((2, None)), nn.AdaptiveAvgPool2d(3)).eval()
    agree(m, [T(("N", 3, "H", "W"))], grid(N=[0, 1], H=SMALL, W=[0, 1, 4, 9, 16]))
    m1 = nn.Sequential(nn.MaxPool1d(3, stride=2), nn.AvgPool1d(2)).eval()
    agree(m1, [T(("N", 2, "L"))], grid(N=[0, 1], L=list(range(0, 12))))
    m3 = nn.Sequential(nn.MaxPool3d(2), nn.AvgPool3d(2, ceil_mode=True)).eval()
    agree(m3, [T((1, 1, "D", 4, 4))], grid(D=[0, 1, 2, 3, 4, 5, 8]))


def test_norms_activations_dropout():
    m = nn.Sequential(nn.Conv2d(3, 6, 1), nn.GroupNorm(3, 6), nn.GELU(), nn.Dropout(0.1),
                      nn.SiLU(), nn.InstanceNorm2d(6), nn.Hardswish(), nn.Dropout2d()).eval()
    agree(m, [T(("N", 3, "H", "W"))], grid(N=[0, 1, 2], H=[0, 1, 2], W=[1, 2]))


def test_batchnorm_train_mode_domain_differs():
    m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    symconv.trace(m, T(("N", 3, "H", "W")), train=True)
    assert int(m[1].num_batches_tracked) == 0 and m.training  # state and mode restored
    g = grid(N=[0, 1, 2], H=[0, 1, 2], W=[1, 2])
    tr_eval = agree(m, [T(("N", 3, "H", "W"))], g, train=False)
    tr_train = agree(m, [T(("N", 3, "H", "W"))], g, train=True)
    assert tr_eval.is_valid(N=1, H=1, W=1) and not tr_train.is_valid(N=1, H=1, W=1)
    assert tr_train.explain(N=1, H=1, W=1).error == "ValueError"
    assert "N * H * W != 1" in tr_train.readable()


def test_layernorm_linear_permute_view_reshape():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 2, stride=2)
            self.ln = nn.LayerNorm(8)
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            x = self.conv(x)
            n, c, h, w = x.shape
            y = self.fc(self.ln(x.permute(0, 2, 3, 1)))
            y = y.reshape(n, h * w, c).transpose(1, 2).view(n, c, h, w)
            return torch.flatten(y, 1).view(n, -1, 2)

    agree(M().eval(), [T(("N", 3, "H", "W"))], grid(N=[0, 1, 2], H=[0, 1, 2, 3, 4, 6], W=[2, 4, 5]))


def test_cat_add_mul_broadcasting_and_unet_divisibility():
    class Up(nn.Module):
        def __init__(self, levels=3):
            super().__init__()
            self.downs = nn.ModuleList(nn.Conv2d(4, 4, 3, padding=1) for _ in range(levels))
            self.ups = nn.ModuleList(nn.ConvTranspose2d(4, 4, 2, stride=2) for _ in range(levels))
            self.inc = nn.Conv2d(1, 4, 1)

        def forward(self, x):
            x = self.inc(x)
            skips = []
            for d in self.downs:
                x = d(x)
                skips.append(x)
                x = F.max_pool2d(x, 2)
            for u in self.ups:
                x = torch.cat([u(x), skips.pop()], dim=1)[:, :4] * 0.5 + 1
            return x

    tr = agree(Up().eval(), [T(("N", 1, "H", "W"))],
               grid(N=[0, 1], H=[0, 1, 4, 7, 8, 9, 12, 16, 24, 32, 36], W=[8, 10, 16]))
    assert tr.readable() == "H >= 8 and H % 8 == 0 and W >= 8 and W % 8 == 0"
    facts = tr.symbol_facts()
    assert facts["H"]["mod"] == (8, 0) and facts["H"]["min"] == 8

    class B(nn.Module):
        def forward(self, x, y):
            return (x + y) * x.mean(dim=-1, keepdim=True)

    agree(B(), [T(("A", 3)), T(("B", 1, 3))], grid(A=[0, 1, 2, 3], B=[0, 1, 2]))


def test_interpolate_pad_embedding_and_shape_arithmetic():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)

        def forward(self, x):
            h, w = x.shape[-2:]
            y = F.interpolate(x, scale_factor=2, mode="nearest")
            y = F.interpolate(y, size=(h * 2 + 1, w // 2 + 1), mode="bilinear",
                              align_corners=False)
            y = F.pad(y, (1, 2, -1, 0))
            return y, self.emb(torch.zeros(2, 3, dtype=torch.long))

    agree(M(), [T(("N", 3, "H", "W"))], grid(N=[0, 1], H=[0, 1, 2, 3], W=[0, 1, 2, 5]))


def test_reflect_replicate_circular_pad_symbolic():
    class M(nn.Module):
        def forward(self, x):
            y = F.pad(x, (2, 1, 1, 1), mode="reflect")
            y = F.pad(y, (1, 1), mode="replicate")
            return F.pad(y, (3, 0, 0, 2), mode="circular")

    agree(M(), [T(("N", 2, "H", "W"))], grid(N=[0, 1], H=[0, 1, 2, 3], W=[0, 1, 2, 3, 4]))


def test_interpolate_half_scale_is_floor():
    m = nn.Upsample(scale_factor=0.5, mode="nearest")
    agree(m, [T((1, 2, "H", "W"))], grid(H=[0, 1, 2, 3, 4, 5], W=[2, 3]))


# --- branches ------------------------------------------------------------------------------

def test_shape_branches_explore_both_sides():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, 5)
            self.b = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            if x.shape[-1] > 10 and x.shape[-2] % 2 == 0:
                return self.a(x)
            return self.b(x)

    tr = agree(M().eval(), [T((1, 1, "H", "W"))], grid(H=list(range(0, 14)), W=[0, 1, 9, 11, 12]))
    assert tr.stats["paths"] == 3
    assert len(tr.output_cases) == 3


def test_infeasible_sides_are_pruned():
    class M(nn.Module):
        def forward(self, x):
            x = F.max_pool2d(x, 4)  # H >= 4 from here on
            if x.shape[-1] >= 1:  # always true where forward got here
                return x
            raise AssertionError("unreachable")

    tr = symconv.trace(M(), T((1, 1, "H", "W")))
    assert tr.stats["paths"] == 1


def test_path_cap_gives_clear_error():
    class M(nn.Module):
        def forward(self, x):
            for i in range(10):
                if x.shape[-1] % (i + 2) == 0:
                    x = x + 1
            return x

    with pytest.raises(TraceError, match="more than 4 paths"):
        symconv.trace(M(), T((1, "W")), max_paths=4)


# --- refusals ------------------------------------------------------------------------------

def test_unsupported_op_names_op_and_layer():
    class Inner(nn.Module):
        def forward(self, x):
            return torch.fft.fft(x)

    m = nn.Sequential(nn.Identity(), Inner())
    with pytest.raises(UnsupportedOp, match=r"unsupported op .*fft.* at layer 1"):
        symconv.trace(m, T(("N", 4)))
    # finding 11: at the top-level module the layer is named, not empty
    with pytest.raises(UnsupportedOp, match=r"unsupported op .*fft.* at layer <model>$"):
        symconv.trace(Inner(), T(("N", 4)))


def test_int_of_symbolic_size_is_refused_not_pinned():
    class M(nn.Module):
        def forward(self, x):
            return x.view(int(x.shape[0]), -1)

    with pytest.raises(TraceError, match="int"):
        symconv.trace(M(), T(("N", 4)))


def test_index_pin_detected():
    class M(nn.Module):
        def forward(self, x):
            return x[:, : list(range(8))[x.shape[1]]]

    with pytest.raises(TraceError):
        symconv.trace(M(), T((2, "C")))


# --- backends, export ------------------------------------------------------------------------

def test_backends_per_conv_layer_match_select_conv_backend():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, groups=8)).eval()
    tr = symconv.trace(m, T(("N", 3, "H", "W")))
    env = symconv.preset("cpu")
    b = tr.backends(env)
    assert set(b) == {"0", "1"}
    for values in [dict(N=1, H=5, W=5), dict(N=0, H=5, W=5), dict(N=4, H=32, W=17)]:
        subs = [(z3.Int(k), z3.IntVal(v)) for k, v in values.items()]
        got = [o for c, o in b["1"] if z3.is_true(z3.simplify(z3.substitute(c, *subs)))]
        h, w = values["H"], values["W"]
        want = symconv.select_conv_backend(torch.empty(values["N"], 8, h, w),
                                           torch.empty(8, 1, 3, 3), None, [1], [0], [1], False,
                                           [0], 8, env=env)
        assert got == [want], values


def test_backends_lazy_and_messages_show_the_layers_sizes():
    """Findings 5 and 9: error messages name the layer's own size terms (not the template's
    ``_b2``), and a layer's backends are computed only when read."""
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2),
                      nn.Conv2d(4, 4, 3)).eval()
    tr = symconv.trace(m, T(("N", 3, "H", "W")))
    b = tr.backends(symconv.preset("cpu"))
    assert list(b) == ["0", "2"] and len(b) == 2 and "computed on access" in repr(b)
    errs = [str(o) for _, o in b["2"] if isinstance(o, BaseException)]
    assert errs and not any("_b" in e for e in errs), errs
    assert any("Calculated padded input size per channel: ((1 + (-2 + H)/2) + 0 x "
               "(1 + (-2 + W)/2) + 0)" in e
               for e in errs), errs
    assert all("H" in str(c) or z3.is_true(c) for c, _ in b["0"])


def test_export_dynamic_shapes_accepted_by_torch_export():
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
                      nn.Upsample(scale_factor=2)).eval()
    tr = symconv.trace(m, T(("N", 3, "H", "W")))
    ds, notes = tr.export_dynamic_shapes(with_notes=True)
    assert any("specialises" in n for n in notes)
    ep = torch.export.export(m, tr.export_example(), dynamic_shapes=ds)
    assert len(ep.range_constraints) >= 3


def test_export_dynamic_shapes_with_divisibility():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(2, 2, 2, stride=2)

        def forward(self, x):
            return torch.cat([self.up(F.max_pool2d(x, 2)), x], 1)

    m = M().eval()
    tr = symconv.trace(m, T((1, 2, "H", 8)))
    assert tr.readable() == "H >= 2 and H % 2 == 0"
    ds = tr.export_dynamic_shapes()
    assert "2*H_2" in str(ds[0][2]) or "2 * H_2" in str(ds[0][2])
    torch.export.export(m, tr.export_example(), dynamic_shapes=ds)


def depends_on_division_by_zero(e) -> bool:
    """Whether ``e`` depends on Z3's unspecified ``x / 0`` or ``x % 0``: Z3's division is a
    total function whose value at divisor 0 is arbitrary, so each div/mod is replaced by two
    independent functions that agree with it wherever the divisor is nonzero; ``e`` is a
    function of its symbols alone iff the two copies are provably equal."""
    fns = {}

    def fn(kind, copy):
        key = (kind, copy)
        if key not in fns:
            fns[key] = z3.Function(f"_{kind}{copy}", z3.IntSort(), z3.IntSort(), z3.IntSort())
        return fns[key]

    axioms = []

    def rebuild(t, copy, memo):
        if t.get_id() in memo:
            return memo[t.get_id()]
        kids = [rebuild(c, copy, memo) for c in t.children()]
        if z3.is_app_of(t, z3.Z3_OP_IDIV) or z3.is_app_of(t, z3.Z3_OP_MOD):
            kind = "div" if z3.is_app_of(t, z3.Z3_OP_IDIV) else "mod"
            a, b = kids
            r = fn(kind, copy)(a, b)
            axioms.append(z3.Implies(b != 0, r == (a / b if kind == "div" else a % b)))
        elif kids:
            r = t.decl()(*kids)
        else:
            r = t
        memo[t.get_id()] = r
        return r

    e1, e2 = rebuild(e, 1, {}), rebuild(e, 2, {})
    s = z3.Solver()
    s.set("timeout", 20000)
    s.add(*axioms, e1 != e2)
    res = s.check()
    assert res != z3.unknown, "undecided"
    return res == z3.sat


class _DivBySize(nn.Module):
    def forward(self, x):
        k = x.shape[2] // x.shape[3]
        m = x.shape[2] % x.shape[3]
        return x[:, :, :k, :m]


class _ReshapeInfer(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[2], -1)


def test_python_division_by_a_size_checks_zero_and_domain_is_total():
    """Finding 13: ``h // w`` in model code raises ZeroDivisionError at w == 0 (checked, with
    Python's message), and the domain never depends on Z3's unspecified x/0 or x%0."""
    tr = agree(_DivBySize(), [T((1, 2, "H", "W"))], grid(H=range(6), W=range(6)))
    assert not depends_on_division_by_zero(tr.domain)
    ex = tr.explain(H=3, W=0)
    assert (ex.error, ex.message) == ("ZeroDivisionError", "integer division or modulo by zero")
    tr = agree(_ReshapeInfer(), [T(("N", 2, "H", 3))], grid(N=range(3), H=range(4)))
    # the check itself: an unguarded modulo by a size is caught
    h = z3.Int("H")
    assert depends_on_division_by_zero(z3.And(h >= 0, h % h == 0))
    assert not depends_on_division_by_zero(tr.domain)


def test_witness_prefers_small_sizes():
    """Finding 7: the train-mode BatchNorm model gave {'N': 64, 'H': 4, 'W': 3}; the witness now
    has the smallest sum of sizes among valid points with every size >= 1 (checked by
    enumeration)."""
    m = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4)).train()
    tr = symconv.trace(m, T(("N", 3, "H", "W")))
    w = tr.witness()
    assert tr.is_valid(**w) and min(w.values()) >= 1
    best = min(n + h + ww for n, h, ww in itertools.product(range(1, 8), repeat=3)
               if tr.is_valid(N=n, H=h, W=ww))
    assert sum(w.values()) == best == 8, w


def test_readable_is_bounded_by_a_time_budget():
    """readable() runs within a time budget; when it is spent the answer is "not simplified"
    with the raw domain (never an unproven form), and a later call may still simplify."""
    import time
    m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    tr = symconv.trace(m, T(("N", 3, "H", "W")))
    t0 = time.perf_counter()
    r = tr.readable(timeout_ms=1)
    assert time.perf_counter() - t0 < 2
    assert r.startswith("not simplified (time budget of 1 ms spent") and "raw: " in r, r
    assert "N * H * W != 1" in tr.readable()
