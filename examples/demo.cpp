// pdrop-demo: PyramidDrop on a LLaVA-NeXT-shaped prompt, dense vs pruned.
//
// A 16-layer LLaMA-style decoder at width 512 (random weights) prefills a
// prompt of 35 system tokens, 2880 image tokens (LLaVA-NeXT anyres) and 25
// question tokens, once densely and once with PyramidDrop (drops after
// layers 4/8/12, lambda 0.5: 2880 -> 1440 -> 720 -> 360 image tokens),
// same weights, same embeddings. It prints the pyramid, time per stage, how
// far the pruned run's outputs move from dense, the share of rank & drop in
// the pruned prefill, the KV cache each run leaves behind (bytes of the
// cache rows the host actually holds, checked against pdrop::kv_cache_bytes),
// the time to decode --decode tokens after each prefill (best of 3), and as
// its last line
//   prefill speedup: measured X.XXx, predicted Y.YYx
// (predicted = dense / pruned whole-sequence FLOPs from pdrop/flops.hpp).
// It writes pdrop-demo.svg: tokens per layer and time per layer, both runs.
//
//   pdrop-demo [--layers 16] [--dim 512] [--repeats 3] [--decode 16]
//              [--svg pdrop-demo.svg] [--quick] [--help] [--version]
//
// --quick is the small setting the tests run (8 layers, width 128, 4 heads,
// 576 image tokens, 1 repeat); --layers/--dim/--repeats given with it win.
// A bad flag or value: one line on stderr, exit status 1 (examples/cli.hpp).
#include <pdrop/flops.hpp>
#include <pdrop/pdrop.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cli.hpp"
#include "host/llama.hpp"

namespace {

using pdrop_host::Mat;
using pdrop_host::Vec;

struct Options {
  std::int64_t layers = 16, dim = 512, heads = 8, image = 2880, system = 35, question = 25;
  std::string svg = "pdrop-demo.svg";
  int repeats = 3;
  std::int64_t decode = 16;
};

struct Run {
  pdrop_host::PrefillResult result;
  double seconds = 0;
  std::vector<std::int64_t> cache_rows;  // per layer: KV rows held after prefill
};

// One prefill in a session with room for `decode_steps` more tokens. When
// maybe_session is given, the session (with its KV caches) is handed back
// for decoding.
Run prefill(const pdrop_host::Weights& w, const pdrop::Schedule& s, const Mat& embeds,
            pdrop::ImageSpan image, std::int64_t decode_steps = 0,
            std::unique_ptr<pdrop_host::Session>* maybe_session = nullptr) {
  auto session = std::make_unique<pdrop_host::Session>(w, s, decode_steps);
  const auto t0 = std::chrono::steady_clock::now();
  Run r{session->prefill(embeds, image), 0, {}};
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& cache : session->caches()) r.cache_rows.push_back(cache.len);
  if (maybe_session) *maybe_session = std::move(session);
  return r;
}

// Fastest of `repeats` runs of decoding every row of `tokens` (one token per
// step) on a fresh copy of a prefilled session: the copy is made outside
// the clock, so each run starts from the same caches.
double decode_seconds(const pdrop_host::Session& prefilled, const Mat& tokens, int repeats) {
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    pdrop_host::Session s = prefilled;
    const auto t0 = std::chrono::steady_clock::now();
    for (Eigen::Index i = 0; i < tokens.rows(); ++i) s.decode(tokens.row(i).transpose());
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r == 0 || t < best) best = t;
  }
  return best;
}

// Two-panel SVG: image tokens alive per layer (the pyramid) and time per
// layer, dense (grey) vs pruned (blue), each drop marked by a dashed line
// between the layers it separates; the caption says the model shape, the
// prompt, the threads and how many runs the times are the best of.
void write_svg(const std::string& path, const Run& dense, const Run& pruned,
               const pdrop::Schedule& schedule, std::int64_t text_tokens, double speedup,
               double predicted, const std::string& caption) {
  std::string drops;
  for (auto l : schedule.drop_layers()) drops += (drops.empty() ? "" : ", ") + std::to_string(l);
  const std::size_t L = dense.result.stats.layer_tokens.size();
  const double W = 760, H = 630, left = 80, right = 20, panel_h = 190, gap = 80;
  const double bw = (W - left - right) / static_cast<double>(L);
  const double max_tok = static_cast<double>(dense.result.stats.layer_tokens[0]);
  double max_t = 0;
  for (const Run* r : {&dense, &pruned})
    for (double t : r->result.stats.layer_seconds) max_t = std::max(max_t, t);
  // Axis top: the next 1, 2, 2.5 or 5 times a power of ten.
  auto nice = [](double v) {
    const double p = std::pow(10.0, std::floor(std::log10(v)));
    for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
      if (m * p >= v) return m * p;
    return 10 * p;
  };
  std::ofstream f(path);
  char buf[512];
  f << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
    << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
  std::snprintf(buf, sizeof buf,
                "<text x='%g' y='24' font-size='16' font-weight='bold'>PyramidDrop prefill: "
                "measured %.2fx faster (predicted %.2fx)</text>\n", left, speedup, predicted);
  f << buf;
  f << "<text x='" << left << "' y='44' font-size='11' fill='#444'>" << caption << "</text>\n";
  auto panel = [&](double top, const char* title, auto value, double vmax, const char* unit,
                   const char* y_label) {
    std::snprintf(buf, sizeof buf, "<text x='%g' y='%g' font-weight='bold'>%s</text>\n", left,
                  top - 8, title);
    f << buf;
    std::snprintf(buf, sizeof buf,
                  "<text x='%g' y='%g' text-anchor='middle' transform='rotate(-90 %g %g)'>%s"
                  "</text>\n",
                  18.0, top + panel_h / 2, 18.0, top + panel_h / 2, y_label);
    f << buf;
    for (int g = 0; g <= 4; ++g) {  // grid + axis labels
      const double y = top + panel_h - panel_h * g / 4.0;
      std::snprintf(buf, sizeof buf,
                    "<line x1='%g' x2='%g' y1='%g' y2='%g' stroke='#ddd'/><text x='%g' y='%g' "
                    "text-anchor='end'>%.4g%s</text>\n",
                    left, W - right, y, y, left - 6, y + 4, vmax * g / 4.0, unit);
      f << buf;
    }
    for (std::size_t l = 0; l < L; ++l) {
      const double x = left + bw * static_cast<double>(l);
      const double hd = panel_h * value(dense, l) / vmax, hp = panel_h * value(pruned, l) / vmax;
      std::snprintf(buf, sizeof buf,
                    "<rect x='%g' y='%g' width='%g' height='%g' fill='#bbb'/>"
                    "<rect x='%g' y='%g' width='%g' height='%g' fill='#2b6cb0'/>\n",
                    x + 2, top + panel_h - hd, bw / 2 - 2, hd, x + bw / 2, top + panel_h - hp,
                    bw / 2 - 2, hp);
      f << buf;
      std::snprintf(buf, sizeof buf, "<text x='%g' y='%g' text-anchor='middle'>%zu</text>\n",
                    x + bw / 2, top + panel_h + 14, l + 1);
      f << buf;
    }
    for (auto l : schedule.drop_layers()) {  // a drop after layer l: between bars l and l+1
      const double x = left + bw * static_cast<double>(l);
      std::snprintf(buf, sizeof buf,
                    "<line x1='%g' x2='%g' y1='%g' y2='%g' stroke='#c53030' "
                    "stroke-dasharray='4 3'/><text x='%g' y='%g' fill='#c53030' "
                    "font-size='11'>drop</text>\n",
                    x, x, top, top + panel_h, x + 3, top + 11);
      f << buf;
    }
  };
  auto tokens = [&](const Run& r, std::size_t l) {
    return static_cast<double>(r.result.stats.layer_tokens[l] - text_tokens);
  };
  auto millis = [&](const Run& r, std::size_t l) { return 1e3 * r.result.stats.layer_seconds[l]; };
  panel(90, "image tokens per layer", tokens, max_tok - static_cast<double>(text_tokens), "",
        "image tokens");
  panel(90 + panel_h + gap, "time per layer (ms)", millis, nice(1e3 * max_t), "",
        "milliseconds");
  const double ly = H - 14;
  std::snprintf(buf, sizeof buf,
                "<rect x='%g' y='%g' width='12' height='12' fill='#bbb'/><text x='%g' y='%g'>dense"
                "</text><rect x='%g' y='%g' width='12' height='12' fill='#2b6cb0'/><text x='%g' "
                "y='%g'>PyramidDrop (drops after layers %s)</text><text x='%g' y='%g' "
                "text-anchor='end'>decoder layer (1-based)</text>\n",
                left, ly - 10, left + 16, ly, left + 80, ly - 10, left + 96, ly, drops.c_str(),
                W - right, ly);
  f << buf << "</svg>\n";
}

// --quick: small enough for an unoptimised build (the tests run it).
Options quick_options() {
  Options q;
  q.layers = 8;
  q.dim = 128;
  q.heads = 4;
  q.image = 576;
  q.repeats = 1;
  return q;
}

int run_demo(const Options& o) {
  pdrop_host::Config c;
  c.layers = o.layers; c.dim = o.dim; c.heads = o.heads; c.kv_heads = o.heads;
  c.ffn = o.dim * 11008 / 4096;  // LLaMA-7B's FFN ratio
  const std::int64_t text = o.system + o.question, T = text + o.image;
  const pdrop::ImageSpan image{o.system, o.image};
  const auto w = pdrop_host::random_weights(c, 2025);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  Mat embeds(T, c.dim);
  for (Eigen::Index i = 0; i < embeds.size(); ++i) embeds.data()[i] = nd(rng);

  const auto pyramid = pdrop::Schedule::pyramid(c.layers, 4, 0.5);
  const auto dense_s = pdrop::Schedule::dense(c.layers);
  std::printf("model: %lld layers, width %lld, %lld heads, FFN %lld (random weights)\n",
              static_cast<long long>(c.layers), static_cast<long long>(c.dim),
              static_cast<long long>(c.heads), static_cast<long long>(c.ffn));
  std::printf("prompt: %lld tokens = %lld system + %lld image + %lld question\n",
              static_cast<long long>(T), static_cast<long long>(o.system),
              static_cast<long long>(o.image), static_cast<long long>(o.question));
  std::printf("pyramid (drops after layers");
  for (auto l : pyramid.drop_layers()) std::printf(" %lld", static_cast<long long>(l));
  std::printf("): image tokens per stage");
  for (auto n : pyramid.tokens_per_stage(o.image)) std::printf(" %lld", static_cast<long long>(n));
  std::printf("\n");

  // Warm up (page in weights, caches), then dense and pruned `repeats`
  // times each, alternating; the fastest run of each is reported (the
  // least disturbed by whatever else the machine runs).
  // The first dense and pruned runs keep their sessions for decoding.
  prefill(w, pyramid, embeds, image);
  std::unique_ptr<pdrop_host::Session> dense_session, pruned_session;
  Run dense = prefill(w, dense_s, embeds, image, o.decode, &dense_session);
  Run pruned = prefill(w, pyramid, embeds, image, o.decode, &pruned_session);
  for (int r = 1; r < o.repeats; ++r) {
    Run d = prefill(w, dense_s, embeds, image);
    Run p = prefill(w, pyramid, embeds, image);
    if (d.seconds < dense.seconds) dense = std::move(d);
    if (p.seconds < pruned.seconds) pruned = std::move(p);
  }

  std::printf("\nstage  layers  tokens(dense/pruned)  time dense   time pruned\n");
  for (std::int64_t j = 0; j < pyramid.num_stages(); ++j) {
    double td = 0, tp = 0;
    std::int64_t first = -1, last = -1;
    for (std::int64_t l = 0; l < c.layers; ++l)
      if (pyramid.stage_of_layer(l) == j) {
        td += dense.result.stats.layer_seconds[l];
        tp += pruned.result.stats.layer_seconds[l];
        if (first < 0) first = l;
        last = l;
      }
    std::printf("%5lld  %2lld-%-3lld %8lld / %-8lld   %8.3f s   %8.3f s\n",
                static_cast<long long>(j), static_cast<long long>(first + 1),
                static_cast<long long>(last + 1),
                static_cast<long long>(dense.result.stats.layer_tokens[first]),
                static_cast<long long>(pruned.result.stats.layer_tokens[first]), td, tp);
  }
  // How far the pruned run moved: last prompt row (the one that generates
  // the first token), and a logits proxy through a random LM head.
  const Vec hd = dense.result.out.bottomRows(1).transpose();
  const Vec hp = pruned.result.out.bottomRows(1).transpose();
  Mat lm = Mat::Zero(1000, c.dim);
  for (Eigen::Index i = 0; i < lm.size(); ++i) lm.data()[i] = nd(rng);
  const Vec ld = lm * hd, lp = lm * hp;
  Eigen::Index ad = 0, ap = 0;
  ld.maxCoeff(&ad);
  lp.maxCoeff(&ap);
  std::printf("\nlast hidden state: relative L2 difference %.4f, cosine %.4f\n",
              (hp - hd).norm() / hd.norm(), hp.dot(hd) / (hp.norm() * hd.norm()));
  std::printf("first-token logits proxy (random 1000-way head): top-1 %s (dense %lld, "
              "pruned %lld), relative L2 difference %.4f\n",
              ad == ap ? "same" : "differs", static_cast<long long>(ad),
              static_cast<long long>(ap), (lp - ld).norm() / ld.norm());
  std::printf("rank & drop: %.2f ms in all, %.3f%% of the pruned prefill\n",
              1e3 * pruned.result.stats.drop_seconds,
              100.0 * pruned.result.stats.drop_seconds / pruned.seconds);

  pdrop::ModelShape shape{c.layers, c.dim, c.ffn, c.heads, c.kv_heads, 0};
  const auto flops = pdrop::sequence_flops(shape, pyramid, o.image, text);
  const double predicted = flops.dense / flops.pruned, measured = dense.seconds / pruned.seconds;
  std::printf("prefill: dense %.3f s, pruned %.3f s; whole-sequence GFLOPs dense %.1f, pruned %.1f\n",
              dense.seconds, pruned.seconds, flops.dense / 1e9, flops.pruned / 1e9);

  // KV cache after prefill: the rows each layer's cache holds (K and V,
  // Hkv * d floats each), summed over the layers; pdrop::kv_cache_bytes
  // predicts the same from the schedule alone.
  const std::int64_t row_bytes =
      2 * c.kv_heads * c.head_dim() * static_cast<std::int64_t>(sizeof(float));
  auto total = [](const std::vector<std::int64_t>& v) {
    return std::accumulate(v.begin(), v.end(), std::int64_t{0});
  };
  const std::int64_t rows_d = total(dense.cache_rows), rows_p = total(pruned.cache_rows);
  const auto kv = pdrop::kv_cache_bytes(shape, pyramid, o.image, text,
                                        static_cast<std::int64_t>(sizeof(float)));
  bool kv_agrees = kv.dense == static_cast<double>(rows_d * row_bytes) &&
                   kv.pruned == static_cast<double>(rows_p * row_bytes);
  for (std::int64_t l = 0; l < c.layers; ++l)
    kv_agrees = kv_agrees &&
                kv.dense_per_layer[l] == static_cast<double>(dense.cache_rows[l] * row_bytes) &&
                kv.pruned_per_layer[l] == static_cast<double>(pruned.cache_rows[l] * row_bytes);
  std::printf("\nKV cache after prefill (K+V in fp32, %lld bytes a row, all %lld layers):\n",
              static_cast<long long>(row_bytes), static_cast<long long>(c.layers));
  std::printf("  dense  %11lld bytes in %6lld rows (%.2f MiB)\n",
              static_cast<long long>(rows_d * row_bytes), static_cast<long long>(rows_d),
              static_cast<double>(rows_d * row_bytes) / (1 << 20));
  std::printf("  pruned %11lld bytes in %6lld rows (%.2f MiB), %.1f%% less; "
              "pdrop::kv_cache_bytes: %s\n",
              static_cast<long long>(rows_p * row_bytes), static_cast<long long>(rows_p),
              static_cast<double>(rows_p * row_bytes) / (1 << 20),
              100.0 * (1.0 - static_cast<double>(rows_p) / static_cast<double>(rows_d)),
              kv_agrees ? "same" : "DIFFERENT");
  // Decode after each prefill: the same o.decode token embeddings fed one
  // by one, each step attending over the layer's (pruned) cache.
  Mat steps(o.decode, c.dim);
  for (Eigen::Index i = 0; i < steps.size(); ++i) steps.data()[i] = nd(rng);
  const double dec_d = decode_seconds(*dense_session, steps, 3);
  const double dec_p = decode_seconds(*pruned_session, steps, 3);
  std::printf("decode of %lld tokens after prefill (best of 3):\n",
              static_cast<long long>(o.decode));
  std::printf("  dense  %8.3f s (%.2f ms a token)\n", dec_d,
              1e3 * dec_d / static_cast<double>(o.decode));
  std::printf("  pruned %8.3f s (%.2f ms a token), decode speedup %.2fx\n", dec_p,
              1e3 * dec_p / static_cast<double>(o.decode), dec_d / dec_p);
  std::printf("\n");
  char caption[256];
  std::snprintf(caption, sizeof caption,
                "LLaMA-style host: %lld layers, width %lld, %lld heads, FFN %lld; %lld tokens "
                "(%lld image); %d thread%s; times: best of %d run%s",
                static_cast<long long>(c.layers), static_cast<long long>(c.dim),
                static_cast<long long>(c.heads), static_cast<long long>(c.ffn),
                static_cast<long long>(T), static_cast<long long>(o.image), Eigen::nbThreads(),
                Eigen::nbThreads() == 1 ? "" : "s", o.repeats, o.repeats == 1 ? "" : "s");
  write_svg(o.svg, dense, pruned, pyramid, text, measured, predicted, caption);
  std::printf("wrote %s\n", o.svg.c_str());
  std::printf("prefill speedup: measured %.2fx, predicted %.2fx\n", measured, predicted);
  if (!kv_agrees) {
    std::fprintf(stderr, "pdrop-demo: the host's KV cache rows differ from pdrop::kv_cache_bytes\n");
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"PyramidDrop on a LLaVA-NeXT-shaped prompt, dense vs pruned: a LLaMA-style "
               "decoder with random weights prefills it both ways and decodes after each."};
  pdrop_cli::setup(app, "pdrop-demo");
  const Options quick_o = quick_options();
  auto* layers = app.add_option("--layers", o.layers,
                                "decoder layers, " + std::to_string(quick_o.layers) + " with --quick")
                     ->check(pdrop_cli::integer_at_least(1));
  auto* dim = app.add_option("--dim", o.dim,
                             "hidden size, " + std::to_string(quick_o.dim) + " with --quick")
                  ->check(pdrop_cli::integer_at_least(1));
  auto* repeats =
      app.add_option("--repeats", o.repeats,
                     "prefills of each kind, the fastest reported; " +
                         std::to_string(quick_o.repeats) + " with --quick")
          ->check(pdrop_cli::integer_at_least(1));
  app.add_option("--decode", o.decode, "tokens decoded after each prefill")
      ->check(pdrop_cli::integer_at_least(1));
  app.add_option("--svg", o.svg, "where to write the picture (tokens and time per layer)");
  bool quick = false;
  app.add_flag("--quick", quick,
               "a small setting: " + std::to_string(quick_o.image) + " image tokens, " +
                   std::to_string(quick_o.heads) +
                   " heads, and the --quick values above unless given");
  return pdrop_cli::run(app, argc, argv, [&] {
    if (quick) {  // flags given explicitly win over --quick's values
      o.heads = quick_o.heads;
      o.image = quick_o.image;
      if (layers->count() == 0) o.layers = quick_o.layers;
      if (dim->count() == 0) o.dim = quick_o.dim;
      if (repeats->count() == 0) o.repeats = quick_o.repeats;
    }
    return run_demo(o);
  });
}
