#include "engine/detect/presets.h"
#include "engine/core/common.h"
#include "engine/core/file_checks.h"
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace mdps {
namespace {
std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}
}  // namespace

PresetValues read_preset(const std::string& path) {
  require_regular_file(path, "preset");  // a FIFO would block the read below
  std::ifstream in(path);
  MDPS_CHECK(in.good(), "preset '", path, "': cannot be read");
  PresetValues out;
  std::string line;
  int no = 0;
  while (std::getline(in, line)) {
    ++no;
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';' || t[0] == '[') continue;
    size_t eq = t.find('=');
    MDPS_CHECK(eq != std::string::npos, "preset '", path, "' line ", no, ": expected 'key = value', got '", t, "'");
    std::string key = trim(t.substr(0, eq)), value = trim(t.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    MDPS_CHECK(!key.empty() && !value.empty(), "preset '", path, "' line ", no, ": empty key or value");
    out.emplace_back(key, value);
  }
  return out;
}

std::vector<std::string> preset_search_dirs(const std::string& compiled_in_dir) {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("MDPS_PRESET_DIR"); env && *env) dirs.push_back(env);
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path d = exe.parent_path();
    dirs.push_back((d.parent_path() / "share" / "mdps" / "presets").string());
    dirs.push_back((d / "presets").string());
    dirs.push_back((d.parent_path() / "presets").string());
  }
  if (!compiled_in_dir.empty()) dirs.push_back(compiled_in_dir);
  return dirs;
}

std::string find_preset(const std::string& name, const std::vector<std::string>& dirs) {
  std::error_code ec;
  if (fs::is_regular_file(name, ec)) return name;
  std::string rel = name;
  if (fs::path(rel).extension() != ".ini") rel += ".ini";
  for (const auto& d : dirs) {
    fs::path p = fs::path(d) / rel;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  return "";
}

}  // namespace mdps
