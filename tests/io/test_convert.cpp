// `mdps convert`: PyTorch checkpoints made by tests/data/convert/make_fixtures.py
// (torch 1.13, zip and legacy formats) convert to exactly the tensors the
// script wrote next to them; the converted tiny ResNet reproduces torch's
// features; disallowed globals are refused unexecuted; malformed archives,
// pickles and storages fail with specific messages.
#include <doctest/doctest.h>
#include "engine/core/backend.h"
#include "engine/model/resnet.h"
#include "engine/io/safetensors.h"
#include "engine/io/torch_checkpoint.h"
#include "engine/io/torch_pickle.h"
#include "engine/io/zip_reader.h"
#include "tests/test_util.h"
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sys/wait.h>

using namespace mdps;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) { return test::source_dir() + "/tests/data/convert/" + name; }

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing fixture ", path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

SafeTensorsFile converted(const ConvertResult& r) { return SafeTensorsFile::from_bytes(r.writer.serialize(), "converted"); }

// Every tensor of `expected` is in the converted file with the same dtype,
// shape and bytes, and nothing else is.
void check_matches(const ConvertResult& r, const std::string& expected_path) {
  SafeTensorsFile got = converted(r), want = SafeTensorsFile::open(expected_path);
  CHECK(got.size() == want.size());
  CHECK(r.tensors == want.size());
  uint64_t bytes = 0;
  for (const std::string& n : want.names()) {
    INFO("tensor " << n);
    REQUIRE(got.has(n));
    const StTensorInfo &g = got.info(n), &w = want.info(n);
    CHECK(g.dtype == w.dtype);
    CHECK(g.shape == w.shape);
    REQUIRE(g.bytes() == w.bytes());
    CHECK(std::memcmp(got.raw(n), want.raw(n), size_t(w.bytes())) == 0);
    bytes += w.bytes();
  }
  CHECK(r.bytes == bytes);
}

ConvertResult convert_bytes(const std::vector<uint8_t>& b, const ConvertOptions& opt = {}) {
  return convert_torch_checkpoint(b.data(), b.size(), "mem.pt", opt);
}

// The message converting these bytes throws ("" if it succeeds).
std::string error_of(const std::vector<uint8_t>& b, const ConvertOptions& opt = {}) {
  try {
    convert_bytes(b, opt);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void check_rejects(const std::vector<uint8_t>& b, const std::string& expected, const ConvertOptions& opt = {}) {
  std::string msg = error_of(b, opt);
  INFO("message: " << msg);
  CHECK(msg.rfind("mem.pt", 0) == 0);  // names the file first
  CHECK(msg.find(expected) != std::string::npos);
}

// ---- hand-written pickles ----------------------------------------------------

struct Pickle {
  std::string b = "\x80\x02";
  Pickle& op(const std::string& s) { b += s; return *this; }
  Pickle& str(const std::string& s) {
    b += 'X';
    for (int k = 0; k < 4; ++k) b += char((s.size() >> (8 * k)) & 0xFF);
    b += s;
    return *this;
  }
  Pickle& i32(int32_t v) {
    b += 'J';
    for (int k = 0; k < 4; ++k) b += char((uint32_t(v) >> (8 * k)) & 0xFF);
    return *this;
  }
  Pickle& global(const std::string& module, const std::string& name) { b += "c" + module + "\n" + name + "\n"; return *this; }
  Pickle& ints(const std::vector<int32_t>& v) {
    op("(");
    for (int32_t x : v) i32(x);
    return op("t");
  }
  std::vector<uint8_t> bytes() const { return std::vector<uint8_t>(b.begin(), b.end()); }
};

// {"w": tensor(storage '0' of `numel` floats, offset, size, stride)} as torch.save writes it.
std::string tensor_dict(int32_t numel, int32_t offset, const std::vector<int32_t>& size,
                        const std::vector<int32_t>& stride, const std::string& storage = "FloatStorage") {
  Pickle p;
  p.global("collections", "OrderedDict").op(")R(").str("w").global("torch._utils", "_rebuild_tensor_v2");
  p.op("((").str("storage").global("torch", storage).str("0").str("cpu").i32(numel).op("tQ");
  p.i32(offset).ints(size).ints(stride).op("\x89}tRu.");
  return p.b;
}

// A stored (uncompressed), non-ZIP64 archive; `method` marks every entry.
std::vector<uint8_t> make_zip(const std::vector<std::pair<std::string, std::string>>& files, uint16_t method = 0) {
  std::string out, cd;
  auto put = [](std::string& s, uint64_t v, int n) {
    for (int k = 0; k < n; ++k) s += char((v >> (8 * k)) & 0xFF);
  };
  for (auto& [name, data] : files) {
    uint32_t crc = crc32_ieee(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    uint64_t off = out.size();
    put(out, 0x04034b50, 4); put(out, 20, 2); put(out, 0, 2); put(out, method, 2); put(out, 0, 4);
    put(out, crc, 4); put(out, data.size(), 4); put(out, data.size(), 4); put(out, name.size(), 2); put(out, 0, 2);
    out += name + data;
    put(cd, 0x02014b50, 4); put(cd, 20, 2); put(cd, 20, 2); put(cd, 0, 2); put(cd, method, 2); put(cd, 0, 4);
    put(cd, crc, 4); put(cd, data.size(), 4); put(cd, data.size(), 4); put(cd, name.size(), 2); put(cd, 0, 2);
    put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 4); put(cd, off, 4);
    cd += name;
  }
  uint64_t cd_off = out.size();
  out += cd;
  put(out, 0x06054b50, 4); put(out, 0, 4); put(out, files.size(), 2); put(out, files.size(), 2);
  put(out, cd.size(), 4); put(out, cd_off, 4); put(out, 0, 2);
  return std::vector<uint8_t>(out.begin(), out.end());
}

std::string floats(std::initializer_list<float> v) {
  return std::string(reinterpret_cast<const char*>(std::data(v)), v.size() * sizeof(float));
}

uint32_t rd32(const std::vector<uint8_t>& b, size_t p) {
  uint32_t v;
  std::memcpy(&v, b.data() + p, 4);
  return v;
}
size_t find_sig(const std::vector<uint8_t>& b, uint32_t sig, bool last = false) {
  size_t found = std::string::npos;
  for (size_t p = 0; p + 4 <= b.size(); ++p)
    if (rd32(b, p) == sig) {
      found = p;
      if (!last) break;
    }
  REQUIRE(found != std::string::npos);
  return found;
}

}  // namespace

TEST_CASE("both formats, pickle protocols 1/2/4, convert to the tensors torch wrote (dtypes, strides, offsets, empty, 0-dim)") {
  for (const char* file : {"dtypes.pt", "dtypes_legacy.pth", "dtypes_p4.pt", "dtypes_p1_legacy.pth"}) {
    INFO(file);
    ConvertResult r = convert_torch_file(fixture(file), {});
    CHECK(r.format == (std::string(file).find("legacy") != std::string::npos ? "legacy" : "zip"));
    CHECK(r.used_key.empty());
    CHECK(r.notes.empty());
    check_matches(r, fixture("dtypes.expected.safetensors"));
    SafeTensorsFile f = converted(r);
    CHECK(f.info("transposed").shape == Shape{6, 4});
    CHECK(f.info("empty").shape == Shape{0, 3});
    CHECK(f.info("scalar").shape == Shape{});
    CHECK(f.info("bf16").dtype == StDType::F32);
    CHECK(f.info("bool").dtype == StDType::I64);
    CHECK(f.read_i64("i64") == std::vector<int64_t>{-3, 0, int64_t(1) << 40});
    CHECK(f.read_i64("u8") == std::vector<int64_t>{0, 200, 255, 1});
    CHECK(f.metadata().at("format") == "pt");
  }
}

TEST_CASE("a DataParallel checkpoint under 'state_dict' loses 'module.' and its non-tensor entries") {
  for (const char* file : {"dataparallel.pt", "dataparallel_legacy.pth"}) {
    INFO(file);
    ConvertResult r = convert_torch_file(fixture(file), {});
    CHECK(r.used_key == "state_dict");
    check_matches(r, fixture("dataparallel.expected.safetensors"));
    REQUIRE(r.notes.size() == 2);
    CHECK(r.notes[0] == "skipped 'module.extra' (int)");
    CHECK(r.notes[1] == "stripped 'module.' from 4 names");
    CHECK(converted(r).read_i64("bn.num_batches_tracked") == std::vector<int64_t>{12});
    CHECK(converted(r).metadata().at("state_dict_key") == "state_dict");
  }
  SUBCASE("--key and --strip-prefix") {
    ConvertOptions opt;
    opt.key = "state_dict";
    opt.strip_prefix = "conv.";
    ConvertResult r = convert_torch_file(fixture("dataparallel.pt"), opt);
    SafeTensorsFile f = converted(r);
    CHECK(f.has("weight"));
    CHECK(f.has("bias"));
    CHECK(f.has("bn.running_mean"));
    CHECK(r.notes.back() == "stripped 'conv.' from 2 names");
    opt.key = "epoch";
    CHECK_THROWS_WITH_AS(convert_torch_file(fixture("dataparallel.pt"), opt),
                         doctest::Contains("entry 'epoch' is a int, not a dict"), Error);
    opt.key = "weights";
    CHECK_THROWS_WITH_AS(convert_torch_file(fixture("dataparallel.pt"), opt),
                         doctest::Contains("no entry 'weights' at the top level; entries: 'state_dict', 'epoch'"), Error);
  }
}

TEST_CASE("the converted torchvision-style ResNet loads and reproduces torch's features") {
  SafeTensorsFile feats = SafeTensorsFile::open(fixture("resnet.features.safetensors"));
  for (const char* file : {"resnet.pt", "resnet_legacy.pth"}) {
    INFO(file);
    ConvertResult r = convert_torch_file(fixture(file), {});
    check_matches(r, fixture("resnet.expected.safetensors"));
    SafeTensorsFile f = converted(r);
    CHECK(f.has("layer2.0.downsample.1.running_var"));
    CHECK(f.read_i64("layer3.0.bn2.num_batches_tracked") == std::vector<int64_t>{5});
    ResNetFeatures net = ResNetFeatures::load(f, "", 3, cpu_backend());
    CHECK(net.blocks_per_layer() == std::vector<int>{1, 1, 1});
    CHECK(net.channels(3) == 16);
    auto out = net.forward(imagenet_normalise(feats.read_f32("image")), {1, 2, 3});
    for (int l = 1; l <= 3; ++l) {
      INFO("layer" << l);
      const Tensor& want = feats.read_f32("layer" + std::to_string(l));
      CHECK(out[size_t(l - 1)].shape() == want.shape());
      CHECK(test::rel_l2(out[size_t(l - 1)].to_vector(), want.to_vector()) < 1e-5);
    }
  }
}

TEST_CASE("disallowed globals are refused by name and never executed") {
  // A checkpoint torch.save wrote around an object whose __reduce__ is os.system.
  CHECK_THROWS_WITH_AS(convert_torch_file(fixture("evil.pt"), {}),
                       doctest::Contains("global 'posix.system' is not allowed"), Error);

  // Hand-written: calling os.system would create the marker file.
  const std::string dir = test::temp_dir("convert_evil");
  const std::string marker = dir + "/pwned";
  Pickle p;
  p.global("os", "system").op("(").str("touch " + marker).op("tR.");
  check_rejects(make_zip({{"a/data.pkl", p.b}}), "global 'os.system' is not allowed");
  // The same call as the object pickle of a legacy checkpoint (after a real header).
  const std::vector<uint8_t> real = read_bytes(fixture("dataparallel_legacy.pth"));
  PyArena arena;
  StorageLoader none = [](const std::string&, StDType, int64_t) -> TorchStorage* { throw Error("no storages"); };
  size_t header = 0;
  for (int k = 0; k < 3; ++k) {
    size_t used = 0;
    unpickle(real.data() + header, real.size() - header, arena, none, "scan", &used);
    header += used;
  }
  std::vector<uint8_t> legacy(real.begin(), real.begin() + std::ptrdiff_t(header));
  const auto evil = p.bytes();
  legacy.insert(legacy.end(), evil.begin(), evil.end());
  check_rejects(legacy, "global 'os.system' is not allowed");
  // In the header position it is simply not a checkpoint.
  check_rejects(evil, "not a PyTorch checkpoint");
  // Protocol 4's STACK_GLOBAL, nested inside a state dict.
  Pickle p4;
  p4.op("}").str("w").op("\x8c\x08" "builtins" "\x8c\x04" "eval" "\x93").str("__import__('os')").op("\x85R" "s.");
  check_rejects(make_zip({{"a/data.pkl", p4.b}}), "global 'builtins.eval' is not allowed");
  // Allowed names used the wrong way are refused too.
  Pickle p5;
  p5.global("torch", "FloatStorage").op(")R.");
  check_rejects(make_zip({{"a/data.pkl", p5.b}}), "'torch.FloatStorage' is not callable");
  Pickle p6;
  p6.global("torch", "ComplexFloatStorage").op(".");
  check_rejects(make_zip({{"a/data.pkl", p6.b}}), "storage type 'torch.ComplexFloatStorage' is not supported");
  CHECK_FALSE(fs::exists(marker));
}

TEST_CASE("hand-written zip checkpoints: a strided view, shared storage and the non-ZIP64 directory") {
  // w = storage[1:7] viewed as [3,2] transposed -> rows (1,3,5),(2,4,6) as [2,3] stride (1,2).
  auto zip = make_zip({{"a/data.pkl", tensor_dict(8, 1, {2, 3}, {1, 2})},
                       {"a/data/0", floats({0, 1, 2, 3, 4, 5, 6, 7})}});
  ConvertResult r = convert_bytes(zip);
  CHECK(converted(r).read_f32_vector("w") == std::vector<float>{1, 3, 5, 2, 4, 6});
  CHECK(r.bytes == 24);
  // A HalfStorage: 0x3c00 = 1, 0xc000 = -2.
  std::string half("\x00\x3c\x00\xc0", 4);
  auto hz = make_zip({{"a/data.pkl", tensor_dict(2, 0, {2}, {1}, "HalfStorage")}, {"a/data/0", half}});
  CHECK(converted(convert_bytes(hz)).read_f32_vector("w") == std::vector<float>{1, -2});
}

TEST_CASE("malformed checkpoints fail with specific messages") {
  const std::vector<uint8_t> good = read_bytes(fixture("dtypes.pt"));
  const std::string ok_pkl = tensor_dict(4, 0, {4}, {1});
  const std::string data = floats({1, 2, 3, 4});

  SUBCASE("truncated zip") {
    check_rejects(std::vector<uint8_t>(good.begin(), good.begin() + std::ptrdiff_t(good.size() / 2)),
                  "no end-of-central-directory record");
  }
  SUBCASE("bad central directory signature") {
    auto b = good;
    b[find_sig(b, 0x02014b50)] = 'X';
    check_rejects(b, "bad central directory signature for entry 0");
  }
  SUBCASE("central directory outside the archive") {
    auto b = make_zip({{"a/data.pkl", ok_pkl}, {"a/data/0", data}});
    size_t eocd = find_sig(b, 0x06054b50, true);
    b[eocd + 16] = 0xF0;  // cd offset
    b[eocd + 17] = 0xFF;
    check_rejects(b, "central directory (offset ");
    check_rejects(b, "lies outside the archive");
  }
  SUBCASE("ZIP64 record out of range") {
    auto b = good;
    size_t loc = find_sig(b, 0x07064b50, true);
    b[loc + 8 + 6] = 0x7F;
    check_rejects(b, "ZIP64 end-of-central-directory offset");
  }
  SUBCASE("local header offset out of range") {
    auto b = make_zip({{"a/data.pkl", ok_pkl}, {"a/data/0", data}});
    size_t cd = find_sig(b, 0x02014b50);
    b[cd + 42 + 3] = 0x40;
    check_rejects(b, "entry 'a/data.pkl': local header offset");
  }
  SUBCASE("compressed entry") {
    check_rejects(make_zip({{"a/data.pkl", ok_pkl}}, 8), "entry 'a/data.pkl' is compressed (method 8)");
  }
  SUBCASE("corrupted storage bytes") {
    auto b = make_zip({{"a/data.pkl", ok_pkl}, {"a/data/0", data}});
    b[30 + 10 + ok_pkl.size() + 30 + 8 + 2] ^= 0x40;  // inside a/data/0's bytes
    check_rejects(b, "entry 'a/data/0' is corrupted (CRC-32");
  }
  SUBCASE("zip without data.pkl") {
    check_rejects(make_zip({{"model/weights.bin", data}}), "without an <archive>/data.pkl entry");
  }
  SUBCASE("bad pickle opcode") {
    std::string pkl = ok_pkl;
    pkl[pkl.size() - 1] = char(0xff);  // STOP -> an opcode that does not exist
    check_rejects(make_zip({{"a/data.pkl", pkl}, {"a/data/0", data}}), "unknown opcode 0xff at offset");
  }
  SUBCASE("truncated pickle") {
    check_rejects(make_zip({{"a/data.pkl", ok_pkl.substr(0, 60)}, {"a/data/0", data}}), "pickle: truncated");
  }
  SUBCASE("stack underflow and missing memo") {
    check_rejects(make_zip({{"a/data.pkl", "\x80\x02R."}}), "stack underflow: REDUCE at offset 2");
    check_rejects(make_zip({{"a/data.pkl", "\x80\x02h\x05."}}), "BINGET at offset 2: memo entry 5 was never stored");
    check_rejects(make_zip({{"a/data.pkl", "\x80\x02K\x01" "e."}}), "APPENDS at offset 4 without a MARK");
  }
  SUBCASE("storage entry missing") {
    check_rejects(make_zip({{"a/data.pkl", ok_pkl}}), "storage '0' has no entry 'a/data/0'");
  }
  SUBCASE("storage shorter than declared") {
    check_rejects(make_zip({{"a/data.pkl", ok_pkl}, {"a/data/0", data.substr(0, 12)}}),
                  "storage '0' (F32[4]) needs more bytes than entry 'a/data/0' holds (12)");
  }
  SUBCASE("shape / stride beyond the storage") {
    check_rejects(make_zip({{"a/data.pkl", tensor_dict(4, 0, {2, 3}, {3, 1})}, {"a/data/0", data}}),
                  "tensor of size [2, 3], stride [3, 1], offset 0 reaches element 5 of storage '0', which has 4");
    check_rejects(make_zip({{"a/data.pkl", tensor_dict(4, 2, {3}, {1})}, {"a/data/0", data}}),
                  "offset 2 reaches element 4");
    check_rejects(make_zip({{"a/data.pkl", tensor_dict(4, 0, {2}, {1, 1})}, {"a/data/0", data}}), "differ in rank");
    check_rejects(make_zip({{"a/data.pkl", tensor_dict(4, 0, {-1}, {1})}, {"a/data/0", data}}),
                  "tensor size has a negative entry -1");
    check_rejects(make_zip({{"a/data.pkl", tensor_dict(4, 0, {65536, 65536, 65536, 65536}, {1, 1, 1, 1})},
                            {"a/data/0", data}}),
                  "overflows");
    check_rejects(make_zip({{"a/data.pkl", tensor_dict(4, 0, {3, 4}, {0, 1})}, {"a/data/0", data}}),
                  "has more elements than storage '0' (4): overlapping (expanded) tensors are not supported");
    // A huge stride on a dimension of size 1 addresses nothing and is fine.
    auto z = make_zip({{"a/data.pkl", tensor_dict(4, 0, {1, 4}, {2147483647, 1})}, {"a/data/0", data}});
    CHECK(converted(convert_bytes(z)).read_f32_vector("w") == std::vector<float>{1, 2, 3, 4});
  }
  SUBCASE("output budget") {
    ConvertOptions opt;
    opt.max_output_bytes = 15;
    check_rejects(make_zip({{"a/data.pkl", ok_pkl}, {"a/data/0", data}}),
                  "tensor 'w': the conversion would write more than 15 bytes", opt);
    opt.max_output_bytes = 16;
    CHECK(error_of(make_zip({{"a/data.pkl", ok_pkl}, {"a/data/0", data}}), opt).empty());
  }
  SUBCASE("no state dict") {
    Pickle list;
    list.op("]K\x01" "a.");
    check_rejects(make_zip({{"a/data.pkl", list.b}}), "the checkpoint holds a list, not a dict of tensors");
    Pickle empty;
    empty.op("}").str("epoch").op("K\x03s.");
    check_rejects(make_zip({{"a/data.pkl", empty.b}}), "no state dict found");
  }
  SUBCASE("two candidate state dicts, and names colliding after 'module.'") {
    std::string inner = tensor_dict(4, 0, {4}, {1});
    inner = inner.substr(2, inner.size() - 3);  // the OrderedDict without PROTO and STOP
    Pickle two;
    two.op("}(").str("ema_a").op(inner).str("ema_b").op(inner).op("u.");
    check_rejects(make_zip({{"a/data.pkl", two.b}, {"a/data/0", data}}),
                  "several entries hold tensors ('ema_a', 'ema_b'); choose one with --key");
    std::string w = tensor_dict(4, 0, {4}, {1});
    std::string body = w.substr(w.find("X\x01\x00\x00\x00w", 0, 6), w.size() - 1 - w.find("X\x01\x00\x00\x00w", 0, 6) - 1);
    // {"w": t, "module.w": t}
    Pickle dup;
    dup.global("collections", "OrderedDict").op(")R(").op(body).str("module.w").op(body.substr(6)).op("u.");
    check_rejects(make_zip({{"a/data.pkl", dup.b}, {"a/data/0", data}}),
                  "tensors 'w' and 'module.w' would both be named 'w'");
  }
  SUBCASE("not a checkpoint at all") {
    check_rejects({'h', 'e', 'l', 'l', 'o'}, "not a PyTorch checkpoint (neither a zip archive nor the legacy magic number)");
    check_rejects({}, "empty file");
  }
}

TEST_CASE("malformed legacy checkpoints") {
  const std::vector<uint8_t> good = read_bytes(fixture("dataparallel_legacy.pth"));
  REQUIRE_NOTHROW(convert_bytes(good));
  SUBCASE("truncated storage data") {
    check_rejects(std::vector<uint8_t>(good.begin(), good.end() - 3), "truncated: storage '");
  }
  // Where the first storage's element count lies: after the five pickles.
  PyArena arena;
  StorageLoader dummy = [&](const std::string&, StDType, int64_t) { return arena.make_storage(); };
  size_t data_start = 0;
  for (int k = 0; k < 5; ++k) {
    size_t used = 0;
    unpickle(good.data() + data_start, good.size() - data_start, arena, dummy, "scan", &used);
    data_start += used;
  }
  int64_t first_count = 0;
  std::memcpy(&first_count, good.data() + data_start, 8);
  REQUIRE(first_count > 0);
  SUBCASE("truncated before an element count") {
    check_rejects(std::vector<uint8_t>(good.begin(), good.begin() + std::ptrdiff_t(data_start + 4)),
                  "truncated: no element count for storage");
  }
  SUBCASE("element count disagreeing with the pickle") {
    auto b = good;
    b[data_start] = 99;
    b[data_start + 1] = 0;
    check_rejects(b, "holds 99 elements, the pickle declares " + std::to_string(first_count));
  }
  SUBCASE("wrong protocol version") {
    auto b = good;
    // The magic number pickle takes 15 bytes; the next is \x80\x02 M \xe9\x03 . (1001); make it 1002.
    REQUIRE(b[15] == 0x80);
    REQUIRE(b[18] == 0xe9);
    b[18] = 0xea;
    check_rejects(b, "unsupported legacy protocol version");
  }
}

TEST_CASE("the zip reader on its own") {
  const std::vector<uint8_t> good = read_bytes(fixture("resnet.pt"));
  ZipReader z(good.data(), good.size(), "resnet.pt");
  REQUIRE(z.find("resnet/data.pkl"));
  REQUIRE(z.find("resnet/version"));
  const ZipEntry& v = *z.find("resnet/version");
  CHECK(std::string(reinterpret_cast<const char*>(z.bytes(v)), size_t(v.size)) == "3\n");
  CHECK(z.find("resnet/nothing") == nullptr);
  CHECK(crc32_ieee(reinterpret_cast<const uint8_t*>("123456789"), 9) == 0xCBF43926u);  // the standard check value
}

TEST_CASE("the unpickler's value tree") {
  PyArena arena;
  StorageLoader none = [](const std::string&, StDType, int64_t) -> TorchStorage* { throw Error("no storages"); };
  // Protocol 0 text opcodes: {'a': [1, 2.5, True, None], 'b': (u'x', -7)} with a memo round trip.
  std::string p0 = "(dp0\nS'a'\np1\n(lp2\nI1\naF2.5\naI01\naNasS'b'\n(Vx\nL-7L\ntp3\ns.";
  const PyValue* v = unpickle(reinterpret_cast<const uint8_t*>(p0.data()), p0.size(), arena, none, "p0");
  REQUIRE(v->kind == PyKind::Dict);
  const PyValue* a = v->get("a");
  REQUIRE(a);
  REQUIRE(a->items.size() == 4);
  CHECK(a->items[0]->i == 1);
  CHECK(a->items[1]->f == 2.5);
  CHECK((a->items[2]->kind == PyKind::Bool && a->items[2]->b));
  CHECK(a->items[3]->kind == PyKind::None);
  const PyValue* b = v->get("b");
  REQUIRE(b);
  CHECK(b->items[0]->s == "x");
  CHECK(b->items[1]->i == -7);
  // LONG1 sign extension and a repeated key replacing the value, as in Python.
  static const char p2_bytes[] = "\x80\x02}(X\x01\x00\x00\x00k\x8a\x02\x00\x80X\x01\x00\x00\x00k\x8a\x01\xffu.";
  std::string p2(p2_bytes, sizeof p2_bytes - 1);  // the literal's length, not a count by hand
  const PyValue* d = unpickle(reinterpret_cast<const uint8_t*>(p2.data()), p2.size(), arena, none, "p2");
  REQUIRE(d->entries.size() == 1);
  CHECK(d->get("k")->i == -1);
  static const char p3_bytes[] = "\x80\x02\x8a\x02\x00\x80.";
  std::string p3(p3_bytes, sizeof p3_bytes - 1);
  CHECK(unpickle(reinterpret_cast<const uint8_t*>(p3.data()), p3.size(), arena, none, "p3")->i == -32768);
}

TEST_CASE("mdps convert on the command line") {
  const std::string bin = test::binary_dir() + "/mdps";
  REQUIRE_MESSAGE(fs::exists(bin), "build the mdps binary first: ", bin);
  const std::string dir = test::temp_dir("convert_cli");
  std::string out;
  CHECK(test::run_command(bin + " convert '" + fixture("dataparallel_legacy.pth") + "' '" + dir + "/dp.safetensors'", out) == 0);
  CHECK(out.find("legacy-format checkpoint, state dict under 'state_dict'") != std::string::npos);
  CHECK(out.find("note: skipped 'module.extra' (int)") != std::string::npos);
  CHECK(out.find("4 tensors, 96 bytes of tensor data") != std::string::npos);
  CHECK(SafeTensorsFile::open(dir + "/dp.safetensors").has("conv.weight"));

  CHECK(test::run_command(bin + " convert '" + fixture("evil.pt") + "' '" + dir + "/evil.safetensors'", out) == 1);
  CHECK(out.rfind("mdps: error: ", 0) == 0);
  CHECK(out.find("evil.pt") != std::string::npos);
  CHECK(out.find("'posix.system' is not allowed") != std::string::npos);
  CHECK_FALSE(fs::exists(dir + "/evil.safetensors"));
  CHECK(fs::is_empty(dir) == false);  // only dp.safetensors; no temp file left behind
  size_t files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  CHECK(files == 1);
}
