#include "kernels/cuda/cudnn_handle.h"
#include "engine/core/common.h"
#include <cudnn.h>

namespace mdps::cuda {

CudnnHandle::~CudnnHandle() {
  if (handle_) cudnnDestroy(static_cast<cudnnHandle_t>(handle_));
}

void* CudnnHandle::get() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!handle_) {
    cudnnHandle_t h = nullptr;
    const cudnnStatus_t created = cudnnCreate(&h);
    MDPS_CHECK(created == CUDNN_STATUS_SUCCESS, "cuDNN cudnnCreate: ", cudnnGetErrorString(created));
    const cudnnStatus_t bound = cudnnSetStream(h, static_cast<cudaStream_t>(stream_));
    if (bound != CUDNN_STATUS_SUCCESS) {
      cudnnDestroy(h);
      throw Error(cat("cuDNN cudnnSetStream: ", cudnnGetErrorString(bound)));
    }
    handle_ = h;
  }
  return handle_;
}

}  // namespace mdps::cuda
