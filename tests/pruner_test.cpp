// pdrop::Pruner: a whole pyramid over a toy decoder against a naive
// recompute of every drop (attention in double, top-k by the paper's
// int(N0_i * ratio) of the ORIGINAL spans), the global budget, another
// strategy, and the misuse it refuses with the record unchanged.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "pdrop/pdrop.hpp"
#include "test_util.hpp"

namespace {

using pdrop_test::expect_invalid;

constexpr std::int64_t kHq = 4, kHkv = 2, kD = 8;

// q/k rows of token `orig` (its index in the prompt) at `layer`.
float q_of(std::int64_t orig, std::int64_t h, std::int64_t i, std::int64_t layer) {
  return static_cast<float>(std::sin(0.37 * orig + 1.1 * h + 0.5 * i + 0.21 * layer));
}
float k_of(std::int64_t orig, std::int64_t h, std::int64_t i, std::int64_t layer) {
  return static_cast<float>(std::cos(0.91 * orig + 0.6 * h + 0.3 * i * i + 0.13 * layer));
}

struct Toy {
  std::vector<std::int64_t> orig;  // original index of each current row
  std::vector<float> q, k;         // last row's q (Hq x d), k NHD (T x Hkv x d)

  void project(std::int64_t layer) {
    const auto T = static_cast<std::int64_t>(orig.size());
    q.assign(kHq * kD, 0.0f);
    k.assign(static_cast<std::size_t>(T * kHkv * kD), 0.0f);
    for (std::int64_t h = 0; h < kHq; ++h)
      for (std::int64_t i = 0; i < kD; ++i) q[h * kD + i] = q_of(orig.back(), h, i, layer);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t h = 0; h < kHkv; ++h)
        for (std::int64_t i = 0; i < kD; ++i)
          k[(t * kHkv + h) * kD + i] = k_of(orig[t], h, i, layer);
  }
  pdrop::DropInputs<float, float> inputs(const std::int64_t* last) const {
    pdrop::DropInputs<float, float> in;
    const auto T = static_cast<std::int64_t>(orig.size());
    in.q = pdrop::hnd_view<const float>(q.data(), kHq, 1, kD, 1);
    in.k = pdrop::nhd_view<const float>(k.data(), T, kHkv, kD);
    in.query_pos = {last, 1};
    return in;
  }
};

// The keep list a drop must produce: text, the last token, and per span
// (or over all spans, global) the best `counts` image tokens by the last
// row's attention, computed here in double.
std::vector<std::int64_t> expected_keep(const Toy& toy, const std::vector<pdrop::ImageSpan>& cur,
                                        const std::vector<std::int64_t>& counts, bool global) {
  const auto T = static_cast<std::int64_t>(toy.orig.size());
  const std::vector<std::int64_t> pos{T - 1};
  const auto scores = pdrop_test::naive_scores(
      kHq, kHkv, 1, kD, pos, cur, [&](std::int64_t h, std::int64_t, std::int64_t c) {
        return double(toy.q[h * kD + c]);
      },
      [&](std::int64_t g, std::int64_t t, std::int64_t c) {
        return double(toy.k[(t * kHkv + g) * kD + c]);
      });
  std::vector<float> s(scores.begin(), scores.end());
  std::vector<std::int64_t> kept;
  if (global) {
    std::vector<std::int64_t> abs;
    for (auto& sp : cur)
      for (std::int64_t t = sp.start; t < sp.end(); ++t) abs.push_back(t);
    for (std::int64_t i : pdrop_test::naive_top_k(s, counts[0])) kept.push_back(abs[i]);
  } else {
    std::int64_t off = 0;
    for (std::size_t i = 0; i < cur.size(); ++i) {
      std::vector<float> part(s.begin() + off, s.begin() + off + cur[i].length);
      for (std::int64_t j : pdrop_test::naive_top_k(part, counts[i])) kept.push_back(cur[i].start + j);
      off += cur[i].length;
    }
  }
  return pdrop_test::naive_keep_list(T, cur, kept);
}

// 20 tokens, one image of 11 at 3, 8 layers with drops before 2, 4, 6.
struct Small {
  pdrop::Schedule schedule = pdrop::Schedule::pyramid(8, 4, 0.5);
  pdrop::ImageSpan image{3, 11};
  std::vector<std::int64_t> pos = iota(20);
  pdrop::Pruner pruner{schedule, pdrop::TokenView<std::int64_t>(pos.data(), 20, 1), {image}};
  Toy toy{iota(20), {}, {}};

  static std::vector<std::int64_t> iota(std::int64_t n) {
    std::vector<std::int64_t> v(static_cast<std::size_t>(n));
    std::iota(v.begin(), v.end(), 0);
    return v;
  }
};

void run_pyramid(pdrop::Budget budget) {
  // Two images (11 and 14 tokens) in a 40-token prompt; 8 layers, drops
  // before layers 2, 4, 6 keeping 0.5, 0.25, 0.125 of the original tokens.
  const auto schedule = pdrop::Schedule::pyramid(8, 4, 0.5);
  const std::vector<pdrop::ImageSpan> spans0{{3, 11}, {20, 14}};
  std::vector<std::int32_t> pos(40);  // llama.cpp's int32 positions
  std::iota(pos.begin(), pos.end(), 0);
  pdrop::Pruner pruner(schedule, pdrop::TokenView<const std::int32_t>(pos.data(), 40, 1),
                       {spans0.data(), 2}, budget);
  Toy toy;
  toy.orig.resize(40);
  std::iota(toy.orig.begin(), toy.orig.end(), 0);
  std::vector<pdrop::ImageSpan> cur = spans0;
  int drops = 0;
  for (std::int64_t layer = 0; layer < 8; ++layer) {
    toy.project(layer);
    const std::int64_t stage = pruner.drop_before(layer);
    EXPECT_EQ(stage, layer == 2 ? 1 : layer == 4 ? 2 : layer == 6 ? 3 : 0) << layer;
    if (!stage) continue;
    const double ratio = std::pow(0.5, static_cast<double>(stage));
    std::vector<std::int64_t> counts;
    if (budget == pdrop::Budget::global)
      counts.push_back(static_cast<std::int64_t>(25 * ratio));
    else
      for (auto& s : spans0) counts.push_back(static_cast<std::int64_t>(s.length * ratio));
    const auto want = expected_keep(toy, cur, counts, budget == pdrop::Budget::global);
    const std::int64_t last = static_cast<std::int64_t>(toy.orig.size()) - 1;
    const auto keep = pruner.drop(layer, toy.inputs(&last));
    ASSERT_EQ(std::vector<std::int64_t>(keep.begin(), keep.end()), want) << "layer " << layer;
    EXPECT_EQ(pruner.tokens(), keep.size);
    // Apply it as a runtime would: compact the rows, positions re-indexed.
    std::vector<std::int64_t> next;
    for (std::int64_t i : keep) next.push_back(toy.orig[static_cast<std::size_t>(i)]);
    toy.orig = next;
    pdrop::compact_positions(pdrop::TokenView<std::int32_t>(pos.data(), 40, 1), keep,
                             pruner.position_mode());
    const auto sp = pruner.sequence().spans();
    cur.assign(sp.begin(), sp.end());
    ++drops;
  }
  EXPECT_EQ(drops, 3);
  EXPECT_EQ(pruner.sequence().drops_applied(), 3);
  EXPECT_EQ(pruner.sequence().cache_length(7), pruner.tokens());
  EXPECT_EQ(pruner.sequence().cache_length(1), 40);
  for (std::int64_t t = 0; t < pruner.tokens(); ++t) EXPECT_EQ(pos[t], t);
}

TEST(Pruner, PyramidPerSpanMatchesNaiveDrops) { run_pyramid(pdrop::Budget::per_span); }
TEST(Pruner, PyramidGlobalMatchesNaiveDrops) { run_pyramid(pdrop::Budget::global); }

TEST(Pruner, RandomStrategyKeepsItsCountsAndRecords) {
  const auto schedule =
      pdrop::Schedule::single_drop(4, 2, 0.5).with_strategy(pdrop::Strategy::random);
  const pdrop::ImageSpan image{2, 10};
  std::vector<std::int64_t> pos(16);
  std::iota(pos.begin(), pos.end(), 0);
  pdrop::Pruner pruner(schedule, pdrop::TokenView<std::int64_t>(pos.data(), 16, 1), {&image, 1});
  pdrop::DropInputs<float, float> in;
  const std::int64_t last = 15;
  in.query_pos = {&last, 1};
  in.seed = 7;
  const auto keep = pruner.drop(2, in);
  ASSERT_EQ(keep.size, 16 - 10 + 5);
  std::int64_t image_kept = 0;
  for (std::int64_t i : keep) image_kept += (i >= 2 && i < 12);
  EXPECT_EQ(image_kept, 5);
  EXPECT_EQ(pruner.sequence().spans()[0].length, 5);
}

TEST(Pruner, RefusesMisuseAndKeepsTheRecord) {
  Small c;
  const pdrop::Schedule& schedule = c.schedule;
  const pdrop::ImageSpan& image = c.image;
  std::vector<std::int64_t>& pos = c.pos;
  pdrop::Pruner& pruner = c.pruner;
  Toy& toy = c.toy;
  toy.project(0);
  const std::int64_t last = 19;
  expect_invalid([&] { pruner.drop(3, toy.inputs(&last)); },
                 "pdrop::Pruner::drop: layer (3) has no drop before it");
  expect_invalid([&] { pruner.drop(4, toy.inputs(&last)); },
                 "pdrop::Pruner::drop: layer (4) starts stage 2, but the sequence is in stage 0");
  expect_invalid([&] { pruner.drop(8, toy.inputs(&last)); }, "layer (8) must be in [0, 8)");
  EXPECT_EQ(pruner.sequence().drops_applied(), 0);
  EXPECT_EQ(pruner.tokens(), 20);
  ASSERT_EQ(pruner.drop(2, toy.inputs(&last)).size, 20 - 11 + 5);
  toy.orig.resize(static_cast<std::size_t>(pruner.tokens()));
  expect_invalid([&] { pruner.drop(2, toy.inputs(&last)); },
                 "layer (2) starts stage 1, but the sequence is in stage 1");
  EXPECT_EQ(pruner.sequence().drops_applied(), 1);
  EXPECT_THROW(pdrop::Pruner(schedule.with_strategy(pdrop::Strategy::dart),
                             pdrop::TokenView<std::int64_t>(pos.data(), 20, 1), {&image, 1},
                             pdrop::Budget::global),
               pdrop::value_error);
}

// Errors raised by the operators a Pruner calls are named after the call
// the caller made; a direct call afterwards is named after itself again.
TEST(Pruner, ErrorsNameTheCallerCalled) {
  Small c;
  const pdrop::ImageSpan& image = c.image;
  pdrop::Pruner& pruner = c.pruner;
  Toy& toy = c.toy;
  toy.project(2);
  toy.k[(5 * kHkv + 1) * kD + 2] = NAN;  // token 5, kv head 1
  const std::int64_t last = 19;
  try {
    pruner.drop(2, toy.inputs(&last));
    ADD_FAILURE() << "a NaN key was accepted";
  } catch (const pdrop::value_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("pdrop::Pruner::drop: ", 0), 0u) << e.what();
  }
  EXPECT_EQ(pruner.sequence().drops_applied(), 0);
  pdrop::Workspace ws;
  std::vector<std::int64_t> keep(20);
  const std::int64_t count = 12;  // more than the span's 11
  try {
    const auto in = toy.inputs(&last);
    pdrop::rank_and_drop(in.q, in.query_pos, in.k, {&image, 1}, {&count, 1}, ws, keep);
    ADD_FAILURE() << "a count beyond the span was accepted";
  } catch (const pdrop::value_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("pdrop::rank_and_drop: keep_counts[0] (12)", 0), 0u)
        << e.what();
  }
  try {
    pdrop::drop_by_strategy(pdrop::Strategy::pyramid_drop, 20, toy.inputs(&last), {&image, 1},
                            {&count, 1}, ws, keep);
    ADD_FAILURE() << "a count beyond the span was accepted";
  } catch (const pdrop::value_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("pdrop::drop_by_strategy: keep_counts[0] (12)", 0), 0u)
        << e.what();
  }
}

// V2Drop through a Pruner, per image and with a global budget: the same
// keep lists as v2drop_drop called directly with the record's counts.
TEST(Pruner, V2DropMatchesTheOperatorPerSpanAndGlobal) {
  std::mt19937 rng(5);
  const std::int64_t T = 30, D = 6;
  const std::vector<pdrop::ImageSpan> spans{{2, 9}, {14, 11}};
  const auto before = pdrop_test::random_vector<float>(T * D, rng);
  const auto after = pdrop_test::random_vector<float>(T * D, rng);
  std::vector<std::int64_t> pos(T);
  std::iota(pos.begin(), pos.end(), 0);
  const std::int64_t last = T - 1;
  for (const pdrop::Budget budget : {pdrop::Budget::per_span, pdrop::Budget::global}) {
    const auto schedule = pdrop::Schedule::from_lists(4, {2}, {0.4}).with_strategy(
        pdrop::Strategy::v2drop);
    pdrop::Pruner pruner(schedule, pdrop::TokenView<const std::int64_t>(pos.data(), T, 1),
                         {spans.data(), 2}, budget);
    pdrop::DropInputs<float, float> in;
    in.before = pdrop::TokenView<const float>(before.data(), T, D);
    in.after = pdrop::TokenView<const float>(after.data(), T, D);
    in.query_pos = {&last, 1};
    const auto keep = pruner.drop(2, in);
    std::vector<std::int64_t> counts;
    if (budget == pdrop::Budget::global)
      counts.push_back(static_cast<std::int64_t>(20 * 0.4));
    else
      counts = {static_cast<std::int64_t>(9 * 0.4), static_cast<std::int64_t>(11 * 0.4)};
    pdrop::Workspace ws;
    std::vector<std::int64_t> want(T);
    const std::int64_t n = pdrop::v2drop_drop(in.before, in.after, in.query_pos,
                                              {spans.data(), 2}, budget, counts, ws, want);
    want.resize(static_cast<std::size_t>(n));
    EXPECT_EQ(std::vector<std::int64_t>(keep.begin(), keep.end()), want);
  }
}

}  // namespace
