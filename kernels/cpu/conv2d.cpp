// 2-D convolution as im2col + sgemm per image (1x1 stride-1 unpadded
// convolutions use the input directly), with its data and weight gradients.
//
// Threading: with enough images, the pool runs one image per worker with
// OpenBLAS single-threaded; otherwise images go one by one and OpenBLAS
// threads each product.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include "engine/trace.h"
#include <cstring>

namespace mdps {

namespace {

struct ConvDims {
  int64_t N, Ci, H, W, Co, KH, KW, Ho, Wo;
  int s, p;
  int64_t rows() const { return Ci * KH * KW; }  // im2col rows
  int64_t cols() const { return Ho * Wo; }       // im2col columns
  bool direct() const { return KH == 1 && KW == 1 && s == 1 && p == 0; }
};

ConvDims conv_dims(const Shape& xs, const Tensor& w, ConvGeom g, const char* op) {
  MDPS_CHECK(xs.size() == 4, op, ": input must be [N, C, H, W], got ", shape_str(xs));
  cpu::check_cpu(w, op);
  MDPS_CHECK(w.ndim() == 4, op, ": weight must be [Co, Ci, KH, KW], got ", shape_str(w.shape()));
  MDPS_CHECK(g.stride >= 1 && g.pad >= 0, op, ": invalid stride ", g.stride, " / padding ", g.pad);
  ConvDims d{xs[0], xs[1], xs[2], xs[3], w.dim(0), w.dim(2), w.dim(3), 0, 0, g.stride, g.pad};
  MDPS_CHECK(w.dim(1) == d.Ci, op, ": weight ", shape_str(w.shape()), " expects ", w.dim(1),
             " input channels, input ", shape_str(xs), " has ", d.Ci);
  d.Ho = conv_out_size(d.H, d.KH, g);
  d.Wo = conv_out_size(d.W, d.KW, g);
  MDPS_CHECK(d.H + 2 * g.pad >= d.KH && d.W + 2 * g.pad >= d.KW && d.Ho > 0 && d.Wo > 0, op, ": kernel ",
             d.KH, "x", d.KW, " larger than padded input ", shape_str(xs));
  return d;
}

// Range of output positions o with 0 <= o*s - p + k < in.
inline void valid_range(int64_t out, int64_t in, int s, int p, int64_t k, int64_t& lo, int64_t& hi) {
  int64_t off = k - p;  // input index = o*s + off
  lo = off >= 0 ? 0 : (-off + s - 1) / s;
  hi = in - off <= 0 ? 0 : (in - off + s - 1) / s;
  hi = std::min(hi, out);
  lo = std::min(lo, hi);
}

// col[(ci*KH+kh)*KW+kw, oh*Wo+ow] = x[ci, oh*s-p+kh, ow*s-p+kw] (0 outside).
void im2col(const float* x, const ConvDims& d, float* col) {
  trace::Scope ts("conv.im2col", "kernel");
  if (ts.active()) ts.bytes((d.Ci * d.H * d.W + d.rows() * d.cols()) * int64_t(sizeof(float)));
  cpu::parallel_rows(d.rows(), d.cols(), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      int64_t kw = r % d.KW, kh = (r / d.KW) % d.KH, ci = r / (d.KW * d.KH);
      const float* xc = x + ci * d.H * d.W;
      float* out = col + r * d.cols();
      int64_t ow_lo, ow_hi, oh_lo, oh_hi;
      valid_range(d.Wo, d.W, d.s, d.p, kw, ow_lo, ow_hi);
      valid_range(d.Ho, d.H, d.s, d.p, kh, oh_lo, oh_hi);
      for (int64_t oh = 0; oh < d.Ho; ++oh) {
        float* o = out + oh * d.Wo;
        if (oh < oh_lo || oh >= oh_hi) {
          std::memset(o, 0, sizeof(float) * size_t(d.Wo));
          continue;
        }
        const float* xr = xc + (oh * d.s - d.p + kh) * d.W + (kw - d.p);
        for (int64_t ow = 0; ow < ow_lo; ++ow) o[ow] = 0.f;
        if (d.s == 1) {
          if (ow_hi > ow_lo) std::memcpy(o + ow_lo, xr + ow_lo, sizeof(float) * size_t(ow_hi - ow_lo));
        } else {
          for (int64_t ow = ow_lo; ow < ow_hi; ++ow) o[ow] = xr[ow * d.s];
        }
        for (int64_t ow = ow_hi; ow < d.Wo; ++ow) o[ow] = 0.f;
      }
    }
  });
}

// dx[ci, ...] = sum of the col entries that im2col read from it (dx overwritten).
void col2im(const float* col, const ConvDims& d, float* dx) {
  trace::Scope ts("conv.col2im", "kernel");
  if (ts.active()) ts.bytes((d.Ci * d.H * d.W + d.rows() * d.cols()) * int64_t(sizeof(float)));
  cpu::parallel_rows(d.Ci, d.KH * d.KW * d.cols(), [&](int64_t cb, int64_t ce) {
    for (int64_t ci = cb; ci < ce; ++ci) {
      float* xc = dx + ci * d.H * d.W;
      std::memset(xc, 0, sizeof(float) * size_t(d.H * d.W));
      for (int64_t kh = 0; kh < d.KH; ++kh) {
        int64_t oh_lo, oh_hi;
        valid_range(d.Ho, d.H, d.s, d.p, kh, oh_lo, oh_hi);
        for (int64_t kw = 0; kw < d.KW; ++kw) {
          int64_t ow_lo, ow_hi;
          valid_range(d.Wo, d.W, d.s, d.p, kw, ow_lo, ow_hi);
          const float* c = col + ((ci * d.KH + kh) * d.KW + kw) * d.cols();
          for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
            float* xr = xc + (oh * d.s - d.p + kh) * d.W + (kw - d.p);
            const float* cr = c + oh * d.Wo;
            if (d.s == 1) {
              for (int64_t ow = ow_lo; ow < ow_hi; ++ow) xr[ow] += cr[ow];
            } else {
              for (int64_t ow = ow_lo; ow < ow_hi; ++ow) xr[ow * d.s] += cr[ow];
            }
          }
        }
      }
    }
  });
}

// Runs body(n) for every image: in parallel over images (BLAS single-threaded)
// when the batch splits evenly enough over the pool, else serially.
template <typename F>
void for_each_image(int64_t N, F&& body) {
  const int nt = ThreadPool::global().threads();
  if (nt > 1 && N >= nt && (N % nt == 0 || N >= 4 * nt)) {
    cpu::BlasSingleThread single;
    parallel_for(N, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) body(n);
    });
  } else {
    for (int64_t n = 0; n < N; ++n) body(n);
  }
}

}  // namespace

void CpuBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, ConvGeom g) {
  cpu::check_cpu(x, "conv2d input");
  ConvDims d = conv_dims(x.shape(), w, g, "conv2d");
  check_shape(y, {d.N, d.Co, d.Ho, d.Wo}, "conv2d output");
  if (b) check_shape(*b, {d.Co}, "conv2d bias");
  const float* X = x.data();
  const float* Wt = w.data();
  const float* B = b ? b->data() : nullptr;
  float* Y = y.data();
  const int64_t K = d.rows(), P = d.cols();
  for_each_image(d.N, [&](int64_t n) {
    const float* xn = X + n * d.Ci * d.H * d.W;
    float* yn = Y + n * d.Co * P;
    const float* col = xn;
    if (!d.direct()) {
      float* buf = cpu::scratch(size_t(K * P));
      im2col(xn, d, buf);
      col = buf;
    }
    if (B)
      for (int64_t co = 0; co < d.Co; ++co) std::fill(yn + co * P, yn + (co + 1) * P, B[co]);
    trace::Scope ts("conv.sgemm", "kernel");
    if (ts.active()) ts.num("M", double(d.Co)).num("N", double(P)).num("K", double(K)).flops(2 * d.Co * P * K);
    cpu::sgemm(false, false, d.Co, P, K, 1.f, Wt, K, col, P, B ? 1.f : 0.f, yn, P);
  });
}

void CpuBackend::conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, ConvGeom g) {
  cpu::check_cpu(dx, "conv2d_backward_data dx");
  cpu::check_cpu(dy, "conv2d_backward_data dy");
  ConvDims d = conv_dims(dx.shape(), w, g, "conv2d_backward_data");
  check_shape(dy, {d.N, d.Co, d.Ho, d.Wo}, "conv2d_backward_data dy");
  const float* DY = dy.data();
  const float* Wt = w.data();
  float* DX = dx.data();
  const int64_t K = d.rows(), P = d.cols();
  for_each_image(d.N, [&](int64_t n) {
    const float* dyn = DY + n * d.Co * P;
    float* dxn = DX + n * d.Ci * d.H * d.W;
    if (d.direct()) {
      cpu::sgemm(true, false, K, P, d.Co, 1.f, Wt, K, dyn, P, 0.f, dxn, P);
      return;
    }
    float* col = cpu::scratch(size_t(K * P));
    {
      trace::Scope ts("conv.sgemm_data", "kernel");
      if (ts.active()) ts.num("M", double(K)).num("N", double(P)).num("K", double(d.Co)).flops(2 * d.Co * P * K);
      cpu::sgemm(true, false, K, P, d.Co, 1.f, Wt, K, dyn, P, 0.f, col, P);
    }
    col2im(col, d, dxn);
  });
}

void CpuBackend::conv2d_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db, ConvGeom g) {
  cpu::check_cpu(x, "conv2d_backward_weight input");
  cpu::check_cpu(dy, "conv2d_backward_weight dy");
  cpu::check_cpu(dw, "conv2d_backward_weight dw");
  ConvDims d = conv_dims(x.shape(), dw, g, "conv2d_backward_weight");
  check_shape(dy, {d.N, d.Co, d.Ho, d.Wo}, "conv2d_backward_weight dy");
  if (db) check_shape(*db, {d.Co}, "conv2d_backward_weight db");
  const float* X = x.data();
  const float* DY = dy.data();
  const int64_t K = d.rows(), P = d.cols();
  const int64_t wsize = d.Co * K;

  // dW = sum_n dY_n col_n^T. Each task owns a contiguous range of images and
  // its own partial sum; partials are added in task order, so the result
  // depends only on the thread count.
  const int nt = ThreadPool::global().threads();
  const int64_t tasks = (nt > 1 && d.N >= nt) ? nt : 1;
  std::vector<float> partial(size_t(tasks > 1 ? (tasks - 1) * wsize : 0));
  auto run_task = [&](int64_t t) {
    float* acc = t == 0 ? dw.data() : partial.data() + (t - 1) * wsize;
    int64_t nb = d.N * t / tasks, ne = d.N * (t + 1) / tasks;
    if (nb == ne) std::fill(acc, acc + wsize, 0.f);
    for (int64_t n = nb; n < ne; ++n) {
      const float* xn = X + n * d.Ci * d.H * d.W;
      const float* col = xn;
      if (!d.direct()) {
        float* buf = cpu::scratch(size_t(K * P));
        im2col(xn, d, buf);
        col = buf;
      }
      trace::Scope ts("conv.sgemm_weight", "kernel");
      if (ts.active()) ts.num("M", double(d.Co)).num("N", double(K)).num("K", double(P)).flops(2 * d.Co * P * K);
      cpu::sgemm(false, true, d.Co, K, P, 1.f, DY + n * d.Co * P, P, col, P, n == nb ? 0.f : 1.f, acc, K);
    }
  };
  if (tasks > 1) {
    cpu::BlasSingleThread single;
    parallel_for(tasks, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) run_task(t);
    });
    float* DW = dw.data();
    cpu::parallel_elems(wsize, [&](int64_t b, int64_t e) {
      for (int64_t t = 1; t < tasks; ++t) {
        const float* p = partial.data() + (t - 1) * wsize;
        for (int64_t i = b; i < e; ++i) DW[i] += p[i];
      }
    });
  } else {
    run_task(0);
  }

  if (db) {
    float* DB = db->data();
    cpu::parallel_rows(d.Co, d.N * P, [&](int64_t cb, int64_t ce) {
      for (int64_t co = cb; co < ce; ++co) {
        double s = 0;
        for (int64_t n = 0; n < d.N; ++n) s += cpu::sum_d(DY + (n * d.Co + co) * P, P);
        DB[co] = float(s);
      }
    });
  }
}

}  // namespace mdps
