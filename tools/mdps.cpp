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

namespace {
// --config FILE, so a run can be written down and repeated: CLI11's config
// files (TOML or INI: `name = value` lines with the long option names,
// `flag = true`, lists as `[2, 3]`). CLI11 2.1 reads a config file on the main
// app only, so --config is the main app's and every command lets it fall
// through (`mdps score --config run.toml` and `mdps --config run.toml score`
// both work); the file's top-level keys belong to the command being run,
// `[command]` sections to that command. Options on the command line win over
// the file; a key that is no option of the command is an error.
class CommandConfig : public CLI::ConfigTOML {
 public:
  explicit CommandConfig(const CLI::App* root) : root_(root) {}
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    std::vector<CLI::ConfigItem> items = CLI::ConfigTOML::from_config(input);
    std::vector<std::string> path;  // the command (and sub-command) parsed, e.g. {"bench", "unet"}
    for (const CLI::App* a = root_;;) {
      std::vector<const CLI::App*> subs = a->get_subcommands([](const CLI::App* s) { return s->parsed(); });
      if (subs.empty()) break;
      a = subs.front();
      path.push_back(a->get_name());
    }
    for (auto& item : items)
      if (item.parents.empty()) item.parents = path;
    return items;
  }

 private:
  const CLI::App* root_;
};

const char* const kConfigHelp =
    "read options from this file: `name = value` lines with the long option names (e.g. t-start = 150, "
    "quiet = true); options on the command line win";

void allow_config(CLI::App* c) {
  c->fallthrough();
  c->footer(std::string("--config FILE: ") + kConfigHelp);
  for (CLI::App* sub : c->get_subcommands({})) allow_config(sub);
}
}  // namespace

void add_all_commands(CLI::App& app) {
  auto entries = registry();
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.order < b.order; });
  for (auto& e : entries) e.add(app);
  app.config_formatter(std::make_shared<CommandConfig>(&app));
  app.set_config("--config", "", kConfigHelp);
  app.allow_config_extras(CLI::config_extras_mode::error);
  for (CLI::App* c : app.get_subcommands({})) allow_config(c);
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
