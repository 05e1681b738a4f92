// Adam as the authors use it (torch.optim.Adam: weight decay added to the
// gradient) or AdamW (decoupled), over a U-Net's parameters. State (m, v, step)
// is saved with the model in checkpoints.
#pragma once
#include "engine/model/unet.h"

namespace mdps {

class SafeTensorsWriter;

class Adam {
 public:
  Adam(UNet& model, const AdamParams& params);
  const AdamParams& params() const { return params_; }
  int64_t step_count() const { return step_; }
  // One update from the gradients accumulated in the model's parameters.
  void step();
  // Optimiser state under "optim.m.<name>", "optim.v.<name>", "optim.step".
  void save(SafeTensorsWriter& w) const;
  void load(const SafeTensorsFile& f);

 private:
  UNet& model_;
  AdamParams params_;
  int64_t step_ = 0;
  std::vector<Tensor> m_, v_;
};

}  // namespace mdps
