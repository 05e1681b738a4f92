// A restricted unpickler for PyTorch checkpoints. It understands the pickle
// opcodes of protocols 0-4 that torch.save (protocol 2) and Python 2/3 can
// emit and builds a small value tree: None, bool, int, float, str, bytes,
// list, tuple, set, dict (OrderedDict), tensor. Nothing is ever executed:
// GLOBAL / STACK_GLOBAL / INST resolve only names on an allow-list
// (collections.OrderedDict, the torch._utils tensor and parameter rebuilders,
// torch._tensor._rebuild_from_type_v2, torch.*Storage, torch.Tensor and
// torch.nn.parameter.Parameter as type markers), and REDUCE / NEWOBJ / BUILD
// apply only to those, interpreted here in C++. Any other global is an error
// naming it.
//
// Persistent ids ('storage', torch.XStorage, key, location, numel[, view])
// go to a StorageLoader the caller supplies (the zip and legacy formats find
// storage bytes in different places; see torch_checkpoint.h).
#pragma once
#include "engine/io/safetensors.h"
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mdps {

// One storage of a checkpoint: `numel` elements of `dtype`. `data` points at
// numel * st_dtype_size(dtype) bytes once they are known (the legacy format
// stores them after the object pickle); until then it is null.
struct TorchStorage {
  std::string key;
  StDType dtype = StDType::F32;
  int64_t numel = 0;
  const uint8_t* data = nullptr;
};

// A tensor as _rebuild_tensor_v2 describes it; bounds were checked against
// the storage's declared numel when it was built.
struct TorchTensor {
  const TorchStorage* storage = nullptr;
  int64_t storage_offset = 0;  // elements
  Shape size;
  std::vector<int64_t> stride;  // elements
  int64_t numel() const { return shape_numel(size); }
};

enum class PyKind { None, Bool, Int, BigInt, Float, Str, Bytes, List, Tuple, Set, Dict, Global, Storage, Tensor };
const char* py_kind_name(PyKind k);

struct PyValue {
  PyKind kind = PyKind::None;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  // Str / Bytes: the bytes; BigInt: little-endian two's complement;
  // Global: "module.name".
  std::string s;
  std::vector<PyValue*> items;                       // List / Tuple / Set
  std::vector<std::pair<PyValue*, PyValue*>> entries;  // Dict, in insertion order
  std::unordered_map<std::string, size_t> index;     // Dict: key identity -> entries position
  TorchStorage* storage = nullptr;                   // Storage
  int64_t storage_offset = 0;                        // Storage (a legacy view's start, elements)
  int64_t storage_numel = 0;                         // Storage (elements visible through it)
  TorchTensor tensor;                                // Tensor

  // Dict lookup by string key (nullptr when absent or not a dict).
  const PyValue* get(const std::string& key) const;
};

// Owns every value and storage of one checkpoint; values point at each other
// (pickles may share and even cycle), so they live and die together.
class PyArena {
 public:
  PyValue* make(PyKind k);
  TorchStorage* make_storage();

 private:
  std::deque<PyValue> values_;
  std::deque<TorchStorage> storages_;
};

// Returns the storage for a persistent id; `numel` is the element count the
// id declares. Called once per occurrence; it may return the same storage
// for a key seen before.
using StorageLoader = std::function<TorchStorage*(const std::string& key, StDType dtype, int64_t numel)>;

// Unpickles the pickle starting at data[0] (up to and including STOP).
// `consumed` (optional) receives the number of bytes it spans. Every error
// is an mdps::Error starting with `label` and naming the offending opcode,
// global or value.
const PyValue* unpickle(const uint8_t* data, size_t size, PyArena& arena, const StorageLoader& load,
                        const std::string& label, size_t* consumed = nullptr);

}  // namespace mdps
