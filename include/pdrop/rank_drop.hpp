// pdrop/rank_drop.hpp - one drop in one call: score -> select -> keep list.
//
// A runtime at a drop point (right before 0-based layer l runs:
// Schedule::drop_before(l) > 0) has that layer's post-RoPE q and k for the
// current sequence. rank_and_drop scores
// the image tokens from them, keeps the best `keep_counts[i]` of span i, and
// returns the keep list the runtime then applies with compact_rows /
// compact_heads / compact_positions to each of its per-token buffers. The
// drop inside README.md's loop (`seq` the sequence's SequenceState, `stage`
// = schedule.drop_before(layer), `ws` a Workspace, `keep` T entries; run
// as written in examples/guide/readme.cpp):
//   // This layer's q/k at the current positions (post-RoPE), as your
//   // runtime lays them out: HND, NHD or a slice of a fused QKV buffer.
//   auto q = pdrop::split_heads(pdrop::TokenView<const float>(q_buf + (T - 1) * Hq * d, 1, Hq * d), Hq);
//   auto k = pdrop::nhd_view(k_buf, pdrop::Heads{Hkv}, pdrop::Tokens{T}, pdrop::Dim{d});
//   std::int64_t n_keep = 0, last = T - 1;
//   seq.keep_counts(stage, pdrop::Budget::per_span, {&n_keep, 1});  // int(N0 * ratio)
//   const std::int64_t T_old = T;
//   T = pdrop::rank_and_drop(q, {last}, k, seq.spans(), {n_keep}, ws, keep);  // new length
//   seq.apply_drop({keep.data(), T});                // checks and records the drop
//   pdrop::compact_rows(pdrop::TokenView<float>(hidden, T_old, D), {keep.data(), T});
//   pdrop::compact_positions(pdrop::TokenView<std::int64_t>(pos, T_old, 1), {keep.data(), T},
//                            seq.position_mode());
//
// Query tokens survive. A query position inside an image span (a prompt
// that ends with an image, a training-mode query) is always kept: its
// output row gives the next-token logits, or the next drop's query. It
// takes one of its span's slots (of the global count with Budget::global),
// so a stage keeps exactly its count whenever the count covers the query
// tokens in the span; a smaller count (VTW's 0) keeps them anyway:
// kept = max(count, query tokens), and the keep list, new spans and the
// returned length say so. Counting it against the budget keeps the
// schedule's counts (and FLOPs, KV sizes) exact for every prompt the
// papers ran; their code never meets the case (prompts end with text).
//
// Several images (or video frames) in one sequence are several spans.
// Budget::per_span keeps int(N0_i * ratio) of each (per_span_budgets of the
// original spans, then rank_and_drop); Budget::global keeps
// int(sum N0_i * ratio) over all of them together (global_budget, then
// rank_and_drop_global). Both take an optional parallel_for last, for
// bit-identical scoring over threads. Batches of sequences: batch.hpp.
#ifndef PDROP_RANK_DROP_HPP
#define PDROP_RANK_DROP_HPP

#include <algorithm>
#include <cstdint>
#include <utility>

#include "pdrop/config.hpp"
#include "pdrop/budget.hpp"
#include "pdrop/compact.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/detail/std.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/score.hpp"
#include "pdrop/select.hpp"
#include "pdrop/view.hpp"
#include "pdrop/workspace.hpp"

PDROP_BEGIN_NAMESPACE

namespace detail {

// The query tokens a drop keeps whatever their score: the query positions
// that lie inside an image span, sorted, without repeats, in ws.forced().
// (Text tokens are kept anyway.) query_pos is validated by the caller.
inline span<const std::int64_t> forced_tokens(span<const ImageSpan> spans,
                                              span<const std::int64_t> query_pos,
                                              Workspace& ws) {
  if (query_pos.size <= 0 || spans.size <= 0) return {};
  std::int64_t* f = ws.forced(static_cast<std::size_t>(query_pos.size));
  std::int64_t n = 0;
  for (const std::int64_t q : query_pos) {
    // The last span starting at or before q.
    const ImageSpan* s = std::upper_bound(
        spans.data, spans.data + spans.size, q,
        [](std::int64_t p, const ImageSpan& x) { return p < x.start; });
    if (s != spans.data && q < (s - 1)->end()) f[n++] = q;
  }
  std::sort(f, f + n, less{});
  n = std::unique(f, f + n) - f;
  return {f, n};
}

// How many of `forced` (sorted) lie in each span, walked span by span: call
// next(span) for spans in order.
struct ForcedWalk {
  span<const std::int64_t> forced;
  std::int64_t at = 0;
  // The forced tokens inside s (which starts at or after every earlier
  // span's end), as a sub-span of `forced`.
  span<const std::int64_t> next(const ImageSpan& s) {
    while (at < forced.size && forced[at] < s.start) ++at;
    const std::int64_t begin = at;
    while (at < forced.size && forced[at] < s.end()) ++at;
    return {forced.data + begin, at - begin};
  }
};

// Sizes of one drop that plan_drop accepted.
struct DropPlan {
  std::int64_t n_image = 0;  // image tokens over all spans
  std::int64_t n_kept = 0;   // image tokens kept, forced query tokens included
  std::int64_t t_new = 0;    // the new sequence length
};

// The keep counts of a drop over `spans` (n_image tokens in all) of a
// sequence of `tokens`: spans.size per-span counts or, for Budget::global,
// one count over all spans. A forced query token takes one of its span's
// (or the global) slots; a count smaller than the forced tokens it covers
// keeps those tokens anyway: kept = max(count, forced).
inline DropPlan plan_drop(const char* fn, span<const ImageSpan> spans, std::int64_t n_image,
                          std::int64_t tokens, Budget budget,
                          span<const std::int64_t> counts, span<const std::int64_t> forced) {
  DropPlan p;
  p.n_image = n_image;
  if (budget == Budget::global) {
    if (counts.size != 1 || counts.data == nullptr)
      fail<shape_error>(fn, "a global budget needs one count (got ", counts.size,
                        counts.data == nullptr ? ", null" : "", ")");
    if (counts[0] < 0 || counts[0] > p.n_image)
      fail<value_error>(fn, "n_keep (", counts[0],
                        ") must be in [0, image tokens over all spans = ", p.n_image, "]");
    p.n_kept = std::max(counts[0], forced.size);
  } else {
    check_keep_counts(fn, spans, counts);
    ForcedWalk walk{forced};
    for (std::int64_t i = 0; i < spans.size; ++i)
      p.n_kept += std::max(counts[i], walk.next(spans[i]).size);
  }
  p.t_new = tokens - p.n_image + p.n_kept;
  return p;
}

// Every input of a drop (q, query_pos, k, spans, options as
// score_image_tokens; counts as plan_drop).
inline DropPlan validate_drop_inputs(const char* fn, HeadView<const void> q,
                                     std::size_t q_elem,
                                     span<const std::int64_t> query_pos,
                                     HeadView<const void> k, std::size_t k_elem,
                                     span<const ImageSpan> spans, Budget budget,
                                     span<const std::int64_t> counts,
                                     const ScoreOptions& options, Workspace& ws) {
  const std::int64_t n_image =
      validate_score_inputs(fn, q, q_elem, query_pos, k, k_elem, spans, options);
  return plan_drop(fn, spans, n_image, k.tokens, budget, counts,
                   forced_tokens(spans, query_pos, ws));
}

// The outputs of one drop: keep holds at least plan.t_new entries,
// maybe_new_spans is empty / spans.size (spans itself or disjoint),
// maybe_scores is empty / plan.n_image.
inline void validate_drop_outputs(const char* fn, const DropPlan& p, std::int64_t tokens,
                                  span<const ImageSpan> spans, span<std::int64_t> keep,
                                  span<ImageSpan> maybe_new_spans,
                                  span<float> maybe_scores) {
  if (keep.size < p.t_new)
    fail<shape_error>(fn, "keep.size (", keep.size, ") must be >= the new length ",
                      p.t_new, " (tokens ", tokens, " - image ", p.n_image, " + kept ",
                      p.n_kept, ")");
  if (p.t_new > 0 && keep.data == nullptr)
    fail<shape_error>(fn, "keep.data is null with ", keep.size, " entries");
  check_new_spans(fn, spans, maybe_new_spans);
  if (maybe_scores.size != 0 && maybe_scores.size != p.n_image)
    fail<shape_error>(fn, "maybe_scores.size (", maybe_scores.size,
                      ") must be 0 or the image tokens (", p.n_image, ")");
  if (maybe_scores.size > 0 && maybe_scores.data == nullptr)
    fail<shape_error>(fn, "maybe_scores.data is null with ", maybe_scores.size,
                      " entries");
  // The outputs are written one after the other, so no output may overlap
  // another or the spans (maybe_new_spans may be spans itself).
  const auto bytes = [](const void* p, std::int64_t n, std::size_t elem) {
    return std::pair<const void*, std::int64_t>(p, n * static_cast<std::int64_t>(elem));
  };
  const auto k = bytes(keep.data, p.t_new, sizeof(std::int64_t));
  const auto sp = bytes(spans.data, spans.size, sizeof(ImageSpan));
  const auto ns = bytes(maybe_new_spans.data, maybe_new_spans.size, sizeof(ImageSpan));
  const auto sc = bytes(maybe_scores.data, maybe_scores.size, sizeof(float));
  if (bytes_overlap(k.first, k.second, sp.first, sp.second) ||
      bytes_overlap(k.first, k.second, ns.first, ns.second))
    fail<shape_error>(fn, "keep overlaps spans or maybe_new_spans");
  if (bytes_overlap(sc.first, sc.second, k.first, k.second) ||
      bytes_overlap(sc.first, sc.second, sp.first, sp.second) ||
      bytes_overlap(sc.first, sc.second, ns.first, ns.second))
    fail<shape_error>(fn, "maybe_scores overlaps keep, spans or maybe_new_spans");
}

// out[0, picked) holds picked positions ascending; merges in the forced
// positions (ascending, none among them) from the back, so out[0, picked +
// forced.size) is ascending.
inline void merge_forced(std::int64_t* out, std::int64_t picked,
                         span<const std::int64_t> forced) {
  std::int64_t i = picked - 1, j = forced.size - 1, w = picked + forced.size - 1;
  while (j >= 0) {
    const std::int64_t f = forced[j];
    if (i >= 0 && out[i] > f) {
      out[w--] = out[i--];
    } else {
      out[w--] = f;
      --j;
    }
  }
}

// kept (plan.n_kept entries) = the absolute positions of the kept image
// tokens, ascending, from finite `scores` (spans laid out one after the
// other): the forced query tokens, and the best of the others to fill
// counts[i] of span i, or counts[0] of all spans together (Budget::global).
// Ties rank the lower position first. Uses the workspace's selection keys
// (not its scores or indices); a non-finite score is a value_error of fn
// with nothing but the workspace written.
inline void select_kept(const char* fn, span<const float> scores,
                        span<const ImageSpan> spans, Budget budget,
                        span<const std::int64_t> counts, span<const std::int64_t> forced,
                        Workspace& ws, std::int64_t* kept) {
  const std::int64_t n = scores.size;
  if (n == 0) return;
  std::uint32_t* keys = ws.keys32(static_cast<std::size_t>(n));
  std::uint32_t lo = 0, hi = 0;
  score_keys(fn, scores, keys, lo, hi);
  // Forced tokens leave the ranking: key 0 is below every finite score.
  {
    ForcedWalk walk{forced};
    for (std::int64_t i = 0, offset = 0; i < spans.size; offset += spans[i++].length)
      for (const std::int64_t f : walk.next(spans[i])) keys[offset + f - spans[i].start] = 0;
    if (forced.size > 0) key_range(keys, n, lo, hi);
  }
  if (budget == Budget::global) {
    const std::int64_t pick = std::max<std::int64_t>(counts[0] - forced.size, 0);
    select_top_k_keys(keys, n, pick, lo, hi, ws, kept);
    // Indices into the concatenated spans -> positions, in one forward walk.
    std::int64_t sp = 0, offset = 0;
    for (std::int64_t i = 0; i < pick; ++i) {
      while (kept[i] >= offset + spans[sp].length) offset += spans[sp++].length;
      kept[i] += spans[sp].start - offset;
    }
    merge_forced(kept, pick, forced);
    return;
  }
  ForcedWalk walk{forced};
  for (std::int64_t i = 0, offset = 0, out = 0; i < spans.size; ++i) {
    const span<const std::int64_t> f = walk.next(spans[i]);
    const std::int64_t len = spans[i].length;
    const std::int64_t pick = std::max<std::int64_t>(counts[i] - f.size, 0);
    std::int64_t* part = kept + out;
    if (pick > 0) {
      std::uint32_t slo = 0, shi = 0;
      key_range(keys + offset, len, slo, shi);
      select_top_k_keys(keys + offset, len, pick, slo, shi, ws, part);
    }
    for (std::int64_t j = 0; j < pick; ++j) part[j] += spans[i].start;
    merge_forced(part, pick, f);
    offset += len;
    out += pick + f.size;
  }
}

// The second half of a validated drop, once `scores` (the workspace's)
// holds every image token's score: selects, copies the scores out if
// asked, writes the keep list and the new spans. Returns plan.t_new.
inline std::int64_t finish_drop(const char* fn, const DropPlan& p, std::int64_t tokens,
                                span<const ImageSpan> spans, Budget budget,
                                span<const std::int64_t> counts,
                                span<const std::int64_t> forced, span<const float> scores,
                                Workspace& ws, span<std::int64_t> keep,
                                span<ImageSpan> maybe_new_spans, span<float> maybe_scores) {
  std::int64_t* kept = ws.indices(static_cast<std::size_t>(p.n_kept));
  select_kept(fn, scores, spans, budget, counts, forced, ws, kept);
  if (maybe_scores.size > 0) std::copy(scores.begin(), scores.end(), maybe_scores.data);
  build_keep_list(tokens, spans, span<const std::int64_t>(kept, p.n_kept),
                  span<std::int64_t>(keep.data, p.t_new), maybe_new_spans);
  return p.t_new;
}

// One drop, validated in full before any output is written (each input
// once); `score(job, scores)` fills the workspace's scores from the
// validated job (score_run, serial or on the caller's parallel_for).
template <class Tq, class Tk, class Score>
std::int64_t rank_and_drop_impl(const char* fn, HeadView<const Tq> q,
                                span<const std::int64_t> query_pos, HeadView<const Tk> k,
                                span<const ImageSpan> spans, Budget budget,
                                span<const std::int64_t> counts, Workspace& ws,
                                span<std::int64_t> keep, span<ImageSpan> maybe_new_spans,
                                span<float> maybe_scores, const ScoreOptions& options,
                                Score&& score) {
  static_assert(is_float_type_v<Tq> && is_float_type_v<Tk>,
                "q and k must be float, pdrop::half or pdrop::bfloat16");
  const DropPlan p = validate_drop_inputs(fn, erase(q), sizeof(Tq), query_pos, erase(k),
                                          sizeof(Tk), spans, budget, counts, options, ws);
  validate_drop_outputs(fn, p, k.tokens, spans, keep, maybe_new_spans, maybe_scores);
  // Scores go to the workspace: the caller's buffers are written only after
  // scoring (which may still reject non-finite q/k) has succeeded.
  const span<float> scores(ws.scores(static_cast<std::size_t>(p.n_image)), p.n_image);
  score(make_score_job(q, query_pos, k, spans, options, p.n_image), scores);
  return finish_drop(fn, p, k.tokens, spans, budget, counts,
                     forced_tokens(spans, query_pos, ws), scores, ws, keep, maybe_new_spans,
                     maybe_scores);
}

}  // namespace detail

// Scores, selects and builds the keep list of one drop.
//
//   q, query_pos, k, spans   as score_image_tokens.
//   keep_counts  spans.size entries: image tokens to keep in each span, each
//                in [0, spans[i].length] (SequenceState::keep_counts, or
//                per_span_budgets of the original spans). A span holding
//                f query tokens keeps max(keep_counts[i], f): the query
//                tokens and the best of its other tokens.
//   ws           scratch (Workspace::reserve makes the call allocation-free).
//   keep         out, at least T - sum(lengths) + sum(max(keep_counts[i],
//                query tokens in span i)) entries (T is always enough): the
//                keep list, ascending; entries past it are not written.
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
  return detail::rank_and_drop_impl(
      fn, q, query_pos, k, spans, Budget::per_span, keep_counts, ws,
      keep, maybe_new_spans, maybe_scores, options,
      [&](const auto& job, span<float> s) { detail::score_run(fn, job, ws, s); });
}

// The same, scoring with the kv-head groups spread over the caller's
// parallel_for (see the parallel score_image_tokens; size the workspace with
// Workspace::reserve_parallel). Keep list, new spans and scores are
// bit-identical to the serial overload, whatever the threads.
template <class Tq, class Tk, class ParallelFor>
std::int64_t rank_and_drop(HeadView<const Tq> q, span<const std::int64_t> query_pos,
                           HeadView<const Tk> k, span<const ImageSpan> spans,
                           span<const std::int64_t> keep_counts, Workspace& ws,
                           span<std::int64_t> keep, span<ImageSpan> maybe_new_spans,
                           span<float> maybe_scores, const ScoreOptions& options,
                           ParallelFor&& parallel_for) {
  constexpr const char* fn = "pdrop::rank_and_drop";
  return detail::rank_and_drop_impl(
      fn, q, query_pos, k, spans, Budget::per_span, keep_counts, ws,
      keep, maybe_new_spans, maybe_scores, options,
      [&](const auto& job, span<float> s) { detail::score_run(fn, job, ws, s, parallel_for); });
}

// One drop with a global budget over several image spans: keeps the
// n_keep best-scored image tokens of all spans together (ties: the lower
// position first), every text token, all in order.
//
//   n_keep   in [0, sum(lengths)] (e.g. global_budget(original spans, ratio)).
//   keep     out, at least T - sum(lengths) + max(n_keep, query tokens
//            inside the spans) entries (T is always enough).
//   maybe_new_spans  out, empty or spans.size entries: each span's kept
//            tokens after compaction (lengths sum to max(n_keep, query
//            tokens inside the spans); a span may keep none).
//   Everything else as rank_and_drop.
template <class Tq, class Tk>
std::int64_t rank_and_drop_global(HeadView<const Tq> q, span<const std::int64_t> query_pos,
                                  HeadView<const Tk> k, span<const ImageSpan> spans,
                                  std::int64_t n_keep, Workspace& ws,
                                  span<std::int64_t> keep,
                                  span<ImageSpan> maybe_new_spans = {},
                                  span<float> maybe_scores = {},
                                  const ScoreOptions& options = {}) {
  constexpr const char* fn = "pdrop::rank_and_drop_global";
  return detail::rank_and_drop_impl(
      fn, q, query_pos, k, spans, Budget::global,
      span<const std::int64_t>(&n_keep, 1), ws, keep, maybe_new_spans, maybe_scores,
      options,
      [&](const auto& job, span<float> s) { detail::score_run(fn, job, ws, s); });
}

// rank_and_drop_global with the caller's parallel_for (bit-identical).
template <class Tq, class Tk, class ParallelFor>
std::int64_t rank_and_drop_global(HeadView<const Tq> q, span<const std::int64_t> query_pos,
                                  HeadView<const Tk> k, span<const ImageSpan> spans,
                                  std::int64_t n_keep, Workspace& ws,
                                  span<std::int64_t> keep, span<ImageSpan> maybe_new_spans,
                                  span<float> maybe_scores, const ScoreOptions& options,
                                  ParallelFor&& parallel_for) {
  constexpr const char* fn = "pdrop::rank_and_drop_global";
  return detail::rank_and_drop_impl(
      fn, q, query_pos, k, spans, Budget::global,
      span<const std::int64_t>(&n_keep, 1), ws, keep, maybe_new_spans, maybe_scores,
      options,
      [&](const auto& job, span<float> s) { detail::score_run(fn, job, ws, s, parallel_for); });
}

PDROP_END_NAMESPACE

#endif  // PDROP_RANK_DROP_HPP
