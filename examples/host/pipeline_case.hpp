// examples/host/pipeline_case.hpp - a replay case (a language model's
// weights, the prompt embeddings and positions its VLM computed, a schedule,
// decode inputs; NPY files written by reference/make_golden.py or
// reference/dump.py) loaded into the host, and run: prefill with the
// schedule through pdrop, then decode.
// Layout and meaning of the files: docs/golden.md.
#ifndef PDROP_EXAMPLES_HOST_PIPELINE_CASE_HPP
#define PDROP_EXAMPLES_HOST_PIPELINE_CASE_HPP

#include "npy.hpp"
#include <pdrop/pdrop.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "host/llama.hpp"

namespace pdrop_host {

// options.npy: [strategy, budget, rounding, position mode, DART pivots]
// (strategy: pdrop::Strategy's value, 0-3 or 5 = V2Drop; 4, random, has no
// cases),
// the values of pdrop::Strategy, Budget, ProbRounding and PositionMode.
struct CaseOptions {
  pdrop::Strategy strategy = pdrop::Strategy::pyramid_drop;
  pdrop::Budget budget = pdrop::Budget::per_span;
  pdrop::ProbRounding rounding = pdrop::ProbRounding::none;
  pdrop::PositionMode position_mode = pdrop::PositionMode::reindex;
  pdrop::DartOptions dart{};  // pivots, text pivots, pivot norm
  bool dart_quota = false;    // stages keep by DART's per-pivot quota
};

struct PipelineCase {
  Weights weights;
  Mat embeds;                              // (T0, D)
  std::int64_t rows = 1;                   // position rows per token: 1 or 3 (M-RoPE)
  std::vector<std::int64_t> positions;     // (T0, rows) token-major
  std::vector<pdrop::ImageSpan> images;    // sorted spans of image / video tokens
  std::vector<std::int64_t> layer_list;    // drop after these 1-based layers
  std::vector<double> ratios;              // kept fraction of N0 after each drop
  pdrop::Strategy strategy = pdrop::Strategy::pyramid_drop;
  pdrop::PositionMode position_mode = pdrop::PositionMode::reindex;
  bool dart_quota = false;                 // ratios kept by DART's per-pivot quota
  DropOptions drop;
  Mat decode_embeds;                       // (steps, D)
  std::vector<Mat> deepstack;              // Qwen3-VL: levels x (image tokens, D); empty: none
};

struct PipelineOutputs {
  std::vector<std::vector<std::int64_t>> kept;       // kept_<j>: image tokens at drop j
  std::vector<std::vector<std::int64_t>> positions;  // positions after drop j, token-major
  Mat prefill_out;                                   // (T_final, D)
  std::vector<std::int64_t> cache_len;               // (L,) after prefill
  Mat decode_out;                                    // (steps, D)
  std::vector<std::int64_t> decode_pos;              // (steps, L, rows), row-major
};

namespace detail {

inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

inline pdrop::npy::array read_case(const std::filesystem::path& dir, const std::string& name,
                                   std::vector<std::int64_t> shape, pdrop::npy::dtype type) {
  const auto path = (dir / name).string();
  if (!std::filesystem::exists(path)) throw pdrop::npy::error(path + ": missing");
  auto a = pdrop::npy::read(path);
  if (a.type != type)
    throw pdrop::npy::error(path + ": expected " + pdrop::npy::dtype_name(type) + " data, got " +
                            pdrop::npy::dtype_name(a.type));
  if (a.shape.size() != shape.size())
    throw pdrop::npy::error(path + ": expected shape " + shape_string(shape) + ", got " +
                            shape_string(a.shape));
  for (std::size_t i = 0; i < shape.size(); ++i)
    if (shape[i] >= 0 && a.shape[i] != shape[i])
      throw pdrop::npy::error(path + ": expected shape " + shape_string(shape) + ", got " +
                              shape_string(a.shape));
  return a;
}

inline Mat to_mat(const pdrop::npy::array& a, std::int64_t offset, std::int64_t rows,
                  std::int64_t cols) {
  return Eigen::Map<const Mat>(a.data<float>() + offset, rows, cols);
}

inline Vec to_vec(const pdrop::npy::array& a, std::int64_t offset, std::int64_t n) {
  return Eigen::Map<const Vec>(a.data<float>() + offset, n);
}

// Positions stored (rows, T), row-major, as the host's token-major (T, rows).
inline std::vector<std::int64_t> token_major(const std::vector<std::int64_t>& p, std::int64_t rows) {
  const std::size_t T = p.size() / static_cast<std::size_t>(rows);
  std::vector<std::int64_t> out(p.size());
  for (std::size_t t = 0; t < T; ++t)
    for (std::int64_t r = 0; r < rows; ++r) out[t * rows + r] = p[r * T + t];
  return out;
}

// The host's token-major (T, rows) positions as the (rows, T) cases store.
inline std::vector<std::int64_t> rows_first(const std::vector<std::int64_t>& p, std::int64_t rows) {
  const std::size_t T = p.size() / static_cast<std::size_t>(rows);
  std::vector<std::int64_t> out(p.size());
  for (std::size_t t = 0; t < T; ++t)
    for (std::int64_t r = 0; r < rows; ++r) out[r * T + t] = p[t * rows + r];
  return out;
}

// The weights folder of a case: CASE/weights, else CASE/../weights (the
// golden cases of one architecture share one model).
inline std::filesystem::path weights_dir(const std::filesystem::path& dir) {
  if (std::filesystem::is_directory(dir / "weights")) return dir / "weights";
  if (std::filesystem::is_directory(dir / ".." / "weights")) return dir / ".." / "weights";
  throw pdrop::invalid_argument("CASE_DIR " + dir.string() +
                                ": no weights/ folder in it or beside it");
}

inline Weights load_weights(const std::filesystem::path& wdir) {
  namespace npy = pdrop::npy;
  using npy::dtype;
  const auto cfg = npy::to_i64(read_case(wdir, "config.npy", {8}, dtype::i8));
  Config c;
  c.layers = cfg[0]; c.dim = cfg[1]; c.heads = cfg[2]; c.kv_heads = cfg[3]; c.ffn = cfg[4];
  c.explicit_head_dim = cfg[5];
  c.qkv_bias = cfg[6] != 0;
  const std::int64_t rows = cfg[7];
  if (c.layers < 1 || c.dim < 2 || c.heads < 1 || c.kv_heads < 1 || c.ffn < 1 ||
      c.explicit_head_dim < 2 || c.explicit_head_dim % 2 != 0 || c.heads % c.kv_heads != 0 ||
      (rows != 1 && rows != 3) || (cfg[6] != 0 && cfg[6] != 1))
    throw pdrop::invalid_argument(pdrop::detail::concat(
        (wdir / "config.npy").string(),
        ": inconsistent [layers, D, Hq, Hkv, F, head_dim, qkv_bias, rows] = [", cfg[0], ", ",
        cfg[1], ", ", cfg[2], ", ", cfg[3], ", ", cfg[4], ", ", cfg[5], ", ", cfg[6], ", ",
        cfg[7], "]"));
  c.rope_theta = static_cast<float>(npy::to_f32(read_case(wdir, "rope_theta.npy", {1}, dtype::f8))[0]);
  c.rms_eps = static_cast<float>(npy::to_f32(read_case(wdir, "rms_eps.npy", {1}, dtype::f8))[0]);
  if (rows == 3) {
    const auto sec = npy::to_i64(read_case(wdir, "mrope_section.npy", {3}, dtype::i8));
    if (sec[0] < 0 || sec[1] < 0 || sec[2] < 0 || 2 * (sec[0] + sec[1] + sec[2]) != c.head_dim())
      throw pdrop::invalid_argument(pdrop::detail::concat(
          (wdir / "mrope_section.npy").string(), ": sections [", sec[0], ", ", sec[1], ", ",
          sec[2], "] must be >= 0 and sum to head_dim / 2 = ", c.head_dim() / 2));
    c.mrope_section = {sec[0], sec[1], sec[2]};
    // Qwen3-VL's interleaved sections; without the file, contiguous.
    if (std::filesystem::exists(wdir / "mrope_layout.npy")) {
      const auto lay = npy::to_i64(read_case(wdir, "mrope_layout.npy", {1}, dtype::i8));
      if (lay[0] != 0 && lay[0] != 1)
        throw pdrop::invalid_argument(pdrop::detail::concat(
            (wdir / "mrope_layout.npy").string(), ": ", lay[0],
            " is not 0 (sections) or 1 (interleaved)"));
      c.mrope_layout = static_cast<pdrop::MRopeLayout>(lay[0]);
    }
  }
  const std::int64_t L = c.layers, D = c.dim, F = c.ffn, d = c.head_dim();
  const std::int64_t qw = c.heads * d, kw = c.kv_heads * d;
  Weights w;
  w.cfg = c;
  const auto f4 = dtype::f4;
  const auto attn_norm = read_case(wdir, "attn_norm.npy", {L, D}, f4);
  const auto ffn_norm = read_case(wdir, "ffn_norm.npy", {L, D}, f4);
  const auto wq = read_case(wdir, "wq.npy", {L, qw, D}, f4);
  const auto wk = read_case(wdir, "wk.npy", {L, kw, D}, f4);
  const auto wv = read_case(wdir, "wv.npy", {L, kw, D}, f4);
  const auto wo = read_case(wdir, "wo.npy", {L, D, qw}, f4);
  const auto wg = read_case(wdir, "w_gate.npy", {L, F, D}, f4);
  const auto wu = read_case(wdir, "w_up.npy", {L, F, D}, f4);
  const auto wd = read_case(wdir, "w_down.npy", {L, D, F}, f4);
  npy::array bq, bk, bv, qn, kn;
  if (c.qkv_bias) {
    bq = read_case(wdir, "bq.npy", {L, qw}, f4);
    bk = read_case(wdir, "bk.npy", {L, kw}, f4);
    bv = read_case(wdir, "bv.npy", {L, kw}, f4);
  }
  // Qwen3's q/k RMSNorm over each head: both files or neither.
  const bool qk_norm = std::filesystem::exists(wdir / "q_norm.npy");
  if (qk_norm) {
    qn = read_case(wdir, "q_norm.npy", {L, d}, f4);
    kn = read_case(wdir, "k_norm.npy", {L, d}, f4);
  }
  for (std::int64_t l = 0; l < L; ++l) {
    Layer layer;
    layer.attn_norm = to_vec(attn_norm, l * D, D);
    layer.ffn_norm = to_vec(ffn_norm, l * D, D);
    layer.wq = to_mat(wq, l * qw * D, qw, D);
    layer.wk = to_mat(wk, l * kw * D, kw, D);
    layer.wv = to_mat(wv, l * kw * D, kw, D);
    if (c.qkv_bias) {
      layer.bq = to_vec(bq, l * qw, qw);
      layer.bk = to_vec(bk, l * kw, kw);
      layer.bv = to_vec(bv, l * kw, kw);
    }
    if (qk_norm) {
      layer.q_norm = to_vec(qn, l * d, d);
      layer.k_norm = to_vec(kn, l * d, d);
    }
    layer.wo = to_mat(wo, l * D * qw, D, qw);
    layer.w_gate = to_mat(wg, l * F * D, F, D);
    layer.w_up = to_mat(wu, l * F * D, F, D);
    layer.w_down = to_mat(wd, l * D * F, D, F);
    w.layers.push_back(std::move(layer));
  }
  w.final_norm = to_vec(read_case(wdir, "final_norm.npy", {D}, f4), 0, D);
  return w;
}

}  // namespace detail

// Reads an options.npy (a case's or a drop's); throws naming the file when
// it is not 5 i8 values in range.
inline CaseOptions read_case_options(const std::filesystem::path& file) {
  const auto o = pdrop::npy::to_i64(
      detail::read_case(file.parent_path(), file.filename().string(), {-1}, pdrop::npy::dtype::i8));
  if (o.size() != 5 && o.size() != 8)
    throw pdrop::invalid_argument(pdrop::detail::concat(
        file.string(), ": expected 5 or 8 options, got ", o.size()));
  // Cases without the DART extras: no text pivots, L2 norm, no quota.
  const std::int64_t text = o.size() == 8 ? o[5] : 0, norm = o.size() == 8 ? o[6] : 1,
                     quota = o.size() == 8 ? o[7] : 0;
  if (o[0] < 0 || o[0] > 5 || o[0] == 4 || o[1] < 0 || o[1] > 1 || o[2] < 0 || o[2] > 2 || o[3] < 0 ||
      o[3] > 1 || o[4] < 1 || text < 0 || norm < 0 || norm > 1 || quota < 0 || quota > 1)
    throw pdrop::invalid_argument(pdrop::detail::concat(
        file.string(), ": [strategy, budget, rounding, positions, pivots, text pivots, norm, quota] = [",
        o[0], ", ", o[1], ", ", o[2], ", ", o[3], ", ", o[4], ", ", text, ", ", norm, ", ", quota,
        "] out of range (strategy 0-3 or 5, budget 0-1, rounding 0-2, positions 0-1, pivots >= 1, "
        "text pivots >= 0, norm 0-1, quota 0-1)"));
  CaseOptions c;
  c.strategy = static_cast<pdrop::Strategy>(o[0]);
  c.budget = static_cast<pdrop::Budget>(o[1]);
  c.rounding = static_cast<pdrop::ProbRounding>(o[2]);
  c.position_mode = static_cast<pdrop::PositionMode>(o[3]);
  c.dart.pivots = o[4];
  c.dart.text_pivots = text;
  c.dart.pivot_norm = static_cast<pdrop::PivotNorm>(norm);
  c.dart_quota = quota == 1;
  return c;
}

// Reads a case folder; throws pdrop::npy::error / pdrop::invalid_argument
// naming the file on any missing file, wrong dtype, shape or value.
inline PipelineCase load_pipeline_case(const std::filesystem::path& dir) {
  using detail::read_case;
  namespace npy = pdrop::npy;
  using npy::dtype;
  if (!std::filesystem::is_directory(dir))
    throw pdrop::invalid_argument("CASE_DIR " + dir.string() + " is not a directory");
  PipelineCase pc;
  pc.weights = detail::load_weights(detail::weights_dir(dir));
  const Config& c = pc.weights.cfg;
  const std::int64_t D = c.dim;
  const auto embeds = read_case(dir, "embeds.npy", {-1, D}, dtype::f4);
  const std::int64_t T0 = embeds.shape[0];
  pc.embeds = detail::to_mat(embeds, 0, T0, D);
  const auto pos = read_case(dir, "positions.npy", {-1, T0}, dtype::i8);
  pc.rows = pos.shape[0];
  if (pc.rows != (c.mrope_section == std::array<std::int64_t, 3>{} ? 1 : 3))
    throw pdrop::invalid_argument(pdrop::detail::concat(
        (dir / "positions.npy").string(), ": ", pc.rows, " position rows for a model with ",
        c.mrope_section == std::array<std::int64_t, 3>{} ? 1 : 3));
  pc.positions = detail::token_major(npy::to_i64(pos), pc.rows);
  const auto spans = read_case(dir, "image_spans.npy", {-1, 2}, dtype::i8);
  const auto s = npy::to_i64(spans);
  for (std::size_t i = 0; i < s.size(); i += 2) pc.images.push_back({s[i], s[i + 1]});
  pc.layer_list = npy::to_i64(read_case(dir, "layer_list.npy", {-1}, dtype::i8));
  const auto ratios = read_case(dir, "ratios.npy", {static_cast<std::int64_t>(pc.layer_list.size())}, dtype::f8);
  pc.ratios.assign(ratios.data<double>(), ratios.data<double>() + ratios.numel());
  const CaseOptions o = read_case_options(dir / "options.npy");
  pc.strategy = o.strategy;
  pc.drop.budget = o.budget;
  pc.drop.score.round_probs = o.rounding;
  pc.position_mode = o.position_mode;
  pc.drop.dart = o.dart;
  pc.dart_quota = o.dart_quota;
  // Qwen3-VL's DeepStack levels, (levels, image tokens, D).
  if (std::filesystem::exists(dir / "deepstack.npy")) {
    std::int64_t n_image = 0;
    for (const auto& im : pc.images) n_image += im.length;
    const auto ds = read_case(dir, "deepstack.npy", {-1, n_image, D}, dtype::f4);
    if (ds.shape[0] >= c.layers)
      throw pdrop::invalid_argument(pdrop::detail::concat(
          (dir / "deepstack.npy").string(), ": ", ds.shape[0],
          " levels for a model of ", c.layers, " layers"));
    for (std::int64_t j = 0; j < ds.shape[0]; ++j)
      pc.deepstack.push_back(detail::to_mat(ds, j * n_image * D, n_image, D));
  }
  const auto dec = read_case(dir, "decode_embeds.npy", {-1, D}, dtype::f4);
  pc.decode_embeds = detail::to_mat(dec, 0, dec.shape[0], D);
  return pc;
}

// Prefill with the case's schedule, then one decode step per decode embed.
inline PipelineOutputs run_pipeline_case(const PipelineCase& pc) {
  const Config& c = pc.weights.cfg;
  std::vector<pdrop::KeepRule> rules(pc.ratios.begin(), pc.ratios.end());
  if (pc.dart_quota)
    for (pdrop::KeepRule& r : rules)
      r = r.with_dart_quota({pc.drop.dart.pivots, pc.drop.dart.text_pivots});
  pdrop::Schedule schedule = pdrop::Schedule::from_rules(c.layers, pc.layer_list, rules)
                                 .with_strategy(pc.strategy)
                                 .with_position_mode(pc.position_mode);
  const std::int64_t steps = pc.decode_embeds.rows();
  Session session(pc.weights, std::move(schedule), steps);
  PrefillResult pre = session.prefill(pc.embeds, pc.positions, pc.rows, pc.images, pc.drop, {},
                                      pc.deepstack);
  PipelineOutputs out;
  out.kept = std::move(pre.kept);
  out.positions = std::move(pre.positions);
  out.prefill_out = std::move(pre.out);
  for (const auto& cache : session.caches()) out.cache_len.push_back(cache.len);
  out.decode_out.resize(steps, c.dim);
  std::vector<std::int64_t> pos;
  for (std::int64_t t = 0; t < steps; ++t) {
    out.decode_out.row(t) = session.decode(pc.decode_embeds.row(t).transpose(), &pos).transpose();
    for (const std::int64_t p : pos) out.decode_pos.insert(out.decode_pos.end(), pc.rows, p);
  }
  return out;
}

}  // namespace pdrop_host

#endif  // PDROP_EXAMPLES_HOST_PIPELINE_CASE_HPP
