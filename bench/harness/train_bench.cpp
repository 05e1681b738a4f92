#include "bench/harness/train_bench.h"
#include "bench/harness/measure.h"
#include "engine/core/common.h"
#include "engine/diffusion/trainer.h"
#include "engine/io/demo_data.h"
#include <unistd.h>
#include <cstdio>
#include <filesystem>

namespace mdps::bench {

namespace {

namespace fs = std::filesystem;

// The generated data set and the checkpoint, removed when the bench ends.
struct TempDir {
  std::string path;
  TempDir() : path((fs::temp_directory_path() / cat("mdps-bench-train-", ::getpid())).string()) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

struct TrainTimes {
  double images_per_s = 0;       // steps * batch / wall time of train()
  double loop_images_per_s = 0;  // the trainer's own figure: from the first step on
  double seconds = 0, setup_s = 0;
};

TrainTimes time_mdps_train(const UNetBenchArgs& a, const std::string& data, const std::string& out) {
  TrainOptions o;
  o.data_dir = data;
  o.out_path = out;
  o.image_size = a.image_size;
  o.base_channels = a.base_channels;
  o.res_blocks = a.res_blocks;
  o.heads = a.heads;
  o.batch = a.batch;
  o.steps = a.steps;
  o.threads = a.threads;
  o.device = a.device;
  o.precision = a.precision;
  o.write_csv = false;
  o.on_warning = [](const std::string& w) { std::fprintf(stderr, "mdps bench train: %s\n", w.c_str()); };
  fs::remove(out);
  const auto t0 = Clock::now();
  const TrainResult r = train(o);
  TrainTimes t;
  t.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  t.images_per_s = double(a.steps) * a.batch / t.seconds;
  t.loop_images_per_s = r.images_per_s;
  t.setup_s = t.seconds - r.seconds;
  return t;
}

}  // namespace

void bench_train(const UNetBenchArgs& a) {
  MDPS_CHECK(a.steps >= 1, "--steps must be >= 1, got ", a.steps);
  MDPS_CHECK(a.images >= 1, "--images must be >= 1, got ", a.images);
  MDPS_CHECK(a.source_size >= 8, "--source-size must be >= 8, got ", a.source_size);
  MDPS_CHECK(!a.vs_pytorch || a.device == "cpu", "--vs-pytorch times the PyTorch twin on the CPU: use it with "
             "--device cpu");
  if (a.vs_pytorch) check_twin_available(a.twin);
  const int threads = a.threads > 0 ? a.threads : cpu_backend().threads();
  TempDir dir;
  DemoDataOptions d;
  d.size = a.source_size;
  d.train = a.images;
  d.test_good = 1;  // the demo data wants every split; training reads train/good only
  d.test_defect = 1;
  d.seed = 9;
  const std::string data = dir.path + "/data", out = dir.path + "/model.safetensors";
  write_demo_dataset(data, d);

  std::vector<double> ours, ours_loop, setup, theirs, theirs_loop, theirs_rss;
  std::string torch_version;
  const int rounds = a.vs_pytorch ? a.twin.rounds : 1;
  for (int r = 0; r < rounds; ++r) {
    const TrainTimes m = time_mdps_train(a, data, out);
    ours.push_back(m.images_per_s);
    ours_loop.push_back(m.loop_images_per_s);
    setup.push_back(m.setup_s);
    if (!a.vs_pytorch) break;
    const json::Value p = run_twin(a.twin, {"--train-loop", data, "--steps", std::to_string(a.steps), "--batch",
                                            std::to_string(a.batch), "--image-size", std::to_string(a.image_size),
                                            "--base-channels", std::to_string(a.base_channels), "--heads",
                                            std::to_string(a.heads), "--res-blocks", std::to_string(a.res_blocks),
                                            "--threads", std::to_string(threads)});
    theirs.push_back(twin_number(p, "images_per_s"));
    theirs_loop.push_back(p.find("steady_images_per_s") ? twin_number(p, "steady_images_per_s") : 0.0);
    theirs_rss.push_back(twin_number(p, "peak_rss_mb"));
    if (const json::Value* v = p.find("torch")) torch_version = v->str;
    std::fprintf(stderr, "  round %d/%d: mdps %.2f images/s, pytorch %.2f images/s\n", r + 1, rounds, ours.back(),
                 theirs.back());
  }
  const double ips = median_of(ours), loop = median_of(ours_loop), set = median_of(setup), rss = peak_rss_mb();
  if (const std::string note = twin_version_note(torch_version); !note.empty())
    std::fprintf(stderr, "mdps bench: %s\n", note.c_str());
  std::printf("mdps bench train: image %d, base %d, batch %d, %d steps, %d images of %dx%d (generated PNGs), "
              "threads %d, device %s %s (%s)\n",
              a.image_size, a.base_channels, a.batch, a.steps, a.images, a.source_size, a.source_size, threads,
              a.device.c_str(), a.precision.c_str(), machine_line().c_str());
  std::printf("  mdps train       %.2f images/s with the loading (%.2f from the first step on; decoding and "
              "set-up %.2f s)\n",
              ips, loop, set);
  std::string twin_json;
  if (a.vs_pytorch) {
    const double p = median_of(theirs), pl = median_of(theirs_loop), prss = median_of(theirs_rss);
    std::printf("  pytorch %s     %.2f images/s with the loading (%.2f from the second step on), %d rounds A B "
                "alternating, medians (%s)\n",
                torch_version.c_str(), p, pl, rounds, twin_python(a.twin).c_str());
    std::printf("  ratio            %.2fx (mdps / pytorch, images per second); peak RSS %.0f MB vs %.0f MB\n",
                ips / p, rss, prss);
    twin_json = cat(", \"pytorch_images_per_s\": ", p, ", \"pytorch_steady_images_per_s\": ", pl,
                    ", \"pytorch_peak_rss_mb\": ", prss, ", \"speedup\": ", ips / p, ", \"rounds\": ", rounds,
                    ", \"torch\": \"", torch_version, "\"");
  } else {
    std::printf("  peak RSS         %.0f MB\n", rss);
  }
  if (a.json)
    std::printf("{\"images_per_s\": %.4f, \"loop_images_per_s\": %.4f, \"setup_s\": %.4f, \"steps\": %d, "
                "\"batch\": %d, \"images\": %d, \"source_size\": %d, \"peak_rss_mb\": %.1f%s}\n",
                ips, loop, set, a.steps, a.batch, a.images, a.source_size, rss, twin_json.c_str());
}

}  // namespace mdps::bench
