// CPU stand-in of cuDNN's backend descriptor API (cudnn_graph.h, cuDNN 9) for
// the graphs the backend builds: one SDPA forward or backward operation
// (CUDNN_BACKEND_OPERATION_SDPA_FWD/BWD_DESCRIPTOR) on 4-D [b, h, s, d]
// tensors read through the strides their descriptors give. The documented
// life cycle is enforced: attributes are set before cudnnBackendFinalize
// (setting a finalized descriptor: CUDNN_STATUS_NOT_INITIALIZED), read after
// it (reading an unfinalized one: CUDNN_STATUS_NOT_INITIALIZED), finalize
// checks that required attributes are present and consistent
// (CUDNN_STATUS_BAD_PARAM), attribute names must belong to the descriptor
// type and carry their documented attribute type and element count
// (CUDNN_STATUS_BAD_PARAM), and cudnnBackendExecute takes only finalized
// plans and variant packs whose unique ids cover every tensor of the graph,
// with device pointers in live memory (host pointers for by-value scalars)
// and a workspace of the plan's size.
//
// Numerics: bf16 q, k, v (and o, do) read as float, float accumulation,
// outputs rounded to bf16; stats = the log-sum-exp of each query's scaled
// scores (float). Forward: o = softmax(scale q k^T) v. Backward, from the
// stats: P = exp(scale q k^T - stats), dv = P^T do, dP = do v^T,
// D = rowsum(do * o), dS = P (dP - D), dq = scale dS k, dk = scale dS^T q.
//
// "Heuristics": mode A offers the backward two engines, a nondeterministic
// one first (NUMERICAL_NOTE_NONDETERMINISTIC) and a deterministic one that
// needs a workspace; the forward one engine without a workspace; the
// fallback mode one deterministic engine with a workspace. Invented, so the
// backend's choice among them is exercised.
#include "tests/standin/standin.h"
#include <cudnn.h>
#include <cuda_runtime.h>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

using namespace mdps::standin;

namespace mdps::standin {
bool cudnn_handle_live(cudnnHandle_t h);
}

namespace {

struct TensorInfo {
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  std::vector<int64_t> dims, strides;
  int64_t uid = -1, alignment = 0;
  bool by_value = false, is_virtual = false;
  size_t extent() const {  // elements spanned
    size_t e = 1;
    for (size_t i = 0; i < dims.size(); ++i) e += size_t(dims[i] - 1) * size_t(strides[i]);
    return e;
  }
};

// What finalize keeps of each descriptor (by value: destroying a descriptor
// another one was built from never dangles).
struct Engine {
  int index = 0;
  bool nondet = false;
  int64_t workspace = 0;
};

struct Desc {
  cudnnBackendDescriptorType_t type;
  bool finalized = false;
  std::map<int, std::pair<cudnnBackendAttributeType_t, std::vector<unsigned char>>> attrs;  // raw, as set
  // after finalize
  TensorInfo tensor;
  bool backward = false;
  std::map<int, TensorInfo> op_tensors;  // by attribute name
  cudnnHandle_t handle = nullptr;
  std::shared_ptr<Desc> graph_op;  // graph: a copy of its operation
  std::shared_ptr<Desc> graph;     // heuristics / configuration / plan: a copy of the graph
  Engine engine;
  std::vector<int64_t> uids;
  std::vector<void*> ptrs;
  void* workspace = nullptr;
};

std::mutex mu;
std::set<Desc*>& descs() {
  static auto* s = new std::set<Desc*>;
  return *s;
}
Desc* get(cudnnBackendDescriptor_t d) {
  std::lock_guard<std::mutex> l(mu);
  auto* p = static_cast<Desc*>(d);
  return p && descs().count(p) ? p : nullptr;
}

cudnnStatus_t refuse(const char* fn, cudnnStatus_t s, const std::string& why) {
  misuse(fn, why);
  return s;
}

size_t type_size(cudnnBackendAttributeType_t t) {
  switch (t) {
    case CUDNN_TYPE_HANDLE: return sizeof(cudnnHandle_t);
    case CUDNN_TYPE_DATA_TYPE: return sizeof(cudnnDataType_t);
    case CUDNN_TYPE_BOOLEAN: return sizeof(bool);
    case CUDNN_TYPE_INT64: return sizeof(int64_t);
    case CUDNN_TYPE_FLOAT: return sizeof(float);
    case CUDNN_TYPE_DOUBLE: return sizeof(double);
    case CUDNN_TYPE_VOID_PTR: return sizeof(void*);
    case CUDNN_TYPE_HEUR_MODE: return sizeof(cudnnBackendHeurMode_t);
    case CUDNN_TYPE_NUMERICAL_NOTE: return sizeof(cudnnBackendNumericalNote_t);
    case CUDNN_TYPE_BACKEND_DESCRIPTOR: return sizeof(cudnnBackendDescriptor_t);
    default: return 0;
  }
}

// The attributes each descriptor type accepts: type, element count range.
struct Spec {
  cudnnBackendAttributeType_t type;
  int64_t min, max;
};
const Spec* spec(cudnnBackendDescriptorType_t d, int a) {
  static const std::map<std::pair<int, int>, Spec> table = [] {
    std::map<std::pair<int, int>, Spec> t;
    const int T = CUDNN_BACKEND_TENSOR_DESCRIPTOR;
    t[{T, CUDNN_ATTR_TENSOR_DATA_TYPE}] = {CUDNN_TYPE_DATA_TYPE, 1, 1};
    t[{T, CUDNN_ATTR_TENSOR_DIMENSIONS}] = {CUDNN_TYPE_INT64, 1, 8};
    t[{T, CUDNN_ATTR_TENSOR_STRIDES}] = {CUDNN_TYPE_INT64, 1, 8};
    t[{T, CUDNN_ATTR_TENSOR_UNIQUE_ID}] = {CUDNN_TYPE_INT64, 1, 1};
    t[{T, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT}] = {CUDNN_TYPE_INT64, 1, 1};
    t[{T, CUDNN_ATTR_TENSOR_IS_BY_VALUE}] = {CUDNN_TYPE_BOOLEAN, 1, 1};
    t[{T, CUDNN_ATTR_TENSOR_IS_VIRTUAL}] = {CUDNN_TYPE_BOOLEAN, 1, 1};
    const int F = CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, B = CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR;
    for (int a : {CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC,
                  CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC,
                  CUDNN_ATTR_OPERATION_SDPA_FWD_STATSDESC, CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC})
      t[{F, a}] = {CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, 1};
    for (int a : {CUDNN_ATTR_OPERATION_SDPA_BWD_QDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_KDESC,
                  CUDNN_ATTR_OPERATION_SDPA_BWD_VDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_ODESC,
                  CUDNN_ATTR_OPERATION_SDPA_BWD_STATSDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_SCALEDESC,
                  CUDNN_ATTR_OPERATION_SDPA_BWD_DQDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_DKDESC,
                  CUDNN_ATTR_OPERATION_SDPA_BWD_DVDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_DODDESC})
      t[{B, a}] = {CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, 1};
    const int G = CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR;
    t[{G, CUDNN_ATTR_OPERATIONGRAPH_HANDLE}] = {CUDNN_TYPE_HANDLE, 1, 1};
    t[{G, CUDNN_ATTR_OPERATIONGRAPH_OPS}] = {CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, 64};
    const int H = CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR;
    t[{H, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH}] = {CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, 1};
    t[{H, CUDNN_ATTR_ENGINEHEUR_MODE}] = {CUDNN_TYPE_HEUR_MODE, 1, 1};
    const int P = CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR;
    t[{P, CUDNN_ATTR_EXECUTION_PLAN_HANDLE}] = {CUDNN_TYPE_HANDLE, 1, 1};
    t[{P, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG}] = {CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, 1};
    const int V = CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR;
    t[{V, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS}] = {CUDNN_TYPE_INT64, 0, 1 << 20};
    t[{V, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS}] = {CUDNN_TYPE_VOID_PTR, 0, 1 << 20};
    t[{V, CUDNN_ATTR_VARIANT_PACK_WORKSPACE}] = {CUDNN_TYPE_VOID_PTR, 1, 1};
    return t;
  }();
  auto it = table.find({int(d), a});
  return it == table.end() ? nullptr : &it->second;
}

template <typename T>
bool attr(const Desc& d, int name, std::vector<T>& out) {
  auto it = d.attrs.find(name);
  if (it == d.attrs.end()) return false;
  out.resize(it->second.second.size() / sizeof(T));
  std::memcpy(out.data(), it->second.second.data(), out.size() * sizeof(T));
  return true;
}
template <typename T>
bool attr1(const Desc& d, int name, T& out) {
  auto it = d.attrs.find(name);
  if (it == d.attrs.end() || it->second.second.size() != sizeof(T)) return false;
  std::memcpy(&out, it->second.second.data(), sizeof(T));
  return true;
}

cudnnStatus_t finalize_tensor(Desc& d) {
  const char* fn = "cudnnBackendFinalize(tensor)";
  TensorInfo t;
  if (!attr1(d, CUDNN_ATTR_TENSOR_DATA_TYPE, t.type) || !attr(d, CUDNN_ATTR_TENSOR_DIMENSIONS, t.dims) ||
      !attr(d, CUDNN_ATTR_TENSOR_STRIDES, t.strides) || !attr1(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, t.uid) ||
      !attr1(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, t.alignment))
    return refuse(fn, CUDNN_STATUS_BAD_PARAM, "data type, dimensions, strides, unique id or alignment missing");
  if (t.dims.size() != t.strides.size()) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "dimensions and strides differ in count");
  for (size_t i = 0; i < t.dims.size(); ++i)
    if (t.dims[i] <= 0 || t.strides[i] <= 0) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "a dimension or stride <= 0");
  if (t.alignment <= 0 || (t.alignment & (t.alignment - 1)))
    return refuse(fn, CUDNN_STATUS_BAD_PARAM, "alignment not a power of two");
  attr1(d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, t.by_value);
  attr1(d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, t.is_virtual);
  d.tensor = t;
  return CUDNN_STATUS_SUCCESS;
}

// The operation's tensors: required ones present, finalized tensors, shapes consistent.
cudnnStatus_t finalize_sdpa(Desc& d) {
  const bool bwd = d.type == CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR;
  const char* fn = bwd ? "cudnnBackendFinalize(SDPA backward)" : "cudnnBackendFinalize(SDPA forward)";
  std::vector<int> required = bwd ? std::vector<int>{CUDNN_ATTR_OPERATION_SDPA_BWD_QDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_KDESC,
                                                     CUDNN_ATTR_OPERATION_SDPA_BWD_VDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_ODESC,
                                                     CUDNN_ATTR_OPERATION_SDPA_BWD_DODDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_STATSDESC,
                                                     CUDNN_ATTR_OPERATION_SDPA_BWD_DQDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_DKDESC,
                                                     CUDNN_ATTR_OPERATION_SDPA_BWD_DVDESC}
                                  : std::vector<int>{CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC,
                                                     CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC};
  for (int a : required)
    if (!d.attrs.count(a)) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "tensor attribute " + std::to_string(a) + " missing");
  d.op_tensors.clear();
  for (const auto& [name, value] : d.attrs) {
    cudnnBackendDescriptor_t t;
    std::memcpy(&t, value.second.data(), sizeof t);
    Desc* td = get(t);
    if (!td || td->type != CUDNN_BACKEND_TENSOR_DESCRIPTOR || !td->finalized)
      return refuse(fn, CUDNN_STATUS_BAD_PARAM, "attribute " + std::to_string(name) + " is not a finalized tensor");
    d.op_tensors[name] = td->tensor;
  }
  const int base = bwd ? CUDNN_ATTR_OPERATION_SDPA_BWD_QDESC : CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC;
  const TensorInfo& q = d.op_tensors[base];
  const TensorInfo& k = d.op_tensors[base + 1];
  const TensorInfo& v = d.op_tensors[base + 2];
  const TensorInfo& o = d.op_tensors[base + 3];
  for (const TensorInfo* t : {&q, &k, &v, &o})
    if (t->dims.size() != 4) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "q, k, v, o must be 4-D [b, h, s, d]");
  if (k.dims[0] != q.dims[0] || v.dims[0] != q.dims[0] || o.dims[0] != q.dims[0] || k.dims[1] != q.dims[1] ||
      v.dims[1] != q.dims[1] || o.dims[1] != q.dims[1] || k.dims[3] != q.dims[3] || v.dims[2] != k.dims[2] ||
      o.dims[2] != q.dims[2] || o.dims[3] != v.dims[3])
    return refuse(fn, CUDNN_STATUS_BAD_PARAM, "q, k, v, o shapes are inconsistent");
  for (const TensorInfo* t : {&q, &k, &v, &o})
    if (t->type != CUDNN_DATA_BFLOAT16 && t->type != CUDNN_DATA_HALF)
      return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "q, k, v, o must be bf16 or fp16");
  if (q.type != CUDNN_DATA_BFLOAT16) return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "stand-in: bf16 only");
  const int stats_attr = bwd ? CUDNN_ATTR_OPERATION_SDPA_BWD_STATSDESC : CUDNN_ATTR_OPERATION_SDPA_FWD_STATSDESC;
  if (d.op_tensors.count(stats_attr)) {
    const TensorInfo& s = d.op_tensors[stats_attr];
    if (s.type != CUDNN_DATA_FLOAT || s.dims.size() != 4 || s.dims[0] != q.dims[0] || s.dims[1] != q.dims[1] ||
        s.dims[2] != q.dims[2] || s.dims[3] != 1)
      return refuse(fn, CUDNN_STATUS_BAD_PARAM, "stats must be float [b, h, s_q, 1]");
  }
  const int scale_attr = bwd ? CUDNN_ATTR_OPERATION_SDPA_BWD_SCALEDESC : CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC;
  if (d.op_tensors.count(scale_attr)) {
    const TensorInfo& s = d.op_tensors[scale_attr];
    size_t n = 1;
    for (int64_t x : s.dims) n *= size_t(x);
    if (n != 1 || s.type != CUDNN_DATA_FLOAT) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "scale must be one float");
  }
  if (bwd)
    for (int a : {CUDNN_ATTR_OPERATION_SDPA_BWD_DQDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_DKDESC,
                  CUDNN_ATTR_OPERATION_SDPA_BWD_DVDESC, CUDNN_ATTR_OPERATION_SDPA_BWD_DODDESC}) {
      const int like = a == CUDNN_ATTR_OPERATION_SDPA_BWD_DQDESC   ? base
                       : a == CUDNN_ATTR_OPERATION_SDPA_BWD_DKDESC ? base + 1
                       : a == CUDNN_ATTR_OPERATION_SDPA_BWD_DVDESC ? base + 2
                                                                   : base + 3;
      if (d.op_tensors[a].dims != d.op_tensors[like].dims)
        return refuse(fn, CUDNN_STATUS_BAD_PARAM, "a gradient's shape differs from its tensor's");
    }
  if (q.dims[3] % 8 != 0 || q.dims[3] > 256)
    return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "head dimension not a multiple of 8 up to 256");
  d.backward = bwd;
  std::set<int64_t> uids;
  for (const auto& [name, t] : d.op_tensors)
    if (!uids.insert(t.uid).second) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "two tensors share a unique id");
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t finalize(Desc& d) {
  const char* fn = "cudnnBackendFinalize";
  switch (d.type) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR: return finalize_tensor(d);
    case CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR: return finalize_sdpa(d);
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: {
      std::vector<cudnnBackendDescriptor_t> ops;
      if (!attr1(d, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, d.handle) || !attr(d, CUDNN_ATTR_OPERATIONGRAPH_OPS, ops))
        return refuse(fn, CUDNN_STATUS_BAD_PARAM, "graph without handle or operations");
      if (!cudnn_handle_live(d.handle)) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "graph handle not live");
      if (ops.size() != 1) return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "stand-in: graphs of one SDPA operation");
      Desc* op = get(ops[0]);
      if (!op || !op->finalized || (op->type != CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR &&
                                    op->type != CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR))
        return refuse(fn, CUDNN_STATUS_BAD_PARAM, "operation not a finalized SDPA operation");
      d.graph_op = std::make_shared<Desc>(*op);
      return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: {
      cudnnBackendDescriptor_t g;
      cudnnBackendHeurMode_t mode;
      if (!attr1(d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, g) || !attr1(d, CUDNN_ATTR_ENGINEHEUR_MODE, mode))
        return refuse(fn, CUDNN_STATUS_BAD_PARAM, "heuristics without graph or mode");
      Desc* gd = get(g);
      if (!gd || gd->type != CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR || !gd->finalized)
        return refuse(fn, CUDNN_STATUS_BAD_PARAM, "heuristics graph not finalized");
      if (mode != CUDNN_HEUR_MODE_A && mode != CUDNN_HEUR_MODE_B && mode != CUDNN_HEUR_MODE_FALLBACK &&
          mode != CUDNN_HEUR_MODE_INSTANT)
        return refuse(fn, CUDNN_STATUS_BAD_PARAM, "unknown heuristics mode");
      d.graph = std::make_shared<Desc>(*gd);
      d.engine.index = mode == CUDNN_HEUR_MODE_FALLBACK ? 1 : 0;  // remembered: fallback or not
      return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: {
      cudnnBackendDescriptor_t cfg;
      if (!attr1(d, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, d.handle) || !attr1(d, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, cfg))
        return refuse(fn, CUDNN_STATUS_BAD_PARAM, "plan without handle or engine configuration");
      if (!cudnn_handle_live(d.handle)) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "plan handle not live");
      Desc* c = get(cfg);
      if (!c || c->type != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR || !c->finalized)
        return refuse(fn, CUDNN_STATUS_BAD_PARAM, "engine configuration not finalized");
      d.graph = c->graph;
      d.engine = c->engine;
      return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: {
      attr(d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, d.uids);
      attr(d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, d.ptrs);
      attr1(d, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, d.workspace);
      if (d.uids.size() != d.ptrs.size())
        return refuse(fn, CUDNN_STATUS_BAD_PARAM, "unique ids and data pointers differ in count");
      return CUDNN_STATUS_SUCCESS;
    }
    default: return refuse(fn, CUDNN_STATUS_BAD_PARAM, "descriptor type the stand-in cannot finalize");
  }
}

float ld(const void* base, const TensorInfo& t, int64_t b, int64_t h, int64_t s, int64_t x) {
  const size_t i = size_t(b * t.strides[0] + h * t.strides[1] + s * t.strides[2] + x * t.strides[3]);
  return t.type == CUDNN_DATA_FLOAT ? static_cast<const float*>(base)[i] : bf16_to_float(static_cast<const uint16_t*>(base)[i]);
}
void st(void* base, const TensorInfo& t, int64_t b, int64_t h, int64_t s, int64_t x, float v) {
  const size_t i = size_t(b * t.strides[0] + h * t.strides[1] + s * t.strides[2] + x * t.strides[3]);
  if (t.type == CUDNN_DATA_FLOAT) static_cast<float*>(base)[i] = v;
  else static_cast<uint16_t*>(base)[i] = float_to_bf16_bits(v);
}

void run_sdpa(const Desc& op, const std::map<int64_t, void*>& ptr) {
  const bool bwd = op.backward;
  const int base = bwd ? CUDNN_ATTR_OPERATION_SDPA_BWD_QDESC : CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC;
  auto T = [&](int a) -> const TensorInfo& { return op.op_tensors.at(a); };
  auto P = [&](int a) { return ptr.at(T(a).uid); };
  const TensorInfo &q = T(base), &k = T(base + 1), &v = T(base + 2), &o = T(base + 3);
  const int scale_attr = bwd ? CUDNN_ATTR_OPERATION_SDPA_BWD_SCALEDESC : CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC;
  const int stats_attr = bwd ? CUDNN_ATTR_OPERATION_SDPA_BWD_STATSDESC : CUDNN_ATTR_OPERATION_SDPA_FWD_STATSDESC;
  const float scale = op.op_tensors.count(scale_attr) ? *static_cast<const float*>(P(scale_attr)) : 1.f;
  const int64_t B = q.dims[0], H = q.dims[1], Sq = q.dims[2], D = q.dims[3], Skv = k.dims[2], Dv = v.dims[3];
  std::vector<float> s(size_t(Sq * Skv));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < Sq; ++i)
        for (int64_t j = 0; j < Skv; ++j) {
          float acc = 0.f;
          for (int64_t x = 0; x < D; ++x) acc += ld(P(base), q, b, h, i, x) * ld(P(base + 1), k, b, h, j, x);
          s[size_t(i * Skv + j)] = scale * acc;
        }
      if (!bwd) {
        for (int64_t i = 0; i < Sq; ++i) {
          float m = -INFINITY;
          for (int64_t j = 0; j < Skv; ++j) m = std::max(m, s[size_t(i * Skv + j)]);
          float sum = 0.f;
          for (int64_t j = 0; j < Skv; ++j) sum += std::exp(s[size_t(i * Skv + j)] - m);
          for (int64_t x = 0; x < Dv; ++x) {
            float acc = 0.f;
            for (int64_t j = 0; j < Skv; ++j) acc += std::exp(s[size_t(i * Skv + j)] - m) / sum * ld(P(base + 2), v, b, h, j, x);
            st(P(base + 3), o, b, h, i, x, acc);
          }
          if (op.op_tensors.count(stats_attr)) st(P(stats_attr), T(stats_attr), b, h, i, 0, m + std::log(sum));
        }
        continue;
      }
      const TensorInfo &dO = T(CUDNN_ATTR_OPERATION_SDPA_BWD_DODDESC), &dq = T(CUDNN_ATTR_OPERATION_SDPA_BWD_DQDESC),
                       &dk = T(CUDNN_ATTR_OPERATION_SDPA_BWD_DKDESC), &dv = T(CUDNN_ATTR_OPERATION_SDPA_BWD_DVDESC);
      void *pdO = P(CUDNN_ATTR_OPERATION_SDPA_BWD_DODDESC), *pq = P(CUDNN_ATTR_OPERATION_SDPA_BWD_DQDESC),
           *pk = P(CUDNN_ATTR_OPERATION_SDPA_BWD_DKDESC), *pv = P(CUDNN_ATTR_OPERATION_SDPA_BWD_DVDESC);
      std::vector<float> p(s.size()), ds(s.size());
      for (int64_t i = 0; i < Sq; ++i) {
        const float lse = ld(P(stats_attr), T(stats_attr), b, h, i, 0);
        float Di = 0.f;
        for (int64_t x = 0; x < Dv; ++x) Di += ld(pdO, dO, b, h, i, x) * ld(P(base + 3), o, b, h, i, x);
        for (int64_t j = 0; j < Skv; ++j) {
          const size_t ij = size_t(i * Skv + j);
          p[ij] = std::exp(s[ij] - lse);
          float dp = 0.f;
          for (int64_t x = 0; x < Dv; ++x) dp += ld(pdO, dO, b, h, i, x) * ld(P(base + 2), v, b, h, j, x);
          ds[ij] = p[ij] * (dp - Di);
        }
      }
      for (int64_t j = 0; j < Skv; ++j) {
        for (int64_t x = 0; x < Dv; ++x) {
          float acc = 0.f;
          for (int64_t i = 0; i < Sq; ++i) acc += p[size_t(i * Skv + j)] * ld(pdO, dO, b, h, i, x);
          st(pv, dv, b, h, j, x, acc);
        }
        for (int64_t x = 0; x < D; ++x) {
          float acc = 0.f;
          for (int64_t i = 0; i < Sq; ++i) acc += ds[size_t(i * Skv + j)] * ld(P(base), q, b, h, i, x);
          st(pk, dk, b, h, j, x, scale * acc);
        }
      }
      for (int64_t i = 0; i < Sq; ++i)
        for (int64_t x = 0; x < D; ++x) {
          float acc = 0.f;
          for (int64_t j = 0; j < Skv; ++j) acc += ds[size_t(i * Skv + j)] * ld(P(base + 1), k, b, h, j, x);
          st(pq, dq, b, h, i, x, scale * acc);
        }
    }
}

// The engines the stand-in's heuristics offer for a graph (see the file's comment).
std::vector<Engine> engines(const Desc& heur) {
  const bool bwd = heur.graph->graph_op->backward;
  const Desc& op = *heur.graph->graph_op;
  const int base = bwd ? CUDNN_ATTR_OPERATION_SDPA_BWD_QDESC : CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC;
  const TensorInfo& q = op.op_tensors.at(base);
  const int64_t rows = q.dims[0] * q.dims[1] * q.dims[2];
  if (heur.engine.index == 1) return {{7, false, rows * int64_t(sizeof(float)) + 512}};
  if (!bwd) return {{0, false, 0}};
  return {{1, true, 0}, {2, false, rows * int64_t(sizeof(float))}};
}

}  // namespace

extern "C" {

cudnnStatus_t cudnnBackendCreateDescriptor(cudnnBackendDescriptorType_t type, cudnnBackendDescriptor_t* out) {
  if (!out) return refuse("cudnnBackendCreateDescriptor", CUDNN_STATUS_BAD_PARAM, "null descriptor pointer");
  switch (type) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR:
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR:
    case CUDNN_BACKEND_ENGINECFG_DESCRIPTOR:
    case CUDNN_BACKEND_ENGINE_DESCRIPTOR:
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR:
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: break;
    default:
      return refuse("cudnnBackendCreateDescriptor", CUDNN_STATUS_NOT_SUPPORTED,
                    "stand-in: descriptor type " + std::to_string(int(type)) + " not implemented");
  }
  auto* d = new Desc;
  d->type = type;
  std::lock_guard<std::mutex> l(mu);
  descs().insert(d);
  *out = d;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t d) {
  Desc* p = get(d);
  if (!p) return refuse("cudnnBackendDestroyDescriptor", CUDNN_STATUS_BAD_PARAM, "not a live descriptor (destroyed twice?)");
  {
    std::lock_guard<std::mutex> l(mu);
    descs().erase(p);
  }
  delete p;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendSetAttribute(cudnnBackendDescriptor_t desc, cudnnBackendAttributeName_t name,
                                       cudnnBackendAttributeType_t type, int64_t count, const void* elements) {
  const char* fn = "cudnnBackendSetAttribute";
  Desc* d = get(desc);
  if (!d) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "not a live descriptor");
  if (d->finalized) return refuse(fn, CUDNN_STATUS_NOT_INITIALIZED, "descriptor already finalized");
  const Spec* s = spec(d->type, int(name));
  if (!s) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "attribute " + std::to_string(int(name)) + " does not belong to descriptor type " + std::to_string(int(d->type)));
  if (s->type != type) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "attribute " + std::to_string(int(name)) + " set with the wrong attribute type");
  if (count < s->min || count > s->max) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "element count out of range");
  if (count > 0 && !elements) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "null elements");
  if (type == CUDNN_TYPE_BACKEND_DESCRIPTOR)
    for (int64_t i = 0; i < count; ++i) {
      cudnnBackendDescriptor_t e;
      std::memcpy(&e, static_cast<const char*>(elements) + i * sizeof e, sizeof e);
      if (!get(e)) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "element is not a live descriptor");
    }
  const size_t bytes = size_t(count) * type_size(type);
  std::vector<unsigned char> raw(bytes);
  if (bytes) std::memcpy(raw.data(), elements, bytes);
  d->attrs[int(name)] = {type, std::move(raw)};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendFinalize(cudnnBackendDescriptor_t desc) {
  Desc* d = get(desc);
  if (!d) return refuse("cudnnBackendFinalize", CUDNN_STATUS_BAD_PARAM, "not a live descriptor");
  if (d->finalized) return refuse("cudnnBackendFinalize", CUDNN_STATUS_BAD_PARAM, "finalized twice");
  const cudnnStatus_t s = finalize(*d);
  if (s == CUDNN_STATUS_SUCCESS) d->finalized = true;
  return s;
}

cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t const desc, cudnnBackendAttributeName_t name,
                                       cudnnBackendAttributeType_t type, int64_t requested, int64_t* count,
                                       void* elements) {
  const char* fn = "cudnnBackendGetAttribute";
  Desc* d = get(desc);
  if (!d) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "not a live descriptor");
  if (!d->finalized) return refuse(fn, CUDNN_STATUS_NOT_INITIALIZED, "descriptor not finalized");
  if (requested < 0 || !count) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "negative request or null count");
  if (requested > 0 && !elements) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "null elements");
  if (d->type == CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR && name == CUDNN_ATTR_ENGINEHEUR_RESULTS) {
    if (type != CUDNN_TYPE_BACKEND_DESCRIPTOR) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "results are descriptors");
    const std::vector<Engine> e = engines(*d);
    *count = std::min<int64_t>(requested == 0 ? int64_t(e.size()) : requested, int64_t(e.size()));
    if (requested == 0) {
      *count = int64_t(e.size());
      return CUDNN_STATUS_SUCCESS;
    }
    for (int64_t i = 0; i < *count; ++i) {
      cudnnBackendDescriptor_t out;
      std::memcpy(&out, static_cast<char*>(elements) + i * sizeof out, sizeof out);
      Desc* c = get(out);
      if (!c || c->type != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR || c->finalized)
        return refuse(fn, CUDNN_STATUS_BAD_PARAM, "result element is not a new engine configuration descriptor");
      c->graph = d->graph;
      c->engine = e[size_t(i)];
      c->finalized = true;
    }
    return CUDNN_STATUS_SUCCESS;
  }
  if (d->type == CUDNN_BACKEND_ENGINECFG_DESCRIPTOR && name == CUDNN_ATTR_ENGINECFG_ENGINE) {
    if (type != CUDNN_TYPE_BACKEND_DESCRIPTOR || requested != 1)
      return refuse(fn, CUDNN_STATUS_BAD_PARAM, "the engine is one descriptor");
    cudnnBackendDescriptor_t out;
    std::memcpy(&out, elements, sizeof out);
    Desc* e = get(out);
    if (!e || e->type != CUDNN_BACKEND_ENGINE_DESCRIPTOR)
      return refuse(fn, CUDNN_STATUS_BAD_PARAM, "element is not an engine descriptor");
    e->engine = d->engine;
    e->graph = d->graph;
    e->finalized = true;
    *count = 1;
    return CUDNN_STATUS_SUCCESS;
  }
  if (d->type == CUDNN_BACKEND_ENGINE_DESCRIPTOR && name == CUDNN_ATTR_ENGINE_NUMERICAL_NOTE) {
    if (type != CUDNN_TYPE_NUMERICAL_NOTE) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "notes are NUMERICAL_NOTE");
    std::vector<cudnnBackendNumericalNote_t> notes;
    if (d->engine.nondet) notes.push_back(CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC);
    *count = int64_t(notes.size());
    for (int64_t i = 0; i < std::min<int64_t>(requested, *count); ++i)
      static_cast<cudnnBackendNumericalNote_t*>(elements)[i] = notes[size_t(i)];
    return CUDNN_STATUS_SUCCESS;
  }
  if (d->type == CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR && name == CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE) {
    if (type != CUDNN_TYPE_INT64 || requested != 1) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "workspace size is one INT64");
    *static_cast<int64_t*>(elements) = d->engine.workspace;
    *count = 1;
    return CUDNN_STATUS_SUCCESS;
  }
  return refuse(fn, CUDNN_STATUS_NOT_SUPPORTED, "stand-in: attribute " + std::to_string(int(name)) + " not readable here");
}

cudnnStatus_t cudnnBackendExecute(cudnnHandle_t handle, cudnnBackendDescriptor_t plan_d, cudnnBackendDescriptor_t pack_d) {
  const char* fn = "cudnnBackendExecute";
  if (!cudnn_handle_live(handle)) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "handle not live");
  Desc *plan = get(plan_d), *pack = get(pack_d);
  if (!plan || plan->type != CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR || !plan->finalized)
    return refuse(fn, CUDNN_STATUS_BAD_PARAM, "plan not a finalized execution plan");
  if (!pack || pack->type != CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR || !pack->finalized)
    return refuse(fn, CUDNN_STATUS_BAD_PARAM, "variant pack not finalized");
  if (plan->engine.workspace > 0) {
    if (!pack->workspace) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "the plan needs a workspace, the pack has none");
    if (std::string w = device_range_problem(pack->workspace, size_t(plan->engine.workspace)); !w.empty())
      return device_fault(fn, "workspace " + w), CUDNN_STATUS_EXECUTION_FAILED;
  }
  if (faulted()) return CUDNN_STATUS_EXECUTION_FAILED;
  const Desc& op = *plan->graph->graph_op;
  std::map<int64_t, void*> ptr;
  for (size_t i = 0; i < pack->uids.size(); ++i) ptr[pack->uids[i]] = pack->ptrs[i];
  for (const auto& [name, t] : op.op_tensors) {
    if (t.is_virtual) continue;
    auto it = ptr.find(t.uid);
    if (it == ptr.end()) return refuse(fn, CUDNN_STATUS_BAD_PARAM, "no data pointer for tensor uid " + std::to_string(t.uid));
    if (t.by_value) {
      if (!it->second || locate(it->second, 0) != Where::Host)
        return refuse(fn, CUDNN_STATUS_BAD_PARAM, "by-value tensor " + std::to_string(t.uid) + " must point to host memory");
      continue;
    }
    const size_t eb = t.type == CUDNN_DATA_FLOAT ? 4 : 2;
    if (reinterpret_cast<uintptr_t>(it->second) % size_t(t.alignment) != 0)
      return refuse(fn, CUDNN_STATUS_BAD_PARAM, "tensor uid " + std::to_string(t.uid) + " not aligned to its declared " + std::to_string(t.alignment) + " bytes");
    if (std::string w = device_range_problem(it->second, t.extent() * eb); !w.empty())
      return device_fault(fn, "tensor uid " + std::to_string(t.uid) + " " + w), CUDNN_STATUS_EXECUTION_FAILED;
  }
  run_sdpa(op, ptr);
  return CUDNN_STATUS_SUCCESS;
}

}  // extern "C"
