// Scale-out (engine/eval/shard.h): shards cut at batch boundaries, evaluated on
// their own and merged, must write the very files a single run writes (bit
// for bit on the CPU, timing aside), for both mask scopes; incomplete or
// mixed sets of parts must be refused with messages naming the culprit.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "tests/tiny_fixtures.h"
#include "engine/io/demo_data.h"
#include "engine/eval/evaluate.h"
#include "engine/core/json_mini.h"
#include "engine/io/safetensors.h"
#include "engine/eval/shard.h"
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace mdps;
namespace fs = std::filesystem;

namespace {

// 10 test images in 5 batches of 2: three shards get 1, 2 and 2 batches.
EvalSettings fast_settings(bool dataset_scope) {
  EvalSettings s;
  s.rounds.round1 = {40, 5.f};
  s.rounds.round2 = {40, 5.f};
  s.rounds.lambda = 0.3f;
  s.sampler.skip = 20;
  s.batch = 2;
  s.crop = 0.875f;
  s.map.blur_sigma = 1.f;
  s.map.blur_kernel = 5;
  s.dataset_scope = dataset_scope;
  return s;
}

const char* kExtra = "\"model\": \"m.safetensors\", \"device\": \"cpu\"";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// report.json without the lines a merge may change: the timings.
std::string without_timing(const std::string& report) {
  std::stringstream in(report);
  std::string line, out;
  int dropped = 0;
  while (std::getline(in, line)) {
    if (line.find("\"seconds\":") != std::string::npos || line.find("\"seconds_per_image\":") != std::string::npos) {
      ++dropped;
      continue;
    }
    out += line + "\n";
  }
  CHECK(dropped == 2);
  return out;
}

void check_same_outputs(const std::string& single, const std::string& merged) {
  for (const char* f : {"maps.safetensors", "images.csv"}) {
    INFO(f);
    CHECK(read_text(single + "/" + f) == read_text(merged + "/" + f));
  }
  CHECK(without_timing(read_text(single + "/report.json")) == without_timing(read_text(merged + "/report.json")));
  // The merged report is a valid report with defined metrics.
  json::Value rep = json::parse(read_text(merged + "/report.json"), "report.json");
  REQUIRE(rep.find("image_auroc") != nullptr);
  CHECK(rep.find("image_auroc")->kind == json::Kind::Number);
  CHECK(rep.find("images")->number == 10);
  CHECK(rep.find("seconds")->number > 0);
}

struct Fixture {
  std::string dir, root, model_path;
  std::unique_ptr<UNet> net;
  Dataset ds;
  explicit Fixture(const std::string& tag) : dir(test::temp_dir(tag)) {
    root = test::make_tiny_category(dir);
    model_path = test::write_tiny_model(dir);
    net = UNet::from_file(model_path, cpu_backend());
    ds = read_dataset(root);
  }
  std::string single_run(const EvalSettings& s, const std::string& out) {
    EvalResult r = evaluate(*net, nullptr, ds, s);
    write_eval_report(r, s, out, kExtra);
    return out;
  }
  ShardJob job(int i, int n, int pass = 0, const std::string& range = "") const {
    ShardJob j;
    j.shard = {i, n};
    j.pass = pass;
    j.mask_range = range;
    j.identity = "model test";
    j.extra_json = kExtra;
    j.panels = false;
    return j;
  }
  ShardOutcome shard(const EvalSettings& s, const ShardJob& j, const std::string& out) {
    return evaluate_shard(*net, nullptr, ds, s, j, out);
  }
  std::string merge(const std::vector<std::string>& inputs, const std::string& out) {
    MergedEval m = merge_parts(inputs);
    CHECK(m.shards == 3);
    write_eval_report(m.result, m.settings_json, out, m.extra_json);
    return out;
  }
};

}  // namespace

TEST_CASE("shard_range: contiguous whole batches, balanced, covering the list") {
  for (size_t images : {1u, 7u, 10u, 64u, 83u})
    for (int batch : {1, 2, 8})
      for (int n = 1; n <= 6; ++n) {
        const size_t K = (images + size_t(batch) - 1) / size_t(batch);
        if (size_t(n) > K) {
          CHECK_THROWS_WITH_AS(shard_range(images, batch, {0, n}), doctest::Contains("fewer than"), Error);
          continue;
        }
        size_t next = 0, next_batch = 0, lo = SIZE_MAX, hi = 0;
        for (int i = 0; i < n; ++i) {
          ShardRange r = shard_range(images, batch, {i, n});
          CHECK(r.begin == next);
          CHECK(r.first_batch == next_batch);
          CHECK(r.begin == r.first_batch * size_t(batch));
          CHECK(r.batches >= 1);
          CHECK(r.end > r.begin);
          next = r.end;
          next_batch += r.batches;
          lo = std::min(lo, r.batches);
          hi = std::max(hi, r.batches);
        }
        CHECK(next == images);
        CHECK(next_batch == K);
        CHECK(hi - lo <= 1);
      }
  ShardRange r = shard_range(10, 2, {1, 3});  // batches 0 | 1 2 | 3 4
  CHECK(r.begin == 2);
  CHECK(r.end == 6);
  CHECK(r.first_batch == 1);
}

TEST_CASE("parse_shard accepts I/N with 0 <= I < N and names the option otherwise") {
  ShardId id = parse_shard("2/5");
  CHECK(id.index == 2);
  CHECK(id.count == 5);
  CHECK(id.str() == "2/5");
  CHECK_THROWS_WITH_AS(parse_shard("3/3"), doctest::Contains("below the count"), Error);
  CHECK_THROWS_WITH_AS(parse_shard("0/0"), doctest::Contains("at least 1"), Error);
  for (const char* bad : {"1", "a/3", "-1/3", "1/", "/3", "1/3/4", ""})
    CHECK_THROWS_WITH_AS(parse_shard(bad, "--shard"), doctest::Contains("--shard"), Error);
}

TEST_CASE("three shards merged equal one run, mask scope image") {
  Fixture fx("shard_image");
  const EvalSettings s = fast_settings(false);
  const std::string single = fx.single_run(s, fx.dir + "/single");
  const std::string parts = fx.dir + "/parts";
  // In reverse order: nothing may depend on which shard runs first.
  for (int i = 2; i >= 0; --i) {
    ShardOutcome o = fx.shard(s, fx.job(i, 3), parts);
    CHECK(o.path == parts + "/" + part_file_name({i, 3}));
    CHECK(o.total_images == 10);
  }
  check_same_outputs(single, fx.merge({parts}, fx.dir + "/merged"));

  // Part files named one by one merge the same, in any order.
  check_same_outputs(single, fx.merge({parts + "/part-2-of-3.safetensors", parts + "/part-0-of-3.safetensors",
                                       parts + "/part-1-of-3.safetensors"},
                                      fx.dir + "/merged2"));

  {  // a missing shard
    fs::create_directories(fx.dir + "/partial");
    for (int i : {0, 2})
      fs::copy_file(parts + "/" + part_file_name({i, 3}), fx.dir + "/partial/" + part_file_name({i, 3}));
    CHECK_THROWS_WITH_AS(merge_parts({fx.dir + "/partial"}), doctest::Contains("shard 1/3 missing"), Error);
  }
  {  // a duplicate shard
    CHECK_THROWS_WITH_AS(merge_parts({parts, parts + "/part-1-of-3.safetensors"}),
                         doctest::Contains("shard 1/3 is given twice"), Error);
  }
  {  // parts of different runs
    ShardJob other = fx.job(1, 3);
    other.identity = "another model";
    fx.shard(s, other, fx.dir + "/other");
    fs::create_directories(fx.dir + "/mixed");
    for (int i : {0, 2})
      fs::copy_file(parts + "/" + part_file_name({i, 3}), fx.dir + "/mixed/" + part_file_name({i, 3}));
    CHECK_THROWS_WITH_AS(merge_parts({fx.dir + "/mixed", fx.dir + "/other"}), doctest::Contains("different runs"),
                         Error);
    // Other settings (a seed) change the fingerprint too.
    EvalSettings s2 = s;
    s2.seed = 1;
    fx.shard(s2, fx.job(1, 3), fx.dir + "/seed1");
    CHECK_THROWS_WITH_AS(merge_parts({fx.dir + "/mixed", fx.dir + "/seed1"}),
                         doctest::Contains("part-1-of-3.safetensors"), Error);
  }
  {  // parts computed with other thread counts merge, with a note
    CHECK(merge_parts({parts}).note.empty());
    Backend& cpu = cpu_backend();
    const int threads = cpu.threads();
    cpu.set_threads(threads + 1);
    fx.shard(s, fx.job(1, 3), fx.dir + "/threads");
    cpu.set_threads(threads);
    fs::copy_file(parts + "/part-0-of-3.safetensors", fx.dir + "/threads/part-0-of-3.safetensors");
    fs::copy_file(parts + "/part-2-of-3.safetensors", fx.dir + "/threads/part-2-of-3.safetensors");
    MergedEval m = merge_parts({fx.dir + "/threads"});
    CHECK(m.note.find(std::to_string(threads + 1) + " threads") != std::string::npos);
    CHECK(m.note.find("not bit-identical") != std::string::npos);
  }
  {  // parts of different shard counts
    fx.shard(s, fx.job(1, 2), fx.dir + "/two");
    CHECK_THROWS_WITH_AS(merge_parts({parts, fx.dir + "/two"}), doctest::Contains("one of 3 shards"), Error);
  }
  {  // a folder without parts, a file that is not a part
    fs::create_directories(fx.dir + "/empty");
    CHECK_THROWS_WITH_AS(merge_parts({fx.dir + "/empty"}), doctest::Contains("no part-"), Error);
    CHECK_THROWS_WITH_AS(merge_parts({single + "/maps.safetensors"}), doctest::Contains("maps.safetensors"), Error);
  }
}

TEST_CASE("three shards in two passes merged equal one run, mask scope dataset") {
  Fixture fx("shard_dataset");
  const EvalSettings s = fast_settings(true);
  const std::string single = fx.single_run(s, fx.dir + "/single");
  const std::string parts = fx.dir + "/parts";

  for (int i = 0; i < 3; ++i) fx.shard(s, fx.job(i, 3, 1), parts);
  // Pass 1 wrote round-1 maps only, no final parts.
  CHECK(fs::exists(parts + "/round1-1-of-3.safetensors"));
  CHECK_FALSE(fs::exists(parts + "/part-1-of-3.safetensors"));
  CHECK_THROWS_WITH_AS(merge_parts({parts}), doctest::Contains("no part-"), Error);

  MaskRange range = merge_round1({parts});
  CHECK(range.shards == 3);
  CHECK(range.images == 10);
  // The merged range is the min/max of all round-1 maps of a single run.
  {
    std::vector<Sample> all = limit_samples(fx.ds.test, s.limit);
    ProtocolPart whole;
    whole.round1_only = true;
    ProtocolOutput po = run_protocol(
        *fx.net, nullptr, all.size(), [&](size_t b, size_t e) { return load_eval_batch(all, b, e, 32).y; }, s, {},
        whole);
    auto [lo, hi] = std::minmax_element(po.round1_maps.begin(), po.round1_maps.end());
    CHECK(range.min == *lo);
    CHECK(range.max == *hi);
    // ... and not simply shard 0's: the test would miss a per-shard range otherwise.
    SafeTensorsFile r0 = SafeTensorsFile::open(parts + "/round1-0-of-3.safetensors");
    std::vector<float> own = r0.read_f32_vector("round1_range");
    CHECK((own[0] != range.min || own[1] != range.max));
  }
  const std::string range_file = fx.dir + "/range/mask_range.json";
  write_mask_range(range, range_file);
  MaskRange back = read_mask_range(range_file);
  CHECK(back.min == range.min);  // 9 digits read back as the same float
  CHECK(back.max == range.max);
  CHECK(back.fingerprint == range.fingerprint);

  for (int i = 0; i < 3; ++i) fx.shard(s, fx.job(i, 3, 2, range_file), parts);
  check_same_outputs(single, fx.merge({parts}, fx.dir + "/merged"));

  // The mask scope matters on this data, so the equality above is no accident.
  const std::string image_scope = fx.single_run(fast_settings(false), fx.dir + "/image_scope");
  CHECK(read_text(image_scope + "/maps.safetensors") != read_text(single + "/maps.safetensors"));

  {  // the dataset scope over several shards needs the two passes
    CHECK_THROWS_WITH_AS(fx.shard(s, fx.job(0, 3), fx.dir + "/x"), doctest::Contains("--pass 1"), Error);
    CHECK_THROWS_WITH_AS(fx.shard(s, fx.job(0, 3, 2), fx.dir + "/x"), doctest::Contains("--mask-range"), Error);
    CHECK_THROWS_WITH_AS(fx.shard(fast_settings(false), fx.job(0, 3, 1), fx.dir + "/x"),
                         doctest::Contains("--mask-scope dataset"), Error);
    CHECK_THROWS_WITH_AS(fx.shard(fast_settings(false), fx.job(0, 3, 0, range_file), fx.dir + "/x"),
                         doctest::Contains("--mask-range is for --pass 2"), Error);
  }
  {  // pass 2 refuses a range of another run and needs its pass-1 file
    MaskRange other = range;
    other.fingerprint = "0123456789abcdef";
    write_mask_range(other, fx.dir + "/other_range.json");
    CHECK_THROWS_WITH_AS(fx.shard(s, fx.job(0, 3, 2, fx.dir + "/other_range.json"), parts),
                         doctest::Contains("another run"), Error);
    CHECK_THROWS_WITH_AS(fx.shard(s, fx.job(0, 3, 2, range_file), fx.dir + "/no_pass1"),
                         doctest::Contains("round1-0-of-3.safetensors"), Error);
  }
  {  // the pass-1 merge checks completeness too
    fs::create_directories(fx.dir + "/r1partial");
    fs::copy_file(parts + "/round1-0-of-3.safetensors", fx.dir + "/r1partial/round1-0-of-3.safetensors");
    CHECK_THROWS_WITH_AS(merge_round1({fx.dir + "/r1partial"}), doctest::Contains("missing"), Error);
    CHECK_THROWS_WITH_AS(merge_round1({parts + "/part-0-of-3.safetensors"}), doctest::Contains("mdps-eval-part"),
                         Error);
  }
}

TEST_CASE("a bad shard fails before any sampling") {
  Fixture fx("shard_bad");
  const EvalSettings s = fast_settings(false);
  // 5 batches: a sixth shard would be empty.
  CHECK_THROWS_WITH_AS(fx.shard(s, fx.job(0, 6), fx.dir + "/x"), doctest::Contains("fewer than 6 shards"), Error);
  CHECK_THROWS_WITH_AS(fx.shard(s, fx.job(3, 3), fx.dir + "/x"), doctest::Contains("0..2"), Error);
  CHECK_FALSE(fs::exists(fx.dir + "/x/part-0-of-6.safetensors"));
}
