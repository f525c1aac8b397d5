// pdrop/detail/simd.hpp - the 8-float vector the kernels are written in,
// once per SIMD target.
//
// `f8` is eight floats, defined in one namespace per target (the kernels on
// it, detail/score_kernels-inl.hpp, are compiled once in each):
//
//   detail::simd_portable  two 4-float GNU vectors (SSE2 on x86-64, NEON on
//                          AArch64); fp16 / bf16 rows convert in registers
//                          by branch-free bit formulas. Every build.
//   detail::simd_avx2      one __m256; fp16 / bf16 convert in registers
//                          (vcvtph2ps, a shift); fused multiply-add. On
//                          x86-64 with GCC or clang: compiled with the
//                          TU's own flags when they include AVX2, FMA and
//                          F16C, otherwise under a target("avx2,fma,f16c")
//                          pragma, so a baseline build carries it and
//                          pdrop/dispatch.hpp runs it only on a CPU that
//                          has it. PDROP_NO_DISPATCH drops the pragma form;
//                          PDROP_NO_SIMD drops the target altogether.
//
// Every kernel built on f8 fixes its order of operations by element index
// only (each lane sums a fixed subset of the elements; lanes reduce by one
// fixed tree, tree8), never by address or alignment: a result is
// bit-identical from run to run and across any split of the work. The two
// targets may differ in the last bits (fused multiply-add on AVX2).
#ifndef PDROP_DETAIL_SIMD_HPP
#define PDROP_DETAIL_SIMD_HPP

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "pdrop/config.hpp"
#include "pdrop/view.hpp"

#if PDROP_DETAIL_HAVE_AVX2
#include <immintrin.h>
#endif

PDROP_BEGIN_NAMESPACE
namespace detail {

template <class To, class From>
inline To bits_as(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bits_as: sizes differ");
  To to;
  std::memcpy(&to, &from, sizeof to);
  return to;
}

// The 16 bits of an fp16 / bf16 element.
template <class T>
inline std::uint16_t raw16(const T* p) {
  static_assert(sizeof(T) == 2, "raw16: a 16-bit type");
  std::uint16_t u;
  std::memcpy(&u, p, sizeof u);
  return u;
}

// fp16 bits -> float, exact for every input (normals, subnormals, zeros,
// infinities, NaNs), without branches so that loops of it vectorise:
// the exponent/mantissa shifted into float position and scaled by 2^112
// rebias normals and normalise subnormals; the all-ones exponent is forced
// back to Inf/NaN.
inline float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t em = std::uint32_t{h} & 0x7fffu;
  const std::uint32_t sign = (std::uint32_t{h} & 0x8000u) << 16;
  const float scaled = bits_as<float>(em << 13) * 0x1p112f;
  const std::uint32_t inf_nan = em >= 0x7c00u ? 0x7f800000u : 0u;
  return bits_as<float>(bits_as<std::uint32_t>(scaled) | inf_nan | sign);
}

inline float bf16_bits_to_float(std::uint16_t b) {
  return bits_as<float>(std::uint32_t{b} << 16);
}

// One element of a float type as float.
template <class T>
inline float to_float(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return *p;
  } else if constexpr (std::is_same_v<T, half>) {
    return half_bits_to_float(raw16(p));
  } else {
    static_assert(std::is_same_v<T, bfloat16>, "float, half or bfloat16");
    return bf16_bits_to_float(raw16(p));
  }
}

// n elements as float into dst.
template <class T>
inline void row_to_float(const T* src, std::int64_t n, float* dst) {
  if constexpr (std::is_same_v<T, float>) {
    if (n > 0) std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
  } else {
    for (std::int64_t i = 0; i < n; ++i) dst[i] = to_float(src + i);
  }
}

// e^x for x <= 0 (softmax after max subtraction), as float32's expf gives
// it down to the subnormals: within 1.3 ulp of the exact value where it is
// a normal float (x >= -87.3), and the subnormal nearest to a value within
// that of it below, down to 0 for x below about -103.97 (x is clamped at
// -104). A softmax probability that float32 tells apart from its
// neighbours, however tiny, stays apart here, so ranking by it is
// float32's ranking (tests/score_test.cpp, ExpMatchesFloat32).
// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and the degree-6
// polynomial of Cephes' expf; 2^n is applied as two normal factors 2^(n>>1)
// and 2^(n - (n>>1)), each >= 2^-75: exact while the result is normal, one
// correct rounding where it is subnormal. Branch-free; f8_exp_nonpositive
// computes the same steps on 8 lanes: the same bits in simd_portable; in
// simd_avx2, whose multiply-adds are fused, within 1 ulp of them. NaN gives
// NaN. A process running with flush-to-zero (any part of it built with
// -ffast-math or -Ofast sets it at start-up) turns the subnormals into 0
// again, and such tokens tie.
inline float exp_nonpositive(float x) {
  x = x > -104.0f ? x : (x != x ? x : -104.0f);
  const float magic = 12582912.0f;  // 1.5 * 2^23: round to nearest integer
  const float shifted = x * 1.44269504088896341f + magic;
  const float n = shifted - magic;
  const std::int32_t ni = static_cast<std::int32_t>(bits_as<std::uint32_t>(shifted)) -
                          static_cast<std::int32_t>(bits_as<std::uint32_t>(magic));
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const std::int32_t n_hi = ni >> 1;  // floor(n / 2): arithmetic shift
  const float s_hi = bits_as<float>(static_cast<std::uint32_t>(n_hi + 127) << 23);
  const float s_lo = bits_as<float>(static_cast<std::uint32_t>(ni - n_hi + 127) << 23);
  return (p * s_hi) * s_lo;
}

// Sum of 8 lanes by a fixed tree: ((0+1) + (2+3)) + ((4+5) + (6+7)).
inline float tree8(const float* v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

// ---- simd_portable: GNU vector extensions, two 4-float vectors ----
namespace simd_portable {

typedef float v4f __attribute__((vector_size(16)));
typedef std::int32_t v4i __attribute__((vector_size(16)));
typedef std::uint32_t v4u __attribute__((vector_size(16)));

struct f8 {
  v4f a, b;
};

// fp16 / bf16 rows load as 32-bit words, each holding two elements: the
// even elements (low halves) go to `a`, the odd ones to `b`. The lanes of
// an f8 loaded from 16-bit data are therefore elements 0 2 4 6 | 1 3 5 7
// of the chunk; f8_interleave_like arranges float rows the same way so
// that the lanes pair up in a dot product.
template <class T>
inline constexpr bool kLanesInterleaved = sizeof(T) == 2;
// Accumulators a kernel tile may keep in registers: an f8 is two of the 16
// SSE / NEON registers (measured: eight spill a little and are still faster
// than four).
inline constexpr int kMaxAccs = 8;
// A GQA tile (detail/score_kernels-inl.hpp): up to kQueryBlock query rows
// against kGroupTileRows<QB> K rows, QB x rows accumulators.
inline constexpr int kQueryBlock = 8;
template <int QB>
inline constexpr int kGroupTileRows = kMaxAccs / QB > 0 ? kMaxAccs / QB : 1;
// Keeps a loaded chunk in a register (a no-op here: see simd_avx2).
inline void f8_pin(f8&) {}

inline v4f half4_to_float(v4u h) {  // half_bits_to_float, four at a time
  const v4u em = h & 0x7fffu;
  const v4u sign = (h & 0x8000u) << 16;
  const v4f scaled = reinterpret_cast<v4f>(em << 13) * 0x1p112f;
  const v4u inf_nan = reinterpret_cast<v4u>(em > 0x7bffu) & 0x7f800000u;
  return reinterpret_cast<v4f>(reinterpret_cast<v4u>(scaled) | inf_nan | sign);
}

inline f8 f8_zero() { return f8{v4f{0, 0, 0, 0}, v4f{0, 0, 0, 0}}; }
inline f8 f8_set1(float x) { return f8{v4f{x, x, x, x}, v4f{x, x, x, x}}; }
inline f8 f8_load(const float* p) {
  f8 r;
  std::memcpy(&r.a, p, sizeof r.a);
  std::memcpy(&r.b, p + 4, sizeof r.b);
  return r;
}
// The even element of each 32-bit word (the first in memory) as the low
// 16 bits (little-endian) and the odd one as the high 16 bits.
inline v4u even16(v4u w) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return w >> 16;
#else
  return w & 0xffffu;
#endif
}
inline v4u odd16(v4u w) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return w & 0xffffu;
#else
  return w >> 16;
#endif
}
inline f8 f8_load(const half* p) {
  v4u w;
  std::memcpy(&w, p, sizeof w);
  return f8{half4_to_float(even16(w)), half4_to_float(odd16(w))};
}
inline f8 f8_load(const bfloat16* p) {
  v4u w;
  std::memcpy(&w, p, sizeof w);
  return f8{reinterpret_cast<v4f>(even16(w) << 16), reinterpret_cast<v4f>(odd16(w) << 16)};
}
inline void f8_store(float* p, f8 x) {
  std::memcpy(p, &x.a, sizeof x.a);
  std::memcpy(p + 4, &x.b, sizeof x.b);
}
inline f8 f8_add(f8 x, f8 y) { return f8{x.a + y.a, x.b + y.b}; }
inline f8 f8_sub(f8 x, f8 y) { return f8{x.a - y.a, x.b - y.b}; }
inline f8 f8_mul(f8 x, f8 y) { return f8{x.a * y.a, x.b * y.b}; }
inline f8 f8_fma(f8 x, f8 y, f8 c) { return f8{c.a + x.a * y.a, c.b + x.b * y.b}; }
inline v4f v4_select(v4i mask, v4f yes, v4f no) {
  return reinterpret_cast<v4f>((reinterpret_cast<v4i>(yes) & mask) |
                               (reinterpret_cast<v4i>(no) & ~mask));
}
inline f8 f8_max(f8 x, f8 m) {
  return f8{v4_select(x.a > m.a, x.a, m.a), v4_select(x.b > m.b, x.b, m.b)};
}
inline float f8_sum(f8 x) {
  alignas(16) float v[8];
  f8_store(v, x);
  return tree8(v);
}
inline f8 f8_sum8(const f8* x) {
  alignas(16) float r[8];
  for (int i = 0; i < 8; ++i) r[i] = f8_sum(x[i]);
  return f8_load(r);
}
inline float f8_max_lane(f8 x) {
  alignas(16) float v[8];
  f8_store(v, x);
  float m = v[0];
  for (int j = 1; j < 8; ++j) m = v[j] > m ? v[j] : m;
  return m;
}
inline v4f exp4_nonpositive(v4f x) {  // exp_nonpositive, four at a time
  const v4i low = x < -104.0f;  // false for NaN: NaN stays NaN
  x = v4_select(low, v4f{-104.0f, -104.0f, -104.0f, -104.0f}, x);
  const float magic = 12582912.0f;
  const v4f shifted = x * 1.44269504088896341f + magic;
  const v4f n = shifted - magic;
  const v4i ni = reinterpret_cast<v4i>(shifted) - reinterpret_cast<v4i>(v4f{magic, magic, magic, magic});
  v4f r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  v4f p = 1.9875691500e-4f * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const v4i n_hi = ni >> 1;
  const v4f s_hi = reinterpret_cast<v4f>((n_hi + 127) << 23);
  const v4f s_lo = reinterpret_cast<v4f>((ni - n_hi + 127) << 23);
  return (p * s_hi) * s_lo;
}
inline f8 f8_exp_nonpositive(f8 x) { return f8{exp4_nonpositive(x.a), exp4_nonpositive(x.b)}; }

}  // namespace simd_portable

// ---- simd_avx2: one __m256, AVX2 + FMA + F16C ----
#if PDROP_DETAIL_HAVE_AVX2
}  // namespace detail
PDROP_END_NAMESPACE
PDROP_DETAIL_AVX2_BEGIN
PDROP_BEGIN_NAMESPACE
namespace detail {
namespace simd_avx2 {

struct f8 {
  __m256 v;
};
// Lanes are the chunk's elements in order, for every element type.
template <class T>
inline constexpr bool kLanesInterleaved = false;
// The ymm registers the compiler may allocate here: 32 when this TU's own
// flags include AVX-512VL (EVEX encodes ymm16-31), otherwise 16.
#if defined(__AVX512VL__)
inline constexpr int kVectorRegs = 32;
#else
inline constexpr int kVectorRegs = 16;
#endif
// Accumulators a kernel tile may keep in registers, two registers left for
// the chunks being multiplied.
inline constexpr int kMaxAccs = kVectorRegs - 2;
// A GQA tile (detail/score_kernels-inl.hpp) holds QB x R accumulators, its
// R K chunks and one query chunk in registers: R = (registers - 1) /
// (QB + 1) K rows for a block of QB <= kQueryBlock query rows (16
// registers: 4 x 3; 32: 8 x 3, so a Qwen2-VL group of 7 is one block).
// Each step then loads QB + R chunks for QB x R fused multiply-adds; with
// the loads folded into the multiply-adds (QB x R loads) the tile was bound
// by the load ports at 0.45-0.5 of the FMA peak (Zen 4 VM, g++ 12).
inline constexpr int kQueryBlock = kVectorRegs == 32 ? 8 : 4;
template <int QB>
inline constexpr int kGroupTileRows = (kVectorRegs - 1) / (QB + 1);
// Keeps a loaded chunk in a register: g++ otherwise folds the load into
// every multiply-add that uses it, one load per use.
inline void f8_pin(f8& a) {
#if defined(__AVX512VL__)
  __asm__("" : "+v"(a.v));
#else
  __asm__("" : "+x"(a.v));
#endif
}
inline f8 f8_zero() { return {_mm256_setzero_ps()}; }
inline f8 f8_set1(float x) { return {_mm256_set1_ps(x)}; }
inline f8 f8_load(const float* p) { return {_mm256_loadu_ps(p)}; }
inline f8 f8_load(const half* p) {
  return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}
inline f8 f8_load(const bfloat16* p) {
  const __m256i w =
      _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))};
}
inline void f8_store(float* p, f8 a) { _mm256_storeu_ps(p, a.v); }
inline f8 f8_add(f8 a, f8 b) { return {_mm256_add_ps(a.v, b.v)}; }
inline f8 f8_sub(f8 a, f8 b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline f8 f8_mul(f8 a, f8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
// a * b + c
inline f8 f8_fma(f8 a, f8 b, f8 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
// max(x, m), keeping m where x is NaN
inline f8 f8_max(f8 x, f8 m) { return {_mm256_max_ps(x.v, m.v)}; }
inline float f8_sum(f8 a) {
  alignas(32) float v[8];
  _mm256_store_ps(v, a.v);
  return tree8(v);
}
// Lane i = tree8 of a[i]'s lanes, for eight vectors at once.
inline f8 f8_sum8(const f8* a) {
  const __m256 h01 = _mm256_hadd_ps(a[0].v, a[1].v), h23 = _mm256_hadd_ps(a[2].v, a[3].v);
  const __m256 h45 = _mm256_hadd_ps(a[4].v, a[5].v), h67 = _mm256_hadd_ps(a[6].v, a[7].v);
  const __m256 q0 = _mm256_hadd_ps(h01, h23), q1 = _mm256_hadd_ps(h45, h67);
  // q0 = [a0..a3 lanes 0-3 | a0..a3 lanes 4-7], q1 the same for a4..a7.
  return {_mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20),
                        _mm256_permute2f128_ps(q0, q1, 0x31))};
}
inline float f8_max_lane(f8 a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
inline f8 f8_exp_nonpositive(f8 a) {
  __m256 x = a.v;
  const __m256 lo = _mm256_set1_ps(-104.0f);
  // Keep NaN lanes NaN: max(x, lo) returns lo for NaN x, so blend them back.
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  x = _mm256_blendv_ps(_mm256_max_ps(x, lo), x, nan);
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  const __m256 shifted = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
  const __m256 n = _mm256_sub_ps(shifted, magic);
  const __m256i ni =
      _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_castps_si256(magic));
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256i n_hi = _mm256_srai_epi32(ni, 1);
  const __m256 s_hi = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n_hi, bias), 23));
  const __m256 s_lo = _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, n_hi), bias), 23));
  return {_mm256_mul_ps(_mm256_mul_ps(p, s_hi), s_lo)};
}

}  // namespace simd_avx2
}  // namespace detail
PDROP_END_NAMESPACE
PDROP_DETAIL_AVX2_END
PDROP_BEGIN_NAMESPACE
namespace detail {
#endif  // PDROP_DETAIL_HAVE_AVX2

}  // namespace detail
PDROP_END_NAMESPACE

#endif  // PDROP_DETAIL_SIMD_HPP
