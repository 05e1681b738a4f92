// The one CSV writer (RFC 4180) behind every CSV mdps writes (scores.csv,
// images.csv, the training log): a field holding a comma, a double quote, a
// carriage return or a line feed is enclosed in double quotes with its quotes
// doubled; records end with "\n". File names may hold any of these, and a
// spreadsheet or Python's csv module reads every row back as written.
#pragma once
#include <initializer_list>
#include <string>

namespace mdps {

inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  return q + "\"";
}

// One record: the fields quoted as needed, comma-separated, "\n"-terminated.
inline std::string csv_row(std::initializer_list<std::string> fields) {
  std::string out;
  bool first = true;
  for (const auto& f : fields) {
    if (!first) out += ',';
    out += csv_field(f);
    first = false;
  }
  return out + "\n";
}

}  // namespace mdps
