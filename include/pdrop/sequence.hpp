// pdrop/sequence.hpp - the per-sequence record of the drops applied:
// decode positions, per-layer cache lengths, current image spans.
//
// After a drop an engine needs, for each sequence: the length of the prompt
// each layer's KV cache holds, the image spans of the compacted sequence,
// the keep counts of the next drop, and the position of every new token at
// every layer. Each follows from the keep lists actually applied; none
// from a formula over the schedule's ratios, which cannot know that
// per-image budgets round each image on its own, or that a query token
// inside an image is kept whatever the budget (rank_drop.hpp). A
// SequenceState records the drops as they are applied and answers:
//
//   tokens(j)          prompt length T_j in stage j (T_0 = the prompt's).
//   spans(j)           the image spans in stage j.
//   keep_counts(j, b)  the budgets of the drop into stage j, from the
//                      ORIGINAL spans: int(N0_i * ratio_j) per span, or one
//                      global int(sum N0_i * ratio_j).
//   cache_length(l)    rows in layer l's KV cache: T_j of l's stage plus
//                      the tokens appended since the prompt.
//   position(l, s)     the position of the s-th token after the prompt
//                      (s = 0: the first decode token) at 0-based layer l,
//                      in every row (1-row RoPE, or each M-RoPE row):
//        reindex        base + T_j + s, base = the prompt's first position
//                       (PyramidDrop's code re-indexes each stage from 0 and
//                       decodes at the layer's own cache length);
//        keep_original  next + s, next = the largest value of the whole
//                       prompt's positions (every row) + 1, taken before any
//                       drop: Qwen2-VL's get_rope_index / rope_deltas rule,
//                       and FastV / VTW / DART, whose tokens keep their
//                       positions (a dropped image at the end of the prompt
//                       must not lower it).
//   rope_delta(l)      position(l, s) - (cache index of that token):
//                      HF Qwen2-VL's rope_deltas, per layer.
//
// Positions with more than one row (M-RoPE) always keep their values: no
// reference re-indexes a grid's 3-D positions, so position_mode() is
// keep_original for them whatever the schedule says; pass position_mode()
// (not the schedule's) to compact_positions.
//
// Use, per sequence (batches hold one per sequence, apply_drop_batch),
// with pdrop/rank_drop.hpp and pdrop/compact.hpp for the drop itself (this
// header needs neither, nor Eigen):
//
// construct it from the schedule, the prompt's positions and its image
// spans; at a drop into stage j take the budgets from keep_counts(j, ...),
// the current spans from spans(), rank and drop, then apply_drop(keep list)
// to check and record it, and compact with position_mode() (the drop in
// pdrop/rank_drop.hpp's header does exactly that; pdrop::Pruner in
// pdrop/pruner.hpp does it all in one call). For decode, layer l rotates
// the new token at position(l, step) (or next_position(l)) over
// cache_length(l) cached rows; call append(1) after the step.
//
// Every method validates its arguments and throws pdrop::value_error /
// shape_error naming them; a failed apply_drop leaves the record as it was.
#ifndef PDROP_SEQUENCE_HPP
#define PDROP_SEQUENCE_HPP

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "pdrop/config.hpp"
#include "pdrop/budget.hpp"
#include "pdrop/compact.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/detail/std.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/schedule.hpp"
#include "pdrop/types.hpp"

PDROP_BEGIN_NAMESPACE

class SequenceState {
 public:
  // schedule   the schedule the sequence runs (layers, drop points, ratios,
  //            position mode); copied.
  // positions  the prompt's positions, T0 x R (R = 1: RoPE; R >= 2:
  //            M-RoPE rows, e.g. 3 for HF Qwen2-VL, 4 for llama.cpp), any
  //            integer type and row stride; read here only.
  // spans      the prompt's image spans, sorted, disjoint, inside [0, T0).
  //            Every position in [0, 2^63 - 1).
  // Throws value_error / shape_error.
  template <class P>
  SequenceState(const Schedule& schedule, TokenView<const P> positions,
                span<const ImageSpan> spans)
      : schedule_(schedule) {
    static_assert(std::is_integral_v<P>, "positions are an integer type");
    constexpr const char* fn = "pdrop::SequenceState";
    detail::check_token_view(fn, "positions", positions.data, positions.tokens,
                             positions.features, positions.row_stride, sizeof(P));
    if (positions.features < 1)
      detail::fail<shape_error>(fn, "positions.features (", positions.features,
                                ") must be >= 1 (1 for RoPE, one per M-RoPE row)");
    detail::check_spans(fn, spans, positions.tokens, "positions.tokens");
    // Every position in [0, INT64_MAX - 1]: decode positions and rope
    // deltas are then computed without overflow.
    for (std::int64_t t = 0; t < positions.tokens; ++t)
      for (std::int64_t a = 0; a < positions.features; ++a) {
        const P v = positions.row(t)[a];
        bool bad = false;
        if constexpr (std::is_signed_v<P>) bad = v < 0;
        if constexpr (sizeof(P) >= sizeof(std::int64_t))
          bad = bad || static_cast<std::uint64_t>(v) >=
                           static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        if (bad)
          detail::fail<value_error>(fn, "positions (token ", t, ", row ", a, ") is ", +v,
                                    ": positions must be in [0, 2^63 - 1)");
      }
    rows_ = positions.features;
    mode_ = rows_ > 1 ? PositionMode::keep_original : schedule.position_mode();
    if (positions.tokens > 0) {
      base_ = static_cast<std::int64_t>(positions.row(0)[0]);
      std::int64_t m = base_;
      for (std::int64_t t = 0; t < positions.tokens; ++t)
        for (std::int64_t a = 0; a < rows_; ++a)
          m = std::max(m, static_cast<std::int64_t>(positions.row(t)[a]));
      next_ = m + 1;
    }
    // Room for every stage now, so recording a drop cannot fail half-way.
    tokens_.reserve(static_cast<std::size_t>(schedule.num_stages()));
    spans_.reserve(static_cast<std::size_t>(schedule.num_stages()));
    tokens_.push_back(positions.tokens);
    spans_.emplace_back(spans.begin(), spans.end());
  }
  // The same from writable positions.
  template <class P, class = std::enable_if_t<!std::is_const_v<P>>>
  SequenceState(const Schedule& schedule, TokenView<P> positions, span<const ImageSpan> spans)
      : SequenceState(schedule, TokenView<const P>(positions), spans) {}

  const Schedule& schedule() const { return schedule_; }
  // How positions follow a drop: the schedule's mode for 1-row positions,
  // keep_original for M-RoPE rows. Pass it to compact_positions.
  PositionMode position_mode() const { return mode_; }
  // Position rows per token (1, or the M-RoPE rows).
  std::int64_t position_rows() const { return rows_; }
  // Drops applied so far: the sequence is in stage drops_applied().
  std::int64_t drops_applied() const { return static_cast<std::int64_t>(tokens_.size()) - 1; }
  // Tokens appended after the prompt (append()).
  std::int64_t appended() const { return appended_; }

  // T_j: the prompt's length in stage j (<= drops_applied()).
  std::int64_t tokens(std::int64_t stage) const {
    return tokens_[static_cast<std::size_t>(reached("pdrop::SequenceState::tokens", stage))];
  }
  // The current prompt length, T of stage drops_applied().
  std::int64_t tokens() const { return tokens_.back(); }

  // The image spans in stage j (<= drops_applied()); valid until the next
  // apply_drop.
  span<const ImageSpan> spans(std::int64_t stage) const {
    const auto& s = spans_[static_cast<std::size_t>(reached("pdrop::SequenceState::spans", stage))];
    return {s.data(), static_cast<std::int64_t>(s.size())};
  }
  span<const ImageSpan> spans() const { return spans(drops_applied()); }

  // Budgets of the drop into stage j (1 <= j < schedule().num_stages()) by
  // the schedule's rule_j (Schedule::keep_rules(); a ratio_j unless set
  // otherwise), from the ORIGINAL spans (PyramidDrop's rule: the ratio is of
  // the original image tokens): per_span writes keep_budget(N0_i, rule_j),
  // int(N0_i * ratio_j), for each span (spans(0).size entries), global one
  // keep_budget(sum N0_i, rule_j). Returns the entries written.
  std::int64_t keep_counts(std::int64_t stage, Budget budget, span<std::int64_t> out) const {
    constexpr const char* fn = "pdrop::SequenceState::keep_counts";
    if (stage < 1 || stage >= schedule_.num_stages())
      detail::fail<value_error>(fn, "stage (", stage, ") must be in [1, num_stages = ",
                                schedule_.num_stages(), ")");
    if (budget != Budget::per_span && budget != Budget::global)
      detail::fail<value_error>(fn, "budget (", static_cast<int>(budget),
                                ") is not a pdrop::Budget");
    const span<const ImageSpan> original = spans(0);
    const KeepRule& rule = schedule_.keep_rules()[static_cast<std::size_t>(stage)];
    const std::int64_t n = budget == Budget::global ? 1 : original.size;
    if (out.size != n || (n > 0 && out.data == nullptr))
      detail::fail<shape_error>(fn, "out.size (", out.size, ") must be ", n,
                                budget == Budget::global ? " (one global count)"
                                                         : " (one count per span)");
    if (budget == Budget::global)
      out[0] = global_budget(original, rule);
    else
      per_span_budgets(original, rule, out);
    return n;
  }

  // Records the drop into stage drops_applied() + 1 from its keep list
  // (strictly ascending indices into the current sequence): every token
  // outside the current spans must be kept, and the last token (whose row
  // gives the logits and queries the next drop). The new spans follow from
  // the list. Throws value_error / shape_error, the record unchanged, on a
  // list that breaks these rules or a drop the schedule does not have.
  void apply_drop(span<const std::int64_t> keep) { apply(keep); }
  // The same with an int32 keep list (llama.cpp's row indices).
  void apply_drop(span<const std::int32_t> keep) { apply(keep); }

  // n >= 0 tokens appended after the prompt to every layer (decode steps,
  // or a chunk of them).
  void append(std::int64_t n) {
    constexpr const char* fn = "pdrop::SequenceState::append";
    if (n < 0) detail::fail<value_error>(fn, "n (", n, ") must be >= 0");
    appended_ = detail::checked_add(fn, "appended tokens", appended_, n);
  }

  // Rows of 0-based layer l's KV cache that belong to this prompt: T_j of
  // its stage + appended() (rows of an earlier turn or a prefix cache, which
  // the prompt continues at base_position(), come on top). Throws
  // value_error when l's stage has not been reached (a prompt without
  // images still records its drops: apply_drop with the identity list).
  std::int64_t cache_length(std::int64_t layer) const {
    return tokens(stage_of("pdrop::SequenceState::cache_length", layer)) + appended_;
  }

  // The position (every row the same) of the token `step` places after the
  // prompt (step >= 0; step 0 is the first decode token) at 0-based layer
  // l: base + T_j + step (reindex) or next + step (keep_original).
  std::int64_t position(std::int64_t layer, std::int64_t step) const {
    constexpr const char* fn = "pdrop::SequenceState::position";
    if (step < 0) detail::fail<value_error>(fn, "step (", step, ") must be >= 0");
    const std::int64_t t_j = tokens(stage_of(fn, layer));
    const std::int64_t first =
        mode_ == PositionMode::reindex ? detail::checked_add(fn, "position", base_, t_j) : next_;
    return detail::checked_add(fn, "position", first, step);
  }
  // position(layer, appended()): where the next new token goes.
  std::int64_t next_position(std::int64_t layer) const { return position(layer, appended_); }
  // HF Qwen2-VL's rope_deltas at layer l: position - cache index of a new
  // token (constant over decode steps).
  std::int64_t rope_delta(std::int64_t layer) const {
    return position(layer, 0) - tokens(stage_of("pdrop::SequenceState::rope_delta", layer));
  }
  // The prompt's first position (the re-index base) and the value after
  // its largest (the keep_original decode start; Qwen2-VL's
  // mrope_next_position of the whole prompt).
  std::int64_t base_position() const { return base_; }
  std::int64_t prompt_next_position() const { return next_; }

 private:
  friend inline void apply_drop_batch(span<SequenceState> states,
                                      span<const std::int64_t> keep,
                                      span<const std::int64_t> keep_offsets);

  std::int64_t reached(const char* fn, std::int64_t stage) const {
    if (stage < 0 || stage > drops_applied())
      detail::fail<value_error>(fn, "stage (", stage, ") must be in [0, drops applied = ",
                                drops_applied(), "]");
    return stage;
  }
  // The stage of 0-based layer l, which must have been reached.
  std::int64_t stage_of(const char* fn, std::int64_t layer) const {
    if (layer < 0 || layer >= schedule_.num_layers())
      detail::fail<value_error>(fn, "layer (", layer, ") must be in [0, layers = ",
                                schedule_.num_layers(), ")");
    const std::int64_t j = schedule_.stage_of_layer(layer);
    if (j > drops_applied())
      detail::fail<value_error>(fn, "layer (", layer, ") is in stage ", j,
                                ", whose drop is not applied yet (", drops_applied(),
                                " applied)");
    return j;
  }

  template <class I>
  void apply(span<const I> keep) {
    std::vector<ImageSpan> next;
    check_drop("pdrop::SequenceState::apply_drop", keep, next);
    tokens_.push_back(keep.size);
    spans_.push_back(std::move(next));
  }

  // Validates a drop's keep list against the current sequence; the new
  // spans go to `next`.
  template <class I>
  void check_drop(const char* fn, span<const I> keep, std::vector<ImageSpan>& next) const {
    if (drops_applied() + 1 >= schedule_.num_stages())
      detail::fail<value_error>(fn, "every drop of the schedule (",
                                schedule_.num_stages() - 1, ") is already applied");
    const std::int64_t T = tokens();
    detail::validate_keep(fn, keep, T);
    if (T > 0 && (keep.size == 0 || keep[keep.size - 1] != T - 1))
      detail::fail<value_error>(fn, "keep must hold the last token (", T - 1,
                                "): its row gives the logits and the next drop's query");
    const span<const ImageSpan> cur = spans();
    next.assign(static_cast<std::size_t>(cur.size), ImageSpan{});
    // Walk the keep list against the spans: every token outside them kept.
    std::int64_t i = 0, expect = 0;  // expect: next token outside spans
    for (std::int64_t sp = 0; sp <= cur.size; ++sp) {
      const std::int64_t text_end = sp < cur.size ? cur[sp].start : T;
      for (std::int64_t t = expect; t < text_end; ++t, ++i)
        if (i >= keep.size || keep[i] != t)
          detail::fail<value_error>(fn, "keep drops token ", t,
                                    ", which is outside every image span (text is "
                                    "always kept)");
      if (sp == cur.size) break;
      const std::int64_t start = i;
      while (i < keep.size && keep[i] < cur[sp].end()) ++i;
      next[static_cast<std::size_t>(sp)] = ImageSpan{start, i - start};
      expect = cur[sp].end();
    }
  }

  Schedule schedule_;
  PositionMode mode_ = PositionMode::reindex;
  std::int64_t rows_ = 1;
  std::int64_t base_ = 0, next_ = 0, appended_ = 0;
  detail::vector<std::int64_t> tokens_;               // T_j per stage reached
  std::vector<std::vector<ImageSpan>> spans_;      // spans per stage reached
};

// One drop over a batch: states[b].apply_drop(keep[keep_offsets[b] ..
// keep_offsets[b+1])) for every b (keep and keep_offsets as
// rank_and_drop_batch writes them, in each sequence's own indices). Every
// list is checked before any record changes; the error names the sequence.
inline void apply_drop_batch(span<SequenceState> states, span<const std::int64_t> keep,
                             span<const std::int64_t> keep_offsets) {
  constexpr const char* fn = "pdrop::apply_drop_batch";
  if (states.size < 0 || (states.size > 0 && states.data == nullptr))
    detail::fail<shape_error>(fn, "states.data is null with ", states.size, " entries");
  if (keep_offsets.size != states.size + 1 || keep_offsets.data == nullptr)
    detail::fail<shape_error>(fn, "keep_offsets.size (", keep_offsets.size,
                              ") must be states.size + 1 (", states.size + 1, ")");
  if (keep_offsets[0] != 0)
    detail::fail<value_error>(fn, "keep_offsets[0] (", keep_offsets[0], ") must be 0");
  for (std::int64_t b = 0; b < states.size; ++b)
    if (keep_offsets[b + 1] < keep_offsets[b])
      detail::fail<value_error>(fn, "keep_offsets must be non-decreasing (at ", b + 1, ")");
  if (keep.size < keep_offsets[states.size] ||
      (keep_offsets[states.size] > 0 && keep.data == nullptr))
    detail::fail<shape_error>(fn, "keep.size (", keep.size, ") must be >= keep_offsets[B] (",
                              keep_offsets[states.size], ")");
  std::vector<std::vector<ImageSpan>> next(static_cast<std::size_t>(states.size));
  const auto list = [&](std::int64_t b) {
    return span<const std::int64_t>(keep.data + keep_offsets[b],
                                    keep_offsets[b + 1] - keep_offsets[b]);
  };
  for (std::int64_t b = 0; b < states.size; ++b) {
#if PDROP_EXCEPTIONS
    try {
      states[b].check_drop(fn, list(b), next[static_cast<std::size_t>(b)]);
    } catch (const shape_error& e) {
      detail::fail<shape_error>(fn, "states[", b, "]: ", detail::without_prefix(fn, e));
    } catch (const value_error& e) {
      detail::fail<value_error>(fn, "states[", b, "]: ", detail::without_prefix(fn, e));
    }
#else  // the handler gets check_drop's message, without the sequence's index
    states[b].check_drop(fn, list(b), next[static_cast<std::size_t>(b)]);
#endif
  }
  for (std::int64_t b = 0; b < states.size; ++b) {
    states[b].tokens_.push_back(list(b).size);
    states[b].spans_.push_back(std::move(next[static_cast<std::size_t>(b)]));
  }
}

PDROP_END_NAMESPACE

#endif  // PDROP_SEQUENCE_HPP
