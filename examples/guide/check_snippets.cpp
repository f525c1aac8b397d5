// Checks that documents quote their code from examples/guide/, whose
// programs run it: every fenced C++ or C block of a Markdown file (```cpp,
// ```c; others, such as ```sh or ```cmake, are not code to compile) must
// follow a line naming `examples/guide/<file>.cpp` (or .c), and every code
// example of a header comment must come right below a comment line naming
// one; each must equal a region of that file marked
//   // [snippet NAME]  ...  // [/snippet NAME]     (or /* [snippet NAME] */)
// (dedented), and every marked region of a file the documents name must be
// quoted by one of them. Exit status 0 when all of that holds.
//
//   pdrop-guide-snippets examples/guide docs/integration.md
//   pdrop-guide-snippets examples/guide README.md include/pdrop/*.hpp
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
// Regions may nest: an inner region's lines belong to the outer one too,
// its marker lines to neither.
std::map<std::string, std::string> snippets(const std::string& path) {
  const std::regex open(R"(\s*(?://|/\*) \[snippet (\w+)\]( \*/)?\s*)"),
      close(R"(\s*(?://|/\*) \[/snippet (\w+)\]( \*/)?\s*)");
  std::map<std::string, std::string> out;
  std::vector<std::pair<std::string, std::vector<std::string>>> open_regions;
  std::smatch m;
  for (const std::string& l : read_lines(path)) {
    if (std::regex_match(l, m, open)) {
      open_regions.push_back({m[1], {}});
    } else if (std::regex_match(l, m, close)) {
      if (open_regions.empty() || m[1] != open_regions.back().first)
        throw std::runtime_error(path + ": [/snippet " + std::string(m[1]) + "] closes nothing");
      const auto body = open_regions.back().second;
      open_regions.pop_back();
      std::size_t indent = std::string::npos;
      for (const auto& b : body)
        if (b.find_first_not_of(' ') != std::string::npos)
          indent = std::min(indent, b.find_first_not_of(' '));
      std::string text;
      for (const auto& b : body) text += (b.size() >= indent ? b.substr(indent) : std::string()) + "\n";
      out[m[1]] = text;
    } else {
      for (auto& region : open_regions) region.second.push_back(l);
    }
  }
  if (!open_regions.empty())
    throw std::runtime_error(path + ": [snippet " + open_regions.back().first + "] never closed");
  return out;
}

// One fenced or comment code block of a document: its text and where it is.
struct Block {
  std::size_t line;
  std::string file;  // the examples/guide file its introduction names ("" if none)
  std::string text;
};

const std::regex& names_file() {
  static const std::regex r(R"(examples/guide/(\w+\.(?:cpp|c))\b)");
  return r;
}

// Markdown: every ```cpp or ```c block, introduced by the last non-empty
// line before it (other languages, such as ```sh or ```cmake, are not code
// to compile).
std::vector<Block> markdown_blocks(const std::vector<std::string>& doc) {
  std::vector<Block> out;
  std::string last_text;  // the last non-empty line outside a block
  for (std::size_t i = 0; i < doc.size(); ++i) {
    if (doc[i].rfind("```", 0) != 0) {
      if (doc[i].find_first_not_of(' ') != std::string::npos) last_text = doc[i];
      continue;
    }
    const std::string lang = doc[i].substr(3);
    Block b{i + 1, "", ""};
    std::size_t j = i + 1;
    for (; j < doc.size() && doc[j].rfind("```", 0) != 0; ++j) b.text += doc[j] + "\n";
    std::smatch m;
    if (lang == "cpp" || lang == "c") {
      if (std::regex_search(last_text, m, names_file())) b.file = m[1];
      out.push_back(b);
    }
    i = j;
    last_text.clear();
  }
  return out;
}

// A header: a comment line naming examples/guide/<file> introduces the
// code example right below it, every following line that starts with
// "//   " (without the "//", dedented); an example has no blank lines.
// A comment line that reads as a statement (a call ending with ';') outside
// such an example is reported as an example nobody compiles.
std::vector<Block> header_blocks(const std::vector<std::string>& doc) {
  static const std::regex statement(R"(//\s{3,}\S.*\w\(.*\);\s*(//.*)?)");
  std::vector<Block> out;
  std::smatch m;
  for (std::size_t i = 0; i < doc.size(); ++i) {
    if (std::regex_match(doc[i], statement)) {
      out.push_back(Block{i + 1, "", doc[i] + "\n"});
      continue;
    }
    if (doc[i].rfind("//", 0) != 0 || !std::regex_search(doc[i], m, names_file())) continue;
    Block b{i + 2, m[1], ""};
    std::vector<std::string> body;
    std::size_t j = i + 1;
    for (; j < doc.size() && doc[j].rfind("//   ", 0) == 0; ++j) body.push_back(doc[j].substr(2));
    std::size_t indent = std::string::npos;
    for (const auto& l : body) indent = std::min(indent, l.find_first_not_of(' '));
    for (const auto& l : body) b.text += l.substr(indent) + "\n";
    if (!body.empty()) out.push_back(b);
    i = j - 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: pdrop-guide-snippets GUIDE_DIR DOC.md|HEADER.hpp...\n");
    return 2;
  }
  try {
    const std::string dir = argv[1];
    std::map<std::string, std::map<std::string, std::string>> files;
    std::set<std::pair<std::string, std::string>> quoted;
    int bad = 0, blocks = 0;
    for (int a = 2; a < argc; ++a) {
      const std::string path = argv[a];
      const auto doc = read_lines(path);
      const bool header = path.size() > 4 && path.compare(path.size() - 4, 4, ".hpp") == 0;
      for (const Block& b : header ? header_blocks(doc) : markdown_blocks(doc)) {
        ++blocks;
        if (b.file.empty()) {
          std::printf("%s:%zu: code block not introduced by examples/guide/<file>.cpp or .c\n",
                      path.c_str(), b.line);
          ++bad;
          continue;
        }
        if (!files.count(b.file)) files[b.file] = snippets(dir + "/" + b.file);
        bool found = false;
        for (const auto& [name, text] : files[b.file])
          if (text == b.text) {
            found = true;
            quoted.insert({b.file, name});
          }
        if (!found) {
          std::printf("%s:%zu: code block is no marked snippet of %s\n", path.c_str(), b.line,
                      b.file.c_str());
          ++bad;
        }
      }
    }
    for (const auto& [file, marks] : files)
      for (const auto& [name, text] : marks)
        if (!quoted.count({file, name})) {
          std::printf("%s: snippet %s is not quoted in the documents\n", file.c_str(),
                      name.c_str());
          ++bad;
        }
    std::printf("snippets: %d code blocks, %zu files: %s\n", blocks, files.size(),
                bad ? "WRONG" : "ok");
    return bad ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pdrop-guide-snippets: %s\n", e.what());
    return 1;
  }
}
