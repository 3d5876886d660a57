// Softmax and log-softmax over each row of [rows x cols], forward and backward (from the saved
// output, as PyTorch). A row that is entirely -inf gives softmax 0s and log-softmax -inf, never
// NaN (PyTorch gives NaN); its backward is 0 for softmax and dy for log-softmax. A +inf or NaN in
// a row makes that row NaN.
#pragma once

#include <actloss/types.h>

namespace actloss {

struct SoftmaxOptions {
  bool log = false;  // log_softmax instead of softmax
};

// Row strides in elements; 0 means dense (= cols). Batched views ([batches x rows_per_batch x
// cols], e.g. x[:, :-1, :]) as CrossEntropyArgs: row r is row r % rows_per_batch of batch
// r / rows_per_batch; rows_per_batch 0 is one batch of all rows, and a batch stride of 0 is dense
// (rows_per_batch times the row stride). No two rows of a tensor may share an element.
struct SoftmaxForwardArgs {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t rows_per_batch = 0;
  const void* x = nullptr;
  DType x_dtype = DType::f32;
  std::int64_t x_row_stride = 0;
  std::int64_t x_batch_stride = 0;
  void* y = nullptr;  // may equal x (in place) when dtype and strides match
  DType y_dtype = DType::f32;
  std::int64_t y_row_stride = 0;
  std::int64_t y_batch_stride = 0;
};

struct SoftmaxBackwardArgs {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t rows_per_batch = 0;
  const void* y = nullptr;  // the forward output
  DType y_dtype = DType::f32;
  std::int64_t y_row_stride = 0;
  std::int64_t y_batch_stride = 0;
  const void* dy = nullptr;
  DType dy_dtype = DType::f32;
  std::int64_t dy_row_stride = 0;
  std::int64_t dy_batch_stride = 0;
  void* dx = nullptr;  // may equal dy (in place) when dtype and strides match
  DType dx_dtype = DType::f32;
  std::int64_t dx_row_stride = 0;
  std::int64_t dx_batch_stride = 0;
};

Status softmax_forward(const SoftmaxForwardArgs& args, const SoftmaxOptions& options,
                       const Exec& exec);
Status softmax_backward(const SoftmaxBackwardArgs& args, const SoftmaxOptions& options,
                        const Exec& exec);

}  // namespace actloss
