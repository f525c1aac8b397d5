// Compaction against naive references written element by element: compact_rows
// (in place and out of place, padded and mismatched strides), compact_heads
// (HND with capacity padding, NHD, a fused-QKV slice), compact_positions and
// build_keep_list; then every rejection, each leaving its buffers untouched.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <limits>

#include "test_util.hpp"

namespace {

using pdrop::HeadView;
using pdrop::ImageSpan;
using pdrop::TokenView;
using Keep = std::vector<std::int64_t>;

// Compaction moves any trivially copyable type: the float types and integers.
using MoveTypes = ::testing::Types<float, pdrop::half, pdrop::bfloat16, std::int32_t,
                                   std::int64_t, std::uint8_t>;
struct MoveTypeNames {
  template <class T>
  static std::string GetName(int i) {
    if (pdrop::is_float_type_v<T>) return pdrop_test::FloatTypeNames::GetName<T>(i);
    return std::is_same_v<T, std::uint8_t> ? "uint8" : "int" + std::to_string(8 * sizeof(T));
  }
};

template <class T>
std::vector<T> random_buf(std::int64_t n, std::mt19937& rng) {
  if constexpr (pdrop::is_float_type_v<T>) {
    return pdrop_test::random_vector<T>(static_cast<std::size_t>(n), rng, -100, 100);
  } else {
    std::uniform_int_distribution<std::int64_t> d(std::numeric_limits<T>::min(),
                                                  std::numeric_limits<T>::max());
    std::vector<T> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = static_cast<T>(d(rng));
    return v;
  }
}

// Keep lists of every shape: empty, all, random subsets (dense and sparse),
// one run in the middle, alternating, first only, last only.
std::vector<Keep> keep_lists(std::int64_t tokens, std::mt19937& rng) {
  std::vector<Keep> out(8);
  std::bernoulli_distribution half(0.5), sparse(0.15);
  for (std::int64_t t = 0; t < tokens; ++t) {
    out[1].push_back(t);
    if (half(rng)) out[2].push_back(t);
    if (sparse(rng)) out[3].push_back(t);
    if (t >= tokens / 3 && t < tokens / 3 + std::max<std::int64_t>(1, tokens / 3))
      out[4].push_back(t);
    if (t % 2 == 1 || tokens == 1) out[5].push_back(t);
  }
  out[6] = {0};
  out[7] = {tokens - 1};
  return out;
}

// Index of the first element whose bytes differ between got and want among
// those `check` selects (all when empty), or -1.
template <class T>
std::int64_t first_diff(const std::vector<T>& got, const std::vector<T>& want,
                        const std::vector<bool>& check = {}) {
  for (std::size_t e = 0; e < want.size(); ++e)
    if ((check.empty() || check[e]) && std::memcmp(&got[e], &want[e], sizeof(T)) != 0)
      return static_cast<std::int64_t>(e);
  return -1;
}

// The naive in-place result: element (g, t, c) of each of `groups` heads (1
// for token rows) takes (g, keep[t], c) for t < keep.size. `check` masks out
// rows t >= keep.size (stale, unspecified); every other element, padding
// included, must keep its bytes.
template <class T, class Off>
std::pair<std::vector<T>, std::vector<bool>> naive_in_place(const std::vector<T>& orig,
                                                            const Keep& keep, std::int64_t groups,
                                                            std::int64_t n, std::int64_t width,
                                                            Off off) {
  std::vector<T> want = orig;
  std::vector<bool> check(orig.size(), true);
  const auto k = static_cast<std::int64_t>(keep.size());
  for (std::int64_t g = 0; g < groups; ++g)
    for (std::int64_t t = 0; t < n; ++t)
      for (std::int64_t c = 0; c < width; ++c) {
        if (t < k) want[off(g, t, c)] = orig[off(g, keep[t], c)];
        else check[off(g, t, c)] = false;
      }
  return {want, check};
}

// Runs `call`, expects a rejection whose message holds `needle`, and that
// every buffer in `bufs` is byte for byte what it was before.
template <class F, class... V>
void expect_rejected(const std::string& needle, F&& call, const V&... bufs) {
  const std::vector<std::vector<unsigned char>> before{pdrop_test::bytes_of(bufs)...};
  pdrop_test::expect_invalid(call, needle);
  const std::vector<std::vector<unsigned char>> after{pdrop_test::bytes_of(bufs)...};
  EXPECT_EQ(before, after) << "a rejected call wrote to a buffer: " << needle;
}

const std::int64_t kTokens[] = {1, 2, 3, 7, 64, 65, 127};
const std::int64_t kFeatures[] = {1, 3, 7, 64};

template <class T>
class CompactTyped : public ::testing::Test {};
TYPED_TEST_SUITE(CompactTyped, MoveTypes, MoveTypeNames);

// In place: row i holds old row keep[i] byte for byte, and the padding
// between features and row_stride is never written, in any row.
TYPED_TEST(CompactTyped, RowsInPlaceMatchNaiveAndKeepPadding) {
  using T = TypeParam;
  std::mt19937 rng(11);
  for (std::int64_t n : kTokens)
    for (std::int64_t f : kFeatures)
      for (std::int64_t pad : {0, 3}) {
        const std::int64_t rs = f + pad;
        const std::vector<T> orig = random_buf<T>(n * rs, rng);
        const auto at = [rs](auto, auto t, auto e) { return t * rs + e; };
        for (const Keep& keep : keep_lists(n, rng)) {
          const auto [want, check] = naive_in_place(orig, keep, 1, n, f, at);
          std::vector<T> buf = orig;
          pdrop::compact_rows(TokenView<T>(buf.data(), n, f, rs), keep);
          EXPECT_EQ(first_diff(buf, want, check), -1)
              << "tokens " << n << " features " << f << " stride " << rs << " keep " << keep.size();
        }
      }
}

// Out of place with src and dst strides that differ: dst rows [0, keep.size)
// hold src rows keep[i]; dst padding and dst rows past keep.size keep their
// bytes; src is not written.
TYPED_TEST(CompactTyped, RowsOutOfPlaceWithDifferentStrides) {
  using T = TypeParam;
  std::mt19937 rng(12);
  const std::pair<std::int64_t, std::int64_t> pads[] = {{0, 0}, {3, 0}, {0, 5}, {3, 1}};
  for (std::int64_t n : kTokens)
    for (std::int64_t f : kFeatures)
      for (auto [sp, dp] : pads) {
        const std::int64_t srs = f + sp, drs = f + dp;
        const std::vector<T> src = random_buf<T>(n * srs, rng);
        for (const Keep& keep : keep_lists(n, rng)) {
          const auto k = static_cast<std::int64_t>(keep.size());
          const std::int64_t dn = k + 2;  // two rows past keep.size
          const std::vector<T> dst0 = random_buf<T>(dn * drs, rng);
          std::vector<T> want = dst0;
          for (std::int64_t i = 0; i < k; ++i)
            for (std::int64_t e = 0; e < f; ++e) want[i * drs + e] = src[keep[i] * srs + e];
          const std::vector<unsigned char> src_bytes = pdrop_test::bytes_of(src);
          std::vector<T> dst = dst0;
          pdrop::compact_rows<T>(TokenView<const T>(src.data(), n, f, srs), keep,
                                 TokenView<T>(dst.data(), dn, f, drs));
          EXPECT_EQ(first_diff(dst, want), -1)
              << "tokens " << n << " features " << f << " strides " << srs << "/" << drs;
          EXPECT_EQ(pdrop_test::bytes_of(src), src_bytes);
        }
      }
}

using Kind = pdrop_test::HeadKind;
using Layout = pdrop_test::HeadLayout;
const char* const kKindNames[] = {"HND", "HND+cap", "NHD", "NHD+pad", "fused"};
const Kind kKinds[] = {Kind::hnd, Kind::hnd_cap, Kind::nhd, Kind::nhd_pad, Kind::fused};

// In place, every layout: (h, i) holds old (h, keep[i]); every element that
// is no (h, t) of the view (capacity rows, other q/v slices, padding) keeps
// its bytes; only (h, t >= keep.size) may change.
TYPED_TEST(CompactTyped, HeadsInPlaceMatchNaivePerHeadAndToken) {
  using T = TypeParam;
  std::mt19937 rng(13);
  for (std::int64_t heads : {1, 2, 3, 8})
    for (std::int64_t n : {1, 2, 7, 65})
      for (std::int64_t dim : {1, 3, 64})
        for (Kind kind : kKinds) {
          const Layout L{kind, heads, n, dim};
          const std::vector<T> orig = random_buf<T>(L.size(), rng);
          for (const Keep& keep : keep_lists(n, rng)) {
            const auto [want, check] = naive_in_place(
                orig, keep, heads, n, dim,
                [&L](std::int64_t h, std::int64_t t, std::int64_t c) { return L.off(h, t, c); });
            std::vector<T> buf = orig;
            pdrop::compact_heads(L.view(buf.data()), keep);
            EXPECT_EQ(first_diff(buf, want, check), -1)
                << kKindNames[int(kind)] << " heads " << heads << " tokens " << n << " dim "
                << dim << " keep " << keep.size();
          }
        }
}

// Out of place between different layouts: dst(h, i) = src(h, keep[i]);
// every other dst element and all of src keep their bytes.
TYPED_TEST(CompactTyped, HeadsOutOfPlaceAcrossLayouts) {
  using T = TypeParam;
  std::mt19937 rng(14);
  for (std::int64_t heads : {1, 3, 8})
    for (std::int64_t n : {2, 7, 65})
      for (std::int64_t dim : {1, 7})
        for (Kind sk : kKinds)
          for (Kind dk : kKinds) {
            const Layout S{sk, heads, n, dim};
            const std::vector<T> src = random_buf<T>(S.size(), rng);
            const auto src_bytes = pdrop_test::bytes_of(src);
            for (const Keep& keep : keep_lists(n, rng)) {
              const auto k = static_cast<std::int64_t>(keep.size());
              const Layout D{dk, heads, k + 1, dim};
              const std::vector<T> dst0 = random_buf<T>(D.size(), rng);
              std::vector<T> want = dst0, dst = dst0;
              for (std::int64_t h = 0; h < heads; ++h)
                for (std::int64_t i = 0; i < k; ++i)
                  for (std::int64_t c = 0; c < dim; ++c)
                    want[D.off(h, i, c)] = src[S.off(h, keep[i], c)];
              pdrop::compact_heads<T>(S.view(src.data()), keep, D.view(dst.data()));
              EXPECT_EQ(first_diff(dst, want), -1)
                  << kKindNames[int(sk)] << " -> " << kKindNames[int(dk)] << " heads "
                  << heads << " tokens " << n << " dim " << dim << " keep " << k;
              EXPECT_EQ(pdrop_test::bytes_of(src), src_bytes);
            }
          }
}

// A read-only src may alias its own rows (head_stride = token_stride = dim:
// head h token t is token h + t): out of place reads it as the naive copy.
TEST(CompactHeads, ReadOnlySourceMayOverlapItself) {
  std::vector<float> src((2 - 1) * 4 + (5 - 1) * 4 + 4), dst(2 * 3 * 4, -1.0f);
  std::iota(src.begin(), src.end(), 0.0f);
  const Keep keep{0, 2, 3};
  pdrop::compact_heads<float>(HeadView<const float>(src.data(), 2, 5, 4, 4, 4), keep,
                              pdrop::hnd_view(dst.data(), 2, 3, 4));
  for (std::int64_t h = 0; h < 2; ++h)
    for (std::int64_t i = 0; i < 3; ++i)
      for (std::int64_t c = 0; c < 4; ++c)
        EXPECT_EQ(dst[(h * 3 + i) * 4 + c], src[(h + keep[i]) * 4 + c]) << h << " " << i;
}

// reindex writes first, first+1, ..., first+k-1 (first = the buffer's first
// position before the call) through the row stride and nothing else;
// keep_original moves 1 or 3 (M-RoPE) columns with their tokens.
TEST(CompactPositions, ReindexAndKeepOriginalMatchNaive) {
  std::mt19937 rng(15);
  for (std::int64_t n : kTokens)
    for (std::int64_t cols : {1, 3})
      for (std::int64_t pad : {0, 2})
        for (const Keep& keep : keep_lists(n, rng)) {
          const std::int64_t rs = cols + pad, k = static_cast<std::int64_t>(keep.size());
          std::vector<std::int32_t> orig = random_buf<std::int32_t>(n * rs, rng);
          if (n > 0) orig[0] = static_cast<std::int32_t>(rng() % 1000);  // room to count up
          std::vector<std::int32_t> buf = orig;
          auto [want, check] = naive_in_place(orig, keep, 1, n, cols,
                                              [rs](auto, auto t, auto c) { return t * rs + c; });
          pdrop::compact_positions(TokenView<std::int32_t>(buf.data(), n, cols, rs), keep,
                                   pdrop::PositionMode::keep_original);
          EXPECT_EQ(first_diff(buf, want, check), -1) << "keep_original cols " << cols;
          if (cols != 1) continue;
          for (std::int64_t i = 0; i < k; ++i)
            want[i * rs] = static_cast<std::int32_t>(orig[0] + i);
          buf = orig;
          pdrop::compact_positions(TokenView<std::int32_t>(buf.data(), n, 1, rs), keep);
          EXPECT_EQ(first_diff(buf, want, check), -1) << "reindex tokens " << n;
        }
}

// Re-indexing 3-column positions is rejected; keep_original errors name
// compact_positions and `positions` (not compact_rows / rows). Nothing is
// written.
TEST(CompactPositions, Rejections) {
  std::vector<std::int64_t> pos(12, 7);
  auto call = [&](const Keep& keep, std::int64_t rs, pdrop::PositionMode mode) {
    return [&pos, keep, rs, mode] {
      pdrop::compact_positions(TokenView<std::int64_t>(pos.data(), 4, 3, rs), keep, mode);
    };
  };
  const auto reindex = pdrop::PositionMode::reindex;
  const auto original = pdrop::PositionMode::keep_original;
  expect_rejected("positions.features (3) must be 1", call({0, 2}, 3, reindex), pos);
  expect_rejected("pdrop::compact_positions: keep must be strictly ascending",
                  call({2, 1}, 3, original), pos);
  expect_rejected("pdrop::compact_positions: positions.row_stride (1) must be >= features (3)",
                  call({0}, 1, original), pos);
}

// Naive new spans: start minus the image tokens dropped before it; length =
// kept tokens inside it.
std::vector<ImageSpan> naive_new_spans(const std::vector<ImageSpan>& spans, const Keep& kept) {
  std::vector<ImageSpan> out;
  for (const ImageSpan& s : spans) {
    std::int64_t dropped = 0, inside = 0;
    for (const ImageSpan& o : spans)
      for (std::int64_t t = o.start; t < o.end(); ++t) {
        const bool k = std::find(kept.begin(), kept.end(), t) != kept.end();
        if (t < s.start && !k) ++dropped;
        if (t >= s.start && t < s.end() && k) ++inside;
      }
    out.push_back({s.start - dropped, inside});
  }
  return out;
}

std::vector<std::pair<std::int64_t, std::int64_t>> pairs(const std::vector<ImageSpan>& v) {
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  for (const ImageSpan& s : v) out.emplace_back(s.start, s.length);
  return out;
}

// 0..3 spans, zero-length ones, spans at the start and the end, with none,
// all or random image tokens kept: keep and new spans match the naive ones,
// also when maybe_new_spans is the spans array itself.
TEST(BuildKeepList, MatchesNaiveWithAndWithoutNewSpans) {
  struct Case { std::int64_t tokens; std::vector<ImageSpan> spans; };
  const std::vector<Case> cases = {
      {7, {}}, {0, {}}, {9, {{0, 5}}}, {9, {{4, 5}}}, {6, {{0, 6}}}, {8, {{3, 0}}},
      {12, {{2, 3}, {5, 4}}}, {10, {{0, 0}, {1, 8}}}, {64, {{0, 0}, {10, 20}, {64, 0}}},
      {127, {{1, 40}, {41, 0}, {60, 67}}}, {65, {{0, 30}, {31, 3}, {40, 25}}}};
  std::mt19937 rng(16);
  for (const Case& c : cases)
    for (double p : {0.0, 1.0, 0.5, 0.2}) {
      std::bernoulli_distribution pick(p);
      Keep kept;
      for (const ImageSpan& s : c.spans)
        for (std::int64_t t = s.start; t < s.end(); ++t)
          if (pick(rng)) kept.push_back(t);
      const Keep want = pdrop_test::naive_keep_list(c.tokens, c.spans, kept);
      const std::vector<ImageSpan> want_spans = naive_new_spans(c.spans, kept);
      SCOPED_TRACE(::testing::Message() << "tokens " << c.tokens << " spans "
                                        << c.spans.size() << " kept " << kept.size());
      Keep keep(want.size(), -1), keep2(want.size(), -1);
      std::vector<ImageSpan> out(c.spans.size(), ImageSpan{-1, -1});
      pdrop::build_keep_list(c.tokens, c.spans, kept, keep, out);
      EXPECT_EQ(keep, want);
      std::vector<ImageSpan> aliased = c.spans;
      pdrop::build_keep_list(c.tokens, aliased, kept, keep2, aliased);
      EXPECT_EQ(keep2, want);
      EXPECT_EQ(pairs(out), pairs(want_spans));
      EXPECT_EQ(pairs(aliased), pairs(want_spans)) << "maybe_new_spans aliasing spans";
      std::fill(keep.begin(), keep.end(), -1);
      pdrop::build_keep_list(c.tokens, c.spans, kept, keep);  // no new spans
      EXPECT_EQ(keep, want);
    }
}

// Every rejection of compact_rows names the argument and the value, and
// writes nothing.
TEST(CompactErrors, RowsRejectBadKeepAndViews) {
  std::mt19937 rng(17);
  std::vector<float> a = random_buf<float>(20, rng), b = random_buf<float>(20, rng);
  auto in_place = [&](pdrop::span<const std::int64_t> k, std::int64_t n = 5, std::int64_t f = 3,
                      std::int64_t rs = 4, bool null = false) {
    return [=, &a] {
      pdrop::compact_rows(TokenView<float>(null ? nullptr : a.data(), n, f, rs), k);
    };
  };
  const Keep bad_order{0, 3, 2}, dup{1, 1}, high{0, 5}, neg{-1}, too_long{0, 1, 2, 3, 4, 4};
  expect_rejected("keep[1] = 3, keep[2] = 2", in_place(bad_order), a, bad_order);
  expect_rejected("keep[0] = 1, keep[1] = 1", in_place(dup), a, dup);
  expect_rejected("keep[1] (5) must be in [0, 5)", in_place(high), a, high);
  expect_rejected("keep[0] (-1)", in_place(neg), a, neg);
  expect_rejected("keep.size (6) must be in [0, tokens = 5]", in_place(too_long), a);
  const Keep ok{0, 2, 4};
  expect_rejected("rows.tokens (-1)", in_place(ok, -1), a);
  expect_rejected("rows.features (-2)", in_place(ok, 5, -2), a);
  expect_rejected("rows.row_stride (2) must be >= features (3)", in_place(ok, 5, 3, 2), a);
  expect_rejected("rows.row_stride (2) must be >= features (3)", in_place(ok, 2, 3, 2), a);
  expect_rejected("rows.data is null with 5 x 3 elements", in_place(ok, 5, 3, 4, true), a);
  expect_rejected("keep.size (-1)", in_place({ok.data(), -1}), a);
  expect_rejected("keep.data is null with 2 entries", in_place({nullptr, 2}), a);
  // Out of place.
  auto out = [&](std::int64_t dn, std::int64_t df, float* d) {
    return [&a, ok, dn, df, d] {
      pdrop::compact_rows<float>(TokenView<const float>(a.data(), 5, 3, 4), ok,
                                 TokenView<float>(d, dn, df, df));
    };
  };
  expect_rejected("dst.features (2) must equal src.features (3)", out(3, 2, b.data()), a, b);
  expect_rejected("dst.tokens (2) must be >= keep.size (3)", out(2, 3, b.data()), a, b);
  expect_rejected("dst overlaps src", out(3, 3, a.data() + 10), a, b);
  expect_rejected("dst overlaps src", out(3, 3, a.data()), a);
  expect_rejected("dst.data is null with 3 x 3", out(3, 3, nullptr), a);
}

// compact_heads: bad sizes, null data, strides that let rows overlap in a
// view written to, mismatched dst, overlapping src/dst.
TEST(CompactErrors, HeadsRejectBadViews) {
  std::mt19937 rng(18);
  std::vector<float> a = random_buf<float>(48, rng), b = random_buf<float>(48, rng);
  const Keep ok{0, 2};
  auto in_place = [&](HeadView<float> v) { return [v, &ok] { pdrop::compact_heads(v, ok); }; };
  float* p = a.data();
  expect_rejected("kv.heads (-1)", in_place({p, -1, 3, 4, 12, 4}), a);
  expect_rejected("kv.dim (-4)", in_place({p, 2, 3, -4, 12, 4}), a);
  expect_rejected("kv.token_stride (3) must be >= dim (4)", in_place({p, 2, 3, 4, 12, 3}), a);
  expect_rejected("kv.head_stride (2) must be >= dim (4)", in_place({p, 2, 3, 4, 2, 12}), a);
  expect_rejected("kv.data is null with 2 x 3 x 4", in_place({nullptr, 2, 3, 4, 12, 4}), a);
  expect_rejected("kv: strides (head_stride 4, token_stride 4) make rows",
                  in_place({p, 2, 3, 4, 4, 4}), a);
  expect_rejected("kv: strides (head_stride 8, token_stride 4) make rows",
                  in_place({p, 2, 3, 4, 8, 4}), a);
  expect_rejected("keep[1] (2) must be in [0, 2)", in_place(pdrop::hnd_view(p, 2, 2, 4)), a);
  auto out = [&](HeadView<float> d) {
    return [d, &a, &ok] {
      pdrop::compact_heads<float>(pdrop::hnd_view<const float>(a.data(), 2, 3, 4), ok, d);
    };
  };
  float* q = b.data();
  expect_rejected("dst: strides (head_stride 4, token_stride 4)", out({q, 2, 2, 4, 4, 4}), a, b);
  expect_rejected("dst (heads 3, dim 4) must match src (heads 2, dim 4)",
                  out(pdrop::hnd_view(q, 3, 2, 4)), a, b);
  expect_rejected("dst (heads 2, dim 2) must match src (heads 2, dim 4)",
                  out(pdrop::hnd_view(q, 2, 2, 2)), a, b);
  expect_rejected("dst.tokens (1) must be >= keep.size (2)", out(pdrop::hnd_view(q, 2, 1, 4)),
                  a, b);
  expect_rejected("dst overlaps src", out(pdrop::hnd_view(a.data() + 20, 2, 2, 4)), a);
}

// build_keep_list: kept outside every span, wrong keep size, bad spans,
// wrong maybe_new_spans size; no output is written.
TEST(CompactErrors, BuildKeepListRejects) {
  std::vector<ImageSpan> spans{{3, 4}, {8, 2}};
  Keep keep(6, -1);
  std::vector<ImageSpan> ns(2, ImageSpan{-1, -1});
  auto call = [&](std::int64_t n, const std::vector<ImageSpan>& s, const Keep& kept,
                  std::int64_t keep_size, std::int64_t ns_size) {
    return [&, n, kept, keep_size, ns_size] {
      pdrop::build_keep_list(n, s, kept, {keep.data(), keep_size}, {ns.data(), ns_size});
    };
  };
  expect_rejected("kept[1] (7) is not inside any image span",
                  call(10, spans, {4, 7}, 6, 2), keep, ns, spans);
  expect_rejected("kept[0] (0) is not inside any image span",
                  call(10, spans, {0}, 5, 2), keep, ns, spans);
  expect_rejected("keep.size (5) must be tokens - image + kept = 10 - 6 + 2 = 6",
                  call(10, spans, {4, 8}, 5, 2), keep, ns, spans);
  expect_rejected("maybe_new_spans.size (1) must be 0 or spans.size (2)",
                  call(10, spans, {4, 8}, 6, 1), keep, ns, spans);
  expect_rejected("tokens (-1) must be >= 0", call(-1, spans, {}, 0, 0), keep, ns);
  expect_rejected("spans[1] (start 8, length 2) must lie inside [0, tokens = 9)",
                  call(9, spans, {}, 0, 0), keep, ns);
  const std::vector<ImageSpan> overlap{{3, 4}, {5, 2}};
  expect_rejected("spans[1] (start 5) overlaps or precedes spans[0] (end 7)",
                  call(10, overlap, {}, 4, 0), keep, ns);
  expect_rejected("spans[0] (start -1, length 2)", call(10, {{-1, 2}}, {}, 8, 0), keep, ns);
  // Errors about `kept` name kept, not `keep` (the output of the same call).
  expect_rejected("kept[0] = 5, kept[1] = 4", call(10, spans, {5, 4}, 6, 2), keep, ns, spans);
  expect_rejected("kept[0] (12) must be in [0, 10)", call(10, spans, {12}, 5, 2), keep, ns);
}

}  // namespace

namespace {
// Re-indexing into a narrow position type must not wrap silently: the
// positions run from the first one (9 here) up, so 9 + 247 - 1 = 255 is the
// last that fits, and 0 + 256 - 1 with an explicit base 0.
TEST(CompactPositions, ReindexRejectsPositionsTheTypeCannotHold) {
  std::vector<std::uint8_t> pos(300, 9);
  std::vector<std::int64_t> keep(248);
  std::iota(keep.begin(), keep.end(), 0);
  const auto before = pdrop_test::bytes_of(pos);
  pdrop_test::expect_invalid(
      [&] { pdrop::compact_positions(pdrop::TokenView<std::uint8_t>(pos.data(), 300, 1), keep); },
      "pdrop::compact_positions: positions base (9) + keep.size (248) - 1 does not fit the "
      "position type [0, 255]");
  keep.resize(257);
  std::iota(keep.begin(), keep.end(), 0);
  pdrop_test::expect_invalid(
      [&] {
        pdrop::compact_positions(pdrop::TokenView<std::uint8_t>(pos.data(), 300, 1), keep,
                                 pdrop::PositionMode::reindex, 0);
      },
      "positions base (0) + keep.size (257) - 1 does not fit");
  pdrop_test::expect_invalid(
      [&] {
        pdrop::compact_positions(pdrop::TokenView<std::uint8_t>(pos.data(), 300, 1), keep,
                                 pdrop::PositionMode::reindex, -1);
      },
      "positions base (-1)");
  EXPECT_EQ(pdrop_test::bytes_of(pos), before);
  keep.resize(247);  // 9..255 fits
  pdrop::compact_positions(pdrop::TokenView<std::uint8_t>(pos.data(), 300, 1), keep);
  for (int i = 0; i < 247; ++i) EXPECT_EQ(pos[i], 9 + i);
  std::vector<std::uint8_t> pos0(300, 9);
  keep.resize(256);
  std::iota(keep.begin(), keep.end(), 0);
  pdrop::compact_positions(pdrop::TokenView<std::uint8_t>(pos0.data(), 300, 1), keep,
                           pdrop::PositionMode::reindex, 0);  // 0..255 fits
  for (int i = 0; i < 256; ++i) EXPECT_EQ(pos0[i], i);
}

// A prompt that continues a prefix cache or an earlier chat turn sits at
// positions 100, 101, 102, ...: re-indexing continues from its first
// position (the case: 100, 101, 102, 700, 705 -> 100..104), or
// from a base the caller gives; keep_original refuses a base.
TEST(CompactPositions, ReindexStartsAtTheSequencesFirstPosition) {
  for (bool i32 : {false, true}) {
    std::vector<std::int64_t> p64{100, 101, 102, 700, 705, 706};
    std::vector<std::int32_t> p32(p64.begin(), p64.end());
    const std::vector<std::int64_t> keep{0, 1, 2, 3, 4};
    std::vector<std::int64_t> got;
    if (i32) {
      pdrop::compact_positions(pdrop::TokenView<std::int32_t>(p32.data(), 6, 1), keep);
      got.assign(p32.begin(), p32.end());
    } else {
      pdrop::compact_positions(pdrop::TokenView<std::int64_t>(p64.data(), 6, 1), keep);
      got = p64;
    }
    EXPECT_EQ(got, (std::vector<std::int64_t>{100, 101, 102, 103, 104, 706}));
  }
  // The first token dropped: the base is still the sequence's first position.
  std::vector<std::int64_t> pos{40, 45, 50, 55, 60};
  const std::vector<std::int64_t> keep{2, 4};
  pdrop::compact_positions(pdrop::TokenView<std::int64_t>(pos.data(), 5, 1), keep);
  EXPECT_EQ(pos, (std::vector<std::int64_t>{40, 41, 50, 55, 60}));
  pos = {40, 45, 50, 55, 60};
  pdrop::compact_positions(pdrop::TokenView<std::int64_t>(pos.data(), 5, 1), keep,
                           pdrop::PositionMode::reindex, 7);
  EXPECT_EQ(pos, (std::vector<std::int64_t>{7, 8, 50, 55, 60}));
  const auto before = pdrop_test::bytes_of(pos);
  pdrop_test::expect_invalid(
      [&] {
        pdrop::compact_positions(pdrop::TokenView<std::int64_t>(pos.data(), 5, 1), keep,
                                 pdrop::PositionMode::keep_original, 3);
      },
      "pdrop::compact_positions: maybe_base (3) is for PositionMode::reindex");
  EXPECT_EQ(pdrop_test::bytes_of(pos), before);
}
// Negative bases count up without overflow in 64 bits, and are range-checked
// in narrow types.
TEST(CompactPositions, ReindexFromNegativeBases) {
  std::vector<std::int64_t> pos{-1, 0, 1};
  pdrop::compact_positions(pdrop::TokenView<std::int64_t>(pos.data(), 3, 1),
                           std::vector<std::int64_t>{0, 2});
  EXPECT_EQ(pos, (std::vector<std::int64_t>{-1, 0, 1}));
  pos = {7, 8, 9};
  pdrop::compact_positions(pdrop::TokenView<std::int64_t>(pos.data(), 3, 1),
                           std::vector<std::int64_t>{1, 2}, pdrop::PositionMode::reindex,
                           std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(pos[0], std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(pos[1], std::numeric_limits<std::int64_t>::min() + 1);
  std::vector<std::int8_t> p8(200, 0);
  std::vector<std::int64_t> keep(139);
  std::iota(keep.begin(), keep.end(), 0);
  pdrop_test::expect_invalid(
      [&] {
        pdrop::compact_positions(pdrop::TokenView<std::int8_t>(p8.data(), 200, 1), keep,
                                 pdrop::PositionMode::reindex, -10);
      },
      "positions base (-10) + keep.size (139) - 1 does not fit the position type [-128, 127]");
  keep.resize(138);  // -10 .. 127
  pdrop::compact_positions(pdrop::TokenView<std::int8_t>(p8.data(), 200, 1), keep,
                           pdrop::PositionMode::reindex, -10);
  EXPECT_EQ(p8[0], -10);
  EXPECT_EQ(p8[137], 127);
}

// int32 keep lists (ggml_get_rows' indices): every operator moves the same
// bytes as with the int64 list, rejects the same bad lists with the same
// message, and the record takes them too.
TEST(CompactInt32, EveryOperatorMatchesTheInt64List) {
  std::mt19937 rng(41);
  for (std::int64_t n : kTokens)
    for (const Keep& keep : keep_lists(n, rng)) {
      const std::vector<std::int32_t> keep32(keep.begin(), keep.end());
      const std::int64_t f = 5, rs = 7, heads = 3, d = 4;
      const std::vector<float> rows0 = random_buf<float>(n * rs, rng);
      std::vector<float> a = rows0, b = rows0;
      pdrop::compact_rows(TokenView<float>(a.data(), n, f, rs), keep);
      pdrop::compact_rows(TokenView<float>(b.data(), n, f, rs), keep32);
      EXPECT_EQ(a, b);
      std::vector<float> oa(static_cast<std::size_t>(n * f), -1.0f), ob = oa;
      pdrop::compact_rows(TokenView<const float>(rows0.data(), n, f, rs), keep,
                          TokenView<float>(oa.data(), n, f));
      pdrop::compact_rows(TokenView<const float>(rows0.data(), n, f, rs), keep32,
                          TokenView<float>(ob.data(), n, f));
      EXPECT_EQ(oa, ob);
      const std::vector<float> kv0 = random_buf<float>(heads * n * d, rng);
      std::vector<float> ka = kv0, kb = kv0;
      pdrop::compact_heads(pdrop::hnd_view(ka.data(), heads, n, d), keep);
      pdrop::compact_heads(pdrop::hnd_view(kb.data(), heads, n, d), keep32);
      EXPECT_EQ(ka, kb);
      std::vector<float> ha(kv0.size(), 0.0f), hb = ha;
      pdrop::compact_heads(pdrop::nhd_view<const float>(kv0.data(), n, heads, d), keep,
                           pdrop::nhd_view(ha.data(), n, heads, d));
      pdrop::compact_heads(pdrop::nhd_view<const float>(kv0.data(), n, heads, d), keep32,
                           pdrop::nhd_view(hb.data(), n, heads, d));
      EXPECT_EQ(ha, hb);
      std::vector<std::int32_t> pa(static_cast<std::size_t>(n)), pb;
      std::iota(pa.begin(), pa.end(), 100);
      pb = pa;
      pdrop::compact_positions(TokenView<std::int32_t>(pa.data(), n, 1), keep);
      pdrop::compact_positions(TokenView<std::int32_t>(pb.data(), n, 1), keep32);
      EXPECT_EQ(pa, pb);
      std::vector<std::int32_t> narrow(keep.size() + 1, -1);
      pdrop::narrow_keep_list(keep, narrow);
      EXPECT_TRUE(std::equal(keep.begin(), keep.end(), narrow.begin()));
      EXPECT_EQ(narrow.back(), -1);
    }
}

TEST(CompactInt32, RejectsWhatTheInt64ListRejects) {
  std::vector<float> rows(8 * 2, 1.0f);
  const std::vector<float> before = rows;
  const std::vector<std::int32_t> descending{0, 3, 2}, outside{0, 8};
  pdrop_test::expect_invalid(
      [&] { pdrop::compact_rows(TokenView<float>(rows.data(), 8, 2), descending); },
      "pdrop::compact_rows: keep must be strictly ascending: keep[1] = 3, keep[2] = 2");
  pdrop_test::expect_invalid(
      [&] { pdrop::compact_rows(TokenView<float>(rows.data(), 8, 2), outside); },
      "pdrop::compact_rows: keep[1] (8) must be in [0, 8)");
  EXPECT_EQ(rows, before);
  const std::vector<std::int64_t> wide{0, std::int64_t{1} << 31};
  std::vector<std::int32_t> out(2, -1);
  pdrop_test::expect_invalid([&] { pdrop::narrow_keep_list(wide, out); },
                             "pdrop::narrow_keep_list: keep[1] (2147483648) must be in [0, 2^31 - 1]");
  pdrop_test::expect_invalid([&] { pdrop::narrow_keep_list(wide, {out.data(), 1}); },
                             "out.size (1) must be >= keep.size (2)");
  EXPECT_EQ(out, (std::vector<std::int32_t>{-1, -1}));
}

TEST(CompactInt32, SequenceStateRecordsAnInt32KeepList) {
  const auto schedule = pdrop::Schedule::single_drop(4, 2, 0.5);
  const ImageSpan image{2, 6};
  std::vector<std::int32_t> pos(10);
  std::iota(pos.begin(), pos.end(), 0);
  pdrop::SequenceState a(schedule, TokenView<const std::int32_t>(pos.data(), 10, 1), {image});
  pdrop::SequenceState b = a;
  const Keep keep{0, 1, 3, 4, 6, 8, 9};
  const std::vector<std::int32_t> keep32(keep.begin(), keep.end());
  a.apply_drop(keep);
  b.apply_drop(keep32);
  EXPECT_EQ(b.tokens(), 7);
  EXPECT_EQ(b.spans()[0].start, a.spans()[0].start);
  EXPECT_EQ(b.spans()[0].length, 3);
  EXPECT_EQ(b.cache_length(3), a.cache_length(3));
  pdrop::SequenceState c(schedule, TokenView<const std::int32_t>(pos.data(), 10, 1), {image});
  const std::vector<std::int32_t> drops_text{0, 2, 3, 9};
  pdrop_test::expect_invalid([&] { c.apply_drop(drops_text); }, "keep drops token 1");
  EXPECT_EQ(c.drops_applied(), 0);
}

}  // namespace
