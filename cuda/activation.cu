// Pointwise activations on the GPU, forward and backward (semantics: include/actloss/activation.h).
//
//   activation_forward_kernel<Act>             y = f(x)
//   relu_forward_with_mask_kernel              y = relu(x) and the 1-bit mask of x > 0
//   activation_backward_kernel<Act, kOutput>   dx = dy * f'(x), or dy * f'(y) from the output
//   relu_backward_from_mask_kernel             dx = dy * mask bit
//
// Every kernel is memory bound and runs on the pack machinery of cuda/elementwise.cuh
// (16-byte loads and stores when aligned, run-time dtypes, in place allowed: each element is read
// and then written by the same thread). Math is float; the formulas below are chosen so that no
// intermediate overflows or cancels where the result is representable.
#include "cuda/elementwise.cuh"
#include <initializer_list>

namespace actloss::cuda {
namespace {

// Packs per thread per loop step of each kernel (cuda/elementwise.cuh); the kernels that read
// one tensor are held to kBlocksPerSm resident blocks (at most 64 registers a thread). Backward
// reads two, so two packs a step give it as many bytes in flight as four give a forward, in 48
// to 64 registers without a bound.
constexpr int kForwardPacksPerStep = 4;
constexpr int kMaskTilesPerStep = 4;
constexpr int kBackwardPacksPerStep = 2;
constexpr int kMaskBackwardPacksPerStep = 4;
constexpr int kBlocksPerSm = 4;

// Whether an activation over these tensors takes one pack per step instead: f32 tensors of every
// activation but gelu_erf. On the H200 (benchmarks/RESULTS.md, 67b6053, both loops in one run)
// one pack streamed 8-10 points of the copy ceiling faster for those f32 forwards and 1-4 for
// most backwards at 16M elements, while several packs were 4-11 points faster for 16-bit tensors
// and for gelu_erf, whose erf is long enough arithmetic to need more loads in flight.
bool one_pack_per_step(const ActivationOptions& options, std::initializer_list<DType> dtypes) {
  if (options.activation == Activation::gelu_erf) return false;
  for (DType dtype : dtypes)
    if (dtype != DType::f32) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// The activations. forward(x) is f(x); slope(x) is f'(x), with dx = dy * f'. A NaN argument gives
// a NaN slope (as the reference), so NaN never turns into a silent 0. kOutputSlope says whether
// slope_from_output(y) exists (f' is a function of y = f(x)).

// NaN is not > 0 and must survive: `x > 0 ? x : 0` alone, or fmaxf, would turn it into 0.
__device__ __forceinline__ float zero_unless_nan(float x) { return x != x ? x : 0.0f; }

struct Relu {
  static constexpr bool kOutputSlope = true;
  __device__ float forward(float x) const { return x > 0.0f ? x : zero_unless_nan(x); }
  __device__ float slope(float x) const { return x > 0.0f ? 1.0f : zero_unless_nan(x); }
  // relu(x) > 0 exactly when x > 0, and NaN maps to NaN.
  __device__ float slope_from_output(float y) const { return slope(y); }
};

struct LeakyRelu {
  static constexpr bool kOutputSlope = true;
  float alpha = 0.01f;
  __device__ float forward(float x) const { return x > 0.0f ? x : alpha * x; }
  __device__ float slope(float x) const { return x > 0.0f ? 1.0f : (x != x ? x : alpha); }
  // Validation admits a saved output only for alpha > 0, where sign(y) = sign(x).
  __device__ float slope_from_output(float y) const { return slope(y); }
};

struct Tanh {
  static constexpr bool kOutputSlope = true;
  __device__ float forward(float x) const { return tanhf(x); }
  // sech^2 x = 4 e / (1 + e)^2 with e = exp(-2|x|) in [0, 1]: 1 - tanh^2 would be exactly 0 in
  // float for |x| > 9, where the true slope is still above 1e-8. The divisor lies in [1, 4],
  // where the fast division is within 2 ulp.
  __device__ float slope(float x) const {
    const float e = expf(-2.0f * fabsf(x));
    const float d = 1.0f + e;
    return __fdividef(4.0f * e, d * d);
  }
  // (1 - y)(1 + y): 1 - y is exact for y in [1/2, 1], so nothing cancels twice.
  __device__ float slope_from_output(float y) const { return (1.0f - y) * (1.0f + y); }
};

struct Sigmoid {
  static constexpr bool kOutputSlope = true;
  __device__ float forward(float x) const { return ew::sigmoid_pair(x).pos; }
  __device__ float slope(float x) const {
    const ew::SigmoidPair s = ew::sigmoid_pair(x);
    return s.pos * s.neg;
  }
  __device__ float slope_from_output(float y) const { return y * (1.0f - y); }
};

// x with an infinity replaced by the largest finite float of its sign, for a factor x that meets
// an exact 0 where x is infinite: the product then takes its limit (0) instead of inf * 0 = NaN.
// NaN needs no care here: the other factor is NaN too.
__device__ __forceinline__ float finite_part(float x) { return fminf(fmaxf(x, -FLT_MAX), FLT_MAX); }
// The same at -inf only, for the forwards x g(x), whose limit at +inf is +inf.
__device__ __forceinline__ float finite_below(float x) { return fmaxf(x, -FLT_MAX); }

constexpr float kSqrtHalf = 0.70710678118654752f;      // 1 / sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143268f;    // 1 / sqrt(2 pi)
constexpr float kSqrt2OverPi = 0.79788456080286536f;   // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

struct GeluErf {
  static constexpr bool kOutputSlope = false;
  // Phi(x) = erfc(-x / sqrt 2) / 2: erfc keeps full relative accuracy in the left tail, where
  // 1 + erf(x / sqrt 2) is 1 - 1 and gives 0 or noise.
  __device__ float forward(float x) const {
    return 0.5f * finite_below(x) * erfcf(-x * kSqrtHalf);
  }
  // Phi(x) + x phi(x). x * x overflows to inf only where exp(-inf) = 0 makes the term 0.
  __device__ float slope(float x) const {
    const float cdf = 0.5f * erfcf(-x * kSqrtHalf);
    const float pdf = kInvSqrt2Pi * expf(-0.5f * x * x);
    return cdf + finite_part(x) * pdf;
  }
};

struct GeluTanh {
  static constexpr bool kOutputSlope = false;
  // 0.5 x (1 + tanh u) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): no 1 + tanh that
  // cancels to 0 for x << 0. |x| large enough for x^3 to overflow gives u = +-inf, and the
  // sigmoid takes that to exactly 0 or 1.
  __device__ static float two_u(float x) {
    return 2.0f * kSqrt2OverPi * x * (1.0f + kGeluCubic * x * x);
  }
  __device__ float forward(float x) const {
    return finite_below(x) * ew::sigmoid_pair(two_u(x)).pos;
  }
  // s + 2 x s (1 - s) u'(x) with s = sigmoid(2u). For |x| > 11, s (1 - s) is exactly 0 in float,
  // but 2 x would overflow near 1.7e38 and u'(x) near 1.8e19 (x^2), and 0 * inf is NaN; so the
  // second term takes x clamped to +-20, which changes nothing where s (1 - s) is not 0.
  __device__ float slope(float x) const {
    const ew::SigmoidPair s = ew::sigmoid_pair(two_u(x));
    const float clamped = fminf(fmaxf(x, -20.0f), 20.0f);
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * clamped * clamped);
    return s.pos + (s.pos * s.neg) * (2.0f * clamped) * du;
  }
};

struct Silu {
  static constexpr bool kOutputSlope = false;
  __device__ float forward(float x) const { return finite_below(x) * ew::sigmoid_pair(x).pos; }
  // s (1 + x (1 - s)), with 1 - s = sigmoid(-x) taken from the pair rather than cancelled.
  __device__ float slope(float x) const {
    const ew::SigmoidPair s = ew::sigmoid_pair(x);
    return s.pos * (1.0f + finite_part(x) * s.neg);
  }
};

// Calls f(Act{...}) for the activation of `options`; Status of f.
template <class F>
Status with_activation(const ActivationOptions& options, F&& f) {
  switch (options.activation) {
    case Activation::relu: return f(Relu{});
    case Activation::leaky_relu: return f(LeakyRelu{options.alpha});
    case Activation::tanh: return f(Tanh{});
    case Activation::sigmoid: return f(Sigmoid{});
    case Activation::gelu_erf: return f(GeluErf{});
    case Activation::gelu_tanh: return f(GeluTanh{});
    case Activation::silu: return f(Silu{});
  }
  return Status(StatusCode::internal, "options.activation",
                "options.activation: unknown activation reached the CUDA backend");
}

// ---------------------------------------------------------------------------------------------
// Forward.

template <class Act, int kUnroll>
__global__ void __launch_bounds__(ew::kThreads, ew::min_blocks_per_sm(kUnroll, kBlocksPerSm))
    activation_forward_kernel(ew::Packs packs, ew::In x, ew::Out y, Act act, bool vector) {
  ew::for_each_pack<kUnroll, ew::RawPack, ew::Shape::one_row>(
      packs, vector, [&](const ew::Pack& p, ew::RawPack& raw) { ew::load(x, p, raw); },
      [&](const ew::Pack& p, const ew::RawPack& raw) {
        float v[ew::kPack];
        ew::unpack(raw, x.dtype, v);
#pragma unroll
        for (int i = 0; i < ew::kPack; ++i) v[i] = act.forward(v[i]);
        ew::store(y, p, v);
      });
}

// relu forward that also writes the mask (bit i % 32 of word i / 32 is x_i > 0; bits past n are
// 0). Each mask word is assembled inside one warp and written by one lane, so no atomics and no
// read-modify-write of memory another thread owns.
//
// Vector part: whole warp tiles of 32 packs (256 elements = 8 words); lane l holds the 8 bits of
// pack l, and word k is the bytes of lanes 4k..4k+3, gathered with two xor-shuffles. A warp takes
// kUnroll tiles per step, 8 apart (a block's step covers 8 kUnroll consecutive tiles), and loads
// them all before it uses the first.
// Scalar part: the rest (everything, when unaligned), one word per warp per step, one element per
// lane, the word being the warp's ballot. Both loops are warp-uniform, as the collectives need.
//
// Strided rows (cols < n, n being every element of every row) take the scalar part alone, element
// i being column i % cols of row i / cols.
template <int kUnroll>
__global__ void __launch_bounds__(ew::kThreads, ew::min_blocks_per_sm(kUnroll, kBlocksPerSm))
    relu_forward_with_mask_kernel(std::int64_t n, std::int64_t cols, ew::In x, ew::Out y,
                                  std::uint32_t* mask, bool vector) {
  static_assert(ew::kPack == 8, "the vector part packs one byte of mask bits per lane");
  constexpr int kTile = kWarpSize * ew::kPack;
  const Relu relu;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const std::int64_t warp =
      (std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x) / kWarpSize;
  const std::int64_t warps = std::int64_t{gridDim.x} * blockDim.x / kWarpSize;

  const std::int64_t tiles = vector ? n / kTile : 0;
  const auto pack_of = [&](std::int64_t tile) {
    return ew::Pack{0, tile * kTile + std::int64_t{lane} * ew::kPack, ew::kPack, true};
  };
  const auto use = [&](std::int64_t tile, const ew::RawPack& raw) {
    float v[ew::kPack];
    ew::unpack(raw, x.dtype, v);
    std::uint32_t bits = 0;
#pragma unroll
    for (int i = 0; i < ew::kPack; ++i) {
      bits |= static_cast<std::uint32_t>(v[i] > 0.0f) << i;
      v[i] = relu.forward(v[i]);
    }
    ew::store(y, pack_of(tile), v);
    std::uint32_t word = bits << (8 * (lane % 4));
    word |= __shfl_xor_sync(kFullMask, word, 1);
    word |= __shfl_xor_sync(kFullMask, word, 2);
    if (lane % 4 == 0) mask[tile * ew::kPack + lane / 4] = word;
  };
  if constexpr (kUnroll == 1) {
    // The loop last measured on a GPU, as it was.
    for (std::int64_t tile = warp; tile < tiles; tile += warps) {
      ew::RawPack raw;
      ew::load(x, pack_of(tile), raw);
      use(tile, raw);
    }
  } else {
    constexpr int kWarpsPerBlock = ew::kThreads / kWarpSize;
    constexpr std::int64_t kBlockStep = std::int64_t{kUnroll} * kWarpsPerBlock;
    for (std::int64_t first = std::int64_t{blockIdx.x} * kBlockStep + threadIdx.x / kWarpSize;
         first < tiles; first += kBlockStep * gridDim.x) {
      ew::RawPack raw[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k)
        if (first + k * kWarpsPerBlock < tiles)
          ew::load(x, pack_of(first + k * kWarpsPerBlock), raw[k]);
#pragma unroll
      for (int k = 0; k < kUnroll; ++k)
        if (first + k * kWarpsPerBlock < tiles) use(first + k * kWarpsPerBlock, raw[k]);
    }
  }

  const std::int64_t words = (n + kWarpSize - 1) / kWarpSize;  // relu_mask_words(n)
  for (std::int64_t w = tiles * ew::kPack + warp; w < words; w += warps) {
    const std::int64_t i = w * kWarpSize + lane;
    bool positive = false;
    if (i < n) {
      const std::int64_t row = cols == n ? 0 : i / cols;
      const std::int64_t col = i - row * cols;
      const float value = load_dynamic(x.data, x.dtype, row * x.row_stride + col);
      positive = value > 0.0f;
      ew::store_one(y, row * y.row_stride + col, relu.forward(value));
    }
    const std::uint32_t word = __ballot_sync(kFullMask, positive);
    if (lane == 0) mask[w] = word;
  }
}

// How a rows x cols call runs: rows whose operands are all dense are one long row, the layout
// every loop handles; strided rows go through the one-pack loop, the one that walks rows (the
// several-packs loops of the activations are instantiated for one row only).
struct ActivationLayout {
  bool strided = false;
  ew::Packs packs;
};

ActivationLayout activation_layout(std::int64_t rows, std::int64_t cols,
                                   std::initializer_list<std::int64_t> row_strides) {
  bool dense = true;
  for (std::int64_t stride : row_strides) dense = dense && stride == cols;
  if (rows == 1 || dense) return {false, ew::packs_of(1, rows * cols)};
  return {true, ew::packs_of(rows, cols)};
}

}  // namespace
}  // namespace actloss::cuda

namespace actloss::detail {

Status cuda_activation_forward(const ActivationForwardArgs& args, const ActivationOptions& options,
                               const Exec& exec) {
  using namespace cuda;
  if (args.n == 0 || args.rows == 0) return {};
  const ActivationLayout layout =
      activation_layout(args.rows, args.n, {args.x_row_stride, args.y_row_stride});
  const std::int64_t count = args.rows * args.n;
  const ew::In x{args.x, args.x_dtype, args.x_row_stride};
  const ew::Out y{args.y, args.y_dtype, args.y_row_stride};
  const std::int64_t kernel_rows = layout.packs.rows;
  const bool vector = ew::vector_ok(x.data, x.dtype, kernel_rows, x.row_stride) &&
                      ew::vector_ok(y.data, y.dtype, kernel_rows, y.row_stride);
  if (args.relu_mask != nullptr) {
    const bool tiles_ok = vector && !layout.strided;
    const std::int64_t cols = layout.strided ? args.n : count;
    return ew::with_packs_per_step<kMaskTilesPerStep>([&](auto unroll) -> Status {
      constexpr int kUnroll = decltype(unroll)::value;
      // One warp per kUnroll vector tiles, then one warp per remaining mask word.
      const std::int64_t tiles = tiles_ok ? count / (kWarpSize * ew::kPack) : 0;
      const std::int64_t tail_words = relu_mask_words(count) - tiles * ew::kPack;
      const std::int64_t warps = ew::threads_for(tiles, kUnroll) + tail_words;
      unsigned blocks = 0;
      if (Status status = ew::blocks_for(warps * kWarpSize, &blocks); !status.ok()) return status;
      ACTLOSS_CUDA_TRY(simcuda::launch(relu_forward_with_mask_kernel<kUnroll>, dim3(blocks),
                                       dim3(ew::kThreads), 0, exec.stream, count, cols, x, y,
                                       args.relu_mask, tiles_ok));
      return {};
    });
  }
  const ew::Packs packs = layout.packs;
  return ew::with_packs_per_step<kForwardPacksPerStep>(
      packs.rows * packs.per_row,
      layout.strided || one_pack_per_step(options, {args.x_dtype, args.y_dtype}),
      [&](auto unroll, unsigned blocks) -> Status {
        return with_activation(options, [&](auto act) -> Status {
          ACTLOSS_CUDA_TRY(simcuda::launch(
              activation_forward_kernel<decltype(act), decltype(unroll)::value>, dim3(blocks),
              dim3(ew::kThreads), 0, exec.stream, packs, x, y, act, vector));
          return {};
        });
      });
}

}  // namespace actloss::detail

// ---------------------------------------------------------------------------------------------
// Backward.

namespace actloss::cuda {
namespace {

struct SavedAndGrad {
  ew::RawPack saved, dy;
};

// dx = dy * f'(saved), saved being x (kFromOutput false) or y = f(x).
template <class Act, bool kFromOutput, int kUnroll>
__global__ void __launch_bounds__(ew::kThreads)
    activation_backward_kernel(ew::Packs packs, ew::In saved, ew::In dy, ew::Out dx, Act act,
                               bool vector) {
  ew::for_each_pack<kUnroll, SavedAndGrad, ew::Shape::one_row>(
      packs, vector,
      [&](const ew::Pack& p, SavedAndGrad& raw) {
        ew::load(saved, p, raw.saved);
        ew::load(dy, p, raw.dy);
      },
      [&](const ew::Pack& p, const SavedAndGrad& raw) {
        float g[ew::kPack], s[ew::kPack];
        ew::unpack(raw.dy, dy.dtype, g);
        ew::unpack(raw.saved, saved.dtype, s);
#pragma unroll
        for (int i = 0; i < ew::kPack; ++i) {
          if constexpr (kFromOutput)
            g[i] *= act.slope_from_output(s[i]);
          else
            g[i] *= act.slope(s[i]);
        }
        ew::store(dx, p, g);
      });
}

struct MaskAndGrad {
  std::uint32_t word = 0;  // the mask word that holds the pack's (first) bit
  std::uint32_t next = 0;  // strided rows: the word after it, where the pack's bits run on
  ew::RawPack dy;
};

// dx = dy * bit. In one row the pack's 8 bits lie in one mask word (packs start at multiples of
// 8); with strided rows (the one-pack loop) a pack's bits start at element row * cols + col and
// may run into the next word. The word is shifted only where it is used, so that its load does
// not hold up the step's other loads.
template <int kUnroll>
__global__ void __launch_bounds__(ew::kThreads, ew::min_blocks_per_sm(kUnroll, kBlocksPerSm))
    relu_backward_from_mask_kernel(ew::Packs packs, const std::uint32_t* mask, ew::In dy,
                                   ew::Out dx, bool vector) {
  // The mask bit of a pack's first element, dense over the rows' elements; in one row (every
  // loop but the one-pack one) its column.
  const auto bit_of = [&](const ew::Pack& p) {
    if constexpr (kUnroll == 1) return p.row * packs.cols + p.col;
    return p.col;
  };
  ew::for_each_pack<kUnroll, MaskAndGrad, ew::Shape::one_row>(
      packs, vector,
      [&](const ew::Pack& p, MaskAndGrad& raw) {
        raw.word = mask[bit_of(p) / kWarpSize];
        // Only strided rows (the one-pack loop) put a pack across two words.
        if constexpr (kUnroll == 1) {
          if (bit_of(p) % kWarpSize + p.count > kWarpSize)
            raw.next = mask[bit_of(p) / kWarpSize + 1];
        }
        ew::load(dy, p, raw.dy);
      },
      [&](const ew::Pack& p, const MaskAndGrad& raw) {
        const auto shift = static_cast<int>(bit_of(p) % kWarpSize);
        std::uint32_t bits = raw.word >> shift;
        if constexpr (kUnroll == 1) {
          if (shift != 0) bits |= raw.next << (kWarpSize - shift);
        }
        float g[ew::kPack];
        ew::unpack(raw.dy, dy.dtype, g);
#pragma unroll
        for (int i = 0; i < ew::kPack; ++i) g[i] *= ((bits >> i) & 1u) != 0 ? 1.0f : 0.0f;
        ew::store(dx, p, g);
      });
}

}  // namespace
}  // namespace actloss::cuda

namespace actloss::detail {

Status cuda_activation_backward(const ActivationBackwardArgs& args,
                                const ActivationOptions& options, const Exec& exec) {
  using namespace cuda;
  if (args.n == 0 || args.rows == 0) return {};
  const bool mask = args.saved_kind == SavedTensor::relu_mask;
  const ActivationLayout layout = activation_layout(
      args.rows, args.n,
      {args.dy_row_stride, args.dx_row_stride, mask ? args.n : args.saved_row_stride});
  const ew::In dy{args.dy, args.dy_dtype, args.dy_row_stride};
  const ew::Out dx{args.dx, args.dx_dtype, args.dx_row_stride};
  const ew::Packs packs = layout.packs;
  const std::int64_t pack_count = packs.rows * packs.per_row;
  const bool io_vector = ew::vector_ok(dy.data, dy.dtype, packs.rows, dy.row_stride) &&
                         ew::vector_ok(dx.data, dx.dtype, packs.rows, dx.row_stride);

  if (mask) {
    // f32 like the other activations: one pack a step measured 11 points of the copy ceiling
    // faster (80.8% against 69.8% at 16M, H200, ed78223); 16-bit keeps several (69.2% / 64.8%).
    const bool one_pack =
        layout.strided || (args.dy_dtype == DType::f32 && args.dx_dtype == DType::f32);
    return ew::with_packs_per_step<kMaskBackwardPacksPerStep>(
        pack_count, one_pack, [&](auto unroll, unsigned blocks) -> Status {
          ACTLOSS_CUDA_TRY(simcuda::launch(
              relu_backward_from_mask_kernel<decltype(unroll)::value>, dim3(blocks),
              dim3(ew::kThreads), 0, exec.stream, packs,
              static_cast<const std::uint32_t*>(args.saved), dy, dx, io_vector));
          return {};
        });
  }

  const ew::In saved{args.saved, args.saved_dtype, args.saved_row_stride};
  const bool vector =
      io_vector && ew::vector_ok(saved.data, saved.dtype, packs.rows, saved.row_stride);
  const bool from_output = args.saved_kind == SavedTensor::output;
  const auto launch = [&](auto unroll, unsigned blocks) -> Status {
    constexpr int kUnroll = decltype(unroll)::value;
    return with_activation(options, [&](auto act) -> Status {
      using Act = decltype(act);
      if (from_output) {
        if constexpr (Act::kOutputSlope) {
          ACTLOSS_CUDA_TRY(simcuda::launch(activation_backward_kernel<Act, true, kUnroll>,
                                           dim3(blocks), dim3(ew::kThreads), 0, exec.stream,
                                           packs, saved, dy, dx, act, vector));
          return {};
        } else {
          return Status(StatusCode::internal, "saved_kind",
                        "saved_kind: the saved output cannot give this activation's derivative "
                        "(validation should have refused it)");
        }
      }
      ACTLOSS_CUDA_TRY(simcuda::launch(activation_backward_kernel<Act, false, kUnroll>,
                                       dim3(blocks), dim3(ew::kThreads), 0, exec.stream, packs,
                                       saved, dy, dx, act, vector));
      return {};
    });
  };
  return ew::with_packs_per_step<kBackwardPacksPerStep>(
      pack_count,
      layout.strided ||
          one_pack_per_step(options, {args.saved_dtype, args.dy_dtype, args.dx_dtype}),
      launch);
}

}  // namespace actloss::detail

// ---------------------------------------------------------------------------------------------
// SwiGLU: y = silu(gate) * up; backward d_gate = dy * up * silu'(gate), d_up = dy * silu(gate).
// Two or three streams in, one or two out, with silu's formulas above; both loops take two packs
// a step (as the two-stream activation backward), strided rows the one-pack loop.

namespace actloss::cuda {
namespace {

constexpr int kSwigluPacksPerStep = 2;

struct GateAndUp {
  ew::RawPack gate, up;
};

template <int kUnroll>
__global__ void __launch_bounds__(ew::kThreads)
    swiglu_forward_kernel(ew::Packs packs, ew::In gate, ew::In up, ew::Out y, bool vector) {
  const Silu silu;
  ew::for_each_pack<kUnroll, GateAndUp, ew::Shape::one_row>(
      packs, vector,
      [&](const ew::Pack& p, GateAndUp& raw) {
        ew::load(gate, p, raw.gate);
        ew::load(up, p, raw.up);
      },
      [&](const ew::Pack& p, const GateAndUp& raw) {
        float g[ew::kPack], u[ew::kPack];
        ew::unpack(raw.gate, gate.dtype, g);
        ew::unpack(raw.up, up.dtype, u);
#pragma unroll
        for (int i = 0; i < ew::kPack; ++i) g[i] = silu.forward(g[i]) * u[i];
        ew::store(y, p, g);
      });
}

struct SwigluLoaded {
  ew::RawPack gate, up, dy;
};

template <int kUnroll>
__global__ void __launch_bounds__(ew::kThreads)
    swiglu_backward_kernel(ew::Packs packs, ew::In gate, ew::In up, ew::In dy, ew::Out d_gate,
                           ew::Out d_up, bool vector) {
  ew::for_each_pack<kUnroll, SwigluLoaded, ew::Shape::one_row>(
      packs, vector,
      [&](const ew::Pack& p, SwigluLoaded& raw) {
        ew::load(gate, p, raw.gate);
        ew::load(up, p, raw.up);
        ew::load(dy, p, raw.dy);
      },
      [&](const ew::Pack& p, const SwigluLoaded& raw) {
        float g[ew::kPack], u[ew::kPack], d[ew::kPack], dg[ew::kPack], du[ew::kPack];
        ew::unpack(raw.gate, gate.dtype, g);
        ew::unpack(raw.up, up.dtype, u);
        ew::unpack(raw.dy, dy.dtype, d);
#pragma unroll
        for (int i = 0; i < ew::kPack; ++i) {
          // One exp serves silu and its slope (Silu::forward and Silu::slope, fused).
          const ew::SigmoidPair s = ew::sigmoid_pair(g[i]);
          du[i] = d[i] * (finite_below(g[i]) * s.pos);
          dg[i] = (d[i] * u[i]) * (s.pos * (1.0f + finite_part(g[i]) * s.neg));
        }
        ew::store(d_gate, p, dg);
        ew::store(d_up, p, du);
      });
}

}  // namespace
}  // namespace actloss::cuda

namespace actloss::detail {

Status cuda_swiglu_forward(const SwigluForwardArgs& args, const Exec& exec) {
  using namespace cuda;
  if (args.n == 0 || args.rows == 0) return {};
  const ActivationLayout layout = activation_layout(
      args.rows, args.n, {args.gate_row_stride, args.up_row_stride, args.y_row_stride});
  const ew::Packs packs = layout.packs;
  const ew::In gate{args.gate, args.gate_dtype, args.gate_row_stride};
  const ew::In up{args.up, args.up_dtype, args.up_row_stride};
  const ew::Out y{args.y, args.y_dtype, args.y_row_stride};
  const bool vector = ew::vector_ok(gate.data, gate.dtype, packs.rows, gate.row_stride) &&
                      ew::vector_ok(up.data, up.dtype, packs.rows, up.row_stride) &&
                      ew::vector_ok(y.data, y.dtype, packs.rows, y.row_stride);
  return ew::with_packs_per_step<kSwigluPacksPerStep>(
      packs.rows * packs.per_row, layout.strided, [&](auto unroll, unsigned blocks) -> Status {
        ACTLOSS_CUDA_TRY(simcuda::launch(swiglu_forward_kernel<decltype(unroll)::value>,
                                         dim3(blocks), dim3(ew::kThreads), 0, exec.stream,
                                         packs, gate, up, y, vector));
        return {};
      });
}

Status cuda_swiglu_backward(const SwigluBackwardArgs& args, const Exec& exec) {
  using namespace cuda;
  if (args.n == 0 || args.rows == 0) return {};
  const ActivationLayout layout =
      activation_layout(args.rows, args.n,
                        {args.gate_row_stride, args.up_row_stride, args.dy_row_stride,
                         args.d_gate_row_stride, args.d_up_row_stride});
  const ew::Packs packs = layout.packs;
  const ew::In gate{args.gate, args.gate_dtype, args.gate_row_stride};
  const ew::In up{args.up, args.up_dtype, args.up_row_stride};
  const ew::In dy{args.dy, args.dy_dtype, args.dy_row_stride};
  const ew::Out d_gate{args.d_gate, args.d_gate_dtype, args.d_gate_row_stride};
  const ew::Out d_up{args.d_up, args.d_up_dtype, args.d_up_row_stride};
  const bool vector = ew::vector_ok(gate.data, gate.dtype, packs.rows, gate.row_stride) &&
                      ew::vector_ok(up.data, up.dtype, packs.rows, up.row_stride) &&
                      ew::vector_ok(dy.data, dy.dtype, packs.rows, dy.row_stride) &&
                      ew::vector_ok(d_gate.data, d_gate.dtype, packs.rows, d_gate.row_stride) &&
                      ew::vector_ok(d_up.data, d_up.dtype, packs.rows, d_up.row_stride);
  return ew::with_packs_per_step<kSwigluPacksPerStep>(
      packs.rows * packs.per_row, layout.strided, [&](auto unroll, unsigned blocks) -> Status {
        ACTLOSS_CUDA_TRY(simcuda::launch(swiglu_backward_kernel<decltype(unroll)::value>,
                                         dim3(blocks), dim3(ew::kThreads), 0, exec.stream,
                                         packs, gate, up, dy, d_gate, d_up, vector));
        return {};
      });
}

}  // namespace actloss::detail
