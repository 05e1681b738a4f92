// The CUDA backend's convolutions through cuDNN (kernels/cuda/cudnn_conv.h); the CPU's are in
// kernels/cpu/conv2d.cpp, the checks every backend shares in engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

namespace mdps {

using cuda::OpRange;
using cuda::to_int;

void CudaBackend::conv_shape(const Tensor& x, const Tensor& w, ConvGeom g, const char* op, cuda::ConvShape& s) const {
  const int64_t Ho = conv_out_size(x.dim(2), w.dim(2), g), Wo = conv_out_size(x.dim(3), w.dim(3), g);
  // cuDNN rejects empty descriptors; a convolution without input channels
  // has no use in the U-Net.
  MDPS_CHECK(x.dim(1) > 0, op, ": zero input channels are not supported on CUDA");
  MDPS_CHECK(w.dim(2) > 0 && w.dim(3) > 0, op, ": empty kernel ", shape_str(w.shape()), " is not supported on CUDA");
  s = {to_int(x.dim(0), op),
       to_int(x.dim(1), op),
       to_int(x.dim(2), op),
       to_int(x.dim(3), op),
       to_int(w.dim(0), op),
       to_int(w.dim(2), op),
       to_int(w.dim(3), op),
       to_int(Ho, op),
       to_int(Wo, op),
       g.stride,
       g.pad};
}

void CudaBackend::conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, ConvGeom g) {
  OpRange range("conv2d");
  cuda::ConvShape s{};
  conv_shape(x, w, g, "conv2d", s);
  if (y.numel() == 0) return;
  conv_->forward(s, x.data(), w.data(), b ? b->data() : nullptr, y.data());
}

void CudaBackend::conv2d_backward_data_impl(const Tensor& dy, const Tensor& w, Tensor& dx, ConvGeom g) {
  OpRange range("conv2d_backward_data");
  cuda::ConvShape s{};
  conv_shape(dx, w, g, "conv2d_backward_data", s);
  if (dx.numel() == 0) return;
  if (w.numel() == 0) {  // no output channels: no gradient flows
    fill(dx, 0.f);
    return;
  }
  conv_->backward_data(s, dy.data(), w.data(), dx.data());
}

void CudaBackend::conv2d_backward_weight_impl(const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db, ConvGeom g) {
  OpRange range("conv2d_backward_weight");
  cuda::ConvShape s{};
  conv_shape(x, dw, g, "conv2d_backward_weight", s);
  if (dw.numel() == 0) return;
  if (x.numel() == 0) {  // an empty batch: no gradient
    fill(dw, 0.f);
    if (db) fill(*db, 0.f);
    return;
  }
  conv_->backward_filter(s, x.data(), dy.data(), dw.data(), db ? db->data() : nullptr);
}

}  // namespace mdps
