#include "benchmarks/support/memory.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>
#include <stdexcept>
#include <utility>

#include "host/half.h"

#if ACTLOSS_BENCH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace actloss::bench {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

#if ACTLOSS_BENCH_CUDA
void check_cuda(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    (void)cudaGetLastError();  // a sticky-free error must not poison the next call
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(error));
  }
}
#define BENCH_CUDA(expr) check_cuda((expr), #expr)

cudaStream_t stream() { return reinterpret_cast<cudaStream_t>(bench_stream()); }
#endif

void require_cuda_built() {
#if !ACTLOSS_BENCH_CUDA
  throw std::runtime_error("this build has no CUDA backend");
#endif
}

}  // namespace

bool simulated_cuda() {
#if defined(ACTLOSS_SIM)
  return true;
#else
  return false;
#endif
}

bool cuda_device_present() {
#if ACTLOSS_BENCH_CUDA
  static const bool present = [] {
    int count = 0;
    const bool ok = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
    (void)cudaGetLastError();  // "no device" is an answer here, not an error for later calls
    return ok;
  }();
  return present;
#else
  return false;
#endif
}

Stream bench_stream() {
#if ACTLOSS_BENCH_CUDA
  // Non-blocking so that nothing else in the process (the legacy default stream) serialises
  // with the timed work. Never destroyed: it lives as long as the process.
  static const Stream created = [] {
    cudaStream_t s = nullptr;
    BENCH_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return reinterpret_cast<Stream>(s);
  }();
  return created;
#else
  return nullptr;
#endif
}

void synchronize(Device device) {
  if (device != Device::cuda) return;
  require_cuda_built();
#if ACTLOSS_BENCH_CUDA
  BENCH_CUDA(cudaStreamSynchronize(stream()));
  BENCH_CUDA(cudaGetLastError());
#endif
}

// ---- Buffer ---------------------------------------------------------------------------------

Buffer::Buffer(Device device, std::size_t bytes) : device_(device) {
  if (bytes == 0) return;
  if (device == Device::cuda) {
    require_cuda_built();
#if ACTLOSS_BENCH_CUDA
    void* p = nullptr;
    BENCH_CUDA(cudaMalloc(&p, bytes));
    data_ = p;
#endif
  } else {
    const std::size_t rounded = (bytes + 255) / 256 * 256;
    data_ = std::aligned_alloc(256, rounded);
    if (data_ == nullptr) throw std::bad_alloc();
  }
  bytes_ = bytes;
}

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      device_(other.device_) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = other.device_;
  }
  return *this;
}

Buffer::~Buffer() { release(); }

void Buffer::release() noexcept {
  if (data_ == nullptr) return;
  if (device_ == Device::cuda) {
#if ACTLOSS_BENCH_CUDA
    // Work queued on the buffer must finish before the memory can be reused.
    (void)cudaStreamSynchronize(stream());
    (void)cudaFree(data_);
#endif
  } else {
    std::free(data_);
  }
  data_ = nullptr;
  bytes_ = 0;
}

void Buffer::upload(const void* source, std::size_t bytes, std::size_t offset) {
  if (bytes == 0) return;
  if (offset + bytes > bytes_) throw std::out_of_range("Buffer::upload past the end");
  char* destination = static_cast<char*>(data_) + offset;
  if (device_ == Device::cpu) {
    std::memcpy(destination, source, bytes);
    return;
  }
#if ACTLOSS_BENCH_CUDA
  BENCH_CUDA(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyHostToDevice, stream()));
  BENCH_CUDA(cudaStreamSynchronize(stream()));
#endif
}

void Buffer::download(void* destination, std::size_t bytes, std::size_t offset) const {
  if (bytes == 0) return;
  if (offset + bytes > bytes_) throw std::out_of_range("Buffer::download past the end");
  const char* source = static_cast<const char*>(data_) + offset;
  if (device_ == Device::cpu) {
    std::memcpy(destination, source, bytes);
    return;
  }
#if ACTLOSS_BENCH_CUDA
  BENCH_CUDA(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDeviceToHost, stream()));
  BENCH_CUDA(cudaStreamSynchronize(stream()));
#endif
}

void Buffer::fill_bytes(std::uint8_t value) {
  if (bytes_ == 0) return;
  if (device_ == Device::cpu) {
    std::memset(data_, value, bytes_);
    return;
  }
#if ACTLOSS_BENCH_CUDA
  BENCH_CUDA(cudaMemsetAsync(data_, value, bytes_, stream()));
  BENCH_CUDA(cudaStreamSynchronize(stream()));
#endif
}

void fill_tiled(Buffer& buffer, const std::vector<std::uint8_t>& pattern) {
  const std::size_t total = buffer.bytes();
  if (total == 0 || pattern.empty()) return;
  std::size_t filled = std::min(total, pattern.size());
  buffer.upload(pattern.data(), filled);
  char* base = buffer.as<char>();
  // Doubling keeps every copy's source and destination disjoint, as memcpy and cudaMemcpy need.
  while (filled < total) {
    const std::size_t chunk = std::min(filled, total - filled);
    if (buffer.device() == Device::cpu) {
      std::memcpy(base + filled, base, chunk);
    } else {
#if ACTLOSS_BENCH_CUDA
      BENCH_CUDA(cudaMemcpyAsync(base + filled, base, chunk, cudaMemcpyDeviceToDevice, stream()));
#endif
    }
    filled += chunk;
  }
  synchronize(buffer.device());
}

// ---- patterns -------------------------------------------------------------------------------

std::uint64_t Random::next() {
  // splitmix64: tiny, fast, and every seed gives a good stream.
  std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double Random::uniform(double low, double high) {
  const double unit = static_cast<double>(next() >> 11) * 0x1p-53;
  return low + (high - low) * unit;
}

std::int64_t Random::below(std::int64_t bound) {
  return bound <= 0 ? 0 : static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(bound));
}

std::vector<std::uint8_t> uniform_pattern(std::size_t count, DType dtype, double low, double high,
                                          std::uint64_t seed) {
  std::vector<std::uint8_t> bytes(count * static_cast<std::size_t>(dtype_size(dtype)));
  Random random(seed);
  for (std::size_t i = 0; i < count; ++i) {
    host::store_from_double(bytes.data(), dtype, static_cast<std::int64_t>(i),
                            random.uniform(low, high));
  }
  return bytes;
}

std::vector<std::uint8_t> class_pattern(std::size_t count, std::int64_t classes,
                                        std::uint64_t seed) {
  std::vector<std::uint8_t> bytes(count * sizeof(std::int64_t));
  Random random(seed);
  for (std::size_t i = 0; i < count; ++i) {
    const std::int64_t value = random.below(classes);
    std::memcpy(bytes.data() + i * sizeof value, &value, sizeof value);
  }
  return bytes;
}

// ---- caches and timers ----------------------------------------------------------------------

std::size_t last_level_cache_bytes(Device device) {
  if (device == Device::cuda) {
    require_cuda_built();
#if ACTLOSS_BENCH_CUDA
    int device_index = 0;
    int l2 = 0;
    BENCH_CUDA(cudaGetDevice(&device_index));
    BENCH_CUDA(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device_index));
    return static_cast<std::size_t>(std::max(l2, 1 << 20));
#endif
  }
  // sysfs describes the caches this CPU actually sees; glibc's sysconf reads CPUID, which under
  // a hypervisor can report the host's whole L3 (320 MiB on a VM that has 32 MiB).
  std::size_t largest = 0;
  for (int index = 0; index < 8; ++index) {
    std::ifstream file("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) +
                       "/size");
    std::string text;
    if (!(file >> text) || text.empty()) continue;
    std::size_t scale = 1;
    if (text.back() == 'K') scale = std::size_t{1} << 10;
    if (text.back() == 'M') scale = std::size_t{1} << 20;
    if (scale != 1) text.pop_back();
    try {
      largest = std::max(largest, static_cast<std::size_t>(std::stoull(text)) * scale);
    } catch (const std::exception&) {
    }
  }
  if (largest > 0) return largest;
  long reported = 0;
  for (int name : {_SC_LEVEL1_DCACHE_SIZE, _SC_LEVEL2_CACHE_SIZE, _SC_LEVEL3_CACHE_SIZE,
                   _SC_LEVEL4_CACHE_SIZE}) {
    reported = std::max(reported, sysconf(name));
  }
  return reported > 0 ? static_cast<std::size_t>(reported) : std::size_t{32} << 20;
}

CacheFlusher::CacheFlusher(Device device) {
  // One scratch buffer per device for the whole process: benchmarks construct flushers over and
  // over, and paging in a fresh quarter-gigabyte each time cost more than the runs it separated.
  // Never freed, so that no cudaFree runs after the CUDA runtime's own teardown at exit.
  static Buffer* per_device[2] = {nullptr, nullptr};
  Buffer*& slot = per_device[device == Device::cuda ? 1 : 0];
  if (slot == nullptr) {
    std::size_t bytes = 2 * last_level_cache_bytes(device);
    // A virtual machine can report its host's whole cache (hundreds of MiB): capped, since one
    // core's data rarely occupies more than its own slice and the flush runs every iteration.
    if (device == Device::cpu) bytes = std::clamp<std::size_t>(bytes, 16u << 20, 256u << 20);
    if (device == Device::cuda && simulated_cuda()) bytes = 1u << 20;
    slot = new Buffer(device, bytes);
  }
  scratch_ = slot;
}

void CacheFlusher::flush() {
  ++next_value_;
  if (scratch_->device() == Device::cpu) {
    std::memset(scratch_->data(), next_value_, scratch_->bytes());
    // Keeps the compiler from dropping the stores as dead.
    asm volatile("" : : "r"(scratch_->data()) : "memory");
    return;
  }
#if ACTLOSS_BENCH_CUDA
  BENCH_CUDA(cudaMemsetAsync(scratch_->data(), next_value_, scratch_->bytes(), stream()));
#endif
}

Timer::Timer(Device device) : device_(device) {
  if (device != Device::cuda) return;
  require_cuda_built();
#if ACTLOSS_BENCH_CUDA
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  BENCH_CUDA(cudaEventCreate(&start));
  BENCH_CUDA(cudaEventCreate(&stop));
  start_event_ = start;
  stop_event_ = stop;
#endif
}

Timer::~Timer() {
#if ACTLOSS_BENCH_CUDA
  if (start_event_ != nullptr) (void)cudaEventDestroy(static_cast<cudaEvent_t>(start_event_));
  if (stop_event_ != nullptr) (void)cudaEventDestroy(static_cast<cudaEvent_t>(stop_event_));
#endif
}

void Timer::start() {
  if (device_ == Device::cpu) {
    start_host_ = now_seconds();
    return;
  }
#if ACTLOSS_BENCH_CUDA
  BENCH_CUDA(cudaEventRecord(static_cast<cudaEvent_t>(start_event_), stream()));
#endif
}

double Timer::stop_seconds() {
  if (device_ == Device::cpu) return now_seconds() - start_host_;
#if ACTLOSS_BENCH_CUDA
  const auto stop = static_cast<cudaEvent_t>(stop_event_);
  BENCH_CUDA(cudaEventRecord(stop, stream()));
  BENCH_CUDA(cudaEventSynchronize(stop));
  float ms = 0;
  BENCH_CUDA(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_event_), stop));
  return static_cast<double>(ms) * 1e-3;
#else
  return 0;
#endif
}

// ---- ceilings and descriptions --------------------------------------------------------------

std::size_t default_copy_bytes(Device device) {
  if (device == Device::cpu) return std::size_t{128} << 20;
  return simulated_cuda() ? std::size_t{8} << 20 : std::size_t{1} << 30;
}

CopyCeiling measure_copy_ceiling(Device device, std::size_t bytes, int repeats) {
  Buffer source(device, bytes);
  Buffer destination(device, bytes);
  // Touch both first: the first write to fresh pages (CPU) or a fresh allocation is not what a
  // steady-state copy costs.
  source.fill_bytes(1);
  destination.fill_bytes(2);
  Timer timer(device);
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < std::max(repeats, 1); ++i) {
    timer.start();
    if (device == Device::cpu) {
      std::memcpy(destination.data(), source.data(), bytes);
      asm volatile("" : : "r"(destination.data()) : "memory");
    } else {
#if ACTLOSS_BENCH_CUDA
      BENCH_CUDA(cudaMemcpyAsync(destination.data(), source.data(), bytes, cudaMemcpyDeviceToDevice,
                                 stream()));
#endif
    }
    best = std::min(best, timer.stop_seconds());
  }
  CopyCeiling ceiling;
  ceiling.device = device;
  ceiling.buffer_bytes = bytes;
  ceiling.bytes_per_second = best > 0 ? 2.0 * static_cast<double>(bytes) / best : 0.0;
  return ceiling;
}

DeviceDescription describe_device(Device device) {
  DeviceDescription d;
  if (device == Device::cpu) {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line)) {
      if (line.rfind("model name", 0) == 0) {
        const auto colon = line.find(':');
        if (colon != std::string::npos)
          d.name = line.substr(line.find_first_not_of(' ', colon + 1));
        break;
      }
    }
    if (d.name.empty()) d.name = "CPU";
    d.detail = std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " cores online, " +
               std::to_string(last_level_cache_bytes(Device::cpu) >> 20) +
               " MiB largest cache reported";
    return d;
  }
  require_cuda_built();
#if ACTLOSS_BENCH_CUDA
  int index = 0;
  BENCH_CUDA(cudaGetDevice(&index));
  cudaDeviceProp prop{};
  BENCH_CUDA(cudaGetDeviceProperties(&prop, index));
  d.name = prop.name;
  d.detail = "compute capability " + std::to_string(prop.major) + "." + std::to_string(prop.minor) +
             ", " + std::to_string(prop.multiProcessorCount) + " SMs, " +
             std::to_string(prop.totalGlobalMem >> 20) + " MiB, L2 " +
             std::to_string(prop.l2CacheSize >> 20) + " MiB";
  if (simulated_cuda()) d.detail += " (simulated on the CPU: timings mean nothing)";
  int memory_khz = 0;
  int bus_bits = 0;
  if (cudaDeviceGetAttribute(&memory_khz, cudaDevAttrMemoryClockRate, index) == cudaSuccess &&
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, index) == cudaSuccess) {
    d.peak_bytes_per_second = 2.0 * memory_khz * 1e3 * bus_bits / 8.0;
  }
  (void)cudaGetLastError();
#endif
  return d;
}

}  // namespace actloss::bench
