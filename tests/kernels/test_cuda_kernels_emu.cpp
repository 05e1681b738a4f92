// The hand-written CUDA kernels compiled for the host through the emulation
// header (kernels/cuda/emu/cuda_emu.h) and compared with the CPU backend on
// random inputs, including sizes that are not multiples of the block size and
// single elements. The kernels run with the launch geometry the GPU gets
// (kernels/cuda/launch.h) and, for the grid-stride ones, also with a grid too
// small to cover the data so every thread takes several iterations.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "engine/core/backend.h"
#include "engine/diffusion/noise.h"
#include "kernels/shared/philox.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/mdps_step_kernel.cuh"
#include "kernels/cuda/replace_normal_kernel.cuh"
#include "kernels/cuda/group_norm_kernel.cuh"
#include "kernels/cuda/softmax_kernel.cuh"
#include "kernels/cuda/philox_normal_kernel.cuh"
#include "kernels/cuda/adam_kernel.cuh"
#include "kernels/cuda/elementwise_kernel.cuh"
#include "kernels/cuda/group_norm_backward_kernel.cuh"
#include "kernels/cuda/softmax_backward_kernel.cuh"
#include "kernels/cuda/reduce_kernel.cuh"
#include "kernels/cuda/channels_kernel.cuh"
#include "kernels/cuda/pool_kernel.cuh"
#include "kernels/cuda/upsample_kernel.cuh"
#include "kernels/cuda/timestep_embedding_kernel.cuh"
#include "kernels/cuda/pooled_cosine_kernel.cuh"
#include "kernels/cuda/gaussian_blur_kernel.cuh"
#include "kernels/cuda/resize_bilinear_kernel.cuh"
#include "kernels/cuda/topk_score_kernel.cuh"
#include "kernels/cuda/imagenet_normalise_kernel.cuh"
#include "kernels/cuda/pixel_distance_kernel.cuh"
#include "kernels/cuda/max_pool3x3_kernel.cuh"
#include "kernels/cuda/anomaly_mix_kernel.cuh"
#include "kernels/cuda/cast_bf16_kernel.cuh"
#include "kernels/cuda/transpose_bf16_kernel.cuh"
#include "kernels/cuda/sdpa_layout.h"
#include "engine/core/attention_dims.h"
#include "kernels/cpu/cpu_image_ops.h"
#include "kernels/shared/bf16.h"
#include <algorithm>
#include <cstring>

using namespace mdps;
using mdps::test::random_floats;

namespace {


// A mask of exact 0s and 1s plus fractional values (the interpolating branch).
Tensor mask_tensor(const Shape& s, uint64_t seed) {
  std::vector<float> v = random_floats(size_t(shape_numel(s)), seed, 0.f, 3.f);
  for (auto& m : v) m = m < 1.f ? 0.f : (m < 2.f ? 1.f : m - 2.f);
  return Tensor::from_vector(s, v);
}

// |a - b| <= ulps float ulps of max(|b|, floor) for every element.
bool close_ulps(const Tensor& a, const Tensor& b, double ulps, double floor = 1e-30) {
  if (a.numel() != b.numel()) return false;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double ref = b.at(i);
    if (!(std::fabs(double(a.at(i)) - ref) <= ulps * 0x1p-23 * std::max(std::fabs(ref), floor))) return false;
  }
  return true;
}

// Geometries: the GPU's, and a grid of 2 blocks that forces grid-stride loops.
std::vector<unsigned> grids_for(int64_t n) { return {cuda::elementwise_blocks(n), 2u}; }

}  // namespace

TEST_CASE("emulation: shared memory, barriers and shuffles behave as on a GPU") {
  // Each thread writes its id to shared memory, the block synchronises, then
  // reads its neighbour's: correct only if the barrier orders all writes first.
  std::vector<int> out(96, -1);
  auto kernel = [](int* o) {
    MDPS_SHARED(int, buf, 96);
    buf[threadIdx.x] = int(threadIdx.x) * 10 + int(blockIdx.x);
    __syncthreads();
    o[blockIdx.x * blockDim.x + threadIdx.x] = buf[(threadIdx.x + 1) % blockDim.x];
  };
  emu::launch(dim3(2), dim3(48), kernel, out.data());
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 48; ++t) CHECK(out[size_t(b * 48 + t)] == ((t + 1) % 48) * 10 + b);
  CHECK(emu::last_launch().blocks == 2);
  CHECK(emu::last_launch().threads == 96);
  CHECK(emu::last_launch().barriers == 2);

  // Warp shuffles: a down-shuffle tree sums each warp into lane 0.
  std::vector<float> sums(4, 0.f);
  auto wsum = [](float* s) {
    float v = float(threadIdx.x);
    v = cuda::warp_reduce(v, cuda::SumOp());
    if (threadIdx.x % warpSize == 0) s[threadIdx.x / warpSize] = v;
  };
  emu::launch(dim3(1), dim3(128), wsum, sums.data());
  for (int w = 0; w < 4; ++w) CHECK(sums[size_t(w)] == float(32 * 32 * w + 31 * 32 / 2));

  // xor and indexed shuffles, and an atomic accumulation over the grid.
  std::vector<int> xr(32), bc(32);
  int total = 0;
  auto k2 = [](int* x, int* b, int* t) {
    x[threadIdx.x] = __shfl_xor_sync(MDPS_FULL_MASK, int(threadIdx.x), 1);
    b[threadIdx.x] = __shfl_sync(MDPS_FULL_MASK, int(threadIdx.x) * 3, 5);
    atomicAdd(t, 1);
  };
  emu::launch(dim3(1), dim3(32), k2, xr.data(), bc.data(), &total);
  for (int i = 0; i < 32; ++i) {
    CHECK(xr[size_t(i)] == (i ^ 1));
    CHECK(bc[size_t(i)] == 15);
  }
  CHECK(total == 32);
}

TEST_CASE("emulation: a barrier not every thread reaches is reported, not hung") {
  auto bad = [] {
    if (threadIdx.x < 16) __syncthreads();
    else {
      float v = __shfl_down_sync(MDPS_FULL_MASK, 1.f, 1);
      (void)v;
    }
  };
  CHECK_THROWS_AS(emu::launch(dim3(1), dim3(64), bad), Error);
}

TEST_CASE("mdps_step kernel equals the CPU backend bit for bit") {
  Backend& cpu = cpu_backend();
  StepCoeffs c;
  c.sqrt_a = 0.6f;
  c.sqrt_1ma = 0.8f;
  c.sqrt_a_next = 0.7f;
  c.dir = 0.5f;
  c.sigma = 0.3f;
  c.guidance = 0.25f;
  for (Shape s : {Shape{1, 1, 1, 1}, Shape{2, 3, 7, 5}, Shape{1, 4, 16, 16}, Shape{3, 1, 9, 11}}) {
    for (int variant = 0; variant < 2; ++variant) {
      const bool full = variant == 0;  // all optional inputs present, or none
      Tensor x = test::random_tensor(s, 1), y = test::random_tensor(s, 2), e = test::random_tensor(s, 3), g = test::random_tensor(s, 4), z = test::random_tensor(s, 5);
      Tensor m = mask_tensor({s[0], 1, s[2], s[3]}, 6);
      Tensor ref_next = Tensor::zeros(s), ref_x0 = Tensor::zeros(s);
      cpu.mdps_step(x, y, e, full ? &g : nullptr, full ? &m : nullptr, full ? &z : nullptr, c, ref_next,
                    full ? &ref_x0 : nullptr);
      for (unsigned grid : grids_for(x.numel())) {
        CAPTURE(shape_str(s));
        CAPTURE(grid);
        Tensor next = Tensor::full(s, NAN), x0 = Tensor::full(s, NAN);
        emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::mdps_step_kernel, x.data(), y.data(), e.data(),
                    full ? g.data() : nullptr, full ? m.data() : nullptr, full ? z.data() : nullptr, c, next.data(),
                    full ? x0.data() : nullptr, x.numel(), s[1] * s[2] * s[3], s[2] * s[3]);
        CHECK(test::same_bits(next, ref_next));
        if (full) CHECK(test::same_bits(x0, ref_x0));
      }
    }
  }
}

TEST_CASE("replace_normal kernel equals the CPU backend bit for bit") {
  for (Shape s : {Shape{1, 1, 1, 1}, Shape{2, 3, 13, 7}}) {
    Tensor x = test::random_tensor(s, 11), y = test::random_tensor(s, 12), z = test::random_tensor(s, 13), m = mask_tensor({s[0], 1, s[2], s[3]}, 14);
    Tensor ref = x.clone();
    cpu_backend().replace_normal(ref, y, z, m, 0.6f, 0.8f);
    for (unsigned grid : grids_for(x.numel())) {
      Tensor got = x.clone();
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::replace_normal_kernel, got.data(), y.data(),
                  z.data(), m.data(), 0.6f, 0.8f, x.numel(), s[1] * s[2] * s[3], s[2] * s[3]);
      CHECK(test::same_bits(got, ref));
    }
  }
}

TEST_CASE("group_norm kernel matches the CPU backend, with and without SiLU") {
  struct Case {
    Shape s;
    int groups;
  };
  // Group lengths below, equal to and above the block size, and not multiples.
  for (Case k : {Case{{1, 1, 1, 1}, 1}, Case{{2, 6, 5, 7}, 3}, Case{{2, 8, 16, 16}, 4}, Case{{1, 4, 3, 3}, 4}}) {
    for (bool silu : {false, true}) {
      CAPTURE(shape_str(k.s));
      CAPTURE(silu);
      const int64_t N = k.s[0], C = k.s[1], HW = k.s[2] * k.s[3];
      // An offset mean makes the two-pass variance matter.
      Tensor x = test::random_tensor(k.s, 21, 2.f, 5.f), gamma = test::random_tensor({C}, 22, 0.5f, 1.5f), beta = test::random_tensor({C}, 23);
      Tensor ry = Tensor::zeros(k.s), rm = Tensor::zeros({N * k.groups}), rr = Tensor::zeros({N * k.groups});
      cpu_backend().group_norm(x, gamma, beta, k.groups, 1e-5f, silu, ry, rm, rr);
      Tensor y = Tensor::full(k.s, NAN), m = Tensor::full({N * k.groups}, NAN), r = Tensor::full({N * k.groups}, NAN);
      emu::launch(dim3(unsigned(N * k.groups)), dim3(cuda::kReduceBlock), cuda::group_norm_kernel, x.data(),
                  gamma.data(), beta.data(), y.data(), m.data(), r.data(), k.groups, C / k.groups, HW, 1e-5f, silu);
      // float accumulation against the CPU's double: a few ulps of the data.
      CHECK(test::max_abs_diff(m.data(), rm.data(), size_t(m.numel())) <= 4e-6);
      CHECK(test::rel_l2(r.data(), rr.data(), size_t(r.numel())) <= 1e-5);
      // The CPU forms x * (rstd gamma) + bias, whose rounding is a few ulps of
      // |x rstd gamma|, not of y: large when a group is nearly constant.
      double scale = 0;
      for (int64_t i = 0; i < x.numel(); ++i) {
        const int64_t ng = (i / (HW * (C / k.groups))), c = (i / HW) % C;
        scale = std::max(scale, std::fabs(double(x.at(i)) * rr.at(ng) * gamma.at(c)) + 1.0);
      }
      CHECK(test::max_abs_diff(y.data(), ry.data(), size_t(y.numel())) <= 8 * scale * 6e-8);
    }
  }
}

TEST_CASE("softmax kernel matches the CPU backend") {
  // Rows shorter than a warp, of one element, and longer than the block.
  for (Shape s : {Shape{1, 1}, Shape{3, 5}, Shape{4, 256}, Shape{2, 3, 1000}}) {
    CAPTURE(shape_str(s));
    Tensor x = test::random_tensor(s, 31, -8.f, 8.f);
    Tensor ref = Tensor::zeros(s);
    cpu_backend().softmax(x, ref);
    Tensor y = Tensor::full(s, NAN);
    const int64_t L = s.back();
    emu::launch(dim3(unsigned(x.numel() / L)), dim3(cuda::kReduceBlock), cuda::softmax_kernel, x.data(), y.data(), L);
    CHECK(test::max_abs_diff(y.data(), ref.data(), size_t(y.numel())) <= 1e-6);
    CHECK(test::rel_l2(y.data(), ref.data(), size_t(y.numel())) <= 1e-6);
  }
}

TEST_CASE("philox_normal kernel reproduces the host stream bit for bit") {
  // Offsets inside and at Philox blocks; lengths 1, 2, 5, and a large odd one.
  for (uint64_t offset : {uint64_t(0), uint64_t(1), uint64_t(3), uint64_t(4), uint64_t(1) << 33}) {
    for (int64_t n : {int64_t(1), int64_t(2), int64_t(5), int64_t(1029)}) {
      CAPTURE(offset);
      CAPTURE(n);
      std::vector<float> ref(static_cast<size_t>(n)), got(static_cast<size_t>(n), NAN);
      philox_fill_normal(ref.data(), n, 42, 7, offset);
      const int64_t blocks4 = int64_t((((offset + uint64_t(n) - 1) >> 2) - (offset >> 2)) + 1);
      for (unsigned grid : grids_for(blocks4)) {
        std::fill(got.begin(), got.end(), NAN);
        emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::philox_normal_kernel, got.data(), n,
                    uint64_t(42), uint64_t(7), offset);
        CHECK(std::memcmp(got.data(), ref.data(), size_t(n) * sizeof(float)) == 0);
      }
      CHECK(got[0] == philox::normal_at(42, 7, offset));
    }
  }
}

TEST_CASE("adam kernel equals the CPU backend bit for bit (Adam, Adam + L2, AdamW)") {
  for (int64_t n : {int64_t(1), int64_t(1000)}) {
    for (int mode = 0; mode < 4; ++mode) {
      AdamParams p;
      p.lr = 1e-3f;
      p.weight_decay = mode == 0 ? 0.f : 0.05f;
      p.decoupled = mode >= 2;
      if (mode == 3) p.beta1 = 0.3f;  // the other branch of torch's lerp
      CAPTURE(n);
      CAPTURE(mode);
      Tensor p0 = test::random_tensor({n}, 41), g = test::random_tensor({n}, 42), m0 = test::random_tensor({n}, 43, -0.1f, 0.1f), v0 = test::random_tensor({n}, 44, 0.f, 0.01f);
      Tensor rp = p0.clone(), rm = m0.clone(), rv = v0.clone();
      cpu_backend().adam_update(rp, g, rm, rv, p, 7);
      for (unsigned grid : grids_for(n)) {
        Tensor gp = p0.clone(), gm = m0.clone(), gv = v0.clone();
        emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::adam_kernel, gp.data(), g.data(), gm.data(),
                    gv.data(), cuda::adam_scalars(p, 7), n);
        CHECK(test::same_bits(gp, rp));
        CHECK(test::same_bits(gm, rm));
        CHECK(test::same_bits(gv, rv));
      }
    }
  }
}

TEST_CASE("elementwise kernel matches the CPU backend for every op") {
  Backend& cpu = cpu_backend();
  const Shape s{2, 3, 5, 7};
  const int64_t n = shape_numel(s);
  Tensor a = test::random_tensor(s, 51, -6.f, 6.f), b = test::random_tensor(s, 52), v = test::random_tensor({2, 3}, 53);
  Tensor ss = Tensor::full({1}, 7.3f), zero = Tensor::zeros({1});  // a sum of squares; 0 gives 0, not NaN
  struct Case {
    cuda::EwOp op;
    const Tensor* b;
    int64_t b_div, b_mod;
    float alpha, beta;
    bool exact;  // false: SiLU's expf against the CPU's polynomial exp
  };
  const std::vector<Case> cases = {
      {cuda::EwOp::Fill, nullptr, 1, n, 2.5f, 0.f, true},  {cuda::EwOp::Add, &b, 1, n, 0.f, 0.f, true},
      {cuda::EwOp::Sub, &b, 1, n, 0.f, 0.f, true},         {cuda::EwOp::Mul, &b, 1, n, 0.f, 0.f, true},
      {cuda::EwOp::Scale, nullptr, 1, n, -1.5f, 0.f, true}, {cuda::EwOp::Axpby, &b, 1, n, 0.7f, -0.2f, true},
      {cuda::EwOp::Add, &v, 35, 6, 0.f, 0.f, true},        {cuda::EwOp::Silu, nullptr, 1, n, 0.f, 0.f, false},
      {cuda::EwOp::SiluBackward, &b, 1, n, 0.f, 0.f, false}, {cuda::EwOp::Relu, nullptr, 1, n, 0.f, 0.f, true},
      {cuda::EwOp::ScaleByInverseSqrt, &ss, n, 1, 0.f, 0.f, true},
      {cuda::EwOp::ScaleByInverseSqrt, &zero, n, 1, 0.f, 0.f, true}};
  for (const Case& k : cases) {
    CAPTURE(int(k.op));
    Tensor ref = Tensor::zeros(s);
    switch (k.op) {
      case cuda::EwOp::Fill: ref.fill(k.alpha); break;
      case cuda::EwOp::Add:
        if (k.b == &v) cpu.add_channel_bias(a, v, ref);
        else cpu.add(a, b, ref);
        break;
      case cuda::EwOp::Sub: cpu.sub(a, b, ref); break;
      case cuda::EwOp::Mul: cpu.mul(a, b, ref); break;
      case cuda::EwOp::Scale: cpu.scale(a, k.alpha, ref); break;
      case cuda::EwOp::Axpby:
        ref.copy_from(b);
        cpu.axpby(k.alpha, a, k.beta, ref);
        break;
      case cuda::EwOp::Silu: cpu.silu(a, ref); break;
      case cuda::EwOp::SiluBackward: cpu.silu_backward(a, b, ref); break;
      case cuda::EwOp::Relu: cpu.relu(a, ref); break;
      case cuda::EwOp::ScaleByInverseSqrt: cpu.scale_by_inverse_sqrt(a, *k.b, ref); break;
    }
    for (unsigned grid : grids_for(n)) {
      Tensor y = Tensor::full(s, NAN);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::elementwise_kernel, k.op, a.data(),
                  k.b ? k.b->data() : nullptr, y.data(), k.alpha, k.beta, n, k.b_div, k.b_mod);
      if (k.exact) CHECK(test::same_bits(y, ref));
      else CHECK(test::max_abs_diff(y.data(), ref.data(), size_t(n)) <= 2e-6 * 6);
    }
  }
}

TEST_CASE("group_norm_backward kernels match the CPU backend, with and without SiLU and dx") {
  struct Case {
    Shape s;
    int groups;
  };
  for (Case k : {Case{{1, 1, 1, 1}, 1}, Case{{2, 6, 5, 7}, 3}, Case{{2, 8, 16, 17}, 4}, Case{{3, 4, 3, 3}, 2}}) {
    for (bool silu : {false, true}) {
      for (bool want_dx : {true, false}) {
        CAPTURE(shape_str(k.s));
        CAPTURE(silu);
        CAPTURE(want_dx);
        const int64_t N = k.s[0], C = k.s[1], HW = k.s[2] * k.s[3], G = k.groups;
        Tensor x = test::random_tensor(k.s, 61, 2.f, 5.f), dy = test::random_tensor(k.s, 62), gamma = test::random_tensor({C}, 63, 0.5f, 1.5f), beta = test::random_tensor({C}, 64);
        Tensor y = Tensor::zeros(k.s), mean = Tensor::zeros({N * G}), rstd = Tensor::zeros({N * G});
        cpu_backend().group_norm(x, gamma, beta, G, 1e-5f, silu, y, mean, rstd);
        Tensor rdx = Tensor::zeros(k.s), rdg = Tensor::zeros({C}), rdb = Tensor::zeros({C});
        cpu_backend().group_norm_backward(dy, x, gamma, beta, mean, rstd, G, silu, &rdx, &rdg, &rdb);

        Tensor dx = Tensor::full(k.s, NAN), dg = Tensor::full({C}, NAN), db = Tensor::full({C}, NAN);
        std::vector<double> sums(size_t(2 * N * C), NAN);
        emu::launch(dim3(unsigned(N * G)), dim3(cuda::kReduceBlock), cuda::group_norm_backward_kernel, dy.data(),
                    x.data(), gamma.data(), beta.data(), mean.data(), rstd.data(), k.groups, C / G, HW, silu,
                    want_dx ? dx.data() : nullptr, sums.data(), sums.data() + N * C);
        if (want_dx) {
          // Each dx is a difference of terms of size |dz gamma rstd|: its
          // rounding is a few ulps of that, not of dx (which may cancel to ~0).
          double scale = 0;
          for (int64_t i = 0; i < x.numel(); ++i) {
            const int64_t ng = i / (HW * (C / G)), c = (i / HW) % C;
            scale = std::max(scale, 2.0 * std::fabs(double(dy.at(i)) * gamma.at(c) * rstd.at(ng)) + 1.0);
          }
          CHECK(test::max_abs_diff(dx.data(), rdx.data(), size_t(dx.numel())) <= 16 * scale * 6e-8);
        } else {
          CHECK(std::isnan(dx.at(0)));  // untouched
        }
        for (unsigned grid : grids_for(C)) {
          dg.fill(NAN);
          db.fill(NAN);
          emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::group_norm_param_grad_kernel, sums.data(),
                      sums.data() + N * C, N, C, dg.data(), db.data());
          // Sums of N*HW terms: agreement to float rounding of the double sums
          // up to SiLU's expf against the CPU's exp.
          CHECK(test::max_abs_diff(db.data(), rdb.data(), size_t(C)) <= 1e-6 * double(N * HW + 1));
          CHECK(test::max_abs_diff(dg.data(), rdg.data(), size_t(C)) <= 1e-6 * double(N * HW + 1));
          if (!silu) CHECK(close_ulps(db, rdb, 1.0, 1e-6));
        }
        // Null parameter outputs are skipped.
        emu::launch(dim3(1), dim3(cuda::kElementwiseBlock), cuda::group_norm_param_grad_kernel, sums.data(),
                    sums.data() + N * C, N, C, static_cast<float*>(nullptr), static_cast<float*>(nullptr));
      }
    }
  }
}

TEST_CASE("softmax_backward kernel matches the CPU backend") {
  for (Shape s : {Shape{1, 1}, Shape{3, 5}, Shape{4, 256}, Shape{2, 3, 1000}}) {
    CAPTURE(shape_str(s));
    Tensor x = test::random_tensor(s, 71, -4.f, 4.f), dy = test::random_tensor(s, 72), y = Tensor::zeros(s), ref = Tensor::zeros(s);
    cpu_backend().softmax(x, y);
    cpu_backend().softmax_backward(y, dy, ref);
    Tensor dx = Tensor::full(s, NAN);
    const int64_t L = s.back();
    emu::launch(dim3(unsigned(x.numel() / L)), dim3(cuda::kReduceBlock), cuda::softmax_backward_kernel, y.data(),
                dy.data(), dx.data(), L);
    // Same formula, the dot product summed in double in another order.
    CHECK(test::max_abs_diff(dx.data(), ref.data(), size_t(dx.numel())) <= 1e-7);
  }
}

TEST_CASE("row and column sum kernels match sum_hw and the linear bias gradient") {
  for (Shape s : {Shape{1, 1, 1, 1}, Shape{2, 3, 7, 5}, Shape{1, 2, 40, 41}}) {
    CAPTURE(shape_str(s));
    Tensor x = test::random_tensor(s, 81), ref = Tensor::zeros({s[0], s[1]});
    cpu_backend().sum_hw(x, ref);
    Tensor got = Tensor::full({s[0], s[1]}, NAN);
    emu::launch(dim3(unsigned(s[0] * s[1])), dim3(cuda::kReduceBlock), cuda::row_sum_kernel, x.data(), got.data(),
                s[2] * s[3]);
    CHECK(close_ulps(got, ref, 1.0, 1e-6));
  }
  struct Dims {
    int64_t rows, in, out;
  };
  for (Dims d : {Dims{1, 1, 1}, Dims{37, 3, 300}, Dims{5, 2, 7}}) {
    CAPTURE(d.rows);
    CAPTURE(d.out);
    Tensor x = test::random_tensor({d.rows, d.in}, 82), w = test::random_tensor({d.out, d.in}, 83), dy = test::random_tensor({d.rows, d.out}, 84);
    Tensor ref = Tensor::zeros({d.out});
    cpu_backend().linear_backward(dy, x, w, nullptr, nullptr, &ref);
    for (unsigned grid : grids_for(d.out)) {
      Tensor got = Tensor::full({d.out}, NAN);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::column_sum_kernel, dy.data(), got.data(), d.rows,
                  d.out);
      CHECK(test::same_bits(got, ref));  // both add the rows in order in double
    }
  }
}

TEST_CASE("whole-tensor sum and sum of squares kernels match the CPU backend") {
  for (int64_t n : {int64_t(1), int64_t(255), int64_t(1000), int64_t(70001)}) {
    for (bool squares : {false, true}) {
      CAPTURE(n);
      CAPTURE(squares);
      Tensor x = test::random_tensor({n}, 91, -2.f, 3.f), ref = Tensor::zeros({1});
      if (squares) cpu_backend().sum_squares(x, ref);
      else cpu_backend().sum(x, ref);
      for (unsigned parts : {cuda::sum_partial_blocks(n), 2u}) {
        std::vector<double> partial(parts, NAN);
        Tensor out = Tensor::full({1}, NAN);
        emu::launch(dim3(parts), dim3(cuda::kReduceBlock), cuda::sum_partials_kernel, x.data(), n, squares,
                    partial.data());
        emu::launch(dim3(1), dim3(cuda::kReduceBlock), cuda::sum_finish_kernel, partial.data(), int64_t(parts),
                    out.data());
        // Double sums in another order, rounded once to float.
        CHECK(close_ulps(out, ref, 1.0, 1e-6));
      }
    }
  }
  CHECK(cuda::sum_partial_blocks(int64_t(1) << 40) == unsigned(cuda::kMaxSumPartials));
}

TEST_CASE("copy_channels kernel concatenates and splits like the CPU backend") {
  for (Shape sa : {Shape{1, 1, 1, 1}, Shape{2, 3, 5, 7}}) {
    const Shape sb{sa[0], sa[1] + 1, sa[2], sa[3]}, sy{sa[0], 2 * sa[1] + 1, sa[2], sa[3]};
    CAPTURE(shape_str(sa));
    Tensor a = test::random_tensor(sa, 101), b = test::random_tensor(sb, 102), ref = Tensor::zeros(sy);
    cpu_backend().concat_channels(a, b, ref);
    const int64_t hw = sa[2] * sa[3];
    for (unsigned grid : grids_for(b.numel())) {
      Tensor y = Tensor::full(sy, NAN);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::copy_channels_kernel, a.data(), sa[1], y.data(),
                  sy[1], int64_t(0), hw, a.numel(), true);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::copy_channels_kernel, b.data(), sb[1], y.data(),
                  sy[1], sa[1], hw, b.numel(), true);
      CHECK(test::same_bits(y, ref));
      Tensor ga = Tensor::full(sa, NAN), gb = Tensor::full(sb, NAN);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::copy_channels_kernel, ga.data(), sa[1], y.data(),
                  sy[1], int64_t(0), hw, ga.numel(), false);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::copy_channels_kernel, gb.data(), sb[1], y.data(),
                  sy[1], sa[1], hw, gb.numel(), false);
      CHECK(test::same_bits(ga, a));
      CHECK(test::same_bits(gb, b));
    }
  }
}

TEST_CASE("avg_pool2 and upsample_nearest2 kernels (and backward) equal the CPU backend bit for bit") {
  // Odd sizes (the pool's floor), one pixel, and planes larger than a block.
  for (Shape s : {Shape{1, 1, 1, 1}, Shape{1, 1, 2, 2}, Shape{2, 3, 7, 9}, Shape{1, 2, 32, 35}}) {
    CAPTURE(shape_str(s));
    const int64_t planes = s[0] * s[1], H = s[2], W = s[3];
    const Shape sp{s[0], s[1], H / 2, W / 2}, su{s[0], s[1], 2 * H, 2 * W};
    Tensor x = test::random_tensor(s, 111), dp = test::random_tensor(sp, 112), du = test::random_tensor(su, 113);
    Tensor rp = Tensor::zeros(sp), rpb = Tensor::zeros(s), ru = Tensor::zeros(su), rub = Tensor::zeros(s);
    cpu_backend().avg_pool2(x, rp);
    cpu_backend().avg_pool2_backward(dp, rpb);
    cpu_backend().upsample_nearest2(x, ru);
    cpu_backend().upsample_nearest2_backward(du, rub);
    for (unsigned grid : grids_for(su.empty() ? 1 : shape_numel(su))) {
      CAPTURE(grid);
      Tensor p = Tensor::full(sp, NAN), pb = Tensor::full(s, NAN), u = Tensor::full(su, NAN), ub = Tensor::full(s, NAN);
      if (p.numel() > 0)
        emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::avg_pool2_kernel, x.data(), p.data(), H, W,
                    p.numel());
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::avg_pool2_backward_kernel, dp.data(), pb.data(), H,
                  W, planes * H * W);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::upsample_nearest2_kernel, x.data(), u.data(), H, W,
                  u.numel());
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::upsample_nearest2_backward_kernel, du.data(),
                  ub.data(), H, W, planes * H * W);
      CHECK(test::same_bits(p, rp));
      CHECK(test::same_bits(pb, rpb));
      CHECK(test::same_bits(u, ru));
      CHECK(test::same_bits(ub, rub));
    }
  }
}

TEST_CASE("timestep_embedding kernel equals the CPU backend bit for bit") {
  // Odd and even widths, one column, and timesteps up to 1000 (large phases).
  Tensor t = Tensor::from_vector({5}, {0.f, 1.f, 17.25f, 999.5f, 1000.f});
  for (int64_t dim : {int64_t(1), int64_t(2), int64_t(7), int64_t(128), int64_t(321)}) {
    CAPTURE(dim);
    Tensor ref = Tensor::zeros({5, dim});
    cpu_backend().timestep_embedding(t, ref);
    const int64_t items = 5 * (dim / 2 + dim % 2);
    for (unsigned grid : grids_for(items)) {
      Tensor y = Tensor::full({5, dim}, NAN);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::timestep_embedding_kernel, t.data(), y.data(),
                  int64_t(5), dim);
      CHECK(test::same_bits(y, ref));
    }
  }
}

TEST_CASE("pooled_cosine_distance kernel equals mean_pool3x3 + cosine_distance on the CPU bit for bit") {
  // One pixel (the whole window is padding), one channel, odd planes larger
  // than a block, and pixels whose feature vector is zero (the eps clamp).
  for (Shape s : {Shape{1, 1, 1, 1}, Shape{1, 1, 3, 1}, Shape{2, 5, 7, 9}, Shape{1, 3, 19, 17}, Shape{2, 1, 1, 13}}) {
    CAPTURE(shape_str(s));
    Tensor a = test::random_tensor(s, 121), b = test::random_tensor(s, 122);
    const int64_t HW = s[2] * s[3];
    for (int64_t c = 0; c < s[1]; ++c) {  // sample 0: a is zero on the first row's 3x3 reach
      for (int64_t i = 0; i < std::min<int64_t>(HW, 2 * s[3]); ++i) a.data()[c * HW + i] = 0.f;
      if (s[0] > 1) b.data()[(s[1] + c) * HW] = 0.f;  // sample 1: b is zero at one pixel only
    }
    Tensor ref = hostops::cosine_distance(hostops::mean_pool3x3(a), hostops::mean_pool3x3(b));
    const int64_t n = s[0] * HW;
    for (unsigned grid : grids_for(n)) {
      CAPTURE(grid);
      Tensor y = Tensor::full({s[0], 1, s[2], s[3]}, NAN);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::pooled_cosine_distance_kernel, a.data(), b.data(),
                  y.data(), s[1], s[2], s[3], n, 1e-8f);
      CHECK(test::same_bits(y, ref));
    }
  }
  // Identical inputs are at distance 0 up to rounding; opposite ones at 2.
  Tensor a = test::random_tensor({1, 4, 6, 5}, 123), neg = Tensor::empty({1, 4, 6, 5}), y = Tensor::full({1, 1, 6, 5}, NAN);
  for (int64_t i = 0; i < a.numel(); ++i) neg.data()[i] = -a.data()[i];
  emu::launch(dim3(1), dim3(cuda::kElementwiseBlock), cuda::pooled_cosine_distance_kernel, a.data(), a.data(),
              y.data(), int64_t(4), int64_t(6), int64_t(5), int64_t(30), 1e-8f);
  for (int64_t i = 0; i < 30; ++i) CHECK(std::fabs(y.data()[i]) <= 1e-6f);
  emu::launch(dim3(1), dim3(cuda::kElementwiseBlock), cuda::pooled_cosine_distance_kernel, a.data(), neg.data(),
              y.data(), int64_t(4), int64_t(6), int64_t(5), int64_t(30), 1e-8f);
  for (int64_t i = 0; i < 30; ++i) CHECK(std::fabs(y.data()[i] - 2.f) <= 1e-6f);
}

TEST_CASE("gaussian_blur kernels (two passes) equal the CPU blur bit for bit") {
  // The authors' kernel (33 taps, sigma 4) on planes smaller than the kernel
  // (the reflection bounces several times), one pixel, one row, and planes
  // larger than a block; a short kernel as well.
  struct Case {
    Shape s;
    int kernel;
    float sigma;
  };
  for (const Case& t : {Case{{1, 1, 1, 1}, 33, 4.f}, Case{{1, 2, 5, 7}, 33, 4.f}, Case{{2, 1, 1, 40}, 33, 4.f},
                        Case{{1, 1, 37, 41}, 33, 4.f}, Case{{2, 3, 9, 6}, 5, 1.f}, Case{{1, 1, 4, 4}, 1, 1.f}}) {
    CAPTURE(shape_str(t.s));
    CAPTURE(t.kernel);
    Tensor x = test::random_tensor(t.s, 131, 0.f, 3.f);
    Tensor ref = hostops::gaussian_blur(x, t.kernel, t.sigma);
    const std::vector<float> k = hostops::gaussian_kernel1d(t.kernel, t.sigma);
    cuda::BlurTaps taps{};
    std::copy(k.begin(), k.end(), taps.w);
    taps.kernel = t.kernel;
    const int64_t n = x.numel(), H = t.s[2], W = t.s[3];
    for (unsigned grid : grids_for(n)) {
      CAPTURE(grid);
      std::vector<double> tmp(size_t(n), NAN);
      Tensor y = Tensor::full(t.s, NAN);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::gaussian_blur_rows_kernel, x.data(), tmp.data(), W,
                  n, taps);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::gaussian_blur_columns_kernel,
                  static_cast<const double*>(tmp.data()), y.data(), H, W, n, taps);
      CHECK(test::same_bits(y, ref));
    }
  }
}

TEST_CASE("resize_bilinear kernel equals the CPU's align_corners resize bit for bit") {
  // Up (the feature maps to the image), down, to and from one pixel, same size.
  struct Case {
    Shape in;
    int64_t H, W;
  };
  for (const Case& t : {Case{{1, 1, 1, 1}, 5, 3}, Case{{2, 3, 7, 5}, 16, 16}, Case{{1, 2, 9, 13}, 4, 6},
                        Case{{1, 1, 6, 4}, 1, 1}, Case{{1, 1, 8, 8}, 8, 8}, Case{{1, 2, 4, 4}, 33, 31}}) {
    CAPTURE(shape_str(t.in));
    CAPTURE(t.H);
    CAPTURE(t.W);
    Tensor x = test::random_tensor(t.in, 141);
    Tensor ref = hostops::resize_bilinear_align_corners(x, t.H, t.W);
    const int64_t planes = t.in[0] * t.in[1], n = planes * t.H * t.W;
    for (unsigned grid : grids_for(n)) {
      CAPTURE(grid);
      Tensor y = Tensor::full({t.in[0], t.in[1], t.H, t.W}, NAN);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::resize_bilinear_kernel, x.data(), y.data(),
                  t.in[2], t.in[3], t.H, t.W, n);
      CHECK(test::same_bits(y, ref));
    }
  }
}

TEST_CASE("topk_score kernel: order keys sort like the floats they encode") {
  const std::vector<float> sorted{-INFINITY, -3e38f, -1.f, -1e-40f, -0.f, 0.f, 1e-45f, 1e-40f, 1.f, 1.0000001f,
                                  3e38f,     INFINITY};
  for (size_t i = 0; i < sorted.size(); ++i) {
    CAPTURE(sorted[i]);
    const uint32_t key = cuda::float_order_key(sorted[i]);
    const float back = cuda::float_from_order_key(key);
    CHECK(std::memcmp(&back, &sorted[i], sizeof back) == 0);
    if (i > 0) CHECK(cuda::float_order_key(sorted[i - 1]) < key);
  }
}

namespace {

// The kernel's score for every map of `maps` [N, n] with one block geometry.
std::vector<double> topk_scores_emu(const std::vector<float>& maps, int64_t N, int64_t n, int k, bool softmax,
                                    unsigned block) {
  std::vector<double> out(size_t(N), NAN);
  emu::launch(dim3(unsigned(N)), dim3(block), cuda::topk_score_kernel, maps.data(), n, k, softmax, out.data());
  return out;
}

}  // namespace

TEST_CASE("topk_score kernel equals the CPU's top-k mean bit for bit and its softmax top-k sum to rounding") {
  struct Case {
    const char* what;
    int64_t N, n;
    int k;
    std::vector<float> v;
  };
  std::vector<Case> cases;
  cases.push_back({"one pixel, k > n", 1, 1, 500, random_floats(1, 151)});
  cases.push_back({"k > n", 2, 300, 500, random_floats(600, 152, -3.f, 3.f)});
  cases.push_back({"n not a multiple of the block", 3, 1000, 500, random_floats(3000, 153, 0.f, 2.f)});
  cases.push_back({"k = 1", 1, 5000, 1, random_floats(5000, 154)});
  cases.push_back({"k = n", 1, 777, 777, random_floats(777, 155)});
  cases.push_back({"k at the shared-memory capacity", 1, 3000, cuda::kTopKCapacity, random_floats(3000, 156)});
  {
    // Ties: 8 levels, so the 500th largest has many copies inside and outside the top k.
    std::vector<float> v = random_floats(2000, 157);
    for (float& x : v) x = std::floor(x * 4.f) / 4.f;
    cases.push_back({"ties", 2, 1000, 500, v});
    cases.push_back({"a constant map", 1, 900, 500, std::vector<float>(900, 0.375f)});
  }
  {
    // Values one ulp apart: the keys share their top bytes, so all 4 radix passes decide.
    std::vector<float> v(1500);
    for (size_t i = 0; i < v.size(); ++i) v[i] = std::nextafter(1.f, 2.f) + float(i % 97) * 1.1920929e-7f;
    std::vector<float> w = random_floats(1500, 158);
    for (size_t i = 0; i < v.size(); ++i)
      if (w[i] < 0.f) v[i] = -v[i];
    cases.push_back({"values an ulp apart, both signs", 1, 1500, 500, v});
  }
  for (const Case& c : cases) {
    CAPTURE(c.what);
    for (unsigned block : {cuda::kTopKBlock, 64u, 32u}) {
      CAPTURE(block);
      const std::vector<double> mean = topk_scores_emu(c.v, c.N, c.n, c.k, false, block);
      const std::vector<double> soft = topk_scores_emu(c.v, c.N, c.n, c.k, true, block);
      for (int64_t m = 0; m < c.N; ++m) {
        const float* map = c.v.data() + m * c.n;
        CHECK(mean[size_t(m)] == hostops::topk_mean(map, c.n, c.k));
        // The numerator is the CPU's sum term for term; the denominator is a
        // reordered sum of n positive doubles: at most (n - 1) * 2^-53
        // relative apart, plus the division's rounding.
        const double ref = hostops::softmax_topk_sum(map, c.n, c.k);
        CHECK(std::fabs(soft[size_t(m)] - ref) <= double(c.n + 1) * 0x1p-53 * ref);
      }
    }
  }
}

TEST_CASE("imagenet_normalise kernel equals the CPU normalisation bit for bit, in place too") {
  for (Shape s : {Shape{1, 3, 1, 1}, Shape{2, 3, 7, 9}, Shape{1, 3, 19, 17}}) {
    CAPTURE(shape_str(s));
    Tensor x = test::random_tensor(s, 151);
    Tensor ref = hostops::imagenet_normalise(x);
    const int64_t n = x.numel();
    for (unsigned grid : grids_for(n)) {
      CAPTURE(grid);
      Tensor y = Tensor::full(s, NAN);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::imagenet_normalise_kernel, x.data(), y.data(),
                  s[2] * s[3], n);
      CHECK(test::same_bits(y, ref));
      Tensor inplace = x.clone();
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::imagenet_normalise_kernel,
                  static_cast<const float*>(inplace.data()), inplace.data(), s[2] * s[3], n);
      CHECK(test::same_bits(inplace, ref));
    }
  }
  // The three channels get their own statistics: -1 maps to -mean_c / std_c.
  Tensor black = Tensor::full({1, 3, 1, 1}, -1.f), y = Tensor::full({1, 3, 1, 1}, NAN);
  emu::launch(dim3(1), dim3(cuda::kElementwiseBlock), cuda::imagenet_normalise_kernel, black.data(), y.data(),
              int64_t(1), int64_t(3));
  CHECK(y.at(0) == doctest::Approx(-0.485 / 0.229));
  CHECK(y.at(1) == doctest::Approx(-0.456 / 0.224));
  CHECK(y.at(2) == doctest::Approx(-0.406 / 0.225));
}

TEST_CASE("pixel_distance kernel equals the CPU pixel term bit for bit") {
  for (Shape s : {Shape{1, 3, 1, 1}, Shape{2, 3, 7, 9}, Shape{3, 3, 16, 17}}) {
    CAPTURE(shape_str(s));
    Tensor a = test::random_tensor(s, 161), b = test::random_tensor(s, 162);
    Tensor ref = hostops::pixel_distance(a, b);
    const int64_t hw = s[2] * s[3], n = s[0] * hw;
    for (unsigned grid : grids_for(n)) {
      CAPTURE(grid);
      Tensor y = Tensor::full({s[0], 1, s[2], s[3]}, NAN);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::pixel_distance_kernel, a.data(), b.data(),
                  y.data(), hw, n);
      CHECK(test::same_bits(y, ref));
    }
  }
  // An image against itself is at distance 0 everywhere.
  Tensor a = test::random_tensor({1, 3, 4, 5}, 163), y = Tensor::full({1, 1, 4, 5}, NAN);
  emu::launch(dim3(1), dim3(cuda::kElementwiseBlock), cuda::pixel_distance_kernel, a.data(), a.data(), y.data(),
              int64_t(20), int64_t(20));
  for (int64_t i = 0; i < 20; ++i) CHECK(y.at(i) == 0.f);
}

TEST_CASE("max_pool3x3_s2 kernel equals the CPU max pool bit for bit, NaN and -inf included") {
  // Odd and even sides (the last window is clipped on odd sides' far edge or
  // not), one pixel, one row, and planes larger than a block.
  for (Shape s : {Shape{1, 1, 1, 1}, Shape{1, 2, 1, 6}, Shape{2, 3, 7, 9}, Shape{1, 2, 8, 8}, Shape{1, 1, 33, 35}}) {
    CAPTURE(shape_str(s));
    Tensor x = test::random_tensor(s, 171, -3.f, 3.f);
    x.data()[0] = NAN;  // std::max keeps the running max past a NaN unless the NaN comes first
    if (x.numel() > 3) x.data()[3] = -INFINITY;
    Tensor ref = hostops::max_pool3x3_s2(x);
    const int64_t planes = s[0] * s[1], Ho = ref.dim(2), Wo = ref.dim(3), n = planes * Ho * Wo;
    for (unsigned grid : grids_for(n)) {
      CAPTURE(grid);
      Tensor y = Tensor::full(ref.shape(), 7.f);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::max_pool3x3_s2_kernel, x.data(), y.data(), s[2],
                  s[3], Ho, Wo, n);
      CHECK(test::same_bits(y, ref));
    }
  }
}

TEST_CASE("whole-tensor max kernels match the CPU backend's max exactly") {
  // One element, fewer than a block, not a multiple of a block, several
  // grid-stride rounds; all negative (the -inf identity must not win), and
  // the maximum at the first and at the last element.
  for (int64_t n : {int64_t(1), int64_t(255), int64_t(1000), int64_t(70001)}) {
    for (int where : {0, 1, 2}) {
      CAPTURE(n);
      CAPTURE(where);
      Tensor x = test::random_tensor({n}, 181, -5.f, -1.f);
      if (where == 1) x.data()[0] = -0.5f;
      if (where == 2) x.data()[n - 1] = -0.25f;
      Tensor ref = Tensor::full({1}, NAN);
      cpu_backend().max(x, ref);
      for (unsigned parts : {cuda::sum_partial_blocks(n), 2u}) {
        std::vector<float> partial(parts, NAN);
        Tensor out = Tensor::full({1}, NAN);
        emu::launch(dim3(parts), dim3(cuda::kReduceBlock), cuda::max_partials_kernel, x.data(), n, partial.data());
        emu::launch(dim3(1), dim3(cuda::kReduceBlock), cuda::max_finish_kernel,
                    static_cast<const float*>(partial.data()), int64_t(parts), out.data());
        CHECK(test::same_bits(out, ref));
      }
    }
  }
}

TEST_CASE("anomaly_mix kernel equals the CPU backend's mix bit for bit, max(P) = 0 included") {
  const Shape s{2, 1, 9, 31};
  const int64_t n = shape_numel(s);
  Tensor f = test::random_tensor(s, 191, 0.f, 2.f), p = test::random_tensor(s, 192, 0.f, 0.5f);
  for (float max_p_value : {0.37f, 0.f}) {
    CAPTURE(max_p_value);
    Tensor max_f = Tensor::full({1}, 1.9f), max_p = Tensor::full({1}, max_p_value), ref = Tensor::empty(s);
    cpu_backend().anomaly_mix(f, p, max_f, max_p, 7.f, ref);
    for (unsigned grid : grids_for(n)) {
      CAPTURE(grid);
      Tensor y = Tensor::full(s, NAN);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::anomaly_mix_kernel, f.data(), p.data(),
                  max_f.data(), max_p.data(), 7.f, y.data(), n);
      CHECK(test::same_bits(y, ref));
      Tensor inplace = f.clone();  // y aliasing f, as the engine may call it
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::anomaly_mix_kernel,
                  static_cast<const float*>(inplace.data()), p.data(), max_f.data(), max_p.data(), 7.f,
                  inplace.data(), n);
      CHECK(test::same_bits(inplace, ref));
    }
    if (max_p_value == 0.f) CHECK(test::same_bits(ref, f));  // nothing added when the images agree
  }
}

TEST_CASE("bf16 casts: round to nearest even, NaN and infinities kept; the kernels equal the host cast") {
  auto from_bits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  };
  struct Known {
    uint32_t f;
    uint16_t b;
  };
  for (const Known& k : {Known{0x3f800000u, 0x3f80}, Known{0x3f808000u, 0x3f80} /* tie: to even */,
                         Known{0x3f818000u, 0x3f82} /* tie: to even, up */, Known{0x3f808001u, 0x3f81},
                         Known{0x3f807fffu, 0x3f80}, Known{0x7f7fffffu, 0x7f80} /* FLT_MAX rounds to inf */,
                         Known{0x7f800000u, 0x7f80}, Known{0xff800000u, 0xff80}, Known{0x80000000u, 0x8000},
                         Known{0x00000001u, 0x0000}, Known{0x7fc00001u, 0x7fc0}, Known{0x7f800001u, 0x7fc0},
                         Known{0xff800001u, 0xffc0}, Known{0xc0490fdbu, 0xc049} /* -pi */}) {
    CAPTURE(k.f);
    CHECK(bf16_from_float(from_bits(k.f)) == k.b);
  }
  CHECK(float_from_bf16(0x3f80) == 1.f);
  CHECK(std::isnan(float_from_bf16(bf16_from_float(NAN))));
  // Random floats: the kernels equal the host functions, the result is the
  // nearer of the two bf16 neighbours, and the round trip is exact for bf16 values.
  for (int64_t n : {int64_t(1), int64_t(1000), int64_t(4099)}) {
    CAPTURE(n);
    Tensor x = test::random_tensor({n}, 201, -1e4f, 1e4f);
    std::vector<uint16_t> b(size_t(n), 0xdead);
    std::vector<float> back(size_t(n), NAN);
    for (unsigned grid : grids_for(n)) {
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::float_to_bf16_kernel, x.data(), b.data(), n);
      emu::launch(dim3(grid), dim3(cuda::kElementwiseBlock), cuda::bf16_to_float_kernel,
                  static_cast<const uint16_t*>(b.data()), back.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const float v = x.at(i);
        REQUIRE(b[size_t(i)] == bf16_from_float(v));
        const float lo = float_from_bf16(uint16_t(float_bits(v) >> 16));  // truncated: one neighbour
        const float hi = float_from_bf16(uint16_t((float_bits(v) >> 16) + 1));
        const float r = back[size_t(i)];
        CHECK((r == lo || r == hi));
        CHECK(std::fabs(r - v) <= std::fabs((r == lo ? hi : lo) - v));
        CHECK(bf16_from_float(r) == b[size_t(i)]);
      }
    }
  }
}

TEST_CASE("bf16 gemm: the operand extent covers exactly the elements the CPU product reads") {
  // Mark every element the CPU's strided-batched gemm reads of A (poisoning
  // the rest with NaN would show in C); the extent must reach the last one.
  struct Case {
    bool trans;
    int64_t rows, cols, ld, stride, batch;
  };
  for (const Case& c : {Case{false, 4, 3, 3, 12, 2}, Case{true, 5, 2, 7, 0, 3}, Case{false, 1, 9, 9, 9, 1},
                        Case{false, 3, 2, 8, 40, 4}}) {
    CAPTURE(c.rows);
    CAPTURE(c.ld);
    const int64_t extent = cuda::gemm_operand_extent(c.rows, c.cols, c.ld, c.stride, c.batch);
    int64_t last = -1;
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t r = 0; r < c.rows; ++r)
        for (int64_t k = 0; k < c.cols; ++k) last = std::max(last, b * c.stride + r * c.ld + k);
    CHECK(extent == last + 1);
    // And the CPU product over a buffer of exactly that size reads nothing beyond it
    // (ASan would report it): A is stored rows x cols per batch, op(A) = A or A^T.
    const int64_t M = c.trans ? c.cols : c.rows, K = c.trans ? c.rows : c.cols;
    std::vector<float> A(size_t(extent), 1.f), B(size_t(K * 2), 1.f), C(size_t(c.batch * M * 2), 0.f);
    cpu_backend().gemm(c.trans, false, M, 2, K, 1.f, A.data(), c.ld, c.stride, B.data(), 2, 0, 0.f, C.data(), 2,
                       M * 2, c.batch);
    for (float v : C) CHECK(v == float(K));
  }
}

TEST_CASE("transpose_to_bf16 / transpose_from_bf16 kernels: y[b, c, r] = x[b, r, c], cast as kernels/shared/bf16.h casts") {
  // The attention's shapes (channels x tokens of 8 x 64), sizes that are no
  // multiple of the tile, one element, and a batch larger than the grid's z
  // (the kernel's loop over matrices).
  struct Case {
    int64_t n, R, C;
    unsigned z;  // gridDim.z; 0: the launcher's
  };
  for (const Case& t : {Case{6, 8, 64, 0}, Case{1, 1, 1, 0}, Case{3, 33, 47, 0}, Case{5, 70, 9, 2}, Case{2, 32, 32, 1},
                        Case{1, 100, 1, 0}}) {
    CAPTURE(t.n);
    CAPTURE(t.R);
    CAPTURE(t.C);
    CAPTURE(t.z);
    const int64_t total = t.n * t.R * t.C;
    Tensor x = test::random_tensor({total}, 211, -50.f, 50.f);
    const dim3 grid(cuda::transpose_tiles_along(t.C, cuda::kTransposeTile),
                    cuda::transpose_tiles_along(t.R, cuda::kTransposeTile),
                    t.z ? t.z : cuda::transpose_batch_blocks(t.n));
    const dim3 block(cuda::kTransposeTile, cuda::kTransposeRows);
    std::vector<uint16_t> y(size_t(total), 0xdead);
    emu::launch(grid, block, cuda::transpose_to_bf16_kernel, x.data(), y.data(), t.n, t.R, t.C);
    bool ok = true;
    for (int64_t b = 0; b < t.n; ++b)
      for (int64_t r = 0; r < t.R; ++r)
        for (int64_t c = 0; c < t.C; ++c)
          ok = ok && y[size_t((b * t.C + c) * t.R + r)] == bf16_from_float(x.at((b * t.R + r) * t.C + c));
    CHECK(ok);
    // Back: [n, C, R] bf16 -> [n, R, C] float gives the bf16 values of x in place.
    const dim3 back_grid(cuda::transpose_tiles_along(t.R, cuda::kTransposeTile),
                         cuda::transpose_tiles_along(t.C, cuda::kTransposeTile), grid.z);
    std::vector<float> back(size_t(total), NAN);
    emu::launch(back_grid, block, cuda::transpose_from_bf16_kernel, static_cast<const uint16_t*>(y.data()),
                back.data(), t.n, t.C, t.R);
    for (int64_t i = 0; i < total; ++i) ok = ok && back[size_t(i)] == float_from_bf16(bf16_from_float(x.at(i)));
    CHECK(ok);
  }
}

namespace {

// What the CUDA backend's bf16 attention does around cuDNN, on the CPU: the
// transposes (emulated kernels, the backend's geometry) into the buffers of
// sdpa_layout.h, a reference SDPA in double that reads and writes them only
// through the layout's dimensions, strides and offsets (as cuDNN does), and
// the transposes back. Equal to the authors' attention up to bf16 rounding:
// a wrong stride or offset gives O(1) errors.
std::vector<uint16_t> transpose_to_bf16_emu(const float* x, int64_t n, int64_t R, int64_t C) {
  std::vector<uint16_t> y(size_t(n * R * C), 0xdead);
  emu::launch(dim3(cuda::transpose_tiles_along(C, cuda::kTransposeTile),
                   cuda::transpose_tiles_along(R, cuda::kTransposeTile), cuda::transpose_batch_blocks(n)),
              dim3(cuda::kTransposeTile, cuda::kTransposeRows), cuda::transpose_to_bf16_kernel, x, y.data(), n, R, C);
  return y;
}
void transpose_from_bf16_emu(const std::vector<uint16_t>& x, float* y, int64_t n, int64_t R, int64_t C) {
  emu::launch(dim3(cuda::transpose_tiles_along(C, cuda::kTransposeTile),
                   cuda::transpose_tiles_along(R, cuda::kTransposeTile), cuda::transpose_batch_blocks(n)),
              dim3(cuda::kTransposeTile, cuda::kTransposeRows), cuda::transpose_from_bf16_kernel, x.data(), y, n, R,
              C);
}

struct SdpaRef {
  const cuda::SdpaShape s;
  const cuda::SdpaLayout l = cuda::sdpa_layout(s);
  double scale;
  double get(const std::vector<uint16_t>& buf, const cuda::SdpaTensor& t, int64_t b, int64_t i, int64_t d) const {
    return float_from_bf16(buf[size_t(t.at(b, 0, i, d))]);
  }
  // p[i][j] = softmax_j(scale q_i . k_j) from the statistics, as the backward recomputes it.
  std::vector<double> weights(const std::vector<uint16_t>& qkv, const std::vector<float>& stats, int64_t b) const {
    std::vector<double> p(size_t(s.L * s.L));
    for (int64_t i = 0; i < s.L; ++i)
      for (int64_t j = 0; j < s.L; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < s.ch; ++d) dot += get(qkv, l.q, b, i, d) * get(qkv, l.k, b, j, d);
        p[size_t(i * s.L + j)] = std::exp(scale * dot - stats[size_t(l.stats.at(b, 0, i, 0))]);
      }
    return p;
  }
  void forward(const std::vector<uint16_t>& qkv, std::vector<uint16_t>& o, std::vector<float>& stats) const {
    for (int64_t b = 0; b < s.BH; ++b)
      for (int64_t i = 0; i < s.L; ++i) {
        std::vector<double> z(size_t(s.L));
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < s.L; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < s.ch; ++d) dot += get(qkv, l.q, b, i, d) * get(qkv, l.k, b, j, d);
          z[size_t(j)] = scale * dot;
          m = std::max(m, z[size_t(j)]);
        }
        for (double zj : z) sum += std::exp(zj - m);
        const double lse = m + std::log(sum);
        stats[size_t(l.stats.at(b, 0, i, 0))] = float(lse);
        for (int64_t d = 0; d < s.ch; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < s.L; ++j) acc += std::exp(z[size_t(j)] - lse) * get(qkv, l.v, b, j, d);
          o[size_t(l.o.at(b, 0, i, d))] = bf16_from_float(float(acc));
        }
      }
  }
  void backward(const std::vector<uint16_t>& qkv, const std::vector<uint16_t>& o, const std::vector<uint16_t>& dout,
                const std::vector<float>& stats, std::vector<uint16_t>& dqkv) const {
    const int64_t L = s.L;
    for (int64_t b = 0; b < s.BH; ++b) {
      const std::vector<double> p = weights(qkv, stats, b);
      std::vector<double> ds(size_t(L * L));
      for (int64_t i = 0; i < L; ++i) {
        double delta = 0;  // sum_d do . o
        for (int64_t d = 0; d < s.ch; ++d) delta += get(dout, l.o, b, i, d) * get(o, l.o, b, i, d);
        for (int64_t j = 0; j < L; ++j) {
          double dp = 0;
          for (int64_t d = 0; d < s.ch; ++d) dp += get(dout, l.o, b, i, d) * get(qkv, l.v, b, j, d);
          ds[size_t(i * L + j)] = p[size_t(i * L + j)] * (dp - delta);
        }
      }
      for (int64_t d = 0; d < s.ch; ++d) {
        for (int64_t i = 0; i < L; ++i) {
          double dq = 0;
          for (int64_t j = 0; j < L; ++j) dq += ds[size_t(i * L + j)] * get(qkv, l.k, b, j, d);
          dqkv[size_t(l.q.at(b, 0, i, d))] = bf16_from_float(float(scale * dq));
        }
        for (int64_t j = 0; j < L; ++j) {
          double dk = 0, dv = 0;
          for (int64_t i = 0; i < L; ++i) {
            dk += ds[size_t(i * L + j)] * get(qkv, l.q, b, i, d);
            dv += p[size_t(i * L + j)] * get(dout, l.o, b, i, d);
          }
          dqkv[size_t(l.k.at(b, 0, j, d))] = bf16_from_float(float(scale * dk));
          dqkv[size_t(l.v.at(b, 0, j, d))] = bf16_from_float(float(dv));
        }
      }
    }
  }
};

}  // namespace

TEST_CASE("fused attention layout: the transposes and sdpa_layout.h describe the authors' q, k, v, output and gradients") {
  // 2 samples x 2 heads of 16 channels over 40 tokens (no multiple of the tile).
  const int64_t B = 2, heads = 2, ch = 16, L = 40;
  const Shape qs{B, 3 * heads * ch, L}, as{B, heads * ch, L};
  Tensor qkv = test::random_tensor(qs, 221, -2.f, 2.f), da = test::random_tensor(as, 222);
  Tensor ra = Tensor::zeros(as), rdqkv = Tensor::zeros(qs);
  cpu_backend().attention(qkv, int(heads), ra);
  cpu_backend().attention_backward(qkv, da, int(heads), rdqkv);

  const AttentionDims d = attention_dims(qs, int(heads), "test");
  const cuda::SdpaShape s{d.BH, d.L, d.ch};
  const SdpaRef ref{s, cuda::sdpa_layout(s), d.scale};
  const int64_t head = d.L * d.ch;
  // The CUDA backend's calls (CudaBackend::attention, attention_backward).
  const std::vector<uint16_t> qkv16 = transpose_to_bf16_emu(qkv.data(), 3 * d.BH, d.ch, d.L);
  const std::vector<uint16_t> do16 = transpose_to_bf16_emu(da.data(), d.BH, d.ch, d.L);
  std::vector<uint16_t> o16(size_t(d.BH * head), 0xdead), dqkv16(size_t(3 * d.BH * head), 0xdead);
  std::vector<float> stats(size_t(d.BH * d.L), NAN);
  ref.forward(qkv16, o16, stats);
  ref.backward(qkv16, o16, do16, stats, dqkv16);
  Tensor a = Tensor::full(as, NAN), dqkv = Tensor::full(qs, NAN);
  transpose_from_bf16_emu(o16, a.data(), d.BH, d.L, d.ch);
  transpose_from_bf16_emu(dqkv16, dqkv.data(), 3 * d.BH, d.L, d.ch);
  // bf16 inputs, outputs and gradients: ~2^-9 relative per value.
  const double ea = test::rel_l2(a.to_vector(), ra.to_vector());
  const double eg = test::rel_l2(dqkv.to_vector(), rdqkv.to_vector());
  CAPTURE(ea);
  CAPTURE(eg);
  CHECK(ea <= 1e-2);
  CHECK(eg <= 2e-2);
  // Every element of the buffers is some tensor's: nothing left unwritten.
  CHECK(std::none_of(o16.begin(), o16.end(), [](uint16_t v) { return v == 0xdead; }));
  CHECK(std::none_of(dqkv16.begin(), dqkv16.end(), [](uint16_t v) { return v == 0xdead; }));
}
