// The SIMD CPU backend's activations and SwiGLU (host/cpu/activation.cpp) against the float64
// reference, on every Highway target this processor runs and on 1 and 3 threads: every
// activation, pass and dtype pair at sizes around the vector widths (4, 8, 16 lanes) and the
// task size, strided rows whose padding must stay untouched, in place, the relu mask bits, and
// special values; and the same bits whatever the thread count.
//
// Tolerances, |cpu - reference| <= atol + rtol |reference|, both outputs rounded to the output
// dtype (the validation table, validation_Cpu_*, holds the per-element error model; these bounds
// are coarser and state only what makes them large enough):
//  * rtol: twice the output dtype's unit roundoff (each side rounds once, possibly to different
//    neighbours of the exact value: a float result at a 16-bit tie is one such case), plus 4e-5
//    of float math: a few roundings, the math functions' few ulp, and the condition of
//    gelu_tanh's left tail, where sigmoid(w) moves by |w| times w's 7 roundings
//    (|w| <= 50 for the random |x| <= 8: 350 u = 2.1e-5; |w| = 87 at the planted x = -10,
//    610 u = 3.6e-5; beyond, the result is below float's normal range and atol holds it).
//  * atol, forward: the output dtype's smallest subnormal spacing plus 1e-37: results below
//    float's normal range are rounded absolutely (sigmoid(-100) = 3.7e-44).
//  * atol, backward: 1e-5 more: silu' and gelu' cross zero (x = -1.28, -0.75), where terms of
//    size up to |dy| (1 + |x| phi) <= 4 cancel, each with a few float roundings (4 x 8 x 2^-24
//    is 2e-6), so their small results are only absolutely accurate.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "tests/api/cpu_backend_support.h"
#include "tests/api/test_util.h"

namespace api_test {
namespace {

using actloss::Activation;
using actloss::ActivationBackwardArgs;
using actloss::ActivationForwardArgs;
using actloss::ActivationOptions;
using actloss::SavedTensor;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

constexpr Activation kActivations[] = {Activation::relu,      Activation::leaky_relu,
                                       Activation::tanh,      Activation::sigmoid,
                                       Activation::gelu_erf,  Activation::gelu_tanh,
                                       Activation::silu};
constexpr DType kDtypes[] = {DType::f32, DType::f16, DType::bf16};
constexpr std::int64_t kSizes[] = {1, 7, 15, 16, 17, 33, 1000, 70000};

bool has_output_slope(Activation a) {
  return a == Activation::relu || a == Activation::leaky_relu || a == Activation::tanh ||
         a == Activation::sigmoid;
}

double unit_roundoff(DType dtype) {
  switch (dtype) {
    case DType::f16: return 0x1p-11;
    case DType::bf16: return 0x1p-8;
    default: return 0x1p-24;
  }
}
double half_subnormal(DType dtype) {
  switch (dtype) {
    case DType::f16: return 0x1p-25;
    case DType::bf16: return 0x1p-134;
    default: return 0x1p-150;
  }
}

struct Tol {
  double rtol, atol;
};
Tol tolerance(DType out, bool backward) {
  return {2 * unit_roundoff(out) + 4e-5,
          2 * half_subnormal(out) + 1e-37 + (backward ? 1e-5 : 0.0)};
}

// Collects mismatches of one output and reports the count and the first few.
class Comparison {
 public:
  explicit Comparison(std::string what) : what_(std::move(what)) {}
  void check(std::int64_t i, double got, double want, double input, Tol tol) {
    bool ok;
    if (std::isnan(want)) {
      ok = std::isnan(got);
    } else if (std::isinf(want)) {
      ok = got == want;
    } else {
      ok = std::fabs(got - want) <= tol.atol + tol.rtol * std::fabs(want);
    }
    if (ok) return;
    if (++failures_ <= 5) {
      first_ << "\n  [" << i << "] input " << input << ": cpu " << got << ", reference " << want;
    }
  }
  ~Comparison() {
    if (failures_ > 0) ADD_FAILURE() << what_ << ": " << failures_ << " mismatches" << first_.str();
  }

 private:
  std::string what_;
  int failures_ = 0;
  std::ostringstream first_;
};

// Inputs in [-8, 8] with special values planted every 13th element from index 3, so that they
// land in whole vectors and in tails.
std::vector<double> activation_inputs(std::int64_t count, std::uint64_t seed) {
  std::vector<double> x = uniform_values(static_cast<std::size_t>(count), -8.0, 8.0, seed);
  static const double kSpecials[] = {kNaN,   kInf,  -kInf, 0.0,   -0.0, 1e-40, -1e-40, 3e-6,
                                     -3e-6,  20.0,  -20.0, 100.0, -100, 1e30,  -1e30,  3e38,
                                     -3e38,  0.75,  -0.75, 14.2,  -14.2, -9.0, 9.0,    -1.28,
                                     -10.0,  15.0,  -15.0, 0.5,   -0.5};
  std::size_t k = 0;
  for (std::size_t i = 3; i < x.size(); i += 13, ++k) x[i] = kSpecials[k % std::size(kSpecials)];
  return x;
}

std::string name_of(Activation a, const char* pass, DType in, DType out, std::int64_t rows,
                    std::int64_t n) {
  return std::string(actloss::to_string(a)) + " " + pass + " " + actloss::to_string(in) + "->" +
         actloss::to_string(out) + " " + std::to_string(rows) + "x" + std::to_string(n);
}

// A rows x n tensor with row stride `stride`, poison between the rows.
struct Strided {
  Buffer buffer;
  std::int64_t rows, n, stride;
  Strided(DType dtype, std::int64_t rows_, std::int64_t n_, std::int64_t stride_)
      : buffer(dtype, rows_ * stride_), rows(rows_), n(n_), stride(stride_) {}
  void fill(const std::vector<double>& values) {
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < n; ++c) buffer.set(r * stride + c, values[r * n + c]);
  }
  double get(std::int64_t i) const { return buffer.get(i / n * stride + i % n); }
  bool padding_untouched() const {
    const std::int64_t size = actloss::dtype_size(buffer.dtype());
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = n; c < stride; ++c)
        for (std::int64_t b = 0; b < size; ++b)
          if (!buffer.byte_is_poison((r * stride + c) * size + b)) return false;
    return true;
  }
};

// One activation call on Device::cpu and on the reference, compared.
void check_activation(Activation a, SavedTensor kind, bool backward, DType in, DType out,
                      std::int64_t rows, std::int64_t n, std::int64_t pad, bool in_place,
                      std::uint64_t seed) {
  const std::int64_t stride = n + pad, count = rows * n;
  const ActivationOptions options{a, 0.01f};
  const std::vector<double> x = activation_inputs(count, seed);
  const std::vector<double> dy_values = uniform_values(static_cast<std::size_t>(count), -2, 2,
                                                       seed + 1);
  // The saved tensor: x, or y = f(x) as the reference's forward gives it in `in`.
  Strided saved(in, rows, n, stride);
  saved.fill(x);
  if (backward && kind == SavedTensor::output) {
    Strided y(in, rows, n, stride);
    ActivationForwardArgs f;
    f.n = n;
    f.rows = rows;
    f.x = saved.buffer.data();
    f.x_dtype = in;
    f.x_row_stride = stride;
    f.y = y.buffer.data();
    f.y_dtype = in;
    f.y_row_stride = stride;
    ASSERT_TRUE(actloss::activation_forward(f, options, reference_exec()).ok());
    saved = std::move(y);
  }
  const char* pass = !backward ? "forward" : kind == SavedTensor::output ? "backward(y)"
                                                                         : "backward";
  const std::string what =
      name_of(a, pass, in, out, rows, n) + (pad ? " padded" : "") + (in_place ? " in place" : "");
  SCOPED_TRACE(what);

  Strided results[2] = {Strided(out, rows, n, stride), Strided(out, rows, n, stride)};
  Strided dys[2] = {Strided(out, rows, n, stride), Strided(out, rows, n, stride)};
  Strided inputs[2] = {Strided(in, rows, n, stride), Strided(in, rows, n, stride)};
  for (int side = 0; side < 2; ++side) {
    const actloss::Exec exec = side == 0 ? cpu_exec() : reference_exec();
    Status status;
    if (!backward) {
      // In place: y over x, so x is written into the output buffer (in == out).
      Strided& source = in_place ? results[side] : inputs[side];
      source.fill(x);
      ActivationForwardArgs f;
      f.n = n;
      f.rows = rows;
      f.x = source.buffer.data();
      f.x_dtype = in;
      f.x_row_stride = stride;
      f.y = results[side].buffer.data();
      f.y_dtype = out;
      f.y_row_stride = stride;
      status = actloss::activation_forward(f, options, exec);
    } else {
      Strided& dy = in_place ? results[side] : dys[side];
      dy.fill(dy_values);
      ActivationBackwardArgs b;
      b.n = n;
      b.rows = rows;
      b.saved_kind = kind;
      b.saved = saved.buffer.data();
      b.saved_dtype = in;
      b.saved_row_stride = stride;
      b.dy = dy.buffer.data();
      b.dy_dtype = out;
      b.dy_row_stride = stride;
      b.dx = results[side].buffer.data();
      b.dx_dtype = out;
      b.dx_row_stride = stride;
      status = actloss::activation_backward(b, options, exec);
    }
    ASSERT_TRUE(status.ok()) << status.message();
  }
  Comparison comparison(what);
  const Tol tol = tolerance(out, backward);
  for (std::int64_t i = 0; i < count; ++i)
    comparison.check(i, results[0].get(i), results[1].get(i), saved.get(i), tol);
  EXPECT_TRUE(results[0].padding_untouched()) << "written between the rows";
}

TEST(CpuActivation, EveryActivationPassAndDtypePairMatchesReference) {
  for_each_simd_target([] {
    std::uint64_t seed = 1;
    for (Activation a : kActivations)
      for (int pass = 0; pass < 3; ++pass) {
        if (pass == 2 && !has_output_slope(a)) continue;
        const SavedTensor kind = pass == 2 ? SavedTensor::output : SavedTensor::input;
        for (DType in : kDtypes)
          for (DType out : kDtypes)
            for (std::int64_t n : kSizes) {
              // The largest size (several tasks) in f32 and one 16-bit pair.
              if (n == 70000 && !(in == out && in != DType::bf16)) continue;
              check_activation(a, kind, pass > 0, in, out, 1, n, 0, false, seed++);
            }
      }
  });
}

TEST(CpuActivation, StridedRowsLeavePaddingUntouched) {
  for_each_simd_target([] {
    std::uint64_t seed = 100;
    for (Activation a : kActivations)
      for (int pass = 0; pass < 3; ++pass) {
        if (pass == 2 && !has_output_slope(a)) continue;
        const SavedTensor kind = pass == 2 ? SavedTensor::output : SavedTensor::input;
        check_activation(a, kind, pass > 0, DType::f32, DType::f32, 5, 37, 11, false, seed++);
        check_activation(a, kind, pass > 0, DType::bf16, DType::f16, 3, 17, 3, false, seed++);
        // Rows longer than a task (65536 elements), so that a task ends inside a row.
        check_activation(a, kind, pass > 0, DType::f16, DType::f32, 3, 70001, 5, false, seed++);
      }
  });
}

TEST(CpuActivation, InPlace) {
  for_each_simd_target([] {
    std::uint64_t seed = 200;
    for (Activation a : kActivations)
      for (int pass = 0; pass < 3; ++pass) {
        if (pass == 2 && !has_output_slope(a)) continue;
        const SavedTensor kind = pass == 2 ? SavedTensor::output : SavedTensor::input;
        for (DType dtype : kDtypes) {
          check_activation(a, kind, pass > 0, dtype, dtype, 1, 1000, 0, true, seed++);
          check_activation(a, kind, pass > 0, dtype, dtype, 4, 33, 7, true, seed++);
        }
      }
  });
}

// Hand-checked limits, NaN and signed zero, independent of the reference.
TEST(CpuActivation, SpecialValuesTakeTheirLimits) {
  struct Expect {
    Activation a;
    double x, y, slope;
  };
  const Expect expects[] = {
      {Activation::relu, -0.0, 0.0, 0.0},        {Activation::relu, kInf, kInf, 1.0},
      {Activation::tanh, kInf, 1.0, 0.0},        {Activation::tanh, -kInf, -1.0, 0.0},
      {Activation::tanh, 20.0, 1.0, 4 * std::exp(-40.0)},
      {Activation::sigmoid, -kInf, 0.0, 0.0},    {Activation::sigmoid, kInf, 1.0, 0.0},
      {Activation::sigmoid, -100.0, std::exp(-100.0), std::exp(-100.0)},
      {Activation::silu, -kInf, 0.0, 0.0},       {Activation::silu, kInf, kInf, 1.0},
      {Activation::gelu_erf, -kInf, 0.0, 0.0},   {Activation::gelu_erf, kInf, kInf, 1.0},
      {Activation::gelu_erf, 3e38, 3e38, 1.0},   {Activation::gelu_tanh, -kInf, 0.0, 0.0},
      {Activation::gelu_tanh, kInf, kInf, 1.0},  {Activation::gelu_tanh, -1e30, 0.0, 0.0},
      {Activation::leaky_relu, -kInf, -kInf, 0.01},
  };
  for_each_simd_target([&] {
    for (const Expect& e : expects) {
      SCOPED_TRACE(std::string(actloss::to_string(e.a)) + " at " + std::to_string(e.x));
      {
        const Activation act = e.a;
        Buffer x(DType::f32, 17), y(DType::f32, 17), dy(DType::f32, 17), dx(DType::f32, 17);
        for (int i = 0; i < 17; ++i) {
          x.set(i, i == 5 ? kNaN : e.x);
          dy.set(i, 1.0);
        }
        ActivationForwardArgs f;
        f.n = 17;
        f.x = x.data();
        f.y = y.data();
        const ActivationOptions options{act, 0.01f};
        ASSERT_TRUE(actloss::activation_forward(f, options, cpu_exec()).ok());
        ActivationBackwardArgs b;
        b.n = 17;
        b.saved = x.data();
        b.dy = dy.data();
        b.dx = dx.data();
        ASSERT_TRUE(actloss::activation_backward(b, options, cpu_exec()).ok());
        for (int i = 0; i < 17; ++i) {
          if (i == 5) {
            EXPECT_TRUE(std::isnan(y.get(i))) << "forward of NaN";
            EXPECT_TRUE(std::isnan(dx.get(i))) << "backward at NaN";
            continue;
          }
          // 8 float ulp: the few roundings of these saturated results; infinities exact.
          const auto near = [](double got, double want) {
            if (std::isinf(want) ? got == want
                                 : std::fabs(got - want) <= 1e-44 + 8 * 0x1p-24 * std::fabs(want))
              return ::testing::AssertionSuccess();
            return ::testing::AssertionFailure() << "got " << got << ", want " << want;
          };
          EXPECT_TRUE(near(y.get(i), e.y)) << "forward, element " << i;
          EXPECT_TRUE(near(dx.get(i), e.slope)) << "backward, element " << i;
        }
      }
    }
  });
}

// A dense forward of n elements of `dtype` from x, into cpu_y on Device::cpu and into
// reference_y on the reference.
void forward_on_both(Activation a, DType dtype, const void* x, void* cpu_y, void* reference_y,
                     std::int64_t n) {
  ActivationForwardArgs f;
  f.n = n;
  f.x = x;
  f.x_dtype = dtype;
  f.y_dtype = dtype;
  const ActivationOptions options{a, 0.0f};
  f.y = cpu_y;
  ASSERT_TRUE(actloss::activation_forward(f, options, cpu_exec()).ok());
  f.y = reference_y;
  ASSERT_TRUE(actloss::activation_forward(f, options, reference_exec()).ok());
}

// relu from a 16-bit dtype into the same one works on the bits (host/cpu/activation.cpp,
// relu_bits): every one of the 65536 patterns, at an odd offset so that whole vectors and the
// scalar tail both see them, must give the reference's bits (+0 for -0 and every negative value
// and -inf) and NaN for each NaN of either sign.
TEST(CpuActivation, ReluOfEvery16BitPattern) {
  constexpr std::int64_t kCount = 65536 + 13;
  for_each_simd_target([&] {
    for (DType dtype : {DType::bf16, DType::f16}) {
      SCOPED_TRACE(actloss::to_string(dtype));
      Buffer x(dtype, kCount + 1), got(dtype, kCount + 1), want(dtype, kCount + 1);
      for (std::int64_t i = 0; i < kCount + 1; ++i)
        x.set_raw<std::uint16_t>(i, static_cast<std::uint16_t>(i * 40503u));  // odd: a permutation
      const auto odd = [](Buffer& b) { return static_cast<std::uint16_t*>(b.data()) + 1; };
      ASSERT_NO_FATAL_FAILURE(
          forward_on_both(Activation::relu, dtype, odd(x), odd(got), odd(want), kCount));
      int failures = 0;
      for (std::int64_t i = 1; i <= kCount; ++i) {
        const auto got_bits = got.get_raw<std::uint16_t>(i);
        const auto want_bits = want.get_raw<std::uint16_t>(i);
        const bool ok = std::isnan(want.get(i)) ? std::isnan(got.get(i)) : got_bits == want_bits;
        if (!ok && ++failures <= 5) {
          ADD_FAILURE() << "x bits 0x" << std::hex << x.get_raw<std::uint16_t>(i) << ": cpu 0x"
                        << got_bits << ", reference 0x" << want_bits;
        }
      }
      EXPECT_EQ(failures, 0);
    }
  });
}

// gelu_erf in float32 keeps the error the kernels' model grants its own arithmetic, 9u |f|
// (validation/activation.cpp), without the model's 2u x^2 phi(x) for a rounded x^2 / 2: the CPU
// backend hands exp(-x^2 / 2) the rounding error of x^2 / 2 as a second part. Where that part is
// lost, the left tail is off by up to u x^2 / 2 relatively (32u at x = -8, 67u at -11.5), which
// the coarse tolerance of the tests above lets through. x in [-12.5, 4], whose results are normal
// floats; the reference's own rounding to float adds u / 2, so the bound is 9.5u.
TEST(CpuActivation, GeluErfKeepsFloatAccuracyInTheLeftTail) {
  constexpr std::int64_t kCount = 40000;
  std::vector<double> x(kCount);
  for (std::int64_t i = 0; i < kCount; ++i) x[i] = -12.5 + 16.5 * static_cast<double>(i) / kCount;
  for_each_simd_target([&] {
    Buffer in(DType::f32, kCount), got(DType::f32, kCount), want(DType::f32, kCount);
    for (std::int64_t i = 0; i < kCount; ++i) in.set(i, x[i]);
    ASSERT_NO_FATAL_FAILURE(forward_on_both(Activation::gelu_erf, DType::f32, in.data(),
                                            got.data(), want.data(), kCount));
    double worst = 0.0, worst_x = 0.0;
    for (std::int64_t i = 0; i < kCount; ++i) {
      const double error = std::fabs(got.get(i) - want.get(i)) / (0x1p-24 * std::fabs(want.get(i)));
      if (error > worst) worst = error, worst_x = in.get(i);
    }
    EXPECT_LE(worst, 9.5) << "relative error in units of 2^-24, at x = " << worst_x;
  });
}

// The relu mask over strided rows: bit i % 32 of word i / 32 is x_i > 0 (NaN: 0), the bits past
// the elements 0, the word after the mask untouched; the backward from it is dy or dy * 0.
TEST(CpuActivation, ReluMaskBitsAndBackwardFromMask) {
  for_each_simd_target([] {
    for (std::int64_t rows : {1, 3})
      for (std::int64_t n : {1, 7, 16, 17, 33, 1000, 70001})
        for (DType dtype : kDtypes)
          for (bool in_place : {false, true}) {
            SCOPED_TRACE("rows " + std::to_string(rows) + " n " + std::to_string(n) + " " +
                         actloss::to_string(dtype) + (in_place ? " in place" : ""));
            const std::int64_t count = rows * n, stride = n + 3;
            const std::int64_t words = actloss::relu_mask_words(count);
            // x as stored, kept aside: in place, y overwrites it.
            Strided x(dtype, rows, n, stride), separate_y(dtype, rows, n, stride),
                input(dtype, rows, n, stride);
            const std::vector<double> values = activation_inputs(count, 7 + n);
            x.fill(values);
            input.fill(values);
            Strided& y = in_place ? x : separate_y;
            Buffer mask = Buffer::bytes_of(4, words + 1);
            ActivationForwardArgs f;
            f.n = n;
            f.rows = rows;
            f.x = x.buffer.data();
            f.x_dtype = dtype;
            f.x_row_stride = stride;
            f.y = y.buffer.data();
            f.y_dtype = dtype;
            f.y_row_stride = stride;
            f.relu_mask = static_cast<std::uint32_t*>(mask.data());
            ASSERT_TRUE(actloss::activation_forward(f, {Activation::relu}, cpu_exec()).ok());
            int wrong_bits = 0, wrong_values = 0;
            for (std::int64_t i = 0; i < words * 32; ++i) {
              const bool bit = (mask.get_raw<std::uint32_t>(i / 32) >> (i % 32)) & 1u;
              const bool want = i < count && input.get(i) > 0;
              wrong_bits += bit != want;
              if (i < count) {
                const double xi = input.get(i);
                const double yi = y.get(i);
                const bool ok = std::isnan(xi) ? std::isnan(yi) : yi == (xi > 0 ? xi : 0.0);
                wrong_values += !ok;
              }
            }
            EXPECT_EQ(wrong_bits, 0);
            EXPECT_EQ(wrong_values, 0);
            EXPECT_TRUE(y.padding_untouched());
            EXPECT_TRUE(mask.untouched(words)) << "the word after the mask was written";

            Strided dy(dtype, rows, n, stride), dx(dtype, rows, n, stride);
            dy.fill(uniform_values(static_cast<std::size_t>(count), -2, 2, 9));
            dy.buffer.set(0, kInf);  // times a 0 bit is NaN, as the reference's product
            ActivationBackwardArgs b;
            b.n = n;
            b.rows = rows;
            b.saved_kind = SavedTensor::relu_mask;
            b.saved = mask.data();
            b.dy = dy.buffer.data();
            b.dy_dtype = dtype;
            b.dy_row_stride = stride;
            b.dx = dx.buffer.data();
            b.dx_dtype = dtype;
            b.dx_row_stride = stride;
            ASSERT_TRUE(actloss::activation_backward(b, {Activation::relu}, cpu_exec()).ok());
            int wrong_grads = 0;
            for (std::int64_t i = 0; i < count; ++i) {
              const double want = dy.get(i) * (input.get(i) > 0 ? 1.0 : 0.0);
              const double got = dx.get(i);
              wrong_grads += std::isnan(want) ? !std::isnan(got) : got != want;
            }
            EXPECT_EQ(wrong_grads, 0);
            EXPECT_TRUE(dx.padding_untouched());
          }
  });
}

// ---- SwiGLU ------------------------------------------------------------------------------------

// gate and up as the two halves of one [rows x 2n] projection (row strides 2n), the gradients
// the halves of another, or, in place, gate and up themselves.
void check_swiglu(DType in, DType out, std::int64_t rows, std::int64_t n, bool in_place,
                  std::uint64_t seed) {
  const std::int64_t count = rows * n, stride = 2 * n;
  std::vector<double> gate = activation_inputs(count, seed);
  const std::vector<double> up = uniform_values(static_cast<std::size_t>(count), -3, 3, seed + 1);
  const std::vector<double> dy = uniform_values(static_cast<std::size_t>(count), -2, 2, seed + 2);
  const std::string what = std::string("swiglu ") + actloss::to_string(in) + "->" +
                           actloss::to_string(out) + " " + std::to_string(rows) + "x" +
                           std::to_string(n) + (in_place ? " in place" : "");
  SCOPED_TRACE(what);
  // Forward: y separate. Backward: d_gate and d_up the halves of one buffer, or in place.
  Buffer y[2], grads[2], projection[2];
  for (int side = 0; side < 2; ++side) {
    const actloss::Exec exec = side == 0 ? cpu_exec() : reference_exec();
    const DType projection_dtype = in_place ? out : in;
    projection[side] = Buffer(projection_dtype, rows * stride);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < n; ++c) {
        projection[side].set(r * stride + c, gate[r * n + c]);
        projection[side].set(r * stride + n + c, up[r * n + c]);
      }
    Buffer dy_buffer(in, count);
    for (std::int64_t i = 0; i < count; ++i) dy_buffer.set(i, dy[i]);
    const std::int64_t element = actloss::dtype_size(projection_dtype);
    void* gate_data = projection[side].data();
    void* up_data = static_cast<char*>(projection[side].data()) + n * element;

    y[side] = Buffer(out, count);
    actloss::SwigluForwardArgs f;
    f.n = n;
    f.rows = rows;
    f.gate = gate_data;
    f.gate_dtype = projection_dtype;
    f.gate_row_stride = stride;
    f.up = up_data;
    f.up_dtype = projection_dtype;
    f.up_row_stride = stride;
    f.y = y[side].data();
    f.y_dtype = out;
    ASSERT_TRUE(actloss::swiglu_forward(f, exec).ok());

    grads[side] = Buffer(out, rows * stride);
    actloss::SwigluBackwardArgs b;
    b.n = n;
    b.rows = rows;
    b.gate = gate_data;
    b.gate_dtype = projection_dtype;
    b.gate_row_stride = stride;
    b.up = up_data;
    b.up_dtype = projection_dtype;
    b.up_row_stride = stride;
    b.dy = dy_buffer.data();
    b.dy_dtype = in;
    b.d_gate = in_place ? gate_data : grads[side].data();
    b.d_gate_dtype = out;
    b.d_gate_row_stride = stride;
    b.d_up = in_place ? up_data : static_cast<char*>(grads[side].data()) +
                                      n * actloss::dtype_size(out);
    b.d_up_dtype = out;
    b.d_up_row_stride = stride;
    ASSERT_TRUE(actloss::swiglu_backward(b, exec).ok());
  }
  Comparison forward(what + " y"), backward(what + " d_gate/d_up");
  const Buffer& g0 = in_place ? projection[0] : grads[0];
  const Buffer& g1 = in_place ? projection[1] : grads[1];
  for (std::int64_t i = 0; i < count; ++i) {
    forward.check(i, y[0].get(i), y[1].get(i), gate[i], tolerance(out, false));
    const std::int64_t at = i / n * stride + i % n;
    backward.check(i, g0.get(at), g1.get(at), gate[i], tolerance(out, true));
    backward.check(i, g0.get(at + n), g1.get(at + n), gate[i], tolerance(out, true));
  }
}

TEST(CpuSwiglu, EveryDtypePairMatchesReference) {
  for_each_simd_target([] {
    std::uint64_t seed = 300;
    for (DType in : kDtypes)
      for (DType out : kDtypes)
        for (std::int64_t n : kSizes) {
          if (n == 70000 && in != out) continue;
          check_swiglu(in, out, 1, n, false, seed++);
        }
    for (DType dtype : kDtypes) {
      check_swiglu(dtype, dtype, 3, 37, false, seed++);
      check_swiglu(dtype, dtype, 3, 37, true, seed++);
      check_swiglu(dtype, dtype, 2, 20001, true, seed++);
    }
  });
}

// ---- streamed outputs -------------------------------------------------------------------------

// Outputs of 4 MiB or more (dense) are stored with non-temporal stores from their first
// vector-aligned element on, the elements before it with ordinary ones: every misalignment of
// the output within a vector, in place and not, a 16-bit output, and SwiGLU's two gradients
// (streamed together only when equally misaligned). The results must match the reference and
// nothing outside the output may change.
class Offset {
 public:
  // `elements` elements of `dtype` starting `offset` elements into a poisoned block, with 16
  // poisoned elements after them.
  Offset(DType dtype, std::int64_t elements, std::int64_t offset)
      : buffer_(dtype, elements + offset + 16), elements_(elements), offset_(offset) {}
  void* data() {
    return static_cast<char*>(buffer_.data()) + offset_ * actloss::dtype_size(buffer_.dtype());
  }
  double get(std::int64_t i) const { return buffer_.get(offset_ + i); }
  void set(std::int64_t i, double value) { buffer_.set(offset_ + i, value); }
  bool surroundings_untouched() const {
    for (std::int64_t i = 0; i < offset_; ++i)
      if (!buffer_.untouched(i)) return false;
    for (std::int64_t i = offset_ + elements_; i < offset_ + elements_ + 16; ++i)
      if (!buffer_.untouched(i)) return false;
    return true;
  }

 private:
  Buffer buffer_;
  std::int64_t elements_, offset_;
};

// `in`: the inputs' dtype (x; saved and dy backward).
void check_streamed_activation(Activation a, bool backward, DType out, std::int64_t n,
                               std::int64_t offset, bool in_place, DType in = DType::f32) {
  const std::string what = std::string(actloss::to_string(a)) +
                           (backward ? " backward " : " forward ") + actloss::to_string(in) +
                           " -> " + actloss::to_string(out) + " offset " +
                           std::to_string(offset) + (in_place ? " in place" : "");
  SCOPED_TRACE(what);
  const ActivationOptions options{a, 0.01f};
  const std::vector<double> x = activation_inputs(n, 40 + offset);
  const std::vector<double> dy = uniform_values(static_cast<std::size_t>(n), -2, 2, 41);
  Buffer saved(in, n);
  for (std::int64_t i = 0; i < n; ++i) saved.set(i, x[i]);
  Offset results[2] = {Offset(out, n, offset), Offset(out, n, offset)};
  for (int side = 0; side < 2; ++side) {
    const actloss::Exec exec = side == 0 ? cpu_exec() : reference_exec();
    Offset& result = results[side];
    Status status;
    if (!backward) {
      Buffer input(in, n);
      if (in_place) {
        for (std::int64_t i = 0; i < n; ++i) result.set(i, x[i]);
      } else {
        for (std::int64_t i = 0; i < n; ++i) input.set(i, x[i]);
      }
      ActivationForwardArgs f;
      f.n = n;
      f.x = in_place ? result.data() : input.data();
      f.x_dtype = in_place ? out : in;
      f.y = result.data();
      f.y_dtype = out;
      status = actloss::activation_forward(f, options, exec);
    } else {
      Buffer dy_buffer(in, n);
      for (std::int64_t i = 0; i < n; ++i) {
        if (in_place) {
          result.set(i, dy[i]);
        } else {
          dy_buffer.set(i, dy[i]);
        }
      }
      ActivationBackwardArgs b;
      b.n = n;
      b.saved = saved.data();
      b.saved_dtype = in;
      b.dy = in_place ? result.data() : dy_buffer.data();
      b.dy_dtype = in_place ? out : in;
      b.dx = result.data();
      b.dx_dtype = out;
      status = actloss::activation_backward(b, options, exec);
    }
    ASSERT_TRUE(status.ok()) << status.message();
  }
  Comparison comparison(what);
  const Tol tol = tolerance(out, backward);
  for (std::int64_t i = 0; i < n; ++i)
    comparison.check(i, results[0].get(i), results[1].get(i), saved.get(i), tol);
  EXPECT_TRUE(results[0].surroundings_untouched()) << "written outside the output";
}

TEST(CpuActivation, LargeOutputsAtEveryAlignmentMatchReference) {
  // 4 MiB of f32 and a partial vector; 4 MiB of bf16 and a few elements.
  const std::int64_t f32_n = (std::int64_t{1} << 20) + 37, bf16_n = (std::int64_t{1} << 21) + 5;
  for_each_simd_target([&] {
    for (std::int64_t offset : {0, 1, 7, 15})
      check_streamed_activation(Activation::gelu_erf, false, DType::f32, f32_n, offset, false);
    check_streamed_activation(Activation::tanh, false, DType::f32, f32_n, 3, true);
    check_streamed_activation(Activation::silu, true, DType::f32, f32_n, 9, false);
    check_streamed_activation(Activation::sigmoid, true, DType::f32, f32_n, 0, true);
    check_streamed_activation(Activation::relu, false, DType::bf16, bf16_n, 3, false);
    check_streamed_activation(Activation::gelu_tanh, true, DType::bf16, bf16_n, 0, false);
    // Every operand of one 16-bit dtype: converted in registers, streamed as such.
    for (std::int64_t offset : {0, 5})
      check_streamed_activation(Activation::silu, false, DType::bf16, bf16_n, offset, false,
                                DType::bf16);
    check_streamed_activation(Activation::tanh, true, DType::f16, bf16_n, 11, false, DType::f16);
    check_streamed_activation(Activation::relu, true, DType::bf16, bf16_n, 1, true, DType::bf16);
  });
}

// SwiGLU over dense gate, up and gradients of 4 MiB, the gradients at the given offsets.
void check_streamed_swiglu(std::int64_t d_gate_offset, std::int64_t d_up_offset) {
  const std::int64_t n = (std::int64_t{1} << 20) + 3;
  SCOPED_TRACE("swiglu d_gate offset " + std::to_string(d_gate_offset) + ", d_up offset " +
               std::to_string(d_up_offset));
  const std::vector<double> gate = activation_inputs(n, 50);
  const std::vector<double> up = uniform_values(static_cast<std::size_t>(n), -3, 3, 51);
  const std::vector<double> dy = uniform_values(static_cast<std::size_t>(n), -2, 2, 52);
  Buffer gate_buffer(DType::f32, n), up_buffer(DType::f32, n), dy_buffer(DType::f32, n);
  for (std::int64_t i = 0; i < n; ++i) {
    gate_buffer.set(i, gate[i]);
    up_buffer.set(i, up[i]);
    dy_buffer.set(i, dy[i]);
  }
  Offset y[2] = {Offset(DType::f32, n, d_gate_offset), Offset(DType::f32, n, d_gate_offset)};
  Offset d_gate[2] = {Offset(DType::f32, n, d_gate_offset), Offset(DType::f32, n, d_gate_offset)};
  Offset d_up[2] = {Offset(DType::f32, n, d_up_offset), Offset(DType::f32, n, d_up_offset)};
  for (int side = 0; side < 2; ++side) {
    const actloss::Exec exec = side == 0 ? cpu_exec() : reference_exec();
    actloss::SwigluForwardArgs f;
    f.n = n;
    f.gate = gate_buffer.data();
    f.up = up_buffer.data();
    f.y = y[side].data();
    ASSERT_TRUE(actloss::swiglu_forward(f, exec).ok());
    actloss::SwigluBackwardArgs b;
    b.n = n;
    b.gate = gate_buffer.data();
    b.up = up_buffer.data();
    b.dy = dy_buffer.data();
    b.d_gate = d_gate[side].data();
    b.d_up = d_up[side].data();
    ASSERT_TRUE(actloss::swiglu_backward(b, exec).ok());
  }
  Comparison forward("swiglu y"), backward("swiglu d_gate/d_up");
  for (std::int64_t i = 0; i < n; ++i) {
    forward.check(i, y[0].get(i), y[1].get(i), gate[i], tolerance(DType::f32, false));
    backward.check(i, d_gate[0].get(i), d_gate[1].get(i), gate[i], tolerance(DType::f32, true));
    backward.check(i, d_up[0].get(i), d_up[1].get(i), gate[i], tolerance(DType::f32, true));
  }
  EXPECT_TRUE(y[0].surroundings_untouched());
  EXPECT_TRUE(d_gate[0].surroundings_untouched());
  EXPECT_TRUE(d_up[0].surroundings_untouched());
}

TEST(CpuSwiglu, LargeOutputsMatchReference) {
  for_each_simd_target([] {
    check_streamed_swiglu(0, 0);
    check_streamed_swiglu(5, 5);
    check_streamed_swiglu(2, 11);  // not equally misaligned: neither streamed
  });
}

// ---- thread counts ----------------------------------------------------------------------------

// Output bytes of one call on `threads` threads.
std::vector<unsigned char> activation_bytes(Activation a, bool backward, int threads,
                                            std::int64_t target) {
  SimdTargetScope scope(target, threads);
  const std::int64_t n = 70001;
  Buffer x(DType::f32, n), dy(DType::f32, n), out(DType::bf16, n);
  const std::vector<double> xs = activation_inputs(n, 5), dys = uniform_values(n, -2, 2, 6);
  for (std::int64_t i = 0; i < n; ++i) {
    x.set(i, xs[i]);
    dy.set(i, dys[i]);
  }
  const ActivationOptions options{a, 0.01f};
  if (!backward) {
    ActivationForwardArgs f;
    f.n = n;
    f.x = x.data();
    f.y = out.data();
    f.y_dtype = DType::bf16;
    EXPECT_TRUE(actloss::activation_forward(f, options, cpu_exec()).ok());
  } else {
    ActivationBackwardArgs b;
    b.n = n;
    b.saved = x.data();
    b.dy = dy.data();
    b.dx = out.data();
    b.dx_dtype = DType::bf16;
    EXPECT_TRUE(actloss::activation_backward(b, options, cpu_exec()).ok());
  }
  const auto* bytes = static_cast<const unsigned char*>(out.data());
  return {bytes, bytes + out.size_bytes()};
}

TEST(CpuActivation, SameBitsOnOneAndThreeThreads) {
  for (const std::int64_t target : runnable_simd_targets()) {
    SCOPED_TRACE(actloss::detail::cpu_simd_target_name(target));
    for (Activation a : kActivations)
      for (bool backward : {false, true}) {
        SCOPED_TRACE(std::string(actloss::to_string(a)) + (backward ? " backward" : " forward"));
        EXPECT_EQ(activation_bytes(a, backward, 1, target),
                  activation_bytes(a, backward, 3, target));
      }
  }
}

}  // namespace
}  // namespace api_test
