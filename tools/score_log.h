// The row logs of `mdps score`: scores.csv and the --jsonl file, written
// batch by batch as the images are scored, and read back by --resume.
//
// Why these two files are appended to, when every other output goes through
// engine/core/atomic_file (temporary name, renamed): a log renamed into place
// after every batch would be rewritten whole each time, quadratic in the
// number of images. So:
//  - the first batch of a fresh run creates the file atomically (header and
//    rows, renamed over an old file): a run that fails before its first batch
//    is done leaves the old file, or none, as before streaming;
//  - every later batch's rows are appended with one write(2) and are in the
//    kernel before the next batch starts: a killed process loses no row it
//    finished (a power loss may lose the last ones; --resume scores them again);
//  - a record cut short (a write interrupted by a full disk or a file size
//    limit) is not a row: readers drop an unterminated last record, and
//    resuming cuts it off before appending.
// Each image's pictures are written atomically before its row, so a row in
// the log means the image's files are complete.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace mdps::cli {

// A file that the first append() creates (atomically, `header` first) or,
// after resume_after(), that append() extends.
class AppendLog {
 public:
  AppendLog(std::string path, std::string header);
  ~AppendLog();
  AppendLog(const AppendLog&) = delete;
  AppendLog& operator=(const AppendLog&) = delete;

  // Keep the file's first `complete_bytes` bytes (its complete records; a
  // torn tail after them is cut off) and append after them.
  void resume_after(size_t complete_bytes);
  // One batch's records in one write; throws naming the file on failure.
  void append(const std::string& text);
  const std::string& path() const { return path_; }

 private:
  std::string path_, header_;
  int fd_ = -1;
};

// The complete records of a CSV file (RFC 4180, as engine/core/csv.h writes
// it) and the bytes they span; a last record without its "\n" is left out.
// Throws naming the file when it cannot be read or is not such a CSV.
struct CsvLog {
  std::vector<std::vector<std::string>> records;
  size_t complete_bytes = 0;
};
CsvLog read_csv_log(const std::string& path);

// The "file" of every complete line of a JSON Lines log, and the bytes those
// lines span; an unterminated last line is left out. Throws naming the file
// and line when a complete line is not a JSON object with a string "file".
struct JsonlLog {
  std::vector<std::string> files;
  size_t complete_bytes = 0;
};
JsonlLog read_jsonl_log(const std::string& path);

}  // namespace mdps::cli
