// Property tests on random shapes (fixed seeds, so a failure reproduces):
//
//   - a pruned prefill driven by a random Schedule keeps exactly the
//     schedule's count at every drop, and its keep lists are ascending,
//     unique and inside the image span, every text token surviving in order;
//   - compaction (rows in place and out of place, positions, per-head K)
//     moves every kept row byte for byte (rows hold random bit patterns, NaN
//     payloads included) and keeps text rows in their order;
//   - the selection is exactly the top-k of the reported scores (ties: lower
//     index), also when values are quantized so that ties are everywhere;
//   - scoring never reads V, nor K after the last query position (see the
//     test's comment for what exactly that shows);
//   - scores are invariant to permuting heads consistently between q and k
//     (kv heads, and q heads within their group), and to permuting query rows
//     together with their positions;
//   - when every key is an image token, one query's scores sum to 1.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>

#include "test_util.hpp"

namespace {

using namespace pdrop_test::names;
using pdrop_test::same_bits;

I64 uniform(std::mt19937& rng, I64 lo, I64 hi) {  // [lo, hi]
  return std::uniform_int_distribution<I64>(lo, hi)(rng);
}

// Random bit patterns (any float, NaNs with payloads, infinities, denormals)
// as floats: compaction must move them without looking at them.
std::vector<float> random_bits(std::size_t n, std::mt19937& rng) {
  std::vector<float> v(n);
  for (float& x : v) {
    const std::uint32_t b = static_cast<std::uint32_t>(rng());
    std::memcpy(&x, &b, sizeof x);
  }
  return v;
}

// A random schedule: PyramidDrop's, or explicit random lists.
pdrop::Schedule random_schedule(std::mt19937& rng) {
  const I64 layers = uniform(rng, 2, 40);
  if (rng() % 2) {
    const double lambdas[] = {0.0, 0.5, 1.0, std::uniform_real_distribution<double>(0, 1)(rng)};
    return pdrop::Schedule::pyramid(layers, uniform(rng, 1, std::min<I64>(layers, 6)),
                                    lambdas[rng() % 4]);
  }
  std::vector<I64> drops;
  for (I64 l = 1; l < layers; ++l)
    if (uniform(rng, 0, 5) == 0) drops.push_back(l);
  std::vector<double> ratios;
  double r = 1.0;
  for (std::size_t i = 0; i < drops.size(); ++i) {
    r *= std::uniform_real_distribution<double>(0, 1)(rng);
    ratios.push_back(r);
  }
  return pdrop::Schedule::from_lists(layers, drops, ratios);
}

template <class T>
class PropertyTyped : public ::testing::Test {};
TYPED_TEST_SUITE(PropertyTyped, pdrop_test::FloatTypes, pdrop_test::FloatTypeNames);

// A pruned prefill, stage by stage, on random shapes and schedules. At each
// drop: rank_and_drop with the schedule's count, then the keep list applied
// to hidden rows (in place and out of place), token ids (keep_original) and
// the K cache (HND with capacity, in place).
TYPED_TEST(PropertyTyped, ScheduleCountsKeepListsAndCompactionThroughAPrefill) {
  using T = TypeParam;
  std::mt19937 rng(5150);
  pdrop::Workspace ws;  // reused across every trial and drop
  int drops_checked = 0;
  for (int trial = 0; trial < 40; ++trial) {
    const pdrop::Schedule schedule = random_schedule(rng);
    const I64 n0 = uniform(rng, 0, 200), prefix = uniform(rng, 0, 12);
    const I64 suffix = uniform(rng, prefix + n0 == 0 ? 1 : 0, 12);
    const I64 t0 = prefix + n0 + suffix;
    const I64 hkv = I64{1} << uniform(rng, 0, 2), group = I64{1} << uniform(rng, 0, 3);
    const I64 hq = hkv * group, d = uniform(rng, 1, 48), nq = uniform(rng, 1, 3);
    const I64 width = uniform(rng, 1, 9), stride = width + uniform(rng, 0, 3);
    SCOPED_TRACE(::testing::Message() << "trial " << trial << ": layers " << schedule.num_layers()
                                      << " stages " << schedule.num_stages() << " N0 " << n0
                                      << " T0 " << t0 << " Hq " << hq << " Hkv " << hkv
                                      << " d " << d << " nq " << nq);

    std::vector<T> k = pdrop_test::random_vector<T>(static_cast<std::size_t>(hkv * t0 * d), rng, -2, 2);
    std::vector<float> hidden = random_bits(static_cast<std::size_t>(t0 * stride), rng);
    std::vector<I64> ids(static_cast<std::size_t>(t0));
    std::iota(ids.begin(), ids.end(), 0);
    std::vector<I64> keep(static_cast<std::size_t>(t0));
    ImageSpan image{prefix, n0};
    I64 tokens = t0;

    for (I64 layer = 0; layer < schedule.num_layers(); ++layer) {
      const I64 stage = schedule.drop_after(layer);
      if (stage == 0) continue;
      ++drops_checked;
      const I64 n_keep = schedule.image_tokens(n0, stage);
      ASSERT_LE(n_keep, image.length);
      // The next layer's q: fresh rows; the last query is the last token.
      const std::vector<T> q = pdrop_test::random_vector<T>(static_cast<std::size_t>(hq * nq * d), rng, -2, 2);
      std::vector<I64> pos(static_cast<std::size_t>(nq), tokens - 1);
      // The other query rows are text (a query inside the image would be
      // kept over the schedule's count: query_survival_test covers that).
      for (I64 i = 1; i < nq; ++i)
        do pos[i] = uniform(rng, 0, tokens - 1);
        while (pos[i] >= image.start && pos[i] < image.end());
      const auto kv = pdrop::hnd_view<const T>(k.data(), hkv, tokens, d, t0);
      ImageSpan new_span{-1, -1};
      const I64 t_new = pdrop::rank_and_drop<T, T>(pdrop::hnd_view<const T>(q.data(), hq, nq, d), pos,
                                                   kv, {&image, 1}, {&n_keep, 1}, ws, keep,
                                                   {&new_span, 1});
      // Counts. A prompt that ends with the image has its last token, the
      // query, inside it: kept, in the budget (rank_drop.hpp).
      const I64 forced = image.length > 0 && tokens - 1 >= image.start && tokens - 1 < image.end();
      const I64 kept_n = std::max(n_keep, forced);
      ASSERT_EQ(t_new, tokens - image.length + kept_n);
      ASSERT_EQ(new_span.length, kept_n);
      // Keep list: strictly ascending, inside [0, tokens); the new span's
      // entries inside the old image span; the rest exactly the text tokens.
      for (I64 i = 0; i < t_new; ++i) {
        ASSERT_TRUE(keep[i] >= 0 && keep[i] < tokens) << keep[i];
        if (i > 0) {
          ASSERT_LT(keep[i - 1], keep[i]) << "at " << i;
        }
        const bool in_new_span = i >= new_span.start && i < new_span.end();
        const bool in_image = keep[i] >= image.start && keep[i] < image.end();
        ASSERT_EQ(in_new_span, in_image) << "keep[" << i << "] = " << keep[i];
      }
      std::vector<I64> text;
      for (I64 i = 0; i < t_new; ++i)
        if (i < new_span.start || i >= new_span.end()) text.push_back(keep[i]);
      std::vector<I64> want_text;
      for (I64 t = 0; t < tokens; ++t)
        if (t < image.start || t >= image.end()) want_text.push_back(t);
      ASSERT_EQ(text, want_text);

      // Compaction, byte for byte.
      const std::vector<float> hidden_before = hidden;
      const std::vector<I64> ids_before = ids;
      const std::vector<T> k_before = k;
      const span<const I64> kl(keep.data(), t_new);
      std::vector<float> hidden_out = random_bits(static_cast<std::size_t>(t_new * width), rng);
      pdrop::compact_rows<float>(TokenView<const float>(hidden.data(), tokens, width, stride), kl,
                                 TokenView<float>(hidden_out.data(), t_new, width));
      pdrop::compact_rows(TokenView<float>(hidden.data(), tokens, width, stride), kl);
      pdrop::compact_positions(TokenView<I64>(ids.data(), tokens, 1), kl,
                               pdrop::PositionMode::keep_original);
      pdrop::compact_heads(pdrop::hnd_view(k.data(), hkv, tokens, d, t0), kl);
      const auto row_len = static_cast<std::size_t>(width), head_len = static_cast<std::size_t>(d);
      for (I64 i = 0; i < t_new; ++i) {
        ASSERT_TRUE(same_bits(&hidden[i * stride], &hidden_before[keep[i] * stride], row_len))
            << "row " << i;
        ASSERT_TRUE(same_bits(&hidden_out[i * width], &hidden_before[keep[i] * stride], row_len))
            << "row " << i;
        ASSERT_EQ(ids[i], ids_before[keep[i]]);
        for (I64 g = 0; g < hkv; ++g)
          ASSERT_TRUE(same_bits(&k[(g * t0 + i) * d], &k_before[(g * t0 + keep[i]) * d], head_len))
              << "k head " << g << " row " << i;
      }
      // Padding of the hidden rows and K rows past the live ones: untouched.
      for (I64 t = 0; t < tokens; ++t)
        ASSERT_TRUE(same_bits(hidden.data() + t * stride + width,
                              hidden_before.data() + t * stride + width,
                              static_cast<std::size_t>(stride - width)));
      for (I64 g = 0; g < hkv; ++g)
        ASSERT_TRUE(same_bits(k.data() + (g * t0 + tokens) * d, k_before.data() + (g * t0 + tokens) * d,
                              static_cast<std::size_t>((t0 - tokens) * d)));
      // Text ids stay in their order, and are all there.
      std::vector<I64> text_ids;
      for (I64 i = 0; i < t_new; ++i)
        if (i < new_span.start || i >= new_span.end()) text_ids.push_back(ids[i]);
      std::vector<I64> want_ids;
      for (I64 t : want_text) want_ids.push_back(ids_before[t]);
      ASSERT_EQ(text_ids, want_ids);

      tokens = t_new;
      image = new_span;
    }
    // After the last drop: the schedule's count for the last stage (at
    // least the query token when the prompt ends with the image).
    const I64 last = schedule.num_stages() - 1;
    const I64 want = std::max<I64>(schedule.image_tokens(n0, last), suffix == 0 && n0 > 0);
    EXPECT_EQ(image.length, want);
    EXPECT_EQ(tokens, t0 - n0 + want);
  }
  EXPECT_GT(drops_checked, 40);
}

// Random shapes, several spans, any counts (0 and all included), HND/NHD
// with padding: the kept tokens of each span are exactly the naive top-k of
// the reported scores; the scores match the naive attention. Half the trials
// quantize q and k to a few levels, so equal scores (ties) are common.
TYPED_TEST(PropertyTyped, SelectionIsTheTopKOfTheReportedScoresTiesIncluded) {
  using T = TypeParam;
  std::mt19937 rng(8086);
  pdrop::Workspace ws;
  int ties_seen = 0;
  for (int trial = 0; trial < 120; ++trial) {
    const bool quantized = trial % 2 == 1;
    const I64 hkv = uniform(rng, 1, 4), group = uniform(rng, 1, 4), hq = hkv * group;
    const I64 d = quantized ? uniform(rng, 1, 3) : uniform(rng, 1, 40);
    const I64 tokens = uniform(rng, 1, 150), nq = uniform(rng, 1, 3);
    const bool nhd = rng() % 2;
    const I64 pad = uniform(rng, 0, 2), row = d + pad;
    std::vector<ImageSpan> spans;
    std::vector<I64> counts;
    for (I64 cursor = 0, n = uniform(rng, 0, 3); n > 0 && cursor <= tokens; --n) {
      const I64 start = uniform(rng, cursor, tokens), length = uniform(rng, 0, tokens - start);
      spans.push_back({start, length});
      counts.push_back(uniform(rng, 0, length));
      cursor = start + length;
    }
    std::vector<I64> pos(static_cast<std::size_t>(nq));
    for (I64& p : pos) p = uniform(rng, 0, tokens - 1);
    auto values = [&](std::size_t n) {
      std::vector<T> v = pdrop_test::random_vector<T>(n, rng, -2, 2);
      if (quantized)
        for (T& x : v) x = T(static_cast<float>(uniform(rng, -1, 1)));
      return v;
    };
    const std::vector<T> q = values(static_cast<std::size_t>(hq * nq * row));
    const std::vector<T> k = values(static_cast<std::size_t>(hkv * tokens * row));
    const auto qv = pdrop_test::padded_view<const T>(q.data(), hq, nq, d, row, nhd);
    const auto kv = pdrop_test::padded_view<const T>(k.data(), hkv, tokens, d, row, nhd);
    I64 n_image = 0;
    for (const ImageSpan& s : spans) n_image += s.length;
    std::vector<I64> keep(static_cast<std::size_t>(tokens));
    std::vector<float> scores(static_cast<std::size_t>(n_image));
    const I64 t_new = pdrop::rank_and_drop<T, T>(qv, pos, kv, spans, counts, ws, keep, {}, scores);

    const auto ref = pdrop_test::naive_scores_of(qv, kv, pos, spans);
    for (I64 i = 0; i < n_image; ++i) ASSERT_NEAR(scores[i], ref[i], 3e-5 * ref[i] + 1e-7) << "trial " << trial;

    std::vector<I64> kept;
    I64 off = 0;
    for (std::size_t s = 0; s < spans.size(); ++s) {
      const std::vector<float> part(scores.begin() + off, scores.begin() + off + spans[s].length);
      // Query tokens inside the span stay (rank_drop.hpp).
      for (I64 i : pdrop_test::naive_top_k(part, counts[s], pdrop_test::forced_in(pos, spans[s])))
        kept.push_back(spans[s].start + i);
      std::vector<float> sorted = part;
      std::sort(sorted.begin(), sorted.end());
      ties_seen += std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end();
      off += spans[s].length;
    }
    const auto want = pdrop_test::naive_keep_list(tokens, spans, kept);
    ASSERT_EQ(std::vector<I64>(keep.begin(), keep.begin() + t_new), want) << "trial " << trial;
  }
  EXPECT_GT(ties_seen, 20);  // the tie rule was exercised
}

// "Scoring never reads V." The API takes no V at all, so V in a buffer of
// its own cannot be read; that is a property of the signature, not of a
// test. What this test can show is the next best thing, for buffers a
// runtime really has: with q, k and v interleaved in fused QKV rows, the
// scores are bit-identical whether the v slices hold random values, the same
// values x1000, or NaN (a NaN read into the math would make the call throw
// value_error), so no byte of V is read; and K rows after the last query
// position, poisoned with NaN, leave the scores bit-identical as well, so the
// kernel stops at the causal limit. It does not prove anything about
// buffers other than those passed in (the sanitizer builds cover reads
// outside them).
TYPED_TEST(PropertyTyped, ScoresIgnoreVAndKeysAfterTheLastQuery) {
  using T = TypeParam;
  std::mt19937 rng(4004);
  pdrop::Workspace ws;
  for (int trial = 0; trial < 30; ++trial) {
    const I64 hkv = uniform(rng, 1, 4), group = uniform(rng, 1, 4), hq = hkv * group;
    const I64 d = uniform(rng, 1, 32), tokens = uniform(rng, 2, 120);
    const I64 row = (hq + 2 * hkv) * d;  // [q heads | k heads | v heads]
    std::vector<T> fused = pdrop_test::random_vector<T>(static_cast<std::size_t>(tokens * row), rng, -2, 2);
    const I64 last = uniform(rng, 0, tokens - 2);  // keys after `last` exist
    const I64 start = uniform(rng, 0, last), length = uniform(rng, 0, tokens - start);
    const std::vector<ImageSpan> spans{{start, length}};
    const std::vector<I64> pos{last};
    const auto q = pdrop::split_heads(TokenView<const T>(fused.data() + last * row, 1, hq * d, row), hq);
    const auto k = pdrop::split_heads(TokenView<const T>(fused.data() + hq * d, tokens, hkv * d, row), hkv);
    auto run = [&] {
      std::vector<float> s(static_cast<std::size_t>(length));
      pdrop::score_image_tokens<T, T>(q, pos, k, spans, ws, s);
      return pdrop_test::bytes_of(s);
    };
    const auto base = run();
    auto v_at = [&](I64 t, I64 i) -> T& { return fused[t * row + (hq + hkv) * d + i]; };
    for (I64 t = 0; t < tokens; ++t)
      for (I64 i = 0; i < hkv * d; ++i) v_at(t, i) = T(static_cast<float>(v_at(t, i)) * 1000.0f);
    EXPECT_EQ(run(), base) << "V x1000 changed the scores";
    for (I64 t = 0; t < tokens; ++t)
      for (I64 i = 0; i < hkv * d; ++i) v_at(t, i) = T(std::nanf(""));
    EXPECT_EQ(run(), base) << "NaN in V changed the scores";
    for (I64 t = last + 1; t < tokens; ++t)
      for (I64 i = 0; i < hkv * d; ++i) fused[t * row + hq * d + i] = T(std::nanf(""));
    EXPECT_EQ(run(), base) << "NaN in K after the last query changed the scores";
  }
}

// Heads permuted consistently: kv head g -> perm[g] (each q head moving
// with its group), and q heads shuffled within their group. Query rows
// shuffled with their positions. Scores equal up to the order of the float
// sums; the kept sets equal wherever no score sits within that error of the
// k-th.
TYPED_TEST(PropertyTyped, ScoresInvariantToConsistentHeadAndQueryPermutations) {
  using T = TypeParam;
  std::mt19937 rng(7007);
  pdrop::Workspace ws;
  int selections_compared = 0;
  for (int trial = 0; trial < 80; ++trial) {
    const I64 hkv = uniform(rng, 1, 6), group = uniform(rng, 1, 5), hq = hkv * group;
    const I64 d = uniform(rng, 1, 24), tokens = uniform(rng, 2, 100), nq = uniform(rng, 1, 3);
    const I64 start = uniform(rng, 0, tokens - 1), length = uniform(rng, 1, tokens - start);
    const std::vector<ImageSpan> spans{{start, length}};
    const std::vector<I64> counts{uniform(rng, 0, length)};
    std::vector<I64> pos(static_cast<std::size_t>(nq));
    for (I64& p : pos) p = uniform(rng, 0, tokens - 1);
    const std::vector<T> q = pdrop_test::random_vector<T>(static_cast<std::size_t>(hq * nq * d), rng, -2, 2);
    const std::vector<T> k = pdrop_test::random_vector<T>(static_cast<std::size_t>(hkv * tokens * d), rng, -2, 2);

    std::vector<I64> gperm(static_cast<std::size_t>(hkv)), qperm(static_cast<std::size_t>(nq));
    std::iota(gperm.begin(), gperm.end(), 0);
    std::iota(qperm.begin(), qperm.end(), 0);
    std::shuffle(gperm.begin(), gperm.end(), rng);
    std::shuffle(qperm.begin(), qperm.end(), rng);
    std::vector<T> q2(q.size()), k2(k.size());
    std::vector<I64> pos2(pos.size());
    for (I64 i = 0; i < nq; ++i) pos2[qperm[i]] = pos[i];
    for (I64 g = 0; g < hkv; ++g) {
      std::copy_n(k.begin() + g * tokens * d, tokens * d, k2.begin() + gperm[g] * tokens * d);
      std::vector<I64> within(static_cast<std::size_t>(group));
      std::iota(within.begin(), within.end(), 0);
      std::shuffle(within.begin(), within.end(), rng);
      for (I64 j = 0; j < group; ++j)
        for (I64 i = 0; i < nq; ++i)
          std::copy_n(q.begin() + ((g * group + j) * nq + i) * d, d,
                      q2.begin() + ((gperm[g] * group + within[j]) * nq + qperm[i]) * d);
    }
    auto rank = [&](const std::vector<T>& qq, const std::vector<I64>& pp, const std::vector<T>& kk,
                    std::vector<float>& s) {
      std::vector<I64> keep(static_cast<std::size_t>(tokens));
      const I64 n = pdrop::rank_and_drop<T, T>(pdrop::hnd_view<const T>(qq.data(), hq, nq, d), pp,
                                               pdrop::hnd_view<const T>(kk.data(), hkv, tokens, d),
                                               spans, counts, ws, keep, {}, s);
      keep.resize(static_cast<std::size_t>(n));
      return keep;
    };
    std::vector<float> s1(static_cast<std::size_t>(length)), s2(s1.size());
    const auto keep1 = rank(q, pos, k, s1);
    const auto keep2 = rank(q2, pos2, k2, s2);
    const double rel = 1e-5;
    for (I64 i = 0; i < length; ++i)
      ASSERT_NEAR(s1[i], s2[i], rel * std::max(s1[i], s2[i]) + 1e-12) << "trial " << trial << " token " << i;
    // Kept sets: equal unless a score is within the error of the boundary.
    std::vector<float> sorted = s1;
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    const I64 c = counts[0];
    const bool clear = c == 0 || c == length ||
                       sorted[c - 1] - sorted[c] > 4 * rel * sorted[c - 1] + 1e-12;
    if (clear) {
      EXPECT_EQ(keep1, keep2) << "trial " << trial;
      ++selections_compared;
    }
  }
  EXPECT_GT(selections_compared, 40);
}

// Every key is an image token and there is one query row: each head's
// probabilities over the image are all of its attention, so the scores sum
// to 1 (up to float rounding), whatever the shape.
TEST(Property, ScoresSumToOneWhenEveryKeyIsAnImageToken) {
  std::mt19937 rng(1001);
  pdrop::Workspace ws;
  for (int trial = 0; trial < 50; ++trial) {
    const I64 hkv = uniform(rng, 1, 4), hq = hkv * uniform(rng, 1, 4), d = uniform(rng, 1, 64);
    const I64 tokens = uniform(rng, 1, 300), last = tokens - 1;
    const auto q = pdrop_test::random_vector<float>(static_cast<std::size_t>(hq * d), rng, -3, 3);
    const auto k = pdrop_test::random_vector<float>(static_cast<std::size_t>(hkv * tokens * d), rng, -3, 3);
    const std::vector<ImageSpan> spans{{0, tokens}};
    std::vector<float> s(static_cast<std::size_t>(tokens));
    pdrop::score_image_tokens<float, float>(pdrop::hnd_view<const float>(q.data(), hq, 1, d), {&last, 1},
                                            pdrop::hnd_view<const float>(k.data(), hkv, tokens, d), spans, ws, s);
    double sum = 0;
    for (float x : s) {
      ASSERT_GE(x, 0.0f);
      sum += x;
    }
    EXPECT_NEAR(sum, 1.0, 4e-6 * static_cast<double>(tokens + hq)) << "trial " << trial;
  }
}

}  // namespace
