// pdrop/score.hpp - scoring: how much the query tokens attend to each image
// token.
//
// PyramidDrop ranks image tokens by the attention the last instruction token
// pays them. pdrop computes that attention from the post-RoPE q rows of the
// query tokens and the keys K directly, so it works for runtimes whose
// attention is fused (flash attention) and never materialises weights:
//
//   a_h(p, t) = softmax_{t' <= p}( q_h(p) . k_g(t') * scale )   (float32, max-
//               subtracted; keys after the query position p are masked)
//   score(i)  = mean_over_queries( mean_over_heads( a_h(p, s + i) ) )
//
// with g = h / (Hq / Hkv) (HF repeat_kv grouping), scale = 1/sqrt(dim)
// unless given. A query before an image token contributes zero to it. Several
// image spans are scored in one call; their scores are laid out one span
// after the other. V is never read.
//
// Cost: each K row up to the last query position is read once for all the
// query rows of its kv-head group; scratch is one logits row per query head
// and query (a Workspace, reused across calls).
#ifndef PDROP_SCORE_HPP
#define PDROP_SCORE_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "pdrop/detail/check.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/view.hpp"
#include "pdrop/workspace.hpp"

namespace pdrop {

// Image tokens [start, start + length) of a sequence.
struct ImageSpan {
  std::int64_t start = 0;
  std::int64_t length = 0;
  constexpr std::int64_t end() const { return start + length; }
};

// How attention probabilities are rounded before they are averaged.
//  none: float32 throughout (default).
//  fp16 / bf16: each probability is rounded to that type first, the way the
//  reference casts its softmax output back to the model dtype. Use it only to
//  reproduce an fp16 reference run: scores then tie more often, and ties are
//  broken by select_top_k's rule (lower index first), not by a GPU's top-k.
enum class ProbRounding { none, fp16, bf16 };

struct ScoreOptions {
  float softmax_scale = 0.0f;  // 0: 1/sqrt(dim); else finite and > 0
  ProbRounding round_probs = ProbRounding::none;
};

namespace detail {

// Checks every input of score_image_tokens (all but the output); returns
// the total number of image tokens. Non-templated: the typed front hands
// over sizes and strides.
inline std::int64_t validate_score_inputs(const char* fn, HeadView<const void> q,
                                          std::size_t q_elem,
                                          span<const std::int64_t> query_pos,
                                          HeadView<const void> k, std::size_t k_elem,
                                          span<const ImageSpan> spans,
                                          const ScoreOptions& opt) {
  check_head_view(fn, "q", q.data, q.heads, q.tokens, q.dim, q.head_stride,
                  q.token_stride, q_elem, false);
  check_head_view(fn, "k", k.data, k.heads, k.tokens, k.dim, k.head_stride,
                  k.token_stride, k_elem, false);
  if (q.heads < 1) fail<shape_error>(fn, "q.heads (", q.heads, ") must be >= 1");
  if (k.heads < 1) fail<shape_error>(fn, "k.heads (", k.heads, ") must be >= 1");
  if (q.heads % k.heads != 0)
    fail<shape_error>(fn, "q.heads (", q.heads, ") must be a multiple of k.heads (",
                      k.heads, ")");
  if (q.dim < 1 || q.dim != k.dim)
    fail<shape_error>(fn, "q.dim (", q.dim, ") and k.dim (", k.dim,
                      ") must be equal and >= 1");
  if (q.tokens < 1)
    fail<shape_error>(fn, "q.tokens (", q.tokens, ") must be >= 1 query row");
  if (k.tokens < 1) fail<shape_error>(fn, "k.tokens (", k.tokens, ") must be >= 1");
  if (query_pos.size != q.tokens)
    fail<shape_error>(fn, "query_pos.size (", query_pos.size,
                      ") must equal q.tokens (", q.tokens, ")");
  if (query_pos.data == nullptr)
    fail<shape_error>(fn, "query_pos.data is null with ", query_pos.size, " entries");
  for (std::int64_t i = 0; i < query_pos.size; ++i)
    if (query_pos[i] < 0 || query_pos[i] >= k.tokens)
      fail<value_error>(fn, "query_pos[", i, "] (", query_pos[i],
                        ") must be in [0, k.tokens = ", k.tokens, ")");
  if (spans.size < 0 || (spans.size > 0 && spans.data == nullptr))
    fail<shape_error>(fn, "spans.data is null with ", spans.size, " entries");
  std::int64_t total = 0;
  for (std::int64_t i = 0; i < spans.size; ++i) {
    const ImageSpan s = spans[i];
    if (s.start < 0 || s.length < 0 || s.length > k.tokens - s.start)
      fail<value_error>(fn, "spans[", i, "] (start ", s.start, ", length ", s.length,
                        ") must lie inside [0, k.tokens = ", k.tokens, ")");
    if (i > 0 && s.start < spans[i - 1].end())
      fail<value_error>(fn, "spans[", i, "] (start ", s.start,
                        ") must start at or after the end of spans[", i - 1,
                        "] (", spans[i - 1].end(), "): spans are sorted and disjoint");
    total += s.length;
  }
  if (!(opt.softmax_scale >= 0.0f && std::isfinite(opt.softmax_scale)))
    fail<value_error>(fn, "options.softmax_scale (", opt.softmax_scale,
                      ") must be finite and >= 0 (0 = 1/sqrt(dim))");
  return total;
}

// validate_score_inputs, and `scores` holds exactly the image tokens.
inline std::int64_t validate_score(const char* fn, HeadView<const void> q,
                                   std::size_t q_elem,
                                   span<const std::int64_t> query_pos,
                                   HeadView<const void> k, std::size_t k_elem,
                                   span<const ImageSpan> spans,
                                   span<float> scores, const ScoreOptions& opt) {
  const std::int64_t total =
      validate_score_inputs(fn, q, q_elem, query_pos, k, k_elem, spans, opt);
  if (scores.size != total)
    fail<shape_error>(fn, "scores.size (", scores.size,
                      ") must equal the image tokens over all spans (", total, ")");
  if (total > 0 && scores.data == nullptr)
    fail<shape_error>(fn, "scores.data is null with ", total, " entries");
  return total;
}

template <class T>
HeadView<const void> erase(HeadView<const T> v) {
  return HeadView<const void>(v.data, v.heads, v.tokens, v.dim, v.head_stride,
                              v.token_stride);
}

// Row `src` of dim elements as float: the row itself for float, else
// converted into `buf`.
template <class T>
const float* as_float_row(const T* src, std::int64_t dim, float* buf) {
  if constexpr (std::is_same_v<T, float>) {
    (void)dim;
    (void)buf;
    return src;
  } else {
    for (std::int64_t i = 0; i < dim; ++i) buf[i] = static_cast<float>(src[i]);
    return buf;
  }
}

inline float round_prob(float p, ProbRounding r) {
  switch (r) {
    case ProbRounding::fp16: return static_cast<float>(half(p));
    case ProbRounding::bf16: return static_cast<float>(bfloat16(p));
    case ProbRounding::none: break;
  }
  return p;
}

// Softmax over logits[0..keys) of one query row, adding the probability of
// every image token into acc (laid out span after span). Throws value_error
// when a logit is not finite (q or k held NaN/Inf). Overwrites logits.
inline void softmax_accumulate(const char* fn, float* logits, std::int64_t keys,
                               span<const ImageSpan> spans, ProbRounding rounding,
                               std::int64_t head, std::int64_t query, float* acc) {
  float m = logits[0];
  bool finite = true;
  for (std::int64_t t = 0; t < keys; ++t) {
    finite &= std::isfinite(logits[t]);
    m = std::max(m, logits[t]);
  }
  if (!finite) {
    std::int64_t t = 0;
    while (std::isfinite(logits[t])) ++t;
    fail<value_error>(fn, "q or k holds a non-finite value: the logit of query head ",
                      head, ", query row ", query, " and key ", t, " is ", logits[t]);
  }
  float sum = 0.0f;
  for (std::int64_t t = 0; t < keys; ++t) {
    logits[t] = std::exp(logits[t] - m);
    sum += logits[t];
  }
  const float inv = 1.0f / sum;
  std::int64_t offset = 0;
  for (const ImageSpan& s : spans) {
    const std::int64_t stop = std::min(s.end(), keys);
    for (std::int64_t t = s.start; t < stop; ++t)
      acc[offset + t - s.start] += round_prob(logits[t] * inv, rounding);
    offset += s.length;
  }
}

}  // namespace detail

// Scores every image token of `spans` by the attention of the query rows.
//
//   q          Hq x nq x dim: post-RoPE query rows of the query tokens (any
//              strides; e.g. the last row of the next layer's q projection).
//   query_pos  nq: sequence position of each query row (its causal limit),
//              each in [0, k.tokens).
//   k          Hkv x T x dim: post-RoPE keys of the whole sequence, HND or
//              NHD; Hq must be a multiple of Hkv. Rows after the largest
//              query position are never read.
//   spans      sorted, disjoint image spans inside [0, T).
//   ws         scratch; Workspace::reserve makes this call
//              allocation-free.
//   scores     out, sum of span lengths: score of each image token, span
//              after span, in token order.
// Throws shape_error / value_error before writing anything on bad shapes,
// positions or spans, and value_error (scores untouched) when q or k holds a
// non-finite value that takes part.
template <class Tq, class Tk>
void score_image_tokens(HeadView<const Tq> q, span<const std::int64_t> query_pos,
                        HeadView<const Tk> k, span<const ImageSpan> spans,
                        Workspace& ws, span<float> scores,
                        const ScoreOptions& options = {}) {
  static_assert(is_float_type_v<Tq> && is_float_type_v<Tk>,
                "q and k must be float, pdrop::half or pdrop::bfloat16");
  constexpr const char* fn = "pdrop::score_image_tokens";
  const std::int64_t n_image =
      detail::validate_score(fn, detail::erase(q), sizeof(Tq), query_pos,
                             detail::erase(k), sizeof(Tk), spans, scores, options);
  const std::int64_t hq = q.heads, hkv = k.heads, nq = q.tokens, d = q.dim;
  const std::int64_t group = hq / hkv, rows = group * nq;
  const std::int64_t keys = *std::max_element(query_pos.begin(), query_pos.end()) + 1;
  const float scale = options.softmax_scale > 0.0f
                          ? options.softmax_scale
                          : 1.0f / std::sqrt(static_cast<float>(d));

  float* qf = ws.scratch(static_cast<std::size_t>(
      Workspace::score_floats(rows, keys, d, n_image)));
  float* logits = qf + rows * d;
  float* kbuf = logits + rows * keys;
  float* acc = kbuf + d;
  std::fill(acc, acc + n_image, 0.0f);

  using Vec = Eigen::Map<const Eigen::VectorXf>;
  for (std::int64_t g = 0; g < hkv; ++g) {
    // Query rows of this group as float: row r = (head g*group + r / nq,
    // query r % nq).
    for (std::int64_t r = 0; r < rows; ++r) {
      const Tq* src = q.row(g * group + r / nq, r % nq);
      for (std::int64_t i = 0; i < d; ++i) qf[r * d + i] = static_cast<float>(src[i]);
    }
    // One pass over K: each row once, for every query row that sees it.
    for (std::int64_t t = 0; t < keys; ++t) {
      const Vec kt(detail::as_float_row(k.row(g, t), d, kbuf), d);
      for (std::int64_t r = 0; r < rows; ++r)
        if (t <= query_pos[r % nq])
          logits[r * keys + t] = Vec(qf + r * d, d).dot(kt) * scale;
    }
    for (std::int64_t r = 0; r < rows; ++r)
      detail::softmax_accumulate(fn, logits + r * keys, query_pos[r % nq] + 1, spans,
                                 options.round_probs, g * group + r / nq, r % nq, acc);
  }
  const float inv = 1.0f / static_cast<float>(hq * nq);
  for (std::int64_t i = 0; i < n_image; ++i) scores[i] = acc[i] * inv;
}

}  // namespace pdrop

#endif  // PDROP_SCORE_HPP
