// Elementwise activations on n contiguous elements, forward and backward.
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
// the bits past n in the last word are written as 0.
constexpr std::int64_t relu_mask_words(std::int64_t n) { return (n + 31) / 32; }

struct ActivationOptions {
  Activation activation = Activation::relu;
  float alpha = 0.01f;  // leaky_relu's negative slope (PyTorch's negative_slope); others ignore it
};

struct ActivationForwardArgs {
  std::int64_t n = 0;
  const void* x = nullptr;
  DType x_dtype = DType::f32;
  void* y = nullptr;  // may equal x (in place) when the dtypes match
  DType y_dtype = DType::f32;
  // relu only, optional: also write the mask of x > 0, relu_mask_words(n) words.
  std::uint32_t* relu_mask = nullptr;
};

enum class SavedTensor : std::uint8_t { input, output, relu_mask };

struct ActivationBackwardArgs {
  std::int64_t n = 0;
  SavedTensor saved_kind = SavedTensor::input;
  // The saved input or output (saved_dtype), or the relu mask (uint32 words; dtype ignored).
  const void* saved = nullptr;
  DType saved_dtype = DType::f32;
  const void* dy = nullptr;
  DType dy_dtype = DType::f32;
  void* dx = nullptr;  // may equal dy (in place) when the dtypes match
  DType dx_dtype = DType::f32;
};

Status activation_forward(const ActivationForwardArgs& args, const ActivationOptions& options,
                          const Exec& exec);
Status activation_backward(const ActivationBackwardArgs& args, const ActivationOptions& options,
                           const Exec& exec);

}  // namespace actloss
