// Binary cross-entropy with logits on the GPU (semantics: include/actloss/bce.h).
//
// One pass over [rows x cols] (every input with its own row stride) reads logits, targets and the
// optional weight, pos_weight and per-element upstream gradient, and writes whatever the call
// asks for: the dense float32 loss (Reduction::none), per-block partial sums of the loss
// (sum/mean, added in a fixed order by the last block to finish: no float atomics, bitwise
// reproducible, one launch), the gradient, or several at once. Packs never straddle rows, so a
// pack's pos_weight is the 8 consecutive entries at its column; dense inputs without a
// per-column pos_weight are processed as one long row. Packs, vector loads and grid:
// cuda/elementwise.cuh.
//
// The loss is evaluated as the sum of two non-negative terms (as the float64 reference does),
//   loss = w * (pw y softplus(-x) + (1 - y) softplus(x)),
// not as (1 - y) x + l softplus(-x), which cancels: at x = -20, y = 0 that form gives 20 - 20 = 0
// in float where the loss is 2e-9. Both softplus values and both sigmoids come from one
// e = exp(-|x|) in [0, 1], which cannot overflow for any x, so x = -120 with pos_weight is finite
// and accurate. A zero coefficient on an infinite softplus (x = +-inf) contributes 0, not NaN,
// as in the reference; NaN still propagates.
#include "cuda/elementwise.cuh"
#include "cuda/reduce.cuh"

namespace actloss::cuda {
namespace {

// Packs per thread per loop step (cuda/elementwise.cuh), held to kBlocksPerSm resident blocks
// (at most 128 registers a thread: up to five tensors' packs are in flight at once).
constexpr int kPacksPerStep = 2;
constexpr int kBlocksPerSm = 2;

struct BceKernelArgs {
  ew::Packs packs;
  ew::In logits, targets;
  ew::In weight;                   // data null: 1; row stride 0 for a per-column weight
  bool weight_per_row = false;     // weight [rows]: one value per row, read once per pack
  const float* pos_weight = nullptr;  // [cols]; null: 1
  bool pos_weight_broadcast = false;  // one pos_weight for every element (a flattened [N x 1])
  float* loss_elements = nullptr;  // dense [rows x cols] under none when the loss is wanted
  ReducedLoss reduced;             // under sum/mean when the loss is wanted
  double denominator = 1.0;        // of the reduced loss
  ew::Out grad;                    // data null when the gradient is not wanted
  // grad = w * slope * grad_coefficient * upstream, grad_coefficient = grad_scale / (mean
  // denominator); upstream is dense [rows x cols] under none, [1] otherwise, 1 when null.
  float grad_coefficient = 1.0f;
  const float* upstream = nullptr;
  bool upstream_per_element = false;
  bool vector = false;
};

// coefficient * value, except that a zero coefficient on a non-NaN value (an infinite softplus)
// gives 0: the limit of y log y, as the reference defines it.
__device__ __forceinline__ float times(float coefficient, float value) {
  return coefficient == 0.0f && value == value ? 0.0f : coefficient * value;
}

// pw y softplus(-x) with the same rule for the coefficient pw y, which is zero only when pw or y
// is: their float product underflows to 0 for a subnormal y (an infinite softplus then costs
// inf, not 0).
__device__ __forceinline__ float positive_term(float pos_weight, float y, float softplus) {
  return (pos_weight == 0.0f || y == 0.0f) && softplus == softplus ? 0.0f
                                                                   : pos_weight * (y * softplus);
}

struct BceLoaded {
  ew::RawPack logits, targets, weight, pos_weight, upstream;
  float row_weight = 1.0f;  // a per-row weight (packs never straddle rows)
};

template <int kUnroll>
__global__ void __launch_bounds__(ew::kThreads, ew::min_blocks_per_sm(kUnroll, kBlocksPerSm))
    bce_kernel(BceKernelArgs a) {
  __shared__ double warp_partials[ew::kThreads / kWarpSize];
  const bool wants_loss = a.loss_elements != nullptr || a.reduced.numerators != nullptr;
  const bool wants_grad = a.grad.data != nullptr;
  const bool has_weight = a.weight.data != nullptr;
  const bool has_pos_weight = a.pos_weight != nullptr;
  const bool pack_pos_weight = has_pos_weight && !a.pos_weight_broadcast;
  const float broadcast_pos_weight = a.pos_weight_broadcast ? a.pos_weight[0] : 1.0f;
  const bool upstream_elements = wants_grad && a.upstream != nullptr && a.upstream_per_element;
  const double coefficient_exact =
      static_cast<double>(a.grad_coefficient) *
      (a.upstream != nullptr && !a.upstream_per_element ? a.upstream[0] : 1.0);
  const float coefficient = static_cast<float>(coefficient_exact);
  const ew::In pos_weight{a.pos_weight, DType::f32, 0};
  const ew::In upstream{a.upstream, DType::f32, a.packs.cols};
  const ew::Out loss{a.loss_elements, DType::f32, a.packs.cols};

  double sum = 0.0;
  // Every load of the step first (for_each_pack), conversions after, so all the streams of all
  // its packs are in flight at once.
  const auto load = [&](const ew::Pack& p, BceLoaded& raw) {
    ew::load(a.logits, p, raw.logits);
    ew::load(a.targets, p, raw.targets);
    if (a.weight_per_row)
      raw.row_weight = load_dynamic(a.weight.data, a.weight.dtype, p.row);
    else if (has_weight)
      ew::load(a.weight, p, raw.weight);
    if (pack_pos_weight) ew::load(pos_weight, ew::Pack{0, p.col, p.count, p.full}, raw.pos_weight);
    if (upstream_elements) ew::load(upstream, p, raw.upstream);
  };
  const auto use = [&](const ew::Pack& p, const BceLoaded& raw) {
    const int count = p.count;
    float x[ew::kPack], y[ew::kPack], w[ew::kPack] = {}, up[ew::kPack] = {};
    float pw[ew::kPack];
#pragma unroll
    for (int i = 0; i < ew::kPack; ++i) pw[i] = broadcast_pos_weight;
    ew::unpack(raw.logits, a.logits.dtype, x);
    ew::unpack(raw.targets, a.targets.dtype, y);
    if (a.weight_per_row) {
#pragma unroll
      for (int i = 0; i < ew::kPack; ++i) w[i] = raw.row_weight;
    } else if (has_weight) {
      ew::unpack(raw.weight, a.weight.dtype, w);
    }
    if (pack_pos_weight) ew::unpack(raw.pos_weight, DType::f32, pw);
    if (upstream_elements) ew::unpack(raw.upstream, DType::f32, up);

    // A loss term beyond float's range on a finite logit (|x| near 3.4e38 times a pos_weight or a
    // weight above 1) may still leave the mean finite: such an element's loss is kept scaled by
    // 2^-64 (exact: every softplus is at least log 2), its bit set in `scaled`, and its pack is
    // summed in double.
    constexpr float kDown = 0x1p-64f, kUp = 0x1p64f;
    float l[ew::kPack] = {}, g[ew::kPack] = {};
    unsigned scaled = 0;
    float pack_sum = 0.0f;  // <= 8 terms in float, then the pack goes into the double sum
#pragma unroll
    for (int i = 0; i < ew::kPack; ++i) {
      const float weight_i = has_weight ? w[i] : 1.0f;
      const float positive = pw[i] * y[i];                             // pw y
      const float negative = 1.0f - y[i];                             // 1 - y
      const float e = expf(-fabsf(x[i]));
      if (wants_loss) {
        const float log_term = log1pf(e);
        const float softplus_x = (x[i] > 0.0f ? x[i] : 0.0f) + log_term;    // -log(1 - s(x))
        const float softplus_neg = (x[i] < 0.0f ? -x[i] : 0.0f) + log_term;  // -log s(x)
        l[i] = times(weight_i, positive_term(pw[i], y[i], softplus_neg) +
                                   times(negative, softplus_x));
        if (!(l[i] <= FLT_MAX) && fabsf(x[i]) <= FLT_MAX) {
          l[i] = times(weight_i, positive_term(pw[i], y[i], softplus_neg * kDown) +
                                     times(negative, softplus_x * kDown));
          scaled |= 1u << i;
        }
        if (i < count) pack_sum += (scaled >> i) & 1u ? l[i] * kUp : l[i];
      }
      if (wants_grad) {
        const ew::SigmoidPair s = ew::sigmoid_pair_from_exp(x[i], e);
        const float slope = negative * s.pos - positive * s.neg;
        g[i] = weight_i * slope * (upstream_elements ? coefficient * up[i] : coefficient);
        // A weight times a pos_weight beyond float's range overflows on the way to a gradient
        // that the mean's 1/N (or a small upstream) brings back into range: such an element is
        // done again in double, where a product of four floats cannot overflow.
        if (fabsf(g[i]) == INFINITY) {
          g[i] = static_cast<float>(static_cast<double>(weight_i) * slope * coefficient_exact *
                                    (upstream_elements ? up[i] : 1.0f));
        }
      }
    }
    // A pack whose float sum overflowed (or is NaN; rare) is summed again in double.
    if (pack_sum <= FLT_MAX) {
      sum += pack_sum;
    } else {
      double exact_sum = 0.0;
#pragma unroll
      for (int i = 0; i < ew::kPack; ++i)
        if (i < count) exact_sum += ((scaled >> i) & 1u ? 0x1p64 : 1.0) * static_cast<double>(l[i]);
      sum += exact_sum;
    }
    if (a.loss_elements != nullptr) {
#pragma unroll
      for (int i = 0; i < ew::kPack; ++i)
        if ((scaled >> i) & 1u) l[i] *= kUp;
      ew::store(loss, p, l);
    }
    if (wants_grad) ew::store(a.grad, p, g);
  };
  ew::for_each_pack<kUnroll, BceLoaded>(a.packs, a.vector, load, use);

  if (a.reduced.numerators != nullptr)
    finish_reduced_loss(a.reduced, block_sum(sum, warp_partials), a.denominator, warp_partials);
}

}  // namespace
}  // namespace actloss::cuda

namespace actloss::detail {

Status cuda_bce_with_logits(Pass pass, const BceArgs& args, const BceOptions& options,
                            const Exec& exec) {
  using namespace cuda;
  const bool per_element = options.reduction == Reduction::none;
  const bool wants_loss = pass != Pass::backward && args.loss != nullptr;
  const bool wants_grad = pass != Pass::forward;
  const bool reduces = wants_loss && !per_element;
  const std::int64_t rows = args.rows, cols = args.cols;
  const double denominator = options.reduction == Reduction::mean
                                 ? static_cast<double>(rows) * static_cast<double>(cols)
                                 : 1.0;

  if (rows == 0 || cols == 0) {
    // Nothing to read or differentiate; sum and mean of nothing are 0.
    if (reduces) ACTLOSS_CUDA_TRY(cudaMemsetAsync(args.loss, 0, sizeof(float), exec.stream));
    return {};
  }

  // Dense tensors are one long row when no per-column pos_weight needs the column: every pack
  // is then full and vectorisable whatever cols is, which matters most for [N x 1] binary labels
  // (one element per pack otherwise). The partition, and so the order of the partial sums,
  // remains a function of the arguments' shape and layout only.
  // A broadcast weight needs the row or the column, except a per-row one over [N x 1], which is
  // a full one.
  const bool weight_per_row = args.weight != nullptr &&
                              args.weight_shape == BceWeightShape::per_row && cols > 1;
  const bool weight_per_column = args.weight != nullptr &&
                                 args.weight_shape == BceWeightShape::per_column && rows > 1;
  const bool dense = args.logits_row_stride == cols && args.target_row_stride == cols &&
                     (args.weight == nullptr || args.weight_row_stride == cols) &&
                     (!wants_grad || args.grad_row_stride == cols);
  const bool flatten = rows > 1 && dense && (args.pos_weight == nullptr || cols == 1) &&
                       !weight_per_row && !weight_per_column;

  BceKernelArgs a;
  a.packs = flatten ? ew::packs_of(1, rows * cols) : ew::packs_of(rows, cols);
  a.pos_weight_broadcast = args.pos_weight != nullptr && cols == 1;
  a.logits = ew::In{args.logits, args.logits_dtype, args.logits_row_stride};
  a.targets = ew::In{args.targets, args.target_dtype, args.target_row_stride};
  a.weight = ew::In{args.weight, args.weight_dtype,
                    weight_per_column ? 0 : args.weight_row_stride};
  a.weight_per_row = weight_per_row;
  a.pos_weight = args.pos_weight;
  if (wants_loss && per_element) a.loss_elements = args.loss;
  if (wants_grad) {
    a.grad = ew::Out{args.grad, args.grad_dtype, args.grad_row_stride};
    a.grad_coefficient = static_cast<float>(static_cast<double>(args.grad_scale) / denominator);
    a.upstream = args.upstream_grad;
    a.upstream_per_element = per_element;
  }
  const std::int64_t kernel_rows = a.packs.rows;
  a.vector =
      ew::vector_ok(a.logits.data, a.logits.dtype, kernel_rows, a.logits.row_stride) &&
      ew::vector_ok(a.targets.data, a.targets.dtype, kernel_rows, a.targets.row_stride) &&
      ew::vector_ok(weight_per_row ? nullptr : a.weight.data, a.weight.dtype, kernel_rows,
                    a.weight.row_stride) &&
      ew::vector_ok(a.pos_weight_broadcast ? nullptr : a.pos_weight, DType::f32, 1, 0) &&
      ew::vector_ok(a.loss_elements, DType::f32, kernel_rows, cols) &&
      ew::vector_ok(a.grad.data, a.grad.dtype, kernel_rows, a.grad.row_stride) &&
      ew::vector_ok(a.upstream_per_element ? a.upstream : nullptr, DType::f32, kernel_rows, cols);

  return ew::with_packs_per_step<kPacksPerStep>([&](auto unroll) {
    constexpr int kUnroll = decltype(unroll)::value;
    return ew::launch_loss(bce_kernel<kUnroll>,
                           ew::threads_for(kernel_rows * a.packs.per_row, kUnroll), a, reduces,
                           denominator, args.loss, exec, "bce_with_logits_workspace_size");
  });
}

Status cuda_bce_workspace_size(const BceArgs& args, const BceOptions& options,
                               std::size_t* bytes) {
  *bytes = 0;
  if (options.reduction == Reduction::none || args.rows == 0 || args.cols == 0) return {};
  // Row by row has at least as many packs as the flattened layout the call may choose.
  const cuda::ew::Packs packs = cuda::ew::packs_of(args.rows, args.cols);
  // Saturated: the grid is capped far below, and the call itself refuses such a size.
  const std::int64_t count = packs.rows > INT64_MAX / packs.per_row
                                 ? INT64_MAX
                                 : packs.rows * packs.per_row;
  return cuda::ew::loss_workspace_bytes(count, bytes);
}

}  // namespace actloss::detail
