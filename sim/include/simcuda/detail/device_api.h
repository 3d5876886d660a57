// Device-side built-ins of the simulator. Included by simcuda.h only.
#pragma once

namespace simcuda::detail {

enum class WarpOp : std::uint8_t {
  kSync, kShflIdx, kShflUp, kShflDown, kShflXor, kBallot, kAny, kAll
};

// Implemented by the active execution mode (fibers or threads).
void syncthreads() noexcept;
std::uint64_t warp_op(WarpOp op, unsigned mask, std::uint64_t value, int arg,
                      int width) noexcept;
void* dynamic_smem() noexcept;
// Thread-block clusters (fiber mode; threads mode runs no cluster launch, so there every block
// is a cluster of one).
unsigned cluster_blocks() noexcept;
unsigned cluster_block_rank() noexcept;
void cluster_sync() noexcept;
void* cluster_map_shared(void* p, unsigned rank) noexcept;
// Adds to the counters behind simcuda::sim::vector_traffic().
void count_vector_access(bool store, std::size_t bytes) noexcept;

template <class T>
inline T warp_exchange(WarpOp op, unsigned mask, T var, int arg, int width) noexcept {
  static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes per lane");
  // __half2 & co. have user-written copy operations but are plain bits.
  static_assert(std::is_trivially_copyable_v<T> || std::is_standard_layout_v<T>,
                "warp shuffles need a plain-bits type");
  std::uint64_t bits = 0;
  std::memcpy(&bits, static_cast<const void*>(&var), sizeof(T));
  bits = warp_op(op, mask, bits, arg, width);
  T out;
  std::memcpy(static_cast<void*>(&out), &bits, sizeof(T));
  return out;
}

// CUDA atomics are relaxed; ordering comes from __threadfence or barriers.
template <class T, class F>
inline T atomic_update(T* address, F f) noexcept {
  std::atomic_ref<T> ref(*address);
  T old = ref.load(std::memory_order_relaxed);
  while (!ref.compare_exchange_weak(old, f(old), std::memory_order_relaxed)) {
  }
  return old;
}

}  // namespace simcuda::detail

// Built-in variables. Not macros: CUDA's own headers use these names as
// struct members. Fiber mode rewrites threadIdx on every fiber switch;
// constinit keeps the accesses free of TLS-init wrapper calls.
inline thread_local constinit uint3 threadIdx{0, 0, 0};
inline thread_local constinit uint3 blockIdx{0, 0, 0};
inline thread_local constinit dim3 blockDim{1, 1, 1};
inline thread_local constinit dim3 gridDim{1, 1, 1};
// Not constexpr, as on the device: code that needs it as a constant
// expression would not compile with nvcc either.
extern const int warpSize;

// ------------------------------------------------------------- barriers --
inline void __syncthreads() noexcept { ::simcuda::detail::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) noexcept {
  ::simcuda::detail::warp_op(::simcuda::detail::WarpOp::kSync, mask, 0, 0, 32);
}
#if defined(__SANITIZE_THREAD__)
#define SIMCUDA_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SIMCUDA_TSAN 1
#endif
#endif
namespace simcuda::detail {
// ThreadSanitizer does not model a standalone fence (GCC rejects atomic_thread_fence under
// -fsanitize=thread): there, a sequentially consistent read-modify-write of one shared word
// stands in, which orders at least as much and which it understands.
inline void fence() noexcept {
#if defined(SIMCUDA_TSAN)
  static std::atomic<unsigned> word{0};
  word.fetch_add(0u, std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}
}  // namespace simcuda::detail
inline void __threadfence() noexcept { ::simcuda::detail::fence(); }
inline void __threadfence_block() noexcept { ::simcuda::detail::fence(); }
inline void __threadfence_system() noexcept { ::simcuda::detail::fence(); }

// ------------------------------------------------------------- clusters --
// The simulator's side of the cluster helpers in simcuda.h (nvcc: cooperative_groups).
namespace simcuda {
inline unsigned cluster_blocks() noexcept { return detail::cluster_blocks(); }
inline unsigned cluster_block_rank() noexcept { return detail::cluster_block_rank(); }
inline void cluster_sync() noexcept { detail::cluster_sync(); }
template <class T>
inline T* cluster_map_shared(T* p, unsigned rank) noexcept {
  return static_cast<T*>(detail::cluster_map_shared(const_cast<void*>(
      static_cast<const void*>(p)), rank));
}
}  // namespace simcuda

// ----------------------------------------------------- warp collectives --
template <class T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = 32) noexcept {
  return ::simcuda::detail::warp_exchange(::simcuda::detail::WarpOp::kShflIdx, mask, var,
                                          srcLane, width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned int delta, int width = 32) noexcept {
  return ::simcuda::detail::warp_exchange(::simcuda::detail::WarpOp::kShflUp, mask, var,
                                          static_cast<int>(delta), width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned int delta, int width = 32) noexcept {
  return ::simcuda::detail::warp_exchange(::simcuda::detail::WarpOp::kShflDown, mask, var,
                                          static_cast<int>(delta), width);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = 32) noexcept {
  return ::simcuda::detail::warp_exchange(::simcuda::detail::WarpOp::kShflXor, mask, var,
                                          laneMask, width);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) noexcept {
  return static_cast<unsigned>(::simcuda::detail::warp_op(
      ::simcuda::detail::WarpOp::kBallot, mask, predicate != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int predicate) noexcept {
  return static_cast<int>(::simcuda::detail::warp_op(::simcuda::detail::WarpOp::kAny,
                                                     mask, predicate != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int predicate) noexcept {
  return static_cast<int>(::simcuda::detail::warp_op(::simcuda::detail::WarpOp::kAll,
                                                     mask, predicate != 0, 0, 32));
}

// -------------------------------------------------------------- atomics --
#define SIMCUDA_ATOMIC_FETCH(name, type, method)                                  \
  inline type name(type* address, type val) noexcept {                           \
    return std::atomic_ref<type>(*address).method(val, std::memory_order_relaxed); \
  }
SIMCUDA_ATOMIC_FETCH(atomicAdd, int, fetch_add)
SIMCUDA_ATOMIC_FETCH(atomicAdd, unsigned int, fetch_add)
SIMCUDA_ATOMIC_FETCH(atomicAdd, unsigned long long int, fetch_add)
SIMCUDA_ATOMIC_FETCH(atomicAdd, float, fetch_add)
SIMCUDA_ATOMIC_FETCH(atomicAdd, double, fetch_add)
SIMCUDA_ATOMIC_FETCH(atomicSub, int, fetch_sub)
SIMCUDA_ATOMIC_FETCH(atomicSub, unsigned int, fetch_sub)
SIMCUDA_ATOMIC_FETCH(atomicExch, int, exchange)
SIMCUDA_ATOMIC_FETCH(atomicExch, unsigned int, exchange)
SIMCUDA_ATOMIC_FETCH(atomicExch, unsigned long long int, exchange)
SIMCUDA_ATOMIC_FETCH(atomicExch, float, exchange)
SIMCUDA_ATOMIC_FETCH(atomicAnd, int, fetch_and)
SIMCUDA_ATOMIC_FETCH(atomicAnd, unsigned int, fetch_and)
SIMCUDA_ATOMIC_FETCH(atomicAnd, unsigned long long int, fetch_and)
SIMCUDA_ATOMIC_FETCH(atomicOr, int, fetch_or)
SIMCUDA_ATOMIC_FETCH(atomicOr, unsigned int, fetch_or)
SIMCUDA_ATOMIC_FETCH(atomicOr, unsigned long long int, fetch_or)
SIMCUDA_ATOMIC_FETCH(atomicXor, int, fetch_xor)
SIMCUDA_ATOMIC_FETCH(atomicXor, unsigned int, fetch_xor)
SIMCUDA_ATOMIC_FETCH(atomicXor, unsigned long long int, fetch_xor)
#undef SIMCUDA_ATOMIC_FETCH

#define SIMCUDA_ATOMIC_MINMAX(type)                                              \
  inline type atomicMax(type* address, type val) noexcept {                      \
    return ::simcuda::detail::atomic_update(address,                             \
                                            [val](type o) { return o < val ? val : o; }); \
  }                                                                              \
  inline type atomicMin(type* address, type val) noexcept {                      \
    return ::simcuda::detail::atomic_update(address,                             \
                                            [val](type o) { return val < o ? val : o; }); \
  }
SIMCUDA_ATOMIC_MINMAX(int)
SIMCUDA_ATOMIC_MINMAX(unsigned int)
SIMCUDA_ATOMIC_MINMAX(long long int)
SIMCUDA_ATOMIC_MINMAX(unsigned long long int)
#undef SIMCUDA_ATOMIC_MINMAX

#define SIMCUDA_ATOMIC_CAS(type)                                                   \
  inline type atomicCAS(type* address, type compare, type val) noexcept {          \
    std::atomic_ref<type>(*address).compare_exchange_strong(                       \
        compare, val, std::memory_order_relaxed, std::memory_order_relaxed);       \
    return compare;                                                                \
  }
SIMCUDA_ATOMIC_CAS(int)
SIMCUDA_ATOMIC_CAS(unsigned int)
SIMCUDA_ATOMIC_CAS(unsigned long long int)
SIMCUDA_ATOMIC_CAS(unsigned short int)
#undef SIMCUDA_ATOMIC_CAS

inline unsigned int atomicInc(unsigned int* address, unsigned int val) noexcept {
  return ::simcuda::detail::atomic_update(
      address, [val](unsigned int o) { return o >= val ? 0u : o + 1u; });
}
inline unsigned int atomicDec(unsigned int* address, unsigned int val) noexcept {
  return ::simcuda::detail::atomic_update(
      address, [val](unsigned int o) { return (o == 0u || o > val) ? val : o - 1u; });
}

// ------------------------------------------------------ vector access --
// A GPU faults on a vector access that is not aligned to its size; the CPU
// would not notice, so every vector access checks the address first.
namespace simcuda::detail {

// Prints "simcuda: <kernel>: block (x,y,z) thread (x,y,z): misaligned
// <bytes>-byte vector <kind> at <p> in <via> (...)" and aborts. Out of line
// and cold: the inlined check stays one test and one branch.
[[noreturn, gnu::cold]] void misaligned_vector_access(const void* p, std::size_t bytes,
                                                      const char* kind,
                                                      const char* via) noexcept;

template <std::size_t kBytes>
__attribute__((always_inline)) inline void check_vector_alignment(const void* p, const char* kind,
                                                                  const char* via) noexcept {
  if (__builtin_expect(reinterpret_cast<std::uintptr_t>(p) % kBytes != 0, 0)) {
    misaligned_vector_access(p, kBytes, kind, via);
  }
}

// The cache-hint built-ins below check only their vector sizes (8 and 16
// bytes); a misaligned scalar dereference is left to UBSan's alignment check.
template <class T>
__attribute__((always_inline)) inline void check_hinted_access(const void* p, const char* kind,
                                                               const char* via) noexcept {
  if constexpr (sizeof(T) == 8 || sizeof(T) == 16) check_vector_alignment<sizeof(T)>(p, kind, via);
}

template <class V>
constexpr void static_check_vector() noexcept {
  static_assert(sizeof(V) == 4 || sizeof(V) == 8 || sizeof(V) == 16,
                "simcuda vector accesses move 4, 8 or 16 bytes");
  // __half2 & co. have user-written copy operations but are plain bits.
  static_assert(std::is_trivially_copyable_v<V> || std::is_standard_layout_v<V>,
                "simcuda vector accesses need a plain-bits type");
}

}  // namespace simcuda::detail

namespace simcuda {

// Vector memory access for kernels (the nvcc twins are in simcuda.h). memcpy
// keeps the copy free of strict-aliasing and alignment UB once the address
// has been checked.
template <class V>
__device__ __forceinline__ V load_vector(const V* p) noexcept {
  detail::static_check_vector<V>();
  detail::check_vector_alignment<sizeof(V)>(p, "load", "simcuda::load_vector");
  detail::count_vector_access(false, sizeof(V));
  V v;
  std::memcpy(static_cast<void*>(&v), static_cast<const void*>(p), sizeof(V));
  return v;
}
template <class V>
__device__ __forceinline__ void store_vector(V* p, const V& v) noexcept {
  detail::static_check_vector<V>();
  detail::check_vector_alignment<sizeof(V)>(p, "store", "simcuda::store_vector");
  detail::count_vector_access(true, sizeof(V));
  std::memcpy(static_cast<void*>(p), static_cast<const void*>(&v), sizeof(V));
}
// Evict-first (__stcs) on the GPU; the same plain store here.
template <class V>
__device__ __forceinline__ void store_vector_streaming(V* p, const V& v) noexcept {
  detail::static_check_vector<V>();
  detail::check_vector_alignment<sizeof(V)>(p, "store", "simcuda::store_vector_streaming");
  detail::count_vector_access(true, sizeof(V));
  std::memcpy(static_cast<void*>(p), static_cast<const void*>(&v), sizeof(V));
}

}  // namespace simcuda

// -------------------------------------------------------- cached loads --
// Cache hints mean nothing on a CPU; they are plain loads and stores, with
// the alignment check of vector accesses for 8- and 16-byte types.
#define SIMCUDA_HINTED_LOAD(name)                                                  \
  template <class T>                                                               \
  inline T name(const T* p) noexcept {                                             \
    ::simcuda::detail::check_hinted_access<T>(p, "load", #name);                   \
    return *p;                                                                     \
  }
#define SIMCUDA_HINTED_STORE(name)                                                 \
  template <class T>                                                               \
  inline void name(T* p, T v) noexcept {                                           \
    ::simcuda::detail::check_hinted_access<T>(p, "store", #name);                  \
    *p = v;                                                                        \
  }
SIMCUDA_HINTED_LOAD(__ldg)
SIMCUDA_HINTED_LOAD(__ldca)
SIMCUDA_HINTED_LOAD(__ldcg)
SIMCUDA_HINTED_LOAD(__ldcs)
SIMCUDA_HINTED_LOAD(__ldlu)
SIMCUDA_HINTED_LOAD(__ldcv)
SIMCUDA_HINTED_STORE(__stcg)
SIMCUDA_HINTED_STORE(__stcs)
SIMCUDA_HINTED_STORE(__stwb)
SIMCUDA_HINTED_STORE(__stwt)
#undef SIMCUDA_HINTED_LOAD
#undef SIMCUDA_HINTED_STORE

// ------------------------------------------------- reinterpretations --
inline constexpr float __int_as_float(int x) noexcept { return std::bit_cast<float>(x); }
inline constexpr int __float_as_int(float x) noexcept { return std::bit_cast<int>(x); }
inline constexpr float __uint_as_float(unsigned int x) noexcept { return std::bit_cast<float>(x); }
inline constexpr unsigned int __float_as_uint(float x) noexcept { return std::bit_cast<unsigned int>(x); }
inline constexpr double __longlong_as_double(long long int x) noexcept { return std::bit_cast<double>(x); }
inline constexpr long long int __double_as_longlong(double x) noexcept { return std::bit_cast<long long int>(x); }
inline constexpr double __hiloint2double(int hi, int lo) noexcept {
  return std::bit_cast<double>((static_cast<unsigned long long>(static_cast<unsigned>(hi)) << 32) |
                               static_cast<unsigned>(lo));
}
inline constexpr int __double2hiint(double x) noexcept {
  return static_cast<int>(std::bit_cast<unsigned long long>(x) >> 32);
}
inline constexpr int __double2loint(double x) noexcept {
  return static_cast<int>(std::bit_cast<unsigned long long>(x) & 0xffffffffull);
}

// ------------------------------------------------------ integer bits --
inline int __popc(unsigned int x) noexcept { return std::popcount(x); }
inline int __popcll(unsigned long long int x) noexcept { return std::popcount(x); }
inline int __clz(int x) noexcept { return std::countl_zero(static_cast<unsigned>(x)); }
inline int __clzll(long long int x) noexcept {
  return std::countl_zero(static_cast<unsigned long long>(x));
}
inline int __ffs(int x) noexcept { return __builtin_ffs(x); }
inline int __ffsll(long long int x) noexcept { return __builtin_ffsll(x); }
inline unsigned int __brev(unsigned int x) noexcept {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  return __builtin_bswap32(x);
}
inline unsigned long long int __brevll(unsigned long long int x) noexcept {
  return (static_cast<unsigned long long>(__brev(static_cast<unsigned>(x))) << 32) |
         __brev(static_cast<unsigned>(x >> 32));
}
inline unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s) noexcept {
  const unsigned long long v = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned int r = 0;
  for (int i = 0; i < 4; ++i) {
    const unsigned sel = (s >> (4 * i)) & 7u;
    r |= static_cast<unsigned>((v >> (8 * sel)) & 0xffu) << (8 * i);
  }
  return r;
}
inline unsigned int __funnelshift_l(unsigned int lo, unsigned int hi, unsigned int shift) noexcept {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << (shift & 31u)) >> 32);
}
inline unsigned int __funnelshift_r(unsigned int lo, unsigned int hi, unsigned int shift) noexcept {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> (shift & 31u));
}
inline int __mul24(int x, int y) noexcept {
  return static_cast<int>(static_cast<long long>((x << 8) >> 8) * ((y << 8) >> 8));
}
inline unsigned int __umul24(unsigned int x, unsigned int y) noexcept {
  return (x & 0xffffffu) * (y & 0xffffffu);
}
inline int __mulhi(int x, int y) noexcept {
  return static_cast<int>((static_cast<long long>(x) * y) >> 32);
}
inline unsigned int __umulhi(unsigned int x, unsigned int y) noexcept {
  return static_cast<unsigned>((static_cast<unsigned long long>(x) * y) >> 32);
}
inline long long int __mul64hi(long long int x, long long int y) noexcept {
  return static_cast<long long>((static_cast<__int128>(x) * y) >> 64);
}
inline unsigned long long int __umul64hi(unsigned long long int x, unsigned long long int y) noexcept {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(x) * y) >> 64);
}

// -------------------------------------------------------------- min/max --
// The overload set of CUDA's math_functions.hpp, so that the same calls are
// (un)ambiguous in both builds.
#define SIMCUDA_MINMAX(R, A, B)                                                     \
  inline R min(const A a, const B b) noexcept {                                     \
    return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); \
  }                                                                                 \
  inline R max(const A a, const B b) noexcept {                                     \
    return static_cast<R>(a) > static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); \
  }
SIMCUDA_MINMAX(int, int, int)
SIMCUDA_MINMAX(unsigned int, unsigned int, unsigned int)
SIMCUDA_MINMAX(unsigned int, int, unsigned int)
SIMCUDA_MINMAX(unsigned int, unsigned int, int)
SIMCUDA_MINMAX(long int, long int, long int)
SIMCUDA_MINMAX(unsigned long int, unsigned long int, unsigned long int)
SIMCUDA_MINMAX(unsigned long int, long int, unsigned long int)
SIMCUDA_MINMAX(unsigned long int, unsigned long int, long int)
SIMCUDA_MINMAX(long long int, long long int, long long int)
SIMCUDA_MINMAX(unsigned long long int, unsigned long long int, unsigned long long int)
SIMCUDA_MINMAX(unsigned long long int, long long int, unsigned long long int)
SIMCUDA_MINMAX(unsigned long long int, unsigned long long int, long long int)
SIMCUDA_MINMAX(double, double, double)
SIMCUDA_MINMAX(double, float, double)
SIMCUDA_MINMAX(double, double, float)
#undef SIMCUDA_MINMAX
// fminf/fmaxf semantics (NaN loses), as CUDA's float min/max.
inline float min(const float a, const float b) noexcept { return fminf(a, b); }
inline float max(const float a, const float b) noexcept { return fmaxf(a, b); }
inline unsigned int umin(unsigned int a, unsigned int b) noexcept { return a < b ? a : b; }
inline unsigned int umax(unsigned int a, unsigned int b) noexcept { return a > b ? a : b; }
inline long long int llmin(long long int a, long long int b) noexcept { return a < b ? a : b; }
inline long long int llmax(long long int a, long long int b) noexcept { return a > b ? a : b; }
inline unsigned long long int ullmin(unsigned long long int a, unsigned long long int b) noexcept {
  return a < b ? a : b;
}
inline unsigned long long int ullmax(unsigned long long int a, unsigned long long int b) noexcept {
  return a > b ? a : b;
}

// ------------------------------------------------------- float math --
// The fast intrinsics are the accurate libm functions here: simulated
// numerics are not the GPU's, tests compare with tolerances.
//
// glibc's <math.h> already declares __expf, __logf, __sinf, ... (extern "C",
// never exported by libm), so these definitions take C linkage and noexcept
// to match those declarations.
extern "C" {
inline float __expf(float x) noexcept { return expf(x); }
inline float __exp10f(float x) noexcept { return exp10f(x); }
inline float __logf(float x) noexcept { return logf(x); }
inline float __log2f(float x) noexcept { return log2f(x); }
inline float __log10f(float x) noexcept { return log10f(x); }
inline float __powf(float x, float y) noexcept { return powf(x, y); }
inline float __sinf(float x) noexcept { return sinf(x); }
inline float __cosf(float x) noexcept { return cosf(x); }
inline float __tanf(float x) noexcept { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) noexcept { sincosf(x, s, c); }
}
inline float __fdividef(float x, float y) noexcept { return x / y; }
inline float __saturatef(float x) noexcept {
  // NaN saturates to 0, as on the device.
  return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f;
}
inline float rsqrtf(float x) noexcept { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) noexcept { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) noexcept { return 1.0f / cbrtf(x); }
inline float normcdff(float x) noexcept { return 0.5f * erfcf(-x * 0.70710678118654752f); }
inline double normcdf(double x) noexcept { return 0.5 * erfc(-x * 0.70710678118654752); }
inline float __frcp_rn(float x) noexcept { return 1.0f / x; }
inline float __fsqrt_rn(float x) noexcept { return sqrtf(x); }
inline float __frsqrt_rn(float x) noexcept { return 1.0f / sqrtf(x); }
inline float __fadd_rn(float x, float y) noexcept { return x + y; }
inline float __fsub_rn(float x, float y) noexcept { return x - y; }
inline float __fmul_rn(float x, float y) noexcept { return x * y; }
inline float __fdiv_rn(float x, float y) noexcept { return x / y; }
inline float __fmaf_rn(float x, float y, float z) noexcept { return fmaf(x, y, z); }
inline double __dadd_rn(double x, double y) noexcept { return x + y; }
inline double __dmul_rn(double x, double y) noexcept { return x * y; }
inline double __fma_rn(double x, double y, double z) noexcept { return fma(x, y, z); }
// Out-of-range and NaN conversions saturate (NaN gives 0) as on the device,
// instead of being undefined behaviour as a C++ cast would be.
namespace simcuda::detail {
template <class I, class F>
inline I saturating_cast(F r) noexcept {
  if (r != r) return 0;
  constexpr F lo = static_cast<F>(std::numeric_limits<I>::min());
  constexpr F hi = static_cast<F>(std::numeric_limits<I>::max());
  if (r <= lo) return std::numeric_limits<I>::min();
  if (r >= hi) return std::numeric_limits<I>::max();
  return static_cast<I>(r);
}
}  // namespace simcuda::detail
inline int __float2int_rn(float x) noexcept { return ::simcuda::detail::saturating_cast<int>(nearbyintf(x)); }
inline int __float2int_rz(float x) noexcept { return ::simcuda::detail::saturating_cast<int>(truncf(x)); }
inline int __float2int_rd(float x) noexcept { return ::simcuda::detail::saturating_cast<int>(floorf(x)); }
inline int __float2int_ru(float x) noexcept { return ::simcuda::detail::saturating_cast<int>(ceilf(x)); }
inline unsigned int __float2uint_rn(float x) noexcept { return ::simcuda::detail::saturating_cast<unsigned>(nearbyintf(x)); }
inline unsigned int __float2uint_rz(float x) noexcept { return ::simcuda::detail::saturating_cast<unsigned>(truncf(x)); }
inline long long int __float2ll_rn(float x) noexcept { return ::simcuda::detail::saturating_cast<long long>(nearbyintf(x)); }
inline long long int __float2ll_rz(float x) noexcept { return ::simcuda::detail::saturating_cast<long long>(truncf(x)); }
inline float __int2float_rn(int x) noexcept { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned int x) noexcept { return static_cast<float>(x); }
inline float __ll2float_rn(long long int x) noexcept { return static_cast<float>(x); }
inline int __double2int_rn(double x) noexcept { return ::simcuda::detail::saturating_cast<int>(nearbyint(x)); }
inline float __double2float_rn(double x) noexcept { return static_cast<float>(x); }

// Device clocks only order events; steady_clock ticks serve the same use.
long long int clock64() noexcept;
