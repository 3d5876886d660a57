// Public activation entry points: validate, then run on the CPU path or hand over to the CUDA
// backend.
//
//   forward   needs x, y (n > 0)          writes y and, for relu, the optional mask
//   backward  needs saved, dy, dx (n > 0)  writes dx
// In place: y == x and dx == dy, each only with matching dtypes. Every other overlap between an
// output and anything else is rejected.
#include <actloss/activation.h>

#include <cstdint>
#include <vector>

#include "host/backend.h"
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

Status element_region(const char* argument, const void* data, DType dtype, std::int64_t n,
                      Region& out) {
  ACTLOSS_TRY(host::matrix_region(argument, data, dtype, 1, n, n, "n", "n", "n", out));
  return {};
}

Status mask_region(const char* argument, const void* data, std::int64_t n, Region& out) {
  return host::vector_region(argument, data, relu_mask_words(n), 4, "n", out);
}

// ---- forward ---------------------------------------------------------------------------------

struct ForwardPlan {
  Region x, y, relu_mask;
};

Status validate_forward(const ActivationForwardArgs& args, const ActivationOptions& options,
                        const Exec& exec, ForwardPlan& plan) {
  ACTLOSS_TRY(host::check_exec(exec));
  ACTLOSS_TRY(check_options(options));
  ACTLOSS_TRY(host::check_non_negative(args.n, "n"));
  ACTLOSS_TRY(host::check_dtype(args.x_dtype, "x_dtype"));
  ACTLOSS_TRY(host::check_dtype(args.y_dtype, "y_dtype"));
  if (args.relu_mask != nullptr && options.activation != Activation::relu) {
    return host::invalid("relu_mask", "must be null unless the activation is relu (got ",
                         to_string(options.activation), ")");
  }

  ACTLOSS_TRY(element_region("x", args.x, args.x_dtype, args.n, plan.x));
  ACTLOSS_TRY(element_region("y", args.y, args.y_dtype, args.n, plan.y));
  if (args.relu_mask != nullptr) {
    ACTLOSS_TRY(mask_region("relu_mask", args.relu_mask, args.n, plan.relu_mask));
  }

  if (args.n > 0) {
    ACTLOSS_TRY(host::check_required(args.x, "x", "n > 0"));
    ACTLOSS_TRY(host::check_required(args.y, "y", "n > 0"));
  }
  ACTLOSS_TRY(host::check_no_overlap_except_in_place(plan.y, plan.x, {}));
  ACTLOSS_TRY(host::check_no_overlap(plan.relu_mask, {&plan.x, &plan.y}));
  return {};
}

Status forward_on_cpu(const ActivationForwardArgs& args, const ActivationOptions& options) {
  return host::run_cpu("activation_forward", [&] {
    if (args.n == 0) return;
    const std::vector<double> x = host::gather(args.x, args.x_dtype, 1, args.n, args.n);
    const std::vector<double> y = ref::activation_forward(to_ref(options.activation), x,
                                                          options.alpha);
    host::scatter(args.y, args.y_dtype, 1, args.n, args.n, y);
    if (args.relu_mask != nullptr) {
      // Bits past n in the last word are written as 0 so the whole mask is defined.
      for (std::int64_t word = 0; word < relu_mask_words(args.n); ++word) {
        std::uint32_t bits = 0;
        for (std::int64_t bit = 0; bit < 32 && word * 32 + bit < args.n; ++bit) {
          if (x[static_cast<std::size_t>(word * 32 + bit)] > 0.0) bits |= std::uint32_t{1} << bit;
        }
        args.relu_mask[word] = bits;
      }
    }
  });
}

// ---- backward --------------------------------------------------------------------------------

struct BackwardPlan {
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

Status validate_backward(const ActivationBackwardArgs& args, const ActivationOptions& options,
                         const Exec& exec, BackwardPlan& plan) {
  ACTLOSS_TRY(host::check_exec(exec));
  ACTLOSS_TRY(check_options(options));
  ACTLOSS_TRY(check_saved_kind(args.saved_kind, options));
  ACTLOSS_TRY(host::check_non_negative(args.n, "n"));
  const bool mask = args.saved_kind == SavedTensor::relu_mask;
  if (!mask) ACTLOSS_TRY(host::check_dtype(args.saved_dtype, "saved_dtype"));
  ACTLOSS_TRY(host::check_dtype(args.dy_dtype, "dy_dtype"));
  ACTLOSS_TRY(host::check_dtype(args.dx_dtype, "dx_dtype"));

  if (mask) {
    ACTLOSS_TRY(mask_region("saved", args.saved, args.n, plan.saved));
  } else {
    ACTLOSS_TRY(element_region("saved", args.saved, args.saved_dtype, args.n, plan.saved));
  }
  ACTLOSS_TRY(element_region("dy", args.dy, args.dy_dtype, args.n, plan.dy));
  ACTLOSS_TRY(element_region("dx", args.dx, args.dx_dtype, args.n, plan.dx));

  if (args.n > 0) {
    ACTLOSS_TRY(host::check_required(args.saved, "saved", "n > 0"));
    ACTLOSS_TRY(host::check_required(args.dy, "dy", "n > 0"));
    ACTLOSS_TRY(host::check_required(args.dx, "dx", "n > 0"));
  }
  ACTLOSS_TRY(host::check_no_overlap_except_in_place(plan.dx, plan.dy, {&plan.saved}));
  return {};
}

Status backward_on_cpu(const ActivationBackwardArgs& args, const ActivationOptions& options) {
  return host::run_cpu("activation_backward", [&] {
    if (args.n == 0) return;
    const std::vector<double> dy = host::gather(args.dy, args.dy_dtype, 1, args.n, args.n);
    const ref::Activation activation = to_ref(options.activation);
    std::vector<double> dx;
    switch (args.saved_kind) {
      case SavedTensor::input: {
        const std::vector<double> x =
            host::gather(args.saved, args.saved_dtype, 1, args.n, args.n);
        dx = ref::activation_backward_from_input(activation, x, dy, options.alpha);
        break;
      }
      case SavedTensor::output: {
        const std::vector<double> y =
            host::gather(args.saved, args.saved_dtype, 1, args.n, args.n);
        dx = ref::activation_backward_from_output(activation, y, dy, options.alpha);
        break;
      }
      case SavedTensor::relu_mask: {
        // relu's derivative depends only on x > 0, so a stand-in input of 1 (bit set) or 0
        // (relu'(0) = 0) gives the reference exactly what the mask knows.
        const auto* words = static_cast<const std::uint32_t*>(args.saved);
        std::vector<double> x(static_cast<std::size_t>(args.n));
        for (std::int64_t i = 0; i < args.n; ++i) {
          x[static_cast<std::size_t>(i)] = ((words[i / 32] >> (i % 32)) & 1u) != 0 ? 1.0 : 0.0;
        }
        dx = ref::activation_backward_from_input(activation, x, dy, options.alpha);
        break;
      }
    }
    host::scatter(args.dx, args.dx_dtype, 1, args.n, args.n, dx);
  });
}

}  // namespace

Status activation_forward(const ActivationForwardArgs& args, const ActivationOptions& options,
                          const Exec& exec) {
  ForwardPlan plan;
  ACTLOSS_TRY(validate_forward(args, options, exec, plan));
  ACTLOSS_TRY(host::check_memory(exec, {&plan.x, &plan.y, &plan.relu_mask}));
  if (exec.device == Device::cpu) return forward_on_cpu(args, options);
  return detail::cuda_activation_forward(args, options, exec);
}

Status activation_backward(const ActivationBackwardArgs& args, const ActivationOptions& options,
                           const Exec& exec) {
  BackwardPlan plan;
  ACTLOSS_TRY(validate_backward(args, options, exec, plan));
  ACTLOSS_TRY(host::check_memory(exec, {&plan.saved, &plan.dy, &plan.dx}));
  if (exec.device == Device::cpu) return backward_on_cpu(args, options);
  return detail::cuda_activation_backward(args, options, exec);
}

}  // namespace actloss
