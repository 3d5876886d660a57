// BCE-with-logits cases: every pass and reduction, every dtype combination, shapes across the
// 8-element pack with row strides for every tensor, misaligned bases (the scalar path), dense
// rows processed as one long row and strided rows, a per-column pos_weight and the [N x 1]
// broadcast, weights, upstream gradients per element and scalar, the grid-stride loops, no
// elements, and adversarial inputs: every float binade as logits with targets over every binade
// of (0, 1] ("sweep"), |x| near and beyond float's exp range, infinities and NaN, and a large
// first term among many tiny ones (the accumulator).
//
// Error bounds (validation/tolerance.h), per element with x, y, w (weight), pw (pos_weight) and
// the upstream gradient exact as the device holds them; u = 2^-24, a float rounding is u
// relative or 2^-150 absolute below float's normal range; expf 2 ulp (4u; 2^-148 absolute at
// the subnormals), log1pf 1 ulp (2u), __fdividef 2 ulp (4u).
//  * softplus(+-x) = max(+-x, 0) + log1pf(e), e = expf(-|x|): e's 4u moves log1p(e) by at most
//    4u relatively (e / (1 + e) <= log1p(e)), log1pf adds 2u, the sum u of itself: 7u, and
//    2^-147 absolute (e's 2^-148 and log1pf's ulp at the subnormals).
//  * loss w (pw y softplus(-x) + (1 - y) softplus(x)): pw y and 1 - y one rounding each (pw y
//    2^-150 absolute where it is subnormal, times softplus(-x)), the two products one each, the
//    sum and the weight one each: 11u of the loss, every term being non-negative, plus the
//    absolute terms. (A loss beyond float's range is formed scaled by 2^-64, which is exact.)
//  * sum / mean: every element's bound, plus the float sum of each 8-element pack (7 roundings
//    of the pack's non-negative terms); packs go into double (n 2^-53 of the sum, at any order),
//    then the mean's division in double; the float loss is the output's rounding.
//  * gradient w ((1 - y) s(x) - pw y s(-x)) coefficient: the sigmoid pair from the same e,
//    1 / (1 + e) 7u (1 + e carries 3u), e / (1 + e) 12u and 2^-147 absolute; each side a
//    coefficient (1u) times a sigmoid, times one rounding: the two sides cancel near the optimum,
//    so their error is relative to their sizes, not the result's; the difference, w times it,
//    grad_scale / denominator rounded to float, its product with the upstream gradient and the
//    final product: 5 roundings of the gradient.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "validation/paths.h"
#include "validation/tensors.h"
#include "validation/tolerance.h"

namespace actloss::validation {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kSub = 0x1p-150;       // one float rounding below the normal range
constexpr double kSmallAbs = 0x1p-147;  // softplus's and sigmoid's small side, absolute

struct Dtypes {
  DType logits, targets, weight, grad;
};
constexpr Dtypes kDtypeSets[] = {{DType::f32, DType::f32, DType::f32, DType::f32},
                                 {DType::f16, DType::f16, DType::f16, DType::f16},
                                 {DType::bf16, DType::bf16, DType::bf16, DType::bf16},
                                 {DType::bf16, DType::f16, DType::f32, DType::f16}};

struct Spec {
  Device device = Device::cpu;
  Pass pass = Pass::forward_backward;
  Reduction reduction = Reduction::mean;
  Dtypes dtypes = kDtypeSets[0];
  std::int64_t rows = 1, cols = 1;
  // Row stride = cols + pad, per tensor (the loss and the upstream gradient are dense).
  std::int64_t logits_pad = 0, target_pad = 0, weight_pad = 0, grad_pad = 0;
  PointPath path = PointPath::vector;
  bool misaligned = false;  // a base one element off on the grid-stride paths as well
  bool weight = false, pos_weight = false, upstream = false;
  bool loss = true;  // forward_backward: the loss is optional there
  float grad_scale = 0.75f;
  std::string kind = "random";
};

std::int64_t offset_for(const Spec& s) { return s.misaligned ? 1 : offset_of(s.path); }

std::string shape_text(const Spec& s) {
  std::string text = std::to_string(s.rows) + "x" + std::to_string(s.cols);
  if (s.logits_pad || s.target_pad || s.weight_pad || s.grad_pad)
    text += " stride+" + std::to_string(s.logits_pad) + "/" + std::to_string(s.target_pad) + "/" +
            std::to_string(s.weight_pad) + "/" + std::to_string(s.grad_pad);
  if (s.misaligned && s.path != PointPath::scalar) text += " offset 1";
  return text;
}

std::string dtypes_text(const Dtypes& d) {
  if (d.logits == d.targets && d.targets == d.weight && d.weight == d.grad)
    return to_string(d.logits);
  return std::string(to_string(d.logits)) + "/" + to_string(d.targets) + "/" + to_string(d.weight) +
         "->" + to_string(d.grad);
}

std::string inputs_text(const Spec& s) {
  std::string text = s.kind + " " + to_string(s.reduction);
  if (s.weight) text += " weight";
  if (s.pos_weight) text += s.cols == 1 ? " pos_weight(broadcast)" : " pos_weight";
  if (s.upstream) text += " upstream";
  if (s.grad_scale != 0.75f) text += s.grad_scale < 0 ? " negative scale" : " scaled";
  if (s.pass == Pass::forward_backward && !s.loss) text += " no-loss";
  return text;
}

// ---- inputs -----------------------------------------------------------------------------------

struct Inputs {
  // As the device holds them: logits, targets, weight [rows x cols]; pos_weight [cols];
  // upstream [rows x cols] (none) or [1].
  std::vector<double> logits, targets, weight, pos_weight, upstream;
};

// Every binade of (0, 1] (2^e, 1.5 2^e and the binade's largest float, down to 2^-149), 0 and 1,
// `count` of them in an order fixed by `seed`, every one when count allows.
std::vector<double> target_sweep(std::size_t count, std::uint64_t seed) {
  std::vector<double> values = {0.0, 1.0};
  for (int e = -149; e <= -1; ++e) {
    const double top = e < -126 ? std::ldexp(2.0, e) - 0x1p-149 : std::ldexp(2.0 - 0x1p-23, e);
    for (double v : {std::ldexp(1.0, e), std::ldexp(1.5, e), top}) values.push_back(v);
  }
  bench::Random random(seed);
  std::vector<double> out;
  out.reserve(count);
  while (out.size() < count) {
    for (std::size_t i = values.size(); i > 1; --i)
      std::swap(values[i - 1],
                values[static_cast<std::size_t>(random.below(static_cast<std::int64_t>(i)))]);
    for (double v : values) {
      if (out.size() == count) break;
      out.push_back(v);
    }
  }
  return out;
}

Inputs make_inputs(const Spec& s) {
  const auto n = static_cast<std::size_t>(s.rows * s.cols);
  const auto cols = static_cast<std::size_t>(s.cols);
  const std::uint64_t seed = seed_of("bce " + s.kind + shape_text(s) + dtypes_text(s.dtypes));
  Inputs in;
  // Random: logits in [-8, 8] with +-120, +-88, +-40, +-25, +-20, signed zeros, subnormals and
  // f16's large values planted; targets in [0, 1] with many exact 0 and 1; weights in [0, 2]
  // with zeros; pos_weight in [0.5, 4] with a 0 and a 1.
  static const double kSpecials[] = {120.0, -120.0, 88.0, -88.0, 40.0,  -40.0, 25.0, -25.0,
                                     20.0,  -20.0,  0.0,  -0.0,  1e-40, 3e-6,  6e4,  -6e4};
  in.logits = uniform(n, -8.0, 8.0, seed);
  std::size_t k = 0;
  for (std::size_t i = 1; i < n; i += 5, ++k) in.logits[i] = kSpecials[k % std::size(kSpecials)];
  in.targets = uniform(n, 0.0, 1.0, seed + 1);
  for (std::size_t i = 0; i < n; i += 3) in.targets[i] = static_cast<double>((i / 3) % 2);
  in.weight = uniform(n, 0.0, 2.0, seed + 2);
  for (std::size_t i = 4; i < n; i += 9) in.weight[i] = 0.0;
  in.pos_weight = uniform(cols, 0.5, 4.0, seed + 3);
  if (cols > 3) in.pos_weight[3] = 0.0;
  if (cols > 5) in.pos_weight[5] = 1.0;
  in.upstream = uniform(s.reduction == Reduction::none ? n : 1, -2.0, 2.0, seed + 4);

  if (s.kind == "sweep") {
    // Every float binade as a logit (quantised to the dtype), every binade of (0, 1] as a
    // target. Reduced, the logits that are not finite in the dtype become its largest values
    // (below), so that the sum is a number (near float's range: its packs go through the double
    // path) and not inf/NaN.
    in.logits = sweep_values(n, seed + 5);
    in.targets = target_sweep(n, seed + 6);
  } else if (s.kind == "x=+-120") {
    // Far outside where exp(-|x|) is a normal float, hard and soft targets.
    constexpr double kMagnitudes[] = {120.0, 20.0, 88.0, 104.0};
    for (std::size_t i = 0; i < n; ++i) {
      in.logits[i] = (i % 2 == 0 ? 1.0 : -1.0) * kMagnitudes[(i / 2) % 4];
      if (i % 3 != 2) in.targets[i] = static_cast<double>(i % 3);
    }
  } else if (s.kind == "adversarial" || s.kind == "adversarial finite") {
    // [2 x 8]: x = -120 with pos_weight (where PyTorch's formula has overflowed), |x| >= 20, the
    // infinities under the 0 * inf = 0 convention for a zero coefficient, a subnormal, and NaN
    // (finite: 2 instead, so that sums are finite or +inf).
    static const double kX[] = {-120, -120, 120,   120,   -20,   20,  -100, 100,
                                kInf, kInf, -kInf, -kInf, 1e-40, 0.0, kNaN, 3.0};
    static const double kY[] = {1, 0, 0, 1, 0, 1, 0.5, 0.5, 1, 0, 0, 1, 1, 0.25, 1, 0};
    for (std::size_t i = 0; i < n; ++i) {
      in.logits[i] = kX[i % 16];
      in.targets[i] = kY[i % 16];
    }
    if (s.kind == "adversarial finite")
      for (double& x : in.logits)
        if (std::isnan(x)) x = 2.0;
    static const double kPosWeight[] = {3.0, 0.5, 5.0, 2.0, 1.0, 4.0, 7.0, 1.5};
    for (std::size_t c = 0; c < cols; ++c) in.pos_weight[c] = kPosWeight[c % 8];
  } else if (s.kind == "pw y underflow") {
    // A subnormal target whose pw y underflows to 0 in float (0.25 2^-149), against an infinite
    // and a huge logit: the loss is +inf and 1.1e-7. A kernel that applies the 0 * inf = 0
    // convention to its rounded pw y gives 0 for both (the second is within the bound).
    for (std::size_t i = 0; i < n; ++i) {
      in.logits[i] = i % 2 == 0 ? -kInf : -3e38;
      in.targets[i] = 0x1p-149;
    }
    for (double& pw : in.pos_weight) pw = 0.25;
  } else if (s.kind == "large first") {
    // One term of 1024.5 (x = -1024.5, y = 1), then 2^18 of 7e-6 (x = log 7e-6, y = 0): a pack
    // of them (5.6e-5) is below half an ulp of 1024.5 in float (6.1e-5).
    for (std::size_t i = 0; i < n; ++i) {
      in.logits[i] = i == 0 ? -1024.5 : std::log(7e-6);
      in.targets[i] = i == 0 ? 1.0 : 0.0;
    }
  }
  in.logits = quantize(in.logits, s.dtypes.logits);
  if (s.kind == "sweep" && s.reduction != Reduction::none)
    for (double& x : in.logits)
      if (!std::isfinite(x))
        x = std::isnan(x) ? 0.0 : std::copysign(largest_finite(s.dtypes.logits), x);
  in.targets = quantize(in.targets, s.dtypes.targets);
  in.weight = quantize(in.weight, s.dtypes.weight);
  in.pos_weight = quantize(in.pos_weight, DType::f32);
  in.upstream = quantize(in.upstream, DType::f32);
  return in;
}

// ---- error bounds -----------------------------------------------------------------------------

struct Bounds {
  std::vector<double> loss, grad;  // per element
  double reduced = 0;
};

// A coefficient times a term that may be infinite: 0 where the coefficient is 0 (the reference's
// convention).
double times(double coefficient, double term) {
  return coefficient == 0 ? 0.0 : coefficient * term;
}
double finite_or_zero(double err) { return std::isfinite(err) ? err : 0.0; }

Bounds error_bounds(const Spec& s, const Inputs& in, const ref::BceResult& r) {
  const double u = kU;
  const std::size_t n = in.logits.size();
  const auto cols = static_cast<std::size_t>(s.cols);
  const bool none = s.reduction == Reduction::none;
  double scale = s.grad_scale;
  if (s.reduction == Reduction::mean) scale = n == 0 ? 0.0 : scale / static_cast<double>(n);
  Bounds b;
  b.loss.resize(n);
  b.grad.resize(n);
  double sum_error = 0, sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double x = in.logits[i], y = in.targets[i];
    const double w = s.weight ? in.weight[i] : 1.0;
    const double pw = s.pos_weight ? in.pos_weight[i % cols] : 1.0;
    const double up = s.upstream ? in.upstream[none ? i : 0] : 1.0;
    const double pos = pw * y, neg = 1.0 - y;  // exact in double
    const double err_pos = u * pos + (pos > 0 && pos < 0x1p-126 ? kSub : 0.0);
    const double err_neg = u * neg;

    // The loss.
    const double sp_neg = ref::softplus(-x), sp_x = ref::softplus(x);
    const double term_a = times(pos, sp_neg), term_b = times(neg, sp_x);
    const double err_a =
        pos == 0 ? 0.0 : err_pos * sp_neg + pos * (7 * u * sp_neg + kSmallAbs) + u * term_a + kSub;
    const double err_b =
        neg == 0 ? 0.0 : err_neg * sp_x + neg * (7 * u * sp_x + kSmallAbs) + u * term_b + kSub;
    const double inner = term_a + term_b;
    const double loss = r.elem_loss[i];
    b.loss[i] = std::isfinite(loss)
                    ? finite_or_zero(w * (err_a + err_b + u * inner) + u * loss + kSub)
                    : 0.0;
    if (std::isfinite(loss)) {
      sum_error += b.loss[i] + 7 * u * loss;
      sum += loss;
    }

    // The gradient: the pair's sides as in cuda/elementwise.cuh (1 / (1 + e) for x >= 0).
    const double sp = ref::sigmoid(x), sn = ref::sigmoid(-x);
    const bool positive = x >= 0;
    const double err_sp = positive ? 7 * u * sp : 12 * u * sp + kSmallAbs;
    const double err_sn = positive ? 12 * u * sn + kSmallAbs : 7 * u * sn;
    const double side_a = neg * sp, side_b = pos * sn;
    const double err_side_a = err_neg * sp + neg * err_sp + u * side_a + kSub;
    const double err_side_b = err_pos * sn + pos * err_sn + u * side_b + kSub;
    const double m = std::fabs(w * scale * up);
    const double g = r.grad[i];
    b.grad[i] =
        finite_or_zero(m * (err_side_a + err_side_b) + 5 * u * std::fabs(g) +
                       kSub * (std::fabs(scale * up) + std::fabs(w * (side_a - side_b)) + 1));
  }
  sum_error += static_cast<double>(n) * 0x1p-53 * sum;
  b.reduced =
      s.reduction == Reduction::mean && n > 0 ? sum_error / static_cast<double>(n) : sum_error;
  return b;
}

// ---- running a case ---------------------------------------------------------------------------

Status call(Pass pass, const BceArgs& args, Reduction reduction, const Exec& exec) {
  const BceOptions options{reduction};
  switch (pass) {
    case Pass::forward: return bce_with_logits_forward(args, options, exec);
    case Pass::backward: return bce_with_logits_backward(args, options, exec);
    case Pass::forward_backward: return bce_with_logits_forward_backward(args, options, exec);
  }
  return Status(StatusCode::internal, "", "bad pass");
}

void check_unchanged(Outcome& outcome, const std::string& name, const Tensor& t,
                     const std::vector<double>& values, DType dtype) {
  Check check = compare_exact(name + " (input)", t.download(), values, dtype);
  if (check.pass && !t.padding_intact())
    check = verdict(name + " (input)", false, "bytes outside the elements were written");
  outcome.checks.push_back(check);
}

Outcome run(const Spec& s) {
  const Device device = s.device;
  const std::int64_t rows = s.rows, cols = s.cols, n = rows * cols;
  const bool none = s.reduction == Reduction::none;
  const bool wants_loss = s.pass == Pass::forward || (s.pass == Pass::forward_backward && s.loss);
  const bool wants_grad = s.pass != Pass::forward;
  const std::int64_t offset = offset_for(s);
  const Dtypes& d = s.dtypes;
  const Inputs in = make_inputs(s);

  const Tensor logits =
      Tensor::upload(device, in.logits, rows, cols, d.logits, cols + s.logits_pad, offset);
  const Tensor targets =
      Tensor::upload(device, in.targets, rows, cols, d.targets, cols + s.target_pad, offset);
  const Tensor weight =
      Tensor::upload(device, in.weight, rows, cols, d.weight, cols + s.weight_pad, offset);
  const Tensor pos_weight = Tensor::upload(device, in.pos_weight, 1, cols, DType::f32, 0, offset);
  const Tensor upstream = Tensor::upload(
      device, in.upstream, 1, static_cast<std::int64_t>(in.upstream.size()), DType::f32, 0, offset);
  const Tensor loss = Tensor::poisoned(device, 1, none ? n : 1, DType::f32, 0, offset);
  const Tensor grad = Tensor::poisoned(device, rows, cols, d.grad, cols + s.grad_pad, offset);

  BceArgs args;
  args.rows = rows;
  args.cols = cols;
  args.logits = logits.data();
  args.logits_dtype = d.logits;
  args.logits_row_stride = cols + s.logits_pad;
  args.targets = targets.data();
  args.target_dtype = d.targets;
  args.target_row_stride = cols + s.target_pad;
  if (s.weight) {
    args.weight = weight.data();
    args.weight_dtype = d.weight;
    args.weight_row_stride = cols + s.weight_pad;
  }
  if (s.pos_weight) args.pos_weight = pos_weight.as<float>();
  if (wants_loss) args.loss = loss.as<float>();
  if (wants_grad) {
    args.grad = grad.data();
    args.grad_dtype = d.grad;
    args.grad_row_stride = cols + s.grad_pad;
    args.grad_scale = s.grad_scale;
    if (s.upstream) args.upstream_grad = upstream.as<float>();
  }
  Outcome outcome;
  {
    const PointPathScope scope(s.path);
    const Exec exec = exec_for(device);
    outcome.error = finish(exec, call(s.pass, args, s.reduction, exec));
  }
  if (!outcome.error.empty()) return outcome;

  ref::BceProblem problem;
  problem.rows = rows;
  problem.cols = cols;
  problem.logits = in.logits;
  problem.targets = in.targets;
  if (s.pos_weight) problem.pos_weight = in.pos_weight;
  if (s.weight) problem.weight = in.weight;
  problem.reduction = to_ref(s.reduction);
  problem.grad_scale = s.grad_scale;
  if (s.upstream) problem.upstream = in.upstream;
  const ref::BceResult expected = ref::bce_with_logits(problem);
  const Bounds bounds = error_bounds(s, in, expected);

  if (!wants_loss) {
    outcome.checks.push_back(verdict("loss", loss.untouched(), "written although not asked for"));
  } else if (none) {
    outcome.checks.push_back(
        compare("loss", loss.download(), expected.elem_loss, DType::f32, bounds.loss));
  } else {
    outcome.checks.push_back(
        compare("loss", loss.download(), {expected.loss}, DType::f32, {bounds.reduced}));
  }
  outcome.checks.push_back(verdict("loss padding", loss.padding_intact(), "written past the end"));
  if (wants_grad) {
    outcome.checks.push_back(compare("grad", grad.download(), expected.grad, d.grad, bounds.grad));
    outcome.checks.push_back(verdict("grad padding", grad.padding_intact(),
                                     "bytes between rows or past the end written"));
  } else {
    outcome.checks.push_back(verdict("grad", grad.untouched(), "written although not asked for"));
  }
  check_unchanged(outcome, "logits", logits, in.logits, d.logits);
  check_unchanged(outcome, "targets", targets, in.targets, d.targets);
  if (s.weight) check_unchanged(outcome, "weight", weight, in.weight, d.weight);
  if (s.pos_weight) check_unchanged(outcome, "pos_weight", pos_weight, in.pos_weight, DType::f32);
  if (s.upstream && wants_grad)
    check_unchanged(outcome, "upstream", upstream, in.upstream, DType::f32);
  return outcome;
}

// ---- the cases --------------------------------------------------------------------------------

class Builder {
 public:
  Builder(Device device, std::vector<Case>& cases) : device_(device), cases_(cases) {}
  void add(Spec s) {
    s.device = device_;
    if (device_ == Device::cpu) {
      s.path = PointPath::vector;
      s.misaligned = false;
    }
    Case c;
    c.device = device_;
    c.op = "bce_with_logits";
    c.pass = to_string(s.pass);
    c.dtypes = dtypes_text(s.dtypes);
    c.shape = shape_text(s);
    c.inputs = inputs_text(s);
    c.path = point_path_name(device_, s.path);
    c.run = [s] { return run(s); };
    cases_.push_back(std::move(c));
  }

 private:
  Device device_;
  std::vector<Case>& cases_;
};

// Row padding: none (dense), to a stride that is a multiple of 8 elements plus a pack (16-byte
// aligned rows in every dtype, the last pack of a row partial), and 3 (no row aligned).
std::int64_t pad_for(int layout, std::int64_t cols) {
  switch (layout % 3) {
    case 1: return (cols + 7) / 8 * 8 + 8 - cols;
    case 2: return 3;
    default: return 0;
  }
}

void set_layout(Spec& s, int layout) {
  s.logits_pad = pad_for(layout, s.cols);
  s.target_pad = pad_for(layout + 1, s.cols);
  s.weight_pad = pad_for(layout + 2, s.cols);
  s.grad_pad = pad_for(layout, s.cols);
}

void cuda_full(Builder& b) {
  int i = 0;
  // Every shape under every pass and reduction; dtypes, layouts (each tensor its own), the
  // misaligned base, weight, pos_weight, upstream and the optional loss cycle with the case
  // number so that each value of each meets many shapes.
  for (std::int64_t rows : {1, 2, 33, 257})
    for (std::int64_t cols : {1, 15, 16, 17, 1025})
      for (Pass pass : kPasses)
        for (Reduction reduction : kReductions) {
          Spec s;
          s.pass = pass;
          s.reduction = reduction;
          s.rows = rows;
          s.cols = cols;
          s.dtypes = kDtypeSets[i % 4];
          if (i % 4 != 0) set_layout(s, i / 4);
          s.path = (i / 5) % 2 ? PointPath::scalar : PointPath::vector;
          s.weight = i % 2 == 0;
          s.pos_weight = (i / 2) % 2 == 0;
          s.upstream = (i / 3) % 2 == 0;
          s.loss = (i / 7) % 3 != 0;
          s.grad_scale = i % 5 == 0 ? -0.5f : 0.75f;
          b.add(s);
          ++i;
        }
  // Every dtype combination with everything present, every pass and reduction: rows whose full
  // packs take the vector path and whose last pack is partial (17 of a stride of 24), and
  // misaligned.
  for (const Dtypes& d : kDtypeSets)
    for (Pass pass : kPasses)
      for (Reduction reduction : kReductions)
        for (PointPath path : {PointPath::vector, PointPath::scalar}) {
          Spec s;
          s.pass = pass;
          s.reduction = reduction;
          s.dtypes = d;
          s.rows = 33;
          s.cols = 17;
          s.logits_pad = s.target_pad = s.weight_pad = s.grad_pad = 7;
          s.path = path;
          s.weight = s.pos_weight = s.upstream = true;
          b.add(s);
        }
  // Dense inputs run as one long row unless a per-column pos_weight needs the column: [N x 1]
  // (pos_weight broadcast) and [N x 17] without pos_weight flatten, [N x 17] with it keeps its
  // rows; and the same shapes strided (never flattened).
  struct Shape {
    std::int64_t rows, cols;
    bool pos_weight;
  };
  for (const Shape& shape : {Shape{257, 1, true}, Shape{257, 1, false}, Shape{33, 17, false},
                             Shape{33, 17, true}, Shape{2, 15, false}})
    for (Reduction reduction : kReductions)
      for (int variant = 0; variant < 3; ++variant) {
        Spec s;
        s.reduction = reduction;
        s.rows = shape.rows;
        s.cols = shape.cols;
        s.dtypes = kDtypeSets[i++ % 4];
        s.weight = s.upstream = true;
        s.pos_weight = shape.pos_weight;
        s.path = variant == 1 ? PointPath::scalar : PointPath::vector;
        if (variant == 2) s.target_pad = 1;
        b.add(s);
      }
  // The grid-stride loops: two blocks and one, so that every thread walks many packs across row
  // boundaries (its step is not a multiple of the packs per row); 129 x 64 has only full packs,
  // and takes two steps of two packs a thread on two blocks, the second of 8 packs.
  for (PointPath path : {PointPath::grid_stride, PointPath::one_block})
    for (const auto& [rows, cols] : {std::pair<std::int64_t, std::int64_t>{33, 17},
                                     {257, 15}, {2, 1025}, {129, 64}, {257, 1025}})
      for (Reduction reduction : kReductions) {
        Spec s;
        s.path = path;
        s.reduction = reduction;
        s.rows = rows;
        s.cols = cols;
        s.dtypes = kDtypeSets[i % 4];
        set_layout(s, i);
        s.misaligned = i % 5 == 0;
        s.weight = s.pos_weight = s.upstream = true;
        b.add(s);
        ++i;
      }
  // No elements: sum and mean are 0, nothing else is written.
  for (const auto& [rows, cols] : {std::pair<std::int64_t, std::int64_t>{0, 5}, {4, 0}})
    for (Pass pass : kPasses)
      for (Reduction reduction : kReductions) {
        Spec s;
        s.pass = pass;
        s.reduction = reduction;
        s.rows = rows;
        s.cols = cols;
        s.weight = s.pos_weight = s.upstream = true;
        b.add(s);
      }
  // Adversarial values on every path and dtype combination: every binade (with and without
  // weight and pos_weight), |x| near and beyond float's exp range, the hand-picked extremes.
  for (const Dtypes& d : kDtypeSets)
    for (Pass pass : kPasses) {
      for (PointPath path : kPointPaths)
        for (bool options : {false, true}) {
          Spec s;
          s.kind = "sweep";
          s.pass = pass;
          s.reduction = kReductions[i % 3];
          s.dtypes = d;
          s.rows = 41;
          s.cols = 100;
          s.path = path;
          s.weight = s.pos_weight = options;
          s.upstream = i % 2 == 0;
          b.add(s);
          ++i;
        }
      Spec s;
      s.kind = "x=+-120";
      s.pass = pass;
      s.reduction = Reduction::none;
      s.dtypes = d;
      s.rows = 9;
      s.cols = 33;
      s.path = kPointPaths[std::size_t(i++) % 3];
      s.weight = s.pos_weight = s.upstream = true;
      b.add(s);
    }
  // pw y rounding to 0 under an infinite softplus (f32 targets alone hold 2^-149).
  for (Pass pass : kPasses) {
    Spec s;
    s.kind = "pw y underflow";
    s.pass = pass;
    s.reduction = Reduction::none;
    s.rows = 1;
    s.cols = 2;
    s.pos_weight = true;
    b.add(s);
  }
  for (const char* kind : {"adversarial", "adversarial finite"})
    for (DType dtype : {DType::f32, DType::bf16})
      for (Pass pass : kPasses)
        for (Reduction reduction : kReductions) {
          Spec s;
          s.kind = kind;
          s.pass = pass;
          s.reduction = reduction;
          s.dtypes = {dtype, dtype, dtype, dtype};
          s.rows = 2;
          s.cols = 8;
          s.pos_weight = true;
          s.upstream = true;
          b.add(s);
        }
}

// The CPU path (and the kernels' quick and smoke checks): every pass, dtype combination and input
// kind, reductions and paths rotating, the layouts and the accumulator.
void every_kind(Builder& b, Device device, Depth depth) {
  const std::vector<PointPath> paths = point_paths(device);
  int i = 0;
  if (depth == Depth::smoke) {
    // Every pass on every path, dtypes and reductions cycling; and every binade once per pass.
    for (Pass pass : kPasses)
      for (const char* kind : {"random", "random", "random", "sweep"}) {
        Spec s;
        s.kind = kind;
        s.pass = pass;
        s.reduction = kReductions[i % 3];
        s.dtypes = kDtypeSets[i % 4];
        s.rows = 33;
        s.cols = 125;
        s.path = paths[std::size_t(i) % paths.size()];
        s.weight = s.pos_weight = s.upstream = true;
        b.add(s);
        ++i;
      }
  } else {
    for (const Dtypes& d : kDtypeSets)
      for (Pass pass : kPasses)
        for (const char* kind : {"random", "sweep", "x=+-120", "adversarial finite"}) {
          const bool small = std::string(kind) == "adversarial finite";
          Spec s;
          s.kind = kind;
          s.pass = pass;
          s.reduction = std::string(kind) == "x=+-120" ? Reduction::none : kReductions[i % 3];
          s.dtypes = d;
          s.rows = small ? 2 : 33;
          s.cols = small ? 8 : 125;
          s.path = paths[std::size_t(i) % paths.size()];
          s.weight = i % 2 == 0 || std::string(kind) == "x=+-120";
          s.pos_weight = i % 3 != 1;
          s.upstream = i % 4 != 3;
          s.loss = i % 5 != 4;
          b.add(s);
          ++i;
        }
  }
  // Row strides for every tensor, misaligned, the [N x 1] broadcast, a flattened dense shape.
  for (int variant = 0; variant < 4; ++variant) {
    Spec s;
    s.reduction = kReductions[variant % 3];
    s.dtypes = kDtypeSets[variant];
    s.rows = variant < 2 ? 33 : 257;
    s.cols = variant < 2 ? 17 : 1;
    if (variant == 0) set_layout(s, 1);
    s.path = paths[std::size_t(variant) % paths.size()];
    s.misaligned = variant == 1;
    s.weight = s.upstream = true;
    s.pos_weight = variant != 3;
    b.add(s);
  }
  if (depth == Depth::smoke) return;
  // The accumulator (below), and no elements.
  for (Pass pass : kPasses) {
    Spec s;
    s.pass = pass;
    s.reduction = Reduction::sum;
    s.rows = 0;
    s.cols = 5;
    b.add(s);
  }
  if (depth != Depth::full) return;
  Spec s;
  s.kind = "pw y underflow";
  s.reduction = Reduction::none;
  s.rows = 1;
  s.cols = 2;
  s.pos_weight = true;
  b.add(s);
}

// The accumulator: one large term and 2^18 tiny ones, summed by one block (the first thread adds
// 128 packs of tiny terms to the large one). Each pack of tiny terms is below half an ulp of
// the large one in float: a float per-thread accumulator loses about 7.1e-3, over 6 times the
// bound here (18 roundings of 1024.5, 1.1e-3).
void large_first(Builder& b, Device device) {
  for (Reduction reduction : {Reduction::sum, Reduction::mean}) {
    Spec s;
    s.kind = "large first";
    s.pass = Pass::forward;
    s.reduction = reduction;
    s.rows = 1;
    s.cols = (1 << 18) + 1;
    s.path = device == Device::cpu ? PointPath::vector : PointPath::one_block;
    b.add(s);
  }
}

}  // namespace

void add_bce_cases(Device device, Depth depth, std::vector<Case>& cases) {
  Builder builder(device, cases);
  if (device == Device::cuda && depth == Depth::full)
    cuda_full(builder);
  else
    every_kind(builder, device, depth);
  if (depth != Depth::smoke) large_first(builder, device);
}

}  // namespace actloss::validation
