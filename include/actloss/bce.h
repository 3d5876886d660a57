// Binary cross-entropy with logits over [rows x cols], as
// torch.nn.functional.binary_cross_entropy_with_logits, computed in a form that stays finite for
// every finite logit (PyTorch's pos_weight path has overflowed to inf/NaN near x = -100):
//   l      = 1 + (pos_weight_c - 1) * y
//   loss   = weight * ((1 - y) * x + l * softplus(-x)),  softplus(-x) = max(-x, 0) + log1p(exp(-|x|))
//   d/dx   = weight * ((1 - y) - l * sigmoid(-x))
// Differences from PyTorch:
//  * weight broadcasts as PyTorch's does in the shapes training code uses: a full [rows x cols]
//    tensor, one weight per column ([cols]) or one per row ([rows, 1]); see BceWeightShape.
//    pos_weight is per column, as PyTorch's [cols].
//  * The loss is float32 whatever the logits' dtype; for Reduction::none it is dense
//    [rows x cols] float32.
//  * `mean` over zero elements is 0, not NaN.
#pragma once

#include <actloss/types.h>

namespace actloss {

// The shape of BceArgs::weight, broadcast over [rows x cols].
enum class BceWeightShape : std::uint8_t {
  full,        // [rows x cols], with weight_row_stride
  per_column,  // [cols]: the same weight for every row (PyTorch's weight of shape [cols])
  per_row,     // [rows]: the same weight for every column (PyTorch's weight of shape [rows, 1])
};

struct BceOptions {
  Reduction reduction = Reduction::mean;
};

// Row strides in elements; 0 means dense (= cols).
struct BceArgs {
  std::int64_t rows = 0;
  std::int64_t cols = 0;

  const void* logits = nullptr;
  DType logits_dtype = DType::f32;
  std::int64_t logits_row_stride = 0;

  const void* targets = nullptr;  // values in [0, 1]
  DType target_dtype = DType::f32;
  std::int64_t target_row_stride = 0;

  const float* pos_weight = nullptr;  // optional [cols]

  const void* weight = nullptr;  // optional, of weight_shape
  DType weight_dtype = DType::f32;
  std::int64_t weight_row_stride = 0;  // full only
  BceWeightShape weight_shape = BceWeightShape::full;

  // [rows x cols] dense for Reduction::none, [1] otherwise.
  float* loss = nullptr;

  void* grad = nullptr;
  DType grad_dtype = DType::f32;
  std::int64_t grad_row_stride = 0;

  // Gradient multiplier; upstream_grad is [1] for sum/mean and dense [rows x cols] for none.
  float grad_scale = 1.0f;
  const float* upstream_grad = nullptr;
};

Status bce_with_logits_forward(const BceArgs& args, const BceOptions& options, const Exec& exec);
Status bce_with_logits_backward(const BceArgs& args, const BceOptions& options, const Exec& exec);
Status bce_with_logits_forward_backward(const BceArgs& args, const BceOptions& options,
                                        const Exec& exec);

// The bytes of Exec::workspace (see Workspace) that the calls above need with these arguments
// and options on exec's device, at most: 0 when none (the CPU, Reduction::none, no elements).
// Reads rows, cols and the options; the pointers need not be set yet.
Status bce_with_logits_workspace_size(const BceArgs& args, const BceOptions& options,
                                      const Exec& exec, std::size_t* bytes);

}  // namespace actloss
