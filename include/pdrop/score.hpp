// pdrop/score.hpp - scoring: how much the query tokens attend to each image
// token.
//
// PyramidDrop ranks image tokens by the attention the last instruction token
// pays them. pdrop computes that attention from the post-RoPE q rows of the
// query tokens and the keys K directly, so it works for runtimes whose
// attention is fused (flash attention) and never materialises weights:
//
//   a_h(p, t) = softmax_{t' <= p}( q_h(p) . k_g(t') * scale )   (float32, max-
//               subtracted; keys after the query position p are masked)
//   score(i)  = mean_over_queries( mean_over_heads( a_h(p, s + i) ) )
//
// with g = h / (Hq / Hkv) (HF repeat_kv grouping), scale = 1/sqrt(dim)
// unless given. A query before an image token contributes zero to it. Several
// image spans are scored in one call; their scores are laid out one span
// after the other. V is never read. ScoreOptions::precision instead rounds
// every step as the authors' fp16 / bf16 code does (ScorePrecision below).
//
// Cost: each K row up to the last query position is read once for all the
// query rows of its kv-head group; scratch is one logits row per query row
// of a group (a Workspace, reused across calls). An overload takes the
// caller's parallel_for and spreads the kv-head groups over threads, with
// bit-identical results.
#ifndef PDROP_SCORE_HPP
#define PDROP_SCORE_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "pdrop/config.hpp"
#include "pdrop/detail/check.hpp"
#include "pdrop/detail/simd.hpp"
#include "pdrop/dispatch.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/view.hpp"
#include "pdrop/workspace.hpp"

PDROP_BEGIN_NAMESPACE

// How attention probabilities are rounded before they are averaged.
//  none: float32 throughout (default).
//  fp16 / bf16: each probability is rounded to that type first, the way the
//  reference casts its softmax output back to the model dtype. Use it only to
//  reproduce an fp16 reference run: scores then tie more often, and ties are
//  broken by select_top_k's rule (lower index first), not by a GPU's top-k.
enum class ProbRounding { none, fp16, bf16 };

// The arithmetic of the whole score (ScoreOptions::precision).
//
//  fp32 (default): as the header comment says, float32 throughout (and
//  ProbRounding, if set, on the probabilities only).
//
//  fp16_chain / bf16_chain: every rounding of the authors' PyTorch code run
//  in that dtype, one after the other. With R(x) = x rounded to fp16 (bf16)
//  to nearest even and back to float, for query head h (kv head g as
//  above), query row p, key t <= query_pos[p] and image token i:
//
//    l(t)    = R( R(q_h(p) . k_g(t)) / float(sqrt(dim)) )   softmax_scale 0
//            = R( R(q_h(p) . k_g(t)) * softmax_scale )      otherwise
//    a_h(p,t) = R( e(t) / (e(0) + e(1) + ... + e(query_pos[p])) ),
//               e(t) = exp(l(t) - max_t' l(t')), all float32
//    m(p, i) = R( (0 + a_0(p,i) + a_1(p,i) + ... + a_{Hq-1}(p,i)) / Hq )
//    score(i) = R( (0 + m(0,i) + ... + m(nq-1,i)) / nq )
//
//  q . k is summed in double over the dimensions and rounded once to float
//  (the float32 accumulator of torch's fp16 matmul, without the summation
//  order that differs between GEMM kernels); e(t) is exp in double rounded
//  to float; every sum runs in float in the order written (heads in order,
//  then query rows in order; an fp16 sum below 1 is exact in float in any
//  order, so a GPU's reduction tree gives the same there). A key after
//  query_pos[p] has a_h(p, t) = 0, as the authors' additive causal mask
//  gives. The scores are fp16 (bf16) values; ties are then common and go
//  to the lower index (select_top_k). A logit that overflows the type (an
//  fp16 q.k beyond 65504) is a value_error, where torch would give NaNs.
//
//  Sources (read to learn the rule; line numbers at the named commits):
//  PyramidDrop, Cooperx521/PyramidDrop 6444f304, llava/model/
//  modeling_llama_pdrop.py: l.1395 (matmul of q and k in the model dtype,
//  then `/ math.sqrt(head_dim)`: two tensors, two roundings), l.1396 (the
//  mask, + 0 on the keys that count: exact), l.1397 (softmax with
//  dtype=float32, cast back to the model dtype), l.1399 (torch.mean over
//  heads), l.1400-1401 (image tokens, torch.mean over the query rows),
//  l.1405 (topk). FastV, pkunlp-icler/FastV d1659729, src/transformers/
//  src/transformers/models/llama/modeling_llama.py: l.330 (repeat_kv), l.333
//  (matmul, / math.sqrt), l.346 (mask), l.349 (softmax, cast back), l.740
//  (torch.mean over heads), l.742 (the last row). The arithmetic of each
//  torch op is torch's CPU kernels' (checked against torch 2.8 on CPU): an
//  fp16 tensor divided by a Python float is divided in float by the float
//  of it, and torch.mean of an fp16 tensor sums in float, divides by the
//  count and rounds once. torch's CUDA kernels multiply by the float
//  reciprocal instead (torch's aten/src/ATen/native/cuda/
//  BinaryDivTrueKernel.cu, ReduceMomentKernel.cu): for the logits, pass
//  softmax_scale = 1.0f / float(sqrt(dim)) to get that; for the means the
//  two agree when Hq and nq are powers of two (LLaVA-1.5/NeXT-7B: 32 heads,
//  one query row), otherwise a mean within a float ulp of an fp16 rounding
//  midpoint may round the other way (one fp16 ulp).
//  Neither torch's float32 softmax nor its GEMM is reproduced to the last
//  float bit (their exp and summation order are their own); that moves a
//  rounded value only where it lies within a float ulp or so of a midpoint.
//  GQA: pdrop groups query heads as repeat_kv (FastV l.330); PyramidDrop's
//  matmul (l.1395) broadcasts k without repeat_kv, so it runs MHA only.
//
//  Cost: a plain scalar path (it is for reproducing reference runs): one
//  double dot product per (query head, query row, key), no blocked GEMM.
//  Scratch as the fp32 path (Workspace::reserve / reserve_parallel size
//  both); allocation-free after them; the parallel_for overload is
//  bit-identical to the single-threaded one. Not with ProbRounding (a
//  value_error) nor with the tensor-parallel partial scores (value_error:
//  a rounded mean over heads cannot be split over ranks).
enum class ScorePrecision { fp32, fp16_chain, bf16_chain };

struct ScoreOptions {
  float softmax_scale = 0.0f;  // 0: 1/sqrt(dim); else finite and > 0
  ProbRounding round_probs = ProbRounding::none;
  ScorePrecision precision = ScorePrecision::fp32;  // with round_probs none
};

namespace detail {

// "fp16_chain" ..., or null for a value outside the enum.
inline const char* precision_name(ScorePrecision p) {
  switch (p) {
    case ScorePrecision::fp32: return "fp32";
    case ScorePrecision::fp16_chain: return "fp16_chain";
    case ScorePrecision::bf16_chain: return "bf16_chain";
  }
  return nullptr;
}
inline const char* rounding_name(ProbRounding r) {
  switch (r) {
    case ProbRounding::none: return "none";
    case ProbRounding::fp16: return "fp16";
    case ProbRounding::bf16: return "bf16";
  }
  return "?";
}

// Checks every input of score_image_tokens (all but the output); returns
// the total number of image tokens. Non-templated: the typed front hands
// over sizes and strides.
inline std::int64_t validate_score_inputs(const char* fn, HeadView<const void> q,
                                          std::size_t q_elem,
                                          span<const std::int64_t> query_pos,
                                          HeadView<const void> k, std::size_t k_elem,
                                          span<const ImageSpan> spans,
                                          const ScoreOptions& opt) {
  check_head_view(fn, "q", q.data, q.heads, q.tokens, q.dim, q.head_stride,
                  q.token_stride, q_elem, false);
  check_head_view(fn, "k", k.data, k.heads, k.tokens, k.dim, k.head_stride,
                  k.token_stride, k_elem, false);
  if (q.heads < 1) fail<shape_error>(fn, "q.heads (", q.heads, ") must be >= 1");
  if (k.heads < 1) fail<shape_error>(fn, "k.heads (", k.heads, ") must be >= 1");
  if (q.heads % k.heads != 0)
    fail<shape_error>(fn, "q.heads (", q.heads, ") must be a multiple of k.heads (",
                      k.heads, ")");
  if (q.dim < 1 || q.dim != k.dim)
    fail<shape_error>(fn, "q.dim (", q.dim, ") and k.dim (", k.dim,
                      ") must be equal and >= 1");
  if (q.tokens < 1)
    fail<shape_error>(fn, "q.tokens (", q.tokens, ") must be >= 1 query row");
  if (k.tokens < 1) fail<shape_error>(fn, "k.tokens (", k.tokens, ") must be >= 1");
  if (query_pos.size != q.tokens)
    fail<shape_error>(fn, "query_pos.size (", query_pos.size,
                      ") must equal q.tokens (", q.tokens, ")");
  if (query_pos.data == nullptr)
    fail<shape_error>(fn, "query_pos.data is null with ", query_pos.size, " entries");
  for (std::int64_t i = 0; i < query_pos.size; ++i)
    if (query_pos[i] < 0 || query_pos[i] >= k.tokens)
      fail<value_error>(fn, "query_pos[", i, "] (", query_pos[i],
                        ") must be in [0, k.tokens = ", k.tokens, ")");
  const std::int64_t total = check_spans(fn, spans, k.tokens, "k.tokens");
  if (!(opt.softmax_scale >= 0.0f && std::isfinite(opt.softmax_scale)))
    fail<value_error>(fn, "options.softmax_scale (", opt.softmax_scale,
                      ") must be finite and >= 0 (0 = 1/sqrt(dim))");
  if (precision_name(opt.precision) == nullptr)
    fail<value_error>(fn, "options.precision (", static_cast<int>(opt.precision),
                      ") is not a pdrop::ScorePrecision");
  if (opt.precision != ScorePrecision::fp32 && opt.round_probs != ProbRounding::none)
    fail<value_error>(fn, "options.round_probs (", rounding_name(opt.round_probs),
                      ") and options.precision (", precision_name(opt.precision),
                      ") cannot both be set: the chain rounds the probabilities itself");
  return total;
}

// validate_score_inputs, and `scores` holds exactly the image tokens.
inline std::int64_t validate_score(const char* fn, HeadView<const void> q,
                                   std::size_t q_elem,
                                   span<const std::int64_t> query_pos,
                                   HeadView<const void> k, std::size_t k_elem,
                                   span<const ImageSpan> spans,
                                   span<float> scores, const ScoreOptions& opt) {
  const std::int64_t total =
      validate_score_inputs(fn, q, q_elem, query_pos, k, k_elem, spans, opt);
  if (scores.size != total)
    fail<shape_error>(fn, "scores.size (", scores.size,
                      ") must equal the image tokens over all spans (", total, ")");
  if (total > 0 && scores.data == nullptr)
    fail<shape_error>(fn, "scores.data is null with ", total, " entries");
  return total;
}

template <class T>
HeadView<const void> erase(HeadView<const T> v) {
  return HeadView<const void>(v.data, v.heads, v.tokens, v.dim, v.head_stride,
                              v.token_stride);
}

inline float round_prob(float p, ProbRounding r) {
  switch (r) {
    case ProbRounding::fp16: return static_cast<float>(half(p));
    case ProbRounding::bf16: return static_cast<float>(bfloat16(p));
    case ProbRounding::none: break;
  }
  return p;
}

// The fixed inputs of one scoring call, shared by every kv-head group.
template <class Tq, class Tk>
struct ScoreJob {
  HeadView<const Tq> q;
  span<const std::int64_t> query_pos;
  HeadView<const Tk> k;
  span<const ImageSpan> spans;
  ProbRounding rounding;
  float scale;
  std::int64_t group, rows, keys, n_image;
  // The chain modes (detail/score_chain.hpp); divisor > 0: the logits are
  // divided by it (softmax_scale 0) instead of multiplied by `scale`.
  ScorePrecision precision = ScorePrecision::fp32;
  float divisor = 0.0f;
};

// Where a group stopped on a non-finite logit: its row (-1: none) and key.
struct ScoreFault {
  std::int64_t row = -1;
  std::int64_t key = 0;
};

inline std::int64_t pad16(std::int64_t n) { return (n + 15) / 16 * 16; }

// ---- the kernels, once per SIMD target (detail/score_kernels-inl.hpp) ----
//
// simd_<target>::score_group(job, g, qf, logits, acc): kv-head group g's
// query rows as float into qf (rows x dim), their logits into `logits`
// (rows x keys), then each row's probabilities of the image tokens added
// into acc, rows in order; returns where a non-finite logit stopped it.
namespace simd_portable {
#include "pdrop/detail/score_kernels-inl.hpp"
}  // namespace simd_portable
#if PDROP_DETAIL_HAVE_AVX2
PDROP_DETAIL_AVX2_BEGIN
namespace simd_avx2 {
#include "pdrop/detail/score_kernels-inl.hpp"
}  // namespace simd_avx2
PDROP_DETAIL_AVX2_END
#endif

template <class Tq, class Tk>
using ScoreGroupKernel = ScoreFault (*)(const ScoreJob<Tq, Tk>&, std::int64_t, float*,
                                        float*, float*);

// The score_group of the target simd_target() names (pdrop/dispatch.hpp).
template <class Tq, class Tk>
ScoreGroupKernel<Tq, Tk> score_group_kernel() {
#if PDROP_DETAIL_HAVE_AVX2
  if (simd_target() == SimdTarget::avx2) return &simd_avx2::score_group<Tq, Tk>;
#else
  (void)simd_target();  // reports a bad PDROP_SIMD here too
#endif
  return &simd_portable::score_group<Tq, Tk>;
}

template <class Tq, class Tk>
[[noreturn]] void fail_non_finite_value(const char* fn, const ScoreJob<Tq, Tk>& job,
                                        std::int64_t g, ScoreFault f, float logit) {
  fail<value_error>(fn, "q or k holds a non-finite value: the logit of query head ",
                    g * job.group + f.row / job.q.tokens, ", query row ",
                    f.row % job.q.tokens, " and key ", f.key, " is ", logit);
}
template <class Tq, class Tk>
[[noreturn]] void fail_non_finite(const char* fn, const ScoreJob<Tq, Tk>& job,
                                  std::int64_t g, ScoreFault f, const float* logits) {
  fail_non_finite_value(fn, job, g, f, logits[f.row * job.keys + f.key]);
}

// Fills the job of inputs that validate_score_inputs accepted (n_image is
// what it returned). Also used by tensor_parallel.hpp's partial scores.
template <class Tq, class Tk>
ScoreJob<Tq, Tk> make_score_job(HeadView<const Tq> q, span<const std::int64_t> query_pos,
                                HeadView<const Tk> k, span<const ImageSpan> spans,
                                const ScoreOptions& options, std::int64_t n_image) {
  const std::int64_t group = q.heads / k.heads;
  return ScoreJob<Tq, Tk>{
      q, query_pos, k, spans, options.round_probs,
      options.softmax_scale > 0.0f ? options.softmax_scale
                                   : 1.0f / std::sqrt(static_cast<float>(q.dim)),
      group, group * q.tokens,
      *std::max_element(query_pos.begin(), query_pos.end()) + 1, n_image,
      options.precision,
      // torch: `/ math.sqrt(head_dim)`, the Python float as a float
      options.softmax_scale > 0.0f ? 0.0f
                                   : static_cast<float>(std::sqrt(static_cast<double>(q.dim)))};
}

// Validates, and fills the job.
template <class Tq, class Tk>
ScoreJob<Tq, Tk> score_job(const char* fn, HeadView<const Tq> q,
                           span<const std::int64_t> query_pos, HeadView<const Tk> k,
                           span<const ImageSpan> spans, span<float> scores,
                           const ScoreOptions& options) {
  const std::int64_t n_image = validate_score(fn, erase(q), sizeof(Tq), query_pos,
                                              erase(k), sizeof(Tk), spans, scores, options);
  return make_score_job(q, query_pos, k, spans, options, n_image);
}

// 64-byte aligned start of `floats` floats of workspace scratch.
inline float* aligned_scratch(Workspace& ws, std::int64_t floats) {
  float* p = ws.scratch(static_cast<std::size_t>(floats));
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  return p + ((64 - addr % 64) % 64) / sizeof(float);
}

// Group g's partial sums (n_image floats each) left in the workspace by
// score_group_slots: first + g * stride.
struct GroupSums {
  const float* first;
  std::int64_t stride;
  const float* group(std::int64_t g) const { return first + g * stride; }
};

// Scores every kv-head group of the job into its own workspace slot
// (Workspace::score_floats(..., groups), what reserve_parallel sizes), the
// groups spread over parallel_for. On a non-finite logit throws the first
// group's fault, groups in order, having written only the workspace.
template <class Tq, class Tk, class ParallelFor>
GroupSums score_group_slots(const char* fn, const ScoreJob<Tq, Tk>& job, Workspace& ws,
                            ParallelFor&& parallel_for) {
  const ScoreGroupKernel<Tq, Tk> score_group = score_group_kernel<Tq, Tk>();
  const std::int64_t rows = job.rows, d = job.q.dim, n = job.n_image;
  const std::int64_t groups = job.k.heads;
  const std::int64_t slot = Workspace::score_slot_floats(rows, job.keys, d, n);
  const std::int64_t logits_at = pad16(rows * d), part_at = logits_at + pad16(rows * job.keys);
  float* base = aligned_scratch(ws, Workspace::score_floats(rows, job.keys, d, n, groups));
  base += pad16(n);  // the single-threaded running sums, unused here
  std::int64_t* faults = ws.faults(static_cast<std::size_t>(2 * groups));
  parallel_for(groups, [&](std::int64_t g) noexcept {
    float* qf = base + g * slot;
    std::fill(qf + part_at, qf + part_at + n, 0.0f);
    const ScoreFault f = score_group(job, g, qf, qf + logits_at, qf + part_at);
    faults[2 * g] = f.row;
    faults[2 * g + 1] = f.key;
  });
  for (std::int64_t g = 0; g < groups; ++g)
    if (faults[2 * g] >= 0)
      fail_non_finite(fn, job, g, ScoreFault{faults[2 * g], faults[2 * g + 1]},
                      base + g * slot + logits_at);
  return GroupSums{base + part_at, slot};
}

// The same on the calling thread in one slot (Workspace::score_floats(...)
// without slots): each group's sums are added to the running sums as it
// finishes. Returns them: (0 + p_0) + p_1 + ... + p_{G-1}, n_image floats.
template <class Tq, class Tk>
const float* score_groups_summed(const char* fn, const ScoreJob<Tq, Tk>& job,
                                 Workspace& ws) {
  const ScoreGroupKernel<Tq, Tk> score_group = score_group_kernel<Tq, Tk>();
  const std::int64_t rows = job.rows, d = job.q.dim, n = job.n_image;
  float* acc = aligned_scratch(ws, Workspace::score_floats(rows, job.keys, d, n));
  float* qf = acc + pad16(n);
  float* logits = qf + pad16(rows * d);
  float* part = logits + pad16(rows * job.keys);
  std::fill(acc, acc + n, 0.0f);
  for (std::int64_t g = 0; g < job.k.heads; ++g) {
    std::fill(part, part + n, 0.0f);
    const ScoreFault f = score_group(job, g, qf, logits, part);
    if (f.row >= 0) fail_non_finite(fn, job, g, f, logits);
    for (std::int64_t i = 0; i < n; ++i) acc[i] += part[i];
  }
  return acc;
}

// out[i] = (0 + sums.group(0)[i] + ... + sums.group(groups - 1)[i]), times
// *maybe_factor unless it is null, for i in [0, n): score_groups_summed's
// additions in its order, so the same bits; chunks of tokens spread over
// parallel_for. out may be group 0's row (each i is read in full before it
// is written).
template <class ParallelFor>
void sum_groups(GroupSums sums, std::int64_t groups, std::int64_t n,
                const float* maybe_factor, float* out, ParallelFor&& parallel_for) {
  constexpr std::int64_t chunk = 1024;
  parallel_for((n + chunk - 1) / chunk, [&](std::int64_t c) noexcept {
    const std::int64_t lo = c * chunk, hi = std::min(n, lo + chunk);
    for (std::int64_t i = lo; i < hi; ++i) {
      float a = 0.0f;
      for (std::int64_t g = 0; g < groups; ++g) a += sums.group(g)[i];
      out[i] = maybe_factor != nullptr ? a * *maybe_factor : a;
    }
  });
}

// The scoring of a validated job (score_image_tokens without its checks,
// for callers that validated the same inputs already, such as
// rank_and_drop: spans and positions are then checked once per call, and
// a non-finite q/k is reported under the caller's name `fn`).
//
// A job in a chain mode (ScorePrecision) takes detail/score_chain.hpp's
// path, defined at the end of this header.
template <class Tq, class Tk>
void score_chain_run(const char* fn, const ScoreJob<Tq, Tk>& job, Workspace& ws,
                     span<float> scores);
template <class Tq, class Tk, class ParallelFor>
void score_chain_run(const char* fn, const ScoreJob<Tq, Tk>& job, Workspace& ws,
                     span<float> scores, ParallelFor&& parallel_for);

template <class Tq, class Tk>
void score_run(const char* fn, const ScoreJob<Tq, Tk>& job, Workspace& ws, span<float> scores) {
  if (job.precision != ScorePrecision::fp32) return score_chain_run(fn, job, ws, scores);
  const float* acc = score_groups_summed(fn, job, ws);
  const float inv = 1.0f / static_cast<float>(job.q.heads * job.q.tokens);
  for (std::int64_t i = 0; i < job.n_image; ++i) scores[i] = acc[i] * inv;
}
template <class Tq, class Tk, class ParallelFor>
void score_run(const char* fn, const ScoreJob<Tq, Tk>& job, Workspace& ws, span<float> scores,
               ParallelFor&& parallel_for) {
  if (job.precision != ScorePrecision::fp32)
    return score_chain_run(fn, job, ws, scores, parallel_for);
  const GroupSums sums = score_group_slots(fn, job, ws, parallel_for);
  const float inv = 1.0f / static_cast<float>(job.q.heads * job.q.tokens);
  sum_groups(sums, job.k.heads, job.n_image, &inv, scores.data, parallel_for);
}

}  // namespace detail

// Scores every image token of `spans` by the attention of the query rows.
//
//   q          Hq x nq x dim: post-RoPE query rows of the query tokens (any
//              strides; e.g. the last row of the next layer's q projection).
//   query_pos  nq: sequence position of each query row (its causal limit),
//              each in [0, k.tokens).
//   k          Hkv x T x dim: post-RoPE keys of the whole sequence, HND or
//              NHD; Hq must be a multiple of Hkv. Rows after the largest
//              query position are never read.
//   spans      sorted, disjoint image spans inside [0, T).
//   ws         scratch; Workspace::reserve makes this call
//              allocation-free.
//   scores     out, sum of span lengths: score of each image token, span
//              after span, in token order.
// Throws shape_error / value_error before writing anything on bad shapes,
// positions, spans or options (round_probs and a chain precision together),
// and value_error (scores untouched) when q or k holds a non-finite value
// that takes part, or, in a chain mode, a logit overflows fp16 / bf16.
//
// Kernel: per kv-head group, its query rows x K as a blocked GEMM that reads
// every K row once for all of them (fp16/bf16 converted in registers), then
// one softmax pass per row fused with the image-token sums (the GEMM is in
// detail/score_kernels-inl.hpp). Scratch: the group's query rows and one logits
// row per query row of the group.
template <class Tq, class Tk>
void score_image_tokens(HeadView<const Tq> q, span<const std::int64_t> query_pos,
                        HeadView<const Tk> k, span<const ImageSpan> spans,
                        Workspace& ws, span<float> scores,
                        const ScoreOptions& options = {}) {
  static_assert(is_float_type_v<Tq> && is_float_type_v<Tk>,
                "q and k must be float, pdrop::half or pdrop::bfloat16");
  constexpr const char* fn = "pdrop::score_image_tokens";
  detail::score_run(fn, detail::score_job(fn, q, query_pos, k, spans, scores, options), ws,
                    scores);
}

// The same, with the kv-head groups spread over threads by the caller's
// parallel_for: parallel_for(n, fn) must call fn(i) once for every i in
// [0, n), on any threads, and return when all calls have returned (e.g.
// pdrop::SerialFor, pdrop::OpenMPFor, or a runtime's thread pool). fn never
// throws. Each group works in its own slice of the workspace
// (Workspace::reserve_parallel makes the call allocation-free) and the
// groups are summed in a fixed order afterwards: the scores are
// bit-identical to the single-threaded overload, whatever the threads, and
// so is the error on a non-finite value (the first group's, in order).
template <class Tq, class Tk, class ParallelFor>
void score_image_tokens(HeadView<const Tq> q, span<const std::int64_t> query_pos,
                        HeadView<const Tk> k, span<const ImageSpan> spans,
                        Workspace& ws, span<float> scores, const ScoreOptions& options,
                        ParallelFor&& parallel_for) {
  static_assert(is_float_type_v<Tq> && is_float_type_v<Tk>,
                "q and k must be float, pdrop::half or pdrop::bfloat16");
  constexpr const char* fn = "pdrop::score_image_tokens";
  detail::score_run(fn, detail::score_job(fn, q, query_pos, k, spans, scores, options), ws,
                    scores, parallel_for);
}

PDROP_END_NAMESPACE

#include "pdrop/detail/score_chain.hpp"  // NOLINT: the chain path, after the above

#endif  // PDROP_SCORE_HPP
