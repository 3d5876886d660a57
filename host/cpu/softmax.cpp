// Softmax and log-softmax on the SIMD CPU backend, forward and backward, in the kernels' math
// (cuda/softmax.cu): float exponentials, the row's sums in float64.
//
// Forward, per row: pass 1 finds the max m (and whether the row holds a NaN); pass 2 takes
// e = exp(x - m), kept for softmax in a per-thread float buffer (a long row's float output,
// not streamed, holds them itself), and rest = s - 1, the sum of every term but the first
// maximum's own 1 (in float over four vectors, then in double); pass 3 writes e / (1 + rest), or
// (x - m) - log1p(rest). A row that fits in cache is read from memory once. rest leaves the 1
// out, as the cross-entropy does, so that it keeps its relative accuracy however small it is, and
// with it the top class's log-probability -log1p(rest); a confident row, whose rest is tiny, sums
// it again in double.
//
// Backward, per row: pass 1 takes dot = sum y dy (log-softmax: sum dy) in double, where every
// product of two floats is exact (of two bfloat16, already in float: see row_dot); pass 2 writes
// y (dy - dot) or dy - exp(y) dot, with dot split into two floats hi + lo so that a difference
// that nearly cancels stays accurate in float.
//
// On Intel processors the pass before the stores also asks for the output's lines, so that the
// stores find them in cache (fetch_output_before_writing, host/cpu/prefetch_hint.h).
//
// Rows are cut into tasks of a fixed number of rows (by size only); a row's results do not
// depend on which thread runs it.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "host/cpu/softmax.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "host/cpu/backend.h"
#include "host/cpu/simd-inl.h"
#include "host/cpu/thread_pool.h"
#include "host/cpu_path.h"

#ifndef ACTLOSS_HOST_CPU_SOFTMAX_ONCE
#define ACTLOSS_HOST_CPU_SOFTMAX_ONCE
namespace actloss::cpu {
namespace {

// Where row r of a batched tensor starts, in elements.
struct RowStarts {
  std::int64_t rows_per_batch;
  std::int64_t row_stride;
  std::int64_t batch_stride;
  std::int64_t of(std::int64_t r) const {
    return (r / rows_per_batch) * batch_stride + (r % rows_per_batch) * row_stride;
  }
};

// About this many elements per task: enough to amortise handing a task to a thread, small
// enough that a few rows' worth spreads over every core.
constexpr std::int64_t kSoftmaxTaskElements = std::int64_t{1} << 15;

inline std::int64_t softmax_rows_per_task(std::int64_t rows, std::int64_t cols) {
  return rows_per_task(rows, cols, kSoftmaxTaskElements);
}
// The backward keeps one long row per task: it runs near the copy's speed without fetching
// rows ahead, and four-row tasks that fetch their next row were 5-20% slower from 128K columns
// on (bf16, the EPYC VM).
inline std::int64_t softmax_backward_rows_per_task(std::int64_t cols) {
  return cols >= kSoftmaxTaskElements ? 1 : kSoftmaxTaskElements / cols;
}

// Rows up to this long take the next row's max between their sums and their stores
// (softmax_forward_row). Longer rows have no latency worth hiding, and fetching two rows ahead
// for them made 4K to 128K columns 2-8% slower (2 threads, the EPYC VM); at 256 and 1024 columns
// it made rows 5-12% faster.
constexpr std::int64_t kMaxAheadColumns = 1024;

// The log-softmax backward's dot reads dy alone; rows whose y and dy take up to this many bytes
// ask for y's lines meanwhile, so that the pass that writes dx finds both in L2 (1-2 MiB per
// core on current x86) and its exponentials do not wait on memory.
constexpr std::int64_t kLogDotFetchRowBytes = std::int64_t{512} << 10;

// Softmax rows with an f32 dx whose y, dy and dx pass this fetch dx in the write pass
// (fetches_output_ahead) rather than during the dot: at 128256 classes (1.5 MiB a row) 1.06x, 0.92x
// -> 1.01x of oneDNN in the same process (Xeon VM, alternating processes, medians of five), the
// whole row's lines fetched ahead crowding y and dy in L2. Shorter rows keep the dot's fetch.
constexpr std::int64_t kDotFetchFloatDxRowBytes = std::int64_t{1} << 20;

// A rest below this is summed again in double (confident_rest): the float partial sums hold it to
// about 2^-22 relatively, a few units of the top class's log-probability -log1p(rest), which the
// second sum brings to its last digit on the rows where that probability is nearly 1.
constexpr double kConfidentRest = 0x1p-8;

}  // namespace
}  // namespace actloss::cpu
#endif

HWY_BEFORE_NAMESPACE();
namespace actloss::cpu::HWY_NAMESPACE {
namespace {

constexpr float kInfinity = std::numeric_limits<float>::infinity();

// The per-thread float buffer of a row's exponentials, grown to the longest row seen, and
// aligned to a cache line (cache_line_floats), with a vector's room past the row.
inline float* exponential_buffer(std::int64_t cols) {
  thread_local std::vector<float> buffer;
  return cache_line_floats(buffer, static_cast<std::size_t>(cols) + hn::MaxLanes(FloatTag()));
}

// Fills a row with one value (NaN rows, all -inf rows).
template <class T>
void fill_row(FloatTag d, T* out, std::int64_t cols, float value) {
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(d));
  const FloatVec v = hn::Set(d, value);
  std::int64_t i = 0;
  for (; i + lanes <= cols; i += lanes) store_floats(d, v, out + i);
  if (i < cols) store_floats_partial(d, v, out + i, static_cast<size_t>(cols - i));
}

// A row's max, and whether it holds a NaN (which a max may skip).
struct RowMax {
  float value;
  bool has_nan;
};

template <class T>
RowMax row_max(FloatTag d, const T* x, std::int64_t cols) {
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(d));
  FloatVec max0 = hn::Set(d, -kInfinity), max1 = max0;
  auto nan0 = hn::FirstN(d, 0), nan1 = nan0;
  std::int64_t i = 0;
  for (; i + 2 * lanes <= cols; i += 2 * lanes) {
    const FloatVec v0 = load_floats(d, x + i), v1 = load_floats(d, x + i + lanes);
    max0 = hn::Max(max0, v0);
    max1 = hn::Max(max1, v1);
    nan0 = hn::Or(nan0, hn::IsNaN(v0));
    nan1 = hn::Or(nan1, hn::IsNaN(v1));
  }
  for (; i < cols; i += lanes) {
    const auto count = static_cast<size_t>(cols - i < lanes ? cols - i : lanes);
    FloatVec v = count == static_cast<size_t>(lanes) ? load_floats(d, x + i)
                                                     : load_floats_partial(d, x + i, count);
    nan0 = hn::Or(nan0, hn::IsNaN(v));
    v = hn::IfThenElse(hn::FirstN(d, count), v, hn::Set(d, -kInfinity));
    max0 = hn::Max(max0, v);
  }
  return {hn::GetLane(hn::MaxOfLanes(d, hn::Max(max0, max1))),
          !hn::AllFalse(d, hn::Or(nan0, nan1))};
}

// The first column holding m, a finite value of the row (-1 if none: then nothing is left out).
// Stops at the first hit: half a row on average, from the cache the max's pass left it in.
template <class T>
std::int64_t first_column_of(FloatTag d, const T* x, std::int64_t cols, float m) {
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(d));
  const FloatVec vm = hn::Set(d, m);
  std::int64_t i = 0;
  for (; i + lanes <= cols; i += lanes) {
    const intptr_t lane = hn::FindFirstTrue(d, hn::Eq(load_floats(d, x + i), vm));
    if (lane >= 0) return i + lane;
  }
  for (; i < cols; ++i) {
    if (load_float(x + i) == m) return i;
  }
  return -1;
}

// rest = sum exp(x - m) over the row but the first maximum's exact 1; `buffer` (may be null, may
// be the output row) receives every exponential, the 1 included, and nothing past the row.
// `next` (may be null): the next row, whose lines are asked for meanwhile, one per 64 bytes of
// this row's columns (the exponentials leave memory idle). `output` (may be null): the row's
// output, whose lines are fetched meanwhile for the stores that follow
// (fetch_output_before_writing).
template <class T, class TY>
double rest_of_exponentials(FloatTag d, const T* x, std::int64_t cols, float m, float* buffer,
                            const T* next, const TY* output) {
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(d));
  const FloatVec shift = hn::Set(d, m);
  const std::int64_t excluded = first_column_of(d, x, cols, m);
  const hn::RebindToSigned<FloatTag> di;
  // e without the first maximum's term, for the vector at column i.
  const auto without_maximum = [&](std::int64_t i, FloatVec e) {
    if (static_cast<std::uint64_t>(excluded - i) >= static_cast<std::uint64_t>(lanes)) return e;
    const auto at_maximum = hn::Eq(hn::Iota(di, 0), hn::Set(di, static_cast<int>(excluded - i)));
    return hn::IfThenZeroElse(hn::RebindMask(d, at_maximum), e);
  };
  DoubleVec sum0 = hn::Zero(DoubleTag()), sum1 = sum0;
  // Four vectors' exponentials are added in float (three roundings of 2^-24 relative to a
  // partial sum that holds no 1 of the maximum's, so rest keeps that relative accuracy) and then
  // once in double: converting every vector to double put five operations per vector on
  // the pipes the exponential's own additions use. One thread in cache on a Zen 3 (AVX2),
  // against that and with the maximum's column found first: softmax forward 1.18x at 32000 f32
  // columns, 1.0x at 256, log-softmax 1.09x at 1024.
  std::int64_t i = 0;
  for (; i + 4 * lanes <= cols; i += 4 * lanes) {
    if (next != nullptr) {
      for (std::int64_t k = i; k < i + 4 * lanes; k += 64 / static_cast<std::int64_t>(sizeof(T)))
        hwy::Prefetch(next + k);
    }
    if (output != nullptr) fetch_output_lines(output + i, 4 * lanes * sizeof(TY));
    const FloatVec e0 = exp_nonpositive(d, hn::Sub(load_floats(d, x + i), shift));
    const FloatVec e1 = exp_nonpositive(d, hn::Sub(load_floats(d, x + i + lanes), shift));
    const FloatVec e2 = exp_nonpositive(d, hn::Sub(load_floats(d, x + i + 2 * lanes), shift));
    const FloatVec e3 = exp_nonpositive(d, hn::Sub(load_floats(d, x + i + 3 * lanes), shift));
    if (buffer != nullptr) {
      hn::StoreU(e0, d, buffer + i);
      hn::StoreU(e1, d, buffer + i + lanes);
      hn::StoreU(e2, d, buffer + i + 2 * lanes);
      hn::StoreU(e3, d, buffer + i + 3 * lanes);
    }
    FloatVec part;
    if (static_cast<std::uint64_t>(excluded - i) < static_cast<std::uint64_t>(4 * lanes)) {
      part = hn::Add(
          hn::Add(without_maximum(i, e0), without_maximum(i + lanes, e1)),
          hn::Add(without_maximum(i + 2 * lanes, e2), without_maximum(i + 3 * lanes, e3)));
    } else {
      part = hn::Add(hn::Add(e0, e1), hn::Add(e2, e3));
    }
    sum0 = hn::Add(sum0, lower_as_double(d, part));
    sum1 = hn::Add(sum1, upper_as_double(d, part));
  }
  for (; i < cols; i += lanes) {
    const auto count = static_cast<size_t>(cols - i < lanes ? cols - i : lanes);
    const FloatVec v = count == static_cast<size_t>(lanes) ? load_floats(d, x + i)
                                                           : load_floats_partial(d, x + i, count);
    const FloatVec e =
        hn::IfThenElseZero(hn::FirstN(d, count), exp_nonpositive(d, hn::Sub(v, shift)));
    if (buffer != nullptr) {
      if (count == static_cast<size_t>(lanes)) {
        hn::StoreU(e, d, buffer + i);
      } else {
        store_floats_partial(d, e, buffer + i, count);
      }
    }
    const FloatVec term = without_maximum(i, e);
    sum0 = hn::Add(sum0, lower_as_double(d, term));
    sum1 = hn::Add(sum1, upper_as_double(d, term));
  }
  return sum_double_lanes(hn::Add(sum0, sum1));
}

// A confident row's rest: every exponential but the max's exact 1. With rest below 1 no other
// element ties the max or rounds to 1, so the max's term is the only 1 in the row.
template <class T>
double confident_rest(FloatTag d, const T* x, std::int64_t cols, float m, const float* buffer) {
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(d));
  const FloatVec shift = hn::Set(d, m);
  const FloatVec one = hn::Set(d, 1.0f);
  DoubleVec sum0 = hn::Zero(DoubleTag()), sum1 = sum0;
  for (std::int64_t i = 0; i < cols; i += lanes) {
    const auto count = static_cast<size_t>(cols - i < lanes ? cols - i : lanes);
    FloatVec e;
    if (buffer != nullptr) {
      e = load_part(d, buffer + i, static_cast<std::int64_t>(count));  // 0 past the row
    } else {
      const FloatVec v = count == static_cast<size_t>(lanes) ? load_floats(d, x + i)
                                                             : load_floats_partial(d, x + i, count);
      e = hn::IfThenElseZero(hn::FirstN(d, count), exp_nonpositive(d, hn::Sub(v, shift)));
    }
    e = hn::IfThenZeroElse(hn::Eq(e, one), e);
    sum0 = hn::Add(sum0, lower_as_double(d, e));
    sum1 = hn::Add(sum1, upper_as_double(d, e));
  }
  return sum_double_lanes(hn::Add(sum0, sum1));
}

// One row, whose max `max` was taken before; returns the max of `next_in_task` (the task's next
// row, or null), taken between this row's sums and its stores: the sums' reduction and 1 / s are
// a chain of latencies that the stores wait on, and the next row's max, independent of them,
// fills that wait (as this row's exponentials did not have to wait on its max). `stream`: y is
// stored with non-temporal stores (a large output, not over x). `next`: a row whose lines are
// asked for while this row's exponentials are computed, or null.
template <class TX, class TY>
RowMax softmax_forward_row(FloatTag d, const TX* x, TY* y, std::int64_t cols, bool log,
                           bool stream, RowMax max, const TX* next, const TX* next_in_task) {
  const auto max_of_next = [&] { return next_in_task != nullptr ? row_max(d, next_in_task, cols)
                                                                : RowMax{0.0f, false}; };
  const float m = max.value;
  // NaN, or +inf (inf - inf), makes the row NaN; a row of -infs has no mass: softmax 0,
  // log-softmax -inf (the reference's convention, never the NaN of -inf - -inf).
  if (max.has_nan || m == kInfinity) {
    fill_row(d, y, cols, std::numeric_limits<float>::quiet_NaN());
    return max_of_next();
  }
  if (m == -kInfinity) {
    fill_row(d, y, cols, log ? -kInfinity : 0.0f);
    return max_of_next();
  }

  // Buffered even where the row and its exponentials exceed L2: measured against taking every
  // exponential again in the last pass (up to 262144 columns), the buffer was as fast or faster.
  // A long row's float output, not streamed, is the buffer (see kOutputAsBufferRowBytes); pass 2
  // then stores to y itself, and nothing is fetched ahead.
  const auto row_bytes =
      cols * static_cast<std::int64_t>(sizeof(TX) + sizeof(TY) + (log ? 0 : sizeof(float)));
  float* buffer = nullptr;
  if constexpr (std::is_same_v<TY, float>) {
    if (!log && !stream && row_bytes > kOutputAsBufferRowBytes) buffer = y;
  }
  const bool output_is_buffer = buffer != nullptr;
  if (!log && !output_is_buffer) buffer = exponential_buffer(cols);
  const TY* fetched = !output_is_buffer && fetches_output_row(stream, row_bytes) ? y : nullptr;
  double rest = rest_of_exponentials(d, x, cols, m, buffer, next, fetched);
  if (rest < kConfidentRest) rest = confident_rest(d, x, cols, m, buffer);
  const RowMax next_max = max_of_next();

  if (log) {
    const FloatVec shift = hn::Set(d, m);
    const FloatVec log_s = hn::Set(d, static_cast<float>(log1p_double(rest)));
    store_row(d, y, cols, stream, [&](std::int64_t i, std::int64_t count) {
      return hn::Sub(hn::Sub(load_part(d, x + i, count), shift), log_s);
    });
    return next_max;
  }
  const FloatVec inv_s = hn::Set(d, static_cast<float>(1.0 / (1.0 + rest)));
  store_row(d, y, cols, stream, [&](std::int64_t i, std::int64_t count) {
    return hn::Mul(load_part(d, buffer + i, count), inv_s);
  });
  return next_max;
}

}  // namespace

void softmax_forward_rows(const SoftmaxForwardArgs& args, bool log) {
  const RowStarts x_rows{args.rows_per_batch, args.x_row_stride, args.x_batch_stride};
  const RowStarts y_rows{args.rows_per_batch, args.y_row_stride, args.y_batch_stride};
  const std::int64_t rows = args.rows, cols = args.cols;
  const std::int64_t per_task = softmax_rows_per_task(rows, cols);
  with_storage(args.x_dtype, [&](auto* x_tag) {
    with_storage(args.y_dtype, [&](auto* y_tag) {
      using TX = std::remove_pointer_t<decltype(x_tag)>;
      using TY = std::remove_pointer_t<decltype(y_tag)>;
      const TX* x = static_cast<const TX*>(args.x);
      TY* y = static_cast<TY*>(args.y);
      // In place, y's lines are in cache, just read.
      const bool stream = args.y != args.x && rows * cols * static_cast<std::int64_t>(sizeof(TY)) >=
                                                  streaming_output_bytes();
      parallel_for((rows + per_task - 1) / per_task, [&](std::int64_t task) {
        const FloatTag d;
        const std::int64_t begin = task * per_task;
        const std::int64_t end = (task + 1) * per_task < rows ? (task + 1) * per_task : rows;
        const auto row_x = [&](std::int64_t r) -> const TX* {
          return r < rows ? x + x_rows.of(r) : nullptr;
        };
        if (cols <= kMaxAheadColumns) {
          // The next row's max comes before this row's stores, so the lines fetched ahead are
          // those of the row after it.
          RowMax max = row_max(d, row_x(begin), cols);
          for (std::int64_t r = begin; r < end; ++r) {
            max = softmax_forward_row(d, row_x(r), y + y_rows.of(r), cols, log, stream, max,
                                      row_x(r + 2), r + 1 < end ? row_x(r + 1) : nullptr);
          }
        } else {
          for (std::int64_t r = begin; r < end; ++r) {
            softmax_forward_row(d, row_x(r), y + y_rows.of(r), cols, log, stream,
                                row_max(d, row_x(r), cols), row_x(r + 1),
                                static_cast<const TX*>(nullptr));
          }
        }
        if (stream) hwy::FlushStream();  // ordered before the pool reports the task done
      });
    });
  });
}

namespace {

// The bfloat16 values at p[0, 2 lanes) as two float vectors, the even columns and the odd:
// each 32-bit lane holds a pair, so a shift and a mask widen them with no shuffle (a widening
// load takes a shuffle per vector, and the dot's double conversions need those pipes too).
HWY_INLINE void load_bf16_pairs(FloatTag d, const Bf16* p, FloatVec& even, FloatVec& odd) {
  const hn::RebindToUnsigned<FloatTag> du;
  const auto pairs = hn::LoadU(du, reinterpret_cast<const std::uint32_t*>(p));
  even = hn::BitCast(d, hn::ShiftLeft<16>(pairs));
  odd = hn::BitCast(d, hn::And(pairs, hn::Set(du, 0xFFFF0000u)));
}

// A dot of bfloat16 y and dy whose products are rounded to float is exact where every product
// is: 8-bit significands give 16-bit products, exact unless one falls below float's normal range
// (at most 2^-150 off) or overflows. Inside these bounds the underflows add up to less than
// 2^-59 of the dot for any row length below 2^31, under double's own rounding; outside them, or
// NaN, the dot is taken again from double products.
constexpr double kFloatProductDotMin = 0x1p-60, kFloatProductDotMax = 0x1p100;

// dot = sum y dy (log: sum dy) in double. `dx` (may be null, always for log): the row's output,
// whose lines are fetched meanwhile for the stores that follow (fetch_output_before_writing).
// `pairs`: bfloat16 columns taken two to a 32-bit lane (the dot of y dy from float products, see
// above).
template <class TY, class TDY, class TDX>
double row_dot(FloatTag d, const TY* y, const TDY* dy, std::int64_t cols, bool log, const TDX* dx,
               bool pairs = true) {
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(d));
  const auto fetch_dx = [&](std::int64_t i) {
    if (dx != nullptr) fetch_output_lines(dx + i, 2 * lanes * sizeof(TDX));
  };
  DoubleVec sum0 = hn::Zero(DoubleTag()), sum1 = sum0, sum2 = sum0, sum3 = sum0;
  std::int64_t i = 0;
  // The log-softmax's dot reads dy alone; y is asked for meanwhile (see kLogDotFetchRowBytes).
  const bool fetch_y =
      log && cols * static_cast<std::int64_t>(sizeof(TY) + sizeof(TDY)) <= kLogDotFetchRowBytes;
  // Two vectors of terms into the four sums, each half widened to double (exactly).
  const auto add_terms = [&](FloatVec a, FloatVec b) ACTLOSS_VECTOR_BODY {
    sum0 = hn::Add(sum0, lower_as_double(d, a));
    sum1 = hn::Add(sum1, upper_as_double(d, a));
    sum2 = hn::Add(sum2, lower_as_double(d, b));
    sum3 = hn::Add(sum3, upper_as_double(d, b));
  };
  bool float_products = false;
  if constexpr (std::is_same_v<TDY, Bf16>) {
    if (pairs && log) {
      // Every bfloat16 is exact in double: nothing to redo.
      for (; i + 2 * lanes <= cols; i += 2 * lanes) {
        if (fetch_y) prefetch_bytes(y + i, 2 * lanes * sizeof(TY));
        FloatVec even, odd;
        load_bf16_pairs(d, dy + i, even, odd);
        add_terms(even, odd);
      }
    }
    if constexpr (std::is_same_v<TY, Bf16>) {
      if (pairs && !log) {
        float_products = true;
        for (; i + 2 * lanes <= cols; i += 2 * lanes) {
          fetch_dx(i);
          FloatVec y_even, y_odd, dy_even, dy_odd;
          load_bf16_pairs(d, y + i, y_even, y_odd);
          load_bf16_pairs(d, dy + i, dy_even, dy_odd);
          add_terms(hn::Mul(y_even, dy_even), hn::Mul(y_odd, dy_odd));
        }
      }
    }
  }
  if (log) {
    for (; i + 2 * lanes <= cols; i += 2 * lanes) {
      if (fetch_y) prefetch_bytes(y + i, 2 * lanes * sizeof(TY));
      add_terms(load_floats(d, dy + i), load_floats(d, dy + i + lanes));
    }
  } else {
    for (; i + 2 * lanes <= cols; i += 2 * lanes) {
      fetch_dx(i);
      const FloatVec p0 = load_floats(d, y + i), p1 = load_floats(d, y + i + lanes);
      const FloatVec g0 = load_floats(d, dy + i), g1 = load_floats(d, dy + i + lanes);
      sum0 = hn::MulAdd(lower_as_double(d, p0), lower_as_double(d, g0), sum0);
      sum1 = hn::MulAdd(upper_as_double(d, p0), upper_as_double(d, g0), sum1);
      sum2 = hn::MulAdd(lower_as_double(d, p1), lower_as_double(d, g1), sum2);
      sum3 = hn::MulAdd(upper_as_double(d, p1), upper_as_double(d, g1), sum3);
    }
  }
  for (; i < cols; i += lanes) {
    const auto count = static_cast<size_t>(cols - i < lanes ? cols - i : lanes);
    const bool whole = count == static_cast<size_t>(lanes);
    const FloatVec g = whole ? load_floats(d, dy + i) : load_floats_partial(d, dy + i, count);
    if (log) {
      sum0 = hn::Add(sum0, lower_as_double(d, g));
      sum1 = hn::Add(sum1, upper_as_double(d, g));
    } else {
      // Lanes past the row hold 0 in both: their product adds nothing.
      const FloatVec p = whole ? load_floats(d, y + i) : load_floats_partial(d, y + i, count);
      sum0 = hn::MulAdd(lower_as_double(d, p), lower_as_double(d, g), sum0);
      sum1 = hn::MulAdd(upper_as_double(d, p), upper_as_double(d, g), sum1);
    }
  }
  const double dot = sum_double_lanes(hn::Add(hn::Add(sum0, sum2), hn::Add(sum1, sum3)));
  if (float_products && !(std::fabs(dot) >= kFloatProductDotMin &&
                          std::fabs(dot) <= kFloatProductDotMax)) {
    return row_dot(d, y, dy, cols, log, static_cast<const TDX*>(nullptr), /*pairs=*/false);
  }
  return dot;
}

// dx from the loaded y, dy and the dot in two floats.
HWY_INLINE FloatVec backward_value(FloatTag d, FloatVec y, FloatVec dy, FloatVec hi, FloatVec lo,
                                   bool log) {
  if (!log) return hn::Mul(y, hn::Sub(hn::Sub(dy, hi), lo));
  const FloatVec e = exp_any(d, y);
  return hn::NegMulAdd(e, lo, hn::NegMulAdd(e, hi, dy));
}

// `stream`: dx is stored with non-temporal stores (a large output, over neither input).
// next_y, next_dy: the next row's, asked for while this row's dx is computed (or null).
template <class TY, class TDY, class TDX>
void softmax_backward_row(FloatTag d, const TY* y, const TDY* dy, TDX* dx, std::int64_t cols,
                          bool log, bool stream, const TY* next_y, const TDY* next_dy) {
  // The log-softmax's dot reads dy alone and already asks for y meanwhile; its dx was slower
  // fetched as well (bf16 at 32000 classes and more: 0.67-0.9x).
  const auto row_bytes = cols * static_cast<std::int64_t>(sizeof(TY) + sizeof(TDY) + sizeof(TDX));
  const bool fetch_dx = !log && fetches_output_row(stream, row_bytes) &&
                        !(std::is_same_v<TDX, float> && row_bytes > kDotFetchFloatDxRowBytes);
  const double dot = row_dot(d, y, dy, cols, log, fetch_dx ? dx : nullptr);
  if (!(std::fabs(dot) <= 0x1p100)) {
    // A NaN or infinite dot, or one so large that hi or dy - hi could overflow although dx is
    // finite: the row in double, element by element (rare).
    for (std::int64_t c = 0; c < cols; ++c) {
      const float y_c = load_float(y + c);
      const double dy_c = load_float(dy + c);
      const double value =
          log ? dy_c - static_cast<double>(std::exp(y_c)) * dot : y_c * (dy_c - dot);
      store_floats_partial(d, hn::Set(d, static_cast<float>(value)), dx + c, 1);
    }
    return;
  }
  const float hi = static_cast<float>(dot);
  const float lo = static_cast<float>(dot - static_cast<double>(hi));
  if (log && hi == 0.0f) {
    // A zero sum of dy contributes nothing, also where exp(y) is inf (as the kernels).
    store_row(d, dx, cols, stream, [&](std::int64_t i, std::int64_t count) {
      return load_part(d, dy + i, count);
    });
    return;
  }
  const FloatVec hi_v = hn::Set(d, hi), lo_v = hn::Set(d, lo);
  // Where the dot fetched no dx (the log-softmax's; a softmax row past kFetchOutputRowBytes, or
  // past kDotFetchFloatDxRowBytes with an f32 dx), the write pass fetches dx ahead of its stores
  // (fetches_output_ahead). On the Xeon VM (two threads, alternating processes, medians of three,
  // against oneDNN in the same process): log-softmax 1.01x -> 1.10x at 50257 classes, 1.00x ->
  // 1.09x at 32000, 0.99x -> 1.05x at 128256, no different at 256-4096 and 262144; softmax at
  // 262144 0.96x -> 1.00x.
  const bool fetch_ahead =
      !fetch_dx && fetches_output_ahead(stream, std::is_same_v<TDX, float>);
  store_row(d, dx, cols, stream, [&](std::int64_t i, std::int64_t count) {
    if (next_y != nullptr) {
      hwy::Prefetch(next_y + i);
      hwy::Prefetch(next_dy + i);
    }
    if (fetch_ahead) fetch_output_ahead(dx + i);
    return backward_value(d, load_part(d, y + i, count), load_part(d, dy + i, count), hi_v, lo_v,
                          log);
  });
}

}  // namespace

void softmax_backward_rows(const SoftmaxBackwardArgs& args, bool log) {
  const RowStarts y_rows{args.rows_per_batch, args.y_row_stride, args.y_batch_stride};
  const RowStarts dy_rows{args.rows_per_batch, args.dy_row_stride, args.dy_batch_stride};
  const RowStarts dx_rows{args.rows_per_batch, args.dx_row_stride, args.dx_batch_stride};
  const std::int64_t rows = args.rows, cols = args.cols;
  const std::int64_t per_task = softmax_backward_rows_per_task(cols);
  with_storage(args.y_dtype, [&](auto* y_tag) {
    with_storage(args.dy_dtype, [&](auto* dy_tag) {
      with_storage(args.dx_dtype, [&](auto* dx_tag) {
        using TY = std::remove_pointer_t<decltype(y_tag)>;
        using TDY = std::remove_pointer_t<decltype(dy_tag)>;
        using TDX = std::remove_pointer_t<decltype(dx_tag)>;
        const TY* y = static_cast<const TY*>(args.y);
        const TDY* dy = static_cast<const TDY*>(args.dy);
        TDX* dx = static_cast<TDX*>(args.dx);
        // Over an input (in place), dx's lines are in cache, just read.
        const bool stream = args.dx != args.dy && args.dx != args.y &&
                            rows * cols * static_cast<std::int64_t>(sizeof(TDX)) >=
                                streaming_output_bytes();
        parallel_for((rows + per_task - 1) / per_task, [&](std::int64_t task) {
          const FloatTag d;
          const std::int64_t end = (task + 1) * per_task < rows ? (task + 1) * per_task : rows;
          for (std::int64_t r = task * per_task; r < end; ++r) {
            // A task's last row fetches nothing ahead: the next row is another task's, likely
            // run by another core, and fetching it here (two rows of y and dy, 250 KiB at
            // 32000 classes) cost this one's bandwidth. On the 2-vCPU EPYC VM, medians of five
            // alternating processes, two runs: f32 at 32000 classes 37.6-39.0 -> 41.3-42.0
            // GB/s, at 128256 45.3 -> 49.0, at 50257 and 4096 within the noise. The forward
            // keeps its fetch across tasks: without it, 10% slower at 32000 and 50257.
            const bool last = r + 1 == end;
            softmax_backward_row(d, y + y_rows.of(r), dy + dy_rows.of(r), dx + dx_rows.of(r), cols,
                                 log, stream, last ? nullptr : y + y_rows.of(r + 1),
                                 last ? nullptr : dy + dy_rows.of(r + 1));
          }
          if (stream) hwy::FlushStream();  // ordered before the pool reports the task done
        });
      });
    });
  });
}

}  // namespace actloss::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace actloss::cpu {
HWY_EXPORT(softmax_forward_rows);
HWY_EXPORT(softmax_backward_rows);
}  // namespace actloss::cpu

namespace actloss::detail {

std::optional<Status> cpu_softmax_forward(const SoftmaxForwardArgs& args,
                                          const SoftmaxOptions& options) {
  if (args.rows == 0) return Status{};
  return host::run_cpu("softmax_forward", [&] {
    HWY_DYNAMIC_DISPATCH(cpu::softmax_forward_rows)(args, options.log);
  });
}

std::optional<Status> cpu_softmax_backward(const SoftmaxBackwardArgs& args,
                                           const SoftmaxOptions& options) {
  if (args.rows == 0) return Status{};
  return host::run_cpu("softmax_backward", [&] {
    HWY_DYNAMIC_DISPATCH(cpu::softmax_backward_rows)(args, options.log);
  });
}

}  // namespace actloss::detail
#endif
