// What the tests of the fused linear cross-entropy share: the unsharded call's
// (linear_cross_entropy_test here) and the vocabulary-parallel one's
// (linear_cross_entropy_shard_test here, tests/nccl/linear_cross_entropy_test.cpp). A problem over
// the whole vocabulary as the devices hold it, under the option sets every test runs; one call's
// tensors for a range of its classes (all of them for the unsharded call, a shard's otherwise);
// the float64 oracle of the whole vocabulary, the unfused composition (the linear layer in
// double, the reference cross-entropy, the two gradient products); and the comparisons with their
// tolerances.
//
// The tolerances follow the error analysis of the fused path:
//  * logits: a float32 GEMM of exact products, so token r's logits are within
//    delta_r = (D + 2) 2^-24 max_c (sum_d |h_rd w_cd| + |b_c|) (accumulation, and the bias added
//    in float);
//  * a row's loss moves by at most |d loss / d logits|_1 delta_r <= 2 (max_w + 2 z |lse|) delta_r,
//    plus the cross-entropy kernel's own 2^-20 relative;
//  * each logit gradient carries its dtype's rounding u_g (the GEMMs take it in the inputs'
//    dtype), the kernel's 2^-20, and the change of the probabilities under delta_r,
//    |dp_c| <= 2 delta_r p_c, times the row's multiplier s_r (grad_scale upstream / denominator)
//    and A <= max_w + 2 z |lse|;
//  * the gradient GEMMs add float accumulation over their inner dimension (k 2^-24 of the sum of
//    absolute products) and the output dtype's rounding of the result (a 16-bit d_weight once per
//    chunk: each GEMM's beta = 1 update).
// The sharded calls' tolerances (kSharded; the unsharded call's, kUnsharded, add nothing) add what
// sharding adds, from the sharded cross-entropy's own accuracy
// (tests/cuda/cross_entropy_shard_test.cpp derives it): each shard's statistics are rounded to
// float once and combined in float, so a row's loss and lse move by at most 1e-6 + 2e-6 of their
// size more (the logits here, |x| <= 24 x 0.6 + 2, are smaller than that test's, up to 60); each
// logit gradient A p_c - a_c + 2 z lse p_c comes from float statistics (lse to a few ulp, A and
// the mean's denominator as float sums) and a float exp, so it carries an error of at most 1e-5
// of the size of its terms, A p_c + a_c + 2 z |lse| p_c (not of their difference, which cancels
// on the target class); and d_hidden is a sum of per-shard shares, each rounded to its dtype
// (and, through NCCL, every partial sum of the all-reduce too).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "host/half.h"
#include "host/reference/reference.h"
#include "tests/cuda/support.h"

namespace actloss::test::linear_ce {

using Bytes = std::vector<std::uint8_t>;

// Sizes: not multiples of 8 (cuBLAS's friendly sizes) nor of each other; strided hidden and
// weight gradients (d_hidden's stride is the caller's: NCCL's all-reduce needs it dense).
struct Shape {
  std::int64_t tokens = 37, hidden = 24, classes = 67;
  std::int64_t hidden_stride = 27, d_weight_stride = 26;
};

// The default shape's sizes by name, and the strided d_hidden of the calls in one process.
constexpr std::int64_t kTokens = Shape{}.tokens, kHidden = Shape{}.hidden,
                       kClasses = Shape{}.classes;
constexpr std::int64_t kHiddenStride = Shape{}.hidden_stride, kDHiddenStride = 25,
                       kDWeightStride = Shape{}.d_weight_stride;

// What sharding adds to the tolerances (the top of this file says why): nothing for the
// unsharded call.
struct ShardTerms {
  double loss_abs = 0.0, loss_rel = 0.0, grad_rel = 0.0;
};
constexpr ShardTerms kUnsharded{}, kSharded{1e-6, 2e-6, 1e-5};

constexpr std::int64_t kIgnore = -100;

// Unit roundoff of a dtype: the relative error of rounding a real into it.
inline double unit_roundoff(DType dtype) {
  switch (dtype) {
    case DType::f16: return 0x1p-11;
    case DType::bf16: return 0x1p-8;
    default: return 0x1p-24;
  }
}

inline Bytes image_of(const std::vector<double>& values, DType dtype) {
  Bytes image(values.size() * static_cast<std::size_t>(dtype_size(dtype)));
  for (std::size_t i = 0; i < values.size(); ++i)
    host::store_from_double(image.data(), dtype, static_cast<std::int64_t>(i), values[i]);
  return image;
}

// rows x cols values laid out with a row stride (the padding poisoned).
inline Bytes strided_image(const std::vector<double>& dense, std::int64_t rows, std::int64_t cols,
                           std::int64_t stride, DType dtype) {
  Bytes image(static_cast<std::size_t>(rows * stride * dtype_size(dtype)), kPoisonByte);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      host::store_from_double(image.data(), dtype, r * stride + c,
                              dense[static_cast<std::size_t>(r * cols + c)]);
  return image;
}

inline std::vector<double> read_strided(const Bytes& image, std::int64_t rows, std::int64_t cols,
                                        std::int64_t stride, DType dtype) {
  std::vector<double> dense(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      dense[static_cast<std::size_t>(r * cols + c)] =
          host::load_as_double(image.data(), dtype, r * stride + c);
  return dense;
}

// Rows [first, first + count) of an image whose rows are `row_elements` elements of `size` bytes.
inline Bytes rows_of(const Bytes& image, std::int64_t first, std::int64_t count,
                     std::int64_t row_elements, std::int64_t size) {
  if (image.empty()) return {};
  const auto begin = static_cast<std::ptrdiff_t>(first * row_elements * size);
  const auto end = static_cast<std::ptrdiff_t>((first + count) * row_elements * size);
  return Bytes(image.begin() + begin, image.begin() + end);
}

inline std::vector<float> floats_of(const Bytes& image) {
  std::vector<float> values(image.size() / sizeof(float));
  if (!values.empty()) std::memcpy(values.data(), image.data(), values.size() * sizeof(float));
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

// The unsharded test's option sets.
inline std::vector<Case> cases() {
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

inline LinearCrossEntropyOptions options_of(const Case& c, std::int64_t max_chunk) {
  LinearCrossEntropyOptions options;
  options.loss.reduction = c.reduction;
  options.loss.label_smoothing = c.smoothing;
  options.loss.z_loss = c.z_loss;
  options.loss.softcap = c.softcap;
  options.max_chunk_tokens = max_chunk;
  return options;
}

// The whole vocabulary's tensors as the devices hold them, and their dense doubles.
struct Problem {
  Shape shape;
  Case c;
  DType dtype = DType::f32;
  DType d_weight_dtype = DType::f32;
  Bytes hidden, weight, bias, targets, class_weight, upstream, d_weight_before, d_bias_before;
  std::vector<double> h, w, b, held_d_weight, held_d_bias;
  std::vector<std::int64_t> target_index;
  std::vector<double> weights, upstream_values;

  std::int64_t loss_count() const { return c.reduction == Reduction::none ? shape.tokens : 1; }
};

inline Problem make_problem(const Case& c, DType dtype, DType d_weight_dtype, Shape shape = {}) {
  const std::int64_t N = shape.tokens, D = shape.hidden, V = shape.classes;
  Problem p;
  p.shape = shape;
  p.c = c;
  p.dtype = dtype;
  p.d_weight_dtype = d_weight_dtype;
  const std::vector<double> h = random_values(static_cast<std::size_t>(N * D), -1, 1, 101);
  const std::vector<double> w = random_values(static_cast<std::size_t>(V * D), -0.6, 0.6, 102);
  p.hidden = strided_image(h, N, D, shape.hidden_stride, dtype);
  p.h = read_strided(p.hidden, N, D, shape.hidden_stride, dtype);
  p.weight = image_of(w, dtype);
  p.w = read_strided(p.weight, V, D, D, dtype);
  if (c.bias) {
    p.bias = image_of(random_values(static_cast<std::size_t>(V), -2, 2, 103), dtype);
    p.b = read_strided(p.bias, 1, V, V, dtype);
  }
  const std::vector<double> t = random_values(static_cast<std::size_t>(N), 0, V, 104);
  for (std::int64_t i = 0; i < N; ++i) {
    std::int64_t y = static_cast<std::int64_t>(t[static_cast<std::size_t>(i)]);
    if (c.all_ignored || (c.ignore_some && i % 5 == 2)) y = kIgnore;
    p.target_index.push_back(y);
  }
  p.targets.resize(static_cast<std::size_t>(N * (c.targets_i32 ? 4 : 8)));
  for (std::int64_t i = 0; i < N; ++i) {
    if (c.targets_i32) {
      const auto y = static_cast<std::int32_t>(p.target_index[static_cast<std::size_t>(i)]);
      std::memcpy(p.targets.data() + 4 * i, &y, 4);
    } else {
      std::memcpy(p.targets.data() + 8 * i, &p.target_index[static_cast<std::size_t>(i)], 8);
    }
  }
  if (c.class_weight) {
    std::vector<float> f;
    for (double v : random_values(static_cast<std::size_t>(V), 0.25, 2, 105))
      f.push_back(static_cast<float>(v));
    p.weights.assign(f.begin(), f.end());
    p.class_weight.resize(f.size() * 4);
    std::memcpy(p.class_weight.data(), f.data(), p.class_weight.size());
  }
  if (c.upstream) {
    std::vector<float> f;
    for (double v : random_values(static_cast<std::size_t>(p.loss_count()), 0.5, 2, 106))
      f.push_back(static_cast<float>(v));
    p.upstream_values.assign(f.begin(), f.end());
    p.upstream.resize(f.size() * 4);
    std::memcpy(p.upstream.data(), f.data(), p.upstream.size());
  }
  p.d_weight_before = strided_image(random_values(static_cast<std::size_t>(V * D), -1, 1, 107), V,
                                    D, shape.d_weight_stride, d_weight_dtype);
  p.held_d_weight = read_strided(p.d_weight_before, V, D, shape.d_weight_stride, d_weight_dtype);
  p.d_bias_before = image_of(random_values(static_cast<std::size_t>(V), -1, 1, 108),
                             d_weight_dtype);
  p.held_d_bias = read_strided(p.d_bias_before, 1, V, V, d_weight_dtype);
  return p;
}

// Every option set of cases() with f32 and bf16 inputs (a float32 d_weight), each under its
// trace: body(problem), until it returns false.
inline void for_every_case(const std::function<bool(const Problem&)>& body) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    for (DType dtype : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(to_string(dtype));
      if (!body(make_problem(c, dtype, DType::f32))) return;
    }
  }
}

// The fixture of the tests in one process: the device they run on, Device::cuda skipped
// without a CUDA device.
class OnDevice : public testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam() == Device::cuda) ACTLOSS_REQUIRE_CUDA_DEVICE();
  }
};

// One call's tensors where `device` computes, for the classes [first, first + width) of the
// problem (0 and all of them for the unsharded call): the whole hidden states, targets and
// upstream gradient; exact-size slices of the weight, bias, class weights and weight gradients
// (the held ones uploaded, for accumulate); the loss, lse and d_hidden poisoned (d_hidden with
// the row stride given; 0: dense); and the arguments over them, with the shard the classes are
// of the whole vocabulary. Every buffer has a byte at least: no pointer is null for want of
// tokens.
struct Tensors {
  Tensors(Device device, const Problem& p, std::int64_t first, std::int64_t width,
          std::int64_t d_hidden_stride)
      : hidden(memory(device, p.hidden.size())),
        weight(memory(device, width * p.shape.hidden * dtype_size(p.dtype))),
        bias(memory(device, width * dtype_size(p.dtype))),
        targets(memory(device, p.targets.size())),
        class_weight(memory(device, width * 4)),
        upstream(memory(device, p.upstream.size())),
        loss(memory(device, p.loss_count() * 4)),
        lse(memory(device, p.shape.tokens * 4)),
        d_hidden(memory(device, p.shape.tokens *
                                    (d_hidden_stride > 0 ? d_hidden_stride : p.shape.hidden) *
                                    dtype_size(p.dtype))),
        d_weight(memory(device, width * p.shape.d_weight_stride * dtype_size(p.d_weight_dtype))),
        d_bias(memory(device, width * dtype_size(p.d_weight_dtype))),
        d_weight_before(rows_of(p.d_weight_before, first, width, p.shape.d_weight_stride,
                                dtype_size(p.d_weight_dtype))),
        d_bias_before(rows_of(p.d_bias_before, first, width, 1, dtype_size(p.d_weight_dtype))) {
    const Case& c = p.c;
    const Shape& s = p.shape;
    hidden.upload(p.hidden);
    weight.upload(rows_of(p.weight, first, width, s.hidden, dtype_size(p.dtype)));
    if (c.bias) bias.upload(rows_of(p.bias, first, width, 1, dtype_size(p.dtype)));
    targets.upload(p.targets);
    if (c.class_weight) class_weight.upload(rows_of(p.class_weight, first, width, 1, 4));
    if (c.upstream) upstream.upload(p.upstream);
    d_weight.upload(d_weight_before);
    d_bias.upload(d_bias_before);

    args.tokens = s.tokens;
    args.hidden_size = s.hidden;
    args.classes = width;
    args.dtype = p.dtype;
    args.hidden = hidden.get();
    args.hidden_row_stride = s.hidden_stride;
    args.weight = weight.get();
    args.bias = c.bias ? bias.get() : nullptr;
    args.targets = targets.get();
    args.target_kind = c.targets_i32 ? TargetKind::class_index_i32 : TargetKind::class_index_i64;
    args.class_weight = c.class_weight ? static_cast<const float*>(class_weight.get()) : nullptr;
    args.loss = static_cast<float*>(loss.get());
    args.lse = static_cast<float*>(lse.get());
    args.d_hidden = d_hidden.get();
    args.d_hidden_row_stride = d_hidden_stride;
    args.d_weight = d_weight.get();
    args.d_weight_row_stride = s.d_weight_stride;
    args.d_bias = c.bias ? d_bias.get() : nullptr;
    args.d_weight_dtype = p.d_weight_dtype;
    args.accumulate = c.accumulate;
    args.grad_scale = c.grad_scale;
    args.upstream_grad = c.upstream ? static_cast<const float*>(upstream.get()) : nullptr;
    shard = {first, s.classes};
  }

  template <class Count>
  static Memory memory(Device device, Count bytes) {
    return Memory(device, std::max<std::size_t>(static_cast<std::size_t>(bytes), 1));
  }

  Memory hidden, weight, bias, targets, class_weight, upstream, loss, lse, d_hidden, d_weight,
      d_bias;
  Bytes d_weight_before, d_bias_before;  // this call's d_weight and d_bias as uploaded
  LinearCrossEntropyArgs args;
  CrossEntropyShard shard;
};

// The float64 oracle of the whole vocabulary and the ingredients of the tolerances.
struct Oracle {
  ref::CrossEntropyResult ce;
  ref::LinearGradients grads;
  // Per token: delta, the bound on its float32 logits' error; slope, the largest class weight
  // + 2 z |lse| (|d loss / d logits|_1 <= 2 slope); multiplier, grad_scale upstream / denominator.
  std::vector<double> delta, slope, multiplier;
  // Per token and class: the size of the logit gradient's terms, multiplier
  // (A p_c + a_c + 2 z |lse| p_c), which the sharded statistics' error is relative to.
  std::vector<double> terms;
};

inline Oracle oracle_of(const Problem& p) {
  const Case& c = p.c;
  const std::int64_t N = p.shape.tokens, D = p.shape.hidden, V = p.shape.classes;
  Oracle o;
  ref::CrossEntropyProblem ce;
  ce.rows = N;
  ce.classes = V;
  ce.logits = ref::linear_forward(N, D, V, p.h, p.w, p.b);
  ce.target_index = p.target_index;
  ce.class_weight = p.weights;
  ce.label_smoothing = c.smoothing;
  ce.z_loss = c.z_loss;
  ce.softcap = c.softcap;
  ce.reduction = c.reduction == Reduction::none  ? ref::Reduction::none
                 : c.reduction == Reduction::sum ? ref::Reduction::sum
                                                 : ref::Reduction::mean;
  ce.grad_scale = c.grad_scale;
  ce.upstream = p.upstream_values;
  o.ce = ref::cross_entropy(ce);
  o.grads = ref::linear_backward(N, D, V, p.h, p.w, o.ce.grad);

  double max_weight = 1.0;
  for (double w : p.weights) max_weight = std::max(max_weight, w);
  const auto class_weight = [&](std::int64_t v) {
    return p.weights.empty() ? 1.0 : p.weights[static_cast<std::size_t>(v)];
  };
  o.delta.resize(static_cast<std::size_t>(N));
  o.slope.resize(o.delta.size());
  o.multiplier.resize(o.delta.size());
  o.terms.assign(static_cast<std::size_t>(N * V), 0.0);
  for (std::int64_t r = 0; r < N; ++r) {
    const auto i = static_cast<std::size_t>(r);
    double largest = 0.0;
    for (std::int64_t v = 0; v < V; ++v) {
      double sum = p.b.empty() ? 0.0 : std::fabs(p.b[static_cast<std::size_t>(v)]);
      for (std::int64_t d = 0; d < D; ++d)
        sum += std::fabs(p.h[static_cast<std::size_t>(r * D + d)] *
                         p.w[static_cast<std::size_t>(v * D + d)]);
      largest = std::max(largest, sum);
    }
    o.delta[i] = static_cast<double>(D + 2) * 0x1p-24 * largest;
    o.slope[i] = max_weight + 2 * c.z_loss * std::fabs(o.ce.lse[i]);
    const double up = p.upstream_values.empty()
                          ? 1.0
                          : p.upstream_values[c.reduction == Reduction::none ? i : 0];
    const double denominator =
        c.reduction == Reduction::mean ? (o.ce.weight_sum == 0 ? 1.0 : o.ce.weight_sum) : 1.0;
    o.multiplier[i] = std::fabs(c.grad_scale * up / denominator);

    const std::int64_t y = p.target_index[i];
    if (y == kIgnore) continue;  // an ignored token: no loss, a zero gradient
    std::vector<double> a(static_cast<std::size_t>(V));
    double A = 0.0;
    for (std::int64_t v = 0; v < V; ++v) {
      a[static_cast<std::size_t>(v)] =
          class_weight(v) * (c.smoothing / static_cast<double>(V) +
                             (v == y ? 1.0 - c.smoothing : 0.0));
      A += a[static_cast<std::size_t>(v)];
    }
    for (std::int64_t v = 0; v < V; ++v) {
      double x = ce.logits[static_cast<std::size_t>(r * V + v)];
      if (c.softcap > 0) x = c.softcap * std::tanh(x / c.softcap);
      const double prob = std::exp(x - o.ce.lse[i]);
      o.terms[static_cast<std::size_t>(r * V + v)] =
          o.multiplier[i] * (A * prob + a[static_cast<std::size_t>(v)] +
                             2 * c.z_loss * std::fabs(o.ce.lse[i]) * prob);
    }
  }
  return o;
}

// |got - want| <= tol, NaN exactly where the reference is NaN; false (and a failure) otherwise.
inline bool expect_within(double got, double want, double tol, const std::string& what) {
  if (std::isnan(want) ? std::isnan(got) : std::fabs(got - want) <= tol) return true;
  ADD_FAILURE() << what << ": got " << got << ", want " << want << ", off by "
                << std::fabs(got - want) << ", tolerance " << tol;
  return false;
}

inline std::size_t at(std::int64_t row, std::int64_t cols, std::int64_t col) {
  return static_cast<std::size_t>(row * cols + col);
}

// The loss ([tokens] for none, [1] otherwise) and lse ([tokens]) as float bytes, against the
// oracle.
inline void check_loss(const Problem& p, const Oracle& o, const ShardTerms& sharding,
                       const Bytes& loss_bytes, const Bytes& lse_bytes) {
  const ref::CrossEntropyResult& want = o.ce;
  const std::int64_t N = p.shape.tokens;
  const std::vector<float> loss = floats_of(loss_bytes), lse = floats_of(lse_bytes);
  ASSERT_EQ(static_cast<std::int64_t>(loss.size()), p.loss_count());
  ASSERT_EQ(static_cast<std::int64_t>(lse.size()), N);
  const auto row_tolerance = [&](std::size_t i) {
    return 0x1p-20 * std::fabs(want.row_loss[i]) + 2 * o.slope[i] * o.delta[i] +
           sharding.loss_abs + sharding.loss_rel * std::fabs(want.row_loss[i]);
  };
  if (p.c.reduction == Reduction::none) {
    for (std::int64_t r = 0; r < N; ++r) {
      const auto i = static_cast<std::size_t>(r);
      expect_within(loss[i], want.row_loss[i], row_tolerance(i), "row loss " + std::to_string(r));
    }
  } else {
    double tol = 0.0;
    for (std::int64_t r = 0; r < N; ++r) tol += row_tolerance(static_cast<std::size_t>(r));
    if (p.c.reduction == Reduction::mean && want.weight_sum != 0) tol /= want.weight_sum;
    expect_within(loss[0], want.loss, tol + 0x1p-21 * std::fabs(want.loss), "loss");
  }
  for (std::int64_t r = 0; r < N; ++r) {
    const auto i = static_cast<std::size_t>(r);
    expect_within(lse[i], want.lse[i],
                  o.delta[i] + 0x1p-21 * std::fabs(want.lse[i]) + sharding.loss_abs +
                      sharding.loss_rel * std::fabs(want.lse[i]),
                  "lse " + std::to_string(r));
  }
}

// d_hidden [tokens x hidden] (dense doubles): the whole vocabulary's input gradient, made of the
// shares of the shards cut at `cuts` (class order). `roundings`: how many times a value of the
// size sum_k |share_k| is rounded to the dtype on the way (1: each share, summed exactly;
// through NCCL: each share and every partial sum of the all-reduce, `ranks` in all).
inline void check_d_hidden(const Problem& p, const Oracle& o, const ShardTerms& sharding,
                           const std::vector<std::int64_t>& cuts,
                           const std::vector<double>& d_hidden, double roundings,
                           const std::string& what) {
  const std::int64_t N = p.shape.tokens, D = p.shape.hidden, V = p.shape.classes;
  const std::vector<double>& g = o.ce.grad;
  const double u_grad = unit_roundoff(p.dtype) + 0x1p-20, u_hidden = unit_roundoff(p.dtype);
  int bad = 0;  // at most 8 reports: one configuration's failures are enough to read
  for (std::int64_t r = 0; r < N && bad < 8; ++r) {
    const auto i = static_cast<std::size_t>(r);
    for (std::int64_t d = 0; d < D; ++d) {
      double products = 0.0, terms = 0.0, weights = 0.0, share_sizes = 0.0;
      for (std::size_t k = 0; k + 1 < cuts.size(); ++k) {
        double share = 0.0;
        for (std::int64_t v = cuts[k]; v < cuts[k + 1]; ++v) {
          const double w = p.w[at(v, D, d)];
          share += g[at(r, V, v)] * w;
          products += std::fabs(g[at(r, V, v)] * w);
          terms += o.terms[at(r, V, v)] * std::fabs(w);
          weights = std::max(weights, std::fabs(w));
        }
        share_sizes += std::fabs(share);
      }
      const double tol = roundings * u_hidden * share_sizes + (u_grad + V * 0x1p-24) * products +
                         2 * o.delta[i] * o.multiplier[i] * o.slope[i] * weights +
                         sharding.grad_rel * terms;
      if (!expect_within(d_hidden[at(r, D, d)], o.grads.d_input[at(r, D, d)], tol * 1.01,
                         what + " " + std::to_string(r) + "," + std::to_string(d)))
        ++bad;
    }
  }
}

// One shard's d_weight (strided, d_weight_dtype) and d_bias (when the case has a bias): its rows
// [first, first + width) of the oracle's, plus the held values under accumulate. A 16-bit
// d_weight rounds once per chunk (`chunks` of them).
inline void check_weight_rows(const Problem& p, const Oracle& o, const ShardTerms& sharding,
                              std::int64_t first, std::int64_t width, const Bytes& d_weight_bytes,
                              const Bytes& d_bias_bytes, std::int64_t chunks,
                              const std::string& what) {
  const Case& c = p.c;
  const std::int64_t N = p.shape.tokens, D = p.shape.hidden, V = p.shape.classes;
  const std::vector<double>& g = o.ce.grad;
  const double u_grad = unit_roundoff(p.dtype) + 0x1p-20;
  const double u_weight = unit_roundoff(p.d_weight_dtype);
  const std::vector<double> d_weight =
      read_strided(d_weight_bytes, width, D, p.shape.d_weight_stride, p.d_weight_dtype);
  int bad = 0;
  for (std::int64_t local = 0; local < width && bad < 8; ++local) {
    const std::int64_t v = first + local;
    for (std::int64_t d = 0; d < D; ++d) {
      double products = 0.0, terms = 0.0, shift = 0.0;
      for (std::int64_t r = 0; r < N; ++r) {
        const auto i = static_cast<std::size_t>(r);
        const double h = std::fabs(p.h[at(r, D, d)]);
        products += std::fabs(g[at(r, V, v)]) * h;
        terms += o.terms[at(r, V, v)] * h;
        shift += 2 * o.delta[i] * o.multiplier[i] * o.slope[i] * h;
      }
      const std::size_t k = at(v, D, d);
      const double held = c.accumulate ? p.held_d_weight[k] : 0.0;
      const double want = o.grads.d_weight[k] + held;
      const double tol =
          u_weight * (std::fabs(want) + products + std::fabs(held)) * static_cast<double>(chunks) +
          (u_grad + static_cast<double>(N) * 0x1p-24) * products + shift +
          0x1p-24 * std::fabs(held) + sharding.grad_rel * terms;
      if (!expect_within(d_weight[at(local, D, d)], want, tol * 1.01,
                         what + " d_weight row " + std::to_string(local) + " (class " +
                             std::to_string(v) + ")," + std::to_string(d)))
        ++bad;
    }
  }
  if (!c.bias) return;
  const std::vector<double> d_bias = read_strided(d_bias_bytes, 1, width, width, p.d_weight_dtype);
  for (std::int64_t local = 0; local < width; ++local) {
    const std::int64_t v = first + local;
    double magnitude = 0.0, terms = 0.0, shift = 0.0;
    for (std::int64_t r = 0; r < N; ++r) {
      const auto i = static_cast<std::size_t>(r);
      magnitude += std::fabs(g[at(r, V, v)]);
      terms += o.terms[at(r, V, v)];
      shift += 2 * o.delta[i] * o.multiplier[i] * o.slope[i];
    }
    const auto k = static_cast<std::size_t>(v);
    const double held = c.accumulate ? p.held_d_bias[k] : 0.0;
    const double want = o.grads.d_bias[k] + held;
    const double tol = u_weight * std::fabs(want) + u_grad * magnitude + shift +
                       0x1p-24 * (std::fabs(held) + magnitude) + sharding.grad_rel * terms;
    expect_within(d_bias[static_cast<std::size_t>(local)], want, tol * 1.01,
                  what + " d_bias " + std::to_string(local) + " (class " + std::to_string(v) +
                      ")");
  }
}

}  // namespace actloss::test::linear_ce
