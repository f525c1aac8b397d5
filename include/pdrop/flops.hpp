// pdrop/flops.hpp - what a schedule saves: prefill FLOPs and KV-cache bytes,
// dense vs pruned.
//
// Three counts, each per decoder layer and summed over the layers, every
// layer using the image-token count n_j = schedule.image_tokens(N0, j) of its
// stage j (schedule.stage_of_layer). The cost of the scoring itself is not
// counted.
//
//  1. image_token_flops: the paper's count, from the FLOPs accounting of
//     PyramidDrop (Xing et al., CVPR 2025, arXiv 2410.17247): image tokens
//     only, text excluded, per layer with n image tokens
//         4*n*D^2 + 2*n^2*D + 3*n*D*M
//     (q/k/v/o projections, attention scores and weighted sum, the three
//     SwiGLU matrices; D hidden size, M FFN intermediate size). One
//     multiply-add counts as ONE FLOP, as in the paper: LLaVA-1.5-7B (L 32,
//     D 4096, M 11008, N0 576) gives 3.82e12 dense, 1.78e12 with the default
//     pyramid [8, 16, 24] / lambda 0.5. Heads do not enter this count.
//  2. sequence_flops: the whole prefill sequence, text included, GQA-aware.
//     Per layer with t = text_tokens + n_j tokens (hd the head dim):
//         q and o projections    2*t*D*(H*hd)
//         k and v projections    2*t*D*(Hkv*hd)
//         scores + weighted sum  2*t^2*H*hd       (full t x t, no causal halving)
//         SwiGLU MLP             3*t*D*M
//     Same multiply-add convention; with Hkv = H and H*hd = D it is the
//     paper's formula with n = t. Norms, RoPE, softmax, the LM head and the
//     vision tower are not counted.
//  3. kv_cache_bytes: the KV cache right after prefill. A layer of stage j
//     caches its own t = text_tokens + n_j tokens (layers before a drop keep
//     their full cache): t * 2 * Hkv * hd * bytes_per_element per layer.
//
// The schedule forms count n_j = int(N0 * ratio_j) for one image (or a
// global budget). The SequenceState forms take a sequence's record after
// its prefill instead, so each layer counts the tokens the applied keep
// lists actually left (several images rounded one by one, a query token
// kept inside an image): exact for that sequence.
//
// Sums are in double: exact while a count stays below 2^53, and no overflow
// at any size an int64 can describe. Every function validates its arguments
// first and throws pdrop::value_error naming the argument and its value.
#ifndef PDROP_FLOPS_HPP
#define PDROP_FLOPS_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pdrop/config.hpp"
#include "pdrop/detail/std.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/schedule.hpp"
#include "pdrop/sequence.hpp"

PDROP_BEGIN_NAMESPACE

// A decoder-only LLM's sizes. head_dim 0 means hidden / heads.
struct ModelShape {
  std::int64_t layers = 0;    // L, decoder layers
  std::int64_t hidden = 0;    // D, hidden size
  std::int64_t ffn = 0;       // M, FFN (SwiGLU) intermediate size
  std::int64_t heads = 0;     // H, query heads
  std::int64_t kv_heads = 0;  // Hkv, key/value heads (GQA when < H)
  std::int64_t head_dim = 0;  // hd; 0: hidden / heads
};

// A named model: its LLM's shape and its default image-token count N0.
struct ModelPreset {
  const char* name;
  ModelShape shape;
  std::int64_t image_tokens;
};

// Dense vs pruned cost, per decoder layer (L entries each) and in total.
// FLOPs for image_token_flops / sequence_flops, bytes for kv_cache_bytes.
struct CostReport {
  // (pdrop's allocator: one copy of these vectors' code per set of CPU
  // features, see pdrop/config.hpp; std::vector's interface.)
  detail::vector<double> dense_per_layer;
  detail::vector<double> pruned_per_layer;
  double dense = 0.0;
  double pruned = 0.0;
  // 1 - pruned / dense: the fraction saved (0 when dense is 0).
  double reduction() const { return dense > 0.0 ? 1.0 - pruned / dense : 0.0; }
};
using FlopsReport = CostReport;
using KvCacheReport = CostReport;

// Every preset: llava-1.5-7b and llava-next-7b (Vicuna-7B: L 32, D 4096,
// M 11008, H = Hkv = 32; N0 576 and 2880), llava-1.5-13b (Vicuna-13B: L 40,
// D 5120, M 13824, H = Hkv = 40; N0 576).
inline const std::array<ModelPreset, 3>& model_presets() {
  static const std::array<ModelPreset, 3> presets{{
      {"llava-1.5-7b", {32, 4096, 11008, 32, 32, 0}, 576},
      {"llava-next-7b", {32, 4096, 11008, 32, 32, 0}, 2880},
      {"llava-1.5-13b", {40, 5120, 13824, 40, 40, 0}, 576},
  }};
  return presets;
}

// The presets' names, in model_presets() order.
inline detail::vector<std::string> model_preset_names() {
  detail::vector<std::string> names;
  for (const ModelPreset& p : model_presets()) names.emplace_back(p.name);
  return names;
}

// The preset called `name` (exact match); value_error listing the known
// names when there is none.
inline ModelPreset model_preset(const std::string& name) {
  std::string known;
  for (const ModelPreset& p : model_presets()) {
    if (name == p.name) return p;
    known += known.empty() ? "" : ", ";
    known += p.name;
  }
  detail::fail<value_error>("pdrop::model_preset", "unknown preset '", name,
                            "' (known: ", known, ")");
}

namespace detail {

// Checks `shape` for function `fn`; returns its head dim (head_dim, or
// hidden / heads when head_dim is 0).
inline std::int64_t check_model_shape(const char* fn, const ModelShape& shape) {
  if (shape.layers < 1)
    fail<value_error>(fn, "shape.layers (", shape.layers, ") must be >= 1");
  if (shape.hidden < 1)
    fail<value_error>(fn, "shape.hidden (", shape.hidden, ") must be >= 1");
  if (shape.ffn < 1) fail<value_error>(fn, "shape.ffn (", shape.ffn, ") must be >= 1");
  if (shape.heads < 1)
    fail<value_error>(fn, "shape.heads (", shape.heads, ") must be >= 1");
  if (shape.kv_heads < 1)
    fail<value_error>(fn, "shape.kv_heads (", shape.kv_heads, ") must be >= 1");
  if (shape.heads % shape.kv_heads != 0)
    fail<value_error>(fn, "shape.heads (", shape.heads,
                      ") must be a multiple of shape.kv_heads (", shape.kv_heads, ")");
  if (shape.head_dim < 0)
    fail<value_error>(fn, "shape.head_dim (", shape.head_dim,
                      ") must be >= 0 (0: hidden / heads)");
  if (shape.head_dim > 0) return shape.head_dim;
  if (shape.hidden % shape.heads != 0)
    fail<value_error>(fn, "shape.hidden (", shape.hidden,
                      ") must be a multiple of shape.heads (", shape.heads,
                      ") when shape.head_dim is 0");
  return shape.hidden / shape.heads;
}

// Checks the shape, the schedule against it, n0 and text_tokens; returns the
// head dim.
inline std::int64_t check_cost_args(const char* fn, const ModelShape& shape,
                                    const Schedule& schedule, std::int64_t n0,
                                    std::int64_t text_tokens) {
  const std::int64_t hd = check_model_shape(fn, shape);
  if (schedule.num_layers() != shape.layers)
    fail<value_error>(fn, "schedule.num_layers() (", schedule.num_layers(),
                      ") must equal shape.layers (", shape.layers, ")");
  constexpr std::int64_t max_tokens = std::int64_t{1} << 53;
  if (n0 < 1 || n0 > max_tokens)
    fail<value_error>(fn, "n0 (", n0, ") must be in [1, 2^53]");
  if (text_tokens < 0 || text_tokens > max_tokens)
    fail<value_error>(fn, "text_tokens (", text_tokens, ") must be in [0, 2^53]");
  return hd;
}

// Fills a report over the schedule's layers: per_layer(dense_tokens) for
// every layer dense, per_layer(stage_tokens[j]) for a layer of stage j
// pruned.
template <class PerLayer>
CostReport layer_report(const Schedule& schedule, std::int64_t dense_tokens,
                        span<const std::int64_t> stage_tokens, PerLayer per_layer) {
  const std::int64_t layers = schedule.num_layers();
  CostReport r;
  r.dense_per_layer.reserve(static_cast<std::size_t>(layers));
  r.pruned_per_layer.reserve(static_cast<std::size_t>(layers));
  const double dense_layer = per_layer(static_cast<double>(dense_tokens));
  for (std::int64_t i = 0; i < layers; ++i) {
    const std::int64_t t = stage_tokens[schedule.stage_of_layer(i)];
    const double pruned_layer = per_layer(static_cast<double>(t));
    r.dense_per_layer.push_back(dense_layer);
    r.pruned_per_layer.push_back(pruned_layer);
    r.dense += dense_layer;
    r.pruned += pruned_layer;
  }
  return r;
}

// The schedule's model: t = text_tokens + n0 dense, text_tokens + n_j of the
// layer's stage pruned.
template <class PerLayer>
CostReport cost_report(const Schedule& schedule, std::int64_t n0,
                       std::int64_t text_tokens, PerLayer per_layer) {
  detail::vector<std::int64_t> t = schedule.tokens_per_stage(n0);
  for (std::int64_t& x : t) x += text_tokens;
  return layer_report(schedule, text_tokens + n0, t, per_layer);
}

// K and V bytes per cached token: 2 * Hkv * hd * bytes_per_element
// (bytes_per_element >= 1, checked).
inline double kv_bytes_per_token(const char* fn, const ModelShape& shape, double hd,
                                 std::int64_t bytes_per_element) {
  if (bytes_per_element < 1)
    fail<value_error>(fn, "bytes_per_element (", bytes_per_element, ") must be >= 1");
  return 2.0 * static_cast<double>(shape.kv_heads) * hd *
         static_cast<double>(bytes_per_element);
}

// The two per-layer formulas, on already-checked sizes.
inline double paper_layer_flops(double n, double D, double M) {
  return 4.0 * n * D * D + 2.0 * n * n * D + 3.0 * n * D * M;
}
inline double sequence_layer_flops(const ModelShape& shape, double hd, double t) {
  const double D = static_cast<double>(shape.hidden), M = static_cast<double>(shape.ffn),
               H = static_cast<double>(shape.heads),
               Hkv = static_cast<double>(shape.kv_heads);
  return 2.0 * t * D * (H * hd) + 2.0 * t * D * (Hkv * hd) + 2.0 * t * t * H * hd +
         3.0 * t * D * M;
}

}  // namespace detail

// Checks `shape` (every size >= 1, head_dim >= 0, heads a multiple of
// kv_heads, hidden a multiple of heads when head_dim is 0); returns its head
// dim: head_dim, or hidden / heads when head_dim is 0.
inline std::int64_t resolved_head_dim(const ModelShape& shape) {
  return detail::check_model_shape("pdrop::resolved_head_dim", shape);
}

// The paper's per-layer FLOPs for n image tokens: 4*n*D^2 + 2*n^2*D +
// 3*n*D*M (one multiply-add = one FLOP). n >= 0.
inline double layer_image_token_flops(const ModelShape& shape, std::int64_t n) {
  constexpr const char* fn = "pdrop::layer_image_token_flops";
  detail::check_model_shape(fn, shape);
  if (n < 0) detail::fail<value_error>(fn, "n (", n, ") must be >= 0");
  return detail::paper_layer_flops(static_cast<double>(n),
                                   static_cast<double>(shape.hidden),
                                   static_cast<double>(shape.ffn));
}

// Whole-layer FLOPs for t tokens (text and image): 2*t*D*(H*hd) +
// 2*t*D*(Hkv*hd) + 2*t^2*H*hd + 3*t*D*M (one multiply-add = one FLOP). t >= 0.
inline double layer_sequence_flops(const ModelShape& shape, std::int64_t t) {
  constexpr const char* fn = "pdrop::layer_sequence_flops";
  const double hd = static_cast<double>(detail::check_model_shape(fn, shape));
  if (t < 0) detail::fail<value_error>(fn, "t (", t, ") must be >= 0");
  return detail::sequence_layer_flops(shape, hd, static_cast<double>(t));
}

// The paper's count (image tokens only, text excluded) for `schedule` with
// n0 image tokens before any drop. schedule.num_layers() == shape.layers,
// n0 >= 1. Returns L per-layer FLOPs dense (n0 everywhere) and pruned (n_j in
// stage j), and their sums.
inline FlopsReport image_token_flops(const ModelShape& shape, const Schedule& schedule,
                                     std::int64_t n0) {
  detail::check_cost_args("pdrop::image_token_flops", shape, schedule, n0, 0);
  const double D = static_cast<double>(shape.hidden), M = static_cast<double>(shape.ffn);
  return detail::cost_report(
      schedule, n0, 0, [&](double n) { return detail::paper_layer_flops(n, D, M); });
}

// Whole-sequence count, text included: every layer of stage j runs
// t = text_tokens + n_j tokens (text_tokens >= 0, the prompt's non-image
// tokens). Returns L per-layer FLOPs dense and pruned, and their sums.
inline FlopsReport sequence_flops(const ModelShape& shape, const Schedule& schedule,
                                  std::int64_t n0, std::int64_t text_tokens) {
  const double hd = static_cast<double>(
      detail::check_cost_args("pdrop::sequence_flops", shape, schedule, n0, text_tokens));
  return detail::cost_report(schedule, n0, text_tokens, [&](double t) {
    return detail::sequence_layer_flops(shape, hd, t);
  });
}

// KV-cache bytes after prefill: a layer of stage j holds K and V for its
// t = text_tokens + n_j tokens, t * 2 * Hkv * hd * bytes_per_element bytes
// (bytes_per_element >= 1; 2 for fp16 / bf16). Returns L per-layer byte
// counts dense and pruned, and their sums.
inline KvCacheReport kv_cache_bytes(const ModelShape& shape, const Schedule& schedule,
                                    std::int64_t n0, std::int64_t text_tokens,
                                    std::int64_t bytes_per_element = 2) {
  constexpr const char* fn = "pdrop::kv_cache_bytes";
  const double hd =
      static_cast<double>(detail::check_cost_args(fn, shape, schedule, n0, text_tokens));
  const double per_token = detail::kv_bytes_per_token(fn, shape, hd, bytes_per_element);
  return detail::cost_report(schedule, n0, text_tokens,
                             [&](double t) { return t * per_token; });
}

namespace detail {

// A report from a record whose every drop is applied: per_layer(T_0) dense,
// per_layer(T_j) for a layer of stage j; returns after checking shape.
template <class PerLayer>
CostReport record_report(const char* fn, const ModelShape& shape, const SequenceState& seq,
                         PerLayer per_layer) {
  const Schedule& schedule = seq.schedule();
  if (schedule.num_layers() != shape.layers)
    fail<value_error>(fn, "seq.schedule().num_layers() (", schedule.num_layers(),
                      ") must equal shape.layers (", shape.layers, ")");
  if (seq.drops_applied() != schedule.num_stages() - 1)
    fail<value_error>(fn, "seq has ", seq.drops_applied(), " of its schedule's ",
                      schedule.num_stages() - 1, " drops applied: count after the prefill");
  detail::vector<std::int64_t> t(static_cast<std::size_t>(schedule.num_stages()));
  for (std::int64_t j = 0; j < schedule.num_stages(); ++j)
    t[static_cast<std::size_t>(j)] = seq.tokens(j);
  return layer_report(schedule, seq.tokens(0), t, per_layer);
}

}  // namespace detail

// Whole-sequence FLOPs of one sequence's prefill from its record (every
// drop applied): a layer of stage j runs seq.tokens(j) tokens, dense ones
// seq.tokens(0). Same formula as sequence_flops above.
inline FlopsReport sequence_flops(const ModelShape& shape, const SequenceState& seq) {
  constexpr const char* fn = "pdrop::sequence_flops";
  const double hd = static_cast<double>(detail::check_model_shape(fn, shape));
  return detail::record_report(fn, shape, seq, [&](double t) {
    return detail::sequence_layer_flops(shape, hd, t);
  });
}

// KV-cache bytes right after one sequence's prefill, from its record (every
// drop applied): layer l holds seq.cache_length(l) - seq.appended() =
// seq.tokens(j) rows of K and V, t * 2 * Hkv * hd * bytes_per_element bytes.
inline KvCacheReport kv_cache_bytes(const ModelShape& shape, const SequenceState& seq,
                                    std::int64_t bytes_per_element = 2) {
  constexpr const char* fn = "pdrop::kv_cache_bytes";
  const double hd = static_cast<double>(detail::check_model_shape(fn, shape));
  const double per_token = detail::kv_bytes_per_token(fn, shape, hd, bytes_per_element);
  return detail::record_report(fn, shape, seq, [&](double t) { return t * per_token; });
}

PDROP_END_NAMESPACE

#endif  // PDROP_FLOPS_HPP
