// pdrop built with -fno-exceptions (tests/noexcept/CMakeLists.txt): a drop
// works, and an error reaches the error handler (pdrop/errors.hpp) with the
// message an exception would carry.
//
//   pdrop_noexcept_test            a valid drop; exit 0 when it is right
//   pdrop_noexcept_test handler    a bad drop with a handler installed: the
//                                  handler prints "handler: <kind>: <message>"
//                                  and exits 0
//   pdrop_noexcept_test default    a bad drop, default handler: "pdrop:
//                                  <kind>: <message>" on stderr, then abort
// CTest matches the printed lines (PASS_REGULAR_EXPRESSION).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "pdrop/pdrop.hpp"

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#error "tests/noexcept must be compiled with -fno-exceptions"
#endif

namespace {

void print_and_exit(const char* kind, const char* message) {
  std::printf("handler: %s: %s\n", kind, message);
  std::fflush(stdout);
  std::_Exit(0);
}

// 2 query heads over 1 kv head, d = 4, 12 tokens with an image of 8 at 2.
std::int64_t drop(std::int64_t keep_count, std::int64_t* keep) {
  static float q[2 * 4], k[12 * 4];
  for (int i = 0; i < 8; ++i) q[i] = 0.25f * static_cast<float>(i % 3) - 0.2f;
  for (int i = 0; i < 48; ++i) k[i] = 0.1f * static_cast<float>((i * 7) % 11) - 0.5f;
  const pdrop::ImageSpan spans[] = {{2, 8}};
  const std::int64_t query_pos[] = {11};
  const std::int64_t counts[] = {keep_count};
  pdrop::Workspace ws;
  return pdrop::rank_and_drop(pdrop::hnd_view<const float>(q, 2, 1, 4), {query_pos, 1},
                              pdrop::hnd_view<const float>(k, 1, 12, 4), {spans, 1},
                              {counts, 1}, ws, {keep, 12});
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t keep[12];
  if (argc > 1 && std::strcmp(argv[1], "handler") == 0) {
    pdrop::set_error_handler(&print_and_exit);
    drop(9, keep);  // 9 > the span's 8 tokens: a value_error
    std::printf("FAILED: the bad drop returned\n");
    return 1;
  }
  if (argc > 1 && std::strcmp(argv[1], "default") == 0) {
    drop(-1, keep);
    std::printf("FAILED: the bad drop returned\n");
    return 1;
  }
  const std::int64_t kept = drop(3, keep);
  bool ok = kept == 3 + 4;
  for (std::int64_t i = 1; ok && i < kept; ++i) ok = keep[i - 1] < keep[i];
  ok = ok && keep[0] == 0 && keep[1] == 1 && keep[kept - 2] == 10 && keep[kept - 1] == 11;
  std::printf("%s: kept %lld tokens\n", ok ? "ok" : "FAILED", static_cast<long long>(kept));
  return ok ? 0 : 1;
}
