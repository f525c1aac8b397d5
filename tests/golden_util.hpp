// The golden cases of ../shared/golden (PDROP_GOLDEN_DIR, defined by
// tests/CMakeLists.txt when the folder exists), as the tests list them.
#ifndef PDROP_TESTS_GOLDEN_UTIL_HPP
#define PDROP_TESTS_GOLDEN_UTIL_HPP

#ifdef PDROP_GOLDEN_DIR

#include <algorithm>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace pdrop_test {

// The folder of the golden case `name`.
inline std::filesystem::path golden_case_dir(const std::string& name) {
  return std::filesystem::path(PDROP_GOLDEN_DIR) / name;
}

// The names of the golden case folders that start with `prefix` ("score_",
// "pipeline_"), sorted.
inline std::vector<std::string> golden_cases(const std::string& prefix) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(PDROP_GOLDEN_DIR)) {
    std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind(prefix, 0) == 0) names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace pdrop_test

#endif  // PDROP_GOLDEN_DIR

#endif  // PDROP_TESTS_GOLDEN_UTIL_HPP
