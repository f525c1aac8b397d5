// docs/integration.md, "Qwen2.5-VL and Qwen3-VL": an engine running
// Qwen3-VL builds the prompt's M-RoPE positions (a video as one grid per
// frame group, timestamp text between them), drops image tokens before a
// layer that still receives DeepStack features, compacts the DeepStack
// levels with the tokens, and adds the next level to the kept image tokens.
//
// The check: the positions equal HF get_rope_index's rule written out here
// (each frame group a t = 1 grid starting after the text before it); after
// the drop, hidden[image token] + level row equals what the token had
// before the drop plus the row that belonged to that same token before the
// drop (the pairing HF's _deepstack_process makes on the unpruned
// sequence). Exit status 0 when all of that holds.
#include <pdrop/pdrop.hpp>

#include <cstdio>
#include <random>
#include <vector>

int main() {
  using I64 = std::int64_t;
  constexpr I64 D = 8, levels = 2;
  // "<t> <vision_start>" 2 frame groups of 2 x 3 tokens, each behind 3
  // timestamp / vision tokens, 4 text tokens of prompt after.
  const std::vector<I64> text{3, 3, 4};
  const std::vector<pdrop::MRopeGrid> grids{{1, 2, 3}, {1, 2, 3}};
  const I64 T = 3 + 6 + 3 + 6 + 4;
  std::vector<I64> pos(static_cast<std::size_t>(T * 3));
  std::vector<pdrop::ImageSpan> images(grids.size());
  pdrop::mrope_positions<I64>(text, grids, pdrop::TokenView<I64>(pos.data(), T, 3), images);
  int bad = 0;
  // get_rope_index: the first frame group starts at 3, spans 3 positions
  // (its width), the 3 text tokens take 6..8, the second group starts at 9.
  const I64 want_second_group_first[3] = {9, 9, 9}, want_last_text = 9 + 3 + 3;
  for (I64 a = 0; a < 3; ++a) bad += pos[12 * 3 + a] != want_second_group_first[a];
  bad += pos[(T - 1) * 3] != want_last_text;

  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(static_cast<std::size_t>(T * D)), level_data(levels * 12 * D);
  for (float& v : x) v = u(rng);
  for (float& v : level_data) v = u(rng);
  const std::vector<float> x0 = x, level0 = level_data;
  std::vector<pdrop::TokenView<float>> level;
  for (I64 j = 0; j < levels; ++j) level.emplace_back(level_data.data() + j * 12 * D, 12, D);
  std::vector<I64> ds_rows(12);  // scratch: the visual token count

  // A drop before layer 1 (level 0 was added after layer 0; level 1 is
  // still to come) keeps image tokens 4, 6, 7 of the first group and 13,
  // 17 of the second, and every text token.
  const std::vector<I64> keep{0, 1, 2, 4, 6, 7, 9, 10, 11, 13, 17, 18, 19, 20, 21};
  const pdrop::span<const I64> kl(keep.data(), static_cast<I64>(keep.size()));
  const I64 l = 1, n_levels = levels;
  const std::vector<pdrop::ImageSpan> spans_before = images;
  // [snippet deepstack]
  pdrop::compact_rows(pdrop::TokenView<float>(x.data(), T, D), kl);
  pdrop::compact_positions(pdrop::TokenView<I64>(pos.data(), T, 3), kl,
                           pdrop::PositionMode::keep_original);
  // the levels still to come lose the dropped visual tokens' rows
  const I64 kept_rows = pdrop::compact_deepstack<float>({level.data() + l, n_levels - l},
                                                        spans_before, T, kl, ds_rows);
  images = {{3, 3}, {9, 2}};  // the spans after the drop (SequenceState gives them)
  const I64 t_new = static_cast<I64>(keep.size());
  // ... decoder layer l runs on t_new rows, then (HF _deepstack_process):
  pdrop::deepstack_add(pdrop::TokenView<float>(x.data(), t_new, D),
                       pdrop::TokenView<const float>(level[l].data, kept_rows, D), images);
  // [/snippet deepstack]
  bad += kept_rows != 5;

  // Old token k's row among the visual tokens: its offset in its group.
  const auto old_row = [](I64 k) { return k < 9 ? k - 3 : 6 + (k - 12); };
  for (I64 i = 0; i < t_new; ++i) {
    const I64 k = keep[static_cast<std::size_t>(i)];
    const bool visual = (k >= 3 && k < 9) || (k >= 12 && k < 18);
    for (I64 c = 0; c < D; ++c) {
      float want = x0[static_cast<std::size_t>(k * D + c)];
      if (visual) want += level0[static_cast<std::size_t>((12 + old_row(k)) * D + c)];
      bad += x[static_cast<std::size_t>(i * D + c)] != want;
    }
  }
  std::printf("qwen3_vl guide: %s\n", bad == 0 ? "positions and DeepStack rows as HF pairs them"
                                               : "WRONG");
  return bad == 0 ? 0 : 1;
}
