// pdrop/compact.hpp - compaction: drop the unkept image tokens from every
// per-token buffer.
//
// After selection, a drop keeps the list
//     keep = [0, s) + kept + [s + n, T)
// (every text token, the kept image tokens, all in original order). The
// runtime applies that one list to each of its per-token buffers:
//   compact_rows       hidden states, labels, masks, M-RoPE position rows:
//                      any TokenView of a trivially copyable type.
//   compact_heads      rows of a per-head tensor: the q/k/v rows the next
//                      layer already computed, or KV-cache rows (HND or NHD).
//   compact_positions  1-D positions: re-indexed base..base+T_new-1 from the
//                      sequence's first position (the reference's behaviour,
//                      default) or moved with the rows.
// In place (stable: row i receives row keep[i], i <= keep[i], so a forward
// pass never reads a row it has overwritten) or into a caller's buffer.
// Runs of consecutive kept rows move with one memmove when rows are dense.
// Rows past keep.size of an in-place buffer keep stale values.
//
// Every call validates the keep list (strictly ascending, inside the
// buffer) and the views before moving a byte.
#ifndef PDROP_COMPACT_HPP
#define PDROP_COMPACT_HPP

#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>

#include "pdrop/config.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/types.hpp"

PDROP_BEGIN_NAMESPACE

namespace detail {

// `name` (a keep list) strictly ascending, every entry in [0, tokens).
template <class I>
void validate_keep(const char* fn, span<const I> keep, std::int64_t tokens,
                   const char* name = "keep") {
  static_assert(std::is_same_v<I, std::int64_t> || std::is_same_v<I, std::int32_t>,
                "keep lists are int64 or int32");
  if (keep.size < 0 || keep.size > tokens)
    fail<shape_error>(fn, name, ".size (", keep.size, ") must be in [0, tokens = ",
                      tokens, "]");
  if (keep.size > 0 && keep.data == nullptr)
    fail<shape_error>(fn, name, ".data is null with ", keep.size, " entries");
  for (std::int64_t i = 0; i < keep.size; ++i) {
    if (keep[i] < 0 || keep[i] >= tokens)
      fail<value_error>(fn, name, "[", i, "] (", keep[i], ") must be in [0, ", tokens,
                        ")");
    if (i > 0 && keep[i] <= keep[i - 1])
      fail<value_error>(fn, name, " must be strictly ascending: ", name, "[", i - 1,
                        "] = ", keep[i - 1], ", ", name, "[", i, "] = ", keep[i]);
  }
}

// Moves row keep[i] to row i for every i, rows of `width` elements of `elem`
// bytes spaced `stride` elements apart, from `src` to `dst` (dst may equal
// src: then i <= keep[i] makes the forward order safe). Consecutive kept
// rows of dense buffers move as one run (one memmove); rows that stay in
// place are skipped. (Measured: non-temporal stores for large moves lose
// here, since the moved rows are usually still in the last-level cache.)
template <class I>
void move_rows(const unsigned char* src, unsigned char* dst, span<const I> keep,
               std::int64_t width,
                      std::int64_t src_stride, std::int64_t dst_stride,
                      std::size_t elem) {
  const std::size_t row_bytes = static_cast<std::size_t>(width) * elem;
  const bool dense = src_stride == width && dst_stride == width;
  std::int64_t i = 0;
  while (i < keep.size) {
    std::int64_t j = i + 1;
    if (dense)
      while (j < keep.size && keep[j] == static_cast<std::int64_t>(keep[j - 1]) + 1) ++j;
    const std::size_t bytes = row_bytes * static_cast<std::size_t>(j - i);
    const unsigned char* from =
        src + static_cast<std::size_t>(static_cast<std::int64_t>(keep[i]) * src_stride) * elem;
    unsigned char* to = dst + static_cast<std::size_t>(i * dst_stride) * elem;
    if (from != to && bytes > 0) std::memmove(to, from, bytes);
    i = j;
  }
}

// maybe_new_spans: empty, or spans.size entries that are either the spans
// array itself or memory disjoint from it (a partial overlap would
// overwrite spans not yet read).
inline void check_new_spans(const char* fn, span<const ImageSpan> spans,
                            span<ImageSpan> maybe_new_spans) {
  if (maybe_new_spans.size != 0 && maybe_new_spans.size != spans.size)
    fail<shape_error>(fn, "maybe_new_spans.size (", maybe_new_spans.size,
                      ") must be 0 or spans.size (", spans.size, ")");
  if (maybe_new_spans.size > 0 && maybe_new_spans.data == nullptr)
    fail<shape_error>(fn, "maybe_new_spans.data is null with ", maybe_new_spans.size,
                      " entries");
  const auto bytes = static_cast<std::int64_t>(sizeof(ImageSpan)) * maybe_new_spans.size;
  if (maybe_new_spans.data != spans.data &&
      bytes_overlap(maybe_new_spans.data, bytes, spans.data, bytes))
    fail<shape_error>(fn, "maybe_new_spans overlaps spans without being the same array");
}

}  // namespace detail

// Builds the keep list of a drop.
//   tokens      T: current sequence length.
//   spans       sorted, disjoint image spans inside [0, T).
//   kept        absolute positions of the kept image tokens, strictly
//               ascending, each inside one of the spans.
//   keep        out, T - (image tokens) + kept.size entries: every token
//               outside the spans plus the kept ones, ascending.
//   maybe_new_spans  out (or empty): the spans after compaction, same count
//               as spans: start moved down by the tokens dropped before it,
//               length = its kept tokens. May be the spans array itself (not
//               a partial overlap of it).
inline void build_keep_list(std::int64_t tokens, span<const ImageSpan> spans,
                            span<const std::int64_t> kept, span<std::int64_t> keep,
                            span<ImageSpan> maybe_new_spans = {}) {
  constexpr const char* fn = "pdrop::build_keep_list";
  if (tokens < 0) detail::fail<shape_error>(fn, "tokens (", tokens, ") must be >= 0");
  if (spans.size > 0 && spans.data == nullptr)
    detail::fail<shape_error>(fn, "spans.data is null with ", spans.size, " entries");
  std::int64_t image = 0;
  for (std::int64_t i = 0; i < spans.size; ++i) {
    const ImageSpan s = spans[i];
    if (s.start < 0 || s.length < 0 || s.length > tokens - s.start)
      detail::fail<value_error>(fn, "spans[", i, "] (start ", s.start, ", length ",
                                s.length, ") must lie inside [0, tokens = ", tokens, ")");
    if (i > 0 && s.start < spans[i - 1].end())
      detail::fail<value_error>(fn, "spans[", i, "] (start ", s.start,
                                ") overlaps or precedes spans[", i - 1, "] (end ",
                                spans[i - 1].end(), ")");
    image += s.length;
  }
  detail::validate_keep(fn, kept, tokens, "kept");
  for (std::int64_t i = 0, sp = 0; i < kept.size; ++i) {
    while (sp < spans.size && kept[i] >= spans[sp].end()) ++sp;
    if (sp == spans.size || kept[i] < spans[sp].start)
      detail::fail<value_error>(fn, "kept[", i, "] (", kept[i],
                                ") is not inside any image span");
  }
  if (keep.size != tokens - image + kept.size)
    detail::fail<shape_error>(fn, "keep.size (", keep.size, ") must be tokens - image + kept = ",
                              tokens, " - ", image, " + ", kept.size, " = ",
                              tokens - image + kept.size);
  if (keep.size > 0 && keep.data == nullptr)
    detail::fail<shape_error>(fn, "keep.data is null with ", keep.size, " entries");
  detail::check_new_spans(fn, spans, maybe_new_spans);
  const auto keep_bytes = static_cast<std::int64_t>(sizeof(std::int64_t)) * keep.size;
  if (detail::bytes_overlap(keep.data, keep_bytes, kept.data,
                            static_cast<std::int64_t>(sizeof(std::int64_t)) * kept.size))
    detail::fail<shape_error>(fn, "keep overlaps kept: the keep list needs its own memory");
  if (detail::bytes_overlap(keep.data, keep_bytes, spans.data,
                            static_cast<std::int64_t>(sizeof(ImageSpan)) * spans.size) ||
      detail::bytes_overlap(keep.data, keep_bytes, maybe_new_spans.data,
                            static_cast<std::int64_t>(sizeof(ImageSpan)) * maybe_new_spans.size))
    detail::fail<shape_error>(fn, "keep overlaps spans or maybe_new_spans");

  std::int64_t out = 0, ki = 0, t = 0;
  for (std::int64_t sp = 0; sp < spans.size; ++sp) {
    const ImageSpan s = spans[sp];  // read before maybe_new_spans[sp] is written
    for (; t < s.start; ++t) keep[out++] = t;
    const std::int64_t new_start = out;
    for (; ki < kept.size && kept[ki] < s.end(); ++ki) keep[out++] = kept[ki];
    if (maybe_new_spans.size > 0) maybe_new_spans[sp] = ImageSpan{new_start, out - new_start};
    t = s.end();
  }
  for (; t < tokens; ++t) keep[out++] = t;
}

namespace detail {

// The bodies of the compaction operators below, for int64 and int32 keep
// lists (llama.cpp's ggml_get_rows takes int32 row indices).
template <class T, class I>
void compact_rows_in_place(TokenView<T> rows, span<const I> keep) {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T>,
                "compact_rows moves rows of a writable, trivially copyable type");
  constexpr const char* fn = "pdrop::compact_rows";
  detail::check_token_view(fn, "rows", rows.data, rows.tokens, rows.features,
                           rows.row_stride, sizeof(T));
  detail::validate_keep(fn, keep, rows.tokens);
  auto* p = reinterpret_cast<unsigned char*>(rows.data);
  detail::move_rows(p, p, keep, rows.features, rows.row_stride, rows.row_stride, sizeof(T));
}

template <class T, class I>
void compact_rows_to(TokenView<const T> src, span<const I> keep,
                  TokenView<T> dst) {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T>,
                "compact_rows moves rows of a writable, trivially copyable type");
  constexpr const char* fn = "pdrop::compact_rows";
  detail::check_token_view(fn, "src", src.data, src.tokens, src.features,
                           src.row_stride, sizeof(T));
  detail::check_token_view(fn, "dst", dst.data, dst.tokens, dst.features,
                           dst.row_stride, sizeof(T));
  detail::validate_keep(fn, keep, src.tokens);
  if (dst.features != src.features)
    detail::fail<shape_error>(fn, "dst.features (", dst.features,
                              ") must equal src.features (", src.features, ")");
  if (dst.tokens < keep.size)
    detail::fail<shape_error>(fn, "dst.tokens (", dst.tokens,
                              ") must be >= keep.size (", keep.size, ")");
  const std::int64_t src_n = detail::checked_extent(fn, "src", src.tokens, src.row_stride, 1, 0, src.features, sizeof(T));
  const std::int64_t dst_n = detail::checked_extent(fn, "dst", dst.tokens, dst.row_stride, 1, 0, dst.features, sizeof(T));
  if (detail::bytes_overlap(src.data, src_n * static_cast<std::int64_t>(sizeof(T)),
                            dst.data, dst_n * static_cast<std::int64_t>(sizeof(T))))
    detail::fail<shape_error>(fn, "dst overlaps src; use the in-place overload");
  detail::move_rows(reinterpret_cast<const unsigned char*>(src.data),
                    reinterpret_cast<unsigned char*>(dst.data), keep, src.features,
                    src.row_stride, dst.row_stride, sizeof(T));
}

template <class T, class I>
void compact_heads_in_place(HeadView<T> kv, span<const I> keep) {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T>,
                "compact_heads moves rows of a writable, trivially copyable type");
  constexpr const char* fn = "pdrop::compact_heads";
  detail::check_head_view(fn, "kv", kv.data, kv.heads, kv.tokens, kv.dim,
                          kv.head_stride, kv.token_stride, sizeof(T), true);
  detail::validate_keep(fn, keep, kv.tokens);
  auto* p = reinterpret_cast<unsigned char*>(kv.data);
  if (kv.head_stride == kv.dim) {  // NHD: all heads of a token side by side
    detail::move_rows(p, p, keep, kv.heads * kv.dim, kv.token_stride, kv.token_stride,
                      sizeof(T));
    return;
  }
  for (std::int64_t h = 0; h < kv.heads; ++h) {
    unsigned char* head = p + static_cast<std::size_t>(h * kv.head_stride) * sizeof(T);
    detail::move_rows(head, head, keep, kv.dim, kv.token_stride, kv.token_stride,
                      sizeof(T));
  }
}

template <class T, class I>
void compact_heads_to(HeadView<const T> src, span<const I> keep,
                   HeadView<T> dst) {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T>,
                "compact_heads moves rows of a writable, trivially copyable type");
  constexpr const char* fn = "pdrop::compact_heads";
  detail::check_head_view(fn, "src", src.data, src.heads, src.tokens, src.dim,
                          src.head_stride, src.token_stride, sizeof(T), false);
  detail::check_head_view(fn, "dst", dst.data, dst.heads, dst.tokens, dst.dim,
                          dst.head_stride, dst.token_stride, sizeof(T), true);
  detail::validate_keep(fn, keep, src.tokens);
  if (dst.heads != src.heads || dst.dim != src.dim)
    detail::fail<shape_error>(fn, "dst (heads ", dst.heads, ", dim ", dst.dim,
                              ") must match src (heads ", src.heads, ", dim ", src.dim, ")");
  if (dst.tokens < keep.size)
    detail::fail<shape_error>(fn, "dst.tokens (", dst.tokens,
                              ") must be >= keep.size (", keep.size, ")");
  const auto elem = static_cast<std::int64_t>(sizeof(T));
  const std::int64_t src_n = detail::checked_extent(fn, "src", src.heads, src.head_stride, src.tokens, src.token_stride, src.dim, sizeof(T));
  const std::int64_t dst_n = detail::checked_extent(fn, "dst", dst.heads, dst.head_stride, dst.tokens, dst.token_stride, dst.dim, sizeof(T));
  if (detail::bytes_overlap(src.data, src_n * elem, dst.data, dst_n * elem))
    detail::fail<shape_error>(fn, "dst overlaps src; use the in-place overload");
  for (std::int64_t h = 0; h < src.heads; ++h)
    detail::move_rows(
        reinterpret_cast<const unsigned char*>(src.data + h * src.head_stride),
        reinterpret_cast<unsigned char*>(dst.data + h * dst.head_stride), keep, src.dim,
        src.token_stride, dst.token_stride, sizeof(T));
}

template <class P, class I>
void compact_positions_in_place(TokenView<P> positions, span<const I> keep,
                       PositionMode mode,
                       std::optional<std::int64_t> maybe_base) {
  static_assert(std::is_integral_v<P> && !std::is_const_v<P>,
                "positions are a writable integer type");
  constexpr const char* fn = "pdrop::compact_positions";
  detail::check_token_view(fn, "positions", positions.data, positions.tokens,
                           positions.features, positions.row_stride, sizeof(P));
  detail::validate_keep(fn, keep, positions.tokens);
  if (mode != PositionMode::reindex && mode != PositionMode::keep_original)
    detail::fail<value_error>(fn, "mode (", static_cast<int>(mode),
                              ") is not a pdrop::PositionMode");
  if (mode == PositionMode::keep_original) {
    if (maybe_base)
      detail::fail<value_error>(fn, "maybe_base (", *maybe_base,
                                ") is for PositionMode::reindex; keep_original moves the "
                                "positions with their tokens");
    auto* p = reinterpret_cast<unsigned char*>(positions.data);
    detail::move_rows(p, p, keep, positions.features, positions.row_stride,
                      positions.row_stride, sizeof(P));
    return;
  }
  if (positions.features != 1)
    detail::fail<shape_error>(fn, "positions.features (", positions.features,
                              ") must be 1 to re-index; multi-axis positions (M-RoPE) "
                              "use PositionMode::keep_original");
  if (keep.size == 0) return;
  const std::int64_t base =
      maybe_base ? *maybe_base : static_cast<std::int64_t>(*positions.row(0));
  // P's range as int64 (a 64-bit unsigned P is capped at INT64_MAX).
  constexpr std::int64_t p_max = sizeof(P) >= sizeof(std::int64_t)
                                     ? std::numeric_limits<std::int64_t>::max()
                                     : static_cast<std::int64_t>(std::numeric_limits<P>::max());
  constexpr std::int64_t p_min = static_cast<std::int64_t>(std::numeric_limits<P>::min());
  std::int64_t last = 0;
  if (base < p_min || base > p_max || __builtin_add_overflow(base, keep.size - 1, &last) ||
      last > p_max)
    detail::fail<value_error>(fn, "positions base (", base, ") + keep.size (", keep.size,
                              ") - 1 does not fit the position type [", p_min, ", ",
                              p_max, "]");
  for (std::int64_t i = 0; i < keep.size; ++i)
    *positions.row(i) = static_cast<P>(base + i);
}

}  // namespace detail

// In place: rows[i] = rows[keep[i]] for i < keep.size.
//   rows  tokens x features, any row stride; T trivially copyable.
//   keep  strictly ascending indices in [0, rows.tokens).
template <class T>
void compact_rows(TokenView<T> rows, span<const std::int64_t> keep) {
  detail::compact_rows_in_place(rows, keep);
}
// The same with an int32 keep list.
template <class T>
void compact_rows(TokenView<T> rows, span<const std::int32_t> keep) {
  detail::compact_rows_in_place(rows, keep);
}

// Out of place: dst[i] = src[keep[i]] for i < keep.size; dst rows past
// keep.size are not written.
//   src  tokens x features; dst: at least keep.size rows, same features,
//   memory disjoint from src.
template <class T>
void compact_rows(TokenView<const T> src, span<const std::int64_t> keep,
                  TokenView<T> dst) {
  detail::compact_rows_to(src, keep, dst);
}
// The same with an int32 keep list.
template <class T>
void compact_rows(TokenView<const T> src, span<const std::int32_t> keep,
                  TokenView<T> dst) {
  detail::compact_rows_to(src, keep, dst);
}

// In place, per head: kv(h, i) = kv(h, keep[i]) for every head h and
// i < keep.size. For the rows the next layer computed (q/k/v of the kept
// tokens) or for a KV cache, HND or NHD.
template <class T>
void compact_heads(HeadView<T> kv, span<const std::int64_t> keep) {
  detail::compact_heads_in_place(kv, keep);
}
// The same with an int32 keep list.
template <class T>
void compact_heads(HeadView<T> kv, span<const std::int32_t> keep) {
  detail::compact_heads_in_place(kv, keep);
}

// Out of place, per head: dst(h, i) = src(h, keep[i]); dst has the same
// heads and dim, at least keep.size tokens, memory disjoint from src.
template <class T>
void compact_heads(HeadView<const T> src, span<const std::int64_t> keep,
                   HeadView<T> dst) {
  detail::compact_heads_to(src, keep, dst);
}
// The same with an int32 keep list.
template <class T>
void compact_heads(HeadView<const T> src, span<const std::int32_t> keep,
                   HeadView<T> dst) {
  detail::compact_heads_to(src, keep, dst);
}

// Positions after a drop, in place.
//   reindex:       positions[i] = base + i for i < keep.size (1 feature
//                  only), base = maybe_base or, by default, the sequence's
//                  first position before the drop (positions[0]): a prompt
//                  at 0..T-1 becomes 0..T_new-1 (PyramidDrop's re-index),
//                  one that continues a prefix cache or an earlier chat
//                  turn at 100, 101, ... stays at 100, 101, ... Pass the
//                  position of the sequence's first token in that chunk's
//                  layer when the buffer holds a later chunk only.
//   keep_original: positions[i] = positions[keep[i]] (any features, e.g.
//                  M-RoPE's 3 per token); maybe_base must be empty.
// Throws (positions untouched) on a bad view or keep list, on re-indexing
// more than one feature, or when base + keep.size - 1 does not fit P.
template <class P>
void compact_positions(TokenView<P> positions, span<const std::int64_t> keep,
                       PositionMode mode = PositionMode::reindex,
                       std::optional<std::int64_t> maybe_base = std::nullopt) {
  detail::compact_positions_in_place(positions, keep, mode, maybe_base);
}
// The same with an int32 keep list.
template <class P>
void compact_positions(TokenView<P> positions, span<const std::int32_t> keep,
                       PositionMode mode = PositionMode::reindex,
                       std::optional<std::int64_t> maybe_base = std::nullopt) {
  detail::compact_positions_in_place(positions, keep, mode, maybe_base);
}

// A keep list as int32 row indices, for engines whose gather takes them
// (llama.cpp's ggml_get_rows: an I32 index tensor): out[i] = keep[i] for
// i < keep.size; the rest of out is not written. Throws shape_error when
// out has fewer than keep.size entries (or a null pointer), value_error
// when an index is outside [0, 2^31 - 1]; out is then untouched.
inline void narrow_keep_list(span<const std::int64_t> keep, span<std::int32_t> out) {
  constexpr const char* fn = "pdrop::narrow_keep_list";
  detail::check_list(fn, "keep", keep);
  if (out.size < keep.size || (keep.size > 0 && out.data == nullptr))
    detail::fail<shape_error>(fn, "out.size (", out.size, ") must be >= keep.size (",
                              keep.size, ")");
  for (std::int64_t i = 0; i < keep.size; ++i)
    if (keep[i] < 0 || keep[i] > std::numeric_limits<std::int32_t>::max())
      detail::fail<value_error>(fn, "keep[", i, "] (", keep[i],
                                ") must be in [0, 2^31 - 1] to fit int32");
  for (std::int64_t i = 0; i < keep.size; ++i) out[i] = static_cast<std::int32_t>(keep[i]);
}

PDROP_END_NAMESPACE

#endif  // PDROP_COMPACT_HPP
