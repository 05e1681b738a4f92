#include "engine/eval/protocol_dump.h"

namespace mdps {

class ProtocolDump::Recording : public NoiseSource {
 public:
  Recording(NoiseSource& inner, ProtocolDump& dump, std::string prefix)
      : inner_(inner), dump_(dump), prefix_(std::move(prefix)) {}
  void normal(Tensor& out) override {
    inner_.normal(out);
    dump_.add(cat(prefix_, "noise", k_++), out);
  }

 private:
  NoiseSource& inner_;
  ProtocolDump& dump_;
  std::string prefix_;
  int k_ = 0;
};

void ProtocolDump::add(const std::string& name, const Tensor& t) {
  if (enabled()) w_.add(name, t);
}

NoiseSource& ProtocolDump::noise(NoiseSource& inner, const std::string& prefix) {
  if (!enabled()) return inner;
  tees_.push_back(std::make_unique<Recording>(inner, *this, prefix));
  return *tees_.back();
}

void ProtocolDump::write(const std::string& settings_json, size_t batches) {
  if (!enabled()) return;
  w_.set_metadata("settings", settings_json);
  w_.set_metadata("batches", std::to_string(batches));
  w_.write(path_);
}

}  // namespace mdps
