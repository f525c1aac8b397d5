// Schedule: the paper's pyramid, explicit lists, single drop; tokens per
// stage by Python's int() truncation; stage lookup; validation.
#include <gtest/gtest.h>

#include "test_util.hpp"

namespace {

using pdrop::Schedule;

TEST(Schedule, PaperPyramidFor32Layers) {
  const auto s = Schedule::pyramid(32, 4, 0.5);
  EXPECT_EQ(s.num_layers(), 32);
  EXPECT_EQ(s.num_stages(), 4);
  EXPECT_EQ(s.drop_layers(), (std::vector<std::int64_t>{8, 16, 24}));
  EXPECT_EQ(s.ratios(), (std::vector<double>{1.0, 0.5, 0.25, 0.125}));
  EXPECT_EQ(s.tokens_per_stage(576), (std::vector<std::int64_t>{576, 288, 144, 72}));
  EXPECT_EQ(s.tokens_per_stage(2880), (std::vector<std::int64_t>{2880, 1440, 720, 360}));
  EXPECT_EQ(s.position_offset(576, 3), 576 - 72);
}

TEST(Schedule, BoundariesAreMultiplesOfFloorLOverS) {
  EXPECT_EQ(Schedule::pyramid(32, 3, 0.5).drop_layers(), (std::vector<std::int64_t>{10, 20}));
  EXPECT_EQ(Schedule::pyramid(32, 5, 0.5).drop_layers(),
            (std::vector<std::int64_t>{6, 12, 18, 24}));
  EXPECT_EQ(Schedule::pyramid(30, 4, 0.5).drop_layers(), (std::vector<std::int64_t>{7, 14, 21}));
  EXPECT_EQ(Schedule::pyramid(5, 1, 0.5).drop_layers(), (std::vector<std::int64_t>{}));
}

TEST(Schedule, StageOfLayerAndDropAfter) {
  const auto s = Schedule::pyramid(32, 4, 0.5);
  // Naive: stage = number of drop points l with l <= layer (0-based layer
  // index i sits after drop l when i >= l).
  for (std::int64_t i = 0; i < 32; ++i) {
    std::int64_t expect = 0;
    for (std::int64_t l : {8, 16, 24}) expect += (i >= l);
    EXPECT_EQ(s.stage_of_layer(i), expect) << i;
    const std::int64_t after = (i + 1 == 8) ? 1 : (i + 1 == 16) ? 2 : (i + 1 == 24) ? 3 : 0;
    EXPECT_EQ(s.drop_after(i), after) << i;
  }
}

TEST(Schedule, TruncatesLikePythonInt) {
  // The odd-count golden pipeline: N0 = 37, ratios 0.6 / 0.3 / 0.1.
  const auto s = Schedule::from_lists(6, {1, 3, 5}, {0.6, 0.3, 0.1});
  // int(37*0.6) = int(22.2) = 22, int(37*0.3) = int(11.1) = 11, int(3.7) = 3.
  EXPECT_EQ(s.tokens_per_stage(37), (std::vector<std::int64_t>{37, 22, 11, 3}));
  EXPECT_EQ(s.position_offset(37, 2), 26);
  // 0.1 * 30 is 3.0000000000000004 in double: 3, and 0.7 * 10 = 7.000000000000001: 7.
  EXPECT_EQ(Schedule::single_drop(4, 2, 0.1).image_tokens(30, 1), 3);
  EXPECT_EQ(Schedule::single_drop(4, 2, 0.7).image_tokens(10, 1), 7);
  // 0.29 * 100 = 28.999999999999996 in double: Python's int() gives 28.
  EXPECT_EQ(Schedule::single_drop(4, 2, 0.29).image_tokens(100, 1), 28);
}

TEST(Schedule, SingleDropAndDense) {
  const auto f = Schedule::single_drop(32, 2, 0.25);
  EXPECT_EQ(f.num_stages(), 2);
  EXPECT_EQ(f.tokens_per_stage(576), (std::vector<std::int64_t>{576, 144}));
  const auto d = Schedule::dense(32);
  EXPECT_EQ(d.num_stages(), 1);
  EXPECT_EQ(d.stage_of_layer(31), 0);
  EXPECT_EQ(d.image_tokens(576, 0), 576);
}

TEST(Schedule, Validation) {
  using pdrop_test::expect_invalid;
  expect_invalid([] { Schedule::pyramid(0, 1, 0.5); }, "layers (0)");
  expect_invalid([] { Schedule::pyramid(8, 9, 0.5); }, "stages (9)");
  expect_invalid([] { Schedule::pyramid(8, 2, 1.5); }, "lambda (1.5)");
  expect_invalid([] { Schedule::pyramid(8, 2, std::nan("")); }, "lambda (nan)");
  expect_invalid([] { Schedule::from_lists(8, {2, 2}, {0.5, 0.25}); }, "strictly increasing");
  expect_invalid([] { Schedule::from_lists(8, {8}, {0.5}); }, "drop_layers[0] (8)");
  expect_invalid([] { Schedule::from_lists(8, {0}, {0.5}); }, "drop_layers[0] (0)");
  expect_invalid([] { Schedule::from_lists(8, {2, 4}, {0.5}); }, "ratios has 1");
  expect_invalid([] { Schedule::from_lists(8, {2, 4}, {0.25, 0.5}); }, "non-increasing");
  expect_invalid([] { Schedule::from_lists(8, {2}, {-0.1}); }, "ratios[0] (-0.1)");
  const auto s = Schedule::pyramid(8, 2, 0.5);
  expect_invalid([&] { s.stage_of_layer(8); }, "layer (8)");
  expect_invalid([&] { s.image_tokens(10, 2); }, "stage (2)");
  expect_invalid([&] { s.image_tokens(-1, 0); }, "n0 (-1)");
}

}  // namespace
