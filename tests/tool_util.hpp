// Running pdrop's command-line tools from a test: a scratch folder per test,
// the tool's exit status, stdout and stderr. Shared by tools_test.cpp and
// flops_test.cpp.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace pdrop_test {

struct ToolRun {
  int status = -1;  // exit status; -1 when the tool did not exit normally
  std::string out, err;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A scratch folder named after the running test, removed afterwards.
struct Scratch {
  std::filesystem::path dir;
  explicit Scratch(const std::string& prefix = "pdrop_tools_test") {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir = std::filesystem::temp_directory_path() /
          (prefix + "_" + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" +
           info->name());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// Runs `exe args` in `cwd` (so a stray output file lands there), capturing
// stdout and stderr.
inline ToolRun run_tool(const std::string& exe, const std::string& args,
                        const std::filesystem::path& cwd) {
  const std::filesystem::path out = cwd / "stdout.txt", err = cwd / "stderr.txt";
  const std::string cmd = "cd '" + cwd.string() + "' && '" + exe + "' " + args + " > '" +
                          out.string() + "' 2> '" + err.string() + "'";
  const int raw = std::system(cmd.c_str());
  ToolRun r{WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(out), slurp(err)};
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream is(text);
  for (std::string l; std::getline(is, l);) lines.push_back(l);
  return lines;
}

}  // namespace pdrop_test
