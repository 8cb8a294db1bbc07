// JPEG through libjpeg-turbo, the decoder Pillow uses, with its default (islow DCT, fancy
// upsampling) settings so the pixels are the same.
#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>

// clang-format off
#include <jpeglib.h>
#include <jerror.h>
// clang-format on

#include "media/decoders.h"
#include "media/jpeg_error.h"

namespace imgsearch::media {

namespace {

void OnMessage(j_common_ptr cinfo, int level) {
  // Warnings about corrupt data in a real photo are common and Pillow accepts them; running out of
  // data is not: the rest of the image would be made up.
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) JpegErrorExit(cinfo);
}

// Pillow reads CMYK JPEGs as inverted ("CMYK;I", the Adobe convention) and converts with
// cmyk2rgb: out = (255 − k) − c·(255 − k)/255 with its MULDIV255 rounding.
inline uint8_t CmykChannel(int c, int nk) {
  const int tmp = c * nk + 128;
  const int v = nk - (((tmp >> 8) + tmp) >> 8);
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// All state that must survive a longjmp lives in `out` or is trivially destructible.
Status DecodeInto(std::span<const uint8_t> bytes, const DecodeOptions& options, RawDecode* out) {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  cinfo.err = InstallJpegErrors(&err);
  err.pub.emit_message = OnMessage;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return Status::Corruption(std::string(err.message));
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&cinfo, TRUE);

  Status dims = CheckDimensions(cinfo.image_width, cinfo.image_height, options);
  if (!dims.ok()) {
    jpeg_destroy_decompress(&cinfo);
    return dims;
  }
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != nullptr; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && m->data_length > 6 && std::memcmp(m->data, "Exif\0\0", 6) == 0) {
      out->exif.assign(m->data + 6, m->data + m->data_length);
      break;
    }
  }

  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  const bool gray = cinfo.jpeg_color_space == JCS_GRAYSCALE;
  cinfo.out_color_space = cmyk ? JCS_CMYK : gray ? JCS_GRAYSCALE : JCS_RGB;
  if (options.min_side > 0) {
    const auto denom = static_cast<unsigned>(ReductionFactor(cinfo.image_width, cinfo.image_height, options.min_side));
    cinfo.scale_num = 1;
    cinfo.scale_denom = denom;
    if (denom > 1) {  // the picture's own size, not the reduced decode's
      out->full_width = static_cast<int>(cinfo.image_width);
      out->full_height = static_cast<int>(cinfo.image_height);
    }
  }
  jpeg_start_decompress(&cinfo);

  const int w = static_cast<int>(cinfo.output_width);
  const int h = static_cast<int>(cinfo.output_height);
  const int comps = cinfo.output_components;
  out->image = Image(w, h);
  // One scanline buffer, owned by libjpeg's pool so a longjmp frees it.
  JSAMPARRAY buffer = (*cinfo.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE,
                                                 static_cast<JDIMENSION>(w * comps), 1);
  while (cinfo.output_scanline < cinfo.output_height) {
    const int y = static_cast<int>(cinfo.output_scanline);
    jpeg_read_scanlines(&cinfo, buffer, 1);
    const uint8_t* src = buffer[0];
    uint8_t* dst = out->image.row(y);
    if (comps == 3) {
      std::memcpy(dst, src, static_cast<size_t>(w) * 3);
    } else if (comps == 1) {
      for (int x = 0; x < w; ++x) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = src[x];
    } else {  // CMYK, stored inverted
      for (int x = 0; x < w; ++x) {
        const int nk = src[4 * x + 3];  // 255 − k, as the inverted value is already 255 − k
        dst[3 * x + 0] = CmykChannel(255 - src[4 * x + 0], nk);
        dst[3 * x + 1] = CmykChannel(255 - src[4 * x + 1], nk);
        dst[3 * x + 2] = CmykChannel(255 - src[4 * x + 2], nk);
      }
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return Status::Ok();
}

}  // namespace

jpeg_error_mgr* InstallJpegErrors(JpegErrorManager* err) {
  jpeg_error_mgr* mgr = jpeg_std_error(&err->pub);
  mgr->error_exit = JpegErrorExit;
  err->message[0] = '\0';
  return mgr;
}

void JpegErrorExit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

Result<RawDecode> DecodeJpeg(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  RawDecode out;
  RETURN_IF_ERROR(DecodeInto(bytes, options, &out));
  return out;
}

}  // namespace imgsearch::media
