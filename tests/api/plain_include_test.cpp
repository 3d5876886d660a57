// The public headers are plain C++20: including all of them must not drag in a CUDA header, so
// that host-only code builds against actloss without the toolkit on its include path.
#include <actloss/actloss.h>
#include <actloss/throwing.h>

#if defined(__CUDACC__) || defined(CUDART_VERSION) || defined(__CUDA_RUNTIME_H__) || \
    defined(__cuda_cuda_h__) || defined(__CUDA_FP16_H__) || defined(__CUDA_BF16_H__)
#error "an actloss public header included a CUDA header"
#endif

#include <gtest/gtest.h>

#include <type_traits>

namespace {

// Stream is the same type as cudaStream_t without needing the runtime's declaration of it.
static_assert(std::is_same_v<actloss::Stream, CUstream_st*>);
static_assert(actloss::relu_mask_words(0) == 0);
static_assert(actloss::relu_mask_words(1) == 1);
static_assert(actloss::relu_mask_words(32) == 1);
static_assert(actloss::relu_mask_words(33) == 2);
static_assert(actloss::dtype_size(actloss::DType::bf16) == 2);

TEST(PlainCxx, DefaultsAreUsable) {
  const actloss::Exec exec;
  EXPECT_EQ(exec.device, actloss::Device::cpu);
  EXPECT_EQ(exec.stream, nullptr);
  EXPECT_EQ(exec.device_error, nullptr);
  const actloss::CrossEntropyOptions options;
  EXPECT_EQ(options.reduction, actloss::Reduction::mean);
  EXPECT_EQ(options.ignore_index, -100);
}

}  // namespace
