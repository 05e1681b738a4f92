#include "tools/score_log.h"
#include "engine/core/atomic_file.h"
#include "engine/core/common.h"
#include "engine/core/json_mini.h"
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace mdps::cli {
namespace {

std::string read_whole(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MDPS_CHECK(f.good(), "cannot read '", path, "': ", std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  MDPS_CHECK(!f.bad(), "cannot read '", path, "'");
  return ss.str();
}

}  // namespace

AppendLog::AppendLog(std::string path, std::string header) : path_(std::move(path)), header_(std::move(header)) {}

AppendLog::~AppendLog() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendLog::resume_after(size_t complete_bytes) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  MDPS_CHECK(fd_ >= 0, "cannot open '", path_, "' to append: ", std::strerror(errno));
  MDPS_CHECK(::ftruncate(fd_, off_t(complete_bytes)) == 0, "cannot cut the torn last record off '", path_,
             "': ", std::strerror(errno));
}

void AppendLog::append(const std::string& text) {
  if (fd_ < 0) {
    // The first batch of a fresh log: the whole file so far, renamed into place.
    const std::filesystem::path parent = std::filesystem::path(path_).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    write_text_atomic(path_, header_ + text);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    MDPS_CHECK(fd_ >= 0, "cannot open '", path_, "' to append: ", std::strerror(errno));
    return;
  }
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    MDPS_CHECK(n > 0, "cannot append to '", path_, "': ", n < 0 ? std::strerror(errno) : "nothing written");
    done += size_t(n);
  }
}

CsvLog read_csv_log(const std::string& path) {
  const std::string text = read_whole(path);
  CsvLog log;
  std::vector<std::string> rec;
  std::string field;
  bool quoted = false, after_quote = false, in_field = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c != '"') {
        field += c;
      } else if (i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else {
        quoted = false;
        after_quote = true;
      }
      continue;
    }
    if (c == ',' || c == '\n') {
      rec.push_back(std::move(field));
      field.clear();
      after_quote = in_field = false;
      if (c == '\n') {
        log.records.push_back(std::move(rec));
        rec.clear();
        log.complete_bytes = i + 1;
      }
      continue;
    }
    MDPS_CHECK(!after_quote, "'", path, "' is not a CSV file: a character after a closing quote at byte ", i);
    if (c == '"' && !in_field) {
      quoted = true;
      in_field = true;
      continue;
    }
    MDPS_CHECK(c != '"', "'", path, "' is not a CSV file: a quote inside an unquoted field at byte ", i);
    field += c;
    in_field = true;
  }
  return log;
}

JsonlLog read_jsonl_log(const std::string& path) {
  const std::string text = read_whole(path);
  JsonlLog log;
  size_t start = 0, line = 1;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1, ++line) {
    const std::string what = cat("'", path, "' line ", line);
    const json::Value v = json::parse(std::string_view(text).substr(start, nl - start), what);
    const json::Value* f = v.kind == json::Kind::Object ? v.find("file") : nullptr;
    MDPS_CHECK(f && f->kind == json::Kind::String, what, ": not a JSON object with a string \"file\"");
    log.files.push_back(f->str);
    log.complete_bytes = nl + 1;
  }
  return log;
}

}  // namespace mdps::cli
