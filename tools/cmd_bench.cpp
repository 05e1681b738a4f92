// `mdps bench unet|gemm|sampler`: timings as medians after a warm-up. Speed is
// measured here, never asserted in tests; results go to bench/RESULTS.md.
#include "tools/command.h"
#include "engine/ops.h"
#include "engine/optimizer.h"
#include "engine/sampler.h"
#include "engine/thread_pool.h"
#include <cblas.h>
#include <sys/resource.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <thread>

namespace mdps {
namespace {

using Clock = std::chrono::steady_clock;

double median_seconds(int warmup, int runs, const std::function<void()>& f) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    auto t0 = Clock::now();
    f();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // KiB on Linux
}

std::string machine_line() {
  std::string cpu = "unknown cpu";
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f)) {
      std::string l(line);
      if (l.rfind("model name", 0) == 0) {
        cpu = l.substr(l.find(':') + 2);
        if (!cpu.empty() && cpu.back() == '\n') cpu.pop_back();
        break;
      }
    }
    std::fclose(f);
  }
  return cat(cpu, ", ", std::thread::hardware_concurrency(), " hardware threads");
}

// Large square sgemm through the BLAS the engine uses: the ceiling every
// other figure is read against.
double sgemm_ceiling_gflops(int n = 1536) {
  std::vector<float> a(size_t(n) * n), b(size_t(n) * n), c(size_t(n) * n);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-1, 1);
  for (auto& x : a) x = d(rng);
  for (auto& x : b) x = d(rng);
  double s = median_seconds(1, 5, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  });
  return 2.0 * n * n * double(n) / s / 1e9;
}

struct UNetBenchArgs {
  int image_size = 64, base_channels = 32, batch = 8, threads = 0, runs = 5, heads = 4, res_blocks = 2;
  bool json = false;
};

UNetConfig bench_config(const UNetBenchArgs& a) {
  UNetConfig c;
  c.image_size = a.image_size;
  c.base_channels = a.base_channels;
  c.heads = a.heads;
  c.res_blocks = a.res_blocks;
  return c;
}

void bench_unet(const UNetBenchArgs& a) {
  Backend& be = cpu_backend();
  if (a.threads > 0) be.set_threads(a.threads);
  UNet net(bench_config(a), be);
  net.init_random(1);
  const int64_t B = a.batch, S = a.image_size;
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  std::vector<float> xv(size_t(B * 3 * S * S)), yv(xv.size());
  for (auto& v : xv) v = nd(rng);
  for (auto& v : yv) v = nd(rng);
  Tensor x = Tensor::from_vector({B, 3, S, S}, xv), y = Tensor::from_vector({B, 3, S, S}, yv);
  Tensor t = Tensor::full({B}, 500.f);

  ops::reset_flop_count();
  net.forward(Var(x), t);
  const double flops_per_image = double(ops::flop_count()) / double(B);

  double fwd = median_seconds(1, a.runs, [&] { net.forward(Var(x), t); });
  SamplerSettings ss;
  ss.group = int(B);
  Sampler sampler(net, ss);
  double guid = median_seconds(1, a.runs, [&] {
    Tensor eps, grad;
    sampler.eps_and_guidance(x, y, 500, true, eps, grad);
  });
  net.set_requires_grad(true);
  AdamParams ap;
  ap.weight_decay = 0.05f;
  Adam adam(net, ap);
  double train = median_seconds(1, a.runs, [&] {
    net.zero_grad();
    Tape tape;
    Var loss;
    {
      TapeScope rec(tape);
      loss = ops::sse_loss(net.forward(Var(x), t), Var(y));
    }
    tape.backward(loss);
    adam.step();
  });
  const double gflops = flops_per_image * double(B) / fwd / 1e9;
  const double sgemm = sgemm_ceiling_gflops();
  const double rss = peak_rss_mb();
  std::printf("mdps bench unet: image %d, base %d, batch %d, %d threads, %lld parameters\n", a.image_size,
              a.base_channels, a.batch, be.threads(), static_cast<long long>(net.parameter_count()));
  std::printf("  machine          %s\n", machine_line().c_str());
  std::printf("  forward          %.4f s   (%.3f GFLOP/image, %.1f GFLOP/s, %.0f%% of sgemm)\n", fwd,
              flops_per_image / 1e9, gflops, 100.0 * gflops / sgemm);
  std::printf("  guidance         %.4f s   (%.2fx forward)\n", guid, guid / fwd);
  std::printf("  train step       %.4f s   (%.2fx forward)\n", train, train / fwd);
  std::printf("  sgemm ceiling    %.1f GFLOP/s\n", sgemm);
  std::printf("  peak RSS         %.0f MB (allocator peak %.0f MB)\n", rss,
              double(be.stats().peak_bytes.load()) / 1048576.0);
  if (a.json)
    std::printf(
        "{\"forward_s\": %.6f, \"guidance_s\": %.6f, \"train_step_s\": %.6f, \"forward_gflops\": %.3f, "
        "\"peak_rss_mb\": %.1f, \"sgemm_gflops\": %.3f, \"gflop_per_image\": %.4f, \"threads\": %d}\n",
        fwd, guid, train, gflops, rss, sgemm, flops_per_image / 1e9, be.threads());
}

void bench_gemm(int threads, bool json) {
  if (threads > 0) cpu_backend().set_threads(threads);
  double g = sgemm_ceiling_gflops();
  std::printf("mdps bench gemm: %d threads, 1536^3 sgemm: %.1f GFLOP/s (%s)\n", cpu_backend().threads(), g,
              machine_line().c_str());
  if (json) std::printf("{\"sgemm_gflops\": %.3f, \"threads\": %d}\n", g, cpu_backend().threads());
}

void bench_sampler(const UNetBenchArgs& a) {
  Backend& be = cpu_backend();
  if (a.threads > 0) be.set_threads(a.threads);
  UNet net(bench_config(a), be);
  net.init_random(1);
  const int64_t B = a.batch, S = a.image_size;
  Tensor y = Tensor::empty({B, 3, S, S});
  PhiloxNoise(5, 9).normal(y);
  Tensor t = Tensor::full({B}, 500.f);
  double fwd = median_seconds(1, 3, [&] { net.forward(Var(y), t); });
  SamplerSettings ss;
  ss.group = int(B);
  Sampler sampler(net, ss);
  MdpsRounds r;  // the authors' bottle settings: 200/50 then 200/100, skip 20
  PhiloxNoise noise(1, 0);
  auto t0 = Clock::now();
  run_mdps(sampler, y, r, noise, pixel_anomaly_map);
  double total = std::chrono::duration<double>(Clock::now() - t0).count();
  double per_image = total / double(B);
  std::printf("mdps bench sampler: image %d, base %d, batch %d, %d threads (%s)\n", a.image_size, a.base_channels,
              a.batch, be.threads(), machine_line().c_str());
  std::printf("  two rounds (T 200/200, skip 20, rho 50/100): %.3f s per image, %.1f forward-equivalents "
              "(ideal 40, the authors' code 60)\n",
              per_image, total / fwd);
  if (a.json)
    std::printf("{\"sampler_s_per_image\": %.6f, \"forward_s\": %.6f, \"forward_equivalents\": %.2f}\n", per_image,
                fwd, total / fwd);
}

cli::Registrar reg("bench", 80, [](CLI::App& app) {
  auto* c = app.add_subcommand("bench", "Benchmarks (medians after a warm-up); record results in bench/RESULTS.md");
  c->require_subcommand(1);
  auto a = std::make_shared<UNetBenchArgs>();
  auto add_common = [a](CLI::App* s) {
    s->add_option("--image-size", a->image_size, "image size")->capture_default_str();
    s->add_option("--base-channels", a->base_channels, "U-Net base channels")->capture_default_str();
    s->add_option("--batch", a->batch, "batch size")->capture_default_str();
    s->add_option("--heads", a->heads, "attention heads")->capture_default_str();
    s->add_option("--res-blocks", a->res_blocks, "res blocks per level")->capture_default_str();
    s->add_option("--threads", a->threads, "CPU threads (0: all cores)")->capture_default_str();
    s->add_option("--runs", a->runs, "timed runs (median)")->capture_default_str();
    s->add_flag("--json", a->json, "also print one JSON object on the last line");
  };
  auto* u = c->add_subcommand("unet", "U-Net forward, guidance (forward + input gradient) and train step");
  add_common(u);
  u->callback([a] { bench_unet(*a); });
  auto* g = c->add_subcommand("gemm", "the machine's sgemm ceiling through the engine's BLAS");
  g->add_option("--threads", a->threads, "CPU threads (0: all cores)");
  g->add_flag("--json", a->json, "also print one JSON object on the last line");
  g->callback([a] { bench_gemm(a->threads, a->json); });
  auto* s = c->add_subcommand("sampler", "the whole two-round sampler per image (authors' bottle settings)");
  add_common(s);
  s->callback([a] { bench_sampler(*a); });
});

}  // namespace
}  // namespace mdps
