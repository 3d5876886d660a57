// The one statement of how many bytes each benchmarked operation must move at the least: every
// input read once, every output written once, targets and per-row outputs included. GB/s in
// actloss_bench, in `actloss bench` and in torch_compare.py (which restates these formulas in
// Python, pointing here) is this count divided by the measured time, for every implementation
// alike, so a peer that moves more bytes than necessary (an unfused cross-entropy writes and
// rereads its log-probabilities) shows up as fewer GB/s rather than being credited for its extra
// traffic.
//
// The benchmarked configurations: reductions are `mean` (one float of loss), gradients have the
// dtype of the tensor they differentiate, cross-entropy targets are int64 class indices (or,
// where a problem says so, [rows x classes] probabilities of the logits' dtype), BCE and MSE
// targets have the input's dtype, no optional weights.
#pragma once

#include <cstdint>

#include <actloss/activation.h>
#include <actloss/types.h>

namespace actloss::bench {

enum class Op : std::uint8_t {
  cross_entropy,
  bce_with_logits,
  softmax,
  log_softmax,
  activation,
  mse,
  swiglu
};

// `fused` is forward and backward in one call (cross_entropy / bce / mse forward_backward).
// `forward_mask` is relu's forward that also writes the 1-bit mask; `backward_mask` starts from it.
enum class Pass : std::uint8_t { forward, backward, fused, forward_mask, backward_mask };

// rows x cols; the elementwise ops (activations, SwiGLU, BCE, MSE) are one row of n = cols
// elements for activations, SwiGLU and MSE, and a [rows x cols] matrix for BCE (pos_weight would be
// per column). SwiGLU's gate and up are separate dense tensors of n elements each, so a problem's
// elements() is the size of y, not of the [rows x 2n] projection an MLP would split.
struct Problem {
  Op op = Op::cross_entropy;
  Activation activation = Activation::relu;  // Op::activation only
  Pass pass = Pass::forward;
  DType dtype = DType::f32;
  std::int64_t rows = 1;
  std::int64_t cols = 1;
  // Op::cross_entropy only: [rows x cols] probability targets of `dtype` instead of class
  // indices (knowledge distillation's rows), read by every pass.
  bool probability_targets = false;

  constexpr std::int64_t elements() const { return rows * cols; }
};

// With N = rows * cols, e = dtype_size(dtype), R = rows:
//
//   cross_entropy forward   N e (logits) + 8 R (targets) + 8 R (row stats) + 4 (loss)
//   cross_entropy backward  N e (logits) + 8 R (targets) + 8 R (saved stats) + N e (grad)
//   cross_entropy fused     N e (logits) + 8 R (targets) + 4 R (lse) + 4 (loss) + N e (grad)
//     with probability targets, N e for the targets instead of 8 R
//   bce forward             N e (logits) + N e (targets) + 4 (loss)
//   bce backward            N e (logits) + N e (targets) + N e (grad)
//   bce fused               N e (logits) + N e (targets) + 4 (loss) + N e (grad)
//   mse                     as bce, with input and target for logits and targets
//   softmax / log_softmax   forward: N e (x) + N e (y);  backward: N e (y) + N e (dy) + N e (dx)
//   activation forward      N e (x) + N e (y)
//   activation backward     N e (x) + N e (dy) + N e (dx)           (from the saved input)
//   relu forward_mask       N e (x) + N e (y) + 4 ceil(N / 32) (mask)
//   relu backward_mask      4 ceil(N / 32) (mask) + N e (dy) + N e (dx)
//   swiglu forward          N e (gate) + N e (up) + N e (y)
//   swiglu backward         N e (gate) + N e (up) + N e (dy) + N e (d_gate) + N e (d_up)
//
// The device-to-device copy that sets the ceiling counts its read and its write: 2 x its size.
constexpr std::int64_t min_bytes(const Problem& p) {
  const std::int64_t n = p.elements();
  const std::int64_t tensor = n * dtype_size(p.dtype);
  const std::int64_t loss = 4;
  const std::int64_t mask = 4 * relu_mask_words(n);
  switch (p.op) {
    case Op::cross_entropy: {
      const std::int64_t targets = p.probability_targets ? tensor : 8 * p.rows;
      const std::int64_t stats = 8 * p.rows;  // CrossEntropyRowStats, saved for backward
      const std::int64_t lse = 4 * p.rows;
      switch (p.pass) {
        case Pass::forward: return tensor + targets + stats + loss;
        case Pass::backward: return tensor + targets + stats + tensor;
        default: return tensor + targets + lse + loss + tensor;
      }
    }
    case Op::bce_with_logits:
    case Op::mse:
      switch (p.pass) {
        case Pass::forward: return 2 * tensor + loss;
        case Pass::backward: return 3 * tensor;
        default: return 3 * tensor + loss;
      }
    case Op::softmax:
    case Op::log_softmax: return p.pass == Pass::forward ? 2 * tensor : 3 * tensor;
    case Op::activation:
      switch (p.pass) {
        case Pass::forward: return 2 * tensor;
        case Pass::forward_mask: return 2 * tensor + mask;
        case Pass::backward_mask: return mask + 2 * tensor;
        default: return 3 * tensor;
      }
    case Op::swiglu: return p.pass == Pass::forward ? 3 * tensor : 5 * tensor;
  }
  return 0;
}

// Bytes a copy of `size` bytes moves: it reads them and writes them.
constexpr std::int64_t copy_bytes(std::int64_t size) { return 2 * size; }

// The fused linear + cross-entropy (include/actloss/linear_cross_entropy.h), forward and backward:
// tokens N, hidden size D, classes V, hidden, weight and d_hidden of `dtype` (e bytes), d_weight
// float32, int64 targets, a mean loss. Its three GEMMs (logits, d_hidden, d_weight) make it
// compute-bound, so it is measured in FLOP/s, not GB/s, and by the device memory it needs beyond
// its operands, which is what fusing saves.
struct LinearCrossEntropyShape {
  std::int64_t tokens = 0;
  std::int64_t hidden = 0;
  std::int64_t classes = 0;
  DType dtype = DType::bf16;
};

//   flops           3 GEMMs x N D V multiply-adds x 2 = 6 N D V (the cross-entropy between them,
//                   O(N V), is left out: every path does the same)
//   operand bytes   N D e (hidden) + V D e (weight) + 8 N (targets) + 4 (loss)
//                   + N D e (d_hidden) + 4 V D (d_weight): what no path can do without
//   full logits     N V 4 (float32 logits) + N V e (their gradient, the backward GEMMs' operand):
//                   what the unfused path and the bare GEMMs hold besides the operands, before
//                   the cross-entropy's own scratch
constexpr std::int64_t linear_cross_entropy_flops(const LinearCrossEntropyShape& s) {
  return 6 * s.tokens * s.hidden * s.classes;
}

constexpr std::int64_t linear_cross_entropy_operand_bytes(const LinearCrossEntropyShape& s) {
  const std::int64_t e = dtype_size(s.dtype);
  return s.tokens * s.hidden * e + s.classes * s.hidden * e + 8 * s.tokens + 4 +
         s.tokens * s.hidden * e + 4 * s.classes * s.hidden;
}

constexpr std::int64_t linear_cross_entropy_full_logits_bytes(const LinearCrossEntropyShape& s) {
  return s.tokens * s.classes * (4 + dtype_size(s.dtype));
}

}  // namespace actloss::bench
