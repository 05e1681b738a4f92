#include "bench/harness/pytorch_twin_runner.h"
#include "engine/core/common.h"
#include <sys/wait.h>
#include <unistd.h>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#ifndef MDPS_BENCH_DIR
#define MDPS_BENCH_DIR ""
#endif

namespace mdps {

namespace fs = std::filesystem;

namespace {

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs a shell command; returns its exit status (-1 when it could not start) and stdout.
int run_capture(const std::string& cmd, std::string& out) {
  std::fflush(stdout);
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  if (st == -1) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

}  // namespace

std::string twin_python(const TwinOptions& o) {
  if (!o.python.empty()) return o.python;
  if (const char* e = std::getenv("MDPS_BENCH_PYTHON"); e && *e) return e;
  return "/usr/bin/python3";
}

const char* twin_python_source(const TwinOptions& o) {
  if (!o.python.empty()) return "--python";
  if (const char* e = std::getenv("MDPS_BENCH_PYTHON"); e && *e) return "MDPS_BENCH_PYTHON";
  return "default";
}

std::string twin_version_note(const std::string& v) {
  if (v.empty() || v[0] >= '2' || !std::isdigit(static_cast<unsigned char>(v[0]))) return "";
  return cat("note: the twin ran PyTorch ", v, "; users install 2.x from PyPI: set MDPS_BENCH_PYTHON or --python to ",
             "a venv with it (bench/README.md)");
}

std::string twin_script(const TwinOptions& o) {
  if (!o.script.empty()) return o.script;
  return (fs::path(MDPS_BENCH_DIR) / "pytorch_twin.py").string();
}

void check_twin_available(const TwinOptions& o) {
  MDPS_CHECK(o.rounds >= 1, "--rounds must be >= 1, got ", o.rounds);
  const std::string python = twin_python(o), from = twin_python_source(o);
  const std::string named = from == "default" ? cat("the default interpreter '", python, "'")
                                               : cat(from, " '", python, "'");
  const bool has_slash = python.find('/') != std::string::npos;
  MDPS_CHECK(!has_slash || ::access(python.c_str(), X_OK) == 0, named,
             ": not found or not executable (the twin needs a Python with torch: --python PATH or "
             "MDPS_BENCH_PYTHON=PATH, e.g. a venv made as bench/README.md says)");
  const std::string script = twin_script(o);
  MDPS_CHECK(fs::is_regular_file(script), "the PyTorch twin '", script,
             "' is missing (pass --twin PATH to bench/pytorch_twin.py)");
  std::string out;
  int rc = run_capture(cat(shell_quote(python), " -c 'import torch' 2>/dev/null"), out);
  MDPS_CHECK(rc == 0, named, " ", rc == 127 ? "was not found" : "cannot import torch",
             " (python3 -m venv ~/torch2 && ~/torch2/bin/pip install torch numpy, then --python ~/torch2/bin/python "
             "or MDPS_BENCH_PYTHON; or Debian's python3-torch with /usr/bin/python3)");
}

json::Value run_twin(const TwinOptions& o, const std::vector<std::string>& args) {
  std::string cmd = cat(shell_quote(twin_python(o)), " ", shell_quote(twin_script(o)));
  for (const auto& a : args) cmd += " " + shell_quote(a);
  cmd += " --json";
  std::string out;
  int rc = run_capture(cmd, out);
  MDPS_CHECK(rc == 0, "the PyTorch twin failed (exit status ", rc, "): ", cmd);
  // The JSON object is the last non-empty line.
  size_t e = out.find_last_not_of(" \n\r\t");
  MDPS_CHECK(e != std::string::npos, "the PyTorch twin printed nothing: ", cmd);
  size_t b = out.rfind('\n', e);
  std::string line = out.substr(b == std::string::npos ? 0 : b + 1, e + 1 - (b == std::string::npos ? 0 : b + 1));
  json::Value v = json::parse(line, "the PyTorch twin's output");
  MDPS_CHECK(v.kind == json::Kind::Object, "the PyTorch twin's output is not a JSON object: ", line);
  return v;
}

double twin_number(const json::Value& v, const char* key) {
  const json::Value* m = v.find(key);
  MDPS_CHECK(m && m->kind == json::Kind::Number, "the PyTorch twin's output has no number '", key, "'");
  return m->number;
}

TempFile::~TempFile() {
  std::error_code ec;
  fs::remove(path, ec);
}

std::string temp_path(const std::string& stem, const std::string& ext) {
  return (fs::temp_directory_path() / cat(stem, "-", ::getpid(), ext)).string();
}

}  // namespace mdps
