// Activations on Device::cuda beyond their values, which the validation table checks
// (validation/activation.cpp, run by tests/validation): calls on no elements.
#include <gtest/gtest.h>

#include <actloss/activation.h>

#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

TEST(CudaActivation, ZeroElementsWithNullPointers) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  ActivationForwardArgs forward;
  EXPECT_TRUE(activation_forward(forward, {Activation::gelu_erf, 0.01f}, cuda_exec()).ok());
  ActivationBackwardArgs backward;
  EXPECT_TRUE(activation_backward(backward, {Activation::gelu_erf, 0.01f}, cuda_exec()).ok());
  synchronize_or_fail();
}

}  // namespace
}  // namespace actloss::test
