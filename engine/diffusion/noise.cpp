#include "engine/diffusion/noise.h"
#include "engine/core/backend.h"
#include "kernels/shared/philox.h"

namespace mdps {

void PhiloxNoise::normal(Tensor& out) {
  MDPS_CHECK(out.defined(), "PhiloxNoise::normal: output tensor is undefined");
  MDPS_CHECK(out.dtype() == DType::F32, "PhiloxNoise::normal: output ", out.describe(), " is not f32");
  // Drawn by the tensor's backend (on a device: a kernel, no host copy).
  out.backend().philox_normal(out, seed_, stream_, position_);
  position_ += uint64_t(out.numel());
}

void RecordedNoise::normal(Tensor& out) {
  MDPS_CHECK(next_ < draws_.size(), "RecordedNoise: all ", draws_.size(),
             " recorded draws are used; asked for another ", out.describe());
  const Tensor& d = draws_[next_];
  MDPS_CHECK(d.shape() == out.shape(), "RecordedNoise: recorded draw ", next_, " has shape ",
             shape_str(d.shape()), " but ", shape_str(out.shape()), " was asked for");
  out.copy_from(d);
  ++next_;
}

}  // namespace mdps
