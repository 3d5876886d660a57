// Errors belong to whoever caused them. Data errors (class targets out of range) are recorded
// per device and stream: two streams with bad targets each get their own row back, and taking
// one stream's error leaves the other's. A CUDA error the caller left pending is still pending
// after an actloss call: the library's launches report their own status without taking it.
#include <cstdint>
#include <string>
#include <vector>

#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

// A mean cross-entropy over `rows` rows of 16 classes whose row `bad_row` (if any, -1: none)
// has target 16.
struct BadTargetCall {
  DeviceBuffer logits, targets, loss;
  CrossEntropyArgs args;

  BadTargetCall(std::int64_t rows, std::int64_t bad_row)
      : logits(upload_vector(std::vector<float>(std::size_t(rows * 16), 1.0f))),
        loss(sizeof(float)) {
    std::vector<std::int64_t> labels(static_cast<std::size_t>(rows), 3);
    if (bad_row >= 0) labels[static_cast<std::size_t>(bad_row)] = 16;
    targets = upload_vector(labels);
    args.rows = rows;
    args.classes = 16;
    args.logits = logits.get();
    args.targets = targets.get();
    args.loss = loss.as<float>();
  }
};

Exec on(cudaStream_t stream) {
  Exec exec = cuda_exec();
  exec.stream = stream;
  return exec;
}

TEST(CudaStreamErrors, EachStreamKeepsItsOwnDataError) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const TestStream first, second;
  ASSERT_TRUE(take_device_error(on(first.get())).ok());
  ASSERT_TRUE(take_device_error(on(second.get())).ok());
  BadTargetCall a(9, 4), b(9, 7);
  ASSERT_TRUE(cross_entropy_forward(a.args, CrossEntropyOptions{}, on(first.get())).ok());
  ASSERT_TRUE(cross_entropy_forward(b.args, CrossEntropyOptions{}, on(second.get())).ok());

  // Taken in the other order than they were made: neither may have displaced the other.
  const Status from_second = take_device_error(on(second.get()));
  EXPECT_EQ(from_second.code(), StatusCode::out_of_range);
  EXPECT_NE(from_second.message().find("row 7"), std::string::npos) << from_second.message();
  const Status from_first = take_device_error(on(first.get()));
  EXPECT_EQ(from_first.code(), StatusCode::out_of_range);
  EXPECT_NE(from_first.message().find("row 4"), std::string::npos) << from_first.message();

  // A clean call on one stream finds nothing there while the other still holds its error.
  BadTargetCall c(5, 2);
  ASSERT_TRUE(cross_entropy_forward(c.args, CrossEntropyOptions{}, on(first.get())).ok());
  BadTargetCall clean(5, -1);
  ASSERT_TRUE(cross_entropy_forward(clean.args, CrossEntropyOptions{}, on(second.get())).ok());
  EXPECT_TRUE(take_device_error(on(second.get())).ok());
  EXPECT_EQ(take_device_error(on(first.get())).code(), StatusCode::out_of_range);
  EXPECT_TRUE(take_device_error(on(first.get())).ok()) << "the record was not cleared";
  EXPECT_TRUE(take_device_error(cuda_exec()).ok()) << "the default stream saw another's error";
}

TEST(CudaStreamErrors, ACallerPendingErrorSurvivesACall) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  int devices = 0;
  ASSERT_EQ(cudaGetDeviceCount(&devices), cudaSuccess);
  BadTargetCall call(9, -1);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  // A failed runtime call leaves its error pending until the caller asks for it.
  ASSERT_EQ(cudaSetDevice(devices + 7), cudaErrorInvalidDevice);
  // A reduced loss: several launches (pre-pass, main kernel, finishing kernel).
  const Status status = cross_entropy_forward(call.args, CrossEntropyOptions{}, cuda_exec());
  EXPECT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice) << "the caller's error was taken";
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  synchronize_or_fail();
}

}  // namespace
}  // namespace actloss::test
