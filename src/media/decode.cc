#include <algorithm>
#include <bit>
#include <cstring>
#include <string_view>

#include "base/file.h"
#include "media/decoders.h"
#include "media/exif.h"

namespace imgsearch {

DecodeOptions ForModelInput(DecodeOptions options, const Preprocessing& p) {
  options.preview_min_side = std::max(options.preview_min_side, 2 * p.size);
  if (p.reduced_decode) options.min_side = std::max(options.min_side, 2 * p.size);
  return options;
}

namespace {

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// ISO base media files (HEIF, AVIF, CR3, and videos) name what they hold in their first box, "ftyp":
// a major brand and compatible brands.
ImageFormat DetectBmff(std::span<const uint8_t> b) {
  if (b.size() < 16 || std::memcmp(b.data() + 4, "ftyp", 4) != 0) return ImageFormat::kUnknown;
  const uint32_t box = BigEndian32(b.data());
  const size_t end = std::min<size_t>(b.size(), std::max<uint32_t>(box, 16));
  auto brand_format = [&](size_t at) {
    const std::string_view brand(reinterpret_cast<const char*>(b.data() + at), 4);
    if (brand == "avif" || brand == "avis") return ImageFormat::kAvif;
    if (brand == "heic" || brand == "heix" || brand == "heim" || brand == "heis" || brand == "hevc" ||
        brand == "hevx") {
      return ImageFormat::kHeif;
    }
    if (brand == "crx ") return ImageFormat::kRaw;  // Canon CR3
    return ImageFormat::kUnknown;
  };
  if (ImageFormat major = brand_format(8); major != ImageFormat::kUnknown) return major;
  // A generic major brand ("mif1", "msf1"): the compatible brands say which codec; AVIF first, as
  // a file listing both is an AVIF with a HEIF-compatible structure.
  ImageFormat found = ImageFormat::kUnknown;
  for (size_t at = 16; at + 4 <= end; at += 4) {
    const ImageFormat f = brand_format(at);
    if (f == ImageFormat::kAvif) return f;
    if (f != ImageFormat::kUnknown) found = f;
  }
  if (found == ImageFormat::kUnknown &&
      (std::memcmp(b.data() + 8, "mif1", 4) == 0 || std::memcmp(b.data() + 8, "msf1", 4) == 0)) {
    return ImageFormat::kHeif;  // an image file whose codec libheif will name
  }
  if (found != ImageFormat::kUnknown) return found;
  // Videos. An audio file (iTunes' "M4A ", an audiobook) lists the same generic compatible brands
  // as a video, so its major brand decides; a video whose major brand is unknown is found by a
  // compatible one. (An audio-only file under a video brand is still one: SampleVideo says so.)
  const std::string_view major(reinterpret_cast<const char*>(b.data() + 8), 4);
  if (major == "qt  ") return ImageFormat::kMov;
  if (major == "M4A " || major == "M4B " || major == "M4P " || major == "F4A " || major == "F4B ") {
    return ImageFormat::kUnknown;
  }
  auto video_brand = [](std::string_view brand) {
    static constexpr std::string_view kVideoBrands[] = {
        "isom", "iso2", "iso3", "iso4", "iso5", "iso6", "mp41", "mp42", "avc1", "M4V ", "M4VH", "M4VP", "3gp4",
        "3gp5", "3gp6", "3gp7", "3g2a", "3g2b", "3g2c", "dash", "MSNV", "XAVC", "mmp4", "f4v ", "nvr1"};
    return std::find(std::begin(kVideoBrands), std::end(kVideoBrands), brand) != std::end(kVideoBrands);
  };
  if (video_brand(major)) return ImageFormat::kMp4;
  for (size_t at = 16; at + 4 <= end; at += 4) {
    if (video_brand(std::string_view(reinterpret_cast<const char*>(b.data() + at), 4))) return ImageFormat::kMp4;
  }
  return ImageFormat::kUnknown;
}

// Matroska and WebM: an EBML header whose DocType element (ID 0x4282) names which.
ImageFormat DetectEbml(std::span<const uint8_t> b) {
  if (b.size() < 8 || std::memcmp(b.data(), "\x1A\x45\xDF\xA3", 4) != 0) return ImageFormat::kUnknown;
  const size_t end = std::min<size_t>(b.size(), 256);  // the header is a few dozen bytes
  for (size_t at = 4; at + 3 < end; ++at) {
    if (b[at] != 0x42 || b[at + 1] != 0x82) continue;
    // The size, an EBML variable-length integer: its length is the count of leading zero bits + 1.
    const uint8_t first = b[at + 2];
    const int length = first == 0 ? 9 : std::countl_zero(first) + 1;
    if (length > 8 || at + 2 + length > end) return ImageFormat::kUnknown;
    uint64_t size = first & (0xFF >> length);
    for (int i = 1; i < length; ++i) size = (size << 8) | b[at + 2 + i];
    const size_t value = at + 2 + length;
    if (size > end - value) return ImageFormat::kUnknown;
    const std::string_view doc_type(reinterpret_cast<const char*>(b.data() + value), size);
    if (doc_type == "webm") return ImageFormat::kWebm;
    if (doc_type == "matroska") return ImageFormat::kMatroska;
    return ImageFormat::kUnknown;
  }
  return ImageFormat::kUnknown;
}

}  // namespace

ImageFormat DetectImageFormat(std::span<const uint8_t> b) {
  auto starts = [&](const char* magic, size_t n, size_t offset = 0) {
    return b.size() >= offset + n && std::memcmp(b.data() + offset, magic, n) == 0;
  };
  if (starts("\xFF\xD8\xFF", 3)) return ImageFormat::kJpeg;
  if (starts("\x89PNG\r\n\x1A\n", 8)) return ImageFormat::kPng;
  if (starts("RIFF", 4) && starts("WEBP", 4, 8)) return ImageFormat::kWebp;
  if (starts("GIF87a", 6) || starts("GIF89a", 6)) return ImageFormat::kGif;
  if (starts("BM", 2) && b.size() >= 26) return ImageFormat::kBmp;
  if (starts("II*\0", 4) || starts("MM\0*", 4)) {
    return media::IsCameraRawTiff(b) ? ImageFormat::kRaw : ImageFormat::kTiff;
  }
  if (starts("\xFF\x0A", 2) || starts("\0\0\0\x0CJXL \r\n\x87\n", 12)) return ImageFormat::kJxl;
  // Camera RAW formats with their own signatures: Fujifilm RAF, Olympus ORF, Panasonic RW2,
  // Minolta MRW, Sigma X3F, Canon CRW.
  if (starts("FUJIFILMCCD-RAW", 15) || starts("IIRO", 4) || starts("IIRS", 4) || starts("MMOR", 4) ||
      starts("IIU\0", 4) || starts("\0MRM", 4) || starts("FOVb", 4) || starts("HEAPCCDR", 8, 6)) {
    return ImageFormat::kRaw;
  }
  if (starts("RIFF", 4) && starts("AVI ", 4, 8)) return ImageFormat::kAvi;
  if (ImageFormat ebml = DetectEbml(b); ebml != ImageFormat::kUnknown) return ebml;
  // QuickTime files older than the "ftyp" box start with one of these atoms.
  for (const char* atom : {"moov", "mdat", "wide", "free", "skip"}) {
    if (starts(atom, 4, 4)) return ImageFormat::kMov;
  }
  return DetectBmff(b);
}

namespace media {

bool IsCameraRawTiff(std::span<const uint8_t> b) {
  if (b.size() < 16) return false;
  const bool little = b[0] == 'I';
  auto u16 = [&](size_t at) -> uint32_t { return little ? b[at] | (b[at + 1] << 8) : (b[at] << 8) | b[at + 1]; };
  auto u32 = [&](size_t at) -> uint32_t {
    return little ? u16(at) | (u16(at + 2) << 16) : (u16(at) << 16) | u16(at + 2);
  };
  if (b[8] == 'C' && b[9] == 'R') return true;  // Canon CR2
  const size_t ifd = u32(4);
  if (ifd < 8 || ifd + 2 > b.size()) return false;
  const size_t entries = std::min<size_t>(u16(ifd), 4096);
  for (size_t i = 0; i < entries && ifd + 2 + 12 * (i + 1) <= b.size(); ++i) {
    const size_t e = ifd + 2 + 12 * i;
    const uint32_t tag = u16(e);
    const uint32_t type = u16(e + 2);
    const uint32_t value = type == 3 ? u16(e + 8) : u32(e + 8);  // SHORT or LONG, held in place
    if (tag == 0xC612) return true;                              // DNGVersion
    if (tag == 0x00FE && (value & 1) != 0) return true;          // NewSubfileType: a reduced-resolution preview
    if (tag == 0x0106 && (value == 32803 || value == 34892)) return true;  // CFA or LinearRaw data
  }
  return false;
}

Image GrayToRgb(const uint8_t* gray, int w, int h) {
  Image out(w, h);
  const size_t n = static_cast<size_t>(w) * h;
  for (size_t i = 0; i < n; ++i) std::memset(out.rgb.data() + 3 * i, gray[i], 3);
  return out;
}

std::vector<uint8_t> ExifFromBmffItem(std::span<const uint8_t> item) {
  if (item.size() < 4) return {};
  const uint32_t offset = BigEndian32(item.data());
  if (offset > item.size() - 4) return {};
  std::span<const uint8_t> tiff = item.subspan(4 + offset);
  if (tiff.size() > 6 && std::memcmp(tiff.data(), "Exif\0\0", 6) == 0) tiff = tiff.subspan(6);
  return {tiff.begin(), tiff.end()};
}

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

int ReductionFactor(int64_t width, int64_t height, int min_side) {
  if (min_side <= 0) return 1;
  const int64_t shorter = std::min(width, height);
  int factor = 1;
  while (factor < 8 && shorter / (factor * 2) >= min_side) factor *= 2;
  return factor;
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
    case ImageFormat::kHeif:
    case ImageFormat::kAvif: raw = media::DecodeHeif(bytes, options); break;
    case ImageFormat::kJxl: raw = media::DecodeJxl(bytes, options); break;
    case ImageFormat::kRaw: raw = media::DecodeCameraRaw(bytes, options); break;
    case ImageFormat::kMp4:
    case ImageFormat::kMov:
    case ImageFormat::kMatroska:
    case ImageFormat::kWebm:
    case ImageFormat::kAvi:
      return Status::InvalidArgument(std::string("a video (") + FormatInfo(format)->display_name +
                                     "), not a still image: its frames are read by SampleVideo");
    case ImageFormat::kUnknown: break;
  }
  if (!raw.ok()) {
    if (format == ImageFormat::kUnknown) return raw.status();
    return raw.status().WithContext(FormatInfo(format)->display_name);
  }

  DecodedImage out;
  out.format = format;
  out.stored_width = raw->image.width;
  out.stored_height = raw->image.height;
  const media::ExifFields exif = media::ParseExif(raw->exif);
  out.orientation = raw->tiff_orientation >= 1 && raw->tiff_orientation <= 8 ? raw->tiff_orientation : exif.orientation;
  out.capture_time = raw->capture_time ? raw->capture_time : exif.capture_time;
  const bool preview = raw->full_width > 0 && raw->full_height > 0;
  out.width = preview ? raw->full_width : raw->image.width;
  out.height = preview ? raw->full_height : raw->image.height;
  if (options.apply_exif_orientation && out.orientation != 1) {
    out.image = media::ApplyOrientation(raw->image, out.orientation);
    if (out.orientation >= 5) std::swap(out.width, out.height);
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
