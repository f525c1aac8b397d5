// FLOPs and memory model: the paper's image-token count, the whole-sequence
// count (text, GQA, head dim) and KV-cache bytes against sums written out by
// hand; the paper's published figures; presets; validation; and pdrop-flops
// run as a user would.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "pdrop/flops.hpp"
#include "test_util.hpp"

namespace {

using pdrop::ModelShape;
using pdrop::Schedule;

// Toy model: L 4, D 8, M 16, H 2, Hkv 1 (head dim 8/2 = 4), N0 10, drops
// after layers 1 and 3 keeping 0.5 and 0.2:
//   layer 0 (stage 0): n = 10
//   layers 1, 2 (stage 1): n = int(10*0.5) = 5
//   layer 3 (stage 2): n = int(10*0.2) = 2
const ModelShape kToy{4, 8, 16, 2, 1, 0};
Schedule toy_schedule() { return Schedule::from_lists(4, {1, 3}, {0.5, 0.2}); }

TEST(Flops, ImageTokenCountByHandOnToyShape) {
  const auto r = pdrop::image_token_flops(kToy, toy_schedule(), 10);
  // 4*n*D^2 + 2*n^2*D + 3*n*D*M with D 8, M 16.
  const double n10 = 4.0 * 10 * 8 * 8 + 2.0 * 10 * 10 * 8 + 3.0 * 10 * 8 * 16;  // 8000
  const double n5 = 4.0 * 5 * 8 * 8 + 2.0 * 5 * 5 * 8 + 3.0 * 5 * 8 * 16;       // 3600
  const double n2 = 4.0 * 2 * 8 * 8 + 2.0 * 2 * 2 * 8 + 3.0 * 2 * 8 * 16;       // 1344
  EXPECT_EQ(pdrop_test::std_vector(r.dense_per_layer), (std::vector<double>{n10, n10, n10, n10}));
  EXPECT_EQ(pdrop_test::std_vector(r.pruned_per_layer), (std::vector<double>{n10, n5, n5, n2}));
  EXPECT_EQ(r.dense, 32000.0);
  EXPECT_EQ(r.pruned, 8000.0 + 3600.0 + 3600.0 + 1344.0);
  EXPECT_DOUBLE_EQ(r.reduction(), 1.0 - 16544.0 / 32000.0);
  EXPECT_EQ(pdrop::layer_image_token_flops(kToy, 5), 3600.0);
  EXPECT_EQ(pdrop::layer_image_token_flops(kToy, 0), 0.0);
}

TEST(Flops, ImageTokenCountIgnoresHeadsAndUsesPythonInt) {
  // The paper's count has no head term: MHA, GQA and another head dim agree.
  const auto base = pdrop::image_token_flops(kToy, toy_schedule(), 10);
  for (const ModelShape& m :
       {ModelShape{4, 8, 16, 2, 2, 0}, ModelShape{4, 8, 16, 8, 1, 0},
        ModelShape{4, 8, 16, 2, 1, 6}}) {
    const auto r = pdrop::image_token_flops(m, toy_schedule(), 10);
    EXPECT_EQ(r.dense, base.dense);
    EXPECT_EQ(r.pruned, base.pruned);
  }
  // N0 7: int(3.5) = 3 in stage 1, int(1.4) = 1 in stage 2 (D 8, M 16: per
  // layer 640n + 16n^2).
  const auto r = pdrop::image_token_flops(kToy, toy_schedule(), 7);
  const double f7 = 640.0 * 7 + 16.0 * 49, f3 = 640.0 * 3 + 16.0 * 9, f1 = 640.0 + 16.0;
  EXPECT_EQ(pdrop_test::std_vector(r.pruned_per_layer), (std::vector<double>{f7, f3, f3, f1}));
  EXPECT_EQ(r.dense, 4 * f7);
}

TEST(Flops, DenseScheduleSavesNothing) {
  const auto r = pdrop::image_token_flops(kToy, Schedule::dense(4), 10);
  EXPECT_EQ(r.pruned, r.dense);
  EXPECT_EQ(r.dense, 32000.0);
  EXPECT_EQ(r.reduction(), 0.0);
  const auto kv = pdrop::kv_cache_bytes(kToy, Schedule::dense(4), 10, 3);
  EXPECT_EQ(kv.reduction(), 0.0);
  EXPECT_EQ(pdrop::CostReport{}.reduction(), 0.0);
}

TEST(Flops, SequenceCountByHandWithGqa) {
  // Toy shape, 3 text tokens: t = 13, 8, 8, 5. H*hd = 2*4 = 8, Hkv*hd = 4.
  auto per_layer = [](double t) {
    return 2.0 * t * 8 * 8        // q, o
           + 2.0 * t * 8 * 4      // k, v (one kv head)
           + 2.0 * t * t * 2 * 4  // scores + weighted sum
           + 3.0 * t * 8 * 16;    // SwiGLU
  };
  const auto r = pdrop::sequence_flops(kToy, toy_schedule(), 10, 3);
  EXPECT_EQ(pdrop_test::std_vector(r.dense_per_layer), (std::vector<double>(4, per_layer(13))));
  EXPECT_EQ(pdrop_test::std_vector(r.pruned_per_layer), (std::vector<double>{per_layer(13), per_layer(8),
                                                     per_layer(8), per_layer(5)}));
  EXPECT_EQ(r.dense, 4 * per_layer(13));
  EXPECT_EQ(r.pruned, per_layer(13) + 2 * per_layer(8) + per_layer(5));
  // Numbers, not just the same lambda: 576t + 16t^2.
  EXPECT_EQ(per_layer(13), 576.0 * 13 + 16.0 * 169);
  EXPECT_EQ(pdrop::layer_sequence_flops(kToy, 8), 576.0 * 8 + 16.0 * 64);
  // Fewer kv heads cost less in k/v only: Hkv 2 adds 2*t*D*hd per layer.
  const ModelShape mha{4, 8, 16, 2, 2, 0};
  EXPECT_EQ(pdrop::layer_sequence_flops(mha, 8) - pdrop::layer_sequence_flops(kToy, 8),
            2.0 * 8 * 8 * 4);
}

TEST(Flops, SequenceCountHeadDimAndPaperIdentity) {
  // head_dim 6 (H*hd = 12 != D): 2*t*8*12 + 2*t*8*6 + 2*t^2*2*6 + 3*t*8*16.
  const ModelShape wide{4, 8, 16, 2, 1, 6};
  auto per_layer = [](double t) {
    return 2.0 * t * 8 * 12 + 2.0 * t * 8 * 6 + 2.0 * t * t * 12 + 3.0 * t * 8 * 16;
  };
  const auto r = pdrop::sequence_flops(wide, toy_schedule(), 10, 0);
  EXPECT_EQ(r.pruned, per_layer(10) + 2 * per_layer(5) + per_layer(2));
  EXPECT_EQ(per_layer(10), 1920.0 + 960.0 + 2400.0 + 3840.0);
  // MHA with H*hd = D and no text: the paper's count.
  const ModelShape mha{4, 8, 16, 2, 2, 0};
  const auto seq = pdrop::sequence_flops(mha, toy_schedule(), 10, 0);
  EXPECT_EQ(seq.dense, 32000.0);
  EXPECT_EQ(seq.pruned, 16544.0);
  // Text adds work in every layer.
  EXPECT_GT(pdrop::sequence_flops(mha, toy_schedule(), 10, 1).pruned, 16544.0);
}

TEST(Flops, KvCacheBytesByHand) {
  // Per token per layer: K and V, Hkv 1, hd 4, 2 bytes = 2*1*4*2 = 16 bytes.
  // 3 text tokens: t = 13, 8, 8, 5.
  const auto r = pdrop::kv_cache_bytes(kToy, toy_schedule(), 10, 3);
  EXPECT_EQ(pdrop_test::std_vector(r.dense_per_layer), (std::vector<double>{208, 208, 208, 208}));
  EXPECT_EQ(pdrop_test::std_vector(r.pruned_per_layer), (std::vector<double>{208, 128, 128, 80}));
  EXPECT_EQ(r.dense, 832.0);
  EXPECT_EQ(r.pruned, 544.0);
  // fp32 doubles it; head_dim 6 and Hkv 2 scale it by 6/4 * 2.
  EXPECT_EQ(pdrop::kv_cache_bytes(kToy, toy_schedule(), 10, 3, 4).pruned, 1088.0);
  const ModelShape m{4, 8, 16, 2, 2, 6};
  EXPECT_EQ(pdrop::kv_cache_bytes(m, toy_schedule(), 10, 3).pruned, 34.0 * 2 * 2 * 6 * 2);
  // LLaVA-1.5-7B, 60 text tokens, fp16: (60+576) tokens * 32 layers * K,V *
  // 4096 * 2 bytes = 318 MiB dense.
  const auto p = pdrop::model_preset("llava-1.5-7b");
  const auto kv = pdrop::kv_cache_bytes(p.shape, Schedule::pyramid(32, 4, 0.5), 576, 60);
  EXPECT_EQ(kv.dense, 636.0 * 32 * 2 * 4096 * 2);
  EXPECT_EQ(kv.pruned, (636.0 + 348 + 204 + 132) * 8 * 2 * 4096 * 2);
}

// round(x, 2 decimals) == want, as the paper prints.
void expect_two_decimals(double tflops, double want) {
  EXPECT_EQ(std::lround(tflops * 100), std::lround(want * 100)) << tflops;
}

TEST(Flops, PaperFiguresLlava15_7b) {
  const auto p = pdrop::model_preset("llava-1.5-7b");
  // The paper's stage ablation (lambda 0.5): dense 3.82; S 3/4/5 pruned
  // 2.13 / 1.78 / 1.38 TFLOPs. S = 5 by the formula is 1.39 (within 1%).
  struct Row {
    std::int64_t stages;
    double paper, rounded;
  };
  for (const Row& row : {Row{3, 2.13, 2.13}, Row{4, 1.78, 1.78}, Row{5, 1.38, 1.39}}) {
    SCOPED_TRACE(row.stages);
    const auto r =
        pdrop::image_token_flops(p.shape, Schedule::pyramid(32, row.stages, 0.5), 576);
    EXPECT_NEAR(r.dense / 1e12, 3.82, 0.01 * 3.82);
    expect_two_decimals(r.dense / 1e12, 3.82);
    EXPECT_NEAR(r.pruned / 1e12, row.paper, 0.01 * row.paper);
    expect_two_decimals(r.pruned / 1e12, row.rounded);
  }
  // 53.4% fewer with the default pyramid.
  const auto r = pdrop::image_token_flops(p.shape, Schedule::pyramid(32, 4, 0.5), 576);
  EXPECT_EQ(std::lround(r.reduction() * 1000), 534);
}

TEST(Flops, PaperFiguresLlavaNext7b) {
  const auto p = pdrop::model_preset("llava-next-7b");
  const auto r = pdrop::image_token_flops(
      p.shape, Schedule::from_lists(32, {8, 16, 24}, {0.5, 0.25, 0.125}), p.image_tokens);
  EXPECT_EQ(std::lround(r.dense / 1e11), 208);  // 20.8 TFLOPs
  EXPECT_NEAR(r.dense / 1e12, 20.8, 0.01 * 20.8);
  expect_two_decimals(r.pruned / 1e12, 9.46);
  EXPECT_EQ(std::lround(r.reduction() * 1000), 546);  // 54.6%: the paper's "55%"
}

TEST(FlopsPreset, ShapesAndNames) {
  // The published shapes: Vicuna-7B under both 7B models, Vicuna-13B.
  struct Want {
    const char* name;
    std::int64_t image_tokens, layers, hidden, ffn, heads, kv_heads, head_dim;
  };
  for (const Want& w : {Want{"llava-1.5-7b", 576, 32, 4096, 11008, 32, 32, 128},
                        Want{"llava-next-7b", 2880, 32, 4096, 11008, 32, 32, 128},
                        Want{"llava-1.5-13b", 576, 40, 5120, 13824, 40, 40, 128}}) {
    SCOPED_TRACE(w.name);
    const auto p = pdrop::model_preset(w.name);
    EXPECT_STREQ(p.name, w.name);
    EXPECT_EQ(p.image_tokens, w.image_tokens);
    EXPECT_EQ(p.shape.layers, w.layers);
    EXPECT_EQ(p.shape.hidden, w.hidden);
    EXPECT_EQ(p.shape.ffn, w.ffn);
    EXPECT_EQ(p.shape.heads, w.heads);
    EXPECT_EQ(p.shape.kv_heads, w.kv_heads);
    EXPECT_EQ(pdrop::resolved_head_dim(p.shape), w.head_dim);
  }
  EXPECT_EQ(pdrop_test::std_vector(pdrop::model_preset_names()),
            (std::vector<std::string>{"llava-1.5-7b", "llava-next-7b", "llava-1.5-13b"}));
  pdrop_test::expect_invalid([] { pdrop::model_preset("llava-7b"); },
                             "unknown preset 'llava-7b'");
  pdrop_test::expect_invalid([] { pdrop::model_preset("LLaVA-1.5-7B"); },
                             "known: llava-1.5-7b, llava-next-7b, llava-1.5-13b");
}

// kToy with one field changed.
ModelShape toy_with(std::int64_t ModelShape::*field, std::int64_t value) {
  ModelShape m = kToy;
  m.*field = value;
  return m;
}

TEST(Flops, Validation) {
  using pdrop_test::expect_invalid;
  const Schedule s = toy_schedule();
  expect_invalid(
      [&] { pdrop::image_token_flops(toy_with(&ModelShape::layers, 0), s, 10); },
      "shape.layers (0)");
  expect_invalid(
      [&] { pdrop::image_token_flops(toy_with(&ModelShape::hidden, -8), s, 10); },
      "shape.hidden (-8)");
  expect_invalid([&] { pdrop::sequence_flops(toy_with(&ModelShape::ffn, 0), s, 10, 0); },
                 "shape.ffn (0)");
  expect_invalid(
      [&] { pdrop::sequence_flops(toy_with(&ModelShape::heads, 0), s, 10, 0); },
      "shape.heads (0)");
  expect_invalid(
      [&] { pdrop::kv_cache_bytes(toy_with(&ModelShape::kv_heads, 0), s, 10, 0); },
      "shape.kv_heads (0)");
  expect_invalid(
      [&] { pdrop::kv_cache_bytes(toy_with(&ModelShape::kv_heads, 3), s, 10, 0); },
      "shape.heads (2) must be a multiple of shape.kv_heads (3)");
  expect_invalid(
      [&] { pdrop::sequence_flops(toy_with(&ModelShape::head_dim, -1), s, 10, 0); },
      "shape.head_dim (-1)");
  const ModelShape three_heads{4, 8, 16, 3, 3, 0};
  expect_invalid([&] { pdrop::sequence_flops(three_heads, s, 10, 0); },
                 "shape.hidden (8) must be a multiple of shape.heads (3)");
  // With an explicit head dim, hidden need not divide by heads.
  EXPECT_NO_THROW(pdrop::sequence_flops(ModelShape{4, 8, 16, 3, 3, 4}, s, 10, 0));
  expect_invalid(
      [&] { pdrop::image_token_flops(kToy, Schedule::pyramid(5, 2, 0.5), 10); },
      "schedule.num_layers() (5) must equal shape.layers (4)");
  expect_invalid([&] { pdrop::image_token_flops(kToy, s, 0); }, "n0 (0)");
  expect_invalid([&] { pdrop::sequence_flops(kToy, s, -3, 0); }, "n0 (-3)");
  expect_invalid([&] { pdrop::sequence_flops(kToy, s, 10, -1); }, "text_tokens (-1)");
  expect_invalid([&] { pdrop::kv_cache_bytes(kToy, s, 10, 0, 0); },
                 "bytes_per_element (0)");
  expect_invalid([&] { pdrop::layer_image_token_flops(kToy, -1); }, "n (-1)");
  expect_invalid([&] { pdrop::layer_sequence_flops(kToy, -2); }, "t (-2)");
  expect_invalid([&] { pdrop::resolved_head_dim(ModelShape{}); }, "shape.layers (0)");
  // The function is named, and the type is value_error.
  EXPECT_THROW(pdrop::kv_cache_bytes(kToy, s, 10, 0, 0), pdrop::value_error);
  expect_invalid([&] { pdrop::kv_cache_bytes(kToy, s, 10, 0, 0); },
                 "pdrop::kv_cache_bytes");
}

// From a sequence's record: two images of 30 and 31 tokens at 0.25 with
// per-image budgets keep 7 + 7 = 14 (the schedule's one-image count says
// int(61 * 0.25) = 15); the KV bytes and FLOPs of each layer count the
// rows the keep lists left, written out here by hand.
TEST(Flops, FromASequenceRecordCountsTheRowsKept) {
  const ModelShape shape{4, 64, 96, 4, 2, 16};
  const auto s = Schedule::single_drop(4, 2, 0.25);
  std::vector<std::int64_t> pos(70);
  for (std::int64_t i = 0; i < 70; ++i) pos[i] = i;
  const std::vector<pdrop::ImageSpan> spans{{3, 30}, {36, 31}};  // text 3 + 3 + 3
  pdrop::SequenceState seq(s, pdrop::TokenView<const std::int64_t>(pos.data(), 70, 1), spans);
  pdrop_test::expect_invalid([&] { pdrop::kv_cache_bytes(shape, seq); },
                             "pdrop::kv_cache_bytes: seq has 0 of its schedule's 1 drops applied");
  std::vector<std::int64_t> counts(2);
  seq.keep_counts(1, pdrop::Budget::per_span, counts);
  ASSERT_EQ(counts, (std::vector<std::int64_t>{7, 7}));
  std::vector<std::int64_t> keep;
  for (std::int64_t t = 0; t < 70; ++t) {
    const bool image1 = t >= 3 && t < 33, image2 = t >= 36 && t < 67;
    if ((!image1 && !image2) || (image1 && t < 10) || (image2 && t < 43)) keep.push_back(t);
  }
  ASSERT_EQ(keep.size(), 9u + 14u);
  seq.apply_drop(keep);
  const double per_token = 2.0 * 2 * 16 * 2;  // K and V, Hkv 2, hd 16, fp16
  const auto kv = pdrop::kv_cache_bytes(shape, seq);
  EXPECT_EQ(pdrop_test::std_vector(kv.dense_per_layer), std::vector<double>(4, 70 * per_token));
  EXPECT_EQ(pdrop_test::std_vector(kv.pruned_per_layer),
            (std::vector<double>{70 * per_token, 70 * per_token, 23 * per_token, 23 * per_token}));
  EXPECT_EQ(kv.pruned, (70.0 + 70 + 23 + 23) * per_token);
  // The schedule form counts the 61 image tokens as one image: 15 kept.
  EXPECT_EQ(pdrop::kv_cache_bytes(shape, s, 61, 9).pruned_per_layer[3], (9 + 15) * per_token);
  const auto fl = pdrop::sequence_flops(shape, seq);
  const double D = 64, M = 96, H = 4, Hkv = 2, hd = 16;
  const auto layer = [&](double t) {
    return 2 * t * D * (H * hd) + 2 * t * D * (Hkv * hd) + 2 * t * t * H * hd + 3 * t * D * M;
  };
  EXPECT_DOUBLE_EQ(fl.pruned, 2 * layer(70) + 2 * layer(23));
  EXPECT_DOUBLE_EQ(fl.dense, 4 * layer(70));
  ModelShape other = shape;
  other.layers = 5;
  pdrop_test::expect_invalid([&] { pdrop::sequence_flops(other, seq); },
                             "seq.schedule().num_layers() (4) must equal shape.layers (5)");
}

}  // namespace

#ifdef PDROP_FLOPS_EXE

#include "tool_util.hpp"

namespace {

using pdrop_test::lines_of;
using pdrop_test::ToolRun;

// Runs pdrop-flops with `args` in a scratch folder.
ToolRun flops_tool(const std::string& args) {
  const pdrop_test::Scratch s("pdrop_flops_test");
  return pdrop_test::run_tool(PDROP_FLOPS_EXE, args, s.dir);
}

// The lines of `out` that start with "image-token prefill TFLOPs:".
std::vector<std::string> image_token_lines(const std::string& out) {
  std::vector<std::string> hits;
  for (const auto& l : lines_of(out))
    if (l.rfind("image-token prefill TFLOPs:", 0) == 0) hits.push_back(l);
  return hits;
}

TEST(FlopsTool, PaperDefaultLlava15_7b) {
  const ToolRun r = flops_tool("--preset llava-1.5-7b --stages 4");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(image_token_lines(r.out),
            (std::vector<std::string>{
                "image-token prefill TFLOPs: dense 3.82, pruned 1.78 (53.4% fewer)"}))
      << r.out;
  // The whole-sequence count and the KV cache are printed too, and say that
  // text is included.
  EXPECT_NE(r.out.find("whole-sequence"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("text included"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("KV cache"), std::string::npos) << r.out;
  // 636 tokens * 32 layers * 16 KiB = 318 MiB dense.
  EXPECT_NE(r.out.find("dense 318.0 MiB"), std::string::npos) << r.out;
}

TEST(FlopsTool, StageAblationAndLlavaNext) {
  struct Case {
    const char* args;
    const char* prefix;
  };
  for (const Case& c :
       {Case{"--preset llava-1.5-7b --stages 3",
             "image-token prefill TFLOPs: dense 3.82, pruned 2.13 ("},
        Case{"--preset llava-1.5-7b --stages 5",
             "image-token prefill TFLOPs: dense 3.82, pruned 1.39 ("},
        Case{"--preset llava-next-7b", "image-token prefill TFLOPs: dense 20.8"}}) {
    SCOPED_TRACE(c.args);
    const ToolRun r = flops_tool(c.args);
    ASSERT_EQ(r.status, 0) << r.err;
    const auto hits = image_token_lines(r.out);
    ASSERT_EQ(hits.size(), 1u) << r.out;
    EXPECT_EQ(hits[0].rfind(c.prefix, 0), 0u) << hits[0];
  }
  const auto next = image_token_lines(flops_tool("--preset llava-next-7b").out);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_NE(next[0].find(", pruned 9.46 (54.6% fewer)"), std::string::npos) << next[0];
}

TEST(FlopsTool, ExplicitListsAndShapeMatchThePreset) {
  const std::string want =
      "image-token prefill TFLOPs: dense 3.82, pruned 1.78 (53.4% fewer)";
  for (const char* args :
       {"--preset llava-1.5-7b --drop-layers 8,16,24 --ratios 0.5,0.25,0.125",
        "--layers 32 --hidden 4096 --ffn 11008 --heads 32 --kv-heads 8 "
        "--image-tokens 576",
        "--layers=32 --hidden=4096 --ffn=11008 --heads=32 --image-tokens=576 "
        "--lambda=0.5"}) {
    SCOPED_TRACE(args);
    const ToolRun r = flops_tool(args);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(image_token_lines(r.out), (std::vector<std::string>{want})) << r.out;
  }
}

TEST(FlopsTool, HelpAndBadInput) {
  const ToolRun help = flops_tool("--help");
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--text-tokens"), std::string::npos);
  EXPECT_NE(help.out.find("llava-next-7b"), std::string::npos);
  for (const char* args : {"--bogus", "--stages", "--stages x", "--preset nope",
                           "--stages 4 --drop-layers 8 --ratios 0.5", "--hidden 4096",
                           "--preset llava-1.5-7b --hidden 4096", "--image-tokens 0",
                           "--drop-layers 8,16 --ratios 0.5", "--lambda 2", "--kv-bytes 0",
                           "--stages 3 --stages 4", "stray"}) {
    SCOPED_TRACE(args);
    const ToolRun r = flops_tool(args);
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.out, "");
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
    EXPECT_EQ(r.err.back(), '\n');
  }
  EXPECT_NE(flops_tool("--preset nope").err.find("llava-1.5-13b"), std::string::npos);
  EXPECT_NE(flops_tool("--bogus").err.find("--bogus"), std::string::npos);
}

}  // namespace

#endif  // PDROP_FLOPS_EXE
