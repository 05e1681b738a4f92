#include "kernels/cuda/cudnn_conv.h"
#include "engine/common.h"
#include <cuda_runtime.h>
#include <cudnn.h>
#include <vector>

namespace mdps::cuda {

namespace {

void check(cudnnStatus_t s, const char* what) {
  MDPS_CHECK(s == CUDNN_STATUS_SUCCESS, "cuDNN ", what, ": ", cudnnGetErrorString(s));
}

// The fastest successful algorithm of cuDNN's ranked list, preferring a
// deterministic one (bit-reproducible gradients) when any succeeded.
template <typename Perf>
Perf pick(const std::vector<Perf>& perf, int n, const char* what) {
  const Perf* first = nullptr;
  for (int i = 0; i < n; ++i) {
    if (perf[size_t(i)].status != CUDNN_STATUS_SUCCESS) continue;
    if (perf[size_t(i)].determinism == CUDNN_DETERMINISTIC) return perf[size_t(i)];
    if (!first) first = &perf[size_t(i)];
  }
  MDPS_CHECK(first, "cuDNN: no algorithm for ", what, " supports this shape");
  return *first;
}

// Workspace for one call, from the caching allocator, back on scope exit
// (stream-ordered, so the queued call still owns it).
class Workspace {
 public:
  Workspace(CachingAllocator& a, size_t bytes) : a_(a), p_(bytes ? a.allocate(bytes) : nullptr) {}
  ~Workspace() { a_.free(p_); }
  void* get() const { return p_; }

 private:
  CachingAllocator& a_;
  void* p_;
};

}  // namespace

struct CudnnConv::Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  bool have_fwd = false, have_bwd_data = false, have_bwd_filter = false;
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  size_t fwd_ws = 0, bwd_data_ws = 0, bwd_filter_ws = 0;

  ~Plan() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (bias) cudnnDestroyTensorDescriptor(bias);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

CudnnConv::CudnnConv(CUstream_st* stream, CachingAllocator& alloc) : stream_(stream), alloc_(alloc) {}

CudnnConv::~CudnnConv() {
  plans_.clear();
  if (handle_) cudnnDestroy(static_cast<cudnnHandle_t>(handle_));
}

void* CudnnConv::handle() {
  if (!handle_) {
    cudnnHandle_t h = nullptr;
    check(cudnnCreate(&h), "cudnnCreate");
    check(cudnnSetStream(h, stream_), "cudnnSetStream");
    handle_ = h;
  }
  return handle_;
}

void CudnnConv::set_tf32(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  if (on == tf32_) return;
  tf32_ = on;
  plans_.clear();
}

size_t CudnnConv::plans() const {
  std::lock_guard<std::mutex> lock(mu_);
  return plans_.size();
}

CudnnConv::Plan& CudnnConv::plan(const ConvShape& s) {
  const std::array<int, 9> key{s.N, s.Ci, s.H, s.W, s.Co, s.KH, s.KW, s.stride, s.pad};
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  auto p = std::make_unique<Plan>();
  check(cudnnCreateTensorDescriptor(&p->x), "create x descriptor");
  check(cudnnCreateTensorDescriptor(&p->y), "create y descriptor");
  check(cudnnCreateTensorDescriptor(&p->bias), "create bias descriptor");
  check(cudnnCreateFilterDescriptor(&p->w), "create filter descriptor");
  check(cudnnCreateConvolutionDescriptor(&p->conv), "create convolution descriptor");
  check(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.N, s.Ci, s.H, s.W), "x descriptor");
  check(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.N, s.Co, s.Ho, s.Wo),
        "y descriptor");
  check(cudnnSetTensor4dDescriptor(p->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, s.Co, 1, 1), "bias descriptor");
  check(cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s.Co, s.Ci, s.KH, s.KW),
        "filter descriptor");
  check(cudnnSetConvolution2dDescriptor(p->conv, s.pad, s.pad, s.stride, s.stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                        CUDNN_DATA_FLOAT),
        "convolution descriptor");
  // FP32 arithmetic unless --precision tf32: TF32 tensor cores change results
  // by ~1e-3 relative.
  check(cudnnSetConvolutionMathType(p->conv, tf32_ ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH), "math type");
  int outd[4] = {0, 0, 0, 0};
  check(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &outd[0], &outd[1], &outd[2], &outd[3]),
        "output size");
  MDPS_CHECK(outd[0] == s.N && outd[1] == s.Co && outd[2] == s.Ho && outd[3] == s.Wo,
             "cuDNN convolution: output ", outd[0], "x", outd[1], "x", outd[2], "x", outd[3], " differs from ", s.N,
             "x", s.Co, "x", s.Ho, "x", s.Wo);
  Plan& ref = *p;
  plans_.emplace(key, std::move(p));
  return ref;
}

void CudnnConv::forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y) {
  std::lock_guard<std::mutex> lock(mu_);
  cudnnHandle_t h = static_cast<cudnnHandle_t>(handle());
  Plan& p = plan(s);
  if (!p.have_fwd) {
    int max = 0, n = 0;
    check(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max), "forward algorithm count");
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(size_t(std::max(max, 1)));
    check(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, max, &n, perf.data()),
          "forward algorithm");
    p.fwd = pick(perf, n, "the forward convolution").algo;
    check(cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, p.fwd, &p.fwd_ws), "forward workspace");
    p.have_fwd = true;
  }
  const float one = 1.f, zero = 0.f;
  Workspace ws(alloc_, p.fwd_ws);
  check(cudnnConvolutionForward(h, &one, p.x, x, p.w, w, p.conv, p.fwd, ws.get(), p.fwd_ws, &zero, p.y, y),
        "convolution forward");
  if (b) check(cudnnAddTensor(h, &one, p.bias, b, &one, p.y, y), "convolution bias");
}

void CudnnConv::backward_data(const ConvShape& s, const float* dy, const float* w, float* dx) {
  std::lock_guard<std::mutex> lock(mu_);
  cudnnHandle_t h = static_cast<cudnnHandle_t>(handle());
  Plan& p = plan(s);
  if (!p.have_bwd_data) {
    int max = 0, n = 0;
    check(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max), "backward data algorithm count");
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(size_t(std::max(max, 1)));
    check(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, p.conv, p.x, max, &n, perf.data()),
          "backward data algorithm");
    p.bwd_data = pick(perf, n, "the convolution data gradient").algo;
    check(cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w, p.y, p.conv, p.x, p.bwd_data, &p.bwd_data_ws),
          "backward data workspace");
    p.have_bwd_data = true;
  }
  const float one = 1.f, zero = 0.f;
  Workspace ws(alloc_, p.bwd_data_ws);
  check(cudnnConvolutionBackwardData(h, &one, p.w, w, p.y, dy, p.conv, p.bwd_data, ws.get(), p.bwd_data_ws, &zero,
                                     p.x, dx),
        "convolution backward data");
}

void CudnnConv::backward_filter(const ConvShape& s, const float* x, const float* dy, float* dw, float* db) {
  std::lock_guard<std::mutex> lock(mu_);
  cudnnHandle_t h = static_cast<cudnnHandle_t>(handle());
  Plan& p = plan(s);
  if (!p.have_bwd_filter) {
    int max = 0, n = 0;
    check(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max), "backward filter algorithm count");
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(size_t(std::max(max, 1)));
    check(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x, p.y, p.conv, p.w, max, &n, perf.data()),
          "backward filter algorithm");
    p.bwd_filter = pick(perf, n, "the convolution filter gradient").algo;
    check(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x, p.y, p.conv, p.w, p.bwd_filter, &p.bwd_filter_ws),
          "backward filter workspace");
    p.have_bwd_filter = true;
  }
  const float one = 1.f, zero = 0.f;
  Workspace ws(alloc_, p.bwd_filter_ws);
  check(cudnnConvolutionBackwardFilter(h, &one, p.x, x, p.y, dy, p.conv, p.bwd_filter, ws.get(), p.bwd_filter_ws,
                                       &zero, p.w, dw),
        "convolution backward filter");
  if (db) check(cudnnConvolutionBackwardBias(h, &one, p.y, dy, &zero, p.bias, db), "convolution bias gradient");
}

}  // namespace mdps::cuda
