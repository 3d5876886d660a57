// Softmax and log-softmax cases, forward and backward: every dispatch path at row lengths that
// cross its limits and at its limits, row counts across warps, f32, f16, bf16 and mixed dtypes
// (dy's apart from y's), odd strides, misaligned bases and in place, grid-stride loops over row
// tiles and vocabulary-sized rows, over random and adversarial inputs: outliers and -inf masks,
// rows of every float binade, rows far below zero, a confident row under large upstream
// gradients, and float -> 16-bit rounding ties.
//
// Error bounds (validation/tolerance.h), per row with m the max of x, t_c = x_c - m and
// s = 1 + rest = sum_c exp(t_c) (the first max's own term kept apart), in units of u = kU: a
// float rounding is at most u relative; exp2f and expf are good to 2 ulp (4u), log1pf to 1 ulp
// (2u), and below float's normal range their ulp are absolute (2 ulp = 2^-148).
//  * rest (cuda/row_common.cuh): each term from exp_shifted_accurate, ex2's 2 ulp and the
//    rounding of its correction: 5u, or the whole term where it is below float's normal range
//    (flushed to 0); eight terms summed in float: u of every partial sum; and a
//    chunk that raises a thread's max, or a merge of two threads whose maxima differ, rescales
//    the smaller side's 1 + rest by an exponential of the same 5u. How much is rescaled, and how
//    often, depends on the order of the row's elements, so the bound replays the kernel's order
//    on the row in double (which thread takes which chunk, the butterfly within a warp, then the
//    warps in turn) and adds those errors up: a bound of 2^-21 rest alone would not hold for a
//    row whose max keeps rising. A rounded x - m (x and m far apart in magnitude) moves a term
//    by u |t| relatively, summed over the maxima it is rescaled through, whose differences add up
//    to t: u sum_c exp(t_c) |t_c|. The double sums: 2^-52 s per element, far below. (On the
//    random rows the replay gives err(rest) up to 34u s, where 2^-21 rest would be 8u.)
//  * softmax p_c = exp2f(fl(fl(x_c - m) kLog2e)) * fl(1 / fl(1 + fl(rest))): exp2f 4u, the
//    difference, the product by log2 e and kLog2e's own rounding (0.23u) move the exponent by
//    2.25u |t_c|; err(rest) / s, and the roundings of rest, of 1 + rest, of 1 / s and of the
//    product: p_c (7u + (err(rest) + u rest) / s + 2.25u |t_c|). Where exp2f's result is
//    subnormal its 2 ulp, and the product's rounding, are absolute: 2^-147.
//  * log-softmax y_c = fl(x_c - m) - log1pf(fl(rest)): u |t_c|, err(log s) = (err(rest) +
//    u rest) / s + 2u log s, and the subtraction's rounding, u |y_c|. A rest below float's
//    normal range is rounded, and log1pf's ulp taken, absolutely: 2^-150 / s + 2^-148.
//  * softmax backward dx_c = y_c (dy_c - dot), dot = sum_j y_j dy_j in double (every product of
//    two floats exact), D additions on an element's way (its thread's elements, the butterfly,
//    the warps in turn): D 2^-53 sum_j |y_j dy_j|; dot kept as hi + lo floats: lo's rounding
//    and the first float difference dy_c - hi lose 2^-48 |dot| each; the second difference and
//    the product round relative to dx: 3u |dx_c| + |y_c| (D 2^-53 sum_j |y_j dy_j| +
//    2^-47 |dot|). Below float's normal range hi and lo are absolute: 2^-149 |y_c|. A dot
//    beyond 2^100 is done in double, within the same bound.
//  * log-softmax backward dx_c = dy_c - exp(y_c) sum_j dy_j (the sum in double, as above): expf
//    4u (2^-148 absolute) of exp(y_c) |sum|, exp(y_c) (D 2^-53 sum_j |dy_j| + 2^-46 |sum|) for
//    the sum and lo, and the fma and the subtraction: 2u |dx_c|.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "host/backend.h"
#include "validation/paths.h"
#include "validation/tensors.h"
#include "validation/tolerance.h"

namespace actloss::validation {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// The "extreme" input's kinds of row, one per row in turn: a call holds every kind from this many
// rows on.
constexpr std::int64_t kExtremeRowKinds = 9;
constexpr std::int64_t kChunk = detail::row_limits::kChunk;

struct Spec {
  Device device = Device::cpu;
  bool log = false;
  Pass pass = Pass::forward;  // forward or backward
  DType in = DType::f32;      // forward: x; backward: y
  DType dy = DType::f32;      // backward only
  DType out = DType::f32;     // forward: y; backward: dx (in place: the partner's dtype)
  std::int64_t rows = 1, cols = 1;
  std::int64_t in_pad = 0, dy_pad = 0, out_pad = 0;  // row stride = cols + pad
  std::int64_t offset = 0;  // elements from a 256-byte boundary to every tensor's start
  bool in_place = false;    // forward: y over x; backward: dx over dy
  std::string kind = "random";
  RowAlgorithm path = RowAlgorithm::automatic;
  std::int64_t grid_limit = 0;
};

bool is_backward(const Spec& s) { return s.pass == Pass::backward; }
RowOp op_of(const Spec& s) {
  return is_backward(s) ? RowOp::softmax_backward : RowOp::softmax_forward;
}
DType out_dtype(const Spec& s) { return s.in_place ? (is_backward(s) ? s.dy : s.in) : s.out; }

std::string dtypes_text(const Spec& s) {
  if (!is_backward(s) || s.in == s.dy) return dtype_text(s.in, out_dtype(s));
  return std::string(actloss::to_string(s.in)) + "/" + actloss::to_string(s.dy) + "->" +
         actloss::to_string(out_dtype(s));
}

std::string shape_text(const Spec& s) {
  std::string text = std::to_string(s.rows) + "x" + std::to_string(s.cols);
  if (s.in_pad || s.dy_pad || (s.out_pad && !s.in_place)) {
    // Appended piece by piece: "/" + std::to_string(...) trips g++ 12's -Wrestrict at -O3.
    text += " stride+";
    text += std::to_string(s.in_pad);
    if (is_backward(s)) (text += '/') += std::to_string(s.dy_pad);
    if (!s.in_place) (text += '/') += std::to_string(s.out_pad);
  }
  if (s.offset) text += " offset " + std::to_string(s.offset);
  if (s.in_place) text += " in place";
  return text;
}

struct Inputs {
  std::vector<double> x;   // the forward input as the device holds it (backward: y's source)
  std::vector<double> y;   // backward: the forward output of x as the device holds it
  std::vector<double> dy;  // backward, as the device holds it
};

// Magnitudes each dtype holds: f16 ends at 65504.
double big_for(DType dtype) { return dtype == DType::f16 ? 6.0e4 : 1.0e30; }
double huge_for(DType dtype) {
  return dtype == DType::f32 ? 3e38 : (dtype == DType::bf16 ? 1e38 : 6e4);
}

// Rows r % 3 != 0 of a swept tensor without NaN or infinities (to `nan` and +-largest; x keeps
// its -inf masks), so that their finite values are checked rather than a NaN row; rows r % 3
// == 0 keep everything.
void tame(std::vector<double>& values, std::int64_t cols, DType dtype, double nan,
          bool keep_negative_infinity) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if ((static_cast<std::int64_t>(i) / cols) % 3 == 0) continue;
    double& v = values[i];
    if (std::isnan(v)) v = nan;
    else if (v == kInf) v = largest_finite(dtype);
    else if (v == -kInf && !keep_negative_infinity) v = -largest_finite(dtype);
  }
}

Inputs make_inputs(const Spec& s) {
  const std::int64_t rows = s.rows, cols = s.cols;
  const auto n = static_cast<std::size_t>(rows * cols);
  const std::uint64_t seed = seed_of(std::string(s.log ? "log_softmax " : "softmax ") +
                                     to_string(s.pass) + " " + s.kind + " " + shape_text(s) +
                                     " " + dtypes_text(s));
  const std::vector<double> u = uniform(static_cast<std::size_t>(rows), 0.0, 1.0, seed + 1);
  Inputs in;
  std::vector<double>& x = in.x;
  x = uniform(n, -4.0, 4.0, seed);
  auto at = [&](std::int64_t r, std::int64_t c) -> double& {
    return x[static_cast<std::size_t>(r * cols + c)];
  };
  auto column = [&](std::int64_t r) {
    return std::min(cols - 1, static_cast<std::int64_t>(u[std::size_t(r)] * double(cols)));
  };
  if (s.kind == "random" || s.kind == "outliers" || s.kind == "masked" || s.kind == "extreme") {
    // Outliers at -25 (probabilities near float's smallest normals after the shift) and a
    // dominant entry in every other row (probabilities near 1).
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = (r * 3) % 11; c < cols; c += 11) at(r, c) = -25.0;
      if (r % 2 == 0) at(r, (r * 7) % cols) = 14.0;
    }
  }
  if (s.kind == "outliers") {
    // One huge logit per row, of either sign.
    for (std::int64_t r = 0; r < rows; ++r)
      at(r, column(r)) = r % 2 == 0 ? big_for(s.in) : -big_for(s.in);
  } else if (s.kind == "masked") {
    // -inf masks over 30% of the classes, and an all -inf row (0s and -infs, never NaN).
    const std::vector<double> mask = uniform(n, 0.0, 1.0, seed + 2);
    for (std::size_t i = 0; i < n; ++i)
      if (mask[i] < 0.3) x[i] = -kInf;
    for (std::int64_t c = 0; c < cols; ++c) at(0, c) = -kInf;
  } else if (s.kind == "extreme") {
    // Rows with exact answers: all -inf (0s, -infs), a +inf, a NaN, and a NaN among -infs (the
    // row NaN), huge logits of both signs, +-1e30 with small offsets, -inf masks over half the
    // row or one class; and one class 100 above the rest, whose rest is below float's normal
    // range (the top's log-probability about -3.7e-44 C).
    const double huge = huge_for(s.in);
    for (std::int64_t r = 0; r < rows; ++r) {
      switch (r % kExtremeRowKinds) {
        case 0: for (std::int64_t c = 0; c < cols; ++c) at(r, c) = -kInf; break;
        case 1: at(r, cols - 1) = kInf; break;
        case 2: at(r, cols / 2) = kNaN; break;
        case 3: for (std::int64_t c = 0; c < cols; c += 2) at(r, c) = c % 4 ? huge : -huge; break;
        case 4:
          for (std::int64_t c = 0; c < cols; ++c)
            at(r, c) = s.in == DType::f16 ? (c % 3 ? 6e4 : -6e4) - 32.0 * double(c % 5)
                                          : (c % 3 ? 1e30 : -1e30) + 1e24 * double(c % 5);
          break;
        case 5: for (std::int64_t c = 1; c < cols; c += 2) at(r, c) = -kInf; break;
        case 6: at(r, 0) = -kInf; break;
        case 7:
          for (std::int64_t c = 0; c < cols; ++c) at(r, c) = c == column(r) ? 0.0 : -100.0;
          break;
        case 8:  // all -inf but a NaN: the row is NaN, not a row without mass
          for (std::int64_t c = 0; c < cols; ++c) at(r, c) = -kInf;
          at(r, cols / 3) = kNaN;
          break;
      }
    }
  } else if (s.kind == "far below zero") {
    // Rows whose max is far below 0, so that a max started at 0 instead of -inf shows: all near
    // -1e4; one class at -1e30 and the rest -inf; everything around -1e30.
    const double low = -big_for(s.in);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) {
        double& v = at(r, c);
        switch (r % 3) {
          case 0: v = -1e4 + 8.0 * u[std::size_t(r)] * double(c % 7) / 7.0; break;
          case 1: v = c == column(r) ? low : -kInf; break;
          case 2: v = low * (s.in == DType::f16 ? 0.5 : 1.0) * (1.0 + 0.25 * double(c % 3)); break;
        }
      }
  } else if (s.kind == "sweep") {
    // Every float binade, +-0, +-inf, NaN, +-FLT_MAX and +-3e38, as the dtype holds them.
    x = quantize(sweep_values(n, seed + 3), s.in);
    tame(x, cols, s.in, -kInf, true);
  } else if (s.kind == "confident") {
    // All the mass on the last class, 30 above the others: rest = 1.6e-8 over 262143 classes.
    // Last, so that the reference's own dot sum adds the large term once, at the end.
    x = uniform(n, -1.0, 0.0, seed + 3);
    for (std::int64_t r = 0; r < rows; ++r) at(r, cols - 1) = 30.0;
  } else if (s.kind == "ties") {
    // Every y is -inf (exp(y) = 0): log-softmax backward passes dy through, rounded to dx.
    std::fill(x.begin(), x.end(), -kInf);
  }
  x = quantize(x, s.in);
  if (!is_backward(s)) return in;

  in.y = quantize(ref::softmax_forward(rows, cols, x, s.log), s.in);
  if (s.kind == "sweep") {
    in.dy = quantize(sweep_values(n, seed + 4), s.dy);
    tame(in.dy, cols, s.dy, 0.0, false);
  } else if (s.kind == "confident") {
    in.dy = uniform(n, 1e3 - 1.0, 1e3 + 1.0, seed + 4);
  } else if (s.kind == "ties") {
    const std::vector<double> ties = rounding_ties(out_dtype(s));
    in.dy.resize(n);
    for (std::size_t i = 0; i < n; ++i) in.dy[i] = ties[i % ties.size()];
  } else {
    in.dy = uniform(n, -1.0, 1.0, seed + 4);
  }
  in.dy = quantize(in.dy, s.dy);
  return in;
}

// ---- error bounds ---------------------------------------------------------------------------

// The threads that share a row on the path that runs (to be called with the path forced), and
// the blocks of the cluster they span (cluster_shared): the launch plan of cuda/row_common.cuh,
// which the bounds' replay of the reductions follows. On the CPU the reference runs, and any
// shape's bound holds.
struct RowGeometry {
  int threads = 1;
  int blocks = 1;
};

RowGeometry row_geometry([[maybe_unused]] Device device, [[maybe_unused]] RowOp op,
                         [[maybe_unused]] std::int64_t rows, [[maybe_unused]] std::int64_t cols,
                         [[maybe_unused]] DType dtype) {
  RowGeometry geometry;
#if ACTLOSS_BENCH_CUDA
  if (device == Device::cuda &&
      !detail::cuda_row_geometry_for_testing(op, rows, cols, dtype, &geometry.threads,
                                             &geometry.blocks)
           .ok())
    geometry = RowGeometry{};
#endif
  return geometry;
}

// What the kernel holds for part of a row, replayed in double: the max, s = 1 + rest in units
// of exp(max), and a bound on the error of the kernel's float terms and rescalings of s.
struct Partial {
  double m = -kInf;
  double s = 0;  // 0: nothing but -inf seen
  double err = 0;
};

// A term or rescaling factor from exp_shifted_accurate: 2 ulp of ex2 and the rounding of the
// correction (5u); below float's normal range the term is flushed to 0, its whole value.
double exp_error(double value) { return value < 0x1p-126 ? value : 5 * kU * value; }

// merge_max_rest: the side with the smaller max is rescaled (exp(0) = 1 and exp(-inf) = 0 are
// exact).
Partial merge(const Partial& a, const Partial& b) {
  if (a.m == b.m) return {a.m, a.s + b.s, a.err + b.err};
  const Partial& first = a.m > b.m ? a : b;
  const Partial& second = a.m > b.m ? b : a;
  if (second.m == -kInf) return first;
  const double e = std::exp(second.m - first.m);
  return {first.m, first.s + second.s * e, first.err + second.err * e + exp_error(e) * second.s};
}

// add_chunk_max_rest: kChunk elements (-inf past the row).
void add_chunk(Partial& p, const double (&x)[kChunk]) {
  double top = x[0];
  for (double v : x) top = std::max(top, v);
  const bool raises = top > p.m;
  const double m = raises ? top : p.m;
  double sum = 0, err = 0;
  bool skipped = !raises;  // a chunk that raises the max brings its first maximum as the new 1
  for (double v : x) {
    const bool skip = !skipped && v == top;
    skipped = skipped || skip;
    if (skip || v == -kInf) continue;
    const double term = std::exp(v - m);
    err += exp_error(term);
    if (sum > 0) {
      sum += term;
      err += kU * sum;  // the float addition
    } else {
      sum = term;
    }
  }
  if (!raises) {
    p.s += sum;
    p.err += err;
  } else if (p.m == -kInf) {
    p = {m, 1 + sum, err};
  } else {
    const double e = std::exp(p.m - m);
    p = {m, 1 + p.s * e + sum, p.err * e + exp_error(e) * p.s + err};
  }
}

// The row's (max, s) in the kernel's order: thread `rank` of `threads` takes chunks rank,
// rank + threads, ...; the butterfly over min(threads, 32) lanes; then the warps of each block
// in turn; then the blocks of a cluster in turn.
Partial replay(const double* x, std::int64_t cols, RowGeometry geometry) {
  const int threads = geometry.threads;
  const std::int64_t chunks = (cols + kChunk - 1) / kChunk;
  std::vector<Partial> lanes(static_cast<std::size_t>(threads));
  double chunk[kChunk];
  for (int rank = 0; rank < threads; ++rank)
    for (std::int64_t c = rank; c < chunks; c += threads) {
      for (std::int64_t j = 0; j < kChunk; ++j)
        chunk[j] = c * kChunk + j < cols ? x[c * kChunk + j] : -kInf;
      add_chunk(lanes[std::size_t(rank)], chunk);
    }
  const int width = std::min(threads, 32);
  for (int offset = width / 2; offset > 0; offset /= 2) {
    std::vector<Partial> next(lanes.size());
    for (std::size_t l = 0; l < lanes.size(); ++l)
      next[l] = merge(lanes[l], lanes[l ^ std::size_t(offset)]);
    lanes.swap(next);
  }
  if (threads <= 32) return lanes[0];
  const int block_threads = threads / geometry.blocks;
  Partial row;
  for (int b = 0; b < geometry.blocks; ++b) {
    Partial block;
    for (int w = 0; w < block_threads / 32; ++w)
      block = merge(block, lanes[std::size_t(b * block_threads + w * 32)]);
    row = merge(row, block);
  }
  return row;
}

std::vector<double> forward_bounds(const Spec& s, const std::vector<double>& x,
                                   const std::vector<double>& y, RowGeometry geometry) {
  const std::int64_t cols = s.cols;
  std::vector<double> err(x.size(), 0.0);
  for (std::int64_t r = 0; r < s.rows; ++r) {
    const double* row = x.data() + r * cols;
    // A NaN or +inf makes the row NaN; every element -inf gives exact 0s or -infs.
    if (std::any_of(row, row + cols, [](double v) { return std::isnan(v) || v == kInf; })) continue;
    const Partial p = replay(row, cols, geometry);
    if (p.m == -kInf) continue;
    double shifts = 0;  // sum_c exp(t_c) |t_c|
    for (std::int64_t c = 0; c < cols; ++c) {
      const double t = row[c] - p.m;
      if (t < 0 && t > -kInf) shifts += std::exp(t) * -t;
    }
    const double rest = p.s - 1;
    const double rest_error = p.err + kU * shifts + double(cols) * 0x1p-52 * p.s;
    const double s_error = (rest_error + kU * rest + 0x1p-150) / p.s;
    const double log_s = std::log1p(rest);
    for (std::int64_t c = 0; c < cols; ++c) {
      const auto i = std::size_t(r * cols + c);
      const double t = row[c] - p.m;
      if (!std::isfinite(y[i]) || t == -kInf) continue;
      err[i] = s.log ? kU * -t + s_error + 2 * kU * log_s + 0x1p-148 + kU * std::fabs(y[i])
                     : y[i] * (7 * kU + s_error + 2.25 * kU * -t) + 0x1p-147;
    }
  }
  return err;
}

std::vector<double> backward_bounds(const Spec& s, const std::vector<double>& y,
                                    const std::vector<double>& dy, const std::vector<double>& dx,
                                    int threads) {
  const std::int64_t cols = s.cols;
  const std::int64_t chunks = (cols + kChunk - 1) / kChunk;
  int levels = 0;
  for (int lanes = std::min(threads, 32); lanes > 1; lanes /= 2) ++levels;
  // Additions on an element's way into the double sum: its thread's elements, the butterfly,
  // the warps in turn.
  const double additions = double(kChunk * ((chunks + threads - 1) / threads) + levels +
                                  (threads > 32 ? threads / 32 : 0));
  std::vector<double> err(y.size(), 0.0);
  for (std::int64_t r = 0; r < s.rows; ++r) {
    double dot = 0, magnitude = 0;  // softmax: sum y dy, sum |y dy|; log-softmax: sum dy, sum |dy|
    for (std::int64_t c = 0; c < cols; ++c) {
      const auto i = std::size_t(r * cols + c);
      const double term = s.log ? dy[i] : y[i] * dy[i];
      dot += term;
      magnitude += std::fabs(term);
    }
    if (!std::isfinite(dot) || !std::isfinite(magnitude)) continue;  // a NaN or infinite row
    const double sum_error = additions * 0x1p-53 * magnitude;
    for (std::int64_t c = 0; c < cols; ++c) {
      const auto i = std::size_t(r * cols + c);
      if (!std::isfinite(dx[i])) continue;
      if (s.log) {
        const double e = std::exp(y[i]);
        err[i] = 2 * kU * std::fabs(dx[i]) + (4 * kU * e + 0x1p-148) * std::fabs(dot) +
                 e * (sum_error + 0x1p-46 * std::fabs(dot)) + (1 + e) * 0x1p-150;
      } else {
        err[i] = 3 * kU * std::fabs(dx[i]) +
                 std::fabs(y[i]) * (sum_error + 0x1p-47 * std::fabs(dot) + 0x1p-149) + 0x1p-150;
      }
    }
  }
  return err;
}

// ---- running a case -------------------------------------------------------------------------

Outcome run(const Spec& s) {
  const Device device = s.device;
  const bool backward = is_backward(s);
  const DType out = out_dtype(s);
  const std::int64_t rows = s.rows, cols = s.cols;
  const Inputs in = make_inputs(s);

  const std::int64_t in_stride = cols + s.in_pad, dy_stride = cols + s.dy_pad;
  const std::int64_t out_stride =
      s.in_place ? (backward ? dy_stride : in_stride) : cols + s.out_pad;
  const std::vector<double>& in_values = backward ? in.y : in.x;
  const Tensor input = Tensor::upload(device, in_values, rows, cols, s.in, in_stride, s.offset);
  const Tensor dy =
      backward ? Tensor::upload(device, in.dy, rows, cols, s.dy, dy_stride, s.offset) : Tensor();
  const Tensor separate =
      s.in_place ? Tensor() : Tensor::poisoned(device, rows, cols, s.out, out_stride, s.offset);
  const Tensor& output = s.in_place ? (backward ? dy : input) : separate;

  SoftmaxOptions options;
  options.log = s.log;
  Outcome outcome;
  RowGeometry geometry;
  {
    const RowPathScope scope(s.path, s.grid_limit);
    geometry = row_geometry(device, op_of(s), rows, cols, s.in);
    const Exec exec = exec_for(device);
    Status status;
    if (!backward) {
      SoftmaxForwardArgs args;
      args.rows = rows;
      args.cols = cols;
      args.x = input.data();
      args.x_dtype = s.in;
      args.x_row_stride = in_stride;
      args.y = output.data();
      args.y_dtype = out;
      args.y_row_stride = out_stride;
      status = softmax_forward(args, options, exec);
    } else {
      SoftmaxBackwardArgs args;
      args.rows = rows;
      args.cols = cols;
      args.y = input.data();
      args.y_dtype = s.in;
      args.y_row_stride = in_stride;
      args.dy = dy.data();
      args.dy_dtype = s.dy;
      args.dy_row_stride = dy_stride;
      args.dx = output.data();
      args.dx_dtype = out;
      args.dx_row_stride = out_stride;
      status = softmax_backward(args, options, exec);
    }
    outcome.error = finish(exec, status);
  }
  if (!outcome.error.empty()) return outcome;

  const std::string name = backward ? "dx" : "y";
  const std::vector<double> expected = backward
                                           ? ref::softmax_backward(rows, cols, in.y, in.dy, s.log)
                                           : ref::softmax_forward(rows, cols, in.x, s.log);
  const std::vector<double> got = output.download();
  if (s.kind == "ties") {
    // dx = dy exactly: the float -> 16-bit store must round to nearest even.
    outcome.checks.push_back(compare_exact(name, got, expected, out));
  } else {
    const std::vector<double> err =
        backward ? backward_bounds(s, in.y, in.dy, expected, geometry.threads)
                 : forward_bounds(s, in.x, expected, geometry);
    outcome.checks.push_back(compare(name, got, expected, out, err));
  }
  outcome.checks.push_back(
      verdict(name + " padding", output.padding_intact(), "bytes between rows were written"));
  // The inputs (but for the in-place partner) were read, never written.
  const char* input_name = backward ? "y" : "x";
  if (backward || !s.in_place) {
    outcome.checks.push_back(compare_exact(input_name, input.download(), in_values, s.in));
    outcome.checks.push_back(verdict(std::string(input_name) + " padding", input.padding_intact(),
                                     "bytes between rows were written"));
  }
  if (backward && !s.in_place) {
    outcome.checks.push_back(compare_exact("dy", dy.download(), in.dy, s.dy));
    outcome.checks.push_back(
        verdict("dy padding", dy.padding_intact(), "bytes between rows were written"));
  }
  return outcome;
}

// ---- the cases ------------------------------------------------------------------------------

bool holds(RowOp op, RowAlgorithm path, std::int64_t cols, DType dtype) {
  return cols <= detail::row_algorithm_max_classes(op, path, dtype);
}
RowOp op_of(Pass pass) {
  return pass == Pass::backward ? RowOp::softmax_backward : RowOp::softmax_forward;
}

class Builder {
 public:
  Builder(Device device, std::vector<Case>& cases) : device_(device), cases_(cases) {}

  void add(Spec s) {
    s.device = device_;
    // The backward pass has no cluster path: forced, it would run (and repeat) the automatic
    // choice's case.
    if (s.path == RowAlgorithm::cluster_shared && s.pass == Pass::backward) return;
    if (device_ == Device::cpu) {
      s.path = RowAlgorithm::automatic;
      s.grid_limit = 0;
    }
    Case c;
    c.device = device_;
    c.op = s.log ? "log_softmax" : "softmax";
    c.pass = to_string(s.pass);
    c.dtypes = dtypes_text(s);
    c.shape = shape_text(s);
    c.inputs = s.kind;
    c.path = row_path_name(device_, op_of(s), s.cols, s.in, s.path, s.grid_limit);
    c.run = [s] { return run(s); };
    cases_.push_back(std::move(c));
  }

 private:
  Device device_;
  std::vector<Case>& cases_;
};

constexpr Pass kSoftmaxPasses[] = {Pass::forward, Pass::backward};

// The accumulator case: a row of 262144 classes (Gemma's vocabulary) with its mass on one
// class, under dy = 1e3 +- 1. dot = sum y dy is 1e3, of which the other classes bring 1.6e-5;
// every dx is a small difference under it: the confident class's y (dy_c - dot) is -1.6e-5 (its
// y is 1 in float), the others' y_j (dy_j - dot) about 1e-13. The allowances' dot term is
// |y_c| (D 2^-53 + 2^-47) 1e3 = 7e-11 |y_c| (D = 533 on block_two_pass). A dot summed in float
// loses the 1.6e-5 of the other classes and half an ulp of 1e3 (3e-5), and so does the float hi
// without lo: that FAILS, at 2e5 times the allowance (worked out on these inputs), while the
// kernel's double dot passes. The reference's own dot adds the 1e3 once, last (the confident
// class is the last column): off by 6e-14, under 0.1% of the allowance. Forward: the top's
// log-probability -log1p(rest) = -1.6e-8 must keep its relative accuracy (log(1 + rest) in
// float would give 0).
void add_confident(Builder& b) {
  for (const auto& [log, pass] : {std::pair{false, Pass::backward}, std::pair{false, Pass::forward},
                                  std::pair{true, Pass::forward}}) {
    Spec s;
    s.kind = "confident";
    s.log = log;
    s.pass = pass;
    s.cols = 262144;
    b.add(s);
  }
}

// float -> f16 / bf16 rounding ties through log-softmax backward with y = -inf (dx = dy).
void add_ties(Builder& b, RowAlgorithm path, DType out, std::int64_t offset) {
  Spec s;
  s.kind = "ties";
  s.log = true;
  s.pass = Pass::backward;
  s.out = out;
  s.path = path;
  s.offset = offset;
  // Rows of whole 16-byte vectors (aligned, every store but a misaligned base's is one):
  // rows_per_warp 104 per row, the other paths 400 (f16: 336 ties, bf16: 2088, then the first
  // again).
  s.cols = path == RowAlgorithm::rows_per_warp ? 104 : 400;
  const auto count = static_cast<std::int64_t>(rounding_ties(out).size());
  s.rows = (count + s.cols - 1) / s.cols;
  b.add(s);
}

void cuda_full(Builder& b) {
  // Every path with every row length it holds and every row count (fewer rows for the longest),
  // f32, forward and backward; softmax and log-softmax alternate with the row count, so that
  // each length meets both in both directions.
  for (RowAlgorithm path : kRowPaths)
    for (std::int64_t cols : kRowLengths) {
      std::int64_t previous_rows = 0;
      for (int k = 0; k < 4; ++k) {
        const std::int64_t rows = rows_for(kRowCounts[k], cols);
        if (rows == previous_rows) continue;
        previous_rows = rows;
        for (Pass pass : kSoftmaxPasses) {
          if (!holds(op_of(pass), path, cols, DType::f32)) continue;
          Spec s;
          s.path = path;
          s.pass = pass;
          s.log = (k + (pass == Pass::backward)) % 2 == 1;
          s.cols = cols;
          s.rows = rows;
          b.add(s);
        }
      }
    }
  // Each path at its limit, for every pass and element size (softmax backward holds less).
  for (RowAlgorithm path : {RowAlgorithm::rows_per_warp, RowAlgorithm::warp_per_row,
                            RowAlgorithm::block_on_chip})
    for (Pass pass : kSoftmaxPasses)
      for (DType dtype : {DType::f32, DType::bf16}) {
        Spec s;
        s.path = path;
        s.pass = pass;
        s.log = dtype == DType::bf16;
        s.in = s.dy = s.out = dtype;
        s.cols = detail::row_algorithm_max_classes(op_of(pass), path, dtype);
        s.rows = 3;
        b.add(s);
      }
  // f16 and bf16 on every path at every length it holds, with mixed dtypes (dy and the output
  // cycling through all three); f32 input with 16-bit dy and output.
  int i = 0;
  for (RowAlgorithm path : kRowPaths) {
    for (DType in : {DType::f16, DType::bf16})
      for (std::int64_t cols : kRowLengths)
        for (Pass pass : kSoftmaxPasses) {
          if (!holds(op_of(pass), path, cols, in)) continue;
          Spec s;
          s.path = path;
          s.pass = pass;
          s.log = (i / 2) % 2 == 1;
          s.in = in;
          s.dy = kDtypes[i % 3];
          s.out = kDtypes[(i / 3) % 3];
          s.cols = cols;
          s.rows = rows_for(kRowCounts[(i + 2) % 4], cols);
          b.add(s);
          ++i;
        }
    for (Pass pass : kSoftmaxPasses) {
      Spec s;
      s.path = path;
      s.pass = pass;
      s.log = path == RowAlgorithm::warp_per_row || path == RowAlgorithm::block_two_pass;
      s.cols = 100;
      s.rows = 9;
      s.dy = DType::bf16;
      s.out = DType::f16;
      b.add(s);
    }
  }
  // Odd strides and misaligned bases (scalar loads and stores), aligned strides with partial
  // last chunks, in place, on every path.
  const std::int64_t kStrideCols[] = {13, 300, 3001, 9000, 9000, 9000};
  static_assert(std::size(kStrideCols) == kRowPathCount);
  for (int p = 0; p < kRowPathCount; ++p)
    for (int variant = 0; variant < 6; ++variant)
      for (Pass pass : kSoftmaxPasses) {
        Spec s;
        s.path = kRowPaths[p];
        s.pass = pass;
        s.log = variant % 2 == 0;
        s.cols = kStrideCols[p];
        s.rows = p == 0 ? 33 : 5;
        s.in = variant == 3 || variant == 5 ? DType::bf16 : DType::f32;
        s.dy = variant == 3 ? DType::f16 : s.in;
        s.out = s.in;
        switch (variant) {
          case 0: s.in_pad = 3; s.dy_pad = 1; s.out_pad = 5; break;  // odd strides
          case 1: s.offset = 1; break;                                // misaligned
          case 2: s.in_pad = s.dy_pad = s.out_pad = 8 - s.cols % 8; break;  // partial chunks
          case 3: s.in_pad = 16; s.dy_pad = 8; s.out_pad = 7; s.offset = 1; break;
          case 4: s.in_place = true; s.in_pad = 3; s.dy_pad = 2; break;
          case 5: s.in_place = true; s.offset = 1; break;
        }
        b.add(s);
      }
  // Adversarial values on every path and dtype, softmax and log-softmax, forward and backward:
  // rows with exact answers (all -inf, +inf, NaN, huge, masked); outliers; -inf masks; every
  // float binade; rows far below zero.
  const std::int64_t kExtremeCols[] = {9, 300, 3000, 9000, 9000, 9000};
  static_assert(std::size(kExtremeCols) == kRowPathCount);
  for (int p = 0; p < kRowPathCount; ++p)
    for (DType dtype : kDtypes)
      for (bool log : {false, true})
        for (Pass pass : kSoftmaxPasses) {
          Spec s;
          s.path = kRowPaths[p];
          s.kind = "extreme";
          s.pass = pass;
          s.log = log;
          s.rows = kExtremeRowKinds;
          s.cols = kExtremeCols[p];
          s.in = s.dy = dtype;
          s.out = DType::f32;
          b.add(s);
        }
  const std::int64_t kKindCols[] = {7, 300, 2100, 5000, 5000, 5000};
  static_assert(std::size(kKindCols) == kRowPathCount);
  for (int p = 0; p < kRowPathCount; ++p)
    for (DType dtype : kDtypes)
      for (const char* kind : {"sweep", "far below zero", "outliers", "masked"})
        for (bool log : {false, true})
          for (Pass pass : kSoftmaxPasses) {
            const std::string k = kind;
            // Outliers and masks (the old tool's kinds) alternate the two ops.
            if ((k == "outliers" || k == "masked") && log != (pass == Pass::backward)) continue;
            Spec s;
            s.path = kRowPaths[p];
            s.kind = k;
            s.pass = pass;
            s.log = log;
            s.rows = p == 0 ? 33 : 6;
            s.cols = kKindCols[p];
            s.in = s.dy = s.out = dtype;
            b.add(s);
          }
  // The accumulator, and the rounding ties on every path, aligned and misaligned.
  add_confident(b);
  for (RowAlgorithm path : kRowPaths)
    for (DType out : {DType::f16, DType::bf16})
      for (std::int64_t offset : {0, 1}) add_ties(b, path, out, offset);
  // Few blocks for many rows: every path walks its grid-stride loop over row tiles.
  const std::int64_t kGridCols[] = {5, 200, 1500, 1500, 1500, 1500};
  static_assert(std::size(kGridCols) == kRowPathCount);
  for (int p = 0; p < kRowPathCount; ++p)
    for (std::int64_t blocks : {1, 3})
      for (Pass pass : kSoftmaxPasses) {
        Spec s;
        s.path = kRowPaths[p];
        s.grid_limit = blocks;
        s.pass = pass;
        s.log = blocks == 3;
        s.rows = p == 0 ? 257 : 17;
        s.cols = kGridCols[p];
        b.add(s);
      }
  // Vocabulary-sized rows (Llama 3's 128256, Gemma's 262144), which only block_two_pass holds,
  // rows just past the on-chip limit, and a forced path too short for the row (the automatic
  // choice runs).
  int k = 0;
  for (std::int64_t cols : {128256, 262144})
    for (DType dtype : {DType::f32, DType::bf16})
      for (Pass pass : kSoftmaxPasses) {
        Spec s;
        s.pass = pass;
        s.log = k++ % 2 == 1;
        s.cols = cols;
        s.in = s.dy = s.out = dtype;
        b.add(s);
      }
  for (Pass pass : kSoftmaxPasses) {
    Spec s;
    s.pass = pass;
    s.rows = 2;
    s.cols = detail::row_algorithm_max_classes(op_of(pass), RowAlgorithm::block_on_chip,
                                               DType::f32) + 1;
    b.add(s);
    Spec fallback;
    fallback.path = RowAlgorithm::rows_per_warp;
    fallback.pass = pass;
    fallback.log = true;
    fallback.rows = 3;
    fallback.cols = 1000;
    b.add(fallback);
  }
}

// The CPU path (and the kernels' quick and smoke checks): every op, pass, dtype and input kind
// once, the paths in rotation, with mixed dtypes, strides, misaligned bases and in place.
void every_kind(Builder& b, Device device, Depth depth) {
  const std::vector<RowShape> shapes = row_shape_per_path(device, depth);
  const std::vector<std::string> kinds = row_input_kinds(depth);
  const bool every_shape = device == Device::cpu && depth == Depth::full;
  int i = 0;
  for (bool log : {false, true})
    for (Pass pass : kSoftmaxPasses)
      for (DType dtype : kDtypes)
        for (const std::string& kind : kinds) {
          const std::size_t first = every_shape ? 0 : std::size_t(i) % shapes.size();
          const std::size_t last = every_shape ? shapes.size() : first + 1;
          for (std::size_t k = first; k < last; ++k) {
            Spec s;
            s.path = shapes[k].path;
            s.rows = std::max<std::int64_t>(shapes[k].rows,
                                            kind == "extreme" ? kExtremeRowKinds : 1);
            s.cols = shapes[k].cols;
            s.kind = kind;
            s.log = log;
            s.pass = pass;
            s.in = dtype;
            s.dy = kDtypes[(i + 1) % 3];
            s.out = kDtypes[(i + 2) % 3];
            b.add(s);
          }
          ++i;
        }
  if (depth == Depth::smoke) return;
  // Strides, a misaligned base and in place, each op and pass.
  for (int variant = 0; variant < 3; ++variant)
    for (bool log : {false, true})
      for (Pass pass : kSoftmaxPasses) {
        const RowShape& shape = shapes[std::size_t(variant + 2 * log) % shapes.size()];
        Spec s;
        s.path = shape.path;
        s.rows = 6;
        s.cols = device == Device::cpu ? 11 : std::min<std::int64_t>(shape.cols, 300) + 3;
        s.log = log;
        s.pass = pass;
        s.in = kDtypes[variant];
        s.dy = kDtypes[(variant + 1) % 3];
        s.out = kDtypes[(variant + 2) % 3];
        s.in_pad = 3;
        s.dy_pad = 2;
        s.out_pad = 1;
        s.offset = variant == 1 ? 1 : 0;
        s.in_place = variant == 2;
        b.add(s);
      }
  add_confident(b);
  for (int k = 0; k < 4; ++k)
    add_ties(b, shapes[std::size_t(k) % shapes.size()].path, k % 2 ? DType::bf16 : DType::f16,
             k / 2);
}

}  // namespace

void add_softmax_cases(Device device, Depth depth, std::vector<Case>& cases) {
  Builder builder(device, cases);
  if (device == Device::cuda && depth == Depth::full) {
    cuda_full(builder);
    return;
  }
  every_kind(builder, device, depth);
}

}  // namespace actloss::validation
