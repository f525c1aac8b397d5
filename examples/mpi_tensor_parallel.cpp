// mpi_tensor_parallel - a PyramidDrop drop point under tensor parallelism.
//
// Every rank holds a contiguous block of the kv heads (and their query
// heads) of one layer, as Megatron-style tensor parallelism shards
// attention. At the drop point each rank scores the image tokens over its
// own heads, the ranks sum the partial arrays with MPI_Allreduce, and every
// rank finalizes and selects on its own: all of them must keep the same
// tokens, and the same ones a single process would.
//
//   mpiexec -n 2 ./pdrop-mpi-tensor-parallel [seed]
//
// The problem is random (seeded; every rank draws the same tensors and
// keeps only its shard). Rank 0 also runs the single-process rank_and_drop
// on the whole tensors and checks:
//   1. per-kv-head partial sums (Hkv x N floats all-reduced): scores and keep
//      list bit-identical to rank_and_drop, on every rank;
//   2. summed partials (N floats all-reduced): scores within the documented
//      rounding bound 2 Hkv eps of rank_and_drop's, the keep list the
//      same on every rank (and how many picks differ from rank_and_drop's is
//      printed: only near-ties can).
// Exit code 0 when all checks pass, 1 otherwise.
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <vector>

#include "pdrop/pdrop.hpp"
#include "pdrop/tensor_parallel.hpp"

namespace {

using T = pdrop::half;  // the model's dtype for q and k

// The model's layer at the drop point: LLaVA-like sizes, smaller sequence.
constexpr std::int64_t kQHeads = 32, kKvHeads = 8, kDim = 64, kTokens = 700;
constexpr pdrop::ImageSpan kImage{35, 576};
constexpr std::int64_t kKeep = 144;  // image tokens kept after this drop

// Every rank gets the same bits of every rank's result? Rank 0 gathers them.
bool same_on_all_ranks(const void* data, int bytes, int rank, int ranks) {
  std::vector<unsigned char> all(rank == 0 ? static_cast<std::size_t>(bytes) * ranks : 0);
  MPI_Gather(data, bytes, MPI_BYTE, all.data(), bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
  int ok = 1;
  if (rank == 0)
    for (int r = 1; r < ranks; ++r)
      ok &= std::memcmp(all.data(), all.data() + static_cast<std::size_t>(r) * bytes, bytes) == 0;
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return ok != 0;
}

int run(int rank, int ranks, unsigned seed) {
  if (ranks > kKvHeads) {
    if (rank == 0) std::fprintf(stderr, "at most %lld ranks (one kv head each)\n",
                                static_cast<long long>(kKvHeads));
    return 1;
  }
  // The whole layer, drawn identically on every rank. q: the last token's
  // query row per head, [Hq][1][d]; k: the key cache, [Hkv][T][d] (HND).
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<T> q(static_cast<std::size_t>(kQHeads * kDim));
  std::vector<T> k(static_cast<std::size_t>(kKvHeads * kTokens * kDim));
  for (auto& x : q) x = T(dist(rng));
  for (auto& x : k) x = T(dist(rng));
  const auto q_all = pdrop::hnd_view<const T>(q.data(), kQHeads, 1, kDim);
  const auto k_all = pdrop::hnd_view<const T>(k.data(), kKvHeads, kTokens, kDim);

  // This rank's shard: kv heads [g0, g1) and their query heads.
  const std::int64_t group = kQHeads / kKvHeads;
  const std::int64_t g0 = kKvHeads * rank / ranks, g1 = kKvHeads * (rank + 1) / ranks;
  const pdrop::HeadView<const T> q_mine(q_all.row(g0 * group, 0), (g1 - g0) * group, 1, kDim,
                                        q_all.head_stride, q_all.token_stride);
  const pdrop::HeadView<const T> k_mine(k_all.row(g0, 0), g1 - g0, kTokens, kDim,
                                        k_all.head_stride, k_all.token_stride);

  const std::int64_t last = kTokens - 1, n = kImage.length;
  const pdrop::span<const std::int64_t> pos(&last, 1);
  const pdrop::span<const pdrop::ImageSpan> spans(&kImage, 1);
  const pdrop::span<const std::int64_t> counts(&kKeep, 1);
  const std::int64_t t_new = kTokens - n + kKeep;
  pdrop::Workspace ws;
  ws.reserve_parallel(q_mine.heads, k_mine.heads, 1, kTokens, kDim, n);
  bool ok = true;

  // Single-process reference (rank 0).
  std::vector<std::int64_t> keep_ref(static_cast<std::size_t>(t_new));
  std::vector<float> scores_ref(static_cast<std::size_t>(n));
  if (rank == 0)
    pdrop::rank_and_drop(q_all, pos, k_all, spans, counts, ws, keep_ref, {}, scores_ref);

  // 1. Per-kv-head sums: exact.
  std::vector<float> sums(static_cast<std::size_t>(kKvHeads * n));
  pdrop::score_partial_by_kv_head(q_mine, pos, k_mine, spans, pdrop::HeadShard{g0, kKvHeads}, ws,
                                  sums);
  MPI_Allreduce(MPI_IN_PLACE, sums.data(), static_cast<int>(sums.size()), MPI_FLOAT, MPI_SUM,
                MPI_COMM_WORLD);
  std::vector<std::int64_t> keep(static_cast<std::size_t>(t_new));
  std::vector<float> scores(static_cast<std::size_t>(n));
  pdrop::finalize_and_drop(sums, kKvHeads, kQHeads, pos, kTokens, spans, counts, ws, keep, {},
                           scores);
  const bool same_keep = same_on_all_ranks(keep.data(), static_cast<int>(keep.size() * 8), rank, ranks);
  if (rank == 0) {
    const bool exact_keep = keep == keep_ref;
    const bool exact_scores = std::memcmp(scores.data(), scores_ref.data(), n * sizeof(float)) == 0;
    std::printf("per-kv-head all-reduce (%lld floats): keep list %s rank_and_drop, scores %s, "
                "%s on all %d ranks\n",
                static_cast<long long>(sums.size()), exact_keep ? "==" : "!=",
                exact_scores ? "bit-identical" : "DIFFERENT",
                same_keep ? "same" : "NOT the same", ranks);
    ok = ok && exact_keep && exact_scores;
  }
  ok = ok && same_keep;

  // 2. Summed partials: the small all-reduce, exact only within rounding.
  std::vector<float> partial(static_cast<std::size_t>(n));
  pdrop::score_partial(q_mine, pos, k_mine, spans, ws, partial);
  MPI_Allreduce(MPI_IN_PLACE, partial.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM,
                MPI_COMM_WORLD);
  pdrop::finalize_and_drop(partial, 1, kQHeads, pos, kTokens, spans, counts, ws, keep, {}, scores);
  const bool same_keep2 = same_on_all_ranks(keep.data(), static_cast<int>(keep.size() * 8), rank, ranks);
  if (rank == 0) {
    const double bound = 2.0 * kKvHeads * std::ldexp(1.0, -24) * (1 + 1e-6);
    double worst = 0.0;
    for (std::int64_t i = 0; i < n; ++i)
      worst = std::fmax(worst, std::fabs(static_cast<double>(scores[i]) - scores_ref[i]) /
                                   scores_ref[i]);
    std::int64_t differ = 0;
    for (std::int64_t i = 0; i < t_new; ++i) differ += keep[i] != keep_ref[i];
    std::printf("summed all-reduce (%lld floats): max relative score difference %.3g "
                "(bound %.3g), %lld keep entries differ from rank_and_drop, %s on all ranks\n",
                static_cast<long long>(n), worst, bound, static_cast<long long>(differ),
                same_keep2 ? "same" : "NOT the same");
    ok = ok && worst <= bound;
  }
  ok = ok && same_keep2;
  int all_ok = ok ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &all_ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  if (rank == 0) std::printf("%s\n", all_ok ? "OK" : "MISMATCH");
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const unsigned seed = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : 2024u;
  int code = 1;
  try {
    code = run(rank, ranks, seed);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return code;
}
