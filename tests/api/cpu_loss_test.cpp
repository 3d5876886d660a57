// MSE and BCE with logits on the SIMD CPU backend (Device::cpu) against the float64 reference
// (Device::reference), on every Highway target this processor runs and on 1 and 3 threads: every
// pass and reduction, dtypes, sizes across the vector widths, padded strides whose padding must
// stay untouched, weights, pos_weight, upstream gradients and special values; and reduced losses
// that are the same bits on 1 and 3 threads.
#include <actloss/bce.h>
#include <actloss/mse.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "tests/api/cpu_backend_support.h"
#include "tests/api/test_util.h"

namespace {

using namespace actloss;
using namespace api_test;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr DType kDtypes[] = {DType::f32, DType::f16, DType::bf16};
constexpr Pass kPasses[] = {Pass::forward, Pass::backward, Pass::forward_backward};
constexpr Reduction kReductions[] = {Reduction::none, Reduction::sum, Reduction::mean};
const std::int64_t kLengths[] = {1, 7, 15, 16, 17, 33, 1000, 50257};

// An output rounded once from a float result whose own error is at most `float_error` relative:
// the dtype's unit (the rounding may land on either neighbour of the exact value) plus that.
Tolerance output_tolerance(DType dtype, double float_error, double atol) {
  switch (dtype) {
    case DType::f32:
      return {atol, 0x1p-24 + float_error};
    case DType::f16:
      return {std::max(atol, 0x1p-24), 0x1p-10 + float_error};
    case DType::bf16:
      return {std::max(atol, 0x1p-133), 0x1p-7 + float_error};
  }
  return {0, 0};
}

// Fills rows x cols of a buffer with row stride `stride` (the rest stays poison).
Buffer matrix(DType dtype, std::int64_t rows, std::int64_t cols, std::int64_t stride,
              const std::vector<double>& values) {
  Buffer buffer(dtype, rows * stride);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      buffer.set(r * stride + c, values[static_cast<std::size_t>(r * cols + c)]);
  return buffer;
}

void expect_matrix_matches(const Buffer& got, const Buffer& want, std::int64_t rows,
                           std::int64_t cols, std::int64_t stride, Tolerance tol,
                           const char* name) {
  int failures = 0;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < stride; ++c) {
      const std::int64_t i = r * stride + c;
      if (c >= cols) {
        if (!got.untouched(i) && failures++ < 5)
          ADD_FAILURE() << name << " padding " << i << " written";
        continue;
      }
      const auto result = close(got.get(i), want.get(i), tol);
      if (!result && failures++ < 5)
        ADD_FAILURE() << name << " [" << r << "," << c << "]: " << result.message();
    }
  EXPECT_EQ(failures, 0) << name;
}

// ---- MSE --------------------------------------------------------------------------------------

struct MseCase {
  Pass pass = Pass::forward_backward;
  Reduction reduction = Reduction::mean;
  DType input = DType::f32, target = DType::f32, grad = DType::f32;
  std::int64_t rows = 1, n = 1, pad = 0;
  bool upstream = false;
  float grad_scale = 1.0f;
};

struct MseOutputs {
  Buffer loss, grad;
};

MseOutputs run_mse(Device device, const MseCase& c, const Buffer& input, const Buffer& target,
                   const std::vector<float>& upstream) {
  const std::int64_t count = c.rows * c.n;
  MseOutputs out{Buffer(DType::f32, c.reduction == Reduction::none ? count : 1),
                 Buffer(c.grad, c.rows * (c.n + c.pad))};
  MseArgs args;
  args.rows = c.rows;
  args.n = c.n;
  args.input = input.data();
  args.input_dtype = c.input;
  args.input_row_stride = c.n + c.pad;
  args.target = target.data();
  args.target_dtype = c.target;
  args.target_row_stride = c.n + c.pad + 1;
  args.loss = out.loss.f32();
  args.grad = out.grad.data();
  args.grad_dtype = c.grad;
  args.grad_row_stride = c.n + c.pad;
  args.grad_scale = c.grad_scale;
  args.upstream_grad = c.upstream ? upstream.data() : nullptr;
  MseOptions options;
  options.reduction = c.reduction;
  Exec exec;
  exec.device = device;
  Status status;
  switch (c.pass) {
    case Pass::forward:
      status = mse_forward(args, options, exec);
      break;
    case Pass::backward:
      status = mse_backward(args, options, exec);
      break;
    case Pass::forward_backward:
      status = mse_forward_backward(args, options, exec);
      break;
  }
  EXPECT_TRUE(status.ok()) << status.message();
  return out;
}

// The backend takes x - t, the squares, their sum and the gradient in double, each rounded once
// into float (and the gradient once more into its dtype): rtol 2^-23 covers the one rounding with
// room; the 16-bit gradient adds its own unit.
void check_mse(const MseCase& c, const std::vector<double>& input_values,
               const std::vector<double>& target_values) {
  const std::int64_t count = c.rows * c.n;
  const Buffer input = matrix(c.input, c.rows, c.n, c.n + c.pad, input_values);
  const Buffer target = matrix(c.target, c.rows, c.n, c.n + c.pad + 1, target_values);
  std::vector<float> upstream;
  for (double v : uniform_values(
           static_cast<std::size_t>(c.reduction == Reduction::none ? count : 1), -2.0, 2.0, 77))
    upstream.push_back(static_cast<float>(v));
  const MseOutputs want = run_mse(Device::reference, c, input, target, upstream);
  for_each_simd_target([&] {
    const MseOutputs got = run_mse(Device::cpu, c, input, target, upstream);
    if (c.pass != Pass::backward) {
      expect_matrix_matches(got.loss, want.loss, 1, got.loss.size_bytes() / 4,
                            got.loss.size_bytes() / 4, {0x1p-149, 0x1p-23}, "loss");
    }
    if (c.pass != Pass::forward) {
      expect_matrix_matches(got.grad, want.grad, c.rows, c.n, c.n + c.pad,
                            output_tolerance(c.grad, 0x1p-24, 0x1p-149), "grad");
    } else {
      for (std::int64_t i = 0; i < c.rows * (c.n + c.pad); ++i) ASSERT_TRUE(got.grad.untouched(i));
    }
  });
}

TEST(CpuMse, EveryPassReductionDtypeAndLength) {
  int k = 0;
  for (const std::int64_t n : kLengths) {
    const std::int64_t rows = n > 1000 ? 2 : 3;
    const auto count = static_cast<std::size_t>(rows * n);
    const std::vector<double> input = uniform_values(count, -3.0, 3.0, 1 + std::uint64_t(n));
    const std::vector<double> target = uniform_values(count, -3.0, 3.0, 2 + std::uint64_t(n));
    for (Pass pass : kPasses)
      for (Reduction reduction : kReductions) {
        MseCase c;
        c.pass = pass;
        c.reduction = reduction;
        c.rows = rows;
        c.n = n;
        c.pad = k % 3;  // 0: one dense row of rows * n; else strided rows
        c.input = kDtypes[k % 3];
        c.target = kDtypes[(k / 3) % 3];
        c.grad = kDtypes[(k / 9) % 3];
        c.upstream = k % 2 == 1;
        c.grad_scale = k % 4 == 0 ? 0.5f : 1.0f;
        SCOPED_TRACE(std::string(pass_name(pass)) + " " + to_string(reduction) + " n " +
                     std::to_string(n) + " pad " + std::to_string(c.pad) + " " +
                     to_string(c.input) + "/" + to_string(c.target) + "->" + to_string(c.grad) +
                     (c.upstream ? " upstream" : ""));
        check_mse(c, input, target);
        ++k;
      }
  }
}

TEST(CpuMse, LargeGradientsStreamedAtEveryRowAlignment) {
  // Gradients of 4 MiB and more go out with non-temporal stores from each row's first
  // vector-aligned element on: 4099 columns and 3 elements of padding start successive rows 3
  // elements further along; the padding must stay untouched. f32: 260 rows, 4.3 MB; bf16 twice
  // the rows. The fused pass's reduced loss takes the same vectors as the forward's, which
  // writes no gradient: the same bits.
  for (const DType grad : {DType::f32, DType::bf16}) {
    MseCase c;
    c.reduction = Reduction::sum;
    c.rows = grad == DType::f32 ? 260 : 520;
    c.n = 4099;
    c.pad = 3;
    c.grad = grad;
    const auto count = static_cast<std::size_t>(c.rows * c.n);
    const std::vector<double> input = uniform_values(count, -3.0, 3.0, 71);
    const std::vector<double> target = uniform_values(count, -3.0, 3.0, 72);
    SCOPED_TRACE(std::string("grad ") + to_string(grad));
    check_mse(c, input, target);
    const Buffer in = matrix(c.input, c.rows, c.n, c.n + c.pad, input);
    const Buffer tg = matrix(c.target, c.rows, c.n, c.n + c.pad + 1, target);
    const MseOutputs fused = run_mse(Device::cpu, c, in, tg, {});
    c.pass = Pass::forward;
    const MseOutputs forward = run_mse(Device::cpu, c, in, tg, {});
    EXPECT_EQ(fused.loss.get_raw<std::uint32_t>(0), forward.loss.get_raw<std::uint32_t>(0));
  }
}

TEST(CpuMse, SpecialValues) {
  // NaN and infinities in either tensor, differences of +-3e38 (beyond float's range, while the
  // gradient of the pair is finite), and 1e20 apart (a square beyond float's range).
  const std::vector<double> input = {kNaN, 1.0, kInf,  kInf, 3e38, -3e38,
                                     1e20, 0.0, -kInf, 2.0,  5.0};
  const std::vector<double> target = {1.0,   kNaN, 1.0, kInf, -3e38, 3e38,
                                      -1e20, 0.0,  1.0, 2.0,  -5.0};
  for (Reduction reduction : kReductions) {
    MseCase c;
    c.reduction = reduction;
    c.n = static_cast<std::int64_t>(input.size());
    c.grad_scale = 1e-30f;  // so that 2 (x - t) of the 3e38 pairs comes back into range
    SCOPED_TRACE(to_string(reduction));
    check_mse(c, input, target);
  }
}

// ---- BCE --------------------------------------------------------------------------------------

struct BceCase {
  Pass pass = Pass::forward_backward;
  Reduction reduction = Reduction::mean;
  DType logits = DType::f32, targets = DType::f32, weight = DType::f32, grad = DType::f32;
  std::int64_t rows = 1, cols = 1, pad = 0;
  bool pos_weight = false, weight_present = false, upstream = false;
  BceWeightShape weight_shape = BceWeightShape::full;
  float grad_scale = 1.0f;
};

struct BceOutputs {
  Buffer loss, grad;
};

struct BceInputs {
  Buffer logits, targets, weight;
  std::vector<float> pos_weight, upstream;
};

BceOutputs run_bce(Device device, const BceCase& c, const BceInputs& in) {
  const std::int64_t count = c.rows * c.cols;
  BceOutputs out{Buffer(DType::f32, c.reduction == Reduction::none ? count : 1),
                 Buffer(c.grad, c.rows * (c.cols + c.pad))};
  BceArgs args;
  args.rows = c.rows;
  args.cols = c.cols;
  args.logits = in.logits.data();
  args.logits_dtype = c.logits;
  args.logits_row_stride = c.cols + c.pad;
  args.targets = in.targets.data();
  args.target_dtype = c.targets;
  args.target_row_stride = c.cols + 2 * c.pad;
  args.pos_weight = c.pos_weight ? in.pos_weight.data() : nullptr;
  if (c.weight_present) {
    args.weight = in.weight.data();
    args.weight_dtype = c.weight;
    args.weight_shape = c.weight_shape;
    args.weight_row_stride = c.weight_shape == BceWeightShape::full ? c.cols + c.pad : 0;
  }
  args.loss = out.loss.f32();
  args.grad = out.grad.data();
  args.grad_dtype = c.grad;
  args.grad_row_stride = c.cols + c.pad;
  args.grad_scale = c.grad_scale;
  args.upstream_grad = c.upstream ? in.upstream.data() : nullptr;
  BceOptions options;
  options.reduction = c.reduction;
  Exec exec;
  exec.device = device;
  Status status;
  switch (c.pass) {
    case Pass::forward:
      status = bce_with_logits_forward(args, options, exec);
      break;
    case Pass::backward:
      status = bce_with_logits_backward(args, options, exec);
      break;
    case Pass::forward_backward:
      status = bce_with_logits_forward_backward(args, options, exec);
      break;
  }
  EXPECT_TRUE(status.ok()) << status.message();
  return out;
}

BceInputs bce_inputs(const BceCase& c, const std::vector<double>& logits,
                     const std::vector<double>& targets, std::uint64_t seed) {
  BceInputs in;
  in.logits = matrix(c.logits, c.rows, c.cols, c.cols + c.pad, logits);
  in.targets = matrix(c.targets, c.rows, c.cols, c.cols + 2 * c.pad, targets);
  const std::int64_t count = c.rows * c.cols;
  switch (c.weight_shape) {
    case BceWeightShape::full:
      in.weight = matrix(c.weight, c.rows, c.cols, c.cols + c.pad,
                         uniform_values(static_cast<std::size_t>(count), 0.0, 2.0, seed));
      break;
    case BceWeightShape::per_column:
      in.weight = matrix(c.weight, 1, c.cols, c.cols,
                         uniform_values(static_cast<std::size_t>(c.cols), 0.0, 2.0, seed));
      break;
    case BceWeightShape::per_row:
      in.weight = matrix(c.weight, 1, c.rows, c.rows,
                         uniform_values(static_cast<std::size_t>(c.rows), 0.0, 2.0, seed));
      break;
  }
  for (double v : uniform_values(static_cast<std::size_t>(c.cols), 0.0, 3.0, seed + 1))
    in.pos_weight.push_back(static_cast<float>(v));
  for (double v :
       uniform_values(static_cast<std::size_t>(c.reduction == Reduction::none ? count : 1), -2.0,
                      2.0, seed + 2))
    in.upstream.push_back(static_cast<float>(v));
  return in;
}

// Float math as the kernels' (validation/bce.cpp's bounds): each softplus 7u, the loss 11u more,
// all of its terms non-negative: rtol 2^-19 (32u) of the loss and of a sum of losses, 2^-140
// absolute where a term is below float's normal range. The gradient's two sides cancel near the
// optimum: their errors (about 20u of each side, each side at most w max(1, pw) <= 2 * 3 times
// the coefficient) are absolute, so atol = 2^-18 * 6 * |grad_scale| * max |upstream| /
// denominator; rtol 2^-21 for its own roundings, plus the 16-bit output's unit.
void check_bce(const BceCase& c, const BceInputs& in) {
  const BceOutputs want = run_bce(Device::reference, c, in);
  const double denominator =
      c.reduction == Reduction::mean ? static_cast<double>(c.rows * c.cols) : 1.0;
  const double grad_atol =
      0x1p-18 * 6.0 * std::fabs(c.grad_scale) * (c.upstream ? 2.0 : 1.0) / denominator;
  for_each_simd_target([&] {
    const BceOutputs got = run_bce(Device::cpu, c, in);
    if (c.pass != Pass::backward) {
      const std::int64_t n = got.loss.size_bytes() / 4;
      expect_matrix_matches(got.loss, want.loss, 1, n, n, {0x1p-140, 0x1p-19}, "loss");
    }
    if (c.pass != Pass::forward) {
      expect_matrix_matches(got.grad, want.grad, c.rows, c.cols, c.cols + c.pad,
                            output_tolerance(c.grad, 0x1p-21, grad_atol), "grad");
    }
  });
}

TEST(CpuBce, EveryPassReductionOptionDtypeAndLength) {
  const BceWeightShape kShapes[] = {BceWeightShape::full, BceWeightShape::per_column,
                                    BceWeightShape::per_row};
  int k = 0;
  for (const std::int64_t cols : kLengths) {
    const std::int64_t rows = cols > 1000 ? 2 : 3;
    const auto count = static_cast<std::size_t>(rows * cols);
    const std::vector<double> logits = uniform_values(count, -12.0, 12.0, 10 + std::uint64_t(cols));
    std::vector<double> targets = uniform_values(count, 0.0, 1.0, 20 + std::uint64_t(cols));
    for (std::size_t i = 0; i < count; i += 3) targets[i] = double(i % 2);  // hard labels too
    for (Pass pass : kPasses)
      for (Reduction reduction : kReductions) {
        BceCase c;
        c.pass = pass;
        c.reduction = reduction;
        c.rows = rows;
        c.cols = cols;
        c.pad = k % 3;
        c.logits = kDtypes[k % 3];
        c.targets = kDtypes[(k / 3) % 3];
        c.weight = kDtypes[(k / 2) % 3];
        c.grad = kDtypes[(k / 9) % 3];
        c.pos_weight = k % 2 == 0;
        c.weight_present = k % 4 != 3;
        c.weight_shape = kShapes[(k / 4) % 3];
        c.upstream = k % 5 < 2;
        c.grad_scale = k % 7 == 0 ? 3.0f : 1.0f;
        SCOPED_TRACE(std::string(pass_name(pass)) + " " + to_string(reduction) + " cols " +
                     std::to_string(cols) + " pad " + std::to_string(c.pad) + " case " +
                     std::to_string(k));
        check_bce(c, bce_inputs(c, logits, targets, 30 + std::uint64_t(k)));
        ++k;
      }
  }
}

TEST(CpuBce, LargeOutputsStreamedAtEveryRowAlignment) {
  // Outputs of 4 MiB and more are stored with non-temporal stores from the first vector-aligned
  // element of each block on. 4099 columns start successive rows 3 (grad, padded) or 1 (the
  // dense per-element loss) elements further along, so the blocks meet every alignment; the
  // gradient's padding must stay untouched. f32: 260 rows, 4.3 MB; bf16: twice the rows.
  for (const DType grad : {DType::f32, DType::bf16}) {
    BceCase c;
    c.reduction = Reduction::none;
    c.rows = grad == DType::f32 ? 260 : 520;
    c.cols = 4099;
    c.pad = 3;
    c.grad = grad;
    c.upstream = true;
    const auto count = static_cast<std::size_t>(c.rows * c.cols);
    SCOPED_TRACE(std::string("grad ") + to_string(grad));
    check_bce(c, bce_inputs(c, uniform_values(count, -12.0, 12.0, 61),
                            uniform_values(count, 0.0, 1.0, 62), 63));
  }
}

TEST(CpuBce, SpecialValues) {
  // NaN and infinite logits and targets, zero targets on infinite softplus (the limit 0, not
  // NaN), +-3e38 and -120 logits with a pos_weight (finite where PyTorch's form overflows), and
  // weights that take a loss past float's range (the scaled path) on finite logits.
  const std::vector<double> logits = {kNaN, 1.0,   kInf, -kInf, kInf, -kInf, 3e38, -3e38, -120,
                                      2e38, -3e38, 0.0,  -30,   30,   5.0,   -5.0, 1e-3};
  const std::vector<double> targets = {0.5, kNaN, 0.0, 1.0, 1.0, 0.0, 0.5, 0.5, 1.0,
                                       0.0, 1.0,  0.5, 0.0, 1.0, 1.0, 0.0, 0.3};
  for (Reduction reduction : kReductions)
    for (bool weighted : {false, true}) {
      BceCase c;
      c.reduction = reduction;
      c.cols = static_cast<std::int64_t>(logits.size());
      c.pos_weight = true;
      c.weight_present = weighted;
      SCOPED_TRACE(std::string(to_string(reduction)) + (weighted ? " weighted" : ""));
      BceInputs in = bce_inputs(c, logits, targets, 5);
      if (weighted) {
        for (std::int64_t i = 0; i < c.cols; ++i) in.weight.set(i, 3.0);  // 3 * 3e38 > FLT_MAX
      }
      check_bce(c, in);
    }
}

TEST(CpuBce, LoneNanAmongOrdinaryValues) {
  // A NaN logit or target in a vector of ordinary elements must still give a NaN loss (and
  // gradient), and a NaN sum: the fast path's plain formula would not notice a NaN logit by its
  // loss alone (the max of NaN and 0 is 0 on x86).
  const std::int64_t cols = 40;
  std::vector<double> logits = uniform_values(cols, -3.0, 3.0, 50);
  std::vector<double> targets = uniform_values(cols, 0.0, 1.0, 51);
  logits[20] = kNaN;
  targets[33] = kNaN;
  for (Reduction reduction : kReductions) {
    BceCase c;
    c.reduction = reduction;
    c.cols = cols;
    SCOPED_TRACE(to_string(reduction));
    check_bce(c, bce_inputs(c, logits, targets, 52));
  }
}

// ---- Reduced losses on any thread count ---------------------------------------------------------

TEST(CpuLoss, ReducedLossesAreTheSameBitsOnOneAndThreeThreads) {
  // Long enough for many tasks of the fixed size, with strided rows whose ends fall anywhere in
  // a task.
  const std::int64_t rows = 61, cols = 5003;
  const auto count = static_cast<std::size_t>(rows * cols);
  const std::vector<double> a = uniform_values(count, -6.0, 6.0, 41);
  const std::vector<double> b = uniform_values(count, 0.0, 1.0, 42);
  for (Reduction reduction : {Reduction::sum, Reduction::mean}) {
    SCOPED_TRACE(to_string(reduction));
    MseCase m;
    m.reduction = reduction;
    m.rows = rows;
    m.n = cols;
    m.pad = 5;
    const Buffer input = matrix(m.input, rows, cols, cols + m.pad, a);
    const Buffer target = matrix(m.target, rows, cols, cols + m.pad + 1, b);
    BceCase c;
    c.reduction = reduction;
    c.rows = rows;
    c.cols = cols;
    c.pad = 3;
    c.pos_weight = true;
    c.weight_present = true;
    const BceInputs in = bce_inputs(c, a, b, 43);
    for (const std::int64_t target_bits : runnable_simd_targets()) {
      std::vector<float> mse_losses, bce_losses;
      for (const int threads : {1, 3}) {
        SimdTargetScope scope(target_bits, threads);
        mse_losses.push_back(run_mse(Device::cpu, m, input, target, {}).loss.f32()[0]);
        bce_losses.push_back(run_bce(Device::cpu, c, in).loss.f32()[0]);
      }
      EXPECT_EQ(mse_losses[0], mse_losses[1]);
      EXPECT_EQ(bce_losses[0], bce_losses[1]);
    }
  }
}

TEST(CpuLoss, NoElementsWritesAZeroReducedLoss) {
  for (Reduction reduction : {Reduction::sum, Reduction::mean}) {
    float loss = 7.0f;
    MseArgs mse;
    mse.rows = 0;
    mse.n = 5;
    mse.loss = &loss;
    MseOptions mse_options;
    mse_options.reduction = reduction;
    ASSERT_TRUE(mse_forward(mse, mse_options, cpu_exec()).ok());
    EXPECT_EQ(loss, 0.0f);
    loss = 7.0f;
    BceArgs bce;
    bce.rows = 4;
    bce.cols = 0;
    bce.loss = &loss;
    BceOptions bce_options;
    bce_options.reduction = reduction;
    ASSERT_TRUE(bce_with_logits_forward(bce, bce_options, cpu_exec()).ok());
    EXPECT_EQ(loss, 0.0f);
  }
}

}  // namespace
