// `mdps convert IN.pt|IN.pth OUT.safetensors`: a PyTorch checkpoint (zip or
// legacy format) to a safetensors state dict the engine loads, without
// Python and without executing anything from the checkpoint.
#include "tools/command.h"
#include "engine/io/torch_checkpoint.h"
#include "engine/core/file_checks.h"
#include <cstdio>
#include <memory>
#include <string>

namespace mdps {
namespace {

struct ConvertArgs {
  std::string in, out;
  ConvertOptions opt;
};

void run_convert(const ConvertArgs& a) {
  check_distinct_files({{"IN", a.in}}, {{"OUT", a.out}});
  require_regular_file(a.in, "IN");
  ConvertResult r = convert_torch_file(a.in, a.opt);
  std::printf("%s: %s-format checkpoint, state dict %s\n", a.in.c_str(), r.format.c_str(),
              r.used_key.empty() ? "at the top level" : ("under '" + r.used_key + "'").c_str());
  for (const auto& n : r.notes) std::printf("  note: %s\n", n.c_str());
  r.writer.write(a.out);
  std::printf("wrote %s: %zu tensors, %llu bytes of tensor data\n", a.out.c_str(), r.tensors,
              static_cast<unsigned long long>(r.bytes));
}

cli::Registrar reg("convert", 85, [](CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Convert a PyTorch checkpoint (.pt/.pth) to .safetensors, executing nothing");
  cmd->footer(
      "Reads the zip and the legacy torch.save formats. Only tensors, storages, (ordered) dicts and plain values are "
      "rebuilt; any other pickled global is an error naming it. Float tensors become F32, integer and bool ones "
      "I64; a leading 'module.' is stripped from every name; non-tensor entries are skipped with a note. "
      "See docs/cli.md and weights/README.md.");
  auto a = std::make_shared<ConvertArgs>();
  cmd->add_option("in", a->in, "the PyTorch checkpoint (torch.save output)")->required();
  cmd->add_option("out", a->out, "the .safetensors file to write (atomically)")->required();
  cmd->add_option("--key", a->opt.key,
                  "top-level entry holding the state dict (default: the top level when it holds tensors, else "
                  "state_dict, model_state_dict, model, net, network, module, else the only dict of tensors)");
  cmd->add_option("--strip-prefix", a->opt.strip_prefix,
                  "also remove this prefix (e.g. 'unet.') from the names that start with it, after 'module.'");
  cmd->callback([a] { run_convert(*a); });
});

}  // namespace
}  // namespace mdps
