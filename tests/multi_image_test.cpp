// Several images (or video frames) in one sequence: per-span budgets
// (int(n_i * ratio) each) and one global budget (int(sum n_i * ratio) over
// the union of the spans), both against a naive reference written here:
// double-precision softmax scores, a plain sort (score descending, position
// ascending), a pick, and the keep list of every text token plus the picks.
#include <gtest/gtest.h>

#include <map>

#include "test_util.hpp"

namespace {

using pdrop::ImageSpan;
using I64 = std::int64_t;

struct Problem {
  I64 hq, hkv, nq, d, tokens;
  std::vector<ImageSpan> spans;
  std::vector<float> q, k;
  std::vector<I64> pos;
  I64 n_image() const {
    I64 n = 0;
    for (auto& s : spans) n += s.length;
    return n;
  }
  pdrop::HeadView<const float> qv() const { return pdrop::hnd_view<const float>(q.data(), hq, nq, d); }
  pdrop::HeadView<const float> kv() const { return pdrop::hnd_view<const float>(k.data(), hkv, tokens, d); }
  std::vector<double> naive() const { return pdrop_test::naive_scores_of(qv(), kv(), pos, spans); }
};

Problem make_problem(std::mt19937& rng, I64 hq, I64 hkv, I64 nq, I64 d, I64 tokens,
                     std::vector<ImageSpan> spans, float amp = 3.0f) {
  Problem p{hq, hkv, nq, d, tokens, std::move(spans),
            pdrop_test::random_vector<float>(static_cast<std::size_t>(hq * nq * d), rng, -amp, amp),
            pdrop_test::random_vector<float>(static_cast<std::size_t>(hkv * tokens * d), rng, -amp, amp),
            {}};
  p.pos.push_back(tokens - 1);
  for (I64 i = 1; i < nq; ++i) p.pos.push_back(std::uniform_int_distribution<I64>(tokens / 2, tokens - 1)(rng));
  return p;
}

// (position, naive score) of every image token.
std::vector<std::pair<I64, double>> image_tokens(const Problem& p, const std::vector<double>& s) {
  std::vector<std::pair<I64, double>> out;
  I64 off = 0;
  for (auto& sp : p.spans)
    for (I64 i = 0; i < sp.length; ++i) out.push_back({sp.start + i, s[off++]});
  return out;
}

// The n best of `cand` by (score descending, position ascending), ascending.
// The query tokens among the candidates stay whatever their score and take
// their slots (rank_drop.hpp): the pick is them plus the best max(n - f, 0)
// of the others.
std::vector<I64> naive_pick(std::vector<std::pair<I64, double>> cand, I64 n,
                            const std::vector<I64>& queries = {}) {
  std::vector<I64> out;
  std::vector<std::pair<I64, double>> others;
  for (const auto& c : cand) {
    if (std::find(queries.begin(), queries.end(), c.first) != queries.end())
      out.push_back(c.first);
    else
      others.push_back(c);
  }
  std::sort(others.begin(), others.end(), [](auto& a, auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  const I64 pick = std::max<I64>(n - static_cast<I64>(out.size()), 0);
  for (I64 i = 0; i < pick; ++i) out.push_back(others[i].first);
  std::sort(out.begin(), out.end());
  return out;
}

// The kept image tokens read back from a keep list.
std::vector<I64> kept_image(const Problem& p, const std::vector<I64>& keep) {
  std::vector<I64> out;
  for (I64 t : keep)
    for (auto& s : p.spans)
      if (t >= s.start && t < s.end()) out.push_back(t);
  return out;
}

// got == want, except that a swap of tokens whose naive scores differ by
// less than float rounding (a near tie) is accepted.
void expect_same_pick(const std::vector<I64>& got, const std::vector<I64>& want,
                      const std::map<I64, double>& score) {
  ASSERT_EQ(got.size(), want.size());
  if (got == want) return;
  double lo_in = 1e300, hi_out = -1e300;
  for (I64 t : got)
    if (!std::binary_search(want.begin(), want.end(), t)) hi_out = std::max(hi_out, score.at(t));
  for (I64 t : want)
    if (!std::binary_search(got.begin(), got.end(), t)) lo_in = std::min(lo_in, score.at(t));
  EXPECT_LE(std::abs(lo_in - hi_out), 1e-6 * std::abs(lo_in) + 1e-9)
      << "picks differ beyond a near tie";
}

TEST(MultiImage, BudgetsTruncateLikePythonInt) {
  const std::vector<ImageSpan> spans{{3, 576}, {600, 7}, {610, 0}, {611, 1}, {700, 10}};
  std::vector<I64> counts(spans.size(), -1);
  pdrop::per_span_budgets(spans, 0.5, counts);
  EXPECT_EQ(counts, (std::vector<I64>{288, 3, 0, 0, 5}));
  pdrop::per_span_budgets(spans, 0.3, counts);  // 172.79.., 2.1, 0, 0.3, 3.0000000000000004
  EXPECT_EQ(counts, (std::vector<I64>{172, 2, 0, 0, 3}));
  pdrop::per_span_budgets(spans, 1.0, counts);
  EXPECT_EQ(counts, (std::vector<I64>{576, 7, 0, 1, 10}));
  // Global: int(594 * r), not the sum of the per-span truncations.
  EXPECT_EQ(pdrop::global_budget(spans, 0.5), 297);
  EXPECT_EQ(pdrop::global_budget(spans, 0.3), 178);  // vs 172 + 2 + 0 + 0 + 3 = 177
  EXPECT_EQ(pdrop::global_budget(spans, 0.0), 0);
  EXPECT_EQ(pdrop::global_budget({}, 0.7), 0);
  // A schedule's stage counts are the same rule.
  const auto sched = pdrop::Schedule::pyramid(8, 4, 0.5);
  for (I64 j = 0; j < sched.num_stages(); ++j)
    EXPECT_EQ(pdrop::keep_budget(597, sched.ratios()[j]), sched.image_tokens(597, j));

  const auto before = pdrop_test::bytes_of(counts);
  pdrop_test::expect_invalid([&] { pdrop::per_span_budgets(spans, 1.5, counts); }, "ratio (1.5)");
  pdrop_test::expect_invalid([&] { pdrop::per_span_budgets(spans, std::nan(""), counts); }, "ratio (nan)");
  pdrop_test::expect_invalid([&] { pdrop::per_span_budgets(spans, 0.5, {counts.data(), 4}); },
                             "keep_counts.size (4)");
  const std::vector<ImageSpan> bad{{0, 3}, {5, -2}};
  pdrop_test::expect_invalid([&] { pdrop::per_span_budgets(bad, 0.5, {counts.data(), 2}); },
                             "spans[1].length (-2)");
  EXPECT_EQ(pdrop_test::bytes_of(counts), before);
  pdrop_test::expect_invalid([&] { pdrop::global_budget(spans, -0.1); }, "ratio (-0.1)");
  pdrop_test::expect_invalid([&] { pdrop::keep_budget(-1, 0.5); }, "n (-1)");
}

// Sequences with several images and text between them.
std::vector<Problem> problems() {
  std::mt19937 rng(606);
  std::vector<Problem> out;
  out.push_back(make_problem(rng, 4, 2, 1, 16, 60, {{2, 20}, {25, 20}, {50, 7}}));
  out.push_back(make_problem(rng, 8, 1, 2, 8, 200, {{0, 64}, {64, 64}, {130, 64}}));  // adjacent spans
  out.push_back(make_problem(rng, 3, 3, 1, 7, 41, {{1, 1}, {3, 0}, {5, 3}, {10, 30}}));
  out.push_back(make_problem(rng, 6, 2, 3, 12, 150, {{10, 33}, {50, 33}, {90, 33}, {125, 20}}));
  out.push_back(make_problem(rng, 2, 1, 1, 5, 9, {{0, 8}}));  // one image, last token text
  return out;
}

TEST(MultiImage, PerSpanBudgetsEqualNaivePerImagePick) {
  pdrop::Workspace ws;
  int c = 0;
  for (const Problem& p : problems()) {
    for (double ratio : {0.0, 0.25, 0.5, 0.7, 1.0}) {
      SCOPED_TRACE(::testing::Message() << "problem " << c << " ratio " << ratio);
      std::vector<I64> counts(p.spans.size());
      pdrop::per_span_budgets(p.spans, ratio, counts);
      std::vector<I64> keep(static_cast<std::size_t>(p.tokens), -7);
      std::vector<ImageSpan> ns(p.spans.size());
      const I64 t_new = pdrop::rank_and_drop<float, float>(p.qv(), p.pos, p.kv(), p.spans, counts,
                                                           ws, keep, ns);
      keep.resize(static_cast<std::size_t>(t_new));

      const auto ref = p.naive();
      const auto all = image_tokens(p, ref);
      std::map<I64, double> by_pos(all.begin(), all.end());
      std::vector<I64> want_kept;
      for (std::size_t s = 0; s < p.spans.size(); ++s) {
        std::vector<std::pair<I64, double>> cand;
        for (auto& [t, v] : all)
          if (t >= p.spans[s].start && t < p.spans[s].end()) cand.push_back({t, v});
        const I64 n = static_cast<I64>(static_cast<double>(p.spans[s].length) * ratio);
        const auto pick = naive_pick(cand, n, p.pos);
        for (I64 t : pick) want_kept.push_back(t);
        EXPECT_EQ(ns[s].length, static_cast<I64>(pick.size())) << "span " << s;
      }
      std::sort(want_kept.begin(), want_kept.end());
      const auto got_kept = kept_image(p, keep);
      expect_same_pick(got_kept, want_kept, by_pos);
      EXPECT_EQ(keep, pdrop_test::naive_keep_list(p.tokens, p.spans, got_kept));
    }
    ++c;
  }
}

TEST(MultiImage, GlobalBudgetEqualsNaivePickOverTheUnion) {
  pdrop::Workspace ws;
  int c = 0;
  for (const Problem& p : problems()) {
    for (double ratio : {0.0, 0.1, 0.5, 0.9, 1.0}) {
      SCOPED_TRACE(::testing::Message() << "problem " << c << " ratio " << ratio);
      const I64 n_keep = pdrop::global_budget(p.spans, ratio);
      EXPECT_EQ(n_keep, static_cast<I64>(static_cast<double>(p.n_image()) * ratio));
      std::vector<I64> keep(static_cast<std::size_t>(p.tokens) + 2, -7);
      std::vector<ImageSpan> ns(p.spans.size());
      std::vector<float> scores(static_cast<std::size_t>(p.n_image()));
      const I64 t_new = pdrop::rank_and_drop_global<float, float>(p.qv(), p.pos, p.kv(), p.spans,
                                                                  n_keep, ws, keep, ns, scores);
      const auto want_kept = naive_pick(image_tokens(p, p.naive()), n_keep, p.pos);
      const I64 kept_n = static_cast<I64>(want_kept.size());  // n_keep, or the queries
      ASSERT_EQ(t_new, p.tokens - p.n_image() + kept_n);
      EXPECT_EQ(keep[t_new], -7);
      keep.resize(static_cast<std::size_t>(t_new));

      const auto ref = p.naive();
      for (I64 i = 0; i < p.n_image(); ++i) EXPECT_NEAR(scores[i], ref[i], 2e-5 * ref[i] + 1e-7);
      const auto all = image_tokens(p, ref);
      const std::map<I64, double> by_pos(all.begin(), all.end());
      const auto got_kept = kept_image(p, keep);
      expect_same_pick(got_kept, want_kept, by_pos);
      // Every text token kept, in order; the new spans locate each image's
      // surviving tokens and add up to the budget.
      EXPECT_EQ(keep, pdrop_test::naive_keep_list(p.tokens, p.spans, got_kept));
      I64 sum = 0;
      for (std::size_t s = 0; s < p.spans.size(); ++s) {
        for (I64 i = 0; i < ns[s].length; ++i) {
          const I64 orig = keep[ns[s].start + i];
          EXPECT_TRUE(orig >= p.spans[s].start && orig < p.spans[s].end()) << orig;
        }
        sum += ns[s].length;
      }
      EXPECT_EQ(sum, kept_n);
      // Exactly: the operator's own scores, picked naively over the union.
      std::vector<std::pair<I64, double>> own;
      I64 off = 0;
      for (auto& sp : p.spans)
        for (I64 i = 0; i < sp.length; ++i) own.push_back({sp.start + i, double(scores[off++])});
      EXPECT_EQ(got_kept, naive_pick(own, n_keep, p.pos));
    }
    ++c;
  }
}

TEST(MultiImage, GlobalTiesGoToTheEarlierImage) {
  // q = 0: every logit 0, every image token scores the same. The global
  // pick is then the first n_keep image tokens in sequence order, however
  // the spans split them.
  const I64 hq = 2, hkv = 1, d = 4, tokens = 30;
  std::vector<float> q(hq * d, 0.0f), k(hkv * tokens * d, 1.0f);
  const std::vector<ImageSpan> spans{{1, 4}, {6, 5}, {12, 10}};
  const std::vector<I64> pos{tokens - 1};
  pdrop::Workspace ws;
  for (I64 n_keep : {0, 3, 4, 5, 9, 12, 19}) {
    std::vector<I64> keep(tokens);
    const I64 t_new = pdrop::rank_and_drop_global<float, float>(
        pdrop::hnd_view<const float>(q.data(), hq, 1, d), pos,
        pdrop::hnd_view<const float>(k.data(), hkv, tokens, d), spans, n_keep, ws, keep);
    std::vector<I64> want_kept;
    for (auto& s : spans)
      for (I64 t = s.start; t < s.end() && static_cast<I64>(want_kept.size()) < n_keep; ++t)
        want_kept.push_back(t);
    keep.resize(static_cast<std::size_t>(t_new));
    EXPECT_EQ(keep, pdrop_test::naive_keep_list(tokens, spans, want_kept)) << n_keep;
  }
}

TEST(MultiImage, GlobalWithOneSpanEqualsPerSpan) {
  std::mt19937 rng(12);
  const Problem p = make_problem(rng, 4, 4, 2, 9, 70, {{6, 55}});
  pdrop::Workspace ws;
  for (I64 n : {0, 1, 27, 54, 55}) {
    std::vector<I64> a(70, -1), b(70, -1);
    std::vector<float> sa(55), sb(55);
    const std::vector<I64> counts{n};
    const I64 ta = pdrop::rank_and_drop<float, float>(p.qv(), p.pos, p.kv(), p.spans, counts, ws, a, {}, sa);
    const I64 tb = pdrop::rank_and_drop_global<float, float>(p.qv(), p.pos, p.kv(), p.spans, n, ws, b, {}, sb);
    EXPECT_EQ(ta, tb);
    EXPECT_EQ(a, b);
    EXPECT_EQ(pdrop_test::bytes_of(sa), pdrop_test::bytes_of(sb));
  }
}

TEST(MultiImage, GlobalParallelOverloadIsBitIdentical) {
  std::mt19937 rng(77);
  const Problem p = make_problem(rng, 8, 4, 2, 16, 120, {{3, 40}, {50, 40}, {95, 20}});
  pdrop::Workspace ws, ws2;
  std::vector<I64> a(120, -1), b(120, -1);
  std::vector<ImageSpan> na(3), nb(3);
  std::vector<float> sa(100), sb(100);
  const I64 ta = pdrop::rank_and_drop_global<float, float>(p.qv(), p.pos, p.kv(), p.spans, 37, ws, a, na, sa);
  const I64 tb = pdrop::rank_and_drop_global<float, float>(p.qv(), p.pos, p.kv(), p.spans, 37, ws2, b, nb,
                                                           sb, {}, pdrop::SerialFor{});
  EXPECT_EQ(ta, tb);
  EXPECT_EQ(a, b);
  EXPECT_EQ(pdrop_test::bytes_of(na), pdrop_test::bytes_of(nb));
  EXPECT_EQ(pdrop_test::bytes_of(sa), pdrop_test::bytes_of(sb));
}

TEST(MultiImage, ReservedWorkspaceDoesNotGrowForEitherBudget) {
  std::mt19937 rng(31);
  const Problem p = make_problem(rng, 8, 2, 1, 32, 300, {{5, 100}, {110, 100}, {220, 70}});
  pdrop::Workspace ws;
  ws.reserve(p.hq, p.hkv, p.nq, p.tokens, p.d, p.n_image());
  const std::size_t bytes = ws.bytes();
  std::vector<I64> keep(300), counts(3);
  for (double r : {1.0, 0.5, 0.1}) {
    pdrop::per_span_budgets(p.spans, r, counts);
    pdrop::rank_and_drop<float, float>(p.qv(), p.pos, p.kv(), p.spans, counts, ws, keep);
    pdrop::rank_and_drop_global<float, float>(p.qv(), p.pos, p.kv(), p.spans,
                                              pdrop::global_budget(p.spans, r), ws, keep);
    EXPECT_EQ(ws.bytes(), bytes) << r;
  }
}

TEST(MultiImage, GlobalRejectsBadInputBeforeWriting) {
  std::mt19937 rng(5);
  Problem p = make_problem(rng, 2, 1, 1, 4, 30, {{2, 10}, {15, 10}});
  pdrop::Workspace ws;
  std::vector<I64> keep(30, -3);
  std::vector<ImageSpan> ns{{-1, -1}, {-2, -2}};
  std::vector<float> scores(20, 9.0f);
  const auto snap = [&] {
    return std::make_tuple(pdrop_test::bytes_of(keep), pdrop_test::bytes_of(ns), pdrop_test::bytes_of(scores));
  };
  const auto before = snap();
  auto call = [&](I64 n_keep, I64 keep_size, I64 scores_size) {
    pdrop::rank_and_drop_global<float, float>(p.qv(), p.pos, p.kv(), p.spans, n_keep, ws,
                                              {keep.data(), keep_size}, ns,
                                              {scores.data(), scores_size});
  };
  pdrop_test::expect_invalid([&] { call(21, 30, 20); }, "n_keep (21) must be in [0, image tokens over all spans = 20]");
  pdrop_test::expect_invalid([&] { call(-1, 30, 20); }, "n_keep (-1)");
  pdrop_test::expect_invalid([&] { call(5, 14, 20); }, "keep.size (14) must be >= the new length 15");
  pdrop_test::expect_invalid([&] { call(5, 30, 19); }, "maybe_scores.size (19)");
  pdrop_test::expect_invalid([&] {
    pdrop::rank_and_drop_global<float, float>(p.qv(), p.pos, p.kv(), p.spans, 5, ws, keep, {ns.data(), 1});
  }, "maybe_new_spans.size (1)");
  p.k[(0 * 30 + 20) * 4 + 1] = INFINITY;
  pdrop_test::expect_invalid([&] { call(5, 30, 20); }, "non-finite");
  EXPECT_EQ(snap(), before);
}

}  // namespace
