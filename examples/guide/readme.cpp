// README.md, "One drop, from a runtime": the README's loop, run as written
// over the toy decoder of toy_decoder.hpp. Its inner part, the drop itself,
// is also the example in pdrop/rank_drop.hpp's header comment.
//
// The check: before each drop the toy decoder works out on its own which
// tokens PyramidDrop keeps; after it, the hidden rows the snippet left must
// be exactly those tokens, in order, with positions 0..T-1. Exit status 0
// when all three drops match.
#include <pdrop/pdrop.hpp>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "toy_decoder.hpp"

int main() {
  using namespace toy;  // the README's names for the runtime's sizes
  Decoder dec;
  auto [T, q_buf, k_buf, hidden, pos] = dec.buffers();  // and buffers
  auto project_qk = [&](int layer) { dec.before_layer(layer); };
  auto run_layer = [](int) {};
  {
    // [snippet one_drop]
    #include <pdrop/pdrop.hpp>

    auto schedule = pdrop::Schedule::pyramid(/*layers*/ 32, /*stages*/ 4, /*lambda*/ 0.5);
    pdrop::ImageSpan image{s, N0};
    // One record per sequence: budgets, spans, cache lengths, decode positions.
    pdrop::SequenceState seq(schedule, pdrop::TokenView<const std::int64_t>(pos, T, 1), {image});
    pdrop::Workspace ws;
    ws.reserve(Hq, Hkv, /*queries*/ 1, T, d, N0);       // after this: no allocation
    std::vector<std::int64_t> keep(T);

    for (int layer = 0; layer < 32; ++layer) {
      project_qk(layer);                                 // your code
      if (std::int64_t stage = schedule.drop_before(layer)) {
        // [snippet rank_drop]
        // This layer's q/k at the current positions (post-RoPE), as your
        // runtime lays them out: HND, NHD or a slice of a fused QKV buffer.
        auto q = pdrop::split_heads(pdrop::TokenView<const float>(q_buf + (T - 1) * Hq * d, 1, Hq * d), Hq);
        auto k = pdrop::nhd_view(k_buf, pdrop::Heads{Hkv}, pdrop::Tokens{T}, pdrop::Dim{d});
        std::int64_t n_keep = 0, last = T - 1;
        seq.keep_counts(stage, pdrop::Budget::per_span, {&n_keep, 1});  // int(N0 * ratio)
        const std::int64_t T_old = T;
        T = pdrop::rank_and_drop(q, {last}, k, seq.spans(), {n_keep}, ws, keep);  // new length
        seq.apply_drop({keep.data(), T});                // checks and records the drop
        pdrop::compact_rows(pdrop::TokenView<float>(hidden, T_old, D), {keep.data(), T});
        pdrop::compact_positions(pdrop::TokenView<std::int64_t>(pos, T_old, 1), {keep.data(), T},
                                 seq.position_mode());
        // [/snippet rank_drop]
      }
      run_layer(layer);                                  // your code, over T rows
    }
    // Decode step t at layer l: position seq.position(l, t) (every M-RoPE row),
    // over seq.cache_length(l) cached rows; seq.append(1) after each step.
    // [/snippet one_drop]
  }
  dec.check_last_drop();
  const bool ok = dec.failures == 0 && dec.drops_checked == 3 && T == toy::T0 - N0 + 3;
  std::printf("%s: README loop, %d drops as PyramidDrop's rule keeps them, %lld tokens left\n",
              ok ? "ok" : "FAILED", dec.drops_checked, static_cast<long long>(T));
  return ok ? 0 : 1;
}
