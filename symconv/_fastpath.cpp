// symconv's warm path in C++: replays a plan that symconv's Python code chose.
//
// symconv.convolution decides everything in Python (checks, backend selection, the kernel and
// its arguments). When a call is decided and it runs one kernel directly, the Python side
// registers the plan here under a key made of everything the decision read: the three tensors'
// sizes, strides, dtypes and devices, the parameters exactly as passed, and the runtime flags
// that the input's device reads. A later call with an equal key runs the same kernel with the
// same arguments without entering the interpreter; any other call (a miss, a tensor subclass or
// __torch_function__ mode, symbolic sizes, a gradient to record, a float or bool where an int
// belongs, ...) returns None and the Python path decides it. Nothing here decides: the key only
// says "seen before", the plan is Python's. See symconv/native.py.

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/PythonTorchFunctionTLS.h>
#include <ATen/core/Tensor.h>
#include <ATen/native/ConvUtils.h>
#include <ATen/ops/conv_depthwise3d.h>
#include <ATen/ops/cudnn_convolution.h>
#include <ATen/ops/mkldnn_convolution.h>
#include <ATen/ops/slow_conv3d.h>
#include <ATen/ops/slow_conv_dilated2d.h>
#include <ATen/ops/slow_conv_dilated3d.h>
#include <ATen/ops/slow_conv_transpose2d.h>
#include <ATen/ops/slow_conv_transpose3d.h>
#include <ATen/ops/thnn_conv2d.h>
#include <ATen/ops/_conv_depthwise2d.h>
#if __has_include(<ATen/ops/_nnpack_spatial_convolution.h>)
#include <ATen/ops/_nnpack_spatial_convolution.h>
#define SYMCONV_HAS_NNPACK 1
#endif
#include <c10/core/GradMode.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

namespace {

// The backends a plan may name: ATen's own ConvBackend (symconv.backends.ConvBackend has the
// same values, checked by tests/test_native.py).
using at::native::ConvBackend;
constexpr int64_t code(ConvBackend b) {
  return static_cast<int64_t>(b);
}
constexpr int64_t Cudnn = code(ConvBackend::Cudnn);
constexpr int64_t Mkldnn = code(ConvBackend::Mkldnn);
constexpr int64_t NnpackSpatial = code(ConvBackend::NnpackSpatial);
constexpr int64_t Slow2d = code(ConvBackend::Slow2d);
constexpr int64_t Slow3d = code(ConvBackend::Slow3d);
constexpr int64_t SlowDilated2d = code(ConvBackend::SlowDilated2d);
constexpr int64_t SlowDilated3d = code(ConvBackend::SlowDilated3d);
constexpr int64_t SlowTranspose2d = code(ConvBackend::SlowTranspose2d);
constexpr int64_t SlowTranspose3d = code(ConvBackend::SlowTranspose3d);
constexpr int64_t CudaDepthwise2d = code(ConvBackend::CudaDepthwise2d);
constexpr int64_t CudaDepthwise3d = code(ConvBackend::CudaDepthwise3d);

struct Plan {
  int64_t backend;
  std::vector<int64_t> kernel_size, stride, padding, dilation, output_padding;
  int64_t groups;
  bool benchmark, deterministic, allow_tf32;
};

struct KeyHash {
  size_t operator()(const std::vector<int64_t>& v) const noexcept {
    uint64_t h = 1469598103934665603ULL ^ v.size();
    for (int64_t x : v) {
      h ^= static_cast<uint64_t>(x) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    }
    return static_cast<size_t>(h);
  }
};

// shared so that a call keeps its plan while it runs without the GIL (another thread may
// register, evict or clear meanwhile)
std::unordered_map<std::vector<int64_t>, std::shared_ptr<const Plan>, KeyHash> plans;
size_t max_plans = 4096;
PyObject* depthwise_flag = nullptr;  // a callable giving the depthwise-kernel flag as an int

// A tensor's part of the key; false where the call must take the Python path.
bool put_tensor(PyObject* o, std::vector<int64_t>& key, const at::Tensor** out) {
  if (!THPVariable_CheckExact(o)) {
    return false;  // subclasses may override anything
  }
  const at::Tensor& t = THPVariable_Unpack(o);
  if (t.layout() != c10::kStrided || t.unsafeGetTensorImpl()->has_symbolic_sizes_strides()) {
    return false;
  }
  auto sizes = t.sizes();
  auto strides = t.strides();
  key.push_back(static_cast<int64_t>(sizes.size()));
  key.insert(key.end(), sizes.begin(), sizes.end());
  key.insert(key.end(), strides.begin(), strides.end());
  key.push_back(static_cast<int64_t>(t.scalar_type()));
  key.push_back(static_cast<int64_t>(t.device().type()));
  key.push_back(static_cast<int64_t>(t.device().index()));
  *out = &t;
  return true;
}

// An int parameter as passed: an exact int (tagged -1) or a tuple/list of exact ints (tagged
// with its length). Anything else (a float, a bool, a numpy int) takes the Python path.
bool put_param(PyObject* o, std::vector<int64_t>& key) {
  int overflow = 0;
  if (PyLong_CheckExact(o)) {
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
      PyErr_Clear();
      return false;
    }
    key.push_back(-1);
    key.push_back(v);
    return true;
  }
  if (!PyTuple_CheckExact(o) && !PyList_CheckExact(o)) {
    return false;
  }
  Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
  PyObject** items = PySequence_Fast_ITEMS(o);
  key.push_back(static_cast<int64_t>(n));
  for (Py_ssize_t i = 0; i < n; i++) {
    if (!PyLong_CheckExact(items[i])) {
      return false;
    }
    long long v = PyLong_AsLongLongAndOverflow(items[i], &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
      PyErr_Clear();
      return false;
    }
    key.push_back(v);
  }
  return true;
}

struct Call {
  const at::Tensor* input = nullptr;
  const at::Tensor* weight = nullptr;
  const at::Tensor* bias = nullptr;
};

// The key of (input, weight, bias, stride, padding, dilation, transposed, output_padding,
// groups); false where the call must take the Python path. -1 is an error already set.
int make_key(PyObject* const* args, std::vector<int64_t>& key, Call& call) {
  PyObject* bias = args[2];
  // exact tensors (and Parameters) have no __torch_function__ of their own; a mode would
  // see the kernel call on the Python path
  if (at::impl::torch_function_mode_enabled()) {
    return 0;
  }
  if (!put_tensor(args[0], key, &call.input) || !put_tensor(args[1], key, &call.weight)) {
    return 0;
  }
  if (bias == Py_None) {
    key.push_back(-2);
  } else if (!put_tensor(bias, key, &call.bias)) {
    return 0;
  }
  if (c10::GradMode::is_enabled() &&
      (call.input->requires_grad() || call.weight->requires_grad() ||
       (call.bias != nullptr && call.bias->requires_grad()))) {
    return 0;  // autograd: the Python path records the graph
  }
  for (int i : {3, 4, 5}) {
    if (!put_param(args[i], key)) {
      return 0;
    }
  }
  if (args[6] == Py_True) {
    key.push_back(1);
  } else if (args[6] == Py_False) {
    key.push_back(0);
  } else {
    return 0;
  }
  if (!put_param(args[7], key) || !PyLong_CheckExact(args[8]) || !put_param(args[8], key)) {
    return 0;
  }
  // the runtime flags that selection reads for this device (symconv.lowering._DEVICE_FLAGS)
  auto& ctx = at::globalContext();
  if (call.input->is_cuda()) {
    key.push_back(ctx.userEnabledCuDNN());
    key.push_back(ctx.deterministicCuDNN());
    key.push_back(ctx.deterministicAlgorithms());
    key.push_back(ctx.benchmarkCuDNN());
    key.push_back(ctx.allowTF32CuDNN());
    if (depthwise_flag != nullptr) {
      PyObject* r = PyObject_CallNoArgs(depthwise_flag);
      if (r == nullptr) {
        return -1;
      }
      long long v = PyLong_AsLongLong(r);
      Py_DECREF(r);
      if (v == -1 && PyErr_Occurred()) {
        return -1;
      }
      key.push_back(v);
    }
  } else if (call.input->is_cpu()) {
    key.push_back(ctx.userEnabledMkldnn());
    key.push_back(ctx.userEnabledNNPACK());
    key.push_back(at::get_num_threads());
  } else {
    return 0;
  }
  return 1;
}

at::Tensor run(const Plan& p, const at::Tensor& input, const at::Tensor& weight,
               const at::Tensor* bias) {
  std::optional<at::Tensor> b;
  if (bias != nullptr) {
    b = *bias;
  }
  switch (p.backend) {
    case Cudnn: {
      at::Tensor out = at::cudnn_convolution(input, weight, p.padding, p.stride, p.dilation,
                                             p.groups, p.benchmark, p.deterministic,
                                             p.allow_tf32);
      if (bias != nullptr) {
        std::vector<int64_t> shape(input.dim(), 1);
        shape[1] = -1;
        out.add_(bias->reshape(shape));
      }
      return out;
    }
    case Mkldnn:
      return at::mkldnn_convolution(input, weight, b, p.padding, p.stride, p.dilation,
                                    p.groups);
#ifdef SYMCONV_HAS_NNPACK
    case NnpackSpatial:
      return at::_nnpack_spatial_convolution(input, weight, b, p.padding, p.stride);
#endif
    case Slow2d:
      return at::thnn_conv2d(input, weight, p.kernel_size, b, p.stride, p.padding);
    case SlowDilated2d:
      return at::slow_conv_dilated2d(input, weight, p.kernel_size, b, p.stride, p.padding,
                                     p.dilation);
    case SlowDilated3d:
      return at::slow_conv_dilated3d(input, weight, p.kernel_size, b, p.stride, p.padding,
                                     p.dilation);
    case SlowTranspose2d:
      return at::slow_conv_transpose2d(input, weight, p.kernel_size, b, p.stride, p.padding,
                                       p.output_padding, p.dilation);
    case SlowTranspose3d:
      return at::slow_conv_transpose3d(input, weight, p.kernel_size, b, p.stride, p.padding,
                                       p.output_padding, p.dilation);
    case Slow3d:
      return at::slow_conv3d(input, weight, p.kernel_size, b, p.stride, p.padding);
    case CudaDepthwise2d:
      return at::_conv_depthwise2d(input, weight, p.kernel_size, b, p.stride, p.padding,
                                   p.dilation);
    case CudaDepthwise3d:
      return at::conv_depthwise3d(input, weight, p.kernel_size, b, p.stride, p.padding,
                                  p.dilation);
    default:
      TORCH_CHECK(false, "symconv fast path: no kernel for backend ", p.backend);
  }
}

bool runs(int64_t backend) {
  switch (backend) {
    case Cudnn:
    case Mkldnn:
#ifdef SYMCONV_HAS_NNPACK
    case NnpackSpatial:
#endif
    case Slow2d:
    case SlowDilated2d:
    case SlowDilated3d:
    case SlowTranspose2d:
    case SlowTranspose3d:
    case Slow3d:
    case CudaDepthwise2d:
    case CudaDepthwise3d:
      return true;
    default:
      return false;
  }
}

std::vector<int64_t> int_list(PyObject* o) {
  std::vector<int64_t> out;
  PyObject* seq = PySequence_Fast(o, "symconv fast path: expected a sequence of ints");
  if (seq == nullptr) {
    throw python_error();
  }
  Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  for (Py_ssize_t i = 0; i < n; i++) {
    long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
    if (v == -1 && PyErr_Occurred()) {
      Py_DECREF(seq);
      throw python_error();
    }
    out.push_back(v);
  }
  Py_DECREF(seq);
  return out;
}

// convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
// groups) -> the output, or None (not seen before, or not for this path).
PyObject* convolution(PyObject* /*self*/, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  if (nargs != 9) {
    PyErr_SetString(PyExc_TypeError, "symconv fast path: convolution takes 9 arguments");
    return nullptr;
  }
  thread_local std::vector<int64_t> key;
  key.clear();
  Call call;
  int made = make_key(args, key, call);
  if (made < 0) {
    return nullptr;
  }
  if (made == 0) {
    Py_RETURN_NONE;
  }
  auto it = plans.find(key);
  if (it == plans.end()) {
    Py_RETURN_NONE;
  }
  std::shared_ptr<const Plan> plan = it->second;
  at::Tensor out;
  {
    pybind11::gil_scoped_release no_gil;
    out = run(*plan, *call.input, *call.weight, call.bias);
  }
  return THPVariable_Wrap(std::move(out));
  END_HANDLE_TH_ERRORS
}

// register(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups,
//          backend, kernel_size, stride, padding, dilation, output_padding, groups,
//          benchmark, deterministic, allow_tf32) -> whether the plan was registered
PyObject* register_plan(PyObject* /*self*/, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  if (nargs != 19) {
    PyErr_SetString(PyExc_TypeError, "symconv fast path: register takes 19 arguments");
    return nullptr;
  }
  std::vector<int64_t> key;
  Call call;
  int made = make_key(args, key, call);
  if (made < 0) {
    return nullptr;
  }
  int64_t backend = PyLong_AsLongLong(args[9]);
  if (backend == -1 && PyErr_Occurred()) {
    return nullptr;
  }
  if (made == 0 || !runs(backend)) {
    Py_RETURN_FALSE;
  }
  auto plan = std::make_shared<Plan>();
  Plan& p = *plan;
  p.backend = backend;
  p.kernel_size = int_list(args[10]);
  p.stride = int_list(args[11]);
  p.padding = int_list(args[12]);
  p.dilation = int_list(args[13]);
  p.output_padding = int_list(args[14]);
  p.groups = PyLong_AsLongLong(args[15]);
  if (p.groups == -1 && PyErr_Occurred()) {
    return nullptr;
  }
  p.benchmark = PyObject_IsTrue(args[16]) == 1;
  p.deterministic = PyObject_IsTrue(args[17]) == 1;
  p.allow_tf32 = PyObject_IsTrue(args[18]) == 1;
  if (plans.size() >= max_plans && plans.find(key) == plans.end()) {
    plans.erase(plans.begin());
  }
  plans[std::move(key)] = std::move(plan);
  Py_RETURN_TRUE;
  END_HANDLE_TH_ERRORS
}

PyObject* clear(PyObject* /*self*/, PyObject* /*unused*/) {
  plans.clear();
  Py_RETURN_NONE;
}

PyObject* size(PyObject* /*self*/, PyObject* /*unused*/) {
  return PyLong_FromSize_t(plans.size());
}

// configure(max_plans, depthwise_flag or None)
PyObject* configure(PyObject* /*self*/, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "symconv fast path: configure takes 2 arguments");
    return nullptr;
  }
  long long n = PyLong_AsLongLong(args[0]);
  if (n == -1 && PyErr_Occurred()) {
    return nullptr;
  }
  max_plans = static_cast<size_t>(n < 1 ? 1 : n);
  Py_XDECREF(depthwise_flag);
  depthwise_flag = nullptr;
  if (args[1] != Py_None) {
    Py_INCREF(args[1]);
    depthwise_flag = args[1];
  }
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"convolution", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(convolution)),
     METH_FASTCALL, "the output of a call seen before, else None"},
    {"register", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(register_plan)),
     METH_FASTCALL, "remember the plan Python chose for these arguments"},
    {"configure", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(configure)),
     METH_FASTCALL, "set the cache size and the depthwise-flag reader"},
    {"clear", clear, METH_NOARGS, "forget every plan"},
    {"size", size, METH_NOARGS, "the number of plans"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  if (PyModule_AddFunctions(m.ptr(), methods) < 0) {
    throw pybind11::error_already_set();
  }
}
