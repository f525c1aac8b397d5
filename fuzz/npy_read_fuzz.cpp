// libFuzzer target: pdrop::npy::read on fuzzer-chosen file contents.
//
// npy::read takes a path, so each input is written to a per-process file
// first. The contract checked on every input:
//   - it either returns an array or throws npy::error (any other exception,
//     a crash or a sanitizer report is a finding);
//   - an error message is one line (the replay tool prints it as is);
//   - a returned array is consistent: bytes match shape x dtype, the typed
//     accessor accepts exactly its own dtype, to_f32 / to_i64 convert
//     exactly the dtypes they document;
//   - it round-trips: npy::write of the array, read back, gives the same
//     dtype, shape and bytes.
#include "npy.hpp"

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

namespace npy = pdrop::npy;

[[noreturn]] void finding(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "npy_read_fuzz: %s %s\n", what, detail.c_str());
  std::abort();
}

std::string scratch_path(const char* tag) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/pdrop_npy_fuzz_" +
         std::to_string(::getpid()) + "_" + tag + ".npy";
}

void write_file(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) finding("cannot create scratch file", path);
  if (size > 0 && std::fwrite(data, 1, size, f) != size) finding("cannot write", path);
  std::fclose(f);
}

void check_one_line(const std::exception& e) {
  const std::string msg = e.what();
  if (msg.find('\n') != std::string::npos || msg.find('\r') != std::string::npos)
    finding("error message is not one line:", msg);
  if (msg.empty()) finding("empty error message");
}

template <class T>
bool accessor_accepts(const npy::array& a) {
  try {
    (void)a.data<T>();
    return true;
  } catch (const npy::error& e) {
    check_one_line(e);
    return false;
  }
}

void check_array(const npy::array& a) {
  const std::int64_t n = a.numel();  // must not throw for an array read() returned
  const std::size_t size = npy::dtype_size(a.type);
  if (size == 0) finding("array with an invalid dtype");
  if (n < 0 || a.bytes.size() != static_cast<std::size_t>(n) * size)
    finding("bytes do not match shape x dtype");
  const bool f2 = accessor_accepts<Eigen::half>(a), f4 = accessor_accepts<float>(a),
             f8 = accessor_accepts<double>(a), i8 = accessor_accepts<std::int64_t>(a);
  if (f2 + f4 + f8 + i8 != 1 || f2 != (a.type == npy::dtype::f2) ||
      f4 != (a.type == npy::dtype::f4) || f8 != (a.type == npy::dtype::f8) ||
      i8 != (a.type == npy::dtype::i8))
    finding("typed accessor accepts the wrong dtypes");

  bool converted = true;
  try {
    if (npy::to_f32(a).size() != static_cast<std::size_t>(n)) finding("to_f32 size");
  } catch (const npy::error& e) {
    check_one_line(e);
    converted = false;
  }
  if (converted != (a.type != npy::dtype::i8)) finding("to_f32 accepts the wrong dtypes");
  converted = true;
  try {
    const auto v = npy::to_i64(a);
    if (v.size() != static_cast<std::size_t>(n)) finding("to_i64 size");
    if (!v.empty() && std::memcmp(v.data(), a.bytes.data(), a.bytes.size()) != 0)
      finding("to_i64 changed the values");
  } catch (const npy::error& e) {
    check_one_line(e);
    converted = false;
  }
  if (converted != (a.type == npy::dtype::i8)) finding("to_i64 accepts the wrong dtypes");

  // Round trip through the writer. Headers longer than format 1.0 allows
  // (a shape of thousands of dims) are a documented write error.
  const std::string path = scratch_path("rt");
  try {
    npy::write(path, a.type, a.shape, a.bytes.empty() ? nullptr : a.bytes.data());
  } catch (const npy::error& e) {
    check_one_line(e);
    if (std::string(e.what()).find("too long for format 1.0") == std::string::npos)
      finding("write rejected an array read() accepted:", e.what());
    return;
  }
  const npy::array b = npy::read(path);
  if (b.type != a.type || b.shape != a.shape || b.bytes != a.bytes)
    finding("write/read round trip changed the array");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = scratch_path("in");
  write_file(path, data, size);
  npy::array a;
  try {
    a = npy::read(path);
  } catch (const npy::error& e) {
    check_one_line(e);
    return 0;
  }
  check_array(a);
  return 0;
}
