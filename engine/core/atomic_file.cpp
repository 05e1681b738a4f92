#include "engine/core/atomic_file.h"
#include "engine/core/common.h"
#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace mdps {

void write_text_atomic(const std::string& path, const std::string& text) {
  std::string tmp = cat(path, ".tmp.", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    MDPS_CHECK(out.good(), "cannot write '", tmp, "'");
    out << text;
    out.flush();
    MDPS_CHECK(out.good(), "writing '", tmp, "' failed");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error(cat("cannot rename to '", path, "'"));
  }
}

}  // namespace mdps
