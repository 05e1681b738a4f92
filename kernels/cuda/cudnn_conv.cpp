#include "kernels/cuda/cudnn_conv.h"
#include "kernels/cuda/launchers.h"
#include "engine/core/common.h"
#include <cuda_runtime.h>
#include <cudnn.h>
#include <vector>

namespace mdps::cuda {

namespace {

void check(cudnnStatus_t s, const char* what) {
  MDPS_CHECK(s == CUDNN_STATUS_SUCCESS, "cuDNN ", what, ": ", cudnnGetErrorString(s));
}

// Workspaces above this are taken only when no algorithm needs less (FFT
// algorithms can ask for gigabytes; the cache would have to give them back).
constexpr size_t kMaxPreferredWorkspace = size_t(1) << 30;

// Whether an entry's math suits the precision: fp32 runs FMA math only (the
// fp32 descriptors' DEFAULT math may mean TF32 on Ampere and later, so it runs
// as FMA, see math_for); no mode accepts the down-conversion of float data to
// fp16.
bool math_allowed(cudnnMathType_t m, bool fp32) {
  if (m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return false;
  return !fp32 || m == CUDNN_FMA_MATH || m == CUDNN_DEFAULT_MATH;
}

// The math type an entry runs with, set on the descriptor before its workspace
// query and every call (the descriptor is shared by the three directions).
cudnnMathType_t math_for(cudnnMathType_t m, bool fp32) { return fp32 ? CUDNN_FMA_MATH : m; }

// The first usable entry of cuDNN's ranked list (fastest first) in the first
// non-empty tier: deterministic with a modest workspace, modest workspace,
// deterministic, any. Deterministic algorithms give bit-reproducible gradients.
template <typename Perf>
Perf pick(const std::vector<Perf>& perf, int n, bool fp32, const char* what) {
  const Perf* tier[4] = {nullptr, nullptr, nullptr, nullptr};
  for (int i = 0; i < n; ++i) {
    const Perf& p = perf[size_t(i)];
    if (p.status != CUDNN_STATUS_SUCCESS || !math_allowed(p.mathType, fp32)) continue;
    const bool det = p.determinism == CUDNN_DETERMINISTIC, small = p.memory <= kMaxPreferredWorkspace;
    const int t = det && small ? 0 : small ? 1 : det ? 2 : 3;
    if (!tier[t]) tier[t] = &p;
  }
  for (const Perf* p : tier)
    if (p) return *p;
  MDPS_CHECK(false, "cuDNN: no algorithm for ", what, " supports this shape");
  return perf[0];
}

// One direction's algorithm, chosen once per plan: the entry pick() takes,
// the math it runs with and its workspace.
template <typename Algo>
struct Choice {
  bool made = false;
  Algo algo{};
  cudnnMathType_t math = CUDNN_FMA_MATH;
  size_t workspace = 0;
};

// Makes c from cuDNN's ranked list (the first time) and sets its math on the
// convolution descriptor, which the three directions share (every call).
// workspace(algo, &bytes) queries the direction's workspace size.
template <typename Algo, typename Perf, typename WorkspaceQuery>
void use(Choice<Algo>& c, const std::vector<Perf>& perf, int n, bool fp32, cudnnConvolutionDescriptor_t conv,
         const char* what, WorkspaceQuery workspace) {
  if (!c.made) {
    const Perf chosen = pick(perf, n, fp32, what);
    c.algo = chosen.algo;
    c.math = math_for(chosen.mathType, fp32);
    check(cudnnSetConvolutionMathType(conv, c.math), what);
    check(workspace(c.algo, &c.workspace), what);
    c.made = true;
  }
  check(cudnnSetConvolutionMathType(conv, c.math), what);
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

// bfloat16 copies for one call (--precision bf16), back on scope exit.
class Bf16Buffer {
 public:
  Bf16Buffer(CachingAllocator& a, int64_t n) : w_(a, size_t(n) * sizeof(uint16_t)), n_(n) {}
  uint16_t* get() const { return static_cast<uint16_t*>(w_.get()); }
  // This buffer = bf16(src) / dst = float(this buffer), enqueued on `stream`.
  uint16_t* from(const float* src, CUstream_st* stream) {
    launch_float_to_bf16(src, get(), n_, stream);
    return get();
  }
  void to(float* dst, CUstream_st* stream) const { launch_bf16_to_float(get(), dst, n_, stream); }

 private:
  Workspace w_;
  int64_t n_;
};

int64_t numel(int a, int b, int c, int d) { return int64_t(a) * b * c * d; }

}  // namespace

struct CudnnConv::Plan {
  // x, y, w: the descriptors the convolution runs on (float32, or bfloat16
  // under Math::BF16); y32 and bias: float32, for the bias and its gradient.
  bool bf16 = false;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, y32 = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  Choice<cudnnConvolutionFwdAlgo_t> fwd;
  Choice<cudnnConvolutionBwdDataAlgo_t> bwd_data;
  Choice<cudnnConvolutionBwdFilterAlgo_t> bwd_filter;

  ~Plan() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (y32) cudnnDestroyTensorDescriptor(y32);
    if (bias) cudnnDestroyTensorDescriptor(bias);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

CudnnConv::CudnnConv(CudnnHandle& handle, CUstream_st* stream, CachingAllocator& alloc)
    : handle_(handle), stream_(stream), alloc_(alloc) {}

CudnnConv::~CudnnConv() = default;

void CudnnConv::set_math(Math m) {
  std::lock_guard<std::mutex> lock(mu_);
  if (m == math_) return;
  math_ = m;
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
  p->bf16 = math_ == Math::BF16;
  // bfloat16 data with float accumulation is cuDNN's PSEUDO_BFLOAT16 configuration.
  const cudnnDataType_t data = p->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
  check(cudnnCreateTensorDescriptor(&p->x), "create x descriptor");
  check(cudnnCreateTensorDescriptor(&p->y), "create y descriptor");
  check(cudnnCreateTensorDescriptor(&p->y32), "create float y descriptor");
  check(cudnnCreateTensorDescriptor(&p->bias), "create bias descriptor");
  check(cudnnCreateFilterDescriptor(&p->w), "create filter descriptor");
  check(cudnnCreateConvolutionDescriptor(&p->conv), "create convolution descriptor");
  check(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, data, s.N, s.Ci, s.H, s.W), "x descriptor");
  check(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, data, s.N, s.Co, s.Ho, s.Wo), "y descriptor");
  check(cudnnSetTensor4dDescriptor(p->y32, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.N, s.Co, s.Ho, s.Wo),
        "float y descriptor");
  check(cudnnSetTensor4dDescriptor(p->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, s.Co, 1, 1), "bias descriptor");
  check(cudnnSetFilter4dDescriptor(p->w, data, CUDNN_TENSOR_NCHW, s.Co, s.Ci, s.KH, s.KW), "filter descriptor");
  check(cudnnSetConvolution2dDescriptor(p->conv, s.pad, s.pad, s.stride, s.stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                        CUDNN_DATA_FLOAT),
        "convolution descriptor");
  // FP32 arithmetic unless --precision tf32 / bf16: tensor cores change
  // results by ~1e-3 (TF32) or ~1e-2 (bf16 inputs) relative.
  check(cudnnSetConvolutionMathType(p->conv, math_ == Math::FP32   ? CUDNN_FMA_MATH
                                             : math_ == Math::TF32 ? CUDNN_DEFAULT_MATH
                                                                   : CUDNN_TENSOR_OP_MATH),
        "math type");
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
  cudnnHandle_t h = static_cast<cudnnHandle_t>(handle_.get());
  Plan& p = plan(s);
  std::vector<cudnnConvolutionFwdAlgoPerf_t> perf;
  int n = 0;
  if (!p.fwd.made) {
    int max = 0;
    check(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max), "forward algorithm count");
    perf.resize(size_t(std::max(max, 1)));
    check(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, max, &n, perf.data()),
          "forward algorithm");
  }
  use(p.fwd, perf, n, math_ == Math::FP32, p.conv, "the forward convolution",
      [&](cudnnConvolutionFwdAlgo_t a, size_t* bytes) {
        return cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, a, bytes);
      });
  const float one = 1.f, zero = 0.f;
  Workspace ws(alloc_, p.fwd.workspace);
  if (p.bf16) {
    Bf16Buffer x16(alloc_, numel(s.N, s.Ci, s.H, s.W)), w16(alloc_, numel(s.Co, s.Ci, s.KH, s.KW)),
        y16(alloc_, numel(s.N, s.Co, s.Ho, s.Wo));
    check(cudnnConvolutionForward(h, &one, p.x, x16.from(x, stream_), p.w, w16.from(w, stream_), p.conv,
                                  p.fwd.algo, ws.get(), p.fwd.workspace, &zero, p.y, y16.get()),
          "convolution forward (bf16)");
    y16.to(y, stream_);
  } else {
    check(cudnnConvolutionForward(h, &one, p.x, x, p.w, w, p.conv, p.fwd.algo, ws.get(), p.fwd.workspace, &zero,
                                  p.y, y),
          "convolution forward");
  }
  if (b) check(cudnnAddTensor(h, &one, p.bias, b, &one, p.y32, y), "convolution bias");
}

void CudnnConv::backward_data(const ConvShape& s, const float* dy, const float* w, float* dx) {
  std::lock_guard<std::mutex> lock(mu_);
  cudnnHandle_t h = static_cast<cudnnHandle_t>(handle_.get());
  Plan& p = plan(s);
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf;
  int n = 0;
  if (!p.bwd_data.made) {
    int max = 0;
    check(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max), "backward data algorithm count");
    perf.resize(size_t(std::max(max, 1)));
    check(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, p.conv, p.x, max, &n, perf.data()),
          "backward data algorithm");
  }
  use(p.bwd_data, perf, n, math_ == Math::FP32, p.conv, "the convolution data gradient",
      [&](cudnnConvolutionBwdDataAlgo_t a, size_t* bytes) {
        return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w, p.y, p.conv, p.x, a, bytes);
      });
  const float one = 1.f, zero = 0.f;
  Workspace ws(alloc_, p.bwd_data.workspace);
  if (p.bf16) {
    Bf16Buffer w16(alloc_, numel(s.Co, s.Ci, s.KH, s.KW)), dy16(alloc_, numel(s.N, s.Co, s.Ho, s.Wo)),
        dx16(alloc_, numel(s.N, s.Ci, s.H, s.W));
    check(cudnnConvolutionBackwardData(h, &one, p.w, w16.from(w, stream_), p.y, dy16.from(dy, stream_), p.conv,
                                       p.bwd_data.algo, ws.get(), p.bwd_data.workspace, &zero, p.x, dx16.get()),
          "convolution backward data (bf16)");
    dx16.to(dx, stream_);
    return;
  }
  check(cudnnConvolutionBackwardData(h, &one, p.w, w, p.y, dy, p.conv, p.bwd_data.algo, ws.get(),
                                     p.bwd_data.workspace, &zero, p.x, dx),
        "convolution backward data");
}

void CudnnConv::backward_filter(const ConvShape& s, const float* x, const float* dy, float* dw, float* db) {
  std::lock_guard<std::mutex> lock(mu_);
  cudnnHandle_t h = static_cast<cudnnHandle_t>(handle_.get());
  Plan& p = plan(s);
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf;
  int n = 0;
  if (!p.bwd_filter.made) {
    int max = 0;
    check(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max), "backward filter algorithm count");
    perf.resize(size_t(std::max(max, 1)));
    check(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x, p.y, p.conv, p.w, max, &n, perf.data()),
          "backward filter algorithm");
  }
  use(p.bwd_filter, perf, n, math_ == Math::FP32, p.conv, "the convolution filter gradient",
      [&](cudnnConvolutionBwdFilterAlgo_t a, size_t* bytes) {
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x, p.y, p.conv, p.w, a, bytes);
      });
  const float one = 1.f, zero = 0.f;
  Workspace ws(alloc_, p.bwd_filter.workspace);
  if (p.bf16) {
    // The filter gradient comes back in bf16 and is widened into the float32
    // gradient the optimiser's float32 master weights consume.
    Bf16Buffer x16(alloc_, numel(s.N, s.Ci, s.H, s.W)), dy16(alloc_, numel(s.N, s.Co, s.Ho, s.Wo)),
        dw16(alloc_, numel(s.Co, s.Ci, s.KH, s.KW));
    check(cudnnConvolutionBackwardFilter(h, &one, p.x, x16.from(x, stream_), p.y, dy16.from(dy, stream_), p.conv,
                                         p.bwd_filter.algo, ws.get(), p.bwd_filter.workspace, &zero, p.w,
                                         dw16.get()),
          "convolution backward filter (bf16)");
    dw16.to(dw, stream_);
  } else {
    check(cudnnConvolutionBackwardFilter(h, &one, p.x, x, p.y, dy, p.conv, p.bwd_filter.algo, ws.get(),
                                         p.bwd_filter.workspace, &zero, p.w, dw),
          "convolution backward filter");
  }
  if (db) check(cudnnConvolutionBackwardBias(h, &one, p.y32, dy, &zero, p.bias, db), "convolution bias gradient");
}

}  // namespace mdps::cuda
