#include "engine/eval/panel.h"
#include "engine/core/common.h"
#include "engine/eval/font.h"
#include <algorithm>
#include <cstdio>

namespace mdps {
namespace {

constexpr int kTextScale = 2, kMargin = 8, kGap = 8, kLineGap = 6;
constexpr float kBackground = 32.f;

// Copies `src` into `dst` (3 channels) with its top-left corner at (x, y);
// a gray source is repeated to 3 channels.
void blit(Image& dst, const Image& src, int x, int y) {
  for (int j = 0; j < src.height; ++j)
    for (int i = 0; i < src.width; ++i)
      for (int c = 0; c < 3; ++c) dst.at(x + i, y + j, c) = src.at(i, j, src.channels == 1 ? 0 : c);
}

std::string number(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.5g", double(v));
  return buf;
}

}  // namespace

int panel_scale(int size, int min_side) {
  MDPS_CHECK(size >= 1, "panel_scale: size ", size);
  return std::max(1, (min_side + size - 1) / size);
}

Image captioned_panel(const std::vector<Image>& tiles, const std::vector<std::string>& titles,
                      const std::vector<CaptionLine>& lines, int min_tile) {
  MDPS_CHECK(!tiles.empty(), "panel: no tiles");
  MDPS_CHECK(titles.empty() || titles.size() == tiles.size(), "panel: ", titles.size(), " titles for ", tiles.size(),
             " tiles");
  const int h = tiles.front().height;
  for (const Image& t : tiles)
    MDPS_CHECK(t.height == h && (t.channels == 1 || t.channels == 3), "panel: tiles of ", t.width, "x", t.height,
               "x", t.channels, " and height ", h, " (equal heights, 1 or 3 channels)");
  const int k = panel_scale(h, min_tile);
  std::vector<Image> big;
  int width = 2 * kMargin - kGap;
  for (const Image& t : tiles) {
    big.push_back(k == 1 ? t : resize_nearest(t, t.width * k, t.height * k));
    width += big.back().width + kGap;
  }
  const int line_h = text_height(kTextScale);
  const int caption_h = int(lines.size()) * (line_h + kLineGap);
  const int titles_h = titles.empty() ? 0 : line_h + kLineGap;
  Image out(width, kMargin + caption_h + titles_h + h * k + kMargin, 3, kBackground);
  const size_t max_chars = size_t(std::max(3, (width - 2 * kMargin) / (kFontCellWidth * kTextScale)));
  int y = kMargin;
  for (const CaptionLine& line : lines) {
    int x = kMargin;
    size_t used = 0;
    for (const TextSpan& s : line) {
      if (used >= max_chars) break;
      const std::string t = fit_text(s.text, std::max<size_t>(3, max_chars - used));
      draw_text(out, x, y, t, s.r, s.g, s.b, kTextScale);
      x += text_width(t, kTextScale);
      used += t.size();
    }
    y += line_h + kLineGap;
  }
  int x = kMargin;
  for (size_t i = 0; i < big.size(); ++i) {
    if (!titles.empty()) {
      const size_t room = size_t(std::max(3, big[i].width / (kFontCellWidth * kTextScale)));
      draw_text(out, x, y, fit_text(titles[i], room), 170, 170, 170, kTextScale);
    }
    blit(out, big[i], x, y + titles_h);
    x += big[i].width + kGap;
  }
  return out;
}

std::vector<CaptionLine> eval_panel_caption(const std::string& type, const std::string& file, float score, int label,
                                            float threshold, const std::string& threshold_source) {
  std::vector<CaptionLine> lines;
  lines.push_back({TextSpan{type, 255, 210, 90}, TextSpan{"  " + file}});
  CaptionLine second{TextSpan{"score " + number(score)}};
  if (!std::isnan(threshold)) {
    const bool ng = score > threshold;
    second.push_back(TextSpan{"  "});
    if (ng)
      second.push_back(TextSpan{"NG", 255, 80, 80});
    else
      second.push_back(TextSpan{"OK", 90, 220, 90});
    second.push_back(TextSpan{cat(ng ? " (> " : " (<= ", number(threshold),
                                  threshold_source.empty() ? "" : ", " + threshold_source, ")"),
                              170, 170, 170});
  }
  second.push_back(TextSpan{label ? "  truth: defective" : "  truth: normal"});
  lines.push_back(second);
  return lines;
}

}  // namespace mdps
