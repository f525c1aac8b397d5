// pdrop-replay: replays tensors dumped from a PyTorch model through pdrop,
// the way an integrator checks a C++ port against the reference.
//
//   pdrop-replay score CASE_DIR OUT_DIR
//     reads  q.npy (Hq, nq, d) f2/f4/f8, query_pos.npy (nq,) i8,
//            k.npy (Hkv, T, d) f2/f4/f8, image_span.npy (2,) or (S, 2) i8,
//            keep.npy (1,) or (S,) i8
//     writes OUT_DIR/scores.npy (n,) f4 and OUT_DIR/kept.npy (keep,) i8
//            (absolute positions, ascending)
//
//   pdrop-replay pipeline CASE_DIR OUT_DIR
//     reads  a tiny LLaMA's weights, prompt embeddings, image span, schedule
//            and decode embeddings (../shared/golden/README.md, pipeline_*)
//     runs   the reference host (examples/host): prefill with PyramidDrop
//            through pdrop, then one decode step per decode embedding
//     writes kept_<j>.npy (i8) per drop, prefill_out.npy and decode_out.npy
//            (f4, final-norm rows), decode_pos.npy (steps, layers) i8
//
// On bad input it prints one line to stderr, exits 1 and writes nothing:
// everything is read and computed first, outputs go to temporary files that
// are renamed into place only once all of them are written.
#include <pdrop/npy.hpp>
#include <pdrop/pdrop.hpp>

#include "host/pipeline_case.hpp"

#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace npy = pdrop::npy;

[[noreturn]] void usage_error(const std::string& what) {
  throw pdrop::invalid_argument(what + " (usage: pdrop-replay score|pipeline CASE_DIR OUT_DIR)");
}

npy::array read_in(const fs::path& dir, const char* name) {
  return npy::read((dir / name).string());
}

void expect_rank(const npy::array& a, const char* name, std::size_t rank) {
  if (a.shape.size() != rank)
    throw pdrop::invalid_argument(pdrop::detail::concat(
        name, ": expected ", rank, " dimensions, got ", a.shape.size()));
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

FloatTensor read_float(const fs::path& dir, const char* name) {
  FloatTensor t{read_in(dir, name), {}};
  if (t.raw.type == npy::dtype::i8)
    throw pdrop::invalid_argument(pdrop::detail::concat(
        (dir / name).string(), ": expected a float array (f2, f4 or f8), got i8"));
  if (t.raw.type == npy::dtype::f8) t.narrowed = npy::to_f32(t.raw);
  expect_rank(t.raw, name, 3);
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
  void commit() {
    for (const auto& n : names) fs::rename(dir / (n + ".tmp"), dir / n);
    names.clear();
  }
  ~Outputs() {
    std::error_code ec;
    for (const auto& n : names) fs::remove(dir / (n + ".tmp"), ec);
  }
};

template <class Tq, class Tk>
void score_case(const FloatTensor& q, const std::vector<std::int64_t>& pos,
                const FloatTensor& k, const std::vector<pdrop::ImageSpan>& spans,
                const std::vector<std::int64_t>& counts, std::vector<float>& scores,
                std::vector<std::int64_t>& kept) {
  const auto qv = pdrop::hnd_view<const Tq>(q.data<Tq>(), q.raw.shape[0], q.raw.shape[1],
                                            q.raw.shape[2]);
  const auto kv = pdrop::hnd_view<const Tk>(k.data<Tk>(), k.raw.shape[0], k.raw.shape[1],
                                            k.raw.shape[2]);
  std::int64_t n_image = 0;
  for (const auto& s : spans) n_image += std::max<std::int64_t>(s.length, 0);
  scores.assign(static_cast<std::size_t>(n_image), 0.0f);
  std::vector<std::int64_t> keep(static_cast<std::size_t>(kv.tokens));
  std::vector<pdrop::ImageSpan> new_spans(spans.size());
  pdrop::Workspace ws;
  pdrop::rank_and_drop<Tq, Tk>(qv, pos, kv, spans, counts, ws, keep, new_spans, scores);
  kept.clear();
  for (const auto& s : new_spans)
    kept.insert(kept.end(), keep.begin() + s.start, keep.begin() + s.end());
}

void run_score(const fs::path& in, const fs::path& out) {
  if (!fs::is_directory(in))
    throw pdrop::invalid_argument("CASE_DIR " + in.string() + " is not a directory");
  const FloatTensor q = read_float(in, "q.npy");
  const FloatTensor k = read_float(in, "k.npy");
  const auto pos = read_i64(in, "query_pos.npy");
  const npy::array span_arr = read_in(in, "image_span.npy");
  const auto span_flat = read_i64(in, "image_span.npy");
  const auto counts = read_i64(in, "keep.npy");
  if (span_flat.size() % 2 != 0 || span_arr.shape.empty() || span_arr.shape.back() != 2)
    throw pdrop::invalid_argument(pdrop::detail::concat(
        "image_span.npy: expected shape (2,) or (S, 2), got ", span_arr.shape.size(),
        " dimensions with ", span_flat.size(), " entries"));
  std::vector<pdrop::ImageSpan> spans;
  for (std::size_t i = 0; i < span_flat.size(); i += 2)
    spans.push_back({span_flat[i], span_flat[i + 1]});
  if (counts.size() != spans.size())
    throw pdrop::invalid_argument(pdrop::detail::concat(
        "keep.npy: expected one count per image span (", spans.size(), "), got ",
        counts.size()));

  std::vector<float> scores;
  std::vector<std::int64_t> kept;
  if (q.is_half() && k.is_half())
    score_case<pdrop::half, pdrop::half>(q, pos, k, spans, counts, scores, kept);
  else if (q.is_half())
    score_case<pdrop::half, float>(q, pos, k, spans, counts, scores, kept);
  else if (k.is_half())
    score_case<float, pdrop::half>(q, pos, k, spans, counts, scores, kept);
  else
    score_case<float, float>(q, pos, k, spans, counts, scores, kept);

  fs::create_directories(out);
  Outputs files{out, {}};
  files.add("scores.npy", [&](const std::string& p) {
    npy::write(p, {static_cast<std::int64_t>(scores.size())}, scores.data());
  });
  files.add("kept.npy", [&](const std::string& p) {
    npy::write(p, {static_cast<std::int64_t>(kept.size())}, kept.data());
  });
  files.commit();
}

void run_pipeline(const fs::path& in, const fs::path& out) {
  const pdrop_host::PipelineCase pc = pdrop_host::load_pipeline_case(in);
  const pdrop_host::PipelineOutputs res = pdrop_host::run_pipeline_case(pc);
  fs::create_directories(out);
  Outputs files{out, {}};
  for (std::size_t j = 0; j < res.kept.size(); ++j)
    files.add("kept_" + std::to_string(j) + ".npy", [&](const std::string& p) {
      npy::write(p, {static_cast<std::int64_t>(res.kept[j].size())}, res.kept[j].data());
    });
  files.add("prefill_out.npy", [&](const std::string& p) {
    npy::write(p, {res.prefill_out.rows(), res.prefill_out.cols()}, res.prefill_out.data());
  });
  files.add("decode_out.npy", [&](const std::string& p) {
    npy::write(p, {res.decode_out.rows(), res.decode_out.cols()}, res.decode_out.data());
  });
  files.add("decode_pos.npy", [&](const std::string& p) {
    npy::write(p, {pc.decode_embeds.rows(), pc.weights.cfg.layers}, res.decode_pos.data());
  });
  files.commit();
}

// One line: newlines of nested messages flattened.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty()) usage_error("no mode given");
    if (args[0] == "score") {
      if (args.size() != 3) usage_error("score takes CASE_DIR OUT_DIR");
      run_score(args[1], args[2]);
    } else if (args[0] == "pipeline") {
      if (args.size() != 3) usage_error("pipeline takes CASE_DIR OUT_DIR");
      run_pipeline(args[1], args[2]);
    } else {
      usage_error("unknown mode '" + args[0] + "'");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pdrop-replay: %s\n", one_line(e.what()).c_str());
    return 1;
  }
  return 0;
}
