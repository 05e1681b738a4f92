// Every CUDA op that has a body, compared with the CPU op on random inputs.
// Built always; without a device (or without the CUDA backend in the build)
// the suite exits 77, which CTest reports as skipped, never as passed.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "engine/core/backend.h"
#include "engine/core/backend_registry.h"
#include "engine/diffusion/noise.h"
#include "kernels/cpu/cpu_image_ops.h"
#include "engine/detect/anomaly_map.h"
#include "kernels/shared/bf16.h"
#include "engine/model/resnet.h"
#include "engine/io/safetensors.h"
#include "engine/core/ops.h"
#include "engine/model/unet.h"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <tuple>

#ifdef MDPS_WITH_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

using namespace mdps;
using mdps::test::random_floats;

namespace {

Backend& gpu() {
  Backend* b = find_backend("cuda");
#ifdef MDPS_CUDA_STANDIN
  static bool said = false;
  if (b && !said) {
    // Never to be read as a GPU result (docs/gpu.md, "CPU stand-ins").
    std::printf("NOTE: the CUDA backend runs on the CPU stand-ins of the CUDA runtime, cuBLAS and cuDNN "
                "(tests/standin), not on a GPU\n");
    said = true;
  }
#endif
  if (!b) {
    // "no CUDA device is present" or "this build has no CUDA backend (...)".
    std::printf("SKIPPED: %s\n", backend_unavailable_reason("cuda").c_str());
    std::fflush(stdout);
    std::exit(77);
  }
  return *b;
}

Tensor on_gpu(const Tensor& t) { return t.to(gpu()); }
Tensor gpu_empty(const Shape& s) {
  Tensor t = Tensor::empty(s, gpu());
  gpu().fill(t, NAN);
  return t;
}
// The GPU rounds a*b+c with one fma where the CPU rounds twice, and uses its
// own expf: results agree to a few ulps, not bit for bit.
double rel(const Tensor& got_gpu, const Tensor& ref) {
  std::vector<float> g = got_gpu.to_vector(), r = ref.to_vector();
  return test::rel_l2(g, r);
}

// t with every value rounded to bfloat16: a bf16 cast of it is exact.
Tensor bf16_values(Tensor t) {
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = float_from_bf16(bf16_from_float(t.data()[i]));
  return t;
}

// Back to fp32 however the test case leaves.
struct PrecisionGuard {
  Backend& b;
  ~PrecisionGuard() { b.set_precision(Precision::FP32); }
};

}  // namespace

TEST_CASE("cuda: memory round trip and fill") {
  Backend& g = gpu();
  Tensor a = test::random_tensor({3, 5, 7}, 1);
  CHECK(a.to(g).to_vector() == a.to_vector());
  Tensor f = Tensor::empty({1000}, g);
  g.fill(f, 2.5f);
  for (float v : f.to_vector()) REQUIRE(v == 2.5f);
}

TEST_CASE("cuda: mdps_step and replace_normal match the CPU") {
  Backend& g = gpu();
  StepCoeffs c;
  c.sqrt_a = 0.6f;
  c.sqrt_1ma = 0.8f;
  c.sqrt_a_next = 0.7f;
  c.dir = 0.5f;
  c.sigma = 0.3f;
  c.guidance = 0.25f;
  for (Shape s : {Shape{1, 1, 1, 1}, Shape{2, 3, 33, 17}}) {
    Tensor x = test::random_tensor(s, 1), y = test::random_tensor(s, 2), e = test::random_tensor(s, 3), gr = test::random_tensor(s, 4), z = test::random_tensor(s, 5);
    Tensor m = test::random_tensor({s[0], 1, s[2], s[3]}, 6, 0.f, 1.f);
    Tensor rn = Tensor::zeros(s), r0 = Tensor::zeros(s);
    cpu_backend().mdps_step(x, y, e, &gr, &m, &z, c, rn, &r0);
    Tensor gx = on_gpu(x), gy = on_gpu(y), ge = on_gpu(e), gg = on_gpu(gr), gz = on_gpu(z), gm = on_gpu(m);
    Tensor gn = gpu_empty(s), g0 = gpu_empty(s);
    g.mdps_step(gx, gy, ge, &gg, &gm, &gz, c, gn, &g0);
    CHECK(rel(gn, rn) <= 1e-6);
    CHECK(rel(g0, r0) <= 1e-6);
    Tensor rx = x.clone();
    cpu_backend().replace_normal(rx, y, z, m, 0.6f, 0.8f);
    g.replace_normal(gx, gy, gz, gm, 0.6f, 0.8f);
    CHECK(rel(gx, rx) <= 1e-6);
  }
}

TEST_CASE("cuda: group_norm (+SiLU) and softmax match the CPU") {
  Backend& g = gpu();
  for (bool silu : {false, true}) {
    const Shape s{2, 8, 19, 13};
    Tensor x = test::random_tensor(s, 7, 1.f, 3.f), ga = test::random_tensor({8}, 8, 0.5f, 1.5f), be = test::random_tensor({8}, 9);
    Tensor ry = Tensor::zeros(s), rm = Tensor::zeros({8}), rr = Tensor::zeros({8});
    cpu_backend().group_norm(x, ga, be, 4, 1e-5f, silu, ry, rm, rr);
    Tensor gy = gpu_empty(s), gm = gpu_empty({8}), gr = gpu_empty({8});
    g.group_norm(on_gpu(x), on_gpu(ga), on_gpu(be), 4, 1e-5f, silu, gy, gm, gr);
    CHECK(rel(gy, ry) <= 1e-5);
    CHECK(rel(gm, rm) <= 1e-6);
    CHECK(rel(gr, rr) <= 1e-5);
  }
  const Shape s{5, 1000};
  Tensor x = test::random_tensor(s, 10, -8.f, 8.f), ry = Tensor::zeros(s);
  cpu_backend().softmax(x, ry);
  Tensor gy = gpu_empty(s);
  g.softmax(on_gpu(x), gy);
  CHECK(rel(gy, ry) <= 1e-6);
}

TEST_CASE("cuda: adam and elementwise ops match the CPU") {
  Backend& g = gpu();
  for (bool decoupled : {false, true}) {
    AdamParams p;
    p.weight_decay = 0.01f;
    p.decoupled = decoupled;
    Tensor w = test::random_tensor({777}, 11), gr = test::random_tensor({777}, 12), m = test::random_tensor({777}, 13, -0.1f, 0.1f), v = test::random_tensor({777}, 14, 0.f, 0.01f);
    Tensor gw = on_gpu(w), gm = on_gpu(m), gv = on_gpu(v);
    cpu_backend().adam_update(w, gr, m, v, p, 3);
    g.adam_update(gw, on_gpu(gr), gm, gv, p, 3);
    CHECK(rel(gw, w) <= 1e-6);
    CHECK(rel(gm, m) <= 1e-6);
    CHECK(rel(gv, v) <= 1e-6);
  }
  const Shape s{2, 3, 11, 9};
  Tensor a = test::random_tensor(s, 15, -5.f, 5.f), b = test::random_tensor(s, 16), cb = test::random_tensor({2, 3}, 17);
  Tensor ga = on_gpu(a), gb = on_gpu(b);
  Tensor r = Tensor::zeros(s), y = gpu_empty(s);
  cpu_backend().add(a, b, r);
  g.add(ga, gb, y);
  CHECK(rel(y, r) == 0.0);
  cpu_backend().mul(a, b, r);
  g.mul(ga, gb, y);
  CHECK(rel(y, r) == 0.0);
  cpu_backend().add_channel_bias(a, cb, r);
  g.add_channel_bias(ga, on_gpu(cb), y);
  CHECK(rel(y, r) == 0.0);
  cpu_backend().silu(a, r);
  g.silu(ga, y);
  CHECK(rel(y, r) <= 1e-6);
  cpu_backend().silu_backward(a, b, r);
  g.silu_backward(ga, gb, y);
  CHECK(rel(y, r) <= 1e-6);
  // axpby in place; with beta = 0, y is not read (as in BLAS): NaN garbage
  // there must not leak into the result.
  Tensor ry = b.clone(), gy = on_gpu(b);
  cpu_backend().axpby(0.5f, a, -2.f, ry);
  g.axpby(0.5f, ga, -2.f, gy);
  CHECK(rel(gy, ry) <= 1e-6);
  Tensor y0 = gpu_empty(s);  // NaN
  cpu_backend().axpby(0.5f, a, 0.f, ry);
  g.axpby(0.5f, ga, 0.f, y0);
  CHECK(rel(y0, ry) == 0.0);
}

TEST_CASE("cuda: gemm and linear match the CPU") {
  Backend& g = gpu();
  Tensor x = test::random_tensor({7, 33}, 18), w = test::random_tensor({5, 33}, 19), b = test::random_tensor({5}, 20);
  Tensor ry = Tensor::zeros({7, 5}), gy = gpu_empty({7, 5});
  cpu_backend().linear(x, w, &b, ry);
  Tensor gb = on_gpu(b);
  g.linear(on_gpu(x), on_gpu(w), &gb, gy);
  CHECK(rel(gy, ry) <= 1e-5);
  // Batched and transposed: C_i = A_i^T B_i^T through the row-major mapping.
  const int64_t M = 6, N = 4, K = 9, batch = 3;
  Tensor A = test::random_tensor({batch, K, M}, 21), B = test::random_tensor({batch, N, K}, 22);
  Tensor rc = Tensor::zeros({batch, M, N}), gc = Tensor::zeros({batch, M, N}).to(g);
  cpu_backend().gemm(true, true, M, N, K, 0.5f, A.data(), M, K * M, B.data(), K, N * K, 0.f, rc.data(), N, M * N,
                     batch);
  Tensor gA = on_gpu(A), gB = on_gpu(B);
  g.gemm(true, true, M, N, K, 0.5f, gA.data(), M, K * M, gB.data(), K, N * K, 0.f, gc.data(), N, M * N, batch);
  CHECK(rel(gc, rc) <= 1e-5);
}

TEST_CASE("cuda: the anomaly map's pooled cosine, blur and bilinear resize match the CPU") {
  Backend& g = gpu();
  // The feature distance at the WRN layer-2 shape of a 64x64 image (and odd
  // sizes): the pooled floats are bit-equal, the double sums may contract to
  // fma on the GPU, which moves the float result by at most an ulp or two.
  for (Shape s : {Shape{2, 512, 8, 8}, Shape{1, 7, 13, 11}, Shape{1, 1, 1, 1}}) {
    CAPTURE(shape_str(s));
    Tensor a = test::random_tensor(s, 71), b = test::random_tensor(s, 72);
    Tensor ref = hostops::cosine_distance(hostops::mean_pool3x3(a), hostops::mean_pool3x3(b));
    Tensor y = gpu_empty({s[0], 1, s[2], s[3]});
    g.pooled_cosine_distance(on_gpu(a), on_gpu(b), y, 1e-8f);
    CHECK(test::max_abs_diff(y.to_vector().data(), ref.data(), size_t(ref.numel())) <= 1e-6);
  }
  // The authors' blur on a map of the image size and on one smaller than the kernel.
  for (Shape s : {Shape{2, 1, 256, 256}, Shape{1, 2, 5, 7}}) {
    CAPTURE(shape_str(s));
    Tensor x = test::random_tensor(s, 73, 0.f, 3.f);
    Tensor ref = hostops::gaussian_blur(x, 33, 4.f);
    Tensor y = gpu_empty(s);
    g.gaussian_blur(on_gpu(x), 33, 4.f, y);
    CHECK(rel(y, ref) <= 1e-6);
    CHECK(test::max_abs_diff(y.to_vector().data(), ref.data(), size_t(ref.numel())) <= 1e-6);
  }
  // A kernel longer than the launch parameters carry is refused.
  Tensor small = on_gpu(test::random_tensor({1, 1, 4, 4}, 74)), small_out = gpu_empty({1, 1, 4, 4});
  CHECK_THROWS_AS(g.gaussian_blur(small, 129, 4.f, small_out), Error);
  // Layer 3 of a 256x256 image (16x16) up to the image, and a downsize.
  for (auto [in, H, W] : {std::tuple<Shape, int64_t, int64_t>{{2, 1, 16, 16}, 256, 256},
                          std::tuple<Shape, int64_t, int64_t>{{1, 3, 9, 13}, 4, 6}}) {
    CAPTURE(shape_str(in));
    Tensor x = test::random_tensor(in, 75);
    Tensor ref = hostops::resize_bilinear_align_corners(x, H, W);
    Tensor y = gpu_empty({in[0], in[1], H, W});
    g.resize_bilinear_align_corners(on_gpu(x), y);
    CHECK(test::max_abs_diff(y.to_vector().data(), ref.data(), size_t(ref.numel())) <= 1e-6);
  }
}

TEST_CASE("cuda: the top-k image scores match the CPU") {
  Backend& g = gpu();
  // 256x256 maps with k = 500, a map smaller than k, and ties.
  std::vector<float> tied = random_floats(2 * 4096, 77);
  for (float& v : tied) v = std::floor(v * 4.f) / 4.f;
  struct Case {
    Shape s;
    std::vector<float> v;
  };
  for (const Case& c : {Case{{2, 1, 256, 256}, random_floats(2 * 65536, 76, 0.f, 2.f)},
                        Case{{3, 1, 10, 20}, random_floats(600, 78)}, Case{{2, 1, 64, 64}, tied}}) {
    CAPTURE(shape_str(c.s));
    Tensor maps = Tensor::from_vector(c.s, c.v);
    const int64_t n = c.s[2] * c.s[3];
    const std::vector<double> mean = g.image_scores(on_gpu(maps), ImageScoreKind::TopKMean, 500);
    const std::vector<double> soft = g.image_scores(on_gpu(maps), ImageScoreKind::Authors, 500);
    REQUIRE(mean.size() == size_t(c.s[0]));
    REQUIRE(soft.size() == size_t(c.s[0]));
    for (int64_t m = 0; m < c.s[0]; ++m) {
      // Only additions and one division: the same double operations in the same order.
      CHECK(mean[size_t(m)] == hostops::topk_mean(maps.data() + m * n, n, 500));
      // The denominator sums in another order, and the device's double exp is
      // within an ulp of glibc's.
      const double ref = hostops::softmax_topk_sum(maps.data() + m * n, n, 500);
      CHECK(std::fabs(soft[size_t(m)] - ref) <= 1e-12 * ref);
    }
  }
  // More values than one block sorts in shared memory is refused, not truncated.
  CHECK_THROWS_AS(g.image_scores(on_gpu(test::random_tensor({1, 1, 64, 64}, 79)), ImageScoreKind::TopKMean, 4096), Error);
}

TEST_CASE("cuda: relu, max pool, ImageNet normalisation, pixel term, max and mix match the CPU") {
  Backend& g = gpu();
  Backend& cpu = cpu_backend();
  Tensor x = test::random_tensor({2, 5, 9, 8}, 81, -2.f, 2.f);
  Tensor r = gpu_empty(x.shape()), rc = Tensor::empty(x.shape());
  g.relu(on_gpu(x), r);
  cpu.relu(x, rc);
  CHECK(r.to_vector() == rc.to_vector());
  Tensor p = gpu_empty({2, 5, 5, 4}), pc = Tensor::empty({2, 5, 5, 4});
  g.max_pool3x3_s2(on_gpu(x), p);
  cpu.max_pool3x3_s2(x, pc);
  CHECK(p.to_vector() == pc.to_vector());  // comparisons only: exact
  Tensor img = test::random_tensor({2, 3, 17, 13}, 82), rec = test::random_tensor({2, 3, 17, 13}, 83);
  Tensor nrm = gpu_empty(img.shape()), nrmc = Tensor::empty(img.shape());
  g.imagenet_normalise(on_gpu(img), nrm);
  cpu.imagenet_normalise(img, nrmc);
  CHECK(test::max_abs_diff(nrm.to_vector().data(), nrmc.data(), size_t(nrmc.numel())) <= 1e-6);
  Tensor pix = gpu_empty({2, 1, 17, 13}), pixc = Tensor::empty({2, 1, 17, 13});
  g.pixel_distance(on_gpu(img), on_gpu(rec), pix);
  cpu.pixel_distance(img, rec, pixc);
  CHECK(test::max_abs_diff(pix.to_vector().data(), pixc.data(), size_t(pixc.numel())) <= 1e-6);
  for (int64_t n : {int64_t(1), int64_t(1000), int64_t(300001)}) {
    CAPTURE(n);
    Tensor v = test::random_tensor({n}, 84, -3.f, -1.f);
    Tensor m = gpu_empty({1}), mc = Tensor::empty({1});
    g.max(on_gpu(v), m);
    cpu.max(v, mc);
    CHECK(m.to_vector() == mc.to_vector());
  }
  Tensor f = test::random_tensor({2, 1, 17, 13}, 85, 0.f, 2.f);
  for (float max_p : {0.3f, 0.f}) {
    Tensor mf = Tensor::full({1}, 1.7f), mp = Tensor::full({1}, max_p);
    Tensor y = gpu_empty(f.shape()), yc = Tensor::empty(f.shape());
    g.anomaly_mix(on_gpu(f), on_gpu(pixc), on_gpu(mf), on_gpu(mp), 7.f, y);
    cpu.anomaly_mix(f, pixc, mf, mp, 7.f, yc);
    // f + w p with w = 7 * 1.7 / 0.3 reaches ~80 here: one fma more or less
    // (the GPU's contraction, or a -O0 build against the -O3 CPU) moves the
    // result by an ulp or two of 80 (~1e-5), so the bound is relative.
    float peak = 0.f;
    for (float v : yc.to_vector()) peak = std::max(peak, std::fabs(v));
    CHECK(test::max_abs_diff(y.to_vector().data(), yc.data(), size_t(yc.numel())) <= 1e-6 * std::max(1.f, peak));
  }
  for (float ss : {7.3f, 0.f}) {  // the guidance's normalisation, its norm read on the device
    Tensor y = gpu_empty(f.shape()), yc = Tensor::empty(f.shape()), s1 = Tensor::full({1}, ss);
    g.scale_by_inverse_sqrt(on_gpu(f), on_gpu(s1), y);
    cpu.scale_by_inverse_sqrt(f, s1, yc);
    CHECK(test::max_abs_diff(y.to_vector().data(), yc.data(), size_t(yc.numel())) <= 1e-6);
  }
  Tensor host_out = Tensor::empty({2, 1, 17, 13});
  CHECK_THROWS_AS(g.pixel_distance(on_gpu(img), on_gpu(rec), host_out), Error);  // a CPU output is refused
}

TEST_CASE("cuda: the whole anomaly map and its scores on the device match the CPU and the golden") {
  Backend& g = gpu();
  SafeTensorsFile f = SafeTensorsFile::open(test::golden_dir() + "/score64.safetensors");
  ResNetFeatures fe_cpu = ResNetFeatures::load(f, "resnet.", 3, cpu_backend());
  ResNetFeatures fe_gpu = ResNetFeatures::load(f, "resnet.", 3, g);
  const Tensor image = f.read_f32("image"), recon = f.read_f32("recon");
  const AnomalyMapSettings s;
  AnomalyMaps want = anomaly_map(&fe_cpu, image, recon, s);
  AnomalyMaps got = anomaly_map(&fe_gpu, on_gpu(image), on_gpu(recon), s);
  CHECK(got.combined.device() == Device::CUDA);  // the maps stay where the images are
  CHECK(rel(got.pixel, want.pixel) <= 1e-6);
  CHECK(rel(got.feature, want.feature) <= 1e-4);  // cuDNN's sums in the ResNet
  CHECK(rel(got.combined, want.combined) <= 1e-4);
  CHECK(rel(got.combined, f.read_f32("anomaly_map")) <= 1e-4);
  const std::vector<float> sg = image_scores(got.combined, ImageScoreKind::Authors, 500);
  const std::vector<float> sc = image_scores(want.combined, ImageScoreKind::Authors, 500);
  REQUIRE(sg.size() == sc.size());
  for (size_t i = 0; i < sc.size(); ++i) CHECK(std::fabs(double(sg[i]) - sc[i]) <= 1e-4 * std::fabs(double(sc[i])));
  // Without a feature extractor: blur(P) / 2 on the device too.
  AnomalyMaps pix = anomaly_map(nullptr, on_gpu(image), on_gpu(recon), s);
  AnomalyMaps pixc = anomaly_map(nullptr, image, recon, s);
  CHECK(rel(pix.combined, pixc.combined) <= 1e-6);
}

TEST_CASE("cuda: Philox normals match the host stream") {
  Backend& g = gpu();
  for (uint64_t offset : {uint64_t(0), uint64_t(3)}) {
    Tensor t = Tensor::empty({1001}, g);
    g.philox_normal(t, 42, 7, offset);
    std::vector<float> ref(1001);
    philox_fill_normal(ref.data(), 1001, 42, 7, offset);
    CHECK(test::max_abs_diff(t.to_vector().data(), ref.data(), 1001) <= 1e-5);
  }
}

TEST_CASE("cuda: group_norm_backward (+SiLU) and softmax_backward match the CPU") {
  Backend& g = gpu();
  const Shape s{2, 8, 19, 13};
  for (bool silu : {false, true}) {
    CAPTURE(silu);
    Tensor x = test::random_tensor(s, 31, 1.f, 3.f), dy = test::random_tensor(s, 32), ga = test::random_tensor({8}, 33, 0.5f, 1.5f), be = test::random_tensor({8}, 34);
    Tensor y = Tensor::zeros(s), m = Tensor::zeros({8}), r = Tensor::zeros({8});
    cpu_backend().group_norm(x, ga, be, 4, 1e-5f, silu, y, m, r);
    Tensor rdx = Tensor::zeros(s), rdg = Tensor::zeros({8}), rdb = Tensor::zeros({8});
    cpu_backend().group_norm_backward(dy, x, ga, be, m, r, 4, silu, &rdx, &rdg, &rdb);
    Tensor gdx = gpu_empty(s), gdg = gpu_empty({8}), gdb = gpu_empty({8});
    g.group_norm_backward(on_gpu(dy), on_gpu(x), on_gpu(ga), on_gpu(be), on_gpu(m), on_gpu(r), 4, silu, &gdx, &gdg,
                          &gdb);
    CHECK(rel(gdx, rdx) <= 1e-5);
    CHECK(rel(gdg, rdg) <= 1e-5);
    CHECK(rel(gdb, rdb) <= 1e-5);
  }
  const Shape ss{7, 333};
  Tensor x = test::random_tensor(ss, 35, -4.f, 4.f), dy = test::random_tensor(ss, 36), y = Tensor::zeros(ss), rdx = Tensor::zeros(ss);
  cpu_backend().softmax(x, y);
  cpu_backend().softmax_backward(y, dy, rdx);
  Tensor gdx = gpu_empty(ss);
  g.softmax_backward(on_gpu(y), on_gpu(dy), gdx);
  CHECK(rel(gdx, rdx) <= 1e-6);
}

TEST_CASE("cuda: linear_backward matches the CPU") {
  Backend& g = gpu();
  Tensor x = test::random_tensor({2, 7, 33}, 41), w = test::random_tensor({5, 33}, 42), dy = test::random_tensor({2, 7, 5}, 43);
  Tensor rdx = Tensor::zeros({2, 7, 33}), rdw = Tensor::zeros({5, 33}), rdb = Tensor::zeros({5});
  cpu_backend().linear_backward(dy, x, w, &rdx, &rdw, &rdb);
  Tensor gdx = gpu_empty({2, 7, 33}), gdw = gpu_empty({5, 33}), gdb = gpu_empty({5});
  g.linear_backward(on_gpu(dy), on_gpu(x), on_gpu(w), &gdx, &gdw, &gdb);
  CHECK(rel(gdx, rdx) <= 1e-5);
  CHECK(rel(gdw, rdw) <= 1e-5);
  CHECK(rel(gdb, rdb) <= 1e-6);
}

TEST_CASE("cuda: conv2d forward, data and weight gradients match the CPU (cuDNN)") {
  Backend& g = gpu();
  struct Case {
    Shape x, w;
    ConvGeom geom;
  };
  // 3x3 same, strided downsampling with odd sizes, 1x1, and one pixel.
  for (Case k : {Case{{2, 3, 17, 13}, {8, 3, 3, 3}, {1, 1}}, Case{{1, 4, 15, 9}, {6, 4, 3, 3}, {2, 1}},
                 Case{{2, 5, 8, 8}, {3, 5, 1, 1}, {1, 0}}, Case{{1, 1, 1, 1}, {1, 1, 1, 1}, {1, 0}}}) {
    CAPTURE(shape_str(k.x));
    CAPTURE(shape_str(k.w));
    const Shape ys{k.x[0], k.w[0], conv_out_size(k.x[2], k.w[2], k.geom), conv_out_size(k.x[3], k.w[3], k.geom)};
    Tensor x = test::random_tensor(k.x, 51), w = test::random_tensor(k.w, 52), b = test::random_tensor({k.w[0]}, 53), dy = test::random_tensor(ys, 54);
    Tensor ry = Tensor::zeros(ys), rdx = Tensor::zeros(k.x), rdw = Tensor::zeros(k.w), rdb = Tensor::zeros({k.w[0]});
    cpu_backend().conv2d(x, w, &b, ry, k.geom);
    cpu_backend().conv2d_backward_data(dy, w, rdx, k.geom);
    cpu_backend().conv2d_backward_weight(dy, x, rdw, &rdb, k.geom);
    Tensor gx = on_gpu(x), gw = on_gpu(w), gb = on_gpu(b), gdy = on_gpu(dy);
    Tensor gy = gpu_empty(ys), gdx = gpu_empty(k.x), gdw = gpu_empty(k.w), gdb = gpu_empty({k.w[0]});
    for (int rep = 0; rep < 2; ++rep) {  // the second call reuses the cached plan
      g.conv2d(gx, gw, &gb, gy, k.geom);
      g.conv2d_backward_data(gdy, gw, gdx, k.geom);
      g.conv2d_backward_weight(gdy, gx, gdw, &gdb, k.geom);
      CHECK(rel(gy, ry) <= 1e-5);
      CHECK(rel(gdx, rdx) <= 1e-5);
      CHECK(rel(gdw, rdw) <= 1e-5);
      CHECK(rel(gdb, rdb) <= 1e-5);
    }
  }
#ifdef MDPS_WITH_CUDA
  CHECK(static_cast<CudaBackend&>(g).conv_plans() >= 4);
#endif
}

TEST_CASE("cuda: --precision bf16: products on bfloat16 inputs with float accumulation") {
  Backend& g = gpu();
  // Inputs already bfloat16 values: the cast changes nothing, so a float
  // accumulation agrees with the CPU's float32 product up to summation order
  // (gemm: float output) or up to the output's bf16 rounding (cuDNN returns
  // bf16: 2^-9 relative per element).
  PrecisionGuard guard{g};
  g.set_precision(Precision::BF16);
  CHECK(g.precision() == Precision::BF16);
  const int64_t M = 37, N = 29, K = 300, batch = 2;
  Tensor A = bf16_values(test::random_tensor({batch, M, K}, 61)), B = bf16_values(test::random_tensor({N, K}, 62));  // B shared: stride 0
  Tensor rc = Tensor::zeros({batch, M, N}), gc = gpu_empty({batch, M, N});
  cpu_backend().gemm(false, true, M, N, K, 1.f, A.data(), K, M * K, B.data(), K, 0, 0.f, rc.data(), N, M * N, batch);
  Tensor gA = on_gpu(A), gB = on_gpu(B);
  g.gemm(false, true, M, N, K, 1.f, gA.data(), K, M * K, gB.data(), K, 0, 0.f, gc.data(), N, M * N, batch);
  CHECK(rel(gc, rc) <= 1e-5);
  // Float inputs are rounded: about 2^-9 relative per input, ~3e-3 on the product.
  Tensor Af = test::random_tensor({batch, M, K}, 63), Bf = test::random_tensor({N, K}, 64);
  cpu_backend().gemm(false, true, M, N, K, 1.f, Af.data(), K, M * K, Bf.data(), K, 0, 0.f, rc.data(), N, M * N,
                     batch);
  Tensor gAf = on_gpu(Af), gBf = on_gpu(Bf);
  g.gemm(false, true, M, N, K, 1.f, gAf.data(), K, M * K, gBf.data(), K, 0, 0.f, gc.data(), N, M * N, batch);
  const double e = rel(gc, rc);
  CHECK(e <= 2e-2);
  CHECK(e > 0.0);  // it did round: a bf16 run that silently computed in fp32 would give ~1e-7

  const Shape xs{2, 16, 17, 13}, ws{8, 16, 3, 3}, ys{2, 8, 17, 13};
  const ConvGeom geom{1, 1};
  Tensor x = bf16_values(test::random_tensor(xs, 65)), w = bf16_values(test::random_tensor(ws, 66)), b = test::random_tensor({8}, 67),
         dy = bf16_values(test::random_tensor(ys, 68));
  Tensor ry = Tensor::zeros(ys), rdx = Tensor::zeros(xs), rdw = Tensor::zeros(ws), rdb = Tensor::zeros({8});
  cpu_backend().conv2d(x, w, &b, ry, geom);
  cpu_backend().conv2d_backward_data(dy, w, rdx, geom);
  cpu_backend().conv2d_backward_weight(dy, x, rdw, &rdb, geom);
  Tensor gy = gpu_empty(ys), gdx = gpu_empty(xs), gdw = gpu_empty(ws), gdb = gpu_empty({8});
  Tensor gx = on_gpu(x), gw = on_gpu(w), gb = on_gpu(b), gdy = on_gpu(dy);
  g.conv2d(gx, gw, &gb, gy, geom);
  g.conv2d_backward_data(gdy, gw, gdx, geom);
  g.conv2d_backward_weight(gdy, gx, gdw, &gdb, geom);
  CHECK(rel(gy, ry) <= 4e-3);
  CHECK(rel(gdx, rdx) <= 4e-3);
  CHECK(rel(gdw, rdw) <= 4e-3);
  CHECK(rel(gdb, rdb) <= 1e-5);  // the bias gradient stays float32
  // Back to fp32: the plans are rebuilt in float32 and agree to 1e-5 again.
  g.set_precision(Precision::FP32);
  g.conv2d(gx, gw, &gb, gy, geom);
  CHECK(rel(gy, ry) <= 1e-5);
}

#ifdef MDPS_WITH_CUDA
TEST_CASE("cuda: attention and its backward match the CPU (fp32: cuBLAS + softmax; bf16: cuDNN's fused SDPA)") {
  Backend& g = gpu();
  auto& cg = static_cast<CudaBackend&>(g);
  PrecisionGuard guard{g};
  struct Case {
    int64_t B, heads, ch, L;
    bool fusable;  // a head size the fused kernels take
  };
  // 2 heads of 64 channels over a 16 x 16 map; 12 channels over 37 tokens
  // (no multiple of 8: bf16 takes the generic path there).
  for (const Case& c : {Case{2, 2, 64, 256, true}, Case{1, 3, 12, 37, false}}) {
    CAPTURE(c.ch);
    CAPTURE(c.L);
    const Shape qs{c.B, 3 * c.heads * c.ch, c.L}, as{c.B, c.heads * c.ch, c.L};
    const int heads = int(c.heads);
    // bf16 values: the casts change nothing, what differs is the kernels' own rounding.
    Tensor qkv = bf16_values(test::random_tensor(qs, 71, -2.f, 2.f)), da = bf16_values(test::random_tensor(as, 72));
    Tensor ra = Tensor::zeros(as), rdqkv = Tensor::zeros(qs);
    cpu_backend().attention(qkv, heads, ra);
    cpu_backend().attention_backward(qkv, da, heads, rdqkv);
    Tensor gqkv = on_gpu(qkv), gda = on_gpu(da);
    for (Precision p : {Precision::FP32, Precision::BF16}) {
      CAPTURE(precision_name(p));
      g.set_precision(p);
      const size_t plans_before = cg.attention_plans();
      Tensor ga = gpu_empty(as), gdqkv = gpu_empty(qs);
      g.attention(gqkv, heads, ga);
      g.attention_backward(gqkv, gda, heads, gdqkv);
      if (p == Precision::FP32) {
        CHECK(rel(ga, ra) <= 1e-5);
        CHECK(rel(gdqkv, rdqkv) <= 1e-5);
        CHECK(cg.attention_plans() == plans_before);  // fp32 never asks cuDNN
      } else {
        // The weights (and the fused kernels' outputs and gradients) are
        // rounded to bf16: ~2^-9 relative per value.
        CHECK(rel(ga, ra) <= 1e-2);
        CHECK(rel(gdqkv, rdqkv) <= 3e-2);
        CHECK(rel(ga, ra) > 0.0);
        MESSAGE("bf16 attention paths: ", g.paths());
        // Fusable shapes must get both plans on the GPUs bf16 is for (sm80
        // and later, cuDNN >= 9.17); a refusal names its reason on stderr.
        if (c.fusable) CHECK(cg.attention_plans() == plans_before + 2);
        if (!c.fusable) CHECK(cg.attention_plans() == plans_before);
      }
    }
  }
  // Asked again, a built plan is reused and a refused shape is not retried.
  const size_t plans = cg.attention_plans(), refused = cg.attention_refused();
  g.set_precision(Precision::BF16);
  // The refused shape of the loop: 3 heads of 12 channels over 37 tokens.
  Tensor qkv = on_gpu(test::random_tensor({1, 3 * 3 * 12, 37}, 73)), a = gpu_empty({1, 3 * 12, 37});
  g.attention(qkv, 3, a);
  CHECK(cg.attention_plans() == plans);
  CHECK(cg.attention_refused() == refused);
}
#endif

TEST_CASE("cuda: layout ops, sums and the timestep embedding match the CPU") {
  Backend& g = gpu();
  const Shape s{2, 3, 9, 7};
  Tensor x = test::random_tensor(s, 61), b2 = test::random_tensor({2, 2, 9, 7}, 62);
  Tensor rv = Tensor::zeros({2, 3}), gv = gpu_empty({2, 3});
  cpu_backend().sum_hw(x, rv);
  g.sum_hw(on_gpu(x), gv);
  CHECK(rel(gv, rv) <= 1e-6);

  Tensor rc = Tensor::zeros({2, 5, 9, 7}), gc = gpu_empty({2, 5, 9, 7});
  cpu_backend().concat_channels(x, b2, rc);
  g.concat_channels(on_gpu(x), on_gpu(b2), gc);
  CHECK(rel(gc, rc) == 0.0);
  Tensor ga = gpu_empty(s), gb = gpu_empty({2, 2, 9, 7});
  g.split_channels(gc, &ga, &gb);
  CHECK(rel(ga, x) == 0.0);
  CHECK(rel(gb, b2) == 0.0);

  Tensor rp = Tensor::zeros({2, 3, 4, 3}), gp = gpu_empty({2, 3, 4, 3});
  cpu_backend().avg_pool2(x, rp);
  g.avg_pool2(on_gpu(x), gp);
  CHECK(rel(gp, rp) == 0.0);
  Tensor rpb = Tensor::zeros(s), gpb = gpu_empty(s);
  cpu_backend().avg_pool2_backward(rp, rpb);
  g.avg_pool2_backward(gp, gpb);
  CHECK(rel(gpb, rpb) == 0.0);
  Tensor ru = Tensor::zeros({2, 3, 18, 14}), gu = gpu_empty({2, 3, 18, 14});
  cpu_backend().upsample_nearest2(x, ru);
  g.upsample_nearest2(on_gpu(x), gu);
  CHECK(rel(gu, ru) == 0.0);
  Tensor rub = Tensor::zeros(s), gub = gpu_empty(s);
  cpu_backend().upsample_nearest2_backward(ru, rub);
  g.upsample_nearest2_backward(gu, gub);
  CHECK(rel(gub, rub) == 0.0);

  Tensor big = test::random_tensor({100003}, 63, -1.f, 2.f), rs = Tensor::zeros({1}), gs = gpu_empty({1});
  cpu_backend().sum(big, rs);
  g.sum(on_gpu(big), gs);
  CHECK(rel(gs, rs) <= 1e-6);
  cpu_backend().sum_squares(big, rs);
  g.sum_squares(on_gpu(big), gs);
  CHECK(rel(gs, rs) <= 1e-6);

  // Device double exp/sin/cos may differ from glibc's in the last double ulp,
  // which changes the float result only at rounding ties: a few ulps at most.
  Tensor t = Tensor::from_vector({4}, {0.f, 3.f, 500.5f, 999.f});
  Tensor re = Tensor::zeros({4, 321}), ge = gpu_empty({4, 321});
  cpu_backend().timestep_embedding(t, re);
  g.timestep_embedding(on_gpu(t), ge);
  CHECK(test::max_abs_diff(ge.to_vector().data(), re.data(), size_t(re.numel())) <= 1e-6);
}

#ifdef MDPS_WITH_CUDA
TEST_CASE("cuda: the caching allocator reuses freed blocks without waiting") {
  auto& g = static_cast<CudaBackend&>(gpu());
  g.release_cached_memory();
  CHECK(g.cached_bytes() == 0);
  void* p = g.raw_alloc(1000);
  g.raw_free(p, 1000);
  CHECK(g.cached_bytes() == cuda::CachingAllocator::round_size(1000));
  // Same rounded size: the cached block comes back.
  void* q = g.raw_alloc(900);
  CHECK(q == p);
  g.raw_free(q, 900);
  g.release_cached_memory();
  CHECK(g.cached_bytes() == 0);
  // Stream-ordered reuse: a tensor freed while its fill may still be queued
  // hands its block to the next one, whose contents are the later fill's.
  for (int i = 0; i < 3; ++i) {
    Tensor a = Tensor::empty({1 << 20}, g);
    g.fill(a, float(i));
    std::vector<float> v = a.to_vector();
    CHECK(v.front() == float(i));
    CHECK(v.back() == float(i));
  }
}
#endif

// The U-Net on the device against the authors' PyTorch tensors (the golden
// of test_unet_golden): the forward's eps and the guidance gradient through
// the tape, every conv, group norm, attention and product on the device.
TEST_CASE("cuda: U-Net forward and guidance gradient on the device match the golden (unet64_forward)") {
  Backend& g = gpu();
  auto f = SafeTensorsFile::open(test::golden_dir() + "/unet64_forward.safetensors");
  UNet net(UNet::config_from_file(f), g);
  net.load(f, "unet.");
  const Tensor x = f.read_f32("x_t"), t = f.read_f32("t"), y = f.read_f32("y");
  const std::vector<float> abar = f.read_f32_vector("alpha_bar");
  Var eps = net.forward(Var(on_gpu(x)), on_gpu(t));
  CHECK(eps.value.device() == Device::CUDA);
  CHECK(rel(eps.value, f.read_f32("eps")) < 1e-4);
  // ||x0_hat - y|| over the batch, x0_hat = (x_t - sqrt(1-a) eps) / sqrt(a), as test_unet_golden.
  std::vector<float> inv_sqrt_a, coef;
  for (float a : abar) {
    inv_sqrt_a.push_back(float(1.0 / std::sqrt(double(a))));
    coef.push_back(float(std::sqrt(1.0 - double(a)) / std::sqrt(double(a))));
  }
  Tape tape;
  Var xv = make_leaf(on_gpu(x), MemCategory::InputGrad);
  Var obj;
  {
    TapeScope rec(tape);
    Var e = net.forward(xv, on_gpu(t));
    Var x0 = ops::sub(ops::scale_per_sample(xv, inv_sqrt_a), ops::scale_per_sample(e, coef));
    obj = ops::frobenius_norm(ops::sub(x0, Var(on_gpu(y))));
  }
  tape.backward(obj);
  CHECK(xv.grad().device() == Device::CUDA);
  CHECK(rel(xv.grad(), f.read_f32("guidance_grad")) < 1e-4);
}

#ifdef MDPS_CUDA_STANDIN
#include "tests/standin/standin.h"
// Last in the file, so last to run: no stand-in call of the whole suite was
// refused as misuse (a refusal the backend turned into a fallback would
// otherwise pass quietly), and no device fault is pending.
TEST_CASE("cuda stand-in: the suite made no call the documented API refuses") {
  gpu().synchronize();
  CHECK(standin::misuse_count() == 0);
  CHECK(standin::last_misuse() == "");
  CHECK_FALSE(standin::faulted());
}
#endif
