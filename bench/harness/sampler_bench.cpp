#include "bench/harness/sampler_bench.h"
#include "bench/harness/measure.h"
#include "bench/harness/op_report.h"
#include "bench/harness/peak.h"
#include "engine/core/ops.h"
#include "engine/core/json_mini.h"
#include "engine/detect/anomaly_map.h"
#include "engine/diffusion/sampler.h"
#include "engine/io/safetensors.h"
#include <cstdio>

namespace mdps::bench {
namespace {

// The whole two-round sampler over one batch (authors' bottle settings), seconds.
double time_sampler(const Sampler& sampler, const Tensor& y, Backend& be) {
  MdpsRounds r;  // the authors' bottle settings: 200/50 then 200/100, skip 20
  PhiloxNoise noise(1, 0);
  auto t0 = Clock::now();
  run_mdps(sampler, y, r, noise, pixel_anomaly_map);
  be.synchronize();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

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
  ops::reset_flop_count();
  net.forward(Var(y), t);
  const double fwd_gflops = double(ops::flop_count()) / fwd / 1e9;
  const bool on_cpu = be.device() == Device::CPU;
  const double peak = on_cpu ? precision_peak_gflops(be.precision(), be.threads()) : 0;
  const std::string of_peak = on_cpu ? cat(fwd_gflops / peak) : "null";
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
    if (const std::string note = twin_version_note(torch_version); !note.empty())
      std::fprintf(stderr, "mdps bench: %s\n", note.c_str());
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
  if (on_cpu)
    std::printf("  forward          %.1f GFLOP/s, %.0f%% of the %s peak (%.1f GFLOP/s %s, %d threads)\n", fwd_gflops,
                100.0 * fwd_gflops / peak, be.precision() == Precision::BF16 ? "BF16" : "FMA", peak,
                precision_name(be.precision()), be.threads());
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
                "\"forward_of_peak\": %s, \"device\": \"%s\", \"precision\": \"%s\"%s%s}\n",
                per_image, fwd, total / fwd, of_peak.c_str(), be.name(), precision_name(be.precision()), paths_key(be).c_str(),
                a.ops ? cat(", \"ops\": [", op_rows, "]").c_str() : "");
}

}  // namespace mdps::bench
