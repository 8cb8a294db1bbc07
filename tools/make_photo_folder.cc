// Writes a folder of photo-like pictures of mixed sizes (smooth gradients, soft shapes, sensor-like
// noise; compressed about as a camera or phone compresses them) for ingest benchmarks and tests, in
// one or several formats (photo i in the i-th of them, cycling): JPEG, PNG, WebP, HEIC, AVIF, JPEG
// XL, and camera RAW (a DNG with the JPEG preview a camera embeds).
//
//   make_photo_folder --out DIR [--n 1000] [--seed 1] [--formats jpeg,heic,…] [--max-side PX]
//                     [--words "WORDS", …]  (photo i shows the i-th words, as a sign would)
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <jxl/encode.h>
#include <jxl/encode_cxx.h>
#include <libheif/heif.h>
#include <webp/encode.h>

#include "dng_writer.h"
#include "draw_text.h"
#include "imgsearch/image.h"

// x265, which libheif encodes HEIC with, keeps a few buffers for the life of the process (the
// test build checks for leaks).
extern "C" const char* __lsan_default_suppressions() { return "leak:libx265.so\n"; }

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

using Bytes = std::vector<uint8_t>;
using imgsearch::Image;
using imgsearch::Result;
using imgsearch::Status;

// HEVC (x265) or AV1 (aom) through libheif, as a phone writes them.
Result<Bytes> EncodeHeif(const Image& img, bool avif) {
  heif_context* ctx = heif_context_alloc();
  heif_encoder* encoder = nullptr;
  heif_image* image = nullptr;
  Bytes out;
  auto fail = [&](const heif_error& e) {
    return Status::Internal(std::string(avif ? "AVIF" : "HEIC") + " encoding: " + (e.message ? e.message : ""));
  };
  heif_error e =
      heif_context_get_encoder_for_format(ctx, avif ? heif_compression_AV1 : heif_compression_HEVC, &encoder);
  if (e.code == heif_error_Ok) {
    // Sizes like a phone's (a 12-megapixel HEIC of 2–4 MB), at encoder speeds a benchmark can wait for.
    heif_encoder_set_lossy_quality(encoder, avif ? 60 : 50);
    heif_encoder_set_parameter(encoder, avif ? "speed" : "preset", avif ? "8" : "fast");
    e = heif_image_create(img.width, img.height, heif_colorspace_RGB, heif_chroma_interleaved_RGB, &image);
  }
  if (e.code == heif_error_Ok) e = heif_image_add_plane(image, heif_channel_interleaved, img.width, img.height, 8);
  if (e.code == heif_error_Ok) {
    int stride = 0;
    uint8_t* plane = heif_image_get_plane(image, heif_channel_interleaved, &stride);
    for (int y = 0; y < img.height; ++y)
      std::memcpy(plane + static_cast<size_t>(y) * stride, img.row(y), 3 * size_t(img.width));
    e = heif_context_encode_image(ctx, image, encoder, nullptr, nullptr);
  }
  if (e.code == heif_error_Ok) {
    heif_writer writer{1, [](heif_context*, const void* data, size_t size, void* user) {
                         auto* o = static_cast<Bytes*>(user);
                         o->insert(o->end(), static_cast<const uint8_t*>(data),
                                   static_cast<const uint8_t*>(data) + size);
                         return heif_error{heif_error_Ok, heif_suberror_Unspecified, "ok"};
                       }};
    e = heif_context_write(ctx, &writer, &out);
  }
  if (image != nullptr) heif_image_release(image);
  if (encoder != nullptr) heif_encoder_release(encoder);
  heif_context_free(ctx);
  if (e.code != heif_error_Ok) return fail(e);
  return out;
}

// Lossy JPEG XL at distance 1 (cjxl's default for photos).
Result<Bytes> EncodeJxl(const Image& img) {
  JxlEncoderPtr enc = JxlEncoderMake(nullptr);
  JxlBasicInfo info;
  JxlEncoderInitBasicInfo(&info);
  info.xsize = static_cast<uint32_t>(img.width);
  info.ysize = static_cast<uint32_t>(img.height);
  info.bits_per_sample = 8;
  info.num_color_channels = 3;
  info.uses_original_profile = JXL_FALSE;
  JxlColorEncoding color;
  JxlColorEncodingSetToSRGB(&color, JXL_FALSE);
  const JxlPixelFormat format{3, JXL_TYPE_UINT8, JXL_NATIVE_ENDIAN, 0};
  JxlEncoderFrameSettings* frame = nullptr;
  if (JxlEncoderSetBasicInfo(enc.get(), &info) != JXL_ENC_SUCCESS ||
      JxlEncoderSetColorEncoding(enc.get(), &color) != JXL_ENC_SUCCESS ||
      (frame = JxlEncoderFrameSettingsCreate(enc.get(), nullptr)) == nullptr ||
      JxlEncoderSetFrameDistance(frame, 1.0f) != JXL_ENC_SUCCESS ||
      JxlEncoderAddImageFrame(frame, &format, img.rgb.data(), img.rgb.size()) != JXL_ENC_SUCCESS) {
    return Status::Internal("JPEG XL encoding failed");
  }
  JxlEncoderCloseInput(enc.get());
  Bytes out(1 << 16);
  size_t used = 0;
  for (;;) {
    uint8_t* next = out.data() + used;
    size_t avail = out.size() - used;
    const JxlEncoderStatus st = JxlEncoderProcessOutput(enc.get(), &next, &avail);
    used = static_cast<size_t>(next - out.data());
    if (st == JXL_ENC_SUCCESS) break;
    if (st != JXL_ENC_NEED_MORE_OUTPUT) return Status::Internal("JPEG XL encoding failed");
    out.resize(out.size() * 2);
  }
  out.resize(used);
  return out;
}

Result<Bytes> EncodeWebp(const Image& img) {
  uint8_t* data = nullptr;
  const size_t n = WebPEncodeRGB(img.rgb.data(), img.width, img.height, img.width * 3, 80, &data);
  if (n == 0) return Status::Internal("WebP encoding failed");
  Bytes out(data, data + n);
  WebPFree(data);
  return out;
}

// The bytes and file extension of `img` in `format`.
Result<std::pair<Bytes, const char*>> Encode(const Image& img, const std::string& format, const std::string& tmp) {
  using Out = std::pair<Bytes, const char*>;
  if (format == "jpeg") {
    ASSIGN_OR_RETURN(Bytes b, imgsearch::EncodeJpeg(img, 90));
    return Out{std::move(b), "jpg"};
  }
  if (format == "png") {
    RETURN_IF_ERROR(imgsearch::WritePng(img, tmp));
    std::ifstream f(tmp, std::ios::binary);
    Bytes b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::filesystem::remove(tmp);
    return Out{std::move(b), "png"};
  }
  if (format == "webp") {
    ASSIGN_OR_RETURN(Bytes b, EncodeWebp(img));
    return Out{std::move(b), "webp"};
  }
  if (format == "heic" || format == "avif") {
    ASSIGN_OR_RETURN(Bytes b, EncodeHeif(img, format == "avif"));
    return Out{std::move(b), format == "avif" ? "avif" : "heic"};
  }
  if (format == "jxl") {
    ASSIGN_OR_RETURN(Bytes b, EncodeJxl(img));
    return Out{std::move(b), "jxl"};
  }
  if (format == "dng") {
    // A preview whose longer side is 1616 px, as many cameras embed (never larger than the picture).
    const double scale = std::min(1.0, 1616.0 / std::max(img.width, img.height));
    const int pw = std::max(1, static_cast<int>(img.width * scale)),
              ph = std::max(1, static_cast<int>(img.height * scale));
    ASSIGN_OR_RETURN(Bytes preview, imgsearch::EncodeJpeg(imgsearch::Resize(img, pw, ph), 90));
    return Out{imgsearch::tools::MakeDng(img, {.preview_jpeg = preview, .preview_width = pw, .preview_height = ph}),
               "dng"};
  }
  return Status::InvalidArgument("unknown format " + format + " (jpeg, png, webp, heic, avif, jxl, dng)");
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
  std::vector<std::string> formats = {"jpeg"};
  app.add_option("--formats", formats, "formats, photo i in the i-th (jpeg, png, webp, heic, avif, jxl, dng)")
      ->delimiter(',')
      ->capture_default_str();
  int max_side = 0;
  app.add_option("--max-side", max_side, "scale the sizes down so no side is longer (0: camera sizes)");
  std::vector<std::string> words;
  app.add_option("--words", words,
                 "words drawn on the photos, the i-th on photo i (a sign: dark letters on a light box)");
  CLI11_PARSE(app, argc, argv);

  std::filesystem::create_directories(out);
  std::mt19937 rng(seed);
  int64_t bytes = 0;
  for (int i = 0; i < n; ++i) {
    Size s = kSizes[i % std::size(kSizes)];
    if (max_side > 0 && std::max(s.w, s.h) > max_side) {
      const double scale = static_cast<double>(max_side) / std::max(s.w, s.h);
      s = {std::max(2, static_cast<int>(s.w * scale)), std::max(2, static_cast<int>(s.h * scale))};
    }
    const std::string& format = formats[i % formats.size()];
    imgsearch::Image photo = MakePhoto(s.w, s.h, rng);
    if (i < static_cast<int>(words.size()) &&
        !imgsearch::tools::DrawText(&photo, words[static_cast<size_t>(i)], s.w / 10, s.h / 3,
                                    {.pixel_height = std::max(16, s.h / 14),
                                     .color = {20, 20, 20},
                                     .box = std::array<uint8_t, 3>{245, 240, 220}})) {
      std::fprintf(stderr, "make_photo_folder: no font at %s (fonts-dejavu-core)\n", imgsearch::tools::kTextFont);
      return 1;
    }
    auto encoded = Encode(photo, format, out + "/.make_photo_folder.tmp.png");
    if (!encoded.ok()) {
      std::fprintf(stderr, "make_photo_folder: %s\n", encoded.status().ToString().c_str());
      return 1;
    }
    char name[64];
    std::snprintf(name, sizeof(name), "/IMG_%05d.%s", i, encoded->second);
    std::ofstream f(out + name, std::ios::binary);
    f.write(reinterpret_cast<const char*>(encoded->first.data()), static_cast<std::streamsize>(encoded->first.size()));
    bytes += static_cast<int64_t>(encoded->first.size());
  }
  std::printf("%d photos, %.1f MB, in %s\n", n, bytes / 1e6, out.c_str());
  return 0;
}
