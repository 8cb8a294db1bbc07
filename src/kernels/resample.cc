#include "kernels/resample.h"

#include <cmath>

namespace imgsearch::kernels {

namespace {

double Triangle(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

double Cubic(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

}  // namespace

ResampleWeights PrecomputeResampleWeights(ResampleKernel kernel, int in_size, int out_size, int out_begin,
                                          int out_count) {
  double (*filter)(double) = kernel == ResampleKernel::kTriangle ? Triangle : Cubic;
  const double filter_support = kernel == ResampleKernel::kTriangle ? 1.0 : 2.0;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = filter_support * filterscale;
  ResampleWeights w;
  w.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  w.bounds.resize(static_cast<size_t>(out_count) * 2);
  w.k.assign(static_cast<size_t>(out_count) * w.ksize, 0.0);
  for (int xx = 0; xx < out_count; ++xx) {
    const double center = (out_begin + xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* kk = w.k.data() + static_cast<size_t>(xx) * w.ksize;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      kk[x] = filter((x + xmin - center + 0.5) * ss);
      ww += kk[x];
    }
    for (int x = 0; x < xmax; ++x) {
      if (ww != 0.0) kk[x] /= ww;
    }
    w.bounds[2 * xx] = xmin;
    w.bounds[2 * xx + 1] = xmax;
  }
  return w;
}

void ResizeFloats(const float* in, int in_height, int in_width, int channels, int out_height, int out_width,
                  ResampleKernel kernel, float* out) {
  const ResampleWeights horiz = PrecomputeResampleWeights(kernel, in_width, out_width, 0, out_width);
  const ResampleWeights vert = PrecomputeResampleWeights(kernel, in_height, out_height, 0, out_height);
  std::vector<double> rows(static_cast<size_t>(in_height) * out_width * channels, 0.0);  // after the horizontal pass
  for (int y = 0; y < in_height; ++y) {
    for (int xx = 0; xx < out_width; ++xx) {
      const int xmin = horiz.bounds[2 * xx], n = horiz.bounds[2 * xx + 1];
      const double* k = horiz.k.data() + static_cast<size_t>(xx) * horiz.ksize;
      double* dst = rows.data() + (static_cast<size_t>(y) * out_width + xx) * channels;
      for (int x = 0; x < n; ++x) {
        const float* src = in + (static_cast<size_t>(y) * in_width + xmin + x) * channels;
        for (int c = 0; c < channels; ++c) dst[c] += k[x] * src[c];
      }
    }
  }
  for (int yy = 0; yy < out_height; ++yy) {
    const int ymin = vert.bounds[2 * yy], n = vert.bounds[2 * yy + 1];
    const double* k = vert.k.data() + static_cast<size_t>(yy) * vert.ksize;
    for (int xx = 0; xx < out_width; ++xx) {
      float* dst = out + (static_cast<size_t>(yy) * out_width + xx) * channels;
      for (int c = 0; c < channels; ++c) {
        double sum = 0.0;
        for (int y = 0; y < n; ++y) sum += k[y] * rows[(static_cast<size_t>(ymin + y) * out_width + xx) * channels + c];
        dst[c] = static_cast<float>(sum);
      }
    }
  }
}

}  // namespace imgsearch::kernels
