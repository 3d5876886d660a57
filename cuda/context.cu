// Host-side CUDA plumbing shared by every op: error conversion, the cached device properties,
// the per-device data-error record, and the pointer check behind validation.
#include "cuda/common.cuh"

#include <array>
#include <map>
#include <mutex>
#include <unordered_map>

namespace actloss::cuda {

Status cuda_status(cudaError_t error, const char* expression) {
  // A launch or runtime error is sticky in cudaGetLastError; clear it so the next, unrelated
  // call does not report it again. Sticky context errors stay sticky regardless.
  (void)cudaGetLastError();
  return Status(StatusCode::cuda_error, "",
                std::string(expression) + " failed with " + cudaGetErrorName(error) + ": " +
                    cudaGetErrorString(error));
}

namespace {

constexpr int kMaxDevices = 64;

struct PerDevice {
  std::once_flag info_once;
  DeviceInfo info;
  cudaError_t info_error = cudaSuccess;
  std::mutex record_mutex;
  // One record per stream handle, so that concurrent streams neither lose nor clear each
  // other's errors. Owned for the life of the process, like a CUDA context: a stream handle
  // that CUDA reuses after cudaStreamDestroy finds its record cleared by the last
  // take_device_error, or holding an error nobody took.
  std::map<cudaStream_t, DeviceError*> records;
};

std::array<PerDevice, kMaxDevices>& per_device() {
  static std::array<PerDevice, kMaxDevices> devices;
  return devices;
}

Status current_device(int* device) {
  if (Status status = detail::cuda_require_device(); !status.ok()) return status;
  ACTLOSS_CUDA_TRY(cudaGetDevice(device));
  if (*device < 0 || *device >= kMaxDevices)
    return Status(StatusCode::unsupported, "exec.device",
                  "exec.device: CUDA device ordinal " + std::to_string(*device) +
                      " is beyond the " + std::to_string(kMaxDevices) + " actloss supports");
  return {};
}

// Compiled like every kernel of the library: the architecture of the code the device runs for
// it is that of every row kernel.
__global__ void architecture_probe_kernel() {}

}  // namespace

Status current_device_info(const DeviceInfo** info) {
  int device = 0;
  if (Status status = current_device(&device); !status.ok()) return status;
  PerDevice& entry = per_device()[static_cast<std::size_t>(device)];
  std::call_once(entry.info_once, [&] {
    DeviceInfo& d = entry.info;
    d.device = device;
    int major = 0, minor = 0;
    const cudaError_t errors[] = {
        cudaDeviceGetAttribute(&d.sm_count, cudaDevAttrMultiProcessorCount, device),
        cudaDeviceGetAttribute(&d.max_threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor,
                               device),
        cudaDeviceGetAttribute(&d.max_shared_per_block_optin,
                               cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
        cudaDeviceGetAttribute(&d.max_shared_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor,
                               device),
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
    };
    for (cudaError_t error : errors)
      if (error != cudaSuccess && entry.info_error == cudaSuccess) entry.info_error = error;
    d.compute_capability = major * 10 + minor;
    // Launches in clusters need the device (sm_90 on) and kernels built for it: code compiled
    // for sm_80 (or its PTX, run by an sm_90 device) has no cluster instructions and would run
    // each block of a cluster as a cluster of one.
    int clusters = 0;
    cudaFuncAttributes probe{};
    if (cudaDeviceGetAttribute(&clusters, cudaDevAttrClusterLaunch, device) == cudaSuccess &&
        cudaFuncGetAttributes(&probe, architecture_probe_kernel) == cudaSuccess)
      d.cluster_launch = clusters != 0 && probe.binaryVersion >= 90;
  });
  if (entry.info_error != cudaSuccess)
    return cuda_status(entry.info_error, "cudaDeviceGetAttribute");
  *info = &entry.info;
  return {};
}

namespace {

// A kernel at a geometry on a device: the occupancy API's answer for it never changes.
struct ResidencyKey {
  const void* kernel;
  int device;
  int block;
  std::size_t shared_bytes;
  bool operator==(const ResidencyKey&) const = default;
};

struct ResidencyKeyHash {
  std::size_t operator()(const ResidencyKey& key) const {
    std::size_t h = std::hash<const void*>{}(key.kernel);
    for (const std::size_t part : {static_cast<std::size_t>(key.device),
                                   static_cast<std::size_t>(key.block), key.shared_bytes})
      h = h * 0x9E3779B97F4A7C15ull + part;
    return h;
  }
};

// Per thread, so that the several lookups of each call's plan take no lock; a thread asks the
// API once per kernel and geometry.
std::unordered_map<ResidencyKey, int, ResidencyKeyHash>& thread_residency_answers() {
  thread_local std::unordered_map<ResidencyKey, int, ResidencyKeyHash> answers;
  return answers;
}

}  // namespace

cudaError_t resident_blocks(const DeviceInfo& device, const void* kernel, int block,
                            std::size_t shared_bytes, int* blocks) {
  auto& answers = thread_residency_answers();
  const ResidencyKey key{kernel, device.device, block, shared_bytes};
  if (const auto found = answers.find(key); found != answers.end()) {
    *blocks = found->second;
    return cudaSuccess;
  }
  // The occupancy API counts a kernel's dynamic shared memory against the size it may use, which
  // is 48 KiB until the launch raises it (launch_row_kernel): raised here first, as it will be.
  constexpr std::size_t kDefaultDynamicShared = 48 * 1024;
  if (shared_bytes > kDefaultDynamicShared) {
    const cudaError_t error = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes));
    if (error != cudaSuccess) return error;
  }
  const cudaError_t error =
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks, kernel, block, shared_bytes);
  if (error != cudaSuccess) return error;
  answers.emplace(key, *blocks);
  return cudaSuccess;
}

Status device_error_record(const Exec& exec, DeviceError** record) {
  if (exec.device_error != nullptr) {
    *record = exec.device_error;
    return {};
  }
  int device = 0;
  if (Status status = current_device(&device); !status.ok()) return status;
  PerDevice& entry = per_device()[static_cast<std::size_t>(device)];
  std::lock_guard lock(entry.record_mutex);
  DeviceError*& slot = entry.records[exec.stream];
  if (slot == nullptr) {
    // Allocating and zeroing the record synchronously would invalidate a graph capture in
    // progress on this stream (and zeroing it inside the graph would clear it on every
    // replay), so a first call that is being captured is refused, leaving the capture intact.
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    const cudaError_t query = cudaStreamIsCapturing(exec.stream, &capture);
    if (query != cudaSuccess || capture != cudaStreamCaptureStatusNone) {
      entry.records.erase(exec.stream);
      if (query != cudaSuccess) return cuda_status(query, "cudaStreamIsCapturing");
      return Status(StatusCode::unsupported, "exec.device_error",
                    "exec.device_error: exec.stream is capturing a CUDA graph before any actloss "
                    "call on it; make one call on the stream before capturing, or give "
                    "exec.device_error a record of your own");
    }
    // One small allocation per stream for the life of the process. cudaMalloc memory is not
    // initialised; zero it synchronously once so no stream ordering is needed on later calls.
    DeviceError* fresh = nullptr;
    if (const cudaError_t error =
            cudaMalloc(reinterpret_cast<void**>(&fresh), sizeof(DeviceError));
        error != cudaSuccess) {
      entry.records.erase(exec.stream);
      return cuda_status(error, "cudaMalloc(device error record)");
    }
    if (const cudaError_t error = cudaMemset(fresh, 0, sizeof(DeviceError)); error != cudaSuccess) {
      (void)cudaFree(fresh);
      entry.records.erase(exec.stream);
      return cuda_status(error, "cudaMemset(device error record)");
    }
    slot = fresh;
  }
  *record = slot;
  return {};
}

}  // namespace actloss::cuda

namespace actloss::detail {

void cuda_forget_resident_blocks_for_testing() { cuda::thread_residency_answers().clear(); }

Status cuda_require_device() {
  struct Probe {
    cudaError_t error = cudaSuccess;
    int count = 0;
  };
  // Without a driver every runtime call fails the same way; asking once keeps the answer (and
  // its cost) out of every later call.
  static const Probe probe = [] {
    Probe p;
    p.error = cudaGetDeviceCount(&p.count);
    if (p.error != cudaSuccess) (void)cudaGetLastError();
    return p;
  }();
  if (probe.error == cudaSuccess && probe.count > 0) return {};
  const std::string reason = probe.error != cudaSuccess
                                 ? std::string(cudaGetErrorName(probe.error)) + ": " +
                                       cudaGetErrorString(probe.error)
                                 : std::string("the runtime found no device");
  return Status(StatusCode::no_device, "exec.device",
                "exec.device: Device::cuda, but this process can use no CUDA device (" + reason +
                    "); run with Device::cpu, or where a GPU and its driver are present");
}

Status cuda_check_memory(Device device, const void* pointer, const char* argument) {
  // Without a usable device there is no device memory for the host to mistake for its own.
  const bool host = device != Device::cuda;
  if (host && !cuda_require_device().ok()) return {};
  cudaPointerAttributes attributes{};
  const cudaError_t error = cudaPointerGetAttributes(&attributes, pointer);
  if (error != cudaSuccess) (void)cudaGetLastError();
  if (host) {
    if (error != cudaSuccess || attributes.type != cudaMemoryTypeDevice) return {};
    return Status(StatusCode::invalid_argument, argument,
                  std::string(argument) +
                      ": CUDA device memory, which the CPU path cannot read; pass host memory, "
                      "or run with Device::cuda (exec.device)");
  }
  if (error != cudaSuccess) {
    return Status(StatusCode::invalid_argument, argument,
                  std::string(argument) + ": the CUDA runtime cannot identify this pointer (" +
                      cudaGetErrorName(error) + ")");
  }
  const bool device_reachable =
      attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged ||
      (attributes.type == cudaMemoryTypeHost && attributes.devicePointer != nullptr);
  if (!device_reachable)
    return Status(StatusCode::invalid_argument, argument,
                  std::string(argument) +
                      ": host memory the CUDA device cannot access; pass device memory (or "
                      "pinned, mapped host memory), or run with Device::cpu");
  int current = 0;
  ACTLOSS_CUDA_TRY(cudaGetDevice(&current));
  if (attributes.type == cudaMemoryTypeDevice && attributes.device != current)
    return Status(StatusCode::invalid_argument, argument,
                  std::string(argument) + ": memory of CUDA device " +
                      std::to_string(attributes.device) + ", but the current device is " +
                      std::to_string(current));
  return {};
}

Status cuda_take_device_error(const Exec& exec) {
  DeviceError* record = nullptr;
  if (Status status = cuda::device_error_record(exec, &record); !status.ok()) return status;
  DeviceError host_copy{};
  ACTLOSS_CUDA_TRY(cudaMemcpyAsync(&host_copy, record, sizeof(DeviceError), cudaMemcpyDeviceToHost,
                                   exec.stream));
  ACTLOSS_CUDA_TRY(cudaStreamSynchronize(exec.stream));
  if (host_copy.code == 0) return {};
  ACTLOSS_CUDA_TRY(cudaMemsetAsync(record, 0, sizeof(DeviceError), exec.stream));
  const auto argument = static_cast<DeviceErrorArgument>(host_copy.argument);
  const std::string name = argument == DeviceErrorArgument::targets ? "targets" : "";
  return Status(static_cast<StatusCode>(host_copy.code), name,
                name + ": row " + std::to_string(host_copy.index) + " has class target " +
                    std::to_string(host_copy.value) +
                    ", outside [0, classes) and not ignore_index (its loss and gradient are NaN)");
}

}  // namespace actloss::detail
