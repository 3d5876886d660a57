// Public softmax / log-softmax entry points: validate, normalise strides, then run on the CPU
// path or hand over to the CUDA backend.
//
//   forward   needs x, y (rows > 0)          writes y
//   backward  needs y, dy, dx (rows > 0)     writes dx
// In place: y == x (forward) and dx == dy (backward), each with the same dtype and strides.
// cols == 0 with rows > 0 is rejected: a softmax over nothing has no value.
#include <actloss/softmax.h>

#include <vector>

#include "host/backend.h"
#include "host/cpu/backend.h"
#include "host/cpu_path.h"
#include "host/validate.h"

namespace actloss {
namespace {

using host::Region;

Status check_shape(std::int64_t rows, std::int64_t cols) {
  ACTLOSS_TRY(host::check_non_negative(rows, "rows"));
  ACTLOSS_TRY(host::check_non_negative(cols, "cols"));
  if (cols == 0 && rows > 0) {
    return host::invalid("cols", "must be >= 1 when rows > 0 (got 0)");
  }
  return {};
}

// One operand: dtype, strides (normalised in place), extent, and presence.
Status operand(const char* argument, const void* data, DType dtype, const char* dtype_argument,
               std::int64_t rows, std::int64_t cols, std::int64_t rows_per_batch,
               std::int64_t& stride, const char* stride_argument, std::int64_t& batch_stride,
               const char* batch_stride_argument, Region& out) {
  ACTLOSS_TRY(host::check_dtype(dtype, dtype_argument));
  ACTLOSS_TRY(host::normalize_stride(stride, cols, stride_argument, "cols"));
  ACTLOSS_TRY(host::normalize_batch_stride(batch_stride, rows, rows_per_batch, cols, stride,
                                           batch_stride_argument, stride_argument));
  ACTLOSS_TRY(host::batched_region(argument, data, dtype, rows, cols, stride, rows_per_batch,
                                   batch_stride, "cols", stride_argument, batch_stride_argument,
                                   out));
  if (rows > 0) ACTLOSS_TRY(host::check_required(data, argument, "rows > 0"));
  return {};
}

host::BatchedRows layout(std::int64_t rows, std::int64_t cols, std::int64_t rows_per_batch,
                         std::int64_t stride, std::int64_t batch_stride) {
  return host::BatchedRows{rows, cols, stride, rows_per_batch, batch_stride};
}

}  // namespace

Status softmax_forward(const SoftmaxForwardArgs& in, const SoftmaxOptions& options,
                       const Exec& exec) {
  ACTLOSS_TRY(host::check_exec(exec));
  SoftmaxForwardArgs args = in;
  ACTLOSS_TRY(check_shape(args.rows, args.cols));
  ACTLOSS_TRY(host::normalize_rows_per_batch(args.rows_per_batch, args.rows));
  const std::int64_t rows_per_batch = args.rows_per_batch;
  Region x, y;
  ACTLOSS_TRY(operand("x", args.x, args.x_dtype, "x_dtype", args.rows, args.cols, rows_per_batch,
                      args.x_row_stride, "x_row_stride", args.x_batch_stride, "x_batch_stride",
                      x));
  ACTLOSS_TRY(operand("y", args.y, args.y_dtype, "y_dtype", args.rows, args.cols, rows_per_batch,
                      args.y_row_stride, "y_row_stride", args.y_batch_stride, "y_batch_stride",
                      y));
  ACTLOSS_TRY(host::check_no_overlap_except_in_place(y, x, {}));

  ACTLOSS_TRY(host::check_memory(exec, {&x, &y}));
  if (exec.device == Device::cuda) {
    return detail::cuda_softmax_forward(args, options, exec);
  }
  if (exec.device == Device::cpu) {
    if (auto status = detail::cpu_softmax_forward(args, options)) return *status;
  }
  return host::run_cpu("softmax_forward", [&] {
    if (args.rows == 0) return;
    const std::vector<double> xs = host::gather(
        args.x, args.x_dtype,
        layout(args.rows, args.cols, rows_per_batch, args.x_row_stride, args.x_batch_stride));
    const std::vector<double> ys = ref::softmax_forward(args.rows, args.cols, xs, options.log);
    host::scatter(
        args.y, args.y_dtype,
        layout(args.rows, args.cols, rows_per_batch, args.y_row_stride, args.y_batch_stride), ys);
  });
}

Status softmax_backward(const SoftmaxBackwardArgs& in, const SoftmaxOptions& options,
                        const Exec& exec) {
  ACTLOSS_TRY(host::check_exec(exec));
  SoftmaxBackwardArgs args = in;
  ACTLOSS_TRY(check_shape(args.rows, args.cols));
  ACTLOSS_TRY(host::normalize_rows_per_batch(args.rows_per_batch, args.rows));
  const std::int64_t rows_per_batch = args.rows_per_batch;
  Region y, dy, dx;
  ACTLOSS_TRY(operand("y", args.y, args.y_dtype, "y_dtype", args.rows, args.cols, rows_per_batch,
                      args.y_row_stride, "y_row_stride", args.y_batch_stride, "y_batch_stride",
                      y));
  ACTLOSS_TRY(operand("dy", args.dy, args.dy_dtype, "dy_dtype", args.rows, args.cols,
                      rows_per_batch, args.dy_row_stride, "dy_row_stride", args.dy_batch_stride,
                      "dy_batch_stride", dy));
  ACTLOSS_TRY(operand("dx", args.dx, args.dx_dtype, "dx_dtype", args.rows, args.cols,
                      rows_per_batch, args.dx_row_stride, "dx_row_stride", args.dx_batch_stride,
                      "dx_batch_stride", dx));
  ACTLOSS_TRY(host::check_no_overlap_except_in_place(dx, dy, {&y}));

  ACTLOSS_TRY(host::check_memory(exec, {&y, &dy, &dx}));
  if (exec.device == Device::cuda) {
    return detail::cuda_softmax_backward(args, options, exec);
  }
  if (exec.device == Device::cpu) {
    if (auto status = detail::cpu_softmax_backward(args, options)) return *status;
  }
  return host::run_cpu("softmax_backward", [&] {
    if (args.rows == 0) return;
    const std::vector<double> ys = host::gather(
        args.y, args.y_dtype,
        layout(args.rows, args.cols, rows_per_batch, args.y_row_stride, args.y_batch_stride));
    const std::vector<double> dys = host::gather(
        args.dy, args.dy_dtype,
        layout(args.rows, args.cols, rows_per_batch, args.dy_row_stride, args.dy_batch_stride));
    const std::vector<double> dxs =
        ref::softmax_backward(args.rows, args.cols, ys, dys, options.log);
    host::scatter(
        args.dx, args.dx_dtype,
        layout(args.rows, args.cols, rows_per_batch, args.dx_row_stride, args.dx_batch_stride),
        dxs);
  });
}

}  // namespace actloss
