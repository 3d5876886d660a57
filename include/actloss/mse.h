// Mean squared error between input and target over `rows` rows of `n` elements (by default one
// row of n contiguous elements), as torch.nn.functional.mse_loss:
// loss_i = (input_i - target_i)^2, d/d input = 2 (input - target).
// Differences: the loss is float32 whatever the input dtype; `mean` over zero elements is 0.
// Row strides are in elements, 0 meaning dense (n); `mean` divides by rows * n.
#pragma once

#include <actloss/types.h>

namespace actloss {

struct MseOptions {
  Reduction reduction = Reduction::mean;
};

struct MseArgs {
  std::int64_t n = 0;     // elements per row
  std::int64_t rows = 1;
  const void* input = nullptr;
  DType input_dtype = DType::f32;
  std::int64_t input_row_stride = 0;
  const void* target = nullptr;
  DType target_dtype = DType::f32;
  std::int64_t target_row_stride = 0;

  float* loss = nullptr;  // dense [rows x n] for Reduction::none, [1] otherwise

  // d(loss)/d(input), [rows x n].
  void* grad = nullptr;
  DType grad_dtype = DType::f32;
  std::int64_t grad_row_stride = 0;

  // Gradient multiplier; upstream_grad is [1] for sum/mean and dense [rows x n] for none.
  float grad_scale = 1.0f;
  const float* upstream_grad = nullptr;
};

Status mse_forward(const MseArgs& args, const MseOptions& options, const Exec& exec);
Status mse_backward(const MseArgs& args, const MseOptions& options, const Exec& exec);
Status mse_forward_backward(const MseArgs& args, const MseOptions& options, const Exec& exec);

// The bytes of Exec::workspace (see Workspace) that the calls above need with these arguments
// and options on exec's device, at most: 0 when none (the CPU, Reduction::none, no elements).
// Reads rows, n and the options; the pointers need not be set yet.
Status mse_workspace_size(const MseArgs& args, const MseOptions& options, const Exec& exec,
                          std::size_t* bytes);

}  // namespace actloss
