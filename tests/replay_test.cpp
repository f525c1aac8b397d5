// pdrop-replay as a user runs it: every score_* golden case through the
// tool, outputs compared with the golden files; bad input gives one line on
// stderr, exit status 1 and no output file.
#include <gtest/gtest.h>

#if defined(PDROP_REPLAY_EXE) && defined(PDROP_GOLDEN_DIR)

#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "golden_util.hpp"
#include "pdrop/npy.hpp"
#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;
namespace npy = pdrop::npy;

struct ToolRun {
  int status;
  std::string err;
};

// Runs the tool with `args`, capturing stderr.
ToolRun replay(const std::string& args, const fs::path& scratch) {
  const fs::path err = scratch / "stderr.txt";
  const std::string cmd = std::string("'") + PDROP_REPLAY_EXE + "' " + args + " 2> '" +
                          err.string() + "'";
  const int raw = std::system(cmd.c_str());
  std::ifstream f(err);
  std::stringstream ss;
  ss << f.rdbuf();
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, ss.str()};
}

struct Scratch {
  fs::path dir;
  Scratch() {
    dir = fs::temp_directory_path() /
          ("pdrop_replay_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
           "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

// Runs `pdrop-replay MODE CASE OUT` on every golden case named MODE_*, in
// a scratch folder: each must exit 0 with nothing on stderr, then
// check(case folder, out folder, case name) compares the outputs. A fatal
// failure stops at that case. Counts the cases run.
template <class Check>
void replay_every_case(const std::string& mode, int& cases, Check check) {
  Scratch s;
  for (const std::string& name : pdrop_test::golden_cases(mode + "_")) {
    ++cases;
    SCOPED_TRACE(name);
    const fs::path dir = pdrop_test::golden_case_dir(name), out = s.dir / name;
    const ToolRun r = replay(mode + " " + q(dir) + " " + q(out), s.dir);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");
    check(dir, out, name);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(ReplayScore, EveryGoldenCaseMatches) {
  int cases = 0;
  replay_every_case("score", cases, [](const fs::path& dir, const fs::path& out,
                                       const std::string&) {
    const auto got = npy::read((out / "scores.npy").string());
    EXPECT_EQ(got.type, npy::dtype::f4);
    const auto scores = npy::to_f32(got);
    const auto want = npy::to_f32(npy::read((dir / "scores.npy").string()));
    ASSERT_EQ(scores.size(), want.size());
    for (std::size_t i = 0; i < want.size(); ++i)
      ASSERT_NEAR(scores[i], want[i], 1e-4 * std::fabs(want[i])) << i;
    const auto kept = npy::read((out / "kept.npy").string());
    EXPECT_EQ(kept.type, npy::dtype::i8);
    EXPECT_EQ(npy::to_i64(kept), npy::to_i64(npy::read((dir / "kept.npy").string())));
  });
  EXPECT_GE(cases, 7);
}

void expect_clean_failure(const ToolRun& r, const fs::path& out, const std::string& needle);

// Copies the golden case `name` to scratch/case, writable, so a test can
// damage one file.
fs::path copy_case(const fs::path& scratch, const std::string& name) {
  const fs::path dst = scratch / "case";
  fs::copy(pdrop_test::golden_case_dir(name), dst);
  for (const auto& e : fs::directory_iterator(dst))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return dst;
}

double max_abs_diff(const fs::path& a, const fs::path& b) {
  const auto x = npy::read(a.string()), y = npy::read(b.string());
  EXPECT_EQ(x.shape, y.shape) << a;
  if (x.shape != y.shape) return 1e9;
  const auto fx = npy::to_f32(x), fy = npy::to_f32(y);
  double worst = 0;
  for (std::size_t i = 0; i < fx.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(fx[i] - fy[i])));
  return worst;
}

TEST(ReplayPipeline, EveryGoldenCaseMatches) {
  int cases = 0;
  replay_every_case("pipeline", cases, [](const fs::path& dir, const fs::path& out,
                                          const std::string& name) {
    int drops = 0;
    for (; fs::exists(dir / ("kept_" + std::to_string(drops) + ".npy")); ++drops) {
      const std::string f = "kept_" + std::to_string(drops) + ".npy";
      EXPECT_EQ(npy::to_i64(npy::read((out / f).string())),
                npy::to_i64(npy::read((dir / f).string()))) << f;
    }
    EXPECT_GE(drops, 1);
    EXPECT_FALSE(fs::exists(out / ("kept_" + std::to_string(drops) + ".npy")));
    EXPECT_EQ(npy::to_i64(npy::read((out / "decode_pos.npy").string())),
              npy::to_i64(npy::read((dir / "decode_pos.npy").string())));
    EXPECT_EQ(npy::read((out / "decode_pos.npy").string()).shape,
              npy::read((dir / "decode_pos.npy").string()).shape);
    for (const char* f : {"prefill_out.npy", "decode_out.npy"}) {
      const double d = max_abs_diff(out / f, dir / f);
      EXPECT_LE(d, 2e-3) << f;
      ::testing::Test::RecordProperty(name + "." + f + ".max_abs_diff", std::to_string(d));
    }
  });
  EXPECT_GE(cases, 3);
}

TEST(ReplayPipeline, BadCaseIsOneLineExitOneNothingWritten) {
  Scratch s;
  const fs::path out = s.dir / "out";
  const fs::path c = copy_case(s.dir, "pipeline_odd_counts");
  fs::remove(c / "w_up.npy");
  expect_clean_failure(replay("pipeline " + q(c) + " " + q(out), s.dir), out, "w_up.npy");
  // A weight of the wrong shape.
  const std::vector<float> small(6, 0.0f);
  npy::write((c / "w_up.npy").string(), {2, 3}, small.data());
  expect_clean_failure(replay("pipeline " + q(c) + " " + q(out), s.dir), out, "expected shape");
  fs::copy_file(pdrop_test::golden_case_dir("pipeline_odd_counts") / "w_up.npy", c / "w_up.npy",
                fs::copy_options::overwrite_existing);
  // A drop after the last layer: rejected by the schedule.
  const std::vector<std::int64_t> bad_layers{1, 3, 6};
  npy::write((c / "layer_list.npy").string(), {3}, bad_layers.data());
  expect_clean_failure(replay("pipeline " + q(c) + " " + q(out), s.dir), out, "drop_layers[2] (6)");
}

void expect_clean_failure(const ToolRun& r, const fs::path& out, const std::string& needle) {
  EXPECT_EQ(r.status, 1);
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out)) << "wrote " << out;
}

TEST(ReplayScore, BadInputIsOneLineExitOneNothingWritten) {
  Scratch s;
  const fs::path out = s.dir / "out";
  expect_clean_failure(replay("score " + q(s.dir / "missing") + " " + q(out), s.dir), out,
                       "not a directory");
  expect_clean_failure(replay("", s.dir), out, "no mode");
  expect_clean_failure(replay("frobnicate a b", s.dir), out, "unknown mode");
  expect_clean_failure(replay("score only_one_arg", s.dir), out, "CASE_DIR OUT_DIR");

  struct Damage { const char* file; std::string bytes; const char* needle; };
  std::vector<Damage> damages{
      {"k.npy", "\x93NUMPY\x01", "k.npy"},                       // truncated
      {"q.npy", "not an npy file at all, not even close", "q.npy"},  // bad magic
  };
  for (const auto& d : damages) {
    Scratch inner;
    const fs::path c = copy_case(inner.dir, "score_tiny");
    std::ofstream(c / d.file, std::ios::binary | std::ios::trunc) << d.bytes;
    expect_clean_failure(replay("score " + q(c) + " " + q(out), inner.dir), out, d.needle);
  }
  {  // a missing file
    Scratch inner;
    const fs::path c = copy_case(inner.dir, "score_tiny");
    fs::remove(c / "keep.npy");
    expect_clean_failure(replay("score " + q(c) + " " + q(out), inner.dir), out, "keep.npy");
  }
  {  // wrong dtype: query positions as float
    Scratch inner;
    const fs::path c = copy_case(inner.dir, "score_tiny");
    const float p = 9.0f;
    npy::write((c / "query_pos.npy").string(), {1}, &p);
    expect_clean_failure(replay("score " + q(c) + " " + q(out), inner.dir), out, "i8");
  }
  {  // keep larger than the image
    Scratch inner;
    const fs::path c = copy_case(inner.dir, "score_tiny");
    const std::int64_t k = 7;
    npy::write((c / "keep.npy").string(), {1}, &k);
    expect_clean_failure(replay("score " + q(c) + " " + q(out), inner.dir), out,
                         "keep_counts[0] (7)");
  }
  {  // NaN in k
    Scratch inner;
    const fs::path c = copy_case(inner.dir, "score_tiny");
    auto k = npy::read((c / "k.npy").string());
    std::vector<float> v = npy::to_f32(k);
    v[9 * 8] = std::nanf("");
    npy::write((c / "k.npy").string(), k.shape, v.data());
    expect_clean_failure(replay("score " + q(c) + " " + q(out), inner.dir), out, "non-finite");
  }
}

}  // namespace

#endif
