// Activation cases: every activation, pass and dtype pair, sizes across the 8-element pack and
// the 32-element mask word, the vector, scalar (misaligned base) and grid-stride paths, forward,
// backward from the input and from the output ("backward(y)"), the relu mask forward with the
// backward from it ("mask"), in place, and adversarial inputs: every float binade ("sweep"), the
// far tails, and float values at the rounding ties of f16 and bf16 ("ties"), whose conversion
// must be exact.
//
// Error bounds (validation/tolerance.h), per output element. x (or the saved y) and dy are
// exact, as the device holds them; each float operation is one rounding: u = 2^-24 relative, or
// 2^-150 absolute below float's normal range (FMA contraction only removes roundings). The GPU's
// math functions at their documented worst: expf 2 ulp (4u relative, 2^-148 absolute where the
// result is subnormal), tanhf 2 ulp (4u), erfcf 4 ulp (8u, 2^-147), __fdividef 2 ulp (4u). The
// float constants 1/sqrt2, 1/sqrt(2pi), sqrt(2/pi), 0.044715 are within u of their values (0.29,
// 0.48, 0.48, 0.58 u), 3 * 0.044715f within 1.05 u of 3 * 0.044715.
//  * The sigmoid pair from e = expf(-|x|): 1 + e carries 3u (e's 4u weighs at most 1/2 there),
//    big = 1 / (1 + e) 7u, small = e big 12u and 2^-147 absolute (e's 2^-148 and the product's
//    2^-150). sigmoid(x) is big for x >= 0, small below, and sigmoid(-x) the other.
//  * relu, and every backward through relu (x, y or the mask): exact; compared bit for bit.
//  * leaky_relu: alpha x and dy alpha are one rounding each: u |result| + 2^-150 where x <= 0.
//  * tanh: forward tanhf: 4u |f| + 2^-148. From the input, 4e / (1 + e)^2 with e = expf(-2|x|):
//    e 4u, (1 + e)^2 7u, the division 4u: 15u of sech^2, 2^-145 absolute; the product with dy
//    one more u. From the output (1 - y)(1 + y) dy: 4 roundings.
//  * sigmoid: forward 7u (x >= 0) or 12u + 2^-147. From the input big small dy: 7 + 12 + 1 + 1
//    = 21u, small's 2^-147 times |dy|. From the output y (1 - y) dy: 3 roundings.
//  * silu x s(x): s's error times |x| (so 2^-147 |x|: x times a subnormal sigmoid) and the
//    product. Backward s(x) (1 + x s(-x)) dy term by term: x s(-x) carries s(-x)'s error plus a
//    rounding, 1 + x s(-x) (which cancels near x = -1.28) adds u of itself, the products one
//    each. Arguments are exact, so no condition term.
//  * gelu_erf 0.5 x erfcf(-x c), c = float(1/sqrt2): the argument carries 2u (c and the
//    product), which moves Phi by x phi(x) 2u: forward 9u |f| + 2u x^2 phi + 2^-148 |x| (erfcf's
//    4 ulp at the subnormals, times x / 2) + 3 2^-150. Backward Phi + x phi: Phi as above (8u,
//    2u |x| phi, 2^-148); phi = float(1/sqrt(2pi)) expf(-0.5 x x): the constant and its product
//    2u, expf 4u (2^-148 at the subnormals, times the constant), and the rounded exponent x^2/2
//    (1 + u) moves it by u x^2/2 relatively; then the product with x, the sum and dy one rounding
//    each.
//  * gelu_tanh x s(w), w = 2 sqrt(2/pi) x (1 + 0.044715 x^2) in float: w carries 7u (constants
//    1.06u, 5 roundings), which moves s(w) by s(w) s(-w) |w| 7u: the condition of the tail, up to
//    several hundred u near x = -10 before s underflows. Backward s + s s' 2x u'(x), with x
//    clamped to +-20 in the second term (s(w) s(-w) is 0 in float beyond, and the reference's
//    remainder is below 1e-200): s and s(-w) as above, each with its condition term, their
//    product one rounding, the products with 2x (exact) and with u'(x) (itself 7u: constants
//    1.53u, 4 roundings) 2 more, the sum and dy one each.
// At x = +-inf the kernels take the limits through the math functions' special values; the one
// inexact step left is __fdividef(1, 1 + 0): 5u |result| with the product with dy.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "validation/paths.h"
#include "validation/sigmoid_bounds.h"
#include "validation/tensors.h"
#include "validation/tolerance.h"

namespace actloss::validation {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr float kAlpha = 0.01f;
constexpr double kSub = 0x1p-150;       // one float rounding below the normal range
constexpr double kSqrtHalf = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluCubic = 0.044715;

enum class ActPass : std::uint8_t { forward, backward, backward_y, mask };

const char* pass_name(ActPass pass) {
  switch (pass) {
    case ActPass::forward: return "forward";
    case ActPass::backward: return "backward";
    case ActPass::backward_y: return "backward(y)";
    case ActPass::mask: return "mask";
  }
  return "?";
}

constexpr Activation kActivations[] = {
    Activation::relu,     Activation::leaky_relu, Activation::tanh, Activation::sigmoid,
    Activation::gelu_erf, Activation::gelu_tanh,  Activation::silu};

bool has_output_slope(Activation a) {
  return a == Activation::relu || a == Activation::leaky_relu || a == Activation::tanh ||
         a == Activation::sigmoid;
}

std::vector<ActPass> passes_of(Activation a) {
  std::vector<ActPass> passes = {ActPass::forward, ActPass::backward};
  if (has_output_slope(a)) passes.push_back(ActPass::backward_y);
  if (a == Activation::relu) passes.push_back(ActPass::mask);
  return passes;
}

ref::Activation to_ref(Activation a) {
  switch (a) {
    case Activation::relu: return ref::Activation::relu;
    case Activation::leaky_relu: return ref::Activation::leaky_relu;
    case Activation::tanh: return ref::Activation::tanh;
    case Activation::sigmoid: return ref::Activation::sigmoid;
    case Activation::gelu_erf: return ref::Activation::gelu_erf;
    case Activation::gelu_tanh: return ref::Activation::gelu_tanh;
    case Activation::silu: return ref::Activation::silu;
  }
  return ref::Activation::relu;
}

struct Spec {
  Device device = Device::cpu;
  Activation act = Activation::relu;
  ActPass pass = ActPass::forward;
  // x or the saved tensor; y, dy and dx. "ties" reads f32 dy (the values at the ties) into a
  // 16-bit dx.
  DType in = DType::f32, out = DType::f32;
  std::int64_t n = 0;
  PointPath path = PointPath::vector;
  bool misaligned = false;  // a base one element off on the grid-stride paths as well
  bool in_place = false;    // y over x, dx over dy
  std::string kind = "random";
};

DType dy_dtype(const Spec& s) { return s.kind == "ties" ? DType::f32 : s.out; }
std::int64_t offset_for(const Spec& s) { return s.misaligned ? 1 : offset_of(s.path); }

std::string shape_text(const Spec& s) {
  std::string text = std::to_string(s.n);
  if (s.misaligned && s.path != PointPath::scalar) text += " offset 1";
  if (s.in_place) text += " in place";
  return text;
}

// ---- inputs -----------------------------------------------------------------------------------

struct Inputs {
  std::vector<double> x, saved, dy;  // as the device holds them
};

double slope_at(Activation a, double x) {
  const double one = 1.0;
  return ref::activation_backward_from_input(to_ref(a), {&x, 1}, {&one, 1}, kAlpha)[0];
}

Inputs make_inputs(const Spec& s) {
  const auto n = static_cast<std::size_t>(s.n);
  const std::uint64_t seed =
      seed_of("act " + std::string(to_string(s.act)) + " " + s.kind + " " + pass_name(s.pass) +
              std::to_string(s.n) + dtype_text(s.in, s.out));
  Inputs in;
  in.x = uniform(n, -6.0, 6.0, seed);
  in.dy = uniform(n, -2.0, 2.0, seed + 1);
  if (s.kind == "random") {
    // Planted every 11th element from index 2, so that they land in packs and in scalar tails
    // alike: signed zeros, f32 and f16 subnormals, |x| >= 20 where tanh and sigmoid saturate,
    // the GELUs' far left tail, values that overflow f16 or x^3, infinities, NaN, and the zero
    // crossings of the silu and GELU derivatives. dy: exact zeros and one NaN.
    static const double kSpecials[] = {0.0,  -0.0,  1e-40, -1e-40, 3e-6,  -3e-6,  20.0,  -20.0,
                                       25.0, -25.0, 40.0,  -40.0,  120.0, -120.0, 1e20,  -1e20,
                                       kInf, -kInf, kNaN,  0.5,    -1.28, -0.75,  -13.0, 9.0};
    std::size_t k = 0;
    for (std::size_t i = 2; i < n; i += 11, ++k) in.x[i] = kSpecials[k % std::size(kSpecials)];
    for (std::size_t i = 6; i < n; i += 17) in.dy[i] = 0.0;
    if (n > 9) in.dy[9] = kNaN;
  } else if (s.kind == "tails") {
    // |x| in [20, 120] where tanh and sigmoid saturate and the derivatives live in their far
    // tails, and the infinities.
    const std::vector<double> magnitude = uniform(n, 20.0, 120.0, seed + 2);
    for (std::size_t i = 0; i < n; ++i) {
      in.x[i] = (i % 2 == 0 ? 1.0 : -1.0) * magnitude[i];
      if (i % 97 == 5) in.x[i] = i % 2 == 0 ? kInf : -kInf;
    }
  } else if (s.kind == "sweep") {
    // Every float binade as x (and as the x behind a saved y), and as dy in another order.
    in.x = sweep_values(n, seed + 3);
    in.dy = sweep_values(n, seed + 4);
  } else if (s.kind == "ties") {
    // Values at the rounding ties of the 16-bit output (n is their count), as x and as dy.
    in.x = rounding_ties(s.out);
    in.dy = rounding_ties(s.out);
  }
  in.x = quantize(in.x, s.in);
  in.dy = quantize(in.dy, dy_dtype(s));
  if (s.pass == ActPass::backward) {
    // An infinite dy meeting a slope that is nonzero but below float's normal range: float may
    // round the slope to 0 (inf * 0 = NaN) where double keeps it (inf). Not a question about the
    // kernel; such a dy becomes the dtype's largest finite value.
    for (std::size_t i = 0; i < n; ++i) {
      const double slope = std::fabs(slope_at(s.act, in.x[i]));
      if (std::isinf(in.dy[i]) && slope > 0 && slope < 0x1p-126)
        in.dy[i] = std::copysign(largest_finite(dy_dtype(s)), in.dy[i]);
    }
  }
  if (s.pass == ActPass::backward_y)
    in.saved = quantize(ref::activation_forward(to_ref(s.act), in.x, kAlpha), s.in);
  else
    in.saved = in.x;
  return in;
}

// ---- error bounds -----------------------------------------------------------------------------

double phi(double x) { return kInvSqrt2Pi * std::exp(-0.5 * x * x); }
double big_phi(double x) { return 0.5 * std::erfc(-x * kSqrtHalf); }
double gelu_w(double x) { return 2.0 * kSqrt2OverPi * (x + kGeluCubic * x * x * x); }
double gelu_du(double x) { return kSqrt2OverPi * (1.0 + 3.0 * kGeluCubic * x * x); }

// At x = +-inf the kernels meet the documented special values (expf(-inf) = 0, erfcf(+-inf) = 0
// or 2, tanhf(+-inf) = +-1) and products with 0, 1 and FLT_MAX; the one inexact step left is
// 1 / (1 + 0) by __fdividef (2 ulp), then the product with dy.
double at_infinity(double result) { return finite_or_zero(5 * kU * std::fabs(result)); }

// y = f(x), for the value f the reference gives.
double forward_error(Activation a, double x, double f) {
  const double u = kU;
  const double ax = std::fabs(x), af = std::fabs(f);
  double err = 0;
  switch (a) {
    case Activation::relu: break;
    case Activation::leaky_relu: err = x > 0 ? 0.0 : u * af + kSub; break;
    case Activation::tanh: err = 4 * u * af + 0x1p-148; break;
    case Activation::sigmoid: {
      const PairError e = pair_error(x);
      err = e.pos_rel * u * af + e.pos_abs;
      break;
    }
    case Activation::silu: {
      const PairError e = pair_error(x);
      err = ax * (e.pos_rel * u * ref::sigmoid(x) + e.pos_abs) + u * af + kSub;
      break;
    }
    case Activation::gelu_erf:
      err = 9 * u * af + 2 * u * x * x * phi(x) + 0x1p-148 * ax + 3 * kSub;
      break;
    case Activation::gelu_tanh: {
      const double w = gelu_w(x), p = ref::sigmoid(w), q = ref::sigmoid(-w);
      const PairError e = pair_error(w);
      const double err_p = e.pos_rel * u * p + e.pos_abs + 7 * u * p * q * std::fabs(w);
      err = ax * err_p + u * af + kSub;
      break;
    }
  }
  return std::isinf(x) ? at_infinity(f) : finite_or_zero(err);
}

// dx = dy f'(x), for the value dx the reference gives.
double backward_error(Activation a, double x, double dy, double dx) {
  const double u = kU;
  const double ax = std::fabs(x), ady = std::fabs(dy);
  double slope_err = 0;  // of the kernel's f'(x)
  switch (a) {
    case Activation::relu: return 0;
    case Activation::leaky_relu: return x > 0 ? 0.0 : finite_or_zero(u * std::fabs(dx) + kSub);
    case Activation::tanh: slope_err = 15 * u * ref::sech_squared(x) + 0x1p-145; break;
    case Activation::sigmoid: {
      const PairError e = pair_error(x);
      const double p = ref::sigmoid(x), q = ref::sigmoid(-x);
      slope_err = (e.pos_rel + e.neg_rel + 1) * u * p * q + e.pos_abs * q + e.neg_abs * p + kSub;
      break;
    }
    case Activation::silu: {
      // s(x) (1 + x s(-x)).
      const PairError e = pair_error(x);
      const double p = ref::sigmoid(x), q = ref::sigmoid(-x);
      const double t = x * q, v = 1 + t;
      const double err_t = std::fabs(t) * (e.neg_rel + 1) * u + ax * e.neg_abs + kSub;
      const double err_v = err_t + u * std::fabs(v);
      slope_err =
          std::fabs(v) * (e.pos_rel * u * p + e.pos_abs) + p * err_v + u * std::fabs(p * v) + kSub;
      break;
    }
    case Activation::gelu_erf: {
      // Phi(x) + x phi(x).
      const double cdf = big_phi(x), pdf = phi(x);
      const double err_cdf = 8 * u * cdf + 2 * u * ax * pdf + 0x1p-148 + kSub;
      const double err_pdf = (6 + 0.5 * x * x) * u * pdf + 0x1p-149 + kSub;
      const double slope = cdf + x * pdf;
      slope_err = err_cdf + ax * err_pdf + u * ax * pdf + kSub + u * std::fabs(slope);
      break;
    }
    case Activation::gelu_tanh: {
      // s + (s s') 2c du(c), c = x clamped to +-20.
      const double w = gelu_w(x), p = ref::sigmoid(w), q = ref::sigmoid(-w);
      const PairError e = pair_error(w);
      const double condition = 7 * u * p * q * std::fabs(w);
      const double err_p = e.pos_rel * u * p + e.pos_abs + condition;
      const double err_q = e.neg_rel * u * q + e.neg_abs + condition;
      const double pq = p * q;
      const double err_pq = q * err_p + p * err_q + u * pq + kSub;
      const double c = std::fmin(std::fmax(x, -20.0), 20.0);
      const double m = 2 * std::fabs(c) * gelu_du(c);  // what multiplies the kernel's s s'
      const double err_t = m * err_pq + 9 * u * pq * m + 2 * kSub;
      const double clamp = pq * std::fabs(2 * x * gelu_du(x) - 2 * c * gelu_du(c));
      const double slope = p + pq * 2 * x * gelu_du(x);
      slope_err = err_p + err_t + clamp + u * std::fabs(slope);
      break;
    }
  }
  const double err = ady * slope_err + u * std::fabs(dx) + kSub;
  return std::isinf(x) ? at_infinity(dx) : finite_or_zero(err);
}

// dx = dy f'(y) from the saved output y.
double backward_y_error(Activation a, double y, double dy, double dx) {
  const double u = kU;
  double err = 0;
  switch (a) {
    case Activation::relu: break;
    case Activation::leaky_relu: err = y > 0 ? 0.0 : u * std::fabs(dx) + kSub; break;
    case Activation::tanh: err = 4 * u * std::fabs(dx) + kSub; break;
    case Activation::sigmoid: err = 3 * u * std::fabs(dx) + kSub * (std::fabs(dy) + 1); break;
    case Activation::gelu_erf:
    case Activation::gelu_tanh:
    case Activation::silu: break;
  }
  return finite_or_zero(err);
}

std::vector<double> forward_errors(Activation a, const std::vector<double>& x,
                                   const std::vector<double>& y) {
  std::vector<double> err(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) err[i] = forward_error(a, x[i], y[i]);
  return err;
}

// ---- running a case ---------------------------------------------------------------------------

// An output: exact for relu (and at the ties), else within the bound.
Check check_output(const Spec& s, const std::string& name, const std::vector<double>& actual,
                   const std::vector<double>& expected, const std::vector<double>& err) {
  if (s.act == Activation::relu || s.kind == "ties")
    return compare_exact(name, actual, expected, s.out);
  return compare(name, actual, expected, s.out, err);
}

void check_unchanged(Outcome& outcome, const std::string& name, const Tensor& t,
                     const std::vector<double>& values, DType dtype) {
  Check check = compare_exact(name + " (input)", t.download(), values, dtype);
  if (check.pass && !t.padding_intact())
    check = verdict(name + " (input)", false, "bytes outside the elements were written");
  outcome.checks.push_back(check);
}

std::vector<double> mask_bits(const std::vector<std::uint32_t>& words, std::size_t count) {
  std::vector<double> bits(count);
  for (std::size_t i = 0; i < count; ++i) bits[i] = (words[i / 32] >> (i % 32)) & 1u;
  return bits;
}

Outcome run_forward(const Spec& s, const Inputs& in) {
  const Device device = s.device;
  const std::int64_t offset = offset_for(s);
  const std::int64_t words = relu_mask_words(s.n);
  const bool mask = s.pass == ActPass::mask;
  const Tensor x = Tensor::upload(device, in.x, 1, s.n, s.in, 0, offset);
  const Tensor separate_y =
      s.in_place ? Tensor() : Tensor::poisoned(device, 1, s.n, s.out, 0, offset);
  const Tensor& y = s.in_place ? x : separate_y;
  // The mask and one word after it, 0xFF bytes: a word not written, or written past the end,
  // shows.
  bench::Buffer mask_words(device, static_cast<std::size_t>(words + 1) * 4);
  mask_words.fill_bytes(0xFF);

  ActivationForwardArgs args;
  args.n = s.n;
  args.x = x.data();
  args.x_dtype = s.in;
  args.y = y.data();
  args.y_dtype = s.out;
  if (mask) args.relu_mask = mask_words.as<std::uint32_t>();
  const ActivationOptions options{s.act, kAlpha};
  Outcome outcome;
  {
    const PointPathScope scope(s.path);
    const Exec exec = exec_for(device);
    outcome.error = finish(exec, activation_forward(args, options, exec));
  }
  if (!outcome.error.empty()) return outcome;

  const std::vector<double> expected = ref::activation_forward(to_ref(s.act), in.x, kAlpha);
  outcome.checks.push_back(
      check_output(s, "y", y.download(), expected, forward_errors(s.act, in.x, expected)));
  outcome.checks.push_back(verdict("y padding", y.padding_intact(), "written past the elements"));
  if (!s.in_place) check_unchanged(outcome, "x", x, in.x, s.in);
  if (!mask) return outcome;

  // The mask bit by bit (x > 0, false for NaN; the bits past n are 0), the word after it.
  const auto count = static_cast<std::size_t>(words * 32);
  std::vector<std::uint32_t> got(static_cast<std::size_t>(words + 1));
  mask_words.download(got.data(), got.size() * 4);
  std::vector<double> want(count, 0.0);
  for (std::size_t i = 0; i < in.x.size(); ++i) want[i] = in.x[i] > 0 ? 1.0 : 0.0;
  outcome.checks.push_back(compare_exact("mask", mask_bits(got, count), want, DType::f32));
  outcome.checks.push_back(
      verdict("mask guard", got.back() == 0xFFFFFFFFu, "the word after the mask was written"));

  // Backward from the mask: relu' depends only on x > 0, so the reference takes 1 or 0 for x
  // (a NaN x has bit 0: the mask cannot carry NaN).
  const Tensor dy = Tensor::upload(device, in.dy, 1, s.n, dy_dtype(s), 0, offset);
  const Tensor separate_dx =
      s.in_place ? Tensor() : Tensor::poisoned(device, 1, s.n, s.out, 0, offset);
  const Tensor& dx = s.in_place ? dy : separate_dx;
  ActivationBackwardArgs back;
  back.n = s.n;
  back.saved_kind = SavedTensor::relu_mask;
  back.saved = mask_words.data();
  back.dy = dy.data();
  back.dy_dtype = dy_dtype(s);
  back.dx = dx.data();
  back.dx_dtype = s.out;
  {
    const PointPathScope scope(s.path);
    const Exec exec = exec_for(device);
    outcome.error = finish(exec, activation_backward(back, options, exec));
  }
  if (!outcome.error.empty()) return outcome;
  std::vector<double> stand_in(in.x.size());
  for (std::size_t i = 0; i < in.x.size(); ++i) stand_in[i] = want[i];
  const std::vector<double> expected_dx =
      ref::activation_backward_from_input(ref::Activation::relu, stand_in, in.dy, kAlpha);
  outcome.checks.push_back(compare_exact("dx", dx.download(), expected_dx, s.out));
  outcome.checks.push_back(verdict("dx padding", dx.padding_intact(), "written past the elements"));
  std::vector<std::uint32_t> after(got.size());
  mask_words.download(after.data(), after.size() * 4);
  outcome.checks.push_back(verdict("mask (input)", after == got, "written by the backward pass"));
  if (!s.in_place) check_unchanged(outcome, "dy", dy, in.dy, dy_dtype(s));
  return outcome;
}

Outcome run_backward(const Spec& s, const Inputs& in) {
  const Device device = s.device;
  const std::int64_t offset = offset_for(s);
  const bool from_output = s.pass == ActPass::backward_y;
  const Tensor saved = Tensor::upload(device, in.saved, 1, s.n, s.in, 0, offset);
  const Tensor dy = Tensor::upload(device, in.dy, 1, s.n, dy_dtype(s), 0, offset);
  const Tensor separate_dx =
      s.in_place ? Tensor() : Tensor::poisoned(device, 1, s.n, s.out, 0, offset);
  const Tensor& dx = s.in_place ? dy : separate_dx;
  ActivationBackwardArgs args;
  args.n = s.n;
  args.saved_kind = from_output ? SavedTensor::output : SavedTensor::input;
  args.saved = saved.data();
  args.saved_dtype = s.in;
  args.dy = dy.data();
  args.dy_dtype = dy_dtype(s);
  args.dx = dx.data();
  args.dx_dtype = s.out;
  Outcome outcome;
  {
    const PointPathScope scope(s.path);
    const Exec exec = exec_for(device);
    outcome.error = finish(exec, activation_backward(args, {s.act, kAlpha}, exec));
  }
  if (!outcome.error.empty()) return outcome;

  const std::vector<double> expected =
      from_output ? ref::activation_backward_from_output(to_ref(s.act), in.saved, in.dy, kAlpha)
                  : ref::activation_backward_from_input(to_ref(s.act), in.saved, in.dy, kAlpha);
  std::vector<double> err(expected.size());
  for (std::size_t i = 0; i < err.size(); ++i)
    err[i] = from_output ? backward_y_error(s.act, in.saved[i], in.dy[i], expected[i])
                         : backward_error(s.act, in.saved[i], in.dy[i], expected[i]);
  outcome.checks.push_back(check_output(s, "dx", dx.download(), expected, err));
  outcome.checks.push_back(verdict("dx padding", dx.padding_intact(), "written past the elements"));
  check_unchanged(outcome, from_output ? "y" : "x", saved, in.saved, s.in);
  if (!s.in_place) check_unchanged(outcome, "dy", dy, in.dy, dy_dtype(s));
  return outcome;
}

Outcome run(const Spec& s) {
  const Inputs in = make_inputs(s);
  if (s.pass == ActPass::forward || s.pass == ActPass::mask) return run_forward(s, in);
  return run_backward(s, in);
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
    if (s.kind == "ties") s.n = static_cast<std::int64_t>(rounding_ties(s.out).size());
    Case c;
    c.device = device_;
    c.op = to_string(s.act);
    c.pass = pass_name(s.pass);
    c.dtypes = dtype_text(s.in, s.out);
    c.shape = shape_text(s);
    c.inputs = s.kind;
    c.path = point_path_name(device_, s.path);
    c.run = [s] { return run(s); };
    cases_.push_back(std::move(c));
  }

 private:
  Device device_;
  std::vector<Case>& cases_;
};

struct Dtypes {
  DType in, out;
};
// Same-dtype pairs, and two mixed ones (16-bit in / f32 out, f32 in / 16-bit out).
constexpr Dtypes kDtypePairs[] = {{DType::f32, DType::f32},
                                  {DType::f16, DType::f16},
                                  {DType::bf16, DType::bf16},
                                  {DType::f16, DType::f32},
                                  {DType::f32, DType::bf16}};

// Across the pack (8) and mask word (32) boundaries, and several blocks of 256 threads; 8191 and
// 8200 end just inside and just past a block's first step of four packs a thread (1024 packs),
// so that full steps, a step with a partial last pack and a lone pack in a step all occur.
constexpr std::int64_t kAllSizes[] = {0, 1, 3, 4, 5, 31, 32, 33, 1000, 4099, 8191, 8200, 65537};
constexpr std::int64_t kSomeSizes[] = {5, 33, 4099};
// Around the relu mask's 256-element warp tiles (its vector part) and the word-by-word rest.
constexpr std::int64_t kMaskSizes[] = {255, 256, 257, 511, 512, 520, 769};

Spec spec(Activation act, ActPass pass, Dtypes d, std::int64_t n, PointPath path,
          const char* kind = "random") {
  Spec s;
  s.act = act;
  s.pass = pass;
  s.in = d.in;
  s.out = d.out;
  s.n = n;
  s.path = path;
  s.kind = kind;
  return s;
}

void cuda_full(Builder& b) {
  const PointPath aligned_and_not[] = {PointPath::vector, PointPath::scalar};
  // Every activation and pass at every size in f32 and f16, aligned and misaligned; the mask in
  // every dtype, and at the sizes around its tiles.
  for (Activation act : kActivations)
    for (ActPass pass : passes_of(act)) {
      const std::vector<Dtypes> pairs =
          pass == ActPass::mask
              ? std::vector<Dtypes>{kDtypePairs[0], kDtypePairs[1], kDtypePairs[2]}
              : std::vector<Dtypes>{kDtypePairs[0], kDtypePairs[1]};
      for (const Dtypes& d : pairs)
        for (std::int64_t n : kAllSizes)
          for (PointPath path : aligned_and_not) b.add(spec(act, pass, d, n, path));
      // The mixed pairs and bf16 at a few sizes.
      for (const Dtypes& d : kDtypePairs) {
        if (d.in == d.out && (d.in != DType::bf16 || pass == ActPass::mask)) continue;
        for (std::int64_t n : kSomeSizes)
          for (PointPath path : aligned_and_not) b.add(spec(act, pass, d, n, path));
      }
    }
  for (std::int64_t n : kMaskSizes)
    for (PointPath path : aligned_and_not)
      b.add(spec(Activation::relu, ActPass::mask, kDtypePairs[0], n, path));

  // In place (y over x, dx over dy), aligned and misaligned.
  int i = 0;
  for (Activation act : kActivations)
    for (ActPass pass : passes_of(act))
      for (DType dtype : {DType::f32, DType::bf16})
        for (std::int64_t n : {std::int64_t{33}, std::int64_t{4099}}) {
          Spec s = spec(act, pass, {dtype, dtype}, n, aligned_and_not[i++ % 2]);
          s.in_place = true;
          b.add(s);
        }

  // The grid-stride loops: two blocks and one, so that every thread walks many packs (mask
  // words), aligned and not, every activation and pass, dtype pairs cycling. Misaligned, 20483
  // elements still take several steps of four packs a thread and end in a ragged one.
  for (Activation act : kActivations)
    for (ActPass pass : passes_of(act))
      for (PointPath path : {PointPath::grid_stride, PointPath::one_block})
        for (bool misaligned : {false, true}) {
          Spec s =
              spec(act, pass, kDtypePairs[std::size_t(i++) % 5], misaligned ? 20483 : 65537, path);
          s.misaligned = misaligned;
          b.add(s);
        }

  // Adversarial values on every path and dtype pair: every binade, the far tails.
  for (Activation act : kActivations)
    for (ActPass pass : passes_of(act))
      for (const Dtypes& d : kDtypePairs) {
        for (PointPath path : kPointPaths) b.add(spec(act, pass, d, 4099, path, "sweep"));
        b.add(spec(act, pass, d, 4099, kPointPaths[std::size_t(i++) % 3], "tails"));
      }

  // Float -> 16-bit conversions at their ties, exact: relu's stores (packs, element by element,
  // the mask kernel's word-by-word tail) in every pass.
  for (DType out : {DType::f16, DType::bf16})
    for (ActPass pass : passes_of(Activation::relu))
      for (PointPath path : kPointPaths)
        b.add(spec(Activation::relu, pass, {DType::f32, out}, 0, path, "ties"));
}

// The CPU path (and the kernels' quick and smoke checks): every activation, pass, dtype pair and
// input kind, the paths rotating; at full depth (the CPU) the sizes and in place too.
void every_kind(Builder& b, Device device, Depth depth) {
  const std::vector<PointPath> paths = point_paths(device);
  int i = 0;
  if (depth == Depth::smoke) {
    // Every activation, pass and path; kinds and dtype pairs cycling.
    for (Activation act : kActivations)
      for (ActPass pass : passes_of(act))
        for (PointPath path : paths) {
          b.add(spec(act, pass, kDtypePairs[std::size_t(i) % 5], 1000, path,
                     i % 2 ? "sweep" : "random"));
          ++i;
        }
    b.add(
        spec(Activation::relu, ActPass::mask, {DType::f32, DType::bf16}, 0, paths.back(), "ties"));
    return;
  }
  for (Activation act : kActivations)
    for (ActPass pass : passes_of(act))
      for (const Dtypes& d : kDtypePairs)
        for (const char* kind : {"random", "tails", "sweep"}) {
          b.add(spec(act, pass, d, 4099, paths[std::size_t(i) % paths.size()], kind));
          ++i;
        }
  for (DType out : {DType::f16, DType::bf16})
    for (ActPass pass : passes_of(Activation::relu)) {
      b.add(spec(Activation::relu, pass, {DType::f32, out}, 0, paths[std::size_t(i) % paths.size()],
                 "ties"));
      ++i;
    }
  for (Activation act : kActivations)
    for (ActPass pass : passes_of(act)) {
      Spec s = spec(act, pass, kDtypePairs[std::size_t(i) % 3], 33,
                    paths[std::size_t(i) % paths.size()]);
      s.in_place = true;
      b.add(s);
      ++i;
    }
  if (depth != Depth::full) return;
  // The CPU at full depth: every size, f32 and f16.
  for (Activation act : kActivations)
    for (ActPass pass : passes_of(act))
      for (std::int64_t n : kAllSizes) {
        if (n == 4099) continue;
        b.add(spec(act, pass, kDtypePairs[std::size_t(i++) % 2], n, PointPath::vector));
      }
}

}  // namespace

void add_activation_cases(Device device, Depth depth, std::vector<Case>& cases) {
  Builder builder(device, cases);
  if (device == Device::cuda && depth == Depth::full) {
    cuda_full(builder);
    return;
  }
  every_kind(builder, device, depth);
}

}  // namespace actloss::validation
