// The CPU backend rounds float32 to bfloat16 with AVX512_BF16's conversion instruction where the
// processor has it, and with integer operations otherwise (host/cpu/bf16_conversion.h). The two
// must store the same bits: the instruction flushes denormal inputs to zero, which the backend
// avoids by converting a vector that holds one the other way. Every op family that writes bf16
// runs here both ways, with outputs that are streamed (4 MiB and more) and outputs that are not,
// over inputs that make denormal, infinite and NaN results; the tests skip on a processor
// without the instruction, where only the integer operations exist.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "tests/api/cpu_backend_support.h"
#include "tests/api/test_util.h"

namespace api_test {
namespace {

// For its scope: the integer operations even where the instruction exists.
class WithoutBf16Instruction {
 public:
  WithoutBf16Instruction() { actloss::detail::cpu_set_bf16_instruction_for_testing(false); }
  ~WithoutBf16Instruction() { actloss::detail::cpu_set_bf16_instruction_for_testing(true); }
  WithoutBf16Instruction(const WithoutBf16Instruction&) = delete;
  WithoutBf16Instruction& operator=(const WithoutBf16Instruction&) = delete;
};

bool processor_has_bf16_instruction() {
  return actloss::detail::cpu_set_bf16_instruction_for_testing(true);
}

// 2^21 bf16 outputs are 4 MiB, the streaming threshold; 70001 are far below it.
constexpr std::int64_t kSizes[] = {70001, (std::int64_t{1} << 21) + 37};

// Uniform values in [-8, 8], with denormals (of float and of bf16), ties of bf16 rounding,
// infinities and NaN planted every 11th element, so that most vectors hold one.
std::vector<double> planted_values(std::int64_t count, std::uint64_t seed) {
  std::vector<double> x = uniform_values(static_cast<std::size_t>(count), -8.0, 8.0, seed);
  static const double kSpecials[] = {
      1e-40, -1e-40, 3e-39, -2e-45, 5e-39, std::numeric_limits<double>::infinity(),
      -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN(),
      1.00390625, -1.01171875, 0.0, -0.0, 3e38, -100.0};
  std::size_t k = 0;
  for (std::size_t i = 2; i < x.size(); i += 11, ++k) x[i] = kSpecials[k % std::size(kSpecials)];
  return x;
}

Buffer filled(DType dtype, const std::vector<double>& values) {
  Buffer buffer(dtype, static_cast<std::int64_t>(values.size()));
  for (std::size_t i = 0; i < values.size(); ++i)
    buffer.set(static_cast<std::int64_t>(i), values[i]);
  return buffer;
}

std::vector<unsigned char> bytes_of(const Buffer& buffer) {
  const auto* bytes = static_cast<const unsigned char*>(buffer.data());
  return {bytes, bytes + buffer.size_bytes()};
}

// Runs `call(out)` into a fresh bf16 buffer of `elements` with the instruction and without it,
// on every runnable target, and expects the same bytes.
void expect_same_bits(std::int64_t elements, const std::function<Status(Buffer&)>& call) {
  for_each_simd_target([&] {
    Buffer with(DType::bf16, elements), without(DType::bf16, elements);
    Status status = call(with);
    ASSERT_TRUE(status.ok()) << status.message();
    {
      const WithoutBf16Instruction scope;
      status = call(without);
      ASSERT_TRUE(status.ok()) << status.message();
    }
    EXPECT_TRUE(bytes_of(with) == bytes_of(without)) << "the two conversions stored other bits";
  });
}

TEST(CpuBf16Conversion, ActivationsStoreTheSameBitsEitherWay) {
  if (!processor_has_bf16_instruction()) GTEST_SKIP() << "this processor has no AVX512_BF16";
  for (const std::int64_t n : kSizes) {
    const Buffer x = filled(DType::bf16, planted_values(n, 3));
    const Buffer x_f32 = filled(DType::f32, planted_values(n, 3));
    const Buffer dy = filled(DType::bf16, uniform_values(static_cast<std::size_t>(n), -2, 2, 4));
    for (const actloss::Activation a :
         {actloss::Activation::relu, actloss::Activation::leaky_relu, actloss::Activation::tanh,
          actloss::Activation::sigmoid, actloss::Activation::gelu_erf,
          actloss::Activation::gelu_tanh, actloss::Activation::silu}) {
      const actloss::ActivationOptions options{a, 0.01f};
      for (const Buffer* input : {&x, &x_f32}) {
        SCOPED_TRACE(std::string(actloss::to_string(a)) + " from " +
                     actloss::to_string(input->dtype()) + ", " + std::to_string(n));
        expect_same_bits(n, [&](Buffer& y) {
          actloss::ActivationForwardArgs f;
          f.n = n;
          f.x = input->data();
          f.x_dtype = input->dtype();
          f.y = y.data();
          f.y_dtype = DType::bf16;
          return actloss::activation_forward(f, options, cpu_exec());
        });
        expect_same_bits(n, [&](Buffer& dx) {
          actloss::ActivationBackwardArgs b;
          b.n = n;
          b.saved = input->data();
          b.saved_dtype = input->dtype();
          b.dy = dy.data();
          b.dy_dtype = DType::bf16;
          b.dx = dx.data();
          b.dx_dtype = DType::bf16;
          return actloss::activation_backward(b, options, cpu_exec());
        });
      }
    }
  }
}

TEST(CpuBf16Conversion, RowOpsStoreTheSameBitsEitherWay) {
  if (!processor_has_bf16_instruction()) GTEST_SKIP() << "this processor has no AVX512_BF16";
  // 1000-wide rows, and rows of 2^21 + 37 elements in all (streamed), odd widths both.
  for (const auto& [rows, cols] : {std::pair<std::int64_t, std::int64_t>{70, 1001},
                                   std::pair<std::int64_t, std::int64_t>{1033, 2031}}) {
    SCOPED_TRACE(std::to_string(rows) + " x " + std::to_string(cols));
    const std::int64_t n = rows * cols;
    // Logits wide enough apart that many probabilities and gradients are denormal.
    std::vector<double> values = uniform_values(static_cast<std::size_t>(n), -95, 5, 7);
    for (std::int64_t i = 5; i < n; i += 97) values[static_cast<std::size_t>(i)] = -1e30;
    const Buffer x = filled(DType::bf16, values);
    const Buffer dy = filled(DType::bf16, uniform_values(static_cast<std::size_t>(n), -1, 1, 8));
    std::vector<std::int64_t> labels(static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r) labels[static_cast<std::size_t>(r)] = (r * 7) % cols;
    for (const bool log : {false, true}) {
      SCOPED_TRACE(log ? "log_softmax" : "softmax");
      const actloss::SoftmaxOptions options{log};
      const auto forward = [&](Buffer& out) {
        actloss::SoftmaxForwardArgs f;
        f.rows = rows;
        f.cols = cols;
        f.x = x.data();
        f.x_dtype = DType::bf16;
        f.y = out.data();
        f.y_dtype = DType::bf16;
        return actloss::softmax_forward(f, options, cpu_exec());
      };
      expect_same_bits(n, forward);
      // The backward's y: the forward's output.
      Buffer y(DType::bf16, n);
      ASSERT_TRUE(forward(y).ok());
      expect_same_bits(n, [&](Buffer& dx) {
        actloss::SoftmaxBackwardArgs b;
        b.rows = rows;
        b.cols = cols;
        b.y = y.data();
        b.y_dtype = DType::bf16;
        b.dy = dy.data();
        b.dy_dtype = DType::bf16;
        b.dx = dx.data();
        b.dx_dtype = DType::bf16;
        return actloss::softmax_backward(b, options, cpu_exec());
      });
    }
    SCOPED_TRACE("cross_entropy");
    expect_same_bits(n, [&](Buffer& grad) {
      float loss = 0;
      actloss::CrossEntropyArgs args;
      args.rows = rows;
      args.classes = cols;
      args.logits = x.data();
      args.logits_dtype = DType::bf16;
      args.targets = labels.data();
      args.loss = &loss;
      args.grad = grad.data();
      args.grad_dtype = DType::bf16;
      return actloss::cross_entropy_forward_backward(args, actloss::CrossEntropyOptions{},
                                                     cpu_exec());
    });
  }
}

}  // namespace
}  // namespace api_test
