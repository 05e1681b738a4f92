// libFuzzer target: any byte string either opens as a valid safetensors file
// whose every tensor then reads in bounds, or is rejected with mdps::Error.
// Anything else (a crash, a sanitizer report, another exception type) is a bug.
#include "engine/io/safetensors.h"
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = mdps::SafeTensorsFile::from_bytes(std::vector<uint8_t>(data, data + size), "fuzz");
    uint64_t total = 0;
    for (const auto& name : f.names()) {
      const auto& info = f.info(name);
      total += info.bytes();
      // Keep the work per input bounded: a valid header may declare a large
      // tensor only if the input really holds its bytes, so this is O(size).
      mdps::Tensor t = f.read_f32(name);
      if (t.numel() != info.numel()) std::abort();
      (void)f.read_f64(name);
      if (!mdps::st_dtype_is_float(info.dtype)) (void)f.read_i64(name);
      (void)f.raw(name);
    }
    if (total != f.data_bytes()) std::abort();
    for (const auto& kv : f.metadata()) total += kv.first.size() + kv.second.size();
  } catch (const mdps::Error&) {
  }
  return 0;
}
