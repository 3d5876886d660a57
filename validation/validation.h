// The one table of validation cases, shared by `actloss validate` (tools/validate.cpp) and the
// test suites (tests/api for the CPU path, tests/cuda for the kernels), so that what the tool
// reports and what CI asserts cannot drift apart.
//
// A case is an op, a pass, dtypes, a shape and layout (strides, a misaligned base, in place), an
// input kind and a dispatch path. Running it calls the public API on the device, evaluates the
// float64 reference (host/reference) on the inputs exactly as the device holds them, and checks
// every output under the one tolerance rule of validation/tolerance.h; outputs start poisoned, so
// an element not written fails, and a byte written outside an output (padding between rows, an
// output the call was not asked for) fails too.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <actloss/types.h>

namespace actloss::validation {

enum class Depth : std::uint8_t {
  smoke,  // every op, pass and dispatch path on a few input kinds (ThreadSanitizer's threads mode)
  quick,  // every op x pass x dtype x input kind at least once: seconds
  full,   // every case: what the test suites run
};

// One output compared with the reference.
struct Check {
  std::string output;      // "loss", "grad", "y", "grad padding", ...
  DType dtype = DType::f32;  // the output's dtype (compared values)
  double max_abs = 0;      // largest |actual - expected| over finite pairs
  double max_rel = 0;      // largest relative error over normal, well-conditioned results
                           // (an error bound of at most 16 roundings of the result)
  double worst = 0;        // largest error / allowance; <= 1 passes
  bool pass = true;
  std::string first_failure;  // "grad[12]: got ..., want ..., allowed ..."
};

struct Outcome {
  std::string error;  // the call failed, or the device did: no checks were made
  std::vector<Check> checks;
  bool passed() const;
  // Every failure, one per line (the error, or each failing check's first failure).
  std::string failures() const;
};

struct Case {
  Device device = Device::cpu;
  std::string op;      // "cross_entropy", "softmax", "relu", ...
  std::string pass;    // "forward", "backward", "forward_backward", "backward(y)", "mask", ...
  std::string dtypes;  // "f32", or "bf16->f32" where input and output differ
  std::string shape;   // "33x1000", with layout notes ("stride+3", "offset 1", "in place")
  std::string inputs;  // the input kind: "random", "sweep", "far below zero", ...
  std::string path;    // the dispatch path that runs: "block_on_chip", "vector", "cpu", ...
  std::function<Outcome()> run;

  // Unique within a table, letters, digits and '_' only (a test name).
  std::string name() const;
};

// The table for `device`, at `depth`, restricted to the ops `wanted` accepts (every op when
// empty). A case's name is unique in its table.
std::vector<Case> cases(Device device, Depth depth,
                        const std::function<bool(const std::string& op)>& wanted = {});

}  // namespace actloss::validation
