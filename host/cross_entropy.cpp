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
#include <limits>
#include <vector>

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

// loss_required: forward's loss must be given when rows > 0 (the sharded calls relax it).
Status validate(Pass pass, const CrossEntropyArgs& in, const CrossEntropyOptions& options,
                const Exec& exec, Plan& plan, bool loss_required = true) {
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
    if (pass == Pass::forward && loss_required) {
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
// records it instead; see DeviceError). Classes: the vocabulary's (the sharded calls' total).
Status check_class_targets(const Plan& plan, const CrossEntropyOptions& options,
                           std::int64_t classes) {
  if (plan.probabilities) return {};
  for (std::int64_t row = 0; row < plan.args.rows; ++row) {
    const std::int64_t target = load_target(plan, row);
    if (target == options.ignore_index) continue;
    if (target < 0 || target >= classes) {
      return host::make_status(StatusCode::out_of_range, "targets", "row ", row, " has class ",
                               target, ", outside [0, ", classes, ") and not ignore_index (",
                               options.ignore_index, ")");
    }
  }
  return {};
}

Status check_class_targets(const Plan& plan, const CrossEntropyOptions& options) {
  return check_class_targets(plan, options, plan.args.classes);
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

// ---- Vocabulary-parallel cross-entropy ---------------------------------------------------------
//
// Both phases validate as the unsharded passes over this shard's slices (phase 1 as forward
// without a loss, phase 2 as forward or, with grad, forward_backward), then check what only they
// have: the shard against the vocabulary, the statistics' buffer, and the outputs they do not
// support. Class targets are checked against the whole vocabulary.

Status check_unsharded_outputs_absent(const CrossEntropyArgs& args) {
  const auto refuse = [](const char* argument) {
    return host::invalid(argument, "not written by the sharded calls (must be null)");
  };
  if (args.stats != nullptr) return refuse("stats");
  if (args.saved_stats != nullptr) return refuse("saved_stats");
  if (args.predicted != nullptr) return refuse("predicted");
  if (args.accuracy != nullptr) return refuse("accuracy");
  return {};
}

Status validate_shard_stats(const CrossEntropyArgs& in, const CrossEntropyShard& shard,
                            const CrossEntropyOptions& options, CrossEntropyShardStats* stats,
                            const Exec& exec, Plan& plan, host::Region& stats_region) {
  ACTLOSS_TRY(check_unsharded_outputs_absent(in));
  CrossEntropyArgs args = in;
  args.loss = args.lse = nullptr;
  args.grad = nullptr;
  args.upstream_grad = nullptr;
  ACTLOSS_TRY(validate(Pass::forward, args, options, exec, plan, /*loss_required=*/false));
  ACTLOSS_TRY(host::check_shard(plan.args.rows, plan.args.classes, shard));
  const std::int64_t rows = plan.args.rows;
  ACTLOSS_TRY(host::vector_region("stats", stats, rows, sizeof(CrossEntropyShardStats), "rows",
                                  stats_region, alignof(CrossEntropyShardStats)));
  if (rows > 0) ACTLOSS_TRY(host::check_required(stats, "stats", "rows > 0"));
  return host::check_no_overlap(stats_region,
                                {&plan.logits, &plan.targets, &plan.class_weight});
}

Status validate_shard_finish(const CrossEntropyArgs& in, const CrossEntropyShard& shard,
                             const CrossEntropyOptions& options,
                             const CrossEntropyShardStats* gathered, std::int64_t shards,
                             const Exec& exec, Plan& plan, host::Region& gathered_region) {
  ACTLOSS_TRY(check_unsharded_outputs_absent(in));
  if (in.rows > 0 && in.loss == nullptr && in.grad == nullptr) {
    return host::invalid("grad", "null, and so is loss: cross_entropy_shard_finish writes one "
                                 "of them at least");
  }
  const Pass pass = in.grad != nullptr ? Pass::forward_backward : Pass::forward;
  ACTLOSS_TRY(validate(pass, in, options, exec, plan, /*loss_required=*/false));
  ACTLOSS_TRY(host::check_shard(plan.args.rows, plan.args.classes, shard));
  const std::int64_t rows = plan.args.rows;
  ACTLOSS_TRY(host::gathered_stats_region(gathered, shards, rows, shard, gathered_region));
  for (const host::Region* output : {&plan.loss, &plan.lse, &plan.grad}) {
    ACTLOSS_TRY(host::check_no_overlap(*output, {&gathered_region}));
  }
  return {};
}

// The CPU path of both phases: float64 throughout, each row's statistics rounded to float once,
// as the gather carries them.

double softcapped(double x, float cap) { return cap > 0.0f ? cap * std::tanh(x / cap) : x; }
double softcap_slope(double x, float cap) {
  if (cap <= 0.0f) return 1.0;
  const double t = std::tanh(x / cap);
  return 1.0 - t * t;
}

// One row of this shard: its capped logits and the coefficients a_c of (lse - x'_c) in its loss.
struct ShardRow {
  std::vector<double> capped, coefficient;
  double target_weight = 0.0;
  bool ignored = false;
};

class ShardRows {
 public:
  ShardRows(const Plan& plan, const CrossEntropyShard& shard, const CrossEntropyOptions& options)
      : plan_(plan), shard_(shard), options_(options) {
    const CrossEntropyArgs& args = plan.args;
    logits_ = host::gather(
        args.logits, args.logits_dtype,
        layout_of(args, args.logits_row_stride, args.logits_batch_stride, args.classes));
    if (plan.probabilities) {
      probabilities_ = host::gather(
          args.targets, args.target_dtype,
          layout_of(args, args.target_row_stride, args.target_batch_stride, args.classes));
    }
    weights_ = host::gather_f32(args.class_weight, args.classes);
  }

  double logit(std::int64_t row, std::int64_t c) const {
    return logits_[static_cast<std::size_t>(row * plan_.args.classes + c)];
  }

  void load(std::int64_t row, ShardRow& out) const {
    const std::int64_t classes = plan_.args.classes;
    const double eps = options_.label_smoothing;
    const double smooth = eps / static_cast<double>(shard_.total_classes);
    out.capped.resize(static_cast<std::size_t>(classes));
    out.coefficient.assign(static_cast<std::size_t>(classes), 0.0);
    out.target_weight = 0.0;
    out.ignored = false;
    for (std::int64_t c = 0; c < classes; ++c) {
      out.capped[static_cast<std::size_t>(c)] = softcapped(logit(row, c), options_.softcap);
    }
    const auto weight = [&](std::int64_t c) {
      return weights_.empty() ? 1.0 : weights_[static_cast<std::size_t>(c)];
    };
    if (plan_.probabilities) {
      for (std::int64_t c = 0; c < classes; ++c) {
        const double q = probabilities_[static_cast<std::size_t>(row * classes + c)];
        out.coefficient[static_cast<std::size_t>(c)] = weight(c) * ((1.0 - eps) * q + smooth);
      }
      return;
    }
    const std::int64_t target = load_target(plan_, row);
    if (target == options_.ignore_index) {
      out.ignored = true;
      return;
    }
    if (eps != 0.0) {
      for (std::int64_t c = 0; c < classes; ++c)
        out.coefficient[static_cast<std::size_t>(c)] = smooth * weight(c);
    }
    const std::int64_t local = target - shard_.first_class;
    if (local >= 0 && local < classes) {
      out.coefficient[static_cast<std::size_t>(local)] += (1.0 - eps) * weight(local);
      out.target_weight = weight(local);
    }
  }

 private:
  const Plan& plan_;
  const CrossEntropyShard& shard_;
  const CrossEntropyOptions& options_;
  std::vector<double> logits_, probabilities_, weights_;
};

constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// a (b), with a zero coefficient contributing nothing even on an infinite b (but NaN kept).
double weighted(double a, double b) { return a == 0.0 && !std::isnan(b) ? 0.0 : a * b; }

CrossEntropyShardStats shard_row_stats(const ShardRow& row) {
  double max = -kInfinity;
  std::size_t argmax = 0;
  bool has_nan = false;
  double weight = 0.0;
  for (std::size_t c = 0; c < row.capped.size(); ++c) {
    const double x = row.capped[c];
    if (std::isnan(x)) has_nan = true;
    if (x > max) {
      max = x;
      argmax = c;
    }
    weight += row.coefficient[c];
  }
  CrossEntropyShardStats stats{};
  // Everything relative to the max as the gather carries it (rounded to float with softcap).
  stats.max = host::double_to_float(max);
  const double m = stats.max;
  double rest = 0.0, gap = 0.0;
  if (has_nan || max == kInfinity) {
    rest = gap = kNaN;
  } else if (max == -kInfinity) {
    gap = weight > 0.0 ? kInfinity : 0.0;
  } else {
    for (std::size_t c = 0; c < row.capped.size(); ++c) {
      const double shifted = row.capped[c] - m;
      rest += c == argmax ? std::expm1(shifted) : std::exp(shifted);
      gap += weighted(row.coefficient[c], -shifted);
    }
  }
  stats.rest = host::double_to_float(rest);
  stats.weight = host::double_to_float(weight);
  stats.gap = host::double_to_float(gap);
  stats.target_weight = host::double_to_float(row.target_weight);
  return stats;
}

// A row's statistics over every shard.
struct CombinedRow {
  double max = -kInfinity;  // M
  double log_sum = 0.0;     // log sum_c exp(x'_c - M)
  double weight = 0.0;      // sum_c a_c
  double gap = 0.0;         // sum_c a_c (M - x'_c)
  double target_weight = 0.0;
  bool nan = false;
};

CombinedRow combine(const CrossEntropyShardStats* gathered, std::int64_t shards,
                    std::int64_t rows, std::int64_t row) {
  CombinedRow out;
  const auto at = [&](std::int64_t k) { return gathered[k * rows + row]; };
  std::int64_t holder = -1;  // the first shard whose max is M: its rest leaves out M's own 1
  for (std::int64_t k = 0; k < shards; ++k) {
    const CrossEntropyShardStats s = at(k);
    if (std::isnan(s.rest) || std::isnan(s.max)) out.nan = true;
    if (holder < 0 || s.max > out.max) {
      out.max = s.max;
      holder = k;
    }
  }
  double rest = 0.0;
  for (std::int64_t k = 0; k < shards; ++k) {
    const CrossEntropyShardStats s = at(k);
    out.weight += s.weight;
    out.target_weight += s.target_weight;
    if (s.max == -kInfinity) {
      out.gap += s.weight > 0.0 ? kInfinity : 0.0;
      continue;
    }
    const double lag = static_cast<double>(s.max) - out.max;  // <= 0
    rest += k == holder ? static_cast<double>(s.rest)
                        : (1.0 + static_cast<double>(s.rest)) * std::exp(lag);
    out.gap += static_cast<double>(s.gap) + weighted(s.weight, -lag);
  }
  out.log_sum = out.max == -kInfinity ? -kInfinity : std::log1p(rest);
  if (out.nan) out.log_sum = out.gap = kNaN;
  return out;
}

Status run_shard_stats_on_cpu(const Plan& plan, const CrossEntropyShard& shard,
                              const CrossEntropyOptions& options, CrossEntropyShardStats* stats) {
  ACTLOSS_TRY(check_class_targets(plan, options, shard.total_classes));
  return host::run_cpu("cross_entropy_shard_stats", [&] {
    const std::int64_t rows = plan.args.rows;
    if (rows == 0) return;
    const ShardRows source(plan, shard, options);
    std::vector<CrossEntropyShardStats> out(static_cast<std::size_t>(rows));
    ShardRow row;
    for (std::int64_t r = 0; r < rows; ++r) {
      source.load(r, row);
      out[static_cast<std::size_t>(r)] = shard_row_stats(row);
    }
    std::copy(out.begin(), out.end(), stats);
  });
}

Status run_shard_finish_on_cpu(const Plan& plan, const CrossEntropyShard& shard,
                               const CrossEntropyOptions& options,
                               const CrossEntropyShardStats* gathered, std::int64_t shards) {
  ACTLOSS_TRY(check_class_targets(plan, options, shard.total_classes));
  const CrossEntropyArgs& args = plan.args;
  return host::run_cpu("cross_entropy_shard_finish", [&] {
    const std::int64_t rows = args.rows, classes = args.classes;
    if (rows == 0) {
      if (args.loss != nullptr && options.reduction != Reduction::none) *args.loss = 0.0f;
      return;
    }
    const ShardRows source(plan, shard, options);
    std::vector<CombinedRow> combined(static_cast<std::size_t>(rows));
    std::vector<bool> ignored(static_cast<std::size_t>(rows));
    // Every rank sums the same statistics in the same order: the same bits everywhere.
    double weight_sum = 0.0;
    for (std::int64_t r = 0; r < rows; ++r) {
      combined[static_cast<std::size_t>(r)] = combine(gathered, shards, rows, r);
      ignored[static_cast<std::size_t>(r)] =
          !plan.probabilities && load_target(plan, r) == options.ignore_index;
      if (!plan.probabilities && !ignored[static_cast<std::size_t>(r)]) {
        weight_sum += combined[static_cast<std::size_t>(r)].target_weight;
      }
    }
    if (plan.probabilities) weight_sum = static_cast<double>(rows);
    const bool mean = options.reduction == Reduction::mean;
    const double z = options.z_loss;

    std::vector<double> row_loss(static_cast<std::size_t>(rows), 0.0);
    std::vector<double> lse(static_cast<std::size_t>(rows));
    std::vector<double> grad;
    if (args.grad != nullptr) grad.assign(static_cast<std::size_t>(rows * classes), 0.0);
    ShardRow row;
    for (std::int64_t r = 0; r < rows; ++r) {
      const CombinedRow& c = combined[static_cast<std::size_t>(r)];
      const double row_lse = c.max + c.log_sum;
      lse[static_cast<std::size_t>(r)] = row_lse;
      if (ignored[static_cast<std::size_t>(r)]) continue;
      double loss;
      if (c.nan) {
        loss = kNaN;
      } else if (c.max == -kInfinity) {
        // No class has mass: every a_c > 0 costs -log 0.
        loss = c.weight > 0.0 ? kInfinity : 0.0;
        if (z != 0.0) loss += kInfinity;
      } else {
        loss = weighted(c.weight, c.log_sum) + c.gap + z * row_lse * row_lse;
      }
      row_loss[static_cast<std::size_t>(r)] = loss;
      if (args.grad == nullptr || (mean && weight_sum == 0.0)) continue;
      double multiplier = args.grad_scale;
      if (args.upstream_grad != nullptr) {
        multiplier *= options.reduction == Reduction::none ? args.upstream_grad[r]
                                                           : args.upstream_grad[0];
      }
      if (mean) multiplier /= weight_sum;
      source.load(r, row);
      for (std::int64_t k = 0; k < classes; ++k) {
        const auto i = static_cast<std::size_t>(k);
        double g = -row.coefficient[i];
        if (c.nan) {
          g = kNaN;
        } else if (c.max != -kInfinity) {
          const double p = std::exp((row.capped[i] - c.max) - c.log_sum);
          if (p != 0.0) g += c.weight * p + 2.0 * z * row_lse * p;
        }
        grad[static_cast<std::size_t>(r * classes + k)] =
            g * multiplier * softcap_slope(source.logit(r, k), options.softcap);
      }
    }
    if (args.grad != nullptr) host::scatter(args.grad, args.grad_dtype, grad_layout(args), grad);
    if (args.lse != nullptr) host::scatter_f32(args.lse, lse);
    if (args.loss != nullptr) {
      if (options.reduction == Reduction::none) {
        host::scatter_f32(args.loss, row_loss);
      } else {
        double total = 0.0;
        for (double value : row_loss) total += value;
        if (mean) total = weight_sum == 0.0 ? 0.0 : total / weight_sum;
        host::store_f32(args.loss, total);
      }
    }
  });
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

Status cross_entropy_shard_stats(const CrossEntropyArgs& args, const CrossEntropyShard& shard,
                                 const CrossEntropyOptions& options,
                                 CrossEntropyShardStats* stats, const Exec& exec) {
  Plan plan;
  host::Region stats_region;
  ACTLOSS_TRY(validate_shard_stats(args, shard, options, stats, exec, plan, stats_region));
  ACTLOSS_TRY(host::check_memory(exec, {&plan.logits, &plan.targets, &plan.class_weight,
                                        &stats_region}));
  if (host::runs_on_host(exec.device)) {
    return run_shard_stats_on_cpu(plan, shard, options, stats);
  }
  return detail::cuda_cross_entropy_shard_stats(plan.args, shard, options, stats, exec);
}

Status cross_entropy_shard_finish(const CrossEntropyArgs& args, const CrossEntropyShard& shard,
                                  const CrossEntropyOptions& options,
                                  const CrossEntropyShardStats* gathered, std::int64_t shards,
                                  const Exec& exec) {
  Plan plan;
  host::Region gathered_region;
  ACTLOSS_TRY(
      validate_shard_finish(args, shard, options, gathered, shards, exec, plan, gathered_region));
  host::Region workspace;
  ACTLOSS_TRY(host::check_workspace(
      exec, {&plan.logits, &plan.targets, &plan.class_weight, &plan.loss, &plan.lse, &plan.grad,
             &plan.upstream_grad, &gathered_region},
      workspace));
  ACTLOSS_TRY(host::check_memory(
      exec, {&plan.logits, &plan.targets, &plan.class_weight, &plan.loss, &plan.lse, &plan.grad,
             &plan.upstream_grad, &gathered_region, &workspace}));
  if (host::runs_on_host(exec.device)) {
    return run_shard_finish_on_cpu(plan, shard, options, gathered, shards);
  }
  return detail::cuda_cross_entropy_shard_finish(plan.args, shard, options, gathered, shards,
                                                 plan.args.rows, exec);
}

Status cross_entropy_shard_workspace_size(const CrossEntropyArgs& args,
                                          const CrossEntropyOptions& options, const Exec& exec,
                                          std::size_t* bytes) {
  ACTLOSS_TRY(host::check_workspace_query(exec, bytes));
  ACTLOSS_TRY(host::check_reduction(options.reduction));
  ACTLOSS_TRY(host::check_non_negative(args.rows, "rows"));
  if (host::runs_on_host(exec.device) || args.rows == 0) {
    *bytes = 0;
    return {};
  }
  return detail::cuda_cross_entropy_shard_workspace_size(args, options, bytes);
}

}  // namespace actloss
