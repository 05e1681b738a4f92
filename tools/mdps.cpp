// mdps: the command line. Subcommands register themselves (tools/command.h).
//
// Exit status (README, docs/cli.md): 0 success; 1 a runtime error (a file
// missing or damaged, a write that failed, out of memory, a non-finite
// result); 2 a usage error (an unknown command or option, a bad or missing
// value, options that contradict each other, an output that would destroy an
// input). Every error is one line on stderr, "mdps: error: ...", naming the
// option or file at fault.
#include "tools/command.h"
#include "engine/core/common.h"
#include "engine/core/atomic_file.h"
#include "engine/core/option_checks.h"
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <new>
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

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

int error_exit(int code, const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "mdps: error: %s\n", message.c_str());
  return code;
}

// The subcommand named on the command line, "" if none.
// The first word that is neither an option nor the value of the main app's
// one option that takes a value (`--config FILE`, also `--config=FILE`).
std::string named_command(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--config") == 0) {
      ++i;  // its value
      continue;
    }
    if (argv[i][0] != '-') return argv[i];
  }
  return "";
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

int run(int argc, char** argv) {
  CLI::App app{"mdps: unsupervised visual anomaly detection with Masked Diffusion Posterior Sampling"};
  app.set_version_flag("--version", std::string("mdps ") + MDPS_VERSION);
  app.require_subcommand(1);
  app.footer("Exit status: 0 success, 1 runtime error, 2 usage error.");
  add_all_commands(app);
  const std::string cmd = named_command(argc, argv);
  std::string names;
  bool known = false;
  const std::function<bool(const CLI::App*)> all = [](const CLI::App*) { return true; };
  for (const CLI::App* sub : static_cast<const CLI::App&>(app).get_subcommands(all)) {
    names += (names.empty() ? "" : ", ") + sub->get_name();
    known = known || sub->get_name() == cmd;
  }
  if (!cmd.empty() && !known) return error_exit(kExitUsage, cat("unknown command '", cmd, "' (commands: ", names, ")"));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::RequiredError& e) {
    if (cmd.empty()) return error_exit(kExitUsage, cat("no command given (commands: ", names, "); see mdps --help"));
    return error_exit(kExitUsage, cat(e.what(), " (see mdps ", cmd, " --help)"));
  } catch (const CLI::ParseError& e) {
    return error_exit(kExitUsage, cat(e.what(), cmd.empty() ? "" : cat(" (see mdps ", cmd, " --help)")));
  } catch (const UsageError& e) {
    return error_exit(kExitUsage, e.what());
  } catch (const std::bad_alloc&) {
    return error_exit(kExitRuntime, cat("out of memory in `mdps ", cmd, "` (an allocation the engine does not size ",
                                        "up front failed: lower --batch, --samples or the image size)"));
  } catch (const std::exception& e) {
    std::string m = e.what();
    if (m.rfind("out of memory allocating", 0) == 0)
      m += " (the tensors in flight scale with --batch, --samples and the model's image size: lower them)";
    return error_exit(kExitRuntime, m);
  }
  // Everything printed must have reached stdout (a full disk, /dev/full).
  std::string why;
  if (!stdout_ok(why)) return error_exit(kExitRuntime, cat("writing to standard output failed: ", why));
  return 0;
}

}  // namespace mdps::cli

int main(int argc, char** argv) { return mdps::cli::run(argc, argv); }
