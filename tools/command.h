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
                       "cuBLAS and cuDNN) or bf16 (--device cuda: products on bfloat16 inputs, float32 accumulation, "
                       "weights and optimiser state)")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}))
      ->capture_default_str();
}

}  // namespace mdps::cli
