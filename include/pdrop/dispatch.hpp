// pdrop/dispatch.hpp - which SIMD kernels scoring runs, chosen at run time.
//
// Scoring (pdrop/score.hpp; rank_and_drop, the strategies and the
// tensor-parallel partial scores all call it) is pdrop's one compute-bound
// kernel. It is compiled for each target the build allows, and each call
// runs the target simd_target() names:
//
//   portable  8 floats as two 4-float GNU vectors (SSE2 on x86-64, NEON on
//             AArch64). Every build.
//   avx2      8 floats as one AVX register, with FMA and F16C. x86-64 with
//             GCC or clang, even when the translation unit is built for
//             baseline x86-64 (the kernels carry their own target
//             attribute); not under PDROP_NO_SIMD, and under
//             PDROP_NO_DISPATCH only when the TU itself is built with
//             -mavx2 -mfma -mf16c (or -march=x86-64-v3 and up).
//
// By default the best target the CPU runs: avx2 when CPUID reports AVX2,
// FMA and F16C and the OS saves the AVX registers (XGETBV), else portable.
// The environment variable PDROP_SIMD (read once, at the first call), or
// set_simd_target, chooses another: for tests, and for comparing targets.
// This is Highway's run-time dispatch (HWY_DYNAMIC_DISPATCH); the variable
// plays the part of oneDNN's ONEDNN_MAX_CPU_ISA.
//
// Each target's results are bit-identical from run to run and across
// thread counts; the two targets may differ in the last bits (FMA rounds
// once where the portable kernels round twice).
//
// The choice is held per pdrop inline namespace (pdrop/config.hpp): TUs
// built for different CPU levels each keep their own.
#ifndef PDROP_DISPATCH_HPP
#define PDROP_DISPATCH_HPP

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "pdrop/config.hpp"
#include "pdrop/errors.hpp"

#if PDROP_DETAIL_HAVE_AVX2
#include <cpuid.h>
#endif

PDROP_BEGIN_NAMESPACE

// A SIMD target of the scoring kernel (see the top of this file).
enum class SimdTarget : std::int32_t { portable = 0, avx2 = 1 };

// "portable" or "avx2"; "invalid" for a value that is neither.
constexpr const char* to_string(SimdTarget t) {
  switch (t) {
    case SimdTarget::portable: return "portable";
    case SimdTarget::avx2: return "avx2";
  }
  return "invalid";
}

namespace detail {

// CPUID leaf 1: FMA (ECX bit 12), OSXSAVE (27), AVX (28), F16C (29); XGETBV
// XCR0 bits 1-2: the OS saves the SSE and AVX registers; CPUID leaf 7.0:
// AVX2 (EBX bit 5). Intel SDM vol. 1, 14.3 "Detection of Intel AVX
// instructions".
inline bool cpu_runs_avx2() {
#if PDROP_DETAIL_HAVE_AVX2
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return false;
  const unsigned leaf1 = (1u << 12) | (1u << 27) | (1u << 28) | (1u << 29);
  if ((c & leaf1) != leaf1) return false;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 6u) != 6u) return false;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  return (b & (1u << 5)) != 0;
#else
  return false;
#endif
}

inline bool cpu_runs_avx2_cached() {
  static const bool runs = cpu_runs_avx2();
  return runs;
}

// -1: no override (PDROP_SIMD, else the best); otherwise a SimdTarget.
inline std::atomic<std::int32_t>& simd_override() {
  static std::atomic<std::int32_t> value{-1};
  return value;
}

// PDROP_SIMD's value as a target: 0 / 1 for "portable" / "avx2", -1 when
// unset, empty or "best", -2 for anything else.
inline std::int32_t parse_simd_target(const char* value) {
  if (value == nullptr || *value == '\0' || std::strcmp(value, "best") == 0) return -1;
  if (std::strcmp(value, "portable") == 0) return 0;
  if (std::strcmp(value, "avx2") == 0) return 1;
  return -2;
}

}  // namespace detail

// True when this build carries the target's kernels.
constexpr bool simd_target_compiled(SimdTarget t) {
  return t == SimdTarget::portable || (t == SimdTarget::avx2 && PDROP_DETAIL_HAVE_AVX2);
}

// True when this build carries the target and this CPU runs it.
inline bool simd_target_supported(SimdTarget t) {
  if (t == SimdTarget::portable) return true;
  return t == SimdTarget::avx2 && simd_target_compiled(t) && detail::cpu_runs_avx2_cached();
}

namespace detail {
// Fails (value_error) unless `t` is supported here, naming it as `what`
// ("PDROP_SIMD=avx2", "target avx2") and saying what lacks it.
inline void require_supported(const char* fn, const char* what_prefix, const char* what,
                              SimdTarget t) {
  if (!simd_target_supported(t))
    fail<value_error>(fn, what_prefix, what, " is not supported ",
                      simd_target_compiled(t) ? "by this CPU" : "by this build");
}
}  // namespace detail

// The fastest supported target.
inline SimdTarget best_simd_target() {
  return simd_target_supported(SimdTarget::avx2) ? SimdTarget::avx2 : SimdTarget::portable;
}

// The target scoring runs now: set_simd_target's, else PDROP_SIMD's, else
// best_simd_target(). Throws pdrop::value_error, naming the variable and
// its value, when PDROP_SIMD names no target ("portable", "avx2", "best")
// or one that is not supported here.
inline SimdTarget simd_target() {
  const std::int32_t forced = detail::simd_override().load(std::memory_order_relaxed);
  if (forced >= 0) return static_cast<SimdTarget>(forced);
  static const char* const env = std::getenv("PDROP_SIMD");
  static const std::int32_t from_env = detail::parse_simd_target(env);
  if (from_env == -1) return best_simd_target();
  if (from_env == -2)
    detail::fail<value_error>("pdrop::simd_target", "PDROP_SIMD=", env,
                              " names no SIMD target (portable, avx2, best)");
  const auto t = static_cast<SimdTarget>(from_env);
  detail::require_supported("pdrop::simd_target", "PDROP_SIMD=", env, t);
  return t;
}

// Makes scoring run `target` from now on, in every thread. Throws
// pdrop::value_error naming the target when it is not a SimdTarget or not
// supported (simd_target_supported), and then changes nothing.
inline void set_simd_target(SimdTarget target) {
  const auto v = static_cast<std::int32_t>(target);
  if (std::strcmp(to_string(target), "invalid") == 0)
    detail::fail<value_error>("pdrop::set_simd_target", "target (", v,
                              ") is not a SimdTarget");
  detail::require_supported("pdrop::set_simd_target", "target ", to_string(target), target);
  detail::simd_override().store(v, std::memory_order_relaxed);
}

// Undoes set_simd_target: back to PDROP_SIMD, else the best target.
inline void reset_simd_target() { detail::simd_override().store(-1, std::memory_order_relaxed); }

PDROP_END_NAMESPACE

#endif  // PDROP_DISPATCH_HPP
