// Softmax and log-softmax on Device::cuda, forward and backward, against the float64 reference
// (host/reference/reference.h) through the public API, so the same tests run in the simulator
// build (under ASan in CI) and on a GPU. The reference gets the quantised inputs. Every dispatch
// path (cuda/row_dispatch.h) is forced in turn and meets every row length it can hold; outputs
// start poisoned (0xFF bytes: NaN), so an element not written fails.
//
// Tolerances: |actual - expected| <= atol + rtol |expected|. All pass in the simulator one
// binade tighter; the slack is for the GPU's exp2f (2 ulp where libm is correctly rounded).
//  * softmax: exp of a rounded difference times 1/s, s a float sum of positive terms (a few ulp):
//    rtol 2^-20; atol 2^-24 for the smallest probabilities, where exp((x - m) log2 e) loses
//    |x - m| ulp (p |x - m| <= 1/e).
//  * log-softmax: (x - m) - log s: rtol 2^-21 (|y| >= |x - m|), atol 2^-21 (the sum's relative
//    error, absolute in log s).
//  * softmax backward y (dy - sum dy y): the sum is float per chunk of 8, double across chunks,
//    its error well below 2^-21 max|dy| (sum y = 1): atol 2^-21 max|dy|, rtol 2^-21.
//  * log-softmax backward dy - exp(y) sum dy: the sum's error is at most 2^-21 sum|dy|, scaled by
//    exp(y) <= max exp(y), and exp itself adds 2 ulp of exp(y) |sum dy|: atol
//    2^-21 max exp(y) (sum|dy| + |sum dy|) + 2^-22 max|dy|, rtol 2^-21.
//  * f16 / bf16 outputs add one unit in their last place (rtol 2^-10 / 2^-7, atol 2^-24 for
//    f16's subnormals), since float is rounded once more to the output type.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <actloss/softmax.h>

#include "cuda/row_dispatch.h"
#include "host/reference/reference.h"
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

using detail::RowAlgorithm;
using detail::RowOp;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The simulator runs every CUDA thread on the CPU (under ASan in CI): rows x cols is kept below
// 300K elements per case, taking fewer rows for long ones.
std::int64_t rows_for(std::int64_t preferred, std::int64_t cols) {
  std::int64_t rows = preferred;
  while (rows > 1 && rows * cols > 300000) rows = rows == 257 ? 33 : (rows == 33 ? 2 : 1);
  return rows;
}

struct Case {
  bool backward = false;
  bool log = false;
  std::int64_t rows = 1, cols = 1;
  DType in = DType::f32;   // forward: x; backward: y
  DType dy = DType::f32;   // backward only
  DType out = DType::f32;  // forward: y; backward: dx
  std::int64_t in_pad = 0, dy_pad = 0, out_pad = 0;  // row stride = cols + pad
  std::int64_t offset = 0;
  bool in_place = false;  // forward: y over x; backward: dx over dy
};

std::string describe(const Case& c) {
  std::string text = std::string(c.backward ? "backward " : "forward ") +
                     (c.log ? "log_softmax " : "softmax ") + std::to_string(c.rows) + "x" +
                     std::to_string(c.cols) + " " + to_string(c.in);
  if (c.backward) text += std::string("/") + to_string(c.dy);
  text += std::string("->") + to_string(c.out);
  if (c.in_pad || c.dy_pad || c.out_pad)
    text += " pads " + std::to_string(c.in_pad) + "/" + std::to_string(c.dy_pad) + "/" +
            std::to_string(c.out_pad);
  if (c.offset) text += " offset " + std::to_string(c.offset);
  if (c.in_place) text += " in-place";
  return text + " path " + detail::to_string(detail::row_algorithm_override());
}

DType in_place_dtype(const Case& c) { return c.backward ? c.dy : c.in; }

std::vector<double> make_x(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  std::vector<double> x = random_values(std::size_t(rows * cols), -4.0, 4.0, seed);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = (r * 3) % 11; c < cols; c += 11) x[std::size_t(r * cols + c)] = -25.0;
    if (r % 2 == 0) x[std::size_t(r * cols + (r * 7) % cols)] = 14.0;  // a dominant entry
  }
  return x;
}

// Row-wise max |v|, sum |v|.
double row_max_abs(const std::vector<double>& v, std::int64_t r, std::int64_t cols) {
  double m = 0;
  for (std::int64_t c = 0; c < cols; ++c)
    if (std::isfinite(v[std::size_t(r * cols + c)])) m = std::max(m, std::fabs(v[std::size_t(r * cols + c)]));
  return m;
}

Tolerance with_output_rounding(DType dtype, Tolerance t) {
  if (dtype == DType::f16) {
    t.rtol += 0x1p-10;
    t.atol = std::max(t.atol, 0x1p-24);
  } else if (dtype == DType::bf16) {
    t.rtol += 0x1p-7;
    t.atol = std::max(t.atol, 0x1p-133);
  }
  return t;
}

// Runs one call and checks its output row by row. `x` is the forward input (forward) or the
// values y is made from (backward: y is the reference forward of x, rounded to y's dtype).
void run_case(const Case& c, const std::vector<double>& x, const std::vector<double>& dy_values) {
  SCOPED_TRACE(describe(c));
  const std::int64_t rows = c.rows, cols = c.cols;
  const std::int64_t in_stride = cols + c.in_pad;
  const std::int64_t dy_stride = c.in_place && c.backward ? cols + c.out_pad : cols + c.dy_pad;
  const std::int64_t out_stride =
      c.in_place ? (c.backward ? dy_stride : in_stride) : cols + c.out_pad;
  const DType out_dtype = c.in_place ? in_place_dtype(c) : c.out;

  std::vector<double> expected, in_values, dy_q;
  if (!c.backward) {
    in_values = quantize(x, c.in);
    expected = ref::softmax_forward(rows, cols, in_values, c.log);
  } else {
    in_values = quantize(ref::softmax_forward(rows, cols, quantize(x, c.in), c.log), c.in);
    dy_q = quantize(dy_values, c.dy);
    expected = ref::softmax_backward(rows, cols, in_values, dy_q, c.log);
  }

  DeviceMatrix input = upload_matrix(in_values, rows, cols, c.in, in_stride, c.offset);
  DeviceMatrix dy = c.backward ? upload_matrix(dy_q, rows, cols, c.dy, dy_stride, c.offset)
                               : DeviceMatrix();
  const DeviceMatrix separate =
      c.in_place ? DeviceMatrix() : poisoned_matrix(rows, cols, c.out, out_stride, c.offset);
  const DeviceMatrix& out = c.in_place ? (c.backward ? dy : input) : separate;

  SoftmaxOptions options;
  options.log = c.log;
  Status status;
  if (!c.backward) {
    SoftmaxForwardArgs args;
    args.rows = rows;
    args.cols = cols;
    args.x = input.data();
    args.x_dtype = c.in;
    args.x_row_stride = in_stride;
    args.y = out.data();
    args.y_dtype = out_dtype;
    args.y_row_stride = out_stride;
    status = softmax_forward(args, options, cuda_exec());
  } else {
    SoftmaxBackwardArgs args;
    args.rows = rows;
    args.cols = cols;
    args.y = input.data();
    args.y_dtype = c.in;
    args.y_row_stride = in_stride;
    args.dy = dy.data();
    args.dy_dtype = c.dy;
    args.dy_row_stride = dy_stride;
    args.dx = out.data();
    args.dx_dtype = out_dtype;
    args.dx_row_stride = out_stride;
    status = softmax_backward(args, options, cuda_exec());
  }
  ASSERT_TRUE(status.ok()) << status.message();
  synchronize_or_fail();

  const std::vector<double> got = out.download();
  const std::vector<double> want = quantize(expected, out_dtype);
  for (std::int64_t r = 0; r < rows; ++r) {
    Tolerance t;
    if (!c.backward) {
      t = c.log ? Tolerance{0x1p-21, 0x1p-21} : Tolerance{0x1p-24, 0x1p-20};
    } else if (!c.log) {
      t = Tolerance{0x1p-21 * row_max_abs(dy_q, r, cols), 0x1p-21};
    } else {
      double sum = 0, sum_abs = 0, max_exp = 0;
      for (std::int64_t k = 0; k < cols; ++k) {
        const double d = dy_q[std::size_t(r * cols + k)];
        sum += d;
        sum_abs += std::fabs(d);
        max_exp = std::max(max_exp, std::exp(in_values[std::size_t(r * cols + k)]));
      }
      if (!std::isfinite(sum_abs)) sum_abs = sum = 0;
      t = Tolerance{0x1p-21 * max_exp * (sum_abs + std::fabs(sum)) +
                        0x1p-22 * row_max_abs(dy_q, r, cols),
                    0x1p-21};
    }
    const auto begin = got.begin() + long(r * cols), end = begin + long(cols);
    const auto wbegin = want.begin() + long(r * cols), wend = wbegin + long(cols);
    EXPECT_TRUE(all_close(std::vector<double>(begin, end), std::vector<double>(wbegin, wend),
                          with_output_rounding(out_dtype, t), "row " + std::to_string(r)));
  }
  EXPECT_TRUE(out.padding_intact()) << "bytes between rows were written";
}

void run_forward(const Case& c, std::uint64_t seed) {
  run_case(c, make_x(c.rows, c.cols, seed), {});
}

void run_backward(const Case& c, std::uint64_t seed) {
  run_case(c, make_x(c.rows, c.cols, seed),
           random_values(std::size_t(c.rows * c.cols), -1.0, 1.0, seed + 1));
}

bool holds(RowOp op, RowAlgorithm path, std::int64_t cols, DType dtype) {
  return cols <= detail::row_algorithm_max_classes(op, path, dtype);
}

// ---------------------------------------------------------------------------------------------

// Every path with every row length it holds and every row count {1, 2, 33, 257} (fewer rows for
// the longest), f32, forward and backward; softmax and log-softmax alternate with the row count,
// so each length meets both in both directions.
TEST(CudaSoftmax, EveryPathEveryLength) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 0;
  for (RowAlgorithm path : kPaths) {
    const ForcedRowPath forced(path);
    for (std::int64_t cols : kRowLengths) {
      std::int64_t previous_rows = 0;
      for (int k = 0; k < 4; ++k) {
        const std::int64_t rows = rows_for(kRowCountsAcrossWarps[k], cols);
        if (rows == previous_rows) continue;
        previous_rows = rows;
        for (bool backward : {false, true}) {
          const RowOp op = backward ? RowOp::softmax_backward : RowOp::softmax_forward;
          if (!holds(op, path, cols, DType::f32)) continue;
          Case c;
          c.backward = backward;
          c.log = (k + backward) % 2 == 1;
          c.cols = cols;
          c.rows = rows;
          backward ? run_backward(c, seed) : run_forward(c, seed);
          ++seed;
        }
      }
    }
  }
}

// f16 and bf16 on every path at every length it holds (rows cycling), with mixed dtypes.
TEST(CudaSoftmax, HalfPrecisionAndMixedDtypes) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const DType kDtypes[] = {DType::f32, DType::f16, DType::bf16};
  int i = 0;
  for (RowAlgorithm path : kPaths) {
    const ForcedRowPath forced(path);
    for (DType in : {DType::f16, DType::bf16})
      for (std::int64_t cols : kRowLengths)
        for (bool backward : {false, true}) {
          const RowOp op = backward ? RowOp::softmax_backward : RowOp::softmax_forward;
          if (!holds(op, path, cols, in)) continue;
          Case c;
          c.backward = backward;
          c.log = (i / 2) % 2 == 1;
          c.in = in;
          c.dy = kDtypes[i % 3];
          c.out = kDtypes[(i / 3) % 3];
          c.cols = cols;
          c.rows = rows_for(kRowCountsAcrossWarps[(i + 2) % 4], cols);
          backward ? run_backward(c, 100 + std::uint64_t(i)) : run_forward(c, 100 + std::uint64_t(i));
          ++i;
        }
    // f32 input with a 16-bit output or gradient.
    for (bool backward : {false, true}) {
      Case c;
      c.backward = backward;
      c.cols = 100;
      c.rows = 9;
      c.dy = DType::bf16;
      c.out = DType::f16;
      backward ? run_backward(c, 150) : run_forward(c, 150);
    }
  }
}

// Odd strides and misaligned bases (scalar loads and stores), aligned strides with partial last
// chunks, and in-place calls, on every path.
TEST(CudaSoftmax, StridesMisalignmentAndInPlace) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const std::int64_t kCols[] = {13, 300, 3001, 9000};
  int i = 0;
  for (int p = 0; p < 4; ++p) {
    const ForcedRowPath forced(kPaths[p]);
    for (int variant = 0; variant < 5; ++variant)
      for (bool backward : {false, true}) {
        Case c;
        c.backward = backward;
        c.log = variant % 2 == 0;
        c.cols = kCols[p];
        c.rows = p == 0 ? 33 : 5;
        c.in = variant == 3 ? DType::bf16 : DType::f32;
        c.dy = variant == 3 ? DType::f16 : c.in;
        c.out = c.in;
        switch (variant) {
          case 0: c.in_pad = 3; c.dy_pad = 1; c.out_pad = 5; break;
          case 1: c.offset = 1; break;
          case 2: c.in_pad = c.dy_pad = c.out_pad = 8 - c.cols % 8; break;
          case 3: c.in_pad = 16; c.dy_pad = 8; c.out_pad = 7; c.offset = 1; break;
          case 4: c.in_place = true; c.in_pad = 3; c.out_pad = 2; break;
        }
        backward ? run_backward(c, 200 + std::uint64_t(i)) : run_forward(c, 200 + std::uint64_t(i));
        ++i;
      }
  }
}

// All -inf rows give softmax 0 and log-softmax -inf (never NaN); +inf and NaN make their row NaN;
// logits of +-1e30 and +-3e38 and -inf masks keep their exact answers.
TEST(CudaSoftmax, ExtremeValues) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const std::int64_t kCols[] = {9, 300, 3000, 9000};
  int i = 0;
  for (int p = 0; p < 4; ++p) {
    const ForcedRowPath forced(kPaths[p]);
    for (DType dtype : {DType::f32, DType::bf16, DType::f16})
      for (bool log : {false, true}) {
        Case c;
        c.log = log;
        c.rows = 7;
        c.cols = kCols[p];
        c.in = dtype;
        c.dy = dtype;
        c.out = DType::f32;
        const std::int64_t C = c.cols;
        std::vector<double> x = make_x(c.rows, C, 300 + std::uint64_t(i++));
        auto row = [&](std::int64_t r) { return x.data() + r * C; };
        const double huge = dtype == DType::f32 ? 3e38 : (dtype == DType::bf16 ? 1e38 : 6e4);
        for (std::int64_t k = 0; k < C; ++k) row(0)[k] = -kInf;
        row(1)[C - 1] = kInf;
        row(2)[C / 2] = kNaN;
        for (std::int64_t k = 0; k < C; k += 2) row(3)[k] = k % 4 ? huge : -huge;
        for (std::int64_t k = 0; k < C; ++k) row(4)[k] = dtype == DType::f32 ? (k % 3 ? 1e30 : -1e30) + 1e24 * double(k % 5) : row(4)[k];
        for (std::int64_t k = 1; k < C; k += 2) row(5)[k] = -kInf;
        row(6)[0] = -kInf;
        run_case(c, x, {});
        c.backward = true;
        run_case(c, x, random_values(std::size_t(c.rows * C), -1.0, 1.0, 400 + std::uint64_t(i)));
      }
  }
}

// Few blocks for many rows: every path walks its grid-stride loop over row tiles.
TEST(CudaSoftmax, GridStrideLoops) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const std::int64_t kCols[] = {5, 200, 1500, 1500};
  for (int p = 0; p < 4; ++p)
    for (std::int64_t blocks : {1, 3}) {
      const ForcedRowPath forced(kPaths[p], blocks);
      Case c;
      c.rows = p == 0 ? 257 : 17;
      c.cols = kCols[p];
      c.log = blocks == 3;
      run_forward(c, 500 + std::uint64_t(blocks));
      c.backward = true;
      run_backward(c, 510 + std::uint64_t(blocks));
    }
}

// Vocabulary-sized single rows, which only block_two_pass holds, and rows just past the on-chip
// limits.
TEST(CudaSoftmax, LongRows) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  int i = 0;
  for (std::int64_t cols : {128256, 262144})
    for (DType dtype : {DType::f32, DType::bf16})
      for (bool backward : {false, true}) {
        Case c;
        c.backward = backward;
        c.log = i % 2 == 1;
        c.cols = cols;
        c.in = dtype;
        c.dy = dtype;
        c.out = dtype;
        backward ? run_backward(c, 600 + std::uint64_t(i)) : run_forward(c, 600 + std::uint64_t(i));
        ++i;
      }
  for (bool backward : {false, true}) {
    const RowOp op = backward ? RowOp::softmax_backward : RowOp::softmax_forward;
    Case c;
    c.backward = backward;
    c.rows = 2;
    c.cols = detail::row_algorithm_max_classes(op, RowAlgorithm::block_on_chip, DType::f32) + 1;
    backward ? run_backward(c, 700) : run_forward(c, 700);
  }
}

TEST(CudaSoftmax, DispatchChoice) {
  for (RowOp op : {RowOp::softmax_forward, RowOp::softmax_backward})
    for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
      const auto max = [&](RowAlgorithm a) { return detail::row_algorithm_max_classes(op, a, dtype); };
      EXPECT_LT(max(RowAlgorithm::rows_per_warp), max(RowAlgorithm::warp_per_row));
      EXPECT_LT(max(RowAlgorithm::warp_per_row), max(RowAlgorithm::block_on_chip));
      EXPECT_LT(max(RowAlgorithm::block_on_chip), max(RowAlgorithm::block_two_pass));
      EXPECT_EQ(detail::automatic_row_algorithm(op, 1, dtype), RowAlgorithm::rows_per_warp);
      EXPECT_EQ(detail::automatic_row_algorithm(op, 262144, dtype), RowAlgorithm::block_two_pass);
    }
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  // A forced path that cannot hold the row falls back to the automatic choice.
  const ForcedRowPath forced(RowAlgorithm::rows_per_warp);
  Case c;
  c.rows = 3;
  c.cols = 1000;
  run_forward(c, 800);
  c.backward = true;
  run_backward(c, 801);
}

// Zero rows write nothing and succeed.
TEST(CudaSoftmax, NoRows) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  SoftmaxForwardArgs forward;
  forward.cols = 10;
  EXPECT_TRUE(softmax_forward(forward, SoftmaxOptions{}, cuda_exec()).ok());
  SoftmaxBackwardArgs backward;
  backward.cols = 10;
  EXPECT_TRUE(softmax_backward(backward, SoftmaxOptions{true}, cuda_exec()).ok());
}

}  // namespace
}  // namespace actloss::test
