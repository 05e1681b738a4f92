// `--trace FILE.json`, shared by train, sample, eval and bench: a per-op
// timeline of the whole command (engine/core/trace.h; docs/cli.md).
#pragma once
#include "engine/core/trace.h"
#include <CLI/CLI.hpp>
#include <string>

namespace mdps::cli {

inline CLI::Option* add_trace_option(CLI::App* c, std::string& path) {
  return c->add_option("--trace", path,
                       "write a per-op timeline of the run to FILE.json (Chrome trace-event format: open it in "
                       "Perfetto or chrome://tracing)");
}

}  // namespace mdps::cli
