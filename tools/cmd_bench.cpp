// `mdps bench unet|gemm|sampler|peak|train`: the options only; the harness (what is
// timed and how it is reported) lives in bench/harness/.
#include "tools/command.h"
#include "tools/trace_flag.h"
#include "bench/harness/peak.h"
#include "bench/harness/sampler_bench.h"
#include "bench/harness/train_bench.h"
#include "bench/harness/unet_bench.h"
#include <memory>

namespace mdps {
namespace {

using bench::UNetBenchArgs;
using bench::bench_unet;
using bench::bench_sampler;
using bench::bench_train;
using bench::bench_gemm;
using bench::bench_peak;

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
    s->add_flag("--json", a->json, "also print one JSON object on the last line");
    cli::add_trace_option(s, a->trace);
    s->add_flag("--vs-pytorch", a->vs_pytorch,
                "also time bench/pytorch_twin.py (same weights), alternating A B A B; print medians and ratios");
    s->add_option("--python", a->twin.python, "interpreter with torch, for --vs-pytorch (default: the environment's "
                  "MDPS_BENCH_PYTHON, else /usr/bin/python3)");
    s->add_option("--twin", a->twin.script, "path of pytorch_twin.py (default: the source tree's bench/)");
    s->add_option("--rounds", a->twin.rounds, "A B rounds with --vs-pytorch")->capture_default_str();
    cli::add_device_option(s, a->device, "; on a device the clock stops after the stream is synchronised");
    cli::add_precision_option(s, a->precision);
  };
  // unet and sampler: medians of timed runs, and the per-op breakdown.
  auto add_timed = [a, add_common](CLI::App* s) {
    add_common(s);
    s->add_option("--runs", a->runs, "timed runs (median)")->capture_default_str();
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
  add_timed(u);
  u->add_option("--save-model", a->save_model,
                "write the benchmarked (randomly initialised) U-Net to this model file, e.g. for the twin");
  u->callback(traced(bench_unet));
  auto* g = c->add_subcommand("gemm", "the machine's sgemm ceiling through the engine's BLAS");
  cli::add_threads_option(g, a->threads);
  g->add_flag("--json", a->json, "also print one JSON object on the last line");
  cli::add_trace_option(g, a->trace);
  g->callback(traced([](const UNetBenchArgs& x) { bench_gemm(x.threads, x.json); }));
  auto* pk = c->add_subcommand("peak", "the cores' FP32 FMA throughput (and BF16 dot products where the CPU has "
                               "AVX512-BF16), 1 and N threads");
  cli::add_threads_option(pk, a->threads);  // the N-thread figure's
  pk->add_flag("--json", a->json, "also print one JSON object on the last line");
  pk->callback([a] { bench_peak(a->threads, a->json); });
  auto* s = c->add_subcommand("sampler", "the whole two-round sampler per image (authors' bottle settings)");
  add_timed(s);
  s->callback(traced(bench_sampler));
  auto* tr = c->add_subcommand("train", "images per second of the real `mdps train` loop on a generated folder of "
                               "PNGs, decoding and resizing included (--vs-pytorch: the twin's training loop)");
  add_common(tr);
  tr->add_option("--steps", a->steps, "training steps of each timed run")->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  tr->add_option("--images", a->images, "images in the generated folder")->capture_default_str()
      ->check(CLI::Range(1, 100000));
  tr->add_option("--source-size", a->source_size, "side of the generated images in pixels (resized to "
                 "--image-size when loaded)")->capture_default_str()->check(CLI::Range(8, 4096));
  tr->callback(traced(bench_train));
});

}  // namespace
}  // namespace mdps

