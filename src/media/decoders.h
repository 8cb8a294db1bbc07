// Per-format decoders. Each checks the pixel limit from the header before allocating, reports
// truncation and corruption as errors, and converts to RGB the way Pillow's convert("RGB") does
// (an animated PNG's frame decoded by FFmpeg: as swscale does, alpha dropped the same way).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "imgsearch/image.h"

namespace imgsearch::media {

struct RawDecode {
  Image image;
  std::vector<uint8_t> exif;  // a TIFF-structured EXIF block ("Exif\0\0" header stripped), if any
  int tiff_orientation = 0;   // TIFF files carry orientation in their own IFD; 1 where the decoder applied it
  std::optional<std::string> capture_time;  // when the decoder read it itself (else from `exif`)
  int full_width = 0;                       // stored size of the full picture when `image` is a preview of it
  int full_height = 0;
};

Result<RawDecode> DecodeJpeg(std::span<const uint8_t> bytes, const DecodeOptions& options);
Result<RawDecode> DecodePng(std::span<const uint8_t> bytes, const DecodeOptions& options);
// The first frame of an animated PNG, by FFmpeg's APNG demuxer and decoder (video.cc): for a file
// whose default image is not part of its animation, where libpng, which knows nothing of APNG,
// would give that default image instead of the animation browsers show.
Result<RawDecode> DecodeApngFirstFrame(std::span<const uint8_t> bytes, const DecodeOptions& options);
Result<RawDecode> DecodeWebp(std::span<const uint8_t> bytes, const DecodeOptions& options);
Result<RawDecode> DecodeGif(std::span<const uint8_t> bytes, const DecodeOptions& options);
Result<RawDecode> DecodeBmp(std::span<const uint8_t> bytes, const DecodeOptions& options);
Result<RawDecode> DecodeTiff(std::span<const uint8_t> bytes, const DecodeOptions& options);
Result<RawDecode> DecodeHeif(std::span<const uint8_t> bytes, const DecodeOptions& options);  // and AVIF
Result<RawDecode> DecodeJxl(std::span<const uint8_t> bytes, const DecodeOptions& options);
Result<RawDecode> DecodeCameraRaw(std::span<const uint8_t> bytes, const DecodeOptions& options);

// While one lives, libheif decodes HEVC pictures with FFmpeg (heif_hevc.cc, registered with libheif
// by the first one), and a picture decoded on this thread past `max_pixels` is refused before its
// allocation. Grid tiles, which libheif decodes on threads of its own, are held to the largest limit
// of the decodes in progress.
class ScopedHevcPixelLimit {
 public:
  explicit ScopedHevcPixelLimit(uint64_t max_pixels);
  ~ScopedHevcPixelLimit();
  ScopedHevcPixelLimit(const ScopedHevcPixelLimit&) = delete;
  ScopedHevcPixelLimit& operator=(const ScopedHevcPixelLimit&) = delete;

 private:
  uint64_t previous_;
};

// A TIFF-structured file that holds a camera's sensor data rather than a picture: a DNG, a CR2, or
// a TIFF whose first image is a reduced-resolution preview or colour filter array data (NEF, ARW,
// PEF, …).
bool IsCameraRawTiff(std::span<const uint8_t> bytes);

// The TIFF block of an ISO-BMFF "Exif" item or box (a 4-byte offset to the TIFF header, then the
// block); empty when malformed.
std::vector<uint8_t> ExifFromBmffItem(std::span<const uint8_t> item);

// A w × h RGB image with each gray sample replicated into the three channels.
Image GrayToRgb(const uint8_t* gray, int w, int h);

// How far a width × height picture may be reduced while decoding it: 1, 2, 4 or 8, the largest that
// keeps its shorter side ≥ min_side (DecodeOptions::min_side; 1 when that is 0).
int ReductionFactor(int64_t width, int64_t height, int min_side);

// Refuses dimensions that are zero, negative or above the pixel limit.
Status CheckDimensions(int64_t width, int64_t height, const DecodeOptions& options);

}  // namespace imgsearch::media
