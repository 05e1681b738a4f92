// stb_image with only its BMP reader, all functions static to this file, so
// none of stb's other decoders (GIF, PSD, HDR, PIC, PNM, TGA, and its own
// PNG and JPEG) is reachable from mdps, and nothing clashes with the libstb
// library that image_decode.cpp uses for PNG writing.
#include "engine/io/image_bmp.h"
#include <climits>
#include <cstring>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_NO_THREAD_LOCALS
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include <stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace mdps::bmp {

bool info(const uint8_t* data, size_t size, int& width, int& height, int& channels) {
  if (size > size_t(INT_MAX)) return false;
  return stbi_info_from_memory(data, int(size), &width, &height, &channels) != 0;
}

bool decode(const uint8_t* data, size_t size, int channels, std::vector<uint8_t>& out, std::string& why) {
  if (size > size_t(INT_MAX)) {
    why = "the file is larger than 2 GiB";
    return false;
  }
  int w = 0, h = 0, c = 0;
  unsigned char* p = stbi_load_from_memory(data, int(size), &w, &h, &c, channels);
  if (!p) {
    const char* r = stbi_failure_reason();
    why = r ? r : "unknown error";
    return false;
  }
  try {
    out.assign(p, p + size_t(w) * size_t(h) * size_t(channels));
  } catch (...) {
    stbi_image_free(p);
    throw;
  }
  stbi_image_free(p);
  return true;
}

}  // namespace mdps::bmp
