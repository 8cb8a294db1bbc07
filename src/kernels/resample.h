// Pillow's separable resampling filters (libImaging/Resample.c): the weights each output pixel
// gives its input pixels, and a floating-point resize over them. The 8-bit image resize that
// matches Pillow bit for bit (media) and the resize of learned position grids (model: torch's
// F.interpolate(antialias=True), which follows Pillow) share these weights.
#pragma once

#include <vector>

namespace imgsearch::kernels {

enum class ResampleKernel {
  kTriangle,  // Pillow's BILINEAR (support 1)
  kCubic,     // Pillow's BICUBIC, a = −0.5 (support 2)
};

// For each output pixel: the first input pixel, how many contribute, and their weights (summing to 1).
struct ResampleWeights {
  int ksize = 0;            // weights stored per output pixel
  std::vector<int> bounds;  // [out_count · 2]: first input pixel, count
  std::vector<double> k;    // [out_count · ksize]
};

// Pillow's precompute_coeffs for output pixels [out_begin, out_begin + out_count) of a resize from
// in_size to out_size: downscaling widens the filter by the scale (antialiasing).
ResampleWeights PrecomputeResampleWeights(ResampleKernel kernel, int in_size, int out_size, int out_begin,
                                          int out_count);

// Resizes in_height × in_width pixels of `channels` interleaved floats to out_height × out_width,
// horizontally then vertically, in double precision: torch.nn.functional.interpolate(mode="bilinear"
// or "bicubic", align_corners=False, antialias=True) on the channels-first equivalent.
void ResizeFloats(const float* in, int in_height, int in_width, int channels, int out_height, int out_width,
                  ResampleKernel kernel, float* out);

}  // namespace imgsearch::kernels
