// CPU stand-in for the few cuBLAS calls that code around the library (the
// training example) makes on simulated device memory, defined against the
// real declarations of cublas_v2.h. Like the runtime stand-in, whatever is not
// here stays an undefined symbol: a program that needs another cuBLAS call
// fails to link in the simulator build instead of computing nonsense.
//
// Every call runs synchronously on the calling thread, as the runtime's copies
// and memsets do, so it is ordered after the kernels and copies issued before
// it on any stream and before those issued after it. Plain float loops: the
// point is the same results as cuBLAS up to rounding, not speed.
//
// A stride of 0 repeats one element: fine for a vector that is only read (the
// real cuBLAS accepts it in Sgemv), refused for one that is written, where a
// GPU's threads would race on that element.
#include "engine.h"

#include <cublas_v2.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <set>
#include <utility>

struct cublasContext {
  cudaStream_t stream = nullptr;
};

namespace simcuda::detail {
namespace {

struct Handles {
  std::mutex m;
  std::set<const cublasContext*> live;
};

Handles& handles() {
  static Handles* h = new Handles;  // never destroyed, like the runtime's state
  return *h;
}

bool live(cublasHandle_t h) {
  Handles& all = handles();
  std::lock_guard lk(all.m);
  return all.live.count(h) != 0;
}

// Bytes from the first to the last element of a column-major rows x cols
// matrix (rows, cols > 0) or of an n-element vector with stride inc (n > 0):
// cuBLAS addresses a vector with a negative stride from its lowest element.
std::size_t matrix_bytes(int rows, int cols, int ld, std::size_t element_size = sizeof(float)) {
  return (static_cast<std::size_t>(cols - 1) * static_cast<std::size_t>(ld) +
          static_cast<std::size_t>(rows)) *
         element_size;
}
std::size_t vector_bytes(int n, int inc) {
  const std::int64_t step = inc < 0 ? -std::int64_t{inc} : std::int64_t{inc};
  return static_cast<std::size_t>((std::int64_t{n} - 1) * step + 1) * sizeof(float);
}

// Index of logical element i of a vector of n elements with stride inc.
std::int64_t at(std::int64_t i, int n, int inc) {
  return inc >= 0 ? i * inc : (i - (std::int64_t{n} - 1)) * inc;
}

bool valid_op(cublasOperation_t op) {
  return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

int at_least_1(int v) { return v > 1 ? v : 1; }

using Operand = std::pair<const void*, std::size_t>;  // address, bytes

// What is left to check once the arguments are valid and there is work to do:
// the handle's stream still exists, and every operand lies in device memory.
// A GPU would fault on a host pointer or an overrun some time later; here the
// call fails at once, the way the runtime stand-in rejects such copies.
cublasStatus_t check_launch(cublasHandle_t h, std::initializer_list<Operand> operands) {
  if (!stream_is_valid(h->stream)) return CUBLAS_STATUS_EXECUTION_FAILED;
  for (const auto& [p, bytes] : operands)
    if (!device_range(p, bytes)) return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}

// The computation of a call whose arguments passed every check, in stream order: now, or, on a
// capturing stream, at each replay of the graph (the arguments, alpha and beta included, as they
// were at capture, as cuBLAS's host-mode scalars are).
template <class Body>
cublasStatus_t run_in_stream_order(cublasHandle_t h, Body body) {
  const auto call = [body] {
    body();
    return cudaSuccess;
  };
  switch (queue_library_call(h->stream, call)) {
    case LibraryCall::run_now: body(); return CUBLAS_STATUS_SUCCESS;
    case LibraryCall::recorded: return CUBLAS_STATUS_SUCCESS;
    case LibraryCall::refused: break;
  }
  return CUBLAS_STATUS_EXECUTION_FAILED;
}

// GemmEx's element types: the bytes of a float, a half or a bfloat16, widened exactly to float
// and narrowed with round-to-nearest-even (NaN stays NaN), as the GPU's conversions do.
std::size_t element_size(cudaDataType type) {
  switch (type) {
    case CUDA_R_32F: return 4;
    case CUDA_R_16F:
    case CUDA_R_16BF: return 2;
    default: return 0;
  }
}

float load_element(const void* base, cudaDataType type, std::int64_t i) {
  switch (type) {
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(base)[i]);
    case CUDA_R_16BF: {
      std::uint16_t bits;
      std::memcpy(&bits, static_cast<const char*>(base) + 2 * i, 2);
      const std::uint32_t word = std::uint32_t{bits} << 16;
      float value;
      std::memcpy(&value, &word, 4);
      return value;
    }
    default: return static_cast<const float*>(base)[i];
  }
}

void store_element(void* base, cudaDataType type, std::int64_t i, float value) {
  switch (type) {
    case CUDA_R_16F: static_cast<__half*>(base)[i] = __float2half_rn(value); return;
    case CUDA_R_16BF: {
      std::uint32_t word;
      std::memcpy(&word, &value, 4);
      const bool nan = (word & 0x7fffffffu) > 0x7f800000u;
      const std::uint32_t rounded = nan ? (word | 0x00400000u)
                                        : word + 0x7fffu + ((word >> 16) & 1u);
      const auto bits = static_cast<std::uint16_t>(rounded >> 16);
      std::memcpy(static_cast<char*>(base) + 2 * i, &bits, 2);
      return;
    }
    default: static_cast<float*>(base)[i] = value; return;
  }
}

// The compute types that accumulate in float (the _FAST_ ones may round inputs lower on a GPU;
// here they are all exact float products).
bool float_compute(cublasComputeType_t compute) {
  return compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_PEDANTIC ||
         compute == CUBLAS_COMPUTE_32F_FAST_16F || compute == CUBLAS_COMPUTE_32F_FAST_16BF ||
         compute == CUBLAS_COMPUTE_32F_FAST_TF32;
}

}  // namespace
}  // namespace simcuda::detail

using namespace simcuda::detail;

extern "C" {

// ------------------------------------------------------------- helpers --
cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  auto* h = new cublasContext;
  Handles& all = handles();
  std::lock_guard lk(all.m);
  all.live.insert(h);
  *handle = h;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  Handles& all = handles();
  std::lock_guard lk(all.m);
  if (all.live.erase(handle) == 0) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  // cuBLAS takes any value here and fails when it launches; rejecting an
  // unknown stream at once points at the call that is wrong.
  if (!stream_is_valid(streamId)) return CUBLAS_STATUS_INVALID_VALUE;
  handle->stream = streamId;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* streamId) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (streamId == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *streamId = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

#define SIMCUDA_CUBLAS_STATUSES(X)                                              \
  X(CUBLAS_STATUS_SUCCESS, "success")                                           \
  X(CUBLAS_STATUS_NOT_INITIALIZED, "the library was not initialized")           \
  X(CUBLAS_STATUS_ALLOC_FAILED, "the resource allocation failed")               \
  X(CUBLAS_STATUS_INVALID_VALUE, "an invalid numeric value was used as an argument") \
  X(CUBLAS_STATUS_ARCH_MISMATCH, "an absent device architectural feature is required") \
  X(CUBLAS_STATUS_MAPPING_ERROR, "an access to GPU memory space failed")        \
  X(CUBLAS_STATUS_EXECUTION_FAILED, "the GPU program failed to execute")        \
  X(CUBLAS_STATUS_INTERNAL_ERROR, "an internal operation failed")               \
  X(CUBLAS_STATUS_NOT_SUPPORTED, "the functionality requested is not supported") \
  X(CUBLAS_STATUS_LICENSE_ERROR, "error detected trying to check the license")

const char* cublasGetStatusName(cublasStatus_t status) {
#define X(code, text) \
  case code: return #code;
  switch (status) {
    SIMCUDA_CUBLAS_STATUSES(X)
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
#undef X
}

const char* cublasGetStatusString(cublasStatus_t status) {
#define X(code, text) \
  case code: return text;
  switch (status) {
    SIMCUDA_CUBLAS_STATUSES(X)
    default: return "unknown error";
  }
#undef X
}

// -------------------------------------------------------------- level 1 --
cublasStatus_t cublasSscal_v2(cublasHandle_t handle, int n, const float* alpha, float* x,
                              int incx) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (alpha == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (n <= 0 || incx <= 0) return CUBLAS_STATUS_SUCCESS;  // as the reference BLAS
  if (cublasStatus_t s = check_launch(handle, {{x, vector_bytes(n, incx)}})) return s;
  const float a = *alpha;
  return run_in_stream_order(handle, [=] {
    for (std::int64_t i = 0; i < n; ++i) x[i * incx] *= a;
  });
}

cublasStatus_t cublasSaxpy_v2(cublasHandle_t handle, int n, const float* alpha, const float* x,
                              int incx, float* y, int incy) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (alpha == nullptr || incy == 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (n <= 0 || *alpha == 0.0f) return CUBLAS_STATUS_SUCCESS;
  if (cublasStatus_t s =
          check_launch(handle, {{x, vector_bytes(n, incx)}, {y, vector_bytes(n, incy)}}))
    return s;
  const float a = *alpha;
  return run_in_stream_order(handle, [=] {
    for (std::int64_t i = 0; i < n; ++i) y[at(i, n, incy)] += a * x[at(i, n, incx)];
  });
}

// -------------------------------------------------------------- level 2 --
cublasStatus_t cublasSgemv_v2(cublasHandle_t handle, cublasOperation_t trans, int m, int n,
                              const float* alpha, const float* A, int lda, const float* x,
                              int incx, const float* beta, float* y, int incy) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!valid_op(trans) || m < 0 || n < 0 || lda < at_least_1(m) || incy == 0 ||
      alpha == nullptr || beta == nullptr)
    return CUBLAS_STATUS_INVALID_VALUE;
  const float a = *alpha, b = *beta;
  if (m == 0 || n == 0 || (a == 0.0f && b == 1.0f)) return CUBLAS_STATUS_SUCCESS;
  const bool t = trans != CUBLAS_OP_N;
  const int x_len = t ? m : n, y_len = t ? n : m;
  // With alpha == 0 neither A nor x is read, as in BLAS.
  const bool product = a != 0.0f;
  cublasStatus_t s = product ? check_launch(handle, {{A, matrix_bytes(m, n, lda)},
                                                     {x, vector_bytes(x_len, incx)},
                                                     {y, vector_bytes(y_len, incy)}})
                             : check_launch(handle, {{y, vector_bytes(y_len, incy)}});
  if (s != CUBLAS_STATUS_SUCCESS) return s;
  return run_in_stream_order(handle, [=] {
    for (std::int64_t i = 0; i < y_len; ++i) {
      float sum = 0.0f;
      if (product)
        for (std::int64_t p = 0; p < x_len; ++p)
          sum += (t ? A[p + i * lda] : A[i + p * lda]) * x[at(p, x_len, incx)];
      float& out = y[at(i, y_len, incy)];
      // beta == 0 does not read y, so it may start as NaN, as in BLAS.
      out = (product ? a * sum : 0.0f) + (b == 0.0f ? 0.0f : b * out);
    }
  });
}

cublasStatus_t cublasSger_v2(cublasHandle_t handle, int m, int n, const float* alpha,
                             const float* x, int incx, const float* y, int incy, float* A,
                             int lda) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (m < 0 || n < 0 || lda < at_least_1(m) || alpha == nullptr)
    return CUBLAS_STATUS_INVALID_VALUE;
  const float a = *alpha;
  if (m == 0 || n == 0 || a == 0.0f) return CUBLAS_STATUS_SUCCESS;
  if (cublasStatus_t s = check_launch(handle, {{x, vector_bytes(m, incx)},
                                               {y, vector_bytes(n, incy)},
                                               {A, matrix_bytes(m, n, lda)}}))
    return s;
  return run_in_stream_order(handle, [=] {
    for (std::int64_t j = 0; j < n; ++j) {
      const float ay = a * y[at(j, n, incy)];
      for (std::int64_t i = 0; i < m; ++i) A[i + j * lda] += x[at(i, m, incx)] * ay;
    }
  });
}

// -------------------------------------------------------------- level 3 --
cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const float* alpha,
                              const float* A, int lda, const float* B, int ldb, const float* beta,
                              float* C, int ldc) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  // A is stored m x k (k x m when transposed), B k x n (n x k), C m x n.
  const int a_rows = ta ? k : m, a_cols = ta ? m : k;
  const int b_rows = tb ? n : k, b_cols = tb ? k : n;
  if (!valid_op(transa) || !valid_op(transb) || m < 0 || n < 0 || k < 0 ||
      lda < at_least_1(a_rows) || ldb < at_least_1(b_rows) || ldc < at_least_1(m) ||
      alpha == nullptr || beta == nullptr)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const float a = *alpha, b = *beta;
  // With alpha == 0 or k == 0 neither A nor B is read, so only C must be valid.
  const bool product = a != 0.0f && k > 0;
  cublasStatus_t s = product ? check_launch(handle, {{A, matrix_bytes(a_rows, a_cols, lda)},
                                                     {B, matrix_bytes(b_rows, b_cols, ldb)},
                                                     {C, matrix_bytes(m, n, ldc)}})
                             : check_launch(handle, {{C, matrix_bytes(m, n, ldc)}});
  if (s != CUBLAS_STATUS_SUCCESS) return s;
  return run_in_stream_order(handle, [=] {
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t i = 0; i < m; ++i) {
        float sum = 0.0f;
        if (product)
          for (std::int64_t p = 0; p < k; ++p)
            sum += (ta ? A[p + i * lda] : A[i + p * lda]) *
                   (tb ? B[j + p * ldb] : B[p + j * ldb]);
        float& out = C[i + j * ldc];
        out = (product ? a * sum : 0.0f) + (b == 0.0f ? 0.0f : b * out);
      }
  });
}

// Float accumulation over A and B of one type (f32, f16, bf16), C of that type or f32, float
// alpha and beta on the host: the mixed-precision GEMM of training code (bf16 activations and
// weights, f32 gradients of the weights). Other type or compute combinations are
// CUBLAS_STATUS_NOT_SUPPORTED here, as most are on the GPU. The algorithm is ignored.
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t /*algo*/) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!float_compute(computeType) || element_size(Atype) == 0 || Btype != Atype ||
      (Ctype != Atype && Ctype != CUDA_R_32F))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  const int a_rows = ta ? k : m, a_cols = ta ? m : k;
  const int b_rows = tb ? n : k, b_cols = tb ? k : n;
  if (!valid_op(transa) || !valid_op(transb) || m < 0 || n < 0 || k < 0 ||
      lda < at_least_1(a_rows) || ldb < at_least_1(b_rows) || ldc < at_least_1(m) ||
      alpha == nullptr || beta == nullptr)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  const bool product = a != 0.0f && k > 0;
  const std::size_t in_size = element_size(Atype), out_size = element_size(Ctype);
  cublasStatus_t s =
      product ? check_launch(handle, {{A, matrix_bytes(a_rows, a_cols, lda, in_size)},
                                      {B, matrix_bytes(b_rows, b_cols, ldb, in_size)},
                                      {C, matrix_bytes(m, n, ldc, out_size)}})
              : check_launch(handle, {{C, matrix_bytes(m, n, ldc, out_size)}});
  if (s != CUBLAS_STATUS_SUCCESS) return s;
  return run_in_stream_order(handle, [=] {
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t i = 0; i < m; ++i) {
        float sum = 0.0f;
        if (product)
          for (std::int64_t p = 0; p < k; ++p)
            sum += load_element(A, Atype, ta ? p + i * lda : i + p * lda) *
                   load_element(B, Btype, tb ? j + p * ldb : p + j * ldb);
        const std::int64_t at = i + j * ldc;
        const float old = b == 0.0f ? 0.0f : load_element(C, Ctype, at);
        store_element(C, Ctype, at, (product ? a * sum : 0.0f) + (b == 0.0f ? 0.0f : b * old));
      }
  });
}

}  // extern "C"
