#include "bench/harness/unet_bench.h"
#include "bench/harness/measure.h"
#include "bench/harness/op_report.h"
#include "bench/harness/peak.h"
#include "kernels/cpu/cpu_features.h"
#include "engine/core/json_mini.h"
#include "engine/core/ops.h"
#include "engine/io/safetensors.h"
#include "engine/diffusion/sampler.h"
#include "engine/model/optimizer.h"
#include <memory>
#include <random>
#include <cstdio>

namespace mdps::bench {
namespace {

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
    double fp32_peak = 0;         // the cores' FMA peak (bench/harness/peak.h), CPU only
    double peak = 0;              // the peak of the backend's precision (bf16: the BF16 peak, AMX where present)
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
        r.fp32_peak = fp32_peak_gflops(be.threads());
        r.peak = be.precision() == Precision::BF16 ? bf16_peak_gflops(be.threads()) : r.fp32_peak;
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
  if (const std::string note = twin_version_note(torch_version); !note.empty())
    std::fprintf(stderr, "mdps bench: %s\n", note.c_str());
  const double pfwd = median_of(pf), pguid = median_of(pg), ptrain = median_of(pt), prss_mb = median_of(prss);
  const double gflops = b.flops_per_image * double(a.batch) / fwd / 1e9;
  const double sgemm = median_of(ceilings), of_sgemm = median_of(fracs);
  const double rss = peak_rss_mb();
  print_unet_header(a, b);
  std::printf("  versus PyTorch %s (%s), %d rounds A B alternating, medians; ratio = pytorch / mdps\n",
              torch_version.c_str(), twin_python(a.twin).c_str(), a.twin.rounds);
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

}  // namespace

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
  const double of_peak = tm.peak > 0 ? gflops / tm.peak : 0;
  const char* peak_kind = be.precision() == Precision::BF16 ? "BF16" : "FMA";
  const double rss = peak_rss_mb();
  print_unet_header(a, b);
  const bool on_cpu = be.device() == Device::CPU;
  std::printf("  forward          %.4f s   (%.3f GFLOP/image, %.1f GFLOP/s", fwd, flops_per_image / 1e9, gflops);
  if (on_cpu) std::printf(", %.0f%% of sgemm, %.0f%% of the %s peak", 100.0 * of_sgemm, 100.0 * of_peak, peak_kind);
  std::printf(")\n");
  std::printf("  guidance         %.4f s   (%.2fx forward)\n", guid, guid / fwd);
  std::printf("  train step       %.4f s   (%.2fx forward)\n", train, train / fwd);
  if (on_cpu)
    std::printf("  sgemm ceiling    %.1f GFLOP/s (1536^3, best of 3 after each forward run; %% of sgemm is the "
                "median of the per-run ratios)\n",
                sgemm);
  if (on_cpu)
    std::printf("  FMA peak         %.1f GFLOP/s (fp32, %d threads; mdps bench peak)\n", tm.fp32_peak, be.threads());
  if (on_cpu && be.precision() == Precision::BF16)
    std::printf("  BF16 peak        %.1f GFLOP/s (%s, %d threads; forward_of_peak divides by it)\n", tm.peak,
                cpu::has_amx_bf16() ? "AMX tdpbf16ps" : "vdpbf16ps", be.threads());
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
    const std::string peak = on_cpu ? cat(tm.fp32_peak) : "null", of_peak_s = on_cpu ? cat(of_peak) : "null";
    const std::string ops_key = a.ops ? cat(", \"ops\": [", op_rows, "]") : "";
    // Under bf16 forward_of_peak is of the BF16 peak, given beside the fp32 one.
    const std::string bf16_key =
        on_cpu && be.precision() == Precision::BF16 ? cat(", \"bf16_peak_gflops\": ", tm.peak) : "";
    std::printf(
        "{\"forward_s\": %.6f, \"guidance_s\": %.6f, \"train_step_s\": %.6f, \"forward_gflops\": %.3f, "
        "\"peak_rss_mb\": %.1f, \"sgemm_gflops\": %s, \"gflop_per_image\": %.4f, \"threads\": %d, "
        "\"forward_of_sgemm\": %s, \"fp32_peak_gflops\": %s, \"forward_of_peak\": %s, \"device\": \"%s\", "
        "\"precision\": \"%s\"%s%s%s}\n",
        fwd, guid, train, gflops, rss, ceiling.c_str(), flops_per_image / 1e9, be.threads(), fraction.c_str(),
        peak.c_str(), of_peak_s.c_str(), be.name(), precision_name(be.precision()), bf16_key.c_str(),
        paths_key(be).c_str(), ops_key.c_str());
  }
}

void bench_gemm(int threads, bool json) {
  if (threads > 0) cpu_backend().set_threads(threads);
  double g = sgemm_ceiling_gflops();
  std::printf("mdps bench gemm: %d threads, 1536^3 sgemm: %.1f GFLOP/s (%s)\n", cpu_backend().threads(), g,
              machine_line().c_str());
  if (json) std::printf("{\"sgemm_gflops\": %.3f, \"threads\": %d}\n", g, cpu_backend().threads());
}

}  // namespace mdps::bench
