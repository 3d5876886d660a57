// Fuzz target: mse_forward, _backward and _forward_backward (see fuzz_support.h).
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
  MseArgs a;
  MseOptions o;
  a.n = fuzz::size(in, 100);
  a.rows = in.ConsumeBool() ? 1 : fuzz::size(in, 6);
  a.input_dtype = fuzz::enum_value<DType>(in, 3);
  a.target_dtype = fuzz::enum_value<DType>(in, 3);
  a.grad_dtype = fuzz::enum_value<DType>(in, 3);
  a.input_row_stride = fuzz::stride(in, a.n);
  a.target_row_stride = fuzz::stride(in, a.n);
  a.grad_row_stride = fuzz::stride(in, a.n);
  a.grad_scale = fuzz::option(in, 1.0f);
  o.reduction = fuzz::enum_value<Reduction>(in, 3);
  const __int128 elements = fuzz::elements(a.rows, a.n);
  const __int128 per_element = o.reduction == Reduction::none ? elements : 1;
  Buffers b(in);
  const int input =
      b.add(extent(a.rows, a.n, a.input_row_stride, element_size(a.input_dtype)), 16, true);
  const int target =
      b.add(extent(a.rows, a.n, a.target_row_stride, element_size(a.target_dtype)), 16, true);
  const int loss = b.add(per_element * 4, 4, pass != 1);
  const int grad = in.ConsumeIntegralInRange<int>(0, 3) == 0
                       ? input
                       : b.add(extent(a.rows, a.n, a.grad_row_stride, element_size(a.grad_dtype)),
                               16, pass != 0);
  const int upstream = b.add(per_element * 4, 4, false);
  b.output(loss);
  b.output(grad);
  fuzz::run_and_check(in, b, [&](const Exec& exec, std::uint8_t* arena, std::uint8_t* big) {
    MseArgs c = a;
    c.input = b.at(arena, big, input);
    c.target = b.at(arena, big, target);
    c.loss = b.at<float>(arena, big, loss);
    c.grad = b.at(arena, big, grad);
    c.upstream_grad = b.at<const float>(arena, big, upstream);
    switch (pass) {
      case 0: return mse_forward(c, o, exec);
      case 1: return mse_backward(c, o, exec);
      default: return mse_forward_backward(c, o, exec);
    }
  });
  return 0;
}
