#include "engine/core/autograd.h"
#include "engine/core/trace.h"

namespace mdps {

const Tensor& Var::grad() const {
  static const Tensor none;
  return cell ? cell->grad : none;
}

Var make_leaf(Tensor value, MemCategory category) {
  Var v(std::move(value));
  v.cell = std::make_shared<GradCell>();
  v.cell->shape = v.value.shape();
  v.cell->category = category;
  return v;
}

std::shared_ptr<GradCell> Tape::record(const Shape& shape, BackwardFn fn) {
  auto cell = std::make_shared<GradCell>();
  cell->shape = shape;
  cell->category = MemCategory::Activations;
  entries_.push_back({cell, std::move(fn)});
  return cell;
}

void Tape::backward(const Var& root) {
  MDPS_CHECK(root.value.numel() == 1, "backward() without a seed needs a one-element root, got ",
             root.value.describe());
  Tensor seed = Tensor::empty(root.shape(), root.value.backend());
  seed.fill(1.f);
  backward(root, seed);
}

void Tape::backward(const Var& root, const Tensor& seed) {
  trace::Scope span("tape.backward", "span");
  if (span.active()) span.num("entries", double(entries_.size()));
  MDPS_CHECK(root.requires_grad(), "backward(): the root does not depend on anything that wants a gradient");
  MDPS_CHECK(seed.numel() == root.value.numel(), "backward(): seed ", seed.describe(), " for root ",
             root.value.describe());
  accumulate_grad(*root.cell, seed);
  for (size_t i = entries_.size(); i-- > 0;) {
    Entry e = std::move(entries_[i]);
    entries_.pop_back();
    if (e.out->grad.defined()) {
      Tensor g = std::move(e.out->grad);
      e.out->grad = Tensor();
      e.fn(g);
    }
    // e (closure, captured buffers, intermediate gradient) is released here.
  }
  entries_.clear();
}

static thread_local Tape* g_tape = nullptr;
TapeScope::TapeScope(Tape& tape) : saved_(g_tape) { g_tape = &tape; }
TapeScope::~TapeScope() { g_tape = saved_; }
Tape* current_tape() { return g_tape; }

Tape* recording_tape(std::initializer_list<const Var*> inputs) {
  if (!g_tape) return nullptr;
  for (const Var* v : inputs)
    if (v && v->requires_grad()) return g_tape;
  return nullptr;
}

void accumulate_grad(GradCell& cell, const Tensor& g) {
  MDPS_CHECK(g.numel() == shape_numel(cell.shape), "gradient ", g.describe(), " for a value of shape ",
             shape_str(cell.shape));
  if (!cell.grad.defined()) {
    cell.grad = g.shape() == cell.shape ? g : g.reshape(cell.shape);
  } else {
    // A fresh sum, never in place: gradients are shared freely between cells
    // (an add passes the same tensor to both inputs), so none may be mutated.
    Tensor sum = new_grad(cell, cell.grad.backend());
    cell.grad.backend().add(cell.grad, g.reshape(cell.shape), sum);
    cell.grad = sum;
  }
}

Tensor new_grad(const GradCell& cell, Backend& backend) { return new_grad(cell, cell.shape, backend); }
Tensor new_grad(const GradCell& cell, const Shape& shape, Backend& backend) {
  MemCategoryScope scope(cell.category);
  return Tensor::empty(shape, backend);
}

}  // namespace mdps
