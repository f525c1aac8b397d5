// pdrop/config.hpp - the version, and the namespace every pdrop name lives
// in. Includes nothing.
//
// Link safety. pdrop is header-only, so each translation unit (TU) compiles
// its own copy of every pdrop function, with that TU's flags. Compiled with
// -mavx2, even scalar code may use AVX encodings; if two TUs of one program
// were built for different CPUs and shared a function's name, the linker
// would keep one copy for both, and the baseline TU could run AVX code on a
// CPU without it (SIGILL). So everything pdrop defines lives in an inline
// namespace named after the CPU level the TU was built for (the x86-64
// psABI micro-architecture levels that -march=x86-64-v2/-v3/-v4 select):
//
//   x86_64       baseline x86-64 (SSE2)        x86_64_v3  + AVX2, FMA, F16C
//   x86_64_v2    + SSE4.2                      x86_64_v4  + AVX-512F
//   x86_64_avx   + AVX, without all of v3      aarch64    AArch64 (NEON)
//   aarch64_sve  + SVE                          generic    anything else
//
// with "_nosimd" appended under PDROP_NO_SIMD and "_nodispatch" under
// PDROP_NO_DISPATCH. The inline namespace keeps user code unchanged
// (pdrop::Schedule names pdrop::x86_64::Schedule), and two optimised TUs
// built for different levels share no symbol of pdrop's operators (score,
// select, compact, rank & drop; the std templates they instantiate are
// named in pdrop's namespace too, detail/std.hpp): tests/link/ checks the
// object files, and runs the baseline copy on an emulated CPU without AVX.
// Not covered: flag sets that differ within one level (-msse4.1 against
// baseline, -mavx2 -mfma -mf16c against -march=x86-64-v3), std::vector
// members of the bookkeeping classes (Schedule, SequenceState, CostReport:
// std::vector<double> and the like are the same symbols in every TU), and
// -O0 builds, which keep small std and Eigen helpers out of line. Passing a
// pdrop object through a function between TUs of different levels is a
// link error, not a silent mix. So: build the TUs that use pdrop with the
// same flags, and let run-time dispatch (pdrop/dispatch.hpp) pick the
// fastest kernels.
// The same scheme as fmt's versioned inline namespace (FMT_BEGIN_NAMESPACE)
// and Highway's per-target namespaces (HWY_NAMESPACE).
#ifndef PDROP_CONFIG_HPP
#define PDROP_CONFIG_HPP

#define PDROP_VERSION_MAJOR 0
#define PDROP_VERSION_MINOR 1
#define PDROP_VERSION_PATCH 0

#define PDROP_DETAIL_CAT2(a, b) a##b
#define PDROP_DETAIL_CAT(a, b) PDROP_DETAIL_CAT2(a, b)

#if defined(__x86_64__) || defined(_M_X64)
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define PDROP_DETAIL_LEVEL x86_64_v4
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define PDROP_DETAIL_LEVEL x86_64_v3
#elif defined(__AVX__)
#define PDROP_DETAIL_LEVEL x86_64_avx
#elif defined(__SSE4_2__)
#define PDROP_DETAIL_LEVEL x86_64_v2
#else
#define PDROP_DETAIL_LEVEL x86_64
#endif
#elif defined(__aarch64__)
#if defined(__ARM_FEATURE_SVE)
#define PDROP_DETAIL_LEVEL aarch64_sve
#else
#define PDROP_DETAIL_LEVEL aarch64
#endif
#else
#define PDROP_DETAIL_LEVEL generic
#endif

// The inline namespace of this TU's pdrop (see above), as a token.
#if defined(PDROP_NO_SIMD)
#define PDROP_ABI_NAMESPACE PDROP_DETAIL_CAT(PDROP_DETAIL_LEVEL, _nosimd)
#elif defined(PDROP_NO_DISPATCH)
#define PDROP_ABI_NAMESPACE PDROP_DETAIL_CAT(PDROP_DETAIL_LEVEL, _nodispatch)
#else
#define PDROP_ABI_NAMESPACE PDROP_DETAIL_LEVEL
#endif

#define PDROP_DETAIL_STR2(x) #x
#define PDROP_DETAIL_STR(x) PDROP_DETAIL_STR2(x)
// The same as a string literal, e.g. "x86_64_v3".
#define PDROP_ABI_NAME PDROP_DETAIL_STR(PDROP_ABI_NAMESPACE)

#define PDROP_BEGIN_NAMESPACE \
  namespace pdrop {           \
  inline namespace PDROP_ABI_NAMESPACE {
#define PDROP_END_NAMESPACE \
  }                         \
  }

// PDROP_EXCEPTIONS: 1 when the TU is built with exceptions; without them
// (-fno-exceptions) errors go to the error handler (pdrop/errors.hpp).
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define PDROP_EXCEPTIONS 1
#else
#define PDROP_EXCEPTIONS 0
#endif

// ---- SIMD targets of the scoring kernel (pdrop/dispatch.hpp) ----
// PDROP_DETAIL_HAVE_AVX2: this TU compiles the simd_avx2 target;
// PDROP_DETAIL_AVX2_IS_BASELINE: with its own flags (no pragma needed).
#if !defined(PDROP_NO_SIMD) && (defined(__x86_64__) || defined(_M_X64)) && \
    (defined(__GNUC__) || defined(__clang__))
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define PDROP_DETAIL_HAVE_AVX2 1
#define PDROP_DETAIL_AVX2_IS_BASELINE 1
#elif !defined(PDROP_NO_DISPATCH)
#define PDROP_DETAIL_HAVE_AVX2 1
#define PDROP_DETAIL_AVX2_IS_BASELINE 0
#endif
#endif
#ifndef PDROP_DETAIL_HAVE_AVX2
#define PDROP_DETAIL_HAVE_AVX2 0
#define PDROP_DETAIL_AVX2_IS_BASELINE 0
#endif

// PDROP_DETAIL_AVX2_BEGIN ... PDROP_DETAIL_AVX2_END: every function defined
// between them, lambdas and templates included, is compiled for AVX2 + FMA
// + F16C (the way Highway's HWY_BEFORE_NAMESPACE does it).
#if PDROP_DETAIL_HAVE_AVX2 && !PDROP_DETAIL_AVX2_IS_BASELINE
#if defined(__clang__)
#define PDROP_DETAIL_AVX2_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,f16c\"))), apply_to = function)")
#define PDROP_DETAIL_AVX2_END _Pragma("clang attribute pop")
#else
#define PDROP_DETAIL_AVX2_BEGIN \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c\")")
#define PDROP_DETAIL_AVX2_END _Pragma("GCC pop_options")
#endif
#else
#define PDROP_DETAIL_AVX2_BEGIN
#define PDROP_DETAIL_AVX2_END
#endif

#endif  // PDROP_CONFIG_HPP
