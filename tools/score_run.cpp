#include "tools/score_run.h"
#include "engine/core/common.h"
#include "engine/core/json_mini.h"
#include "engine/eval/shard.h"
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace mdps::cli {
namespace {

std::string number_text(float v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", double(v));
  return buf;
}

// Equal values: equal exact texts (numbers exact, members in the order the
// settings table writes them).
bool same(const json::Value& a, const json::Value& b) { return json::text(a) == json::text(b); }

// A short text of a value for the error message.
std::string brief(const json::Value* v) {
  if (!v) return "(absent)";
  if (v->kind == json::Kind::Array || v->kind == json::Kind::Object) return "(a different value)";
  return json::text(*v);
}

}  // namespace

std::string score_run_record(const std::string& model, const std::string& features, float image_threshold,
                             float pixel_threshold, const std::string& settings_json) {
  json::Value s = json::parse(settings_json, "the detector's settings");
  const json::Value* protocol = s.find("protocol");
  std::string settings;
  for (const auto& [k, v] : s.members) {
    if (k == "batch" && protocol && protocol->str == "calibrated") continue;
    settings += cat(settings.empty() ? "" : ", ", json::quote(k), ": ", json::text(v));
  }
  std::string out = cat("{\"engine_version\": ", json::quote(MDPS_VERSION), ", \"model\": ", json::quote(model),
                        ", \"model_digest\": ", json::quote(file_digest(model)),
                        ", \"features\": ", features.empty() ? std::string("null") : json::quote(features),
                        ", \"features_digest\": ", features.empty() ? std::string("null") : json::quote(file_digest(features)),
                        ", \"image_threshold\": ", number_text(image_threshold),
                        ", \"pixel_threshold\": ", number_text(pixel_threshold), ", \"settings\": {", settings, "}}\n");
  json::parse(out, "score run record");  // well-formed by construction; checked
  return out;
}

void check_score_run(const std::string& record_path, const std::string& current) {
  std::ifstream in(record_path, std::ios::binary);
  MDPS_CHECK(in, "--resume: cannot read '", record_path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  const json::Value old = json::parse(ss.str(), record_path);
  const json::Value now = json::parse(current, "score run record");
  MDPS_CHECK(old.kind == json::Kind::Object, "--resume: '", record_path, "' is not a JSON object");
  std::string diffs;
  auto note = [&](const std::string& what, const json::Value* was, const json::Value* is) {
    diffs += cat(diffs.empty() ? "" : "; ", what, " was ", brief(was), ", now ", brief(is));
  };
  for (const char* k : {"model_digest", "features_digest", "image_threshold", "pixel_threshold"}) {
    const json::Value *a = old.find(k), *b = now.find(k);
    if (!a || !same(*a, *b)) {
      const std::string file_key = std::string(k) == "model_digest" ? "model" : "features";
      if (std::string(k).find("digest") != std::string::npos)
        note(cat(k, " (", brief(now.find(file_key)), ")"), a, b);
      else
        note(k, a, b);
    }
  }
  const json::Value *so = old.find("settings"), *sn = now.find("settings");
  if (!so || so->kind != json::Kind::Object) {
    note("settings", so, sn);
  } else {
    for (const auto& [k, v] : sn->members) {
      const json::Value* w = so->find(k);
      if (!w || !same(v, *w)) note(cat("setting ", k), w, &v);
    }
    for (const auto& [k, v] : so->members)
      if (!sn->find(k)) note(cat("setting ", k), &v, nullptr);
  }
  MDPS_CHECK(diffs.empty(), "--resume: the rows beside '", record_path,
             "' were scored by another detector (", diffs,
             "): resume with the same model, features, thresholds and settings, or run without --resume");
}

}  // namespace mdps::cli
