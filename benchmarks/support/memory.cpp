#include "benchmarks/support/memory.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <latch>
#include <limits>
#include <new>
#include <stdexcept>
#include <thread>
#include <utility>

#include "host/half.h"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

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
    // Written once, so that its pages are its own: a page never written reads as the kernel's
    // one shared zero page, which would stay in cache and evict nothing.
    if (device == Device::cpu) std::memset(slot->data(), 1, slot->bytes());
  }
  scratch_ = slot;
}

void CacheFlusher::flush() {
  ++next_value_;
  if (scratch_->device() == Device::cpu) {
    // Read, one word per cache line, not written: glibc's memset of a buffer this large stores
    // non-temporally, which passes the caches by and so evicted nothing (on a 2-core EPYC VM
    // with 32 MiB of L3, 1M-element activations then ran from L3, oneDNN's relu at 118 GB/s
    // against a 49 GB/s copy). Lines read come in through every level and push out the rest.
    const auto* words = static_cast<const std::uint64_t*>(scratch_->data());
    const std::size_t count = scratch_->bytes() / sizeof(std::uint64_t);
    std::uint64_t sum = next_value_;
    for (std::size_t i = 0; i < count; i += 64 / sizeof(std::uint64_t)) sum += words[i];
    // Keeps the compiler from dropping the loads as dead.
    asm volatile("" : : "r"(sum) : "memory");
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

int cpu_threads() {
  static const int threads = [] {
    if (const char* text = std::getenv("ACTLOSS_CPU_THREADS")) {
      char* end = nullptr;
      const long value = std::strtol(text, &end, 10);
      if (end != text && *end == '\0' && value > 0)
        return static_cast<int>(std::min(value, 1024L));
    }
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }();
  return threads;
}

namespace {

// The widest streaming store the compiler may emit here. Chosen at compile time: the support
// library is built without -march, so this is SSE2's 16 bytes unless the flags say more. The
// width matters little: the stores of a line combine in the core's write-combining buffer
// before they go to memory, whatever their size.
#if defined(__AVX512F__)
using StreamVector = __m512i;
StreamVector stream_load(const char* p) { return _mm512_loadu_si512(p); }
void stream_store(char* p, StreamVector v) {
  _mm512_stream_si512(reinterpret_cast<StreamVector*>(p), v);
}
constexpr const char* kStreamStore = "64-byte _mm512_stream_si512";
#elif defined(__AVX__)
using StreamVector = __m256i;
StreamVector stream_load(const char* p) {
  return _mm256_loadu_si256(reinterpret_cast<const StreamVector*>(p));
}
void stream_store(char* p, StreamVector v) {
  _mm256_stream_si256(reinterpret_cast<StreamVector*>(p), v);
}
constexpr const char* kStreamStore = "32-byte _mm256_stream_si256";
#elif defined(__SSE2__)
using StreamVector = __m128i;
StreamVector stream_load(const char* p) {
  return _mm_loadu_si128(reinterpret_cast<const StreamVector*>(p));
}
void stream_store(char* p, StreamVector v) {
  _mm_stream_si128(reinterpret_cast<StreamVector*>(p), v);
}
constexpr const char* kStreamStore = "16-byte _mm_stream_si128";
#else
constexpr const char* kStreamStore = "memcpy (no x86 streaming stores in this build)";
#endif

// One thread's share of the streaming copy.
void stream_copy(char* destination, const char* source, std::size_t bytes) {
#if defined(__SSE2__)
  constexpr std::size_t kWidth = sizeof(StreamVector);
  // A streaming store faults on an unaligned address: the bytes before the first aligned one
  // and those after the last whole vector go through memcpy.
  const std::size_t misalignment = reinterpret_cast<std::uintptr_t>(destination) % kWidth;
  const std::size_t head = std::min(bytes, misalignment == 0 ? 0 : kWidth - misalignment);
  std::memcpy(destination, source, head);
  destination += head;
  source += head;
  bytes -= head;
  // Four loads before four stores: the loads of a group are in flight together rather than each
  // waiting behind the store before it.
  constexpr std::size_t kGroup = 4 * kWidth;
  std::size_t done = 0;
  for (; done + kGroup <= bytes; done += kGroup) {
    const StreamVector a = stream_load(source + done);
    const StreamVector b = stream_load(source + done + kWidth);
    const StreamVector c = stream_load(source + done + 2 * kWidth);
    const StreamVector d = stream_load(source + done + 3 * kWidth);
    stream_store(destination + done, a);
    stream_store(destination + done + kWidth, b);
    stream_store(destination + done + 2 * kWidth, c);
    stream_store(destination + done + 3 * kWidth, d);
  }
  for (; done + kWidth <= bytes; done += kWidth)
    stream_store(destination + done, stream_load(source + done));
  std::memcpy(destination + done, source + done, bytes - done);
  // Streaming stores are weakly ordered and may still sit in write-combining buffers: the fence
  // makes them visible before the thread reports done, so the clock stops after the last byte.
  _mm_sfence();
#else
  std::memcpy(destination, source, bytes);
#endif
}

// One timed streaming copy over `threads` threads, the caller's included. Each thread takes one
// contiguous slice, cut at cache-line multiples so that no two threads write the same line.
// The threads are started before the clock and joined after it.
double timed_streaming_copy(char* destination, const char* source, std::size_t bytes,
                            int threads) {
  constexpr std::size_t kLine = 64;
  const auto count = static_cast<std::size_t>(std::max(threads, 1));
  const std::size_t share = bytes / count / kLine * kLine;
  auto slice_start = [&](std::size_t i) { return i >= count ? bytes : share * i; };
  std::latch go(1);
  std::latch done(static_cast<std::ptrdiff_t>(count));
  auto work = [&](std::size_t i) {
    go.wait();
    const std::size_t begin = slice_start(i);
    stream_copy(destination + begin, source + begin, slice_start(i + 1) - begin);
    done.count_down();
  };
  std::vector<std::thread> workers;
  workers.reserve(count - 1);
  try {
    for (std::size_t i = 1; i < count; ++i) workers.emplace_back(work, i);
  } catch (...) {
    // The threads already started are waiting for `go`: let them finish before rethrowing.
    go.count_down();
    for (std::thread& worker : workers) worker.join();
    throw;
  }
  const double start = now_seconds();
  go.count_down();
  work(0);
  done.wait();
  const double seconds = now_seconds() - start;
  for (std::thread& worker : workers) worker.join();
  return seconds;
}

struct CopyBuffers {
  Buffer source;
  Buffer destination;
};

CopyBuffers touched_buffers(Device device, std::size_t bytes) {
  CopyBuffers b{Buffer(device, bytes), Buffer(device, bytes)};
  // Touch both first: the first write to fresh pages (CPU) or a fresh allocation is not what a
  // steady-state copy costs.
  if (device == Device::cpu) {
    // Bytes that differ from place to place, repeating at a prime period, so that a slice copied
    // to the wrong offset shows in check_streaming_copy().
    std::vector<std::uint8_t> pattern(4099);
    Random random(7);
    for (std::uint8_t& byte : pattern) byte = static_cast<std::uint8_t>(random.next());
    fill_tiled(b.source, pattern);
  } else {
    b.source.fill_bytes(1);
  }
  b.destination.fill_bytes(2);
  return b;
}

// The streaming copy is this file's own code: a slip in its slicing or its head and tail would
// go unseen and make the ceiling too high, so its last result is compared with the source.
void check_streaming_copy(const CopyBuffers& b) {
  if (std::memcmp(b.destination.data(), b.source.data(), b.source.bytes()) != 0)
    throw std::runtime_error("the streaming copy ceiling's copy does not match its source");
}

double timed_copy(Device device, CopyKind kind, CopyBuffers& b, Timer& timer) {
  const std::size_t bytes = b.source.bytes();
  if (kind == CopyKind::streaming)
    return timed_streaming_copy(b.destination.as<char>(), b.source.as<char>(), bytes,
                                cpu_threads());
  timer.start();
  if (device == Device::cpu) {
    std::memcpy(b.destination.data(), b.source.data(), bytes);
    asm volatile("" : : "r"(b.destination.data()) : "memory");
  } else {
#if ACTLOSS_BENCH_CUDA
    BENCH_CUDA(cudaMemcpyAsync(b.destination.data(), b.source.data(), bytes,
                               cudaMemcpyDeviceToDevice, stream()));
#endif
  }
  return timer.stop_seconds();
}

CopyCeiling make_ceiling(Device device, CopyKind kind, std::size_t bytes, double best) {
  CopyCeiling ceiling;
  ceiling.device = device;
  ceiling.kind = kind;
  ceiling.buffer_bytes = bytes;
  ceiling.threads = kind == CopyKind::streaming ? cpu_threads() : 1;
  ceiling.bytes_per_second = best > 0 && best < std::numeric_limits<double>::infinity()
                                 ? 2.0 * static_cast<double>(bytes) / best
                                 : 0.0;
  return ceiling;
}

}  // namespace

const char* streaming_store_text() { return kStreamStore; }

CopyCeiling measure_copy_ceiling(Device device, std::size_t bytes, int repeats, CopyKind kind) {
  if (kind == CopyKind::streaming && device != Device::cpu)
    throw std::invalid_argument("the streaming copy ceiling is CPU only");
  CopyBuffers buffers = touched_buffers(device, bytes);
  Timer timer(device);
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < std::max(repeats, 1); ++i)
    best = std::min(best, timed_copy(device, kind, buffers, timer));
  if (kind == CopyKind::streaming) check_streaming_copy(buffers);
  return make_ceiling(device, kind, bytes, best);
}

double CpuCopyCeilings::best_bytes_per_second() const {
  return std::max(plain.bytes_per_second, streaming.bytes_per_second);
}

CpuCopyCeilings measure_cpu_copy_ceilings(std::size_t bytes, int repeats) {
  CopyBuffers buffers = touched_buffers(Device::cpu, bytes);
  Timer timer(Device::cpu);
  double best_memcpy = std::numeric_limits<double>::infinity();
  double best_streaming = best_memcpy;
  // Alternated, on the same buffers: on a shared machine a burst of other work then slows both
  // copies alike instead of one of them.
  for (int i = 0; i < std::max(repeats, 1); ++i) {
    best_memcpy = std::min(best_memcpy, timed_copy(Device::cpu, CopyKind::plain, buffers, timer));
    best_streaming =
        std::min(best_streaming, timed_copy(Device::cpu, CopyKind::streaming, buffers, timer));
  }
  check_streaming_copy(buffers);  // the streaming copy ran last
  return {make_ceiling(Device::cpu, CopyKind::plain, bytes, best_memcpy),
          make_ceiling(Device::cpu, CopyKind::streaming, bytes, best_streaming)};
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
  // Whether the row ops' cluster_shared path can run (it needs sm_90 and kernels built for it).
  d.detail += prop.clusterLaunch ? ", thread-block clusters" : ", no thread-block clusters";
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
