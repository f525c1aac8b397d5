// Checks that a Markdown file (docs/integration.md, README.md) quotes its
// code from examples/guide/: every fenced C++ or C block (```cpp, ```c;
// others, such as ```sh or ```cmake, are not code to compile) must follow a
// line naming `examples/guide/<file>.cpp` (or .c) and equal a region of
// that file marked
//   // [snippet NAME]  ...  // [/snippet NAME]     (or /* [snippet NAME] */)
// (dedented), and every marked region of a file the guide names must be
// quoted. Exit status 0 when all of that holds.
//
//   pdrop-guide-snippets docs/integration.md examples/guide
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);) lines.push_back(l);
  return lines;
}

// The marked regions of a file, by name, dedented by their least indent.
std::map<std::string, std::string> snippets(const std::string& path) {
  const std::regex open(R"(\s*(?://|/\*) \[snippet (\w+)\]( \*/)?\s*)"),
      close(R"(\s*(?://|/\*) \[/snippet (\w+)\]( \*/)?\s*)");
  std::map<std::string, std::string> out;
  std::vector<std::string> body;
  std::string name;
  std::smatch m;
  for (const std::string& l : read_lines(path)) {
    if (std::regex_match(l, m, open)) {
      name = m[1];
      body.clear();
    } else if (std::regex_match(l, m, close)) {
      if (m[1] != name) throw std::runtime_error(path + ": [/snippet " + std::string(m[1]) + "] closes nothing");
      std::size_t indent = std::string::npos;
      for (const auto& b : body)
        if (b.find_first_not_of(' ') != std::string::npos)
          indent = std::min(indent, b.find_first_not_of(' '));
      std::string text;
      for (const auto& b : body) text += (b.size() >= indent ? b.substr(indent) : std::string()) + "\n";
      out[name] = text;
      name.clear();
    } else if (!name.empty()) {
      body.push_back(l);
    }
  }
  if (!name.empty()) throw std::runtime_error(path + ": [snippet " + name + "] never closed");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: pdrop-guide-snippets GUIDE.md GUIDE_DIR\n");
    return 2;
  }
  try {
    const auto doc = read_lines(argv[1]);
    const std::string dir = argv[2];
    const std::regex names_file(R"(examples/guide/(\w+\.(?:cpp|c))\b)");
    std::map<std::string, std::map<std::string, std::string>> files;
    std::set<std::pair<std::string, std::string>> quoted;
    int bad = 0, blocks = 0;
    std::string last_text;  // the last non-empty line outside a block
    for (std::size_t i = 0; i < doc.size(); ++i) {
      if (doc[i].rfind("```", 0) != 0) {
        if (doc[i].find_first_not_of(' ') != std::string::npos) last_text = doc[i];
        continue;
      }
      const std::string lang = doc[i].substr(3);
      std::string block;
      std::size_t j = i + 1;
      for (; j < doc.size() && doc[j].rfind("```", 0) != 0; ++j) block += doc[j] + "\n";
      if (lang != "cpp" && lang != "c") {  // a shell session, CMake, output
        i = j;
        continue;
      }
      ++blocks;
      std::smatch m;
      if (!std::regex_search(last_text, m, names_file)) {
        std::printf("line %zu: code block not introduced by examples/guide/<file>.cpp or .c\n", i + 1);
        ++bad;
      } else {
        const std::string file = m[1];
        if (!files.count(file)) files[file] = snippets(dir + "/" + file);
        bool found = false;
        for (const auto& [name, text] : files[file])
          if (text == block) {
            found = true;
            quoted.insert({file, name});
          }
        if (!found) {
          std::printf("line %zu: code block is no marked snippet of %s\n", i + 1, file.c_str());
          ++bad;
        }
      }
      i = j;
      last_text.clear();
    }
    for (const auto& [file, marks] : files)
      for (const auto& [name, text] : marks)
        if (!quoted.count({file, name})) {
          std::printf("%s: snippet %s is not quoted in the guide\n", file.c_str(), name.c_str());
          ++bad;
        }
    std::printf("guide: %d code blocks, %zu files: %s\n", blocks, files.size(), bad ? "WRONG" : "ok");
    return bad ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pdrop-guide-snippets: %s\n", e.what());
    return 1;
  }
}
