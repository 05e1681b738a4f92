#include "engine/core/backend.h"

namespace mdps {

const char* mem_category_name(MemCategory c) {
  switch (c) {
    case MemCategory::Other: return "other";
    case MemCategory::Weights: return "weights";
    case MemCategory::Activations: return "activations";
    case MemCategory::InputGrad: return "input_grad";
    case MemCategory::WeightGrad: return "weight_grad";
    case MemCategory::Optimizer: return "optimizer";
    case MemCategory::Count: break;
  }
  return "?";
}

void AllocStats::on_alloc(size_t bytes, MemCategory c) {
  int64_t now = bytes_in_use.fetch_add(int64_t(bytes)) + int64_t(bytes);
  int64_t peak = peak_bytes.load();
  while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {
  }
  allocations.fetch_add(1);
  bytes_allocated_by_category[size_t(c)].fetch_add(int64_t(bytes));
}
void AllocStats::on_free(size_t bytes) { bytes_in_use.fetch_sub(int64_t(bytes)); }

static thread_local MemCategory g_current_category = MemCategory::Other;
MemCategoryScope::MemCategoryScope(MemCategory c) : saved_(g_current_category) { g_current_category = c; }
MemCategoryScope::~MemCategoryScope() { g_current_category = saved_; }
MemCategory MemCategoryScope::current() { return g_current_category; }

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::FP32: return "fp32";
    case Precision::TF32: return "tf32";
    case Precision::BF16: return "bf16";
  }
  return "?";
}

Precision parse_precision(const std::string& s) {
  if (s == "fp32") return Precision::FP32;
  if (s == "tf32") return Precision::TF32;
  if (s == "bf16") return Precision::BF16;
  throw Error(cat("--precision: unknown precision '", s, "' (expected fp32, tf32 or bf16)"));
}

void Backend::set_precision(Precision p) {
  MDPS_CHECK(p == Precision::FP32, "--precision ", precision_name(p), ": the ", name(),
             " backend computes in fp32 only (tf32 and bf16 are for --device cuda)");
  precision_ = p;
}

}  // namespace mdps
