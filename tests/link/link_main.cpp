// The link-safety test's program (tests/link/CMakeLists.txt): two copies of
// link_tu.cpp, built for baseline x86-64 and with -mavx2 -mfma -mf16c,
// linked into one program in either order. Each copy must run its own pdrop
// (its own inline namespace, pdrop/config.hpp): the baseline copy must run
// on a CPU without AVX (scripts/test.sh runs it under qemu-x86_64 -cpu
// Nehalem with --baseline-only), and both must drop the same tokens.
//
// Exit code 0 when every check passes, 1 otherwise; prints what it ran.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "link_tu.hpp"

namespace {

bool cpu_runs_avx2_tu() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

int failures = 0;
void check(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool baseline_only = argc > 1 && std::strcmp(argv[1], "--baseline-only") == 0;
  static LinkResult base, avx;
  run_baseline_tu(base);
  std::printf("baseline TU: pdrop::%s, scoring on %s, kept %lld\n", base.abi, base.target,
              static_cast<long long>(base.kept));
  check(*base.error == '\0', "the baseline TU's drop succeeded");
  check(std::strcmp(base.abi, "x86_64") == 0, "the baseline TU's pdrop is pdrop::x86_64");
  check(base.kept == 10 + 4 + 6, "the baseline TU kept 10 image + 10 text tokens");
  check(base.pruner_kept == base.kept && base.cache_length == base.kept,
        "the baseline TU's Pruner made the same drop and recorded it");
  check(base.flops_reduction > 0.0 && base.flops_reduction < 1.0,
        "the baseline TU's FLOPs model saw the drop");
  if (baseline_only || !cpu_runs_avx2_tu()) {
    if (!baseline_only) std::printf("this CPU lacks AVX2/FMA: the -mavx2 TU is not run\n");
    return failures == 0 ? 0 : 1;
  }
  run_avx2_tu(avx);
  std::printf("-mavx2 TU:   pdrop::%s, scoring on %s, kept %lld\n", avx.abi, avx.target,
              static_cast<long long>(avx.kept));
  check(*avx.error == '\0', "the -mavx2 TU's drop succeeded");
  check(std::strcmp(avx.abi, "x86_64_v2_avx_avx2_fma_f16c") == 0,
        "the -mavx2 -mfma -mf16c TU's pdrop is pdrop::x86_64_v2_avx_avx2_fma_f16c");
  check(std::strcmp(avx.target, "avx2") == 0, "the -mavx2 TU scores with its AVX2 kernels");
  check(avx.kept == base.kept && std::equal(base.keep, base.keep + base.kept, avx.keep),
        "both TUs keep the same tokens");
  bool close = true;
  for (int i = 0; close && i < 40; ++i)
    close = std::fabs(avx.scores[i] - base.scores[i]) <= 1e-6f * std::fabs(base.scores[i]);
  check(close, "both TUs' scores agree to 1e-6 relative");
  check(avx.pruner_kept == base.pruner_kept && avx.cache_length == base.cache_length &&
            avx.flops_reduction == base.flops_reduction,
        "both TUs' schedule, record, Pruner and FLOPs model agree");
  return failures == 0 ? 0 : 1;
}
