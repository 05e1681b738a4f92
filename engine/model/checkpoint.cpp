#include "engine/model/checkpoint.h"
#include "engine/model/optimizer.h"
#include "engine/io/safetensors.h"
#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace mdps {

std::string float_to_text(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", double(v));
  return buf;
}

namespace {

void add_model(SafeTensorsWriter& w, const UNet& net, const char* kind) {
  w.set_metadata("unet_config", net.config().to_json());
  w.set_metadata("mdps_kind", kind);
  w.set_metadata("mdps_version", MDPS_VERSION);
  for (const auto& p : net.params()) w.add(p.name, p.var.value);
}

const std::string& meta(const SafeTensorsFile& f, const std::string& key) {
  auto it = f.metadata().find(key);
  MDPS_CHECK(it != f.metadata().end(), f.path(), ": checkpoint metadata has no '", key, "'");
  return it->second;
}

int64_t meta_int(const SafeTensorsFile& f, const std::string& key) {
  const std::string& s = meta(f, key);
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  MDPS_CHECK(!s.empty() && end && *end == 0 && errno == 0, f.path(), ": checkpoint metadata '", key, "' = '", s,
             "' is not an integer");
  return v;
}

uint64_t meta_uint(const SafeTensorsFile& f, const std::string& key) {
  const std::string& s = meta(f, key);
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  MDPS_CHECK(!s.empty() && s[0] != '-' && end && *end == 0 && errno == 0, f.path(), ": checkpoint metadata '", key,
             "' = '", s, "' is not an unsigned integer");
  return v;
}

float meta_float(const SafeTensorsFile& f, const std::string& key) {
  const std::string& s = meta(f, key);
  char* end = nullptr;
  float v = std::strtof(s.c_str(), &end);
  MDPS_CHECK(!s.empty() && end && *end == 0, f.path(), ": checkpoint metadata '", key, "' = '", s,
             "' is not a number");
  return v;
}

}  // namespace

void save_model(const std::string& path, const UNet& net) {
  SafeTensorsWriter w;
  add_model(w, net, "model");
  w.write(path);
}

void save_checkpoint(const std::string& path, const UNet& net, const Adam& adam, const TrainState& s) {
  SafeTensorsWriter w;
  add_model(w, net, "checkpoint");
  adam.save(w);
  w.set_metadata("step", std::to_string(s.step));
  w.set_metadata("epoch", std::to_string(s.epoch));
  w.set_metadata("seed", std::to_string(s.seed));
  w.set_metadata("rng_position", std::to_string(s.rng_position));
  w.set_metadata("target_steps", std::to_string(s.target_steps));
  w.set_metadata("batch", std::to_string(s.batch));
  w.set_metadata("lr", float_to_text(s.adam.lr));
  w.set_metadata("weight_decay", float_to_text(s.adam.weight_decay));
  w.set_metadata("adamw", s.adam.decoupled ? "1" : "0");
  w.set_metadata("data", s.data);
  w.set_metadata("images", std::to_string(s.images));
  w.set_metadata("holdout", std::to_string(s.holdout));
  w.set_metadata("image_size", std::to_string(net.config().image_size));
  w.write(path);
}

TrainState read_train_state(const SafeTensorsFile& f) {
  auto kind = f.metadata().find("mdps_kind");
  MDPS_CHECK(kind != f.metadata().end() && kind->second == "checkpoint", f.path(),
             ": not a training checkpoint (mdps_kind is '",
             kind == f.metadata().end() ? std::string("missing") : kind->second,
             "'); only files written by `mdps train` can be resumed");
  TrainState s;
  s.step = meta_int(f, "step");
  s.epoch = meta_int(f, "epoch");
  s.seed = meta_uint(f, "seed");
  s.rng_position = meta_uint(f, "rng_position");
  s.target_steps = meta_int(f, "target_steps");
  s.batch = int(meta_int(f, "batch"));
  s.adam.lr = meta_float(f, "lr");
  s.adam.weight_decay = meta_float(f, "weight_decay");
  s.adam.decoupled = meta_int(f, "adamw") != 0;
  s.data = meta(f, "data");
  s.images = meta_int(f, "images");
  s.holdout = f.metadata().count("holdout") ? meta_int(f, "holdout") : 0;
  MDPS_CHECK(s.step >= 0 && s.batch > 0 && s.images > 0 && s.holdout >= 0, f.path(), ": checkpoint metadata is inconsistent (step ",
             s.step, ", batch ", s.batch, ", images ", s.images, ")");
  return s;
}

void load_checkpoint(const SafeTensorsFile& f, UNet& net, Adam& adam) {
  net.load(f);
  adam.load(f);
}

}  // namespace mdps
