// `mdps info FILE.safetensors`: what a checkpoint or golden file holds.
#include "tools/command.h"
#include "engine/io/safetensors.h"
#include <algorithm>
#include <cstdio>
#include <string>

namespace mdps {
namespace {

void print_info(const std::string& path) {
  SafeTensorsFile f = SafeTensorsFile::open(path);
  const auto names = f.names();
  size_t wname = 4, wdtype = 5, wshape = 5;
  for (auto& n : names) {
    const auto& t = f.info(n);
    wname = std::max(wname, n.size());
    wdtype = std::max(wdtype, std::string(st_dtype_name(t.dtype)).size());
    wshape = std::max(wshape, shape_str(t.shape).size());
  }
  std::printf("%s\n", path.c_str());
  std::printf("%-*s  %-*s  %-*s  %12s\n", int(wname), "name", int(wdtype), "dtype", int(wshape), "shape", "bytes");
  uint64_t total = 0;
  for (auto& n : names) {
    const auto& t = f.info(n);
    total += t.bytes();
    std::printf("%-*s  %-*s  %-*s  %12llu\n", int(wname), n.c_str(), int(wdtype), st_dtype_name(t.dtype),
                int(wshape), shape_str(t.shape).c_str(), static_cast<unsigned long long>(t.bytes()));
  }
  std::printf("total: %zu tensors, %llu bytes of tensor data (header %llu bytes, file %llu bytes)\n", names.size(),
              static_cast<unsigned long long>(total), static_cast<unsigned long long>(f.header_bytes()),
              static_cast<unsigned long long>(f.file_bytes()));
  if (!f.metadata().empty()) {
    std::printf("metadata:\n");
    // Values are printed whole: they document how the tensors were made.
    for (auto& [k, v] : f.metadata()) std::printf("  %s: %s\n", k.c_str(), v.c_str());
  }
}

cli::Registrar reg("info", 90, [](CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "List the tensors and metadata of a .safetensors file");
  auto path = std::make_shared<std::string>();
  cmd->add_option("file", *path, "the .safetensors file")->required();
  cmd->callback([path] { print_info(*path); });
});

}  // namespace
}  // namespace mdps
