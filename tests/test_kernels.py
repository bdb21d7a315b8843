"""Unit tests of ``symconv/kernels.py``: the C++ integer helpers, dtype facts, the allocation
model, each backend's kernel checks (messages measured on torch 2.13.0 CPU, no torch execution
here) and the symbolic answers they give."""

from __future__ import annotations

import ctypes

import pytest
import sympy
import torch

import symconv
from symconv import ConvBackend, Environment, TensorSpec as T, kernels
from symconv import domain as D
from symconv.errors import Checker, ConvError, ConvValueError

ENV = Environment()  # the torch 2.13 CPU wheel on an AVX2 CPU, one thread


def conv(inp, w, bias=None, stride=(1,), padding=(0,), dilation=(1,), transposed=False,
         output_padding=(0,), groups=1, env=ENV):
    return symconv.convolution_output_shape(inp, w, bias, list(stride), list(padding),
                                            list(dilation), transposed, list(output_padding),
                                            groups, env=env)


def raises(exc_type, first_line, *args, **kw):
    with pytest.raises(exc_type) as info:
        conv(*args, **kw)
    assert str(info.value).splitlines()[0] == first_line
    return info.value


# ---- integer helpers ----------------------------------------------------------------------


def c_div_rtn(x: int, y: int) -> int:
    """ATen/div_rtn.h compiled: int64 operands, ``int`` quotient and remainder."""
    q = abs(x) // abs(y) * (1 if (x >= 0) == (y > 0) else -1)
    r = x - q * y
    q32 = ctypes.c_int32(q & 0xFFFFFFFF).value
    r32 = ctypes.c_int32(r & 0xFFFFFFFF).value
    if r32 != 0 and ((r32 < 0) != (y < 0)):
        q32 -= 1
    return q32


@pytest.mark.parametrize("x", [0, 1, -1, 7, -7, 2**31 - 1, 2**31, -(2**31) - 1, 2**32 + 5,
                               2**62 - 3, 2**63 - 2, -(2**62)])
@pytest.mark.parametrize("y", [1, 2, 3, 7, -2])
def test_div_rtn_matches_c(x, y):
    assert kernels.div_rtn(x, y) == c_div_rtn(x, y)


def test_wrap32():
    assert kernels.wrap32(2**31) == -(2**31)
    assert kernels.wrap32(2**32 + 3) == 3
    assert kernels.wrap32(-(2**31) - 1) == 2**31 - 1
    assert kernels.wrap32(12) == 12
    h = D.sym("h")
    assert kernels.wrap32(h) is h  # symbolic values are unbounded


def test_u64_product_is_sticky():
    over, n = kernels._u64_product([2, -2, 0])
    assert over is True and n == 0  # overflowed before the 0
    over, n = kernels._u64_product([0, -2])
    assert over is False and n == 0
    over, n = kernels._u64_product([1, 1, -1])
    assert over is False and n == 2**64 - 1  # then > INT64_MAX: numel overflow


# ---- dtype facts --------------------------------------------------------------------------

TYPE_STRINGS = {  # Tensor::toString() as torch 2.13 prints it (measured)
    torch.float32: "torch.FloatTensor", torch.float64: "torch.DoubleTensor",
    torch.float16: "torch.HalfTensor", torch.bfloat16: "CPUBFloat16Type",
    torch.complex64: "CPUComplexFloatType", torch.complex128: "CPUComplexDoubleType",
    torch.complex32: "CPUComplexHalfType", torch.int64: "torch.LongTensor",
    torch.int32: "torch.IntTensor", torch.int16: "torch.ShortTensor",
    torch.int8: "torch.CharTensor", torch.uint8: "torch.ByteTensor", torch.bool: "CPUBoolType",
}


@pytest.mark.parametrize("dtype", list(TYPE_STRINGS))
def test_type_string(dtype):
    assert kernels.type_string(T((1, 2), dtype=dtype)) == TYPE_STRINGS[dtype]


def test_result_type_zero_dim():
    assert kernels.result_type(torch.float16, torch.complex64) == torch.complex32
    assert kernels.result_type(torch.bfloat16, torch.complex64) == torch.complex64
    assert kernels.result_type(torch.float32, torch.float64) == torch.float32
    assert kernels.result_type(torch.float32, None, torch.float64) == torch.float64


# ---- Empty --------------------------------------------------------------------------------


def test_empty_view_messages():
    raises(ConvError, "invalid shape dimension -2 at index 2 of shape [0, 4, -2, 0]",
           T((0, 3, 8, 8)), T((3, 4, 3, 3)), padding=[6, 5], transposed=True)
    raises(ConvError, "cannot reshape tensor of 0 elements into shape [0, 1, 6, -1] because the "
           "unspecified dimension size -1 can be any value and is ambiguous",
           T((0, 3, 3, 3), dtype="bfloat16"), T((3, 1, 1, 1), dtype="bfloat16"),
           stride=[3, 1], padding=[1, 2], transposed=True, output_padding=[1, 0])
    raises(ConvError, "IntArrayRef contains an int that cannot be represented as a SymInt: "
           "-9223372036854775796", T((0, 3, 8, 8)), T((3, 4, 3, 3)), padding=[2**62 - 1],
           transposed=True)


def test_empty_weight_select_is_index_error():
    raises(IndexError, "select(): index 0 out of range for tensor of size [0] at dimension 0",
           T((0, 4, 5, 5)), T((4, 0, 3, 3)), transposed=True)


def test_empty_complex_autograd_and_bias_cast():
    msg = "convolution does not support automatic differentiation for outputs with complex dtype."
    raises(ConvError, msg, T((0, 3, 8, 8), dtype="complex64", requires_grad=True),
           T((0 + 4, 3, 3, 3), dtype="complex64"))
    assert conv(T((0, 3, 8, 8), dtype="complex64"), T((4, 3, 3, 3), dtype="complex64",
                                                        requires_grad=True),
                env=ENV.replace(grad_enabled=False)) == (0, 4, 6, 6)
    raises(ConvError, "result type ComplexHalf can't be cast to the desired output type Half",
           T((0, 3, 8, 8), dtype="float16"), T((4, 3, 3, 3), dtype="float16"),
           T((4,), dtype="complex64"))


# ---- Mkldnn / MkldnnTranspose -------------------------------------------------------------


def test_mkldnn_type_checks():
    raises(ConvError, "Input type (torch.FloatTensor) and weight type (CPUBFloat16Type) should be "
           "the same or input should be a MKLDNN tensor and weight is a dense tensor",
           T((2, 3, 8, 8)), T((4, 3, 3, 3), dtype="bfloat16"), dilation=[2])
    raises(ConvError, "Input type (torch.FloatTensor) and bias type (torch.DoubleTensor) should "
           "be the same or input should be a MKLDNN tensor and bias is a dense tensor",
           T((2, 3, 8, 8)), T((4, 3, 3, 3)), T((4,), dtype="float64"), dilation=[2])


def test_mkldnn_dilation_zero():
    raises(ConvError, "non-positive dilation is not supported", T((2, 1, 5, 8, 10)),
           T((1, 1, 1, 2, 1)), stride=[2, 1, 2], padding=[2, 2, 0], dilation=[0, 1, 0])


def test_mkldnn_transpose_negative_output_by_layout():
    args = (T((2, 3, 4, 4)), T((3, 2, 3, 3)))
    raises(ConvError, kernels.DESC_TAG, *args, padding=[4], transposed=True)
    raises(ConvError, "numel: integer multiplication overflow",
           T((2, 3, 4, 4), memory_format="channels_last"), args[1], padding=[4], transposed=True)
    raises(ConvError, kernels.DESC_STRIDES, T((2, 3, 4, 4), memory_format="channels_last"),
           args[1], padding=[3, 4], transposed=True)
    assert conv(*args, padding=[3], transposed=True) == (2, 2, 0, 0)


def test_mkldnn_transpose_dilation_zero():
    raises(ConvError, kernels.DECONV_PRIMITIVE, T((2, 3, 4, 4)), T((3, 2, 3, 3)),
           dilation=[1, 0], transposed=True)
    assert conv(T((2, 4, 6, 6)), T((4, 3, 1, 3)), dilation=[0, 1], transposed=True,
                env=ENV.replace(num_threads=2)) == (2, 3, 6, 8)
    raises(ConvError, "dimensions are invalid", T((2, 4, 6, 6, 6)), T((4, 3, 2, 2, 1)),
           dilation=[1, 1, 0], transposed=True, env=ENV.replace(num_threads=2))


def test_mkldnn_low_precision_flags():
    # a bf16 input reaches Mkldnn only where oneDNN has bf16 kernels (runtime CPU fact)
    bf = ENV.replace(mkldnn_bf16_supported=True)
    assert symconv.select_conv_backend(T((2, 3, 8, 8), dtype="bfloat16"),
                                       T((4, 3, 3, 3), dtype="bfloat16"), None, [1], [0], [1],
                                       False, [0], 1, env=bf) == ConvBackend.Mkldnn
    assert conv(T((2, 3, 8, 8), dtype="bfloat16"), T((4, 3, 3, 3), dtype="bfloat16"),
                env=bf) == (2, 4, 6, 6)


# ---- slow kernels -------------------------------------------------------------------------

NOMKL = ENV.replace(mkldnn_enabled=False)


def test_dispatch_is_not_implemented_error():
    raises(NotImplementedError, "\"slow_conv2d_cpu\" not implemented for 'ComplexFloat'",
           T((1, 3, 8, 8), dtype="complex64"), T((4, 3, 3, 3), dtype="complex64"), env=NOMKL)
    raises(NotImplementedError, "\"compute_columns3d\" not implemented for 'ComplexFloat'",
           T((1, 3, 8, 8, 8), dtype="complex64"), T((4, 3, 3, 3, 3), dtype="complex64"),
           env=NOMKL)
    raises(NotImplementedError, "\"slow_conv3d_cpu\" not implemented for 'ComplexFloat'",
           T((1, 3, 8, 8, 8), dtype="complex64"), T((4, 3, 1, 1, 1), dtype="complex64"),
           env=NOMKL)
    raises(NotImplementedError, "\"slow_conv_dilated<>\" not implemented for 'ComplexFloat'",
           T((1, 3, 8, 8), dtype="complex64"), T((4, 3, 3, 3), dtype="complex64"),
           dilation=[2], env=NOMKL)
    assert conv(T((1, 3, 8, 8), dtype="int64"), T((4, 3, 3, 3), dtype="int64"),
                env=NOMKL) == (1, 4, 6, 6)


def test_weight_and_bias_dtype_mismatch():
    raises(ConvError, "expected scalar type Float but found Double", T((1, 1, 7)),
           T((3, 1, 3), dtype="float64"), env=NOMKL)
    raises(ConvError, "expected scalar type Float but found Double", T((1, 3, 8, 8, 8)),
           T((3, 4, 3, 3, 3)), T((4,), dtype="float64"), transposed=True, env=NOMKL)
    raises(ConvError, "result type ComplexFloat can't be cast to the desired output type Float",
           T((1, 3, 8, 8)), T((3, 4, 3, 3)), T((4,), dtype="complex64"), transposed=True,
           env=NOMKL)
    # copy_ / fill_ take any bias dtype
    assert conv(T((1, 3, 8, 8)), T((4, 3, 3, 3)), T((4,), dtype="complex64"),
                env=NOMKL) == (1, 4, 6, 6)


def test_slow_transposed_checks():
    raises(ConvError, "dilation should be greater than zero, but got dilation_height: 0, "
           "dilation_width: 0", T((1, 3, 4, 5)), T((3, 4, 3, 3)), dilation=[0], transposed=True,
           env=NOMKL)
    raises(ConvError, "output padding must be smaller than either stride or dilation, but got "
           "output_padding_height: 2 output_padding_width: 2 stride_height: 1 stride_width: 1 "
           "dilation_height: 1 dilation_width: 1", T((1, 3, 4, 5)), T((3, 4, 3, 3)),
           output_padding=[2], transposed=True, env=NOMKL)
    raises(ConvError, "Given input size per channel: (4 x 5). Calculated output size per "
           "channel: (0 x 3). Output size is too small", T((1, 3, 4, 5)), T((3, 4, 3, 3)),
           padding=[3, 2], transposed=True, env=NOMKL)
    raises(ConvError, "non-empty 2D or 4D weight tensor expected, but got: [1, 0, 3, 3]",
           T((1, 3, 8, 8)), T((3, 0, 3, 3)), transposed=True, groups=3, env=NOMKL)
    raises(ConvError, "Trying to create tensor with negative dimension -9223372036854775796: "
           "[1, 4, 1, -9223372036854775796]", T((1, 3, 8)), T((3, 4, 3)), padding=[2**62 - 1],
           transposed=True, env=NOMKL)
    raises(ConvError, "IntArrayRef contains an int that cannot be represented as a SymInt: "
           "-9223372036854775796", T((1, 3, 8, 8, 8)), T((3, 4, 3, 3, 3)),
           padding=[2**62 - 1], transposed=True, env=NOMKL)


def test_slow3d_padding_value_error():
    raises(ConvValueError, "Padding height too large: pad_height=2305843009213693953",
           T((1, 3, 1, 1, 1)), T((4, 3, 1, 1, 1)), padding=[2**61 + 1], env=NOMKL)


def test_div_rtn_truncation_in_shape_checks():
    raises(ConvError, "Given input size per channel: (1 x 1). Calculated output size per "
           "channel: (-1431655765 x -1431655765). Output size is too small",
           T((1, 3, 1, 1)), T((4, 3, 1, 1)), padding=[2**62 - 1], stride=[3], env=NOMKL)
    # the dilated kernel computes its output with the truncated quotient
    assert conv(T((1, 3, 1, 1)), T((4, 3, 1, 1)), padding=[2**62 - 1], stride=[2],
                dilation=[2], env=NOMKL) == (1, 4, 0, 0)


def test_nnpack_types():
    raises(ConvError, "Mismatched Tensor types in NNPack convolutionOutput", T((16, 3, 8, 8)),
           T((4, 3, 3, 3)), T((4,), dtype="bfloat16"), env=NOMKL)


def test_allocation_beyond_address_space():
    with pytest.raises(ConvError) as info:
        conv(T((2, 3, 1, 1)), T((4, 3, 1, 1)), padding=[(2**29 - 1) // 2],
             env=ENV.replace(num_threads=2))
    assert "you tried to allocate 9223372002495037472 bytes" in str(info.value)


# ---- symbolic answers -----------------------------------------------------------------------


def _at(shp, **values):
    """The case holding at ``values`` (sympy conditions)."""
    subs = {sympy.Symbol(k, integer=True, nonnegative=True): v for k, v in values.items()}
    for c in shp.cases:
        cond = c.condition
        if isinstance(cond, sympy.Basic):
            cond = cond.subs(subs)
        if D.truth(cond):
            return c
    raise AssertionError(f"no case at {values}")


@pytest.mark.parametrize("h", [1, 2, 3, 4, 9])
def test_symbolic_slow_transpose_agrees_with_concrete(h):
    shp = conv(T((1, 3, "H", 5)), T((3, 4, 3, 3)), padding=[2], transposed=True)
    case = _at(shp, H=h)
    try:
        want = conv(T((1, 3, h, 5)), T((3, 4, 3, 3)), padding=[2], transposed=True)
    except (ConvError, IndexError, NotImplementedError, ConvValueError) as e:
        assert isinstance(case.outcome, type(e)), (case.rule, e)
        return
    got = tuple(int(sympy.sympify(x).subs(sympy.Symbol("H", integer=True, nonnegative=True), h))
                for x in case.outcome)
    assert got == want


def test_symbolic_mkldnn_transpose_has_desc_case():
    shp = conv(T((2, 3, "H", "W")), T((3, 4, 3, 3)), padding=[2], transposed=True)
    rules = {c.rule for c in shp.cases}
    assert "mkldnn_transpose:mkldnn_transpose_desc_tag" in rules
    case = _at(shp, H=1, W=4)
    assert isinstance(case.outcome, ConvError) and str(case.outcome) == kernels.DESC_TAG


def test_symbolic_kernel_checks_record_conditions():
    h = D.sym("h")
    chk = Checker()
    assert kernels.div_rtn(h, 2) is not None
    chk(D.ge(h, 1), lambda: "x", name="probe")
    assert chk.symbolic


def test_limit_checks_skip_symbolic_sizes():
    shp = conv(T((1, 3, "H", "W")), T((4, 3, 3, 3)), env=NOMKL)
    assert not any("overflow" in str(c.outcome) or "allocate" in str(c.outcome)
                   for c in shp.cases)


# ---- differences documented in docs/differences.md that these tests show ---------------------


def test_conv2d_checks_bias_dtype_but_convolution_does_not():
    """torch 2.13's conv1d/2d/3d refuse a bias of another dtype before batchify;
    torch.convolution (what convolution_output_shape models) lets the kernel decide."""
    from tests import oracle
    x, w, b = torch.zeros(1, 3, 8, 8), torch.zeros(4, 3, 3, 3), torch.zeros(4, dtype=torch.float64)
    with pytest.raises(RuntimeError) as info:  # refused before any kernel runs
        torch.nn.functional.conv2d(x, w, b)
    assert str(info.value).splitlines()[0] == \
        "Input type (float) and bias type (double) should be the same"
    case = {"input": {"shape": [1, 3, 8, 8]}, "weight": {"shape": [4, 3, 3, 3]},
            "bias": {"shape": [4], "dtype": "float64"}, "stride": [1], "padding": [0],
            "dilation": [1], "transposed": False, "output_padding": [0], "groups": 1,
            "flags": {"mkldnn": False}}
    worker = oracle.ConvWorker()  # kernels run in a subprocess
    try:
        assert worker.run(case) == {"shape": [1, 4, 6, 6]}
    finally:
        worker.close()
    assert conv(T((1, 3, 8, 8)), T((4, 3, 3, 3)), T((4,), dtype="float64"),
                env=NOMKL) == (1, 4, 6, 6)


def test_python_conv_backend_enum_is_broken():
    """torch._C._ConvBackend lacks MkldnnTranspose and spells 'MpsTranspose,'; the integer
    values follow the C++ enum, which ConvBackend.from_torch relies on."""
    names = set(torch._C._ConvBackend.__members__)
    assert "MkldnnTranspose" not in names and "MpsTranspose," in names
    assert ConvBackend.from_torch(torch._C._ConvBackend.MkldnnEmpty) == ConvBackend.MkldnnEmpty
    x, w = torch.zeros(2, 3, 8, 8), torch.zeros(3, 4, 3, 3)
    raw = torch._C._select_conv_backend(x, w, None, [1], [0], [1], True, [0], 1)
    assert int(raw) == 9 and ConvBackend.from_torch(raw) == ConvBackend.MkldnnTranspose


def test_depthwise_kernel_flag_decides_cuda_depthwise():
    """torch >= 2.13 reads torch.backends.cudnn.depthwise_kernel inside use_cudnn_depthwise
    (upstream source; the H100 records predate the flag)."""
    base = symconv.preset("cuda-cudnn8")
    inp = T((8, 64, 56, 56), dtype="float16", device="cuda")
    wt = T((64, 1, 3, 3), dtype="float16", device="cuda")
    pick = {k: symconv.select_conv_backend(inp, wt, None, [1], [1], [1], False, [0], 64,
                                           env=base.replace(cudnn_depthwise_kernel=k))
            for k in ("auto", "cudnn", "native")}
    assert pick["cudnn"] == ConvBackend.Cudnn
    assert pick["native"] == ConvBackend.CudaDepthwise2d
    assert pick["auto"] == ConvBackend.Cudnn  # filter 3, stride 1: the workload rule says cuDNN
    old = base.replace(torch_version="2.11.0", cudnn_depthwise_kernel="native")
    assert symconv.select_conv_backend(inp, wt, None, [1], [1], [1], False, [0], 64,
                                       env=old) == ConvBackend.Cudnn  # 2.11 has no flag
