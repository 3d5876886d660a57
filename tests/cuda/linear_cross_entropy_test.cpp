// The fused linear cross-entropy on the CPU path and on Device::cuda (chunked cuBLAS GEMMs around
// the cross-entropy kernels), against the unfused composition of the float64 reference written
// out here: the linear layer in double, the reference cross-entropy, the two gradient products.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "host/half.h"
#include "host/reference/reference.h"
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

using Bytes = std::vector<std::uint8_t>;

// Not multiples of 8 (cuBLAS's friendly sizes) nor of each other; strided hidden and gradients.
constexpr std::int64_t kTokens = 37, kHidden = 24, kClasses = 67;
constexpr std::int64_t kHiddenStride = 27, kDHiddenStride = 25, kDWeightStride = 26;

// Unit roundoff of a dtype: the relative error of rounding a real into it.
double unit_roundoff(DType dtype) {
  switch (dtype) {
    case DType::f16: return 0x1p-11;
    case DType::bf16: return 0x1p-8;
    default: return 0x1p-24;
  }
}

Bytes image_of(const std::vector<double>& values, DType dtype) {
  Bytes image(values.size() * static_cast<std::size_t>(dtype_size(dtype)));
  for (std::size_t i = 0; i < values.size(); ++i)
    host::store_from_double(image.data(), dtype, static_cast<std::int64_t>(i), values[i]);
  return image;
}

// rows x cols values laid out with a row stride (the padding poisoned).
Bytes strided_image(const std::vector<double>& dense, std::int64_t rows, std::int64_t cols,
                    std::int64_t stride, DType dtype) {
  Bytes image(static_cast<std::size_t>(rows * stride * dtype_size(dtype)), kPoisonByte);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      host::store_from_double(image.data(), dtype, r * stride + c,
                              dense[static_cast<std::size_t>(r * cols + c)]);
  return image;
}

std::vector<double> read_strided(const Bytes& image, std::int64_t rows, std::int64_t cols,
                                 std::int64_t stride, DType dtype) {
  std::vector<double> dense(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      dense[static_cast<std::size_t>(r * cols + c)] =
          host::load_as_double(image.data(), dtype, r * stride + c);
  return dense;
}

std::vector<float> floats_of(const Bytes& image) {
  std::vector<float> values(image.size() / sizeof(float));
  std::memcpy(values.data(), image.data(), values.size() * sizeof(float));
  return values;
}

struct Case {
  std::string name;
  Reduction reduction = Reduction::mean;
  float smoothing = 0.0f, z_loss = 0.0f, softcap = 0.0f;
  bool class_weight = false, bias = false, upstream = false, ignore_some = false;
  bool all_ignored = false, targets_i32 = false, accumulate = false;
  float grad_scale = 1.0f;
};

std::vector<Case> cases() {
  std::vector<Case> all;
  all.push_back({.name = "mean"});
  all.push_back({.name = "sum_upstream_bias", .reduction = Reduction::sum, .bias = true,
                 .upstream = true, .grad_scale = 0.5f});
  all.push_back({.name = "none_upstream_ignored", .reduction = Reduction::none, .upstream = true,
                 .ignore_some = true, .targets_i32 = true});
  all.push_back({.name = "mean_smoothing_weights_ignored", .smoothing = 0.1f,
                 .class_weight = true, .ignore_some = true});
  all.push_back({.name = "mean_zloss_softcap_bias_accumulate", .z_loss = 1e-3f, .softcap = 3.0f,
                 .bias = true, .upstream = true, .accumulate = true});
  all.push_back({.name = "mean_all_ignored", .all_ignored = true, .accumulate = true});
  return all;
}

// Everything one call reads, as the device holds it, and its float64 expectation.
struct Problem {
  Case c;
  DType dtype = DType::f32;
  DType d_weight_dtype = DType::f32;
  Bytes hidden, weight, bias, targets, class_weight, upstream, d_weight_before, d_bias_before;
  // Dense doubles of what the device holds.
  std::vector<double> h, w, b, held_d_weight, held_d_bias;
  std::vector<std::int64_t> target_index;
  std::vector<double> weights, upstream_values;
};

Problem make_problem(const Case& c, DType dtype, DType d_weight_dtype) {
  Problem p;
  p.c = c;
  p.dtype = dtype;
  p.d_weight_dtype = d_weight_dtype;
  const std::vector<double> h = random_values(kTokens * kHidden, -1, 1, 101);
  const std::vector<double> w = random_values(kClasses * kHidden, -0.6, 0.6, 102);
  p.hidden = strided_image(h, kTokens, kHidden, kHiddenStride, dtype);
  p.h = read_strided(p.hidden, kTokens, kHidden, kHiddenStride, dtype);
  p.weight = image_of(w, dtype);
  p.w = read_strided(p.weight, kClasses, kHidden, kHidden, dtype);
  if (c.bias) {
    p.bias = image_of(random_values(kClasses, -2, 2, 103), dtype);
    p.b = read_strided(p.bias, 1, kClasses, kClasses, dtype);
  }
  const std::vector<double> t = random_values(kTokens, 0, kClasses, 104);
  for (std::int64_t i = 0; i < kTokens; ++i) {
    std::int64_t y = static_cast<std::int64_t>(t[static_cast<std::size_t>(i)]);
    if (c.all_ignored || (c.ignore_some && i % 5 == 2)) y = -100;
    p.target_index.push_back(y);
  }
  p.targets.resize(static_cast<std::size_t>(kTokens * (c.targets_i32 ? 4 : 8)));
  for (std::int64_t i = 0; i < kTokens; ++i) {
    if (c.targets_i32) {
      const auto y = static_cast<std::int32_t>(p.target_index[static_cast<std::size_t>(i)]);
      std::memcpy(p.targets.data() + 4 * i, &y, 4);
    } else {
      std::memcpy(p.targets.data() + 8 * i, &p.target_index[static_cast<std::size_t>(i)], 8);
    }
  }
  if (c.class_weight) {
    p.weights = random_values(kClasses, 0.25, 2, 105);
    std::vector<float> f(p.weights.begin(), p.weights.end());
    p.weights.assign(f.begin(), f.end());
    p.class_weight.resize(f.size() * 4);
    std::memcpy(p.class_weight.data(), f.data(), p.class_weight.size());
  }
  if (c.upstream) {
    const std::int64_t count = c.reduction == Reduction::none ? kTokens : 1;
    std::vector<float> f;
    for (double v : random_values(count, 0.5, 2, 106)) f.push_back(static_cast<float>(v));
    p.upstream_values.assign(f.begin(), f.end());
    p.upstream.resize(f.size() * 4);
    std::memcpy(p.upstream.data(), f.data(), p.upstream.size());
  }
  p.d_weight_before = strided_image(random_values(kClasses * kHidden, -1, 1, 107), kClasses,
                                    kHidden, kDWeightStride, d_weight_dtype);
  p.held_d_weight = read_strided(p.d_weight_before, kClasses, kHidden, kDWeightStride,
                                 d_weight_dtype);
  p.d_bias_before = image_of(random_values(kClasses, -1, 1, 108), d_weight_dtype);
  p.held_d_bias = read_strided(p.d_bias_before, 1, kClasses, kClasses, d_weight_dtype);
  return p;
}

struct Outputs {
  Bytes loss, lse, d_hidden, d_weight, d_bias;
};

// One forward_backward (or forward) call on `device`; chunk 0 lets the library choose.
Status run(Device device, const Problem& p, std::int64_t max_chunk, bool gradients,
           Outputs* out, bool with_workspace = false) {
  const Case& c = p.c;
  const std::int64_t loss_count = c.reduction == Reduction::none ? kTokens : 1;
  Memory hidden(device, p.hidden.size()), weight(device, p.weight.size()),
      bias(device, std::max<std::size_t>(p.bias.size(), 1)), targets(device, p.targets.size()),
      class_weight(device, std::max<std::size_t>(p.class_weight.size(), 1)),
      upstream(device, std::max<std::size_t>(p.upstream.size(), 1)),
      loss(device, static_cast<std::size_t>(loss_count * 4)), lse(device, kTokens * 4),
      d_hidden(device, static_cast<std::size_t>(kTokens * kDHiddenStride * dtype_size(p.dtype))),
      d_weight(device, p.d_weight_before.size()), d_bias(device, p.d_bias_before.size());
  hidden.upload(p.hidden);
  weight.upload(p.weight);
  targets.upload(p.targets);
  if (c.bias) bias.upload(p.bias);
  if (c.class_weight) class_weight.upload(p.class_weight);
  if (c.upstream) upstream.upload(p.upstream);
  d_weight.upload(p.d_weight_before);
  d_bias.upload(p.d_bias_before);

  LinearCrossEntropyArgs args;
  args.tokens = kTokens;
  args.hidden_size = kHidden;
  args.classes = kClasses;
  args.dtype = p.dtype;
  args.hidden = hidden.get();
  args.hidden_row_stride = kHiddenStride;
  args.weight = weight.get();
  args.bias = c.bias ? bias.get() : nullptr;
  args.targets = targets.get();
  args.target_kind = c.targets_i32 ? TargetKind::class_index_i32 : TargetKind::class_index_i64;
  args.class_weight = c.class_weight ? static_cast<const float*>(class_weight.get()) : nullptr;
  args.loss = static_cast<float*>(loss.get());
  args.lse = static_cast<float*>(lse.get());
  args.d_hidden = d_hidden.get();
  args.d_hidden_row_stride = kDHiddenStride;
  args.d_weight = d_weight.get();
  args.d_weight_row_stride = kDWeightStride;
  args.d_bias = c.bias ? d_bias.get() : nullptr;
  args.d_weight_dtype = p.d_weight_dtype;
  args.accumulate = c.accumulate;
  args.grad_scale = c.grad_scale;
  args.upstream_grad = c.upstream ? static_cast<const float*>(upstream.get()) : nullptr;
  LinearCrossEntropyOptions options;
  options.loss.reduction = c.reduction;
  options.loss.label_smoothing = c.smoothing;
  options.loss.z_loss = c.z_loss;
  options.loss.softcap = c.softcap;
  options.max_chunk_tokens = max_chunk;
  Exec exec;
  exec.device = device;
  std::size_t workspace_bytes = 0;
  if (Status s = linear_cross_entropy_workspace_size(args, options, exec, &workspace_bytes);
      !s.ok())
    return s;
  Memory workspace(device, std::max<std::size_t>(workspace_bytes, 1));
  if (with_workspace && device == Device::cuda)
    exec.workspace = Workspace{workspace.get(), workspace_bytes};
  const Status status = gradients ? linear_cross_entropy_forward_backward(args, options, exec)
                                  : linear_cross_entropy_forward(args, options, exec);
  if (device == Device::cuda) synchronize_or_fail();
  out->loss = loss.download();
  out->lse = lse.download();
  out->d_hidden = d_hidden.download();
  out->d_weight = d_weight.download();
  out->d_bias = d_bias.download();
  return status;
}

// |got - want| <= tol, NaN exactly where the reference is NaN.
void expect_within(double got, double want, double tol, const std::string& what) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what << ": " << got;
    return;
  }
  EXPECT_LE(std::fabs(got - want), tol) << what << ": got " << got << ", want " << want
                                        << ", tolerance " << tol;
}

// Compares a call's outputs with the float64 composition. The tolerances follow the error
// analysis of the fused path:
//  * logits: a float32 GEMM of exact products, so token r's logits are within
//    delta_r = (D + 2) 2^-24 max_c (sum_d |h_rd w_cd| + |b_c|) (accumulation, and the bias
//    added in float);
//  * a row's loss moves by at most |d loss / d logits|_1 delta_r <= 2 (max_w + 2 z |lse|) delta_r,
//    plus the cross-entropy kernel's own 2^-20 relative;
//  * each logit gradient carries its dtype's rounding u_g, the kernel's 2^-20, and the change of
//    the probabilities under delta_r, |dp_c| <= 2 delta_r p_c, times the row's multiplier s_r
//    (grad_scale upstream / denominator) and A <= max_w + 2 z |lse|;
//  * the gradient GEMMs add float accumulation over their inner dimension (k 2^-24 of the sum of
//    absolute products) and the output dtype's rounding of the result.
void check(const Problem& p, const Outputs& out, bool gradients, std::int64_t chunk_for_trace) {
  SCOPED_TRACE("chunk " + std::to_string(chunk_for_trace));
  const Case& c = p.c;
  const std::int64_t N = kTokens, D = kHidden, V = kClasses;
  ref::CrossEntropyProblem ce;
  ce.rows = N;
  ce.classes = V;
  ce.logits = ref::linear_forward(N, D, V, p.h, p.w, p.b);
  ce.target_index = p.target_index;
  ce.class_weight = p.weights;
  ce.label_smoothing = c.smoothing;
  ce.z_loss = c.z_loss;
  ce.softcap = c.softcap;
  ce.reduction = c.reduction == Reduction::none ? ref::Reduction::none
                 : c.reduction == Reduction::sum ? ref::Reduction::sum
                                                 : ref::Reduction::mean;
  ce.grad_scale = c.grad_scale;
  ce.upstream = p.upstream_values;
  const ref::CrossEntropyResult want = ref::cross_entropy(ce);

  double max_weight = 1.0;
  for (double w : p.weights) max_weight = std::max(max_weight, w);
  std::vector<double> delta(static_cast<std::size_t>(N)), slope(delta.size()),
      multiplier(delta.size());
  for (std::int64_t r = 0; r < N; ++r) {
    double largest = 0.0;
    for (std::int64_t v = 0; v < V; ++v) {
      double sum = p.b.empty() ? 0.0 : std::fabs(p.b[static_cast<std::size_t>(v)]);
      for (std::int64_t d = 0; d < D; ++d)
        sum += std::fabs(p.h[static_cast<std::size_t>(r * D + d)] *
                         p.w[static_cast<std::size_t>(v * D + d)]);
      largest = std::max(largest, sum);
    }
    const auto i = static_cast<std::size_t>(r);
    delta[i] = (D + 2) * 0x1p-24 * largest;
    slope[i] = max_weight + 2 * c.z_loss * std::fabs(want.lse[i]);
    const double up = p.upstream_values.empty()
                          ? 1.0
                          : p.upstream_values[c.reduction == Reduction::none ? i : 0];
    const double denominator =
        c.reduction == Reduction::mean ? (want.weight_sum == 0 ? 1.0 : want.weight_sum) : 1.0;
    multiplier[i] = std::fabs(c.grad_scale * up / denominator);
  }

  const std::vector<float> loss = floats_of(out.loss), lse = floats_of(out.lse);
  if (c.reduction == Reduction::none) {
    for (std::int64_t r = 0; r < N; ++r) {
      const auto i = static_cast<std::size_t>(r);
      expect_within(loss[i], want.row_loss[i],
                    0x1p-20 * std::fabs(want.row_loss[i]) + 2 * slope[i] * delta[i],
                    "row loss " + std::to_string(r));
    }
  } else {
    double tol = 0.0;
    for (std::int64_t r = 0; r < N; ++r) {
      const auto i = static_cast<std::size_t>(r);
      tol += 0x1p-20 * std::fabs(want.row_loss[i]) + 2 * slope[i] * delta[i];
    }
    if (c.reduction == Reduction::mean && want.weight_sum != 0) tol /= want.weight_sum;
    expect_within(loss[0], want.loss, tol + 0x1p-21 * std::fabs(want.loss), "loss");
  }
  for (std::int64_t r = 0; r < N; ++r) {
    const auto i = static_cast<std::size_t>(r);
    expect_within(lse[i], want.lse[i], delta[i] + 0x1p-21 * std::fabs(want.lse[i]),
                  "lse " + std::to_string(r));
  }
  if (!gradients) return;

  const ref::LinearGradients grads = ref::linear_backward(N, D, V, p.h, p.w, want.grad);
  const double u_grad = unit_roundoff(p.dtype) + 0x1p-20;
  const double u_hidden = unit_roundoff(p.dtype), u_weight = unit_roundoff(p.d_weight_dtype);
  const std::vector<double> d_hidden = read_strided(out.d_hidden, N, D, kDHiddenStride, p.dtype);
  for (std::int64_t r = 0; r < N; ++r) {
    for (std::int64_t d = 0; d < D; ++d) {
      double products = 0.0, weights = 0.0;
      for (std::int64_t v = 0; v < V; ++v) {
        const double w = std::fabs(p.w[static_cast<std::size_t>(v * D + d)]);
        products += std::fabs(want.grad[static_cast<std::size_t>(r * V + v)]) * w;
        weights = std::max(weights, w);
      }
      const auto i = static_cast<std::size_t>(r);
      const double want_value = grads.d_input[static_cast<std::size_t>(r * D + d)];
      const double tol = u_hidden * std::fabs(want_value) + (u_grad + V * 0x1p-24) * products +
                         2 * delta[i] * multiplier[i] * slope[i] * weights;
      expect_within(d_hidden[static_cast<std::size_t>(r * D + d)], want_value, tol * 1.01,
                    "d_hidden " + std::to_string(r) + "," + std::to_string(d));
    }
  }
  const std::vector<double> d_weight =
      read_strided(out.d_weight, V, D, kDWeightStride, p.d_weight_dtype);
  for (std::int64_t v = 0; v < V; ++v) {
    for (std::int64_t d = 0; d < D; ++d) {
      double products = 0.0, shift = 0.0;
      for (std::int64_t r = 0; r < N; ++r) {
        const auto i = static_cast<std::size_t>(r);
        const double h = std::fabs(p.h[static_cast<std::size_t>(r * D + d)]);
        products += std::fabs(want.grad[static_cast<std::size_t>(r * V + v)]) * h;
        shift += 2 * delta[i] * multiplier[i] * slope[i] * h;
      }
      const auto k = static_cast<std::size_t>(v * D + d);
      const double held = c.accumulate ? p.held_d_weight[k] : 0.0;
      const double want_value = grads.d_weight[k] + held;
      // A 16-bit d_weight rounds once per chunk (each GEMM's beta = 1 update).
      const double tol = u_weight * (std::fabs(want_value) + products + std::fabs(held)) *
                             static_cast<double>(chunk_for_trace > 0 ? (N + chunk_for_trace - 1) /
                                                                           chunk_for_trace
                                                                     : 1) +
                         (u_grad + N * 0x1p-24) * products + shift + 0x1p-24 * std::fabs(held);
      expect_within(d_weight[k], want_value, tol * 1.01,
                    "d_weight " + std::to_string(v) + "," + std::to_string(d));
    }
  }
  if (c.bias) {
    const std::vector<double> d_bias = read_strided(out.d_bias, 1, V, V, p.d_weight_dtype);
    for (std::int64_t v = 0; v < V; ++v) {
      double magnitude = 0.0, shift = 0.0;
      for (std::int64_t r = 0; r < N; ++r) {
        const auto i = static_cast<std::size_t>(r);
        magnitude += std::fabs(want.grad[static_cast<std::size_t>(r * V + v)]);
        shift += 2 * delta[i] * multiplier[i] * slope[i];
      }
      const auto k = static_cast<std::size_t>(v);
      const double held = c.accumulate ? p.held_d_bias[k] : 0.0;
      const double want_value = grads.d_bias[k] + held;
      const double tol = u_weight * std::fabs(want_value) + u_grad * magnitude + shift +
                         0x1p-24 * (std::fabs(held) + magnitude);
      expect_within(d_bias[k], want_value, tol * 1.01, "d_bias " + std::to_string(v));
    }
  }
}

class LinearCrossEntropy : public testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam() == Device::cuda) ACTLOSS_REQUIRE_CUDA_DEVICE();
  }
};

TEST_P(LinearCrossEntropy, EveryOptionMatchesTheUnfusedReference) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    for (DType dtype : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(to_string(dtype));
      const Problem p = make_problem(c, dtype, DType::f32);
      // 0: the library's choice (the whole batch here); 10 does not divide 37.
      for (std::int64_t chunk : {0, 1, 10}) {
        Outputs out;
        ASSERT_TRUE(run(GetParam(), p, chunk, true, &out).ok());
        check(p, out, true, chunk);
      }
    }
  }
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
