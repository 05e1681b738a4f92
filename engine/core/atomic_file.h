// The one writer of every output file: bytes go to a temporary name in the
// target's folder (PATH.tmp.<pid>.<n>), every write, the fsync and the close
// are checked, and only then is the file renamed over PATH. On any failure
// the temporary file is removed, an existing PATH is left untouched and an
// mdps::Error names PATH and the system's reason (e.g. "No space left on
// device", "File too large"). Readers therefore see either the old file or the
// complete new one, never a truncated one.
//
// fsync: the data is synced before the rename (and the folder after it).
// Without it a crash or power loss shortly after a rename can leave a
// zero-length file under the final name on common file systems; the outputs
// are few and each costs minutes to hours of compute, so the sync's few
// milliseconds are worth paying.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mdps {

// Streams a file into place: write() any number of times, then commit().
// Destroying an uncommitted AtomicFile removes the temporary file.
class AtomicFile {
 public:
  // Creates the temporary file; throws naming `path` (e.g. its folder is missing).
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(const std::string& text) { write(text.data(), text.size()); }
  // fsync, close, rename over the target; throws (removing the temporary) on failure.
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }

 private:
  void discard() noexcept;
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// The whole file in one call.
void write_file_atomic(const std::string& path, const void* data, size_t n);
inline void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

// Flushes stdout and reports whether everything printed reached it (false
// after e.g. ENOSPC on a redirected stdout, or /dev/full); `why` gets the
// system's reason.
bool stdout_ok(std::string& why);

}  // namespace mdps
