// DLPack views: every accepted layout describes the same memory as the
// hand-built view (checked field by field and by scoring through it), and
// every rejection names the argument and its values. Built only when CMake
// found dlpack/dlpack.h (PDROP_HAVE_DLPACK).
#if defined(PDROP_HAVE_DLPACK)

#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "pdrop/dlpack.hpp"
#include "test_util.hpp"

namespace {

using pdrop::DlpackLayout;
using pdrop::HeadView;
using pdrop::ImageSpan;

// A DLTensor with its own shape and strides arrays (empty strides: NULL).
struct Dl {
  std::vector<std::int64_t> shape, strides;
  DLTensor t{};
  Dl(void* data, DLDataType dtype, std::vector<std::int64_t> sh,
     std::vector<std::int64_t> st = {}, std::uint64_t byte_offset = 0)
      : shape(std::move(sh)), strides(std::move(st)) {
    t.data = data;
    t.device = DLDevice{kDLCPU, 0};
    t.ndim = static_cast<int>(shape.size());
    t.dtype = dtype;
    t.shape = shape.data();
    t.strides = strides.empty() ? nullptr : strides.data();
    t.byte_offset = byte_offset;
  }
};

template <class T>
DLDataType dtype_of() {
  if (std::is_same_v<T, float>) return DLDataType{kDLFloat, 32, 1};
  if (std::is_same_v<T, pdrop::half>) return DLDataType{kDLFloat, 16, 1};
  return DLDataType{kDLBfloat, 16, 1};
}

template <class T>
void expect_same_view(const HeadView<T>& a, const HeadView<T>& b) {
  EXPECT_EQ(a.data, b.data);
  EXPECT_EQ(a.heads, b.heads);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.dim, b.dim);
  if (a.heads > 1) {
    EXPECT_EQ(a.head_stride, b.head_stride);
  }
  if (a.tokens > 1) {
    EXPECT_EQ(a.token_stride, b.token_stride);
  }
}

template <class T>
class DlpackTest : public ::testing::Test {};
TYPED_TEST_SUITE(DlpackTest, pdrop_test::FloatTypes, pdrop_test::FloatTypeNames);

TYPED_TEST(DlpackTest, EveryHeadLayoutScoresLikeTheHandBuiltView) {
  using T = TypeParam;
  std::mt19937 rng(6);
  const std::int64_t hq = 4, hkv = 2, tok = 23, d = 9, cap = 29, layers = 2;
  const DLDataType dt = dtype_of<T>();
  // Two layers of a head-major cache [L][1][Hkv][cap][d]; this call uses
  // layer 1, tokens [0, tok), and the last query row q[:, :, -1:, :] of a
  // [1, hq, 3, d] projection.
  auto cache = pdrop_test::random_vector<T>(static_cast<std::size_t>(layers * hkv * cap * d), rng, -2, 2);
  auto qbuf = pdrop_test::random_vector<T>(static_cast<std::size_t>(hq * 3 * d), rng, -2, 2);
  const std::int64_t layer_elems = hkv * cap * d;
  T* k1 = cache.data() + layer_elems;
  const HeadView<const T> k_hand = pdrop::hnd_view<const T>(k1, hkv, tok, d, cap);
  const HeadView<const T> q_hand(qbuf.data() + 2 * d, hq, 1, d, 3 * d, d);

  // q as PyTorch exports q[:, :, -1:, :]: offset into the storage, the
  // strides of the full tensor.
  Dl q_dl(qbuf.data(), dt, {1, hq, 1, d}, {hq * 3 * d, 3 * d, d, 1},
          2 * d * sizeof(T));
  const auto q_view = pdrop::dlpack_head_view<const T>(q_dl.t, DlpackLayout::hnd, "q");
  expect_same_view(q_view, q_hand);

  const std::vector<std::int64_t> pos{tok - 1};
  const std::vector<ImageSpan> spans{{2, 17}};
  pdrop::Workspace ws;
  std::vector<float> want(17), got(17);
  pdrop::score_image_tokens(q_hand, pos, k_hand, spans, ws, want);

  const std::uint64_t off1 = static_cast<std::uint64_t>(layer_elems) * sizeof(T);
  // The same keys described five ways.
  std::vector<Dl> ks;
  std::vector<DlpackLayout> lay;
  // [H, T, D] hnd, strides of the cache (capacity cap), byte_offset to layer 1.
  ks.emplace_back(cache.data(), dt, std::vector<std::int64_t>{hkv, tok, d},
                  std::vector<std::int64_t>{cap * d, d, 1}, off1);
  lay.push_back(DlpackLayout::hnd);
  // [1, H, T, D] hnd, data pointer at layer 1, odd batch stride (size 1: ignored).
  ks.emplace_back(k1, dt, std::vector<std::int64_t>{1, hkv, tok, d},
                  std::vector<std::int64_t>{-5, cap * d, d, 1});
  lay.push_back(DlpackLayout::hnd);
  // [1, T, H, D] nhd: k.transpose(1, 2) of the cache slice.
  ks.emplace_back(cache.data(), dt, std::vector<std::int64_t>{1, tok, hkv, d},
                  std::vector<std::int64_t>{layer_elems, d, cap * d, 1}, off1);
  lay.push_back(DlpackLayout::nhd);
  // [T, H, D] nhd, the same transposed strides without the batch.
  ks.emplace_back(k1, dt, std::vector<std::int64_t>{tok, hkv, d},
                  std::vector<std::int64_t>{d, cap * d, 1});
  lay.push_back(DlpackLayout::nhd);
  for (std::size_t i = 0; i < ks.size(); ++i) {
    SCOPED_TRACE(i);
    const auto kv = pdrop::dlpack_head_view<const T>(ks[i].t, lay[i], "k");
    expect_same_view(kv, k_hand);
    std::fill(got.begin(), got.end(), -1.0f);
    pdrop::score_image_tokens(q_view, pos, kv, spans, ws, got);
    EXPECT_TRUE(pdrop_test::same_bits(got, want));
  }
}

TYPED_TEST(DlpackTest, CompactTensorsWithNullStrides) {
  using T = TypeParam;
  std::mt19937 rng(7);
  const std::int64_t h = 3, tok = 11, d = 5;
  auto buf = pdrop_test::random_vector<T>(static_cast<std::size_t>(h * tok * d), rng);
  const DLDataType dt = dtype_of<T>();
  const auto hnd = pdrop::hnd_view<const T>(buf.data(), h, tok, d);
  const auto nhd = pdrop::nhd_view<const T>(buf.data(), tok, h, d);
  Dl a(buf.data(), dt, {h, tok, d}), b(buf.data(), dt, {1, h, tok, d});
  Dl c(buf.data(), dt, {tok, h, d}), e(buf.data(), dt, {1, tok, h, d});
  expect_same_view(pdrop::dlpack_head_view<const T>(a.t, DlpackLayout::hnd), hnd);
  expect_same_view(pdrop::dlpack_head_view<const T>(b.t, DlpackLayout::hnd), hnd);
  expect_same_view(pdrop::dlpack_head_view<const T>(c.t, DlpackLayout::nhd), nhd);
  expect_same_view(pdrop::dlpack_head_view<const T>(e.t, DlpackLayout::nhd), nhd);

  // The scores through NHD-described memory equal the hand-built NHD view's.
  const std::vector<std::int64_t> pos{tok - 1};
  const std::vector<ImageSpan> spans{{1, 8}};
  pdrop::Workspace ws;
  auto qbuf = pdrop_test::random_vector<T>(static_cast<std::size_t>(2 * h * d), rng);
  Dl q(qbuf.data(), dt, {1, 2 * h, 1, d});
  std::vector<float> want(8), got(8);
  pdrop::score_image_tokens(pdrop::hnd_view<const T>(qbuf.data(), 2 * h, 1, d), pos, nhd, spans, ws, want);
  pdrop::score_image_tokens(pdrop::dlpack_head_view<const T>(q.t, DlpackLayout::hnd), pos,
                            pdrop::dlpack_head_view<const T>(e.t, DlpackLayout::nhd), spans, ws, got);
  EXPECT_TRUE(pdrop_test::same_bits(got, want));

  // A managed tensor hands over its dl_tensor.
  DLManagedTensor m{};
  m.dl_tensor = c.t;
  expect_same_view(pdrop::dlpack_head_view<const T>(m, DlpackLayout::nhd), nhd);
}

TEST(Dlpack, TokenRowsAndSpans) {
  std::vector<float> rows(7 * 12, 0.0f);
  const DLDataType f32{kDLFloat, 32, 1};
  // [T, W] rows of 10 features in rows of 12, from row 1 on.
  Dl a(rows.data(), f32, {6, 10}, {12, 1}, 12 * sizeof(float));
  auto v = pdrop::dlpack_token_view<float>(a.t, "hidden");
  EXPECT_EQ(v.data, rows.data() + 12);
  EXPECT_EQ(v.tokens, 6);
  EXPECT_EQ(v.features, 10);
  EXPECT_EQ(v.row_stride, 12);
  Dl b(rows.data(), f32, {1, 7, 12});  // [1, T, W], compact
  auto w = pdrop::dlpack_token_view<const float>(b.t);
  EXPECT_EQ(w.data, rows.data());
  EXPECT_EQ(w.tokens, 7);
  EXPECT_EQ(w.features, 12);
  EXPECT_EQ(w.row_stride, 12);

  // [T] int64 positions: a column of a [T, 3] M-RoPE table as a TokenView,
  // and a compact vector as a span.
  std::vector<std::int64_t> pos(15);
  for (std::size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<std::int64_t>(i);
  const DLDataType i64{kDLInt, 64, 1};
  Dl col(pos.data(), i64, {5}, {3}, 1 * sizeof(std::int64_t));
  auto c = pdrop::dlpack_token_view<std::int64_t>(col.t, "positions");
  EXPECT_EQ(c.data, pos.data() + 1);
  EXPECT_EQ(c.tokens, 5);
  EXPECT_EQ(c.features, 1);
  EXPECT_EQ(c.row_stride, 3);
  EXPECT_EQ(c.row(4)[0], 13);
  Dl vec(pos.data(), i64, {15});
  auto s = pdrop::dlpack_span<const std::int64_t>(vec.t, "positions");
  EXPECT_EQ(s.data, pos.data());
  EXPECT_EQ(s.size, 15);
  DLManagedTensor m{};
  m.dl_tensor = vec.t;
  EXPECT_EQ(pdrop::dlpack_span<std::int64_t>(m).size, 15);
  EXPECT_EQ(pdrop::dlpack_token_view<std::int64_t>(m).tokens, 15);

  // Empty tensors: no element is read, data may be null.
  Dl empty(nullptr, f32, {0, 4});
  EXPECT_EQ(pdrop::dlpack_token_view<float>(empty.t).tokens, 0);
}

TEST(Dlpack, RejectsWithTheArgumentAndValuesNamed) {
  using pdrop_test::expect_invalid;
  alignas(16) static float buf[4 * 8 * 6];
  const DLDataType f32{kDLFloat, 32, 1};
  const auto head = [](Dl& x, DlpackLayout l = DlpackLayout::hnd) {
    pdrop::dlpack_head_view<const float>(x.t, l, "k");
  };
  const auto shape_err = [](auto f, const std::string& s) {
    try { f(); ADD_FAILURE() << "no exception"; }
    catch (const pdrop::shape_error& e) { EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what(); }
  };
  const auto value_err = [](auto f, const std::string& s) {
    try { f(); ADD_FAILURE() << "no exception"; }
    catch (const pdrop::value_error& e) { EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what(); }
  };

  {  // devices
    Dl x(buf, f32, {4, 8, 6});
    x.t.device = DLDevice{kDLCUDA, 1};
    value_err([&] { head(x); }, "pdrop::dlpack_head_view: k.device (kDLCUDA = 2, id 1) must be kDLCPU or kDLCUDAHost");
    x.t.device = DLDevice{kDLROCM, 0};
    value_err([&] { head(x); }, "k.device (kDLROCM = 10");
    // Device types past this DLPack's enum (16 is kDLHexagon in later
    // versions) arrive as raw numbers.
    for (std::int32_t raw : {16, 99}) {
      std::memcpy(&x.t.device.device_type, &raw, sizeof raw);
      value_err([&] { head(x); }, raw == 16 ? "k.device (kDLHexagon = 16" : "k.device (unknown device type = 99");
    }
    x.t.device = DLDevice{kDLCUDAHost, 0};
    EXPECT_NO_THROW(head(x));
  }
  {  // dtypes
    Dl x(buf, DLDataType{kDLFloat, 16, 1}, {4, 8, 6});
    value_err([&] { head(x); }, "k.dtype (code 2 kDLFloat, bits 16, lanes 1) must be float32 (code 2 kDLFloat, bits 32, lanes 1)");
    x.t.dtype = DLDataType{kDLFloat, 32, 4};
    value_err([&] { head(x); }, "k.dtype (code 2 kDLFloat, bits 32, lanes 4)");
    x.t.dtype = DLDataType{kDLBfloat, 16, 1};
    value_err([&] { pdrop::dlpack_head_view<pdrop::half>(x.t, DlpackLayout::hnd, "k"); },
              "k.dtype (code 4 kDLBfloat, bits 16, lanes 1) must be float16");
    x.t.dtype = DLDataType{kDLInt, 32, 1};
    value_err([&] { pdrop::dlpack_span<std::int64_t>(x.t, "pos"); },
              "pos.dtype (code 0 kDLInt, bits 32, lanes 1) must be int64");
  }
  {  // ndim, batch, shape
    Dl x(buf, f32, {32, 6});
    shape_err([&] { head(x); }, "k.ndim (2) must be 3 ([H, T, D]) or 4 ([1, H, T, D]) for layout hnd");
    shape_err([&] { head(x, DlpackLayout::nhd); }, "([T, H, D]) or 4 ([1, T, H, D]) for layout nhd");
    Dl b(buf, f32, {2, 2, 8, 6});
    shape_err([&] { head(b); }, "k.shape[0] (2) must be 1");
    Dl n(buf, f32, {4, -8, 6});
    shape_err([&] { head(n); }, "k.shape[1] (-8) must be >= 0");
    Dl s(buf, f32, {4, 8, 6});
    s.t.shape = nullptr;
    shape_err([&] { head(s); }, "k.shape is null with ndim 3");
    Dl t5(buf, f32, {1, 1, 4, 8, 6});
    shape_err([&] { pdrop::dlpack_token_view<float>(t5.t, "hidden"); }, "hidden.ndim (5) must be 1 ([T]), 2 ([T, W]) or 3 ([1, T, W])");
    Dl sp(buf, f32, {4, 8});
    shape_err([&] { pdrop::dlpack_span<float>(sp.t, "scores"); }, "scores.ndim (2) must be 1 ([T])");
  }
  {  // strides
    Dl x(buf, f32, {4, 8, 3}, {48, 6, 2});
    shape_err([&] { head(x); }, "k.strides[2] (2) must be 1: the last dimension (size 3) must be contiguous");
    Dl neg(buf + 42, f32, {4, 8, 6}, {48, -6, 1});
    shape_err([&] { head(neg); }, "k.strides[1] (-6) must be >= 0");
    Dl sp(buf, f32, {5}, {2});
    shape_err([&] { pdrop::dlpack_span<float>(sp.t, "v"); }, "v.strides[0] (2) must be 1");
    Dl small(buf, f32, {4, 8, 6}, {48, 3, 1});  // token rows overlap
    shape_err([&] { head(small); }, "k.token_stride (3) must be >= dim (6)");
    // A writable view also needs heads and tokens apart: rows of head 1
    // reach into head 2's here.
    Dl alias(buf, f32, {4, 8, 6}, {24, 6, 1});
    EXPECT_NO_THROW(head(alias));  // read-only: allowed
    shape_err([&] { pdrop::dlpack_head_view<float>(alias.t, DlpackLayout::hnd, "k"); },
              "make rows of different heads and tokens overlap");
    Dl rows(buf, f32, {8, 6}, {4, 1});
    shape_err([&] { pdrop::dlpack_token_view<float>(rows.t, "hidden"); },
              "hidden.row_stride (4) must be >= features (6)");
    Dl huge(buf, f32, {4, 8, 6}, {std::numeric_limits<std::int64_t>::max() / 2, 6, 1});
    shape_err([&] { head(huge); }, "overflows int64");
  }
  {  // data, offset, alignment
    Dl x(nullptr, f32, {4, 8, 6});
    shape_err([&] { head(x); }, "k.data is null with 192 elements in reach");
    Dl mis(reinterpret_cast<unsigned char*>(buf) + 2, f32, {4, 8, 6});
    shape_err([&] { head(mis); }, "must be aligned to the element size (4 bytes)");
    Dl off(buf, f32, {2, 8, 6}, {}, 6);
    shape_err([&] { head(off); }, "k.data + byte_offset (");
    Dl ok(buf, f32, {2, 8, 6}, {}, 8);
    EXPECT_EQ(pdrop::dlpack_head_view<const float>(ok.t, DlpackLayout::hnd).data, buf + 2);
    Dl big(buf, f32, {4, 8, 6}, {}, std::numeric_limits<std::uint64_t>::max());
    shape_err([&] { head(big); }, "k.byte_offset (18446744073709551615) is too large");
  }
  // Every error is a std::invalid_argument too.
  Dl x(buf, f32, {4, 8, 6});
  x.t.device = DLDevice{kDLCUDA, 0};
  expect_invalid([&] { head(x); }, "kDLCUDA");
}

}  // namespace

#endif  // PDROP_HAVE_DLPACK
