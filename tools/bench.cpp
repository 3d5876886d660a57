// `actloss bench`: a short run of the benchmark problems (benchmarks/support/workload.h) with
// this tool's own timing loop, reporting GB/s from benchmarks/byte_formulas.h against a copy
// ceiling measured in the same run. actloss_bench is the thorough version (Google Benchmark, JSON
// output for plot.py); this is the one a user runs to see where a machine stands.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "benchmarks/byte_formulas.h"
#include "benchmarks/support/memory.h"
#include "benchmarks/support/workload.h"
#include "tools/commands.h"
#include "tools/table.h"

namespace actloss::tool {
namespace {

using namespace actloss::bench;

struct Budget {
  int min_iterations;
  int max_iterations;
  double seconds;  // stop once this much time was measured and min_iterations ran
};

Budget budget_for(Device device, bool quick) {
  // A CPU problem takes milliseconds, and each run starts from a flushed cache (the flush costs
  // more than the run): a few dozen runs give a stable median.
  if (device == Device::cpu) return quick ? Budget{3, 30, 0.03} : Budget{5, 200, 0.2};
  if (simulated_cuda()) return {1, 2, 0.0};
  return quick ? Budget{5, 200, 0.05} : Budget{10, 1000, 0.2};
}

// The median of the per-run times: robust to the odd slow run on a shared machine.
double time_problem(const Case& c, const Budget& budget) {
  const int slots = rotation_slots(c.device, c.problem);
  const std::unique_ptr<Workload> workload = make_workload(c, slots);
  std::optional<CacheFlusher> flusher;
  if (slots == 1) flusher.emplace(c.device);
  Timer timer(c.device);
  if (c.device == Device::cuda) {
    workload->run(0);
    synchronize(c.device);
  }
  std::vector<double> times;
  double total = 0;
  int slot = 0;
  while (static_cast<int>(times.size()) < budget.max_iterations &&
         (static_cast<int>(times.size()) < budget.min_iterations || total < budget.seconds)) {
    if (flusher) flusher->flush();
    timer.start();
    workload->run(slot);
    const double t = timer.stop_seconds();
    times.push_back(t);
    total += t;
    slot = (slot + 1) % slots;
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::string shape_of(const Problem& p) {
  if (is_row_op(p.op))
    return format("%lld x %lld", static_cast<long long>(p.rows), static_cast<long long>(p.cols));
  return format("%lld", static_cast<long long>(p.elements()));
}

std::string time_text(double seconds) {
  if (seconds >= 1.0) return format("%.2f s", seconds);
  if (seconds >= 1e-3) return format("%.2f ms", seconds * 1e3);
  return format("%.1f us", seconds * 1e6);
}

std::string size_text(std::size_t bytes) {
  if (bytes >= (std::size_t{1} << 30)) return format("%zu GiB", bytes >> 30);
  return format("%zu MiB", bytes >> 20);
}

}  // namespace

int bench(const CommonOptions& options) {
  const bool quick = options.depth != Depth::full;
  int status = 0;
  for (Device device : options.devices) {
    const bool sim = device == Device::cuda && simulated_cuda();
    const SetSize size = sim ? SetSize::sim : quick ? SetSize::quick : SetSize::full;
    std::vector<Problem> problems;
    for (const Problem& p : problem_set(device, size))
      if (op_selected(options.op, op_name(p))) problems.push_back(p);

    const DeviceDescription description = describe_device(device);
    std::printf("\n== %s: %s ==\n", to_string(device), description.name.c_str());
    if (sim)
      std::printf(
          "simulated CUDA: these timings are the simulator's and say nothing about a GPU\n");
    const std::size_t copy_size =
        quick && device == Device::cpu ? std::size_t{64} << 20 : default_copy_bytes(device);
    const int copy_repeats = quick ? 3 : 5;
    CopyCeiling ceiling;
    try {
      if (device == Device::cpu) {
        // The faster of memcpy and the threaded streaming copy: see memory.h, CpuCopyCeilings.
        const CpuCopyCeilings cpu = measure_cpu_copy_ceilings(copy_size, copy_repeats);
        ceiling = cpu.streaming.bytes_per_second > cpu.plain.bytes_per_second ? cpu.streaming
                                                                              : cpu.plain;
        std::printf(
            "copy ceiling: %.1f GB/s, the higher of memcpy (one thread) %.1f GB/s and a "
            "streaming copy (%s stores, %d threads) %.1f GB/s, of %s, read + write\n\n",
            ceiling.bytes_per_second * 1e-9, cpu.plain.bytes_per_second * 1e-9,
            streaming_store_text(), cpu.streaming.threads, cpu.streaming.bytes_per_second * 1e-9,
            size_text(copy_size).c_str());
      } else {
        ceiling = measure_copy_ceiling(device, copy_size, copy_repeats);
        std::printf("copy ceiling: %.1f GB/s (device-to-device copy of %s, read + write)\n\n",
                    ceiling.bytes_per_second * 1e-9, size_text(copy_size).c_str());
      }
    } catch (const std::exception& error) {
      std::fprintf(stderr, "actloss bench: copy ceiling on %s: %s\n", to_string(device),
                   error.what());
      status = 1;
      continue;
    }

    std::vector<Case> work;
    for (const Problem& p : problems)
      for (Impl impl : implementations(device))
        if (implements(impl, device, p)) work.push_back(Case{device, impl, p});

    Table table({{"op"},
                 {"pass"},
                 {"dtype"},
                 {"shape"},
                 {"impl"},
                 {"time", Table::Align::right},
                 {"GB/s", Table::Align::right},
                 {"% of copy", Table::Align::right}});
    Progress progress(work.size());
    const Budget budget = budget_for(device, quick);
    for (std::size_t i = 0; i < work.size(); ++i) {
      const Case& c = work[i];
      const Problem& p = c.problem;
      progress.update(i, case_name(c));
      std::vector<std::string> row = {op_name(p), to_string(p.pass), actloss::to_string(p.dtype),
                                      shape_of(p), to_string(c.impl)};
      try {
        const double seconds = time_problem(c, budget);
        const double rate = static_cast<double>(min_bytes(p)) / seconds;
        row.insert(row.end(), {time_text(seconds), format("%.1f", rate * 1e-9),
                               format("%.1f%%", 100.0 * rate / ceiling.bytes_per_second)});
      } catch (const std::exception& error) {
        row.insert(row.end(), {"error", "-", "-"});
        progress.milestone(format("%s: %s", case_name(c).c_str(), error.what()));
        status = 1;
      }
      table.add_row(std::move(row));
    }
    progress.finish();
    table.print(stdout);
  }
  std::printf(
      "\nGB/s: the minimal bytes of benchmarks/byte_formulas.h (each input read once, each "
      "output written once) over the median time\n");
  return status;
}

}  // namespace actloss::tool
