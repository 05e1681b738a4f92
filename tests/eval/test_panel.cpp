// The bitmap font (engine/eval/font.h) and the captioned eval panels
// (engine/eval/panel.h): glyphs are distinct and drawn where and how large
// they should be, tiles are enlarged by nearest-neighbour sampling, captions
// carry the decision in its colour.
#include <doctest/doctest.h>
#include "engine/core/common.h"
#include "engine/eval/font.h"
#include "engine/eval/panel.h"
#include "engine/io/image.h"
#include <cmath>
#include <set>

using namespace mdps;

namespace {
// Pixels of `img` in the rectangle that equal (r, g, b).
int count_colour(const Image& img, int x0, int y0, int w, int h, float r, float g, float b) {
  int n = 0;
  for (int y = y0; y < y0 + h; ++y)
    for (int x = x0; x < x0 + w; ++x)
      n += img.at(x, y, 0) == r && img.at(x, y, 1) == g && img.at(x, y, 2) == b;
  return n;
}
}  // namespace

TEST_CASE("font: every printable glyph is distinct, inked (but space) and within 5 columns") {
  std::set<std::array<uint8_t, kGlyphHeight>> seen;
  for (int c = 32; c <= 126; ++c) {
    const auto rows = glyph_rows(char(c));
    int ink = 0;
    for (uint8_t r : rows) {
      CHECK(r < 32);
      for (int b = 0; b < 5; ++b) ink += r >> b & 1;
    }
    CHECK((c == ' ') == (ink == 0));
    CHECK(seen.insert(rows).second);
  }
  // Outside printable ASCII: '?', byte by byte.
  CHECK(glyph_rows('\n') == glyph_rows('?'));
  CHECK(glyph_rows(char(0xC3)) == glyph_rows('?'));
  // 'L': the left column down, the bottom row across, no descender; 'g' has one.
  const auto L = glyph_rows('L');
  for (int r = 0; r < 6; ++r) CHECK(L[size_t(r)] == 0x10);
  CHECK(L[6] == 0x1F);
  CHECK(L[7] == 0);
  CHECK(glyph_rows('g')[7] != 0);
}

TEST_CASE("font: draw_text puts each glyph pixel as a scale x scale square at the cell's position") {
  Image img(40, 20, 3, 0.f);
  draw_text(img, 2, 3, "LT", 255, 128, 0, 2);
  CHECK(text_width("LT", 2) == 24);
  CHECK(text_height(2) == 18);
  // 'L' (cell at x 2): column 0 of rows 0..6 -> x 2..3, y 3..16; bottom row y 15..16 across x 2..11.
  CHECK(img.at(2, 3, 0) == 255);
  CHECK(img.at(3, 4, 1) == 128);
  CHECK(img.at(4, 3, 0) == 0);     // column 1 of row 0 is empty
  CHECK(img.at(11, 16, 0) == 255);  // bottom row, column 4
  // 'T' (cell at x 14): row 0 across columns 0..4 -> x 14..23, y 3..4; column 2 down -> x 18..19.
  CHECK(count_colour(img, 14, 3, 10, 2, 255, 128, 0) == 20);
  CHECK(count_colour(img, 18, 5, 2, 12, 255, 128, 0) == 24);
  // Ink: 'L' 7 + 4 = 11 pixels, 'T' 5 + 6 = 11, each 4 image pixels; nothing else touched.
  CHECK(count_colour(img, 0, 0, 40, 20, 255, 128, 0) == 88);
  CHECK(count_colour(img, 0, 0, 40, 20, 0, 0, 0) == 40 * 20 - 88);
  // Clipped at the border without error; gray images take r.
  Image gray(6, 6, 1, 0.f);
  draw_text(gray, -4, -3, "W", 200, 0, 0, 1);
  CHECK(gray.at(0, 0) == 200);  // 'W' row 3 ("#.#.#") column 4 -> (0, 0)
  CHECK(gray.at(1, 0) == 0);    // column 5 is the spacing
  CHECK_THROWS_AS(draw_text(img, 0, 0, "x", 1, 1, 1, 0), Error);
  Image rgba(4, 4, 4);
  CHECK_THROWS_AS(draw_text(rgba, 0, 0, "x", 1, 1, 1), Error);
  CHECK(fit_text("abcdefgh", 6) == "abc...");
  CHECK(fit_text("abc", 6) == "abc");
}

TEST_CASE("panel: tiles enlarged by nearest sampling to the minimum size, titles and captions above") {
  Image a(4, 4, 3), m(4, 4, 1);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      for (int c = 0; c < 3; ++c) a.at(x, y, c) = float(10 * x + 40 * y + c);
      m.at(x, y) = (x + y) % 2 ? 255.f : 0.f;
    }
  CHECK(panel_scale(64, 256) == 4);
  CHECK(panel_scale(300, 256) == 1);
  CHECK(panel_scale(100, 256) == 3);
  Image p = captioned_panel({a, m}, {"image", "mask"}, {{TextSpan{"hello"}}}, 32);
  // Scale 8: two 32-pixel tiles, margins 8, gap 8; one caption line + titles (18 + 6 each).
  CHECK(p.width == 8 + 32 + 8 + 32 + 8);
  CHECK(p.height == 8 + 24 + 24 + 32 + 8);
  CHECK(p.channels == 3);
  const int top = 8 + 48;
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x) {
      CHECK(p.at(8 + x, top + y, 1) == a.at(x / 8, y / 8, 1));
      CHECK(p.at(48 + x, top + y, 2) == m.at(x / 8, y / 8));  // gray repeated
    }
  // The caption "hello" is drawn in the default light gray over the dark background.
  CHECK(count_colour(p, 8, 8, text_width("hello", 2), 18, 235, 235, 235) > 50);
  CHECK_THROWS_AS(captioned_panel({a, Image(4, 5, 3)}, {}, {}), Error);
  CHECK_THROWS_AS(captioned_panel({a}, {"x", "y"}, {}), Error);
  CHECK_THROWS_AS(captioned_panel({}, {}, {}), Error);
}

TEST_CASE("panel caption: NG in red above the threshold, OK in green at or below it, the truth without one") {
  auto text_of = [](const CaptionLine& l) {
    std::string s;
    for (const auto& t : l) s += t.text;
    return s;
  };
  auto ng = eval_panel_caption("scratch", "000.png", 0.5f, 1, 0.25f, "bundle");
  REQUIRE(ng.size() == 2);
  CHECK(text_of(ng[0]) == "scratch  000.png");
  CHECK(text_of(ng[1]) == "score 0.5  NG (> 0.25, bundle)  truth: defective");
  bool red = false;
  for (const auto& t : ng[1]) red = red || (t.text == "NG" && t.r == 255 && t.g < 100);
  CHECK(red);
  auto ok = eval_panel_caption("good", "001.png", 0.25f, 0, 0.25f);
  CHECK(text_of(ok[1]) == "score 0.25  OK (<= 0.25)  truth: normal");
  bool green = false;
  for (const auto& t : ok[1]) green = green || (t.text == "OK" && t.g > t.r);
  CHECK(green);
  auto none = eval_panel_caption("good", "002.png", 0.75f, 0);
  CHECK(text_of(none[1]) == "score 0.75  truth: normal");
  // A long file name is cut to the panel's width, not drawn past it.
  Image t(4, 4, 3);
  Image p = captioned_panel({t}, {}, eval_panel_caption("good", std::string(500, 'x') + ".png", 1.f, 0), 64);
  CHECK(p.width == 8 + 64 + 8);
}
