// `actloss validate`: the validation table (validation/validation.h) on this machine's devices:
// every op x pass x dtype x layout x input kind x dispatch path against the float64 reference,
// under the one tolerance rule of validation/tolerance.h. The test suites run the same table
// (tests/validation), so what this command reports is what CI asserts.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <map>
#include <tuple>
#include <string>
#include <utility>
#include <vector>

#include <actloss/actloss.h>

#include "benchmarks/support/memory.h"
#include "host/cpu/backend.h"
#include "tools/commands.h"
#include "tools/table.h"
#include "validation/validation.h"

namespace actloss::tool {
namespace {

validation::Depth table_depth(Depth depth) {
  switch (depth) {
    case Depth::smoke: return validation::Depth::smoke;
    case Depth::quick: return validation::Depth::quick;
    case Depth::full: break;
  }
  return validation::Depth::full;
}

std::string ratio_text(double ratio) { return std::isinf(ratio) ? "inf" : format("%.2f", ratio); }

// The worst of every case, by op and output: all inputs, and the binade sweep alone.
struct Worst {
  std::size_t checks = 0;
  double max_rel = 0, worst = 0, sweep_max_rel = 0;
  void add(const validation::Check& check, bool sweep) {
    ++checks;
    max_rel = std::max(max_rel, check.max_rel);
    worst = std::max(worst, check.worst);
    if (sweep) sweep_max_rel = std::max(sweep_max_rel, check.max_rel);
  }
};

// What was checked against what, in words: the kernels (on a GPU or on the simulator) or the
// CPU path, against the float64 reference.
std::string device_heading(Device device) {
  if (device == Device::cpu && detail::cpu_runnable_simd_targets() != 0)
    return std::string("cpu: the SIMD CPU backend (") + cpu_backend() +
           "), against the float64 reference (the calls it does not cover run that reference "
           "itself, rounded into each output's dtype)";
  if (device == Device::cpu)
    return "cpu: the CPU path against the float64 reference. Built without Highway, the CPU "
           "path IS that reference, rounded into each output's dtype, so this checks the "
           "rounding, the validation and the harness, not an independent implementation";
  const bench::DeviceDescription d = bench::describe_device(Device::cuda);
  return bench::simulated_cuda()
             ? "cuda: the CUDA kernels, run on the CPU simulator (" + d.name +
                   "), against the float64 reference"
             : "cuda: the CUDA kernels on " + d.name + ", against the float64 reference";
}

}  // namespace

int validate(const CommonOptions& options, bool failures_only) {
  const auto started = std::chrono::steady_clock::now();
  std::size_t total_cases = 0;
  std::size_t total_failures = 0;
  std::vector<std::string> failure_notes;
  for (Device device : options.devices) {
    std::vector<validation::Case> cases;
    try {
      cases = validation::cases(device, table_depth(options.depth), [&](const std::string& op) {
        return op_selected(options.op, op);
      });
    } catch (const std::exception& error) {
      std::fprintf(stderr, "actloss validate: %s: %s\n", to_string(device), error.what());
      return 2;
    }
    Table table({{"op"},
                 {"pass"},
                 {"dtype"},
                 {"shape"},
                 {"inputs"},
                 {"path"},
                 {"output"},
                 {"max abs err", Table::Align::right},
                 {"max rel err", Table::Align::right},
                 {"err/tol", Table::Align::right},
                 {"result"}});
    Progress progress(cases.size());
    progress.milestone(
        format("validating %zu cases on %s", cases.size(), device_heading(device).c_str()));
    std::string last_op;
    std::size_t failures = 0;
    // By op, output and the output's dtype; checks of inputs and padding (which compare
    // nothing) are left out.
    std::map<std::tuple<std::string, std::string, std::string>, Worst> worst_by_output;
    for (std::size_t i = 0; i < cases.size(); ++i) {
      const validation::Case& c = cases[i];
      if (c.op != last_op) {
        if (i > 0)
          progress.milestone(
              format("  %s done (%zu/%zu)", cases[i - 1].op.c_str(), i, cases.size()));
        last_op = c.op;
      }
      progress.update(i, format("%s %s %s %s %s %s", c.op.c_str(), c.pass.c_str(),
                                c.dtypes.c_str(), c.shape.c_str(), c.inputs.c_str(),
                                c.path.c_str()));
      validation::Outcome outcome;
      try {
        outcome = c.run();
      } catch (const std::exception& error) {
        outcome.error = error.what();
      }
      const bool pass = outcome.passed();
      for (const validation::Check& check : outcome.checks)
        if (check.max_abs > 0 || check.worst > 0)
          worst_by_output[{c.op, check.output, to_string(check.dtype)}].add(
              check, c.inputs.rfind("sweep", 0) == 0);
      const validation::Check* worst = nullptr;
      for (const validation::Check& check : outcome.checks)
        if (worst == nullptr || check.worst > worst->worst || (!check.pass && worst->pass))
          worst = &check;
      if (!pass) {
        ++failures;
        const std::string what = format("%s %s %s %s %s %s %s", to_string(device), c.op.c_str(),
                                        c.pass.c_str(), c.dtypes.c_str(), c.shape.c_str(),
                                        c.inputs.c_str(), c.path.c_str());
        failure_notes.push_back(what + ": " + outcome.failures());
      }
      if (failures_only && pass) continue;
      std::vector<std::string> row = {c.op, c.pass, c.dtypes, c.shape, c.inputs, c.path};
      if (worst != nullptr && outcome.error.empty()) {
        row.insert(row.end(), {worst->output, format("%.2e", worst->max_abs),
                               format("%.2e", worst->max_rel), ratio_text(worst->worst),
                               pass ? "pass" : "FAIL"});
      } else {
        row.insert(row.end(), {"-", "-", "-", "-", "ERROR"});
      }
      table.add_row(std::move(row));
    }
    if (!cases.empty())
      progress.milestone(
          format("  %s done (%zu/%zu)", last_op.c_str(), cases.size(), cases.size()));
    progress.finish();
    std::printf("\n== %s ==\n", device_heading(device).c_str());
    if (table.rows() > 0) {
      table.print(stdout);
    } else {
      std::printf("(no %s)\n", failures_only ? "failures" : "cases");
    }
    std::printf("%zu cases, %zu failed\n", cases.size(), failures);
    if (!failures_only && !worst_by_output.empty()) {
      Table summary({{"op"},
                     {"output"},
                     {"dtype"},
                     {"checks", Table::Align::right},
                     {"max rel err", Table::Align::right},
                     {"on the sweep", Table::Align::right},
                     {"err/tol", Table::Align::right}});
      for (const auto& [key, w] : worst_by_output)
        summary.add_row({std::get<0>(key), std::get<1>(key), std::get<2>(key),
                         format("%zu", w.checks), format("%.2e", w.max_rel),
                         format("%.2e", w.sweep_max_rel), ratio_text(w.worst)});
      std::printf("\nthe worst by op and output:\n");
      summary.print(stdout);
    }
    total_cases += cases.size();
    total_failures += failures;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf(
      "\nallowed error per element: u |expected| + (1 + u) err + floor, u the output dtype's "
      "unit roundoff, err the float computation's bound for that element (validation/"
      "tolerance.h)\n"
      "max rel err: over normal results whose error bound is at most 16 roundings of the result "
      "(elsewhere the result cancels, or underflows); on the sweep: the same over the inputs of "
      "every float binade; err/tol: the largest error over its allowance (> 1 fails); output: "
      "the one with the largest err/tol\n");
  if (!failure_notes.empty()) {
    std::printf("\nfailures:\n");
    for (const std::string& note : failure_notes) std::printf("  %s\n", note.c_str());
  }
  std::printf("\n%s: %zu cases, %zu failed, %.1f s\n", total_failures == 0 ? "PASS" : "FAIL",
              total_cases, total_failures, seconds);
  return total_failures == 0 ? 0 : 1;
}

}  // namespace actloss::tool
