// Per-format decoders. Each checks the pixel limit from the header before allocating, reports
// truncation and corruption as errors, and converts to RGB the way Pillow's convert("RGB") does.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "imgsearch/image.h"

namespace imgsearch::media {

struct RawDecode {
  Image image;
  std::vector<uint8_t> exif;  // a TIFF-structured EXIF block ("Exif\0\0" header stripped), if any
  int tiff_orientation = 0;   // TIFF files carry orientation in their own IFD
};

Result<RawDecode> DecodeJpeg(std::span<const uint8_t> bytes, const DecodeOptions& options);
Result<RawDecode> DecodePng(std::span<const uint8_t> bytes, const DecodeOptions& options);
Result<RawDecode> DecodeWebp(std::span<const uint8_t> bytes, const DecodeOptions& options);
Result<RawDecode> DecodeGif(std::span<const uint8_t> bytes, const DecodeOptions& options);
Result<RawDecode> DecodeBmp(std::span<const uint8_t> bytes, const DecodeOptions& options);
Result<RawDecode> DecodeTiff(std::span<const uint8_t> bytes, const DecodeOptions& options);

// Refuses dimensions that are zero, negative or above the pixel limit.
Status CheckDimensions(int64_t width, int64_t height, const DecodeOptions& options);

}  // namespace imgsearch::media
