// Mean squared error on the GPU (semantics: include/actloss/mse.h).
//
// One pass over input and target writes whatever the call asks for: the per-element loss
// (Reduction::none), per-block partial sums of the loss (sum/mean, added in a fixed order by the
// last block to finish: no float atomics, bitwise reproducible, one launch), the gradient, or
// several of these at once (forward_backward). Packs, vector loads and grid: cuda/elementwise.cuh.
#include "cuda/elementwise.cuh"
#include "cuda/reduce.cuh"

namespace actloss::cuda {
namespace {

// Packs per thread per loop step (cuda/elementwise.cuh), held to kBlocksPerSm resident blocks
// (at most 80 registers a thread; the loss, its overflow guards and the double sum take many).
constexpr int kPacksPerStep = 2;
constexpr int kBlocksPerSm = 3;

struct MseKernelArgs {
  ew::Packs packs;  // one long row, or rows x cols for strided rows
  ew::In input, target;
  float* loss_elements = nullptr;  // dense [rows x cols] under none when the loss is wanted
  ReducedLoss reduced;             // under sum/mean when the loss is wanted
  double denominator = 1.0;        // of the reduced loss
  ew::Out grad;                    // data null when the gradient is not wanted
  // d loss / d input = 2 (input - target) * grad_coefficient * upstream, where
  // grad_coefficient = grad_scale / (mean denominator) and upstream is dense [rows x cols]
  // under none, [1] otherwise, 1 when null.
  float grad_coefficient = 1.0f;
  const float* upstream = nullptr;
  bool upstream_per_element = false;
  bool vector = false;
};

struct MseLoaded {
  ew::RawPack input, target, upstream;
};

template <int kUnroll>
__global__ void __launch_bounds__(ew::kThreads, ew::min_blocks_per_sm(kUnroll, kBlocksPerSm))
    mse_kernel(MseKernelArgs a) {
  __shared__ double warp_partials[ew::kThreads / kWarpSize];
  const bool wants_grad = a.grad.data != nullptr;
  const bool upstream_elements = wants_grad && a.upstream != nullptr && a.upstream_per_element;
  const float coefficient =
      2.0f * a.grad_coefficient *
      (a.upstream != nullptr && !a.upstream_per_element ? a.upstream[0] : 1.0f);
  // Per-element buffers are dense [rows x cols].
  const ew::In upstream{a.upstream, DType::f32, a.packs.cols};
  const ew::Out loss{a.loss_elements, DType::f32, a.packs.cols};

  double sum = 0.0;
  const auto load = [&](const ew::Pack& p, MseLoaded& raw) {
    ew::load(a.input, p, raw.input);
    ew::load(a.target, p, raw.target);
    if (upstream_elements) ew::load(upstream, p, raw.upstream);
  };
  const auto use = [&](const ew::Pack& p, const MseLoaded& raw) {
    const int count = p.count;
    float up[ew::kPack] = {};
    if (upstream_elements) ew::unpack(raw.upstream, DType::f32, up);
    float x[ew::kPack], t[ew::kPack];
    ew::unpack(raw.input, a.input.dtype, x);
    ew::unpack(raw.target, a.target.dtype, t);

    // x - t overflows where x and t are over 1.7e38 apart, while the gradient factor (x - t), and
    // the mean of the losses, may well be finite: such a difference is kept halved (exact
    // there), its bit set in `halved`.
    float d[ew::kPack], l[ew::kPack];
    unsigned halved = 0;
    float pack_sum = 0.0f;  // <= 8 non-negative terms: relative error <= 7 * 2^-24
#pragma unroll
    for (int i = 0; i < ew::kPack; ++i) {
      d[i] = x[i] - t[i];
      if (!(fabsf(d[i]) <= FLT_MAX) && fabsf(x[i]) <= FLT_MAX && fabsf(t[i]) <= FLT_MAX) {
        d[i] = 0.5f * x[i] - 0.5f * t[i];
        halved |= 1u << i;
      }
      l[i] = (halved >> i) & 1u ? 4.0f * (d[i] * d[i]) : d[i] * d[i];
      if (i < count) pack_sum += l[i];
    }
    if (a.loss_elements != nullptr) ew::store(loss, p, l);
    // A difference beyond 1.8e19 squares past float's range: that element's loss is inf as it
    // should be, but the mean may be finite, so such a pack (rare; a NaN one too) is summed again
    // in double, where the squares are exact.
    if (pack_sum <= FLT_MAX) {
      sum += pack_sum;
    } else {
      double exact_sum = 0.0;
#pragma unroll
      for (int i = 0; i < ew::kPack; ++i) {
        const double difference = ((halved >> i) & 1u ? 2.0 : 1.0) * static_cast<double>(d[i]);
        if (i < count) exact_sum += difference * difference;
      }
      sum += exact_sum;
    }
    if (wants_grad) {
#pragma unroll
      for (int i = 0; i < ew::kPack; ++i) {
        const float factor = upstream_elements ? coefficient * up[i] : coefficient;
        d[i] *= (halved >> i) & 1u ? 2.0f * factor : factor;
      }
      ew::store(a.grad, p, d);
    }
  };
  ew::for_each_pack<kUnroll, MseLoaded, ew::Shape::one_row>(a.packs, a.vector, load, use);

  if (a.reduced.numerators != nullptr)
    finish_reduced_loss(a.reduced, block_sum(sum, warp_partials), a.denominator, warp_partials);
}

}  // namespace
}  // namespace actloss::cuda

namespace actloss::detail {

Status cuda_mse(Pass pass, const MseArgs& args, const MseOptions& options, const Exec& exec) {
  using namespace cuda;
  const bool per_element = options.reduction == Reduction::none;
  const bool wants_loss = pass != Pass::backward && args.loss != nullptr;
  const bool wants_grad = pass != Pass::forward;
  const bool reduces = wants_loss && !per_element;
  const std::int64_t count = args.rows * args.n;
  const double denominator =
      options.reduction == Reduction::mean ? static_cast<double>(count) : 1.0;

  if (count == 0) {
    // Nothing to read or differentiate; sum and mean of nothing are 0.
    if (reduces) ACTLOSS_CUDA_TRY(cudaMemsetAsync(args.loss, 0, sizeof(float), exec.stream));
    return {};
  }

  // Dense rows are one long row, the layout the several-packs loop handles; strided rows take the
  // one-pack loop, which walks rows.
  const bool strided =
      args.rows > 1 && (args.input_row_stride != args.n || args.target_row_stride != args.n ||
                        (wants_grad && args.grad_row_stride != args.n));
  MseKernelArgs a;
  a.packs = strided ? ew::packs_of(args.rows, args.n) : ew::packs_of(1, count);
  a.input = ew::In{args.input, args.input_dtype, args.input_row_stride};
  a.target = ew::In{args.target, args.target_dtype, args.target_row_stride};
  if (wants_loss && per_element) a.loss_elements = args.loss;
  if (wants_grad) {
    a.grad = ew::Out{args.grad, args.grad_dtype, args.grad_row_stride};
    a.grad_coefficient = static_cast<float>(static_cast<double>(args.grad_scale) / denominator);
    a.upstream = args.upstream_grad;
    a.upstream_per_element = per_element;
  }
  const std::int64_t rows = a.packs.rows, cols = a.packs.cols;
  a.vector = ew::vector_ok(a.input.data, a.input.dtype, rows, a.input.row_stride) &&
             ew::vector_ok(a.target.data, a.target.dtype, rows, a.target.row_stride) &&
             ew::vector_ok(a.loss_elements, DType::f32, rows, cols) &&
             ew::vector_ok(a.grad.data, a.grad.dtype, rows, a.grad.row_stride) &&
             ew::vector_ok(a.upstream_per_element ? a.upstream : nullptr, DType::f32, rows, cols);

  const std::int64_t packs = rows * a.packs.per_row;
  if (strided) {
    return ew::launch_loss(mse_kernel<1>, ew::threads_for(packs, 1), a, reduces, denominator,
                           args.loss, exec, "mse_workspace_size");
  }
  return ew::with_packs_per_step<kPacksPerStep>([&](auto unroll) {
    constexpr int kUnroll = decltype(unroll)::value;
    return ew::launch_loss(mse_kernel<kUnroll>, ew::threads_for(packs, kUnroll), a, reduces,
                           denominator, args.loss, exec, "mse_workspace_size");
  });
}

Status cuda_mse_workspace_size(const MseArgs& args, const MseOptions& options,
                               std::size_t* bytes) {
  *bytes = 0;
  if (options.reduction == Reduction::none || args.n == 0 || args.rows == 0) return {};
  // Row by row has at least as many packs as the one long row a dense call takes; saturated, as
  // the grid is capped far below and the call itself refuses such a size.
  const cuda::ew::Packs packs = cuda::ew::packs_of(args.rows, args.n);
  const std::int64_t count =
      packs.rows > INT64_MAX / packs.per_row ? INT64_MAX : packs.rows * packs.per_row;
  return cuda::ew::loss_workspace_bytes(count, bytes);
}

}  // namespace actloss::detail
