// HEIF/HEIC and AVIF through libheif (HEVC by FFmpeg, heif_hevc.cc; AV1 by dav1d or aom): the primary image
// with the transformations libheif applies (rotation, mirroring, crop), grids assembled from their
// tiles, any bit depth brought to 8 bits, alpha dropped.
#include <libheif/heif.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "media/decoders.h"

namespace imgsearch::media {

namespace {

struct ContextFree {
  void operator()(heif_context* c) const { heif_context_free(c); }
};
struct HandleRelease {
  void operator()(heif_image_handle* h) const { heif_image_handle_release(h); }
};
struct ImageRelease {
  void operator()(heif_image* i) const { heif_image_release(i); }
};
struct OptionsFree {
  void operator()(heif_decoding_options* o) const { heif_decoding_options_free(o); }
};
using HandlePtr = std::unique_ptr<heif_image_handle, HandleRelease>;

Status HeifError(const char* what, const heif_error& e) {
  const std::string message = std::string(what) + ": " + (e.message != nullptr ? e.message : "unknown error");
  if (e.subcode == heif_suberror_Security_limit_exceeded || e.code == heif_error_Memory_allocation_error) {
    return Status::ResourceExhausted(message);
  }
  return Status::Corruption(message);
}

std::vector<uint8_t> ReadExif(heif_image_handle* handle) {
  const int n = heif_image_handle_get_number_of_metadata_blocks(handle, "Exif");
  if (n <= 0) return {};
  std::vector<heif_item_id> ids(static_cast<size_t>(n));
  heif_image_handle_get_list_of_metadata_block_IDs(handle, "Exif", ids.data(), n);
  const size_t size = heif_image_handle_get_metadata_size(handle, ids[0]);
  if (size == 0 || size > (64u << 20)) return {};
  std::vector<uint8_t> item(size);
  if (heif_image_handle_get_metadata(handle, ids[0], item.data()).code != heif_error_Ok) return {};
  return ExifFromBmffItem(item);
}

// The smallest thumbnail whose shorter side is at least `min_side`, if the file has one. A
// "thumbnail" larger than the picture on either side, or past the pixel limit, is not one.
HandlePtr PickThumbnail(heif_image_handle* primary, int min_side, const DecodeOptions& options) {
  const int n = heif_image_handle_get_number_of_thumbnails(primary);
  if (n <= 0 || min_side <= 0) return nullptr;
  std::vector<heif_item_id> ids(static_cast<size_t>(n));
  heif_image_handle_get_list_of_thumbnail_IDs(primary, ids.data(), n);
  HandlePtr best;
  for (heif_item_id id : ids) {
    heif_image_handle* raw = nullptr;
    if (heif_image_handle_get_thumbnail(primary, id, &raw).code != heif_error_Ok) continue;
    HandlePtr thumb(raw);
    const int w = heif_image_handle_get_width(thumb.get()), h = heif_image_handle_get_height(thumb.get());
    const int shorter = std::min(w, h);
    if (shorter < min_side || w > heif_image_handle_get_width(primary) || h > heif_image_handle_get_height(primary) ||
        !CheckDimensions(heif_image_handle_get_ispe_width(thumb.get()), heif_image_handle_get_ispe_height(thumb.get()),
                         options)
             .ok()) {
      continue;
    }
    if (!best ||
        shorter < std::min(heif_image_handle_get_width(best.get()), heif_image_handle_get_height(best.get()))) {
      best = std::move(thumb);
    }
  }
  return best;
}

}  // namespace

Result<RawDecode> DecodeHeif(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  const ScopedHevcPixelLimit hevc_limit(options.max_pixels);
  std::unique_ptr<heif_context, ContextFree> ctx(heif_context_alloc());
  if (!ctx) return Status::ResourceExhausted("cannot allocate a HEIF decoder");
  // libheif refuses items and grids with a side past this (its default, 32768, or less) before
  // allocating them; the primary image's pixel count is checked below, from its header.
  heif_context_set_maximum_image_size_limit(ctx.get(), static_cast<int>(std::min<uint64_t>(options.max_pixels, 32768)));
  heif_error e = heif_context_read_from_memory_without_copy(ctx.get(), bytes.data(), bytes.size(), nullptr);
  if (e.code != heif_error_Ok) return HeifError("cannot read the file", e);
  heif_image_handle* raw_handle = nullptr;
  e = heif_context_get_primary_image_handle(ctx.get(), &raw_handle);
  if (e.code != heif_error_Ok) return HeifError("no primary image", e);
  HandlePtr primary(raw_handle);
  const int width = heif_image_handle_get_width(primary.get());  // after rotation and crop
  const int height = heif_image_handle_get_height(primary.get());
  RETURN_IF_ERROR(CheckDimensions(width, height, options));
  // The primary item's own size (before its transformations) bounds what its decoding allocates.
  RETURN_IF_ERROR(CheckDimensions(heif_image_handle_get_ispe_width(primary.get()),
                                  heif_image_handle_get_ispe_height(primary.get()), options));

  RawDecode out;
  out.exif = ReadExif(primary.get());
  out.tiff_orientation = 1;  // HEIF's transformations are the orientation; an EXIF tag must be ignored
  HandlePtr thumbnail = PickThumbnail(primary.get(), options.preview_min_side, options);
  heif_image_handle* source = thumbnail ? thumbnail.get() : primary.get();
  if (thumbnail) {
    out.full_width = width;
    out.full_height = height;
  }

  const int bits = heif_image_handle_get_luma_bits_per_pixel(source);
  const bool deep = bits > 8;
  std::unique_ptr<heif_decoding_options, OptionsFree> decode_options(heif_decoding_options_alloc());
  heif_image* raw_image = nullptr;
  e = heif_decode_image(source, &raw_image, heif_colorspace_RGB,
                        deep ? heif_chroma_interleaved_RRGGBB_LE : heif_chroma_interleaved_RGB, decode_options.get());
  if (e.code != heif_error_Ok) return HeifError("cannot decode the image", e);
  std::unique_ptr<heif_image, ImageRelease> image(raw_image);
  const int w = heif_image_get_width(image.get(), heif_channel_interleaved);
  const int h = heif_image_get_height(image.get(), heif_channel_interleaved);
  RETURN_IF_ERROR(CheckDimensions(w, h, options));
  int stride = 0;
  const uint8_t* plane = heif_image_get_plane_readonly(image.get(), heif_channel_interleaved, &stride);
  if (plane == nullptr) return Status::Corruption("the decoded image has no pixels");

  out.image = Image(w, h);
  if (!deep) {
    for (int y = 0; y < h; ++y) std::memcpy(out.image.row(y), plane + static_cast<size_t>(y) * stride, 3 * size_t(w));
  } else {
    // 10- or 12-bit samples, rounded to the nearest 8-bit value.
    const int depth = heif_image_get_bits_per_pixel_range(image.get(), heif_channel_interleaved);
    const uint32_t max = (1u << std::clamp(depth, 9, 16)) - 1;
    for (int y = 0; y < h; ++y) {
      const uint8_t* src = plane + static_cast<size_t>(y) * stride;
      uint8_t* dst = out.image.row(y);
      for (int i = 0; i < 3 * w; ++i) {
        const uint32_t v = std::min<uint32_t>(src[2 * i] | (src[2 * i + 1] << 8), max);
        dst[i] = static_cast<uint8_t>((v * 255 + max / 2) / max);
      }
    }
  }
  return out;
}

}  // namespace imgsearch::media
