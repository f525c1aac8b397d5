// pdrop/detail/logits_gemm.hpp - the inner loop of the scoring kernel
// (pdrop/score.hpp): the logits of a kv-head group's query rows against K,
// as a blocked GEMM that reads every K row once for all of the rows.
#ifndef PDROP_DETAIL_LOGITS_GEMM_HPP
#define PDROP_DETAIL_LOGITS_GEMM_HPP

#include <algorithm>
#include <cstdint>

#include "pdrop/detail/simd.hpp"

namespace pdrop {
namespace detail {

// ---- logits: a blocked GEMM of a kv-head group's query rows against K ----
//
// out[qi * ld + ri] = scale * (q_qi . k_ri) for NR consecutive K rows and NQ
// query rows (float, dim contiguous, rows `dim` apart), NR * NQ <= 8. Each
// 8-wide chunk of a K row is loaded (and converted from fp16/bf16) once into
// a register and multiplied into all NQ accumulators. Lane j of an
// accumulator sums the dimensions j, j+8, ...; the eight lanes of up to
// eight accumulators reduce together by one fixed tree (f8_sum8), then the
// last dim % 8 dimensions add in order: a logit does not depend on the tile
// it was computed in.
template <int NR, int NQ, class Tk>
inline void logit_tile(const Tk* k, std::int64_t k_stride, const float* q,
                       std::int64_t dim, float scale, float* out, std::int64_t ld) {
  static_assert(NR * NQ <= 8, "at most 8 accumulators");
  f8 acc[8];
  unroll<8>([&](auto a) { acc[a] = f8_zero(); });
  const std::int64_t d8 = dim - dim % 8;
  for (std::int64_t c = 0; c < d8; c += 8) {
    f8 kv[NR];
    unroll<NR>([&](auto ri) { kv[ri] = f8_load(k + ri * k_stride + c); });
    unroll<NQ>([&](auto qi) {
      const f8 qv = f8_load(q + qi * dim + c);
      unroll<NR>([&](auto ri) { acc[ri * NQ + qi] = f8_fma(kv[ri], qv, acc[ri * NQ + qi]); });
    });
  }
  alignas(32) float sums[8];
  f8_store(sums, f8_sum8(acc));
  for (int ri = 0; ri < NR; ++ri)
    for (int qi = 0; qi < NQ; ++qi) {
      float s = sums[ri * NQ + qi];
      for (std::int64_t c = d8; c < dim; ++c)
        s += q[qi * dim + c] * to_float(k + ri * k_stride + c);
      out[qi * ld + ri] = s * scale;
    }
}

// Accumulators of a tile. Eight: enough independent FMA chains, and (for a
// single query row) eight K rows in flight, which the memory system needs
// to stream at full speed (measured: the portable form spills a little
// with 16 SSE registers and is still faster than with four).
inline constexpr int kTileAccs = 8;

// Query rows per tile next to NR K rows.
template <int NR>
inline constexpr int kTileQ = kTileAccs / NR;

// nq (1 .. kTileQ<NR>) query rows known at run time.
template <int NR, class Tk>
inline void logit_tile_q(std::int64_t nq, const Tk* k, std::int64_t k_stride,
                         const float* q, std::int64_t dim, float scale, float* out,
                         std::int64_t ld) {
  constexpr int QB = kTileQ<NR>;
  if constexpr (QB >= 8)
    if (nq >= 8) return logit_tile<NR, 8>(k, k_stride, q, dim, scale, out, ld);
  if constexpr (QB >= 7)
    if (nq == 7) return logit_tile<NR, 7>(k, k_stride, q, dim, scale, out, ld);
  if constexpr (QB >= 6)
    if (nq == 6) return logit_tile<NR, 6>(k, k_stride, q, dim, scale, out, ld);
  if constexpr (QB >= 5)
    if (nq == 5) return logit_tile<NR, 5>(k, k_stride, q, dim, scale, out, ld);
  if constexpr (QB >= 4)
    if (nq >= 4) return logit_tile<NR, 4>(k, k_stride, q, dim, scale, out, ld);
  if constexpr (QB >= 3)
    if (nq == 3) return logit_tile<NR, 3>(k, k_stride, q, dim, scale, out, ld);
  if constexpr (QB >= 2)
    if (nq == 2) return logit_tile<NR, 2>(k, k_stride, q, dim, scale, out, ld);
  logit_tile<NR, 1>(k, k_stride, q, dim, scale, out, ld);
}

// logits[r * ld + t] = scale * (qf_r . k_t) for r < rows, t < keys. One pass
// over K: a tile of NR rows is read from memory once and used, from L1, by
// every block of query rows.
template <int NR, class Tk>
inline void group_logits_nr(const float* qf, std::int64_t rows, std::int64_t dim,
                            const Tk* k, std::int64_t k_stride, std::int64_t keys,
                            float scale, float* logits, std::int64_t ld) {
  constexpr int QB = kTileQ<NR>;
  std::int64_t t = 0;
  for (; t + NR <= keys; t += NR)
    for (std::int64_t r = 0; r < rows; r += QB)
      logit_tile_q<NR>(std::min<std::int64_t>(QB, rows - r), k + t * k_stride, k_stride,
                       qf + r * dim, dim, scale, logits + r * ld + t, ld);
  for (; t < keys; ++t)
    for (std::int64_t r = 0; r < rows; r += QB)
      logit_tile_q<1>(std::min<std::int64_t>(QB, rows - r), k + t * k_stride, k_stride,
                      qf + r * dim, dim, scale, logits + r * ld + t, ld);
}

template <class Tk>
inline void group_logits(const float* qf, std::int64_t rows, std::int64_t dim,
                         const Tk* k, std::int64_t k_stride, std::int64_t keys,
                         float scale, float* logits, std::int64_t ld) {
  // Eight accumulators in flight: 8 K rows x 1 query row, 4 x 2, 2 x 3..4,
  // or 1 K row x blocks of up to 8 query rows.
  if (rows == 1)
    group_logits_nr<8>(qf, rows, dim, k, k_stride, keys, scale, logits, ld);
  else if (rows == 2)
    group_logits_nr<4>(qf, rows, dim, k, k_stride, keys, scale, logits, ld);
  else if (rows <= 4)
    group_logits_nr<2>(qf, rows, dim, k, k_stride, keys, scale, logits, ld);
  else
    group_logits_nr<1>(qf, rows, dim, k, k_stride, keys, scale, logits, ld);
}

}  // namespace detail
}  // namespace pdrop

#endif  // PDROP_DETAIL_LOGITS_GEMM_HPP
