// Device machinery shared by the row-wise ops (cuda/cross_entropy.cu, cuda/softmax.cu): chunked
// row access with 16-byte vectors, the merge of (max, rest of the exponentials) pairs, reductions over
// the threads of one row, and the launch geometry of the four dispatch paths (row_dispatch.h).
//
// Layout. A row is cut into chunks of kChunk = 8 consecutive elements, columns 8k .. 8k + 7
// (the last may be partial; see Chunks below).
// The threads of a row form a group of `size` threads (1..32 within a warp, or a whole block);
// the thread of rank r owns chunks r, r + size, r + 2 size, ... A chunk is one 16-byte vector of
// f16/bf16 or two of f32, so a warp reads 512 or 1024 contiguous bytes per step, and mixed-dtype
// outputs (bf16 logits, f32 gradient) stay vectorised on both sides.
//
// Rows are handed out in tiles of blockDim / size rows, grid-stride. Every thread of a block runs
// the same number of tiles (threads past the last row take part with an empty row), so warp
// shuffles always have all 32 lanes and block barriers are reached by every thread.
#pragma once

#include "cuda/common.cuh"
#include "cuda/reduce.cuh"
#include "cuda/row_dispatch.h"

#include <climits>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <type_traits>

namespace actloss::cuda::row {

using detail::RowAlgorithm;
using detail::RowOp;

constexpr int kChunk = detail::row_limits::kChunk;

// argmax's order (torch.argmax): a NaN above every number, ties to the lower index. Keeps in
// (value, index) the larger of itself and (value2, index2).
__device__ __forceinline__ void take_larger(float& value, int& index, float value2, int index2) {
  const bool nan = value != value, nan2 = value2 != value2;
  const bool larger = nan2 ? (!nan || index2 < index)
                           : (!nan && (value2 > value || (value2 == value && index2 < index)));
  if (larger) {
    value = value2;
    index = index2;
  }
}

// Where row r of an operand starts, in elements. Rows may come in batches (a [B, T, C] view such
// as logits[:, :-1, :]); rows_per_batch 0 is the layout of one batch (or of batches that follow
// each other densely), the common case. The batch of a row comes from a multiplication by the
// host's double reciprocal, corrected to the exact quotient: a 64-bit integer division is a
// subroutine call on the GPU, around which the row kernels spilled their live registers.
struct RowStarts {
  std::int64_t row_stride = 0;
  std::int64_t batch_stride = 0;
  std::int64_t rows_per_batch = 0;
  double inverse_rows_per_batch = 0.0;

  __device__ __forceinline__ std::int64_t of(std::int64_t r) const {
    if (rows_per_batch == 0) return r * row_stride;
    std::int64_t batch =
        static_cast<std::int64_t>(static_cast<double>(r) * inverse_rows_per_batch);
    std::int64_t step = r - batch * rows_per_batch;
    while (step < 0) {
      --batch;
      step += rows_per_batch;
    }
    while (step >= rows_per_batch) {
      ++batch;
      step -= rows_per_batch;
    }
    return batch * batch_stride + step * row_stride;
  }
};

// The RowStarts of an operand of `rows` rows (strides normalised by the host). One row per batch
// is rows of the batch stride.
inline RowStarts row_starts(std::int64_t rows, std::int64_t rows_per_batch,
                            std::int64_t row_stride, std::int64_t batch_stride) {
  if (rows_per_batch <= 0 || rows_per_batch >= rows ||
      batch_stride == rows_per_batch * row_stride)
    return RowStarts{row_stride, 0, 0, 0.0};
  if (rows_per_batch == 1) return RowStarts{batch_stride, 0, 0, 0.0};
  return RowStarts{row_stride, batch_stride, rows_per_batch,
                   1.0 / static_cast<double>(rows_per_batch)};
}

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kMaxBlock = detail::row_limits::kMaxThreadsPerRow;  // the largest block of any path
constexpr int kMaxWarps = 32;

// exp(x - m) for x <= m. The subtraction comes first: x * log2e alone overflows for |x| > 2.3e38,
// and with it the difference of two huge logits would be lost. Rounding (x - m) log2e costs a
// relative error of |x - m| 2^-23 in the result: fine for outputs whose tolerance carries that
// conditioning (probabilities, gradients), not for the sums behind a loss.
__device__ __forceinline__ float exp_shifted(float x, float m) { return exp2f((x - m) * kLog2e); }

// 2^u with results below float's normal range flushed to 0: the hardware's ex2 as it is, without
// the steps exp2f adds for subnormal results.
__device__ __forceinline__ float exp2_flush(float u) {
#ifdef __CUDA_ARCH__
  float e;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(u));
  return e;
#else
  const float e = exp2f(u);
  return e < FLT_MIN ? 0.0f : e;  // NaN stays NaN
#endif
}

// exp(x - m) to about 2 ulp (ex2's own error) for the terms of log-sum-exp, where a confident
// row's loss is one such term and must keep its relative accuracy: the rounding error of
// (x - m) log2 e, and that of log2 e itself, are carried apart and applied as a first-order
// correction. Only x - m itself is rounded, where x and m are far apart in magnitude (a relative
// error of |x - m| 2^-24, the conditioning of exp there). Terms below 2^-126 are flushed to 0:
// an absolute error of 2^-126 per term, which only losses below float's normal range notice.
// About 8 instructions against exp2f's 6 (sm_90 SASS); expf would take 10, and exp2f with the
// correction 15.
constexpr float kLog2eLo = 1.925963033e-8f;  // log2 e - kLog2e
constexpr float kLn2 = 0.6931471805599453f;
__device__ __forceinline__ float exp_shifted_accurate(float x, float m) {
  const float t = x - m;
  const float u = t * kLog2e;
  // x = -inf: the correction is NaN (-inf + inf), capped to 1, and multiplies e = 0. NaN x
  // reaches e itself.
  const float u_lo = fminf(__fmaf_rn(t, kLog2eLo, __fmaf_rn(t, kLog2e, -u)), 1.0f);
  const float e = exp2_flush(u);
  return __fmaf_rn(e, u_lo * kLn2, e);
}

// ---------------------------------------------------------------------------------------------
// Chunks: loads and stores of 8 elements.
//
// Chunk k of a row covers columns 8k .. 8k + 7 wherever the row lies in memory: which thread
// adds which elements, in which groups, depends only on the shape, so sum and mean are the same
// bits for a misaligned or strided copy of the same data. A chunk moves in the widest words its
// address allows, checked per chunk and per tensor (16 bytes where the row starts on a 16-byte
// boundary, else 8 or 4), so one misaligned tensor no longer turns every access of the launch
// into element-by-element loads. A grid that followed each row's own 16-byte boundary would
// load every row of an odd width (50257) in 16-byte vectors, but it changed the grouping of
// the sums with the address, and with it the last bit of a reduced loss.

template <class T>
struct alignas(16) Chunk {
  T v[kChunk];
};

template <class T>
__device__ __forceinline__ T negative_infinity() {
  return from_float<T>(-INFINITY);
}

// The columns of a chunk inside the row: element j is in it for lo <= j < hi.
struct Span {
  int lo, hi;
  __device__ __forceinline__ bool has(int j) const { return j >= lo && j < hi; }
};
__device__ __forceinline__ Span span_of(int col0, int cols) {
  return Span{col0 < 0 ? -col0 : 0, cols - col0 < kChunk ? cols - col0 : kChunk};
}
// The whole chunk lies inside the row (col0 may be negative for a row's head chunk).
__device__ __forceinline__ bool whole_chunk(int col0, int cols) {
  return col0 >= 0 && col0 <= cols - kChunk;
}

template <class Word, class T>
__device__ __forceinline__ void load_words(Chunk<T>& chunk, const T* at) {
  constexpr int kWords = sizeof(Chunk<T>) / sizeof(Word);
  const Word* source = reinterpret_cast<const Word*>(at);
#pragma unroll
  for (int i = 0; i < kWords; ++i)
    reinterpret_cast<Word*>(chunk.v)[i] = simcuda::load_vector(source + i);
}

// The elements of a chunk that lie in the row, one by one; the others read as -inf, the neutral
// element of every use below (max, exponential sums). Nothing outside the row is touched.
template <class T>
__device__ __forceinline__ void load_elements(Chunk<T>& chunk, const T* row, int col0, int cols) {
#pragma unroll
  for (int j = 0; j < kChunk; ++j) {
    const int c = col0 + j;
    chunk.v[j] = c >= 0 && c < cols ? row[c] : negative_infinity<T>();
  }
}

// A whole 16-bit chunk 2 bytes past a 4-byte boundary (every row but one in four of an odd
// width) moves in pieces: its first and last elements alone, the six between as three aligned
// 4-byte words, which shifts put back into the chunk's own words. Five accesses where the
// elements took eight, every byte inside the chunk, and one fixed sequence whatever the row's
// offset. f32 has no such case: its misaligned chunks already move in 4-byte words, and pieces
// of 8 bytes at odd word positions cost ptxas register copies (softmax forward's four-chunk f32
// tile went from 96 to 128 registers).
//
// The bits of a 16-bit element.
__device__ __forceinline__ unsigned bits_of(__half value) { return __half_as_ushort(value); }
__device__ __forceinline__ unsigned bits_of(__nv_bfloat16 value) {
  return __bfloat16_as_ushort(value);
}

// Chunk word k holds elements 2k (low half) and 2k + 1 (high half); middle word i holds
// elements 2i + 1 and 2i + 2.
template <class T>
__device__ __forceinline__ void load_pieces(Chunk<T>& chunk, const T* at) {
  static_assert(sizeof(T) == 2);
  const unsigned* middle = reinterpret_cast<const unsigned*>(at + 1);
  unsigned words[4];
  words[0] = bits_of(at[0]);
#pragma unroll
  for (int i = 0; i < 3; ++i) {
    const unsigned pair = simcuda::load_vector(middle + i);
    words[i] |= pair << 16;
    words[i + 1] = pair >> 16;
  }
  words[3] |= bits_of(at[7]) << 16;
#pragma unroll
  for (int k = 0; k < 4; ++k) reinterpret_cast<unsigned*>(chunk.v)[k] = words[k];
}

template <class T>
__device__ __forceinline__ void store_pieces(T* at, const Chunk<T>& chunk) {
  static_assert(sizeof(T) == 2);
  unsigned* middle = reinterpret_cast<unsigned*>(at + 1);
  const unsigned* words = reinterpret_cast<const unsigned*>(chunk.v);
  at[0] = chunk.v[0];
#pragma unroll
  for (int i = 0; i < 3; ++i)
    simcuda::store_vector(middle + i, __funnelshift_r(words[i], words[i + 1], 16));
  at[7] = chunk.v[7];
}

// Chunk `col0` of a row, in the widest words its start allows: 16 bytes on a 16-byte boundary,
// then 8 or 4; with `pieces`, a 16-bit chunk off the 4-byte grid in pieces (load_pieces), where
// it would go element by element without (the loads last measured on a card). A partial chunk,
// and an f32 chunk off the 8-byte grid, go element by element; elements past the row read as
// -inf.
template <class T>
__device__ __forceinline__ void load_chunk(Chunk<T>& chunk, const T* row, int col0, int cols,
                                           bool pieces) {
  if (whole_chunk(col0, cols)) {
    const T* at = row + col0;
    const auto address = reinterpret_cast<std::uintptr_t>(at);
    if (address % 16 == 0) return load_words<uint4>(chunk, at);
    if (address % 8 == 0) return load_words<uint2>(chunk, at);
    if (sizeof(T) == 2 && address % 4 == 0) return load_words<unsigned>(chunk, at);
    if constexpr (sizeof(T) == 2)
      if (pieces) return load_pieces(chunk, at);  // elements are aligned: 2 bytes off
  }
  load_elements(chunk, row, col0, cols);
}

// Element j of a chunk (j is a compile-time constant after unrolling).
template <class T>
__device__ __forceinline__ float element(const Chunk<T>& chunk, int j) {
  return to_float(chunk.v[j]);
}

// A chunk of a tensor whose dtype is a run-time value (dy of softmax backward, soft targets),
// widened to float. The switch is uniform across the launch.
__device__ __forceinline__ void load_chunk_as_float(float (&out)[kChunk], const void* row,
                                                    DType dtype, int col0, int cols,
                                                    bool pieces) {
  switch (dtype) {
    case DType::f16: {
      Chunk<__half> c;
      load_chunk(c, static_cast<const __half*>(row), col0, cols, pieces);
#pragma unroll
      for (int j = 0; j < kChunk; ++j) out[j] = element(c, j);
      break;
    }
    case DType::bf16: {
      Chunk<__nv_bfloat16> c;
      load_chunk(c, static_cast<const __nv_bfloat16*>(row), col0, cols, pieces);
#pragma unroll
      for (int j = 0; j < kChunk; ++j) out[j] = element(c, j);
      break;
    }
    default: {
      Chunk<float> c{};  // {}: as in GlobalRow::for_each
      load_chunk(c, static_cast<const float*>(row), col0, cols, pieces);
#pragma unroll
      for (int j = 0; j < kChunk; ++j) out[j] = element(c, j);
      break;
    }
  }
}

template <class Word, class T>
__device__ __forceinline__ void store_words(T* at, const Chunk<T>& chunk) {
  constexpr int kWords = sizeof(Chunk<T>) / sizeof(Word);
  Word* target = reinterpret_cast<Word*>(at);
#pragma unroll
  for (int i = 0; i < kWords; ++i) {
    const Word word = reinterpret_cast<const Word*>(chunk.v)[i];
    // Outputs are not read again by this kernel, so they should not push the inputs (which
    // the two-pass path re-reads) out of L2.
    if constexpr (sizeof(Word) == 16)
      simcuda::store_vector_streaming(target + i, word);
    else
      simcuda::store_vector(target + i, word);
  }
}

// Stores the values of chunk `col0` that lie in the row, rounded once to T, in the words
// load_chunk reads them with.
template <class T>
__device__ __forceinline__ void store_chunk(T* row, int col0, int cols,
                                            const float (&values)[kChunk], bool pieces) {
  Chunk<T> chunk;
#pragma unroll
  for (int j = 0; j < kChunk; ++j) chunk.v[j] = from_float<T>(values[j]);
  if (whole_chunk(col0, cols)) {
    T* at = row + col0;
    const auto address = reinterpret_cast<std::uintptr_t>(at);
    if (address % 16 == 0) return store_words<uint4>(at, chunk);
    if (address % 8 == 0) return store_words<uint2>(at, chunk);
    if (sizeof(T) == 2 && address % 4 == 0) return store_words<unsigned>(at, chunk);
    if constexpr (sizeof(T) == 2)
      if (pieces) return store_pieces(at, chunk);  // elements are aligned: 2 bytes off
  }
  // A tail chunk: a 16-byte word of it that lies in the row and on a 16-byte boundary still goes
  // out whole.
  constexpr int kWords = sizeof(Chunk<T>) / 16;
  constexpr int kPerWord = kChunk / kWords;
#pragma unroll
  for (int i = 0; i < kWords; ++i) {
    const int first = col0 + i * kPerWord;
    if (kWords > 1 && first >= 0 && first <= cols - kPerWord &&
        reinterpret_cast<std::uintptr_t>(row + first) % 16 == 0) {
      simcuda::store_vector_streaming(reinterpret_cast<uint4*>(row + first),
                                      reinterpret_cast<const uint4*>(chunk.v)[i]);
    } else {
#pragma unroll
      for (int j = 0; j < kPerWord; ++j) {
        const int c = first + j;
        if (c >= 0 && c < cols) row[c] = chunk.v[i * kPerWord + j];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Row sources: where a thread's chunks of one row come from. Both call body(col0, x, span) for
// each of the thread's chunks in increasing order, x widened to float (elements outside the row
// -inf), span the chunk's elements inside the row.
//
// Thread `rank` of a group of `size` owns chunks rank, rank + size, ... Chunk indices, not
// columns, drive the loops, and a column is formed in 64 bits before it is narrowed.
__device__ __forceinline__ int chunk_column(int chunk) {
  return static_cast<int>(std::int64_t{chunk} * kChunk);
}
__device__ __forceinline__ int row_chunks(int cols) {
  return static_cast<int>((std::int64_t{cols} + kChunk - 1) / kChunk);
}

// The thread's chunks of the row held in registers, loaded once (all loads in flight together).
template <class T, int kChunks>
struct RegisterRow {
  Chunk<T> chunk[kChunks];
  int cols;
  int first, step;

  // A tile's loads need no lane shift: its rows are short enough to be aligned in practice
  // (GlobalRow's first visit takes it).
  __device__ __forceinline__ void load(const T* row, int row_cols, int rank, int size,
                                       bool pieces, bool /*lane_shift*/ = false) {
    cols = row_cols;
    first = rank;
    step = size;
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      const int col0 = (first + k * step) * kChunk;
      if (col0 < cols) {
        load_chunk(chunk[k], row, col0, cols, pieces);
      } else {
#pragma unroll
        for (int j = 0; j < kChunk; ++j) chunk[k].v[j] = negative_infinity<T>();
      }
    }
  }

  template <class Body>
  __device__ __forceinline__ void for_each(Body&& body) const {
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      const int col0 = (first + k * step) * kChunk;
      if (col0 < cols) {
        float x[kChunk];
#pragma unroll
        for (int j = 0; j < kChunk; ++j) x[j] = element(chunk[k], j);
        body(col0, x, span_of(col0, cols));
      }
    }
  }
};

// The element of a chunk at column y, for a chunk starting at col0: into `picked`, setting
// `found`, when the chunk holds it; nothing otherwise. A select over the unrolled elements, so
// that the chunk stays in registers (an index into it would put it in local memory).
__device__ __forceinline__ void pick_column(const float (&x)[kChunk], int col0, int y,
                                            float& picked, bool& found) {
  const int y_in_chunk = y - col0;
  if (y_in_chunk < 0 || y_in_chunk >= kChunk) return;
#pragma unroll
  for (int j = 0; j < kChunk; ++j)
    if (j == y_in_chunk) picked = x[j];
  found = true;
}

// The thread's chunks of the row held in registers as float, whatever the row's dtype, so that
// each element's exponential can replace it in place and be used again (FloatRow's use below:
// max, then exponentials once, then their sum). A 16-bit row takes twice the registers of its
// RegisterRow, so these tiles hold at most four chunks (32 registers).
template <int kChunks>
struct FloatRow {
  float v[kChunks][kChunk];
  int first, step;  // the row's length is the caller's: only the loads need it

  template <class T>
  __device__ __forceinline__ void load(const T* row, int cols, int rank, int size, bool pieces,
                                       bool /*lane_shift*/ = false) {
    first = rank;
    step = size;
    // Every load is issued before any is widened, so that all of them are in flight together.
    Chunk<T> raw[kChunks];
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      if (column(k) < cols) {
        load_chunk(raw[k], row, column(k), cols, pieces);
      } else {
#pragma unroll
        for (int j = 0; j < kChunk; ++j) raw[k].v[j] = negative_infinity<T>();
      }
    }
#pragma unroll
    for (int k = 0; k < kChunks; ++k)
#pragma unroll
      for (int j = 0; j < kChunk; ++j) v[k][j] = element(raw[k], j);
  }

  __device__ __forceinline__ int column(int k) const { return (first + k * step) * kChunk; }

  // The largest element (past-the-row elements are -inf; a NaN is passed over, and shows up in
  // its exponential instead), and x[y] on the thread whose chunk holds column y (y = -1: none),
  // which sets `found`.
  __device__ __forceinline__ float max_picking(int y, float& picked, bool& found) const {
    float top = -INFINITY;
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
#pragma unroll
      for (int j = 0; j < kChunk; ++j) top = fmaxf(top, v[k][j]);
      pick_column(v[k], column(k), y, picked, found);
    }
    return top;
  }

  // Replaces every element x by exp(x - shift) (exp_shifted_accurate), and adds this thread's
  // share of s = 1 + rest (the (max, rest) pairs below) to (ones, others): the elements equal to
  // `top` count 1 each, and are stored as exactly 1, apart from the other terms, which are summed
  // pairwise within a chunk, then chunk after chunk, so that a term passes through at most seven
  // float roundings (the partial sums of every chunk at once cost 6 registers more, and the
  // fused kernel spilled). Summed over the row, rest = (ones - 1) + others: the ones and the
  // small terms of a confident row must not meet before the 1 is taken away. `top` is the row's
  // max m and shift m, or for an all -inf row top NaN (no element counts) and shift 0, so that
  // every term is 0. NaN elements give NaN terms, and so does a +inf, whose row is NaN.
  __device__ __forceinline__ void exponentiate(float top, float shift, double& ones,
                                               double& others) {
    float ones_here = 0.0f, others_here = 0.0f;
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      float chunk_ones[kChunk], chunk_others[kChunk];
#pragma unroll
      for (int j = 0; j < kChunk; ++j) {
        const bool at_top = v[k][j] == top;
        const float e = exp_shifted_accurate(v[k][j], shift);
        v[k][j] = at_top ? 1.0f : e;
        chunk_ones[j] = at_top ? 1.0f : 0.0f;
        chunk_others[j] = at_top ? 0.0f : e;
      }
      ones_here += pairwise_sum<kChunk>(chunk_ones);
      others_here = __fadd_rn(others_here, pairwise_sum<kChunk>(chunk_others));
    }
    ones = ones_here;
    others = others_here;
  }

  template <int kCount>
  __device__ __forceinline__ static float pairwise_sum(float (&terms)[kCount]) {
#pragma unroll
    for (int width = kCount / 2; width > 0; width /= 2)
#pragma unroll
      for (int i = 0; i < width; ++i) terms[i] = __fadd_rn(terms[i], terms[i + width]);
    return terms[0];
  }
};

// A warp's step of whole chunks of a row that starts `misalignment` bytes past a 16-byte
// boundary (a multiple of the element size), in aligned 16-byte words only: each lane loads the
// aligned words under its chunk, begun `misalignment` bytes early, takes the bytes it lacks at
// the end from the next lane's first word (the warp's last lane loads that word itself), and
// funnel-shifts them into place: the bits load_chunk would give, with 16-byte loads where a
// misaligned chunk took 8-, 4- or 2-byte ones. Lane l holds chunks first + u * step (u <
// kCount), lane l + 1 the chunks after them. Every lane of the warp must call it together (the
// shuffles), and the caller guarantees that the words read lie in the row's allocation: the
// aligned word that begins a chunk's window shares its 16 bytes with the chunk's first element,
// and the word after the warp's last chunk holds the first element of a whole chunk.
template <int kQuotient, int kWords>
__device__ __forceinline__ void shift_words(const unsigned (&stream)[kWords + 4], unsigned* out,
                                            unsigned bits) {
#pragma unroll
  for (int i = 0; i < kWords; ++i)
    out[i] = __funnelshift_r(stream[kQuotient + i], stream[kQuotient + i + 1], bits);
}

template <class T, int kCount>
__device__ __forceinline__ void load_shifted(Chunk<T> (&raw)[kCount], const T* row,
                                             int first, int step, int misalignment,
                                             bool last_lane) {
  constexpr int kVectors = static_cast<int>(sizeof(Chunk<T>) / 16);
  constexpr int kWords = 4 * kVectors;
  constexpr std::int64_t kChunkBytes = sizeof(Chunk<T>);
  const char* aligned = reinterpret_cast<const char*>(row) - misalignment;
  const auto window = [&](std::int64_t chunk) {
    return reinterpret_cast<const uint4*>(aligned + chunk * kChunkBytes);
  };
  // Each chunk's own words, then the four that follow them: all loads in flight before the
  // first shuffle waits on one.
  unsigned stream[kCount][kWords + 4];
#pragma unroll
  for (int u = 0; u < kCount; ++u) {
    const std::int64_t chunk = first + std::int64_t{u} * step;
#pragma unroll
    for (int v = 0; v < kVectors; ++v) {
      const uint4 word = simcuda::load_vector(window(chunk) + v);
      stream[u][4 * v] = word.x;
      stream[u][4 * v + 1] = word.y;
      stream[u][4 * v + 2] = word.z;
      stream[u][4 * v + 3] = word.w;
    }
    const uint4 next =
        last_lane ? simcuda::load_vector(window(chunk + 1)) : make_uint4(0, 0, 0, 0);
    stream[u][kWords] = next.x;
    stream[u][kWords + 1] = next.y;
    stream[u][kWords + 2] = next.z;
    stream[u][kWords + 3] = next.w;
  }
#pragma unroll
  for (int u = 0; u < kCount; ++u) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const unsigned from_next = __shfl_down_sync(kFullMask, stream[u][i], 1);
      if (!last_lane) stream[u][kWords + i] = from_next;
    }
    unsigned* out = reinterpret_cast<unsigned*>(raw[u].v);
    const unsigned bits = 8u * static_cast<unsigned>(misalignment % 4);
    switch (misalignment / 4) {
      case 0: shift_words<0, kWords>(stream[u], out, bits); break;
      case 1: shift_words<1, kWords>(stream[u], out, bits); break;
      case 2: shift_words<2, kWords>(stream[u], out, bits); break;
      default: shift_words<3, kWords>(stream[u], out, bits); break;
    }
  }
}

// The row read from global memory (block_two_pass, block_shared, cluster_shared), kUnroll chunks
// per step so that each thread has several 16-byte loads in flight. With a staging area
// (block_shared, cluster_shared) the first visit also copies every chunk into shared memory and
// later visits read it from there: the row crosses the memory bus once. A thread stages exactly
// the chunks it owns and reads back only those, so no barrier guards the staging area, also
// from one row to the next. A block that is the row's group stages chunk c in slot c; in a
// cluster (kInCluster) the k-th chunk of thread t of the block goes to slot k blockDim + t. The
// area holds 16-byte word i of slot s at i * staging_chunks + s: a warp's accesses are then 16
// consecutive bytes per lane, free of bank conflicts also for f32's two words per chunk.
template <class T, bool kInCluster = false>
struct GlobalRow {
  static constexpr int kUnroll = 4;
  static constexpr int kWords = sizeof(Chunk<T>) / 16;
  const T* row;
  int cols;
  int first, step;
  uint4* staging = nullptr;  // block_shared's area, or null
  int staging_chunks = 0;    // its slots per word plane: the most chunks a block stages
  bool staged = false;       // a visit of this row has filled the area
  bool visited = false;      // for_each has read the row once
  bool pieces = false;       // misaligned chunks in aligned pieces (load_chunk)
  bool lanes = false;        // a misaligned row's first visit in aligned words (load_shifted)

  __device__ __forceinline__ void load(const T* row_data, int row_cols, int rank, int size,
                                       bool chunk_pieces, bool lane_shift = false) {
    row = row_data;
    cols = row_cols;
    first = rank;
    step = size;
    staged = false;
    visited = false;
    pieces = chunk_pieces;
    lanes = lane_shift && !kInCluster;
  }

  __device__ __forceinline__ void stage(const Chunk<T>& chunk, int slot) const {
#pragma unroll
    for (int i = 0; i < kWords; ++i)
      staging[i * staging_chunks + slot] = reinterpret_cast<const uint4*>(chunk.v)[i];
  }
  __device__ __forceinline__ void unstage(Chunk<T>& chunk, int slot) const {
#pragma unroll
    for (int i = 0; i < kWords; ++i)
      reinterpret_cast<uint4*>(chunk.v)[i] = staging[i * staging_chunks + slot];
  }

  template <class Body>
  __device__ __forceinline__ void visit(const Chunk<T>& raw, int c, Body& body) const {
    float x[kChunk];
#pragma unroll
    for (int j = 0; j < kChunk; ++j) x[j] = element(raw, j);
    const int col0 = chunk_column(c);
    body(col0, x, span_of(col0, cols));
  }

  template <class Body>
  __device__ __forceinline__ void for_each(Body&& body) {
    const int chunks = row_chunks(cols);
    // In a cluster, `slot` follows c; elsewhere the slot is c itself, and `slot` is dead code.
    const int slot_step = static_cast<int>(blockDim.x);
    const auto slot_of = [](int c, int slot) { return kInCluster ? slot : c; };
    if (staged) {
      for (int c = first, slot = threadIdx.x; c < chunks; c += step, slot += slot_step) {
        Chunk<T> raw;
        unstage(raw, slot_of(c, slot));
        visit(raw, c, body);
      }
      return;
    }
    int c = first, slot = threadIdx.x;
    // A misaligned row's first visit moves in aligned 16-byte words (load_shifted) where its
    // warp takes a whole step together: every chunk of the step and the chunk after the warp's
    // last are whole, and the warp's first is not the row's first (whose window would begin
    // before the row). Only a first visit that writes nothing over the row (the caller's
    // `lane_shift` is off for one that writes in place as it reads): the next lane's words are
    // another thread's chunk, which another warp may be writing by then. The steps are then
    // counted per warp, so that all of its lanes shuffle together; which chunks a thread
    // visits, in which order, does not change.
    const int misalignment = static_cast<int>(reinterpret_cast<std::uintptr_t>(row) % 16);
    const bool shifting = lanes && !visited && misalignment != 0 &&
                          misalignment % static_cast<int>(sizeof(T)) == 0 &&
                          step % kWarpSize == 0;
    const int lane = first % kWarpSize;
    const int whole_chunks = cols / kChunk;
    for (;; c += kUnroll * step, slot += kUnroll * slot_step) {
      const int warp_first = c - lane;
      const int last = (shifting ? warp_first + kWarpSize - 1 : c) + (kUnroll - 1) * step;
      if (last >= chunks) break;
      Chunk<T> raw[kUnroll];
      if (shifting && warp_first >= 1 && last + 1 < whole_chunks) {
        load_shifted(raw, row, c, step, misalignment, lane == kWarpSize - 1);
      } else {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          load_chunk(raw[u], row, chunk_column(c + u * step), cols, pieces);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (staging != nullptr) stage(raw[u], slot_of(c + u * step, slot + u * slot_step));
        visit(raw[u], c + u * step, body);
      }
    }
    for (; c < chunks; c += step, slot += slot_step) {
      Chunk<T> raw{};  // {}: for g++ -O3 in the simulator, which cannot see the word stores
      load_chunk(raw, row, chunk_column(c), cols, pieces);
      if (staging != nullptr) stage(raw, slot_of(c, slot));
      visit(raw, c, body);
    }
    staged = staging != nullptr;
    visited = true;
  }
};

// Calls body(col0, span) for each chunk this thread owns in a row of `cols` elements, without
// loading anything (for per-column inputs of another tensor).
template <class Body>
__device__ __forceinline__ void for_each_owned_chunk(int cols, int rank, int size, Body&& body) {
  const int chunks = row_chunks(cols);
  for (int c = rank; c < chunks; c += size) {
    const int col0 = chunk_column(c);
    body(col0, span_of(col0, cols));
  }
}

// ---------------------------------------------------------------------------------------------
// (max, rest) pairs. Over the elements seen, m is their max and s = sum exp(x - m) = 1 + r: the
// first maximum's own term, exactly 1, is kept apart, and r sums every other term (a tie for the
// maximum brings its 1 into r). Then log s = log1p(r) keeps its relative accuracy where r is
// below float's 2^-24, as it is for a confident row, whose loss and log-probability are about
// r: log(1 + r) would round them to 0. Every term of r is non-negative, so merging never
// cancels. Nothing seen (or only -inf): m = -inf, r = -1 (s = 0). A NaN element makes r NaN;
// a +inf element makes r NaN too (inf - inf), which is the answer for such a row.
//
// The terms are exact to 2 ulp (exp_shifted_accurate) and a chunk's eight are added in float;
// r itself is a double, per thread and across threads, so that its relative error stays near
// that of one term for any row length (a float sum over a thread's chunks would lose about
// 2^-24 per chunk: 2^-18 over the 64 chunks of a 262144-class row).

// Folds (m2, r2) into (m, r). Commutative bit for bit, so both lanes of a butterfly exchange end
// with identical values: the side with the larger max comes first, a tie (e = 1) keeps each
// lane's own side first, and r_a + r_b is one commutative addition; the roundings are explicit
// so that no FMA contraction differs between the two orders. When both sides are empty,
// e = 1 keeps -1 + -1 + 1 = -1, and a NaN rest still comes through.
__device__ __forceinline__ void merge_max_rest(float& m, double& r, float m2, double r2) {
  const bool other_first = m2 > m;
  const float m_first = other_first ? m2 : m, m_second = other_first ? m : m2;
  const double r_first = other_first ? r2 : r, r_second = other_first ? r : r2;
  // The second side's s = 1 + r_second, rescaled to the first side's max.
  const double e = m_first == -INFINITY ? 1.0 : exp_shifted_accurate(m_second, m_first);
  r = __dadd_rn(__dadd_rn(r_first, __dmul_rn(r_second, e)), e);
  m = fmaxf(m, m2);
}

// Adds a chunk to the running pair; elements past the row must be -inf. Every term is taken
// relative to the new max, once; only a chunk that raises the max rescales what came before.
__device__ __forceinline__ void add_chunk_max_rest(float& m, double& r,
                                                   const float (&x)[kChunk]) {
  float top = x[0];
#pragma unroll
  for (int j = 1; j < kChunk; ++j) top = fmaxf(top, x[j]);
  const bool raises = top > m;
  const float new_m = raises ? top : m;
  const float shift = new_m == -INFINITY ? 0.0f : new_m;
  // A chunk that raises the max brings it: its first maximum is the new 1, kept apart from r,
  // and every other maximum adds its 1 (ties, counted without a chain from element to element).
  // Past-the-row -inf padding adds exp(-inf) = 0; a NaN adds NaN; a +inf max makes inf - inf.
  // Every term is computed and the new maximum's masked by a factor 0: a conditional would cost
  // a branch around every exponential.
  float rest = 0.0f, ties = 0.0f;
#pragma unroll
  for (int j = 0; j < kChunk; ++j) {
    const float at_new_top = raises && x[j] == top ? 1.0f : 0.0f;
    ties += at_new_top;
    rest = __fmaf_rn(exp_shifted_accurate(x[j], shift), 1.0f - at_new_top, rest);
  }
  if (raises) rest += ties - 1.0f;
  if (top == INFINITY) rest = NAN;
  r = raises ? (1.0 + r) * static_cast<double>(exp_shifted_accurate(m, top)) + rest : r + rest;
  m = new_m;
}

// ---------------------------------------------------------------------------------------------
// The threads of one row.

// A row's group is a power of two of threads up to 32, a whole block, or the blocks of a
// cluster (cluster_shared), which then reduce in two steps: each block as a block-wide group,
// then the blocks' results, added by every block in rank order through distributed shared
// memory, so that every thread of the cluster ends with the same bits. A cluster's count and
// this block's place in it come from the hardware when needed, and its exchange slot is the
// first 16 bytes of the block's dynamic shared memory, a fixed address: none of them holds a
// register through the row (the kernels that may run in clusters use up to 128 already).
struct RowGroup {
  int size;  // threads per row
  int rank;  // this thread's index in the row
  double2* exchange;  // kMaxWarps entries of shared memory, used when size > 32
  bool clustered;     // the row's threads span the blocks of a cluster

  // The caller keeps the exchange buffer alive (a __shared__ array of the kernel).
  __device__ __forceinline__ static RowGroup make(int size, double2* exchange) {
    return RowGroup{size, static_cast<int>(threadIdx.x) % size, exchange, false};
  }
  // The blocks of the launch's cluster as the row's group.
  __device__ __forceinline__ static RowGroup make_cluster(double2* exchange) {
    const int block = static_cast<int>(blockDim.x);
    return RowGroup{block * static_cast<int>(simcuda::cluster_blocks()),
                    static_cast<int>(simcuda::cluster_block_rank()) * block +
                        static_cast<int>(threadIdx.x),
                    exchange, true};
  }
  // The group's threads in this block.
  __device__ __forceinline__ int block_size() const {
    return clustered ? static_cast<int>(blockDim.x) : size;
  }

  // The blocks' results combined in rank order, the same on every thread of the cluster. The
  // second barrier keeps each block's slot (and the block itself) until every block has read it.
  template <class Combine>
  __device__ __forceinline__ double2 across_cluster(double2 mine, double2 identity,
                                                    Combine combine) const {
    SIMCUDA_DYNAMIC_SHARED(double2, slot);
    if (threadIdx.x == 0) *slot = mine;
    simcuda::cluster_sync();
    double2 all = identity;
    const unsigned blocks = simcuda::cluster_blocks();
    for (unsigned b = 0; b < blocks; ++b) all = combine(all, *simcuda::cluster_map_shared(slot, b));
    simcuda::cluster_sync();
    return all;
  }
  // A cluster's blocks share their one row.
  __device__ __forceinline__ int rows_per_block() const {
    return static_cast<int>(blockDim.x) / block_size();
  }
  __device__ __forceinline__ int row_in_block() const {
    return static_cast<int>(threadIdx.x) / block_size();
  }
  // The grid-stride loop over tiles: a cluster takes the tiles of one block.
  __device__ __forceinline__ std::int64_t first_tile() const {
    return clustered ? blockIdx.x / simcuda::cluster_blocks() : blockIdx.x;
  }
  __device__ __forceinline__ std::int64_t tile_stride() const {
    return clustered ? gridDim.x / simcuda::cluster_blocks() : gridDim.x;
  }

  // Orders this thread's reads of the row before other threads' writes to it (in-place outputs).
  // Block-wide groups are ordered by the barriers of their reductions already.
  __device__ __forceinline__ void order_reads_before_writes() const {
    if (size <= kWarpSize) __syncwarp();
  }

  // Every thread of the row ends with the same (max, rest) of the row.
  __device__ __forceinline__ void reduce_max_rest(float& m, double& r) const {
    const int width = block_size() < kWarpSize ? block_size() : kWarpSize;
    for (int offset = width / 2; offset > 0; offset /= 2) {
      const float m2 = __shfl_xor_sync(kFullMask, m, offset);
      const double r2 = __shfl_xor_sync(kFullMask, r, offset);
      merge_max_rest(m, r, m2, r2);
    }
    if (block_size() > kWarpSize) {
      const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
      const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
      if (lane == 0) exchange[warp] = make_double2(m, r);
      __syncthreads();
      m = -INFINITY;
      r = -1.0;
      for (int w = 0; w < block_size() / kWarpSize; ++w)
        merge_max_rest(m, r, static_cast<float>(exchange[w].x), exchange[w].y);
      __syncthreads();
    }
    if (clustered) {
      const double2 all = across_cluster(make_double2(m, r), make_double2(-INFINITY, -1.0),
                                         [](double2 a, double2 b) {
                                           float am = static_cast<float>(a.x);
                                           merge_max_rest(am, a.y, static_cast<float>(b.x), b.y);
                                           return make_double2(am, a.y);
                                         });
      m = static_cast<float>(all.x);
      r = all.y;
    }
  }

  // Every thread of the row ends with the largest of the threads' values (fmaxf: a NaN only
  // where every value is NaN).
  __device__ __forceinline__ float reduce_max(float value) const {
    const int width = block_size() < kWarpSize ? block_size() : kWarpSize;
    for (int offset = width / 2; offset > 0; offset /= 2)
      value = fmaxf(value, __shfl_xor_sync(kFullMask, value, offset));
    if (block_size() > kWarpSize) {
      const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
      const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
      if (lane == 0) exchange[warp].x = value;
      __syncthreads();
      value = -INFINITY;
      for (int w = 0; w < block_size() / kWarpSize; ++w)
        value = fmaxf(value, static_cast<float>(exchange[w].x));
      __syncthreads();
    }
    if (clustered) {
      value = static_cast<float>(
          across_cluster(make_double2(value, 0.0), make_double2(-INFINITY, 0.0),
                         [](double2 a, double2 b) {
                           return make_double2(fmax(a.x, b.x), 0.0);
                         })
              .x);
    }
    return value;
  }

  // Every thread of the row ends with the row's (largest value, its first index), from each
  // thread's own best (take_larger); a thread with no element holds (-inf, INT_MAX).
  __device__ __forceinline__ void reduce_argmax(float& value, int& index) const {
    const int width = block_size() < kWarpSize ? block_size() : kWarpSize;
    for (int offset = width / 2; offset > 0; offset /= 2) {
      const float value2 = __shfl_xor_sync(kFullMask, value, offset);
      const int index2 = __shfl_xor_sync(kFullMask, index, offset);
      take_larger(value, index, value2, index2);
    }
    if (block_size() > kWarpSize) {
      const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
      const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
      if (lane == 0) exchange[warp] = make_double2(value, index);
      __syncthreads();
      value = -INFINITY;
      index = INT_MAX;
      for (int w = 0; w < block_size() / kWarpSize; ++w)
        take_larger(value, index, static_cast<float>(exchange[w].x),
                    static_cast<int>(exchange[w].y));
      __syncthreads();
    }
    if (clustered) {
      const double2 all = across_cluster(make_double2(value, index),
                                         make_double2(-INFINITY, INT_MAX),
                                         [](double2 a, double2 b) {
                                           float v = static_cast<float>(a.x);
                                           int i = static_cast<int>(a.y);
                                           take_larger(v, i, static_cast<float>(b.x),
                                                       static_cast<int>(b.y));
                                           return make_double2(v, i);
                                         });
      value = static_cast<float>(all.x);
      index = static_cast<int>(all.y);
    }
  }

  // Every thread of the row ends with the smallest of the threads' values.
  __device__ __forceinline__ unsigned reduce_min(unsigned value) const {
    const int width = block_size() < kWarpSize ? block_size() : kWarpSize;
    for (int offset = width / 2; offset > 0; offset /= 2) {
      const unsigned other = __shfl_xor_sync(kFullMask, value, offset);
      value = other < value ? other : value;
    }
    if (block_size() > kWarpSize) {
      const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
      const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
      if (lane == 0) exchange[warp].x = value;
      __syncthreads();
      value = UINT_MAX;
      for (int w = 0; w < block_size() / kWarpSize; ++w) {
        const auto other = static_cast<unsigned>(exchange[w].x);
        value = other < value ? other : value;
      }
      __syncthreads();
    }
    if (clustered) {
      const double2 all = across_cluster(make_double2(value, 0.0), make_double2(UINT_MAX, 0.0),
                                         [](double2 a, double2 b) {
                                           return b.x < a.x ? b : a;
                                         });
      value = static_cast<unsigned>(all.x);
    }
    return value;
  }

  // Every thread of the row ends with the same sum (fixed order: reproducible).
  __device__ __forceinline__ double reduce_sum(double value) const {
    const int width = block_size() < kWarpSize ? block_size() : kWarpSize;
    for (int offset = width / 2; offset > 0; offset /= 2)
      value += __shfl_xor_sync(kFullMask, value, offset);
    if (block_size() > kWarpSize) {
      const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
      const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
      if (lane == 0) exchange[warp].x = value;
      __syncthreads();
      value = 0.0;
      for (int w = 0; w < block_size() / kWarpSize; ++w) value += exchange[w].x;
      __syncthreads();
    }
    if (clustered) {
      value = across_cluster(make_double2(value, 0.0), make_double2(0.0, 0.0),
                             [](double2 a, double2 b) { return make_double2(a.x + b.x, 0.0); })
                  .x;
    }
    return value;
  }

  // reduce_sum of two values at once: one exchange for both.
  __device__ __forceinline__ void reduce_sum_pair(double& a, double& b) const {
    const int width = block_size() < kWarpSize ? block_size() : kWarpSize;
    for (int offset = width / 2; offset > 0; offset /= 2) {
      a += __shfl_xor_sync(kFullMask, a, offset);
      b += __shfl_xor_sync(kFullMask, b, offset);
    }
    if (block_size() > kWarpSize) {
      const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
      const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
      if (lane == 0) exchange[warp] = make_double2(a, b);
      __syncthreads();
      a = 0.0;
      b = 0.0;
      for (int w = 0; w < block_size() / kWarpSize; ++w) {
        a += exchange[w].x;
        b += exchange[w].y;
      }
      __syncthreads();
    }
    if (clustered) {
      const double2 all = across_cluster(make_double2(a, b), make_double2(0.0, 0.0),
                                         [](double2 x, double2 y) {
                                           return make_double2(x.x + y.x, x.y + y.y);
                                         });
      a = all.x;
      b = all.y;
    }
  }
};

// The tiles of rows this block runs, and this thread's row in each.
struct RowTiles {
  std::int64_t rows;
  int rows_per_block;
  int row_in_block;

  __device__ __forceinline__ std::int64_t count() const {
    return (rows + rows_per_block - 1) / rows_per_block;
  }
  __device__ __forceinline__ std::int64_t row_of(std::int64_t tile) const {
    return tile * rows_per_block + row_in_block;
  }
};

// Runs process(row, r) for this thread's row r of every tile the block takes, the row loaded by
// load(row, r) into a register tile. With `prefetch`, the next tile's row is loaded before the
// current one is processed, so its loads are in flight during this row's reductions: a bf16 row
// of 256 is one 16-byte load per lane, and a thread group that waits on its reduction before it
// issues the next row's loads leaves memory idle. Rows are disjoint, so loading the next row
// before writing this one's outputs is safe also in place. Tile bounds are uniform over the
// block, so every thread runs the same iterations.
template <class Row, class Load, class Process>
__device__ __forceinline__ void for_each_row_tile(const RowTiles& tiles, bool prefetch,
                                                  Load&& load, Process&& process) {
  const std::int64_t count = tiles.count();
  const std::int64_t stride = gridDim.x;
  if (!prefetch) {
    for (std::int64_t tile = blockIdx.x; tile < count; tile += stride) {
      Row row;
      load(row, tiles.row_of(tile));
      process(row, tiles.row_of(tile));
    }
    return;
  }
  // Two tiles, named rather than indexed: an array indexed by the loop would live in local memory.
  Row current, next;
  std::int64_t tile = blockIdx.x;
  if (tile < count) load(current, tiles.row_of(tile));
  for (; tile < count; tile += 2 * stride) {
    const std::int64_t second = tile + stride;
    if (second < count) load(next, tiles.row_of(second));
    process(current, tiles.row_of(tile));
    if (second >= count) break;
    if (second + stride < count) load(current, tiles.row_of(second + stride));
    process(next, tiles.row_of(second));
  }
}

// ---------------------------------------------------------------------------------------------
// Host side: launch geometry of the dispatch paths.

// The chunk count of cluster_shared's kernels: the row in global memory, staged in the shared
// memory of a cluster's blocks. Kernels instantiated for it apart from those for 0 keep the
// cluster's work out of the paths that never run in clusters.
constexpr int kClusterChunks = -1;

struct RowLaunch {
  RowAlgorithm algorithm = RowAlgorithm::block_two_pass;
  int chunks = 0;           // register chunks per thread; 0 = the row stays in global memory
                            // (kClusterChunks: over a cluster)
  int threads_per_row = 0;  // group size
  int block = 0;            // threads per block
  unsigned grid = 0;
  int staging_chunks = 0;   // block_shared: chunks of the staging area (GlobalRow), else 0
  bool prefetch = false;    // load a group's next row before reducing this one (for_each_row_tile)
  bool chunk_pieces = true;  // misaligned chunks move in aligned pieces (load_chunk, store_chunk)
  bool lane_shift = true;    // GlobalRow's first visit of a misaligned row: load_shifted
  std::size_t shared_bytes = 0;  // block_shared, cluster_shared: a block's dynamic shared memory
  int cluster_blocks = 1;   // cluster_shared: blocks per cluster (grid is a multiple); else 1
  bool float_tile = false;  // the row on chip as float (FloatRow; plan_float_tile)
  int resident_blocks = 0;  // blocks per SM, whole waves of the plan's kernels
                            // (count_resident_blocks); 0: not counted, the grid follows threads
                            // and shared memory alone
};


// Shared memory a block uses besides the staging area: the row kernels' static arrays (under
// 1 KiB), which count against the block's opt-in limit, and the 1 KiB the hardware reserves per
// block on sm_80 and sm_90, which counts against the SM's.
constexpr std::int64_t kStaticSharedBytes = 1024;
constexpr std::int64_t kReservedSharedBytes = 1024;

constexpr int kSmallRowBlock = 256;        // rows_per_warp and warp_per_row: 8 warps per block
constexpr int kMinBlockRowThreads = 64;    // block paths always reduce across warps
constexpr int kTwoPassChunksPerThread = 4;  // sizes the two-pass block for short forced rows

inline int next_power_of_two(std::int64_t n) {
  int p = 1;
  while (p < n) p *= 2;
  return p;
}

inline int round_up_to_warps(std::int64_t threads) {
  const std::int64_t warps = (threads + kWarpSize - 1) / kWarpSize;
  return static_cast<int>(warps * kWarpSize);
}

// Threads per block of the global-memory paths: about kTwoPassChunksPerThread chunks each, from
// 64 to 512.
inline int global_row_block(std::int64_t chunks) {
  const int threads =
      round_up_to_warps((chunks + kTwoPassChunksPerThread - 1) / kTwoPassChunksPerThread);
  return threads < kMinBlockRowThreads ? kMinBlockRowThreads
         : threads > detail::row_limits::kMaxThreadsPerRow
             ? detail::row_limits::kMaxThreadsPerRow
             : threads;
}

// cluster_shared: a row of `chunks` over a cluster whose blocks each stage the same whole number
// of chunks per thread, plus the slot of the cluster's exchange: the fewest blocks that hold it.
// More blocks would not put more of them on an SM: at 104-124 registers (ptxas, sm_90) a block of
// 512 threads has an SM's registers to itself, so the SMs' count bounds the blocks in flight
// whatever the cluster's size, and each block more costs every cluster barrier an arrival. False
// where the device has no clusters or no cluster holds the row.
inline bool plan_cluster_row(RowLaunch& launch, RowOp op, std::int64_t chunks, DType dtype,
                             const DeviceInfo& device) {
  using detail::row_limits::kClusterSlotBytes;
  using detail::row_limits::kMaxClusterBlocks;
  if (!device.cluster_launch) return false;
  const std::int64_t chunk_bytes = detail::staged_chunk_bytes(op, dtype);
  // A short row forced onto this path still takes two blocks, each sized as two-pass would.
  const int threads = global_row_block((chunks + 1) / 2);
  const std::int64_t fits = std::int64_t{device.max_shared_per_block_optin} - kStaticSharedBytes;
  for (int blocks = 2; blocks <= kMaxClusterBlocks; ++blocks) {
    const std::int64_t per_thread =
        (chunks + std::int64_t{blocks} * threads - 1) / (std::int64_t{blocks} * threads);
    const std::int64_t bytes = per_thread * threads * chunk_bytes + kClusterSlotBytes;
    if (bytes > fits) continue;
    launch.algorithm = RowAlgorithm::cluster_shared;
    launch.chunks = kClusterChunks;
    launch.cluster_blocks = blocks;
    launch.block = threads;
    launch.threads_per_row = threads * blocks;
    launch.staging_chunks = static_cast<int>(per_thread * threads);
    launch.shared_bytes = static_cast<std::size_t>(bytes);
    return true;
  }
  return false;
}

// The grid of a plan whose geometry is set (plan_row_launch, plan_float_tile).
inline void size_row_grid(RowLaunch& launch, std::int64_t rows, const DeviceInfo& device) {
  const int rows_per_block =
      launch.cluster_blocks > 1 ? 1 : launch.block / launch.threads_per_row;
  // Where the launcher did not count its kernels' residency (count_resident_blocks), at most as
  // many blocks as the device can hold at full thread occupancy (an upper bound on residency:
  // registers may allow fewer); grid-stride loops take the rest. The two-pass path
  // runs one row per SM at a time, so that the rows being read twice stay within L2 between
  // their two reads (132 rows of 128K bf16 logits are 33 MB; the H100's L2 is 50 MB).
  std::int64_t per_sm = device.max_threads_per_sm / launch.block;
  if (per_sm > 32) per_sm = 32;
  if (launch.algorithm == RowAlgorithm::block_shared ||
      launch.algorithm == RowAlgorithm::cluster_shared) {
    // As many blocks as the SM's shared memory holds (the occupancy it will really have).
    const std::int64_t by_shared = std::int64_t{device.max_shared_per_sm} /
                                   (static_cast<std::int64_t>(launch.shared_bytes) +
                                    kStaticSharedBytes + kReservedSharedBytes);
    if (by_shared < per_sm) per_sm = by_shared;
  }
  // Registers too, where the launcher counted them (count_resident_blocks, which includes the
  // threads and shared memory): a block of 512 threads at 128 registers has an SM to itself
  // whatever its threads would allow.
  if (launch.resident_blocks > 0) per_sm = launch.resident_blocks;
  if (per_sm < 1) per_sm = 1;
  if (launch.algorithm == RowAlgorithm::block_two_pass) per_sm = 1;
  const std::int64_t sms = device.sm_count > 0 ? device.sm_count : 1;
  std::int64_t cap = sms * per_sm;
  if (const std::int64_t limit = detail::row_grid_limit(); limit > 0 && limit < cap) cap = limit;
  if (launch.cluster_blocks > 1) {
    // One row per cluster at a time; whole clusters only.
    std::int64_t cluster_cap = cap / launch.cluster_blocks;
    if (cluster_cap < 1) cluster_cap = 1;
    launch.grid = static_cast<unsigned>(grid_size_for(rows, 1, cluster_cap) *
                                        static_cast<unsigned>(launch.cluster_blocks));
    return;
  }
  launch.grid = grid_size_for(rows, rows_per_block, cap);
}

// The launch of a rows x cols problem of `op` whose held elements have `dtype`. Depends only on
// the shape, the dtype, the forced algorithm and the device, never on pointers or timing, so the
// per-block partial sums of a reduction are the same on every call. `clusters` false: the
// kernel that will run has no cluster instantiation, and cluster_shared plans block_two_pass.
inline RowLaunch plan_row_launch(RowOp op, std::int64_t rows, std::int64_t cols, DType dtype,
                                 const DeviceInfo& device, bool clusters = true) {
  RowLaunch launch;
  launch.algorithm = detail::chosen_row_algorithm(op, cols, dtype);
  const std::int64_t chunks = (cols + kChunk - 1) / kChunk;
  const int max_chunks = detail::row_limits::max_chunks_per_thread(op, dtype);
  switch (launch.algorithm) {
    case RowAlgorithm::rows_per_warp:
      launch.chunks = 1;
      launch.threads_per_row = next_power_of_two(chunks);
      launch.block = kSmallRowBlock;
      break;
    case RowAlgorithm::warp_per_row:
      launch.chunks = next_power_of_two((chunks + kWarpSize - 1) / kWarpSize);
      launch.threads_per_row = kWarpSize;
      launch.block = kSmallRowBlock;
      break;
    case RowAlgorithm::block_on_chip: {
      // The most chunks per thread, so the fewest threads per row: more rows resident per SM and
      // cheaper reductions, with each thread's loads all in flight at once.
      launch.chunks = max_chunks;
      const int threads = round_up_to_warps((chunks + max_chunks - 1) / max_chunks);
      launch.threads_per_row = threads < kMinBlockRowThreads ? kMinBlockRowThreads : threads;
      launch.block = launch.threads_per_row;
      break;
    }
    case RowAlgorithm::cluster_shared:
      if (clusters && plan_cluster_row(launch, op, chunks, dtype, device)) break;
      // Without clusters: the row read once where one block can stage it (forced onto this
      // path), else twice.
      launch.algorithm = cols <= detail::row_algorithm_max_classes(op, RowAlgorithm::block_shared,
                                                                   dtype)
                             ? RowAlgorithm::block_shared
                             : RowAlgorithm::block_two_pass;
      [[fallthrough]];
    case RowAlgorithm::block_shared:
    case RowAlgorithm::automatic:
    case RowAlgorithm::block_two_pass: {
      // Staged when the device's blocks can hold the row's grid (sm_80 has less than sm_90).
      const std::int64_t staging_bytes = chunks * detail::staged_chunk_bytes(op, dtype);
      const bool staged = launch.algorithm == RowAlgorithm::block_shared &&
                          staging_bytes + kStaticSharedBytes <=
                              std::int64_t{device.max_shared_per_block_optin};
      launch.algorithm = staged ? RowAlgorithm::block_shared : RowAlgorithm::block_two_pass;
      if (staged) {
        launch.staging_chunks = static_cast<int>(chunks);
        launch.shared_bytes = static_cast<std::size_t>(staging_bytes);
      }
      launch.chunks = 0;
      launch.threads_per_row = global_row_block(chunks);
      launch.block = launch.threads_per_row;
      break;
    }
  }
  // Short rows only: a tile of one or two chunks leaves room for a second one in registers.
  launch.prefetch = (launch.chunks == 1 || launch.chunks == 2) && detail::row_prefetch();
  launch.chunk_pieces = detail::row_chunk_pieces();
  launch.lane_shift = detail::row_lane_shift();
  size_row_grid(launch, rows, device);
  return launch;
}

// Turns an on-chip plan into one for a FloatRow tile of at most `max_chunks` (4 or 2) chunks a
// thread, for a kernel that holds the row as float: a larger block_on_chip tile becomes one that
// many chunks over proportionally more threads. False, with the plan unchanged, where the row
// stays in memory, would need more than a block's threads, or is a warp's (warp_per_row) with a
// larger tile: spreading it over a block would trade the warp's shuffles for block barriers,
// a change no card has measured.
inline bool plan_float_tile(RowLaunch& launch, std::int64_t rows, const DeviceInfo& device,
                            int max_chunks) {
  if (launch.chunks <= 0 || launch.cluster_blocks > 1) return false;
  if (launch.chunks > max_chunks) {
    const int threads = launch.threads_per_row * (launch.chunks / max_chunks);
    if (launch.algorithm != RowAlgorithm::block_on_chip ||
        threads > detail::row_limits::kMaxThreadsPerRow)
      return false;
    launch.chunks = max_chunks;
    launch.threads_per_row = threads;
    launch.block = threads;
  }
  launch.float_tile = true;
  size_row_grid(launch, rows, device);
  return true;
}


// Columns are int32 in the kernels; longer rows are refused before anything is launched.
inline Status check_row_length(std::int64_t cols, const char* argument) {
  if (cols <= detail::row_limits::kMaxTwoPassClasses) return {};
  return Status(StatusCode::unsupported, argument,
                std::string(argument) + ": at most " +
                    std::to_string(detail::row_limits::kMaxTwoPassClasses) +
                    " per row on CUDA (got " + std::to_string(cols) + ")");
}

// Calls f(DTypeTag<T>{}) with T the element type of `dtype`, so a launcher can instantiate its
// kernel template for the run-time dtype; nested calls cover a pair of dtypes.
template <class T>
struct DTypeTag {
  using type = T;
};

template <class F>
Status with_dtype(const char* op, DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: return f(DTypeTag<float>{});
    case DType::f16: return f(DTypeTag<__half>{});
    case DType::bf16: return f(DTypeTag<__nv_bfloat16>{});
  }
  return Status(StatusCode::internal, "", std::string(op) + ": unexpected dtype");
}

// Runs `launch_with(std::integral_constant<int, C>{})` for C == chunks: the chunk counts the row
// kernels are instantiated for (0: the row stays in global memory; kClusterChunks: over a
// cluster; 1, 2, 4 or 8 chunks of eight elements held per thread), up to the kernel's register
// budget MaxChunks; kClusterChunks only for kernels that run in clusters (kClusters). Any other
// count means the launch plan and the instantiations disagree.
template <int MaxChunks, bool kClusters, class LaunchWith>
cudaError_t launch_for_chunks(int chunks, LaunchWith&& launch_with) {
  switch (chunks) {
    case kClusterChunks:
      if constexpr (kClusters)
        return launch_with(std::integral_constant<int, kClusterChunks>{});
      break;
    case 0: return launch_with(std::integral_constant<int, 0>{});
    case 1: return launch_with(std::integral_constant<int, 1>{});
    case 2:
      if constexpr (MaxChunks >= 2) return launch_with(std::integral_constant<int, 2>{});
      break;
    case 4:
      if constexpr (MaxChunks >= 4) return launch_with(std::integral_constant<int, 4>{});
      break;
    case 8:
      if constexpr (MaxChunks >= 8) return launch_with(std::integral_constant<int, 8>{});
      break;
    default: break;
  }
  return cudaErrorInvalidConfiguration;
}

// Launch bounds of the row kernels. A register tile smaller than the op's largest
// (kLargestTile chunks) runs only in the 256-thread blocks of rows_per_warp and warp_per_row,
// since block_on_chip takes the most chunks: there a cap of 80 registers lets three blocks share
// an SM, which short rows need to keep enough loads in flight. Everything else may use 128
// registers in blocks of up to 512 threads. The minimum of one block per SM is stated: without
// it ptxas held several row kernels to 64 registers and spilled (sm_90, CUDA 13). A kernel
// whose one-chunk tile fits fewer registers asks for more blocks there (kOneChunkBlocks); one
// whose four-chunk tile fits the cap extends it to that tile (kCappedTile), so that ptxas does
// not spend the 128 a block of 512 would allow on a tile that only runs in blocks of 256.
template <int kChunks, int kLargestTile, int kOneChunkBlocks = 3, int kCappedTile = 2>
struct RowBounds {
  static constexpr bool kSmallTile =
      kChunks > 0 && kChunks < kLargestTile && kChunks <= kCappedTile;
  static constexpr int kMaxThreads = kSmallTile ? kSmallRowBlock : kMaxBlock;
  static constexpr int kMinBlocks = kChunks == 1 ? kOneChunkBlocks : (kSmallTile ? 3 : 1);
};

// Launches a row kernel with the plan's geometry (in clusters for cluster_shared) and dynamic
// shared memory, opting into more than the default 48 KiB where the staged paths need it.
template <class Kernel, class Params>
cudaError_t launch_row_kernel(Kernel* kernel, const RowLaunch& launch, cudaStream_t stream,
                              const Params& params) {
  constexpr std::size_t kDefaultDynamicShared = 48 * 1024;
  if (launch.shared_bytes > kDefaultDynamicShared) {
    const cudaError_t error = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(launch.shared_bytes));
    if (error != cudaSuccess) return error;
  }
  if (launch.cluster_blocks > 1)
    return simcuda::launch_in_clusters(kernel, dim3(launch.grid), dim3(launch.block),
                                       static_cast<unsigned>(launch.cluster_blocks),
                                       launch.shared_bytes, stream, params);
  return simcuda::launch(kernel, dim3(launch.grid), dim3(launch.block), launch.shared_bytes,
                         stream, params);
}

// What a launcher does with the kernel and geometry it selects for a call: launch it
// (KernelLaunch), or, while the plan is sized, count how many blocks of it an SM holds
// (KernelResidency), so that the kernels counted are the kernels launched.
struct KernelLaunch {
  cudaStream_t stream = nullptr;
  template <class Kernel, class Params>
  cudaError_t operator()(Kernel* kernel, const RowLaunch& launch, const Params& params) const {
    return launch_row_kernel(kernel, launch, stream, params);
  }
};

struct KernelResidency {
  const DeviceInfo* device = nullptr;
  int* whole_waves = nullptr;  // the least common multiple of the counts so far; 0 where a
                               // kernel fits no SM
  template <class Kernel, class Params>
  cudaError_t operator()(Kernel* kernel, const RowLaunch& launch, const Params& /*params*/) const {
    int blocks = 0;
    const cudaError_t error = resident_blocks(*device, reinterpret_cast<const void*>(kernel),
                                              launch.block, launch.shared_bytes, &blocks);
    if (error != cudaSuccess) return error;
    *whole_waves = blocks < 1 ? 0 : *whole_waves == 0 ? 0 : std::lcm(*whole_waves, blocks);
    return cudaSuccess;
  }
};

// Blocks per SM past which a grid of whole waves for every kernel is not worth its blocks' set-up
// (each block initialises its shared state and adds one partial to a reduced loss): the cap of
// the grid by threads, and the most blocks an sm_80 or sm_90 SM holds.
constexpr int kMaxWholeWaveBlocksPerSm = 32;

// Sizes the grid of a plan whose geometry is set from the blocks per SM that the occupancy API
// allows the kernels that `dispatch(KernelResidency{...})` selects, unless the grid is to follow
// threads and shared memory alone (detail::row_occupancy_grid). A grid-stride kernel whose grid
// is not a whole number of its waves runs a last wave part empty: at 5 blocks a kernel that
// holds 4 takes two waves for the work of 1.25. So where a grid must be the same for several
// kernels (every pass of a cross-entropy's args: its reduced loss adds per-block partials, and
// one workspace fits every call), it is the least common multiple of their counts; where that
// exceeds kMaxWholeWaveBlocksPerSm the plan keeps the grid by threads and shared memory.
template <class Dispatch>
Status count_resident_blocks(RowLaunch& launch, std::int64_t rows, const DeviceInfo& device,
                             Dispatch&& dispatch) {
  if (!detail::row_occupancy_grid()) return {};
  int whole_waves = 1;
  if (Status status = dispatch(KernelResidency{&device, &whole_waves}); !status.ok())
    return status;
  // A kernel that no SM holds fails at its launch, which says so.
  if (whole_waves < 1 || whole_waves > kMaxWholeWaveBlocksPerSm) return {};
  launch.resident_blocks = whole_waves;
  size_row_grid(launch, rows, device);
  return {};
}

}  // namespace actloss::cuda::row
