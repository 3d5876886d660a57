// Per-target helpers of the CPU backend: typed loads and stores of float32 vectors from and to
// the API's dtypes, rounding once (nearest even) on the way out. Included by every host/cpu file
// compiled once per Highway target (foreach_target), hence the toggling include guard.
#if defined(ACTLOSS_HOST_CPU_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ACTLOSS_HOST_CPU_SIMD_INL_H_
#undef ACTLOSS_HOST_CPU_SIMD_INL_H_
#else
#define ACTLOSS_HOST_CPU_SIMD_INL_H_
#endif

#include <hwy/cache_control.h>
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#include <cstdint>
#include <cstring>

#include "host/cpu/bf16_conversion.h"
#include "host/cpu/prefetch_hint.h"
#include "host/half.h"

// For the per-vector lambdas of a row loop: GCC calls a lambda out of line, once per vector,
// when it has several call sites (the whole vectors and the partial ones at either end), which
// costs up to half of a loop's speed. The sanitizer presets define it empty: there the forced
// copies tripled host/cpu/cross_entropy.cpp's compile time (369 s against 115 at -O1, ASan +
// UBSan), and speed does not matter.
#ifndef ACTLOSS_VECTOR_BODY
#define ACTLOSS_VECTOR_BODY __attribute__((always_inline))
#endif

HWY_BEFORE_NAMESPACE();
namespace actloss::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using FloatTag = hn::ScalableTag<float>;
using FloatVec = hn::Vec<FloatTag>;

// Storage types of DType::f32, f16 and bf16 (raw bits for the 16-bit ones).
struct Bf16 {
  std::uint16_t bits;
};
struct Half {
  std::uint16_t bits;
};

// Calls body(T* tag), T the storage type of `dtype` (the pointer is null), so one templated
// loop serves the three dtypes without a branch per element.
template <class Body>
HWY_INLINE decltype(auto) with_storage(DType dtype, Body&& body) {
  switch (dtype) {
    case DType::f16: return body(static_cast<Half*>(nullptr));
    case DType::bf16: return body(static_cast<Bf16*>(nullptr));
    case DType::f32:
    default: return body(static_cast<float*>(nullptr));
  }
}

// F16C converts exactly in both directions; Highway's emulation on older targets truncates and
// saturates, so without F16C the 16-bit floats go through the scalar conversions.
#undef ACTLOSS_CPU_F16_VECTOR
#if HWY_TARGET <= HWY_AVX2 && HWY_ARCH_X86
#define ACTLOSS_CPU_F16_VECTOR 1
#else
#define ACTLOSS_CPU_F16_VECTOR 0
#endif

// AVX512_BF16's float-to-bfloat16 conversion, on the targets whose vectors are 16 floats in a
// 512-bit register, by GCC's or Clang's inline assembly.
#undef ACTLOSS_CPU_BF16_INSTRUCTION
#if HWY_TARGET <= HWY_AVX3 && HWY_ARCH_X86_64 && (defined(__GNUC__) || defined(__clang__))
#define ACTLOSS_CPU_BF16_INSTRUCTION 1
#else
#define ACTLOSS_CPU_BF16_INSTRUCTION 0
#endif

HWY_INLINE FloatVec load_floats(FloatTag d, const float* p) { return hn::LoadU(d, p); }

HWY_INLINE FloatVec load_floats(FloatTag d, const Bf16* p) {
  const hn::Rebind<std::uint16_t, FloatTag> d16;
  const hn::RebindToUnsigned<FloatTag> d32;
  const auto bits = hn::PromoteTo(d32, hn::LoadU(d16, reinterpret_cast<const std::uint16_t*>(p)));
  return hn::BitCast(d, hn::ShiftLeft<16>(bits));
}

HWY_INLINE FloatVec load_floats(FloatTag d, const Half* p) {
#if ACTLOSS_CPU_F16_VECTOR
  const hn::Rebind<hwy::float16_t, FloatTag> d16;
  return hn::PromoteTo(d, hn::LoadU(d16, reinterpret_cast<const hwy::float16_t*>(p)));
#else
  HWY_ALIGN float widened[hn::MaxLanes(FloatTag())];
  for (size_t i = 0; i < hn::Lanes(d); ++i) widened[i] = host::half_bits_to_float(p[i].bits);
  return hn::Load(d, widened);
#endif
}

HWY_INLINE void store_floats(FloatTag d, FloatVec v, float* p) { hn::StoreU(v, d, p); }

using Bf16BitsTag = hn::Rebind<std::uint16_t, FloatTag>;

// v's bfloat16 bits: round to nearest even on the bits; a NaN keeps its sign and top payload
// bits, made quiet.
HWY_INLINE hn::Vec<Bf16BitsTag> to_bf16_bits(FloatVec v) {
#if ACTLOSS_CPU_BF16_INSTRUCTION
  // One instruction where the processor has it and no lane is denormal (which it would flush to
  // zero): host/cpu/bf16_conversion.h. Inline assembly, since Highway's AVX-512 targets do not
  // enable AVX512_BF16 for the compiler. Category 0x20 of vfpclassps: denormal.
  if (converts_bf16_in_hardware() && _mm512_fpclass_ps_mask(v.raw, 0x20) == 0) {
    __m256i bits;
    __asm__("vcvtneps2bf16 %1, %0" : "=v"(bits) : "v"(v.raw));
    return hn::Vec<Bf16BitsTag>{bits};
  }
#endif
  const hn::RebindToUnsigned<FloatTag> du;
  const hn::RebindToSigned<FloatTag> di;
  const auto bits = hn::BitCast(du, v);
  const auto odd = hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1));
  const auto rounded = hn::ShiftRight<16>(hn::Add(bits, hn::Add(hn::Set(du, 0x7FFF), odd)));
  const auto quiet_nan = hn::Or(hn::ShiftRight<16>(bits), hn::Set(du, 0x40));
  const auto narrowed = hn::IfThenElse(hn::RebindMask(du, hn::IsNaN(v)), quiet_nan, rounded);
  return hn::DemoteTo(Bf16BitsTag(), hn::BitCast(di, narrowed));
}

HWY_INLINE void store_floats(FloatTag, FloatVec v, Bf16* p) {
  hn::StoreU(to_bf16_bits(v), Bf16BitsTag(), reinterpret_cast<std::uint16_t*>(p));
}

HWY_INLINE void store_floats(FloatTag d, FloatVec v, Half* p) {
#if ACTLOSS_CPU_F16_VECTOR
  const hn::Rebind<hwy::float16_t, FloatTag> d16;
  hn::StoreU(hn::DemoteTo(d16, v), d16, reinterpret_cast<hwy::float16_t*>(p));
#else
  HWY_ALIGN float values[hn::MaxLanes(FloatTag())];
  hn::Store(v, d, values);
  for (size_t i = 0; i < hn::Lanes(d); ++i) p[i].bits = host::float_to_half_bits(values[i]);
#endif
}

// The first `count` (< Lanes) elements, the other lanes 0.
template <class T>
HWY_INLINE FloatVec load_floats_partial(FloatTag d, const T* p, size_t count) {
  HWY_ALIGN T staged[hn::MaxLanes(FloatTag())];
  std::memset(staged, 0, sizeof staged);
  std::memcpy(staged, p, count * sizeof(T));
  return load_floats(d, staged);
}

// `count` (<= Lanes) elements at p as floats: a whole vector, or the partial one at a row's end.
template <class T>
HWY_INLINE FloatVec load_part(FloatTag d, const T* p, std::int64_t count) {
  if (count == static_cast<std::int64_t>(hn::Lanes(d))) return load_floats(d, p);
  return load_floats_partial(d, p, static_cast<size_t>(count));
}

// Stores the first `count` (< Lanes) lanes; nothing past them is touched.
template <class T>
HWY_INLINE void store_floats_partial(FloatTag d, FloatVec v, T* p, size_t count) {
  HWY_ALIGN T staged[hn::MaxLanes(FloatTag())];
  store_floats(d, v, staged);
  std::memcpy(p, staged, count * sizeof(T));
}

// ---- Memory traffic --------------------------------------------------------------------------

// A line of the cross-entropy's next row, asked for while this row computes: into L2 on Intel
// processors (host/cpu/prefetch_hint.h), else into L1.
HWY_INLINE void prefetch_next_row_line(const void* p) {
  if (prefetch_next_row_into_l2) {
    __builtin_prefetch(p, 0, 2);
  } else {
    hwy::Prefetch(p);
  }
}

// Asks for the lines of [p, p + bytes), an output not yet written, into L2 (see
// fetch_output_before_writing in host/cpu/prefetch_hint.h). Where p is not line-aligned, the line
// holding the range's last bytes is left to the call for the next range: callers fetch a row's
// output range by range, in order.
HWY_INLINE void fetch_output_lines(const void* p, std::size_t bytes) {
  const char* at = static_cast<const char*>(p);
  for (std::size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(at + offset, 0, 2);
}

// The line kOutputFetchAheadElements past `out`, for a pass that is about to store at `out`
// (fetches_output_ahead). Past the output's end the address is unused, and a prefetch never
// faults.
template <class T>
HWY_INLINE void fetch_output_ahead(const T* out) {
  fetch_output_lines(out + kOutputFetchAheadElements, 1);
}

// Asks for the cache lines of [p, p + bytes) ahead of their use. A compute-heavy loop hides
// memory latency only if its loads are already on their way: the hardware prefetchers alone
// left gelu over 16M floats at two thirds of its in-cache speed on one core.
HWY_INLINE void prefetch_bytes(const void* p, std::size_t bytes) {
  const char* at = static_cast<const char*>(p);
  for (std::size_t offset = 0; offset < bytes; offset += 64) hwy::Prefetch(at + offset);
}

// Outputs from streaming_output_bytes() on (host/cpu/backend.h) are streamed: an ordinary store
// to a line not in cache first reads it (12 bytes of traffic per float written where 8 suffice);
// a non-temporal store does not, but leaves nothing in cache for the output's next reader.

// Stores a whole vector of floats as T with a non-temporal store; p is aligned to the bytes it
// stores (streamed_lead finds the first such element). The 16-bit types are streamed from AVX2
// on only: below it their vector is half of a 16-byte register, and x86 streams whole registers.
HWY_INLINE void stream_floats(FloatTag d, FloatVec v, float* p) { hn::Stream(v, d, p); }

HWY_INLINE void stream_floats(FloatTag d, FloatVec v, Bf16* p) {
#if ACTLOSS_CPU_F16_VECTOR
  (void)d;
  hn::Stream(to_bf16_bits(v), Bf16BitsTag(), reinterpret_cast<std::uint16_t*>(p));
#else
  store_floats(d, v, p);
#endif
}

HWY_INLINE void stream_floats(FloatTag d, FloatVec v, Half* p) {
#if ACTLOSS_CPU_F16_VECTOR
  const hn::Rebind<hwy::float16_t, FloatTag> d16;
  hn::Stream(hn::DemoteTo(d16, v), d16, reinterpret_cast<hwy::float16_t*>(p));
#else
  store_floats(d, v, p);
#endif
}

// Two whole vectors, v0 then v1, as 2 Lanes elements at p (streamed: p aligned as for
// stream_floats). bfloat16 from AVX512_BF16 takes one two-source conversion for both: with one
// per vector, a bf16 sigmoid in cache took 1.3 times as long per element as the same math on
// f32. The bits, and the denormal rule, are to_bf16_bits's.
template <bool kStream, class T>
HWY_INLINE void store_floats_pair(FloatTag d, FloatVec v0, FloatVec v1, T* p) {
#if ACTLOSS_CPU_BF16_INSTRUCTION
  if constexpr (std::is_same_v<T, Bf16>) {
    if (converts_bf16_in_hardware() && (_mm512_fpclass_ps_mask(v0.raw, 0x20) |
                                        _mm512_fpclass_ps_mask(v1.raw, 0x20)) == 0) {
      __m512i bits;
      // AT&T order: the last source listed first; it fills the low half.
      __asm__("vcvtne2ps2bf16 %1, %2, %0" : "=v"(bits) : "v"(v0.raw), "v"(v1.raw));
      if constexpr (kStream) {
        _mm256_stream_si256(reinterpret_cast<__m256i*>(p), _mm512_castsi512_si256(bits));
        _mm256_stream_si256(reinterpret_cast<__m256i*>(p + hn::Lanes(d)),
                            _mm512_extracti64x4_epi64(bits, 1));
      } else {
        _mm512_storeu_si512(p, bits);
      }
      return;
    }
  }
#endif
  if constexpr (kStream) {
    stream_floats(d, v0, p);
    stream_floats(d, v1, p + hn::Lanes(d));
  } else {
    store_floats(d, v0, p);
    store_floats(d, v1, p + hn::Lanes(d));
  }
}

// The elements of T before the first one at which stream_floats may store a whole vector
// (p itself aligned to T).
template <class T>
HWY_INLINE std::int64_t streamed_lead(const T* p) {
  const std::size_t vector_bytes = hn::Lanes(FloatTag()) * sizeof(T);
  const std::size_t misalignment = reinterpret_cast<std::uintptr_t>(p) % vector_bytes;
  return static_cast<std::int64_t>((vector_bytes - misalignment) % vector_bytes / sizeof(T));
}

// Stores a row of `cols` elements, value(i, count) giving the vector of [i, i + count) (count is
// Lanes except for the partial vectors at either end). Streamed, the whole vectors start at the
// row's first aligned element, after one partial vector of the elements before it.
template <class T, class Value>
HWY_INLINE void store_row(FloatTag d, T* out, std::int64_t cols, bool stream,
                          const Value& value) {
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(d));
  std::int64_t i = 0;
  // bfloat16 two vectors at a time, for store_floats_pair's one conversion.
  constexpr bool kPairs = std::is_same_v<T, Bf16>;
  if (stream) {
    const std::int64_t lead = streamed_lead(out) < cols ? streamed_lead(out) : cols;
    if (lead > 0) store_floats_partial(d, value(0, lead), out, static_cast<size_t>(lead));
    i = lead;
    if constexpr (kPairs) {
      for (; i + 2 * lanes <= cols; i += 2 * lanes) {
        const FloatVec first = value(i, lanes);
        store_floats_pair<true>(d, first, value(i + lanes, lanes), out + i);
      }
    }
    for (; i + lanes <= cols; i += lanes) stream_floats(d, value(i, lanes), out + i);
  } else {
    if constexpr (kPairs) {
      for (; i + 2 * lanes <= cols; i += 2 * lanes) {
        const FloatVec first = value(i, lanes);
        store_floats_pair<false>(d, first, value(i + lanes, lanes), out + i);
      }
    }
    for (; i + lanes <= cols; i += lanes) store_floats(d, value(i, lanes), out + i);
  }
  if (i < cols) store_floats_partial(d, value(i, cols - i), out + i, static_cast<size_t>(cols - i));
}

// Copies `bytes` from a buffer in cache to memory that will not be read again soon, with
// non-temporal stores where `to` is vector-aligned (the few bytes before and after, ordinary
// ones): the destination's lines are not read first and do not evict the inputs. The caller
// ends its task with hwy::FlushStream(), so the stores are visible to whoever waits on it.
HWY_INLINE void stream_bytes(const void* from, void* to, std::size_t bytes) {
  const hn::ScalableTag<std::uint8_t> d8;
  const std::size_t vector_bytes = hn::Lanes(d8);
  const auto* source = static_cast<const std::uint8_t*>(from);
  auto* destination = static_cast<std::uint8_t*>(to);
  std::size_t head = (vector_bytes - reinterpret_cast<std::uintptr_t>(destination) % vector_bytes) %
                     vector_bytes;
  if (head > bytes) head = bytes;
  std::memcpy(destination, source, head);
  std::size_t i = head;
  for (; i + vector_bytes <= bytes; i += vector_bytes)
    hn::Stream(hn::LoadU(d8, source + i), d8, destination + i);
  std::memcpy(destination + i, source + i, bytes - i);
}

// Scalar access for the odd element.
HWY_INLINE float load_float(const float* p) { return *p; }
HWY_INLINE float load_float(const Bf16* p) { return host::bf16_bits_to_float(p->bits); }
HWY_INLINE float load_float(const Half* p) { return host::half_bits_to_float(p->bits); }

// Sum of all lanes in double, lane order fixed: the same bits on every run of one target.
HWY_INLINE double sum_lanes_double(FloatTag d, FloatVec v) {
  HWY_ALIGN float lanes[hn::MaxLanes(FloatTag())];
  hn::Store(v, d, lanes);
  double total = 0.0;
  for (size_t i = 0; i < hn::Lanes(d); ++i) total += lanes[i];
  return total;
}

// ---- Exponentials and float64 sums (softmax, the losses) ------------------------------------

// Highway's Exp returns 0 for NaN and takes about 22 operations; the rows, the losses and the
// activations need NaN kept or handled apart, and about 13: exp(t) = 2^k e^r with
// k = round(t log2 e) and r = t - k ln 2 (ln 2 in two parts: its head has 15 bits, so k ln2_hi
// is exact for every k here, and t - k ln2_hi is exact by Sterbenz). e^r on |r| <= ln2 / 2 is a
// least-squares polynomial of degree 6 in Horner's form, six FMAs (0.05 ulp before its
// coefficients round to float). The whole exp over every float t in [-87, 0]: 1.12 ulp at worst.
// Cephes' 1 + r + r^2 P(r), two operations more, gave 1.01; those two were 4-10% of the
// exponential-bound rows' time (one thread, in cache). The row ops apply 2^k in one rounding
// (results below float's normal range are rounded once: their absolute accuracy is what a tiny
// probability is judged by), and overflow gives +inf.
//
// kScaleLog2 -64 gives the polynomial times 2^-64 with the same bits, scaled: the factor rides
// on the coefficients (exactly), and every step's result stays a normal float, so each rounds
// as its unscaled twin does. Without AVX-512's vscalefps, a row op's p 2^k is then one multiply
// by the normal 2^(k + 64), not that and a second by 2^-64: one of the eleven operations the
// exponential puts on the FMA pipes (the same bits for every float t <= 0, checked on AVX2).
template <int kScaleLog2 = 0>
HWY_INLINE FloatVec exp_of_small(FloatTag d, FloatVec r) {
  static_assert(kScaleLog2 == 0 || kScaleLog2 == -64);
  constexpr float s = kScaleLog2 == 0 ? 1.0f : 0x1p-64f;
  FloatVec p = hn::Set(d, 1.382112736e-03f * s);
  p = hn::MulAdd(p, r, hn::Set(d, 8.380520158e-03f * s));
  p = hn::MulAdd(p, r, hn::Set(d, 4.166886210e-02f * s));
  p = hn::MulAdd(p, r, hn::Set(d, 1.666634828e-01f * s));
  p = hn::MulAdd(p, r, hn::Set(d, 4.999998808e-01f * s));
  p = hn::MulAdd(p, r, hn::Set(d, s));
  return hn::MulAdd(p, r, hn::Set(d, s));
}

namespace exp_detail {
template <int kScaleLog2 = 0>
HWY_INLINE FloatVec exp_of_reduced(FloatTag d, FloatVec t, FloatVec k) {
  FloatVec r = hn::MulAdd(k, hn::Set(d, -0.693145751953125f), t);
  r = hn::MulAdd(k, hn::Set(d, -1.428606765330187045e-6f), r);
  return exp_of_small<kScaleLog2>(d, r);
}
}  // namespace exp_detail

// AVX-512's vscalefps forms p 2^k (k a float holding an integer) in one rounding, with the
// overflow and the subnormal results of the two-factor scaling below (the same bits), in one
// instruction where that takes three or four.
#undef ACTLOSS_CPU_SCALEF
#if HWY_TARGET <= HWY_AVX3 && HWY_ARCH_X86
#define ACTLOSS_CPU_SCALEF 1
#else
#define ACTLOSS_CPU_SCALEF 0
#endif

// exp(t) for t <= 0 (-inf included). NaN gives an unspecified value: callers look for NaN apart.
HWY_INLINE FloatVec exp_nonpositive(FloatTag d, FloatVec t) {
  // exp(-104) is below half float's smallest subnormal: everything lower rounds to 0 too.
  t = hn::Max(t, hn::Set(d, -104.0f));
#if ACTLOSS_CPU_SCALEF
  const FloatVec shifter = hn::Set(d, 12582912.0f);
  const FloatVec k = hn::Sub(hn::MulAdd(t, hn::Set(d, 1.44269504088896341f), shifter), shifter);
  return FloatVec{_mm512_scalef_ps(exp_detail::exp_of_reduced(d, t, k).raw, k.raw)};
#else
  const hn::RebindToSigned<FloatTag> di;
  // 1.5 * 2^23 puts round(t log2 e) in the low mantissa bits of the sum; the added 191 = 127 + 64
  // makes those bits, shifted into the exponent field, the float 2^(k + 64) (k >= -150); the
  // polynomial carries the 2^-64, so the product rounds once.
  const FloatVec shifter = hn::Set(d, 12582912.0f + 191.0f);
  const FloatVec biased = hn::MulAdd(t, hn::Set(d, 1.44269504088896341f), shifter);
  const FloatVec k = hn::Sub(biased, shifter);
  const FloatVec scale = hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(di, biased)));
  return hn::Mul(exp_detail::exp_of_reduced<-64>(d, t, k), scale);
#endif
}

// 1 / v, as a division (rounded once). The functions that take it (the sigmoid family, tanh,
// gelu) keep the FMA pipes full, and the divider works beside them: AVX-512's 14-bit estimate
// with a Newton step, three operations on those pipes, was 5-19% slower for sigmoid, tanh, silu
// and gelu_tanh in bf16 (the EPYC VM, one and two threads) and no more accurate.
HWY_INLINE FloatVec reciprocal(FloatTag d, FloatVec v) { return hn::Div(hn::Set(d, 1.0f), v); }

// x86's maxps and minps return their second operand where either is NaN, so Max(floor, a) and
// Min(ceiling, a) pass a NaN a on, and a result computed from it is NaN without a compare and
// select that puts the NaN back (its sign or payload may differ: NaN all the same). The emulated
// targets' Max and Min return the bound.
constexpr bool kMaxPassesNan = HWY_ARCH_X86 && HWY_TARGET != HWY_EMU128 && HWY_TARGET != HWY_SCALAR;

// exp(t) for any t: +inf beyond float's range, NaN for NaN.
HWY_INLINE FloatVec exp_any(FloatTag d, FloatVec t) {
  // The bounds first, so that where kMaxPassesNan a NaN t reaches the result by itself.
  const FloatVec clamped = hn::Min(hn::Set(d, 89.0f), hn::Max(hn::Set(d, -104.0f), t));
  const FloatVec shifter = hn::Set(d, 12582912.0f);
  const FloatVec biased = hn::MulAdd(clamped, hn::Set(d, 1.44269504088896341f), shifter);
  const FloatVec k = hn::Sub(biased, shifter);
#if ACTLOSS_CPU_SCALEF
  const FloatVec e{_mm512_scalef_ps(exp_detail::exp_of_reduced(d, clamped, k).raw, k.raw)};
#else
  const hn::RebindToSigned<FloatTag> di;
  const auto k_int = hn::Sub(hn::BitCast(di, biased), hn::BitCast(di, shifter));
  // 2^k as 2^(k/2) 2^(k - k/2), both normal for k in [-150, 129].
  const auto half_k = hn::ShiftRight<1>(k_int);
  const auto bias = hn::Set(di, 127);
  const FloatVec scale1 = hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(half_k, bias)));
  const FloatVec scale2 = hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(hn::Sub(k_int, half_k), bias)));
  const FloatVec e = hn::Mul(hn::Mul(exp_detail::exp_of_reduced(d, clamped, k), scale1), scale2);
#endif
  if constexpr (kMaxPassesNan) return e;
  return hn::IfThenElse(hn::IsNaN(t), t, e);
}

// tanh x, and e = exp(-2|x|), from which sech^2 x = 4e / (1 + e)^2 keeps its relative accuracy
// where 1 - tanh^2 would round to 0 (|x| > 9). Below 0.75 an odd polynomial (x times a
// least-squares fit of tanh(x) / x in x^2, 0.16 ulp with float coefficients): there
// 1 - 2e / (1 + e) would cancel. Above, the subtracted 2e / (1 + e) is below 0.37 while tanh is
// above 0.63, so its few roundings weigh less than 0.6 in the result. exp(-inf) = 0 gives +-1
// exactly at the infinities; NaN fails the comparison and takes the polynomial, which keeps it.
struct TanhAndDecay {
  FloatVec tanh;
  FloatVec decay;  // exp(-2|x|)
};
HWY_INLINE TanhAndDecay tanh_and_decay(FloatTag d, FloatVec x) {
  const FloatVec one = hn::Set(d, 1.0f);
  const FloatVec ax = hn::Abs(x);
  const FloatVec s = hn::Mul(x, x);
  FloatVec q = hn::Set(d, 1.715827500e-03f);
  q = hn::MulAdd(q, s, hn::Set(d, -7.619337644e-03f));
  q = hn::MulAdd(q, s, hn::Set(d, 2.142596431e-02f));
  q = hn::MulAdd(q, s, hn::Set(d, -5.388418585e-02f));
  q = hn::MulAdd(q, s, hn::Set(d, 1.333255917e-01f));
  q = hn::MulAdd(q, s, hn::Set(d, -3.333330750e-01f));
  const FloatVec small = hn::MulAdd(hn::Mul(q, s), x, x);
  const FloatVec e = exp_nonpositive(d, hn::Mul(hn::Set(d, -2.0f), ax));
  const FloatVec large = hn::NegMulAdd(hn::Add(e, e), reciprocal(d, hn::Add(one, e)), one);
  return {hn::IfThenElse(hn::Ge(ax, hn::Set(d, 0.75f)), hn::CopySign(large, x), small), e};
}

using DoubleTag = hn::Repartition<double, FloatTag>;
using DoubleVec = hn::Vec<DoubleTag>;

// A float vector's lanes, widened to two double vectors (exact).
HWY_INLINE DoubleVec lower_as_double(FloatTag, FloatVec v) {
  return hn::PromoteTo(DoubleTag(), hn::LowerHalf(hn::Half<FloatTag>(), v));
}
HWY_INLINE DoubleVec upper_as_double(FloatTag, FloatVec v) {
  return hn::PromoteTo(DoubleTag(), hn::UpperHalf(hn::Half<FloatTag>(), v));
}

// Sum of a double vector's lanes in lane order: the same bits on every run of one target.
HWY_INLINE double sum_double_lanes(DoubleVec v) {
  const DoubleTag dd;
  HWY_ALIGN double lanes[hn::MaxLanes(DoubleTag())];
  hn::Store(v, dd, lanes);
  double total = 0.0;
  for (size_t i = 0; i < hn::Lanes(dd); ++i) total += lanes[i];
  return total;
}

// log1p(x) in double for one x >= 0 (a row's rest) or NaN: Highway's, within 2 ulp of double
// (far under the float the result is rounded to) and inline. The C library's is a call, with
// branches, that cost 4-11% of a 256-column cross-entropy or log-softmax row (one per row).
HWY_INLINE double log1p_double(double x) {
  const DoubleTag dd;
  return hn::GetLane(hn::Log1p(dd, hn::Set(dd, x)));
}

// Two double vectors (each half a float vector) rounded once to a float vector.
HWY_INLINE FloatVec demote_to_floats(FloatTag d, DoubleVec lower, DoubleVec upper) {
  const hn::Rebind<float, DoubleTag> half;
  return hn::Combine(d, hn::DemoteTo(half, upper), hn::DemoteTo(half, lower));
}

// ---- Elementwise tasks (the losses) -------------------------------------------------------

// Elements per task of an elementwise loss: the flattened [rows x cols] elements are cut into
// tasks of this many by size alone, so a reduced loss, summed per task and then in task order,
// is the same bits on any thread count.
constexpr std::int64_t kElementsPerTask = std::int64_t{1} << 16;

inline std::int64_t element_tasks(std::int64_t rows, std::int64_t cols) {
  return (rows * cols + kElementsPerTask - 1) / kElementsPerTask;
}

// Calls body(row, col_begin, col_end) for each piece of a row that task `task` covers.
template <class Body>
HWY_INLINE void for_each_piece_of_task(std::int64_t task, std::int64_t rows, std::int64_t cols,
                                       Body&& body) {
  const std::int64_t total = rows * cols;
  std::int64_t element = task * kElementsPerTask;
  const std::int64_t end = element + kElementsPerTask < total ? element + kElementsPerTask : total;
  while (element < end) {
    const std::int64_t row = element / cols;
    const std::int64_t col = element - row * cols;
    const std::int64_t piece_end = end - element < cols - col ? col + (end - element) : cols;
    body(row, col, piece_end);
    element += piece_end - col;
  }
}

}  // namespace actloss::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // ACTLOSS_HOST_CPU_SIMD_INL_H_
