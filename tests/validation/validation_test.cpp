// Every case of the validation table (validation/validation.h) as a test: the same cases and the
// same tolerance rule as `actloss validate`, at the table's full depth. ACTLOSS_ELEMENTWISE_PACKS=1
// runs them with the elementwise kernels' one-pack loop, and ACTLOSS_ROW_EXP_ONCE=0 with the
// cross-entropy's unified kernel on every path (each the code last measured on a GPU, kept
// selectable until a card has compared it with the default), so that both meet every case.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <ostream>
#include <set>
#include <string>

#include <actloss/actloss.h>

#include "benchmarks/support/memory.h"
#include "host/backend.h"
#include "validation/validation.h"

namespace actloss::validation {

// What gtest prints for a parameter: the case, not its bytes.
void PrintTo(const Case& c, std::ostream* out) {
  *out << to_string(c.device) << " " << c.op << " " << c.pass << " " << c.dtypes << " " << c.shape
       << " " << c.inputs << " " << c.path;
}

namespace {

class Table : public ::testing::TestWithParam<Case> {};

TEST_P(Table, MatchesTheReference) {
  const Case& c = GetParam();
  if (c.device == Device::cuda && !(cuda_backend_built() && bench::cuda_device_present()))
    GTEST_SKIP() << "no CUDA device: runs on a GPU, or on CPU in the simulator build";
  const Outcome outcome = c.run();
  EXPECT_TRUE(outcome.passed()) << outcome.failures();
}

std::string case_name(const ::testing::TestParamInfo<Case>& param) { return param.param.name(); }

// Every op has cases on both devices at every depth, and names are unique: an op whose list came
// out empty must not pass for green.
TEST(TableContents, EveryOpAtEveryDepthOnBothDevices) {
  const char* kOps[] = {"cross_entropy", "softmax",   "log_softmax", "relu",
                        "leaky_relu",    "tanh",      "sigmoid",     "gelu_erf",
                        "gelu_tanh",     "silu",      "swiglu",      "bce_with_logits",
                        "mse",           "linear_cross_entropy"};
  for (Device device : {Device::cpu, Device::cuda})
    for (Depth d : {Depth::smoke, Depth::quick, Depth::full}) {
      std::set<std::string> ops, names;
      for (const Case& c : cases(device, d)) {
        ops.insert(c.op);
        EXPECT_TRUE(names.insert(c.name()).second) << "two cases named " << c.name();
      }
      for (const char* op : kOps)
        EXPECT_EQ(ops.count(op), 1u) << op << ": no " << to_string(device) << " cases at depth "
                                     << static_cast<int>(d);
    }
}

// The table's full depth, unless ACTLOSS_VALIDATION_DEPTH says smoke or quick: the
// ThreadSanitizer build, where every CUDA thread is an OS thread, runs the smoke depth.
Depth depth() {
  const char* wanted = std::getenv("ACTLOSS_VALIDATION_DEPTH");
  const std::string name = wanted != nullptr ? wanted : "";
  if (name == "smoke") return Depth::smoke;
  if (name == "quick") return Depth::quick;
  return Depth::full;
}

// Whether `variable` asks for the code last measured on a GPU: set to `value`, or unset (or
// empty) for the default. Anything else stops the run, not a failure inside the tests: every
// case would report SKIPPED, and ctest pass that.
bool asks_for_measured_code(const char* variable, const char* value) {
  const char* setting = std::getenv(variable);
  if (setting == nullptr || std::string(setting).empty()) return false;
  if (std::string(setting) == value) return true;
  std::fprintf(stderr, "%s: %s or unset (got '%s')\n", variable, value, setting);
  std::exit(2);
}

// ACTLOSS_ELEMENTWISE_PACKS=1: the elementwise kernels' one-pack loop. ACTLOSS_ROW_EXP_ONCE=0:
// the cross-entropy's on-chip rows take the kernel for every option instead of the kernels that
// keep each exponential (detail::set_row_exp_once). ACTLOSS_ROW_LANE_SHIFT=0: the first read of
// a misaligned row moves chunk by chunk (detail::set_row_lane_shift).
class MeasuredCode : public ::testing::Environment {
 public:
  void SetUp() override {
    if (asks_for_measured_code("ACTLOSS_ELEMENTWISE_PACKS", "1")) {
#if ACTLOSS_BENCH_CUDA
      detail::cuda_set_elementwise_packs_per_step_for_testing(1);
#endif
    }
    if (asks_for_measured_code("ACTLOSS_ROW_EXP_ONCE", "0")) detail::set_row_exp_once(false);
    if (asks_for_measured_code("ACTLOSS_ROW_LANE_SHIFT", "0")) detail::set_row_lane_shift(false);
  }
};
const ::testing::Environment* const kMeasuredCode =
    ::testing::AddGlobalTestEnvironment(new MeasuredCode);

INSTANTIATE_TEST_SUITE_P(Cpu, Table, ::testing::ValuesIn(cases(Device::cpu, depth())), case_name);
INSTANTIATE_TEST_SUITE_P(Cuda, Table, ::testing::ValuesIn(cases(Device::cuda, depth())),
                         case_name);

}  // namespace
}  // namespace actloss::validation
