#include "tests/test_util.h"
#include <cstring>
#include <sys/wait.h>
#include <stdexcept>
#include <sstream>
#include <fstream>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <mutex>
#include <unistd.h>

namespace fs = std::filesystem;
namespace mdps::test {

static std::string env_or(const char* var, const std::string& fallback) {
  const char* v = std::getenv(var);
  return (v && *v) ? std::string(v) : fallback;
}

std::string shared_dir() { return env_or("MDPS_SHARED_DIR", MDPS_DEFAULT_SHARED_DIR); }
std::string golden_dir() { return env_or("MDPS_GOLDEN_DIR", shared_dir() + "/golden"); }
std::string source_dir() { return MDPS_SOURCE_DIR; }
std::string binary_dir() { return MDPS_BINARY_DIR; }

namespace {
struct TempDirs {
  std::mutex mu;
  std::vector<fs::path> dirs;
  ~TempDirs() {
    if (std::getenv("MDPS_KEEP_TEMP")) return;
    std::error_code ec;
    for (auto& d : dirs) fs::remove_all(d, ec);
  }
};
TempDirs& temp_dirs() { static TempDirs t; return t; }
}  // namespace

std::string temp_dir(const std::string& tag) {
  static int counter = 0;
  auto& t = temp_dirs();
  std::lock_guard<std::mutex> lock(t.mu);
  fs::path p = fs::temp_directory_path() /
               ("mdps_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  fs::remove_all(p);
  fs::create_directories(p);
  t.dirs.push_back(p);
  return p.string();
}

double rel_l2(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  if (den == 0) return num == 0 ? 0.0 : INFINITY;
  return std::sqrt(num / den);
}

double max_abs_diff(const float* a, const float* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

std::vector<float> random_floats(size_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

int run_command(const std::string& cmd, std::string& output) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) throw std::runtime_error("cannot run: " + cmd);
  char buf[4096];
  size_t n;
  output.clear();
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) output.append(buf, n);
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

json::Value last_json_line(const std::string& out) {
  const size_t e = out.find_last_not_of("\n");
  if (e == std::string::npos) throw std::runtime_error("no output, so no JSON line");
  const size_t b = out.rfind('\n', e), from = b == std::string::npos ? 0 : b + 1;
  return json::parse(out.substr(from, e + 1 - from), "the output's last line");
}

double json_number(const json::Value& v, const char* key) {
  const json::Value* m = v.find(key);
  if (!m) throw std::runtime_error(std::string("no key '") + key + "' in the JSON");
  return m->number;
}

int run_mdps(const std::string& args, const std::string& log) {
  const std::string bin = binary_dir() + "/mdps";
  if (!std::filesystem::exists(bin)) throw std::runtime_error("build the mdps binary first: " + bin);
  int st = std::system((bin + " " + args + " > " + log + " 2>&1").c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Tensor random_tensor(const Shape& s, uint64_t seed, float lo, float hi) {
  return Tensor::from_vector(s, random_floats(size_t(shape_numel(s)), seed, lo, hi));
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  const std::vector<float> va = a.to_vector(), vb = b.to_vector();
  // memcmp of an empty vector's data() (null) is undefined behaviour.
  return va.empty() || std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)) == 0;
}

}  // namespace mdps::test
