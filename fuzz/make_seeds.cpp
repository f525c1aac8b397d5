// pdrop-fuzz-seeds GOLDEN_DIR OUT_DIR
//
// Writes the seed corpus of the fuzz targets:
//   OUT_DIR/npy_read_fuzz/   every golden .npy of at most 16 KiB as is, the
//                            first 256 bytes of the larger ones (a valid
//                            header over truncated data), and small arrays of
//                            every dtype, rank 0..3 and format 1.0/2.0/3.0;
//   OUT_DIR/rank_drop_fuzz/  every scored single-span drop of the golden
//                            cases (<arch>/<case>/drop_<j>/) in the target's
//                            byte format (fuzz/rank_drop_input.hpp), cut down
//                            to the target's caps (at most 2 kv heads x 4,
//                            head dim 32, 8 + 96 + 8 tokens) keeping its
//                            values, its layout of text/image/query and its
//                            keep ratio; the small ones whole; plus a few
//                            synthetic seeds for each mode (types, layouts,
//                            hostile).
// Without GOLDEN_DIR (missing folder) only the synthetic seeds are written.
#include "npy.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "rank_drop_input.hpp"

namespace {

namespace fs = std::filesystem;
namespace npy = pdrop::npy;

void save(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string npy_bytes(int major, const std::string& dict, const std::string& payload) {
  std::string h = dict;
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  while ((10 + len_bytes - 2 + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  std::string s = "\x93NUMPY";
  s.push_back(static_cast<char>(major));
  s.push_back('\0');
  for (std::size_t i = 0; i < len_bytes; ++i) s.push_back(static_cast<char>((h.size() >> (8 * i)) & 0xff));
  return s + h + payload;
}

int npy_seeds(const fs::path& golden, const fs::path& out) {
  fs::create_directories(out);
  int n = 0;
  if (fs::is_directory(golden))
    for (const auto& e : fs::recursive_directory_iterator(golden)) {
      if (!e.is_regular_file() || e.path().extension() != ".npy") continue;
      std::string bytes = slurp(e.path());
      if (bytes.size() > 16384) bytes.resize(256);
      const std::string name = e.path().parent_path().filename().string() + "__" +
                               e.path().filename().string();
      save(out / name, bytes);
      ++n;
    }
  // Small arrays of every dtype and rank through the writer.
  const fs::path tmp = out / "tmp.npy";
  const double f8[6] = {1.5, -2.25, 0.0, 1e300, -0.0, 3.0};
  const float f4[6] = {1.5f, -2.25f, 0.0f, 3e38f, -0.0f, 3.0f};
  const std::int64_t i8[6] = {0, -1, 1, INT64_MAX, INT64_MIN, 42};
  const std::uint16_t f2[6] = {0x3c00, 0xbc00, 0x0000, 0x7bff, 0x8000, 0x0001};
  const std::vector<std::vector<std::int64_t>> shapes{{}, {6}, {2, 3}, {1, 2, 3}, {0, 3}};
  const std::pair<npy::dtype, const void*> typed[] = {
      {npy::dtype::f2, f2}, {npy::dtype::f4, f4}, {npy::dtype::f8, f8}, {npy::dtype::i8, i8}};
  for (const auto& [t, data] : typed)
    for (const auto& shape : shapes) {
      npy::write(tmp.string(), t, shape, data);
      std::string name = std::string("synthetic_") + npy::dtype_name(t) + "_rank" +
                         std::to_string(shape.size()) + (shape.size() == 2 && shape[0] == 0 ? "_empty" : "");
      save(out / (name + ".npy"), slurp(tmp));
      ++n;
    }
  fs::remove(tmp);
  // Format 2.0 and 3.0, odd key order and spacing.
  const std::string payload(24, '\x11');
  save(out / "synthetic_v2.npy",
       npy_bytes(2, "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}", payload));
  save(out / "synthetic_v3.npy",
       npy_bytes(3, "{\"descr\":\"<i8\",\"fortran_order\":False,\"shape\":(3,),}", payload));
  save(out / "synthetic_fortran.npy",
       npy_bytes(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (3,), }", payload));
  save(out / "synthetic_bigendian.npy",
       npy_bytes(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }", payload));
  return n + 4;
}

pdrop_fuzz::Case cut_down(const fs::path& dir) {
  const npy::array qa = npy::read((dir / "q.npy").string());
  const npy::array ka = npy::read((dir / "k.npy").string());
  const auto q = npy::to_f32(qa), k = npy::to_f32(ka);
  const auto pos = npy::to_i64(npy::read((dir / "query_pos.npy").string()));
  const auto span = npy::to_i64(npy::read((dir / "image_span.npy").string()));
  const auto keep = npy::to_i64(npy::read((dir / "keep.npy").string()));
  const std::int64_t hq = qa.shape.at(0), nq = qa.shape.at(1), d = qa.shape.at(2);
  const std::int64_t hkv = ka.shape.at(0), tokens = ka.shape.at(1);
  const std::int64_t s = span.at(0), n = span.at(1), tail = tokens - s - n;

  pdrop_fuzz::Case c;
  c.q_type = qa.type == npy::dtype::f2 ? 1 : 0;
  c.k_type = ka.type == npy::dtype::f2 ? 1 : 0;
  c.hkv = std::min<std::int64_t>(hkv, 2);
  c.group = std::min<std::int64_t>(hq / hkv, 4);
  c.nq = std::min<std::int64_t>(nq, 4);
  c.d = std::min<std::int64_t>(d, 32);
  const std::int64_t s2 = std::min<std::int64_t>(s, 8), n2 = std::min<std::int64_t>(n, 96),
                     tail2 = std::min<std::int64_t>(tail, 8);
  c.tokens = s2 + n2 + tail2;
  // New token t2 -> the original token it stands for.
  auto orig = [&](std::int64_t t2) {
    if (t2 < s2) return s - s2 + t2;
    if (t2 < s2 + n2) return s + (t2 - s2);
    return s + n + (t2 - s2 - n2);
  };
  auto moved = [&](std::int64_t p) {
    if (p < s) return std::max<std::int64_t>(0, s2 - (s - p));
    if (p < s + n) return s2 + std::min(p - s, n2 - 1);
    return s2 + n2 + std::min(p - s - n, tail2 - 1);
  };
  c.span_start = {s2};
  c.span_length = {n2};
  c.keep_count = {n == 0 ? 0 : std::min(n2, keep.at(0) * n2 / n)};
  for (std::int64_t i = 0; i < c.nq; ++i) c.query_pos.push_back(moved(pos.at(static_cast<std::size_t>(i))));
  for (std::int64_t g = 0; g < c.hkv; ++g)
    for (std::int64_t j = 0; j < c.group; ++j)
      for (std::int64_t i = 0; i < c.nq; ++i)
        for (std::int64_t e = 0; e < c.d; ++e)
          c.q_values.push_back(q[static_cast<std::size_t>(((g * (hq / hkv) + j) * nq + i) * d + e)]);
  for (std::int64_t g = 0; g < c.hkv; ++g)
    for (std::int64_t t = 0; t < c.tokens; ++t)
      for (std::int64_t e = 0; e < c.d; ++e)
        c.k_values.push_back(k[static_cast<std::size_t>((g * tokens + orig(t)) * d + e)]);
  return c;
}

pdrop_fuzz::Case whole(const fs::path& dir) {  // small cases, unchanged
  pdrop_fuzz::Case c = cut_down(dir);
  const npy::array qa = npy::read((dir / "q.npy").string());
  const npy::array ka = npy::read((dir / "k.npy").string());
  if (qa.shape[0] / ka.shape[0] > 8 || ka.shape[0] > 8 || qa.shape[1] > 4 || qa.shape[2] > 128 ||
      ka.shape[1] > 512 || qa.shape[0] * qa.shape[1] * qa.shape[2] * ka.shape[1] > pdrop_fuzz::kMaxWork)
    throw std::runtime_error("too large to encode whole");
  c.hkv = ka.shape[0];
  c.group = qa.shape[0] / ka.shape[0];
  c.nq = qa.shape[1];
  c.d = qa.shape[2];
  c.tokens = ka.shape[1];
  const auto span = npy::to_i64(npy::read((dir / "image_span.npy").string()));
  c.span_start = {span[0]};
  c.span_length = {span[1]};
  c.keep_count = npy::to_i64(npy::read((dir / "keep.npy").string()));
  c.query_pos = npy::to_i64(npy::read((dir / "query_pos.npy").string()));
  c.q_values = npy::to_f32(qa);
  c.k_values = npy::to_f32(ka);
  return c;
}

void save_case(const fs::path& p, const pdrop_fuzz::Case& c) {
  const auto b = pdrop_fuzz::encode(c);
  save(p, std::string(b.begin(), b.end()));
}

int rank_drop_seeds(const fs::path& golden, const fs::path& out) {
  fs::create_directories(out);
  int n = 0;
  // Every scored single-span drop of the golden cases (<arch>/<case>/drop_<j>
  // holding q.npy and one image span).
  std::vector<fs::path> drops;
  if (fs::is_directory(golden))
    for (const auto& e : fs::recursive_directory_iterator(golden))
      if (e.is_directory() && e.path().filename().string().rfind("drop_", 0) == 0 &&
          fs::exists(e.path() / "q.npy") &&
          npy::to_i64(npy::read((e.path() / "image_span.npy").string())).size() == 2)
        drops.push_back(e.path());
  std::sort(drops.begin(), drops.end());
  for (const fs::path& drop : drops) {
    std::string name;  // llava/pyramid_astronaut/drop_0 -> llava_pyramid_astronaut_drop_0
    for (const auto& part : fs::relative(drop, golden)) name += (name.empty() ? "" : "_") + part.string();
    pdrop_fuzz::Case c = cut_down(drop);
    save_case(out / (name + "_cut"), c);
    // The same values in other layouts and types.
    c.q_nhd = true;
    c.k_pad = 3;
    c.k_type = 2;
    c.poison_tail = true;
    save_case(out / (name + "_cut_nhd_bf16"), c);
    n += 2;
    try {
      save_case(out / (name + "_whole"), whole(drop));
      ++n;
    } catch (const std::exception&) {
    }
  }
  // Synthetic: short inputs (values from the PRNG) for each flag pattern.
  for (int flags : {0x00, 0x05, 0x1a, 0x2f, 0x40, 0x55, 0x7e, 0x80, 0xc0, 0xd5}) {
    std::string b;
    b += static_cast<char>(flags);
    b += std::string("\x01\x03\x00\x0f\x3f\x00\x33\x05\x03\x02\x04\x00\x20\x00\x08\x00"
                     "\x02\x00\x10\x00\x05\x00\x00\x00\x03\x00", 26);
    if (flags & 0x80) b += std::string("\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00", 10);
    save(out / ("synthetic_flags_" + std::to_string(flags)), b);
    ++n;
  }
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: pdrop-fuzz-seeds GOLDEN_DIR OUT_DIR\n");
    return 2;
  }
  try {
    const fs::path golden = argv[1], out = argv[2];
    const int a = npy_seeds(golden, out / "npy_read_fuzz");
    const int b = rank_drop_seeds(golden, out / "rank_drop_fuzz");
    std::printf("pdrop-fuzz-seeds: %d npy_read_fuzz seeds, %d rank_drop_fuzz seeds in %s\n", a, b,
                out.string().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pdrop-fuzz-seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
