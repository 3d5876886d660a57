// Softmax and log-softmax on the SIMD CPU backend (Device::cpu) against the float64 reference
// (Device::reference), on every Highway target this processor runs and on 1 and 3 threads: every
// dtype pair, rows that cross the vector widths (4, 8 and 16 floats), padded strides whose
// padding must stay untouched, batched layouts, in place, and special values.
#include <actloss/softmax.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "tests/api/cpu_backend_support.h"
#include "tests/api/test_util.h"

namespace {

using namespace actloss;
using namespace api_test;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr DType kDtypes[] = {DType::f32, DType::f16, DType::bf16};

// A batched view: row r is row r % rows_per_batch of batch r / rows_per_batch.
struct Layout {
  std::int64_t rows = 1, cols = 1, rows_per_batch = 1, row_stride = 1, batch_stride = 1;

  static Layout dense(std::int64_t rows, std::int64_t cols, std::int64_t pad = 0) {
    return {rows, cols, rows, cols + pad, rows * (cols + pad)};
  }
  std::int64_t at(std::int64_t r, std::int64_t c) const {
    return (r / rows_per_batch) * batch_stride + (r % rows_per_batch) * row_stride + c;
  }
  std::int64_t elements() const { return at(rows - 1, cols - 1) + 1 + row_stride; }
};

// Forward tolerances, per output dtype. The backend computes in float: exp(x - m) is good to
// about 1 ulp plus the rounding of x - m (2.25 u |x - m| in the kernels' error model), the sum of
// the row in double, then a product or difference: about 7u + 2.25u |x - m|, here at most 43u
// for |x - m| <= 16 (inputs in [-8, 8]), under rtol 64u = 2^-18. A 16-bit output rounds that
// float once more, and may land on the other neighbour of the exact value: two of its units.
// atol: below float's normal range a probability's error is absolute (2^-126 and under).
Tolerance forward_tolerance(DType out, bool log) {
  switch (out) {
    case DType::f32:
      return log ? Tolerance{0x1p-19, 0x1p-20} : Tolerance{0x1p-126, 0x1p-18};
    case DType::f16:
      return {0x1p-24, 0x1p-10};
    case DType::bf16:
      return {0x1p-126, 0x1p-7};
  }
  return {0, 0};
}

// Backward tolerances: dx = y (dy - dot) or dy - exp(y) sum dy, the dot product in double and
// the difference in float: a few roundings of |y| (|dy| + |dot|) <= 2 (softmax; y <= 1,
// |dy| <= 1) or of exp(y) |sum dy| <= 1 (log-softmax; |sum dy| stays below the row length times
// exp(y) ~ 1 / cols of a uniform row), so atol 2^-20 = 16u covers them where dx cancels; rtol as
// forward for the output's own rounding.
Tolerance backward_tolerance(DType out) {
  switch (out) {
    case DType::f32:
      return {0x1p-20, 0x1p-21};
    case DType::f16:
      return {0x1p-20, 0x1p-10};
    case DType::bf16:
      return {0x1p-20, 0x1p-7};
  }
  return {0, 0};
}

Buffer filled(DType dtype, const Layout& layout, const std::vector<double>& values) {
  Buffer buffer(dtype, layout.elements());
  for (std::int64_t r = 0; r < layout.rows; ++r)
    for (std::int64_t c = 0; c < layout.cols; ++c)
      buffer.set(layout.at(r, c), values[static_cast<std::size_t>(r * layout.cols + c)]);
  return buffer;
}

// Every element within tolerance, and every byte between rows still poison.
void expect_matches(const Buffer& got, const Buffer& want, const Layout& layout, Tolerance tol) {
  int failures = 0;
  std::vector<bool> in_row(static_cast<std::size_t>(layout.elements()), false);
  for (std::int64_t r = 0; r < layout.rows; ++r)
    for (std::int64_t c = 0; c < layout.cols; ++c) {
      const std::int64_t i = layout.at(r, c);
      in_row[static_cast<std::size_t>(i)] = true;
      const auto result = close(got.get(i), want.get(i), tol);
      if (!result && failures++ < 5)
        ADD_FAILURE() << "row " << r << " col " << c << ": " << result.message();
    }
  EXPECT_EQ(failures, 0) << "elements outside the tolerance";
  for (std::int64_t i = 0; i < layout.elements(); ++i)
    if (!in_row[static_cast<std::size_t>(i)] && !got.untouched(i)) {
      ADD_FAILURE() << "padding element " << i << " was written";
      break;
    }
}

Status forward(Device device, const Buffer& x, Buffer& y, const Layout& lx, const Layout& ly,
               bool log) {
  SoftmaxForwardArgs args;
  args.rows = lx.rows;
  args.cols = lx.cols;
  args.rows_per_batch = lx.rows_per_batch;
  args.x = x.data();
  args.x_dtype = x.dtype();
  args.x_row_stride = lx.row_stride;
  args.x_batch_stride = lx.batch_stride;
  args.y = y.data();
  args.y_dtype = y.dtype();
  args.y_row_stride = ly.row_stride;
  args.y_batch_stride = ly.batch_stride;
  SoftmaxOptions options;
  options.log = log;
  Exec exec;
  exec.device = device;
  return softmax_forward(args, options, exec);
}

Status backward(Device device, const Buffer& y, const Buffer& dy, Buffer& dx, const Layout& ly,
                const Layout& ldy, const Layout& ldx, bool log) {
  SoftmaxBackwardArgs args;
  args.rows = ly.rows;
  args.cols = ly.cols;
  args.rows_per_batch = ly.rows_per_batch;
  args.y = y.data();
  args.y_dtype = y.dtype();
  args.y_row_stride = ly.row_stride;
  args.y_batch_stride = ly.batch_stride;
  args.dy = dy.data();
  args.dy_dtype = dy.dtype();
  args.dy_row_stride = ldy.row_stride;
  args.dy_batch_stride = ldy.batch_stride;
  args.dx = dx.data();
  args.dx_dtype = dx.dtype();
  args.dx_row_stride = ldx.row_stride;
  args.dx_batch_stride = ldx.batch_stride;
  SoftmaxOptions options;
  options.log = log;
  Exec exec;
  exec.device = device;
  return softmax_backward(args, options, exec);
}

// Forward on every target and thread count against the reference.
void check_forward(const std::vector<double>& values, const Layout& lx, const Layout& ly, DType in,
                   DType out, bool log) {
  const Buffer x = filled(in, lx, values);
  Buffer want(out, ly.elements());
  ASSERT_TRUE(forward(Device::reference, x, want, lx, ly, log).ok());
  for_each_simd_target([&] {
    Buffer got(out, ly.elements());
    ASSERT_TRUE(forward(Device::cpu, x, got, lx, ly, log).ok());
    expect_matches(got, want, ly, forward_tolerance(out, log));
  });
}

const std::int64_t kColumnCounts[] = {1, 7, 15, 16, 17, 33, 1000, 50257};

TEST(CpuSoftmax, ForwardEveryDtypePairAndRowLength) {
  for (const std::int64_t cols : kColumnCounts) {
    const std::int64_t rows = cols > 1000 ? 2 : 5;
    // Inputs in [-8, 8]; every other row has one entry 10 above the rest (a confident row).
    std::vector<double> values = uniform_values(static_cast<std::size_t>(rows * cols), -8.0, 8.0,
                                                static_cast<std::uint64_t>(cols));
    for (std::int64_t r = 0; r < rows; r += 2)
      values[static_cast<std::size_t>(r * cols + cols / 2)] = 8.0;
    for (bool log : {false, true})
      for (DType in : kDtypes)
        for (DType out : kDtypes) {
          SCOPED_TRACE(std::string(log ? "log_softmax " : "softmax ") + to_string(in) + "->" +
                       to_string(out) + " cols " + std::to_string(cols));
          // A padded output stride, so that a store past the row shows.
          check_forward(values, Layout::dense(rows, cols), Layout::dense(rows, cols, 3), in, out,
                        log);
        }
  }
}

TEST(CpuSoftmax, ConfidentRowKeepsTheTopLogProbability) {
  // One class 30 above 4095 others at 0: rest = 4095 e^-30 = 3.8e-10, the top's log-probability
  // -log1p(rest) = -3.8e-10. A rest taken as s - 1 in float would give 0; f32 tolerance as
  // above, relative to 3.8e-10.
  const std::int64_t cols = 4096;
  std::vector<double> values(cols, 0.0);
  values[1234] = 30.0;
  const Layout layout = Layout::dense(1, cols);
  for (bool log : {false, true}) check_forward(values, layout, layout, DType::f32, DType::f32, log);
  const Buffer x = filled(DType::f32, layout, values);
  Buffer y(DType::f32, layout.elements());
  ASSERT_TRUE(forward(Device::cpu, x, y, layout, layout, true).ok());
  EXPECT_LT(y.get(1234), -3.0e-10);
}

TEST(CpuSoftmax, LeaningRowKeepsTheTopLogProbability) {
  // One class above 4095 others, each row's gap chosen so that rest = sum of the others'
  // exp(x - m) is about 0.006, 0.06 or 0.6: above the confident rows' second sum, where rest
  // comes from float partial sums alone. Summed with the top's own 1 in float, rest lost its
  // low digits and the top's log-probability -log1p(rest) was off by up to 239 units. Left out
  // of the partial sums, rest is good to a few 2^-24 relatively, and -log1p(rest) then to a
  // few units: rtol 2^-21 (four units), atol 0 (the value is a normal float well away from 0).
  const std::int64_t cols = 4096;
  const std::vector<double> rests = {0.005, 0.05, 0.5};
  const auto rows = static_cast<std::int64_t>(rests.size());
  std::vector<double> values(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    const double others = std::log(rests[static_cast<std::size_t>(r)] / (cols - 1));
    for (std::int64_t c = 0; c < cols; ++c) {
      // Spread over two units below the gap, so that the terms differ in every digit.
      values[static_cast<std::size_t>(r * cols + c)] =
          c == 77 * (r + 1) ? 0.0 : others - 1.0 + 2.0 * static_cast<double>(c % 97) / 97.0;
    }
  }
  const Layout layout = Layout::dense(rows, cols);
  const Buffer x = filled(DType::f32, layout, values);
  for_each_simd_target([&] {
    Buffer y(DType::f32, layout.elements());
    ASSERT_TRUE(forward(Device::cpu, x, y, layout, layout, true).ok());
    for (std::int64_t r = 0; r < rows; ++r) {
      // The reference from the float inputs, in double.
      double sum = 0.0;
      for (std::int64_t c = 0; c < cols; ++c) sum += std::exp(x.get(layout.at(r, c)));
      const std::int64_t top = 77 * (r + 1);
      const double want = x.get(layout.at(r, top)) - std::log(sum);
      EXPECT_TRUE(close(y.get(layout.at(r, top)), want, Tolerance{0.0, 0x1p-21}))
          << "row " << r << " (rest " << sum - 1.0 << ")";
    }
  });
}

TEST(CpuSoftmax, SpecialValues) {
  // Row 0: a NaN (the row NaN); 1: +inf (NaN); 2: all -inf (0 / -inf); 3: -inf masks over every
  // other class; 4: +-3e38 (x - m overflows to -inf: exactly 0 and -inf, the top exactly 1);
  // 5: everything far below zero (-1e30 +- small), which a max started at 0 would ruin.
  const std::int64_t rows = 6, cols = 37;
  std::vector<double> values = uniform_values(static_cast<std::size_t>(rows * cols), -3.0, 3.0, 7);
  auto at = [&](std::int64_t r, std::int64_t c) -> double& {
    return values[static_cast<std::size_t>(r * cols + c)];
  };
  at(0, 20) = kNaN;
  at(1, 36) = kInf;
  for (std::int64_t c = 0; c < cols; ++c) {
    at(2, c) = -kInf;
    if (c % 2) at(3, c) = -kInf;
    at(4, c) = c % 3 ? -3e38 : 3e38;
    at(5, c) = -1e30 + 1e23 * double(c % 5);
  }
  for (bool log : {false, true})
    for (DType in : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(std::string(log ? "log_softmax " : "softmax ") + to_string(in));
      check_forward(values, Layout::dense(rows, cols), Layout::dense(rows, cols), in, DType::f32,
                    log);
    }
}

TEST(CpuSoftmax, BatchedLayoutsAndInPlace) {
  // Three batches of 4 rows of 19 classes, each tensor with its own padding between rows and
  // between batches (x[:, :-1, :] style views); then in place (y over x), bit for bit the
  // out-of-place result.
  const std::int64_t rows = 12, cols = 19;
  const Layout lx{rows, cols, 4, 23, 4 * 23 + 5};
  const Layout ly{rows, cols, 4, 21, 4 * 21 + 9};
  const std::vector<double> values =
      uniform_values(static_cast<std::size_t>(rows * cols), -6.0, 6.0, 11);
  for (bool log : {false, true})
    for (DType dtype : kDtypes) {
      SCOPED_TRACE(std::string(log ? "log_softmax " : "softmax ") + to_string(dtype));
      check_forward(values, lx, ly, dtype, dtype, log);
      for_each_simd_target([&] {
        Buffer x = filled(dtype, lx, values);
        Buffer separate(dtype, lx.elements());
        ASSERT_TRUE(forward(Device::cpu, x, separate, lx, lx, log).ok());
        ASSERT_TRUE(forward(Device::cpu, x, x, lx, lx, log).ok());
        for (std::int64_t r = 0; r < rows; ++r)
          for (std::int64_t c = 0; c < cols; ++c)
            EXPECT_EQ(x.get(lx.at(r, c)), separate.get(lx.at(r, c)));
      });
    }
}

// Backward on every target and thread count against the reference; y is the reference's forward
// output of `values`.
void check_backward(const std::vector<double>& values, const std::vector<double>& gradients,
                    const Layout& ly, const Layout& ldy, const Layout& ldx, DType y_dtype,
                    DType dy_dtype, DType dx_dtype, bool log) {
  const Buffer x = filled(DType::f32, ly, values);
  Buffer y(y_dtype, ly.elements());
  ASSERT_TRUE(forward(Device::reference, x, y, ly, ly, log).ok());
  const Buffer dy = filled(dy_dtype, ldy, gradients);
  Buffer want(dx_dtype, ldx.elements());
  ASSERT_TRUE(backward(Device::reference, y, dy, want, ly, ldy, ldx, log).ok());
  for_each_simd_target([&] {
    Buffer got(dx_dtype, ldx.elements());
    ASSERT_TRUE(backward(Device::cpu, y, dy, got, ly, ldy, ldx, log).ok());
    expect_matches(got, want, ldx, backward_tolerance(dx_dtype));
  });
}

TEST(CpuSoftmax, BackwardDtypesRowLengthsAndLayouts) {
  int k = 0;
  for (const std::int64_t cols : kColumnCounts) {
    const std::int64_t rows = cols > 1000 ? 2 : 5;
    const auto n = static_cast<std::size_t>(rows * cols);
    const std::vector<double> values = uniform_values(n, -4.0, 4.0, 100 + std::uint64_t(cols));
    const std::vector<double> gradients = uniform_values(n, -1.0, 1.0, 200 + std::uint64_t(cols));
    for (bool log : {false, true}) {
      // Every dtype triple at 17 columns, a rotation of them elsewhere.
      for (int combo = 0; combo < 27; ++combo) {
        if (cols != 17 && combo % 9 != k % 9) continue;
        const DType y_dtype = kDtypes[combo % 3], dy_dtype = kDtypes[(combo / 3) % 3],
                    dx_dtype = kDtypes[combo / 9];
        SCOPED_TRACE(std::string(log ? "log_softmax " : "softmax ") + to_string(y_dtype) + "/" +
                     to_string(dy_dtype) + "->" + to_string(dx_dtype) + " cols " +
                     std::to_string(cols));
        check_backward(values, gradients, Layout::dense(rows, cols, 1),
                       Layout::dense(rows, cols, 2), Layout::dense(rows, cols, 3), y_dtype,
                       dy_dtype, dx_dtype, log);
      }
      ++k;
    }
  }
  // Batched, every tensor its own layout.
  const Layout ly{6, 9, 3, 11, 40}, ldy{6, 9, 3, 9, 27}, ldx{6, 9, 3, 10, 31};
  const std::vector<double> values = uniform_values(54, -4.0, 4.0, 5);
  const std::vector<double> gradients = uniform_values(54, -1.0, 1.0, 6);
  for (bool log : {false, true})
    check_backward(values, gradients, ly, ldy, ldx, DType::bf16, DType::f32, DType::f16, log);
}

TEST(CpuSoftmax, LongRowsKeepTheirExponentialsInAFloatOutput) {
  // From 1 MiB of input, exponentials and output a row, a float output holds the row's
  // exponentials until they are scaled: nothing may be written past the row (3 elements of output
  // padding, odd column count), the confident row's second sum reads them back from the output,
  // and in place (y over x) gives the out-of-place bits. Row 0: uniform in [-8, 8]; row 1: one
  // 0 among -30s (rest about 1e-8, confident); row 2: a NaN (all NaN out).
  const std::int64_t rows = 3, cols = 131075;
  std::vector<double> values =
      uniform_values(static_cast<std::size_t>(rows * cols), -8.0, 8.0, 43);
  for (std::int64_t c = 0; c < cols; ++c) values[static_cast<std::size_t>(cols + c)] = -30.0;
  values[static_cast<std::size_t>(cols + cols / 3)] = 0.0;
  values[static_cast<std::size_t>(2 * cols + 5)] = std::nan("");
  for (const DType in : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(std::string("softmax ") + to_string(in) + " -> f32");
    check_forward(values, Layout::dense(rows, cols), Layout::dense(rows, cols, 3), in, DType::f32,
                  /*log=*/false);
  }
  const Layout layout = Layout::dense(rows, cols);
  for_each_simd_target([&] {
    Buffer x = filled(DType::f32, layout, values);
    Buffer separate(DType::f32, layout.elements());
    ASSERT_TRUE(forward(Device::cpu, x, separate, layout, layout, /*log=*/false).ok());
    ASSERT_TRUE(forward(Device::cpu, x, x, layout, layout, /*log=*/false).ok());
    int mismatches = 0;
    for (std::int64_t i = 0; i < layout.elements(); ++i) {
      const double got = x.get(i), want = separate.get(i);
      if (!(got == want || (std::isnan(got) && std::isnan(want)))) ++mismatches;
    }
    EXPECT_EQ(mismatches, 0) << "in place differs from out of place";
  });
}

TEST(CpuSoftmax, LargeOutputsStreamedAtEveryRowAlignment) {
  // Outputs of 4 MiB and more are stored with non-temporal stores from each row's first
  // vector-aligned element on. 4099 columns with 3 elements of output padding start successive
  // rows 3 elements further along, so the rows meet every alignment; the padding must stay
  // untouched (expect_matches). f32: 260 rows, 4.3 MB; 16-bit: twice the rows.
  for (const DType out : {DType::f32, DType::bf16, DType::f16}) {
    const std::int64_t rows = out == DType::f32 ? 260 : 520, cols = 4099;
    const auto n = static_cast<std::size_t>(rows * cols);
    const std::vector<double> values = uniform_values(n, -8.0, 8.0, 41);
    const std::vector<double> gradients = uniform_values(n, -1.0, 1.0, 42);
    for (bool log : {false, true}) {
      SCOPED_TRACE(std::string(log ? "log_softmax -> " : "softmax -> ") + to_string(out));
      check_forward(values, Layout::dense(rows, cols), Layout::dense(rows, cols, 3), DType::f32,
                    out, log);
      check_backward(values, gradients, Layout::dense(rows, cols), Layout::dense(rows, cols),
                     Layout::dense(rows, cols, 3), DType::f32, DType::f32, out, log);
    }
  }
}

TEST(CpuSoftmax, BackwardInPlaceAndSpecialRows) {
  // In place (dx over dy) equals out of place bit for bit; rows of y with -inf log-probabilities
  // (exp(y) = 0: log-softmax passes dy through) and a NaN dy (its row NaN).
  const std::int64_t rows = 4, cols = 21;
  const Layout layout = Layout::dense(rows, cols, 2);
  std::vector<double> values = uniform_values(rows * cols, -4.0, 4.0, 8);
  std::vector<double> gradients = uniform_values(rows * cols, -1.0, 1.0, 9);
  for (std::int64_t c = 0; c < cols; c += 3) values[static_cast<std::size_t>(cols + c)] = -kInf;
  gradients[static_cast<std::size_t>(2 * cols + 5)] = kNaN;
  for (bool log : {false, true}) {
    SCOPED_TRACE(log ? "log_softmax" : "softmax");
    check_backward(values, gradients, layout, layout, layout, DType::f32, DType::f32, DType::f32,
                   log);
    const Buffer x = filled(DType::f32, layout, values);
    Buffer y(DType::f32, layout.elements());
    ASSERT_TRUE(forward(Device::reference, x, y, layout, layout, log).ok());
    for_each_simd_target([&] {
      Buffer dy = filled(DType::bf16, layout, gradients);
      Buffer separate(DType::bf16, layout.elements());
      ASSERT_TRUE(backward(Device::cpu, y, dy, separate, layout, layout, layout, log).ok());
      ASSERT_TRUE(backward(Device::cpu, y, dy, dy, layout, layout, layout, log).ok());
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t c = 0; c < cols; ++c) {
          const std::int64_t i = layout.at(r, c);
          EXPECT_EQ(dy.get_raw<std::uint16_t>(i), separate.get_raw<std::uint16_t>(i));
        }
    });
  }
}

TEST(CpuSoftmax, BackwardOfAConfidentRowUnderLargeGradients) {
  // The accumulator case: one class 30 above 4095 others, dy = 1000 +- 1. dot = sum y dy is about
  // 1000, and every dx = y (dy - dot) is a small difference under it: the top's is about
  // -4e-7 (its y is 1 in float), the others' about 1e-13. The backend's double dot, split into
  // hi + lo floats, leaves |y| (a few 2^-53 sum |y dy| + 2^-47 |dot|) (validation/softmax.cpp);
  // atol |y| 1000 2^-44 is 128 times that, while a float dot, or hi without lo, is off by about
  // |y| 1000 2^-25: 2^19 times the allowance.
  const std::int64_t cols = 4096;
  const Layout layout = Layout::dense(1, cols);
  std::vector<double> values = uniform_values(cols, -1.0, 0.0, 12);
  values[cols - 1] = 30.0;
  const Buffer x = filled(DType::f32, layout, values);
  Buffer y(DType::f32, layout.elements());
  ASSERT_TRUE(forward(Device::reference, x, y, layout, layout, false).ok());
  const Buffer dy = filled(DType::f32, layout, uniform_values(cols, 999.0, 1001.0, 13));
  Buffer want(DType::f32, layout.elements());
  ASSERT_TRUE(backward(Device::reference, y, dy, want, layout, layout, layout, false).ok());
  for_each_simd_target([&] {
    Buffer got(DType::f32, layout.elements());
    ASSERT_TRUE(backward(Device::cpu, y, dy, got, layout, layout, layout, false).ok());
    int failures = 0;
    for (std::int64_t c = 0; c < cols; ++c) {
      const auto result =
          close(got.get(c), want.get(c), {std::fabs(y.get(c)) * 1000.0 * 0x1p-44, 0x1p-21});
      if (!result && failures++ < 3) ADD_FAILURE() << "col " << c << ": " << result.message();
    }
    EXPECT_EQ(failures, 0);
  });
}

TEST(CpuSoftmax, BackwardOfBf16ProductsBeyondFloatRange) {
  // bfloat16 y and dy: the dot takes their products in float (exact while they stay in float's
  // range) and is taken again from double products when it lands outside [2^-60, 2^100].
  // y_0 dy_0 = 2^140 overflows float, yet dx_1 = 2^-70 (1 - 2^140) = -2^70 is finite; a dot kept
  // from float products is +inf there and makes dx_1 -inf. Columns 0 and 33 sit in different
  // halves of a register pair on every target, with zeros around them.
  const std::int64_t cols = 64;
  const Layout layout = Layout::dense(1, cols);
  std::vector<double> values(cols, 0.0), gradients(cols, 0.0);
  values[0] = 0x1p70;
  gradients[0] = 0x1p70;
  values[33] = 0x1p-70;
  gradients[33] = 1.0;
  const Buffer y = filled(DType::bf16, layout, values);
  const Buffer dy = filled(DType::bf16, layout, gradients);
  Buffer want(DType::f32, layout.elements());
  ASSERT_TRUE(backward(Device::reference, y, dy, want, layout, layout, layout, false).ok());
  ASSERT_EQ(want.get(33), -0x1p70);
  for_each_simd_target([&] {
    Buffer got(DType::f32, layout.elements());
    ASSERT_TRUE(backward(Device::cpu, y, dy, got, layout, layout, layout, false).ok());
    expect_matches(got, want, layout, backward_tolerance(DType::f32));
  });
}

TEST(CpuSoftmax, SameBitsOnEveryThreadCount) {
  // Rows are independent, so the output is the same bits for 1 and 3 threads (many tasks).
  const std::int64_t rows = 300, cols = 333;
  const Layout layout = Layout::dense(rows, cols);
  const Buffer x = filled(DType::f32, layout,
                          uniform_values(static_cast<std::size_t>(rows * cols), -5.0, 5.0, 3));
  std::vector<std::vector<unsigned char>> results;
  for (const int threads : {1, 3}) {
    SimdTargetScope scope(0, threads);
    Buffer y(DType::f32, layout.elements());
    ASSERT_TRUE(forward(Device::cpu, x, y, layout, layout, false).ok());
    results.push_back(y.snapshot());
  }
  EXPECT_TRUE(results[0] == results[1]);
}

}  // namespace
