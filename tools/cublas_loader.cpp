// The cuBLAS calls of examples/train_mlp/mlp_cuda.h, for `actloss demo --device cuda` in an nvcc
// build, resolved from libcublas when first used instead of at link time. The tool carries its
// CUDA runtime statically so that it starts on a machine with only the driver; linking cuBLAS
// would make every command need the toolkit's libcublas, where only this one does. When it cannot
// be loaded, cublasCreate fails and cublasGetStatusString says why.
#include <cublas_v2.h>
#include <dlfcn.h>

#include <string>

namespace {

#define ACTLOSS_CUBLAS_STRINGIFY(x) #x
#define ACTLOSS_CUBLAS_SONAME(major) "libcublas.so." ACTLOSS_CUBLAS_STRINGIFY(major)

#define ACTLOSS_CUBLAS_FUNCTIONS(X) \
  X(cublasCreate_v2)                \
  X(cublasDestroy_v2)               \
  X(cublasSetStream_v2)             \
  X(cublasGetStatusName)            \
  X(cublasGetStatusString)          \
  X(cublasSscal_v2)                 \
  X(cublasSaxpy_v2)                 \
  X(cublasSgemv_v2)                 \
  X(cublasSger_v2)                  \
  X(cublasSgemm_v2)

struct Library {
#define ACTLOSS_CUBLAS_POINTER(name) decltype(&::name) name = nullptr;
  ACTLOSS_CUBLAS_FUNCTIONS(ACTLOSS_CUBLAS_POINTER)
#undef ACTLOSS_CUBLAS_POINTER
  std::string error;  // empty when every function was found

  Library() {
    // The major version the headers were built against: the calls' signatures are its.
    void* so = dlopen(ACTLOSS_CUBLAS_SONAME(CUBLAS_VER_MAJOR), RTLD_NOW | RTLD_LOCAL);
    if (so == nullptr) {
      const char* reason = dlerror();
      error = std::string(ACTLOSS_CUBLAS_SONAME(CUBLAS_VER_MAJOR) " not loadable: ") +
              (reason != nullptr ? reason : "?");
      return;
    }
#define ACTLOSS_CUBLAS_LOAD(name)                                \
  name = reinterpret_cast<decltype(&::name)>(dlsym(so, #name)); \
  if (name == nullptr) {                                         \
    error = "libcublas has no " #name;                           \
    return;                                                      \
  }
    ACTLOSS_CUBLAS_FUNCTIONS(ACTLOSS_CUBLAS_LOAD)
#undef ACTLOSS_CUBLAS_LOAD
  }
};

const Library& library() {
  static const Library lib;  // loaded on first use, never unloaded
  return lib;
}

}  // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  const Library& lib = library();
  return lib.error.empty() ? lib.cublasCreate_v2(handle) : CUBLAS_STATUS_NOT_INITIALIZED;
}

// The rest are reached only with a handle from a successful cublasCreate, so the library is there.
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  return library().cublasDestroy_v2(handle);
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  return library().cublasSetStream_v2(handle, stream);
}

const char* cublasGetStatusName(cublasStatus_t status) {
  const Library& lib = library();
  return lib.error.empty() ? lib.cublasGetStatusName(status) : "CUBLAS_STATUS_NOT_INITIALIZED";
}

const char* cublasGetStatusString(cublasStatus_t status) {
  const Library& lib = library();
  return lib.error.empty() ? lib.cublasGetStatusString(status) : lib.error.c_str();
}

cublasStatus_t cublasSscal_v2(cublasHandle_t handle, int n, const float* alpha, float* x,
                              int incx) {
  return library().cublasSscal_v2(handle, n, alpha, x, incx);
}

cublasStatus_t cublasSaxpy_v2(cublasHandle_t handle, int n, const float* alpha, const float* x,
                              int incx, float* y, int incy) {
  return library().cublasSaxpy_v2(handle, n, alpha, x, incx, y, incy);
}

cublasStatus_t cublasSgemv_v2(cublasHandle_t handle, cublasOperation_t trans, int m, int n,
                              const float* alpha, const float* A, int lda, const float* x,
                              int incx, const float* beta, float* y, int incy) {
  return library().cublasSgemv_v2(handle, trans, m, n, alpha, A, lda, x, incx, beta, y, incy);
}

cublasStatus_t cublasSger_v2(cublasHandle_t handle, int m, int n, const float* alpha,
                             const float* x, int incx, const float* y, int incy, float* A,
                             int lda) {
  return library().cublasSger_v2(handle, m, n, alpha, x, incx, y, incy, A, lda);
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const float* alpha,
                              const float* A, int lda, const float* B, int ldb, const float* beta,
                              float* C, int ldc) {
  return library().cublasSgemm_v2(handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C,
                                   ldc);
}

}  // extern "C"
