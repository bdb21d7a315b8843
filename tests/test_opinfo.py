"""PyTorch's own OpInfo entries for the convolution functions, answered by symconv.

``torch.testing._internal.common_methods_invocations.op_db`` holds the samples (valid calls) and
error inputs PyTorch tests ``nn.functional.conv1d/2d/3d`` and ``conv_transpose1d/2d/3d`` with.
A subprocess collects torch's answer for each (the op runs there); symconv must give the same
output shape, dtype, layout flags and ``requires_grad``, or the same exception type and first
line (which must also match the OpInfo's ``error_regex``). Needs the ``expecttest`` package.

The default run covers the float32, float64, complex64 and int64 samples without gradients and
every error input; ``-m slow`` adds bfloat16, float16, complex128 and ``requires_grad=True``.
"""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("expecttest")

from tests import oracle_functional as O

DEFAULT_DTYPES = ["float32", "float64", "complex64", "int64"]
ALL_DTYPES = ["float32", "float64", "bfloat16", "float16", "complex64", "complex128", "int64"]


def _check(items: list) -> dict:
    counts = {"samples": 0, "errors": 0, "crashes": 0}
    bad = []
    for it in items:
        if "crash" in it:
            counts["crashes"] += 1
            continue
        counts["samples" if it["kind"] == "sample" else "errors"] += 1
        got = O.symconv_opinfo(it)
        if got != it["torch"]:
            bad.append((it, got))
        elif it["kind"] == "error":
            assert got.get("error") == it["error_type"], it
            assert re.search(it["error_regex"], got["message"]), (it, got)
    assert not bad, "\n".join(f"{json.dumps(i)}\n  symconv: {g}" for i, g in bad[:10])
    return counts


def test_opinfo_samples_and_error_inputs():
    items = O.collect_opinfo(DEFAULT_DTYPES, [False])
    counts = _check(items)
    assert counts["samples"] >= 100 and counts["errors"] >= 20, counts
    assert counts["crashes"] == 0


@pytest.mark.slow
def test_opinfo_all_dtypes_and_grad():
    items = O.collect_opinfo(ALL_DTYPES, [False, True])
    counts = _check(items)
    print("opinfo", counts)
    assert counts["crashes"] == 0
