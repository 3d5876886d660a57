// Public mean-squared-error entry points: validate, then run on the CPU path or hand over to the
// CUDA backend.
//
// What each pass needs (when rows * n > 0; otherwise every pointer may be null):
//   forward           input, target, loss    writes loss
//   backward          input, target, grad    writes grad
//   forward_backward  input, target, grad    writes grad and loss (optional)
// upstream_grad is optional. No in-place case is documented, so grad may not overlap input.
#include <actloss/mse.h>

#include "host/backend.h"
#include "host/cpu/backend.h"
#include "host/cpu_path.h"
#include "host/validate.h"

namespace actloss {
namespace {

using detail::Pass;
using host::Region;

struct Plan {
  MseArgs args;
  Region input, target, loss, grad, upstream_grad;
};

Status validate(Pass pass, const MseArgs& in, const MseOptions& options, const Exec& exec,
                Plan& plan) {
  ACTLOSS_TRY(host::check_exec(exec));
  ACTLOSS_TRY(host::check_reduction(options.reduction));
  const bool writes_loss = pass != Pass::backward;
  const bool writes_grad = pass != Pass::forward;
  if (writes_grad) ACTLOSS_TRY(host::check_finite(in.grad_scale, "grad_scale"));

  MseArgs& args = plan.args;
  args = in;
  ACTLOSS_TRY(host::check_non_negative(args.rows, "rows"));
  ACTLOSS_TRY(host::check_non_negative(args.n, "n"));
  ACTLOSS_TRY(host::check_dtype(args.input_dtype, "input_dtype"));
  ACTLOSS_TRY(host::check_dtype(args.target_dtype, "target_dtype"));
  if (writes_grad) ACTLOSS_TRY(host::check_dtype(args.grad_dtype, "grad_dtype"));

  if (!writes_loss) args.loss = nullptr;
  if (!writes_grad) {
    args.grad = nullptr;
    args.upstream_grad = nullptr;
  }

  const std::int64_t rows = args.rows, n = args.n;
  ACTLOSS_TRY(host::normalize_stride(args.input_row_stride, n, "input_row_stride", "n"));
  ACTLOSS_TRY(host::normalize_stride(args.target_row_stride, n, "target_row_stride", "n"));
  if (writes_grad) {
    ACTLOSS_TRY(host::normalize_stride(args.grad_row_stride, n, "grad_row_stride", "n"));
  } else {
    args.grad_row_stride = n;
  }
  ACTLOSS_TRY(host::matrix_region("input", args.input, args.input_dtype, rows, n,
                                  args.input_row_stride, "rows", "n", "input_row_stride",
                                  plan.input));
  ACTLOSS_TRY(host::matrix_region("target", args.target, args.target_dtype, rows, n,
                                  args.target_row_stride, "rows", "n", "target_row_stride",
                                  plan.target));
  // Per-element float32 buffers (loss and upstream_grad under `none`) are dense [rows x n];
  // otherwise they hold one value. rows * n fits: input spans at least as many elements.
  const std::int64_t elements = rows * n;
  const bool has_elements = elements > 0;
  const std::int64_t loss_count = options.reduction == Reduction::none ? elements : 1;
  ACTLOSS_TRY(host::vector_region("loss", args.loss, args.loss != nullptr ? loss_count : 0, 4,
                                  "n", plan.loss));
  if (writes_grad) {
    ACTLOSS_TRY(host::matrix_region("grad", args.grad, args.grad_dtype, rows, n,
                                    args.grad_row_stride, "rows", "n", "grad_row_stride",
                                    plan.grad));
  }
  ACTLOSS_TRY(host::vector_region("upstream_grad", args.upstream_grad,
                                  args.upstream_grad != nullptr && has_elements ? loss_count : 0,
                                  4, "n", plan.upstream_grad));

  if (has_elements) {
    ACTLOSS_TRY(host::check_required(args.input, "input", "rows * n > 0"));
    ACTLOSS_TRY(host::check_required(args.target, "target", "rows * n > 0"));
    if (pass == Pass::forward) {
      ACTLOSS_TRY(
          host::check_required(args.loss, "loss", "forward writes it when rows * n > 0"));
    }
    if (writes_grad) {
      ACTLOSS_TRY(
          host::check_required(args.grad, "grad", "the pass writes it when rows * n > 0"));
    }
  }

  ACTLOSS_TRY(host::check_no_overlap(plan.loss,
                                     {&plan.input, &plan.target, &plan.upstream_grad}));
  ACTLOSS_TRY(host::check_no_overlap(
      plan.grad, {&plan.input, &plan.target, &plan.upstream_grad, &plan.loss}));
  return {};
}

Status run_on_cpu(Pass pass, const Plan& plan, const MseOptions& options) {
  const MseArgs& args = plan.args;
  return host::run_cpu("mse", [&] {
    const std::int64_t rows = args.rows, n = args.n;
    if (rows == 0 || n == 0) {
      if (args.loss != nullptr && options.reduction != Reduction::none) *args.loss = 0.0f;
      return;
    }
    ref::MseProblem problem;
    problem.n = rows * n;
    problem.input = host::gather(args.input, args.input_dtype, rows, n, args.input_row_stride);
    problem.target = host::gather(args.target, args.target_dtype, rows, n, args.target_row_stride);
    problem.reduction = host::to_ref(options.reduction);
    problem.grad_scale = args.grad_scale;
    problem.upstream = host::gather_upstream(args.upstream_grad, options.reduction, rows * n);

    const ref::MseResult result = ref::mse(problem);
    if (pass != Pass::forward) {
      host::scatter(args.grad, args.grad_dtype, rows, n, args.grad_row_stride, result.grad);
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

Status run(Pass pass, const MseArgs& args, const MseOptions& options, const Exec& exec) {
  Plan plan;
  ACTLOSS_TRY(validate(pass, args, options, exec, plan));
  host::Region workspace;
  ACTLOSS_TRY(host::check_workspace(
      exec, {&plan.input, &plan.target, &plan.loss, &plan.grad, &plan.upstream_grad},
      workspace));
  ACTLOSS_TRY(host::check_memory(
      exec, {&plan.input, &plan.target, &plan.loss, &plan.grad, &plan.upstream_grad,
             &workspace}));
  if (exec.device == Device::cpu) {
    if (auto status = detail::cpu_mse(pass, plan.args, options)) return *status;
  }
  if (host::runs_on_host(exec.device)) return run_on_cpu(pass, plan, options);
  return detail::cuda_mse(pass, plan.args, options, exec);
}

}  // namespace

Status mse_forward(const MseArgs& args, const MseOptions& options, const Exec& exec) {
  return run(Pass::forward, args, options, exec);
}

Status mse_backward(const MseArgs& args, const MseOptions& options, const Exec& exec) {
  return run(Pass::backward, args, options, exec);
}

Status mse_forward_backward(const MseArgs& args, const MseOptions& options, const Exec& exec) {
  return run(Pass::forward_backward, args, options, exec);
}

Status mse_workspace_size(const MseArgs& args, const MseOptions& options, const Exec& exec,
                          std::size_t* bytes) {
  ACTLOSS_TRY(host::check_workspace_query(exec, bytes));
  ACTLOSS_TRY(host::check_reduction(options.reduction));
  ACTLOSS_TRY(host::check_non_negative(args.rows, "rows"));
  ACTLOSS_TRY(host::check_non_negative(args.n, "n"));
  if (host::runs_on_host(exec.device)) {
    *bytes = 0;
    return {};
  }
  return detail::cuda_mse_workspace_size(args, options, bytes);
}

}  // namespace actloss
