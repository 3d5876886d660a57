// Softmax and log-softmax through the public API: validation (both devices), hand values, in
// place with strides, and the CPU path's plumbing against the float64 reference.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>
#include <vector>

#include <actloss/softmax.h>

#include "host/reference/reference.h"
#include "tests/api/test_util.h"

namespace {

using namespace actloss;
using namespace api_test;

constexpr Pass F = Pass::forward;
constexpr Pass B = Pass::backward;

// ---- validation ------------------------------------------------------------------------------

struct SmSetup {
  static constexpr std::int64_t rows = 3;
  static constexpr std::int64_t cols = 4;
  Buffer x{DType::f32, rows * cols};
  Buffer y{DType::f32, rows * cols};
  Buffer saved_y{DType::f32, rows * cols};
  Buffer dy{DType::f32, rows * cols};
  Buffer dx{DType::f32, rows * cols};
  SoftmaxForwardArgs fwd;
  SoftmaxBackwardArgs bwd;
  SoftmaxOptions options;
  Exec exec;

  explicit SmSetup(Device device) {
    for (std::int64_t i = 0; i < rows * cols; ++i) {
      x.set(i, 0.5 * static_cast<double>(i % 5) - 1.0);
      saved_y.set(i, 0.25);
      dy.set(i, 0.1 * static_cast<double>(i));
    }
    fwd.rows = bwd.rows = rows;
    fwd.cols = bwd.cols = cols;
    fwd.x = x.data();
    fwd.y = y.data();
    bwd.y = saved_y.data();
    bwd.dy = dy.data();
    bwd.dx = dx.data();
    exec.device = device;
  }

  Status call(Pass pass) const {
    return pass == Pass::forward ? softmax_forward(fwd, options, exec)
                                 : softmax_backward(bwd, options, exec);
  }

  std::vector<const Buffer*> buffers() const { return {&x, &y, &saved_y, &dy, &dx}; }
};

using SmCase = RejectCase<SmSetup>;

std::vector<SmCase> sm_reject_cases() {
  const std::vector<Pass> both = {F, B};
  return {
      {"DeviceOutOfEnum", both, [](SmSetup& s) { s.exec.device = garbage<Device>(3); },
       "exec.device"},
      {"PointerChecksOutOfEnum", both,
       [](SmSetup& s) { s.exec.pointer_checks = garbage<PointerChecks>(5); },
       "exec.pointer_checks"},
      {"RowsNegative", both,
       [](SmSetup& s) {
         s.fwd.rows = -1;
         s.bwd.rows = -1;
       },
       "rows"},
      {"ColsNegative", both,
       [](SmSetup& s) {
         s.fwd.cols = -1;
         s.bwd.cols = -1;
       },
       "cols"},
      {"ColsZeroWithRows", both,
       [](SmSetup& s) {
         s.fwd.cols = 0;
         s.bwd.cols = 0;
       },
       "cols"},
      {"ExtentOverflowsThroughRows", both,
       [](SmSetup& s) {
         s.fwd.rows = kHuge;
         s.bwd.rows = kHuge;
       },
       "rows"},
      {"XDtypeOutOfEnum", {F}, [](SmSetup& s) { s.fwd.x_dtype = garbage<DType>(3); }, "x_dtype"},
      {"YDtypeOutOfEnum", {F}, [](SmSetup& s) { s.fwd.y_dtype = garbage<DType>(3); }, "y_dtype"},
      {"XStrideBelowCols", {F}, [](SmSetup& s) { s.fwd.x_row_stride = 3; }, "x_row_stride"},
      {"YStrideNegative", {F}, [](SmSetup& s) { s.fwd.y_row_stride = -8; }, "y_row_stride"},
      {"XExtentOverflowsThroughStride", {F}, [](SmSetup& s) { s.fwd.x_row_stride = kHuge; },
       "x_row_stride"},
      {"XNull", {F}, [](SmSetup& s) { s.fwd.x = nullptr; }, "x"},
      {"YNull", {F}, [](SmSetup& s) { s.fwd.y = nullptr; }, "y"},
      {"YPartiallyOverlapsX", {F}, [](SmSetup& s) { s.fwd.y = s.x.f32() + 4; }, "y"},
      {"YInPlaceWithOtherDtype", {F},
       [](SmSetup& s) {
         s.fwd.y = s.x.data();
         s.fwd.y_dtype = DType::f16;
       },
       "y"},
      // The same byte span: only the dtypes tell the in-place view apart.
      {"YInPlaceWithOtherDtypeOfTheSameSize", {F},
       [](SmSetup& s) {
         s.fwd.x_dtype = DType::f16;
         s.fwd.y = s.x.data();
         s.fwd.y_dtype = DType::bf16;
       },
       "y"},
      {"YInPlaceWithOtherStride", {F},
       [](SmSetup& s) {
         s.fwd.y = s.x.data();
         s.fwd.y_row_stride = 5;
       },
       "y"},
      {"SavedYDtypeOutOfEnum", {B}, [](SmSetup& s) { s.bwd.y_dtype = garbage<DType>(3); },
       "y_dtype"},
      {"DyDtypeOutOfEnum", {B}, [](SmSetup& s) { s.bwd.dy_dtype = garbage<DType>(3); },
       "dy_dtype"},
      {"DxDtypeOutOfEnum", {B}, [](SmSetup& s) { s.bwd.dx_dtype = garbage<DType>(3); },
       "dx_dtype"},
      {"SavedYStrideBelowCols", {B}, [](SmSetup& s) { s.bwd.y_row_stride = 1; },
       "y_row_stride"},
      {"DyStrideBelowCols", {B}, [](SmSetup& s) { s.bwd.dy_row_stride = 2; }, "dy_row_stride"},
      {"DxStrideBelowCols", {B}, [](SmSetup& s) { s.bwd.dx_row_stride = 3; }, "dx_row_stride"},
      {"SavedYNull", {B}, [](SmSetup& s) { s.bwd.y = nullptr; }, "y"},
      {"DyNull", {B}, [](SmSetup& s) { s.bwd.dy = nullptr; }, "dy"},
      {"DxNull", {B}, [](SmSetup& s) { s.bwd.dx = nullptr; }, "dx"},
      {"DxOverlapsSavedY", {B}, [](SmSetup& s) { s.bwd.dx = s.saved_y.f32() + 11; }, "dx"},
      {"DxEqualsSavedY", {B}, [](SmSetup& s) { s.bwd.dx = s.saved_y.data(); }, "dx"},
      {"DxPartiallyOverlapsDy", {B}, [](SmSetup& s) { s.bwd.dx = s.dy.f32() + 1; }, "dx"},
      {"DxInPlaceWithOtherStride", {B},
       [](SmSetup& s) {
         s.bwd.dx = s.dy.data();
         s.bwd.dx_row_stride = 6;
       },
       "dx"},
      {"DxInPlaceWithOtherDtype", {B},
       [](SmSetup& s) {
         s.bwd.dx = s.dy.data();
         s.bwd.dx_dtype = DType::bf16;
       },
       "dx"},
      {"DxInPlaceWithOtherDtypeOfTheSameSize", {B},
       [](SmSetup& s) {
         s.bwd.dy_dtype = DType::bf16;
         s.bwd.dx = s.dy.data();
         s.bwd.dx_dtype = DType::f16;
       },
       "dx"},
  };
}

class SmReject : public ::testing::TestWithParam<RejectParam<SmSetup>> {};
TEST_P(SmReject, NothingWritten) { run_reject(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Api, SmReject, ::testing::ValuesIn(expand(sm_reject_cases())),
                         reject_param_name<SmSetup>);

TEST(SmValidation, BaselineIsValid) {
  run_baseline<SmSetup>(F);
  run_baseline<SmSetup>(B);
}

TEST(SmValidation, ZeroRowsAcceptsNullPointersAndZeroCols) {
  SoftmaxForwardArgs fwd;
  SoftmaxBackwardArgs bwd;
  EXPECT_TRUE(softmax_forward(fwd, {}, {}).ok());
  EXPECT_TRUE(softmax_backward(bwd, {}, {}).ok());
  fwd.cols = 5;
  bwd.cols = 5;
  EXPECT_TRUE(softmax_forward(fwd, {}, {}).ok());
  EXPECT_TRUE(softmax_backward(bwd, {}, {}).ok());
}

// ---- CPU path --------------------------------------------------------------------------------

TEST(SmCpu, UniformRowsAndAllMinusInfinityRows) {
  // A constant row has softmax 1/C and log-softmax -log C; an all -inf row gives 0 and -inf
  // (the header's promise, where PyTorch gives NaN). f32 roundings: rtol 2^-23.
  const float x[2][3] = {{2.5f, 2.5f, 2.5f}, {-INFINITY, -INFINITY, -INFINITY}};
  for (bool log : {false, true}) {
    SCOPED_TRACE(log ? "log_softmax" : "softmax");
    float y[2][3];
    SoftmaxForwardArgs args;
    args.rows = 2;
    args.cols = 3;
    args.x = x;
    args.y = y;
    SoftmaxOptions options;
    options.log = log;
    ASSERT_TRUE(softmax_forward(args, options, {}).ok());
    for (int c = 0; c < 3; ++c) {
      EXPECT_TRUE(close(y[0][c], log ? -std::log(3.0) : 1.0 / 3, rounding_tolerance(DType::f32)));
      EXPECT_EQ(y[1][c], log ? -INFINITY : 0.0f);
    }
  }
}

TEST(SmCpu, InPlaceWithStridesEqualsOutOfPlace) {
  // Bit-identical (same computation), and the padding of the shared buffer survives.
  constexpr std::int64_t rows = 3, cols = 5, stride = 7;
  for (bool log : {false, true}) {
    SCOPED_TRACE(log ? "log_softmax" : "softmax");
    SoftmaxOptions options;
    options.log = log;
    Buffer x(DType::bf16, rows * stride), separate(DType::bf16, rows * stride);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < cols; ++c) x.set(r * stride + c, 0.7 * r - 0.9 * c);
    }
    SoftmaxForwardArgs fwd;
    fwd.rows = rows;
    fwd.cols = cols;
    fwd.x = x.data();
    fwd.x_dtype = fwd.y_dtype = DType::bf16;
    fwd.x_row_stride = fwd.y_row_stride = stride;
    fwd.y = separate.data();
    ASSERT_TRUE(softmax_forward(fwd, options, {}).ok());
    fwd.y = x.data();
    ASSERT_TRUE(softmax_forward(fwd, options, {}).ok());
    EXPECT_TRUE(x.snapshot() == separate.snapshot());
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = cols; c < stride; ++c) EXPECT_TRUE(x.untouched(r * stride + c));
    }

    Buffer dy(DType::f16, rows * stride), dx(DType::f16, rows * stride);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < cols; ++c) dy.set(r * stride + c, 1.0 - 0.25 * c + 0.5 * r);
    }
    SoftmaxBackwardArgs bwd;
    bwd.rows = rows;
    bwd.cols = cols;
    bwd.y = separate.data();
    bwd.y_dtype = DType::bf16;
    bwd.y_row_stride = stride;
    bwd.dy = dy.data();
    bwd.dy_dtype = bwd.dx_dtype = DType::f16;
    bwd.dy_row_stride = bwd.dx_row_stride = stride;
    bwd.dx = dx.data();
    ASSERT_TRUE(softmax_backward(bwd, options, {}).ok());
    bwd.dx = dy.data();
    ASSERT_TRUE(softmax_backward(bwd, options, {}).ok());
    EXPECT_TRUE(dy.snapshot() == dx.snapshot());
  }
}

}  // namespace
