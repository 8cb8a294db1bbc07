// The two EXIF fields imgsearch uses: orientation and capture time.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "imgsearch/image.h"

namespace imgsearch::media {

struct ExifFields {
  int orientation = 1;                      // 1..8, 1 when absent or invalid
  std::optional<std::string> capture_time;  // DateTimeOriginal as "YYYY-MM-DDTHH:MM:SS"
};

// Parses a TIFF-structured EXIF block (what follows "Exif\0\0"). Never fails: a damaged block
// yields the defaults.
ExifFields ParseExif(std::span<const uint8_t> tiff_block);

// Applies an EXIF orientation as Pillow's ImageOps.exif_transpose does.
Image ApplyOrientation(const Image& image, int orientation);

}  // namespace imgsearch::media
