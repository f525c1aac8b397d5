// pdrop/budget.hpp - how many image tokens a drop keeps: one rule, one place.
//
// A stage's budget is a KeepRule applied to n, the ORIGINAL image tokens it
// is a budget of (one span's length for a per-span budget, the sum of all
// spans' for a global one):
//
//   ratio (default)      keep int(n * ratio): the double product truncated,
//                        as Python's int(). PyramidDrop's rule
//                        (arXiv 2410.17247, its layer_list /
//                        image_token_ratio_list arguments), and FastV's
//                        lmms-eval port (src/FastV/lmms-eval/fastv_kvcache.py:
//                        int(576 * ratio)).
//   ratio, half_even     keep round(n * ratio) with ties to even, as Python's
//                        round(): FastV's HF port (llava-hf modeling_llama.py,
//                        round(L * (1 - r)) with r the PRUNED fraction; pass
//                        ratio = 1.0 - r, computed in double, to reproduce it).
//   count                keep min(count, n): FastV's main code
//                        (fast_v_attention_rank, a number of tokens; its
//                        scripts use 72 / 144 / 288 / 432 of 576), and DART's
//                        max_num_trunction on LLaVA.
//   + DART quota         DART's authors give every pivot (image and text) the
//                        same quota and keep the image pivots on top:
//                          P = image_pivots + text_pivots
//                          q = floor(min(b, n - image_pivots) / P)   (>= 0)
//                          kept = min(n, image_pivots + P * q)
//                        where b is the ratio's or count's result above. This
//                        is each of their three budget lines (DART
//                        5a19452, llava/model/language_model/
//                        modeling_llama_self.py l.409 and l.413-417,
//                        Qwen2-VL/Qwen2VL_DART/modeling_qwen2_vl_self.py
//                        l.411) wherever their code runs: 128 of 576 with
//                        4 + 4 pivots keeps 4 + 8 * 16 = 132. Where theirs
//                        raises (fewer candidates than quotas), pdrop keeps
//                        min(n, ...) instead.
//
// Every result is in [0, n] and non-decreasing in the ratio or count, so a
// schedule whose rules are non-increasing keeps non-increasing counts.
// Includes only the standard library and pdrop/errors.hpp.
#ifndef PDROP_BUDGET_HPP
#define PDROP_BUDGET_HPP

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "pdrop/config.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/types.hpp"

PDROP_BEGIN_NAMESPACE

// How a drop's image-token budget is spread over several image spans
// (several images, or the frames of a video, in one sequence).
//  per_span: each span i keeps keep_counts[i] of its own tokens (PyramidDrop's
//            rule applied image by image: int(n_i * ratio) each).
//  global:   one count for all spans together, int(sum n_i * ratio), filled
//            with the best-scored tokens of the union of the spans (an image
//            the query ignores may lose more than another). Text between the
//            images is always kept.
enum class Budget { per_span, global };

// How n * ratio becomes a count: truncation (Python's int(), the default)
// or to nearest with ties to even (Python's round()).
enum class Rounding { truncate, half_even };

// DART's own budget (see the header comment): pivots among the image tokens
// and among the text tokens after the image. The authors' scripts use 4 + 4.
struct DartQuota {
  std::int64_t image_pivots = 4;  // >= 1
  std::int64_t text_pivots = 4;   // >= 0
};

// One stage's budget. A double converts implicitly (a truncated ratio), so
// every function that took a ratio takes a KeepRule.
struct KeepRule {
  double ratio = 1.0;                         // in [0, 1]; unused with a count
  Rounding rounding = Rounding::truncate;     // for the ratio
  std::optional<std::int64_t> maybe_count;    // >= 0: keep min(count, n)
  std::optional<DartQuota> maybe_dart_quota;  // DART's per-pivot quota

  KeepRule() = default;
  KeepRule(double keep_ratio) : ratio(keep_ratio) {}  // NOLINT: implicit on purpose

  // Keep min(n, tokens) image tokens (FastV's fast_v_attention_rank).
  static KeepRule count(std::int64_t tokens) {
    KeepRule r;
    r.maybe_count = tokens;
    return r;
  }
  // Keep round(n * keep_ratio), ties to even (FastV's HF port).
  static KeepRule nearest(double keep_ratio) {
    KeepRule r(keep_ratio);
    r.rounding = Rounding::half_even;
    return r;
  }
  // This rule followed by DART's per-pivot quota.
  KeepRule with_dart_quota(DartQuota quota) const {
    KeepRule r = *this;
    r.maybe_dart_quota = quota;
    return r;
  }
  // True when every n keeps 0 tokens (VTW's withdrawal).
  bool keeps_none() const {
    return !maybe_dart_quota && (maybe_count ? *maybe_count == 0 : ratio == 0.0);
  }
};

// "0.5", "0.25 nearest", "count 144", "count 128, dart quota 4+4".
inline std::string to_string(const KeepRule& rule) {
  std::string s = rule.maybe_count ? detail::concat("count ", *rule.maybe_count)
                                   : detail::concat(rule.ratio);
  if (!rule.maybe_count && rule.rounding == Rounding::half_even) s += " nearest";
  if (rule.maybe_dart_quota)
    s += detail::concat(", dart quota ", rule.maybe_dart_quota->image_pivots, "+",
                        rule.maybe_dart_quota->text_pivots);
  return s;
}

namespace detail {

constexpr std::int64_t kMaxBudgetTokens = std::int64_t{1} << 53;

// Throws value_error naming `fn` and `name` when `rule` is not a valid rule.
inline void check_keep_rule(const char* fn, const char* name, const KeepRule& rule) {
  if (rule.maybe_count) {
    if (*rule.maybe_count < 0 || *rule.maybe_count > kMaxBudgetTokens)
      fail<value_error>(fn, name, ".maybe_count (", *rule.maybe_count,
                        ") must be in [0, 2^53]");
  } else {
    if (!(rule.ratio >= 0.0 && rule.ratio <= 1.0))
      fail<value_error>(fn, name, ".ratio (", rule.ratio, ") must be in [0, 1]");
    if (rule.rounding != Rounding::truncate && rule.rounding != Rounding::half_even)
      fail<value_error>(fn, name, ".rounding (", static_cast<int>(rule.rounding),
                        ") is not a pdrop::Rounding");
  }
  if (rule.maybe_dart_quota) {
    const DartQuota& q = *rule.maybe_dart_quota;
    if (q.image_pivots < 1 || q.image_pivots > (std::int64_t{1} << 31))
      fail<value_error>(fn, name, ".maybe_dart_quota.image_pivots (", q.image_pivots,
                        ") must be in [1, 2^31]");
    if (q.text_pivots < 0 || q.text_pivots > (std::int64_t{1} << 31))
      fail<value_error>(fn, name, ".maybe_dart_quota.text_pivots (", q.text_pivots,
                        ") must be in [0, 2^31]");
  }
}

// x >= 0 rounded to the nearest integer, ties to the even one (Python's
// round), whatever the floating-point environment's rounding mode.
inline double round_half_even(double x) {
  const double f = std::floor(x);
  const double d = x - f;  // exact for the x < 2^53 used here
  if (d > 0.5) return f + 1.0;
  if (d < 0.5) return f;
  return std::fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

// The rule on validated inputs: n in [0, 2^53], rule checked.
inline std::int64_t apply_keep_rule(std::int64_t n, const KeepRule& rule) {
  std::int64_t b = 0;
  if (rule.maybe_count) {
    b = *rule.maybe_count < n ? *rule.maybe_count : n;
  } else {
    const double x = static_cast<double>(n) * rule.ratio;
    b = static_cast<std::int64_t>(rule.rounding == Rounding::half_even ? round_half_even(x) : x);
  }
  if (!rule.maybe_dart_quota) return b;
  const std::int64_t pi = rule.maybe_dart_quota->image_pivots;
  const std::int64_t p = pi + rule.maybe_dart_quota->text_pivots;
  const std::int64_t cap = n - pi;
  const std::int64_t base = b < cap ? b : cap;
  const std::int64_t q = base > 0 ? base / p : 0;
  const std::int64_t kept = pi + p * q;  // <= pi + base <= n when q > 0
  return kept < n ? kept : n;
}

}  // namespace detail

// The number of image tokens `rule` keeps of n: int(n * ratio) by default
// (see the header comment for each rule and its source).
//   n     original image tokens the budget is of, in [0, 2^53].
//   rule  a ratio (double converts), KeepRule::count, KeepRule::nearest,
//         optionally with DART's quota.
// Throws value_error naming the argument on a bad n or rule.
inline std::int64_t keep_budget(std::int64_t n, const KeepRule& rule) {
  constexpr const char* fn = "pdrop::keep_budget";
  if (n < 0 || n > detail::kMaxBudgetTokens)
    detail::fail<value_error>(fn, "n (", n, ") must be in [0, 2^53]");
  detail::check_keep_rule(fn, "rule", rule);
  return detail::apply_keep_rule(n, rule);
}

// Per-span budgets: keep_counts[i] = keep_budget(spans[i].length, rule),
// int(spans[i].length * ratio) for a ratio.
//   spans        the spans whose lengths the rule applies to: the ORIGINAL
//                spans (before any drop) when it is a stage's rule of the
//                original tokens (Schedule::keep_rules()[j]).
//   rule         a ratio in [0, 1] (a double converts) or any KeepRule
//                (pdrop/budget.hpp: a count, Python rounding, DART's quota).
//   keep_counts  out, spans.size entries (the keep_counts of rank_and_drop).
// Everything is validated before keep_counts is written.
inline void per_span_budgets(span<const ImageSpan> spans, const KeepRule& rule,
                             span<std::int64_t> keep_counts) {
  constexpr const char* fn = "pdrop::per_span_budgets";
  if (spans.size < 0 || (spans.size > 0 && spans.data == nullptr))
    detail::fail<shape_error>(fn, "spans.data is null with ", spans.size, " entries");
  if (keep_counts.size != spans.size)
    detail::fail<shape_error>(fn, "keep_counts.size (", keep_counts.size,
                              ") must equal spans.size (", spans.size, ")");
  if (keep_counts.size > 0 && keep_counts.data == nullptr)
    detail::fail<shape_error>(fn, "keep_counts.data is null with ", keep_counts.size,
                              " entries");
  detail::check_keep_rule(fn, "rule", rule);
  for (std::int64_t i = 0; i < spans.size; ++i)
    if (spans[i].length < 0 || spans[i].length > detail::kMaxBudgetTokens)
      detail::fail<value_error>(fn, "spans[", i, "].length (", spans[i].length,
                                ") must be in [0, 2^53]");
  for (std::int64_t i = 0; i < spans.size; ++i)
    keep_counts[i] = detail::apply_keep_rule(spans[i].length, rule);
}

// Global budget: keep_budget(sum of spans[i].length, rule), the n_keep of
// rank_and_drop_global. spans and rule as per_span_budgets.
inline std::int64_t global_budget(span<const ImageSpan> spans, const KeepRule& rule) {
  constexpr const char* fn = "pdrop::global_budget";
  if (spans.size < 0 || (spans.size > 0 && spans.data == nullptr))
    detail::fail<shape_error>(fn, "spans.data is null with ", spans.size, " entries");
  detail::check_keep_rule(fn, "rule", rule);
  std::int64_t n = 0;
  for (std::int64_t i = 0; i < spans.size; ++i) {
    if (spans[i].length < 0)
      detail::fail<value_error>(fn, "spans[", i, "].length (", spans[i].length,
                                ") must be >= 0");
    n = detail::checked_add(fn, "sum of spans[i].length", n, spans[i].length);
  }
  if (n > detail::kMaxBudgetTokens)
    detail::fail<value_error>(fn, "the sum of span lengths (", n, ") must be <= 2^53");
  return detail::apply_keep_rule(n, rule);
}

PDROP_END_NAMESPACE

#endif  // PDROP_BUDGET_HPP
