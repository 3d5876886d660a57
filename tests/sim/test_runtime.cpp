// The CUDA runtime stand-in: the same calls and results as on a GPU for the
// subset the library uses (device numbers are those of an H100-class part).
#include <chrono>
#include <cstring>
#include <thread>

#include "sim_test_kernels.h"
#include "test_util.h"

namespace simtest {
namespace {

TEST(Runtime, PointerAttributes) {
  void* dev = nullptr;
  void* pinned = nullptr;
  CUDA_OK(cudaMalloc(&dev, 1000));
  CUDA_OK(cudaMallocHost(&pinned, 64));
  int stack_var = 0;
  cudaPointerAttributes a{};
  CUDA_OK(cudaPointerGetAttributes(&a, dev));
  EXPECT_EQ(a.type, cudaMemoryTypeDevice);
  EXPECT_EQ(a.device, 0);
  EXPECT_EQ(a.devicePointer, dev);
  CUDA_OK(cudaPointerGetAttributes(&a, static_cast<char*>(dev) + 999));
  EXPECT_EQ(a.type, cudaMemoryTypeDevice) << "inside the allocation";
  CUDA_OK(cudaPointerGetAttributes(&a, pinned));
  EXPECT_EQ(a.type, cudaMemoryTypeHost);
  CUDA_OK(cudaPointerGetAttributes(&a, &stack_var));
  EXPECT_EQ(a.type, cudaMemoryTypeUnregistered);
  CUDA_OK(cudaFree(dev));
  CUDA_OK(cudaPointerGetAttributes(&a, dev));
  if (sim_build()) {
    EXPECT_EQ(a.type, cudaMemoryTypeUnregistered) << "freed memory is no longer device memory";
  }
  CUDA_OK(cudaFreeHost(pinned));
  CUDA_OK(cudaFree(nullptr));
}

TEST(Runtime, FreeOfUnknownPointerIsAnError) {
  int x = 0;
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaFree(&x), cudaErrorInvalidValue);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(Runtime, MemcpyKindsAndMemset) {
  std::vector<int> host(256), back(256, -1);
  for (int i = 0; i < 256; ++i) host[i] = i * 7;
  int *a = nullptr, *b = nullptr;
  CUDA_OK(cudaMalloc(&a, 256 * sizeof(int)));
  CUDA_OK(cudaMalloc(&b, 256 * sizeof(int)));
  CUDA_OK(cudaMemcpy(a, host.data(), 1024, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(b, a, 1024, cudaMemcpyDeviceToDevice));
  CUDA_OK(cudaMemcpy(back.data(), b, 1024, cudaMemcpyDeviceToHost));
  EXPECT_EQ(back, host);
  CUDA_OK(cudaMemset(b, 0, 512));
  CUDA_OK(cudaMemcpy(back.data(), b, 1024, cudaMemcpyDefault));
  for (int i = 0; i < 256; ++i) ASSERT_EQ(back[i], i < 128 ? 0 : i * 7);
  std::vector<int> h2(256);
  CUDA_OK(cudaMemcpy(h2.data(), host.data(), 1024, cudaMemcpyHostToHost));
  EXPECT_EQ(h2, host);

  cudaStream_t s;
  CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CUDA_OK(cudaMemsetAsync(a, 0xff, 1024, s));
  CUDA_OK(cudaMemcpyAsync(back.data(), a, 1024, cudaMemcpyDeviceToHost, s));
  CUDA_OK(cudaStreamSynchronize(s));
  for (int v : back) ASSERT_EQ(v, -1);
  CUDA_OK(cudaMemcpy2D(b, 64, host.data(), 32, 16, 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaStreamDestroy(s));

  if (sim_build()) {
    // Contradictory directions, overruns and host memsets fail instead of
    // being undefined.
    EXPECT_EQ(cudaMemcpy(a, host.data(), 1024, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
    EXPECT_EQ(cudaMemcpy(a, b, 1028, cudaMemcpyDeviceToDevice), cudaErrorInvalidValue);
    EXPECT_EQ(cudaMemset(host.data(), 0, 4), cudaErrorInvalidValue);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  }
  EXPECT_EQ(cudaMemcpy(a, b, 4, static_cast<cudaMemcpyKind>(17)), cudaErrorInvalidMemcpyDirection);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidMemcpyDirection);
  CUDA_OK(cudaFree(a));
  CUDA_OK(cudaFree(b));
}

TEST(Runtime, StreamsAndEvents) {
  cudaStream_t s;
  CUDA_OK(cudaStreamCreate(&s));
  cudaEvent_t start, stop, untimed;
  CUDA_OK(cudaEventCreate(&start));
  CUDA_OK(cudaEventCreate(&stop));
  CUDA_OK(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming));
  float ms = -1;
  EXPECT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaErrorInvalidResourceHandle)
      << "neither event recorded yet";
  CUDA_OK(cudaEventRecord(start, s));
  std::vector<float> in(4096, 1.0f);
  DeviceBuffer<float> din(in);
  DeviceBuffer<float> dout(16);
  CUDA_OK(tree_reduce(din.get(), dout.get(), 4096, false, s));
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  CUDA_OK(cudaEventRecord(stop, s));
  CUDA_OK(cudaEventSynchronize(stop));
  CUDA_OK(cudaEventElapsedTime(&ms, start, stop));
  EXPECT_GE(ms, 1.0f);
  EXPECT_LT(ms, 10000.0f);
  CUDA_OK(cudaEventQuery(stop));
  CUDA_OK(cudaStreamQuery(s));
  CUDA_OK(cudaEventRecord(untimed, s));
  EXPECT_EQ(cudaEventElapsedTime(&ms, start, untimed), cudaErrorInvalidResourceHandle);
  CUDA_OK(cudaStreamWaitEvent(s, stop, 0));
  CUDA_OK(cudaEventDestroy(start));
  CUDA_OK(cudaEventDestroy(stop));
  CUDA_OK(cudaEventDestroy(untimed));
  CUDA_OK(cudaStreamDestroy(s));
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_EQ(dout.to_host()[15], 256.0f);
  (void)cudaGetLastError();
}

TEST(Runtime, DeviceProperties) {
  int n = 0, dev = -1;
  CUDA_OK(cudaGetDeviceCount(&n));
  EXPECT_GE(n, 1);
  CUDA_OK(cudaGetDevice(&dev));
  EXPECT_EQ(dev, 0);
  CUDA_OK(cudaSetDevice(0));
  cudaDeviceProp p;
  CUDA_OK(cudaGetDeviceProperties(&p, 0));
  EXPECT_EQ(p.warpSize, 32);
  EXPECT_EQ(p.maxThreadsPerBlock, 1024);
  EXPECT_EQ(p.maxThreadsDim[2], 64);
  EXPECT_EQ(p.maxGridSize[1], 65535);
  EXPECT_GT(p.multiProcessorCount, 0);
  EXPECT_GE(p.sharedMemPerBlockOptin, p.sharedMemPerBlock);
  int v = 0;
  CUDA_OK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0));
  EXPECT_EQ(v, p.multiProcessorCount);
  CUDA_OK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
  EXPECT_EQ(static_cast<std::size_t>(v), p.sharedMemPerBlockOptin);
  std::size_t free_b = 0, total_b = 0;
  CUDA_OK(cudaMemGetInfo(&free_b, &total_b));
  EXPECT_LE(free_b, total_b);
  if (sim_build()) {
    EXPECT_EQ(n, 1);
    EXPECT_EQ(p.major, 9);
    EXPECT_EQ(p.multiProcessorCount, 132);
    EXPECT_EQ(p.sharedMemPerBlockOptin, 227u * 1024);
    EXPECT_EQ(cudaSetDevice(1), cudaErrorInvalidDevice);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
  }
}

TEST(Runtime, FunctionsAndOccupancy) {
  const void* k = launch_config_kernel();
  cudaFuncAttributes fa{};
  CUDA_OK(cudaFuncGetAttributes(&fa, k));
  EXPECT_GE(fa.maxThreadsPerBlock, 256);
  int blocks = 0;
  CUDA_OK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, k, 256, 0));
  EXPECT_GE(blocks, 1);
  if (sim_build()) {
    EXPECT_EQ(fa.maxDynamicSharedSizeBytes, 48 * 1024);
    EXPECT_EQ(blocks, 8);  // 2048 threads per SM
    CUDA_OK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, k, 32, 0));
    EXPECT_EQ(blocks, 32);  // 32 blocks per SM
    CUDA_OK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, k, 1024, 0));
    EXPECT_EQ(blocks, 2);
    CUDA_OK(allow_dynamic_smem(100 * 1024));
    CUDA_OK(cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&blocks, k, 128, 100 * 1024, 0));
    EXPECT_EQ(blocks, 2);  // 228 KiB per SM, 1 KiB reserved per block
    CUDA_OK(cudaFuncGetAttributes(&fa, k));
    EXPECT_EQ(fa.maxDynamicSharedSizeBytes, 100 * 1024);
    CUDA_OK(allow_dynamic_smem(48 * 1024));
  }
}

TEST(Runtime, ErrorStrings) {
  EXPECT_STREQ(cudaGetErrorString(cudaSuccess), "no error");
  EXPECT_STREQ(cudaGetErrorName(cudaErrorInvalidConfiguration), "cudaErrorInvalidConfiguration");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorInvalidConfiguration), "invalid configuration argument");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorInvalidValue), "invalid argument");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorMemoryAllocation), "out of memory");
}

}  // namespace
}  // namespace simtest
