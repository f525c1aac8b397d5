// README.md, "One drop, from a runtime": the README's loop, run as written
// over a toy decoder whose q/k rows are a fixed function of each token's
// original index (carried in feature 0 of its hidden row).
//
// The check: before the snippet's drop after layer l, this program works
// out on its own which image tokens PyramidDrop keeps (the paper's rule:
// int(N0 * 0.5^j) of the N0 image tokens in stage j, by the last token's
// attention from layer l+1's q/k, a plain double-precision softmax over
// heads; ties cannot occur with these values), and after it checks the
// hidden rows the snippet left are exactly those tokens, in order, with
// positions 0..T-1. Exit status 0 when every drop matches.
#include <pdrop/pdrop.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <vector>

namespace {

constexpr std::int64_t Hq = 4, Hkv = 2, d = 8, D = 5;  // D: hidden features
constexpr std::int64_t T0 = 40, s = 5, N0 = 24;        // one image at 5..28

std::int64_t T = T0;
std::vector<float> hidden(T0 * D), q_buf(T0 * Hq * d), k_buf(T0 * Hkv * d);
std::vector<std::int64_t> pos(T0);
std::vector<std::int64_t> expected;  // original indices the next drop keeps
int drops_checked = 0, failures = 0;

float tag(std::int64_t t) { return hidden[t * D]; }

// q/k of layer l+1 for the current rows (NHD), from each row's original index.
void project(int layer) {
  for (std::int64_t t = 0; t < T; ++t) {
    const double o = tag(t);
    for (std::int64_t h = 0; h < Hq; ++h)
      for (std::int64_t i = 0; i < d; ++i)
        q_buf[(t * Hq + h) * d + i] = static_cast<float>(std::sin(0.9 * o + 1.7 * h + 0.3 * i + 0.1 * layer));
    for (std::int64_t h = 0; h < Hkv; ++h)
      for (std::int64_t i = 0; i < d; ++i)
        k_buf[(t * Hkv + h) * d + i] = static_cast<float>(std::cos(1.3 * o + 0.8 * h + 0.7 * i * i + 0.2 * layer));
  }
}

// The rows the drop after `layer` must keep: every text token and the
// best int(N0 * 0.5^stage) image tokens by the last row's attention.
void expect_drop(int stage) {
  std::vector<double> score(T, 0.0);
  for (std::int64_t h = 0; h < Hq; ++h) {
    const std::int64_t g = h / (Hq / Hkv);
    std::vector<double> logit(T);
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
    if (tag(t) >= s && tag(t) < s + N0) image.push_back(t);
  const auto n_keep = static_cast<std::size_t>(N0 * std::pow(0.5, stage));
  std::stable_sort(image.begin(), image.end(),
                   [&](std::int64_t a, std::int64_t b) { return score[a] > score[b]; });
  image.resize(n_keep);
  expected.clear();
  for (std::int64_t t = 0; t < T; ++t) {
    const bool is_image = tag(t) >= s && tag(t) < s + N0;
    if (!is_image || std::find(image.begin(), image.end(), t) != image.end())
      expected.push_back(static_cast<std::int64_t>(tag(t)));
  }
}

void check_last_drop() {
  if (expected.empty()) return;
  bool ok = T == static_cast<std::int64_t>(expected.size());
  for (std::int64_t t = 0; ok && t < T; ++t)
    ok = tag(t) == static_cast<float>(expected[t]) && pos[t] == t;
  if (!ok) ++failures;
  ++drops_checked;
  expected.clear();
}

// The toy decoder layer: checks the previous drop, then leaves layer+1's
// q/k in q_buf / k_buf (and, before a drop, what it must keep).
void run_layer(int layer) {
  check_last_drop();
  project(layer);
  if (layer + 1 == 8 || layer + 1 == 16 || layer + 1 == 24) expect_drop((layer + 1) / 8);
}

}  // namespace

int main() {
  for (std::int64_t t = 0; t < T0; ++t) {
    hidden[t * D] = static_cast<float>(t);
    for (std::int64_t f = 1; f < D; ++f) hidden[t * D + f] = 0.5f * f;
  }
  std::iota(pos.begin(), pos.end(), 0);
  float* const q_ptr = q_buf.data();
  const float* const k_ptr = k_buf.data();
  (void)q_ptr;
  // The README's names for the runtime's buffers.
  float* const hidden_ptr = hidden.data();
  std::int64_t* const pos_ptr = pos.data();
  {
    const float* q_buf = q_ptr;
    const float* k_buf = k_ptr;
    float* hidden = hidden_ptr;
    std::int64_t* pos = pos_ptr;
    // [snippet one_drop]
    #include <pdrop/pdrop.hpp>

    auto schedule = pdrop::Schedule::pyramid(/*layers*/ 32, /*stages*/ 4, /*lambda*/ 0.5);
    pdrop::ImageSpan image{s, N0};
    // One record per sequence: budgets, spans, cache lengths, decode positions.
    pdrop::SequenceState seq(schedule, pdrop::TokenView<const std::int64_t>(pos, T, 1), {&image, 1});
    pdrop::Workspace ws;
    ws.reserve(Hq, Hkv, /*queries*/ 1, T, d, N0);       // after this: no allocation
    std::vector<std::int64_t> keep(T);

    for (int layer = 0; layer < 32; ++layer) {
      run_layer(layer);                                  // your code
      if (std::int64_t stage = schedule.drop_after(layer)) {
        // q/k of layer+1 at the current positions (post-RoPE), as your runtime
        // lays them out: HND, NHD or a slice of a fused QKV buffer.
        auto q = pdrop::split_heads(pdrop::TokenView<const float>(q_buf + (T - 1) * Hq * d, 1, Hq * d), Hq);
        auto k = pdrop::nhd_view<const float>(k_buf, T, Hkv, d);
        std::int64_t n_keep = 0, last = T - 1;
        seq.keep_counts(stage, pdrop::Budget::per_span, {&n_keep, 1});  // int(N0 * ratio)
        const std::int64_t T_old = T;
        T = pdrop::rank_and_drop<float, float>(q, {&last, 1}, k, seq.spans(),
                                               {&n_keep, 1}, ws, keep);
        seq.apply_drop({keep.data(), T});                // checks and records the drop
        pdrop::compact_rows(pdrop::TokenView<float>(hidden, T_old, D), {keep.data(), T});
        pdrop::compact_positions(pdrop::TokenView<std::int64_t>(pos, T_old, 1), {keep.data(), T},
                                 seq.position_mode());
      }
    }
    // Decode step t at layer l: position seq.position(l, t) (every M-RoPE row),
    // over seq.cache_length(l) cached rows; seq.append(1) after each step.
    // [/snippet one_drop]
  }
  check_last_drop();
  const bool ok = failures == 0 && drops_checked == 3 && T == T0 - N0 + 3;
  std::printf("%s: README loop, %d drops as PyramidDrop's rule keeps them, %lld tokens left\n",
              ok ? "ok" : "FAILED", drops_checked, static_cast<long long>(T));
  return ok ? 0 : 1;
}
