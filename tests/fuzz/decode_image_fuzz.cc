// libFuzzer harness for the image decoders (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIF, AVIF, JPEG XL,
// camera RAW, EXIF): any bytes end in
// an image or a clear error, never a crash, a hang or a huge allocation. Pixel counts are capped low
// so that a header claiming a giant image is refused before any pixel memory, as in the product.
#include <cstddef>
#include <cstdint>
#include <span>

#include "imgsearch/image.h"

// libheif 1.15's dav1d plugin leaks a 40-byte picture reference when dav1d rejects a damaged AV1
// stream (Debian's libheif; not imgsearch's to free).
extern "C" const char* __lsan_default_suppressions() { return "leak:libdav1d.so\n"; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace imgsearch;
  DecodeOptions options;
  options.max_pixels = 4'000'000;
  const std::span<const uint8_t> bytes(data, size);
  (void)DecodeImage(bytes, options);
  options.min_side = 64;  // the thumbnails' path: JPEGs decoded scaled down, RAW previews, HEIF thumbnails
  options.preview_min_side = 43;
  (void)DecodeImage(bytes, options);
  return 0;
}
