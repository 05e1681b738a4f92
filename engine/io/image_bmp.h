// BMP through stb_image compiled with its BMP reader only (image_bmp.cpp):
// the one place in mdps that instantiates stb_image's decoders.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mdps::bmp {

// The header's width, height and channel count (3 or 4); false when stb
// cannot read the header.
bool info(const uint8_t* data, size_t size, int& width, int& height, int& channels);
// Decodes to `channels` (3 or 4) 8-bit samples; on failure returns false and
// sets `why` to stb's reason.
bool decode(const uint8_t* data, size_t size, int channels, std::vector<uint8_t>& out, std::string& why);

}  // namespace mdps::bmp
