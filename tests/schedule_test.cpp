// Schedule: the paper's pyramid, explicit lists, single drop; tokens per
// stage by Python's int() truncation; stage lookup; validation; the
// strategy a schedule carries and the position mode it implies.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "test_util.hpp"

namespace {

using pdrop::Schedule;

TEST(Schedule, PaperPyramidFor32Layers) {
  const auto s = Schedule::pyramid(32, 4, 0.5);
  EXPECT_EQ(s.num_layers(), 32);
  EXPECT_EQ(s.num_stages(), 4);
  EXPECT_EQ(pdrop_test::std_vector(s.drop_layers()), (std::vector<std::int64_t>{8, 16, 24}));
  EXPECT_EQ(pdrop_test::std_vector(s.ratios()), (std::vector<double>{1.0, 0.5, 0.25, 0.125}));
  EXPECT_EQ(pdrop_test::std_vector(s.tokens_per_stage(576)), (std::vector<std::int64_t>{576, 288, 144, 72}));
  EXPECT_EQ(pdrop_test::std_vector(s.tokens_per_stage(2880)), (std::vector<std::int64_t>{2880, 1440, 720, 360}));
}

TEST(Schedule, BoundariesAreMultiplesOfFloorLOverS) {
  EXPECT_EQ(pdrop_test::std_vector(Schedule::pyramid(32, 3, 0.5).drop_layers()), (std::vector<std::int64_t>{10, 20}));
  EXPECT_EQ(pdrop_test::std_vector(Schedule::pyramid(32, 5, 0.5).drop_layers()),
            (std::vector<std::int64_t>{6, 12, 18, 24}));
  EXPECT_EQ(pdrop_test::std_vector(Schedule::pyramid(30, 4, 0.5).drop_layers()), (std::vector<std::int64_t>{7, 14, 21}));
  EXPECT_EQ(pdrop_test::std_vector(Schedule::pyramid(5, 1, 0.5).drop_layers()), (std::vector<std::int64_t>{}));
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
    // drop_before: the drop that happens right before 0-based layer i runs.
    const std::int64_t before = i == 8 ? 1 : i == 16 ? 2 : i == 24 ? 3 : 0;
    EXPECT_EQ(s.drop_before(i), before) << i;
  }
  pdrop_test::expect_invalid([&] { (void)s.drop_before(32); },
                             "pdrop::Schedule::drop_before: layer (32) must be in [0, 32)");
  pdrop_test::expect_invalid([&] { (void)s.drop_before(-1); }, "layer (-1)");
}

TEST(Schedule, TruncatesLikePythonInt) {
  // The odd-count golden pipeline: N0 = 37, ratios 0.6 / 0.3 / 0.1.
  const auto s = Schedule::from_lists(6, {1, 3, 5}, {0.6, 0.3, 0.1});
  // int(37*0.6) = int(22.2) = 22, int(37*0.3) = int(11.1) = 11, int(3.7) = 3.
  EXPECT_EQ(pdrop_test::std_vector(s.tokens_per_stage(37)), (std::vector<std::int64_t>{37, 22, 11, 3}));
  // 0.1 * 30 is 3.0000000000000004 in double: 3, and 0.7 * 10 = 7.000000000000001: 7.
  EXPECT_EQ(Schedule::single_drop(4, 2, 0.1).image_tokens(30, 1), 3);
  EXPECT_EQ(Schedule::single_drop(4, 2, 0.7).image_tokens(10, 1), 7);
  // 0.29 * 100 = 28.999999999999996 in double: Python's int() gives 28.
  EXPECT_EQ(Schedule::single_drop(4, 2, 0.29).image_tokens(100, 1), 28);
}

TEST(Schedule, SingleDropAndDense) {
  const auto f = Schedule::single_drop(32, 2, 0.25);
  EXPECT_EQ(f.num_stages(), 2);
  EXPECT_EQ(pdrop_test::std_vector(f.tokens_per_stage(576)), (std::vector<std::int64_t>{576, 144}));
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

TEST(Schedule, StrategyAndPositionModeDefaults) {
  using pdrop::PositionMode;
  using pdrop::Strategy;
  const auto p = Schedule::pyramid(32, 4, 0.5);
  EXPECT_EQ(p.strategy(), Strategy::pyramid_drop);
  EXPECT_EQ(p.position_mode(), PositionMode::reindex);
  EXPECT_EQ(Schedule::single_drop(32, 2, 0.5).strategy(), Strategy::pyramid_drop);

  const auto f = Schedule::fastv(32, 2, 0.5);
  EXPECT_EQ(f.strategy(), Strategy::fastv);
  EXPECT_EQ(f.position_mode(), PositionMode::keep_original);
  EXPECT_EQ(pdrop_test::std_vector(f.drop_layers()), (std::vector<std::int64_t>{2}));
  EXPECT_EQ(pdrop_test::std_vector(f.tokens_per_stage(576)), (std::vector<std::int64_t>{576, 288}));

  const auto v = Schedule::vtw(32, 16);
  EXPECT_EQ(v.strategy(), Strategy::vtw);
  EXPECT_EQ(v.position_mode(), PositionMode::keep_original);
  EXPECT_EQ(pdrop_test::std_vector(v.tokens_per_stage(576)), (std::vector<std::int64_t>{576, 0}));

  const auto d = Schedule::dart(32, 2, 128.0 / 576.0);
  EXPECT_EQ(d.strategy(), Strategy::dart);
  EXPECT_EQ(d.position_mode(), PositionMode::keep_original);
  EXPECT_EQ(d.image_tokens(576, 1), 128);

  const auto r = p.with_strategy(Strategy::random);
  EXPECT_EQ(r.strategy(), Strategy::random);
  EXPECT_EQ(r.position_mode(), PositionMode::reindex);
  EXPECT_EQ(r.drop_layers(), p.drop_layers());
  EXPECT_EQ(r.ratios(), p.ratios());
  EXPECT_EQ(p.strategy(), Strategy::pyramid_drop);  // the original is unchanged
}

// The ratios a pyramid forms are the decimal numbers the authors' scripts
// list ("0.7,0.49,0.343"): for lambda = a / 20 (0.05 ... 1) and k up to 5
// stages, lambda^k is written here as an exact decimal string from integer
// arithmetic (a^k / 20^k = a^k * 5^k / 100^k), parsed by strtod as Python's
// float() would, and every count int(N0 * ratio) for N0 = 1..3000 must be
// the pyramid's.
TEST(Schedule, PyramidRatiosAreTheLiteralDecimalLists) {
  for (int a = 1; a <= 20; ++a) {
    const double lambda = a / 20.0;
    const auto s = Schedule::pyramid(24, 6, lambda);
    unsigned long long num = 1, den_digits = 0;  // lambda^k = num / 10^den_digits
    for (std::int64_t k = 1; k < 6; ++k) {
      num *= static_cast<unsigned long long>(a) * 5;
      den_digits += 2;
      std::string digits = std::to_string(num);
      if (digits.size() <= den_digits) digits.insert(0, den_digits + 1 - digits.size(), '0');
      const std::string literal =
          digits.substr(0, digits.size() - den_digits) + "." + digits.substr(digits.size() - den_digits);
      const double want = std::strtod(literal.c_str(), nullptr);
      EXPECT_EQ(s.ratios()[k], want) << "lambda " << lambda << " k " << k << " " << literal;
      for (std::int64_t n0 = 1; n0 <= 3000; ++n0)
        ASSERT_EQ(s.image_tokens(n0, k), static_cast<std::int64_t>(static_cast<double>(n0) * want))
            << "lambda " << lambda << " k " << k << " N0 " << n0;
    }
  }
  // The case: lambda 0.7 at N0 = 1000 keeps 700, 490, 343 (pow's
  // 0.7^2 = 0.48999999999999994 would keep 489, 0.7^3 342).
  EXPECT_EQ(pdrop_test::std_vector(Schedule::pyramid(32, 4, 0.7).tokens_per_stage(1000)),
            (std::vector<std::int64_t>{1000, 700, 490, 343}));
}

TEST(Schedule, StrategyNamesRoundTrip) {
  using pdrop::Strategy;
  const std::vector<std::pair<Strategy, std::string>> all{
      {Strategy::pyramid_drop, "pyramid_drop"}, {Strategy::fastv, "fastv"},
      {Strategy::vtw, "vtw"}, {Strategy::dart, "dart"}, {Strategy::random, "random"}};
  for (const auto& [s, name] : all) {
    EXPECT_EQ(std::string(pdrop::strategy_name(s)), name);
    EXPECT_EQ(pdrop::parse_strategy(name), s);
  }
}

TEST(Schedule, StrategyValidation) {
  using pdrop::Strategy;
  using pdrop_test::expect_invalid;
  expect_invalid([] { pdrop::parse_strategy("FastV"); }, "name (\"FastV\")");
  expect_invalid([] { pdrop::parse_strategy(""); }, "name (\"\")");
  // VTW keeps nothing after its drop.
  expect_invalid([] { Schedule::single_drop(8, 2, 0.5).with_strategy(Strategy::vtw); },
                 "ratios[0] (0.5) must be 0");
  expect_invalid([] { Schedule::pyramid(8, 2, 0.5).with_strategy(static_cast<Strategy>(12)); },
                 "strategy (12)");
  expect_invalid(
      [] { Schedule::dense(8).with_position_mode(static_cast<pdrop::PositionMode>(5)); },
      "mode (5)");
  expect_invalid([] { Schedule::fastv(8, 8, 0.5); }, "drop_layers[0] (8)");
  expect_invalid([] { Schedule::vtw(8, 0); }, "drop_layers[0] (0)");
  expect_invalid([] { Schedule::dart(8, 2, 1.5); }, "ratios[0] (1.5)");
  // A dense schedule has no drop: any strategy fits it, VTW included.
  EXPECT_EQ(Schedule::dense(8).with_strategy(Strategy::vtw).strategy(), Strategy::vtw);
}


// A default-constructed Schedule is a placeholder: no layers, no drop, one
// stage that keeps every image token; assigning a built one replaces it.
TEST(Schedule, DefaultConstructedIsAnEmptyPlaceholder) {
  pdrop::Schedule s;
  EXPECT_EQ(s.num_layers(), 0);
  EXPECT_EQ(s.num_stages(), 1);
  EXPECT_TRUE(s.drop_layers().empty());
  EXPECT_EQ(pdrop_test::std_vector(s.tokens_per_stage(576)), (std::vector<std::int64_t>{576}));
  EXPECT_EQ(s.strategy(), pdrop::Strategy::pyramid_drop);
  pdrop_test::expect_invalid([&] { (void)s.stage_of_layer(0); }, "layer (0) must be in [0, 0)");
  pdrop_test::expect_invalid([&] { (void)s.drop_before(0); }, "layer (0) must be in [0, 0)");
  s = pdrop::Schedule::pyramid(32, 4, 0.5);
  EXPECT_EQ(pdrop_test::std_vector(s.tokens_per_stage(576)), (std::vector<std::int64_t>{576, 288, 144, 72}));
  EXPECT_EQ(s.keep_rules().size(), 4u);
}

}  // namespace
