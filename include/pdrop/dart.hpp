// pdrop/dart.hpp - DART: keep the image tokens that duplicate the least.
//
// DART: Zichen Wen, Yifeng Gao, Shaobo Wang, Junyuan Zhang, Qintong Zhang,
// Weijia Li, Conghui He, Linfeng Zhang, "Stop Looking for Important Tokens in
// Multimodal Language Models: Duplication Matters More", arXiv 2502.11494
// (2025). Attention-free, so it works with fused attention kernels as is.
//
// Per image span of n tokens keeping k of them:
//   1. Image pivots: the p = min(pivots, k) image tokens with the largest key
//      norm. A key row is the token's K rows of every head side by side
//      (concatenated over heads, as DART's code reshapes (H, T, d) to
//      (T, H*d)); the norm is L2 by default, as the paper describes it, or
//      L1 (PivotNorm::l1), as DART's released code computes it.
//   2. Text pivots (options.text_pivots, 0 by default; the authors use 4):
//      the text tokens after the span (every token after it that lies in no
//      image span) with the largest key norms, at most as many as there are.
//      Their rows are compared, they pick image tokens, and they stay text.
//   3. The other k - p image tokens are spread over the P = p + text pivots
//      in pivot order (image pivots by norm, then text pivots by norm,
//      largest first): pivot r gets (k-p)/P tokens, plus one for the first
//      (k-p) % P pivots. In that order, each pivot takes its share of the
//      remaining candidates (image tokens that are neither an image pivot
//      nor already taken) with the LOWEST cosine similarity to it.
//   4. Kept: the image pivots and every token taken, ascending.
// Cosine similarity is measured on `features` rows: DART uses the hidden
// states output by the last full layer (0-based K-1 for a drop after layer
// K) passed through the model's final norm, and that same layer's keys for
// the norms; any TokenView works, or the K rows themselves (the overload
// without features). cos(x, y) = x.y / (|x| |y|), 0 when either is zero.
//
// Ties (equal norms, equal similarities) go to the lower token index. Math:
// elements are converted to float exactly, products and sums in double, so
// the choice is reproducible and independent of threads or SIMD width.
//
// The authors' code (DART 5a19452, llava/model/language_model/
// modeling_llama_self.py l.419-447; docs/strategies.md) is steps 1-4 with
// L1 norms, 4 image + 4 text pivots, and a quota per pivot that keeps the
// image pivots on top of the budget: KeepRule's DART quota
// (pdrop/budget.hpp) gives those counts (132 for their 128 of 576), and
// with them every pivot gets the same share, as theirs does. One
// difference stays, on purpose: they visit the pivots in the iteration
// order of a Python set (hash-slot order, neither sorted nor by norm);
// pdrop visits them by norm, so when two pivots compete for one token the
// kept sets may differ (never their sizes).
//
// Cost per span: one pass over the n key rows (plus the text rows after the
// span when text pivots are asked for), one over the candidates' feature
// rows, each converted once and compared with every pivot from L1
// (P * n * width multiply-adds). Scratch from a Workspace: P + 1 feature
// rows as float, (P + 1) * n + 2 * text_pivots keys (dart_reserve makes the
// calls allocation-free).
#ifndef PDROP_DART_HPP
#define PDROP_DART_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "pdrop/config.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/detail/std.hpp"
#include "pdrop/detail/simd.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/score.hpp"
#include "pdrop/view.hpp"
#include "pdrop/workspace.hpp"

PDROP_BEGIN_NAMESPACE

enum class PivotNorm { l1, l2 };

struct DartOptions {
  std::int64_t pivots = 8;               // image pivots per span, >= 1
  PivotNorm pivot_norm = PivotNorm::l2;  // l1: as DART's released code
  std::int64_t text_pivots = 0;          // pivots among the text after each span, >= 0
};

namespace detail {

// Rows of `segs` contiguous segments of `seg_len` elements: row t, segment
// s starts at data + t * row_stride + s * seg_stride. A TokenView is one
// segment per row; a HeadView's token row is its heads side by side.
template <class T>
struct SegRows {
  const T* data;
  std::int64_t segs, seg_len, seg_stride, row_stride;
  const T* seg(std::int64_t t, std::int64_t s) const {
    return data + t * row_stride + s * seg_stride;
  }
  std::int64_t width() const { return segs * seg_len; }
};

template <class T>
SegRows<T> seg_rows(HeadView<const T> v) {
  return SegRows<T>{v.data, v.heads, v.dim, v.head_stride, v.token_stride};
}
template <class T>
SegRows<T> seg_rows(TokenView<const T> v) {
  return SegRows<T>{v.data, 1, v.features, 0, v.row_stride};
}

// Order-preserving 64-bit key of a finite double (-0.0 == +0.0).
inline std::uint64_t mono64(double x) {
  x += 0.0;
  std::uint64_t b = 0;
  std::memcpy(&b, &x, sizeof b);
  return (b >> 63) ? ~b : (b | (std::uint64_t{1} << 63));
}

template <class T>
double row_norm(const SegRows<T>& r, std::int64_t t, PivotNorm norm) {
  double acc = 0.0;
  for (std::int64_t s = 0; s < r.segs; ++s) {
    const T* p = r.seg(t, s);
    for (std::int64_t i = 0; i < r.seg_len; ++i) {
      const double x = static_cast<double>(to_float(p + i));
      acc += norm == PivotNorm::l1 ? std::fabs(x) : x * x;
    }
  }
  return acc;  // L2: squared (same order)
}

// Row t as `width` floats (exact conversion) into dst.
template <class T>
void load_row(const SegRows<T>& r, std::int64_t t, float* dst) {
  for (std::int64_t s = 0; s < r.segs; ++s)
    row_to_float(r.seg(t, s), r.seg_len, dst + s * r.seg_len);
}

// a.b over n floats: products exact in double, summed in four independent
// chains (elements i % 4) added in a fixed order, so the result is the
// same on every machine without one long dependent chain.
inline double dot_f64(const float* a, const float* b, std::int64_t n) {
  double d[4] = {0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j)
      d[j] += static_cast<double>(a[i + j]) * static_cast<double>(b[i + j]);
  for (std::int64_t j = 0; i + j < n; ++j)  // the last n % 4
    d[j & 3] += static_cast<double>(a[i + j]) * static_cast<double>(b[i + j]);
  return (d[0] + d[1]) + (d[2] + d[3]);
}

inline void put_f64(std::uint64_t* p, double x) { std::memcpy(p, &x, sizeof x); }
inline double get_f64(const std::uint64_t* p) {
  double x = 0;
  std::memcpy(&x, p, sizeof x);
  return x;
}

// Validates every input of a DART call but the output; returns the total
// kept count and the longest span through `max_span`.
inline std::int64_t validate_dart(const char* fn, HeadView<const void> k, std::size_t k_elem,
                                  const void* f_data, std::int64_t f_tokens,
                                  std::int64_t f_features, std::int64_t f_stride,
                                  std::size_t f_elem, span<const ImageSpan> spans,
                                  span<const std::int64_t> keep_counts,
                                  const DartOptions& opt, std::int64_t& max_span) {
  check_head_view(fn, "k", k.data, k.heads, k.tokens, k.dim, k.head_stride,
                  k.token_stride, k_elem, false);
  if (k.heads < 1) fail<shape_error>(fn, "k.heads (", k.heads, ") must be >= 1");
  if (k.dim < 1) fail<shape_error>(fn, "k.dim (", k.dim, ") must be >= 1");
  if (f_data != nullptr || f_tokens != 0) {
    check_token_view(fn, "features", f_data, f_tokens, f_features, f_stride, f_elem);
    if (f_tokens != k.tokens)
      fail<shape_error>(fn, "features.tokens (", f_tokens, ") must equal k.tokens (",
                        k.tokens, ")");
    if (f_features < 1)
      fail<shape_error>(fn, "features.features (", f_features, ") must be >= 1");
  }
  check_spans(fn, spans, k.tokens, "k.tokens");
  max_span = 0;
  for (const ImageSpan& s : spans) max_span = std::max(max_span, s.length);
  const std::int64_t total = check_keep_counts(fn, spans, keep_counts);
  if (opt.pivots < 1 || opt.pivots > (std::int64_t{1} << 31))
    fail<value_error>(fn, "options.pivots (", opt.pivots, ") must be in [1, 2^31]");
  if (opt.text_pivots < 0 || opt.text_pivots > (std::int64_t{1} << 31))
    fail<value_error>(fn, "options.text_pivots (", opt.text_pivots,
                      ") must be in [0, 2^31]");
  if (opt.pivot_norm != PivotNorm::l1 && opt.pivot_norm != PivotNorm::l2)
    fail<value_error>(fn, "options.pivot_norm (", static_cast<int>(opt.pivot_norm),
                      ") must be PivotNorm::l1 or PivotNorm::l2");
  return total;
}

// Text pivots of span `sp` (the `want` text tokens after it with the
// largest key norms, larger first, ties to the lower index; tokens in a
// later span are not text) into piv[0, count); norms' keys into nkey.
// Returns the count (at most want). Throws value_error on a non-finite key
// row among the tokens read.
template <class Tk>
std::int64_t text_pivots(const char* fn, const SegRows<Tk>& keys, std::int64_t tokens,
                         span<const ImageSpan> spans, std::int64_t sp, std::int64_t want,
                         PivotNorm norm, std::uint64_t* nkey, std::int64_t* piv) {
  std::int64_t have = 0;
  std::int64_t next = sp + 1;  // the next span after sp
  for (std::int64_t t = spans[sp].start + spans[sp].length; t < tokens && want > 0; ++t) {
    while (next < spans.size && spans[next].start + spans[next].length <= t) ++next;
    if (next < spans.size && t >= spans[next].start) {
      t = spans[next].start + spans[next].length - 1;
      continue;
    }
    const double v = row_norm(keys, t, norm);
    if (!std::isfinite(v))
      fail<value_error>(fn, "k holds a non-finite value in the key row of token ", t);
    const std::uint64_t kv = mono64(v);
    // Insert into the sorted list (larger first; t is the largest index so
    // far, so an equal key goes after the ones already there).
    std::int64_t pos = have;
    while (pos > 0 && nkey[pos - 1] < kv) --pos;
    if (pos >= want) continue;
    const std::int64_t last = have < want ? have : want - 1;
    for (std::int64_t i = last; i > pos; --i) {
      nkey[i] = nkey[i - 1];
      piv[i] = piv[i - 1];
    }
    nkey[pos] = kv;
    piv[pos] = t;
    if (have < want) ++have;
  }
  return have;
}

// DART on validated inputs. Leaves the kept tokens (absolute positions,
// ascending) in ws.indices()[0, total) and returns that pointer; throws
// value_error on a non-finite row that takes part (only ws written).
// `tokens` is the key rows' count (text pivots lie in [span end, tokens)).
// `forced` (sorted, unique, each inside a span) are kept outside DART's
// choice: a span with f of them keeps them and max(k - f, 0) DART picks
// among its other tokens (`total` counts both).
template <class Tk, class Tf>
std::int64_t* dart_core(const char* fn, const SegRows<Tk>& keys, std::int64_t tokens,
                        const SegRows<Tf>& feats, span<const ImageSpan> spans,
                        span<const std::int64_t> keep_counts, std::int64_t total,
                        std::int64_t max_span, const DartOptions& opt, Workspace& ws,
                        span<const std::int64_t> forced = {}) {
  const std::int64_t width = feats.width();
  const std::int64_t pimg = std::min(opt.pivots, max_span);
  const std::int64_t ptxt = std::min(opt.text_pivots, tokens);
  const std::int64_t pmax = pimg + ptxt;
  // indices: kept (total), candidates (max_span), text pivots (ptxt).
  std::int64_t* out = ws.indices(static_cast<std::size_t>(total + max_span + ptxt));
  std::int64_t* idx = out + total;
  std::int64_t* tpiv = idx + max_span;
  // keys: norms (max_span), pivot |y|^2 (pmax), similarities (pmax rows),
  // text pivots' norms (ptxt).
  std::uint64_t* key =
      ws.keys(static_cast<std::size_t>(max_span + pmax + pmax * max_span + ptxt));
  std::uint64_t* pp = key + max_span;
  std::uint64_t* sim = pp + pmax;
  std::uint64_t* tkey = sim + pmax * max_span;
  float* pivot = ws.scratch(static_cast<std::size_t>((pmax + 1) * width));
  float* buf = pivot + pmax * width;
  std::int64_t done = 0;
  std::int64_t fi = 0;  // forced[fi..] lie at or after the current span
  for (std::int64_t sp = 0; sp < spans.size; ++sp) {
    const std::int64_t start = spans[sp].start, n = spans[sp].length;
    while (fi < forced.size && forced[fi] < start) ++fi;
    std::int64_t fe = fi;
    while (fe < forced.size && forced[fe] < start + n) ++fe;
    const std::int64_t nf = fe - fi;
    const std::int64_t k = std::max<std::int64_t>(keep_counts[sp] - nf, 0);
    std::int64_t* dst = out + done;
    for (std::int64_t j = 0; j < nf; ++j) dst[k + j] = forced[fi + j];
    if (k > 0) {
      // Candidates: the span's tokens but the forced ones (m of them).
      std::int64_t m = 0;
      for (std::int64_t i = 0, f = fi; i < n; ++i) {
        if (f < fe && forced[f] == start + i) {
          ++f;
          continue;
        }
        const double v = row_norm(keys, start + i, opt.pivot_norm);
        if (!std::isfinite(v))
          fail<value_error>(fn, "k holds a non-finite value in the key row of token ",
                            start + i);
        key[i] = mono64(v);
        idx[m++] = i;
      }
      const std::int64_t p = std::min(opt.pivots, k);
      // Larger norm first, then lower index.
      const auto by_norm = [key](std::int64_t a, std::int64_t b) {
        return key[a] != key[b] ? key[a] > key[b] : a < b;
      };
      if (p < m) std::nth_element(idx, idx + p, idx + m, by_norm);
      std::sort(idx, idx + p, by_norm);
      const std::int64_t extra = k - p;
      const std::int64_t pt =
          extra > 0 ? text_pivots(fn, keys, tokens, spans, sp, ptxt, opt.pivot_norm, tkey, tpiv)
                    : 0;
      const std::int64_t np = p + pt;  // pivots in visiting order: image, then text
      // Pivots with a non-zero share: the first min(np, extra).
      const std::int64_t active = std::min(np, extra);
      for (std::int64_t r = 0; r < active; ++r) {
        const std::int64_t t = r < p ? start + idx[r] : tpiv[r - p];
        float* y = pivot + r * width;
        load_row(feats, t, y);
        const double yy = dot_f64(y, y, width);
        if (!std::isfinite(yy))
          fail<value_error>(fn, "features hold a non-finite value in the row of token ", t);
        put_f64(pp + r, yy);
      }
      // Every candidate's row is read once, against all active pivots.
      for (std::int64_t c = p; c < m && active > 0; ++c) {
        const std::int64_t i = idx[c];
        load_row(feats, start + i, buf);
        const double xx = dot_f64(buf, buf, width);
        if (!std::isfinite(xx))
          fail<value_error>(fn, "features hold a non-finite value in the row of token ",
                            start + i);
        for (std::int64_t r = 0; r < active; ++r) {
          const double yy = get_f64(pp + r);
          const double cos = (xx > 0.0 && yy > 0.0)
                                 ? dot_f64(buf, pivot + r * width, width) / std::sqrt(xx * yy)
                                 : 0.0;
          sim[r * n + i] = mono64(cos);
        }
      }
      std::int64_t taken = p;  // idx[0, taken): image pivots and tokens taken
      for (std::int64_t r = 0; r < active; ++r) {
        const std::int64_t share = extra / np + (r < extra % np ? 1 : 0);
        // Lower similarity first, then lower index.
        const std::uint64_t* s_r = sim + r * n;
        const auto by_sim = [s_r](std::int64_t a, std::int64_t b) {
          return s_r[a] != s_r[b] ? s_r[a] < s_r[b] : a < b;
        };
        if (taken + share < m) std::nth_element(idx + taken, idx + taken + share, idx + m, by_sim);
        taken += share;
      }
      for (std::int64_t i = 0; i < k; ++i) dst[i] = start + idx[i];
    }
    std::sort(dst, dst + k + nf, less{});
    done += k + nf;
    fi = fe;
  }
  return out;
}

// kept: exactly `total` entries, clear of spans and keep_counts.
inline void check_kept(const char* fn, span<const ImageSpan> spans,
                       span<const std::int64_t> keep_counts, std::int64_t total,
                       span<std::int64_t> kept) {
  if (kept.size != total)
    fail<shape_error>(fn, "kept.size (", kept.size, ") must equal the sum of keep_counts (",
                      total, ")");
  if (total > 0 && kept.data == nullptr)
    fail<shape_error>(fn, "kept.data is null with ", total, " entries");
  const auto kept_bytes = static_cast<std::int64_t>(sizeof(std::int64_t)) * kept.size;
  if (bytes_overlap(kept.data, kept_bytes, spans.data,
                    static_cast<std::int64_t>(sizeof(ImageSpan)) * spans.size) ||
      bytes_overlap(kept.data, kept_bytes, keep_counts.data,
                    static_cast<std::int64_t>(sizeof(std::int64_t)) * keep_counts.size))
    fail<shape_error>(fn, "kept overlaps spans or keep_counts");
}

}  // namespace detail

// Grows `ws` so that DART calls with up to `image_tokens` image tokens over
// all spans, feature rows of up to `width` elements, `options`' pivots (image
// and text) and up to `queries` query positions allocate nothing.
inline void dart_reserve(Workspace& ws, std::int64_t image_tokens, std::int64_t width,
                         const DartOptions& options, std::int64_t queries = 1) {
  ws.forced(static_cast<std::size_t>(std::max<std::int64_t>(queries, 0)));
  const std::int64_t n = std::max<std::int64_t>(image_tokens, 0);
  const std::int64_t t = std::max<std::int64_t>(options.text_pivots, 0);
  const std::int64_t p = std::min(std::max<std::int64_t>(options.pivots, 0), n) + t;
  ws.indices(static_cast<std::size_t>(2 * n + t));
  ws.keys(static_cast<std::size_t>(n + p + p * n + t));
  ws.scratch(static_cast<std::size_t>((p + 1) * std::max<std::int64_t>(width, 0)));
}

// The same with `pivots` image pivots and no text pivots.
inline void dart_reserve(Workspace& ws, std::int64_t image_tokens, std::int64_t width,
                         std::int64_t pivots = DartOptions{}.pivots, std::int64_t queries = 1) {
  DartOptions o;
  o.pivots = pivots;
  dart_reserve(ws, image_tokens, width, o, queries);
}

namespace detail {

// Both dart_select overloads: validate (the compared rows are `features`'
// fields, or f_data = nullptr for the keys themselves), then select.
template <class Tk, class Tc>
void dart_select_rows(const char* fn, HeadView<const Tk> k, const SegRows<Tc>& compared,
                      const void* f_data, std::int64_t f_tokens, std::int64_t f_features,
                      std::int64_t f_stride, std::size_t f_elem, span<const ImageSpan> spans,
                      span<const std::int64_t> keep_counts, Workspace& ws,
                      span<std::int64_t> kept, const DartOptions& options) {
  std::int64_t max_span = 0;
  const std::int64_t total =
      validate_dart(fn, erase(k), sizeof(Tk), f_data, f_tokens, f_features, f_stride, f_elem,
                    spans, keep_counts, options, max_span);
  check_kept(fn, spans, keep_counts, total, kept);
  const std::int64_t* out = dart_core(fn, seg_rows(k), k.tokens, compared, spans, keep_counts,
                                      total, max_span, options, ws);
  std::copy(out, out + total, kept.data);
}

}  // namespace detail

// DART's pick of keep_counts[i] image tokens of each span.
//
//   k            H x T x d: keys (any strides, HND or NHD; float, half or
//                bfloat16), for the pivot norms (concatenated over heads).
//   features     T x D: the rows compared by cosine similarity (DART: the
//                normed hidden states of the last full layer); any stride
//                and float type.
//   spans        sorted, disjoint image spans inside [0, T).
//   keep_counts  spans.size entries, keep_counts[i] in [0, spans[i].length].
//   ws           scratch (dart_reserve makes the call allocation-free).
//   kept         out, sum(keep_counts) entries: absolute positions of the
//                kept tokens, ascending (span after span), ready for
//                build_keep_list.
//   options      image pivots per span (>= 1), text pivots (>= 0; the text
//                tokens after each span, see the header) and the pivot norm.
// Throws shape_error / value_error before writing on bad shapes, counts or
// options, and value_error (kept untouched) when a key row of a span with
// keep_counts > 0 or a feature row compared is not finite.
template <class Tk, class Tf>
void dart_select(HeadView<const Tk> k, TokenView<const Tf> features,
                 span<const ImageSpan> spans, span<const std::int64_t> keep_counts,
                 Workspace& ws, span<std::int64_t> kept, const DartOptions& options = {}) {
  static_assert(is_float_type_v<Tk> && is_float_type_v<Tf>,
                "k and features must be float, pdrop::half or pdrop::bfloat16");
  constexpr const char* fn = "pdrop::dart_select";
  if (features.data == nullptr && features.tokens == 0)
    detail::fail<shape_error>(fn, "features is empty; use the overload without features "
                                  "to compare the key rows");
  detail::dart_select_rows(fn, k, detail::seg_rows(features), features.data, features.tokens,
                           features.features, features.row_stride, sizeof(Tf), spans,
                           keep_counts, ws, kept, options);
}

// The same, comparing the key rows themselves (concatenated over heads).
template <class Tk>
void dart_select(HeadView<const Tk> k, span<const ImageSpan> spans,
                 span<const std::int64_t> keep_counts, Workspace& ws,
                 span<std::int64_t> kept, const DartOptions& options = {}) {
  static_assert(is_float_type_v<Tk>, "k must be float, pdrop::half or pdrop::bfloat16");
  detail::dart_select_rows("pdrop::dart_select", k, detail::seg_rows(k), nullptr, 0, 0, 0,
                           sizeof(Tk), spans, keep_counts, ws, kept, options);
}

PDROP_END_NAMESPACE

#endif  // PDROP_DART_HPP
