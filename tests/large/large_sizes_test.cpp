// Past 2^31 elements: one call of each kind over more elements than a 32-bit index reaches, on
// the CPU backend and on CUDA (the simulator, or a GPU), with the rows and elements at the far
// end checked against the float64 reference, which sees only those rows (every checked quantity
// depends on its own row alone). About 9 GB of host memory at most and minutes on the simulator,
// so they are not part of ctest: the last stage of scripts/test.sh runs them (on the simulator's
// Release build; `ACTLOSS_TEST_STAGES=large` alone), and the device check on the card.
//
//   tanh, forward, bf16, in place, 2^31 + 37 elements: the 37 past 2^31 and the 64 before it;
//   softmax, forward, bf16, 16385 x 131072 (2^31 + 2^17 elements): the rows on both sides of
//     element 2^31 (row 16384 starts there);
//   cross-entropy, forward_backward, bf16, 16385 x 131072, the gradient in place: those rows'
//     losses and gradients.
//
// Tolerances, |got - want| <= atol + rtol |want| with the reference rounded as the output is:
// rtol 2^-7 for bf16 outputs (the result and the reference each round once, possibly to
// neighbouring bf16 values at a tie, 2^-8 each), and the float32 losses 1e-5 relative (float
// math over 131072 classes: the kernels' own bounds are 2^-21 relative; these tests are about
// indexing, for which a wrong element is off by far more than either).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "host/half.h"
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

constexpr std::int64_t kBig = std::int64_t{1} << 31;

// A pseudo-random bf16 value in [-4, 4) for element i: every element differs from its
// neighbours, so a read of the wrong element is caught.
double value_at(std::int64_t i) {
  std::uint64_t z = static_cast<std::uint64_t>(i) * 0x9E3779B97F4A7C15ull;
  z ^= z >> 29;
  z *= 0xBF58476D1CE4E5B9ull;
  z ^= z >> 32;
  return -4.0 + 8.0 * static_cast<double>(z >> 40) / static_cast<double>(1ull << 24);
}

std::uint16_t bf16_bits(double value) {
  std::uint16_t bits = 0;
  host::store_from_double(&bits, DType::bf16, 0, value);
  return bits;
}

double from_bf16(std::uint16_t bits) { return host::load_as_double(&bits, DType::bf16, 0); }

// `count` bf16 elements where `device` computes, value_at(i) each, filled and read back in
// pieces so that no second copy of the whole buffer is ever held.
class Bf16Buffer {
 public:
  Bf16Buffer(Device device, std::int64_t count) : device_(device), count_(count) {
    const auto bytes = static_cast<std::size_t>(count) * 2;
    if (device == Device::cuda) {
      EXPECT_EQ(cudaMalloc(&data_, bytes), cudaSuccess);
    } else {
      host_.resize(static_cast<std::size_t>(count));
      data_ = host_.data();
    }
    constexpr std::int64_t kPiece = std::int64_t{1} << 24;
    std::vector<std::uint16_t> piece;
    for (std::int64_t start = 0; start < count; start += kPiece) {
      const std::int64_t n = std::min(kPiece, count - start);
      piece.resize(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i)
        piece[static_cast<std::size_t>(i)] = bf16_bits(value_at(start + i));
      write(start, piece);
    }
  }
  ~Bf16Buffer() {
    if (device_ == Device::cuda) (void)cudaFree(data_);
  }
  Bf16Buffer(const Bf16Buffer&) = delete;
  Bf16Buffer& operator=(const Bf16Buffer&) = delete;

  void* data() const { return data_; }
  std::vector<double> read(std::int64_t start, std::int64_t n) const {
    std::vector<std::uint16_t> bits(static_cast<std::size_t>(n));
    if (device_ == Device::cuda) {
      EXPECT_EQ(cudaMemcpy(bits.data(), static_cast<std::uint16_t*>(data_) + start,
                           static_cast<std::size_t>(n) * 2, cudaMemcpyDeviceToHost),
                cudaSuccess);
    } else {
      std::memcpy(bits.data(), host_.data() + start, static_cast<std::size_t>(n) * 2);
    }
    std::vector<double> values(bits.size());
    for (std::size_t i = 0; i < bits.size(); ++i) values[i] = from_bf16(bits[i]);
    return values;
  }

 private:
  void write(std::int64_t start, const std::vector<std::uint16_t>& piece) {
    if (device_ == Device::cuda) {
      EXPECT_EQ(cudaMemcpy(static_cast<std::uint16_t*>(data_) + start, piece.data(),
                           piece.size() * 2, cudaMemcpyHostToDevice),
                cudaSuccess);
    } else {
      std::memcpy(host_.data() + start, piece.data(), piece.size() * 2);
    }
  }

  Device device_;
  std::int64_t count_;
  void* data_ = nullptr;
  std::vector<std::uint16_t> host_;
};

// The original values of elements [start, start + n), as bf16 holds them.
std::vector<std::uint16_t> original_bits(std::int64_t start, std::int64_t n) {
  std::vector<std::uint16_t> bits(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    bits[static_cast<std::size_t>(i)] = bf16_bits(value_at(start + i));
  return bits;
}

::testing::AssertionResult near(double got, double want, double atol, double rtol) {
  if (std::fabs(got - want) <= atol + rtol * std::fabs(want)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << ", want " << want;
}

Exec exec_on(Device device) {
  Exec exec;
  exec.device = device;
  return exec;
}

void finish(Device device) {
  if (device == Device::cuda) synchronize_or_fail();
}

class LargeSizes : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam() == Device::cuda) ACTLOSS_REQUIRE_CUDA_DEVICE();
  }
};

TEST_P(LargeSizes, TanhForwardInPlacePastTwoToThe31Elements) {
  const Device device = GetParam();
  const std::int64_t n = kBig + 37;
  Bf16Buffer x(device, n);
  ActivationForwardArgs a;
  a.n = n;
  a.x = x.data();
  a.x_dtype = DType::bf16;
  a.y = x.data();
  a.y_dtype = DType::bf16;
  const ActivationOptions options{Activation::tanh, 0.0f};
  const Status status = activation_forward(a, options, exec_on(device));
  ASSERT_TRUE(status.ok()) << status.message();
  finish(device);

  // The reference over the checked window alone.
  const std::int64_t start = kBig - 64, count = n - start;
  std::vector<std::uint16_t> window = original_bits(start, count);
  ActivationForwardArgs r = a;
  r.n = count;
  r.x = window.data();
  r.y = window.data();
  ASSERT_TRUE(activation_forward(r, options, exec_on(Device::reference)).ok());
  const std::vector<double> got = x.read(start, count);
  for (std::int64_t i = 0; i < count; ++i) {
    const auto at = static_cast<std::size_t>(i);
    EXPECT_TRUE(near(got[at], from_bf16(window[at]), 0x1p-133, 0x1p-7))
        << "element " << start + i;
  }
}

constexpr std::int64_t kRows = 16385, kClasses = 131072;  // row 16384 starts at element 2^31

// Rows from first_row on, as read back, against the reference's bf16 results; reports the first
// five mismatches by row and class.
void expect_rows_near(const std::vector<double>& got, const std::vector<std::uint16_t>& want,
                      std::int64_t first_row) {
  int bad = 0;
  for (std::size_t i = 0; i < got.size() && bad < 5; ++i) {
    const auto result = near(got[i], from_bf16(want[i]), 0x1p-133, 0x1p-7);
    if (!result) {
      ++bad;
      ADD_FAILURE() << "row " << first_row + static_cast<std::int64_t>(i) / kClasses << ", class "
                    << static_cast<std::int64_t>(i) % kClasses << ": " << result.message();
    }
  }
}

TEST_P(LargeSizes, SoftmaxForwardPastTwoToThe31Elements) {
  const Device device = GetParam();
  Bf16Buffer x(device, kRows * kClasses);
  SoftmaxForwardArgs a;
  a.rows = kRows;
  a.cols = kClasses;
  a.x = x.data();
  a.x_dtype = DType::bf16;
  a.y = x.data();
  a.y_dtype = DType::bf16;
  const Status status = softmax_forward(a, SoftmaxOptions{}, exec_on(device));
  ASSERT_TRUE(status.ok()) << status.message();
  finish(device);

  const std::int64_t first_row = kRows - 2;
  std::vector<std::uint16_t> rows = original_bits(first_row * kClasses, 2 * kClasses);
  SoftmaxForwardArgs r = a;
  r.rows = 2;
  r.x = rows.data();
  r.y = rows.data();
  ASSERT_TRUE(softmax_forward(r, SoftmaxOptions{}, exec_on(Device::reference)).ok());
  const std::vector<double> got = x.read(first_row * kClasses, 2 * kClasses);
  expect_rows_near(got, rows, first_row);
}

TEST_P(LargeSizes, CrossEntropyForwardBackwardPastTwoToThe31Elements) {
  const Device device = GetParam();
  Bf16Buffer logits(device, kRows * kClasses);
  std::vector<std::int64_t> targets(kRows);
  for (std::int64_t r = 0; r < kRows; ++r)
    targets[static_cast<std::size_t>(r)] = (r * 7919) % kClasses;
  Memory target_memory(device, targets.size() * sizeof(std::int64_t));
  {
    std::vector<std::uint8_t> bytes(targets.size() * sizeof(std::int64_t));
    std::memcpy(bytes.data(), targets.data(), bytes.size());
    target_memory.upload(bytes);
  }
  Memory loss(device, kRows * sizeof(float));
  CrossEntropyArgs a;
  a.rows = kRows;
  a.classes = kClasses;
  a.logits = logits.data();
  a.logits_dtype = DType::bf16;
  a.targets = target_memory.get();
  a.loss = static_cast<float*>(loss.get());
  a.grad = logits.data();  // in place
  a.grad_dtype = DType::bf16;
  CrossEntropyOptions options;
  options.reduction = Reduction::none;  // each row's loss and gradient its own
  const Status status = cross_entropy_forward_backward(a, options, exec_on(device));
  ASSERT_TRUE(status.ok()) << status.message();
  finish(device);

  const std::int64_t first_row = kRows - 2;
  std::vector<std::uint16_t> rows = original_bits(first_row * kClasses, 2 * kClasses);
  std::vector<float> want_loss(2);
  CrossEntropyArgs r = a;
  r.rows = 2;
  r.logits = rows.data();
  r.grad = rows.data();
  r.targets = targets.data() + first_row;
  r.loss = want_loss.data();
  ASSERT_TRUE(cross_entropy_forward_backward(r, options, exec_on(Device::reference)).ok());

  std::vector<std::uint8_t> loss_bytes = loss.download();
  for (int i = 0; i < 2; ++i) {
    float got_loss;
    std::memcpy(&got_loss, loss_bytes.data() + (first_row + i) * sizeof(float), sizeof(float));
    EXPECT_TRUE(near(got_loss, want_loss[static_cast<std::size_t>(i)], 0.0, 1e-5))
        << "row " << first_row + i;
  }
  const std::vector<double> got = logits.read(first_row * kClasses, 2 * kClasses);
  expect_rows_near(got, rows, first_row);
}

INSTANTIATE_TEST_SUITE_P(Devices, LargeSizes, ::testing::Values(Device::cpu, Device::cuda));

}  // namespace
}  // namespace actloss::test
