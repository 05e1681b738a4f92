// libFuzzer target for `mdps convert`: any byte string either converts (as a
// zip or legacy PyTorch checkpoint) to a state dict whose safetensors image
// then reads back, or is rejected with mdps::Error. The same bytes also go
// to the restricted unpickler directly, since inside a zip archive most
// mutations stop at the CRC check. Anything else (a crash, a sanitizer
// report, another exception type) is a bug.
#include "engine/io/torch_checkpoint.h"
#include "engine/io/torch_pickle.h"
#include <cstdint>
#include <cstdlib>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    mdps::ConvertOptions opt;
    // Tensors may share a storage, so the output could otherwise grow with
    // the square of the input; keep the work per input bounded.
    opt.max_output_bytes = 64u << 20;
    mdps::ConvertResult r = mdps::convert_torch_checkpoint(data, size, "fuzz", opt);
    if (r.tensors == 0 || r.tensors != r.writer.size()) std::abort();
    auto f = mdps::SafeTensorsFile::from_bytes(r.writer.serialize(), "fuzz-out");
    if (f.data_bytes() != r.bytes) std::abort();
  } catch (const mdps::Error&) {
  }
  try {
    mdps::PyArena arena;
    mdps::StorageLoader load = [&](const std::string& key, mdps::StDType dtype, int64_t numel) {
      mdps::TorchStorage* s = arena.make_storage();
      s->key = key;
      s->dtype = dtype;
      s->numel = numel;
      return s;  // no data: nothing reads through it here
    };
    (void)mdps::unpickle(data, size, arena, load, "fuzz");
  } catch (const mdps::Error&) {
  }
  return 0;
}
