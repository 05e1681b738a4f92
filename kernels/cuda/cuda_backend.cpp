// CudaBackend's core: construction and teardown, memory and copies, the
// precision of the products, the trace's clock and NVTX ranges, and the
// registry's getter. The ops live one family per file in
// kernels/cuda/backend_<family>.cpp, named as the CPU's kernels/cpu/<family>.cpp;
// the public ops have checked their operands (engine/core/backend_ops.cpp).
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"
#include <cstdio>
#include <memory>
#include <mutex>

namespace mdps {

using cuda::check_cuda;
using cuda::check_cublas;
using cuda::cublas_handle;

CudaBackend::CudaBackend(int device) : device_(device) {
  // A failure part way releases what was created (the destructor does not
  // run for a constructor that throws).
  try {
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    cudaStream_t s = nullptr;
    check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    stream_ = s;
    cublasHandle_t h = nullptr;
    check_cublas(cublasCreate(&h), "cublasCreate");
    cublas_ = h;
    check_cublas(cublasSetStream(h, s), "cublasSetStream");
    memory_ = std::make_unique<cuda::CudaDeviceMemory>(device_);
    alloc_ = std::make_unique<cuda::CachingAllocator>(*memory_);
    cudnn_ = std::make_unique<cuda::CudnnHandle>(s);
    conv_ = std::make_unique<cuda::CudnnConv>(*cudnn_, s, *alloc_);
    attn_ = std::make_unique<cuda::CudnnAttention>(*cudnn_, s, *alloc_);
    clock_ = std::make_unique<cuda::CudaEventClock>(s);
  } catch (...) {
    destroy();
    throw;
  }
}

trace::DeviceClock* CudaBackend::device_clock() { return clock_.get(); }

namespace {
// The trace's spans as NVTX ranges (sampler rounds and steps, U-Net forward
// and backward, train steps), around the per-op ranges of OpRange.
class NvtxMarker final : public trace::RangeMarker {
 public:
  void push(const char* name) override {
#ifdef MDPS_HAVE_NVTX
    nvtxRangePushA(name);
#else
    (void)name;
#endif
  }
  void pop() override {
#ifdef MDPS_HAVE_NVTX
    nvtxRangePop();
#endif
  }
};
}  // namespace

trace::RangeMarker* CudaBackend::range_marker() {
#ifdef MDPS_HAVE_NVTX
  static NvtxMarker* marker = new NvtxMarker;  // never destroyed: spans may close during exit
  return marker;
#else
  return nullptr;
#endif
}

// fp32: cuBLAS's default math and cuDNN's FMA math; tf32: TF32 tensor cores
// on float32 data; bf16: the products' inputs cast to bfloat16 (gemm below,
// the convolutions in cudnn_conv.cpp), float accumulation and outputs. Tensors,
// weights and optimiser state stay float32 in every mode.
void CudaBackend::set_precision(Precision p) {
  const bool tf32 = p == Precision::TF32;
  check_cublas(cublasSetMathMode(cublas_handle(cublas_), tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
               "cublasSetMathMode");
  conv_->set_math(p == Precision::BF16 ? cuda::CudnnConv::Math::BF16
                  : tf32               ? cuda::CudnnConv::Math::TF32
                                       : cuda::CudnnConv::Math::FP32);
  precision_ = p;
}

// Never throws (a throwing destructor terminates the process): it may run
// after a device fault (a sticky error every call returns) or at exit, when
// the runtime may be unloading, so errors are ignored. The queued work is
// waited for first, so no cuDNN plan or cached block is freed under it.
CudaBackend::~CudaBackend() {
  destroy();
}

void CudaBackend::destroy() noexcept {
  if (stream_) cudaStreamSynchronize(stream_);
  if (clock_ && trace::device_clock() == clock_.get()) trace::set_device_clock(nullptr);
  clock_.reset();
  attn_.reset();
  conv_.reset();
  cudnn_.reset();
  if (alloc_) {
    try {
      alloc_->release();
    } catch (...) {
      // the device is gone or faulted: its memory goes with the context
    }
  }
  alloc_.reset();
  memory_.reset();
  if (cublas_) cublasDestroy(cublas_handle(cublas_));
  cublas_ = nullptr;
  if (stream_) cudaStreamDestroy(stream_);
  stream_ = nullptr;
}

void* CudaBackend::raw_alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = alloc_->allocate(bytes);
  stats_.on_alloc(bytes, MemCategoryScope::current());
  return p;
}

void CudaBackend::raw_free(void* p, size_t bytes) {
  if (!p) return;
  // No wait: kernels still queued on the one stream finish before any later
  // user of the block runs (device_allocator.h).
  alloc_->free(p);
  stats_.on_free(bytes);
}

void CudaBackend::copy_host_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  // Synchronous: the host buffer may be reused as soon as this returns.
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "copy host to device");
  check_cuda(cudaStreamSynchronize(stream_), "copy host to device");
}

void CudaBackend::copy_device_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "copy device to host");
  check_cuda(cudaStreamSynchronize(stream_), "copy device to host");
}

void CudaBackend::copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "copy device to device");
}

void CudaBackend::synchronize() { check_cuda(cudaStreamSynchronize(stream_), "synchronize"); }

// fill is a memory op, called directly (no public op checks it): a host
// tensor here would hand the kernel an illegal address.
void CudaBackend::fill(Tensor& x, float value) {
  MDPS_CHECK(x.device() == Device::CUDA, "fill: tensor ", x.describe(), " is not on the CUDA device");
  elementwise(cuda::EwOp::Fill, nullptr, nullptr, x, value, 0.f, 1, 1);
}

// One backend per process, created on first use; nullptr when the runtime
// finds no device (silently: `--device auto` then quietly picks the CPU) or
// the device cannot be set up (said once on stderr).
Backend* cuda_backend_instance() {
  static std::once_flag once;
  static std::unique_ptr<CudaBackend> backend;
  std::call_once(once, [] {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
      cudaGetLastError();  // clear the sticky "no device" error
      return;
    }
    try {
      backend = std::make_unique<CudaBackend>(0);
    } catch (const Error& err) {
      std::fprintf(stderr, "mdps: CUDA device unusable: %s\n", err.what());
    }
  });
  return backend.get();
}

}  // namespace mdps
