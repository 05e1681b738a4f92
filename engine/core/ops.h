// Differentiable ops on Vars: each computes through the value's backend and,
// when recording (engine/core/autograd.h), pushes its backward. These are the
// building blocks of the U-Net, the losses and the guidance term.
#pragma once
#include "engine/core/autograd.h"

namespace mdps::ops {

// Floating-point operations of the products the ops ran (conv, linear,
// attention), counted as 2 per multiply-add, forward and backward alike.
// For benchmarks: reset, run, read.
int64_t flop_count();
void reset_flop_count();

Var conv2d(const Var& x, const Var& w, const Var* b, ConvGeom g = {});
// add(residual, add_channel_bias(conv2d(x, w, b), image_bias)) in one op
// (Backend::conv2d_fused: the same bits, without the two extra passes over the
// output); image_bias [N, Co] and residual may each be null.
Var conv2d_fused(const Var& x, const Var& w, const Var* b, const Var* image_bias, const Var* residual, ConvGeom g = {});
Var linear(const Var& x, const Var& w, const Var* b);
// GroupNorm(groups, eps) with affine gamma/beta; silu=true fuses SiLU after it.
Var group_norm(const Var& x, const Var& gamma, const Var& beta, int groups, float eps, bool silu);
Var silu(const Var& x);
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var scale(const Var& x, float alpha);
// y[n, ...] = x[n, ...] * s[n]: one factor per sample (host values).
Var scale_per_sample(const Var& x, const std::vector<float>& s);
// y[n,c,h,w] = x[n,c,h,w] + v[n,c]
Var add_channel_bias(const Var& x, const Var& v);
Var concat_channels(const Var& a, const Var& b);
Var avg_pool2(const Var& x);
Var upsample_nearest2(const Var& x);
// Shares the value's storage and the gradient cell: a pure view.
Var reshape(const Var& x, const Shape& shape);
// The authors' QKV attention (ADM's QKVAttentionLegacy): qkv [B, 3C, L] with
// heads split as [B*heads, 3*C/heads, L], q,k,v consecutive chunks, q and k
// each scaled by (C/heads)^-1/4, softmax over keys. Returns [B, C, L].
// Runs through Backend::attention (the CPU fuses it blockwise, never holding
// the [B*heads, L, L] weights); the backward recomputes the weights.
Var qkv_attention(const Var& qkv, int heads);
// Sinusoidal embedding of float timesteps t [N] -> [N, dim] (no gradient).
Var timestep_embedding(const Tensor& t, int dim);
// sum over everything of (a - b)^2, divided by a.dim(0): the training loss. [1]
Var sse_loss(const Var& pred, const Var& target);
// sqrt(sum x^2) over the whole tensor (Frobenius norm). [1]
Var frobenius_norm(const Var& x);
// sum x^2 over each sample: [N]. (The paper's squared per-image norm.)
Var squared_norm_per_sample(const Var& x);
// Sum of all elements: [1].
Var sum(const Var& x);

}  // namespace mdps::ops
