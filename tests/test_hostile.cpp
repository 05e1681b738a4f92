// The hostile-input suite (issue 19): a table of cases a careless or hostile
// user would try, each run against the built `mdps` binary (or through the C
// interface, in process), with fixtures generated into a temporary folder.
//
// Every case states the exit status it must end with (0 success, 1 runtime
// error, 2 usage error), words the message must contain (the option or file at
// fault), and the files that must come out intact: inputs byte for byte, no
// output that should not exist, no temporary file left anywhere. A case that
// runs longer than its time limit is a hang.
//
// The suite prints one line per failing case and a closing tally in the
// issue's terms: cases, clear errors (and successes), crashes, hangs, silent
// wrong results, data lost, wrong exit code or message. MDPS_HOSTILE_BIN runs
// the command-line cases against another binary (e.g. an older build, to
// count what it got wrong); MDPS_HOSTILE_REPORT=1 prints every case.
#include <doctest/doctest.h>
// The case table leaves trailing fields at their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include "engine/io/image.h"
#include "engine/io/safetensors.h"
#include "include/mdps/mdps_c.h"
#include "tests/test_util.h"
#include "tests/tiny_fixtures.h"
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stb_image_write.h>
#include <sys/resource.h>
#include <zlib.h>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

namespace fs = std::filesystem;
using namespace mdps;

#if defined(__SANITIZE_ADDRESS__)
#define HOSTILE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOSTILE_ASAN 1
#endif
#endif
#ifndef HOSTILE_ASAN
#define HOSTILE_ASAN 0
#endif

namespace {

// ---- files ----------------------------------------------------------------------

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}
void put32be(std::string& s, uint32_t v) {
  for (int k = 24; k >= 0; k -= 8) s += char((v >> k) & 0xff);
}
std::string png_chunk(const std::string& type, const std::string& data) {
  std::string c;
  put32be(c, uint32_t(data.size()));
  std::string body = type + data;
  c += body;
  put32be(c, uint32_t(crc32(0, reinterpret_cast<const Bytef*>(body.data()), uInt(body.size()))));
  return c;
}
// An 8-bit gray PNG of w x h zero pixels, compressed row by row (a few
// hundred KB for 12000 x 12000: a decompression bomb).
std::string zero_png(uint32_t w, uint32_t h) {
  z_stream z{};
  REQUIRE(deflateInit(&z, 9) == Z_OK);
  std::string row(size_t(w) + 1, '\0'), out;
  std::vector<unsigned char> buf(1 << 16);
  for (uint32_t y = 0; y < h; ++y) {
    z.next_in = reinterpret_cast<Bytef*>(row.data());
    z.avail_in = uInt(row.size());
    const int flush = y + 1 == h ? Z_FINISH : Z_NO_FLUSH;
    do {
      z.next_out = buf.data();
      z.avail_out = uInt(buf.size());
      deflate(&z, flush);
      out.append(reinterpret_cast<char*>(buf.data()), buf.size() - z.avail_out);
    } while (z.avail_out == 0);
  }
  deflateEnd(&z);
  std::string ihdr;
  put32be(ihdr, w);
  put32be(ihdr, h);
  ihdr += std::string("\x08\x00\x00\x00\x00", 5);
  return std::string("\x89PNG\r\n\x1a\n", 8) + png_chunk("IHDR", ihdr) + png_chunk("IDAT", out) +
         png_chunk("IEND", "");
}
// Offset of the first IDAT chunk's data in a PNG.
size_t idat_data(const std::string& png) {
  const size_t p = png.find("IDAT");
  REQUIRE(p != std::string::npos);
  return p + 4;
}

// A copy of `model` with every float of tensor `name` (all tensors when
// empty) set by `f`.
void rewrite_model(const std::string& model, const std::string& out, const std::function<float(float)>& f,
                   const std::string& name = "") {
  SafeTensorsFile in = SafeTensorsFile::open(model);
  SafeTensorsWriter w;
  for (const auto& [k, v] : in.metadata()) w.set_metadata(k, v);
  for (const auto& n : in.names()) {
    std::vector<float> v = in.read_f32_vector(n);
    if (name.empty() || n == name)
      for (float& x : v) x = f(x);
    w.add_f32(n, in.info(n).shape, v);
  }
  w.write(out);
}

// A model file whose metadata claims `config_json` (and one small tensor).
void claim_model(const std::string& out, const std::string& config_json) {
  SafeTensorsWriter w;
  w.set_metadata("unet_config", config_json);
  w.add_f32("out.2.bias", {3}, {0.f, 0.f, 0.f});
  w.write(out);
}

std::vector<std::string> temp_files_under(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string n = it->path().filename().string();
    if (n.find(".tmp") != std::string::npos && !it->is_directory()) out.push_back(it->path().string());
  }
  return out;
}

// ---- the fixtures ----------------------------------------------------------------

struct Fixtures {
  std::string dir, bin;
  std::string features;  // a ResNet-18 file when the shared weights are there, else ""
};

Fixtures& fixtures() {
  static Fixtures fx = [] {
    Fixtures f;
    f.dir = test::temp_dir("hostile_fx");
    const char* env = std::getenv("MDPS_HOSTILE_BIN");
    f.bin = env && *env ? env : test::binary_dir() + "/mdps";
    const std::string d = f.dir;
    const std::string model = test::write_tiny_model(d);
    const std::string cat = test::make_tiny_category(d);
    // A flat copy of one test image, a mask of its size and one of another.
    std::string first;
    for (auto& e : fs::directory_iterator(cat + "/test/good")) {
      if (first.empty() || e.path().string() < first) first = e.path().string();
    }
    fs::copy_file(first, d + "/img.png");
    Image img = load_image(d + "/img.png");
    Image mask(img.width, img.height, 1, 0.f);
    for (int y = 4; y < 12; ++y)
      for (int x = 4; x < 12; ++x) mask.at(x, y) = 255.f;
    save_png(d + "/mask.png", mask);
    save_png(d + "/mask16.png", resize_nearest(mask, 16, 16));
    save_png(d + "/img64.png", resize_bilinear(img, 64, 64));
    fs::create_directories(d + "/imgs");
    fs::copy_file(d + "/img.png", d + "/imgs/a.png");
    fs::copy_file(d + "/img.png", d + "/imgs/b.png");
    fs::copy_file(d + "/img.png", d + "/odd,na\"me.png");
    fs::create_directories(d + "/normal");
    for (const char* n : {"n1.png", "n2.png", "n3.png"}) fs::copy_file(d + "/img.png", d + "/normal/" + n);

    // Models: non-finite weights, finite weights too large for float
    // arithmetic, absurd metadata, a damaged file.
    rewrite_model(model, d + "/nan_model.safetensors", [](float) { return std::nanf(""); });
    rewrite_model(model, d + "/inf_model.safetensors", [](float) { return INFINITY; }, "out.2.bias");
    rewrite_model(model, d + "/huge_model.safetensors", [](float x) { return x * 1e36f; });
    claim_model(d + "/res100000.safetensors",
                "{\"img_size\": 32, \"base_channels\": 32, \"n_heads\": 4, \"in_channels\": 3, \"num_res_blocks\": "
                "100000, \"attention_resolutions\": \"\", \"channel_mults\": \"1,2\", \"dropout\": 0}");
    claim_model(d + "/img2e30.safetensors",
                "{\"img_size\": 1073741824, \"base_channels\": 32, \"n_heads\": 4, \"in_channels\": 3, "
                "\"num_res_blocks\": 1, \"attention_resolutions\": \"\", \"channel_mults\": \"1,2\", \"dropout\": 0}");
    {
      std::string bytes = read_all(model);
      bytes.resize(bytes.size() / 2);
      write_all(d + "/cut_model.safetensors", bytes);
    }
    if (!HOSTILE_ASAN) {
      // One level at 4096 x 4096: small weights, huge activations (out-of-memory cases).
      UNetConfig c = test::tiny_unet_config();
      c.image_size = 4096;
      c.channel_mults = {1};
      const std::string big = test::temp_dir("hostile_big");
      fs::copy_file(test::write_tiny_model(big, c), d + "/big4096.safetensors");
    }
    const std::string shared = test::shared_dir() + "/weights/resnet18_imagenet_l1-l3.safetensors";
    if (fs::exists(shared)) {
      f.features = shared;
      rewrite_model(shared, d + "/nan_features.safetensors", [](float) { return std::nanf(""); },
                    "layer1.0.conv1.weight");
    }

    // Images: damaged, truncated, bombs, other formats under a .png name, no regular file.
    const std::string png = read_all(d + "/img.png");
    {
      std::string bad = png;
      const size_t p = idat_data(bad) + 10;
      bad[p] = char(bad[p] ^ 0x5a);  // compressed data changed, CRC left as it was
      write_all(d + "/bad_idat.png", bad);
      std::string crc = png;
      const size_t q = idat_data(crc) - 8;  // the IDAT length field
      const uint32_t len = (uint32_t(uint8_t(crc[q])) << 24) | (uint32_t(uint8_t(crc[q + 1])) << 16) |
                           (uint32_t(uint8_t(crc[q + 2])) << 8) | uint32_t(uint8_t(crc[q + 3]));
      const size_t c = q + 8 + len;  // its CRC
      crc[c] = char(crc[c] ^ 0xff);
      write_all(d + "/bad_crc.png", crc);
      write_all(d + "/truncated.png", png.substr(0, png.size() / 2));
    }
    write_all(d + "/bomb.png", zero_png(12000, 12000));
    write_all(d + "/gif.png", std::string("GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00"
                                          "\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;",
                                          43));
    write_all(d + "/pnm.png", std::string("P6\n2 2\n255\n") + std::string(12, '\x80'));
    write_all(d + "/hdr.png", std::string("#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 1\n") +
                                  std::string("\x80\x80\x80\x80", 4));
    {
      std::string tga(18, '\0');
      tga[2] = 2;
      tga[12] = 2;
      tga[14] = 2;
      tga[16] = 24;
      write_all(d + "/tga.png", tga + std::string(12, '\x40'));
    }
    write_all(d + "/text.png", "this is not an image\n");
    {
      int w = img.width, h = img.height;
      std::vector<unsigned char> px(img.pixels.begin(), img.pixels.end());
      REQUIRE(stbi_write_bmp((d + "/img.bmp").c_str(), w, h, 3, px.data()));
      REQUIRE(stbi_write_jpg((d + "/img.jpg").c_str(), w, h, 3, px.data(), 90));
      const std::string jpg = read_all(d + "/img.jpg");
      write_all(d + "/cut.jpg", jpg.substr(0, jpg.size() * 2 / 3));
    }
    write_all(d + "/empty.png", "");
    REQUIRE(::mkfifo((d + "/fifo.png").c_str(), 0644) == 0);
    REQUIRE(::mkfifo((d + "/fifo.safetensors").c_str(), 0644) == 0);
    fs::create_directories(d + "/folder.png");
    fs::create_symlink("/dev/zero", d + "/zero.png");
    fs::create_directories(d + "/fifo_data");
    fs::copy_file(d + "/img.png", d + "/fifo_data/a.png");
    REQUIRE(::mkfifo((d + "/fifo_data/b.png").c_str(), 0644) == 0);
    fs::copy(test::source_dir() + "/tests/data/convert/dtypes.pt", d + "/dtypes.pt");
    return f;
  }();
  return fx;
}

// ---- running a case ----------------------------------------------------------------

struct Run {
  int rc = -1;
  bool hung = false;
  std::string out, err;
};

// `command` runs under bash in `dir`; {mdps} and {fx} are replaced.
std::string expand(std::string s, const Fixtures& fx) {
  for (auto [key, val] : {std::pair<std::string, std::string>{"{mdps}", fx.bin}, {"{fx}", fx.dir}})
    for (size_t p; (p = s.find(key)) != std::string::npos;) s.replace(p, key.size(), val);
  return s;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

Run run_shell(const std::string& dir, const std::string& command, int timeout_s) {
  const std::string script = "cd " + shell_quote(dir) + " && " + command;
  const std::string cmd = "timeout -k 5 " + std::to_string(timeout_s) + " bash -c " + shell_quote(script) + " >" +
                          shell_quote(dir + "/.stdout") + " 2>" + shell_quote(dir + "/.stderr") + " </dev/null";
  const int st = std::system(cmd.c_str());
  Run r;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.hung = r.rc == 124 || r.rc == 137;
  r.out = read_all(dir + "/.stdout");
  r.err = read_all(dir + "/.stderr");
  fs::remove(dir + "/.stdout");
  fs::remove(dir + "/.stderr");
  return r;
}

enum class Verdict { Ok, Clear, Crash, Hang, Silent, DataLost, Unclear };
const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Ok: return "ok";
    case Verdict::Clear: return "clear error";
    case Verdict::Crash: return "crash";
    case Verdict::Hang: return "hang";
    case Verdict::Silent: return "silent wrong result";
    case Verdict::DataLost: return "data lost";
    case Verdict::Unclear: return "wrong exit code or message";
  }
  return "?";
}

struct Case {
  std::string name;
  std::string setup;    // bash, run in the case folder first (may be empty)
  std::string command;  // bash, run in the case folder
  int expect = 0;       // exit status
  std::vector<std::string> words;  // each must appear in stderr (rc != 0) or stdout (rc == 0)
  std::vector<std::string> keep;   // files (relative to the case folder or {fx}) that must stay byte for byte
  std::vector<std::string> absent;  // files that must not exist afterwards
  // Further checks on the case folder; returns "" or what is wrong (a data loss).
  std::function<std::string(const std::string& dir, const Run&)> check;
  int timeout = 60;
};

struct Tally {
  std::map<Verdict, int> counts;
  int cases = 0;
  std::vector<std::string> lines;
  void add(const std::string& name, Verdict v, const std::string& why) {
    ++cases;
    ++counts[v];
    if (v != Verdict::Ok && v != Verdict::Clear) lines.push_back(name + ": " + verdict_name(v) + ": " + why);
    else if (std::getenv("MDPS_HOSTILE_REPORT")) lines.push_back(name + ": " + verdict_name(v));
  }
  std::string summary(const std::string& what) const {
    auto n = [&](Verdict v) {
      auto it = counts.find(v);
      return it == counts.end() ? 0 : it->second;
    };
    return cat(what, ": ", cases, " cases: ", n(Verdict::Clear), " clear errors, ", n(Verdict::Ok),
               " correct successes, ", n(Verdict::Crash), " crashes, ", n(Verdict::Hang), " hangs, ",
               n(Verdict::Silent), " silent wrong results, ", n(Verdict::DataLost), " data lost, ",
               n(Verdict::Unclear), " wrong exit code or message");
  }
};

Verdict judge(const Case& c, const std::string& dir, const Fixtures& fx, const std::map<std::string, std::string>& before,
              const Run& r, std::string& why) {
  auto path_of = [&](const std::string& p) {
    const std::string e = expand(p, fx);
    return e.empty() || e[0] == '/' ? e : dir + "/" + e;
  };
  // Data first: a lost input or a corrupt output is the worst outcome.
  for (const auto& [p, bytes] : before) {
    std::error_code ec;
    if (!fs::exists(p, ec) || read_all(p) != bytes) {
      why = p + " was changed or removed";
      return Verdict::DataLost;
    }
  }
  // A damaged output (a truncated PNG, an unquoted CSV) is data lost, even
  // after an exit status of 0.
  if (c.check) {
    why = c.check(dir, r);
    if (!why.empty()) return Verdict::DataLost;
  }
  // An output that should not exist: after a failure it is a partial or
  // corrupt file (data lost); after a wrong success, the success is the fault.
  for (const auto& a : c.absent)
    if (fs::exists(path_of(a))) {
      why = path_of(a) + " exists (a partial or unwanted output)";
      if (r.rc == 0 && c.expect != 0) {
        why = "exit 0, expected " + std::to_string(c.expect) + "; " + why;
        return Verdict::Silent;
      }
      return Verdict::DataLost;
    }
  for (const std::string& root : {dir, fx.dir}) {
    auto tmp = temp_files_under(root);
    if (!tmp.empty()) {
      why = "temporary file left: " + tmp.front();
      for (auto& t : tmp) fs::remove(t);
      return Verdict::DataLost;
    }
  }
  if (r.hung) {
    why = "no exit within " + std::to_string(c.timeout) + " s";
    return Verdict::Hang;
  }
  const std::string msg = r.rc == 0 ? r.out : r.err;
  if (r.rc >= 128 || r.err.find("Sanitizer") != std::string::npos || r.err.find("runtime error:") != std::string::npos) {
    why = "exit " + std::to_string(r.rc) + ": " + r.err.substr(0, 300);
    return Verdict::Crash;
  }
  if (c.expect != 0 && r.rc == 0) {
    why = "exit 0, expected " + std::to_string(c.expect) + "; stdout: " + r.out.substr(0, 200);
    return Verdict::Silent;
  }
  if (r.rc != c.expect) {
    why = "exit " + std::to_string(r.rc) + ", expected " + std::to_string(c.expect) + "; stderr: " + r.err.substr(0, 300);
    return Verdict::Unclear;
  }
  if (c.expect != 0 && r.err.rfind("mdps: error: ", 0) == std::string::npos &&
      r.err.find("\nmdps: error: ") == std::string::npos) {
    why = "no 'mdps: error:' line; stderr: " + r.err.substr(0, 300);
    return Verdict::Unclear;
  }
  for (const auto& w : c.words)
    if (msg.find(expand(w, fx)) == std::string::npos) {
      why = "the message does not contain '" + expand(w, fx) + "': " + msg.substr(0, 400);
      return Verdict::Unclear;
    }
  return c.expect == 0 ? Verdict::Ok : Verdict::Clear;
}

Tally run_cases(const std::vector<Case>& cases) {
  Fixtures& fx = fixtures();
  Tally t;
  const std::string root = test::temp_dir("hostile_cases");
  int i = 0;
  for (const Case& c : cases) {
    const std::string dir = root + "/" + std::to_string(i++);
    fs::create_directories(dir);
    if (!c.setup.empty()) {
      Run s = run_shell(dir, expand(c.setup, fx), 300);
      if (s.rc != 0) {
        t.add(c.name, Verdict::Unclear, "setup failed: " + s.err.substr(0, 300));
        continue;
      }
    }
    std::map<std::string, std::string> before;
    for (const auto& k : c.keep) {
      std::string p = expand(k, fx);
      if (p[0] != '/') p = dir + "/" + p;
      REQUIRE_MESSAGE(fs::is_regular_file(p), c.name, ": the file to keep is missing: ", p);
      before[p] = read_all(p);
    }
    const Run r = run_shell(dir, expand(c.command, fx), c.timeout);
    std::string why;
    const Verdict v = judge(c, dir, fx, before, r, why);
    t.add(c.name, v, why);
  }
  return t;
}

// ---- the command-line cases ----------------------------------------------------------

// Fast protocol settings for the tiny model.
const std::string F = " --round1-t 0 --t-start 20 --skip 10 --threads 1 ";
const std::string M = "{fx}/model.safetensors";
const std::string TRAIN = " --image-size 32 --base-channels 32 --channel-mult 1,2 --res-blocks 1 --attention 8 "
                          "--batch 2 --threads 1 --quiet ";

std::string no_partial_pngs(const std::string& dir, const Run&) {
  std::error_code ec;
  for (auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (e.path().extension() != ".png") continue;
    try {
      load_image(e.path().string());
    } catch (const std::exception& ex) {
      return "a damaged PNG under its final name: " + e.path().string() + " (" + ex.what() + ")";
    }
  }
  return "";
}

std::vector<Case> cli_cases() {
  std::vector<Case> v;
  auto add = [&](Case c) { v.push_back(std::move(c)); };

  // ---- wrong verdicts: non-finite weights or maps are errors, never decisions
  add({"score: NaN weights", "", "{mdps} score --model {fx}/nan_model.safetensors --images {fx}/img.png --out o" + F +
      "--image-threshold 0.5", 1, {"nan_model.safetensors", "non-finite"}, {"{fx}/nan_model.safetensors"},
      {"o/scores.csv", "o/img_heatmap.png"}});
  add({"score: an infinite bias", "", "{mdps} score --model {fx}/inf_model.safetensors --images {fx}/img.png --out o" +
      F, 1, {"inf_model.safetensors", "out.2.bias"}, {}, {"o/scores.csv"}});
  add({"score: finite weights, non-finite maps", "", "{mdps} score --model {fx}/huge_model.safetensors --images "
      "{fx}/img.png --out o" + F + "--image-threshold 0.5", 1, {"not finite"}, {}, {"o/scores.csv"}});
  add({"eval: NaN weights", "", "{mdps} eval --model {fx}/nan_model.safetensors --dataset {fx}/cat --out o --quiet" + F,
      1, {"nan_model.safetensors", "non-finite"}, {}, {"o/report.json"}});
  add({"eval: non-finite maps", "", "{mdps} eval --model {fx}/huge_model.safetensors --dataset {fx}/cat --out o "
      "--quiet --no-panels" + F, 1, {"not finite"}, {}, {"o/report.json", "o/images.csv"}});
  add({"bundle: NaN weights", "", "{mdps} bundle --model {fx}/nan_model.safetensors --out b.safetensors", 1,
      {"nan_model.safetensors", "non-finite"}, {}, {"b.safetensors"}});
  add({"calibrate: NaN weights", "", "{mdps} calibrate --model {fx}/nan_model.safetensors --normal {fx}/normal --out "
      "b.safetensors --quiet" + F, 1, {"nan_model.safetensors"}, {}, {"b.safetensors"}});
  add({"calibrate: non-finite maps", "", "{mdps} calibrate --model {fx}/huge_model.safetensors --normal "
      "{fx}/normal --out b.safetensors --quiet" + F, 1, {"not finite"}, {}, {"b.safetensors"}});
  add({"sample: NaN weights", "", "{mdps} sample --model {fx}/nan_model.safetensors --image {fx}/img.png --out r.png "
      "--mask none --t-start 20 --skip 10 --threads 1", 1, {"nan_model.safetensors"}, {}, {"r.png"}});
  add({"train --resume: NaN checkpoint", "", "{mdps} train --resume {fx}/nan_model.safetensors --out m.safetensors "
      "--data {fx}/cat --steps 2" + TRAIN, 1, {"nan_model.safetensors"}, {}, {"m.safetensors"}});
  if (!fixtures().features.empty()) {
    // Only with the shared ResNet-18 weights (test::shared_dir()); the table
    // then has these two cases more.
    add({"score: NaN features", "", "{mdps} score --model " + M + " --features {fx}/nan_features.safetensors "
        "--images {fx}/img.png --out o" + F, 1, {"nan_features.safetensors", "layer1.0.conv1.weight"}, {},
        {"o/scores.csv"}});
    add({"bundle: NaN features", "", "{mdps} bundle --model " + M + " --features {fx}/nan_features.safetensors "
        "--out b.safetensors", 1, {"nan_features.safetensors", "non-finite"}, {}, {"b.safetensors"}});
  }
  add({"info: NaN weights are listed", "", "{mdps} info {fx}/nan_model.safetensors", 0, {"out.2.bias"}});
  add({"score: image threshold NaN", "", "{mdps} score --model " + M + " --images {fx}/img.png --out o" + F +
      "--image-threshold nan", 2, {"--image-threshold"}, {}, {"o/scores.csv"}});
  add({"score: pixel threshold inf", "", "{mdps} score --model " + M + " --images {fx}/img.png --out o" + F +
      "--pixel-threshold inf", 2, {"--pixel-threshold"}, {}, {"o/scores.csv"}});
  add({"score: PNG with damaged compressed data", "", "{mdps} score --model " + M + " --images {fx}/bad_idat.png "
      "--out o" + F, 1, {"bad_idat.png", "damaged"}, {}, {"o/scores.csv"}});
  add({"score: PNG with a wrong CRC", "", "{mdps} score --model " + M + " --images {fx}/bad_crc.png --out o" + F, 1,
      {"bad_crc.png", "CRC"}, {}, {"o/scores.csv"}});
  add({"score: truncated PNG", "", "{mdps} score --model " + M + " --images {fx}/truncated.png --out o" + F, 1,
      {"truncated.png"}, {}, {"o/scores.csv"}});
  add({"eval: a damaged test image", "cp -r {fx}/cat cat && cp {fx}/bad_idat.png cat/test/good/zz.png",
      "{mdps} eval --model " + M + " --dataset cat --out o --quiet" + F, 1, {"zz.png"}, {}, {"o/report.json"}});
  add({"train: a damaged training image", "cp -r {fx}/cat cat && cp {fx}/bad_crc.png cat/train/good/zz.png",
      "{mdps} train --data cat --out m.safetensors --steps 2" + TRAIN, 1, {"zz.png"}, {}, {"m.safetensors"}});

  // ---- lost or corrupt data: outputs never destroy inputs or each other
  add({"train: --trace equal to --out", "", "{mdps} train --data {fx}/cat --out m.safetensors --trace m.safetensors "
      "--steps 1" + TRAIN, 2, {"--trace", "--out"}, {}, {"m.safetensors"}});
  add({"train: --log-csv equal to --out", "", "{mdps} train --data {fx}/cat --out m.safetensors --log-csv "
      "m.safetensors --steps 1" + TRAIN, 2, {"--log-csv", "--out"}, {}, {"m.safetensors"}});
  add({"train: --out an existing checkpoint", "cp {fx}/model.safetensors m.safetensors",
      "{mdps} train --data {fx}/cat --out m.safetensors --steps 1" + TRAIN, 2, {"--out", "--resume", "--overwrite"},
      {"m.safetensors"}});
  add({"train: --out an existing checkpoint through a link", "cp {fx}/model.safetensors m.safetensors && ln -s "
      "m.safetensors l.safetensors", "{mdps} train --data {fx}/cat --out l.safetensors --steps 1" + TRAIN, 2,
      {"--overwrite"}, {"m.safetensors"}});
  add({"train: --overwrite replaces it", "cp {fx}/model.safetensors m.safetensors",
      "{mdps} train --data {fx}/cat --out m.safetensors --overwrite --steps 2" + TRAIN, 0, {}, {}, {},
      [](const std::string& d, const Run& r) {
        return r.rc == 0 && read_all(d + "/m.safetensors") == read_all(fixtures().dir + "/model.safetensors")
                   ? std::string("--overwrite did not write the new checkpoint")
                   : std::string();
      }});
  add({"train: --resume in place is allowed", "{mdps} train --data {fx}/cat --out m.safetensors --steps 1" + TRAIN,
      "{mdps} train --resume m.safetensors --out m.safetensors --steps 2 --quiet --threads 1", 0});
  add({"train: --resume A --out existing B", "{mdps} train --data {fx}/cat --out a.safetensors --steps 1" + TRAIN +
      " && cp {fx}/model.safetensors b.safetensors", "{mdps} train --resume a.safetensors --out b.safetensors "
      "--steps 2 --quiet --threads 1", 2, {"--overwrite"}, {"b.safetensors", "a.safetensors"}});
  add({"train: --trace equal to --resume", "{mdps} train --data {fx}/cat --out a.safetensors --steps 1" + TRAIN,
      "{mdps} train --resume a.safetensors --out a.safetensors --trace a.safetensors --steps 2 --quiet", 2,
      {"--trace", "--resume"}, {"a.safetensors"}});
  add({"train: the CSV log is flushed and RFC 4180", "", "{mdps} train --data {fx}/cat --out m.safetensors --steps 3" +
      TRAIN, 0, {}, {}, {}, [](const std::string& d, const Run&) {
        const std::string csv = read_all(d + "/m.csv");
        return csv == "" || csv.rfind("step,loss,seconds\n1,", 0) != 0 || std::count(csv.begin(), csv.end(), '\n') != 4
                   ? "m.csv is not the 3-step log: " + csv
                   : std::string();
      }});
  add({"train: --log-csv on a full device", "", "{mdps} train --data {fx}/cat --out m.safetensors --log-csv /dev/full "
      "--steps 2" + TRAIN, 1, {"--log-csv", "/dev/full"}});
  add({"convert: IN equal to OUT", "cp {fx}/dtypes.pt in.pt", "{mdps} convert in.pt in.pt", 2, {"in.pt", "OUT"},
      {"in.pt"}});
  add({"convert: OUT a link to IN", "cp {fx}/dtypes.pt in.pt && ln -s in.pt out.safetensors",
      "{mdps} convert in.pt out.safetensors", 2, {"same file"}, {"in.pt"}});
  add({"convert: OUT a hard link to IN", "cp {fx}/dtypes.pt in.pt && ln in.pt out.safetensors",
      "{mdps} convert in.pt out.safetensors", 2, {"same file"}, {"in.pt"}});
  add({"sample: --out equal to --image", "cp {fx}/img.png in.png", "{mdps} sample --model " + M +
      " --image in.png --out in.png --mask none --t-start 20 --skip 10 --threads 1", 2, {"--out", "--image"},
      {"in.png"}});
  add({"sample: --out a link to --image", "cp {fx}/img.png in.png && ln -s in.png r.png", "{mdps} sample --model " + M +
      " --image in.png --out r.png --mask none --t-start 20 --skip 10 --threads 1", 2, {"--image"}, {"in.png"}});
  add({"sample: its mask output equal to --mask", "cp {fx}/mask.png r_mask.png", "{mdps} sample --model " + M +
      " --image {fx}/img.png --out r.png --mask r_mask.png --t-start 20 --skip 10 --threads 1", 2, {"--mask"},
      {"r_mask.png"}, {"r.png"}});
  add({"sample: --out equal to --model", "cp {fx}/model.safetensors m.png", "{mdps} sample --model m.png --image "
      "{fx}/img.png --out m.png --mask none --t-start 20 --skip 10 --threads 1", 2, {"--model"}, {"m.png"}});
  add({"sample: --trace equal to --out", "", "{mdps} sample --model " + M + " --image {fx}/img.png --out r.png "
      "--trace r.png --mask none --t-start 20 --skip 10 --threads 1", 2, {"--trace"}, {}, {"r.png"}});
  add({"bundle: --out equal to --model", "cp {fx}/model.safetensors m.safetensors",
      "{mdps} bundle --model m.safetensors --out m.safetensors", 2, {"--out", "--model"}, {"m.safetensors"}});
  add({"calibrate: --json equal to --out", "", "{mdps} calibrate --model " + M + " --normal {fx}/normal --out "
      "b.safetensors --json b.safetensors --quiet" + F, 2, {"--json", "--out"}, {}, {"b.safetensors"}});
  add({"calibrate: --out equal to --model", "cp {fx}/model.safetensors m.safetensors", "{mdps} calibrate --model "
      "m.safetensors --normal {fx}/normal --out m.safetensors --quiet" + F, 2, {"--model"}, {"m.safetensors"}});
  add({"calibrate: --out equal to --detector is allowed", "{mdps} bundle --model " + M + " --out d.safetensors "
      "--round1-t 0 --t-start 20 --skip 10",
      "{mdps} calibrate --detector d.safetensors --normal {fx}/normal --out d.safetensors --quiet --threads 1", 0,
      {"image threshold"}});
  add({"score: an output would overwrite an input image", "mkdir o && cp {fx}/img.png o/a_heatmap.png && cp "
      "{fx}/img.png a.png", "{mdps} score --model " + M + " --images a.png o/a_heatmap.png --out o" + F, 2,
      {"--images", "o/a_heatmap.png"}, {"o/a_heatmap.png", "a.png"}});
  add({"eval: --trace equal to --model", "cp {fx}/model.safetensors m.safetensors", "{mdps} eval --model m.safetensors "
      "--dataset {fx}/cat --out o --trace m.safetensors --quiet" + F, 2, {"--trace", "--model"}, {"m.safetensors"}});
  add({"score: a file size limit while writing PNGs", "", "ulimit -f 2; trap '' XFSZ; {mdps} score --model " + M +
      " --images {fx}/img.png {fx}/imgs --out o" + F, 1, {"o/", "File too large"}, {}, {"o/scores.csv"},
      no_partial_pngs});
  add({"eval: a file size limit while writing panels", "", "ulimit -f 2; trap '' XFSZ; {mdps} eval --model " + M +
      " --dataset {fx}/cat --out o --quiet --limit 1" + F, 1, {"File too large"}, {}, {"o/report.json"},
      no_partial_pngs});
  add({"sample: a file size limit", "", "ulimit -f 1; trap '' XFSZ; {mdps} sample --model " + M + " --image "
      "{fx}/img.png --out r.png --mask none --t-start 20 --skip 10 --threads 1", 1, {"r_0.png", "File too large"}, {},
      {"r_0.png", "r_1.png"}});
  add({"bundle: a file size limit", "", "ulimit -f 16; trap '' XFSZ; {mdps} bundle --model " + M +
      " --out b.safetensors", 1, {"b.safetensors", "File too large"}, {}, {"b.safetensors"}});
  add({"bundle: a file size limit keeps the old bundle", "{mdps} bundle --model " + M + " --out b.safetensors",
      "ulimit -f 16; trap '' XFSZ; {mdps} bundle --model " + M + " --out b.safetensors --rho 80", 1,
      {"File too large"}, {"b.safetensors"}});
  add({"info: stdout on /dev/full", "", "{mdps} info " + M + " > /dev/full", 1, {"standard output"}});
  add({"score: stdout on /dev/full", "", "{mdps} score --model " + M + " --images {fx}/img.png --out o" + F +
      "> /dev/full", 1, {"standard output"}});
  add({"convert: stdout on /dev/full", "", "{mdps} convert {fx}/dtypes.pt o.safetensors > /dev/full", 1,
      {"standard output"}});
  add({"score: a comma and a quote in a file name", "", "{mdps} score --model " + M + " --images '{fx}/odd,na\"me.png' "
      "--out o" + F, 0, {}, {}, {}, [](const std::string& d, const Run&) {
        const std::string csv = read_all(d + "/o/scores.csv");
        const std::string want = "\"" + fixtures().dir + "/odd,na\"\"me.png\",";
        return csv.find(want) == std::string::npos ? "scores.csv does not quote the name: " + csv : std::string();
      }});
  add({"eval: a comma in a test file name", "cp -r {fx}/cat cat && cp {fx}/img.png 'cat/test/good/a,b.png'",
      "{mdps} eval --model " + M + " --dataset cat --out o --quiet --no-panels" + F, 0, {}, {}, {},
      [](const std::string& d, const Run&) {
        const std::string csv = read_all(d + "/o/images.csv");
        return csv.find("a,b.png\",good,") == std::string::npos ? "images.csv does not quote: " + csv : std::string();
      }});
  add({"sample: --trace in a missing folder fails first", "", "{mdps} sample --model " + M + " --image "
      "{fx}/img.png --out r.png --trace t/trace.json --mask none --t-start 20 --skip 10 --threads 1", 1,
      {"--trace"}, {}, {"r.png"}});

  // ---- hangs and memory: only regular files are read; sizes are checked first
  add({"score: a FIFO as an image", "", "{mdps} score --model " + M + " --images {fx}/fifo.png --out o" + F, 1,
      {"fifo.png", "FIFO"}, {}, {"o/scores.csv"}, nullptr, 20});
  add({"train: a FIFO in the data folder", "", "{mdps} train --data {fx}/fifo_data --out m.safetensors --steps 1" +
      TRAIN, 1, {"b.png", "FIFO"}, {}, {"m.safetensors"}, nullptr, 20});
  add({"info: a FIFO", "", "{mdps} info {fx}/fifo.safetensors", 1, {"fifo.safetensors", "FIFO"}, {}, {}, nullptr, 20});
  add({"score: a FIFO as the model", "", "{mdps} score --model {fx}/fifo.safetensors --images {fx}/img.png --out o" +
      F, 1, {"fifo.safetensors"}, {}, {}, nullptr, 20});
  add({"score: /dev/zero as an image", "", "{mdps} score --model " + M + " --images /dev/zero --out o" + F, 1,
      {"/dev/zero", "character device"}, {}, {}, nullptr, 20});
  add({"score: a link to /dev/zero", "", "{mdps} score --model " + M + " --images {fx}/zero.png --out o" + F, 1,
      {"zero.png", "not a regular file"}, {}, {}, nullptr, 20});
  add({"sample: /dev/zero as the image", "", "{mdps} sample --model " + M + " --image /dev/zero --out r.png --mask "
      "none --t-start 20 --skip 10 --threads 1", 1, {"/dev/zero"}, {}, {"r.png"}, nullptr, 20});
  add({"score: a folder named .png inside --images", "mkdir d && cp {fx}/img.png d/a.png && mkdir d/b.png",
      "{mdps} score --model " + M + " --images d/b.png --out o" + F, 1, {"b.png"}});
  add({"score: an empty file", "", "{mdps} score --model " + M + " --images {fx}/empty.png --out o" + F, 1,
      {"empty.png", "empty"}});
  add({"score: a 12000x12000 PNG bomb", "", "{mdps} score --model " + M + " --images {fx}/bomb.png --out o" + F, 1,
      {"bomb.png", "12000x12000", "--max-image-pixels"}, {}, {"o/scores.csv"}});
  add({"score: --max-image-pixels below the image", "", "{mdps} score --model " + M + " --images {fx}/img.png "
      "--max-image-pixels 100 --out o" + F, 1, {"img.png", "--max-image-pixels"}});
  add({"score: --max-image-pixels 0", "", "{mdps} score --model " + M + " --images {fx}/img.png --max-image-pixels 0 "
      "--out o" + F, 2, {"--max-image-pixels"}});
  add({"train: a bomb in the data folder", "mkdir d && cp {fx}/img.png d/a.png && cp {fx}/bomb.png d/b.png",
      "{mdps} train --data d --out m.safetensors --steps 1" + TRAIN, 1, {"b.png", "--max-image-pixels"}, {},
      {"m.safetensors"}});
  add({"eval: a bomb as a ground-truth mask", "cp -r {fx}/cat cat && for m in cat/ground_truth/*/*; do cp "
      "{fx}/bomb.png $m; break; done", "{mdps} eval --model " + M + " --dataset cat --out o --quiet" + F, 1,
      {"--max-image-pixels"}});
  add({"score: num_res_blocks 100000", "", "{mdps} score --model {fx}/res100000.safetensors --images {fx}/img.png "
      "--out o" + F, 1, {"res100000.safetensors", "num_res_blocks"}, {}, {}, nullptr, 30});
  add({"score: img_size 2^30", "", "{mdps} score --model {fx}/img2e30.safetensors --images {fx}/img.png --out o" + F, 1,
      {"img2e30.safetensors", "img_size"}, {}, {}, nullptr, 30});
  add({"sample: num_res_blocks 100000", "", "{mdps} sample --model {fx}/res100000.safetensors --image {fx}/img.png "
      "--out r.png --mask none", 1, {"res100000.safetensors", "num_res_blocks"}, {}, {"r.png"}, nullptr, 30});
  add({"bundle: img_size 2^30", "", "{mdps} bundle --model {fx}/img2e30.safetensors --out b.safetensors", 1,
      {"img2e30.safetensors", "img_size"}, {}, {"b.safetensors"}, nullptr, 30});
  add({"score: a truncated model file", "", "{mdps} score --model {fx}/cut_model.safetensors --images {fx}/img.png "
      "--out o" + F, 1, {"cut_model.safetensors"}});
  if (!HOSTILE_ASAN) {
    add({"score: --samples beyond memory names the options", "", "ulimit -v 8000000; {mdps} score --model "
        "{fx}/big4096.safetensors --images {fx}/img.png --out o --samples 1024" + F, 1,
        {"out of memory", "--samples"}, {}, {"o/scores.csv"}});
  }

  // ---- inputs and options: documented formats only, one validation per option
  for (const char* f : {"gif", "pnm", "hdr", "tga", "text"})
    add({std::string("score: a ") + f + " file named .png", "", "{mdps} score --model " + M + " --images {fx}/" + f +
        ".png --out o" + F, 1, {std::string(f) + ".png", "PNG, JPEG and BMP"}, {}, {"o/scores.csv"}});
  add({"train: a GIF in the data folder", "mkdir d && cp {fx}/img.png d/a.png && cp {fx}/gif.png d/b.png",
      "{mdps} train --data d --out m.safetensors --steps 1" + TRAIN, 1, {"b.png", "GIF"}, {}, {"m.safetensors"}});
  add({"train: --skip-bad skips a GIF", "mkdir d && cp {fx}/img.png d/a.png && cp {fx}/img.png d/c.png && cp "
      "{fx}/gif.png d/b.png", "{mdps} train --data d --out m.safetensors --steps 1 --skip-bad" + TRAIN, 0});
  add({"score: a BMP and a JPEG are read", "", "{mdps} score --model " + M + " --images {fx}/img.bmp {fx}/img.jpg "
      "--out o" + F, 0, {"img.bmp", "img.jpg"}});
  add({"score: a JPEG cut short", "", "{mdps} score --model " + M + " --images {fx}/cut.jpg --out o" + F, 1,
      {"cut.jpg", "damaged JPEG"}, {}, {"o/scores.csv"}});
  add({"train: --epochs overflow", "", "{mdps} train --data {fx}/cat --out m.safetensors --epochs 307445734561825861" +
      TRAIN, 2, {"--epochs"}, {}, {"m.safetensors"}});
  add({"train: --steps 2^64+", "", "{mdps} train --data {fx}/cat --out m.safetensors --steps 99999999999999999999" +
      TRAIN, 2, {"--steps"}, {}, {"m.safetensors"}});
  add({"train: --steps 2^62", "", "{mdps} train --data {fx}/cat --out m.safetensors --steps 4611686018427387904" +
      TRAIN, 2, {"--steps"}, {}, {"m.safetensors"}});
  add({"train: --steps 0", "", "{mdps} train --data {fx}/cat --out m.safetensors --steps 0" + TRAIN, 2, {"--steps"}});
  add({"train: --epochs -1", "", "{mdps} train --data {fx}/cat --out m.safetensors --epochs -1" + TRAIN, 2,
      {"--epochs"}});
  add({"train: --threads -1", "", "{mdps} train --data {fx}/cat --out m.safetensors --steps 1 --image-size 32 "
      "--threads -1", 2, {"--threads"}, {}, {"m.safetensors"}});
  add({"score: --threads -1", "", "{mdps} score --model " + M + " --images {fx}/img.png --out o --threads -1", 2,
      {"--threads"}});
  add({"score: --threads 100000", "", "{mdps} score --model " + M + " --images {fx}/img.png --out o --threads 100000",
      2, {"--threads"}});
  add({"eval: --threads 100000", "", "{mdps} eval --model " + M + " --dataset {fx}/cat --out o --threads 100000", 2,
      {"--threads"}});
  add({"sample: --threads abc", "", "{mdps} sample --model " + M + " --image {fx}/img.png --out r.png --threads abc",
      2, {"--threads"}});
  add({"bench: --threads -5", "", "{mdps} bench gemm --threads -5", 2, {"--threads"}});
  for (const char* opt : {"--lambda -0.5", "--lambda nan", "--lambda 7", "--eta -1", "--rho -3", "--round1-rho -1",
                          "--ddim-eta -1", "--blur-sigma -2", "--samples 0", "--samples 100000", "--batch 0",
                          "--t-start 5000", "--skip 0"}) {
    const std::string name = std::string(opt).substr(0, std::string(opt).find(' '));
    add({std::string("score: ") + opt, "", "{mdps} score --model " + M + " --images {fx}/img.png --out o --threads 1 " +
        opt, 2, {name}, {}, {"o/scores.csv"}});
  }
  add({"eval: --lambda -1", "", "{mdps} eval --model " + M + " --dataset {fx}/cat --out o --lambda -1", 2,
      {"--lambda"}});
  add({"sample: --lambda -1", "", "{mdps} sample --model " + M + " --image {fx}/img.png --out r.png --lambda -1", 2,
      {"--lambda"}, {}, {"r.png"}});
  add({"sample: --eta nan", "", "{mdps} sample --model " + M + " --image {fx}/img.png --out r.png --eta nan", 2,
      {"--eta"}, {}, {"r.png"}});
  add({"bundle: --lambda -1", "", "{mdps} bundle --model " + M + " --out b.safetensors --lambda -1", 2, {"--lambda"},
      {}, {"b.safetensors"}});
  add({"calibrate: --quantile nan", "", "{mdps} calibrate --model " + M + " --normal {fx}/normal --out b.safetensors "
      "--quantile nan" + F, 2, {"--quantile"}, {}, {"b.safetensors"}});
  add({"calibrate: --quantile 2", "", "{mdps} calibrate --model " + M + " --normal {fx}/normal --out b.safetensors "
      "--quantile 2" + F, 2, {"--quantile"}});
  add({"sample: --mask of another size", "", "{mdps} sample --model " + M + " --image {fx}/img.png --mask "
      "{fx}/mask16.png --out r.png --t-start 20 --skip 10 --threads 1", 2, {"mask16.png", "size"}, {}, {"r.png"}});
  add({"sample: --mask of the image's size", "", "{mdps} sample --model " + M + " --image {fx}/img64.png --mask "
      "{fx}/mask16.png --out r.png --t-start 20 --skip 10 --threads 1", 2, {"mask16.png"}, {}, {"r.png"}});
  add({"sample: --mask of the same size works", "", "{mdps} sample --model " + M + " --image {fx}/img.png --mask "
      "{fx}/mask.png --out r.png --t-start 20 --skip 10 --samples 1 --threads 1", 0, {"r.png"}});
  add({"sample: --out x.jpg", "", "{mdps} sample --model " + M + " --image {fx}/img.png --out x.jpg --mask none "
      "--t-start 20 --skip 10 --threads 1", 2, {"--out", ".png"}, {}, {"x.jpg"}});
  add({"sample: --out without an extension", "", "{mdps} sample --model " + M + " --image {fx}/img.png --out x "
      "--mask none --t-start 20 --skip 10 --threads 1", 2, {"--out"}, {}, {"x"}});
  add({"sample: --out x.PNG is PNG", "", "{mdps} sample --model " + M + " --image {fx}/img.png --out x.PNG --mask none "
      "--t-start 20 --skip 10 --samples 1 --threads 1", 0, {}, {}, {}, [](const std::string& d, const Run&) {
        return read_all(d + "/x.PNG").substr(1, 3) == "PNG" ? std::string() : std::string("x.PNG is not a PNG");
      }});

  // ---- exit codes and messages
  add({"an unknown command", "", "{mdps} scroe --model m", 2, {"unknown command 'scroe'", "score"}});
  add({"no command", "", "{mdps}", 2, {"no command"}});
  add({"an unknown option", "", "{mdps} score --model " + M + " --images {fx}/img.png --out o --sampels 3", 2,
      {"--sampels"}});
  add({"a missing required option", "", "{mdps} score --images {fx}/img.png --out o", 2, {"--model"}});
  add({"a non-numeric value", "", "{mdps} score --model " + M + " --images {fx}/img.png --out o --samples many", 2,
      {"--samples"}});
  add({"a missing --model file", "", "{mdps} score --model nope.safetensors --images {fx}/img.png --out o", 2,
      {"nope.safetensors"}});
  add({"calibrate: neither --normal nor --labelled", "", "{mdps} calibrate --model " + M + " --out b.safetensors", 2,
      {"--normal", "--labelled"}, {}, {"b.safetensors"}});
  add({"calibrate: both --normal and --labelled", "", "{mdps} calibrate --model " + M + " --normal {fx}/normal "
      "--labelled {fx}/cat --out b.safetensors", 2, {"--normal", "--labelled"}});
  add({"calibrate: no detector", "", "{mdps} calibrate --normal {fx}/normal --out b.safetensors", 2,
      {"--detector"}});
  add({"train: --steps with --epochs", "", "{mdps} train --data {fx}/cat --out m.safetensors --steps 1 --epochs 1", 2,
      {"--steps", "--epochs"}});
  add({"eval: --model missing (no --merge)", "", "{mdps} eval --dataset {fx}/cat --out o", 2, {"--model"}});
  add({"--help exits 0", "", "{mdps} score --help", 0, {"--max-image-pixels", "--threads"}});
  add({"--version exits 0", "", "{mdps} --version", 0, {"mdps "}});
  add({"score: a missing image", "", "{mdps} score --model " + M + " --images nope.png --out o" + F, 1, {"nope.png"}});
  add({"score: --out is a file", "touch o", "{mdps} score --model " + M + " --images {fx}/img.png --out o" + F, 1,
      {"o"}, {"o"}});
  add({"train: --out in a missing folder", "", "{mdps} train --data {fx}/cat --out no/m.safetensors --steps 1" + TRAIN,
      1, {"no/m.safetensors"}});
  add({"score: a working run", "", "{mdps} score --model " + M + " --images {fx}/img.png {fx}/imgs --out o" + F +
      "--image-threshold 0.5 --pixel-threshold 0.5", 0, {"decisions:"}, {"{fx}/img.png"}, {}, no_partial_pngs});
  return v;
}

// ---- the C interface cases ----------------------------------------------------------

struct CCase {
  std::string name;
  std::function<mdps_status(std::string& detail)> run;  // the status; detail: a data problem ("" if none)
  mdps_status expect;
  std::vector<std::string> words;
};

mdps_options c_options(const std::string& model) {
  mdps_options o;
  mdps_options_init(&o);
  o.unet_path = model.c_str();
  o.round1_t = 0;
  o.round2_t = 20;
  o.skip = 10;
  o.threads = 1;
  return o;
}

std::vector<CCase> c_cases() {
  const std::string d = fixtures().dir;
  static std::string model, nan_model, huge, res, fifo, folder, big;
  model = d + "/model.safetensors";
  nan_model = d + "/nan_model.safetensors";
  huge = d + "/huge_model.safetensors";
  res = d + "/res100000.safetensors";
  fifo = d + "/fifo.safetensors";
  folder = d + "/folder.png";
  big = d + "/big4096.safetensors";
  std::vector<CCase> v;
  auto create = [](mdps_options o) {
    return [o](std::string& detail) {
      mdps_detector* det = reinterpret_cast<mdps_detector*>(0x1);
      const mdps_status s = mdps_detector_create(&o, &det);
      if (s != MDPS_OK && det != nullptr) detail = "a failed create left a non-NULL handle";
      mdps_detector_destroy(s == MDPS_OK ? det : nullptr);
      return s;
    };
  };
  auto with = [&](const std::function<void(mdps_options&)>& f, const std::string& m = "") {
    mdps_options o = c_options(m.empty() ? model : m);
    f(o);
    return create(o);
  };
  v.push_back({"C: create with NULL options", [](std::string&) {
                 mdps_detector* det = nullptr;
                 return mdps_detector_create(nullptr, &det);
               }, MDPS_ERR_INVALID_ARGUMENT, {"NULL"}});
  v.push_back({"C: struct_size 0 (not initialised)", with([](mdps_options& o) { o.struct_size = 0; }),
               MDPS_ERR_INVALID_ARGUMENT, {"struct_size", "mdps_options_init"}});
  v.push_back({"C: struct_size from a newer header", with([](mdps_options& o) { o.struct_size += 64; }),
               MDPS_ERR_INVALID_ARGUMENT, {"struct_size"}});
  v.push_back({"C: lambda NaN", with([](mdps_options& o) { o.lambda = std::nanf(""); }), MDPS_ERR_INVALID_ARGUMENT,
               {"lambda"}});
  v.push_back({"C: lambda -1", with([](mdps_options& o) { o.lambda = -1.f; }), MDPS_ERR_INVALID_ARGUMENT, {"lambda"}});
  v.push_back({"C: eta -1", with([](mdps_options& o) { o.eta = -1.f; }), MDPS_ERR_INVALID_ARGUMENT, {"eta"}});
  v.push_back({"C: round2_rho inf", with([](mdps_options& o) { o.round2_rho = INFINITY; }), MDPS_ERR_INVALID_ARGUMENT,
               {"rho"}});
  v.push_back({"C: threads -1", with([](mdps_options& o) { o.threads = -1; }), MDPS_ERR_INVALID_ARGUMENT,
               {"threads"}});
  v.push_back({"C: threads 100000", with([](mdps_options& o) { o.threads = 100000; }), MDPS_ERR_INVALID_ARGUMENT,
               {"threads"}});
  v.push_back({"C: samples 100000", with([](mdps_options& o) { o.samples = 100000; }), MDPS_ERR_INVALID_ARGUMENT,
               {"samples"}});
  v.push_back({"C: batch 0", with([](mdps_options& o) { o.batch = 0; }), MDPS_ERR_INVALID_ARGUMENT, {"batch"}});
  v.push_back({"C: overrides lambda=nan", with([](mdps_options& o) { o.overrides = "lambda=nan"; }),
               MDPS_ERR_INVALID_ARGUMENT, {"lambda"}});
  v.push_back({"C: overrides without '='", with([](mdps_options& o) { o.overrides = "lambda"; }), MDPS_ERR_FAILED,
               {"overrides"}});
  v.push_back({"C: image_threshold inf", with([](mdps_options& o) { o.image_threshold = INFINITY; }),
               MDPS_ERR_FAILED, {"image_threshold"}});
  v.push_back({"C: NaN weights", with([](mdps_options&) {}, nan_model), MDPS_ERR_FAILED,
               {"nan_model.safetensors", "non-finite"}});
  if (!fixtures().features.empty()) {
    static std::string nan_features;
    nan_features = d + "/nan_features.safetensors";
    v.push_back({"C: NaN features", with([](mdps_options& o) { o.features_path = nan_features.c_str(); }),
                 MDPS_ERR_FAILED, {"nan_features.safetensors", "layer1.0.conv1.weight"}});
  }
  v.push_back({"C: num_res_blocks 100000", with([](mdps_options&) {}, res), MDPS_ERR_FAILED, {"num_res_blocks"}});
  v.push_back({"C: a FIFO as the model", with([](mdps_options&) {}, fifo), MDPS_ERR_FAILED, {"FIFO"}});
  v.push_back({"C: a folder as the model", with([](mdps_options&) {}, folder), MDPS_ERR_FAILED, {"folder"}});
  v.push_back({"C: NULL model path", with([](mdps_options& o) { o.unet_path = nullptr; }), MDPS_ERR_INVALID_ARGUMENT,
               {"unet_path"}});
  // Scoring: a non-finite map is an error, and the outputs stay untouched.
  v.push_back({"C: non-finite map on score", [](std::string& detail) {
                 mdps_options o = c_options(huge);
                 o.image_threshold = 0.5f;
                 mdps_detector* det = nullptr;
                 mdps_status s = mdps_detector_create(&o, &det);
                 if (s != MDPS_OK) {
                   detail = std::string("create failed: ") + mdps_last_error();
                   return s;
                 }
                 std::vector<uint8_t> px(32 * 32 * 3, 100);
                 float score = -7.f;
                 int anomalous = 9;
                 s = mdps_score(det, px.data(), 32, 32, 3, 0, &score, nullptr, 0, 0, &anomalous);
                 if (score != -7.f || anomalous != 9) detail = "a failed score changed its outputs";
                 mdps_detector_destroy(det);
                 return s;
               }, MDPS_ERR_FAILED, {"not finite"}});
  auto scoring = [](int w, int h, int c, int stride) {
    return [=](std::string&) {
      mdps_options o = c_options(model);
      mdps_detector* det = nullptr;
      mdps_status s = mdps_detector_create(&o, &det);
      if (s != MDPS_OK) return s;
      std::vector<uint8_t> px(64 * 64 * 4, 1);
      float score = 0;
      s = mdps_score(det, px.data(), w, h, c, stride, &score, nullptr, 0, 0, nullptr);
      mdps_detector_destroy(det);
      return s;
    };
  };
  v.push_back({"C: score 2 channels", scoring(8, 8, 2, 0), MDPS_ERR_INVALID_ARGUMENT, {"channels"}});
  v.push_back({"C: score width 0", scoring(0, 8, 3, 0), MDPS_ERR_INVALID_ARGUMENT, {"0x8"}});
  v.push_back({"C: score negative height", scoring(8, -8, 3, 0), MDPS_ERR_INVALID_ARGUMENT, {"8x-8"}});
  v.push_back({"C: score stride below a row", scoring(8, 8, 3, 5), MDPS_ERR_INVALID_ARGUMENT, {"stride"}});
  v.push_back({"C: score works", scoring(16, 16, 4, 0), MDPS_OK, {}});
  v.push_back({"C: defect mask before any score", [](std::string&) {
                 mdps_options o = c_options(model);
                 mdps_detector* det = nullptr;
                 if (mdps_detector_create(&o, &det) != MDPS_OK) return MDPS_ERR_INVALID_ARGUMENT;
                 uint8_t m[4];
                 const mdps_status s = mdps_last_defect_mask(det, m, 2, 2);
                 mdps_detector_destroy(det);
                 return s;
               }, MDPS_ERR_FAILED, {"nothing scored"}});
  if (!HOSTILE_ASAN) {
    // Huge activations (1024 samples of a 4096 x 4096 image) fail as out of memory.
    v.push_back({"C: out of memory is MDPS_ERR_OUT_OF_MEMORY", [](std::string&) {
                   mdps_options o = c_options(big);
                   o.samples = 1024;
                   mdps_detector* det = nullptr;
                   mdps_status s = mdps_detector_create(&o, &det);
                   if (s != MDPS_OK) return s;
                   std::vector<uint8_t> px(4 * 4 * 3, 100);
                   float score = 0;
                   // An address-space limit makes the 200 GB request fail
                   // whatever the machine's overcommit policy.
                   struct rlimit old;
                   REQUIRE(getrlimit(RLIMIT_AS, &old) == 0);
                   struct rlimit lim = old;
                   lim.rlim_cur = rlim_t(16) << 30;
                   if (old.rlim_max != RLIM_INFINITY && old.rlim_max < lim.rlim_cur) lim.rlim_cur = old.rlim_max;
                   REQUIRE(setrlimit(RLIMIT_AS, &lim) == 0);
                   s = mdps_score(det, px.data(), 4, 4, 3, 0, &score, nullptr, 0, 0, nullptr);
                   REQUIRE(setrlimit(RLIMIT_AS, &old) == 0);
                   mdps_detector_destroy(det);
                   return s;
                 }, MDPS_ERR_OUT_OF_MEMORY, {"out of memory allocating", "bytes"}});
  }
  return v;
}

Tally run_c_cases() {
  Tally t;
  for (const CCase& c : c_cases()) {
    std::string detail;
    const mdps_status s = c.run(detail);
    const std::string msg = mdps_last_error();
    Verdict v = Verdict::Clear;
    std::string why;
    if (!detail.empty()) {
      v = Verdict::DataLost;
      why = detail;
    } else if (c.expect != MDPS_OK && s == MDPS_OK) {
      v = Verdict::Silent;
      why = "MDPS_OK";
    } else if (s != c.expect) {
      v = Verdict::Unclear;
      why = cat("status ", int(s), ", expected ", int(c.expect), ": ", msg);
    } else {
      for (const auto& w : c.words)
        if (msg.find(w) == std::string::npos) {
          v = Verdict::Unclear;
          why = "the message does not contain '" + w + "': " + msg;
        }
      if (v == Verdict::Clear && c.expect == MDPS_OK) v = Verdict::Ok;
    }
    t.add(c.name, v, why);
  }
  return t;
}

void report(const Tally& t, const std::string& what) {
  std::string text = t.summary(what);
  for (const auto& l : t.lines) text += "\n  " + l;
  MESSAGE(text);
  std::printf("%s\n", text.c_str());
}

int good(const Tally& t) {
  int n = 0;
  for (auto v : {Verdict::Ok, Verdict::Clear}) {
    auto it = t.counts.find(v);
    if (it != t.counts.end()) n += it->second;
  }
  return n;
}

}  // namespace

// ASan: an allocation larger than memory returns NULL (the engine reports it)
// instead of aborting the process.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }

TEST_CASE("hostile inputs through the mdps command line") {
  REQUIRE_MESSAGE(fs::exists(fixtures().bin), "no mdps binary at ", fixtures().bin);
  const std::vector<Case> cases = cli_cases();
  CHECK(cases.size() >= 100);
  const Tally t = run_cases(cases);
  report(t, "mdps");
  CHECK(good(t) == t.cases);
}

TEST_CASE("hostile inputs through the C interface") {
  const Tally t = run_c_cases();
  report(t, "C API");
  CHECK(t.cases >= 20);
  CHECK(good(t) == t.cases);
}
