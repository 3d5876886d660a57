// Fuzz target: activation_forward and _backward (relu's mask included), swiglu_forward and
// _backward (see fuzz_support.h).
#include "tests/fuzz/fuzz_support.h"

namespace {

using namespace actloss;
using fuzz::Buffers;
using fuzz::element_size;
using fuzz::extent;

struct Operand {
  DType dtype = DType::f32;
  std::int64_t stride = 0;
  int buffer = 0;
};

Operand operand(FuzzedDataProvider& in, Buffers& b, std::int64_t rows, std::int64_t n,
                bool required, const Operand* in_place_partner = nullptr) {
  Operand op;
  if (in_place_partner != nullptr && in.ConsumeIntegralInRange<int>(0, 3) == 0)
    return *in_place_partner;
  op.dtype = fuzz::enum_value<DType>(in, 3);
  op.stride = fuzz::stride(in, n);
  op.buffer = b.add(extent(rows, n, op.stride, element_size(op.dtype)), 16, required);
  return op;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const int call = in.ConsumeIntegralInRange<int>(0, 3);
  const std::int64_t n = fuzz::size(in, 100);
  const std::int64_t rows = in.ConsumeBool() ? 1 : fuzz::size(in, 6);
  ActivationOptions options;
  options.activation = fuzz::enum_value<Activation>(in, 7);
  options.alpha = fuzz::option(in, 0.01f);
  Buffers b(in);
  const __int128 mask_bytes = (fuzz::elements(rows, n) + 31) / 32 * 4;

  if (call == 0) {
    const Operand x = operand(in, b, rows, n, true);
    const Operand y = operand(in, b, rows, n, true, &x);
    const int mask = b.add(mask_bytes, 4, false);
    b.output(y.buffer);
    b.output(mask);
    fuzz::run_and_check(in, b, [&](const Exec& exec, std::uint8_t* arena, std::uint8_t* big) {
      ActivationForwardArgs a;
      a.n = n;
      a.rows = rows;
      a.x = b.at(arena, big, x.buffer);
      a.x_dtype = x.dtype;
      a.x_row_stride = x.stride;
      a.y = b.at(arena, big, y.buffer);
      a.y_dtype = y.dtype;
      a.y_row_stride = y.stride;
      a.relu_mask = b.at<std::uint32_t>(arena, big, mask);
      return activation_forward(a, options, exec);
    });
  } else if (call == 1) {
    const auto kind = fuzz::enum_value<SavedTensor>(in, 3);
    Operand saved;
    if (kind == SavedTensor::relu_mask) {
      saved.buffer = b.add(mask_bytes, 4, true);
    } else {
      saved = operand(in, b, rows, n, true);
    }
    const Operand dy = operand(in, b, rows, n, true);
    const Operand dx = operand(in, b, rows, n, true, &dy);
    b.output(dx.buffer);
    fuzz::run_and_check(in, b, [&](const Exec& exec, std::uint8_t* arena, std::uint8_t* big) {
      ActivationBackwardArgs a;
      a.n = n;
      a.rows = rows;
      a.saved_kind = kind;
      a.saved = b.at(arena, big, saved.buffer);
      a.saved_dtype = saved.dtype;
      a.saved_row_stride = saved.stride;
      a.dy = b.at(arena, big, dy.buffer);
      a.dy_dtype = dy.dtype;
      a.dy_row_stride = dy.stride;
      a.dx = b.at(arena, big, dx.buffer);
      a.dx_dtype = dx.dtype;
      a.dx_row_stride = dx.stride;
      return activation_backward(a, options, exec);
    });
  } else if (call == 2) {
    const Operand gate = operand(in, b, rows, n, true);
    const Operand up = operand(in, b, rows, n, true);
    const Operand y = operand(in, b, rows, n, true, in.ConsumeBool() ? &gate : &up);
    b.output(y.buffer);
    fuzz::run_and_check(in, b, [&](const Exec& exec, std::uint8_t* arena, std::uint8_t* big) {
      SwigluForwardArgs a;
      a.n = n;
      a.rows = rows;
      a.gate = b.at(arena, big, gate.buffer);
      a.gate_dtype = gate.dtype;
      a.gate_row_stride = gate.stride;
      a.up = b.at(arena, big, up.buffer);
      a.up_dtype = up.dtype;
      a.up_row_stride = up.stride;
      a.y = b.at(arena, big, y.buffer);
      a.y_dtype = y.dtype;
      a.y_row_stride = y.stride;
      return swiglu_forward(a, exec);
    });
  } else {
    const Operand gate = operand(in, b, rows, n, true);
    const Operand up = operand(in, b, rows, n, true);
    const Operand dy = operand(in, b, rows, n, true);
    const Operand d_gate = operand(in, b, rows, n, true, &gate);
    const Operand d_up = operand(in, b, rows, n, true, &up);
    b.output(d_gate.buffer);
    b.output(d_up.buffer);
    fuzz::run_and_check(in, b, [&](const Exec& exec, std::uint8_t* arena, std::uint8_t* big) {
      SwigluBackwardArgs a;
      a.n = n;
      a.rows = rows;
      a.gate = b.at(arena, big, gate.buffer);
      a.gate_dtype = gate.dtype;
      a.gate_row_stride = gate.stride;
      a.up = b.at(arena, big, up.buffer);
      a.up_dtype = up.dtype;
      a.up_row_stride = up.stride;
      a.dy = b.at(arena, big, dy.buffer);
      a.dy_dtype = dy.dtype;
      a.dy_row_stride = dy.stride;
      a.d_gate = b.at(arena, big, d_gate.buffer);
      a.d_gate_dtype = d_gate.dtype;
      a.d_gate_row_stride = d_gate.stride;
      a.d_up = b.at(arena, big, d_up.buffer);
      a.d_up_dtype = d_up.dtype;
      a.d_up_row_stride = d_up.stride;
      return swiglu_backward(a, exec);
    });
  }
  return 0;
}
