// pdrop/select.hpp - top-k retention: the k best-scored tokens, in their
// original order.
//
// select_top_k picks the k largest scores and writes their indices in
// ascending order (the kept tokens stay in sequence order). O(n) expected:
// one partition (nth_element) over packed 64-bit keys finds the k-th best
// key, then one scan in index order emits every index at or above it.
//
// Ties are broken deterministically: among equal scores the lower index
// ranks higher, so the earlier token is kept. -0.0 and +0.0 are equal.
// Every score must be finite (a NaN would make the pick meaningless): a
// non-finite score is a value_error, reported before anything is written.
#ifndef PDROP_SELECT_HPP
#define PDROP_SELECT_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

#include "pdrop/errors.hpp"
#include "pdrop/view.hpp"
#include "pdrop/workspace.hpp"

namespace pdrop {
namespace detail {

// Key whose unsigned order is (score ascending, index descending): the
// float's bits made monotone in the high half, the inverted index in the low.
inline std::uint64_t rank_key(float score, std::int64_t index) {
  const float canonical = score + 0.0f;  // -0.0 -> +0.0
  std::uint32_t bits = 0;
  std::memcpy(&bits, &canonical, sizeof bits);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (std::uint64_t{bits} << 32) |
         (0xFFFFFFFFu - static_cast<std::uint32_t>(index));
}

inline void validate_select(const char* fn, span<const float> scores, std::int64_t k,
                            span<std::int64_t> kept) {
  if (scores.size < 0 || (scores.size > 0 && scores.data == nullptr))
    fail<shape_error>(fn, "scores.data is null with ", scores.size, " entries");
  if (scores.size > 0xFFFFFFFFll)
    fail<shape_error>(fn, "scores.size (", scores.size, ") must be < 2^32");
  if (k < 0 || k > scores.size)
    fail<value_error>(fn, "k (", k, ") must be in [0, scores.size = ", scores.size,
                      "]");
  if (kept.size != k)
    fail<shape_error>(fn, "kept.size (", kept.size, ") must equal k (", k, ")");
  if (k > 0 && kept.data == nullptr)
    fail<shape_error>(fn, "kept.data is null with ", k, " entries");
  for (std::int64_t i = 0; i < scores.size; ++i)
    if (!std::isfinite(scores[i]))
      fail<value_error>(fn, "scores[", i, "] is ", scores[i],
                        ": every score must be finite");
}

}  // namespace detail

// Indices of the k largest of `scores`, ascending.
//
//   scores  n floats, all finite (n < 2^32).
//   k       0 <= k <= n.
//   ws      scratch of n keys; Workspace::reserve makes the call
//           allocation-free.
//   kept    out, k entries: indices into scores, strictly ascending.
inline void select_top_k(span<const float> scores, std::int64_t k, Workspace& ws,
                  span<std::int64_t> kept) {
  detail::validate_select("pdrop::select_top_k", scores, k, kept);
  const std::int64_t n = scores.size;
  if (k == 0) return;
  if (k == n) {
    for (std::int64_t i = 0; i < n; ++i) kept[i] = i;
    return;
  }
  std::uint64_t* keys = ws.keys(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) keys[i] = detail::rank_key(scores[i], i);
  std::nth_element(keys, keys + (k - 1), keys + n, std::greater<std::uint64_t>());
  const std::uint64_t threshold = keys[k - 1];
  // Keys are unique, so exactly k of them are >= the k-th largest.
  std::int64_t out = 0;
  for (std::int64_t i = 0; i < n; ++i)
    if (detail::rank_key(scores[i], i) >= threshold) kept[out++] = i;
}

}  // namespace pdrop

#endif  // PDROP_SELECT_HPP
