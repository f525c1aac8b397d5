// M-RoPE (Qwen2-VL): the position builder against a plain get_rope_index
// written here, the compaction of 3-row positions with the rows they belong
// to, the decode position, and the host's pruned M-RoPE pipeline against a
// plain stage-by-stage re-run that recomputes attention for the kept tokens
// at their original 3-row positions.
#include <gtest/gtest.h>

#include <array>

#include "golden_util.hpp"
#include "host_util.hpp"
#include "host/pipeline_case.hpp"
#include "pdrop/mrope.hpp"
#include "test_util.hpp"

namespace {

using pdrop::ImageSpan;
using pdrop::MRopeGrid;
using pdrop_host::Config;
using pdrop_host::Mat;
using pdrop_host::Vec;
using pdrop_host_test::Cache;
using pdrop_host_test::Pos3;
using I64 = std::int64_t;

// Qwen2-VL get_rope_index, plainly: every piece starts at (largest value
// so far) + 1; text counts up in all three rows, a grid adds (t, h, w)
// indices to its start (Qwen2.5-VL: the temporal index times the grid's
// t_step).
std::vector<Pos3> naive_rope_index(const std::vector<I64>& text, const std::vector<MRopeGrid>& grids) {
  std::vector<Pos3> out;
  auto next = [&] {
    I64 m = -1;
    for (const Pos3& r : out) m = std::max({m, r[0], r[1], r[2]});
    return m + 1;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const I64 st = next();
    for (I64 j = 0; j < text[i]; ++j) out.push_back({st + j, st + j, st + j});
    if (i == grids.size()) break;
    const I64 s = next();
    for (I64 ti = 0; ti < grids[i].t; ++ti)
      for (I64 hi = 0; hi < grids[i].h; ++hi)
        for (I64 wi = 0; wi < grids[i].w; ++wi) out.push_back({s + ti * grids[i].t_step, s + hi, s + wi});
  }
  return out;
}

// The layout the compaction and pipeline tests share: text 3, a 1 x 4 x 4
// image, text 2, a 2 x 2 x 3 video, text 4 (28 image tokens); `want` from
// naive_rope_index, `pos` (T x 3), `spans` and `next` from mrope_positions.
struct TwoImages {
  std::vector<I64> text{3, 2, 4};
  std::vector<MRopeGrid> grids{{1, 4, 4}, {2, 2, 3}};
  std::vector<Pos3> want = naive_rope_index(text, grids);
  I64 T = static_cast<I64>(want.size());
  std::vector<I64> pos = std::vector<I64>(static_cast<std::size_t>(T * 3));
  std::vector<ImageSpan> spans = std::vector<ImageSpan>(2);
  I64 next = pdrop::mrope_positions<I64>(text, grids, pdrop::TokenView<I64>(pos.data(), T, 3), spans);
};

TEST(MRope, PositionsMatchGetRopeIndexByHand) {
  std::vector<I64> pos(9 * 3, -1);
  std::vector<ImageSpan> spans(1);
  const std::vector<I64> text{2, 1};
  const std::vector<MRopeGrid> grids{{1, 2, 3}};
  const I64 next = pdrop::mrope_positions<I64>(text, grids, pdrop::TokenView<I64>(pos.data(), 9, 3), spans);
  EXPECT_EQ(pos, (std::vector<I64>{0, 0, 0, 1, 1, 1,                    // text
                                   2, 2, 2, 2, 2, 3, 2, 2, 4,           // image row 0
                                   2, 3, 2, 2, 3, 3, 2, 3, 4,           // image row 1
                                   5, 5, 5}));                          // text from max + 1
  EXPECT_EQ(next, 6);
  EXPECT_EQ(spans[0].start, 2);
  EXPECT_EQ(spans[0].length, 6);
  // A video of 2 frames of 2 x 2 after one text token, nothing after it.
  std::vector<std::int32_t> p32(9 * 3);
  EXPECT_EQ(pdrop::mrope_positions<std::int32_t>(std::vector<I64>{1, 0}, std::vector<MRopeGrid>{{2, 2, 2}},
                                                 pdrop::TokenView<std::int32_t>(p32.data(), 9, 3)),
            3);
  EXPECT_EQ(p32, (std::vector<std::int32_t>{0, 0, 0, 1, 1, 1, 1, 1, 2, 1, 2, 1, 1, 2, 2,
                                            2, 1, 1, 2, 1, 2, 2, 2, 1, 2, 2, 2}));
}

TEST(MRope, PositionsEqualNaiveOnRandomLayouts) {
  std::mt19937 rng(99);
  for (int trial = 0; trial < 40; ++trial) {
    const int n = std::uniform_int_distribution<int>(0, 4)(rng);
    std::vector<I64> text;
    std::vector<MRopeGrid> grids;
    for (int i = 0; i <= n; ++i) text.push_back(std::uniform_int_distribution<I64>(0, 5)(rng));
    for (int i = 0; i < n; ++i) {
      std::uniform_int_distribution<I64> g(1, 6);
      // Every third layout a video; every other one Qwen2.5-VL's time step.
      const I64 t = trial % 3 == 0 ? g(rng) : 1, h = g(rng), w = g(rng);
      grids.push_back({t, h, w, trial % 2 ? std::uniform_int_distribution<I64>(0, 4)(rng) : 1});
    }
    const auto want = naive_rope_index(text, grids);
    const I64 T = static_cast<I64>(want.size()), stride = 5;  // padded rows
    std::vector<I64> pos(static_cast<std::size_t>(std::max<I64>(T, 1) * stride), -7);
    std::vector<ImageSpan> spans(grids.size());
    const I64 next = pdrop::mrope_positions<I64>(text, grids, pdrop::TokenView<I64>(pos.data(), T, 3, stride), spans);
    I64 m = -1;
    for (I64 t = 0; t < T; ++t) {
      for (int a = 0; a < 3; ++a) EXPECT_EQ(pos[t * stride + a], want[t][a]) << "trial " << trial << " token " << t;
      EXPECT_EQ(pos[t * stride + 3], -7);
      m = std::max({m, want[t][0], want[t][1], want[t][2]});
    }
    EXPECT_EQ(next, m + 1);
    EXPECT_EQ(pdrop::mrope_next_position<I64>(pdrop::TokenView<const I64>(pos.data(), T, 3, stride)), m + 1);
    I64 at = 0;
    for (std::size_t i = 0; i < grids.size(); ++i) {
      at += text[i];
      EXPECT_EQ(spans[i].start, at);
      EXPECT_EQ(spans[i].length, grids[i].tokens());
      at += grids[i].tokens();
    }
  }
}

TEST(MRope, PositionsRejectBadInputBeforeWriting) {
  std::vector<I64> pos(30, -1);
  const auto before = pos;
  const std::vector<I64> text{2, 1};
  auto call = [&](std::vector<I64> t, std::vector<MRopeGrid> g, I64 tokens, I64 features) {
    pdrop::mrope_positions<I64>(t, g, pdrop::TokenView<I64>(pos.data(), tokens, features));
  };
  pdrop_test::expect_invalid([&] { call({2}, {{1, 2, 3}}, 9, 3); }, "text_lengths.size (1)");
  pdrop_test::expect_invalid([&] { call({2, -1}, {{1, 2, 3}}, 9, 3); }, "text_lengths[1] (-1)");
  pdrop_test::expect_invalid([&] { call({2, 1}, {{1, 0, 3}}, 9, 3); }, "grids[0] (t 1, h 0, w 3)");
  pdrop_test::expect_invalid([&] { call({2, 1}, {{1, 2, 3}}, 8, 3); }, "positions.tokens (8)");
  pdrop_test::expect_invalid([&] { call({2, 1}, {{1, 2, 3}}, 9, 1); }, "positions.features (1)");
  pdrop_test::expect_invalid([&] { call({2, 1}, {{1, 2, 3}}, 9, 5); }, "positions.features (5)");
  pdrop_test::expect_invalid([&] { call({2, 1}, {{2, 2, 3, -1}}, 15, 3); }, "grids[0].t_step (-1)");
  std::vector<std::int8_t> small(300 * 3);
  pdrop_test::expect_invalid([&] {
    pdrop::mrope_positions<std::int8_t>(std::vector<I64>{200, 100}, std::vector<MRopeGrid>{},
                                        pdrop::TokenView<std::int8_t>(small.data(), 300, 3));
  }, "text_lengths.size");
  pdrop_test::expect_invalid([&] {
    pdrop::mrope_positions<std::int8_t>(std::vector<I64>{300}, std::vector<MRopeGrid>{},
                                        pdrop::TokenView<std::int8_t>(small.data(), 300, 3));
  }, "does not fit the position type");
  EXPECT_EQ(pos, before);
}

// llama.cpp's layout: 4 rows per token, the first three as HF's, the 4th 0
// (mtmd-helper.cpp set_position_mrope_2d: "last pos dim is unused").
TEST(MRope, FourRowsAreTheThreeRowsAndZero) {
  const std::vector<I64> text{3, 2, 4};
  const std::vector<MRopeGrid> grids{{1, 4, 4}, {2, 2, 3, 2}};
  const auto want = naive_rope_index(text, grids);
  const I64 T = static_cast<I64>(want.size());
  std::vector<std::int32_t> pos(static_cast<std::size_t>(T * 4), -5);
  const I64 next = pdrop::mrope_positions<std::int32_t>(text, grids, pdrop::TokenView<std::int32_t>(pos.data(), T, 4));
  I64 m = -1;
  for (I64 t = 0; t < T; ++t) {
    for (int a = 0; a < 3; ++a) EXPECT_EQ(pos[t * 4 + a], want[t][a]) << "token " << t;
    EXPECT_EQ(pos[t * 4 + 3], 0) << "token " << t;
    m = std::max({m, want[t][0], want[t][1], want[t][2]});
  }
  EXPECT_EQ(next, m + 1);
}

// The golden cases' positions are the models' own get_rope_index output:
// Qwen2-VL's and Qwen2.5-VL's (time step int(second_per_grid_t) *
// tokens_per_second = 1 * 2) video as one grid of 2 frame groups, Qwen3-VL's
// as one grid of t = 1 per frame group with its timestamp text between, and
// Qwen3-VL's photo. Grid sizes from the spans: 336 x 448 frames are 12 x 16
// merged tokens at patch 14 (Qwen2) and 10 x 14 at patch 16 (Qwen3), the
// 640 x 427 photo 13 x 19 at patch 16.
TEST(MRope, GoldenPositionsAreEveryQwenGenerationsRopeIndex) {
  struct Want {
    const char* name;
    std::vector<MRopeGrid> grids;
  };
  const std::vector<Want> cases{
      {"qwen2_vl/video_pyramid", {{2, 12, 16}}},
      {"qwen2_5_vl/video_pyramid", {{2, 12, 16, 2}}},
      {"qwen3_vl/video_pyramid", {{1, 10, 14}, {1, 10, 14}}},
      {"qwen3_vl/pyramid_rocket", {{1, 13, 19}}},
  };
  for (const auto& c : cases) {
    const auto dir = pdrop_test::golden_case_dir(c.name);
    const auto want = pdrop_test::read_i64(dir / "positions.npy");  // (3, T)
    const auto spans = pdrop_test::read_i64(dir / "image_spans.npy");
    const I64 T = static_cast<I64>(want.size() / 3);
    ASSERT_EQ(spans.size(), 2 * c.grids.size()) << c.name;
    std::vector<I64> text;
    I64 at = 0;
    for (std::size_t i = 0; i < c.grids.size(); ++i) {
      ASSERT_EQ(spans[2 * i + 1], c.grids[i].tokens()) << c.name;
      text.push_back(spans[2 * i] - at);
      at = spans[2 * i] + spans[2 * i + 1];
    }
    text.push_back(T - at);
    std::vector<I64> pos(static_cast<std::size_t>(T * 3));
    const I64 next = pdrop::mrope_positions<I64>(text, c.grids, pdrop::TokenView<I64>(pos.data(), T, 3));
    I64 m = -1;
    for (I64 t = 0; t < T; ++t)
      for (I64 r = 0; r < 3; ++r) {
        ASSERT_EQ(pos[t * 3 + r], want[r * T + t]) << c.name << " token " << t << " row " << r;
        m = std::max(m, want[r * T + t]);
      }
    EXPECT_EQ(next, m + 1) << c.name;
  }
}

// The host fed llama.cpp's 4 rows (the 4th 0) replays a Qwen3-VL golden
// case exactly as with HF's 3: same kept tokens, same first three rows after
// every drop, the 4th still 0, bit-identical outputs (the rows are only read
// through the sections). The 3-row run matches the model (GoldenPipeline).
TEST(MRope, HostWithLlamaCppFourRowsEqualsThreeRows) {
  const auto pc = pdrop_host::load_pipeline_case(pdrop_test::golden_case_dir("qwen3_vl/video_pyramid"));
  auto pc4 = pc;
  pc4.rows = 4;
  pc4.positions.clear();
  for (std::size_t t = 0; t < pc.positions.size() / 3; ++t) {
    pc4.positions.insert(pc4.positions.end(), pc.positions.begin() + 3 * t, pc.positions.begin() + 3 * t + 3);
    pc4.positions.push_back(0);
  }
  const auto three = pdrop_host::run_pipeline_case(pc);
  const auto four = pdrop_host::run_pipeline_case(pc4);
  EXPECT_EQ(four.kept, three.kept);
  ASSERT_EQ(four.positions.size(), three.positions.size());
  for (std::size_t j = 0; j < three.positions.size(); ++j) {
    const std::size_t n = three.positions[j].size() / 3;
    ASSERT_EQ(four.positions[j].size(), 4 * n) << "drop " << j;
    for (std::size_t t = 0; t < n; ++t) {
      for (std::size_t r = 0; r < 3; ++r)
        EXPECT_EQ(four.positions[j][4 * t + r], three.positions[j][3 * t + r]) << "drop " << j;
      EXPECT_EQ(four.positions[j][4 * t + 3], 0) << "drop " << j;
    }
  }
  EXPECT_EQ(four.cache_len, three.cache_len);
  EXPECT_TRUE((four.prefill_out.array() == three.prefill_out.array()).all());
  EXPECT_TRUE((four.decode_out.array() == three.decode_out.array()).all());
}

// Positions T x 3 move with the rows, values unchanged; the decode
// position is the same before and after the drop.
TEST(MRope, CompactionKeepsOriginalValuesWithTheRows) {
  TwoImages layout;
  const auto& want = layout.want;
  const auto& spans = layout.spans;
  const I64 T = layout.T, D = 6, next = layout.next;
  std::vector<I64>& pos = layout.pos;
  std::mt19937 rng(3);
  auto hidden = pdrop_test::random_vector<float>(static_cast<std::size_t>(T * D), rng);
  std::vector<I64> kept;
  for (auto& s : spans)
    for (I64 t = s.start; t < s.end(); ++t)
      if (rng() % 3 == 0) kept.push_back(t);
  std::vector<I64> keep(static_cast<std::size_t>(T - 28 + static_cast<I64>(kept.size())));
  pdrop::build_keep_list(T, spans, kept, keep);
  const auto pos0 = pos;
  const auto hidden0 = hidden;
  std::vector<I64> pos_rows = pos;
  pdrop::compact_positions(pdrop::TokenView<I64>(pos.data(), T, 3), keep, pdrop::PositionMode::keep_original);
  pdrop::compact_rows(pdrop::TokenView<I64>(pos_rows.data(), T, 3), keep);
  pdrop::compact_rows(pdrop::TokenView<float>(hidden.data(), T, D), keep);
  for (std::size_t i = 0; i < keep.size(); ++i) {
    for (int a = 0; a < 3; ++a) {
      EXPECT_EQ(pos[i * 3 + a], want[keep[i]][a]);
      EXPECT_EQ(pos_rows[i * 3 + a], pos0[keep[i] * 3 + a]);
    }
    for (I64 f = 0; f < D; ++f) EXPECT_EQ(hidden[i * D + f], hidden0[keep[i] * D + f]);
  }
  const I64 n = static_cast<I64>(keep.size());
  EXPECT_EQ(pdrop::mrope_next_position<I64>(pdrop::TokenView<const I64>(pos.data(), n, 3)), next);
  // HF's (3, T) layout: each axis row compacted as a T x 1 view.
  std::vector<I64> axis_major(static_cast<std::size_t>(3 * T));
  for (I64 t = 0; t < T; ++t)
    for (int a = 0; a < 3; ++a) axis_major[a * T + t] = pos0[t * 3 + a];
  for (int a = 0; a < 3; ++a)
    pdrop::compact_positions(pdrop::TokenView<I64>(axis_major.data() + a * T, T, 1), keep,
                             pdrop::PositionMode::keep_original);
  for (I64 i = 0; i < n; ++i)
    for (int a = 0; a < 3; ++a) EXPECT_EQ(axis_major[a * T + i], want[keep[i]][a]);
}

// ---- the host's pruned M-RoPE pipeline against a plain re-run ----
// (the naive layer it re-runs, shared with host_test, is in host_util.hpp)

void run_pipeline_case(pdrop::Budget budget) {
  Config c;
  c.layers = 6; c.dim = 64; c.heads = 4; c.kv_heads = 2; c.ffn = 48;  // head dim 16
  const pdrop_host::Weights w = pdrop_host::random_weights(c, 23);
  const std::array<I64, 3> sec = pdrop_host::MRope::mrope_section(c.head_dim());
  ASSERT_EQ(sec, (std::array<I64, 3>{2, 3, 3}));
  const TwoImages layout;
  const auto& orig_pos = layout.want;
  const auto& pos3 = layout.pos;
  const auto& spans = layout.spans;
  const I64 T0 = layout.T, steps = 3;
  const auto schedule = pdrop::Schedule::from_lists(6, {2, 4}, {0.5, 0.25});
  std::mt19937 rng(7);
  const Mat embeds = pdrop_host_test::normal_rows(T0, c.dim, rng);
  const Mat dec = pdrop_host_test::normal_rows(steps, c.dim, rng);

  pdrop_host::Session session(w, schedule, steps);
  const auto pre = session.prefill_mrope(embeds, pdrop::TokenView<const I64>(pos3.data(), T0, 3), spans, budget);
  ASSERT_EQ(pre.kept.size(), 2u);
  std::vector<Vec> host_dec;
  for (I64 t = 0; t < steps; ++t) host_dec.push_back(session.decode(dec.row(t).transpose()));

  // The re-run: every layer recomputed from scratch for the tokens alive,
  // at their ORIGINAL 3-row positions. At a drop, the last token's
  // attention to the image tokens (double), checked against the host's
  // scores; the host's pick must be the top of those scores.
  std::vector<Vec> x = pdrop_host_test::rows_of(embeds);
  std::vector<Pos3> pos = orig_pos;
  std::vector<ImageSpan> cur = spans;
  std::vector<Cache> caches(6);
  std::size_t drop = 0;
  for (I64 l = 0; l < 6; ++l) {
    if (l == 2 || l == 4) {
      const double ratio = l == 2 ? 0.5 : 0.25;
      std::vector<Vec> qs(x.size()), ks(x.size());
      for (std::size_t t = 0; t < x.size(); ++t)
        pdrop_host_test::naive_qkv(c, w.layers[l], x[t], pos[t], sec, qs[t], ks[t]);
      const I64 last = static_cast<I64>(x.size()) - 1;
      const auto ref = pdrop_test::naive_scores(
          c.heads, c.kv_heads, 1, c.head_dim(), {last}, cur,
          [&](I64 h, I64, I64 e) { return double(qs[last][h * c.head_dim() + e]); },
          [&](I64 g, I64 t, I64 e) { return double(ks[t][g * c.head_dim() + e]); });
      const auto& got = pre.scores[drop];
      ASSERT_EQ(got.size(), ref.size());
      for (std::size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-4 * ref[i] + 1e-6) << i;
      // The pick from the host's scores, plainly: per image int(N0_i * r),
      // or int(sum N0 * r) over both.
      std::vector<I64> want;
      if (budget == pdrop::Budget::global) {
        const I64 n = static_cast<I64>(static_cast<double>(spans[0].length + spans[1].length) * ratio);
        std::vector<I64> abs_pos;
        for (auto& s : cur)
          for (I64 i = 0; i < s.length; ++i) abs_pos.push_back(s.start + i);
        for (I64 i : pdrop_test::naive_top_k(got, n)) want.push_back(abs_pos[i]);
      } else {
        I64 off = 0;
        for (std::size_t s = 0; s < cur.size(); ++s) {
          const std::vector<float> part(got.begin() + off, got.begin() + off + cur[s].length);
          const I64 n = static_cast<I64>(static_cast<double>(spans[s].length) * ratio);
          for (I64 i : pdrop_test::naive_top_k(part, n)) want.push_back(cur[s].start + i);
          off += cur[s].length;
        }
      }
      EXPECT_EQ(pre.kept[drop], want) << "drop " << drop;
      // Keep text + the picks; positions keep their original values.
      std::vector<Vec> nx;
      std::vector<Pos3> npos;
      std::vector<ImageSpan> ncur;
      std::vector<bool> kept_tok;
      for (I64 t = 0; t < static_cast<I64>(x.size()); ++t) {
        bool image_tok = false;
        for (auto& s : cur) image_tok |= t >= s.start && t < s.end();
        kept_tok.push_back(!image_tok || std::find(want.begin(), want.end(), t) != want.end());
        if (kept_tok.back()) {
          nx.push_back(x[t]);
          npos.push_back(pos[t]);
        }
      }
      for (auto& s : cur) {  // where each image's survivors now sit
        const I64 start = std::count(kept_tok.begin(), kept_tok.begin() + s.start, true);
        const I64 len = std::count(kept_tok.begin() + s.start, kept_tok.begin() + s.end(), true);
        ncur.push_back({start, len});
      }
      x = nx;
      pos = npos;
      cur = ncur;
      ++drop;
    }
    pdrop_host_test::naive_layer(c, w.layers[l], x, pos, sec, caches[l]);
  }
  // Prefill rows; the host's caches hold the same keys and values.
  ASSERT_NO_FATAL_FAILURE(
      pdrop_host_test::expect_prefill_equals_rerun(w, pre.out, session.caches(), x, caches, steps));
  // Decode at (largest prompt position + 1 + step) in all three axes.
  I64 m = -1;
  for (const Pos3& p : orig_pos) m = std::max({m, p[0], p[1], p[2]});
  for (I64 t = 0; t < steps; ++t) {
    const Vec want = pdrop_host_test::naive_decode(w, dec.row(t).transpose(), sec, caches,
                                                   [&](I64) { return m + 1 + t; });
    EXPECT_LE((host_dec[t] - want).cwiseAbs().maxCoeff(), 1e-4) << "step " << t;
  }
}

TEST(MRope, PrunedPipelinePerImageBudgetsEqualsPlainRerun) { run_pipeline_case(pdrop::Budget::per_span); }
TEST(MRope, PrunedPipelineGlobalBudgetEqualsPlainRerun) { run_pipeline_case(pdrop::Budget::global); }

// Text only, no drop: M-RoPE with (p, p, p) is plain RoPE at p.
// The case: 5 text tokens, then a 1 x 4 x 6 grid and nothing after
// it, one drop after layer 2 keeping 25%. The grid's largest value is 10
// (width index 5 + 5), so every layer decodes its first token at 11 in all
// three rows, whichever tokens the drop keeps (here: seeds 0..11).
TEST(MRope, HostPromptEndingWithAGridDecodesAfterItsLargestPosition) {
  Config c;
  c.layers = 4; c.dim = 32; c.heads = 2; c.kv_heads = 1; c.ffn = 24;
  const std::vector<I64> text{5, 0};
  const std::vector<MRopeGrid> grids{{1, 4, 6}};
  std::vector<I64> pos(29 * 3);
  std::vector<ImageSpan> spans(1);
  ASSERT_EQ(pdrop::mrope_positions<I64>(text, grids, pdrop::TokenView<I64>(pos.data(), 29, 3), spans), 11);
  for (unsigned seed = 0; seed < 12; ++seed) {
    const pdrop_host::Weights w = pdrop_host::random_weights(c, seed);
    std::mt19937 rng(seed);
    const Mat embeds = pdrop_host_test::normal_rows(29, c.dim, rng);
    pdrop_host::Session session(w, pdrop::Schedule::single_drop(4, 2, 0.25), 2);
    const auto res = session.prefill_mrope(embeds, pdrop::TokenView<const I64>(pos.data(), 29, 3), spans);
    ASSERT_EQ(res.kept.at(0).size(), 6u);  // int(24 * 0.25), the last token among them
    EXPECT_EQ(res.kept[0].back(), 28);
    std::vector<I64> used;
    session.decode(Vec::Zero(c.dim), &used);
    EXPECT_EQ(used, (std::vector<I64>{11, 11, 11, 11})) << "seed " << seed;
    session.decode(Vec::Zero(c.dim), &used);
    EXPECT_EQ(used, (std::vector<I64>{12, 12, 12, 12})) << "seed " << seed;
  }
}

TEST(MRope, EqualAxesAreThePlainRoPEPath) {
  Config c;
  c.layers = 2; c.dim = 32; c.heads = 2; c.kv_heads = 1; c.ffn = 24;
  const pdrop_host::Weights w = pdrop_host::random_weights(c, 4);
  Mat embeds = Mat::Random(11, c.dim);
  std::vector<I64> pos3;
  for (I64 t = 0; t < 11; ++t) pos3.insert(pos3.end(), {t, t, t});
  pdrop_host::Session a(w, pdrop::Schedule::dense(2), 2), b(w, pdrop::Schedule::dense(2), 2);
  const auto ra = a.prefill(embeds, {11, 0});
  const auto rb = b.prefill_mrope(embeds, pdrop::TokenView<const I64>(pos3.data(), 11, 3), {});
  EXPECT_LE((ra.out - rb.out).cwiseAbs().maxCoeff(), 1e-6f);
  const Vec e = Vec::Random(c.dim);
  EXPECT_LE((a.decode(e) - b.decode(e)).cwiseAbs().maxCoeff(), 1e-6f);
}

}  // namespace
