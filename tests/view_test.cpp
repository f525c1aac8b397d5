// Views: every element address a view computes equals the one written out by
// hand (index arithmetic, or Eigen's own operator()), for TokenView,
// HeadView, hnd_view, nhd_view, the Eigen adapters and split_heads.
#include <gtest/gtest.h>

#include <Eigen/Core>

#include <type_traits>
#include <utility>

#include "test_util.hpp"

namespace {

using pdrop::HeadView;
using pdrop::TokenView;
using RowMajorXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Every (t, f) of `v` sits at `want(t, f)`, and v has the expected shape.
template <class T, class F>
void expect_token_addresses(const TokenView<T>& v, std::int64_t tokens, std::int64_t features,
                            std::int64_t row_stride, F want) {
  EXPECT_EQ(v.tokens, tokens);
  EXPECT_EQ(v.features, features);
  EXPECT_EQ(v.row_stride, row_stride);
  for (std::int64_t t = 0; t < v.tokens; ++t)
    for (std::int64_t f = 0; f < v.features; ++f)
      ASSERT_EQ(&v.row(t)[f], want(t, f)) << "token " << t << " feature " << f;
}

// Every (h, t, i) of `v` sits at `want(h, t, i)`.
template <class T, class F>
void expect_head_addresses(const HeadView<T>& v, F want) {
  for (std::int64_t h = 0; h < v.heads; ++h)
    for (std::int64_t t = 0; t < v.tokens; ++t)
      for (std::int64_t i = 0; i < v.dim; ++i)
        ASSERT_EQ(&v.row(h, t)[i], want(h, t, i)) << "head " << h << " token " << t << " i " << i;
}

// TokenView: (t, f) is data[t * row_stride + f]; a negative or omitted
// stride means dense rows; a default view is empty.
TEST(TokenView, AddressesMatchIndexArithmetic) {
  std::vector<float> buf(127 * 67);
  for (std::int64_t n : {1, 2, 3, 7, 64, 65, 127})
    for (std::int64_t f : {1, 3, 7, 64}) {
      float* p = buf.data();
      expect_token_addresses(TokenView<float>(p, n, f, f + 3), n, f, f + 3,
                             [&](std::int64_t t, std::int64_t e) { return p + t * (f + 3) + e; });
      expect_token_addresses(TokenView<float>(p, n, f), n, f, f,
                             [&](std::int64_t t, std::int64_t e) { return p + t * f + e; });
      expect_token_addresses(TokenView<float>(p, n, f, -1), n, f, f,
                             [&](std::int64_t t, std::int64_t e) { return p + t * f + e; });
    }
  const TokenView<float> empty;
  EXPECT_EQ(empty.data, nullptr);
  EXPECT_EQ(empty.tokens, 0);
  EXPECT_EQ(empty.features, 0);
  EXPECT_EQ(empty.row_stride, 0);
}

// HeadView: (h, t, i) is data[h * head_stride + t * token_stride + i], for
// head-major, token-major and padded strides.
TEST(HeadView, AddressesMatchIndexArithmetic) {
  std::vector<float> buf(8 * 9 * 70);
  float* p = buf.data();
  for (std::int64_t heads : {1, 2, 3, 8})
    for (std::int64_t d : {1, 3, 7, 64})
      for (const auto& st : {std::pair<std::int64_t, std::int64_t>{9 * (d + 2), d + 2},
                             {d, heads * d}, {d + 1, heads * (d + 1) + 5}}) {
        const std::int64_t hs = st.first, ts = st.second;  // HND, NHD, padded NHD
        const HeadView<float> v(p, heads, 9, d, hs, ts);
        EXPECT_EQ(v.heads, heads);
        EXPECT_EQ(v.tokens, 9);
        EXPECT_EQ(v.dim, d);
        EXPECT_EQ(v.head_stride, hs);
        EXPECT_EQ(v.token_stride, ts);
        expect_head_addresses(v, [&](std::int64_t h, std::int64_t t, std::int64_t i) {
          return p + h * hs + t * ts + i;
        });
      }
}

// hnd_view: [heads][capacity][dim]; capacity defaults to tokens.
TEST(HeadView, HndViewWithAndWithoutCapacity) {
  std::vector<float> buf(8 * 70 * 64);
  float* p = buf.data();
  for (std::int64_t heads : {1, 2, 3, 8})
    for (std::int64_t n : {1, 2, 7, 65})
      for (std::int64_t d : {1, 3, 64})
        for (std::int64_t cap : {std::int64_t{-1}, n, n + 5}) {
          const std::int64_t c = cap < 0 ? n : cap;
          const HeadView<float> v =
              cap < 0 ? pdrop::hnd_view(p, heads, n, d) : pdrop::hnd_view(p, heads, n, d, cap);
          EXPECT_EQ(v.heads, heads);
          EXPECT_EQ(v.tokens, n);
          EXPECT_EQ(v.dim, d);
          EXPECT_EQ(v.head_stride, c * d);
          EXPECT_EQ(v.token_stride, d);
          expect_head_addresses(v, [&](std::int64_t h, std::int64_t t, std::int64_t i) {
            return p + (h * c + t) * d + i;
          });
        }
}

// The named-size factories: same addresses as written out by hand, one
// order (heads, tokens, dim) for both layouts, HND's capacity required.
TEST(HeadView, NamedSizeFactories) {
  std::vector<float> buf(8 * 70 * 64);
  float* p = buf.data();
  for (std::int64_t heads : {1, 3, 8})
    for (std::int64_t n : {1, 7, 65})
      for (std::int64_t d : {1, 3, 64}) {
        const std::int64_t cap = n + 5;
        const HeadView<float> h = pdrop::hnd_view(p, pdrop::Heads{heads}, pdrop::Tokens{n},
                                                  pdrop::Dim{d}, pdrop::Capacity{cap});
        EXPECT_EQ(h.heads, heads);
        EXPECT_EQ(h.tokens, n);
        EXPECT_EQ(h.dim, d);
        expect_head_addresses(h, [&](std::int64_t hh, std::int64_t t, std::int64_t i) {
          return p + (hh * cap + t) * d + i;
        });
        const HeadView<float> v =
            pdrop::nhd_view(p, pdrop::Heads{heads}, pdrop::Tokens{n}, pdrop::Dim{d});
        EXPECT_EQ(v.heads, heads);
        EXPECT_EQ(v.tokens, n);
        expect_head_addresses(v, [&](std::int64_t hh, std::int64_t t, std::int64_t i) {
          return p + (t * heads + hh) * d + i;
        });
      }
}

// Which argument lists the factories accept: a size in the wrong place or a
// missing capacity must not compile.
template <class Void, class... A>
struct HndCallable : std::false_type {};
template <class... A>
struct HndCallable<std::void_t<decltype(pdrop::hnd_view(std::declval<A>()...))>, A...>
    : std::true_type {};
template <class Void, class... A>
struct NhdCallable : std::false_type {};
template <class... A>
struct NhdCallable<std::void_t<decltype(pdrop::nhd_view(std::declval<A>()...))>, A...>
    : std::true_type {};
using pdrop::Capacity;
using pdrop::Dim;
using pdrop::Heads;
using pdrop::Tokens;
static_assert(HndCallable<void, float*, Heads, Tokens, Dim, Capacity>::value);
static_assert(!HndCallable<void, float*, Heads, Tokens, Dim>::value, "capacity is required");
static_assert(!HndCallable<void, float*, Tokens, Heads, Dim, Capacity>::value);
static_assert(!HndCallable<void, float*, Heads, std::int64_t, Dim, Capacity>::value);
static_assert(NhdCallable<void, float*, Heads, Tokens, Dim>::value);
static_assert(!NhdCallable<void, float*, Tokens, Heads, Dim>::value);
static_assert(!NhdCallable<void, float*, Heads, Tokens, Dim, Capacity>::value);

// nhd_view: [tokens][heads][dim].
TEST(HeadView, NhdView) {
  std::vector<float> buf(65 * 8 * 64);
  float* p = buf.data();
  for (std::int64_t heads : {1, 2, 3, 8})
    for (std::int64_t n : {1, 2, 7, 65})
      for (std::int64_t d : {1, 3, 64}) {
        const HeadView<float> v = pdrop::nhd_view(p, n, heads, d);
        EXPECT_EQ(v.heads, heads);
        EXPECT_EQ(v.tokens, n);
        EXPECT_EQ(v.dim, d);
        EXPECT_EQ(v.head_stride, d);
        EXPECT_EQ(v.token_stride, heads * d);
        expect_head_addresses(v, [&](std::int64_t h, std::int64_t t, std::int64_t i) {
          return p + (t * heads + h) * d + i;
        });
      }
}

// Mutable views convert to const ones (same fields), never the reverse;
// span takes a vector's data and size.
TEST(Views, ConstConversionKeepsEveryField) {
  static_assert(std::is_convertible_v<TokenView<float>, TokenView<const float>>);
  static_assert(!std::is_convertible_v<TokenView<const float>, TokenView<float>>);
  static_assert(std::is_convertible_v<HeadView<float>, HeadView<const float>>);
  static_assert(!std::is_convertible_v<HeadView<const float>, HeadView<float>>);
  static_assert(!std::is_convertible_v<const std::vector<float>&, pdrop::span<float>>);
  std::vector<float> buf(100);
  const TokenView<float> m(buf.data() + 1, 7, 3, 10);
  const TokenView<const float> c = m;
  EXPECT_EQ(c.data, buf.data() + 1);
  EXPECT_EQ(c.tokens, 7);
  EXPECT_EQ(c.features, 3);
  EXPECT_EQ(c.row_stride, 10);
  const HeadView<const float> h = HeadView<float>(buf.data() + 2, 3, 4, 5, 30, 6);
  EXPECT_EQ(h.data, buf.data() + 2);
  EXPECT_EQ(h.heads, 3);
  EXPECT_EQ(h.tokens, 4);
  EXPECT_EQ(h.dim, 5);
  EXPECT_EQ(h.head_stride, 30);
  EXPECT_EQ(h.token_stride, 6);
  const pdrop::span<float> s = buf;
  const pdrop::span<const float> cs = s;
  EXPECT_EQ(cs.data, buf.data());
  EXPECT_EQ(cs.size, 100);
  EXPECT_EQ(cs.end() - cs.begin(), 100);
}

// rows_as_tokens on a row-major matrix, a Map with an outer stride and a
// middle block: (t, f) is exactly Eigen's (t, f).
TEST(EigenAdapters, RowsAsTokensRowMajorMatrixMapAndBlock) {
  RowMajorXf m = RowMajorXf::Random(9, 11);
  auto v = pdrop::rows_as_tokens(m);
  static_assert(std::is_same_v<decltype(v), TokenView<float>>);
  EXPECT_EQ(v.data, m.data());
  expect_token_addresses(v, 9, 11, 11, [&](std::int64_t t, std::int64_t f) { return &m(t, f); });

  std::vector<float> buf(5 * 10);
  Eigen::Map<RowMajorXf, 0, Eigen::OuterStride<>> map(buf.data(), 5, 7, Eigen::OuterStride<>(10));
  expect_token_addresses(pdrop::rows_as_tokens(map), 5, 7, 10,
                         [&](std::int64_t t, std::int64_t f) { return &map(t, f); });

  auto b = pdrop::rows_as_tokens(m.block(2, 3, 4, 5));  // middle rows and columns
  EXPECT_EQ(b.data, &m(2, 3));
  expect_token_addresses(b, 4, 5, 11, [&](auto t, auto f) { return &m(2 + t, 3 + f); });
}

// A const matrix gives a view of const elements at the same addresses.
TEST(EigenAdapters, RowsAsTokensConstMatrixIsConst) {
  const RowMajorXf m = RowMajorXf::Random(4, 6);
  auto v = pdrop::rows_as_tokens(m);
  static_assert(std::is_same_v<decltype(v), TokenView<const float>>);
  expect_token_addresses(v, 4, 6, 6, [&](std::int64_t t, std::int64_t f) { return &m(t, f); });
  auto b = pdrop::rows_as_tokens(m.block(1, 1, 2, 3));
  static_assert(std::is_same_v<decltype(b), TokenView<const float>>);
  expect_token_addresses(b, 2, 3, 6, [&](auto t, auto f) { return &m(1 + t, 1 + f); });
}

// One column per token (VectorXi, a strided Map, a column of a row-major
// matrix): the column's inner stride becomes the row stride.
TEST(EigenAdapters, RowsAsTokensVectorUsesInnerStride) {
  Eigen::VectorXi v(7);
  auto tv = pdrop::rows_as_tokens(v);
  static_assert(std::is_same_v<decltype(tv), TokenView<int>>);
  expect_token_addresses(tv, 7, 1, 1, [&](std::int64_t t, std::int64_t) { return &v(t); });

  std::vector<int> buf(2 * 65);
  Eigen::Map<Eigen::VectorXi, 0, Eigen::InnerStride<2>> strided(buf.data(), 65);
  expect_token_addresses(pdrop::rows_as_tokens(strided), 65, 1, 2,
                         [&](std::int64_t t, std::int64_t) { return &strided(t); });

  RowMajorXf m(6, 5);
  expect_token_addresses(pdrop::rows_as_tokens(m.col(3)), 6, 1, 5,
                         [&](std::int64_t t, std::int64_t) { return &m(t, 3); });
}

// cols_as_tokens on a column-major matrix (features x tokens) and a block of
// it: token t, feature f is Eigen's (f, t).
TEST(EigenAdapters, ColsAsTokensColumnMajorMatrixAndBlock) {
  Eigen::MatrixXf m = Eigen::MatrixXf::Random(7, 12);
  expect_token_addresses(pdrop::cols_as_tokens(m), 12, 7, 7,
                         [&](std::int64_t t, std::int64_t f) { return &m(f, t); });
  auto b = pdrop::cols_as_tokens(m.block(1, 2, 3, 4));
  EXPECT_EQ(b.data, &m(1, 2));
  expect_token_addresses(b, 4, 3, 7, [&](auto t, auto f) { return &m(1 + f, 2 + t); });
  const Eigen::MatrixXf& cm = m;
  static_assert(std::is_same_v<decltype(pdrop::cols_as_tokens(cm)), TokenView<const float>>);
}

// One row of per-token scalars (a row of a column-major matrix, a
// RowVectorXf): the row's inner stride is the token step, not outerStride()
// (which would give 1 instead of rows() and n instead of 1, reading past the
// end of the vector).
TEST(EigenAdapters, ColsAsTokensSingleRowUsesInnerStride) {
  Eigen::MatrixXf m = Eigen::MatrixXf::Random(4, 5);
  expect_token_addresses(pdrop::cols_as_tokens(m.row(2)), 5, 1, 4,
                         [&](std::int64_t t, std::int64_t) { return &m(2, t); });
  Eigen::RowVectorXf r = Eigen::RowVectorXf::Random(6);
  expect_token_addresses(pdrop::cols_as_tokens(r), 6, 1, 1,
                         [&](std::int64_t t, std::int64_t) { return &r(t); });
}

// split_heads: an NHD view over the rows: dim = features / heads,
// head_stride = dim, token_stride = the rows' stride; (h, t, i) is feature
// h * dim + i of token t.
TEST(SplitHeads, DimsStridesAndAddresses) {
  std::vector<float> buf(65 * 3 * 8 * 64);
  for (std::int64_t heads : {1, 2, 3, 8})
    for (std::int64_t d : {1, 3, 7, 64})
      for (std::int64_t n : {1, 7, 65}) {
        const std::int64_t rs = 3 * heads * d;  // a fused q|k|v row
        float* p = buf.data() + heads * d;      // its k slice
        const HeadView<float> v = pdrop::split_heads(TokenView<float>(p, n, heads * d, rs), heads);
        EXPECT_EQ(v.data, p);
        EXPECT_EQ(v.heads, heads);
        EXPECT_EQ(v.tokens, n);
        EXPECT_EQ(v.dim, d);
        EXPECT_EQ(v.head_stride, d);
        EXPECT_EQ(v.token_stride, rs);
        expect_head_addresses(v, [&](std::int64_t h, std::int64_t t, std::int64_t i) {
          return p + t * rs + h * d + i;
        });
      }
  // Const rows give a const head view.
  const std::vector<float>& cbuf = buf;
  auto c = pdrop::split_heads(TokenView<const float>(cbuf.data(), 2, 6), 3);
  static_assert(std::is_same_v<decltype(c), HeadView<const float>>);
  EXPECT_EQ(c.dim, 2);
}

// features not a multiple of heads (or heads <= 0): shape_error naming both.
TEST(SplitHeads, RejectsFeaturesNotDivisibleByHeads) {
  std::vector<float> buf(40);
  const TokenView<float> rows(buf.data(), 4, 10);
  EXPECT_THROW(pdrop::split_heads(rows, 3), pdrop::shape_error);
  for (std::int64_t heads : {3, 4, 0, -2}) {
    const std::string h = "heads (" + std::to_string(heads) + ")";
    pdrop_test::expect_invalid([&] { pdrop::split_heads(rows, heads); }, "rows.features (10)");
    pdrop_test::expect_invalid([&] { pdrop::split_heads(rows, heads); }, h);
  }
  EXPECT_EQ(pdrop::split_heads(rows, 5).dim, 2);
  EXPECT_EQ(pdrop::split_heads(rows, 10).dim, 1);
}

}  // namespace

// span<const T> takes a braced list of values for a parameter (the list
// lives for the call); a pointer and a count still mean what they did.
TEST(Span, BracedListOrPointerAndCount) {
  const auto sum = [](pdrop::span<const std::int64_t> s) {
    std::int64_t total = 0;
    for (std::int64_t v : s) total += v * 10 + s.size;
    return total;
  };
  EXPECT_EQ(sum({8, 16, 24}), (8 + 16 + 24) * 10 + 3 * 3);
  EXPECT_EQ(sum({7}), 7 * 10 + 1);
  const std::int64_t x[] = {5, 6};
  EXPECT_EQ(sum({x, 2}), (5 + 6) * 10 + 2 * 2);
  EXPECT_EQ(sum({}), 0);
  static_assert(!std::is_constructible_v<pdrop::span<std::int64_t>,
                                         std::initializer_list<std::int64_t>>,
                "a writable span never views a temporary list");
}
