// Training: the loss falls on a small generated data set, a resumed run is
// bit-identical to an uninterrupted one, a SIGKILL during checkpoint writes
// leaves a loadable checkpoint, and bad input fails cleanly without output.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "engine/core/backend_registry.h"
#include "engine/model/checkpoint.h"
#include "engine/io/image.h"
#include "engine/io/safetensors.h"
#include "engine/diffusion/trainer.h"
#include "engine/model/unet.h"
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace mdps;
namespace fs = std::filesystem;

namespace {

// Smooth stripes and blobs of varying phase and colour: easy to learn, so the
// loss must fall clearly within a few hundred steps.
void write_images(const std::string& dir, int count, int size) {
  for (int n = 0; n < count; ++n) {
    Image img(size, size, 3);
    const double phase = 0.7 * n, freq = 2 * M_PI / (4 + n % 3);
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        double s = 0.5 + 0.5 * std::sin(freq * (n % 2 ? x : y) + phase);
        double dx = x - size * 0.5, dy = y - size * 0.5;
        double blob = std::exp(-(dx * dx + dy * dy) / (size * size * 0.05));
        img.at(x, y, 0) = float(255 * s);
        img.at(x, y, 1) = float(255 * (0.3 + 0.6 * blob));
        img.at(x, y, 2) = float(255 * (1 - s) * 0.8);
      }
    char name[32];
    std::snprintf(name, sizeof name, "/img%03d.png", n);
    save_png(dir + name, img);
  }
}

TrainOptions tiny(const std::string& data, const std::string& out) {
  TrainOptions o;
  o.data_dir = data;
  o.out_path = out;
  o.image_size = 16;
  o.base_channels = 32;
  o.channel_mults = std::vector<int>{1, 2};
  o.res_blocks = 1;
  o.attention = std::vector<int>{8};
  o.heads = 2;
  o.batch = 4;
  o.threads = 2;
  o.on_warning = [](const std::string&) {};
  return o;
}

double mean(const std::vector<float>& v, size_t b, size_t e) {
  return std::accumulate(v.begin() + long(b), v.begin() + long(e), 0.0) / double(e - b);
}

void check_same_weights(const std::string& a, const std::string& b) {
  auto fa = SafeTensorsFile::open(a), fb = SafeTensorsFile::open(b);
  UNet na(UNet::config_from_file(fa), cpu_backend()), nb(UNet::config_from_file(fb), cpu_backend());
  na.load(fa);
  nb.load(fb);
  int differing = 0;
  for (size_t i = 0; i < na.params().size(); ++i) {
    auto va = na.params()[i].var.value.to_vector(), vb = nb.params()[i].var.value.to_vector();
    REQUIRE(va.size() == vb.size());
    if (std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)) != 0) {
      ++differing;
      MESSAGE(na.params()[i].name << " differs");
    }
  }
  CHECK(differing == 0);
  // and the optimiser state
  for (const auto& n : fa.names())
    if (n.rfind("optim.", 0) == 0) {
      REQUIRE(fb.has(n));
      CHECK_MESSAGE(std::memcmp(fa.raw(n), fb.raw(n), fa.info(n).bytes()) == 0, n, " differs");
    }
}

std::string error_of(const TrainOptions& o) {
  try {
    train(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("the loss falls to below half within a few hundred steps") {
  std::string dir = test::temp_dir("train_data"), out = test::temp_dir("train_out") + "/m.safetensors";
  write_images(dir, 12, 16);
  TrainOptions o = tiny(dir, out);
  o.steps = 300;
  o.lr = 1e-3f;
  int calls = 0;
  TrainResult r = train(o, [&](const TrainProgress& p) {
    ++calls;
    CHECK(p.step <= p.total_steps);
  });
  REQUIRE(r.losses.size() == 300);
  CHECK(calls == 300);
  const double first = mean(r.losses, 0, 20), last = mean(r.losses, 280, 300);
  MESSAGE("mean loss: first 20 steps " << first << ", last 20 steps " << last << ", " << r.images_per_s
                                       << " images/s");
  CHECK(last < 0.5 * first);
  CHECK(std::fabs(r.final_loss_avg - last) < 1e-6 * first);

  // The checkpoint holds the model the other commands read, and the position.
  auto f = SafeTensorsFile::open(out);
  UNet net(UNet::config_from_file(f), cpu_backend());
  net.load(f);
  CHECK(net.config().image_size == 16);
  CHECK(f.metadata().at("mdps_kind") == "checkpoint");
  TrainState st = read_train_state(f);
  CHECK(st.step == 300);
  CHECK(st.rng_position == 300u * 4u);
  CHECK(st.epoch == 300 * 4 / 12);
  // The CSV has a header and one line per step.
  std::ifstream csv(r.csv_path);
  std::string line;
  int lines = 0;
  while (std::getline(csv, line)) ++lines;
  CHECK(lines == 301);
}

TEST_CASE("a resumed run is bit-identical to an uninterrupted one") {
  std::string dir = test::temp_dir("resume_data"), out = test::temp_dir("resume_out");
  write_images(dir, 7, 16);  // 7 images, batch 4: batches straddle epochs
  TrainOptions a = tiny(dir, out + "/a.safetensors");
  a.steps = 20;
  a.seed = 5;
  train(a);

  TrainOptions b = tiny(dir, out + "/b.safetensors");
  b.steps = 10;
  b.seed = 5;
  train(b);
  // Only the data and the length are given: the rest comes from the checkpoint.
  TrainOptions c;
  c.data_dir = dir;
  c.out_path = out + "/b2.safetensors";
  c.resume = out + "/b.safetensors";
  c.steps = 20;
  c.threads = 2;
  TrainResult rc = train(c);
  CHECK(rc.first_step == 10);
  CHECK(rc.losses.size() == 10);
  check_same_weights(out + "/a.safetensors", out + "/b2.safetensors");

  SUBCASE("a different seed gives different weights (the comparison can fail)") {
    TrainOptions d = tiny(dir, out + "/d.safetensors");
    d.steps = 20;
    d.seed = 6;
    train(d);
    auto fa = SafeTensorsFile::open(out + "/a.safetensors"), fd = SafeTensorsFile::open(out + "/d.safetensors");
    const std::string n = fa.names().front();
    CHECK(std::memcmp(fa.raw(n), fd.raw(n), fa.info(n).bytes()) != 0);
  }
}

TEST_CASE("SIGKILL during checkpoint writes leaves a loadable checkpoint to resume from") {
  const std::string bin = test::binary_dir() + "/mdps";
  REQUIRE_MESSAGE(fs::exists(bin), "build the mdps binary first: ", bin);
  std::string dir = test::temp_dir("kill_data"), out_dir = test::temp_dir("kill_out");
  write_images(dir, 8, 16);
  const std::string out = out_dir + "/k.safetensors";
  // Kill at several moments: every step writes a checkpoint, so a good share
  // of the kills land inside a write.
  for (int attempt = 0; attempt < 3; ++attempt) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int devnull = ::open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      std::vector<std::string> args = {bin, "train", "--data", dir, "--out", out, "--image-size", "16",
                                       "--base-channels", "32", "--channel-mult", "1,2", "--res-blocks", "1",
                                       "--attention", "8", "--heads", "2", "--batch", "4", "--steps", "100000",
                                       "--threads", "1", "--checkpoint-every", "1", "--quiet"};
      if (attempt > 0) {
        args.push_back("--resume");
        args.push_back(out);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(bin.c_str(), argv.data());
      _exit(127);
    }
    // Wait for the first checkpoint (of this attempt), then a while longer.
    auto start = std::chrono::steady_clock::now();
    auto first_mtime = fs::exists(out) ? fs::last_write_time(out) : fs::file_time_type::min();
    while ((!fs::exists(out) || fs::last_write_time(out) == first_mtime) &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(60))
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + 137 * attempt));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    REQUIRE_MESSAGE(WIFSIGNALED(status), "the child exited by itself (status ", status, ")");

    REQUIRE(fs::exists(out));
    auto f = SafeTensorsFile::open(out);  // validates the whole file
    UNet net(UNet::config_from_file(f), cpu_backend());
    net.load(f);
    TrainState st = read_train_state(f);
    CHECK(st.step >= 1);
    MESSAGE("attempt " << attempt << ": killed after step " << st.step);
  }
  // A kill inside a write leaves its temporary file beside the checkpoint.
  int torn = 0;
  for (auto& e : fs::directory_iterator(out_dir))
    if (e.path().filename().string().rfind("k.safetensors.tmp", 0) == 0) ++torn;
  MESSAGE(torn << " of 3 kills landed inside a checkpoint write");
  auto before = read_train_state(SafeTensorsFile::open(out));
  TrainOptions r;
  r.data_dir = dir;
  r.out_path = out_dir + "/resumed.safetensors";
  r.resume = out;
  r.steps = before.step + 2;
  r.threads = 2;
  TrainResult res = train(r);
  CHECK(res.first_step == before.step);
  CHECK(read_train_state(SafeTensorsFile::open(r.out_path)).step == before.step + 2);
}

TEST_CASE("bad input: a clear error and no output file") {
  std::string good = test::temp_dir("bad_good"), out_dir = test::temp_dir("bad_out");
  write_images(good, 4, 16);
  const std::string out = out_dir + "/m.safetensors";
  auto no_output = [&] {
    CHECK_FALSE(fs::exists(out));
    CHECK_FALSE(fs::exists(default_csv_path(out)));
  };

  SUBCASE("empty folder") {
    std::string empty = test::temp_dir("bad_empty");
    TrainOptions o = tiny(empty, out);
    o.steps = 2;
    std::string e = error_of(o);
    CHECK(e.find(empty) != std::string::npos);
    CHECK(e.find("no images") != std::string::npos);
    no_output();
  }
  SUBCASE("a folder of non-images") {
    std::string d = test::temp_dir("bad_txt");
    std::ofstream(d + "/notes.txt") << "hello";
    TrainOptions o = tiny(d, out);
    o.steps = 2;
    CHECK(error_of(o).find("no images") != std::string::npos);
    no_output();
  }
  SUBCASE("an unreadable image is named; --skip-bad continues") {
    std::ofstream(good + "/zz_broken.png") << "this is not a png";
    TrainOptions o = tiny(good, out);
    o.steps = 2;
    std::string e = error_of(o);
    CHECK(e.find("zz_broken.png") != std::string::npos);
    CHECK(e.find("--skip-bad") != std::string::npos);
    no_output();
    o.skip_bad = true;
    std::vector<std::string> warnings;
    o.on_warning = [&](const std::string& w) { warnings.push_back(w); };
    TrainResult r = train(o);
    CHECK(r.images == 4);
    REQUIRE(r.skipped.size() == 1);
    CHECK(r.skipped[0].find("zz_broken.png") != std::string::npos);
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0].find("zz_broken.png") != std::string::npos);
    CHECK(fs::exists(out));
  }
  SUBCASE("image size not divisible as the U-Net needs") {
    TrainOptions o = tiny(good, out);
    o.image_size = 18;
    o.channel_mults = std::vector<int>{1, 2, 2};
    o.steps = 2;
    std::string e = error_of(o);
    CHECK(e.find("not divisible by 4") != std::string::npos);
    no_output();
  }
  SUBCASE("resume with a different config") {
    std::string ck = out_dir + "/ck.safetensors";
    TrainOptions o = tiny(good, ck);
    o.steps = 2;
    train(o);
    TrainOptions r = tiny(good, out);
    r.base_channels = 64;
    r.resume = ck;
    r.steps = 4;
    std::string e = error_of(r);
    CHECK(e.find("--base-channels 64") != std::string::npos);
    CHECK(e.find(ck) != std::string::npos);
    no_output();
    TrainOptions r2 = tiny(good, out);
    r2.batch = 2;
    r2.resume = ck;
    r2.steps = 4;
    CHECK(error_of(r2).find("--batch 2") != std::string::npos);
    no_output();
    TrainOptions r3 = tiny(good, out);
    r3.resume = ck;
    r3.steps = 1;
    CHECK(error_of(r3).find("below the step") != std::string::npos);
    no_output();
  }
  SUBCASE("a plain model file cannot be resumed") {
    UNetConfig c;
    c.image_size = 16;
    c.base_channels = 32;
    c.channel_mults = {1, 2};
    c.res_blocks = 1;
    c.attention_resolutions = {8};
    c.heads = 2;
    UNet net(c, cpu_backend());
    net.init_random(1);
    std::string m = out_dir + "/plain.safetensors";
    save_model(m, net);
    TrainOptions r = tiny(good, out);
    r.resume = m;
    r.steps = 4;
    CHECK(error_of(r).find("not a training checkpoint") != std::string::npos);
    no_output();
  }
  SUBCASE("missing output folder") {
    TrainOptions o = tiny(good, out_dir + "/nope/m.safetensors");
    o.steps = 2;
    CHECK(error_of(o).find("does not exist") != std::string::npos);
  }
  SUBCASE("--precision bf16 on the CPU (bf16 there is for sampling and scoring)") {
    for (const char* device : {"cpu", "auto"}) {
      if (std::string(device) == "auto" && find_backend("cuda")) continue;
      TrainOptions o = tiny(good, out);
      o.steps = 2;
      o.device = device;
      o.precision = "bf16";
      CHECK(error_of(o).find("--precision bf16: training on the CPU runs in fp32 only") != std::string::npos);
      CHECK(cpu_backend().precision() == Precision::FP32);
      no_output();
    }
  }
}

TEST_CASE("--holdout keeps evenly spaced images out of training, and a resumed run keeps them out") {
  std::string dir = test::temp_dir("holdout_data"), out = test::temp_dir("holdout_out");
  write_images(dir, 10, 16);
  TrainOptions a = tiny(dir, out + "/a.safetensors");
  a.steps = 6;
  a.holdout = 3;
  TrainResult ra = train(a);
  // evenly_spaced(10, 3) = 0, 3, 6: img000, img003, img006.
  REQUIRE(ra.held_out.size() == 3);
  CHECK(fs::path(ra.held_out[0]).filename() == "img000.png");
  CHECK(fs::path(ra.held_out[1]).filename() == "img003.png");
  CHECK(fs::path(ra.held_out[2]).filename() == "img006.png");
  CHECK(ra.images == 7);
  CHECK(read_train_state(SafeTensorsFile::open(out + "/a.safetensors")).holdout == 3);

  // Training on the 7 kept images in a folder of their own gives the same weights:
  // the held-out ones never reached the optimiser.
  std::string kept = test::temp_dir("holdout_kept");
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name != "img000.png" && name != "img003.png" && name != "img006.png") fs::copy_file(e.path(), kept + "/" + name);
  }
  TrainOptions k = tiny(kept, out + "/k.safetensors");
  k.steps = 6;
  train(k);
  check_same_weights(out + "/a.safetensors", out + "/k.safetensors");

  // Resumed without --holdout: the checkpoint's split is used.
  TrainOptions b = tiny(dir, out + "/b.safetensors");
  b.steps = 3;
  b.holdout = 3;
  train(b);
  TrainOptions c;
  c.data_dir = dir;
  c.out_path = out + "/b2.safetensors";
  c.resume = out + "/b.safetensors";
  c.steps = 6;
  c.threads = 2;
  TrainResult rc = train(c);
  CHECK(rc.held_out == ra.held_out);
  check_same_weights(out + "/a.safetensors", out + "/b2.safetensors");

  // A different --holdout on resume, or one that leaves nothing to train on, is refused.
  TrainOptions d = c;
  d.holdout = 2;
  CHECK(error_of(d).find("--holdout 2 differs") != std::string::npos);
  TrainOptions e = tiny(dir, out + "/e.safetensors");
  e.steps = 1;
  e.holdout = 10;
  CHECK(error_of(e).find("--holdout 10 must be in 0..9") != std::string::npos);
  CHECK(!fs::exists(out + "/e.safetensors"));
}
