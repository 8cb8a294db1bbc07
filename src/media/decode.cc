#include <cstring>

#include "base/file.h"
#include "media/decoders.h"
#include "media/exif.h"

namespace imgsearch {

const char* ImageFormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kJpeg: return "jpeg";
    case ImageFormat::kPng: return "png";
    case ImageFormat::kWebp: return "webp";
    case ImageFormat::kGif: return "gif";
    case ImageFormat::kBmp: return "bmp";
    case ImageFormat::kTiff: return "tiff";
    case ImageFormat::kUnknown: break;
  }
  return "unknown";
}

ImageFormat DetectImageFormat(std::span<const uint8_t> b) {
  auto starts = [&](const char* magic, size_t n, size_t offset = 0) {
    return b.size() >= offset + n && std::memcmp(b.data() + offset, magic, n) == 0;
  };
  if (starts("\xFF\xD8\xFF", 3)) return ImageFormat::kJpeg;
  if (starts("\x89PNG\r\n\x1A\n", 8)) return ImageFormat::kPng;
  if (starts("RIFF", 4) && starts("WEBP", 4, 8)) return ImageFormat::kWebp;
  if (starts("GIF87a", 6) || starts("GIF89a", 6)) return ImageFormat::kGif;
  if (starts("BM", 2) && b.size() >= 26) return ImageFormat::kBmp;
  if (starts("II*\0", 4) || starts("MM\0*", 4)) return ImageFormat::kTiff;
  return ImageFormat::kUnknown;
}

namespace media {

Status CheckDimensions(int64_t width, int64_t height, const DecodeOptions& options) {
  if (width <= 0 || height <= 0) {
    return Status::Corruption("image has invalid dimensions " + std::to_string(width) + "x" + std::to_string(height));
  }
  const uint64_t pixels = static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  if (pixels > options.max_pixels || width > (1 << 20) || height > (1 << 20)) {
    return Status::ResourceExhausted("image is " + std::to_string(width) + "x" + std::to_string(height) + " (" +
                                     std::to_string(pixels / 1'000'000) + " megapixels), above the limit of " +
                                     std::to_string(options.max_pixels / 1'000'000) + " megapixels");
  }
  return Status::Ok();
}

}  // namespace media

Result<DecodedImage> DecodeImage(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  if (bytes.empty()) return Status::InvalidArgument("empty file (0 bytes)");
  const ImageFormat format = DetectImageFormat(bytes);
  Result<media::RawDecode> raw = Status::InvalidArgument("not an image (unrecognised content)");
  switch (format) {
    case ImageFormat::kJpeg: raw = media::DecodeJpeg(bytes, options); break;
    case ImageFormat::kPng: raw = media::DecodePng(bytes, options); break;
    case ImageFormat::kWebp: raw = media::DecodeWebp(bytes, options); break;
    case ImageFormat::kGif: raw = media::DecodeGif(bytes, options); break;
    case ImageFormat::kBmp: raw = media::DecodeBmp(bytes, options); break;
    case ImageFormat::kTiff: raw = media::DecodeTiff(bytes, options); break;
    case ImageFormat::kUnknown: break;
  }
  if (!raw.ok()) {
    if (format == ImageFormat::kUnknown) return raw.status();
    constexpr const char* kDisplayNames[] = {"", "JPEG", "PNG", "WebP", "GIF", "BMP", "TIFF"};
    return raw.status().WithContext(kDisplayNames[static_cast<int>(format)]);
  }

  DecodedImage out;
  out.format = format;
  out.stored_width = raw->image.width;
  out.stored_height = raw->image.height;
  const media::ExifFields exif = media::ParseExif(raw->exif);
  out.orientation = raw->tiff_orientation >= 1 && raw->tiff_orientation <= 8 ? raw->tiff_orientation : exif.orientation;
  out.capture_time = exif.capture_time;
  if (options.apply_exif_orientation && out.orientation != 1) {
    out.image = media::ApplyOrientation(raw->image, out.orientation);
  } else {
    out.image = std::move(raw->image);
  }
  return out;
}

Result<DecodedImage> DecodeImageFile(const std::string& path, const DecodeOptions& options) {
  ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFileBytes(path, size_t{1} << 30));
  auto decoded = DecodeImage(bytes, options);
  if (!decoded.ok()) return decoded.status().WithContext(path);
  return decoded;
}

}  // namespace imgsearch
