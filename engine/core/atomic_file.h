// Files that matter are written whole or not at all: the text goes to
// PATH.tmp.<pid>, is checked, and is renamed over PATH; a failure removes
// the temporary file and throws naming the path.
#pragma once
#include <string>

namespace mdps {

void write_text_atomic(const std::string& path, const std::string& text);

}  // namespace mdps
