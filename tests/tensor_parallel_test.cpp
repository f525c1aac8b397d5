// Tensor-parallel scoring, simulated in one process: the heads of a problem
// are split over 1, 2, 3 or 4 "ranks" (even and uneven kv-head blocks), each
// rank scores its shard, the partial arrays are summed the way a sum
// all-reduce would, and the finalized scores / keep lists are compared with
// score_image_tokens / rank_and_drop on the unsharded tensors: bit for bit
// for the per-kv-head sums (in any reduction order), within the documented
// rounding bound for the summed partials. Then every rejection path.
#include <gtest/gtest.h>

#include <limits>

#include "pdrop/tensor_parallel.hpp"
#include "test_util.hpp"

namespace {

using namespace pdrop_test::names;
using pdrop::HeadShard;
using pdrop_test::same_bits;

// Shapes with the keep count of each span.
using TpCase = pdrop_test::ScoreCase;

// The query row's position in the hand-written cases below: token 0, text
// (their image spans start at 2).
const std::int64_t kQueryPos0 = 0;
const span<const std::int64_t> kQuery0(&kQueryPos0, 1);

std::vector<TpCase> tp_cases() {
  return {
      {8, 4, 1, 16, 80, {{5, 60}}, {79}, {20}},
      {8, 4, 3, 7, 50, {{0, 17}, {20, 13}}, {49, 30, 10}, {5, 13}},
      {4, 4, 1, 63, 65, {{1, 63}}, {64}, {31}},
      {16, 8, 2, 9, 37, {{2, 30}}, {36, 20}, {1}},
      {6, 2, 1, 33, 41, {{0, 1}, {3, 38}}, {40}, {1, 37}},
      {2, 2, 1, 3, 7, {{2, 0}, {2, 4}}, {6}, {0, 3}},
  };
}

// Kv-head boundaries of the splits tried for hkv kv heads: one rank, two
// even halves, four even quarters, uneven blocks, one kv head per rank.
std::vector<std::vector<std::int64_t>> splits(std::int64_t hkv) {
  std::vector<std::vector<std::int64_t>> out{{0, hkv}};
  if (hkv % 2 == 0) out.push_back({0, hkv / 2, hkv});
  if (hkv % 4 == 0) out.push_back({0, hkv / 4, hkv / 2, 3 * hkv / 4, hkv});
  if (hkv >= 3) out.push_back({0, 1, hkv});          // 1 + (hkv - 1)
  if (hkv >= 3) out.push_back({0, hkv - 2, hkv - 1, hkv});
  if (hkv > 4) {
    std::vector<std::int64_t> each;
    for (std::int64_t g = 0; g <= hkv; ++g) each.push_back(g);
    out.push_back(each);
  }
  return out;
}

// Head-major q and k with rows padded by 3 (the non-finite key test below
// relies on that layout).
template <class T>
struct Problem : pdrop_test::ScoreProblem<T> {
  std::int64_t n_image;
  Problem(const TpCase& c, std::mt19937& rng)
      : pdrop_test::ScoreProblem<T>(c, rng, false, 3), n_image(c.image_tokens()) {}
};

// The shard of kv heads [g0, g1): those kv heads of k, their query heads of q.
template <class T>
HeadView<const T> q_shard(const Problem<T>& p, std::int64_t g0, std::int64_t g1) {
  const std::int64_t group = p.c.hq / p.c.hkv;
  return HeadView<const T>(p.qv.row(g0 * group, 0), (g1 - g0) * group, p.c.nq, p.c.d,
                           p.qv.head_stride, p.qv.token_stride);
}
template <class T>
HeadView<const T> k_shard(const Problem<T>& p, std::int64_t g0, std::int64_t g1) {
  return HeadView<const T>(p.kv.row(g0, 0), g1 - g0, p.c.tokens, p.c.d, p.kv.head_stride,
                           p.kv.token_stride);
}

// Elementwise sum of the ranks' arrays, ranks in the given order (what a sum
// all-reduce computes, in one of its orders).
std::vector<float> reduce(const std::vector<std::vector<float>>& parts,
                          const std::vector<std::size_t>& order) {
  std::vector<float> out = parts[order[0]];
  for (std::size_t r = 1; r < order.size(); ++r)
    for (std::size_t i = 0; i < out.size(); ++i) out[i] += parts[order[r]][i];
  return out;
}

template <class T>
class TensorParallelTest : public ::testing::Test {};
TYPED_TEST_SUITE(TensorParallelTest, pdrop_test::FloatTypes, pdrop_test::FloatTypeNames);

TYPED_TEST(TensorParallelTest, PerKvHeadSumsGiveBitIdenticalScoresAndKeepList) {
  using T = TypeParam;
  std::mt19937 rng(606);
  pdrop::Workspace ws;
  for (const TpCase& c : tp_cases()) {
    const Problem<T> p(c, rng);
    const std::int64_t n = p.n_image;
    std::vector<float> single(static_cast<std::size_t>(n));
    pdrop::score_image_tokens(p.qv, c.pos, p.kv, c.spans, ws, single);

    // Sanity: the single-process scores are the attention (naive, double).
    const auto ref = p.reference();
    for (std::int64_t i = 0; i < n; ++i) ASSERT_NEAR(single[i], ref[i], 3e-5 * ref[i] + 1e-7);

    std::vector<std::int64_t> keep_single(static_cast<std::size_t>(c.tokens));
    std::vector<ImageSpan> spans_single(c.spans.size());
    std::vector<float> scores_single(static_cast<std::size_t>(n));
    const std::int64_t t_single = pdrop::rank_and_drop(p.qv, c.pos, p.kv, c.spans, c.counts, ws,
                                                       keep_single, spans_single, scores_single);

    for (const auto& b : splits(c.hkv)) {
      SCOPED_TRACE(::testing::Message() << "hq " << c.hq << " hkv " << c.hkv << " nq " << c.nq
                                        << " ranks " << b.size() - 1);
      const std::size_t ranks = b.size() - 1;
      std::vector<std::vector<float>> parts(ranks);
      for (std::size_t r = 0; r < ranks; ++r) {
        parts[r].assign(static_cast<std::size_t>(c.hkv * n), -7.0f);  // all overwritten
        pdrop::score_partial_by_kv_head(q_shard(p, b[r], b[r + 1]), c.pos,
                                        k_shard(p, b[r], b[r + 1]), c.spans,
                                        HeadShard{b[r], c.hkv}, ws, parts[r]);
        // Rows of other ranks' kv heads are zero.
        for (std::int64_t g = 0; g < c.hkv; ++g)
          if (g < b[r] || g >= b[r + 1]) {
            for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(parts[r][g * n + i], 0.0f);
          }
      }
      std::vector<std::size_t> forward(ranks), backward(ranks);
      for (std::size_t r = 0; r < ranks; ++r) forward[r] = r, backward[r] = ranks - 1 - r;
      const auto sums = reduce(parts, forward);
      EXPECT_TRUE(same_bits(sums, reduce(parts, backward)));  // x + 0 is exact

      std::vector<float> scores(static_cast<std::size_t>(n), -1.0f);
      pdrop::finalize_scores(sums, c.hkv, c.hq, c.nq, scores);
      EXPECT_TRUE(same_bits(scores, single));

      // Every rank finalizes its own copy: all get rank_and_drop's outputs.
      for (std::size_t r = 0; r < ranks; ++r) {
        std::vector<std::int64_t> keep(static_cast<std::size_t>(c.tokens) + 2, -9);
        std::vector<ImageSpan> new_spans(c.spans.size());
        std::vector<float> kept_scores(static_cast<std::size_t>(n));
        const auto copy = r % 2 ? reduce(parts, backward) : sums;
        const std::int64_t t_new = pdrop::finalize_and_drop(
            copy, c.hkv, c.hq, c.pos, c.tokens, c.spans, c.counts, ws, keep, new_spans,
            kept_scores);
        ASSERT_EQ(t_new, t_single);
        EXPECT_EQ(std::vector<std::int64_t>(keep.begin(), keep.begin() + t_new),
                  std::vector<std::int64_t>(keep_single.begin(), keep_single.begin() + t_new));
        EXPECT_EQ(keep[t_new], -9);
        for (std::size_t s = 0; s < c.spans.size(); ++s) {
          EXPECT_EQ(new_spans[s].start, spans_single[s].start);
          EXPECT_EQ(new_spans[s].length, spans_single[s].length);
        }
        EXPECT_TRUE(same_bits(kept_scores, scores_single));
      }
    }
  }
}

TYPED_TEST(TensorParallelTest, SummedPartialsWithinRoundingAndExactWhereDocumented) {
  using T = TypeParam;
  std::mt19937 rng(607);
  pdrop::Workspace ws;
  const float eps = std::numeric_limits<float>::epsilon() / 2;  // 2^-24
  for (const TpCase& c : tp_cases()) {
    const Problem<T> p(c, rng);
    const std::int64_t n = p.n_image;
    std::vector<float> single(static_cast<std::size_t>(n));
    pdrop::score_image_tokens(p.qv, c.pos, p.kv, c.spans, ws, single);

    for (const auto& b : splits(c.hkv)) {
      SCOPED_TRACE(::testing::Message() << "hq " << c.hq << " hkv " << c.hkv << " ranks "
                                        << b.size() - 1);
      const std::size_t ranks = b.size() - 1;
      std::vector<std::vector<float>> parts(ranks);
      bool tail_single = true;  // every rank after the first holds one kv head
      for (std::size_t r = 0; r < ranks; ++r) {
        parts[r].assign(static_cast<std::size_t>(n), -7.0f);
        pdrop::score_partial(q_shard(p, b[r], b[r + 1]), c.pos, k_shard(p, b[r], b[r + 1]),
                             c.spans, ws, parts[r]);
        if (r > 0 && b[r + 1] - b[r] != 1) tail_single = false;
      }
      std::vector<std::size_t> forward(ranks);
      for (std::size_t r = 0; r < ranks; ++r) forward[r] = r;
      const auto sums = reduce(parts, forward);
      std::vector<float> scores(static_cast<std::size_t>(n));
      pdrop::finalize_scores(sums, 1, c.hq, c.nq, scores);

      // |finalized - single| <= 2 G eps |single|: (G - 1) eps per order of
      // the sum, one rounding of the scaling each (second-order terms are
      // below the 1e-6 slack).
      const double bound = 2.0 * static_cast<double>(c.hkv) * eps;
      for (std::int64_t i = 0; i < n; ++i)
        EXPECT_LE(std::abs(static_cast<double>(scores[i]) - single[i]),
                  bound * single[i] * (1 + 1e-6) + 1e-38)
            << "token " << i;
      if (tail_single) {
        EXPECT_TRUE(same_bits(scores, single));
      }

      // Selection: the top-k of the finalized scores (exact property), and
      // any token where it differs from rank_and_drop's pick is within the
      // rounding bound of that span's k-th best single-process score.
      std::vector<std::int64_t> keep(static_cast<std::size_t>(c.tokens));
      const std::int64_t t_new = pdrop::finalize_and_drop(sums, 1, c.hq, c.pos, c.tokens,
                                                          c.spans, c.counts, ws, keep);
      std::vector<std::int64_t> keep_single(static_cast<std::size_t>(c.tokens));
      const std::int64_t t_single = pdrop::rank_and_drop(p.qv, c.pos, p.kv, c.spans, c.counts,
                                                         ws, keep_single);
      ASSERT_EQ(t_new, t_single);
      std::vector<std::int64_t> kept, kept_single;
      std::int64_t off = 0;
      for (std::size_t s = 0; s < c.spans.size(); ++s) {
        const std::vector<float> mine(scores.begin() + off, scores.begin() + off + c.spans[s].length);
        const std::vector<float> ref(single.begin() + off, single.begin() + off + c.spans[s].length);
        // Query tokens in the span are kept outside the ranking.
        const auto forced = pdrop_test::forced_in(c.pos, c.spans[s]);
        const auto a = pdrop_test::naive_top_k(mine, c.counts[s], forced);
        const auto b2 = pdrop_test::naive_top_k(ref, c.counts[s], forced);
        for (std::int64_t i : a) kept.push_back(c.spans[s].start + i);
        if (a != b2) {
          std::vector<float> sorted;
          for (std::size_t i = 0; i < ref.size(); ++i)
            if (std::count(forced.begin(), forced.end(), static_cast<std::int64_t>(i)) == 0)
              sorted.push_back(ref[i]);
          std::sort(sorted.rbegin(), sorted.rend());
          const double kth =
              sorted[static_cast<std::size_t>(c.counts[s] - static_cast<std::int64_t>(forced.size()) - 1)];
          for (std::int64_t i = 0; i < c.spans[s].length; ++i) {
            const bool in_a = std::count(a.begin(), a.end(), i) > 0;
            const bool in_b = std::count(b2.begin(), b2.end(), i) > 0;
            if (in_a != in_b) {
              EXPECT_LE(std::abs(ref[i] - kth), 2 * bound * kth + 1e-38);
            }
          }
        }
        off += c.spans[s].length;
      }
      EXPECT_EQ(std::vector<std::int64_t>(keep.begin(), keep.begin() + t_new),
                pdrop_test::naive_keep_list(c.tokens, c.spans, kept));
    }
  }
}

TEST(TensorParallel, OneRankPartialIsTheUnnormalisedScore) {
  // score_partial on the whole model times 1/(Hq nq) is score_image_tokens,
  // bit for bit; finalize_scores may run in place.
  std::mt19937 rng(1);
  pdrop::Workspace ws;
  const Problem<float> p(tp_cases()[1], rng);
  std::vector<float> single(static_cast<std::size_t>(p.n_image)), partial(single.size());
  pdrop::score_image_tokens(p.qv, p.c.pos, p.kv, p.c.spans, ws, single);
  pdrop::score_partial(p.qv, p.c.pos, p.kv, p.c.spans, ws, partial);
  pdrop::finalize_scores(partial, 1, p.c.hq, p.c.nq, partial);  // in place
  EXPECT_TRUE(same_bits(partial, single));
}

TEST(TensorParallel, ReservedWorkspaceDoesNotGrow) {
  std::mt19937 rng(2);
  const TpCase c = tp_cases()[0];
  const Problem<float> p(c, rng);
  pdrop::Workspace ws;
  const std::int64_t half_q = c.hq / 2, half_kv = c.hkv / 2;
  ws.reserve_parallel(half_q, half_kv, c.nq, c.tokens, c.d, p.n_image);
  const std::size_t bytes = ws.bytes();
  std::vector<float> sums(static_cast<std::size_t>(c.hkv * p.n_image)), partial(p.n_image);
  pdrop::score_partial_by_kv_head(q_shard(p, 0, half_kv), c.pos, k_shard(p, 0, half_kv), c.spans,
                                  HeadShard{0, c.hkv}, ws, sums);
  pdrop::score_partial(q_shard(p, half_kv, c.hkv), c.pos, k_shard(p, half_kv, c.hkv), c.spans, ws,
                       partial);
  std::vector<std::int64_t> keep(static_cast<std::size_t>(c.tokens));
  pdrop::finalize_and_drop(sums, c.hkv, c.hq, c.pos, c.tokens, c.spans, c.counts, ws, keep);
  EXPECT_EQ(ws.bytes(), bytes);
}

TEST(TensorParallelErrors, PartialScoringRejectsAndWritesNothing) {
  using pdrop_test::expect_invalid;
  std::mt19937 rng(3);
  pdrop::Workspace ws;
  const TpCase c = tp_cases()[0];  // hq 8, hkv 4, one span of 60
  Problem<float> p(c, rng);
  const auto q2 = q_shard(p, 2, 4);
  const auto k2 = k_shard(p, 2, 4);
  std::vector<float> sums(static_cast<std::size_t>(c.hkv * p.n_image), 5.0f);
  std::vector<float> partial(static_cast<std::size_t>(p.n_image), 5.0f);
  const auto sums_before = pdrop_test::bytes_of(sums);
  const auto partial_before = pdrop_test::bytes_of(partial);

  const auto by_head = [&](HeadShard shard, span<float> out) {
    pdrop::score_partial_by_kv_head(q2, c.pos, k2, c.spans, shard, ws, out);
  };
  expect_invalid([&] { by_head({2, 0}, sums); }, "shard (kv_begin 2, kv_heads 0)");
  expect_invalid([&] { by_head({-1, 4}, sums); }, "shard (kv_begin -1, kv_heads 4)");
  expect_invalid([&] { by_head({3, 4}, sums); }, "kv_begin + k.heads <= kv_heads");
  expect_invalid([&] { by_head({2, 4}, span<float>(sums.data(), 3 * p.n_image)); },
                 "sums.size (180) must equal shard.kv_heads (4) x image tokens (60)");
  expect_invalid([&] { by_head({2, 4}, span<float>(nullptr, 4 * p.n_image)); },
                 "sums.data is null");
  expect_invalid([&] {
    const HeadView<const float> q3(q2.data, 3, q2.tokens, q2.dim, q2.head_stride, q2.token_stride);
    pdrop::score_partial_by_kv_head(q3, c.pos, k2, c.spans, {2, 4}, ws, sums);
  }, "q.heads (3) must be a multiple of k.heads (2)");
  expect_invalid([&] {
    pdrop::score_partial(q2, c.pos, k2, c.spans, ws, span<float>(partial.data(), 59));
  }, "partial.size (59) must equal the image tokens over all spans (60)");
  expect_invalid([&] {
    const std::vector<std::int64_t> bad_pos{c.tokens};
    pdrop::score_partial(q2, bad_pos, k2, c.spans, ws, partial);
  }, "query_pos[0] (80)");

  // A non-finite key in the shard's second kv head: a value_error naming
  // the (local) query head, nothing written.
  p.k[static_cast<std::size_t>((3 * c.tokens + 10) * (c.d + 3) + 2)] =
      std::numeric_limits<float>::infinity();
  expect_invalid([&] { by_head({2, 4}, sums); }, "non-finite value: the logit of query head 2");
  expect_invalid([&] { pdrop::score_partial(q2, c.pos, k2, c.spans, ws, partial); },
                 "non-finite value: the logit of query head 2");
  // The parallel overloads report the same group, whatever the threads.
  for (int threads : {1, 2, 3}) {
    const pdrop_test::ThreadFor pf{threads};
    expect_invalid([&] {
      pdrop::score_partial_by_kv_head(q2, c.pos, k2, c.spans, {2, 4}, ws, sums, {}, pf);
    }, "non-finite value: the logit of query head 2");
    expect_invalid([&] { pdrop::score_partial(q2, c.pos, k2, c.spans, ws, partial, {}, pf); },
                   "non-finite value: the logit of query head 2");
  }
  EXPECT_EQ(pdrop_test::bytes_of(sums), sums_before);
  EXPECT_EQ(pdrop_test::bytes_of(partial), partial_before);
}

TEST(TensorParallelErrors, FinalizeRejectsAndWritesNothing) {
  using pdrop_test::expect_invalid;
  const std::vector<ImageSpan> spans{{2, 3}, {6, 2}};  // 5 image tokens of 9
  std::vector<float> sums{0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.5f, 0.4f, 0.3f, 0.2f, 0.1f};  // 2 x 5
  std::vector<float> scores(5, -1.0f);
  const auto scores_before = pdrop_test::bytes_of(scores);
  expect_invalid([&] { pdrop::finalize_scores(sums, 0, 8, 1, scores); }, "rows (0) must be >= 1");
  expect_invalid([&] { pdrop::finalize_scores(sums, 2, 0, 1, scores); }, "q_heads (0) must be >= 1");
  expect_invalid([&] { pdrop::finalize_scores(sums, 2, 8, 0, scores); }, "queries (0) must be >= 1");
  expect_invalid([&] { pdrop::finalize_scores(sums, 3, 8, 1, scores); },
                 "sums.size (10) must equal rows (3) x image tokens (5) = 15");
  expect_invalid([&] { pdrop::finalize_scores(sums, 2, 8, 1, span<float>(nullptr, 5)); },
                 "scores.data is null");
  expect_invalid([&] {
    pdrop::finalize_scores(span<const float>(sums.data(), 5), 1, 8, 1,
                           span<float>(sums.data() + 2, 5));
  }, "scores must be disjoint from sums");
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), -0.5f}) {
    auto s = sums;
    s[7] = bad;
    expect_invalid([&] { pdrop::finalize_scores(s, 2, 8, 1, scores); }, "sums[7] (");
  }
  EXPECT_EQ(pdrop_test::bytes_of(scores), scores_before);

  pdrop::Workspace ws;
  std::vector<std::int64_t> counts{2, 1}, keep(9, -3);
  std::vector<ImageSpan> new_spans(2, ImageSpan{-1, -1});
  std::vector<float> ranked(5, -2.0f);
  const auto keep_before = pdrop_test::bytes_of(keep);
  const auto ranked_before = pdrop_test::bytes_of(ranked);
  const auto drop = [&](span<const float> s, std::int64_t tokens, std::vector<ImageSpan> sp,
                        std::vector<std::int64_t> k, std::int64_t keep_size, std::int64_t ranked_size) {
    pdrop::finalize_and_drop(s, 2, 8, kQuery0, tokens, sp, k, ws, span<std::int64_t>(keep.data(), keep_size),
                             new_spans, span<float>(ranked.data(), ranked_size));
  };
  expect_invalid([&] { drop(sums, -1, spans, counts, 9, 5); }, "tokens (-1) must be >= 0");
  expect_invalid([&] { drop(sums, 7, spans, counts, 9, 5); }, "spans[1] (start 6, length 2) must lie inside [0, tokens = 7)");
  expect_invalid([&] { drop(sums, 9, {{2, 3}, {4, 2}}, counts, 9, 5); }, "spans are sorted and disjoint");
  expect_invalid([&] { drop(sums, 9, {{2, 3}, {6, 3}}, counts, 9, 6); }, "sums.size (10) must equal rows (2) x image tokens (6)");
  expect_invalid([&] { drop(sums, 9, spans, {2}, 9, 5); }, "keep_counts.size (1) must equal spans.size (2)");
  expect_invalid([&] { drop(sums, 9, spans, {4, 1}, 9, 5); }, "keep_counts[0] (4) must be in [0, spans[0].length = 3]");
  expect_invalid([&] { drop(sums, 9, spans, counts, 6, 5); }, "keep.size (6) must be >= the new length 7");
  expect_invalid([&] { drop(sums, 9, spans, counts, 9, 4); }, "maybe_scores.size (4) must be 0 or the image tokens (5)");
  auto nan_sums = sums;
  nan_sums[0] = std::numeric_limits<float>::quiet_NaN();
  expect_invalid([&] { drop(nan_sums, 9, spans, counts, 9, 5); }, "sums[0] (nan)");
  EXPECT_EQ(pdrop_test::bytes_of(keep), keep_before);
  EXPECT_EQ(pdrop_test::bytes_of(ranked), ranked_before);
  EXPECT_EQ(new_spans[0].start, -1);

  // And the valid call: each score is (0 + row 0 + row 1) / 8, the picks a
  // plain top-k per span of those, text tokens 0, 1, 5, 8 always stay.
  const std::int64_t t_new = pdrop::finalize_and_drop(sums, 2, 8, kQuery0, 9, spans, counts, ws, keep,
                                                      new_spans, ranked);
  std::vector<float> want(5);
  for (std::size_t i = 0; i < 5; ++i) want[i] = (0.0f + sums[i] + sums[5 + i]) * (1.0f / 8.0f);
  EXPECT_TRUE(same_bits(ranked, want));
  std::vector<std::int64_t> kept;
  for (std::int64_t i : pdrop_test::naive_top_k({want[0], want[1], want[2]}, 2)) kept.push_back(2 + i);
  for (std::int64_t i : pdrop_test::naive_top_k({want[3], want[4]}, 1)) kept.push_back(6 + i);
  ASSERT_EQ(t_new, 7);
  EXPECT_EQ(std::vector<std::int64_t>(keep.begin(), keep.begin() + 7),
            pdrop_test::naive_keep_list(9, spans, kept));
}

// The parallel_for overloads of both partial scorers give the serial
// overloads' bits, with SerialFor and with 2 and 3 real threads.
TYPED_TEST(TensorParallelTest, ParallelOverloadsGiveTheSerialBits) {
  using T = TypeParam;
  std::mt19937 rng(707);
  pdrop::Workspace ws;
  for (const TpCase& c : tp_cases()) {
    const Problem<T> p(c, rng);
    const std::int64_t n = p.n_image;
    for (const auto& b : splits(c.hkv)) {
      for (std::size_t r = 0; r + 1 < b.size(); ++r) {
        SCOPED_TRACE(::testing::Message() << "hq " << c.hq << " hkv " << c.hkv << " shard ["
                                          << b[r] << ", " << b[r + 1] << ")");
        const auto qs = q_shard(p, b[r], b[r + 1]);
        const auto ks = k_shard(p, b[r], b[r + 1]);
        const HeadShard shard{b[r], c.hkv};
        std::vector<float> sums(static_cast<std::size_t>(c.hkv * n), -1.0f), partial(n, -1.0f);
        pdrop::score_partial_by_kv_head(qs, c.pos, ks, c.spans, shard, ws, sums);
        pdrop::score_partial(qs, c.pos, ks, c.spans, ws, partial);
        const auto run = [&](auto pf) {
          std::vector<float> sums_p(sums.size(), -2.0f), partial_p(partial.size(), -2.0f);
          pdrop::score_partial_by_kv_head(qs, c.pos, ks, c.spans, shard, ws, sums_p, {}, pf);
          pdrop::score_partial(qs, c.pos, ks, c.spans, ws, partial_p, {}, pf);
          EXPECT_TRUE(same_bits(sums_p, sums));
          EXPECT_TRUE(same_bits(partial_p, partial));
        };
        run(pdrop::SerialFor{});
        run(pdrop_test::ThreadFor{2});
        run(pdrop_test::ThreadFor{3});
        // And the two scorers agree with each other (different code paths:
        // one running sum, one slot per kv head): partial is the in-order
        // fold of the shard's rows of sums; the other rows are zero.
        for (std::int64_t i = 0; i < n; ++i) {
          float a = 0.0f;
          for (std::int64_t g = b[r]; g < b[r + 1]; ++g) a += sums[static_cast<std::size_t>(g * n + i)];
          ASSERT_TRUE(same_bits(&a, &partial[static_cast<std::size_t>(i)], 1)) << "token " << i;
        }
        for (std::int64_t g = 0; g < c.hkv; ++g) {
          if (g >= b[r] && g < b[r + 1]) continue;
          for (std::int64_t i = 0; i < n; ++i) {
            ASSERT_EQ(sums[static_cast<std::size_t>(g * n + i)], 0.0f);
          }
        }
      }
    }
  }
}

// finalize_and_drop_global on all-reduced per-kv-head sums is
// rank_and_drop_global on the unsharded tensors, bit for bit: keep list,
// new spans and scores, for budgets from nothing to everything.
TYPED_TEST(TensorParallelTest, GlobalBudgetIsBitIdenticalToRankAndDropGlobal) {
  using T = TypeParam;
  std::mt19937 rng(808);
  pdrop::Workspace ws;
  for (const TpCase& c : tp_cases()) {
    const Problem<T> p(c, rng);
    const std::int64_t n = p.n_image;
    const auto b = splits(c.hkv).back();  // the most ranks
    std::vector<std::vector<float>> parts(b.size() - 1);
    for (std::size_t r = 0; r + 1 < b.size(); ++r) {
      parts[r].assign(static_cast<std::size_t>(c.hkv * n), -1.0f);
      pdrop::score_partial_by_kv_head(q_shard(p, b[r], b[r + 1]), c.pos, k_shard(p, b[r], b[r + 1]),
                                      c.spans, HeadShard{b[r], c.hkv}, ws, parts[r]);
    }
    std::vector<std::size_t> order(parts.size());
    for (std::size_t r = 0; r < order.size(); ++r) order[r] = order.size() - 1 - r;
    const auto sums = reduce(parts, order);
    for (std::int64_t n_keep : {std::int64_t{0}, std::int64_t{1}, n / 3, n - 1, n}) {
      SCOPED_TRACE(::testing::Message() << "hq " << c.hq << " hkv " << c.hkv << " n_keep " << n_keep);
      std::vector<std::int64_t> keep(static_cast<std::size_t>(c.tokens), -1), keep_ref = keep;
      std::vector<ImageSpan> spans_new(c.spans.size()), spans_ref(c.spans.size());
      std::vector<float> scores(static_cast<std::size_t>(n)), scores_ref(scores.size());
      const std::int64_t t_new = pdrop::finalize_and_drop_global(
          sums, c.hkv, c.hq, c.pos, c.tokens, c.spans, n_keep, ws, keep, spans_new, scores);
      const std::int64_t t_ref = pdrop::rank_and_drop_global(
          p.qv, c.pos, p.kv, c.spans, n_keep, ws, keep_ref, spans_ref, scores_ref);
      std::int64_t queries_in_spans = 0;  // kept over a smaller budget
      for (const ImageSpan& sp : c.spans)
        queries_in_spans += static_cast<std::int64_t>(pdrop_test::forced_in(c.pos, sp).size());
      EXPECT_EQ(t_new, c.tokens - n + std::max(n_keep, queries_in_spans));
      EXPECT_EQ(t_new, t_ref);
      EXPECT_EQ(keep, keep_ref);
      EXPECT_TRUE(same_bits(scores, scores_ref));
      for (std::size_t s = 0; s < c.spans.size(); ++s) {
        EXPECT_EQ(spans_new[s].start, spans_ref[s].start);
        EXPECT_EQ(spans_new[s].length, spans_ref[s].length);
      }
    }
  }
}

TEST(TensorParallelErrors, FinalizeGlobalRejectsAndWritesNothing) {
  using pdrop_test::expect_invalid;
  const std::vector<ImageSpan> spans{{2, 3}, {6, 2}};  // 5 image tokens of 9
  const std::vector<float> sums{0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
  pdrop::Workspace ws;
  std::vector<std::int64_t> keep(9, -3);
  const auto keep_before = pdrop_test::bytes_of(keep);
  const auto drop = [&](std::int64_t n_keep, std::int64_t keep_size) {
    pdrop::finalize_and_drop_global(sums, 1, 8, kQuery0, 9, spans, n_keep, ws,
                                    span<std::int64_t>(keep.data(), keep_size));
  };
  expect_invalid([&] { drop(6, 9); },
                 "pdrop::finalize_and_drop_global: n_keep (6) must be in [0, image tokens over all spans = 5]");
  expect_invalid([&] { drop(-1, 9); }, "n_keep (-1) must be in [0");
  expect_invalid([&] { drop(3, 6); }, "keep.size (6) must be >= the new length 7");
  std::vector<ImageSpan> new_spans(2, ImageSpan{-1, -1});
  std::vector<float> ranked(5, -2.0f);
  const auto ranked_before = pdrop_test::bytes_of(ranked);
  expect_invalid([&] {
    pdrop::finalize_and_drop_global(sums, 2, 8, kQuery0, 9, spans, 3, ws, keep, new_spans, ranked);
  }, "sums.size (5) must equal rows (2) x image tokens (5) = 10");
  expect_invalid([&] {
    pdrop::finalize_and_drop_global(sums, 1, 8, kQuery0, 9, spans, 3, ws, keep, new_spans,
                                    span<float>(ranked.data(), 4));
  }, "maybe_scores.size (4) must be 0 or the image tokens (5)");
  expect_invalid([&] {
    pdrop::finalize_and_drop_global(sums, 1, 8, kQuery0, 7, spans, 3, ws, keep, new_spans, ranked);
  }, "spans[1] (start 6, length 2) must lie inside [0, tokens = 7)");
  EXPECT_EQ(pdrop_test::bytes_of(keep), keep_before);
  EXPECT_EQ(pdrop_test::bytes_of(ranked), ranked_before);
  EXPECT_EQ(new_spans[0].start, -1);
  EXPECT_EQ(new_spans[1].length, -1);
  // The valid call keeps the best 3 of the union (0.3, 0.4, 0.5: tokens 4, 6, 7).
  ASSERT_EQ(pdrop::finalize_and_drop_global(sums, 1, 8, kQuery0, 9, spans, 3, ws, keep), 7);
  EXPECT_EQ(std::vector<std::int64_t>(keep.begin(), keep.begin() + 7),
            pdrop_test::naive_keep_list(9, spans, {4, 6, 7}));
}

}  // namespace
