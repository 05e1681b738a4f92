// Autograd-lite: a tape of backward closures.
//
// A Var is a tensor value plus, when a gradient is wanted for it, a GradCell
// where its gradient accumulates. Ops (engine/core/ops.h) compute their result and,
// when a Tape is recording on this thread and some input has a cell, push a
// closure that maps the output gradient to input gradients. Closures capture
// only what their backward needs: in input-only mode (weights without cells)
// a convolution keeps its weight but not its input, and no weight gradient is
// ever computed or allocated.
//
// Tape::backward walks the closures in reverse, frees each closure (and the
// buffers it captured) and each intermediate gradient as soon as it is used.
#pragma once
#include "engine/core/backend.h"
#include <functional>
#include <memory>
#include <vector>

namespace mdps {

struct GradCell {
  Shape shape;          // the gradient's shape (that of the value it belongs to)
  Tensor grad;          // undefined until something flows into it
  MemCategory category = MemCategory::Activations;
};

struct Var {
  Tensor value;
  std::shared_ptr<GradCell> cell;  // null: no gradient wanted

  Var() = default;
  explicit Var(Tensor v) : value(std::move(v)) {}
  bool requires_grad() const { return cell != nullptr; }
  const Shape& shape() const { return value.shape(); }
  // The accumulated gradient (undefined if none flowed).
  const Tensor& grad() const;
};

// A leaf that collects its gradient: `category` says what the gradient memory
// is counted as (InputGrad for the U-Net input, WeightGrad for parameters).
Var make_leaf(Tensor value, MemCategory category);

class Tape {
 public:
  using BackwardFn = std::function<void(const Tensor& grad_out)>;
  Tape() = default;
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  // Records an op producing a value of `shape`; returns the cell for its output.
  std::shared_ptr<GradCell> record(const Shape& shape, BackwardFn fn);
  // Backpropagate from `root` seeded with `seed` (same shape as root), or with 1
  // for a one-element root. Clears the tape.
  void backward(const Var& root, const Tensor& seed);
  void backward(const Var& root);
  size_t size() const { return entries_.size(); }
  void clear() { entries_.clear(); }

 private:
  struct Entry {
    std::shared_ptr<GradCell> out;
    BackwardFn fn;
  };
  std::vector<Entry> entries_;
};

// While alive, ops on this thread record to `tape`.
class TapeScope {
 public:
  explicit TapeScope(Tape& tape);
  ~TapeScope();
  TapeScope(const TapeScope&) = delete;
  TapeScope& operator=(const TapeScope&) = delete;

 private:
  Tape* saved_;
};
Tape* current_tape();

// The tape to record on, if one is recording and any input wants a gradient.
Tape* recording_tape(std::initializer_list<const Var*> inputs);

// Adds g into the cell's gradient (takes g over when the cell is empty).
void accumulate_grad(GradCell& cell, const Tensor& g);
// A new gradient buffer for `cell`, counted under the cell's category.
Tensor new_grad(const GradCell& cell, Backend& backend);
Tensor new_grad(const GradCell& cell, const Shape& shape, Backend& backend);

}  // namespace mdps
