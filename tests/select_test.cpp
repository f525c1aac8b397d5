// select_top_k against a naive full sort, on random scores with and without
// ties, awkward sizes, every k from 0 to n at the edges.
#include <gtest/gtest.h>

#include "test_util.hpp"

namespace {

using pdrop_test::naive_top_k;

std::vector<std::int64_t> run(const std::vector<float>& s, std::int64_t k,
                              pdrop::Workspace& ws) {
  std::vector<std::int64_t> out(static_cast<std::size_t>(k), -7);
  pdrop::select_top_k(s, k, ws, out);
  return out;
}

TEST(SelectTopK, MatchesFullSortOnRandomScores) {
  std::mt19937 rng(42);
  pdrop::Workspace ws;
  for (std::int64_t n : {1, 2, 3, 7, 63, 64, 65, 575, 576, 577, 2880, 16384}) {
    const auto s = pdrop_test::random_vector<float>(static_cast<std::size_t>(n), rng, 0, 1);
    for (std::int64_t k : {std::int64_t{0}, std::int64_t{1}, n / 8, n / 2, n - 1, n}) {
      if (k < 0) continue;
      EXPECT_EQ(run(s, k, ws), naive_top_k(s, k)) << "n " << n << " k " << k;
    }
  }
}

TEST(SelectTopK, TiesKeepTheLowerIndex) {
  std::mt19937 rng(7);
  pdrop::Workspace ws;
  // Scores from a handful of values: most of the boundary is ties.
  std::uniform_int_distribution<int> level(0, 4);
  for (std::int64_t n : {5, 17, 100, 1000}) {
    std::vector<float> s(static_cast<std::size_t>(n));
    for (auto& x : s) x = 0.25f * static_cast<float>(level(rng));
    for (std::int64_t k = 0; k <= n; k += std::max<std::int64_t>(1, n / 9))
      EXPECT_EQ(run(s, k, ws), naive_top_k(s, k)) << "n " << n << " k " << k;
  }
  // All equal: the first k indices.
  std::vector<float> flat(10, 0.5f);
  EXPECT_EQ(run(flat, 3, ws), (std::vector<std::int64_t>{0, 1, 2}));
}

TEST(SelectTopK, NegativeZeroEqualsPositiveZero) {
  pdrop::Workspace ws;
  EXPECT_EQ(run({-0.0f, 0.0f}, 1, ws), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(run({0.0f, -0.0f}, 1, ws), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(run({-1.0f, -0.0f, -2.0f, 0.0f}, 2, ws), (std::vector<std::int64_t>{1, 3}));
}

TEST(SelectTopK, NegativeAndExtremeValuesOrderCorrectly) {
  pdrop::Workspace ws;
  const float big = std::numeric_limits<float>::max();
  const float tiny = std::numeric_limits<float>::denorm_min();
  const std::vector<float> s{-big, tiny, -tiny, big, -1.0f, 1.0f, 0.0f};
  for (std::int64_t k = 0; k <= 7; ++k) EXPECT_EQ(run(s, k, ws), naive_top_k(s, k));
}

TEST(SelectTopK, RejectsBadInputAndWritesNothing) {
  pdrop::Workspace ws;
  std::vector<float> s{0.1f, 0.2f, 0.3f};
  std::vector<std::int64_t> out(2, -7);
  const auto before = pdrop_test::bytes_of(out);
  pdrop_test::expect_invalid([&] { pdrop::select_top_k(s, 4, ws, out); }, "k (4)");
  pdrop_test::expect_invalid([&] { pdrop::select_top_k(s, -1, ws, out); }, "k (-1)");
  pdrop_test::expect_invalid([&] { pdrop::select_top_k(s, 1, ws, out); },
                             "kept.size (2) must equal k (1)");
  for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    std::vector<float> p{0.1f, bad, 0.3f};
    pdrop_test::expect_invalid([&] { pdrop::select_top_k(p, 2, ws, out); }, "scores[1]");
  }
  pdrop_test::expect_invalid(
      [&] { pdrop::select_top_k({nullptr, 3}, 2, ws, out); }, "scores.data is null");
  EXPECT_EQ(pdrop_test::bytes_of(out), before);
}

}  // namespace
