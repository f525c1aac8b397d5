// Qwen3-VL DeepStack (pdrop/deepstack.hpp): deepstack_keep and
// compact_deepstack against a plain reference written here over a boolean
// visual_pos_masks, as HF builds it (a drop is hidden[keep], and the feature
// rows of the kept visual tokens are those whose mask entry survives, in
// order); deepstack_add against HF's _deepstack_process written plainly
// (hidden[mask] += rows); every rejection leaving the buffers as they were;
// and the Qwen3-VL golden cases through the host, which match the model
// only with the DeepStack levels compacted and added and with the
// interleaved M-RoPE sections (pipeline_golden_test.cpp checks the match).
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "golden_util.hpp"
#include "host/pipeline_case.hpp"
#include "pdrop/deepstack.hpp"
#include "test_util.hpp"

namespace {

using pdrop::ImageSpan;
using pdrop::TokenView;
using I64 = std::int64_t;

// Random sorted, disjoint spans over `tokens` tokens (some empty).
std::vector<ImageSpan> random_spans(I64 tokens, std::mt19937& rng) {
  std::vector<ImageSpan> spans;
  I64 t = 0;
  while (t < tokens) {
    const I64 gap = std::uniform_int_distribution<I64>(0, 4)(rng);
    const I64 len = std::uniform_int_distribution<I64>(0, 9)(rng);
    if (t + gap + len > tokens) break;
    spans.push_back({t + gap, len});
    t += gap + len;
  }
  return spans;
}

// A random keep list: every token kept with probability 1/2.
std::vector<I64> random_keep(I64 tokens, std::mt19937& rng) {
  std::vector<I64> keep;
  for (I64 t = 0; t < tokens; ++t)
    if (rng() % 2) keep.push_back(t);
  return keep;
}

std::vector<bool> mask_of(const std::vector<ImageSpan>& spans, I64 tokens) {
  std::vector<bool> m(static_cast<std::size_t>(tokens), false);
  for (const auto& s : spans)
    for (I64 t = s.start; t < s.end(); ++t) m[t] = true;
  return m;
}

// The kept DeepStack rows, plainly: walk the tokens, count visual ones,
// record the count of those the keep list holds.
std::vector<I64> naive_rows(const std::vector<ImageSpan>& spans, I64 tokens,
                            const std::vector<I64>& keep) {
  const auto mask = mask_of(spans, tokens);
  std::vector<I64> rows;
  I64 r = 0;
  for (I64 t = 0; t < tokens; ++t) {
    if (!mask[t]) continue;
    for (I64 k : keep)
      if (k == t) rows.push_back(r);
    ++r;
  }
  return rows;
}

TEST(DeepStack, KeptRowsEqualNaiveOnRandomDrops) {
  std::mt19937 rng(21);
  for (int trial = 0; trial < 300; ++trial) {
    const I64 T = std::uniform_int_distribution<I64>(0, 60)(rng);
    const auto spans = random_spans(T, rng);
    const auto keep = random_keep(T, rng);
    const auto want = naive_rows(spans, T, keep);
    std::vector<I64> rows(want.size() + 3, -7);
    const I64 n = pdrop::deepstack_keep(spans, T, keep, rows);
    ASSERT_EQ(n, static_cast<I64>(want.size())) << "trial " << trial;
    EXPECT_EQ(std::vector<I64>(rows.begin(), rows.begin() + n), want) << "trial " << trial;
    for (std::size_t i = want.size(); i < rows.size(); ++i) EXPECT_EQ(rows[i], -7);
  }
}

// Two levels of different strides compacted in place equal the naive
// gather of the kept rows; the padding between rows keeps its bits; then
// deepstack_add on the pruned hidden states equals hidden[mask] += rows
// on the pruned mask (the mask of the kept tokens).
TEST(DeepStack, CompactThenAddEqualsMaskedReferenceAfterTheDrop) {
  std::mt19937 rng(22);
  for (int trial = 0; trial < 100; ++trial) {
    const I64 T = std::uniform_int_distribution<I64>(1, 50)(rng), D = 5;
    const auto spans = random_spans(T, rng);
    const auto keep = random_keep(T, rng);
    I64 nv = 0;
    for (const auto& s : spans) nv += s.length;
    const std::vector<I64> strides{D, D + 3};
    std::vector<std::vector<float>> bufs, orig;
    std::vector<TokenView<float>> levels;
    for (I64 stride : strides) {
      bufs.push_back(pdrop_test::random_vector<float>(static_cast<std::size_t>(nv * stride + 1), rng));
      orig.push_back(bufs.back());
    }
    for (std::size_t j = 0; j < bufs.size(); ++j)
      levels.emplace_back(bufs[j].data(), nv, D, strides[j]);
    std::vector<I64> scratch(static_cast<std::size_t>(nv));
    const I64 n = pdrop::compact_deepstack<float>(levels, spans, T, keep, scratch);
    const auto want_rows = naive_rows(spans, T, keep);
    ASSERT_EQ(n, static_cast<I64>(want_rows.size()));
    for (std::size_t j = 0; j < bufs.size(); ++j) {
      for (I64 i = 0; i < n; ++i)
        for (I64 c = 0; c < D; ++c)
          ASSERT_EQ(bufs[j][i * strides[j] + c], orig[j][want_rows[i] * strides[j] + c])
              << "level " << j << " row " << i;
      for (I64 i = 0; i < nv; ++i)  // padding never written
        for (I64 c = D; c < strides[j]; ++c)
          ASSERT_EQ(bufs[j][i * strides[j] + c], orig[j][i * strides[j] + c]);
    }
    // The pruned sequence: its mask is the old mask at the kept tokens.
    const auto mask0 = mask_of(spans, T);
    std::vector<bool> mask;
    for (I64 k : keep) mask.push_back(mask0[k]);
    std::vector<ImageSpan> new_spans;
    for (I64 i = 0; i < static_cast<I64>(mask.size()); ++i)
      if (mask[i]) {
        if (!new_spans.empty() && new_spans.back().end() == i) ++new_spans.back().length;
        else new_spans.push_back({i, 1});
      }
    const I64 Tn = static_cast<I64>(keep.size());
    auto hidden = pdrop_test::random_vector<float>(static_cast<std::size_t>(Tn * D), rng);
    auto want = hidden;
    I64 r = 0;
    for (I64 t = 0; t < Tn; ++t)
      if (mask[t]) {
        for (I64 c = 0; c < D; ++c) want[t * D + c] = want[t * D + c] + bufs[1][r * strides[1] + c];
        ++r;
      }
    pdrop::deepstack_add(TokenView<float>(hidden.data(), Tn, D),
                         TokenView<const float>(bufs[1].data(), n, D, strides[1]), new_spans);
    EXPECT_TRUE(pdrop_test::same_bits(hidden, want)) << "trial " << trial;
  }
}

TEST(DeepStack, HalfRowsAddThroughFloat) {
  std::vector<pdrop::half> h{pdrop::half(1.0f), pdrop::half(2.0f), pdrop::half(3.0f)};
  const std::vector<pdrop::half> f{pdrop::half(0.5f)};
  const std::vector<ImageSpan> spans{{1, 1}};
  pdrop::deepstack_add(TokenView<pdrop::half>(h.data(), 3, 1),
                       TokenView<const pdrop::half>(f.data(), 1, 1), spans);
  EXPECT_EQ(static_cast<float>(h[0]), 1.0f);
  EXPECT_EQ(static_cast<float>(h[1]), 2.5f);
  EXPECT_EQ(static_cast<float>(h[2]), 3.0f);
}

TEST(DeepStack, RejectsBadInputBeforeWriting) {
  using pdrop_test::expect_invalid;
  const std::vector<ImageSpan> spans{{1, 3}, {6, 2}};  // 5 visual tokens of T = 9
  const std::vector<I64> keep{0, 2, 3, 6, 8};
  std::vector<float> lv(5 * 2, 1.0f);
  const auto lv0 = lv;
  std::vector<I64> rows(5, -1);
  std::vector<TokenView<float>> levels{TokenView<float>(lv.data(), 5, 2)};
  expect_invalid([&] { pdrop::deepstack_keep(spans, 9, std::vector<I64>{2, 1}, rows); },
                 "strictly ascending");
  expect_invalid([&] { pdrop::deepstack_keep(spans, 9, std::vector<I64>{9}, rows); },
                 "keep[0] (9)");
  expect_invalid(
      [&] { pdrop::deepstack_keep(std::vector<ImageSpan>{{4, 2}, {5, 1}}, 9, keep, rows); },
      "visual_spans[1] (start 5");
  expect_invalid([&] { pdrop::deepstack_keep(std::vector<ImageSpan>{{8, 2}}, 9, keep, rows); },
                 "visual_spans[0]");
  std::vector<I64> small(1, -1);
  expect_invalid([&] { pdrop::deepstack_keep(spans, 9, keep, small); }, "rows.size (1)");
  EXPECT_EQ(small[0], -1);
  std::vector<float> wrong(4 * 2, 1.0f);
  std::vector<TokenView<float>> bad{TokenView<float>(lv.data(), 5, 2),
                                    TokenView<float>(wrong.data(), 4, 2)};
  expect_invalid([&] { pdrop::compact_deepstack<float>(bad, spans, 9, keep, rows); },
                 "levels[1].tokens (4)");
  EXPECT_EQ(lv, lv0);
  EXPECT_EQ(rows, std::vector<I64>(5, -1));
  std::vector<float> hidden(9 * 2, 0.0f);
  expect_invalid(
      [&] {
        pdrop::deepstack_add(TokenView<float>(hidden.data(), 9, 2),
                             TokenView<const float>(lv.data(), 4, 2), spans);
      },
      "level.tokens (4)");
  expect_invalid(
      [&] {
        pdrop::deepstack_add(TokenView<float>(hidden.data(), 9, 2),
                             TokenView<const float>(lv.data(), 5, 1, 2), spans);
      },
      "level.features (1)");
  expect_invalid(
      [&] {
        pdrop::deepstack_add(TokenView<float>(hidden.data(), 9, 2),
                             TokenView<const float>(hidden.data() + 2, 5, 2), spans);
      },
      "overlaps");
  EXPECT_EQ(hidden, std::vector<float>(9 * 2, 0.0f));
  // Nothing kept in the visual spans: no rows, nothing written.
  EXPECT_EQ(pdrop::compact_deepstack<float>(levels, spans, 9, std::vector<I64>{0, 5}, rows), 0);
  EXPECT_EQ(lv, lv0);
}

// The Qwen3-VL golden cases check the host against the model
// (GoldenPipeline). They only pass with DeepStack and the interleaved
// sections: the same host without the levels, or with contiguous sections,
// misses the model's prefill output by far more than the 1e-4 tolerance.
TEST(DeepStack, Qwen3VLGoldenCasesNeedDeepStackAndInterleavedSections) {
  namespace fs = std::filesystem;
  for (const char* name : {"qwen3_vl/pyramid_rocket", "qwen3_vl/video_pyramid"}) {
    const fs::path dir = pdrop_test::golden_case_dir(name);
    const auto want = pdrop_test::read_f32(dir / "prefill_out.npy");
    const auto gap = [&](const pdrop_host::PipelineCase& pc) {
      const auto out = pdrop_host::run_pipeline_case(pc);
      if (static_cast<std::size_t>(out.prefill_out.size()) != want.size()) return 1e30;
      double worst = 0;
      for (Eigen::Index i = 0; i < out.prefill_out.size(); ++i)
        worst = std::max(worst, static_cast<double>(std::fabs(out.prefill_out.data()[i] - want[i])));
      return worst;
    };
    const auto pc = pdrop_host::load_pipeline_case(dir);
    ASSERT_EQ(pc.deepstack.size(), 2u) << name;
    ASSERT_EQ(pc.weights.cfg.mrope_layout, pdrop::MRopeLayout::interleaved) << name;
    EXPECT_LE(gap(pc), 1e-4) << name;
    auto no_deepstack = pc;
    no_deepstack.deepstack.clear();
    EXPECT_GT(gap(no_deepstack), 1e-2) << name << " without DeepStack";
    auto contiguous = pc;
    contiguous.weights.cfg.mrope_layout = pdrop::MRopeLayout::sections;
    EXPECT_GT(gap(contiguous), 1e-2) << name << " with contiguous sections";
  }
}

}  // namespace
