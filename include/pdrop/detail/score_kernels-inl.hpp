// pdrop/detail/score_kernels-inl.hpp - the scoring kernel, written once on
// f8 and compiled once per SIMD target: pdrop/score.hpp includes this file
// inside namespace detail::simd_portable and again inside
// detail::simd_avx2 (under PDROP_DETAIL_AVX2_BEGIN), where `f8` and its
// operations (pdrop/detail/simd.hpp) are that target's. Deliberately
// without an include guard, and not a header to include on its own (as
// Highway's -inl.h files, re-included per target by foreach_target.h).
//
// Needs, from the enclosing pdrop::detail: ScoreJob, ScoreFault,
// round_prob, row_to_float, to_float, exp_nonpositive (score.hpp,
// detail/simd.hpp), and <algorithm>, <cmath>, <cstdint>, <cstring>,
// <limits>, <utility>.

// Calls f(std::integral_constant<int, i>) for i = 0 .. N-1, unrolled at
// compile time (tiles index their accumulator arrays with constants, so the
// accumulators live in registers at any optimisation level that inlines).
template <class F, int... I>
inline void unroll_impl(F& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <int N, class F>
inline void unroll(F&& f) {
  unroll_impl(f, std::make_integer_sequence<int, N>{});
}


// Rearranges the first dim - dim % 8 floats of a row, chunk by chunk, into
// the lane order of an f8 loaded from a row of T (a no-op unless T's lanes
// interleave: this target's kLanesInterleaved), so that f8_load(row) pairs
// lane for lane with f8_load(T*).
template <class T>
inline void f8_interleave_like(float* row, std::int64_t dim) {
  if constexpr (kLanesInterleaved<T>) {
    for (std::int64_t c = 0; c + 8 <= dim; c += 8) {
      float* x = row + c;
      const float v[8] = {x[0], x[2], x[4], x[6], x[1], x[3], x[5], x[7]};
      std::memcpy(x, v, sizeof v);
    }
  } else {
    (void)row;
    (void)dim;
  }
}

// ---- logits: a blocked GEMM of a kv-head group's query rows against K ----
//
// out[qi * ld + ri] = scale * (q_qi . k_ri) for NR consecutive K rows and NQ
// query rows (float, dim contiguous, rows `dim` apart), NR * NQ <= kMaxAccs
// (this target's register budget, detail/simd.hpp). Each 8-wide chunk of a
// K row is loaded (and converted from fp16/bf16) once into a register and
// multiplied into its NQ accumulators. Lane j of an accumulator sums the
// dimensions j, j+8, ... in order; eight accumulators at a time reduce by
// one fixed tree (f8_sum8), then the last dim % 8 dimensions add in order:
// a logit does not depend on the tile it was computed in.
//
// Loop order. With one query row (NQ = 1: MHA, one query token) the tile is
// memory-bound and reads its K rows one after the other, each from start to
// end: a strictly ascending address stream, which the hardware prefetchers
// follow at full speed (interleaving the rows chunk by chunk, the order
// before, measured 0.4-0.5 of a streaming read on a 2-core EPYC VM; row by
// row 0.9-1.0). The NR independent accumulator chains still overlap in the
// out-of-order core. With several query rows (GQA groups) the tile is
// compute-bound and walks the chunks outermost, so a query chunk is loaded
// once for all NR K rows.
template <int NR, int NQ, class Tk>
inline void logit_tile(const Tk* k, std::int64_t k_stride, const float* q,
                       std::int64_t dim, float scale, float* out, std::int64_t ld) {
  constexpr int NA = NR * NQ;
  static_assert(NA <= kMaxAccs, "more accumulators than this target's registers");
  constexpr int NA8 = (NA + 7) / 8 * 8;
  f8 acc[NA8];
  unroll<NA8>([&](auto a) { acc[a] = f8_zero(); });
  const std::int64_t d8 = dim - dim % 8;
  if constexpr (NQ == 1) {
    unroll<NR>([&](auto ri) {
      const Tk* row = k + ri * k_stride;
      for (std::int64_t c = 0; c < d8; c += 8)
        acc[ri] = f8_fma(f8_load(row + c), f8_load(q + c), acc[ri]);
    });
  } else {
    for (std::int64_t c = 0; c < d8; c += 8) {
      f8 kv[NR];
      unroll<NR>([&](auto ri) { kv[ri] = f8_load(k + ri * k_stride + c); });
      unroll<NQ>([&](auto qi) {
        f8 qv = f8_load(q + qi * dim + c);
        f8_pin(qv);
        unroll<NR>([&](auto ri) { acc[ri * NQ + qi] = f8_fma(kv[ri], qv, acc[ri * NQ + qi]); });
      });
    }
  }
  alignas(32) float sums[NA8];
  unroll<NA8 / 8>([&](auto b) { f8_store(sums + 8 * b, f8_sum8(acc + 8 * b)); });
  if (d8 == dim) {
    unroll<NA>([&](auto a) { out[(a % NQ) * ld + a / NQ] = sums[a] * scale; });
    return;
  }
  for (int ri = 0; ri < NR; ++ri)
    for (int qi = 0; qi < NQ; ++qi) {
      float s = sums[ri * NQ + qi];
      for (std::int64_t c = d8; c < dim; ++c)
        s += q[qi * dim + c] * to_float(k + ri * k_stride + c);
      out[qi * ld + ri] = s * scale;
    }
}

// logits[t] = scale * (qf . k_t) for one query row (MHA) and t < keys:
// tiles of eight K rows, each streamed from start to end.
template <class Tk>
inline void row_logits(const float* qf, std::int64_t dim, const Tk* k, std::int64_t k_stride,
                       std::int64_t keys, float scale, float* logits) {
  std::int64_t t = 0;
  for (; t + 8 <= keys; t += 8)
    logit_tile<8, 1>(k + t * k_stride, k_stride, qf, dim, scale, logits + t, 1);
  for (; t < keys; ++t)
    logit_tile<1, 1>(k + t * k_stride, k_stride, qf, dim, scale, logits + t, 1);
}

// Calls f(std::integral_constant<int, n>) for n (1 .. kQueryBlock) known at
// run time: the tiles index their accumulators with a constant count.
template <class F, int... I>
inline void with_query_rows_impl(std::int64_t n, F& f, std::integer_sequence<int, I...>) {
  (void)((n == I + 1 ? (f(std::integral_constant<int, I + 1>{}), true) : false) || ...);
}
template <class F>
inline void with_query_rows(std::int64_t n, F&& f) {
  with_query_rows_impl(n, f, std::make_integer_sequence<int, kQueryBlock>{});
}

// logits[r * ld + t] = scale * (qf_r . k_t) for r < rows, t < keys, in one
// pass over K. One row: row_logits. Several (a GQA group, or several query
// tokens): the rows split into nb = ceil(rows / kQueryBlock) blocks of
// QB = ceil(rows / nb) or QB - 1 rows (7 -> 4 + 3 on 16 registers), and
// every tile of R = kGroupTileRows<QB> K rows, read from memory once, is
// multiplied from L1 by each block in turn.
template <class Tk>
inline void group_logits(const float* qf, std::int64_t rows, std::int64_t dim,
                         const Tk* k, std::int64_t k_stride, std::int64_t keys,
                         float scale, float* logits, std::int64_t ld) {
  if (rows == 1) return row_logits(qf, dim, k, k_stride, keys, scale, logits);
  const std::int64_t nb = (rows + kQueryBlock - 1) / kQueryBlock;
  with_query_rows((rows + nb - 1) / nb, [&](auto qb) {
    constexpr int QB = decltype(qb)::value;
    constexpr int QS = QB > 1 ? QB - 1 : 1;
    const std::int64_t big = rows - nb * (QB - 1);  // blocks of QB rows (1..nb); the rest QB - 1
    const auto blocks = [&](auto nr, std::int64_t t) {
      constexpr int NR = decltype(nr)::value;
      const Tk* kt = k + t * k_stride;
      std::int64_t r = 0;
      for (std::int64_t b = 0; b < nb; ++b) {
        float* out = logits + r * ld + t;
        if (b < big) {
          logit_tile<NR, QB>(kt, k_stride, qf + r * dim, dim, scale, out, ld);
          r += QB;
        } else {
          logit_tile<NR, QS>(kt, k_stride, qf + r * dim, dim, scale, out, ld);
          r += QS;
        }
      }
    };
    constexpr int R = kGroupTileRows<QB>;
    std::int64_t t = 0;
    for (; t + R <= keys; t += R) blocks(std::integral_constant<int, R>{}, t);
    for (; t < keys; ++t) blocks(std::integral_constant<int, 1>{}, t);
  });
}

// ---- softmax of one logits row, fused with the image-token accumulation ----
//
// Softmax over l[0..n) (l is overwritten with e^(l - max)); the probability
// of every image token below n is added into acc (spans laid out one after
// the other). Returns the first key whose logit is not finite (l untouched
// then), or -1.
inline std::int64_t softmax_add(float* l, std::int64_t n, span<const ImageSpan> spans,
                                ProbRounding rounding, float* acc) {
  const std::int64_t n8 = n - n % 8;
  f8 mv = f8_set1(-std::numeric_limits<float>::infinity());
  f8 zv = f8_zero();  // x * 0: 0 for finite x, NaN for Inf / NaN
  const f8 zero = f8_zero();
  for (std::int64_t t = 0; t < n8; t += 8) {
    const f8 x = f8_load(l + t);
    mv = f8_max(x, mv);
    zv = f8_fma(x, zero, zv);
  }
  float m = f8_max_lane(mv), z = f8_sum(zv);
  for (std::int64_t t = n8; t < n; ++t) {
    m = l[t] > m ? l[t] : m;
    z += l[t] * 0.0f;
  }
  if (!(z == 0.0f && m > -std::numeric_limits<float>::infinity())) {
    for (std::int64_t t = 0; t < n; ++t)
      if (!std::isfinite(l[t])) return t;
  }
  const f8 mb = f8_set1(m);
  f8 sv = f8_zero();
  for (std::int64_t t = 0; t < n8; t += 8) {
    const f8 e = f8_exp_nonpositive(f8_sub(f8_load(l + t), mb));
    f8_store(l + t, e);
    sv = f8_add(sv, e);
  }
  float sum = f8_sum(sv);
  for (std::int64_t t = n8; t < n; ++t) {
    l[t] = exp_nonpositive(l[t] - m);
    sum += l[t];
  }
  const float inv = 1.0f / sum;
  std::int64_t offset = 0;
  for (const ImageSpan& s : spans) {
    const std::int64_t stop = std::min(s.end(), n);
    const float* e = l + s.start;
    float* a = acc + offset;
    const std::int64_t len = stop - s.start;
    if (rounding == ProbRounding::none) {
      const f8 iv = f8_set1(inv);
      std::int64_t i = 0;
      for (; i + 8 <= len; i += 8) f8_store(a + i, f8_fma(f8_load(e + i), iv, f8_load(a + i)));
      for (; i < len; ++i) a[i] += e[i] * inv;
    } else {
      for (std::int64_t i = 0; i < len; ++i) a[i] += round_prob(e[i] * inv, rounding);
    }
    offset += s.length;
  }
  return -1;
}

// One kv-head group g: its query rows as float into qf (rows x dim), their
// logits into `logits` (rows x keys), then each row's probabilities of the
// image tokens added into acc, rows in order.
template <class Tq, class Tk>
inline ScoreFault score_group(const ScoreJob<Tq, Tk>& job, std::int64_t g, float* qf,
                       float* logits, float* acc) {
  const std::int64_t d = job.q.dim, nq = job.q.tokens;
  for (std::int64_t r = 0; r < job.rows; ++r) {
    row_to_float(job.q.row(g * job.group + r / nq, r % nq), d, qf + r * d);
    f8_interleave_like<Tk>(qf + r * d, d);
  }
  group_logits(qf, job.rows, d, job.k.row(g, 0), job.k.token_stride, job.keys,
               job.scale, logits, job.keys);
  for (std::int64_t r = 0; r < job.rows; ++r) {
    const std::int64_t bad = softmax_add(logits + r * job.keys, job.query_pos[r % nq] + 1,
                                         job.spans, job.rounding, acc);
    if (bad >= 0) return ScoreFault{r, bad};
  }
  return ScoreFault{};
}

