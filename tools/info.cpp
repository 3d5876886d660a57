// `actloss info`: what this build contains and what the machine offers, with the memory
// bandwidth measured now (the ceiling that `actloss bench` and actloss_bench compare against).
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "benchmarks/support/memory.h"
#include "benchmarks/support/workload.h"
#include "tools/commands.h"
#include "tools/table.h"

namespace actloss::tool {
namespace {

using namespace actloss::bench;

std::string backend_text() {
  if (!cuda_backend_built()) return "cpu (CUDA backend not built)";
  return simulated_cuda() ? "cpu, cuda (simulator: the kernels run on CPU threads)"
                          : "cpu, cuda (nvcc)";
}

std::string peers_text(Device device) {
  std::string text;
  for (Impl impl : implementations(device)) {
    if (impl == Impl::actloss) continue;
    text += (text.empty() ? "" : ", ") + std::string(to_string(impl));
  }
  return text.empty() ? "none in this build" : text;
}

std::string bandwidth_text(Device device) {
  try {
    const std::size_t bytes = default_copy_bytes(device);
    const CopyCeiling c = measure_copy_ceiling(device, bytes, 5);
    std::string text =
        format("%.1f GB/s (%s of %zu MiB, read + write, best of 5)", c.bytes_per_second * 1e-9,
               device == Device::cpu ? "one-thread memcpy" : "device-to-device copy", bytes >> 20);
    if (device == Device::cuda && simulated_cuda()) text += "; simulated, meaningless";
    return text;
  } catch (const std::exception& error) {
    return std::string("not measured: ") + error.what();
  }
}

}  // namespace

int info() {
  Table table({{"item"}, {"value"}});
  table.add_row({"build", build_info()});
  table.add_row({"backends", backend_text()});
  const DeviceDescription cpu = describe_device(Device::cpu);
  table.add_row({"cpu", cpu.name + ", " + cpu.detail});
  table.add_row({"cpu backend", cpu_backend()});
  table.add_row({"cpu bandwidth", bandwidth_text(Device::cpu)});
  table.add_row({"cpu peers", peers_text(Device::cpu)});
  if (cuda_backend_built()) {
    if (cuda_device_present()) {
      try {
        const DeviceDescription gpu = describe_device(Device::cuda);
        table.add_row({"cuda device", gpu.name});
        table.add_row({"cuda details", gpu.detail});
        if (gpu.peak_bytes_per_second > 0 && !simulated_cuda()) {
          table.add_row({"cuda peak (spec)", format("%.1f GB/s (memory clock x bus width x 2)",
                                                    gpu.peak_bytes_per_second * 1e-9)});
        }
      } catch (const std::exception& error) {
        table.add_row({"cuda device", std::string("error: ") + error.what()});
      }
      table.add_row({"cuda bandwidth", bandwidth_text(Device::cuda)});
      table.add_row({"cuda peers", peers_text(Device::cuda)});
    } else {
      table.add_row({"cuda device", "none found (cudaGetDeviceCount)"});
    }
  }
  table.print(stdout);
  return 0;
}

}  // namespace actloss::tool
