// cuDNN's legacy softmax and activation calls as benchmark peers. The header is used for the
// types; the library is opened at run time, so actloss_bench built here (where cuDNN is
// installed) still starts on a GPU machine without it and simply registers no cuDNN benchmarks.
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <dlfcn.h>

#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>

#include "benchmarks/support/peers.h"

namespace actloss::bench::peers {
namespace {

// clang-format off
#define ACTLOSS_CUDNN_FUNCTIONS(X)                                          \
  X(cudnnCreate) X(cudnnSetStream) X(cudnnGetErrorString)                   \
  X(cudnnCreateTensorDescriptor) X(cudnnSetTensor4dDescriptor)              \
  X(cudnnCreateActivationDescriptor) X(cudnnSetActivationDescriptor)        \
  X(cudnnSetActivationDescriptorSwishBeta)                                  \
  X(cudnnSoftmaxForward) X(cudnnSoftmaxBackward)                            \
  X(cudnnActivationForward) X(cudnnActivationBackward)
// clang-format on

class Library {
 public:
#define ACTLOSS_CUDNN_POINTER(name) decltype(&::name) name = nullptr;
  ACTLOSS_CUDNN_FUNCTIONS(ACTLOSS_CUDNN_POINTER)
#undef ACTLOSS_CUDNN_POINTER
  cudnnHandle_t handle = nullptr;
  std::string error;  // why it is unavailable; empty when usable
  std::mutex mutex;   // guards the caches below
  std::map<std::tuple<int, std::int64_t, std::int64_t>, cudnnTensorDescriptor_t> tensors;
  std::map<int, cudnnActivationDescriptor_t> activations;
  std::map<std::tuple<int, int, int, int>, bool> probed;

  // The handle and the descriptors live as long as the process: destroying them at exit would
  // race with the CUDA runtime's own teardown.
  Library() {
    void* so = nullptr;
    for (const char* name : {"libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"}) {
      so = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (so != nullptr) break;
    }
    if (so == nullptr) {
      const char* reason = dlerror();
      error = std::string("libcudnn not loadable: ") + (reason != nullptr ? reason : "?");
      return;
    }
#define ACTLOSS_CUDNN_LOAD(name)                                \
  name = reinterpret_cast<decltype(&::name)>(dlsym(so, #name)); \
  if (name == nullptr) {                                        \
    error = "libcudnn has no " #name;                           \
    return;                                                     \
  }
    ACTLOSS_CUDNN_FUNCTIONS(ACTLOSS_CUDNN_LOAD)
#undef ACTLOSS_CUDNN_LOAD
    if (const cudnnStatus_t s = cudnnCreate(&handle); s != CUDNN_STATUS_SUCCESS) {
      error = std::string("cudnnCreate: ") + cudnnGetErrorString(s);
      handle = nullptr;
    }
  }
};

Library& library() {
  static Library lib;
  return lib;
}

void check(cudnnStatus_t status, const char* what) {
  if (status != CUDNN_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("cuDNN ") + what + ": " +
                             library().cudnnGetErrorString(status));
  }
}

cudnnDataType_t data_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::f16: return CUDNN_DATA_HALF;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
  }
  return CUDNN_DATA_FLOAT;
}

// [rows x cols] as NCHW (rows, cols, 1, 1): softmax in INSTANCE mode normalises each n.
cudnnTensorDescriptor_t tensor(DType dtype, std::int64_t rows, std::int64_t cols) {
  if (rows > 0x7fffffff || cols > 0x7fffffff)
    throw std::runtime_error("cuDNN: dimension beyond int");
  Library& l = library();
  std::lock_guard lock(l.mutex);
  const auto key = std::make_tuple(static_cast<int>(dtype), rows, cols);
  if (auto it = l.tensors.find(key); it != l.tensors.end()) return it->second;
  cudnnTensorDescriptor_t d = nullptr;
  check(l.cudnnCreateTensorDescriptor(&d), "cudnnCreateTensorDescriptor");
  check(l.cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, data_type(dtype), static_cast<int>(rows),
                                     static_cast<int>(cols), 1, 1),
        "cudnnSetTensor4dDescriptor");
  l.tensors.emplace(key, d);
  return d;
}

// n elements as (n / 1024) x 1024 when that divides, else one row: the layout does not matter to
// an elementwise op, but each dimension must fit an int.
cudnnTensorDescriptor_t flat_tensor(DType dtype, std::int64_t n) {
  return n % 1024 == 0 ? tensor(dtype, n / 1024, 1024) : tensor(dtype, 1, n);
}

bool activation_mode(Activation activation, cudnnActivationMode_t& mode) {
  switch (activation) {
    case Activation::relu: mode = CUDNN_ACTIVATION_RELU; return true;
    case Activation::tanh: mode = CUDNN_ACTIVATION_TANH; return true;
    case Activation::sigmoid: mode = CUDNN_ACTIVATION_SIGMOID; return true;
    case Activation::silu: mode = CUDNN_ACTIVATION_SWISH; return true;  // x sigmoid(beta x), beta 1
    default: return false;  // no leaky ReLU or GELU in the legacy API
  }
}

cudnnActivationDescriptor_t activation_descriptor(Activation activation) {
  cudnnActivationMode_t mode{};
  if (!activation_mode(activation, mode)) throw std::runtime_error("cuDNN has no such activation");
  Library& l = library();
  std::lock_guard lock(l.mutex);
  const int key = static_cast<int>(activation);
  if (auto it = l.activations.find(key); it != l.activations.end()) return it->second;
  cudnnActivationDescriptor_t d = nullptr;
  check(l.cudnnCreateActivationDescriptor(&d), "cudnnCreateActivationDescriptor");
  check(l.cudnnSetActivationDescriptor(d, mode, CUDNN_PROPAGATE_NAN, 0.0),
        "cudnnSetActivationDescriptor");
  if (mode == CUDNN_ACTIVATION_SWISH) {
    check(l.cudnnSetActivationDescriptorSwishBeta(d, 1.0), "cudnnSetActivationDescriptorSwishBeta");
  }
  l.activations.emplace(key, d);
  return d;
}

cudnnHandle_t handle_on(Stream stream) {
  Library& l = library();
  check(l.cudnnSetStream(l.handle, reinterpret_cast<cudaStream_t>(stream)), "cudnnSetStream");
  return l.handle;
}

// Scaling factors are float for every data type but double.
const float kOne = 1.0f;
const float kZero = 0.0f;

// Runs `call` once on a tiny tensor of `dtype` and remembers whether cuDNN accepted it.
template <class Call>
bool probe(int kind, int variant, int backward, DType dtype, Call call) {
  Library& l = library();
  const auto key = std::make_tuple(kind, variant, backward, static_cast<int>(dtype));
  {
    std::lock_guard lock(l.mutex);
    if (auto it = l.probed.find(key); it != l.probed.end()) return it->second;
  }
  bool ok = false;
  void* memory = nullptr;
  constexpr std::int64_t kRows = 2, kCols = 64;
  if (cudaMalloc(&memory, 4 * kRows * kCols * sizeof(float)) == cudaSuccess) {
    cudaMemset(memory, 0, 4 * kRows * kCols * sizeof(float));
    char* base = static_cast<char*>(memory);
    const std::size_t stride = kRows * kCols * sizeof(float);
    try {
      call(kRows, kCols, base, base + stride, base + 2 * stride, base + 3 * stride);
      ok = cudaDeviceSynchronize() == cudaSuccess;
    } catch (const std::exception&) {
      ok = false;
    }
    cudaFree(memory);
  }
  (void)cudaGetLastError();
  std::lock_guard lock(l.mutex);
  l.probed[key] = ok;
  return ok;
}

}  // namespace

bool cudnn_available(std::string* why) {
  Library& l = library();
  if (l.handle == nullptr) {
    if (why != nullptr) *why = l.error.empty() ? "cuDNN handle not created" : l.error;
    return false;
  }
  return true;
}

bool cudnn_has_activation(Activation activation) {
  cudnnActivationMode_t mode{};
  return activation_mode(activation, mode);
}

bool cudnn_supports_softmax(bool log, bool backward, DType dtype) {
  if (!cudnn_available(nullptr)) return false;
  return probe(0, log ? 1 : 0, backward ? 1 : 0, dtype,
               [&](std::int64_t rows, std::int64_t cols, void* a, void* b, void* c, void*) {
                 if (backward) {
                   cudnn_softmax_backward(log, dtype, rows, cols, a, b, c, nullptr);
                 } else {
                   cudnn_softmax_forward(log, dtype, rows, cols, a, b, nullptr);
                 }
               });
}

bool cudnn_supports_activation(Activation activation, bool backward, DType dtype) {
  if (!cudnn_available(nullptr) || !cudnn_has_activation(activation)) return false;
  return probe(1, static_cast<int>(activation), backward ? 1 : 0, dtype,
               [&](std::int64_t rows, std::int64_t cols, void* a, void* b, void* c, void* d) {
                 if (backward) {
                   cudnn_activation_backward(activation, dtype, rows * cols, a, b, c, d, nullptr);
                 } else {
                   cudnn_activation_forward(activation, dtype, rows * cols, a, b, nullptr);
                 }
               });
}

void cudnn_softmax_forward(bool log, DType dtype, std::int64_t rows, std::int64_t cols,
                           const void* x, void* y, Stream stream) {
  const cudnnTensorDescriptor_t d = tensor(dtype, rows, cols);
  check(library().cudnnSoftmaxForward(handle_on(stream),
                                      log ? CUDNN_SOFTMAX_LOG : CUDNN_SOFTMAX_ACCURATE,
                                      CUDNN_SOFTMAX_MODE_INSTANCE, &kOne, d, x, &kZero, d, y),
        "cudnnSoftmaxForward");
}

void cudnn_softmax_backward(bool log, DType dtype, std::int64_t rows, std::int64_t cols,
                            const void* y, const void* dy, void* dx, Stream stream) {
  const cudnnTensorDescriptor_t d = tensor(dtype, rows, cols);
  check(library().cudnnSoftmaxBackward(
            handle_on(stream), log ? CUDNN_SOFTMAX_LOG : CUDNN_SOFTMAX_ACCURATE,
            CUDNN_SOFTMAX_MODE_INSTANCE, &kOne, d, y, d, dy, &kZero, d, dx),
        "cudnnSoftmaxBackward");
}

void cudnn_activation_forward(Activation activation, DType dtype, std::int64_t n, const void* x,
                              void* y, Stream stream) {
  const cudnnTensorDescriptor_t d = flat_tensor(dtype, n);
  check(library().cudnnActivationForward(handle_on(stream), activation_descriptor(activation),
                                         &kOne, d, x, &kZero, d, y),
        "cudnnActivationForward");
}

void cudnn_activation_backward(Activation activation, DType dtype, std::int64_t n, const void* x,
                               const void* y, const void* dy, void* dx, Stream stream) {
  const cudnnTensorDescriptor_t d = flat_tensor(dtype, n);
  check(library().cudnnActivationBackward(handle_on(stream), activation_descriptor(activation),
                                          &kOne, d, y, d, dy, d, x, &kZero, d, dx),
        "cudnnActivationBackward");
}

}  // namespace actloss::bench::peers
