// Helpers shared by the test suites: where the reference data lives, test
// inputs, and how tensors are compared. One definition each: a suite that
// needs another helper adds it here.
#pragma once
#include <string>
#include <vector>
#include <cstdint>
#include <cmath>
#include "engine/core/json_mini.h"
#include "engine/core/tensor.h"

namespace mdps::test {

// MDPS_GOLDEN_DIR, else <source>/../shared/golden (resolved at configure time).
std::string golden_dir();
// MDPS_SHARED_DIR, else <source>/../shared.
std::string shared_dir();
std::string source_dir();
std::string binary_dir();
// A fresh, empty temporary directory (removed at process exit).
std::string temp_dir(const std::string& tag);

// ||a - b|| / ||b|| in double precision.
double rel_l2(const float* a, const float* b, size_t n);
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() ? rel_l2(a.data(), b.data(), a.size()) : INFINITY;
}
double max_abs_diff(const float* a, const float* b, size_t n);

// Deterministic pseudo-random floats in [lo, hi) for test inputs.
std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f);
// Runs a shell command line (stderr joined to stdout); returns its exit
// status (-1 when it did not exit normally) and fills `output`.
int run_command(const std::string& cmd, std::string& output);
// `mdps ARGS` of this build, its output into the file `log`; the exit status.
int run_mdps(const std::string& args, const std::string& log);
// The JSON object on the last non-empty line of a command's output (what
// `--json` prints); throws, quoting the output's end, when there is none.
json::Value last_json_line(const std::string& out);
// v[key] as a number; throws naming the key when it is absent.
double json_number(const json::Value& v, const char* key);
// A whole file as text ("" when it cannot be read).
std::string read_text(const std::string& path);

// A host tensor of random_floats.
Tensor random_tensor(const Shape& s, uint64_t seed, float lo = -1.f, float hi = 1.f);
// The same shape and the same bits (so -0 differs from 0 and a NaN equals the
// same NaN): what "bit for bit" means in every suite. Either may be on a device.
bool same_bits(const Tensor& a, const Tensor& b);

}  // namespace mdps::test
