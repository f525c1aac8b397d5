// Command lines of pdrop's tools (pdrop-demo, pdrop-flops, pdrop-replay),
// parsed by CLI11. Only the tools use this; the library needs no CLI11.
//
// Every tool behaves the same way:
//   --help     the flags with their defaults, on stdout; exit 0
//   --version  "<tool> <pdrop version>" on stdout; exit 0
//   a bad flag or value (unknown flag, "abc" for a count, a negative count,
//   a missing value): one line on stderr, "<tool>: <flag>: <what> (see
//   --help)", naming the flag and the value; exit 1
//   a library error (pdrop::invalid_argument, std::exception) thrown by the
//   tool's work: one line on stderr, "<tool>: <message>"; exit 1
#pragma once

#include <CLI/CLI.hpp>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>

#ifndef PDROP_VERSION
#error "PDROP_VERSION must be defined (examples/CMakeLists.txt sets it from the project version)"
#endif

namespace pdrop_cli {

// A bad combination of flags, found after parsing (e.g. "--ratios needs
// --drop-layers"): reported like a parse error.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Newlines of nested messages flattened: every error is one line.
inline std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

// "" when `text` is a whole decimal integer >= min, else why not (CLI11
// prefixes the flag's name). Checked before CLI11 converts the text.
inline std::string check_integer(const std::string& text, std::int64_t min) {
  std::int64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec == std::errc::invalid_argument || ptr != end)
    return "'" + text + "' is not an integer";
  if (ec == std::errc::result_out_of_range) return "'" + text + "' is out of range";
  if (v < min) return "'" + text + "' must be >= " + std::to_string(min);
  return "";
}

// An integer flag's check: at least `min`.
inline CLI::Validator integer_at_least(std::int64_t min) {
  return CLI::Validator(
      [min](std::string& text) { return check_integer(text, min); },
      "", "integer_at_least");
}

// "" when `text` is a finite number, else why not.
inline std::string check_number(const std::string& text) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0])))
    return "'" + text + "' is not a number";
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end != text.c_str() + text.size() || !std::isfinite(v))
    return "'" + text + "' is not a finite number";
  return "";
}

inline CLI::Validator finite_number() {
  return CLI::Validator([](std::string& text) { return check_number(text); }, "",
                        "finite_number");
}

// Help lines as "--layers INT    decoder layers (default 16)": the type
// after the flag, the default at the end of the description.
class Formatter : public CLI::Formatter {
 public:
  std::string make_option_opts(const CLI::Option* opt) const override {
    if (!opt->get_option_text().empty() || opt->get_type_size() == 0)
      return CLI::Formatter::make_option_opts(opt);
    return " " + opt->get_type_name() + (opt->get_required() ? " (required)" : "");
  }
  std::string make_option_desc(const CLI::Option* opt) const override {
    std::string desc = opt->get_description();
    if (opt->get_type_size() != 0 && !opt->get_default_str().empty())
      desc += " (default " + opt->get_default_str() + ")";
    return desc;
  }
};

// An App for `tool`, with --help, --version and every default shown.
inline void setup(CLI::App& app, const std::string& tool) {
  app.name(tool);
  app.set_help_flag("-h,--help", "print this help (flags and their defaults) and exit");
  app.set_version_flag("--version", tool + " " + PDROP_VERSION,
                       "print the tool's name and pdrop's version and exit");
  app.option_defaults()->always_capture_default();
  auto formatter = std::make_shared<Formatter>();
  formatter->column_width(28);
  app.formatter(formatter);
}

// Parses argv into `app`, then runs `body` (which returns the exit status).
// Help and version: printed on stdout, 0. Any error: one line on stderr, 1.
inline int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  const std::string tool = app.get_name();
  try {
    try {
      app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
      return app.exit(e);
    } catch (const CLI::ExtrasError& e) {
      // Name the first argument nobody took, and what it looks like.
      const auto extras = app.remaining();
      std::string what = e.what();
      if (!extras.empty())
        what = (extras[0].rfind("-", 0) == 0 && extras[0].size() > 1 ? "unknown flag '"
                                                                     : "unexpected argument '") +
               extras[0] + "'";
      std::fprintf(stderr, "%s: %s (see --help)\n", tool.c_str(), one_line(what).c_str());
      return 1;
    } catch (const CLI::ParseError& e) {
      std::fprintf(stderr, "%s: %s (see --help)\n", tool.c_str(), one_line(e.what()).c_str());
      return 1;
    }
    return body();
  } catch (const usage_error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: %s (see --help)\n", tool.c_str(), one_line(e.what()).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: %s\n", tool.c_str(), one_line(e.what()).c_str());
    return 1;
  }
}

}  // namespace pdrop_cli
