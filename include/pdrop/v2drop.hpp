// pdrop/v2drop.hpp - V2Drop: drop the image tokens whose hidden states
// change least.
//
// V2Drop: Junjie Chen, Xuyang Liu, Zichen Wen, Yiyu Wang, Siteng Huang,
// Honggang Chen, "Variation-aware Vision Token Dropping for Faster Large
// Vision-Language Models", CVPR 2026, arXiv 2509.01552. Attention-free: it
// reads hidden states only, so it works with any fused attention kernel.
//
// Score ("token-wise variation") of image token t at a drop before 0-based
// layer l:
//
//   v_t = || after_t - before_t ||_2
//
// with before_t the token's hidden state entering layer l-1 and after_t the
// one leaving it (entering layer l): the residual stream as the decoder
// carries it, not normalized, the plain Euclidean norm of the difference.
// The drop keeps the tokens of LARGEST variation ("lazy" tokens, which the
// layers barely change, go). Read in the authors' code (xuyang-liu16/V2Drop
// 219e03e): llava/model/language_model/V2Drop.py, V2DropLlamaModel.forward,
// and Qwen2-VL/Qwen2VL_V2Drop/modeling_qwen2_vl_self.py, the decoder loop of
// Qwen2VLModel.forward: `prev_hidden_states` is the input of the layer that
// just ran (stored, after any drop, before every layer), the current hidden
// states its output; the score is torch.norm(current - prev, p=2) over the
// hidden dimension, and torch.topk(largest=True) picks the kept tokens (a
// cosine variant is left commented out in the Qwen2-VL file). The paper
// states the rule in its method section (token-wise variation between
// adjacent layers, progressive dropping of the least-varying tokens).
// Their schedules: pdrop/strategies.hpp (v2drop_llava_1_5, v2drop_qwen2_vl)
// and docs/strategies.md.
//
// Any pair of views works (an engine may pass the input of a stage's first
// layer as `before` for a variation over several layers); the authors'
// setting is the single layer right before the drop.
//
// Math: elements converted to float exactly, differences, squares and sums
// in double (four chains, i % 4, added in a fixed order), the square root in
// double, rounded once to float. Selection as rank_and_drop's (select.hpp):
// the largest scores, equal scores rank the lower position first, kept
// tokens in their original order; a query token inside a span is kept and
// takes one of its span's (or the global) slots.
#ifndef PDROP_V2DROP_HPP
#define PDROP_V2DROP_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "pdrop/config.hpp"
#include "pdrop/batch.hpp"
#include "pdrop/budget.hpp"
#include "pdrop/compact.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/detail/simd.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/rank_drop.hpp"
#include "pdrop/view.hpp"
#include "pdrop/workspace.hpp"

PDROP_BEGIN_NAMESPACE

namespace detail {

// Checks before/after (shapes, strides, equal sizes) and the spans against
// before.tokens; returns the image tokens over all spans.
inline std::int64_t validate_v2drop(const char* fn, const void* b_data, std::int64_t b_tokens,
                                    std::int64_t b_features, std::int64_t b_stride,
                                    std::size_t b_elem, const void* a_data,
                                    std::int64_t a_tokens, std::int64_t a_features,
                                    std::int64_t a_stride, std::size_t a_elem,
                                    span<const ImageSpan> spans) {
  check_token_view(fn, "before", b_data, b_tokens, b_features, b_stride, b_elem);
  check_token_view(fn, "after", a_data, a_tokens, a_features, a_stride, a_elem);
  if (a_tokens != b_tokens)
    fail<shape_error>(fn, "after.tokens (", a_tokens, ") must equal before.tokens (", b_tokens,
                      ")");
  if (a_features != b_features)
    fail<shape_error>(fn, "after.features (", a_features, ") must equal before.features (",
                      b_features, ")");
  if (b_features < 1)
    fail<shape_error>(fn, "before.features (", b_features, ") must be >= 1");
  return check_spans(fn, spans, b_tokens, "before.tokens");
}

// The query positions of a drop over `tokens` rows: non-null when non-empty,
// each in [0, tokens).
inline void check_query_positions(const char* fn, const char* name,
                                  span<const std::int64_t> query_pos, std::int64_t tokens) {
  if (query_pos.size < 0 || (query_pos.size > 0 && query_pos.data == nullptr))
    fail<shape_error>(fn, name, ".data is null with ", query_pos.size, " entries");
  for (std::int64_t i = 0; i < query_pos.size; ++i)
    if (query_pos[i] < 0 || query_pos[i] >= tokens)
      fail<value_error>(fn, name, "[", i, "] (", query_pos[i], ") must be in [0, tokens = ",
                        tokens, ")");
}

// ||a - b||_2 over n elements (see the header comment for the arithmetic).
template <class Tb, class Ta>
double variation(const Tb* b, const Ta* a, std::int64_t n) {
  double d[4] = {0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) {
      const double x = static_cast<double>(to_float(a + i + j)) -
                       static_cast<double>(to_float(b + i + j));
      d[j] += x * x;
    }
  for (std::int64_t j = 0; i + j < n; ++j) {
    const double x = static_cast<double>(to_float(a + i + j)) -
                     static_cast<double>(to_float(b + i + j));
    d[j] += x * x;
  }
  return std::sqrt((d[0] + d[1]) + (d[2] + d[3]));
}

// Scores of every image token (spans end to end) into out; value_error
// naming the token when one is not finite as a float. Validated inputs.
template <class Tb, class Ta>
void v2drop_core(const char* fn, TokenView<const Tb> before, TokenView<const Ta> after,
                 span<const ImageSpan> spans, float* out) {
  std::int64_t o = 0;
  for (const ImageSpan& s : spans)
    for (std::int64_t t = s.start; t < s.end(); ++t) {
      const float v = static_cast<float>(variation(before.row(t), after.row(t), before.features));
      if (!std::isfinite(v))
        fail<value_error>(fn, "the variation of token ", t, " (", v,
                          ") is not finite: before/after rows hold inf or NaN, or their "
                          "difference exceeds float's range");
      out[o++] = v;
    }
}

// Every input of one V2Drop drop (as v2drop_drop); returns its plan. The
// forced query tokens are in ws.forced() afterwards.
template <class Tb, class Ta>
DropPlan validate_v2drop_drop(const char* fn, TokenView<const Tb> before,
                              TokenView<const Ta> after, span<const std::int64_t> query_pos,
                              span<const ImageSpan> spans, Budget budget,
                              span<const std::int64_t> keep_counts, Workspace& ws) {
  if (budget != Budget::per_span && budget != Budget::global)
    fail<value_error>(fn, "budget (", static_cast<int>(budget), ") is not a pdrop::Budget");
  const std::int64_t n = validate_v2drop(fn, before.data, before.tokens, before.features,
                                         before.row_stride, sizeof(Tb), after.data, after.tokens,
                                         after.features, after.row_stride, sizeof(Ta), spans);
  check_query_positions(fn, "query_pos", query_pos, before.tokens);
  return plan_drop(fn, spans, n, before.tokens, budget, keep_counts,
                   forced_tokens(spans, query_pos, ws));
}

// v2drop_drop, its errors named by fn (drop_by_strategy runs it too).
template <class Tb, class Ta>
std::int64_t v2drop_drop_impl(const char* fn, TokenView<const Tb> before,
                              TokenView<const Ta> after, span<const std::int64_t> query_pos,
                              span<const ImageSpan> spans, Budget budget,
                              span<const std::int64_t> keep_counts, Workspace& ws,
                              span<std::int64_t> keep, span<ImageSpan> maybe_new_spans,
                              span<float> maybe_scores) {
  const DropPlan plan =
      validate_v2drop_drop(fn, before, after, query_pos, spans, budget, keep_counts, ws);
  validate_drop_outputs(fn, plan, before.tokens, spans, keep, maybe_new_spans, maybe_scores);
  const std::int64_t n = plan.n_image;
  float* scores = ws.scores(static_cast<std::size_t>(n));
  v2drop_core(fn, before, after, spans, scores);
  return finish_drop(fn, plan, before.tokens, spans, budget, keep_counts,
                     forced_tokens(spans, query_pos, ws), span<const float>(scores, n), ws,
                     keep, maybe_new_spans, maybe_scores);
}

}  // namespace detail

// V2Drop's variation score of every image token.
//
//   before   T x D hidden states entering the layer that just ran (0-based
//            l-1 for a drop before layer l), fp32 / fp16 / bf16, features
//            contiguous, row_stride elements between tokens (>= D).
//   after    T x D hidden states leaving it (the input of layer l); same T
//            and D as before, any element type and row_stride.
//   spans    sorted, disjoint image spans inside [0, T).
//   ws       scratch: the scores are computed into it first.
//   scores   out, sum(lengths) entries, spans laid end to end:
//            ||after_t - before_t||_2, unitless (the hidden states' units).
// Throws shape_error (bad views, unequal sizes, D < 1, bad spans, wrong
// scores size, scores overlapping before or after) and value_error (a score
// not finite) before scores is written.
template <class Tb, class Ta>
void v2drop_scores(TokenView<const Tb> before, TokenView<const Ta> after,
                   span<const ImageSpan> spans, Workspace& ws, span<float> scores) {
  static_assert(is_float_type_v<Tb> && is_float_type_v<Ta>,
                "before and after must be float, pdrop::half or pdrop::bfloat16");
  constexpr const char* fn = "pdrop::v2drop_scores";
  const std::int64_t n = detail::validate_v2drop(
      fn, before.data, before.tokens, before.features, before.row_stride, sizeof(Tb),
      after.data, after.tokens, after.features, after.row_stride, sizeof(Ta), spans);
  if (scores.size != n)
    detail::fail<shape_error>(fn, "scores.size (", scores.size, ") must equal the image tokens (",
                              n, ")");
  if (n > 0 && scores.data == nullptr)
    detail::fail<shape_error>(fn, "scores.data is null with ", n, " entries");
  const std::int64_t sb = static_cast<std::int64_t>(sizeof(float)) * n;
  const auto extent = [](const auto& v) {
    return v.tokens > 0 ? ((v.tokens - 1) * v.row_stride + v.features) *
                              static_cast<std::int64_t>(sizeof(*v.data))
                        : 0;
  };
  if (detail::bytes_overlap(scores.data, sb, before.data, extent(before)) ||
      detail::bytes_overlap(scores.data, sb, after.data, extent(after)))
    detail::fail<shape_error>(fn, "scores overlaps before or after");
  float* tmp = ws.scores(static_cast<std::size_t>(n));
  detail::v2drop_core(fn, before, after, spans, tmp);
  std::copy(tmp, tmp + n, scores.data);
}

// One V2Drop drop: scores, selects and builds the keep list.
//
//   before, after, spans  as v2drop_scores (T = before.tokens, the current
//                sequence length).
//   query_pos    positions in [0, T) kept whatever their score (pass the
//                last prompt token's, whose row gives the logits); may be
//                empty. One inside a span takes one of its slots.
//   budget       Budget::per_span: keep_counts has spans.size entries,
//                keep_counts[i] in [0, spans[i].length]; Budget::global:
//                one count in [0, sum(lengths)] over all spans together.
//   ws           scratch (ws.reserve(1, 1, query_pos.size, 1, 1,
//                sum(lengths)) makes the call allocation-free).
//   keep         out, at least T - sum(lengths) + kept entries (T is always
//                enough): the keep list, ascending; entries past it are not
//                written.
//   maybe_new_spans  out, empty or spans.size entries (may be spans itself).
//   maybe_scores out, empty or sum(lengths) entries: the scores ranked.
// Returns the new length. Everything is validated and every score checked
// finite before keep, maybe_new_spans or maybe_scores is written.
template <class Tb, class Ta>
std::int64_t v2drop_drop(TokenView<const Tb> before, TokenView<const Ta> after,
                         span<const std::int64_t> query_pos, span<const ImageSpan> spans,
                         Budget budget, span<const std::int64_t> keep_counts, Workspace& ws,
                         span<std::int64_t> keep, span<ImageSpan> maybe_new_spans = {},
                         span<float> maybe_scores = {}) {
  static_assert(is_float_type_v<Tb> && is_float_type_v<Ta>,
                "before and after must be float, pdrop::half or pdrop::bfloat16");
  return detail::v2drop_drop_impl("pdrop::v2drop_drop", before, after, query_pos, spans, budget,
                                  keep_counts, ws, keep, maybe_new_spans, maybe_scores);
}

// One sequence of a V2Drop batch drop (pdrop/batch.hpp's layouts: ragged,
// packed with token_slice, padded).
//   before, after, query_pos, spans  as v2drop_drop (before.tokens is the
//                sequence's length; spans may be empty: it passes through).
//   keep_counts  per_span: spans.size counts; global: one count.
template <class Tb, class Ta>
struct V2DropSequence {
  TokenView<const Tb> before;
  TokenView<const Ta> after;
  span<const std::int64_t> query_pos;
  span<const ImageSpan> spans;
  span<const std::int64_t> keep_counts;
  Budget budget = Budget::per_span;
};

// One V2Drop drop over a batch: every sequence as v2drop_drop would do it
// alone, the keep lists packed one after the other.
//   seqs, ws, keep, keep_offsets, maybe_new_lengths, maybe_new_spans,
//   maybe_scores  as rank_and_drop_batch (pdrop/batch.hpp): keep_offsets
//                B+1 entries, sequence b's keep list (its own indices) is
//                keep[keep_offsets[b] .. keep_offsets[b+1]).
// Returns the kept rows of the batch. Every sequence and output is
// validated, and every sequence scored (a non-finite variation is a
// value_error naming the sequence), before any output is written.
template <class Tb, class Ta>
std::int64_t v2drop_batch(span<const V2DropSequence<Tb, Ta>> seqs, Workspace& ws,
                          span<std::int64_t> keep, span<std::int64_t> keep_offsets,
                          span<std::int64_t> maybe_new_lengths = {},
                          span<ImageSpan> maybe_new_spans = {},
                          span<float> maybe_scores = {}) {
  static_assert(is_float_type_v<Tb> && is_float_type_v<Ta>,
                "before and after must be float, pdrop::half or pdrop::bfloat16");
  constexpr const char* fn = "pdrop::v2drop_batch";
  using Seq = V2DropSequence<Tb, Ta>;
  return detail::drop_batch_impl(
      fn, seqs, ws, keep, keep_offsets, maybe_new_lengths, maybe_new_spans, maybe_scores,
      [&](const Seq& s) {
        return detail::validate_v2drop_drop(fn, s.before, s.after, s.query_pos, s.spans,
                                            s.budget, s.keep_counts, ws);
      },
      [](const Seq& s) { return s.before.tokens; },
      [&](const Seq& s, span<float> out) {
        detail::v2drop_core(fn, s.before, s.after, s.spans, out.data);
      });
}

PDROP_END_NAMESPACE

#endif  // PDROP_V2DROP_HPP
