// pdrop-replay: replays tensors dumped from a PyTorch model through pdrop,
// the way an integrator checks a C++ port against the reference. Cases come
// from reference/make_golden.py (tests/golden) or reference/dump.py (your
// own checkpoint); their layout is docs/golden.md.
//
//   pdrop-replay score DROP_DIR OUT_DIR
//     one drop: reads q.npy (Hq, nq, d) f2/f4/f8, query_pos.npy (nq,) i8,
//     k.npy (Hkv, T, d) f2/f4/f8, image_span.npy (2,) or (S, 2) i8, keep.npy
//     (S,) i8 per span, or (1,) with a global budget; options.npy, when
//     present, selects the strategy (PyramidDrop / FastV score; DART also
//     reads features.npy (T, D); V2Drop reads before.npy and after.npy
//     (T, D) f2/f4/f8 and query_pos.npy instead of q/k, and scores; VTW
//     reads nothing), the
//     budget and the probability rounding.
//     writes OUT_DIR/kept.npy (kept image tokens, positions at the drop,
//     ascending) and, for a scoring strategy, OUT_DIR/scores.npy (n,) f4.
//     Prints "pdrop-replay: DROP_DIR: kept K [of n] image tokens -> OUT_DIR"
//     and then "wrote OUT_DIR/<file>" for each file written.
//
//   pdrop-replay pipeline CASE_DIR OUT_DIR
//     a whole case: the language model's weights (CASE_DIR/weights or
//     CASE_DIR/../weights), prompt embeddings, positions (1 or 3 rows),
//     image spans, schedule and decode inputs, run by the reference host
//     (examples/host): prefill with the schedule through pdrop, then one
//     decode step per decode embedding.
//     writes kept_<j>.npy and positions_<j>.npy (rows, T') per drop,
//     prefill_out.npy and decode_out.npy (f4, final-norm rows), cache_len.npy
//     (L,) and decode_pos.npy (steps, L, rows) i8. Prints one summary line
//     ("... drops keeping [...] image tokens ... -> OUT_DIR"), then "wrote
//     OUT_DIR/<file>" for each file written.
//
//   pdrop-replay check CASE_DIR
//     runs `pipeline` and `score` on every drop_<j>/ and compares with the
//     case's own files: kept tokens, positions, cache lengths and decode
//     positions exactly, scores within 2e-5 relative (2^-10 with fp16
//     rounding), outputs within 1e-4. Prints one line per comparison and
//     a verdict; exits 0 when all match, 2 when any differs.
//
// --help and --help after a mode (e.g. `pdrop-replay score --help`) print
// the flags and arguments; --version prints pdrop's version.
// On bad input it prints one line to stderr, exits 1 and writes nothing:
// everything is read and computed first, outputs go to temporary files that
// are renamed into place only once all of them are written.
#include "npy.hpp"
#include <pdrop/pdrop.hpp>

#include "cli.hpp"
#include "host/pipeline_case.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace npy = pdrop::npy;

constexpr const char* kUsage =
    "usage: pdrop-replay score DROP_DIR OUT_DIR | pipeline CASE_DIR OUT_DIR | check CASE_DIR";

[[noreturn]] void usage_error(const std::string& what) {
  throw pdrop_cli::usage_error(what + "; " + kUsage);
}

npy::array read_in(const fs::path& dir, const char* name) {
  return npy::read((dir / name).string());
}

void expect_rank(const npy::array& a, const fs::path& file, std::size_t rank) {
  if (a.shape.size() != rank)
    throw pdrop::invalid_argument(pdrop::detail::concat(
        file.string(), ": expected ", rank, " dimensions, got ", a.shape.size()));
}

// Float tensor in the type it was stored in: half stays half (the kernel
// converts in registers), f4 is used in place, f8 is narrowed to float.
struct FloatTensor {
  npy::array raw;
  std::vector<float> narrowed;
  bool is_half() const { return raw.type == npy::dtype::f2; }
  template <class T>
  const T* data() const {
    if constexpr (std::is_same_v<T, pdrop::half>) return raw.data<pdrop::half>();
    else return raw.type == npy::dtype::f4 ? raw.data<float>() : narrowed.data();
  }
};

// An int64 array (positions, spans, counts): i8 only, named in the error.
std::vector<std::int64_t> read_i64(const fs::path& dir, const char* name) {
  const npy::array a = read_in(dir, name);
  if (a.type != npy::dtype::i8)
    throw pdrop::invalid_argument(pdrop::detail::concat(
        (dir / name).string(), ": expected i8 data, got ", npy::dtype_name(a.type)));
  return npy::to_i64(a);
}

FloatTensor read_float(const fs::path& dir, const char* name, std::size_t rank) {
  FloatTensor t{read_in(dir, name), {}};
  if (t.raw.type == npy::dtype::i8)
    throw pdrop::invalid_argument(pdrop::detail::concat(
        (dir / name).string(), ": expected a float array (f2, f4 or f8), got i8"));
  if (t.raw.type != npy::dtype::f4) t.narrowed = npy::to_f32(t.raw);
  expect_rank(t.raw, dir / name, rank);
  return t;
}

// Writes every (name, writer) pair as OUT/name.tmp, then renames them all.
struct Outputs {
  fs::path dir;
  std::vector<std::string> names;
  template <class Write>
  void add(const std::string& name, Write write) {
    write((dir / (name + ".tmp")).string());
    names.push_back(name);
  }
  // Renames every file into place; returns their paths.
  std::vector<fs::path> commit() {
    std::vector<fs::path> written;
    for (const auto& n : names) {
      fs::rename(dir / (n + ".tmp"), dir / n);
      written.push_back(dir / n);
    }
    names.clear();
    return written;
  }
  ~Outputs() {
    std::error_code ec;
    for (const auto& n : names) fs::remove(dir / (n + ".tmp"), ec);
  }
};

// ---- score: one drop ------------------------------------------------------

struct DropResult {
  std::vector<float> scores;       // empty for VTW / DART
  std::vector<std::int64_t> kept;  // kept image tokens, ascending
  pdrop::ProbRounding rounding = pdrop::ProbRounding::none;
  bool scored = false;             // PyramidDrop / FastV
};

// The buffers of one scored drop over `tokens` rows: drop(ws, keep,
// new_spans) runs it, writing r.scores (sized here); r.kept follows.
template <class Drop>
void scored_drop(std::int64_t tokens, const std::vector<pdrop::ImageSpan>& spans, DropResult& r,
                 Drop&& drop) {
  std::int64_t n_image = 0;
  for (const auto& s : spans) n_image += std::max<std::int64_t>(s.length, 0);
  r.scores.assign(static_cast<std::size_t>(n_image), 0.0f);
  std::vector<std::int64_t> keep(static_cast<std::size_t>(std::max<std::int64_t>(tokens, 0)));
  std::vector<pdrop::ImageSpan> new_spans(spans.size());
  pdrop::Workspace ws;
  drop(ws, keep, new_spans);
  r.kept = pdrop_host::kept_image_tokens(keep, new_spans);
}

template <class Tq, class Tk>
void score_case(const FloatTensor& q, const std::vector<std::int64_t>& pos, const FloatTensor& k,
                const std::vector<pdrop::ImageSpan>& spans, const std::vector<std::int64_t>& counts,
                bool global, const pdrop::ScoreOptions& so, DropResult& r) {
  const auto qv = pdrop::hnd_view<const Tq>(q.data<Tq>(), q.raw.shape[0], q.raw.shape[1],
                                            q.raw.shape[2]);
  const auto kv = pdrop::hnd_view<const Tk>(k.data<Tk>(), k.raw.shape[0], k.raw.shape[1],
                                            k.raw.shape[2]);
  scored_drop(kv.tokens, spans, r, [&](pdrop::Workspace& ws, std::vector<std::int64_t>& keep,
                                       std::vector<pdrop::ImageSpan>& new_spans) {
    if (global)
      pdrop::rank_and_drop_global<Tq, Tk>(qv, pos, kv, spans, counts[0], ws, keep, new_spans,
                                          r.scores, so);
    else
      pdrop::rank_and_drop<Tq, Tk>(qv, pos, kv, spans, counts, ws, keep, new_spans, r.scores,
                                   so);
  });
}

template <class T>
struct type_tag {
  using type = T;
};

// f(type_tag<A>, type_tag<B>) with A, B the element types a and b are read
// as: pdrop::half for f2, float otherwise (f8 is narrowed to float).
template <class F>
void with_element_types(const FloatTensor& a, const FloatTensor& b, F&& f) {
  if (a.is_half() && b.is_half()) f(type_tag<pdrop::half>{}, type_tag<pdrop::half>{});
  else if (a.is_half()) f(type_tag<pdrop::half>{}, type_tag<float>{});
  else if (b.is_half()) f(type_tag<float>{}, type_tag<pdrop::half>{});
  else f(type_tag<float>{}, type_tag<float>{});
}

// V2Drop: the variation between before and after (T, D); the query
// positions are kept.
template <class Tb, class Ta>
void v2drop_case(const FloatTensor& before, const FloatTensor& after,
                 const std::vector<std::int64_t>& pos,
                 const std::vector<pdrop::ImageSpan>& spans,
                 const std::vector<std::int64_t>& counts, bool global, DropResult& r) {
  const pdrop::TokenView<const Tb> bv(before.data<Tb>(), before.raw.shape[0], before.raw.shape[1]);
  const pdrop::TokenView<const Ta> av(after.data<Ta>(), after.raw.shape[0], after.raw.shape[1]);
  scored_drop(bv.tokens, spans, r, [&](pdrop::Workspace& ws, std::vector<std::int64_t>& keep,
                                       std::vector<pdrop::ImageSpan>& new_spans) {
    pdrop::v2drop_drop<Tb, Ta>(bv, av, pos, spans,
                               global ? pdrop::Budget::global : pdrop::Budget::per_span, counts,
                               ws, keep, new_spans, r.scores);
  });
}

DropResult run_drop(const fs::path& in) {
  if (!fs::is_directory(in))
    throw pdrop::invalid_argument("DROP_DIR " + in.string() + " is not a directory");
  const npy::array span_arr = read_in(in, "image_span.npy");
  const auto span_flat = read_i64(in, "image_span.npy");
  const auto counts = read_i64(in, "keep.npy");
  if (span_flat.size() % 2 != 0 || span_arr.shape.empty() || span_arr.shape.back() != 2)
    throw pdrop::invalid_argument(pdrop::detail::concat(
        (in / "image_span.npy").string(), ": expected shape (2,) or (S, 2), got ", span_arr.shape.size(),
        " dimensions with ", span_flat.size(), " entries"));
  std::vector<pdrop::ImageSpan> spans;
  for (std::size_t i = 0; i < span_flat.size(); i += 2)
    spans.push_back({span_flat[i], span_flat[i + 1]});
  // Without options.npy: PyramidDrop, per span, float32 scores.
  pdrop_host::CaseOptions opt;
  if (fs::exists(in / "options.npy")) opt = pdrop_host::read_case_options(in / "options.npy");
  const pdrop::Strategy strategy = opt.strategy;
  const bool global = opt.budget == pdrop::Budget::global;
  if (!global && counts.size() != spans.size())
    throw pdrop::invalid_argument(pdrop::detail::concat(
        (in / "keep.npy").string(), ": expected one count per image span (", spans.size(), "), got ",
        counts.size()));
  if (global && counts.size() != 1)
    throw pdrop::invalid_argument(pdrop::detail::concat(
        (in / "keep.npy").string(), ": a global budget (options.npy) is one count, got ",
        counts.size()));
  DropResult r;
  r.rounding = opt.rounding;
  if (strategy == pdrop::Strategy::pyramid_drop || strategy == pdrop::Strategy::fastv) {
    const FloatTensor q = read_float(in, "q.npy", 3);
    const FloatTensor k = read_float(in, "k.npy", 3);
    const auto pos = read_i64(in, "query_pos.npy");
    pdrop::ScoreOptions so;
    so.round_probs = r.rounding;
    r.scored = true;
    with_element_types(q, k, [&](auto tq, auto tk) {
      score_case<typename decltype(tq)::type, typename decltype(tk)::type>(
          q, pos, k, spans, counts, global, so, r);
    });
    return r;
  }
  if (strategy == pdrop::Strategy::v2drop) {
    const FloatTensor before = read_float(in, "before.npy", 2);
    const FloatTensor after = read_float(in, "after.npy", 2);
    const auto pos = read_i64(in, "query_pos.npy");
    r.scored = true;
    with_element_types(before, after, [&](auto tb, auto ta) {
      v2drop_case<typename decltype(tb)::type, typename decltype(ta)::type>(
          before, after, pos, spans, counts, global, r);
    });
    return r;
  }
  if (global)
    throw pdrop::invalid_argument((in / "options.npy").string() +
                                  ": a global budget needs a scoring strategy, not " +
                                  pdrop::strategy_name(strategy));
  pdrop::DropInputs<float, float, float> din;
  FloatTensor k, feats;
  std::int64_t tokens = spans.empty() ? 0 : spans.back().end();
  if (strategy == pdrop::Strategy::dart) {
    k = read_float(in, "k.npy", 3);
    feats = read_float(in, "features.npy", 2);
    din.k = pdrop::hnd_view<const float>(k.data<float>(), k.raw.shape[0], k.raw.shape[1],
                                         k.raw.shape[2]);
    din.features = pdrop::TokenView<const float>(feats.data<float>(), feats.raw.shape[0],
                                                 feats.raw.shape[1]);
    din.dart = opt.dart;
    tokens = din.k.tokens;
  }
  std::vector<std::int64_t> keep(static_cast<std::size_t>(std::max<std::int64_t>(tokens, 0)));
  std::vector<pdrop::ImageSpan> new_spans(spans.size());
  pdrop::Workspace ws;
  pdrop::drop_by_strategy(strategy, tokens, din, spans, counts, ws, keep, new_spans);
  r.kept = pdrop_host::kept_image_tokens(keep, new_spans);
  return r;
}

std::vector<fs::path> write_drop(const DropResult& r, const fs::path& out) {
  fs::create_directories(out);
  Outputs files{out, {}};
  if (r.scored)
    files.add("scores.npy", [&](const std::string& p) {
      npy::write(p, {static_cast<std::int64_t>(r.scores.size())}, r.scores.data());
    });
  files.add("kept.npy", [&](const std::string& p) {
    npy::write(p, {static_cast<std::int64_t>(r.kept.size())}, r.kept.data());
  });
  return files.commit();
}

// ---- pipeline: a whole case -------------------------------------------------

using pdrop_host::detail::rows_first;

std::vector<fs::path> write_pipeline(const pdrop_host::PipelineCase& pc, const pdrop_host::PipelineOutputs& res,
                    const fs::path& out) {
  const std::int64_t rows = pc.rows, L = pc.weights.cfg.layers, steps = pc.decode_embeds.rows();
  fs::create_directories(out);
  Outputs files{out, {}};
  for (std::size_t j = 0; j < res.kept.size(); ++j) {
    files.add("kept_" + std::to_string(j) + ".npy", [&](const std::string& p) {
      npy::write(p, {static_cast<std::int64_t>(res.kept[j].size())}, res.kept[j].data());
    });
    files.add("positions_" + std::to_string(j) + ".npy", [&](const std::string& p) {
      const auto a = rows_first(res.positions[j], rows);
      npy::write(p, {rows, static_cast<std::int64_t>(a.size()) / rows}, a.data());
    });
  }
  files.add("prefill_out.npy", [&](const std::string& p) {
    npy::write(p, {res.prefill_out.rows(), res.prefill_out.cols()}, res.prefill_out.data());
  });
  files.add("cache_len.npy", [&](const std::string& p) {
    npy::write(p, {L}, res.cache_len.data());
  });
  files.add("decode_out.npy", [&](const std::string& p) {
    npy::write(p, {res.decode_out.rows(), res.decode_out.cols()}, res.decode_out.data());
  });
  files.add("decode_pos.npy", [&](const std::string& p) {
    npy::write(p, {steps, L, rows}, res.decode_pos.data());
  });
  return files.commit();
}

std::string list(const std::vector<std::size_t>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// What a successful run wrote: one line per file, after the summary line
// (nothing is printed when a run fails: it writes nothing).
void print_written(const std::vector<fs::path>& written) {
  for (const fs::path& p : written) std::printf("wrote %s\n", p.string().c_str());
}

void run_score(const fs::path& in, const fs::path& out) {
  const DropResult r = run_drop(in);
  const std::vector<fs::path> written = write_drop(r, out);
  const std::string of = r.scored ? pdrop::detail::concat(" of ", r.scores.size()) : "";
  std::printf("pdrop-replay: %s: kept %zu%s image tokens -> %s\n", in.string().c_str(),
              r.kept.size(), of.c_str(), out.string().c_str());
  print_written(written);
}

void run_pipeline(const fs::path& in, const fs::path& out) {
  const pdrop_host::PipelineCase pc = pdrop_host::load_pipeline_case(in);
  const pdrop_host::PipelineOutputs res = pdrop_host::run_pipeline_case(pc);
  const std::vector<fs::path> written = write_pipeline(pc, res, out);
  std::vector<std::size_t> kept;
  for (const auto& k : res.kept) kept.push_back(k.size());
  std::printf("pdrop-replay: %s: %lld tokens, %zu drops keeping %s image tokens, %lld decode "
              "steps -> %s\n",
              in.string().c_str(), static_cast<long long>(pc.embeds.rows()), res.kept.size(),
              list(kept).c_str(), static_cast<long long>(pc.decode_embeds.rows()),
              out.string().c_str());
  print_written(written);
}

// ---- check: a case against its own expected files ---------------------------

struct Checker {
  int failures = 0;
  void report(bool ok, const std::string& what, const std::string& detail) {
    std::printf("  %-4s %s%s%s\n", ok ? "ok" : "FAIL", what.c_str(), detail.empty() ? "" : ": ",
                detail.c_str());
    if (!ok) ++failures;
  }
  void exact(const std::vector<std::int64_t>& got, const std::vector<std::int64_t>& want,
             const std::string& what) {
    std::size_t first = 0;
    while (first < std::min(got.size(), want.size()) && got[first] == want[first]) ++first;
    const bool ok = got == want;
    report(ok, what,
           ok ? std::to_string(got.size()) + " values equal"
              : got.size() != want.size()
                    ? pdrop::detail::concat(got.size(), " values, expected ", want.size())
                    : pdrop::detail::concat("first difference at ", first, ": ", got[first],
                                            ", expected ", want[first]));
  }
  void close(const float* got, std::size_t n, const std::vector<float>& want, double tol,
             bool relative, const std::string& what) {
    if (n != want.size()) {
      report(false, what, pdrop::detail::concat(n, " values, expected ", want.size()));
      return;
    }
    double worst = 0;
    for (std::size_t i = 0; i < n; ++i) {
      double d = std::fabs(static_cast<double>(got[i]) - want[i]);
      if (relative) d /= std::max(1e-30, std::fabs(static_cast<double>(want[i])));
      worst = std::max(worst, d);
    }
    char buf[96];
    std::snprintf(buf, sizeof buf, "largest %s difference %.2g (limit %.2g)",
                  relative ? "relative" : "absolute", worst, tol);
    report(worst <= tol, what, buf);
  }
};

std::vector<float> read_f32(const fs::path& file) { return npy::to_f32(npy::read(file.string())); }
std::vector<std::int64_t> read_i64_file(const fs::path& file) {
  return npy::to_i64(npy::read(file.string()));
}

// What a case expects of one drop, read before anything is printed.
struct ExpectedDrop {
  std::vector<std::int64_t> kept, positions;
  std::vector<float> scores;
  bool has_scores = false;
};

int run_check(const fs::path& in) {
  const pdrop_host::PipelineCase pc = pdrop_host::load_pipeline_case(in);
  // Everything is read and run before anything is printed: a missing or
  // broken file is bad input (one line, exit 1), not a half report.
  std::vector<DropResult> drops;
  std::vector<ExpectedDrop> want;
  for (std::size_t j = 0; fs::exists(in / ("drop_" + std::to_string(j))); ++j) {
    const fs::path d = in / ("drop_" + std::to_string(j));
    drops.push_back(run_drop(d));
    ExpectedDrop e;
    e.kept = read_i64_file(d / "kept.npy");
    e.positions = read_i64_file(d / "positions.npy");
    e.has_scores = drops.back().scored;
    if (e.has_scores) e.scores = read_f32(d / "scores.npy");
    want.push_back(std::move(e));
  }
  const auto want_cache = read_i64_file(in / "cache_len.npy");
  const auto want_dpos = read_i64_file(in / "decode_pos.npy");
  const auto want_pre = read_f32(in / "prefill_out.npy");
  const auto want_dec = read_f32(in / "decode_out.npy");
  const pdrop_host::PipelineOutputs res = pdrop_host::run_pipeline_case(pc);
  std::printf("pdrop-replay check %s\n", in.string().c_str());
  Checker c;
  if (drops.size() != pc.layer_list.size())
    c.report(false, "drop folders",
             pdrop::detail::concat(drops.size(), " drop_<j>/, ", pc.layer_list.size(), " drops"));
  for (std::size_t j = 0; j < drops.size(); ++j) {
    const std::string tag = "drop " + std::to_string(j) + " ";
    c.exact(drops[j].kept, want[j].kept, tag + "kept (score)");
    if (want[j].has_scores)
      c.close(drops[j].scores.data(), drops[j].scores.size(), want[j].scores,
              drops[j].rounding == pdrop::ProbRounding::none ? 2e-5 : 1.0 / 1024, true,
              tag + "scores");
    if (j < res.kept.size()) {
      c.exact(res.kept[j], want[j].kept, tag + "kept (pipeline)");
      c.exact(rows_first(res.positions[j], pc.rows), want[j].positions, tag + "positions");
    }
  }
  c.exact(res.cache_len, want_cache, "cache lengths");
  c.exact(res.decode_pos, want_dpos, "decode positions");
  c.close(res.prefill_out.data(), static_cast<std::size_t>(res.prefill_out.size()), want_pre,
          1e-4, false, "prefill output");
  c.close(res.decode_out.data(), static_cast<std::size_t>(res.decode_out.size()), want_dec,
          1e-4, false, "decode output");
  std::printf("%s: %d difference%s\n", c.failures ? "FAIL" : "PASS", c.failures,
              c.failures == 1 ? "" : "s");
  return c.failures ? 2 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Replays tensors dumped from a PyTorch model (reference/make_golden.py, "
               "reference/dump.py; layout: docs/golden.md) through pdrop."};
  pdrop_cli::setup(app, "pdrop-replay");
  // The modes' arguments are checked here, not by CLI11, so that a wrong
  // count says which arguments the mode takes.
  app.allow_extras();
  std::string in, out;
  auto* score = app.add_subcommand(
      "score", "one drop: DROP_DIR's q/k (+ DART features) -> OUT_DIR/kept.npy, scores.npy");
  score->add_option("DROP_DIR", in, "a drop folder (drop_<j>/ of a case)")->type_name("DIR");
  score->add_option("OUT_DIR", out, "where to write kept.npy and scores.npy")->type_name("DIR");
  auto* pipeline = app.add_subcommand(
      "pipeline", "a whole case through the reference host -> OUT_DIR/kept_<j>.npy, "
                  "positions_<j>.npy, prefill_out.npy, decode_out.npy, cache_len.npy, "
                  "decode_pos.npy");
  pipeline->add_option("CASE_DIR", in, "a case folder (holds drop_<j>/)")->type_name("DIR");
  pipeline->add_option("OUT_DIR", out, "where to write the outputs")->type_name("DIR");
  auto* check = app.add_subcommand(
      "check", "score and pipeline on CASE_DIR, compared with its own files; exit 2 when "
               "anything differs");
  check->add_option("CASE_DIR", in, "a case folder")->type_name("DIR");
  for (CLI::App* mode : {score, pipeline, check}) mode->allow_extras();
  app.require_subcommand(0, 1);
  return pdrop_cli::run(app, argc, argv, [&]() -> int {
    CLI::App* mode = app.get_subcommands().empty() ? nullptr : app.get_subcommands()[0];
    std::vector<std::string> extra = app.remaining();
    if (mode)
      for (const std::string& x : mode->remaining()) extra.push_back(x);
    for (const std::string& x : extra)
      if (x.size() > 1 && x[0] == '-') usage_error("unknown flag '" + x + "'");
    if (!mode) {
      if (extra.empty()) usage_error("no mode given");
      usage_error("unknown mode '" + extra[0] + "'");
    }
    const bool two = mode != check;
    if (!extra.empty() || in.empty() || (two && out.empty()))
      usage_error(mode->get_name() + (mode == score      ? " takes DROP_DIR OUT_DIR"
                                      : mode == pipeline ? " takes CASE_DIR OUT_DIR"
                                                         : " takes CASE_DIR"));
    if (mode == score) {
      run_score(in, out);
    } else if (mode == pipeline) {
      run_pipeline(in, out);
    } else {
      return run_check(in);
    }
    return 0;
  });
}
