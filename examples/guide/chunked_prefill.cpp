// docs/integration.md, "Chunked prefill": the prompt arrives in chunks and
// only the last chunk holds the last instruction token, whose query scores
// the image tokens. Earlier chunks therefore run every layer densely; when
// the last chunk reaches a drop point, the drop is decided over every token
// alive, the earlier chunks' rows are evicted from this layer's KV cache
// and every deeper one, and the chunk's own batch shrinks.
//
// The model is a toy whose q/k/v rows depend only on (layer, position), so
// chunking must not change the outcome. The check: chunked prefill with
// eviction ends with exactly the KV caches (rows and positions) of a
// one-shot pruned prefill, text + n_j rows in each layer of stage j. Exit
// status 0 when it does.
#include <pdrop/pdrop.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

namespace {

constexpr std::int64_t L = 6, Hq = 4, Hkv = 2, d = 8, W = Hkv * d;

// The toy's rows: layer l's q (kind 0), k (1) or v (2) of the token at
// original position p, Hq*d or Hkv*d floats, the same in any chunking.
void toy_row(std::int64_t l, std::int64_t p, int kind, float* out) {
  std::mt19937 rng(static_cast<unsigned>(l * 100003 + p * 3 + kind));
  std::normal_distribution<float> nd;
  for (std::int64_t i = 0; i < (kind == 0 ? Hq * d : W); ++i) out[i] = nd(rng);
}

struct Cache {                          // one layer's KV rows, in token order
  std::vector<float> k, v;              // (capacity, W)
  std::vector<std::int64_t> pos;        // (capacity) original positions
  std::int64_t len = 0;
};

// Writes layer l's K/V rows of the tokens at positions pos[0..n) behind the
// cached rows.
void append(Cache& c, std::int64_t l, const std::int64_t* pos, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i, ++c.len) {
    toy_row(l, pos[i], 1, &c.k[c.len * W]);
    toy_row(l, pos[i], 2, &c.v[c.len * W]);
    c.pos[c.len] = pos[i];
  }
}

// [snippet chunked_evict]
// Evicts every cached row not in `keep`; positions move with their rows
// (the rows' K was RoPE'd at them, so they are not re-indexed).
void evict(Cache& c, pdrop::span<const std::int64_t> keep) {
  pdrop::compact_rows(pdrop::TokenView<float>(c.k.data(), c.len, W), keep);
  pdrop::compact_rows(pdrop::TokenView<float>(c.v.data(), c.len, W), keep);
  pdrop::compact_positions(pdrop::TokenView<std::int64_t>(c.pos.data(), c.len, 1), keep,
                           pdrop::PositionMode::keep_original);
  c.len = keep.size;
}
// [/snippet chunked_evict]

// Prefills positions [0, T) in chunks of `chunk` tokens (chunk >= T: one
// shot), with the schedule's drops; returns the per-layer caches.
std::vector<Cache> prefill(const pdrop::Schedule& s, std::int64_t T, pdrop::ImageSpan image,
                           std::int64_t chunk) {
  const std::int64_t N0 = image.length;
  std::vector<Cache> cache(L);
  for (auto& c : cache) {
    c.k.resize(T * W);
    c.v.resize(T * W);
    c.pos.resize(T);
  }
  pdrop::Workspace ws;
  std::vector<std::int64_t> keep(T), chunk_pos;
  std::vector<float> q_last(Hq * d);
  std::int64_t cached = 0;  // earlier chunks' tokens alive in the cache
  for (std::int64_t c0 = 0; c0 < T; c0 += chunk) {
    const std::int64_t end = std::min(T, c0 + chunk);
    chunk_pos.resize(end - c0);
    for (std::int64_t i = c0; i < end; ++i) chunk_pos[i - c0] = i;
    std::int64_t n = end - c0;
    for (std::int64_t l = 0; l < L; ++l) {
      append(cache[l], l, chunk_pos.data(), n);
      const std::int64_t j = s.drop_before(l);
      if (end < T || j == 0) continue;  // no drop before the last token is here
      toy_row(l, T - 1, 0, q_last.data());
      // [snippet chunked_drop]
      // The last chunk at layer l, the first of stage j: its K/V rows of layer l
      // went in behind the cached ones, so cache[l] holds every token alive.
      const std::int64_t n_keep = s.image_tokens(N0, j), last = cache[l].len - 1;
      const std::int64_t t_new = pdrop::rank_and_drop<float, float>(
          pdrop::split_heads(pdrop::TokenView<const float>(q_last.data(), 1, Hq * d), Hq),
          {&last, 1}, pdrop::nhd_view<const float>(cache[l].k.data(), cache[l].len, Hkv, d),
          {&image, 1}, {&n_keep, 1}, ws, keep, {&image, 1});
      // Entries below `cached` are earlier chunks' rows, the rest this chunk's.
      const std::int64_t split = std::lower_bound(keep.begin(), keep.begin() + t_new, cached) -
                                 keep.begin();
      evict(cache[l], {keep.data(), t_new});
      for (std::int64_t m = l + 1; m < L; ++m) evict(cache[m], {keep.data(), split});
      for (std::int64_t i = split; i < t_new; ++i) keep[i] -= cached;  // chunk rows
      pdrop::compact_positions(pdrop::TokenView<std::int64_t>(chunk_pos.data(), n, 1),
                               {keep.data() + split, t_new - split},
                               pdrop::PositionMode::keep_original);
      cached = split;      // (the chunk's hidden states and q rows: compact_rows, same list)
      n = t_new - split;   // deeper layers run, and cache, the kept chunk rows only
      // [/snippet chunked_drop]
    }
    cached += n;
  }
  return cache;
}

}  // namespace

int main() {
  const std::int64_t sys = 5, N0 = 40, question = 7, T = sys + N0 + question;
  const pdrop::ImageSpan image{sys, N0};
  const auto s = pdrop::Schedule::pyramid(L, 3, 0.5);  // drops after layers 2, 4
  const auto one_shot = prefill(s, T, image, T);
  int bad = 0;
  for (std::int64_t chunk : {1, 7, 16, 20, 51}) {
    const auto chunked = prefill(s, T, image, chunk);
    for (std::int64_t l = 0; l < L; ++l) {
      const Cache &a = chunked[l], &b = one_shot[l];
      const std::int64_t want = T - N0 + s.image_tokens(N0, s.stage_of_layer(l));
      const bool same = a.len == want && b.len == want &&
                        std::equal(a.pos.begin(), a.pos.begin() + want, b.pos.begin()) &&
                        std::equal(a.k.begin(), a.k.begin() + want * W, b.k.begin()) &&
                        std::equal(a.v.begin(), a.v.begin() + want * W, b.v.begin());
      if (!same) {
        std::printf("chunk %lld, layer %lld: %lld rows (one-shot %lld, want %lld) or rows differ\n",
                    (long long)chunk, (long long)l, (long long)a.len, (long long)b.len,
                    (long long)want);
        ++bad;
      }
    }
  }
  std::printf("chunked_prefill: KV rows per layer");
  for (const auto& c : one_shot) std::printf(" %lld", static_cast<long long>(c.len));
  std::printf(", chunked == one-shot: %s\n", bad ? "WRONG" : "ok");
  return bad ? 1 : 0;
}
