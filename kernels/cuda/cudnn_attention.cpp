#include "kernels/cuda/cudnn_attention.h"
#include "engine/core/common.h"
#include <cuda_runtime.h>
#include <cudnn.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

namespace mdps::cuda {

namespace {

constexpr cudnnStatus_t kOk = CUDNN_STATUS_SUCCESS;

// One backend descriptor, destroyed with its owner.
class Desc {
 public:
  Desc() = default;
  explicit Desc(cudnnBackendDescriptorType_t type) : status_(cudnnBackendCreateDescriptor(type, &d_)) {
    if (status_ != kOk) d_ = nullptr;
  }
  ~Desc() {
    if (d_) cudnnBackendDestroyDescriptor(d_);
  }
  Desc(Desc&& o) noexcept : d_(std::exchange(o.d_, nullptr)), status_(o.status_) {}
  Desc& operator=(Desc&& o) noexcept {
    if (this != &o) {
      if (d_) cudnnBackendDestroyDescriptor(d_);
      d_ = std::exchange(o.d_, nullptr);
      status_ = o.status_;
    }
    return *this;
  }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  cudnnBackendDescriptor_t get() const { return d_; }
  cudnnStatus_t created() const { return status_; }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
  cudnnStatus_t status_ = CUDNN_STATUS_NOT_INITIALIZED;
};

// A sequence of cuDNN calls that stops at the first refusal and keeps its
// step and status: the reason the caller reports when it falls back.
class Steps {
 public:
  bool ok(cudnnStatus_t s, const char* step) {
    if (s == kOk) return true;
    if (why_.empty()) why_ = cat(step, ": ", cudnnGetErrorString(s));
    return false;
  }
  void fail(const std::string& why) {
    if (why_.empty()) why_ = why;
  }
  const std::string& why() const { return why_; }

 private:
  std::string why_;
};

bool set_desc(Steps& st, const Desc& d, cudnnBackendAttributeName_t name, const Desc& value, const char* step) {
  cudnnBackendDescriptor_t v = value.get();
  return st.ok(cudnnBackendSetAttribute(d.get(), name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v), step);
}

using Dims = std::array<int64_t, 4>;

// A 4-D tensor [b, h, s, d] of `type` with the given strides; by_value: a
// host scalar read when the plan executes (the attention scale).
bool make_tensor(Steps& st, Desc& t, int64_t uid, cudnnDataType_t type, const Dims& dims, const Dims& strides,
                 bool by_value, const char* step) {
  t = Desc(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const int64_t alignment = by_value ? int64_t(sizeof(float)) : 16;
  bool ok = st.ok(t.created(), step) &&
            st.ok(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type),
                  step) &&
            st.ok(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data()),
                  step) &&
            st.ok(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data()),
                  step) &&
            st.ok(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid), step) &&
            st.ok(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment),
                  step);
  if (ok && by_value) {
    const bool yes = true;
    ok = st.ok(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &yes), step);
  }
  return ok && st.ok(cudnnBackendFinalize(t.get()), step);
}

// Whether cuDNN marks the engine of this configuration nondeterministic
// (atomics in the backward's dq, typically). Unknown counts as deterministic.
bool nondeterministic(cudnnBackendDescriptor_t cfg) {
  Desc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  if (engine.created() != kOk) return false;
  cudnnBackendDescriptor_t e = engine.get();
  int64_t n = 0;
  if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &e) != kOk)
    return false;
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  int64_t k = 0;
  if (cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                               CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &k, notes) != kOk)
    return false;
  for (int64_t i = 0; i < k && i < CUDNN_NUMERICAL_NOTE_TYPE_COUNT; ++i)
    if (notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC) return true;
  return false;
}

// Tensor uids of the two operations (the variant packs bind pointers to them).
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kScale, kDO, kDQ, kDK, kDV };

}  // namespace

struct CudnnAttention::Plan {
  std::vector<Desc> keep;  // tensors, operation, graph, heuristics, engine configurations
  Desc plan;
  int64_t workspace = 0;
  bool deterministic = true;
};

CudnnAttention::CudnnAttention(CudnnHandle& handle, CUstream_st* stream, CachingAllocator& alloc)
    : handle_(handle), stream_(stream), alloc_(alloc) {
  const char* env = std::getenv("MDPS_CUDNN_SDPA");
  disabled_ = env && std::strcmp(env, "0") == 0;
}

CudnnAttention::~CudnnAttention() = default;

bool CudnnAttention::ready(const SdpaShape& s, bool backward) { return !disabled_ && plan(s, backward) != nullptr; }

// Called with mu_ held. One line on stderr per refused shape: a bf16 run that
// quietly took the slower path would be a surprise in a benchmark.
void CudnnAttention::refuse(const std::array<int64_t, 4>& key, const std::string& why) {
  refusal_ = cat(key[3] ? "backward" : "forward", " [batch x heads ", key[0], ", tokens ", key[1], ", channels ", key[2],
                 "]: ", why);
  plans_[key] = nullptr;
  ++refused_;
  std::fprintf(stderr, "mdps: cuDNN fused attention refused %s; attention runs as cuBLAS products and softmax\n",
               refusal_.c_str());
}

std::string CudnnAttention::last_refusal() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refusal_;
}

size_t CudnnAttention::plans() const {
  std::lock_guard<std::mutex> lock(mu_);
  return plans_.size() - refused_;
}

size_t CudnnAttention::refused() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refused_;
}

CudnnAttention::Plan* CudnnAttention::plan(const SdpaShape& s, bool backward) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::array<int64_t, 4> key{s.BH, s.L, s.ch, backward ? 1 : 0};
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second.get();
  if (s.BH <= 0 || s.L <= 0 || s.ch <= 0 || s.ch % 8 != 0 || s.ch > 256) {
    refuse(key, cat("head size ", s.ch, ": the fused kernels take multiples of 8 up to 256"));
    return nullptr;
  }
  cudnnHandle_t h = nullptr;
  try {
    h = static_cast<cudnnHandle_t>(handle_.get());
  } catch (const Error& e) {
    refuse(key, e.what());  // no cuDNN here: the generic path
    return nullptr;
  }

  auto p = std::make_unique<Plan>();
  Steps st;
  const SdpaLayout lay = sdpa_layout(s);
  const Dims one{1, 1, 1, 1};
  const cudnnDataType_t bf16 = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
  auto tensor = [&](int64_t uid, cudnnDataType_t type, const Dims& dims, const Dims& strides, bool by_value,
                    const char* step) -> const Desc* {
    p->keep.emplace_back();
    if (!make_tensor(st, p->keep.back(), uid, type, dims, strides, by_value, step)) return nullptr;
    return &p->keep.back();
  };
  p->keep.reserve(32);  // the pointers above stay valid

  Desc op(backward ? CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR : CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR);
  bool ok = st.ok(op.created(), backward ? "SDPA backward operation (cuDNN >= 9.17)" : "SDPA forward operation");
  const Desc *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr, *stats = nullptr, *scale = nullptr;
  ok = ok && (q = tensor(kQ, bf16, lay.q.dims, lay.q.strides, false, "tensor q")) &&
       (k = tensor(kK, bf16, lay.k.dims, lay.k.strides, false, "tensor k")) &&
       (v = tensor(kV, bf16, lay.v.dims, lay.v.strides, false, "tensor v")) &&
       (o = tensor(kO, bf16, lay.o.dims, lay.o.strides, false, "tensor o")) &&
       (stats = tensor(kStats, f32, lay.stats.dims, lay.stats.strides, false, "tensor stats")) &&
       (scale = tensor(kScale, f32, one, one, true, "tensor scale"));
  if (ok && !backward) {
    ok = set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, *q, "SDPA forward q") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, *k, "SDPA forward k") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, *v, "SDPA forward v") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, *o, "SDPA forward o") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_FWD_STATSDESC, *stats, "SDPA forward stats") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, *scale, "SDPA forward scale");
  } else if (ok) {
    const Desc *dout = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr;
    ok = (dout = tensor(kDO, bf16, lay.o.dims, lay.o.strides, false, "tensor do")) &&
         (dq = tensor(kDQ, bf16, lay.q.dims, lay.q.strides, false, "tensor dq")) &&
         (dk = tensor(kDK, bf16, lay.k.dims, lay.k.strides, false, "tensor dk")) &&
         (dv = tensor(kDV, bf16, lay.v.dims, lay.v.strides, false, "tensor dv")) &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_BWD_QDESC, *q, "SDPA backward q") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_BWD_KDESC, *k, "SDPA backward k") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_BWD_VDESC, *v, "SDPA backward v") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_BWD_ODESC, *o, "SDPA backward o") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_BWD_DODDESC, *dout, "SDPA backward do") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_BWD_STATSDESC, *stats, "SDPA backward stats") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_BWD_SCALEDESC, *scale, "SDPA backward scale") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_BWD_DQDESC, *dq, "SDPA backward dq") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_BWD_DKDESC, *dk, "SDPA backward dk") &&
         set_desc(st, op, CUDNN_ATTR_OPERATION_SDPA_BWD_DVDESC, *dv, "SDPA backward dv");
  }
  ok = ok && st.ok(cudnnBackendFinalize(op.get()), backward ? "SDPA backward operation" : "SDPA forward operation");

  Desc graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  if (ok) {
    cudnnBackendDescriptor_t ops = op.get();
    ok = st.ok(graph.created(), "operation graph") &&
         st.ok(cudnnBackendSetAttribute(graph.get(), CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h),
               "operation graph") &&
         st.ok(cudnnBackendSetAttribute(graph.get(), CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                        &ops),
               "operation graph") &&
         st.ok(cudnnBackendFinalize(graph.get()), "operation graph");
  }

  // The engine configurations of the heuristics (mode A, then the fallback
  // list), in their order; the first whose plan finalizes wins, a
  // deterministic one preferred.
  bool found = false;
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    if (!ok || found) break;
    Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    cudnnBackendDescriptor_t g = graph.get();
    Steps hs;
    if (!(hs.ok(heur.created(), "heuristics") &&
          hs.ok(cudnnBackendSetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g),
                "heuristics") &&
          hs.ok(cudnnBackendSetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode),
                "heuristics") &&
          hs.ok(cudnnBackendFinalize(heur.get()), "heuristics"))) {
      st.fail(hs.why());
      continue;
    }
    int64_t count = 0;
    if (cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                                 nullptr) != kOk ||
        count <= 0)
      continue;
    std::vector<Desc> cfgs;
    std::vector<cudnnBackendDescriptor_t> raw;
    cfgs.reserve(size_t(count));
    for (int64_t i = 0; i < count; ++i) {
      cfgs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
      raw.push_back(cfgs.back().get());
    }
    int64_t got = 0;
    if (cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got,
                                 raw.data()) != kOk)
      continue;
    for (int pass = 0; pass < 2 && !found; ++pass) {
      for (int64_t i = 0; i < got && i < count && !found; ++i) {
        const bool nondet = nondeterministic(raw[size_t(i)]);
        if (pass == 0 && nondet) continue;  // deterministic engines first
        if (pass == 1 && !nondet) continue;  // tried already
        Desc plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
        if (plan.created() != kOk) continue;
        cudnnBackendDescriptor_t cfg = raw[size_t(i)];
        if (cudnnBackendSetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h) != kOk ||
            cudnnBackendSetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg) != kOk ||
            cudnnBackendFinalize(plan.get()) != kOk)
          continue;
        int64_t ws = 0, n = 0;
        if (cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n,
                                     &ws) != kOk || ws < 0)
          continue;
        p->plan = std::move(plan);
        p->workspace = ws;
        p->deterministic = !nondet;
        found = true;
      }
    }
    if (found) {
      p->keep.push_back(std::move(heur));
      for (auto& c : cfgs) p->keep.push_back(std::move(c));
    }
  }
  if (ok && !found) st.fail("no engine of the heuristics builds a plan for this shape");
  if (!found) {
    refuse(key, st.why());
    return nullptr;
  }
  p->keep.push_back(std::move(op));
  p->keep.push_back(std::move(graph));
  Plan* raw_plan = p.get();
  plans_[key] = std::move(p);
  return raw_plan;
}

bool CudnnAttention::execute(Plan& p, const int64_t* uids, void* const* ptrs, int n) {
  void* workspace = p.workspace > 0 ? alloc_.allocate(size_t(p.workspace)) : nullptr;
  Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  Steps st;
  const bool ok =
      st.ok(pack.created(), "variant pack") &&
      st.ok(cudnnBackendSetAttribute(pack.get(), CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids),
            "variant pack") &&
      st.ok(cudnnBackendSetAttribute(pack.get(), CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs),
            "variant pack") &&
      st.ok(cudnnBackendSetAttribute(pack.get(), CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1,
                                     &workspace),
            "variant pack") &&
      st.ok(cudnnBackendFinalize(pack.get()), "variant pack") &&
      st.ok(cudnnBackendExecute(static_cast<cudnnHandle_t>(handle_.get()), p.plan.get(), pack.get()), "execute");
  // Stream-ordered: the queued execution still owns the workspace.
  alloc_.free(workspace);
  if (!ok) why_ = st.why();
  return ok;
}

bool CudnnAttention::forward(const SdpaShape& s, float scale, const uint16_t* qkv16, uint16_t* o16, float* stats) {
  if (disabled_) return false;
  Plan* p = plan(s, false);
  if (!p) return false;
  uint16_t* q = const_cast<uint16_t*>(qkv16);
  const SdpaLayout lay = sdpa_layout(s);
  const int64_t uids[] = {kQ, kK, kV, kO, kStats, kScale};
  void* const ptrs[] = {q + lay.q.offset, q + lay.k.offset, q + lay.v.offset, o16, stats, &scale};
  if (execute(*p, uids, ptrs, 6)) return true;
  cudaStreamSynchronize(stream_);  // earlier executions of the plan may still be queued
  std::lock_guard<std::mutex> lock(mu_);
  refuse({s.BH, s.L, s.ch, 0}, why_);  // refused at run time: not again
  return false;
}

bool CudnnAttention::backward(const SdpaShape& s, float scale, const uint16_t* qkv16, const uint16_t* o16,
                              const uint16_t* do16, const float* stats, uint16_t* dqkv16) {
  if (disabled_) return false;
  Plan* p = plan(s, true);
  if (!p) return false;
  uint16_t* q = const_cast<uint16_t*>(qkv16);
  const SdpaLayout lay = sdpa_layout(s);
  const int64_t uids[] = {kQ, kK, kV, kO, kDO, kStats, kScale, kDQ, kDK, kDV};
  void* const ptrs[] = {q + lay.q.offset,
                        q + lay.k.offset,
                        q + lay.v.offset,
                        const_cast<uint16_t*>(o16),
                        const_cast<uint16_t*>(do16),
                        const_cast<float*>(stats),
                        &scale,
                        dqkv16 + lay.q.offset,
                        dqkv16 + lay.k.offset,
                        dqkv16 + lay.v.offset};
  if (execute(*p, uids, ptrs, 10)) return true;
  cudaStreamSynchronize(stream_);
  std::lock_guard<std::mutex> lock(mu_);
  refuse({s.BH, s.L, s.ch, 1}, why_);
  return false;
}

}  // namespace mdps::cuda
