// pdrop/tensor_parallel.hpp - scoring when the heads are sharded over ranks.
//
// Under tensor parallelism each rank holds a contiguous block of kv heads
// and their query heads (q head h belongs to kv head h / (Hq / Hkv), as in
// score.hpp). The score of an image token is a sum over kv-head groups, so
// it splits into partial sums that the ranks add up:
//
//   1. every rank:  score_partial_by_kv_head(q_local, pos, k_local, spans,
//                       {kv_begin, Hkv}, ws, sums)   // Hkv x N floats
//   2. the engine:  MPI_Allreduce(MPI_IN_PLACE, sums, Hkv * N, MPI_FLOAT,
//                       MPI_SUM, comm)   (or NCCL, or any sum all-reduce)
//   3. every rank:  finalize_and_drop(sums, Hkv, Hq, query_pos, T, spans, counts,
//                       ws, keep)        // or finalize_and_drop_global, or
//                                        // finalize_scores + select_top_k
//
// Exactness. score_image_tokens sums the kv-head groups in order,
// ((0 + p_0) + p_1) + ... + p_{G-1}, then multiplies by 1 / (Hq * nq).
//  - score_partial_by_kv_head writes one row per kv head: p_g in row g for
//    its own kv heads (bit for bit the p_g of score_image_tokens), zeros in
//    every other row. In the sum all-reduce each element then has a single
//    non-zero addend, x + 0 = x exactly in any order or tree, so every rank
//    receives exactly the p_g of every group, and finalize sums them in
//    group order: the scores are bit-identical to score_image_tokens on the
//    unsharded q and k, and the keep list to rank_and_drop's, for any split,
//    rank count and all-reduce algorithm. Cost: Hkv x N floats all-reduced
//    instead of N (e.g. 8 x 2880 floats = 92 KB per drop).
//  - score_partial writes the N sums over the rank's own kv heads (in
//    order). All-reducing those regroups the additions, so the finalized
//    scores equal score_image_tokens only within rounding: every score is a
//    sum of G non-negative terms, each order within (G - 1) eps of the exact
//    sum, then scaled and rounded, so |finalized - single| <= 2 G eps
//    |single| (eps = 2^-24), and the selection can differ only between
//    tokens whose scores are that close. It is exact for a single rank, and
//    whenever each rank after the first holds one kv head and the reduction
//    adds the ranks in rank order (with two ranks a + b = b + a, so any
//    all-reduce). Every rank still selects the same tokens as long as the
//    all-reduce delivers the same bits to every rank (MPI recommends it and
//    Open MPI's and NCCL's algorithms do; a reduce + broadcast guarantees it).
//
// finalize_scores, finalize_and_drop and finalize_and_drop_global take
// either form: `rows` = Hkv for the per-kv-head sums, 1 for score_partial's.
// Both partial scorers have a parallel_for overload (as score_image_tokens)
// with the same bits. Workspace: reserve_parallel for the per-kv-head sums
// and the parallel overloads, reserve for serial score_partial and the
// finalize functions.
//
// ScorePrecision's chain modes (score.hpp) are not supported: they round
// each query row's mean over ALL query heads to fp16 / bf16, which no sum
// of per-rank partial sums reproduces. Both partial scorers throw
// value_error for them, before writing anything.
#ifndef PDROP_TENSOR_PARALLEL_HPP
#define PDROP_TENSOR_PARALLEL_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "pdrop/config.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/rank_drop.hpp"
#include "pdrop/score.hpp"
#include "pdrop/view.hpp"
#include "pdrop/workspace.hpp"

PDROP_BEGIN_NAMESPACE

// The kv heads one rank holds: [kv_begin, kv_begin + k.heads) of kv_heads
// (the model's kv-head count over all ranks). Its q view holds exactly their
// query heads, in order.
struct HeadShard {
  std::int64_t kv_begin = 0;
  std::int64_t kv_heads = 0;
};

namespace detail {

// Sorted, disjoint spans inside [0, tokens); returns their total length.
inline std::int64_t validate_spans(const char* fn, span<const ImageSpan> spans,
                                   std::int64_t tokens) {
  if (tokens < 0) fail<shape_error>(fn, "tokens (", tokens, ") must be >= 0");
  return check_spans(fn, spans, tokens, "tokens");
}

// Checks the inputs of finalize_scores / finalize_and_drop: `sums` holds
// rows x n_image finite, non-negative floats; q_heads, queries >= 1.
inline void validate_sums(const char* fn, span<const float> sums, std::int64_t rows,
                          std::int64_t q_heads, std::int64_t queries,
                          std::int64_t n_image) {
  if (rows < 1) fail<shape_error>(fn, "rows (", rows, ") must be >= 1");
  if (q_heads < 1) fail<shape_error>(fn, "q_heads (", q_heads, ") must be >= 1");
  if (queries < 1) fail<shape_error>(fn, "queries (", queries, ") must be >= 1");
  checked_mul(fn, "q_heads * queries", q_heads, queries);
  const std::int64_t want = checked_mul(fn, "rows * image tokens", rows, n_image);
  if (sums.size != want)
    fail<shape_error>(fn, "sums.size (", sums.size, ") must equal rows (", rows,
                      ") x image tokens (", n_image, ") = ", want);
  if (want > 0 && sums.data == nullptr)
    fail<shape_error>(fn, "sums.data is null with ", want, " entries");
  for (std::int64_t i = 0; i < sums.size; ++i)
    if (!(sums[i] >= 0.0f && std::isfinite(sums[i])))
      fail<value_error>(fn, "sums[", i, "] (", sums[i],
                        ") must be finite and >= 0: a sum of probabilities");
}

// Validates a shard's scoring inputs; returns the image tokens N.
template <class Tq, class Tk>
std::int64_t validate_partial(const char* fn, HeadView<const Tq> q,
                              span<const std::int64_t> query_pos, HeadView<const Tk> k,
                              span<const ImageSpan> spans, const ScoreOptions& options) {
  static_assert(is_float_type_v<Tq> && is_float_type_v<Tk>,
                "q and k must be float, pdrop::half or pdrop::bfloat16");
  const std::int64_t n = validate_score_inputs(fn, erase(q), sizeof(Tq), query_pos, erase(k),
                                               sizeof(Tk), spans, options);
  // The chain modes round each query row's mean over ALL heads: a sum of
  // per-rank partial sums cannot give that rounding (pdrop/score.hpp).
  if (options.precision != ScorePrecision::fp32)
    fail<value_error>(fn, "options.precision (", precision_name(options.precision),
                      ") is not supported by partial scores: the chain rounds the mean "
                      "over all heads, which sums over ranks cannot reproduce; score the "
                      "unsharded q and k with score_image_tokens / rank_and_drop");
  return n;
}

// score_partial_by_kv_head, with the groups over parallel_for.
template <class Tq, class Tk, class ParallelFor>
void partial_by_kv_head(HeadView<const Tq> q, span<const std::int64_t> query_pos,
                        HeadView<const Tk> k, span<const ImageSpan> spans, HeadShard shard,
                        Workspace& ws, span<float> sums, const ScoreOptions& options,
                        ParallelFor&& parallel_for) {
  constexpr const char* fn = "pdrop::score_partial_by_kv_head";
  const std::int64_t n = validate_partial(fn, q, query_pos, k, spans, options);
  if (shard.kv_heads < 1 || shard.kv_begin < 0 || shard.kv_begin > shard.kv_heads ||
      k.heads > shard.kv_heads - shard.kv_begin)
    fail<shape_error>(fn, "shard (kv_begin ", shard.kv_begin, ", kv_heads ", shard.kv_heads,
                      ") must hold k.heads (", k.heads,
                      ") kv heads: 0 <= kv_begin and kv_begin + k.heads <= kv_heads");
  const std::int64_t want = checked_mul(fn, "sums", shard.kv_heads, n);
  if (sums.size != want)
    fail<shape_error>(fn, "sums.size (", sums.size, ") must equal shard.kv_heads (",
                      shard.kv_heads, ") x image tokens (", n, ") = ", want);
  if (want > 0 && sums.data == nullptr)
    fail<shape_error>(fn, "sums.data is null with ", want, " entries");

  const auto job = make_score_job(q, query_pos, k, spans, options, n);
  const GroupSums parts = score_group_slots(fn, job, ws, parallel_for);
  std::fill(sums.begin(), sums.end(), 0.0f);
  for (std::int64_t j = 0; j < k.heads; ++j)
    std::copy(parts.group(j), parts.group(j) + n, sums.data + (shard.kv_begin + j) * n);
}

// score_partial, with the groups over parallel_for.
template <class Tq, class Tk, class ParallelFor>
void partial(HeadView<const Tq> q, span<const std::int64_t> query_pos, HeadView<const Tk> k,
             span<const ImageSpan> spans, Workspace& ws, span<float> out,
             const ScoreOptions& options, ParallelFor&& parallel_for) {
  constexpr const char* fn = "pdrop::score_partial";
  const std::int64_t n = validate_partial(fn, q, query_pos, k, spans, options);
  if (out.size != n)
    fail<shape_error>(fn, "partial.size (", out.size,
                      ") must equal the image tokens over all spans (", n, ")");
  if (n > 0 && out.data == nullptr)
    fail<shape_error>(fn, "partial.data is null with ", n, " entries");
  const auto job = make_score_job(q, query_pos, k, spans, options, n);
  if constexpr (std::is_same_v<std::decay_t<ParallelFor>, SerialFor>) {
    // One slot, as score_image_tokens: what Workspace::reserve sizes.
    const float* acc = score_groups_summed(fn, job, ws);
    std::copy(acc, acc + n, out.data);
  } else {
    const GroupSums parts = score_group_slots(fn, job, ws, parallel_for);
    sum_groups(parts, k.heads, n, nullptr, out.data, parallel_for);
  }
}

// finalize_and_drop (Budget::per_span) and finalize_and_drop_global: all
// validated before anything is written, then rank_and_drop's second half.
inline std::int64_t finalize_and_drop_impl(
    const char* fn, span<const float> sums, std::int64_t rows, std::int64_t q_heads,
    span<const std::int64_t> query_pos, std::int64_t tokens, span<const ImageSpan> spans,
    Budget budget, span<const std::int64_t> counts, Workspace& ws, span<std::int64_t> keep,
    span<ImageSpan> maybe_new_spans, span<float> maybe_scores) {
  const std::int64_t n_image = validate_spans(fn, spans, tokens);
  if (query_pos.size < 1)
    fail<shape_error>(fn, "query_pos.size (", query_pos.size,
                      ") must be >= 1: the query rows' positions");
  if (query_pos.data == nullptr)
    fail<shape_error>(fn, "query_pos.data is null with ", query_pos.size, " entries");
  for (std::int64_t i = 0; i < query_pos.size; ++i)
    if (query_pos[i] < 0 || query_pos[i] >= tokens)
      fail<value_error>(fn, "query_pos[", i, "] (", query_pos[i],
                        ") must be in [0, tokens = ", tokens, ")");
  const std::int64_t queries = query_pos.size;
  validate_sums(fn, sums, rows, q_heads, queries, n_image);
  const DropPlan p = plan_drop(fn, spans, n_image, tokens, budget, counts,
                               forced_tokens(spans, query_pos, ws));
  validate_drop_outputs(fn, p, tokens, spans, keep, maybe_new_spans, maybe_scores);
  const span<float> scores(ws.scores(static_cast<std::size_t>(n_image)), n_image);
  const float inv = 1.0f / static_cast<float>(q_heads * queries);
  sum_groups(GroupSums{sums.data, n_image}, rows, n_image, &inv, scores.data, SerialFor{});
  return finish_drop(fn, p, tokens, spans, budget, counts, forced_tokens(spans, query_pos, ws),
                     scores, ws, keep, maybe_new_spans, maybe_scores);
}

}  // namespace detail

// Partial scores of one rank, one row per kv head of the whole model.
//
//   q, query_pos, k, spans, options  as score_image_tokens, with q and k the
//              rank's shard: k.heads kv heads and their q.heads query heads
//              (the same group size as the whole model).
//   shard      which kv heads k holds: kv_begin + k.heads <= kv_heads.
//   ws         scratch: one slot per local kv head
//              (Workspace::reserve_parallel(q.heads, k.heads, ...) makes the
//              call allocation-free).
//   sums       out, shard.kv_heads x N (N = sum of span lengths), row-major:
//              row kv_begin + j holds, for every image token, the sum over
//              local kv head j's query heads and query rows of its attention
//              probability (not normalised); every other row is zeroed.
// Sum-all-reduce `sums` over the ranks, then finalize_scores /
// finalize_and_drop with rows = shard.kv_heads: bit-identical to
// score_image_tokens / rank_and_drop on the unsharded q and k.
// Throws as score_image_tokens (and shape_error for a bad shard or size)
// before writing anything.
template <class Tq, class Tk>
void score_partial_by_kv_head(HeadView<const Tq> q, span<const std::int64_t> query_pos,
                              HeadView<const Tk> k, span<const ImageSpan> spans,
                              HeadShard shard, Workspace& ws, span<float> sums,
                              const ScoreOptions& options = {}) {
  detail::partial_by_kv_head(q, query_pos, k, spans, shard, ws, sums, options, SerialFor{});
}

// The same with the local kv heads spread over the caller's parallel_for
// (as score_image_tokens' parallel overload): the same bits.
template <class Tq, class Tk, class ParallelFor>
void score_partial_by_kv_head(HeadView<const Tq> q, span<const std::int64_t> query_pos,
                              HeadView<const Tk> k, span<const ImageSpan> spans,
                              HeadShard shard, Workspace& ws, span<float> sums,
                              const ScoreOptions& options, ParallelFor&& parallel_for) {
  detail::partial_by_kv_head(q, query_pos, k, spans, shard, ws, sums, options,
                             parallel_for);
}

// Partial scores of one rank, summed over its kv heads: the smaller
// all-reduce (N floats), exact only in the cases the header comment lists.
//
//   q, query_pos, k, spans, ws, options  as score_image_tokens, q and k the
//              rank's shard (Workspace::reserve(q.heads, k.heads, ...) makes
//              the call allocation-free).
//   partial    out, N: for every image token, 0 + p_0 + p_1 + ... over the
//              local kv heads in order, p_j the sum over kv head j's query
//              heads and query rows of its attention probability (not
//              normalised).
// Sum-all-reduce `partial`, then finalize_scores / finalize_and_drop with
// rows = 1. Throws as score_image_tokens before writing anything.
template <class Tq, class Tk>
void score_partial(HeadView<const Tq> q, span<const std::int64_t> query_pos,
                   HeadView<const Tk> k, span<const ImageSpan> spans, Workspace& ws,
                   span<float> partial, const ScoreOptions& options = {}) {
  detail::partial(q, query_pos, k, spans, ws, partial, options, SerialFor{});
}

// The same with the local kv heads spread over the caller's parallel_for:
// the same bits (Workspace::reserve_parallel(q.heads, k.heads, ...) makes
// the call allocation-free).
template <class Tq, class Tk, class ParallelFor>
void score_partial(HeadView<const Tq> q, span<const std::int64_t> query_pos,
                   HeadView<const Tk> k, span<const ImageSpan> spans, Workspace& ws,
                   span<float> partial, const ScoreOptions& options,
                   ParallelFor&& parallel_for) {
  detail::partial(q, query_pos, k, spans, ws, partial, options, parallel_for);
}

// Scores from all-reduced partial sums.
//
//   sums     rows x N: score_partial_by_kv_head's rows summed over every rank
//            (rows = kv heads of the model), or score_partial's sums
//            (rows = 1); finite and >= 0.
//   rows     the number of rows of `sums`.
//   q_heads  query heads of the whole model (over all ranks).
//   queries  query rows per head (q.tokens).
//   scores   out, N: (0 + row 0 + row 1 + ...) * (1 / (q_heads * queries)),
//            score_image_tokens' operations in its order. May be sums' first
//            row (in place); otherwise disjoint from sums.
// Throws shape_error / value_error before writing anything.
inline void finalize_scores(span<const float> sums, std::int64_t rows, std::int64_t q_heads,
                            std::int64_t queries, span<float> scores) {
  constexpr const char* fn = "pdrop::finalize_scores";
  if (scores.size < 0 || (scores.size > 0 && scores.data == nullptr))
    detail::fail<shape_error>(fn, "scores.data is null with ", scores.size, " entries");
  detail::validate_sums(fn, sums, rows, q_heads, queries, scores.size);
  const auto bytes = [](std::int64_t n) { return n * static_cast<std::int64_t>(sizeof(float)); };
  if (scores.data != sums.data &&
      detail::bytes_overlap(scores.data, bytes(scores.size), sums.data, bytes(sums.size)))
    detail::fail<shape_error>(fn, "scores must be disjoint from sums or start where "
                              "sums starts (in place)");
  const float inv = 1.0f / static_cast<float>(q_heads * queries);
  detail::sum_groups(detail::GroupSums{sums.data, scores.size}, rows, scores.size, &inv,
                     scores.data, SerialFor{});
}

// rank_and_drop's second half on all-reduced partial sums: finalizes the
// scores, keeps the best keep_counts[i] of span i and builds the keep list.
//
//   sums, rows, q_heads   as finalize_scores (sums is not written).
//   query_pos    the query rows' positions (as score_partial's query_pos;
//                its size is finalize_scores' `queries`): a query token
//                inside an image span is kept, as rank_and_drop does.
//   tokens       T: the sequence length (k.tokens).
//   spans        sorted, disjoint image spans inside [0, T) whose lengths
//                add up to N.
//   keep_counts, ws, keep, maybe_new_spans, maybe_scores  as rank_and_drop.
// Returns the new sequence length. With the per-kv-head sums every output is
// bit-identical to rank_and_drop on the unsharded q and k; on every rank
// the same, given the same sums. Throws before writing anything.
inline std::int64_t finalize_and_drop(span<const float> sums, std::int64_t rows,
                                      std::int64_t q_heads,
                                      span<const std::int64_t> query_pos,
                                      std::int64_t tokens, span<const ImageSpan> spans,
                                      span<const std::int64_t> keep_counts, Workspace& ws,
                                      span<std::int64_t> keep,
                                      span<ImageSpan> maybe_new_spans = {},
                                      span<float> maybe_scores = {}) {
  return detail::finalize_and_drop_impl("pdrop::finalize_and_drop", sums, rows, q_heads,
                                        query_pos, tokens, spans, Budget::per_span,
                                        keep_counts, ws, keep, maybe_new_spans,
                                        maybe_scores);
}

// The same with one budget over all spans together, as rank_and_drop_global
// (n_keep in [0, N], e.g. global_budget(original spans, ratio)): with the
// per-kv-head sums, bit-identical to rank_and_drop_global.
inline std::int64_t finalize_and_drop_global(span<const float> sums, std::int64_t rows,
                                             std::int64_t q_heads,
                                             span<const std::int64_t> query_pos,
                                             std::int64_t tokens, span<const ImageSpan> spans,
                                             std::int64_t n_keep, Workspace& ws,
                                             span<std::int64_t> keep,
                                             span<ImageSpan> maybe_new_spans = {},
                                             span<float> maybe_scores = {}) {
  return detail::finalize_and_drop_impl(
      "pdrop::finalize_and_drop_global", sums, rows, q_heads, query_pos, tokens, spans,
      Budget::global, span<const std::int64_t>(&n_keep, 1), ws, keep, maybe_new_spans,
      maybe_scores);
}

PDROP_END_NAMESPACE

#endif  // PDROP_TENSOR_PARALLEL_HPP
