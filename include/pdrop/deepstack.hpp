// pdrop/deepstack.hpp - Qwen3-VL's DeepStack visual features through a drop.
//
// What DeepStack is (arXiv 2406.04334; HF transformers 4.57
// modeling_qwen3_vl.py). Qwen3-VL's vision tower returns, besides the
// image/video embeddings the prompt carries, one extra feature row per
// visual token for each of `levels` vision-encoder layers
// (Qwen3VLVisionModel.forward, deepstack_visual_indexes: one row per merged
// token, of the language model's width). The language model adds level j
// to the hidden states of the visual tokens right after decoder layer j,
// for j < levels (Qwen3VLTextModel.forward: `if deepstack_visual_embeds is
// not None and layer_idx in range(len(deepstack_visual_embeds))`, then
// _deepstack_process: hidden_states[visual_pos_masks, :] += visual_embeds).
// visual_pos_masks marks the image and video placeholder tokens; the feature
// rows are in sequence order (masked_scatter), so visual row r belongs to
// the r-th visual token of the sequence (Qwen3VLModel.forward joins image
// and video rows in that order when a prompt has both).
//
// With drops. A drop before the last layer that receives DeepStack features
// removes visual tokens whose feature rows must go too: the rows of level j
// are added after layer j to the visual tokens still in the sequence. The
// pruned sequence's visual tokens are the kept ones, in order, so the kept
// rows, compacted in order, line up with them again. deepstack_keep gives
// the kept rows' indices alone (for compact_rows on each level); after the
// drop, with the drop's keep list `kl` over the T tokens before it and the
// visual spans before it (run as written in examples/guide/qwen3_vl.cpp):
//   pdrop::compact_rows(pdrop::TokenView<float>(x.data(), T, D), kl);
//   pdrop::compact_positions(pdrop::TokenView<I64>(pos.data(), T, 3), kl,
//                            pdrop::PositionMode::keep_original);
//   // the levels still to come lose the dropped visual tokens' rows
//   const I64 kept_rows = pdrop::compact_deepstack<float>({level.data() + l, n_levels - l},
//                                                         spans_before, T, kl, ds_rows);
//   images = {{3, 3}, {9, 2}};  // the spans after the drop (SequenceState gives them)
//   const I64 t_new = static_cast<I64>(keep.size());
//   // ... decoder layer l runs on t_new rows, then (HF _deepstack_process):
//   pdrop::deepstack_add(pdrop::TokenView<float>(x.data(), t_new, D),
//                        pdrop::TokenView<const float>(level[l].data, kept_rows, D), images);
//
// Spans are pdrop::ImageSpan (start, length) over the current sequence,
// sorted and disjoint: the runs of visual_pos_masks. Every function
// validates all its arguments before writing anything and allocates nothing.
#ifndef PDROP_DEEPSTACK_HPP
#define PDROP_DEEPSTACK_HPP

#include <cstdint>
#include <type_traits>

#include "pdrop/compact.hpp"
#include "pdrop/config.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/types.hpp"

PDROP_BEGIN_NAMESPACE

namespace detail {

// Spans sorted, disjoint, inside [0, tokens), lengths >= 0; returns the
// number of visual tokens.
inline std::int64_t check_visual_spans(const char* fn, span<const ImageSpan> spans,
                                       std::int64_t tokens) {
  if (spans.size < 0 || (spans.size > 0 && spans.data == nullptr))
    fail<shape_error>(fn, "visual_spans.data is null with ", spans.size, " entries");
  std::int64_t n = 0, end = 0;
  for (std::int64_t i = 0; i < spans.size; ++i) {
    const ImageSpan s = spans[i];
    if (s.start < end || s.length < 0 || s.start > tokens || s.length > tokens - s.start)
      fail<value_error>(fn, "visual_spans[", i, "] (start ", s.start, ", length ", s.length,
                        ") must lie in [", end, ", tokens = ", tokens,
                        "), after the previous span");
    end = s.start + s.length;
    n += s.length;
  }
  return n;
}

}  // namespace detail

// The visual feature rows a drop keeps: for every entry of `keep` (the
// drop's keep list over all `tokens` tokens, strictly ascending) that falls
// in a visual span, its index among the visual tokens (0 for the first token
// of the first span, counting through the spans in order). These are the
// DeepStack rows to keep, ascending: pass them to compact_rows on each
// level's (visual tokens x D) rows.
//   visual_spans  the visual (image / video placeholder) spans BEFORE the
//                 drop, sorted, disjoint, inside [0, tokens).
//   tokens        T, the sequence length before the drop.
//   keep          the drop's keep list (compact.hpp), entries in [0, T).
//   rows          out, at least as many entries as keep hits visual tokens
//                 (at most the visual token count); entries past the
//                 returned count are not written.
// Returns the number of rows written. Throws shape_error / value_error
// (naming the argument and value) before writing anything.
inline std::int64_t deepstack_keep(span<const ImageSpan> visual_spans, std::int64_t tokens,
                                   span<const std::int64_t> keep, span<std::int64_t> rows) {
  constexpr const char* fn = "pdrop::deepstack_keep";
  if (tokens < 0) detail::fail<value_error>(fn, "tokens (", tokens, ") must be >= 0");
  detail::check_visual_spans(fn, visual_spans, tokens);
  detail::validate_keep(fn, keep, tokens);
  // Count the hits (one merge pass over the sorted keep list and spans).
  std::int64_t hits = 0;
  {
    std::int64_t s = 0;
    for (std::int64_t i = 0; i < keep.size; ++i) {
      while (s < visual_spans.size && visual_spans[s].end() <= keep[i]) ++s;
      if (s < visual_spans.size && keep[i] >= visual_spans[s].start) ++hits;
    }
  }
  if (rows.size < hits || (hits > 0 && rows.data == nullptr))
    detail::fail<shape_error>(fn, "rows.size (", rows.size, ") must be >= the kept visual tokens (",
                              hits, ")");
  std::int64_t n = 0, s = 0, before = 0;  // before: visual tokens in spans < s
  for (std::int64_t i = 0; i < keep.size; ++i) {
    while (s < visual_spans.size && visual_spans[s].end() <= keep[i]) {
      before += visual_spans[s].length;
      ++s;
    }
    if (s < visual_spans.size && keep[i] >= visual_spans[s].start)
      rows[n++] = before + (keep[i] - visual_spans[s].start);
  }
  return n;
}

// deepstack_keep, then compact_rows of every level with the kept rows, in
// place. Every level is (visual tokens before the drop) x D rows, any type,
// any row stride; the levels must not overlap one another. `rows` is the
// caller's scratch (>= the visual token count is always enough). Returns
// the kept row count (each level's new token count). Validates everything
// (spans, keep, every level's shape) before moving any row.
template <class T>
std::int64_t compact_deepstack(span<const TokenView<T>> levels,
                               span<const ImageSpan> visual_spans, std::int64_t tokens,
                               span<const std::int64_t> keep, span<std::int64_t> rows) {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T>,
                "DeepStack rows are a writable, trivially copyable type");
  constexpr const char* fn = "pdrop::compact_deepstack";
  if (tokens < 0) detail::fail<value_error>(fn, "tokens (", tokens, ") must be >= 0");
  const std::int64_t visual = detail::check_visual_spans(fn, visual_spans, tokens);
  if (levels.size < 0 || (levels.size > 0 && levels.data == nullptr))
    detail::fail<shape_error>(fn, "levels.data is null with ", levels.size, " entries");
  for (std::int64_t j = 0; j < levels.size; ++j) {
    const TokenView<T>& v = levels[j];
    detail::check_token_view(fn, "levels[j]", v.data, v.tokens, v.features, v.row_stride,
                             sizeof(T));
    if (v.tokens != visual)
      detail::fail<shape_error>(fn, "levels[", j, "].tokens (", v.tokens,
                                ") must equal the visual tokens of visual_spans (", visual, ")");
  }
  const std::int64_t n = deepstack_keep(visual_spans, tokens, keep, rows);
  for (std::int64_t j = 0; j < levels.size; ++j) compact_rows(levels[j], {rows.data, n});
  return n;
}

// Qwen3-VL's _deepstack_process: hidden[v] += level[r] for the r-th visual
// token v of visual_spans (in order), feature by feature, in place; the sum
// is taken in float and stored back into T (float, half, bfloat16: any
// type convertible to and from float; this header stays light).
//   hidden        tokens x D, the hidden states after decoder layer j.
//   level         (visual tokens) x D: DeepStack level j, compacted with
//                 every drop so far (compact_deepstack).
//   visual_spans  the visual spans of the current sequence, inside hidden.
// Throws shape_error / value_error before writing when shapes disagree or
// level overlaps hidden.
template <class T>
void deepstack_add(TokenView<T> hidden, TokenView<const T> level,
                   span<const ImageSpan> visual_spans) {
  static_assert(!std::is_const_v<T> && !std::is_integral_v<T> &&
                    std::is_constructible_v<T, float> && std::is_constructible_v<float, T>,
                "deepstack_add writes rows of a floating type: float, pdrop::half, "
                "pdrop::bfloat16 (pdrop/view.hpp)");
  constexpr const char* fn = "pdrop::deepstack_add";
  detail::check_token_view(fn, "hidden", hidden.data, hidden.tokens, hidden.features,
                           hidden.row_stride, sizeof(T));
  detail::check_token_view(fn, "level", level.data, level.tokens, level.features,
                           level.row_stride, sizeof(T));
  const std::int64_t visual = detail::check_visual_spans(fn, visual_spans, hidden.tokens);
  if (level.tokens != visual)
    detail::fail<shape_error>(fn, "level.tokens (", level.tokens,
                              ") must equal the visual tokens of visual_spans (", visual, ")");
  if (level.features != hidden.features)
    detail::fail<shape_error>(fn, "level.features (", level.features,
                              ") must equal hidden.features (", hidden.features, ")");
  const auto bytes = [&](auto v) {
    return detail::checked_extent(fn, "views", v.tokens, v.row_stride, 1, 0, v.features,
                                  sizeof(T)) *
           static_cast<std::int64_t>(sizeof(T));
  };
  if (detail::bytes_overlap(hidden.data, bytes(hidden), level.data, bytes(level)))
    detail::fail<shape_error>(fn, "level overlaps hidden: hidden is written in place");
  std::int64_t r = 0;
  for (std::int64_t s = 0; s < visual_spans.size; ++s)
    for (std::int64_t t = visual_spans[s].start; t < visual_spans[s].end(); ++t, ++r) {
      T* h = hidden.row(t);
      const T* f = level.row(r);
      for (std::int64_t c = 0; c < hidden.features; ++c)
        h[c] = static_cast<T>(static_cast<float>(h[c]) + static_cast<float>(f[c]));
    }
}

PDROP_END_NAMESPACE

#endif  // PDROP_DEEPSTACK_HPP
