// Tensor: a shape, a dtype, and a view into reference-counted storage that a
// backend allocated. Views (reshape, batch slices) share storage; nothing is
// copied unless clone() is asked for. Storage is always contiguous and the
// engine works in float32 NCHW; F16/BF16 are reserved for storage.
#pragma once
#include "engine/core/common.h"
#include <memory>
#include <vector>
#include <initializer_list>

namespace mdps {

class Backend;

enum class DType : uint8_t { F32 = 0, F16 = 1, BF16 = 2 };
size_t dtype_size(DType t);
const char* dtype_name(DType t);

enum class Device : uint8_t { CPU = 0, CUDA = 1 };
const char* device_name(Device d);

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

// One allocation from a backend; freed through the same backend when the last
// tensor that refers to it goes away.
class Storage {
 public:
  Storage(Backend& backend, size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  Backend& backend() const { return *backend_; }

 private:
  Backend* backend_;
  void* ptr_;
  size_t bytes_;
};

class Tensor {
 public:
  Tensor() = default;

  // Uninitialised / zero-filled tensors on a backend (default: the CPU backend).
  static Tensor empty(const Shape& shape, Backend& backend, DType dtype = DType::F32);
  static Tensor empty(const Shape& shape);
  static Tensor zeros(const Shape& shape, Backend& backend);
  static Tensor zeros(const Shape& shape);
  static Tensor full(const Shape& shape, float value);
  // A CPU tensor holding a copy of `values` (size must match the shape).
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the back
  int64_t numel() const { return shape_numel(shape_); }
  DType dtype() const { return dtype_; }
  Backend& backend() const;
  Device device() const;
  size_t bytes() const { return size_t(numel()) * dtype_size(dtype_); }

  // Raw element pointers (device memory for device tensors). F32 only.
  float* data();
  const float* data() const;
  void* raw_data() const;
  // Element i of a CPU float tensor, for tests and tools.
  float at(int64_t i) const;

  // Views sharing storage.
  Tensor reshape(const Shape& shape) const;  // one dimension may be -1
  Tensor slice_batch(int64_t begin, int64_t end) const;  // along dim 0
  Tensor operator[](int64_t i) const { return slice_batch(i, i + 1); }

  // Copies.
  Tensor clone() const;                       // same backend
  Tensor to(Backend& backend) const;          // another backend
  std::vector<float> to_vector() const;       // host copy of the elements
  void copy_from(const Tensor& src);          // same numel, any backends
  void fill(float value);
  void zero();

  bool same_storage(const Tensor& o) const { return storage_ == o.storage_; }
  std::string describe() const;  // "f32[2, 3, 64, 64] cpu"

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // in elements
  Shape shape_;
  DType dtype_ = DType::F32;
};

// Throws unless `t` has exactly this shape; `what` names the tensor.
void check_shape(const Tensor& t, const Shape& expected, const std::string& what);

}  // namespace mdps
