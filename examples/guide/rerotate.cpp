// docs/integration.md, "Positions after a drop": an engine whose K rows are
// already rotated (a fused QKV + RoPE kernel, or rows already written to
// the KV cache) compacts them at a drop and re-indexes the positions. The
// kept rows still carry the rotation of their OLD positions; rerotate_heads
// turns them to the new ones.
//
// The check: the re-rotated rows equal the unrotated rows rotated from
// scratch at the new positions (float rounding), and a decode query at the
// record's position attends to them exactly as to those fresh rows; the
// same rows left unrotated give a different attention (the silent error
// this step prevents). Exit status 0 when all of that holds.
#include <pdrop/pdrop.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

constexpr std::int64_t T = 24, Hkv = 2, Hq = 4, d = 16;

// Plain rotate-half RoPE of one row (dim d) at position p, in double.
void rope_row(float* x, std::int64_t p, const std::vector<float>& inv_freq) {
  for (std::int64_t i = 0; i < d / 2; ++i) {
    const double a = static_cast<double>(p) * inv_freq[i], c = std::cos(a), s = std::sin(a);
    const double x1 = x[i], x2 = x[i + d / 2];
    x[i] = static_cast<float>(x1 * c - x2 * s);
    x[i + d / 2] = static_cast<float>(x2 * c + x1 * s);
  }
}

// Attention probabilities of one query row (head h) over the first n keys (NHD).
std::vector<double> attend(const std::vector<float>& q, const std::vector<float>& k,
                           std::int64_t n, std::int64_t h) {
  const std::int64_t g = h / (Hq / Hkv);
  std::vector<double> p(static_cast<std::size_t>(n));
  double mx = -INFINITY, sum = 0;
  for (std::int64_t t = 0; t < n; ++t) {
    double dot = 0;
    for (std::int64_t i = 0; i < d; ++i) dot += double(q[h * d + i]) * k[(t * Hkv + g) * d + i];
    mx = std::max(mx, p[t] = dot / std::sqrt(double(d)));
  }
  for (double& x : p) sum += (x = std::exp(x - mx));
  for (double& x : p) x /= sum;
  return p;
}

}  // namespace

int main() {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  const pdrop::ImageSpan image{4, 16};  // text 4, image 16, text 4
  std::vector<float> raw(T * Hkv * d), q_raw(Hq * d);
  for (float& x : raw) x = normal(rng);
  for (float& x : q_raw) x = normal(rng);
  std::vector<float> inv_freq(d / 2);
  pdrop::rope_inv_freq(10000.0, d, inv_freq);
  // A prompt that continues a chat at position 50: positions 50 .. 73.
  std::vector<std::int64_t> pos(T);
  for (std::int64_t t = 0; t < T; ++t) pos[t] = 50 + t;
  std::vector<float> k = raw;  // the engine's rows, rotated at pos
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t g = 0; g < Hkv; ++g) rope_row(&k[(t * Hkv + g) * d], pos[t], inv_freq);

  const auto s = pdrop::Schedule::single_drop(4, 1, 0.25);  // re-indexed
  pdrop::SequenceState seq(s, pdrop::TokenView<const std::int64_t>(pos.data(), T, 1),
                           {&image, 1});
  // Some keep list: text, 4 of the 16 image tokens (rank_and_drop's as usual).
  const std::vector<std::int64_t> keep{0, 1, 2, 3, 6, 9, 13, 18, 20, 21, 22, 23};
  const pdrop::span<const std::int64_t> kl(keep.data(), static_cast<std::int64_t>(keep.size()));
  const std::int64_t t_new = kl.size;
  seq.apply_drop(kl);
  std::vector<float> k_naive = k;  // the wrong way: compacted, not re-rotated
  pdrop::compact_heads(pdrop::nhd_view<float>(k_naive.data(), T, Hkv, d), kl);

  // [snippet rerotate]
  // k holds this layer's K rows (NHD), already rotated at `pos`.
  std::vector<std::int64_t> old_pos = pos;  // what the rows were rotated at
  pdrop::compact_heads(pdrop::nhd_view<float>(k.data(), T, Hkv, d), kl);
  pdrop::compact_positions(pdrop::TokenView<std::int64_t>(old_pos.data(), T, 1), kl,
                           pdrop::PositionMode::keep_original);
  pdrop::compact_positions(pdrop::TokenView<std::int64_t>(pos.data(), T, 1), kl,
                           seq.position_mode());  // re-indexed: 50, 51, ...
  pdrop::rerotate_heads(pdrop::nhd_view<float>(k.data(), t_new, Hkv, d),
                        pdrop::TokenView<const std::int64_t>(old_pos.data(), t_new, 1),
                        pdrop::TokenView<const std::int64_t>(pos.data(), t_new, 1), inv_freq);
  // [/snippet rerotate]

  int bad = 0;
  // Fresh rows: the unrotated rows of the kept tokens rotated at 50 + i.
  std::vector<float> fresh(t_new * Hkv * d);
  double worst = 0;
  for (std::int64_t i = 0; i < t_new; ++i)
    for (std::int64_t g = 0; g < Hkv; ++g) {
      float* f = &fresh[(i * Hkv + g) * d];
      std::copy_n(&raw[(keep[i] * Hkv + g) * d], d, f);
      rope_row(f, 50 + i, inv_freq);
      for (std::int64_t c = 0; c < d; ++c)
        worst = std::max(worst, double(std::fabs(f[c] - k[(i * Hkv + g) * d + c])));
    }
  if (pos[t_new - 1] != 50 + t_new - 1 || worst > 1e-5) {
    std::printf("re-rotated rows differ from fresh ones by %.3g\n", worst);
    ++bad;
  }
  // A decode query at the record's position attends over the kept rows.
  const std::int64_t p = seq.position(1, 0);  // 50 + 12
  std::vector<float> q = q_raw;
  for (std::int64_t h = 0; h < Hq; ++h) rope_row(&q[h * d], p, inv_freq);
  double err_right = 0, err_naive = 0;
  for (std::int64_t h = 0; h < Hq; ++h) {
    const auto want = attend(q, fresh, t_new, h), got = attend(q, k, t_new, h),
               naive = attend(q, k_naive, t_new, h);
    for (std::int64_t t = 0; t < t_new; ++t) {
      err_right = std::max(err_right, std::fabs(got[t] - want[t]));
      err_naive = std::max(err_naive, std::fabs(naive[t] - want[t]));
    }
  }
  if (p != 62 || err_right > 1e-5 || err_naive < 1e-3) {
    std::printf("position %lld; attention error %.3g re-rotated, %.3g not\n", (long long)p,
                err_right, err_naive);
    ++bad;
  }
  std::printf("rerotate: decode at %lld; attention error %.2g re-rotated, %.2g without "
              "(wrong): %s\n",
              (long long)p, err_right, err_naive, bad ? "WRONG" : "ok");
  return bad ? 1 : 0;
}
