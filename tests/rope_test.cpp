// RoPE re-rotation: rerotate_heads against a plain rotation written here in
// double. Each case draws unrotated rows u, stores u rotated at the `from`
// positions into a buffer of T, re-rotates it to `to`, and compares with u
// rotated at `to` from scratch; every byte outside the rotary part of the
// view (padding, capacity rows, partial-rotary tail) and every row whose
// positions do not change must keep its bits. Then rope_inv_freq against
// the plain float32 formula, the compact -> re-rotate flow of an engine
// that re-indexes after a drop, and every rejection, each leaving x as it
// was.
#include <gtest/gtest.h>

#include <limits>
#include <sstream>

#include "pdrop/rope.hpp"
#include "test_util.hpp"

namespace {

using pdrop::HeadView;
using pdrop::RopeLayout;
using pdrop::TokenView;
using I64 = std::int64_t;
using PosRows = std::vector<std::vector<I64>>;  // per token, one value per position row

constexpr RopeLayout kLayouts[] = {RopeLayout::rotate_half, RopeLayout::interleaved};
const char* layout_name(RopeLayout l) {
  return l == RopeLayout::rotate_half ? "rotate_half" : "interleaved";
}

// The position row rotary pair i reads: the section holding i (contiguous
// sections; none: row 0), or Qwen3-VL's interleave written as HF's
// apply_interleaved_mrope slices its frequency table: every pair starts on
// row 0, then for dim 1 and 2 the pairs offset, offset + 3, ... below
// 3 * section[dim] take row dim.
I64 plain_row(I64 i, const std::vector<I64>& sections, bool interleaved) {
  if (sections.empty()) return 0;
  if (interleaved) {
    I64 n = 0;
    for (I64 x : sections) n += x;
    std::vector<I64> row(static_cast<std::size_t>(n), 0);
    for (I64 dim = 1; dim <= 2; ++dim)
      for (I64 j = dim; j < 3 * sections[dim] && j < n; j += 3) row[j] = dim;
    return row[i];
  }
  I64 s = 0, end = sections[0];
  while (i >= end) end += sections[++s];
  return s;
}

// The plain rotation: u (one head row of any dim) rotated at the position
// rows p. Pair i is (i, i + n) for rotate_half and (2i, 2i + 1) for
// interleaved (n = inv_freq.size()); it turns by p[s] * inv_freq[i], s the
// section holding i (sections empty: s = 0). Dims >= 2n are copied.
std::vector<double> naive_rope(const std::vector<double>& u, const std::vector<I64>& p,
                               const std::vector<float>& inv_freq, RopeLayout layout,
                               const std::vector<I64>& sections, bool interleaved = false) {
  std::vector<double> x = u;
  const I64 n = static_cast<I64>(inv_freq.size());
  for (I64 i = 0; i < n; ++i) {
    const std::size_t s = static_cast<std::size_t>(plain_row(i, sections, interleaved));
    const double th = static_cast<double>(p[s]) * static_cast<double>(inv_freq[i]);
    const I64 ia = layout == RopeLayout::rotate_half ? i : 2 * i;
    const I64 ib = layout == RopeLayout::rotate_half ? i + n : 2 * i + 1;
    x[ia] = u[ia] * std::cos(th) - u[ib] * std::sin(th);
    x[ib] = u[ib] * std::cos(th) + u[ia] * std::sin(th);
  }
  return x;
}

// theta^(-2i/d) in float32, written as the HF default init reads.
std::vector<float> plain_inv_freq(I64 d, float theta) {
  std::vector<float> f(static_cast<std::size_t>(d / 2));
  for (I64 i = 0; i < d / 2; ++i)
    f[i] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(d));
  return f;
}

// Llama 3 scaling (factor 8, low_freq_factor 1, high_freq_factor 4, original
// context 8192), plainly: wavelengths shorter than 8192 / 4 keep their
// frequency, longer than 8192 / 1 divide it by 8, in between blend the two
// linearly in 8192 / wavelength.
std::vector<float> llama3_inv_freq(I64 d, float theta) {
  std::vector<float> f = plain_inv_freq(d, theta);
  const double pi = std::acos(-1.0), old_ctx = 8192, factor = 8, low = 1, high = 4;
  for (float& x : f) {
    const double wavelen = 2 * pi / x;
    if (wavelen < old_ctx / high) continue;
    if (wavelen > old_ctx / low) {
      x = static_cast<float>(x / factor);
    } else {
      const double smooth = (old_ctx / wavelen - low) / (high - low);
      x = static_cast<float>((1 - smooth) * x / factor + smooth * x);
    }
  }
  return f;
}

// The per-head layouts of test_util.hpp but the fused slice.
using Kind = pdrop_test::HeadKind;
using Layout = pdrop_test::HeadLayout;
const Kind kKinds[] = {Kind::hnd, Kind::hnd_cap, Kind::nhd, Kind::nhd_pad};
const char* const kKindNames[] = {"HND", "HND+cap", "NHD", "NHD+pad"};

// One re-rotation problem. Positions are stored `pos_pad` elements apart
// beyond their rows (padding filled with junk the call must not read).
struct Case {
  I64 heads = 2, dim = 16;
  std::vector<float> inv_freq;
  RopeLayout layout = RopeLayout::rotate_half;
  std::vector<I64> sections;  // empty: one position row
  bool interleaved = false;   // Qwen3-VL's interleaved sections
  PosRows from, to;
  Kind kind = Kind::hnd;
  I64 pos_pad = 0;
  I64 tokens() const { return static_cast<I64>(from.size()); }
  I64 rows() const { return sections.empty() ? 1 : static_cast<I64>(sections.size()); }
  std::string name() const {
    std::ostringstream os;
    os << layout_name(layout) << " " << kKindNames[int(kind)] << " heads " << heads << " dim "
       << dim << " pairs " << inv_freq.size() << " rows " << rows() << " tokens " << tokens();
    return os.str();
  }
};

template <class P>
std::vector<P> pos_buffer(const PosRows& p, I64 rows, I64 pad) {
  std::vector<P> out(p.size() * static_cast<std::size_t>(rows + pad), static_cast<P>(77));
  for (std::size_t t = 0; t < p.size(); ++t)
    for (I64 r = 0; r < rows; ++r) out[t * (rows + pad) + r] = static_cast<P>(p[t][r]);
  return out;
}

template <class P>
TokenView<const P> pos_view(const std::vector<P>& buf, const Case& c) {
  return TokenView<const P>(buf.data(), c.tokens(), c.rows(), c.rows() + c.pos_pad);
}

// Spacing of the storage type's values in [1, 2): 2^-23 (float), 2^-10
// (half), 2^-7 (bfloat16). Written out: Eigen's numeric_limits<half>::
// epsilon() is 2^-13, not half's spacing at 1.
template <class T>
double eps_of() {
  if constexpr (std::is_same_v<T, float>) return std::ldexp(1.0, -23);
  if constexpr (std::is_same_v<T, pdrop::half>) return std::ldexp(1.0, -10);
  return std::ldexp(1.0, -7);
}

// The buffer of a case: every element random (it stands for padding,
// capacity rows and other data), then row (h, t) of the view set to
// u(h, t) rotated at `at` (its rotary dims; u itself in the rest), stored
// as T.
template <class T>
struct Buffer {
  Layout L;
  std::vector<std::vector<double>> u;  // [h * tokens + t], dim values
  std::vector<T> buf;
  std::vector<bool> rotary;            // element is a rotary dim of the view
  Buffer(const Case& c, std::mt19937& rng)
      : L{c.kind, c.heads, c.tokens(), c.dim} {
    buf = pdrop_test::random_vector<T>(static_cast<std::size_t>(L.size()), rng, -1, 1);
    rotary.assign(buf.size(), false);
    std::uniform_real_distribution<double> dist(-1, 1);
    const I64 r = 2 * static_cast<I64>(c.inv_freq.size());
    for (I64 h = 0; h < c.heads; ++h)
      for (I64 t = 0; t < c.tokens(); ++t) {
        std::vector<double> row(static_cast<std::size_t>(c.dim));
        for (double& v : row) v = dist(rng);
        u.push_back(row);
        for (I64 e = 0; e < r; ++e) rotary[L.off(h, t, e)] = true;
      }
  }
  const std::vector<double>& row(I64 h, I64 t) const { return u[h * L.tokens + t]; }
  void store(const Case& c, const PosRows& at) {
    for (I64 h = 0; h < L.heads; ++h)
      for (I64 t = 0; t < L.tokens; ++t) {
        const auto x = naive_rope(row(h, t), at[t], c.inv_freq, c.layout, c.sections, c.interleaved);
        for (I64 e = 0; e < L.dim; ++e)
          buf[L.off(h, t, e)] = static_cast<T>(static_cast<float>(x[e]));
      }
  }
};

// Largest norm of a rotary pair of u: rotation keeps pair norms, so every
// element of u rotated anywhere is at most this in magnitude.
double max_pair_norm(const std::vector<double>& u, const Case& c) {
  const I64 n = static_cast<I64>(c.inv_freq.size());
  double m = 0;
  for (I64 i = 0; i < n; ++i) {
    const I64 ia = c.layout == RopeLayout::rotate_half ? i : 2 * i;
    const I64 ib = c.layout == RopeLayout::rotate_half ? i + n : 2 * i + 1;
    m = std::max(m, std::hypot(u[ia], u[ib]));
  }
  return m;
}

// Tolerance. A stored element carries at most half a unit in the last
// place of T, and ulp(v) <= eps_T * |v| <= eps_T * M for |v| <= M, the
// row's largest pair norm. The input pair's rounding vector has norm <=
// sqrt(2)/2 eps_T M and a rotation keeps it; the double arithmetic adds
// ~1e-13 at most (angles below 1e6 rad); the output is rounded once more
// (<= eps_T M / 2, through float: < 2^-24 more). So one re-rotation is off
// by <= ~1.21 eps_T M from the exact row; 2 eps_T M is the bound (float
// ~2.4e-7 M, half ~2.0e-3 M, bfloat16 ~1.6e-2 M). A round trip rounds
// twice more: <= ~1.92 eps_T M, bound 3 eps_T M.
template <class T>
double tolerance(double m, double ulps) {
  return ulps * eps_of<T>() * m;
}

// Checks buf (after re-rotation from c.from to c.to) against the rows
// rotated at `want` from scratch, within `ulps`. Bits must not change where
// nothing rotates: outside the rotary part, and every pair whose section's
// position is the same in c.from and c.to (all pairs of a token that does
// not move). `before` is the buffer before the call. Reports the first
// mismatch and the count.
template <class T>
void expect_rows(const Case& c, const Buffer<T>& b, const std::vector<T>& before,
                 const PosRows& want, double ulps, const std::string& what) {
  I64 bad = 0;
  std::string first;
  auto note = [&](const std::string& m) {
    if (bad++ == 0) first = m;
  };
  for (std::size_t e = 0; e < b.buf.size(); ++e)
    if (!b.rotary[e] && !pdrop_test::same_bits(&b.buf[e], &before[e], 1))
      note("element " + std::to_string(e) + " outside the rotary part changed");
  const I64 n = static_cast<I64>(c.inv_freq.size());
  for (I64 t = 0; t < c.tokens(); ++t)
    for (I64 h = 0; h < c.heads; ++h) {
      const auto x = naive_rope(b.row(h, t), want[t], c.inv_freq, c.layout, c.sections, c.interleaved);
      const double tol = tolerance<T>(max_pair_norm(b.row(h, t), c), ulps);
      for (I64 i = 0; i < n; ++i) {
        const std::size_t s = static_cast<std::size_t>(plain_row(i, c.sections, c.interleaved));
        const bool still = c.from[t][s] == c.to[t][s];
        for (I64 e : {c.layout == RopeLayout::rotate_half ? i : 2 * i,
                      c.layout == RopeLayout::rotate_half ? i + n : 2 * i + 1}) {
          const std::size_t o = static_cast<std::size_t>(b.L.off(h, t, e));
          std::ostringstream os;
          os << "head " << h << " token " << t << " dim " << e << ": ";
          if (still) {
            if (!pdrop_test::same_bits(&b.buf[o], &before[o], 1))
              note(os.str() + "changed though its position row " + std::to_string(s) +
                   " did not move");
            continue;
          }
          const double got = pdrop_test::as_double(b.buf[o]);
          if (!(std::abs(got - x[e]) <= tol)) {
            os << "got " << got << " want " << x[e] << " (|diff| " << std::abs(got - x[e])
               << " > tol " << tol << ")";
            note(os.str());
          }
        }
      }
    }
  EXPECT_EQ(bad, 0) << what << ": " << c.name() << "\nfirst: " << first;
}

// Stores u rotated at c.from, re-rotates to c.to with position type P, and
// checks against u rotated at c.to.
template <class T, class P = I64>
void check_case(const Case& c, unsigned seed) {
  std::mt19937 rng(seed);
  Buffer<T> b(c, rng);
  b.store(c, c.from);
  const std::vector<T> before = b.buf;
  const auto from = pos_buffer<P>(c.from, c.rows(), c.pos_pad);
  const auto to = pos_buffer<P>(c.to, c.rows(), c.pos_pad);
  pdrop::rerotate_heads<T, P>(b.L.view(b.buf.data()), pos_view(from, c), pos_view(to, c),
                              c.inv_freq, c.layout, c.sections,
                              c.interleaved ? pdrop::MRopeLayout::interleaved
                                            : pdrop::MRopeLayout::sections);
  expect_rows(c, b, before, c.to, 2.0, "rerotate");
}

// Positions 1 row: `n` tokens, each uniform in [lo, hi].
PosRows random_positions(I64 n, I64 lo, I64 hi, std::mt19937& rng, I64 rows = 1) {
  std::uniform_int_distribution<I64> d(lo, hi);
  PosRows p(static_cast<std::size_t>(n));
  for (auto& r : p)
    for (I64 k = 0; k < rows; ++k) r.push_back(d(rng));
  return p;
}

PosRows ramp(I64 start, I64 n) {
  PosRows p;
  for (I64 i = 0; i < n; ++i) p.push_back({start + i});
  return p;
}

template <class T>
class RopeTyped : public ::testing::Test {};
TYPED_TEST_SUITE(RopeTyped, pdrop_test::FloatTypes, pdrop_test::FloatTypeNames);

// Both layouts, every view kind (dense HND, HND with spare capacity rows,
// NHD, NHD with padding between heads and after the last head), 1 to 3
// heads, the default table; positions random (about a third unchanged,
// which must keep their bits) and in padded position rows half the time.
TYPED_TEST(RopeTyped, EveryLayoutAndViewMatchesFreshRotation) {
  using T = TypeParam;
  std::mt19937 rng(1);
  unsigned seed = 100;
  for (RopeLayout layout : kLayouts)
    for (Kind kind : kKinds)
      for (I64 heads : {1, 3})
        for (I64 dim : {2, 8, 64}) {
          Case c;
          c.heads = heads;
          c.dim = dim;
          c.inv_freq = plain_inv_freq(dim, 10000.0f);
          c.layout = layout;
          c.kind = kind;
          c.pos_pad = seed % 2 ? 2 : 0;
          c.from = random_positions(7, 0, 60, rng);
          c.to = c.from;
          std::bernoulli_distribution move(0.65);
          for (auto& r : c.to)
            if (move(rng)) r[0] = std::uniform_int_distribution<I64>(0, 60)(rng);
          check_case<T>(c, seed++);
        }
}

// Partial rotary: only the first 2 * inv_freq.size dims turn; the tail
// (and every padding element) keeps its bits (checked in expect_rows).
TYPED_TEST(RopeTyped, PartialRotaryLeavesTailDimsBitIdentical) {
  using T = TypeParam;
  std::mt19937 rng(2);
  unsigned seed = 200;
  for (RopeLayout layout : kLayouts)
    for (Kind kind : {Kind::hnd, Kind::nhd_pad})
      for (I64 rot : {2, 8, 12, 18}) {
        Case c;
        c.heads = 2;
        c.dim = 20;  // GPT-NeoX / Phi style: rotary part first, the rest plain
        c.inv_freq = plain_inv_freq(rot, 10000.0f);
        c.layout = layout;
        c.kind = kind;
        c.from = random_positions(5, 0, 300, rng);
        c.to = random_positions(5, 0, 300, rng);
        check_case<T>(c, seed++);
      }
}

// A scaled table (Llama 3 style, written plainly above) with positions in
// the thousands: the rotation uses whatever table it is given.
TYPED_TEST(RopeTyped, ScaledLlama3TableAtLargePositions) {
  using T = TypeParam;
  const std::vector<float> f = llama3_inv_freq(32, 500000.0f);
  const std::vector<float> plain = plain_inv_freq(32, 500000.0f);
  // All three bands occur: unchanged, divided by 8, blended.
  int same = 0, eighth = 0, blended = 0;
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (f[i] == plain[i]) ++same;
    else if (f[i] == plain[i] / 8) ++eighth;
    else ++blended;
  }
  ASSERT_GT(same, 0);
  ASSERT_GT(eighth, 0);
  ASSERT_GT(blended, 0);
  std::mt19937 rng(3);
  unsigned seed = 300;
  for (RopeLayout layout : kLayouts) {
    Case c;
    c.heads = 2;
    c.dim = 32;
    c.inv_freq = f;
    c.layout = layout;
    c.kind = Kind::nhd;
    c.from = random_positions(9, 0, 20000, rng);
    c.to = random_positions(9, 0, 20000, rng);
    check_case<T>(c, seed++);
  }
}

// Qwen2-VL M-RoPE positions of text 2, a 1 x 3 x 3 image, text 2 (written
// out as get_rope_index gives them), starting at `start`.
PosRows qwen_grid_positions(I64 start) {
  PosRows p;
  for (I64 i = 0; i < 2; ++i) p.push_back({start + i, start + i, start + i});
  const I64 s = start + 2;
  for (I64 hi = 0; hi < 3; ++hi)
    for (I64 wi = 0; wi < 3; ++wi) p.push_back({s, s + hi, s + wi});
  for (I64 i = 0; i < 2; ++i) p.push_back({s + 3 + i, s + 3 + i, s + 3 + i});
  return p;
}

// M-RoPE with 3 rows, sections {2, 3, 3} (dim 16): the grid moved as a
// whole (the tokens before it dropped), and to random 3-row positions.
// Tokens whose three rows all stay keep their bits, and so do the pairs of
// a section whose row stays (expect_rows checks both).
TYPED_TEST(RopeTyped, MRopeThreeRowsOfAnImageGrid) {
  using T = TypeParam;
  std::mt19937 rng(4);
  unsigned seed = 400;
  for (RopeLayout layout : kLayouts)
    for (Kind kind : {Kind::hnd_cap, Kind::nhd})
      for (int target = 0; target < 3; ++target) {
        Case c;
        c.heads = 2;
        c.dim = 16;
        c.inv_freq = plain_inv_freq(16, 1000000.0f);
        c.layout = layout;
        c.kind = kind;
        c.sections = {2, 3, 3};
        c.pos_pad = 1;
        c.from = qwen_grid_positions(40);
        if (target == 0) c.to = qwen_grid_positions(3);
        if (target == 1) c.to = random_positions(c.tokens(), 0, 60, rng, 3);
        if (target == 2) {  // only the width row moves for the image tokens
          c.to = c.from;
          for (std::size_t t = 2; t < 11; ++t) c.to[t][2] += 5;
        }
        check_case<T>(c, seed++);
      }
}

// Qwen3-VL's interleaved sections (T H W T H W ...): sections {2, 3, 3} on
// 8 pairs and the released {24, 20, 20} on 64, 3 rows and llama.cpp's 4
// (IMROPE, 4th row unread); image-grid targets, random targets, and moves
// of one row only (the pairs of the other rows keep their bits).
TYPED_TEST(RopeTyped, MRopeInterleavedSections) {
  using T = TypeParam;
  std::mt19937 rng(6);
  unsigned seed = 600;
  for (RopeLayout layout : kLayouts)
    for (const std::vector<I64>& sec :
         {std::vector<I64>{2, 3, 3}, std::vector<I64>{24, 20, 20}, std::vector<I64>{2, 3, 3, 0}})
      for (int target = 0; target < 4; ++target) {
        Case c;
        I64 pairs = 0;
        for (I64 x : sec) pairs += x;
        c.heads = 2;
        c.dim = 2 * pairs;
        c.inv_freq = plain_inv_freq(c.dim, 5000000.0f);
        c.layout = layout;
        c.kind = target % 2 ? Kind::nhd_pad : Kind::hnd;
        c.sections = sec;
        c.interleaved = true;
        c.from = qwen_grid_positions(40);
        for (auto& r : c.from) r.resize(sec.size(), 0);
        if (target == 0) c.to = qwen_grid_positions(3);
        if (target == 1) c.to = random_positions(c.tokens(), 0, 60, rng, 3);
        if (target >= 2) {  // only the height (2) or width (3) row moves
          c.to = c.from;
          for (std::size_t t = 2; t < 11; ++t) c.to[t][static_cast<std::size_t>(target - 1)] += 5;
        }
        for (auto& r : c.to) r.resize(sec.size(), 0);
        check_case<T>(c, seed++);
      }
}

// llama.cpp's 4-row layout: sections {2, 3, 3, 0}; the 4th row is never
// read, so junk there (different in from and to) changes nothing: the
// result is byte-identical to the 3-row call, and tokens whose first three
// rows stay keep their bits.
TYPED_TEST(RopeTyped, MRopeFourRowsWithTrailingZeroSection) {
  using T = TypeParam;
  std::mt19937 rng(5);
  for (RopeLayout layout : kLayouts) {
    Case c3;
    c3.heads = 3;
    c3.dim = 16;
    c3.inv_freq = plain_inv_freq(16, 1000000.0f);
    c3.layout = layout;
    c3.sections = {2, 3, 3};
    c3.from = qwen_grid_positions(10);
    c3.to = qwen_grid_positions(0);
    c3.to[4] = c3.from[4];  // one token whose three real rows stay
    Case c4 = c3;
    c4.sections = {2, 3, 3, 0};
    for (auto& r : c4.from) r.push_back(std::uniform_int_distribution<I64>(-900, 900)(rng));
    for (auto& r : c4.to) r.push_back(std::uniform_int_distribution<I64>(-900, 900)(rng));
    // c4.from[4] != c4.to[4] (row 3 differs) but no pair rotates.
    std::mt19937 r3(500), r4(500);
    Buffer<T> b3(c3, r3), b4(c4, r4);
    b3.store(c3, c3.from);
    b4.store(c4, c4.from);
    ASSERT_TRUE(pdrop_test::same_bits(b3.buf, b4.buf));
    const std::vector<T> before = b4.buf;
    const auto f3 = pos_buffer<I64>(c3.from, 3, 0), t3 = pos_buffer<I64>(c3.to, 3, 0);
    const auto f4 = pos_buffer<I64>(c4.from, 4, 0), t4 = pos_buffer<I64>(c4.to, 4, 0);
    pdrop::rerotate_heads<T, I64>(b3.L.view(b3.buf.data()), pos_view(f3, c3), pos_view(t3, c3),
                                  c3.inv_freq, layout, c3.sections);
    pdrop::rerotate_heads<T, I64>(b4.L.view(b4.buf.data()), pos_view(f4, c4), pos_view(t4, c4),
                                  c4.inv_freq, layout, c4.sections);
    EXPECT_TRUE(pdrop_test::same_bits(b3.buf, b4.buf)) << layout_name(layout);
    expect_rows(c4, b4, before, c4.to, 2.0, "4-row M-RoPE");
    for (I64 h = 0; h < c4.heads; ++h)
      EXPECT_TRUE(pdrop_test::same_bits(&b4.buf[b4.L.off(h, 4, 0)], &before[b4.L.off(h, 4, 0)],
                                        static_cast<std::size_t>(c4.dim)))
          << "token 4, head " << h;
  }
}

// Large moves both ways, negative positions and deltas, and a jump of a
// million positions.
TYPED_TEST(RopeTyped, LargeAndNegativeDeltas) {
  using T = TypeParam;
  const std::pair<PosRows, PosRows> moves[] = {
      {ramp(700, 6), ramp(3, 6)},       // far back (a prefix of ~700 tokens dropped)
      {ramp(3, 6), ramp(700, 6)},       // far forward
      {ramp(-5, 6), ramp(40, 6)},       // negative positions
      {ramp(1000000, 6), ramp(0, 6)},   // a million back
      {ramp(0, 6), ramp(1000003, 6)}};  // and forward
  unsigned seed = 600;
  for (RopeLayout layout : kLayouts)
    for (const auto& [from, to] : moves) {
      Case c;
      c.heads = 2;
      c.dim = 64;
      c.inv_freq = plain_inv_freq(64, 10000.0f);
      c.layout = layout;
      c.kind = Kind::hnd_cap;
      c.from = from;
      c.to = to;
      check_case<T>(c, seed++);
    }
}

// from == to everywhere: x keeps every bit, special values included (a
// computed rotation by 0 would turn an infinity paired with it into NaN,
// since inf * sin 0 is NaN, and can flip the sign of a zero).
TYPED_TEST(RopeTyped, EqualPositionsLeaveEveryBit) {
  using T = TypeParam;
  std::mt19937 rng(7);
  const I64 heads = 2, tokens = 4, dim = 8;
  std::vector<T> x = pdrop_test::random_vector<T>(heads * tokens * dim, rng);
  x[0] = static_cast<T>(-0.0f);
  x[1] = static_cast<T>(std::numeric_limits<float>::quiet_NaN());
  x[4] = static_cast<T>(std::numeric_limits<float>::infinity());
  x[5] = static_cast<T>(-0.0f);
  x[9] = std::numeric_limits<T>::denorm_min();
  const std::vector<T> before = x;
  const std::vector<std::int32_t> p{5, 9, 9, 1000};
  for (RopeLayout layout : kLayouts) {
    pdrop::rerotate_heads<T, std::int32_t>(pdrop::hnd_view(x.data(), heads, tokens, dim),
                                           TokenView<const std::int32_t>(p.data(), tokens, 1),
                                           TokenView<const std::int32_t>(p.data(), tokens, 1),
                                           plain_inv_freq(dim, 10000.0f), layout);
    EXPECT_TRUE(pdrop_test::same_bits(x, before)) << layout_name(layout);
  }
}

// a -> b -> a returns the rows rotated at a (the original stored rows),
// within three roundings.
TYPED_TEST(RopeTyped, RoundTripReturnsTheOriginal) {
  using T = TypeParam;
  std::mt19937 rng(8);
  unsigned seed = 800;
  for (RopeLayout layout : kLayouts)
    for (bool mrope : {false, true}) {
      Case c;
      c.heads = 3;
      c.dim = 16;
      c.inv_freq = plain_inv_freq(16, 10000.0f);
      c.layout = layout;
      c.kind = Kind::nhd_pad;
      if (mrope) c.sections = {4, 2, 2};
      c.from = random_positions(6, 0, 900, rng, c.rows());
      c.to = random_positions(6, 0, 900, rng, c.rows());
      std::mt19937 r(seed++);
      Buffer<T> b(c, r);
      b.store(c, c.from);
      const std::vector<T> before = b.buf;
      const auto a = pos_buffer<I64>(c.from, c.rows(), 0), z = pos_buffer<I64>(c.to, c.rows(), 0);
      const auto v = b.L.view(b.buf.data());
      pdrop::rerotate_heads<T, I64>(v, pos_view(a, c), pos_view(z, c), c.inv_freq, layout, c.sections);
      pdrop::rerotate_heads<T, I64>(v, pos_view(z, c), pos_view(a, c), c.inv_freq, layout, c.sections);
      expect_rows(c, b, before, c.from, 3.0, "round trip");
    }
}

// Position types: int32 and int64 (checked against the reference), and
// 8-, 16-bit and unsigned 64-bit positions give the same bytes.
TEST(RopeRerotate, PositionTypesAgree) {
  Case c;
  c.heads = 2;
  c.dim = 16;
  c.inv_freq = plain_inv_freq(16, 10000.0f);
  c.from = ramp(200, 8);
  c.to = {{3}, {4}, {202}, {250}, {9}, {1}, {255}, {0}};
  c.kind = Kind::nhd;
  check_case<float, std::int32_t>(c, 900);
  check_case<pdrop::half, std::int64_t>(c, 901);
  check_case<pdrop::bfloat16, std::int32_t>(c, 902);
  std::vector<std::vector<float>> out;
  auto run = [&](auto tag) {
    using P = decltype(tag);
    std::mt19937 rng(903);
    Buffer<float> b(c, rng);
    b.store(c, c.from);
    const auto f = pos_buffer<P>(c.from, 1, 0), t = pos_buffer<P>(c.to, 1, 0);
    pdrop::rerotate_heads<float, P>(b.L.view(b.buf.data()), pos_view(f, c), pos_view(t, c),
                                    c.inv_freq);
    out.push_back(b.buf);
  };
  run(std::int64_t{});
  run(std::int32_t{});
  run(std::int16_t{});
  run(std::uint8_t{});
  run(std::uint64_t{});
  for (std::size_t i = 1; i < out.size(); ++i)
    EXPECT_TRUE(pdrop_test::same_bits(out[i], out[0])) << "position type " << i;
}

// No tokens, or no heads: nothing to do, nothing written, no error.
TEST(RopeRerotate, ZeroTokensOrHeadsAreNoOps) {
  std::vector<float> x(32, 1.5f);
  const auto before = pdrop_test::bytes_of(x);
  const std::vector<float> f = plain_inv_freq(8, 10000.0f);
  const std::vector<I64> p{1, 2, 3, 4};
  pdrop::rerotate_heads<float, I64>(pdrop::hnd_view(x.data(), 2, 0, 8, 2),  // capacity 2
                                    TokenView<const I64>(nullptr, 0, 1),
                                    TokenView<const I64>(nullptr, 0, 1), f);
  pdrop::rerotate_heads<float, I64>(HeadView<float>(nullptr, 0, 0, 8, 0, 0),
                                    TokenView<const I64>(nullptr, 0, 3),
                                    TokenView<const I64>(nullptr, 0, 3), f,
                                    RopeLayout::interleaved, std::vector<I64>{1, 1, 2});
  pdrop::rerotate_heads<float, I64>(HeadView<float>(x.data(), 0, 4, 8, 8, 8),
                                    TokenView<const I64>(p.data(), 4, 1),
                                    TokenView<const I64>(p.data(), 4, 1), f);
  EXPECT_EQ(pdrop_test::bytes_of(x), before);
}

// The engine flow after a drop that re-indexes positions: K rows rotated at
// 0..T-1, compacted with compact_heads; their old positions moved along
// (keep_original), new ones 0..k-1 (reindex); rerotate_heads then gives
// exactly the rows a fresh projection at the new positions would. Without
// it the compacted rows are far from those.
TEST(RopeRerotate, CompactThenRerotateEqualsFreshRowsAtNewPositions) {
  const I64 heads = 2, T0 = 14, dim = 16;
  const std::vector<float> f = plain_inv_freq(dim, 10000.0f);
  const std::vector<pdrop::ImageSpan> spans{{2, 9}};
  const std::vector<I64> kept{3, 6, 7, 10};
  std::vector<I64> keep(T0 - 9 + 4);
  pdrop::build_keep_list(T0, spans, kept, keep);
  const I64 k = static_cast<I64>(keep.size());

  std::mt19937 rng(10);
  std::uniform_real_distribution<double> dist(-1, 1);
  std::vector<std::vector<double>> u(static_cast<std::size_t>(heads * T0));
  std::vector<float> K(static_cast<std::size_t>(heads * T0 * dim));
  for (I64 h = 0; h < heads; ++h)
    for (I64 t = 0; t < T0; ++t) {
      auto& row = u[h * T0 + t];
      for (I64 e = 0; e < dim; ++e) row.push_back(dist(rng));
      const auto x = naive_rope(row, {t}, f, RopeLayout::rotate_half, {});
      for (I64 e = 0; e < dim; ++e) K[(h * T0 + t) * dim + e] = static_cast<float>(x[e]);
    }
  std::vector<I64> old_pos(static_cast<std::size_t>(T0)), new_pos;
  std::iota(old_pos.begin(), old_pos.end(), 0);
  new_pos = old_pos;
  pdrop::compact_heads(pdrop::hnd_view(K.data(), heads, T0, dim), keep);
  pdrop::compact_positions(TokenView<I64>(old_pos.data(), T0, 1), keep,
                           pdrop::PositionMode::keep_original);
  pdrop::compact_positions(TokenView<I64>(new_pos.data(), T0, 1), keep);

  const auto diff_to_fresh = [&] {
    double m = 0;
    for (I64 h = 0; h < heads; ++h)
      for (I64 i = 0; i < k; ++i) {
        const auto x = naive_rope(u[h * T0 + keep[i]], {i}, f, RopeLayout::rotate_half, {});
        for (I64 e = 0; e < dim; ++e)
          m = std::max(m, std::abs(static_cast<double>(K[(h * T0 + i) * dim + e]) - x[e]));
      }
    return m;
  };
  EXPECT_GT(diff_to_fresh(), 0.1) << "the compacted rows are still rotated at old positions";
  // The compacted rows sit in a HND buffer of capacity T0.
  pdrop::rerotate_heads<float, I64>(pdrop::hnd_view(K.data(), heads, k, dim, T0),
                                    TokenView<const I64>(old_pos.data(), k, 1),
                                    TokenView<const I64>(new_pos.data(), k, 1), f);
  EXPECT_LE(diff_to_fresh(), 4e-7);  // 2 float eps of rows with |pair| <= sqrt(2)
}

// rope_inv_freq against 1 / theta^(2i/d) in plain float32: within one ulp
// (float pow itself is within an ulp of the correctly rounded power), the
// first entry exactly 1, strictly decreasing for theta > 1.
TEST(RopeInvFreq, MatchesPlainFloat32Formula) {
  for (float theta : {10000.0f, 500000.0f, 1000000.0f, 2.0f})
    for (I64 d : {2, 16, 64, 80, 128}) {
      std::vector<float> got(static_cast<std::size_t>(d / 2), -1.0f);
      pdrop::rope_inv_freq(theta, d, got);
      const std::vector<float> want = plain_inv_freq(d, theta);
      EXPECT_EQ(got[0], 1.0f);
      int exact = 0;
      for (std::size_t i = 0; i < got.size(); ++i) {
        const float ulp = std::nextafter(want[i], 1e30f) - want[i];
        EXPECT_LE(std::abs(got[i] - want[i]), ulp) << "theta " << theta << " d " << d << " i " << i;
        if (got[i] == want[i]) ++exact;
        if (i > 0) {
          EXPECT_LT(got[i], got[i - 1]);
        }
      }
      EXPECT_GE(exact, static_cast<int>(got.size()) * 9 / 10) << "theta " << theta << " d " << d;
    }
  // theta 10000, d 4: {1, 1/100} exactly.
  std::vector<float> two(2);
  pdrop::rope_inv_freq(10000.0, 4, two);
  EXPECT_EQ(two[1], 0.01f);
}

// Runs `call`, expects exactly error type E from `fn` with every needle in
// its message, and x's bytes as they were.
template <class E, class F, class X>
void expect_rejected(const char* fn, const std::vector<std::string>& needles, F&& call,
                     const std::vector<X>& x) {
  const auto before = pdrop_test::bytes_of(x);
  try {
    call();
    ADD_FAILURE() << "no exception; expected one mentioning '" << needles.front() << "'";
  } catch (const E& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(fn), std::string::npos) << m;
    for (const auto& n : needles)
      EXPECT_NE(m.find(n), std::string::npos) << "message: " << m << "\nexpected: " << n;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type for '" << needles.front() << "': " << e.what();
  }
  EXPECT_EQ(pdrop_test::bytes_of(x), before) << "a rejected call wrote to x: " << needles.front();
}

TEST(RopeInvFreq, RejectsBadArguments) {
  std::vector<float> out(4, -1.0f);
  const char* fn = "pdrop::rope_inv_freq";
  const auto call = [&out](double theta, I64 d, I64 n, bool null = false) {
    return [&out, theta, d, n, null] {
      pdrop::rope_inv_freq(theta, d, pdrop::span<float>(null ? nullptr : out.data(), n));
    };
  };
  using pdrop::shape_error;
  using pdrop::value_error;
  expect_rejected<value_error>(fn, {"theta (0)"}, call(0.0, 8, 4), out);
  expect_rejected<value_error>(fn, {"theta (-10000)"}, call(-10000.0, 8, 4), out);
  expect_rejected<value_error>(fn, {"theta (nan)"}, call(std::nan(""), 8, 4), out);
  expect_rejected<value_error>(fn, {"theta (inf)"}, call(HUGE_VAL, 8, 4), out);
  expect_rejected<value_error>(fn, {"theta (1e+39)", "finite as a float"}, call(1e39, 8, 4), out);
  expect_rejected<shape_error>(fn, {"rotary_dim (7) must be even"}, call(10000.0, 7, 4), out);
  expect_rejected<shape_error>(fn, {"rotary_dim (0)"}, call(10000.0, 0, 0), out);
  expect_rejected<shape_error>(fn, {"out.size (3) must be rotary_dim / 2 (4)"},
                               call(10000.0, 8, 3), out);
  expect_rejected<shape_error>(fn, {"out.data is null with 4 entries"},
                               call(10000.0, 8, 4, true), out);
}

// Every rejection of rerotate_heads: the type, the function, the argument
// and its value in the message, and x untouched. Tokens before the bad one
// would move if anything were written before validating.
TEST(RopeErrors, RerotateRejectsBadInputsWithoutWriting) {
  using pdrop::shape_error;
  using pdrop::value_error;
  const char* fn = "pdrop::rerotate_heads";
  std::mt19937 rng(11);
  std::vector<float> x = pdrop_test::random_vector<float>(2 * 4 * 8, rng);
  const std::vector<float> f4 = plain_inv_freq(8, 10000.0f);
  const std::vector<I64> from{0, 1, 2, 3}, to{10, 11, 12, 13};
  const std::vector<I64> from3(12, 1), to3(12, 5);
  struct Args {
    HeadView<float> x;
    TokenView<const I64> from, to;
    pdrop::span<const float> inv_freq;
    RopeLayout layout = RopeLayout::rotate_half;
    pdrop::span<const I64> sections;
    pdrop::MRopeLayout mrope_layout = pdrop::MRopeLayout::sections;
  };
  Args ok;
  ok.x = pdrop::hnd_view(x.data(), 2, 4, 8);
  ok.from = TokenView<const I64>(from.data(), 4, 1);
  ok.to = TokenView<const I64>(to.data(), 4, 1);
  ok.inv_freq = f4;
  const auto run = [](Args a) {
    return [a] {
      pdrop::rerotate_heads<float, I64>(a.x, a.from, a.to, a.inv_freq, a.layout, a.sections,
                                        a.mrope_layout);
    };
  };
  Args a = ok;

  // Positions: rows per token, token counts, strides.
  a = ok;
  a.from = TokenView<const I64>(from3.data(), 4, 3);
  expect_rejected<shape_error>(fn, {"from_positions.features (3) must be 1"}, run(a), x);
  const std::vector<I64> sec3{1, 1, 2};
  a = ok;
  a.sections = sec3;
  a.from = TokenView<const I64>(from3.data(), 4, 3);
  expect_rejected<shape_error>(
      fn, {"to_positions.features (1) must equal maybe_mrope_section.size (3)"}, run(a), x);
  // Interleaved sections need the three rows they interleave.
  const std::vector<I64> sec2{2, 2}, from2(8, 1), to2(8, 5);
  a = ok;
  a.sections = sec2;
  a.mrope_layout = pdrop::MRopeLayout::interleaved;
  a.from = TokenView<const I64>(from2.data(), 4, 2);
  a.to = TokenView<const I64>(to2.data(), 4, 2);
  expect_rejected<shape_error>(
      fn, {"maybe_mrope_section.size (2) must be >= 3 with MRopeLayout::interleaved"}, run(a), x);
  a.mrope_layout = static_cast<pdrop::MRopeLayout>(7);
  expect_rejected<pdrop::value_error>(fn, {"mrope_layout (7) must be"}, run(a), x);
  a = ok;
  a.to = TokenView<const I64>(to.data(), 3, 1);
  expect_rejected<shape_error>(fn, {"to_positions.tokens (3) must equal x.tokens (4)"}, run(a), x);
  a = ok;
  a.from = TokenView<const I64>(from3.data(), 5, 1);
  expect_rejected<shape_error>(fn, {"from_positions.tokens (5) must equal x.tokens (4)"}, run(a),
                               x);
  a = ok;
  a.sections = sec3;
  a.from = TokenView<const I64>(from3.data(), 4, 3, 1);
  a.to = TokenView<const I64>(to3.data(), 4, 3);
  expect_rejected<shape_error>(fn, {"from_positions.row_stride (1) must be >= features (3)"},
                               run(a), x);
  a = ok;
  a.to = TokenView<const I64>(nullptr, 4, 1);
  expect_rejected<shape_error>(fn, {"to_positions.data is null"}, run(a), x);

  // inv_freq: too long for dim, empty, null, not finite.
  const std::vector<float> f5 = plain_inv_freq(10, 10000.0f);
  a = ok;
  a.inv_freq = f5;
  expect_rejected<shape_error>(fn, {"inv_freq.size (5) must be <= x.dim / 2 (4)"}, run(a), x);
  a = ok;
  a.inv_freq = {};
  expect_rejected<shape_error>(fn, {"inv_freq.size (0) must be >= 1"}, run(a), x);
  a = ok;
  a.inv_freq = pdrop::span<const float>(nullptr, 2);
  expect_rejected<shape_error>(fn, {"inv_freq.data is null with 2 entries"}, run(a), x);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    std::vector<float> fb = f4;
    fb[2] = bad;
    a = ok;
    a.inv_freq = fb;
    std::ostringstream want;
    want << "inv_freq[2] (" << bad << ") must be finite";
    expect_rejected<value_error>(fn, {want.str()}, run(a), x);
  }

  // Sections: not summing to inv_freq.size, negative, null.
  const std::vector<I64> short_sec{1, 1, 1}, neg_sec{3, -1, 2};
  a = ok;
  a.sections = short_sec;
  a.from = TokenView<const I64>(from3.data(), 4, 3);
  a.to = TokenView<const I64>(to3.data(), 4, 3);
  expect_rejected<shape_error>(fn, {"maybe_mrope_section (sum 3) must sum to inv_freq.size (4)"},
                               run(a), x);
  a.sections = neg_sec;
  expect_rejected<value_error>(fn, {"maybe_mrope_section[1] (-1) must be >= 0"}, run(a), x);
  a.sections = pdrop::span<const I64>(nullptr, 3);
  expect_rejected<shape_error>(fn, {"maybe_mrope_section.data is null with 3 entries"}, run(a), x);

  // Layout value.
  a = ok;
  a.layout = static_cast<RopeLayout>(7);
  expect_rejected<value_error>(fn, {"layout (7) must be RopeLayout::rotate_half"}, run(a), x);

  // to - from overflowing int64, either way; the first two tokens are fine.
  const I64 max = std::numeric_limits<I64>::max(), min = std::numeric_limits<I64>::min();
  const std::vector<I64> from_o{0, 1, -1, 3}, to_o{5, 6, max, 8};
  a = ok;
  a.from = TokenView<const I64>(from_o.data(), 4, 1);
  a.to = TokenView<const I64>(to_o.data(), 4, 1);
  expect_rejected<value_error>(fn, {"to_positions[2][0] (9223372036854775807)",
                                    "from_positions[2][0] (-1)", "overflows int64"},
                               run(a), x);
  const std::vector<I64> from_u{0, 1, 2, 1}, to_u{5, 6, 7, min};
  a.from = TokenView<const I64>(from_u.data(), 4, 1);
  a.to = TokenView<const I64>(to_u.data(), 4, 1);
  expect_rejected<value_error>(fn, {"to_positions[3][0] (-9223372036854775808)",
                                    "from_positions[3][0] (1)", "overflows int64"},
                               run(a), x);
  // Unsigned 64-bit positions past int64.
  const std::vector<std::uint64_t> fu{0, std::uint64_t{1} << 63, 2, 3}, tu{1, 2, 3, 4};
  expect_rejected<value_error>(
      fn, {"from_positions[1][0] (9223372036854775808) does not fit int64"},
      [&] {
        pdrop::rerotate_heads<float, std::uint64_t>(
            ok.x, TokenView<const std::uint64_t>(fu.data(), 4, 1),
            TokenView<const std::uint64_t>(tu.data(), 4, 1), f4);
      },
      x);

  // x itself: strides, aliasing rows, null data; and x sharing memory with
  // an input.
  a = ok;
  a.x = HeadView<float>(x.data(), 2, 4, 8, 32, 4);
  expect_rejected<shape_error>(fn, {"x.token_stride (4) must be >= dim (8)"}, run(a), x);
  a.x = HeadView<float>(x.data(), 2, 4, 8, 8, 8);
  expect_rejected<shape_error>(fn, {"x: strides (head_stride 8, token_stride 8)", "overlap"},
                               run(a), x);
  a.x = HeadView<float>(nullptr, 2, 4, 8, 32, 8);
  expect_rejected<shape_error>(fn, {"x.data is null with 2 x 4 x 8 elements"}, run(a), x);
  a.x = HeadView<float>(x.data(), -1, 4, 8, 32, 8);
  expect_rejected<shape_error>(fn, {"x.heads (-1)"}, run(a), x);
  a = ok;
  a.inv_freq = pdrop::span<const float>(x.data() + 60, 4);
  expect_rejected<shape_error>(fn, {"x overlaps inv_freq"}, run(a), x);
}

}  // namespace
