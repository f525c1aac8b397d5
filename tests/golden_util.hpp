// The golden cases of tests/golden (PDROP_GOLDEN_DIR, set by
// tests/CMakeLists.txt; configuration fails without it), as the tests list
// and read them. Layout: docs/golden.md.
#ifndef PDROP_TESTS_GOLDEN_UTIL_HPP
#define PDROP_TESTS_GOLDEN_UTIL_HPP

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "npy.hpp"

namespace pdrop_test {

// The folder of the golden case `name` ("llava/pyramid_astronaut").
inline std::filesystem::path golden_case_dir(const std::string& name) {
  return std::filesystem::path(PDROP_GOLDEN_DIR) / name;
}

// Every case ("<arch>/<case>": a folder holding embeds.npy), sorted.
inline std::vector<std::string> golden_cases() {
  namespace fs = std::filesystem;
  std::vector<std::string> names;
  for (const auto& arch : fs::directory_iterator(PDROP_GOLDEN_DIR)) {
    if (!arch.is_directory()) continue;
    for (const auto& c : fs::directory_iterator(arch.path()))
      if (fs::exists(c.path() / "embeds.npy"))
        names.push_back(arch.path().filename().string() + "/" + c.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The number of drop_<j> folders of a case.
inline std::size_t golden_drops(const std::filesystem::path& dir) {
  std::size_t j = 0;
  while (std::filesystem::exists(dir / ("drop_" + std::to_string(j)))) ++j;
  return j;
}

// A gtest-safe name for a case: "llava/pyramid_astronaut" -> "llava_pyramid_astronaut".
inline std::string golden_test_name(std::string name) {
  std::replace(name.begin(), name.end(), '/', '_');
  return name;
}

inline std::vector<std::int64_t> read_i64(const std::filesystem::path& file) {
  return pdrop::npy::to_i64(pdrop::npy::read(file.string()));
}

inline std::vector<float> read_f32(const std::filesystem::path& file) {
  return pdrop::npy::to_f32(pdrop::npy::read(file.string()));
}

}  // namespace pdrop_test

#endif  // PDROP_TESTS_GOLDEN_UTIL_HPP
