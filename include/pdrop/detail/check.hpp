// pdrop/detail/check.hpp - argument checks shared by every operator.
//
// Non-templated on purpose: an operator's templated front extracts sizes and
// strides from its views and calls these, so each check exists once and every
// error message has the same form: "<function>: <argument>.<field> (<value>)
// <what was expected>".
#ifndef PDROP_DETAIL_CHECK_HPP
#define PDROP_DETAIL_CHECK_HPP

#include <cstdint>
#include <limits>

#include "pdrop/config.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/types.hpp"

PDROP_BEGIN_NAMESPACE
namespace detail {

// A list parameter (span): size >= 0, data non-null when size > 0.
template <class T>
void check_list(const char* fn, const char* name, span<const T> list) {
  if (list.size < 0) fail<shape_error>(fn, name, ".size (", list.size, ") must be >= 0");
  if (list.size > 0 && list.data == nullptr)
    fail<shape_error>(fn, name, ".data is null with ", list.size, " entries");
}

// a * b, or throws shape_error naming `what` when it overflows int64.
inline std::int64_t checked_mul(const char* fn, const char* what, std::int64_t a,
                                std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    fail<shape_error>(fn, what, ": ", a, " * ", b, " overflows int64");
  return r;
}

inline std::int64_t checked_add(const char* fn, const char* what, std::int64_t a,
                                std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r))
    fail<shape_error>(fn, what, ": ", a, " + ", b, " overflows int64");
  return r;
}

// Number of addressable elements of a strided view of `elem_size`-byte
// elements: (n0-1)*s0 + (n1-1)*s1 + inner, checked for overflow, also when
// counted in bytes.
inline std::int64_t checked_extent(const char* fn, const char* name,
                                   std::int64_t n0, std::int64_t s0,
                                   std::int64_t n1, std::int64_t s1,
                                   std::int64_t inner, std::size_t elem_size) {
  if (n0 == 0 || n1 == 0 || inner == 0) return 0;
  std::int64_t e = checked_add(fn, name, checked_mul(fn, name, n0 - 1, s0),
                               checked_mul(fn, name, n1 - 1, s1));
  e = checked_add(fn, name, e, inner);
  checked_mul(fn, name, e, static_cast<std::int64_t>(elem_size));
  return e;
}

// A TokenView: tokens, features >= 0; row_stride >= features when there is
// more than one row; data non-null unless empty.
inline void check_token_view(const char* fn, const char* name, const void* data,
                             std::int64_t tokens, std::int64_t features,
                             std::int64_t row_stride, std::size_t elem_size) {
  if (tokens < 0) fail<shape_error>(fn, name, ".tokens (", tokens, ") must be >= 0");
  if (features < 0)
    fail<shape_error>(fn, name, ".features (", features, ") must be >= 0");
  if (tokens > 1 && row_stride < features)
    fail<shape_error>(fn, name, ".row_stride (", row_stride,
                      ") must be >= features (", features, ")");
  if (data == nullptr && tokens > 0 && features > 0)
    fail<shape_error>(fn, name, ".data is null with ", tokens, " x ", features,
                      " elements");
  checked_extent(fn, name, tokens, row_stride, 1, 0, features, elem_size);
}

// A HeadView: sizes >= 0, strides >= dim where they step (rows of one head
// and rows of one token never overlap), data non-null unless empty. When
// `writable`, the rows of different heads must not alias either: the two
// strides must nest (the larger one spans every row of the smaller).
inline void check_head_view(const char* fn, const char* name, const void* data,
                            std::int64_t heads, std::int64_t tokens,
                            std::int64_t dim, std::int64_t head_stride,
                            std::int64_t token_stride, std::size_t elem_size,
                            bool writable) {
  if (heads < 0) fail<shape_error>(fn, name, ".heads (", heads, ") must be >= 0");
  if (tokens < 0) fail<shape_error>(fn, name, ".tokens (", tokens, ") must be >= 0");
  if (dim < 0) fail<shape_error>(fn, name, ".dim (", dim, ") must be >= 0");
  if (tokens > 1 && token_stride < dim)
    fail<shape_error>(fn, name, ".token_stride (", token_stride,
                      ") must be >= dim (", dim, ")");
  if (heads > 1 && head_stride < dim)
    fail<shape_error>(fn, name, ".head_stride (", head_stride,
                      ") must be >= dim (", dim, ")");
  if (data == nullptr && heads > 0 && tokens > 0 && dim > 0)
    fail<shape_error>(fn, name, ".data is null with ", heads, " x ", tokens,
                      " x ", dim, " elements");
  checked_extent(fn, name, heads, head_stride, tokens, token_stride, dim,
                 elem_size);
  if (writable && heads > 1 && tokens > 1) {
    // Smaller stride steps rows of length dim; the larger must clear them all.
    const bool heads_inner = head_stride <= token_stride;
    const std::int64_t inner_stride = heads_inner ? head_stride : token_stride;
    const std::int64_t inner_n = heads_inner ? heads : tokens;
    const std::int64_t outer_stride = heads_inner ? token_stride : head_stride;
    const std::int64_t span = checked_add(
        fn, name, checked_mul(fn, name, inner_n - 1, inner_stride), dim);
    if (outer_stride < span)
      fail<shape_error>(fn, name, ": strides (head_stride ", head_stride,
                        ", token_stride ", token_stride,
                        ") make rows of different heads and tokens overlap for ",
                        heads, " heads x ", tokens, " tokens x dim ", dim);
  }
}

// [begin, end) byte ranges of two views overlap.
inline bool bytes_overlap(const void* a, std::int64_t a_bytes, const void* b,
                          std::int64_t b_bytes) {
  if (a_bytes <= 0 || b_bytes <= 0) return false;
  const auto pa = reinterpret_cast<std::uintptr_t>(a);
  const auto pb = reinterpret_cast<std::uintptr_t>(b);
  return pa < pb + static_cast<std::uintptr_t>(b_bytes) &&
         pb < pa + static_cast<std::uintptr_t>(a_bytes);
}

// Sorted, disjoint spans inside [0, tokens); messages call the bound
// `tokens_name` (tokens < 0: no upper bound). Returns their total length.
inline std::int64_t check_spans(const char* fn, span<const ImageSpan> spans,
                                std::int64_t tokens, const char* tokens_name) {
  if (spans.size < 0 || (spans.size > 0 && spans.data == nullptr))
    fail<shape_error>(fn, "spans.data is null with ", spans.size, " entries");
  std::int64_t total = 0;
  for (std::int64_t i = 0; i < spans.size; ++i) {
    const ImageSpan s = spans[i];
    if (s.start < 0 || s.length < 0 || (tokens >= 0 && s.length > tokens - s.start))
      fail<value_error>(fn, "spans[", i, "] (start ", s.start, ", length ", s.length,
                        ") must lie inside [0, ", tokens_name, " = ", tokens, ")");
    if (i > 0 && s.start < spans[i - 1].end())
      fail<value_error>(fn, "spans[", i, "] (start ", s.start,
                        ") must start at or after the end of spans[", i - 1,
                        "] (", spans[i - 1].end(), "): spans are sorted and disjoint");
    total += s.length;
  }
  return total;
}

// One keep count per span, each in [0, spans[i].length]. Returns their sum.
inline std::int64_t check_keep_counts(const char* fn, span<const ImageSpan> spans,
                                      span<const std::int64_t> keep_counts) {
  if (keep_counts.size != spans.size)
    fail<shape_error>(fn, "keep_counts.size (", keep_counts.size,
                      ") must equal spans.size (", spans.size, ")");
  if (keep_counts.size > 0 && keep_counts.data == nullptr)
    fail<shape_error>(fn, "keep_counts.data is null with ", keep_counts.size, " entries");
  std::int64_t total = 0;
  for (std::int64_t i = 0; i < spans.size; ++i) {
    if (keep_counts[i] < 0 || keep_counts[i] > spans[i].length)
      fail<value_error>(fn, "keep_counts[", i, "] (", keep_counts[i],
                        ") must be in [0, spans[", i, "].length = ", spans[i].length, "]");
    total += keep_counts[i];
  }
  return total;
}

}  // namespace detail
PDROP_END_NAMESPACE

#endif  // PDROP_DETAIL_CHECK_HPP
