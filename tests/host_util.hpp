// Shared helpers of the reference host's tests (host_test.cpp for plain
// RoPE, mrope_test.cpp for M-RoPE): the naive layer those tests re-run stage
// by stage against examples/host/llama.hpp, written plainly (one token at a
// time, angles computed where used, attention softmax in double, no
// tables, no blocking), and the checks of the host against that re-run.
#ifndef PDROP_TESTS_HOST_UTIL_HPP
#define PDROP_TESTS_HOST_UTIL_HPP

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "host/llama.hpp"

namespace pdrop_host_test {

using pdrop_host::Config;
using pdrop_host::Mat;
using pdrop_host::Vec;
using pdrop_host::Weights;
using I64 = std::int64_t;
using Pos3 = std::array<I64, 3>;      // (temporal, height, width)
using Sections = std::array<I64, 3>;  // rotary pairs driven by each axis

// Plain RoPE in the terms of naive_rope below: every pair on axis 0. With
// it and positions (p, p, p), naive_rope is rotate_half RoPE at p.
inline Sections plain_rope(I64 d) { return {d / 2, 0, 0}; }

// Positions 0..n-1 as plain RoPE positions (p, p, p).
inline std::vector<Pos3> plain_positions(I64 n) {
  std::vector<Pos3> pos;
  for (I64 p = 0; p < n; ++p) pos.push_back({p, p, p});
  return pos;
}

// Plain (M-)RoPE of one head slice of dim d at position p, float32 as HF:
// pair i, (x[i], x[i + d/2]), turns by p[axis] * theta^(-2i/d), axis 0 for
// the first sec[0] pairs, 1 for the next sec[1], 2 for the rest.
inline void naive_rope(float* x, I64 d, const Pos3& p, float theta, const Sections& sec) {
  for (I64 i = 0; i < d / 2; ++i) {
    const int axis = i < sec[0] ? 0 : i < sec[0] + sec[1] ? 1 : 2;
    const float inv = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(d));
    const float a = static_cast<float>(p[axis]) * inv;
    const float x0 = x[i], x1 = x[i + d / 2];
    x[i] = x0 * std::cos(a) - x1 * std::sin(a);
    x[i + d / 2] = x1 * std::cos(a) + x0 * std::sin(a);
  }
}

inline Vec naive_norm(const Vec& x, const Vec& w, float eps) {
  const float ms = x.squaredNorm() / static_cast<float>(x.size());
  return (x.array() / std::sqrt(ms + eps) * w.array()).matrix();
}

// One layer's KV cache of the re-run: post-RoPE keys and values, a row
// per token.
struct Cache { std::vector<Vec> k, v; };

// q and k (and v, if asked) of token row x at position p, RoPE'd.
inline void naive_qkv(const Config& c, const pdrop_host::Layer& L, const Vec& x, const Pos3& p,
                      const Sections& sec, Vec& q, Vec& k, Vec* v = nullptr) {
  const I64 d = c.head_dim();
  const Vec h = naive_norm(x, L.attn_norm, c.rms_eps);
  q = L.wq * h;
  k = L.wk * h;
  if (v) *v = L.wv * h;
  if (L.bq.size()) q += L.bq;
  if (L.bk.size()) k += L.bk;
  if (v && L.bv.size()) *v += L.bv;
  for (I64 hh = 0; hh < c.heads; ++hh) naive_rope(q.data() + hh * d, d, p, c.rope_theta, sec);
  for (I64 g = 0; g < c.kv_heads; ++g) naive_rope(k.data() + g * d, d, p, c.rope_theta, sec);
}

// One layer over the token rows `x` (each a D-vector) at `pos`, causal;
// appends the post-RoPE keys/values of these tokens to `cache` and attends
// over the whole cache (earlier rows first).
inline void naive_layer(const Config& c, const pdrop_host::Layer& L, std::vector<Vec>& x,
                        const std::vector<Pos3>& pos, const Sections& sec, Cache& cache) {
  const I64 d = c.head_dim(), group = c.heads / c.kv_heads;
  const std::size_t base = cache.k.size();
  std::vector<Vec> qs;
  for (std::size_t t = 0; t < x.size(); ++t) {
    Vec q, k, v;
    naive_qkv(c, L, x[t], pos[t], sec, q, k, &v);
    qs.push_back(q);
    cache.k.push_back(k);
    cache.v.push_back(v);
  }
  for (std::size_t t = 0; t < x.size(); ++t) {
    Vec attn = Vec::Zero(c.heads * d);
    const std::size_t visible = base + t + 1;
    for (I64 hh = 0; hh < c.heads; ++hh) {
      const I64 g = hh / group;
      std::vector<double> w(visible);
      double m = -1e300, sum = 0;
      for (std::size_t j = 0; j < visible; ++j) {
        w[j] = qs[t].segment(hh * d, d).dot(cache.k[j].segment(g * d, d)) / std::sqrt(double(d));
        m = std::max(m, w[j]);
      }
      for (double& e : w) sum += (e = std::exp(e - m));
      for (std::size_t j = 0; j < visible; ++j)
        attn.segment(hh * d, d) += static_cast<float>(w[j] / sum) * cache.v[j].segment(g * d, d);
    }
    x[t] += L.wo * attn;
    const Vec h = naive_norm(x[t], L.ffn_norm, c.rms_eps);
    const Vec gate = L.w_gate * h, up = L.w_up * h;
    const Vec act = (gate.array() / (1.0f + (-gate.array()).exp()) * up.array()).matrix();
    x[t] += L.w_down * act;
  }
}

// One decode step of the re-run: the token row `embed` through every layer
// at position (p, p, p), p = pos_of_layer(l), over the re-run caches (each
// grows by one row); returns its final-norm row.
template <class PosOfLayer>
Vec naive_decode(const Weights& w, const Vec& embed, const Sections& sec, std::vector<Cache>& caches,
                 PosOfLayer pos_of_layer) {
  std::vector<Vec> tok{embed};
  for (I64 l = 0; l < w.cfg.layers; ++l) {
    const I64 p = pos_of_layer(l);
    naive_layer(w.cfg, w.layers[l], tok, {Pos3{p, p, p}}, sec, caches[l]);
  }
  return naive_norm(tok[0], w.final_norm, w.cfg.rms_eps);
}

// Rows of a (rows x cols) matrix of standard normal values, drawn row by
// row, one fresh distribution an element.
inline Mat normal_rows(I64 rows, I64 cols, std::mt19937& rng) {
  Mat m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = std::normal_distribution<float>()(rng);
  return m;
}

// The rows of m as vectors, the re-run's token rows.
inline std::vector<Vec> rows_of(const Mat& m) {
  std::vector<Vec> x;
  for (Eigen::Index t = 0; t < m.rows(); ++t) x.push_back(m.row(t).transpose());
  return x;
}

// The host's prefill against the re-run's: each output row is the final
// norm of the re-run's row, and each layer's cache starts with the
// re-run's keys and values, with `steps` decode rows after them.
inline void expect_prefill_equals_rerun(const Weights& w, const Mat& out,
                                        const std::vector<pdrop_host::KVCache>& host_caches,
                                        const std::vector<Vec>& x, const std::vector<Cache>& caches,
                                        I64 steps) {
  ASSERT_EQ(static_cast<I64>(x.size()), out.rows());
  for (std::size_t t = 0; t < x.size(); ++t) {
    const Vec want = naive_norm(x[t], w.final_norm, w.cfg.rms_eps);
    EXPECT_LE((out.row(t).transpose() - want).cwiseAbs().maxCoeff(), 1e-4) << "row " << t;
  }
  ASSERT_EQ(host_caches.size(), caches.size());
  for (std::size_t l = 0; l < caches.size(); ++l) {
    const auto& hc = host_caches[l];
    ASSERT_EQ(hc.len, static_cast<I64>(caches[l].k.size()) + steps) << "layer " << l;
    for (std::size_t t = 0; t < caches[l].k.size(); ++t) {
      EXPECT_LE((hc.k.row(t).transpose() - caches[l].k[t]).cwiseAbs().maxCoeff(), 1e-4)
          << "layer " << l << " row " << t;
      EXPECT_LE((hc.v.row(t).transpose() - caches[l].v[t]).cwiseAbs().maxCoeff(), 1e-4)
          << "layer " << l << " row " << t;
    }
  }
}

}  // namespace pdrop_host_test

#endif  // PDROP_TESTS_HOST_UTIL_HPP
