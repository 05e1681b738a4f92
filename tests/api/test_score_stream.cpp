// Streaming `mdps score` (tools/cmd_score.cpp, tools/score_log.h): the rows
// and pictures written batch by batch equal one all-at-once
// Detector::score_batch over the whole list (the command before streaming)
// bit for bit, under both protocols; --resume after a partial run gives the
// rows of an uninterrupted one (and refuses where the authors' protocol
// would not); --jsonl lines parse with the contract's keys; --recursive
// lists nested folders in path order; a damaged image in the middle of the
// stream fails naming it, leaving the finished batches' rows.
#include <doctest/doctest.h>
#include "include/mdps/mdps.h"
#include "engine/core/common.h"
#include "engine/core/json_mini.h"
#include "engine/eval/colormap.h"
#include "engine/io/image.h"
#include "tests/test_util.h"
#include "tests/tiny_fixtures.h"
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sys/wait.h>

using namespace mdps;
namespace fs = std::filesystem;

namespace {

// Protocol settings fast enough for the tiny model; --batch 2 so that five
// images make three batches, the last one short.
const std::string FAST = " --t-start 20 --round1-t 20 --skip 10 --batch 2 --threads 2 --image-score max --quiet ";

struct Fixture {
  std::string dir, model;
  std::vector<std::string> images;  // 5 images of different sizes, in file (= sorted) order
};

Image test_image(int w, int h, int seed) {
  Image img(w, h, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) img.at(x, y, c) = float((x * (5 + seed) + y * 3 + c * 40 + (x * y * seed) % 23) % 256);
  return img;
}

Fixture make_fixture(const std::string& tag) {
  Fixture f;
  f.dir = test::temp_dir(tag);
  f.model = test::write_tiny_model(f.dir);
  fs::create_directories(f.dir + "/imgs");
  for (int k = 0; k < 5; ++k) {
    const std::string p = f.dir + "/imgs/p" + std::to_string(k) + ".png";
    save_png(p, test_image(40 + 4 * k, 36 + 2 * k, k + 1));
    f.images.push_back(p);
  }
  return f;
}

int run(const std::string& args, std::string* output = nullptr) {
  std::string out;
  const int rc = test::run_command(test::binary_dir() + "/mdps " + args, out);
  if (output) *output = out;
  INFO(args << "\n" << out);
  return rc;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> v;
  size_t s = 0;
  for (size_t nl; (nl = text.find('\n', s)) != std::string::npos; s = nl + 1) v.push_back(text.substr(s, nl - s));
  return v;
}

std::string score_text(float v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.9g", double(v));
  return b;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// The command before streaming: every image decoded, one score_batch call.
std::vector<ScoreResult> all_at_once(const Fixture& f, const std::string& protocol, float image_t, float pixel_t) {
  DetectorOptions o;
  o.unet_path = f.model;
  o.overrides = {{"t-start", "20"}, {"round1-t", "20"}, {"skip", "10"}, {"batch", "2"},
                 {"image-score", "max"}, {"protocol", protocol}};
  o.threads = 2;
  o.image_threshold = image_t;
  o.pixel_threshold = pixel_t;
  Detector det(o);
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<ImageView> views;
  for (const auto& p : f.images) {
    ImageView v;
    bytes.push_back(load_image_rgb8(p, v.width, v.height));
    views.push_back(v);
  }
  for (size_t i = 0; i < views.size(); ++i) views[i].pixels = bytes[i].data();
  return det.score_batch(views);
}

}  // namespace

TEST_CASE("streamed rows and pictures equal one all-at-once score_batch, bit for bit, under both protocols") {
  const Fixture f = make_fixture("stream_equal");
  for (const std::string protocol : {"authors", "calibrated"}) {
    CAPTURE(protocol);
    // Thresholds inside the range of the results, so both decisions and
    // both mask values occur.
    std::vector<ScoreResult> ref = all_at_once(f, protocol, NAN, NAN);
    std::vector<float> scores, values;
    for (const auto& r : ref) {
      scores.push_back(r.image_score);
      values.insert(values.end(), r.heat_map.begin(), r.heat_map.end());
    }
    std::sort(scores.begin(), scores.end());
    std::sort(values.begin(), values.end());
    const float image_t = scores[2], pixel_t = values[values.size() * 3 / 4];
    ref = all_at_once(f, protocol, image_t, pixel_t);

    const std::string out = f.dir + "/out_" + protocol;
    REQUIRE(run("score --model " + f.model + " --images " + f.dir + "/imgs --out " + out + FAST + "--protocol " +
                protocol + " --image-threshold " + score_text(image_t) + " --pixel-threshold " +
                score_text(pixel_t) + " --jsonl " + out + "/scores.jsonl") == 0);
    const std::vector<std::string> rows = lines_of(test::read_text(out + "/scores.csv"));
    REQUIRE(rows.size() == 6);
    CHECK(rows[0] == "file,score,decision");
    int ng = 0;
    for (size_t i = 0; i < 5; ++i) {
      CAPTURE(i);
      const ScoreResult& r = ref[i];
      ng += r.anomalous;
      CHECK(rows[i + 1] == f.images[i] + "," + score_text(r.image_score) + "," + (r.anomalous ? "NG" : "OK"));
      const std::string stem = out + "/p" + std::to_string(i);
      const Image src = load_image(f.images[i]);
      const int W = src.width, H = src.height;
      // The mask: the resized map over the threshold, pixel for pixel.
      const std::vector<float> map = resize_map(r.heat_map, r.width, r.height, W, H);
      const Image mask = load_image_gray(stem + "_mask.png");
      REQUIRE((mask.width == W && mask.height == H));
      size_t wrong = 0;
      for (size_t k = 0; k < map.size(); ++k) wrong += mask.pixels[k] != (map[k] > pixel_t ? 255.f : 0.f);
      CHECK(wrong == 0);
      // The reconstruction, at the model's size.
      const Image recon = load_image(stem + "_recon.png");
      REQUIRE(recon.pixels.size() == r.reconstruction.size());
      CHECK(recon.pixels == r.reconstruction);
      // The heat map on the documented scale [0, 2 x pixel threshold].
      const std::string want = f.dir + "/want_heatmap.png";
      save_png(want, colormap_jet(map.data(), W, H, 0.f, 2.f * pixel_t));
      CHECK(load_image(stem + "_heatmap.png").pixels == load_image(want).pixels);
    }
    CHECK(ng > 0);
    CHECK(ng < 5);
  }
}

TEST_CASE("--jsonl: one object a line with exactly file, score, decision, map") {
  const Fixture f = make_fixture("stream_jsonl");
  const std::string out = f.dir + "/out", jl = f.dir + "/logs/run.jsonl";
  std::string printed;
  REQUIRE(run("score --model " + f.model + " --images " + f.dir + "/imgs --out " + out + FAST + "--jsonl " + jl,
              &printed) == 0);
  const std::vector<std::string> rows = lines_of(test::read_text(out + "/scores.csv"));
  const std::vector<std::string> lines = lines_of(test::read_text(jl));
  REQUIRE(rows.size() == 6);
  CHECK(rows[0] == "file,score");
  REQUIRE(lines.size() == 5);
  for (size_t i = 0; i < 5; ++i) {
    CAPTURE(lines[i]);
    const json::Value v = json::parse(lines[i], "jsonl line");
    REQUIRE(v.kind == json::Kind::Object);
    std::vector<std::string> keys;
    for (const auto& [k, x] : v.members) keys.push_back(k);
    CHECK(keys == std::vector<std::string>{"file", "score", "decision", "map"});
    CHECK(v.find("file")->str == f.images[i]);
    REQUIRE(v.find("score")->kind == json::Kind::Number);
    CHECK(rows[i + 1] == f.images[i] + "," + score_text(float(v.find("score")->number)));
    CHECK(v.find("decision")->kind == json::Kind::Null);  // no image threshold
    REQUIRE(v.find("map")->kind == json::Kind::String);
    CHECK(v.find("map")->str == out + "/p" + std::to_string(i) + "_heatmap.png");
    CHECK(fs::is_regular_file(v.find("map")->str));
  }
  // With a threshold the decision is the CSV's; --no-images: map null, no pictures.
  const std::string out2 = f.dir + "/out2";
  REQUIRE(run("score --model " + f.model + " --images " + f.dir + "/imgs --out " + out2 + FAST +
              "--image-threshold 0 --no-images --jsonl " + out2 + "/s.jsonl") == 0);
  const std::vector<std::string> rows2 = lines_of(test::read_text(out2 + "/scores.csv"));
  const std::vector<std::string> lines2 = lines_of(test::read_text(out2 + "/s.jsonl"));
  REQUIRE(rows2.size() == 6);
  REQUIRE(lines2.size() == 5);
  for (size_t i = 0; i < 5; ++i) {
    const json::Value v = json::parse(lines2[i], "jsonl line");
    REQUIRE(v.find("decision")->kind == json::Kind::String);
    CHECK(rows2[i + 1].substr(rows2[i + 1].rfind(',') + 1) == v.find("decision")->str);
    CHECK(v.find("map")->kind == json::Kind::Null);
  }
  for (const auto& e : fs::directory_iterator(out2)) CHECK(e.path().extension() != ".png");
}

TEST_CASE("--resume after a partial run gives the rows of an uninterrupted run") {
  const Fixture f = make_fixture("stream_resume");
  const std::string base = "score --model " + f.model + " --images " + f.dir + "/imgs" + FAST;
  for (const std::string protocol : {"authors", "calibrated"}) {
    CAPTURE(protocol);
    const std::string out = f.dir + "/out_" + protocol, jl = out + "/s.jsonl";
    const std::string args = base + "--protocol " + protocol + " --out " + out + " --jsonl " + jl;
    REQUIRE(run(args) == 0);
    const std::string full_csv = test::read_text(out + "/scores.csv"), full_jl = test::read_text(jl);
    const std::vector<std::string> rows = lines_of(full_csv), lines = lines_of(full_jl);
    REQUIRE(rows.size() == 6);
    const std::string record = test::read_text(out + "/score_run.json");  // tools/score_run.h

    // Killed after the first batch, within the second's CSV write, before
    // its JSON lines: a torn CSV record and a JSONL log one batch behind.
    fs::remove_all(out);
    fs::create_directories(out);
    write_text(out + "/score_run.json", record);
    write_text(out + "/scores.csv", rows[0] + "\n" + rows[1] + "\n" + rows[2] + "\n" + rows[3].substr(0, 9));
    write_text(jl, lines[0] + "\n");
    std::string printed;
    REQUIRE(run(args + " --resume", &printed) == 0);
    CHECK(printed.find("resume: 2 of 5 images already") != std::string::npos);
    CHECK(test::read_text(out + "/scores.csv") == full_csv);
    CHECK(test::read_text(jl) == full_jl);
    CHECK(fs::is_regular_file(out + "/p4_heatmap.png"));
    // Resuming a finished run scores nothing and changes nothing.
    REQUIRE(run(args + " --resume", &printed) == 0);
    CHECK(printed.find("5 of 5 images already in") != std::string::npos);
    CHECK(test::read_text(out + "/scores.csv") == full_csv);
    CHECK(test::read_text(jl) == full_jl);
    // Without --resume an existing output is replaced, not appended to.
    REQUIRE(run(args) == 0);
    CHECK(test::read_text(out + "/scores.csv") == full_csv);
    CHECK(test::read_text(jl) == full_jl);

    // Rows that are not the first whole batches (images 0, 1, 3 done).
    write_text(out + "/scores.csv", rows[0] + "\n" + rows[1] + "\n" + rows[2] + "\n" + rows[4] + "\n");
    fs::remove(jl);
    const int rc = run(args + " --resume", &printed);
    if (protocol == "authors") {
      // The authors' protocol couples a batch: scoring images 2 and 4
      // together would not give their rows; refused, the files untouched.
      CHECK(rc == 1);
      CHECK(printed.find("--resume") != std::string::npos);
      CHECK(printed.find("--protocol calibrated") != std::string::npos);
      CHECK(lines_of(test::read_text(out + "/scores.csv")).size() == 4);
    } else {
      // Each image's score is its own: the missing ones are appended, and
      // every row equals the uninterrupted run's, in the order scored.
      REQUIRE(rc == 0);
      const std::vector<std::string> now = lines_of(test::read_text(out + "/scores.csv"));
      CHECK(now == std::vector<std::string>{rows[0], rows[1], rows[2], rows[4], rows[3], rows[5]});
      // The JSON Lines log, missing, is rebuilt from the CSV's rows first.
      const std::vector<std::string> jnow = lines_of(test::read_text(jl));
      CHECK(jnow == std::vector<std::string>{lines[0], lines[1], lines[3], lines[2], lines[4]});
    }
  }
  // A CSV of other columns (an image threshold now, none before) is refused.
  const std::string out = f.dir + "/out_calibrated";
  std::string printed;
  CHECK(run(base + "--protocol calibrated --out " + out + " --image-threshold 0.5 --resume", &printed) == 1);
  CHECK(printed.find("file,score,decision") != std::string::npos);
}

TEST_CASE("--resume refuses rows scored by another detector, naming what changed") {
  const Fixture f = make_fixture("stream_resume_identity");
  const std::string base = "score --model " + f.model + " --images " + f.dir + "/imgs" + FAST;
  const std::string out = f.dir + "/out";
  REQUIRE(run(base + "--protocol calibrated --out " + out) == 0);
  const std::string full_csv = test::read_text(out + "/scores.csv");
  const std::string record = test::read_text(out + "/score_run.json");
  {
    const json::Value r = json::parse(record, "score_run.json");
    for (const char* key : {"engine_version", "model", "model_digest", "features", "features_digest",
                            "image_threshold", "pixel_threshold", "settings"})
      CHECK_MESSAGE(r.find(key) != nullptr, key);
    CHECK(r.find("model")->str == f.model);
    CHECK(r.find("model_digest")->str.size() == 16);
    CHECK(r.find("settings")->find("protocol")->str == "calibrated");
    CHECK(r.find("settings")->find("t_start")->number == 20);
    // Under the calibrated protocol --batch changes speed only: not recorded.
    CHECK(r.find("settings")->find("batch") == nullptr);
  }
  const std::vector<std::string> rows = lines_of(full_csv);
  auto partial = [&] { write_text(out + "/scores.csv", rows[0] + "\n" + rows[1] + "\n"); };
  std::string printed;

  // Another setting: refused, naming it; the rows and the record untouched.
  partial();
  CHECK(run(base + "--protocol calibrated --rho 3 --out " + out + " --resume", &printed) == 1);
  CHECK(printed.find("setting rho") != std::string::npos);
  CHECK(printed.find("score_run.json") != std::string::npos);
  CHECK(lines_of(test::read_text(out + "/scores.csv")).size() == 2);
  CHECK(test::read_text(out + "/score_run.json") == record);

  // Another model file (other weights at the same path, or another path).
  const std::string other = f.dir + "/other.safetensors";
  fs::create_directories(f.dir + "/m2");
  fs::copy_file(test::write_tiny_model(f.dir + "/m2", test::tiny_unet_config(), 8), other);
  const std::string base_other = "score --model " + other + " --images " + f.dir + "/imgs" + FAST;
  CHECK(run(base_other + "--protocol calibrated --out " + out + " --resume", &printed) == 1);
  CHECK(printed.find("model_digest") != std::string::npos);
  CHECK(printed.find(other) != std::string::npos);

  // Another --batch under the calibrated protocol: the same detector; the
  // resumed rows equal the uninterrupted run's.
  std::string fast1 = FAST;
  fast1.replace(fast1.find("--batch 2"), 9, "--batch 1");
  REQUIRE(run("score --model " + f.model + " --images " + f.dir + "/imgs" + fast1 + "--protocol calibrated --out " +
                  out + " --resume",
              &printed) == 0);
  CHECK(test::read_text(out + "/scores.csv") == full_csv);
  CHECK(test::read_text(out + "/score_run.json") == record);

  // Rows without a record (an older mdps): carried on with a warning, and the record written.
  partial();
  fs::remove(out + "/score_run.json");
  REQUIRE(run(base + "--protocol calibrated --out " + out + " --resume", &printed) == 0);
  CHECK(printed.find("cannot check") != std::string::npos);
  CHECK(test::read_text(out + "/scores.csv") == full_csv);
  CHECK(test::read_text(out + "/score_run.json") == record);
}

TEST_CASE("--recursive: nested folders in path order, pictures in the same subfolders") {
  const Fixture f = make_fixture("stream_recursive");
  const std::string imgs = f.dir + "/imgs";
  fs::create_directories(imgs + "/b/a");
  fs::create_directories(imgs + "/b-x");
  fs::create_directories(imgs + "/.cache");
  save_png(imgs + "/b/p0.png", test_image(32, 32, 7));  // the same stem as imgs/p0.png
  save_png(imgs + "/b/a/q.png", test_image(32, 32, 8));
  save_png(imgs + "/b-x/r.png", test_image(32, 32, 9));
  save_png(imgs + "/.cache/s.png", test_image(32, 32, 10));
  const std::string out = f.dir + "/out";
  REQUIRE(run("score --model " + f.model + " --images " + imgs + " --out " + out + FAST + "--recursive") == 0);
  std::vector<std::string> files;
  for (const auto& row : lines_of(test::read_text(out + "/scores.csv"))) files.push_back(row.substr(0, row.find(',')));
  CHECK(files == std::vector<std::string>{"file", imgs + "/b/a/q.png", imgs + "/b/p0.png", imgs + "/b-x/r.png",
                                          imgs + "/p0.png", imgs + "/p1.png", imgs + "/p2.png", imgs + "/p3.png",
                                          imgs + "/p4.png"});
  for (const char* pic : {"/b/a/q_heatmap.png", "/b/p0_heatmap.png", "/b-x/r_overlay.png", "/p0_recon.png"})
    CHECK_MESSAGE(fs::is_regular_file(out + pic), pic);
  CHECK(!fs::exists(out + "/.cache"));
  // Without --recursive only the folder's own images.
  const std::string flat = f.dir + "/flat";
  REQUIRE(run("score --model " + f.model + " --images " + imgs + " --out " + flat + FAST + "--no-images") == 0);
  CHECK(lines_of(test::read_text(flat + "/scores.csv")).size() == 6);
}

TEST_CASE("a damaged image in the middle of the stream: the error names it, finished batches keep their rows") {
  const Fixture f = make_fixture("stream_damaged");
  // p2.png cut short: the second batch fails to decode.
  const std::string bytes = test::read_text(f.images[2]);
  write_text(f.images[2], bytes.substr(0, bytes.size() / 2));
  const std::string out = f.dir + "/out";
  const std::string args = "score --model " + f.model + " --images " + f.dir + "/imgs --out " + out + FAST;
  std::string printed;
  CHECK(run(args, &printed) == 1);
  CHECK(printed.find("p2.png") != std::string::npos);
  const std::vector<std::string> rows = lines_of(test::read_text(out + "/scores.csv"));
  REQUIRE(rows.size() == 3);
  CHECK(rows[1].rfind(f.images[0] + ",", 0) == 0);
  CHECK(rows[2].rfind(f.images[1] + ",", 0) == 0);
  CHECK(!fs::exists(out + "/p2_heatmap.png"));
  // Repaired, --resume finishes the list with the rows of a clean run.
  write_text(f.images[2], bytes);
  REQUIRE(run(args + "--resume") == 0);
  const std::string resumed = test::read_text(out + "/scores.csv");
  REQUIRE(run(args) == 0);
  CHECK(lines_of(resumed).size() == 6);
  CHECK(resumed == test::read_text(out + "/scores.csv"));
}

TEST_CASE("the heat map's scale: --heat-range, else the image's own range; never other images'") {
  const Fixture f = make_fixture("stream_heat");
  const std::vector<ScoreResult> ref = all_at_once(f, "calibrated", NAN, NAN);
  const std::string base = "score --model " + f.model + " --protocol calibrated --out " + f.dir;
  for (const std::string range : {"", "0.25,3"}) {
    CAPTURE(range);
    const std::string out = f.dir + "/out" + range;
    REQUIRE(run(base + "/out" + range + " --images " + f.dir + "/imgs" + FAST +
                (range.empty() ? "" : "--heat-range " + range)) == 0);
    for (size_t i = 0; i < ref.size(); ++i) {
      const Image src = load_image(f.images[i]);
      const std::vector<float> map = resize_map(ref[i].heat_map, ref[i].width, ref[i].height, src.width, src.height);
      auto [lo, hi] = std::minmax_element(map.begin(), map.end());
      // The own range is the map's at the model's size (the resize stays within it).
      auto [mlo, mhi] = std::minmax_element(ref[i].heat_map.begin(), ref[i].heat_map.end());
      CHECK(*lo >= *mlo);
      CHECK(*hi <= *mhi);
      const std::string want = f.dir + "/want.png";
      save_png(want, range.empty() ? colormap_jet(map.data(), src.width, src.height, *mlo, *mhi)
                                   : colormap_jet(map.data(), src.width, src.height, 0.25f, 3.f));
      CHECK(load_image(out + "/p" + std::to_string(i) + "_heatmap.png").pixels == load_image(want).pixels);
    }
  }
  std::string printed;
  CHECK(run(base + "/bad --images " + f.images[0] + FAST + "--heat-range 2,1", &printed) == 2);
  CHECK(printed.find("--heat-range") != std::string::npos);
  CHECK(!fs::exists(f.dir + "/bad"));
}
