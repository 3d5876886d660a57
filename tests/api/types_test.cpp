// Vocabulary functions of types.h, take_device_error on CPU, the build without CUDA, and the
// optional throwing layer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include <actloss/actloss.h>
#include <actloss/throwing.h>

#include "tests/api/test_util.h"

namespace {

using namespace actloss;
using api_test::expect_status;

using api_test::garbage;

TEST(Types, ToStringNamesEveryEnumerator) {
  EXPECT_STREQ(to_string(DType::f32), "f32");
  EXPECT_STREQ(to_string(DType::f16), "f16");
  EXPECT_STREQ(to_string(DType::bf16), "bf16");
  EXPECT_STREQ(to_string(Reduction::none), "none");
  EXPECT_STREQ(to_string(Reduction::sum), "sum");
  EXPECT_STREQ(to_string(Reduction::mean), "mean");
  EXPECT_STREQ(to_string(Device::cpu), "cpu");
  EXPECT_STREQ(to_string(Device::cuda), "cuda");
  EXPECT_STREQ(to_string(Device::reference), "reference");
  EXPECT_STREQ(to_string(StatusCode::ok), "ok");
  EXPECT_STREQ(to_string(StatusCode::invalid_argument), "invalid_argument");
  EXPECT_STREQ(to_string(StatusCode::out_of_range), "out_of_range");
  EXPECT_STREQ(to_string(StatusCode::unsupported), "unsupported");
  EXPECT_STREQ(to_string(StatusCode::cuda_error), "cuda_error");
  EXPECT_STREQ(to_string(StatusCode::internal), "internal");
  EXPECT_STREQ(to_string(Activation::relu), "relu");
  EXPECT_STREQ(to_string(Activation::leaky_relu), "leaky_relu");
  EXPECT_STREQ(to_string(Activation::tanh), "tanh");
  EXPECT_STREQ(to_string(Activation::sigmoid), "sigmoid");
  EXPECT_STREQ(to_string(Activation::gelu_erf), "gelu_erf");
  EXPECT_STREQ(to_string(Activation::gelu_tanh), "gelu_tanh");
  EXPECT_STREQ(to_string(Activation::silu), "silu");
}

TEST(Types, ToStringOfAValueOutsideTheEnumIsStillAString) {
  EXPECT_NE(to_string(garbage<DType>(77)), nullptr);
  EXPECT_NE(std::string(to_string(garbage<Reduction>(77))), "");
  EXPECT_NE(std::string(to_string(garbage<Device>(77))), "");
  EXPECT_NE(std::string(to_string(garbage<StatusCode>(77))), "");
  EXPECT_NE(std::string(to_string(garbage<Activation>(77))), "");
}

TEST(Types, DtypeSize) {
  EXPECT_EQ(dtype_size(DType::f32), 4);
  EXPECT_EQ(dtype_size(DType::f16), 2);
  EXPECT_EQ(dtype_size(DType::bf16), 2);
  EXPECT_EQ(dtype_size(garbage<DType>(3)), 0);
}

TEST(Types, BuildInfoNamesVersionAndBackends) {
  const std::string info = build_info();
  EXPECT_EQ(info.rfind("actloss 0.1.0 (cpu", 0), 0u) << info;
  EXPECT_EQ(info.find("cuda") != std::string::npos, cuda_backend_built()) << info;
}

TEST(Types, DefaultStatusIsOk) {
  const Status status;
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::ok);
  EXPECT_EQ(status.argument(), "");
}

TEST(TakeDeviceError, CpuWithoutRecordIsOk) {
  const Status status = take_device_error(Exec{});
  EXPECT_TRUE(status.ok()) << status.message();
}

TEST(TakeDeviceError, CpuWithEmptyRecordIsOk) {
  DeviceError record;
  Exec exec;
  exec.device_error = &record;
  EXPECT_TRUE(take_device_error(exec).ok());
}

TEST(TakeDeviceError, CpuConvertsAndClearsTheRecord) {
  DeviceError record;
  record.code = static_cast<std::int32_t>(StatusCode::out_of_range);
  record.argument = static_cast<std::int32_t>(detail::DeviceErrorArgument::targets);
  record.index = 12;
  record.value = -7;
  Exec exec;
  exec.device_error = &record;
  const Status status = take_device_error(exec);
  expect_status(status, StatusCode::out_of_range, "targets");
  EXPECT_NE(status.message().find("row 12"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("-7"), std::string::npos) << status.message();
  EXPECT_EQ(record.code, 0);
  EXPECT_EQ(record.argument, 0);
  EXPECT_EQ(record.index, 0);
  EXPECT_EQ(record.value, 0);
  EXPECT_TRUE(take_device_error(exec).ok()) << "the record is read once";
}

TEST(TakeDeviceError, UnknownCodeIsReportedAsInternal) {
  DeviceError record;
  record.code = 99;
  Exec exec;
  exec.device_error = &record;
  const Status status = take_device_error(exec);
  EXPECT_EQ(status.code(), StatusCode::internal);
  EXPECT_EQ(status.argument(), "");
  EXPECT_EQ(record.code, 0);
}

// Device::reference runs every op family on host memory, as the float64 oracle, and the CPU
// backend agrees with it to float32 accuracy. Each call also goes through the checks that branch
// on the device (memory, workspace), which must treat reference as host memory.
TEST(ReferenceDevice, EveryOpFamilyRunsAndAgreesWithTheCpuPath) {
  constexpr std::int64_t kRows = 3, kCols = 5, kHidden = 4;
  const float x[kRows * kCols] = {0.5f, -1, 2, 3, -4, 0.25f, 8, -2, 1, 0, -0.5f, 1.5f, 7, -3, 2};
  const std::int64_t labels[kRows] = {1, 4, 0};
  const float w[kCols * kHidden] = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f, 0.7f, -0.8f, 0.9f, 1.0f,
                                    -0.1f, 0.2f, 0.3f, -0.4f, 0.5f, 0.6f, -0.7f, 0.8f, 0.9f, -1.0f};
  const float* hidden = x;  // [kRows x kHidden] with row stride kCols
  struct Outputs {
    float ce_loss = 0, ce_grad[kRows * kCols] = {}, probs[kRows * kCols] = {};
    float act[kRows * kCols] = {}, bce_loss = 0, mse_loss = 0, linear_loss = 0;
    float d_hidden[kRows * kHidden] = {}, d_weight[kCols * kHidden] = {};
  };
  const auto run_all = [&](Device device, Outputs& out) {
    Exec exec;
    exec.device = device;
    CrossEntropyArgs ce;
    ce.rows = kRows;
    ce.classes = kCols;
    ce.logits = x;
    ce.targets = labels;
    ce.loss = &out.ce_loss;
    ce.grad = out.ce_grad;
    ASSERT_TRUE(cross_entropy_forward_backward(ce, {}, exec).ok());
    SoftmaxForwardArgs softmax;
    softmax.rows = kRows;
    softmax.cols = kCols;
    softmax.x = x;
    softmax.y = out.probs;
    ASSERT_TRUE(softmax_forward(softmax, {}, exec).ok());
    ActivationForwardArgs act;
    act.n = kRows * kCols;
    act.x = x;
    act.y = out.act;
    ActivationOptions gelu;
    gelu.activation = Activation::gelu_erf;
    ASSERT_TRUE(activation_forward(act, gelu, exec).ok());
    BceArgs bce;
    bce.rows = kRows;
    bce.cols = kCols;
    bce.logits = x;
    bce.targets = out.probs;
    bce.loss = &out.bce_loss;
    ASSERT_TRUE(bce_with_logits_forward(bce, {}, exec).ok());
    MseArgs mse;
    mse.n = kRows * kCols;
    mse.input = x;
    mse.target = out.probs;
    mse.loss = &out.mse_loss;
    ASSERT_TRUE(mse_forward(mse, {}, exec).ok());
    LinearCrossEntropyArgs linear;
    linear.tokens = kRows;
    linear.hidden_size = kHidden;
    linear.classes = kCols;
    linear.hidden = hidden;
    linear.hidden_row_stride = kCols;
    linear.weight = w;
    linear.targets = labels;
    linear.loss = &out.linear_loss;
    linear.d_hidden = out.d_hidden;
    linear.d_weight = out.d_weight;
    std::size_t workspace = 1;
    ASSERT_TRUE(linear_cross_entropy_workspace_size(linear, {}, exec, &workspace).ok());
    EXPECT_EQ(workspace, 0u);  // the host paths need none
    ASSERT_TRUE(linear_cross_entropy_forward_backward(linear, {}, exec).ok());
  };
  Outputs cpu, reference;
  run_all(Device::cpu, cpu);
  run_all(Device::reference, reference);
  // Every output is a float; the CPU backend computes in float32 what the reference computes in
  // float64, a handful of roundings of 2^-24 each per value (and the reference's own rounding to
  // float): 1e-5 relative, with 1e-6 absolute for values near 0 (gradients, probabilities of a
  // few classes), is far tighter than any wrong formula would land.
  static_assert(sizeof(Outputs) % sizeof(float) == 0);
  constexpr std::size_t kValues = sizeof(Outputs) / sizeof(float);
  float got[kValues], want[kValues];
  std::memcpy(got, &cpu, sizeof cpu);
  std::memcpy(want, &reference, sizeof reference);
  for (std::size_t i = 0; i < kValues; ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-6 + 1e-5 * std::fabs(want[i])) << "output value " << i;
  }
  EXPECT_GT(reference.ce_loss, 0.0f);
  EXPECT_GT(reference.linear_loss, 0.0f);
}

TEST(TakeDeviceError, InvalidDeviceIsRejected) {
  Exec exec;
  exec.device = garbage<Device>(9);
  expect_status(take_device_error(exec), StatusCode::invalid_argument, "exec.device");
}

TEST(TakeDeviceError, CudaWithoutBackendIsUnsupported) {
  if (cuda_backend_built()) GTEST_SKIP() << "CUDA backend built; covered by the CUDA tests";
  Exec exec;
  exec.device = Device::cuda;
  expect_status(take_device_error(exec), StatusCode::unsupported, "exec.device");
}

TEST(Throwing, CheckPassesOkThrough) { EXPECT_NO_THROW(check(Status{})); }

TEST(Throwing, CheckThrowsErrorCarryingTheStatus) {
  MseArgs args;
  args.n = -1;
  try {
    check(mse_forward(args, MseOptions{}, Exec{}));
    FAIL() << "no exception";
  } catch (const Error& error) {
    EXPECT_EQ(error.status().code(), StatusCode::invalid_argument);
    EXPECT_EQ(error.status().argument(), "n");
    EXPECT_EQ(std::string(error.what()), error.status().message());
  }
}

TEST(Throwing, ErrorIsARuntimeError) {
  EXPECT_THROW(check(Status(StatusCode::internal, "", "boom")), std::runtime_error);
}

}  // namespace
