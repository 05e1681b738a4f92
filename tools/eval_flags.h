// The flags `mdps eval`, `mdps score` and `mdps demo` share: the protocol's
// settings (engine/eval/evaluate.h) and --preset. Each value is kept as the text
// the user gave so that presets fill in exactly the options left unset.
#pragma once
#include "engine/eval/evaluate.h"
#include "engine/detect/presets.h"
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

  void add(CLI::App* c, const std::string& key, const std::string& help) {
    options[key] = c->add_option("--" + key, values[key], help);
  }
  // The protocol flags; `eval_only` adds those that only make sense over a data set.
  void add_all(CLI::App* c, bool eval_only) {
    c->add_option("--preset", preset, "settings file: mvtec/<category>, btad/<01|02|03> or a path to an .ini");
    add(c, "protocol",
        "calibrated (scores depend only on the image and the detector) or authors (the authors' batch- and "
        "test-set-coupled code, as the presets) (default calibrated)");
    add(c, "t-start", "T of the final round (default 200)");
    add(c, "rho", "guidance weight of the final round (default 100)");
    add(c, "round1-t", "T of the mask round; 0: a single unmasked round (default 200)");
    add(c, "round1-rho", "guidance weight of the mask round (default 50)");
    add(c, "lambda", "mask threshold min + lambda (max - min) (default 0.12)");
    add(c, "samples", "Ns posterior samples per image, maps averaged (default 1)");
    add(c, "skip", "DDIM stride (default 20)");
    add(c, "ddim-eta", "DDIM noise, 1 as the authors (default 1)");
    add(c, "variant", "authors or paper (default authors)");
    add(c, "guidance-norm", "l2 (authors, over the batch) or squared (paper); default by variant");
    add(c, "eta", "weight of the pixel term in the anomaly map (default 7)");
    add(c, "blur-sigma", "Gaussian blur of the map (default: calibrated 4 S/256, authors 4)");
    add(c, "blur-kernel", "Gaussian blur kernel size (default: calibrated 33 S/256 odd >= 3, authors 33)");
    add(c, "layers", "ResNet stages of the perceptual term (default 2,3)");
    add(c, "image-score",
        "authors (softmax top-k sum), topk-mean, max (of the blurred map) or topk-fraction (mean of the top "
        "--image-score-fraction of the pixels) (default authors)");
    add(c, "image-score-k", "k of authors / topk-mean (default: calibrated 500 (S/256)^2 >= 1, authors 500)");
    add(c, "image-score-fraction", "fraction of the pixels of topk-fraction (default 0.01)");
    add(c, "batch", "evaluation batch: guidance group and eta maxima (default 8)");
    add(c, "seed", "Philox seed (default 0)");
    if (eval_only) {
      add(c, "limit", "at most N test images per type (default all)");
      add(c, "crop", "centre-crop fraction of maps and masks before the metrics (presets: 0.875)");
      add(c, "mask-scope",
          "authors protocol: image (per-image threshold) or dataset (two passes, as the authors) (default image)");
      add(c, "gt-resize",
          "ground-truth masks to the model size: bilinear (the authors: Pillow bilinear, then > 0) or nearest "
          "(default bilinear)");
    }
  }
  bool user_set(const std::string& key) const {
    auto it = options.find(key);
    return it != options.end() && it->second->count() > 0;
  }
  // Defaults, then `base` (a detector bundle's stored settings), then the
  // preset (explicit --preset, else `auto_preset` when it names an existing
  // file and there is no base: a bundle's settings are complete), then the
  // flags given. Returns the preset used ("" if none).
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
    // The guidance norm follows the variant unless it was chosen: by a flag,
    // the preset, or the bundle (when neither the preset nor a flag changed
    // the bundle's variant).
    bool norm_given = user_set("guidance-norm");
    bool base_norm = false, variant_changed = user_set("variant");
    // The protocol is the calibrated one unless chosen (by a flag, the
    // preset, or a bundle): on tire at 64x64 it measures at least as well as
    // the authors' (bench/RESULTS.md, issue 18) and its scores do not depend
    // on the other images of a run. The struct's own default stays the
    // authors' (the golden tests).
    s.protocol = Protocol::Calibrated;
    // A bundle written before the protocol was a setting ran the authors'.
    if (base && std::none_of(base->begin(), base->end(), [](const auto& kv) { return kv.first == "protocol"; }))
      s.protocol = Protocol::Authors;
    if (base)
      for (const auto& [k, v] : *base) {
        if (user_set(k)) continue;
        s.set(k, v);
        base_norm = base_norm || k == "guidance-norm";
      }
    if (!used.empty()) {
      for (const auto& [k, v] : read_preset(used)) {
        if (user_set(k)) continue;
        try {
          s.set(k, v);
        } catch (const Error& e) {
          throw Error(cat("preset '", used, "': ", e.what()));
        }
        norm_given = norm_given || k == "guidance-norm";
        variant_changed = variant_changed || k == "variant";
      }
    }
    for (const auto& [k, v] : values)
      if (user_set(k)) s.set(k, v);
    norm_given = norm_given || (base_norm && !variant_changed);
    if (!norm_given)
      s.sampler.norm = s.sampler.variant == Variant::Paper ? GuidanceNorm::Squared : GuidanceNorm::L2;
    s.validate();
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
    std::string what = pass == 1 ? " (pass 1: round 1)" : pass == 2 ? " (pass 2)" : "";
    std::fprintf(stderr, "%s[%s] %s %zu/%zu images%s  %.2f s/image  ETA %s   %s", tty ? "\r" : "", bar.c_str(),
                 label.c_str(), done, total, what.c_str(), done ? secs / double(done) : 0.0,
                 format_duration(eta).c_str(), tty ? "" : "\n");
    if (tty && done == total && pass != 1) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
}

}  // namespace mdps::cli
