// Fused linear cross-entropy cases: the forward and forward_backward of
// include/actloss/linear_cross_entropy.h in f32, bf16 and f16 (d_weight f32, or the inputs'
// 16-bit dtype), with every option of the cross-entropy (mean, sum and none, upstream gradients
// and grad_scale, ignored rows, int32 targets, label smoothing with class weights, z-loss and
// softcap), a bias, accumulated weight gradients, strided and misaligned operands, a caller's
// workspace, and chunks of one token, of seven (dividing no batch here) and the library's choice.
// Shapes stay small, since the simulator runs the GEMMs as plain loops, with class counts that
// are not multiples of 8. The expectation is the float64 composition: the linear layer in double,
// ref::cross_entropy, ref::linear_backward of its gradient.
//
// Error bounds (validation/tolerance.h), with u = 2^-24. A GEMM of inner dimension K, C added,
// is within gamma_{K+1} = (K + 1) v / (1 - (K + 1) v) of the sum of its absolute products and
// |C| (any order of summation), v = u for float operands and 2u for 16-bit ones, whose products
// are exact in float but whose tensor-core additions may truncate instead of rounding. Per token r:
//  * logits: delta_r = gamma_{D+1} max_c (sum_d |h_rd w_cd| + |b_c|).
//  * the cross-entropy kernels then run on float logits exactly as the GEMM left them: their own
//    bounds (validation/cross_entropy.cpp), taken at the exact logits (the difference between the
//    two is of second order).
//  * lse moves by at most delta_r; the row loss by its gradient's 1-norm times delta_r, at most
//    (A + A'') delta_r with A the targets' total weight and A'' = |A + 2 z lse| + 2 z delta_r
//    (the z-loss's slope anywhere within delta_r).
//  * each logit gradient g = m s (A' p - a), m the row's multiplier and s the softcap's slope,
//    moves by m (ds (A'' P + a) + 2 z delta P + |A'| p expm1(2 delta)): p within a factor
//    exp(+-2 delta) (P = p exp(2 delta)), A' within 2 z delta, and s within ds = 0.77 delta /
//    cap (|d sech^2(x / cap) / dx| <= 4 / (3 sqrt 3) / cap). The mean's multiplier is rounded
//    to float once more, and the gradient is stored in float (f32 inputs) or in the inputs'
//    dtype (the GEMMs take both operands in one dtype), a rounding of its unit roundoff and,
//    below its normal range, of its floor (f16's small gradients are subnormal): e_rc is all
//    of that, and G_rc = |g_rc| + e_rc bounds what the GEMMs read.
//  * d_hidden: sum_v e_rv |w_vd| + gamma_{V+1} sum_v G_rv |w_vd|.
//  * d_weight over n chunks of at most k tokens, each added to the running value (beta = 1):
//    every product meets at most k + n roundings, so sum_r e_rv |h_rd| + gamma_{k+n} (sum_r
//    G_rv |h_rd| + |held|); a 16-bit d_weight is rounded to its dtype after every chunk, n of
//    its roundings of at most |held| + sum_r G_rv |h_rd| (and the floor). Where the library
//    chooses the chunks, the bound takes the worst, one token a chunk.
//  * d_bias: sum_r e_rv, summed in double, rounded to float (a 16-bit d_bias then to its dtype).
//  * a reduced loss: the rows' bounds summed, each chunk's sum rounded to float once (at most u
//    of the rows' absolute losses in all), the chunks added in double; the mean's division too.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "validation/paths.h"
#include "validation/tensors.h"
#include "validation/tolerance.h"

namespace actloss::validation {
namespace {

constexpr double kDoubleU = 0x1p-53;

// tokens x hidden x classes, and the row strides' padding beyond hidden.
struct Shape {
  std::int64_t tokens, hidden, classes;
  std::int64_t hidden_pad = 0, weight_pad = 0, d_hidden_pad = 0, d_weight_pad = 0;
};

// The unit test's strided shape; dense with many classes; a weight stride of its own; odd pads
// everywhere; one token of three classes.
constexpr Shape kShapes[] = {{37, 24, 67, 3, 0, 1, 2},
                             {13, 8, 100},
                             {40, 32, 61, 0, 1, 5, 0},
                             {29, 17, 97, 2, 3, 1, 1},
                             {1, 5, 3}};
constexpr std::size_t kShapeCount = std::size(kShapes);

struct Spec {
  Device device = Device::cpu;
  bool gradients = true;  // forward_backward, else forward
  DType dtype = DType::f32;
  DType d_weight = DType::f32;
  Shape shape = kShapes[0];
  std::int64_t offset = 0;  // elements from a 256-byte boundary to every tensor's start
  std::int64_t chunk = 0;   // options.max_chunk_tokens; 0: the library's choice
  bool workspace = false;   // the caller's workspace, of the queried size
  Reduction reduction = Reduction::mean;
  bool bias = false, weights = false, upstream = false, ignored = false, i32 = false;
  bool accumulate = false, loss = true, lse = true;
  float smoothing = 0, z_loss = 0, softcap = 0, grad_scale = 1;
  std::string kind = "random";  // "random", "large", "all ignored"
};

std::string shape_text(const Spec& s) {
  const Shape& h = s.shape;
  std::string text =
      std::to_string(h.tokens) + "x" + std::to_string(h.hidden) + "x" + std::to_string(h.classes);
  if (h.hidden_pad || h.weight_pad || h.d_hidden_pad || h.d_weight_pad)
    text += " stride+" + std::to_string(h.hidden_pad) + "/" + std::to_string(h.weight_pad) + "/" +
            std::to_string(h.d_hidden_pad) + "/" + std::to_string(h.d_weight_pad);
  if (s.offset) text += " offset " + std::to_string(s.offset);
  return text;
}

std::string inputs_text(const Spec& s) {
  std::string text = s.kind + " " + actloss::to_string(s.reduction);
  if (s.i32) text += " i32";
  if (s.bias) text += " bias";
  if (s.weights) text += " weights";
  if (s.smoothing != 0) text += " smoothing";
  if (s.z_loss != 0) text += " z";
  if (s.softcap != 0) text += " softcap";
  if (s.ignored) text += " ignored";
  if (s.upstream) text += " upstream";
  if (s.grad_scale != 1) text += " scaled";
  if (s.accumulate) text += " accumulate";
  if (!s.loss) text += " no-loss";
  if (!s.lse) text += " no-lse";
  return text;
}

std::string dtypes_text(const Spec& s) {
  std::string text = actloss::to_string(s.dtype);
  if (s.d_weight != DType::f32) text += " d_weight " + std::string(actloss::to_string(s.d_weight));
  return text;
}

std::string path_text(const Spec& s) {
  if (s.device == Device::cpu) return "cpu";
  std::string text = s.chunk > 0 ? "chunk " + std::to_string(s.chunk) : "chunk auto";
  if (s.workspace) text += " workspace";
  return text;
}

// ---- inputs -----------------------------------------------------------------------------------

struct Inputs {
  // Dense, as the device holds them.
  std::vector<double> hidden, weight, bias, class_weight, upstream, held_d_weight, held_d_bias;
  std::vector<std::int64_t> targets;
};

Inputs make_inputs(const Spec& s) {
  const Shape& h = s.shape;
  const auto N = static_cast<std::size_t>(h.tokens), D = static_cast<std::size_t>(h.hidden),
             V = static_cast<std::size_t>(h.classes);
  const std::uint64_t seed = seed_of("linear_cross_entropy " + s.kind + " " + shape_text(s) +
                                     " " + dtypes_text(s) + " " + inputs_text(s));
  // "large": logits tens apart, so that most probabilities are near 0 or 1 and the logits'
  // error, which grows with the products' magnitudes, is larger.
  const bool large = s.kind == "large";
  Inputs in;
  in.hidden = quantize(uniform(N * D, large ? -4.0 : -1.0, large ? 4.0 : 1.0, seed), s.dtype);
  in.weight = quantize(uniform(V * D, large ? -1.0 : -0.6, large ? 1.0 : 0.6, seed + 1), s.dtype);
  if (s.bias)
    in.bias = quantize(uniform(V, large ? -8.0 : -2.0, large ? 8.0 : 2.0, seed + 2), s.dtype);
  if (s.weights) in.class_weight = quantize(uniform(V, 0.25, 2.0, seed + 3), DType::f32);
  if (s.upstream)
    in.upstream = quantize(uniform(s.reduction == Reduction::none ? N : 1, -2.0, 2.0, seed + 4),
                           DType::f32);
  const std::vector<double> t = uniform(N, 0.0, static_cast<double>(V), seed + 5);
  for (std::size_t r = 0; r < N; ++r) {
    std::int64_t y = std::min(static_cast<std::int64_t>(t[r]), h.classes - 1);
    if (s.kind == "all ignored" || (s.ignored && r % 5 == 2)) y = -100;
    in.targets.push_back(y);
  }
  if (s.accumulate) {
    in.held_d_weight = quantize(uniform(V * D, -1.0, 1.0, seed + 6), s.d_weight);
    if (s.bias) in.held_d_bias = quantize(uniform(V, -1.0, 1.0, seed + 7), s.d_weight);
  }
  return in;
}

ref::CrossEntropyProblem make_problem(const Spec& s, const Inputs& in) {
  const Shape& h = s.shape;
  ref::CrossEntropyProblem p;
  p.rows = h.tokens;
  p.classes = h.classes;
  p.logits = ref::linear_forward(h.tokens, h.hidden, h.classes, in.hidden, in.weight, in.bias);
  p.target_index = in.targets;
  p.class_weight = in.class_weight;
  p.label_smoothing = s.smoothing;
  p.z_loss = s.z_loss;
  p.softcap = s.softcap;
  p.reduction = to_ref(s.reduction);
  p.grad_scale = s.grad_scale;
  p.upstream = in.upstream;
  return p;
}

// ---- error bounds -----------------------------------------------------------------------------

// gamma_n of a GEMM whose operands are of `dtype` (see the top of the file).
double gamma(std::int64_t n, DType dtype) {
  const double v = (dtype == DType::f32 ? 1 : 2) * kU * static_cast<double>(n);
  return v / (1 - v);
}

struct Bounds {
  std::vector<double> row_loss, lse;          // per token
  double loss = 0;                            // the reduced loss
  std::vector<double> d_hidden, d_weight, d_bias;
};

Bounds error_bounds(const Spec& s, const Inputs& in, const ref::CrossEntropyProblem& p,
                    const ref::CrossEntropyResult& r) {
  const std::int64_t N = s.shape.tokens, D = s.shape.hidden, V = s.shape.classes;
  const auto at = [](std::int64_t i) { return static_cast<std::size_t>(i); };
  const CrossEntropyBounds ce = cross_entropy_error_bounds(p, r, false);
  const double z = s.z_loss, cap = s.softcap;
  const double u_grad = unit_roundoff(s.dtype), floor_grad = floor_of(s.dtype);
  const bool mean = s.reduction == Reduction::mean;

  Bounds b;
  b.row_loss.resize(at(N));
  b.lse.resize(at(N));
  // e: the error of each logit gradient as the GEMMs read it; big: |g| + e.
  std::vector<double> e(at(N * V)), big(at(N * V));
  double absolute_losses = 0, loss_errors = 0;
  for (std::int64_t row = 0; row < N; ++row) {
    const std::size_t i = at(row);
    double largest = 0;
    for (std::int64_t c = 0; c < V; ++c) {
      double sum = in.bias.empty() ? 0.0 : std::fabs(in.bias[at(c)]);
      for (std::int64_t d = 0; d < D; ++d)
        sum += std::fabs(in.hidden[at(row * D + d)] * in.weight[at(c * D + d)]);
      largest = std::max(largest, sum);
    }
    const double delta = gamma(D + 1, s.dtype) * largest;

    // The target coefficients a_c and their total A; zero for an ignored token.
    std::vector<double> a(at(V), 0.0);
    const std::int64_t y = in.targets[i];
    if (y >= 0 && y < V) {
      const auto w = [&](std::int64_t c) {
        return in.class_weight.empty() ? 1.0 : in.class_weight[at(c)];
      };
      a[at(y)] = (1 - s.smoothing) * w(y);
      if (s.smoothing != 0)
        for (std::int64_t c = 0; c < V; ++c) a[at(c)] += s.smoothing / double(V) * w(c);
    }
    double A = 0;
    for (double coefficient : a) A += coefficient;
    const double lse = r.lse[i];
    const double slope = std::fabs(A + 2 * z * lse), slope_far = slope + 2 * z * delta;

    b.lse[i] = ce.lse[i] + delta;
    b.row_loss[i] = ce.loss[i] + (A + slope_far) * delta;
    absolute_losses += std::fabs(r.row_loss[i]) + b.row_loss[i];
    loss_errors += b.row_loss[i];

    double multiplier = s.grad_scale;
    if (!in.upstream.empty()) multiplier *= in.upstream[s.reduction == Reduction::none ? i : 0];
    if (mean) multiplier = r.weight_sum != 0 ? multiplier / r.weight_sum : 0.0;
    multiplier = std::fabs(multiplier);
    const double ds = cap > 0 ? 0.77 * delta / cap : 0.0;
    for (std::int64_t c = 0; c < V; ++c) {
      const std::size_t k = at(row * V + c);
      const double x = p.logits[k];
      const double capped = cap > 0 ? cap * std::tanh(x / cap) : x;
      const double prob = std::exp(capped - lse);
      const double prob_far = prob * std::exp(2 * delta);
      const double shift = multiplier * (ds * (slope_far * prob_far + a[at(c)]) +
                                         2 * z * delta * prob_far +
                                         slope * prob * std::expm1(2 * delta));
      const double g = std::fabs(r.grad[k]);
      double err = shift + ce.grad[k];
      if (mean) err += kU * (g + err);  // the multiplier upstream / denominator, in float
      err += u_grad * (g + err) + floor_grad;  // stored for the GEMMs
      e[k] = err;
      big[k] = g + err;
    }
  }
  const double reduced = loss_errors + (kU + double(N) * kDoubleU) * absolute_losses;
  b.loss = mean ? (r.weight_sum != 0 ? reduced / std::fabs(r.weight_sum) : 0.0) : reduced;

  // d_hidden = g w: one GEMM of inner dimension V per chunk of tokens.
  b.d_hidden.resize(at(N * D));
  const double gamma_hidden = gamma(V + 1, s.dtype);
  for (std::int64_t row = 0; row < N; ++row)
    for (std::int64_t d = 0; d < D; ++d) {
      double errors = 0, magnitudes = 0;
      for (std::int64_t c = 0; c < V; ++c) {
        const double w = std::fabs(in.weight[at(c * D + d)]);
        errors += e[at(row * V + c)] * w;
        magnitudes += big[at(row * V + c)] * w;
      }
      b.d_hidden[at(row * D + d)] = errors + gamma_hidden * magnitudes;
    }

  // d_weight = g^T h, chunk by chunk into the running value; d_bias = the column sums of g.
  const std::int64_t chunk = s.chunk > 0 ? std::min(s.chunk, N) : 1;
  const std::int64_t chunks = s.chunk > 0 ? (N + chunk - 1) / chunk : N;
  const std::int64_t longest = s.chunk > 0 ? chunk : N;
  const double gamma_weight = gamma(longest + chunks, s.dtype);
  const bool narrow = s.d_weight != DType::f32;
  const double u_weight = unit_roundoff(s.d_weight);
  b.d_weight.resize(at(V * D));
  b.d_bias.resize(at(V));
  for (std::int64_t c = 0; c < V; ++c) {
    for (std::int64_t d = 0; d < D; ++d) {
      double errors = 0, magnitudes = 0;
      for (std::int64_t row = 0; row < N; ++row) {
        const double h = std::fabs(in.hidden[at(row * D + d)]);
        errors += e[at(row * V + c)] * h;
        magnitudes += big[at(row * V + c)] * h;
      }
      const double held = s.accumulate ? std::fabs(in.held_d_weight[at(c * D + d)]) : 0.0;
      double err = errors + gamma_weight * (magnitudes + held);
      if (narrow)
        err += double(chunks) * (u_weight * (magnitudes + held + err) + floor_of(s.d_weight));
      b.d_weight[at(c * D + d)] = err;
    }
    double errors = 0, magnitudes = 0;
    for (std::int64_t row = 0; row < N; ++row) {
      errors += e[at(row * V + c)];
      magnitudes += big[at(row * V + c)];
    }
    const double held =
        s.accumulate && !in.held_d_bias.empty() ? std::fabs(in.held_d_bias[at(c)]) : 0.0;
    double err = errors + double(N + chunks + 1) * kDoubleU * (magnitudes + held);
    // Through float on the way to 16 bits.
    if (narrow) err += kU * (magnitudes + held + err) + floor_of(DType::f32);
    b.d_bias[at(c)] = err;
  }
  return b;
}

// ---- running a case ---------------------------------------------------------------------------

Outcome run(const Spec& s) {
  const Device device = s.device;
  const Shape& h = s.shape;
  const std::int64_t N = h.tokens, D = h.hidden, V = h.classes;
  const bool per_token = s.reduction == Reduction::none;
  const Inputs in = make_inputs(s);

  const Tensor hidden =
      Tensor::upload(device, in.hidden, N, D, s.dtype, D + h.hidden_pad, s.offset);
  const Tensor weight =
      Tensor::upload(device, in.weight, V, D, s.dtype, D + h.weight_pad, s.offset);
  const Tensor bias =
      s.bias ? Tensor::upload(device, in.bias, 1, V, s.dtype, 0, s.offset) : Tensor();
  const bench::Buffer targets =
      s.i32 ? upload_plain(device, std::vector<std::int32_t>(in.targets.begin(), in.targets.end()))
            : upload_plain(device, in.targets);
  const Tensor class_weight =
      s.weights ? Tensor::upload(device, in.class_weight, 1, V, DType::f32, 0, s.offset) : Tensor();
  const Tensor upstream =
      s.upstream ? Tensor::upload(device, in.upstream, 1, std::int64_t(in.upstream.size()),
                                  DType::f32, 0, s.offset)
                 : Tensor();
  const Tensor loss = Tensor::poisoned(device, 1, per_token ? N : 1, DType::f32, 0, s.offset);
  const Tensor lse = Tensor::poisoned(device, 1, N, DType::f32, 0, s.offset);
  // The forward is handed the gradients too: it must leave them alone.
  const Tensor d_hidden =
      Tensor::poisoned(device, N, D, s.dtype, D + h.d_hidden_pad, s.offset);
  const Tensor d_weight =
      s.accumulate ? Tensor::upload(device, in.held_d_weight, V, D, s.d_weight, D + h.d_weight_pad,
                                    s.offset)
                   : Tensor::poisoned(device, V, D, s.d_weight, D + h.d_weight_pad, s.offset);
  const Tensor d_bias =
      !s.bias ? Tensor()
      : s.accumulate ? Tensor::upload(device, in.held_d_bias, 1, V, s.d_weight, 0, s.offset)
                     : Tensor::poisoned(device, 1, V, s.d_weight, 0, s.offset);

  LinearCrossEntropyArgs args;
  args.tokens = N;
  args.hidden_size = D;
  args.classes = V;
  args.dtype = s.dtype;
  args.hidden = hidden.data();
  args.hidden_row_stride = hidden.stride();
  args.weight = weight.data();
  args.weight_row_stride = weight.stride();
  args.bias = bias.data();
  args.targets = targets.data();
  args.target_kind = s.i32 ? TargetKind::class_index_i32 : TargetKind::class_index_i64;
  args.class_weight = class_weight.as<const float>();
  if (s.loss) args.loss = loss.as<float>();
  if (s.lse) args.lse = lse.as<float>();
  args.d_hidden = d_hidden.data();
  args.d_hidden_row_stride = d_hidden.stride();
  args.d_weight = d_weight.data();
  args.d_weight_row_stride = d_weight.stride();
  args.d_bias = d_bias.data();
  args.d_weight_dtype = s.d_weight;
  args.accumulate = s.accumulate;
  args.grad_scale = s.grad_scale;
  args.upstream_grad = upstream.as<const float>();
  LinearCrossEntropyOptions options;
  options.loss.reduction = s.reduction;
  options.loss.label_smoothing = s.smoothing;
  options.loss.z_loss = s.z_loss;
  options.loss.softcap = s.softcap;
  options.max_chunk_tokens = s.chunk;

  Outcome outcome;
  {
    Exec exec = exec_for(device);
    bench::Buffer workspace;
    if (s.workspace) {
      std::size_t bytes = 0;
      const Status sized = linear_cross_entropy_workspace_size(args, options, exec, &bytes);
      if (!sized.ok()) {
        outcome.error = "linear_cross_entropy_workspace_size: " + sized.message();
        return outcome;
      }
      workspace = bench::Buffer(device, bytes);
      exec.workspace = Workspace{workspace.data(), bytes};
    }
    const Status status = s.gradients
                              ? linear_cross_entropy_forward_backward(args, options, exec)
                              : linear_cross_entropy_forward(args, options, exec);
    outcome.error = finish(exec, status);
  }
  if (!outcome.error.empty()) return outcome;

  const ref::CrossEntropyProblem problem = make_problem(s, in);
  const ref::CrossEntropyResult expected = ref::cross_entropy(problem);
  const Bounds bounds = error_bounds(s, in, problem, expected);
  const auto untouched = [&](const char* name, const Tensor& t) {
    outcome.checks.push_back(verdict(name, t.untouched(), "written although not asked for"));
  };
  const auto padding = [&](const char* name, const Tensor& t) {
    outcome.checks.push_back(verdict(name, t.padding_intact(), "bytes between rows were written"));
  };

  if (s.loss) {
    if (per_token)
      outcome.checks.push_back(
          compare("loss", loss.download(), expected.row_loss, DType::f32, bounds.row_loss));
    else
      outcome.checks.push_back(
          compare("loss", loss.download(), {expected.loss}, DType::f32, {bounds.loss}));
    padding("loss padding", loss);
  } else {
    untouched("loss", loss);
  }
  if (s.lse) {
    outcome.checks.push_back(compare("lse", lse.download(), expected.lse, DType::f32, bounds.lse));
    padding("lse padding", lse);
  } else {
    untouched("lse", lse);
  }

  if (!s.gradients) {
    untouched("d_hidden", d_hidden);
    if (s.accumulate) {
      outcome.checks.push_back(
          compare_exact("d_weight (held)", d_weight.download(), in.held_d_weight, s.d_weight));
      padding("d_weight padding", d_weight);
      if (s.bias)
        outcome.checks.push_back(
            compare_exact("d_bias (held)", d_bias.download(), in.held_d_bias, s.d_weight));
    } else {
      untouched("d_weight", d_weight);
      if (s.bias) untouched("d_bias", d_bias);
    }
  } else {
    const ref::LinearGradients grads =
        ref::linear_backward(N, D, V, in.hidden, in.weight, expected.grad);
    outcome.checks.push_back(
        compare("d_hidden", d_hidden.download(), grads.d_input, s.dtype, bounds.d_hidden));
    padding("d_hidden padding", d_hidden);
    std::vector<double> want_weight = grads.d_weight;
    if (s.accumulate)
      for (std::size_t k = 0; k < want_weight.size(); ++k) want_weight[k] += in.held_d_weight[k];
    outcome.checks.push_back(
        compare("d_weight", d_weight.download(), want_weight, s.d_weight, bounds.d_weight));
    padding("d_weight padding", d_weight);
    if (s.bias) {
      std::vector<double> want_bias = grads.d_bias;
      if (s.accumulate)
        for (std::size_t k = 0; k < want_bias.size(); ++k) want_bias[k] += in.held_d_bias[k];
      outcome.checks.push_back(
          compare("d_bias", d_bias.download(), want_bias, s.d_weight, bounds.d_bias));
      padding("d_bias padding", d_bias);
    }
  }
  outcome.checks.push_back(
      compare_exact("hidden (input)", hidden.download(), in.hidden, s.dtype));
  padding("hidden padding (input)", hidden);
  outcome.checks.push_back(
      compare_exact("weight (input)", weight.download(), in.weight, s.dtype));
  padding("weight padding (input)", weight);
  return outcome;
}

// ---- the cases --------------------------------------------------------------------------------

class Builder {
 public:
  Builder(Device device, std::vector<Case>& cases) : device_(device), cases_(cases) {}
  void add(Spec s) {
    s.device = device_;
    if (device_ == Device::cpu) s.workspace = false;  // the CPU path takes none
    Case c;
    c.device = device_;
    c.op = "linear_cross_entropy";
    c.pass = s.gradients ? "forward_backward" : "forward";
    c.dtypes = dtypes_text(s);
    c.shape = shape_text(s);
    c.inputs = inputs_text(s);
    c.path = path_text(s);
    c.run = [s] { return run(s); };
    // The CPU path does not chunk: cases that differ only in their chunks are one case there.
    if (!names_.insert(c.name()).second) return;
    cases_.push_back(std::move(c));
  }

 private:
  Device device_;
  std::vector<Case>& cases_;
  std::set<std::string> names_;
};

// The option sets every dtype and chunk size meets.
struct OptionSet {
  Reduction reduction;
  bool bias, weights, upstream, ignored, i32, accumulate;
  float smoothing, z_loss, softcap, grad_scale;
  const char* kind;
};
constexpr OptionSet kOptionSets[] = {
    {Reduction::mean, false, false, false, false, false, false, 0, 0, 0, 1, "random"},
    {Reduction::sum, true, false, true, false, false, false, 0, 0, 0, 0.5f, "random"},
    {Reduction::none, false, false, true, true, true, false, 0, 0, 0, 1, "random"},
    {Reduction::mean, false, true, false, true, false, false, 0.1f, 0, 0, 1, "random"},
    {Reduction::mean, true, false, true, false, false, true, 0, 1e-3f, 3.0f, 1, "random"},
    {Reduction::mean, true, false, false, false, false, true, 0, 0, 0, 1, "all ignored"},
    {Reduction::sum, true, true, true, true, true, true, 0.05f, 1e-3f, 5.0f, -0.25f, "random"},
};

Spec spec(bool gradients, DType dtype, const OptionSet& o, const Shape& shape,
          std::int64_t chunk) {
  Spec s;
  s.gradients = gradients;
  s.dtype = dtype;
  s.shape = shape;
  s.chunk = chunk;
  s.reduction = o.reduction;
  s.bias = o.bias;
  s.weights = o.weights;
  s.upstream = o.upstream;
  s.ignored = o.ignored;
  s.i32 = o.i32;
  s.accumulate = o.accumulate;
  s.smoothing = o.smoothing;
  s.z_loss = o.z_loss;
  s.softcap = o.softcap;
  s.grad_scale = o.grad_scale;
  s.kind = o.kind;
  return s;
}

// Both passes, every reduction, a chunk that divides no batch and one token a chunk, the
// library's own chunk, the 16-bit weight gradient and a caller's workspace.
void quick(Builder& b) {
  b.add(spec(true, DType::f32, kOptionSets[0], kShapes[0], 0));
  b.add(spec(true, DType::bf16, kOptionSets[1], kShapes[0], 7));
  b.add(spec(true, DType::f32, kOptionSets[2], kShapes[2], 1));
  b.add(spec(true, DType::bf16, kOptionSets[3], kShapes[3], 7));
  Spec large = spec(true, DType::f32, kOptionSets[4], kShapes[1], 7);
  large.kind = "large";
  b.add(large);
  Spec narrow = spec(true, DType::bf16, kOptionSets[6], kShapes[2], 7);
  narrow.d_weight = DType::bf16;
  b.add(narrow);
  b.add(spec(true, DType::f32, kOptionSets[5], kShapes[1], 7));
  Spec workspace = spec(true, DType::f32, kOptionSets[3], kShapes[0], 7);
  workspace.workspace = true;
  b.add(workspace);
  b.add(spec(false, DType::bf16, kOptionSets[1], kShapes[0], 7));
  b.add(spec(false, DType::f32, kOptionSets[4], kShapes[3], 0));
}

void full(Builder& b) {
  quick(b);
  constexpr DType kAll[] = {DType::f32, DType::bf16, DType::f16};
  constexpr std::int64_t kChunks[] = {0, 1, 7};
  std::size_t i = 0;
  // Every dtype, option set and chunk size, the shapes cycling.
  for (DType dtype : kAll)
    for (const OptionSet& o : kOptionSets)
      for (std::int64_t chunk : kChunks)
        b.add(spec(true, dtype, o, kShapes[i++ % kShapeCount], chunk));
  // The forward: every dtype and reduction, with and without the library's chunk.
  for (DType dtype : kAll)
    for (std::size_t k : {std::size_t{1}, std::size_t{2}, std::size_t{4}})
      for (std::int64_t chunk : {0, 7})
        b.add(spec(false, dtype, kOptionSets[k], kShapes[i++ % kShapeCount], chunk));
  // A 16-bit weight gradient, rounded after every chunk, overwritten and accumulated into.
  for (DType dtype : {DType::bf16, DType::f16})
    for (std::int64_t chunk : {1, 7})
      for (bool accumulate : {false, true}) {
        Spec s = spec(true, dtype, kOptionSets[1], kShapes[i++ % kShapeCount], chunk);
        s.d_weight = dtype;
        s.accumulate = accumulate;
        b.add(s);
      }
  // Peaked probabilities from large logits, in every dtype and both passes.
  for (DType dtype : kAll)
    for (bool gradients : {true, false}) {
      Spec s = spec(gradients, dtype, kOptionSets[gradients ? 6 : 3], kShapes[i++ % 4], 7);
      s.kind = "large";
      b.add(s);
    }
  // Every base one element off a 16-byte boundary; a caller's workspace; the optional outputs
  // left out.
  for (DType dtype : kAll) {
    Spec s = spec(true, dtype, kOptionSets[4], kShapes[3], 7);
    s.offset = 1;
    b.add(s);
  }
  for (std::int64_t chunk : {0, 1}) {
    Spec s = spec(true, DType::bf16, kOptionSets[6], kShapes[0], chunk);
    s.workspace = true;
    b.add(s);
  }
  Spec no_loss = spec(true, DType::bf16, kOptionSets[3], kShapes[2], 7);
  no_loss.loss = false;
  b.add(no_loss);
  Spec no_lse = spec(true, DType::f32, kOptionSets[2], kShapes[3], 0);
  no_lse.lse = false;
  b.add(no_lse);
}

}  // namespace

void add_linear_cross_entropy_cases(Device device, Depth depth, std::vector<Case>& cases) {
  Builder builder(device, cases);
  switch (depth) {
    case Depth::smoke: {
      // Both passes, with the mean's prologue, the bias's kernels, the 16-bit gradient buffer and
      // several chunks in the one and the per-token loss in the other.
      Spec s = spec(true, DType::bf16, kOptionSets[3], kShapes[0], 7);
      s.bias = true;
      s.accumulate = true;
      builder.add(s);
      builder.add(spec(false, DType::f32, kOptionSets[2], kShapes[3], 0));
      return;
    }
    case Depth::quick: quick(builder); return;
    case Depth::full: full(builder); return;
  }
}

}  // namespace actloss::validation
