#include "engine/eval/shard.h"
#include "engine/core/json_mini.h"
#include "engine/io/safetensors.h"
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace fs = std::filesystem;

namespace mdps {
namespace {

constexpr const char* kPartKind = "mdps-eval-part";
constexpr const char* kRound1Kind = "mdps-round1-part";
constexpr const char* kRangeKind = "mdps-mask-range";
constexpr const char* kMetaKey = "mdps_part";

struct Fnv1a {
  uint64_t h = 1469598103934665603ull;
  void add(const void* data, size_t n) {
    auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  void add(const std::string& s) {
    add(s.data(), s.size());
    add("\0", 1);  // a separator, so ("ab","c") and ("a","bc") differ
  }
  std::string hex() const {
    char buf[20];
    std::snprintf(buf, sizeof buf, "%016" PRIx64, h);
    return buf;
  }
};

// Doubles that must read back exactly (seconds are summed at the merge).
std::string exact(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string category_of(const Dataset& ds) {  // as evaluate() names it
  std::string name = fs::path(ds.root).filename().string();
  if (name.empty()) name = fs::path(ds.root).parent_path().filename().string();
  return name;
}

// ---- reading the JSON of a part ---------------------------------------------

struct Meta {
  std::string file;
  json::Value v;
  std::string where = cat("metadata '", kMetaKey, "'");
  const json::Value& get(const std::string& key, json::Kind kind) const {
    const json::Value* x = v.find(key);
    MDPS_CHECK(x && x->kind == kind, file, ": ", where, " has no ", json::kind_name(kind), " '", key,
               "' (not a file of this mdps version?)");
    return *x;
  }
  const std::string& str(const std::string& key) const { return get(key, json::Kind::String).str; }
  double number(const std::string& key) const { return get(key, json::Kind::Number).number; }
  size_t count(const std::string& key) const {
    const json::Value& x = get(key, json::Kind::Number);
    MDPS_CHECK(x.is_uint, file, ": ", where, ": '", key, "' is not a non-negative integer");
    return size_t(x.uint);
  }
};

Meta read_meta(const SafeTensorsFile& f, const std::string& kind) {
  Meta m;
  m.file = f.path();
  auto it = f.metadata().find(kMetaKey);
  MDPS_CHECK(it != f.metadata().end(), f.path(), ": no '", kMetaKey, "' metadata: not a part written by `mdps eval --shard`");
  m.v = json::parse(it->second, f.path() + " metadata");
  MDPS_CHECK(m.v.kind == json::Kind::Object, f.path(), ": metadata '", kMetaKey, "' is not a JSON object");
  const std::string& k = m.str("kind");
  MDPS_CHECK(k == kind, f.path(), ": a '", k, "' file where a '", kind, "' file was expected",
             kind == std::string(kRound1Kind) ? " (the pass-1 merge takes round1-*.safetensors files)"
                                              : " (--merge takes the part-*.safetensors files of final passes)");
  return m;
}

// The common header of part and pass-1 files.
struct PartHeader {
  std::string file, fingerprint;
  ShardId shard;
  size_t images = 0, begin = 0, end = 0;
  double seconds = 0;
};

PartHeader read_header(const Meta& m) {
  PartHeader h;
  h.file = m.file;
  h.fingerprint = m.str("fingerprint");
  h.shard.index = int(m.count("shard"));
  h.shard.count = int(m.count("shards"));
  h.images = m.count("images");
  h.begin = m.count("begin");
  h.end = m.count("end");
  h.seconds = m.number("seconds");
  // Every shard holds at least one image, which also bounds what a damaged count could allocate.
  MDPS_CHECK(h.shard.count >= 1 && h.shard.index < h.shard.count && size_t(h.shard.count) <= h.images &&
                 h.begin <= h.end && h.end <= h.images,
             m.file,
             ": inconsistent shard ", h.shard.index, "/", h.shard.count, " with images ", h.begin, "..", h.end, " of ",
             h.images);
  return h;
}

std::string header_json(const char* kind, const ShardId& id, const ShardRange& r, size_t total,
                        const std::string& fingerprint, double seconds) {
  return cat("{\"kind\": ", json::quote(kind), ", \"engine_version\": ", json::quote(MDPS_VERSION),
             ", \"shard\": ", id.index, ", \"shards\": ", id.count, ", \"images\": ", total, ", \"begin\": ", r.begin,
             ", \"end\": ", r.end, ", \"first_batch\": ", r.first_batch, ", \"fingerprint\": ", json::quote(fingerprint),
             ", \"seconds\": ", exact(seconds));
}

// Orders the headers by shard and checks they form one complete run:
// one fingerprint, one shard count, every index once, ranges tiling the list.
std::vector<size_t> check_complete(const std::vector<PartHeader>& parts, const std::string& what) {
  MDPS_CHECK(!parts.empty(), what, ": no parts given");
  const PartHeader& first = parts[0];
  std::vector<size_t> by_index(size_t(first.shard.count), SIZE_MAX);
  for (size_t k = 0; k < parts.size(); ++k) {
    const PartHeader& p = parts[k];
    MDPS_CHECK(p.fingerprint == first.fingerprint, what, ": ", p.file, " (fingerprint ", p.fingerprint,
               ") and ", first.file, " (fingerprint ", first.fingerprint,
               ") are parts of different runs: their test lists, settings or model differ");
    MDPS_CHECK(p.shard.count == first.shard.count, what, ": ", p.file, " is shard ", p.shard.str(), " but ",
               first.file, " is one of ", first.shard.count, " shards");
    size_t& slot = by_index[size_t(p.shard.index)];
    MDPS_CHECK(slot == SIZE_MAX, what, ": shard ", p.shard.str(), " is given twice: ", parts[slot].file, " and ",
               p.file);
    slot = k;
  }
  std::string missing;
  for (size_t i = 0; i < by_index.size(); ++i)
    if (by_index[i] == SIZE_MAX) missing += cat(missing.empty() ? "" : ", ", i, "/", first.shard.count);
  MDPS_CHECK(missing.empty(), what, ": shard ", missing, " missing (", parts.size(), " of ", first.shard.count,
             " parts found)");
  size_t next = 0;
  for (size_t k : by_index) {
    const PartHeader& p = parts[k];
    MDPS_CHECK(p.begin == next && p.images == first.images, what, ": ", p.file, " covers images ", p.begin, "..",
               p.end, " of ", p.images, ", expected to start at ", next, " of ", first.images);
    next = p.end;
  }
  MDPS_CHECK(next == first.images, what, ": the parts cover ", next, " of ", first.images, " images");
  return by_index;
}

std::string own_fingerprint(const Dataset& ds, const std::vector<Sample>& samples, const EvalSettings& st,
                            const std::string& identity) {
  return eval_fingerprint(category_of(ds), ds.layout, samples, st.to_json(), identity);
}

}  // namespace

std::string ShardId::str() const { return cat(index, "/", count); }

ShardId parse_shard(const std::string& text, const std::string& what) {
  auto slash = text.find('/');
  auto digits = [](const std::string& s) {
    return !s.empty() && s.size() <= 9 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  std::string i = slash == std::string::npos ? "" : text.substr(0, slash);
  std::string n = slash == std::string::npos ? "" : text.substr(slash + 1);
  MDPS_CHECK(digits(i) && digits(n), what, ": '", text, "' is not INDEX/COUNT (e.g. 0/4, the index 0-based)");
  ShardId id{std::stoi(i), std::stoi(n)};
  MDPS_CHECK(id.count >= 1, what, ": '", text, "': the shard count must be at least 1");
  MDPS_CHECK(id.index < id.count, what, ": '", text, "': the index must be below the count (0-based: 0..",
             id.count - 1, ")");
  return id;
}

ShardRange shard_range(size_t images, int batch, ShardId id) {
  MDPS_CHECK(batch >= 1, "--batch must be >= 1, got ", batch);
  MDPS_CHECK(id.count >= 1 && id.index >= 0 && id.index < id.count, "shard ", id.str(), ": the index must be in 0..",
             id.count - 1);
  const size_t B = size_t(batch), K = (images + B - 1) / B, n = size_t(id.count), i = size_t(id.index);
  MDPS_CHECK(n <= K, "--shard ", id.str(), ": the test list has ", images, " images in ", K, " batches of ", batch,
             ", fewer than ", n, " shards; every shard needs at least one batch (use at most ", K, " shards)");
  ShardRange r;
  r.first_batch = i * K / n;
  const size_t last = (i + 1) * K / n;
  r.batches = last - r.first_batch;
  r.begin = r.first_batch * B;
  r.end = std::min(images, last * B);
  return r;
}

std::string file_digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MDPS_CHECK(in.good(), "cannot read '", path, "'");
  Fnv1a h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    h.add(buf.data(), size_t(in.gcount()));
  }
  MDPS_CHECK(in.eof(), "reading '", path, "' failed");
  return h.hex();
}

std::string eval_fingerprint(const std::string& category, const std::string& layout,
                             const std::vector<Sample>& samples, const std::string& settings_json,
                             const std::string& identity) {
  Fnv1a h;
  for (const std::string& s : {std::string(MDPS_VERSION), category, layout, settings_json, identity}) h.add(s);
  for (const Sample& s : samples) {
    h.add(s.image_path);
    h.add(s.defect_type);
    h.add(std::to_string(s.label));
    h.add(s.mask_path);
  }
  return h.hex();
}

std::string part_file_name(ShardId id) { return cat("part-", id.index, "-of-", id.count, ".safetensors"); }
std::string round1_file_name(ShardId id) { return cat("round1-", id.index, "-of-", id.count, ".safetensors"); }

ShardOutcome evaluate_shard(const UNet& model, const ResNetFeatures* features, const Dataset& ds,
                            const EvalSettings& st, const ShardJob& job, const std::string& out_dir,
                            const EvalProgressFn& progress) {
  st.validate();
  const bool two_passes = st.dataset_scope && st.rounds.round1.t_start > 0;
  MDPS_CHECK(job.pass >= 0 && job.pass <= 2, "--pass must be 1 or 2, got ", job.pass);
  MDPS_CHECK(job.pass == 0 || two_passes, "--pass ", job.pass,
             " needs --mask-scope dataset and two rounds (--round1-t > 0): only then does the mask need a pass over "
             "the whole set");
  MDPS_CHECK(job.pass != 0 || !two_passes || job.shard.count == 1, "--shard ", job.shard.str(),
             " with --mask-scope dataset: the threshold needs the round-1 maps of every shard; run --pass 1 on each "
             "shard, merge with `mdps eval --merge --pass 1`, then --pass 2 --mask-range (docs/scale-out.md)");
  MDPS_CHECK(job.pass == 2 || job.mask_range.empty(), "--mask-range is for --pass 2");
  MDPS_CHECK(job.pass != 2 || !job.mask_range.empty(), "--pass 2 needs --mask-range FILE (the mask_range.json of "
             "`mdps eval --merge --pass 1`)");

  const std::vector<Sample> samples = limit_samples(ds.test, st.limit);
  check_normal_and_defective(samples, ds.root);  // as a single run: the whole list needs both
  const ShardRange range = shard_range(samples.size(), st.batch, job.shard);
  const std::vector<Sample> mine(samples.begin() + std::ptrdiff_t(range.begin),
                                 samples.begin() + std::ptrdiff_t(range.end));
  const std::string fingerprint = own_fingerprint(ds, samples, st, job.identity);
  const int S = model.config().image_size;
  const size_t plane = size_t(S) * S;
  ProtocolPart part;
  part.first_batch = range.first_batch;
  fs::create_directories(out_dir);
  ShardOutcome outcome;
  outcome.range = range;
  outcome.total_images = samples.size();

  if (job.pass == 1) {
    for (size_t i = 0; i < mine.size(); ++i) load_eval_batch(mine, i, i + 1, S);  // fail before sampling
    part.round1_only = true;
    ProtocolOutput po = run_protocol(
        model, features, mine.size(), [&](size_t b, size_t e) { return load_eval_batch(mine, b, e, S).y; }, st,
        progress, part);
    auto [lo, hi] = std::minmax_element(po.round1_maps.begin(), po.round1_maps.end());
    SafeTensorsWriter w;
    w.add_f32("round1_maps", {int64_t(mine.size()), S, S}, po.round1_maps);
    w.add_f32("round1_range", {2}, {*lo, *hi});
    w.set_metadata(kMetaKey, header_json(kRound1Kind, job.shard, range, samples.size(), fingerprint, po.seconds) + "}");
    outcome.path = (fs::path(out_dir) / round1_file_name(job.shard)).string();
    w.write(outcome.path);
    outcome.seconds = po.seconds;
    return outcome;
  }

  std::vector<float> round1;
  double pass1_seconds = 0;
  if (job.pass == 2) {
    MaskRange mr = read_mask_range(job.mask_range);
    MDPS_CHECK(mr.fingerprint == fingerprint && mr.shards == job.shard.count && mr.images == samples.size(),
               "--mask-range ", job.mask_range, ": made from the pass-1 files of another run (fingerprint ",
               mr.fingerprint, ", ", mr.shards, " shards, ", mr.images, " images; this shard: ", fingerprint, ", ",
               job.shard.count, " shards, ", samples.size(), " images)");
    const std::string r1 = (fs::path(out_dir) / round1_file_name(job.shard)).string();
    MDPS_CHECK(fs::exists(r1), "--pass 2: no ", r1, ": pass 2 reuses the round-1 maps that --pass 1 of shard ",
               job.shard.str(), " wrote into the same --out");
    SafeTensorsFile f = SafeTensorsFile::open(r1);
    PartHeader h = read_header(read_meta(f, kRound1Kind));
    MDPS_CHECK(h.fingerprint == fingerprint && h.shard.index == job.shard.index && h.begin == range.begin &&
                   h.end == range.end,
               r1, ": not pass 1 of this shard's run (fingerprint ", h.fingerprint, ", shard ", h.shard.str(),
               "; expected ", fingerprint, ", shard ", job.shard.str(), ")");
    MDPS_CHECK(f.has("round1_maps") && f.info("round1_maps").shape == Shape({int64_t(mine.size()), S, S}), r1,
               ": no round1_maps of [", mine.size(), ",", S, ",", S, "]");
    round1 = f.read_f32_vector("round1_maps");
    MDPS_CHECK(round1.size() == mine.size() * plane, r1, ": round1_maps has the wrong size");
    part.round1_maps = &round1;
    part.round1_min = mr.min;
    part.round1_max = mr.max;
    pass1_seconds = h.seconds;
  }

  PanelOptions panels;
  if (job.panels) panels = PanelOptions((fs::path(out_dir) / "panels").string(), job.image_threshold, job.threshold_source);
  EvalResult r = evaluate_samples(model, features, mine, st, panels, progress, part);
  r.seconds += pass1_seconds;

  std::string list;
  for (const Sample& s : mine)
    list += cat(list.empty() ? "" : ", ", "[", json::quote(s.image_path), ", ", json::quote(s.defect_type), ", ",
                s.label, ", ", json::quote(s.mask_path), "]");
  // Results depend on the device and (on the CPU) the thread count: the merge
  // says so when its parts differ in them.
  const std::string compute = cat(model.backend().name(), ", ", model.backend().threads(), " threads");
  std::string meta = cat(header_json(kPartKind, job.shard, range, samples.size(), fingerprint, r.seconds),
                         ", \"compute\": ", json::quote(compute), ", \"category\": ", json::quote(category_of(ds)), ", \"layout\": ", json::quote(ds.layout),
                         ", \"map_size\": [", r.H, ", ", r.W, "], \"settings\": ", json::quote(st.to_json()),
                         ", \"extra\": ", json::quote(job.extra_json), ", \"samples\": [", list, "]}");
  const int64_t n = int64_t(mine.size());
  SafeTensorsWriter w;
  w.add_f32("anomaly_maps", {n, r.H, r.W}, r.maps);
  w.add_f32("gt_masks", {n, r.H, r.W}, std::vector<float>(r.masks.begin(), r.masks.end()));
  std::vector<int64_t> labels;
  for (const Sample& s : mine) labels.push_back(s.label);
  w.add_i64("labels", {n}, labels);
  w.add_f32("image_scores", {n}, r.scores);
  w.set_metadata(kMetaKey, meta);
  outcome.path = (fs::path(out_dir) / part_file_name(job.shard)).string();
  w.write(outcome.path);
  outcome.seconds = r.seconds;
  return outcome;
}

std::vector<std::string> find_part_files(const std::vector<std::string>& inputs, const std::string& prefix) {
  std::vector<std::string> files;
  for (const std::string& in : inputs) {
    if (fs::is_regular_file(in)) {
      files.push_back(in);
      continue;
    }
    MDPS_CHECK(fs::is_directory(in), "--merge ", in, ": no such file or folder");
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(in)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file() && name.rfind(prefix + "-", 0) == 0 && name.find("-of-") != std::string::npos &&
          e.path().extension() == ".safetensors")
        found.push_back(e.path().string());
    }
    MDPS_CHECK(!found.empty(), "--merge ", in, ": no ", prefix, "-<i>-of-<n>.safetensors files in the folder");
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

MergedEval merge_parts(const std::vector<std::string>& inputs) {
  std::vector<std::string> files = find_part_files(inputs, "part");
  std::vector<SafeTensorsFile> st;
  std::vector<Meta> metas;
  std::vector<PartHeader> headers;
  for (const std::string& f : files) {
    st.push_back(SafeTensorsFile::open(f));
    metas.push_back(read_meta(st.back(), kPartKind));
    headers.push_back(read_header(metas.back()));
  }
  std::vector<size_t> order = check_complete(headers, "--merge");

  MergedEval m;
  m.shards = int(order.size());
  const Meta& m0 = metas[order[0]];
  m.settings_json = m0.str("settings");
  m.extra_json = m0.str("extra");
  EvalResult& r = m.result;
  r.name = m0.str("category");
  r.layout = m0.str("layout");
  const json::Value& size0 = m0.get("map_size", json::Kind::Array);
  MDPS_CHECK(size0.items.size() == 2 && size0.items[0].is_uint && size0.items[1].is_uint, m0.file,
             ": map_size is not [H, W]");
  r.H = int(size0.items[0].uint);
  r.W = int(size0.items[1].uint);
  const size_t hw = size_t(r.H) * r.W;
  for (size_t k : order) {
    const Meta& meta = metas[k];
    const PartHeader& h = headers[k];
    const SafeTensorsFile& f = st[k];
    const size_t n = h.end - h.begin;
    const json::Value& list = meta.get("samples", json::Kind::Array);
    MDPS_CHECK(list.items.size() == n, meta.file, ": ", list.items.size(), " samples listed for images ", h.begin,
               "..", h.end);
    for (const char* t : {"anomaly_maps", "gt_masks"})
      MDPS_CHECK(f.has(t) && f.info(t).shape == Shape({int64_t(n), r.H, r.W}), meta.file, ": no ", t, " of [", n, ",",
                 r.H, ",", r.W, "]");
    for (const char* t : {"labels", "image_scores"})
      MDPS_CHECK(f.has(t) && f.info(t).shape == Shape({int64_t(n)}), meta.file, ": no ", t, " of [", n, "]");
    std::vector<int64_t> labels = f.read_i64("labels");
    for (size_t i = 0; i < n; ++i) {
      const json::Value& s = list.items[i];
      MDPS_CHECK(s.kind == json::Kind::Array && s.items.size() == 4 && s.items[0].kind == json::Kind::String &&
                     s.items[1].kind == json::Kind::String && s.items[2].is_uint &&
                     s.items[3].kind == json::Kind::String && int64_t(s.items[2].uint) == labels[i],
                 meta.file, ": sample ", i, " is not [file, type, label, mask] matching the labels tensor");
      r.samples.push_back({s.items[0].str, s.items[1].str, int(s.items[2].uint), s.items[3].str});
    }
    std::vector<float> maps = f.read_f32_vector("anomaly_maps"), masks = f.read_f32_vector("gt_masks"),
                       scores = f.read_f32_vector("image_scores");
    r.maps.insert(r.maps.end(), maps.begin(), maps.end());
    for (float v : masks) r.masks.push_back(v > 0.f ? 1 : 0);
    r.scores.insert(r.scores.end(), scores.begin(), scores.end());
    r.seconds += h.seconds;
  }
  MDPS_CHECK(r.maps.size() == r.samples.size() * hw, "--merge: map sizes do not add up");
  std::string computes;
  for (size_t k : order) {
    const std::string& c = metas[k].str("compute");
    if (computes.find(c) == std::string::npos) computes += cat(computes.empty() ? "" : "; ", c);
  }
  if (computes.find(';') != std::string::npos)
    m.note = cat("the parts were computed on different devices or thread counts (", computes,
                 "): the merge is valid, but not bit-identical to a single run on one of them");
  check_normal_and_defective(r.samples, r.name);
  r.seconds_per_image = r.seconds / double(r.samples.size());
  compute_eval_metrics(r);
  return m;
}

MaskRange merge_round1(const std::vector<std::string>& inputs) {
  std::vector<std::string> files = find_part_files(inputs, "round1");
  std::vector<PartHeader> headers;
  std::vector<std::pair<float, float>> ranges;
  for (const std::string& path : files) {
    SafeTensorsFile f = SafeTensorsFile::open(path);
    headers.push_back(read_header(read_meta(f, kRound1Kind)));
    MDPS_CHECK(f.has("round1_range") && f.info("round1_range").shape == Shape({2}), path, ": no round1_range of [2]");
    std::vector<float> v = f.read_f32_vector("round1_range");
    ranges.push_back({v[0], v[1]});
  }
  std::vector<size_t> order = check_complete(headers, "--merge --pass 1");
  MaskRange m;
  m.fingerprint = headers[0].fingerprint;
  m.shards = headers[0].shard.count;
  m.images = headers[0].images;
  m.min = ranges[order[0]].first;
  m.max = ranges[order[0]].second;
  for (size_t k : order) {
    m.min = std::min(m.min, ranges[k].first);
    m.max = std::max(m.max, ranges[k].second);
    m.seconds += headers[k].seconds;
  }
  return m;
}

void write_mask_range(const MaskRange& r, const std::string& path) {
  char lo[32], hi[32];
  std::snprintf(lo, sizeof lo, "%.9g", double(r.min));
  std::snprintf(hi, sizeof hi, "%.9g", double(r.max));
  std::string text = cat("{\n  \"kind\": ", json::quote(kRangeKind), ",\n  \"engine_version\": ",
                         json::quote(MDPS_VERSION), ",\n  \"fingerprint\": ", json::quote(r.fingerprint),
                         ",\n  \"shards\": ", r.shards, ",\n  \"images\": ", r.images, ",\n  \"min\": ", lo,
                         ",\n  \"max\": ", hi, ",\n  \"seconds\": ", exact(r.seconds), "\n}\n");
  json::parse(text, path);
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  write_text_atomic(path, text);
}

MaskRange read_mask_range(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MDPS_CHECK(in.good(), "--mask-range ", path, ": cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  Meta m;
  m.file = "--mask-range " + path;
  m.where = "the JSON";
  m.v = json::parse(ss.str(), "--mask-range " + path);
  MDPS_CHECK(m.v.kind == json::Kind::Object && m.v.find("kind") && m.v.find("kind")->str == kRangeKind,
             "--mask-range ", path, ": not a mask_range.json written by `mdps eval --merge --pass 1`");
  MaskRange r;
  r.fingerprint = m.str("fingerprint");
  r.shards = int(m.count("shards"));
  r.images = m.count("images");
  r.min = float(m.number("min"));
  r.max = float(m.number("max"));
  r.seconds = m.number("seconds");
  MDPS_CHECK(std::isfinite(r.min) && std::isfinite(r.max) && r.min <= r.max, "--mask-range ", path, ": min ", r.min,
             " and max ", r.max, " are not a range");
  return r;
}

}  // namespace mdps
