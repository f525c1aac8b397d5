// One translation unit of the link-safety test (tests/link/CMakeLists.txt):
// compiled twice into one program, once for baseline x86-64 and once with
// -mavx2 -mfma -mf16c, with PDROP_LINK_TU naming the entry point. Each copy
// runs a whole drop (score, select, keep list) with pdrop's inline
// functions as that TU compiled them, then the bookkeeping around it: a
// pyramid schedule, the per-sequence record, a Pruner drop and the FLOPs
// model (whose std::vector members once came from whichever TU the linker
// kept).
#include "link_tu.hpp"

#include <cstdint>

#include "pdrop/pdrop.hpp"

void PDROP_LINK_TU(LinkResult& r) {
  // Two query heads over one kv head (GQA group 2), d = 72 (not a multiple
  // of 8), 50 tokens with an image of 40 at 4; values from a fixed formula.
  constexpr std::int64_t hq = 2, hkv = 1, d = 72, tokens = 50;
  static pdrop::half q[hq * d], k[hkv * tokens * d];
  for (std::int64_t i = 0; i < hq * d; ++i)
    q[i] = pdrop::half(static_cast<float>((i * 37) % 23) / 23.0f - 0.5f);
  for (std::int64_t i = 0; i < hkv * tokens * d; ++i)
    k[i] = pdrop::half(static_cast<float>((i * 53) % 31) / 31.0f - 0.5f);
  const pdrop::ImageSpan spans[] = {{4, 40}};
  const std::int64_t query_pos[] = {tokens - 1};
  const std::int64_t counts[] = {pdrop::keep_budget(40, pdrop::KeepRule(0.25))};
  r.abi = PDROP_ABI_NAME;
  try {
    r.target = pdrop::to_string(pdrop::simd_target());
    pdrop::Workspace ws;
    const auto qv = pdrop::hnd_view<const pdrop::half>(q, hq, 1, d);
    const auto kv = pdrop::hnd_view<const pdrop::half>(k, hkv, tokens, d);
    r.kept = pdrop::rank_and_drop(qv, {query_pos, 1}, kv, {spans, 1}, {counts, 1}, ws,
                                  {r.keep, tokens}, {}, {r.scores, 40});
    // Bookkeeping: schedule, record, Pruner, cost model.
    const auto schedule = pdrop::Schedule::pyramid(4, 2, 0.25);
    std::int64_t positions[tokens];
    for (std::int64_t t = 0; t < tokens; ++t) positions[t] = t;
    pdrop::Pruner pruner(schedule, pdrop::TokenView<const std::int64_t>(positions, tokens, 1),
                         {spans, 1});
    pdrop::DropInputs<pdrop::half, pdrop::half> in;
    in.q = qv;
    in.k = kv;
    in.query_pos = {query_pos, 1};
    const auto keep = pruner.drop(2, in);
    r.pruner_kept = keep.size;
    r.cache_length = pruner.sequence().cache_length(3);
    pdrop::ModelShape shape;
    shape.layers = 4;
    shape.hidden = 64;
    shape.ffn = 128;
    shape.heads = 2;
    shape.kv_heads = 1;
    r.flops_reduction = pdrop::sequence_flops(shape, pruner.sequence()).reduction();
  } catch (const pdrop::invalid_argument&) {
    r.error = "a pdrop error";
  }
}
