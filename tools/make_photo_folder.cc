// Writes a folder of photo-like JPEGs of mixed sizes (smooth gradients, soft shapes, sensor-like
// noise; quality 90, so file sizes are like a camera's) for ingest benchmarks.
//
//   make_photo_folder --out DIR [--n 1000] [--seed 1]
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "imgsearch/image.h"

namespace {

// The sizes of a typical library: phone photos dominate, with scans, screenshots and exports.
struct Size {
  int w, h;
};
constexpr Size kSizes[] = {{4032, 3024}, {3024, 4032}, {1920, 1080}, {1024, 768},  {640, 480},
                           {2048, 1536}, {4032, 3024}, {1600, 1200}, {3000, 2000}, {800, 800}};

// The smooth content is computed on a grid 8× coarser and interpolated; the noise is per pixel.
imgsearch::Image MakePhoto(int w, int h, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(0, 1);
  const int gw = w / 8 + 2, gh = h / 8 + 2;
  std::vector<float> grid(static_cast<size_t>(gw) * gh * 3);
  const float c0[3] = {255 * u(rng), 255 * u(rng), 255 * u(rng)};
  const float c1[3] = {255 * u(rng), 255 * u(rng), 255 * u(rng)};
  struct Blob {
    float x, y, r, color[3];
  };
  std::vector<Blob> blobs(6);
  for (Blob& b : blobs) {
    b = {u(rng) * gw, u(rng) * gh, (0.05f + 0.25f * u(rng)) * gw, {255 * u(rng), 255 * u(rng), 255 * u(rng)}};
  }
  for (int y = 0; y < gh; ++y) {
    const float t = static_cast<float>(y) / static_cast<float>(gh);
    for (int x = 0; x < gw; ++x) {
      float* px = &grid[(static_cast<size_t>(y) * gw + x) * 3];
      for (int c = 0; c < 3; ++c) px[c] = c0[c] * (1 - t) + c1[c] * t;
      for (const Blob& b : blobs) {
        const float dx = x - b.x, dy = y - b.y;
        const float a = std::exp(-(dx * dx + dy * dy) / (b.r * b.r));
        for (int c = 0; c < 3; ++c) px[c] = px[c] * (1 - a) + b.color[c] * a;
      }
    }
  }
  imgsearch::Image img(w, h);
  uint32_t state = static_cast<uint32_t>(rng());
  for (int y = 0; y < h; ++y) {
    const float gy = y / 8.f;
    const int y0 = static_cast<int>(gy);
    const float fy = gy - y0;
    for (int x = 0; x < w; ++x) {
      const float gx = x / 8.f;
      const int x0 = static_cast<int>(gx);
      const float fx = gx - x0;
      const float* p00 = &grid[(static_cast<size_t>(y0) * gw + x0) * 3];
      const float* p01 = p00 + 3;
      const float* p10 = p00 + static_cast<size_t>(gw) * 3;
      const float* p11 = p10 + 3;
      uint8_t* out = &img.rgb[(static_cast<size_t>(y) * w + x) * 3];
      for (int c = 0; c < 3; ++c) {
        const float v = (p00[c] * (1 - fx) + p01[c] * fx) * (1 - fy) + (p10[c] * (1 - fx) + p11[c] * fx) * fy;
        state = state * 1664525u + 1013904223u;  // sensor-like noise, ±8
        const float n = static_cast<float>(state >> 28) - 8.f;
        out[c] = static_cast<uint8_t>(std::clamp(v + n, 0.f, 255.f));
      }
    }
  }
  return img;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"write a folder of photo-like JPEGs of mixed sizes"};
  std::string out;
  int n = 1000;
  unsigned seed = 1;
  app.add_option("--out", out, "folder to write")->required();
  app.add_option("--n", n, "how many photos")->capture_default_str();
  app.add_option("--seed", seed, "random seed")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::filesystem::create_directories(out);
  std::mt19937 rng(seed);
  int64_t bytes = 0;
  for (int i = 0; i < n; ++i) {
    const Size s = kSizes[i % std::size(kSizes)];
    auto jpeg = imgsearch::EncodeJpeg(MakePhoto(s.w, s.h, rng), 90);
    if (!jpeg.ok()) {
      std::fprintf(stderr, "make_photo_folder: %s\n", jpeg.status().ToString().c_str());
      return 1;
    }
    char name[64];
    std::snprintf(name, sizeof(name), "/IMG_%05d.jpg", i);
    std::ofstream f(out + name, std::ios::binary);
    f.write(reinterpret_cast<const char*>(jpeg->data()), static_cast<std::streamsize>(jpeg->size()));
    bytes += static_cast<int64_t>(jpeg->size());
  }
  std::printf("%d photos, %.1f MB, in %s\n", n, bytes / 1e6, out.c_str());
  return 0;
}
