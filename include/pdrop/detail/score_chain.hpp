// pdrop/detail/score_chain.hpp - the scoring path of ScorePrecision's chain
// modes (fp16_chain, bf16_chain): every rounding of the authors' PyTorch
// code, one after the other. The formulas and their sources are at
// ScorePrecision in pdrop/score.hpp; this file is how they are computed.
//
// Plain scalar code, compiled once (not per SIMD target): it exists to
// reproduce reference runs, and every step is written in one fixed order so
// that the single-threaded and the parallel_for paths give the same bits.
// pdrop/score.hpp includes it at its end (and it includes pdrop/score.hpp,
// so it also compiles on its own).
#ifndef PDROP_DETAIL_SCORE_CHAIN_HPP
#define PDROP_DETAIL_SCORE_CHAIN_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "pdrop/score.hpp"

PDROP_BEGIN_NAMESPACE
namespace detail {

// R(x): x rounded to the chain's type (to nearest even) and back to float.
inline float chain_round(float x, ScorePrecision p) {
  return p == ScorePrecision::bf16_chain ? static_cast<float>(bfloat16(x))
                                         : static_cast<float>(half(x));
}

// Kv-head group g of a chain job: for each of its query heads in order and
// each query row p, the rounded logits of keys 0..query_pos[p] into l (at
// least job.keys floats), their float32 softmax, and the rounded
// probability v of every image token i (index over all spans) before the
// row's limit handed to put(r, i, v), r = head-in-group * nq + p. Returns
// where it stopped: the first key of the row, rows in order, whose float
// q.k is not finite, else whose rounded logit overflowed; l[key] then holds
// that q.k.
template <class Tq, class Tk, class Put>
ScoreFault chain_group(const ScoreJob<Tq, Tk>& job, std::int64_t g, float* l, Put&& put) {
  const std::int64_t d = job.q.dim, nq = job.q.tokens;
  const ScorePrecision pr = job.precision;
  for (std::int64_t r = 0; r < job.rows; ++r) {
    const Tq* q = job.q.row(g * job.group + r / nq, r % nq);
    const std::int64_t n = job.query_pos[r % nq] + 1;
    for (std::int64_t t = 0; t < n; ++t) {
      const Tk* k = job.k.row(g, t);
      double dot = 0.0;
      for (std::int64_t c = 0; c < d; ++c)
        dot += static_cast<double>(to_float(q + c)) * static_cast<double>(to_float(k + c));
      l[t] = static_cast<float>(dot);
    }
    for (std::int64_t t = 0; t < n; ++t)
      if (!std::isfinite(l[t])) return ScoreFault{r, t};
    for (std::int64_t t = 0; t < n; ++t) {
      const float a = chain_round(l[t], pr);
      const float x = chain_round(job.divisor > 0.0f ? a / job.divisor : a * job.scale, pr);
      if (!std::isfinite(x)) return ScoreFault{r, t};
      l[t] = x;
    }
    float m = l[0];
    for (std::int64_t t = 1; t < n; ++t) m = l[t] > m ? l[t] : m;
    float sum = 0.0f;
    for (std::int64_t t = 0; t < n; ++t) {
      l[t] = static_cast<float>(std::exp(static_cast<double>(l[t] - m)));
      sum += l[t];
    }
    std::int64_t offset = 0;
    for (const ImageSpan& s : job.spans) {
      for (std::int64_t t = s.start; t < std::min(s.end(), n); ++t)
        put(r, offset + (t - s.start), chain_round(l[t] / sum, pr));
      offset += s.length;
    }
  }
  return ScoreFault{};
}

// The error of a group that stopped at f; q_dot is the float q.k there.
template <class Tq, class Tk>
[[noreturn]] void fail_chain(const char* fn, const ScoreJob<Tq, Tk>& job, std::int64_t g,
                             ScoreFault f, float q_dot) {
  if (!std::isfinite(q_dot)) fail_non_finite_value(fn, job, g, f, q_dot);
  fail<value_error>(fn, "the ", precision_name(job.precision),
                    " logit of query head ", g * job.group + f.row / job.q.tokens,
                    ", query row ", f.row % job.q.tokens, " and key ", f.key,
                    " overflows (q.k = ", q_dot, "): not finite in ",
                    job.precision == ScorePrecision::bf16_chain ? "bf16" : "fp16");
}

// score(i) from the per-query-row sums over heads: m(p) = R(S(p) / Hq),
// then R((0 + m(0) + ... + m(nq-1)) / nq); head_sum(p) gives S(p).
template <class HeadSum>
float chain_score(ScorePrecision pr, std::int64_t q_heads, std::int64_t nq,
                  HeadSum&& head_sum) {
  float rows = 0.0f;
  for (std::int64_t p = 0; p < nq; ++p)
    rows += chain_round(head_sum(p) / static_cast<float>(q_heads), pr);
  return chain_round(rows / static_cast<float>(nq), pr);
}

// On the calling thread. Scratch (within Workspace::score_floats(rows,
// keys, dim, n)): one logits row, then nq x n running sums over the heads,
// heads in order (groups in order, each group's heads in order).
template <class Tq, class Tk>
void score_chain_run(const char* fn, const ScoreJob<Tq, Tk>& job, Workspace& ws,
                     span<float> scores) {
  const std::int64_t nq = job.q.tokens, n = job.n_image;
  float* l = aligned_scratch(ws, Workspace::score_floats(job.rows, job.keys, job.q.dim, n));
  float* sums = l + pad16(job.keys);
  std::fill(sums, sums + nq * n, 0.0f);
  for (std::int64_t g = 0; g < job.k.heads; ++g) {
    const ScoreFault f = chain_group(job, g, l, [&](std::int64_t r, std::int64_t i, float v) {
      sums[(r % nq) * n + i] += v;
    });
    if (f.row >= 0) fail_chain(fn, job, g, f, l[f.key]);
  }
  for (std::int64_t i = 0; i < n; ++i)
    scores[i] = chain_score(job.precision, job.q.heads, nq,
                            [&](std::int64_t p) { return sums[p * n + i]; });
}

// The kv-head groups over parallel_for, each in its own slot
// (Workspace::score_floats(..., groups)): one logits row, then the group's
// rows x n rounded probabilities (0 after a row's limit). Then, chunks of
// tokens over parallel_for, the sums over heads in the single-threaded
// path's order (0 + head 0 + head 1 + ...; adding a 0 changes no bit), so
// the same scores. On a fault, the first group's error, groups in order.
template <class Tq, class Tk, class ParallelFor>
void score_chain_run(const char* fn, const ScoreJob<Tq, Tk>& job, Workspace& ws,
                     span<float> scores, ParallelFor&& parallel_for) {
  const std::int64_t nq = job.q.tokens, n = job.n_image, rows = job.rows;
  const std::int64_t groups = job.k.heads, d = job.q.dim;
  const std::int64_t slot = Workspace::score_slot_floats(rows, job.keys, d, n);
  const std::int64_t probs_at = pad16(job.keys);
  float* base = aligned_scratch(ws, Workspace::score_floats(rows, job.keys, d, n, groups));
  base += pad16(n);  // where the fp32 path keeps its running sums, unused here
  std::int64_t* faults = ws.faults(static_cast<std::size_t>(2 * groups));
  parallel_for(groups, [&](std::int64_t g) noexcept {
    float* l = base + g * slot;
    float* probs = l + probs_at;
    std::fill(probs, probs + rows * n, 0.0f);
    const ScoreFault f = chain_group(job, g, l, [&](std::int64_t r, std::int64_t i, float v) {
      probs[r * n + i] = v;
    });
    faults[2 * g] = f.row;
    faults[2 * g + 1] = f.key;
  });
  for (std::int64_t g = 0; g < groups; ++g)
    if (faults[2 * g] >= 0)
      fail_chain(fn, job, g, ScoreFault{faults[2 * g], faults[2 * g + 1]},
                 base[g * slot + faults[2 * g + 1]]);
  constexpr std::int64_t chunk = 256;
  parallel_for((n + chunk - 1) / chunk, [&](std::int64_t c) noexcept {
    const std::int64_t lo = c * chunk, hi = std::min(n, lo + chunk);
    for (std::int64_t i = lo; i < hi; ++i)
      scores[i] = chain_score(job.precision, job.q.heads, nq, [&](std::int64_t p) {
        float s = 0.0f;
        for (std::int64_t g = 0; g < groups; ++g)
          for (std::int64_t h = 0; h < job.group; ++h)
            s += base[g * slot + probs_at + (h * nq + p) * n + i];
        return s;
      });
  });
}

}  // namespace detail
PDROP_END_NAMESPACE

#endif  // PDROP_DETAIL_SCORE_CHAIN_HPP
