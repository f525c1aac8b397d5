// V2Drop (pdrop/v2drop.hpp) against a plain reference: the L2 norm of
// after - before per image token, summed in one loop in double, then the
// largest per span (or over all spans), ties to the lower position.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "pdrop/strategies.hpp"
#include "pdrop/v2drop.hpp"
#include "test_util.hpp"

namespace {

using namespace pdrop_test::names;
using pdrop::Budget;
using pdrop_test::expect_invalid;

// A T x D problem in strided rows of element type T1 (before) and T2
// (after): row_stride = D + pad, padding filled with values that would
// change every score if they were read.
template <class T1, class T2>
struct Problem {
  I64 T, D, pad_b, pad_a;
  std::vector<T1> before;
  std::vector<T2> after;
  Problem(I64 tokens, I64 dim, I64 pb, I64 pa, unsigned seed)
      : T(tokens), D(dim), pad_b(pb), pad_a(pa) {
    std::mt19937 rng(seed);
    before = pdrop_test::random_vector<T1>(static_cast<std::size_t>(T * (D + pb)), rng, -2, 2);
    after = pdrop_test::random_vector<T2>(static_cast<std::size_t>(T * (D + pa)), rng, -2, 2);
    for (I64 t = 0; t < T; ++t) {
      for (I64 i = D; i < D + pb; ++i) before[static_cast<std::size_t>(t * (D + pb) + i)] = T1(1000.0f);
      for (I64 i = D; i < D + pa; ++i) after[static_cast<std::size_t>(t * (D + pa) + i)] = T2(-1000.0f);
    }
  }
  TokenView<const T1> bv() const { return {before.data(), T, D, D + pad_b}; }
  TokenView<const T2> av() const { return {after.data(), T, D, D + pad_a}; }
  double b(I64 t, I64 i) const { return pdrop_test::as_double(before[static_cast<std::size_t>(t * (D + pad_b) + i)]); }
  double a(I64 t, I64 i) const { return pdrop_test::as_double(after[static_cast<std::size_t>(t * (D + pad_a) + i)]); }

  // The plain score of token t: sqrt(sum_i (a - b)^2), one loop.
  double naive(I64 t) const {
    double s = 0;
    for (I64 i = 0; i < D; ++i) s += (a(t, i) - b(t, i)) * (a(t, i) - b(t, i));
    return std::sqrt(s);
  }
  std::vector<float> naive_scores(const std::vector<ImageSpan>& spans) const {
    std::vector<float> out;
    for (const auto& s : spans)
      for (I64 t = s.start; t < s.end(); ++t) out.push_back(static_cast<float>(naive(t)));
    return out;
  }
};

// Plain per-span selection: forced query tokens plus the best others.
std::vector<I64> naive_kept_per_span(const std::vector<float>& scores,
                                     const std::vector<ImageSpan>& spans,
                                     const std::vector<I64>& counts,
                                     const std::vector<I64>& query_pos) {
  std::vector<I64> kept;
  std::size_t off = 0;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const std::vector<float> part(scores.begin() + static_cast<std::ptrdiff_t>(off),
                                  scores.begin() + static_cast<std::ptrdiff_t>(off) + spans[i].length);
    for (I64 j : pdrop_test::naive_top_k(part, counts[i], pdrop_test::forced_in(query_pos, spans[i])))
      kept.push_back(spans[i].start + j);
    off += static_cast<std::size_t>(spans[i].length);
  }
  return kept;
}

// Positions of the image tokens, spans end to end.
std::vector<I64> image_positions(const std::vector<ImageSpan>& spans) {
  std::vector<I64> p;
  for (const auto& s : spans)
    for (I64 t = s.start; t < s.end(); ++t) p.push_back(t);
  return p;
}

std::vector<I64> kept_of(const std::vector<I64>& keep, const std::vector<ImageSpan>& new_spans) {
  std::vector<I64> k;
  for (const auto& s : new_spans) k.insert(k.end(), keep.begin() + s.start, keep.begin() + s.end());
  return k;
}

template <class T>
class V2DropTyped : public ::testing::Test {};
TYPED_TEST_SUITE(V2DropTyped, pdrop_test::FloatTypes, pdrop_test::FloatTypeNames);

TYPED_TEST(V2DropTyped, ScoresAreTheL2NormOfTheChange) {
  // before in the tested type, after in float and in the tested type, odd
  // width, padded rows on both sides.
  const std::vector<ImageSpan> spans = {{1, 7}, {11, 13}, {30, 1}};
  const Problem<TypeParam, float> p(37, 43, 5, 3, 11);
  const Problem<TypeParam, TypeParam> q(37, 43, 0, 9, 12);
  pdrop::Workspace ws;
  std::vector<float> got(21), got2(21);
  pdrop::v2drop_scores<TypeParam, float>(p.bv(), p.av(), spans, ws, got);
  pdrop::v2drop_scores<TypeParam, TypeParam>(q.bv(), q.av(), spans, ws, got2);
  const auto want = p.naive_scores(spans), want2 = q.naive_scores(spans);
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-6 * want[i]) << i;
    EXPECT_NEAR(got2[i], want2[i], 1e-6 * want2[i]) << i;
  }
}

TYPED_TEST(V2DropTyped, PerSpanDropKeepsTheLargestChanges) {
  const std::vector<ImageSpan> spans = {{2, 19}, {25, 1}, {26, 40}, {70, 9}};
  const Problem<TypeParam, TypeParam> p(83, 29, 3, 0, 21);
  const std::vector<I64> counts = {7, 1, 0, 9};  // some, all, none, all
  const std::vector<I64> query_pos = {82};
  pdrop::Workspace ws;
  std::vector<I64> keep(83, -1);
  std::vector<ImageSpan> new_spans(spans.size());
  std::vector<float> scores(69);
  const I64 t_new = pdrop::v2drop_drop<TypeParam, TypeParam>(
      p.bv(), p.av(), query_pos, spans, Budget::per_span, counts, ws, keep, new_spans, scores);
  const auto want_kept = naive_kept_per_span(p.naive_scores(spans), spans, counts, query_pos);
  keep.resize(static_cast<std::size_t>(t_new));
  EXPECT_EQ(kept_of(keep, new_spans), want_kept);
  EXPECT_EQ(keep, pdrop_test::naive_keep_list(83, spans, want_kept));
  EXPECT_EQ(t_new, 83 - 69 + 17);
  for (std::size_t i = 0; i < scores.size(); ++i)
    EXPECT_NEAR(scores[i], p.naive_scores(spans)[i], 1e-6 * p.naive_scores(spans)[i]);
}

TYPED_TEST(V2DropTyped, GlobalDropRanksAllSpansTogether) {
  const std::vector<ImageSpan> spans = {{0, 17}, {20, 23}, {50, 6}};
  const Problem<TypeParam, float> p(61, 17, 1, 2, 31);
  pdrop::Workspace ws;
  for (const I64 n_keep : {I64{0}, I64{1}, I64{13}, I64{45}, I64{46}}) {
    SCOPED_TRACE(n_keep);
    std::vector<I64> keep(61, -1);
    std::vector<ImageSpan> new_spans(spans.size());
    const I64 t_new = pdrop::v2drop_drop<TypeParam, float>(
        p.bv(), p.av(), {}, spans, Budget::global, {&n_keep, 1}, ws, keep, new_spans);
    const auto pos = image_positions(spans);
    std::vector<I64> want;
    for (I64 i : pdrop_test::naive_top_k(p.naive_scores(spans), n_keep))
      want.push_back(pos[static_cast<std::size_t>(i)]);
    keep.resize(static_cast<std::size_t>(t_new));
    EXPECT_EQ(kept_of(keep, new_spans), want);
    EXPECT_EQ(keep, pdrop_test::naive_keep_list(61, spans, want));
  }
}

TEST(V2Drop, UnchangedTokensScoreZeroAndTieToTheLowerPosition) {
  // Tokens 3..9 unchanged (score exactly 0); tokens 10, 11 changed by the
  // same amount in different features (equal scores).
  Problem<float, float> p(14, 8, 0, 0, 5);
  for (I64 t = 0; t < 14; ++t)
    for (I64 i = 0; i < 8; ++i) p.after[static_cast<std::size_t>(t * 8 + i)] = p.before[static_cast<std::size_t>(t * 8 + i)];
  p.after[10 * 8 + 2] += 0.5f;
  p.after[11 * 8 + 6] -= 0.5f;
  p.before[10 * 8 + 2] = 0.25f;
  p.after[10 * 8 + 2] = 0.75f;
  p.before[11 * 8 + 6] = 0.0f;
  p.after[11 * 8 + 6] = -0.5f;
  const std::vector<ImageSpan> spans = {{3, 9}};
  pdrop::Workspace ws;
  std::vector<float> s(9);
  pdrop::v2drop_scores<float, float>(p.bv(), p.av(), spans, ws, s);
  EXPECT_EQ(s, (std::vector<float>{0, 0, 0, 0, 0, 0, 0, 0.5f, 0.5f}));
  for (const auto& [count, want] : std::vector<std::pair<I64, std::vector<I64>>>{
           {1, {10}}, {2, {10, 11}}, {4, {3, 4, 10, 11}}}) {
    std::vector<I64> keep(14);
    std::vector<ImageSpan> ns(1);
    const I64 t_new = pdrop::v2drop_drop<float, float>(p.bv(), p.av(), {}, spans, Budget::per_span,
                                                       {&count, 1}, ws, keep, ns);
    keep.resize(static_cast<std::size_t>(t_new));
    EXPECT_EQ(kept_of(keep, ns), want) << count;
  }
}

TEST(V2Drop, SwappingBeforeAndAfterGivesTheSameBits) {
  const Problem<float, float> p(40, 33, 2, 2, 8);
  const std::vector<ImageSpan> spans = {{4, 30}};
  pdrop::Workspace ws;
  std::vector<float> ab(30), ba(30);
  pdrop::v2drop_scores<float, float>(p.bv(), p.av(), spans, ws, ab);
  pdrop::v2drop_scores<float, float>(p.av(), p.bv(), spans, ws, ba);
  EXPECT_TRUE(pdrop_test::same_bits(ab, ba));
}

TEST(V2Drop, AQueryTokenInsideASpanIsKeptAndTakesASlot) {
  Problem<float, float> p(20, 6, 0, 0, 9);
  for (I64 i = 0; i < 6; ++i) p.after[static_cast<std::size_t>(19 * 6 + i)] = p.before[static_cast<std::size_t>(19 * 6 + i)];
  const std::vector<ImageSpan> spans = {{10, 10}};  // the prompt ends with the image
  const std::vector<I64> qpos = {19};
  pdrop::Workspace ws;
  for (const I64 count : {I64{0}, I64{1}, I64{3}}) {
    std::vector<I64> keep(20);
    std::vector<ImageSpan> ns(1);
    const I64 t_new = pdrop::v2drop_drop<float, float>(p.bv(), p.av(), qpos, spans,
                                                       Budget::per_span, {&count, 1}, ws, keep, ns);
    keep.resize(static_cast<std::size_t>(t_new));
    const auto want = naive_kept_per_span(p.naive_scores(spans), spans, {count}, qpos);
    EXPECT_EQ(kept_of(keep, ns), want);
    EXPECT_EQ(static_cast<I64>(want.size()), std::max<I64>(count, 1));
    EXPECT_EQ(keep.back(), 19);
  }
}

TEST(V2Drop, DropByStrategyRunsV2DropPerSpan) {
  const Problem<float, float> p(50, 12, 0, 4, 14);
  const std::vector<ImageSpan> spans = {{5, 20}, {30, 15}};
  const std::vector<I64> counts = {6, 4}, qpos = {49};
  pdrop::DropInputs<float, float, float> in;
  in.before = p.bv();
  in.after = p.av();
  in.query_pos = qpos;
  pdrop::Workspace ws;
  std::vector<I64> keep(50);
  std::vector<ImageSpan> ns(2);
  const I64 t_new = pdrop::drop_by_strategy(pdrop::Strategy::v2drop, 50, in, spans, counts, ws,
                                            keep, ns);
  keep.resize(static_cast<std::size_t>(t_new));
  EXPECT_EQ(kept_of(keep, ns), naive_kept_per_span(p.naive_scores(spans), spans, counts, qpos));
  expect_invalid([&] {
    pdrop::drop_by_strategy(pdrop::Strategy::v2drop, 49, in, spans, counts, ws, keep, ns);
  }, "pdrop::drop_by_strategy: in.before.tokens (50) must equal tokens (49) for Strategy::v2drop");
  // The operator's own checks are named after drop_by_strategy too, and
  // nothing is written.
  in.after.features = 11;
  std::vector<I64> keep2(50, -2);
  expect_invalid([&] {
    pdrop::drop_by_strategy(pdrop::Strategy::v2drop, 50, in, spans, counts, ws, keep2, ns);
  }, "pdrop::drop_by_strategy: after.features (11) must equal before.features (12)");
  EXPECT_EQ(keep2, std::vector<I64>(50, -2));
}

TEST(V2Drop, BadInputIsRejectedWithTheOutputsUntouched) {
  Problem<float, float> p(30, 8, 0, 0, 3);
  const std::vector<ImageSpan> spans = {{2, 10}, {15, 10}};
  const std::vector<I64> counts = {3, 4};
  pdrop::Workspace ws;
  std::vector<I64> keep(30, -7);
  std::vector<ImageSpan> ns(2, ImageSpan{-1, -1});
  std::vector<float> scores(20, -3.0f);
  const auto keep0 = keep;
  const auto scores0 = scores;
  const auto run = [&](TokenView<const float> b, TokenView<const float> a,
                       std::vector<ImageSpan> sp, Budget budget, std::vector<I64> c,
                       std::vector<I64> q, I64 keep_size) {
    pdrop::v2drop_drop<float, float>(b, a, q, sp, budget, c, ws, {keep.data(), keep_size}, ns,
                                     scores);
  };
  const auto b = p.bv(), a = p.av();
  const char* fn = "pdrop::v2drop_drop: ";
  expect_invalid([&] { run(b, {a.data, 29, 8}, spans, Budget::per_span, counts, {}, 30); },
                 std::string(fn) + "after.tokens (29) must equal before.tokens (30)");
  expect_invalid([&] { run(b, {a.data, 30, 7}, spans, Budget::per_span, counts, {}, 30); },
                 std::string(fn) + "after.features (7) must equal before.features (8)");
  expect_invalid([&] { run({b.data, 30, 0}, {a.data, 30, 0}, spans, Budget::per_span, counts, {}, 30); },
                 std::string(fn) + "before.features (0) must be >= 1");
  expect_invalid([&] { run({b.data, 30, 8, 4}, a, spans, Budget::per_span, counts, {}, 30); },
                 std::string(fn) + "before.row_stride (4) must be >= features (8)");
  expect_invalid([&] { run(b, a, {{2, 10}, {25, 10}}, Budget::per_span, counts, {}, 30); },
                 "pdrop::v2drop_drop");
  expect_invalid([&] { run(b, a, spans, Budget::per_span, {3, 11}, {}, 30); },
                 "pdrop::v2drop_drop");
  expect_invalid([&] { run(b, a, spans, Budget::global, {3, 4}, {}, 30); },
                 std::string(fn) + "a global budget needs one count (got 2)");
  expect_invalid([&] { run(b, a, spans, Budget::global, {21}, {}, 30); },
                 std::string(fn) + "n_keep (21) must be in [0, image tokens over all spans = 20]");
  expect_invalid([&] { run(b, a, spans, static_cast<Budget>(7), counts, {}, 30); },
                 std::string(fn) + "budget (7) is not a pdrop::Budget");
  expect_invalid([&] { run(b, a, spans, Budget::per_span, counts, {30}, 30); },
                 std::string(fn) + "query_pos[0] (30) must be in [0, tokens = 30)");
  expect_invalid([&] { run(b, a, spans, Budget::per_span, counts, {}, 16); },
                 std::string(fn) + "keep.size (16) must be >= the new length 17");
  // A non-finite row of an image token: checked before anything is written.
  p.after[static_cast<std::size_t>(20 * 8 + 3)] = std::numeric_limits<float>::quiet_NaN();
  expect_invalid([&] { run(b, a, spans, Budget::per_span, counts, {}, 30); },
                 std::string(fn) + "the variation of token 20 (nan) is not finite");
  // Finite rows whose difference overflows float.
  p.after[static_cast<std::size_t>(20 * 8 + 3)] = 3e38f;
  p.before[static_cast<std::size_t>(20 * 8 + 3)] = -3e38f;
  expect_invalid([&] { run(b, a, spans, Budget::per_span, counts, {}, 30); },
                 std::string(fn) + "the variation of token 20 (inf) is not finite");
  EXPECT_EQ(keep, keep0);
  EXPECT_TRUE(pdrop_test::same_bits(scores, scores0));
  for (const auto& s : ns) EXPECT_EQ(s.start, -1);

  // v2drop_scores: wrong size, overlap with an input, non-finite.
  std::vector<float> small(19, -3.0f);
  expect_invalid([&] { pdrop::v2drop_scores<float, float>(b, a, spans, ws, small); },
                 "pdrop::v2drop_scores: scores.size (19) must equal the image tokens (20)");
  std::vector<float> shared(300, 1.0f);
  const TokenView<const float> sb(shared.data(), 30, 8);
  expect_invalid([&] {
    pdrop::v2drop_scores<float, float>(sb, a, spans, ws, {shared.data() + 100, 20});
  }, "pdrop::v2drop_scores: scores overlaps before or after");
  expect_invalid([&] { pdrop::v2drop_scores<float, float>(b, a, spans, ws, scores); },
                 "pdrop::v2drop_scores: the variation of token 20 (inf) is not finite");
  EXPECT_TRUE(pdrop_test::same_bits(scores, scores0));
}

TEST(V2Drop, BatchDropsEverySequenceOnItsOwn) {
  // Three sequences of one packed buffer (fp16 before, float after): text
  // only, two images per span, two images with a global budget.
  const Problem<pdrop::half, float> p(23 + 41 + 37, 19, 2, 0, 44);
  const I64 off[4] = {0, 23, 64, 101};
  const std::vector<ImageSpan> s1 = {{3, 15}, {20, 18}}, s2 = {{1, 12}, {14, 20}};
  const std::vector<I64> c1 = {4, 18}, c2 = {9}, q1 = {40}, q2 = {36};
  using Seq = pdrop::V2DropSequence<pdrop::half, float>;
  std::vector<Seq> seqs(3);
  for (int b = 0; b < 3; ++b) {
    seqs[b].before = pdrop::token_slice(p.bv(), off[b], off[b + 1] - off[b]);
    seqs[b].after = pdrop::token_slice(p.av(), off[b], off[b + 1] - off[b]);
  }
  seqs[1].spans = s1;
  seqs[1].keep_counts = c1;
  seqs[1].query_pos = q1;
  seqs[2].spans = s2;
  seqs[2].keep_counts = c2;
  seqs[2].query_pos = q2;
  seqs[2].budget = Budget::global;
  pdrop::Workspace ws;
  std::vector<I64> keep(101, -1), offsets(4), lengths(3);
  std::vector<ImageSpan> ns(4);
  const I64 rows = pdrop::v2drop_batch<pdrop::half, float>(seqs, ws, keep, offsets, lengths, ns);
  // Naive: each sequence's scores from the packed problem, shifted.
  const auto shifted = [](const std::vector<ImageSpan>& sp, I64 by) {
    std::vector<ImageSpan> o = sp;
    for (auto& x : o) x.start += by;
    return o;
  };
  const auto k1 = naive_kept_per_span(p.naive_scores(shifted(s1, 23)), s1, c1, q1);
  std::vector<I64> k2;
  {
    const auto pos = image_positions(s2);
    for (I64 i : pdrop_test::naive_top_k(p.naive_scores(shifted(s2, 64)), c2[0]))
      k2.push_back(pos[static_cast<std::size_t>(i)]);
  }
  const auto l0 = pdrop_test::naive_keep_list(23, {}, {});
  const auto l1 = pdrop_test::naive_keep_list(41, s1, k1);
  const auto l2 = pdrop_test::naive_keep_list(37, s2, k2);
  std::vector<I64> want = l0;
  want.insert(want.end(), l1.begin(), l1.end());
  want.insert(want.end(), l2.begin(), l2.end());
  EXPECT_EQ(rows, static_cast<I64>(want.size()));
  keep.resize(static_cast<std::size_t>(rows));
  EXPECT_EQ(keep, want);
  EXPECT_EQ(offsets, (std::vector<I64>{0, 23, 23 + static_cast<I64>(l1.size()), rows}));
  EXPECT_EQ(lengths, (std::vector<I64>{23, static_cast<I64>(l1.size()), static_cast<I64>(l2.size())}));
  EXPECT_EQ(ns[0].length + ns[1].length, 22);
  EXPECT_EQ(ns[2].length + ns[3].length, 9);

  // A bad sequence is named, and nothing is written.
  std::vector<I64> keep2(101, -5), offsets2(4, -5);
  const std::vector<I64> bad = {16, 18};
  seqs[1].keep_counts = bad;
  expect_invalid([&] { pdrop::v2drop_batch<pdrop::half, float>(seqs, ws, keep2, offsets2); },
                 "pdrop::v2drop_batch: seqs[1]: ");
  EXPECT_EQ(keep2, std::vector<I64>(101, -5));
  EXPECT_EQ(offsets2, std::vector<I64>(4, -5));
}

TEST(V2Drop, StrategyIsNamedParsedAndKeepsOriginalPositions) {
  EXPECT_STREQ(pdrop::strategy_name(pdrop::Strategy::v2drop), "v2drop");
  EXPECT_EQ(pdrop::parse_strategy("v2drop"), pdrop::Strategy::v2drop);
  EXPECT_EQ(pdrop::default_position_mode(pdrop::Strategy::v2drop),
            pdrop::PositionMode::keep_original);
  const auto s = pdrop::Schedule::v2drop(8, {2, 5}, {0.5, 0.2});
  EXPECT_EQ(s.strategy(), pdrop::Strategy::v2drop);
  EXPECT_EQ(s.position_mode(), pdrop::PositionMode::keep_original);
  EXPECT_EQ(pdrop_test::std_vector(s.tokens_per_stage(100)), (std::vector<I64>{100, 50, 20}));
  expect_invalid([] { pdrop::Schedule::v2drop(8, {2, 5}, {0.2, 0.5}); },
                 "rules must be non-increasing");
}

// The authors' budget, written as their code runs it: each drop keeps
// max(1, int(n * r)) of the n tokens the previous one left.
std::vector<I64> authors_counts(I64 n0, const std::vector<double>& chained) {
  std::vector<I64> out = {n0};
  I64 n = n0;
  for (double r : chained) {
    n = std::max<I64>(1, static_cast<I64>(static_cast<double>(n) * r));
    out.push_back(n);
  }
  return out;
}

TEST(V2Drop, AuthorsSchedulesMatchTheirCountsButTheLastToken) {
  const auto llava = pdrop::v2drop_llava_1_5();
  EXPECT_EQ(llava.num_layers(), 32);
  EXPECT_EQ(pdrop_test::std_vector(llava.drop_layers()), (std::vector<I64>{3, 17, 22}));
  const auto qwen = pdrop::v2drop_qwen2_vl();
  EXPECT_EQ(qwen.num_layers(), 28);
  EXPECT_EQ(pdrop_test::std_vector(qwen.drop_layers()), (std::vector<I64>{3, 16, 22}));
  EXPECT_EQ(pdrop_test::std_vector(llava.tokens_per_stage(576)), (std::vector<I64>{576, 288, 144, 0}));
  for (I64 n0 = 1; n0 <= 20000; ++n0) {
    auto a = authors_counts(n0, {0.5, 0.5, 0.0});
    auto b = authors_counts(n0, {0.25, 0.05, 0.0});
    // Where theirs keeps its one last token pdrop keeps none (and, for
    // n0 < 4 / < 80, pdrop keeps 0 where their max(1, .) keeps 1).
    const auto pl = llava.tokens_per_stage(n0), pq = qwen.tokens_per_stage(n0);
    for (std::size_t j = 1; j < 4; ++j) {
      const bool floor_hit_a = static_cast<I64>(pl[j]) == 0;
      const bool floor_hit_b = static_cast<I64>(pq[j]) == 0;
      if (!floor_hit_a) EXPECT_EQ(pl[j], a[j]) << n0 << " llava stage " << j;
      else EXPECT_EQ(a[j], 1) << n0 << " llava stage " << j;
      if (!floor_hit_b) EXPECT_EQ(pq[j], b[j]) << n0 << " qwen stage " << j;
      else EXPECT_EQ(b[j], 1) << n0 << " qwen stage " << j;
    }
    if (HasFailure()) break;
  }
  expect_invalid([] { pdrop::v2drop_llava_1_5(22); }, "drop_layers[2] (22) must be in [1, layers-1 = 21]");
}

}  // namespace
