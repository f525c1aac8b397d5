// Every golden case (tests/golden: transformers' own Llama, LLaVA,
// LLaVA-NeXT, Qwen2-VL and Qwen2.5-VL language models, fed real photographs
// by their own processors) through the reference host (examples/host):
// prefill with the case's schedule via pdrop's API, then decode.
// Exactly equal: the kept tokens of every drop, the positions after it (1 or
// 3 rows), each layer's cache length and every decode position. Within
// 1e-4: the final-norm rows of the prefill and of each decode step.
//
// Why 1e-4: both sides compute in float32 but sum in different orders
// (Eigen's GEMM blocking vs PyTorch's, std::exp vs torch's); over 4 layers
// the outputs, of magnitude ~1 after the final RMSNorm, agree to 2.3e-6 at
// worst over all cases (printed per case), so 1e-4 leaves 40x room for
// another CPU or compiler. A wrong position, mask, bias, rotary section or
// cache row moves them by 1e-2 or more.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "golden_util.hpp"
#include "host/pipeline_case.hpp"
#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;
namespace npy = pdrop::npy;
using pdrop_test::read_i64;

double max_abs_diff(const pdrop_host::Mat& got, const fs::path& file) {
  const auto want = npy::read(file.string());
  EXPECT_EQ(want.shape.size(), 2u) << file;
  if (want.shape.size() != 2 || got.rows() != want.shape[0] || got.cols() != want.shape[1]) {
    ADD_FAILURE() << file << ": shape (" << want.shape[0] << ", " << want.shape[1]
                  << ") expected, host gave (" << got.rows() << ", " << got.cols() << ")";
    return 1e30;
  }
  const auto w = npy::to_f32(want);
  double worst = 0;
  for (Eigen::Index i = 0; i < got.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(got.data()[i] - w[i])));
  return worst;
}

class GoldenPipeline : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenPipeline, HostMatchesTheModel) {
  const fs::path dir = pdrop_test::golden_case_dir(GetParam());
  const auto pc = pdrop_host::load_pipeline_case(dir);
  const auto out = pdrop_host::run_pipeline_case(pc);
  ASSERT_EQ(out.kept.size(), pc.layer_list.size());
  for (std::size_t j = 0; j < out.kept.size(); ++j) {
    const fs::path d = dir / ("drop_" + std::to_string(j));
    EXPECT_EQ(out.kept[j], read_i64(d / "kept.npy")) << "drop " << j;
    // positions.npy is (rows, T'); the host's are token-major.
    const auto want = read_i64(d / "positions.npy");
    const std::size_t n = out.positions[j].size() / static_cast<std::size_t>(pc.rows);
    ASSERT_EQ(out.positions[j].size(), want.size()) << "drop " << j;
    for (std::size_t t = 0; t < n; ++t)
      for (std::int64_t r = 0; r < pc.rows; ++r)
        ASSERT_EQ(out.positions[j][t * pc.rows + r], want[r * n + t])
            << "drop " << j << ", token " << t << ", row " << r;
  }
  EXPECT_EQ(out.cache_len, read_i64(dir / "cache_len.npy"));
  EXPECT_EQ(out.decode_pos, read_i64(dir / "decode_pos.npy"));
  const double pre = max_abs_diff(out.prefill_out, dir / "prefill_out.npy");
  const double dec = max_abs_diff(out.decode_out, dir / "decode_out.npy");
  EXPECT_LE(pre, 1e-4) << "prefill output";
  EXPECT_LE(dec, 1e-4) << "decode output";
  std::printf("%s: largest difference %.2g (prefill), %.2g (decode)\n", GetParam().c_str(), pre, dec);
}

INSTANTIATE_TEST_SUITE_P(AllCases, GoldenPipeline, ::testing::ValuesIn(pdrop_test::golden_cases()),
                         [](const auto& info) { return pdrop_test::golden_test_name(info.param); });

}  // namespace
