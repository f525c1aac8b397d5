// Plain baselines the benchmarks pair pdrop's kernels with. Each computes
// the same result as the pdrop operator it stands next to, written the
// straightforward way.
#ifndef PDROP_BENCH_BASELINES_HPP
#define PDROP_BENCH_BASELINES_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <vector>

#include "pdrop/pdrop.hpp"

namespace pdrop_bench {

// Scoring as pdrop did it before its kernels were tuned (and as a first
// port of the reference would): per kv-head group, each K row converted to
// float, one Eigen dot per query row, all logits of the group kept, then a
// scalar softmax (std::exp) per row. Same result up to float rounding.
template <class Tq, class Tk>
void score_plain(pdrop::HeadView<const Tq> q, pdrop::span<const std::int64_t> query_pos,
                 pdrop::HeadView<const Tk> k, pdrop::span<const pdrop::ImageSpan> spans,
                 std::vector<float>& scratch, pdrop::span<float> scores) {
  const std::int64_t hq = q.heads, hkv = k.heads, nq = q.tokens, d = q.dim;
  const std::int64_t group = hq / hkv, rows = group * nq;
  const std::int64_t keys = *std::max_element(query_pos.begin(), query_pos.end()) + 1;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::int64_t n_image = 0;
  for (const auto& s : spans) n_image += s.length;
  scratch.resize(static_cast<std::size_t>(rows * d + rows * keys + d + n_image));
  float* qf = scratch.data();
  float* logits = qf + rows * d;
  float* kbuf = logits + rows * keys;
  float* acc = kbuf + d;
  std::fill(acc, acc + n_image, 0.0f);
  using Vec = Eigen::Map<const Eigen::VectorXf>;
  for (std::int64_t g = 0; g < hkv; ++g) {
    for (std::int64_t r = 0; r < rows; ++r) {
      const Tq* src = q.row(g * group + r / nq, r % nq);
      for (std::int64_t i = 0; i < d; ++i) qf[r * d + i] = static_cast<float>(src[i]);
    }
    for (std::int64_t t = 0; t < keys; ++t) {
      const Tk* src = k.row(g, t);
      for (std::int64_t i = 0; i < d; ++i) kbuf[i] = static_cast<float>(src[i]);
      const Vec kt(kbuf, d);
      for (std::int64_t r = 0; r < rows; ++r)
        if (t <= query_pos[r % nq]) logits[r * keys + t] = Vec(qf + r * d, d).dot(kt) * scale;
    }
    for (std::int64_t r = 0; r < rows; ++r) {
      float* l = logits + r * keys;
      const std::int64_t n = query_pos[r % nq] + 1;
      const float m = *std::max_element(l, l + n);
      float sum = 0.0f;
      for (std::int64_t t = 0; t < n; ++t) sum += (l[t] = std::exp(l[t] - m));
      std::int64_t off = 0;
      for (const auto& s : spans) {
        for (std::int64_t t = s.start; t < std::min(s.end(), n); ++t)
          acc[off + t - s.start] += l[t] / sum;
        off += s.length;
      }
    }
  }
  for (std::int64_t i = 0; i < n_image; ++i)
    scores[i] = acc[i] / static_cast<float>(hq * nq);
}

// Ranking order of select_top_k: score descending, then index ascending.
struct ByScore {
  const float* s;
  bool operator()(std::int64_t a, std::int64_t b) const {
    return s[a] > s[b] || (s[a] == s[b] && a < b);
  }
};

// Top-k by a full std::sort of the indices, then the k sorted ascending.
inline void select_std_sort(const std::vector<float>& s, std::int64_t k,
                            std::vector<std::int64_t>& idx, std::int64_t* kept) {
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), ByScore{s.data()});
  std::sort(idx.begin(), idx.begin() + k);
  std::copy(idx.begin(), idx.begin() + k, kept);
}

// Top-k by std::partial_sort, then the k sorted ascending.
inline void select_std_partial_sort(const std::vector<float>& s, std::int64_t k,
                                    std::vector<std::int64_t>& idx, std::int64_t* kept) {
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), ByScore{s.data()});
  std::sort(idx.begin(), idx.begin() + k);
  std::copy(idx.begin(), idx.begin() + k, kept);
}

// pdrop's previous selection: packed 64-bit keys, std::nth_element, one scan.
inline std::uint64_t rank_key(float score, std::int64_t index) {
  const float canonical = score + 0.0f;
  std::uint32_t bits = 0;
  std::memcpy(&bits, &canonical, sizeof bits);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (std::uint64_t{bits} << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(index));
}
inline void select_nth_element(const std::vector<float>& s, std::int64_t k,
                               std::vector<std::uint64_t>& keys, std::int64_t* kept) {
  const std::int64_t n = static_cast<std::int64_t>(s.size());
  for (std::int64_t i = 0; i < n; ++i) keys[i] = rank_key(s[i], i);
  std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end(),
                   std::greater<std::uint64_t>());
  const std::uint64_t threshold = keys[k - 1];
  std::int64_t out = 0;
  for (std::int64_t i = 0; i < n; ++i)
    if (rank_key(s[i], i) >= threshold) kept[out++] = i;
}

// Compaction as a gather into a new buffer, one row at a time (what
// index_select / fancy indexing does).
template <class T>
void gather_rows(const T* src, std::int64_t width, const std::vector<std::int64_t>& keep,
                 T* dst) {
  for (std::size_t i = 0; i < keep.size(); ++i)
    std::copy_n(src + keep[i] * width, width, dst + static_cast<std::int64_t>(i) * width);
}

}  // namespace pdrop_bench

#endif  // PDROP_BENCH_BASELINES_HPP
