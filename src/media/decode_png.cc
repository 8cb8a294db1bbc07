// PNG through libpng's classic API with the transforms that reproduce Pillow's convert("RGB"):
// palette expanded, gray replicated, alpha dropped (not composited), 16-bit channels cut to their
// high byte (Pillow's "RGB;16B" raw mode), no gamma correction.
#include <png.h>

#include <csetjmp>
#include <cstring>
#include <string_view>

#include "media/decoders.h"

namespace imgsearch::media {

namespace {

struct Reader {
  std::span<const uint8_t> bytes;
  size_t pos = 0;
  char message[256] = {0};
  bool image_done = false;  // past the pixel data: later errors (a cut-off tail) do not lose the image
};

void ReadCallback(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<Reader*>(png_get_io_ptr(png));
  if (r->bytes.size() - r->pos < n) png_error(png, "file is truncated");
  std::memcpy(out, r->bytes.data() + r->pos, n);
  r->pos += n;
}

[[noreturn]] void ErrorCallback(png_structp png, png_const_charp message) {
  auto* r = static_cast<Reader*>(png_get_error_ptr(png));
  std::snprintf(r->message, sizeof(r->message), "%s", message);
  png_longjmp(png, 1);
}

void WarningCallback(png_structp, png_const_charp) {}

void CopyExif(png_structp png, png_infop info, std::vector<uint8_t>* exif) {
  png_uint_32 n = 0;
  png_bytep data = nullptr;
  if (info != nullptr && png_get_eXIf_1(png, info, &n, &data) != 0 && data != nullptr && n > 0) {
    exif->assign(data, data + n);
  }
}

Status DecodeInto(std::span<const uint8_t> bytes, const DecodeOptions& options, RawDecode* out,
                  std::vector<png_bytep>* rows) {
  Reader reader;
  reader.bytes = bytes;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, ErrorCallback, WarningCallback);
  if (png == nullptr) return Status::Internal("cannot create a libpng reader");
  png_infop info = png_create_info_struct(png);
  png_infop end_info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, &end_info);
    if (reader.image_done) return Status::Ok();
    return Status::Corruption(std::string(reader.message));
  }
  if (info == nullptr || end_info == nullptr) png_error(png, "cannot allocate info");
  png_set_read_fn(png, &reader, ReadCallback);
  png_set_user_limits(png, 0x7FFFFFFF, 0x7FFFFFFF);  // our own pixel limit applies below
  png_read_info(png, info);

  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
  png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, nullptr, nullptr, nullptr);
  Status dims = CheckDimensions(width, height, options);
  if (!dims.ok()) {
    png_destroy_read_struct(&png, &info, &end_info);
    return dims;
  }
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (bit_depth == 16) png_set_strip_16(png);
  if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(width) * 3) png_error(png, "unexpected row layout");

  out->image = Image(static_cast<int>(width), static_cast<int>(height));
  rows->resize(height);
  for (png_uint_32 y = 0; y < height; ++y) (*rows)[y] = out->image.row(static_cast<int>(y));
  png_read_image(png, rows->data());
  CopyExif(png, info, &out->exif);
  reader.image_done = true;
  png_read_end(png, end_info);
  if (out->exif.empty()) CopyExif(png, end_info, &out->exif);
  png_destroy_read_struct(&png, &info, &end_info);
  return Status::Ok();
}

// What the chunk list says before any pixel is decoded.
struct Chunks {
  // An animated PNG whose default image is not part of its animation: an acTL chunk and no fcTL
  // before the first IDAT. Its first frame is then a picture of its own (fcTL, fdAT).
  bool default_outside_animation = false;
  std::span<const uint8_t> exif;  // the eXIf chunk's payload, if there is one
};

Chunks ScanChunks(std::span<const uint8_t> bytes) {
  Chunks chunks;
  bool animated = false, framed = false, image_seen = false;
  for (size_t pos = 8; bytes.size() - pos >= 8;) {  // 8: past the signature; then length, type
    const uint8_t* p = bytes.data() + pos;
    const uint32_t length = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
    const std::string_view type(reinterpret_cast<const char*>(p + 4), 4);
    if (bytes.size() - pos - 8 < uint64_t{length} + 4) break;  // cut off: libpng says how
    if (type == "acTL") animated = true;
    if (type == "fcTL" && !image_seen) framed = true;  // the default image is the first frame
    if (type == "IDAT" && !image_seen) {
      image_seen = true;
      chunks.default_outside_animation = animated && !framed;
    }
    if (type == "eXIf" && chunks.exif.empty()) chunks.exif = bytes.subspan(pos + 8, length);
    if (type == "IEND") break;
    pos += 12 + size_t{length};
  }
  return chunks;
}

}  // namespace

Result<RawDecode> DecodePng(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  const Chunks chunks = ScanChunks(bytes);
  if (chunks.default_outside_animation) {
    // Browsers show the animation's first frame; if FFmpeg cannot read it, the default image is
    // what every reader without APNG support shows.
    Result<RawDecode> frame = DecodeApngFirstFrame(bytes, options);
    if (frame.ok()) {
      frame->exif.assign(chunks.exif.begin(), chunks.exif.end());
      return frame;
    }
  }
  RawDecode out;
  std::vector<png_bytep> rows;
  RETURN_IF_ERROR(DecodeInto(bytes, options, &out, &rows));
  return out;
}

}  // namespace imgsearch::media
