// libFuzzer target for image decoding (engine/io/image_decode.h): any byte string
// either decodes to an image whose size matches its pixel buffer, or is
// rejected with mdps::Error. Anything else (a crash, a sanitizer report,
// another exception type, an allocation beyond the pixel limit) is a bug.
#include "engine/io/image_decode.h"
#include "engine/core/common.h"
#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Small images only: a header may declare anything, and the limit is what
  // keeps a 100-byte input from asking for gigabytes.
  mdps::set_max_image_pixels(1u << 20);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    mdps::DecodedImage img = mdps::decode_image_bytes(data, size, "fuzz");
    if (img.width <= 0 || img.height <= 0 || img.channels < 1 || img.channels > 4) std::abort();
    if (uint64_t(img.width) * uint64_t(img.height) > (1u << 20)) std::abort();
    if (img.pixels.size() != size_t(img.width) * size_t(img.height) * size_t(img.channels)) std::abort();
  } catch (const mdps::Error&) {
  }
  return 0;
}
