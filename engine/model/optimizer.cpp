#include "engine/model/optimizer.h"
#include "engine/core/trace.h"
#include "engine/io/safetensors.h"

namespace mdps {

Adam::Adam(UNet& model, const AdamParams& params) : model_(model), params_(params) {
  MemCategoryScope scope(MemCategory::Optimizer);
  for (auto& p : model_.params()) {
    m_.push_back(Tensor::zeros(p.var.value.shape(), model_.backend()));
    v_.push_back(Tensor::zeros(p.var.value.shape(), model_.backend()));
  }
}

void Adam::step() {
  trace::Scope ts("adam.step");
  if (ts.active()) ts.num("parameters", double(model_.parameter_count()));
  ++step_;
  auto& ps = model_.params();
  for (size_t i = 0; i < ps.size(); ++i) {
    Var& p = ps[i].var;
    MDPS_CHECK(p.cell, "Adam: parameter ", ps[i].name, " does not collect gradients (training mode is off)");
    if (!p.cell->grad.defined()) continue;  // no gradient reached it (as torch skips None grads)
    model_.backend().adam_update(p.value, p.cell->grad, m_[i], v_[i], params_, step_);
  }
}

void Adam::save(SafeTensorsWriter& w) const {
  auto& ps = model_.params();
  for (size_t i = 0; i < ps.size(); ++i) {
    w.add("optim.m." + ps[i].name, m_[i]);
    w.add("optim.v." + ps[i].name, v_[i]);
  }
  w.add_i64("optim.step", {1}, {step_});
}

void Adam::load(const SafeTensorsFile& f) {
  MDPS_CHECK(f.has("optim.step"), f.path(), ": no optimiser state (optim.step) in this checkpoint");
  auto& ps = model_.params();
  for (size_t i = 0; i < ps.size(); ++i) {
    for (auto [prefix, dst] : {std::pair<const char*, Tensor*>{"optim.m.", &m_[i]}, {"optim.v.", &v_[i]}}) {
      std::string name = prefix + ps[i].name;
      MDPS_CHECK(f.has(name), f.path(), ": optimiser state '", name, "' is missing");
      MDPS_CHECK(f.info(name).shape == dst->shape(), f.path(), ": optimiser state '", name, "' has shape ",
                 shape_str(f.info(name).shape), ", expected ", shape_str(dst->shape()));
      dst->copy_from(f.read_weights(name));
    }
  }
  step_ = f.read_i64("optim.step").at(0);
}

}  // namespace mdps
