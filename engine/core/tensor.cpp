#include "engine/core/tensor.h"
#include "engine/core/backend.h"
#include <cstring>

namespace mdps {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16:
    case DType::BF16: return 2;
  }
  return 4;
}
const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
  }
  return "?";
}
const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}
int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

Storage::Storage(Backend& backend, size_t bytes) : backend_(&backend), ptr_(nullptr), bytes_(bytes) {
  ptr_ = backend.raw_alloc(bytes);
}
Storage::~Storage() { backend_->raw_free(ptr_, bytes_); }

Tensor Tensor::empty(const Shape& shape, Backend& backend, DType dtype) {
  for (auto d : shape) MDPS_CHECK(d >= 0, "tensor shape ", shape_str(shape), " has a negative dimension");
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(backend, std::max<size_t>(t.bytes(), 1));
  return t;
}
Tensor Tensor::empty(const Shape& shape) { return empty(shape, cpu_backend()); }
Tensor Tensor::zeros(const Shape& shape, Backend& backend) {
  Tensor t = empty(shape, backend);
  t.zero();
  return t;
}
Tensor Tensor::zeros(const Shape& shape) { return zeros(shape, cpu_backend()); }
Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape);
  t.fill(value);
  return t;
}
Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
  MDPS_CHECK(int64_t(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
             " values for shape ", shape_str(shape));
  Tensor t = empty(shape);
  if (!values.empty()) std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  if (i < 0) i += n;
  MDPS_CHECK(i >= 0 && i < n, "dimension ", i, " out of range for tensor ", shape_str(shape_));
  return shape_[size_t(i)];
}
Backend& Tensor::backend() const {
  MDPS_CHECK(storage_, "use of an undefined tensor");
  return storage_->backend();
}
Device Tensor::device() const { return backend().device(); }

void* Tensor::raw_data() const {
  MDPS_CHECK(storage_, "use of an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * dtype_size(dtype_);
}
float* Tensor::data() {
  MDPS_CHECK(dtype_ == DType::F32, "float access to a ", dtype_name(dtype_), " tensor");
  return static_cast<float*>(raw_data());
}
const float* Tensor::data() const {
  MDPS_CHECK(dtype_ == DType::F32, "float access to a ", dtype_name(dtype_), " tensor");
  return static_cast<const float*>(raw_data());
}
float Tensor::at(int64_t i) const {
  MDPS_CHECK(i >= 0 && i < numel(), "index ", i, " out of range for ", describe());
  if (device() == Device::CPU) return data()[i];
  float v;
  backend().copy_device_to_host(&v, data() + i, sizeof(float));
  return v;
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      MDPS_CHECK(infer < 0, "reshape to ", shape_str(shape), ": more than one -1");
      infer = int(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    MDPS_CHECK(known > 0 && numel() % known == 0, "cannot reshape ", describe(), " to ", shape_str(shape));
    s[size_t(infer)] = numel() / known;
  }
  MDPS_CHECK(shape_numel(s) == numel(), "cannot reshape ", describe(), " to ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = s;
  return t;
}

Tensor Tensor::slice_batch(int64_t begin, int64_t end) const {
  MDPS_CHECK(ndim() >= 1 && begin >= 0 && begin <= end && end <= shape_[0], "slice [", begin, ", ", end,
             ") out of range for ", describe());
  Tensor t = *this;
  int64_t inner = shape_[0] ? numel() / shape_[0] : 0;
  t.offset_ = offset_ + size_t(begin * inner);
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, backend(), dtype_);
  backend().copy_device_to_device(t.raw_data(), raw_data(), bytes());
  return t;
}

Tensor Tensor::to(Backend& target) const {
  if (&target == &backend()) return clone();
  Tensor t = empty(shape_, target, dtype_);
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  MDPS_CHECK(src.numel() == numel() && src.dtype_ == dtype_, "copy_from: ", src.describe(), " into ", describe());
  if (bytes() == 0) return;
  Backend& sb = src.backend();
  Backend& db = backend();
  if (&sb == &db) {
    db.copy_device_to_device(raw_data(), src.raw_data(), bytes());
  } else if (sb.device() == Device::CPU) {
    db.copy_host_to_device(raw_data(), src.raw_data(), bytes());
  } else if (db.device() == Device::CPU) {
    sb.copy_device_to_host(raw_data(), src.raw_data(), bytes());
  } else {
    std::vector<char> host(bytes());
    sb.copy_device_to_host(host.data(), src.raw_data(), bytes());
    db.copy_host_to_device(raw_data(), host.data(), bytes());
  }
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> v(static_cast<size_t>(numel()));
  if (v.empty()) return v;
  if (device() == Device::CPU) {
    std::memcpy(v.data(), data(), v.size() * sizeof(float));
  } else {
    backend().copy_device_to_host(v.data(), data(), v.size() * sizeof(float));
  }
  return v;
}

void Tensor::fill(float value) { backend().fill(*this, value); }
void Tensor::zero() { fill(0.f); }

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return cat(dtype_name(dtype_), shape_str(shape_), " ", device_name(device()));
}

void check_shape(const Tensor& t, const Shape& expected, const std::string& what) {
  MDPS_CHECK(t.defined(), what, ": tensor is undefined, expected shape ", shape_str(expected));
  MDPS_CHECK(t.shape() == expected, what, ": shape ", shape_str(t.shape()), ", expected ", shape_str(expected));
}

}  // namespace mdps
