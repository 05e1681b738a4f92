// UNetConfig: defaults, validation, and the JSON form stored in model files.
#include "engine/model/unet.h"
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace mdps {

std::vector<int> UNetConfig::default_channel_mults(int image_size) {
  if (image_size >= 256) return {1, 1, 2, 2, 4, 4};
  if (image_size >= 128) return {1, 1, 2, 3, 4};
  return {1, 2, 3, 4};
}

void UNetConfig::validate() const {
  MDPS_CHECK(image_size > 0 && base_channels > 0 && heads > 0 && in_channels > 0 && res_blocks > 0,
             "U-Net config: sizes must be positive (", to_json(), ")");
  // Sane bounds, checked before a single weight is allocated: a model file's
  // metadata is read from disk and may claim anything (num_res_blocks 100000
  // would otherwise build until memory runs out).
  MDPS_CHECK(image_size <= kMaxImageSize, "U-Net config: img_size ", image_size, " is above ", kMaxImageSize);
  MDPS_CHECK(base_channels <= kMaxChannels, "U-Net config: base_channels ", base_channels, " is above ", kMaxChannels);
  MDPS_CHECK(heads <= kMaxChannels, "U-Net config: n_heads ", heads, " is above ", kMaxChannels);
  MDPS_CHECK(in_channels <= 16, "U-Net config: in_channels ", in_channels, " is above 16");
  MDPS_CHECK(res_blocks <= kMaxResBlocks, "U-Net config: num_res_blocks ", res_blocks, " is above ", kMaxResBlocks);
  MDPS_CHECK(attention_resolutions.size() <= 16, "U-Net config: more than 16 attention resolutions");
  auto m = mults();
  MDPS_CHECK(!m.empty(), "U-Net config: no channel multipliers");
  MDPS_CHECK(m.size() <= kMaxLevels, "U-Net config: ", m.size(), " channel multipliers (levels), more than ",
             kMaxLevels);
  for (int mult : m)
    MDPS_CHECK(mult > 0 && int64_t(mult) * base_channels <= kMaxChannels, "U-Net config: channel multiplier ", mult,
               " gives ", int64_t(mult) * base_channels, " channels (1..", kMaxChannels, ")");
  int64_t div = int64_t(1) << (m.size() - 1);
  MDPS_CHECK(image_size % div == 0, "image size ", image_size, " is not divisible by ", div,
             ", as a U-Net with ", m.size(), " levels needs");
  for (int mult : m) {
    MDPS_CHECK(mult > 0, "U-Net config: channel multiplier ", mult, " must be positive");
    int ch = base_channels * mult;
    MDPS_CHECK(ch % 32 == 0, "U-Net config: ", ch, " channels do not divide into the 32 groups of GroupNorm");
    MDPS_CHECK(ch % heads == 0, "U-Net config: ", ch, " channels do not split into ", heads, " heads");
  }
  MDPS_CHECK(base_channels % 2 == 0, "U-Net config: base channels must be even (sinusoidal embedding)");
}

static std::string join(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

std::string UNetConfig::to_json() const {
  std::ostringstream os;
  os << "{\"img_size\": " << image_size << ", \"base_channels\": " << base_channels << ", \"n_heads\": " << heads
     << ", \"in_channels\": " << in_channels << ", \"num_res_blocks\": " << res_blocks
     << ", \"attention_resolutions\": \"" << join(attention_resolutions) << "\", \"channel_mults\": \""
     << join(mults()) << "\", \"dropout\": " << dropout << "}";
  return os.str();
}

namespace {
// A flat JSON object of numbers and strings: all the config needs.
std::map<std::string, std::string> parse_flat_object(const std::string& s) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  auto ws = [&] {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  };
  auto fail = [&](const char* what) { throw Error(cat("U-Net config JSON: ", what, " at offset ", i, " in ", s)); };
  auto str = [&] {
    if (i >= s.size() || s[i] != '"') fail("expected a string");
    std::string r;
    for (++i; i < s.size() && s[i] != '"'; ++i) r += s[i];
    if (i >= s.size()) fail("unterminated string");
    ++i;
    return r;
  };
  ws();
  if (i >= s.size() || s[i] != '{') fail("expected '{'");
  ++i;
  ws();
  if (i < s.size() && s[i] == '}') return out;
  for (;;) {
    ws();
    std::string key = str();
    ws();
    if (i >= s.size() || s[i] != ':') fail("expected ':'");
    ++i;
    ws();
    std::string val;
    if (i < s.size() && s[i] == '"') {
      val = str();
    } else {
      size_t b = i;
      while (i < s.size() && s[i] != ',' && s[i] != '}' && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
      val = s.substr(b, i - b);
      if (val.empty()) fail("expected a value");
    }
    out[key] = val;
    ws();
    if (i < s.size() && s[i] == ',') {
      ++i;
      continue;
    }
    if (i < s.size() && s[i] == '}') break;
    fail("expected ',' or '}'");
  }
  return out;
}

std::vector<int> parse_int_list(const std::string& s, const std::string& what) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    long x = std::strtol(item.c_str(), &end, 10);
    MDPS_CHECK(end && *end == 0 && !item.empty() && x >= -1000000 && x <= 1000000, "U-Net config: ", what, " '", s,
               "' is not a list of integers");
    v.push_back(int(x));
  }
  return v;
}

int parse_int(const std::map<std::string, std::string>& m, const char* key, int fallback) {
  auto it = m.find(key);
  if (it == m.end()) return fallback;
  char* end = nullptr;
  double x = std::strtod(it->second.c_str(), &end);
  MDPS_CHECK(end && *end == 0, "U-Net config: ", key, " = '", it->second, "' is not a number");
  MDPS_CHECK(x == std::floor(x) && std::fabs(x) <= 1e9, "U-Net config: ", key, " = ", it->second,
             " is not an integer in range");
  return int(x);
}
}  // namespace

UNetConfig UNetConfig::from_json(const std::string& json) {
  auto m = parse_flat_object(json);
  UNetConfig c;
  MDPS_CHECK(m.count("img_size"), "U-Net config has no img_size: ", json);
  c.image_size = parse_int(m, "img_size", c.image_size);
  c.base_channels = parse_int(m, "base_channels", c.base_channels);
  c.heads = parse_int(m, "n_heads", c.heads);
  c.in_channels = parse_int(m, "in_channels", c.in_channels);
  c.res_blocks = parse_int(m, "num_res_blocks", c.res_blocks);
  if (m.count("attention_resolutions"))
    c.attention_resolutions = parse_int_list(m["attention_resolutions"], "attention_resolutions");
  if (m.count("channel_mults")) c.channel_mults = parse_int_list(m["channel_mults"], "channel_mults");
  if (m.count("dropout")) c.dropout = float(std::strtod(m["dropout"].c_str(), nullptr));
  c.validate();
  return c;
}

bool UNetConfig::operator==(const UNetConfig& o) const {
  return image_size == o.image_size && base_channels == o.base_channels && heads == o.heads &&
         in_channels == o.in_channels && res_blocks == o.res_blocks &&
         attention_resolutions == o.attention_resolutions && mults() == o.mults() && dropout == o.dropout;
}

}  // namespace mdps
