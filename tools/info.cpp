// `actloss info`: what this build contains and what the machine offers, with the memory
// bandwidth measured now (the ceilings that `actloss bench` and actloss_bench compare against).
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
    std::string text = format("%.1f GB/s (device-to-device copy of %zu MiB, read + write, best of 5)",
                              c.bytes_per_second * 1e-9, bytes >> 20);
    if (simulated_cuda()) text += "; simulated, meaningless";
    return text;
  } catch (const std::exception& error) {
    return std::string("not measured: ") + error.what();
  }
}

// The CPU has two copies, and the ceiling is the faster (memory.h, CpuCopyCeilings): rows for
// the ceiling and for each copy, so that a reader sees which one set it.
void add_cpu_bandwidth_rows(Table& table) {
  try {
    const std::size_t bytes = default_copy_bytes(Device::cpu);
    const CpuCopyCeilings c = measure_cpu_copy_ceilings(bytes, 5);
    const bool streaming_higher = c.streaming.bytes_per_second > c.plain.bytes_per_second;
    table.add_row({"cpu bandwidth",
                   format("%.1f GB/s (the %s copy, the higher of the two below: the ceiling of "
                          "every CPU %% of copy)",
                          c.best_bytes_per_second() * 1e-9,
                          streaming_higher ? "streaming" : "memcpy")});
    table.add_row({"cpu memcpy", format("%.1f GB/s (one thread, %zu MiB, read + write, best of 5)",
                                        c.plain.bytes_per_second * 1e-9, bytes >> 20)});
    table.add_row(
        {"cpu streaming copy",
         format("%.1f GB/s (%s stores, %d threads, %zu MiB, read + write, best of 5)",
                c.streaming.bytes_per_second * 1e-9, streaming_store_text(), c.streaming.threads,
                bytes >> 20)});
  } catch (const std::exception& error) {
    table.add_row({"cpu bandwidth", std::string("not measured: ") + error.what()});
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
  add_cpu_bandwidth_rows(table);
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
