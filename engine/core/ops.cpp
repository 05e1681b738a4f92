#include "engine/core/ops.h"
#include "engine/core/attention_dims.h"
#include "engine/core/trace.h"
#include <atomic>
#include <cmath>

namespace mdps::ops {

namespace {
std::atomic<int64_t> g_flops{0};
void count_flops(int64_t f) { g_flops.fetch_add(f, std::memory_order_relaxed); }

Tensor like(const Tensor& t) { return Tensor::empty(t.shape(), t.backend()); }
Tensor empty_on(const Tensor& t, const Shape& s) { return Tensor::empty(s, t.backend()); }

// Wraps `value` as an op output; when recording, attaches the backward.
template <typename F>
Var finish(Tensor value, std::initializer_list<const Var*> inputs, F&& backward) {
  Var out(std::move(value));
  if (Tape* tape = recording_tape(inputs)) out.cell = tape->record(out.value.shape(), std::forward<F>(backward));
  return out;
}

float host_scalar(const Tensor& t) { return t.at(0); }

constexpr int64_t kF32 = sizeof(float);
int64_t nbytes(const Shape& s) { return shape_numel(s) * kF32; }

// The trace annotation most ops share: the main input's shape and the bytes
// read and written, counted as `tensors` float32 tensors of that shape.
void annotate(trace::Scope& ts, const Shape& s, double tensors) {
  if (ts.active()) ts.shape("x", s).bytes(int64_t(tensors * double(nbytes(s))));
}

}  // namespace

int64_t flop_count() { return g_flops.load(); }
void reset_flop_count() { g_flops.store(0); }

Var conv2d(const Var& x, const Var& w, const Var* b, ConvGeom g) { return conv2d_fused(x, w, b, nullptr, nullptr, g); }

Var conv2d_fused(const Var& x, const Var& w, const Var* b, const Var* image_bias, const Var* residual, ConvGeom g) {
  Backend& be = x.value.backend();
  const Shape xshape = x.shape();
  const Shape bshape = b ? b->shape() : Shape{};
  const Shape& xs = x.shape();
  const Shape& ws = w.shape();
  MDPS_CHECK(xs.size() == 4 && ws.size() == 4, "conv2d: input ", x.value.describe(), ", weight ",
             w.value.describe());
  Tensor y = empty_on(x.value, {xs[0], ws[0], conv_out_size(xs[2], ws[2], g), conv_out_size(xs[3], ws[3], g)});
  const int64_t conv_flops = 2 * y.numel() * ws[1] * ws[2] * ws[3];
  const Shape yshape = y.shape(), wshape = ws;
  trace::Scope ts("conv2d");
  if (ts.active())
    ts.shape("x", xs).shape("w", ws).shape("y", yshape).num("stride", g.stride).num("pad", g.pad)
        .flops(conv_flops).bytes(nbytes(xs) + nbytes(ws) + nbytes(yshape));
  if (image_bias || residual)
    be.conv2d_fused(x.value, w.value, b ? &b->value : nullptr, image_bias ? &image_bias->value : nullptr,
                    residual ? &residual->value : nullptr, y, g);
  else
    be.conv2d(x.value, w.value, b ? &b->value : nullptr, y, g);
  count_flops(conv_flops);
  auto xc = x.cell, wc = w.cell;
  auto bc = b ? b->cell : nullptr;
  auto ec = image_bias ? image_bias->cell : nullptr, rc = residual ? residual->cell : nullptr;
  const Shape eshape = image_bias ? image_bias->shape() : Shape{};
  // The data gradient needs the weight, the weight gradient needs the input.
  Tensor keep_w = xc ? w.value : Tensor();
  Tensor keep_x = wc ? x.value : Tensor();
  return finish(std::move(y), {&x, &w, b, image_bias, residual}, [=, &be](const Tensor& gy) {
    trace::Scope bt("conv2d.backward");
    // The residual's gradient is the output's (add's backward); the image
    // bias's its sum over H, W (add_channel_bias's).
    if (rc) accumulate_grad(*rc, gy);
    if (ec) {
      Tensor d = new_grad(*ec, eshape, be);
      be.sum_hw(gy, d);
      accumulate_grad(*ec, d);
    }
    if (bt.active())
      bt.shape("x", xshape).shape("w", wshape).shape("y", yshape).num("data_grad", xc ? 1 : 0)
          .num("weight_grad", wc ? 1 : 0).flops(conv_flops * ((xc ? 1 : 0) + (wc ? 1 : 0)))
          .bytes((nbytes(xshape) + nbytes(wshape)) * ((xc ? 1 : 0) + (wc ? 1 : 0)) + nbytes(yshape));
    if (xc) {
      Tensor dx = new_grad(*xc, xshape, be);
      be.conv2d_backward_data(gy, keep_w, dx, g);
      count_flops(conv_flops);
      accumulate_grad(*xc, dx);
    }
    if (wc || bc) {
      Tensor dw, db;
      if (wc) dw = new_grad(*wc, keep_w.defined() ? keep_w.shape() : wc->shape, be);
      if (bc) db = new_grad(*bc, bshape, be);
      if (wc) {
        be.conv2d_backward_weight(gy, keep_x, dw, bc ? &db : nullptr, g);
        count_flops(conv_flops);
      } else {
        // Bias only: its gradient is the output gradient summed over H, W
        // (per [N, C]), then over N: the bias gradient of a linear layer on
        // [N, C], which every backend sums in float32 or better (a gemm with
        // ones would round to bf16 under --precision bf16). Its x and w are
        // zero-width: only their shapes are read.
        Tensor per = Tensor::empty({gy.dim(0), gy.dim(1)}, be);
        be.sum_hw(gy, per);
        Tensor no_x = Tensor::empty({gy.dim(0), 0}, be), no_w = Tensor::empty({gy.dim(1), 0}, be);
        be.linear_backward(per, no_x, no_w, nullptr, nullptr, &db);
      }
      if (wc) accumulate_grad(*wc, dw);
      if (bc) accumulate_grad(*bc, db);
    }
  });
}

Var linear(const Var& x, const Var& w, const Var* b) {
  Backend& be = x.value.backend();
  const Shape xshape = x.shape();
  const Shape bshape = b ? b->shape() : Shape{};
  Tensor y = empty_on(x.value, {x.value.dim(0), w.value.dim(0)});
  const int64_t lin_flops = 2 * y.numel() * w.value.dim(1);
  trace::Scope ts("linear");
  if (ts.active())
    ts.shape("x", xshape).shape("w", w.shape()).flops(lin_flops)
        .bytes(nbytes(xshape) + nbytes(w.shape()) + nbytes(y.shape()));
  be.linear(x.value, w.value, b ? &b->value : nullptr, y);
  count_flops(lin_flops);
  auto xc = x.cell, wc = w.cell;
  auto bc = b ? b->cell : nullptr;
  Tensor keep_w = xc ? w.value : Tensor();
  Tensor keep_x = wc ? x.value : Tensor();
  Shape xs = x.shape(), ws = w.shape();
  return finish(std::move(y), {&x, &w, b}, [=, &be](const Tensor& gy) {
    trace::Scope bt("linear.backward");
    if (bt.active()) bt.shape("x", xs).shape("w", ws).flops(lin_flops * ((xc ? 1 : 0) + (wc ? 1 : 0)));
    Tensor dx, dw, db;
    if (xc) dx = new_grad(*xc, xshape, be);
    if (wc) dw = new_grad(*wc, be);
    if (bc) db = new_grad(*bc, bshape, be);
    // linear_backward reads x only for dw and w only for dx.
    Tensor xv = keep_x.defined() ? keep_x : Tensor::empty(xs, be);
    Tensor wv = keep_w.defined() ? keep_w : Tensor::empty(ws, be);
    be.linear_backward(gy, xv, wv, xc ? &dx : nullptr, wc ? &dw : nullptr, bc ? &db : nullptr);
    count_flops(lin_flops * ((xc ? 1 : 0) + (wc ? 1 : 0)));
    if (xc) accumulate_grad(*xc, dx);
    if (wc) accumulate_grad(*wc, dw);
    if (bc) accumulate_grad(*bc, db);
  });
}

Var group_norm(const Var& x, const Var& gamma, const Var& beta, int groups, float eps, bool silu_after) {
  Backend& be = x.value.backend();
  const Shape xshape = x.shape();
  const Shape bshape = beta.shape();
  trace::Scope ts(silu_after ? "group_norm_silu" : "group_norm");
  annotate(ts, xshape, 2);
  Tensor y = like(x.value);
  Tensor mean = empty_on(x.value, {x.value.dim(0) * groups});
  Tensor rstd = empty_on(x.value, {x.value.dim(0) * groups});
  be.group_norm(x.value, gamma.value, beta.value, groups, eps, silu_after, y, mean, rstd);
  auto xc = x.cell, gc = gamma.cell, bc = beta.cell;
  Tensor xv = x.value, gv = gamma.value, bv = beta.value;
  return finish(std::move(y), {&x, &gamma, &beta}, [=, &be](const Tensor& gy) {
    trace::Scope bt(silu_after ? "group_norm_silu.backward" : "group_norm.backward");
    annotate(bt, xshape, 3);
    Tensor dx, dg, db;
    if (xc) dx = new_grad(*xc, xshape, be);
    if (gc) dg = new_grad(*gc, gamma.shape(), be);
    if (bc) db = new_grad(*bc, bshape, be);
    be.group_norm_backward(gy, xv, gv, bv, mean, rstd, groups, silu_after, xc ? &dx : nullptr, gc ? &dg : nullptr,
                           bc ? &db : nullptr);
    if (xc) accumulate_grad(*xc, dx);
    if (gc) accumulate_grad(*gc, dg);
    if (bc) accumulate_grad(*bc, db);
  });
}

Var silu(const Var& x) {
  trace::Scope ts("silu");
  annotate(ts, x.shape(), 2);
  Backend& be = x.value.backend();
  const Shape xshape = x.shape();
  Tensor y = like(x.value);
  be.silu(x.value, y);
  auto xc = x.cell;
  Tensor xv = x.value;
  return finish(std::move(y), {&x}, [=, &be](const Tensor& gy) {
    trace::Scope bt("silu.backward");
    annotate(bt, gy.shape(), 3);
    Tensor dx = new_grad(*xc, xshape, be);
    be.silu_backward(xv, gy, dx);
    accumulate_grad(*xc, dx);
  });
}

Var add(const Var& a, const Var& b) {
  trace::Scope ts("add");
  annotate(ts, a.shape(), 3);
  Backend& be = a.value.backend();
  Tensor y = like(a.value);
  be.add(a.value, b.value, y);
  auto ac = a.cell, bc = b.cell;
  return finish(std::move(y), {&a, &b}, [=](const Tensor& gy) {
    trace::Scope bt("add.backward");
    annotate(bt, gy.shape(), 1);
    if (ac) accumulate_grad(*ac, gy);
    if (bc) accumulate_grad(*bc, gy);
  });
}

Var sub(const Var& a, const Var& b) {
  trace::Scope ts("sub");
  annotate(ts, a.shape(), 3);
  Backend& be = a.value.backend();
  const Shape bshape = b.shape();
  Tensor y = like(a.value);
  be.sub(a.value, b.value, y);
  auto ac = a.cell, bc = b.cell;
  return finish(std::move(y), {&a, &b}, [=, &be](const Tensor& gy) {
    trace::Scope bt("sub.backward");
    annotate(bt, gy.shape(), 2);
    if (ac) accumulate_grad(*ac, gy);
    if (bc) {
      Tensor d = new_grad(*bc, bshape, be);
      be.scale(gy, -1.f, d);
      accumulate_grad(*bc, d);
    }
  });
}

Var mul(const Var& a, const Var& b) {
  trace::Scope ts("mul");
  annotate(ts, a.shape(), 3);
  Backend& be = a.value.backend();
  const Shape ashape = a.shape();
  const Shape bshape = b.shape();
  Tensor y = like(a.value);
  be.mul(a.value, b.value, y);
  auto ac = a.cell, bc = b.cell;
  Tensor av = bc ? a.value : Tensor(), bv = ac ? b.value : Tensor();
  return finish(std::move(y), {&a, &b}, [=, &be](const Tensor& gy) {
    trace::Scope bt("mul.backward");
    annotate(bt, gy.shape(), 4);
    if (ac) {
      Tensor d = new_grad(*ac, ashape, be);
      be.mul(gy, bv, d);
      accumulate_grad(*ac, d);
    }
    if (bc) {
      Tensor d = new_grad(*bc, bshape, be);
      be.mul(gy, av, d);
      accumulate_grad(*bc, d);
    }
  });
}

Var scale(const Var& x, float alpha) {
  trace::Scope ts("scale");
  annotate(ts, x.shape(), 2);
  Backend& be = x.value.backend();
  const Shape xshape = x.shape();
  Tensor y = like(x.value);
  be.scale(x.value, alpha, y);
  auto xc = x.cell;
  return finish(std::move(y), {&x}, [=, &be](const Tensor& gy) {
    trace::Scope bt("scale.backward");
    annotate(bt, gy.shape(), 2);
    Tensor d = new_grad(*xc, xshape, be);
    be.scale(gy, alpha, d);
    accumulate_grad(*xc, d);
  });
}

Var scale_per_sample(const Var& x, const std::vector<float>& s) {
  trace::Scope ts("scale_per_sample");
  annotate(ts, x.shape(), 2);
  Backend& be = x.value.backend();
  const Shape xshape = x.shape();
  int64_t n = x.value.dim(0);
  MDPS_CHECK(int64_t(s.size()) == n, "scale_per_sample: ", s.size(), " factors for ", x.value.describe());
  Tensor y = like(x.value);
  for (int64_t i = 0; i < n; ++i) {
    Tensor yi = y[i];
    be.scale(x.value[i], s[size_t(i)], yi);
  }
  auto xc = x.cell;
  return finish(std::move(y), {&x}, [=, &be](const Tensor& gy) {
    trace::Scope bt("scale_per_sample.backward");
    annotate(bt, gy.shape(), 2);
    Tensor d = new_grad(*xc, xshape, be);
    for (int64_t i = 0; i < n; ++i) {
      Tensor di = d.reshape(gy.shape())[i];
      be.scale(gy[i], s[size_t(i)], di);
    }
    accumulate_grad(*xc, d);
  });
}

Var add_channel_bias(const Var& x, const Var& v) {
  trace::Scope ts("add_channel_bias");
  annotate(ts, x.shape(), 2);
  Backend& be = x.value.backend();
  const Shape vshape = v.shape();
  Tensor y = like(x.value);
  be.add_channel_bias(x.value, v.value, y);
  auto xc = x.cell, vc = v.cell;
  return finish(std::move(y), {&x, &v}, [=, &be](const Tensor& gy) {
    trace::Scope bt("add_channel_bias.backward");
    annotate(bt, gy.shape(), 2);
    if (xc) accumulate_grad(*xc, gy);
    if (vc) {
      Tensor d = new_grad(*vc, vshape, be);
      be.sum_hw(gy, d);
      accumulate_grad(*vc, d);
    }
  });
}

Var concat_channels(const Var& a, const Var& b) {
  trace::Scope ts("concat_channels");
  annotate(ts, a.shape(), 2);
  Backend& be = a.value.backend();
  const Shape ashape = a.shape();
  const Shape bshape = b.shape();
  const Shape& as = a.shape();
  Tensor y = empty_on(a.value, {as[0], as[1] + b.value.dim(1), as[2], as[3]});
  be.concat_channels(a.value, b.value, y);
  auto ac = a.cell, bc = b.cell;
  return finish(std::move(y), {&a, &b}, [=, &be](const Tensor& gy) {
    trace::Scope bt("concat_channels.backward");
    annotate(bt, gy.shape(), 2);
    Tensor da, db;
    if (ac) da = new_grad(*ac, ashape, be);
    if (bc) db = new_grad(*bc, bshape, be);
    be.split_channels(gy, ac ? &da : nullptr, bc ? &db : nullptr);
    if (ac) accumulate_grad(*ac, da);
    if (bc) accumulate_grad(*bc, db);
  });
}

Var avg_pool2(const Var& x) {
  trace::Scope ts("avg_pool2");
  annotate(ts, x.shape(), 1.25);
  Backend& be = x.value.backend();
  const Shape xshape = x.shape();
  const Shape& s = x.shape();
  Tensor y = empty_on(x.value, {s[0], s[1], s[2] / 2, s[3] / 2});
  be.avg_pool2(x.value, y);
  auto xc = x.cell;
  return finish(std::move(y), {&x}, [=, &be](const Tensor& gy) {
    trace::Scope bt("avg_pool2.backward");
    annotate(bt, gy.shape(), 5);
    Tensor d = new_grad(*xc, xshape, be);
    be.avg_pool2_backward(gy, d);
    accumulate_grad(*xc, d);
  });
}

Var upsample_nearest2(const Var& x) {
  trace::Scope ts("upsample_nearest2");
  annotate(ts, x.shape(), 5);
  Backend& be = x.value.backend();
  const Shape xshape = x.shape();
  const Shape& s = x.shape();
  Tensor y = empty_on(x.value, {s[0], s[1], s[2] * 2, s[3] * 2});
  be.upsample_nearest2(x.value, y);
  auto xc = x.cell;
  return finish(std::move(y), {&x}, [=, &be](const Tensor& gy) {
    trace::Scope bt("upsample_nearest2.backward");
    annotate(bt, gy.shape(), 1.25);
    Tensor d = new_grad(*xc, xshape, be);
    be.upsample_nearest2_backward(gy, d);
    accumulate_grad(*xc, d);
  });
}

Var reshape(const Var& x, const Shape& shape) {
  Var out(x.value.reshape(shape));
  out.cell = x.cell;  // accumulate_grad reshapes into the cell's own shape
  return out;
}

Var qkv_attention(const Var& qkv, int heads) {
  Backend& be = qkv.value.backend();
  const AttentionDims d = attention_dims(qkv.shape(), heads, "qkv_attention");
  const Shape out_shape = attention_out_shape(qkv.shape(), heads);
  trace::Scope ts("qkv_attention");
  if (ts.active())
    ts.shape("qkv", qkv.shape()).num("heads", heads).flops(int64_t(d.flops()))
        .bytes(nbytes(qkv.shape()) + nbytes(out_shape));
  Tensor a = empty_on(qkv.value, out_shape);
  be.attention(qkv.value, heads, a);
  count_flops(int64_t(d.flops()));
  auto qc = qkv.cell;
  Tensor qkv_v = qkv.value;
  return finish(std::move(a), {&qkv}, [=, &be](const Tensor& ga) {
    trace::Scope bt("qkv_attention.backward");
    // The weights' recomputation (half the forward's FLOPs) and four products of that size.
    if (bt.active()) bt.shape("qkv", qkv_v.shape()).num("heads", heads).flops(int64_t(2.5 * d.flops()));
    // The backend recomputes the weights from q and k rather than storing
    // [B*heads, L, L], the largest buffer of the network.
    Tensor dqkv = new_grad(*qc, qkv_v.shape(), be);
    be.attention_backward(qkv_v, ga, heads, dqkv);
    accumulate_grad(*qc, dqkv);
    count_flops(int64_t(2.5 * d.flops()));
  });
}

Var timestep_embedding(const Tensor& t, int dim) {
  trace::Scope ts("timestep_embedding");
  if (ts.active()) ts.shape("t", t.shape());
  Tensor y = Tensor::empty({t.dim(0), dim}, t.backend());
  t.backend().timestep_embedding(t, y);
  return Var(y);
}

Var sse_loss(const Var& pred, const Var& target) {
  trace::Scope ts("sse_loss");
  annotate(ts, pred.shape(), 3);
  Backend& be = pred.value.backend();
  Tensor diff = like(pred.value);
  be.sub(pred.value, target.value, diff);
  Tensor out = empty_on(pred.value, {1});
  be.sum_squares(diff, out);
  const float inv_b = 1.f / float(pred.value.dim(0));
  be.scale(out, inv_b, out);
  auto pc = pred.cell, tc = target.cell;
  return finish(std::move(out), {&pred, &target}, [=, &be](const Tensor& g) {
    trace::Scope bt("sse_loss.backward");
    annotate(bt, diff.shape(), 2);
    float gs = host_scalar(g) * 2.f * inv_b;
    if (pc) {
      Tensor d = new_grad(*pc, diff.shape(), be);
      be.scale(diff, gs, d);
      accumulate_grad(*pc, d);
    }
    if (tc) {
      Tensor d = new_grad(*tc, diff.shape(), be);
      be.scale(diff, -gs, d);
      accumulate_grad(*tc, d);
    }
  });
}

Var frobenius_norm(const Var& x) {
  trace::Scope ts("frobenius_norm");
  annotate(ts, x.shape(), 1);
  Backend& be = x.value.backend();
  const Shape xshape = x.shape();
  Tensor out = empty_on(x.value, {1});
  be.sum_squares(x.value, out);
  float norm = std::sqrt(host_scalar(out));
  out.fill(norm);
  auto xc = x.cell;
  Tensor xv = x.value;
  return finish(std::move(out), {&x}, [=, &be](const Tensor& g) {
    trace::Scope bt("frobenius_norm.backward");
    annotate(bt, xshape, 2);
    Tensor d = new_grad(*xc, xshape, be);
    // d||x||/dx = x / ||x|| (0 at x = 0, as torch's subgradient choice)
    be.scale(xv, norm > 0 ? host_scalar(g) / norm : 0.f, d);
    accumulate_grad(*xc, d);
  });
}

Var squared_norm_per_sample(const Var& x) {
  trace::Scope ts("squared_norm_per_sample");
  annotate(ts, x.shape(), 1);
  Backend& be = x.value.backend();
  const Shape xshape = x.shape();
  int64_t n = x.value.dim(0);
  Tensor out = empty_on(x.value, {n});
  for (int64_t i = 0; i < n; ++i) {
    Tensor oi = out.reshape({n, 1})[i];
    be.sum_squares(x.value[i], oi);
  }
  auto xc = x.cell;
  Tensor xv = x.value;
  return finish(std::move(out), {&x}, [=, &be](const Tensor& g) {
    trace::Scope bt("squared_norm_per_sample.backward");
    annotate(bt, xshape, 2);
    Tensor d = new_grad(*xc, xshape, be);
    std::vector<float> gh = g.to_vector();
    for (int64_t i = 0; i < n; ++i) {
      Tensor di = d.reshape(xv.shape())[i];
      be.scale(xv[i], 2.f * gh[size_t(i)], di);
    }
    accumulate_grad(*xc, d);
  });
}

Var sum(const Var& x) {
  trace::Scope ts("sum");
  annotate(ts, x.shape(), 1);
  Backend& be = x.value.backend();
  const Shape xshape = x.shape();
  Tensor out = empty_on(x.value, {1});
  be.sum(x.value, out);
  auto xc = x.cell;
  return finish(std::move(out), {&x}, [=, &be](const Tensor& g) {
    trace::Scope bt("sum.backward");
    annotate(bt, xshape, 1);
    Tensor d = new_grad(*xc, xshape, be);
    d.fill(host_scalar(g));
    accumulate_grad(*xc, d);
  });
}

}  // namespace mdps::ops
