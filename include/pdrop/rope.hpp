// pdrop/rope.hpp - moving post-RoPE rows to new positions after a drop.
//
// Why this exists. The q and k rows an engine already projected are stored
// AFTER rotary embedding: each one is turned by angles that depend on the
// position its token had when it was projected. A drop compacts those rows
// (compact_heads), but compaction only moves bytes; the rotation baked into
// every row still belongs to the token's old position. If the engine then
// gives the survivors new, re-indexed positions (kept token i at base + i,
// PositionMode::reindex), a decode query rotated at a new position meets
// keys rotated at old ones, the relative offsets q.k sees are wrong, and the
// attention is wrong without any error. Two consistent choices exist:
//
//   (1) Keep the original positions (PositionMode::keep_original,
//       compact_positions' only mode for M-RoPE rows): the rotated rows
//       stay valid as they are, and decoding continues after the largest
//       original position (mrope_next_position). Nothing to do here.
//   (2) Re-index, and re-rotate the compacted rows with rerotate_heads:
//       from = the OLD positions of the kept tokens (the position rows
//       compacted with keep_original; simply keep[i] when the positions
//       before the drop were 0..T-1), to = their NEW positions. Do it on
//       the compacted K rows (cache or the next layer's k) and on the
//       compacted q rows when they are reused; never on V, which is not
//       rotated. M-RoPE rows can be moved this way too, given new 3-row
//       positions.
//
// The rotation. RoPE splits the first r = 2 * inv_freq.size dimensions of a
// head into r/2 pairs (a, b); pair i at position p is turned by the angle
// p * inv_freq[i]:
//     a' = a cos(p w_i) - b sin(p w_i)        w_i = inv_freq[i]
//     b' = b cos(p w_i) + a sin(p w_i)
// (the plain form of HF's q * cos + rotate_half(q) * sin). Rotations about
// the same plane add: turning by angle u and then by v equals turning by
// u + v. A row rotated at p_old therefore becomes the row rotated at p_new
// when every pair is turned once more by (p_new - p_old) * w_i, which is all
// rerotate_heads does. The difference is taken in int64 (checked), the angle
// in double, cos / sin in double, the pair arithmetic in double, and the
// result stored through float into T (round to nearest). Dimensions >= r
// (partial rotary, e.g. rotary_pct < 1) are not touched.
//
// A model computes its own angles in float32 (HF: float(p) * inv_freq), so
// at large p its rows already carry an angle error of about
// |p w_i| * 2^-24; the re-rotated row differs from the model's fresh row at
// p_new by that order, not more.
//
// Which dimensions form a pair (RopeLayout):
//   rotate_half  pair i = (i, i + r/2). HF transformers' rotate_half
//                (Llama, Qwen, Mistral and most HF models), GPT-NeoX,
//                llama.cpp's LLAMA_ROPE_TYPE_NEOX (and its M-RoPE).
//   interleaved  pair i = (2i, 2i + 1). GPT-J's rotate_every_two, Meta's
//                original Llama code (complex multiplication on adjacent
//                pairs), llama.cpp's LLAMA_ROPE_TYPE_NORM.
// A checkpoint converted between the two permutes its q/k weights; the
// layout here must be the one the rows were rotated with.
//
// M-RoPE (Qwen2-VL / Qwen2.5-VL). Each token has one position per row of a
// small set (temporal, height, width). HF transformers' modeling_qwen2_vl.py
// apply_multimodal_rotary_pos_emb splits the frequency axis into contiguous
// sections given by rope_scaling["mrope_section"] (counted in pairs, e.g.
// {16, 24, 24} for Qwen2-VL-7B's 64 pairs): section s covers frequencies
// [section[0] + ... + section[s-1], + section[s]) and takes its angle from
// position row s. (HF doubles the list and picks row i % 3 per chunk of the
// cos / sin tables because those tables hold each frequency twice; it is
// the same rule per pair.) llama.cpp passes four rows with sections
// {t, h, w, 0}: a trailing 0 section is accepted, its row is never read.
// Qwen3-VL interleaves the rows across frequencies instead
// (MRopeLayout::interleaved, pdrop/mrope.hpp: modeling_qwen3_vl.py
// apply_interleaved_mrope, llama.cpp's LLAMA_ROPE_TYPE_IMROPE): pair i reads
// row 1 when i % 3 == 1 and i < 3 * section[1], row 2 when i % 3 == 2 and
// i < 3 * section[2], else row 0; pass mrope_layout to rerotate_heads.
//
// Positions are token rows, TokenView<const P> of tokens x rows (features
// contiguous per token), P any integer type. The rows of one token must sit
// side by side: a runtime that holds (rows, T) planes (HF's (3, T),
// llama.cpp's 4 x T) transposes them into a T x rows buffer first. One row
// needs nothing: any vector of positions is a T x 1 view.
//
// inv_freq is the caller's table, exactly what the model rotated with: the
// default theta^(-2i/r) (rope_inv_freq below), or a scaled one (linear, NTK,
// llama3, YaRN...). YaRN's attention scaling multiplies cos and sin by one
// constant at projection time; that factor is already in the rows and a
// pure rotation keeps it, so the same table without the factor is right.
//
// Costs: one pass over the positions to validate them, then for each token
// that moved, for each frequency, one cos / sin applied to the pair of every
// head (loop order token -> frequency -> head). No allocation, no scratch.
// Tokens whose positions are equal in every row are skipped (their bytes do
// not change), as are the frequencies of a row whose difference is 0.
#ifndef PDROP_ROPE_HPP
#define PDROP_ROPE_HPP

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "pdrop/config.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/mrope.hpp"
#include "pdrop/view.hpp"

PDROP_BEGIN_NAMESPACE

// The dimensions a rotary pair couples, for r = 2 * inv_freq.size rotary
// dimensions: rotate_half (i, i + r/2), interleaved (2i, 2i + 1).
enum class RopeLayout { rotate_half, interleaved };

// The default RoPE inverse frequencies: out[i] = 1 / theta^(2i / rotary_dim)
// for i < rotary_dim / 2, as HF transformers' default rope init computes
// them in float32 (1.0 / (base ** (arange(0, dim, 2).float() / dim))): theta
// rounded to float, the exponent 2i / rotary_dim divided in float, the
// power rounded to float (computed in double; PyTorch's float pow is within
// one ulp of that), the reciprocal taken in float.
//   theta       > 0, finite as a float (10000 for Llama 2, 500000 for
//               Llama 3, 1000000 for Qwen2-VL).
//   rotary_dim  even, >= 2: head dim, or its rotary part (partial rotary).
//   out         rotary_dim / 2 floats.
inline void rope_inv_freq(double theta, std::int64_t rotary_dim, span<float> out) {
  constexpr const char* fn = "pdrop::rope_inv_freq";
  if (!(theta > 0.0) || !(theta <= static_cast<double>(std::numeric_limits<float>::max())) ||
      !(static_cast<float>(theta) > 0.0f))
    detail::fail<value_error>(fn, "theta (", theta, ") must be > 0 and finite as a float");
  if (rotary_dim < 2 || rotary_dim % 2 != 0)
    detail::fail<shape_error>(fn, "rotary_dim (", rotary_dim, ") must be even and >= 2");
  if (out.size != rotary_dim / 2)
    detail::fail<shape_error>(fn, "out.size (", out.size, ") must be rotary_dim / 2 (",
                              rotary_dim / 2, ")");
  if (out.data == nullptr)
    detail::fail<shape_error>(fn, "out.data is null with ", out.size, " entries");
  const double base = static_cast<double>(static_cast<float>(theta));
  const float dim = static_cast<float>(rotary_dim);
  for (std::int64_t i = 0; i < out.size; ++i) {
    const float e = static_cast<float>(2 * i) / dim;
    const float p = static_cast<float>(std::pow(base, static_cast<double>(e)));
    out[i] = 1.0f / p;
  }
}

namespace detail {

// Element (t, r) of a position view as int64; `name` and the value in the
// error when it does not fit (only a 64-bit unsigned P can fail).
template <class P>
std::int64_t rope_position(const char* fn, const char* name, TokenView<const P> pos,
                           std::int64_t t, std::int64_t r) {
  const P v = pos.row(t)[r];
  if constexpr (std::is_unsigned_v<P> && sizeof(P) == sizeof(std::int64_t)) {
    if (v > static_cast<P>(std::numeric_limits<std::int64_t>::max()))
      fail<value_error>(fn, name, "[", t, "][", r, "] (", v, ") does not fit int64");
  }
  return static_cast<std::int64_t>(v);
}

// A positions view of rerotate_heads: a valid view of `tokens` x `rows`.
template <class P>
void check_rope_positions(const char* fn, const char* name, TokenView<const P> pos,
                          std::int64_t tokens, std::int64_t rows, bool mrope) {
  check_token_view(fn, name, pos.data, pos.tokens, pos.features, pos.row_stride, sizeof(P));
  if (pos.tokens != tokens)
    fail<shape_error>(fn, name, ".tokens (", pos.tokens, ") must equal x.tokens (", tokens,
                      ")");
  if (pos.features != rows) {
    if (mrope)
      fail<shape_error>(fn, name, ".features (", pos.features,
                        ") must equal maybe_mrope_section.size (", rows,
                        "): one position row per section");
    fail<shape_error>(fn, name, ".features (", pos.features,
                      ") must be 1 without maybe_mrope_section (M-RoPE passes its sections)");
  }
}

}  // namespace detail

// Re-rotates post-RoPE rows from their old positions to new ones, in place.
//   x               heads x tokens x dim, T = float, half or bfloat16, any
//                   strides (HND, NHD, padded, a slice of fused rows); rows
//                   rotated at from_positions. Writable: rows of different
//                   heads and tokens must not overlap.
//   from_positions  tokens == x.tokens; features == 1 (one position per
//   to_positions    token), or maybe_mrope_section.size (M-RoPE: row s is
//                   the position section s rotates with). Any integer type.
//                   Every to - from must fit int64.
//   inv_freq        r/2 >= 1 finite floats, the model's inverse frequencies
//                   (its scaled table if it scales them); r = 2 *
//                   inv_freq.size <= x.dim. Dimensions >= r are left as
//                   they are.
//   layout          which dimensions form pair i (RopeLayout).
//   maybe_mrope_section  empty, or M-RoPE sections in pairs: entries >= 0
//                   summing to inv_freq.size; section s covers the next
//                   section[s] frequencies and uses position row s.
//   mrope_layout    with sections: MRopeLayout::sections (contiguous, the
//                   above; Qwen2-VL, Qwen2.5-VL) or MRopeLayout::interleaved
//                   (Qwen3-VL; needs >= 3 sections, rows past 2 unread; the
//                   row of pair i is mrope_row_of_pair, pdrop/mrope.hpp).
// Afterwards pair (a, b) of every head h and token t holds
//   a' = a cos th - b sin th,  b' = b cos th + a sin th,
//   th = (to(t, s) - from(t, s)) * inv_freq[i]   (s: the row of pair i).
// Every argument is validated (positions included) before any row is
// written; x and the inputs must not share memory. A zero-token x is a
// no-op.
template <class T, class P>
void rerotate_heads(HeadView<T> x, TokenView<const P> from_positions,
                    TokenView<const P> to_positions, span<const float> inv_freq,
                    RopeLayout layout = RopeLayout::rotate_half,
                    span<const std::int64_t> maybe_mrope_section = {},
                    MRopeLayout mrope_layout = MRopeLayout::sections) {
  static_assert(is_float_type_v<T> && !std::is_const_v<T>,
                "rerotate_heads writes rows of float, pdrop::half or pdrop::bfloat16");
  static_assert(std::is_integral_v<P> && !std::is_same_v<std::remove_cv_t<P>, bool> &&
                    sizeof(P) <= sizeof(std::int64_t),
                "positions are an integer type of at most 64 bits");
  constexpr const char* fn = "pdrop::rerotate_heads";
  detail::check_head_view(fn, "x", x.data, x.heads, x.tokens, x.dim, x.head_stride,
                          x.token_stride, sizeof(T), true);
  if (layout != RopeLayout::rotate_half && layout != RopeLayout::interleaved)
    detail::fail<value_error>(fn, "layout (", static_cast<int>(layout),
                              ") must be RopeLayout::rotate_half (0) or "
                              "RopeLayout::interleaved (1)");

  // inv_freq: r/2 finite entries, r <= x.dim.
  const std::int64_t pairs = inv_freq.size;
  if (pairs < 1)
    detail::fail<shape_error>(fn, "inv_freq.size (", pairs, ") must be >= 1");
  if (inv_freq.data == nullptr)
    detail::fail<shape_error>(fn, "inv_freq.data is null with ", pairs, " entries");
  if (pairs > x.dim / 2)
    detail::fail<shape_error>(fn, "inv_freq.size (", pairs, ") must be <= x.dim / 2 (",
                              x.dim / 2, "): ", pairs, " pairs need ", pairs,
                              " * 2 rotary dims, x.dim is ", x.dim);
  for (std::int64_t i = 0; i < pairs; ++i)
    if (!std::isfinite(inv_freq[i]))
      detail::fail<value_error>(fn, "inv_freq[", i, "] (", inv_freq[i], ") must be finite");

  // Sections: entries >= 0 summing to inv_freq.size; one position row each.
  const span<const std::int64_t> sec = maybe_mrope_section;
  if (sec.size < 0)
    detail::fail<shape_error>(fn, "maybe_mrope_section.size (", sec.size, ") must be >= 0");
  if (sec.size > 0 && sec.data == nullptr)
    detail::fail<shape_error>(fn, "maybe_mrope_section.data is null with ", sec.size,
                              " entries");
  const bool mrope = sec.size > 0;
  const std::int64_t rows = mrope ? sec.size : 1;
  if (mrope) {
    std::int64_t sum = 0;
    for (std::int64_t s = 0; s < sec.size; ++s) {
      if (sec[s] < 0)
        detail::fail<value_error>(fn, "maybe_mrope_section[", s, "] (", sec[s],
                                  ") must be >= 0");
      sum = detail::checked_add(fn, "maybe_mrope_section", sum, sec[s]);
    }
    if (sum != pairs)
      detail::fail<shape_error>(fn, "maybe_mrope_section (sum ", sum,
                                ") must sum to inv_freq.size (", pairs, ")");
  }
  if (mrope_layout != MRopeLayout::sections && mrope_layout != MRopeLayout::interleaved)
    detail::fail<value_error>(fn, "mrope_layout (", static_cast<int>(mrope_layout),
                              ") must be MRopeLayout::sections (0) or "
                              "MRopeLayout::interleaved (1)");
  if (mrope_layout == MRopeLayout::interleaved && mrope && sec.size < 3)
    detail::fail<shape_error>(fn, "maybe_mrope_section.size (", sec.size,
                              ") must be >= 3 with MRopeLayout::interleaved");

  // Positions: shapes, then no aliasing with x, then every difference.
  detail::check_rope_positions(fn, "from_positions", from_positions, x.tokens, rows, mrope);
  detail::check_rope_positions(fn, "to_positions", to_positions, x.tokens, rows, mrope);
  const std::int64_t x_bytes =
      detail::checked_extent(fn, "x", x.heads, x.head_stride, x.tokens, x.token_stride, x.dim,
                             sizeof(T)) *
      static_cast<std::int64_t>(sizeof(T));
  const auto pos_bytes = [&](TokenView<const P> p) {
    return detail::checked_extent(fn, "positions", p.tokens, p.row_stride, 1, 0, p.features,
                                  sizeof(P)) *
           static_cast<std::int64_t>(sizeof(P));
  };
  if (detail::bytes_overlap(x.data, x_bytes, inv_freq.data,
                            pairs * static_cast<std::int64_t>(sizeof(float))))
    detail::fail<shape_error>(fn, "x overlaps inv_freq: x is written in place");
  if (detail::bytes_overlap(x.data, x_bytes, from_positions.data, pos_bytes(from_positions)))
    detail::fail<shape_error>(fn, "x overlaps from_positions: x is written in place");
  if (detail::bytes_overlap(x.data, x_bytes, to_positions.data, pos_bytes(to_positions)))
    detail::fail<shape_error>(fn, "x overlaps to_positions: x is written in place");
  if (detail::bytes_overlap(x.data, x_bytes, sec.data,
                            sec.size * static_cast<std::int64_t>(sizeof(std::int64_t))))
    detail::fail<shape_error>(fn, "x overlaps maybe_mrope_section: x is written in place");
  for (std::int64_t t = 0; t < x.tokens; ++t)
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t from = detail::rope_position(fn, "from_positions", from_positions, t, r);
      const std::int64_t to = detail::rope_position(fn, "to_positions", to_positions, t, r);
      std::int64_t delta = 0;
      if (__builtin_sub_overflow(to, from, &delta))
        detail::fail<value_error>(fn, "to_positions[", t, "][", r, "] (", to,
                                  ") - from_positions[", t, "][", r, "] (", from,
                                  ") overflows int64");
    }

  // Pair i is (a_step * i, a_step * i + b_off).
  const bool halves = layout == RopeLayout::rotate_half;
  const std::int64_t a_step = halves ? 1 : 2;
  const std::int64_t b_off = halves ? pairs : 1;
  for (std::int64_t t = 0; t < x.tokens; ++t) {
    const P* from = from_positions.row(t);
    const P* to = to_positions.row(t);
    bool moved = false;
    for (std::int64_t r = 0; r < rows; ++r) moved = moved || from[r] != to[r];
    if (!moved) continue;
    const auto turn_pair = [&](std::int64_t i, double d) {
      const double th = d * static_cast<double>(inv_freq[i]);
      const double c = std::cos(th), s = std::sin(th);
      const std::int64_t ia = a_step * i, ib = ia + b_off;
      for (std::int64_t h = 0; h < x.heads; ++h) {
        T* row = x.row(h, t);
        const double a = static_cast<double>(static_cast<float>(row[ia]));
        const double b = static_cast<double>(static_cast<float>(row[ib]));
        row[ia] = static_cast<T>(static_cast<float>(a * c - b * s));
        row[ib] = static_cast<T>(static_cast<float>(b * c + a * s));
      }
    };
    if (mrope && mrope_layout == MRopeLayout::interleaved) {
      for (std::int64_t i = 0; i < pairs; ++i) {
        const std::int64_t r = mrope_row_of_pair(i, sec, mrope_layout);
        const std::int64_t delta =
            static_cast<std::int64_t>(to[r]) - static_cast<std::int64_t>(from[r]);
        if (delta != 0) turn_pair(i, static_cast<double>(delta));  // else: bytes stay
      }
      continue;
    }
    std::int64_t i = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t end = mrope ? i + sec[r] : pairs;
      const std::int64_t delta =
          static_cast<std::int64_t>(to[r]) - static_cast<std::int64_t>(from[r]);
      if (delta == 0) {  // this section does not move: leave its bytes alone
        i = end;
        continue;
      }
      const double d = static_cast<double>(delta);
      for (; i < end; ++i) turn_pair(i, d);
    }
  }
}

PDROP_END_NAMESPACE

#endif  // PDROP_ROPE_HPP
