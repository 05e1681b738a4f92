// PyTorch checkpoints (torch.save output) read without Python and turned
// into a safetensors state dict. Both on-disk formats are understood:
//   zip (torch >= 1.6): <archive>/data.pkl plus one <archive>/data/<key>
//       entry per storage (engine/io/zip_reader.h);
//   legacy (_use_new_zipfile_serialization=False, and torch < 1.6): the
//       pickled magic number 0x1950a86a20f9469cfc6c, protocol version and
//       system info, then the object pickle, a pickled list of storage keys
//       and, per key in that order, an int64 element count and the raw bytes.
// The object pickle goes through the restricted unpickler
// (engine/io/torch_pickle.h), so loading a checkpoint never executes code.
#pragma once
#include "engine/io/safetensors.h"
#include "engine/io/torch_pickle.h"
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mdps {

// A parsed checkpoint. Storages point into the bytes it was read from, which
// must outlive it.
struct TorchCheckpoint {
  std::string format;  // "zip" or "legacy"
  std::shared_ptr<PyArena> arena;
  const PyValue* root = nullptr;
};

TorchCheckpoint read_torch_checkpoint(const uint8_t* data, size_t size, const std::string& label);

// A tensor's elements in row-major order, gathered through its strides.
// Float dtypes become float (F64 rounded, F16/BF16 exact); integer and bool
// dtypes become int64.
std::vector<float> torch_tensor_f32(const TorchTensor& t, const std::string& label);
std::vector<int64_t> torch_tensor_i64(const TorchTensor& t, const std::string& label);

// Where the state dict is, given the checkpoint's top object: the object
// itself when it holds tensors, else the value under `key` when given, else
// under the first of kStateDictKeys present, else the only dict value that
// holds tensors. Sets *used_key ("" = the top level).
extern const char* const kStateDictKeys[];
const PyValue* find_state_dict(const PyValue* root, const std::string& key, const std::string& label,
                               std::string* used_key);

struct ConvertOptions {
  std::string key;           // --key: the top-level entry holding the state dict
  std::string strip_prefix;  // --strip-prefix: removed from names that start with it (after `module.`)
  // When non-zero, a conversion writing more tensor bytes than this fails
  // (the fuzz target's bound on work per input; tensors may share storages).
  uint64_t max_output_bytes = 0;
};

struct ConvertResult {
  SafeTensorsWriter writer;
  std::string format;     // "zip" / "legacy"
  std::string used_key;   // "" = the top-level object was the state dict
  size_t tensors = 0;
  uint64_t bytes = 0;     // tensor data written
  std::vector<std::string> notes;  // skipped entries, stripped prefixes, ...
};

// The whole conversion on a memory buffer (the fuzz target's entry point).
ConvertResult convert_torch_checkpoint(const uint8_t* data, size_t size, const std::string& label,
                                       const ConvertOptions& opt);
// Reads `path` (memory-mapped) and converts it; messages name the path.
ConvertResult convert_torch_file(const std::string& path, const ConvertOptions& opt);

}  // namespace mdps
