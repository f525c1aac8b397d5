// examples/host/pipeline_case.hpp - a golden `pipeline_*` case (a tiny
// LLaMA, a prompt, a schedule and decode inputs, as NPY files) loaded into
// the host, and run: prefill with PyramidDrop, then decode.
// Layout and meaning of the files: ../shared/golden/README.md.
#ifndef PDROP_EXAMPLES_HOST_PIPELINE_CASE_HPP
#define PDROP_EXAMPLES_HOST_PIPELINE_CASE_HPP

#include <pdrop/npy.hpp>
#include <pdrop/pdrop.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "host/llama.hpp"

namespace pdrop_host {

struct PipelineCase {
  Weights weights;
  Mat embeds;                         // (T0, D)
  pdrop::ImageSpan image;             // [s, s + N0)
  std::vector<std::int64_t> layer_list;
  std::vector<double> ratios;         // after each drop, no leading 1.0
  Mat decode_embeds;                  // (steps, D)
};

struct PipelineOutputs {
  std::vector<std::vector<std::int64_t>> kept;  // kept_<j>
  Mat prefill_out;                              // (T_final, D)
  Mat decode_out;                               // (steps, D)
  std::vector<std::int64_t> decode_pos;         // (steps, L), row-major
};

namespace detail {

inline pdrop::npy::array read_case(const std::filesystem::path& dir, const std::string& name,
                                   std::vector<std::int64_t> shape) {
  const auto path = (dir / name).string();
  auto a = pdrop::npy::read(path);
  if (a.shape != shape) {
    std::string want = "(", got = "(";
    for (auto x : shape) want += std::to_string(x) + ",";
    for (auto x : a.shape) got += std::to_string(x) + ",";
    throw pdrop::npy::error(path + ": expected shape " + want + ") got " + got + ")");
  }
  return a;
}

inline Mat to_mat(const pdrop::npy::array& a, std::int64_t offset, std::int64_t rows,
                  std::int64_t cols) {
  const std::vector<float> f = pdrop::npy::to_f32(a);
  return Eigen::Map<const Mat>(f.data() + offset, rows, cols);
}

}  // namespace detail

// Reads a pipeline case folder; throws pdrop::npy::error / pdrop::invalid_argument
// naming the file on any missing file, wrong dtype or wrong shape.
inline PipelineCase load_pipeline_case(const std::filesystem::path& dir) {
  using detail::read_case;
  using detail::to_mat;
  namespace npy = pdrop::npy;
  if (!std::filesystem::is_directory(dir))
    throw pdrop::invalid_argument("CASE_DIR " + dir.string() + " is not a directory");
  const auto cfg = npy::to_i64(read_case(dir, "config.npy", {5}));
  Config c;
  c.layers = cfg[0]; c.dim = cfg[1]; c.heads = cfg[2]; c.kv_heads = cfg[3]; c.ffn = cfg[4];
  if (c.layers < 1 || c.dim < 2 || c.heads < 1 || c.kv_heads < 1 || c.ffn < 1 ||
      c.dim % c.heads != 0 || c.heads % c.kv_heads != 0 || (c.dim / c.heads) % 2 != 0)
    throw pdrop::invalid_argument(pdrop::detail::concat(
        (dir / "config.npy").string(), ": inconsistent [layers, D, Hq, Hkv, F] = [", c.layers,
        ", ", c.dim, ", ", c.heads, ", ", c.kv_heads, ", ", c.ffn, "]"));
  c.rope_theta = static_cast<float>(npy::to_f32(read_case(dir, "rope_theta.npy", {1}))[0]);
  c.rms_eps = static_cast<float>(npy::to_f32(read_case(dir, "rms_eps.npy", {1}))[0]);
  const std::int64_t L = c.layers, D = c.dim, F = c.ffn, d = c.head_dim();
  const std::int64_t qw = c.heads * d, kw = c.kv_heads * d;

  PipelineCase pc;
  pc.weights.cfg = c;
  const auto attn_norm = read_case(dir, "attn_norm.npy", {L, D});
  const auto ffn_norm = read_case(dir, "ffn_norm.npy", {L, D});
  const auto wq = read_case(dir, "wq.npy", {L, qw, D});
  const auto wk = read_case(dir, "wk.npy", {L, kw, D});
  const auto wv = read_case(dir, "wv.npy", {L, kw, D});
  const auto wo = read_case(dir, "wo.npy", {L, D, qw});
  const auto wg = read_case(dir, "w_gate.npy", {L, F, D});
  const auto wu = read_case(dir, "w_up.npy", {L, F, D});
  const auto wd = read_case(dir, "w_down.npy", {L, D, F});
  for (std::int64_t l = 0; l < L; ++l) {
    Layer layer;
    layer.attn_norm = to_mat(attn_norm, l * D, 1, D).row(0).transpose();
    layer.ffn_norm = to_mat(ffn_norm, l * D, 1, D).row(0).transpose();
    layer.wq = to_mat(wq, l * qw * D, qw, D);
    layer.wk = to_mat(wk, l * kw * D, kw, D);
    layer.wv = to_mat(wv, l * kw * D, kw, D);
    layer.wo = to_mat(wo, l * D * qw, D, qw);
    layer.w_gate = to_mat(wg, l * F * D, F, D);
    layer.w_up = to_mat(wu, l * F * D, F, D);
    layer.w_down = to_mat(wd, l * D * F, D, F);
    pc.weights.layers.push_back(std::move(layer));
  }
  pc.weights.final_norm = to_mat(read_case(dir, "final_norm.npy", {D}), 0, 1, D).row(0).transpose();

  const auto embeds = npy::read((dir / "embeds.npy").string());
  if (embeds.shape.size() != 2 || embeds.shape[1] != D)
    throw pdrop::npy::error((dir / "embeds.npy").string() + ": expected shape (T0, D = " +
                            std::to_string(D) + ")");
  pc.embeds = to_mat(embeds, 0, embeds.shape[0], D);
  const auto span = npy::to_i64(read_case(dir, "image_span.npy", {2}));
  pc.image = {span[0], span[1]};
  const auto layer_list = npy::read((dir / "layer_list.npy").string());
  pc.layer_list = npy::to_i64(layer_list);
  const auto ratios = npy::read((dir / "ratios.npy").string());
  if (ratios.type != npy::dtype::f8)
    throw pdrop::npy::error((dir / "ratios.npy").string() + ": expected f8 ratios");
  const double* rp = ratios.data<double>();
  pc.ratios.assign(rp, rp + ratios.numel());
  const auto dec = npy::read((dir / "decode_embeds.npy").string());
  if (dec.shape.size() != 2 || dec.shape[1] != D)
    throw pdrop::npy::error((dir / "decode_embeds.npy").string() + ": expected shape (steps, D = " +
                            std::to_string(D) + ")");
  pc.decode_embeds = to_mat(dec, 0, dec.shape[0], D);
  return pc;
}

// Prefill with the case's schedule, then one decode step per decode embed.
inline PipelineOutputs run_pipeline_case(const PipelineCase& pc) {
  const Config& c = pc.weights.cfg;
  pdrop::Schedule schedule = pdrop::Schedule::from_lists(c.layers, pc.layer_list, pc.ratios);
  const std::int64_t steps = pc.decode_embeds.rows();
  Session session(pc.weights, std::move(schedule), steps);
  PrefillResult pre = session.prefill(pc.embeds, pc.image);
  PipelineOutputs out;
  out.kept = std::move(pre.kept);
  out.prefill_out = std::move(pre.out);
  out.decode_out.resize(steps, c.dim);
  std::vector<std::int64_t> pos;
  for (std::int64_t t = 0; t < steps; ++t) {
    out.decode_out.row(t) = session.decode(pc.decode_embeds.row(t).transpose(), &pos).transpose();
    out.decode_pos.insert(out.decode_pos.end(), pos.begin(), pos.end());
  }
  return out;
}

}  // namespace pdrop_host

#endif  // PDROP_EXAMPLES_HOST_PIPELINE_CASE_HPP
