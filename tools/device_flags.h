// --device, --precision and --threads: declared here once, with one help
// text each, for every command that runs the engine (sample, score, eval,
// calibrate, train, bench, demo). The values are read by backend_by_name /
// parse_precision (engine/core/backend.h) and check_threads
// (engine/core/option_checks.h), which the library uses too.
#pragma once
#include "engine/core/backend.h"
#include "engine/core/backend_registry.h"
#include "engine/core/option_checks.h"
#include <CLI/CLI.hpp>
#include <string>

namespace mdps::cli {

// --device: `note` adds what the device means for this command (bench: when
// its clock stops).
inline CLI::Option* add_device_option(CLI::App* c, std::string& value, const std::string& note = "") {
  return c->add_option("--device", value, "cpu, cuda or auto (cuda when a device exists)" + note)
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
}

// --precision, the same on every command that runs the U-Net.
inline CLI::Option* add_precision_option(CLI::App* c, std::string& value) {
  return c->add_option("--precision", value,
                       "precision of the products: fp32 (default), tf32 (--device cuda: TF32 tensor cores in "
                       "cuBLAS and cuDNN) or bf16 (products on bfloat16 inputs with float32 accumulation, weights and "
                       "optimiser state; --device cuda, or the CPU's convolutions where it has AVX512-BF16, "
                       "not for training on the CPU)")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}))
      ->capture_default_str();
}

// --threads, the same bounds on every command and in the library.
inline CLI::Option* add_threads_option(CLI::App* c, int& value) {
  return c
      ->add_option("--threads", value,
                   "CPU worker threads (0, the default: all CPUs this process may run on, from its affinity mask)")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            try {
              size_t used = 0;
              const long long n = std::stoll(text, &used);
              if (used != text.size()) return "'" + text + "' is not an integer";
              check_threads(n, "--threads");
            } catch (const Error& e) {
              return e.what();
            } catch (const std::exception&) {
              return "'" + text + "' is not an integer";
            }
            return "";
          },
          "0.." + std::to_string(kMaxThreads)));
}

// The three together, for the commands that choose their backend themselves.
struct DeviceFlags {
  std::string device = "cpu", precision = "fp32";
  int threads = 0;
  void add(CLI::App* c, const std::string& device_note = "") {
    add_threads_option(c, threads);
    add_device_option(c, device, device_note);
    add_precision_option(c, precision);
  }
  // The backend they name, its precision and threads set.
  Backend& backend() const {
    Backend& be = backend_by_name(device, parse_precision(precision));
    if (threads > 0) be.set_threads(threads);
    return be;
  }
};

}  // namespace mdps::cli
