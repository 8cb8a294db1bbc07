// Camera RAW through libraw: the JPEG preview the camera embedded, when it is large enough for
// what the caller needs (what the camera itself rendered, and many times faster), else libraw's
// own development of the sensor data with the camera's white balance into sRGB, as `dcraw_emu -w`.
#include <libraw/libraw.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <memory>

#include "media/decoders.h"

namespace imgsearch::media {

namespace {

Status RawError(const char* what, int code) {
  return Status::Corruption(std::string(what) + ": " + LibRaw::strerror(code));
}

// libraw's flip code (dcraw's bits: 1 mirror left-right, 2 mirror top-bottom, 4 transpose) as an
// EXIF orientation: the inverse of libraw's own mapping from EXIF.
int OrientationOfFlip(int flip) {
  constexpr int kOrientation[8] = {1, 2, 4, 3, 5, 8, 6, 7};
  return flip >= 0 && flip < 8 ? kOrientation[flip] : 1;
}

struct ImageFree {
  void operator()(libraw_processed_image_t* image) const { LibRaw::dcraw_clear_mem(image); }
};

// The embedded preview, or nothing when there is none of a kind we read.
std::optional<Image> DecodePreview(LibRaw* raw, const DecodeOptions& options) {
  if (raw->unpack_thumb() != LIBRAW_SUCCESS) return std::nullopt;
  const libraw_thumbnail_t& t = raw->imgdata.thumbnail;
  if (t.thumb == nullptr || t.tlength == 0) return std::nullopt;
  if (t.tformat == LIBRAW_THUMBNAIL_JPEG) {
    DecodeOptions jpeg_options = options;
    jpeg_options.min_side = 0;
    auto decoded = DecodeJpeg({reinterpret_cast<const uint8_t*>(t.thumb), t.tlength}, jpeg_options);
    if (!decoded.ok()) return std::nullopt;
    return std::move(decoded->image);
  }
  if (t.tformat == LIBRAW_THUMBNAIL_BITMAP && t.tcolors == 3 &&
      t.tlength >= static_cast<size_t>(t.twidth) * t.theight * 3) {
    Image image(t.twidth, t.theight);
    std::memcpy(image.rgb.data(), t.thumb, image.rgb.size());
    return image;
  }
  return std::nullopt;
}

}  // namespace

Result<RawDecode> DecodeCameraRaw(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  auto raw = std::make_unique<LibRaw>(LIBRAW_OPTIONS_NONE);
  libraw_output_params_t& params = raw->imgdata.params;
  params.use_camera_wb = 1;  // as dcraw_emu -w
  params.output_color = 1;   // sRGB
  params.output_bps = 8;
  // libraw does not write to the buffer; its interface predates const.
  int rc = raw->open_buffer(const_cast<uint8_t*>(bytes.data()), bytes.size());
  if (rc != LIBRAW_SUCCESS) return RawError("cannot read the file", rc);
  const libraw_image_sizes_t& sizes = raw->imgdata.sizes;
  // The sensor's size bounds what developing allocates: checked before unpacking anything.
  RETURN_IF_ERROR(CheckDimensions(sizes.raw_width, sizes.raw_height, options));
  RETURN_IF_ERROR(CheckDimensions(sizes.width, sizes.height, options));

  RawDecode out;
  if (raw->imgdata.other.timestamp > 0) {
    // EXIF times are local wall-clock times; libraw read one with mktime, so localtime gives it back.
    std::tm tm{};
    const std::time_t t = raw->imgdata.other.timestamp;
    if (localtime_r(&t, &tm) != nullptr) {
      char buf[32];
      std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
      out.capture_time = buf;
    }
  }

  const libraw_thumbnail_t& thumb = raw->imgdata.thumbnail;
  if (options.preview_min_side > 0 && std::min(thumb.twidth, thumb.theight) >= options.preview_min_side &&
      static_cast<uint64_t>(thumb.twidth) * thumb.theight <= options.max_pixels) {
    std::optional<Image> preview = DecodePreview(raw.get(), options);
    // The header's preview size, checked against what was decoded.
    if (preview && std::min(preview->width, preview->height) >= options.preview_min_side) {
      out.image = std::move(*preview);
      out.tiff_orientation = OrientationOfFlip(sizes.flip);  // previews are stored as the sensor is
      out.full_width = sizes.width;
      out.full_height = sizes.height;
      return out;
    }
  }

  rc = raw->unpack();
  if (rc != LIBRAW_SUCCESS) return RawError("cannot read the sensor data", rc);
  rc = raw->dcraw_process();
  if (rc != LIBRAW_SUCCESS) return RawError("cannot develop the sensor data", rc);
  int err = 0;
  std::unique_ptr<libraw_processed_image_t, ImageFree> developed(raw->dcraw_make_mem_image(&err));
  if (!developed) return RawError("cannot develop the sensor data", err);
  if (developed->type != LIBRAW_IMAGE_BITMAP || developed->bits != 8 ||
      (developed->colors != 3 && developed->colors != 1)) {
    return Status::Corruption("libraw developed an unexpected pixel layout");
  }
  const int w = developed->width;
  const int h = developed->height;
  RETURN_IF_ERROR(CheckDimensions(w, h, options));
  if (developed->colors == 3) {
    out.image = Image(w, h);
    std::memcpy(out.image.rgb.data(), developed->data, out.image.rgb.size());
  } else {
    out.image = GrayToRgb(developed->data, w, h);
  }
  out.tiff_orientation = 1;  // libraw turned the developed image as the file says
  return out;
}

}  // namespace imgsearch::media
