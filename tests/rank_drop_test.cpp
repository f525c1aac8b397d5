// rank_and_drop against the composition of plain pieces: its own reported
// scores checked against the naive attention, a naive top-k per span on
// them, and the naive keep list. Then the compaction it feeds.
#include <gtest/gtest.h>

#include "test_util.hpp"

namespace {

using pdrop::HeadView;
using pdrop::ImageSpan;

template <class T>
class RankDropTest : public ::testing::Test {};
TYPED_TEST_SUITE(RankDropTest, pdrop_test::FloatTypes, pdrop_test::FloatTypeNames);

TYPED_TEST(RankDropTest, EqualsScoreThenPerSpanTopKThenKeepList) {
  using T = TypeParam;
  std::mt19937 rng(2024);
  pdrop::Workspace ws;
  struct C { std::int64_t hq, hkv, d, tokens; std::vector<ImageSpan> spans; std::vector<std::int64_t> counts; };
  const std::vector<C> cases{
      {1, 1, 4, 6, {{1, 4}}, {2}},
      {4, 2, 16, 80, {{7, 64}}, {32}},
      {8, 1, 8, 50, {{0, 50}}, {12}},
      {8, 4, 12, 120, {{3, 30}, {40, 1}, {50, 60}}, {15, 0, 59}},
      {2, 2, 3, 37, {{5, 0}, {5, 31}}, {0, 31}},
  };
  for (const C& c : cases) {
    const std::int64_t nq = 1, last = c.tokens - 1;
    auto q = pdrop_test::random_vector<T>(static_cast<std::size_t>(c.hq * c.d), rng, -2, 2);
    auto k = pdrop_test::random_vector<T>(static_cast<std::size_t>(c.hkv * c.tokens * c.d), rng, -2, 2);
    const auto qv = pdrop::hnd_view<const T>(q.data(), c.hq, nq, c.d);
    const auto kv = pdrop::hnd_view<const T>(k.data(), c.hkv, c.tokens, c.d);
    std::int64_t n_image = 0;
    for (auto& s : c.spans) n_image += s.length;

    std::vector<std::int64_t> keep(static_cast<std::size_t>(c.tokens) + 3, -9);
    std::vector<ImageSpan> new_spans(c.spans.size());
    std::vector<float> scores(static_cast<std::size_t>(n_image));
    const std::vector<std::int64_t> pos{last};
    const std::int64_t t_new = pdrop::rank_and_drop<T, T>(qv, pos, kv, c.spans, c.counts, ws,
                                                          keep, new_spans, scores);

    // Scores are the attention of the last token.
    auto q_at = [&](std::int64_t h, std::int64_t, std::int64_t e) { return pdrop_test::as_double(q[h * c.d + e]); };
    auto k_at = [&](std::int64_t g, std::int64_t t, std::int64_t e) { return pdrop_test::as_double(k[(g * c.tokens + t) * c.d + e]); };
    const auto ref = pdrop_test::naive_scores(c.hq, c.hkv, nq, c.d, pos, c.spans, q_at, k_at);
    for (std::int64_t i = 0; i < n_image; ++i) EXPECT_NEAR(scores[i], ref[i], 2e-5 * ref[i] + 1e-7);

    // Per-span naive top-k on those scores, then the naive keep list.
    std::vector<std::int64_t> kept;
    std::int64_t off = 0;
    for (std::size_t s = 0; s < c.spans.size(); ++s) {
      std::vector<float> part(scores.begin() + off, scores.begin() + off + c.spans[s].length);
      // The query token stays when it lies in the span (rank_drop.hpp).
      for (std::int64_t i : pdrop_test::naive_top_k(part, c.counts[s], pdrop_test::forced_in(pos, c.spans[s])))
        kept.push_back(c.spans[s].start + i);
      off += c.spans[s].length;
    }
    const auto want = pdrop_test::naive_keep_list(c.tokens, c.spans, kept);
    ASSERT_EQ(t_new, static_cast<std::int64_t>(want.size()));
    EXPECT_EQ(std::vector<std::int64_t>(keep.begin(), keep.begin() + t_new), want);
    for (std::size_t i = static_cast<std::size_t>(t_new); i < keep.size(); ++i) EXPECT_EQ(keep[i], -9);

    // New spans: where each span's kept tokens landed in the keep list.
    for (std::size_t s = 0; s < c.spans.size(); ++s) {
      EXPECT_EQ(new_spans[s].length, c.counts[s]);
      for (std::int64_t i = 0; i < new_spans[s].length; ++i) {
        const std::int64_t orig = keep[new_spans[s].start + i];
        EXPECT_TRUE(orig >= c.spans[s].start && orig < c.spans[s].end()) << orig;
      }
    }
  }
}

TEST(RankDrop, WorkspaceSizedOnceDoesNotGrow) {
  std::mt19937 rng(1);
  const std::int64_t hq = 8, hkv = 2, d = 32, tokens = 300;
  auto q = pdrop_test::random_vector<float>(hq * d, rng);
  auto k = pdrop_test::random_vector<float>(hkv * tokens * d, rng);
  pdrop::Workspace ws;
  ws.reserve(hq, hkv, 1, tokens, d, 256);
  const std::size_t bytes = ws.bytes();
  std::vector<std::int64_t> keep(tokens);
  for (std::int64_t n : {256, 100, 7}) {
    const std::vector<ImageSpan> spans{{10, n}};
    const std::vector<std::int64_t> counts{n / 2};
    const std::vector<std::int64_t> pos{tokens - 1};
    pdrop::rank_and_drop<float, float>(pdrop::hnd_view<const float>(q.data(), hq, 1, d), pos,
                                       pdrop::hnd_view<const float>(k.data(), hkv, tokens, d),
                                       spans, counts, ws, keep);
    EXPECT_EQ(ws.bytes(), bytes) << n;
  }
}

TEST(RankDrop, RejectedCallsLeaveEveryOutputUntouched) {
  std::mt19937 rng(3);
  const std::int64_t hq = 4, hkv = 2, d = 8, tokens = 40;
  auto q = pdrop_test::random_vector<float>(hq * d, rng);
  auto k = pdrop_test::random_vector<float>(hkv * tokens * d, rng);
  const auto qv = pdrop::hnd_view<const float>(q.data(), hq, 1, d);
  const auto kv = pdrop::hnd_view<const float>(k.data(), hkv, tokens, d);
  pdrop::Workspace ws;
  std::vector<ImageSpan> spans{{5, 30}};
  std::vector<std::int64_t> keep(tokens, -1);
  std::vector<ImageSpan> new_spans{{-5, -5}};
  std::vector<float> scores(30, 7.0f);
  const std::vector<std::int64_t> pos{tokens - 1};
  const auto snap = [&] {
    return std::make_tuple(pdrop_test::bytes_of(keep), pdrop_test::bytes_of(new_spans),
                           pdrop_test::bytes_of(scores), pdrop_test::bytes_of(spans));
  };
  const auto before = snap();
  auto call = [&](std::vector<std::int64_t> counts, std::int64_t keep_size, std::int64_t scores_size) {
    pdrop::rank_and_drop<float, float>(qv, pos, kv, spans, counts, ws, {keep.data(), keep_size},
                                       new_spans, {scores.data(), scores_size});
  };
  pdrop_test::expect_invalid([&] { call({31}, tokens, 30); }, "keep_counts[0] (31)");
  pdrop_test::expect_invalid([&] { call({-1}, tokens, 30); }, "keep_counts[0] (-1)");
  pdrop_test::expect_invalid([&] { call({1, 2}, tokens, 30); }, "keep_counts.size (2)");
  pdrop_test::expect_invalid([&] { call({15}, 24, 30); }, "keep.size (24) must be >= the new length 25");
  pdrop_test::expect_invalid([&] { call({15}, tokens, 29); }, "maybe_scores.size (29)");
  // Null data behind non-zero sizes, for every array argument.
  pdrop_test::expect_invalid([&] {
    pdrop::rank_and_drop<float, float>(qv, pos, kv, spans, {nullptr, 1}, ws, keep);
  }, "keep_counts.data is null");
  const std::vector<std::int64_t> c15{15};
  pdrop_test::expect_invalid([&] {
    pdrop::rank_and_drop<float, float>(qv, pos, kv, spans, c15, ws, {nullptr, tokens});
  }, "keep.data is null");
  pdrop_test::expect_invalid([&] {
    pdrop::rank_and_drop<float, float>(qv, pos, kv, spans, c15, ws, keep, {nullptr, 1});
  }, "maybe_new_spans.data is null");
  pdrop_test::expect_invalid([&] {
    pdrop::rank_and_drop<float, float>(qv, pos, kv, spans, c15, ws, keep, new_spans, {nullptr, 30});
  }, "maybe_scores.data is null");
  {  // new spans written over the spans array shifted by one
    std::vector<ImageSpan> two{{2, 10}, {15, 10}, {0, 0}};
    const std::vector<std::int64_t> c2{5, 5};
    const auto before_two = pdrop_test::bytes_of(two);
    pdrop_test::expect_invalid([&] {
      pdrop::rank_and_drop<float, float>(qv, pos, kv, {two.data(), 2}, c2, ws, keep,
                                         {two.data() + 1, 2});
    }, "maybe_new_spans overlaps spans");
    EXPECT_EQ(pdrop_test::bytes_of(two), before_two);
  }
  // A span far past the end is reported as such (no huge scratch first).
  pdrop_test::expect_invalid([&] {
    const std::vector<ImageSpan> huge{{5, std::int64_t{1} << 60}};
    pdrop::rank_and_drop<float, float>(qv, pos, kv, huge, c15, ws, keep);
  }, "spans[0] (start 5, length 1152921504606846976)");
  k[(1 * tokens + 20) * d] = std::nanf("");
  pdrop_test::expect_invalid([&] { call({15}, tokens, 30); }, "non-finite");
  EXPECT_EQ(snap(), before);
}

}  // namespace
