// Builds against pdrop::pdrop and runs one drop: exit 0 only when the
// pyramid keeps what it should.
#include <pdrop/pdrop.hpp>

#include <cstdio>
#include <vector>

int main() {
  const auto schedule = pdrop::Schedule::pyramid(32, 4, 0.5);
  // One head, dim 1, 6 tokens, image [1, 5): scores grow with the key.
  std::vector<float> q{1.0f}, k{0.0f, 1.0f, 4.0f, 2.0f, 3.0f, 0.0f};
  const std::vector<std::int64_t> pos{5};
  std::vector<pdrop::ImageSpan> spans{{1, 4}};
  const std::vector<std::int64_t> counts{schedule.image_tokens(4, 1)};  // 2
  std::vector<std::int64_t> keep(6);
  pdrop::Workspace ws;
  const std::int64_t t = pdrop::rank_and_drop<float, float>(
      pdrop::hnd_view<const float>(q.data(), 1, 1, 1), pos,
      pdrop::hnd_view<const float>(k.data(), 1, 6, 1), spans, counts, ws, keep);
  const std::vector<std::int64_t> expect{0, 2, 4, 5};
  keep.resize(static_cast<std::size_t>(t));
  std::printf("kept %lld tokens\n", static_cast<long long>(t));
  return keep == expect ? 0 : 1;
}
