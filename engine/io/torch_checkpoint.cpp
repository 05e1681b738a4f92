#include "engine/io/torch_checkpoint.h"
#include "engine/core/common.h"
#include "engine/io/zip_reader.h"
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <unordered_map>

namespace mdps {

namespace {

// numel * element size, or false on overflow.
bool storage_bytes(const TorchStorage& s, uint64_t& out) {
  return !__builtin_mul_overflow(uint64_t(s.numel), uint64_t(st_dtype_size(s.dtype)), &out);
}

// Keeps one TorchStorage per key; a key seen again must agree on type and size.
class StorageTable {
 public:
  StorageTable(PyArena& arena, const std::string& label) : arena_(arena), label_(label) {}
  // Returns the storage and whether it was new.
  std::pair<TorchStorage*, bool> get(const std::string& key, StDType dtype, int64_t numel) {
    auto it = by_key_.find(key);
    if (it != by_key_.end()) {
      TorchStorage* s = it->second;
      MDPS_CHECK(s->dtype == dtype && s->numel == numel, label_, ": storage '", key, "' is declared twice, as ",
                 st_dtype_name(s->dtype), "[", s->numel, "] and ", st_dtype_name(dtype), "[", numel, "]");
      return {s, false};
    }
    TorchStorage* s = arena_.make_storage();
    s->key = key;
    s->dtype = dtype;
    s->numel = numel;
    by_key_[key] = s;
    order_.push_back(s);
    return {s, true};
  }
  TorchStorage* find(const std::string& key) const {
    auto it = by_key_.find(key);
    return it == by_key_.end() ? nullptr : it->second;
  }
  const std::vector<TorchStorage*>& all() const { return order_; }

 private:
  PyArena& arena_;
  const std::string& label_;
  std::unordered_map<std::string, TorchStorage*> by_key_;
  std::vector<TorchStorage*> order_;
};

TorchCheckpoint read_zip(const uint8_t* data, size_t size, const std::string& label) {
  ZipReader zip(data, size, label);
  // torch.save names every record <archive>/...; the archive folder is the
  // file's stem ("archive" since torch 2), so find it from data.pkl.
  std::string prefix;
  for (const ZipEntry& e : zip.entries()) {
    size_t slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      MDPS_CHECK(prefix.empty(), label, ": two object pickles ('", prefix, "data.pkl' and '", e.name, "')");
      prefix = e.name.substr(0, slash + 1);
    }
  }
  MDPS_CHECK(!prefix.empty(), label, ": zip archive without an <archive>/data.pkl entry; not a PyTorch checkpoint");
  if (const ZipEntry* bo = zip.find(prefix + "byteorder")) {
    std::string order(reinterpret_cast<const char*>(zip.bytes(*bo)), size_t(bo->size));
    MDPS_CHECK(order == "little", label, ": byte order '", order, "' is not supported (only little-endian)");
  }

  TorchCheckpoint ck;
  ck.format = "zip";
  ck.arena = std::make_shared<PyArena>();
  StorageTable table(*ck.arena, label);
  StorageLoader load = [&](const std::string& key, StDType dtype, int64_t numel) {
    auto [s, fresh] = table.get(key, dtype, numel);
    if (!fresh) return s;
    const std::string name = prefix + "data/" + key;
    const ZipEntry* e = zip.find(name);
    MDPS_CHECK(e, label, ": storage '", key, "' has no entry '", name, "'");
    uint64_t need = 0;
    MDPS_CHECK(storage_bytes(*s, need) && e->size >= need, label, ": storage '", key, "' (", st_dtype_name(dtype),
               "[", numel, "]) needs more bytes than entry '", name, "' holds (", e->size, ")");
    s->data = zip.bytes(*e);
    return s;
  };
  const ZipEntry& pkl = *zip.find(prefix + "data.pkl");
  ck.root = unpickle(zip.bytes(pkl), size_t(pkl.size), *ck.arena, load, label + " (" + pkl.name + ")");
  return ck;
}

// The legacy magic number 0x1950a86a20f9469cfc6c as LONG1 stores it.
const std::string kLegacyMagic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);
constexpr int64_t kLegacyProtocol = 1001;

TorchCheckpoint read_legacy(const uint8_t* data, size_t size, const std::string& label) {
  MDPS_CHECK(!(size >= 262 && std::memcmp(data + 257, "ustar", 5) == 0), label,
             ": a tar checkpoint (torch < 0.4 format) is not supported; load and re-save it with a newer torch");
  TorchCheckpoint ck;
  ck.format = "legacy";
  ck.arena = std::make_shared<PyArena>();
  PyArena& arena = *ck.arena;
  StorageLoader none = [&](const std::string&, StDType, int64_t) -> TorchStorage* {
    throw Error(cat(label, ": storage reference in the legacy header"));
  };
  size_t pos = 0, used = 0;
  const PyValue* magic = nullptr;
  try {
    magic = unpickle(data, size, arena, none, label, &used);
  } catch (const Error&) {
  }
  MDPS_CHECK(magic && magic->kind == PyKind::BigInt && magic->s == kLegacyMagic, label,
             ": not a PyTorch checkpoint (neither a zip archive nor the legacy magic number)");
  pos += used;
  const PyValue* proto = unpickle(data + pos, size - pos, arena, none, label + " (protocol version)", &used);
  pos += used;
  MDPS_CHECK(proto->kind == PyKind::Int && proto->i == kLegacyProtocol, label,
             ": unsupported legacy protocol version (expected 1001)");
  const PyValue* sys_info = unpickle(data + pos, size - pos, arena, none, label + " (system info)", &used);
  pos += used;
  const PyValue* le = sys_info->get("little_endian");
  MDPS_CHECK(!(le && le->kind == PyKind::Bool && !le->b), label, ": saved on a big-endian machine; not supported");

  StorageTable table(arena, label);
  StorageLoader load = [&](const std::string& key, StDType dtype, int64_t numel) {
    return table.get(key, dtype, numel).first;  // the bytes follow the key list
  };
  ck.root = unpickle(data + pos, size - pos, arena, load, label, &used);
  pos += used;
  const PyValue* keys = unpickle(data + pos, size - pos, arena, none, label + " (storage keys)", &used);
  pos += used;
  MDPS_CHECK(keys->kind == PyKind::List, label, ": storage key list is a ", py_kind_name(keys->kind), ", not a list");
  for (const PyValue* k : keys->items) {
    MDPS_CHECK(k->kind == PyKind::Str, label, ": storage key is a ", py_kind_name(k->kind), ", not a str");
    TorchStorage* s = table.find(k->s);
    MDPS_CHECK(s, label, ": storage key '", k->s, "' is listed but no tensor refers to it");
    MDPS_CHECK(!s->data, label, ": storage key '", k->s, "' is listed twice");
    MDPS_CHECK(size - pos >= 8, label, ": truncated: no element count for storage '", k->s, "' at offset ", pos);
    int64_t count = 0;
    std::memcpy(&count, data + pos, 8);
    pos += 8;
    MDPS_CHECK(count == s->numel, label, ": storage '", k->s, "' holds ", count, " elements, the pickle declares ",
               s->numel);
    uint64_t need = 0;
    MDPS_CHECK(storage_bytes(*s, need) && need <= size - pos, label, ": truncated: storage '", k->s, "' needs ", need,
               " bytes at offset ", pos, ", ", size - pos, " left");
    s->data = data + pos;
    pos += size_t(need);
  }
  for (const TorchStorage* s : table.all())
    MDPS_CHECK(s->data, label, ": storage '", s->key, "' is not in the storage key list; its data is missing");
  return ck;
}

// Calls f(element index in the storage) for every element in row-major order.
template <typename F>
void for_each_offset(const TorchTensor& t, F f) {
  const size_t nd = t.size.size();
  const int64_t n = t.numel();
  if (n == 0) return;
  std::vector<int64_t> idx(nd, 0);
  int64_t off = t.storage_offset;
  for (int64_t i = 0; i < n; ++i) {
    f(off);
    for (size_t k = nd; k-- > 0;) {
      off += t.stride[k];
      if (++idx[k] < t.size[k]) break;
      off -= t.stride[k] * t.size[k];
      idx[k] = 0;
    }
  }
}

template <typename T, typename Out>
void gather_as(const TorchTensor& t, std::vector<Out>& out) {
  const uint8_t* base = t.storage->data;
  size_t i = 0;
  for_each_offset(t, [&](int64_t off) {
    T v;
    std::memcpy(&v, base + size_t(off) * sizeof(T), sizeof(T));
    out[i++] = Out(v);
  });
}

void check_resolved(const TorchTensor& t, const std::string& label) {
  MDPS_CHECK(t.storage && t.storage->data, label, ": tensor storage has no data");
}

}  // namespace

TorchCheckpoint read_torch_checkpoint(const uint8_t* data, size_t size, const std::string& label) {
  MDPS_CHECK(size > 0, label, ": empty file");
  return looks_like_zip(data, size) ? read_zip(data, size, label) : read_legacy(data, size, label);
}

std::vector<float> torch_tensor_f32(const TorchTensor& t, const std::string& label) {
  check_resolved(t, label);
  std::vector<float> out(size_t(t.numel()));
  switch (t.storage->dtype) {
    case StDType::F32: gather_as<float>(t, out); break;
    case StDType::F64: gather_as<double>(t, out); break;
    case StDType::F16: case StDType::BF16: {
      const bool half = t.storage->dtype == StDType::F16;
      std::vector<uint16_t> bits(out.size());
      gather_as<uint16_t>(t, bits);
      for (size_t i = 0; i < bits.size(); ++i) out[i] = half ? half_to_float(bits[i]) : bf16_to_float(bits[i]);
      break;
    }
    case StDType::I64: gather_as<int64_t>(t, out); break;
    case StDType::I32: gather_as<int32_t>(t, out); break;
    case StDType::I16: gather_as<int16_t>(t, out); break;
    case StDType::I8: gather_as<int8_t>(t, out); break;
    case StDType::U8: case StDType::BOOL: gather_as<uint8_t>(t, out); break;
  }
  return out;
}

std::vector<int64_t> torch_tensor_i64(const TorchTensor& t, const std::string& label) {
  check_resolved(t, label);
  std::vector<int64_t> out(size_t(t.numel()));
  switch (t.storage->dtype) {
    case StDType::I64: gather_as<int64_t>(t, out); break;
    case StDType::I32: gather_as<int32_t>(t, out); break;
    case StDType::I16: gather_as<int16_t>(t, out); break;
    case StDType::I8: gather_as<int8_t>(t, out); break;
    case StDType::U8: case StDType::BOOL: gather_as<uint8_t>(t, out); break;
    default: throw Error(cat(label, ": ", st_dtype_name(t.storage->dtype), " tensor read as integers"));
  }
  return out;
}

const char* const kStateDictKeys[] = {"state_dict", "model_state_dict", "model", "net", "network", "module", nullptr};

namespace {

bool holds_tensors(const PyValue* v) {
  if (!v || v->kind != PyKind::Dict) return false;
  for (auto& kv : v->entries)
    if (kv.second->kind == PyKind::Tensor) return true;
  return false;
}

std::string key_list(const PyValue* dict) {
  std::string s;
  size_t n = 0;
  for (auto& kv : dict->entries) {
    if (kv.first->kind != PyKind::Str) continue;
    if (n++ == 20) {
      s += ", ...";
      break;
    }
    s += (s.empty() ? "'" : ", '") + kv.first->s + "'";
  }
  return s.empty() ? "(none)" : s;
}

}  // namespace

const PyValue* find_state_dict(const PyValue* root, const std::string& key, const std::string& label,
                               std::string* used_key) {
  MDPS_CHECK(root->kind == PyKind::Dict, label, ": the checkpoint holds a ", py_kind_name(root->kind),
             ", not a dict of tensors");
  if (!key.empty()) {
    const PyValue* v = root->get(key);
    MDPS_CHECK(v, label, ": no entry '", key, "' at the top level; entries: ", key_list(root));
    MDPS_CHECK(v->kind == PyKind::Dict, label, ": entry '", key, "' is a ", py_kind_name(v->kind), ", not a dict");
    *used_key = key;
    return v;
  }
  if (holds_tensors(root)) {
    *used_key = "";
    return root;
  }
  for (const char* const* k = kStateDictKeys; *k; ++k) {
    const PyValue* v = root->get(*k);
    if (holds_tensors(v)) {
      *used_key = *k;
      return v;
    }
  }
  const PyValue* found = nullptr;
  std::string names;
  for (auto& kv : root->entries) {
    if (kv.first->kind != PyKind::Str || !holds_tensors(kv.second)) continue;
    names += (names.empty() ? "'" : ", '") + kv.first->s + "'";
    if (!found) *used_key = kv.first->s;
    found = found ? root : kv.second;  // root marks "more than one"
  }
  MDPS_CHECK(found, label, ": no state dict found: no top-level entry is a dict of tensors; entries: ", key_list(root));
  MDPS_CHECK(found != root, label, ": several entries hold tensors (", names, "); choose one with --key");
  return found;
}

ConvertResult convert_torch_checkpoint(const uint8_t* data, size_t size, const std::string& label,
                                       const ConvertOptions& opt) {
  TorchCheckpoint ck = read_torch_checkpoint(data, size, label);
  ConvertResult r;
  r.format = ck.format;
  const PyValue* sd = find_state_dict(ck.root, opt.key, label, &r.used_key);

  // Other top-level dicts of tensors (an EMA copy, an optimizer's state) are
  // worth a word: the user may have wanted one of them.
  if (sd != ck.root)
    for (auto& kv : ck.root->entries)
      if (kv.second != sd && kv.first->kind == PyKind::Str && holds_tensors(kv.second))
        r.notes.push_back(cat("entry '", kv.first->s, "' also holds tensors (choose it with --key)"));

  const std::string kModule = "module.";
  size_t n_module = 0, n_prefix = 0, n_skipped = 0;
  std::map<std::string, std::string> origin;  // output name -> checkpoint name
  for (auto& [k, v] : sd->entries) {
    const std::string src = k->kind == PyKind::Str ? k->s : cat("<", py_kind_name(k->kind), " key>");
    if (k->kind != PyKind::Str || v->kind != PyKind::Tensor) {
      if (n_skipped++ < 10)
        r.notes.push_back(cat("skipped '", src, "' (", py_kind_name(v->kind), k->kind == PyKind::Str ? "" : ", non-string key",
                              ")"));
      continue;
    }
    std::string name = src;
    if (name.compare(0, kModule.size(), kModule) == 0) {
      name.erase(0, kModule.size());
      ++n_module;
    }
    if (!opt.strip_prefix.empty() && name.compare(0, opt.strip_prefix.size(), opt.strip_prefix) == 0) {
      name.erase(0, opt.strip_prefix.size());
      ++n_prefix;
    }
    MDPS_CHECK(!name.empty(), label, ": tensor '", src, "' has no name left after stripping prefixes");
    auto [it, fresh] = origin.emplace(name, src);
    MDPS_CHECK(fresh, label, ": tensors '", it->second, "' and '", src, "' would both be named '", name, "'");

    const TorchTensor& t = v->tensor;
    const std::string what = cat(label, ": tensor '", src, "'");
    const uint64_t out_bytes = uint64_t(t.numel()) * (st_dtype_is_float(t.storage->dtype) ? 4 : 8);
    MDPS_CHECK(!opt.max_output_bytes || out_bytes <= opt.max_output_bytes - std::min(r.bytes, opt.max_output_bytes),
               what, ": the conversion would write more than ", opt.max_output_bytes, " bytes");
    if (st_dtype_is_float(t.storage->dtype)) {
      r.writer.add_f32(name, t.size, torch_tensor_f32(t, what));
      r.bytes += uint64_t(t.numel()) * 4;
    } else {
      r.writer.add_i64(name, t.size, torch_tensor_i64(t, what));
      r.bytes += uint64_t(t.numel()) * 8;
    }
    ++r.tensors;
  }
  if (n_skipped > 10) r.notes.push_back(cat("... and ", n_skipped - 10, " more non-tensor entries skipped"));
  if (n_module) r.notes.push_back(cat("stripped 'module.' from ", n_module, " names"));
  if (!opt.strip_prefix.empty())
    r.notes.push_back(n_prefix ? cat("stripped '", opt.strip_prefix, "' from ", n_prefix, " names")
                               : cat("no name starts with '", opt.strip_prefix, "'; names kept"));
  MDPS_CHECK(r.tensors > 0, label, ": the state dict", r.used_key.empty() ? "" : cat(" under '", r.used_key, "'"),
             " holds no tensors");
  r.writer.set_metadata("format", "pt");
  r.writer.set_metadata("converted_from", std::filesystem::path(label).filename().string());
  if (!r.used_key.empty()) r.writer.set_metadata("state_dict_key", r.used_key);
  return r;
}

ConvertResult convert_torch_file(const std::string& path, const ConvertOptions& opt) {
  std::error_code ec;
  MDPS_CHECK(std::filesystem::is_regular_file(path, ec), "cannot read '", path, "': not a file");
  std::ifstream in(path, std::ios::binary);
  MDPS_CHECK(in.good(), "cannot open '", path, "'");
  std::vector<uint8_t> bytes(size_t(std::filesystem::file_size(path, ec)));
  in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size()));
  MDPS_CHECK(in.gcount() == std::streamsize(bytes.size()), "reading '", path, "' failed");
  return convert_torch_checkpoint(bytes.data(), bytes.size(), path, opt);
}

}  // namespace mdps
