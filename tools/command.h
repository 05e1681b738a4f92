// Each `mdps` subcommand lives in its own tools/cmd_*.cpp and registers
// itself here at static-initialisation time:
//
//   static mdps::cli::Registrar reg("info", 10, [](CLI::App& app) {
//     auto* cmd = app.add_subcommand("info", "...");
//     ...
//     cmd->callback([=] { ... });   // throw mdps::Error on failure
//   });
//
// The order number sorts the subcommands in --help.
#pragma once
#include "engine/io/image_decode.h"
#include "engine/core/option_checks.h"
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace mdps::cli {

using AddCommand = std::function<void(CLI::App&)>;

struct Registrar {
  Registrar(const std::string& name, int order, AddCommand add);
};

void add_all_commands(CLI::App& app);

// --precision, the same on every command that runs the U-Net; parsed by
// parse_precision (engine/core/backend.h) when the backend is chosen.
inline CLI::Option* add_precision_option(CLI::App* c, std::string& value) {
  return c->add_option("--precision", value,
                       "precision of the products: fp32 (default), tf32 (--device cuda: TF32 tensor cores in "
                       "cuBLAS and cuDNN) or bf16 (products on bfloat16 inputs with float32 accumulation, weights and "
                       "optimiser state; --device cuda, or the CPU's convolutions where it has AVX512-BF16, "
                       "not for training on the CPU)")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}))
      ->capture_default_str();
}

// --threads, the same bounds on every command and in the library
// (check_threads, engine/core/option_checks.h).
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

// --max-image-pixels on every command that decodes image files
// (engine/io/image_decode.h): larger images are refused before decoding.
inline CLI::Option* add_image_limit_option(CLI::App* c) {
  return c->add_option_function<uint64_t>(
      "--max-image-pixels", [](const uint64_t& n) { set_max_image_pixels(n); },
      "refuse images with more pixels (width x height) than this before decoding them (default " +
          std::to_string(kDefaultMaxImagePixels) + ")")
      ->check(CLI::Range(uint64_t(1), uint64_t(1) << 40));
}

}  // namespace mdps::cli
