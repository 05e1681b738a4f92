// Reading and writing safetensors files: an 8-byte little-endian header
// length N, N bytes of JSON header
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the data section. The reader memory-maps the file and validates the
// header strictly (every tensor in bounds, sizes matching dtype x shape, the
// ranges tiling the data section without gaps or overlaps) before anything is
// read, so a malformed file fails at open() with a message naming the file.
#pragma once
#include "engine/core/tensor.h"
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mdps {

enum class StDType : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };
const char* st_dtype_name(StDType t);
size_t st_dtype_size(StDType t);
bool st_dtype_is_float(StDType t);

struct StTensorInfo {
  std::string name;
  StDType dtype = StDType::F32;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte offsets in the data section
  int64_t numel() const { return shape_numel(shape); }
  uint64_t bytes() const { return end - begin; }
};

// Largest header accepted (the reference implementation's limit).
constexpr uint64_t kStMaxHeaderBytes = 100u * 1000u * 1000u;

// IEEE half / bfloat16 bit patterns to float (exact: every value, including
// subnormals, infinities and NaNs, is representable in float).
float half_to_float(uint16_t h);
float bf16_to_float(uint16_t b);

class SafeTensorsFile {
 public:
  // Memory-maps `path` read-only; throws mdps::Error naming the path.
  static SafeTensorsFile open(const std::string& path);
  // Validates an in-memory file; `label` stands for the path in messages.
  static SafeTensorsFile from_bytes(std::vector<uint8_t> bytes, const std::string& label);

  const std::string& path() const { return label_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> names() const;  // in data (offset) order
  size_t size() const { return order_.size(); }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const StTensorInfo& info(const std::string& name) const;
  uint64_t file_bytes() const;
  uint64_t header_bytes() const { return header_len_; }
  uint64_t data_bytes() const { return file_bytes() - 8 - header_len_; }

  // Any dtype converted to a float32 CPU tensor of the stored shape.
  Tensor read_f32(const std::string& name) const;
  std::vector<float> read_f32_vector(const std::string& name) const;
  // read_f32 for model weights: a NaN or infinity anywhere is an error naming
  // the file and the tensor (non-finite weights score every image NaN, and
  // NaN > threshold would pass every image as OK).
  Tensor read_weights(const std::string& name) const;
  // Exact for F64 (and for every F32/F16/BF16 and small-integer value).
  std::vector<double> read_f64(const std::string& name) const;
  // Integer dtypes only (I64/I32/I16/I8/U8/BOOL), exact.
  std::vector<int64_t> read_i64(const std::string& name) const;
  // The stored little-endian bytes (info(name).bytes() of them); may be unaligned.
  const uint8_t* raw(const std::string& name) const;

 private:
  struct Buffer;
  SafeTensorsFile() = default;
  static SafeTensorsFile parse(std::shared_ptr<const Buffer> buf, const std::string& label);

  std::shared_ptr<const Buffer> buf_;
  std::string label_;
  uint64_t header_len_ = 0;
  std::map<std::string, StTensorInfo> tensors_;
  std::vector<std::string> order_;
  std::map<std::string, std::string> metadata_;
};

// Collects tensors and writes them in one go: tensors sorted by name,
// offsets contiguous, header space-padded so the data section starts at a
// multiple of 8 bytes.
class SafeTensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value);
  void add(const std::string& name, const Tensor& t);  // F32; copied to the host if needed
  void add_f32(const std::string& name, const Shape& shape, const std::vector<float>& v);
  void add_f64(const std::string& name, const Shape& shape, const std::vector<double>& v);
  void add_i64(const std::string& name, const Shape& shape, const std::vector<int64_t>& v);
  // Stores already-encoded little-endian bytes (e.g. F16 bit patterns).
  void add_raw(const std::string& name, StDType dtype, const Shape& shape, std::vector<uint8_t> bytes);

  size_t size() const { return entries_.size(); }
  // The complete file image.
  std::vector<uint8_t> serialize() const;
  // Streams the file through AtomicFile (engine/core/atomic_file.h): a
  // temporary name, every write checked, fsynced and renamed over `path`, so
  // readers never see a half-written file; on failure the temp file is
  // removed and an existing `path` is left untouched.
  void write(const std::string& path) const;

 private:
  struct Entry {
    StDType dtype;
    Shape shape;
    std::vector<uint8_t> bytes;
  };
  std::string header() const;  // the 8-byte length and the padded JSON
  void check_new_name(const std::string& name, const Shape& shape, size_t count) const;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace mdps
