// pdrop/batch.hpp - one drop over a batch of sequences of different lengths,
// image positions and image counts.
//
// Every sequence is scored and selected on its own (its own query rows, its
// own keys, its own spans and budget), exactly as rank_and_drop would do it
// alone; a sequence without image spans passes through (its keep list is
// 0..T_b-1). The keep lists come back packed one after the other, with
// offsets, in each sequence's own indices:
//
//   keep[keep_offsets[b] + i]  (i < keep_offsets[b+1] - keep_offsets[b])
//
// Layouts. A sequence is described by views, so any batch layout works:
//   ragged     each sequence in its own buffers: views over them.
//   packed     a llama.cpp-style ubatch, the rows of all sequences one after
//              the other with seq_offsets (B+1): token_slice(k, off[b],
//              off[b+1] - off[b]) for each sequence; after the call,
//              batch_keep_rows turns the keep lists into rows of the packed
//              buffer, so one compact_rows / compact_heads call compacts the
//              whole ubatch and keep_offsets are its new seq_offsets.
//   padded     (B, T_max, ...) right-padded with per-sequence lengths:
//              sequence b's view starts at b * batch_stride with
//              tokens = length[b]; compact each sequence's rows with its own
//              keep list (padding rows are never read).
//
// One SequenceDrop per sequence, a Workspace reserved for the largest
// (Hq, Hkv, max query rows, max T, d, all image tokens), then one
// rank_and_drop_batch call; docs/integration.md, "Batches", shows a packed
// ubatch (run as written in examples/guide/batch_ubatch.cpp).
#ifndef PDROP_BATCH_HPP
#define PDROP_BATCH_HPP

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>

#include "pdrop/config.hpp"
#include "pdrop/compact.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/rank_drop.hpp"
#include "pdrop/score.hpp"
#include "pdrop/view.hpp"
#include "pdrop/workspace.hpp"

PDROP_BEGIN_NAMESPACE

// One sequence of a batch drop.
//   q, query_pos, k, spans   as rank_and_drop (k.tokens is the sequence's
//                length; spans may be empty: the sequence passes through).
//   keep_counts  per_span: spans.size counts (e.g. per_span_budgets);
//                global: one count over all spans (e.g. global_budget).
template <class Tq, class Tk>
struct SequenceDrop {
  HeadView<const Tq> q;
  span<const std::int64_t> query_pos;
  HeadView<const Tk> k;
  span<const ImageSpan> spans;
  span<const std::int64_t> keep_counts;
  Budget budget = Budget::per_span;
};

// Rows [begin, begin + count) of a view: one sequence of a packed batch.
// Throws shape_error unless 0 <= begin <= begin + count <= v.tokens.
template <class T>
HeadView<T> token_slice(HeadView<T> v, std::int64_t begin, std::int64_t count) {
  if (begin < 0 || count < 0 || begin > v.tokens || count > v.tokens - begin)
    detail::fail<shape_error>("pdrop::token_slice", "rows [", begin, ", ", begin, " + ",
                              count, ") must lie inside [0, v.tokens = ", v.tokens, "]");
  return HeadView<T>(count > 0 ? v.data + begin * v.token_stride : v.data, v.heads, count,
                     v.dim, v.head_stride, v.token_stride);
}

template <class T>
TokenView<T> token_slice(TokenView<T> v, std::int64_t begin, std::int64_t count) {
  if (begin < 0 || count < 0 || begin > v.tokens || count > v.tokens - begin)
    detail::fail<shape_error>("pdrop::token_slice", "rows [", begin, ", ", begin, " + ",
                              count, ") must lie inside [0, v.tokens = ", v.tokens, "]");
  return TokenView<T>(count > 0 ? v.row(begin) : v.data, count, v.features, v.row_stride);
}

// Packed batch: keep[i] += seq_offsets[b] for every entry of sequence b's
// keep list, turning the lists rank_and_drop_batch wrote into one keep list
// over the rows of the packed buffer (strictly ascending when the
// sequences' rows are, as seq_offsets requires).
//   keep          the lists, keep_offsets[B] entries used.
//   keep_offsets  B+1 entries, as rank_and_drop_batch wrote them.
//   seq_offsets   B+1 entries: sequence b's rows are [seq_offsets[b],
//                 seq_offsets[b+1]) of the packed buffer, non-decreasing.
// Validated in full (every entry inside its sequence) before writing.
inline void batch_keep_rows(span<std::int64_t> keep, span<const std::int64_t> keep_offsets,
                            span<const std::int64_t> seq_offsets) {
  constexpr const char* fn = "pdrop::batch_keep_rows";
  if (keep_offsets.size < 1 || keep_offsets.data == nullptr)
    detail::fail<shape_error>(fn, "keep_offsets.size (", keep_offsets.size,
                              ") must be >= 1 (B+1 entries)");
  if (seq_offsets.size != keep_offsets.size || seq_offsets.data == nullptr)
    detail::fail<shape_error>(fn, "seq_offsets.size (", seq_offsets.size,
                              ") must equal keep_offsets.size (", keep_offsets.size, ")");
  const std::int64_t batch = keep_offsets.size - 1;
  if (keep_offsets[0] != 0 || seq_offsets[0] < 0)
    detail::fail<value_error>(fn, "keep_offsets[0] (", keep_offsets[0],
                              ") must be 0 and seq_offsets[0] (", seq_offsets[0],
                              ") >= 0");
  for (std::int64_t b = 0; b < batch; ++b) {
    if (keep_offsets[b + 1] < keep_offsets[b] || seq_offsets[b + 1] < seq_offsets[b])
      detail::fail<value_error>(fn, "keep_offsets and seq_offsets must be non-decreasing (at ",
                                b + 1, ")");
    if (keep_offsets[b + 1] - keep_offsets[b] > seq_offsets[b + 1] - seq_offsets[b])
      detail::fail<value_error>(fn, "sequence ", b, " keeps ",
                                keep_offsets[b + 1] - keep_offsets[b], " rows of ",
                                seq_offsets[b + 1] - seq_offsets[b]);
  }
  if (keep.size < keep_offsets[batch] || (keep_offsets[batch] > 0 && keep.data == nullptr))
    detail::fail<shape_error>(fn, "keep.size (", keep.size, ") must be >= keep_offsets[B] (",
                              keep_offsets[batch], ")");
  for (std::int64_t b = 0; b < batch; ++b)
    detail::validate_keep(fn, span<const std::int64_t>(keep.data + keep_offsets[b],
                                                       keep_offsets[b + 1] - keep_offsets[b]),
                          seq_offsets[b + 1] - seq_offsets[b]);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t i = keep_offsets[b]; i < keep_offsets[b + 1]; ++i)
      keep[i] += seq_offsets[b];
}

namespace detail {

// Runs f, rethrowing an error of sequence b with the sequence named.
// Without exceptions the error reaches the handler from inside f, so its
// message names the operator f called but not the sequence.
template <class F>
auto for_sequence(const char* fn, std::int64_t b, F&& f) -> decltype(f()) {
#if PDROP_EXCEPTIONS
  try {
    return f();
  } catch (const shape_error& e) {
    fail<shape_error>(fn, "seqs[", b, "]: ", without_prefix(fn, e));
  } catch (const value_error& e) {
    fail<value_error>(fn, "seqs[", b, "]: ", without_prefix(fn, e));
  }
#else
  (void)fn;
  (void)b;
  return f();
#endif
}

template <class T>
std::int64_t bytes_of_span(span<T> s) {
  return s.size > 0 ? s.size * static_cast<std::int64_t>(sizeof(T)) : 0;
}

// One drop over a batch of sequences of type Seq (fields spans, query_pos,
// keep_counts, budget): validate(s) checks a sequence's inputs and returns
// its DropPlan, tokens_of(s) its length, score(s, out) fills its scores.
// Every strategy that ranks by a score shares it (rank_and_drop_batch,
// v2drop_batch in pdrop/v2drop.hpp).
template <class Seq, class Validate, class TokensOf, class Score>
std::int64_t drop_batch_impl(const char* fn, span<const Seq> seqs, Workspace& ws,
                             span<std::int64_t> keep, span<std::int64_t> keep_offsets,
                             span<std::int64_t> maybe_new_lengths,
                             span<ImageSpan> maybe_new_spans, span<float> maybe_scores,
                             Validate&& validate, TokensOf&& tokens_of, Score&& score) {
  if (seqs.size < 0 || (seqs.size > 0 && seqs.data == nullptr))
    fail<shape_error>(fn, "seqs.data is null with ", seqs.size, " entries");
  const std::int64_t batch = seqs.size;
  // Every sequence's inputs; totals of the batch.
  std::int64_t n_image = 0, rows = 0, n_spans = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    const Seq& s = seqs[b];
    const DropPlan p = for_sequence(fn, b, [&] { return validate(s); });
    n_image = checked_add(fn, "image tokens of the batch", n_image, p.n_image);
    rows = checked_add(fn, "rows of the batch", rows, p.t_new);
    n_spans += s.spans.size;
  }
  // The outputs.
  if (keep_offsets.size != batch + 1 || keep_offsets.data == nullptr)
    fail<shape_error>(fn, "keep_offsets.size (", keep_offsets.size, ") must be seqs.size + 1 (",
                      batch + 1, ")");
  if (keep.size < rows || (rows > 0 && keep.data == nullptr))
    fail<shape_error>(fn, "keep.size (", keep.size, ") must be >= the kept rows of the batch (",
                      rows, ")");
  if (maybe_new_lengths.size != 0 &&
      (maybe_new_lengths.size != batch || maybe_new_lengths.data == nullptr))
    fail<shape_error>(fn, "maybe_new_lengths.size (", maybe_new_lengths.size,
                      ") must be 0 or seqs.size (", batch, ")");
  if (maybe_new_spans.size != 0 &&
      (maybe_new_spans.size != n_spans || maybe_new_spans.data == nullptr))
    fail<shape_error>(fn, "maybe_new_spans.size (", maybe_new_spans.size,
                      ") must be 0 or the spans of all sequences (", n_spans, ")");
  if (maybe_scores.size != 0 && (maybe_scores.size != n_image || maybe_scores.data == nullptr))
    fail<shape_error>(fn, "maybe_scores.size (", maybe_scores.size,
                      ") must be 0 or the image tokens of all sequences (", n_image, ")");
  // No output may overlap another output or a sequence's index arrays
  // (except a sequence's new spans written over its own spans).
  const span<std::int64_t> keep_used(keep.data, rows);
  struct Region { const void* p; std::int64_t bytes; const char* name; };
  const Region outs[] = {{keep_used.data, bytes_of_span(keep_used), "keep"},
                         {keep_offsets.data, bytes_of_span(keep_offsets), "keep_offsets"},
                         {maybe_new_lengths.data, bytes_of_span(maybe_new_lengths), "maybe_new_lengths"},
                         {maybe_new_spans.data, bytes_of_span(maybe_new_spans), "maybe_new_spans"},
                         {maybe_scores.data, bytes_of_span(maybe_scores), "maybe_scores"}};
  for (const Region& a : outs)
    for (const Region& o : outs)
      if (&a < &o && bytes_overlap(a.p, a.bytes, o.p, o.bytes))
        fail<shape_error>(fn, a.name, " overlaps ", o.name);
  for (std::int64_t b = 0, sp = 0; b < batch; ++b) {
    const Seq& s = seqs[b];
    const Region ins[] = {{s.spans.data, bytes_of_span(s.spans), "spans"},
                          {s.keep_counts.data, bytes_of_span(s.keep_counts), "keep_counts"},
                          {s.query_pos.data, bytes_of_span(s.query_pos), "query_pos"}};
    for (const Region& o : outs)
      for (const Region& in : ins) {
        const bool own_spans = &o == &outs[3] && &in == &ins[0] &&
                               maybe_new_spans.size > 0 &&
                               maybe_new_spans.data + sp == s.spans.data;
        if (!own_spans && bytes_overlap(o.p, o.bytes, in.p, in.bytes))
          fail<shape_error>(fn, o.name, " overlaps seqs[", b, "].", in.name);
      }
    sp += s.spans.size;
  }

  // Scores of every sequence into the workspace (a non-finite q or k still
  // throws here, before any output is written), then sequence by sequence
  // rank_and_drop's second half into its part of the outputs.
  float* scores = ws.scores(static_cast<std::size_t>(n_image));
  for (std::int64_t b = 0, off = 0; b < batch; ++b) {
    const Seq& s = seqs[b];
    std::int64_t n = 0;
    for (const ImageSpan& x : s.spans) n += x.length;
    if (n > 0) for_sequence(fn, b, [&] { score(s, span<float>(scores + off, n)); });
    off += n;
  }
  keep_offsets[0] = 0;
  for (std::int64_t b = 0, sp = 0, off = 0; b < batch; ++b) {
    const Seq& s = seqs[b];
    std::int64_t n = 0;
    for (const ImageSpan& x : s.spans) n += x.length;
    const span<const std::int64_t> forced = forced_tokens(s.spans, s.query_pos, ws);
    const DropPlan p = plan_drop(fn, s.spans, n, tokens_of(s), s.budget, s.keep_counts, forced);
    finish_drop(fn, p, tokens_of(s), s.spans, s.budget, s.keep_counts, forced,
                span<const float>(scores + off, n), ws,
                span<std::int64_t>(keep.data + keep_offsets[b], p.t_new),
                maybe_new_spans.size > 0 ? span<ImageSpan>(maybe_new_spans.data + sp,
                                                           s.spans.size)
                                         : span<ImageSpan>(),
                maybe_scores.size > 0 ? span<float>(maybe_scores.data + off, n)
                                      : span<float>());
    keep_offsets[b + 1] = keep_offsets[b] + p.t_new;
    if (maybe_new_lengths.size > 0) maybe_new_lengths[b] = p.t_new;
    sp += s.spans.size;
    off += n;
  }
  return rows;
}

template <class Tq, class Tk, class Score>
std::int64_t rank_and_drop_batch_impl(span<const SequenceDrop<Tq, Tk>> seqs, Workspace& ws,
                                      span<std::int64_t> keep,
                                      span<std::int64_t> keep_offsets,
                                      span<std::int64_t> maybe_new_lengths,
                                      span<ImageSpan> maybe_new_spans,
                                      span<float> maybe_scores,
                                      const ScoreOptions& options, Score&& score) {
  static_assert(is_float_type_v<Tq> && is_float_type_v<Tk>,
                "q and k must be float, pdrop::half or pdrop::bfloat16");
  constexpr const char* fn = "pdrop::rank_and_drop_batch";
  return drop_batch_impl(
      fn, seqs, ws, keep, keep_offsets, maybe_new_lengths, maybe_new_spans, maybe_scores,
      [&](const SequenceDrop<Tq, Tk>& s) {
        return validate_drop_inputs(fn, erase(s.q), sizeof(Tq), s.query_pos, erase(s.k),
                                    sizeof(Tk), s.spans, s.budget, s.keep_counts, options, ws);
      },
      [](const SequenceDrop<Tq, Tk>& s) { return s.k.tokens; }, score);
}

}  // namespace detail

// One drop over a batch: every sequence as rank_and_drop (per_span) or
// rank_and_drop_global (global) would do it alone.
//
//   seqs          B sequences (any lengths, image counts, budgets).
//   ws            scratch; ws.reserve(Hq, Hkv, max nq, max T, d, image
//                 tokens of the whole batch) makes the call allocation-free.
//   keep          out, at least sum over b of T_b - image_b + kept_b
//                 entries: the keep lists, sequence after sequence, each in
//                 its sequence's own indices (0..T_b-1), ascending.
//   keep_offsets  out, B+1 entries: sequence b's list is
//                 keep[keep_offsets[b] .. keep_offsets[b+1]).
//   maybe_new_lengths  out, empty or B entries: T_b after the drop.
//   maybe_new_spans    out, empty or the spans of all sequences, sequence
//                 after sequence (a sequence's part may be its own spans
//                 array; no other overlap).
//   maybe_scores  out, empty or the image tokens of all sequences: the
//                 scores, sequence after sequence.
//   options       as score_image_tokens, for every sequence.
// Returns the kept rows of the batch (keep_offsets[B]). Every sequence and
// every output is validated, and every sequence scored (a non-finite q/k is
// a value_error naming the sequence), before any output is written.
template <class Tq, class Tk>
std::int64_t rank_and_drop_batch(span<const SequenceDrop<Tq, Tk>> seqs, Workspace& ws,
                                 span<std::int64_t> keep, span<std::int64_t> keep_offsets,
                                 span<std::int64_t> maybe_new_lengths = {},
                                 span<ImageSpan> maybe_new_spans = {},
                                 span<float> maybe_scores = {},
                                 const ScoreOptions& options = {}) {
  return detail::rank_and_drop_batch_impl(
      seqs, ws, keep, keep_offsets, maybe_new_lengths, maybe_new_spans, maybe_scores, options,
      [&](const SequenceDrop<Tq, Tk>& s, span<float> out) {
        detail::score_run("pdrop::rank_and_drop_batch",
                          detail::make_score_job(s.q, s.query_pos, s.k, s.spans, options,
                                                 out.size),
                          ws, out);
      });
}

// The same, each sequence scored with its kv-head groups spread over the
// caller's parallel_for (size ws with reserve_parallel); bit-identical.
template <class Tq, class Tk, class ParallelFor>
std::int64_t rank_and_drop_batch(span<const SequenceDrop<Tq, Tk>> seqs, Workspace& ws,
                                 span<std::int64_t> keep, span<std::int64_t> keep_offsets,
                                 span<std::int64_t> maybe_new_lengths,
                                 span<ImageSpan> maybe_new_spans, span<float> maybe_scores,
                                 const ScoreOptions& options, ParallelFor&& parallel_for) {
  return detail::rank_and_drop_batch_impl(
      seqs, ws, keep, keep_offsets, maybe_new_lengths, maybe_new_spans, maybe_scores, options,
      [&](const SequenceDrop<Tq, Tk>& s, span<float> out) {
        detail::score_run("pdrop::rank_and_drop_batch",
                          detail::make_score_job(s.q, s.query_pos, s.k, s.spans, options,
                                                 out.size),
                          ws, out, parallel_for);
      });
}

PDROP_END_NAMESPACE

#endif  // PDROP_BATCH_HPP
