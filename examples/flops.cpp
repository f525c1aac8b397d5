// pdrop-flops: what a PyramidDrop schedule saves on a model, by pdrop's
// FLOPs and memory model (pdrop/flops.hpp).
//
//   pdrop-flops [--preset NAME | --num-layers L --hidden D --ffn M --heads H
//                [--kv-heads K] [--head-dim d] --image-tokens N0]
//               [--stages S --lambda X | --layers l1,l2,... --ratios r1,r2,...]
//               [--image-tokens N0] [--text-tokens T] [--kv-bytes B]
//
// Prints the shape and the schedule, the image tokens of each stage, then
// the paper's image-token prefill FLOPs (one line, "image-token prefill
// TFLOPs: dense X.XX, pruned Y.YY (Z.Z% fewer)"), the whole-sequence prefill
// FLOPs (text included) and the KV-cache size after prefill, dense vs pruned.
// On a bad flag or value: one line on stderr, exit status 1.
#include <pdrop/flops.hpp>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr const char* kUsage =
    "usage: pdrop-flops [options]\n"
    "\n"
    "Prefill FLOPs and KV-cache size of a PyramidDrop schedule, dense vs pruned.\n"
    "\n"
    "Model (default: --preset llava-1.5-7b):\n"
    "  --preset NAME        one of: {presets}\n"
    "or an explicit shape (not with --preset; --num-layers, --hidden, --ffn,\n"
    "--heads and --image-tokens are then required):\n"
    "  --num-layers L       decoder layers\n"
    "  --hidden D           hidden size\n"
    "  --ffn M              FFN (SwiGLU) intermediate size\n"
    "  --heads H            query heads\n"
    "  --kv-heads K         key/value heads (default H; GQA when K < H)\n"
    "  --head-dim d         head dim (default D / H)\n"
    "  --image-tokens N0    image tokens before any drop (default: the preset's)\n"
    "\n"
    "Schedule (default: pyramid, 4 stages, lambda 0.5):\n"
    "  --stages S           pyramid stages; drops after layers k*floor(L/S)\n"
    "  --lambda X           pyramid ratio: stage k keeps X^k of the image tokens\n"
    "  --layers l1,l2,...   explicit drop points (1-based: \"after layer l\")\n"
    "  --ratios r1,r2,...   explicit kept fractions of N0 after each drop\n"
    "\n"
    "Whole-sequence count and KV cache:\n"
    "  --text-tokens T      non-image prompt tokens (system prompt + question),\n"
    "                       counted by the whole-sequence FLOPs and the KV cache\n"
    "                       only; the paper's image-token count excludes text\n"
    "                       (default 60)\n"
    "  --kv-bytes B         bytes per cached K/V element (default 2: fp16/bf16)\n"
    "  --help               this text\n"
    "\n"
    "Counts (one multiply-add = one FLOP; scoring not counted):\n"
    "  image-token: the paper's (PyramidDrop, arXiv 2410.17247): image tokens\n"
    "    only, per layer 4*n*D^2 + 2*n^2*D + 3*n*D*M with n the stage's tokens.\n"
    "  whole-sequence: t = T + n tokens per layer, GQA-aware:\n"
    "    2*t*D*(H*d) + 2*t*D*(K*d) + 2*t^2*H*d + 3*t*D*M.\n"
    "  KV cache: sum over layers of t * 2 * K * d * B bytes.\n";

// Thrown for a bad command line; main prints it on one line.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

std::int64_t parse_int(const std::string& flag, const std::string& text) {
  std::int64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end)
    throw usage_error(flag + ": '" + text + "' is not an integer");
  return v;
}

double parse_double(const std::string& flag, const std::string& text) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0])))
    throw usage_error(flag + ": '" + text + "' is not a number");
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end != text.c_str() + text.size() || !std::isfinite(v))
    throw usage_error(flag + ": '" + text + "' is not a finite number");
  return v;
}

std::vector<std::string> split_commas(const std::string& flag, const std::string& text) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    parts.push_back(text.substr(start, comma - start));
    if (parts.back().empty())
      throw usage_error(flag + ": '" + text + "' has an empty entry");
    if (comma == std::string::npos) return parts;
    start = comma + 1;
  }
}

// Flags that take a value; --help takes none.
const char* const kValueFlags[] = {
    "--preset",     "--stages",       "--lambda",      "--layers",  "--ratios",
    "--num-layers", "--hidden",       "--ffn",         "--heads",   "--kv-heads",
    "--head-dim",   "--image-tokens", "--text-tokens", "--kv-bytes"};

bool is_value_flag(const std::string& f) {
  for (const char* k : kValueFlags)
    if (f == k) return true;
  return false;
}

// "--flag value" and "--flag=value", each flag at most once.
std::map<std::string, std::string> parse_flags(const std::vector<std::string>& args,
                                               bool& help) {
  std::map<std::string, std::string> flags;
  help = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::optional<std::string> value;
    if (const std::size_t eq = flag.find('=');
        flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    if (flag == "--help" || flag == "-h") {
      if (value) throw usage_error(flag + " takes no value");
      help = true;
      continue;
    }
    if (!is_value_flag(flag)) {
      if (flag.rfind("-", 0) == 0) throw usage_error("unknown flag '" + flag + "'");
      throw usage_error("unexpected argument '" + flag + "'");
    }
    if (!value) {
      if (i + 1 >= args.size()) throw usage_error(flag + " needs a value");
      value = args[++i];
    }
    if (!flags.emplace(flag, *value).second) throw usage_error(flag + " given twice");
  }
  return flags;
}

struct Setup {
  std::string model_name;
  pdrop::ModelShape shape;
  std::int64_t image_tokens = 0;
  std::string schedule_name;
  std::optional<pdrop::Schedule> schedule;
  std::int64_t text_tokens = 60;
  std::int64_t kv_bytes = 2;
};

Setup build(std::map<std::string, std::string> flags) {
  Setup s;
  auto take = [&](const char* name) -> std::optional<std::string> {
    const auto it = flags.find(name);
    if (it == flags.end()) return std::nullopt;
    std::string v = it->second;
    flags.erase(it);
    return v;
  };
  auto take_int = [&](const char* name) -> std::optional<std::int64_t> {
    if (auto v = take(name)) return parse_int(name, *v);
    return std::nullopt;
  };

  // Model.
  const auto preset = take("--preset");
  const auto num_layers = take_int("--num-layers");
  const auto hidden = take_int("--hidden");
  const auto ffn = take_int("--ffn");
  const auto heads = take_int("--heads");
  const auto kv_heads = take_int("--kv-heads");
  const auto head_dim = take_int("--head-dim");
  const auto image_tokens = take_int("--image-tokens");
  const bool explicit_shape =
      num_layers || hidden || ffn || heads || kv_heads || head_dim;
  if (explicit_shape) {
    if (preset) throw usage_error("--preset cannot be combined with an explicit shape");
    if (!num_layers) throw usage_error("an explicit shape needs --num-layers");
    if (!hidden) throw usage_error("an explicit shape needs --hidden");
    if (!ffn) throw usage_error("an explicit shape needs --ffn");
    if (!heads) throw usage_error("an explicit shape needs --heads");
    if (!image_tokens) throw usage_error("an explicit shape needs --image-tokens");
    s.model_name = "explicit shape";
    s.shape.layers = *num_layers;
    s.shape.hidden = *hidden;
    s.shape.ffn = *ffn;
    s.shape.heads = *heads;
    s.shape.kv_heads = kv_heads ? *kv_heads : *heads;
    s.shape.head_dim = head_dim ? *head_dim : 0;
    s.image_tokens = *image_tokens;
  } else {
    const pdrop::ModelPreset p = pdrop::model_preset(preset ? *preset : "llava-1.5-7b");
    s.model_name = p.name;
    s.shape = p.shape;
    s.image_tokens = image_tokens ? *image_tokens : p.image_tokens;
  }
  // Check the shape here, so that a bad one is reported before the schedule.
  pdrop::resolved_head_dim(s.shape);

  // Schedule.
  const auto stages = take_int("--stages");
  const auto lambda_text = take("--lambda");
  const auto layers_text = take("--layers");
  const auto ratios_text = take("--ratios");
  if (layers_text || ratios_text) {
    if (stages || lambda_text)
      throw usage_error("--layers/--ratios cannot be combined with --stages/--lambda");
    if (!layers_text) throw usage_error("--ratios needs --layers");
    if (!ratios_text) throw usage_error("--layers needs --ratios");
    std::vector<std::int64_t> drops;
    for (const auto& t : split_commas("--layers", *layers_text))
      drops.push_back(parse_int("--layers", t));
    std::vector<double> ratios;
    for (const auto& t : split_commas("--ratios", *ratios_text))
      ratios.push_back(parse_double("--ratios", t));
    s.schedule =
        pdrop::Schedule::from_lists(s.shape.layers, std::move(drops), std::move(ratios));
    s.schedule_name = "explicit";
  } else {
    const std::int64_t st = stages ? *stages : 4;
    const double lambda = lambda_text ? parse_double("--lambda", *lambda_text) : 0.5;
    s.schedule = pdrop::Schedule::pyramid(s.shape.layers, st, lambda);
    char buf[96];
    std::snprintf(buf, sizeof buf, "pyramid, %lld stages, lambda %g",
                  static_cast<long long>(st), lambda);
    s.schedule_name = buf;
  }

  if (const auto t = take_int("--text-tokens")) s.text_tokens = *t;
  if (const auto b = take_int("--kv-bytes")) s.kv_bytes = *b;
  if (!flags.empty()) throw usage_error("unused flag '" + flags.begin()->first + "'");
  return s;
}

// "a, b, c", or "none" for an empty list.
std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& x : v) out += (out.empty() ? "" : ", ") + x;
  return out.empty() ? "none" : out;
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
  try {
    const std::vector<std::string> args(argv + 1, argv + argc);
    bool help = false;
    const auto flags = parse_flags(args, help);
    if (help) {
      std::string usage = kUsage;
      const std::string key = "{presets}";
      usage.replace(usage.find(key), key.size(), join(pdrop::model_preset_names()));
      std::fputs(usage.c_str(), stdout);
      return 0;
    }
    run(build(flags));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pdrop-flops: %s (see --help)\n", one_line(e.what()).c_str());
    return 1;
  }
  return 0;
}
