// The CPU backend's cross-entropy (host/cpu/cross_entropy.cpp) against the float64 reference
// (Device::reference), on every Highway target this processor runs and on 1 and 3 threads:
// every pass, dtype pair, option, target kind and layout, special values, and the thread-count
// independence of reduced losses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <actloss/actloss.h>

#include "host/half.h"
#include "tests/api/cpu_backend_support.h"

namespace api_test {
namespace {

using actloss::CrossEntropyArgs;
using actloss::DType;
using actloss::Device;
using actloss::Reduction;
using actloss::StatusCode;
using actloss::CrossEntropyOptions;
using actloss::CrossEntropyRowStats;
using actloss::TargetKind;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr std::uint8_t kFill = 0xA5;  // an ordinary finite value in every dtype

// Typed host storage: elements written through the library's exact conversions.
struct Typed {
  DType dtype = DType::f32;
  std::vector<std::uint8_t> bytes;
  Typed() = default;
  Typed(DType type, std::int64_t elements)
      : dtype(type), bytes(static_cast<std::size_t>(elements * actloss::dtype_size(type)), kFill) {}
  void* data() { return bytes.data(); }
  double get(std::int64_t i) const { return actloss::host::load_as_double(bytes.data(), dtype, i); }
  void set(std::int64_t i, double v) { actloss::host::store_from_double(bytes.data(), dtype, i, v); }
};

struct Problem {
  std::int64_t rows = 4, classes = 33;
  std::int64_t rows_per_batch = 0;
  std::int64_t pad = 0;  // extra elements after each row of logits and grad
  DType logits_dtype = DType::f32, grad_dtype = DType::f32;
  bool soft = false, weights = false, upstream = false, in_place = false;
  DType target_dtype = DType::f32;
  CrossEntropyOptions options;
  float grad_scale = 1.0f;
  std::vector<double> logits;           // rows x classes, before rounding to logits_dtype
  std::vector<std::int64_t> classes_of;  // class targets
  // rows x classes soft targets; when empty, random rows that sum to 1.
  std::vector<double> probabilities;
  // With `weights`; when empty, 0.5 + 0.25 (c % 5), at most 1.5 (grad_term_scale's bound, and its
  // mean's denominator: give weights of your own with another reduction).
  std::vector<float> class_weights;
};

struct Outputs {
  std::vector<float> loss, lse;
  std::vector<CrossEntropyRowStats> stats;
  std::vector<std::int64_t> predicted;
  float accuracy = 0;
  Typed grad;        // fused pass
  Typed grad_back;   // backward pass from the forward's stats
};

Outputs run(const Problem& p, Device device) {
  const std::int64_t stride = p.classes + p.pad;
  Typed logits(p.logits_dtype, p.rows * stride);
  for (std::int64_t r = 0; r < p.rows; ++r)
    for (std::int64_t c = 0; c < p.classes; ++c)
      logits.set(r * stride + c, p.logits[static_cast<std::size_t>(r * p.classes + c)]);
  Typed probabilities(p.target_dtype, p.rows * p.classes);
  if (p.soft && !p.probabilities.empty()) {
    for (std::int64_t i = 0; i < p.rows * p.classes; ++i)
      probabilities.set(i, p.probabilities[static_cast<std::size_t>(i)]);
  } else if (p.soft) {
    const std::vector<double> raw =
        uniform_values(static_cast<std::size_t>(p.rows * p.classes), 0.0, 1.0, 7);
    for (std::int64_t r = 0; r < p.rows; ++r) {
      double total = 0;
      for (std::int64_t c = 0; c < p.classes; ++c) total += raw[static_cast<std::size_t>(r * p.classes + c)];
      for (std::int64_t c = 0; c < p.classes; ++c)
        probabilities.set(r * p.classes + c, raw[static_cast<std::size_t>(r * p.classes + c)] / total);
    }
  }
  std::vector<float> weight(static_cast<std::size_t>(p.classes));
  for (std::size_t c = 0; c < weight.size(); ++c) weight[c] = 0.5f + 0.25f * static_cast<float>(c % 5);
  if (!p.class_weights.empty()) weight = p.class_weights;
  const bool none = p.options.reduction == Reduction::none;
  std::vector<float> upstream(static_cast<std::size_t>(none ? p.rows : 1));
  for (std::size_t i = 0; i < upstream.size(); ++i) upstream[i] = 0.75f - 0.125f * static_cast<float>(i % 7);

  Outputs out;
  out.loss.assign(static_cast<std::size_t>(none ? p.rows : 1), -1.0f);
  out.lse.assign(static_cast<std::size_t>(p.rows), -1.0f);
  out.stats.assign(static_cast<std::size_t>(p.rows), CrossEntropyRowStats{-1, -1});
  out.predicted.assign(static_cast<std::size_t>(p.rows), -1);
  out.grad = Typed(p.grad_dtype, p.rows * stride);
  out.grad_back = Typed(p.grad_dtype, p.rows * stride);

  CrossEntropyArgs args;
  args.rows = p.rows;
  args.classes = p.classes;
  args.rows_per_batch = p.rows_per_batch;
  args.logits = logits.data();
  args.logits_dtype = p.logits_dtype;
  args.logits_row_stride = stride;
  if (p.soft) {
    args.target_kind = TargetKind::probabilities;
    args.targets = probabilities.data();
    args.target_dtype = p.target_dtype;
  } else {
    args.target_kind = TargetKind::class_index_i64;
    args.targets = p.classes_of.data();
  }
  if (p.weights) args.class_weight = weight.data();
  args.grad_dtype = p.grad_dtype;
  args.grad_row_stride = stride;
  args.grad_scale = p.grad_scale;
  if (p.upstream) args.upstream_grad = upstream.data();
  const actloss::Exec exec = device == Device::cpu ? cpu_exec() : reference_exec();

  // Forward with every output, then backward from its stats.
  CrossEntropyArgs forward = args;
  forward.loss = out.loss.data();
  forward.lse = out.lse.data();
  forward.stats = out.stats.data();
  forward.predicted = out.predicted.data();
  if (!p.soft) forward.accuracy = &out.accuracy;
  EXPECT_TRUE(actloss::cross_entropy_forward(forward, p.options, exec).ok());
  CrossEntropyArgs backward = args;
  backward.saved_stats = out.stats.data();
  backward.grad = out.grad_back.data();
  EXPECT_TRUE(actloss::cross_entropy_backward(backward, p.options, exec).ok());

  // The fused pass, over the logits themselves when in place.
  CrossEntropyArgs fused = args;
  std::vector<float> fused_loss(out.loss.size());
  fused.loss = fused_loss.data();
  if (p.in_place) {
    fused.grad = logits.data();
    fused.grad_dtype = p.logits_dtype;
  } else {
    fused.grad = out.grad.data();
  }
  EXPECT_TRUE(actloss::cross_entropy_forward_backward(fused, p.options, exec).ok());
  if (p.in_place) out.grad = logits;
  // The fused pass's loss is the forward's, bit for bit: the same row math.
  for (std::size_t i = 0; i < fused_loss.size(); ++i) {
    EXPECT_EQ(std::memcmp(&fused_loss[i], &out.loss[i], sizeof(float)), 0)
        << "fused loss " << i << ": " << fused_loss[i] << " vs " << out.loss[i];
  }
  return out;
}

// A bound on the size of the terms a gradient entry is the difference of: multiplier * A * p_c
// and multiplier * a_c, with multiplier = grad_scale * upstream / denominator and A, a_c at most
// the largest class weight (plus the z-loss's 2 z lse). The target class's entry is p_y - 1 times
// that: its float rounding is relative to the terms, not to the (possibly tiny) difference.
double grad_term_scale(const Problem& p, const Outputs& ref) {
  const auto weight = [&](std::int64_t c) {
    return p.weights ? 0.5 + 0.25 * static_cast<double>(c % 5) : 1.0;
  };
  double denominator = 1.0;
  if (p.options.reduction == Reduction::mean) {
    denominator = 0.0;
    for (std::int64_t r = 0; r < p.rows; ++r) {
      const std::int64_t y = p.classes_of[static_cast<std::size_t>(r)];
      if (p.soft) {
        denominator += 1.0;
      } else if (y != p.options.ignore_index) {
        denominator += weight(y);
      }
    }
    if (denominator == 0.0) return 0.0;
  }
  double largest_lse = 0;
  for (const float lse : ref.lse)
    if (std::isfinite(lse)) largest_lse = std::max(largest_lse, std::fabs(static_cast<double>(lse)));
  const double upstream = p.upstream ? 0.75 : 1.0;
  const double coefficient = (p.weights ? 1.5 : 1.0) + 2.0 * p.options.z_loss * largest_lse;
  return std::fabs(p.grad_scale) * upstream * coefficient / denominator;
}

// Tolerances. Losses: the backend forms each row's loss from float exponentials (1 ulp each,
// summed in double) and log1p in double, then rounds once; 2^-21 relative is the project's goal
// for an f32 loss against a float64 oracle, plus 2^-21 of the loss's scale (|lse| and the row's
// largest gap) for the cancellation in lse - x_y, which neither side can avoid once the logits are
// rounded to float. Gradients: the rounding of the output dtype (2^-24, 2^-11, 2^-8 relative)
// over a few float operations, relative to each entry and to the terms it is the difference of
// (grad_term_scale).
double grad_rtol(DType dtype) {
  switch (dtype) {
    case DType::f16: return 0x1p-10;
    case DType::bf16: return 0x1p-7;
    default: return 0x1p-19;
  }
}

void expect_close(double got, double want, double atol, double rtol, const std::string& what) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what << ": got " << got << ", want NaN";
    return;
  }
  if (std::isinf(want)) {
    EXPECT_EQ(got, want) << what;
    return;
  }
  EXPECT_LE(std::fabs(got - want), atol + rtol * std::fabs(want))
      << what << ": got " << got << ", want " << want;
}

void compare(const Problem& p, const Outputs& cpu, const Outputs& ref) {
  double scale = 0;  // the largest |logit|: the size of lse and of every gap
  for (const double x : p.logits)
    if (std::isfinite(x)) scale = std::max(scale, std::fabs(x));
  for (std::size_t i = 0; i < ref.loss.size(); ++i) {
    const double rows = p.options.reduction == Reduction::none ? 1.0 : static_cast<double>(p.rows);
    expect_close(cpu.loss[i], ref.loss[i], 0x1p-21 * scale * rows * 4, 0x1p-21,
                 "loss[" + std::to_string(i) + "]");
  }
  for (std::int64_t r = 0; r < p.rows; ++r) {
    const auto i = static_cast<std::size_t>(r);
    expect_close(cpu.lse[i], ref.lse[i], 0x1p-22 * scale, 0x1p-22, "lse[" + std::to_string(r) + "]");
    EXPECT_EQ(cpu.predicted[i], ref.predicted[i]) << "predicted[" << r << "]";
  }
  if (!p.soft) {
    EXPECT_EQ(cpu.accuracy, ref.accuracy);
  }
  const std::int64_t stride = p.classes + p.pad;
  const double term_scale = grad_term_scale(p, ref);
  for (const auto& [got, want, name] :
       {std::tuple{&cpu.grad, &ref.grad, "fused grad"},
        std::tuple{&cpu.grad_back, &ref.grad_back, "backward grad"}}) {
    for (std::int64_t r = 0; r < p.rows; ++r) {
      double row_max = 0;
      for (std::int64_t c = 0; c < p.classes; ++c) {
        const double v = want->get(r * stride + c);
        if (std::isfinite(v)) row_max = std::max(row_max, std::fabs(v));
      }
      const double rtol = grad_rtol(got->dtype);
      for (std::int64_t c = 0; c < p.classes; ++c) {
        expect_close(got->get(r * stride + c), want->get(r * stride + c),
                     rtol * std::max(row_max, term_scale), rtol,
                     std::string(name) + "[" + std::to_string(r) + "][" + std::to_string(c) + "]");
      }
      // Padding between rows is never written (compared byte for byte).
      for (std::int64_t c = p.classes; c < stride && !p.in_place; ++c) {
        const auto size = static_cast<std::size_t>(actloss::dtype_size(got->dtype));
        for (std::size_t b = 0; b < size; ++b) {
          EXPECT_EQ(got->bytes[static_cast<std::size_t>(r * stride + c) * size + b], kFill)
              << name << " padding of row " << r;
        }
      }
    }
  }
}

Problem random_problem(std::int64_t rows, std::int64_t classes, std::uint64_t seed,
                       double spread = 8.0) {
  Problem p;
  p.rows = rows;
  p.classes = classes;
  p.logits = uniform_values(static_cast<std::size_t>(rows * classes), -spread, spread, seed);
  p.classes_of.resize(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r)
    p.classes_of[static_cast<std::size_t>(r)] = (r * 7919 + 3) % classes;
  return p;
}

void check(const Problem& p) {
  const Outputs ref = run(p, Device::reference);
  for_each_simd_target([&] {
    const Outputs cpu = run(p, Device::cpu);
    compare(p, cpu, ref);
  });
}

TEST(CpuCrossEntropy, ShapesAcrossVectorWidths) {
  for (const std::int64_t classes : {1, 2, 7, 15, 16, 17, 33, 64, 1000}) {
    SCOPED_TRACE("classes " + std::to_string(classes));
    check(random_problem(5, classes, 11 + static_cast<std::uint64_t>(classes)));
  }
}

TEST(CpuCrossEntropy, LongOddRow) {
  Problem p = random_problem(2, 50257, 3);
  p.options.reduction = Reduction::sum;
  check(p);
}

TEST(CpuCrossEntropy, DtypesStridesInPlaceAndReductions) {
  for (const DType x : {DType::f32, DType::f16, DType::bf16}) {
    for (const DType g : {DType::f32, DType::f16, DType::bf16}) {
      for (const Reduction reduction : {Reduction::none, Reduction::sum, Reduction::mean}) {
        SCOPED_TRACE(std::string(actloss::to_string(x)) + "->" + actloss::to_string(g) + " " +
                     std::to_string(static_cast<int>(reduction)));
        Problem p = random_problem(6, 37, 5);
        p.logits_dtype = x;
        p.grad_dtype = g;
        p.pad = 3;
        p.options.reduction = reduction;
        p.upstream = true;
        p.grad_scale = 0.5f;
        check(p);
        if (x == g) {
          p.in_place = true;
          check(p);
        }
      }
    }
  }
}

// Rows of 45 classes (shorter than a block of four vectors on AVX-512) and of 200 (whole blocks
// on every target, then a partial vector): each option's pass over whole blocks and the one
// vector by vector.
TEST(CpuCrossEntropy, EveryOption) {
  for (const std::int64_t classes : {45, 200}) {
    for (const bool soft : {false, true}) {
      for (const bool weights : {false, true}) {
        for (const float smoothing : {0.0f, 0.1f, 1.0f}) {
          for (const float z_loss : {0.0f, 1e-3f}) {
            for (const float softcap : {0.0f, 5.0f}) {
              SCOPED_TRACE(std::to_string(classes) + (soft ? " soft" : " hard") +
                           (weights ? " weights" : "") +
                           " eps " + std::to_string(smoothing) + " z " + std::to_string(z_loss) +
                           " cap " + std::to_string(softcap));
              Problem p = random_problem(7, classes, 9);
              p.soft = soft;
              p.weights = weights;
              p.options.label_smoothing = smoothing;
              p.options.z_loss = z_loss;
              p.options.softcap = softcap;
              p.options.reduction = Reduction::mean;
              if (!soft) p.classes_of[2] = p.options.ignore_index;
              check(p);
            }
          }
        }
      }
    }
  }
}

TEST(CpuCrossEntropy, SoftTargetsIn16Bit) {
  for (const DType t : {DType::f16, DType::bf16}) {
    Problem p = random_problem(3, 70, 21);
    p.soft = true;
    p.target_dtype = t;
    p.options.label_smoothing = 0.2f;
    check(p);
  }
}

TEST(CpuCrossEntropy, LongRowsKeepTheirExponentialsInAFloatGradient) {
  // From 1 MiB of logits, exponentials and gradient a row (f32, not streamed), the fused pass
  // keeps a row's exponentials in its gradient row until they are scaled: nothing may be written
  // past the row (3 elements of padding after an odd class count, whose last vector is partial),
  // and in place (the gradient over the logits) must match too. Rows: uniform; half masked with
  // -inf and its target in the row's last element (the partial vector); a NaN; ignored.
  const std::int64_t classes = 131075;
  Problem p = random_problem(4, classes, 47);
  for (std::int64_t c = 0; c < classes; c += 2)
    p.logits[static_cast<std::size_t>(classes + c)] = -kInf;
  p.classes_of[1] = classes - 1;
  p.logits[static_cast<std::size_t>(2 * classes + 7)] = std::numeric_limits<double>::quiet_NaN();
  p.classes_of[3] = p.options.ignore_index;
  p.pad = 3;
  p.options.reduction = Reduction::none;
  for (const bool in_place : {false, true}) {
    for (const int options : {0, 1, 2}) {
      SCOPED_TRACE(std::string(in_place ? "in place, " : "") +
                   (options == 0 ? "plain" : options == 1 ? "smoothing and weights" : "soft"));
      Problem q = p;
      q.in_place = in_place;
      q.weights = options == 1;
      q.options.label_smoothing = options == 1 ? 0.1f : 0.0f;
      q.soft = options == 2;
      check(q);
    }
  }
}

TEST(CpuCrossEntropy, LargeGradientsStreamedAtEveryRowAlignment) {
  // Gradients of 4 MiB and more are stored with non-temporal stores from each row's first
  // vector-aligned element on. 4099 classes with 3 elements of padding start successive rows 3
  // elements further along, so the rows meet every alignment; the padding must stay untouched.
  // Smoothing and class weights make every element's gradient depend on its class; row 2 is
  // ignored (a zero row, streamed too). Without them, only the target's vector differs from
  // p_c times one factor, which the backend writes apart from the rest of the row: there the
  // targets sit in the row's first and last elements (inside its unaligned lead or its tail
  // at one alignment or another) and in between.
  for (const bool plain : {false, true}) {
    for (const DType grad_dtype : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(std::string(plain ? "plain" : "smoothing and weights") + ", grad " +
                   actloss::to_string(grad_dtype));
      // f32: 260 rows of 4102 elements, 4.3 MB; bf16: twice the rows for the same bytes.
      Problem p = random_problem(grad_dtype == DType::f32 ? 260 : 520, 4099, 37);
      p.pad = 3;
      p.grad_dtype = grad_dtype;
      p.logits_dtype = grad_dtype;
      p.options.reduction = Reduction::sum;
      if (plain) {
        const std::int64_t at_ends[] = {0, 1, 2, 13, 4098, 4097, 4090, 4083};
        for (std::size_t r = 0; r < p.classes_of.size(); r += 2)
          p.classes_of[r] = at_ends[(r / 2) % std::size(at_ends)];
      } else {
        p.weights = true;
        p.options.label_smoothing = 0.1f;
      }
      p.classes_of[2] = p.options.ignore_index;
      check(p);
    }
  }
}

TEST(CpuCrossEntropy, StreamedGradientRowsAreTheSameBitsAtEveryAlignment) {
  // Every row holds the same logits and target, and 3 elements of padding start each row 3
  // further along: a streamed gradient row's unaligned lead, whole vectors and tail then fall on
  // different columns from row to row, and each element must come out the same bits wherever
  // its row lies (a view and a dense copy of a tensor give the same gradient). The target sits
  // at column 9, inside the lead at some alignments and in a whole vector at others.
  for (const DType dtype : {DType::f32, DType::bf16}) {
    // 4.3 MB of gradient either way: streamed.
    const std::int64_t rows = dtype == DType::f32 ? 260 : 520, classes = 4099;
    Problem p = random_problem(rows, classes, 53);
    for (std::int64_t r = 1; r < rows; ++r)
      std::copy_n(p.logits.begin(), classes, p.logits.begin() + r * classes);
    for (auto& y : p.classes_of) y = 9;
    p.pad = 3;
    p.logits_dtype = p.grad_dtype = dtype;
    p.options.reduction = Reduction::sum;
    const std::vector<double> one_row =
        uniform_values(static_cast<std::size_t>(classes), 0.0, 2.0 / classes, 59);
    for (const int options : {0, 1, 2, 3, 4}) {
      Problem q = p;
      const char* names[] = {"plain", "smoothing", "smoothing and weights", "soft",
                             "softcap, z-loss"};
      SCOPED_TRACE(std::string(actloss::to_string(dtype)) + ", " + names[options]);
      q.options.label_smoothing = options == 1 || options == 2 ? 0.1f : 0.0f;
      q.weights = options == 2;
      if (options == 3) {
        q.soft = true;
        for (std::int64_t r = 0; r < rows; ++r)
          q.probabilities.insert(q.probabilities.end(), one_row.begin(), one_row.end());
      }
      if (options == 4) {
        q.options.softcap = 5.0f;
        q.options.z_loss = 1e-3f;
      }
      for_each_simd_target([&] {
        const Outputs cpu = run(q, Device::cpu);
        const std::int64_t stride = classes + q.pad;
        for (const auto& [grad, name] :
             {std::pair{&cpu.grad, "fused"}, std::pair{&cpu.grad_back, "backward"}}) {
          int mismatches = 0;
          for (std::int64_t r = 1; r < rows && mismatches < 5; ++r) {
            for (std::int64_t c = 0; c < classes && mismatches < 5; ++c) {
              // Compared as doubles: a bf16 or f32 element converts to double exactly.
              const double first = grad->get(c);
              const double here = grad->get(r * stride + c);
              if (std::memcmp(&first, &here, sizeof here) != 0) {
                ++mismatches;
                ADD_FAILURE() << name << " grad[" << r << "][" << c << "] = " << here
                              << ", row 0 has " << first;
              }
            }
          }
        }
      });
    }
  }
}

TEST(CpuCrossEntropy, BatchedRows) {
  Problem p = random_problem(6, 19, 13);
  p.rows_per_batch = 3;
  p.pad = 2;
  p.options.reduction = Reduction::sum;
  check(p);
}

TEST(CpuCrossEntropy, SpecialValues) {
  Problem p = random_problem(8, 21, 17);
  const auto at = [&](std::int64_t r, std::int64_t c) -> double& {
    return p.logits[static_cast<std::size_t>(r * p.classes + c)];
  };
  for (std::int64_t c = 0; c < p.classes; c += 2) at(0, c) = -kInf;  // a causal-style mask
  p.classes_of[0] = 1;
  for (std::int64_t c = 0; c < p.classes; ++c) at(1, c) = -kInf;       // nothing has mass
  at(2, 5) = std::numeric_limits<double>::quiet_NaN();                  // NaN in, NaN out
  at(3, 4) = kInf;                                                      // inf - inf
  at(4, 0) = 3e38;                                                      // huge, finite loss
  at(4, 1) = -3e38;
  at(5, 3) = 60;                                                        // a confident row
  p.classes_of[5] = 3;
  for (std::int64_t c = 0; c < p.classes; ++c) at(6, c) = 1.0;          // ties everywhere
  for (std::int64_t c = 0; c < p.classes; ++c) at(7, c) = -kInf;       // NaN, but no mass
  at(7, 9) = std::numeric_limits<double>::quiet_NaN();
  p.options.reduction = Reduction::none;
  check(p);
  // Capped, the infinities and the huge logits become +-cap (a slope of 0), and the rows' last,
  // partial vectors are capped too.
  p.options.softcap = 5.0f;
  check(p);
}

// A class that carries no weight in a row's loss costs nothing there even where it is masked
// (-inf, an infinite gap): soft targets with no mass on the masked classes, and a zero class
// weight on them under smoothing, give a finite loss, as the reference does. Rows of 45 classes
// (a partial vector) and of 1000 (whole blocks of vectors), so that every loop over a row's
// columns meets such a class.
TEST(CpuCrossEntropy, MaskedClassesWithoutWeightCostNothing) {
  for (const std::int64_t classes : {45, 1000}) {
    for (const int kind : {0, 1, 2}) {
      SCOPED_TRACE(std::to_string(classes) + " classes, " +
                   (kind == 0   ? "smoothing, zero weights"
                    : kind == 1 ? "soft targets, no mass"
                                : "soft targets and smoothing, zero weights"));
      Problem p = random_problem(3, classes, 53);
      const auto masked = [](std::int64_t c) { return c % 3 == 1; };
      for (std::int64_t r = 0; r < p.rows; ++r) {
        for (std::int64_t c = 0; c < classes; ++c)
          if (masked(c)) p.logits[static_cast<std::size_t>(r * classes + c)] = -kInf;
        p.classes_of[static_cast<std::size_t>(r)] = 3 * (r + 1);
      }
      p.soft = kind != 0;
      p.weights = kind != 1;
      p.options.label_smoothing = kind == 1 ? 0.0f : 0.1f;
      p.options.reduction = Reduction::sum;
      p.class_weights.assign(static_cast<std::size_t>(classes), 1.0f);
      for (std::int64_t c = 0; c < classes; ++c)
        if (masked(c)) p.class_weights[static_cast<std::size_t>(c)] = 0.0f;
      p.probabilities.assign(static_cast<std::size_t>(p.rows * classes), 0.0);
      for (std::int64_t r = 0; r < p.rows; ++r) {
        const double unmasked = static_cast<double>(classes - (classes + 1) / 3);
        for (std::int64_t c = 0; c < classes; ++c) {
          if (!masked(c)) p.probabilities[static_cast<std::size_t>(r * classes + c)] = 1 / unmasked;
        }
      }
      check(p);
      for_each_simd_target([&] {
        const Outputs cpu = run(p, Device::cpu);
        EXPECT_TRUE(std::isfinite(cpu.loss[0])) << cpu.loss[0];
      });
    }
  }
}

// A NaN among logits that are all -inf: the row has no mass to sum, and yet NaN in gives NaN
// out: the loss, the log-sum-exp and the fused gradient of that row are NaN, in f32 and bf16.
TEST(CpuCrossEntropy, NanAmongMaskedLogitsIsNaN) {
  for (const DType dtype : {DType::f32, DType::bf16}) {
    Problem p = random_problem(3, 37, 29);
    p.logits_dtype = dtype;
    p.grad_dtype = dtype;
    for (std::int64_t c = 0; c < p.classes; ++c) p.logits[static_cast<std::size_t>(37 + c)] = -kInf;
    p.logits[37 + 20] = std::numeric_limits<double>::quiet_NaN();
    p.options.reduction = Reduction::none;
    for_each_simd_target([&] {
      SCOPED_TRACE(actloss::to_string(dtype));
      const Outputs cpu = run(p, Device::cpu);
      EXPECT_TRUE(std::isnan(cpu.loss[1]));
      EXPECT_TRUE(std::isnan(cpu.lse[1]));
      for (std::int64_t c = 0; c < p.classes; ++c)
        EXPECT_TRUE(std::isnan(cpu.grad.get(37 + c))) << "fused grad[1][" << c << "]";
      EXPECT_FALSE(std::isnan(cpu.loss[0]));
      EXPECT_FALSE(std::isnan(cpu.loss[2]));
    });
  }
}

TEST(CpuCrossEntropy, ConfidentRowKeepsItsSmallLossRelative) {
  // Target logit 40 above the rest: the loss is about 20 exp(-40) = 8.5e-17, far below float's
  // epsilon relative to lse; log1p of the rest keeps it to a few ulp.
  Problem p = random_problem(1, 21, 23, 0.0);
  p.logits[4] = 40.0;
  p.classes_of[0] = 4;
  p.options.reduction = Reduction::sum;
  const Outputs ref = run(p, Device::reference);
  for_each_simd_target([&] {
    const Outputs cpu = run(p, Device::cpu);
    EXPECT_GT(ref.loss[0], 0.0f);
    EXPECT_NEAR(cpu.loss[0], ref.loss[0], 0x1p-21 * ref.loss[0]);
  });
}

TEST(CpuCrossEntropy, ReducedLossIsTheSameBitsOnAnyThreadCount) {
  // 300 rows of 1000 classes make several tasks; the loss must not depend on how many threads
  // took them.
  Problem p = random_problem(300, 1000, 29);
  for (const Reduction reduction : {Reduction::sum, Reduction::mean}) {
    p.options.reduction = reduction;
    std::vector<float> losses;
    for (const int threads : {1, 2, 3, 8}) {
      SimdTargetScope scope(0, threads);
      losses.push_back(run(p, Device::cpu).loss[0]);
    }
    for (const float loss : losses) EXPECT_EQ(std::memcmp(&loss, &losses[0], sizeof loss), 0);
  }
}

TEST(CpuCrossEntropy, ExponentialIsWithinAnUlpAndAHalf) {
  // The backward from saved statistics {max 0, log s 0} writes exp(x) itself at a non-target
  // column (factor 1), through the exponential every row op shares. Its reduction is exact and 2^k
  // is applied exactly in the normal range, so the error is the polynomial's and its roundings:
  // here 1.08 ulp at worst with FMA, 1.33 on SSE4 (each multiply-add rounded twice). Without the
  // polynomial's top term it fails.
  constexpr std::int64_t kCount = 100000;
  std::vector<float> logits;
  for (std::int64_t i = 0; i < kCount; ++i)
    logits.insert(logits.end(), {-87.0f * static_cast<float>(i) / kCount, 0.0f});
  const std::vector<std::int64_t> classes_of(kCount, 1);
  const std::vector<CrossEntropyRowStats> saved(kCount, CrossEntropyRowStats{0.0f, 0.0f});
  for_each_simd_target([&] {
    std::vector<float> grad(logits.size());
    CrossEntropyArgs args;
    args.rows = kCount;
    args.classes = 2;
    args.logits = logits.data();
    args.targets = classes_of.data();
    args.saved_stats = saved.data();
    args.grad = grad.data();
    CrossEntropyOptions options;
    options.reduction = Reduction::none;
    ASSERT_TRUE(actloss::cross_entropy_backward(args, options, cpu_exec()).ok());
    double worst = 0.0, worst_x = 0.0;
    for (std::int64_t i = 0; i < kCount; ++i) {
      const double x = logits[static_cast<std::size_t>(2 * i)];
      const double want = std::exp(x);
      const double ulp = std::ldexp(1.0, std::ilogb(want) - 23);
      const double error = std::fabs(grad[static_cast<std::size_t>(2 * i)] - want) / ulp;
      if (error > worst) worst = error, worst_x = x;
    }
    EXPECT_LE(worst, 1.5) << "ulp, at x = " << worst_x;
  });
}

TEST(CpuCrossEntropy, ExponentialsAreTheSameBitsOnEveryTarget) {
  // AVX-512 targets scale e^r by 2^k with one vscalefps, the others by two multiplies by powers
  // of two; both round once, so every gradient and loss must agree to the bit, subnormal and
  // overflowing exponentials included. Rows [x, 0] with target 1: the fused pass takes
  // exp(x - 0) for x <= 0 and forms its row sum 1 + e alike on every target. The backward, given
  // a saved max of -100 or 10, takes exp(x - max) from overflow down to below the subnormals.
  const std::vector<std::int64_t> targets = runnable_fma_simd_targets();
  if (targets.size() < 2) GTEST_SKIP() << "this processor runs one SIMD target with an FMA";
  std::vector<float> xs = {-std::numeric_limits<float>::infinity(), -0.0f, -1e-30f, -1e-7f};
  for (float x = -110.0f; x <= 0.0f; x += 0.0371f) xs.push_back(x);
  // Where exp(x) is subnormal or rounds to 0: every 2^-10.
  for (float x = -104.0f; x <= -86.0f; x += 0x1p-10f) xs.push_back(x);
  const auto rows = static_cast<std::int64_t>(xs.size());
  std::vector<float> logits;
  std::vector<std::int64_t> classes_of(xs.size(), 1);
  std::vector<CrossEntropyRowStats> saved(xs.size());
  for (std::size_t r = 0; r < xs.size(); ++r) {
    logits.insert(logits.end(), {xs[r], 0.0f});
    saved[r] = CrossEntropyRowStats{r % 2 == 0 ? -100.0f : 10.0f, 0.0f};
  }
  struct Bits {
    std::vector<float> loss, fused, backward;
  };
  const auto run_on = [&](std::int64_t target) {
    SimdTargetScope scope(target, 1);
    Bits out{std::vector<float>(xs.size()), std::vector<float>(logits.size()),
             std::vector<float>(logits.size())};
    CrossEntropyArgs args;
    args.rows = rows;
    args.classes = 2;
    args.logits = logits.data();
    args.targets = classes_of.data();
    args.loss = out.loss.data();
    args.grad = out.fused.data();
    CrossEntropyOptions options;
    options.reduction = Reduction::none;
    EXPECT_TRUE(actloss::cross_entropy_forward_backward(args, options, cpu_exec()).ok());
    args.loss = nullptr;
    args.saved_stats = saved.data();
    args.grad = out.backward.data();
    EXPECT_TRUE(actloss::cross_entropy_backward(args, options, cpu_exec()).ok());
    return out;
  };
  const auto same_bits = [](const std::vector<float>& a, const std::vector<float>& b) {
    return std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  const Bits first = run_on(targets[0]);
  for (std::size_t i = 1; i < targets.size(); ++i) {
    SCOPED_TRACE(std::string(actloss::detail::cpu_simd_target_name(targets[i])) + " against " +
                 actloss::detail::cpu_simd_target_name(targets[0]));
    const Bits other = run_on(targets[i]);
    EXPECT_TRUE(same_bits(other.loss, first.loss));
    EXPECT_TRUE(same_bits(other.fused, first.fused));
    EXPECT_TRUE(same_bits(other.backward, first.backward));
  }
}

TEST(CpuCrossEntropy, OutOfRangeTargetWritesNothing) {
  Problem p = random_problem(3, 10, 31);
  p.classes_of[1] = 10;
  std::vector<float> loss(1, -1.0f), grad(30, -1.0f);
  std::vector<float> logits(p.logits.begin(), p.logits.end());
  CrossEntropyArgs args;
  args.rows = p.rows;
  args.classes = p.classes;
  args.logits = logits.data();
  args.targets = p.classes_of.data();
  args.loss = loss.data();
  args.grad = grad.data();
  const actloss::Status status =
      actloss::cross_entropy_forward_backward(args, CrossEntropyOptions{}, cpu_exec());
  EXPECT_EQ(status.code(), StatusCode::out_of_range);
  EXPECT_EQ(status.argument(), "targets");
  EXPECT_EQ(loss[0], -1.0f);
  for (const float g : grad) EXPECT_EQ(g, -1.0f);
}

}  // namespace
}  // namespace api_test
