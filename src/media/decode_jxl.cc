// JPEG XL through libjxl: the first frame as 8-bit sRGB (libjxl converts 16-bit and float samples;
// a lossy (XYB) image is asked for in sRGB, else libjxl would give linear light for one that carries
// an ICC profile), the orientation from the codestream applied afterwards like any other, capture
// time from an "Exif" box placed before the codestream.
#include <jxl/decode.h>
#include <jxl/decode_cxx.h>
#include <jxl/encode.h>  // JxlColorEncodingSetToSRGB

#include <algorithm>
#include <cstring>

#include "media/decoders.h"

namespace imgsearch::media {

Result<RawDecode> DecodeJxl(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  JxlDecoderPtr dec = JxlDecoderMake(nullptr);
  if (!dec) return Status::ResourceExhausted("cannot allocate a JPEG XL decoder");
  if (JxlDecoderSubscribeEvents(dec.get(), JXL_DEC_BASIC_INFO | JXL_DEC_COLOR_ENCODING | JXL_DEC_BOX |
                                               JXL_DEC_FULL_IMAGE) != JXL_DEC_SUCCESS ||
      JxlDecoderSetKeepOrientation(dec.get(), JXL_TRUE) != JXL_DEC_SUCCESS ||
      JxlDecoderSetDecompressBoxes(dec.get(), JXL_TRUE) != JXL_DEC_SUCCESS ||
      JxlDecoderSetInput(dec.get(), bytes.data(), bytes.size()) != JXL_DEC_SUCCESS) {
    return Status::Internal("cannot configure the JPEG XL decoder");
  }
  JxlDecoderCloseInput(dec.get());

  RawDecode out;
  JxlBasicInfo info{};
  bool have_info = false;
  std::vector<uint8_t> gray;  // a grayscale image's samples, replicated into RGB at the end
  bool in_exif = false;       // the current box is "Exif" and its bytes go to `exif_box`
  std::vector<uint8_t> exif_box;
  auto finish_exif = [&] {
    if (!in_exif) return;
    const size_t unused = JxlDecoderReleaseBoxBuffer(dec.get());
    exif_box.resize(exif_box.size() - unused);
    out.exif = ExifFromBmffItem(exif_box);
    in_exif = false;
  };
  for (;;) {
    const JxlDecoderStatus status = JxlDecoderProcessInput(dec.get());
    if (status == JXL_DEC_ERROR) return Status::Corruption("the codestream is corrupt");
    if (status == JXL_DEC_NEED_MORE_INPUT) return Status::Corruption("the file is truncated");
    if (status == JXL_DEC_BOX_NEED_MORE_OUTPUT) {
      // Only a box we gave a buffer asks for more (a skipped one asking again would loop).
      if (!in_exif) return Status::Corruption("the Exif box is larger than 16 MB");
      const size_t unused = JxlDecoderReleaseBoxBuffer(dec.get());
      const size_t used = exif_box.size() - unused;
      if (exif_box.size() >= (16u << 20)) {  // not EXIF as cameras write it: skipped, the picture still read
        in_exif = false;
        exif_box.clear();
        continue;
      }
      exif_box.resize(exif_box.size() * 2);
      JxlDecoderSetBoxBuffer(dec.get(), exif_box.data() + used, exif_box.size() - used);
      continue;
    }
    if (status == JXL_DEC_BOX) {
      finish_exif();
      JxlBoxType type;
      if (out.exif.empty() && JxlDecoderGetBoxType(dec.get(), type, JXL_TRUE) == JXL_DEC_SUCCESS &&
          std::memcmp(type, "Exif", 4) == 0) {
        exif_box.assign(64 << 10, 0);
        JxlDecoderSetBoxBuffer(dec.get(), exif_box.data(), exif_box.size());
        in_exif = true;
      }
      continue;
    }
    finish_exif();
    if (status == JXL_DEC_COLOR_ENCODING) {
      // Grayscale stays gray; a colour image comes as sRGB whatever profile it carries (libjxl
      // converts XYB to it exactly; other encodings it cannot convert keep their own).
      JxlColorEncoding srgb;
      JxlColorEncodingSetToSRGB(&srgb, info.num_color_channels == 1 ? JXL_TRUE : JXL_FALSE);
      JxlDecoderSetPreferredColorProfile(dec.get(), &srgb);
    } else if (status == JXL_DEC_BASIC_INFO) {
      if (JxlDecoderGetBasicInfo(dec.get(), &info) != JXL_DEC_SUCCESS) {
        return Status::Corruption("cannot read the image header");
      }
      RETURN_IF_ERROR(CheckDimensions(info.xsize, info.ysize, options));
      out.tiff_orientation = static_cast<int>(info.orientation);
      have_info = true;
    } else if (status == JXL_DEC_NEED_IMAGE_OUT_BUFFER) {
      if (!have_info) return Status::Corruption("pixels before the image header");
      const uint32_t channels = info.num_color_channels == 1 ? 1 : 3;  // alpha and extra channels dropped
      const JxlPixelFormat format{channels, JXL_TYPE_UINT8, JXL_NATIVE_ENDIAN, 0};
      size_t size = 0;
      if (JxlDecoderImageOutBufferSize(dec.get(), &format, &size) != JXL_DEC_SUCCESS ||
          size != size_t{info.xsize} * info.ysize * channels) {
        return Status::Corruption("unexpected pixel layout");
      }
      uint8_t* target = nullptr;
      if (channels == 3) {
        out.image = Image(static_cast<int>(info.xsize), static_cast<int>(info.ysize));
        target = out.image.rgb.data();
      } else {
        gray.resize(size);
        target = gray.data();
      }
      if (JxlDecoderSetImageOutBuffer(dec.get(), &format, target, size) != JXL_DEC_SUCCESS) {
        return Status::Corruption("cannot decode pixels of this layout");
      }
    } else if (status == JXL_DEC_FULL_IMAGE || status == JXL_DEC_SUCCESS) {
      break;  // the first frame of an animation is the picture
    }
  }
  if (!have_info || (out.image.rgb.empty() && gray.empty())) return Status::Corruption("the file holds no image");
  if (!gray.empty()) out.image = GrayToRgb(gray.data(), static_cast<int>(info.xsize), static_cast<int>(info.ysize));
  return out;
}

}  // namespace imgsearch::media
