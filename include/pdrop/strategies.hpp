// pdrop/strategies.hpp - peer methods on the same operators: FastV, VTW,
// DART, V2Drop, a random baseline, and PyramidDrop's training-mode queries.
//
// Each method is a Strategy (pdrop/schedule.hpp) that decides which image
// tokens a drop keeps; the rest of a drop (build_keep_list, compact_rows /
// compact_heads / compact_positions with the schedule's position_mode())
// is shared. drop_by_strategy runs any of them from one set of inputs.
//
//   FastV    Liang Chen, Haozhe Zhao, Tianyu Liu, Shuai Bai, Junyang Lin,
//            Chang Zhou, Baobao Chang, "An Image is Worth 1/2 Tokens After
//            Layer 2: Plug-and-Play Inference Acceleration for Large
//            Vision-Language Models", ECCV 2024, arXiv 2403.06764.
//            One drop after layer K: the last token's attention averaged
//            over heads (score_image_tokens with the one query row T-1),
//            top keep_ratio of the image tokens, original positions. FastV
//            ranks with the attention map of the layer that just ran
//            (0-based layer K-1), so pass that layer's q/k, where
//            PyramidDrop passes the next layer's.
//            Keep count: FastV's code disagrees with itself. Its lmms-eval
//            port truncates (int(576 * ratio)); its HF port rounds half to
//            even (round(L * (1 - r)), r the pruned fraction). pdrop
//            truncates by default (KeepRule's Rounding::truncate,
//            pdrop/budget.hpp): it is the rule of FastV's evaluation
//            harness (the lmms-eval port) and of PyramidDrop's code, so one
//            ratio keeps the same count under either method.
//            Rounding::half_even reproduces the HF port.
//   VTW      Zhihang Lin, Mingbao Lin, Luxi Lin, Rongrong Ji, "Boosting
//            Multimodal Large Language Models with Visual Tokens Withdrawal
//            for Rapid Inference", AAAI 2025, arXiv 2405.05803. Every image
//            token withdrawn after layer K (keep count 0); nothing scored.
//   DART     arXiv 2502.11494, see pdrop/dart.hpp.
//   V2Drop   arXiv 2509.01552, see pdrop/v2drop.hpp: progressive drops of
//            the image tokens whose hidden states the layer before the drop
//            changed least; original positions.
//   random   keep_counts[i] tokens of span i drawn uniformly without
//            replacement from a seed: SplitMix64 (Steele, Lea, Flood,
//            "Fast Splittable Pseudorandom Number Generators", OOPSLA 2014)
//            and selection sampling (Knuth, TAOCP vol. 2, 3.4.2, Algorithm
//            S), integer arithmetic only, so the same seed keeps the same
//            tokens on every platform and compiler.
//   training PyramidDrop's training mode (arXiv 2410.17247) scores with
//            every token right before an answer span: the query positions
//            come from the labels (training_query_positions).
#ifndef PDROP_STRATEGIES_HPP
#define PDROP_STRATEGIES_HPP

#include <algorithm>
#include <cstdint>

#include "pdrop/config.hpp"
#include "pdrop/compact.hpp"
#include "pdrop/dart.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/rank_drop.hpp"
#include "pdrop/schedule.hpp"
#include "pdrop/score.hpp"
#include "pdrop/v2drop.hpp"
#include "pdrop/view.hpp"
#include "pdrop/workspace.hpp"

PDROP_BEGIN_NAMESPACE

// SplitMix64: state += 0x9E3779B97F4A7C15, then a fixed mix of the state.
struct SplitMix64 {
  std::uint64_t state = 0;

  constexpr explicit SplitMix64(std::uint64_t seed) : state(seed) {}

  constexpr std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  // Uniform in [0, n) for n >= 1, without modulo bias: draws below
  // 2^64 mod n are rejected, the rest reduced mod n.
  constexpr std::uint64_t below(std::uint64_t n) {
    const std::uint64_t reject = (0 - n) % n;
    for (;;) {
      const std::uint64_t x = next();
      if (x >= reject) return x % n;
    }
  }
};

namespace detail {

// Selection sampling per span, one SplitMix64 stream per span seeded by the
// span's draw from SplitMix64(seed): out receives the kept positions.
// `forced` (sorted, unique, inside spans) are kept without a draw; a span
// with f of them samples max(keep_counts[i] - f, 0) of its other tokens.
inline void random_core(span<const ImageSpan> spans, span<const std::int64_t> keep_counts,
                        std::uint64_t seed, std::int64_t* out,
                        span<const std::int64_t> forced = {}) {
  SplitMix64 master(seed);
  std::int64_t fi = 0;
  for (std::int64_t i = 0; i < spans.size; ++i) {
    SplitMix64 rng(master.next());
    const std::int64_t start = spans[i].start, n = spans[i].length;
    while (fi < forced.size && forced[fi] < start) ++fi;
    std::int64_t fe = fi;
    while (fe < forced.size && forced[fe] < start + n) ++fe;
    std::int64_t left = n - (fe - fi);  // candidates not yet visited
    std::int64_t need = std::max<std::int64_t>(keep_counts[i] - (fe - fi), 0);
    for (std::int64_t t = 0; t < n; ++t) {
      if (fi < fe && forced[fi] == start + t) {
        *out++ = start + t;
        ++fi;
        continue;
      }
      // Keep token t with probability need / (candidates left).
      if (need > 0 &&
          rng.below(static_cast<std::uint64_t>(left)) < static_cast<std::uint64_t>(need)) {
        *out++ = start + t;
        --need;
      }
      --left;
    }
    fi = fe;
  }
}

}  // namespace detail

// A uniformly random subset of keep_counts[i] image tokens of each span.
//
//   spans        sorted, disjoint image spans (start >= 0).
//   keep_counts  spans.size entries, keep_counts[i] in [0, spans[i].length].
//   seed         any 64-bit value; span i draws from SplitMix64 seeded with
//                the i-th output of SplitMix64(seed), so a span's pick does
//                not depend on the other spans.
//   kept         out, sum(keep_counts) entries: absolute positions,
//                ascending. No scratch, no allocation.
inline void random_select(span<const ImageSpan> spans, span<const std::int64_t> keep_counts,
                          std::uint64_t seed, span<std::int64_t> kept) {
  constexpr const char* fn = "pdrop::random_select";
  detail::check_spans(fn, spans, -1, "tokens");
  const std::int64_t total = detail::check_keep_counts(fn, spans, keep_counts);
  detail::check_kept(fn, spans, keep_counts, total, kept);
  detail::random_core(spans, keep_counts, seed, kept.data);
}

// Number of answer spans with a token before them: maximal runs of
// labels != ignore_index that do not start at position 0.
inline std::int64_t training_query_count(span<const std::int64_t> labels,
                                         std::int64_t ignore_index = -100) {
  if (labels.size < 0 || (labels.size > 0 && labels.data == nullptr))
    detail::fail<shape_error>("pdrop::training_query_count", "labels.data is null with ",
                              labels.size, " entries");
  std::int64_t n = 0;
  for (std::int64_t t = 1; t < labels.size; ++t)
    n += (labels[t] != ignore_index && labels[t - 1] == ignore_index);
  return n;
}

// Training-mode query positions: for every answer span (a maximal run of
// labels != ignore_index; ignore_index marks prompt, image and padding
// tokens), the position just before its first token, ascending. A span that
// starts at position 0 has none and is skipped; with no position at all the
// sample is not pruned (PyramidDrop's rule).
//   labels        T labels of one sequence.
//   ignore_index  the "not an answer" label (HF: -100).
//   out           out, at least training_query_count(labels) entries;
//                 entries past the returned count are not written.
// Returns the number of positions. Pass them as query_pos to
// score_image_tokens / rank_and_drop with the q rows of those tokens.
inline std::int64_t training_query_positions(span<const std::int64_t> labels,
                                             std::int64_t ignore_index,
                                             span<std::int64_t> out) {
  constexpr const char* fn = "pdrop::training_query_positions";
  const std::int64_t n = training_query_count(labels, ignore_index);
  if (out.size < n)
    detail::fail<shape_error>(fn, "out.size (", out.size, ") must be >= the answer spans (",
                              n, ")");
  if (n > 0 && out.data == nullptr)
    detail::fail<shape_error>(fn, "out.data is null with ", out.size, " entries");
  if (detail::bytes_overlap(out.data, static_cast<std::int64_t>(sizeof(std::int64_t)) * out.size,
                            labels.data,
                            static_cast<std::int64_t>(sizeof(std::int64_t)) * labels.size))
    detail::fail<shape_error>(fn, "out overlaps labels");
  std::int64_t w = 0;
  for (std::int64_t t = 1; t < labels.size; ++t)
    if (labels[t] != ignore_index && labels[t - 1] == ignore_index) out[w++] = t - 1;
  return w;
}

// DART as its authors' scripts run it (DART 5a19452, via docs/strategies.md,
// which cites each line): one drop after layer 2 (pruned_layer = 2), 4
// image + 4 text pivots (pivot_image_token, pivot_text_token), L1 key
// norms, and their quota of image tokens per pivot with the image pivots
// kept on top (KeepRule's DART quota, pdrop/budget.hpp). Pass `options` as
// DropInputs::dart (or dart_select's options) and run `schedule`.
struct DartSetup {
  Schedule schedule;    // Strategy::dart: one drop, original positions
  DartOptions options;  // pivots 4, text_pivots 4, PivotNorm::l1
};

namespace detail {
inline DartSetup dart_authors(std::int64_t layers, const KeepRule& base) {
  DartSetup d{Schedule::dart(layers, 2, base.with_dart_quota(DartQuota{4, 4})), DartOptions{}};
  d.options.pivots = 4;
  d.options.text_pivots = 4;
  d.options.pivot_norm = PivotNorm::l1;
  return d;
}
}  // namespace detail

// LLaVA-1.5 (scripts/v1_5/eval/*.sh): `max_num_trunction` M (their README
// passes 128) gives every one of the 8 pivots floor(M / 8) image tokens
// (modeling_llama_self.py l.409): M = 128 keeps 4 + 8 * 16 = 132 of 576.
// layers: the decoder's layer count (32 for the 7B model), >= 3.
inline DartSetup dart_llava_1_5(std::int64_t layers, std::int64_t max_num_trunction = 128) {
  if (max_num_trunction < 0 || max_num_trunction > (std::int64_t{1} << 53))
    detail::fail<value_error>("pdrop::dart_llava_1_5", "max_num_trunction (",
                              max_num_trunction, ") must be in [0, 2^53]");
  return detail::dart_authors(layers, KeepRule::count(max_num_trunction));
}

// LLaVA-NeXT (scripts/v1_6/eval/*.sh): `retain_token_num_for_llava_next`
// (320 by default) gives every pivot floor(min(320, N0 - 4) / 8) image
// tokens, N0 the image tokens of the sample (l.413-417): 324 kept.
inline DartSetup dart_llava_next(std::int64_t layers,
                                 std::int64_t retain_token_num_for_llava_next = 320) {
  if (retain_token_num_for_llava_next < 0 ||
      retain_token_num_for_llava_next > (std::int64_t{1} << 53))
    detail::fail<value_error>("pdrop::dart_llava_next", "retain_token_num_for_llava_next (",
                              retain_token_num_for_llava_next, ") must be in [0, 2^53]");
  return detail::dart_authors(layers, KeepRule::count(retain_token_num_for_llava_next));
}

// Qwen2-VL and Qwen2.5-VL (Qwen2-VL/eval_scripts/lmms_eval.sh): the pruned
// fraction `reduction_ratio` r (their wrapper's default 0.778) gives every
// pivot int(N0 * (1 - r) / 8) image tokens (modeling_qwen2_vl_self.py
// l.411; 1 - r computed in double, as Python does).
inline DartSetup dart_qwen2_vl(std::int64_t layers, double reduction_ratio = 0.778) {
  if (!(reduction_ratio >= 0.0 && reduction_ratio <= 1.0))
    detail::fail<value_error>("pdrop::dart_qwen2_vl", "reduction_ratio (", reduction_ratio,
                              ") must be in [0, 1]");
  return detail::dart_authors(layers, KeepRule(1.0 - reduction_ratio));
}

// V2Drop as its authors run it (xuyang-liu16/V2Drop 219e03e; the layers and
// ratios are literals in the decoder loops, docs/strategies.md cites them):
// drops before 0-based layers 3, 17 and 22 on LLaVA-1.5
// (llava/model/language_model/V2Drop.py: target_layer_indices {3, 17, 22},
// keep_ratio 0.5, 0.5, 0), i.e. after 1-based layers [3, 17, 22] keeping
// [0.5, 0.25, 0] of the original image tokens (288, 144, 0 of 576).
// Their ratios apply to the tokens left by the previous drop, and their
// code keeps max(1, int(n * r)): one image token survives their last drop,
// where pdrop keeps int(N0 * 0) = 0. Multiplied out, the ratios give the
// same counts as theirs before that: floor(floor(N0 / 2) / 2) = floor(N0 / 4).
// layers: the decoder's layer count (32 for the 7B model), >= 23.
inline Schedule v2drop_llava_1_5(std::int64_t layers = 32) {
  return Schedule::v2drop(layers, {3, 17, 22}, {0.5, 0.25, 0.0});
}

// Qwen2-VL (Qwen2-VL/Qwen2VL_V2Drop/modeling_qwen2_vl_self.py:
// target_layer_indices {3, 16, 22}, keep_ratio 0.25, 0.05, 0): after
// 1-based layers [3, 16, 22] keeping [0.25, 0.0125, 0] of the original
// image tokens. Theirs truncates at each step, int(int(N0 * 0.25) * 0.05);
// both are floor(N0 / 80) (tests/v2drop_test.cpp checks every N0 up to
// 20000), and theirs keeps one token after the last drop (see
// v2drop_llava_1_5). layers: 28 for the 7B model, >= 23.
inline Schedule v2drop_qwen2_vl(std::int64_t layers = 28) {
  return Schedule::v2drop(layers, {3, 16, 22}, {0.25, 0.0125, 0.0});
}

// What drop_by_strategy reads; each strategy uses only its own fields.
template <class Tq, class Tk, class Tf = float>
struct DropInputs {
  HeadView<const Tq> q;                // pyramid_drop, fastv: query rows
  span<const std::int64_t> query_pos;  // pyramid_drop, fastv: their positions;
                                       // every strategy keeps those inside a span
                                       // (pass the last prompt token's position)
  HeadView<const Tk> k;                // pyramid_drop, fastv: keys; dart: pivot norms
  TokenView<const Tf> features;        // dart: rows compared (empty: the k rows)
  TokenView<const Tf> before;          // v2drop: hidden states entering the layer
                                       // that just ran (T x D)
  TokenView<const Tf> after;           // v2drop: the same leaving it (T x D)
  std::uint64_t seed = 0;              // random
  ScoreOptions score{};                // pyramid_drop, fastv
  DartOptions dart{};                  // dart (DartSetup::options for the authors')
};

// One drop by `strategy`: picks keep_counts[i] image tokens of each span and
// writes the keep list, like rank_and_drop.
//   tokens       T, the current sequence length (== in.k.tokens for every
//                strategy that reads k).
//   in           the strategy's inputs (see DropInputs).
//   spans, keep_counts  as rank_and_drop; Strategy::vtw needs every count 0.
//                A query token (in.query_pos) inside a span is kept and takes
//                one of the span's slots, kept = max(count, query tokens):
//                DART, V2Drop and random pick the rest among the span's
//                other tokens, VTW keeps the query tokens only.
//   ws           scratch.
//   keep         out, at least T - sum(lengths) + sum(max(keep_counts[i],
//                query tokens in span i)) entries (T is always enough).
//   maybe_new_spans  out, empty or spans.size entries (may be spans itself).
// in.query_pos may be empty for dart, v2drop, random and vtw (no token is forced
// then); pass the last prompt token's position, whose row gives the logits,
// so that a prompt ending with an image keeps it (SequenceState::apply_drop
// refuses a keep list without it). Returns the new length. Everything is validated before keep or
// maybe_new_spans is written (a non-finite q/k or feature row throws
// value_error with both untouched).
template <class Tq, class Tk, class Tf>
std::int64_t drop_by_strategy(Strategy strategy, std::int64_t tokens,
                              const DropInputs<Tq, Tk, Tf>& in, span<const ImageSpan> spans,
                              span<const std::int64_t> keep_counts, Workspace& ws,
                              span<std::int64_t> keep, span<ImageSpan> maybe_new_spans = {}) {
  constexpr const char* fn = "pdrop::drop_by_strategy";
  const detail::CalledAs called(fn);  // rank_and_drop's errors named after this call
  const bool reads_k = strategy == Strategy::pyramid_drop || strategy == Strategy::fastv ||
                       strategy == Strategy::dart;
  if (!reads_k && strategy != Strategy::vtw && strategy != Strategy::random &&
      strategy != Strategy::v2drop)
    detail::fail<value_error>(fn, "strategy (", static_cast<int>(strategy),
                              ") is not a pdrop::Strategy");
  if (tokens < 0) detail::fail<shape_error>(fn, "tokens (", tokens, ") must be >= 0");
  if (reads_k && in.k.tokens != tokens)
    detail::fail<shape_error>(fn, "in.k.tokens (", in.k.tokens, ") must equal tokens (",
                              tokens, ") for Strategy::", strategy_name(strategy));
  if (strategy == Strategy::pyramid_drop || strategy == Strategy::fastv)
    return rank_and_drop(in.q, in.query_pos, in.k, spans, keep_counts, ws, keep,
                         maybe_new_spans, {}, in.score);
  if (strategy == Strategy::v2drop) {
    if (in.before.tokens != tokens)
      detail::fail<shape_error>(fn, "in.before.tokens (", in.before.tokens,
                                ") must equal tokens (", tokens, ") for Strategy::v2drop");
    return detail::v2drop_drop_impl(fn, in.before, in.after, in.query_pos, spans,
                                    Budget::per_span, keep_counts, ws, keep, maybe_new_spans,
                                    {});
  }

  detail::check_query_positions(fn, "in.query_pos", in.query_pos, tokens);
  const std::int64_t n_image = detail::check_spans(fn, spans, tokens, "tokens");
  const span<const std::int64_t> forced = detail::forced_tokens(spans, in.query_pos, ws);
  const detail::DropPlan plan =
      detail::plan_drop(fn, spans, n_image, tokens, Budget::per_span, keep_counts, forced);
  const std::int64_t total = plan.n_kept;
  std::int64_t max_span = 0;
  if (strategy == Strategy::vtw)
    for (std::int64_t i = 0; i < keep_counts.size; ++i)
      if (keep_counts[i] != 0)
        detail::fail<value_error>(fn, "keep_counts[", i, "] (", keep_counts[i],
                                  ") must be 0: Strategy::vtw withdraws every image token");
  const bool own_features = in.features.data != nullptr || in.features.tokens != 0;
  if (strategy == Strategy::dart)
    detail::validate_dart(fn, detail::erase(in.k), sizeof(Tk), in.features.data,
                          in.features.tokens, in.features.features, in.features.row_stride,
                          sizeof(Tf), spans, keep_counts, in.dart, max_span);
  detail::validate_drop_outputs(fn, plan, tokens, spans, keep, maybe_new_spans, {});

  const std::int64_t* kept = nullptr;
  if (strategy == Strategy::random) {
    std::int64_t* buf = ws.indices(static_cast<std::size_t>(total));
    detail::random_core(spans, keep_counts, in.seed, buf, forced);
    kept = buf;
  } else if (strategy == Strategy::dart) {
    const auto krows = detail::seg_rows(in.k);
    kept = own_features
               ? detail::dart_core(fn, krows, tokens, detail::seg_rows(in.features), spans,
                                   keep_counts, total, max_span, in.dart, ws, forced)
               : detail::dart_core(fn, krows, tokens, krows, spans, keep_counts, total,
                                   max_span, in.dart, ws, forced);
  } else {  // vtw: only the forced query tokens
    std::int64_t* buf = ws.indices(static_cast<std::size_t>(total));
    std::copy(forced.begin(), forced.end(), buf);
    kept = buf;
  }
  build_keep_list(tokens, spans, span<const std::int64_t>(kept, total),
                  span<std::int64_t>(keep.data, plan.t_new), maybe_new_spans);
  return plan.t_new;
}

PDROP_END_NAMESPACE

#endif  // PDROP_STRATEGIES_HPP
