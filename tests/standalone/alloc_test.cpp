// A Workspace sized once makes every operator allocation-free: global
// operator new / delete are replaced by counting versions, and each call
// after reserve() must leave the count at zero, for every element type,
// GQA and multi-query shapes, shapes smaller than reserved, the
// parallel_for overloads (serial and on two threads), the tensor-parallel
// partial scorers and finalize functions, and selection's worst cases. Also here, because they need a thread pool started before
// the count is armed: the parallel overload gives bit-identical scores to
// the single-threaded one, whatever the thread count, and so do copies of
// the inputs at other alignments.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};

void* counted_alloc(std::size_t n, std::size_t align = 0) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (n == 0) n = 1;
  void* p = nullptr;
  if (align > alignof(std::max_align_t)) {
    if (posix_memalign(&p, align, n) != 0) p = nullptr;
  } else {
    p = std::malloc(n);
  }
  return p;
}

// Out of line, so that the compiler does not pair a free() it can see with
// the operator new it inlined (-Wmismatched-new-delete).
__attribute__((noinline)) void counted_free(void* p) noexcept { std::free(p); }

}  // namespace

void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted_alloc(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  if (void* p = counted_alloc(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_free(p);
}

namespace {

using pdrop::HeadView;
using pdrop::ImageSpan;

// Allocations made by f().
template <class F>
long allocations_in(F&& f) {
  g_allocations.store(0);
  g_counting.store(true);
  f();
  g_counting.store(false);
  return g_allocations.load();
}

// Two threads (the caller and one worker, started up front) running
// fn(0..n-1) by taking indices from a shared counter: a parallel_for that
// allocates nothing per call.
class TwoThreads {
 public:
  TwoThreads() : worker_([this] { loop(); }) {}
  ~TwoThreads() {
    stop_.store(true);
    worker_.join();
  }
  template <class F>
  void operator()(std::int64_t n, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    call_ = [](void* ctx, std::int64_t i) { (*static_cast<Fn*>(ctx))(i); };
    ctx_ = const_cast<void*>(static_cast<const void*>(&fn));
    n_ = n;
    next_.store(0);
    done_.store(false);
    generation_.fetch_add(1);  // publishes the job
    run();
    while (!done_.load()) std::this_thread::yield();
  }

 private:
  void run() {
    for (std::int64_t i = next_.fetch_add(1); i < n_; i = next_.fetch_add(1)) call_(ctx_, i);
  }
  void loop() {
    long seen = 0;
    while (!stop_.load()) {
      const long g = generation_.load();
      if (g == seen) {
        std::this_thread::yield();
        continue;
      }
      seen = g;
      run();
      done_.store(true);
    }
  }
  void (*call_)(void*, std::int64_t) = nullptr;
  void* ctx_ = nullptr;
  std::int64_t n_ = 0;
  std::atomic<std::int64_t> next_{0};
  std::atomic<long> generation_{0};
  std::atomic<bool> done_{true}, stop_{false};
  std::thread worker_;
};

struct Shape {
  std::int64_t hq, hkv, nq, d, tokens;
  std::vector<ImageSpan> spans;
  std::vector<std::int64_t> pos;
  std::int64_t image() const {
    std::int64_t n = 0;
    for (auto& s : spans) n += s.length;
    return n;
  }
};

std::vector<Shape> shapes() {
  return {
      {32, 32, 1, 128, 700, {{35, 576}}, {699}},           // LLaVA-1.5-like
      {28, 4, 1, 128, 500, {{20, 400}}, {499}},            // GQA 7
      {8, 2, 3, 64, 300, {{10, 100}, {150, 120}}, {299, 200, 120}},  // multi-query, 2 spans
      {4, 1, 2, 37, 90, {{5, 80}}, {89, 30}},              // odd dim, query inside the image
  };
}

template <class T>
struct Inputs {
  std::vector<T> q, k;
  HeadView<const T> qv, kv;
  Inputs(const Shape& s, std::uint32_t seed) {
    std::mt19937 rng(seed);
    q = pdrop_test::random_vector<T>(static_cast<std::size_t>(s.hq * s.nq * s.d), rng, -2, 2);
    k = pdrop_test::random_vector<T>(static_cast<std::size_t>(s.hkv * s.tokens * s.d), rng, -2, 2);
    qv = pdrop::hnd_view<const T>(q.data(), s.hq, s.nq, s.d);
    kv = pdrop::hnd_view<const T>(k.data(), s.hkv, s.tokens, s.d);
  }
};

// The largest of shapes(), for one reserve() covering them all.
void reserve_all(pdrop::Workspace& ws, bool parallel) {
  for (const Shape& s : shapes()) {
    if (parallel)
      ws.reserve_parallel(s.hq, s.hkv, s.nq, s.tokens, s.d, s.image());
    else
      ws.reserve(s.hq, s.hkv, s.nq, s.tokens, s.d, s.image());
  }
}

template <class T>
class AllocTyped : public ::testing::Test {};
TYPED_TEST_SUITE(AllocTyped, pdrop_test::FloatTypes, pdrop_test::FloatTypeNames);

TYPED_TEST(AllocTyped, ScoreAndRankAndDropAllocateNothingAfterReserve) {
  using T = TypeParam;
  pdrop::Workspace ws;
  reserve_all(ws, false);
  const std::size_t bytes = ws.bytes();
  for (const Shape& s : shapes()) {
    SCOPED_TRACE(::testing::Message() << "hq " << s.hq << " hkv " << s.hkv << " nq " << s.nq);
    Inputs<T> in(s, 1);
    std::vector<float> scores(static_cast<std::size_t>(s.image()));
    std::vector<std::int64_t> counts, keep(static_cast<std::size_t>(s.tokens));
    for (auto& sp : s.spans) counts.push_back(sp.length / 3);
    std::vector<ImageSpan> new_spans(s.spans.size());
    std::vector<float> partial(scores.size());
    pdrop::ScoreOptions rounded, fp16_chain, bf16_chain;
    rounded.round_probs = pdrop::ProbRounding::fp16;
    fp16_chain.precision = pdrop::ScorePrecision::fp16_chain;
    bf16_chain.precision = pdrop::ScorePrecision::bf16_chain;
    EXPECT_EQ(allocations_in([&] {
                pdrop::score_image_tokens<T, T>(in.qv, s.pos, in.kv, s.spans, ws, scores);
                pdrop::score_image_tokens<T, T>(in.qv, s.pos, in.kv, s.spans, ws, scores, rounded);
                pdrop::score_image_tokens<T, T>(in.qv, s.pos, in.kv, s.spans, ws, scores,
                                                fp16_chain);
                pdrop::rank_and_drop<T, T>(in.qv, s.pos, in.kv, s.spans, counts, ws, keep,
                                           new_spans, scores, bf16_chain);
                pdrop::rank_and_drop<T, T>(in.qv, s.pos, in.kv, s.spans, counts, ws, keep,
                                           new_spans, scores);
                // Tensor parallel: the summed partial scores, then both
                // finalize forms (on one rank: the partials are the sums).
                pdrop::score_partial<T, T>(in.qv, s.pos, in.kv, s.spans, ws, partial);
                pdrop::finalize_scores(partial, 1, s.hq, s.nq, scores);
                pdrop::finalize_and_drop(partial, 1, s.hq, s.pos, s.tokens, s.spans, counts, ws,
                                         keep, new_spans, scores);
                pdrop::finalize_and_drop_global(partial, 1, s.hq, s.pos, s.tokens, s.spans,
                                                s.image() / 2, ws, keep, new_spans, scores);
              }),
              0);
  }
  EXPECT_EQ(ws.bytes(), bytes);
}

TYPED_TEST(AllocTyped, ParallelOverloadAllocatesNothingAfterReserveParallel) {
  using T = TypeParam;
  pdrop::Workspace ws;
  reserve_all(ws, true);
  const std::size_t bytes = ws.bytes();
  TwoThreads two;
  for (const Shape& s : shapes()) {
    Inputs<T> in(s, 2);
    std::vector<float> scores(static_cast<std::size_t>(s.image()));
    std::vector<float> sums(static_cast<std::size_t>(s.hkv * s.image()));
    const pdrop::HeadShard all{0, s.hkv};
    pdrop::ScoreOptions fp16_chain, bf16_chain;
    fp16_chain.precision = pdrop::ScorePrecision::fp16_chain;
    bf16_chain.precision = pdrop::ScorePrecision::bf16_chain;
    EXPECT_EQ(allocations_in([&] {
                pdrop::score_image_tokens<T, T>(in.qv, s.pos, in.kv, s.spans, ws, scores, {},
                                                pdrop::SerialFor{});
                pdrop::score_image_tokens<T, T>(in.qv, s.pos, in.kv, s.spans, ws, scores, {},
                                                two);
                pdrop::score_image_tokens<T, T>(in.qv, s.pos, in.kv, s.spans, ws, scores,
                                                fp16_chain, pdrop::SerialFor{});
                pdrop::score_image_tokens<T, T>(in.qv, s.pos, in.kv, s.spans, ws, scores,
                                                bf16_chain, two);
                pdrop::score_partial_by_kv_head<T, T>(in.qv, s.pos, in.kv, s.spans, all, ws,
                                                      sums);
                pdrop::score_partial_by_kv_head<T, T>(in.qv, s.pos, in.kv, s.spans, all, ws,
                                                      sums, {}, two);
                pdrop::score_partial<T, T>(in.qv, s.pos, in.kv, s.spans, ws, scores, {}, two);
              }),
              0);
  }
  EXPECT_EQ(ws.bytes(), bytes);
}

TEST(Alloc, SmallerShapesThanReservedAllocateNothing) {
  pdrop::Workspace ws;
  ws.reserve(32, 8, 2, 3000, 128, 2880);
  for (std::int64_t t : {3000, 1000, 40}) {
    const Shape s{32, 8, 2, 128, t, {{t / 10, t / 2}}, {t - 1, t - 2}};
    Inputs<pdrop::half> in(s, static_cast<std::uint32_t>(t));
    std::vector<float> scores(static_cast<std::size_t>(s.image()));
    std::vector<std::int64_t> kept(static_cast<std::size_t>(s.image() / 4));
    EXPECT_EQ(allocations_in([&] {
                pdrop::score_image_tokens<pdrop::half, pdrop::half>(in.qv, s.pos, in.kv, s.spans,
                                                                    ws, scores);
                pdrop::select_top_k(scores, s.image() / 4, ws, kept);
              }),
              0)
        << "T " << t;
  }
}

TEST(Alloc, FirstCallSizesTheWorkspaceLaterCallsReuseIt) {
  const Shape s{8, 2, 1, 64, 400, {{10, 300}}, {399}};
  Inputs<float> in(s, 4);
  pdrop::Workspace ws;  // not reserved
  std::vector<float> scores(300);
  std::vector<std::int64_t> kept(100);
  EXPECT_GT(allocations_in([&] {
              pdrop::score_image_tokens<float, float>(in.qv, s.pos, in.kv, s.spans, ws, scores);
              pdrop::select_top_k(scores, 100, ws, kept);
            }),
            0);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(allocations_in([&] {
                pdrop::score_image_tokens<float, float>(in.qv, s.pos, in.kv, s.spans, ws, scores);
                pdrop::select_top_k(scores, 100, ws, kept);
              }),
              0);
}

TEST(Alloc, SelectWorstCasesAllocateNothing) {
  pdrop::Workspace ws;
  const std::int64_t n = 20000;
  ws.reserve(1, 1, 1, n, 1, n);
  std::mt19937 rng(5);
  std::vector<std::vector<float>> inputs;
  inputs.push_back(pdrop_test::random_vector<float>(n, rng, 0, 1));
  inputs.push_back(std::vector<float>(n, 0.25f));  // all tied
  std::vector<float> two_levels(n);                 // ties at the boundary
  for (std::int64_t i = 0; i < n; ++i) two_levels[i] = (i % 3 == 0) ? 1.0f : 0.5f;
  inputs.push_back(two_levels);
  std::vector<float> close(n);  // one narrow range: several radix levels
  for (std::int64_t i = 0; i < n; ++i)
    close[i] = 1.0f + static_cast<float>((i * 7919) % n) * 1e-7f;
  inputs.push_back(close);
  for (const auto& s : inputs)
    for (std::int64_t k : {std::int64_t{1}, n / 8, n / 2, n - 1}) {
      std::vector<std::int64_t> kept(static_cast<std::size_t>(k));
      EXPECT_EQ(allocations_in([&] { pdrop::select_top_k(s, k, ws, kept); }), 0) << "k " << k;
      EXPECT_EQ(kept, pdrop_test::naive_top_k(s, k)) << "k " << k;
    }
}

TEST(Alloc, V2DropAllocatesNothingAfterReserve) {
  // One drop per span and global, fp16 before and bf16 after, and a batch of
  // two sequences: the workspace reserved once for the image tokens.
  const std::int64_t t = 400, d = 40;
  std::mt19937 rng(9);
  const auto before = pdrop_test::random_vector<pdrop::half>(static_cast<std::size_t>(t * d), rng);
  const auto after = pdrop_test::random_vector<pdrop::bfloat16>(static_cast<std::size_t>(t * d), rng);
  const pdrop::TokenView<const pdrop::half> bv(before.data(), t, d);
  const pdrop::TokenView<const pdrop::bfloat16> av(after.data(), t, d);
  const std::vector<ImageSpan> spans{{5, 150}, {200, 180}};
  const std::vector<std::int64_t> counts{40, 7}, global{100}, qpos{399};
  std::vector<std::int64_t> keep(static_cast<std::size_t>(t)), offsets(3);
  std::vector<std::int64_t> keep2(static_cast<std::size_t>(2 * t));
  std::vector<ImageSpan> ns(2), ns2(4);
  std::vector<float> scores(330);
  pdrop::Workspace ws;
  ws.reserve(1, 1, 1, 1, 1, 2 * 330);
  using Seq = pdrop::V2DropSequence<pdrop::half, pdrop::bfloat16>;
  const std::vector<Seq> seqs{{bv, av, qpos, spans, counts, pdrop::Budget::per_span},
                              {bv, av, qpos, spans, global, pdrop::Budget::global}};
  EXPECT_EQ(allocations_in([&] {
              pdrop::v2drop_scores(bv, av, spans, ws, scores);
              pdrop::v2drop_drop(bv, av, qpos, spans, pdrop::Budget::per_span, counts, ws, keep,
                                 ns, scores);
              pdrop::v2drop_drop(bv, av, qpos, spans, pdrop::Budget::global, global, ws, keep,
                                 ns);
              pdrop::v2drop_batch<pdrop::half, pdrop::bfloat16>(seqs, ws, keep2, offsets, {},
                                                                 ns2);
            }),
            0);
}

TEST(Alloc, CompactionNeverAllocates) {
  const std::int64_t t = 300, d = 48;
  std::vector<float> rows(static_cast<std::size_t>(t * d), 1.0f), out(rows.size());
  std::vector<pdrop::half> kv(static_cast<std::size_t>(4 * t * d));
  std::vector<std::int64_t> positions(static_cast<std::size_t>(t));
  const std::vector<ImageSpan> spans{{10, 200}};
  std::vector<std::int64_t> kept;
  for (std::int64_t i = 10; i < 210; i += 2) kept.push_back(i);
  std::vector<std::int64_t> keep(static_cast<std::size_t>(t - 200 + 100));
  EXPECT_EQ(allocations_in([&] {
              pdrop::build_keep_list(t, spans, kept, keep);
              pdrop::compact_rows<float>(pdrop::TokenView<const float>(rows.data(), t, d), keep,
                                         pdrop::TokenView<float>(out.data(), t, d));
              pdrop::compact_rows(pdrop::TokenView<float>(rows.data(), t, d), keep);
              pdrop::compact_heads(pdrop::hnd_view<pdrop::half>(kv.data(), 4, t, d), keep);
              pdrop::compact_heads(pdrop::nhd_view<pdrop::half>(kv.data(), t, 4, d), keep);
              pdrop::compact_positions(pdrop::TokenView<std::int64_t>(positions.data(), t, 1),
                                       keep);
            }),
            0);
}

// ---- the parallel overload: bit-identical to one thread ----

template <class T>
class ParallelTyped : public ::testing::Test {};
TYPED_TEST_SUITE(ParallelTyped, pdrop_test::FloatTypes, pdrop_test::FloatTypeNames);

TYPED_TEST(ParallelTyped, ScoresBitIdenticalToOneThread) {
  using T = TypeParam;
  TwoThreads two;
  // Runs fn(i) in reverse order: another schedule of the same work.
  const auto reversed = [](std::int64_t n, auto&& fn) {
    for (std::int64_t i = n - 1; i >= 0; --i) fn(i);
  };
  for (const Shape& s : shapes()) {
    SCOPED_TRACE(::testing::Message() << "hq " << s.hq << " hkv " << s.hkv << " nq " << s.nq);
    Inputs<T> in(s, 7);
    for (auto rounding : {pdrop::ProbRounding::none, pdrop::ProbRounding::bf16}) {
      pdrop::ScoreOptions opt;
      opt.round_probs = rounding;
      const auto n = static_cast<std::size_t>(s.image());
      std::vector<float> one(n), serial(n), pool(n), rev(n);
      pdrop::Workspace ws1, ws2;
      pdrop::score_image_tokens<T, T>(in.qv, s.pos, in.kv, s.spans, ws1, one, opt);
      pdrop::score_image_tokens<T, T>(in.qv, s.pos, in.kv, s.spans, ws2, serial, opt,
                                      pdrop::SerialFor{});
      pdrop::score_image_tokens<T, T>(in.qv, s.pos, in.kv, s.spans, ws2, pool, opt, two);
      pdrop::score_image_tokens<T, T>(in.qv, s.pos, in.kv, s.spans, ws2, rev, opt, reversed);
      EXPECT_EQ(pdrop_test::bytes_of(serial), pdrop_test::bytes_of(one));
      EXPECT_EQ(pdrop_test::bytes_of(pool), pdrop_test::bytes_of(one));
      EXPECT_EQ(pdrop_test::bytes_of(rev), pdrop_test::bytes_of(one));
      // And still the right scores.
      const auto ref = pdrop_test::naive_scores(
          s.hq, s.hkv, s.nq, s.d, s.pos, s.spans,
          [&](std::int64_t h, std::int64_t i, std::int64_t e) {
            return pdrop_test::as_double(in.qv.row(h, i)[e]);
          },
          [&](std::int64_t g, std::int64_t t, std::int64_t e) {
            return pdrop_test::as_double(in.kv.row(g, t)[e]);
          });
      if (rounding == pdrop::ProbRounding::none) {
        for (std::size_t i = 0; i < n; ++i) EXPECT_NEAR(one[i], ref[i], 2e-5 * ref[i] + 1e-7);
      }
    }
  }
}

TEST(Parallel, NonFiniteInputGivesTheSameErrorAsOneThread) {
  const Shape s{8, 4, 1, 16, 50, {{5, 40}}, {49}};
  Inputs<float> in(s, 8);
  in.k[static_cast<std::size_t>((2 * 50 + 7) * 16 + 3)] = std::nanf("");  // kv head 2, key 7
  in.k[static_cast<std::size_t>((3 * 50 + 1) * 16)] = INFINITY;            // kv head 3, key 1
  std::vector<float> a(40, -1.0f), b(40, -1.0f);
  pdrop::Workspace ws;
  TwoThreads two;
  std::string one, par;
  try {
    pdrop::score_image_tokens<float, float>(in.qv, s.pos, in.kv, s.spans, ws, a);
  } catch (const pdrop::value_error& e) {
    one = e.what();
  }
  try {
    pdrop::score_image_tokens<float, float>(in.qv, s.pos, in.kv, s.spans, ws, b, {}, two);
  } catch (const pdrop::value_error& e) {
    par = e.what();
  }
  EXPECT_NE(one.find("query head 4"), std::string::npos) << one;  // first group in order: 2
  EXPECT_NE(one.find("key 7"), std::string::npos) << one;
  EXPECT_EQ(one, par);
  EXPECT_EQ(b, std::vector<float>(40, -1.0f));  // untouched
}

TEST(Determinism, ScoresDoNotDependOnBufferAlignmentOrWorkspace) {
  const Shape s{16, 4, 2, 72, 333, {{9, 300}}, {332, 250}};
  Inputs<pdrop::half> in(s, 9);
  std::vector<float> ref(300), got(300);
  pdrop::Workspace ws;
  pdrop::score_image_tokens<pdrop::half, pdrop::half>(in.qv, s.pos, in.kv, s.spans, ws, ref);
  for (std::size_t shift : {1u, 3u, 8u, 13u}) {  // elements: 2..26 bytes off
    std::vector<pdrop::half> q(in.q.size() + shift), k(in.k.size() + shift);
    std::copy(in.q.begin(), in.q.end(), q.begin() + static_cast<std::ptrdiff_t>(shift));
    std::copy(in.k.begin(), in.k.end(), k.begin() + static_cast<std::ptrdiff_t>(shift));
    pdrop::Workspace fresh;
    fresh.reserve(64, 4, 2, 1000, 72, 900);  // another size, another address
    pdrop::score_image_tokens<pdrop::half, pdrop::half>(
        pdrop::hnd_view<const pdrop::half>(q.data() + shift, s.hq, s.nq, s.d), s.pos,
        pdrop::hnd_view<const pdrop::half>(k.data() + shift, s.hkv, s.tokens, s.d), s.spans,
        fresh, got);
    EXPECT_EQ(pdrop_test::bytes_of(got), pdrop_test::bytes_of(ref)) << "shift " << shift;
  }
}

}  // namespace
