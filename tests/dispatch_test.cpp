// Run-time dispatch (pdrop/dispatch.hpp): the default target follows what
// the CPU reports (read here from /proc/cpuinfo, not from CPUID as the
// library does), every supported target scores like the naive reference,
// and bad targets are refused without changing the choice.
//
// scripts/test.sh runs the whole suite a second time with PDROP_SIMD set to
// the other target, and PDROP_EXPECT_SIMD to the target that must then run,
// so that each test of the suite passes on each target.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using pdrop::SimdTarget;

// The flags of the first "flags" line of /proc/cpuinfo (x86 Linux); empty
// when there is none.
std::set<std::string> cpuinfo_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> flags;
    for (std::string w; words >> w;) flags.insert(w);
    return flags;
  }
  return {};
}

// Restores the default choice at the end of a test that sets one.
struct ResetTarget {
  ~ResetTarget() { pdrop::reset_simd_target(); }
};

TEST(Dispatch, BestTargetIsTheOneTheCpuReports) {
  const std::set<std::string> flags = cpuinfo_flags();
  const bool cpu_avx2 = flags.count("avx2") && flags.count("fma") && flags.count("f16c");
  const SimdTarget want = cpu_avx2 && pdrop::simd_target_compiled(SimdTarget::avx2)
                              ? SimdTarget::avx2
                              : SimdTarget::portable;
  EXPECT_EQ(pdrop::best_simd_target(), want) << "cpuinfo flags: " << flags.size();
  EXPECT_EQ(pdrop::simd_target_supported(SimdTarget::avx2), want == SimdTarget::avx2);
  EXPECT_TRUE(pdrop::simd_target_supported(SimdTarget::portable));
#if defined(__x86_64__) && !defined(PDROP_NO_SIMD)
  // Every x86-64 build carries the AVX2 kernels, whatever its -m flags.
  EXPECT_TRUE(pdrop::simd_target_compiled(SimdTarget::avx2));
#endif
}

// scripts/test.sh says which target each of its runs must use: a flag or
// variable lost on the way would otherwise test one target twice.
TEST(Dispatch, RunsTheTargetTheTestRunAskedFor) {
  const char* want = std::getenv("PDROP_EXPECT_SIMD");
  RecordProperty("simd_target", pdrop::to_string(pdrop::simd_target()));
  RecordProperty("abi", PDROP_ABI_NAME);
  if (want == nullptr) {
    if (std::getenv("PDROP_SIMD") == nullptr) {
      EXPECT_EQ(pdrop::simd_target(), pdrop::best_simd_target());
    }
    return;
  }
  EXPECT_STREQ(pdrop::to_string(pdrop::simd_target()), want);
}

TEST(Dispatch, EverySupportedTargetScoresLikeTheReference) {
  ResetTarget reset;
  const pdrop_test::ScoreCase c{8, 2, 3, 67, 90, {{3, 40}, {50, 30}}, {89, 60, 20}};
  std::mt19937 rng(7);
  for (const bool nhd : {false, true}) {
    pdrop_test::ScoreProblem<pdrop::half> x(c, rng, nhd, 5);
    const std::vector<double> ref = x.reference();
    for (const SimdTarget t : {SimdTarget::portable, SimdTarget::avx2}) {
      if (!pdrop::simd_target_supported(t)) continue;
      SCOPED_TRACE(pdrop::to_string(t));
      pdrop::set_simd_target(t);
      ASSERT_EQ(pdrop::simd_target(), t);
      pdrop::Workspace ws;
      std::vector<float> scores(static_cast<std::size_t>(c.image_tokens()), -1.0f);
      pdrop::score_image_tokens<pdrop::half, pdrop::half>(x.qv, c.pos, x.kv, c.spans, ws,
                                                          scores);
      for (std::size_t i = 0; i < ref.size(); ++i)
        EXPECT_NEAR(scores[i], ref[i], 2e-5 * ref[i] + 1e-7) << "image token " << i;
    }
  }
}

TEST(Dispatch, BadTargetsAreRefusedAndChangeNothing) {
  ResetTarget reset;
  pdrop::set_simd_target(SimdTarget::portable);
  const auto bogus = static_cast<SimdTarget>(7);
  EXPECT_STREQ(pdrop::to_string(bogus), "invalid");
  try {
    pdrop::set_simd_target(bogus);
    ADD_FAILURE() << "no error";
  } catch (const pdrop::value_error& e) {
    EXPECT_STREQ(e.what(), "pdrop::set_simd_target: target (7) is not a SimdTarget");
  }
  EXPECT_EQ(pdrop::simd_target(), SimdTarget::portable);
  if (!pdrop::simd_target_supported(SimdTarget::avx2)) {
    EXPECT_THROW(pdrop::set_simd_target(SimdTarget::avx2), pdrop::value_error);
    EXPECT_EQ(pdrop::simd_target(), SimdTarget::portable);
  }
}

// config.hpp's version macros are the CMake project's version (what the
// tools' --version print).
TEST(Config, VersionMacrosAreTheProjectVersion) {
  EXPECT_EQ(std::to_string(PDROP_VERSION_MAJOR) + "." + std::to_string(PDROP_VERSION_MINOR) +
                "." + std::to_string(PDROP_VERSION_PATCH),
            PDROP_VERSION);
}

TEST(Dispatch, ReadsPdropSimdValues) {
  EXPECT_EQ(pdrop::detail::parse_simd_target(nullptr), -1);
  EXPECT_EQ(pdrop::detail::parse_simd_target(""), -1);
  EXPECT_EQ(pdrop::detail::parse_simd_target("best"), -1);
  EXPECT_EQ(pdrop::detail::parse_simd_target("portable"), 0);
  EXPECT_EQ(pdrop::detail::parse_simd_target("avx2"), 1);
  EXPECT_EQ(pdrop::detail::parse_simd_target("AVX2"), -2);
  EXPECT_EQ(pdrop::detail::parse_simd_target("avx512"), -2);
}

}  // namespace
