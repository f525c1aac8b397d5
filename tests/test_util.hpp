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
#include <vector>

#include "pdrop/pdrop.hpp"

namespace pdrop_test {

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
