// Vocabulary functions of types.h, take_device_error on CPU, the build without CUDA, and the
// optional throwing layer.
#include <gtest/gtest.h>

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
