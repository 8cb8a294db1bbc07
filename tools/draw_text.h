// Draws words in a real font (DejaVu Sans Bold, Debian's fonts-dejavu-core) onto an image, with
// stb_truetype: photos with text for the text recognition tests and tools. Header-only; the font
// rasteriser is compiled privately into each program that includes it.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#define STB_TRUETYPE_IMPLEMENTATION
#define STBTT_STATIC
#include <stb/stb_truetype.h>

#include "imgsearch/image.h"

namespace imgsearch::tools {

inline constexpr const char* kTextFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

struct TextStyle {
  int pixel_height = 48;                           // of the font's ascent to descent
  std::array<uint8_t, 3> color = {255, 255, 255};  // of the letters
  std::optional<std::array<uint8_t, 3>> box;       // a filled box behind them (a label, a sign)
};

// The font's bytes, or empty when it is not installed.
inline const std::vector<unsigned char>& TextFontBytes() {
  static const std::vector<unsigned char> bytes = [] {
    std::ifstream in(kTextFont, std::ios::binary);
    return std::vector<unsigned char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }();
  return bytes;
}

// The code points of UTF-8 `text` (a malformed byte stands for itself).
inline std::vector<int> CodePoints(const std::string& text) {
  std::vector<int> out;
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    int cp = n == 1 ? c : c & (0x3F >> (n - 1));
    for (int k = 1; k < n && i + k < text.size(); ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    out.push_back(cp);
    i += static_cast<size_t>(n);
  }
  return out;
}

// Draws UTF-8 `text` (any script the font has: Latin, Greek, Cyrillic, …) with its top-left corner
// at (x, y), clipped to the image. False when the font is missing.
inline bool DrawText(Image* image, const std::string& utf8, int x, int y, const TextStyle& style) {
  const std::vector<int> text = CodePoints(utf8);
  const std::vector<unsigned char>& font_bytes = TextFontBytes();
  stbtt_fontinfo font;
  if (font_bytes.empty() ||
      !stbtt_InitFont(&font, font_bytes.data(), stbtt_GetFontOffsetForIndex(font_bytes.data(), 0))) {
    return false;
  }
  const float scale = stbtt_ScaleForPixelHeight(&font, static_cast<float>(style.pixel_height));
  int ascent = 0, descent = 0, gap = 0;
  stbtt_GetFontVMetrics(&font, &ascent, &descent, &gap);
  const int baseline = y + static_cast<int>(ascent * scale);
  // The pen positions first, for the box.
  float width = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    int advance = 0, bearing = 0;
    stbtt_GetCodepointHMetrics(&font, text[i], &advance, &bearing);
    width += advance * scale;
    if (i + 1 < text.size()) width += scale * stbtt_GetCodepointKernAdvance(&font, text[i], text[i + 1]);
  }
  auto put = [&](int px, int py, const std::array<uint8_t, 3>& c, int alpha) {
    if (px < 0 || py < 0 || px >= image->width || py >= image->height) return;
    uint8_t* p = image->row(py) + static_cast<size_t>(px) * 3;
    for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>((p[k] * (255 - alpha) + c[k] * alpha + 127) / 255);
  };
  if (style.box) {
    const int pad = style.pixel_height / 5;
    for (int py = y - pad; py < y + style.pixel_height + pad; ++py) {
      for (int px = x - pad; px < x + static_cast<int>(width) + pad; ++px) put(px, py, *style.box, 255);
    }
  }
  float pen = static_cast<float>(x);
  for (size_t i = 0; i < text.size(); ++i) {
    int w = 0, h = 0, xoff = 0, yoff = 0;
    unsigned char* bitmap = stbtt_GetCodepointBitmap(&font, scale, scale, text[i], &w, &h, &xoff, &yoff);
    for (int row = 0; row < h; ++row) {
      for (int col = 0; col < w; ++col) {
        const int alpha = bitmap[row * w + col];
        if (alpha > 0) put(static_cast<int>(pen) + xoff + col, baseline + yoff + row, style.color, alpha);
      }
    }
    stbtt_FreeBitmap(bitmap, nullptr);
    int advance = 0, bearing = 0;
    stbtt_GetCodepointHMetrics(&font, text[i], &advance, &bearing);
    pen += advance * scale;
    if (i + 1 < text.size()) pen += scale * stbtt_GetCodepointKernAdvance(&font, text[i], text[i + 1]);
  }
  return true;
}

}  // namespace imgsearch::tools
