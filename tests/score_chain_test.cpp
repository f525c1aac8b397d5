// ScorePrecision's chain modes (fp16_chain, bf16_chain) against a plain
// emulation, written here, of the authors' PyTorch steps in fp16 / bf16
// (PyramidDrop's modeling_llama_pdrop.py l.1395-1401, as torch runs them on
// CPU): a whole Hq x nq x T attention map materialised as the fp16 tensors
// torch makes, one step at a time, with no pdrop kernel.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace pdrop_test::names;
using pdrop::ScorePrecision;

// R: round to the chain's type, to nearest even, and back to float.
float R(float x, ScorePrecision p) {
  return p == ScorePrecision::bf16_chain ? static_cast<float>(pdrop::bfloat16(x))
                                         : static_cast<float>(pdrop::half(x));
}

// The authors' steps on q (Hq x nq x d) and k (Hkv x T x d):
//   attn = matmul(q, repeat_kv(k)^T)            an fp16 tensor: R(q.k)
//   attn = attn / math.sqrt(d)                  another: R(attn / float(sqrt d))
//          (or attn * scale when a scale is given)
//   attn = attn + causal mask                   + 0 where it counts: exact
//   attn = softmax(attn, -1, float32).to(fp16)  R(exp(x - max) / sum)
//   avg  = attn.mean(dim=heads)                 R(float sum over heads / Hq)
//   out  = avg[:, image].mean(dim=rows)         R(float sum over rows / nq)
// q.k is the double sum over d rounded to float (a float accumulator
// without summation-order error), exp the double exp rounded to float:
// the arithmetic ScorePrecision documents.
template <class Tq, class Tk>
std::vector<float> emulate(HeadView<const Tq> q, HeadView<const Tk> k,
                           const std::vector<I64>& pos, const std::vector<ImageSpan>& spans,
                           ScorePrecision mode, float scale = 0.0f) {
  const I64 hq = q.heads, nq = q.tokens, d = q.dim, T = k.tokens, rep = q.heads / k.heads;
  auto at = [&](I64 h, I64 p, I64 t) { return (h * nq + p) * T + t; };
  std::vector<float> attn(static_cast<std::size_t>(hq * nq * T), 0.0f);
  for (I64 h = 0; h < hq; ++h)
    for (I64 p = 0; p < nq; ++p) {
      std::vector<float> x(static_cast<std::size_t>(T));
      for (I64 t = 0; t <= pos[p]; ++t) {
        double dot = 0.0;
        for (I64 c = 0; c < d; ++c)
          dot += pdrop_test::as_double(q.row(h, p)[c]) *
                 pdrop_test::as_double(k.row(h / rep, t)[c]);
        const float mm = R(static_cast<float>(dot), mode);
        x[t] = R(scale > 0.0f ? mm * scale
                              : mm / static_cast<float>(std::sqrt(static_cast<double>(d))),
                 mode);
      }
      float mx = -std::numeric_limits<float>::infinity();
      for (I64 t = 0; t <= pos[p]; ++t) mx = std::max(mx, x[t]);
      float sum = 0.0f;
      for (I64 t = 0; t <= pos[p]; ++t) {
        x[t] = static_cast<float>(std::exp(static_cast<double>(x[t] - mx)));
        sum += x[t];
      }
      for (I64 t = 0; t <= pos[p]; ++t) attn[at(h, p, t)] = R(x[t] / sum, mode);
    }
  std::vector<float> avg(static_cast<std::size_t>(nq * T));
  for (I64 p = 0; p < nq; ++p)
    for (I64 t = 0; t < T; ++t) {
      float s = 0.0f;
      for (I64 h = 0; h < hq; ++h) s += attn[at(h, p, t)];
      avg[p * T + t] = R(s / static_cast<float>(hq), mode);
    }
  std::vector<float> out;
  for (const ImageSpan& sp : spans)
    for (I64 t = sp.start; t < sp.end(); ++t) {
      float s = 0.0f;
      for (I64 p = 0; p < nq; ++p) s += avg[p * T + t];
      out.push_back(R(s / static_cast<float>(nq), mode));
    }
  return out;
}

pdrop::ScoreOptions chain(ScorePrecision mode, float scale = 0.0f) {
  pdrop::ScoreOptions o;
  o.softmax_scale = scale;
  o.precision = mode;
  return o;
}

// q and k of a case in one of three layouts: HND with spare capacity (k's
// heads `cap` rows apart, q's padded), NHD (token-major) with padded rows,
// or HND packed.
enum class Layout { hnd_capacity, nhd_padded, hnd_packed };

template <class Tq, class Tk>
struct Problem {
  pdrop_test::ScoreCase c;
  std::vector<Tq> q;
  std::vector<Tk> k;
  HeadView<const Tq> qv;
  HeadView<const Tk> kv;
  Problem(pdrop_test::ScoreCase cs, std::mt19937& rng, Layout layout, float lo, float hi)
      : c(std::move(cs)) {
    const I64 row = layout == Layout::hnd_packed ? c.d : c.d + 3;
    const I64 cap = layout == Layout::hnd_capacity ? c.tokens + 5 : c.tokens;
    q = pdrop_test::random_vector<Tq>(static_cast<std::size_t>(c.hq * c.nq * row), rng, lo, hi);
    k = pdrop_test::random_vector<Tk>(static_cast<std::size_t>(c.hkv * cap * row), rng, lo, hi);
    const bool nhd = layout == Layout::nhd_padded;
    qv = pdrop_test::padded_view<const Tq>(q.data(), c.hq, c.nq, c.d, row, nhd);
    kv = nhd ? pdrop_test::padded_view<const Tk>(k.data(), c.hkv, c.tokens, c.d, row, true)
             : HeadView<const Tk>(k.data(), c.hkv, c.tokens, c.d, cap * row, row);
  }
  Problem(const Problem&) = delete;
  Problem& operator=(const Problem&) = delete;
};

std::vector<pdrop_test::ScoreCase> chain_cases() {
  return {
      {4, 4, 1, 16, 40, {{5, 30}}, {39}},                           // MHA
      {28, 4, 1, 72, 150, {{3, 50}, {70, 60}}, {149}},              // GQA 7, two images
      {8, 2, 3, 37, 120, {{10, 40}, {60, 50}}, {119, 65, 30}},      // 3 rows, limits in images
      {28, 4, 3, 24, 90, {{0, 30}, {40, 45}}, {89, 41, 12}},        // GQA 7, 3 rows
      {2, 1, 1, 8, 20, {{4, 16}}, {19}},                            // query inside the image
  };
}

template <class T>
class ScoreChain : public ::testing::Test {};
TYPED_TEST_SUITE(ScoreChain, pdrop_test::FloatTypes, pdrop_test::FloatTypeNames);

// Exact equality, every score, both modes, three layouts, default and
// explicit scale; and the scores are values of the chain's type.
TYPED_TEST(ScoreChain, EqualsTheEmulationBitForBit) {
  using T = TypeParam;
  std::mt19937 rng(2024);
  pdrop::Workspace ws;
  int differs_from_fp32 = 0, compared = 0;
  for (const auto& c : chain_cases())
    for (Layout layout : {Layout::hnd_capacity, Layout::nhd_padded, Layout::hnd_packed})
      for (ScorePrecision mode : {ScorePrecision::fp16_chain, ScorePrecision::bf16_chain})
        for (float scale : {0.0f, 0.21f}) {
          SCOPED_TRACE(::testing::Message()
                       << "hq " << c.hq << " hkv " << c.hkv << " nq " << c.nq << " d " << c.d
                       << " layout " << static_cast<int>(layout) << " mode "
                       << static_cast<int>(mode) << " scale " << scale);
          // Wide logits (|q.k| up to ~100): softmax far from uniform.
          Problem<T, T> x(c, rng, layout, -2.5f, 2.5f);
          const I64 n = c.image_tokens();
          std::vector<float> got(static_cast<std::size_t>(n), -1.0f), fp32 = got;
          pdrop::score_image_tokens<T, T>(x.qv, c.pos, x.kv, c.spans, ws, got,
                                          chain(mode, scale));
          pdrop::ScoreOptions plain;
          plain.softmax_scale = scale;
          pdrop::score_image_tokens<T, T>(x.qv, c.pos, x.kv, c.spans, ws, fp32, plain);
          const std::vector<float> want = emulate(x.qv, x.kv, c.pos, c.spans, mode, scale);
          ASSERT_EQ(want.size(), got.size());
          for (I64 i = 0; i < n; ++i) {
            EXPECT_EQ(got[i], want[i]) << "image token " << i;
            EXPECT_EQ(R(got[i], mode), got[i]) << "image token " << i;
            differs_from_fp32 += got[i] != fp32[i];
            ++compared;
          }
        }
  // The rounding is there: most scores move off their float32 values.
  EXPECT_GT(differs_from_fp32, compared / 2);
}

// Mixed element types: float q with fp16 / bf16 K, fp16 q with float K.
TEST(ScoreChainMixed, FloatQueryOverHalfAndBf16Keys) {
  std::mt19937 rng(77);
  pdrop::Workspace ws;
  const pdrop_test::ScoreCase c{28, 4, 3, 40, 110, {{2, 40}, {50, 50}}, {109, 60, 20}};
  auto check = [&](auto q_tag, auto k_tag, ScorePrecision mode) {
    using Tq = decltype(q_tag);
    using Tk = decltype(k_tag);
    Problem<Tq, Tk> x(c, rng, Layout::hnd_capacity, -2.0f, 2.0f);
    std::vector<float> got(static_cast<std::size_t>(c.image_tokens()));
    pdrop::score_image_tokens<Tq, Tk>(x.qv, c.pos, x.kv, c.spans, ws, got, chain(mode));
    EXPECT_EQ(got, emulate(x.qv, x.kv, c.pos, c.spans, mode));
  };
  check(float{}, pdrop::half{}, ScorePrecision::fp16_chain);
  check(float{}, pdrop::bfloat16{}, ScorePrecision::fp16_chain);
  check(pdrop::half{}, float{}, ScorePrecision::bf16_chain);
}

// The default scale divides by float(sqrt(d)) as torch's CPU division
// does; an explicit scale multiplies, and 1 / float(sqrt(d)) then gives
// torch CUDA's multiplication by the reciprocal. For d = 128 the two round
// some logits differently: q = e_0 and key 1 = x e_0 with x an fp16 value
// for which they differ (found here), so image token 0's logit is one fp16
// ulp apart and its score moves. Both must equal their emulation.
TEST(ScoreChainScale, DefaultDividesExplicitMultiplies) {
  const I64 d = 128;
  const float sq = static_cast<float>(std::sqrt(128.0)), recip = 1.0f / sq;
  const ScorePrecision f16 = ScorePrecision::fp16_chain;
  float x = 0.0f;
  for (float v = 16.0f; v < 64.0f && x == 0.0f; v = std::nextafter(v, 100.0f))
    if (R(v, f16) == v && R(v / sq, f16) != R(v * recip, f16)) x = v;
  ASSERT_NE(x, 0.0f);
  const std::vector<float> key_values{0.0f, x, 30.0f, 20.0f, 10.0f, 0.0f};
  std::vector<float> q(static_cast<std::size_t>(d), 0.0f), k(6 * static_cast<std::size_t>(d), 0.0f);
  q[0] = 1.0f;
  for (std::size_t t = 0; t < key_values.size(); ++t) k[t * d] = key_values[t];
  const auto qv = pdrop::hnd_view<const float>(q.data(), 1, 1, d);
  const auto kv = pdrop::hnd_view<const float>(k.data(), 1, 6, d);
  const std::vector<ImageSpan> spans{{1, 4}};
  const std::vector<I64> pos{5};
  pdrop::Workspace ws;
  std::vector<float> div(4), mul(4);
  pdrop::score_image_tokens<float, float>(qv, pos, kv, spans, ws, div, chain(f16));
  pdrop::score_image_tokens<float, float>(qv, pos, kv, spans, ws, mul, chain(f16, recip));
  EXPECT_EQ(div, emulate(qv, kv, pos, spans, f16));
  EXPECT_EQ(mul, emulate(qv, kv, pos, spans, f16, recip));
  EXPECT_NE(div[0], mul[0]) << "x " << x;
}

// ---- the mode changes what is kept ----
//
// One head, d = 1, softmax scale 1, float q = 1: each logit is its key.
// Image tokens 1..4 have logits 8, 8.003, 5, 4; text tokens 0 and 5 (the
// query) have 0. In float32, and with only the probabilities rounded to
// fp16, token 2 (8.003) has the larger probability (e^0.003: 0.3% more, six
// fp16 ulps at 0.49); in fp16 the logit 8.003 rounds to 8 (ulp 2^-7), the
// two probabilities tie and the lower index wins: token 1.
TEST(ScoreChainKeep, FullChainKeepsAnotherTokenThanRoundedProbsOrFp32) {
  const std::vector<float> q{1.0f}, k{0.0f, 8.0f, 8.003f, 5.0f, 4.0f, 0.0f};
  const auto qv = pdrop::hnd_view<const float>(q.data(), 1, 1, 1);
  const auto kv = pdrop::hnd_view<const float>(k.data(), 1, 6, 1);
  const std::vector<ImageSpan> spans{{1, 4}};
  const std::vector<I64> pos{5}, counts{1};
  auto keep_with = [&](pdrop::ScoreOptions o) {
    pdrop::Workspace ws;
    std::vector<I64> keep(6, -1);
    const I64 n = pdrop::rank_and_drop<float, float>(qv, pos, kv, spans, counts, ws, keep,
                                                     {}, {}, o);
    keep.resize(static_cast<std::size_t>(n));
    return keep;
  };
  pdrop::ScoreOptions fp32, probs;
  fp32.softmax_scale = probs.softmax_scale = 1.0f;
  probs.round_probs = pdrop::ProbRounding::fp16;
  const std::vector<float> want =
      emulate(qv, kv, pos, spans, ScorePrecision::fp16_chain, 1.0f);
  std::vector<I64> chain_keep{0, 5};
  for (I64 i : pdrop_test::naive_top_k(want, 1)) chain_keep.push_back(spans[0].start + i);
  std::sort(chain_keep.begin(), chain_keep.end());
  EXPECT_EQ(chain_keep, (std::vector<I64>{0, 1, 5}));  // the tie, to the lower index
  EXPECT_EQ(keep_with(chain(ScorePrecision::fp16_chain, 1.0f)), chain_keep);
  EXPECT_EQ(keep_with(fp32), (std::vector<I64>{0, 2, 5}));
  EXPECT_EQ(keep_with(probs), (std::vector<I64>{0, 2, 5}));
  // drop_by_strategy hands its ScoreOptions on: the chain's pick again.
  pdrop::DropInputs<float, float> in;
  in.q = qv;
  in.k = kv;
  in.query_pos = pos;
  in.score = chain(ScorePrecision::fp16_chain, 1.0f);
  pdrop::Workspace ws;
  std::vector<I64> keep(6, -1);
  keep.resize(static_cast<std::size_t>(
      pdrop::drop_by_strategy(pdrop::Strategy::fastv, 6, in, spans, counts, ws, keep)));
  EXPECT_EQ(keep, chain_keep);
}

// Random GQA problems with several rows and images: the chain's keep list
// is the emulation's top-k (ties to the lower index), per span, for both
// chain types, serial and on threads; and somewhere it is not fp32's.
TEST(ScoreChainKeep, KeepListIsTheEmulationsTopK) {
  std::mt19937 rng(99);
  int differs = 0;
  for (ScorePrecision mode : {ScorePrecision::fp16_chain, ScorePrecision::bf16_chain})
    for (int rep = 0; rep < 6; ++rep) {
      const pdrop_test::ScoreCase c{28, 4, 2, 32, 300, {{20, 120}, {150, 130}}, {299, 145}};
      Problem<pdrop::half, pdrop::half> x(c, rng, Layout::nhd_padded, -2.0f, 2.0f);
      const std::vector<float> s = emulate(x.qv, x.kv, c.pos, c.spans, mode);
      const std::vector<I64> counts{30, 45};
      // Expected keep list: text tokens, and each span's top-k.
      std::vector<I64> want;
      for (I64 t = 0; t < c.tokens; ++t)
        if (!(t >= 20 && t < 140) && !(t >= 150 && t < 280)) want.push_back(t);
      I64 offset = 0;
      for (std::size_t j = 0; j < c.spans.size(); ++j) {
        const std::vector<float> part(s.begin() + offset,
                                      s.begin() + offset + c.spans[j].length);
        for (I64 i : pdrop_test::naive_top_k(part, counts[j])) want.push_back(c.spans[j].start + i);
        offset += c.spans[j].length;
      }
      std::sort(want.begin(), want.end());
      pdrop::Workspace ws;
      std::vector<I64> keep(300, -1), keep_par(300, -1), keep32(300, -1);
      const I64 n = pdrop::rank_and_drop<pdrop::half, pdrop::half>(
          x.qv, c.pos, x.kv, c.spans, counts, ws, keep, {}, {}, chain(mode));
      const I64 n_par = pdrop::rank_and_drop<pdrop::half, pdrop::half>(
          x.qv, c.pos, x.kv, c.spans, counts, ws, keep_par, {}, {}, chain(mode),
          pdrop_test::ThreadFor{3});
      pdrop::rank_and_drop<pdrop::half, pdrop::half>(x.qv, c.pos, x.kv, c.spans, counts, ws,
                                                     keep32);
      keep.resize(static_cast<std::size_t>(n));
      keep_par.resize(static_cast<std::size_t>(n_par));
      keep32.resize(static_cast<std::size_t>(n));
      EXPECT_EQ(keep, want) << "rep " << rep;
      EXPECT_EQ(keep_par, want) << "rep " << rep;
      differs += keep32 != keep;
    }
  EXPECT_GT(differs, 0);
}

// The chain flows through every caller that takes ScoreOptions: a global
// budget keeps the emulation's top-k over both images; drop_by_strategy
// (PyramidDrop, FastV) and a batch of two sequences keep what rank_and_drop
// keeps alone, and the batch's scores are the emulation's.
TEST(ScoreChainKeep, GlobalBudgetStrategiesAndBatchesUseTheChain) {
  std::mt19937 rng(123);
  const ScorePrecision mode = ScorePrecision::fp16_chain;
  const pdrop_test::ScoreCase a{8, 2, 1, 24, 120, {{5, 50}, {60, 40}}, {119}};
  const pdrop_test::ScoreCase b{8, 2, 2, 24, 90, {{10, 60}}, {89, 75}};
  Problem<pdrop::half, pdrop::half> xa(a, rng, Layout::hnd_packed, -2.0f, 2.0f);
  Problem<pdrop::half, pdrop::half> xb(b, rng, Layout::hnd_packed, -2.0f, 2.0f);
  const std::vector<float> sa = emulate(xa.qv, xa.kv, a.pos, a.spans, mode);
  const std::vector<float> sb = emulate(xb.qv, xb.kv, b.pos, b.spans, mode);
  pdrop::Workspace ws;

  // Global: the best 30 of the 90 image tokens of a.
  std::vector<I64> want;
  for (I64 t = 0; t < a.tokens; ++t)
    if (!(t >= 5 && t < 55) && !(t >= 60 && t < 100)) want.push_back(t);
  for (I64 i : pdrop_test::naive_top_k(sa, 30)) want.push_back(i < 50 ? 5 + i : 60 + i - 50);
  std::sort(want.begin(), want.end());
  std::vector<I64> keep(120, -1);
  keep.resize(static_cast<std::size_t>(pdrop::rank_and_drop_global<pdrop::half, pdrop::half>(
      xa.qv, a.pos, xa.kv, a.spans, 30, ws, keep, {}, {}, chain(mode))));
  EXPECT_EQ(keep, want);

  // drop_by_strategy: PyramidDrop and FastV score as rank_and_drop does.
  const std::vector<I64> counts_a{20, 10}, counts_b{25};
  std::vector<I64> alone(120, -1);
  alone.resize(static_cast<std::size_t>(pdrop::rank_and_drop<pdrop::half, pdrop::half>(
      xa.qv, a.pos, xa.kv, a.spans, counts_a, ws, alone, {}, {}, chain(mode))));
  pdrop::DropInputs<pdrop::half, pdrop::half> in;
  in.q = xa.qv;
  in.k = xa.kv;
  in.query_pos = a.pos;
  in.score = chain(mode);
  for (pdrop::Strategy st : {pdrop::Strategy::pyramid_drop, pdrop::Strategy::fastv}) {
    std::vector<I64> k2(120, -1);
    k2.resize(static_cast<std::size_t>(
        pdrop::drop_by_strategy(st, a.tokens, in, a.spans, counts_a, ws, k2)));
    EXPECT_EQ(k2, alone) << static_cast<int>(st);
  }

  // A batch of a and b.
  const std::vector<pdrop::SequenceDrop<pdrop::half, pdrop::half>> seqs{
      {xa.qv, a.pos, xa.kv, a.spans, counts_a}, {xb.qv, b.pos, xb.kv, b.spans, counts_b}};
  std::vector<I64> bkeep(210, -1), offsets(3, -1);
  std::vector<float> bscores(150, -1.0f);
  pdrop::rank_and_drop_batch<pdrop::half, pdrop::half>(seqs, ws, bkeep, offsets, {}, {},
                                                       bscores, chain(mode));
  EXPECT_EQ(std::vector<I64>(bkeep.begin(), bkeep.begin() + offsets[1]), alone);
  std::vector<float> both = sa;
  both.insert(both.end(), sb.begin(), sb.end());
  EXPECT_EQ(bscores, both);
}

// ---- threads: the parallel_for overload gives the same bits ----

TEST(ScoreChainThreads, ParallelOverloadIsBitIdentical) {
  std::mt19937 rng(4);
  for (ScorePrecision mode : {ScorePrecision::fp16_chain, ScorePrecision::bf16_chain})
    for (const auto& c : chain_cases()) {
      Problem<pdrop::bfloat16, pdrop::bfloat16> x(c, rng, Layout::hnd_capacity, -2.0f, 2.0f);
      pdrop::Workspace ws;
      std::vector<float> one(static_cast<std::size_t>(c.image_tokens()));
      pdrop::score_image_tokens<pdrop::bfloat16, pdrop::bfloat16>(x.qv, c.pos, x.kv, c.spans,
                                                                  ws, one, chain(mode));
      for (int threads : {1, 2, 3, 5}) {
        pdrop::Workspace fresh;
        std::vector<float> par(one.size(), -1.0f);
        pdrop::score_image_tokens<pdrop::bfloat16, pdrop::bfloat16>(
            x.qv, c.pos, x.kv, c.spans, fresh, par, chain(mode), pdrop_test::ThreadFor{threads});
        EXPECT_TRUE(pdrop_test::same_bits(one, par)) << threads << " threads, hq " << c.hq;
      }
    }
}

// ---- errors ----

struct Fixture {
  std::mt19937 rng{9};
  pdrop_test::ScoreCase c{4, 2, 2, 8, 20, {{4, 10}}, {19, 18}};
  pdrop_test::ScoreProblem<float> x{c, rng};
  std::vector<float> scores = std::vector<float>(10, 42.0f);
  std::vector<unsigned char> before = pdrop_test::bytes_of(scores);
  pdrop::Workspace ws;
};

TEST(ScoreChainErrors, RoundProbsAndAChainTogetherAreRejectedBeforeAnyWrite) {
  Fixture f;
  pdrop::ScoreOptions both = chain(ScorePrecision::fp16_chain);
  both.round_probs = pdrop::ProbRounding::fp16;
  pdrop_test::expect_invalid(
      [&] {
        pdrop::score_image_tokens<float, float>(f.x.qv, f.c.pos, f.x.kv, f.c.spans, f.ws,
                                                f.scores, both);
      },
      "pdrop::score_image_tokens: options.round_probs (fp16) and options.precision "
      "(fp16_chain) cannot both be set");
  EXPECT_EQ(pdrop_test::bytes_of(f.scores), f.before);
  pdrop_test::expect_invalid(
      [&] {
        pdrop::score_image_tokens<float, float>(f.x.qv, f.c.pos, f.x.kv, f.c.spans, f.ws,
                                                f.scores, both, pdrop_test::ThreadFor{2});
      },
      "options.round_probs (fp16) and options.precision (fp16_chain)");
  EXPECT_EQ(pdrop_test::bytes_of(f.scores), f.before);

  // rank_and_drop names itself, and writes neither keep list nor scores.
  both = chain(ScorePrecision::bf16_chain);
  both.round_probs = pdrop::ProbRounding::bf16;
  std::vector<I64> keep(20, -3);
  const std::vector<I64> keep_before = keep, counts{5};
  pdrop_test::expect_invalid(
      [&] {
        pdrop::rank_and_drop<float, float>(f.x.qv, f.c.pos, f.x.kv, f.c.spans, counts, f.ws,
                                           keep, {}, f.scores, both);
      },
      "pdrop::rank_and_drop: options.round_probs (bf16) and options.precision (bf16_chain) "
      "cannot both be set");
  EXPECT_EQ(keep, keep_before);
  EXPECT_EQ(pdrop_test::bytes_of(f.scores), f.before);

  pdrop::ScoreOptions junk;
  junk.precision = static_cast<ScorePrecision>(7);
  pdrop_test::expect_invalid(
      [&] {
        pdrop::score_image_tokens<float, float>(f.x.qv, f.c.pos, f.x.kv, f.c.spans, f.ws,
                                                f.scores, junk);
      },
      "pdrop::score_image_tokens: options.precision (7) is not a pdrop::ScorePrecision");
  EXPECT_EQ(pdrop_test::bytes_of(f.scores), f.before);
}

TEST(ScoreChainErrors, TensorParallelPartialsRejectTheChain) {
  Fixture f;
  std::vector<float> sums(2 * 10, 5.0f), partial(10, 5.0f);
  const std::vector<float> sums_before = sums, partial_before = partial;
  pdrop_test::expect_invalid(
      [&] {
        pdrop::score_partial_by_kv_head<float, float>(f.x.qv, f.c.pos, f.x.kv, f.c.spans,
                                                      pdrop::HeadShard{0, 2}, f.ws, sums,
                                                      chain(ScorePrecision::fp16_chain));
      },
      "pdrop::score_partial_by_kv_head: options.precision (fp16_chain) is not supported by "
      "partial scores");
  pdrop_test::expect_invalid(
      [&] {
        pdrop::score_partial<float, float>(f.x.qv, f.c.pos, f.x.kv, f.c.spans, f.ws, partial,
                                           chain(ScorePrecision::bf16_chain),
                                           pdrop_test::ThreadFor{2});
      },
      "pdrop::score_partial: options.precision (bf16_chain) is not supported");
  EXPECT_EQ(sums, sums_before);
  EXPECT_EQ(partial, partial_before);
}

// A non-finite q or k: the same error as the fp32 path (same head, row and
// key), serial and parallel, scores untouched.
TEST(ScoreChainErrors, NonFiniteInputGivesTheFp32PathsError) {
  auto message = [](Fixture& f, pdrop::ScoreOptions o, bool parallel) {
    try {
      if (parallel)
        pdrop::score_image_tokens<float, float>(f.x.qv, f.c.pos, f.x.kv, f.c.spans, f.ws,
                                                f.scores, o, pdrop_test::ThreadFor{2});
      else
        pdrop::score_image_tokens<float, float>(f.x.qv, f.c.pos, f.x.kv, f.c.spans, f.ws,
                                                f.scores, o);
    } catch (const pdrop::value_error& e) {
      const std::string m = e.what();
      return m.substr(0, m.rfind(" is "));  // up to the value (NaN's sign may differ)
    }
    return std::string("no value_error");
  };
  for (float poison : {std::nanf(""), INFINITY, -INFINITY})
    for (int where : {0, 1, 2})
      for (bool parallel : {false, true}) {
        Fixture f;
        if (where == 0) f.x.k[3 * 8 + 2] = poison;         // kv head 0, token 3
        if (where == 1) f.x.k[(20 + 7) * 8 + 5] = poison;  // kv head 1, token 7
        if (where == 2) f.x.q[(2 * 2 + 1) * 8] = poison;   // q head 2, row 1
        const std::string want = message(f, {}, parallel);
        ASSERT_NE(want.find("non-finite"), std::string::npos) << want;
        for (ScorePrecision mode : {ScorePrecision::fp16_chain, ScorePrecision::bf16_chain})
          EXPECT_EQ(message(f, chain(mode), parallel), want);
        EXPECT_EQ(pdrop_test::bytes_of(f.scores), f.before);
      }
}

// Finite q and k whose q.k (90000) is past fp16's largest value: the fp16
// chain cannot round it (torch would give inf and NaN probabilities); bf16
// can, and fp32 never rounds.
TEST(ScoreChainErrors, Fp16LogitOverflowIsAnError) {
  const std::vector<float> q{300.0f}, k{1.0f, 2.0f, 300.0f, 1.0f};
  const auto qv = pdrop::hnd_view<const float>(q.data(), 1, 1, 1);
  const auto kv = pdrop::hnd_view<const float>(k.data(), 1, 4, 1);
  const std::vector<ImageSpan> spans{{1, 2}};
  const std::vector<I64> pos{3};
  pdrop::Workspace ws;
  std::vector<float> s(2, 42.0f);
  pdrop_test::expect_invalid(
      [&] {
        pdrop::score_image_tokens<float, float>(qv, pos, kv, spans, ws, s,
                                                chain(ScorePrecision::fp16_chain));
      },
      "pdrop::score_image_tokens: the fp16_chain logit of query head 0, query row 0 and key 2 "
      "overflows (q.k = 90000)");
  EXPECT_EQ(s, (std::vector<float>{42.0f, 42.0f}));
  pdrop::score_image_tokens<float, float>(qv, pos, kv, spans, ws, s,
                                          chain(ScorePrecision::bf16_chain));
  EXPECT_EQ(s, emulate(qv, kv, pos, spans, ScorePrecision::bf16_chain));
}

}  // namespace
