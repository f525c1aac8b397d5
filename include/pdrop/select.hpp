// pdrop/select.hpp - top-k retention: the k best-scored tokens, in their
// original order.
//
// select_top_k picks the k largest scores and writes their indices in
// ascending order (the kept tokens stay in sequence order). O(n): a radix
// select over the scores' monotone bits finds the k-th best, then one scan
// in index order emits every index at or above it.
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

#include "pdrop/config.hpp"
#include "pdrop/detail/std.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/types.hpp"
#include "pdrop/workspace.hpp"

PDROP_BEGIN_NAMESPACE
namespace detail {

// Checks everything but the scores' values (score_keys does that while it
// reads them).
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
}

// keys[i] = the monotone 32 bits of scores[i] (unsigned order = score
// order, -0.0 == +0.0); returns their min and max. Throws value_error on
// the first non-finite score (nothing but keys written).
inline void score_keys(const char* fn, span<const float> scores, std::uint32_t* keys,
                       std::uint32_t& lo, std::uint32_t& hi) {
  std::uint32_t mn = 0xFFFFFFFFu, mx = 0, special = 0;
  for (std::int64_t i = 0; i < scores.size; ++i) {
    std::uint32_t bits = 0;
    const float canonical = scores[i] + 0.0f;  // -0.0 -> +0.0
    std::memcpy(&bits, &canonical, sizeof bits);
    // All-ones exponent: Inf or NaN.
    special |= static_cast<std::uint32_t>((bits & 0x7F800000u) == 0x7F800000u);
    const std::uint32_t mask = static_cast<std::uint32_t>(
        -static_cast<std::int32_t>(bits >> 31));  // all ones for negatives
    bits ^= mask | 0x80000000u;
    keys[i] = bits;
    mn = bits < mn ? bits : mn;
    mx = bits > mx ? bits : mx;
  }
  if (special)
    for (std::int64_t i = 0; i < scores.size; ++i)
      if (!std::isfinite(scores[i]))
        fail<value_error>(fn, "scores[", i, "] is ", scores[i],
                          ": every score must be finite");
  lo = mn;
  hi = mx;
}

inline int top_bit(std::uint64_t x) { return 63 - __builtin_clzll(x); }

// One radix step over keys in [lo, hi] (lo < hi): counts them by the (up to)
// `bits` bits below the highest bit where lo and hi differ (every key shares
// the bits above it, so the buckets split the keys' actual range) and finds
// the bucket holding the need-th largest. Returns that bucket as `prefix`,
// the key's bits from `shift` up (a key is in it iff key >> shift ==
// prefix), the number of keys in higher buckets and in it.
struct RadixStep {
  std::uint64_t prefix = 0;
  int shift = 0;
  std::int64_t above = 0;
  std::int64_t count = 0;
};

template <class Key>
inline RadixStep radix_step(const Key* keys, std::int64_t n, Key lo, Key hi,
                            std::int64_t need, int bits, std::uint32_t* hist) {
  const int top = top_bit(static_cast<std::uint64_t>(lo ^ hi));
  const int shift = top + 1 > bits ? top + 1 - bits : 0;
  const int width = top + 1 - shift;
  const std::uint32_t buckets = 1u << width;
  const Key mask = static_cast<Key>(buckets - 1);
  std::fill(hist, hist + buckets, 0u);
  for (std::int64_t i = 0; i < n; ++i) ++hist[(keys[i] >> shift) & mask];
  std::int64_t above = 0;
  std::uint32_t b = buckets;
  while (b > 0) {
    --b;
    if (above + hist[b] >= need) break;
    above += hist[b];
  }
  RadixStep r;
  r.prefix = (static_cast<std::uint64_t>(lo >> shift) >> width << width) | b;
  r.shift = shift;
  r.above = above;
  r.count = hist[b];
  return r;
}

// Digit width for n keys: about sqrt(n) buckets (6..11 bits), so that
// clearing and scanning the histogram stays small next to counting.
inline int radix_bits(std::int64_t n) {
  const int len = top_bit(static_cast<std::uint64_t>(n) | 1) + 1;
  const int bits = (len + 3) / 2 + 1;
  return bits < 6 ? 6 : (bits > 11 ? 11 : bits);
}

#if PDROP_SIMD_AVX2
// For each 8-bit mask, the positions of its set bits, one per byte.
struct SetBitTable {
  std::uint64_t pos[256];
};
constexpr SetBitTable make_set_bit_table() {
  SetBitTable t{};
  for (int m = 0; m < 256; ++m) {
    std::uint64_t packed = 0;
    int out = 0;
    for (int j = 0; j < 8; ++j)
      if (m & (1 << j)) packed |= std::uint64_t(j) << (8 * out++);
    t.pos[m] = packed;
  }
  return t;
}
inline constexpr SetBitTable kSetBits = make_set_bit_table();
#endif

// Appends to kept (from `out`, up to k entries) every i in [begin, end)
// with keys[i] >= t, in order; returns the new out.
inline std::int64_t emit_at_least(const std::uint32_t* keys, std::int64_t begin,
                                  std::int64_t end, std::uint32_t t, std::int64_t* kept,
                                  std::int64_t out, std::int64_t k) {
  std::int64_t i = begin;
#if PDROP_SIMD_AVX2
  // Eight keys per step: compare, then store the indices of the hits
  // (positions from a table) and advance by their count. Writes up to 8
  // entries past out, so it stops 8 short of k.
  if (t == 0) {
    for (; i < end && out < k; ++i) kept[out++] = i;
    return out;
  }
  const __m256i bias = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256i below = _mm256_set1_epi32(static_cast<int>((t - 1) ^ 0x80000000u));
  for (; i + 8 <= end && out + 8 <= k; i += 8) {
    const __m256i kv = _mm256_xor_si256(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + i)), bias);
    const int m = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(kv, below)));
    const __m128i pos = _mm_cvtsi64_si128(static_cast<long long>(kSetBits.pos[m]));
    const __m256i base = _mm256_set1_epi64x(i);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(kept + out),
                        _mm256_add_epi64(_mm256_cvtepu8_epi64(pos), base));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(kept + out + 4),
                        _mm256_add_epi64(_mm256_cvtepu8_epi64(_mm_srli_si128(pos, 4)), base));
    out += __builtin_popcount(static_cast<unsigned>(m));
  }
#endif
  // Branch-free: write every index, advance past the kept ones.
  for (; i < end && out < k; ++i) {
    kept[out] = i;
    out += static_cast<std::int64_t>(keys[i] >= t);
  }
  return out;
}

// The smallest and largest of n keys (n >= 1).
inline void key_range(const std::uint32_t* keys, std::int64_t n, std::uint32_t& lo,
                      std::uint32_t& hi) {
  std::uint32_t mn = 0xFFFFFFFFu, mx = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    mn = keys[i] < mn ? keys[i] : mn;
    mx = keys[i] > mx ? keys[i] : mx;
  }
  lo = mn;
  hi = mx;
}

// select_top_k on keys made by score_keys (n >= 1, lo and hi their range,
// 0 <= k <= n): the k indices with the largest keys, ties to the lower
// index, ascending, into kept. A key of 0 is below every finite score's
// key, so keys set to 0 are never picked as long as k does not exceed the
// keys above 0 (the query tokens rank_and_drop keeps outside the ranking).
inline void select_top_k_keys(const std::uint32_t* keys, std::int64_t n, std::int64_t k,
                              std::uint32_t lo, std::uint32_t hi, Workspace& ws,
                              std::int64_t* kept_data) {
  const span<std::int64_t> kept(kept_data, k);
  if (k == 0) return;
  if (k == n || lo == hi) {  // everything, or all equal: the first k
    for (std::int64_t i = 0; i < k; ++i) kept[i] = i;
    return;
  }
  std::uint32_t hist[2048];
  std::uint64_t threshold = 0;  // keep i iff (keys[i] << 32 | ~i) >= threshold
  // Level 1, over the 32-bit keys of all n.
  const detail::RadixStep r1 =
      detail::radix_step<std::uint32_t>(keys, n, lo, hi, k, detail::radix_bits(n), hist);
  std::int64_t need = k - r1.above;
  if (r1.count == need) {
    // The whole bucket is in: the threshold is its smallest possible key.
    threshold = r1.prefix << r1.shift << 32;
  } else {
    // The bucket's keys, made unique by the inverted index, narrowed down.
    // It holds at most n - 1 keys (lo and hi fall in different buckets).
    std::uint64_t* cand = ws.keys(static_cast<std::size_t>(r1.count) + 1);
    const auto key64 = [&](std::int64_t i) {
      return (std::uint64_t{keys[i]} << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(i));
    };
    std::int64_t m = 0;
    if (r1.count * 16 < n) {  // few: a well-predicted branch
      for (std::int64_t i = 0; i < n; ++i)
        if ((keys[i] >> r1.shift) == r1.prefix) cand[m++] = key64(i);
    } else {
      for (std::int64_t i = 0; i < n; ++i) {
        cand[m] = key64(i);
        m += static_cast<std::int64_t>((keys[i] >> r1.shift) == r1.prefix);
      }
    }
    while (m > 64) {
      std::uint64_t clo = ~std::uint64_t{0}, chi = 0;
      for (std::int64_t i = 0; i < m; ++i) {
        clo = cand[i] < clo ? cand[i] : clo;
        chi = cand[i] > chi ? cand[i] : chi;
      }
      const detail::RadixStep r = detail::radix_step<std::uint64_t>(
          cand, m, clo, chi, need, detail::radix_bits(m), hist);
      need -= r.above;
      if (r.count == need) {
        threshold = r.prefix << r.shift;
        m = 0;
        break;
      }
      std::int64_t w = 0;
      for (std::int64_t i = 0; i < m; ++i) {
        const std::uint64_t c = cand[i];
        cand[w] = c;
        w += static_cast<std::int64_t>((c >> r.shift) == r.prefix);
      }
      m = w;
    }
    if (m > 0) {
      std::nth_element(cand, cand + (need - 1), cand + m, greater{});
      threshold = cand[need - 1];
    }
  }
  // Keys are unique, so exactly k are >= the threshold: those with a score
  // key above t, and those equal to it with an index up to i_t.
  const auto t = static_cast<std::uint32_t>(threshold >> 32);
  const std::int64_t last_tie =
      0xFFFFFFFFll - static_cast<std::int64_t>(threshold & 0xFFFFFFFFu);
  const std::int64_t split = std::min(n, last_tie + 1);
  std::int64_t out = detail::emit_at_least(keys, 0, split, t, kept.data, 0, k);
  if (out < k) detail::emit_at_least(keys, split, n, t + 1, kept.data, out, k);
}

}  // namespace detail

// Indices of the k largest of `scores`, ascending.
//
//   scores  n floats, all finite (n < 2^32).
//   k       0 <= k <= n.
//   ws      scratch of n keys; Workspace::reserve makes the call
//           allocation-free.
//   kept    out, k entries: indices into scores, strictly ascending.
//
// Radix select: one pass turns the scores into monotone 32-bit keys; a
// histogram of about sqrt(n) buckets, taken below the highest bit where the
// smallest and largest key differ (so that it splits the actual range),
// finds the bucket of the k-th best. Only that bucket's keys, extended by
// the inverted index to 64 bits (unique: ties rank the lower index first),
// go on to further radix steps and, once at most 64 are left, an
// nth_element. The result is a threshold (score t, last index i_t among the
// ties at t); one scan in index order emits every index with a score above
// t, or equal to it up to i_t. O(n): three passes over the scores' keys.
inline void select_top_k(span<const float> scores, std::int64_t k, Workspace& ws,
                         span<std::int64_t> kept) {
  constexpr const char* fn = "pdrop::select_top_k";
  detail::validate_select(fn, scores, k, kept);
  const std::int64_t n = scores.size;
  if (n == 0) return;
  std::uint32_t* keys = ws.keys32(static_cast<std::size_t>(n));
  std::uint32_t lo = 0, hi = 0;
  detail::score_keys(fn, scores, keys, lo, hi);
  detail::select_top_k_keys(keys, n, k, lo, hi, ws, kept.data);
}

PDROP_END_NAMESPACE

#endif  // PDROP_SELECT_HPP
