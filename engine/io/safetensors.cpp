#include "engine/io/safetensors.h"
#include "engine/core/atomic_file.h"
#include "engine/core/file_checks.h"
#include "kernels/shared/bf16.h"
#include "engine/core/json_mini.h"
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// Element bytes are used as they lie in the file (little-endian).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace mdps {

// ---- dtypes ---------------------------------------------------------------------

namespace {
struct DTypeDesc {
  StDType t;
  const char* name;
  size_t size;
  bool is_float;
};
constexpr DTypeDesc kDTypes[] = {
    {StDType::F64, "F64", 8, true},  {StDType::F32, "F32", 4, true},  {StDType::F16, "F16", 2, true},
    {StDType::BF16, "BF16", 2, true}, {StDType::I64, "I64", 8, false}, {StDType::I32, "I32", 4, false},
    {StDType::I16, "I16", 2, false}, {StDType::I8, "I8", 1, false},   {StDType::U8, "U8", 1, false},
    {StDType::BOOL, "BOOL", 1, false},
};
const DTypeDesc& desc(StDType t) {
  for (auto& d : kDTypes)
    if (d.t == t) return d;
  throw Error("safetensors: invalid dtype enum value");
}
bool dtype_from_name(const std::string& s, StDType& out) {
  for (auto& d : kDTypes)
    if (s == d.name) {
      out = d.t;
      return true;
    }
  return false;
}
}  // namespace

const char* st_dtype_name(StDType t) { return desc(t).name; }
size_t st_dtype_size(StDType t) { return desc(t).size; }
bool st_dtype_is_float(StDType t) { return desc(t).is_float; }

float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float.
    float f = std::ldexp(float(mant), -24);
    return sign ? -f : f;
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf, or NaN keeping its payload
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_float(uint16_t b) { return float_from_bf16(b); }

// ---- the file image ------------------------------------------------------------

// Either an mmap of the file or bytes owned in memory.
struct SafeTensorsFile::Buffer {
  std::vector<uint8_t> owned;
  void* map = nullptr;
  size_t map_len = 0;
  const uint8_t* data = nullptr;
  size_t size = 0;
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (map) ::munmap(map, map_len);
  }
};

namespace {

std::string errno_str() { return std::strerror(errno); }

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Left-to-right product with overflow detection, in the order shape_numel
// multiplies, so an accepted shape never overflows there either.
bool checked_numel(const Shape& shape, int64_t& out) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(n, d, &n)) return false;
  }
  out = n;
  return true;
}

// Reads element i of a tensor of dtype t at p, converting to T.
template <typename T>
T load_as(StDType t, const uint8_t* p, size_t i) {
  switch (t) {
    case StDType::F64: { double v; std::memcpy(&v, p + 8 * i, 8); return T(v); }
    case StDType::F32: { float v; std::memcpy(&v, p + 4 * i, 4); return T(v); }
    case StDType::F16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); return T(half_to_float(v)); }
    case StDType::BF16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); return T(bf16_to_float(v)); }
    case StDType::I64: { int64_t v; std::memcpy(&v, p + 8 * i, 8); return T(v); }
    case StDType::I32: { int32_t v; std::memcpy(&v, p + 4 * i, 4); return T(v); }
    case StDType::I16: { int16_t v; std::memcpy(&v, p + 2 * i, 2); return T(v); }
    case StDType::I8: return T(int8_t(p[i]));
    case StDType::U8: return T(p[i]);
    case StDType::BOOL: return T(p[i] != 0);
  }
  return T(0);
}

}  // namespace

SafeTensorsFile SafeTensorsFile::open(const std::string& path) {
  Fd f;
  // Checked before opening: a FIFO would block open() forever.
  f.fd = open_regular_file(path, "cannot read");
  struct stat st;
  MDPS_CHECK(::fstat(f.fd, &st) == 0, path, ": cannot stat: ", errno_str());
  MDPS_CHECK(S_ISREG(st.st_mode), path, ": not a regular file");
  auto buf = std::make_shared<Buffer>();
  size_t size = size_t(st.st_size);
  if (size > 0) {
    void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, f.fd, 0);
    MDPS_CHECK(m != MAP_FAILED, path, ": cannot mmap ", size, " bytes: ", errno_str());
    buf->map = m;
    buf->map_len = size;
    buf->data = static_cast<const uint8_t*>(m);
    buf->size = size;
  }
  return parse(std::move(buf), path);
}

SafeTensorsFile SafeTensorsFile::from_bytes(std::vector<uint8_t> bytes, const std::string& label) {
  auto buf = std::make_shared<Buffer>();
  buf->owned = std::move(bytes);
  buf->data = buf->owned.data();
  buf->size = buf->owned.size();
  return parse(std::move(buf), label);
}

SafeTensorsFile SafeTensorsFile::parse(std::shared_ptr<const Buffer> buf, const std::string& label) {
  const std::string& L = label;
  const uint64_t fsize = buf->size;
  MDPS_CHECK(fsize >= 8, L, ": file is too short (", fsize, " bytes) to hold the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | buf->data[i];
  MDPS_CHECK(n <= kStMaxHeaderBytes, L, ": header length ", n, " is absurdly large (limit ", kStMaxHeaderBytes,
             " bytes)");
  MDPS_CHECK(n <= fsize - 8, L, ": header length ", n, " runs past the end of the file (", fsize, " bytes)");
  const uint64_t data_size = fsize - 8 - n;
  std::string_view text(reinterpret_cast<const char*>(buf->data + 8), size_t(n));

  json::Value root = json::parse(text, L + ": header is not valid JSON");
  MDPS_CHECK(root.kind == json::Kind::Object, L, ": header is not a JSON object (it is ",
             json::kind_name(root.kind), ")");
  MDPS_CHECK(text[0] == '{', L, ": header must begin with '{' (no leading whitespace)");

  SafeTensorsFile f;
  f.buf_ = std::move(buf);
  f.label_ = label;
  f.header_len_ = n;

  for (auto& [key, v] : root.members) {
    if (key == "__metadata__") {
      MDPS_CHECK(v.kind == json::Kind::Object, L, ": __metadata__ must be an object of strings, not ",
                 json::kind_name(v.kind));
      for (auto& [mk, mv] : v.members) {
        MDPS_CHECK(mv.kind == json::Kind::String, L, ": __metadata__ value for key '", mk,
                   "' is not a string (it is ", json::kind_name(mv.kind), ")");
        f.metadata_[mk] = mv.str;
      }
      continue;
    }
    const std::string T = cat(L, ": tensor '", key, "'");
    MDPS_CHECK(v.kind == json::Kind::Object, T, ": entry must be an object, not ", json::kind_name(v.kind));
    for (auto& m : v.members)
      MDPS_CHECK(m.first == "dtype" || m.first == "shape" || m.first == "data_offsets", T, ": unexpected key '",
                 m.first, "'");
    const json::Value* jd = v.find("dtype");
    const json::Value* js = v.find("shape");
    const json::Value* jo = v.find("data_offsets");
    MDPS_CHECK(jd, T, ": missing \"dtype\"");
    MDPS_CHECK(js, T, ": missing \"shape\"");
    MDPS_CHECK(jo, T, ": missing \"data_offsets\"");

    StTensorInfo info;
    info.name = key;
    MDPS_CHECK(jd->kind == json::Kind::String, T, ": dtype must be a string");
    MDPS_CHECK(dtype_from_name(jd->str, info.dtype), T, ": unknown dtype '", jd->str, "'");

    MDPS_CHECK(js->kind == json::Kind::Array, T, ": shape must be a list of non-negative integers");
    for (auto& d : js->items) {
      MDPS_CHECK(d.kind == json::Kind::Number && d.is_uint && d.uint <= uint64_t(INT64_MAX), T,
                 ": shape must be a list of non-negative integers");
      info.shape.push_back(int64_t(d.uint));
    }
    int64_t numel = 0, nbytes = 0;
    MDPS_CHECK(checked_numel(info.shape, numel) &&
                   !__builtin_mul_overflow(numel, int64_t(st_dtype_size(info.dtype)), &nbytes),
               T, ": shape ", shape_str(info.shape), " is absurdly large (element count overflows)");

    MDPS_CHECK(jo->kind == json::Kind::Array && jo->items.size() == 2 && jo->items[0].is_uint && jo->items[1].is_uint,
               T, ": data_offsets must be two non-negative integers");
    info.begin = jo->items[0].uint;
    info.end = jo->items[1].uint;
    const std::string offs = cat("data_offsets [", info.begin, ", ", info.end, "]");
    MDPS_CHECK(info.begin <= info.end, T, ": ", offs, " begin is after end");
    MDPS_CHECK(info.end <= data_size, T, ": ", offs, " run past the end of the data section (", data_size,
               " bytes)");
    MDPS_CHECK(info.end - info.begin == uint64_t(nbytes), T, ": ", offs, " hold ", info.end - info.begin,
               " bytes but ", st_dtype_name(info.dtype), " ", shape_str(info.shape), " needs ", nbytes);
    // The JSON parser rejects duplicate keys, so names are unique here.
    f.tensors_.emplace(key, std::move(info));
  }

  // The ranges must tile the data section: sorted by offset, each tensor
  // starts where the previous one ended and the last ends at the file end.
  std::vector<const StTensorInfo*> sorted;
  for (auto& kv : f.tensors_) sorted.push_back(&kv.second);
  std::sort(sorted.begin(), sorted.end(), [](const StTensorInfo* a, const StTensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;
  const StTensorInfo* prev = nullptr;
  for (const StTensorInfo* t : sorted) {
    MDPS_CHECK(t->begin >= covered, L, ": tensors '", prev ? prev->name : "", "' and '", t->name,
               "' overlap in the data section (bytes ", t->begin, "..", covered, ")");
    MDPS_CHECK(t->begin == covered, L, ": gap in the data section (unsorted/gaps): bytes ", covered, "..", t->begin,
               " before tensor '", t->name, "' belong to no tensor");
    covered = t->end;
    prev = t;
    f.order_.push_back(t->name);
  }
  MDPS_CHECK(covered == data_size, L, ": gap in the data section (unsorted/gaps): its last ", data_size - covered,
             " bytes (", covered, "..", data_size, ") belong to no tensor");
  return f;
}

std::vector<std::string> SafeTensorsFile::names() const { return order_; }

const StTensorInfo& SafeTensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  MDPS_CHECK(it != tensors_.end(), label_, ": no tensor named '", name, "'");
  return it->second;
}

uint64_t SafeTensorsFile::file_bytes() const { return buf_ ? buf_->size : 0; }

const uint8_t* SafeTensorsFile::raw(const std::string& name) const {
  const StTensorInfo& t = info(name);
  return buf_->data + 8 + header_len_ + t.begin;
}

Tensor SafeTensorsFile::read_f32(const std::string& name) const {
  const StTensorInfo& t = info(name);
  Tensor out = Tensor::empty(t.shape);
  const uint8_t* p = raw(name);
  size_t n = size_t(t.numel());
  float* dst = out.data();
  if (t.dtype == StDType::F32) {
    if (n) std::memcpy(dst, p, n * 4);
  } else {
    for (size_t i = 0; i < n; ++i) dst[i] = load_as<float>(t.dtype, p, i);
  }
  return out;
}

Tensor SafeTensorsFile::read_weights(const std::string& name) const {
  Tensor t = read_f32(name);
  const float* v = t.data();
  const size_t n = size_t(t.numel());
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i]))
      throw Error(cat(label_, ": tensor '", name, "' holds a non-finite value (", v[i], " at element ", i, " of ", n,
                      "): the file is damaged or the training diverged; it cannot give meaningful scores"));
  return t;
}

std::vector<float> SafeTensorsFile::read_f32_vector(const std::string& name) const {
  const StTensorInfo& t = info(name);
  const uint8_t* p = raw(name);
  std::vector<float> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = load_as<float>(t.dtype, p, i);
  return v;
}

std::vector<double> SafeTensorsFile::read_f64(const std::string& name) const {
  const StTensorInfo& t = info(name);
  const uint8_t* p = raw(name);
  std::vector<double> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = load_as<double>(t.dtype, p, i);
  return v;
}

std::vector<int64_t> SafeTensorsFile::read_i64(const std::string& name) const {
  const StTensorInfo& t = info(name);
  MDPS_CHECK(!st_dtype_is_float(t.dtype), label_, ": tensor '", name, "' is ", st_dtype_name(t.dtype),
             "; reading it as integers needs an integer dtype (I64, I32, I16, I8, U8, BOOL)");
  const uint8_t* p = raw(name);
  std::vector<int64_t> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = load_as<int64_t>(t.dtype, p, i);
  return v;
}

// ---- the writer ----------------------------------------------------------------

void SafeTensorsWriter::set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

void SafeTensorsWriter::check_new_name(const std::string& name, const Shape& shape, size_t count) const {
  MDPS_CHECK(name != "__metadata__", "safetensors writer: '__metadata__' is reserved and cannot name a tensor");
  MDPS_CHECK(!entries_.count(name), "safetensors writer: tensor '", name, "' added twice");
  int64_t numel = 0;
  bool ok = checked_numel(shape, numel);
  for (auto d : shape) ok = ok && d >= 0;
  MDPS_CHECK(ok, "safetensors writer: tensor '", name, "': invalid shape ", shape_str(shape));
  MDPS_CHECK(uint64_t(numel) == count, "safetensors writer: tensor '", name, "': shape ", shape_str(shape),
             " needs ", numel, " values, got ", count);
}

template <typename T>
static std::vector<uint8_t> to_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

void SafeTensorsWriter::add(const std::string& name, const Tensor& t) {
  MDPS_CHECK(t.defined(), "safetensors writer: tensor '", name, "' is undefined");
  MDPS_CHECK(t.dtype() == DType::F32, "safetensors writer: tensor '", name, "' is ", dtype_name(t.dtype()),
             "; only F32 tensors can be added");
  add_f32(name, t.shape(), t.to_vector());
}

void SafeTensorsWriter::add_f32(const std::string& name, const Shape& shape, const std::vector<float>& v) {
  check_new_name(name, shape, v.size());
  entries_[name] = Entry{StDType::F32, shape, to_bytes(v)};
}

void SafeTensorsWriter::add_f64(const std::string& name, const Shape& shape, const std::vector<double>& v) {
  check_new_name(name, shape, v.size());
  entries_[name] = Entry{StDType::F64, shape, to_bytes(v)};
}

void SafeTensorsWriter::add_i64(const std::string& name, const Shape& shape, const std::vector<int64_t>& v) {
  check_new_name(name, shape, v.size());
  entries_[name] = Entry{StDType::I64, shape, to_bytes(v)};
}

void SafeTensorsWriter::add_raw(const std::string& name, StDType dtype, const Shape& shape,
                                std::vector<uint8_t> bytes) {
  size_t es = st_dtype_size(dtype);
  MDPS_CHECK(bytes.size() % es == 0, "safetensors writer: tensor '", name, "': ", bytes.size(),
             " bytes is not a whole number of ", st_dtype_name(dtype), " elements");
  check_new_name(name, shape, bytes.size() / es);
  entries_[name] = Entry{dtype, shape, std::move(bytes)};
}

namespace {
// The 8-byte length followed by the padded JSON header.
std::string header_block(const std::map<std::string, std::string>& metadata,
                         const std::vector<std::pair<std::string, std::string>>& tensor_json) {
  std::string h = "{";
  bool first = true;
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool mfirst = true;
    for (auto& [k, v] : metadata) {
      if (!mfirst) h += ",";
      mfirst = false;
      h += json::quote(k) + ":" + json::quote(v);
    }
    h += "}";
    first = false;
  }
  for (auto& [name, js] : tensor_json) {
    if (!first) h += ",";
    first = false;
    h += json::quote(name) + ":" + js;
  }
  h += "}";
  while (h.size() % 8) h += ' ';
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xFF);
  return out + h;
}
}  // namespace

std::string SafeTensorsWriter::header() const {
  std::vector<std::pair<std::string, std::string>> tj;
  uint64_t off = 0;
  for (auto& [name, e] : entries_) {
    std::string s = "{\"dtype\":\"" + std::string(st_dtype_name(e.dtype)) + "\",\"shape\":[";
    for (size_t i = 0; i < e.shape.size(); ++i) s += (i ? "," : "") + std::to_string(e.shape[i]);
    s += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + e.bytes.size()) + "]}";
    off += e.bytes.size();
    tj.emplace_back(name, std::move(s));
  }
  return header_block(metadata_, tj);
}

std::vector<uint8_t> SafeTensorsWriter::serialize() const {
  std::string head = header();
  std::vector<uint8_t> out(head.begin(), head.end());
  for (auto& kv : entries_) out.insert(out.end(), kv.second.bytes.begin(), kv.second.bytes.end());
  return out;
}

void SafeTensorsWriter::write(const std::string& path) const {
  // Streamed entry by entry so a large checkpoint is not copied once more.
  AtomicFile f(path);
  f.write(header());
  for (auto& kv : entries_) f.write(kv.second.bytes.data(), kv.second.bytes.size());
  f.commit();
}

}  // namespace mdps
