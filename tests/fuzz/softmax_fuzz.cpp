// Fuzz target: softmax_forward and _backward, softmax and log-softmax (see fuzz_support.h).
#include "tests/fuzz/fuzz_support.h"

namespace {

using namespace actloss;
using fuzz::Buffers;
using fuzz::element_size;
using fuzz::extent;

// A [rows x cols] operand in batches of the call's rows_per_batch.
struct Operand {
  DType dtype = DType::f32;
  std::int64_t row_stride = 0, batch_stride = 0;
  int buffer = 0;
};

Operand operand(FuzzedDataProvider& in, Buffers& b, std::int64_t rows, std::int64_t cols,
                std::int64_t rows_per_batch, bool required, const Operand* in_place = nullptr) {
  if (in_place != nullptr && in.ConsumeIntegralInRange<int>(0, 3) == 0) return *in_place;
  Operand op;
  op.dtype = fuzz::enum_value<DType>(in, 3);
  op.row_stride = fuzz::stride(in, cols);
  std::int64_t batch_length = 0;
  if (__builtin_mul_overflow(rows_per_batch, cols, &batch_length))
    batch_length = std::numeric_limits<std::int64_t>::max();
  if (rows_per_batch != 0) op.batch_stride = fuzz::stride(in, batch_length);
  op.buffer = b.add(extent(rows, cols, op.row_stride, element_size(op.dtype), rows_per_batch,
                           op.batch_stride),
                    16, required);
  return op;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const bool backward = in.ConsumeBool();
  SoftmaxOptions options;
  options.log = in.ConsumeBool();
  const std::int64_t rows = fuzz::size(in, 9);
  const std::int64_t cols = fuzz::size(in, 70);
  const std::int64_t rows_per_batch =
      in.ConsumeIntegralInRange<int>(0, 3) == 0 ? fuzz::size(in, 4) : 0;
  Buffers b(in);
  if (!backward) {
    const Operand x = operand(in, b, rows, cols, rows_per_batch, true);
    const Operand y = operand(in, b, rows, cols, rows_per_batch, true, &x);
    b.output(y.buffer);
    fuzz::run_and_check(in, b, [&](const Exec& exec, std::uint8_t* arena, std::uint8_t* big) {
      SoftmaxForwardArgs a;
      a.rows = rows;
      a.cols = cols;
      a.rows_per_batch = rows_per_batch;
      a.x = b.at(arena, big, x.buffer);
      a.x_dtype = x.dtype;
      a.x_row_stride = x.row_stride;
      a.x_batch_stride = x.batch_stride;
      a.y = b.at(arena, big, y.buffer);
      a.y_dtype = y.dtype;
      a.y_row_stride = y.row_stride;
      a.y_batch_stride = y.batch_stride;
      return softmax_forward(a, options, exec);
    });
    return 0;
  }
  const Operand y = operand(in, b, rows, cols, rows_per_batch, true);
  const Operand dy = operand(in, b, rows, cols, rows_per_batch, true);
  const Operand dx = operand(in, b, rows, cols, rows_per_batch, true, &dy);
  b.output(dx.buffer);
  fuzz::run_and_check(in, b, [&](const Exec& exec, std::uint8_t* arena, std::uint8_t* big) {
    SoftmaxBackwardArgs a;
    a.rows = rows;
    a.cols = cols;
    a.rows_per_batch = rows_per_batch;
    a.y = b.at(arena, big, y.buffer);
    a.y_dtype = y.dtype;
    a.y_row_stride = y.row_stride;
    a.y_batch_stride = y.batch_stride;
    a.dy = b.at(arena, big, dy.buffer);
    a.dy_dtype = dy.dtype;
    a.dy_row_stride = dy.row_stride;
    a.dy_batch_stride = dy.batch_stride;
    a.dx = b.at(arena, big, dx.buffer);
    a.dx_dtype = dx.dtype;
    a.dx_row_stride = dx.row_stride;
    a.dx_batch_stride = dx.batch_stride;
    return softmax_backward(a, options, exec);
  });
  return 0;
}
