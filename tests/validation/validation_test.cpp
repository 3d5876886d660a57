// Every case of the validation table (validation/validation.h) as a test: the same cases and the
// same tolerance rule as `actloss validate`, at the table's full depth.
#include <gtest/gtest.h>

#include <ostream>
#include <string>

#include <actloss/actloss.h>

#include "benchmarks/support/memory.h"
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

INSTANTIATE_TEST_SUITE_P(Cpu, Table, ::testing::ValuesIn(cases(Device::cpu, Depth::full)),
                         case_name);
INSTANTIATE_TEST_SUITE_P(Cuda, Table, ::testing::ValuesIn(cases(Device::cuda, Depth::full)),
                         case_name);

}  // namespace
}  // namespace actloss::validation
