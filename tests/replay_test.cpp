// pdrop-replay as a user runs it: every drop of every golden case through
// `score`, every case through `pipeline` and `check`, outputs compared with
// the golden files; bad input gives one line on stderr, exit status 1 and
// no output file.
#include <gtest/gtest.h>

#ifdef PDROP_REPLAY_EXE

#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "golden_util.hpp"
#include "npy.hpp"
#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;
namespace npy = pdrop::npy;
using pdrop_test::read_f32;
using pdrop_test::read_i64;

struct ToolRun {
  int status;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs the tool with `args`, capturing stdout and stderr.
ToolRun replay(const std::string& args, const fs::path& scratch) {
  const fs::path out = scratch / "stdout.txt", err = scratch / "stderr.txt";
  const std::string cmd = std::string("'") + PDROP_REPLAY_EXE + "' " + args + " > '" +
                          out.string() + "' 2> '" + err.string() + "'";
  const int raw = std::system(cmd.c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(out), slurp(err)};
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

double max_diff(const std::vector<float>& got, const std::vector<float>& want, bool relative) {
  EXPECT_EQ(got.size(), want.size());
  if (got.size() != want.size()) return 1e30;
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (relative) d /= std::max(1e-30, std::fabs(static_cast<double>(want[i])));
    worst = std::max(worst, d);
  }
  return worst;
}

TEST(ReplayScore, EveryGoldenDropMatches) {
  Scratch s;
  int drops = 0;
  for (const std::string& name : pdrop_test::golden_cases()) {
    const fs::path dir = pdrop_test::golden_case_dir(name);
    for (std::size_t j = 0; j < pdrop_test::golden_drops(dir); ++j) {
      SCOPED_TRACE(name + " drop " + std::to_string(j));
      const fs::path d = dir / ("drop_" + std::to_string(j));
      const fs::path out = s.dir / (pdrop_test::golden_test_name(name) + std::to_string(j));
      const ToolRun r = replay("score " + q(d) + " " + q(out), s.dir);
      ASSERT_EQ(r.status, 0) << r.err;
      EXPECT_EQ(r.err, "");
      ++drops;
      const auto kept = npy::read((out / "kept.npy").string());
      EXPECT_EQ(kept.type, npy::dtype::i8);
      EXPECT_EQ(npy::to_i64(kept), read_i64(d / "kept.npy"));
      EXPECT_EQ(fs::exists(out / "scores.npy"), fs::exists(d / "scores.npy"));
      if (fs::exists(d / "scores.npy")) {
        const bool fp16 = read_i64(d / "options.npy").at(2) != 0;
        EXPECT_LE(max_diff(read_f32(out / "scores.npy"), read_f32(d / "scores.npy"), true),
                  fp16 ? 1.0 / 1024 : 2e-5);
      }
    }
  }
  EXPECT_GE(drops, 30);
}

TEST(ReplayPipeline, EveryGoldenCaseMatches) {
  Scratch s;
  int cases = 0;
  for (const std::string& name : pdrop_test::golden_cases()) {
    SCOPED_TRACE(name);
    const fs::path dir = pdrop_test::golden_case_dir(name);
    const fs::path out = s.dir / pdrop_test::golden_test_name(name);
    const ToolRun r = replay("pipeline " + q(dir) + " " + q(out), s.dir);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");
    EXPECT_NE(r.out.find("drops keeping"), std::string::npos) << r.out;
    ++cases;
    const std::size_t drops = pdrop_test::golden_drops(dir);
    for (std::size_t j = 0; j < drops; ++j) {
      const fs::path d = dir / ("drop_" + std::to_string(j));
      const std::string sj = std::to_string(j);
      EXPECT_EQ(read_i64(out / ("kept_" + sj + ".npy")), read_i64(d / "kept.npy")) << j;
      EXPECT_EQ(npy::read((out / ("positions_" + sj + ".npy")).string()).shape,
                npy::read((d / "positions.npy").string()).shape) << j;
      EXPECT_EQ(read_i64(out / ("positions_" + sj + ".npy")), read_i64(d / "positions.npy")) << j;
    }
    EXPECT_FALSE(fs::exists(out / ("kept_" + std::to_string(drops) + ".npy")));
    EXPECT_EQ(read_i64(out / "cache_len.npy"), read_i64(dir / "cache_len.npy"));
    EXPECT_EQ(npy::read((out / "decode_pos.npy").string()).shape,
              npy::read((dir / "decode_pos.npy").string()).shape);
    EXPECT_EQ(read_i64(out / "decode_pos.npy"), read_i64(dir / "decode_pos.npy"));
    for (const char* f : {"prefill_out.npy", "decode_out.npy"})
      EXPECT_LE(max_diff(read_f32(out / f), read_f32(dir / f), false), 1e-4) << f;
  }
  EXPECT_GE(cases, 15);
}

// Copies the golden case `name` ("arch/case") and its model to
// scratch/arch/case and scratch/arch/weights, writable, so a test can damage
// one file. Returns the case folder.
fs::path copy_case(const fs::path& scratch, const std::string& name) {
  const fs::path src = pdrop_test::golden_case_dir(name);
  const fs::path dst = scratch / name;
  fs::create_directories(dst.parent_path());
  fs::copy(src, dst, fs::copy_options::recursive);
  fs::copy(src.parent_path() / "weights", dst.parent_path() / "weights",
           fs::copy_options::recursive);
  for (const auto& e : fs::recursive_directory_iterator(scratch))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return dst;
}

TEST(ReplayCheck, PassesOnEveryArchitectureAndFailsOnAWrongKeptToken) {
  Scratch s;
  for (const char* name : {"llama/pyramid", "llava/dart_chelsea", "llava_next/pyramid_chelsea",
                           "qwen2_vl/two_images_global", "qwen2_vl/v2drop_two_images_global",
                           "qwen2_5_vl/video_pyramid"}) {
    const ToolRun r = replay("check " + q(pdrop_test::golden_case_dir(name)), s.dir);
    EXPECT_EQ(r.status, 0) << name << "\n" << r.out << r.err;
    EXPECT_NE(r.out.find("PASS: 0 differences"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
  }
  // One expected kept token moved: both the score and the pipeline replay
  // disagree, the tool says where, and exits 2.
  const fs::path c = copy_case(s.dir, "qwen2_vl/pyramid_astronaut");
  auto kept = read_i64(c / "drop_1" / "kept.npy");
  kept.back() += 1;
  npy::write((c / "drop_1" / "kept.npy").string(), {static_cast<std::int64_t>(kept.size())},
             kept.data());
  const ToolRun r = replay("check " + q(c), s.dir);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_NE(r.out.find("FAIL drop 1 kept (score)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FAIL drop 1 kept (pipeline)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FAIL: 2 differences"), std::string::npos) << r.out;
}

void expect_clean_failure(const ToolRun& r, const fs::path& out, const std::string& needle) {
  EXPECT_EQ(r.status, 1);
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out)) << "wrote " << out;
}

TEST(ReplayPipeline, BadCaseIsOneLineExitOneNothingWritten) {
  Scratch s;
  const fs::path out = s.dir / "out";
  const fs::path c = copy_case(s.dir, "qwen2_vl/pyramid_astronaut");
  const fs::path w = c.parent_path() / "weights";
  fs::remove(w / "w_up.npy");
  expect_clean_failure(replay("pipeline " + q(c) + " " + q(out), s.dir), out, "w_up.npy");
  // A weight of the wrong shape.
  const std::vector<float> small(6, 0.0f);
  npy::write((w / "w_up.npy").string(), {2, 3}, small.data());
  expect_clean_failure(replay("pipeline " + q(c) + " " + q(out), s.dir), out, "expected shape");
  fs::copy_file(pdrop_test::golden_case_dir("qwen2_vl/weights") / "w_up.npy", w / "w_up.npy",
                fs::copy_options::overwrite_existing);
  // A missing bias of a model that has them.
  fs::rename(w / "bk.npy", s.dir / "bk.npy");
  expect_clean_failure(replay("pipeline " + q(c) + " " + q(out), s.dir), out, "bk.npy");
  fs::rename(s.dir / "bk.npy", w / "bk.npy");
  // A drop after the last layer: rejected by the schedule.
  const std::vector<std::int64_t> bad_layers{1, 3, 4};
  npy::write((c / "layer_list.npy").string(), {3}, bad_layers.data());
  expect_clean_failure(replay("pipeline " + q(c) + " " + q(out), s.dir), out, "drop_layers[2] (4)");
  // One position row for an M-RoPE model.
  const fs::path c2 = copy_case(s.dir / "b", "qwen2_vl/video_pyramid");
  std::vector<std::int64_t> one_row(400);
  npy::write((c2 / "positions.npy").string(), {1, 400}, one_row.data());
  expect_clean_failure(replay("pipeline " + q(c2) + " " + q(out), s.dir), out, "position rows");
  // No weights at all.
  fs::remove_all(c2.parent_path() / "weights");
  expect_clean_failure(replay("check " + q(c2), s.dir), out, "no weights/ folder");
}

// A query row inside the image (llama/pyramid drop 0: image 10..57, the
// query moved from 79 to 57): pdrop-replay score keeps it, in the budget
// (24 kept, 57 among them), and alone when the budget is 0.
TEST(ReplayScore, QueryTokenInsideTheImageIsKept) {
  Scratch s;
  for (const std::int64_t budget : {std::int64_t{24}, std::int64_t{0}}) {
    const fs::path c = copy_case(s.dir / std::to_string(budget), "llama/pyramid") / "drop_0";
    const std::int64_t p = 57;
    npy::write((c / "query_pos.npy").string(), {1}, &p);
    npy::write((c / "keep.npy").string(), {1}, &budget);
    const fs::path out = s.dir / ("out" + std::to_string(budget));
    const ToolRun r = replay("score " + q(c) + " " + q(out), s.dir);
    ASSERT_EQ(r.status, 0) << r.err;
    const auto kept = read_i64(out / "kept.npy");
    EXPECT_EQ(kept.size(), static_cast<std::size_t>(std::max<std::int64_t>(budget, 1)));
    EXPECT_EQ(kept.back(), 57);
  }
}

TEST(ReplayScore, BadInputIsOneLineExitOneNothingWritten) {
  Scratch s;
  const fs::path out = s.dir / "out";
  expect_clean_failure(replay("score " + q(s.dir / "missing") + " " + q(out), s.dir), out,
                       "not a directory");
  expect_clean_failure(replay("", s.dir), out, "no mode");
  expect_clean_failure(replay("frobnicate a b", s.dir), out, "unknown mode");
  expect_clean_failure(replay("score only_one_arg", s.dir), out, "DROP_DIR OUT_DIR");
  expect_clean_failure(replay("check a b", s.dir), out, "check takes CASE_DIR");

  struct Damage { const char* file; std::string bytes; const char* needle; };
  std::vector<Damage> damages{
      {"k.npy", "\x93NUMPY\x01", "k.npy"},                       // truncated
      {"q.npy", "not an npy file at all, not even close", "q.npy"},  // bad magic
  };
  for (const auto& d : damages) {
    Scratch inner;
    const fs::path c = copy_case(inner.dir, "llama/pyramid") / "drop_0";
    std::ofstream(c / d.file, std::ios::binary | std::ios::trunc) << d.bytes;
    expect_clean_failure(replay("score " + q(c) + " " + q(out), inner.dir), out, d.needle);
  }
  {  // a missing file
    Scratch inner;
    const fs::path c = copy_case(inner.dir, "llama/pyramid") / "drop_0";
    fs::remove(c / "keep.npy");
    expect_clean_failure(replay("score " + q(c) + " " + q(out), inner.dir), out, "keep.npy");
  }
  {  // wrong dtype: query positions as float
    Scratch inner;
    const fs::path c = copy_case(inner.dir, "llama/pyramid") / "drop_0";
    const float p = 79.0f;
    npy::write((c / "query_pos.npy").string(), {1}, &p);
    expect_clean_failure(replay("score " + q(c) + " " + q(out), inner.dir), out, "i8");
  }
  {  // keep larger than the image (48 tokens)
    Scratch inner;
    const fs::path c = copy_case(inner.dir, "llama/pyramid") / "drop_0";
    const std::int64_t k = 49;
    npy::write((c / "keep.npy").string(), {1}, &k);
    expect_clean_failure(replay("score " + q(c) + " " + q(out), inner.dir), out,
                         "keep_counts[0] (49)");
  }
  {  // options out of range
    Scratch inner;
    const fs::path c = copy_case(inner.dir, "llama/pyramid") / "drop_0";
    const std::vector<std::int64_t> o{9, 0, 0, 0, 8};
    npy::write((c / "options.npy").string(), {5}, o.data());
    expect_clean_failure(replay("score " + q(c) + " " + q(out), inner.dir), out, "options.npy");
  }
  {  // NaN in an image token's key
    Scratch inner;
    const fs::path c = copy_case(inner.dir, "llama/pyramid") / "drop_0";
    auto k = npy::read((c / "k.npy").string());
    std::vector<float> v = npy::to_f32(k);
    v[12 * 16] = std::nanf("");  // head 0, token 12 (an image token), element 0
    npy::write((c / "k.npy").string(), k.shape, v.data());
    expect_clean_failure(replay("score " + q(c) + " " + q(out), inner.dir), out, "non-finite");
  }
}

}  // namespace

#endif  // PDROP_REPLAY_EXE
