// pdrop/pruner.hpp - one sequence's drops in one object: the common case
// without the bookkeeping.
//
// A Pruner holds what every drop of one sequence needs: the schedule, the
// per-sequence record (SequenceState: spans, budgets from the original
// spans, cache lengths, decode positions), the scratch workspace and the
// keep buffer. The runtime asks it, at the top of each decoder layer,
// whether a drop happens before that layer, hands over that layer's q/k
// (or whatever the schedule's strategy reads), and gets back the keep list
// it then applies to its own buffers (`pos`, `hidden`, `q_buf`, `k_buf`
// the runtime's own; run as written in examples/guide/pruner.cpp):
//   pdrop::Pruner pruner(schedule, pdrop::TokenView<const std::int64_t>(pos, T, 1), {image});
//   pruner.workspace().reserve(Hq, Hkv, /*queries*/ 1, T, d, N0);  // no allocation after this
//   for (std::int64_t layer = 0; layer < 32; ++layer) {
//     project(layer);  // your code: this layer's post-RoPE q/k of the current rows
//     if (pruner.drop_before(layer)) {
//       const std::int64_t last = T - 1;
//       pdrop::DropInputs<float, float> in;
//       in.q = pdrop::split_heads(pdrop::TokenView<const float>(q_buf + last * Hq * d, 1, Hq * d), Hq);
//       in.k = pdrop::nhd_view(k_buf, pdrop::Heads{Hkv}, pdrop::Tokens{T}, pdrop::Dim{d});
//       in.query_pos = {&last, 1};  // (a stored span: not a braced list, which would dangle)
//       const auto keep = pruner.drop(layer, in);  // the keep list: the kept part only
//       pdrop::compact_rows(pdrop::TokenView<float>(hidden, T, D), keep);
//       pdrop::compact_positions(pdrop::TokenView<std::int64_t>(pos, T, 1), keep,
//                                pruner.position_mode());
//       T = keep.size;  // == pruner.tokens()
//     }
//     run_layer(layer);  // your code, over T rows
//   }
//
// One layer convention: `layer` is 0-based and the drop happens right
// BEFORE that layer runs, scored from that layer's own q/k (PyramidDrop
// computes the last instruction token's attention with the next layer's
// projections; FastV with the layer that just ran: for FastV pass the
// previous layer's q/k). Schedule::drop_before gives the same stage.
#ifndef PDROP_PRUNER_HPP
#define PDROP_PRUNER_HPP

#include <cstdint>
#include <type_traits>

#include "pdrop/config.hpp"
#include "pdrop/budget.hpp"
#include "pdrop/detail/std.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/rank_drop.hpp"
#include "pdrop/schedule.hpp"
#include "pdrop/sequence.hpp"
#include "pdrop/strategies.hpp"
#include "pdrop/types.hpp"
#include "pdrop/v2drop.hpp"
#include "pdrop/workspace.hpp"

PDROP_BEGIN_NAMESPACE

class Pruner {
 public:
  // schedule   the drops (copied); its strategy picks the kept tokens.
  // positions  the prompt's positions, T0 x R (any integer type, int32 as
  //            llama.cpp's llama_pos or int64), read only here.
  // spans      the prompt's image spans, sorted, disjoint, inside [0, T0).
  // budget     per_span (each span keeps int(N0_i * ratio)) or global
  //            (int(sum N0_i * ratio) over all spans; pyramid_drop, fastv
  //            and v2drop).
  // Allocates the keep buffer (T0 entries) and the record once. Throws
  // value_error / shape_error (SequenceState's checks; budget).
  template <class P>
  Pruner(const Schedule& schedule, TokenView<const P> positions, span<const ImageSpan> spans,
         Budget budget = Budget::per_span)
      : seq_(schedule, positions, spans), budget_(budget) {
    if (budget != Budget::per_span && budget != Budget::global)
      detail::fail<value_error>("pdrop::Pruner", "budget (", static_cast<int>(budget),
                                ") is not a pdrop::Budget");
    const Strategy st = schedule.strategy();
    if (budget == Budget::global && st != Strategy::pyramid_drop && st != Strategy::fastv &&
        st != Strategy::v2drop)
      detail::fail<value_error>("pdrop::Pruner", "Budget::global ranks all spans by one "
                                "score: the schedule's strategy (", strategy_name(st),
                                ") must be pyramid_drop, fastv or v2drop");
    keep_.resize(static_cast<std::size_t>(positions.tokens));
    counts_.resize(static_cast<std::size_t>(spans.size > 0 ? spans.size : 1));
  }
  template <class P, class = std::enable_if_t<!std::is_const_v<P>>>
  Pruner(const Schedule& schedule, TokenView<P> positions, span<const ImageSpan> spans,
         Budget budget = Budget::per_span)
      : Pruner(schedule, TokenView<const P>(positions), spans, budget) {}

  // The stage that starts at 0-based layer `layer` when a drop happens
  // right before it, else 0 (Schedule::drop_before). Throws value_error
  // for a layer outside [0, layers).
  std::int64_t drop_before(std::int64_t layer) const {
    return seq_.schedule().drop_before(layer);
  }

  // Runs the drop before 0-based `layer` with the schedule's strategy and
  // records it. `in` holds what the strategy reads (DropInputs: q rows,
  // query positions, k for pyramid_drop / fastv; k, features for dart; the
  // hidden states before and after the last stage's layers for v2drop; the
  // seed for random; nothing for vtw), over the current tokens().
  // Returns the keep list: tokens() entries (the new length), indices into
  // the sequence before the drop, ascending; valid until the next drop.
  // Throws value_error when no drop happens before `layer` or the record
  // is not in the stage before it (a drop skipped or run twice), and what
  // the strategy's operator throws, every message naming
  // pdrop::Pruner::drop; the record is then unchanged.
  template <class Tq, class Tk, class Tf>
  span<const std::int64_t> drop(std::int64_t layer, const DropInputs<Tq, Tk, Tf>& in) {
    constexpr const char* fn = "pdrop::Pruner::drop";
    const detail::CalledAs called(fn);
    const std::int64_t stage = drop_before(layer);
    if (stage == 0)
      detail::fail<value_error>(fn, "layer (", layer, ") has no drop before it");
    if (stage != seq_.drops_applied() + 1)
      detail::fail<value_error>(fn, "layer (", layer, ") starts stage ", stage,
                                ", but the sequence is in stage ", seq_.drops_applied(),
                                ": each drop runs once, in order");
    const span<std::int64_t> counts(counts_.data(), static_cast<std::int64_t>(counts_.size()));
    const std::int64_t n_counts = seq_.keep_counts(
        stage, budget_,
        {counts.data, budget_ == Budget::global ? 1 : seq_.spans(0).size});
    const span<std::int64_t> keep(keep_.data(), seq_.tokens());
    const span<const std::int64_t> c(counts.data, n_counts);
    std::int64_t n = 0;
    if (budget_ == Budget::global && seq_.schedule().strategy() == Strategy::v2drop)
      n = v2drop_drop(in.before, in.after, in.query_pos, seq_.spans(), Budget::global, c, ws_,
                      keep);
    else if (budget_ == Budget::global)
      n = rank_and_drop_global(in.q, in.query_pos, in.k, seq_.spans(), c[0], ws_, keep, {},
                               {}, in.score);
    else
      n = drop_by_strategy(seq_.schedule().strategy(), seq_.tokens(), in, seq_.spans(), c,
                           ws_, keep);
    seq_.apply_drop({keep.data, n});
    return {keep_.data(), n};
  }

  // The per-sequence record: tokens(stage), spans(), cache_length(layer),
  // position(layer, step), append(n) for decode.
  const SequenceState& sequence() const { return seq_; }
  SequenceState& sequence() { return seq_; }
  // The current prompt length (after the drops applied).
  std::int64_t tokens() const { return seq_.tokens(); }
  // How positions follow a drop: pass it to compact_positions.
  PositionMode position_mode() const { return seq_.position_mode(); }
  // Scratch; Workspace::reserve(Hq, Hkv, queries, T0, d, N0) makes every
  // drop allocation-free.
  Workspace& workspace() { return ws_; }

 private:
  SequenceState seq_;
  Budget budget_;
  Workspace ws_;
  detail::vector<std::int64_t> keep_, counts_;
};

PDROP_END_NAMESPACE

#endif  // PDROP_PRUNER_HPP
