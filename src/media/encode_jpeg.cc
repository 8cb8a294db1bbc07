#include <cstdlib>
#include <vector>

#include "imgsearch/image.h"
#include "media/jpeg_error.h"

namespace imgsearch {

namespace {

// State that must survive a longjmp lives in `out`.
Status Compress(const Image& image, int quality, std::vector<uint8_t>* out) {
  jpeg_compress_struct c;
  media::JpegErrorManager err;
  c.err = media::InstallJpegErrors(&err);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&c);
    std::free(buffer);
    return Status::Internal(std::string("JPEG encoder: ") + err.message);
  }
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, &buffer, &size);
  c.image_width = static_cast<JDIMENSION>(image.width);
  c.image_height = static_cast<JDIMENSION>(image.height);
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(image.row(static_cast<int>(c.next_scanline)));
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  out->assign(buffer, buffer + size);
  std::free(buffer);
  return Status::Ok();
}

}  // namespace

Result<std::vector<uint8_t>> EncodeJpeg(const Image& image, int quality) {
  if (image.width <= 0 || image.height <= 0) return Status::InvalidArgument("cannot encode an empty image");
  if (quality < 1 || quality > 100) return Status::InvalidArgument("JPEG quality must be 1..100");
  std::vector<uint8_t> out;
  RETURN_IF_ERROR(Compress(image, quality, &out));
  return out;
}

}  // namespace imgsearch
