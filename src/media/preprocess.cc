#include <png.h>

#include <cstdio>

#include "imgsearch/image.h"

namespace imgsearch {

namespace {
constexpr float kClipMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
constexpr float kClipStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
}  // namespace

Image ResizeAndCropForClip(const Image& image, int size) {
  // torchvision Resize(size): the shorter side becomes `size`, the longer int(size · long / short).
  int w = size, h = size;
  if (image.width <= image.height) {
    h = static_cast<int>(static_cast<int64_t>(size) * image.height / image.width);
  } else {
    w = static_cast<int>(static_cast<int64_t>(size) * image.width / image.height);
  }
  // CenterCrop(size), offsets as the reference computes them. Only the crop is resampled, so a
  // 1×10000 image does not make a 224×2240000 intermediate.
  return ResizeBicubicRegion(image, w, h, (w - size) / 2, (h - size) / 2, size, size);
}

void NormalizeForClip(const Image& crop, float* chw) {
  const int64_t plane = int64_t{crop.width} * crop.height;
  for (int c = 0; c < 3; ++c) {
    float* dst = chw + c * plane;
    for (int64_t i = 0; i < plane; ++i) {
      // (v / 255 − mean) / std, in the reference's order of operations.
      dst[i] = (static_cast<float>(crop.rgb[3 * i + c]) / 255.0f - kClipMean[c]) / kClipStd[c];
    }
  }
}

Status PreprocessForClip(std::span<const uint8_t> bytes, int size, float* chw, const DecodeOptions& options) {
  ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImage(bytes, ForModelInput(options, size)));
  NormalizeForClip(ResizeAndCropForClip(decoded.image, size), chw);
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
