// Every drop of every golden case (tests/golden, made by transformers' own
// models: reference/make_golden.py) replayed through the C++ API from the
// q/k (and, for DART, the features) the model computed: kept tokens and the
// positions after the drop exactly equal, scores within 2e-5 relative
// (2^-10 with fp16-rounded probabilities).
//
// Why 2e-5: the reference computes softmax in float32 from float64 logits
// and sums in float64; pdrop computes logits in float32 and its own exp.
// The observed difference is below 1e-6 relative; the generator rejects a
// case whose kept set changes under 3e-6 relative noise on every
// probability, so kept tokens are exact, not merely close.
#include <gtest/gtest.h>

#include <filesystem>

#include "golden_util.hpp"
#include "npy.hpp"
#include "pdrop/pdrop.hpp"
#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;
namespace npy = pdrop::npy;
using pdrop_test::read_f32;
using pdrop_test::read_i64;

// options.npy: [strategy, budget, rounding, position mode, DART pivots],
// then optionally [DART text pivots, pivot norm (0 L1, 1 L2), quota].
struct Options {
  pdrop::Strategy strategy;
  pdrop::Budget budget;
  pdrop::ProbRounding rounding;
  pdrop::PositionMode positions;
  pdrop::DartOptions dart;
};

Options read_options(const fs::path& file) {
  const auto o = read_i64(file);
  EXPECT_TRUE(o.size() == 5u || o.size() == 8u) << file;
  pdrop::DartOptions dart;
  dart.pivots = o.at(4);
  dart.text_pivots = o.size() == 8u ? o.at(5) : 0;
  dart.pivot_norm = o.size() == 8u && o.at(6) == 0 ? pdrop::PivotNorm::l1 : pdrop::PivotNorm::l2;
  return {static_cast<pdrop::Strategy>(o.at(0)), static_cast<pdrop::Budget>(o.at(1)),
          static_cast<pdrop::ProbRounding>(o.at(2)), static_cast<pdrop::PositionMode>(o.at(3)),
          dart};
}

std::vector<pdrop::ImageSpan> read_spans(const fs::path& file) {
  const auto a = read_i64(file);
  std::vector<pdrop::ImageSpan> s;
  for (std::size_t i = 0; i + 1 < a.size(); i += 2) s.push_back({a[i], a[i + 1]});
  return s;
}

// Positions (rows, T) row-major as token-major rows x T.
std::vector<std::int64_t> token_major(const npy::array& a) {
  const auto v = npy::to_i64(a);
  const std::int64_t rows = a.shape.at(0), T = a.shape.at(1);
  std::vector<std::int64_t> out(v.size());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t t = 0; t < T; ++t) out[t * rows + r] = v[r * T + t];
  return out;
}

// Every score within `tol` of the reference's, relative.
void expect_scores_near(const std::vector<float>& got, const std::vector<float>& want,
                        double tol) {
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - want[i]) /
                                std::max(1e-30, std::fabs(static_cast<double>(want[i]))));
  EXPECT_LE(worst, tol) << "largest relative score difference";
}

class GoldenDrop : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenDrop, CppApiMatchesTheModel) {
  const fs::path dir = pdrop_test::golden_case_dir(GetParam());
  const std::size_t drops = pdrop_test::golden_drops(dir);
  ASSERT_EQ(drops, read_i64(dir / "layer_list.npy").size());
  npy::array pos_arr = npy::read((dir / "positions.npy").string());
  std::int64_t T = pos_arr.shape.at(1);
  const std::int64_t rows = pos_arr.shape.at(0);
  std::vector<std::int64_t> pos = token_major(pos_arr);
  for (std::size_t j = 0; j < drops; ++j) {
    SCOPED_TRACE("drop " + std::to_string(j));
    const fs::path d = dir / ("drop_" + std::to_string(j));
    const Options opt = read_options(d / "options.npy");
    const auto spans = read_spans(d / "image_span.npy");
    const auto counts = read_i64(d / "keep.npy");
    const auto want_kept = read_i64(d / "kept.npy");
    const npy::array k = npy::read((d / "k.npy").string());
    std::vector<std::int64_t> keep(static_cast<std::size_t>(T));
    std::vector<pdrop::ImageSpan> new_spans(spans.size());
    pdrop::Workspace ws;
    std::int64_t t_new = 0;
    const auto kv = pdrop::hnd_view<const float>(k.data<float>(), k.shape.at(0), k.shape.at(1),
                                                 k.shape.at(2));
    if (opt.strategy == pdrop::Strategy::pyramid_drop || opt.strategy == pdrop::Strategy::fastv) {
      ASSERT_EQ(k.shape.at(1), T);
      const npy::array q = npy::read((d / "q.npy").string());
      const auto qpos = read_i64(d / "query_pos.npy");
      const auto want_scores = read_f32(d / "scores.npy");
      const auto qv = pdrop::hnd_view<const float>(q.data<float>(), q.shape.at(0), q.shape.at(1),
                                                   q.shape.at(2));
      pdrop::ScoreOptions so;
      so.round_probs = opt.rounding;
      std::vector<float> scores(want_scores.size());
      if (opt.budget == pdrop::Budget::global) {
        ASSERT_EQ(counts.size(), 1u);
        t_new = pdrop::rank_and_drop_global<float, float>(qv, qpos, kv, spans, counts[0], ws,
                                                          keep, new_spans, scores, so);
      } else {
        t_new = pdrop::rank_and_drop<float, float>(qv, qpos, kv, spans, counts, ws, keep,
                                                   new_spans, scores, so);
      }
      // fp16-rounded probabilities: one probability near a rounding midpoint
      // may round one fp16 ulp (2^-10 of itself) the other way, which moves
      // a score by at most 2^-10 of it.
      expect_scores_near(scores, want_scores,
                         opt.rounding == pdrop::ProbRounding::none ? 2e-5 : 1.0 / 1024);
    } else if (opt.strategy == pdrop::Strategy::v2drop) {
      // V2Drop: the hidden states entering and leaving the layer before the
      // drop; scores are L2 norms, compared as PyramidDrop's in float32.
      const npy::array before = npy::read((d / "before.npy").string());
      const npy::array after = npy::read((d / "after.npy").string());
      ASSERT_EQ(before.shape.at(0), T);
      const auto qpos = read_i64(d / "query_pos.npy");
      const auto want_scores = read_f32(d / "scores.npy");
      std::vector<float> scores(want_scores.size());
      t_new = pdrop::v2drop_drop<float, float>(
          pdrop::TokenView<const float>(before.data<float>(), before.shape.at(0),
                                        before.shape.at(1)),
          pdrop::TokenView<const float>(after.data<float>(), after.shape.at(0), after.shape.at(1)),
          qpos, spans, opt.budget, counts, ws, keep, new_spans, scores);
      expect_scores_near(scores, want_scores, 2e-5);
    } else {
      pdrop::DropInputs<float, float, float> in;
      in.k = kv;
      npy::array feats;
      if (opt.strategy == pdrop::Strategy::dart) {
        ASSERT_EQ(k.shape.at(1), T);
        feats = npy::read((d / "features.npy").string());
        in.features = pdrop::TokenView<const float>(feats.data<float>(), feats.shape.at(0),
                                                    feats.shape.at(1));
        in.dart = opt.dart;
      } else {
        in.k = pdrop::hnd_view<const float>(nullptr, 0, 0, 0);
      }
      t_new = pdrop::drop_by_strategy(opt.strategy, T, in, spans, counts, ws, keep, new_spans);
    }
    std::vector<std::int64_t> kept;
    for (const auto& s : new_spans)
      kept.insert(kept.end(), keep.begin() + s.start, keep.begin() + s.end());
    EXPECT_EQ(kept, want_kept);
    keep.resize(static_cast<std::size_t>(t_new));
    EXPECT_EQ(keep, pdrop_test::naive_keep_list(T, spans, want_kept));

    // Positions follow the keep list as the model's were made to.
    pdrop::compact_positions(pdrop::TokenView<std::int64_t>(pos.data(), T, rows), keep,
                             opt.positions);
    pos.resize(static_cast<std::size_t>(t_new * rows));
    T = t_new;
    EXPECT_EQ(pos, token_major(npy::read((d / "positions.npy").string())));
  }
}

INSTANTIATE_TEST_SUITE_P(AllCases, GoldenDrop, ::testing::ValuesIn(pdrop_test::golden_cases()),
                         [](const auto& info) { return pdrop_test::golden_test_name(info.param); });

TEST(GoldenIndex, EveryArchitectureHasCases) {
  // Guards against a golden folder that silently lost its cases.
  const auto cases = pdrop_test::golden_cases();
  for (const char* arch : {"llama/", "llava/", "llava_next/", "qwen2_vl/", "qwen2_5_vl/", "qwen3_vl/"})
    EXPECT_TRUE(std::any_of(cases.begin(), cases.end(),
                            [&](const std::string& c) { return c.rfind(arch, 0) == 0; }))
        << arch;
}

}  // namespace
