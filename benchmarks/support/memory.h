// Memory, timing and ceilings shared by actloss_bench and the actloss tool: buffers on either
// device, fills, cache flushing, one-shot timers, and the copy bandwidth that every GB/s figure
// is compared with. Errors throw std::runtime_error: a benchmark turns them into SkipWithError,
// the tool into a table entry; neither can do anything better with a failed cudaMalloc.
//
// ACTLOSS_BENCH_CUDA is 1 when the CUDA backend is built (nvcc or simulator); without it nothing
// here touches a CUDA header, so the CPU-only build needs no toolkit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <actloss/types.h>

#ifndef ACTLOSS_BENCH_CUDA
#define ACTLOSS_BENCH_CUDA 0
#endif

namespace actloss::bench {

// True in a build whose CUDA backend is the CPU simulator.
bool simulated_cuda();

// A CUDA device can run the backend now: a GPU in an nvcc build, always in a simulator build.
bool cuda_device_present();

// The stream every CUDA workload, timer and copy of the process uses.
Stream bench_stream();

// Waits for everything queued on bench_stream(); a no-op on CPU. Throws on a pending CUDA error.
void synchronize(Device device);

// Contiguous bytes on `device`, 256-byte aligned, never initialised here. Move-only.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Device device, std::size_t bytes);
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  void* data() const { return data_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

  // Synchronous copies from and to host memory.
  void upload(const void* source, std::size_t bytes, std::size_t offset = 0);
  void download(void* destination, std::size_t bytes, std::size_t offset = 0) const;
  void fill_bytes(std::uint8_t value);

 private:
  void release() noexcept;

  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  Device device_ = Device::cpu;
};

// Copies `pattern` into the start of `buffer`, then doubles the filled prefix with same-device
// copies until the buffer is full: gigabyte tensors fill at copy speed from a small host pattern.
// A trailing partial pattern is allowed; pattern.size() must be a multiple of the element size.
void fill_tiled(Buffer& buffer, const std::vector<std::uint8_t>& pattern);

// Deterministic pseudo-random values, for patterns and validation inputs alike.
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next();
  double uniform(double low, double high);  // [low, high)
  std::int64_t below(std::int64_t bound);   // [0, bound)

 private:
  std::uint64_t state_;
};

// `count` values uniform in [low, high), stored as `dtype` bytes.
std::vector<std::uint8_t> uniform_pattern(std::size_t count, DType dtype, double low, double high,
                                          std::uint64_t seed);
// `count` int64 class indices in [0, classes).
std::vector<std::uint8_t> class_pattern(std::size_t count, std::int64_t classes,
                                        std::uint64_t seed);

// Bytes of the last-level cache that a measurement must not find warm: the GPU's L2 (device
// attribute) or the CPU's largest cache (sysconf; 32 MiB when unknown).
std::size_t last_level_cache_bytes(Device device);

// Evicts the last-level cache by touching a buffer of twice its size: reading it on the CPU,
// writing it on the GPU (on bench_stream(), so it is ordered before whatever is timed next). Not
// thread-safe: one benchmark at a time.
class CacheFlusher {
 public:
  explicit CacheFlusher(Device device);
  void flush();

 private:
  Buffer* scratch_;  // shared by every flusher of the device
  std::uint8_t next_value_ = 0;
};

// Times one piece of work: wall clock on CPU; CUDA events on bench_stream() around what the
// caller enqueues between start() and stop(), so only device time counts.
class Timer {
 public:
  explicit Timer(Device device);
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer();
  void start();
  double stop_seconds();  // waits for the work on CUDA

 private:
  Device device_;
  double start_host_ = 0;
  void* start_event_ = nullptr;
  void* stop_event_ = nullptr;
};

// How a copy ceiling moves its bytes.
enum class CopyKind : std::uint8_t {
  // memcpy on one thread (CPU); cudaMemcpyAsync device-to-device (CUDA).
  plain,
  // CPU only: non-temporal stores (streaming_store_text()) on cpu_threads() threads, each
  // copying one contiguous slice. memcpy runs on one core, and whether it skips the read of each
  // destination line depends on the C library's size thresholds; the threaded CPU backend can
  // outrun it, which would make a copy_frac above 1 and memcpy no ceiling at all. This copy is
  // what the backend's threads can reach.
  streaming,
};

// Bandwidth of a same-device copy of `bytes` bytes, best of `repeats`, counting read plus write.
struct CopyCeiling {
  Device device = Device::cpu;
  CopyKind kind = CopyKind::plain;
  std::size_t buffer_bytes = 0;
  int threads = 1;
  double bytes_per_second = 0;
};
CopyCeiling measure_copy_ceiling(Device device, std::size_t bytes, int repeats,
                                 CopyKind kind = CopyKind::plain);

// Both CPU ceilings of one measurement. Every CPU GB/s is compared with the higher of the two:
// whichever copy the machine runs faster is the bound a kernel can be held to.
struct CpuCopyCeilings {
  CopyCeiling plain;  // memcpy, one thread
  CopyCeiling streaming;
  double best_bytes_per_second() const;
};
CpuCopyCeilings measure_cpu_copy_ceilings(std::size_t bytes, int repeats);

// The threads the CPU backend runs on, by its rule (ACTLOSS_CPU_THREADS when set to a positive
// integer, else std::thread::hardware_concurrency()), so that the streaming copy uses as many
// cores as the kernels it bounds. Restated here, not asked of the backend: its pool is internal.
int cpu_threads();

// The store the streaming copy uses in this build, e.g. "16-byte _mm_stream_si128".
const char* streaming_store_text();

// The default sizes: 1 GiB on a GPU, as the benchmarks use; 128 MiB on CPU (beyond any
// cache); 8 MiB in the simulator, whose figure only shows that the path works.
std::size_t default_copy_bytes(Device device);

// One line describing the device: CPU model, or GPU name, compute capability and memory.
struct DeviceDescription {
  std::string name;
  std::string detail;  // compute capability, SMs, memory, or the simulator's note
  // GPU only: memory clock x bus width x 2 (double data rate); 0 when the device does not say.
  double peak_bytes_per_second = 0;
};
DeviceDescription describe_device(Device device);

}  // namespace actloss::bench
