// Every score_* golden case of ../shared/golden through the C++ API: scores
// within rtol 1e-4 of the reference, kept tokens exactly equal. Both the
// step-by-step operators and rank_and_drop are run.
#include <gtest/gtest.h>

#ifdef PDROP_GOLDEN_DIR

#include <filesystem>

#include "pdrop/npy.hpp"
#include "golden_util.hpp"
#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;
namespace npy = pdrop::npy;

std::vector<std::string> score_cases() { return pdrop_test::golden_cases("score_"); }

template <class T>
pdrop::HeadView<const T> head_view_of(const npy::array& a) {
  // (heads, tokens, dim), C order: head-major.
  return pdrop::hnd_view<const T>(a.data<T>(), a.shape.at(0), a.shape.at(1), a.shape.at(2));
}

class GoldenScore : public ::testing::TestWithParam<std::string> {};

template <class T>
void run_case(const fs::path& dir, const npy::array& q, const npy::array& k) {
  const auto pos = npy::to_i64(npy::read((dir / "query_pos.npy").string()));
  const auto span = npy::to_i64(npy::read((dir / "image_span.npy").string()));
  const auto keep = npy::to_i64(npy::read((dir / "keep.npy").string()));
  const auto want_scores = npy::to_f32(npy::read((dir / "scores.npy").string()));
  const auto want_kept = npy::to_i64(npy::read((dir / "kept.npy").string()));
  ASSERT_EQ(span.size(), 2u);
  ASSERT_EQ(keep.size(), 1u);
  const std::vector<pdrop::ImageSpan> spans{{span[0], span[1]}};
  const auto qv = head_view_of<T>(q);
  const auto kv = head_view_of<T>(k);

  pdrop::Workspace ws;
  std::vector<float> scores(static_cast<std::size_t>(span[1]));
  pdrop::score_image_tokens<T, T>(qv, pos, kv, spans, ws, scores);
  ASSERT_EQ(scores.size(), want_scores.size());
  for (std::size_t i = 0; i < scores.size(); ++i)
    ASSERT_NEAR(scores[i], want_scores[i], 1e-4 * std::fabs(want_scores[i]))
        << "image token " << i;
  std::vector<std::int64_t> kept(static_cast<std::size_t>(keep[0]));
  pdrop::select_top_k(scores, keep[0], ws, kept);
  for (auto& x : kept) x += span[0];
  EXPECT_EQ(kept, want_kept);

  // The one-call path: same tokens, and its keep list is text + kept.
  std::vector<std::int64_t> list(static_cast<std::size_t>(kv.tokens));
  std::vector<pdrop::ImageSpan> new_spans(1);
  const std::int64_t t_new =
      pdrop::rank_and_drop<T, T>(qv, pos, kv, spans, {keep.data(), 1}, ws, list, new_spans);
  list.resize(static_cast<std::size_t>(t_new));
  EXPECT_EQ(list, pdrop_test::naive_keep_list(kv.tokens, spans, want_kept));
  EXPECT_EQ(new_spans[0].start, span[0]);
  EXPECT_EQ(new_spans[0].length, keep[0]);
}

TEST_P(GoldenScore, MatchesReferenceTokenForToken) {
  const fs::path dir = pdrop_test::golden_case_dir(GetParam());
  const auto q = npy::read((dir / "q.npy").string());
  const auto k = npy::read((dir / "k.npy").string());
  ASSERT_EQ(q.type, k.type);
  if (q.type == npy::dtype::f4) {
    run_case<float>(dir, q, k);
  } else {
    ASSERT_EQ(q.type, npy::dtype::f2);
    run_case<pdrop::half>(dir, q, k);
  }
}

INSTANTIATE_TEST_SUITE_P(AllScoreCases, GoldenScore, ::testing::ValuesIn(score_cases()),
                         [](const auto& info) { return info.param; });

TEST(GoldenIndex, HasTheScoreCases) {
  // Guards against a golden folder that silently lost its cases.
  EXPECT_GE(score_cases().size(), 7u);
}

}  // namespace

#endif  // PDROP_GOLDEN_DIR
