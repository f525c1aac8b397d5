// pdrop/mrope.hpp - multimodal RoPE positions (Qwen2-VL, Qwen2.5-VL,
// Qwen3-VL) with drops.
//
// M-RoPE gives every token three position values, (temporal, height,
// width). Text tokens carry the same value in all three; the tokens of an
// image (or video) grid of t x h x w LLM tokens carry (t_idx, h_idx, w_idx)
// plus the position where the grid starts; the text after a grid continues
// from the largest value so far + 1 (Qwen2-VL's get_rope_index).
//
// The three model generations differ only in what a grid is:
//   Qwen2-VL    (modeling_qwen2_vl.py get_rope_index): a video is one grid of
//               t frame groups, temporal index ti.
//   Qwen2.5-VL  (modeling_qwen2_5_vl.py get_rope_index): the temporal index
//               is ti * second_per_grid_t * tokens_per_second, where HF casts
//               second_per_grid_t to the int64 dtype of the index first (so
//               a step of int(temporal_patch_size / fps) * tokens_per_second;
//               2 for 2 fps and tokens_per_second 2): MRopeGrid::t_step.
//   Qwen3-VL    (modeling_qwen3_vl.py get_rope_index): timestamps instead of
//               temporal indices. video_grid_thw is split into one grid of
//               t = 1 per frame group (repeat_interleave), each between its
//               own <vision_start> / <vision_end> with timestamp text before
//               it, so a video is n grids of t = 1 with text between them:
//               mrope_positions with those grids and text lengths.
// Qwen3-VL also changes which rotary pairs read which row (interleaved
// sections, MRopeLayout below), not the positions.
//
// pdrop keeps positions as token rows: a TokenView<P> of T tokens x 3
// features (row i = the temporal, height and width position of token i), or
// T x 4 in llama.cpp's layout: llama.cpp's M-RoPE batches carry 4 positions
// per token (n_pos_per_embd == 4; tools/mtmd/mtmd-helper.cpp
// decode_embd_batch::set_position_mrope_2d writes t, y, x and a 4th row that
// is 0, "unused"), stored there as 4 planes of n_tokens; transposed to
// token rows they are a T x 4 view. mrope_positions writes 0 in that row.
// A drop moves them with the other per-token buffers and KEEPS their
// values (the rotary angles of the kept tokens do not change): compact
// them with compact_positions(pos3, keep, PositionMode::keep_original), or
// equally with compact_rows(pos3, keep).
//
// A runtime holding HF's (3, T) layout (one row per axis) compacts each of
// the three rows as its own T x 1 TokenView the same way.
//
// Decoding continues after the prompt's largest value: the next token's
// position is mrope_next_position(prompt positions) in all three axes, the
// one after it + 1, and so on, taken from the whole prompt before any drop
// (a grid at the end of a prompt may lose the token holding the largest
// value). pdrop::SequenceState (pdrop/sequence.hpp) keeps it, with every
// layer's cache length: seq.position(layer, step). Qwen2-VL's rope_deltas
// is this value minus the prompt's original length (seq.rope_delta).
#ifndef PDROP_MROPE_HPP
#define PDROP_MROPE_HPP

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "pdrop/config.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/types.hpp"

PDROP_BEGIN_NAMESPACE

// One image (t = 1) or video (t frames) as a grid of LLM tokens, after the
// vision encoder's spatial merge: t * h * w tokens, temporal-major, then
// row-major (token (ti, hi, wi) is number (ti * h + hi) * w + wi).
// t_step (>= 0) is the temporal position step between frame groups: 1 for
// Qwen2-VL and Qwen3-VL (whose videos are grids of t = 1 anyway), Qwen2.5-VL's
// int(second_per_grid_t) * tokens_per_second for a video (1 for an image,
// whose t is 1).
struct MRopeGrid {
  std::int64_t t = 1, h = 1, w = 1;
  std::int64_t t_step = 1;
  constexpr std::int64_t tokens() const { return t * h * w; }
  // The positions the grid spans from its start: its largest offset + 1.
  constexpr std::int64_t extent() const {
    const std::int64_t m = (t - 1) * t_step > h - 1 ? (t - 1) * t_step : h - 1;
    return (m > w - 1 ? m : w - 1) + 1;
  }
};

// Which rotary pairs read which M-RoPE position row.
//   sections     contiguous (Qwen2-VL, Qwen2.5-VL: modeling_qwen2_vl.py
//                apply_multimodal_rotary_pos_emb): the first section[0]
//                pairs read row 0, the next section[1] row 1, and so on.
//                llama.cpp's LLAMA_ROPE_TYPE_MROPE with sections {t, h, w, 0}.
//   interleaved  Qwen3-VL (modeling_qwen3_vl.py
//                Qwen3VLTextRotaryEmbedding.apply_interleaved_mrope): pair i
//                reads row 1 (height) when i % 3 == 1 and i < 3 * section[1],
//                row 2 (width) when i % 3 == 2 and i < 3 * section[2], else
//                row 0 (temporal): T H W T H W ... then T for the rest.
//                llama.cpp's LLAMA_ROPE_TYPE_IMROPE.
enum class MRopeLayout { sections, interleaved };

// The position row rotary pair `pair` reads under `layout`, given sections
// (entries >= 0 summing to the pair count; interleaved needs >= 3 entries,
// the rows past 2 are never read). Not validated: the callers validate.
inline std::int64_t mrope_row_of_pair(std::int64_t pair, span<const std::int64_t> section,
                                      MRopeLayout layout) {
  if (layout == MRopeLayout::interleaved) {
    if (pair % 3 == 1 && pair < 3 * section[1]) return 1;
    if (pair % 3 == 2 && pair < 3 * section[2]) return 2;
    return 0;
  }
  std::int64_t end = 0;
  for (std::int64_t s = 0; s < section.size; ++s) {
    end += section[s];
    if (pair < end) return s;
  }
  return section.size - 1;
}

// Qwen2-VL positions of one sequence laid out as
//   text[0] grid[0] text[1] grid[1] ... grid[n-1] text[n].
//
//   text_lengths  n + 1 entries >= 0: the text tokens before each grid and
//                 after the last one.
//   grids         n grids, each t, h, w >= 1, t_step >= 0.
//   positions     out, T x 3 (T = sum(text_lengths) + sum(grid tokens)),
//                 or T x 4 (llama.cpp's rows; the 4th is written 0), any
//                 integer type, any row stride: token i's (temporal,
//                 height, width) positions.
//   maybe_spans   out, empty or n entries: grid i's tokens as an ImageSpan
//                 (the spans rank_and_drop takes).
//   start         the first text token's position (>= 0; 0 for a prompt).
// Text at position p gets (p, p, p); a grid starting at position s gets
// (s + ti * t_step, s + hi, s + wi); what follows starts at the largest
// value + 1.
// Returns that value after the last token: the next (decode) position.
// Validated in full, and the values checked to fit P, before writing.
template <class P>
std::int64_t mrope_positions(span<const std::int64_t> text_lengths,
                             span<const MRopeGrid> grids, TokenView<P> positions,
                             span<ImageSpan> maybe_spans = {}, std::int64_t start = 0) {
  static_assert(std::is_integral_v<P> && !std::is_const_v<P>,
                "positions are a writable integer type");
  constexpr const char* fn = "pdrop::mrope_positions";
  if (grids.size < 0 || (grids.size > 0 && grids.data == nullptr))
    detail::fail<shape_error>(fn, "grids.data is null with ", grids.size, " entries");
  if (text_lengths.size != grids.size + 1 || text_lengths.data == nullptr)
    detail::fail<shape_error>(fn, "text_lengths.size (", text_lengths.size,
                              ") must be grids.size + 1 (", grids.size + 1, ")");
  if (start < 0) detail::fail<value_error>(fn, "start (", start, ") must be >= 0");
  std::int64_t tokens = 0, next = start;
  for (std::int64_t i = 0; i <= grids.size; ++i) {
    if (text_lengths[i] < 0)
      detail::fail<value_error>(fn, "text_lengths[", i, "] (", text_lengths[i],
                                ") must be >= 0");
    tokens = detail::checked_add(fn, "tokens", tokens, text_lengths[i]);
    next = detail::checked_add(fn, "positions", next, text_lengths[i]);
    if (i == grids.size) break;
    const MRopeGrid g = grids[i];
    if (g.t < 1 || g.h < 1 || g.w < 1)
      detail::fail<value_error>(fn, "grids[", i, "] (t ", g.t, ", h ", g.h, ", w ", g.w,
                                ") must have every size >= 1");
    if (g.t_step < 0)
      detail::fail<value_error>(fn, "grids[", i, "].t_step (", g.t_step, ") must be >= 0");
    const std::int64_t n = detail::checked_mul(
        fn, "grid tokens", detail::checked_mul(fn, "grid tokens", g.t, g.h), g.w);
    tokens = detail::checked_add(fn, "tokens", tokens, n);
    detail::checked_mul(fn, "grids[i].t_step * (t - 1)", g.t - 1, g.t_step);
    next = detail::checked_add(fn, "positions", next, g.extent());
  }
  detail::check_token_view(fn, "positions", positions.data, positions.tokens,
                           positions.features, positions.row_stride, sizeof(P));
  if (positions.features != 3 && positions.features != 4)
    detail::fail<shape_error>(fn, "positions.features (", positions.features,
                              ") must be 3 (temporal, height, width) or 4 (llama.cpp's rows)");
  if (positions.tokens != tokens)
    detail::fail<shape_error>(fn, "positions.tokens (", positions.tokens,
                              ") must equal the text and grid tokens (", tokens, ")");
  if (maybe_spans.size != 0 && (maybe_spans.size != grids.size || maybe_spans.data == nullptr))
    detail::fail<shape_error>(fn, "maybe_spans.size (", maybe_spans.size,
                              ") must be 0 or grids.size (", grids.size, ")");
  if (next - 1 > static_cast<std::int64_t>(std::numeric_limits<P>::max()))
    detail::fail<value_error>(fn, "the largest position (", next - 1,
                              ") does not fit the position type (max ",
                              +std::numeric_limits<P>::max(), ")");

  std::int64_t row = 0, pos = start;
  const auto put = [&](std::int64_t a, std::int64_t b, std::int64_t c) {
    P* r = positions.row(row++);
    r[0] = static_cast<P>(a);
    r[1] = static_cast<P>(b);
    r[2] = static_cast<P>(c);
    if (positions.features == 4) r[3] = P{0};
  };
  for (std::int64_t i = 0; i <= grids.size; ++i) {
    for (std::int64_t j = 0; j < text_lengths[i]; ++j, ++pos) put(pos, pos, pos);
    if (i == grids.size) break;
    const MRopeGrid g = grids[i];
    if (maybe_spans.size > 0) maybe_spans[i] = ImageSpan{row, g.tokens()};
    for (std::int64_t ti = 0; ti < g.t; ++ti)
      for (std::int64_t hi = 0; hi < g.h; ++hi)
        for (std::int64_t wi = 0; wi < g.w; ++wi) put(pos + ti * g.t_step, pos + hi, pos + wi);
    pos += g.extent();
  }
  return pos;
}

// The position of the first token after `positions` (T x 1, or T x 3 for
// M-RoPE; any integer type): the largest value over every row and axis
// + 1, or 0 when there are no tokens. Decode step s (0-based) uses
// mrope_next_position(prompt) + s in all three axes. The original values
// stay after compact_positions(..., keep_original), so the result is the
// same before and after a drop as long as the token holding the largest
// value is kept (a prompt's last text token is).
template <class P>
std::int64_t mrope_next_position(TokenView<const P> positions) {
  static_assert(std::is_integral_v<P>, "positions are an integer type");
  constexpr const char* fn = "pdrop::mrope_next_position";
  detail::check_token_view(fn, "positions", positions.data, positions.tokens,
                           positions.features, positions.row_stride, sizeof(P));
  if (positions.tokens > 0 && positions.features < 1)
    detail::fail<shape_error>(fn, "positions.features (", positions.features,
                              ") must be >= 1");
  if (positions.tokens == 0) return 0;
  std::int64_t m = static_cast<std::int64_t>(positions.row(0)[0]);
  for (std::int64_t t = 0; t < positions.tokens; ++t)
    for (std::int64_t a = 0; a < positions.features; ++a)
      m = std::max(m, static_cast<std::int64_t>(positions.row(t)[a]));
  if (m == std::numeric_limits<std::int64_t>::max())
    detail::fail<value_error>(fn, "the largest position (", m, ") has no successor");
  return m + 1;
}

PDROP_END_NAMESPACE

#endif  // PDROP_MROPE_HPP
