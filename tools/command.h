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
#include "tools/device_flags.h"
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
