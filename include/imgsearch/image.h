// Image decoding and CLIP preprocessing, matching the reference (Pillow 9.4 + torchvision) pixel for
// pixel: EXIF orientation, conversion to RGB as Pillow's convert("RGB"), Pillow's BICUBIC resize so
// the shorter side fits, centre crop, normalisation.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "imgsearch/status.h"

namespace imgsearch {

// 8-bit RGB, rows top to bottom, pixels interleaved R, G, B.
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // width · height · 3 bytes

  Image() = default;
  Image(int w, int h) : width(w), height(h), rgb(static_cast<size_t>(w) * h * 3) {}
  uint8_t* row(int y) { return rgb.data() + static_cast<size_t>(y) * width * 3; }
  const uint8_t* row(int y) const { return rgb.data() + static_cast<size_t>(y) * width * 3; }
};

// Every format imgsearch indexes: still images, and videos (sampled into frames: imgsearch/video.h).
enum class ImageFormat {
  kUnknown,
  kJpeg,
  kPng,
  kWebp,
  kGif,
  kBmp,
  kTiff,
  kHeif,
  kAvif,
  kJxl,
  kRaw,
  kMp4,
  kMov,
  kMatroska,
  kWebm,
  kAvi,
};

// What imgsearch knows of each format, in one place.
struct ImageFormatInfo {
  ImageFormat format;
  const char* name;          // in the catalog, filters and the API
  const char* display_name;  // in messages
  const char* mime_type;     // of the file itself
  bool browser_displays;     // every current browser shows (plays) the file itself (else: a JPEG rendition)
  bool video = false;        // frames sampled over time (imgsearch/video.h), not one picture
};
inline constexpr ImageFormatInfo kImageFormats[] = {
    {ImageFormat::kJpeg, "jpeg", "JPEG", "image/jpeg", true},
    {ImageFormat::kPng, "png", "PNG", "image/png", true},
    {ImageFormat::kWebp, "webp", "WebP", "image/webp", true},
    {ImageFormat::kGif, "gif", "GIF", "image/gif", true},
    {ImageFormat::kBmp, "bmp", "BMP", "image/bmp", true},
    {ImageFormat::kTiff, "tiff", "TIFF", "image/tiff", false},
    {ImageFormat::kHeif, "heif", "HEIF", "image/heif", false},
    {ImageFormat::kAvif, "avif", "AVIF", "image/avif", true},
    {ImageFormat::kJxl, "jxl", "JPEG XL", "image/jxl", false},
    // Camera RAW: DNG, CR2, CR3, CRW, NEF, ARW, PEF, RAF, ORF, RW2, MRW, X3F (see DetectImageFormat).
    {ImageFormat::kRaw, "raw", "camera RAW", "application/octet-stream", false},
    // Videos: MP4 (and 3GP), QuickTime, Matroska, WebM, AVI, with whatever codecs FFmpeg decodes.
    {ImageFormat::kMp4, "mp4", "MP4 video", "video/mp4", true, true},
    {ImageFormat::kMov, "mov", "QuickTime video", "video/quicktime", false, true},
    {ImageFormat::kMatroska, "mkv", "Matroska video", "video/x-matroska", false, true},
    {ImageFormat::kWebm, "webm", "WebM video", "video/webm", true, true},
    {ImageFormat::kAvi, "avi", "AVI video", "video/x-msvideo", false, true},
};

// The entry of `format`, or of a catalog name; nullptr for kUnknown and unknown names.
constexpr const ImageFormatInfo* FormatInfo(ImageFormat format) {
  for (const ImageFormatInfo& info : kImageFormats) {
    if (info.format == format) return &info;
  }
  return nullptr;
}
constexpr const ImageFormatInfo* FormatInfo(std::string_view name) {
  for (const ImageFormatInfo& info : kImageFormats) {
    if (name == info.name) return &info;
  }
  return nullptr;
}

// The catalog's name of a format ("jpeg", …), "unknown" for kUnknown.
constexpr const char* ImageFormatName(ImageFormat format) {
  const ImageFormatInfo* info = FormatInfo(format);
  return info != nullptr ? info->name : "unknown";
}

// Whether every current browser displays files of this format (a catalog name) by itself.
constexpr bool BrowserDisplays(std::string_view format_name) {
  const ImageFormatInfo* info = FormatInfo(format_name);
  return info != nullptr && info->browser_displays;
}

// Whether files of this format (a catalog name) are videos.
constexpr bool IsVideoFormat(std::string_view format_name) {
  const ImageFormatInfo* info = FormatInfo(format_name);
  return info != nullptr && info->video;
}
constexpr bool IsVideoFormat(ImageFormat format) {
  const ImageFormatInfo* info = FormatInfo(format);
  return info != nullptr && info->video;
}

// Detects the format from the first bytes (magic numbers), never from a file name: images and
// videos. kDetectBytes are enough.
ImageFormat DetectImageFormat(std::span<const uint8_t> bytes);
inline constexpr size_t kDetectBytes = 64 * 1024;

struct DecodeOptions {
  // Images with more pixels are refused before any pixel memory is allocated.
  uint64_t max_pixels = 100'000'000;
  bool apply_exif_orientation = true;
  // 0: full resolution (what CLIP must see). > 0: a JPEG or a still WebP may be decoded at 1/2, 1/4
  // or 1/8 of its size (libjpeg's DCT scaling, libwebp's rescaler: several times faster) as long as
  // both sides stay ≥ this; for thumbnails, and for the model with Preprocessing::reduced_decode.
  // DecodedImage::width and height stay the picture's own size.
  int min_side = 0;
  // > 0: a picture the file already holds at reduced size — a camera RAW file's embedded preview
  // (what the camera rendered), a HEIF thumbnail — is decoded instead of the full image when its
  // shorter side is at least this. 0: always the full image.
  int preview_min_side = 0;
};

struct DecodedImage {
  Image image;  // oriented, RGB
  ImageFormat format = ImageFormat::kUnknown;
  int width = 0;  // the picture's oriented size, even when a smaller preview (above) was decoded
  int height = 0;
  int stored_width = 0;  // as decoded (see DecodeOptions::min_side), before orientation
  int stored_height = 0;
  int orientation = 1;                      // EXIF orientation tag, 1 when absent
  std::optional<std::string> capture_time;  // EXIF DateTimeOriginal, "YYYY-MM-DDTHH:MM:SS"
};

// Decodes JPEG, PNG, WebP and GIF (an animation's first frame, as browsers show it), BMP,
// TIFF (the first page), HEIF/HEIC and AVIF (the primary image with its rotation, mirroring and
// crop), JPEG XL and camera RAW. Every failure (zero bytes, not an
// image, truncated, corrupt, too many pixels) is a Status that says what is wrong.
Result<DecodedImage> DecodeImage(std::span<const uint8_t> bytes, const DecodeOptions& options = {});
Result<DecodedImage> DecodeImageFile(const std::string& path, const DecodeOptions& options = {});

struct Preprocessing;

// `options` for an image the model sees through `p`: a RAW preview or HEIF thumbnail stands in for
// the full image when its shorter side is at least twice the model's input (the resize to the
// model's input then averages as many source pixels as it would from the full image); with
// p.reduced_decode, a JPEG's DCT scaling likewise.
DecodeOptions ForModelInput(DecodeOptions options, const Preprocessing& p);

// Pillow's resampling filters, as `Image.resize` applies them.
enum class ResampleFilter { kBilinear, kBicubic };

// Pillow's Image.resize(size, filter, reducing_gap=None) for 8-bit images, exactly: two separable
// fixed-point passes (horizontal first) with a uint8 image between them.
Image Resize(const Image& image, int width, int height, ResampleFilter filter = ResampleFilter::kBicubic);

// The region [left, left + region_width) × [top, top + region_height) of Resize(image, width,
// height, filter), computed without making the rest: the same pixels, bounded memory.
Image ResizeRegion(const Image& image, int width, int height, int left, int top, int region_width, int region_height,
                   ResampleFilter filter = ResampleFilter::kBicubic);

// What a model's image processor does to a decoded image before the model sees it.
struct Preprocessing {
  enum class Fit {
    kCenterCrop,   // shorter side to `size` (longer to int(size · long / short)), then centre crop (CLIP)
    kStretch,      // straight to size × size, aspect ratio not kept (SigLIP)
    kPatchBudget,  // aspect ratio kept, both sides multiples of patch_size, at most max_patches patches
                   // (SigLIP 2 NaFlex)
  };
  int size = 224;  // pixels per side of the model's input; kPatchBudget: of a square within the budget
  Fit fit = Fit::kCenterCrop;
  ResampleFilter filter = ResampleFilter::kBicubic;
  std::array<float, 3> mean = {0.48145466f, 0.4578275f, 0.40821073f};  // CLIP's
  std::array<float, 3> std = {0.26862954f, 0.26130258f, 0.27577711f};
  int patch_size = 0;   // kPatchBudget only
  int max_patches = 0;  // kPatchBudget only
  // Decode a JPEG at the smallest DCT scale (1/2, 1/4, 1/8) that keeps its shorter side at least
  // 2 × size: several times faster on camera-size photos, and what the model sees changes little
  // (precision auto; fp32 decodes exactly).
  bool reduced_decode = false;

  // Floats Normalize writes per image: the model's input.
  int64_t input_floats() const {
    if (fit == Fit::kPatchBudget) return 2 + int64_t{max_patches} * 3 * patch_size * patch_size;
    return 3 * int64_t{size} * size;
  }

  // OpenAI CLIP's: bicubic, centre crop, CLIP's mean and std.
  static Preprocessing Clip(int size) {
    Preprocessing p;
    p.size = size;
    return p;
  }
};

// The height and width (multiples of `patch`) Siglip2ImageProcessor resizes a height × width
// image to: the largest scale, found by the same binary search, that keeps the patch count within
// `max_patches`.
std::pair<int, int> PatchBudgetSize(int height, int width, int patch, int max_patches);

// The RGB image the model sees, before normalisation: size × size, or for kPatchBudget the
// PatchBudgetSize of the image.
Image ResizeForModel(const Image& image, const Preprocessing& p);

// Writes the model's input (p.input_floats() floats), each value (v / 255 − mean) / std:
//   kCenterCrop, kStretch: planar [3, size, size];
//   kPatchBudget: patch rows, patch columns, then the patches in row-major order, each p·p·3 values
//   (pixel rows, pixels, channels), zeros after the last patch up to max_patches.
void Normalize(const Image& resized, const Preprocessing& p, float* input);

// Decodes, resizes and normalises in one call. `input` receives p.input_floats() floats.
Status PreprocessImage(std::span<const uint8_t> bytes, const Preprocessing& p, float* input,
                       const DecodeOptions& options = {});

Status WritePng(const Image& image, const std::string& path);

// Baseline JPEG (libjpeg-turbo), quality 1..100.
Result<std::vector<uint8_t>> EncodeJpeg(const Image& image, int quality = 90);

}  // namespace imgsearch
