// Peer strategies (pdrop/strategies.hpp): the random baseline against a
// plain SplitMix64 + selection-sampling reference and its statistics,
// training-mode query positions against a plain scan of the labels, and
// drop_by_strategy for FastV, VTW, DART and random against naive pieces.
#include <gtest/gtest.h>

#include <map>

#include "pdrop/strategies.hpp"
#include "test_util.hpp"

namespace {

using pdrop::ImageSpan;
using pdrop::Strategy;

// SplitMix64 as published (Vigna's splitmix64.c), written out again.
std::uint64_t plain_splitmix(std::uint64_t& x) {
  x += 0x9e3779b97f4a7c15ull;
  std::uint64_t z = x;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Unbiased [0, n): reject the lowest 2^64 mod n draws.
std::uint64_t plain_below(std::uint64_t& x, std::uint64_t n) {
  const std::uint64_t r = (std::numeric_limits<std::uint64_t>::max() % n + 1) % n;
  for (;;) {
    const std::uint64_t v = plain_splitmix(x);
    if (v >= r) return v % n;
  }
}

// Algorithm S for each span with its own stream.
std::vector<std::int64_t> plain_random(const std::vector<ImageSpan>& spans,
                                       const std::vector<std::int64_t>& counts,
                                       std::uint64_t seed) {
  std::vector<std::int64_t> out;
  std::uint64_t master = seed;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    std::uint64_t x = plain_splitmix(master);
    std::int64_t chosen = 0;
    for (std::int64_t t = 0; t < spans[i].length && chosen < counts[i]; ++t) {
      const auto left = static_cast<std::uint64_t>(spans[i].length - t);
      if (plain_below(x, left) < static_cast<std::uint64_t>(counts[i] - chosen)) {
        out.push_back(spans[i].start + t);
        ++chosen;
      }
    }
  }
  return out;
}

TEST(Strategies, SplitMix64MatchesPublishedOutputs) {
  // First outputs of splitmix64.c seeded with 1234567.
  pdrop::SplitMix64 g(1234567);
  const std::uint64_t want[] = {6457827717110365317ull, 3203168211198807973ull,
                                9817491932198370423ull, 4593380528125082431ull,
                                16408922859458223821ull};
  for (std::uint64_t w : want) EXPECT_EQ(g.next(), w);
  std::uint64_t x = 42;
  pdrop::SplitMix64 h(42);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(h.next(), plain_splitmix(x));
  for (std::uint64_t n : {1ull, 2ull, 3ull, 7ull, 576ull, (1ull << 63) + 5}) {
    pdrop::SplitMix64 a(n);
    std::uint64_t y = n;
    for (int i = 0; i < 50; ++i) {
      const std::uint64_t v = a.below(n);
      EXPECT_LT(v, n);
      EXPECT_EQ(v, plain_below(y, n));
    }
  }
}

TEST(Strategies, RandomSelectMatchesPlainReference) {
  struct C { std::vector<ImageSpan> spans; std::vector<std::int64_t> counts; };
  const std::vector<C> cases{
      {{{0, 1}}, {1}},
      {{{3, 7}}, {3}},
      {{{0, 576}}, {288}},
      {{{1, 0}, {1, 5}, {10, 2880}}, {0, 5, 1}},
      {{{4, 3}, {8, 33}, {50, 31}}, {2, 32, 0}},
  };
  for (const C& c : cases)
    for (std::uint64_t seed : {0ull, 1ull, 0xDEADBEEFull, ~0ull}) {
      const auto want = plain_random(c.spans, c.counts, seed);
      std::vector<std::int64_t> kept(want.size(), -1);
      pdrop::random_select(c.spans, c.counts, seed, kept);
      EXPECT_EQ(kept, want) << seed;
      EXPECT_TRUE(std::is_sorted(kept.begin(), kept.end()));
    }
}

TEST(Strategies, RandomSelectSpanDoesNotDependOnOtherSpans) {
  std::vector<std::int64_t> a(7), b(7 + 4);
  pdrop::random_select(std::vector<ImageSpan>{{0, 20}}, std::vector<std::int64_t>{7}, 99, a);
  pdrop::random_select(std::vector<ImageSpan>{{0, 20}, {30, 9}},
                       std::vector<std::int64_t>{7, 4}, 99, b);
  EXPECT_EQ(a, std::vector<std::int64_t>(b.begin(), b.begin() + 7));
}

TEST(Strategies, RandomSelectIsUniformOverSubsets) {
  // 3 of 7 over 35000 seeds: each of the 35 subsets about 1000 times, each
  // token about 15000 times (binomial sd ~31 and ~93).
  std::map<std::vector<std::int64_t>, int> subsets;
  std::vector<int> per_token(7, 0);
  const std::vector<ImageSpan> spans{{10, 7}};
  const std::vector<std::int64_t> counts{3};
  for (std::uint64_t seed = 0; seed < 35000; ++seed) {
    std::vector<std::int64_t> kept(3);
    pdrop::random_select(spans, counts, seed, kept);
    ++subsets[kept];
    for (auto t : kept) ++per_token[t - 10];
  }
  EXPECT_EQ(subsets.size(), 35u);
  for (auto& [s, n] : subsets) EXPECT_NEAR(n, 1000, 180);
  for (int n : per_token) EXPECT_NEAR(n, 15000, 500);
}

TEST(Strategies, RandomSelectBadInputLeavesKeptUntouched) {
  std::vector<std::int64_t> kept(3, -5);
  const auto before = pdrop_test::bytes_of(kept);
  auto check = [&](std::vector<ImageSpan> spans, std::vector<std::int64_t> counts,
                   const std::string& needle) {
    pdrop_test::expect_invalid([&] { pdrop::random_select(spans, counts, 1, kept); }, needle);
    EXPECT_EQ(pdrop_test::bytes_of(kept), before) << needle;
  };
  check({{0, 4}}, {4}, "kept.size (3)");
  check({{0, 4}}, {5}, "keep_counts[0] (5)");
  check({{0, 4}}, {-1}, "keep_counts[0] (-1)");
  check({{-1, 4}}, {3}, "spans[0] (start -1");
  check({{0, 4}, {3, 4}}, {3, 0}, "spans[1] (start 3)");
  check({{0, 4}}, {}, "keep_counts.size (0)");
  pdrop_test::expect_invalid(
      [&] {
        pdrop::random_select(std::vector<ImageSpan>{{0, 4}}, std::vector<std::int64_t>{3}, 1,
                             pdrop::span<std::int64_t>(nullptr, 3));
      },
      "kept.data is null");
}

// ---- training mode ----

std::vector<std::int64_t> plain_queries(const std::vector<std::int64_t>& labels,
                                        std::int64_t ignore) {
  std::vector<std::int64_t> out;
  for (std::size_t t = 0; t < labels.size(); ++t) {
    const bool answer = labels[t] != ignore;
    const bool starts = answer && (t == 0 || labels[t - 1] == ignore);
    if (starts && t > 0) out.push_back(static_cast<std::int64_t>(t) - 1);
  }
  return out;
}

TEST(Strategies, TrainingQueryPositionsFromLabels) {
  const std::vector<std::int64_t> labels{-100, -100, 5, 6, -100, -100, 7, -100, 8, 9};
  std::vector<std::int64_t> out(5, -1);
  EXPECT_EQ(pdrop::training_query_count(labels), 3);
  EXPECT_EQ(pdrop::training_query_positions(labels, -100, out), 3);
  EXPECT_EQ(out, (std::vector<std::int64_t>{1, 5, 7, -1, -1}));
  // An answer at position 0 has no query; another ignore index.
  const std::vector<std::int64_t> l2{1, 2, 0, 3, 0, 0};
  std::vector<std::int64_t> o2(1);
  EXPECT_EQ(pdrop::training_query_positions(l2, 0, o2), 1);
  EXPECT_EQ(o2[0], 2);
  // No answer at all, and empty labels.
  const std::vector<std::int64_t> none(4, -100), empty;
  std::vector<std::int64_t> o3;
  EXPECT_EQ(pdrop::training_query_positions(none, -100, o3), 0);
  EXPECT_EQ(pdrop::training_query_positions(empty, -100, o3), 0);

  std::mt19937 rng(3);
  for (std::int64_t n : {1, 2, 3, 7, 64, 65, 1000}) {
    std::vector<std::int64_t> l(static_cast<std::size_t>(n));
    for (auto& x : l) x = (rng() % 3 == 0) ? -100 : static_cast<std::int64_t>(rng() % 5);
    const auto want = plain_queries(l, -100);
    std::vector<std::int64_t> got(want.size() + 2, -9);
    ASSERT_EQ(pdrop::training_query_positions(l, -100, got),
              static_cast<std::int64_t>(want.size()));
    EXPECT_EQ(std::vector<std::int64_t>(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(want.size())), want);
    EXPECT_EQ(got[want.size()], -9);
  }
}

TEST(Strategies, TrainingQueryPositionsBadInput) {
  const std::vector<std::int64_t> labels{-100, 1, -100, 2};
  std::vector<std::int64_t> out(1, -3);
  pdrop_test::expect_invalid([&] { pdrop::training_query_positions(labels, -100, out); },
                             "out.size (1) must be >= the answer spans (2)");
  EXPECT_EQ(out, std::vector<std::int64_t>{-3});
  pdrop_test::expect_invalid(
      [&] {
        pdrop::training_query_positions(pdrop::span<const std::int64_t>(nullptr, 4), -100, out);
      },
      "labels.data is null");
  std::vector<std::int64_t> same{-100, 1, -100, 2};
  pdrop_test::expect_invalid(
      [&] {
        pdrop::training_query_positions(same, -100, pdrop::span<std::int64_t>(same.data() + 1, 3));
      },
      "out overlaps labels");
  EXPECT_EQ(same, labels);
}

TEST(Strategies, TrainingQueriesScoreAndLabelsCompactWithRows) {
  // A training sample: prompt, image, question, answer, question, answer.
  std::mt19937 rng(11);
  const std::int64_t tokens = 40, hq = 4, hkv = 2, d = 8, width = 5;
  const std::vector<ImageSpan> spans{{2, 20}};
  std::vector<std::int64_t> labels(tokens, -100);
  for (std::int64_t t : {26, 27, 28, 33, 34, 35, 36}) labels[t] = 1000 + t;
  std::vector<std::int64_t> qpos(4);
  const std::int64_t nq = pdrop::training_query_positions(labels, -100, qpos);
  ASSERT_EQ(nq, 2);
  qpos.resize(2);
  EXPECT_EQ(qpos, (std::vector<std::int64_t>{25, 32}));

  // q rows of the query tokens, keys of the whole sequence.
  auto q = pdrop_test::random_vector<float>(hq * nq * d, rng, -2, 2);
  auto k = pdrop_test::random_vector<float>(hkv * tokens * d, rng, -2, 2);
  const auto qv = pdrop::hnd_view<const float>(q.data(), hq, nq, d);
  const auto kv = pdrop::hnd_view<const float>(k.data(), hkv, tokens, d);
  pdrop::Workspace ws;
  std::vector<float> scores(20);
  pdrop::score_image_tokens<float, float>(qv, qpos, kv, spans, ws, scores);
  const auto ref = pdrop_test::naive_scores_of(qv, kv, qpos, spans);
  for (std::size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(scores[i], ref[i], 2e-5 * ref[i] + 1e-7);

  // Keep 7: the keep list, then hidden rows and labels (width 1) compacted
  // by the same list stay aligned.
  std::vector<std::int64_t> keep(tokens);
  const std::vector<std::int64_t> counts{7};
  const std::int64_t t_new = pdrop::rank_and_drop<float, float>(qv, qpos, kv, spans, counts, ws, keep);
  ASSERT_EQ(t_new, tokens - 13);
  std::vector<float> hidden(tokens * width);
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t e = 0; e < width; ++e) hidden[t * width + e] = static_cast<float>(t * 10 + e);
  const auto labels0 = labels;
  pdrop::compact_rows(pdrop::TokenView<float>(hidden.data(), tokens, width),
                      pdrop::span<const std::int64_t>(keep.data(), t_new));
  pdrop::compact_rows(pdrop::TokenView<std::int64_t>(labels.data(), tokens, 1),
                      pdrop::span<const std::int64_t>(keep.data(), t_new));
  for (std::int64_t i = 0; i < t_new; ++i) {
    EXPECT_EQ(labels[i], labels0[keep[i]]);
    EXPECT_EQ(hidden[i * width], static_cast<float>(keep[i] * 10));
  }
  // The answers and their queries survive the drop (they are text).
  std::vector<std::int64_t> qpos_after(2);
  ASSERT_EQ(pdrop::training_query_positions(pdrop::span<const std::int64_t>(labels.data(), t_new),
                                            -100, qpos_after), 2);
  EXPECT_EQ(qpos_after, (std::vector<std::int64_t>{25 - 13, 32 - 13}));
}

// ---- drop_by_strategy ----

TEST(Strategies, FastVScheduleDropsByLastTokenAttentionKeepingPositions) {
  const auto s = pdrop::Schedule::fastv(32, 2, 0.5);
  EXPECT_EQ(s.strategy(), Strategy::fastv);
  EXPECT_EQ(s.position_mode(), pdrop::PositionMode::keep_original);
  EXPECT_EQ(s.drop_after(1), 1);

  std::mt19937 rng(21);
  pdrop::Workspace ws;
  for (std::int64_t n0 : {1, 3, 7, 37, 576}) {
    const std::int64_t pre = 5, post = 9, tokens = pre + n0 + post, hq = 4, hkv = 2, d = 16;
    const std::vector<ImageSpan> spans{{pre, n0}};
    const std::vector<std::int64_t> counts{s.image_tokens(n0, 1)};
    auto q = pdrop_test::random_vector<float>(hq * d, rng, -2, 2);
    auto k = pdrop_test::random_vector<float>(hkv * tokens * d, rng, -2, 2);
    pdrop::DropInputs<float, float> in;
    in.q = pdrop::hnd_view<const float>(q.data(), hq, 1, d);
    const std::vector<std::int64_t> last{tokens - 1};
    in.query_pos = last;
    in.k = pdrop::hnd_view<const float>(k.data(), hkv, tokens, d);
    std::vector<std::int64_t> keep(tokens, -1);
    const std::int64_t t_new = pdrop::drop_by_strategy(s.strategy(), tokens, in, spans, counts, ws, keep);

    const auto ref = pdrop_test::naive_scores_of(in.q, in.k, last, spans);
    std::vector<float> ref_f(ref.begin(), ref.end());
    std::vector<std::int64_t> kept;
    for (auto i : pdrop_test::naive_top_k(ref_f, counts[0])) kept.push_back(pre + i);
    const auto want = pdrop_test::naive_keep_list(tokens, spans, kept);
    ASSERT_EQ(t_new, static_cast<std::int64_t>(want.size()));
    EXPECT_EQ(std::vector<std::int64_t>(keep.begin(), keep.begin() + t_new), want) << n0;

    // Original positions follow their tokens; decode positions never move.
    std::vector<std::int32_t> pos(tokens);
    std::iota(pos.begin(), pos.end(), 0);
    pdrop::compact_positions(pdrop::TokenView<std::int32_t>(pos.data(), tokens, 1),
                             pdrop::span<const std::int64_t>(keep.data(), t_new), s.position_mode());
    for (std::int64_t i = 0; i < t_new; ++i) EXPECT_EQ(pos[i], want[i]);
  }
}

TEST(Strategies, PyramidDropThroughDropByStrategyIsRankAndDrop) {
  std::mt19937 rng(31);
  pdrop::Workspace ws;
  const std::int64_t tokens = 61, hq = 8, hkv = 2, d = 12, nq = 3;
  const std::vector<ImageSpan> spans{{1, 7}, {10, 45}};
  const std::vector<std::int64_t> counts{3, 22};
  auto q = pdrop_test::random_vector<pdrop::bfloat16>(hq * nq * d, rng, -2, 2);
  auto k = pdrop_test::random_vector<pdrop::bfloat16>(hkv * tokens * d, rng, -2, 2);
  pdrop::DropInputs<pdrop::bfloat16, pdrop::bfloat16> in;
  in.q = pdrop::hnd_view<const pdrop::bfloat16>(q.data(), hq, nq, d);
  const std::vector<std::int64_t> pos{30, 58, 60};
  in.query_pos = pos;
  in.k = pdrop::hnd_view<const pdrop::bfloat16>(k.data(), hkv, tokens, d);
  std::vector<std::int64_t> a(tokens, -1), b(tokens, -1);
  std::vector<ImageSpan> sa(2), sb(2);
  const std::int64_t ta = pdrop::drop_by_strategy(Strategy::pyramid_drop, tokens, in, spans, counts, ws, a, sa);
  const std::int64_t tb = pdrop::rank_and_drop(in.q, in.query_pos, in.k, spans, counts, ws, b, sb);
  EXPECT_EQ(ta, tb);
  EXPECT_EQ(a, b);
  EXPECT_EQ(sa[1].start, sb[1].start);
  EXPECT_EQ(sa[1].length, 22);
  pdrop_test::expect_invalid(
      [&] { pdrop::drop_by_strategy(Strategy::pyramid_drop, tokens - 1, in, spans, counts, ws, a); },
      "in.k.tokens (61) must equal tokens (60) for Strategy::pyramid_drop");
}

TEST(Strategies, VtwWithdrawsEveryImageToken) {
  const auto s = pdrop::Schedule::vtw(32, 16);
  EXPECT_EQ(s.strategy(), Strategy::vtw);
  EXPECT_EQ(pdrop_test::std_vector(s.tokens_per_stage(576)), (std::vector<std::int64_t>{576, 0}));
  pdrop::Workspace ws;
  const std::int64_t tokens = 50;
  const std::vector<ImageSpan> spans{{3, 20}, {30, 7}};
  const std::vector<std::int64_t> zero{0, 0};
  pdrop::DropInputs<float, float> in;  // nothing to read
  std::vector<std::int64_t> keep(tokens, -1);
  std::vector<ImageSpan> new_spans(2);
  const std::int64_t t_new = pdrop::drop_by_strategy(Strategy::vtw, tokens, in, spans, zero, ws, keep, new_spans);
  const auto want = pdrop_test::naive_keep_list(tokens, spans, {});
  ASSERT_EQ(t_new, 23);
  EXPECT_EQ(std::vector<std::int64_t>(keep.begin(), keep.begin() + t_new), want);
  EXPECT_EQ(new_spans[0].length, 0);
  EXPECT_EQ(new_spans[1].start, 3 + 7);
  // A non-zero count is not VTW; nothing written.
  const auto before = pdrop_test::bytes_of(keep);
  pdrop_test::expect_invalid(
      [&] { pdrop::drop_by_strategy(Strategy::vtw, tokens, in, spans, std::vector<std::int64_t>{0, 1}, ws, keep); },
      "keep_counts[1] (1) must be 0");
  EXPECT_EQ(pdrop_test::bytes_of(keep), before);
}

TEST(Strategies, RandomAndDartThroughDropByStrategy) {
  std::mt19937 rng(8);
  pdrop::Workspace ws;
  const std::int64_t tokens = 70, heads = 2, d = 4, width = 6;
  const std::vector<ImageSpan> spans{{4, 30}, {40, 25}};
  const std::vector<std::int64_t> counts{9, 25};
  auto k = pdrop_test::random_vector<pdrop::half>(heads * tokens * d, rng);
  auto f = pdrop_test::random_vector<float>(tokens * width, rng);
  pdrop::DropInputs<float, pdrop::half, float> in;
  in.k = pdrop::nhd_view<const pdrop::half>(k.data(), tokens, heads, d);
  in.features = pdrop::TokenView<const float>(f.data(), tokens, width);
  in.seed = 1234;
  in.dart.pivots = 3;

  std::vector<std::int64_t> kept(34);
  pdrop::random_select(spans, counts, in.seed, kept);
  std::vector<std::int64_t> keep(tokens, -1);
  std::int64_t t_new = pdrop::drop_by_strategy(Strategy::random, tokens, in, spans, counts, ws, keep);
  auto want = pdrop_test::naive_keep_list(tokens, spans, kept);
  ASSERT_EQ(t_new, static_cast<std::int64_t>(want.size()));
  EXPECT_EQ(std::vector<std::int64_t>(keep.begin(), keep.begin() + t_new), want);

  pdrop::dart_select<pdrop::half, float>(in.k, in.features, spans, counts, ws, kept, in.dart);
  t_new = pdrop::drop_by_strategy(Strategy::dart, tokens, in, spans, counts, ws, keep);
  want = pdrop_test::naive_keep_list(tokens, spans, kept);
  ASSERT_EQ(t_new, static_cast<std::int64_t>(want.size()));
  EXPECT_EQ(std::vector<std::int64_t>(keep.begin(), keep.begin() + t_new), want);

  // Without features, DART compares the key rows.
  in.features = {};
  pdrop::dart_select<pdrop::half>(in.k, spans, counts, ws, kept, in.dart);
  t_new = pdrop::drop_by_strategy(Strategy::dart, tokens, in, spans, counts, ws, keep);
  want = pdrop_test::naive_keep_list(tokens, spans, kept);
  EXPECT_EQ(std::vector<std::int64_t>(keep.begin(), keep.begin() + t_new), want);
}

TEST(Strategies, DropByStrategyBadInputLeavesOutputsUntouched) {
  pdrop::Workspace ws;
  const std::int64_t tokens = 20;
  std::vector<float> k(tokens * 4, 1.0f);
  const std::vector<ImageSpan> spans{{2, 10}};
  const std::vector<std::int64_t> counts{4};
  pdrop::DropInputs<float, float> in;
  in.k = pdrop::hnd_view<const float>(k.data(), 1, tokens, 4);
  std::vector<std::int64_t> keep(tokens, -2);
  std::vector<ImageSpan> new_spans(1, ImageSpan{-1, -1});
  const auto keep0 = pdrop_test::bytes_of(keep);
  const auto spans0 = pdrop_test::bytes_of(new_spans);
  auto check = [&](auto call, const std::string& needle) {
    pdrop_test::expect_invalid(call, needle);
    EXPECT_EQ(pdrop_test::bytes_of(keep), keep0) << needle;
    EXPECT_EQ(pdrop_test::bytes_of(new_spans), spans0) << needle;
  };
  check([&] { pdrop::drop_by_strategy(static_cast<Strategy>(9), tokens, in, spans, counts, ws, keep, new_spans); },
        "strategy (9)");
  check([&] { pdrop::drop_by_strategy(Strategy::dart, tokens + 1, in, spans, counts, ws, keep, new_spans); },
        "in.k.tokens (20) must equal tokens (21)");
  check([&] { pdrop::drop_by_strategy(Strategy::random, tokens, in, spans, counts, ws,
                                      pdrop::span<std::int64_t>(keep.data(), 13), new_spans); },
        "keep.size (13) must be >= the new length 14");
  check([&] { pdrop::drop_by_strategy(Strategy::random, 11, in, spans, counts, ws, keep, new_spans); },
        "spans[0] (start 2, length 10)");
  check([&] { pdrop::drop_by_strategy(Strategy::dart, tokens, in, spans, std::vector<std::int64_t>{11}, ws, keep, new_spans); },
        "keep_counts[0] (11)");
  check([&] { pdrop::drop_by_strategy(Strategy::random, tokens, in, spans, counts, ws, keep,
                                      pdrop::span<ImageSpan>(nullptr, 1)); },
        "maybe_new_spans.data is null");
  k[4 * 5] = std::nanf("");  // token 5, inside the span
  in.dart.pivots = 1;
  check([&] { pdrop::drop_by_strategy(Strategy::dart, tokens, in, spans, counts, ws, keep, new_spans); },
        "key row of token 5");
}

}  // namespace
