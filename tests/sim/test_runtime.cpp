// The CUDA runtime stand-in: the same calls and results as on a GPU for the
// subset the library uses (device numbers are those of an H100-class part).
#include <chrono>
#include <cstring>
#include <thread>

#if defined(ACTLOSS_SIM)
#include <simcuda/sim_control.h>
#endif

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

TEST(Runtime, LastBlockAddsEveryPartial) {
  constexpr int kBlocks = 300;
  DeviceBuffer<double> partials(kBlocks), out(1);
  DeviceBuffer<unsigned> ticket(1);
  for (int run = 0; run < 3; ++run) {
    CUDA_OK(cudaMemsetAsync(ticket.get(), 0, sizeof(unsigned), nullptr));
    CUDA_OK(last_block_sum(kBlocks, partials.get(), ticket.get(), out.get(), nullptr));
    EXPECT_EQ(out.to_host()[0], kBlocks * (kBlocks + 1) / 2.0);
    EXPECT_EQ(ticket.to_host()[0], unsigned{kBlocks});
  }
}

// A capture records launches, memsets and copies in order and runs none of
// them; every replay runs them all, on the replay's stream.
TEST(Runtime, GraphCaptureRecordsAndReplays) {
  constexpr int kBlocks = 40;
  DeviceBuffer<double> partials(kBlocks), out(1), copy(1);
  DeviceBuffer<unsigned> ticket(1);
  cudaStream_t s;
  CUDA_OK(cudaStreamCreate(&s));
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusActive;
  CUDA_OK(cudaStreamIsCapturing(s, &status));
  EXPECT_EQ(status, cudaStreamCaptureStatusNone);
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  CUDA_OK(cudaStreamIsCapturing(s, &status));
  EXPECT_EQ(status, cudaStreamCaptureStatusActive);
  CUDA_OK(cudaMemsetAsync(ticket.get(), 0, sizeof(unsigned), s));
  CUDA_OK(last_block_sum(kBlocks, partials.get(), ticket.get(), out.get(), s));
  CUDA_OK(cudaMemcpyAsync(copy.get(), out.get(), sizeof(double), cudaMemcpyDeviceToDevice, s));
  void* scratch = nullptr;  // graph-owned: freed with the graph
  CUDA_OK(cudaMallocAsync(&scratch, 64, s));
  CUDA_OK(cudaMemsetAsync(scratch, 0, 64, s));
  CUDA_OK(cudaFreeAsync(scratch, s));
  cudaGraph_t graph = nullptr;
  CUDA_OK(cudaStreamEndCapture(s, &graph));
  ASSERT_NE(graph, nullptr);
  EXPECT_EQ(copy.to_host()[0], 0.0) << "captured work ran at capture";
  EXPECT_EQ(ticket.to_host()[0], 0u);
  cudaGraphExec_t exec = nullptr;
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_OK(cudaGraphDestroy(graph));
  for (int replay = 0; replay < 2; ++replay) {
    CUDA_OK(cudaMemset(copy.get(), 0, sizeof(double)));
    CUDA_OK(cudaGraphLaunch(exec, s));
    CUDA_OK(cudaStreamSynchronize(s));
    EXPECT_EQ(copy.to_host()[0], kBlocks * (kBlocks + 1) / 2.0) << "replay " << replay;
    EXPECT_EQ(ticket.to_host()[0], unsigned{kBlocks}) << "the memset ran before the kernel";
  }
  CUDA_OK(cudaGraphExecDestroy(exec));
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaErrorInvalidValue);
  (void)cudaGetLastError();
  CUDA_OK(cudaStreamDestroy(s));
}

// What CUDA forbids during a capture fails, and the capture then ends in
// cudaErrorStreamCaptureInvalidated with no graph. The simulator's error
// codes are checked in its build; a GPU only has to refuse.
TEST(Runtime, UnsafeCallsInvalidateTheCapture) {
  DeviceBuffer<double> partials(4), out(1);
  DeviceBuffer<unsigned> ticket(1);
  cudaStream_t s;
  CUDA_OK(cudaStreamCreate(&s));
  const auto expect_invalidated = [&](const char* what, cudaError_t expected, auto&& call) {
    SCOPED_TRACE(what);
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
    const cudaError_t error = call();
    if (sim_build())
      EXPECT_EQ(error, expected);
    else
      EXPECT_NE(error, cudaSuccess);
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    EXPECT_EQ(cudaStreamIsCapturing(s, &status), cudaSuccess);
    EXPECT_EQ(status, cudaStreamCaptureStatusInvalidated);
    cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(&status);
    EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
    EXPECT_EQ(graph, nullptr);
    (void)cudaGetLastError();
  };
  void* p = nullptr;
  expect_invalidated("cudaMalloc", cudaErrorStreamCaptureUnsupported,
                     [&] { return cudaMalloc(&p, 16); });
  expect_invalidated("cudaMemset", cudaErrorStreamCaptureUnsupported,
                     [&] { return cudaMemset(out.get(), 0, 8); });
  double host = 0;
  expect_invalidated("cudaMemcpy", cudaErrorStreamCaptureUnsupported, [&] {
    return cudaMemcpy(&host, out.get(), 8, cudaMemcpyDeviceToHost);
  });
  expect_invalidated("cudaStreamSynchronize", cudaErrorStreamCaptureUnsupported,
                     [&] { return cudaStreamSynchronize(s); });
  expect_invalidated("cudaDeviceSynchronize", cudaErrorStreamCaptureUnsupported,
                     [&] { return cudaDeviceSynchronize(); });
  expect_invalidated("a launch on the legacy stream", cudaErrorStreamCaptureImplicit, [&] {
    return last_block_sum(4, partials.get(), ticket.get(), out.get(), nullptr);
  });
  EXPECT_EQ(p, nullptr);
  // Queries are allowed.
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  cudaPointerAttributes attributes{};
  CUDA_OK(cudaPointerGetAttributes(&attributes, out.get()));
  int device = -1;
  CUDA_OK(cudaGetDevice(&device));
  cudaGraph_t graph = nullptr;
  CUDA_OK(cudaStreamEndCapture(s, &graph));
  CUDA_OK(cudaGraphDestroy(graph));
  CUDA_OK(cudaStreamDestroy(s));
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
    EXPECT_EQ(n, 8) << "the default number of virtual devices (SIMCUDA_DEVICES)";
    EXPECT_EQ(p.major, 9);
    EXPECT_EQ(p.multiProcessorCount, 132);
    EXPECT_EQ(p.sharedMemPerBlockOptin, 227u * 1024);
    CUDA_OK(cudaGetDeviceProperties(&p, n - 1));
    EXPECT_EQ(p.multiProcessorCount, 132) << "every virtual device is the same part";
    EXPECT_EQ(cudaSetDevice(n), cudaErrorInvalidDevice);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
    EXPECT_EQ(cudaGetDeviceProperties(&p, n), cudaErrorInvalidDevice);
    EXPECT_EQ(cudaSetDevice(-1), cudaErrorInvalidDevice);
    (void)cudaGetLastError();
  }
}

// The current device is per host thread, as in CUDA; memory and streams belong to the device
// current when they were made, and a kernel goes only into a stream of the current device.
TEST(Runtime, VirtualDevicesPerThread) {
  int n = 0;
  CUDA_OK(cudaGetDeviceCount(&n));
  if (n < 2) GTEST_SKIP() << "one device";
  const int other = n - 1;
  int seen_here = -1, seen_there = -1;
  void* there = nullptr;
  std::thread t([&] {
    EXPECT_EQ(cudaSetDevice(other), cudaSuccess);
    EXPECT_EQ(cudaGetDevice(&seen_there), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&there, 64), cudaSuccess);
  });
  t.join();
  CUDA_OK(cudaGetDevice(&seen_here));
  EXPECT_EQ(seen_there, other);
  EXPECT_EQ(seen_here, 0) << "another thread's cudaSetDevice changed this thread's device";
  cudaPointerAttributes a{};
  CUDA_OK(cudaPointerGetAttributes(&a, there));
  EXPECT_EQ(a.type, cudaMemoryTypeDevice);
  EXPECT_EQ(a.device, other);

  CUDA_OK(cudaSetDevice(other));
  cudaStream_t stream = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  void* pooled = nullptr;
  CUDA_OK(cudaSetDevice(0));
  CUDA_OK(cudaMallocAsync(&pooled, 64, stream));
  CUDA_OK(cudaPointerGetAttributes(&a, pooled));
  EXPECT_EQ(a.device, other) << "cudaMallocAsync allocates on the stream's device";
  float* in = nullptr;
  float* out = nullptr;
  CUDA_OK(cudaMalloc(&in, 256 * sizeof(float)));
  CUDA_OK(cudaMalloc(&out, sizeof(float)));
  if (sim_build()) {
    EXPECT_EQ(tree_reduce(in, out, 256, false, stream), cudaErrorInvalidResourceHandle)
        << "a kernel into a stream of another device";
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidResourceHandle);
  }
  CUDA_OK(cudaSetDevice(other));
  CUDA_OK(cudaMemset(in, 0, 256 * sizeof(float)));
  CUDA_OK(tree_reduce(in, out, 256, false, stream));
  CUDA_OK(cudaFreeAsync(pooled, stream));
  CUDA_OK(cudaStreamDestroy(stream));
  CUDA_OK(cudaSetDevice(0));
  CUDA_OK(cudaFree(in));
  CUDA_OK(cudaFree(out));
  CUDA_OK(cudaFree(there));
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

#if defined(ACTLOSS_SIM)
// A test's register count joins the occupancy model (each warp's registers in units of 256, 65536
// an SM) and cudaFuncGetAttributes; the counters see each query and each launch's grid.
TEST(Runtime, RegisterModelAndCounters) {
  const void* k = launch_config_kernel();
  struct Case {
    int registers, block, blocks;
  };
  // 128 x 256 threads = 32768 registers: two blocks; 80 registers make 2560 a warp: three; 100
  // round up to 3328 a warp: two; 32 leave threads (8 blocks of 256) as the limit.
  for (const Case c : {Case{128, 256, 2}, Case{80, 256, 3}, Case{100, 256, 2}, Case{32, 256, 8},
                       Case{128, 512, 1}, Case{255, 128, 2}}) {
    simcuda::sim::set_registers_per_thread(c.registers);
    const std::uint64_t queries = simcuda::sim::occupancy_queries();
    int blocks = 0;
    CUDA_OK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, k, c.block, 0));
    EXPECT_EQ(blocks, c.blocks) << c.registers << " registers, " << c.block << " threads";
    EXPECT_EQ(simcuda::sim::occupancy_queries() - queries, 1u);
    cudaFuncAttributes fa{};
    CUDA_OK(cudaFuncGetAttributes(&fa, k));
    EXPECT_EQ(fa.numRegs, c.registers);
  }
  simcuda::sim::set_registers_per_thread(0);
  int blocks = 0;
  CUDA_OK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, k, 512, 0));
  EXPECT_EQ(blocks, 4) << "no register limit again";

  const std::uint64_t launched = simcuda::sim::launched_blocks();
  CUDA_OK(launch_config(dim3(3, 2, 1), dim3(32), 0));
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_EQ(simcuda::sim::launched_blocks() - launched, 6u);
}
#endif

TEST(Runtime, ErrorStrings) {
  EXPECT_STREQ(cudaGetErrorString(cudaSuccess), "no error");
  EXPECT_STREQ(cudaGetErrorName(cudaErrorInvalidConfiguration), "cudaErrorInvalidConfiguration");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorInvalidConfiguration), "invalid configuration argument");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorInvalidValue), "invalid argument");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorMemoryAllocation), "out of memory");
}

}  // namespace
}  // namespace simtest
