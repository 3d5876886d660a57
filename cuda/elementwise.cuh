// Grid-stride machinery shared by the pointwise op families: activations (cuda/activation.cu),
// BCE with logits (cuda/bce.cu) and MSE (cuda/mse.cu).
//
// Work is cut into packs of kPack consecutive elements of one row; a row of `cols` elements has
// ceil(cols / kPack) packs, the last one possibly partial. Which thread gets which pack depends
// only on the shape, the device and the kernel's packs per step, never on pointers, so a
// per-thread partial sum adds the same numbers in the same order on every call: alignment
// changes how a pack's bytes are fetched, never which thread owns them.
//
// These kernels do a few instructions per byte; what sets their speed is how many bytes each SM
// keeps in flight against the memory latency (Little's law: an H200 needs about 22-36 KB per
// SM). With one pack per thread per loop step, a thread has one 16-byte load per 16-bit tensor
// (two per f32 tensor) outstanding and then waits, and a grid of one thread per pack runs a
// 16M-element pass as short-lived blocks that each issue that one round of loads. So a thread
// takes kUnroll packs per step and issues every load of the step before it converts or stores
// anything, and the grid is sized for packs / kUnroll threads. A step's packs are kThreads apart
// (a block's step covers kUnroll * kThreads consecutive packs): each load instruction of a warp
// still reads consecutive packs, and a thread still meets its packs in increasing order.
// kUnroll is chosen per kernel against its registers (min_blocks_per_sm): more packs per thread
// pay only while enough threads stay resident to issue them.
//
// The loop with one pack per step (kUnroll = 1) keeps the index arithmetic and load order it was
// first measured with. A card compared the two in one run (benchmarks/RESULTS.md, 67b6053): one
// pack was faster for f32 activations (a pack is already two 16-byte loads per tensor), several
// for 16-bit tensors, so each launcher may choose per dtype (the with_packs_per_step overload
// taking `one_pack`). Tests and benchmarks can force the one-pack loop everywhere
// (packs_per_step_for_testing).
//
// A full pack is fetched with 16-byte loads when every tensor of the launch allows it (base
// 16-byte aligned, row stride a multiple of 16 bytes); otherwise, and for a row's partial last
// pack, element by element. kPack = 8 makes one 16-byte load per 16-bit tensor and two per f32
// tensor, so mixed-dtype launches (f16 in, f32 out) stay vectorised on both sides. A step whose
// packs are all full in a vectorised launch runs its own copy of the code, with no element-wise
// fallback between its loads: the compiler may predicate such a fallback into the registers of
// the 16-byte loads, and each load would then wait for the one before.
//
// Element types are run-time values. A pack's bytes are loaded raw first and converted after
// every load of the step has been issued, so a multi-tensor op (BCE reads up to five tensors)
// has all its loads in flight at once, and the dtype switches (uniform across the grid) cost a
// few instructions per 8 elements. Templating the kernels on every dtype combination instead
// would multiply the instantiations (27 per activation for the backward pass) to save those few
// uniform branches on a memory-bound kernel.
#pragma once

#include "cuda/common.cuh"
#include "cuda/reduce.cuh"

#include <cstdint>
#include <type_traits>

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

// Blocks of kThreads threads for `threads` threads, capped at kWaves full waves of the device (a
// wave being as many blocks as its SMs hold at full thread occupancy); grid-stride loops take
// the rest. The cap is several waves because the kernels' registers (28 to 128 per thread on
// sm_90) allow 2 to 8 resident blocks per SM, not always 8: with one
// nominal wave the blocks that do not fit would run as a thin second round, with eight nominal
// waves the last, partial round is a small part of the run. A function of the work and the
// cached device properties only, so per-block partial sums are reproducible bit for bit.
constexpr int kWaves = 8;

// Tests only (0 when unset): a lower cap on the blocks of every launch planned here, so that the
// grid-stride loops take many steps on problems small enough for the simulator, which otherwise
// needs over 17M elements to see a second step. Set through
// detail::cuda_set_elementwise_block_limit_for_testing (cuda/elementwise.cu).
std::int64_t block_limit_for_testing();

// Tests and benchmarks only (0 when unset): 1 runs every elementwise kernel with one pack per
// thread per step, the loop last measured on a GPU. Set through
// detail::cuda_set_elementwise_packs_per_step_for_testing (cuda/elementwise.cu).
int packs_per_step_for_testing();

// Calls f(std::integral_constant<int, kUnroll>{}) with the packs per thread per step of a launch:
// kDefault, or 1 under the switch above. Each kernel is instantiated for both.
template <int kDefault, class F>
Status with_packs_per_step(F&& f) {
  if (packs_per_step_for_testing() == 1) return f(std::integral_constant<int, 1>{});
  return f(std::integral_constant<int, kDefault>{});
}

// The second __launch_bounds__ argument of a kernel instantiated for kUnroll packs per step:
// `blocks` resident blocks per SM when kUnroll > 1, the register budget (64K / (kThreads x
// blocks) per thread) that keeps both the packs in flight per thread and the threads per SM;
// none (0) for the one-pack loop, which keeps the bounds it was measured with.
constexpr int min_blocks_per_sm(int unroll, int blocks) { return unroll == 1 ? 0 : blocks; }

// The threads of a launch over `packs` packs, kUnroll of them per thread per step.
inline std::int64_t threads_for(std::int64_t packs, int unroll) {
  return (packs + unroll - 1) / unroll;
}

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

// with_packs_per_step for a launch over `packs` packs: f(unroll, blocks) also gets its grid.
template <int kDefault, class F>
Status with_packs_per_step(std::int64_t packs, F&& f) {
  return with_packs_per_step<kDefault>([&](auto unroll) -> Status {
    unsigned blocks = 0;
    if (Status status = blocks_for(threads_for(packs, decltype(unroll)::value), &blocks);
        !status.ok())
      return status;
    return f(unroll, blocks);
  });
}

// The same, for a launch that takes the one-pack loop where `one_pack` says so (the dtypes and
// kernels for which a card measured it faster), and kDefault otherwise.
template <int kDefault, class F>
Status with_packs_per_step(std::int64_t packs, bool one_pack, F&& f) {
  if (!one_pack) return with_packs_per_step<kDefault>(packs, f);
  unsigned blocks = 0;
  if (Status status = blocks_for(threads_for(packs, 1), &blocks); !status.ok()) return status;
  return f(std::integral_constant<int, 1>{}, blocks);
}

// The workspace bytes of a reduced loss over `packs` packs: the ReducedLoss of the grid of the
// one-pack loop, which has the most threads (several packs per step need fewer blocks).
inline Status loss_workspace_bytes(std::int64_t packs, std::size_t* bytes) {
  unsigned blocks = 0;
  if (Status status = blocks_for(threads_for(packs, 1), &blocks); !status.ok()) return status;
  *bytes = sizeof(double) * reduced_loss_doubles(blocks, false);
  return {};
}

// Launches a loss kernel with `threads` threads. When `reduces`, the kernel's blocks leave their
// double partial sums in the call's scratch (a.reduced: the workspace, or stream-ordered memory)
// and the last of them writes their sum in block order, divided by `denominator` (a.denominator),
// into *loss: one launch, the same grid for the same shape, so the sum is reproducible.
template <class Args>
Status launch_loss(void (*kernel)(Args), std::int64_t threads, Args& a, bool reduces,
                   double denominator, float* loss, const Exec& exec,
                   const char* size_function) {
  const cudaStream_t stream = exec.stream;
  unsigned blocks = 0;
  if (Status status = blocks_for(threads, &blocks); !status.ok()) return status;
  CallScratch scratch;
  if (reduces) {
    const std::size_t doubles = reduced_loss_doubles(blocks, false);
    if (Status status =
            scratch.acquire(sizeof(double) * doubles, exec.workspace, stream, size_function);
        !status.ok())
      return status;
    if (Status status =
            prepare_reduced_loss(scratch.as<double>(), blocks, false, loss, stream, &a.reduced);
        !status.ok())
      return status;
    a.denominator = denominator;
  }
  ACTLOSS_CUDA_TRY(simcuda::launch(kernel, dim3(blocks), dim3(kThreads), 0, stream, a));
  if (reduces) return finish_in_second_kernel(a.reduced, blocks, stream);
  return {};
}

// ---------------------------------------------------------------------------------------------
// Device side: visiting packs.

// One pack of a thread's step: its row, its first column, its number of elements (1..kPack, or 0
// for a slot past the last pack), and whether it moves by 16-byte accesses (a full pack in a
// vectorised launch).
struct Pack {
  std::int64_t row = 0;
  std::int64_t col = 0;
  int count = 0;
  bool full = false;
};

// A position in the packs taken row by row, and a distance in them, as rows and packs.
struct PackIndex {
  std::int64_t row = 0;
  std::int64_t pack = 0;
};

__device__ __forceinline__ PackIndex split_index(std::int64_t index, const Packs& packs) {
  const std::int64_t row = index / packs.per_row;
  return {row, index - row * packs.per_row};
}

__device__ __forceinline__ void advance(PackIndex& at, const PackIndex& by, const Packs& packs) {
  at.pack += by.pack;
  at.row += by.row;
  if (at.pack >= packs.per_row) {
    at.pack -= packs.per_row;
    ++at.row;
  }
}

__device__ __forceinline__ Pack pack_at(const PackIndex& at, const Packs& packs, bool vector) {
  Pack p;
  if (at.row >= packs.rows || at.pack >= packs.per_row) return p;
  p.row = at.row;
  p.col = at.pack * kPack;
  const std::int64_t left = packs.cols - p.col;
  p.count = left < kPack ? static_cast<int>(left) : kPack;
  p.full = vector && p.count == kPack;
  return p;
}

// One step of a thread: load(pack, loaded) for each pack, then use(pack, loaded) for each, so
// that the step's loads are all issued before the first of them is waited on. Neither is called
// for an empty slot (count 0). A step of full packs in a vectorised launch, the common one, runs
// its own copy, in which every access is a 16-byte one (see the top of this file).
template <int kUnroll, class Loaded, class Load, class Use>
__device__ __forceinline__ void run_step(Pack (&pack)[kUnroll], Load& load, Use& use) {
  bool all_full = true;
#pragma unroll
  for (int k = 0; k < kUnroll; ++k) all_full = all_full && pack[k].full;
  Loaded loaded[kUnroll];
  if (all_full) {
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      pack[k].count = kPack;
      pack[k].full = true;
    }
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) load(pack[k], loaded[k]);
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) use(pack[k], loaded[k]);
    return;
  }
#pragma unroll
  for (int k = 0; k < kUnroll; ++k)
    if (pack[k].count > 0) load(pack[k], loaded[k]);
#pragma unroll
  for (int k = 0; k < kUnroll; ++k)
    if (pack[k].count > 0) use(pack[k], loaded[k]);
}

// The loop last measured on a GPU (kUnroll = 1): one pack per thread per step, a grid apart,
// each pack loaded and used before the next one is loaded; its arithmetic as it was measured.
template <class Loaded, class Load, class Use>
__device__ __forceinline__ void for_each_pack_one_per_step(const Packs& packs, bool vector,
                                                           Load& load, Use& use) {
  const std::int64_t step = std::int64_t{gridDim.x} * blockDim.x;
  const std::int64_t first = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const std::int64_t row_step = step / packs.per_row;
  const std::int64_t pack_step = step - row_step * packs.per_row;
  std::int64_t row = first / packs.per_row;
  std::int64_t pack = first - row * packs.per_row;
  while (row < packs.rows) {
    Pack p;
    p.row = row;
    p.col = pack * kPack;
    const std::int64_t left = packs.cols - p.col;
    p.count = left < kPack ? static_cast<int>(left) : kPack;
    p.full = vector && p.count == kPack;
    Loaded loaded;
    load(p, loaded);
    use(p, loaded);
    pack += pack_step;
    row += row_step;
    if (pack >= packs.per_row) {
      pack -= packs.per_row;
      ++row;
    }
  }
}

// How a launch's packs lie: in rows (BCE), or in one row (every activation and MSE launch),
// where a pack's position is its index and the slots of a step lie at constant distances.
enum class Shape : std::uint8_t { rows, one_row };

// Visits this thread's packs, kUnroll per step (run_step): a block's step covers kUnroll *
// kThreads consecutive packs, a thread's packs in it are kThreads apart, and the last step may
// hold fewer than kUnroll packs. Loaded holds the raw data of one pack (default-constructible).
// Every launch has kThreads threads per block, so the slot distances are constants. In rows, the
// (row, pack) positions advance by fixed distances, so the 64-bit divisions happen once per
// thread, not once per pack.
template <int kUnroll, class Loaded, Shape kShape = Shape::rows, class Load, class Use>
__device__ __forceinline__ void for_each_pack(const Packs& packs, bool vector, Load&& load,
                                              Use&& use) {
  static_assert(kUnroll >= 1);
  constexpr std::int64_t kBlockStep = std::int64_t{kUnroll} * kThreads;
  if constexpr (kUnroll == 1) {
    for_each_pack_one_per_step<Loaded>(packs, vector, load, use);
  } else if constexpr (kShape == Shape::one_row) {
    for (std::int64_t index = std::int64_t{blockIdx.x} * kBlockStep + threadIdx.x;
         index < packs.per_row; index += kBlockStep * gridDim.x) {
      Pack pack[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k)
        pack[k] = pack_at(PackIndex{0, index + k * kThreads}, packs, vector);
      run_step<kUnroll, Loaded>(pack, load, use);
    }
  } else {
    const PackIndex next_slot = split_index(kThreads, packs);
    const PackIndex next_step = split_index(kBlockStep * gridDim.x, packs);
    for (PackIndex at = split_index(std::int64_t{blockIdx.x} * kBlockStep + threadIdx.x, packs);
         at.row < packs.rows; advance(at, next_step, packs)) {
      Pack pack[kUnroll];
      PackIndex slot = at;
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        if (k > 0) advance(slot, next_slot, packs);
        pack[k] = pack_at(slot, packs, vector);
      }
      run_step<kUnroll, Loaded>(pack, load, use);
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

// Loads pack `p` of `t`.
__device__ __forceinline__ void load(const In& t, const Pack& p, RawPack& raw) {
  const std::int64_t offset = p.row * t.row_stride + p.col;
  const bool wide = is_f32(t.dtype);
  if (p.full) {
    const auto* v = reinterpret_cast<const uint4*>(static_cast<const char*>(t.data) +
                                                   offset * (wide ? 4 : 2));
    split(simcuda::load_vector(v), raw.word);
    if (wide) split(simcuda::load_vector(v + 1), raw.word + 4);
    return;
  }
#pragma unroll
  for (int i = 0; i < kPack; ++i) raw.word[i] = 0;
  if (wide) {
    const auto* e = static_cast<const std::uint32_t*>(t.data) + offset;
#pragma unroll
    for (int i = 0; i < kPack; ++i)
      if (i < p.count) raw.word[i] = e[i];
  } else {
    const auto* e = static_cast<const std::uint16_t*>(t.data) + offset;
#pragma unroll
    for (int i = 0; i < kPack; ++i)
      if (i < p.count) raw.word[i / 2] |= std::uint32_t{e[i]} << (16 * (i % 2));
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

// Stores the first p.count values of `v` as pack `p` of `t`.
__device__ __forceinline__ void store(const Out& t, const Pack& p, const float (&v)[kPack]) {
  RawPack raw;
  pack(v, t.dtype, raw);
  const std::int64_t offset = p.row * t.row_stride + p.col;
  const bool wide = is_f32(t.dtype);
  if (p.full) {
    auto* w = reinterpret_cast<uint4*>(static_cast<char*>(t.data) + offset * (wide ? 4 : 2));
    simcuda::store_vector(w, make_uint4(raw.word[0], raw.word[1], raw.word[2], raw.word[3]));
    if (wide)
      simcuda::store_vector(w + 1, make_uint4(raw.word[4], raw.word[5], raw.word[6], raw.word[7]));
    return;
  }
  if (wide) {
    auto* e = static_cast<std::uint32_t*>(t.data) + offset;
#pragma unroll
    for (int i = 0; i < kPack; ++i)
      if (i < p.count) e[i] = raw.word[i];
  } else {
    auto* e = static_cast<std::uint16_t*>(t.data) + offset;
#pragma unroll
    for (int i = 0; i < kPack; ++i)
      if (i < p.count) e[i] = static_cast<std::uint16_t>(bits16(raw, i));
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
