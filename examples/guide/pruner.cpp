// pdrop/pruner.hpp's header example: a Pruner over the toy decoder of
// toy_decoder.hpp, the drop at the top of the layer whose q/k score it.
//
// The check: before each drop the toy decoder works out on its own which
// tokens PyramidDrop keeps (from the same q/k); after it, the hidden rows
// left must be exactly those tokens, in order, with positions 0..T-1, and
// the record must say three drops. Exit status 0 when all of that holds.
#include <pdrop/pdrop.hpp>

#include <cstdint>
#include <cstdio>

#include "toy_decoder.hpp"

int main() {
  using namespace toy;  // the example's names for the runtime's sizes
  Decoder dec;
  auto [T, q_buf, k_buf, hidden, pos] = dec.buffers();  // and buffers
  const auto schedule = pdrop::Schedule::pyramid(32, 4, 0.5);
  const pdrop::ImageSpan image{s, N0};
  auto project = [&](std::int64_t layer) { dec.before_layer(layer); };
  auto run_layer = [](std::int64_t) {};
  std::int64_t drops = -1;
  {
    // [snippet pruner]
    pdrop::Pruner pruner(schedule, pdrop::TokenView<const std::int64_t>(pos, T, 1), {image});
    pruner.workspace().reserve(Hq, Hkv, /*queries*/ 1, T, d, N0);  // no allocation after this
    for (std::int64_t layer = 0; layer < 32; ++layer) {
      project(layer);  // your code: this layer's post-RoPE q/k of the current rows
      if (pruner.drop_before(layer)) {
        const std::int64_t last = T - 1;
        pdrop::DropInputs<float, float> in;
        in.q = pdrop::split_heads(pdrop::TokenView<const float>(q_buf + last * Hq * d, 1, Hq * d), Hq);
        in.k = pdrop::nhd_view(k_buf, pdrop::Heads{Hkv}, pdrop::Tokens{T}, pdrop::Dim{d});
        in.query_pos = {&last, 1};  // (a stored span: not a braced list, which would dangle)
        const auto keep = pruner.drop(layer, in);  // the keep list: the kept part only
        pdrop::compact_rows(pdrop::TokenView<float>(hidden, T, D), keep);
        pdrop::compact_positions(pdrop::TokenView<std::int64_t>(pos, T, 1), keep,
                                 pruner.position_mode());
        T = keep.size;  // == pruner.tokens()
      }
      run_layer(layer);  // your code, over T rows
    }
    // [/snippet pruner]
    drops = pruner.sequence().drops_applied();
  }
  dec.check_last_drop();
  const bool ok = dec.failures == 0 && dec.drops_checked == 3 && drops == 3 &&
                  T == toy::T0 - N0 + 3;
  std::printf("%s: Pruner loop, %d drops as PyramidDrop's rule keeps them, %lld tokens left\n",
              ok ? "ok" : "FAILED", dec.drops_checked, static_cast<long long>(T));
  return ok ? 0 : 1;
}
