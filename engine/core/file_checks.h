// Checks on the files a command reads and writes, made before anything is
// opened or computed:
//  - every input must be a regular file: a FIFO would block open() forever,
//    /dev/zero would be read until memory runs out, a folder cannot be read;
//  - no output may resolve to an input or to another output (the same path,
//    or the same file through a symbolic or hard link), so that writing one
//    never destroys another.
#pragma once
#include <string>
#include <vector>

namespace mdps {

// Throws an mdps::Error naming `what` (e.g. "--image") and `path` unless path
// is an existing regular file (symbolic links followed).
void require_regular_file(const std::string& path, const std::string& what);
// Opens a regular file read-only without blocking on FIFOs or devices (the
// type is checked on the opened descriptor too); the caller closes the fd.
int open_regular_file(const std::string& path, const std::string& what);

// True when a and b name the same file: equivalent when both exist, else the
// same weakly canonical path.
bool same_file(const std::string& a, const std::string& b);

// A path and the option it came from, for messages.
struct NamedPath {
  std::string option, path;
};
// Throws "OPT1 'X' and OPT2 'Y' are the same file ..." when an output is an
// input or two outputs are the same file. Empty paths are skipped.
void check_distinct_files(const std::vector<NamedPath>& inputs, const std::vector<NamedPath>& outputs);

}  // namespace mdps
