// The CUDA backend's the feature extractor's and the anomaly map's image ops; the CPU's are in
// kernels/cpu/image_ops.cpp, the checks every backend shares in engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cpu/cpu_image_ops.h"
#include <vector>

namespace mdps {

using cuda::check_cuda;
using cuda::OpRange;
using cuda::Scratch;

void CudaBackend::relu_impl(const Tensor& x, Tensor& y) {
  OpRange range("relu");
  elementwise(cuda::EwOp::Relu, &x, nullptr, y, 0.f, 0.f, 1, 1);
}

void CudaBackend::max_pool3x3_s2_impl(const Tensor& x, Tensor& y) {
  OpRange range("max_pool3x3_s2");
  const int64_t H = x.dim(2), W = x.dim(3);
  cuda::launch_max_pool3x3_s2(x.data(), y.data(), x.dim(0) * x.dim(1), H, W, stream_);
}

void CudaBackend::imagenet_normalise_impl(const Tensor& x, Tensor& y) {
  OpRange range("imagenet_normalise");
  cuda::launch_imagenet_normalise(x.data(), y.data(), x.dim(0), x.dim(2) * x.dim(3), stream_);
}

void CudaBackend::pixel_distance_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  OpRange range("pixel_distance");
  cuda::launch_pixel_distance(a.data(), b.data(), y.data(), a.dim(0), a.dim(2) * a.dim(3), stream_);
}

void CudaBackend::max_impl(const Tensor& x, Tensor& out) {
  OpRange range("max");
  Scratch<float> partial(*alloc_, cuda::sum_partial_blocks(x.numel()));
  cuda::launch_max(x.data(), x.numel(), partial.get(), out.data(), stream_);
}

void CudaBackend::anomaly_mix_impl(const Tensor& f, const Tensor& p, const Tensor& max_f, const Tensor& max_p,
                                   float eta, Tensor& y) {
  OpRange range("anomaly_mix");
  cuda::launch_anomaly_mix(f.data(), p.data(), max_f.data(), max_p.data(), eta, y.data(), y.numel(), stream_);
}

void CudaBackend::pooled_cosine_distance_impl(const Tensor& a, const Tensor& b, Tensor& y, float eps) {
  OpRange range("pooled_cosine_distance");
  cuda::launch_pooled_cosine_distance(a.data(), b.data(), y.data(), a.dim(0), a.dim(1), a.dim(2), a.dim(3), eps,
                                      stream_);
}

void CudaBackend::gaussian_blur_impl(const Tensor& x, int kernel, float sigma, Tensor& y) {
  OpRange range("gaussian_blur");
  // The taps as the CPU computes them, so both blur with the same floats.
  const std::vector<float> taps = hostops::gaussian_kernel1d(kernel, sigma);
  Scratch<double> tmp(*alloc_, size_t(x.numel()));
  cuda::launch_gaussian_blur(x.data(), tmp.get(), y.data(), x.dim(0) * x.dim(1), x.dim(2), x.dim(3), taps.data(),
                             kernel, stream_);
}

void CudaBackend::resize_bilinear_align_corners_impl(const Tensor& x, Tensor& y) {
  OpRange range("resize_bilinear_align_corners");
  cuda::launch_resize_bilinear(x.data(), y.data(), x.dim(0) * x.dim(1), x.dim(2), x.dim(3), y.dim(2), y.dim(3),
                               stream_);
}

std::vector<double> CudaBackend::image_scores_impl(const Tensor& maps, ImageScoreKind kind, int k) {
  OpRange range("image_scores");
  const int64_t N = maps.dim(0);
  Scratch<double> out(*alloc_, size_t(N));
  cuda::launch_topk_score(maps.data(), N, maps.dim(2) * maps.dim(3), k, kind == ImageScoreKind::Authors, out.get(),
                          stream_);
  std::vector<double> scores(static_cast<size_t>(N));
  check_cuda(cudaMemcpyAsync(scores.data(), out.get(), size_t(N) * sizeof(double), cudaMemcpyDeviceToHost, stream_),
             "image_scores copy");
  check_cuda(cudaStreamSynchronize(stream_), "image_scores synchronize");
  return scores;
}

}  // namespace mdps
