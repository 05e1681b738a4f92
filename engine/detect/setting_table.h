// Every protocol setting, defined once: one table entry per setting with its
// name, its help, how text becomes the value, how the value prints (as a
// preset/bundle value and as report.json's), and its check. Everything that
// names a setting reads this table:
//   EvalSettings::set / values / to_json / validate (engine/detect/settings.h),
//   the command-line flags (tools/eval_flags.h: one flag per entry, its help
//   with the default printed from default_settings(), never retyped),
//   presets and bundles (keys = entry keys), report.json's "settings" (the
//   entries' json keys, in table order), the library's DetectorOptions and
//   the C API (their typed fields are written as entry keys).
// A new setting is one entry here plus its field in EvalSettings.
//
// The rule "the guidance norm follows the variant" lives here too
// (SettingLayers): it is the one place that decides the norm when no layer
// of settings chose it.
#pragma once
#include "engine/detect/settings.h"
#include <functional>
#include <string>
#include <vector>

namespace mdps {

struct SettingEntry {
  // The `mdps eval` option name without dashes: the preset, bundle, override
  // and EvalSettings::set key. Null for the one report-only member
  // (normal_stats: stored beside a bundle's settings, not as one).
  const char* key;
  const char* json;  // the member name in report.json's "settings" (a contract with scripts)
  const char* help;  // what the value means; setting_help() appends the default
  // The default when it is not one value (it follows the size or another
  // setting); null: the default is printed from default_settings().
  const char* default_note;
  bool stored;        // part of a detector: in values() and thus in a bundle
  bool dataset_only;  // a flag only of the commands that evaluate a data set (eval, bundle)
  void (*parse)(EvalSettings& s, const std::string& text);  // throws UsageError naming --key
  // Text parse() reads back to the same bits ("auto" where the value follows
  // the image size under the calibrated protocol).
  std::string (*print)(const EvalSettings& s);
  std::string (*json_value)(const EvalSettings& s);  // report.json's value
  void (*check)(const EvalSettings& s);               // null: every parsed value is valid
};

// The table, in the order of report.json's "settings" members.
const std::vector<SettingEntry>& setting_table();
// The entry of `key`, or null.
const SettingEntry* find_setting(const std::string& key);
// The defaults of the command line and of the library's DetectorOptions.
EvalSettings default_settings();
// A float as the shortest text that parse() reads back to the same bits
// (0.12, not 0.119999997): how values() prints a float setting.
std::string setting_text(float v);
// "<help> (default <default>)".
std::string setting_help(const SettingEntry& e);

// The guidance norm a variant implies when none was chosen: l2 (over the
// batch, as the authors) for the authors' variant, squared for the paper's.
GuidanceNorm guidance_norm_of(Variant v);

// Ns when no layer chose it: under the calibrated protocol 2, the authors'
// released setting (1) under theirs. Measured on tire at 64x64 (bench/
// RESULTS.md, issue 18), three seeds: Ns 2 halves the image AUROC's spread
// across seeds (0.19 -> 0.09) and brings an image score's seed noise from
// 0.76 to 0.49 of the spread between images; Ns 4 adds little at the image
// level (0.42) for twice the time, but more at the pixel level.
constexpr int kCalibratedDefaultSamples = 2;
int default_samples(Protocol p);

// Settings built in layers, lowest first: a start (the defaults, or the
// library's typed fields), a detector bundle's stored settings, a preset,
// then what the user gave (flags, overrides). The guidance norm follows the
// variant unless a layer chose it: a preset or the user by giving
// guidance-norm, or the bundle while no later layer changes its variant.
// Ns follows the protocol (default_samples) unless a bundle, a preset or the
// user gave `samples`.
// The command line, `mdps sample` and the library all build this way.
class SettingLayers {
 public:
  explicit SettingLayers(const EvalSettings& start) : s_(start) {}
  using Skip = std::function<bool(const std::string& key)>;
  // A bundle's stored values; `skip` leaves out keys a later layer sets. A
  // bundle without a protocol (written before it was a setting) is the authors'.
  void bundle(const PresetValues& values, const Skip& skip = {});
  // Chosen values (a preset, flags, overrides); an error is prefixed with
  // `source` (e.g. "preset 'x.ini': ") when one is given.
  void chosen(const PresetValues& values, const std::string& source = "", const Skip& skip = {});
  // The settings with the norm rule applied, validated.
  EvalSettings finish() const;
  EvalSettings& settings() { return s_; }

 private:
  EvalSettings s_;
  bool norm_chosen_ = false, bundle_norm_ = false, variant_changed_ = false, samples_chosen_ = false;
};

}  // namespace mdps
