// Pillow's resampling (libImaging/Resample.c, Pillow 9.4) for 8-bit RGB with the BILINEAR and
// BICUBIC filters, reproduced operation for operation: the filter's double-precision weights per
// output pixel (kernels/resample.h), converted to 22-bit fixed point, a horizontal pass into a
// uint8 image, then a vertical pass.
#include <algorithm>
#include <cmath>
#include <vector>

#include "imgsearch/image.h"
#include "kernels/resample.h"

namespace imgsearch {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

kernels::ResampleKernel KernelOf(ResampleFilter filter) {
  return filter == ResampleFilter::kBilinear ? kernels::ResampleKernel::kTriangle : kernels::ResampleKernel::kCubic;
}

// The weights in Pillow's fixed point, for the 8-bit passes.
struct Coefficients {
  int ksize = 0;
  std::vector<int> bounds;  // as kernels::ResampleWeights
  std::vector<int32_t> k;
};

Coefficients PrecomputeCoefficients(ResampleFilter filter, int in_size, int out_size, int out_begin, int out_count) {
  kernels::ResampleWeights w =
      kernels::PrecomputeResampleWeights(KernelOf(filter), in_size, out_size, out_begin, out_count);
  Coefficients c;
  c.ksize = w.ksize;
  c.bounds = std::move(w.bounds);
  c.k.resize(w.k.size());
  for (size_t i = 0; i < w.k.size(); ++i) {
    const double v = w.k[i] * (1 << kPrecisionBits);
    c.k[i] = static_cast<int32_t>(v < 0 ? -0.5 + v : 0.5 + v);
  }
  return c;
}

inline uint8_t Clip8(int32_t v) {
  if (v >= (1 << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

// Rows [row0, row0 + out.height) of `in`, resampled horizontally into `out`.
void ResampleHorizontal(const Image& in, int row0, const Coefficients& c, Image* out) {
  for (int yy = 0; yy < out->height; ++yy) {
    const uint8_t* src = in.row(yy + row0);
    uint8_t* dst = out->row(yy);
    for (int xx = 0; xx < out->width; ++xx) {
      const int xmin = c.bounds[2 * xx];
      const int xmax = c.bounds[2 * xx + 1];
      const int32_t* k = c.k.data() + static_cast<size_t>(xx) * c.ksize;
      int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      for (int x = 0; x < xmax; ++x) {
        const uint8_t* p = src + 3 * (x + xmin);
        s0 += p[0] * k[x];
        s1 += p[1] * k[x];
        s2 += p[2] * k[x];
      }
      dst[3 * xx + 0] = Clip8(s0);
      dst[3 * xx + 1] = Clip8(s1);
      dst[3 * xx + 2] = Clip8(s2);
    }
  }
}

// `bounds` already shifted so that row 0 of `in` is the first row any output pixel reads.
void ResampleVertical(const Image& in, const Coefficients& c, Image* out) {
  for (int yy = 0; yy < out->height; ++yy) {
    const int ymin = c.bounds[2 * yy];
    const int ymax = c.bounds[2 * yy + 1];
    const int32_t* k = c.k.data() + static_cast<size_t>(yy) * c.ksize;
    uint8_t* dst = out->row(yy);
    for (int xx = 0; xx < out->width * 3; ++xx) {
      int32_t s = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < ymax; ++y) s += in.row(y + ymin)[xx] * k[y];
      dst[xx] = Clip8(s);
    }
  }
}

}  // namespace

Image Resize(const Image& in, int width, int height, ResampleFilter filter) {
  return ResizeRegion(in, width, height, 0, 0, width, height, filter);
}

Image ResizeRegion(const Image& in, int width, int height, int left, int top, int region_width, int region_height,
                   ResampleFilter filter) {
  const bool need_horizontal = width != in.width;
  const bool need_vertical = height != in.height;
  Coefficients horiz = PrecomputeCoefficients(filter, in.width, width, left, region_width);
  Coefficients vert = PrecomputeCoefficients(filter, in.height, height, top, region_height);

  // The horizontal pass only computes the input rows the vertical pass will read.
  const int ybox_first = need_vertical ? vert.bounds[0] : top;
  const int ybox_last = need_vertical ? vert.bounds[2 * (region_height - 1)] + vert.bounds[2 * (region_height - 1) + 1]
                                      : top + region_height;
  Image rows(region_width, ybox_last - ybox_first);
  if (need_horizontal) {
    ResampleHorizontal(in, ybox_first, horiz, &rows);
  } else {
    for (int y = 0; y < rows.height; ++y) std::copy_n(in.row(ybox_first + y) + 3 * left, 3 * region_width, rows.row(y));
  }
  if (!need_vertical) return rows;
  for (int i = 0; i < region_height; ++i) vert.bounds[2 * i] -= ybox_first;
  Image out(region_width, region_height);
  ResampleVertical(rows, vert, &out);
  return out;
}

}  // namespace imgsearch
