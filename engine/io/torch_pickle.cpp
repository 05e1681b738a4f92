#include "engine/io/torch_pickle.h"
#include "engine/core/common.h"
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace mdps {

const char* py_kind_name(PyKind k) {
  switch (k) {
    case PyKind::None: return "None";
    case PyKind::Bool: return "bool";
    case PyKind::Int: return "int";
    case PyKind::BigInt: return "int (beyond 64 bits)";
    case PyKind::Float: return "float";
    case PyKind::Str: return "str";
    case PyKind::Bytes: return "bytes";
    case PyKind::List: return "list";
    case PyKind::Tuple: return "tuple";
    case PyKind::Set: return "set";
    case PyKind::Dict: return "dict";
    case PyKind::Global: return "global";
    case PyKind::Storage: return "storage";
    case PyKind::Tensor: return "tensor";
  }
  return "?";
}

const PyValue* PyValue::get(const std::string& key) const {
  if (kind != PyKind::Dict) return nullptr;
  auto it = index.find("s" + std::to_string(key.size()) + ":" + key);
  return it == index.end() ? nullptr : entries[it->second].second;
}

PyValue* PyArena::make(PyKind k) {
  values_.emplace_back();
  values_.back().kind = k;
  return &values_.back();
}

TorchStorage* PyArena::make_storage() {
  storages_.emplace_back();
  return &storages_.back();
}

namespace {

// torch.<Name>Storage -> element type. Other storage types (complex,
// quantised) are not on the allow-list.
bool storage_dtype(const std::string& global, StDType& out) {
  static const std::pair<const char*, StDType> kTypes[] = {
      {"torch.FloatStorage", StDType::F32}, {"torch.DoubleStorage", StDType::F64},
      {"torch.HalfStorage", StDType::F16},  {"torch.BFloat16Storage", StDType::BF16},
      {"torch.LongStorage", StDType::I64},  {"torch.IntStorage", StDType::I32},
      {"torch.ShortStorage", StDType::I16}, {"torch.CharStorage", StDType::I8},
      {"torch.ByteStorage", StDType::U8},   {"torch.BoolStorage", StDType::BOOL},
  };
  for (auto& [name, t] : kTypes)
    if (global == name) {
      out = t;
      return true;
    }
  return false;
}

// Globals that may appear and what they are. Everything else is refused.
enum class Allowed { No, OrderedDict, RebuildTensorV2, RebuildTensor, RebuildParameter,
                     RebuildParameterWithState, RebuildFromTypeV2, Storage, TypeMarker };

Allowed classify(const std::string& g) {
  StDType t;
  if (g == "collections.OrderedDict") return Allowed::OrderedDict;
  if (g == "torch._utils._rebuild_tensor_v2") return Allowed::RebuildTensorV2;
  if (g == "torch._utils._rebuild_tensor") return Allowed::RebuildTensor;
  if (g == "torch._utils._rebuild_parameter") return Allowed::RebuildParameter;
  if (g == "torch._utils._rebuild_parameter_with_state") return Allowed::RebuildParameterWithState;
  if (g == "torch._tensor._rebuild_from_type_v2") return Allowed::RebuildFromTypeV2;
  if (storage_dtype(g, t)) return Allowed::Storage;
  // Only ever the `new_type` argument of _rebuild_from_type_v2.
  if (g == "torch.Tensor" || g == "torch.nn.parameter.Parameter") return Allowed::TypeMarker;
  return Allowed::No;
}

const char* opcode_name(uint8_t op) {
  switch (op) {
    case '(': return "MARK"; case '.': return "STOP"; case '0': return "POP"; case '1': return "POP_MARK";
    case '2': return "DUP"; case 'F': return "FLOAT"; case 'I': return "INT"; case 'J': return "BININT";
    case 'K': return "BININT1"; case 'L': return "LONG"; case 'M': return "BININT2"; case 'N': return "NONE";
    case 'P': return "PERSID"; case 'Q': return "BINPERSID"; case 'R': return "REDUCE"; case 'S': return "STRING";
    case 'T': return "BINSTRING"; case 'U': return "SHORT_BINSTRING"; case 'V': return "UNICODE";
    case 'X': return "BINUNICODE"; case 'a': return "APPEND"; case 'b': return "BUILD"; case 'c': return "GLOBAL";
    case 'd': return "DICT"; case '}': return "EMPTY_DICT"; case 'e': return "APPENDS"; case 'g': return "GET";
    case 'h': return "BINGET"; case 'i': return "INST"; case 'j': return "LONG_BINGET"; case 'l': return "LIST";
    case ']': return "EMPTY_LIST"; case 'o': return "OBJ"; case 'p': return "PUT"; case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT"; case 's': return "SETITEM"; case 't': return "TUPLE"; case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS"; case 'G': return "BINFLOAT"; case 0x80: return "PROTO"; case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1"; case 0x83: return "EXT2"; case 0x84: return "EXT4"; case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2"; case 0x87: return "TUPLE3"; case 0x88: return "NEWTRUE"; case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1"; case 0x8b: return "LONG4"; case 'B': return "BINBYTES"; case 'C': return "SHORT_BINBYTES";
    case 0x8c: return "SHORT_BINUNICODE"; case 0x8d: return "BINUNICODE8"; case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET"; case 0x90: return "ADDITEMS"; case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX"; case 0x93: return "STACK_GLOBAL"; case 0x94: return "MEMOIZE"; case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8"; case 0x97: return "NEXT_BUFFER"; case 0x98: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

// A decimal integer beyond 64 bits as minimal little-endian two's
// complement bytes, as LONG1 holds it; false for anything that fits in
// int64 or is not a plain decimal.
bool decimal_bigint(const std::string& text, std::string& out) {
  size_t i = (!text.empty() && (text[0] == '-' || text[0] == '+')) ? 1 : 0;
  const bool negative = i == 1 && text[0] == '-';
  if (i == text.size() || text.size() > 4096) return false;
  std::vector<uint8_t> mag;  // little-endian magnitude
  for (; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    unsigned carry = unsigned(text[i] - '0');
    for (uint8_t& byte : mag) {
      unsigned v = unsigned(byte) * 10 + carry;
      byte = uint8_t(v & 0xFF);
      carry = v >> 8;
    }
    if (carry) mag.push_back(uint8_t(carry));
  }
  while (!mag.empty() && mag.back() == 0) mag.pop_back();
  if (mag.size() < 8 || (mag.size() == 8 && !(mag[7] & 0x80))) return false;  // fits (or is int64's edge)
  if (negative) {  // two's complement
    unsigned carry = 1;
    for (uint8_t& byte : mag) {
      unsigned v = unsigned(uint8_t(~byte)) + carry;
      byte = uint8_t(v & 0xFF);
      carry = v >> 8;
    }
    if (!(mag.back() & 0x80)) mag.push_back(0xFF);
  } else if (mag.back() & 0x80) {
    mag.push_back(0x00);
  }
  out.assign(mag.begin(), mag.end());
  return true;
}

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, PyArena& arena, const StorageLoader& load, const std::string& label)
      : d_(data), n_(size), arena_(arena), load_(load), label_(label) {}

  const PyValue* run(size_t* consumed);

 private:
  template <typename... A>
  [[noreturn]] void fail(const A&... a) const {
    throw Error(cat(label_, ": pickle: ", a...));
  }
  std::string at() const { return cat(opname_, " at offset ", op_pos_); }

  // ---- input ----
  const uint8_t* take(uint64_t k) {
    if (k > n_ - pos_) fail("truncated: ", at(), " needs ", k, " more bytes, ", n_ - pos_, " left");
    const uint8_t* p = d_ + pos_;
    pos_ += size_t(k);
    return p;
  }
  uint64_t le(int k) {
    const uint8_t* p = take(uint64_t(k));
    uint64_t v = 0;
    for (int j = k - 1; j >= 0; --j) v = (v << 8) | p[j];
    return v;
  }
  std::string line() {
    const void* nl = std::memchr(d_ + pos_, '\n', n_ - pos_);
    if (!nl) fail("truncated: ", at(), " has no terminating newline");
    size_t len = size_t(static_cast<const uint8_t*>(nl) - (d_ + pos_));
    std::string s(reinterpret_cast<const char*>(d_ + pos_), len);
    pos_ += len + 1;
    if (!s.empty() && s.back() == '\r') s.pop_back();
    return s;
  }
  int64_t parse_int(const std::string& text) {
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0') fail(at(), ": '", text, "' is not an integer");
    if (errno == ERANGE) fail(at(), ": integer '", text, "' is beyond 64 bits");
    return int64_t(v);
  }
  std::string bytes_of_len(uint64_t k) {
    const uint8_t* p = take(k);
    return std::string(reinterpret_cast<const char*>(p), size_t(k));
  }

  // ---- stack ----
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(PyValue* v) { stack_.push_back(v); }
  PyValue* pop() {
    if (stack_.size() <= floor()) fail("stack underflow: ", at());
    PyValue* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  PyValue* top() {
    if (stack_.size() <= floor()) fail("stack underflow: ", at());
    return stack_.back();
  }
  std::vector<PyValue*> pop_mark() {
    if (marks_.empty()) fail(at(), " without a MARK");
    std::vector<PyValue*> items(stack_.begin() + std::ptrdiff_t(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  PyValue* make(PyKind k) { return arena_.make(k); }
  PyValue* make_int(int64_t v) {
    PyValue* x = make(PyKind::Int);
    x->i = v;
    return x;
  }
  PyValue* make_seq(PyKind k, std::vector<PyValue*> items) {
    PyValue* x = make(k);
    x->items = std::move(items);
    return x;
  }
  PyValue* make_str(PyKind k, std::string s) {
    PyValue* x = make(k);
    x->s = std::move(s);
    return x;
  }
  PyValue* memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail(at(), ": memo entry ", idx, " was never stored");
    return it->second;
  }
  void memo_put(uint64_t idx) { memo_[idx] = top(); }

  // ---- containers ----
  // Python's key identity for the keys that can occur (True == 1 as in Python).
  void key_id(const PyValue* k, std::string& out, int depth) {
    // Shared (memoised) items could make a key's identity quadratic in the input.
    if (out.size() > (1u << 16)) fail(at(), ": dict key larger than 64 KiB");
    switch (k->kind) {
      case PyKind::None: out += "N"; return;
      case PyKind::Bool: out += k->b ? "i1;" : "i0;"; return;
      case PyKind::Int: out += cat("i", k->i, ";"); return;
      case PyKind::BigInt: out += cat("I", k->s.size(), ":", k->s); return;
      case PyKind::Float: {
        char buf[40];
        std::snprintf(buf, sizeof buf, "f%a;", k->f);
        out += buf;
        return;
      }
      case PyKind::Str: out += cat("s", k->s.size(), ":", k->s); return;
      case PyKind::Bytes: out += cat("b", k->s.size(), ":", k->s); return;
      case PyKind::Global: out += cat("g", k->s.size(), ":", k->s); return;
      case PyKind::Tuple:
        if (depth > 16) fail(at(), ": dict key nested more than 16 tuples deep");
        out += cat("(", k->items.size(), ":");
        for (const PyValue* e : k->items) key_id(e, out, depth + 1);
        out += ")";
        return;
      default: fail(at(), ": unhashable dict key of type ", py_kind_name(k->kind));
    }
  }
  void set_item(PyValue* dict, PyValue* k, PyValue* v) {
    if (dict->kind != PyKind::Dict) fail(at(), " on a ", py_kind_name(dict->kind), ", not a dict");
    std::string id;
    key_id(k, id, 0);
    auto [it, fresh] = dict->index.emplace(id, dict->entries.size());
    if (fresh)
      dict->entries.emplace_back(k, v);
    else
      dict->entries[it->second].second = v;  // a repeated key replaces the value, as in Python
  }
  void extend(PyValue* seq, const std::vector<PyValue*>& items, PyKind want) {
    if (seq->kind != want) fail(at(), " on a ", py_kind_name(seq->kind), ", not a ", py_kind_name(want));
    seq->items.insert(seq->items.end(), items.begin(), items.end());
  }

  // ---- the allow-list ----
  PyValue* global(const std::string& module, const std::string& name) {
    std::string g = module + "." + name;
    if (classify(g) == Allowed::No) {
      if (module == "torch" && name.size() > 7 && name.compare(name.size() - 7, 7, "Storage") == 0)
        fail("storage type '", g, "' is not supported (", at(), ")");
      fail("global '", g, "' is not allowed (", at(),
           "); only tensors, storages and (ordered) dicts are rebuilt, nothing is executed");
    }
    return make_str(PyKind::Global, g);
  }
  int64_t as_int(const PyValue* v, const char* what) {
    if (v->kind == PyKind::Int) return v->i;
    if (v->kind == PyKind::Bool) return v->b;
    fail(at(), ": ", what, " is a ", py_kind_name(v->kind), ", not an int");
  }
  std::vector<int64_t> int_tuple(const PyValue* v, const char* what) {
    if (v->kind != PyKind::Tuple && v->kind != PyKind::List)
      fail(at(), ": tensor ", what, " is a ", py_kind_name(v->kind), ", not a tuple");
    std::vector<int64_t> out;
    for (const PyValue* e : v->items) {
      int64_t x = as_int(e, what);
      if (x < 0) fail(at(), ": tensor ", what, " has a negative entry ", x);
      out.push_back(x);
    }
    return out;
  }
  PyValue* rebuild_tensor(const std::vector<PyValue*>& a) {
    if (a[0]->kind != PyKind::Storage) fail(at(), ": tensor rebuilt from a ", py_kind_name(a[0]->kind), ", not a storage");
    const PyValue& st = *a[0];
    int64_t offset = as_int(a[1], "storage offset");
    Shape size = int_tuple(a[2], "size");
    std::vector<int64_t> stride = int_tuple(a[3], "stride");
    if (offset < 0) fail(at(), ": negative storage offset ", offset);
    if (size.size() != stride.size())
      fail(at(), ": tensor size ", shape_str(size), " and stride ", shape_str(stride), " differ in rank");
    int64_t numel = 1;
    int64_t last = offset;  // the highest element index the tensor touches
    bool overflow = false;
    for (size_t k = 0; k < size.size(); ++k) {
      int64_t span = 0;
      overflow |= __builtin_mul_overflow(numel, size[k], &numel);
      if (size[k] > 0) overflow |= __builtin_mul_overflow(size[k] - 1, stride[k], &span);
      overflow |= __builtin_add_overflow(last, span, &last);
    }
    if (overflow) fail(at(), ": tensor size ", shape_str(size), " / stride ", shape_str(stride), " overflows");
    if (numel > 0 && last >= st.storage_numel)
      fail(at(), ": tensor of size ", shape_str(size), ", stride ", shape_str(stride), ", offset ", offset,
           " reaches element ", last, " of storage '", st.storage->key, "', which has ", st.storage_numel);
    // A tensor whose elements do not overlap has at most as many as its
    // storage; more means overlapping strides (expand()), whose copy could be
    // arbitrarily larger than the file.
    if (numel > st.storage_numel)
      fail(at(), ": tensor of size ", shape_str(size), ", stride ", shape_str(stride), " has more elements than",
           " storage '", st.storage->key, "' (", st.storage_numel, "): overlapping (expanded) tensors are not supported");
    // The stride of a dimension of size 1 is never used to address anything;
    // zeroing it keeps the gather's offset arithmetic in range.
    for (size_t k = 0; k < size.size(); ++k)
      if (size[k] <= 1) stride[k] = 0;
    PyValue* t = make(PyKind::Tensor);
    t->tensor.storage = st.storage;
    t->tensor.storage_offset = st.storage_offset + offset;
    t->tensor.size = std::move(size);
    t->tensor.stride = std::move(stride);
    return t;
  }
  PyValue* call(const PyValue* fn, const PyValue* args, bool nested = false) {
    if (fn->kind != PyKind::Global) fail(at(), " calls a ", py_kind_name(fn->kind), ", not an allowed callable");
    if (args->kind != PyKind::Tuple) fail(at(), ": arguments of '", fn->s, "' are a ", py_kind_name(args->kind), ", not a tuple");
    const std::vector<PyValue*>& a = args->items;
    auto arity = [&](size_t lo, size_t hi) {
      if (a.size() < lo || a.size() > hi) fail(at(), ": '", fn->s, "' called with ", a.size(), " arguments");
    };
    auto tensor_arg = [&]() -> PyValue* {
      if (a[0]->kind != PyKind::Tensor) fail(at(), ": '", fn->s, "' given a ", py_kind_name(a[0]->kind), ", not a tensor");
      return a[0];
    };
    switch (classify(fn->s)) {
      case Allowed::OrderedDict: {
        arity(0, 1);
        PyValue* d = make(PyKind::Dict);
        if (a.empty()) return d;
        if (a[0]->kind != PyKind::List && a[0]->kind != PyKind::Tuple)
          fail(at(), ": OrderedDict built from a ", py_kind_name(a[0]->kind), ", not a list of pairs");
        for (PyValue* kv : a[0]->items) {
          if ((kv->kind != PyKind::List && kv->kind != PyKind::Tuple) || kv->items.size() != 2)
            fail(at(), ": OrderedDict item is not a (key, value) pair");
          set_item(d, kv->items[0], kv->items[1]);
        }
        return d;
      }
      case Allowed::RebuildTensorV2: arity(6, 7); return rebuild_tensor(a);
      case Allowed::RebuildTensor: arity(4, 4); return rebuild_tensor(a);
      case Allowed::RebuildParameter: arity(3, 3); return tensor_arg();
      case Allowed::RebuildParameterWithState: arity(4, 4); return tensor_arg();
      case Allowed::RebuildFromTypeV2: {
        arity(4, 4);
        if (nested) fail(at(), ": nested _rebuild_from_type_v2");
        if (a[1]->kind != PyKind::Global || classify(a[1]->s) != Allowed::TypeMarker)
          fail(at(), ": _rebuild_from_type_v2 to a type other than torch.Tensor / Parameter");
        PyValue* t = call(a[0], a[2], true);
        if (t->kind != PyKind::Tensor) fail(at(), ": _rebuild_from_type_v2 did not rebuild a tensor");
        return t;
      }
      default: fail(at(), ": '", fn->s, "' is not callable");
    }
  }
  PyValue* newobj(const PyValue* cls, const PyValue* args) {
    if (cls->kind == PyKind::Global && classify(cls->s) == Allowed::OrderedDict) return make(PyKind::Dict);
    fail(at(), ": cannot instantiate a ", cls->kind == PyKind::Global ? "'" + cls->s + "'" : py_kind_name(cls->kind));
  }
  void build(PyValue* obj, const PyValue* state) {
    // An OrderedDict's instance __dict__ (a state dict's _metadata) or a
    // parameter's state: neither matters for the tensors, so both are dropped.
    if (obj->kind == PyKind::Dict || obj->kind == PyKind::Tensor) return;
    fail(at(), " on a ", py_kind_name(obj->kind), " is not allowed");
  }
  PyValue* persistent_load(const PyValue* pid) {
    if (pid->kind != PyKind::Tuple || pid->items.empty() || pid->items[0]->kind != PyKind::Str)
      fail(at(), ": persistent id is a ", py_kind_name(pid->kind), ", not a ('storage', ...) tuple");
    const auto& it = pid->items;
    if (it[0]->s != "storage") fail(at(), ": persistent id of type '", it[0]->s, "' is not supported");
    if (it.size() != 5 && it.size() != 6) fail(at(), ": storage persistent id has ", it.size(), " fields, not 5 or 6");
    StDType dtype;
    if (it[1]->kind != PyKind::Global || !storage_dtype(it[1]->s, dtype))
      fail(at(), ": storage persistent id names no storage type");
    std::string key;
    if (it[2]->kind == PyKind::Str)
      key = it[2]->s;
    else if (it[2]->kind == PyKind::Int)
      key = std::to_string(it[2]->i);
    else
      fail(at(), ": storage key is a ", py_kind_name(it[2]->kind));
    if (it[3]->kind != PyKind::Str) fail(at(), ": storage location is a ", py_kind_name(it[3]->kind));
    int64_t numel = as_int(it[4], "storage size");
    if (numel < 0) fail(at(), ": storage '", key, "' has negative size ", numel);
    PyValue* s = make(PyKind::Storage);
    s->storage = load_(key, dtype, numel);
    s->storage_numel = numel;
    if (it.size() == 6 && it[5]->kind != PyKind::None) {
      // A legacy storage view: (view_key, offset, size) into the root storage.
      const PyValue* v = it[5];
      if (v->kind != PyKind::Tuple || v->items.size() != 3) fail(at(), ": storage view metadata is not a 3-tuple");
      int64_t off = as_int(v->items[1], "view offset"), len = as_int(v->items[2], "view size");
      if (off < 0 || len < 0 || off > numel || len > numel - off)
        fail(at(), ": storage view [", off, ", +", len, ") lies outside storage '", key, "' of ", numel, " elements");
      s->storage_offset = off;
      s->storage_numel = len;
    }
    return s;
  }

  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  PyArena& arena_;
  const StorageLoader& load_;
  const std::string& label_;
  size_t op_pos_ = 0;
  const char* opname_ = "";
  std::vector<PyValue*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PyValue*> memo_;
};

const PyValue* Unpickler::run(size_t* consumed) {
  if (n_ == 0) fail("empty input");
  for (;;) {
    if (pos_ >= n_) fail("truncated: no STOP opcode before the end of the data (offset ", pos_, ")");
    op_pos_ = pos_;
    const uint8_t op = d_[pos_++];
    opname_ = opcode_name(op);
    if (!opname_) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", unsigned(op));
      fail("unknown opcode ", hex, " at offset ", op_pos_);
    }
    switch (op) {
      case 0x80: {
        uint64_t proto = le(1);
        if (proto > 5) fail("unsupported protocol ", proto);
        break;
      }
      case 0x95: le(8); break;  // FRAME: a length hint; the data is read as one stream anyway
      case '(': marks_.push_back(stack_.size()); break;
      case '.': {
        PyValue* v = pop();
        if (consumed) *consumed = pos_;
        return v;
      }
      case '0':
        if (stack_.size() > floor())
          stack_.pop_back();
        else
          pop_mark();
        break;
      case '1': pop_mark(); break;
      case '2': push(top()); break;
      // ---- scalars ----
      case 'N': push(make(PyKind::None)); break;
      case 0x88: case 0x89: {
        PyValue* b = make(PyKind::Bool);
        b->b = op == 0x88;
        push(b);
        break;
      }
      case 'I': {
        std::string t = line();
        if (t == "00" || t == "01") {
          PyValue* b = make(PyKind::Bool);
          b->b = t == "01";
          push(b);
        } else {
          push(make_int(parse_int(t)));
        }
        break;
      }
      case 'L': {
        std::string t = line();
        if (!t.empty() && t.back() == 'L') t.pop_back();
        std::string le_bytes;
        if (decimal_bigint(t, le_bytes))
          push(make_str(PyKind::BigInt, le_bytes));  // protocols 0/1 write the legacy magic number so
        else
          push(make_int(parse_int(t)));
        break;
      }
      case 'J': push(make_int(int32_t(uint32_t(le(4))))); break;
      case 'K': push(make_int(int64_t(le(1)))); break;
      case 'M': push(make_int(int64_t(le(2)))); break;
      case 0x8a: case 0x8b: {
        uint64_t len = op == 0x8a ? le(1) : le(4);
        if (op == 0x8b && int32_t(uint32_t(len)) < 0) fail(at(), ": negative length");
        const uint8_t* p = take(len);
        if (len <= 8) {
          uint64_t v = 0;
          for (uint64_t j = len; j-- > 0;) v = (v << 8) | p[j];
          if (len > 0 && len < 8 && (p[len - 1] & 0x80)) v |= ~uint64_t(0) << (8 * len);  // sign-extend
          push(make_int(int64_t(v)));
        } else {
          push(make_str(PyKind::BigInt, std::string(reinterpret_cast<const char*>(p), size_t(len))));
        }
        break;
      }
      case 'F': {
        std::string t = line();
        char* end = nullptr;
        double v = std::strtod(t.c_str(), &end);
        if (t.empty() || *end != '\0') fail(at(), ": '", t, "' is not a float");
        PyValue* f = make(PyKind::Float);
        f->f = v;
        push(f);
        break;
      }
      case 'G': {
        const uint8_t* p = take(8);
        uint64_t bits = 0;
        for (int j = 0; j < 8; ++j) bits = (bits << 8) | p[j];  // big-endian
        PyValue* f = make(PyKind::Float);
        std::memcpy(&f->f, &bits, 8);
        push(f);
        break;
      }
      // ---- strings ----
      case 'S': {
        std::string t = line();
        if (t.size() < 2 || (t[0] != '\'' && t[0] != '"') || t.back() != t[0])
          fail(at(), ": STRING argument is not quoted");
        t = t.substr(1, t.size() - 2);
        if (t.find('\\') != std::string::npos) fail(at(), ": escaped STRING arguments are not supported");
        push(make_str(PyKind::Str, t));
        break;
      }
      case 'V': {
        std::string t = line();
        if (t.find('\\') != std::string::npos) fail(at(), ": escaped UNICODE arguments are not supported");
        push(make_str(PyKind::Str, t));
        break;
      }
      case 'T': {
        uint64_t len = le(4);
        if (int32_t(uint32_t(len)) < 0) fail(at(), ": negative length");
        push(make_str(PyKind::Str, bytes_of_len(len)));
        break;
      }
      case 'U': case 0x8c: push(make_str(PyKind::Str, bytes_of_len(le(1)))); break;
      case 'X': push(make_str(PyKind::Str, bytes_of_len(le(4)))); break;
      case 0x8d: push(make_str(PyKind::Str, bytes_of_len(le(8)))); break;
      case 'C': push(make_str(PyKind::Bytes, bytes_of_len(le(1)))); break;
      case 'B': push(make_str(PyKind::Bytes, bytes_of_len(le(4)))); break;
      case 0x8e: push(make_str(PyKind::Bytes, bytes_of_len(le(8)))); break;
      // ---- containers ----
      case ')': push(make(PyKind::Tuple)); break;
      case 't': push(make_seq(PyKind::Tuple, pop_mark())); break;
      case 0x85: case 0x86: case 0x87: {
        size_t k = size_t(op - 0x84);
        std::vector<PyValue*> items(k);
        for (size_t j = k; j-- > 0;) items[j] = pop();
        push(make_seq(PyKind::Tuple, std::move(items)));
        break;
      }
      case ']': push(make(PyKind::List)); break;
      case 'l': push(make_seq(PyKind::List, pop_mark())); break;
      case 'a': {
        PyValue* v = pop();
        extend(top(), {v}, PyKind::List);
        break;
      }
      case 'e': {
        auto items = pop_mark();
        extend(top(), items, PyKind::List);
        break;
      }
      case 0x8f: push(make(PyKind::Set)); break;
      case 0x91: push(make_seq(PyKind::Set, pop_mark())); break;
      case 0x90: {
        auto items = pop_mark();
        extend(top(), items, PyKind::Set);
        break;
      }
      case '}': push(make(PyKind::Dict)); break;
      case 'd': {
        auto items = pop_mark();
        if (items.size() % 2) fail(at(), ": odd number of items (", items.size(), ")");
        PyValue* d = make(PyKind::Dict);
        for (size_t j = 0; j < items.size(); j += 2) set_item(d, items[j], items[j + 1]);
        push(d);
        break;
      }
      case 's': {
        PyValue* v = pop();
        PyValue* k = pop();
        set_item(top(), k, v);
        break;
      }
      case 'u': {
        auto items = pop_mark();
        if (items.size() % 2) fail(at(), ": odd number of items (", items.size(), ")");
        PyValue* d = top();
        for (size_t j = 0; j < items.size(); j += 2) set_item(d, items[j], items[j + 1]);
        break;
      }
      // ---- memo ----
      case 'p': memo_put(uint64_t(parse_int(line()))); break;
      case 'q': memo_put(le(1)); break;
      case 'r': memo_put(le(4)); break;
      case 0x94: memo_put(memo_.size()); break;
      case 'g': push(memo_get(uint64_t(parse_int(line())))); break;
      case 'h': push(memo_get(le(1))); break;
      case 'j': push(memo_get(le(4))); break;
      // ---- globals and calls (allow-listed only) ----
      case 'c': {
        std::string module = line();
        std::string name = line();
        push(global(module, name));
        break;
      }
      case 0x93: {
        PyValue* name = pop();
        PyValue* module = pop();
        if (module->kind != PyKind::Str || name->kind != PyKind::Str) fail(at(), ": module and name must be strings");
        push(global(module->s, name->s));
        break;
      }
      case 'R': {
        PyValue* args = pop();
        PyValue* fn = pop();
        push(call(fn, args));
        break;
      }
      case 'i': {
        std::string module = line();
        std::string name = line();
        PyValue* fn = global(module, name);
        push(call(fn, make_seq(PyKind::Tuple, pop_mark())));
        break;
      }
      case 'o': {
        auto items = pop_mark();
        if (items.empty()) fail(at(), " without a class");
        PyValue* fn = items[0];
        items.erase(items.begin());
        push(call(fn, make_seq(PyKind::Tuple, std::move(items))));
        break;
      }
      case 0x81: {
        PyValue* args = pop();
        PyValue* cls = pop();
        push(newobj(cls, args));
        break;
      }
      case 0x92: {
        PyValue* kwargs = pop();
        PyValue* args = pop();
        PyValue* cls = pop();
        if (kwargs->kind != PyKind::Dict || !kwargs->entries.empty()) fail(at(), ": keyword arguments are not supported");
        push(newobj(cls, args));
        break;
      }
      case 'b': {
        PyValue* state = pop();
        build(top(), state);
        break;
      }
      case 'Q': {
        PyValue* pid = pop();
        push(persistent_load(pid));
        break;
      }
      default:
        // PERSID (text ids), EXT1/2/4 (extension registry) and the protocol-5
        // out-of-band buffers never occur in torch.save output.
        fail("unsupported opcode ", opname_, " at offset ", op_pos_);
    }
  }
}

}  // namespace

const PyValue* unpickle(const uint8_t* data, size_t size, PyArena& arena, const StorageLoader& load,
                        const std::string& label, size_t* consumed) {
  return Unpickler(data, size, arena, load, label).run(consumed);
}

}  // namespace mdps
