#include "engine/core/json_mini.h"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_set>

namespace mdps::json {

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Null: return "null";
    case Kind::Bool: return "a boolean";
    case Kind::Number: return "a number";
    case Kind::String: return "a string";
    case Kind::Array: return "an array";
    case Kind::Object: return "an object";
  }
  return "?";
}

const Value* Value::find(const std::string& key) const {
  for (auto& m : members)
    if (m.first == key) return &m.second;
  return nullptr;
}

namespace {

class Parser {
 public:
  Parser(std::string_view text, const std::string& what, int max_depth)
      : s_(text), what_(what), max_depth_(max_depth) {}

  Value parse_document() {
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("trailing characters after the JSON value");
    return v;
  }

 private:
  std::string_view s_;
  const std::string& what_;
  int max_depth_;
  size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& problem) const { fail_at(problem, pos_); }
  [[noreturn]] void fail_at(const std::string& problem, size_t at) const {
    throw Error(cat(what_, ": ", problem, " at byte ", at));
  }

  bool eof() const { return pos_ >= s_.size(); }
  char peek() const { return eof() ? '\0' : s_[pos_]; }

  void skip_ws() {
    while (!eof() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  void expect_literal(const char* lit) {
    size_t n = std::strlen(lit);
    if (s_.substr(pos_, n) != lit) fail("invalid literal");
    pos_ += n;
  }

  Value parse_value(int depth) {
    if (eof()) fail("unexpected end of input");
    Value v;
    switch (peek()) {
      case '{': parse_object(v, depth + 1); break;
      case '[': parse_array(v, depth + 1); break;
      case '"': v.kind = Kind::String; v.str = parse_string(); break;
      case 't': expect_literal("true"); v.kind = Kind::Bool; v.boolean = true; break;
      case 'f': expect_literal("false"); v.kind = Kind::Bool; break;
      case 'n': expect_literal("null"); break;
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) {
          parse_number(v);
        } else {
          fail(cat("unexpected character '", printable(peek()), "'"));
        }
    }
    return v;
  }

  static std::string printable(char c) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string(1, c);
    static const char* hex = "0123456789abcdef";
    return std::string("\\x") + hex[u >> 4] + hex[u & 15];
  }

  void check_depth(int depth) {
    if (depth > max_depth_) fail(cat("nesting deeper than ", max_depth_, " levels"));
  }

  void parse_object(Value& v, int depth) {
    check_depth(depth);
    v.kind = Kind::Object;
    ++pos_;  // '{'
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return;
    }
    std::unordered_set<std::string> seen;
    for (;;) {
      skip_ws();
      if (peek() != '"') fail("expected a string key");
      size_t key_pos = pos_;
      std::string key = parse_string();
      if (!seen.insert(key).second) fail_at(cat("duplicate key ", quote(key)), key_pos);
      skip_ws();
      if (peek() != ':') fail("expected ':' after object key");
      ++pos_;
      skip_ws();
      Value member = parse_value(depth);
      v.members.emplace_back(std::move(key), std::move(member));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        return;
      }
      fail(eof() ? "unexpected end of input in object" : "expected ',' or '}' in object");
    }
  }

  void parse_array(Value& v, int depth) {
    check_depth(depth);
    v.kind = Kind::Array;
    ++pos_;  // '['
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      return;
    }
    for (;;) {
      skip_ws();
      v.items.push_back(parse_value(depth));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        return;
      }
      fail(eof() ? "unexpected end of input in array" : "expected ',' or ']' in array");
    }
  }

  void parse_number(Value& v) {
    size_t start = pos_;
    bool neg = false, integral = true;
    if (peek() == '-') {
      neg = true;
      ++pos_;
    }
    if (peek() == '0') {
      ++pos_;
      if (peek() >= '0' && peek() <= '9') fail("leading zeros are not allowed in numbers");
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      fail("expected a digit");
    }
    if (peek() == '.') {
      integral = false;
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit after '.'");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integral = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit in the exponent");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    std::string lit(s_.substr(start, pos_ - start));
    v.kind = Kind::Number;
    v.number = std::strtod(lit.c_str(), nullptr);
    if (integral && !neg) {
      uint64_t u = 0;
      bool overflow = false;
      for (char c : lit) {
        uint64_t d = uint64_t(c - '0');
        if (u > (UINT64_MAX - d) / 10) {
          overflow = true;
          break;
        }
        u = u * 10 + d;
      }
      v.is_uint = !overflow;
      v.uint = overflow ? 0 : u;
    }
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned cp = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      cp <<= 4;
      if (c >= '0' && c <= '9') cp |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') cp |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') cp |= unsigned(c - 'A' + 10);
      else fail("invalid hex digit in \\u escape");
    }
    return cp;
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  // Copies one well-formed UTF-8 sequence (lead byte at pos_) to `out`.
  void copy_utf8(std::string& out) {
    unsigned char c = static_cast<unsigned char>(s_[pos_]);
    int len;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1Fu;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0Fu;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07u;
    else fail("invalid UTF-8 in string");
    if (pos_ + size_t(len) > s_.size()) fail("truncated UTF-8 sequence in string");
    for (int i = 1; i < len; ++i) {
      unsigned char cc = static_cast<unsigned char>(s_[pos_ + size_t(i)]);
      if ((cc & 0xC0) != 0x80) fail("invalid UTF-8 in string");
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    // Reject overlong forms, surrogates and code points past U+10FFFF.
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      fail("invalid UTF-8 in string");
    out.append(s_.substr(pos_, size_t(len)));
    pos_ += size_t(len);
  }

  std::string parse_string() {
    size_t start = pos_;
    ++pos_;  // '"'
    std::string out;
    for (;;) {
      if (eof()) fail_at("unterminated string", start);
      unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("unescaped control character in string");
      if (c >= 0x80) {
        copy_utf8(out);
        continue;
      }
      if (c != '\\') {
        out += char(c);
        ++pos_;
        continue;
      }
      ++pos_;
      if (eof()) fail_at("unterminated string", start);
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail("unpaired low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(pos_, 2) != "\\u") fail("unpaired high surrogate in \\u escape");
            pos_ += 2;
            unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired high surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          put_utf8(out, cp);
          break;
        }
        default: fail(cat("invalid escape '\\", printable(e), "'"));
      }
    }
  }
};

}  // namespace

Value parse(std::string_view text, const std::string& what, int max_depth) {
  return Parser(text, what, max_depth).parse_document();
}

std::string text(const Value& v) {
  switch (v.kind) {
    case Kind::Null: return "null";
    case Kind::Bool: return v.boolean ? "true" : "false";
    case Kind::Number: {
      if (v.is_uint) return std::to_string(v.uint);
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.15g", v.number);
      if (std::strtod(buf, nullptr) != v.number) std::snprintf(buf, sizeof buf, "%.17g", v.number);
      return buf;
    }
    case Kind::String: return quote(v.str);
    case Kind::Array: {
      std::string t = "[";
      for (size_t i = 0; i < v.items.size(); ++i) t += cat(i ? ", " : "", text(v.items[i]));
      return t + "]";
    }
    case Kind::Object: {
      std::string t = "{";
      for (size_t i = 0; i < v.members.size(); ++i)
        t += cat(i ? ", " : "", quote(v.members[i].first), ": ", text(v.members[i].second));
      return t + "}";
    }
  }
  return "null";
}

std::string quote(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

}  // namespace mdps::json
