// Public fused linear cross-entropy entry points: validate, choose the chunk, then run the
// float64 reference composition on the CPU or hand over to the CUDA backend.
//
// What each pass needs (when tokens > 0; with tokens == 0 every input pointer may be null):
//   forward           hidden, weight, targets, loss         writes loss, lse (optional)
//   forward_backward  hidden, weight, targets, d_hidden,    writes d_hidden, d_weight, d_bias;
//                     d_weight (d_bias when bias is given)  loss, lse (optional)
//   shard_stats       hidden, weight, targets, stats        writes stats
//   shard_finish      as forward, or as forward_backward    the same, from the gathered stats
//                     when d_hidden or d_weight is given
// bias, class_weight and upstream_grad are optional inputs. The forward ignores (does not
// validate) the gradients' fields, and they reach the backend as null; so does phase 1 with
// every output.
#include <actloss/linear_cross_entropy.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <optional>

#include "host/backend.h"
#include "host/cpu_path.h"
#include "host/half.h"
#include "host/validate.h"

namespace actloss {
namespace {

using detail::Pass;
using host::Region;

using detail::kLinearBufferRowMultiple;

// A validated call, as the backend receives it, with the bytes each pointer spans.
struct Plan {
  LinearCrossEntropyArgs args;
  std::int64_t chunk_tokens = 0;
  Region hidden, weight, bias, targets, class_weight, upstream_grad;
  Region loss, lse, d_hidden, d_weight, d_bias;
};

Status check_options(Pass pass, const LinearCrossEntropyArgs& args,
                     const LinearCrossEntropyOptions& options) {
  const CrossEntropyOptions& loss = options.loss;
  if (!host::is_valid(loss.reduction)) {
    return host::invalid("options.loss.reduction", "not a Reduction value (got ",
                         static_cast<int>(loss.reduction), ")");
  }
  // The negated forms also reject NaN.
  if (!(loss.label_smoothing >= 0.0f && loss.label_smoothing <= 1.0f)) {
    return host::invalid("options.loss.label_smoothing", "must be in [0, 1] (got ",
                         loss.label_smoothing, ")");
  }
  ACTLOSS_TRY(host::check_finite_non_negative(loss.z_loss, "options.loss.z_loss"));
  ACTLOSS_TRY(host::check_finite_non_negative(loss.softcap, "options.loss.softcap"));
  if (options.max_chunk_tokens < 0) {
    return host::invalid("options.max_chunk_tokens", "must be >= 0 (got ",
                         options.max_chunk_tokens, "; 0: no limit)");
  }
  if (pass != Pass::forward) ACTLOSS_TRY(host::check_finite(args.grad_scale, "grad_scale"));
  return {};
}

// cuBLAS takes 32-bit sizes and leading dimensions.
Status check_fits_int(std::int64_t value, const char* argument) {
  if (value > INT_MAX) {
    return host::invalid(argument, "must be at most ", INT_MAX,
                         " (cuBLAS's 32-bit sizes; got ", value, ")");
  }
  return {};
}

Status check_shape(const LinearCrossEntropyArgs& args) {
  ACTLOSS_TRY(host::check_non_negative(args.tokens, "tokens"));
  ACTLOSS_TRY(host::check_non_negative(args.hidden_size, "hidden_size"));
  ACTLOSS_TRY(host::check_non_negative(args.classes, "classes"));
  if (args.tokens > 0 && args.classes == 0) {
    return host::invalid("classes", "must be >= 1 when tokens > 0 (got 0; no class to predict)");
  }
  if (args.tokens > 0 && args.hidden_size == 0) {
    return host::invalid("hidden_size", "must be >= 1 when tokens > 0 (got 0)");
  }
  ACTLOSS_TRY(check_fits_int(args.hidden_size, "hidden_size"));
  // The chunk buffer's rows round classes up, and that must fit too.
  if (args.classes > INT_MAX - (kLinearBufferRowMultiple - 1)) {
    return host::invalid("classes", "must be at most ", INT_MAX - (kLinearBufferRowMultiple - 1),
                         " (cuBLAS's 32-bit sizes, rows rounded up to ", kLinearBufferRowMultiple,
                         "; got ", args.classes, ")");
  }
  if (args.target_kind != TargetKind::class_index_i32 &&
      args.target_kind != TargetKind::class_index_i64) {
    return host::invalid("target_kind", "must be class_index_i32 or class_index_i64 (got ",
                         static_cast<int>(args.target_kind), ")");
  }
  return host::check_dtype(args.dtype, "dtype");
}

// Tokens per chunk: what the budget holds (by default a buffer of about tokens x hidden_size
// elements, rounded up to 64 tokens for the GEMMs), capped by the option and the batch.
Status choose_chunk(const LinearCrossEntropyArgs& args, const LinearCrossEntropyOptions& options,
                    bool gradients, std::int64_t* chunk_tokens) {
  *chunk_tokens = 0;
  if (args.tokens == 0) return {};
  std::int64_t tokens = 0;
  if (options.chunk_bytes == 0) {
    const double elements =
        static_cast<double>(args.tokens) * static_cast<double>(args.hidden_size);
    const double per_token = static_cast<double>(args.classes);
    const double wanted = std::ceil(elements / per_token / 64.0) * 64.0;
    tokens = wanted >= static_cast<double>(args.tokens) ? args.tokens
                                                        : static_cast<std::int64_t>(wanted);
  } else {
    const std::int64_t per_token =
        linear_cross_entropy_bytes_per_token(args.classes, args.dtype, gradients);
    const std::uint64_t fit = options.chunk_bytes / static_cast<std::uint64_t>(per_token);
    if (fit == 0) {
      return host::invalid("options.chunk_bytes", "holds no token (got ", options.chunk_bytes,
                           " bytes; one token needs ", per_token, ")");
    }
    tokens = fit >= static_cast<std::uint64_t>(args.tokens) ? args.tokens
                                                            : static_cast<std::int64_t>(fit);
  }
  if (options.max_chunk_tokens > 0) tokens = std::min(tokens, options.max_chunk_tokens);
  *chunk_tokens = std::max<std::int64_t>(1, std::min<std::int64_t>(tokens, INT_MAX));
  return {};
}

// loss_required: the forward's loss must be given when tokens > 0 (the sharded phase 1 writes
// statistics instead).
Status validate(Pass pass, const LinearCrossEntropyArgs& in,
                const LinearCrossEntropyOptions& options, const Exec& exec, Plan& plan,
                bool loss_required = true) {
  ACTLOSS_TRY(host::check_exec(exec));
  ACTLOSS_TRY(check_options(pass, in, options));
  ACTLOSS_TRY(check_shape(in));
  const bool gradients = pass != Pass::forward;
  LinearCrossEntropyArgs& args = plan.args;
  args = in;
  if (gradients) {
    if (args.d_weight_dtype != DType::f32 && args.d_weight_dtype != args.dtype) {
      return host::invalid("d_weight_dtype", "must be f32 or dtype (got ",
                           to_string(args.d_weight_dtype), ", dtype ", to_string(args.dtype), ")");
    }
  } else {
    args.d_hidden = args.d_weight = args.d_bias = nullptr;
    args.upstream_grad = nullptr;
    args.d_weight_dtype = DType::f32;
  }

  const std::int64_t N = args.tokens, D = args.hidden_size, V = args.classes;
  ACTLOSS_TRY(host::normalize_stride(args.hidden_row_stride, D, "hidden_row_stride",
                                     "hidden_size"));
  ACTLOSS_TRY(host::normalize_stride(args.weight_row_stride, D, "weight_row_stride",
                                     "hidden_size"));
  ACTLOSS_TRY(host::normalize_stride(args.d_hidden_row_stride, D, "d_hidden_row_stride",
                                     "hidden_size"));
  ACTLOSS_TRY(host::normalize_stride(args.d_weight_row_stride, D, "d_weight_row_stride",
                                     "hidden_size"));
  ACTLOSS_TRY(check_fits_int(args.hidden_row_stride, "hidden_row_stride"));
  ACTLOSS_TRY(check_fits_int(args.weight_row_stride, "weight_row_stride"));
  ACTLOSS_TRY(check_fits_int(args.d_hidden_row_stride, "d_hidden_row_stride"));
  ACTLOSS_TRY(check_fits_int(args.d_weight_row_stride, "d_weight_row_stride"));

  // Inputs are read only when there are tokens.
  const std::int64_t read = N > 0 ? 1 : 0;
  const std::int64_t loss_count = options.loss.reduction == Reduction::none ? N : 1;
  ACTLOSS_TRY(host::matrix_region("hidden", args.hidden, args.dtype, N, D,
                                  args.hidden_row_stride, "tokens", "hidden_size",
                                  "hidden_row_stride", plan.hidden));
  ACTLOSS_TRY(host::matrix_region("weight", args.weight, args.dtype, read * V, D,
                                  args.weight_row_stride, "classes", "hidden_size",
                                  "weight_row_stride", plan.weight));
  ACTLOSS_TRY(host::vector_region("bias", args.bias, args.bias != nullptr ? read * V : 0,
                                  dtype_size(args.dtype), "classes", plan.bias));
  const std::int64_t index_size = args.target_kind == TargetKind::class_index_i32 ? 4 : 8;
  ACTLOSS_TRY(host::vector_region("targets", args.targets, N, index_size, "tokens",
                                  plan.targets));
  ACTLOSS_TRY(host::vector_region("class_weight", args.class_weight,
                                  args.class_weight != nullptr ? read * V : 0, 4, "classes",
                                  plan.class_weight));
  ACTLOSS_TRY(host::vector_region("upstream_grad", args.upstream_grad,
                                  args.upstream_grad != nullptr ? read * loss_count : 0, 4,
                                  "tokens", plan.upstream_grad));
  ACTLOSS_TRY(host::vector_region("loss", args.loss, args.loss != nullptr ? loss_count : 0, 4,
                                  "tokens", plan.loss));
  ACTLOSS_TRY(host::vector_region("lse", args.lse, args.lse != nullptr ? N : 0, 4, "tokens",
                                  plan.lse));
  if (gradients) {
    ACTLOSS_TRY(host::matrix_region("d_hidden", args.d_hidden, args.dtype, N, D,
                                    args.d_hidden_row_stride, "tokens", "hidden_size",
                                    "d_hidden_row_stride", plan.d_hidden));
    ACTLOSS_TRY(host::matrix_region("d_weight", args.d_weight, args.d_weight_dtype, V, D,
                                    args.d_weight_row_stride, "classes", "hidden_size",
                                    "d_weight_row_stride", plan.d_weight));
    ACTLOSS_TRY(host::vector_region("d_bias", args.d_bias, args.d_bias != nullptr ? V : 0,
                                    dtype_size(args.d_weight_dtype), "classes", plan.d_bias));
  }

  if (N > 0) {
    ACTLOSS_TRY(host::check_required(args.hidden, "hidden", "tokens > 0"));
    ACTLOSS_TRY(host::check_required(args.weight, "weight", "tokens > 0"));
    ACTLOSS_TRY(host::check_required(args.targets, "targets", "tokens > 0"));
    if (!gradients) {
      if (loss_required) {
        ACTLOSS_TRY(host::check_required(args.loss, "loss", "forward writes it when tokens > 0"));
      }
    } else {
      ACTLOSS_TRY(host::check_required(args.d_hidden, "d_hidden",
                                       "forward_backward writes it when tokens > 0"));
    }
  }
  if (gradients && V > 0 && D > 0) {
    ACTLOSS_TRY(host::check_required(args.d_weight, "d_weight", "forward_backward writes it"));
  }
  if (gradients && args.bias != nullptr && V > 0) {
    ACTLOSS_TRY(host::check_required(args.d_bias, "d_bias",
                                     "forward_backward writes the gradient of the given bias"));
  }

  const std::initializer_list<const Region*> inputs = {
      &plan.hidden, &plan.weight, &plan.bias, &plan.targets, &plan.class_weight,
      &plan.upstream_grad};
  for (const Region* output : {&plan.loss, &plan.lse, &plan.d_hidden, &plan.d_weight,
                               &plan.d_bias}) {
    ACTLOSS_TRY(host::check_no_overlap(*output, inputs));
  }
  ACTLOSS_TRY(host::check_no_overlap(plan.lse, {&plan.loss}));
  ACTLOSS_TRY(host::check_no_overlap(plan.d_hidden, {&plan.loss, &plan.lse}));
  ACTLOSS_TRY(host::check_no_overlap(plan.d_weight, {&plan.loss, &plan.lse, &plan.d_hidden}));
  ACTLOSS_TRY(host::check_no_overlap(plan.d_bias,
                                     {&plan.loss, &plan.lse, &plan.d_hidden, &plan.d_weight}));
  return choose_chunk(args, options, gradients, &plan.chunk_tokens);
}

// ---------------------------------------------------------------------------------------------
// The CPU path: the unfused composition in double (linear layer, reference cross-entropy,
// linear backward of its gradient), rounded once into the outputs.

std::int64_t load_target(const LinearCrossEntropyArgs& args, std::int64_t token) {
  return host::load_class_target(args.targets, args.target_kind, token);
}

Status check_class_targets(const LinearCrossEntropyArgs& args,
                           const CrossEntropyOptions& options) {
  for (std::int64_t token = 0; token < args.tokens; ++token) {
    const std::int64_t target = load_target(args, token);
    if (target == options.ignore_index) continue;
    if (target < 0 || target >= args.classes) {
      return host::make_status(StatusCode::out_of_range, "targets", "token ", token,
                               " has class ", target, ", outside [0, ", args.classes,
                               ") and not ignore_index (", options.ignore_index, ")");
    }
  }
  return {};
}

// The weight gradients, added to what the outputs hold when accumulating.
void write_weight_gradients(const LinearCrossEntropyArgs& args, ref::LinearGradients& gradients) {
  const std::int64_t V = args.classes, D = args.hidden_size;
  if (args.accumulate) {
    const std::vector<double> held =
        host::gather(args.d_weight, args.d_weight_dtype, V, D, args.d_weight_row_stride);
    for (std::size_t i = 0; i < held.size(); ++i) gradients.d_weight[i] += held[i];
    if (args.d_bias != nullptr) {
      const std::vector<double> held_bias = host::gather(args.d_bias, args.d_weight_dtype, 1, V, V);
      for (std::size_t i = 0; i < held_bias.size(); ++i) gradients.d_bias[i] += held_bias[i];
    }
  }
  host::scatter(args.d_weight, args.d_weight_dtype, V, D, args.d_weight_row_stride,
                gradients.d_weight);
  if (args.d_bias != nullptr)
    host::scatter(args.d_bias, args.d_weight_dtype, 1, V, V, gradients.d_bias);
}

// The inputs of the linear layer in double: hidden [N x D], weight [V x D], bias [V] or none.
struct Operands {
  explicit Operands(const LinearCrossEntropyArgs& args)
      : hidden(host::gather(args.hidden, args.dtype, args.tokens, args.hidden_size,
                            args.hidden_row_stride)),
        weight(host::gather(args.weight, args.dtype, args.classes, args.hidden_size,
                            args.weight_row_stride)),
        bias(args.bias != nullptr ? host::gather(args.bias, args.dtype, 1, args.classes,
                                                 args.classes)
                                  : std::vector<double>{}) {}
  std::vector<double> hidden, weight, bias;
};

// A reduced loss over no tokens is 0, and so are gradients summed over none.
void write_outputs_of_no_tokens(const LinearCrossEntropyArgs& args,
                                const LinearCrossEntropyOptions& options, bool gradients) {
  const std::int64_t D = args.hidden_size, V = args.classes;
  if (args.loss != nullptr && options.loss.reduction != Reduction::none) *args.loss = 0.0f;
  if (gradients && V > 0 && D > 0) {
    ref::LinearGradients none;
    none.d_weight.assign(static_cast<std::size_t>(V * D), 0.0);
    none.d_bias.assign(static_cast<std::size_t>(V), 0.0);
    write_weight_gradients(args, none);
  }
}

Status run_on_cpu(Pass pass, const Plan& plan, const LinearCrossEntropyOptions& options) {
  const LinearCrossEntropyArgs& args = plan.args;
  ACTLOSS_TRY(check_class_targets(args, options.loss));
  const bool gradients = pass != Pass::forward;
  return host::run_cpu("linear_cross_entropy", [&] {
    const std::int64_t N = args.tokens, D = args.hidden_size, V = args.classes;
    if (N == 0) {
      write_outputs_of_no_tokens(args, options, gradients);
      return;
    }
    const Operands in(args);

    ref::CrossEntropyProblem problem;
    problem.rows = N;
    problem.classes = V;
    problem.logits = ref::linear_forward(N, D, V, in.hidden, in.weight, in.bias);
    problem.target_index.resize(static_cast<std::size_t>(N));
    for (std::int64_t token = 0; token < N; ++token)
      problem.target_index[static_cast<std::size_t>(token)] = load_target(args, token);
    problem.class_weight = host::gather_f32(args.class_weight, V);
    problem.ignore_index = options.loss.ignore_index;
    problem.label_smoothing = options.loss.label_smoothing;
    problem.z_loss = options.loss.z_loss;
    problem.softcap = options.loss.softcap;
    problem.reduction = host::to_ref(options.loss.reduction);
    problem.grad_scale = args.grad_scale;
    problem.upstream = host::gather_upstream(args.upstream_grad, options.loss.reduction, N);
    const ref::CrossEntropyResult result = ref::cross_entropy(problem);

    if (gradients) {
      ref::LinearGradients linear =
          ref::linear_backward(N, D, V, in.hidden, in.weight, result.grad);
      host::scatter(args.d_hidden, args.dtype, N, D, args.d_hidden_row_stride, linear.d_input);
      write_weight_gradients(args, linear);
    }
    if (args.loss != nullptr) {
      if (options.loss.reduction == Reduction::none)
        host::scatter_f32(args.loss, result.row_loss);
      else
        host::store_f32(args.loss, result.loss);
    }
    if (args.lse != nullptr) host::scatter_f32(args.lse, result.lse);
  });
}

// The workspace against every buffer of the call (and `statistics`, the sharded calls'), and
// every buffer against the device.
Status check_buffers(const Plan& plan, const Region& statistics, const Exec& exec) {
  Region workspace;
  ACTLOSS_TRY(host::check_workspace(
      exec, {&plan.hidden, &plan.weight, &plan.bias, &plan.targets, &plan.class_weight,
             &plan.upstream_grad, &plan.loss, &plan.lse, &plan.d_hidden, &plan.d_weight,
             &plan.d_bias, &statistics},
      workspace));
  return host::check_memory(
      exec, {&plan.hidden, &plan.weight, &plan.bias, &plan.targets, &plan.class_weight,
             &plan.upstream_grad, &plan.loss, &plan.lse, &plan.d_hidden, &plan.d_weight,
             &plan.d_bias, &statistics, &workspace});
}

Status run(Pass pass, const LinearCrossEntropyArgs& args,
           const LinearCrossEntropyOptions& options, const Exec& exec) {
  Plan plan;
  ACTLOSS_TRY(validate(pass, args, options, exec, plan));
  ACTLOSS_TRY(check_buffers(plan, Region{}, exec));
  if (host::runs_on_host(exec.device)) return run_on_cpu(pass, plan, options);
  return detail::cuda_linear_cross_entropy(pass, plan.args, options, plan.chunk_tokens, exec);
}

// ---- Vocabulary-parallel -----------------------------------------------------------------------
//
// Both phases validate as the unsharded passes over this shard's slices (phase 1 as a forward
// without outputs, phase 2 as the forward or, with gradients, forward_backward), then check the
// shard and the statistics' buffer. Class targets are checked against the whole vocabulary.

Status validate_shard_stats(const LinearCrossEntropyArgs& in, const CrossEntropyShard& shard,
                            const LinearCrossEntropyOptions& options,
                            CrossEntropyShardStats* stats, const Exec& exec, Plan& plan,
                            Region& stats_region) {
  LinearCrossEntropyArgs args = in;
  args.loss = args.lse = nullptr;
  ACTLOSS_TRY(validate(Pass::forward, args, options, exec, plan, /*loss_required=*/false));
  const std::int64_t tokens = plan.args.tokens;
  ACTLOSS_TRY(host::check_shard(tokens, plan.args.classes, shard));
  ACTLOSS_TRY(host::vector_region("stats", stats, tokens, sizeof(CrossEntropyShardStats),
                                  "tokens", stats_region, alignof(CrossEntropyShardStats)));
  if (tokens > 0) ACTLOSS_TRY(host::check_required(stats, "stats", "tokens > 0"));
  return host::check_no_overlap(stats_region, {&plan.hidden, &plan.weight, &plan.bias,
                                               &plan.targets, &plan.class_weight});
}

// Phase 2 writes the gradients when either gradient the caller must hold is given.
Pass shard_finish_pass(const LinearCrossEntropyArgs& args) {
  return args.d_hidden != nullptr || args.d_weight != nullptr ? Pass::forward_backward
                                                              : Pass::forward;
}

Status validate_shard_finish(const LinearCrossEntropyArgs& args, const CrossEntropyShard& shard,
                             const LinearCrossEntropyOptions& options,
                             const CrossEntropyShardStats* gathered, std::int64_t shards,
                             const Exec& exec, Plan& plan, Region& gathered_region) {
  ACTLOSS_TRY(validate(shard_finish_pass(args), args, options, exec, plan));
  const std::int64_t tokens = plan.args.tokens;
  ACTLOSS_TRY(host::check_shard(tokens, plan.args.classes, shard));
  ACTLOSS_TRY(host::gathered_stats_region(gathered, shards, tokens, shard, gathered_region));
  for (const Region* output : {&plan.loss, &plan.lse, &plan.d_hidden, &plan.d_weight,
                               &plan.d_bias}) {
    ACTLOSS_TRY(host::check_no_overlap(*output, {&gathered_region}));
  }
  return {};
}

// The CPU path of both phases: the linear layer in double, its logits rounded to float once (as
// the chunk buffer of the CUDA path holds them; the statistics that cross ranks are floats
// anyway), the CPU's sharded cross-entropy, and the linear backward of its gradient in double.

CrossEntropyArgs shard_logits_args(const LinearCrossEntropyArgs& args, const float* logits) {
  CrossEntropyArgs ce;
  ce.rows = args.tokens;
  ce.classes = args.classes;
  ce.logits = logits;
  ce.logits_dtype = DType::f32;
  ce.targets = args.targets;
  ce.target_kind = args.target_kind;
  ce.class_weight = args.class_weight;
  return ce;
}

// The linear layer's operands in double (kept in `in` for the backward) and its logits.
Status float_logits_on_cpu(const LinearCrossEntropyArgs& args, std::optional<Operands>& in,
                           std::vector<float>& logits) {
  return host::run_cpu("linear_cross_entropy", [&] {
    in.emplace(args);
    const std::vector<double> exact = ref::linear_forward(args.tokens, args.hidden_size,
                                                          args.classes, in->hidden, in->weight,
                                                          in->bias);
    logits.resize(exact.size());
    for (std::size_t i = 0; i < exact.size(); ++i) logits[i] = host::double_to_float(exact[i]);
  });
}

Exec cpu_exec_of(const Exec& exec) {
  Exec cpu;
  cpu.device = exec.device;
  return cpu;
}

Status run_shard_stats_on_cpu(const Plan& plan, const CrossEntropyShard& shard,
                              const LinearCrossEntropyOptions& options,
                              CrossEntropyShardStats* stats, const Exec& exec) {
  const LinearCrossEntropyArgs& args = plan.args;
  if (args.tokens == 0) return {};
  std::optional<Operands> in;
  std::vector<float> logits;
  ACTLOSS_TRY(float_logits_on_cpu(args, in, logits));
  return cross_entropy_shard_stats(shard_logits_args(args, logits.data()), shard, options.loss,
                                   stats, cpu_exec_of(exec));
}

Status run_shard_finish_on_cpu(Pass pass, const Plan& plan, const CrossEntropyShard& shard,
                               const LinearCrossEntropyOptions& options,
                               const CrossEntropyShardStats* gathered, std::int64_t shards,
                               const Exec& exec) {
  const LinearCrossEntropyArgs& args = plan.args;
  const bool gradients = pass != Pass::forward;
  if (args.tokens == 0) {
    return host::run_cpu("linear_cross_entropy_shard_finish",
                         [&] { write_outputs_of_no_tokens(args, options, gradients); });
  }
  std::optional<Operands> in;
  std::vector<float> logits;
  ACTLOSS_TRY(float_logits_on_cpu(args, in, logits));
  CrossEntropyArgs ce = shard_logits_args(args, logits.data());
  ce.loss = args.loss;
  ce.lse = args.lse;
  std::vector<float> grad;
  if (gradients) {
    grad.resize(logits.size());
    ce.grad = grad.data();
    ce.grad_dtype = DType::f32;
    ce.grad_scale = args.grad_scale;
    ce.upstream_grad = args.upstream_grad;
  }
  ACTLOSS_TRY(cross_entropy_shard_finish(ce, shard, options.loss, gathered, shards,
                                         cpu_exec_of(exec)));
  if (!gradients) return {};
  return host::run_cpu("linear_cross_entropy_shard_finish", [&] {
    const std::int64_t N = args.tokens, D = args.hidden_size, V = args.classes;
    const std::vector<double> dy(grad.begin(), grad.end());
    ref::LinearGradients linear = ref::linear_backward(N, D, V, in->hidden, in->weight, dy);
    host::scatter(args.d_hidden, args.dtype, N, D, args.d_hidden_row_stride, linear.d_input);
    write_weight_gradients(args, linear);
  });
}

// The workspace queries' checks; *bytes is 0 and *on_device false where no workspace is needed
// (the CPU, no tokens).
Status begin_workspace_query(const LinearCrossEntropyArgs& args,
                             const LinearCrossEntropyOptions& options, const Exec& exec,
                             std::size_t* bytes, bool* on_device) {
  ACTLOSS_TRY(host::check_workspace_query(exec, bytes));
  ACTLOSS_TRY(check_options(Pass::forward_backward, args, options));
  ACTLOSS_TRY(check_shape(args));
  *bytes = 0;
  *on_device = !host::runs_on_host(exec.device) && args.tokens > 0;
  return {};
}

}  // namespace

Status linear_cross_entropy_forward(const LinearCrossEntropyArgs& args,
                                    const LinearCrossEntropyOptions& options, const Exec& exec) {
  return run(Pass::forward, args, options, exec);
}

Status linear_cross_entropy_forward_backward(const LinearCrossEntropyArgs& args,
                                             const LinearCrossEntropyOptions& options,
                                             const Exec& exec) {
  return run(Pass::forward_backward, args, options, exec);
}

std::int64_t linear_cross_entropy_bytes_per_token(std::int64_t classes, DType dtype,
                                                  bool with_gradients) {
  if (classes <= 0 || classes > INT64_MAX / 16) return 0;
  const std::int64_t stride =
      (classes + kLinearBufferRowMultiple - 1) / kLinearBufferRowMultiple *
      kLinearBufferRowMultiple;
  const std::int64_t grad_bytes = with_gradients && dtype != DType::f32 ? dtype_size(dtype) : 0;
  return stride * (4 + grad_bytes);
}

Status linear_cross_entropy_workspace_size(const LinearCrossEntropyArgs& args,
                                           const LinearCrossEntropyOptions& options,
                                           const Exec& exec, std::size_t* bytes) {
  bool on_device = false;
  ACTLOSS_TRY(begin_workspace_query(args, options, exec, bytes, &on_device));
  if (!on_device) return {};
  std::size_t most = 0;
  for (const bool gradients : {false, true}) {
    std::int64_t chunk_tokens = 0;
    ACTLOSS_TRY(choose_chunk(args, options, gradients, &chunk_tokens));
    std::size_t needed = 0;
    ACTLOSS_TRY(detail::cuda_linear_cross_entropy_workspace_size(args, options, chunk_tokens,
                                                                 gradients, &needed));
    most = std::max(most, needed);
  }
  *bytes = most;
  return {};
}

Status linear_cross_entropy_shard_stats(const LinearCrossEntropyArgs& args,
                                        const CrossEntropyShard& shard,
                                        const LinearCrossEntropyOptions& options,
                                        CrossEntropyShardStats* stats, const Exec& exec) {
  Plan plan;
  Region stats_region;
  ACTLOSS_TRY(validate_shard_stats(args, shard, options, stats, exec, plan, stats_region));
  ACTLOSS_TRY(check_buffers(plan, stats_region, exec));
  if (host::runs_on_host(exec.device)) {
    return run_shard_stats_on_cpu(plan, shard, options, stats, exec);
  }
  return detail::cuda_linear_cross_entropy_shard_stats(plan.args, shard, options,
                                                       plan.chunk_tokens, stats, exec);
}

Status linear_cross_entropy_shard_finish(const LinearCrossEntropyArgs& args,
                                         const CrossEntropyShard& shard,
                                         const LinearCrossEntropyOptions& options,
                                         const CrossEntropyShardStats* gathered,
                                         std::int64_t shards, const Exec& exec) {
  Plan plan;
  Region gathered_region;
  ACTLOSS_TRY(
      validate_shard_finish(args, shard, options, gathered, shards, exec, plan, gathered_region));
  ACTLOSS_TRY(check_buffers(plan, gathered_region, exec));
  const Pass pass = shard_finish_pass(args);
  if (host::runs_on_host(exec.device)) {
    return run_shard_finish_on_cpu(pass, plan, shard, options, gathered, shards, exec);
  }
  return detail::cuda_linear_cross_entropy_shard_finish(pass, plan.args, shard, options,
                                                        plan.chunk_tokens, gathered, shards,
                                                        exec);
}

Status linear_cross_entropy_shard_workspace_size(const LinearCrossEntropyArgs& args,
                                                 const LinearCrossEntropyOptions& options,
                                                 const Exec& exec, std::size_t* bytes) {
  bool on_device = false;
  ACTLOSS_TRY(begin_workspace_query(args, options, exec, bytes, &on_device));
  if (!on_device) return {};
  std::int64_t stats_chunk = 0, finish_chunk = 0;
  ACTLOSS_TRY(choose_chunk(args, options, /*gradients=*/false, &stats_chunk));
  ACTLOSS_TRY(choose_chunk(args, options, /*gradients=*/true, &finish_chunk));
  return detail::cuda_linear_cross_entropy_shard_workspace_size(args, options, stats_chunk,
                                                                finish_chunk, bytes);
}

}  // namespace actloss
