// BCE with logits on Device::cuda against the float64 reference (host/reference/reference.h),
// through the public API: shapes {1, 2, 33, 257} x {1, 15, 16, 17, 1025} under every pass and
// reduction, with the dtypes, row strides, misalignment (base + 1 element forces the scalar path),
// weight, pos_weight and upstream gradient varied across the cases; the vector path with row
// tails; adversarial logits (+-120 with pos_weight, |x| >= 20, +-inf, NaN); bitwise reproducible
// sums; the multi-step grid-stride path; no elements. Outputs start poisoned (NaN), so an element
// not written fails, and the padding between strided rows must stay poisoned.
//
// Tolerances are |actual - expected| <= atol + rtol |expected|, expected being the reference
// rounded once to the output dtype:
//  * per-element loss (always f32): exp and log1p of exact arguments plus about eight roundings
//    of non-negative terms (weights, pos_weight and targets are non-negative here): rtol 2^-19;
//    atol 1e-40 for float's subnormal range.
//  * sum / mean: packs of 8 added in float, packs in double: rtol 2^-18.
//  * gradient w ((1 - y) s(x) - pw y s(-x)) * grad_scale / denominator * upstream: the two terms
//    cancel near the optimum, so the error is relative to their size, not the result's: atol
//    2^-21 * max|w| * max(1, pw) * max|upstream| * grad_scale / denominator, plus rtol 2^-19.
//    f16 / bf16 gradients add one unit in the last place (2^-10, 2^-7; 2^-24 absolute at f16's
//    subnormals, where the mean's small gradients land), because the kernel rounds float to the
//    dtype and the reference rounds double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <actloss/bce.h>

#include "host/reference/reference.h"
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr float kGradScale = 0.75f;


struct Dtypes {
  DType logits, targets, weight, grad;
};
const Dtypes kDtypes[] = {{DType::f32, DType::f32, DType::f32, DType::f32},
                          {DType::f16, DType::f16, DType::f16, DType::f16},
                          {DType::bf16, DType::bf16, DType::bf16, DType::bf16},
                          {DType::bf16, DType::f16, DType::f32, DType::f16}};

// How each strided tensor's rows are laid out.
enum class Layout { dense, stride_multiple_of_8, stride_plus_3 };

std::int64_t stride_for(Layout layout, std::int64_t cols) {
  switch (layout) {
    case Layout::dense: return cols;
    case Layout::stride_multiple_of_8: return (cols + 7) / 8 * 8 + 8;
    case Layout::stride_plus_3: return cols + 3;
  }
  return cols;
}

struct Case {
  Pass pass = Pass::forward_backward;
  Reduction reduction = Reduction::mean;
  Dtypes dtypes = kDtypes[0];
  std::int64_t rows = 0, cols = 0;
  Layout layout = Layout::dense;
  std::int64_t offset = 0;
  bool with_weight = false, with_pos_weight = false, with_upstream = false;
  bool with_loss = true;  // forward_backward only: the loss is optional there
};

std::string describe(const Case& c) {
  const Dtypes& d = c.dtypes;
  return std::string(to_string(c.pass)) + " " + actloss::to_string(c.reduction) + " " +
         std::to_string(c.rows) + "x" + std::to_string(c.cols) + " stride " +
         std::to_string(stride_for(c.layout, c.cols)) + " offset " + std::to_string(c.offset) +
         " " + actloss::to_string(d.logits) + "/" + actloss::to_string(d.targets) + "/" +
         actloss::to_string(d.weight) + "->" + actloss::to_string(d.grad) +
         (c.with_weight ? " weight" : "") + (c.with_pos_weight ? " pos_weight" : "") +
         (c.with_upstream ? " upstream" : "") +
         (c.pass != Pass::forward_backward || c.with_loss ? "" : " no-loss");
}

struct Data {
  std::vector<double> logits, targets, weight, pos_weight, upstream;
};

// Finite values (a NaN would make every sum NaN and the check of the reduction empty; NaN and
// inf have their own test). Logits uniform in [-8, 8] with +-120, +-88, +-40, +-25, +-20, signed
// zeros, subnormals and f16's large values planted; targets in [0, 1] with many exact 0 and 1;
// weights in [0, 2] with zeros; pos_weight in [0.5, 4] with a 0 and a 1.
Data make_data(std::int64_t rows, std::int64_t cols, Reduction reduction, std::uint64_t seed) {
  static const double kSpecials[] = {120.0, -120.0, 88.0, -88.0, 40.0, -40.0, 25.0,  -25.0,
                                     20.0,  -20.0,  0.0,  -0.0,  1e-40, 3e-6, 6e4,   -6e4};
  const auto n = static_cast<std::size_t>(rows * cols);
  Data d;
  d.logits = random_values(n, -8.0, 8.0, seed);
  std::size_t k = 0;
  for (std::size_t i = 1; i < n; i += 5, ++k) d.logits[i] = kSpecials[k % std::size(kSpecials)];
  d.targets = random_values(n, 0.0, 1.0, seed + 1);
  for (std::size_t i = 0; i < n; i += 3) d.targets[i] = static_cast<double>((i / 3) % 2);
  d.weight = random_values(n, 0.0, 2.0, seed + 2);
  for (std::size_t i = 4; i < n; i += 9) d.weight[i] = 0.0;
  d.pos_weight = random_values(static_cast<std::size_t>(cols), 0.5, 4.0, seed + 3);
  if (cols > 3) d.pos_weight[3] = 0.0;
  if (cols > 5) d.pos_weight[5] = 1.0;
  d.upstream = random_values(reduction == Reduction::none ? n : 1, -2.0, 2.0, seed + 4);
  return d;
}

Tolerance output_rounding(DType dtype, Tolerance t) {
  if (dtype == DType::f16) {
    t.rtol += std::ldexp(1.0, -10);
    t.atol = std::max(t.atol, std::ldexp(1.0, -24));
  } else if (dtype == DType::bf16) {
    t.rtol += std::ldexp(1.0, -7);
    t.atol = std::max(t.atol, std::ldexp(1.0, -133));
  }
  return t;
}

double max_abs(const std::vector<double>& v, double if_empty) {
  if (v.empty()) return if_empty;
  double m = 0.0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

const Tolerance kElementLoss{1e-40, std::ldexp(1.0, -19)};
const Tolerance kReducedLoss{0.0, std::ldexp(1.0, -18)};

Status call(Pass pass, const BceArgs& args, Reduction reduction) {
  const BceOptions options{reduction};
  switch (pass) {
    case Pass::forward: return bce_with_logits_forward(args, options, cuda_exec());
    case Pass::backward: return bce_with_logits_backward(args, options, cuda_exec());
    case Pass::forward_backward:
      return bce_with_logits_forward_backward(args, options, cuda_exec());
  }
  return Status(StatusCode::internal, "", "bad pass");
}

bool all_poison(const DeviceMatrix& m) {
  const std::vector<std::uint8_t> bytes = m.buffer.download_bytes();
  return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == kPoisonByte; });
}

// Runs one case and checks every output it should (and should not) write; returns the raw bits
// of a reduced loss (0 otherwise) for the reproducibility checks.
std::uint32_t check(const Case& c, const Data& data) {
  SCOPED_TRACE(describe(c));
  const bool wants_loss =
      c.pass == Pass::forward || (c.pass == Pass::forward_backward && c.with_loss);
  const bool wants_grad = c.pass != Pass::forward;
  const bool per_element = c.reduction == Reduction::none;
  const Dtypes& d = c.dtypes;
  const std::int64_t rows = c.rows, cols = c.cols, stride = stride_for(c.layout, cols);

  const std::vector<double> logits = quantize(data.logits, d.logits);
  const std::vector<double> targets = quantize(data.targets, d.targets);
  const std::vector<double> weight = quantize(data.weight, d.weight);
  const std::vector<double> pos_weight = quantize(data.pos_weight, DType::f32);
  const std::vector<double> up = quantize(data.upstream, DType::f32);

  const DeviceMatrix logits_dev = upload_matrix(logits, rows, cols, d.logits, stride, c.offset);
  const DeviceMatrix targets_dev = upload_matrix(targets, rows, cols, d.targets, stride, c.offset);
  const DeviceMatrix weight_dev = upload_matrix(weight, rows, cols, d.weight, stride, c.offset);
  const DeviceMatrix pos_weight_dev = upload_matrix(pos_weight, 1, cols, DType::f32, 0, c.offset);
  const DeviceMatrix up_dev =
      per_element ? upload_matrix(up, rows, cols, DType::f32, 0, c.offset)
                  : upload_matrix(up, 1, 1, DType::f32, 0, c.offset);
  const DeviceMatrix loss_dev = per_element ? poisoned_matrix(rows, cols, DType::f32, 0, c.offset)
                                            : poisoned_matrix(1, 1, DType::f32, 0, c.offset);
  const DeviceMatrix grad_dev = poisoned_matrix(rows, cols, d.grad, stride, c.offset);

  BceArgs args;
  args.rows = rows;
  args.cols = cols;
  args.logits = logits_dev.data();
  args.logits_dtype = d.logits;
  args.logits_row_stride = stride;
  args.targets = targets_dev.data();
  args.target_dtype = d.targets;
  args.target_row_stride = stride;
  if (c.with_weight) {
    args.weight = weight_dev.data();
    args.weight_dtype = d.weight;
    args.weight_row_stride = stride;
  }
  if (c.with_pos_weight) args.pos_weight = static_cast<const float*>(pos_weight_dev.data());
  if (wants_loss) args.loss = static_cast<float*>(loss_dev.data());
  if (wants_grad) {
    args.grad = grad_dev.data();
    args.grad_dtype = d.grad;
    args.grad_row_stride = stride;
    args.grad_scale = kGradScale;
    if (c.with_upstream) args.upstream_grad = static_cast<const float*>(up_dev.data());
  }
  const Status status = call(c.pass, args, c.reduction);
  EXPECT_TRUE(status.ok()) << status.message();
  if (!status.ok()) return 0;
  synchronize_or_fail();

  ref::BceProblem problem;
  problem.rows = rows;
  problem.cols = cols;
  problem.logits = logits;
  problem.targets = targets;
  if (c.with_pos_weight) problem.pos_weight = pos_weight;
  if (c.with_weight) problem.weight = weight;
  problem.reduction = to_ref(c.reduction);
  problem.grad_scale = kGradScale;
  if (c.with_upstream) problem.upstream = up;
  const ref::BceResult expected = ref::bce_with_logits(problem);

  std::uint32_t loss_bits = 0;
  if (!wants_loss) {
    EXPECT_TRUE(all_poison(loss_dev)) << "loss written although not asked for";
  } else if (per_element) {
    EXPECT_TRUE(all_close(loss_dev.download(), quantize(expected.elem_loss, DType::f32),
                          kElementLoss, "loss"));
  } else {
    const std::vector<double> loss = loss_dev.download();
    EXPECT_TRUE(all_close(loss, quantize({expected.loss}, DType::f32), kReducedLoss, "loss"));
    const float value = static_cast<float>(loss[0]);
    std::memcpy(&loss_bits, &value, sizeof value);
  }
  EXPECT_TRUE(loss_dev.padding_intact());

  if (wants_grad) {
    const double denominator =
        c.reduction == Reduction::mean && rows * cols > 0 ? static_cast<double>(rows * cols) : 1.0;
    const double scale = (c.with_weight ? max_abs(weight, 1.0) : 1.0) *
                         std::max(1.0, c.with_pos_weight ? max_abs(pos_weight, 1.0) : 1.0) *
                         (c.with_upstream ? max_abs(up, 1.0) : 1.0) * kGradScale / denominator;
    const Tolerance grad_tolerance{std::ldexp(scale, -21), std::ldexp(1.0, -19)};
    EXPECT_TRUE(all_close(grad_dev.download(), quantize(expected.grad, d.grad),
                          output_rounding(d.grad, grad_tolerance), "grad"));
    EXPECT_TRUE(grad_dev.padding_intact());
  } else {
    EXPECT_TRUE(all_poison(grad_dev)) << "grad written although not asked for";
  }
  return loss_bits;
}

// Every shape under every pass and reduction; the other options cycle with the case number so
// that each value of each meets many shapes.
TEST(CudaBce, ShapesPassesAndReductions) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const Layout layouts[] = {Layout::dense, Layout::stride_multiple_of_8, Layout::stride_plus_3};
  int i = 0;
  for (std::int64_t rows : {1, 2, 33, 257})
    for (std::int64_t cols : {1, 15, 16, 17, 1025})
      for (Pass pass : kPasses)
        for (Reduction reduction : kReductions) {
          Case c;
          c.pass = pass;
          c.reduction = reduction;
          c.rows = rows;
          c.cols = cols;
          c.dtypes = kDtypes[i % 4];
          c.layout = layouts[i % 3];
          c.offset = (i / 5) % 2;
          c.with_weight = i % 2 == 0;
          c.with_pos_weight = (i / 2) % 2 == 0;
          c.with_upstream = (i / 3) % 2 == 0;
          c.with_loss = (i / 7) % 3 != 0;
          check(c, make_data(rows, cols, reduction, 10 + static_cast<std::uint64_t>(i)));
          ++i;
        }
}

// Every dtype combination with everything present, aligned so that full packs take the vector
// path while each row ends in a partial pack (cols 17, stride 24), and misaligned.
TEST(CudaBce, EveryDtypeCombinationVectorAndScalar) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Dtypes dtypes : kDtypes)
    for (Reduction reduction : kReductions)
      for (std::int64_t offset : {0, 1}) {
        Case c;
        c.reduction = reduction;
        c.dtypes = dtypes;
        c.rows = 33;
        c.cols = 17;
        c.layout = Layout::stride_multiple_of_8;
        c.offset = offset;
        c.with_weight = c.with_pos_weight = c.with_upstream = true;
        check(c, make_data(c.rows, c.cols, reduction, 20));
      }
}

// The loss and gradient stay finite and right for any finite logit, including x = -120 with
// pos_weight (where PyTorch's formula has overflowed); infinities follow the reference's 0 * inf
// = 0 convention for a zero coefficient; NaN propagates to its element and to the sum.
TEST(CudaBce, AdversarialLogits) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const std::vector<double> x = {-120, -120, 120, 120, -20, 20, -100, 100,
                                 kInf, kInf, -kInf, -kInf, 1e-40, 0.0, kNaN, 3.0};
  const std::vector<double> y = {1, 0, 0, 1, 0, 1, 0.5, 0.5, 1, 0, 0, 1, 1, 0.25, 1, 0};
  for (Reduction reduction : kReductions) {
    Case c;
    c.reduction = reduction;
    c.rows = 2;
    c.cols = 8;
    c.with_pos_weight = true;
    Data data;
    data.logits = x;
    data.targets = y;
    data.weight.assign(16, 1.0);
    data.pos_weight = {3.0, 0.5, 5.0, 2.0, 1.0, 4.0, 7.0, 1.5};
    data.upstream.assign(reduction == Reduction::none ? 16 : 1, 1.0);
    check(c, data);
    // The same without the NaN: sums and means must be finite or +inf, never NaN.
    data.logits[14] = 2.0;
    check(c, data);
  }
  // Hand values of the finite cases, f32: loss(-120, y=1, pw=3) = 3 softplus(120) = 360 and its
  // gradient -3 sigmoid(120) = -3; loss(-120, y=0) = softplus(-120) = 7.7e-53, 0 in float.
  const DeviceMatrix logits = upload_matrix({-120.0, -120.0}, 1, 2, DType::f32);
  const DeviceMatrix targets = upload_matrix({1.0, 0.0}, 1, 2, DType::f32);
  const DeviceMatrix pos_weight = upload_matrix({3.0, 3.0}, 1, 2, DType::f32);
  const DeviceMatrix loss = poisoned_matrix(1, 2, DType::f32);
  const DeviceMatrix grad = poisoned_matrix(1, 2, DType::f32);
  BceArgs args;
  args.rows = 1;
  args.cols = 2;
  args.logits = logits.data();
  args.targets = targets.data();
  args.pos_weight = static_cast<const float*>(pos_weight.data());
  args.loss = static_cast<float*>(loss.data());
  args.grad = grad.data();
  ASSERT_TRUE(
      bce_with_logits_forward_backward(args, BceOptions{Reduction::none}, cuda_exec()).ok());
  synchronize_or_fail();
  const std::vector<double> l = loss.download(), g = grad.download();
  EXPECT_EQ(l[0], 360.0);
  EXPECT_EQ(l[1], 0.0);
  EXPECT_EQ(g[0], -3.0);
  EXPECT_EQ(g[1], 0.0);
}

// The sum is a function of the shape, the layout and the device only: repeated calls and
// misaligned copies (scalar loads) give the same bits, and so do strided copies here, since a
// per-column pos_weight keeps even dense rows apart (see DenseRowsAsOneLongRow).
TEST(CudaBce, ReductionsAreBitwiseReproducible) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Reduction reduction : {Reduction::sum, Reduction::mean}) {
    Case c;
    c.reduction = reduction;
    c.rows = 257;
    c.cols = 1025;
    c.dtypes = kDtypes[1];
    c.with_weight = c.with_pos_weight = true;
    const Data data = make_data(c.rows, c.cols, reduction, 30);
    const std::uint32_t first = check(c, data);
    EXPECT_EQ(check(c, data), first) << "repeated call";
    c.offset = 1;
    EXPECT_EQ(check(c, data), first) << "misaligned copy";
    c.layout = Layout::stride_plus_3;
    EXPECT_EQ(check(c, data), first) << "strided copy";
  }
}

// Dense inputs are processed as one long row unless a per-column pos_weight needs the column:
// [N x 1] (pos_weight broadcast) and [N x 17] without pos_weight take that path, [N x 17] with
// pos_weight keeps its rows. Also bitwise reproducible, aligned or not.
TEST(CudaBce, DenseRowsAsOneLongRow) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  struct Shape {
    std::int64_t rows, cols;
    bool pos_weight;
  };
  int i = 0;
  for (const Shape& s : {Shape{257, 1, true}, Shape{257, 1, false}, Shape{33, 17, false},
                         Shape{33, 17, true}, Shape{2, 15, false}})
    for (Reduction reduction : kReductions) {
      Case c;
      c.reduction = reduction;
      c.rows = s.rows;
      c.cols = s.cols;
      c.dtypes = kDtypes[i % 4];
      c.with_weight = c.with_upstream = true;
      c.with_pos_weight = s.pos_weight;
      const Data data = make_data(s.rows, s.cols, reduction, 50 + static_cast<std::uint64_t>(i));
      const std::uint32_t first = check(c, data);
      c.offset = 1;
      EXPECT_EQ(check(c, data), first) << "misaligned copy";
      ++i;
    }
}

// A capped grid makes every thread walk many packs across row boundaries (the per-thread step is
// not a multiple of the packs per row), as on large problems on a GPU.
TEST(CudaBce, GridStrideLoops) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (std::int64_t blocks : {1, 3}) {
    const ElementwiseGridLimit limit(blocks);
    int i = 0;
    for (const auto& [rows, cols] : {std::pair<std::int64_t, std::int64_t>{33, 17}, {257, 15},
                                     {2, 1025}, {257, 1025}})
      for (Reduction reduction : kReductions) {
        SCOPED_TRACE("block limit " + std::to_string(blocks));
        Case c;
        c.reduction = reduction;
        c.rows = rows;
        c.cols = cols;
        c.dtypes = kDtypes[i % 4];
        c.layout = i % 2 == 0 ? Layout::stride_multiple_of_8 : Layout::stride_plus_3;
        c.with_weight = c.with_pos_weight = c.with_upstream = true;
        check(c, make_data(rows, cols, reduction, 40 + static_cast<std::uint64_t>(i)));
        ++i;
      }
  }
}

TEST(CudaBce, NoElementsGiveZeroLoss) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Reduction reduction : {Reduction::sum, Reduction::mean})
    for (const auto& [rows, cols] : {std::pair<std::int64_t, std::int64_t>{0, 5}, {4, 0}}) {
      DeviceBuffer loss(4);
      loss.fill_bytes(kPoisonByte);
      BceArgs args;
      args.rows = rows;
      args.cols = cols;
      args.loss = loss.as<float>();
      const Status status = bce_with_logits_forward(args, BceOptions{reduction}, cuda_exec());
      ASSERT_TRUE(status.ok()) << status.message();
      synchronize_or_fail();
      EXPECT_EQ(download_vector<float>(loss)[0], 0.0f) << actloss::to_string(reduction);
    }
  BceArgs args;  // every pointer null
  EXPECT_TRUE(bce_with_logits_forward_backward(args, BceOptions{}, cuda_exec()).ok());
  synchronize_or_fail();
}

}  // namespace
}  // namespace actloss::test
