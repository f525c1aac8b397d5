// DART (pdrop/dart.hpp) against a plain reference: pivots by key norm
// (concatenated heads), then each pivot's share of the least cosine-similar
// remaining tokens, all written with full sorts in double.
#include <gtest/gtest.h>

#include "pdrop/dart.hpp"
#include "pdrop/sequence.hpp"
#include "pdrop/strategies.hpp"
#include "test_util.hpp"

namespace {

using pdrop::ImageSpan;
using pdrop::PivotNorm;

// Plain DART on one span. key(t) and feat(t) return a token's rows as
// doubles (heads already side by side). `text` lists the tokens text pivots
// may come from (after the span, in no span); the pivots are visited image
// pivots first, then text pivots, each group by norm (text_first swaps the
// groups, to show what another visiting order does).
template <class KeyRow, class FeatRow>
std::vector<std::int64_t> naive_dart(KeyRow key, FeatRow feat, ImageSpan s, std::int64_t k,
                                     std::int64_t pivots, PivotNorm norm,
                                     std::int64_t text_pivots = 0,
                                     const std::vector<std::int64_t>& text = {},
                                     bool text_first = false) {
  if (k == 0) return {};
  auto norm_of = [&](std::int64_t t) {
    double a = 0;
    for (double x : key(t)) a += norm == PivotNorm::l1 ? std::fabs(x) : x * x;
    return norm == PivotNorm::l1 ? a : std::sqrt(a);
  };
  auto by_norm = [&](std::vector<std::int64_t> v) {
    std::stable_sort(v.begin(), v.end(),
                     [&](std::int64_t a, std::int64_t b) { return norm_of(a) > norm_of(b); });
    return v;
  };
  std::vector<std::int64_t> all;
  for (std::int64_t t = s.start; t < s.end(); ++t) all.push_back(t);
  const std::vector<std::int64_t> order = by_norm(all);
  const std::int64_t p = std::min(pivots, k);
  const std::vector<std::int64_t> pv(order.begin(), order.begin() + p);
  std::vector<std::int64_t> kept = pv;
  std::vector<std::int64_t> rest;
  for (std::int64_t t = s.start; t < s.end(); ++t)
    if (std::find(pv.begin(), pv.end(), t) == pv.end()) rest.push_back(t);
  const std::int64_t extra = k - p;
  std::vector<std::int64_t> tv;
  if (extra > 0) {
    tv = by_norm(text);
    if (static_cast<std::int64_t>(tv.size()) > text_pivots) tv.resize(static_cast<std::size_t>(text_pivots));
  }
  std::vector<std::int64_t> visit = text_first ? tv : pv;
  for (std::int64_t t : (text_first ? pv : tv)) visit.push_back(t);
  const std::int64_t np = static_cast<std::int64_t>(visit.size());
  for (std::int64_t r = 0; r < np; ++r) {
    const std::int64_t share = extra / np + (r < extra % np ? 1 : 0);
    const std::vector<double> y = feat(visit[r]);
    std::vector<std::pair<double, std::int64_t>> sims;
    for (std::int64_t t : rest) {
      const std::vector<double> x = feat(t);
      double d = 0, xx = 0, yy = 0;
      for (std::size_t i = 0; i < x.size(); ++i) {
        d += x[i] * y[i];
        xx += x[i] * x[i];
        yy += y[i] * y[i];
      }
      sims.push_back({(xx == 0 || yy == 0) ? 0.0 : d / (std::sqrt(xx) * std::sqrt(yy)), t});
    }
    std::sort(sims.begin(), sims.end());  // similarity, then index
    rest.clear();
    for (std::size_t i = 0; i < sims.size(); ++i)
      (static_cast<std::int64_t>(i) < share ? kept : rest).push_back(sims[i].second);
    std::sort(rest.begin(), rest.end());
  }
  std::sort(kept.begin(), kept.end());
  return kept;
}

// Tokens after span i that lie in no span (where text pivots come from).
std::vector<std::int64_t> text_after(const std::vector<ImageSpan>& spans, std::size_t i,
                                     std::int64_t tokens) {
  std::vector<std::int64_t> out;
  for (std::int64_t t = spans[i].end(); t < tokens; ++t) {
    bool image = false;
    for (const ImageSpan& s : spans) image = image || (t >= s.start && t < s.end());
    if (!image) out.push_back(t);
  }
  return out;
}

template <class T>
class DartTest : public ::testing::Test {};
TYPED_TEST_SUITE(DartTest, pdrop_test::FloatTypes, pdrop_test::FloatTypeNames);

TYPED_TEST(DartTest, MatchesPlainReferenceOverShapesAndLayouts) {
  using T = TypeParam;
  std::mt19937 rng(77);
  pdrop::Workspace ws;
  struct C {
    std::int64_t heads, d, tokens, width, pivots;
    PivotNorm norm;
    std::int64_t text_pivots;
    bool nhd;
    std::vector<ImageSpan> spans;
    std::vector<std::int64_t> counts;
  };
  const std::vector<C> cases{
      {1, 1, 1, 1, 1, PivotNorm::l1, 0, false, {{0, 1}}, {1}},
      {1, 3, 9, 5, 2, PivotNorm::l1, 1, false, {{1, 7}}, {3}},
      {2, 4, 40, 7, 8, PivotNorm::l1, 4, true, {{3, 33}}, {17}},
      {4, 8, 90, 16, 4, PivotNorm::l2, 3, false, {{2, 30}, {40, 1}, {45, 44}}, {29, 1, 11}},
      {3, 5, 64, 9, 3, PivotNorm::l2, 2, true, {{0, 0}, {0, 63}}, {0, 62}},
      {2, 8, 70, 12, 5, PivotNorm::l1, 4, false, {{5, 60}}, {4}},   // k < pivots
      {2, 8, 70, 12, 5, PivotNorm::l1, 4, true, {{5, 60}}, {60}},   // everything
      {1, 16, 50, 3, 7, PivotNorm::l2, 4, false, {{9, 40}}, {0}},   // nothing
      {2, 4, 60, 6, 4, PivotNorm::l1, 4, false, {{2, 20}, {25, 30}}, {13, 21}},  // 4+4, text between
      {1, 2, 40, 4, 2, PivotNorm::l1, 9, true, {{1, 36}}, {25}},    // fewer text tokens than asked
      {2, 3, 30, 5, 1, PivotNorm::l2, 3, false, {{10, 20}}, {7}},   // no text after the span
  };
  for (const C& c : cases) {
    auto kbuf = pdrop_test::random_vector<T>(static_cast<std::size_t>(c.heads * c.tokens * c.d), rng, -2, 2);
    const std::int64_t fstride = c.width + 2;  // strided feature rows
    auto fbuf = pdrop_test::random_vector<T>(static_cast<std::size_t>(c.tokens * fstride), rng, -1, 1);
    const auto kv = c.nhd ? pdrop::nhd_view<const T>(kbuf.data(), c.tokens, c.heads, c.d)
                          : pdrop::hnd_view<const T>(kbuf.data(), c.heads, c.tokens, c.d);
    const pdrop::TokenView<const T> fv(fbuf.data(), c.tokens, c.width, fstride);
    auto key_row = [&](std::int64_t t) {
      std::vector<double> r;
      for (std::int64_t h = 0; h < c.heads; ++h)
        for (std::int64_t e = 0; e < c.d; ++e) r.push_back(pdrop_test::as_double(*(kv.row(h, t) + e)));
      return r;
    };
    auto feat_row = [&](std::int64_t t) {
      std::vector<double> r;
      for (std::int64_t e = 0; e < c.width; ++e) r.push_back(pdrop_test::as_double(fbuf[t * fstride + e]));
      return r;
    };
    std::vector<std::int64_t> want, want_k;
    for (std::size_t s = 0; s < c.spans.size(); ++s) {
      const auto text = text_after(c.spans, s, c.tokens);
      for (auto x : naive_dart(key_row, feat_row, c.spans[s], c.counts[s], c.pivots, c.norm, c.text_pivots, text)) want.push_back(x);
      for (auto x : naive_dart(key_row, key_row, c.spans[s], c.counts[s], c.pivots, c.norm, c.text_pivots, text)) want_k.push_back(x);
    }
    pdrop::DartOptions opt;
    opt.pivots = c.pivots;
    opt.pivot_norm = c.norm;
    opt.text_pivots = c.text_pivots;
    std::vector<std::int64_t> kept(want.size(), -1);
    pdrop::dart_select<T, T>(kv, fv, c.spans, c.counts, ws, kept, opt);
    EXPECT_EQ(kept, want) << "tokens " << c.tokens << " width " << c.width << " text pivots "
                          << c.text_pivots;
    std::vector<std::int64_t> kept_k(want_k.size(), -1);
    pdrop::dart_select<T>(kv, c.spans, c.counts, ws, kept_k, opt);
    EXPECT_EQ(kept_k, want_k) << "key rows, tokens " << c.tokens;
  }
}

TEST(Dart, DefaultPivotNormIsL2) {
  // Key rows (3, 0), (2, 2), (0, 1): the L2 norms rank token 0 first
  // (3 > 2.83), the L1 norms token 1 (4 > 3). One pivot, keep 1.
  const std::vector<float> k{3, 0, 2, 2, 0, 1};
  auto key_row = [&](std::int64_t t) { return std::vector<double>{k[2 * t], k[2 * t + 1]}; };
  const std::vector<ImageSpan> spans{{0, 3}};
  const std::vector<std::int64_t> counts{1};
  const auto l2 = naive_dart(key_row, key_row, spans[0], 1, 1, PivotNorm::l2);
  ASSERT_NE(l2, naive_dart(key_row, key_row, spans[0], 1, 1, PivotNorm::l1));
  pdrop::Workspace ws;
  std::vector<std::int64_t> kept(1, -1);
  pdrop::DartOptions opt;
  opt.pivots = 1;
  pdrop::dart_select<float>(pdrop::hnd_view<const float>(k.data(), 1, 3, 2), spans, counts, ws,
                            kept, opt);
  EXPECT_EQ(kept, l2);
}

TEST(Dart, HandExampleOppositeThenOrthogonalWithTieToLowerIndex) {
  // Token 0 has the largest key norm: the pivot. Features in 2-D: the
  // opposite vector (token 2, cos -1) goes first, then tokens 3 and 4 tie at
  // cos 0 and the lower index wins.
  const std::vector<float> k{5, 5, 1, 1, 1, 1, 2, 2, 1, 1};  // 1 head, dim 2
  const std::vector<float> f{1, 0, 0.9f, 0.1f, -1, 0, 0, 1, 0, -1};
  pdrop::Workspace ws;
  const std::vector<ImageSpan> spans{{0, 5}};
  const std::vector<std::int64_t> counts{3};
  std::vector<std::int64_t> kept(3);
  pdrop::DartOptions opt;
  opt.pivots = 1;
  pdrop::dart_select<float, float>(pdrop::hnd_view<const float>(k.data(), 1, 5, 2),
                                   pdrop::TokenView<const float>(f.data(), 5, 2), spans, counts,
                                   ws, kept, opt);
  EXPECT_EQ(kept, (std::vector<std::int64_t>{0, 2, 3}));
}

TEST(Dart, DuplicatedAndScaledRowsBreakTiesByIndex) {
  // Rows repeat every 4 tokens and scale by (1 + t/4): cosines repeat
  // exactly, so most choices are ties resolved by index.
  std::mt19937 rng(5);
  const std::int64_t tokens = 24, width = 6;
  auto base = pdrop_test::random_vector<float>(4 * width, rng);
  std::vector<float> f(tokens * width), k(tokens * 2);
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t e = 0; e < width; ++e)
      f[t * width + e] = base[(t % 4) * width + e] * static_cast<float>(1 + t / 4);
    k[2 * t] = static_cast<float>(t % 3);  // norms tie too
    k[2 * t + 1] = 1;
  }
  auto key_row = [&](std::int64_t t) { return std::vector<double>{k[2 * t], k[2 * t + 1]}; };
  auto feat_row = [&](std::int64_t t) {
    return std::vector<double>(f.begin() + t * width, f.begin() + (t + 1) * width);
  };
  pdrop::Workspace ws;
  for (std::int64_t keep : {1, 2, 5, 11, 23}) {
    const std::vector<ImageSpan> spans{{0, tokens}};
    const std::vector<std::int64_t> counts{keep};
    std::vector<std::int64_t> kept(static_cast<std::size_t>(keep));
    pdrop::DartOptions opt;
    opt.pivots = 3;
    pdrop::dart_select<float, float>(pdrop::hnd_view<const float>(k.data(), 1, tokens, 2),
                                     pdrop::TokenView<const float>(f.data(), tokens, width),
                                     spans, counts, ws, kept, opt);
    EXPECT_EQ(kept, naive_dart(key_row, feat_row, spans[0], keep, 3, PivotNorm::l2)) << keep;
  }
}

// One image pivot and one text pivot by L1 key norm, as the authors' code
// ranks them.
pdrop::DartOptions one_image_one_text_pivot() {
  pdrop::DartOptions opt;
  opt.pivots = 1;
  opt.text_pivots = 1;
  opt.pivot_norm = PivotNorm::l1;
  return opt;
}

// Issue 15's smallest case, with the value DART's authors' code gives
// (their get_retained_image_token, 1 image + 1 text pivot, at most two
// tokens per pivot): image tokens 0-3, text token 4, L1 key norms
// [3, 1, 1, 1, 5], 3 image tokens kept. Their code keeps [0, 1, 3]: the
// text pivot 4 takes token 3, the one least like it. Image pivots alone
// keep [0, 1, 2].
TEST(DartAuthors, SmallestCaseKeepsTheirTokens) {
  const std::vector<float> k{3, 1, -1, 1, -5};  // 1 head, d = 1: L1 norms 3 1 1 1 5
  const std::vector<float> f{1, 0, -1, 0, 0, 1, 0.7f, 0.7f, -1, 0.2f};
  const auto kv = pdrop::hnd_view<const float>(k.data(), 1, 5, 1);
  const pdrop::TokenView<const float> fv(f.data(), 5, 2);
  const std::vector<ImageSpan> spans{{0, 4}};
  // Their budget: TOKEN_TOPK = 3 // (1 + 1) = 1, kept 1 + 2 * 1 = 3.
  const pdrop::KeepRule rule = pdrop::KeepRule::count(3).with_dart_quota({1, 1});
  const std::vector<std::int64_t> counts{pdrop::keep_budget(4, rule)};
  ASSERT_EQ(counts[0], 3);
  pdrop::Workspace ws;
  pdrop::DartOptions opt = one_image_one_text_pivot();
  std::vector<std::int64_t> kept(3, -1);
  pdrop::dart_select<float, float>(kv, fv, spans, counts, ws, kept, opt);
  EXPECT_EQ(kept, (std::vector<std::int64_t>{0, 1, 3}));
  opt.text_pivots = 0;
  pdrop::dart_select<float, float>(kv, fv, spans, counts, ws, kept, opt);
  EXPECT_EQ(kept, (std::vector<std::int64_t>{0, 1, 2}));
}

// pdrop visits image pivots then text pivots, each by norm; the authors'
// code visits a Python set's hash order, which may put the text pivot
// first. Here both pivots like token 1 least, so the order decides: image
// pivot 0 takes 1, text pivot 5 then takes 3. Visiting the text pivot
// first would keep [0, 1, 2] instead. Same count either way.
TEST(DartAuthors, PivotsAreVisitedImageFirstThenByNorm) {
  const std::vector<float> k{4, 1, 1, 1, 1, 9};  // token 0: image pivot, 5: text pivot
  //                         t0      t1       t2        t3        t4       t5
  const std::vector<float> f{1, 0, -1, -1, -0.5f, 1, 1, -0.5f, 1, 0.1f, 0, 1};
  const auto kv = pdrop::hnd_view<const float>(k.data(), 1, 6, 1);
  const pdrop::TokenView<const float> fv(f.data(), 6, 2);
  auto key_row = [&](std::int64_t t) { return std::vector<double>{k[t]}; };
  auto feat_row = [&](std::int64_t t) { return std::vector<double>{f[2 * t], f[2 * t + 1]}; };
  const std::vector<ImageSpan> spans{{0, 5}};
  const std::vector<std::int64_t> counts{3};
  const auto ours = naive_dart(key_row, feat_row, spans[0], 3, 1, PivotNorm::l1, 1, {5});
  const auto text_first = naive_dart(key_row, feat_row, spans[0], 3, 1, PivotNorm::l1, 1, {5}, true);
  ASSERT_EQ(ours, (std::vector<std::int64_t>{0, 1, 3}));
  ASSERT_NE(ours, text_first);
  pdrop::Workspace ws;
  const pdrop::DartOptions opt = one_image_one_text_pivot();
  std::vector<std::int64_t> kept(3, -1);
  pdrop::dart_select<float, float>(kv, fv, spans, counts, ws, kept, opt);
  EXPECT_EQ(kept, ours);
}

// The LLaVA-1.5 preset end to end: a 35-token system prompt, 576 image
// tokens, 60 text tokens (LLaVA's layout in DART's scripts), through the
// per-sequence record and drop_by_strategy: 132 image tokens kept, the ones
// the plain reference with 4 + 4 pivots and L1 norms keeps, each pivot
// taking 16; positions stay the original ones.
TYPED_TEST(DartTest, LlavaPresetThroughTheRecordMatchesPlainReference) {
  using T = TypeParam;
  std::mt19937 rng(2025);
  const std::int64_t heads = 4, d = 8, width = 32, start = 35, n = 576, tokens = start + n + 60;
  const auto kbuf = pdrop_test::random_vector<T>(static_cast<std::size_t>(heads * tokens * d), rng, -2, 2);
  const auto fbuf = pdrop_test::random_vector<T>(static_cast<std::size_t>(tokens * width), rng, -1, 1);
  const auto kv = pdrop::nhd_view<const T>(kbuf.data(), tokens, heads, d);
  const pdrop::TokenView<const T> fv(fbuf.data(), tokens, width);
  const pdrop::DartSetup dart = pdrop::dart_llava_1_5(32);
  std::vector<std::int64_t> pos(static_cast<std::size_t>(tokens));
  for (std::int64_t t = 0; t < tokens; ++t) pos[static_cast<std::size_t>(t)] = t;
  const std::vector<ImageSpan> spans{{start, n}};
  pdrop::SequenceState seq(dart.schedule, pdrop::TokenView<const std::int64_t>(pos.data(), tokens, 1),
                           spans);
  std::vector<std::int64_t> counts(1);
  seq.keep_counts(1, pdrop::Budget::per_span, counts);
  ASSERT_EQ(counts[0], 132);
  pdrop::DropInputs<T, T, T> in;
  in.k = kv;
  in.features = fv;
  in.dart = dart.options;
  const std::int64_t last = tokens - 1;
  in.query_pos = {&last, 1};
  pdrop::Workspace ws;
  std::vector<std::int64_t> keep(static_cast<std::size_t>(tokens));
  const std::int64_t t_new =
      pdrop::drop_by_strategy(dart.schedule.strategy(), tokens, in, spans, counts, ws, keep);
  ASSERT_EQ(t_new, tokens - n + 132);
  keep.resize(static_cast<std::size_t>(t_new));
  seq.apply_drop(keep);
  auto key_row = [&](std::int64_t t) {
    std::vector<double> r;
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t e = 0; e < d; ++e) r.push_back(pdrop_test::as_double(*(kv.row(h, t) + e)));
    return r;
  };
  auto feat_row = [&](std::int64_t t) {
    std::vector<double> r;
    for (std::int64_t e = 0; e < width; ++e) r.push_back(pdrop_test::as_double(fbuf[static_cast<std::size_t>(t * width + e)]));
    return r;
  };
  const auto want = naive_dart(key_row, feat_row, spans[0], 132, 4, PivotNorm::l1, 4,
                               text_after(spans, 0, tokens));
  std::vector<std::int64_t> kept_image;
  for (std::int64_t t : keep)
    if (t >= start && t < start + n) kept_image.push_back(t);
  EXPECT_EQ(kept_image, want);
  EXPECT_EQ(seq.tokens(1), t_new);
  EXPECT_EQ(seq.next_position(31), tokens);  // original positions: max + 1
}

TEST(Dart, ReservedWorkspaceWithTextPivotsDoesNotGrow) {
  std::mt19937 rng(19);
  const std::int64_t tokens = 700, width = 24;
  auto k = pdrop_test::random_vector<float>(2 * tokens * 8, rng);
  auto f = pdrop_test::random_vector<float>(tokens * width, rng);
  pdrop::Workspace ws;
  const pdrop::DartSetup d = pdrop::dart_llava_1_5(32);
  pdrop::dart_reserve(ws, 576, width, d.options);
  const std::size_t bytes = ws.bytes();
  const std::vector<ImageSpan> spans{{35, 576}};
  const std::vector<std::int64_t> counts{d.schedule.image_tokens(576, 1)};
  std::vector<std::int64_t> kept(static_cast<std::size_t>(counts[0]));
  pdrop::dart_select<float, float>(pdrop::hnd_view<const float>(k.data(), 2, tokens, 8),
                                   pdrop::TokenView<const float>(f.data(), tokens, width), spans,
                                   counts, ws, kept, d.options);
  EXPECT_EQ(ws.bytes(), bytes);
  EXPECT_EQ(kept.size(), 132u);
}

TEST(Dart, ReservedWorkspaceDoesNotGrow) {
  std::mt19937 rng(9);
  const std::int64_t tokens = 300, width = 40;
  auto k = pdrop_test::random_vector<float>(2 * tokens * 8, rng);
  auto f = pdrop_test::random_vector<float>(tokens * width, rng);
  pdrop::Workspace ws;
  pdrop::dart_reserve(ws, 290, width);
  const std::size_t bytes = ws.bytes();
  const std::vector<ImageSpan> spans{{5, 100}, {110, 190}};
  const std::vector<std::int64_t> counts{30, 77};
  std::vector<std::int64_t> kept(107);
  pdrop::dart_select<float, float>(pdrop::hnd_view<const float>(k.data(), 2, tokens, 8),
                                   pdrop::TokenView<const float>(f.data(), tokens, width), spans,
                                   counts, ws, kept);
  EXPECT_EQ(ws.bytes(), bytes);
  EXPECT_TRUE(std::is_sorted(kept.begin(), kept.end()));
}

TEST(Dart, BadInputLeavesKeptUntouched) {
  using pdrop_test::expect_invalid;
  const std::int64_t tokens = 10;
  std::vector<float> k(tokens * 4, 1.0f), f(tokens * 3, 0.5f);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<float>(i % 7) - 3;
  const auto kv = pdrop::hnd_view<const float>(k.data(), 2, tokens, 2);
  const pdrop::TokenView<const float> fv(f.data(), tokens, 3);
  pdrop::Workspace ws;
  std::vector<ImageSpan> spans{{2, 6}};
  std::vector<std::int64_t> counts{3};
  std::vector<std::int64_t> kept(3, -7);
  const auto before = pdrop_test::bytes_of(kept);
  pdrop::DartOptions one;  // one pivot: the other two tokens are compared
  one.pivots = 1;
  auto run = [&](auto kview, auto fview, pdrop::DartOptions opt) {
    return [&, kview, fview, opt] {
      pdrop::dart_select<float, float>(kview, fview, spans, counts, ws, kept, opt);
    };
  };
  auto check = [&](auto f_call, const std::string& needle) {
    expect_invalid(f_call, needle);
    EXPECT_EQ(pdrop_test::bytes_of(kept), before) << needle;
  };
  check(run(pdrop::hnd_view<const float>(k.data(), 0, tokens, 2), fv, one), "k.heads (0)");
  check(run(kv, pdrop::TokenView<const float>(f.data(), tokens - 1, 3), one), "features.tokens (9)");
  pdrop::DartOptions zero;
  zero.pivots = 0;
  check(run(kv, fv, zero), "options.pivots (0)");
  pdrop::DartOptions neg_text = one;
  neg_text.text_pivots = -1;
  check(run(kv, fv, neg_text), "options.text_pivots (-1)");
  pdrop::DartOptions bad_norm;
  bad_norm.pivot_norm = static_cast<PivotNorm>(7);
  check(run(kv, fv, bad_norm), "options.pivot_norm (7)");
  spans = {{5, 6}};
  check(run(kv, fv, one), "spans[0] (start 5, length 6)");
  spans = {{2, 6}};
  counts = {7};
  check(run(kv, fv, one), "keep_counts[0] (7)");
  counts = {2};
  check(run(kv, fv, one), "kept.size (3)");
  counts = {3};
  check(run(kv, pdrop::TokenView<const float>(), one), "features is empty");
  // A text pivot's key row is read when text pivots are asked for.
  pdrop::DartOptions with_text = one;
  with_text.text_pivots = 1;
  k[2 * 9] = std::nanf("");
  check(run(kv, fv, with_text), "key row of token 9");
  EXPECT_NO_THROW(run(kv, fv, one)());  // without text pivots it is never read
  kept.assign(3, -7);
  k[2 * 9] = 0;
  // Non-finite rows that take part: a key row in the span, a feature row.
  k[2 * 4 + 1] = std::nanf("");
  check(run(kv, fv, one), "key row of token 4");
  k[2 * 4 + 1] = 0;
  f[3 * 7] = std::numeric_limits<float>::infinity();
  check(run(kv, fv, one), "row of token 7");
  f[3 * 7] = 0.5f;
  // A non-finite row outside every span is never read.
  k[0] = std::nanf("");
  f[0] = std::nanf("");
  EXPECT_NO_THROW(run(kv, fv, one)());
}

}  // namespace
