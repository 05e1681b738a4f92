// The flags `mdps eval`, `score`, `bundle`, `calibrate` and `sample` share: one
// per protocol setting of the table (engine/detect/setting_table.h) and
// --preset; and the progress line. Each value is kept as the text the user
// gave so that presets fill in exactly the options left unset.
#pragma once
#include "engine/eval/evaluate.h"
#include "engine/detect/presets.h"
#include "engine/detect/setting_table.h"
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <unistd.h>

#ifndef MDPS_PRESET_DIR
#define MDPS_PRESET_DIR ""
#endif

namespace mdps::cli {

struct SettingFlags {
  std::map<std::string, std::string> values;  // option name without dashes -> text
  std::map<std::string, CLI::Option*> options;
  std::string preset;

  // One flag per setting of the table (engine/detect/setting_table.h), its
  // help and default from the entry; `with_dataset` adds those that only make
  // sense over a data set (eval, bundle).
  void add_all(CLI::App* c, bool with_dataset) {
    c->add_option("--preset", preset, "settings file: mvtec/<category>, btad/<01|02|03> or a path to an .ini");
    for (const SettingEntry& e : setting_table()) {
      if (!e.key || (e.dataset_only && !with_dataset)) continue;
      options[e.key] = c->add_option(std::string("--") + e.key, values[e.key], setting_help(e));
    }
  }
  bool user_set(const std::string& key) const {
    auto it = options.find(key);
    return it != options.end() && it->second->count() > 0;
  }
  // The flags given, in table order.
  PresetValues given() const {
    PresetValues out;
    for (const SettingEntry& e : setting_table())
      if (e.key && user_set(e.key)) out.emplace_back(e.key, values.at(e.key));
    return out;
  }
  // Defaults, then `base` (a detector bundle's stored settings), then the
  // preset (explicit --preset, else `auto_preset` when it names an existing
  // file and there is no base: a bundle's settings are complete), then the
  // flags given (SettingLayers: the guidance norm follows the variant unless
  // chosen). Keeps what `s` holds beyond the settings (normal statistics,
  // --dump-intermediates). Returns the preset used ("" if none).
  std::string build(EvalSettings& s, const std::string& auto_preset = "", const PresetValues* base = nullptr) const {
    std::string used;
    auto dirs = preset_search_dirs(MDPS_PRESET_DIR);
    if (!preset.empty()) {
      used = find_preset(preset, dirs);
      std::string tried;
      for (auto& d : dirs) tried += "\n  " + d;
      MDPS_CHECK(!used.empty(), "--preset '", preset, "': not found (looked for it as a file and in:", tried, ")");
    } else if (!auto_preset.empty() && !base) {
      used = find_preset(auto_preset, dirs);
    }
    EvalSettings start = default_settings();
    start.normal = s.normal;
    start.dump_intermediates = s.dump_intermediates;
    SettingLayers layers(start);
    auto flagged = [this](const std::string& k) { return user_set(k); };
    if (base) layers.bundle(*base, flagged);
    if (!used.empty()) layers.chosen(read_preset(used), cat("preset '", used, "': "), flagged);
    layers.chosen(given());
    s = layers.finish();
    return used;
  }
};

inline std::string format_duration(double s) {
  long t = long(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  return buf;
}

// Set by an embedding that runs the commands in-process (the Python module,
// python/src/module.cpp): it then gets every command's progress instead of
// the line on stderr.
inline EvalProgressFn& progress_hook() {
  static EvalProgressFn hook;
  return hook;
}

// "[label] 16/83 images  0.52 s/image  ETA 0m35s" on stderr: redrawn in place
// on a terminal, else one line per batch.
inline EvalProgressFn progress_line(const std::string& label, bool quiet) {
  if (progress_hook()) return progress_hook();
  if (quiet) return {};
  const bool tty = isatty(fileno(stderr)) != 0;
  return [label, tty](size_t done, size_t total, double secs, int pass) {
    // Dataset scope: pass 1 is round 1 only, about a third of a full pass.
    double frac = pass == 1 ? double(done) / total / 3.0 : pass == 2 ? (1.0 + 2.0 * double(done) / total) / 3.0
                                                                     : double(done) / total;
    double eta = frac > 0 ? secs * (1.0 - frac) / frac : 0.0;
    const int width = 24;
    int fill = int(frac * width);
    std::string bar = std::string(size_t(fill), '#') + std::string(size_t(width - fill), '.');
    std::string what = pass == 1 ? " (pass 1: round 1)" : pass == 2 ? " (pass 2)" : pass == 3 ? " (feature memory)" : "";
    std::fprintf(stderr, "%s[%s] %s %zu/%zu images%s  %.2f s/image  ETA %s   %s", tty ? "\r" : "", bar.c_str(),
                 label.c_str(), done, total, what.c_str(), done ? secs / double(done) : 0.0,
                 format_duration(eta).c_str(), tty ? "" : "\n");
    if (tty && done == total && pass != 1) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
}

}  // namespace mdps::cli
