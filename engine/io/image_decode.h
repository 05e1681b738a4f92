// Image file decoding: exactly the documented formats, each through a
// decoder chosen for it, never by guessing among many:
//   PNG   libpng (Debian libpng-dev): chunk CRCs and the zlib stream are
//         checked, so damaged files are refused rather than decoded to garbage;
//   JPEG  libjpeg-turbo (Debian libjpeg62-turbo-dev), Pillow's own decoder
//         with Pillow's defaults, so pixels match the authors' PIL pipeline;
//         a corrupt stream (a libjpeg warning) is refused;
//   BMP   stb_image compiled in one translation unit of ours with only its
//         BMP reader (STBI_ONLY_BMP, from Debian's libstb-dev header).
// The format is told by the file's signature; anything else (GIF, TIFF, PSD,
// ...) is refused by name. The dimensions are read from the header first and
// refused above max_image_pixels() before any pixel memory is allocated.
//
// Result: 8-bit samples, interleaved, 1 (gray), 2 (gray + alpha), 3 (RGB) or
// 4 (RGBA) channels as stored; 16-bit samples keep their high byte (Pillow's
// "RGB;16B" unpacker), palettes are expanded to RGB, gray below 8 bits is
// scaled to 0..255, and no gamma or colour management is applied.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mdps {

struct DecodedImage {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;  // width * height * channels
};

// The default limit on width * height: 100 megapixels (e.g. 10000 x 10000),
// about 300 MB once decoded to 8-bit RGB. --max-image-pixels changes it.
constexpr uint64_t kDefaultMaxImagePixels = 100'000'000;
// Process-wide, as the thread count: set once by the command line.
uint64_t max_image_pixels();
void set_max_image_pixels(uint64_t n);  // n >= 1

// Reads and decodes `path` (which must be a regular file); every error names
// the file: missing, not a regular file, empty, an unsupported format, too
// large (with the limit and the option raising it), or damaged (the
// decoder's reason).
DecodedImage decode_image_file(const std::string& path);
// The same for bytes in memory; `label` stands for the file in messages.
DecodedImage decode_image_bytes(const uint8_t* data, size_t size, const std::string& label);

// Encodes 8-bit pixels (1, 3 or 4 channels) as PNG, in memory.
std::vector<uint8_t> encode_png(const uint8_t* pixels, int width, int height, int channels);

}  // namespace mdps
