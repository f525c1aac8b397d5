// pdrop/schedule.hpp - stage partition: where the drops happen and how many
// image tokens each stage keeps.
//
// A schedule over L decoder layers is a list of drop points
// `drop_layers = [l_1 < l_2 < ... < l_{S-1}]` (1-based: "after layer l", so
// the drop sits between 0-based layers l-1 and l) and the fraction of the
// original image tokens each following stage keeps,
// `ratios = [1.0, r_1, r_2, ...]` (non-increasing). Stage j holds 0-based
// layers [l_j, l_{j+1}), with l_0 = 0 and l_S = L.
//
//   image tokens alive in stage j:  n_j = int(N0 * ratio[j])   (truncation of
//                                   the double product, as Python's int()),
//                                   for one image span or a global budget;
//                                   several spans with per-span budgets keep
//                                   int(N0_i * ratio[j]) each.
//
// A stage may instead be budgeted by any KeepRule (pdrop/budget.hpp): an
// absolute count (FastV's fast_v_attention_rank), Python's round (FastV's
// HF port), or DART's per-pivot quota; from_rules builds such schedules and
// image_tokens applies the stage's rule, the one place the rule lives.
//
// What a sequence holds after its drops (its length per stage, its spans,
// the position and cache length of a decode token at each layer) follows
// from the keep lists actually applied, not from these counts: a query
// token inside an image is kept whatever the budget, and per-span rounding
// differs from int(N0 * ratio). pdrop::SequenceState (pdrop/sequence.hpp)
// records the drops and answers those questions.
//
// Builders: pyramid (PyramidDrop's default: S stages, boundaries
// k*floor(L/S), ratios lambda^k as the decimal numbers the authors' scripts
// list), single_drop (one drop after layer K
// keeping a fraction R), from_lists (explicit lists, e.g. from a config
// file), dense (no drop), and the peer methods fastv, vtw, dart, v2drop (see
// pdrop/strategies.hpp and pdrop/dart.hpp for the selection each runs).
// Every builder validates and throws pdrop::value_error naming the argument.
//
// A schedule also names the Strategy that picks the kept image tokens at its
// drops, and the PositionMode that strategy implies (with keep_original the
// surviving tokens keep their positions, so decode positions never move).
#ifndef PDROP_SCHEDULE_HPP
#define PDROP_SCHEDULE_HPP

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "pdrop/config.hpp"
#include "pdrop/budget.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/detail/std.hpp"
#include "pdrop/types.hpp"
#include "pdrop/errors.hpp"

PDROP_BEGIN_NAMESPACE
namespace detail {

// x rounded to 15 significant decimal digits, as the double nearest that
// decimal: pow's 0.7^2 = 0.48999999999999994 becomes 0.49. m / 10^e with
// m < 10^15 and e <= 22 is exact in both operands, so the correctly
// rounded division is the nearest double to the decimal m * 10^-e; m is
// x * 10^e rounded half away from zero (the product itself may round, so a
// value within an ulp of a half-way point may differ from strtod of
// "%.15g"; lambda^k from a lambda with few decimals is far from one).
// Values below 1e-8 (e > 22) and non-positive ones are returned as they are.
inline double round_decimal15(double x) {
  if (!(x > 0.0) || !std::isfinite(x)) return x;
  const int e = 14 - static_cast<int>(std::floor(std::log10(x)));
  if (e < 0 || e > 22) return x;
  const double scale = std::pow(10.0, e);  // exact for e <= 22
  return std::round(x * scale) / scale;
}

}  // namespace detail

// "pyramid_drop", "fastv", "vtw", "dart", "random", "v2drop".
inline const char* strategy_name(Strategy s) {
  switch (s) {
    case Strategy::pyramid_drop: return "pyramid_drop";
    case Strategy::fastv: return "fastv";
    case Strategy::vtw: return "vtw";
    case Strategy::dart: return "dart";
    case Strategy::random: return "random";
    case Strategy::v2drop: return "v2drop";
  }
  return "unknown";
}

// The Strategy named `name` (as strategy_name prints it); value_error
// naming it otherwise.
inline Strategy parse_strategy(const std::string& name) {
  for (Strategy s : {Strategy::pyramid_drop, Strategy::fastv, Strategy::vtw,
                     Strategy::dart, Strategy::random, Strategy::v2drop})
    if (name == strategy_name(s)) return s;
  detail::fail<value_error>("pdrop::parse_strategy", "name (\"", name,
                            "\") must be one of pyramid_drop, fastv, vtw, dart, random, v2drop");
}

class Schedule {
 public:
  // PyramidDrop: `stages` stages over `layers` layers, drops after layers
  // k*floor(layers/stages) for k = 1..stages-1, stage k keeping lambda^k of
  // the image tokens. pyramid(32, 4, 0.5): drops after [8, 16, 24], ratios
  // [1, 0.5, 0.25, 0.125].
  //
  // lambda^k is rounded to 15 significant digits, so the ratios are the
  // decimal numbers the authors' scripts pass as literal lists
  // ("0.7,0.49,0.343"; PyramidDrop's layer_list / image_token_ratio_list
  // arguments) and keep the same counts: at N0 = 1000, int(1000 * 0.49) =
  // 490 where pow's 0.48999999999999994 would keep 489. For lambda with
  // few decimals (0.3 ... 0.9) the rounding only removes pow's error.
  static Schedule pyramid(std::int64_t layers, std::int64_t stages,
                          double lambda) {
    constexpr const char* fn = "pdrop::Schedule::pyramid";
    if (layers < 1) detail::fail<value_error>(fn, "layers (", layers, ") must be >= 1");
    if (stages < 1 || stages > layers)
      detail::fail<value_error>(fn, "stages (", stages, ") must be in [1, layers = ",
                                layers, "]");
    if (!(lambda >= 0.0 && lambda <= 1.0))
      detail::fail<value_error>(fn, "lambda (", lambda, ") must be in [0, 1]");
    detail::vector<std::int64_t> drops;
    detail::vector<double> ratios;
    const std::int64_t step = layers / stages;
    for (std::int64_t k = 1; k < stages; ++k) {
      drops.push_back(k * step);
      ratios.push_back(detail::round_decimal15(std::pow(lambda, static_cast<double>(k))));
    }
    return from_lists(layers, drops, ratios);
  }

  // One drop after (1-based) layer `after_layer`, keeping `keep` of the
  // image tokens for the rest of the model (strategy pyramid_drop): a ratio
  // (a double converts) or any KeepRule.
  static Schedule single_drop(std::int64_t layers, std::int64_t after_layer,
                              const KeepRule& keep) {
    const bool plain = !keep.maybe_count && !keep.maybe_dart_quota &&
                       keep.rounding == Rounding::truncate;
    return plain ? from_lists(layers, {after_layer}, {keep.ratio})
                 : from_rules(layers, {after_layer}, {keep});
  }

  // FastV: single_drop with Strategy::fastv (original positions). FastV's
  // title setting: K = 2, keep ratio 0.5. Its main code takes a count
  // (KeepRule::count(144): 144 of 576 tokens), its HF port rounds
  // L * (1 - r) to nearest (KeepRule::nearest(1.0 - r)); a plain ratio
  // truncates, as its lmms-eval port does. docs/strategies.md cites each.
  static Schedule fastv(std::int64_t layers, std::int64_t after_layer,
                        const KeepRule& keep) {
    return single_drop(layers, after_layer, keep).with_strategy(Strategy::fastv);
  }

  // VTW: every image token withdrawn after (1-based) layer `after_layer`
  // (keep ratio 0), Strategy::vtw (original positions).
  static Schedule vtw(std::int64_t layers, std::int64_t after_layer) {
    return single_drop(layers, after_layer, 0.0).with_strategy(Strategy::vtw);
  }

  // DART: single_drop with Strategy::dart (original positions); `keep` a
  // ratio or a KeepRule. The authors' own budget (a count per pivot, image
  // pivots on top: 132 of 576 for their "128") is a KeepRule with a DART
  // quota; dart_llava_1_5 / dart_llava_next / dart_qwen2_vl
  // (pdrop/strategies.hpp) build their published settings.
  static Schedule dart(std::int64_t layers, std::int64_t after_layer,
                       const KeepRule& keep) {
    return single_drop(layers, after_layer, keep).with_strategy(Strategy::dart);
  }

  // V2Drop: drops after each (1-based) layer of `drop_layers`, stage i+1
  // keeping rules[i] of the ORIGINAL image tokens (as from_rules; a double
  // converts to a truncated ratio), Strategy::v2drop (original positions).
  // The authors' settings: v2drop_llava_1_5 / v2drop_qwen2_vl
  // (pdrop/strategies.hpp).
  static Schedule v2drop(std::int64_t layers, span<const std::int64_t> drop_layers,
                         std::vector<KeepRule> rules) {
    return from_rules(layers, drop_layers, std::move(rules)).with_strategy(Strategy::v2drop);
  }

  // This schedule run by `strategy`, with the position mode it implies
  // (default_position_mode). Strategy::vtw needs every ratio after a drop
  // to be 0 (value_error otherwise).
  Schedule with_strategy(Strategy strategy) const {
    constexpr const char* fn = "pdrop::Schedule::with_strategy";
    switch (strategy) {
      case Strategy::pyramid_drop: case Strategy::fastv: case Strategy::vtw:
      case Strategy::dart: case Strategy::random: case Strategy::v2drop: break;
      default:
        detail::fail<value_error>(fn, "strategy (", static_cast<int>(strategy),
                                  ") is not a pdrop::Strategy");
    }
    if (strategy == Strategy::vtw)
      for (std::size_t j = 1; j < rules_.size(); ++j)
        if (!rules_[j].keeps_none()) {
          if (rules_[j].maybe_count || rules_[j].maybe_dart_quota)
            detail::fail<value_error>(fn, "Strategy::vtw withdraws every image token: rules[",
                                      j - 1, "] (", to_string(rules_[j]), ") must keep 0");
          detail::fail<value_error>(fn, "Strategy::vtw withdraws every image token: ratios[",
                                    j - 1, "] (", ratios_[j], ") must be 0");
        }
    Schedule s = *this;
    s.strategy_ = strategy;
    s.position_mode_ = default_position_mode(strategy);
    return s;
  }

  // This schedule with its position mode overridden.
  Schedule with_position_mode(PositionMode mode) const {
    if (mode != PositionMode::reindex && mode != PositionMode::keep_original)
      detail::fail<value_error>("pdrop::Schedule::with_position_mode", "mode (",
                                static_cast<int>(mode), ") is not a pdrop::PositionMode");
    Schedule s = *this;
    s.position_mode_ = mode;
    return s;
  }

  // A placeholder to assign a built schedule to: no layers, no drop, one
  // stage keeping every image token (num_layers() 0, num_stages() 1, so
  // stage_of_layer and drop_before reject every layer).
  Schedule() = default;

  // No drop: every layer sees every token.
  static Schedule dense(std::int64_t layers) { return from_lists(layers, {}, {}); }

  // Explicit lists: drop after each (1-based) layer of `drop_layers`
  // (strictly increasing, in [1, layers-1]), keeping ratios[i] of the
  // original image tokens after drop i (in [0, 1], non-increasing; no
  // leading 1.0). The lists must have the same length.
  // Each list is a braced list, a std::vector or a span.
  static Schedule from_lists(std::int64_t layers, span<const std::int64_t> drop_layers,
                             span<const double> ratios) {
    detail::check_list("pdrop::Schedule::from_lists", "drop_layers", drop_layers);
    detail::check_list("pdrop::Schedule::from_lists", "ratios", ratios);
    return from_rules_impl("pdrop::Schedule::from_lists", true, layers, drop_layers,
                           std::vector<KeepRule>(ratios.begin(), ratios.end()));
  }

  // Explicit lists of KeepRules (pdrop/budget.hpp): drop after each layer of
  // `drop_layers` (as from_lists), stage i+1 keeping rules[i] of the
  // original image tokens. The rules after the drops must be of one kind
  // (all ratios with one rounding, or all counts) with one DART quota (or
  // none), and non-increasing (ratio or count), so every n keeps
  // non-increasing counts. Throws value_error naming rules[i].
  static Schedule from_rules(std::int64_t layers, span<const std::int64_t> drop_layers,
                             std::vector<KeepRule> rules) {
    detail::check_list("pdrop::Schedule::from_rules", "drop_layers", drop_layers);
    return from_rules_impl("pdrop::Schedule::from_rules", false, layers, drop_layers,
                           std::move(rules));
  }

  std::int64_t num_layers() const { return layers_; }
  std::int64_t num_stages() const { return static_cast<std::int64_t>(ratios_.size()); }
  // 1-based "drop after layer l" points, one per stage boundary.
  const detail::vector<std::int64_t>& drop_layers() const { return drops_; }
  // [1.0, r_1, ...]: the kept fraction of N0 in each stage (before any
  // rounding rule or DART quota; NaN for a stage budgeted by a count).
  const detail::vector<double>& ratios() const { return ratios_; }
  // [KeepRule{}, rule_1, ...]: each stage's budget rule (pdrop/budget.hpp);
  // stage 0 keeps everything.
  const std::vector<KeepRule>& keep_rules() const { return rules_; }
  // The method that picks the kept tokens (pyramid_drop unless set).
  Strategy strategy() const { return strategy_; }
  // How positions follow a drop: pass it to compact_positions.
  PositionMode position_mode() const { return position_mode_; }

  // Stage (0-based) that 0-based decoder layer `layer` belongs to.
  std::int64_t stage_of_layer(std::int64_t layer) const {
    if (layer < 0 || layer >= layers_)
      detail::fail<value_error>("pdrop::Schedule::stage_of_layer", "layer (", layer,
                                ") must be in [0, ", layers_, ")");
    std::int64_t j = 0;
    while (j < static_cast<std::int64_t>(drops_.size()) && drops_[j] <= layer) ++j;
    return j;
  }

  // The stage that starts right after 0-based layer `layer`, when a drop
  // happens there; 0 when it does not (stage 0 never follows a drop).
  std::int64_t drop_after(std::int64_t layer) const {
    for (std::size_t j = 0; j < drops_.size(); ++j)
      if (drops_[j] == layer + 1) return static_cast<std::int64_t>(j) + 1;
    return 0;
  }

  // The stage that starts AT 0-based layer `layer` in [0, num_layers()),
  // when a drop happens right before it runs (drop_after(layer - 1)); 0
  // when none does. For a runtime that drops at the top of a layer with
  // that layer's own q/k: `if (j = s.drop_before(l)) { drop; } run(l);`.
  // Throws value_error naming `layer` outside [0, num_layers()).
  std::int64_t drop_before(std::int64_t layer) const {
    if (layer < 0 || layer >= layers_)
      detail::fail<value_error>("pdrop::Schedule::drop_before", "layer (", layer,
                                ") must be in [0, ", layers_, ")");
    return layer > 0 ? drop_after(layer - 1) : 0;
  }

  // n_j = keep_budget(n0, keep_rules()[j]), int(n0 * ratio[j]) for a ratio:
  // image tokens alive in stage j of n0 original ones.
  std::int64_t image_tokens(std::int64_t n0, std::int64_t stage) const {
    check_stage("pdrop::Schedule::image_tokens", n0, stage);
    return detail::apply_keep_rule(n0, rules_[static_cast<std::size_t>(stage)]);
  }

  // [n_0, n_1, ...] for every stage.
  detail::vector<std::int64_t> tokens_per_stage(std::int64_t n0) const {
    detail::vector<std::int64_t> n(ratios_.size());
    for (std::size_t j = 0; j < n.size(); ++j)
      n[j] = image_tokens(n0, static_cast<std::int64_t>(j));
    return n;
  }

 private:
  // plain: from_lists (plain ratios, named "ratios" in errors).
  static Schedule from_rules_impl(const char* fn, bool plain, std::int64_t layers,
                                  span<const std::int64_t> drop_layers,
                                  std::vector<KeepRule> rules) {
    const char* what = plain ? "ratios" : "rules";
    if (layers < 1) detail::fail<value_error>(fn, "layers (", layers, ") must be >= 1");
    if (drop_layers.size != static_cast<std::int64_t>(rules.size()))
      detail::fail<value_error>(fn, "drop_layers has ", drop_layers.size, " entries but ",
                                what, " has ", rules.size());
    for (std::size_t i = 0; i < rules.size(); ++i) {
      const std::int64_t l = drop_layers[static_cast<std::int64_t>(i)];
      if (l < 1 || l > layers - 1)
        detail::fail<value_error>(fn, "drop_layers[", i, "] (", l,
                                  ") must be in [1, layers-1 = ", layers - 1,
                                  "]: a drop after the last layer prunes nothing");
      if (i > 0 && l <= drop_layers[static_cast<std::int64_t>(i) - 1])
        detail::fail<value_error>(fn, "drop_layers must be strictly increasing: [",
                                  i - 1, "] = ", drop_layers[static_cast<std::int64_t>(i) - 1], ", [", i,
                                  "] = ", l);
      const KeepRule& r = rules[i];
      if (plain) {
        if (!(r.ratio >= 0.0 && r.ratio <= 1.0))
          detail::fail<value_error>(fn, "ratios[", i, "] (", r.ratio, ") must be in [0, 1]");
        if (i > 0 && r.ratio > rules[i - 1].ratio)
          detail::fail<value_error>(fn, "ratios must be non-increasing: [", i - 1, "] = ",
                                    rules[i - 1].ratio, ", [", i, "] = ", r.ratio);
        continue;
      }
      const std::string name = detail::concat("rules[", i, "]");
      detail::check_keep_rule(fn, name.c_str(), r);
      if (i == 0) continue;
      const KeepRule& p = rules[i - 1];
      const bool same_kind = p.maybe_count.has_value() == r.maybe_count.has_value() &&
                             (r.maybe_count || p.rounding == r.rounding);
      const bool same_quota =
          p.maybe_dart_quota.has_value() == r.maybe_dart_quota.has_value() &&
          (!r.maybe_dart_quota ||
           (p.maybe_dart_quota->image_pivots == r.maybe_dart_quota->image_pivots &&
            p.maybe_dart_quota->text_pivots == r.maybe_dart_quota->text_pivots));
      if (!same_kind || !same_quota)
        detail::fail<value_error>(fn, name, " (", to_string(r), ") and rules[", i - 1, "] (",
                                  to_string(p),
                                  ") must be of one kind (ratios with one rounding, or "
                                  "counts) with the same DART quota");
      if (r.maybe_count ? *r.maybe_count > *p.maybe_count : r.ratio > p.ratio)
        detail::fail<value_error>(fn, "rules must be non-increasing: [", i - 1, "] = ",
                                  to_string(p), ", [", i, "] = ", to_string(r));
    }
    Schedule s;
    s.layers_ = layers;
    s.drops_.assign(drop_layers.begin(), drop_layers.end());
    s.rules_.insert(s.rules_.end(), rules.begin(), rules.end());  // after stage 0's
    s.ratios_.clear();
    for (const KeepRule& r : s.rules_)
      s.ratios_.push_back(r.maybe_count ? std::numeric_limits<double>::quiet_NaN() : r.ratio);
    return s;
  }

  void check_stage(const char* fn, std::int64_t n0, std::int64_t stage) const {
    if (n0 < 0) detail::fail<value_error>(fn, "n0 (", n0, ") must be >= 0");
    if (n0 > detail::kMaxBudgetTokens)
      detail::fail<value_error>(fn, "n0 (", n0, ") must be <= 2^53");
    if (stage < 0 || stage >= num_stages())
      detail::fail<value_error>(fn, "stage (", stage, ") must be in [0, ",
                                num_stages(), ")");
  }

  std::int64_t layers_ = 0;
  // pdrop's own allocator: these vectors' code is pdrop's, one copy per
  // set of CPU features (pdrop/config.hpp), never std::vector<double>'s.
  detail::vector<std::int64_t> drops_;
  detail::vector<double> ratios_{1.0};
  std::vector<KeepRule> rules_{KeepRule{}};
  Strategy strategy_ = Strategy::pyramid_drop;
  PositionMode position_mode_ = PositionMode::reindex;
};

PDROP_END_NAMESPACE

#endif  // PDROP_SCHEDULE_HPP
