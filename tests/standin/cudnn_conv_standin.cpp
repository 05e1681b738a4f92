// CPU stand-in of cuDNN's handle and legacy convolution API as the backend
// calls it (cudnn_ops.h / cudnn_cnn.h of cuDNN 9): 4-D NCHW tensor and filter
// descriptors (their strides as cudnnSetTensor4dDescriptor documents: packed),
// 2-D cross-correlation with padding, stride and dilation, the algorithm
// queries (_v7: a ranked list with status, workspace, determinism and math
// type per entry), workspace sizes, forward / backward data / backward filter
// / backward bias and cudnnAddTensor, each y = alpha op + beta y with beta 0
// not reading y. Data types: FLOAT with FLOAT compute, or BFLOAT16 data with
// FLOAT compute (PSEUDO_BFLOAT16: inputs bf16, float accumulation, output
// rounded to bf16). Math: FMA computes in float; DEFAULT_MATH and
// TENSOR_OP_MATH on float data round the inputs to TF32 (what Ampere and later
// do). Every descriptor, the workspace (size and memory) and each operand's
// range in live device memory are checked; errors are the documented codes
// (BAD_PARAM for inconsistent descriptors or a short workspace, NOT_SUPPORTED
// for algorithms or types outside the configuration).
//
// The stand-in's "heuristics" rank entries so that the backend's choice among
// them is exercised: an entry that down-converts to fp16 first, an
// unsupported one, a fast nondeterministic one and a huge-workspace one
// before the plain ones. Its own numbers (time, workspace) are invented; only
// their shape follows the documentation.
#include "tests/standin/standin.h"
#include <cudnn.h>
#include <cuda_runtime.h>
#include <algorithm>
#include <mutex>
#include <set>
#include <string>
#include <vector>

struct cudnnContext {
  cudaStream_t stream = nullptr;
};
struct cudnnTensorStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int dim[4] = {0, 0, 0, 0}, stride[4] = {0, 0, 0, 0};
};
struct cudnnFilterStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int dim[4] = {0, 0, 0, 0};  // k, c, h, w (NCHW: packed)
};
struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, u = 1, v = 1, dil_h = 1, dil_w = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

using namespace mdps::standin;

namespace mdps::standin {
// Shared with the backend-API stand-in (cudnn_backend_standin.cpp).
bool cudnn_handle_live(cudnnHandle_t h);
}  // namespace mdps::standin

namespace {

std::mutex mu;
template <typename T>
std::set<const T*>& registry() {
  static auto* s = new std::set<const T*>;
  return *s;
}
template <typename T>
bool live(const T* p) {
  std::lock_guard<std::mutex> l(mu);
  return p && registry<T>().count(p);
}
template <typename T>
cudnnStatus_t create(T** out, const char* fn) {
  if (!out) {
    misuse(fn, "null output pointer");
    return CUDNN_STATUS_BAD_PARAM;
  }
  *out = new T;
  std::lock_guard<std::mutex> l(mu);
  registry<T>().insert(*out);
  return CUDNN_STATUS_SUCCESS;
}
template <typename T>
cudnnStatus_t destroy(T* p, const char* fn) {
  {
    std::lock_guard<std::mutex> l(mu);
    if (!p) return CUDNN_STATUS_SUCCESS;  // documented: destroying NULL is a no-op
    if (!registry<T>().erase(p)) p = nullptr;
  }
  if (!p) {
    misuse(fn, "descriptor not created (or destroyed twice)");
    return CUDNN_STATUS_BAD_PARAM;
  }
  delete p;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t refuse(const char* fn, cudnnStatus_t s, const std::string& why) {
  misuse(fn, why);
  return s;
}

bool data_type_ok(cudnnDataType_t t) { return t == CUDNN_DATA_FLOAT || t == CUDNN_DATA_BFLOAT16; }
size_t elem_bytes(cudnnDataType_t t) { return t == CUDNN_DATA_BFLOAT16 ? 2 : 4; }

float load(const void* p, cudnnDataType_t t, size_t i) {
  return t == CUDNN_DATA_BFLOAT16 ? bf16_to_float(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
}
void store(void* p, cudnnDataType_t t, size_t i, float v) {
  if (t == CUDNN_DATA_BFLOAT16) static_cast<uint16_t*>(p)[i] = float_to_bf16_bits(v);
  else static_cast<float*>(p)[i] = v;
}
// y = alpha r + beta y; beta 0 never reads y.
void blend(void* y, cudnnDataType_t t, size_t i, float alpha, float r, float beta) {
  store(y, t, i, beta == 0.f ? alpha * r : alpha * r + beta * load(y, t, i));
}

size_t tensor_elems_extent(const cudnnTensorStruct& d) {
  size_t e = 1;
  for (int i = 0; i < 4; ++i) e += size_t(d.dim[i] - 1) * size_t(d.stride[i]);
  return e;
}
size_t tensor_offset(const cudnnTensorStruct& d, int n, int c, int h, int w) {
  return size_t(n) * d.stride[0] + size_t(c) * d.stride[1] + size_t(h) * d.stride[2] + size_t(w) * d.stride[3];
}

// One convolution's consistent description, or the reason it is not.
struct Conv {
  int N, C, H, W, K, R, S, P, Q;
  const cudnnTensorStruct *x, *y;
  const cudnnFilterStruct* w;
  const cudnnConvolutionStruct* cv;
  cudnnDataType_t type;
  bool tf32;
};

cudnnStatus_t describe(const char* fn, cudnnHandle_t h, const cudnnTensorStruct* x, const cudnnFilterStruct* w,
                       const cudnnConvolutionStruct* cv, const cudnnTensorStruct* y, Conv& c) {
  if (!cudnn_handle_live(h)) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "handle not created");
  if (!live(x) || !live(w) || !live(cv) || !live(y)) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "descriptor not created");
  if (!x->set || !w->set || !cv->set || !y->set) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "descriptor never set");
  if (x->type != w->type || x->type != y->type)
    return refuse(fn, CUDNN_STATUS_BAD_PARAM, "x, w and y data types differ");
  if (cv->compute != CUDNN_DATA_FLOAT)
    return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "compute type other than FLOAT (FLOAT / PSEUDO_BFLOAT16 configs)");
  if (x->dim[1] != w->dim[1]) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "input channels differ from the filter's");
  c = {x->dim[0], x->dim[1], x->dim[2], x->dim[3], w->dim[0], w->dim[2], w->dim[3], 0, 0, x, y, w, cv, x->type, false};
  c.P = 1 + (c.H + 2 * cv->pad_h - ((c.R - 1) * cv->dil_h + 1)) / cv->u;
  c.Q = 1 + (c.W + 2 * cv->pad_w - ((c.S - 1) * cv->dil_w + 1)) / cv->v;
  if (c.P <= 0 || c.Q <= 0) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "filter larger than the padded input");
  if (y->dim[0] != c.N || y->dim[1] != c.K || y->dim[2] != c.P || y->dim[3] != c.Q)
    return refuse(fn, CUDNN_STATUS_BAD_PARAM, "y descriptor is not the convolution's output size");
  c.tf32 = c.type == CUDNN_DATA_FLOAT && cv->math != CUDNN_FMA_MATH;
  return CUDNN_STATUS_SUCCESS;
}

// The stand-in's ranked lists: (algo, status, workspace bytes, deterministic, math).
struct Entry {
  int algo;
  bool supported;
  size_t memory;
  bool det;
  cudnnMathType_t math;
};
std::vector<Entry> entries(int dir, const Conv& c) {
  const size_t col = size_t(c.C) * c.R * c.S * c.P * c.Q * sizeof(float);  // an im2col buffer of one image
  const cudnnMathType_t m = c.cv->math;
  if (dir == 0)
    return {{CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, true, 0, true, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION},
            {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, false, 0, true, m},
            {CUDNN_CONVOLUTION_FWD_ALGO_FFT, true, size_t(3) << 30, true, m},
            {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, true, col, true, m},
            {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, true, 0, true, CUDNN_FMA_MATH}};
  if (dir == 1)
    return {{CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, true, 0, false, m},
            {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, true, size_t(2) << 30, true, m},
            {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, true, col, true, m}};
  return {{CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, true, 0, false, m},
          {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, false, 0, true, m},
          {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, col, true, m},
          {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, true, col / 2 + 256, true, m}};
}
const Entry* find(int dir, const Conv& c, int algo) {
  static thread_local std::vector<Entry> e;
  e = entries(dir, c);
  for (const Entry& x : e)
    if (x.algo == algo) return &x;
  return nullptr;
}

template <typename Perf, typename Algo>
cudnnStatus_t ranked(const char* fn, int dir, const Conv& c, int requested, int* returned, Perf* perf) {
  if (requested < 1 || !returned || !perf)
    return refuse(fn, CUDNN_STATUS_BAD_PARAM, "requestedAlgoCount < 1 or null results");
  const std::vector<Entry> e = entries(dir, c);
  int n = 0;
  for (const Entry& x : e) {
    if (n == requested) break;
    Perf p{};
    p.algo = Algo(x.algo);
    p.status = x.supported ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    p.time = x.supported ? float(n + 1) : -1.f;
    p.memory = x.memory;
    p.determinism = x.det ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
    p.mathType = x.math;
    perf[n++] = p;
  }
  *returned = n;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t workspace_size(const char* fn, int dir, const Conv& c, int algo, size_t* bytes) {
  if (!bytes) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "null size");
  const Entry* e = find(dir, c, algo);
  if (!e || !e->supported) return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "algorithm " + std::to_string(algo) + " not supported here");
  *bytes = e->memory;
  return CUDNN_STATUS_SUCCESS;
}

// The checks every execution shares: algorithm, workspace, operand ranges.
cudnnStatus_t ready(const char* fn, int dir, const Conv& c, int algo, void* ws, size_t ws_bytes,
                    std::initializer_list<std::pair<const void*, size_t>> operands) {
  const Entry* e = find(dir, c, algo);
  if (!e || !e->supported) return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "algorithm " + std::to_string(algo) + " not supported here");
  if (e->math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION && c.cv->math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
    return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "algorithm needs CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION");
  if (ws_bytes < e->memory)
    return refuse(fn, CUDNN_STATUS_BAD_PARAM, "workspace of " + std::to_string(ws_bytes) + " bytes, algorithm needs " +
                                                   std::to_string(e->memory));
  if (e->memory > 0) {
    if (!ws) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "null workspace with a non-zero size");
    if (std::string w = device_range_problem(ws, e->memory); !w.empty())
      return device_fault(fn, "workspace " + w), CUDNN_STATUS_EXECUTION_FAILED;
  }
  if (faulted()) return CUDNN_STATUS_EXECUTION_FAILED;
  int i = 0;
  for (const auto& [p, bytes] : operands) {
    ++i;
    if (std::string w = device_range_problem(p, bytes); !w.empty())
      return device_fault(fn, "operand " + std::to_string(i) + " " + w), CUDNN_STATUS_EXECUTION_FAILED;
  }
  return CUDNN_STATUS_SUCCESS;
}

float in(const void* p, cudnnDataType_t t, size_t i, bool tf32) {
  const float v = load(p, t, i);
  return tf32 ? round_to_tf32(v) : v;
}

size_t filter_offset(const cudnnFilterStruct& w, int k, int c, int r, int s) {
  return ((size_t(k) * w.dim[1] + c) * w.dim[2] + r) * w.dim[3] + s;
}
size_t filter_elems(const cudnnFilterStruct& w) { return size_t(w.dim[0]) * w.dim[1] * w.dim[2] * w.dim[3]; }

float scalar(const void* p) { return *static_cast<const float*>(p); }

// The operands as dense NCHW / KCRS floats, rounded as the math type says.
std::vector<float> dense_x(const Conv& c, const cudnnTensorStruct& d, const void* p) {
  std::vector<float> v(size_t(c.N) * c.C * c.H * c.W);
  size_t i = 0;
  for (int n = 0; n < c.N; ++n)
    for (int ch = 0; ch < c.C; ++ch)
      for (int h = 0; h < c.H; ++h)
        for (int w = 0; w < c.W; ++w) v[i++] = in(p, c.type, tensor_offset(d, n, ch, h, w), c.tf32);
  return v;
}
std::vector<float> dense_w(const Conv& c, const cudnnFilterStruct& d, const void* p) {
  std::vector<float> v(filter_elems(d));
  for (size_t i = 0; i < v.size(); ++i) v[i] = in(p, c.type, i, c.tf32);
  return v;
}

}  // namespace

namespace mdps::standin {
bool cudnn_handle_live(cudnnHandle_t h) { return live(h); }
}  // namespace mdps::standin

extern "C" {

const char* cudnnGetErrorString(cudnnStatus_t s) {
  switch (s) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    default: return "CUDNN_STATUS (stand-in: unrecognized)";
  }
}

cudnnStatus_t cudnnCreate(cudnnHandle_t* h) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();
    return CUDNN_STATUS_NOT_INITIALIZED;
  }
  return create(h, "cudnnCreate");
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t h) {
  if (!h) return refuse("cudnnDestroy", CUDNN_STATUS_BAD_PARAM, "null handle");
  return destroy(h, "cudnnDestroy");
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s) {
  if (!live(h)) return refuse("cudnnSetStream", CUDNN_STATUS_BAD_PARAM, "handle not created");
  if (!stream_live(s)) return refuse("cudnnSetStream", CUDNN_STATUS_BAD_PARAM, "stream not live");
  h->stream = s;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* d) { return create(d, "cudnnCreateTensorDescriptor"); }
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) { return destroy(d, "cudnnDestroyTensorDescriptor"); }
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* d) { return create(d, "cudnnCreateFilterDescriptor"); }
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) { return destroy(d, "cudnnDestroyFilterDescriptor"); }
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* d) {
  return create(d, "cudnnCreateConvolutionDescriptor");
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
  return destroy(d, "cudnnDestroyConvolutionDescriptor");
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t f, cudnnDataType_t t, int n,
                                         int c, int h, int w) {
  const char* fn = "cudnnSetTensor4dDescriptor";
  if (!live(d)) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "descriptor not created");
  if (f != CUDNN_TENSOR_NCHW) return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "stand-in: NCHW only");
  if (!data_type_ok(t)) return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "stand-in: FLOAT or BFLOAT16 data only");
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "a dimension <= 0");
  d->set = true;
  d->type = t;
  const int dims[4] = {n, c, h, w};
  const int strides[4] = {c * h * w, h * w, w, 1};
  for (int i = 0; i < 4; ++i) d->dim[i] = dims[i], d->stride[i] = strides[i];
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t t, cudnnTensorFormat_t f, int k,
                                         int c, int h, int w) {
  const char* fn = "cudnnSetFilter4dDescriptor";
  if (!live(d)) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "descriptor not created");
  if (f != CUDNN_TENSOR_NCHW) return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "stand-in: NCHW only");
  if (!data_type_ok(t)) return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "stand-in: FLOAT or BFLOAT16 data only");
  if (k <= 0 || c <= 0 || h <= 0 || w <= 0) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "a dimension <= 0");
  d->set = true;
  d->type = t;
  d->dim[0] = k, d->dim[1] = c, d->dim[2] = h, d->dim[3] = w;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w, int u, int v,
                                              int dil_h, int dil_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t compute) {
  const char* fn = "cudnnSetConvolution2dDescriptor";
  if (!live(d)) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "descriptor not created");
  if (pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dil_h <= 0 || dil_w <= 0)
    return refuse(fn, CUDNN_STATUS_BAD_PARAM, "negative padding or stride/dilation < 1");
  if (mode != CUDNN_CROSS_CORRELATION && mode != CUDNN_CONVOLUTION)
    return refuse(fn, CUDNN_STATUS_BAD_PARAM, "unknown mode");
  if (mode != CUDNN_CROSS_CORRELATION) return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "stand-in: cross-correlation only");
  d->set = true;
  d->pad_h = pad_h, d->pad_w = pad_w, d->u = u, d->v = v, d->dil_h = dil_h, d->dil_w = dil_w;
  d->mode = mode;
  d->compute = compute;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) {
  if (!live(d)) return refuse("cudnnSetConvolutionMathType", CUDNN_STATUS_BAD_PARAM, "descriptor not created");
  if (m != CUDNN_DEFAULT_MATH && m != CUDNN_TENSOR_OP_MATH && m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
      m != CUDNN_FMA_MATH)
    return refuse("cudnnSetConvolutionMathType", CUDNN_STATUS_BAD_PARAM, "unknown math type");
  d->math = m;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t cv,
                                                    const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w,
                                                    int* n, int* c, int* h, int* wo) {
  const char* fn = "cudnnGetConvolution2dForwardOutputDim";
  if (!live(cv) || !live(x) || !live(w) || !cv->set || !x->set || !w->set)
    return refuse(fn, CUDNN_STATUS_BAD_PARAM, "descriptor not created or not set");
  if (!n || !c || !h || !wo) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "null output");
  if (x->dim[1] != w->dim[1]) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "input channels differ from the filter's");
  const int P = 1 + (x->dim[2] + 2 * cv->pad_h - ((w->dim[2] - 1) * cv->dil_h + 1)) / cv->u;
  const int Q = 1 + (x->dim[3] + 2 * cv->pad_w - ((w->dim[3] - 1) * cv->dil_w + 1)) / cv->v;
  if (P <= 0 || Q <= 0) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "filter larger than the padded input");
  *n = x->dim[0], *c = w->dim[0], *h = P, *wo = Q;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t h, int* count) {
  if (!live(h) || !count) return refuse("cudnnGetConvolutionForwardAlgorithmMaxCount", CUDNN_STATUS_BAD_PARAM, "bad handle or count");
  *count = 8;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t h, int* count) {
  if (!live(h) || !count) return refuse("cudnnGetConvolutionBackwardDataAlgorithmMaxCount", CUDNN_STATUS_BAD_PARAM, "bad handle or count");
  *count = 6;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t h, int* count) {
  if (!live(h) || !count) return refuse("cudnnGetConvolutionBackwardFilterAlgorithmMaxCount", CUDNN_STATUS_BAD_PARAM, "bad handle or count");
  *count = 7;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                     const cudnnFilterDescriptor_t w,
                                                     const cudnnConvolutionDescriptor_t cv,
                                                     const cudnnTensorDescriptor_t y, const int requested,
                                                     int* returned, cudnnConvolutionFwdAlgoPerf_t* perf) {
  const char* fn = "cudnnGetConvolutionForwardAlgorithm_v7";
  Conv c;
  if (cudnnStatus_t s = describe(fn, h, x, w, cv, y, c); s != CUDNN_STATUS_SUCCESS) return s;
  return ranked<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(fn, 0, c, requested, returned, perf);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t h, const cudnnFilterDescriptor_t w,
                                                          const cudnnTensorDescriptor_t dy,
                                                          const cudnnConvolutionDescriptor_t cv,
                                                          const cudnnTensorDescriptor_t dx, const int requested,
                                                          int* returned, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
  const char* fn = "cudnnGetConvolutionBackwardDataAlgorithm_v7";
  Conv c;
  if (cudnnStatus_t s = describe(fn, h, dx, w, cv, dy, c); s != CUDNN_STATUS_SUCCESS) return s;
  return ranked<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(fn, 1, c, requested, returned, perf);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                            const cudnnTensorDescriptor_t dy,
                                                            const cudnnConvolutionDescriptor_t cv,
                                                            const cudnnFilterDescriptor_t dw, const int requested,
                                                            int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
  const char* fn = "cudnnGetConvolutionBackwardFilterAlgorithm_v7";
  Conv c;
  if (cudnnStatus_t s = describe(fn, h, x, dw, cv, dy, c); s != CUDNN_STATUS_SUCCESS) return s;
  return ranked<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(fn, 2, c, requested, returned,
                                                                                     perf);
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                      const cudnnFilterDescriptor_t w,
                                                      const cudnnConvolutionDescriptor_t cv,
                                                      const cudnnTensorDescriptor_t y, cudnnConvolutionFwdAlgo_t algo,
                                                      size_t* bytes) {
  const char* fn = "cudnnGetConvolutionForwardWorkspaceSize";
  Conv c;
  if (cudnnStatus_t s = describe(fn, h, x, w, cv, y, c); s != CUDNN_STATUS_SUCCESS) return s;
  return workspace_size(fn, 0, c, int(algo), bytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t h, const cudnnFilterDescriptor_t w,
                                                           const cudnnTensorDescriptor_t dy,
                                                           const cudnnConvolutionDescriptor_t cv,
                                                           const cudnnTensorDescriptor_t dx,
                                                           cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
  const char* fn = "cudnnGetConvolutionBackwardDataWorkspaceSize";
  Conv c;
  if (cudnnStatus_t s = describe(fn, h, dx, w, cv, dy, c); s != CUDNN_STATUS_SUCCESS) return s;
  return workspace_size(fn, 1, c, int(algo), bytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                             const cudnnTensorDescriptor_t dy,
                                                             const cudnnConvolutionDescriptor_t cv,
                                                             const cudnnFilterDescriptor_t dw,
                                                             cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
  const char* fn = "cudnnGetConvolutionBackwardFilterWorkspaceSize";
  Conv c;
  if (cudnnStatus_t s = describe(fn, h, x, dw, cv, dy, c); s != CUDNN_STATUS_SUCCESS) return s;
  return workspace_size(fn, 2, c, int(algo), bytes);
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void* alpha, const cudnnTensorDescriptor_t xd,
                                      const void* x, const cudnnFilterDescriptor_t wd, const void* w,
                                      const cudnnConvolutionDescriptor_t cv, cudnnConvolutionFwdAlgo_t algo, void* ws,
                                      size_t ws_bytes, const void* beta, const cudnnTensorDescriptor_t yd, void* y) {
  const char* fn = "cudnnConvolutionForward";
  Conv c;
  if (cudnnStatus_t s = describe(fn, h, xd, wd, cv, yd, c); s != CUDNN_STATUS_SUCCESS) return s;
  if (!alpha || !beta) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "null alpha or beta");
  const size_t eb = elem_bytes(c.type);
  if (cudnnStatus_t s = ready(fn, 0, c, int(algo), ws, ws_bytes,
                              {{x, tensor_elems_extent(*xd) * eb}, {w, filter_elems(*wd) * eb}, {y, tensor_elems_extent(*yd) * eb}});
      s != CUDNN_STATUS_SUCCESS)
    return s;
  const float a = scalar(alpha), b = scalar(beta);
  // Dense float copies of the inputs (rounded as the math type says), then
  // each output summed over (ci, r, s) in that order.
  std::vector<float> X = dense_x(c, *xd, x), Wt = dense_w(c, *wd, w);
  std::vector<float> acc(size_t(c.P) * c.Q);
  for (int n = 0; n < c.N; ++n)
    for (int k = 0; k < c.K; ++k) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int ci = 0; ci < c.C; ++ci)
        for (int r = 0; r < c.R; ++r)
          for (int s = 0; s < c.S; ++s) {
            const float wv = Wt[((size_t(k) * c.C + ci) * c.R + r) * c.S + s];
            for (int p = 0; p < c.P; ++p) {
              const int hh = p * cv->u - cv->pad_h + r * cv->dil_h;
              if (hh < 0 || hh >= c.H) continue;
              const float* xr = &X[((size_t(n) * c.C + ci) * c.H + hh) * c.W];
              float* ar = &acc[size_t(p) * c.Q];
              for (int q = 0; q < c.Q; ++q) {
                const int ww = q * cv->v - cv->pad_w + s * cv->dil_w;
                if (ww >= 0 && ww < c.W) ar[q] += xr[ww] * wv;
              }
            }
          }
      for (int p = 0; p < c.P; ++p)
        for (int q = 0; q < c.Q; ++q) blend(y, c.type, tensor_offset(*yd, n, k, p, q), a, acc[size_t(p) * c.Q + q], b);
    }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void* alpha, const cudnnFilterDescriptor_t wd,
                                           const void* w, const cudnnTensorDescriptor_t dyd, const void* dy,
                                           const cudnnConvolutionDescriptor_t cv, cudnnConvolutionBwdDataAlgo_t algo,
                                           void* ws, size_t ws_bytes, const void* beta,
                                           const cudnnTensorDescriptor_t dxd, void* dx) {
  const char* fn = "cudnnConvolutionBackwardData";
  Conv c;
  if (cudnnStatus_t s = describe(fn, h, dxd, wd, cv, dyd, c); s != CUDNN_STATUS_SUCCESS) return s;
  if (!alpha || !beta) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "null alpha or beta");
  const size_t eb = elem_bytes(c.type);
  if (cudnnStatus_t s = ready(fn, 1, c, int(algo), ws, ws_bytes,
                              {{w, filter_elems(*wd) * eb}, {dy, tensor_elems_extent(*dyd) * eb}, {dx, tensor_elems_extent(*dxd) * eb}});
      s != CUDNN_STATUS_SUCCESS)
    return s;
  const float a = scalar(alpha), b = scalar(beta);
  std::vector<float> acc(size_t(c.N) * c.C * c.H * c.W, 0.f);
  std::vector<float> DY(size_t(c.N) * c.K * c.P * c.Q), Wt = dense_w(c, *wd, w);
  for (int n = 0; n < c.N; ++n)
    for (int k = 0; k < c.K; ++k)
      for (int p = 0; p < c.P; ++p)
        for (int q = 0; q < c.Q; ++q)
          DY[((size_t(n) * c.K + k) * c.P + p) * c.Q + q] = in(dy, c.type, tensor_offset(*dyd, n, k, p, q), c.tf32);
  for (int n = 0; n < c.N; ++n)
    for (int k = 0; k < c.K; ++k)
      for (int ci = 0; ci < c.C; ++ci)
        for (int r = 0; r < c.R; ++r)
          for (int s = 0; s < c.S; ++s) {
            const float wv = Wt[((size_t(k) * c.C + ci) * c.R + r) * c.S + s];
            for (int p = 0; p < c.P; ++p) {
              const int hh = p * cv->u - cv->pad_h + r * cv->dil_h;
              if (hh < 0 || hh >= c.H) continue;
              const float* g = &DY[((size_t(n) * c.K + k) * c.P + p) * c.Q];
              float* ar = &acc[((size_t(n) * c.C + ci) * c.H + hh) * c.W];
              for (int q = 0; q < c.Q; ++q) {
                const int ww = q * cv->v - cv->pad_w + s * cv->dil_w;
                if (ww >= 0 && ww < c.W) ar[ww] += g[q] * wv;
              }
            }
          }
  for (int n = 0; n < c.N; ++n)
    for (int ci = 0; ci < c.C; ++ci)
      for (int hh = 0; hh < c.H; ++hh)
        for (int ww = 0; ww < c.W; ++ww)
          blend(dx, c.type, tensor_offset(*dxd, n, ci, hh, ww), a, acc[((size_t(n) * c.C + ci) * c.H + hh) * c.W + ww], b);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void* alpha, const cudnnTensorDescriptor_t xd,
                                             const void* x, const cudnnTensorDescriptor_t dyd, const void* dy,
                                             const cudnnConvolutionDescriptor_t cv,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void* ws, size_t ws_bytes,
                                             const void* beta, const cudnnFilterDescriptor_t dwd, void* dw) {
  const char* fn = "cudnnConvolutionBackwardFilter";
  Conv c;
  if (cudnnStatus_t s = describe(fn, h, xd, dwd, cv, dyd, c); s != CUDNN_STATUS_SUCCESS) return s;
  if (!alpha || !beta) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "null alpha or beta");
  const size_t eb = elem_bytes(c.type);
  if (cudnnStatus_t s = ready(fn, 2, c, int(algo), ws, ws_bytes,
                              {{x, tensor_elems_extent(*xd) * eb}, {dy, tensor_elems_extent(*dyd) * eb}, {dw, filter_elems(*dwd) * eb}});
      s != CUDNN_STATUS_SUCCESS)
    return s;
  const float a = scalar(alpha), b = scalar(beta);
  for (int k = 0; k < c.K; ++k)
    for (int ci = 0; ci < c.C; ++ci)
      for (int r = 0; r < c.R; ++r)
        for (int s = 0; s < c.S; ++s) {
          float acc = 0.f;
          for (int n = 0; n < c.N; ++n)
            for (int p = 0; p < c.P; ++p) {
              const int hh = p * cv->u - cv->pad_h + r * cv->dil_h;
              if (hh < 0 || hh >= c.H) continue;
              for (int q = 0; q < c.Q; ++q) {
                const int ww = q * cv->v - cv->pad_w + s * cv->dil_w;
                if (ww < 0 || ww >= c.W) continue;
                acc += in(dy, c.type, tensor_offset(*dyd, n, k, p, q), c.tf32) *
                       in(x, c.type, tensor_offset(*xd, n, ci, hh, ww), c.tf32);
              }
            }
          blend(dw, c.type, filter_offset(*dwd, k, ci, r, s), a, acc, b);
        }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t h, const void* alpha, const cudnnTensorDescriptor_t dyd,
                                           const void* dy, const void* beta, const cudnnTensorDescriptor_t dbd,
                                           void* db) {
  const char* fn = "cudnnConvolutionBackwardBias";
  if (!live(h)) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "handle not created");
  if (!live(dyd) || !live(dbd) || !dyd->set || !dbd->set) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "descriptor not set");
  if (!alpha || !beta) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "null alpha or beta");
  if (dbd->dim[0] != 1 || dbd->dim[1] != dyd->dim[1] || dbd->dim[2] != 1 || dbd->dim[3] != 1)
    return refuse(fn, CUDNN_STATUS_BAD_PARAM, "db is not [1, C, 1, 1] of dy's C");
  if (dyd->type != CUDNN_DATA_FLOAT || dbd->type != CUDNN_DATA_FLOAT)
    return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "stand-in: FLOAT only");
  if (faulted()) return CUDNN_STATUS_EXECUTION_FAILED;
  for (auto [p, bytes, which] : {std::tuple<const void*, size_t, const char*>{dy, tensor_elems_extent(*dyd) * 4, "dy"},
                                 {db, tensor_elems_extent(*dbd) * 4, "db"}})
    if (std::string w = device_range_problem(p, bytes); !w.empty())
      return device_fault(fn, std::string(which) + " " + w), CUDNN_STATUS_EXECUTION_FAILED;
  const float a = scalar(alpha), b = scalar(beta);
  for (int k = 0; k < dyd->dim[1]; ++k) {
    float acc = 0.f;
    for (int n = 0; n < dyd->dim[0]; ++n)
      for (int p = 0; p < dyd->dim[2]; ++p)
        for (int q = 0; q < dyd->dim[3]; ++q) acc += load(dy, CUDNN_DATA_FLOAT, tensor_offset(*dyd, n, k, p, q));
    blend(db, CUDNN_DATA_FLOAT, tensor_offset(*dbd, 0, k, 0, 0), a, acc, b);
  }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnAddTensor(cudnnHandle_t h, const void* alpha, const cudnnTensorDescriptor_t ad, const void* A,
                             const void* beta, const cudnnTensorDescriptor_t cd, void* C) {
  const char* fn = "cudnnAddTensor";
  if (!live(h)) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "handle not created");
  if (!live(ad) || !live(cd) || !ad->set || !cd->set) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "descriptor not set");
  if (!alpha || !beta) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "null alpha or beta");
  for (int i = 0; i < 4; ++i)
    if (ad->dim[i] != 1 && ad->dim[i] != cd->dim[i])
      return refuse(fn, CUDNN_STATUS_BAD_PARAM, "A's dimension " + std::to_string(i) + " is neither 1 nor C's");
  if (ad->type != cd->type) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "A and C data types differ");
  if (faulted()) return CUDNN_STATUS_EXECUTION_FAILED;
  const size_t eb = elem_bytes(cd->type);
  for (auto [p, bytes, which] : {std::tuple<const void*, size_t, const char*>{A, tensor_elems_extent(*ad) * eb, "A"},
                                 {C, tensor_elems_extent(*cd) * eb, "C"}})
    if (std::string w = device_range_problem(p, bytes); !w.empty())
      return device_fault(fn, std::string(which) + " " + w), CUDNN_STATUS_EXECUTION_FAILED;
  const float a = scalar(alpha), b = scalar(beta);
  for (int n = 0; n < cd->dim[0]; ++n)
    for (int c = 0; c < cd->dim[1]; ++c)
      for (int p = 0; p < cd->dim[2]; ++p)
        for (int q = 0; q < cd->dim[3]; ++q) {
          const float v = load(A, ad->type, tensor_offset(*ad, ad->dim[0] == 1 ? 0 : n, ad->dim[1] == 1 ? 0 : c,
                                                          ad->dim[2] == 1 ? 0 : p, ad->dim[3] == 1 ? 0 : q));
          blend(C, cd->type, tensor_offset(*cd, n, c, p, q), a, v, b);
        }
  return CUDNN_STATUS_SUCCESS;
}

}  // extern "C"
