// `mdps bench unet|gemm|sampler`: timings as medians after a warm-up. Speed is
// measured here, never asserted in tests; results go to bench/RESULTS.md.
// --vs-pytorch runs bench/pytorch_twin.py alongside (tools/bench_twin.h).
#include "tools/command.h"
#include "tools/bench_twin.h"
#include "tools/trace_flag.h"
#include "engine/core/ops.h"
#include "engine/model/optimizer.h"
#include "engine/io/safetensors.h"
#include "engine/diffusion/sampler.h"
#include "engine/core/thread_pool.h"
#include <cblas.h>
#include <sys/resource.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
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

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
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
struct SgemmCeiling {
  int n;
  std::vector<float> a, b, c;
  explicit SgemmCeiling(int size = 1536) : n(size), a(size_t(n) * n), b(a.size()), c(a.size()) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> d(-1, 1);
    for (auto& x : a) x = d(rng);
    for (auto& x : b) x = d(rng);
  }
  double flop() const { return 2.0 * n * n * double(n); }
  // Seconds of one product.
  double once() {
    auto t0 = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  // GFLOP/s of the best of `reps` products run back to back.
  double gflops(int reps) {
    double best = once();
    for (int i = 1; i < reps; ++i) best = std::min(best, once());
    return flop() / best / 1e9;
  }
};

double sgemm_ceiling_gflops() {
  SgemmCeiling c;
  c.once();  // warm-up
  double s = median_seconds(0, 5, [&] { c.once(); });
  return c.flop() / s / 1e9;
}

struct UNetBenchArgs {
  int image_size = 64, base_channels = 32, batch = 8, threads = 0, runs = 5, heads = 4, res_blocks = 2;
  bool json = false;
  std::string trace, save_model;
  bool vs_pytorch = false;
  bool ops = false;  // --ops: the per-op breakdown of one more traced round
  TwinOptions twin;
  std::string device = "cpu", precision = "fp32";
};

// The backend the bench runs on (--device, --precision, --threads). The twin
// and the sgemm ceiling are CPU figures: --vs-pytorch needs --device cpu.
Backend& bench_backend(const UNetBenchArgs& a) {
  Backend& be = backend_by_name(a.device, parse_precision(a.precision));
  MDPS_CHECK(!a.vs_pytorch || be.device() == Device::CPU, "--vs-pytorch times the PyTorch twin on the CPU: use it "
             "with --device cpu (this run resolved --device ", a.device, " to ", be.name(), ")");
  MDPS_CHECK(!(a.vs_pytorch && a.ops), "--ops and --vs-pytorch: use one at a time (the breakdown is of the engine "
             "alone)");
  if (a.threads > 0) be.set_threads(a.threads);
  return be;
}

// Host copies moved to the bench's backend (no copy on the CPU).
Tensor on_backend(const Tensor& t, Backend& be) { return be.device() == Device::CPU ? t : t.to(be); }

UNetConfig bench_config(const UNetBenchArgs& a) {
  UNetConfig c;
  c.image_size = a.image_size;
  c.base_channels = a.base_channels;
  c.heads = a.heads;
  c.res_blocks = a.res_blocks;
  return c;
}

// The network, inputs and optimiser `bench unet` times, built once.
struct UNetBench {
  Backend& be;
  UNet net;
  Tensor x, y, t;
  double flops_per_image = 0;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<Adam> adam;

  UNetBench(const UNetBenchArgs& a, Backend& backend) : be(backend), net(bench_config(a), backend) {
    net.init_random(1);
    const int64_t B = a.batch, S = a.image_size;
    std::mt19937 rng(2);
    std::normal_distribution<float> nd;
    std::vector<float> xv(size_t(B * 3 * S * S)), yv(xv.size());
    for (auto& v : xv) v = nd(rng);
    for (auto& v : yv) v = nd(rng);
    x = on_backend(Tensor::from_vector({B, 3, S, S}, xv), be);
    y = on_backend(Tensor::from_vector({B, 3, S, S}, yv), be);
    t = on_backend(Tensor::full({B}, 500.f), be);
    ops::reset_flop_count();
    net.forward(Var(x), t);
    flops_per_image = double(ops::flop_count()) / double(B);
    SamplerSettings ss;
    ss.group = int(B);
    sampler = std::make_unique<Sampler>(net, ss);
    AdamParams ap;
    ap.weight_decay = 0.05f;
    adam = std::make_unique<Adam>(net, ap);
  }

  struct Times {
    double forward = 0, guidance = 0, train = 0;
    double sgemm = 0;             // ceiling GFLOP/s, timed beside the forward runs
    double forward_of_sgemm = 0;  // median of the per-run forward / ceiling ratios
  };
  // One run of each timed phase; each ends when the backend has finished.
  void run_forward() {
    net.forward(Var(x), t);
    be.synchronize();
  }
  void run_guidance() {
    Tensor eps, grad;
    sampler->eps_and_guidance(x, y, 500, true, eps, grad);
    be.synchronize();
  }
  void run_train_step() {
    net.zero_grad();
    Tape tape;
    Var loss;
    {
      TapeScope rec(tape);
      loss = ops::sse_loss(net.forward(Var(x), t), Var(y));
    }
    tape.backward(loss);
    adam->step();
    be.synchronize();
  }

  Times measure(int runs) {
    Times r;
    net.set_requires_grad(false);  // forward and guidance: no weight gradients
    {
      // The ceiling is timed right after every forward run (best of three
      // products), so that the two figures share the machine's state of the
      // moment: on a shared 2-core VM the ceiling alone drifts by 10-15%
      // between runs. Reported: the medians, and the median of the per-run
      // ratios.
      // On a device the clock stops after synchronize(); the ceiling is a CPU
      // figure and is left out there.
      const bool on_cpu = be.device() == Device::CPU;
      std::unique_ptr<SgemmCeiling> ceiling;
      if (on_cpu) ceiling = std::make_unique<SgemmCeiling>();
      std::vector<double> f, c, frac;
      net.forward(Var(x), t);  // warm-up
      be.synchronize();
      if (ceiling) ceiling->once();
      for (int i = 0; i < runs; ++i) {
        auto t0 = Clock::now();
        {
          trace::Scope span("bench.forward", "span");
          run_forward();
        }
        f.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        if (!ceiling) continue;
        c.push_back(ceiling->gflops(3));
        frac.push_back(flops_per_image * double(x.dim(0)) / f.back() / 1e9 / c.back());
      }
      r.forward = median_of(f);
      if (ceiling) {
        r.sgemm = median_of(c);
        r.forward_of_sgemm = median_of(frac);
      }
    }
    r.guidance = median_seconds(1, runs, [&] {
      trace::Scope span("bench.guidance", "span");
      run_guidance();
    });
    net.set_requires_grad(true);
    r.train = median_seconds(1, runs, [&] {
      trace::Scope span("train.step", "span");
      run_train_step();
    });
    net.set_requires_grad(false);
    return r;
  }

  // --ops: one more run of each phase with the trace on, each in a span of
  // its own ("ops.forward", "ops.guidance", "ops.train_step").
  void run_traced_phases() {
    net.set_requires_grad(false);
    {
      trace::Scope span("ops.forward", "span");
      run_forward();
    }
    {
      trace::Scope span("ops.guidance", "span");
      run_guidance();
    }
    net.set_requires_grad(true);
    {
      trace::Scope span("ops.train_step", "span");
      run_train_step();
    }
    net.set_requires_grad(false);
  }

  // The weights (a model file the twin and `mdps sample` read) and, with
  // inputs, the bench's x, y and eps(x, 500) for the twin's output check.
  void save(const std::string& path, bool with_inputs) {
    SafeTensorsWriter w;
    w.set_metadata("unet_config", net.config().to_json());
    w.set_metadata("weights", "mdps bench unet: init_random(1), not trained");
    for (auto& p : net.params()) w.add(p.name, p.var.value);
    if (with_inputs) {
      w.add("bench.x", x);
      w.add("bench.y", y);
      w.add("bench.eps", net.forward(Var(x), t).value);
    }
    w.write(path);
  }
};

// --ops: runs `body` with the trace on (or inside the --trace session already
// running) and returns the op totals within each of the named spans.
std::vector<std::vector<trace::OpTotal>> traced_op_totals(const std::vector<std::string>& spans,
                                                          const std::function<void()>& body) {
  const bool own = !trace::enabled();
  if (own) trace::start();
  body();
  if (own) trace::stop();
  const std::vector<trace::Event> evs = trace::events();
  std::vector<std::vector<trace::OpTotal>> out;
  for (const std::string& s : spans) out.push_back(trace::op_totals(evs, s));
  return out;
}

// The per-op table of one phase (times divided by `per`, e.g. images) and its
// JSON rows ({"phase", "op", "calls", "ms", "share", "gflops", "gbs", "clock"}).
void print_op_totals(const std::string& phase, const std::vector<trace::OpTotal>& ops, double per,
                     const char* unit, std::string& json_rows) {
  double total = 0;
  bool device = !ops.empty();
  for (const trace::OpTotal& o : ops) {
    total += o.ns();
    device = device && o.device_ns >= 0;
  }
  const char* clock = device ? "device" : "host";
  std::printf("  %s, per op (%s; %s clock%s):\n", phase.c_str(), unit,
              clock, device ? ": CUDA events around each op" : "");
  std::printf("    %-26s %7s %10s %7s %9s %8s\n", "op", "calls", "ms", "share", "GFLOP/s", "GB/s");
  for (const trace::OpTotal& o : ops) {
    const double sec = o.ns() / 1e9;
    const double gf = sec > 0 ? o.flops / sec / 1e9 : 0, gb = sec > 0 ? o.bytes / sec / 1e9 : 0;
    const double share = total > 0 ? o.ns() / total : 0;
    std::printf("    %-26s %7.0f %10.3f %6.1f%% %9.1f %8.2f\n", o.name.c_str(), double(o.calls) / per,
                o.ns() / 1e6 / per, 100.0 * share, gf, gb);
    json_rows += cat(json_rows.empty() ? "" : ", ", "{\"phase\": ", json::quote(phase), ", \"op\": ",
                     json::quote(o.name), ", \"calls\": ", double(o.calls) / per, ", \"ms\": ", o.ns() / 1e6 / per,
                     ", \"share\": ", share, ", \"gflops\": ", gf, ", \"gbs\": ", gb, ", \"clock\": \"", clock,
                     "\"}");
  }
  std::printf("    %-26s %7s %10.3f\n", "total", "", total / 1e6 / per);
}

// Which implementation the backend's ops took (Backend::paths), after the runs
// that built them; nothing where the backend has no choice.
void print_paths(const Backend& be) {
  const std::string p = be.paths();
  if (!p.empty()) std::printf("  paths            %s\n", p.c_str());
}
std::string paths_key(const Backend& be) {
  const std::string p = be.paths();
  return p.empty() ? "" : cat(", \"paths\": ", json::quote(p));
}

void print_unet_header(const UNetBenchArgs& a, const UNetBench& b) {
  std::printf("mdps bench unet: image %d, base %d, batch %d, %d threads, %lld parameters\n", a.image_size,
              a.base_channels, a.batch, b.be.threads(), static_cast<long long>(b.net.parameter_count()));
  std::printf("  machine          %s\n", machine_line().c_str());
  std::printf("  device           %s, %s\n", b.be.name(), precision_name(b.be.precision()));
}

// The twin's arguments for the bench's shape and threads (config from the model file).
std::vector<std::string> twin_args(const UNetBenchArgs& a, int threads, const std::string& model) {
  return {"--model", model, "--batch", std::to_string(a.batch), "--threads", std::to_string(threads), "--runs",
          std::to_string(a.runs)};
}

// A B A B: the engine in this process, the twin as a subprocess, on the same
// weights and inputs; medians over the rounds of each side's medians.
void bench_unet_vs_pytorch(const UNetBenchArgs& a, UNetBench& b) {
  TempFile model(temp_path("mdps-bench-unet", ".safetensors"));
  b.save(model.path, true);
  const int threads = b.be.threads();
  std::vector<double> f, g, tr, pf, pg, pt, prss, ceilings, fracs;
  double eps_rel = -1;
  std::string torch_version;
  for (int r = 0; r < a.twin.rounds; ++r) {
    UNetBench::Times m = b.measure(a.runs);
    f.push_back(m.forward);
    g.push_back(m.guidance);
    tr.push_back(m.train);
    ceilings.push_back(m.sgemm);
    fracs.push_back(m.forward_of_sgemm);
    json::Value p = run_twin(a.twin, twin_args(a, threads, model.path));
    pf.push_back(twin_number(p, "forward_s"));
    pg.push_back(twin_number(p, "guidance_s"));
    pt.push_back(twin_number(p, "train_step_s"));
    prss.push_back(twin_number(p, "peak_rss_mb"));
    eps_rel = twin_number(p, "eps_rel_l2_vs_engine");
    if (const json::Value* v = p.find("torch")) torch_version = v->str;
    std::fprintf(stderr, "  round %d/%d: mdps %.4f %.4f %.4f s, pytorch %.4f %.4f %.4f s\n", r + 1, a.twin.rounds,
                 m.forward, m.guidance, m.train, pf.back(), pg.back(), pt.back());
  }
  const double fwd = median_of(f), guid = median_of(g), train = median_of(tr);
  const double pfwd = median_of(pf), pguid = median_of(pg), ptrain = median_of(pt), prss_mb = median_of(prss);
  const double gflops = b.flops_per_image * double(a.batch) / fwd / 1e9;
  const double sgemm = median_of(ceilings), of_sgemm = median_of(fracs);
  const double rss = peak_rss_mb();
  print_unet_header(a, b);
  std::printf("  versus PyTorch %s (%s), %d rounds A B alternating, medians; ratio = pytorch / mdps\n",
              torch_version.c_str(), a.twin.python.c_str(), a.twin.rounds);
  std::printf("                   mdps         pytorch      ratio\n");
  std::printf("  forward          %8.4f s   %8.4f s   %5.2fx\n", fwd, pfwd, pfwd / fwd);
  std::printf("  guidance         %8.4f s   %8.4f s   %5.2fx\n", guid, pguid, pguid / guid);
  std::printf("  train step       %8.4f s   %8.4f s   %5.2fx\n", train, ptrain, ptrain / train);
  std::printf("  peak RSS         %8.0f MB  %8.0f MB  %5.2fx   (mdps: the whole bench; pytorch: a train-only "
              "process)\n",
              rss, prss_mb, prss_mb / rss);
  std::printf("  eps, same weights and inputs: relative L2 difference %.2g\n", eps_rel);
  std::printf("  forward          %.1f GFLOP/s, %.0f%% of the sgemm ceiling (%.1f GFLOP/s, timed after each forward "
              "run; median of the per-run ratios)\n",
              gflops, 100.0 * of_sgemm, sgemm);
  if (a.json)
    std::printf(
        "{\"forward_s\": %.6f, \"guidance_s\": %.6f, \"train_step_s\": %.6f, \"forward_gflops\": %.3f, "
        "\"peak_rss_mb\": %.1f, \"sgemm_gflops\": %.3f, \"gflop_per_image\": %.4f, \"threads\": %d, "
        "\"pytorch_forward_s\": %.6f, \"pytorch_guidance_s\": %.6f, \"pytorch_train_step_s\": %.6f, "
        "\"pytorch_peak_rss_mb\": %.1f, \"speedup_forward\": %.4f, \"speedup_guidance\": %.4f, "
        "\"speedup_train_step\": %.4f, \"speedup_peak_rss\": %.4f, \"eps_rel_l2_vs_pytorch\": %.3g, "
        "\"rounds\": %d, \"forward_of_sgemm\": %.4f}\n",
        fwd, guid, train, gflops, rss, sgemm, b.flops_per_image / 1e9, threads, pfwd, pguid, ptrain, prss_mb,
        pfwd / fwd, pguid / guid, ptrain / train, prss_mb / rss, eps_rel, a.twin.rounds, of_sgemm);
}

void bench_unet(const UNetBenchArgs& a) {
  Backend& be = bench_backend(a);
  if (a.vs_pytorch) check_twin_available(a.twin);  // before minutes of engine work
  UNetBench b(a, be);
  if (!a.save_model.empty()) {
    b.save(a.save_model, false);
    std::printf("mdps bench unet: model written to %s\n", a.save_model.c_str());
  }
  if (a.vs_pytorch) return bench_unet_vs_pytorch(a, b);
  UNetBench::Times tm = b.measure(a.runs);
  const double fwd = tm.forward, guid = tm.guidance, train = tm.train;
  const double flops_per_image = b.flops_per_image;
  const double gflops = flops_per_image * double(a.batch) / fwd / 1e9;
  const double sgemm = tm.sgemm, of_sgemm = tm.forward_of_sgemm;
  const double rss = peak_rss_mb();
  print_unet_header(a, b);
  const bool on_cpu = be.device() == Device::CPU;
  std::printf("  forward          %.4f s   (%.3f GFLOP/image, %.1f GFLOP/s", fwd, flops_per_image / 1e9, gflops);
  if (on_cpu) std::printf(", %.0f%% of sgemm", 100.0 * of_sgemm);
  std::printf(")\n");
  std::printf("  guidance         %.4f s   (%.2fx forward)\n", guid, guid / fwd);
  std::printf("  train step       %.4f s   (%.2fx forward)\n", train, train / fwd);
  if (on_cpu)
    std::printf("  sgemm ceiling    %.1f GFLOP/s (1536^3, best of 3 after each forward run; %% of sgemm is the "
                "median of the per-run ratios)\n",
                sgemm);
  std::printf("  peak RSS         %.0f MB (allocator peak %.0f MB%s)\n", rss,
              double(be.stats().peak_bytes.load()) / 1048576.0, on_cpu ? "" : " on the device");
  print_paths(be);
  std::string op_rows;
  if (a.ops) {
    const std::vector<std::string> spans{"ops.forward", "ops.guidance", "ops.train_step"};
    const auto totals = traced_op_totals(spans, [&] { b.run_traced_phases(); });
    const char* phase[] = {"forward", "guidance", "train_step"};
    for (size_t i = 0; i < spans.size(); ++i)
      print_op_totals(phase[i], totals[i], 1.0, cat("one traced run, batch ", a.batch).c_str(), op_rows);
  }
  if (a.json) {
    // On a device the CPU ceiling does not apply: its two keys are null.
    const std::string ceiling = on_cpu ? cat(sgemm) : "null", fraction = on_cpu ? cat(of_sgemm) : "null";
    const std::string ops_key = a.ops ? cat(", \"ops\": [", op_rows, "]") : "";
    std::printf(
        "{\"forward_s\": %.6f, \"guidance_s\": %.6f, \"train_step_s\": %.6f, \"forward_gflops\": %.3f, "
        "\"peak_rss_mb\": %.1f, \"sgemm_gflops\": %s, \"gflop_per_image\": %.4f, \"threads\": %d, "
        "\"forward_of_sgemm\": %s, \"device\": \"%s\", \"precision\": \"%s\"%s%s}\n",
        fwd, guid, train, gflops, rss, ceiling.c_str(), flops_per_image / 1e9, be.threads(), fraction.c_str(),
        be.name(), precision_name(be.precision()), paths_key(be).c_str(), ops_key.c_str());
  }
}

void bench_gemm(int threads, bool json) {
  if (threads > 0) cpu_backend().set_threads(threads);
  double g = sgemm_ceiling_gflops();
  std::printf("mdps bench gemm: %d threads, 1536^3 sgemm: %.1f GFLOP/s (%s)\n", cpu_backend().threads(), g,
              machine_line().c_str());
  if (json) std::printf("{\"sgemm_gflops\": %.3f, \"threads\": %d}\n", g, cpu_backend().threads());
}

// The whole two-round sampler over one batch (authors' bottle settings), seconds.
double time_sampler(const Sampler& sampler, const Tensor& y, Backend& be) {
  MdpsRounds r;  // the authors' bottle settings: 200/50 then 200/100, skip 20
  PhiloxNoise noise(1, 0);
  auto t0 = Clock::now();
  run_mdps(sampler, y, r, noise, pixel_anomaly_map);
  be.synchronize();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void bench_sampler(const UNetBenchArgs& a) {
  Backend& be = bench_backend(a);
  if (a.vs_pytorch) check_twin_available(a.twin);
  UNet net(bench_config(a), be);
  net.init_random(1);
  const int64_t B = a.batch, S = a.image_size;
  Tensor y = Tensor::empty({B, 3, S, S});
  PhiloxNoise(5, 9).normal(y);
  y = on_backend(y, be);
  Tensor t = on_backend(Tensor::full({B}, 500.f), be);
  double fwd = median_seconds(1, 3, [&] {
    net.forward(Var(y), t);
    be.synchronize();
  });
  SamplerSettings ss;
  ss.group = int(B);
  Sampler sampler(net, ss);
  if (a.vs_pytorch) {
    TempFile model(temp_path("mdps-bench-sampler", ".safetensors"));
    {
      SafeTensorsWriter w;
      w.set_metadata("unet_config", net.config().to_json());
      for (auto& p : net.params()) w.add(p.name, p.var.value);
      w.write(model.path);
    }
    std::vector<double> mine, theirs;
    std::string torch_version;
    for (int r = 0; r < a.twin.rounds; ++r) {
      mine.push_back(time_sampler(sampler, y, be) / double(B));
      json::Value p = run_twin(a.twin, {"--sampler", "--model", model.path, "--batch", std::to_string(B),
                                        "--threads", std::to_string(be.threads())});
      theirs.push_back(twin_number(p, "sampler_s_per_image"));
      if (const json::Value* v = p.find("torch")) torch_version = v->str;
      std::fprintf(stderr, "  round %d/%d: mdps %.3f s, pytorch %.3f s per image\n", r + 1, a.twin.rounds,
                   mine.back(), theirs.back());
    }
    const double m = median_of(mine), p = median_of(theirs);
    std::printf("mdps bench sampler --vs-pytorch: image %d, base %d, batch %d, %d threads, PyTorch %s, %d rounds "
                "A B alternating (%s)\n",
                a.image_size, a.base_channels, a.batch, be.threads(), torch_version.c_str(), a.twin.rounds,
                machine_line().c_str());
    std::printf("  two rounds (T 200/200, skip 20, rho 50/100) per image: mdps %.3f s, pytorch %.3f s, ratio "
                "%.2fx\n",
                m, p, p / m);
    if (a.json)
      std::printf("{\"sampler_s_per_image\": %.6f, \"forward_s\": %.6f, \"forward_equivalents\": %.2f, "
                  "\"pytorch_sampler_s_per_image\": %.6f, \"speedup_sampler\": %.4f, \"rounds\": %d}\n",
                  m, fwd, m * double(B) / fwd, p, p / m, a.twin.rounds);
    return;
  }
  double total = time_sampler(sampler, y, be);
  double per_image = total / double(B);
  std::printf("mdps bench sampler: image %d, base %d, batch %d, %d threads, device %s %s (%s)\n", a.image_size,
              a.base_channels, a.batch, be.threads(), be.name(), precision_name(be.precision()),
              machine_line().c_str());
  std::printf("  two rounds (T 200/200, skip 20, rho 50/100): %.3f s per image, %.1f forward-equivalents "
              "(ideal 40, the authors' code 60)\n",
              per_image, total / fwd);
  print_paths(be);
  std::string op_rows;
  if (a.ops) {
    const auto totals = traced_op_totals({"ops.sampler"}, [&] {
      trace::Scope span("ops.sampler", "span");
      time_sampler(sampler, y, be);
    });
    print_op_totals("sampler", totals[0], double(B), "one traced run, per image", op_rows);
  }
  if (a.json)
    std::printf("{\"sampler_s_per_image\": %.6f, \"forward_s\": %.6f, \"forward_equivalents\": %.2f, "
                "\"device\": \"%s\", \"precision\": \"%s\"%s%s}\n",
                per_image, fwd, total / fwd, be.name(), precision_name(be.precision()), paths_key(be).c_str(),
                a.ops ? cat(", \"ops\": [", op_rows, "]").c_str() : "");
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
    cli::add_threads_option(s, a->threads);
    s->add_option("--runs", a->runs, "timed runs (median)")->capture_default_str();
    s->add_flag("--json", a->json, "also print one JSON object on the last line");
    cli::add_trace_option(s, a->trace);
    s->add_flag("--vs-pytorch", a->vs_pytorch,
                "also time bench/pytorch_twin.py (same weights), alternating A B A B; print medians and ratios");
    s->add_option("--python", a->twin.python, "interpreter with torch, for --vs-pytorch")->capture_default_str();
    s->add_option("--twin", a->twin.script, "path of pytorch_twin.py (default: the source tree's bench/)");
    s->add_option("--rounds", a->twin.rounds, "A B rounds with --vs-pytorch")->capture_default_str();
    s->add_option("--device", a->device, "cpu, cuda or auto (cuda when a device exists); on a device the clock "
                  "stops after the stream is synchronised")->capture_default_str();
    cli::add_precision_option(s, a->precision);
    s->add_flag("--ops", a->ops,
                "after the timing, run each phase once more with the trace on and print the time per op (on a "
                "device: from CUDA events around each op; JSON: \"ops\")");
    s->get_option("--runs")->check(CLI::Range(1, 100000));
  };
  // Tracing covers the whole subcommand; the file is written when it ends.
  auto traced = [a](void (*run)(const UNetBenchArgs&)) {
    return [a, run] {
      trace::Session trace_session(a->trace);
      run(*a);
      trace_session.finish();
    };
  };
  auto* u = c->add_subcommand("unet", "U-Net forward, guidance (forward + input gradient) and train step");
  add_common(u);
  u->add_option("--save-model", a->save_model,
                "write the benchmarked (randomly initialised) U-Net to this model file, e.g. for the twin");
  u->callback(traced(bench_unet));
  auto* g = c->add_subcommand("gemm", "the machine's sgemm ceiling through the engine's BLAS");
  cli::add_threads_option(g, a->threads);
  g->add_flag("--json", a->json, "also print one JSON object on the last line");
  cli::add_trace_option(g, a->trace);
  g->callback(traced([](const UNetBenchArgs& x) { bench_gemm(x.threads, x.json); }));
  auto* s = c->add_subcommand("sampler", "the whole two-round sampler per image (authors' bottle settings)");
  add_common(s);
  s->callback(traced(bench_sampler));
});

}  // namespace
}  // namespace mdps
