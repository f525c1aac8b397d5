// A C++ engine built with -fno-exceptions that wants a status code rather
// than the error handler's abort calls the C API (pdrop::c is compiled with
// exceptions in its own library): a bad drop returns a status and the
// message, writes nothing, and the program goes on to a good drop.
#include <cstdint>
#include <cstdio>

#include "pdrop/c_api.h"

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#error "noexcept_status_test must be compiled with -fno-exceptions"
#endif

int main() {
  // 2 query heads over 1 kv head, d = 4, 12 tokens with an image of 8 at 2.
  float q[2 * 4], k[12 * 4];
  for (int i = 0; i < 8; ++i) q[i] = 0.25f * static_cast<float>(i % 3) - 0.2f;
  for (int i = 0; i < 48; ++i) k[i] = 0.1f * static_cast<float>((i * 7) % 11) - 0.5f;
  const pdrop_image_span spans[] = {{2, 8}};
  const std::int64_t query_pos[] = {11};
  std::int64_t counts[] = {9};  // more than the span's 8 tokens
  std::int64_t keep[12], n = -1;
  for (std::int64_t& v : keep) v = -1;

  pdrop_drop_params p = pdrop_drop_default_params();
  p.score.q = pdrop_heads{q, PDROP_TYPE_F32, 2, 1, 4, 4, 4};
  p.score.query_pos = query_pos;
  p.score.n_query = 1;
  p.score.k = pdrop_heads{k, PDROP_TYPE_F32, 1, 12, 4, 48, 4};
  p.score.spans = spans;
  p.score.n_spans = 1;
  p.keep_counts = counts;
  p.n_keep_counts = 1;

  pdrop_workspace* ws = nullptr;
  if (pdrop_workspace_new(&ws) != PDROP_STATUS_OK) return 1;
  const pdrop_status bad = pdrop_rank_and_drop(ws, &p, keep, 12, &n);
  std::printf("status %s: %s\n", pdrop_status_name(bad), pdrop_last_error());
  bool untouched = n == -1;
  for (std::int64_t v : keep) untouched = untouched && v == -1;
  counts[0] = 3;
  const pdrop_status good = pdrop_rank_and_drop(ws, &p, keep, 12, &n);
  pdrop_workspace_free(ws);
  const bool ok = bad == PDROP_STATUS_VALUE_ERROR && untouched && good == PDROP_STATUS_OK &&
                  n == 7 && keep[0] == 0 && keep[1] == 1 && keep[5] == 10 && keep[6] == 11;
  std::printf("%s: kept %lld tokens after the error\n", ok ? "ok" : "FAILED",
              static_cast<long long>(n));
  return ok ? 0 : 1;
}
