// pdrop/rank_drop.hpp - one drop in one call: score -> select -> keep list.
//
// A runtime at a drop point (after layer l of a schedule) has the next
// layer's post-RoPE q and k for the current sequence. rank_and_drop scores
// the image tokens from them, keeps the best `keep_counts[i]` of span i, and
// returns the keep list the runtime then applies with compact_rows /
// compact_heads / compact_positions to each of its per-token buffers:
//
//   pdrop::Workspace ws;                                  // once
//   ws.reserve(Hq, Hkv, 1, T, d, N0);                     // optional
//   if (std::int64_t j = schedule.drop_after(layer)) {
//     std::int64_t n_keep = schedule.image_tokens(N0, j);
//     std::int64_t t_new = pdrop::rank_and_drop(
//         q_next, {&last_pos, 1}, k_next, {&span, 1}, {&n_keep, 1}, ws,
//         keep, {&span, 1});
//     pdrop::compact_rows(hidden, {keep.data(), t_new});
//     pdrop::compact_heads(q_next, {keep.data(), t_new});   // reuse them
//     pdrop::compact_positions(positions, {keep.data(), t_new});
//   }
#ifndef PDROP_RANK_DROP_HPP
#define PDROP_RANK_DROP_HPP

#include <algorithm>
#include <cstdint>

#include "pdrop/compact.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/score.hpp"
#include "pdrop/select.hpp"
#include "pdrop/view.hpp"
#include "pdrop/workspace.hpp"

namespace pdrop {

// Scores, selects and builds the keep list of one drop.
//
//   q, query_pos, k, spans   as score_image_tokens.
//   keep_counts  spans.size entries: image tokens to keep in each span, each
//                in [0, spans[i].length] (e.g. Schedule::image_tokens).
//   ws           scratch (Workspace::reserve makes the call allocation-free).
//   keep         out, at least T - sum(lengths) + sum(keep_counts) entries:
//                the keep list, ascending; entries past it are not written.
//   maybe_new_spans  out, empty or spans.size entries (may be `spans`
//                itself): the image spans of the compacted sequence.
//   maybe_scores out, empty or sum(lengths) entries: the scores ranked.
//   options      as score_image_tokens.
// Returns the new sequence length (the keep list's size). Everything is
// validated, and the scores checked finite, before any output is written.
template <class Tq, class Tk>
std::int64_t rank_and_drop(HeadView<const Tq> q, span<const std::int64_t> query_pos,
                           HeadView<const Tk> k, span<const ImageSpan> spans,
                           span<const std::int64_t> keep_counts, Workspace& ws,
                           span<std::int64_t> keep,
                           span<ImageSpan> maybe_new_spans = {},
                           span<float> maybe_scores = {},
                           const ScoreOptions& options = {}) {
  constexpr const char* fn = "pdrop::rank_and_drop";
  // Every check first: the caller's buffers and the workspace stay
  // untouched until all have passed.
  const std::int64_t n_image =
      detail::validate_score_inputs(fn, detail::erase(q), sizeof(Tq), query_pos,
                                    detail::erase(k), sizeof(Tk), spans, options);
  if (keep_counts.size != spans.size)
    detail::fail<shape_error>(fn, "keep_counts.size (", keep_counts.size,
                              ") must equal spans.size (", spans.size, ")");
  if (keep_counts.size > 0 && keep_counts.data == nullptr)
    detail::fail<shape_error>(fn, "keep_counts.data is null with ", keep_counts.size,
                              " entries");
  std::int64_t n_kept = 0;
  for (std::int64_t i = 0; i < spans.size; ++i) {
    if (keep_counts[i] < 0 || keep_counts[i] > spans[i].length)
      detail::fail<value_error>(fn, "keep_counts[", i, "] (", keep_counts[i],
                                ") must be in [0, spans[", i, "].length = ",
                                spans[i].length, "]");
    n_kept += keep_counts[i];
  }
  const std::int64_t t_new = k.tokens - n_image + n_kept;
  if (keep.size < t_new)
    detail::fail<shape_error>(fn, "keep.size (", keep.size, ") must be >= the new length ",
                              t_new, " (tokens ", k.tokens, " - image ", n_image,
                              " + kept ", n_kept, ")");
  if (t_new > 0 && keep.data == nullptr)
    detail::fail<shape_error>(fn, "keep.data is null with ", keep.size, " entries");
  detail::check_new_spans(fn, spans, maybe_new_spans);
  if (maybe_scores.size != 0 && maybe_scores.size != n_image)
    detail::fail<shape_error>(fn, "maybe_scores.size (", maybe_scores.size,
                              ") must be 0 or the image tokens (", n_image, ")");
  if (maybe_scores.size > 0 && maybe_scores.data == nullptr)
    detail::fail<shape_error>(fn, "maybe_scores.data is null with ", maybe_scores.size,
                              " entries");

  // Scores go to the workspace: the caller's buffers are written only after
  // scoring (which may still reject non-finite q/k) has succeeded.
  const span<float> scores(ws.scores(static_cast<std::size_t>(n_image)), n_image);
  score_image_tokens(q, query_pos, k, spans, ws, scores, options);

  std::int64_t* kept = ws.indices(static_cast<std::size_t>(n_kept));
  for (std::int64_t i = 0, offset = 0, out = 0; i < spans.size; ++i) {
    const span<std::int64_t> part(kept + out, keep_counts[i]);
    select_top_k(span<const float>(scores.data + offset, spans[i].length),
                 keep_counts[i], ws, part);
    for (std::int64_t& x : part) x += spans[i].start;
    offset += spans[i].length;
    out += keep_counts[i];
  }
  if (maybe_scores.size > 0) std::copy(scores.begin(), scores.end(), maybe_scores.data);
  build_keep_list(k.tokens, spans, span<const std::int64_t>(kept, n_kept),
                  span<std::int64_t>(keep.data, t_new), maybe_new_spans);
  return t_new;
}

}  // namespace pdrop

#endif  // PDROP_RANK_DROP_HPP
