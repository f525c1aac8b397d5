// A query token inside an image span (a prompt that ends with an image, a
// training-mode query) survives every drop, in every path: rank_and_drop
// (serial and parallel), the global budget, batches, tensor-parallel
// finalize and every strategy of drop_by_strategy. It takes one of its
// span's slots; a smaller count keeps it anyway (kept = max(count, query
// tokens in the span)). Checked against a naive selection written here.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "pdrop/pdrop.hpp"
#include "test_util.hpp"

namespace {

using namespace pdrop_test::names;

// The naive rule: per group of image tokens (one span, or all spans for a
// global budget), the query tokens in it, then the best max(count - f, 0)
// of the others by score (ties to the lower position).
std::vector<I64> naive_kept(const std::vector<ImageSpan>& spans, const std::vector<double>& scores,
                            const std::vector<I64>& counts, bool global,
                            const std::vector<I64>& queries) {
  const std::set<I64> q(queries.begin(), queries.end());
  std::vector<std::vector<std::pair<I64, double>>> groups(global ? 1 : spans.size());
  for (std::size_t i = 0, o = 0; i < spans.size(); ++i)
    for (I64 t = spans[i].start; t < spans[i].end(); ++t, ++o)
      groups[global ? 0 : i].push_back({t, scores[o]});
  std::vector<I64> kept;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    std::vector<std::pair<I64, double>> others;
    I64 f = 0;
    for (const auto& [t, s] : groups[g]) {
      if (q.count(t)) {
        kept.push_back(t);
        ++f;
      } else {
        others.push_back({t, s});
      }
    }
    std::stable_sort(others.begin(), others.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    for (I64 i = 0; i < std::max<I64>(counts[g] - f, 0); ++i) kept.push_back(others[i].first);
  }
  std::sort(kept.begin(), kept.end());
  return kept;
}

struct Problem {
  I64 tokens, hq = 4, hkv = 2, d = 8;
  std::vector<ImageSpan> spans;
  std::vector<I64> queries;
  std::vector<float> q, k;
  HeadView<const float> qv() const { return pdrop::hnd_view<const float>(q.data(), hq, queries.size(), d); }
  HeadView<const float> kv() const { return pdrop::hnd_view<const float>(k.data(), hkv, tokens, d); }
  Problem(I64 t, std::vector<ImageSpan> s, std::vector<I64> qs, std::mt19937& rng)
      : tokens(t), spans(std::move(s)), queries(std::move(qs)) {
    q = pdrop_test::random_vector<float>(hq * queries.size() * d, rng, -2, 2);
    k = pdrop_test::random_vector<float>(hkv * tokens * d, rng, -2, 2);
  }
  std::vector<double> scores() const {
    return pdrop_test::naive_scores_of(qv(), kv(), queries, spans);
  }
};

std::vector<I64> kept_of(const std::vector<I64>& keep, I64 t_new, const std::vector<ImageSpan>& spans) {
  std::vector<I64> out;
  for (I64 i = 0; i < t_new; ++i)
    for (const auto& s : spans)
      if (keep[i] >= s.start && keep[i] < s.end()) out.push_back(keep[i]);
  return out;
}

// The case: T = 24, one image (4, 20) ending at the last prompt
// token, the query row token 23, keep 5: token 23 stays and takes one of
// the 5 slots, the other 4 are the best of tokens 4..22.
TEST(QuerySurvival, LastTokenInsideTheImageIsKept) {
  std::mt19937 rng(5);
  const Problem p(24, {{4, 20}}, {23}, rng);
  pdrop::Workspace ws;
  std::vector<I64> keep(24, -1);
  const std::vector<I64> counts{5};
  const I64 t_new = pdrop::rank_and_drop(p.qv(), p.queries, p.kv(), p.spans, counts, ws, keep);
  ASSERT_EQ(t_new, 9);
  EXPECT_EQ(keep[8], 23);
  const auto want = naive_kept(p.spans, p.scores(), counts, false, p.queries);
  EXPECT_EQ(kept_of(keep, t_new, p.spans), want);
  EXPECT_EQ(want.size(), 5u);
}

// Random layouts with query rows inside and outside spans (repeats too),
// every count from 0 to the span's length, per-span and global budgets,
// serial, parallel and batched: always the naive rule.
TEST(QuerySurvival, RankAndDropPathsFollowTheNaiveRule) {
  std::mt19937 rng(17);
  pdrop::Workspace ws;
  const pdrop_test::ThreadFor two{2};
  for (int trial = 0; trial < 40; ++trial) {
    const I64 a = 1 + static_cast<I64>(rng() % 6), b = 1 + static_cast<I64>(rng() % 9);
    const I64 gap = static_cast<I64>(rng() % 3), tail = static_cast<I64>(rng() % 2);
    const I64 pre = static_cast<I64>(rng() % 3);
    const std::vector<ImageSpan> spans{{pre, a}, {pre + a + gap, b}};
    const I64 T = pre + a + gap + b + tail;
    std::vector<I64> queries{T - 1};
    for (int extra = static_cast<int>(rng() % 3); extra > 0; --extra)
      queries.push_back(static_cast<I64>(rng() % static_cast<unsigned>(T)));
    const Problem p(T, spans, queries, rng);
    const auto scores = p.scores();
    for (I64 c0 = 0; c0 <= a; ++c0) {
      const I64 c1 = static_cast<I64>(rng() % static_cast<unsigned>(b + 1));
      const std::vector<I64> counts{c0, c1};
      const auto want = naive_kept(spans, scores, counts, false, queries);
      std::vector<I64> keep(T, -1), keep_par(T, -1);
      std::vector<ImageSpan> new_spans(2);
      const I64 t_new = pdrop::rank_and_drop(p.qv(), queries, p.kv(), spans, counts, ws, keep,
                                             new_spans);
      ASSERT_EQ(kept_of(keep, t_new, spans), want) << trial << " " << c0 << " " << c1;
      ASSERT_EQ(t_new, T - a - b + static_cast<I64>(want.size()));
      EXPECT_EQ(new_spans[0].length + new_spans[1].length, static_cast<I64>(want.size()));
      const I64 t_par = pdrop::rank_and_drop(p.qv(), queries, p.kv(), spans, counts, ws, keep_par,
                                             {}, {}, {}, two);
      ASSERT_EQ(t_par, t_new);
      EXPECT_EQ(keep_par, keep);

      const I64 n_keep = c0 + c1;
      const auto want_g = naive_kept(spans, scores, {n_keep}, true, queries);
      const I64 t_g = pdrop::rank_and_drop_global(p.qv(), queries, p.kv(), spans, n_keep, ws, keep);
      ASSERT_EQ(kept_of(keep, t_g, spans), want_g) << trial << " global " << n_keep;
    }
  }
}

// Batches: each sequence as rank_and_drop alone, queries kept.
TEST(QuerySurvival, BatchKeepsEverySequencesQuery) {
  std::mt19937 rng(23);
  const Problem a(12, {{2, 10}}, {11}, rng), b(9, {{0, 4}, {5, 4}}, {8, 3}, rng);
  const std::vector<I64> ca{0}, cb{1, 2};
  const std::vector<pdrop::SequenceDrop<float, float>> seqs{
      {a.qv(), a.queries, a.kv(), a.spans, ca, pdrop::Budget::per_span},
      {b.qv(), b.queries, b.kv(), b.spans, cb, pdrop::Budget::per_span}};
  pdrop::Workspace ws;
  std::vector<I64> keep(21), offsets(3);
  pdrop::rank_and_drop_batch<float, float>(seqs, ws, keep, offsets);
  const auto wa = naive_kept(a.spans, a.scores(), ca, false, a.queries);
  const auto wb = naive_kept(b.spans, b.scores(), cb, false, b.queries);
  EXPECT_EQ(wa, (std::vector<I64>{11}));  // count 0: the query token alone
  std::vector<I64> ka(keep.begin() + offsets[0], keep.begin() + offsets[1]);
  std::vector<I64> kb(keep.begin() + offsets[1], keep.begin() + offsets[2]);
  EXPECT_EQ(kept_of(ka, static_cast<I64>(ka.size()), a.spans), wa);
  EXPECT_EQ(kept_of(kb, static_cast<I64>(kb.size()), b.spans), wb);
  EXPECT_NE(std::find(kb.begin(), kb.end(), 3), kb.end());
}

// Tensor parallel: finalize_and_drop(_global) on the summed partial scores
// of one rank holding every head is rank_and_drop(_global) bit for bit,
// query tokens included.
TEST(QuerySurvival, TensorParallelFinalizeKeepsQueries) {
  std::mt19937 rng(29);
  const Problem p(16, {{1, 6}, {8, 8}}, {15, 3}, rng);
  pdrop::Workspace ws;
  std::vector<float> sums(14);
  pdrop::score_partial(p.qv(), p.queries, p.kv(), p.spans, ws, sums);
  const std::vector<I64> counts{1, 3};
  std::vector<I64> keep(16), ref(16);
  const I64 t = pdrop::finalize_and_drop(sums, 1, p.hq, p.queries, 16, p.spans, counts, ws, keep);
  const I64 t_ref = pdrop::rank_and_drop(p.qv(), p.queries, p.kv(), p.spans, counts, ws, ref);
  ASSERT_EQ(t, t_ref);
  EXPECT_EQ(keep, ref);
  EXPECT_EQ(kept_of(keep, t, p.spans), naive_kept(p.spans, p.scores(), counts, false, p.queries));
  const I64 tg = pdrop::finalize_and_drop_global(sums, 1, p.hq, p.queries, 16, p.spans, 1, ws, keep);
  const I64 tg_ref = pdrop::rank_and_drop_global(p.qv(), p.queries, p.kv(), p.spans, 1, ws, ref);
  ASSERT_EQ(tg, tg_ref);
  EXPECT_EQ(keep, ref);
  EXPECT_EQ(tg, 16 - 14 + 2);  // budget 1 < two query tokens: both kept
  pdrop_test::expect_invalid(
      [&] { pdrop::finalize_and_drop(sums, 1, p.hq, {}, 16, p.spans, counts, ws, keep); },
      "pdrop::finalize_and_drop: query_pos.size (0) must be >= 1");
  const std::vector<I64> bad{16};
  pdrop_test::expect_invalid(
      [&] { pdrop::finalize_and_drop(sums, 1, p.hq, bad, 16, p.spans, counts, ws, keep); },
      "query_pos[0] (16) must be in [0, tokens = 16)");
}

// Every strategy of drop_by_strategy keeps in.query_pos. With the query
// token at the end of its span, DART and random pick among the others
// exactly what they pick on the span without it (one count fewer).
TEST(QuerySurvival, EveryStrategyKeepsTheQuery) {
  std::mt19937 rng(31);
  pdrop::Workspace ws;
  for (int trial = 0; trial < 12; ++trial) {
    const I64 n = 3 + static_cast<I64>(rng() % 20), pre = 2, T = pre + n;
    const std::vector<ImageSpan> spans{{pre, n}}, shorter{{pre, n - 1}};
    const std::vector<I64> queries{T - 1};
    const Problem p(T, spans, queries, rng);
    const auto feats = pdrop_test::random_vector<float>(T * 5, rng, -1, 1);
    pdrop::DropInputs<float, float> in;
    in.q = p.qv();
    in.query_pos = queries;
    in.k = p.kv();
    in.features = TokenView<const float>(feats.data(), T, 5);
    in.seed = 1234 + trial;
    in.dart.pivots = 2;
    for (I64 c = 1; c <= n; ++c) {
      const std::vector<I64> counts{c}, fewer{c - 1};
      for (auto s : {pdrop::Strategy::pyramid_drop, pdrop::Strategy::fastv, pdrop::Strategy::dart,
                     pdrop::Strategy::random}) {
        std::vector<I64> keep(T, -1);
        const I64 t_new = pdrop::drop_by_strategy(s, T, in, spans, counts, ws, keep);
        ASSERT_EQ(t_new, pre + c) << pdrop::strategy_name(s);
        ASSERT_EQ(keep[t_new - 1], T - 1) << pdrop::strategy_name(s) << " c " << c;
        std::vector<I64> others(keep.begin() + pre, keep.begin() + t_new - 1), want(c - 1);
        if (s == pdrop::Strategy::dart) {
          pdrop::dart_select(p.kv(), in.features, shorter, fewer, ws, want, in.dart);
          EXPECT_EQ(others, want) << "dart c " << c;
        } else if (s == pdrop::Strategy::random) {
          pdrop::random_select(shorter, fewer, in.seed, want);
          EXPECT_EQ(others, want) << "random c " << c;
        } else {
          EXPECT_EQ(kept_of(keep, t_new, spans),
                    naive_kept(spans, p.scores(), counts, false, queries));
        }
      }
    }
    std::vector<I64> keep(T, -1);
    const std::vector<I64> zero{0};
    const I64 t_vtw = pdrop::drop_by_strategy(pdrop::Strategy::vtw, T, in, spans, zero, ws, keep);
    ASSERT_EQ(t_vtw, pre + 1);
    EXPECT_EQ(keep[pre], T - 1);
  }
  const std::vector<I64> bad{99};
  pdrop::DropInputs<float, float> in;
  in.query_pos = bad;
  std::vector<I64> keep(5);
  const std::vector<ImageSpan> spans{{1, 3}};
  const std::vector<I64> zero{0};
  pdrop_test::expect_invalid(
      [&] { pdrop::drop_by_strategy(pdrop::Strategy::vtw, 5, in, spans, zero, ws, keep); },
      "pdrop::drop_by_strategy: in.query_pos[0] (99) must be in [0, tokens = 5)");
}

// Outputs that overlap are refused before any of them is written (the
// scores used to be copied out before the keep list's checks ran).
TEST(QuerySurvival, OverlappingOutputsAreRefusedBeforeWriting) {
  std::mt19937 rng(37);
  const Problem p(12, {{2, 8}}, {11}, rng);
  pdrop::Workspace ws;
  std::vector<I64> buf(40, -5);
  const auto before = pdrop_test::bytes_of(buf);
  const std::vector<I64> counts{3};
  // keep = buf[0..7), maybe_scores = the floats of buf[2..6).
  pdrop_test::expect_invalid(
      [&] {
        pdrop::rank_and_drop(p.qv(), p.queries, p.kv(), p.spans, counts, ws,
                             pdrop::span<I64>(buf.data(), 12), {},
                             pdrop::span<float>(reinterpret_cast<float*>(buf.data() + 2), 8));
      },
      "pdrop::rank_and_drop: maybe_scores overlaps keep, spans or maybe_new_spans");
  // keep = buf[0..7), maybe_new_spans = one span over buf[4..6).
  pdrop_test::expect_invalid(
      [&] {
        pdrop::rank_and_drop(p.qv(), p.queries, p.kv(), p.spans, counts, ws,
                             pdrop::span<I64>(buf.data(), 12),
                             pdrop::span<ImageSpan>(reinterpret_cast<ImageSpan*>(buf.data() + 4), 1));
      },
      "keep overlaps spans or maybe_new_spans");
  EXPECT_EQ(pdrop_test::bytes_of(buf), before);
}

}  // namespace
