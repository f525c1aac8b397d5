// examples/host/llama.hpp - a LLaMA-style decoder that prefills with pdrop.
//
// The reference host: small enough to read in one sitting, faithful to the
// language models of HF LLaMA, LLaVA / LLaVA-NeXT (LlamaModel) and Qwen2-VL /
// Qwen2.5-VL / Qwen3-VL (RMSNorm, rotate_half RoPE or M-RoPE sections,
// contiguous or interleaved, GQA attention with optional q/k/v biases and
// optional q/k RMSNorm per head (Qwen3), a per-layer KV cache, SwiGLU MLP,
// final norm; weights in PyTorch layout, y = x @ W.T + b; Qwen3-VL's
// DeepStack levels added to the visual tokens after the first layers), and
// calling only
// pdrop's public API between layers. tests/golden holds cases made by those
// transformers classes that it replays token for token.
//
// The integration is the cheap one. At a drop point (after 1-based layer l)
// the next layer computes its norm and q/k/v projections over all T tokens
// anyway. pdrop scores from those (RoPE'd at the current positions: only a
// rotated copy of K and of the last q row is made), then the projected rows
// are compacted together with the hidden states and the layer goes on with
// T_new rows at positions re-indexed from the prompt's first (or kept, as
// the schedule's position mode says). The projections are rotated only
// after compaction, so no row is ever rotated at a position it no longer
// has (an engine that compacts rows it already rotated must re-rotate them:
// pdrop::rerotate_heads, docs/integration.md). No projection is run twice,
// unlike the reference code, which re-runs norm + q/k/v over all tokens
// only to score.
//
// Strategies: the schedule's (pdrop/strategies.hpp). PyramidDrop scores
// with this layer's q/k; FastV with the q/k of the layer that just ran
// (its cache and its last query row); VTW withdraws every image token; DART
// reads the keys of the layer that just ran and compares final-norm hidden
// states; V2Drop compares the hidden states entering and leaving the layer
// that just ran (a copy of its input is kept only before a drop).
//
// Every count, span, cache length and decode position comes from a
// pdrop::SequenceState fed the keep lists the drops applied
// (pdrop/sequence.hpp): decode step t at a layer whose prompt was
// re-indexed takes base + T_l + t; with original positions (M-RoPE, FastV,
// VTW, DART) max(prompt positions before any drop) + 1 + t in every row,
// Qwen2-VL's rope_deltas rule. Each layer attends over its own cache, whose
// length the record also gives. A query token (the last prompt token)
// inside an image is kept by every drop, so a prompt may end with an image.
//
// M-RoPE (Qwen2-VL, prefill_mrope): three position rows per token, sections
// of the rotary pairs driven by each; drops keep the original values
// (compact_positions keep_original), several images are budgeted per span
// or globally. Qwen3-VL interleaves the sections (pdrop::MRopeLayout).
//
// DeepStack (Qwen3-VL, prefill's `deepstack`): level j (one row per visual
// token) is added to the visual tokens after layer j (HF
// Qwen3VLTextModel._deepstack_process, pdrop::deepstack_add); a drop
// compacts the levels still to come with the visual tokens it keeps
// (pdrop::compact_deepstack).
#ifndef PDROP_EXAMPLES_HOST_LLAMA_HPP
#define PDROP_EXAMPLES_HOST_LLAMA_HPP

#include <pdrop/deepstack.hpp>
#include <pdrop/mrope.hpp>
#include <pdrop/pdrop.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace pdrop_host {

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vec = Eigen::VectorXf;

struct Config {
  std::int64_t layers = 0, dim = 0, heads = 0, kv_heads = 0, ffn = 0;
  float rope_theta = 10000.0f;
  float rms_eps = 1e-6f;
  std::int64_t explicit_head_dim = 0;       // 0: dim / heads
  bool qkv_bias = false;                    // Qwen2: q/k/v projections have biases
  std::array<std::int64_t, 3> mrope_section{};  // {}: MRope::mrope_section(d)
  pdrop::MRopeLayout mrope_layout = pdrop::MRopeLayout::sections;  // Qwen3-VL: interleaved
  std::int64_t head_dim() const { return explicit_head_dim ? explicit_head_dim : dim / heads; }
};

struct Layer {
  Vec attn_norm, ffn_norm;            // (D)
  Mat wq, wk, wv;                     // (Hq*d, D), (Hkv*d, D), (Hkv*d, D)
  Vec bq, bk, bv;                     // (Hq*d), (Hkv*d), (Hkv*d); empty: no bias
  Mat wo;                             // (D, Hq*d)
  Mat w_gate, w_up;                   // (F, D)
  Mat w_down;                         // (D, F)
  Vec q_norm, k_norm;                 // (d) RMSNorm weights over each head (Qwen3); empty: none
};

struct Weights {
  Config cfg;
  std::vector<Layer> layers;
  Vec final_norm;                     // (D)
};

// Random weights with a sensible scale (for the demo and tests).
inline Weights random_weights(const Config& c, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto mat = [&](std::int64_t r, std::int64_t k) {
    Mat m(r, k);
    const float s = 1.0f / std::sqrt(static_cast<float>(k));
    for (std::int64_t i = 0; i < m.size(); ++i) m.data()[i] = nd(rng) * s;
    return m;
  };
  auto norm = [&] {
    Vec v(c.dim);
    for (std::int64_t i = 0; i < c.dim; ++i) v[i] = 1.0f + 0.1f * nd(rng);
    return v;
  };
  auto bias = [&](std::int64_t n) {
    Vec v;
    if (c.qkv_bias) {
      v.resize(n);
      for (std::int64_t i = 0; i < n; ++i) v[i] = 0.1f * nd(rng);
    }
    return v;
  };
  const std::int64_t d = c.head_dim();
  Weights w{c, {}, {}};
  for (std::int64_t l = 0; l < c.layers; ++l) {
    Layer L{norm(), norm(), mat(c.heads * d, c.dim), mat(c.kv_heads * d, c.dim),
            mat(c.kv_heads * d, c.dim), {}, {}, {}, mat(c.dim, c.heads * d),
            mat(c.ffn, c.dim), mat(c.ffn, c.dim), mat(c.dim, c.ffn), {}, {}};
    L.bq = bias(c.heads * d);
    L.bk = bias(c.kv_heads * d);
    L.bv = bias(c.kv_heads * d);
    w.layers.push_back(std::move(L));
  }
  w.final_norm = norm();
  return w;
}

// out = x * rsqrt(mean(x^2) + eps) * w, row by row.
template <class In, class Out>
void rms_norm(const In& x, const Vec& w, float eps, Out&& out) {
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    const float inv = 1.0f / std::sqrt(x.row(i).squaredNorm() / static_cast<float>(x.cols()) + eps);
    out.row(i) = (x.row(i).array() * inv * w.transpose().array()).matrix();
  }
}

// theta^(-2i/d) for i < d/2, in float32 as HF computes it.
inline std::vector<float> rope_inv_freq(std::int64_t d, float theta) {
  std::vector<float> inv_freq(static_cast<std::size_t>(d / 2));
  for (std::int64_t i = 0; i < d / 2; ++i)
    inv_freq[i] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(d));
  return inv_freq;
}

// HF rotate_half RoPE tables: cos/sin of pos * theta^(-2i/d) for i < d/2,
// angles in float32 as HF computes them, one row per position.
struct RopeTable {
  std::int64_t half = 0;
  std::vector<float> cos, sin;  // (positions, half)

  RopeTable(std::int64_t d, float theta, std::int64_t positions) : half(d / 2) {
    const std::vector<float> inv_freq = rope_inv_freq(d, theta);
    cos.resize(static_cast<std::size_t>(positions * half));
    sin.resize(cos.size());
    for (std::int64_t p = 0; p < positions; ++p)
      for (std::int64_t i = 0; i < half; ++i) {
        const float a = static_cast<float>(p) * inv_freq[i];
        cos[p * half + i] = std::cos(a);
        sin[p * half + i] = std::sin(a);
      }
  }
  std::int64_t positions() const { return half ? static_cast<std::int64_t>(cos.size()) / half : 0; }
};

// The rotation both RoPE flavours share: row r of x holds `heads` heads of
// dim d = 2 * half; in each, pair i (x[i], x[i + half]) turns by the angle
// whose cosine and sine are c[i] and s[i] (rotate_half), in place.
template <class Rows>
void rotate_pairs(Rows&& x, Eigen::Index r, std::int64_t heads, std::int64_t half,
                  const float* c, const float* s) {
  const std::int64_t d = 2 * half;
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t i = 0; i < half; ++i) {
      float& x0 = x(r, h * d + i);
      float& x1 = x(r, h * d + i + half);
      const float a = x0, b = x1;
      x0 = a * c[i] - b * s[i];
      x1 = b * c[i] + a * s[i];
    }
}

// RoPE in place on rows of `heads` heads of dim d = 2 * table.half: pairs
// (x[i], x[i + d/2]) of row r rotated by the angles of position pos[r].
template <class Rows>
void rope(Rows&& x, const std::int64_t* pos, std::int64_t heads, const RopeTable& table) {
  const std::int64_t half = table.half;
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    if (pos[r] < 0 || pos[r] >= table.positions())
      throw pdrop::invalid_argument("rope: position outside the table");
    rotate_pairs(x, r, heads, half, &table.cos[pos[r] * half], &table.sin[pos[r] * half]);
  }
}

// Qwen2-VL multimodal RoPE (mrope_section): rotary pair i (i < d/2, the
// pair (x[i], x[i + d/2]) as in rotate_half) turns by position axis a(i)
// times theta^(-2i/d): axis 0 (temporal) for the first section[0] pairs,
// axis 1 (height) for the next section[1], axis 2 (width) for the rest.
// Qwen2-VL uses [16, 24, 24] for d = 128; mrope_section(d) scales that to
// any even d. With equal positions on all three axes it is plain RoPE.
struct MRope {
  std::int64_t half = 0;
  std::array<std::int64_t, 3> section{};
  std::vector<float> inv_freq;
  pdrop::MRopeLayout layout = pdrop::MRopeLayout::sections;
  std::int64_t rows = 3;  // position rows per token: 3 (HF), 4 (llama.cpp; the 4th unread)

  // [16, 24, 24] scaled to d/2 pairs: 3/8 of them for height and for width
  // (rounded down), the rest temporal.
  static std::array<std::int64_t, 3> mrope_section(std::int64_t d) {
    const std::int64_t hw = d / 2 * 3 / 8;
    return {d / 2 - 2 * hw, hw, hw};
  }
  MRope(std::int64_t d, float theta, std::array<std::int64_t, 3> sec,
        pdrop::MRopeLayout lay = pdrop::MRopeLayout::sections)
      : half(d / 2), section(sec), inv_freq(rope_inv_freq(d, theta)), layout(lay) {
    if (d % 2 != 0 || sec[0] < 0 || sec[1] < 0 || sec[2] < 0 ||
        sec[0] + sec[1] + sec[2] != d / 2)
      throw pdrop::invalid_argument("MRope: the sections must be >= 0 and sum to d/2");
  }
  // The position row pair i reads: contiguous sections, or Qwen3-VL's
  // interleaved T H W T H W ... (pdrop::mrope_row_of_pair).
  std::int64_t axis(std::int64_t i) const {
    return pdrop::mrope_row_of_pair(i, {section.data(), 3}, layout);
  }
};

// M-RoPE in place on rows of `heads` heads of dim 2 * m.half: row r at the
// positions pos[m.rows r], pos[m.rows r + 1], pos[m.rows r + 2] (temporal,
// height, width; llama.cpp's 4th row is not read). Angles in float32 as HF
// computes them (float(position) * inv_freq).
template <class Rows>
void mrope(Rows&& x, const std::int64_t* pos, std::int64_t heads, const MRope& m) {
  const std::int64_t half = m.half;
  std::vector<float> c(static_cast<std::size_t>(half)), s(c.size());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (std::int64_t i = 0; i < half; ++i) {
      const float a = static_cast<float>(pos[m.rows * r + m.axis(i)]) * m.inv_freq[i];
      c[i] = std::cos(a);
      s[i] = std::sin(a);
    }
    rotate_pairs(x, r, heads, half, c.data(), s.data());
  }
}

// A per-layer KV cache: post-RoPE keys and values, one row per token
// (Hkv*d wide, NHD), room for `capacity` rows.
struct KVCache {
  Mat k, v;
  std::int64_t len = 0;
};

// Timing and shape of one prefill, for the demo.
struct PrefillStats {
  std::vector<std::int64_t> layer_tokens;   // rows each layer processed
  std::vector<double> layer_seconds;        // wall time of each layer
  double drop_seconds = 0.0;                // rope copy + score + select + compact
};

struct PrefillResult {
  Mat out;                                          // (T_final, D) final-norm rows
  std::vector<std::vector<std::int64_t>> kept;      // per drop: kept image tokens
  std::vector<std::vector<float>> scores;           // per drop: the scores ranked (empty: unscored)
  std::vector<std::vector<std::int64_t>> positions; // per drop: positions after it, token-major
  PrefillStats stats;
};

// How the drops of a prefill pick their tokens, besides the schedule's
// strategy and ratios.
struct DropOptions {
  pdrop::Budget budget = pdrop::Budget::per_span;  // per image span, or global
  pdrop::ScoreOptions score{};                     // PyramidDrop / FastV scoring
  pdrop::DartOptions dart{};                       // DART
};

// The kept image tokens of a drop: the entries of its keep list that fall in
// the new image spans, i.e. their positions before the drop, ascending.
inline std::vector<std::int64_t> kept_image_tokens(const std::vector<std::int64_t>& keep,
                                                   const std::vector<pdrop::ImageSpan>& new_spans) {
  std::vector<std::int64_t> kept;
  for (const auto& s : new_spans) kept.insert(kept.end(), keep.begin() + s.start, keep.begin() + s.end());
  return kept;
}

// One sequence through the model: prefill with a schedule, then decode.
class Session {
 public:
  Session(const Weights& w, pdrop::Schedule schedule, std::int64_t max_decode_steps = 0)
      : w_(w), schedule_(std::move(schedule)), max_decode_(max_decode_steps),
        rope_(w.cfg.head_dim(), w.cfg.rope_theta, 0) {
    if (schedule_.num_layers() != w.cfg.layers)
      throw pdrop::invalid_argument("Session: schedule.num_layers() != model layers");
  }

  // embeds (T0, D); image = [s, s + N0). Positions 0..T0-1, re-indexed
  // 0..T_new-1 after each drop (the reference's behaviour).
  PrefillResult prefill(const Mat& embeds, pdrop::ImageSpan image) {
    std::vector<std::int64_t> pos(static_cast<std::size_t>(embeds.rows()));
    for (std::size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<std::int64_t>(i);
    return prefill(embeds, std::move(pos), 1, {image});
  }

  // M-RoPE (Qwen2-VL): embeds (T0, D); positions T0 x 3 (temporal, height,
  // width; e.g. from pdrop::mrope_positions); images: the image / video
  // spans, sorted. Each drop keeps per_span_budgets or global_budget of the
  // ORIGINAL spans at the stage's ratio, and the kept tokens keep their
  // original 3-row positions. section {} takes the config's.
  PrefillResult prefill_mrope(const Mat& embeds, pdrop::TokenView<const std::int64_t> positions,
                              std::vector<pdrop::ImageSpan> images,
                              pdrop::Budget budget = pdrop::Budget::per_span,
                              std::array<std::int64_t, 3> section = {}) {
    if (positions.tokens != embeds.rows() || positions.features != 3)
      throw pdrop::invalid_argument("Session::prefill_mrope: positions must be T0 x 3");
    std::vector<std::int64_t> pos(static_cast<std::size_t>(3 * positions.tokens));
    for (std::int64_t t = 0; t < positions.tokens; ++t)
      for (std::int64_t a = 0; a < 3; ++a) pos[3 * t + a] = positions.row(t)[a];
    DropOptions opt;
    opt.budget = budget;
    return prefill(embeds, std::move(pos), 3, std::move(images), opt, section);
  }

  // The general prefill. positions: `rows` values per token, token-major
  // (rows 1: RoPE; rows 3: M-RoPE, temporal/height/width; rows 4:
  // llama.cpp's M-RoPE rows, the 4th carried along but not read); images:
  // sorted, disjoint spans. With 1 row, positions follow the schedule's
  // position_mode(); M-RoPE rows always keep their original values.
  // deepstack: Qwen3-VL's levels, each (image tokens) x D (empty: none).
  PrefillResult prefill(const Mat& embeds, std::vector<std::int64_t> positions, std::int64_t rows,
                        std::vector<pdrop::ImageSpan> images, const DropOptions& opt = {},
                        std::array<std::int64_t, 3> section = {},
                        std::vector<Mat> deepstack = {}) {
    const std::int64_t d = w_.cfg.head_dim();
    if (rows != 1 && rows != 3 && rows != 4)
      throw pdrop::invalid_argument("Session::prefill: rows must be 1, 3 or 4, got " +
                                    std::to_string(rows));
    if (static_cast<std::int64_t>(positions.size()) != rows * embeds.rows())
      throw pdrop::invalid_argument("Session::prefill: positions must hold rows * T0 values");
    // The last prompt token gives the next-token logits and is the scores'
    // query row; every drop keeps it, even inside an image.
    if (embeds.rows() < 1) throw pdrop::invalid_argument("Session::prefill: embeds has no rows");
    if (rows >= 3) {
      if (section == std::array<std::int64_t, 3>{}) section = w_.cfg.mrope_section;
      if (section == std::array<std::int64_t, 3>{}) section = MRope::mrope_section(d);
      mrope_.emplace(d, w_.cfg.rope_theta, section, w_.cfg.mrope_layout);
      mrope_->rows = rows;
    } else {
      mrope_.reset();
    }
    return run_prefill(embeds, std::move(images), opt, std::move(positions), std::move(deepstack));
  }

  // One decode step: embed (D) in, final-norm row out. positions_used, if
  // given, receives the position each layer used (equal in all M-RoPE rows).
  Vec decode(const Vec& embed, std::vector<std::int64_t>* positions_used = nullptr) {
    const Config& c = w_.cfg;
    const std::int64_t d = c.head_dim(), qw = c.heads * d, kw = c.kv_heads * d;
    if (caches_.empty() || !seq_) throw pdrop::invalid_argument("Session::decode: no prefill yet");
    if (steps_ >= max_decode_) throw pdrop::invalid_argument("Session::decode: no cache room left");
    Mat x = embed.transpose(), h(1, c.dim), q(1, qw), k(1, kw), v(1, kw), attn(1, qw);
    Mat gate(1, c.ffn), up(1, c.ffn);
    if (positions_used) positions_used->clear();
    for (std::int64_t l = 0; l < c.layers; ++l) {
      const Layer& L = w_.layers[l];
      KVCache& cache = caches_[l];
      // The record's position for this layer's next token: re-indexed
      // prompt, base + its own length; original positions, after the
      // prompt's largest. Its cache holds the record's length.
      const std::int64_t p = seq_->next_position(l);
      if (cache.len != seq_->cache_length(l))
        throw pdrop::invalid_argument("Session::decode: cache length disagrees with the record");
      if (positions_used) positions_used->push_back(p);
      rms_norm(x, L.attn_norm, c.rms_eps, h);
      project(L, h, q, k, v);
      rope(q, &p, c.heads, rope_);
      rope(k, &p, c.kv_heads, rope_);
      cache.k.row(cache.len) = k.row(0);
      cache.v.row(cache.len) = v.row(0);
      ++cache.len;
      const std::int64_t n = cache.len, group = c.heads / c.kv_heads;
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      for (std::int64_t hh = 0; hh < c.heads; ++hh) {
        const std::int64_t g = hh / group;
        Eigen::VectorXf s = cache.k.block(0, g * d, n, d) * q.block(0, hh * d, 1, d).transpose() * scale;
        s = (s.array() - s.maxCoeff()).exp().matrix();
        s /= s.sum();
        attn.block(0, hh * d, 1, d).noalias() = s.transpose() * cache.v.block(0, g * d, n, d);
      }
      x.noalias() += attn * L.wo.transpose();
      mlp(L, x, h, gate, up);
    }
    ++steps_;
    seq_->append(1);
    Mat out(1, c.dim);
    rms_norm(x, w_.final_norm, c.rms_eps, out);
    return out.row(0).transpose();
  }

  const std::vector<KVCache>& caches() const { return caches_; }
  // The record of the last prefill's drops (throws before any prefill).
  const pdrop::SequenceState& sequence() const {
    if (!seq_) throw pdrop::invalid_argument("Session::sequence: no prefill yet");
    return *seq_;
  }
  std::vector<KVCache>& caches() { return caches_; }

 private:
  // q/k/v = h W^T (+ b) for the rows of h.
  template <class H, class Q, class K, class V>
  void project(const Layer& L, const H& h, Q&& q, K&& k, V&& v) const {
    q.noalias() = h * L.wq.transpose();
    k.noalias() = h * L.wk.transpose();
    v.noalias() = h * L.wv.transpose();
    if (L.bq.size()) q.rowwise() += L.bq.transpose();
    if (L.bk.size()) k.rowwise() += L.bk.transpose();
    if (L.bv.size()) v.rowwise() += L.bv.transpose();
    if (L.q_norm.size()) head_norm(q, L.q_norm);
    if (L.k_norm.size()) head_norm(k, L.k_norm);
  }

  // Qwen3's q_norm / k_norm: RMSNorm over each head of d values, in place.
  template <class X>
  void head_norm(X&& x, const Vec& w) const {
    const std::int64_t d = w.size();
    for (Eigen::Index r = 0; r < x.rows(); ++r)
      for (std::int64_t h = 0; h < x.cols() / d; ++h) {
        auto seg = x.row(r).segment(h * d, d);
        const float inv = 1.0f / std::sqrt(seg.squaredNorm() / static_cast<float>(d) + w_.cfg.rms_eps);
        seg = (seg.array() * inv * w.transpose().array()).matrix();
      }
  }

  // The prefill of both position schemes: pos holds T0 (RoPE) or 3 * T0
  // (M-RoPE, when mrope_ is set) values. deepstack: Qwen3-VL's levels, each
  // (visual tokens of `images`) x D, level j added after layer j.
  PrefillResult run_prefill(const Mat& embeds, std::vector<pdrop::ImageSpan> images,
                            const DropOptions& opt, std::vector<std::int64_t> pos,
                            std::vector<Mat> deepstack = {}) {
    const Config& c = w_.cfg;
    const std::int64_t d = c.head_dim(), qw = c.heads * d, kw = c.kv_heads * d;
    const std::int64_t axes = mrope_ ? mrope_->rows : 1;
    const pdrop::Strategy strategy = schedule_.strategy();
    if (strategy == pdrop::Strategy::random)
      throw pdrop::invalid_argument("Session: the host runs pyramid_drop, fastv, vtw, dart and v2drop");
    if (opt.budget == pdrop::Budget::global && strategy != pdrop::Strategy::pyramid_drop &&
        strategy != pdrop::Strategy::fastv && strategy != pdrop::Strategy::v2drop)
      throw pdrop::invalid_argument(std::string("Session: a global budget needs a scoring "
                                                "strategy, not ") + pdrop::strategy_name(strategy));
    std::int64_t T = embeds.rows();
    steps_ = 0;
    // The record of this sequence's drops: positions (its mode: the
    // schedule's for 1 row, original values for M-RoPE), budgets, spans.
    seq_.reset();
    seq_.emplace(schedule_, pdrop::TokenView<const std::int64_t>(pos.data(), T, axes), images);
    const pdrop::PositionMode mode = seq_->position_mode();
    std::int64_t n_image = 0;
    for (const auto& im : images) n_image += im.length;
    // Decode positions stay below the larger of base + T (re-indexed) and
    // the prompt's next position, plus the steps.
    rope_ = RopeTable(d, c.rope_theta,
                      std::max(seq_->base_position() + T, seq_->prompt_next_position()) +
                          max_decode_);
    const auto rotate = [&](auto&& rows, const std::int64_t* p, std::int64_t heads) {
      if (mrope_) mrope(rows, p, heads, *mrope_);
      else rope(rows, p, heads, rope_);
    };
    Mat x = embeds, h(T, c.dim), q(T, qw), k(T, kw), v(T, kw), attn(T, qw), scratch_k(T, kw);
    Mat probs(T, T), up(T, c.ffn), gate(T, c.ffn), feats;
    Mat x_before;  // V2Drop: the input of a layer followed by a drop
    Vec q_prev(qw);  // the last query row of the layer that just ran, rotated
    std::vector<std::int64_t> keep(static_cast<std::size_t>(T));
    std::vector<std::int64_t> counts(images.size());
    pdrop::Workspace ws;
    ws.reserve(c.heads, c.kv_heads, 1, T, d, n_image);
    // DeepStack: views of the levels (compacted in place by every drop),
    // the scratch of their kept rows, and the spans before a drop.
    std::vector<pdrop::TokenView<float>> levels;
    for (Mat& m : deepstack) {
      if (m.rows() != n_image || m.cols() != c.dim)
        throw pdrop::invalid_argument("Session::prefill: each DeepStack level must be "
                                      "(image tokens) x D");
      levels.emplace_back(m.data(), n_image, c.dim);
    }
    std::vector<std::int64_t> ds_rows(static_cast<std::size_t>(n_image));
    std::vector<pdrop::ImageSpan> spans_before(images.size());
    PrefillResult res;
    caches_.assign(static_cast<std::size_t>(c.layers), KVCache{});

    using clock = std::chrono::steady_clock;
    for (std::int64_t l = 0; l < c.layers; ++l) {
      const auto t_start = clock::now();
      const Layer& L = w_.layers[l];
      auto X = x.topRows(T);
      rms_norm(X, L.attn_norm, c.rms_eps, h.topRows(T));
      project(L, h.topRows(T), q.topRows(T), k.topRows(T), v.topRows(T));

      if (const std::int64_t stage = schedule_.drop_before(l)) {
        const auto t_drop = clock::now();
        std::copy(images.begin(), images.end(), spans_before.begin());
        const std::int64_t last = T - 1;
        std::vector<float> scores;
        std::int64_t t_new = 0;
        // Budgets from the original spans at the stage's ratio (the
        // record's): int(N0_i * ratio) per span, or one global
        // int(sum N0_i * ratio).
        std::int64_t n_keep = 0;
        if (opt.budget == pdrop::Budget::global)
          seq_->keep_counts(stage, pdrop::Budget::global, {&n_keep, 1});
        else
          seq_->keep_counts(stage, pdrop::Budget::per_span, counts);
        const auto keys_of = [&](const float* data) {
          return pdrop::split_heads(pdrop::TokenView<const float>(data, T, kw), c.kv_heads);
        };
        if (strategy == pdrop::Strategy::pyramid_drop || strategy == pdrop::Strategy::fastv) {
          // PyramidDrop: this layer's q/k, RoPE'd at the current positions
          // (a rotated copy of K and of the last q row; the projections
          // stay). FastV: the layer that just ran, whose rotated K is its
          // cache and whose last q row was kept.
          const float* kdata = nullptr;
          if (strategy == pdrop::Strategy::pyramid_drop) {
            scratch_k.topRows(T) = k.topRows(T);
            rotate(scratch_k.topRows(T), pos.data(), c.kv_heads);
            q_prev = q.row(T - 1).transpose();
            rotate(Eigen::Map<Mat>(q_prev.data(), 1, qw), &pos[(T - 1) * axes], c.heads);
            kdata = scratch_k.data();
          } else {
            kdata = caches_[l - 1].k.data();
          }
          scores.resize(static_cast<std::size_t>(n_image));
          const auto qv = pdrop::split_heads(pdrop::TokenView<const float>(q_prev.data(), 1, qw), c.heads);
          if (opt.budget == pdrop::Budget::global)
            t_new = pdrop::rank_and_drop_global<float, float>(
                qv, {&last, 1}, keys_of(kdata), images, n_keep, ws, keep, images, scores,
                opt.score);
          else
            t_new = pdrop::rank_and_drop<float, float>(qv, {&last, 1}, keys_of(kdata), images,
                                                       counts, ws, keep, images, scores, opt.score);
        } else if (strategy == pdrop::Strategy::v2drop) {
          // The input of the layer that just ran against its output.
          scores.resize(static_cast<std::size_t>(n_image));
          const bool global = opt.budget == pdrop::Budget::global;
          t_new = pdrop::v2drop_drop<float, float>(
              pdrop::TokenView<const float>(x_before.data(), T, c.dim),
              pdrop::TokenView<const float>(x.data(), T, c.dim), {&last, 1}, images, opt.budget,
              global ? pdrop::span<const std::int64_t>(&n_keep, 1)
                     : pdrop::span<const std::int64_t>(counts),
              ws, keep, images, scores);
        } else {
          // VTW reads nothing; DART the keys of the layer that just ran and
          // its output through the final norm.
          pdrop::DropInputs<float, float, float> in;
          in.query_pos = {&last, 1};  // kept even inside an image
          in.k = keys_of(caches_[l - 1].k.data());
          in.dart = opt.dart;
          if (strategy == pdrop::Strategy::dart) {
            feats.resize(T, c.dim);
            rms_norm(x.topRows(T), w_.final_norm, c.rms_eps, feats);
            in.features = pdrop::TokenView<const float>(feats.data(), T, c.dim);
          }
          t_new = pdrop::drop_by_strategy(strategy, T, in, images, counts, ws, keep, images);
        }
        n_image = 0;
        for (const auto& im : images) n_image += im.length;
        const pdrop::span<const std::int64_t> kl(keep.data(), t_new);
        seq_->apply_drop(kl);  // checks the list, records T, spans
        res.kept.push_back(kept_image_tokens(keep, images));
        res.scores.push_back(std::move(scores));
        // Compact everything with one row per token, in place.
        pdrop::compact_rows(pdrop::TokenView<float>(x.data(), T, c.dim), kl);
        pdrop::compact_rows(pdrop::TokenView<float>(q.data(), T, qw), kl);
        pdrop::compact_rows(pdrop::TokenView<float>(k.data(), T, kw), kl);
        pdrop::compact_rows(pdrop::TokenView<float>(v.data(), T, kw), kl);
        pdrop::compact_positions(pdrop::TokenView<std::int64_t>(pos.data(), T, axes), kl, mode);
        // DeepStack levels still to come (l and later) lose the dropped
        // visual tokens' rows.
        if (l < static_cast<std::int64_t>(levels.size())) {
          const std::int64_t kept_rows = pdrop::compact_deepstack<float>(
              {levels.data() + l, static_cast<std::int64_t>(levels.size()) - l}, spans_before, T,
              kl, ds_rows);
          for (std::size_t j = static_cast<std::size_t>(l); j < levels.size(); ++j)
            levels[j].tokens = kept_rows;
        }
        T = t_new;
        res.positions.emplace_back(pos.begin(), pos.begin() + T * axes);
        res.stats.drop_seconds += std::chrono::duration<double>(clock::now() - t_drop).count();
      }

      if (strategy == pdrop::Strategy::v2drop && schedule_.drop_after(l) != 0)
        x_before = x.topRows(T);
      rotate(q.topRows(T), pos.data(), c.heads);
      rotate(k.topRows(T), pos.data(), c.kv_heads);
      q_prev = q.row(T - 1).transpose();
      KVCache& cache = caches_[l];
      cache.k.resize(T + max_decode_, kw);
      cache.v.resize(T + max_decode_, kw);
      cache.k.topRows(T) = k.topRows(T);
      cache.v.topRows(T) = v.topRows(T);
      cache.len = T;
      attention(q.topRows(T), k.topRows(T), v.topRows(T), probs, attn.topRows(T));
      x.topRows(T).noalias() += attn.topRows(T) * L.wo.transpose();
      mlp(L, x.topRows(T), h.topRows(T), gate.topRows(T), up.topRows(T));
      if (l < static_cast<std::int64_t>(levels.size()))  // HF _deepstack_process
        pdrop::deepstack_add(pdrop::TokenView<float>(x.data(), T, c.dim),
                             pdrop::TokenView<const float>(levels[l].data, levels[l].tokens, c.dim),
                             images);

      res.stats.layer_tokens.push_back(T);
      res.stats.layer_seconds.push_back(std::chrono::duration<double>(clock::now() - t_start).count());
    }
    res.out.resize(T, c.dim);
    rms_norm(x.topRows(T), w_.final_norm, c.rms_eps, res.out);
    return res;
  }

  // Causal GQA attention over T rows: full scores per head (a GEMM, as a
  // GEMM-based runtime does), masked, softmax in float32, times V.
  template <class Q, class K, class V, class Out>
  void attention(const Q& q, const K& k, const V& v, Mat& probs, Out&& out) const {
    const Config& c = w_.cfg;
    const std::int64_t T = q.rows(), d = c.head_dim(), group = c.heads / c.kv_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    auto P = probs.topLeftCorner(T, T);
    for (std::int64_t hh = 0; hh < c.heads; ++hh) {
      const std::int64_t g = hh / group;
      P.noalias() = q.middleCols(hh * d, d) * k.middleCols(g * d, d).transpose();
      for (std::int64_t i = 0; i < T; ++i) {
        auto row = P.row(i).head(i + 1);
        row *= scale;
        row = (row.array() - row.maxCoeff()).exp().matrix();
        row /= row.sum();
        P.row(i).tail(T - i - 1).setZero();
      }
      out.middleCols(hh * d, d).noalias() = P * v.middleCols(g * d, d);
    }
  }

  // x += down(silu(gate(norm(x))) * up(norm(x))).
  template <class X, class H, class G, class U>
  void mlp(const Layer& L, X&& x, H&& h, G&& gate, U&& up) const {
    rms_norm(x, L.ffn_norm, w_.cfg.rms_eps, h);
    gate.noalias() = h * L.w_gate.transpose();
    up.noalias() = h * L.w_up.transpose();
    gate = (gate.array() / (1.0f + (-gate.array()).exp()) * up.array()).matrix();
    x.noalias() += gate * L.w_down.transpose();
  }

  const Weights& w_;
  pdrop::Schedule schedule_;
  std::int64_t max_decode_ = 0;
  RopeTable rope_;
  std::optional<MRope> mrope_;
  std::int64_t steps_ = 0;
  std::optional<pdrop::SequenceState> seq_;
  std::vector<KVCache> caches_;
};

}  // namespace pdrop_host

#endif  // PDROP_EXAMPLES_HOST_LLAMA_HPP
