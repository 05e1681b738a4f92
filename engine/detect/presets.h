// The authors' per-category settings (spec section 6) ship as small config
// files, presets/<layout>/<category>.ini, one `key = value` per line where
// the key is a long option name of `mdps eval` without the dashes (CLI11's
// config format, so `--preset` files are also valid CLI11 configs).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace mdps {

using PresetValues = std::vector<std::pair<std::string, std::string>>;

// Keys and values in file order; '#' and ';' start comments, [sections] are
// ignored. Throws naming the file and line for anything else.
PresetValues read_preset(const std::string& path);

// The folders searched for presets, first match wins: $MDPS_PRESET_DIR, then
// share/mdps/presets and presets next to or above the executable, then the
// source tree's presets folder (compiled in by the command line).
std::vector<std::string> preset_search_dirs(const std::string& compiled_in_dir);

// `name` is a file path (used as is when it exists) or "<layout>/<category>"
// (".ini" optional) looked up in `dirs`. Returns "" when not found.
std::string find_preset(const std::string& name, const std::vector<std::string>& dirs);

}  // namespace mdps
