// docs/integration.md, "From a paged-KV serving engine": after a drop, the
// kept KV rows of a sequence move into its first blocks and the blocks past
// them go back to the free list, in every layer of the stages that follow.
//
// The check: a pyramid over 3 layer groups (one block table each), two
// drops; the block tables, the free list and every cached row afterwards
// equal a naive recompute from the keep lists. Exit status 0 when they do.
#include <pdrop/pdrop.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

namespace {

// [snippet paged_kv]
// One layer's KV pool: blocks of `block` rows, a row = K and V of one token.
struct Pool {
  std::int64_t block = 0, width = 0;
  std::vector<float> rows;  // (num_blocks * block, width)
};

// Logical row r of a sequence lives in block table[r / block], slot r % block.
float* row(Pool& p, const std::vector<int>& table, std::int64_t r) {
  return p.rows.data() + (table[r / p.block] * p.block + r % p.block) * p.width;
}

// Row i <- row keep[i]: since i <= keep[i], in order never reads a moved row.
void compact_paged(Pool& p, const std::vector<int>& table, pdrop::span<const std::int64_t> keep) {
  for (std::int64_t i = 0; i < keep.size; ++i)
    if (keep[i] != i)
      std::memcpy(row(p, table, i), row(p, table, keep[i]), sizeof(float) * p.width);
}

// Blocks past the first ceil(kept / block) go back to the engine.
void shrink_table(std::vector<int>& table, std::int64_t kept, std::int64_t block,
                  std::vector<int>& free_blocks) {
  const auto used = static_cast<std::size_t>((kept + block - 1) / block);
  free_blocks.insert(free_blocks.end(), table.begin() + used, table.end());
  table.resize(used);
}
// [/snippet paged_kv]

}  // namespace

int main() {
  const std::int64_t L = 6, B = 4, Hq = 4, Hkv = 2, d = 8, W = 2 * Hkv * d;
  const std::int64_t T = 37, N0 = 24;
  pdrop::ImageSpan image{5, N0};
  const auto s = pdrop::Schedule::pyramid(L, 3, 0.5);  // drops after layers 2, 4
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;

  // Physical blocks in a shuffled order; group g (the layers of stage g)
  // has its own block table, all layers of a group share it.
  const std::int64_t blocks_per_group = (T + B - 1) / B, n_blocks = 3 * blocks_per_group + 5;
  std::vector<int> ids(static_cast<std::size_t>(n_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<std::vector<int>> table(3);
  for (int g = 0; g < 3; ++g)
    table[g].assign(ids.begin() + g * blocks_per_group, ids.begin() + (g + 1) * blocks_per_group);
  std::vector<int> free_blocks(ids.begin() + 3 * blocks_per_group, ids.end());
  const auto table0 = table;
  const auto free0 = free_blocks;
  std::vector<Pool> pool(L, Pool{B, W, {}});
  for (auto& p : pool) {
    p.rows.resize(static_cast<std::size_t>(n_blocks * B * W));
    for (float& x : p.rows) x = nd(rng);
  }
  // Each layer's logical rows before any drop (the naive reference).
  std::vector<std::vector<std::vector<float>>> before(L);
  for (std::int64_t l = 0; l < L; ++l)
    for (std::int64_t r = 0; r < T; ++r) {
      const int g = static_cast<int>(s.stage_of_layer(l));
      const float* x = row(pool[l], table[g], r);
      before[l].emplace_back(x, x + W);
    }

  // Two drops, each scored from random q/k of the current rows.
  pdrop::Workspace ws;
  std::vector<std::int64_t> keep(static_cast<std::size_t>(T));
  std::vector<std::vector<std::int64_t>> keeps;
  std::int64_t t = T;
  for (std::int64_t j = 1; j < s.num_stages(); ++j) {
    std::vector<float> q(Hq * d), k(static_cast<std::size_t>(t * Hkv * d));
    for (float& x : q) x = nd(rng);
    for (float& x : k) x = nd(rng);
    // [snippet paged_kv_drop]
    // Drop j: every layer of stage >= j moves its rows, then each such
    // group's block table shrinks (all layers of a group share it).
    const std::int64_t n_keep = s.image_tokens(N0, j), last = t - 1;
    const std::int64_t t_new = pdrop::rank_and_drop<float, float>(
        pdrop::split_heads(pdrop::TokenView<const float>(q.data(), 1, Hq * d), Hq), {&last, 1},
        pdrop::nhd_view<const float>(k.data(), t, Hkv, d), {&image, 1}, {&n_keep, 1}, ws, keep,
        {&image, 1});
    for (std::int64_t l = 0; l < L; ++l)
      if (s.stage_of_layer(l) >= j)
        compact_paged(pool[l], table[s.stage_of_layer(l)], {keep.data(), t_new});
    for (std::int64_t g = j; g < s.num_stages(); ++g) shrink_table(table[g], t_new, B, free_blocks);
    // [/snippet paged_kv_drop]
    keeps.emplace_back(keep.begin(), keep.begin() + t_new);
    t = t_new;
  }

  // Naive recompute: group g keeps the original row chain keep_1[...keep_g[i]],
  // its first ceil(t_g / B) blocks, and frees the rest.
  int bad = 0;
  std::vector<int> want_free = free0;
  for (std::int64_t g = 0; g < s.num_stages(); ++g) {
    const std::int64_t t_g = (T - N0) + s.image_tokens(N0, g);
    const std::size_t used = static_cast<std::size_t>((t_g + B - 1) / B);
    std::vector<int> want(table0[g].begin(), table0[g].begin() + used);
    want_free.insert(want_free.end(), table0[g].begin() + used, table0[g].end());
    if (table[g] != want) { std::printf("group %lld: block table differs\n", static_cast<long long>(g)); ++bad; }
    for (std::int64_t l = 0; l < L; ++l) {
      if (s.stage_of_layer(l) != g) continue;
      for (std::int64_t i = 0; i < t_g; ++i) {
        std::int64_t src = i;
        for (std::int64_t j = g; j >= 1; --j) src = keeps[j - 1][src];
        if (!std::equal(before[l][src].begin(), before[l][src].end(), row(pool[l], table[g], i))) {
          std::printf("layer %lld row %lld: not original row %lld\n", static_cast<long long>(l),
                      static_cast<long long>(i), static_cast<long long>(src));
          ++bad;
        }
      }
    }
  }
  std::vector<int> got_free = free_blocks;
  std::sort(got_free.begin(), got_free.end());
  std::sort(want_free.begin(), want_free.end());
  if (got_free != want_free) { std::printf("free list differs\n"); ++bad; }
  std::printf("paged_kv: block tables of %zu, %zu, %zu blocks, %zu free: %s\n", table[0].size(),
              table[1].size(), table[2].size(), free_blocks.size(), bad ? "WRONG" : "ok");
  return bad ? 1 : 0;
}
