// Public cross-entropy entry points: validate, normalise, then run on the CPU path or hand over
// to the CUDA backend.
//
// What each pass needs (when rows > 0; with rows == 0 every pointer may be null):
//   forward           logits, targets, loss                 writes loss, lse, stats (optional)
//   backward          logits, targets, saved_stats, grad    writes grad
//   forward_backward  logits, targets, grad                 writes grad; loss, lse, stats
//                                                           (optional)
// class_weight and upstream_grad are optional inputs. Fields a pass does not use are ignored
// (not validated) and reach the backend as null.
#include <actloss/cross_entropy.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "host/backend.h"
#include "host/cpu/backend.h"
#include "host/cpu_path.h"
#include "host/half.h"
#include "host/validate.h"

namespace actloss {
namespace {

using detail::Pass;
using host::Region;

bool is_valid(TargetKind kind) {
  switch (kind) {
    case TargetKind::class_index_i32:
    case TargetKind::class_index_i64:
    case TargetKind::probabilities: return true;
  }
  return false;
}

// A validated call: the arguments as the backend receives them, and the bytes each pointer
// spans (for the overlap and device-pointer checks).
struct Plan {
  CrossEntropyArgs args;
  bool probabilities = false;
  Region logits, targets, class_weight, loss, lse, stats, saved_stats, grad, upstream_grad;
  Region predicted, accuracy;
};

Status check_options(Pass pass, const CrossEntropyArgs& args,
                     const CrossEntropyOptions& options) {
  ACTLOSS_TRY(host::check_reduction(options.reduction));
  // The negated form also rejects NaN.
  if (!(options.label_smoothing >= 0.0f && options.label_smoothing <= 1.0f)) {
    return host::invalid("options.label_smoothing", "must be in [0, 1] (got ",
                         options.label_smoothing, ")");
  }
  ACTLOSS_TRY(host::check_finite_non_negative(options.z_loss, "options.z_loss"));
  ACTLOSS_TRY(host::check_finite_non_negative(options.softcap, "options.softcap"));
  if (pass != Pass::forward) ACTLOSS_TRY(host::check_finite(args.grad_scale, "grad_scale"));
  return {};
}

Status validate(Pass pass, const CrossEntropyArgs& in, const CrossEntropyOptions& options,
                const Exec& exec, Plan& plan) {
  ACTLOSS_TRY(host::check_exec(exec));
  ACTLOSS_TRY(check_options(pass, in, options));

  const bool writes_loss = pass != Pass::backward;
  const bool writes_grad = pass != Pass::forward;
  CrossEntropyArgs& args = plan.args;
  args = in;

  ACTLOSS_TRY(host::check_non_negative(args.rows, "rows"));
  ACTLOSS_TRY(host::check_non_negative(args.classes, "classes"));
  if (args.classes == 0 && args.rows > 0) {
    return host::invalid("classes", "must be >= 1 when rows > 0 (got 0; no class to predict)");
  }
  if (!is_valid(args.target_kind)) {
    return host::invalid("target_kind", "not a TargetKind value (got ",
                         static_cast<int>(args.target_kind), ")");
  }
  plan.probabilities = args.target_kind == TargetKind::probabilities;
  ACTLOSS_TRY(host::check_dtype(args.logits_dtype, "logits_dtype"));
  if (plan.probabilities) ACTLOSS_TRY(host::check_dtype(args.target_dtype, "target_dtype"));
  if (writes_grad) ACTLOSS_TRY(host::check_dtype(args.grad_dtype, "grad_dtype"));

  // Strides of operands the pass does not use are made explicit too, so the backend never
  // sees a 0 stride.
  ACTLOSS_TRY(host::normalize_stride(args.logits_row_stride, args.classes, "logits_row_stride",
                                     "classes"));
  if (plan.probabilities) {
    ACTLOSS_TRY(host::normalize_stride(args.target_row_stride, args.classes,
                                       "target_row_stride", "classes"));
  } else {
    args.target_row_stride = args.classes;
  }
  if (writes_grad) {
    ACTLOSS_TRY(host::normalize_stride(args.grad_row_stride, args.classes, "grad_row_stride",
                                       "classes"));
  } else {
    args.grad_row_stride = args.classes;
  }

  ACTLOSS_TRY(host::normalize_rows_per_batch(args.rows_per_batch, args.rows));
  const std::int64_t rows_per_batch = args.rows_per_batch;
  ACTLOSS_TRY(host::normalize_batch_stride(args.logits_batch_stride, args.rows, rows_per_batch,
                                           args.classes, args.logits_row_stride,
                                           "logits_batch_stride", "logits_row_stride"));
  if (plan.probabilities) {
    ACTLOSS_TRY(host::normalize_batch_stride(args.target_batch_stride, args.rows, rows_per_batch,
                                             args.classes, args.target_row_stride,
                                             "target_batch_stride", "target_row_stride"));
  } else {
    // Class indices lie contiguously within a batch.
    ACTLOSS_TRY(host::normalize_batch_stride(args.target_batch_stride, args.rows, rows_per_batch,
                                             1, 1, "target_batch_stride",
                                             "the class indices' row stride"));
  }
  if (!writes_grad) args.grad_batch_stride = 0;
  ACTLOSS_TRY(host::normalize_batch_stride(args.grad_batch_stride, args.rows, rows_per_batch,
                                           args.classes, args.grad_row_stride,
                                           "grad_batch_stride", "grad_row_stride"));

  // Fields the pass does not use reach neither the checks below nor the backend.
  if (!writes_loss) {
    args.loss = args.lse = nullptr;
    args.stats = nullptr;
    args.predicted = nullptr;
    args.accuracy = nullptr;
  }
  if (args.accuracy != nullptr) {
    if (plan.probabilities) {
      return host::invalid("accuracy", "needs class-index targets (target_kind is probabilities)");
    }
    if (args.predicted == nullptr) {
      return host::invalid("accuracy", "needs predicted (accuracy is counted from it)");
    }
  }
  if (!writes_grad) {
    args.grad = nullptr;
    args.upstream_grad = nullptr;
  }
  if (pass != Pass::backward) args.saved_stats = nullptr;

  const std::int64_t rows = args.rows;
  const std::int64_t loss_count = options.reduction == Reduction::none ? rows : 1;
  ACTLOSS_TRY(host::batched_region("logits", args.logits, args.logits_dtype, rows, args.classes,
                                   args.logits_row_stride, rows_per_batch,
                                   args.logits_batch_stride, "classes", "logits_row_stride",
                                   "logits_batch_stride", plan.logits));
  if (plan.probabilities) {
    ACTLOSS_TRY(host::batched_region("targets", args.targets, args.target_dtype, rows,
                                     args.classes, args.target_row_stride, rows_per_batch,
                                     args.target_batch_stride, "classes", "target_row_stride",
                                     "target_batch_stride", plan.targets));
  } else {
    const std::int64_t index_size = args.target_kind == TargetKind::class_index_i32 ? 4 : 8;
    ACTLOSS_TRY(host::class_index_region("targets", args.targets, index_size, rows,
                                         rows_per_batch, args.target_batch_stride,
                                         "target_batch_stride", plan.targets));
  }
  // Optional inputs span nothing when there are no rows: they are not read.
  ACTLOSS_TRY(host::vector_region("class_weight", args.class_weight,
                                  args.class_weight != nullptr && rows > 0 ? args.classes : 0, 4,
                                  "classes", plan.class_weight));
  ACTLOSS_TRY(host::vector_region("loss", args.loss, args.loss != nullptr ? loss_count : 0, 4,
                                  "rows", plan.loss));
  ACTLOSS_TRY(host::vector_region("lse", args.lse, args.lse != nullptr ? rows : 0, 4, "rows",
                                  plan.lse));
  constexpr std::int64_t stats_size = sizeof(CrossEntropyRowStats);
  constexpr std::int64_t stats_alignment = alignof(CrossEntropyRowStats);
  ACTLOSS_TRY(host::vector_region("stats", args.stats, args.stats != nullptr ? rows : 0,
                                  stats_size, "rows", plan.stats, stats_alignment));
  ACTLOSS_TRY(host::vector_region("predicted", args.predicted,
                                  args.predicted != nullptr ? rows : 0, 8, "rows",
                                  plan.predicted));
  ACTLOSS_TRY(host::vector_region("accuracy", args.accuracy, args.accuracy != nullptr ? 1 : 0, 4,
                                  "rows", plan.accuracy));
  ACTLOSS_TRY(host::vector_region("saved_stats", args.saved_stats,
                                  pass == Pass::backward ? rows : 0, stats_size, "rows",
                                  plan.saved_stats, stats_alignment));
  if (writes_grad) {
    ACTLOSS_TRY(host::batched_region("grad", args.grad, args.grad_dtype, rows, args.classes,
                                     args.grad_row_stride, rows_per_batch, args.grad_batch_stride,
                                     "classes", "grad_row_stride", "grad_batch_stride",
                                     plan.grad));
  }
  ACTLOSS_TRY(host::vector_region("upstream_grad", args.upstream_grad,
                                  args.upstream_grad != nullptr && rows > 0 ? loss_count : 0, 4,
                                  "rows", plan.upstream_grad));

  if (rows > 0) {
    ACTLOSS_TRY(host::check_required(args.logits, "logits", "rows > 0"));
    ACTLOSS_TRY(host::check_required(args.targets, "targets", "rows > 0"));
    if (pass == Pass::forward) {
      ACTLOSS_TRY(host::check_required(args.loss, "loss", "forward writes it when rows > 0"));
    }
    if (pass == Pass::backward) {
      ACTLOSS_TRY(host::check_required(args.saved_stats, "saved_stats",
                                       "backward reads it when rows > 0"));
    }
    if (writes_grad) {
      ACTLOSS_TRY(host::check_required(args.grad, "grad", "the pass writes it when rows > 0"));
    }
  }

  ACTLOSS_TRY(host::check_no_overlap(plan.loss, {&plan.logits, &plan.targets,
                                                 &plan.class_weight, &plan.saved_stats,
                                                 &plan.upstream_grad}));
  ACTLOSS_TRY(host::check_no_overlap(plan.lse, {&plan.logits, &plan.targets, &plan.class_weight,
                                                &plan.saved_stats, &plan.upstream_grad,
                                                &plan.loss}));
  ACTLOSS_TRY(host::check_no_overlap(plan.stats, {&plan.logits, &plan.targets,
                                                  &plan.class_weight, &plan.saved_stats,
                                                  &plan.upstream_grad, &plan.loss, &plan.lse}));
  ACTLOSS_TRY(host::check_no_overlap(plan.predicted, {&plan.logits, &plan.targets,
                                                      &plan.class_weight, &plan.upstream_grad,
                                                      &plan.loss, &plan.lse, &plan.stats}));
  ACTLOSS_TRY(host::check_no_overlap(plan.accuracy,
                                     {&plan.logits, &plan.targets, &plan.class_weight,
                                      &plan.upstream_grad, &plan.loss, &plan.lse, &plan.stats,
                                      &plan.predicted}));
  ACTLOSS_TRY(host::check_no_overlap_except_in_place(
      plan.grad, plan.logits,
      {&plan.targets, &plan.class_weight, &plan.saved_stats, &plan.upstream_grad, &plan.loss,
       &plan.lse, &plan.stats, &plan.predicted, &plan.accuracy}));
  return {};
}

host::BatchedRows layout_of(const CrossEntropyArgs& args, std::int64_t row_stride,
                           std::int64_t batch_stride, std::int64_t cols) {
  return host::BatchedRows{args.rows, cols, row_stride, args.rows_per_batch, batch_stride};
}

std::int64_t load_target(const Plan& plan, std::int64_t row) {
  const std::int64_t index =
      layout_of(plan.args, 1, plan.args.target_batch_stride, 1).start_of(row);
  return host::load_class_target(plan.args.targets, plan.args.target_kind, index);
}

host::BatchedRows grad_layout(const CrossEntropyArgs& args) {
  return layout_of(args, args.grad_row_stride, args.grad_batch_stride, args.classes);
}

// The data check that the CPU path can afford before writing anything (on CUDA the kernel
// records it instead; see DeviceError).
Status check_class_targets(const Plan& plan, const CrossEntropyOptions& options) {
  if (plan.probabilities) return {};
  for (std::int64_t row = 0; row < plan.args.rows; ++row) {
    const std::int64_t target = load_target(plan, row);
    if (target == options.ignore_index) continue;
    if (target < 0 || target >= plan.args.classes) {
      return host::make_status(StatusCode::out_of_range, "targets", "row ", row, " has class ",
                               target, ", outside [0, ", plan.args.classes,
                               ") and not ignore_index (", options.ignore_index, ")");
    }
  }
  return {};
}

ref::CrossEntropyProblem make_problem(const Plan& plan, const CrossEntropyOptions& options) {
  const CrossEntropyArgs& args = plan.args;
  ref::CrossEntropyProblem problem;
  problem.rows = args.rows;
  problem.classes = args.classes;
  problem.logits = host::gather(
      args.logits, args.logits_dtype,
      layout_of(args, args.logits_row_stride, args.logits_batch_stride, args.classes));
  problem.soft_targets = plan.probabilities;
  if (plan.probabilities) {
    problem.target_prob = host::gather(
        args.targets, args.target_dtype,
        layout_of(args, args.target_row_stride, args.target_batch_stride, args.classes));
  } else {
    problem.target_index.resize(static_cast<std::size_t>(args.rows));
    for (std::int64_t row = 0; row < args.rows; ++row) {
      problem.target_index[static_cast<std::size_t>(row)] = load_target(plan, row);
    }
  }
  problem.class_weight = host::gather_f32(args.class_weight, args.classes);
  problem.ignore_index = options.ignore_index;
  problem.label_smoothing = options.label_smoothing;
  problem.z_loss = options.z_loss;
  problem.softcap = options.softcap;
  problem.reduction = host::to_ref(options.reduction);
  problem.grad_scale = args.grad_scale;
  problem.upstream = host::gather_upstream(args.upstream_grad, options.reduction, args.rows);
  return problem;
}

void write_loss(const Plan& plan, const CrossEntropyOptions& options,
                const ref::CrossEntropyResult& result) {
  const CrossEntropyArgs& args = plan.args;
  if (args.loss != nullptr) {
    if (options.reduction == Reduction::none) {
      host::scatter_f32(args.loss, result.row_loss);
    } else {
      host::store_f32(args.loss, result.loss);
    }
  }
  if (args.lse != nullptr) host::scatter_f32(args.lse, result.lse);
  if (args.stats != nullptr) {
    // The max is one of the (capped) logits and exact in float without softcap; log_sum takes
    // what its rounding lost, so that max + log_sum stays the lse to double precision.
    for (std::int64_t row = 0; row < args.rows; ++row) {
      const auto i = static_cast<std::size_t>(row);
      const float max = host::double_to_float(result.max[i]);
      const double log_sum = std::isfinite(result.max[i])
                                 ? (result.max[i] - static_cast<double>(max)) + result.log_sum[i]
                                 : result.log_sum[i];
      args.stats[row] = CrossEntropyRowStats{max, host::double_to_float(log_sum)};
    }
  }
}

// predicted and accuracy, from the gathered (unsoftcapped) logits.
void write_predictions(const Plan& plan, const CrossEntropyOptions& options,
                       const ref::CrossEntropyProblem& problem) {
  const CrossEntropyArgs& args = plan.args;
  if (args.predicted == nullptr) return;
  const std::vector<std::int64_t> predicted =
      ref::predicted_classes(args.rows, args.classes, problem.logits);
  if (args.accuracy != nullptr) {
    *args.accuracy = host::double_to_float(ref::token_accuracy(
        predicted, problem.target_index, options.ignore_index, args.classes));
  }
  std::copy(predicted.begin(), predicted.end(), args.predicted);
}

Status run_on_cpu(Pass pass, const Plan& plan, const CrossEntropyOptions& options) {
  ACTLOSS_TRY(check_class_targets(plan, options));
  const CrossEntropyArgs& args = plan.args;
  return host::run_cpu("cross_entropy", [&] {
    if (args.rows == 0) {
      // Nothing to compute; a reduced loss over no rows is 0 by the API's definition.
      if (args.loss != nullptr && options.reduction != Reduction::none) *args.loss = 0.0f;
      if (args.accuracy != nullptr) *args.accuracy = 0.0f;
      return;
    }
    const ref::CrossEntropyProblem problem = make_problem(plan, options);
    switch (pass) {
      case Pass::forward: {
        const ref::CrossEntropyResult result = ref::cross_entropy(problem);
        write_loss(plan, options, result);
        write_predictions(plan, options, problem);
        return;
      }
      case Pass::backward: {
        std::vector<double> max(static_cast<std::size_t>(args.rows));
        std::vector<double> log_sum(max.size());
        for (std::int64_t row = 0; row < args.rows; ++row) {
          max[static_cast<std::size_t>(row)] = args.saved_stats[row].max;
          log_sum[static_cast<std::size_t>(row)] = args.saved_stats[row].log_sum;
        }
        const std::vector<double> grad = ref::cross_entropy_backward(problem, max, log_sum);
        host::scatter(args.grad, args.grad_dtype, grad_layout(args), grad);
        return;
      }
      case Pass::forward_backward: {
        const ref::CrossEntropyResult result = ref::cross_entropy(problem);
        host::scatter(args.grad, args.grad_dtype, grad_layout(args), result.grad);
        write_loss(plan, options, result);
        write_predictions(plan, options, problem);
        return;
      }
    }
  });
}

Status run(Pass pass, const CrossEntropyArgs& args, const CrossEntropyOptions& options,
           const Exec& exec) {
  Plan plan;
  ACTLOSS_TRY(validate(pass, args, options, exec, plan));
  host::Region workspace;
  ACTLOSS_TRY(host::check_workspace(
      exec, {&plan.logits, &plan.targets, &plan.class_weight, &plan.loss, &plan.lse,
             &plan.stats, &plan.saved_stats, &plan.grad, &plan.upstream_grad, &plan.predicted,
             &plan.accuracy},
      workspace));
  ACTLOSS_TRY(host::check_memory(
      exec, {&plan.logits, &plan.targets, &plan.class_weight, &plan.loss, &plan.lse,
             &plan.stats, &plan.saved_stats, &plan.grad, &plan.upstream_grad, &plan.predicted,
             &plan.accuracy, &workspace}));
  if (exec.device == Device::cpu) {
    // Out-of-range targets are refused before the backend writes anything.
    ACTLOSS_TRY(check_class_targets(plan, options));
    if (auto status = detail::cpu_cross_entropy(pass, plan.args, options)) return *status;
  }
  if (host::runs_on_host(exec.device)) return run_on_cpu(pass, plan, options);
  return detail::cuda_cross_entropy(pass, plan.args, options, exec);
}

}  // namespace

Status cross_entropy_forward(const CrossEntropyArgs& args, const CrossEntropyOptions& options,
                             const Exec& exec) {
  return run(Pass::forward, args, options, exec);
}

Status cross_entropy_backward(const CrossEntropyArgs& args, const CrossEntropyOptions& options,
                              const Exec& exec) {
  return run(Pass::backward, args, options, exec);
}

Status cross_entropy_forward_backward(const CrossEntropyArgs& args,
                                      const CrossEntropyOptions& options, const Exec& exec) {
  return run(Pass::forward_backward, args, options, exec);
}

Status cross_entropy_workspace_size(const CrossEntropyArgs& args,
                                    const CrossEntropyOptions& options, const Exec& exec,
                                    std::size_t* bytes) {
  ACTLOSS_TRY(host::check_workspace_query(exec, bytes));
  ACTLOSS_TRY(check_options(Pass::forward, args, options));
  ACTLOSS_TRY(host::check_non_negative(args.rows, "rows"));
  ACTLOSS_TRY(host::check_non_negative(args.classes, "classes"));
  if (!is_valid(args.target_kind)) {
    return host::invalid("target_kind", "not a TargetKind value (got ",
                         static_cast<int>(args.target_kind), ")");
  }
  ACTLOSS_TRY(host::check_dtype(args.logits_dtype, "logits_dtype"));
  if (host::runs_on_host(exec.device) || args.rows == 0) {
    *bytes = 0;
    return {};
  }
  return detail::cuda_cross_entropy_workspace_size(args, options, bytes);
}

}  // namespace actloss
