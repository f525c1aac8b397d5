// The two entry points of tests/link/link_tu.cpp, one per compiled copy.
// Plain arrays only: the copies must instantiate no std template of their
// own, so that any symbol they share comes from pdrop.
#ifndef PDROP_TESTS_LINK_TU_HPP
#define PDROP_TESTS_LINK_TU_HPP

#include <cstdint>

struct LinkResult {
  const char* abi = "";     // PDROP_ABI_NAME of the TU
  const char* target = "";  // the SIMD target its scoring ran
  const char* error = "";   // what() of an exception, if one was thrown
  float scores[40] = {};
  std::int64_t keep[50] = {};
  std::int64_t kept = 0;
  std::int64_t pruner_kept = 0;   // a Pruner's drop of the same tokens
  std::int64_t cache_length = 0;  // the record's cache length after it
  double flops_reduction = 0;     // 1 - pruned / dense prefill FLOPs of the record
};

void run_baseline_tu(LinkResult& r);  // link_tu.cpp built for baseline x86-64
void run_avx2_tu(LinkResult& r);      // link_tu.cpp built with -mavx2 -mfma -mf16c

#endif  // PDROP_TESTS_LINK_TU_HPP
