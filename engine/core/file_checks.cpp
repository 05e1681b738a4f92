#include "engine/core/file_checks.h"
#include "engine/core/option_checks.h"
#include <map>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace mdps {
namespace {

const char* kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

void check_mode(const struct stat& st, const std::string& path, const std::string& what) {
  MDPS_CHECK(S_ISREG(st.st_mode), what, " '", path, "': ", kind_of(st.st_mode),
             ", not a regular file (inputs must be regular files)");
}

}  // namespace

void require_regular_file(const std::string& path, const std::string& what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int e = errno;
    throw Error(cat(what, " '", path, "': ", e == ENOENT ? std::string("no such file") : std::strerror(e)));
  }
  check_mode(st, path, what);
}

int open_regular_file(const std::string& path, const std::string& what) {
  require_regular_file(path, what);
  // O_NONBLOCK: should the path turn into a FIFO after the check, open() still returns.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int e = errno;
    throw Error(cat(what, " '", path, "': cannot open: ", std::strerror(e)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(cat(what, " '", path, "': not a regular file (inputs must be regular files)"));
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

namespace {
// What identifies a file: device and inode when it exists (so links to one
// file compare equal), else its weakly canonical absolute path.
std::string file_key(const std::string& p) {
  struct stat st;
  if (::stat(p.c_str(), &st) == 0) return cat("inode ", st.st_dev, ":", st.st_ino);
  std::error_code ec;
  fs::path c = fs::weakly_canonical(fs::absolute(p), ec);
  return "path " + (ec ? fs::absolute(p).lexically_normal().string() : c.string());
}
}  // namespace

bool same_file(const std::string& a, const std::string& b) {
  if (a.empty() || b.empty()) return false;
  return file_key(a) == file_key(b);
}

void check_distinct_files(const std::vector<NamedPath>& inputs, const std::vector<NamedPath>& outputs) {
  std::map<std::string, const NamedPath*> in, out;
  for (const NamedPath& i : inputs)
    if (!i.path.empty()) in.emplace(file_key(i.path), &i);
  for (const NamedPath& o : outputs) {
    if (o.path.empty()) continue;
    const std::string k = file_key(o.path);
    auto hit = in.find(k);
    MDPS_USAGE_CHECK(hit == in.end(), o.option, " '", o.path, "' is the same file as ", hit->second->option, " '",
                     hit->second->path, "': writing it would destroy the input; choose another output");
    auto [prev, fresh] = out.emplace(k, &o);
    MDPS_USAGE_CHECK(fresh, o.option, " '", o.path, "' and ", prev->second->option, " '", prev->second->path,
                     "' are the same file: one output would overwrite the other");
  }
}

}  // namespace mdps
