#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "imgsearch/image.h"

namespace imgsearch {

std::pair<int, int> PatchBudgetSize(int height, int width, int patch, int max_patches) {
  // Siglip2ImageProcessor's get_image_size_for_max_num_patches, in the same double arithmetic.
  auto scaled = [patch](double scale, int side) {
    const double size = std::ceil(side * scale / patch) * patch;
    return static_cast<int>(std::max<double>(patch, size));
  };
  constexpr double kEps = 1e-5;
  double scale_min = kEps / 10, scale_max = 100.0;
  while (scale_max - scale_min >= kEps) {
    const double scale = (scale_min + scale_max) / 2;
    const double n_patches =
        (static_cast<double>(scaled(scale, height)) / patch) * (static_cast<double>(scaled(scale, width)) / patch);
    if (n_patches <= max_patches) {
      scale_min = scale;
    } else {
      scale_max = scale;
    }
  }
  return {scaled(scale_min, height), scaled(scale_min, width)};
}

Image ResizeForModel(const Image& image, const Preprocessing& p) {
  const int size = p.size;
  if (p.fit == Preprocessing::Fit::kStretch) return Resize(image, size, size, p.filter);
  if (p.fit == Preprocessing::Fit::kPatchBudget) {
    const auto [height, width] = PatchBudgetSize(image.height, image.width, p.patch_size, p.max_patches);
    return Resize(image, width, height, p.filter);
  }
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

void Normalize(const Image& resized, const Preprocessing& p, float* input) {
  auto normalized = [&p](uint8_t v, int c) {
    // (v / 255 − mean) / std, in the reference's order of operations.
    return (static_cast<float>(v) / 255.0f - p.mean[c]) / p.std[c];
  };
  if (p.fit == Preprocessing::Fit::kPatchBudget) {
    const int patch = p.patch_size;
    int rows = resized.height / patch, cols = resized.width / patch;
    if (int64_t{rows} * cols > p.max_patches) rows = cols = 0;  // not ResizeForModel's: refused by the model
    input[0] = static_cast<float>(rows);
    input[1] = static_cast<float>(cols);
    float* out = input + 2;
    for (int py = 0; py < rows; ++py) {
      for (int px = 0; px < cols; ++px) {
        for (int y = 0; y < patch; ++y) {
          const uint8_t* src = resized.row(py * patch + y) + 3 * px * patch;
          for (int i = 0; i < 3 * patch; ++i) *out++ = normalized(src[i], i % 3);
        }
      }
    }
    std::fill(out, input + p.input_floats(), 0.0f);
    return;
  }
  float* chw = input;
  const int64_t plane = int64_t{resized.width} * resized.height;
  for (int c = 0; c < 3; ++c) {
    float* dst = chw + c * plane;
    for (int64_t i = 0; i < plane; ++i) {
      dst[i] = normalized(resized.rgb[3 * i + c], c);
    }
  }
}

Status PreprocessImage(std::span<const uint8_t> bytes, const Preprocessing& p, float* input,
                       const DecodeOptions& options) {
  ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImage(bytes, ForModelInput(options, p)));
  Normalize(ResizeForModel(decoded.image, p), p, input);
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
