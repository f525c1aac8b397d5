// A toy decoder for the guide programs that run the README's and the
// headers' examples as written (readme.cpp, pruner.cpp): q/k rows are a
// fixed function of each token's original index, carried in feature 0 of
// its hidden row, and expect_drop works out on its own which tokens
// PyramidDrop keeps (the paper's rule: int(N0 * 0.5^j) of the N0 image
// tokens in stage j, by the last token's attention from the next layer's
// q/k, a plain double-precision softmax averaged over heads; no ties occur
// with these values). check_last_drop then compares the rows left.
#ifndef PDROP_EXAMPLES_GUIDE_TOY_DECODER_HPP
#define PDROP_EXAMPLES_GUIDE_TOY_DECODER_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

namespace toy {

constexpr std::int64_t Hq = 4, Hkv = 2, d = 8, D = 5;  // D: hidden features
constexpr std::int64_t T0 = 40, s = 5, N0 = 24;        // one image at 5..28

struct Decoder {
  std::int64_t T = T0;
  std::vector<float> hidden = std::vector<float>(T0 * D);
  std::vector<float> q_buf = std::vector<float>(T0 * Hq * d);   // NHD
  std::vector<float> k_buf = std::vector<float>(T0 * Hkv * d);  // NHD
  std::vector<std::int64_t> pos = std::vector<std::int64_t>(T0);
  std::vector<std::int64_t> expected;  // original indices the next drop keeps
  int drops_checked = 0, failures = 0;

  Decoder() {
    for (std::int64_t t = 0; t < T0; ++t) {
      hidden[t * D] = static_cast<float>(t);
      for (std::int64_t f = 1; f < D; ++f) hidden[t * D + f] = 0.5f * f;
    }
    std::iota(pos.begin(), pos.end(), 0);
  }

  // The names the guide's examples use for a runtime's length and buffers.
  struct Buffers {
    std::int64_t& T;
    const float* q_buf;
    const float* k_buf;
    float* hidden;
    std::int64_t* pos;
  };
  Buffers buffers() { return {T, q_buf.data(), k_buf.data(), hidden.data(), pos.data()}; }

  float tag(std::int64_t t) const { return hidden[t * D]; }
  bool is_image(std::int64_t t) const { return tag(t) >= s && tag(t) < s + N0; }

  // q/k of layer `layer` for the current rows, from each row's original index.
  void project(std::int64_t layer) {
    for (std::int64_t t = 0; t < T; ++t) {
      const double o = tag(t);
      for (std::int64_t h = 0; h < Hq; ++h)
        for (std::int64_t i = 0; i < d; ++i)
          q_buf[(t * Hq + h) * d + i] =
              static_cast<float>(std::sin(0.9 * o + 1.7 * h + 0.3 * i + 0.1 * layer));
      for (std::int64_t h = 0; h < Hkv; ++h)
        for (std::int64_t i = 0; i < d; ++i)
          k_buf[(t * Hkv + h) * d + i] =
              static_cast<float>(std::cos(1.3 * o + 0.8 * h + 0.7 * i * i + 0.2 * layer));
    }
  }

  // What the drop into `stage` must keep, from the q/k in the buffers now:
  // every text token and the best int(N0 * 0.5^stage) image tokens.
  void expect_drop(int stage) {
    std::vector<double> score(static_cast<std::size_t>(T), 0.0);
    for (std::int64_t h = 0; h < Hq; ++h) {
      const std::int64_t g = h / (Hq / Hkv);
      std::vector<double> logit(static_cast<std::size_t>(T));
      double mx = -INFINITY, sum = 0.0;
      for (std::int64_t t = 0; t < T; ++t) {
        double dot = 0.0;
        for (std::int64_t i = 0; i < d; ++i)
          dot += double(q_buf[((T - 1) * Hq + h) * d + i]) * k_buf[(t * Hkv + g) * d + i];
        logit[t] = dot / std::sqrt(double(d));
        mx = std::max(mx, logit[t]);
      }
      for (double l : logit) sum += std::exp(l - mx);
      for (std::int64_t t = 0; t < T; ++t) score[t] += std::exp(logit[t] - mx) / sum;
    }
    std::vector<std::int64_t> image;
    for (std::int64_t t = 0; t < T; ++t)
      if (is_image(t)) image.push_back(t);
    const auto n_keep = static_cast<std::size_t>(N0 * std::pow(0.5, stage));
    std::stable_sort(image.begin(), image.end(),
                     [&](std::int64_t a, std::int64_t b) { return score[a] > score[b]; });
    image.resize(n_keep);
    expected.clear();
    for (std::int64_t t = 0; t < T; ++t)
      if (!is_image(t) || std::find(image.begin(), image.end(), t) != image.end())
        expected.push_back(static_cast<std::int64_t>(tag(t)));
  }

  // The top of layer `layer` in the guide programs' loops: checks the last
  // drop, leaves this layer's q/k in the buffers and, when a drop happens
  // before it (every 8 layers of 32), what that drop must keep.
  void before_layer(std::int64_t layer) {
    check_last_drop();
    project(layer);
    if (layer % 8 == 0 && layer > 0) expect_drop(static_cast<int>(layer / 8));
  }

  // The rows left by the last drop are the expected ones, positions 0..T-1.
  void check_last_drop() {
    if (expected.empty()) return;
    bool ok = T == static_cast<std::int64_t>(expected.size());
    for (std::int64_t t = 0; ok && t < T; ++t)
      ok = tag(t) == static_cast<float>(expected[t]) && pos[t] == t;
    if (!ok) ++failures;
    ++drops_checked;
    expected.clear();
  }
};

}  // namespace toy

#endif  // PDROP_EXAMPLES_GUIDE_TOY_DECODER_HPP
