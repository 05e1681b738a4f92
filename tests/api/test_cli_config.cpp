// `--config FILE` (tools/mdps.cpp): a run written down in a file repeats the
// run given as flags; flags on the command line win over the file; [command]
// sections work; an unknown key or a missing file is an error naming it.
// Runs the built `mdps` on a tiny model (a second or two per run).
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "tests/tiny_fixtures.h"
#include <fstream>
#include <sstream>
#include <sys/wait.h>

using namespace mdps;

namespace {

const std::string kFast = "--t-start 100 --round1-t 0 --skip 50 --blur-sigma 1 --blur-kernel 9 --threads 2 --quiet";

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  REQUIRE(out.good());
}

// Runs `mdps ARGS`, requiring success; returns OUT/scores.csv.
std::string scores(const std::string& args, const std::string& out) {
  std::string output;
  const std::string cmd = test::binary_dir() + "/mdps " + args;
  INFO(cmd);
  REQUIRE(test::run_command(cmd, output) == 0);
  const std::string csv = test::read_text(out + "/scores.csv");
  REQUIRE(csv.find(".png,") != std::string::npos);
  return csv;
}

}  // namespace

TEST_CASE("mdps score --config FILE repeats the run given as flags") {
  const std::string dir = test::temp_dir("cli_config");
  const std::string model = test::write_tiny_model(dir);
  const std::string root = test::make_tiny_category(dir);
  const std::string a = root + "/test/blob/000.png", b = root + "/test/good/001.png";
  const std::string flags_csv =
      scores("score --model " + model + " --images " + a + " " + b + " --out " + dir + "/flags " + kFast, dir + "/flags");

  // The same run as a file: top-level keys are the command's options.
  const std::string cfg = dir + "/run.toml";
  write_text(cfg, "# a scoring run\nmodel = \"" + model + "\"\nimages = [\"" + a + "\", \"" + b + "\"]\nout = \"" + dir +
                      "/cfg\"\nt-start = 100\nround1-t = 0\nskip = 50\nblur-sigma = 1\nblur-kernel = 9\n"
                      "threads = 2\nquiet = true\n");
  CHECK(scores("score --config " + cfg, dir + "/cfg") == flags_csv);
  // --config before the command works too.
  CHECK(scores("--config " + cfg + " score --out " + dir + "/cfg2", dir + "/cfg2") == flags_csv);

  // A flag on the command line wins over the file.
  const std::string seed_csv = scores("score --model " + model + " --images " + a + " " + b + " --out " + dir +
                                          "/seed5 --seed 5 " + kFast,
                                      dir + "/seed5");
  CHECK(seed_csv != flags_csv);  // the seed matters, so the next check can fail
  CHECK(scores("score --config " + cfg + " --seed 5 --out " + dir + "/cfg3", dir + "/cfg3") == seed_csv);

  // A [score] section holds the command's options too.
  const std::string sec = dir + "/section.ini";
  write_text(sec, "[score]\nt-start = 100\nround1-t = 0\nskip = 50\nblur-sigma = 1\nblur-kernel = 9\n");
  CHECK(scores("score --config " + sec + " --model " + model + " --images " + a + " " + b + " --out " + dir +
                   "/sec --threads 2 --quiet",
               dir + "/sec") == flags_csv);
}

TEST_CASE("--config: unknown keys and missing files are errors; every command takes it") {
  const std::string dir = test::temp_dir("cli_config_err");
  const std::string model = test::write_tiny_model(dir);
  const std::string root = test::make_tiny_category(dir);
  const std::string mdps = test::binary_dir() + "/mdps ";
  std::string out;

  const std::string bad = dir + "/bad.toml";
  write_text(bad, "model = \"" + model + "\"\nimages = \"" + root + "/test/good/000.png\"\nout = \"" + dir +
                      "/o\"\nt-strat = 100\n");
  CHECK(test::run_command(mdps + "score --config " + bad, out) != 0);
  CHECK(out.find("t-strat") != std::string::npos);

  CHECK(test::run_command(mdps + "score --config " + dir + "/missing.toml", out) != 0);
  CHECK(out.find("missing.toml") != std::string::npos);

  // train: a run of one step written down.
  const std::string t = dir + "/train.toml";
  write_text(t, "data = \"" + root + "\"\nout = \"" + dir + "/m.safetensors\"\nimage-size = 32\nbase-channels = 32\n"
                "channel-mult = \"1,2\"\nres-blocks = 1\nsteps = 1\nbatch = 2\nthreads = 2\nquiet = true\n");
  INFO(out);
  CHECK(test::run_command(mdps + "train --config " + t, out) == 0);
  CHECK(std::ifstream(dir + "/m.safetensors").good());

  // Each command lists it in its help.
  for (const char* cmd : {"info", "train", "score", "eval", "calibrate", "bundle", "sample", "demo", "convert"}) {
    CHECK(test::run_command(mdps + cmd + " --help", out) == 0);
    CHECK_MESSAGE(out.find("--config FILE") != std::string::npos, cmd);
  }
}
