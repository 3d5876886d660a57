// Mean squared error between input and target, n contiguous elements, as
// torch.nn.functional.mse_loss: loss_i = (input_i - target_i)^2, d/d input = 2 (input - target).
// Differences: the loss is float32 whatever the input dtype; `mean` over zero elements is 0.
#pragma once

#include <actloss/types.h>

namespace actloss {

struct MseOptions {
  Reduction reduction = Reduction::mean;
};

struct MseArgs {
  std::int64_t n = 0;
  const void* input = nullptr;
  DType input_dtype = DType::f32;
  const void* target = nullptr;
  DType target_dtype = DType::f32;

  float* loss = nullptr;  // [n] for Reduction::none, [1] otherwise

  void* grad = nullptr;  // d(loss)/d(input), [n]
  DType grad_dtype = DType::f32;

  // Gradient multiplier; upstream_grad is [1] for sum/mean and [n] for none.
  float grad_scale = 1.0f;
  const float* upstream_grad = nullptr;
};

Status mse_forward(const MseArgs& args, const MseOptions& options, const Exec& exec);
Status mse_backward(const MseArgs& args, const MseOptions& options, const Exec& exec);
Status mse_forward_backward(const MseArgs& args, const MseOptions& options, const Exec& exec);

// The bytes of Exec::workspace (see Workspace) that the calls above need with these arguments
// and options on exec's device, at most: 0 when none (the CPU, Reduction::none, no elements).
// Reads n and the options; the pointers need not be set yet.
Status mse_workspace_size(const MseArgs& args, const MseOptions& options, const Exec& exec,
                          std::size_t* bytes);

}  // namespace actloss
