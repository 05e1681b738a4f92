// mdps: the command line. Subcommands register themselves (tools/command.h).
#include "tools/command.h"
#include "engine/core/common.h"
#include <algorithm>
#include <cstdio>
#include <vector>

namespace mdps::cli {
namespace {
struct Entry {
  std::string name;
  int order;
  AddCommand add;
};
std::vector<Entry>& registry() {
  static std::vector<Entry> r;
  return r;
}
}  // namespace

Registrar::Registrar(const std::string& name, int order, AddCommand add) {
  registry().push_back({name, order, std::move(add)});
}

void add_all_commands(CLI::App& app) {
  auto entries = registry();
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.order < b.order; });
  for (auto& e : entries) e.add(app);
}

}  // namespace mdps::cli

int main(int argc, char** argv) {
  CLI::App app{"mdps: unsupervised visual anomaly detection with Masked Diffusion Posterior Sampling"};
  app.set_version_flag("--version", std::string("mdps ") + MDPS_VERSION);
  app.require_subcommand(1);
  mdps::cli::add_all_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const mdps::Error& e) {
    std::fprintf(stderr, "mdps: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mdps: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
