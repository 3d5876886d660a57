// Vocabulary-parallel cross-entropy on CUDA (semantics: include/actloss/cross_entropy.h): phase 1
// writes each row's CrossEntropyShardStats of this shard, phase 2 combines the gathered
// statistics of every shard and writes the loss and this shard's gradient.
//
// One block per row (grid-stride). Phase 1 reads the shard's row twice: a max, then the sums
// relative to it (the second read mostly from L2). Phase 2 reads it once, for the gradient. The
// rest of the row's mass leaves out every element equal to the max and adds their count less
// one, exactly: a confident row's tiny rest (and with it a tiny loss) keeps its relative
// accuracy, where 1 + rest in double would not past rest ~ 1e-9.
//
// Every rank computes the loss from the same gathered bytes with a grid that depends only on
// the rows and the device, so the reduced loss is the same bits on every rank of a job.
#include "cuda/common.cuh"
#include "cuda/cross_entropy_math.cuh"
#include "cuda/reduce.cuh"
#include "cuda/row_common.cuh"

namespace actloss::cuda {
namespace {

constexpr int kShardThreads = 256;
constexpr float kInf = __builtin_huge_valf();
constexpr float kNaNf = __builtin_nanf("");
constexpr double kNaN = __builtin_nan("");

struct ShardParams {
  std::int64_t rows = 0;
  int classes = 0;
  std::int64_t first_class = 0;
  std::int64_t total_classes = 0;
  const void* logits = nullptr;
  row::RowStarts logits_rows;
  const void* targets = nullptr;
  row::RowStarts target_rows;
  bool soft_targets = false;
  bool targets_i32 = false;
  DType target_dtype = DType::f32;
  const float* class_weight = nullptr;
  std::int64_t ignore_index = -100;
  float smoothing = 0.0f;
  float z_loss = 0.0f;
  float softcap = 0.0f;
  DeviceError* error = nullptr;
};

__device__ __forceinline__ float weight_of(const ShardParams& p, int c) {
  return p.class_weight != nullptr ? p.class_weight[c] : 1.0f;
}

// A row's class target: its index in this shard (-1 when another shard holds it), whether the
// row is ignored, and whether the target is out of range (recorded, the row then NaN).
struct RowTarget {
  int local = -1;
  bool ignored = false;
  bool invalid = false;
};

__device__ __forceinline__ RowTarget row_target(const ShardParams& p, std::int64_t r) {
  RowTarget t;
  if (p.soft_targets) return t;
  const std::int64_t at = p.target_rows.of(r);
  const std::int64_t y = class_index_at(p.targets, p.targets_i32, at);
  if (y == p.ignore_index) {
    t.ignored = true;
  } else if (y < 0 || y >= p.total_classes) {
    t.invalid = true;
    if (threadIdx.x == 0) {
      record_device_error(p.error, StatusCode::out_of_range, detail::DeviceErrorArgument::targets,
                          r, y);
    }
  } else if (y >= p.first_class && y - p.first_class < p.classes) {
    t.local = static_cast<int>(y - p.first_class);
  }
  return t;
}

// a_c of class c (this shard's index) in an active row's loss.
__device__ __forceinline__ float coefficient(const ShardParams& p, std::int64_t r, int c,
                                             const RowTarget& t, float smooth) {
  if (p.soft_targets) {
    const float q = load_dynamic(p.targets, p.target_dtype, p.target_rows.of(r) + c);
    return weight_of(p, c) * ((1.0f - p.smoothing) * q + smooth);
  }
  float a = p.smoothing != 0.0f ? smooth * weight_of(p, c) : 0.0f;
  if (c == t.local) a += (1.0f - p.smoothing) * weight_of(p, c);
  return a;
}

__device__ __forceinline__ float block_max(float value, float* scratch) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  value = warp_max(value);
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  float result = -kInf;
  for (int w = 0; w < kShardThreads / kWarpSize; ++w) result = fmaxf(result, scratch[w]);
  __syncthreads();
  return result;
}

// ---- phase 1 ------------------------------------------------------------------------------------

template <class TX>
__global__ void __launch_bounds__(kShardThreads)
    shard_stats_kernel(ShardParams p, CrossEntropyShardStats* stats) {
  __shared__ float max_scratch[kShardThreads / kWarpSize];
  __shared__ double sum_scratch[kShardThreads / kWarpSize];
  const float smooth = p.smoothing / static_cast<float>(p.total_classes);
  for (std::int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
    const TX* x = static_cast<const TX*>(p.logits) + p.logits_rows.of(r);
    const RowTarget t = row_target(p, r);
    float m = -kInf;
    float nan = 0.0f;
    float slope;
    for (int c = static_cast<int>(threadIdx.x); c < p.classes; c += kShardThreads) {
      const float xc = Softcap{p.softcap}.value(to_float(x[c]), slope);
      if (xc != xc) nan = 1.0f;
      m = fmaxf(m, xc);
    }
    m = block_max(m, max_scratch);
    nan = block_max(nan, max_scratch);
    double rest = 0.0, weight = 0.0, gap = 0.0, ties = 0.0;
    const bool active = !t.ignored && !t.invalid;
    for (int c = static_cast<int>(threadIdx.x); c < p.classes; c += kShardThreads) {
      const float xc = Softcap{p.softcap}.value(to_float(x[c]), slope);
      if (xc < m) {
        rest += static_cast<double>(expf(xc - m));
      } else if (xc == m) {
        ties += 1.0;
      }
      if (active) {
        const float a = coefficient(p, r, c, t, smooth);
        weight += a;
        gap += times_gap(a, m, xc);
      }
    }
    rest = block_sum(rest, sum_scratch);
    ties = block_sum(ties, sum_scratch);
    weight = block_sum(weight, sum_scratch);
    gap = block_sum(gap, sum_scratch);
    if (threadIdx.x == 0) {
      CrossEntropyShardStats s;
      s.max = m;
      s.weight = static_cast<float>(weight);
      s.target_weight = active && t.local >= 0 ? weight_of(p, t.local) : 0.0f;
      if (nan != 0.0f || m == kInf || t.invalid) {
        s.rest = s.gap = kNaNf;
        if (t.invalid) s.weight = s.target_weight = s.rest;
      } else if (m == -kInf) {
        s.rest = 0.0f;
        s.gap = weight > 0.0 ? kInf : 0.0f;
      } else {
        s.rest = static_cast<float>(rest + (ties - 1.0));
        s.gap = static_cast<float>(gap);
      }
      stats[r] = s;
    }
  }
}

// ---- phase 2 ------------------------------------------------------------------------------------

struct FinishParams {
  ShardParams shard;
  const CrossEntropyShardStats* gathered = nullptr;
  std::int64_t shards = 0;
  std::int64_t gathered_rows = 0;  // rows between one shard's statistics and the next's
  float* row_loss = nullptr;  // Reduction::none
  float* lse = nullptr;
  ReducedLoss reduced;        // sum and mean (numerators null: no loss wanted)
  void* grad = nullptr;
  row::RowStarts grad_rows;
  float grad_scale = 1.0f;
  const float* upstream = nullptr;
  bool upstream_per_row = false;
  bool mean = false;
  const double* denominator = nullptr;  // mean with class targets: the weight-sum kernel's
  double fixed_denominator = 1.0;       // otherwise: rows (mean), or 1
};

// A row's statistics over every shard, in double, in gathered order.
struct Combined {
  double max;      // M
  double log_sum;  // log sum_c exp(x'_c - M)
  double weight;   // sum_c a_c
  double gap;      // sum_c a_c (M - x'_c)
  double target_weight;
  bool nan;
};

__device__ Combined combine(const CrossEntropyShardStats* gathered, std::int64_t shards,
                            std::int64_t gathered_rows, std::int64_t r) {
  Combined out{-static_cast<double>(kInf), 0.0, 0.0, 0.0, 0.0, false};
  std::int64_t holder = -1;  // the first shard whose max is M: its rest leaves out M's own 1
  for (std::int64_t k = 0; k < shards; ++k) {
    const CrossEntropyShardStats s = gathered[k * gathered_rows + r];
    if (s.rest != s.rest || s.max != s.max) out.nan = true;
    if (holder < 0 || s.max > out.max) {
      out.max = s.max;
      holder = k;
    }
  }
  double rest = 0.0;
  for (std::int64_t k = 0; k < shards; ++k) {
    const CrossEntropyShardStats s = gathered[k * gathered_rows + r];
    out.weight += s.weight;
    out.target_weight += s.target_weight;
    if (s.max == -kInf) {
      out.gap += s.weight > 0.0f ? static_cast<double>(kInf) : 0.0;
      continue;
    }
    const double lag = static_cast<double>(s.max) - out.max;  // <= 0
    rest += k == holder ? static_cast<double>(s.rest)
                        : (1.0 + static_cast<double>(s.rest)) * exp(lag);
    out.gap += static_cast<double>(s.gap) + (s.weight == 0.0f ? 0.0 : s.weight * -lag);
  }
  out.log_sum = out.max == -static_cast<double>(kInf) ? out.max : log1p(rest);
  if (out.nan) out.log_sum = out.gap = kNaN;
  return out;
}

// mean over class targets: the summed weight of the rows not ignored, from the gathered target
// weights (one shard holds each row's target), in a fixed order.
__global__ void __launch_bounds__(kShardThreads)
    shard_weight_sum_kernel(ShardParams p, const CrossEntropyShardStats* gathered,
                            std::int64_t shards, std::int64_t gathered_rows,
                            double* denominator) {
  __shared__ double sum_scratch[kShardThreads / kWarpSize];
  double sum = 0.0;
  for (std::int64_t r = threadIdx.x; r < p.rows; r += kShardThreads) {
    const std::int64_t at = p.target_rows.of(r);
    const std::int64_t y = class_index_at(p.targets, p.targets_i32, at);
    if (y == p.ignore_index) continue;
    for (std::int64_t k = 0; k < shards; ++k)
      sum += gathered[k * gathered_rows + r].target_weight;
  }
  sum = block_sum(sum, sum_scratch);
  if (threadIdx.x == 0) *denominator = sum;
}

template <class TX, class TG>
__global__ void __launch_bounds__(kShardThreads) shard_finish_kernel(FinishParams f) {
  __shared__ double sum_scratch[kShardThreads / kWarpSize];
  __shared__ Combined row_stats;
  const ShardParams& p = f.shard;
  const float smooth = p.smoothing / static_cast<float>(p.total_classes);
  const double denominator = f.denominator != nullptr ? *f.denominator : f.fixed_denominator;
  double block_loss = 0.0;
  for (std::int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
    if (threadIdx.x == 0) row_stats = combine(f.gathered, f.shards, f.gathered_rows, r);
    __syncthreads();
    const Combined c = row_stats;
    const RowTarget t = row_target(p, r);
    const double lse = c.max + c.log_sum;
    const bool active = !t.ignored;
    double loss = 0.0;
    if (t.invalid || c.nan) {
      loss = kNaN;
    } else if (c.max == -static_cast<double>(kInf)) {
      loss = c.weight > 0.0 ? static_cast<double>(kInf) : 0.0;
      if (p.z_loss != 0.0f) loss += static_cast<double>(kInf);
    } else {
      loss = (c.weight == 0.0 ? 0.0 : c.weight * c.log_sum) + c.gap +
             static_cast<double>(p.z_loss) * lse * lse;
    }
    if (!active) loss = 0.0;
    if (threadIdx.x == 0) {
      if (f.lse != nullptr) f.lse[r] = static_cast<float>(lse);
      if (f.row_loss != nullptr) f.row_loss[r] = static_cast<float>(loss);
      block_loss += loss;
    }
    if (f.grad != nullptr) {
      TG* g = static_cast<TG*>(f.grad) + f.grad_rows.of(r);
      const TX* x = static_cast<const TX*>(p.logits) + p.logits_rows.of(r);
      float multiplier = f.grad_scale;
      if (f.upstream != nullptr) multiplier *= f.upstream[f.upstream_per_row ? r : 0];
      const bool zero = !active || (f.mean && denominator == 0.0);
      if (f.mean && !zero) multiplier = static_cast<float>(multiplier / denominator);
      const float m = static_cast<float>(c.max);
      const float log_s = static_cast<float>(c.log_sum);
      const float weight = static_cast<float>(c.weight);
      const float z_term = 2.0f * p.z_loss * static_cast<float>(lse);
      for (int k = static_cast<int>(threadIdx.x); k < p.classes; k += kShardThreads) {
        float slope;
        const float xc = Softcap{p.softcap}.value(to_float(x[k]), slope);
        float value = 0.0f;
        if (!zero) {
          if (t.invalid || c.nan) {
            value = kNaNf;
          } else {
            value = -coefficient(p, r, k, t, smooth);
            if (m != -kInf) {
              const float prob = expf((xc - m) - log_s);
              if (prob != 0.0f) value += weight * prob + z_term * prob;
            }
            value *= multiplier * slope;
          }
        }
        g[k] = from_float<TG>(value);
      }
    }
    // row_stats is rewritten by the next row only after every thread has read it.
    __syncthreads();
  }
  if (f.reduced.numerators != nullptr) {
    const double numerator = block_sum(threadIdx.x == 0 ? block_loss : 0.0, sum_scratch);
    finish_reduced_loss(f.reduced, numerator, denominator, sum_scratch);
  }
}

ShardParams shard_params(const CrossEntropyArgs& args, const CrossEntropyShard& shard,
                         const CrossEntropyOptions& options) {
  ShardParams p;
  p.rows = args.rows;
  p.classes = static_cast<int>(args.classes);
  p.first_class = shard.first_class;
  p.total_classes = shard.total_classes;
  p.logits = args.logits;
  p.logits_rows = row::row_starts(args.rows, args.rows_per_batch, args.logits_row_stride,
                                  args.logits_batch_stride);
  p.targets = args.targets;
  p.soft_targets = args.target_kind == TargetKind::probabilities;
  p.targets_i32 = args.target_kind == TargetKind::class_index_i32;
  if (p.soft_targets) {
    p.target_dtype = args.target_dtype;
    p.target_rows = row::row_starts(args.rows, args.rows_per_batch, args.target_row_stride,
                                    args.target_batch_stride);
  } else {
    p.target_rows = row::row_starts(args.rows, args.rows_per_batch, 1, args.target_batch_stride);
  }
  p.class_weight = args.class_weight;
  p.ignore_index = options.ignore_index;
  p.smoothing = options.label_smoothing;
  p.z_loss = options.z_loss;
  p.softcap = options.softcap;
  return p;
}

// Blocks of the finish kernel: a function of the rows and the device only (see the top).
unsigned finish_grid(std::int64_t rows, const DeviceInfo& device) {
  const std::int64_t sms = device.sm_count > 0 ? device.sm_count : 1;
  return grid_size_for(rows, 1, sms * 8);
}

struct FinishScratch {
  bool denominator = false;  // mean over class targets
  std::size_t reduced_doubles = 0;
  std::size_t doubles() const { return (denominator ? 1 : 0) + reduced_doubles; }
};

FinishScratch finish_scratch(const CrossEntropyArgs& args, const CrossEntropyOptions& options,
                             bool want_loss, unsigned grid) {
  FinishScratch s;
  s.denominator = options.reduction == Reduction::mean &&
                  args.target_kind != TargetKind::probabilities;
  if (want_loss && options.reduction != Reduction::none) {
    s.reduced_doubles = reduced_loss_doubles(grid, false);
  }
  return s;
}

}  // namespace
}  // namespace actloss::cuda

namespace actloss::detail {

Status cuda_cross_entropy_shard_stats(const CrossEntropyArgs& args, const CrossEntropyShard& shard,
                                      const CrossEntropyOptions& options,
                                      CrossEntropyShardStats* stats, const Exec& exec) {
  using namespace actloss::cuda;
  if (args.rows == 0) return {};
  if (Status status = row::check_row_length(args.classes, "classes"); !status.ok()) return status;
  const DeviceInfo* device = nullptr;
  if (Status status = current_device_info(&device); !status.ok()) return status;
  ShardParams p = shard_params(args, shard, options);
  if (args.target_kind != TargetKind::probabilities) {
    if (Status status = device_error_record(exec, &p.error); !status.ok()) return status;
  }
  const unsigned grid = finish_grid(args.rows, *device);
  return row::with_dtype("cross_entropy_shard_stats", args.logits_dtype, [&](auto x_tag) {
    using TX = typename decltype(x_tag)::type;
    ACTLOSS_CUDA_TRY(simcuda::launch(shard_stats_kernel<TX>, dim3(grid), dim3(kShardThreads), 0,
                                     exec.stream, p, stats));
    return Status{};
  });
}

Status cuda_cross_entropy_shard_workspace_size(const CrossEntropyArgs& args,
                                               const CrossEntropyOptions& options,
                                               std::size_t* bytes) {
  using namespace actloss::cuda;
  *bytes = 0;
  if (args.rows == 0) return {};
  const DeviceInfo* device = nullptr;
  if (Status status = current_device_info(&device); !status.ok()) return status;
  *bytes = finish_scratch(args, options, true, finish_grid(args.rows, *device)).doubles() *
           sizeof(double);
  return {};
}

Status cuda_cross_entropy_shard_finish(const CrossEntropyArgs& args,
                                       const CrossEntropyShard& shard,
                                       const CrossEntropyOptions& options,
                                       const CrossEntropyShardStats* gathered,
                                       std::int64_t shards, std::int64_t gathered_rows,
                                       const Exec& exec) {
  using namespace actloss::cuda;
  const cudaStream_t stream = exec.stream;
  const bool reduced = options.reduction != Reduction::none;
  if (args.rows == 0) {
    if (args.loss != nullptr && reduced)
      ACTLOSS_CUDA_TRY(cudaMemsetAsync(args.loss, 0, sizeof(float), stream));
    return {};
  }
  if (Status status = row::check_row_length(args.classes, "classes"); !status.ok()) return status;
  const DeviceInfo* device = nullptr;
  if (Status status = current_device_info(&device); !status.ok()) return status;

  FinishParams f;
  f.shard = shard_params(args, shard, options);
  if (args.target_kind != TargetKind::probabilities) {
    if (Status status = device_error_record(exec, &f.shard.error); !status.ok()) return status;
  }
  f.gathered = gathered;
  f.shards = shards;
  f.gathered_rows = gathered_rows;
  f.row_loss = reduced ? nullptr : args.loss;
  f.lse = args.lse;
  f.mean = options.reduction == Reduction::mean;
  f.fixed_denominator = f.mean ? static_cast<double>(args.rows) : 1.0;
  if (args.grad != nullptr) {
    f.grad = args.grad;
    f.grad_rows = row::row_starts(args.rows, args.rows_per_batch, args.grad_row_stride,
                                  args.grad_batch_stride);
    f.grad_scale = args.grad_scale;
    f.upstream = args.upstream_grad;
    f.upstream_per_row = !reduced;
  }

  const unsigned grid = finish_grid(args.rows, *device);
  const FinishScratch layout = finish_scratch(args, options, args.loss != nullptr, grid);
  CallScratch scratch;
  if (layout.doubles() > 0) {
    if (Status status = scratch.acquire(layout.doubles() * sizeof(double), exec.workspace,
                                        stream, "cross_entropy_shard_workspace_size");
        !status.ok())
      return status;
  }
  if (layout.reduced_doubles > 0) {
    if (Status status = prepare_reduced_loss(scratch.as<double>(), grid, false, args.loss, stream,
                                             &f.reduced);
        !status.ok())
      return status;
  }
  if (layout.denominator) {
    double* denominator = scratch.as<double>() + layout.reduced_doubles;
    ACTLOSS_CUDA_TRY(simcuda::launch(shard_weight_sum_kernel, dim3(1), dim3(kShardThreads), 0,
                                     stream, f.shard, gathered, shards, gathered_rows,
                                     denominator));
    f.denominator = denominator;
  }
  const DType grad_dtype = args.grad != nullptr ? args.grad_dtype : args.logits_dtype;
  Status status = row::with_dtype("cross_entropy_shard_finish", args.logits_dtype, [&](auto x) {
    return row::with_dtype("cross_entropy_shard_finish", grad_dtype, [&](auto g) {
      using TX = typename decltype(x)::type;
      using TG = typename decltype(g)::type;
      ACTLOSS_CUDA_TRY(simcuda::launch(shard_finish_kernel<TX, TG>, dim3(grid),
                                       dim3(kShardThreads), 0, stream, f));
      return Status{};
    });
  });
  if (!status.ok()) return status;
  if (layout.reduced_doubles > 0) return finish_in_second_kernel(f.reduced, grid, stream);
  return {};
}

}  // namespace actloss::detail
