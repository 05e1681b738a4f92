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

}  // namespace mdps::cli
