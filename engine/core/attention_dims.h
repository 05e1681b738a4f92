// Shapes of the authors' QKV attention (Backend::attention): qkv [B, 3*heads*ch, L]
// seen as B*heads blocks of [3*ch, L] (q, k, v), output [B, heads*ch, L].
#pragma once
#include "engine/core/common.h"
#include "engine/core/tensor.h"
#include <cmath>

namespace mdps {

struct AttentionDims {
  int64_t BH = 0, ch = 0, L = 0;
  float scale = 1.f;  // on q.k: (ch^-1/4)^2 as the authors scale q and k each
  int64_t qkv_stride() const { return 3 * ch * L; }  // floats between heads in qkv
  int64_t out_stride() const { return ch * L; }      // floats between heads in a
  double flops() const { return 2.0 * 2.0 * double(BH) * double(L) * double(L) * double(ch); }
};

inline AttentionDims attention_dims(const Shape& qkv, int heads, const char* op) {
  MDPS_CHECK(heads > 0, op, ": heads must be positive, got ", heads);
  MDPS_CHECK(qkv.size() == 3 && qkv[1] % (3 * int64_t(heads)) == 0, op, ": input ", shape_str(qkv),
             " does not split into 3 x ", heads, " heads");
  AttentionDims d;
  d.BH = qkv[0] * heads;
  d.ch = qkv[1] / (3 * heads);
  d.L = qkv[2];
  d.scale = float(1.0 / std::sqrt(double(d.ch)));
  return d;
}

inline Shape attention_out_shape(const Shape& qkv, int heads) { return {qkv[0], qkv[1] / 3, qkv[2]}; }

}  // namespace mdps
