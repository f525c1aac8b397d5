// libFuzzer target: pdrop::rank_and_drop on fuzzer-chosen shapes, layouts,
// element types, spans, keep counts, query positions, options and values,
// checked against a plain reference carried here (double-precision naive
// attention + a full sort), and, in hostile mode, on fuzzer-mutated
// arguments against an oracle of the documented contract.
//
// Normal mode (every argument valid):
//   - each score within a rounding-error bound of the double reference; the
//     bound is derived per score from the inputs (|q|.|k| per logit, softmax
//     length, probability rounding), so it is tight for benign data and
//     loose only where float32 itself is;
//   - the selection of each span is exactly the full sort of the reported
//     scores (ties: lower index); and, against the reference, exactly its
//     top-k whenever the k-th and (k+1)-th reference scores are separated by
//     more than their error bounds; otherwise every kept token's reference
//     score is within bounds of every dropped one's;
//   - keep list, new length and new spans match the naive ones; entries past
//     the outputs' ends are untouched; inputs are untouched (padding and the
//     tail of k past the last query position hold NaN and are never read);
//   - a second call with a fresh workspace and without the optional outputs
//     gives the same keep list, and a third with the reused workspace the
//     same scores, bit for bit.
// Hostile mode: 1-4 mutations (query positions, spans, counts, output sizes,
// view sizes and strides shrunk, NaN/Inf planted anywhere, null pointers,
// bad softmax scales). The call must throw pdrop::invalid_argument exactly
// when the oracle says the arguments break the contract, leaving every buffer
// as it was; otherwise its results are checked as in normal mode.
//
// An open header bug would stop every run at once: known_bug() lists the
// inputs that hit such bugs, skipped unless PDROP_FUZZ_STRICT=1 (empty now;
// see its comment for the bugs found and fixed).
#include <pdrop/pdrop.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "rank_drop_input.hpp"

namespace {

using pdrop::HeadView;
using pdrop::ImageSpan;
using pdrop::span;
using pdrop_fuzz::Case;

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "rank_drop_fuzz: %s\n", what.c_str());
  std::abort();
}

template <class... P>
std::string str(P&&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

template <class T>
std::vector<unsigned char> bytes_of(const std::vector<T>& v) {
  std::vector<unsigned char> b(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Everything one call receives, as the views and spans it is handed.
template <class Tq, class Tk>
struct Args {
  HeadView<const Tq> q;
  span<const std::int64_t> pos;
  HeadView<const Tk> k;
  span<const ImageSpan> spans;
  span<const std::int64_t> counts;
  span<std::int64_t> keep;
  span<ImageSpan> new_spans;
  span<float> scores;
  pdrop::ScoreOptions options;
};

constexpr float kBadScales[8] = {-1.0f, -0.0f, NAN, INFINITY, -INFINITY, 1e-45f, 0.0f, 1e4f};

std::int64_t sat(std::int64_t a, std::int64_t b) {  // a + b, saturated
  std::int64_t r;
  if (!__builtin_add_overflow(a, b, &r)) return r;
  return b > 0 ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
}

// Interesting int64 values for a mutation whose `which` has bit 7 set.
std::int64_t interesting(std::int64_t raw, std::int64_t tokens, std::int64_t near) {
  const std::int64_t table[] = {-1, 0, 1, tokens - 1, tokens, tokens + 1,
                                std::numeric_limits<std::int64_t>::min(),
                                std::numeric_limits<std::int64_t>::max(),
                                std::int64_t{1} << 32, std::int64_t{1} << 62,
                                near, sat(near, 1), sat(near, -1),
                                near == std::numeric_limits<std::int64_t>::min() ? std::numeric_limits<std::int64_t>::max() : -near};
  const auto n = static_cast<std::uint64_t>(sizeof table / sizeof table[0]);
  return table[static_cast<std::uint64_t>(raw) % n];
}

std::int64_t shrink(std::int64_t raw, std::int64_t max) {  // in [0, max]
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(raw) %
                                   static_cast<std::uint64_t>(max + 1));
}

// Oracle of the documented contract of rank_and_drop. Returns must_fail
// (the call has to throw) and may_fail (throwing is acceptable).
struct Verdict {
  bool must_fail = false, may_fail = false;
  std::string why;
};

// Two span arguments share memory without being the same array.
bool partly_overlapping(span<ImageSpan> out, span<const ImageSpan> in) {
  if (!out.data || !in.data || out.size <= 0 || in.size <= 0 || out.data == in.data) return false;
  const auto o = reinterpret_cast<std::uintptr_t>(out.data), i = reinterpret_cast<std::uintptr_t>(in.data);
  const auto ob = static_cast<std::uintptr_t>(out.size) * sizeof(ImageSpan);
  const auto ib = static_cast<std::uintptr_t>(in.size) * sizeof(ImageSpan);
  return o < i + ib && i < o + ob;
}

template <class T>
bool view_ok(const HeadView<const T>& v) {
  if (v.heads < 0 || v.tokens < 0 || v.dim < 0) return false;
  if (v.tokens > 1 && v.token_stride < v.dim) return false;
  if (v.heads > 1 && v.head_stride < v.dim) return false;
  if (v.data == nullptr && v.heads > 0 && v.tokens > 0 && v.dim > 0) return false;
  return true;
}

template <class T>
bool finite_in(const HeadView<const T>& v, std::int64_t tokens) {
  for (std::int64_t h = 0; h < v.heads; ++h)
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t c = 0; c < v.dim; ++c)
        if (!std::isfinite(static_cast<float>(v.row(h, t)[c]))) return false;
  return true;
}

template <class Tq, class Tk>
Verdict oracle(const Args<Tq, Tk>& a) {
  Verdict v;
  auto fail = [&v](const char* why) {
    if (!v.must_fail) v.why = why;
    v.must_fail = true;
  };
  if (!view_ok(a.q)) fail("q view");
  if (!view_ok(a.k)) fail("k view");
  if (v.must_fail) return v;
  if (a.q.heads < 1 || a.k.heads < 1) fail("heads");
  else if (a.q.heads % a.k.heads != 0) fail("heads ratio");
  if (a.q.dim < 1 || a.q.dim != a.k.dim) fail("dim");
  if (a.q.tokens < 1 || a.k.tokens < 1) fail("tokens");
  if (a.pos.size != a.q.tokens || a.pos.data == nullptr) return fail("query_pos"), v;
  for (std::int64_t p : a.pos)
    if (p < 0 || p >= a.k.tokens) fail("query_pos value");
  if (a.spans.size > 0 && a.spans.data == nullptr) return fail("spans.data"), v;
  std::int64_t n_image = 0, n_kept = 0;
  for (std::int64_t i = 0; i < a.spans.size; ++i) {
    const ImageSpan s = a.spans[i];
    if (s.start < 0 || s.length < 0 || s.length > a.k.tokens - s.start) return fail("span"), v;
    if (i > 0 && s.start < a.spans[i - 1].end()) fail("span order");
    n_image += s.length;
  }
  if (a.counts.size != a.spans.size) fail("keep_counts.size");
  else if (a.counts.size > 0 && a.counts.data == nullptr) return fail("keep_counts.data"), v;
  else
    for (std::int64_t i = 0; i < a.counts.size; ++i) {
      if (a.counts[i] < 0 || a.counts[i] > a.spans[i].length) {
        fail("keep_counts value");
        continue;
      }
      // A query token inside the span is kept whatever its count:
      // kept = max(count, distinct query positions in the span).
      std::vector<std::int64_t> inside;
      for (std::int64_t p : a.pos)
        if (p >= a.spans[i].start && p < a.spans[i].end()) inside.push_back(p);
      std::sort(inside.begin(), inside.end());
      inside.erase(std::unique(inside.begin(), inside.end()), inside.end());
      n_kept += std::max<std::int64_t>(a.counts[i], static_cast<std::int64_t>(inside.size()));
    }
  if (v.must_fail) return v;
  const std::int64_t t_new = a.k.tokens - n_image + n_kept;
  if (a.keep.size < t_new) fail("keep.size");
  if (a.keep.data == nullptr && t_new > 0) fail("keep.data");
  if (a.keep.data == nullptr && a.keep.size > 0 && t_new == 0) v.may_fail = true;
  if (a.new_spans.size != 0 && a.new_spans.size != a.spans.size) fail("maybe_new_spans.size");
  if (a.new_spans.size > 0 && a.new_spans.data == nullptr) fail("maybe_new_spans.data");
  if (partly_overlapping(a.new_spans, a.spans)) fail("maybe_new_spans partly overlapping spans");
  if (a.scores.size != 0 && a.scores.size != n_image) fail("maybe_scores.size");
  if (a.scores.size > 0 && a.scores.data == nullptr) fail("maybe_scores.data");
  const float s = a.options.softmax_scale;
  if (!(s >= 0.0f && std::isfinite(s))) fail("softmax_scale");
  if (v.must_fail) return v;
  const std::int64_t keys = *std::max_element(a.pos.begin(), a.pos.end()) + 1;
  if (!finite_in(a.q, a.q.tokens) || !finite_in(a.k, keys)) fail("non-finite q or k");
  return v;
}

// Inputs the current headers are known to mishandle, skipped so that a fuzz
// run keeps exploring (PDROP_FUZZ_STRICT=1 runs them); remove an entry once
// its fix lands. Empty now: the five bugs this target and the bad-input
// matrix found (null keep_counts, null maybe_scores, null maybe_new_spans
// caught after a write, huge span lengths sizing scratch before validation,
// maybe_new_spans partly overlapping spans) are fixed in rank_drop.hpp /
// compact.hpp; their reproducers are in fuzz/regressions/rank_drop_fuzz/.
bool strict() {
  static const bool on = [] {
    const char* e = std::getenv("PDROP_FUZZ_STRICT");
    return e && *e && *e != '0';
  }();
  return on;
}

template <class Tq, class Tk>
const char* known_bug(const Args<Tq, Tk>& a) {
  if (strict()) return nullptr;
  // An entry looks like:
  //   if (a.counts.data == nullptr && a.counts.size > 0) return "null keep_counts";
  (void)a;
  return nullptr;
}

// Double-precision reference scores and a per-score error bound for the
// float32 kernel.
struct Reference {
  std::vector<double> score, tol;
};

double round_like(double p, int rounding) {
  if (rounding == 1) return static_cast<float>(pdrop::half(static_cast<float>(p)));
  if (rounding == 2) return static_cast<float>(pdrop::bfloat16(static_cast<float>(p)));
  return p;
}

template <class Tq, class Tk>
Reference reference(const Args<Tq, Tk>& a, int rounding) {
  constexpr double eps = 1.0 / (1 << 24);
  std::int64_t n_image = 0;
  for (const ImageSpan& s : a.spans) n_image += s.length;
  Reference ref;
  ref.score.assign(static_cast<std::size_t>(n_image), 0.0);
  ref.tol.assign(static_cast<std::size_t>(n_image), 0.0);
  const std::int64_t d = a.q.dim, group = a.q.heads / a.k.heads;
  const double scale = a.options.softmax_scale > 0.0f
                           ? static_cast<double>(a.options.softmax_scale)
                           : static_cast<double>(1.0f / std::sqrt(static_cast<float>(d)));
  const double round_rel = rounding == 1 ? std::ldexp(1.0, -10) : rounding == 2 ? std::ldexp(1.0, -7) : 0.0;
  const double round_abs = rounding == 1 ? std::ldexp(1.0, -24) : 0.0;
  const double rows = static_cast<double>(a.q.heads * a.q.tokens);
  std::vector<double> logit, bound;
  for (std::int64_t h = 0; h < a.q.heads; ++h) {
    const std::int64_t g = h / group;
    for (std::int64_t i = 0; i < a.q.tokens; ++i) {
      const std::int64_t keys = a.pos[i] + 1;
      logit.assign(static_cast<std::size_t>(keys), 0.0);
      double max_err = 0.0;
      for (std::int64_t t = 0; t < keys; ++t) {
        double dot = 0.0, mag = 0.0;
        for (std::int64_t c = 0; c < d; ++c) {
          const double x = static_cast<float>(a.q.row(h, i)[c]);
          const double y = static_cast<float>(a.k.row(g, t)[c]);
          dot += x * y;
          mag += std::fabs(x * y);
        }
        logit[t] = dot * scale;
        // float32 dot (any summation order) and the scale multiply.
        max_err = std::max(max_err, (static_cast<double>(d) + 2) * eps * mag * scale +
                                        2 * eps * std::fabs(logit[t]));
      }
      const double m = *std::max_element(logit.begin(), logit.end());
      double sum = 0.0;
      for (double l : logit) sum += std::exp(l - m);
      std::int64_t off = 0;
      for (const ImageSpan& s : a.spans) {
        for (std::int64_t t = s.start; t < s.end() && t < keys; ++t) {
          const double p = std::exp(logit[t] - m) / sum;
          // Softmax moves a probability by at most twice the worst logit
          // error (relative); then float32 exp, l - m, the sum over keys.
          const double rel = 4 * max_err + 4 * eps * std::fabs(logit[t] - m) +
                             (static_cast<double>(keys) + 16) * eps;
          const std::size_t j = static_cast<std::size_t>(off + t - s.start);
          ref.score[j] += round_like(p, rounding);
          ref.tol[j] += p * (rel + round_rel) + round_abs + 1e-37;
        }
        off += s.length;
      }
    }
  }
  for (std::size_t j = 0; j < ref.score.size(); ++j) {
    ref.score[j] /= rows;
    // Accumulation over heads and queries, the final multiply, margin x2.
    ref.tol[j] = 2 * (ref.tol[j] / rows + (rows + 4) * eps * ref.score[j]);
  }
  return ref;
}

// Indices of the k best of `s` (descending, ties: lower index), ascending.
template <class S>
std::vector<std::int64_t> full_sort_top_k(const std::vector<S>& s, std::int64_t k) {
  std::vector<std::int64_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](std::int64_t x, std::int64_t y) { return s[x] > s[y]; });
  idx.resize(static_cast<std::size_t>(k));
  std::sort(idx.begin(), idx.end());
  return idx;
}

// Checks a successful call's outputs. `scores` are the scores it reported.
template <class Tq, class Tk>
void check_results(const Args<Tq, Tk>& a, const std::vector<ImageSpan>& spans_before,
                   std::int64_t t_new, const std::vector<std::int64_t>& keep,
                   const std::vector<float>& scores, int rounding) {
  // Query tokens inside a span are kept outside the ranking and take their
  // span's slots: kept = max(count, queries in the span) (rank_drop.hpp).
  const auto forced_of = [&](const ImageSpan& sp) {
    std::vector<std::int64_t> f;
    for (std::int64_t p : a.pos)
      if (p >= sp.start && p < sp.end()) f.push_back(p - sp.start);
    std::sort(f.begin(), f.end());
    f.erase(std::unique(f.begin(), f.end()), f.end());
    return f;
  };
  std::int64_t n_image = 0, n_kept = 0;
  for (std::size_t s = 0; s < spans_before.size(); ++s) {
    n_image += spans_before[s].length;
    n_kept += std::max<std::int64_t>(a.counts[static_cast<std::int64_t>(s)],
                                     static_cast<std::int64_t>(forced_of(spans_before[s]).size()));
  }
  if (t_new != a.k.tokens - n_image + n_kept) finding(str("returned length ", t_new));
  // Reference on the spans as they were (maybe_new_spans may alias them).
  Args<Tq, Tk> r = a;
  r.spans = span<const ImageSpan>(spans_before.data(), static_cast<std::int64_t>(spans_before.size()));
  const Reference ref = reference(r, rounding);
  for (std::int64_t i = 0; i < n_image; ++i)
    if (!(std::fabs(scores[i] - ref.score[i]) <= ref.tol[i]))
      finding(str("score ", i, " = ", scores[i], ", reference ", ref.score[i], " +- ", ref.tol[i]));

  std::vector<std::int64_t> kept;
  std::int64_t off = 0;
  for (std::size_t s = 0; s < spans_before.size(); ++s) {
    const ImageSpan sp = spans_before[s];
    const std::vector<std::int64_t> forced = forced_of(sp);
    // The ranked candidates: the span's tokens but the forced ones.
    std::vector<std::int64_t> cand;
    for (std::int64_t i = 0, f = 0; i < sp.length; ++i) {
      if (f < static_cast<std::int64_t>(forced.size()) && forced[f] == i) { ++f; continue; }
      cand.push_back(i);
    }
    const std::int64_t nc = static_cast<std::int64_t>(cand.size());
    const std::int64_t k = std::max<std::int64_t>(
        a.counts[static_cast<std::int64_t>(s)] - static_cast<std::int64_t>(forced.size()), 0);
    std::vector<std::int64_t> got;
    for (std::int64_t i = 0; i < t_new; ++i)
      if (keep[i] >= sp.start && keep[i] < sp.end()) got.push_back(keep[i] - sp.start);
    std::vector<float> own;
    std::vector<double> rs, rt;
    for (std::int64_t i : cand) {
      own.push_back(scores[off + i]);
      rs.push_back(ref.score[off + i]);
      rt.push_back(ref.tol[off + i]);
    }
    const auto with_forced = [&](const std::vector<std::int64_t>& picks) {
      std::vector<std::int64_t> out = forced;
      for (std::int64_t c : picks) out.push_back(cand[c]);
      std::sort(out.begin(), out.end());
      return out;
    };
    if (got != with_forced(full_sort_top_k(own, k)))
      finding(str("span ", s, ": selection is not its queries and the top-", k, " of its own scores"));
    const std::vector<std::int64_t> want = full_sort_top_k(rs, k);
    if (k > 0 && k < nc) {
      std::vector<bool> in(static_cast<std::size_t>(nc), false);
      for (std::int64_t i : want) in[i] = true;
      double lo_top = INFINITY, hi_rest = -INFINITY;
      for (std::int64_t i = 0; i < nc; ++i) {
        if (in[i]) lo_top = std::min(lo_top, rs[i] - rt[i]);
        else hi_rest = std::max(hi_rest, rs[i] + rt[i]);
      }
      if (lo_top > hi_rest && got != with_forced(want))
        finding(str("span ", s, ": selection differs from the reference top-", k,
                    " although the boundary is clear"));
      double kept_hi = -INFINITY, dropped_lo = INFINITY;
      for (std::int64_t i = 0; i < nc; ++i) {
        if (std::binary_search(got.begin(), got.end(), cand[i])) dropped_lo = std::min(dropped_lo, rs[i] + rt[i]);
        else kept_hi = std::max(kept_hi, rs[i] - rt[i]);
      }
      if (kept_hi > dropped_lo)
        finding(str("span ", s, ": a dropped token scores clearly above a kept one"));
    }
    for (std::int64_t i : got) kept.push_back(sp.start + i);
    off += sp.length;
  }
  // Keep list: every token outside the spans plus the kept ones, ascending.
  std::vector<std::int64_t> want_keep;
  for (std::int64_t t = 0, s = 0, ki = 0; t < a.k.tokens; ++t) {
    while (s < static_cast<std::int64_t>(spans_before.size()) && t >= spans_before[s].end()) ++s;
    const bool image = s < static_cast<std::int64_t>(spans_before.size()) && t >= spans_before[s].start;
    if (!image) want_keep.push_back(t);
    else if (ki < static_cast<std::int64_t>(kept.size()) && kept[ki] == t) want_keep.push_back(t), ++ki;
  }
  if (!std::equal(want_keep.begin(), want_keep.end(), keep.begin()) ||
      static_cast<std::int64_t>(want_keep.size()) != t_new)
    finding("keep list differs from the naive one");
  if (a.new_spans.size > 0)
    for (std::size_t s = 0; s < spans_before.size(); ++s) {
      const auto first = std::lower_bound(keep.begin(), keep.begin() + t_new, spans_before[s].start);
      const ImageSpan got = a.new_spans[static_cast<std::int64_t>(s)];
      const std::int64_t want_len =
          std::max<std::int64_t>(a.counts[static_cast<std::int64_t>(s)],
                                 static_cast<std::int64_t>(forced_of(spans_before[s]).size()));
      if (got.start != first - keep.begin() || got.length != want_len)
        finding(str("new span ", s, " is (", got.start, ", ", got.length, ")"));
    }
}

template <class T>
std::vector<T> layout(const std::vector<float>& values, std::int64_t heads, std::int64_t tokens,
                      std::int64_t d, std::int64_t pad, bool nhd, HeadView<const T>& view) {
  const std::int64_t row = d + pad;
  std::vector<T> buf(static_cast<std::size_t>(heads * tokens * row), T(NAN));
  view = nhd ? HeadView<const T>(buf.data(), heads, tokens, d, row, heads * row)
             : HeadView<const T>(buf.data(), heads, tokens, d, tokens * row, row);
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t c = 0; c < d; ++c)
        const_cast<T*>(view.row(h, t))[c] = T(values[static_cast<std::size_t>((h * tokens + t) * d + c)]);
  return buf;
}

template <class Tq, class Tk>
void run(const Case& c) {
  HeadView<const Tq> qv;
  HeadView<const Tk> kv;
  std::vector<Tq> q = layout<Tq>(c.q_values, c.hq(), c.nq, c.d, c.q_pad, c.q_nhd, qv);
  std::vector<Tk> k = layout<Tk>(c.k_values, c.hkv, c.tokens, c.d, c.k_pad, c.k_nhd, kv);
  const std::int64_t last = *std::max_element(c.query_pos.begin(), c.query_pos.end());
  if (c.poison_tail)
    for (std::int64_t g = 0; g < c.hkv; ++g)
      for (std::int64_t t = last + 1; t < c.tokens; ++t)
        for (std::int64_t i = 0; i < c.d; ++i) const_cast<Tk*>(kv.row(g, t))[i] = Tk(NAN);

  std::vector<std::int64_t> pos = c.query_pos, counts = c.keep_count;
  std::vector<ImageSpan> spans;
  std::int64_t n_image = 0;
  for (std::size_t s = 0; s < c.span_start.size(); ++s) {
    spans.push_back({c.span_start[s], c.span_length[s]});
    n_image += c.span_length[s];
  }
  const std::int64_t ns = static_cast<std::int64_t>(spans.size());
  spans.push_back(ImageSpan{-5, -5});  // spare slot: maybe_new_spans shifted over spans
  // Outputs with one spare entry each, holding sentinels.
  std::vector<std::int64_t> keep(static_cast<std::size_t>(c.tokens + 2), -7);
  std::vector<ImageSpan> new_spans(static_cast<std::size_t>(ns + 1), ImageSpan{-3, -3});
  std::vector<float> scores(static_cast<std::size_t>(n_image + 1), 1234.5f);

  Args<Tq, Tk> a;
  a.q = qv;
  a.k = kv;
  a.pos = span<const std::int64_t>(pos.data(), c.nq);
  a.spans = span<const ImageSpan>(spans.data(), ns);
  a.counts = span<const std::int64_t>(counts.data(), ns);
  a.keep = span<std::int64_t>(keep.data(), c.tokens + 2);
  a.new_spans = c.alias_new_spans ? span<ImageSpan>(spans.data(), ns)
                                  : span<ImageSpan>(new_spans.data(), ns);
  a.scores = span<float>(scores.data(), n_image);
  a.options.softmax_scale = pdrop_fuzz::kScales[c.scale_index];
  a.options.round_probs = c.rounding == 1   ? pdrop::ProbRounding::fp16
                          : c.rounding == 2 ? pdrop::ProbRounding::bf16
                                            : pdrop::ProbRounding::none;

  for (const pdrop_fuzz::Mutation& m : c.mutations) {
    const bool pick = m.which & 128;
    const std::int64_t w = m.which & 127;
    auto val = [&](std::int64_t near) { return pick ? interesting(m.raw, c.tokens, near) : m.raw; };
    switch (m.kind % 23) {
      case 0: pos[w % c.nq] = val(c.tokens); break;
      case 1: if (ns) spans[w % ns].start = val(spans[w % ns].start); break;
      case 2: if (ns) spans[w % ns].length = val(spans[w % ns].length); break;
      case 3: if (ns) counts[w % ns] = val(spans[w % ns].length); break;
      case 4: a.keep.size = shrink(m.raw, c.tokens + 2); break;
      case 5: a.scores.size = shrink(m.raw, n_image + 1); break;
      case 6: a.new_spans.size = shrink(m.raw, ns + 1); break;
      case 7:
      case 8: {
        const float poison = (w % 3 == 0) ? NAN : (w % 3 == 1) ? INFINITY : -INFINITY;
        if (m.kind % 23 == 7) q[shrink(m.raw, static_cast<std::int64_t>(q.size()) - 1)] = Tq(poison);
        else k[shrink(m.raw, static_cast<std::int64_t>(k.size()) - 1)] = Tk(poison);
        break;
      }
      case 9: a.q.heads = shrink(m.raw, c.hq()); break;
      case 10: a.k.heads = shrink(m.raw, c.hkv); break;
      case 11: a.q.dim = shrink(m.raw, c.d); break;
      case 12: a.k.dim = shrink(m.raw, c.d); break;
      case 13: a.k.tokens = shrink(m.raw, c.tokens); break;
      case 14: a.q.tokens = shrink(m.raw, c.nq); break;
      case 15: a.pos.size = shrink(m.raw, c.nq); break;
      case 16: a.spans.size = shrink(m.raw, ns); break;
      case 17: a.counts.size = shrink(m.raw, ns); break;
      case 18: a.options.softmax_scale = kBadScales[w % 8]; break;
      case 19:
        switch (w % 8) {
          case 0: a.q.data = nullptr; break;
          case 1: a.k.data = nullptr; break;
          case 2: a.pos.data = nullptr; break;
          case 3: a.spans.data = nullptr; break;
          case 4: a.counts.data = nullptr; break;
          case 5: a.keep.data = nullptr; break;
          case 6: a.new_spans.data = nullptr; break;
          default: a.scores.data = nullptr; break;
        }
        break;
      case 20:  // strides shrunk (read-only views may alias themselves)
        if (w & 1) a.q.token_stride = shrink(m.raw, a.q.token_stride);
        else a.q.head_stride = shrink(m.raw, a.q.head_stride);
        break;
      case 22:  // maybe_new_spans one entry further on in the spans buffer
        if (ns > 0) a.new_spans = span<ImageSpan>(spans.data() + 1, ns);
        break;
      default:
        if (w & 1) a.k.token_stride = shrink(m.raw, a.k.token_stride);
        else a.k.head_stride = shrink(m.raw, a.k.head_stride);
        break;
    }
  }
  if (known_bug(a)) return;

  const Verdict verdict = oracle(a);
  // The spans the call sees (maybe_new_spans may overwrite them).
  const std::vector<ImageSpan> spans_before =
      a.spans.data && a.spans.size > 0
          ? std::vector<ImageSpan>(a.spans.data, a.spans.data + std::min(a.spans.size, ns))
          : std::vector<ImageSpan>{};
  const span<const ImageSpan> orig(spans_before.data(), static_cast<std::int64_t>(spans_before.size()));
  const std::vector<ImageSpan> spans_copy(spans.begin(), spans.begin() + ns);
  const auto snap = [&] {
    return std::vector<std::vector<unsigned char>>{bytes_of(q), bytes_of(k), bytes_of(pos),
                                                   bytes_of(spans), bytes_of(counts),
                                                   bytes_of(keep), bytes_of(new_spans),
                                                   bytes_of(scores)};
  };
  const auto before = snap();
  pdrop::Workspace ws;
  std::int64_t t_new = -1;
  try {
    t_new = pdrop::rank_and_drop<Tq, Tk>(a.q, a.pos, a.k, a.spans, a.counts, ws, a.keep,
                                         a.new_spans, a.scores, a.options);
  } catch (const pdrop::invalid_argument& e) {
    if (!verdict.must_fail && !verdict.may_fail)
      finding(str("rejected a valid call: ", e.what()));
    if (snap() != before) finding(str("a rejected call changed a buffer: ", e.what()));
    return;
  } catch (const std::exception& e) {
    finding(str("threw something other than pdrop::invalid_argument: ", e.what()));
  }
  if (verdict.must_fail) finding("accepted a call that breaks the contract (" + verdict.why + ")");

  // Success: inputs untouched (spans only change when they are the output).
  const auto after = snap();
  for (int i : {0, 1, 2, 4})
    if (after[static_cast<std::size_t>(i)] != before[static_cast<std::size_t>(i)])
      finding(str("input buffer ", i, " changed"));
  // spans[0, ns) are input unless maybe_new_spans is exactly them; the spare
  // slot after them may be where a shifted maybe_new_spans writes.
  if (a.new_spans.data != spans.data() &&
      bytes_of(std::vector<ImageSpan>(spans.begin(), spans.begin() + ns)) != bytes_of(spans_copy))
    finding("spans changed");
  for (std::size_t i = static_cast<std::size_t>(t_new); i < keep.size(); ++i)
    if (keep[i] != -7) finding(str("keep[", i, "] past the new length was written"));
  if (scores.back() != 1234.5f || (a.scores.size == 0 && scores[0] != 1234.5f))
    finding("scores written past maybe_scores");
  if (new_spans.back().start != -3 || (a.new_spans.size == 0 && ns > 0 && new_spans[0].start != -3))
    finding("new spans written past maybe_new_spans");
  // Scores the call ranked: reported ones, or the same call again.
  std::int64_t n_seen = 0;
  for (const ImageSpan& s : spans_before) n_seen += s.length;
  std::vector<float> ranked(static_cast<std::size_t>(n_seen));
  if (a.scores.size > 0) {
    std::copy(scores.begin(), scores.begin() + n_seen, ranked.begin());
  } else {
    pdrop::Workspace ws2;
    std::vector<std::int64_t> keep2(keep.size());
    pdrop::rank_and_drop<Tq, Tk>(a.q, a.pos, a.k, orig, a.counts, ws2, keep2, {},
                                 span<float>(ranked.data(), n_seen), a.options);
  }
  check_results(a, spans_before, t_new, keep, ranked, c.rounding);

  // Determinism: fresh workspace, no optional outputs; reused workspace.
  if (!c.hostile) {
    pdrop::Workspace fresh;
    std::vector<std::int64_t> keep2(keep.size(), -7);
    const std::int64_t t2 = pdrop::rank_and_drop<Tq, Tk>(a.q, a.pos, a.k, orig, a.counts, fresh,
                                                         keep2, {}, {}, a.options);
    if (t2 != t_new || keep2 != keep) finding("second call (fresh workspace) differs");
    std::vector<float> scores3(static_cast<std::size_t>(n_seen));
    pdrop::rank_and_drop<Tq, Tk>(a.q, a.pos, a.k, orig, a.counts, ws, keep2, {}, scores3,
                                 a.options);
    if (bytes_of(scores3) != bytes_of(ranked))
      finding("third call (reused workspace) gives different score bits");
  }
}

template <class Tq>
void dispatch_k(const Case& c) {
  switch (c.k_type) {
    case 1: return run<Tq, pdrop::half>(c);
    case 2: return run<Tq, pdrop::bfloat16>(c);
    default: return run<Tq, float>(c);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const Case c = pdrop_fuzz::decode(data, size);
  switch (c.q_type) {
    case 1: dispatch_k<pdrop::half>(c); break;
    case 2: dispatch_k<pdrop::bfloat16>(c); break;
    default: dispatch_k<float>(c); break;
  }
  return 0;
}
