// See cuda/blas.h.
#include "cuda/common.cuh"

#include "cuda/blas.h"

#if !defined(ACTLOSS_SIM)
#include <dlfcn.h>
#endif

#include <map>
#include <string>

namespace actloss::cuda {
namespace {

struct LoadedApi {
  BlasApi api;
  std::string error;  // empty when every entry is there
};

#if defined(ACTLOSS_SIM)

LoadedApi load() {
  LoadedApi loaded;
  loaded.api.create = &cublasCreate_v2;
  loaded.api.destroy = &cublasDestroy_v2;
  loaded.api.set_stream = &cublasSetStream_v2;
  loaded.api.get_stream = &cublasGetStream_v2;
  loaded.api.gemm_ex = &cublasGemmEx;
  loaded.api.status_string = &cublasGetStatusString;
  return loaded;
}

#else

#define ACTLOSS_BLAS_STRINGIFY(x) #x
#define ACTLOSS_BLAS_SONAME(major) "libcublas.so." ACTLOSS_BLAS_STRINGIFY(major)

template <class Function>
bool find(void* library, const char* name, Function& out, std::string& error) {
  out = reinterpret_cast<Function>(dlsym(library, name));
  if (out == nullptr) error = std::string("libcublas has no ") + name;
  return out != nullptr;
}

LoadedApi load() {
  LoadedApi loaded;
  // The major version of the headers this was compiled against: the signatures are its.
  void* library = dlopen(ACTLOSS_BLAS_SONAME(CUBLAS_VER_MAJOR), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* reason = dlerror();
    loaded.error = std::string(ACTLOSS_BLAS_SONAME(CUBLAS_VER_MAJOR) " could not be loaded: ") +
                   (reason != nullptr ? reason : "no reason given");
    return loaded;
  }
  BlasApi& api = loaded.api;
  std::string& error = loaded.error;
  (void)(find(library, "cublasCreate_v2", api.create, error) &&
         find(library, "cublasDestroy_v2", api.destroy, error) &&
         find(library, "cublasSetStream_v2", api.set_stream, error) &&
         find(library, "cublasGetStream_v2", api.get_stream, error) &&
         find(library, "cublasGemmEx", api.gemm_ex, error) &&
         find(library, "cublasGetStatusString", api.status_string, error));
  return loaded;  // the library stays loaded for the life of the process
}

#endif

const LoadedApi& loaded_api() {
  static const LoadedApi loaded = load();
  return loaded;
}

// The calling thread's handles, one per device, destroyed with the thread. The CUDA runtime
// outlives the main thread's thread_local objects, so destroying them at exit is safe.
class ThreadHandles {
 public:
  ThreadHandles() = default;
  ThreadHandles(const ThreadHandles&) = delete;
  ThreadHandles& operator=(const ThreadHandles&) = delete;
  ~ThreadHandles() {
    for (auto& [device, handle] : handles_) (void)api_->destroy(handle);
  }
  Status get(const BlasApi& api, int device, cublasHandle_t* handle) {
    api_ = &api;
    if (auto found = handles_.find(device); found != handles_.end()) {
      *handle = found->second;
      return {};
    }
    cublasHandle_t created = nullptr;
    if (const cublasStatus_t status = api.create(&created); status != CUBLAS_STATUS_SUCCESS)
      return blas_status(api, status, "cublasCreate");
    handles_.emplace(device, created);
    *handle = created;
    return {};
  }

 private:
  const BlasApi* api_ = nullptr;
  std::map<int, cublasHandle_t> handles_;
};

}  // namespace

Status blas_api(const BlasApi** api) {
  const LoadedApi& loaded = loaded_api();
  if (!loaded.error.empty()) {
    return Status(StatusCode::unsupported, "exec.device",
                  "exec.device: the GEMMs of this op need cuBLAS: " + loaded.error);
  }
  *api = &loaded.api;
  return {};
}

Status blas_status(const BlasApi& api, cublasStatus_t status, const char* what) {
  return Status(StatusCode::cuda_error, "",
                std::string(what) + ": " + api.status_string(status) + " (cuBLAS status " +
                    std::to_string(static_cast<int>(status)) + ")");
}

Status thread_blas_handle(const BlasApi& api, cublasHandle_t* handle) {
  int device = 0;
  ACTLOSS_CUDA_TRY(cudaGetDevice(&device));
  thread_local ThreadHandles handles;
  return handles.get(api, device, handle);
}

}  // namespace actloss::cuda
