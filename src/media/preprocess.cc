#include <png.h>

#include <cstdio>

#include "imgsearch/image.h"

namespace imgsearch {

Image ResizeForModel(const Image& image, const Preprocessing& p) {
  const int size = p.size;
  if (p.fit == Preprocessing::Fit::kStretch) return Resize(image, size, size, p.filter);
  // torchvision Resize(size): the shorter side becomes `size`, the longer int(size · long / short).
  int w = size, h = size;
  if (image.width <= image.height) {
    h = static_cast<int>(static_cast<int64_t>(size) * image.height / image.width);
  } else {
    w = static_cast<int>(static_cast<int64_t>(size) * image.width / image.height);
  }
  // CenterCrop(size), offsets as the reference computes them. Only the crop is resampled, so a
  // 1×10000 image does not make a 224×2240000 intermediate.
  return ResizeRegion(image, w, h, (w - size) / 2, (h - size) / 2, size, size, p.filter);
}

void Normalize(const Image& resized, const Preprocessing& p, float* chw) {
  const int64_t plane = int64_t{resized.width} * resized.height;
  for (int c = 0; c < 3; ++c) {
    float* dst = chw + c * plane;
    for (int64_t i = 0; i < plane; ++i) {
      // (v / 255 − mean) / std, in the reference's order of operations.
      dst[i] = (static_cast<float>(resized.rgb[3 * i + c]) / 255.0f - p.mean[c]) / p.std[c];
    }
  }
}

Status PreprocessImage(std::span<const uint8_t> bytes, const Preprocessing& p, float* chw,
                       const DecodeOptions& options) {
  ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImage(bytes, ForModelInput(options, p.size)));
  Normalize(ResizeForModel(decoded.image, p), p, chw);
  return Status::Ok();
}

Status WritePng(const Image& image, const std::string& path) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = PNG_FORMAT_RGB;
  const std::string tmp = path + ".tmp";
  if (!png_image_write_to_file(&png, tmp.c_str(), 0, image.rgb.data(), image.width * 3, nullptr)) {
    std::remove(tmp.c_str());
    return Status::IoError("cannot write " + path + ": " + png.message);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status::IoError("cannot move " + tmp + " to " + path);
  }
  return Status::Ok();
}

}  // namespace imgsearch
