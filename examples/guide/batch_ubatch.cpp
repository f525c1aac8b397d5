// docs/integration.md, "Several sequences in a batch": one drop over a
// packed ubatch (the rows of all sequences one after the other, as
// llama.cpp batches them), with a sequence of two images (a budget per
// image), one of one image and a text-only one, and M-RoPE-style positions
// (3 per token) that move with their rows.
//
// The check: each sequence's kept rows are what rank_and_drop keeps for
// that sequence alone, the text-only sequence passes through, and the
// packed hidden states and positions afterwards are a plain gather of the
// kept rows. Exit status 0 when they are.
#include <pdrop/batch.hpp>
#include <pdrop/pdrop.hpp>

#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const std::int64_t Hq = 4, Hkv = 2, d = 8, D = 16;
  const double ratio = 0.5;  // the stage's ratio of the original image tokens
  // Sequence b's rows are [off[b], off[b+1]) of the packed buffers; its
  // spans are all_spans[span_off[b] .. span_off[b+1]).
  std::vector<std::int64_t> off{0, 40, 63, 80};
  std::vector<pdrop::ImageSpan> all_spans{{2, 12}, {18, 16}, {3, 13}};
  const std::vector<std::int64_t> span_off{0, 2, 3, 3};
  const auto orig_spans = all_spans;
  const std::int64_t B = 3, T = off[B];
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  std::vector<float> q_buf(T * Hq * d), k_buf(T * Hkv * d), h_buf(T * D);
  for (auto* v : {&q_buf, &k_buf, &h_buf})
    for (float& x : *v) x = nd(rng);
  std::vector<std::int64_t> pos_buf(T * 3);
  for (std::int64_t i = 0; i < T * 3; ++i) pos_buf[i] = 1000 + i;
  const auto h0 = h_buf;
  const auto pos0 = pos_buf;
  const pdrop::HeadView<const float> q = pdrop::nhd_view<const float>(q_buf.data(), T, Hq, d);
  const pdrop::HeadView<const float> k = pdrop::nhd_view<const float>(k_buf.data(), T, Hkv, d);
  const pdrop::TokenView<float> hidden(h_buf.data(), T, D);
  const pdrop::TokenView<std::int64_t> positions(pos_buf.data(), T, 3);
  pdrop::Workspace ws;
  std::vector<std::int64_t> keep(T), keep_off(B + 1), last(B), counts(all_spans.size());

  // [snippet batch_ubatch]
  std::vector<pdrop::SequenceDrop<float, float>> seqs;
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t T_b = off[b + 1] - off[b], n_spans = span_off[b + 1] - span_off[b];
    const pdrop::span<std::int64_t> c(counts.data() + span_off[b], n_spans);
    pdrop::per_span_budgets({orig_spans.data() + span_off[b], n_spans}, ratio, c);  // per image
    last[b] = T_b - 1;                          // the last prompt token queries
    seqs.push_back({pdrop::token_slice(q, off[b] + T_b - 1, 1), {&last[b], 1},
                    pdrop::token_slice(k, off[b], T_b),
                    {all_spans.data() + span_off[b], n_spans}, c});
  }
  const std::int64_t rows = pdrop::rank_and_drop_batch<float, float>(
      seqs, ws, keep, keep_off, {}, all_spans);  // all_spans: the new spans
  pdrop::batch_keep_rows(keep, keep_off, off);   // per-sequence lists -> packed rows
  const pdrop::span<const std::int64_t> kl(keep.data(), rows);
  pdrop::compact_rows(hidden, kl);               // the whole ubatch at once
  pdrop::compact_positions(positions, kl, pdrop::PositionMode::keep_original);  // M-RoPE
  const auto old_off = off;
  off = keep_off;                                // the sequences' new offsets
  // [/snippet batch_ubatch]

  // Reference: each sequence alone through rank_and_drop, then a gather.
  int bad = 0;
  std::vector<std::int64_t> want;
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t T_b = old_off[b + 1] - old_off[b], n_spans = span_off[b + 1] - span_off[b];
    std::vector<std::int64_t> c(n_spans), kb(T_b);
    std::vector<pdrop::ImageSpan> sp(orig_spans.begin() + span_off[b],
                                     orig_spans.begin() + span_off[b + 1]);
    for (std::int64_t i = 0; i < n_spans; ++i)
      c[i] = static_cast<std::int64_t>(static_cast<double>(sp[i].length) * ratio);
    std::int64_t n = T_b;
    if (n_spans > 0) {
      const std::int64_t qp = T_b - 1;
      n = pdrop::rank_and_drop<float, float>(
          pdrop::nhd_view<const float>(q_buf.data() + (old_off[b] + T_b - 1) * Hq * d, 1, Hq, d),
          {&qp, 1}, pdrop::nhd_view<const float>(k_buf.data() + old_off[b] * Hkv * d, T_b, Hkv, d),
          sp, c, ws, kb, sp);
    } else {
      for (std::int64_t i = 0; i < T_b; ++i) kb[i] = i;  // text only: passes through
    }
    for (std::int64_t i = 0; i < n; ++i) want.push_back(old_off[b] + kb[i]);
    if (off[b + 1] - off[b] != n) { std::printf("sequence %lld: %lld rows, want %lld\n", (long long)b, (long long)(off[b + 1] - off[b]), (long long)n); ++bad; }
    for (std::int64_t i = 0; i < n_spans; ++i)
      if (all_spans[span_off[b] + i].length != c[i] || all_spans[span_off[b] + i].start != sp[i].start) {
        std::printf("sequence %lld: span %lld differs\n", (long long)b, (long long)i);
        ++bad;
      }
  }
  if (static_cast<std::int64_t>(want.size()) != rows) { std::printf("%lld rows, want %zu\n", (long long)rows, want.size()); ++bad; }
  for (std::int64_t i = 0; i < rows && !bad; ++i) {
    bool ok = keep[i] == want[i];
    for (std::int64_t f = 0; f < D; ++f) ok = ok && h_buf[i * D + f] == h0[want[i] * D + f];
    for (std::int64_t f = 0; f < 3; ++f) ok = ok && pos_buf[i * 3 + f] == pos0[want[i] * 3 + f];
    if (!ok) { std::printf("packed row %lld: not row %lld\n", (long long)i, (long long)want[i]); ++bad; }
  }
  std::printf("batch_ubatch: sequence rows %lld/%lld/%lld -> %lld/%lld/%lld: %s\n",
              (long long)(old_off[1] - old_off[0]), (long long)(old_off[2] - old_off[1]),
              (long long)(old_off[3] - old_off[2]), (long long)(off[1] - off[0]),
              (long long)(off[2] - off[1]), (long long)(off[3] - off[2]), bad ? "WRONG" : "ok");
  return bad ? 1 : 0;
}
