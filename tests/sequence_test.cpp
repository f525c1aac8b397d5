// SequenceState, the per-sequence record of the drops: the cases
// with their right values, the validation of a keep list, batches, and a
// property test over random prompts (0-4 images, text around and between
// them, an image first or last), ratios, budgets, strategies and both
// position modes against a naive re-run that rebuilds each stage's
// sequence from the keep lists actually applied.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "pdrop/pdrop.hpp"
#include "pdrop/sequence.hpp"
#include "test_util.hpp"

namespace {

using namespace pdrop_test::names;
using pdrop::Schedule;
using pdrop::SequenceState;

std::vector<I64> iota_positions(I64 n, I64 base = 0) {
  std::vector<I64> p(static_cast<std::size_t>(n));
  std::iota(p.begin(), p.end(), base);
  return p;
}

// The first case: T0 = 19, images (3, 5) and (10, 5), one drop at
// ratio 0.5 with per-image budgets: int(5 * 0.5) = 2 of each, 4 kept, the
// prompt re-indexed to 0..12, so the first decode token is at 13 (the old
// formula T0 - (N0 - int(N0 * 0.5)) gave 14).
TEST(SequenceState, PerImageRoundingGivesTheDecodePosition) {
  const auto s = Schedule::single_drop(4, 2, 0.5);
  const auto pos = iota_positions(19);
  const std::vector<ImageSpan> spans{{3, 5}, {10, 5}};
  SequenceState seq(s, TokenView<const I64>(pos.data(), 19, 1), spans);
  std::vector<I64> counts(2);
  seq.keep_counts(1, pdrop::Budget::per_span, counts);
  EXPECT_EQ(counts, (std::vector<I64>{2, 2}));
  std::vector<I64> global(1);
  seq.keep_counts(1, pdrop::Budget::global, global);
  EXPECT_EQ(global[0], 5);
  // Keep tokens 4, 6 of the first image and 10, 14 of the second.
  std::vector<I64> keep{0, 1, 2, 4, 6, 8, 9, 10, 14, 15, 16, 17, 18};
  seq.apply_drop(keep);
  EXPECT_EQ(seq.tokens(), 13);
  EXPECT_EQ(seq.position(2, 0), 13);
  EXPECT_EQ(seq.position(3, 4), 17);
  EXPECT_EQ(seq.position(0, 0), 19);  // layers before the drop hold all 19
  EXPECT_EQ(seq.cache_length(1), 19);
  EXPECT_EQ(seq.cache_length(2), 13);
  EXPECT_EQ(seq.spans()[0].start, 3);
  EXPECT_EQ(seq.spans()[0].length, 2);
  EXPECT_EQ(seq.spans()[1].start, 7);
  EXPECT_EQ(seq.spans()[1].length, 2);
  seq.append(3);
  EXPECT_EQ(seq.cache_length(2), 16);
  EXPECT_EQ(seq.next_position(2), 16);
  EXPECT_EQ(seq.next_position(0), 22);
  EXPECT_EQ(seq.rope_delta(2), 0);
}

// A prompt that continues at position 100 (a cached prefix): re-indexed
// from 100; original positions continue after the largest.
TEST(SequenceState, BaseAndNextPosition) {
  const auto pos = iota_positions(10, 100);
  const std::vector<ImageSpan> spans{{2, 6}};
  const std::vector<I64> keep{0, 1, 3, 5, 8, 9};
  for (auto mode : {pdrop::PositionMode::reindex, pdrop::PositionMode::keep_original}) {
    SequenceState seq(Schedule::single_drop(2, 1, 0.5).with_position_mode(mode),
                      TokenView<const I64>(pos.data(), 10, 1), spans);
    seq.apply_drop(keep);
    EXPECT_EQ(seq.base_position(), 100);
    EXPECT_EQ(seq.prompt_next_position(), 110);
    EXPECT_EQ(seq.position(1, 0), mode == pdrop::PositionMode::reindex ? 106 : 110);
    EXPECT_EQ(seq.rope_delta(1), mode == pdrop::PositionMode::reindex ? 100 : 104);
  }
}

// M-RoPE: a prompt that ends with an image grid (5 text tokens, a 1 x 4 x 6
// grid, nothing after): the largest value is the grid's width index
// 5 + 5 = 10, so decode starts at 11 whatever the drop keeps (the last
// grid token, the query, is kept: its (5, 8, 10) holds the largest).
TEST(SequenceState, MRopePromptEndingWithAGrid) {
  const std::vector<I64> text{5, 0};
  const std::vector<pdrop::MRopeGrid> grids{{1, 4, 6}};
  std::vector<I64> pos(29 * 3);
  std::vector<ImageSpan> spans(1);
  const I64 next =
      pdrop::mrope_positions<I64>(text, grids, TokenView<I64>(pos.data(), 29, 3), spans);
  EXPECT_EQ(next, 11);
  const auto s = Schedule::single_drop(4, 2, 0.25);  // reindex by default
  SequenceState seq(s, TokenView<const I64>(pos.data(), 29, 3), spans);
  EXPECT_EQ(seq.position_mode(), pdrop::PositionMode::keep_original);
  EXPECT_EQ(seq.position_rows(), 3);
  std::vector<I64> keep = iota_positions(5);
  for (I64 t : {5, 9, 12, 20, 28}) keep.push_back(t);
  seq.apply_drop(keep);
  for (I64 l = 0; l < 4; ++l) EXPECT_EQ(seq.position(l, 0), 11) << l;
  EXPECT_EQ(seq.position(3, 2), 13);
  EXPECT_EQ(seq.rope_delta(3), 11 - 10);
  EXPECT_EQ(seq.rope_delta(0), 11 - 29);
}

// llama.cpp's 4 rows (the 4th 0) and a Qwen2.5-VL video (temporal step 2):
// text 3, a 2 x 2 x 3 video whose frame groups sit at temporal 3 and 5,
// text 2. The largest value is the temporal 5 (height and width reach 4
// and 5), so the text after the grid starts at 6 and decode at 8; the 4th
// row changes nothing, and drops keep every row's values with the tokens.
TEST(SequenceState, FourRowMRopeOfAQwen25Video) {
  const std::vector<I64> text{3, 2};
  const std::vector<pdrop::MRopeGrid> grids{{2, 2, 3, 2}};
  std::vector<I64> pos(17 * 4, -1);
  std::vector<ImageSpan> spans(1);
  EXPECT_EQ(pdrop::mrope_positions<I64>(text, grids, TokenView<I64>(pos.data(), 17, 4), spans), 8);
  EXPECT_EQ((std::vector<I64>(pos.begin() + 4 * 9, pos.begin() + 4 * 10)),
            (std::vector<I64>{5, 3, 3, 0}));  // token 9: frame group 1, row 0, col 0
  SequenceState seq(Schedule::single_drop(3, 1, 0.5), TokenView<const I64>(pos.data(), 17, 4),
                    spans);
  EXPECT_EQ(seq.position_rows(), 4);
  EXPECT_EQ(seq.prompt_next_position(), 8);
  std::vector<I64> keep{0, 1, 2, 4, 6, 9, 10, 11, 12, 15, 16};
  seq.apply_drop(keep);
  pdrop::compact_positions(TokenView<I64>(pos.data(), 17, 4), keep, seq.position_mode());
  EXPECT_EQ((std::vector<I64>(pos.begin() + 4 * 5, pos.begin() + 4 * 6)),
            (std::vector<I64>{5, 3, 3, 0}));  // old token 9 is now token 5
  for (I64 l = 0; l < 3; ++l) EXPECT_EQ(seq.position(l, 1), 9) << l;
}

TEST(SequenceState, RejectsKeepListsThatBreakTheRulesAndStaysUnchanged) {
  const auto pos = iota_positions(10);
  const std::vector<ImageSpan> spans{{2, 6}};
  SequenceState seq(Schedule::single_drop(3, 1, 0.5), TokenView<const I64>(pos.data(), 10, 1),
                    spans);
  const auto unchanged = [&] {
    EXPECT_EQ(seq.drops_applied(), 0);
    EXPECT_EQ(seq.tokens(), 10);
    EXPECT_EQ(seq.spans()[0].length, 6);
  };
  using pdrop_test::expect_invalid;
  const std::string fn = "pdrop::SequenceState::apply_drop: ";
  expect_invalid([&] { seq.apply_drop(std::vector<I64>{0, 1, 2, 9}); },
                 fn + "keep drops token 8, which is outside every image span");
  expect_invalid([&] { seq.apply_drop(std::vector<I64>{1, 2, 8, 9}); }, fn + "keep drops token 0");
  expect_invalid([&] { seq.apply_drop(std::vector<I64>{0, 1, 2, 8}); },
                 fn + "keep must hold the last token (9)");
  expect_invalid([&] { seq.apply_drop(std::vector<I64>{0, 1, 3, 2, 8, 9}); },
                 "strictly ascending");
  expect_invalid([&] { seq.apply_drop(std::vector<I64>{0, 1, 2, 8, 9, 10}); }, "10");
  unchanged();
  expect_invalid([&] { seq.cache_length(1); },
                 "pdrop::SequenceState::cache_length: layer (1) is in stage 1, whose drop is "
                 "not applied yet (0 applied)");
  expect_invalid([&] { seq.position(3, 0); }, "layer (3) must be in [0, layers = 3)");
  expect_invalid([&] { seq.position(0, -1); }, "step (-1) must be >= 0");
  expect_invalid([&] { seq.tokens(1); }, "stage (1) must be in [0, drops applied = 0]");
  std::vector<I64> out(1);
  expect_invalid([&] { seq.keep_counts(0, pdrop::Budget::per_span, out); },
                 "stage (0) must be in [1, num_stages = 2)");
  std::vector<I64> two(2);
  expect_invalid([&] { seq.keep_counts(1, pdrop::Budget::per_span, two); },
                 "out.size (2) must be 1 (one count per span)");
  expect_invalid([&] { seq.append(-2); }, "n (-2) must be >= 0");
  seq.apply_drop(std::vector<I64>{0, 1, 4, 8, 9});
  expect_invalid([&] { seq.apply_drop(std::vector<I64>{0, 1, 2, 3, 4}); },
                 "every drop of the schedule (1) is already applied");
  EXPECT_EQ(seq.tokens(), 5);
  const std::vector<ImageSpan> bad{{8, 4}};
  expect_invalid([&] {
    SequenceState(Schedule::dense(2), TokenView<const I64>(pos.data(), 10, 1), bad);
  }, "pdrop::SequenceState: spans[0] (start 8, length 4) must lie inside [0, positions.tokens = 10)");
}

// Positions must be in [0, 2^63 - 1): negative ones, and unsigned 64-bit
// values that do not fit int64, are refused by name; writable views work.
TEST(SequenceState, RejectsPositionsOutsideTheRange) {
  const auto s = Schedule::single_drop(2, 1, 0.5);
  std::vector<I64> neg{0, 1, -3};
  pdrop_test::expect_invalid(
      [&] { SequenceState(s, TokenView<I64>(neg.data(), 3, 1), {}); },
      "pdrop::SequenceState: positions (token 2, row 0) is -3: positions must be in [0, 2^63 - 1)");
  std::vector<std::uint64_t> big{0, std::uint64_t{1} << 63};
  pdrop_test::expect_invalid(
      [&] { SequenceState(s, TokenView<const std::uint64_t>(big.data(), 2, 1), {}); },
      "positions (token 1, row 0) is 9223372036854775808");
  std::vector<std::int32_t> ok{5, 6, 7};
  SequenceState seq(s, TokenView<std::int32_t>(ok.data(), 3, 1), {});
  seq.apply_drop(std::vector<I64>{0, 1, 2});
  EXPECT_EQ(seq.position(1, 0), 8);
}

// apply_drop_batch: every list checked first; a bad one names its sequence
// and leaves every record as it was.
TEST(SequenceState, BatchAppliesAllOrNothing) {
  const auto pa = iota_positions(6), pb = iota_positions(5);
  const std::vector<ImageSpan> sa{{1, 4}}, sb{{0, 3}};
  const auto s = Schedule::single_drop(2, 1, 0.5);
  std::vector<SequenceState> seqs{SequenceState(s, TokenView<const I64>(pa.data(), 6, 1), sa),
                                  SequenceState(s, TokenView<const I64>(pb.data(), 5, 1), sb)};
  std::vector<I64> keep{0, 2, 3, 5, /* b */ 1, 3, 4};
  std::vector<I64> offsets{0, 4, 7};
  std::vector<I64> bad_keep{0, 2, 3, 5, /* b drops text 3 */ 1, 4};
  std::vector<I64> bad_offsets{0, 4, 6};
  pdrop_test::expect_invalid([&] { pdrop::apply_drop_batch(seqs, bad_keep, bad_offsets); },
                             "pdrop::apply_drop_batch: states[1]: keep drops token 3");
  EXPECT_EQ(seqs[0].drops_applied(), 0);
  pdrop::apply_drop_batch(seqs, keep, offsets);
  EXPECT_EQ(seqs[0].tokens(), 4);
  EXPECT_EQ(seqs[1].tokens(), 3);
  EXPECT_EQ(seqs[1].spans()[0].start, 0);
  EXPECT_EQ(seqs[1].spans()[0].length, 1);
  EXPECT_EQ(seqs[1].position(1, 0), 3);
}

// ---- property test ----

// A naive re-run: the original indices alive in each stage, rebuilt from the
// keep lists, and the rules stated plainly: a re-indexed stage numbers its
// tokens base, base+1, ... and a new token follows its last one; original
// positions continue after the whole prompt's largest.
struct NaiveRun {
  std::vector<std::vector<I64>> alive;  // per stage: original indices
  I64 position(const std::vector<I64>& pos, bool reindex, std::size_t stage, I64 step) const {
    if (reindex) {
      std::vector<I64> p(alive[stage].size());
      for (std::size_t i = 0; i < p.size(); ++i) p[i] = pos[0] + static_cast<I64>(i);
      return (p.empty() ? pos[0] - 1 : p.back()) + 1 + step;
    }
    return *std::max_element(pos.begin(), pos.end()) + 1 + step;
  }
};

TEST(SequenceState, MatchesANaiveRerunOverRandomPrompts) {
  std::mt19937 rng(2024);
  pdrop::Workspace ws;
  const pdrop::Strategy strategies[] = {pdrop::Strategy::pyramid_drop, pdrop::Strategy::fastv,
                                        pdrop::Strategy::dart, pdrop::Strategy::random,
                                        pdrop::Strategy::vtw};
  const I64 hq = 2, hkv = 1, d = 4, layers = 8;
  for (int trial = 0; trial < 300; ++trial) {
    // Prompt: text runs and 0-4 images, first and last pieces may be images.
    const int images = static_cast<int>(rng() % 5);
    std::vector<ImageSpan> spans;
    I64 T = 0;
    for (int i = 0; i <= images; ++i) {
      const I64 text = (i == 0 || i == images) ? static_cast<I64>(rng() % 3)
                                               : static_cast<I64>(rng() % 4);
      T += text;
      if (i == images) break;
      const I64 n = 1 + static_cast<I64>(rng() % 12);
      spans.push_back({T, n});
      T += n;
    }
    if (T == 0) T = 1;
    const I64 base = (rng() % 2) ? 0 : static_cast<I64>(rng() % 50);
    const auto pos = iota_positions(T, base);
    const auto strategy = strategies[rng() % 5];
    const bool global = (rng() % 2) && (strategy == pdrop::Strategy::pyramid_drop ||
                                        strategy == pdrop::Strategy::fastv);
    Schedule s = Schedule::dense(layers);
    if (strategy == pdrop::Strategy::vtw) {
      s = Schedule::vtw(layers, 1 + static_cast<I64>(rng() % 6));
    } else {
      const double lambda = 0.3 + 0.1 * static_cast<double>(rng() % 7);
      s = Schedule::pyramid(layers, 2 + static_cast<I64>(rng() % 3), lambda).with_strategy(strategy);
    }
    if (rng() % 2)
      s = s.with_position_mode(rng() % 2 ? pdrop::PositionMode::reindex
                                         : pdrop::PositionMode::keep_original);
    const bool reindex = s.position_mode() == pdrop::PositionMode::reindex;
    SequenceState seq(s, TokenView<const I64>(pos.data(), T, 1), spans);
    NaiveRun naive;
    naive.alive.push_back(iota_positions(T));
    std::vector<ImageSpan> cur = spans;
    for (I64 j = 1; j < s.num_stages(); ++j) {
      const I64 t = static_cast<I64>(naive.alive.back().size());
      const std::vector<I64> query{t - 1};
      const auto q = pdrop_test::random_vector<float>(hq * d, rng, -2, 2);
      const auto k = pdrop_test::random_vector<float>(hkv * t * d, rng, -2, 2);
      pdrop::DropInputs<float, float> in;
      in.q = pdrop::hnd_view<const float>(q.data(), hq, 1, d);
      in.query_pos = query;
      in.k = pdrop::hnd_view<const float>(k.data(), hkv, t, d);
      in.seed = static_cast<std::uint64_t>(trial);
      std::vector<I64> keep(static_cast<std::size_t>(t)), counts;
      I64 t_new = 0;
      if (global) {
        counts.resize(1);
        seq.keep_counts(j, pdrop::Budget::global, counts);
        t_new = pdrop::rank_and_drop_global(in.q, in.query_pos, in.k, seq.spans(), counts[0], ws, keep);
      } else {
        counts.resize(spans.size());
        seq.keep_counts(j, pdrop::Budget::per_span, counts);
        // A count above the span's current length (a query token kept
        // over an earlier budget) is capped by it.
        for (std::size_t i = 0; i < counts.size(); ++i)
          counts[i] = std::min(counts[i], seq.spans()[static_cast<I64>(i)].length);
        t_new = pdrop::drop_by_strategy(strategy, t, in, seq.spans(), counts, ws, keep);
      }
      keep.resize(static_cast<std::size_t>(t_new));
      seq.apply_drop(keep);
      // The naive stage: the alive list through the keep list.
      std::vector<I64> next;
      for (I64 i : keep) next.push_back(naive.alive.back()[static_cast<std::size_t>(i)]);
      naive.alive.push_back(next);
      ASSERT_EQ(next.back(), T - 1) << "the query (last prompt token) survives, trial " << trial;
      // Its spans: the alive tokens of each original image, as runs.
      for (std::size_t i = 0; i < spans.size(); ++i) {
        I64 start = -1, len = 0;
        for (std::size_t a = 0; a < next.size(); ++a)
          if (next[a] >= spans[i].start && next[a] < spans[i].end()) {
            if (start < 0) start = static_cast<I64>(a);
            ++len;
          }
        if (start < 0) {  // none left: where the image was
          start = 0;
          for (I64 x : next) start += x < spans[i].start;
        }
        ASSERT_EQ(seq.spans()[static_cast<I64>(i)].start, start) << trial;
        ASSERT_EQ(seq.spans()[static_cast<I64>(i)].length, len) << trial;
      }
    }
    const I64 steps = static_cast<I64>(rng() % 4);
    seq.append(steps);
    for (I64 l = 0; l < layers; ++l) {
      const auto j = static_cast<std::size_t>(s.stage_of_layer(l));
      ASSERT_EQ(seq.cache_length(l), static_cast<I64>(naive.alive[j].size()) + steps) << trial;
      for (I64 step = 0; step < 3; ++step)
        ASSERT_EQ(seq.position(l, step), naive.position(pos, reindex, j, step))
            << "trial " << trial << " layer " << l << " step " << step;
    }
  }
}

}  // namespace
