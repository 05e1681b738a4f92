// A tiny strict JSON parser (RFC 8259) for file headers such as the
// safetensors one. Strict on purpose: a header that other readers would
// interpret differently (duplicate keys, trailing garbage, invalid UTF-8)
// is rejected rather than guessed at.
#pragma once
#include "engine/core/common.h"
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mdps::json {

enum class Kind : uint8_t { Null, Bool, Number, String, Array, Object };
const char* kind_name(Kind k);

struct Value {
  Kind kind = Kind::Null;
  bool boolean = false;
  // Numbers: `number` always; `is_uint` when the literal is a non-negative
  // integer without fraction/exponent that fits uint64 (then `uint` is exact).
  double number = 0;
  bool is_uint = false;
  uint64_t uint = 0;
  std::string str;                                     // String
  std::vector<Value> items;                            // Array
  std::vector<std::pair<std::string, Value>> members;  // Object, in document order, keys unique

  const Value* find(const std::string& key) const;  // Object member or nullptr
};

// Parses exactly one JSON value; only whitespace may follow it. Throws
// mdps::Error("<what>: <problem> at byte <offset>") on any deviation.
// Nesting deeper than `max_depth` is an error (bounds recursion on hostile input).
Value parse(std::string_view text, const std::string& what, int max_depth = 64);

// `s` as a JSON string literal, with quotes.
std::string quote(const std::string& s);

// A value back as compact JSON text (", " and ": " separators, members in
// document order). Numbers exactly: non-negative integers as integers, others
// as the shortest of %.15g / %.17g that reads back to the same double.
std::string text(const Value& v);

}  // namespace mdps::json
