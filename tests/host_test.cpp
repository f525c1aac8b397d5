// The reference host (examples/host/llama.hpp) against a plain re-run.
//
// The host's drop is the cheap one: it scores from the next layer's q/k and
// then compacts the rows it already projected. The reference here instead
// re-runs each stage's layers from scratch on the kept tokens (new norm,
// new projections at re-indexed positions) with a plainly written layer, and
// decodes over the caches that re-run built, at positions p - (N0 - n_j).
// Prefill rows, the KV caches and every decode output must agree.
#include <gtest/gtest.h>

#include "host_util.hpp"
#include "test_util.hpp"

namespace {

using pdrop_host::Config;
using pdrop_host::Mat;
using pdrop_host::Vec;
using pdrop_host::Weights;
using pdrop_host_test::Cache;

TEST(Host, DecodeAfterPrunedPrefillEqualsStageByStageRerun) {
  Config c;
  c.layers = 6; c.dim = 32; c.heads = 4; c.kv_heads = 2; c.ffn = 48;
  const Weights w = pdrop_host::random_weights(c, 17);
  const auto sec = pdrop_host_test::plain_rope(c.head_dim());
  const std::int64_t T0 = 40, steps = 3;
  const pdrop::ImageSpan image{5, 30};
  const auto schedule = pdrop::Schedule::from_lists(6, {2, 4}, {0.5, 0.2});
  std::mt19937 rng(5);
  const Mat embeds = pdrop_host_test::normal_rows(T0, c.dim, rng);
  const Mat dec = pdrop_host_test::normal_rows(steps, c.dim, rng);

  // The host: cheap drops, then decode.
  pdrop_host::Session session(w, schedule, steps);
  const auto pre = session.prefill(embeds, image);
  ASSERT_EQ(pre.kept.size(), 2u);
  EXPECT_EQ(pre.kept[0].size(), 15u);
  EXPECT_EQ(pre.kept[1].size(), 6u);
  std::vector<Vec> host_dec;
  std::vector<std::vector<std::int64_t>> host_pos;
  for (std::int64_t t = 0; t < steps; ++t) {
    std::vector<std::int64_t> p;
    host_dec.push_back(session.decode(dec.row(t).transpose(), &p));
    host_pos.push_back(p);
  }

  // The re-run: each stage's layers from scratch on the kept tokens, with
  // the host's selections (this test is about caches and positions).
  std::vector<Vec> x = pdrop_host_test::rows_of(embeds);
  std::vector<Cache> caches(6);
  pdrop::ImageSpan span = image;
  std::int64_t drop = 0;
  for (std::int64_t l = 0; l < 6; ++l) {
    if (l == 2 || l == 4) {  // keep text + the kept image tokens, re-index
      std::vector<Vec> kept_x;
      for (std::int64_t t = 0; t < static_cast<std::int64_t>(x.size()); ++t) {
        const bool image_tok = t >= span.start && t < span.end();
        const auto& kd = pre.kept[drop];
        if (!image_tok || std::find(kd.begin(), kd.end(), t) != kd.end()) kept_x.push_back(x[t]);
      }
      span.length = static_cast<std::int64_t>(pre.kept[drop].size());
      x = kept_x;
      ++drop;
    }
    const auto pos = pdrop_host_test::plain_positions(static_cast<std::int64_t>(x.size()));
    pdrop_host_test::naive_layer(c, w.layers[l], x, pos, sec, caches[l]);
  }
  // Prefill rows; the host's caches hold the same keys and values.
  ASSERT_NO_FATAL_FAILURE(
      pdrop_host_test::expect_prefill_equals_rerun(w, pre.out, session.caches(), x, caches, steps));
  // Decode over the re-run caches at p_orig - (N0 - n_j).
  for (std::int64_t t = 0; t < steps; ++t) {
    const Vec want = pdrop_host_test::naive_decode(w, dec.row(t).transpose(), sec, caches, [&](std::int64_t l) {
      const std::int64_t n_j = l < 2 ? 30 : l < 4 ? 15 : 6;
      const std::int64_t p = T0 + t - (30 - n_j);
      EXPECT_EQ(host_pos[t][l], p) << "step " << t << " layer " << l;
      return p;
    });
    EXPECT_LE((host_dec[t] - want).cwiseAbs().maxCoeff(), 1e-4) << "step " << t;
  }
}

TEST(Host, DenseScheduleEqualsPlainForward) {
  Config c;
  c.layers = 3; c.dim = 16; c.heads = 2; c.kv_heads = 1; c.ffn = 24;
  const Weights w = pdrop_host::random_weights(c, 3);
  Mat embeds = Mat::Random(9, c.dim);
  pdrop_host::Session s(w, pdrop::Schedule::dense(3), 0);
  const auto pre = s.prefill(embeds, {2, 4});
  EXPECT_TRUE(pre.kept.empty());
  std::vector<Vec> x = pdrop_host_test::rows_of(embeds);
  std::vector<Cache> caches(3);
  const auto pos = pdrop_host_test::plain_positions(9);
  for (int l = 0; l < 3; ++l)
    pdrop_host_test::naive_layer(c, w.layers[l], x, pos, pdrop_host_test::plain_rope(c.head_dim()), caches[l]);
  // Every row, and the caches too (no decode room).
  pdrop_host_test::expect_prefill_equals_rerun(w, pre.out, s.caches(), x, caches, 0);
}

// The last prompt token gives the logits and queries the scores: an image
// span holding it is refused before anything runs, and so is decode before
// any prefill.
// A prompt that ends with an image: its last token (the logits row and the
// scores' query) is kept and takes one of the image's slots; decode before
// any prefill is refused.
TEST(Host, PromptEndingWithAnImageKeepsItsLastTokenAndDecodeNeedsAPrefill) {
  Config c;
  c.layers = 3; c.dim = 16; c.heads = 2; c.kv_heads = 1; c.ffn = 24;
  const Weights w = pdrop_host::random_weights(c, 4);
  const Mat embeds = Mat::Random(9, c.dim);
  pdrop_host::Session s(w, pdrop::Schedule::single_drop(3, 1, 0.5), 2);
  try {
    s.decode(Vec::Zero(c.dim));
    ADD_FAILURE() << "decode before prefill did not throw";
  } catch (const pdrop::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no prefill yet"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(s.caches().empty());
  const auto res = s.prefill(embeds, {4, 5});
  ASSERT_EQ(res.kept.at(0).size(), 2u);  // int(5 * 0.5)
  EXPECT_EQ(res.kept[0].back(), 8);
  EXPECT_EQ(res.stats.layer_tokens, (std::vector<std::int64_t>{9, 6, 6}));
  std::vector<std::int64_t> used;
  s.decode(Vec::Zero(c.dim), &used);
  EXPECT_EQ(used, (std::vector<std::int64_t>{9, 6, 6}));  // re-indexed: each layer's length
  EXPECT_EQ(s.sequence().cache_length(2), 7);
  EXPECT_EQ(s.prefill(embeds, {3, 5}).kept.at(0).size(), 2u);
}

// The host honours the schedule's position mode: FastV keeps original
// positions (decode at T0 + t in every layer), the same schedule forced to
// re-index decodes at each layer's own length; a strategy it cannot run is
// refused by name.
TEST(Host, FollowsTheSchedulesPositionModeAndRefusesWhatItCannotRun) {
  Config c;
  c.layers = 4; c.dim = 16; c.heads = 2; c.kv_heads = 1; c.ffn = 24;
  const Weights w = pdrop_host::random_weights(c, 8);
  const Mat embeds = Mat::Random(14, c.dim);
  const pdrop::ImageSpan image{3, 8};
  const auto fastv = pdrop::Schedule::fastv(4, 2, 0.25);
  for (const bool reindex : {false, true}) {
    const auto sched = reindex ? fastv.with_position_mode(pdrop::PositionMode::reindex) : fastv;
    pdrop_host::Session s(w, sched, 3);
    const auto res = s.prefill(embeds, image);
    ASSERT_EQ(res.positions.size(), 1u);
    // 14 - 8 + int(8 * 0.25) = 8 rows after the drop.
    const std::vector<std::int64_t> kept_pos = res.positions[0];
    ASSERT_EQ(kept_pos.size(), 8u);
    if (reindex) {
      for (std::size_t i = 0; i < 8; ++i) EXPECT_EQ(kept_pos[i], static_cast<std::int64_t>(i));
    } else {
      EXPECT_EQ(kept_pos.back(), 13);
      EXPECT_EQ(kept_pos[3], res.kept[0][0]);  // the first kept image token's own position
    }
    std::vector<std::int64_t> used;
    for (std::int64_t t = 0; t < 3; ++t) {
      s.decode(Vec::Zero(c.dim), &used);
      const std::vector<std::int64_t> want =
          reindex ? std::vector<std::int64_t>{14 + t, 14 + t, 8 + t, 8 + t}
                  : std::vector<std::int64_t>(4, 14 + t);
      EXPECT_EQ(used, want) << "reindex " << reindex << " step " << t;
    }
  }
  pdrop_host::Session r(w, pdrop::Schedule::single_drop(4, 2, 0.5).with_strategy(pdrop::Strategy::random));
  try {
    r.prefill(embeds, image);
    ADD_FAILURE() << "the random strategy was accepted";
  } catch (const pdrop::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("pyramid_drop, fastv, vtw, dart and v2drop"), std::string::npos)
        << e.what();
  }
}

}  // namespace

#ifdef PDROP_DEMO_EXE
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace {

// The demo as a user runs it, on its small setting: the pyramid it prints
// is the schedule's, the KV bytes it reports are the kept rows times the
// row size, the decode block is there, the last line has the promised form,
// the SVG is written. (No timing is asserted: times are noise on a shared
// machine.)
TEST(Demo, QuickRunPrintsThePyramidAndTheSpeedupLine) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "pdrop_demo_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string cmd = std::string("'") + PDROP_DEMO_EXE + "' --quick --layers 4 --dim 64 --svg '" +
                          (dir / "d.svg").string() + "' > '" + (dir / "out.txt").string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream f(dir / "out.txt");
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);) lines.push_back(l);
  ASSERT_FALSE(lines.empty());
  EXPECT_TRUE(std::regex_match(lines.back(), std::regex(R"(prefill speedup: measured \d+\.\d\dx, predicted \d+\.\d\dx)")))
      << lines.back();
  // --quick: 576 image tokens, pyramid of 4 stages at lambda 0.5 (here
  // over 4 layers of width 64, small enough for an unoptimised build).
  const auto s = pdrop::Schedule::pyramid(4, 4, 0.5);
  std::string want = "image tokens per stage";
  for (auto n : s.tokens_per_stage(576)) want += " " + std::to_string(n);
  bool found = false;
  for (const auto& l : lines) found |= l.find(want) != std::string::npos;
  EXPECT_TRUE(found) << "no line with '" << want << "'";
  // KV cache after prefill: layer l of stage j caches 60 text tokens plus
  // that stage's image tokens (576 for the dense run), each row K and V of
  // 4 heads x 16 dims in fp32; the demo reads its rows off the host's caches.
  const std::int64_t row_bytes = 2 * 64 * 4;
  std::int64_t rows_dense = 0, rows_pruned = 0;
  for (std::int64_t l = 0; l < 4; ++l) {
    rows_dense += 60 + 576;
    rows_pruned += 60 + s.image_tokens(576, s.stage_of_layer(l));
  }
  const std::regex kv_head(R"(KV cache after prefill \(K\+V in fp32, (\d+) bytes a row, all 4 layers\):)");
  const std::regex kv_dense(R"(  dense +(\d+) bytes in +(\d+) rows \(\d+\.\d\d MiB\))");
  const std::regex kv_pruned(R"(  pruned +(\d+) bytes in +(\d+) rows \(\d+\.\d\d MiB\), \d+\.\d% less; pdrop::kv_cache_bytes: same)");
  const std::regex dec_head(R"(decode of 16 tokens after prefill \(best of 3\):)");
  const std::regex dec_dense(R"(  dense +\d+\.\d{3} s \(\d+\.\d\d ms a token\))");
  const std::regex dec_pruned(R"(  pruned +\d+\.\d{3} s \(\d+\.\d\d ms a token\), decode speedup \d+\.\d\dx)");
  std::size_t kv_at = lines.size(), dec_at = lines.size();
  for (std::size_t i = 0; i + 2 < lines.size(); ++i) {
    if (std::regex_match(lines[i], kv_head)) kv_at = i;
    if (std::regex_match(lines[i], dec_head)) dec_at = i;
  }
  ASSERT_LT(kv_at, lines.size()) << "no KV cache block";
  ASSERT_LT(dec_at, lines.size()) << "no decode block";
  std::smatch m;
  ASSERT_TRUE(std::regex_match(lines[kv_at], m, kv_head));
  EXPECT_EQ(std::stoll(m[1]), row_bytes);
  ASSERT_TRUE(std::regex_match(lines[kv_at + 1], m, kv_dense)) << lines[kv_at + 1];
  EXPECT_EQ(std::stoll(m[1]), rows_dense * row_bytes);
  EXPECT_EQ(std::stoll(m[2]), rows_dense);
  ASSERT_TRUE(std::regex_match(lines[kv_at + 2], m, kv_pruned)) << lines[kv_at + 2];
  EXPECT_EQ(std::stoll(m[1]), rows_pruned * row_bytes);
  EXPECT_EQ(std::stoll(m[2]), rows_pruned);
  EXPECT_TRUE(std::regex_match(lines[dec_at + 1], dec_dense)) << lines[dec_at + 1];
  EXPECT_TRUE(std::regex_match(lines[dec_at + 2], dec_pruned)) << lines[dec_at + 2];
  std::ifstream svg(dir / "d.svg");
  std::stringstream ss;
  ss << svg.rdbuf();
  EXPECT_EQ(ss.str().rfind("<svg", 0), 0u);
  EXPECT_NE(ss.str().find("</svg>"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
#endif
