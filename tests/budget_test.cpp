// Budgets (pdrop/budget.hpp) against the authors' own formulas, written
// plainly here as their code states them (sources in docs/strategies.md):
// FastV's count and its HF port's Python round, DART's per-pivot quota on
// each of its three model paths, over N0 = 1..3000 and every published
// budget; and the schedules and records built on them.
#include <gtest/gtest.h>

#include <cfenv>
#include <cmath>

#include "pdrop/budget.hpp"
#include "pdrop/sequence.hpp"
#include "pdrop/strategies.hpp"
#include "test_util.hpp"

namespace {

using pdrop::ImageSpan;
using pdrop::KeepRule;
using pdrop::Schedule;
using I64 = std::int64_t;

// Python's round(x) for a double x >= 0: to nearest, ties to even. The
// C library's nearbyint does the same in the default rounding mode.
I64 python_round(double x) {
  EXPECT_EQ(std::fegetround(), FE_TONEAREST);
  return static_cast<I64>(std::nearbyint(x));
}

// FastV's main code (fast_v_attention_rank = R): topk(R) over the N0 image
// tokens, which raises for R > N0. Issue 15: N0 = 22 with R = 15 keeps 15,
// where the ratio 15/22 keeps 14.
TEST(KeepRule, FastVCountKeepsTheCountWhereARatioLosesOne) {
  EXPECT_EQ(Schedule::fastv(32, 2, KeepRule::count(15)).image_tokens(22, 1), 15);
  EXPECT_EQ(Schedule::fastv(32, 2, 15.0 / 22.0).image_tokens(22, 1), 14);
  I64 lost = 0, pairs = 0;
  for (I64 n0 = 1; n0 <= 3000; ++n0) {
    for (I64 r : {72, 144, 288, 432}) {  // eval_*_fastv_*.sh rank_list
      const I64 got = Schedule::fastv(32, 2, KeepRule::count(r)).image_tokens(n0, 1);
      if (r <= n0) {
        ASSERT_EQ(got, r) << n0;
      } else {
        ASSERT_EQ(got, n0) << n0;  // theirs raises; pdrop keeps every token
      }
    }
    for (I64 r = 0; r <= std::min<I64>(n0, 40); ++r) {
      ++pairs;
      ASSERT_EQ(pdrop::keep_budget(n0, KeepRule::count(r)), r);
      lost += pdrop::keep_budget(n0, static_cast<double>(r) / static_cast<double>(n0)) != r;
    }
  }
  EXPECT_GT(lost, 0) << "a ratio r / N0 should lose a token for some pairs";
  EXPECT_LT(lost, pairs);
}

// FastV's HF port: round(L * (1 - r)) with Python's round. L = 3, r = 0.5:
// round(1.5) = 2 where int() gives 1; L = 5: round(2.5) = 2 (ties to even).
TEST(KeepRule, FastVHfPortRoundsHalfToEven) {
  EXPECT_EQ(pdrop::keep_budget(3, KeepRule::nearest(1.0 - 0.5)), 2);
  EXPECT_EQ(pdrop::keep_budget(3, 1.0 - 0.5), 1);
  EXPECT_EQ(pdrop::keep_budget(5, KeepRule::nearest(0.5)), 2);
  EXPECT_EQ(pdrop::keep_budget(7, KeepRule::nearest(0.5)), 4);
  for (I64 n0 = 1; n0 <= 3000; ++n0)
    for (double r : {0.25, 0.5, 0.75, 0.778, 0.875, 0.125}) {  // demo-hf.py: 0.75
      const double x = static_cast<double>(n0) * (1 - r);
      ASSERT_EQ(Schedule::fastv(32, 3, KeepRule::nearest(1 - r)).image_tokens(n0, 1),
                python_round(x))
          << n0 << " " << r;
      // The lmms-eval port and PyramidDrop: int(L * ratio).
      ASSERT_EQ(Schedule::fastv(32, 3, 1 - r).image_tokens(n0, 1), static_cast<I64>(x));
    }
}

// DART's three budget lines, as their code computes them (// is Python's
// floor division), kept = image pivots + (image + text pivots) * quota.
// Their code raises when the quotas need more candidates than the span has
// (torch.topk past the end); there pdrop keeps at most n0.
struct AuthorsDart {
  I64 quota;  // TOKEN_TOPK
  I64 kept;
  bool runs;
};
AuthorsDart authors_dart(I64 n0, I64 token_topk) {
  const I64 kept = 4 + 8 * token_topk;
  return {token_topk, kept, n0 >= 4 && token_topk >= 0 && n0 - 4 >= 8 * token_topk};
}

TEST(KeepRule, DartQuotaIsTheAuthorsCountOnEveryPath) {
  // LLaVA-1.5: ceil(M // 8) with max_num_trunction M (README: 128; the
  // paper's 192 / 128 / 64 tokens).
  EXPECT_EQ(pdrop::dart_llava_1_5(32).schedule.image_tokens(576, 1), 132);
  EXPECT_EQ(pdrop::dart_llava_next(32).schedule.image_tokens(2880, 1), 324);
  for (I64 n0 = 1; n0 <= 3000; ++n0) {
    for (I64 m : {64, 128, 192}) {
      const AuthorsDart a = authors_dart(n0, m / 8);
      const I64 got = pdrop::dart_llava_1_5(32, m).schedule.image_tokens(n0, 1);
      if (a.runs) {
        ASSERT_EQ(got, a.kept) << "llava-1.5 M " << m << " n0 " << n0;
      }
      ASSERT_LE(got, n0);
    }
    // LLaVA-NeXT: int(min(320, L - 4) // 8).
    {
      const I64 retain = std::min<I64>(320, n0 - 4);
      const AuthorsDart a = authors_dart(n0, retain >= 0 ? retain / 8 : -1);
      const I64 got = pdrop::dart_llava_next(32).schedule.image_tokens(n0, 1);
      if (a.runs) {
        ASSERT_EQ(got, a.kept) << "llava-next n0 " << n0;
      }
      ASSERT_LE(got, n0);
    }
    // Qwen2-VL / Qwen2.5-VL: int(L * (1 - r) / 8), true division.
    for (double r : {0.667, 0.778, 0.889}) {
      const AuthorsDart a =
          authors_dart(n0, static_cast<I64>(static_cast<double>(n0) * (1 - r) / 8));
      const I64 got = pdrop::dart_qwen2_vl(28, r).schedule.image_tokens(n0, 1);
      if (a.runs) {
        ASSERT_EQ(got, a.kept) << "qwen r " << r << " n0 " << n0;
      }
      ASSERT_LE(got, n0);
    }
  }
}

TEST(KeepRule, DartPresetsStateTheAuthorsSettings) {
  for (const pdrop::DartSetup& d :
       {pdrop::dart_llava_1_5(32), pdrop::dart_llava_next(32), pdrop::dart_qwen2_vl(28)}) {
    EXPECT_EQ(d.schedule.strategy(), pdrop::Strategy::dart);
    EXPECT_EQ(d.schedule.position_mode(), pdrop::PositionMode::keep_original);
    EXPECT_EQ(pdrop_test::std_vector(d.schedule.drop_layers()), (std::vector<I64>{2}));  // pruned_layer = 2
    EXPECT_EQ(d.options.pivots, 4);
    EXPECT_EQ(d.options.text_pivots, 4);
    EXPECT_EQ(d.options.pivot_norm, pdrop::PivotNorm::l1);
  }
  EXPECT_EQ(pdrop::dart_qwen2_vl(28).schedule.num_layers(), 28);
}

TEST(KeepRule, EveryRuleIsMonotoneAndWithinN) {
  const std::vector<KeepRule> rules{
      0.3, KeepRule::nearest(0.3), KeepRule::count(50),
      KeepRule::count(50).with_dart_quota({4, 4}), KeepRule(0.3).with_dart_quota({2, 1})};
  for (const KeepRule& rule : rules) {
    I64 prev = 0;
    for (I64 n = 0; n <= 400; ++n) {
      const I64 k = pdrop::keep_budget(n, rule);
      ASSERT_GE(k, 0);
      ASSERT_LE(k, n) << pdrop::to_string(rule);
      ASSERT_GE(k, prev) << pdrop::to_string(rule) << " n " << n;
      prev = k;
    }
  }
  EXPECT_EQ(pdrop::to_string(KeepRule::count(128).with_dart_quota({4, 4})),
            "count 128, dart quota 4+4");
  EXPECT_EQ(pdrop::to_string(KeepRule::nearest(0.25)), "0.25 nearest");
}

TEST(Schedule, FromRulesKeepsCountsPerStage) {
  const Schedule s = Schedule::from_rules(16, {4, 8}, {KeepRule::count(300), KeepRule::count(100)});
  EXPECT_EQ(pdrop_test::std_vector(s.tokens_per_stage(576)), (std::vector<I64>{576, 300, 100}));
  EXPECT_EQ(pdrop_test::std_vector(s.tokens_per_stage(200)), (std::vector<I64>{200, 200, 100}));
  EXPECT_EQ(pdrop_test::std_vector(s.tokens_per_stage(50)), (std::vector<I64>{50, 50, 50}));
  EXPECT_TRUE(std::isnan(s.ratios()[1]));
  EXPECT_EQ(s.keep_rules().size(), 3u);
  EXPECT_EQ(*s.keep_rules()[2].maybe_count, 100);
  // VTW by a count of 0.
  EXPECT_EQ(Schedule::single_drop(8, 2, KeepRule::count(0))
                .with_strategy(pdrop::Strategy::vtw)
                .image_tokens(576, 1),
            0);
}

// SequenceState's budgets come from the stage's rule, per span or global.
TEST(SequenceState, KeepCountsFollowTheStageRule) {
  std::vector<I64> pos(100);
  for (I64 t = 0; t < 100; ++t) pos[static_cast<std::size_t>(t)] = t;
  const std::vector<ImageSpan> spans{{2, 30}, {40, 50}};
  const Schedule s = Schedule::fastv(8, 2, KeepRule::count(20));
  pdrop::SequenceState seq(s, pdrop::TokenView<const I64>(pos.data(), 100, 1), spans);
  std::vector<I64> per(2), global(1);
  seq.keep_counts(1, pdrop::Budget::per_span, per);
  seq.keep_counts(1, pdrop::Budget::global, global);
  EXPECT_EQ(per, (std::vector<I64>{20, 20}));
  EXPECT_EQ(global[0], 20);
  const pdrop::DartSetup d = pdrop::dart_llava_1_5(8);
  pdrop::SequenceState dart_seq(d.schedule, pdrop::TokenView<const I64>(pos.data(), 100, 1),
                                spans);
  dart_seq.keep_counts(1, pdrop::Budget::per_span, per);
  // min(128, n - 4) // 8 per pivot: 30 -> 3 (4 + 24 = 28), 50 -> 5 (44).
  EXPECT_EQ(per, (std::vector<I64>{28, 44}));
}

}  // namespace
