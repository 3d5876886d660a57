// Elementwise activations on `rows` rows of `n` elements, forward and backward. By default one row
// of n contiguous elements; strided rows take a slice of a wider tensor without a copy (half of
// a fused gate/up projection, a column block). Row strides are in elements, 0 meaning dense (n).
//
//   relu        max(x, 0); derivative 1 where x > 0, else 0 (PyTorch's choice at 0)
//   leaky_relu  x > 0 ? x : alpha x; derivative 1 where x > 0, else alpha
//   tanh, sigmoid
//   gelu_erf    x Phi(x)                                    (PyTorch approximate='none')
//   gelu_tanh   0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (approximate='tanh')
//   silu        x sigmoid(x)
//
// Backward can start from the saved input (every activation), the saved output (relu,
// leaky_relu with alpha > 0, tanh, sigmoid: the functions whose derivative is a function of their
// output), or, for relu, from a 1-bit-per-element mask written by the forward pass (32x less
// memory than saving x). NaN in gives NaN out (relu(NaN) is NaN, as PyTorch; relu's backward at
// a NaN input is NaN too, where PyTorch gives 0). At +-inf every activation takes its limit:
// gelu and silu give 0 at -inf (PyTorch: NaN) and +inf at +inf, with slopes 0 and 1.
#pragma once

#include <actloss/types.h>

namespace actloss {

enum class Activation : std::uint8_t { relu, leaky_relu, tanh, sigmoid, gelu_erf, gelu_tanh, silu };

const char* to_string(Activation activation);

// Number of 32-bit words of a relu mask for n elements: bit (i % 32) of word (i / 32) is x_i > 0;
// the bits past n in the last word are written as 0. Over rows x n elements the mask is dense,
// element i being column i % n of row i / n (relu_mask_words(rows * n) words), whatever the
// row strides of x.
constexpr std::int64_t relu_mask_words(std::int64_t n) { return (n + 31) / 32; }

struct ActivationOptions {
  Activation activation = Activation::relu;
  float alpha = 0.01f;  // leaky_relu's negative slope (PyTorch's negative_slope); others ignore it
};

struct ActivationForwardArgs {
  std::int64_t n = 0;     // elements per row
  std::int64_t rows = 1;
  const void* x = nullptr;
  DType x_dtype = DType::f32;
  std::int64_t x_row_stride = 0;
  void* y = nullptr;  // may equal x (in place) when the dtypes and row strides match
  DType y_dtype = DType::f32;
  std::int64_t y_row_stride = 0;
  // relu only, optional: also write the mask of x > 0, relu_mask_words(rows * n) words.
  std::uint32_t* relu_mask = nullptr;
};

enum class SavedTensor : std::uint8_t { input, output, relu_mask };

struct ActivationBackwardArgs {
  std::int64_t n = 0;     // elements per row
  std::int64_t rows = 1;
  SavedTensor saved_kind = SavedTensor::input;
  // The saved input or output (saved_dtype, saved_row_stride), or the relu mask (dense uint32
  // words; dtype and stride ignored).
  const void* saved = nullptr;
  DType saved_dtype = DType::f32;
  std::int64_t saved_row_stride = 0;
  const void* dy = nullptr;
  DType dy_dtype = DType::f32;
  std::int64_t dy_row_stride = 0;
  void* dx = nullptr;  // may equal dy (in place) when the dtypes and row strides match
  DType dx_dtype = DType::f32;
  std::int64_t dx_row_stride = 0;
};

Status activation_forward(const ActivationForwardArgs& args, const ActivationOptions& options,
                          const Exec& exec);
Status activation_backward(const ActivationBackwardArgs& args, const ActivationOptions& options,
                           const Exec& exec);

// SwiGLU, the gated unit of LLaMA-style MLPs, over rows x n elements:
//   y = silu(gate) * up,   d_gate = dy * up * silu'(gate),   d_up = dy * silu(gate)
// with silu and its limits as above (silu(-inf) = 0). `gate` is the operand that goes through
// silu (PyTorch: F.silu(gate_proj(x)) * up_proj(x)). gate and up are often the two halves of one
// [rows x 2n] projection: row strides 2n, up = gate + n; d_gate and d_up may then be the two
// halves of one [rows x 2n] gradient, or gate and up themselves (in place). Row strides are in
// elements, 0 meaning dense (n). Operands with the same row stride in bytes are told apart
// element by element, so the halves of one tensor never count as overlapping.
struct SwigluForwardArgs {
  std::int64_t n = 0;  // elements per row
  std::int64_t rows = 1;
  const void* gate = nullptr;
  DType gate_dtype = DType::f32;
  std::int64_t gate_row_stride = 0;
  const void* up = nullptr;
  DType up_dtype = DType::f32;
  std::int64_t up_row_stride = 0;
  void* y = nullptr;  // may equal gate or up (in place) when the dtype and row stride match
  DType y_dtype = DType::f32;
  std::int64_t y_row_stride = 0;
};

struct SwigluBackwardArgs {
  std::int64_t n = 0;  // elements per row
  std::int64_t rows = 1;
  const void* gate = nullptr;  // the forward's inputs
  DType gate_dtype = DType::f32;
  std::int64_t gate_row_stride = 0;
  const void* up = nullptr;
  DType up_dtype = DType::f32;
  std::int64_t up_row_stride = 0;
  const void* dy = nullptr;
  DType dy_dtype = DType::f32;
  std::int64_t dy_row_stride = 0;
  // Both required; d_gate may equal gate and d_up may equal up (in place) when the dtype and row
  // stride match.
  void* d_gate = nullptr;
  DType d_gate_dtype = DType::f32;
  std::int64_t d_gate_row_stride = 0;
  void* d_up = nullptr;
  DType d_up_dtype = DType::f32;
  std::int64_t d_up_row_stride = 0;
};

Status swiglu_forward(const SwigluForwardArgs& args, const Exec& exec);
Status swiglu_backward(const SwigluBackwardArgs& args, const Exec& exec);

}  // namespace actloss
