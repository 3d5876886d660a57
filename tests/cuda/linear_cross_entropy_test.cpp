// The fused linear cross-entropy on the CPU path and on Device::cuda (chunked cuBLAS GEMMs around
// the cross-entropy kernels), against the float64 oracle of linear_cross_entropy_support.h (the
// unfused composition: the linear layer in double, the reference cross-entropy, the two gradient
// products), within the tolerances that file derives for the unsharded call.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "tests/cuda/linear_cross_entropy_support.h"
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

using namespace linear_ce;  // NOLINT(google-build-using-namespace): this file's vocabulary

struct Outputs {
  Bytes loss, lse, d_hidden, d_weight, d_bias;
};

// One forward_backward (or forward) call on `device`; chunk 0 lets the library choose.
Status run(Device device, const Problem& p, std::int64_t max_chunk, bool gradients,
           Outputs* out, bool with_workspace = false) {
  Tensors t(device, p, 0, kClasses, kDHiddenStride);
  const LinearCrossEntropyOptions options = options_of(p.c, max_chunk);
  Exec exec;
  exec.device = device;
  std::size_t workspace_bytes = 0;
  if (Status s = linear_cross_entropy_workspace_size(t.args, options, exec, &workspace_bytes);
      !s.ok())
    return s;
  Memory workspace(device, std::max<std::size_t>(workspace_bytes, 1));
  if (with_workspace && device == Device::cuda)
    exec.workspace = Workspace{workspace.get(), workspace_bytes};
  const Status status = gradients ? linear_cross_entropy_forward_backward(t.args, options, exec)
                                  : linear_cross_entropy_forward(t.args, options, exec);
  if (device == Device::cuda) synchronize_or_fail();
  out->loss = t.loss.download();
  out->lse = t.lse.download();
  out->d_hidden = t.d_hidden.download();
  out->d_weight = t.d_weight.download();
  out->d_bias = t.d_bias.download();
  return status;
}

// Compares a call's outputs with the oracle, within the unsharded call's tolerances.
void check(const Problem& p, const Outputs& out, bool gradients, std::int64_t chunk_for_trace) {
  SCOPED_TRACE("chunk " + std::to_string(chunk_for_trace));
  const Oracle o = oracle_of(p);
  check_loss(p, o, kUnsharded, out.loss, out.lse);
  if (!gradients) return;
  check_d_hidden(p, o, kUnsharded, {0, kClasses},
                 read_strided(out.d_hidden, kTokens, kHidden, kDHiddenStride, p.dtype), 1.0,
                 "d_hidden");
  const std::int64_t chunks =
      chunk_for_trace > 0 ? (kTokens + chunk_for_trace - 1) / chunk_for_trace : 1;
  check_weight_rows(p, o, kUnsharded, 0, kClasses, out.d_weight, out.d_bias, chunks,
                    "the whole vocabulary's");
}

class LinearCrossEntropy : public OnDevice {};

TEST_P(LinearCrossEntropy, EveryOptionMatchesTheUnfusedReference) {
  for_every_case([&](const Problem& p) {
    // 0: the library's choice (the whole batch here); 10 does not divide 37.
    for (std::int64_t chunk : {0, 1, 10}) {
      Outputs out;
      const Status status = run(GetParam(), p, chunk, true, &out);
      EXPECT_TRUE(status.ok()) << status.message();
      if (!status.ok()) return false;
      check(p, out, true, chunk);
    }
    return true;
  });
}

TEST_P(LinearCrossEntropy, ForwardOnlyWritesLossAndLse) {
  for (Reduction reduction : {Reduction::mean, Reduction::sum, Reduction::none}) {
    Case c{.name = "forward", .reduction = reduction, .bias = true, .ignore_some = true};
    const Problem p = make_problem(c, DType::bf16, DType::f32);
    for (std::int64_t chunk : {0, 8}) {
      Outputs out;
      ASSERT_TRUE(run(GetParam(), p, chunk, false, &out).ok());
      check(p, out, false, chunk);
      // The gradients' buffers are not touched.
      EXPECT_EQ(out.d_weight, p.d_weight_before);
    }
  }
}

TEST_P(LinearCrossEntropy, SixteenBitWeightGradient) {
  const Case c{.name = "bf16 d_weight", .bias = true, .accumulate = true};
  const Problem p = make_problem(c, DType::bf16, DType::bf16);
  for (std::int64_t chunk : {0, 16}) {
    Outputs out;
    ASSERT_TRUE(run(GetParam(), p, chunk, true, &out).ok());
    check(p, out, true, chunk);
  }
}

TEST_P(LinearCrossEntropy, SameBitsEveryRunWithOrWithoutWorkspace) {
  const Case c{.name = "mean", .smoothing = 0.05f, .class_weight = true, .bias = true,
               .ignore_some = true};
  const Problem p = make_problem(c, DType::bf16, DType::f32);
  Outputs first, again, with_workspace;
  ASSERT_TRUE(run(GetParam(), p, 10, true, &first).ok());
  ASSERT_TRUE(run(GetParam(), p, 10, true, &again).ok());
  ASSERT_TRUE(run(GetParam(), p, 10, true, &with_workspace, true).ok());
  for (const Outputs* other : {&again, &with_workspace}) {
    EXPECT_EQ(first.loss, other->loss);
    EXPECT_EQ(first.lse, other->lse);
    EXPECT_EQ(first.d_hidden, other->d_hidden);
    EXPECT_EQ(first.d_weight, other->d_weight);
    EXPECT_EQ(first.d_bias, other->d_bias);
  }
}

TEST_P(LinearCrossEntropy, NoTokensGiveZeroLossAndZeroWeightGradients) {
  const Device device = GetParam();
  Memory d_weight(device, kClasses * kHidden * 4), d_bias(device, kClasses * 4),
      loss(device, 4);
  LinearCrossEntropyArgs args;
  args.hidden_size = kHidden;
  args.classes = kClasses;
  args.d_weight = d_weight.get();
  args.d_bias = d_bias.get();
  args.loss = static_cast<float*>(loss.get());
  Exec exec;
  exec.device = device;
  ASSERT_TRUE(linear_cross_entropy_forward_backward(args, {}, exec).ok());
  if (device == Device::cuda) synchronize_or_fail();
  for (float v : floats_of(d_weight.download())) EXPECT_EQ(v, 0.0f);
  for (float v : floats_of(d_bias.download())) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(floats_of(loss.download())[0], 0.0f);
}

TEST_P(LinearCrossEntropy, BadArgumentsAreNamedAndNothingIsWritten) {
  const Problem p = make_problem(Case{.name = "mean", .bias = true}, DType::f32, DType::f32);
  struct Mistake {
    const char* argument;
    void (*apply)(LinearCrossEntropyArgs&, LinearCrossEntropyOptions&);
  };
  const Mistake mistakes[] = {
      {"tokens", [](LinearCrossEntropyArgs& a, LinearCrossEntropyOptions&) { a.tokens = -1; }},
      {"hidden_row_stride",
       [](LinearCrossEntropyArgs& a, LinearCrossEntropyOptions&) { a.hidden_row_stride = 3; }},
      {"target_kind",
       [](LinearCrossEntropyArgs& a, LinearCrossEntropyOptions&) {
         a.target_kind = TargetKind::probabilities;
       }},
      {"d_weight_dtype",
       [](LinearCrossEntropyArgs& a, LinearCrossEntropyOptions&) {
         a.d_weight_dtype = DType::bf16;
       }},
      {"d_bias", [](LinearCrossEntropyArgs& a, LinearCrossEntropyOptions&) { a.d_bias = nullptr; }},
      {"d_weight",
       [](LinearCrossEntropyArgs& a, LinearCrossEntropyOptions&) {
         a.d_weight = const_cast<void*>(a.weight);  // the gradient over its own weight
       }},
      {"options.loss.label_smoothing",
       [](LinearCrossEntropyArgs&, LinearCrossEntropyOptions& o) {
         o.loss.label_smoothing = 2.0f;
       }},
      {"options.chunk_bytes",
       [](LinearCrossEntropyArgs&, LinearCrossEntropyOptions& o) { o.chunk_bytes = 16; }},
      {"grad_scale",
       [](LinearCrossEntropyArgs& a, LinearCrossEntropyOptions&) {
         a.grad_scale = std::numeric_limits<float>::infinity();
       }},
  };
  const Device device = GetParam();
  for (const Mistake& mistake : mistakes) {
    SCOPED_TRACE(mistake.argument);
    Memory hidden(device, p.hidden.size()), weight(device, p.weight.size()),
        bias(device, p.bias.size()), targets(device, p.targets.size()), loss(device, 4),
        d_hidden(device, kTokens * kDHiddenStride * 4), d_weight(device, p.d_weight_before.size()),
        d_bias(device, p.d_bias_before.size());
    hidden.upload(p.hidden);
    weight.upload(p.weight);
    bias.upload(p.bias);
    targets.upload(p.targets);
    LinearCrossEntropyArgs args;
    args.tokens = kTokens;
    args.hidden_size = kHidden;
    args.classes = kClasses;
    args.hidden = hidden.get();
    args.hidden_row_stride = kHiddenStride;
    args.weight = weight.get();
    args.bias = bias.get();
    args.targets = targets.get();
    args.loss = static_cast<float*>(loss.get());
    args.d_hidden = d_hidden.get();
    args.d_hidden_row_stride = kDHiddenStride;
    args.d_weight = d_weight.get();
    args.d_weight_row_stride = kDWeightStride;
    args.d_bias = d_bias.get();
    LinearCrossEntropyOptions options;
    mistake.apply(args, options);
    Exec exec;
    exec.device = device;
    const Status status = linear_cross_entropy_forward_backward(args, options, exec);
    EXPECT_EQ(status.code(), StatusCode::invalid_argument) << status.message();
    EXPECT_EQ(status.argument(), mistake.argument) << status.message();
    if (device == Device::cuda) synchronize_or_fail();
    const Bytes untouched_weight = weight.download();
    EXPECT_EQ(untouched_weight, p.weight);
    for (const Memory* output : {&loss, &d_hidden, &d_weight, &d_bias}) {
      for (std::uint8_t byte : output->download()) ASSERT_EQ(byte, kPoisonByte);
    }
  }
}

TEST_P(LinearCrossEntropy, OutOfRangeTargetIsReported) {
  Case c{.name = "bad target"};
  Problem p = make_problem(c, DType::f32, DType::f32);
  const std::int64_t bad = kClasses + 3;
  std::memcpy(p.targets.data() + 8 * 4, &bad, 8);
  Outputs out;
  const Status status = run(GetParam(), p, 10, true, &out);
  if (GetParam() == Device::cpu) {
    EXPECT_EQ(status.code(), StatusCode::out_of_range);
    EXPECT_EQ(status.argument(), "targets");
    return;
  }
  ASSERT_TRUE(status.ok()) << status.message();
  // The loss (a mean: every token's denominator) is NaN, and the error waits for the caller.
  EXPECT_TRUE(std::isnan(floats_of(out.loss)[0]));
  Exec exec = cuda_exec();
  const Status error = take_device_error(exec);
  EXPECT_EQ(error.code(), StatusCode::out_of_range) << error.message();
}

INSTANTIATE_TEST_SUITE_P(Devices, LinearCrossEntropy, testing::Values(Device::cpu, Device::cuda),
                         testing::PrintToStringParamName());

}  // namespace
}  // namespace actloss::test
