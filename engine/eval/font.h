// Text on images without a font library: a 5x7 bitmap font of printable
// ASCII (32..126) with a descender row (g, j, p, q, y, comma, semicolon),
// drawn at an integer scale, for the labels on `mdps eval` panels.
//
// The glyphs were drawn for this project in the manner of the classic 5x7
// dot-matrix character sets (e.g. HD44780 LCD controllers); no font file or
// table was copied. Each 5x8 glyph sits in a 6x9 cell (one column and one
// row of spacing), so a line of n characters is 6n x 9 pixels at scale 1.
// Bytes outside 32..126 (control characters, UTF-8 sequences) are drawn as
// '?', one per byte.
#pragma once
#include "engine/io/image.h"
#include <array>
#include <cstdint>
#include <string>

namespace mdps {

constexpr int kGlyphWidth = 5, kGlyphHeight = 8;
constexpr int kFontCellWidth = 6, kFontCellHeight = 9;

// The 8 rows of glyph `c`, top first (row 7: descenders); bit 4 is the
// leftmost column.
std::array<uint8_t, kGlyphHeight> glyph_rows(char c);

// The size `text` takes at `scale`: 6 * scale per byte wide, 9 * scale high.
int text_width(const std::string& text, int scale = 1);
inline int text_height(int scale = 1) { return kFontCellHeight * scale; }

// Draws `text` with its cell's top-left corner at (x, y) in colour (r, g, b)
// (0..255) into `img` (3 channels; 1 channel takes r); each font pixel is a
// scale x scale square. Pixels outside the image are skipped, the background
// is left as it is. Throws for scale < 1 or an image of 2 or 4 channels.
void draw_text(Image& img, int x, int y, const std::string& text, float r, float g, float b, int scale = 1);

// `text` cut to at most `max_chars` bytes, ending in "..." when cut
// (max_chars >= 3).
std::string fit_text(const std::string& text, size_t max_chars);

}  // namespace mdps
