// Runs the tree reduction with its loop barrier left out, in threads mode.
// Built only for ThreadSanitizer builds, registered as an expected failure:
// TSan must report the race (exit code 66). Returns 0 otherwise, so a race
// that goes unseen fails the test.
#include <cstdio>
#include <vector>

#include <cuda_runtime.h>

#include "sim_test_kernels.h"

int main() {
  std::vector<float> in(1024, 1.0f);
  float *din = nullptr, *dout = nullptr;
  cudaMalloc(&din, in.size() * sizeof(float));
  cudaMalloc(&dout, 4 * sizeof(float));
  cudaMemcpy(din, in.data(), in.size() * sizeof(float), cudaMemcpyHostToDevice);
  const cudaError_t e = simtest::tree_reduce(din, dout, 1024, /*planted_missing_sync=*/true);
  float out[4] = {};
  cudaMemcpy(out, dout, sizeof out, cudaMemcpyDeviceToHost);
  std::printf("launch: %s, block sums: %g %g %g %g\n", cudaGetErrorString(e), out[0], out[1],
              out[2], out[3]);
  cudaFree(din);
  cudaFree(dout);
  return 0;
}
