// Measures what the simulator costs: an empty launch, and one __syncthreads
// round at 32, 256 and 1024 threads. The numbers in sim/README.md come from
// a Release build of this program. `--quick` runs a few iterations only (the
// ctest smoke run).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include <cuda_runtime.h>

#if defined(ACTLOSS_SIM)
#include <simcuda/sim_control.h>
#endif

#include "sim_test_kernels.h"

namespace {

template <class F>
double best_us(int reps, F f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::micro>(
                              std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int reps = quick ? 2 : 7;
  const char* mode = "gpu";
#if defined(ACTLOSS_SIM)
  mode = simcuda::sim::threads_mode() ? "threads" : "fibers";
#endif
  std::printf("mode: %s\n", mode);
  bool ok = true;
  for (const int threads : {32, 256, 1024}) {
    // Warm-up creates the fibers / OS threads this size needs.
    ok &= simtest::empty_kernel(dim3(1), dim3(threads)) == cudaSuccess;
    const int launches = quick ? 5 : 200;
    const double empty = best_us(reps, [&] {
      for (int i = 0; i < launches; ++i) ok &= simtest::empty_kernel(dim3(1), dim3(threads)) == cudaSuccess;
    }) / launches;
    const int barriers = quick ? 10 : (threads >= 1024 ? 200 : 1000);
    const double with = best_us(reps, [&] { ok &= simtest::barrier_loop(threads, barriers) == cudaSuccess; });
    const double without = best_us(reps, [&] { ok &= simtest::barrier_loop(threads, 0) == cudaSuccess; });
    std::printf("threads %4d: empty launch %9.2f us, one barrier round %9.2f us\n", threads, empty,
                std::max(0.0, with - without) / barriers);
  }
  const int blocks = quick ? 100 : 10000;
  const double grid = best_us(reps, [&] { ok &= simtest::empty_kernel(dim3(blocks), dim3(128)) == cudaSuccess; });
  std::printf("grid of %d empty blocks x 128 threads: %.2f us per block\n", blocks, grid / blocks);
  return ok ? 0 : 1;
}
