// Running bench/pytorch_twin.py (the U-Net in PyTorch) as a subprocess for
// `mdps bench unet|sampler --vs-pytorch`: finding the interpreter and the
// script, checking that torch imports, and reading the twin's JSON line.
#pragma once
#include "engine/core/json_mini.h"
#include <string>
#include <vector>

namespace mdps {

struct TwinOptions {
  std::string python;  // --python; empty: $MDPS_BENCH_PYTHON, else /usr/bin/python3 (see twin_python)
  std::string script;                        // empty: bench/pytorch_twin.py of the source tree
  int rounds = 3;                            // A B alternations
};

// The interpreter that runs the twin: --python when given, else the
// environment's MDPS_BENCH_PYTHON (e.g. a venv with PyPI's torch 2.x, the
// PyTorch users install; bench/README.md), else Debian's /usr/bin/python3
// (python3-torch, 1.13 on bookworm).
std::string twin_python(const TwinOptions& o);
// Where twin_python's answer came from: "--python", "MDPS_BENCH_PYTHON" or "default".
const char* twin_python_source(const TwinOptions& o);
// A line for stderr when the twin's torch is older than 2 (not what users install), else "".
std::string twin_version_note(const std::string& torch_version);
// The twin's script path (the option, else the source tree's bench/).
std::string twin_script(const TwinOptions& o);
// Throws mdps::Error saying what is missing: the interpreter, the script, or torch.
void check_twin_available(const TwinOptions& o);
// Runs `python script args... --json`, stderr passing through; returns the
// JSON object on its last stdout line. Throws on a failed run or bad output.
json::Value run_twin(const TwinOptions& o, const std::vector<std::string>& args);
// A number member of the twin's output, with an error naming the key when absent.
double twin_number(const json::Value& v, const char* key);

// Removes a file when it goes out of scope (the temporary model handed to the twin).
struct TempFile {
  std::string path;
  explicit TempFile(std::string p) : path(std::move(p)) {}
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
};
// A fresh path in the temp directory, unique to this process.
std::string temp_path(const std::string& stem, const std::string& ext);

}  // namespace mdps
