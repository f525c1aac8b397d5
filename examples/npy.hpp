// examples/npy.hpp - a small reader/writer for NumPy .npy files, for the
// tools (pdrop-replay), the example host, the tests and the fuzzers; not
// part of the installed library (Debian packages no NPY library for C++
// but xtensor, far heavier than these 400 lines).
//
// Little-endian, C-order float16/32/64 and int64 arrays only. The reader takes
// format versions 1.0, 2.0 and 3.0; the writer produces 1.0 with NumPy's header
// layout. Every problem throws npy::error (a pdrop::invalid_argument) with a
// one-line message naming the function, the file and the offending value.
#ifndef PDROP_NPY_HPP
#define PDROP_NPY_HPP

#include <Eigen/Core>
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "pdrop/config.hpp"
#include "pdrop/errors.hpp"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy.hpp: little-endian only");
#endif

PDROP_BEGIN_NAMESPACE
namespace npy {

static_assert(sizeof(Eigen::half) == 2 && std::is_trivially_copyable_v<Eigen::half> &&
              sizeof(float) == 4 && sizeof(double) == 8, "npy: unexpected element type sizes");

// Every failure of this header: bad files, unsupported dtypes, wrong types.
class error : public pdrop::invalid_argument {
 public:
  using invalid_argument::invalid_argument;
};

// The supported element types, named after their NumPy type codes.
enum class dtype { f2, f4, f8, i8 };

// Short name of a dtype ("f2", "f4", "f8", "i8"); "invalid" for bad values.
inline const char* dtype_name(dtype t) {
  static const char* const names[] = {"f2", "f4", "f8", "i8", "invalid"};
  return names[std::min(static_cast<unsigned>(t), 4u)];
}

// Size of one element in bytes; 0 for an invalid dtype value.
inline std::size_t dtype_size(dtype t) {
  static const std::size_t sizes[] = {2, 4, 8, 8, 0};
  return sizes[std::min(static_cast<unsigned>(t), 4u)];
}

namespace detail {

// The dtype a C++ element type corresponds to (exact match only).
template <class T>
constexpr dtype dtype_of() {
  if constexpr (std::is_same_v<T, Eigen::half>) return dtype::f2;
  else if constexpr (std::is_same_v<T, float>) return dtype::f4;
  else if constexpr (std::is_same_v<T, double>) return dtype::f8;
  else if constexpr (std::is_same_v<T, std::int64_t>) return dtype::i8;
  else static_assert(sizeof(T) == 0, "npy: T must be Eigen::half, float, double or int64_t");
}

// The '<f4'-style descr string NumPy writes for a dtype.
inline std::string descr_of(dtype t) { return std::string("<") + dtype_name(t); }

// A shape as Python prints a tuple: (), (5,), (2, 3).
inline std::string shape_str(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// Throws npy::error "fn: where: parts..." ("fn: parts..." if where is empty).
template <class... Parts>
[[noreturn]] void fail_at(const char* fn, const std::string& where, Parts&&... parts) {
  if (where.empty()) pdrop::detail::fail<error>(fn, std::forward<Parts>(parts)...);
  pdrop::detail::fail<error>(fn, where, ": ", std::forward<Parts>(parts)...);
}

// Number of elements of `shape`; throws on a negative dim or int64 overflow.
inline std::int64_t checked_numel(const std::vector<std::int64_t>& shape, const char* fn,
                                  const std::string& where) {
  for (std::int64_t d : shape)
    if (d < 0) fail_at(fn, where, "negative dimension ", d, " in shape ", shape_str(shape));
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d == 0) return 0;  // empty, however large the other dims are
    if (n > std::numeric_limits<std::int64_t>::max() / d)
      fail_at(fn, where, "element count of shape ", shape_str(shape), " overflows int64");
    n *= d;
  }
  return n;
}

// Byte size of a `shape` array of `t`; throws on a negative dim, an invalid
// dtype or int64/size_t overflow.
inline std::size_t checked_nbytes(const std::vector<std::int64_t>& shape, dtype t,
                                  const char* fn, const std::string& where) {
  const auto n = static_cast<std::uint64_t>(checked_numel(shape, fn, where));
  const std::size_t size = dtype_size(t);
  if (size == 0) fail_at(fn, where, "invalid dtype value ", static_cast<int>(t));
  if (n > std::numeric_limits<std::size_t>::max() / size)
    fail_at(fn, where, "byte size of shape ", shape_str(shape), " of ", dtype_name(t),
            " overflows size_t");
  return static_cast<std::size_t>(n) * size;
}

// Throws unless an in-memory array's byte count matches its shape and dtype.
inline void check_bytes(dtype t, const std::vector<std::int64_t>& shape, std::size_t have,
                        const char* fn) {
  const std::size_t need = checked_nbytes(shape, t, fn, "");
  if (have != need)
    fail_at(fn, "", "array holds ", have, " bytes but shape ", shape_str(shape), " of ",
            dtype_name(t), " needs ", need);
}

// Reads a T from possibly unaligned bytes.
template <class T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace detail

// A loaded array: dtype, shape and the raw little-endian, C-order bytes.
struct array {
  npy::dtype type = dtype::f4;
  std::vector<std::int64_t> shape;
  std::vector<unsigned char> bytes;

  // Product of the dims (1 for 0-d). Throws error on a negative dim or overflow.
  std::int64_t numel() const { return detail::checked_numel(shape, "npy::array::numel", ""); }

  // Typed view of `bytes`. T must match `type` exactly (Eigen::half <-> f2, float
  // <-> f4, double <-> f8, std::int64_t <-> i8); otherwise throws error naming the
  // requested and actual dtype. Also throws if bytes.size() disagrees with shape.
  template <class T>
  const T* data() const {
    constexpr dtype want = detail::dtype_of<T>();
    if (want != type)
      detail::fail_at("npy::array::data", "", "requested dtype ", dtype_name(want),
                      " but the array holds ", dtype_name(type));
    detail::check_bytes(type, shape, bytes.size(), "npy::array::data");
    return reinterpret_cast<const T*>(bytes.data());
  }
};

namespace detail {

// Parses the Python-literal header dict of a .npy file, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// with keys in any order and any whitespace; failures throw npy::error.
struct header_parser {
  static constexpr const char* fn = "npy::read";
  const std::string& path;
  std::string text;
  std::size_t pos = 0;

  // Reads the whole dict; returns its dtype and fills `shape`.
  dtype parse(std::vector<std::int64_t>& shape) {
    static const char* const keys[3] = {"descr", "fortran_order", "shape"};
    bool seen[3] = {false, false, false};
    std::string descr;
    expect('{');
    while (next() != '}') {
      const std::string key = parse_string("key");
      expect(':');
      const auto k = std::find(keys, keys + 3, key) - keys;
      if (k == 3) malformed("unexpected key '" + printable(key) + "'");
      if (seen[k]) malformed("duplicate key '" + key + "'");
      seen[k] = true;
      if (k == 0) descr = parse_descr();
      if (k == 1 && parse_bool())
        fail_at(fn, path, "fortran_order True is not supported (C-order arrays only)");
      if (k == 2) parse_shape(shape);
      if (next() != '}') expect(',');
    }
    ++pos;  // the closing '}'
    if (next() != '\0' || pos != text.size()) malformed("unexpected text after '}'");
    for (std::size_t i = 0; i < 3; ++i)
      if (!seen[i]) malformed(std::string("missing key '") + keys[i] + "'");
    for (dtype t : {dtype::f2, dtype::f4, dtype::f8, dtype::i8})
      if (descr == descr_of(t)) return t;
    fail_at(fn, path, "unsupported dtype '", printable(descr), "' (",
            descr.compare(0, 1, ">") == 0 ? "big-endian is not supported; " : "",
            "expected <f2, <f4, <f8 or <i8)");
  }

  // Keeps messages on one line: control bytes become '?', long text is cut.
  static std::string printable(std::string s) {
    s.erase(s.find_last_not_of(" \t\r\n") + 1);
    if (s.size() > 100) s = s.substr(0, 100) + "...";
    for (char& c : s) c = (c < 0x20 || c == 0x7f) ? '?' : c;
    return s;
  }

  [[noreturn]] void malformed(const std::string& what) const {
    fail_at(fn, path, "malformed header: ", what, " at offset ", pos, " in \"", printable(text),
            "\"");
  }

  // Skips whitespace; returns the next character ('\0' at the end).
  char next() {
    pos = std::min(text.find_first_not_of(" \t\r\n", pos), text.size());
    return pos < text.size() ? text[pos] : '\0';
  }

  void expect(char c) {
    if (next() != c) malformed(std::string("expected '") + c + "'");
    ++pos;
  }

  // A '...' or "..." string without escapes.
  std::string parse_string(const char* what) {
    const char quote = next();
    if (quote != '\'' && quote != '"') malformed(std::string("expected a quoted ") + what);
    const std::size_t end = text.find(quote, pos + 1);
    if (end == std::string::npos) malformed(std::string("unterminated ") + what);
    std::string s = text.substr(pos + 1, end - pos - 1);
    if (s.find('\\') != std::string::npos) malformed(std::string("escape sequence in ") + what);
    pos = end + 1;
    return s;
  }

  // The descr value: a type string; a list would be a structured dtype.
  std::string parse_descr() {
    if (next() == '[') {
      const std::string list = text.substr(pos, text.find(']', pos) - pos + 1);
      fail_at(fn, path, "unsupported dtype ", printable(list), " (structured dtypes)");
    }
    return parse_string("descr value");
  }

  // True or False ("Falsey" fails later: 'y' is not ',' or '}').
  bool parse_bool() {
    next();
    for (const std::string word : {"True", "False"})
      if (text.compare(pos, word.size(), word) == 0) {
        pos += word.size();
        return word == "True";
      }
    malformed("fortran_order must be True or False");
  }

  // A tuple of integers: (), (5,), (2, 3). Each must be >= 0 and fit int64.
  void parse_shape(std::vector<std::int64_t>& shape) {
    shape.clear();
    expect('(');
    while (next() != ')') {
      const char* first = text.data() + pos;
      std::int64_t d = 0;
      const auto [end, ec] = std::from_chars(first, text.data() + text.size(), d);
      if (ec == std::errc::invalid_argument) malformed("expected an integer in shape");
      pos += static_cast<std::size_t>(end - first);
      if (ec == std::errc::result_out_of_range)
        fail_at(fn, path, "dimension ", std::string(first, end), " in shape overflows int64");
      if (d < 0) fail_at(fn, path, "negative dimension ", d, " in shape");
      shape.push_back(d);
      if (next() != ')') expect(',');
    }
    ++pos;
  }
};

}  // namespace detail

// Reads a whole .npy file (format 1.0, 2.0 or 3.0; little-endian f2/f4/f8/i8;
// C order). Throws npy::error naming the path and the problem if the file is
// missing or unreadable, too short, has a bad magic or unknown version, a
// header running past the end, a malformed header dict, an unsupported dtype,
// fortran_order True, negative or overflowing dims, or a data section that is
// shorter or longer than the shape requires.
inline array read(const std::string& path) {
  auto fail = [&path](auto&&... parts) { detail::fail_at("npy::read", path, parts...); };
  std::error_code ec;
  const auto size = static_cast<std::size_t>(std::filesystem::file_size(path, ec));
  if (ec) fail("cannot open file (", ec.message(), ")");
  std::vector<unsigned char> buf(size);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open file for reading");
  in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(size));
  if (static_cast<std::size_t>(in.gcount()) != size)
    fail("cannot read file: got ", in.gcount(), " of ", size, " bytes");

  static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 6) fail("file too short (", size, " bytes) for the .npy magic");
  if (std::memcmp(buf.data(), magic, 6) != 0) fail("bad magic (not a .npy file)");
  if (size < 8) fail("file too short (", size, " bytes) for the format version");
  const unsigned major = buf[6], minor = buf[7];
  if (major < 1 || major > 3 || minor != 0)
    fail("unsupported format version ", major, ".", minor, " (expected 1.0, 2.0 or 3.0)");

  // 1.0 stores the header length in 2 bytes, 2.0 and 3.0 in 4 (little-endian).
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  if (size < 8 + len_bytes) fail("file too short (", size, " bytes) for the header length");
  std::size_t header_len = 0;
  for (std::size_t i = 0; i < len_bytes; ++i) header_len |= std::size_t{buf[8 + i]} << (8 * i);
  const std::size_t data_offset = 8 + len_bytes + header_len;
  if (data_offset > size)
    fail("header length ", header_len, " runs past the end of the file (", size, " bytes)");

  array out;
  const char* header = reinterpret_cast<const char*>(buf.data()) + 8 + len_bytes;
  out.type = detail::header_parser{path, std::string(header, header_len)}.parse(out.shape);

  const std::size_t need = detail::checked_nbytes(out.shape, out.type, "npy::read", path);
  const std::size_t have = size - data_offset;
  if (have < need)
    fail("data truncated: shape ", detail::shape_str(out.shape), " of ", detail::descr_of(out.type),
         " needs ", need, " bytes but the file has ", have, " after the header");
  if (have > need)
    fail("trailing data: ", have - need, " extra bytes after the ", need, " bytes of shape ",
         detail::shape_str(out.shape));
  out.bytes.assign(buf.begin() + static_cast<std::ptrdiff_t>(data_offset), buf.end());
  return out;
}

// Converts f2, f4 or f8 data to float32 (f8 is rounded to nearest). Throws
// npy::error for i8 data or if the byte count does not match the shape.
inline std::vector<float> to_f32(const array& a) {
  constexpr const char* fn = "npy::to_f32";
  if (a.type == dtype::i8) detail::fail_at(fn, "", "expected f2, f4 or f8 data, got i8");
  detail::check_bytes(a.type, a.shape, a.bytes.size(), fn);
  const std::size_t size = dtype_size(a.type);
  std::vector<float> out(a.bytes.size() / size);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const unsigned char* p = a.bytes.data() + i * size;
    out[i] = a.type == dtype::f2   ? static_cast<float>(detail::load<Eigen::half>(p))
             : a.type == dtype::f4 ? detail::load<float>(p)
                                   : static_cast<float>(detail::load<double>(p));
  }
  return out;
}

// Copies i8 data out as int64. Throws npy::error for any other dtype or if
// the byte count does not match the shape.
inline std::vector<std::int64_t> to_i64(const array& a) {
  constexpr const char* fn = "npy::to_i64";
  if (a.type != dtype::i8) detail::fail_at(fn, "", "expected i8 data, got ", dtype_name(a.type));
  detail::check_bytes(a.type, a.shape, a.bytes.size(), fn);
  std::vector<std::int64_t> out(a.bytes.size() / 8);
  if (!out.empty()) std::memcpy(out.data(), a.bytes.data(), a.bytes.size());
  return out;
}

// Writes `data` (numel(shape) elements of `type`, C order, little-endian) to
// `path` as a format 1.0 .npy file with NumPy's header layout, padded so the
// data starts at a multiple of 64 bytes. Throws npy::error on an invalid
// dtype, negative or overflowing dims, null data for a non-empty shape, or if
// the file cannot be opened or written.
inline void write(const std::string& path, dtype type, const std::vector<std::int64_t>& shape,
                  const void* data) {
  auto fail = [&path](auto&&... parts) { detail::fail_at("npy::write", path, parts...); };
  const std::size_t nbytes = detail::checked_nbytes(shape, type, "npy::write", path);
  if (nbytes > 0 && data == nullptr)
    fail("data is null but shape ", detail::shape_str(shape), " needs ", nbytes, " bytes");

  std::string dict = "{'descr': '" + detail::descr_of(type) +
                     "', 'fortran_order': False, 'shape': " + detail::shape_str(shape) + ", }";
  const std::size_t unpadded = 10 + dict.size() + 1;  // magic+version+length, dict, '\n'
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict.push_back('\n');
  if (dict.size() > 65535) fail("header of ", dict.size(), " bytes is too long for format 1.0");

  std::string head("\x93NUMPY\x01\x00", 8);       // magic, version 1.0
  head += static_cast<char>(dict.size() & 0xff);  // header length, little-endian
  head += static_cast<char>(dict.size() >> 8);

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("cannot open file for writing");
  out.write(head.data(), static_cast<std::streamsize>(head.size()));
  out.write(dict.data(), static_cast<std::streamsize>(dict.size()));
  if (nbytes > 0) out.write(static_cast<const char*>(data), static_cast<std::streamsize>(nbytes));
  out.close();
  if (!out) fail("write failed");
}

// Writes float32 data as '<f4'; throws like the general write().
inline void write(const std::string& path, const std::vector<std::int64_t>& shape,
                  const float* data) {
  write(path, dtype::f4, shape, data);
}

// Writes int64 data as '<i8'; throws like the general write().
inline void write(const std::string& path, const std::vector<std::int64_t>& shape,
                  const std::int64_t* data) {
  write(path, dtype::i8, shape, data);
}

}  // namespace npy
PDROP_END_NAMESPACE

#endif  // PDROP_NPY_HPP
