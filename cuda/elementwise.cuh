// Grid-stride machinery shared by the pointwise op families: activations (cuda/activation.cu),
// BCE with logits (cuda/bce.cu) and MSE (cuda/mse.cu).
//
// Work is cut into packs of kPack consecutive elements of one row; a row of `cols` elements has
// ceil(cols / kPack) packs, the last one possibly partial. Packs are handed out grid-stride, and
// which thread gets which pack depends only on the shape and the device (never on pointers), so a
// per-thread partial sum adds the same numbers in the same order on every call: alignment changes
// how a pack's bytes are fetched, never which thread owns them.
//
// A full pack is fetched with 16-byte loads when every tensor of the launch allows it (base
// 16-byte aligned, row stride a multiple of 16 bytes); otherwise, and for a row's partial last
// pack, element by element. kPack = 8 makes one 16-byte load per 16-bit tensor and two per f32
// tensor, so mixed-dtype launches (f16 in, f32 out) stay vectorised on both sides.
//
// Element types are run-time values. A pack's bytes are loaded raw first and converted after
// every load of the iteration has been issued, so a multi-tensor op (BCE reads up to five tensors)
// has all its loads in flight at once, and the dtype switches (uniform across the grid) cost a few
// instructions per 8 elements. Templating the kernels on every dtype combination instead would
// multiply the instantiations (27 per activation for the backward pass) to save those few
// uniform branches on a memory-bound kernel.
#pragma once

#include "cuda/common.cuh"
#include "cuda/reduce.cuh"

#include <cstdint>

namespace actloss::cuda::ew {

constexpr int kPack = 8;
constexpr int kThreads = 256;

// A tensor as the kernels see it; row_stride in elements (ignored for single-row problems).
struct In {
  const void* data = nullptr;
  DType dtype = DType::f32;
  std::int64_t row_stride = 0;
};
struct Out {
  void* data = nullptr;
  DType dtype = DType::f32;
  std::int64_t row_stride = 0;
};

// The packs of a rows x cols problem (cols >= 1).
struct Packs {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t per_row = 0;
};

inline Packs packs_of(std::int64_t rows, std::int64_t cols) {
  return Packs{rows, cols, (cols + kPack - 1) / kPack};
}

// ---------------------------------------------------------------------------------------------
// Host side: launch geometry.

// True when every full pack of every row of the tensor starts on a 16-byte boundary (an absent
// tensor constrains nothing). Pack starts are kPack elements apart, a multiple of 16 bytes for
// every dtype, so the base and the row stride decide it.
inline bool vector_ok(const void* data, DType dtype, std::int64_t rows, std::int64_t row_stride) {
  if (data == nullptr) return true;
  const bool base_aligned = reinterpret_cast<std::uintptr_t>(data) % 16 == 0;
  return base_aligned && (rows <= 1 || (row_stride * dtype_size(dtype)) % 16 == 0);
}

// Blocks of kThreads threads for `threads` work items: one thread per item, capped at kWaves full
// waves of the device (a wave being as many blocks as its SMs hold at full thread occupancy);
// grid-stride loops take the rest. The cap is several waves because the kernels' registers
// (32 to 80 per thread on sm_90) allow 3 to 8 resident blocks per SM, not always 8: with one
// nominal wave the blocks that do not fit would run as a thin second round, with eight nominal
// waves the last, partial round is a small part of the run. A function of the work and the
// cached device properties only, so per-block partial sums are reproducible bit for bit.
constexpr int kWaves = 8;

// Tests only (0 when unset): a lower cap on the blocks of every launch planned here, so that the
// grid-stride loops take many steps on problems small enough for the simulator, which otherwise
// needs over 17M elements to see a second step. Set through
// detail::cuda_set_elementwise_block_limit_for_testing (cuda/elementwise.cu).
std::int64_t block_limit_for_testing();

inline Status blocks_for(std::int64_t threads, unsigned* blocks) {
  const DeviceInfo* info = nullptr;
  if (Status status = current_device_info(&info); !status.ok()) return status;
  const int per_sm = info->max_threads_per_sm / kThreads;
  const std::int64_t wave = std::int64_t{info->sm_count} * (per_sm > 0 ? per_sm : 1);
  std::int64_t cap = wave > 0 ? wave * kWaves : kWaves;
  if (const std::int64_t limit = block_limit_for_testing(); limit > 0 && limit < cap) cap = limit;
  *blocks = grid_size_for(threads, kThreads, cap);
  return {};
}

// Launches a loss kernel over `threads` packs. When `reduces`, every block leaves a double
// partial sum in a stream-ordered scratch (a.partials), and finish_partial_sums adds them in
// block order into *loss, divided by `denominator`: the same grid for the same shape, so the sum
// is reproducible.
template <class Args>
Status launch_loss(void (*kernel)(Args), std::int64_t threads, Args& a, bool reduces,
                   double denominator, float* loss, cudaStream_t stream) {
  unsigned blocks = 0;
  if (Status status = blocks_for(threads, &blocks); !status.ok()) return status;
  StreamScratch partials;
  if (reduces) {
    if (Status status = partials.allocate(sizeof(double) * blocks, stream); !status.ok())
      return status;
    a.partials = partials.as<double>();
  }
  ACTLOSS_CUDA_TRY(simcuda::launch(kernel, dim3(blocks), dim3(kThreads), 0, stream, a));
  if (reduces)
    return finish_partial_sums(a.partials, nullptr, static_cast<int>(blocks), denominator, loss,
                               stream);
  return {};
}

// ---------------------------------------------------------------------------------------------
// Device side: visiting packs.

// Calls body(row, col, count) for every pack of this thread, in increasing order; col is the
// pack's first column and count (1..kPack) its number of elements. The (row, pack) position
// advances by a fixed step, so a 64-bit division happens once per thread, not once per pack.
template <class Body>
__device__ __forceinline__ void for_each_pack(const Packs& packs, Body&& body) {
  const std::int64_t step = std::int64_t{gridDim.x} * blockDim.x;
  const std::int64_t first = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const std::int64_t row_step = step / packs.per_row;
  const std::int64_t pack_step = step - row_step * packs.per_row;
  std::int64_t row = first / packs.per_row;
  std::int64_t pack = first - row * packs.per_row;
  while (row < packs.rows) {
    const std::int64_t col = pack * kPack;
    const std::int64_t left = packs.cols - col;
    body(row, col, left < kPack ? static_cast<int>(left) : kPack);
    pack += pack_step;
    row += row_step;
    if (pack >= packs.per_row) {
      pack -= packs.per_row;
      ++row;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Device side: pack loads and stores.

// One pack's bytes exactly as they lie in memory: kPack 4-byte elements, or kPack 2-byte
// elements in the first kPack / 2 words (element i in bits 16 (i % 2) of word i / 2). Zeroed at
// construction: a 16-bit pack leaves the upper words unwritten, which g++ -O3 flags as maybe
// uninitialised where the dtype is a run-time value; nvcc drops the dead stores.
struct RawPack {
  std::uint32_t word[kPack] = {};
};

__device__ __forceinline__ bool is_f32(DType dtype) { return dtype == DType::f32; }

__device__ __forceinline__ void split(const uint4& v, std::uint32_t* word) {
  word[0] = v.x;
  word[1] = v.y;
  word[2] = v.z;
  word[3] = v.w;
}

// Loads the pack at (row, col) of `t`; `vector` requires a full pack and vector_ok().
__device__ __forceinline__ void load(const In& t, std::int64_t row, std::int64_t col, int count,
                                     bool vector, RawPack& raw) {
  const std::int64_t offset = row * t.row_stride + col;
  const bool wide = is_f32(t.dtype);
  if (vector) {
    const auto* p = reinterpret_cast<const uint4*>(static_cast<const char*>(t.data) +
                                                   offset * (wide ? 4 : 2));
    split(simcuda::load_vector(p), raw.word);
    if (wide) split(simcuda::load_vector(p + 1), raw.word + 4);
    return;
  }
#pragma unroll
  for (int i = 0; i < kPack; ++i) raw.word[i] = 0;
  if (wide) {
    const auto* p = static_cast<const std::uint32_t*>(t.data) + offset;
#pragma unroll
    for (int i = 0; i < kPack; ++i)
      if (i < count) raw.word[i] = p[i];
  } else {
    const auto* p = static_cast<const std::uint16_t*>(t.data) + offset;
#pragma unroll
    for (int i = 0; i < kPack; ++i)
      if (i < count) raw.word[i / 2] |= std::uint32_t{p[i]} << (16 * (i % 2));
  }
}

// The 16-bit element i of a pack of 16-bit elements.
__device__ __forceinline__ std::uint32_t bits16(const RawPack& raw, int i) {
  return (raw.word[i / 2] >> (16 * (i % 2))) & 0xffffu;
}

// Widens a loaded pack to float (exact for every dtype).
__device__ __forceinline__ void unpack(const RawPack& raw, DType dtype, float (&v)[kPack]) {
  switch (dtype) {
    case DType::f16:
#pragma unroll
      for (int i = 0; i < kPack; ++i)
        v[i] = __half2float(__ushort_as_half(static_cast<unsigned short>(bits16(raw, i))));
      break;
    case DType::bf16:
      // bfloat16 is the top half of a float: widening is a shift.
#pragma unroll
      for (int i = 0; i < kPack; ++i) v[i] = __uint_as_float(bits16(raw, i) << 16);
      break;
    default:
#pragma unroll
      for (int i = 0; i < kPack; ++i) v[i] = __uint_as_float(raw.word[i]);
      break;
  }
}

// Narrows floats to `dtype` (round to nearest even, NaN stays NaN) in memory layout.
__device__ __forceinline__ void pack(const float (&v)[kPack], DType dtype, RawPack& raw) {
  switch (dtype) {
    case DType::f16:
#pragma unroll
      for (int i = 0; i < kPack / 2; ++i)
        raw.word[i] = std::uint32_t{__half_as_ushort(__float2half_rn(v[2 * i]))} |
                      std::uint32_t{__half_as_ushort(__float2half_rn(v[2 * i + 1]))} << 16;
      break;
    case DType::bf16:
#pragma unroll
      for (int i = 0; i < kPack / 2; ++i)
        raw.word[i] = std::uint32_t{__bfloat16_as_ushort(__float2bfloat16_rn(v[2 * i]))} |
                      std::uint32_t{__bfloat16_as_ushort(__float2bfloat16_rn(v[2 * i + 1]))}
                          << 16;
      break;
    default:
#pragma unroll
      for (int i = 0; i < kPack; ++i) raw.word[i] = __float_as_uint(v[i]);
      break;
  }
}

// Loads and widens in one step, for the tensor read last in an iteration (or read alone).
__device__ __forceinline__ void load_floats(const In& t, std::int64_t row, std::int64_t col,
                                            int count, bool vector, float (&v)[kPack]) {
  RawPack raw;
  load(t, row, col, count, vector, raw);
  unpack(raw, t.dtype, v);
}

// Stores the first `count` values at (row, col) of `t`; `vector` as for load().
__device__ __forceinline__ void store(const Out& t, std::int64_t row, std::int64_t col,
                                      int count, bool vector, const float (&v)[kPack]) {
  RawPack raw;
  pack(v, t.dtype, raw);
  const std::int64_t offset = row * t.row_stride + col;
  const bool wide = is_f32(t.dtype);
  if (vector) {
    auto* p = reinterpret_cast<uint4*>(static_cast<char*>(t.data) + offset * (wide ? 4 : 2));
    simcuda::store_vector(p, make_uint4(raw.word[0], raw.word[1], raw.word[2], raw.word[3]));
    if (wide)
      simcuda::store_vector(p + 1, make_uint4(raw.word[4], raw.word[5], raw.word[6], raw.word[7]));
    return;
  }
  if (wide) {
    auto* p = static_cast<std::uint32_t*>(t.data) + offset;
#pragma unroll
    for (int i = 0; i < kPack; ++i)
      if (i < count) p[i] = raw.word[i];
  } else {
    auto* p = static_cast<std::uint16_t*>(t.data) + offset;
#pragma unroll
    for (int i = 0; i < kPack; ++i)
      if (i < count) p[i] = static_cast<std::uint16_t>(bits16(raw, i));
  }
}

// Stores one element (flat index) of a single-row tensor.
__device__ __forceinline__ void store_one(const Out& t, std::int64_t index, float value) {
  switch (t.dtype) {
    case DType::f16: static_cast<__half*>(t.data)[index] = __float2half_rn(value); break;
    case DType::bf16:
      static_cast<__nv_bfloat16*>(t.data)[index] = __float2bfloat16_rn(value);
      break;
    default: static_cast<float*>(t.data)[index] = value; break;
  }
}

// ---------------------------------------------------------------------------------------------
// Device side: elementwise building blocks used by more than one op family.

// sigmoid(x) and sigmoid(-x) from one e = exp(-|x|), which lies in [0, 1] and cannot overflow:
// both keep full relative accuracy in the tails (sigmoid(-100) is 3.7e-44, not 0 or NaN), and
// sigmoid(-x) needs no cancellation-prone 1 - sigmoid(x). NaN gives NaN for both. The divisor
// 1 + e lies in [1, 2], where the fast division is within 2 ulp (its only weak range is a
// divisor above 2^126), at a fraction of the cost of the IEEE division.
struct SigmoidPair {
  float pos;  // sigmoid(x)
  float neg;  // sigmoid(-x)
};

__device__ __forceinline__ SigmoidPair sigmoid_pair_from_exp(float x, float e) {
  const float big = __fdividef(1.0f, 1.0f + e);
  const float small = e * big;
  return x >= 0.0f ? SigmoidPair{big, small} : SigmoidPair{small, big};
}

__device__ __forceinline__ SigmoidPair sigmoid_pair(float x) {
  return sigmoid_pair_from_exp(x, expf(-fabsf(x)));
}

}  // namespace actloss::cuda::ew
