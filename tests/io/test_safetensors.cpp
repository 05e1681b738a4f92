// The safetensors reader/writer: round trips, dtype conversions, strict
// rejection of malformed files, every shared reference file, and the atomic
// writer's failure behaviour.
#include <doctest/doctest.h>
#include "engine/core/json_mini.h"
#include "engine/io/safetensors.h"
#include "tests/test_util.h"
#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sys/resource.h>

using namespace mdps;
namespace fs = std::filesystem;

namespace {

// 8-byte little-endian length + header text + `data_bytes` zero bytes.
std::vector<uint8_t> image(const std::string& header, size_t data_bytes = 0) {
  std::vector<uint8_t> b(8);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) b[size_t(i)] = uint8_t(n >> (8 * i));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data_bytes, 0);
  return b;
}

// The message from_bytes throws for this image ("" if it is accepted).
std::string error_of(const std::vector<uint8_t>& bytes) {
  try {
    SafeTensorsFile::from_bytes(bytes, "mem.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void check_rejects(const std::vector<uint8_t>& bytes, const std::string& expected) {
  std::string msg = error_of(bytes);
  INFO("message: " << msg);
  CHECK(msg.find("mem.safetensors") == 0);  // names the file first
  CHECK(msg.find(expected) != std::string::npos);
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

std::vector<uint8_t> u16_bytes(const std::vector<uint16_t>& v) {
  std::vector<uint8_t> b(v.size() * 2);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

const std::string kOneF32 = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

}  // namespace

TEST_CASE("round trip of F32, F64, I64 and metadata through a file") {
  std::string dir = test::temp_dir("st_roundtrip");
  std::string path = dir + "/rt.safetensors";
  auto f32 = test::random_floats(6, 7);
  std::vector<double> f64 = {0.1, -1e300, 5e-324, 1.0 / 3.0};
  std::vector<int64_t> i64 = {INT64_MIN, -1, 0, (int64_t(1) << 53) + 1, INT64_MAX};
  const std::string long_value = std::string(5000, 'x') + "\"quoted\"\n\ttab \\ é ✓ \x01";
  Tensor t = Tensor::from_vector({3, 1}, {1.5f, -2.f, 0.f});

  SafeTensorsWriter w;
  w.add_f32("z.weights", {2, 3}, f32);
  w.add_f64("auroc", {2, 2}, f64);
  w.add_i64("labels", {5}, i64);
  w.add("m.tensor", t);
  w.add_f32("empty", {0, 4}, {});
  w.set_metadata("config", long_value);
  w.set_metadata("seed", "42");
  w.write(path);

  SafeTensorsFile f = SafeTensorsFile::open(path);
  CHECK(f.path() == path);
  CHECK(f.names() == std::vector<std::string>{"auroc", "empty", "labels", "m.tensor", "z.weights"});
  CHECK((8 + f.header_bytes()) % 8 == 0);
  CHECK(f.file_bytes() == 8 + f.header_bytes() + 6 * 4 + 4 * 8 + 5 * 8 + 3 * 4);
  CHECK(f.metadata().size() == 2);
  CHECK(f.metadata().at("config") == long_value);
  CHECK(f.metadata().at("seed") == "42");

  CHECK(f.info("z.weights").dtype == StDType::F32);
  CHECK(f.info("z.weights").shape == Shape{2, 3});
  Tensor r = f.read_f32("z.weights");
  CHECK(r.shape() == Shape{2, 3});
  CHECK(r.to_vector() == f32);
  CHECK(f.read_f32("m.tensor").to_vector() == t.to_vector());
  CHECK(f.read_f32("empty").numel() == 0);
  CHECK(f.info("auroc").dtype == StDType::F64);
  CHECK(f.read_f64("auroc") == f64);
  CHECK(f.info("labels").dtype == StDType::I64);
  CHECK(f.read_i64("labels") == i64);
  // Conversions across kinds.
  CHECK(f.read_f64("z.weights")[4] == double(f32[4]));
  CHECK(f.read_f32("labels").at(1) == -1.f);
  CHECK_THROWS_WITH_AS(f.read_i64("z.weights"), doctest::Contains("needs an integer dtype"), Error);
  CHECK_THROWS_WITH_AS(f.info("nope"), doctest::Contains("rt.safetensors: no tensor named 'nope'"), Error);
  CHECK_FALSE(f.has("nope"));
  CHECK(f.has("labels"));
}

TEST_CASE("the writer rejects bad additions") {
  SafeTensorsWriter w;
  w.add_f32("a", {2}, {1, 2});
  CHECK_THROWS_WITH_AS(w.add_f32("a", {2}, {1, 2}), doctest::Contains("'a' added twice"), Error);
  CHECK_THROWS_WITH_AS(w.add_f32("b", {2, 2}, {1, 2}), doctest::Contains("needs 4 values, got 2"), Error);
  CHECK_THROWS_WITH_AS(w.add_i64("__metadata__", {1}, {1}), doctest::Contains("reserved"), Error);
  CHECK_THROWS_WITH_AS(w.add_f32("c", {-1}, {}), doctest::Contains("invalid shape"), Error);
}

TEST_CASE("F16 conversion: hand-computed values") {
  CHECK(half_to_float(0x3C00) == 1.0f);
  CHECK(half_to_float(0xC000) == -2.0f);
  CHECK(half_to_float(0x3555) == 0.333251953125f);
  CHECK(half_to_float(0x7BFF) == 65504.0f);
  CHECK(half_to_float(0x0400) == std::ldexp(1.0f, -14));     // smallest normal
  CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));     // smallest subnormal
  CHECK(half_to_float(0x03FF) == 1023 * std::ldexp(1.0f, -24));  // largest subnormal
  CHECK(half_to_float(0x8001) == -std::ldexp(1.0f, -24));
  CHECK(std::isinf(half_to_float(0x7C00)));
  CHECK(half_to_float(0x7C00) > 0);
  CHECK(half_to_float(0xFC00) < 0);
  CHECK(std::isnan(half_to_float(0x7E00)));
  CHECK(half_to_float(0x8000) == 0.0f);
  CHECK(std::signbit(half_to_float(0x8000)));
}

TEST_CASE("F16 conversion agrees with the definition on every bit pattern") {
  for (uint32_t h = 0; h < 65536; ++h) {
    int s = int(h >> 15), e = int((h >> 10) & 31), m = int(h & 1023);
    float got = half_to_float(uint16_t(h));
    if (e == 31) {
      CHECK((m ? std::isnan(got) : std::isinf(got)));
      CHECK(std::signbit(got) == bool(s));
      continue;
    }
    double mag = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(double(1024 + m), e - 25);
    double want = s ? -mag : mag;
    if (double(got) != want) FAIL_CHECK("half 0x" << std::hex << h << " -> " << got << ", want " << want);
  }
}

TEST_CASE("BF16 conversion: hand-computed values") {
  CHECK(bf16_to_float(0x3F80) == 1.0f);
  CHECK(bf16_to_float(0xC040) == -3.0f);
  CHECK(bf16_to_float(0x3E80) == 0.25f);
  CHECK(bf16_to_float(0x0001) == std::ldexp(1.0f, -133));  // subnormal
  CHECK(std::isinf(bf16_to_float(0x7F80)));
  CHECK(bf16_to_float(0xFF80) < 0);
  CHECK(std::isnan(bf16_to_float(0x7FC0)));
}

TEST_CASE("F16, BF16 and integer tensors read through the file") {
  SafeTensorsWriter w;
  w.add_raw("h", StDType::F16, {2, 2}, u16_bytes({0x3C00, 0xC000, 0x0001, 0x7C00}));
  w.add_raw("b", StDType::BF16, {3}, u16_bytes({0x3F80, 0xC040, 0x0001}));
  std::vector<int32_t> i32 = {-5, 7, INT32_MIN};
  std::vector<uint8_t> i32b(12);
  std::memcpy(i32b.data(), i32.data(), 12);
  w.add_raw("i", StDType::I32, {3}, i32b);
  w.add_raw("u", StDType::U8, {2}, {255, 0});
  w.add_raw("s", StDType::I8, {2}, {0x80, 0x7F});
  w.add_raw("q", StDType::BOOL, {2}, {1, 0});
  SafeTensorsFile f = SafeTensorsFile::from_bytes(w.serialize(), "conv");

  Tensor h = f.read_f32("h");
  CHECK(h.shape() == Shape{2, 2});
  CHECK(h.at(0) == 1.0f);
  CHECK(h.at(1) == -2.0f);
  CHECK(h.at(2) == std::ldexp(1.0f, -24));
  CHECK(std::isinf(h.at(3)));
  auto b = f.read_f32_vector("b");
  CHECK(b[0] == 1.0f);
  CHECK(b[1] == -3.0f);
  CHECK(b[2] == std::ldexp(1.0f, -133));
  CHECK(f.read_i64("i") == std::vector<int64_t>{-5, 7, INT32_MIN});
  CHECK(f.read_i64("u") == std::vector<int64_t>{255, 0});
  CHECK(f.read_i64("s") == std::vector<int64_t>{-128, 127});
  CHECK(f.read_i64("q") == std::vector<int64_t>{1, 0});
  CHECK(f.read_f64("i")[2] == double(INT32_MIN));
  CHECK(f.read_f32("u").at(0) == 255.f);
  CHECK_THROWS_WITH_AS(f.read_i64("h"), doctest::Contains("'h' is F16"), Error);
}

TEST_CASE("valid edge cases are accepted") {
  // Space padding after the object (what writers emit for alignment).
  auto f = SafeTensorsFile::from_bytes(image("{" + kOneF32 + "}   \n\t ", 8), "pad");
  CHECK(f.names() == std::vector<std::string>{"a"});
  // No tensors at all.
  CHECK(SafeTensorsFile::from_bytes(image("{}"), "empty").size() == 0);
  // Zero-sized tensors share an offset; names() follows the data, not the names.
  auto g = SafeTensorsFile::from_bytes(
      image(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
            R"("a":{"dtype":"I64","shape":[1],"data_offsets":[4,12]},)"
            R"("z":{"dtype":"F16","shape":[0,3],"data_offsets":[12,12]},)"
            R"("__metadata__":{"k":"v\u00e9\ud83d\ude00"}})",
            12),
      "order");
  CHECK(g.names() == std::vector<std::string>{"b", "a", "z"});
  CHECK(g.metadata().at("k") == "v\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(g.read_f32("z").shape() == Shape{0, 3});
}

TEST_CASE("malformed files are rejected with a specific message") {
  SUBCASE("too short") {
    check_rejects({}, "file is too short (0 bytes)");
    check_rejects({1, 0, 0, 0, 0}, "file is too short (5 bytes)");
  }
  SUBCASE("header length") {
    auto b = image("{}");
    b[5] = 1;  // 2^40 + 2
    check_rejects(b, "is absurdly large");
    b = image("{}");
    b[0] = 100;
    check_rejects(b, "header length 100 runs past the end of the file (10 bytes)");
  }
  SUBCASE("not JSON") {
    check_rejects(image(R"({"a": {"dtype": )"), "header is not valid JSON: unexpected end of input at byte 16");
    check_rejects(image(R"({"a" 1})"), "expected ':' after object key at byte 5");
    check_rejects(image("{\"a\":\"\xff\"}"), "invalid UTF-8 in string");
    check_rejects(image(R"({"a":[1,]})"), "unexpected character ']'");
    check_rejects(image(R"({"a":01})"), "leading zeros");
    check_rejects(image(R"({"a":"\q"})"), "invalid escape");
    check_rejects(image(R"({"a":"\ud800"})"), "unpaired high surrogate");
    check_rejects(image(std::string(100, '[') + std::string(100, ']')), "nesting deeper than 64 levels");
  }
  SUBCASE("trailing garbage after the object") {
    check_rejects(image("{" + kOneF32 + "} x", 8), "trailing characters after the JSON value at byte");
    check_rejects(image("{}{}"), "trailing characters after the JSON value at byte 2");
  }
  SUBCASE("not an object") {
    check_rejects(image("[1, 2]"), "header is not a JSON object (it is an array)");
    check_rejects(image("\"x\""), "header is not a JSON object (it is a string)");
    check_rejects(image(" {}"), "header must begin with '{'");
  }
  SUBCASE("entry fields") {
    check_rejects(image(R"({"a":[1]})"), "tensor 'a': entry must be an object, not an array");
    check_rejects(image(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8), "tensor 'a': missing \"dtype\"");
    check_rejects(image(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8), "tensor 'a': missing \"shape\"");
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[2]}})", 8), "tensor 'a': missing \"data_offsets\"");
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8),
                  "tensor 'a': unexpected key 'x'");
  }
  SUBCASE("dtype") {
    check_rejects(image(R"({"a":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}})", 2), "unknown dtype 'F8'");
    check_rejects(image(R"({"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype 'f32'");
    check_rejects(image(R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8), "dtype must be a string");
  }
  SUBCASE("shape") {
    const std::string msg = "tensor 'a': shape must be a list of non-negative integers";
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), msg);
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8), msg);
    check_rejects(image(R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8), msg);
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}})", 8), msg);
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}})", 8),
                  "tensor 'a': shape [4294967296, 4294967296, 4] is absurdly large");
    // numel fits int64 but the byte count does not.
    check_rejects(image(R"({"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}})", 8),
                  "is absurdly large");
  }
  SUBCASE("data_offsets") {
    const std::string msg = "tensor 'a': data_offsets must be two non-negative integers";
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8), msg);
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", 8), msg);
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-1,8]}})", 8), msg);
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":{"0":8}}})", 8), msg);
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8),
                  "data_offsets [8, 4] begin is after end");
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 7),
                  "data_offsets [0, 8] run past the end of the data section (7 bytes)");
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
                  "data_offsets [0, 8] hold 8 bytes but F32 [3] needs 12");
  }
  SUBCASE("overlap") {
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                        12),
                  "tensors 'a' and 'b' overlap");
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                        8),
                  "overlap");
  }
  SUBCASE("gaps") {
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                        R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                        12),
                  "gap in the data section (unsorted/gaps): bytes 4..8 before tensor 'b'");
    check_rejects(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
                  "bytes 0..4 before tensor 'a'");
    check_rejects(image("{" + kOneF32 + "}", 12), "its last 4 bytes (8..12) belong to no tensor");
  }
  SUBCASE("duplicate names") {
    check_rejects(image("{" + kOneF32 + "," + kOneF32 + "}", 8), "duplicate key \"a\" at byte");
    check_rejects(image(R"({"__metadata__":{"k":"1","k":"2"}})"), "duplicate key \"k\"");
  }
  SUBCASE("metadata") {
    check_rejects(image(R"({"__metadata__":{"k":1}})"), "__metadata__ value for key 'k' is not a string (it is a number)");
    check_rejects(image(R"({"__metadata__":["x"]})"), "__metadata__ must be an object of strings, not an array");
  }
}

TEST_CASE("malformed files on disk name the path") {
  std::string dir = test::temp_dir("st_bad");
  SafeTensorsWriter w;
  w.add_f32("w", {4, 4}, test::random_floats(16, 3));
  std::string good = dir + "/good.safetensors";
  w.write(good);
  auto bytes = read_file(good);
  REQUIRE(bytes.size() > 20);

  std::string trunc = dir + "/truncated.safetensors";
  write_file(trunc, std::vector<uint8_t>(bytes.begin(), bytes.end() - 10));
  CHECK_THROWS_WITH_AS(SafeTensorsFile::open(trunc),
                       doctest::Contains((trunc + ": tensor 'w': data_offsets [0, 64] run past the end").c_str()), Error);
  write_file(trunc, std::vector<uint8_t>(bytes.begin(), bytes.begin() + 20));
  CHECK_THROWS_WITH_AS(SafeTensorsFile::open(trunc), doctest::Contains((trunc + ": header length").c_str()), Error);
  write_file(trunc, std::vector<uint8_t>(bytes.begin(), bytes.begin() + 3));
  CHECK_THROWS_WITH_AS(SafeTensorsFile::open(trunc), doctest::Contains((trunc + ": file is too short (3 bytes)").c_str()),
                       Error);
  write_file(trunc, {});
  CHECK_THROWS_WITH_AS(SafeTensorsFile::open(trunc), doctest::Contains("file is too short (0 bytes)"), Error);
  CHECK_THROWS_WITH_AS(SafeTensorsFile::open(dir + "/missing.safetensors"),
                       doctest::Contains(("'" + dir + "/missing.safetensors': no such file").c_str()), Error);
  CHECK_THROWS_WITH_AS(SafeTensorsFile::open(dir), doctest::Contains("not a regular file"), Error);
}

TEST_CASE("every shared safetensors file reads") {
  size_t files = 0, most = 0;
  for (const std::string& dir : {test::golden_dir(), test::shared_dir() + "/weights"}) {
    for (const std::string& path : files_in(dir)) {
      INFO(path);
      ++files;
      SafeTensorsFile f = SafeTensorsFile::open(path);
      auto names = f.names();
      most = std::max(most, names.size());
      CHECK(!names.empty());
      uint64_t bytes = 0;
      for (auto& n : names) {
        INFO(n);
        const StTensorInfo& info = f.info(n);
        int64_t numel = 1;
        for (auto d : info.shape) numel *= d;
        CHECK(info.bytes() == uint64_t(numel) * st_dtype_size(info.dtype));
        bytes += info.bytes();
        Tensor t = f.read_f32(n);
        CHECK(t.shape() == info.shape);
        REQUIRE(t.numel() == numel);
        if (info.dtype == StDType::F32) {
          const float* p = t.data();
          int64_t bad = 0;
          for (int64_t i = 0; i < numel; ++i) bad += !std::isfinite(p[i]);
          CHECK(bad == 0);
        }
        if (!st_dtype_is_float(info.dtype)) CHECK(f.read_i64(n).size() == size_t(numel));
        if (info.dtype == StDType::F64) CHECK(f.read_f64(n).size() == size_t(numel));
      }
      CHECK(bytes == f.data_bytes());
    }
  }
  MESSAGE("read ", files, " files; the largest holds ", most, " tensors");
  CHECK(files >= 2);
  CHECK(most >= 100);  // the U-Net files hold hundreds of parameters
}

TEST_CASE("re-writing the largest shared file keeps every byte") {
  std::string largest;
  size_t most = 0;
  for (const std::string& path : files_in(test::golden_dir())) {
    size_t n = SafeTensorsFile::open(path).size();
    if (n > most) most = n, largest = path;
  }
  if (largest.empty()) return;
  SafeTensorsFile src = SafeTensorsFile::open(largest);
  SafeTensorsWriter w;
  for (auto& n : src.names()) {
    const auto& info = src.info(n);
    w.add_raw(n, info.dtype, info.shape, std::vector<uint8_t>(src.raw(n), src.raw(n) + info.bytes()));
  }
  for (auto& [k, v] : src.metadata()) w.set_metadata(k, v);
  std::string out = test::temp_dir("st_copy") + "/copy.safetensors";
  w.write(out);
  SafeTensorsFile dst = SafeTensorsFile::open(out);
  CHECK(dst.metadata() == src.metadata());
  CHECK(dst.data_bytes() == src.data_bytes());
  auto names = src.names();
  std::sort(names.begin(), names.end());
  CHECK(dst.names() == names);
  for (auto& n : names) {
    INFO(n);
    CHECK(dst.info(n).shape == src.info(n).shape);
    CHECK(std::memcmp(dst.raw(n), src.raw(n), src.info(n).bytes()) == 0);
  }
}

TEST_CASE("the atomic writer leaves no temporary file and keeps the old file on failure") {
  std::string dir = test::temp_dir("st_atomic");
  std::string path = dir + "/ckpt.safetensors";
  auto listing = [&] {
    std::vector<std::string> v;
    for (auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
  };

  SafeTensorsWriter first;
  first.add_f32("x", {2}, {1, 2});
  first.write(path);
  CHECK(listing() == std::vector<std::string>{"ckpt.safetensors"});
  auto old_bytes = read_file(path);

  SUBCASE("overwriting replaces the file") {
    SafeTensorsWriter second;
    second.add_f32("y", {3}, {4, 5, 6});
    second.write(path);
    CHECK(listing() == std::vector<std::string>{"ckpt.safetensors"});
    CHECK(SafeTensorsFile::open(path).names() == std::vector<std::string>{"y"});
  }
  SUBCASE("a missing directory is an error naming the path") {
    CHECK_THROWS_WITH_AS(first.write(dir + "/no/such/dir/x.safetensors"),
                         doctest::Contains(("cannot write '" + dir + "/no/such/dir/x.safetensors': cannot create").c_str()),
                         Error);
    CHECK(listing() == std::vector<std::string>{"ckpt.safetensors"});
  }
  SUBCASE("a failing write (file size limit) keeps the old file") {
    // RLIMIT_FSIZE makes write() fail with EFBIG partway, like a full disk.
    struct rlimit saved;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = saved;
    small.rlim_cur = 4096;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    SafeTensorsWriter big;
    big.add_f32("big", {100000}, std::vector<float>(100000, 1.f));
    std::string msg;
    try {
      big.write(path);
    } catch (const Error& e) {
      msg = e.what();
    }
    setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, old_handler);
    CHECK(msg.find("cannot write '" + path + "': File too large") != std::string::npos);
    CHECK(listing() == std::vector<std::string>{"ckpt.safetensors"});
    CHECK(read_file(path) == old_bytes);
  }
  SUBCASE("a failing rename (destination is a directory) removes the temporary file") {
    std::string target = dir + "/adir";
    fs::create_directories(target + "/inner");
    CHECK_THROWS_WITH_AS(first.write(target), doctest::Contains("cannot rename"), Error);
    CHECK(listing() == std::vector<std::string>{"adir", "ckpt.safetensors"});
    CHECK(fs::is_directory(target + "/inner"));
  }
}

TEST_CASE("json: strings, numbers and quoting") {
  json::Value v = json::parse(R"( {"s":"a\"b\\c\/\n\u0041\u00e9","n":[0,-1,2.5,1e3,18446744073709551615,18446744073709551616],"t":true,"f":false,"z":null} )", "t");
  REQUIRE(v.kind == json::Kind::Object);
  CHECK(v.find("s")->str == "a\"b\\c/\nA\xc3\xa9");
  const auto& n = v.find("n")->items;
  CHECK(n[0].is_uint);
  CHECK(n[0].uint == 0);
  CHECK_FALSE(n[1].is_uint);
  CHECK(n[1].number == -1);
  CHECK_FALSE(n[2].is_uint);
  CHECK(n[2].number == 2.5);
  CHECK_FALSE(n[3].is_uint);
  CHECK(n[4].is_uint);
  CHECK(n[4].uint == UINT64_MAX);
  CHECK_FALSE(n[5].is_uint);
  CHECK(v.find("t")->boolean);
  CHECK(v.find("z")->kind == json::Kind::Null);
  std::string odd = std::string("q\"\\\n\x01\x1f") + "é";
  CHECK(json::parse(json::quote(odd), "q").str == odd);
  CHECK_THROWS_WITH_AS(json::parse("tru", "lit"), doctest::Contains("lit: invalid literal at byte 0"), Error);
  CHECK_THROWS_WITH_AS(json::parse("\"a\nb\"", "ctl"), doctest::Contains("unescaped control character"), Error);
  CHECK_THROWS_WITH_AS(json::parse("", "e"), doctest::Contains("unexpected end of input"), Error);
}

TEST_CASE("json::text writes a value back exactly") {
  const std::string in =
      R"({"a": [0, -1, 2.5, 0.12, 0.1000000000000000055511151231257827, 18446744073709551615], "s": "x\"y", "t": true, "z": null, "o": {}})";
  const json::Value v = json::parse(in, "t");
  const std::string out = json::text(v);
  // Short where %.15g reads back: 0.12, and the exact decimal of the double 0.1 as 0.1.
  CHECK(out == R"({"a": [0, -1, 2.5, 0.12, 0.1, 18446744073709551615], "s": "x\"y", "t": true, "z": null, "o": {}})");
  const json::Value back = json::parse(out, "back");
  CHECK(json::text(back) == out);
  const double third = 1.0 / 3.0;
  json::Value n;
  n.kind = json::Kind::Number;
  n.number = third;
  CHECK(json::parse(json::text(n), "third").number == third);  // needs 17 digits
  CHECK(json::text(n).size() > 15);
}

TEST_CASE("the fuzz seed corpus holds valid files") {
  auto seeds = files_in(test::source_dir() + "/tests/fuzz/corpus");
  CHECK(seeds.size() >= 3);
  for (auto& path : seeds) {
    INFO(path);
    SafeTensorsFile f = SafeTensorsFile::open(path);
    for (auto& n : f.names()) CHECK(f.read_f32(n).numel() == f.info(n).numel());
  }
}
