// One translation unit of the link-safety test (tests/link/CMakeLists.txt):
// compiled twice into one program, once for baseline x86-64 and once with
// -mavx2 -mfma -mf16c, with PDROP_LINK_TU naming the entry point. Each copy
// runs a whole drop (score, select, keep list) with pdrop's inline
// functions as that TU compiled them.
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
  } catch (const pdrop::invalid_argument&) {
    r.error = "a pdrop error";
  }
}
