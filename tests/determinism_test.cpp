// Determinism: the same inputs give bit-identical scores, keep lists and new
// spans however the call is made.
//
// RankDrop: each case runs through every entry of configs() (fresh or
// reused/dirty/reserved workspace, maybe_new_spans aliasing spans, without
// the optional outputs, the pieces composed by hand, a token-major copy, the
// same call on several threads at once), three times each, and every result
// must equal the first config's byte for byte.
//
// Thread counts: rank_and_drop's parallel_for overload runs with
// pdrop::SerialFor and with a std::thread parallel_for at 2 and 3 threads.
//
// Compaction: in place vs out of place (rows, heads, positions) and
// build_keep_list with maybe_new_spans aliasing spans vs separate give the
// same bytes. Replay: two runs of the pdrop-replay process on the same case
// write byte-identical files.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <thread>

#include "npy.hpp"
#include "test_util.hpp"

namespace {

using namespace pdrop_test::names;
using pdrop_test::same_bits;

// One rank_and_drop problem, head-major.
template <class T>
struct Inputs {
  I64 hq, hkv, nq, d, tokens;
  std::vector<T> q, k;
  std::vector<I64> pos, counts;
  std::vector<ImageSpan> spans;
  pdrop::ScoreOptions options;
  HeadView<const T> qv() const { return pdrop::hnd_view<const T>(q.data(), hq, nq, d); }
  HeadView<const T> kv() const { return pdrop::hnd_view<const T>(k.data(), hkv, tokens, d); }
  I64 n_image() const {
    I64 n = 0;
    for (const ImageSpan& s : spans) n += s.length;
    return n;
  }
};

// What a call produced, as bytes.
struct Result {
  I64 t_new = -1;
  std::vector<unsigned char> scores, keep, new_spans;
  bool operator==(const Result& o) const {
    return t_new == o.t_new && scores == o.scores && keep == o.keep && new_spans == o.new_spans;
  }
};

// The Result of a call that returned t_new and wrote these outputs (keep
// cut to its first t_new entries).
Result result_of(I64 t_new, const std::vector<float>& scores, std::vector<I64> keep,
                 const std::vector<ImageSpan>& new_spans) {
  Result r;
  r.t_new = t_new;
  keep.resize(static_cast<std::size_t>(t_new));
  r.scores = pdrop_test::bytes_of(scores);
  r.keep = pdrop_test::bytes_of(keep);
  r.new_spans = pdrop_test::bytes_of(new_spans);
  return r;
}

// rank_and_drop on ws with every output; `pf` (none or one) selects the
// parallel_for overload.
template <class T, class... PF>
Result plain_call(const Inputs<T>& in, pdrop::Workspace& ws, PF... pf) {
  std::vector<float> scores(static_cast<std::size_t>(in.n_image()));
  std::vector<I64> keep(static_cast<std::size_t>(in.tokens), -1);
  std::vector<ImageSpan> ns(in.spans.size());
  const I64 t_new = pdrop::rank_and_drop<T, T>(in.qv(), in.pos, in.kv(), in.spans, in.counts, ws,
                                               keep, ns, scores, in.options, pf...);
  return result_of(t_new, scores, std::move(keep), ns);
}

// rank_and_drop's parallel_for overload, on a fresh workspace (reserved
// with reserve_parallel when `reserved`).
template <class T, class PF>
Result parallel_call(const Inputs<T>& in, PF pf, bool reserved) {
  pdrop::Workspace ws;
  if (reserved) ws.reserve_parallel(in.hq, in.hkv, in.nq, in.tokens, in.d, in.n_image());
  return plain_call(in, ws, pf);
}

template <class T>
struct Config {
  std::string name;
  std::function<Result(const Inputs<T>&)> run;
};

template <class T>
std::vector<Config<T>> configs() {
  std::vector<Config<T>> c;
  c.push_back({"fresh_workspace", [](const Inputs<T>& in) {
                 pdrop::Workspace ws;
                 return plain_call(in, ws);
               }});
  c.push_back({"workspace_dirtied_by_a_larger_call", [](const Inputs<T>& in) {
                 // Scratch full of another problem's values first.
                 static pdrop::Workspace ws;
                 std::mt19937 rng(99);
                 Inputs<T> big{8, 2, 3, 40, 400, pdrop_test::random_vector<T>(8 * 3 * 40, rng, -3, 3),
                               pdrop_test::random_vector<T>(2 * 400 * 40, rng, -3, 3), {399, 200, 50},
                               {100}, {{5, 390}}, {}};
                 plain_call(big, ws);
                 return plain_call(in, ws);
               }});
  c.push_back({"workspace_reserved_up_front", [](const Inputs<T>& in) {
                 pdrop::Workspace ws;
                 ws.reserve(in.hq, in.hkv, in.nq, in.tokens, in.d, in.n_image());
                 return plain_call(in, ws);
               }});
  c.push_back({"new_spans_in_place_over_spans", [](const Inputs<T>& in) {
                 pdrop::Workspace ws;
                 std::vector<float> scores(static_cast<std::size_t>(in.n_image()));
                 std::vector<I64> keep(static_cast<std::size_t>(in.tokens), -1);
                 std::vector<ImageSpan> spans = in.spans;
                 const I64 t_new = pdrop::rank_and_drop<T, T>(in.qv(), in.pos, in.kv(), spans, in.counts,
                                                              ws, keep, spans, scores, in.options);
                 return result_of(t_new, scores, keep, spans);
               }});
  c.push_back({"optional_outputs_in_separate_calls", [](const Inputs<T>& in) {
                 // keep alone, then the new spans alone, then the scores alone.
                 pdrop::Workspace ws;
                 std::vector<I64> keep(static_cast<std::size_t>(in.tokens), -1), scratch(keep);
                 std::vector<ImageSpan> ns(in.spans.size());
                 std::vector<float> scores(static_cast<std::size_t>(in.n_image()));
                 const I64 t_new = pdrop::rank_and_drop<T, T>(in.qv(), in.pos, in.kv(), in.spans,
                                                              in.counts, ws, keep, {}, {}, in.options);
                 pdrop::rank_and_drop<T, T>(in.qv(), in.pos, in.kv(), in.spans, in.counts, ws, scratch,
                                            ns, {}, in.options);
                 pdrop::rank_and_drop<T, T>(in.qv(), in.pos, in.kv(), in.spans, in.counts, ws, scratch,
                                            {}, scores, in.options);
                 return result_of(t_new, scores, keep, ns);
               }});
  c.push_back({"score_select_build_composed_by_hand", [](const Inputs<T>& in) {
                 pdrop::Workspace ws;
                 std::vector<float> scores(static_cast<std::size_t>(in.n_image()));
                 pdrop::score_image_tokens<T, T>(in.qv(), in.pos, in.kv(), in.spans, ws, scores, in.options);
                 std::vector<I64> kept;
                 I64 off = 0;
                 for (std::size_t s = 0; s < in.spans.size(); ++s) {
                   std::vector<I64> part(static_cast<std::size_t>(in.counts[s]));
                   pdrop::select_top_k(span<const float>(scores.data() + off, in.spans[s].length),
                                       in.counts[s], ws, part);
                   for (I64 i : part) kept.push_back(in.spans[s].start + i);
                   off += in.spans[s].length;
                 }
                 const I64 t_new = in.tokens - in.n_image() + static_cast<I64>(kept.size());
                 std::vector<I64> keep(static_cast<std::size_t>(t_new));
                 std::vector<ImageSpan> ns(in.spans.size());
                 pdrop::build_keep_list(in.tokens, in.spans, kept, keep, ns);
                 return result_of(t_new, scores, keep, ns);
               }});
  c.push_back({"token_major_padded_copy", [](const Inputs<T>& in) {
                 // The same values laid out NHD with 3 elements of padding.
                 const I64 row = in.d + 3;
                 std::vector<T> q(static_cast<std::size_t>(in.nq * in.hq * row), T(0.0f));
                 std::vector<T> k(static_cast<std::size_t>(in.tokens * in.hkv * row), T(0.0f));
                 for (I64 h = 0; h < in.hq; ++h)
                   for (I64 i = 0; i < in.nq; ++i)
                     std::copy_n(in.qv().row(h, i), in.d, q.begin() + (i * in.hq + h) * row);
                 for (I64 g = 0; g < in.hkv; ++g)
                   for (I64 t = 0; t < in.tokens; ++t)
                     std::copy_n(in.kv().row(g, t), in.d, k.begin() + (t * in.hkv + g) * row);
                 pdrop::Workspace ws;
                 std::vector<float> scores(static_cast<std::size_t>(in.n_image()));
                 std::vector<I64> keep(static_cast<std::size_t>(in.tokens), -1);
                 std::vector<ImageSpan> ns(in.spans.size());
                 const I64 t_new = pdrop::rank_and_drop<T, T>(
                     pdrop_test::padded_view<const T>(q.data(), in.hq, in.nq, in.d, row, true), in.pos,
                     pdrop_test::padded_view<const T>(k.data(), in.hkv, in.tokens, in.d, row, true),
                     in.spans, in.counts, ws, keep, ns, scores, in.options);
                 return result_of(t_new, scores, keep, ns);
               }});
  c.push_back({"four_threads_at_once_own_workspaces", [](const Inputs<T>& in) {
                 // No hidden shared state: concurrent calls agree.
                 std::vector<Result> r(4);
                 std::vector<std::thread> threads;
                 for (std::size_t i = 0; i < r.size(); ++i)
                   threads.emplace_back([&in, &r, i] {
                     pdrop::Workspace ws;
                     for (int rep = 0; rep < 3; ++rep) r[i] = plain_call(in, ws);
                   });
                 for (auto& t : threads) t.join();
                 for (std::size_t i = 1; i < r.size(); ++i)
                   if (!(r[i] == r[0])) return Result{};  // t_new -1: differs from everything
                 return r[0];
               }});
  // The parallel_for overload: SerialFor, then real threads (2 and 3, over
  // kv-head counts of 1..8, so some threads get no group or several).
  c.push_back({"parallel_overload_serial_for", [](const Inputs<T>& in) {
                 return parallel_call(in, pdrop::SerialFor{}, false);
               }});
  for (int threads : {2, 3})
    c.push_back({"parallel_overload_threads_" + std::to_string(threads), [threads](const Inputs<T>& in) {
                   return parallel_call(in, pdrop_test::ThreadFor{threads}, threads == 3);
                 }});
  return c;
}

template <class T>
std::vector<Inputs<T>> cases() {
  std::mt19937 rng(31337);
  std::vector<Inputs<T>> out;
  auto make = [&](I64 hq, I64 hkv, I64 nq, I64 d, I64 tokens, std::vector<ImageSpan> spans,
                  std::vector<I64> counts, pdrop::ScoreOptions opt = {}) {
    Inputs<T> in{hq, hkv, nq, d, tokens,
                 pdrop_test::random_vector<T>(static_cast<std::size_t>(hq * nq * d), rng, -2, 2),
                 pdrop_test::random_vector<T>(static_cast<std::size_t>(hkv * tokens * d), rng, -2, 2),
                 {}, std::move(counts), std::move(spans), opt};
    in.pos.push_back(tokens - 1);
    for (I64 i = 1; i < nq; ++i) in.pos.push_back(std::uniform_int_distribution<I64>(0, tokens - 1)(rng));
    out.push_back(std::move(in));
  };
  make(1, 1, 1, 8, 10, {{2, 6}}, {3});
  make(32, 8, 1, 128, 700, {{35, 576}}, {288});  // LLaVA-sized heads, shorter sequence
  make(8, 2, 3, 64, 360, {{20, 300}}, {150});
  make(6, 3, 2, 17, 250, {{0, 40}, {60, 0}, {70, 150}}, {7, 0, 149});
  pdrop::ScoreOptions fp16;
  fp16.round_probs = pdrop::ProbRounding::fp16;  // ties common: the tie rule decides
  make(8, 4, 1, 64, 296, {{16, 256}}, {64}, fp16);
  pdrop::ScoreOptions scaled;
  scaled.softmax_scale = 0.3f;
  make(4, 4, 2, 33, 129, {{1, 120}}, {60}, scaled);
  // The chain modes: their own scalar path, fp16/bf16 scores (ties common).
  pdrop::ScoreOptions fp16_chain;
  fp16_chain.precision = pdrop::ScorePrecision::fp16_chain;
  make(28, 4, 3, 40, 200, {{10, 80}, {100, 90}}, {40, 45}, fp16_chain);
  // One query row: a random second one could fall inside the span, which
  // the hand-composed config (plain top-k) would not keep.
  pdrop::ScoreOptions bf16_chain;
  bf16_chain.precision = pdrop::ScorePrecision::bf16_chain;
  bf16_chain.softmax_scale = 0.2f;
  make(8, 2, 1, 24, 150, {{5, 130}}, {33}, bf16_chain);
  return out;
}

template <class T>
class Determinism : public ::testing::Test {};
TYPED_TEST_SUITE(Determinism, pdrop_test::FloatTypes, pdrop_test::FloatTypeNames);

TYPED_TEST(Determinism, RankAndDropIsBitIdenticalAcrossRunsAndWaysOfCalling) {
  using T = TypeParam;
  const auto all = configs<T>();
  int c = 0;
  for (const Inputs<T>& in : cases<T>()) {
    SCOPED_TRACE(::testing::Message() << "case " << c++ << ": Hq " << in.hq << " Hkv " << in.hkv
                                      << " nq " << in.nq << " d " << in.d << " T " << in.tokens);
    const Result first = all[0].run(in);
    ASSERT_GT(first.t_new, 0);
    for (const Config<T>& cfg : all)
      for (int rep = 0; rep < 3; ++rep) {
        const Result r = cfg.run(in);
        EXPECT_EQ(r.t_new, first.t_new) << cfg.name << " run " << rep;
        EXPECT_TRUE(r.scores == first.scores) << cfg.name << " run " << rep << ": score bits differ";
        EXPECT_TRUE(r.keep == first.keep) << cfg.name << " run " << rep << ": keep list differs";
        EXPECT_TRUE(r.new_spans == first.new_spans) << cfg.name << " run " << rep << ": new spans differ";
      }
  }
}

// Interleaving other problems on one workspace, many times, never changes
// a result.
TEST(Determinism, InterleavedProblemsOnOneWorkspace) {
  const auto problems = cases<float>();
  std::vector<Result> first;
  pdrop::Workspace ws;
  for (const auto& in : problems) first.push_back(plain_call(in, ws));
  for (int round = 0; round < 5; ++round)
    for (std::size_t i = 0; i < problems.size(); ++i) {
      const std::size_t j = (i * 7 + static_cast<std::size_t>(round) * 3) % problems.size();
      EXPECT_TRUE(plain_call(problems[j], ws) == first[j]) << "round " << round << " problem " << j;
    }
}

// In place vs out of place: the same bytes in the first keep.size rows.
TEST(Determinism, CompactionInPlaceEqualsOutOfPlace) {
  std::mt19937 rng(2718);
  for (int trial = 0; trial < 30; ++trial) {
    const I64 tokens = std::uniform_int_distribution<I64>(1, 200)(rng);
    const I64 width = std::uniform_int_distribution<I64>(1, 40)(rng);
    const I64 pad = std::uniform_int_distribution<I64>(0, 3)(rng), stride = width + pad;
    std::vector<I64> keep;
    std::bernoulli_distribution pick(0.4);
    for (I64 t = 0; t < tokens; ++t)
      if (pick(rng)) keep.push_back(t);
    const I64 n = static_cast<I64>(keep.size());
    std::vector<std::uint32_t> bits(static_cast<std::size_t>(tokens * stride));
    for (auto& b : bits) b = static_cast<std::uint32_t>(rng());
    std::vector<float> rows(bits.size());
    std::memcpy(rows.data(), bits.data(), bits.size() * sizeof(float));

    // Rows.
    std::vector<float> in_place = rows, out(static_cast<std::size_t>(std::max<I64>(n, 1) * width));
    pdrop::compact_rows(TokenView<float>(in_place.data(), tokens, width, stride), keep);
    pdrop::compact_rows<float>(TokenView<const float>(rows.data(), tokens, width, stride), keep,
                               TokenView<float>(out.data(), n, width));
    for (I64 i = 0; i < n; ++i)
      ASSERT_TRUE(same_bits(&in_place[i * stride], &out[i * width],
                            static_cast<std::size_t>(width)))
          << "rows, trial " << trial << " row " << i;

    // Heads: the same buffer seen as HND (2 heads), in place vs into NHD.
    if (width % 2 == 0 && pad == 0) {
      const I64 heads = 2, dim = width / 2;
      std::vector<float> hnd = rows, nhd(static_cast<std::size_t>(std::max<I64>(n, 1) * width));
      const auto src = pdrop::hnd_view<float>(hnd.data(), heads, tokens / 2, dim, tokens);
      std::vector<I64> k2;
      for (I64 t : keep)
        if (t < tokens / 2) k2.push_back(t);
      const I64 n2 = static_cast<I64>(k2.size());
      pdrop::compact_heads<float>(HeadView<const float>(src), k2, pdrop::nhd_view(nhd.data(), n2, heads, dim));
      pdrop::compact_heads(src, k2);
      for (I64 h = 0; h < heads; ++h)
        for (I64 i = 0; i < n2; ++i)
          ASSERT_TRUE(same_bits(src.row(h, i), &nhd[(i * heads + h) * dim],
                                static_cast<std::size_t>(dim)))
              << "heads, trial " << trial;
    }

    // Positions moved with their tokens == the same rows compacted.
    std::vector<I64> ids(static_cast<std::size_t>(tokens));
    std::iota(ids.begin(), ids.end(), 1000);
    std::vector<I64> ids_rows = ids;
    pdrop::compact_positions(TokenView<I64>(ids.data(), tokens, 1), keep,
                             pdrop::PositionMode::keep_original);
    pdrop::compact_rows(TokenView<I64>(ids_rows.data(), tokens, 1), keep);
    ASSERT_TRUE(std::equal(ids.begin(), ids.begin() + n, ids_rows.begin())) << "positions, trial " << trial;
  }
}

TEST(Determinism, KeepListWithNewSpansInPlaceEqualsSeparate) {
  std::mt19937 rng(1618);
  for (int trial = 0; trial < 50; ++trial) {
    const I64 tokens = std::uniform_int_distribution<I64>(0, 120)(rng);
    std::vector<ImageSpan> spans;
    for (I64 cursor = 0, n = std::uniform_int_distribution<I64>(0, 4)(rng); n > 0; --n) {
      const I64 start = std::uniform_int_distribution<I64>(cursor, tokens)(rng);
      const I64 length = std::uniform_int_distribution<I64>(0, tokens - start)(rng);
      spans.push_back({start, length});
      cursor = start + length;
    }
    std::vector<I64> kept;
    I64 image = 0;
    for (const ImageSpan& s : spans) {
      image += s.length;
      for (I64 t = s.start; t < s.end(); ++t)
        if (rng() % 3 == 0) kept.push_back(t);
    }
    const auto n = static_cast<std::size_t>(tokens - image + static_cast<I64>(kept.size()));
    std::vector<I64> keep_a(n), keep_b(n);
    std::vector<ImageSpan> separate(spans.size()), in_place = spans;
    pdrop::build_keep_list(tokens, spans, kept, keep_a, separate);
    pdrop::build_keep_list(tokens, in_place, kept, keep_b, in_place);
    EXPECT_EQ(keep_a, keep_b) << "trial " << trial;
    EXPECT_EQ(pdrop_test::bytes_of(separate), pdrop_test::bytes_of(in_place)) << "trial " << trial;
  }
}

#if defined(PDROP_REPLAY_EXE)
// Two processes, same case: byte-identical output files.
TEST(Determinism, ReplayProcessesWriteIdenticalFiles) {
  namespace fs = std::filesystem;
  namespace npy = pdrop::npy;
  const fs::path dir = fs::temp_directory_path() / ("pdrop_determinism_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "case");
  const Inputs<float> in = cases<float>()[2];
  npy::write((dir / "case" / "q.npy").string(), {in.hq, in.nq, in.d}, in.q.data());
  npy::write((dir / "case" / "k.npy").string(), {in.hkv, in.tokens, in.d}, in.k.data());
  npy::write((dir / "case" / "query_pos.npy").string(), {in.nq}, in.pos.data());
  const std::vector<I64> span{in.spans[0].start, in.spans[0].length};
  npy::write((dir / "case" / "image_span.npy").string(), {2}, span.data());
  npy::write((dir / "case" / "keep.npy").string(), {1}, in.counts.data());
  auto slurp = [](const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  };
  std::string first_scores, first_kept;
  for (int run = 0; run < 3; ++run) {
    const fs::path out = dir / ("out" + std::to_string(run));
    const std::string cmd = std::string("'") + PDROP_REPLAY_EXE + "' score '" + (dir / "case").string() +
                            "' '" + out.string() + "'";
    const int raw = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(raw) && WEXITSTATUS(raw) == 0) << cmd;
    const std::string s = slurp(out / "scores.npy"), k = slurp(out / "kept.npy");
    ASSERT_FALSE(s.empty());
    if (run == 0) {
      first_scores = s;
      first_kept = k;
    }
    EXPECT_EQ(s, first_scores) << "run " << run;
    EXPECT_EQ(k, first_kept) << "run " << run;
  }
  // And the tool's scores are the API's scores, bit for bit.
  const Result api = [&] {
    pdrop::Workspace ws;
    return plain_call(in, ws);
  }();
  const auto tool = npy::to_f32(npy::read((dir / "out0" / "scores.npy").string()));
  EXPECT_TRUE(pdrop_test::bytes_of(tool) == api.scores);
  fs::remove_all(dir);
}
#endif

}  // namespace
