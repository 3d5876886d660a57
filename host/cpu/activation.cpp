// Elementwise activations and SwiGLU on the SIMD CPU backend (semantics:
// include/actloss/activation.h), with the float32 formulas of the CUDA kernels
// (cuda/activation.cu), whose error bounds validation/activation.cpp states.
//
// Layout: the elements of rows x n are numbered densely (element e is column e % n of row e / n)
// and cut into tasks of kTaskElements; a task walks its elements row segment by row segment, in
// blocks of kBlock. An f32 operand is read and written where it lies; a 16-bit one goes through a
// float staging buffer of one block, so the math below is written once, on float arrays, and only
// the conversions are instantiated per dtype. Where every operand has the same 16-bit dtype (the
// common bf16 or f16 model), loads and stores convert in registers instead: the staging passes
// cost up to a fifth of a bf16 relu; and relu forward works on the 16-bit bits (relu_bits), with
// no conversion at all. Every output element is computed from the inputs of the same element,
// loaded before the element's outputs are stored: in place is safe.
//
// Memory: the loops ask for each input's memory kPrefetchElements ahead, one prefetch per vector
// (a burst per block instead stalls on the core's few line-fill buffers), and on Intel a float
// output written through the cache kOutputFetchAheadElements ahead of its stores; an output of
// streaming_output_bytes() or more, dense, is stored with non-temporal stores, since it will not be
// in cache for its next reader anyway and its lines need not be read first. For that the tasks
// and blocks are cut so that each but the first starts at a vector-aligned output address.
// On this project's 2-core Xeon (one core) both together took gelu_erf forward over 16M floats
// from 6.2 to 8.4 GB/s and tanh from 8.3 to 11.5. The loops call the activation at one place
// each: a second call site made GCC stop inlining it, at half the speed.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "host/cpu/activation.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>

#include "host/cpu/backend.h"
#include "host/cpu/simd-inl.h"
#include "host/cpu/thread_pool.h"
#include "host/cpu_path.h"

HWY_BEFORE_NAMESPACE();
namespace actloss::cpu::HWY_NAMESPACE {
namespace {

using D = FloatTag;
using V = FloatVec;

// Elements per task: a multiple of 32 so that every task but the last writes whole relu mask
// words, and long (256 KiB of f32 per operand): each task ends in an sfence that waits for its
// streamed stores to drain, and a cheap activation's task is short enough for its start and end
// to show. Against a quarter of this, 2 threads on the EPYC VM, medians of 5 alternating
// processes: at 1M elements relu 1.12-1.31x, SwiGLU 1.14-1.20x, the rest within -2% and +7%; at
// 16M the compute-bound activations 3-12% faster.
constexpr std::int64_t kTaskElements = 65536;
// Elements per staging block: 4 KiB of floats per operand, five operands at most, well inside L1.
constexpr std::int64_t kBlock = 1024;
// How far ahead of its use an input is asked for: 2 KiB of f32, 32 cache lines in flight.
constexpr std::size_t kPrefetchElements = 512;

// ---- the activations in float32 ---------------------------------------------------------------

constexpr float kInvSqrt2Pi = 0.39894228040143268f;   // 1 / sqrt(2 pi)
constexpr float kSqrt2OverPi = 0.79788456080286536f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

// NaN in gives NaN out: the exp below and the selects would turn NaN into a plausible number, so
// every transcendental result takes x back where x is NaN.
HWY_INLINE V keep_nan(V x, V result) { return hn::IfThenElse(hn::IsNaN(x), x, result); }

// keep_nan for a result that depends on x through a clamp (only where that passed NaN on).
HWY_INLINE V keep_nan_past_clamp(V x, V result) {
  if constexpr (kMaxPassesNan) return result;
  return keep_nan(x, result);
}

// max(a, floor) and min(a, ceiling), a NaN a kept where kMaxPassesNan.
HWY_INLINE V clamp_below(D d, V a, float floor) { return hn::Max(hn::Set(d, floor), a); }
HWY_INLINE V clamp_above(D d, V a, float ceiling) { return hn::Min(hn::Set(d, ceiling), a); }

// x with -inf replaced by -FLT_MAX, for a factor x of a product whose other factor is an exact
// 0 at -inf (x g(x) with g(-inf) = 0): the product is then 0, its limit, not inf * 0 = NaN.
HWY_INLINE V finite_below(D d, V x) { return hn::Max(x, hn::Set(d, -FLT_MAX)); }
// The same at both infinities, for x times a density that is 0 there.
HWY_INLINE V finite_part(D d, V x) {
  return hn::Min(hn::Max(x, hn::Set(d, -FLT_MAX)), hn::Set(d, FLT_MAX));
}

// ---- exp ---------------------------------------------------------------------------------------
//
// exp(a + b) = p 2^k for a in [-113, 0] and |b| <= 0.06, b the low part of an argument that one
// float would round (gelu_erf's -x^2 / 2; kWithLow false: none). p is near 1, so a product of p
// and other factors near 1 is a normal float, and applying 2^k last rounds a result below float's
// normal range once (or 2^(k + 64) keeps it exact, for a product whose last factor comes later,
// with kTwoToMinus64); below -113 every exp rounds to 0, so callers clamp there. a and b enter
// the reduction r = a + b - k ln2 separately (ln2's head has 15 bits, so k ln2_hi is exact, and
// a - k ln2_hi is exact by Sterbenz); exp(r) is simd-inl.h's exp_of_small, as for the rows.
// Adding 1.5 2^23 rounds (a + b) / ln2 to the integer k in the low mantissa bits. No special
// values: callers restore NaN.
constexpr float kTwoToMinus64 = 0x1p-64f;

// exp(a + b) = p 2^k, k held as k + 1.5 2^23 (the reduction's shifted sum).
struct ExpParts {
  V p;
  V k_shifted;
};

template <bool kWithLow, int kScaleLog2 = 0>
HWY_INLINE ExpParts exp_parts(D d, V a, V b) {
  const V shifter = hn::Set(d, 12582912.0f);
  const V sum = kWithLow ? hn::Add(a, b) : a;
  const V k_shifted = hn::MulAdd(sum, hn::Set(d, 1.44269504088896341f), shifter);
  const V k = hn::Sub(k_shifted, shifter);
  V head = hn::NegMulAdd(k, hn::Set(d, 0.693145751953125f), a);
  if constexpr (kWithLow) head = hn::Add(head, b);
  const V r = hn::NegMulAdd(k, hn::Set(d, 1.428606765330187045e-06f), head);
  return {exp_of_small<kScaleLog2>(d, r), k_shifted};
}

// v 2^(k + kExtra) for kExtra 64 (exact for v near 1: a normal float) or 0 (rounded once: v 2^k
// may be subnormal). AVX-512's vscalefps does either in one instruction; elsewhere the exponent
// field of 2^(k + 64) is shifted into place (the bits of 1.5 2^23 shift out), and kExtra 0
// multiplies by 2^-64 after it.
template <int kExtra>
HWY_INLINE V times_power_of_two(D d, V v, V k_shifted) {
  static_assert(kExtra == 0 || kExtra == 64);
#if ACTLOSS_CPU_SCALEF
  const V k = hn::Sub(k_shifted, hn::Set(d, 12582912.0f - static_cast<float>(kExtra)));
  return V{_mm512_scalef_ps(v.raw, k.raw)};
#else
  const hn::RebindToSigned<D> di;
  const auto exponent = hn::Add(hn::BitCast(di, k_shifted), hn::Set(di, 127 + 64));
  const V scaled = hn::Mul(v, hn::BitCast(d, hn::ShiftLeft<23>(exponent)));
  return kExtra == 64 ? scaled : hn::Mul(scaled, hn::Set(d, kTwoToMinus64));
#endif
}

HWY_INLINE V scaled_exp_of_sum(D d, V a, V b) {
  const ExpParts e = exp_parts<true>(d, a, b);
  return times_power_of_two<64>(d, e.p, e.k_shifted);
}

// exp(a) for a <= 0 as p 2^k, a clamped at -113 (p times 2^kScaleLog2: exp_of_small).
template <int kScaleLog2 = 0>
HWY_INLINE ExpParts exp_parts_nonpositive(D d, V a) {
  return exp_parts<false, kScaleLog2>(d, clamp_below(d, a, -113.0f), hn::Zero(d));
}

// exp(a) for a <= 0, rounded once where it is subnormal. Without vscalefps, p comes times 2^-64
// (exp_of_small, the same bits scaled), and one multiply by 2^(k + 64) rounds it.
HWY_INLINE V exp_nonpositive_once(D d, V a) {
#if ACTLOSS_CPU_SCALEF
  const ExpParts e = exp_parts_nonpositive(d, a);
  return times_power_of_two<0>(d, e.p, e.k_shifted);
#else
  const ExpParts e = exp_parts_nonpositive<-64>(d, a);
  return times_power_of_two<64>(d, e.p, e.k_shifted);
#endif
}

// sigmoid(x) and sigmoid(-x) from one e = exp(-|x|) in [0, 1]: no overflow, full relative
// accuracy in both tails (the smaller one is e times the larger, not 1 minus it).
struct SigmoidPair {
  V pos;  // sigmoid(x)
  V neg;  // sigmoid(-x)
};

HWY_INLINE SigmoidPair sigmoid_pair(D d, V x) {
  const V one = hn::Set(d, 1.0f);
  const V minus_abs = hn::Or(x, hn::SignBit(d));
  const V e = exp_nonpositive_once(d, minus_abs);
  const V big = reciprocal(d, hn::Add(one, e));
  // e is exact where it is normal (p times a power of two), so e big rounds once there; where e
  // is subnormal its own rounding costs 2^-150, inside the error model's 2^-147 for this tail.
  const V small = hn::Mul(e, big);
  const auto non_negative = hn::Ge(x, hn::Zero(d));
  return {hn::IfThenElse(non_negative, big, small), hn::IfThenElse(non_negative, small, big)};
}

struct Relu {
  static constexpr bool kOutputSlope = true;  // f' is a function of y = f(x)
  // x <= 0 is false for NaN, which so passes through (relu(NaN) = NaN).
  HWY_INLINE V forward(D d, V x) const { return hn::IfThenZeroElse(hn::Le(x, hn::Zero(d)), x); }
  HWY_INLINE V slope(D d, V x) const {
    return keep_nan(x, hn::IfThenElseZero(hn::Gt(x, hn::Zero(d)), hn::Set(d, 1.0f)));
  }
  // relu(x) > 0 exactly when x > 0, and NaN maps to NaN.
  HWY_INLINE V slope_from_output(D d, V y) const { return slope(d, y); }
};

struct LeakyRelu {
  static constexpr bool kOutputSlope = true;
  float alpha = 0.01f;
  HWY_INLINE V forward(D d, V x) const {
    return hn::IfThenElse(hn::Gt(x, hn::Zero(d)), x, hn::Mul(hn::Set(d, alpha), x));
  }
  HWY_INLINE V slope(D d, V x) const {
    return keep_nan(x, hn::IfThenElse(hn::Gt(x, hn::Zero(d)), hn::Set(d, 1.0f),
                                      hn::Set(d, alpha)));
  }
  // Validation admits a saved output only for alpha > 0, where sign(y) = sign(x).
  HWY_INLINE V slope_from_output(D d, V y) const { return slope(d, y); }
};

struct Tanh {
  static constexpr bool kOutputSlope = true;
  HWY_INLINE V forward(D d, V x) const { return tanh_and_decay(d, x).tanh; }
  // sech^2 x = 4e / (1 + e)^2 with e = exp(-2|x|) in [0, 1]: 1 - tanh^2 would be exactly 0 in
  // float for |x| > 9, where the true slope is still above 1e-8.
  HWY_INLINE V slope(D d, V x) const {
    const ExpParts e = exp_parts_nonpositive(d, hn::Mul(hn::Set(d, -2.0f), hn::Abs(x)));
    const V denominator = hn::Add(hn::Set(d, 1.0f), times_power_of_two<0>(d, e.p, e.k_shifted));
    // 4 p / (1 + e)^2 is a normal float: 2^k applied after it rounds the slope once.
    const V mantissa = hn::Mul(hn::Mul(hn::Set(d, 4.0f), e.p),
                               reciprocal(d, hn::Mul(denominator, denominator)));
    return keep_nan_past_clamp(x, times_power_of_two<0>(d, mantissa, e.k_shifted));
  }
  // (1 - y)(1 + y): 1 - y is exact for y in [1/2, 1], so nothing cancels twice.
  HWY_INLINE V slope_from_output(D d, V y) const {
    const V one = hn::Set(d, 1.0f);
    return hn::Mul(hn::Sub(one, y), hn::Add(one, y));
  }
};

struct Sigmoid {
  static constexpr bool kOutputSlope = true;
  HWY_INLINE V forward(D d, V x) const { return keep_nan_past_clamp(x, sigmoid_pair(d, x).pos); }
  HWY_INLINE V slope(D d, V x) const {
    const SigmoidPair s = sigmoid_pair(d, x);
    return keep_nan_past_clamp(x, hn::Mul(s.pos, s.neg));
  }
  HWY_INLINE V slope_from_output(D d, V y) const {
    return hn::Mul(y, hn::Sub(hn::Set(d, 1.0f), y));
  }
};

// ---- gelu_erf: Phi and phi -------------------------------------------------------------------
//
// Phi(x) = erfc(-x / sqrt2) / 2 and phi(x) = exp(-x^2 / 2) / sqrt(2 pi) share E = exp(-x^2 / 2).
// E's argument reaches -112 before E underflows, and a float rounding of x^2 / 2 would move E
// by up to 112 u relatively; so exp takes -x^2 / 2 as a rounded float and its small rest
// separately (scaled_exp_of_sum): with a fused multiply-add, the rest is the rounding error of
// the product, which the fused operation gives exactly; without one, |x| is split into a 12-bit
// head h (h^2 exact in float) and a tail l = |x| - h, x^2 = h^2 + l (|x| + h), and the parts are
// the exact -h^2 / 2 and -l (|x| + h) / 2. Then, with z = |x| / sqrt2,
//   erfc(z) = E R(z),  R(z) = erfc(z) exp(z^2) = t H(t),  t = 3 / (3 + z),
// R ~ 1 / (sqrt(pi) z) for large z, so H is smooth in t; H is a least-squares fit of degree 8
// over z in [0.68, 10.2] (0.14 ulp; 1.7 u with float coefficients and Horner steps). R varies
// slowly (|z R'(z) / R(z)| < 1), so the rounded z and t cost it about a rounding each.
// Phi = E R / 2 for x <= -1 (relative accuracy in the left tail), 1 - E R / 2 for x >= 1.
// Between, where erfc's roundings (about 6 u in all) would weigh fully in a result that the
// kernels' error model (validation/activation.cpp) allows only 9 u, Phi = 1/2 + x S(x^2), S a
// least-squares fit of (Phi(x) - 1/2) / x of degree 6 in x^2 (0.5 ulp; Phi(-1) = 0.16 cancels
// by at most 3.2x).

struct NormalParts {
  V ax;           // |x| clamped at 15
  V near;         // Phi(x) for |x| < 1
  V tail_scaled;  // E R / 2 times 2^64: Phi(-|x|) for |x| >= 1, before its rounding to float
  V e_scaled;     // E times 2^64
};

HWY_INLINE NormalParts normal_parts(D d, V x) {
  // Past 15, E is below float's subnormals (exp(-112.5) < 2^-149) and R needs no larger z: the
  // clamps keep the infinities out of the arithmetic (the results take their limits).
  const V ax = clamp_above(d, hn::Abs(x), 15.0f);
  const V minus_half = hn::Set(d, -0.5f);
#if HWY_NATIVE_FMA
  // A fused multiply-add gives the rounding error of -|x| |x| / 2 exactly (-|x| / 2 is exact).
  const V minus_half_ax = hn::Mul(minus_half, ax);
  const V square_head = hn::Mul(minus_half_ax, ax);
  const V e_scaled =
      scaled_exp_of_sum(d, square_head, hn::MulSub(minus_half_ax, ax, square_head));
#else
  const hn::RebindToUnsigned<D> du;
  const V head = hn::BitCast(d, hn::And(hn::BitCast(du, ax), hn::Set(du, 0xFFFFF000u)));
  const V tail = hn::Sub(ax, head);
  // -h / 2 and -(|x| + h) / 2 are exact halvings, so -h^2 / 2 is exact and the tail's term is
  // rounded once in its product, as with the halving applied last.
  const V minus_half_head = hn::Mul(minus_half, head);
  const V e_scaled = scaled_exp_of_sum(d, hn::Mul(minus_half_head, head),
                                       hn::Mul(tail, hn::MulAdd(ax, minus_half, minus_half_head)));
#endif

  // t = 3 / (3 + z) = 1 / (1 + z / 3), z / 3 = |x| / (3 sqrt2) and the 1 in one rounding; z is
  // clamped at 10.2 (1 + z / 3 at 4.4).
  const V t = reciprocal(
      d, hn::Min(hn::MulAdd(ax, hn::Set(d, 0.23570226039551584f), hn::Set(d, 1.0f)),
                 hn::Set(d, 4.4f)));
  // H / 2 (its fitted coefficients halved, exactly), so that t H / 2 is one product.
  V half_h = hn::Set(d, -1.719261520e-02f);
  half_h = hn::MulAdd(half_h, t, hn::Set(d, 8.292442190e-03f));
  half_h = hn::MulAdd(half_h, t, hn::Set(d, 7.777587325e-02f));
  half_h = hn::MulAdd(half_h, t, hn::Set(d, -1.370434650e-02f));
  half_h = hn::MulAdd(half_h, t, hn::Set(d, 1.003023610e-01f));
  half_h = hn::MulAdd(half_h, t, hn::Set(d, 6.512659045e-02f));
  half_h = hn::MulAdd(half_h, t, hn::Set(d, 9.163730590e-02f));
  half_h = hn::MulAdd(half_h, t, hn::Set(d, 9.369853140e-02f));
  half_h = hn::MulAdd(half_h, t, hn::Set(d, 9.404822440e-02f));

  const V s = hn::Mul(x, x);
  V q = hn::Set(d, 5.367327276e-07f);
  q = hn::MulAdd(q, s, hn::Set(d, -9.272797797e-06f));
  q = hn::MulAdd(q, s, hn::Set(d, 1.153189296e-04f));
  q = hn::MulAdd(q, s, hn::Set(d, -1.187287737e-03f));
  q = hn::MulAdd(q, s, hn::Set(d, 9.973550215e-03f));
  q = hn::MulAdd(q, s, hn::Set(d, -6.649038196e-02f));
  q = hn::MulAdd(q, s, hn::Set(d, 3.989422917e-01f));

  return {ax, hn::MulAdd(x, q, hn::Set(d, 0.5f)), hn::Mul(e_scaled, hn::Mul(t, half_h)), e_scaled};
}

// Phi(x) from its parts.
HWY_INLINE V normal_cdf(D d, V x, const NormalParts& p) {
  const V one = hn::Set(d, 1.0f);
  const V half_erfc = hn::Mul(p.tail_scaled, hn::Set(d, kTwoToMinus64));
  const V far = hn::IfThenElse(hn::Lt(x, hn::Zero(d)), half_erfc, hn::Sub(one, half_erfc));
  return hn::IfThenElse(hn::Lt(p.ax, one), p.near, far);
}

struct GeluErf {
  static constexpr bool kOutputSlope = false;
  // x <= -1: -|x| times Phi still scaled by 2^64, so that a result below float's normal range
  // (from x = -13) is rounded once, not Phi first and then its product with x; |x| as clamped
  // in normal_parts (from -15 on the result is below float's subnormals). Otherwise x Phi, with
  // 1 - E R / 2 in one rounding for x >= 1. Phi's own select (normal_cdf) is not needed: the
  // x <= -1 lanes never take it, which spares a compare, a select and a clamp.
  HWY_INLINE V forward(D d, V x) const {
    const NormalParts p = normal_parts(d, x);
    const V one = hn::Set(d, 1.0f);
    const V left = hn::Mul(hn::Mul(p.ax, p.tail_scaled), hn::Set(d, -kTwoToMinus64));
    const V right_tail = hn::NegMulAdd(p.tail_scaled, hn::Set(d, kTwoToMinus64), one);
    const V right_cdf = hn::IfThenElse(hn::Lt(p.ax, one), p.near, right_tail);
    return keep_nan_past_clamp(
        x, hn::IfThenElse(hn::Le(x, hn::Set(d, -1.0f)), left, hn::Mul(x, right_cdf)));
  }
  // Phi(x) + x phi(x); phi is an exact 0 at the infinities.
  HWY_INLINE V slope(D d, V x) const {
    const NormalParts p = normal_parts(d, x);
    const V pdf = hn::Mul(p.e_scaled, hn::Set(d, kInvSqrt2Pi * kTwoToMinus64));
    return keep_nan_past_clamp(x, hn::MulAdd(finite_part(d, x), pdf, normal_cdf(d, x, p)));
  }
};

struct GeluTanh {
  static constexpr bool kOutputSlope = false;
  // 0.5 x (1 + tanh u) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), in the kernels'
  // order: no 1 + tanh that cancels for x << 0. Where x^3 overflows, 2u is +-inf and the sigmoid
  // takes it to exactly 0 or 1.
  HWY_INLINE static V two_u(D d, V x) {
    const V cubic = hn::MulAdd(hn::Mul(hn::Set(d, kGeluCubic), x), x, hn::Set(d, 1.0f));
    return hn::Mul(hn::Mul(hn::Set(d, 2.0f * kSqrt2OverPi), x), cubic);
  }
  HWY_INLINE V forward(D d, V x) const {
    return keep_nan_past_clamp(x, hn::Mul(finite_below(d, x), sigmoid_pair(d, two_u(d, x)).pos));
  }
  // s + 2 x s (1 - s) u'(x), s = sigmoid(2u). s (1 - s) is exactly 0 in float for |x| > 11,
  // where 2x and u'(x) may overflow (0 * inf = NaN): the second term takes x clamped to +-20,
  // which changes nothing where s (1 - s) is not 0.
  HWY_INLINE V slope(D d, V x) const {
    const SigmoidPair s = sigmoid_pair(d, two_u(d, x));
    const V clamped = hn::Min(hn::Max(x, hn::Set(d, -20.0f)), hn::Set(d, 20.0f));
    const V du = hn::Mul(hn::Set(d, kSqrt2OverPi),
                         hn::MulAdd(hn::Mul(hn::Set(d, 3.0f * kGeluCubic), clamped), clamped,
                                    hn::Set(d, 1.0f)));
    const V term = hn::Mul(hn::Mul(hn::Mul(s.pos, s.neg), hn::Add(clamped, clamped)), du);
    return keep_nan_past_clamp(x, hn::Add(s.pos, term));
  }
};

struct Silu {
  static constexpr bool kOutputSlope = false;
  HWY_INLINE V forward(D d, V x) const {
    return keep_nan_past_clamp(x, hn::Mul(finite_below(d, x), sigmoid_pair(d, x).pos));
  }
  // s (1 + x (1 - s)), with 1 - s = sigmoid(-x) from the pair rather than cancelled.
  HWY_INLINE V slope(D d, V x) const {
    const SigmoidPair s = sigmoid_pair(d, x);
    return keep_nan_past_clamp(
        x, hn::Mul(s.pos, hn::MulAdd(finite_part(d, x), s.neg, hn::Set(d, 1.0f))));
  }
};

template <class F>
HWY_INLINE Status with_activation(const ActivationOptions& options, F&& f) {
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
                "options.activation: unknown activation reached the CPU backend");
}

// ---- float array loops ------------------------------------------------------------------------

// A block of an input: its values (floats: the memory itself for f32, else the staging block;
// or one 16-bit type, converted in registers) and where its memory lies kPrefetchElements ahead.
template <class T>
struct In {
  const T* values;
  const char* ahead;
  std::size_t element_bytes;
  HWY_INLINE void prefetch(std::size_t i) const { hwy::Prefetch(ahead + i * element_bytes); }
};

// An input read where it lies, in its own type.
template <class T>
HWY_INLINE In<T> in_place(const T* at) {
  return {at, reinterpret_cast<const char*>(at + kPrefetchElements), sizeof(T)};
}

// Stores a whole vector: non-temporal (p vector-aligned) for a streamed output.
template <bool kStream, class T>
HWY_INLINE void store_vector(D d, V v, T* p) {
  if constexpr (kStream) {
    stream_floats(d, v, p);
  } else {
    store_floats(d, v, p);
  }
}

// Whether map_unary and map_binary fetch `out` ahead of their stores (fetches_output_ahead,
// host/cpu/prefetch_hint.h): a float output, computed in memory rather than in a staging block.
// On the Xeon VM (2 threads, 1M elements, alternating processes, medians of three), against no
// fetch: f32 forward 1.07-1.20x (relu 1.20x, leaky relu 1.16x), f32 backward 1.01-1.10x (2 KiB
// ahead: 1.0-1.17x); bf16 outputs from no gain to 0.91x (sigmoid forward).
template <bool kStream>
HWY_INLINE bool fetches_output(DType out) {
  return fetches_output_ahead(kStream, out == DType::f32);
}

// out[i] = f(a[i]) for count elements; the arrays may be the same (store_row loads a vector's,
// or a pair's, elements before it stores them). `fetch_out`: see fetches_output.
template <bool kStream, class T, class F>
HWY_INLINE void map_unary(In<T> a_in, T* out, std::size_t count, bool fetch_out, const F& f) {
  const D d;
  store_row(d, out, static_cast<std::int64_t>(count), kStream,
            [&](std::int64_t i, std::int64_t n) {
              a_in.prefetch(static_cast<std::size_t>(i));
              if (fetch_out) fetch_output_ahead(out + i);
              return f(load_part(d, a_in.values + i, n));
            });
}

template <bool kStream, class T, class F>
HWY_INLINE void map_binary(In<T> a_in, In<T> b_in, T* out, std::size_t count, bool fetch_out,
                           const F& f) {
  const D d;
  store_row(d, out, static_cast<std::int64_t>(count), kStream,
            [&](std::int64_t i, std::int64_t n) {
              a_in.prefetch(static_cast<std::size_t>(i));
              b_in.prefetch(static_cast<std::size_t>(i));
              if (fetch_out) fetch_output_ahead(out + i);
              return f(load_part(d, a_in.values + i, n), load_part(d, b_in.values + i, n));
            });
}

// ---- operands: f32 in place, 16-bit through a staging block -----------------------------------

struct Source {
  const void* data;
  DType dtype;
  std::int64_t row_stride;
};
struct Sink {
  void* data;
  DType dtype;
  std::int64_t row_stride;
  bool stream = false;     // stored with non-temporal stores
  std::int64_t lead = 0;   // streamed: the elements before the first vector-aligned one
};

// A sink for rows x n elements, streamed when they are streaming_output_bytes() or more and taken
// as one dense run (dense: every operand's rows are).
Sink make_sink(void* data, DType dtype, std::int64_t row_stride, std::int64_t rows, std::int64_t n,
               bool dense) {
  Sink sink{data, dtype, row_stride};
  sink.stream = dense && rows * n * dtype_size(dtype) >= streaming_output_bytes();
  if (sink.stream) {
    sink.lead = with_storage(dtype, [&](auto* tag) {
      return streamed_lead(static_cast<const std::remove_pointer_t<decltype(tag)>*>(data));
    });
  }
  return sink;
}

// Calls body(std::bool_constant<s is a streamed f32 sink>), for the loops' compile-time store.
template <class Body>
HWY_INLINE void with_store_kind(const Sink& s, const Body& body) {
  if (s.stream && s.dtype == DType::f32) {
    body(std::true_type{});
  } else {
    body(std::false_type{});
  }
}

// For operands all of one 16-bit dtype: calls body(T* tag, std::bool_constant<s streamed>).
template <class Body>
HWY_INLINE void with_one_16bit_type(DType dtype, const Sink& s, const Body& body) {
  const auto with_stream = [&](auto* tag) {
    if (s.stream) {
      body(tag, std::true_type{});
    } else {
      body(tag, std::false_type{});
    }
  };
  if (dtype == DType::bf16) {
    with_stream(static_cast<Bf16*>(nullptr));
  } else {
    with_stream(static_cast<Half*>(nullptr));
  }
}

template <class T>
HWY_INLINE void widen(const T* from, float* to, std::size_t count) {
  const D d;
  const std::size_t lanes = hn::Lanes(d);
  std::size_t i = 0;
  for (; i + lanes <= count; i += lanes) hn::StoreU(load_floats(d, from + i), d, to + i);
  if (i < count) {
    const std::size_t rest = count - i;
    hn::StoreU(load_floats_partial(d, from + i, rest), d, to + i);  // staging has room
  }
}

template <class T>
HWY_INLINE void narrow(const float* from, T* to, std::size_t count) {
  const D d;
  const std::size_t lanes = hn::Lanes(d);
  std::size_t i = 0;
  for (; i + lanes <= count; i += lanes) store_floats(d, hn::LoadU(d, from + i), to + i);
  if (i < count) {
    const std::size_t rest = count - i;
    store_floats_partial(d, hn::LoadU(d, from + i), to + i, rest);
  }
}

// A staging block with a vector's room past kBlock, so a partial last vector may be read and
// written whole.
struct Staging {
  HWY_ALIGN float values[kBlock + HWY_MAX_BYTES / sizeof(float)];
};

// The floats of `count` elements of `s` from (row, col): the memory itself for f32. Past a
// row's end the prefetches ask for lines that may go unused (a prefetch never faults).
HWY_INLINE In<float> read(const Source& s, std::int64_t row, std::int64_t col, std::size_t count,
                   Staging& staging) {
  const std::int64_t offset = row * s.row_stride + col;
  return with_storage(s.dtype, [&](auto* tag) -> In<float> {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* at = static_cast<const T*>(s.data) + offset;
    const auto* ahead = reinterpret_cast<const char*>(at + kPrefetchElements);
    if constexpr (std::is_same_v<T, float>) {
      return {at, ahead, sizeof(T)};
    } else {
      widen(at, staging.values, count);
      return {staging.values, ahead, sizeof(T)};
    }
  });
}

// Where to compute `count` elements of `s` from (row, col): the memory itself for f32.
HWY_INLINE float* target(const Sink& s, std::int64_t row, std::int64_t col, Staging& staging) {
  if (s.dtype == DType::f32) return static_cast<float*>(s.data) + (row * s.row_stride + col);
  return staging.values;
}

// Stores a staged result (nothing to do for f32, computed in place); a streamed 16-bit sink
// goes through one more block in L1, narrowed, to be copied out with non-temporal stores.
HWY_INLINE void write(const Sink& s, std::int64_t row, std::int64_t col, std::size_t count,
                      const Staging& staging) {
  const std::int64_t offset = row * s.row_stride + col;
  with_storage(s.dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if constexpr (!std::is_same_v<T, float>) {
      T* at = static_cast<T*>(s.data) + offset;
      if (s.stream) {
        HWY_ALIGN T narrowed[kBlock + HWY_MAX_BYTES / sizeof(T)];
        narrow(staging.values, narrowed, count);
        stream_bytes(narrowed, at, count * sizeof(T));
      } else {
        narrow(staging.values, at, count);
      }
    }
  });
}

// Runs block(first, row, col, count) over the rows x n elements in blocks of at most kBlock
// within one row, tasks of kTaskElements elements in parallel; `first` is the dense index of the
// block's first element. Rows whose operands are all dense are taken as one long row. With a
// lead (< kBlock), the first task is the lead's elements alone and the others start `lead` plus a
// multiple of the task size in, so that their blocks start `lead` plus a multiple of kBlock in.
template <class Block>
void for_each_block(std::int64_t rows, std::int64_t n, bool dense, std::int64_t lead,
                    const Block& block) {
  if (rows == 0 || n == 0) return;
  if (dense) {
    n *= rows;
    rows = 1;
  }
  const std::int64_t total = rows * n;
  const std::int64_t per_task = kTaskElements;
  // Task t covers [t K - shift, (t + 1) K - shift), clamped to [0, total).
  const std::int64_t shift = lead > 0 ? per_task - lead : 0;
  const std::int64_t tasks = (total + shift + per_task - 1) / per_task;
  parallel_for(tasks, [&](std::int64_t task) {
    const std::int64_t begin = std::max<std::int64_t>(task * per_task - shift, 0);
    const std::int64_t end = std::min((task + 1) * per_task - shift, total);
    std::int64_t row = begin / n;
    std::int64_t col = begin - row * n;
    for (std::int64_t at = begin; at < end;) {
      std::int64_t count = n - col;
      if (count > end - at) count = end - at;
      if (count > kBlock) count = kBlock;
      block(at, row, col, static_cast<std::size_t>(count));
      at += count;
      col += count;
      if (col == n) {
        col = 0;
        ++row;
      }
    }
    hwy::FlushStream();  // the streamed stores, ordered before the pool reports the task done
  });
}

bool all_dense(std::int64_t rows, std::int64_t n, std::initializer_list<std::int64_t> strides) {
  if (rows <= 1) return true;
  for (std::int64_t stride : strides)
    if (stride != n) return false;
  return true;
}

// ---- relu mask --------------------------------------------------------------------------------

// Appends bits to a run of mask words, low bit first; a task starts on a word boundary.
class MaskWriter {
 public:
  explicit MaskWriter(std::uint32_t* word) : word_(word) {}
  void append(std::uint64_t bits, int count) {
    pending_ |= bits << pending_count_;
    pending_count_ += count;
    if (pending_count_ >= 32) {
      *word_++ = static_cast<std::uint32_t>(pending_);
      pending_ >>= 32;
      pending_count_ -= 32;
    }
  }
  // The last, partial word of the mask, its bits past the elements 0.
  void finish() {
    if (pending_count_ > 0) *word_ = static_cast<std::uint32_t>(pending_);
  }

 private:
  std::uint32_t* word_;
  std::uint64_t pending_ = 0;
  int pending_count_ = 0;
};

HWY_INLINE void append_positive_bits(const float* x, std::size_t count, MaskWriter& mask) {
  const D d;
  const std::size_t lanes = hn::Lanes(d);
  std::size_t i = 0;
  for (; i + lanes <= count; i += lanes) {
    std::uint8_t bytes[8] = {};
    hn::StoreMaskBits(d, hn::Gt(hn::LoadU(d, x + i), hn::Zero(d)), bytes);
    std::uint64_t bits = 0;
    std::memcpy(&bits, bytes, sizeof bits);
    mask.append(bits, static_cast<int>(lanes));
  }
  for (; i < count; ++i) mask.append(x[i] > 0.0f ? 1u : 0u, 1);
}

Status relu_forward_with_mask(const ActivationForwardArgs& args) {
  const Source x{args.x, args.x_dtype, args.x_row_stride};
  const Sink y{args.y, args.y_dtype, args.y_row_stride};
  const std::int64_t n = args.n, total = args.rows * args.n;
  // Tasks by mask words, walking the (possibly strided) rows element by element.
  const std::int64_t tasks = (total + kTaskElements - 1) / kTaskElements;
  const Relu relu;
  parallel_for(tasks, [&](std::int64_t task) {
    const D d;
    const std::int64_t begin = task * kTaskElements;
    const std::int64_t end = begin + kTaskElements < total ? begin + kTaskElements : total;
    MaskWriter mask(args.relu_mask + begin / 32);
    std::int64_t row = begin / n;
    std::int64_t col = begin - row * n;
    Staging x_staging, y_staging;
    for (std::int64_t at = begin; at < end;) {
      std::int64_t count = n - col;
      if (count > end - at) count = end - at;
      if (count > kBlock) count = kBlock;
      const auto size = static_cast<std::size_t>(count);
      const In<float> in = read(x, row, col, size, x_staging);
      // The bits first: in place, y overwrites x.
      append_positive_bits(in.values, size, mask);
      float* out = target(y, row, col, y_staging);
      map_unary<false>(in, out, size, fetches_output<false>(y.dtype),
                       [&](V v) { return relu.forward(d, v); });
      write(y, row, col, size, y_staging);
      at += count;
      col += count;
      if (col == n) {
        col = 0;
        ++row;
      }
    }
    mask.finish();
  });
  return {};
}

Status relu_backward_from_mask(const ActivationBackwardArgs& args) {
  const auto* words = static_cast<const std::uint32_t*>(args.saved);
  const std::int64_t word_count = relu_mask_words(args.rows * args.n);
  const Source dy{args.dy, args.dy_dtype, args.dy_row_stride};
  const Sink dx{args.dx, args.dx_dtype, args.dx_row_stride};
  for_each_block(
      args.rows, args.n, all_dense(args.rows, args.n, {args.dy_row_stride, args.dx_row_stride}), 0,
      [&](std::int64_t first, std::int64_t row, std::int64_t col, std::size_t count) {
        const D d;
        const hn::RebindToUnsigned<D> du;
        const std::size_t lanes = hn::Lanes(d);
        const auto lane_bit = hn::Shl(hn::Set(du, 1u), hn::Iota(du, 0));
        const V one = hn::Set(d, 1.0f);
        Staging dy_staging, dx_staging;
        const In<float> dy_block = read(dy, row, col, count, dy_staging);
        const float* g = dy_block.values;
        float* out = target(dx, row, col, dx_staging);
        // The lanes' bits from a 64-bit window at bit `first + i` (lanes <= 16 < 33).
        const auto bits_at = [&](std::int64_t bit) {
          const std::int64_t word = bit / 32;
          std::uint64_t window = words[word];
          if (word + 1 < word_count) window |= std::uint64_t{words[word + 1]} << 32;
          return static_cast<std::uint32_t>((window >> (bit % 32)) &
                                            ((std::uint64_t{1} << lanes) - 1));
        };
        // dy times 1 or 0 (not a select): dy * 0 is NaN for an infinite or NaN dy, as the
        // reference's product.
        const auto slope = [&](std::int64_t bit) {
          return hn::IfThenElseZero(hn::RebindMask(d, hn::TestBit(hn::Set(du, bits_at(bit)),
                                                                  lane_bit)),
                                    one);
        };
        std::size_t i = 0;
        for (; i + lanes <= count; i += lanes) {
          dy_block.prefetch(i);
          hn::StoreU(hn::Mul(hn::LoadU(d, g + i), slope(first + static_cast<std::int64_t>(i))),
                     d, out + i);
        }
        if (i < count) {
          const std::size_t rest = count - i;
          const V v = hn::Mul(load_floats_partial(d, g + i, rest),
                              slope(first + static_cast<std::int64_t>(i)));
          store_floats_partial(d, v, out + i, rest);
        }
        write(dx, row, col, count, dx_staging);
      });
  return {};
}

// ---- relu on 16-bit bits -----------------------------------------------------------------------
//
// relu of a 16-bit float into the same dtype is exact, so it needs no conversion: read as int16,
// -0, the negative numbers and -inf are the values up to -inf's bits (0xFF80 bf16, 0xFC00 f16:
// -128 and -1024), which become +0; the negative NaNs (up to 0xFFFF, -1) lie above them and, like
// every non-negative value, pass unchanged. A compare and a select per 16 elements, where the
// float path converts both ways: in cache on one core that made bf16 relu 0.9x oneDNN's.
template <bool kStream, class T>
HWY_INLINE void relu_bits(const T* x, T* y, std::size_t count) {
  // The float vector's width in 16-bit lanes: the streamed blocks are aligned to it.
  const hn::Rebind<std::int16_t, D> d16;
  const std::size_t lanes = hn::Lanes(d16);
  constexpr std::int16_t kLastZeroed = std::is_same_v<T, Bf16> ? -128 : -1024;
  const auto above_zeroed = hn::Set(d16, static_cast<std::int16_t>(kLastZeroed + 1));
  const auto* in = reinterpret_cast<const std::int16_t*>(x);
  auto* out = reinterpret_cast<std::int16_t*>(y);
  std::size_t i = 0;
  for (; i + lanes <= count; i += lanes) {
    const auto v = hn::LoadU(d16, in + i);
    const auto r = hn::IfThenZeroElse(hn::Lt(v, above_zeroed), v);
    // Streamed where stream_floats streams the 16-bit types (whole registers, AVX2 on).
    if constexpr (kStream && ACTLOSS_CPU_F16_VECTOR) {
      hn::Stream(r, d16, out + i);
    } else {
      hn::StoreU(r, d16, out + i);
    }
  }
  for (; i < count; ++i) out[i] = in[i] <= kLastZeroed ? std::int16_t{0} : in[i];
}

// ---- entry points per target ------------------------------------------------------------------

Status ActivationForward(const ActivationForwardArgs& args, const ActivationOptions& options) {
  if (args.relu_mask != nullptr) return relu_forward_with_mask(args);
  const Source x{args.x, args.x_dtype, args.x_row_stride};
  const bool dense = all_dense(args.rows, args.n, {args.x_row_stride, args.y_row_stride});
  const Sink y = make_sink(args.y, args.y_dtype, args.y_row_stride, args.rows, args.n, dense);
  if (args.x_dtype == args.y_dtype && args.x_dtype != DType::f32) {
    if (options.activation == Activation::relu) {
      with_one_16bit_type(args.x_dtype, y, [&](auto* tag, auto stream) {
        using T = std::remove_pointer_t<decltype(tag)>;
        for_each_block(args.rows, args.n, dense, y.lead,
                       [&](std::int64_t, std::int64_t row, std::int64_t col, std::size_t count) {
                         const T* x_row = static_cast<const T*>(args.x) + row * args.x_row_stride;
                         T* y_row = static_cast<T*>(args.y) + row * args.y_row_stride;
                         relu_bits<stream()>(x_row + col, y_row + col, count);
                       });
      });
      return {};
    }
    return with_activation(options, [&](auto act) -> Status {
      with_one_16bit_type(args.x_dtype, y, [&](auto* tag, auto stream) {
        using T = std::remove_pointer_t<decltype(tag)>;
        for_each_block(args.rows, args.n, dense, y.lead,
                       [&](std::int64_t, std::int64_t row, std::int64_t col, std::size_t count) {
                         const D d;
                         const T* x_row = static_cast<const T*>(args.x) + row * args.x_row_stride;
                         map_unary<stream()>(
                             in_place(x_row + col),
                             static_cast<T*>(args.y) + row * args.y_row_stride + col, count,
                             fetches_output<stream()>(args.y_dtype),
                             [&](V v) { return act.forward(d, v); });
                       });
      });
      return {};
    });
  }
  return with_activation(options, [&](auto act) -> Status {
    with_store_kind(y, [&](auto stream) {
      for_each_block(args.rows, args.n, dense, y.lead,
                     [&](std::int64_t, std::int64_t row, std::int64_t col, std::size_t count) {
                       const D d;
                       Staging x_staging, y_staging;
                       const In<float> in = read(x, row, col, count, x_staging);
                       float* out = target(y, row, col, y_staging);
                       map_unary<stream()>(in, out, count,
                                           fetches_output<stream()>(y.dtype),
                                           [&](V v) { return act.forward(d, v); });
                       write(y, row, col, count, y_staging);
                     });
    });
    return {};
  });
}

Status ActivationBackward(const ActivationBackwardArgs& args, const ActivationOptions& options) {
  if (args.saved_kind == SavedTensor::relu_mask) return relu_backward_from_mask(args);
  const Source saved{args.saved, args.saved_dtype, args.saved_row_stride};
  const Source dy{args.dy, args.dy_dtype, args.dy_row_stride};
  const bool from_output = args.saved_kind == SavedTensor::output;
  const bool dense = all_dense(args.rows, args.n,
                               {args.saved_row_stride, args.dy_row_stride, args.dx_row_stride});
  const Sink dx = make_sink(args.dx, args.dx_dtype, args.dx_row_stride, args.rows, args.n, dense);
  return with_activation(options, [&](auto act) -> Status {
    using Act = decltype(act);
    if (from_output && !Act::kOutputSlope) {
      return Status(StatusCode::internal, "saved_kind",
                    "saved_kind: the saved output cannot give this activation's derivative "
                    "(validation should have refused it)");
    }
    if (args.saved_dtype == args.dx_dtype && args.dy_dtype == args.dx_dtype &&
        args.dx_dtype != DType::f32) {
      with_one_16bit_type(args.dx_dtype, dx, [&](auto* tag, auto stream) {
        using T = std::remove_pointer_t<decltype(tag)>;
        for_each_block(args.rows, args.n, dense, dx.lead,
                       [&](std::int64_t, std::int64_t row, std::int64_t col, std::size_t count) {
                         const D d;
                         const In<T> s = in_place(static_cast<const T*>(args.saved) +
                                                  row * args.saved_row_stride + col);
                         const T* dy_row =
                             static_cast<const T*>(args.dy) + row * args.dy_row_stride;
                         const In<T> g = in_place(dy_row + col);
                         T* out = static_cast<T*>(args.dx) + row * args.dx_row_stride + col;
                         if constexpr (Act::kOutputSlope) {
                           if (from_output) {
                             return map_binary<stream()>(s, g, out, count,
                                                         fetches_output<stream()>(args.dx_dtype),
                                                         [&](V sv, V gv) {
                               return hn::Mul(gv, act.slope_from_output(d, sv));
                             });
                           }
                         }
                         map_binary<stream()>(s, g, out, count,
                                              fetches_output<stream()>(args.dx_dtype),
                                              [&](V sv, V gv) {
                                                return hn::Mul(gv, act.slope(d, sv));
                                              });
                       });
      });
      return {};
    }
    with_store_kind(dx, [&](auto stream) {
      for_each_block(args.rows, args.n, dense, dx.lead,
                     [&](std::int64_t, std::int64_t row, std::int64_t col, std::size_t count) {
                       const D d;
                       Staging s_staging, dy_staging, dx_staging;
                       const In<float> s = read(saved, row, col, count, s_staging);
                       const In<float> g = read(dy, row, col, count, dy_staging);
                       float* out = target(dx, row, col, dx_staging);
                       const bool fetch_out = fetches_output<stream()>(dx.dtype);
                       if constexpr (Act::kOutputSlope) {
                         if (from_output) {
                           map_binary<stream()>(s, g, out, count, fetch_out, [&](V sv, V gv) {
                             return hn::Mul(gv, act.slope_from_output(d, sv));
                           });
                           return write(dx, row, col, count, dx_staging);
                         }
                       }
                       map_binary<stream()>(s, g, out, count, fetch_out, [&](V sv, V gv) {
                         return hn::Mul(gv, act.slope(d, sv));
                       });
                       write(dx, row, col, count, dx_staging);
                     });
    });
    return {};
  });
}

Status SwigluForward(const SwigluForwardArgs& args) {
  const Source gate{args.gate, args.gate_dtype, args.gate_row_stride};
  const Source up{args.up, args.up_dtype, args.up_row_stride};
  const bool dense =
      all_dense(args.rows, args.n, {args.gate_row_stride, args.up_row_stride, args.y_row_stride});
  const Sink y = make_sink(args.y, args.y_dtype, args.y_row_stride, args.rows, args.n, dense);
  const Silu silu;
  with_store_kind(y, [&](auto stream) {
    for_each_block(args.rows, args.n, dense, y.lead,
                   [&](std::int64_t, std::int64_t row, std::int64_t col, std::size_t count) {
                     const D d;
                     Staging g_staging, u_staging, y_staging;
                     const In<float> g = read(gate, row, col, count, g_staging);
                     const In<float> u = read(up, row, col, count, u_staging);
                     float* out = target(y, row, col, y_staging);
                     map_binary<stream()>(g, u, out, count,
                                          fetches_output<stream()>(y.dtype),
                                          [&](V gv, V uv) {
                       return hn::Mul(silu.forward(d, gv), uv);
                     });
                     write(y, row, col, count, y_staging);
                   });
  });
  return {};
}

Status SwigluBackward(const SwigluBackwardArgs& args) {
  const Source gate{args.gate, args.gate_dtype, args.gate_row_stride};
  const Source up{args.up, args.up_dtype, args.up_row_stride};
  const Source dy{args.dy, args.dy_dtype, args.dy_row_stride};
  const bool dense =
      all_dense(args.rows, args.n,
                {args.gate_row_stride, args.up_row_stride, args.dy_row_stride,
                 args.d_gate_row_stride, args.d_up_row_stride});
  Sink d_gate =
      make_sink(args.d_gate, args.d_gate_dtype, args.d_gate_row_stride, args.rows, args.n, dense);
  Sink d_up = make_sink(args.d_up, args.d_up_dtype, args.d_up_row_stride, args.rows, args.n, dense);
  // One loop stores both: streamed together, from the same aligned element on, or not at all.
  if (!d_gate.stream || !d_up.stream || d_gate.dtype != d_up.dtype || d_gate.lead != d_up.lead) {
    d_gate.stream = d_up.stream = false;
    d_gate.lead = d_up.lead = 0;
  }
  with_store_kind(d_gate, [&](auto stream) {
    for_each_block(args.rows, args.n, dense, d_gate.lead,
                   [&](std::int64_t, std::int64_t row, std::int64_t col, std::size_t count) {
                     const D d;
                     const V one = hn::Set(d, 1.0f);
                     Staging g_staging, u_staging, dy_staging, dg_staging, du_staging;
                     const In<float> g_block = read(gate, row, col, count, g_staging);
                     const In<float> u_block = read(up, row, col, count, u_staging);
                     const In<float> dy_block = read(dy, row, col, count, dy_staging);
                     const float* g = g_block.values;
                     const float* u = u_block.values;
                     const float* grad = dy_block.values;
                     float* dg = target(d_gate, row, col, dg_staging);
                     float* du = target(d_up, row, col, du_staging);
                     // One exp serves silu and its slope; every input of an element is loaded
                     // before either output is stored (d_gate may be gate, d_up up).
                     const auto step = [&](V gv, V uv, V dyv, V& dgv, V& duv) {
                       const SigmoidPair s = sigmoid_pair(d, gv);
                       const V silu =
                           keep_nan_past_clamp(gv, hn::Mul(finite_below(d, gv), s.pos));
                       const V slope = keep_nan_past_clamp(
                           gv, hn::Mul(s.pos, hn::MulAdd(finite_part(d, gv), s.neg, one)));
                       duv = hn::Mul(dyv, silu);
                       dgv = hn::Mul(hn::Mul(dyv, uv), slope);
                     };
                     const std::size_t lanes = hn::Lanes(d);
                     std::size_t i = 0;
                     V dgv, duv;
                     for (; i + lanes <= count; i += lanes) {
                       g_block.prefetch(i);
                       u_block.prefetch(i);
                       dy_block.prefetch(i);
                       step(hn::LoadU(d, g + i), hn::LoadU(d, u + i), hn::LoadU(d, grad + i), dgv,
                            duv);
                       store_vector<stream()>(d, dgv, dg + i);
                       store_vector<stream()>(d, duv, du + i);
                     }
                     if (i < count) {
                       const std::size_t rest = count - i;
                       step(load_floats_partial(d, g + i, rest),
                            load_floats_partial(d, u + i, rest),
                            load_floats_partial(d, grad + i, rest), dgv, duv);
                       store_floats_partial(d, dgv, dg + i, rest);
                       store_floats_partial(d, duv, du + i, rest);
                     }
                     write(d_gate, row, col, count, dg_staging);
                     write(d_up, row, col, count, du_staging);
                   });
  });
  return {};
}

}  // namespace

// Per-target entry points (outside the anonymous namespace for HWY_EXPORT).
Status activation_forward_simd(const ActivationForwardArgs& args,
                               const ActivationOptions& options) {
  return ActivationForward(args, options);
}
Status activation_backward_simd(const ActivationBackwardArgs& args,
                                const ActivationOptions& options) {
  return ActivationBackward(args, options);
}
Status swiglu_forward_simd(const SwigluForwardArgs& args) { return SwigluForward(args); }
Status swiglu_backward_simd(const SwigluBackwardArgs& args) { return SwigluBackward(args); }

}  // namespace actloss::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace actloss::cpu {
HWY_EXPORT(activation_forward_simd);
HWY_EXPORT(activation_backward_simd);
HWY_EXPORT(swiglu_forward_simd);
HWY_EXPORT(swiglu_backward_simd);
}  // namespace actloss::cpu

namespace actloss::detail {

// The thread pool may fail to start a thread (std::system_error); that becomes a Status.
std::optional<Status> cpu_activation_forward(const ActivationForwardArgs& args,
                                             const ActivationOptions& options) {
  Status status;
  const Status ran = host::run_cpu("activation_forward", [&] {
    status = HWY_DYNAMIC_DISPATCH(cpu::activation_forward_simd)(args, options);
  });
  return ran.ok() ? status : ran;
}
std::optional<Status> cpu_activation_backward(const ActivationBackwardArgs& args,
                                              const ActivationOptions& options) {
  Status status;
  const Status ran = host::run_cpu("activation_backward", [&] {
    status = HWY_DYNAMIC_DISPATCH(cpu::activation_backward_simd)(args, options);
  });
  return ran.ok() ? status : ran;
}
std::optional<Status> cpu_swiglu_forward(const SwigluForwardArgs& args) {
  Status status;
  const Status ran = host::run_cpu("swiglu_forward", [&] {
    status = HWY_DYNAMIC_DISPATCH(cpu::swiglu_forward_simd)(args);
  });
  return ran.ok() ? status : ran;
}
std::optional<Status> cpu_swiglu_backward(const SwigluBackwardArgs& args) {
  Status status;
  const Status ran = host::run_cpu("swiglu_backward", [&] {
    status = HWY_DYNAMIC_DISPATCH(cpu::swiglu_backward_simd)(args);
  });
  return ran.ok() ? status : ran;
}

}  // namespace actloss::detail
#endif  // HWY_ONCE
