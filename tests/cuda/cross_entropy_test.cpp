// Softmax cross-entropy on Device::cuda beyond its values, which the validation table checks
// (validation/cross_entropy.cpp, run by tests/validation): data errors recorded on the device,
// bitwise reproducible reductions, and the dispatch choice. The same source runs in the
// simulator build (under ASan in CI) and on a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include <actloss/cross_entropy.h>

#include "cuda/row_dispatch.h"
#include "host/backend.h"
#if defined(ACTLOSS_SIM)
#include <simcuda/sim_control.h>
#endif
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

using detail::RowAlgorithm;
using detail::RowOp;

// A class-index problem on the device: logits [rows x classes] of f32 with a row stride and a
// base offset (elements), int64 targets, optional class weights.
struct Problem {
  std::int64_t rows = 0, classes = 0, stride = 0, offset = 0;
  DeviceMatrix logits;
  DeviceBuffer targets;
  DeviceMatrix weights;

  Problem(const std::vector<double>& values, const std::vector<std::int64_t>& labels,
          std::int64_t classes_, std::int64_t stride_ = 0, std::int64_t offset_ = 0,
          bool with_weights = false)
      : rows(static_cast<std::int64_t>(labels.size())),
        classes(classes_),
        stride(stride_ == 0 ? classes_ : stride_),
        offset(offset_),
        logits(upload_matrix(values, rows, classes, DType::f32, stride, offset)),
        targets(upload_vector(labels)) {
    if (with_weights)
      weights = upload_matrix(random_values(static_cast<std::size_t>(classes), 0.25, 2.0, 3), 1,
                              classes, DType::f32);
  }

  CrossEntropyArgs args() const {
    CrossEntropyArgs a;
    a.rows = rows;
    a.classes = classes;
    a.logits = logits.data();
    a.logits_row_stride = stride;
    a.targets = targets.get();
    if (weights.rows > 0) a.class_weight = static_cast<const float*>(weights.data());
    return a;
  }
};

std::vector<std::int64_t> labels_for(std::int64_t rows, std::int64_t classes) {
  std::vector<std::int64_t> labels(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) labels[static_cast<std::size_t>(r)] = (r * 7 + 3) % classes;
  return labels;
}

// A target outside [0, classes) that is not ignore_index: that row's loss and gradient are NaN
// (under mean, everything: the denominator is NaN), nothing is read at the bad index (ASan in the
// simulator build), and take_device_error reports it once, with the row.
TEST(CudaCrossEntropy, OutOfRangeTargetsAreReported) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  ASSERT_TRUE(take_device_error(cuda_exec()).ok());
  const std::int64_t rows = 9, classes = 40;
  const std::vector<double> values = random_values(std::size_t(rows * classes), -4, 4, 1);
  for (RowAlgorithm path : kPaths) {
    const ForcedRowPath forced(path);
    for (Reduction reduction : {Reduction::none, Reduction::sum, Reduction::mean})
      for (std::int64_t bad : {std::int64_t{40}, std::int64_t{-1}, std::int64_t{1} << 40}) {
        SCOPED_TRACE(testing::Message() << detail::to_string(path) << " "
                                        << to_string(reduction) << " target " << bad);
        std::vector<std::int64_t> labels = labels_for(rows, classes);
        labels[4] = bad;
        const Problem problem(values, labels, classes, 0, 0, true);
        const DeviceMatrix loss = poisoned_matrix(1, reduction == Reduction::none ? rows : 1, DType::f32);
        const DeviceMatrix grad = poisoned_matrix(rows, classes, DType::f32);
        CrossEntropyArgs args = problem.args();
        args.loss = static_cast<float*>(loss.data());
        args.grad = grad.data();
        CrossEntropyOptions options;
        options.reduction = reduction;
        ASSERT_TRUE(cross_entropy_forward_backward(args, options, cuda_exec()).ok());
        const Status error = take_device_error(cuda_exec());
        EXPECT_EQ(error.code(), StatusCode::out_of_range) << error.message();
        EXPECT_EQ(error.argument(), "targets");
        EXPECT_NE(error.message().find("row 4"), std::string::npos) << error.message();
        EXPECT_TRUE(take_device_error(cuda_exec()).ok()) << "the record was not cleared";
        const std::vector<double> got_loss = loss.download(), got_grad = grad.download();
        if (reduction == Reduction::none) {
          for (std::int64_t r = 0; r < rows; ++r)
            EXPECT_EQ(std::isnan(got_loss[std::size_t(r)]), r == 4) << "row " << r;
        } else {
          EXPECT_TRUE(std::isnan(got_loss[0]));
        }
        for (std::int64_t c = 0; c < classes; ++c)
          EXPECT_TRUE(std::isnan(got_grad[std::size_t(4 * classes + c)])) << c;
        // Mean's denominator is NaN: every row's gradient is; otherwise only row 4's.
        EXPECT_EQ(std::isnan(got_grad[0]), reduction == Reduction::mean);
      }
    // Backward reports too.
    std::vector<std::int64_t> labels = labels_for(3, classes);
    labels[1] = classes;
    const Problem problem(values, labels, classes);
    const std::vector<CrossEntropyRowStats> stats(3, CrossEntropyRowStats{4.0f, 4.0f});
    const DeviceBuffer saved = upload_vector(stats);
    const DeviceMatrix grad = poisoned_matrix(3, classes, DType::f32);
    CrossEntropyArgs args = problem.args();
    args.saved_stats = saved.as<CrossEntropyRowStats>();
    args.grad = grad.data();
    ASSERT_TRUE(cross_entropy_backward(args, CrossEntropyOptions{}, cuda_exec()).ok());
    EXPECT_EQ(take_device_error(cuda_exec()).code(), StatusCode::out_of_range);
  }
  // A caller-provided record is written instead of the library's own.
  DeviceBuffer record(sizeof(DeviceError));
  record.fill_bytes(0);
  Exec exec = cuda_exec();
  exec.device_error = record.as<DeviceError>();
  std::vector<std::int64_t> labels = labels_for(3, 5);
  labels[2] = 5;
  const Problem problem(random_values(15, -1, 1, 2), labels, 5);
  const DeviceMatrix loss = poisoned_matrix(1, 1, DType::f32);
  CrossEntropyArgs args = problem.args();
  args.loss = static_cast<float*>(loss.data());
  ASSERT_TRUE(cross_entropy_forward(args, CrossEntropyOptions{}, exec).ok());
  const Status error = take_device_error(exec);
  EXPECT_EQ(error.code(), StatusCode::out_of_range);
  EXPECT_NE(error.message().find("row 2"), std::string::npos) << error.message();
  EXPECT_TRUE(std::isnan(loss.download()[0]));
  EXPECT_TRUE(take_device_error(cuda_exec()).ok()) << "the library's own record was written";
}

// Sum and mean depend only on the shape and the device: repeated calls, misaligned and strided
// copies of the same data, in place, and forward alone give the same bits, on every path.
TEST(CudaCrossEntropy, ReducedLossIsBitwiseReproducible) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const std::int64_t kClasses[] = {20, 500, 3000, 3000, 3000, 3000};  // one per path, in kPaths order
  static_assert(std::size(kClasses) == std::size(kPaths));
  for (int p = 0; p < static_cast<int>(std::size(kPaths)); ++p) {
    const ForcedRowPath forced(kPaths[p]);
    const std::int64_t rows = p == 0 ? 257 : 33, classes = kClasses[p];
    const std::vector<double> values = random_values(std::size_t(rows * classes), -6, 6, 10 + p);
    const std::vector<std::int64_t> labels = labels_for(rows, classes);
    for (Reduction reduction : {Reduction::sum, Reduction::mean}) {
      SCOPED_TRACE(testing::Message() << detail::to_string(kPaths[p]) << " "
                                      << to_string(reduction));
      CrossEntropyOptions options;
      options.reduction = reduction;
      options.label_smoothing = 0.1f;
      auto loss_bits = [&](const Problem& problem, bool in_place, bool forward_only) {
        const DeviceMatrix loss = poisoned_matrix(1, 1, DType::f32);
        const DeviceMatrix grad = poisoned_matrix(rows, classes, DType::f32);
        CrossEntropyArgs args = problem.args();
        args.loss = static_cast<float*>(loss.data());
        if (in_place) {
          args.grad = const_cast<void*>(args.logits);
          args.grad_row_stride = problem.stride;
        } else {
          args.grad = grad.data();
        }
        const Status status = forward_only ? cross_entropy_forward(args, options, cuda_exec())
                                           : cross_entropy_forward_backward(args, options, cuda_exec());
        EXPECT_TRUE(status.ok()) << status.message();
        synchronize_or_fail();
        const float value = static_cast<float>(loss.download()[0]);
        std::uint32_t bits;
        std::memcpy(&bits, &value, sizeof bits);
        return bits;
      };
      const Problem dense(values, labels, classes, 0, 0, true);
      const std::uint32_t first = loss_bits(dense, false, false);
      EXPECT_EQ(loss_bits(dense, false, false), first) << "repeated call";
      EXPECT_EQ(loss_bits(Problem(values, labels, classes, 0, 1, true), false, false), first)
          << "misaligned copy";
      EXPECT_EQ(loss_bits(Problem(values, labels, classes, classes + 3, 0, true), true, false), first)
          << "strided in-place copy";
      EXPECT_EQ(loss_bits(dense, false, true), first) << "forward only";
    }
  }
}

// Rows beyond one block's shared memory (Llama 3's 128256 bf16 classes, 262144 f32 classes) run
// in thread-block clusters, and agree with the two-pass path, which reads the row from global
// memory twice, and whose reductions group the same float terms differently (one block of
// threads against 2 to 8 blocks; the double sums of both round to the same float except in the
// last bit or two). Row losses then agree to 2^-20 relative, gradients to 2^-21 relative plus
// 2^-40 absolute (terms far below a probability's rounding), predicted classes exactly. Every
// option the clusters reduce for is on: label smoothing (a second row sum), predicted classes
// (a third), z-loss, a mean with its denominator.
TEST(CudaCrossEntropy, LongRowsRunInClustersAndAgreeWithTwoPass) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  struct Case {
    std::int64_t rows, classes;
    DType dtype;
  };
  for (const Case c : {Case{3, 128256, DType::bf16}, Case{2, 262144, DType::f32}}) {
    SCOPED_TRACE(testing::Message() << c.classes << " " << to_string(c.dtype));
    const std::vector<double> values =
        random_values(static_cast<std::size_t>(c.rows * c.classes), -12, 12, 77);
    const DeviceMatrix logits = upload_matrix(values, c.rows, c.classes, c.dtype);
    const DeviceBuffer targets = upload_vector(labels_for(c.rows, c.classes));
    struct Outputs {
      std::vector<double> loss, grad, mean;
      std::vector<std::int64_t> predicted;
    };
    auto run = [&](RowAlgorithm path) {
      const ForcedRowPath forced(path);
      const DeviceMatrix loss = poisoned_matrix(1, c.rows, DType::f32);
      const DeviceMatrix mean = poisoned_matrix(1, 1, DType::f32);
      const DeviceMatrix grad = poisoned_matrix(c.rows, c.classes, DType::f32);
      DeviceBuffer predicted(static_cast<std::size_t>(c.rows) * sizeof(std::int64_t));
      CrossEntropyArgs args;
      args.rows = c.rows;
      args.classes = c.classes;
      args.logits = logits.data();
      args.logits_dtype = c.dtype;
      args.targets = targets.get();
      args.loss = static_cast<float*>(loss.data());
      args.predicted = static_cast<std::int64_t*>(predicted.get());
      args.grad = grad.data();
      CrossEntropyOptions options;
      options.reduction = Reduction::none;
      options.label_smoothing = 0.1f;
      options.z_loss = 1e-4f;
      EXPECT_TRUE(cross_entropy_forward_backward(args, options, cuda_exec()).ok());
      CrossEntropyArgs mean_args = args;
      mean_args.loss = static_cast<float*>(mean.data());
      mean_args.predicted = nullptr;
      mean_args.grad = nullptr;
      options.reduction = Reduction::mean;
      EXPECT_TRUE(cross_entropy_forward(mean_args, options, cuda_exec()).ok());
      synchronize_or_fail();
      return Outputs{loss.download(), grad.download(), mean.download(),
                     download_vector<std::int64_t>(predicted)};
    };
#if defined(ACTLOSS_SIM)
    const std::uint64_t clusters_before = simcuda::sim::cluster_launches();
#endif
    // Forced: the automatic choice takes two passes for these rows.
    const Outputs clustered = run(RowAlgorithm::cluster_shared);
#if defined(ACTLOSS_SIM)
    if (!simcuda::sim::threads_mode()) {
      EXPECT_EQ(simcuda::sim::cluster_launches() - clusters_before, 2u) << "ran in clusters";
    }
#endif
    const Outputs two_pass = run(RowAlgorithm::block_two_pass);
    EXPECT_EQ(clustered.predicted, two_pass.predicted);
    for (std::int64_t r = 0; r < c.rows; ++r) {
      const double want = two_pass.loss[static_cast<std::size_t>(r)];
      EXPECT_NEAR(clustered.loss[static_cast<std::size_t>(r)], want, std::ldexp(std::fabs(want), -20))
          << "row " << r;
    }
    EXPECT_NEAR(clustered.mean[0], two_pass.mean[0], std::ldexp(std::fabs(two_pass.mean[0]), -20));
    std::size_t bad = 0;
    for (std::size_t i = 0; i < two_pass.grad.size(); ++i) {
      const double want = two_pass.grad[i];
      if (!(std::fabs(clustered.grad[i] - want) <= std::ldexp(std::fabs(want), -21) + 0x1p-40)) {
        if (bad++ == 0) ADD_FAILURE() << "grad " << i << ": " << clustered.grad[i] << " vs " << want;
      }
    }
    EXPECT_EQ(bad, 0u);
  }
}

// The automatic choice is the first path that holds the row, and a forced path that cannot hold
// it falls back to the automatic one instead of failing.
TEST(CudaCrossEntropy, DispatchChoice) {
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    const auto max = [&](RowAlgorithm a) {
      return detail::row_algorithm_max_classes(RowOp::cross_entropy, a, dtype);
    };
    EXPECT_LT(max(RowAlgorithm::rows_per_warp), max(RowAlgorithm::warp_per_row));
    EXPECT_LT(max(RowAlgorithm::warp_per_row), max(RowAlgorithm::block_on_chip));
    EXPECT_LT(max(RowAlgorithm::block_on_chip), max(RowAlgorithm::block_shared));
    EXPECT_LT(max(RowAlgorithm::block_shared), max(RowAlgorithm::cluster_shared));
    EXPECT_LT(max(RowAlgorithm::cluster_shared), max(RowAlgorithm::block_two_pass));
    EXPECT_EQ(max(RowAlgorithm::block_two_pass), 2147483647);
    for (RowAlgorithm path : {RowAlgorithm::rows_per_warp, RowAlgorithm::warp_per_row,
                              RowAlgorithm::block_on_chip, RowAlgorithm::block_shared}) {
      EXPECT_EQ(detail::automatic_row_algorithm(RowOp::cross_entropy, max(path), dtype), path);
      EXPECT_NE(detail::automatic_row_algorithm(RowOp::cross_entropy, max(path) + 1, dtype), path);
    }
  }
  // Llama 3's vocabulary and 262144 classes are read twice: a cluster's shared memory, which
  // reads them once, is taken only when forced (measured slower on an H100, row_dispatch.h).
  EXPECT_EQ(detail::automatic_row_algorithm(RowOp::cross_entropy, 128256, DType::bf16),
            RowAlgorithm::block_two_pass);
  EXPECT_EQ(detail::automatic_row_algorithm(RowOp::cross_entropy, 262144, DType::f32),
            RowAlgorithm::block_two_pass);
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const ForcedRowPath forced(RowAlgorithm::rows_per_warp);
  const Problem problem(random_values(3000, -1, 1, 4), labels_for(3, 1000), 1000);
  const DeviceMatrix loss = poisoned_matrix(1, 1, DType::f32);
  CrossEntropyArgs args = problem.args();
  args.loss = static_cast<float*>(loss.data());
  ASSERT_TRUE(cross_entropy_forward(args, CrossEntropyOptions{}, cuda_exec()).ok());
  synchronize_or_fail();
  EXPECT_TRUE(std::isfinite(loss.download()[0]));  // beyond rows_per_warp: ran warp_per_row
}

// Which calls take the kernels that keep each exponential (cuda/cross_entropy_exp_once.cu): the
// common case on chip, in tiles of at most two chunks (rows up to 8192 classes), whichever pass;
// every rare option, a predicted class, a longer row, and the switch that selects the kernel
// last measured on a card take the unified kernel. The values of both are the validation
// table's (validation_Cuda_cross_entropy and validation_Cuda_cross_entropy_unified).
TEST(CudaCrossEntropy, CommonCallsOnChipKeepEachExponential) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  std::vector<float> weights(16384, 1.0f);
  std::vector<std::int64_t> predicted(1);
  const auto plan = [&](std::int64_t classes, DType dtype, bool grad,
                        const CrossEntropyOptions& options = {}, bool weighted = false,
                        bool predicting = false) {
    CrossEntropyArgs args;
    args.rows = 64;
    args.classes = classes;
    args.logits_dtype = dtype;
    args.grad_dtype = dtype;
    args.grad = grad ? weights.data() : nullptr;  // only looked at, never written
    args.class_weight = weighted ? weights.data() : nullptr;
    args.predicted = predicting ? predicted.data() : nullptr;
    bool exp_once = false;
    int chunks = -2;
    EXPECT_TRUE(detail::cuda_cross_entropy_plan_for_testing(args, options, &exp_once, &chunks).ok());
    return std::pair<bool, int>(exp_once, chunks);
  };
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(to_string(dtype));
    for (std::int64_t classes : {std::int64_t{2}, std::int64_t{256}, std::int64_t{4096},
                                 std::int64_t{8192}}) {
      SCOPED_TRACE(classes);
      for (bool grad : {false, true}) {
        const auto [exp_once, chunks] = plan(classes, dtype, grad);
        EXPECT_TRUE(exp_once);
        EXPECT_GE(chunks, 1);
        EXPECT_LE(chunks, 2);
      }
    }
    EXPECT_FALSE(plan(8200, dtype, false).first);  // past two chunks a thread in a block of 512
    // One warp's row with a tile of four or eight chunks stays a warp's, on the unified kernel.
    EXPECT_FALSE(plan(1000, dtype, true).first);
    EXPECT_EQ(plan(dtype == DType::f32 ? 512 : 1024, dtype, true).first, dtype == DType::f32);
    EXPECT_FALSE(plan(dtype == DType::f32 ? 1024 : 2048, dtype, true).first);
    CrossEntropyOptions smoothing;
    smoothing.label_smoothing = 0.1f;
    EXPECT_FALSE(plan(4096, dtype, true, smoothing).first);
    CrossEntropyOptions softcap;
    softcap.softcap = 30.0f;
    EXPECT_FALSE(plan(4096, dtype, true, softcap).first);
    EXPECT_FALSE(plan(4096, dtype, true, {}, true).first);
    EXPECT_FALSE(plan(4096, dtype, false, {}, false, true).first);
    EXPECT_FALSE(plan(50257, dtype, true).first);  // the row stays in memory
    EXPECT_EQ(plan(50257, dtype, true).second, 0);
  }
  // z-loss and ignore_index keep the kernel: both are handled per row.
  CrossEntropyOptions z;
  z.z_loss = 1e-4f;
  z.ignore_index = 0;
  EXPECT_TRUE(plan(4096, DType::bf16, true, z).first);
  detail::set_row_exp_once(false);
  EXPECT_FALSE(plan(4096, DType::bf16, true).first);
  detail::set_row_exp_once(true);
  // Register tiles exist for a gradient in the logits' dtype or in f32; the other pairs take the
  // general kernel (the validation table checks their values, every pair on every path).
  for (DType logits : {DType::f32, DType::f16, DType::bf16}) {
    for (DType grad : {DType::f32, DType::f16, DType::bf16}) {
      SCOPED_TRACE(std::string(to_string(logits)) + " -> " + to_string(grad));
      CrossEntropyArgs args;
      args.rows = 64;
      args.classes = 4096;
      args.logits_dtype = logits;
      args.grad_dtype = grad;
      args.grad = weights.data();
      bool exp_once = false;
      int chunks = -2;
      ASSERT_TRUE(detail::cuda_cross_entropy_plan_for_testing(args, {}, &exp_once, &chunks).ok());
      EXPECT_EQ(exp_once, logits == grad || grad == DType::f32);
    }
  }
}

// A workspace sized for a call's arguments without a gradient or predicted classes fits the call
// that asks for them too: the plan, and with it the grid whose partial sums the workspace holds,
// depends on the shape and the options alone. Predicted classes on an exp-once plan run the
// unified kernel, in blocks of up to 512 threads.
TEST(CudaCrossEntropy, OneWorkspaceFitsEveryPassAndOutput) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  struct Shape {
    std::int64_t rows, classes;
  };
  // 2200 x 2048: block_on_chip's four-chunk tile over 64 threads becomes two chunks over 128, and
  // the grid then stops at 2112 blocks instead of 2200: a plan that followed the outputs asked
  // for would size one number of partial sums for one call and need another for the next.
  for (const Shape shape :
       {Shape{40, 300}, Shape{40, 1000}, Shape{40, 8192}, Shape{2200, 2048}}) {
    const std::int64_t rows = shape.rows, classes = shape.classes;
    SCOPED_TRACE(testing::Message() << rows << " x " << classes);
    const Problem problem(random_values(std::size_t(rows * classes), -3, 3, 21),
                          labels_for(rows, classes), classes);
    const DeviceMatrix loss = poisoned_matrix(1, 1, DType::f32);
    const DeviceMatrix grad = poisoned_matrix(rows, classes, DType::f32);
    const DeviceBuffer predicted(std::size_t(rows) * sizeof(std::int64_t));
    CrossEntropyArgs sized = problem.args();
    sized.loss = static_cast<float*>(loss.data());
    // A sum: its partials are one a block in every pass (a mean without a gradient sums twice as
    // many, enough to hide a smaller grid's need).
    CrossEntropyOptions options;
    options.reduction = Reduction::sum;
    std::size_t bytes = 0;
    ASSERT_TRUE(cross_entropy_workspace_size(sized, options, cuda_exec(), &bytes).ok());
    ASSERT_GT(bytes, 0u);
    const DeviceBuffer workspace(bytes);
    Exec exec = cuda_exec();
    exec.workspace = Workspace{workspace.get(), bytes};
    CrossEntropyArgs with_grad = sized;
    with_grad.grad = grad.data();
    const Status fused = cross_entropy_forward_backward(with_grad, options, exec);
    EXPECT_TRUE(fused.ok()) << fused.message();
    CrossEntropyArgs predicting = sized;
    predicting.predicted = static_cast<std::int64_t*>(predicted.get());
    const Status forward = cross_entropy_forward(predicting, options, exec);
    EXPECT_TRUE(forward.ok()) << forward.message();
    synchronize_or_fail();
    EXPECT_TRUE(std::isfinite(loss.download()[0]));
    const std::vector<double> g = grad.download();
    EXPECT_TRUE(std::all_of(g.begin(), g.end(), [](double v) { return std::isfinite(v); }));
  }
}

}  // namespace
}  // namespace actloss::test
