// The simulator's side of simcuda::launch. Included by simcuda.h only.
#pragma once

namespace simcuda {
namespace detail {

// A type-erased launch: `invoke(closure)` runs the kernel body once, for the
// CUDA thread whose built-in variables are current.
struct KernelLaunch {
  const void* kernel;
  void (*invoke)(const void* closure);
  const void* closure;
  dim3 grid;
  dim3 block;
  std::size_t dynamic_smem_bytes;
  cudaStream_t stream;
  // A heap copy of the closure and its deleter: a launch captured into a
  // graph keeps its arguments for every replay.
  void* (*copy_closure)(const void* closure);
  void (*delete_closure)(void* closure);
  // Blocks per thread-block cluster along x (1: no cluster). The grid's x extent is a multiple.
  unsigned cluster = 1;
};

// Validates the configuration (errors go through cudaGetLastError as in
// CUDA) and runs the whole grid before returning.
cudaError_t run_launch(const KernelLaunch& launch) noexcept;

}  // namespace detail

template <class... KArgs, class... Args>
inline cudaError_t launch_in_clusters(void (*kernel)(KArgs...), dim3 grid, dim3 block,
                                      unsigned cluster, std::size_t dynamic_smem_bytes,
                                      cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(KArgs) == sizeof...(Args),
                "simcuda::launch: argument count does not match the kernel");
  // Arguments are converted to the parameter types once, as CUDA copies them
  // into the parameter buffer; every CUDA thread then gets its own copy.
  using Params = std::tuple<std::remove_cv_t<KArgs>...>;
  struct Closure {
    void (*fn)(KArgs...);
    Params params;
  };
  const Closure closure{kernel, Params(std::forward<Args>(args)...)};
  const detail::KernelLaunch l{
      reinterpret_cast<const void*>(kernel),
      [](const void* c) {
        const auto* cl = static_cast<const Closure*>(c);
        std::apply(cl->fn, cl->params);
      },
      &closure, grid, block, dynamic_smem_bytes, stream,
      [](const void* c) -> void* { return new Closure(*static_cast<const Closure*>(c)); },
      [](void* c) { delete static_cast<Closure*>(c); }, cluster};
  return detail::run_launch(l);
}

template <class... KArgs, class... Args>
inline cudaError_t launch(void (*kernel)(KArgs...), dim3 grid, dim3 block,
                          std::size_t dynamic_smem_bytes, cudaStream_t stream,
                          Args&&... args) {
  return launch_in_clusters(kernel, grid, block, 1, dynamic_smem_bytes, stream,
                            std::forward<Args>(args)...);
}

}  // namespace simcuda

// The typed overloads that cuda_runtime.h declares only for nvcc, so host
// launchers can pass kernels directly in both builds.
template <class T>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, T* entry) {
  return ::cudaFuncGetAttributes(attr, reinterpret_cast<const void*>(entry));
}
template <class T>
inline cudaError_t cudaFuncSetAttribute(T* entry, cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(entry), attr, value);
}
