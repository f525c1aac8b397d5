// pdrop-flops: what a PyramidDrop schedule saves on a model, by pdrop's
// FLOPs and memory model (pdrop/flops.hpp).
//
//   pdrop-flops [--preset NAME | --layers L --hidden D --ffn M --heads H
//                [--kv-heads K] [--head-dim d] --image-tokens N0]
//               [--stages S --lambda X | --drop-layers l1,l2,... --ratios r1,r2,...]
//               [--image-tokens N0] [--text-tokens T] [--kv-bytes B]
//               [--help] [--version]
//
// Prints the shape and the schedule, the image tokens of each stage, then
// the paper's image-token prefill FLOPs (one line, "image-token prefill
// TFLOPs: dense X.XX, pruned Y.YY (Z.Z% fewer)"), the whole-sequence prefill
// FLOPs (text included) and the KV-cache size after prefill, dense vs pruned.
// On a bad flag or value: one line on stderr, exit status 1 (examples/cli.hpp).
#include <pdrop/flops.hpp>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"

namespace {

constexpr const char* kDescription =
    "Prefill FLOPs and KV-cache size of a PyramidDrop schedule, dense vs pruned.\n"
    "\n"
    "Model: --preset, or an explicit shape (--layers, --hidden, --ffn, --heads and\n"
    "--image-tokens; --kv-heads and --head-dim optional), not both.\n"
    "Schedule: a pyramid (--stages, --lambda), or explicit lists (--drop-layers\n"
    "with --ratios), not both.\n"
    "\n"
    "Counts (one multiply-add = one FLOP; scoring not counted):\n"
    "  image-token: the paper's (PyramidDrop, arXiv 2410.17247): image tokens\n"
    "    only, per layer 4*n*D^2 + 2*n^2*D + 3*n*D*M with n the stage's tokens.\n"
    "  whole-sequence: t = T + n tokens per layer, GQA-aware:\n"
    "    2*t*D*(H*d) + 2*t*D*(K*d) + 2*t^2*H*d + 3*t*D*M.\n"
    "  KV cache: sum over layers of t * 2 * K * d * B bytes.";

using pdrop_cli::usage_error;

// "a, b, c", or "none" for an empty list.
template <class Strings>
std::string join(const Strings& v) {
  std::string out;
  for (const std::string& x : v) out += (out.empty() ? "" : ", ") + x;
  return out.empty() ? "none" : out;
}

// The command line as parsed; an optional is set when its flag was given.
struct Args {
  std::string preset = "llava-1.5-7b";
  bool preset_given = false;
  std::optional<std::int64_t> layers, hidden, ffn, heads, kv_heads, head_dim, image_tokens;
  std::int64_t stages = 4;
  double lambda = 0.5;
  bool stages_given = false, lambda_given = false;
  std::vector<std::int64_t> drop_layers;
  std::vector<double> ratios;
  bool drop_layers_given = false, ratios_given = false;
  std::int64_t text_tokens = 60, kv_bytes = 2;
};

struct Setup {
  std::string model_name;
  pdrop::ModelShape shape;
  std::int64_t image_tokens = 0;
  std::string schedule_name;
  std::optional<pdrop::Schedule> schedule;
  std::int64_t text_tokens = 60;
  std::int64_t kv_bytes = 2;
};

Setup build(const Args& a) {
  Setup s;
  // Model.
  const bool explicit_shape =
      a.layers || a.hidden || a.ffn || a.heads || a.kv_heads || a.head_dim;
  if (explicit_shape) {
    if (a.preset_given) throw usage_error("--preset cannot be combined with an explicit shape");
    if (!a.layers) throw usage_error("an explicit shape needs --layers");
    if (!a.hidden) throw usage_error("an explicit shape needs --hidden");
    if (!a.ffn) throw usage_error("an explicit shape needs --ffn");
    if (!a.heads) throw usage_error("an explicit shape needs --heads");
    if (!a.image_tokens) throw usage_error("an explicit shape needs --image-tokens");
    s.model_name = "explicit shape";
    s.shape.layers = *a.layers;
    s.shape.hidden = *a.hidden;
    s.shape.ffn = *a.ffn;
    s.shape.heads = *a.heads;
    s.shape.kv_heads = a.kv_heads ? *a.kv_heads : *a.heads;
    s.shape.head_dim = a.head_dim ? *a.head_dim : 0;
    s.image_tokens = *a.image_tokens;
  } else {
    const pdrop::ModelPreset p = pdrop::model_preset(a.preset);
    s.model_name = p.name;
    s.shape = p.shape;
    s.image_tokens = a.image_tokens ? *a.image_tokens : p.image_tokens;
  }
  // Check the shape here, so that a bad one is reported before the schedule.
  pdrop::resolved_head_dim(s.shape);

  // Schedule.
  if (a.drop_layers_given || a.ratios_given) {
    if (a.stages_given || a.lambda_given)
      throw usage_error("--drop-layers/--ratios cannot be combined with --stages/--lambda");
    if (!a.drop_layers_given) throw usage_error("--ratios needs --drop-layers");
    if (!a.ratios_given) throw usage_error("--drop-layers needs --ratios");
    s.schedule = pdrop::Schedule::from_lists(s.shape.layers, a.drop_layers, a.ratios);
    s.schedule_name = "explicit";
  } else {
    s.schedule = pdrop::Schedule::pyramid(s.shape.layers, a.stages, a.lambda);
    char buf[96];
    std::snprintf(buf, sizeof buf, "pyramid, %lld stages, lambda %g",
                  static_cast<long long>(a.stages), a.lambda);
    s.schedule_name = buf;
  }
  s.text_tokens = a.text_tokens;
  s.kv_bytes = a.kv_bytes;
  return s;
}

std::string format_g(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

void run(const Setup& s) {
  const pdrop::ModelShape& m = s.shape;
  const pdrop::Schedule& sch = *s.schedule;
  // Every count first: a bad value throws before anything is printed.
  const auto image = pdrop::image_token_flops(m, sch, s.image_tokens);
  const auto seq = pdrop::sequence_flops(m, sch, s.image_tokens, s.text_tokens);
  const auto kv =
      pdrop::kv_cache_bytes(m, sch, s.image_tokens, s.text_tokens, s.kv_bytes);
  const std::int64_t hd = pdrop::resolved_head_dim(m);

  std::printf("model: %s: L %lld, D %lld, M %lld, H %lld, Hkv %lld, head dim %lld\n",
              s.model_name.c_str(), static_cast<long long>(m.layers),
              static_cast<long long>(m.hidden), static_cast<long long>(m.ffn),
              static_cast<long long>(m.heads), static_cast<long long>(m.kv_heads),
              static_cast<long long>(hd));
  std::vector<std::string> drops, ratios;
  for (const std::int64_t l : sch.drop_layers()) drops.push_back(std::to_string(l));
  for (const double r : sch.ratios()) ratios.push_back(format_g(r));
  std::printf("schedule: %s: drops after layers %s; ratios %s\n", s.schedule_name.c_str(),
              join(drops).c_str(), join(ratios).c_str());
  std::printf("image tokens per stage (N0 %lld):",
              static_cast<long long>(s.image_tokens));
  for (std::int64_t j = 0; j < sch.num_stages(); ++j) {
    const std::int64_t first =
        j == 0 ? 1 : sch.drop_layers()[static_cast<std::size_t>(j - 1)] + 1;
    const std::int64_t last = j + 1 < sch.num_stages()
                                  ? sch.drop_layers()[static_cast<std::size_t>(j)]
                                  : sch.num_layers();
    std::printf("%s %lld (layers %lld-%lld)", j == 0 ? "" : ",",
                static_cast<long long>(sch.image_tokens(s.image_tokens, j)),
                static_cast<long long>(first), static_cast<long long>(last));
  }
  std::printf("\n");
  std::printf("image-token prefill TFLOPs: dense %.2f, pruned %.2f (%.1f%% fewer)\n",
              image.dense / 1e12, image.pruned / 1e12, 100.0 * image.reduction());
  std::printf(
      "whole-sequence prefill TFLOPs (text included: %lld text tokens + image tokens, "
      "GQA-aware): dense %.2f, pruned %.2f (%.1f%% fewer)\n",
      static_cast<long long>(s.text_tokens), seq.dense / 1e12, seq.pruned / 1e12,
      100.0 * seq.reduction());
  const double mib = 1024.0 * 1024.0;
  std::printf(
      "KV cache after prefill (text included, %lld bytes/element): dense %.1f MiB, "
      "pruned %.1f MiB (%.1f%% less)\n",
      static_cast<long long>(s.kv_bytes), kv.dense / mib, kv.pruned / mib,
      100.0 * kv.reduction());
  std::printf(
      "(one multiply-add = one FLOP; image-token count = PyramidDrop's, text "
      "excluded; scoring not counted)\n");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription};
  pdrop_cli::setup(app, "pdrop-flops");
  Args a;
  // Flags whose value, when not given, comes from the preset or another flag.
  std::int64_t layers = 0, hidden = 0, ffn = 0, heads = 0, kv_heads = 0, head_dim = 0,
               image_tokens = 0;
  const auto count = pdrop_cli::integer_at_least(1);
  auto* preset = app.add_option("--preset", a.preset,
                                "model preset, one of: " + join(pdrop::model_preset_names()))
                     ->type_name("NAME")
                     ->check(CLI::Validator(
                         [](std::string& name) -> std::string {
                           for (const std::string& n : pdrop::model_preset_names())
                             if (n == name) return "";
                           return "'" + name + "' is not a preset (one of: " +
                                  join(pdrop::model_preset_names()) + ")";
                         },
                         "", "preset"));
  auto* o_image_tokens =
      app.add_option("--image-tokens", image_tokens,
                     "image tokens before any drop (default: the preset's)")
          ->type_name("N0")->check(count)->default_str("");
  auto* o_layers =
      app.add_option("--layers", layers, "decoder layers (explicit shape)")
          ->type_name("L")
          ->check(CLI::Validator(
              [](std::string& text) -> std::string {
                std::string why = pdrop_cli::check_integer(text, 1);
                if (!why.empty() && text.find(',') != std::string::npos)
                  why += "; --layers is the layer count, drop points are --drop-layers";
                return why;
              },
              "", "layers"))
          ->default_str("");
  auto* o_hidden = app.add_option("--hidden", hidden, "hidden size D (explicit shape)")
                       ->type_name("D")->check(count)->default_str("");
  auto* o_ffn = app.add_option("--ffn", ffn, "FFN (SwiGLU) intermediate size M (explicit shape)")
                    ->type_name("M")->check(count)->default_str("");
  auto* o_heads = app.add_option("--heads", heads, "query heads H (explicit shape)")
                      ->type_name("H")->check(count)->default_str("");
  auto* o_kv_heads =
      app.add_option("--kv-heads", kv_heads,
                     "key/value heads K (explicit shape; default H, GQA when K < H)")
          ->type_name("K")->check(count)->default_str("");
  auto* o_head_dim = app.add_option("--head-dim", head_dim, "head dim (explicit shape; default D / H)")
                         ->type_name("d")->check(count)->default_str("");
  auto* o_stages = app.add_option("--stages", a.stages,
                                  "pyramid stages; drops after layers k*floor(L/S)")
                       ->type_name("S")->check(count);
  auto* o_lambda = app.add_option("--lambda", a.lambda,
                                  "pyramid ratio: stage k keeps X^k of the image tokens")
                       ->type_name("X")->check(pdrop_cli::finite_number());
  auto* o_drop_layers =
      app.add_option("--drop-layers", a.drop_layers,
                     "explicit drop points, 1-based (\"after layer l\"); with --ratios")
          ->type_name("l1,l2,...")->delimiter(',')->check(pdrop_cli::integer_at_least(0))
          ->default_str("");
  auto* o_ratios = app.add_option("--ratios", a.ratios,
                                  "explicit kept fractions of N0 after each drop; with --drop-layers")
                       ->type_name("r1,r2,...")->delimiter(',')->check(pdrop_cli::finite_number())
                       ->default_str("");
  app.add_option("--text-tokens", a.text_tokens,
                 "text tokens (system prompt + question); the whole-sequence count and the "
                 "KV cache include them, the paper's image-token count does not")
      ->type_name("T")->check(pdrop_cli::integer_at_least(0));
  app.add_option("--kv-bytes", a.kv_bytes, "bytes per cached K/V element (2: fp16/bf16)")
      ->type_name("B")->check(count);
  return pdrop_cli::run(app, argc, argv, [&] {
    auto given = [](const CLI::Option* o, std::int64_t v) {
      return o->count() ? std::optional<std::int64_t>(v) : std::nullopt;
    };
    a.preset_given = preset->count() > 0;
    a.layers = given(o_layers, layers);
    a.hidden = given(o_hidden, hidden);
    a.ffn = given(o_ffn, ffn);
    a.heads = given(o_heads, heads);
    a.kv_heads = given(o_kv_heads, kv_heads);
    a.head_dim = given(o_head_dim, head_dim);
    a.image_tokens = given(o_image_tokens, image_tokens);
    a.stages_given = o_stages->count() > 0;
    a.lambda_given = o_lambda->count() > 0;
    a.drop_layers_given = o_drop_layers->count() > 0;
    a.ratios_given = o_ratios->count() > 0;
    run(build(a));
    return 0;
  });
}
