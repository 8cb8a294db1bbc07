// clang-format off: jpeglib.h needs size_t and FILE declared before it.
#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <cstdlib>

#include <jpeglib.h>
// clang-format on

#include "imgsearch/image.h"

namespace imgsearch {

namespace {

struct ErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void OnError(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// State that must survive a longjmp lives in `out`.
Status Compress(const Image& image, int quality, std::vector<uint8_t>* out) {
  jpeg_compress_struct c;
  ErrorManager err;
  c.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = OnError;
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
