// Shared helpers of pdrop's tests: random tensors, and naive references
// written plainly (double precision, no blocking, no cleverness) that the
// operators are checked against.
#ifndef PDROP_TESTS_TEST_UTIL_HPP
#define PDROP_TESTS_TEST_UTIL_HPP

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "pdrop/pdrop.hpp"

namespace pdrop_test {

// The names most tests use unqualified: `using namespace pdrop_test::names;`.
namespace names {
using pdrop::HeadView;
using pdrop::ImageSpan;
using pdrop::span;
using pdrop::TokenView;
using I64 = std::int64_t;
}  // namespace names

using FloatTypes = ::testing::Types<float, pdrop::half, pdrop::bfloat16>;

// Names typed tests readably: Score/float, Score/half, Score/bfloat16.
struct FloatTypeNames {
  template <class T>
  static std::string GetName(int) {
    if (std::is_same_v<T, float>) return "float";
    if (std::is_same_v<T, pdrop::half>) return "half";
    return "bfloat16";
  }
};

template <class T>
std::vector<T> random_vector(std::size_t n, std::mt19937& rng, float lo = -1.0f,
                             float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

template <class T>
double as_double(T x) {
  return static_cast<double>(static_cast<float>(x));
}

// A bitwise snapshot of a buffer, to prove a rejected call wrote nothing.
template <class T>
std::vector<unsigned char> bytes_of(const std::vector<T>& v) {
  std::vector<unsigned char> b(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// True when the n elements at a and b are equal byte for byte (NaN
// payloads and the sign of zero included).
template <class T>
bool same_bits(const T* a, const T* b, std::size_t n) {
  return n == 0 || std::memcmp(a, b, n * sizeof(T)) == 0;
}

// True when a and b have the same size and are equal byte for byte.
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && same_bits(a.data(), b.data(), a.size());
}

// Naive PyramidDrop score of every image token (spans laid out one after
// the other): for each query head h and query row i,
// softmax over keys 0..pos[i] of q.k * scale, in double; mean over heads and
// queries. q(h, i, :) and k(g, t, :) are read through plain index functions.
template <class Q, class K>
std::vector<double> naive_scores(std::int64_t hq, std::int64_t hkv, std::int64_t nq,
                                 std::int64_t d, const std::vector<std::int64_t>& pos,
                                 const std::vector<pdrop::ImageSpan>& spans, Q q_at,
                                 K k_at, double scale = 0.0) {
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(d));
  std::int64_t n = 0;
  for (auto& s : spans) n += s.length;
  std::vector<double> out(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t h = 0; h < hq; ++h) {
    const std::int64_t g = h / (hq / hkv);
    for (std::int64_t i = 0; i < nq; ++i) {
      std::vector<double> logit(static_cast<std::size_t>(pos[i] + 1));
      for (std::int64_t t = 0; t <= pos[i]; ++t) {
        double dot = 0;
        for (std::int64_t c = 0; c < d; ++c) dot += q_at(h, i, c) * k_at(g, t, c);
        logit[t] = dot * scale;
      }
      const double m = *std::max_element(logit.begin(), logit.end());
      double sum = 0;
      for (double& l : logit) sum += std::exp(l - m);
      std::int64_t off = 0;
      for (auto& s : spans) {
        for (std::int64_t t = s.start; t < s.end(); ++t)
          if (t <= pos[i]) out[off + t - s.start] += std::exp(logit[t] - m) / sum;
        off += s.length;
      }
    }
  }
  for (double& x : out) x /= static_cast<double>(hq * nq);
  return out;
}

// naive_scores of the rows behind two views: q (query heads x query rows)
// and k (kv heads x tokens).
template <class T, class U>
std::vector<double> naive_scores_of(const pdrop::HeadView<T>& q, const pdrop::HeadView<U>& k,
                                    const std::vector<std::int64_t>& pos,
                                    const std::vector<pdrop::ImageSpan>& spans,
                                    double scale = 0.0) {
  auto q_at = [&](std::int64_t h, std::int64_t i, std::int64_t c) {
    return as_double(q.row(h, i)[c]);
  };
  auto k_at = [&](std::int64_t g, std::int64_t t, std::int64_t c) {
    return as_double(k.row(g, t)[c]);
  };
  return naive_scores(q.heads, k.heads, q.tokens, q.dim, pos, spans, q_at, k_at, scale);
}

// heads x tokens rows of d elements, each row `row` >= d elements apart:
// head-major ([h][t][row], HND) or token-major ([t][h][row], NHD).
template <class T>
pdrop::HeadView<T> padded_view(T* data, std::int64_t heads, std::int64_t tokens, std::int64_t d,
                               std::int64_t row, bool token_major) {
  return token_major ? pdrop::HeadView<T>(data, heads, tokens, d, row, heads * row)
                     : pdrop::HeadView<T>(data, heads, tokens, d, tokens * row, row);
}

// A scoring problem's shape: query heads, kv heads, query rows, head dim,
// tokens; its image spans and query positions; and, where a test ranks, the
// keep count of each span.
struct ScoreCase {
  std::int64_t hq, hkv, nq, d, tokens;
  std::vector<pdrop::ImageSpan> spans;
  std::vector<std::int64_t> pos;
  std::vector<std::int64_t> counts = {};
  std::int64_t image_tokens() const {
    std::int64_t n = 0;
    for (const auto& s : spans) n += s.length;
    return n;
  }
};

// Random q (hq x nq rows) and k (hkv x tokens rows) for a case, uniform in
// [-2, 2), q drawn first, in rows of d + pad elements laid out head-major or
// token-major (padded_view); qv and kv view them (so it is not copyable).
template <class T>
struct ScoreProblem {
  ScoreCase c;
  std::vector<T> q, k;
  pdrop::HeadView<const T> qv, kv;
  ScoreProblem(ScoreCase cs, std::mt19937& rng, bool token_major = false, std::int64_t pad = 0)
      : c(std::move(cs)) {
    const std::int64_t row = c.d + pad;
    q = random_vector<T>(static_cast<std::size_t>(c.hq * c.nq * row), rng, -2, 2);
    k = random_vector<T>(static_cast<std::size_t>(c.hkv * c.tokens * row), rng, -2, 2);
    qv = padded_view<const T>(q.data(), c.hq, c.nq, c.d, row, token_major);
    kv = padded_view<const T>(k.data(), c.hkv, c.tokens, c.d, row, token_major);
  }
  ScoreProblem(const ScoreProblem&) = delete;  // a copy's views would see the original
  ScoreProblem& operator=(const ScoreProblem&) = delete;
  // The naive scores of q and k (scale 0: 1 / sqrt(d)).
  std::vector<double> reference(double scale = 0.0) const {
    return naive_scores_of(qv, kv, c.pos, c.spans, scale);
  }
};

// Naive top-k: sort every index by (score descending, index ascending), take
// k, sort ascending.
inline std::vector<std::int64_t> naive_top_k(const std::vector<float>& s, std::int64_t k) {
  std::vector<std::int64_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](std::int64_t a, std::int64_t b) { return s[a] > s[b]; });
  idx.resize(static_cast<std::size_t>(k));
  std::sort(idx.begin(), idx.end());
  return idx;
}

// The query positions inside `s`, as indices into it, ascending, once each:
// the tokens a drop keeps whatever their score (rank_drop.hpp).
inline std::vector<std::int64_t> forced_in(const std::vector<std::int64_t>& query_pos,
                                           pdrop::ImageSpan s) {
  std::set<std::int64_t> f;
  for (std::int64_t q : query_pos)
    if (q >= s.start && q < s.end()) f.insert(q - s.start);
  return {f.begin(), f.end()};
}

// naive_top_k with forced indices: the forced ones, plus the best
// max(k - forced, 0) of the others (ties to the lower index), ascending.
inline std::vector<std::int64_t> naive_top_k(const std::vector<float>& s, std::int64_t k,
                                             const std::vector<std::int64_t>& forced) {
  std::vector<float> others;
  std::vector<std::int64_t> index;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (std::find(forced.begin(), forced.end(), static_cast<std::int64_t>(i)) == forced.end()) {
      others.push_back(s[i]);
      index.push_back(static_cast<std::int64_t>(i));
    }
  const std::int64_t pick = std::max<std::int64_t>(k - static_cast<std::int64_t>(forced.size()), 0);
  std::vector<std::int64_t> out = forced;
  for (std::int64_t i : naive_top_k(others, pick)) out.push_back(index[static_cast<std::size_t>(i)]);
  std::sort(out.begin(), out.end());
  return out;
}

// Naive keep list: every token not in a span, plus the kept ones.
inline std::vector<std::int64_t> naive_keep_list(std::int64_t tokens,
                                                 const std::vector<pdrop::ImageSpan>& spans,
                                                 const std::vector<std::int64_t>& kept) {
  std::set<std::int64_t> kept_set(kept.begin(), kept.end());
  std::vector<std::int64_t> out;
  for (std::int64_t t = 0; t < tokens; ++t) {
    bool image = false;
    for (auto& s : spans) image |= (t >= s.start && t < s.end());
    if (!image || kept_set.count(t)) out.push_back(t);
  }
  return out;
}

// A per-head buffer layout with its element offsets written out by hand:
// HND, HND with spare capacity rows, NHD, NHD with padded rows, and the k
// slice of fused q|k|v rows.
enum class HeadKind { hnd, hnd_cap, nhd, nhd_pad, fused };
struct HeadLayout {
  HeadKind kind;
  std::int64_t heads, tokens, dim;
  std::int64_t cap() const { return kind == HeadKind::hnd_cap ? tokens + 2 : tokens; }
  std::int64_t rs() const { return 3 * heads * dim + 1; }  // fused q|k|v|1 pad
  std::int64_t ts() const { return heads * (dim + 1) + 2; }  // padded NHD row
  std::int64_t size() const {
    return kind == HeadKind::fused ? tokens * rs()
         : kind == HeadKind::nhd_pad ? tokens * ts() : heads * cap() * dim;
  }
  std::int64_t off(std::int64_t h, std::int64_t t, std::int64_t c) const {
    switch (kind) {
      case HeadKind::hnd:
      case HeadKind::hnd_cap: return (h * cap() + t) * dim + c;
      case HeadKind::nhd: return (t * heads + h) * dim + c;
      case HeadKind::nhd_pad: return t * ts() + h * (dim + 1) + c;
      default: return heads * dim + t * rs() + h * dim + c;  // the k slice
    }
  }
  template <class T>
  pdrop::HeadView<T> view(T* p) const {
    switch (kind) {
      case HeadKind::hnd: return pdrop::hnd_view(p, heads, tokens, dim);
      case HeadKind::hnd_cap: return pdrop::hnd_view(p, heads, tokens, dim, cap());
      case HeadKind::nhd: return pdrop::nhd_view(p, tokens, heads, dim);
      case HeadKind::nhd_pad: return pdrop::HeadView<T>(p, heads, tokens, dim, dim + 1, ts());
      default: {  // the k slice of fused rows, split into heads
        const pdrop::TokenView<T> k_rows(p + heads * dim, tokens, heads * dim, rs());
        return pdrop::split_heads(k_rows, heads);
      }
    }
  }
};

// A small std::thread parallel_for: fn(i) for i in [0, n), strided over
// `threads` threads (the calling thread one of them).
struct ThreadFor {
  int threads = 2;
  template <class F>
  void operator()(std::int64_t n, F&& fn) const {
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t)
      pool.emplace_back([&fn, n, t, this] {
        for (std::int64_t i = t; i < n; i += threads) fn(i);
      });
    for (std::int64_t i = 0; i < n; i += threads) fn(i);
    for (auto& th : pool) th.join();
  }
};

// A pdrop list (detail::vector: pdrop's allocator) as a std::vector, to
// compare with an expected one.
template <class V>
std::vector<typename V::value_type> std_vector(const V& v) {
  return std::vector<typename V::value_type>(v.begin(), v.end());
}

// Asserts that `f` throws an exception derived from std::invalid_argument
// whose message contains `needle`.
template <class F>
void expect_invalid(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning '" << needle << "'";
  } catch (const pdrop::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

}  // namespace pdrop_test

#endif  // PDROP_TESTS_TEST_UTIL_HPP
