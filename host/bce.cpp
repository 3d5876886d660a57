// Public binary-cross-entropy-with-logits entry points: validate, normalise, then run on the CPU
// path or hand over to the CUDA backend.
//
// What each pass needs (when rows * cols > 0; with no elements every pointer may be null):
//   forward           logits, targets, loss    writes loss
//   backward          logits, targets, grad    writes grad
//   forward_backward  logits, targets, grad    writes grad and loss (optional)
// pos_weight, weight and upstream_grad are optional inputs. There is no in-place case: the
// header does not promise one, so grad may not overlap the logits. Fields a pass does not use
// are ignored and reach the backend as null.
#include <actloss/bce.h>

#include "host/backend.h"
#include "host/cpu/backend.h"
#include "host/cpu_path.h"
#include "host/validate.h"

namespace actloss {
namespace {

using detail::Pass;
using host::Region;

bool is_valid(BceWeightShape shape) {
  switch (shape) {
    case BceWeightShape::full:
    case BceWeightShape::per_column:
    case BceWeightShape::per_row: return true;
  }
  return false;
}

struct Plan {
  BceArgs args;
  Region logits, targets, pos_weight, weight, loss, grad, upstream_grad;
};

Status validate(Pass pass, const BceArgs& in, const BceOptions& options, const Exec& exec,
                Plan& plan) {
  ACTLOSS_TRY(host::check_exec(exec));
  ACTLOSS_TRY(host::check_reduction(options.reduction));
  const bool writes_loss = pass != Pass::backward;
  const bool writes_grad = pass != Pass::forward;
  if (writes_grad) ACTLOSS_TRY(host::check_finite(in.grad_scale, "grad_scale"));

  BceArgs& args = plan.args;
  args = in;
  ACTLOSS_TRY(host::check_non_negative(args.rows, "rows"));
  ACTLOSS_TRY(host::check_non_negative(args.cols, "cols"));
  ACTLOSS_TRY(host::check_dtype(args.logits_dtype, "logits_dtype"));
  ACTLOSS_TRY(host::check_dtype(args.target_dtype, "target_dtype"));
  if (args.weight != nullptr) {
    ACTLOSS_TRY(host::check_dtype(args.weight_dtype, "weight_dtype"));
    if (!is_valid(args.weight_shape)) {
      return host::invalid("weight_shape", "not a BceWeightShape value (got ",
                           static_cast<int>(args.weight_shape), ")");
    }
  }
  const bool full_weight = args.weight != nullptr && args.weight_shape == BceWeightShape::full;
  if (writes_grad) ACTLOSS_TRY(host::check_dtype(args.grad_dtype, "grad_dtype"));

  ACTLOSS_TRY(
      host::normalize_stride(args.logits_row_stride, args.cols, "logits_row_stride", "cols"));
  ACTLOSS_TRY(
      host::normalize_stride(args.target_row_stride, args.cols, "target_row_stride", "cols"));
  if (full_weight) {
    ACTLOSS_TRY(
        host::normalize_stride(args.weight_row_stride, args.cols, "weight_row_stride", "cols"));
  } else {
    args.weight_row_stride = args.cols;
  }
  if (writes_grad) {
    ACTLOSS_TRY(
        host::normalize_stride(args.grad_row_stride, args.cols, "grad_row_stride", "cols"));
  } else {
    args.grad_row_stride = args.cols;
  }

  if (!writes_loss) args.loss = nullptr;
  if (!writes_grad) {
    args.grad = nullptr;
    args.upstream_grad = nullptr;
  }

  const std::int64_t rows = args.rows;
  const std::int64_t cols = args.cols;
  const bool has_elements = rows > 0 && cols > 0;
  ACTLOSS_TRY(host::matrix_region("logits", args.logits, args.logits_dtype, rows, cols,
                                  args.logits_row_stride, "rows", "cols", "logits_row_stride",
                                  plan.logits));
  ACTLOSS_TRY(host::matrix_region("targets", args.targets, args.target_dtype, rows, cols,
                                  args.target_row_stride, "rows", "cols", "target_row_stride",
                                  plan.targets));
  ACTLOSS_TRY(host::vector_region("pos_weight", args.pos_weight,
                                  args.pos_weight != nullptr && has_elements ? cols : 0, 4,
                                  "cols", plan.pos_weight));
  if (full_weight) {
    ACTLOSS_TRY(host::matrix_region("weight", args.weight, args.weight_dtype, rows, cols,
                                    args.weight_row_stride, "rows", "cols", "weight_row_stride",
                                    plan.weight));
  } else if (args.weight != nullptr) {
    const bool per_row = args.weight_shape == BceWeightShape::per_row;
    ACTLOSS_TRY(host::vector_region("weight", args.weight,
                                    has_elements ? (per_row ? rows : cols) : 0,
                                    dtype_size(args.weight_dtype), per_row ? "rows" : "cols",
                                    plan.weight));
  }
  // Per-element float32 buffers (loss and upstream_grad under `none`) are dense
  // [rows x cols]; otherwise they hold one value.
  const bool per_element = options.reduction == Reduction::none;
  if (args.loss != nullptr) {
    if (per_element) {
      ACTLOSS_TRY(host::matrix_region("loss", args.loss, DType::f32, rows, cols, cols, "rows",
                                      "cols", "cols", plan.loss));
    } else {
      ACTLOSS_TRY(host::vector_region("loss", args.loss, 1, 4, "rows", plan.loss));
    }
  }
  if (writes_grad) {
    ACTLOSS_TRY(host::matrix_region("grad", args.grad, args.grad_dtype, rows, cols,
                                    args.grad_row_stride, "rows", "cols", "grad_row_stride",
                                    plan.grad));
  }
  if (args.upstream_grad != nullptr && has_elements) {
    if (per_element) {
      ACTLOSS_TRY(host::matrix_region("upstream_grad", args.upstream_grad, DType::f32, rows,
                                      cols, cols, "rows", "cols", "cols", plan.upstream_grad));
    } else {
      ACTLOSS_TRY(host::vector_region("upstream_grad", args.upstream_grad, 1, 4, "rows",
                                      plan.upstream_grad));
    }
  }

  if (has_elements) {
    ACTLOSS_TRY(host::check_required(args.logits, "logits", "rows * cols > 0"));
    ACTLOSS_TRY(host::check_required(args.targets, "targets", "rows * cols > 0"));
    if (pass == Pass::forward) {
      ACTLOSS_TRY(
          host::check_required(args.loss, "loss", "forward writes it when rows * cols > 0"));
    }
    if (writes_grad) {
      ACTLOSS_TRY(
          host::check_required(args.grad, "grad", "the pass writes it when rows * cols > 0"));
    }
  }

  ACTLOSS_TRY(host::check_no_overlap(plan.loss, {&plan.logits, &plan.targets, &plan.pos_weight,
                                                 &plan.weight, &plan.upstream_grad}));
  ACTLOSS_TRY(host::check_no_overlap(plan.grad, {&plan.logits, &plan.targets, &plan.pos_weight,
                                                 &plan.weight, &plan.upstream_grad,
                                                 &plan.loss}));
  return {};
}

Status run_on_cpu(Pass pass, const Plan& plan, const BceOptions& options) {
  const BceArgs& args = plan.args;
  return host::run_cpu("bce_with_logits", [&] {
    if (args.rows == 0 || args.cols == 0) {
      if (args.loss != nullptr && options.reduction != Reduction::none) *args.loss = 0.0f;
      return;
    }
    ref::BceProblem problem;
    problem.rows = args.rows;
    problem.cols = args.cols;
    problem.logits = host::gather(args.logits, args.logits_dtype, args.rows, args.cols,
                                  args.logits_row_stride);
    problem.targets = host::gather(args.targets, args.target_dtype, args.rows, args.cols,
                                   args.target_row_stride);
    problem.pos_weight = host::gather_f32(args.pos_weight, args.cols);
    // A broadcast weight reaches the reference as the full [rows x cols] tensor it stands for.
    if (args.weight != nullptr) {
      switch (args.weight_shape) {
        case BceWeightShape::full:
          problem.weight = host::gather(args.weight, args.weight_dtype, args.rows, args.cols,
                                        args.weight_row_stride);
          break;
        case BceWeightShape::per_column:
          problem.weight = host::gather(args.weight, args.weight_dtype, args.rows, args.cols, 0);
          break;
        case BceWeightShape::per_row: {
          const std::vector<double> per_row =
              host::gather(args.weight, args.weight_dtype, args.rows, 1, 1);
          problem.weight.reserve(static_cast<std::size_t>(args.rows * args.cols));
          for (double weight : per_row) problem.weight.insert(problem.weight.end(),
                                                              static_cast<std::size_t>(args.cols),
                                                              weight);
          break;
        }
      }
    }
    problem.reduction = host::to_ref(options.reduction);
    problem.grad_scale = args.grad_scale;
    problem.upstream =
        host::gather_upstream(args.upstream_grad, options.reduction, args.rows * args.cols);

    const ref::BceResult result = ref::bce_with_logits(problem);
    if (pass != Pass::forward) {
      host::scatter(args.grad, args.grad_dtype, args.rows, args.cols, args.grad_row_stride,
                    result.grad);
    }
    if (args.loss != nullptr) {
      if (options.reduction == Reduction::none) {
        host::scatter_f32(args.loss, result.elem_loss);
      } else {
        host::store_f32(args.loss, result.loss);
      }
    }
  });
}

Status run(Pass pass, const BceArgs& args, const BceOptions& options, const Exec& exec) {
  Plan plan;
  ACTLOSS_TRY(validate(pass, args, options, exec, plan));
  host::Region workspace;
  ACTLOSS_TRY(host::check_workspace(exec, {&plan.logits, &plan.targets, &plan.pos_weight,
                                           &plan.weight, &plan.loss, &plan.grad,
                                           &plan.upstream_grad},
                                    workspace));
  ACTLOSS_TRY(host::check_memory(exec, {&plan.logits, &plan.targets, &plan.pos_weight,
                                        &plan.weight, &plan.loss, &plan.grad,
                                        &plan.upstream_grad, &workspace}));
  if (exec.device == Device::cpu) {
    if (auto status = detail::cpu_bce_with_logits(pass, plan.args, options)) return *status;
  }
  if (host::runs_on_host(exec.device)) return run_on_cpu(pass, plan, options);
  return detail::cuda_bce_with_logits(pass, plan.args, options, exec);
}

}  // namespace

Status bce_with_logits_forward(const BceArgs& args, const BceOptions& options,
                               const Exec& exec) {
  return run(Pass::forward, args, options, exec);
}

Status bce_with_logits_backward(const BceArgs& args, const BceOptions& options,
                                const Exec& exec) {
  return run(Pass::backward, args, options, exec);
}

Status bce_with_logits_forward_backward(const BceArgs& args, const BceOptions& options,
                                        const Exec& exec) {
  return run(Pass::forward_backward, args, options, exec);
}

Status bce_with_logits_workspace_size(const BceArgs& args, const BceOptions& options,
                                      const Exec& exec, std::size_t* bytes) {
  ACTLOSS_TRY(host::check_workspace_query(exec, bytes));
  ACTLOSS_TRY(host::check_reduction(options.reduction));
  ACTLOSS_TRY(host::check_non_negative(args.rows, "rows"));
  ACTLOSS_TRY(host::check_non_negative(args.cols, "cols"));
  if (host::runs_on_host(exec.device)) {
    *bytes = 0;
    return {};
  }
  return detail::cuda_bce_workspace_size(args, options, bytes);
}

}  // namespace actloss
