// MSE on Device::cuda against the float64 reference (host/reference/reference.h), through the
// public API: every pass x reduction x dtype combination (one mixed), sizes across the 8-element
// pack boundary, aligned and misaligned (base + 1 element forces the scalar path), with and
// without upstream gradients; bitwise reproducible sums; NaN and inf propagation; no elements.
// Outputs start poisoned (NaN), so an element not written fails.
//
// Tolerances are |actual - expected| <= atol + rtol |expected|, expected being the reference
// rounded once to the output dtype:
//  * per-element loss (always f32): (x - t)^2 is two float roundings, rtol 2^-21; atol 1e-40 for
//    squares in float's subnormal range.
//  * sum / mean: each 8-element pack is added in float (<= 7 roundings of non-negative terms),
//    packs in double: rtol 2^-19.
//  * gradient 2 (x - t) * grad_scale / n * upstream: up to five float roundings, rtol 2^-20;
//    f16 / bf16 gradients add one unit in the last place (2^-10, 2^-7; 2^-24 absolute at f16's
//    subnormals), because the kernel rounds float to the dtype and the reference rounds double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <actloss/mse.h>

#include "host/reference/reference.h"
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr float kGradScale = 0.75f;


struct Dtypes {
  DType input, target, grad;
};
const Dtypes kDtypes[] = {{DType::f32, DType::f32, DType::f32},
                          {DType::f16, DType::f16, DType::f16},
                          {DType::bf16, DType::bf16, DType::bf16},
                          {DType::f16, DType::f32, DType::bf16}};

const std::int64_t kAllSizes[] = {0, 1, 3, 4, 5, 31, 32, 33, 1000, 4099, 65537};
const std::int64_t kSomeSizes[] = {5, 33, 4099};

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

const Tolerance kElementLoss{1e-40, std::ldexp(1.0, -21)};
const Tolerance kReducedLoss{0.0, std::ldexp(1.0, -19)};
const Tolerance kGradF32{1e-40, std::ldexp(1.0, -20)};

// Finite values only (a NaN would make every sum NaN and the check of the reduction empty; NaN
// and inf have their own test): uniform in [-4, 4], plus signed zeros, subnormals, values near
// f16's largest, and targets equal to inputs (a difference of exactly 0).
struct Data {
  std::vector<double> input, target, upstream;
};

Data make_data(std::int64_t n, Reduction reduction, std::uint64_t seed) {
  static const double kSpecials[] = {0.0, -0.0, 1e-40, -1e-40, 3e-6, 6e4, -6e4, 1e-3, 2.5};
  Data d;
  const auto size = static_cast<std::size_t>(n);
  d.input = random_values(size, -4.0, 4.0, seed);
  d.target = random_values(size, -4.0, 4.0, seed + 1);
  std::size_t k = 0;
  for (std::size_t i = 2; i < size; i += 7, ++k) d.input[i] = kSpecials[k % std::size(kSpecials)];
  for (std::size_t i = 5; i < size; i += 13) d.target[i] = d.input[i];
  d.upstream = random_values(reduction == Reduction::none ? size : 1, -2.0, 2.0, seed + 2);
  return d;
}

struct Case {
  Pass pass = Pass::forward;
  Reduction reduction = Reduction::mean;
  Dtypes dtypes = kDtypes[0];
  std::int64_t n = 0;
  std::int64_t offset = 0;
  bool with_upstream = false;
  bool with_loss = true;  // forward_backward only: the loss is optional there
};

std::string describe(const Case& c) {
  return std::string(to_string(c.pass)) + " " + actloss::to_string(c.reduction) + " " +
         actloss::to_string(c.dtypes.input) + "/" + actloss::to_string(c.dtypes.target) + "->" +
         actloss::to_string(c.dtypes.grad) + " n=" + std::to_string(c.n) +
         " offset=" + std::to_string(c.offset) + (c.with_upstream ? " upstream" : "") +
         (c.pass != Pass::forward_backward || c.with_loss ? "" : " no-loss");
}

Status call(Pass pass, const MseArgs& args, Reduction reduction) {
  const MseOptions options{reduction};
  switch (pass) {
    case Pass::forward: return mse_forward(args, options, cuda_exec());
    case Pass::backward: return mse_backward(args, options, cuda_exec());
    case Pass::forward_backward: return mse_forward_backward(args, options, cuda_exec());
  }
  return Status(StatusCode::internal, "", "bad pass");
}

// Runs one case and checks every output it should write; returns the raw bits of a reduced
// loss (0 otherwise) for the reproducibility checks.
std::uint32_t check(const Case& c, const Data& data) {
  SCOPED_TRACE(describe(c));
  const bool wants_loss =
      c.pass == Pass::forward || (c.pass == Pass::forward_backward && c.with_loss);
  const bool wants_grad = c.pass != Pass::forward;
  const bool per_element = c.reduction == Reduction::none;
  const std::vector<double> input = quantize(data.input, c.dtypes.input);
  const std::vector<double> target = quantize(data.target, c.dtypes.target);
  const std::vector<double> up = quantize(data.upstream, DType::f32);

  const DeviceMatrix input_dev = upload_matrix(input, 1, c.n, c.dtypes.input, 0, c.offset);
  const DeviceMatrix target_dev = upload_matrix(target, 1, c.n, c.dtypes.target, 0, c.offset);
  const std::int64_t loss_count = per_element ? c.n : 1;
  const DeviceMatrix loss_dev = poisoned_matrix(1, loss_count, DType::f32, 0, c.offset);
  const DeviceMatrix grad_dev = poisoned_matrix(1, c.n, c.dtypes.grad, 0, c.offset);
  const DeviceMatrix up_dev = upload_matrix(up, 1, static_cast<std::int64_t>(up.size()),
                                            DType::f32, 0, c.offset);

  MseArgs args;
  args.n = c.n;
  args.input = input_dev.data();
  args.input_dtype = c.dtypes.input;
  args.target = target_dev.data();
  args.target_dtype = c.dtypes.target;
  if (wants_loss) args.loss = static_cast<float*>(loss_dev.data());
  if (wants_grad) {
    args.grad = grad_dev.data();
    args.grad_dtype = c.dtypes.grad;
    args.grad_scale = kGradScale;
    if (c.with_upstream) args.upstream_grad = static_cast<const float*>(up_dev.data());
  }
  const Status status = call(c.pass, args, c.reduction);
  EXPECT_TRUE(status.ok()) << status.message();
  if (!status.ok()) return 0;
  synchronize_or_fail();

  ref::MseProblem problem;
  problem.n = c.n;
  problem.input = input;
  problem.target = target;
  problem.reduction = to_ref(c.reduction);
  problem.grad_scale = kGradScale;
  if (c.with_upstream) problem.upstream = up;
  const ref::MseResult expected = ref::mse(problem);

  std::uint32_t loss_bits = 0;
  const std::vector<double> loss = loss_dev.download();
  if (!wants_loss) {
    EXPECT_TRUE(loss_dev.buffer.download_bytes() ==
                std::vector<std::uint8_t>(loss_dev.buffer.bytes(), kPoisonByte))
        << "loss written although not asked for";
  } else if (per_element) {
    EXPECT_TRUE(all_close(loss, quantize(expected.elem_loss, DType::f32), kElementLoss, "loss"));
  } else {
    EXPECT_TRUE(all_close(loss, quantize({expected.loss}, DType::f32), kReducedLoss, "loss"));
    const float value = static_cast<float>(loss[0]);
    std::memcpy(&loss_bits, &value, sizeof value);
  }
  EXPECT_TRUE(loss_dev.padding_intact());

  if (wants_grad) {
    EXPECT_TRUE(all_close(grad_dev.download(), quantize(expected.grad, c.dtypes.grad),
                          output_rounding(c.dtypes.grad, kGradF32), "grad"));
  } else {
    EXPECT_TRUE(grad_dev.buffer.download_bytes() ==
                std::vector<std::uint8_t>(grad_dev.buffer.bytes(), kPoisonByte))
        << "grad written although not asked for";
  }
  EXPECT_TRUE(grad_dev.padding_intact());
  return loss_bits;
}


TEST(CudaMse, EveryPassReductionAndSizeInF32) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Pass pass : kPasses)
    for (Reduction reduction : kReductions)
      for (std::int64_t n : kAllSizes)
        for (std::int64_t offset : {0, 1}) {
          Case c{pass, reduction, kDtypes[0], n, offset};
          c.with_upstream = (n + offset) % 2 == 0;
          check(c, make_data(n, reduction, 100 + static_cast<std::uint64_t>(n)));
        }
}

TEST(CudaMse, EveryDtypeCombination) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Dtypes dtypes : kDtypes)
    for (Pass pass : kPasses)
      for (Reduction reduction : kReductions)
        for (std::int64_t n : kSomeSizes)
          for (std::int64_t offset : {0, 1}) {
            Case c{pass, reduction, dtypes, n, offset};
            c.with_upstream = offset == 0;
            c.with_loss = n != 33;
            check(c, make_data(n, reduction, 200 + static_cast<std::uint64_t>(n)));
          }
}

// The sum is a function of the shape and the device only: repeated calls, and calls on
// misaligned copies (scalar loads instead of vector loads), give the same bits.
TEST(CudaMse, ReductionsAreBitwiseReproducible) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Reduction reduction : {Reduction::sum, Reduction::mean})
    for (std::int64_t n : {std::int64_t{4099}, std::int64_t{65537}}) {
      const Data data = make_data(n, reduction, 300);
      Case c{Pass::forward_backward, reduction, kDtypes[1], n, 0};
      const std::uint32_t first = check(c, data);
      EXPECT_EQ(check(c, data), first);
      c.offset = 1;
      EXPECT_EQ(check(c, data), first) << "misaligned copy summed differently";
    }
}

// A capped grid makes every thread walk many packs, as on large problems on a GPU.
TEST(CudaMse, GridStrideLoops) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const ElementwiseGridLimit limit(3);
  for (Reduction reduction : kReductions)
    for (std::int64_t n : {std::int64_t{4099}, std::int64_t{65537}})
      for (std::int64_t offset : {0, 1}) {
        Case c{Pass::forward_backward, reduction, kDtypes[3], n, offset};
        c.with_upstream = true;
        check(c, make_data(n, reduction, 400));
      }
}

TEST(CudaMse, NanAndInfPropagate) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Reduction reduction : kReductions)
    for (const double special : {kNaN, kInf}) {
      Data data = make_data(1000, reduction, 500);
      data.input[517] = special;
      Case c{Pass::forward_backward, reduction, kDtypes[0], 1000, 0};
      check(c, data);  // the reference's NaN / inf must be matched exactly (all_close)
    }
}

TEST(CudaMse, NoElementsGiveZeroLoss) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Reduction reduction : {Reduction::sum, Reduction::mean}) {
    DeviceBuffer loss(4);
    loss.fill_bytes(kPoisonByte);
    MseArgs args;
    args.loss = loss.as<float>();
    const Status status = mse_forward(args, MseOptions{reduction}, cuda_exec());
    ASSERT_TRUE(status.ok()) << status.message();
    synchronize_or_fail();
    EXPECT_EQ(download_vector<float>(loss)[0], 0.0f) << actloss::to_string(reduction);
  }
  MseArgs args;  // every pointer null
  EXPECT_TRUE(mse_forward_backward(args, MseOptions{}, cuda_exec()).ok());
  synchronize_or_fail();
}

}  // namespace
}  // namespace actloss::test
