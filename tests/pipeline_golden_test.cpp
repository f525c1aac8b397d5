// Every pipeline_* golden case through the reference host (examples/host):
// a tiny LLaMA prefilled with PyramidDrop via pdrop's API, then decoded.
// Kept tokens and decode positions exactly equal; outputs within 2e-3.
#include <gtest/gtest.h>

#ifdef PDROP_GOLDEN_DIR

#include <filesystem>

#include "host/pipeline_case.hpp"
#include "golden_util.hpp"
#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;
namespace npy = pdrop::npy;

std::vector<std::string> pipeline_cases() { return pdrop_test::golden_cases("pipeline_"); }

void expect_close(const pdrop_host::Mat& got, const fs::path& file, double tol) {
  const auto want = npy::read(file.string());
  ASSERT_EQ(want.shape.size(), 2u) << file;
  ASSERT_EQ(got.rows(), want.shape[0]) << file;
  ASSERT_EQ(got.cols(), want.shape[1]) << file;
  const auto w = npy::to_f32(want);
  double worst = 0;
  for (Eigen::Index i = 0; i < got.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(got.data()[i] - w[i])));
  EXPECT_LE(worst, tol) << file;
}

class GoldenPipeline : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenPipeline, MatchesReference) {
  const fs::path dir = pdrop_test::golden_case_dir(GetParam());
  const auto pc = pdrop_host::load_pipeline_case(dir);
  const auto out = pdrop_host::run_pipeline_case(pc);
  ASSERT_EQ(out.kept.size(), pc.layer_list.size());
  for (std::size_t j = 0; j < out.kept.size(); ++j)
    EXPECT_EQ(out.kept[j], npy::to_i64(npy::read((dir / ("kept_" + std::to_string(j) + ".npy")).string())))
        << "drop " << j;
  expect_close(out.prefill_out, dir / "prefill_out.npy", 2e-3);
  expect_close(out.decode_out, dir / "decode_out.npy", 2e-3);
  EXPECT_EQ(out.decode_pos, npy::to_i64(npy::read((dir / "decode_pos.npy").string())));
}

INSTANTIATE_TEST_SUITE_P(AllPipelineCases, GoldenPipeline, ::testing::ValuesIn(pipeline_cases()),
                         [](const auto& info) { return info.param; });

TEST(GoldenPipelineIndex, HasThePipelineCases) { EXPECT_GE(pipeline_cases().size(), 3u); }

}  // namespace

#endif  // PDROP_GOLDEN_DIR
