#include "engine/core/atomic_file.h"
#include "engine/core/common.h"
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace mdps {
namespace {

std::string errno_text(int e) { return std::strerror(e); }

// Distinct temporary names for files written at the same time by one process.
std::string temp_name(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return cat(path, ".tmp.", ::getpid(), ".", counter++);
}

std::string folder_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

AtomicFile::AtomicFile(const std::string& path) : path_(path), tmp_(temp_name(path)) {
  MDPS_CHECK(!path.empty(), "cannot write a file with an empty name");
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int e = errno;
    throw Error(cat("cannot write '", path_, "': cannot create '", tmp_, "': ", errno_text(e)));
  }
}

AtomicFile::~AtomicFile() {
  if (!committed_) discard();
}

void AtomicFile::discard() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  MDPS_CHECK(fd_ >= 0 && !committed_, "cannot write '", path_, "': the file is already closed");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::write(fd_, p, n > (size_t(1) << 30) ? (size_t(1) << 30) : n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      const int e = k < 0 ? errno : EIO;
      discard();
      throw Error(cat("cannot write '", path_, "': ", errno_text(e), " (nothing was replaced)"));
    }
    p += k;
    n -= size_t(k);
  }
}

void AtomicFile::commit() {
  MDPS_CHECK(fd_ >= 0 && !committed_, "cannot write '", path_, "': the file is already closed");
  auto fail = [&](const char* what, int e) {
    discard();
    throw Error(cat("cannot write '", path_, "': ", what, ": ", errno_text(e), " (nothing was replaced)"));
  };
  if (::fsync(fd_) != 0 && errno != EINVAL && errno != EROFS) fail("fsync failed", errno);
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("close failed", errno);
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("cannot rename the temporary file into place", errno);
  committed_ = true;
  // Make the rename durable; a failure here loses nothing already written.
  const int dfd = ::open(folder_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::string& path, const void* data, size_t n) {
  AtomicFile f(path);
  f.write(data, n);
  f.commit();
}

bool stdout_ok(std::string& why) {
  errno = 0;
  const bool ok = std::fflush(stdout) == 0 && !std::ferror(stdout);
  if (!ok) why = errno ? errno_text(errno) : std::string("write error");
  return ok;
}

}  // namespace mdps
