// pdrop-bench: every kernel next to a plain baseline and the machine's copy
// bandwidth. Google Benchmark; run `pdrop-bench --benchmark_filter=...`, or
// scripts/bench.sh for the table in bench/README.md.
//
//   memcpy/<bytes>                 plain copy of that many bytes: the bandwidth
//                                  reference for the memory-bound kernels
//   read/<bytes>                   a streaming sum of that many bytes: the bound
//                                  of a kernel that only reads (scoring)
//   fma_peak/<isa>                 independent fused multiply-adds in registers:
//                                  one core's FMA peak (counter flops), the
//                                  bound of a kernel that only computes
//   score/<shape>_<type>           score_image_tokens, one query row (K + q read)
//   score_plain/<shape>_<type>     the same scores, computed plainly
//   score_threads/<shape>_<type>/threads:N   the parallel_for overload
//   score_sweep/<type>/<T>         scaling over the sequence length
//   select/<n>/<k>                 select_top_k; std_sort/, std_partial_sort/,
//                                  std_nth_element/ the baselines
//   select_sweep/<n>               k = n/2
//   compact/<rows>x<width>_<type>  compact_rows in place (hidden states, NHD
//                                  KV rows); compact_gather/ the baseline
//   compact_heads/<heads>x<rows>x<dim>_<type>   HND KV cache rows per head
//   rank_and_drop/llava_next_7b_fp32   score + keep 1440 + keep list + compact
//                                  2940 x 4096 fp32 hidden states (out of place)
//   rank_and_drop_threads/.../threads:N   the same on N threads (parallel_for)
//   rank_and_drop_floor/...        its memory traffic alone: read K, copy the rows
//
// Counters: bytes_per_second (SetBytesProcessed: the bytes the kernel must
// touch at least), tokens/s (sequence tokens, or scores, per second) and,
// for score/ and fma_peak/, flops (floating-point operations per second:
// 2 per multiply-add; for scoring the q.k products, Hq x nq x T x dim).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define PDROP_BENCH_FMA_X86 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define PDROP_BENCH_FMA_NEON 1
#endif

#include "baselines.hpp"
#include "pdrop/pdrop.hpp"
#include "thread_pool.hpp"

namespace {

using pdrop::bfloat16;
using pdrop::half;
using pdrop::HeadView;
using pdrop::ImageSpan;

template <class T>
const char* type_name() {
  if (std::is_same_v<T, float>) return "fp32";
  if (std::is_same_v<T, half>) return "fp16";
  return "bf16";
}

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint32_t seed, float lo = -2.0f,
                             float hi = 2.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

// One query row (the last token) against the whole sequence.
struct Shape {
  std::string name;
  std::int64_t hq, hkv, dim, tokens;
  ImageSpan image;
};

const Shape kLlavaNext{"llava_next_7b", 32, 32, 128, 2940, {35, 2880}};
const Shape kLlava15{"llava_1.5_7b", 32, 32, 128, 636, {35, 576}};
const Shape kQwen2VL{"qwen2_vl_7b_gqa", 28, 4, 128, 2940, {35, 2880}};
const Shape kVideo{"video_16k", 32, 32, 128, 16384, {35, 16320}};

template <class T>
std::int64_t k_bytes(const Shape& s) {
  return s.hkv * s.tokens * s.dim * static_cast<std::int64_t>(sizeof(T));
}

// q (Hq x 1 x dim) and K (Hkv x T x dim, HND) of a shape, and the call's
// fixed arguments.
template <class T>
struct ScoreInputs {
  Shape shape;
  std::vector<T> q, k;
  std::vector<std::int64_t> pos;
  std::vector<ImageSpan> spans;
  std::vector<float> scores;
  ScoreInputs(const Shape& s)
      : shape(s),
        q(random_vector<T>(static_cast<std::size_t>(s.hq * s.dim), 1)),
        k(random_vector<T>(static_cast<std::size_t>(s.hkv * s.tokens * s.dim), 2)),
        pos{s.tokens - 1},
        spans{s.image},
        scores(static_cast<std::size_t>(s.image.length)) {}
  HeadView<const T> qv() const { return pdrop::hnd_view<const T>(q.data(), shape.hq, 1, shape.dim); }
  HeadView<const T> kv() const {
    return pdrop::hnd_view<const T>(k.data(), shape.hkv, shape.tokens, shape.dim);
  }
  std::int64_t bytes() const {
    return k_bytes<T>(shape) + shape.hq * shape.dim * static_cast<std::int64_t>(sizeof(T));
  }
};

// bytes: touched per iteration; tokens: per iteration; ref_bytes: the size
// of the memcpy/ and read/ references this kernel is compared with
// (bench/table.py), 0 for none.
void set_counters(benchmark::State& state, std::int64_t bytes, std::int64_t tokens,
                  std::int64_t ref_bytes = 0) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
  state.counters["tokens/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(tokens),
      benchmark::Counter::kIsRate);
  if (ref_bytes > 0) state.counters["ref_bytes"] = static_cast<double>(ref_bytes);
}

// ---- memcpy: the bandwidth reference ----

std::set<std::int64_t>& memcpy_sizes() {
  static std::set<std::int64_t> sizes;
  return sizes;
}

void BM_memcpy(benchmark::State& state, std::int64_t bytes) {
  std::vector<unsigned char> src(static_cast<std::size_t>(bytes), 1), dst(src.size(), 2);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), src.size());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
}

// ---- read: the other bound of a kernel that only reads ----

std::set<std::int64_t>& read_sizes() {
  static std::set<std::int64_t> sizes;
  return sizes;
}

// Sum of `bytes` of floats, 16 independent lanes (vectorised by the
// compiler): streaming-read bandwidth.
float sum_floats(const float* p, std::int64_t n) {
  float lane[16] = {};
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) lane[j] += p[i + j];
  float s = 0.0f;
  for (; i < n; ++i) s += p[i];
  for (float x : lane) s += x;
  return s;
}

void BM_read(benchmark::State& state, std::int64_t bytes) {
  std::vector<float> src(static_cast<std::size_t>(bytes / 4), 1.0f);
  for (auto _ : state) benchmark::DoNotOptimize(sum_floats(src.data(), bytes / 4));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
}

// ---- fma_peak: the other bound, of a kernel that only computes ----
//
// kChains independent accumulators, each updated by a fused multiply-add per
// step: enough chains to cover the FMA latency on every current core (4-5
// cycles x 2 pipes), few enough to stay in registers (16 on AVX2). Returns
// the sum, so the loop is not optimised away. FLOPs = 2 x lanes x chains x
// steps.
constexpr int kChains = 12;

#if PDROP_BENCH_FMA_X86
__attribute__((target("avx2,fma"))) float fma_chains_avx2(std::int64_t steps, float x) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(x), b = _mm256_set1_ps(0.999f);
  for (std::int64_t s = 0; s < steps; ++s)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], b, a);
  alignas(32) float lanes[8];
  __m256 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm256_add_ps(sum, acc[i]);
  _mm256_store_ps(lanes, sum);
  float total = 0.0f;
  for (float v : lanes) total += v;
  return total;
}
constexpr int kFmaLanes = 8;
const char* const kFmaIsa = "avx2_fma";
bool fma_supported() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
float fma_chains(std::int64_t steps, float x) { return fma_chains_avx2(steps, x); }
#elif PDROP_BENCH_FMA_NEON
float fma_chains(std::int64_t steps, float x) {
  float32x4_t acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = vdupq_n_f32(static_cast<float>(i));
  const float32x4_t a = vdupq_n_f32(x), b = vdupq_n_f32(0.999f);
  for (std::int64_t s = 0; s < steps; ++s)
    for (int i = 0; i < kChains; ++i) acc[i] = vfmaq_f32(a, acc[i], b);
  float32x4_t sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = vaddq_f32(sum, acc[i]);
  return vaddvq_f32(sum);
}
constexpr int kFmaLanes = 4;
const char* const kFmaIsa = "neon";
bool fma_supported() { return true; }
#endif

#if PDROP_BENCH_FMA_X86 || PDROP_BENCH_FMA_NEON
void BM_fma_peak(benchmark::State& state) {
  constexpr std::int64_t steps = 1 << 16;
  float x = 1e-3f;
  for (auto _ : state) {
    benchmark::DoNotOptimize(fma_chains(steps, x));
    benchmark::DoNotOptimize(x);
  }
  state.counters["flops"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2.0 * kFmaLanes * kChains * steps,
      benchmark::Counter::kIsRate);
}
#endif

// ---- scoring ----

template <class T>
void BM_score(benchmark::State& state, Shape shape) {
  ScoreInputs<T> in(shape);
  pdrop::Workspace ws;
  ws.reserve(shape.hq, shape.hkv, 1, shape.tokens, shape.dim, shape.image.length);
  for (auto _ : state) {
    pdrop::score_image_tokens<T, T>(in.qv(), in.pos, in.kv(), in.spans, ws, in.scores);
    benchmark::DoNotOptimize(in.scores.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, in.bytes(), shape.tokens, k_bytes<T>(shape));
  state.counters["flops"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2.0 *
          static_cast<double>(shape.hq * shape.tokens * shape.dim),
      benchmark::Counter::kIsRate);
}

template <class T>
void BM_score_plain(benchmark::State& state, Shape shape) {
  ScoreInputs<T> in(shape);
  std::vector<float> scratch;
  for (auto _ : state) {
    pdrop_bench::score_plain<T, T>(in.qv(), in.pos, in.kv(), in.spans, scratch, in.scores);
    benchmark::DoNotOptimize(in.scores.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, in.bytes(), shape.tokens);
}

template <class T>
void BM_score_threads(benchmark::State& state, Shape shape) {
  ScoreInputs<T> in(shape);
  pdrop::Workspace ws;
  ws.reserve_parallel(shape.hq, shape.hkv, 1, shape.tokens, shape.dim, shape.image.length);
  pdrop_bench::ThreadPool pool(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    pdrop::score_image_tokens<T, T>(in.qv(), in.pos, in.kv(), in.spans, ws, in.scores, {},
                                    pool);
    benchmark::DoNotOptimize(in.scores.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, in.bytes(), shape.tokens);
}

template <class T>
void register_score(const Shape& s) {
  const std::string suffix = s.name + "_" + type_name<T>();
  benchmark::RegisterBenchmark(("score/" + suffix).c_str(), BM_score<T>, s);
  benchmark::RegisterBenchmark(("score_plain/" + suffix).c_str(), BM_score_plain<T>, s);
  memcpy_sizes().insert(k_bytes<T>(s));
  read_sizes().insert(k_bytes<T>(s));
}

template <class T>
void register_sweep() {
  for (std::int64_t t : {512, 1024, 2048, 4096, 8192, 16384, 32768}) {
    const Shape s{"sweep", 32, 32, 128, t, {std::min<std::int64_t>(35, t / 8), t - t / 4}};
    benchmark::RegisterBenchmark(
        ("score_sweep/" + std::string(type_name<T>()) + "/" + std::to_string(t)).c_str(),
        BM_score<T>, s);
    memcpy_sizes().insert(k_bytes<T>(s));
  }
}

// ---- selection ----

// Scores shaped like attention: softmax of normal logits (positive, a few
// decades of range), as select_top_k sees them after scoring.
std::vector<float> attention_like_scores(std::int64_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  std::vector<float> s(static_cast<std::size_t>(n));
  double sum = 0;
  for (auto& x : s) sum += (x = std::exp(dist(rng)));
  for (auto& x : s) x = static_cast<float>(x / sum);
  return s;
}

void BM_select(benchmark::State& state) {
  const std::int64_t n = state.range(0), k = state.range(1);
  const auto s = attention_like_scores(n, 3);
  pdrop::Workspace ws;
  ws.reserve(1, 1, 1, n, 1, n);
  std::vector<std::int64_t> kept(static_cast<std::size_t>(k));
  for (auto _ : state) {
    pdrop::select_top_k(s, k, ws, kept);
    benchmark::DoNotOptimize(kept.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, n * 4, n);
}

template <int Which>
void BM_select_baseline(benchmark::State& state) {
  const std::int64_t n = state.range(0), k = state.range(1);
  const auto s = attention_like_scores(n, 3);
  std::vector<std::int64_t> idx(static_cast<std::size_t>(n)), kept(static_cast<std::size_t>(k));
  std::vector<std::uint64_t> keys(static_cast<std::size_t>(n));
  for (auto _ : state) {
    if (Which == 0) pdrop_bench::select_std_sort(s, k, idx, kept.data());
    if (Which == 1) pdrop_bench::select_std_partial_sort(s, k, idx, kept.data());
    if (Which == 2) pdrop_bench::select_nth_element(s, k, keys, kept.data());
    benchmark::DoNotOptimize(kept.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, n * 4, n);
}

void select_args(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {576, 2880, 16384}) {
    b->Args({n, n / 2});
    b->Args({n, n / 8});
  }
}

// ---- compaction ----

// Keep list of a LLaVA-NeXT-like drop on `rows` tokens: text [0, 35), the
// top half of the image by attention-like (spatially random) scores, text
// after it.
std::vector<std::int64_t> drop_keep_list(std::int64_t rows) {
  const ImageSpan image{35, rows - 60};
  const auto s = attention_like_scores(image.length, 5);
  pdrop::Workspace ws;
  std::vector<std::int64_t> kept(static_cast<std::size_t>(image.length / 2));
  pdrop::select_top_k(s, image.length / 2, ws, kept);
  for (auto& x : kept) x += image.start;
  std::vector<std::int64_t> keep(static_cast<std::size_t>(rows - image.length + image.length / 2));
  pdrop::build_keep_list(rows, {&image, 1}, kept, keep);
  return keep;
}

// Bytes a compaction must move: the rows that change place.
std::int64_t moved_rows(const std::vector<std::int64_t>& keep) {
  std::int64_t n = 0;
  for (std::size_t i = 0; i < keep.size(); ++i) n += keep[i] != static_cast<std::int64_t>(i);
  return n;
}

template <class T>
void BM_compact(benchmark::State& state, std::int64_t rows, std::int64_t width) {
  std::vector<T> buf = random_vector<T>(static_cast<std::size_t>(rows * width), 4);
  const auto keep = drop_keep_list(rows);
  for (auto _ : state) {
    pdrop::compact_rows(pdrop::TokenView<T>(buf.data(), rows, width), keep);
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  const std::int64_t moved = moved_rows(keep) * width * static_cast<std::int64_t>(sizeof(T));
  set_counters(state, moved, rows, moved);
}

template <class T>
void BM_compact_gather(benchmark::State& state, std::int64_t rows, std::int64_t width) {
  std::vector<T> src = random_vector<T>(static_cast<std::size_t>(rows * width), 4);
  const auto keep = drop_keep_list(rows);
  std::vector<T> dst(keep.size() * static_cast<std::size_t>(width));
  for (auto _ : state) {
    pdrop_bench::gather_rows(src.data(), width, keep, dst.data());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, moved_rows(keep) * width * static_cast<std::int64_t>(sizeof(T)), rows);
}

template <class T>
void BM_compact_heads(benchmark::State& state, std::int64_t heads, std::int64_t rows,
                      std::int64_t dim) {
  std::vector<T> buf = random_vector<T>(static_cast<std::size_t>(heads * rows * dim), 4);
  const auto keep = drop_keep_list(rows);
  for (auto _ : state) {
    pdrop::compact_heads(pdrop::hnd_view<T>(buf.data(), heads, rows, dim), keep);
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  const std::int64_t moved =
      heads * moved_rows(keep) * dim * static_cast<std::int64_t>(sizeof(T));
  set_counters(state, moved, rows, moved);
}

template <class T>
void BM_compact_heads_gather(benchmark::State& state, std::int64_t heads, std::int64_t rows,
                             std::int64_t dim) {
  std::vector<T> src = random_vector<T>(static_cast<std::size_t>(heads * rows * dim), 4);
  const auto keep = drop_keep_list(rows);
  const auto n = static_cast<std::int64_t>(keep.size());
  std::vector<T> dst(static_cast<std::size_t>(heads * n * dim));
  for (auto _ : state) {
    for (std::int64_t h = 0; h < heads; ++h)
      pdrop_bench::gather_rows(src.data() + h * rows * dim, dim, keep, dst.data() + h * n * dim);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, heads * moved_rows(keep) * dim * static_cast<std::int64_t>(sizeof(T)),
               rows);
}

template <class T>
void register_compact(std::int64_t rows, std::int64_t width, const std::string& what) {
  const std::string name = std::to_string(rows) + "x" + std::to_string(width) + "_" +
                           type_name<T>() + what;
  benchmark::RegisterBenchmark(("compact/" + name).c_str(), BM_compact<T>, rows, width);
  benchmark::RegisterBenchmark(("compact_gather/" + name).c_str(), BM_compact_gather<T>, rows,
                               width);
  const auto keep = drop_keep_list(rows);
  memcpy_sizes().insert(moved_rows(keep) * width * static_cast<std::int64_t>(sizeof(T)));
}

// ---- one whole drop ----

// LLaVA-NeXT-7B after layer 8: score the 2880 image tokens from the last
// token's q and the next layer's K (fp32), keep 1440, build the keep list,
// and compact the 2940 x 4096 fp32 hidden states into the next stage's
// buffer. Same inputs every iteration (out-of-place compaction), as the
// PyTorch version in torch_rank_and_drop.py.
struct DropInputs {
  static constexpr std::int64_t kHidden = 4096, kKeep = 1440;
  ScoreInputs<float> score{kLlavaNext};
  std::vector<float> hidden = random_vector<float>(
      static_cast<std::size_t>(kLlavaNext.tokens * kHidden), 6);
  std::vector<float> next = std::vector<float>(hidden.size());
  std::vector<std::int64_t> keep = std::vector<std::int64_t>(
      static_cast<std::size_t>(kLlavaNext.tokens));
  std::int64_t bytes() const {
    const std::int64_t t_new = kLlavaNext.tokens - kLlavaNext.image.length + kKeep;
    return score.bytes() + 2 * t_new * kHidden * 4;  // K + q, hidden rows read + written
  }
};

void BM_rank_and_drop(benchmark::State& state) {
  DropInputs in;
  const Shape& s = kLlavaNext;
  pdrop::Workspace ws;
  ws.reserve(s.hq, s.hkv, 1, s.tokens, s.dim, s.image.length);
  const std::int64_t n_keep = DropInputs::kKeep;
  for (auto _ : state) {
    const std::int64_t t_new = pdrop::rank_and_drop<float, float>(
        in.score.qv(), in.score.pos, in.score.kv(), in.score.spans, {&n_keep, 1}, ws, in.keep);
    pdrop::compact_rows<float>(
        pdrop::TokenView<const float>(in.hidden.data(), s.tokens, DropInputs::kHidden),
        {in.keep.data(), t_new}, pdrop::TokenView<float>(in.next.data(), t_new, DropInputs::kHidden));
    benchmark::DoNotOptimize(in.next.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, in.bytes(), s.tokens);
}

// The same step on a pool: scoring over kv heads, compaction in halves.
void BM_rank_and_drop_threads(benchmark::State& state) {
  DropInputs in;
  const Shape& s = kLlavaNext;
  pdrop::Workspace ws;
  ws.reserve_parallel(s.hq, s.hkv, 1, s.tokens, s.dim, s.image.length);
  pdrop_bench::ThreadPool pool(static_cast<int>(state.range(0)));
  std::vector<std::int64_t> kept(DropInputs::kKeep);
  for (auto _ : state) {
    pdrop::score_image_tokens<float, float>(in.score.qv(), in.score.pos, in.score.kv(),
                                            in.score.spans, ws, in.score.scores, {}, pool);
    pdrop::select_top_k(in.score.scores, DropInputs::kKeep, ws, kept);
    for (auto& x : kept) x += s.image.start;
    const std::int64_t t_new = s.tokens - s.image.length + DropInputs::kKeep;
    pdrop::build_keep_list(s.tokens, in.score.spans, kept, {in.keep.data(), t_new});
    const std::int64_t parts = pool.threads();
    pool(parts, [&](std::int64_t p) {
      const std::int64_t lo = t_new * p / parts, hi = t_new * (p + 1) / parts;
      pdrop::compact_rows<float>(
          pdrop::TokenView<const float>(in.hidden.data(), s.tokens, DropInputs::kHidden),
          {in.keep.data() + lo, hi - lo},
          pdrop::TokenView<float>(in.next.data() + lo * DropInputs::kHidden, hi - lo,
                                  DropInputs::kHidden));
    });
    benchmark::DoNotOptimize(in.next.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, in.bytes(), s.tokens);
}

// The memory floor of that step: read K once and copy the kept rows, no
// arithmetic.
void BM_rank_and_drop_floor(benchmark::State& state) {
  DropInputs in;
  const Shape& s = kLlavaNext;
  const auto keep = drop_keep_list(s.tokens);
  const auto k = reinterpret_cast<const float*>(in.score.k.data());
  const std::int64_t row = DropInputs::kHidden;
  for (auto _ : state) {
    benchmark::DoNotOptimize(sum_floats(k, static_cast<std::int64_t>(in.score.k.size())));
    pdrop_bench::gather_rows(in.hidden.data(), row, keep, in.next.data());
    benchmark::DoNotOptimize(in.next.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, in.bytes(), s.tokens);
}

void register_all() {
  for (const Shape& s : {kLlavaNext, kLlava15, kQwen2VL}) {
    register_score<float>(s);
    register_score<half>(s);
    register_score<bfloat16>(s);
  }
  register_score<half>(kVideo);
  register_score<float>(kVideo);
  for (const Shape& s : {kLlavaNext, kQwen2VL}) {
    const std::string suffix = s.name + "_fp16";
    benchmark::RegisterBenchmark(("score_threads/" + suffix).c_str(), BM_score_threads<half>, s)
        ->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();
  }
  register_sweep<half>();

  benchmark::RegisterBenchmark("select", BM_select)->Apply(select_args);
  benchmark::RegisterBenchmark("std_sort", BM_select_baseline<0>)->Apply(select_args);
  benchmark::RegisterBenchmark("std_partial_sort", BM_select_baseline<1>)->Apply(select_args);
  benchmark::RegisterBenchmark("std_nth_element", BM_select_baseline<2>)->Apply(select_args);
  benchmark::RegisterBenchmark("select_sweep", BM_select)
      ->Args({512, 256})->Args({2048, 1024})->Args({8192, 4096})->Args({32768, 16384})
      ->Args({131072, 65536});

  register_compact<float>(2940, 4096, "");        // hidden states, LLaVA-NeXT-7B
  register_compact<half>(2940, 4096, "");         // hidden states fp16 / NHD KV rows (32 x 128)
  register_compact<half>(2940, 1024, "");         // NHD KV rows, 8 kv heads x 128
  benchmark::RegisterBenchmark("compact_heads/32x2940x128_fp16", BM_compact_heads<half>, 32,
                               2940, 128);
  memcpy_sizes().insert(32 * moved_rows(drop_keep_list(2940)) * 128 * 2);
  benchmark::RegisterBenchmark("compact_heads_gather/32x2940x128_fp16",
                               BM_compact_heads_gather<half>, 32, 2940, 128);
  for (std::int64_t rows : {1024, 4096, 16384}) {  // scaling
    benchmark::RegisterBenchmark(("compact_sweep/" + std::to_string(rows) + "x4096_fp16").c_str(),
                                 BM_compact<half>, rows, 4096);
    memcpy_sizes().insert(moved_rows(drop_keep_list(rows)) * 4096 * 2);
  }

  benchmark::RegisterBenchmark("rank_and_drop/llava_next_7b_fp32", BM_rank_and_drop);
  benchmark::RegisterBenchmark("rank_and_drop_floor/llava_next_7b_fp32", BM_rank_and_drop_floor);
  benchmark::RegisterBenchmark("rank_and_drop_threads/llava_next_7b_fp32", BM_rank_and_drop_threads)
      ->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();

#if PDROP_BENCH_FMA_X86 || PDROP_BENCH_FMA_NEON
  if (fma_supported())
    benchmark::RegisterBenchmark((std::string("fma_peak/") + kFmaIsa).c_str(), BM_fma_peak);
#endif
  for (std::int64_t bytes : memcpy_sizes())
    benchmark::RegisterBenchmark(("memcpy/" + std::to_string(bytes)).c_str(), BM_memcpy, bytes);
  for (std::int64_t bytes : read_sizes())
    benchmark::RegisterBenchmark(("read/" + std::to_string(bytes)).c_str(), BM_read, bytes);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // The kernels that ran (run-time dispatch, PDROP_SIMD) and the CPU level
  // the benchmark was compiled for (pdrop/config.hpp).
  benchmark::AddCustomContext("pdrop_simd", pdrop::to_string(pdrop::simd_target()));
  benchmark::AddCustomContext("pdrop_abi", PDROP_ABI_NAME);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
