// Tests for examples/npy.hpp: round trips, hand-built files in every accepted
// format variant, float16 conversion, and every rejection the reader makes.
#include "npy.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace npy = pdrop::npy;
using shape_t = std::vector<std::int64_t>;

// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::mt19937_64 rng(
        std::random_device{}() ^
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
    for (;;) {
      path_ = fs::temp_directory_path() / ("pdrop_npy_test_" + std::to_string(rng()));
      if (fs::create_directory(path_)) break;
    }
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// Builds a .npy file by hand: magic, version, header length (2 bytes for
// 1.0, 4 bytes otherwise, little-endian), header text, payload.
std::string make_npy(int major, int minor, const std::string& header, const std::string& payload) {
  std::string s = "\x93NUMPY";
  s.push_back(static_cast<char>(major));
  s.push_back(static_cast<char>(minor));
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  for (std::size_t i = 0; i < len_bytes; ++i)
    s.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  return s + header + payload;
}

template <class T>
std::string raw(const std::vector<T>& v) {
  std::string s(v.size() * sizeof(T), '\0');
  if (!v.empty()) std::memcpy(&s[0], v.data(), s.size());
  return s;
}

std::int64_t product(const shape_t& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------- round trip

TEST(NpyRoundTrip, EveryDtypeAndShape) {
  TempDir dir;
  const std::vector<shape_t> shapes = {{}, {1}, {7}, {2, 3}, {2, 3, 5}};
  const std::vector<std::string> shape_text = {"()", "(1,)", "(7,)", "(2, 3)", "(2, 3, 5)"};
  for (npy::dtype t : {npy::dtype::f2, npy::dtype::f4, npy::dtype::f8, npy::dtype::i8}) {
    for (std::size_t s = 0; s < shapes.size(); ++s) {
      SCOPED_TRACE(std::string(npy::dtype_name(t)) + " " + shape_text[s]);
      const std::size_t nbytes = static_cast<std::size_t>(product(shapes[s])) * npy::dtype_size(t);
      std::vector<unsigned char> bytes(nbytes);
      for (std::size_t i = 0; i < nbytes; ++i)
        bytes[i] = static_cast<unsigned char>(i * 37 + s + 1);
      const std::string path =
          dir.file(std::string(npy::dtype_name(t)) + "_" + std::to_string(s) + ".npy");
      npy::write(path, t, shapes[s], bytes.data());

      const npy::array a = npy::read(path);
      EXPECT_EQ(a.type, t);
      EXPECT_EQ(a.shape, shapes[s]);
      EXPECT_EQ(a.bytes, bytes);
      EXPECT_EQ(a.numel(), product(shapes[s]));

      // The header is exactly NumPy's, padded to a multiple of 64 bytes.
      const std::string file = slurp(path);
      ASSERT_GE(file.size(), 10u);
      EXPECT_EQ(file.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
      const std::size_t header_len =
          static_cast<unsigned char>(file[8]) |
          (static_cast<std::size_t>(static_cast<unsigned char>(file[9])) << 8);
      EXPECT_EQ((10 + header_len) % 64, 0u);
      EXPECT_EQ(file.size(), 10 + header_len + nbytes);
      const std::string dict = "{'descr': '<" + std::string(npy::dtype_name(t)) +
                               "', 'fortran_order': False, 'shape': " + shape_text[s] + ", }";
      EXPECT_EQ(file.substr(10, dict.size()), dict);
      EXPECT_EQ(file[10 + header_len - 1], '\n');
      EXPECT_EQ(file.find_first_not_of(' ', 10 + dict.size()), 10 + header_len - 1);
    }
  }
}

TEST(NpyRoundTrip, TypedOverloadsAndConversions) {
  TempDir dir;
  const std::vector<float> f = {1.5f, -2.25f, 0.0f, 3.0e38f, -1.0e-38f, 7.0f};
  const std::vector<std::int64_t> n = {INT64_MIN, -1, 0, 1, INT64_MAX, 42};
  npy::write(dir.file("f.npy"), {2, 3}, f.data());
  npy::write(dir.file("n.npy"), {3, 2}, n.data());

  const npy::array fa = npy::read(dir.file("f.npy"));
  ASSERT_EQ(fa.type, npy::dtype::f4);
  EXPECT_EQ(std::vector<float>(fa.data<float>(), fa.data<float>() + 6), f);
  EXPECT_EQ(npy::to_f32(fa), f);

  const npy::array na = npy::read(dir.file("n.npy"));
  ASSERT_EQ(na.type, npy::dtype::i8);
  EXPECT_EQ((shape_t{3, 2}), na.shape);
  EXPECT_EQ(std::vector<std::int64_t>(na.data<std::int64_t>(), na.data<std::int64_t>() + 6), n);
  EXPECT_EQ(npy::to_i64(na), n);

  // Overwriting an existing file replaces it completely.
  npy::write(dir.file("f.npy"), {1}, f.data());
  EXPECT_EQ(npy::to_f32(npy::read(dir.file("f.npy"))), std::vector<float>{1.5f});
}

TEST(NpyRoundTrip, EmptyArrayWithNullData) {
  TempDir dir;
  npy::write(dir.file("e.npy"), npy::dtype::f8, {4, 0, 3}, nullptr);
  const npy::array a = npy::read(dir.file("e.npy"));
  EXPECT_EQ(a.type, npy::dtype::f8);
  EXPECT_EQ(a.shape, (shape_t{4, 0, 3}));
  EXPECT_EQ(a.numel(), 0);
  EXPECT_TRUE(a.bytes.empty());
  EXPECT_TRUE(npy::to_f32(a).empty());
}

TEST(NpyDtype, NamesAndSizes) {
  EXPECT_STREQ(npy::dtype_name(npy::dtype::f2), "f2");
  EXPECT_STREQ(npy::dtype_name(npy::dtype::f4), "f4");
  EXPECT_STREQ(npy::dtype_name(npy::dtype::f8), "f8");
  EXPECT_STREQ(npy::dtype_name(npy::dtype::i8), "i8");
  EXPECT_EQ(npy::dtype_size(npy::dtype::f2), 2u);
  EXPECT_EQ(npy::dtype_size(npy::dtype::f4), 4u);
  EXPECT_EQ(npy::dtype_size(npy::dtype::f8), 8u);
  EXPECT_EQ(npy::dtype_size(npy::dtype::i8), 8u);
}

// ------------------------------------------------------- hand-built headers

TEST(NpyHandBuilt, Version2OddWhitespaceAndKeyOrder) {
  TempDir dir;
  const std::vector<double> v = {0.5, -1.0, 2.0, 1e300, -0.0, 3.25};
  const std::string path = dir.file("v2.npy");
  spit(path,
       make_npy(2, 0, "{ 'shape' :( 2 ,3 ) ,\t'fortran_order':False,\n'descr':'<f8'}  \n", raw(v)));
  const npy::array a = npy::read(path);
  EXPECT_EQ(a.type, npy::dtype::f8);
  EXPECT_EQ(a.shape, (shape_t{2, 3}));
  EXPECT_EQ(std::vector<double>(a.data<double>(), a.data<double>() + 6), v);
  EXPECT_EQ(npy::to_f32(a)[3], static_cast<float>(1e300));
  EXPECT_EQ(npy::to_f32(a)[5], 3.25f);
}

TEST(NpyHandBuilt, Version2LongHeaderUsesFourByteLength) {
  TempDir dir;
  const std::vector<std::int64_t> v = {5, 6, 7};
  const std::string path = dir.file("long.npy");
  // 70000 bytes of padding: too long for a 1.0 header, fine for 2.0.
  const std::string header =
      "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }" + std::string(70000, ' ') + "\n";
  spit(path, make_npy(2, 0, header, raw(v)));
  const npy::array a = npy::read(path);
  EXPECT_EQ(a.shape, (shape_t{3}));
  EXPECT_EQ(npy::to_i64(a), v);
}

TEST(NpyHandBuilt, Version3AndVersion1Variants) {
  TempDir dir;
  const std::vector<float> v = {1.0f, 2.0f, 3.0f, 4.0f};
  // 3.0: same parsing as 2.0, double quotes, no trailing comma.
  spit(dir.file("v3.npy"),
       make_npy(3, 0, "{\"fortran_order\": False, \"descr\": \"<f4\", \"shape\": (4,)}\n", raw(v)));
  npy::array a = npy::read(dir.file("v3.npy"));
  EXPECT_EQ(a.type, npy::dtype::f4);
  EXPECT_EQ(a.shape, (shape_t{4}));
  EXPECT_EQ(npy::to_f32(a), v);

  // 1.0, key order changed, 0-d shape with inner space, CRLF-ish whitespace.
  spit(dir.file("scalar.npy"),
       make_npy(1, 0, "{'descr':'<f4','shape':( ),'fortran_order':False,}\r\n",
                raw(std::vector<float>{9.5f})));
  a = npy::read(dir.file("scalar.npy"));
  EXPECT_TRUE(a.shape.empty());
  EXPECT_EQ(a.numel(), 1);
  EXPECT_EQ(npy::to_f32(a), std::vector<float>{9.5f});

  // 1.0 with a zero-size dimension and no data at all.
  spit(dir.file("empty.npy"),
       make_npy(1, 0, "{'shape': (0, 5), 'descr': '<i8', 'fortran_order': False}", ""));
  a = npy::read(dir.file("empty.npy"));
  EXPECT_EQ(a.shape, (shape_t{0, 5}));
  EXPECT_TRUE(npy::to_i64(a).empty());
}

// ------------------------------------------------------------- conversions

TEST(NpyConvert, HalfToFloatExact) {
  TempDir dir;
  const std::vector<std::uint16_t> bits = {0x3C00, 0xC000, 0x3555, 0x0000, 0x8000,
                                           0x7BFF, 0x0001, 0x0400, 0x7C00, 0xFC00};
  const std::vector<float> expect = {1.0f,
                                     -2.0f,
                                     0.333251953125f,
                                     0.0f,
                                     -0.0f,
                                     65504.0f,
                                     5.9604644775390625e-08f,
                                     6.103515625e-05f,
                                     std::numeric_limits<float>::infinity(),
                                     -std::numeric_limits<float>::infinity()};
  const std::string path = dir.file("h.npy");
  npy::write(path, npy::dtype::f2, {2, 5}, bits.data());
  const npy::array a = npy::read(path);
  ASSERT_EQ(a.type, npy::dtype::f2);
  const std::vector<float> got = npy::to_f32(a);
  ASSERT_EQ(got.size(), expect.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i], expect[i]) << "bits 0x" << std::hex << bits[i];
    EXPECT_EQ(std::signbit(got[i]), std::signbit(expect[i])) << i;
  }
  // The typed view agrees with the conversion.
  EXPECT_EQ(static_cast<float>(a.data<Eigen::half>()[2]), 0.333251953125f);
  // A NaN stays NaN.
  const std::uint16_t nan_bits = 0x7E00;
  npy::write(path, npy::dtype::f2, {}, &nan_bits);
  EXPECT_TRUE(std::isnan(npy::to_f32(npy::read(path))[0]));
}

TEST(NpyConvert, WrongTypeIsRejected) {
  npy::array i{npy::dtype::i8, {2}, std::vector<unsigned char>(16, 0)};
  npy::array f{npy::dtype::f4, {2}, std::vector<unsigned char>(8, 0)};
  try {
    npy::to_f32(i);
    ADD_FAILURE() << "to_f32 accepted i8";
  } catch (const npy::error& e) {
    EXPECT_NE(std::string(e.what()).find("i8"), std::string::npos) << e.what();
  }
  try {
    npy::to_i64(f);
    ADD_FAILURE() << "to_i64 accepted f4";
  } catch (const npy::error& e) {
    EXPECT_NE(std::string(e.what()).find("f4"), std::string::npos) << e.what();
  }
  try {
    (void)f.data<double>();
    ADD_FAILURE() << "data<double> accepted f4";
  } catch (const npy::error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("f8"), std::string::npos) << msg;
    EXPECT_NE(msg.find("f4"), std::string::npos) << msg;
  }
  EXPECT_THROW((void)i.data<float>(), npy::error);
  EXPECT_THROW((void)f.data<Eigen::half>(), npy::error);
  EXPECT_THROW((void)f.data<std::int64_t>(), std::invalid_argument);
  EXPECT_NO_THROW((void)f.data<float>());
  EXPECT_NO_THROW((void)i.data<std::int64_t>());

  // Byte count inconsistent with the shape.
  npy::array bad{npy::dtype::f4, {3}, std::vector<unsigned char>(8, 0)};
  EXPECT_THROW((void)bad.data<float>(), npy::error);
  EXPECT_THROW(npy::to_f32(bad), npy::error);
  npy::array neg{npy::dtype::i8, {-1}, {}};
  EXPECT_THROW((void)neg.numel(), npy::error);
  EXPECT_THROW(npy::to_i64(neg), npy::error);
}

// ---------------------------------------------------------------- rejections

// read(path) must throw npy::error (also a std::invalid_argument) whose
// one-line message names the path and contains `keyword`.
void expect_rejected(const std::string& path, const std::string& keyword) {
  SCOPED_TRACE(path + " / " + keyword);
  EXPECT_THROW(npy::read(path), std::invalid_argument);
  try {
    npy::read(path);
    ADD_FAILURE() << "read accepted " << path;
  } catch (const npy::error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("npy::read: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(keyword), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

const char* const kGood = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";

TEST(NpyReject, MissingOrUnreadable) {
  TempDir dir;
  expect_rejected(dir.file("does_not_exist.npy"), "cannot open");
  expect_rejected(dir.path().string(), "cannot open");  // a directory
  // A file without read permission (only checkable when not running as root).
  const std::string locked = dir.file("locked.npy");
  const float v[2] = {1, 2};
  npy::write(locked, {2}, v);
  fs::permissions(locked, fs::perms::none);
  if (!std::ifstream(locked).is_open()) expect_rejected(locked, "cannot open");
  fs::permissions(locked, fs::perms::owner_all);
  EXPECT_EQ(npy::to_f32(npy::read(locked)), std::vector<float>({1, 2}));
}

TEST(NpyReject, TooShortBadMagicUnknownVersion) {
  TempDir dir;
  const std::string p = dir.file("x.npy");
  spit(p, "");
  expect_rejected(p, "too short");
  spit(p, "\x93NUM");
  expect_rejected(p, "too short");
  spit(p, make_npy(1, 0, kGood, std::string(8, '\0')).replace(1, 5, "NUMPX"));
  expect_rejected(p, "magic");
  spit(p, "PK\x03\x04 this is a zip file, not npy");
  expect_rejected(p, "magic");
  spit(p, "\x93NUMPY\x01");
  expect_rejected(p, "too short");
  spit(p, make_npy(4, 0, kGood, std::string(8, '\0')));
  expect_rejected(p, "version 4.0");
  spit(p, make_npy(1, 1, kGood, std::string(8, '\0')));
  expect_rejected(p, "version 1.1");
  spit(p, make_npy(0, 0, kGood, std::string(8, '\0')));
  expect_rejected(p, "version 0.0");
  spit(p, std::string("\x93NUMPY\x01\x00\x10", 9));
  expect_rejected(p, "too short");
  spit(p, std::string("\x93NUMPY\x02\x00\x10\x00\x00", 11));
  expect_rejected(p, "too short");
}

TEST(NpyReject, HeaderPastEndOfFile) {
  TempDir dir;
  const std::string p = dir.file("x.npy");
  std::string bytes = make_npy(1, 0, kGood, std::string(8, '\0'));
  bytes[8] = '\xff';  // claim a 0xff-byte header (plus the high byte)
  bytes[9] = '\x7f';
  spit(p, bytes);
  expect_rejected(p, "past the end");
  bytes = make_npy(2, 0, kGood, "");
  bytes[11] = '\x01';  // 4-byte length with a huge high byte
  spit(p, bytes);
  expect_rejected(p, "past the end");
}

TEST(NpyReject, MalformedHeaderDict) {
  TempDir dir;
  const std::string p = dir.file("x.npy");
  const std::string payload(8, '\0');
  const std::vector<std::string> bad = {
      "",                                                                 // empty
      "'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",           // no '{'
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), ",         // no '}'
      "{'descr': '<f4', 'fortran_order': False}",                         // missing shape
      "{'fortran_order': False, 'shape': (2,)}",                          // missing descr
      "{'descr': '<f4', 'shape': (2,)}",                                  // missing fortran_order
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",  // unknown key
      "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",  // duplicate
      "{'descr: '<f4', 'fortran_order': False, 'shape': (2,)}",                   // broken quoting
      "{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}",                   // broken quoting
      "{'descr': <f4, 'fortran_order': False, 'shape': (2,)}",                    // unquoted
      "{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}",                  // lower-case bool
      "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,)}",                 // not a bool
      "{'descr': '<f4', 'fortran_order': False, 'shape': [2]}",                   // list, not tuple
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,,)}",                 // double comma
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2 1)}",                 // missing comma
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,)}",                // float dim
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)",                   // unclosed
      "{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}",                   // missing comma
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk",             // trailing text
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}}",                 // extra brace
      "{'descr':\n'<f4',\r\n'fortran_order': Nope, 'shape': (2,)}\n",  // newlines in message
  };
  for (const std::string& h : bad) {
    SCOPED_TRACE(h);
    spit(p, make_npy(1, 0, h, payload));
    expect_rejected(p, "malformed header");
  }
}

TEST(NpyReject, UnsupportedDtypes) {
  TempDir dir;
  const std::string p = dir.file("x.npy");
  for (const std::string d :
       {"<i4", "|u1", "<c8", ">f4", ">i8", "|f4", "=f4", "f4", "<f16", "", "|b1"}) {
    spit(p, make_npy(1, 0, "{'descr': '" + d + "', 'fortran_order': False, 'shape': (2,), }\n",
                     std::string(16, '\0')));
    expect_rejected(p, "unsupported dtype '" + d + "'");
  }
  spit(p, make_npy(1, 0, "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }\n",
                   std::string(16, '\0')));
  expect_rejected(p, "big-endian");
  spit(p, make_npy(
              1, 0,
              "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (1,), }\n",
              std::string(8, '\0')));
  expect_rejected(p, "unsupported dtype");
}

TEST(NpyReject, FortranOrder) {
  TempDir dir;
  const std::string p = dir.file("x.npy");
  spit(p, make_npy(1, 0, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n",
                   std::string(16, '\0')));
  expect_rejected(p, "fortran_order");
}

TEST(NpyReject, BadDimensions) {
  TempDir dir;
  const std::string p = dir.file("x.npy");
  auto header = [](const std::string& dtype, const std::string& shape) {
    return "{'descr': '" + dtype + "', 'fortran_order': False, 'shape': " + shape + ", }\n";
  };
  spit(p, make_npy(1, 0, header("<f4", "(2, -3)"), ""));
  expect_rejected(p, "negative dimension -3");
  // 2^62 * 4 = 2^64 elements: int64 overflow.
  spit(p, make_npy(1, 0, header("<f4", "(4611686018427387904, 4)"), ""));
  expect_rejected(p, "overflows int64");
  // A single dim that does not even fit in int64 / uint64.
  spit(p, make_npy(1, 0, header("<f4", "(9223372036854775808,)"), ""));
  expect_rejected(p, "overflows int64");
  spit(p, make_npy(1, 0, header("<f4", "(99999999999999999999999,)"), ""));
  expect_rejected(p, "overflows int64");
  // 2^61 elements fit in int64, but 2^61 * 8 bytes does not fit in size_t.
  static_assert(sizeof(std::size_t) == 8, "test assumes a 64-bit size_t");
  spit(p, make_npy(1, 0, header("<f8", "(2305843009213693952,)"), ""));
  expect_rejected(p, "overflows size_t");
}

TEST(NpyReject, DataShorterOrLongerThanShape) {
  TempDir dir;
  const std::string p = dir.file("x.npy");
  const std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
  spit(p, make_npy(1, 0, h, std::string(23, '\0')));
  expect_rejected(p, "truncated");
  spit(p, make_npy(1, 0, h, ""));
  expect_rejected(p, "truncated");
  spit(p, make_npy(1, 0, h, std::string(25, '\0')));
  expect_rejected(p, "trailing");
  spit(p, make_npy(1, 0, h, std::string(24, '\0')));
  EXPECT_NO_THROW(npy::read(p));
}

TEST(NpyWrite, Rejections) {
  TempDir dir;
  const float v[4] = {1, 2, 3, 4};
  auto expect_write_error = [](auto&& call, const std::string& path, const std::string& keyword) {
    try {
      call();
      ADD_FAILURE() << "write accepted " << path;
    } catch (const npy::error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind("npy::write: ", 0), 0u) << msg;
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find(keyword), std::string::npos) << msg;
    }
  };
  const std::string missing_dir = dir.file("no/such/dir/x.npy");
  expect_write_error([&] { npy::write(missing_dir, {4}, v); }, missing_dir, "cannot open");
  expect_write_error([&] { npy::write(dir.path().string(), {4}, v); }, dir.path().string(),
                     "cannot open");
  const std::string p = dir.file("x.npy");
  expect_write_error([&] { npy::write(p, {2, -2}, v); }, p, "negative");
  expect_write_error([&] { npy::write(p, npy::dtype::f4, {4}, nullptr); }, p, "null");
  expect_write_error([&] { npy::write(p, static_cast<npy::dtype>(17), {4}, v); }, p,
                     "invalid dtype");
  EXPECT_FALSE(fs::exists(p));  // nothing was created for rejected arguments
  if (fs::exists("/dev/full")) {
    std::vector<float> big(1 << 16, 1.0f);
    expect_write_error([&] { npy::write("/dev/full", {1 << 16}, big.data()); }, "/dev/full",
                       "write failed");
  }
}

// ------------------------------------------------------------ golden files

// Files numpy wrote (reference/make_golden.py, np.lib.format): LLaVA-1.5's
// 576 image tokens after a 2-token prefix, 4 heads of dim 16.
TEST(NpyGolden, ReadsNumpyFiles) {
  const std::string dir = PDROP_GOLDEN_DIR "/llava/pyramid_astronaut/";
  const npy::array k = npy::read(dir + "drop_0/k.npy");
  EXPECT_EQ(k.type, npy::dtype::f4);
  EXPECT_EQ(k.shape, (shape_t{4, 587, 16}));
  for (float x : npy::to_f32(k)) ASSERT_TRUE(std::isfinite(x));
  const npy::array pos = npy::read(dir + "positions.npy");
  EXPECT_EQ(pos.type, npy::dtype::i8);
  EXPECT_EQ(pos.shape, (shape_t{1, 587}));
  const auto p = npy::to_i64(pos);
  for (std::size_t i = 0; i < p.size(); ++i) ASSERT_EQ(p[i], static_cast<std::int64_t>(i));
  const npy::array ratios = npy::read(dir + "ratios.npy");
  EXPECT_EQ(ratios.type, npy::dtype::f8);
  EXPECT_EQ(npy::to_f32(ratios), (std::vector<float>{0.5f, 0.25f, 0.125f}));
  EXPECT_EQ(npy::to_i64(npy::read(dir + "image_spans.npy")), (std::vector<std::int64_t>{2, 576}));
}

}  // namespace
