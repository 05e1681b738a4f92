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
std::string named_command(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (argv[i][0] != '-') return argv[i];
  return "";
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
