// score_image_tokens against the naive reference of test_util.hpp, over the
// three float types, awkward sizes, GQA ratios 1 to 8, HND and NHD layouts
// with padded strides, several query rows and image spans.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "test_util.hpp"

namespace {

using namespace pdrop_test::names;
using pdrop_test::ScoreCase;
using pdrop_test::ScoreProblem;

std::vector<ScoreCase> cases() {
  std::vector<ScoreCase> out;
  out.push_back({1, 1, 1, 1, 1, {{0, 1}}, {0}});
  out.push_back({1, 1, 1, 3, 2, {{0, 1}}, {1}});
  out.push_back({2, 1, 1, 7, 3, {{1, 1}}, {2}});
  out.push_back({4, 1, 2, 8, 10, {{2, 6}}, {9, 5}});
  out.push_back({8, 1, 1, 16, 33, {{3, 27}}, {32}});
  out.push_back({8, 2, 3, 5, 40, {{0, 17}, {20, 13}}, {39, 25, 10}});
  out.push_back({4, 4, 1, 63, 65, {{1, 63}}, {64}});
  out.push_back({8, 8, 2, 65, 129, {{0, 128}}, {128, 127}});
  out.push_back({3, 3, 1, 2, 7, {{2, 0}, {2, 4}}, {6}});
  // A query before the image, and one inside it.
  out.push_back({4, 2, 3, 9, 30, {{10, 15}}, {5, 17, 29}});
  // Image last: the query is an image token itself.
  out.push_back({2, 2, 1, 4, 12, {{4, 8}}, {11}});
  // Every query-row count of a group from 3 to 9 (the kernel's tile shapes
  // change with it: K rows per tile and query rows per tile), over key
  // counts that leave a tail of K rows after the tiles.
  out.push_back({3, 1, 1, 16, 23, {{2, 19}}, {22}});
  out.push_back({8, 2, 1, 24, 29, {{1, 27}}, {28}});
  out.push_back({5, 1, 1, 8, 31, {{0, 30}}, {30}});
  out.push_back({6, 1, 1, 9, 17, {{4, 10}}, {16}});
  out.push_back({14, 2, 1, 128, 37, {{3, 30}}, {36}});
  out.push_back({28, 4, 1, 16, 45, {{5, 35}}, {44}});
  out.push_back({9, 3, 3, 8, 26, {{2, 20}}, {25, 24, 13}});
  // Groups split into several blocks of query rows (10 = 4 + 3 + 3 and
  // 11 = 4 + 4 + 3 on AVX2, 28 = 7 x 4 query tokens), each block reading
  // the same tile of K rows.
  out.push_back({10, 1, 1, 16, 41, {{2, 37}}, {40}});
  out.push_back({22, 2, 1, 24, 20, {{1, 18}}, {19}});
  out.push_back({7, 1, 4, 16, 37, {{3, 30}}, {36, 35, 20, 33}});
  return out;
}

template <class T>
class ScoreTest : public ::testing::Test {};
TYPED_TEST_SUITE(ScoreTest, pdrop_test::FloatTypes, pdrop_test::FloatTypeNames);

TYPED_TEST(ScoreTest, MatchesNaiveReferenceAcrossShapesAndLayouts) {
  using T = TypeParam;
  std::mt19937 rng(1234);
  pdrop::Workspace ws;  // one workspace reused over every shape
  for (const ScoreCase& c : cases())
    for (bool nhd : {false, true})
      for (std::int64_t pad : {0, 3}) {
        SCOPED_TRACE(::testing::Message() << "hq " << c.hq << " hkv " << c.hkv << " nq "
                                          << c.nq << " d " << c.d << " T " << c.tokens
                                          << (nhd ? " NHD" : " HND") << " pad " << pad);
        ScoreProblem<T> x(c, rng, nhd, pad);
        const std::int64_t n = c.image_tokens();
        std::vector<float> scores(static_cast<std::size_t>(n), -1.0f);
        pdrop::score_image_tokens<T, T>(x.qv, c.pos, x.kv, c.spans, ws, scores);
        const std::vector<double> ref = x.reference();
        for (std::int64_t i = 0; i < n; ++i)
          EXPECT_NEAR(scores[i], ref[i], 2e-5 * ref[i] + 1e-7) << "image token " << i;
      }
}

TYPED_TEST(ScoreTest, LayoutDoesNotChangeABit) {
  using T = TypeParam;
  const ScoreCase c{8, 2, 2, 24, 50, {{5, 40}}, {49, 44}};
  std::mt19937 rng(7);
  ScoreProblem<T> hnd(c, rng);
  // The same values laid out token-major with padding.
  const std::int64_t row = c.d + 5;
  std::vector<T> q(c.hq * c.nq * row), k(c.hkv * c.tokens * row);
  for (std::int64_t h = 0; h < c.hq; ++h)
    for (std::int64_t i = 0; i < c.nq; ++i)
      std::copy_n(hnd.qv.row(h, i), c.d, q.begin() + (i * c.hq + h) * row);
  for (std::int64_t g = 0; g < c.hkv; ++g)
    for (std::int64_t t = 0; t < c.tokens; ++t)
      std::copy_n(hnd.kv.row(g, t), c.d, k.begin() + (t * c.hkv + g) * row);
  const auto qn = pdrop_test::padded_view<const T>(q.data(), c.hq, c.nq, c.d, row, true);
  const auto kn = pdrop_test::padded_view<const T>(k.data(), c.hkv, c.tokens, c.d, row, true);
  pdrop::Workspace ws;
  std::vector<float> a(40), b(40);
  pdrop::score_image_tokens<T, T>(hnd.qv, c.pos, hnd.kv, c.spans, ws, a);
  pdrop::score_image_tokens<T, T>(qn, c.pos, kn, c.spans, ws, b);
  EXPECT_EQ(pdrop_test::bytes_of(a), pdrop_test::bytes_of(b));
}

TYPED_TEST(ScoreTest, QueryBeforeImageContributesZero) {
  using T = TypeParam;
  // Every query sits before the image: every score is exactly zero.
  const ScoreCase c{2, 1, 2, 8, 20, {{10, 10}}, {3, 9}};
  std::mt19937 rng(3);
  ScoreProblem<T> x(c, rng);
  pdrop::Workspace ws;
  std::vector<float> s(10, -1.0f);
  pdrop::score_image_tokens<T, T>(x.qv, c.pos, x.kv, c.spans, ws, s);
  for (float v : s) EXPECT_EQ(v, 0.0f);
}

TYPED_TEST(ScoreTest, ExplicitSoftmaxScale) {
  using T = TypeParam;
  const ScoreCase c{4, 2, 1, 16, 30, {{2, 20}}, {29}};
  std::mt19937 rng(11);
  ScoreProblem<T> x(c, rng);
  pdrop::Workspace ws;
  std::vector<float> s(20);
  pdrop::ScoreOptions opt;
  opt.softmax_scale = 0.5f;
  pdrop::score_image_tokens<T, T>(x.qv, c.pos, x.kv, c.spans, ws, s, opt);
  const auto ref = x.reference(0.5);
  for (std::size_t i = 0; i < s.size(); ++i) EXPECT_NEAR(s[i], ref[i], 2e-5 * ref[i] + 1e-7);
}

TEST(ScoreRounding, Fp16AndBf16RoundEachProbability) {
  // One head, one query: each score is one probability, so with rounding on
  // it must be exactly representable in the rounded type and within half an
  // ulp of that type of the float32 score.
  const ScoreCase c{1, 1, 1, 32, 300, {{10, 280}}, {299}};
  std::mt19937 rng(5);
  ScoreProblem<float> x(c, rng);
  pdrop::Workspace ws;
  std::vector<float> exact(280), r16(280), rb16(280);
  pdrop::score_image_tokens<float, float>(x.qv, c.pos, x.kv, c.spans, ws, exact);
  pdrop::ScoreOptions opt;
  opt.round_probs = pdrop::ProbRounding::fp16;
  pdrop::score_image_tokens<float, float>(x.qv, c.pos, x.kv, c.spans, ws, r16, opt);
  opt.round_probs = pdrop::ProbRounding::bf16;
  pdrop::score_image_tokens<float, float>(x.qv, c.pos, x.kv, c.spans, ws, rb16, opt);
  int changed = 0;
  for (std::size_t i = 0; i < exact.size(); ++i) {
    EXPECT_EQ(static_cast<float>(pdrop::half(r16[i])), r16[i]);
    EXPECT_EQ(static_cast<float>(pdrop::bfloat16(rb16[i])), rb16[i]);
    EXPECT_NEAR(r16[i], exact[i], exact[i] * 1.0 / 2048 + 1e-7);
    EXPECT_NEAR(rb16[i], exact[i], exact[i] * 1.0 / 256 + 1e-7);
    changed += r16[i] != exact[i];
  }
  EXPECT_GT(changed, 0);
}

// ---- errors: message names the argument, scores untouched ----

struct ErrorFixture {
  std::mt19937 rng{9};
  ScoreCase c{4, 2, 2, 8, 20, {{4, 10}}, {19, 18}};
  ScoreProblem<float> x{c, rng};
  std::vector<float> scores = std::vector<float>(10, 42.0f);
  pdrop::Workspace ws;
  std::vector<unsigned char> before = pdrop_test::bytes_of(scores);

  template <class Q, class K>
  void expect_rejected(HeadView<const Q> q, std::vector<std::int64_t> pos,
                       HeadView<const K> k, std::vector<ImageSpan> spans,
                       std::vector<float>& out, const std::string& needle,
                       pdrop::ScoreOptions opt = {}) {
    pdrop_test::expect_invalid(
        [&] { pdrop::score_image_tokens<Q, K>(q, pos, k, spans, ws, out, opt); }, needle);
    EXPECT_EQ(pdrop_test::bytes_of(out), before) << needle;
  }
};

TEST(ScoreErrors, RejectsBadShapesAndLeavesScoresUntouched) {
  ErrorFixture f;
  auto q = f.x.qv;
  auto k = f.x.kv;
  auto bad = [](HeadView<const float> v, auto edit) { edit(v); return v; };
  f.expect_rejected(q, {19}, k, f.c.spans, f.scores, "query_pos.size (1)");
  f.expect_rejected(q, {19, 20}, k, f.c.spans, f.scores, "query_pos[1] (20)");
  f.expect_rejected(q, {-1, 3}, k, f.c.spans, f.scores, "query_pos[0] (-1)");
  f.expect_rejected(q, f.c.pos, k, {{15, 10}}, f.scores, "spans[0] (start 15, length 10)");
  f.expect_rejected(q, f.c.pos, k, {{4, 5}, {8, 5}}, f.scores, "spans[1] (start 8)");
  f.expect_rejected(q, f.c.pos, k, {{4, 9}}, f.scores, "scores.size (10)");
  f.expect_rejected(bad(q, [](auto& v) { v.heads = 3; }), f.c.pos, k, f.c.spans, f.scores,
                    "q.heads (3) must be a multiple of k.heads (2)");
  f.expect_rejected(q, f.c.pos, bad(k, [](auto& v) { v.dim = 7; }), f.c.spans, f.scores,
                    "q.dim (8) and k.dim (7)");
  f.expect_rejected(q, f.c.pos, bad(k, [](auto& v) { v.token_stride = 5; }), f.c.spans,
                    f.scores, "k.token_stride (5) must be >= dim (8)");
  f.expect_rejected(q, f.c.pos, bad(k, [](auto& v) { v.data = nullptr; }), f.c.spans,
                    f.scores, "k.data is null");
  f.expect_rejected(q, f.c.pos, bad(k, [](auto& v) { v.tokens = -2; }), f.c.spans, f.scores,
                    "k.tokens (-2)");
  f.expect_rejected(q, f.c.pos, bad(k, [](auto& v) { v.head_stride = std::int64_t{1} << 62; }),
                    f.c.spans, f.scores, "overflows int64");
  pdrop::ScoreOptions opt;
  opt.softmax_scale = -1.0f;
  f.expect_rejected(q, f.c.pos, k, f.c.spans, f.scores, "options.softmax_scale (-1)", opt);
}

TEST(ScoreErrors, NonFiniteInputIsAnErrorNotAPick) {
  for (float poison : {std::nanf(""), INFINITY, -INFINITY}) {
    ErrorFixture f;
    f.x.k[3 * 8 + 2] = poison;  // kv head 0, token 3
    f.expect_rejected(f.x.qv, f.c.pos, f.x.kv, f.c.spans, f.scores, "non-finite");
    ErrorFixture g;
    g.x.q[1] = poison;          // q head 0, query 0
    g.expect_rejected(g.x.qv, g.c.pos, g.x.kv, g.c.spans, g.scores, "query head 0");
  }
  // A poisoned key after every query position is never read: no error.
  ErrorFixture f;
  f.c.pos = {15, 12};
  f.x.k[19 * 8] = std::nanf("");
  pdrop::score_image_tokens<float, float>(f.x.qv, f.c.pos, f.x.kv, f.c.spans, f.ws, f.scores);
  for (float s : f.scores) EXPECT_TRUE(std::isfinite(s));
}

}  // namespace

// ---- softmax underflow: rank what float32 ranks (issue 14) ----
namespace {

// e^x rounded once to float: double's exp is far more accurate than a
// float ulp, and the double -> float conversion rounds to the nearest
// float, subnormals included.
float float32_exp(float x) { return static_cast<float>(std::exp(static_cast<double>(x))); }

std::uint32_t float_bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

// softmax_add of one target: l = {0, x...} (max 0), no spans; afterwards l
// holds e^x.
template <class SoftmaxAdd>
void expect_exp_like_float32(SoftmaxAdd softmax_add, const char* target) {
  SCOPED_TRACE(target);
  std::vector<float> x{0.0f};
  for (float v = -0.001f; v > -112.0f; v -= 0.0137f) x.push_back(v);
  for (float v : {-87.33f, -87.34f, -100.0f, -103.2f, -103.3f, -103.97f, -104.0f, -200.0f,
                  -1e30f, -std::numeric_limits<float>::infinity()})
    x.push_back(v);
  std::vector<float> l = x;
  const std::int64_t bad = softmax_add(l.data(), static_cast<std::int64_t>(l.size()),
                                       span<const ImageSpan>{}, pdrop::ProbRounding::none,
                                       nullptr);
  ASSERT_EQ(bad, std::find_if(x.begin(), x.end(), [](float v) { return !std::isfinite(v); }) -
                     x.begin());
  // -inf stops the row (not finite): check the entries before it, which
  // softmax_add has not touched, on a copy without it.
  x.pop_back();
  l = x;
  ASSERT_EQ(softmax_add(l.data(), static_cast<std::int64_t>(l.size()), span<const ImageSpan>{},
                        pdrop::ProbRounding::none, nullptr),
            -1);
  std::int64_t subnormal = 0, zero = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float want = float32_exp(x[i]);
    const auto dist = static_cast<std::int64_t>(float_bits(l[i])) -
                      static_cast<std::int64_t>(float_bits(want));
    // 2 ulp where e^x is normal (1.3 ulp from the exact value); 1 where it
    // is subnormal (one rounding of a value within that).
    const std::int64_t bound = want >= std::numeric_limits<float>::min() ? 2 : 1;
    EXPECT_LE(std::llabs(dist), bound) << "x " << x[i] << ": " << l[i] << " vs " << want;
    subnormal += want > 0.0f && want < std::numeric_limits<float>::min();
    zero += want == 0.0f;
  }
  EXPECT_GT(subnormal, 1000);  // the grid does cover the subnormal range
  EXPECT_GT(zero, 100);
}

TEST(ScoreKernel, ExpMatchesFloat32DownToSubnormals) {
  expect_exp_like_float32(&pdrop::detail::simd_portable::softmax_add, "portable");
#if PDROP_DETAIL_HAVE_AVX2
  if (pdrop::simd_target_supported(pdrop::SimdTarget::avx2))
    expect_exp_like_float32(&pdrop::detail::simd_avx2::softmax_add, "avx2");
#endif
}

// One head, d = 1, softmax scale 1: the text key's logit is 0 and the image
// tokens' are 87 to 130 below it, so their float32 probabilities are
// subnormal or 0. The drop must keep the image tokens float32 ranks first
// (ties, the tokens whose probability is 0, to the lower index), not the
// lowest indices (what a clamp of the exponent at -86 gave).
TEST(ScoreUnderflow, KeepsWhatFloat32SoftmaxRanks) {
  const std::int64_t n = 60, tokens = n + 2;
  std::vector<float> q{1.0f}, k(static_cast<std::size_t>(tokens));
  for (std::int64_t i = 0; i < n; ++i)
    k[static_cast<std::size_t>(i)] = -87.1f - 0.71f * static_cast<float>((i * 37) % n);
  k[static_cast<std::size_t>(n)] = 0.0f;          // text: the largest logit
  k[static_cast<std::size_t>(n + 1)] = -200.0f;   // the query token itself
  const std::vector<ImageSpan> spans{{0, n}};
  const std::vector<std::int64_t> pos{n + 1};
  // float32 softmax as torch computes it: e^(x - max) / sum, in float.
  std::vector<float> e(static_cast<std::size_t>(tokens));
  float sum = 0.0f;
  for (std::int64_t t = 0; t < tokens; ++t) sum += (e[t] = float32_exp(k[t] - 0.0f));
  std::vector<float> probs(e.begin(), e.begin() + n);
  for (float& p : probs) p /= sum;
  struct ResetTarget {
    ~ResetTarget() { pdrop::reset_simd_target(); }
  } reset;
  for (pdrop::SimdTarget target : {pdrop::SimdTarget::portable, pdrop::SimdTarget::avx2}) {
    if (!pdrop::simd_target_supported(target)) continue;
    SCOPED_TRACE(pdrop::to_string(target));
    pdrop::set_simd_target(target);
    for (std::int64_t keep_count : {5, 20, 30}) {
      SCOPED_TRACE(keep_count);
      pdrop::Workspace ws;
      std::vector<std::int64_t> keep(static_cast<std::size_t>(tokens));
      std::vector<float> scores(static_cast<std::size_t>(n));
      const std::vector<std::int64_t> counts{keep_count};
      pdrop::ScoreOptions options;
      options.softmax_scale = 1.0f;
      const std::int64_t kept = pdrop::rank_and_drop<float, float>(
          pdrop::hnd_view<const float>(q.data(), 1, 1, 1), pos,
          pdrop::hnd_view<const float>(k.data(), 1, tokens, 1), spans, counts, ws, keep, {},
          scores, options);
      ASSERT_EQ(kept, keep_count + 2);
      std::vector<std::int64_t> want = pdrop_test::naive_top_k(probs, keep_count);
      want.push_back(n);
      want.push_back(n + 1);
      keep.resize(static_cast<std::size_t>(kept));
      EXPECT_EQ(keep, want);
    }
  }
}

}  // namespace
