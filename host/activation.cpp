// Public activation entry points: validate, then run on the CPU path or hand over to the CUDA
// backend.
//
//   forward   needs x, y (rows * n > 0)          writes y and, for relu, the optional mask
//   backward  needs saved, dy, dx (rows * n > 0)  writes dx
// In place: y == x and dx == dy, each only with matching dtypes and row strides. Every other
// overlap between an output and anything else is rejected.
#include <actloss/activation.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "host/backend.h"
#include "host/cpu/backend.h"
#include "host/cpu_path.h"
#include "host/validate.h"

namespace actloss {
namespace {

using host::Region;

bool is_valid(Activation activation) {
  switch (activation) {
    case Activation::relu:
    case Activation::leaky_relu:
    case Activation::tanh:
    case Activation::sigmoid:
    case Activation::gelu_erf:
    case Activation::gelu_tanh:
    case Activation::silu: return true;
  }
  return false;
}

bool is_valid(SavedTensor kind) {
  switch (kind) {
    case SavedTensor::input:
    case SavedTensor::output:
    case SavedTensor::relu_mask: return true;
  }
  return false;
}

ref::Activation to_ref(Activation activation) {
  switch (activation) {
    case Activation::relu: return ref::Activation::relu;
    case Activation::leaky_relu: return ref::Activation::leaky_relu;
    case Activation::tanh: return ref::Activation::tanh;
    case Activation::sigmoid: return ref::Activation::sigmoid;
    case Activation::gelu_erf: return ref::Activation::gelu_erf;
    case Activation::gelu_tanh: return ref::Activation::gelu_tanh;
    case Activation::silu: return ref::Activation::silu;
  }
  return ref::Activation::relu;  // unreachable after validation
}

Status check_options(const ActivationOptions& options) {
  if (!is_valid(options.activation)) {
    return host::invalid("options.activation", "not an Activation value (got ",
                         static_cast<int>(options.activation), ")");
  }
  // alpha is read by leaky_relu alone; elsewhere it is ignored like any unused field.
  if (options.activation == Activation::leaky_relu) {
    ACTLOSS_TRY(host::check_finite(options.alpha, "options.alpha"));
  }
  return {};
}

// A rows x n operand: its stride normalised (0: dense) and its extent.
Status element_region(const char* argument, const void* data, DType dtype, std::int64_t rows,
                      std::int64_t n, std::int64_t& stride, const char* stride_argument,
                      Region& out) {
  ACTLOSS_TRY(host::normalize_stride(stride, n, stride_argument, "n"));
  return host::matrix_region(argument, data, dtype, rows, n, stride, "rows", "n",
                             stride_argument, out);
}

// The mask of rows x n elements.
Status mask_region(const char* argument, const void* data, std::int64_t rows, std::int64_t n,
                   Region& out) {
  std::int64_t count = 0;
  if (__builtin_mul_overflow(rows, n, &count)) {
    return host::invalid("rows", "rows * n overflows int64 (got ", rows, " rows of ", n, ")");
  }
  return host::vector_region(argument, data, relu_mask_words(count), 4, "n", out);
}

Status check_shape(std::int64_t rows, std::int64_t n) {
  ACTLOSS_TRY(host::check_non_negative(rows, "rows"));
  return host::check_non_negative(n, "n");
}

// ---- forward ---------------------------------------------------------------------------------

struct ForwardPlan {
  ActivationForwardArgs args;  // strides normalised
  Region x, y, relu_mask;
};

Status validate_forward(const ActivationForwardArgs& in, const ActivationOptions& options,
                        const Exec& exec, ForwardPlan& plan) {
  ACTLOSS_TRY(host::check_exec(exec));
  ACTLOSS_TRY(check_options(options));
  ActivationForwardArgs& args = plan.args;
  args = in;
  ACTLOSS_TRY(check_shape(args.rows, args.n));
  ACTLOSS_TRY(host::check_dtype(args.x_dtype, "x_dtype"));
  ACTLOSS_TRY(host::check_dtype(args.y_dtype, "y_dtype"));
  if (args.relu_mask != nullptr && options.activation != Activation::relu) {
    return host::invalid("relu_mask", "must be null unless the activation is relu (got ",
                         to_string(options.activation), ")");
  }

  ACTLOSS_TRY(element_region("x", args.x, args.x_dtype, args.rows, args.n, args.x_row_stride,
                             "x_row_stride", plan.x));
  ACTLOSS_TRY(element_region("y", args.y, args.y_dtype, args.rows, args.n, args.y_row_stride,
                             "y_row_stride", plan.y));
  if (args.relu_mask != nullptr) {
    ACTLOSS_TRY(mask_region("relu_mask", args.relu_mask, args.rows, args.n, plan.relu_mask));
  }

  if (args.rows > 0 && args.n > 0) {
    ACTLOSS_TRY(host::check_required(args.x, "x", "rows * n > 0"));
    ACTLOSS_TRY(host::check_required(args.y, "y", "rows * n > 0"));
  }
  ACTLOSS_TRY(host::check_no_overlap_except_in_place(plan.y, plan.x, {}));
  ACTLOSS_TRY(host::check_no_overlap(plan.relu_mask, {&plan.x, &plan.y}));
  return {};
}

Status forward_on_cpu(const ActivationForwardArgs& args, const ActivationOptions& options) {
  return host::run_cpu("activation_forward", [&] {
    if (args.n == 0 || args.rows == 0) return;
    const std::vector<double> x =
        host::gather(args.x, args.x_dtype, args.rows, args.n, args.x_row_stride);
    const std::vector<double> y = ref::activation_forward(to_ref(options.activation), x,
                                                          options.alpha);
    host::scatter(args.y, args.y_dtype, args.rows, args.n, args.y_row_stride, y);
    if (args.relu_mask != nullptr) {
      // Bits past the last element in the last word are written as 0 so the whole mask is
      // defined.
      const std::int64_t count = args.rows * args.n;
      for (std::int64_t word = 0; word < relu_mask_words(count); ++word) {
        std::uint32_t bits = 0;
        for (std::int64_t bit = 0; bit < 32 && word * 32 + bit < count; ++bit) {
          if (x[static_cast<std::size_t>(word * 32 + bit)] > 0.0) bits |= std::uint32_t{1} << bit;
        }
        args.relu_mask[word] = bits;
      }
    }
  });
}

// ---- backward --------------------------------------------------------------------------------

struct BackwardPlan {
  ActivationBackwardArgs args;  // strides normalised
  Region saved, dy, dx;
};

Status check_saved_kind(SavedTensor kind, const ActivationOptions& options) {
  if (!is_valid(kind)) {
    return host::invalid("saved_kind", "not a SavedTensor value (got ", static_cast<int>(kind),
                         ")");
  }
  const Activation activation = options.activation;
  if (kind == SavedTensor::output) {
    if (activation == Activation::gelu_erf || activation == Activation::gelu_tanh ||
        activation == Activation::silu) {
      return host::invalid("saved_kind", "output cannot serve ", to_string(activation),
                           " (its derivative is not a function of its output); save the input");
    }
    if (activation == Activation::leaky_relu && !(options.alpha > 0.0f)) {
      return host::invalid("saved_kind", "output cannot serve leaky_relu with alpha <= 0 (got ",
                           options.alpha, "; the sign of x is lost); save the input");
    }
  }
  if (kind == SavedTensor::relu_mask && activation != Activation::relu) {
    return host::invalid("saved_kind", "relu_mask serves relu only (got ",
                         to_string(activation), ")");
  }
  return {};
}

Status validate_backward(const ActivationBackwardArgs& in, const ActivationOptions& options,
                         const Exec& exec, BackwardPlan& plan) {
  ACTLOSS_TRY(host::check_exec(exec));
  ACTLOSS_TRY(check_options(options));
  ActivationBackwardArgs& args = plan.args;
  args = in;
  ACTLOSS_TRY(check_saved_kind(args.saved_kind, options));
  ACTLOSS_TRY(check_shape(args.rows, args.n));
  const bool mask = args.saved_kind == SavedTensor::relu_mask;
  if (!mask) ACTLOSS_TRY(host::check_dtype(args.saved_dtype, "saved_dtype"));
  ACTLOSS_TRY(host::check_dtype(args.dy_dtype, "dy_dtype"));
  ACTLOSS_TRY(host::check_dtype(args.dx_dtype, "dx_dtype"));

  if (mask) {
    args.saved_row_stride = args.n;
    ACTLOSS_TRY(mask_region("saved", args.saved, args.rows, args.n, plan.saved));
  } else {
    ACTLOSS_TRY(element_region("saved", args.saved, args.saved_dtype, args.rows, args.n,
                               args.saved_row_stride, "saved_row_stride", plan.saved));
  }
  ACTLOSS_TRY(element_region("dy", args.dy, args.dy_dtype, args.rows, args.n, args.dy_row_stride,
                             "dy_row_stride", plan.dy));
  ACTLOSS_TRY(element_region("dx", args.dx, args.dx_dtype, args.rows, args.n, args.dx_row_stride,
                             "dx_row_stride", plan.dx));

  if (args.rows > 0 && args.n > 0) {
    ACTLOSS_TRY(host::check_required(args.saved, "saved", "rows * n > 0"));
    ACTLOSS_TRY(host::check_required(args.dy, "dy", "rows * n > 0"));
    ACTLOSS_TRY(host::check_required(args.dx, "dx", "rows * n > 0"));
  }
  ACTLOSS_TRY(host::check_no_overlap_except_in_place(plan.dx, plan.dy, {&plan.saved}));
  return {};
}

Status backward_on_cpu(const ActivationBackwardArgs& args, const ActivationOptions& options) {
  return host::run_cpu("activation_backward", [&] {
    if (args.n == 0 || args.rows == 0) return;
    const std::int64_t rows = args.rows, n = args.n;
    const std::vector<double> dy = host::gather(args.dy, args.dy_dtype, rows, n, args.dy_row_stride);
    const ref::Activation activation = to_ref(options.activation);
    std::vector<double> dx;
    switch (args.saved_kind) {
      case SavedTensor::input: {
        const std::vector<double> x =
            host::gather(args.saved, args.saved_dtype, rows, n, args.saved_row_stride);
        dx = ref::activation_backward_from_input(activation, x, dy, options.alpha);
        break;
      }
      case SavedTensor::output: {
        const std::vector<double> y =
            host::gather(args.saved, args.saved_dtype, rows, n, args.saved_row_stride);
        dx = ref::activation_backward_from_output(activation, y, dy, options.alpha);
        break;
      }
      case SavedTensor::relu_mask: {
        // relu's derivative depends only on x > 0, so a stand-in input of 1 (bit set) or 0
        // (relu'(0) = 0) gives the reference exactly what the mask knows.
        const auto* words = static_cast<const std::uint32_t*>(args.saved);
        std::vector<double> x(static_cast<std::size_t>(rows * n));
        for (std::int64_t i = 0; i < rows * n; ++i) {
          x[static_cast<std::size_t>(i)] = ((words[i / 32] >> (i % 32)) & 1u) != 0 ? 1.0 : 0.0;
        }
        dx = ref::activation_backward_from_input(activation, x, dy, options.alpha);
        break;
      }
    }
    host::scatter(args.dx, args.dx_dtype, rows, n, args.dx_row_stride, dx);
  });
}

// ---- SwiGLU ----------------------------------------------------------------------------------

struct SwigluOperand {
  const char* name;
  const void* data;
  DType dtype;
  const char* dtype_name;
  std::int64_t* stride;
  const char* stride_name;
  Region* region;
};

Status check_swiglu_operands(std::int64_t rows, std::int64_t n,
                             std::initializer_list<SwigluOperand> operands) {
  ACTLOSS_TRY(check_shape(rows, n));
  for (const SwigluOperand& o : operands) ACTLOSS_TRY(host::check_dtype(o.dtype, o.dtype_name));
  for (const SwigluOperand& o : operands) {
    ACTLOSS_TRY(element_region(o.name, o.data, o.dtype, rows, n, *o.stride, o.stride_name,
                               *o.region));
  }
  if (rows > 0 && n > 0) {
    for (const SwigluOperand& o : operands)
      ACTLOSS_TRY(host::check_required(o.data, o.name, "rows * n > 0"));
  }
  return {};
}

host::BatchedRows rows_of(std::int64_t rows, std::int64_t n, std::int64_t stride) {
  return host::BatchedRows{rows, n, stride, rows > 0 ? rows : 1, 0};
}

}  // namespace

Status swiglu_forward(const SwigluForwardArgs& in, const Exec& exec) {
  ACTLOSS_TRY(host::check_exec(exec));
  SwigluForwardArgs args = in;
  Region gate, up, y;
  ACTLOSS_TRY(check_swiglu_operands(
      args.rows, args.n,
      {{"gate", args.gate, args.gate_dtype, "gate_dtype", &args.gate_row_stride,
        "gate_row_stride", &gate},
       {"up", args.up, args.up_dtype, "up_dtype", &args.up_row_stride, "up_row_stride", &up},
       {"y", args.y, args.y_dtype, "y_dtype", &args.y_row_stride, "y_row_stride", &y}}));
  if (host::same_view(y, up)) {
    ACTLOSS_TRY(host::check_no_overlap_except_in_place(y, up, {&gate}));
  } else {
    ACTLOSS_TRY(host::check_no_overlap_except_in_place(y, gate, {&up}));
  }
  ACTLOSS_TRY(host::check_memory(exec, {&gate, &up, &y}));
  if (exec.device == Device::cuda) return detail::cuda_swiglu_forward(args, exec);
  if (exec.device == Device::cpu) {
    if (auto status = detail::cpu_swiglu_forward(args)) return *status;
  }
  return host::run_cpu("swiglu_forward", [&] {
    if (args.rows == 0 || args.n == 0) return;
    const std::vector<double> g =
        host::gather(args.gate, args.gate_dtype, rows_of(args.rows, args.n, args.gate_row_stride));
    const std::vector<double> u =
        host::gather(args.up, args.up_dtype, rows_of(args.rows, args.n, args.up_row_stride));
    host::scatter(args.y, args.y_dtype, rows_of(args.rows, args.n, args.y_row_stride),
                  ref::swiglu_forward(g, u));
  });
}

Status swiglu_backward(const SwigluBackwardArgs& in, const Exec& exec) {
  ACTLOSS_TRY(host::check_exec(exec));
  SwigluBackwardArgs args = in;
  Region gate, up, dy, d_gate, d_up;
  ACTLOSS_TRY(check_swiglu_operands(
      args.rows, args.n,
      {{"gate", args.gate, args.gate_dtype, "gate_dtype", &args.gate_row_stride,
        "gate_row_stride", &gate},
       {"up", args.up, args.up_dtype, "up_dtype", &args.up_row_stride, "up_row_stride", &up},
       {"dy", args.dy, args.dy_dtype, "dy_dtype", &args.dy_row_stride, "dy_row_stride", &dy},
       {"d_gate", args.d_gate, args.d_gate_dtype, "d_gate_dtype", &args.d_gate_row_stride,
        "d_gate_row_stride", &d_gate},
       {"d_up", args.d_up, args.d_up_dtype, "d_up_dtype", &args.d_up_row_stride,
        "d_up_row_stride", &d_up}}));
  ACTLOSS_TRY(host::check_no_overlap_except_in_place(d_gate, gate, {&up, &dy, &d_up}));
  ACTLOSS_TRY(host::check_no_overlap_except_in_place(d_up, up, {&gate, &dy}));
  ACTLOSS_TRY(host::check_memory(exec, {&gate, &up, &dy, &d_gate, &d_up}));
  if (exec.device == Device::cuda) return detail::cuda_swiglu_backward(args, exec);
  if (exec.device == Device::cpu) {
    if (auto status = detail::cpu_swiglu_backward(args)) return *status;
  }
  return host::run_cpu("swiglu_backward", [&] {
    if (args.rows == 0 || args.n == 0) return;
    const std::int64_t rows = args.rows, n = args.n;
    const std::vector<double> g =
        host::gather(args.gate, args.gate_dtype, rows_of(rows, n, args.gate_row_stride));
    const std::vector<double> u =
        host::gather(args.up, args.up_dtype, rows_of(rows, n, args.up_row_stride));
    const std::vector<double> dys =
        host::gather(args.dy, args.dy_dtype, rows_of(rows, n, args.dy_row_stride));
    std::vector<double> dg, du;
    ref::swiglu_backward(g, u, dys, dg, du);
    host::scatter(args.d_gate, args.d_gate_dtype, rows_of(rows, n, args.d_gate_row_stride), dg);
    host::scatter(args.d_up, args.d_up_dtype, rows_of(rows, n, args.d_up_row_stride), du);
  });
}

Status activation_forward(const ActivationForwardArgs& args, const ActivationOptions& options,
                          const Exec& exec) {
  ForwardPlan plan;
  ACTLOSS_TRY(validate_forward(args, options, exec, plan));
  ACTLOSS_TRY(host::check_memory(exec, {&plan.x, &plan.y, &plan.relu_mask}));
  if (exec.device == Device::cpu) {
    if (auto status = detail::cpu_activation_forward(plan.args, options)) return *status;
  }
  if (host::runs_on_host(exec.device)) return forward_on_cpu(plan.args, options);
  return detail::cuda_activation_forward(plan.args, options, exec);
}

Status activation_backward(const ActivationBackwardArgs& args, const ActivationOptions& options,
                           const Exec& exec) {
  BackwardPlan plan;
  ACTLOSS_TRY(validate_backward(args, options, exec, plan));
  ACTLOSS_TRY(host::check_memory(exec, {&plan.saved, &plan.dy, &plan.dx}));
  if (exec.device == Device::cpu) {
    if (auto status = detail::cpu_activation_backward(plan.args, options)) return *status;
  }
  if (host::runs_on_host(exec.device)) return backward_on_cpu(plan.args, options);
  return detail::cuda_activation_backward(plan.args, options, exec);
}

}  // namespace actloss
