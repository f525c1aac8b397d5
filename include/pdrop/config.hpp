// pdrop/config.hpp - the version, and the namespace every pdrop name lives
// in. Includes nothing.
//
// Link safety. pdrop is header-only, so each translation unit (TU) compiles
// its own copy of every pdrop function, with that TU's flags. Compiled with
// -mavx2, even scalar code may use AVX encodings; if two TUs of one program
// were built for different CPUs and shared a function's name, the linker
// would keep one copy for both, and the baseline TU could run AVX code on a
// CPU without it (SIGILL). So everything pdrop defines lives in an inline
// namespace named after the CPU features the TU was built for: the x86-64
// psABI level whose features are all enabled (what -march=x86-64-v2/-v3/-v4
// select), then each further feature pdrop tracks, in a fixed order:
//
//   x86_64                       baseline x86-64 (SSE2)
//   x86_64_v3                    -march=x86-64-v3
//   x86_64_v2_avx_avx2_fma_f16c  -mavx2 -mfma -mf16c (v2, plus these; not v3)
//   x86_64_sse3_ssse3_sse41      -msse4.1
//   aarch64, aarch64_fp16_dotprod, ...    AArch64 and its extensions
//   generic                      anything else
//
// Tracked on x86-64: the features of v2, v3 and v4, and AVX-512 VNNI, BF16,
// FP16, VBMI, IFMA and AVX-VNNI; on AArch64: CRC, LSE, FP16, DotProd, BF16,
// I8MM, SVE, SVE2. The name ends with "_nosimd" under PDROP_NO_SIMD and
// "_nodispatch" under PDROP_NO_DISPATCH. The inline namespace keeps user
// code unchanged (pdrop::Schedule names pdrop::x86_64::Schedule), and two
// optimised TUs built for different features share no symbol (score,
// select, compact, rank & drop, the schedule, the record, the Pruner, the
// FLOPs model; the std templates they instantiate are named in pdrop's
// namespace too, detail/std.hpp): tests/link/ checks the object files, and
// runs the baseline copy on an emulated CPU without AVX. Not covered:
// features pdrop does not track (-mavx512vp2intersect against
// -march=x86-64-v4, say), and -O0 builds, which keep small std and Eigen
// helpers out of line. Passing a
// pdrop object through a function between TUs built for different features
// is a link error, not a silent mix. So: build the TUs that use pdrop with
// the same flags, and let run-time dispatch (pdrop/dispatch.hpp) pick the
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
// x86-64 psABI levels, each only when all of its features are enabled.
#if defined(__SSE3__) && \
    defined(__SSSE3__) && \
    defined(__SSE4_1__) && \
    defined(__SSE4_2__) && \
    defined(__POPCNT__)
#define PDROP_DETAIL_V2 1
#else
#define PDROP_DETAIL_V2 0
#endif
#if PDROP_DETAIL_V2 && defined(__AVX__) && \
    defined(__AVX2__) && \
    defined(__FMA__) && \
    defined(__F16C__) && \
    defined(__BMI__) && \
    defined(__BMI2__) && \
    defined(__LZCNT__) && \
    defined(__MOVBE__)
#define PDROP_DETAIL_V3 1
#else
#define PDROP_DETAIL_V3 0
#endif
#if PDROP_DETAIL_V3 && defined(__AVX512F__) && \
    defined(__AVX512BW__) && \
    defined(__AVX512CD__) && \
    defined(__AVX512DQ__) && \
    defined(__AVX512VL__)
#define PDROP_DETAIL_V4 1
#else
#define PDROP_DETAIL_V4 0
#endif
#if PDROP_DETAIL_V4
#define PDROP_DETAIL_BASE x86_64_v4
#elif PDROP_DETAIL_V3
#define PDROP_DETAIL_BASE x86_64_v3
#elif PDROP_DETAIL_V2
#define PDROP_DETAIL_BASE x86_64_v2
#else
#define PDROP_DETAIL_BASE x86_64
#endif
// Each feature enabled beyond the level, in this order.
#if defined(__SSE3__) && !PDROP_DETAIL_V2
#define PDROP_DETAIL_F00 _sse3
#else
#define PDROP_DETAIL_F00
#endif
#if defined(__SSSE3__) && !PDROP_DETAIL_V2
#define PDROP_DETAIL_F01 _ssse3
#else
#define PDROP_DETAIL_F01
#endif
#if defined(__SSE4_1__) && !PDROP_DETAIL_V2
#define PDROP_DETAIL_F02 _sse41
#else
#define PDROP_DETAIL_F02
#endif
#if defined(__SSE4_2__) && !PDROP_DETAIL_V2
#define PDROP_DETAIL_F03 _sse42
#else
#define PDROP_DETAIL_F03
#endif
#if defined(__POPCNT__) && !PDROP_DETAIL_V2
#define PDROP_DETAIL_F04 _popcnt
#else
#define PDROP_DETAIL_F04
#endif
#if defined(__AVX__) && !PDROP_DETAIL_V3
#define PDROP_DETAIL_F05 _avx
#else
#define PDROP_DETAIL_F05
#endif
#if defined(__AVX2__) && !PDROP_DETAIL_V3
#define PDROP_DETAIL_F06 _avx2
#else
#define PDROP_DETAIL_F06
#endif
#if defined(__FMA__) && !PDROP_DETAIL_V3
#define PDROP_DETAIL_F07 _fma
#else
#define PDROP_DETAIL_F07
#endif
#if defined(__F16C__) && !PDROP_DETAIL_V3
#define PDROP_DETAIL_F08 _f16c
#else
#define PDROP_DETAIL_F08
#endif
#if defined(__BMI__) && !PDROP_DETAIL_V3
#define PDROP_DETAIL_F09 _bmi
#else
#define PDROP_DETAIL_F09
#endif
#if defined(__BMI2__) && !PDROP_DETAIL_V3
#define PDROP_DETAIL_F10 _bmi2
#else
#define PDROP_DETAIL_F10
#endif
#if defined(__LZCNT__) && !PDROP_DETAIL_V3
#define PDROP_DETAIL_F11 _lzcnt
#else
#define PDROP_DETAIL_F11
#endif
#if defined(__MOVBE__) && !PDROP_DETAIL_V3
#define PDROP_DETAIL_F12 _movbe
#else
#define PDROP_DETAIL_F12
#endif
#if defined(__AVX512F__) && !PDROP_DETAIL_V4
#define PDROP_DETAIL_F13 _avx512f
#else
#define PDROP_DETAIL_F13
#endif
#if defined(__AVX512BW__) && !PDROP_DETAIL_V4
#define PDROP_DETAIL_F14 _avx512bw
#else
#define PDROP_DETAIL_F14
#endif
#if defined(__AVX512CD__) && !PDROP_DETAIL_V4
#define PDROP_DETAIL_F15 _avx512cd
#else
#define PDROP_DETAIL_F15
#endif
#if defined(__AVX512DQ__) && !PDROP_DETAIL_V4
#define PDROP_DETAIL_F16 _avx512dq
#else
#define PDROP_DETAIL_F16
#endif
#if defined(__AVX512VL__) && !PDROP_DETAIL_V4
#define PDROP_DETAIL_F17 _avx512vl
#else
#define PDROP_DETAIL_F17
#endif
#if defined(__AVX512VNNI__)
#define PDROP_DETAIL_F18 _avx512vnni
#else
#define PDROP_DETAIL_F18
#endif
#if defined(__AVX512BF16__)
#define PDROP_DETAIL_F19 _avx512bf16
#else
#define PDROP_DETAIL_F19
#endif
#if defined(__AVX512FP16__)
#define PDROP_DETAIL_F20 _avx512fp16
#else
#define PDROP_DETAIL_F20
#endif
#if defined(__AVX512VBMI__)
#define PDROP_DETAIL_F21 _avx512vbmi
#else
#define PDROP_DETAIL_F21
#endif
#if defined(__AVX512IFMA__)
#define PDROP_DETAIL_F22 _avx512ifma
#else
#define PDROP_DETAIL_F22
#endif
#if defined(__AVXVNNI__)
#define PDROP_DETAIL_F23 _avxvnni
#else
#define PDROP_DETAIL_F23
#endif
#elif defined(__aarch64__)
#define PDROP_DETAIL_BASE aarch64
#if defined(__ARM_FEATURE_CRC32)
#define PDROP_DETAIL_F00 _crc
#else
#define PDROP_DETAIL_F00
#endif
#if defined(__ARM_FEATURE_ATOMICS)
#define PDROP_DETAIL_F01 _lse
#else
#define PDROP_DETAIL_F01
#endif
#if defined(__ARM_FEATURE_FP16_VECTOR_ARITHMETIC)
#define PDROP_DETAIL_F02 _fp16
#else
#define PDROP_DETAIL_F02
#endif
#if defined(__ARM_FEATURE_DOTPROD)
#define PDROP_DETAIL_F03 _dotprod
#else
#define PDROP_DETAIL_F03
#endif
#if defined(__ARM_FEATURE_BF16_VECTOR_ARITHMETIC)
#define PDROP_DETAIL_F04 _bf16
#else
#define PDROP_DETAIL_F04
#endif
#if defined(__ARM_FEATURE_MATMUL_INT8)
#define PDROP_DETAIL_F05 _i8mm
#else
#define PDROP_DETAIL_F05
#endif
#if defined(__ARM_FEATURE_SVE)
#define PDROP_DETAIL_F06 _sve
#else
#define PDROP_DETAIL_F06
#endif
#if defined(__ARM_FEATURE_SVE2)
#define PDROP_DETAIL_F07 _sve2
#else
#define PDROP_DETAIL_F07
#endif
#else
#define PDROP_DETAIL_BASE generic
#endif
// Features an architecture does not track expand to nothing.
#ifndef PDROP_DETAIL_F00
#define PDROP_DETAIL_F00
#endif
#ifndef PDROP_DETAIL_F01
#define PDROP_DETAIL_F01
#endif
#ifndef PDROP_DETAIL_F02
#define PDROP_DETAIL_F02
#endif
#ifndef PDROP_DETAIL_F03
#define PDROP_DETAIL_F03
#endif
#ifndef PDROP_DETAIL_F04
#define PDROP_DETAIL_F04
#endif
#ifndef PDROP_DETAIL_F05
#define PDROP_DETAIL_F05
#endif
#ifndef PDROP_DETAIL_F06
#define PDROP_DETAIL_F06
#endif
#ifndef PDROP_DETAIL_F07
#define PDROP_DETAIL_F07
#endif
#ifndef PDROP_DETAIL_F08
#define PDROP_DETAIL_F08
#endif
#ifndef PDROP_DETAIL_F09
#define PDROP_DETAIL_F09
#endif
#ifndef PDROP_DETAIL_F10
#define PDROP_DETAIL_F10
#endif
#ifndef PDROP_DETAIL_F11
#define PDROP_DETAIL_F11
#endif
#ifndef PDROP_DETAIL_F12
#define PDROP_DETAIL_F12
#endif
#ifndef PDROP_DETAIL_F13
#define PDROP_DETAIL_F13
#endif
#ifndef PDROP_DETAIL_F14
#define PDROP_DETAIL_F14
#endif
#ifndef PDROP_DETAIL_F15
#define PDROP_DETAIL_F15
#endif
#ifndef PDROP_DETAIL_F16
#define PDROP_DETAIL_F16
#endif
#ifndef PDROP_DETAIL_F17
#define PDROP_DETAIL_F17
#endif
#ifndef PDROP_DETAIL_F18
#define PDROP_DETAIL_F18
#endif
#ifndef PDROP_DETAIL_F19
#define PDROP_DETAIL_F19
#endif
#ifndef PDROP_DETAIL_F20
#define PDROP_DETAIL_F20
#endif
#ifndef PDROP_DETAIL_F21
#define PDROP_DETAIL_F21
#endif
#ifndef PDROP_DETAIL_F22
#define PDROP_DETAIL_F22
#endif
#ifndef PDROP_DETAIL_F23
#define PDROP_DETAIL_F23
#endif
#define PDROP_DETAIL_LEVEL \
  PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_CAT(PDROP_DETAIL_BASE, PDROP_DETAIL_F00), PDROP_DETAIL_F01), PDROP_DETAIL_F02), PDROP_DETAIL_F03), PDROP_DETAIL_F04), PDROP_DETAIL_F05), PDROP_DETAIL_F06), PDROP_DETAIL_F07), PDROP_DETAIL_F08), PDROP_DETAIL_F09), PDROP_DETAIL_F10), PDROP_DETAIL_F11), PDROP_DETAIL_F12), PDROP_DETAIL_F13), PDROP_DETAIL_F14), PDROP_DETAIL_F15), PDROP_DETAIL_F16), PDROP_DETAIL_F17), PDROP_DETAIL_F18), PDROP_DETAIL_F19), PDROP_DETAIL_F20), PDROP_DETAIL_F21), PDROP_DETAIL_F22), PDROP_DETAIL_F23)

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

// IEEE float semantics. pdrop's results are defined by its order of float
// operations (bit-identical across thread counts, tile shapes and the
// golden cases); its exp rounds with a 1.5 * 2^23 shift that reassociation
// folds away (scores then off by up to 44%: measured with g++ 12
// -ffast-math); its argument checks find NaN and Inf, which
// -ffinite-math-only assumes away; the fp16 chain divides by sqrt(dim)
// as PyTorch does, which -freciprocal-math turns into a multiply. A TU
// built so cannot include pdrop unless it defines PDROP_ALLOW_FAST_MATH.
// That risk reaches the whole program, not just that TU: its copies of
// pdrop's functions share the inline namespace above with every other
// TU's, so the linker may keep a fast-math copy for all of them (and
// -ffast-math at link time sets flush-to-zero for the process). No pragma
// around pdrop's code keeps it exact either: GCC inlines pdrop's code into
// fast-math callers and optimises it there. Include pdrop
// from a TU built without them (in CMake: set_source_files_properties(...
// PROPERTIES COMPILE_OPTIONS -fno-fast-math)), or call the C API
// (pdrop/c_api.h) from a TU built so. Detected: __FAST_MATH__ (-ffast-math,
// -Ofast), __FINITE_MATH_ONLY__, and GCC's __ASSOCIATIVE_MATH__ and
// __RECIPROCAL_MATH__ (clang defines no macro for the last two).
#if !defined(PDROP_ALLOW_FAST_MATH) &&                                                      \
    (defined(__FAST_MATH__) || (defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__) || \
     defined(__ASSOCIATIVE_MATH__) || defined(__RECIPROCAL_MATH__))
#error "pdrop: this translation unit is built with -ffast-math, -Ofast, -ffinite-math-only, -fassociative-math or -freciprocal-math, under which pdrop's scores and NaN checks are wrong (see pdrop/config.hpp). Build the file that includes pdrop with -fno-fast-math (or call the C API from such a file), or define PDROP_ALLOW_FAST_MATH to include it anyway."
#endif

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
