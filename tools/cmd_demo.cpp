// `mdps demo`: the whole pipeline on a generated toy data set, on the CPU in
// minutes: data with planted defects, a tiny prior, the evaluation. Exits
// non-zero when the image AUROC is not clearly above chance, so CI notices
// a regression anywhere in the chain.
#include "tools/command.h"
#include "engine/eval/report_html.h"
#include "tools/eval_flags.h"
#include "engine/io/demo_data.h"
#include "engine/core/json_mini.h"
#include "engine/diffusion/trainer.h"
#include <cmath>
#include <cstdio>
#include <filesystem>

namespace fs = std::filesystem;

namespace mdps {
namespace {

struct DemoArgs {
  std::string out = "mdps-demo";
  bool quick = false;
  int threads = 0;
  int64_t steps = 0;
  uint64_t seed = 0;
  double min_auroc = 0.6;
};

void run_demo(const DemoArgs& a) {
  Backend& be = cpu_backend();
  if (a.threads > 0) be.set_threads(a.threads);
  const fs::path out(a.out);
  const std::string data = (out / "data" / "demo").string();
  const std::string model = (out / "model.safetensors").string();
  const std::string eval_dir = (out / "eval").string();

  DemoDataOptions d;
  d.size = 32;
  d.train = a.quick ? 40 : 60;
  d.test_good = 10;
  d.test_defect = 5;
  d.seed = a.seed + 1;
  write_demo_dataset(data, d);
  std::printf("1/3 data: %s (%d training images, %d test images with masks)\n", data.c_str(), d.train,
              d.test_good + 2 * d.test_defect);
  std::fflush(stdout);

  TrainOptions t;
  t.data_dir = data;
  t.out_path = model;
  t.image_size = 32;
  t.base_channels = 32;
  t.channel_mults = std::vector<int>{1, 2};
  t.res_blocks = 1;
  t.attention = std::vector<int>{};
  t.batch = 8;
  t.lr = 1e-3f;  // a toy prior: converges in a few hundred steps instead of thousands
  t.seed = a.seed;
  t.steps = a.steps > 0 ? a.steps : (a.quick ? 300 : 1000);
  t.threads = a.threads;
  std::fprintf(stderr, "2/3 training a tiny U-Net (32x32, base 32) for %lld steps on the CPU\n",
               static_cast<long long>(*t.steps));
  double last = -1e9;
  TrainResult tr = train(t, [&](const TrainProgress& p) {
    if (!p.done && p.seconds - last < 5) return;
    last = p.seconds;
    std::fprintf(stderr, "  step %lld/%lld  loss %.4f  ETA %s\n", static_cast<long long>(p.step),
                 static_cast<long long>(p.total_steps), p.loss_avg, cli::format_duration(p.eta_s).c_str());
  });
  std::printf("2/3 model: %s (%lld steps, %.0f s, final loss %.4f)\n", model.c_str(),
              static_cast<long long>(tr.final_step), tr.seconds, tr.final_loss_avg);
  std::fflush(stdout);

  auto net = load_unet(model, be);
  EvalSettings s;
  // The defects are large against 32 px, so a deep start noise (T 400) is
  // needed to wash them out; one unmasked round keeps the demo short.
  s.rounds.round1.t_start = 0;
  s.rounds.round2 = {400, 10.f};
  s.sampler.skip = 40;
  s.map.blur_sigma = 1.f;
  s.map.blur_kernel = 9;
  s.seed = a.seed;
  Dataset ds = read_dataset(data);
  const std::string panels = (fs::path(eval_dir) / "panels").string();
  EvalResult r = evaluate(*net, nullptr, ds, s, PanelOptions{panels}, cli::progress_line("demo", false));
  const std::string report =
      write_eval_report(r, s, eval_dir, cat("\"model\": ", json::quote(model), ", \"features\": null"));
  write_eval_report_html(r, report, eval_dir, panels);
  std::printf("3/3 evaluation (pixel term only):\n%s", format_eval_table(r).c_str());
  std::printf("report: %s\nhtml: %s\npanels: %s\n", (fs::path(eval_dir) / "report.json").string().c_str(),
              (fs::path(eval_dir) / "report.html").string().c_str(), panels.c_str());
  MDPS_CHECK(std::isfinite(r.overall.image_auroc) && r.overall.image_auroc > a.min_auroc,
             "demo: image AUROC ", r.overall.image_auroc, " is not above ", a.min_auroc,
             ": the trained prior does not separate the planted defects");
  std::printf("demo passed: image AUROC %.3f > %.2f\n", r.overall.image_auroc, a.min_auroc);
}

cli::Registrar reg("demo", 5, [](CLI::App& app) {
  auto a = std::make_shared<DemoArgs>();
  auto* c = app.add_subcommand("demo", "Generate a toy data set, train a tiny model on the CPU, evaluate it");
  c->add_option("--out", a->out, "working folder (data/, model.safetensors, eval/)")->capture_default_str();
  c->add_flag("--quick", a->quick, "shorter training (CI)");
  c->add_option("--steps", a->steps, "training steps (default 1000, --quick 300)");
  c->add_option("--seed", a->seed, "seed of the data, the weights and the sampler")->capture_default_str();
  cli::add_threads_option(c, a->threads);
  c->add_option("--min-auroc", a->min_auroc, "fail below this image AUROC")->capture_default_str();
  c->callback([a] { run_demo(*a); });
});

}  // namespace
}  // namespace mdps
