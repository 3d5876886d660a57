// Fuzz target: bce_with_logits_forward, _backward and _forward_backward (see fuzz_support.h).
#include "tests/fuzz/fuzz_support.h"

namespace {

using namespace actloss;
using fuzz::Buffers;
using fuzz::element_size;
using fuzz::extent;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const int pass = in.ConsumeIntegralInRange<int>(0, 2);
  BceArgs a;
  BceOptions o;
  a.rows = fuzz::size(in, 9);
  a.cols = fuzz::size(in, 70);
  a.logits_dtype = fuzz::enum_value<DType>(in, 3);
  a.target_dtype = fuzz::enum_value<DType>(in, 3);
  a.weight_dtype = fuzz::enum_value<DType>(in, 3);
  a.grad_dtype = fuzz::enum_value<DType>(in, 3);
  a.weight_shape = fuzz::enum_value<BceWeightShape>(in, 3);
  a.logits_row_stride = fuzz::stride(in, a.cols);
  a.target_row_stride = fuzz::stride(in, a.cols);
  a.weight_row_stride = fuzz::stride(in, a.cols);
  a.grad_row_stride = fuzz::stride(in, a.cols);
  a.grad_scale = fuzz::option(in, 1.0f);
  o.reduction = fuzz::enum_value<Reduction>(in, 3);
  const __int128 elements = fuzz::elements(a.rows, a.cols);
  const __int128 per_element = o.reduction == Reduction::none ? elements : 1;
  __int128 weight_bytes = 0;
  switch (a.weight_shape) {
    case BceWeightShape::per_column:
      weight_bytes = extent(1, a.cols, 0, element_size(a.weight_dtype));
      break;
    case BceWeightShape::per_row:
      weight_bytes = extent(1, a.rows, 0, element_size(a.weight_dtype));
      break;
    default:
      weight_bytes = extent(a.rows, a.cols, a.weight_row_stride, element_size(a.weight_dtype));
  }
  Buffers b(in);
  const int logits =
      b.add(extent(a.rows, a.cols, a.logits_row_stride, element_size(a.logits_dtype)), 16, true);
  const int targets =
      b.add(extent(a.rows, a.cols, a.target_row_stride, element_size(a.target_dtype)), 16, true);
  const int pos_weight = b.add(extent(1, a.cols, 0, 4), 4, false);
  const int weight = b.add(weight_bytes, 16, false);
  const int loss = b.add(per_element * 4, 4, pass != 1);
  const int grad = in.ConsumeIntegralInRange<int>(0, 3) == 0
                       ? logits
                       : b.add(extent(a.rows, a.cols, a.grad_row_stride,
                                      element_size(a.grad_dtype)),
                               16, pass != 0);
  const int upstream = b.add(per_element * 4, 4, false);
  b.output(loss);
  b.output(grad);
  fuzz::run_and_check(in, b, [&](const Exec& exec, std::uint8_t* arena, std::uint8_t* big) {
    BceArgs c = a;
    c.logits = b.at(arena, big, logits);
    c.targets = b.at(arena, big, targets);
    c.pos_weight = b.at<const float>(arena, big, pos_weight);
    c.weight = b.at(arena, big, weight);
    c.loss = b.at<float>(arena, big, loss);
    c.grad = b.at(arena, big, grad);
    c.upstream_grad = b.at<const float>(arena, big, upstream);
    switch (pass) {
      case 0: return bce_with_logits_forward(c, o, exec);
      case 1: return bce_with_logits_backward(c, o, exec);
      default: return bce_with_logits_forward_backward(c, o, exec);
    }
  });
  return 0;
}
