// The reference host (examples/host/llama.hpp) against a plain re-run.
//
// The host's drop is the cheap one: it scores from the next layer's q/k and
// then compacts the rows it already projected. The reference here instead
// re-runs each stage's layers from scratch on the kept tokens (new norm,
// new projections at re-indexed positions) with a plainly written layer, and
// decodes over the caches that re-run built, at positions p - (N0 - n_j).
// Prefill rows, the KV caches and every decode output must agree.
#include <gtest/gtest.h>

#include "host/llama.hpp"
#include "test_util.hpp"

namespace {

using pdrop_host::Config;
using pdrop_host::Mat;
using pdrop_host::Vec;
using pdrop_host::Weights;

// Plain RoPE of one head slice at position p (rotate_half pairs).
void naive_rope(float* x, std::int64_t d, std::int64_t p, float theta) {
  for (std::int64_t i = 0; i < d / 2; ++i) {
    const float inv = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(d));
    const float a = static_cast<float>(p) * inv;
    const float x0 = x[i], x1 = x[i + d / 2];
    x[i] = x0 * std::cos(a) - x1 * std::sin(a);
    x[i + d / 2] = x1 * std::cos(a) + x0 * std::sin(a);
  }
}

Vec naive_norm(const Vec& x, const Vec& w, float eps) {
  const float ms = x.squaredNorm() / static_cast<float>(x.size());
  return (x.array() / std::sqrt(ms + eps) * w.array()).matrix();
}

struct Cache { std::vector<Vec> k, v; };

// One layer over the token rows `x` (each a D-vector) at `pos`, causal;
// appends the post-RoPE keys/values of these tokens to `cache` and attends
// over the whole cache (earlier rows first).
void naive_layer(const Config& c, const pdrop_host::Layer& L, std::vector<Vec>& x,
                 const std::vector<std::int64_t>& pos, Cache& cache) {
  const std::int64_t d = c.head_dim(), group = c.heads / c.kv_heads;
  const std::size_t base = cache.k.size();
  std::vector<Vec> qs;
  for (std::size_t t = 0; t < x.size(); ++t) {
    const Vec h = naive_norm(x[t], L.attn_norm, c.rms_eps);
    Vec q = L.wq * h, k = L.wk * h, v = L.wv * h;
    for (std::int64_t hh = 0; hh < c.heads; ++hh) naive_rope(q.data() + hh * d, d, pos[t], c.rope_theta);
    for (std::int64_t g = 0; g < c.kv_heads; ++g) naive_rope(k.data() + g * d, d, pos[t], c.rope_theta);
    qs.push_back(q);
    cache.k.push_back(k);
    cache.v.push_back(v);
  }
  for (std::size_t t = 0; t < x.size(); ++t) {
    Vec attn = Vec::Zero(c.heads * d);
    const std::size_t visible = base + t + 1;
    for (std::int64_t hh = 0; hh < c.heads; ++hh) {
      const std::int64_t g = hh / group;
      std::vector<double> w(visible);
      double m = -1e300, sum = 0;
      for (std::size_t j = 0; j < visible; ++j) {
        w[j] = qs[t].segment(hh * d, d).dot(cache.k[j].segment(g * d, d)) / std::sqrt(double(d));
        m = std::max(m, w[j]);
      }
      for (double& e : w) sum += (e = std::exp(e - m));
      for (std::size_t j = 0; j < visible; ++j)
        attn.segment(hh * d, d) += static_cast<float>(w[j] / sum) * cache.v[j].segment(g * d, d);
    }
    x[t] += L.wo * attn;
    const Vec h = naive_norm(x[t], L.ffn_norm, c.rms_eps);
    const Vec gate = L.w_gate * h, up = L.w_up * h;
    const Vec act = (gate.array() / (1.0f + (-gate.array()).exp()) * up.array()).matrix();
    x[t] += L.w_down * act;
  }
}

TEST(Host, DecodeAfterPrunedPrefillEqualsStageByStageRerun) {
  Config c;
  c.layers = 6; c.dim = 32; c.heads = 4; c.kv_heads = 2; c.ffn = 48;
  const Weights w = pdrop_host::random_weights(c, 17);
  const std::int64_t T0 = 40, steps = 3;
  const pdrop::ImageSpan image{5, 30};
  const auto schedule = pdrop::Schedule::from_lists(6, {2, 4}, {0.5, 0.2});
  std::mt19937 rng(5);
  Mat embeds(T0, c.dim), dec(steps, c.dim);
  for (Eigen::Index i = 0; i < embeds.size(); ++i) embeds.data()[i] = std::normal_distribution<float>()(rng);
  for (Eigen::Index i = 0; i < dec.size(); ++i) dec.data()[i] = std::normal_distribution<float>()(rng);

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
  std::vector<Vec> x;
  for (std::int64_t t = 0; t < T0; ++t) x.push_back(embeds.row(t).transpose());
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
    std::vector<std::int64_t> pos(x.size());
    std::iota(pos.begin(), pos.end(), 0);
    naive_layer(c, w.layers[l], x, pos, caches[l]);
  }
  ASSERT_EQ(static_cast<std::int64_t>(x.size()), pre.out.rows());
  for (std::size_t t = 0; t < x.size(); ++t) {
    const Vec want = naive_norm(x[t], w.final_norm, c.rms_eps);
    EXPECT_LE((pre.out.row(t).transpose() - want).cwiseAbs().maxCoeff(), 1e-4) << "row " << t;
  }
  // The host's caches hold the same keys and values.
  for (std::int64_t l = 0; l < 6; ++l) {
    const auto& hc = session.caches()[l];
    ASSERT_EQ(hc.len, static_cast<std::int64_t>(caches[l].k.size()) + steps) << "layer " << l;
    for (std::size_t t = 0; t < caches[l].k.size(); ++t) {
      EXPECT_LE((hc.k.row(t).transpose() - caches[l].k[t]).cwiseAbs().maxCoeff(), 1e-4);
      EXPECT_LE((hc.v.row(t).transpose() - caches[l].v[t]).cwiseAbs().maxCoeff(), 1e-4);
    }
  }
  // Decode over the re-run caches at p_orig - (N0 - n_j).
  for (std::int64_t t = 0; t < steps; ++t) {
    std::vector<Vec> tok{dec.row(t).transpose()};
    for (std::int64_t l = 0; l < 6; ++l) {
      const std::int64_t n_j = l < 2 ? 30 : l < 4 ? 15 : 6;
      const std::int64_t p = T0 + t - (30 - n_j);
      EXPECT_EQ(host_pos[t][l], p) << "step " << t << " layer " << l;
      naive_layer(c, w.layers[l], tok, {p}, caches[l]);
    }
    const Vec want = naive_norm(tok[0], w.final_norm, c.rms_eps);
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
  std::vector<Vec> x;
  for (int t = 0; t < 9; ++t) x.push_back(embeds.row(t).transpose());
  std::vector<Cache> caches(3);
  std::vector<std::int64_t> pos(9);
  std::iota(pos.begin(), pos.end(), 0);
  for (int l = 0; l < 3; ++l) naive_layer(c, w.layers[l], x, pos, caches[l]);
  for (int t = 0; t < 9; ++t)
    EXPECT_LE((pre.out.row(t).transpose() - naive_norm(x[t], w.final_norm, c.rms_eps))
                  .cwiseAbs().maxCoeff(), 1e-4);
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
