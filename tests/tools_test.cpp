// The command lines of pdrop's tools (pdrop-demo, pdrop-flops, pdrop-replay;
// examples/cli.hpp), run as a user runs them: --help lists every flag and
// exits 0, --version prints the tool's name and pdrop's version, a bad
// value or an unknown flag is one line on stderr naming the flag (and the
// value) with exit status 1, a library error is one line prefixed by the
// tool's name, one flag name means one thing in every tool, and
// pdrop-replay says which files it wrote.
#include <gtest/gtest.h>

#if defined(PDROP_DEMO_EXE) || defined(PDROP_FLOPS_EXE) || defined(PDROP_REPLAY_EXE)

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <initializer_list>
#include <vector>

#include "golden_util.hpp"
#include "tool_util.hpp"

#ifndef PDROP_VERSION
#error "tests/CMakeLists.txt defines PDROP_VERSION (the project's version) for pdrop_tests"
#endif

namespace {

namespace fs = std::filesystem;

using pdrop_test::lines_of;
using pdrop_test::run_tool;
using pdrop_test::Scratch;
using pdrop_test::ToolRun;

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

struct Tool {
  std::string name, exe;
  std::vector<std::string> flags;  // every flag its --help must list
  std::string bad_value_args;      // a bad value for `bad_flag`
  std::string bad_flag, bad_value;
};

void PrintTo(const Tool& t, std::ostream* os) { *os << t.name; }

std::vector<Tool> tools() {
  std::vector<Tool> t;
#ifdef PDROP_DEMO_EXE
  t.push_back({"pdrop-demo", PDROP_DEMO_EXE,
               {"--help", "--version", "--layers", "--dim", "--repeats", "--decode", "--svg",
                "--quick"},
               "--layers abc", "--layers", "abc"});
#endif
#ifdef PDROP_FLOPS_EXE
  t.push_back({"pdrop-flops", PDROP_FLOPS_EXE,
               {"--help", "--version", "--preset", "--layers", "--hidden", "--ffn", "--heads",
                "--kv-heads", "--head-dim", "--image-tokens", "--stages", "--lambda",
                "--drop-layers", "--ratios", "--text-tokens", "--kv-bytes"},
               "--stages abc", "--stages", "abc"});
#endif
#ifdef PDROP_REPLAY_EXE
  t.push_back({"pdrop-replay", PDROP_REPLAY_EXE,
               {"--help", "--version", "score", "pipeline", "check"},
               "score --bogus a b", "--bogus", ""});
#endif
  return t;
}

// Exit 1, nothing on stdout, exactly one line on stderr, "<tool>: ...".
void expect_one_line_error(const Tool& t, const ToolRun& r) {
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not exactly one line: " << r.err;
  EXPECT_EQ(r.err.rfind(t.name + ": ", 0), 0u) << r.err;
}

class Tools : public ::testing::TestWithParam<Tool> {};

TEST_P(Tools, HelpListsEveryFlagAndExitsZero) {
  const Tool& t = GetParam();
  Scratch s;
  for (const char* help : {"--help", "-h"}) {
    SCOPED_TRACE(help);
    const ToolRun r = run_tool(t.exe, help, s.dir);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");
    EXPECT_TRUE(contains(r.out, "Usage: " + t.name)) << r.out;
    for (const std::string& f : t.flags) EXPECT_TRUE(contains(r.out, f)) << f << "\n" << r.out;
  }
  EXPECT_EQ(fs::directory_iterator(s.dir), fs::directory_iterator()) << "--help wrote a file";
}

TEST_P(Tools, VersionPrintsTheToolAndPdropsVersion) {
  const Tool& t = GetParam();
  Scratch s;
  const ToolRun r = run_tool(t.exe, "--version", s.dir);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out, t.name + " " + PDROP_VERSION + "\n");
}

TEST_P(Tools, BadValueIsOneLineNamingTheFlagExitOne) {
  const Tool& t = GetParam();
  Scratch s;
  const ToolRun r = run_tool(t.exe, t.bad_value_args, s.dir);
  expect_one_line_error(t, r);
  EXPECT_TRUE(contains(r.err, t.bad_flag)) << r.err;
  if (!t.bad_value.empty()) {
    EXPECT_TRUE(contains(r.err, "'" + t.bad_value + "'")) << r.err;
  }
}

TEST_P(Tools, UnknownFlagIsOneLineNamingItExitOne) {
  const Tool& t = GetParam();
  Scratch s;
  for (const char* args : {"--no-such-flag", "--no-such-flag=3", "--no-such-flag 3"}) {
    SCOPED_TRACE(args);
    const ToolRun r = run_tool(t.exe, args, s.dir);
    expect_one_line_error(t, r);
    EXPECT_TRUE(contains(r.err, "unknown flag '--no-such-flag")) << r.err;
  }
}

INSTANTIATE_TEST_SUITE_P(Cli, Tools, ::testing::ValuesIn(tools()),
                         [](const ::testing::TestParamInfo<Tool>& i) {
                           std::string n = i.param.name;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// The tool named `name` (it must be built: callers sit under its #ifdef).
const Tool& tool_named(const std::string& name) {
  static const std::vector<Tool> all = tools();
  for (const Tool& t : all)
    if (t.name == name) return t;
  ADD_FAILURE() << name << " is not among the built tools";
  return all.front();
}

// A bad value: the arguments, the flag the error must name, and the value.
struct BadValue {
  const char* args;
  const char* flag;
  const char* value;
};

// Each case is one line on stderr naming its flag and its value (quoted as
// '<value>' when `quoted`), exit status 1.
void expect_bad_values(const Tool& t, const fs::path& dir, std::initializer_list<BadValue> cases,
                       bool quoted) {
  for (const BadValue& c : cases) {
    SCOPED_TRACE(c.args);
    const ToolRun r = run_tool(t.exe, c.args, dir);
    expect_one_line_error(t, r);
    EXPECT_TRUE(contains(r.err, c.flag)) << r.err;
    const std::string value = quoted ? std::string("'") + c.value + "'" : c.value;
    EXPECT_TRUE(contains(r.err, value)) << r.err;
  }
}

#ifdef PDROP_DEMO_EXE
const Tool& demo() { return tool_named("pdrop-demo"); }

// Counts must be integers >= 1; each bad value names the flag and the value,
// and nothing runs (no SVG is written).
TEST(DemoCli, BadCountsAreOneLineNamingFlagAndValue) {
  Scratch s;
  expect_bad_values(demo(), s.dir,
                    {{"--layers abc", "--layers", "abc"},
                     {"--layers=abc", "--layers", "abc"},
                     {"--layers -3", "--layers", "-3"},
                     {"--layers 1.5", "--layers", "1.5"},
                     {"--dim 0", "--dim", "0"},
                     {"--repeats -1", "--repeats", "-1"},
                     {"--decode 0", "--decode", "0"},
                     {"--layers 99999999999999999999", "--layers", "99999999999999999999"}},
                    false);
  for (const char* args : {"--layers", "stray", "--layers 4 --layers 5"}) {
    SCOPED_TRACE(args);
    expect_one_line_error(demo(), run_tool(demo().exe, args, s.dir));
  }
  EXPECT_FALSE(fs::exists(s.dir / "pdrop-demo.svg"));
}

TEST(DemoCli, HelpShowsDefaults) {
  Scratch s;
  const ToolRun r = run_tool(demo().exe, "--help", s.dir);
  ASSERT_EQ(r.status, 0);
  for (const char* d : {"(default 16)", "(default 512)", "(default 3)", "(default pdrop-demo.svg)"})
    EXPECT_TRUE(contains(r.out, d)) << d << "\n" << r.out;
}

// A library error (here the schedule: 4 stages need at least 4 layers) is
// caught in main: one line, prefixed by the tool's name, exit 1.
TEST(DemoCli, LibraryErrorIsOneLinePrefixedByTheTool) {
  Scratch s;
  const ToolRun r = run_tool(demo().exe, "--quick --layers 2 --dim 32", s.dir);
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  EXPECT_EQ(r.err.rfind("pdrop-demo: pdrop::", 0), 0u) << r.err;
}

// --layers/--dim given with --quick win over its values, even before it
// (Demo.QuickRunPrintsThePyramidAndTheSpeedupLine runs them after it).
TEST(DemoCli, ExplicitFlagsWinOverQuickEvenBeforeIt) {
  Scratch s;
  const ToolRun r = run_tool(demo().exe, "--layers 4 --dim 32 --decode 1 --quick --svg d.svg", s.dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("model: 4 layers, width 32, 4 heads", 0), 0u) << r.out;
  ASSERT_TRUE(fs::exists(s.dir / "d.svg"));
  // The picture marks each drop in both panels (pyramid(4, 4, 0.5) drops
  // after layers 1, 2 and 3), labels its axes and says what ran.
  std::ifstream in(s.dir / "d.svg");
  const std::string svg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t drops = 0;
  for (std::size_t at = svg.find(">drop</text>"); at != std::string::npos;
       at = svg.find(">drop</text>", at + 1))
    ++drops;
  EXPECT_EQ(drops, 2u * 3u);
  for (const char* text : {"decoder layer (1-based)", ">image tokens</text>", ">milliseconds</text>",
                           "4 layers, width 32, 4 heads", "best of 1 run<"})
    EXPECT_NE(svg.find(text), std::string::npos) << text;
}
#endif  // PDROP_DEMO_EXE

#ifdef PDROP_FLOPS_EXE
const Tool& flops() { return tool_named("pdrop-flops"); }

TEST(FlopsCli, BadValuesAreOneLineNamingFlagAndValue) {
  Scratch s;
  expect_bad_values(flops(), s.dir,
                    {{"--stages x", "--stages", "x"},
                     {"--stages -1", "--stages", "-1"},
                     {"--text-tokens -5", "--text-tokens", "-5"},
                     {"--kv-bytes 0", "--kv-bytes", "0"},
                     {"--lambda nan", "--lambda", "nan"},
                     {"--lambda 0.5x", "--lambda", "0.5x"},
                     {"--preset nope", "--preset", "nope"},
                     {"--layers 32 --hidden abc", "--hidden", "abc"},
                     {"--drop-layers 8,x --ratios 0.5,0.25", "--drop-layers", "x"},
                     {"--drop-layers 8,16 --ratios 0.5,y", "--ratios", "y"}},
                    true);
}

// --layers is the decoder layer count in every tool; the drop points are
// --drop-layers. The old spellings are refused, saying so.
TEST(FlopsCli, LayersIsTheLayerCountDropLayersTheDropPoints) {
  Scratch s;
  const std::string shape = "--hidden 4096 --ffn 11008 --heads 32 --image-tokens 576";
  const ToolRun r = run_tool(flops().exe, "--layers 32 " + shape + " --drop-layers 8,16,24 --ratios 0.5,0.25,0.125", s.dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "L 32,")) << r.out;
  EXPECT_TRUE(contains(r.out, "drops after layers 8, 16, 24")) << r.out;
  const ToolRun old = run_tool(flops().exe, "--preset llava-1.5-7b --layers 8,16,24 --ratios 0.5,0.25,0.125", s.dir);
  expect_one_line_error(flops(), old);
  EXPECT_TRUE(contains(old.err, "--layers: '8,16,24'")) << old.err;
  EXPECT_TRUE(contains(old.err, "--drop-layers")) << old.err;
  const ToolRun num = run_tool(flops().exe, "--num-layers 32 " + shape, s.dir);
  expect_one_line_error(flops(), num);
  EXPECT_TRUE(contains(num.err, "unknown flag '--num-layers'")) << num.err;
}

TEST(FlopsCli, LibraryErrorIsOneLinePrefixedByTheTool) {
  Scratch s;
  const ToolRun r = run_tool(flops().exe, "--lambda 2", s.dir);
  expect_one_line_error(flops(), r);
  EXPECT_EQ(r.err.rfind("pdrop-flops: pdrop::Schedule::pyramid: lambda (2)", 0), 0u) << r.err;
}

TEST(FlopsCli, HelpShowsDefaults) {
  Scratch s;
  const ToolRun r = run_tool(flops().exe, "--help", s.dir);
  ASSERT_EQ(r.status, 0);
  for (const char* d : {"(default llava-1.5-7b)", "(default 4)", "(default 0.5)", "(default 60)",
                        "(default 2)", "llava-next-7b", "llava-1.5-13b"})
    EXPECT_TRUE(contains(r.out, d)) << d << "\n" << r.out;
}
#endif  // PDROP_FLOPS_EXE

#ifdef PDROP_REPLAY_EXE
const Tool& replay() { return tool_named("pdrop-replay"); }

// A mode's --help lists its arguments.
TEST(ReplayCli, ModeHelpListsItsArguments) {
  Scratch s;
  for (const char* mode : {"score", "pipeline", "check"}) {
    SCOPED_TRACE(mode);
    const ToolRun r = run_tool(replay().exe, std::string(mode) + " --help", s.dir);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(contains(r.out, std::string("pdrop-replay ") + mode)) << r.out;
    EXPECT_TRUE(contains(r.out, std::string(mode) == "score" ? "DROP_DIR" : "CASE_DIR")) << r.out;
  }
}

TEST(ReplayCli, BadArgumentsAreOneLineExitOne) {
  Scratch s;
  struct Case {
    const char* args;
    const char* needle;
  };
  for (const Case& c : {Case{"", "no mode given"},
                        Case{"frobnicate a b", "unknown mode 'frobnicate'"},
                        Case{"score only_one_arg", "score takes DROP_DIR OUT_DIR"},
                        Case{"pipeline a b c", "pipeline takes CASE_DIR OUT_DIR"},
                        Case{"check", "check takes CASE_DIR"},
                        Case{"check a --bogus", "unknown flag '--bogus'"},
                        Case{"--bogus check a", "unknown flag '--bogus'"}}) {
    SCOPED_TRACE(c.args);
    const ToolRun r = run_tool(replay().exe, c.args, s.dir);
    expect_one_line_error(replay(), r);
    EXPECT_TRUE(contains(r.err, c.needle)) << r.err;
  }
  // A library error: the tool's name, then the message.
  const ToolRun r = run_tool(replay().exe, "score missing out", s.dir);
  expect_one_line_error(replay(), r);
  EXPECT_EQ(r.err, "pdrop-replay: DROP_DIR missing is not a directory\n");
}

// On success, score and pipeline name every file they wrote, one
// "wrote OUT_DIR/<file>" line each, after a summary line.
TEST(ReplayCli, SuccessNamesTheFilesWritten) {
  Scratch s;
  const fs::path c = pdrop_test::golden_case_dir("llama/pyramid");
  {
    const fs::path out = s.dir / "score_out";
    const ToolRun r = run_tool(replay().exe, "score '" + (c / "drop_0").string() + "' '" + out.string() + "'", s.dir);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");
    const auto lines = lines_of(r.out);
    ASSERT_EQ(lines.size(), 3u) << r.out;
    EXPECT_TRUE(contains(lines[0], "kept 24 of 48 image tokens -> " + out.string())) << lines[0];
    std::vector<std::string> wrote(lines.begin() + 1, lines.end());
    std::sort(wrote.begin(), wrote.end());
    EXPECT_EQ(wrote, (std::vector<std::string>{"wrote " + (out / "kept.npy").string(),
                                               "wrote " + (out / "scores.npy").string()}));
    for (const char* f : {"kept.npy", "scores.npy"}) EXPECT_TRUE(fs::exists(out / f)) << f;
  }
  {
    const fs::path out = s.dir / "pipeline_out";
    const ToolRun r = run_tool(replay().exe, "pipeline '" + c.string() + "' '" + out.string() + "'", s.dir);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");
    const auto lines = lines_of(r.out);
    ASSERT_FALSE(lines.empty());
    EXPECT_TRUE(contains(lines[0], "drops keeping")) << lines[0];
    std::vector<std::string> wrote(lines.begin() + 1, lines.end()), want;
    for (const auto& e : fs::directory_iterator(out)) want.push_back("wrote " + e.path().string());
    std::sort(wrote.begin(), wrote.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(wrote, want);
    EXPECT_EQ(want.size(), 3u * 2 + 4) << "kept_<j>, positions_<j> for 3 drops + 4 files";
  }
}
#endif  // PDROP_REPLAY_EXE

}  // namespace

#endif  // any tool
