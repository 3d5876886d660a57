// Float fallbacks for the parts of cuda_fp16.h / cuda_bf16.h that those
// headers declare for device code only. Conversions, comparisons and the
// arithmetic operators come from the CUDA headers themselves (host-capable).
// Included by simcuda.h only.
#pragma once

namespace simcuda::detail {
inline float to_float(__half h) noexcept { return __half2float(h); }
inline float to_float(__nv_bfloat16 h) noexcept { return __bfloat162float(h); }
template <class H> H from_float(float f) noexcept;
template <> inline __half from_float<__half>(float f) noexcept { return __float2half_rn(f); }
template <> inline __nv_bfloat16 from_float<__nv_bfloat16>(float f) noexcept {
  return __float2bfloat16_rn(f);
}
// A product of two halves (or two bfloat16s) is exact in float and the sum
// with a third is exact in double, so rounding once from double gives the
// single rounding of a fused multiply-add.
inline __half fused(__half a, __half b, __half c) noexcept {
  return __double2half(static_cast<double>(__half2float(a)) * __half2float(b) + __half2float(c));
}
inline __nv_bfloat16 fused(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) noexcept {
  return __double2bfloat16(static_cast<double>(__bfloat162float(a)) * __bfloat162float(b) +
                           __bfloat162float(c));
}
template <class H> H relu(H x) noexcept {
  const float f = to_float(x);
  return f < 0.0f ? from_float<H>(0.0f) : x;
}
template <class H> H sat(H x) noexcept { return from_float<H>(__saturatef(to_float(x))); }

inline float rcp(float x) noexcept { return 1.0f / x; }
inline float rsqrt(float x) noexcept { return 1.0f / sqrtf(x); }
}  // namespace simcuda::detail

#define SIMCUDA_H_UNARY(name, fn)                                                   \
  inline __half name(const __half a) noexcept {                                     \
    return __float2half_rn(fn(__half2float(a)));                                    \
  }                                                                                 \
  inline __nv_bfloat16 name(const __nv_bfloat16 a) noexcept {                       \
    return __float2bfloat16_rn(fn(__bfloat162float(a)));                            \
  }
#define SIMCUDA_H2_UNARY(name, fn)                                                  \
  inline __half2 name(const __half2 a) noexcept {                                   \
    return __floats2half2_rn(fn(__low2float(a)), fn(__high2float(a)));              \
  }                                                                                 \
  inline __nv_bfloat162 name(const __nv_bfloat162 a) noexcept {                     \
    return __floats2bfloat162_rn(fn(__low2float(a)), fn(__high2float(a)));          \
  }
#define SIMCUDA_H_MATH(hname, h2name, fn) SIMCUDA_H_UNARY(hname, fn) SIMCUDA_H2_UNARY(h2name, fn)

SIMCUDA_H_MATH(hexp, h2exp, expf)
SIMCUDA_H_MATH(hexp2, h2exp2, exp2f)
SIMCUDA_H_MATH(hexp10, h2exp10, exp10f)
SIMCUDA_H_MATH(hlog, h2log, logf)
SIMCUDA_H_MATH(hlog2, h2log2, log2f)
SIMCUDA_H_MATH(hlog10, h2log10, log10f)
SIMCUDA_H_MATH(hsqrt, h2sqrt, sqrtf)
SIMCUDA_H_MATH(hrsqrt, h2rsqrt, ::simcuda::detail::rsqrt)
SIMCUDA_H_MATH(hrcp, h2rcp, ::simcuda::detail::rcp)
SIMCUDA_H_MATH(hsin, h2sin, sinf)
SIMCUDA_H_MATH(hcos, h2cos, cosf)
SIMCUDA_H_MATH(htanh, h2tanh, tanhf)
SIMCUDA_H_MATH(htanh_approx, h2tanh_approx, tanhf)
SIMCUDA_H_MATH(hceil, h2ceil, ceilf)
SIMCUDA_H_MATH(hfloor, h2floor, floorf)
SIMCUDA_H_MATH(hrint, h2rint, nearbyintf)
SIMCUDA_H_MATH(htrunc, h2trunc, truncf)
#undef SIMCUDA_H_MATH
#undef SIMCUDA_H2_UNARY
#undef SIMCUDA_H_UNARY

#define SIMCUDA_H_FMA(H, H2, lo, hi, pack)                                              \
  inline H __hfma(const H a, const H b, const H c) noexcept {                           \
    return ::simcuda::detail::fused(a, b, c);                                           \
  }                                                                                     \
  inline H __hfma_relu(const H a, const H b, const H c) noexcept {                      \
    return ::simcuda::detail::relu(::simcuda::detail::fused(a, b, c));                  \
  }                                                                                     \
  inline H __hfma_sat(const H a, const H b, const H c) noexcept {                       \
    return ::simcuda::detail::sat(::simcuda::detail::fused(a, b, c));                   \
  }                                                                                     \
  inline H2 __hfma2(const H2 a, const H2 b, const H2 c) noexcept {                      \
    return pack(__hfma(lo(a), lo(b), lo(c)), __hfma(hi(a), hi(b), hi(c)));              \
  }                                                                                     \
  inline H2 __hfma2_relu(const H2 a, const H2 b, const H2 c) noexcept {                 \
    return pack(__hfma_relu(lo(a), lo(b), lo(c)), __hfma_relu(hi(a), hi(b), hi(c)));    \
  }                                                                                     \
  inline H2 __hfma2_sat(const H2 a, const H2 b, const H2 c) noexcept {                  \
    return pack(__hfma_sat(lo(a), lo(b), lo(c)), __hfma_sat(hi(a), hi(b), hi(c)));      \
  }
SIMCUDA_H_FMA(__half, __half2, __low2half, __high2half, __halves2half2)
SIMCUDA_H_FMA(__nv_bfloat16, __nv_bfloat162, __low2bfloat16, __high2bfloat16,
              __halves2bfloat162)
#undef SIMCUDA_H_FMA

#define SIMCUDA_H_TO_INT(prefix, H, tofloat)                                                 \
  inline int prefix##int_rn(const H h) noexcept {                                            \
    return ::simcuda::detail::saturating_cast<int>(nearbyintf(tofloat(h)));                  \
  }                                                                                          \
  inline int prefix##int_rd(const H h) noexcept {                                            \
    return ::simcuda::detail::saturating_cast<int>(floorf(tofloat(h)));                      \
  }                                                                                          \
  inline int prefix##int_ru(const H h) noexcept {                                            \
    return ::simcuda::detail::saturating_cast<int>(ceilf(tofloat(h)));                       \
  }                                                                                          \
  inline unsigned int prefix##uint_rn(const H h) noexcept {                                  \
    return ::simcuda::detail::saturating_cast<unsigned int>(nearbyintf(tofloat(h)));         \
  }                                                                                          \
  inline long long int prefix##ll_rn(const H h) noexcept {                                   \
    return ::simcuda::detail::saturating_cast<long long int>(nearbyintf(tofloat(h)));        \
  }                                                                                          \
  inline short int prefix##short_rn(const H h) noexcept {                                    \
    return ::simcuda::detail::saturating_cast<short int>(nearbyintf(tofloat(h)));            \
  }                                                                                          \
  inline unsigned short int prefix##ushort_rn(const H h) noexcept {                          \
    return ::simcuda::detail::saturating_cast<unsigned short int>(nearbyintf(tofloat(h)));   \
  }
SIMCUDA_H_TO_INT(__half2, __half, __half2float)
SIMCUDA_H_TO_INT(__bfloat162, __nv_bfloat16, __bfloat162float)
#undef SIMCUDA_H_TO_INT
