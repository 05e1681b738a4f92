// Running bench/pytorch_twin.py (the U-Net in PyTorch) as a subprocess for
// `mdps bench unet|sampler --vs-pytorch`: finding the interpreter and the
// script, checking that torch imports, and reading the twin's JSON line.
#pragma once
#include "engine/core/json_mini.h"
#include <string>
#include <vector>

namespace mdps {

struct TwinOptions {
  std::string python = "/usr/bin/python3";  // Debian's interpreter, where python3-torch lives
  std::string script;                        // empty: bench/pytorch_twin.py of the source tree
  int rounds = 3;                            // A B alternations
};

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
