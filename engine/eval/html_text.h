// The text pieces of a self-contained HTML page: escaping of strings that
// come from outside (file names, types, paths, settings) and base64 for
// images inlined as data: URIs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mdps {

// `s` safe as HTML text and as a quoted attribute value: & < > " ' become
// entities. Bytes are otherwise kept (the page is UTF-8).
std::string html_escape(const std::string& s);

// RFC 4648 base64 with padding.
std::string base64(const uint8_t* data, size_t n);
inline std::string base64(const std::string& bytes) {
  return base64(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace mdps
