// The public ops of the Backend interface: each checks its operands once, for
// every backend (defined, float32, on this backend's device, shapes that fit
// together), then calls the backend's implementation (the protected *_impl),
// which checks nothing the public op has checked. Errors name the op and the
// tensor at fault. Limits of one backend alone (cuDNN's int sizes, an empty
// convolution kernel on CUDA, the CUDA blur's 127 taps) stay in that backend.
#include "engine/core/attention_dims.h"
#include "engine/core/backend.h"
#include <algorithm>
#include <initializer_list>
#include <utility>

namespace mdps {

namespace {

using Operand = std::pair<const char*, const Tensor*>;  // name in errors, tensor (null: absent)

// Every operand defined, float32 and on `be`'s device: a host pointer handed
// to a CUDA kernel or library would be an illegal address, sticky for the
// whole context, instead of this clear error.
void check_operands(const Backend& be, const char* op, std::initializer_list<Operand> operands) {
  for (const auto& [name, t] : operands) {
    if (!t) continue;
    MDPS_CHECK(t->defined(), op, ": ", name, ": tensor is undefined");
    MDPS_CHECK(t->dtype() == DType::F32, op, ": ", name, ": expected f32, got ", t->describe());
    MDPS_CHECK(t->device() == be.device(), op, ": ", name, " ", t->describe(), " is not on the ", be.name(),
               " backend's device");
  }
}

void check_nchw(const Tensor& t, const char* op, const char* name) {
  MDPS_CHECK(t.ndim() == 4, op, " ", name, ": expected [N, C, H, W], got ", shape_str(t.shape()));
}

void check_one_element(const Tensor& t, const char* op, const char* name) {
  MDPS_CHECK(t.numel() == 1, op, ": ", name, " must hold one element, got ", shape_str(t.shape()));
}

// x [N, C, H, W] and mask [N, 1, H, W].
void check_mask(const Tensor& mask, const Tensor& x, const char* op) {
  const Shape& s = x.shape();
  check_shape(mask, {s[0], 1, s[2], s[3]}, cat(op, " mask"));
}

// The convolution x [N, Ci, H, W] * w [Co, Ci, KH, KW] -> [N, Co, Ho, Wo].
Shape conv_out_shape(const Shape& xs, const Tensor& w, ConvGeom g, const char* op) {
  MDPS_CHECK(xs.size() == 4, op, ": input must be [N, C, H, W], got ", shape_str(xs));
  MDPS_CHECK(w.ndim() == 4, op, ": weight must be [Co, Ci, KH, KW], got ", shape_str(w.shape()));
  MDPS_CHECK(g.stride >= 1 && g.pad >= 0, op, ": invalid stride ", g.stride, " / padding ", g.pad);
  MDPS_CHECK(w.dim(1) == xs[1], op, ": weight ", shape_str(w.shape()), " expects ", w.dim(1),
             " input channels, input ", shape_str(xs), " has ", xs[1]);
  const int64_t Ho = conv_out_size(xs[2], w.dim(2), g), Wo = conv_out_size(xs[3], w.dim(3), g);
  MDPS_CHECK(xs[2] + 2 * g.pad >= w.dim(2) && xs[3] + 2 * g.pad >= w.dim(3) && Ho > 0 && Wo > 0, op, ": kernel ",
             w.dim(2), "x", w.dim(3), " larger than padded input ", shape_str(xs));
  return {xs[0], w.dim(0), Ho, Wo};
}

// x [..., in] and w [out, in]; returns x's shape with `out` last.
Shape linear_out_shape(const Tensor& x, const Tensor& w, const char* op) {
  MDPS_CHECK(w.ndim() == 2, op, ": weight must be [out, in], got ", shape_str(w.shape()));
  MDPS_CHECK(x.ndim() >= 1 && x.dim(-1) == w.dim(1), op, ": input ", shape_str(x.shape()),
             " does not end in in_features ", w.dim(1), " of weight ", shape_str(w.shape()));
  Shape s = x.shape();
  s.back() = w.dim(0);
  return s;
}

// x [N, C, ...] with C a multiple of groups, gamma and beta [C].
void check_group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, const char* op) {
  MDPS_CHECK(x.ndim() >= 2, op, ": input must be [N, C, ...], got ", shape_str(x.shape()));
  const int64_t C = x.dim(1);
  MDPS_CHECK(groups >= 1 && C % groups == 0, op, ": ", C, " channels do not split into ", groups, " groups");
  check_shape(gamma, {C}, cat(op, " gamma"));
  check_shape(beta, {C}, cat(op, " beta"));
}

// The same-shape elementwise ops: b and y of a's shape.
void check_binary(const Backend& be, const Tensor& a, const Tensor& b, const Tensor& y, const char* op) {
  check_operands(be, op, {{"first operand", &a}, {"second operand", &b}, {"output", &y}});
  check_shape(b, a.shape(), cat(op, " second operand"));
  check_shape(y, a.shape(), cat(op, " output"));
}

void check_unary(const Backend& be, const Tensor& x, const Tensor& y, const char* op) {
  check_operands(be, op, {{"input", &x}, {"output", &y}});
  check_shape(y, x.shape(), cat(op, " output"));
}

}  // namespace

// ---- products ----------------------------------------------------------------

void Backend::gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta, float* C,
                   int64_t ldc, int64_t stride_c, int64_t batch) {
  MDPS_CHECK(M >= 0 && N >= 0 && K >= 0 && batch >= 0, "gemm: negative size (M ", M, ", N ", N, ", K ", K,
             ", batch ", batch, ")");
  if (batch == 0 || M == 0 || N == 0) return;  // nothing is read or written
  const int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
  MDPS_CHECK(lda >= std::max<int64_t>(1, a_cols), "gemm: lda ", lda, " < ", a_cols, " (columns of stored A)");
  MDPS_CHECK(ldb >= std::max<int64_t>(1, b_cols), "gemm: ldb ", ldb, " < ", b_cols, " (columns of stored B)");
  MDPS_CHECK(ldc >= std::max<int64_t>(1, N), "gemm: ldc ", ldc, " < N ", N);
  MDPS_CHECK(C && (K == 0 || (A && B)), "gemm: null matrix pointer");
  gemm_impl(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c, batch);
}

void Backend::linear(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  check_operands(*this, "linear", {{"input", &x}, {"weight", &w}, {"bias", b}, {"output", &y}});
  const Shape ys = linear_out_shape(x, w, "linear");
  check_shape(y, ys, "linear output");
  if (b) check_shape(*b, {w.dim(0)}, "linear bias");
  linear_impl(x, w, b, y);
}

void Backend::linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                              Tensor* db) {
  check_operands(*this, "linear_backward",
                 {{"dy", &dy}, {"input", &x}, {"weight", &w}, {"dx", dx}, {"dw", dw}, {"db", db}});
  check_shape(dy, linear_out_shape(x, w, "linear_backward"), "linear_backward dy");
  if (dx) check_shape(*dx, x.shape(), "linear_backward dx");
  if (dw) check_shape(*dw, w.shape(), "linear_backward dw");
  if (db) check_shape(*db, {w.dim(0)}, "linear_backward db");
  linear_backward_impl(dy, x, w, dx, dw, db);
}

void Backend::conv2d(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, ConvGeom g) {
  check_operands(*this, "conv2d", {{"input", &x}, {"weight", &w}, {"bias", b}, {"output", &y}});
  check_shape(y, conv_out_shape(x.shape(), w, g, "conv2d"), "conv2d output");
  if (b) check_shape(*b, {w.dim(0)}, "conv2d bias");
  conv2d_impl(x, w, b, y, g);
}

void Backend::conv2d_fused(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor* image_bias,
                           const Tensor* residual, Tensor& y, ConvGeom g) {
  check_operands(*this, "conv2d_fused",
                 {{"input", &x}, {"weight", &w}, {"bias", b}, {"image bias", image_bias}, {"residual", residual},
                  {"output", &y}});
  check_shape(y, conv_out_shape(x.shape(), w, g, "conv2d_fused"), "conv2d_fused output");
  if (b) check_shape(*b, {w.dim(0)}, "conv2d_fused bias");
  if (image_bias) {
    check_shape(*image_bias, {x.dim(0), w.dim(0)}, "conv2d_fused image bias");
    // The default body adds it to y in place, after the convolution wrote y.
    MDPS_CHECK(!image_bias->same_storage(y), "conv2d_fused: the image bias must not share storage with the output");
  }
  if (residual) {
    check_shape(*residual, y.shape(), "conv2d_fused residual");
    MDPS_CHECK(!residual->same_storage(y), "conv2d_fused: the residual must not share storage with the output");
  }
  conv2d_fused_impl(x, w, b, image_bias, residual, y, g);
}

void Backend::conv2d_fused_impl(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor* image_bias,
                                const Tensor* residual, Tensor& y, ConvGeom g) {
  conv2d_impl(x, w, b, y, g);
  if (image_bias) add_channel_bias_impl(y, *image_bias, y);
  if (residual) add_impl(*residual, y, y);
}

void Backend::conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, ConvGeom g) {
  check_operands(*this, "conv2d_backward_data", {{"dy", &dy}, {"weight", &w}, {"dx", &dx}});
  check_shape(dy, conv_out_shape(dx.shape(), w, g, "conv2d_backward_data"), "conv2d_backward_data dy");
  conv2d_backward_data_impl(dy, w, dx, g);
}

void Backend::conv2d_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db, ConvGeom g) {
  check_operands(*this, "conv2d_backward_weight", {{"dy", &dy}, {"input", &x}, {"dw", &dw}, {"db", db}});
  check_shape(dy, conv_out_shape(x.shape(), dw, g, "conv2d_backward_weight"), "conv2d_backward_weight dy");
  if (db) check_shape(*db, {dw.dim(0)}, "conv2d_backward_weight db");
  conv2d_backward_weight_impl(dy, x, dw, db, g);
}

// ---- normalisation and activations ----------------------------------------------

void Backend::group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps, bool silu,
                         Tensor& y, Tensor& mean, Tensor& rstd) {
  check_operands(*this, "group_norm",
                 {{"input", &x}, {"gamma", &gamma}, {"beta", &beta}, {"output", &y}, {"mean", &mean}, {"rstd", &rstd}});
  check_group_norm(x, gamma, beta, groups, "group_norm");
  const int64_t stats = x.dim(0) * groups;
  check_shape(y, x.shape(), "group_norm output");
  check_shape(mean, {stats}, "group_norm mean");
  check_shape(rstd, {stats}, "group_norm rstd");
  MDPS_CHECK(eps >= 0.f, "group_norm: negative eps ", eps);
  group_norm_impl(x, gamma, beta, groups, eps, silu, y, mean, rstd);
}

void Backend::group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                  const Tensor& mean, const Tensor& rstd, int groups, bool silu, Tensor* dx,
                                  Tensor* dgamma, Tensor* dbeta) {
  check_operands(*this, "group_norm_backward",
                 {{"dy", &dy}, {"input", &x}, {"gamma", &gamma}, {"beta", &beta}, {"mean", &mean}, {"rstd", &rstd},
                  {"dx", dx}, {"dgamma", dgamma}, {"dbeta", dbeta}});
  check_group_norm(x, gamma, beta, groups, "group_norm_backward");
  const int64_t stats = x.dim(0) * groups, C = x.dim(1);
  check_shape(dy, x.shape(), "group_norm_backward dy");
  check_shape(mean, {stats}, "group_norm_backward mean");
  check_shape(rstd, {stats}, "group_norm_backward rstd");
  if (dx) check_shape(*dx, x.shape(), "group_norm_backward dx");
  if (dgamma) check_shape(*dgamma, {C}, "group_norm_backward dgamma");
  if (dbeta) check_shape(*dbeta, {C}, "group_norm_backward dbeta");
  group_norm_backward_impl(dy, x, gamma, beta, mean, rstd, groups, silu, dx, dgamma, dbeta);
}

void Backend::silu(const Tensor& x, Tensor& y) {
  check_unary(*this, x, y, "silu");
  silu_impl(x, y);
}

void Backend::silu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
  check_operands(*this, "silu_backward", {{"input", &x}, {"dy", &dy}, {"dx", &dx}});
  check_shape(dy, x.shape(), "silu_backward dy");
  check_shape(dx, x.shape(), "silu_backward dx");
  silu_backward_impl(x, dy, dx);
}

void Backend::softmax(const Tensor& x, Tensor& y) {
  check_operands(*this, "softmax", {{"input", &x}, {"output", &y}});
  MDPS_CHECK(x.ndim() >= 1, "softmax: input must have at least one dimension");
  check_shape(y, x.shape(), "softmax output");
  softmax_impl(x, y);
}

void Backend::softmax_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  check_operands(*this, "softmax_backward", {{"y", &y}, {"dy", &dy}, {"dx", &dx}});
  MDPS_CHECK(y.ndim() >= 1, "softmax_backward: y must have at least one dimension");
  check_shape(dy, y.shape(), "softmax_backward dy");
  check_shape(dx, y.shape(), "softmax_backward dx");
  softmax_backward_impl(y, dy, dx);
}

namespace {
void check_attention(const Backend& be, const Tensor& qkv, int heads, const Tensor& a) {
  check_operands(be, "attention", {{"qkv", &qkv}, {"output", &a}});
  attention_dims(qkv.shape(), heads, "attention");
  check_shape(a, attention_out_shape(qkv.shape(), heads), "attention output");
}
void check_attention_backward(const Backend& be, const Tensor& qkv, const Tensor& da, int heads, const Tensor& dqkv) {
  check_operands(be, "attention_backward", {{"qkv", &qkv}, {"da", &da}, {"dqkv", &dqkv}});
  attention_dims(qkv.shape(), heads, "attention_backward");
  check_shape(da, attention_out_shape(qkv.shape(), heads), "attention_backward da");
  check_shape(dqkv, qkv.shape(), "attention_backward dqkv");
}
}  // namespace

void Backend::attention(const Tensor& qkv, int heads, Tensor& a) {
  check_attention(*this, qkv, heads, a);
  attention_impl(qkv, heads, a);
}

void Backend::attention_backward(const Tensor& qkv, const Tensor& da, int heads, Tensor& dqkv) {
  check_attention_backward(*this, qkv, da, heads, dqkv);
  attention_backward_impl(qkv, da, heads, dqkv);
}

void Backend::attention_generic(const Tensor& qkv, int heads, Tensor& a) {
  check_attention(*this, qkv, heads, a);
  Backend::attention_impl(qkv, heads, a);  // the base body, not the backend's override
}

void Backend::attention_backward_generic(const Tensor& qkv, const Tensor& da, int heads, Tensor& dqkv) {
  check_attention_backward(*this, qkv, da, heads, dqkv);
  Backend::attention_backward_impl(qkv, da, heads, dqkv);
}

// ---- elementwise -------------------------------------------------------------------

void Backend::add(const Tensor& a, const Tensor& b, Tensor& y) {
  check_binary(*this, a, b, y, "add");
  add_impl(a, b, y);
}

void Backend::sub(const Tensor& a, const Tensor& b, Tensor& y) {
  check_binary(*this, a, b, y, "sub");
  sub_impl(a, b, y);
}

void Backend::mul(const Tensor& a, const Tensor& b, Tensor& y) {
  check_binary(*this, a, b, y, "mul");
  mul_impl(a, b, y);
}

void Backend::scale(const Tensor& x, float alpha, Tensor& y) {
  check_unary(*this, x, y, "scale");
  scale_impl(x, alpha, y);
}

void Backend::axpby(float alpha, const Tensor& x, float beta, Tensor& y) {
  check_operands(*this, "axpby", {{"x", &x}, {"y", &y}});
  check_shape(y, x.shape(), "axpby y");
  axpby_impl(alpha, x, beta, y);
}

void Backend::scale_by_inverse_sqrt(const Tensor& x, const Tensor& sum_sq, Tensor& y) {
  check_operands(*this, "scale_by_inverse_sqrt", {{"input", &x}, {"sum of squares", &sum_sq}, {"output", &y}});
  check_one_element(sum_sq, "scale_by_inverse_sqrt", "the sum of squares");
  check_shape(y, x.shape(), "scale_by_inverse_sqrt output");
  scale_by_inverse_sqrt_impl(x, sum_sq, y);
}

void Backend::add_channel_bias(const Tensor& x, const Tensor& v, Tensor& y) {
  check_operands(*this, "add_channel_bias", {{"input", &x}, {"bias", &v}, {"output", &y}});
  MDPS_CHECK(x.ndim() >= 2, "add_channel_bias: input must be [N, C, ...], got ", shape_str(x.shape()));
  check_shape(v, {x.dim(0), x.dim(1)}, "add_channel_bias bias");
  check_shape(y, x.shape(), "add_channel_bias output");
  add_channel_bias_impl(x, v, y);
}

void Backend::sum_hw(const Tensor& dy, Tensor& dv) {
  check_operands(*this, "sum_hw", {{"input", &dy}, {"output", &dv}});
  MDPS_CHECK(dy.ndim() >= 2, "sum_hw: input must be [N, C, ...], got ", shape_str(dy.shape()));
  check_shape(dv, {dy.dim(0), dy.dim(1)}, "sum_hw output");
  sum_hw_impl(dy, dv);
}

// ---- layout --------------------------------------------------------------------------

void Backend::concat_channels(const Tensor& a, const Tensor& b, Tensor& y) {
  check_operands(*this, "concat_channels", {{"first input", &a}, {"second input", &b}, {"output", &y}});
  check_nchw(a, "concat_channels", "first input");
  check_nchw(b, "concat_channels", "second input");
  const int64_t N = a.dim(0), Ca = a.dim(1), H = a.dim(2), W = a.dim(3), Cb = b.dim(1);
  check_shape(b, {N, Cb, H, W}, "concat_channels second input");
  check_shape(y, {N, Ca + Cb, H, W}, "concat_channels output");
  concat_channels_impl(a, b, y);
}

void Backend::split_channels(const Tensor& y, Tensor* a, Tensor* b) {
  check_operands(*this, "split_channels", {{"input", &y}, {"first output", a}, {"second output", b}});
  check_nchw(y, "split_channels", "input");
  MDPS_CHECK(a || b, "split_channels: both outputs are null");
  if (a) check_nchw(*a, "split_channels", "first output");
  if (b) check_nchw(*b, "split_channels", "second output");
  const int64_t N = y.dim(0), C = y.dim(1), H = y.dim(2), W = y.dim(3);
  const int64_t Ca = a ? a->dim(1) : C - b->dim(1), Cb = b ? b->dim(1) : C - Ca;
  MDPS_CHECK(Ca >= 0 && Cb >= 0 && Ca + Cb == C, "split_channels: output channels ", Ca, " + ", Cb,
             " do not add up to the input's ", C);
  if (a) check_shape(*a, {N, Ca, H, W}, "split_channels first output");
  if (b) check_shape(*b, {N, Cb, H, W}, "split_channels second output");
  split_channels_impl(y, a, b);
}

void Backend::avg_pool2(const Tensor& x, Tensor& y) {
  check_operands(*this, "avg_pool2", {{"input", &x}, {"output", &y}});
  check_nchw(x, "avg_pool2", "input");
  check_shape(y, {x.dim(0), x.dim(1), x.dim(2) / 2, x.dim(3) / 2}, "avg_pool2 output");
  avg_pool2_impl(x, y);
}

void Backend::avg_pool2_backward(const Tensor& dy, Tensor& dx) {
  check_operands(*this, "avg_pool2_backward", {{"dy", &dy}, {"dx", &dx}});
  check_nchw(dx, "avg_pool2_backward", "dx");
  check_shape(dy, {dx.dim(0), dx.dim(1), dx.dim(2) / 2, dx.dim(3) / 2}, "avg_pool2_backward dy");
  avg_pool2_backward_impl(dy, dx);
}

void Backend::upsample_nearest2(const Tensor& x, Tensor& y) {
  check_operands(*this, "upsample_nearest2", {{"input", &x}, {"output", &y}});
  check_nchw(x, "upsample_nearest2", "input");
  check_shape(y, {x.dim(0), x.dim(1), 2 * x.dim(2), 2 * x.dim(3)}, "upsample_nearest2 output");
  upsample_nearest2_impl(x, y);
}

void Backend::upsample_nearest2_backward(const Tensor& dy, Tensor& dx) {
  check_operands(*this, "upsample_nearest2_backward", {{"dy", &dy}, {"dx", &dx}});
  check_nchw(dx, "upsample_nearest2_backward", "dx");
  check_shape(dy, {dx.dim(0), dx.dim(1), 2 * dx.dim(2), 2 * dx.dim(3)}, "upsample_nearest2_backward dy");
  upsample_nearest2_backward_impl(dy, dx);
}

// ---- reductions ------------------------------------------------------------------------

void Backend::sum(const Tensor& x, Tensor& out) {
  check_operands(*this, "sum", {{"input", &x}, {"output", &out}});
  check_one_element(out, "sum", "output");
  sum_impl(x, out);
}

void Backend::sum_squares(const Tensor& x, Tensor& out) {
  check_operands(*this, "sum_squares", {{"input", &x}, {"output", &out}});
  check_one_element(out, "sum_squares", "output");
  sum_squares_impl(x, out);
}

// ---- diffusion-specific --------------------------------------------------------------------

void Backend::timestep_embedding(const Tensor& t, Tensor& y) {
  check_operands(*this, "timestep_embedding", {{"t", &t}, {"output", &y}});
  MDPS_CHECK(t.ndim() == 1, "timestep_embedding: t must be [N], got ", shape_str(t.shape()));
  MDPS_CHECK(y.ndim() == 2 && y.dim(0) == t.dim(0), "timestep_embedding: output must be [", t.dim(0),
             ", dim], got ", shape_str(y.shape()));
  timestep_embedding_impl(t, y);
}

void Backend::adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p,
                          int64_t step) {
  check_operands(*this, "adam_update",
                 {{"param", &param}, {"grad", &grad}, {"first moment", &m}, {"second moment", &v}});
  check_shape(grad, param.shape(), "adam_update grad");
  check_shape(m, param.shape(), "adam_update first moment");
  check_shape(v, param.shape(), "adam_update second moment");
  MDPS_CHECK(step >= 1, "adam_update: step must count from 1, got ", step);
  MDPS_CHECK(p.beta1 >= 0.f && p.beta1 < 1.f && p.beta2 >= 0.f && p.beta2 < 1.f, "adam_update: betas (", p.beta1,
             ", ", p.beta2, ") must lie in [0, 1)");
  adam_update_impl(param, grad, m, v, p, step);
}

void Backend::mdps_step(const Tensor& x, const Tensor& y, const Tensor& eps, const Tensor* grad, const Tensor* mask,
                        const Tensor* z, const StepCoeffs& c, Tensor& x_next, Tensor* x0_hat) {
  check_operands(*this, "mdps_step",
                 {{"x", &x}, {"y", &y}, {"eps", &eps}, {"grad", grad}, {"mask", mask}, {"z", z}, {"x_next", &x_next},
                  {"x0_hat", x0_hat}});
  MDPS_CHECK(x.ndim() == 4, "mdps_step: x ", x.describe(), " is not NCHW");
  check_shape(y, x.shape(), "mdps_step y");
  check_shape(eps, x.shape(), "mdps_step eps");
  check_shape(x_next, x.shape(), "mdps_step x_next");
  if (grad) check_shape(*grad, x.shape(), "mdps_step grad");
  if (z) check_shape(*z, x.shape(), "mdps_step z");
  if (x0_hat) check_shape(*x0_hat, x.shape(), "mdps_step x0_hat");
  if (mask) check_mask(*mask, x, "mdps_step");
  mdps_step_impl(x, y, eps, grad, mask, z, c, x_next, x0_hat);
}

void Backend::philox_normal(Tensor& x, uint64_t seed, uint64_t stream_id, uint64_t offset) {
  check_operands(*this, "philox_normal", {{"output", &x}});
  philox_normal_impl(x, seed, stream_id, offset);
}

void Backend::replace_normal(Tensor& x, const Tensor& y, const Tensor& z_fixed, const Tensor& mask, float sqrt_a,
                             float sqrt_1ma) {
  check_operands(*this, "replace_normal", {{"x", &x}, {"y", &y}, {"z", &z_fixed}, {"mask", &mask}});
  MDPS_CHECK(x.ndim() == 4, "replace_normal: x ", x.describe(), " is not NCHW");
  check_shape(y, x.shape(), "replace_normal y");
  check_shape(z_fixed, x.shape(), "replace_normal z");
  check_mask(mask, x, "replace_normal");
  replace_normal_impl(x, y, z_fixed, mask, sqrt_a, sqrt_1ma);
}

// ---- the feature extractor's and the anomaly map's image ops -------------------------------

void Backend::relu(const Tensor& x, Tensor& y) {
  check_unary(*this, x, y, "relu");
  relu_impl(x, y);
}

void Backend::max_pool3x3_s2(const Tensor& x, Tensor& y) {
  check_operands(*this, "max_pool3x3_s2", {{"input", &x}, {"output", &y}});
  check_nchw(x, "max_pool3x3_s2", "input");
  const int64_t H = x.dim(2), W = x.dim(3);
  MDPS_CHECK(H > 0 && W > 0, "max_pool3x3_s2: input ", x.describe(), " is empty");
  check_shape(y, {x.dim(0), x.dim(1), (H - 1) / 2 + 1, (W - 1) / 2 + 1}, "max_pool3x3_s2 output");
  max_pool3x3_s2_impl(x, y);
}

void Backend::imagenet_normalise(const Tensor& x, Tensor& y) {
  check_operands(*this, "imagenet_normalise", {{"images", &x}, {"output", &y}});
  MDPS_CHECK(x.ndim() == 4 && x.dim(1) == 3, "imagenet_normalise: images ", x.describe(), " are not [N,3,H,W]");
  check_shape(y, x.shape(), "imagenet_normalise output");
  imagenet_normalise_impl(x, y);
}

void Backend::pixel_distance(const Tensor& a, const Tensor& b, Tensor& y) {
  check_operands(*this, "pixel_distance", {{"a", &a}, {"b", &b}, {"output", &y}});
  MDPS_CHECK(a.ndim() == 4 && a.dim(1) == 3, "pixel_distance: images ", a.describe(), " are not [N,3,H,W]");
  check_shape(b, a.shape(), "pixel_distance b");
  check_shape(y, {a.dim(0), 1, a.dim(2), a.dim(3)}, "pixel_distance output");
  pixel_distance_impl(a, b, y);
}

void Backend::pooled_cosine_distance(const Tensor& a, const Tensor& b, Tensor& y, float eps) {
  check_operands(*this, "pooled_cosine_distance", {{"a", &a}, {"b", &b}, {"output", &y}});
  check_nchw(a, "pooled_cosine_distance", "a");
  check_shape(b, a.shape(), "pooled_cosine_distance b");
  check_shape(y, {a.dim(0), 1, a.dim(2), a.dim(3)}, "pooled_cosine_distance output");
  pooled_cosine_distance_impl(a, b, y, eps);
}

void Backend::resize_bilinear_align_corners(const Tensor& x, Tensor& y) {
  check_operands(*this, "resize_bilinear", {{"input", &x}, {"output", &y}});
  check_nchw(x, "resize_bilinear", "input");
  check_nchw(y, "resize_bilinear", "output");
  MDPS_CHECK(y.dim(0) == x.dim(0) && y.dim(1) == x.dim(1), "resize_bilinear: output ", y.describe(),
             " does not match the input's N and C ", x.describe());
  resize_bilinear_align_corners_impl(x, y);
}

void Backend::gaussian_blur(const Tensor& x, int kernel, float sigma, Tensor& y) {
  check_operands(*this, "gaussian_blur", {{"input", &x}, {"output", &y}});
  check_nchw(x, "gaussian_blur", "input");
  check_shape(y, x.shape(), "gaussian_blur output");
  gaussian_blur_impl(x, kernel, sigma, y);
}

void Backend::max(const Tensor& x, Tensor& out) {
  check_operands(*this, "max", {{"input", &x}, {"output", &out}});
  check_one_element(out, "max", "output");
  MDPS_CHECK(x.numel() > 0, "max: input ", x.describe(), " is empty");
  max_impl(x, out);
}

void Backend::anomaly_mix(const Tensor& f, const Tensor& p, const Tensor& max_f, const Tensor& max_p, float eta,
                          Tensor& y) {
  check_operands(*this, "anomaly_mix",
                 {{"feature term", &f}, {"pixel term", &p}, {"max_f", &max_f}, {"max_p", &max_p}, {"output", &y}});
  check_shape(p, f.shape(), "anomaly_mix pixel term");
  check_shape(y, f.shape(), "anomaly_mix output");
  check_one_element(max_f, "anomaly_mix", "max_f");
  check_one_element(max_p, "anomaly_mix", "max_p");
  anomaly_mix_impl(f, p, max_f, max_p, eta, y);
}

std::vector<double> Backend::image_scores(const Tensor& maps, ImageScoreKind kind, int k) {
  check_operands(*this, "image_scores", {{"maps", &maps}});
  MDPS_CHECK(maps.ndim() == 4 && maps.dim(1) == 1 && maps.numel() > 0, "image score: maps ", maps.describe(),
             " are not [N,1,H,W]");
  return image_scores_impl(maps, kind, k);
}

}  // namespace mdps
