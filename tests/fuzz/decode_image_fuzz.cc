// libFuzzer harness for the image decoders (JPEG, PNG, WebP, GIF, BMP, TIFF, EXIF): any bytes end in
// an image or a clear error, never a crash, a hang or a huge allocation. Pixel counts are capped low
// so that a header claiming a giant image is refused before any pixel memory, as in the product.
#include <cstddef>
#include <cstdint>
#include <span>

#include "imgsearch/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace imgsearch;
  DecodeOptions options;
  options.max_pixels = 4'000'000;
  const std::span<const uint8_t> bytes(data, size);
  (void)DecodeImage(bytes, options);
  options.min_side = 64;  // the thumbnails' path: JPEGs decoded scaled down
  (void)DecodeImage(bytes, options);
  return 0;
}
