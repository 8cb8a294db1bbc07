// Decoding, orientation, conversion to RGB, resizing and bad input, on images the test makes with
// the same libraries (no ../shared needed). Pillow parity itself is checked by tests/golden_test.cc.
#include <gif_lib.h>
#include <gtest/gtest.h>
#include <jpeglib.h>
#include <png.h>
#include <tiffio.h>
#include <webp/encode.h>

#include <cstring>
#include <random>

#include "imgsearch/image.h"
#include "test_util.h"

namespace imgsearch {
namespace {

using Bytes = std::vector<uint8_t>;

// ---- encoders for test images ----

// A w×h test pattern with four solid quadrants: red, green, blue, white (top-left, top-right,
// bottom-left, bottom-right), so orientation and channel order are easy to see even through JPEG.
Image Quadrants(int w, int h) {
  Image img(w, h);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const bool right = x >= w / 2, bottom = y >= h / 2;
      uint8_t* p = img.row(y) + 3 * x;
      const uint8_t c[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
      std::memcpy(p, c[bottom * 2 + right], 3);
    }
  }
  return img;
}

Image Gradient(int w, int h) {
  Image img(w, h);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t* p = img.row(y) + 3 * x;
      p[0] = static_cast<uint8_t>(x * 255 / std::max(1, w - 1));
      p[1] = static_cast<uint8_t>(y * 255 / std::max(1, h - 1));
      p[2] = static_cast<uint8_t>((x + y) % 256);
    }
  }
  return img;
}

// A minimal big-endian EXIF block with one IFD0 entry: Orientation.
std::string ExifWithOrientation(int orientation) {
  std::string e = "Exif";
  e += std::string("\0\0", 2);
  e += std::string("MM\0\x2A\0\0\0\x08", 8);        // TIFF header, IFD0 at 8
  e += std::string("\0\x01", 2);                    // one entry
  e += std::string("\x01\x12\0\x03\0\0\0\x01", 8);  // tag 0x0112, SHORT, count 1
  e += static_cast<char>(0);
  e += static_cast<char>(orientation);
  e += std::string("\0\0", 2);
  e += std::string("\0\0\0\0", 4);  // no next IFD
  return e;
}

enum class JpegKind { kRgb, kGray, kCmyk, kProgressive };

Bytes EncodeTestJpeg(const Image& img, JpegKind kind = JpegKind::kRgb, int orientation = 0, int quality = 95) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = img.width;
  c.image_height = img.height;
  c.input_components = kind == JpegKind::kGray ? 1 : kind == JpegKind::kCmyk ? 4 : 3;
  c.in_color_space = kind == JpegKind::kGray ? JCS_GRAYSCALE : kind == JpegKind::kCmyk ? JCS_CMYK : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  if (kind == JpegKind::kProgressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  if (orientation > 0) {
    const std::string exif = ExifWithOrientation(orientation);
    jpeg_write_marker(&c, JPEG_APP0 + 1, reinterpret_cast<const JOCTET*>(exif.data()), exif.size());
  }
  std::vector<uint8_t> line(static_cast<size_t>(img.width) * c.input_components);
  while (c.next_scanline < c.image_height) {
    const uint8_t* src = img.row(static_cast<int>(c.next_scanline));
    for (int x = 0; x < img.width; ++x) {
      if (kind == JpegKind::kGray) {
        line[x] = src[3 * x];
      } else if (kind == JpegKind::kCmyk) {  // stored as given; readers assume Adobe's inverted values
        line[4 * x + 0] = src[3 * x + 0];
        line[4 * x + 1] = src[3 * x + 1];
        line[4 * x + 2] = src[3 * x + 2];
        line[4 * x + 3] = 255;
      } else {
        std::memcpy(&line[3 * x], src + 3 * x, 3);
      }
    }
    JSAMPROW row = line.data();
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  Bytes out(buf, buf + size);
  std::free(buf);
  return out;
}

Bytes EncodePng(const void* pixels, int w, int h, png_uint_32 format, const void* colormap = nullptr,
                int colormap_entries = 0) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  png.width = w;
  png.height = h;
  png.format = format;
  png.colormap_entries = colormap_entries;
  png_alloc_size_t size = 0;
  EXPECT_TRUE(png_image_write_to_memory(&png, nullptr, &size, 0, pixels, 0, colormap));
  Bytes out(size);
  EXPECT_TRUE(png_image_write_to_memory(&png, out.data(), &size, 0, pixels, 0, colormap));
  out.resize(size);
  return out;
}

Bytes EncodeWebpLossless(const Image& img) {
  uint8_t* out = nullptr;
  const size_t n = WebPEncodeLosslessRGB(img.rgb.data(), img.width, img.height, img.width * 3, &out);
  Bytes bytes(out, out + n);
  WebPFree(out);
  return bytes;
}

int GifWriteToVector(GifFileType* gif, const GifByteType* data, int n) {
  auto* out = static_cast<Bytes*>(gif->UserData);
  out->insert(out->end(), data, data + n);
  return n;
}

// A GIF of 4 colours; pixel (x, y) has index (x / (w/2)) + 2 (y / (h/2)), the quadrant colours.
Bytes EncodeGif(int w, int h, bool interlace) {
  Bytes out;
  int err = 0;
  GifFileType* gif = EGifOpen(&out, GifWriteToVector, &err);
  GifColorType colors[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
  ColorMapObject* map = GifMakeMapObject(4, colors);
  EGifPutScreenDesc(gif, w, h, 2, 0, map);
  EGifPutImageDesc(gif, 0, 0, w, h, interlace, nullptr);
  std::vector<GifPixelType> line(w);
  auto row_of = [&](int y) {
    for (int x = 0; x < w; ++x) line[x] = static_cast<GifPixelType>((x >= w / 2) + 2 * (y >= h / 2));
  };
  if (interlace) {
    const int offsets[] = {0, 4, 2, 1}, steps[] = {8, 8, 4, 2};
    for (int pass = 0; pass < 4; ++pass) {
      for (int y = offsets[pass]; y < h; y += steps[pass]) {
        row_of(y);
        EGifPutLine(gif, line.data(), w);
      }
    }
  } else {
    for (int y = 0; y < h; ++y) {
      row_of(y);
      EGifPutLine(gif, line.data(), w);
    }
  }
  GifFreeMapObject(map);
  EGifCloseFile(gif, &err);
  return out;
}

Bytes EncodeBmp(const Image& img, bool top_down = false) {
  const int row_bytes = (img.width * 3 + 3) & ~3;
  const uint32_t data_size = row_bytes * img.height;
  Bytes b(54 + data_size, 0);
  auto put32 = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = (v >> (8 * i)) & 0xFF;
  };
  b[0] = 'B';
  b[1] = 'M';
  put32(2, static_cast<uint32_t>(b.size()));
  put32(10, 54);
  put32(14, 40);
  put32(18, img.width);
  put32(22, top_down ? static_cast<uint32_t>(-img.height) : static_cast<uint32_t>(img.height));
  b[26] = 1;
  b[28] = 24;
  put32(34, data_size);
  for (int y = 0; y < img.height; ++y) {  // bottom-up (or top-down when the height is negative), BGR
    const uint8_t* src = img.row(top_down ? y : img.height - 1 - y);
    uint8_t* dst = b.data() + 54 + static_cast<size_t>(y) * row_bytes;
    for (int x = 0; x < img.width; ++x) {
      dst[3 * x + 0] = src[3 * x + 2];
      dst[3 * x + 1] = src[3 * x + 1];
      dst[3 * x + 2] = src[3 * x + 0];
    }
  }
  return b;
}

Bytes EncodeTiff(const Image& img, int orientation) {
  const std::string path = testing::MakeTempDir() + "/t.tif";
  TIFF* t = TIFFOpen(path.c_str(), "w");
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, img.width);
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, img.height);
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(t, TIFFTAG_ORIENTATION, orientation);
  TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 4);
  for (int y = 0; y < img.height; ++y) TIFFWriteScanline(t, const_cast<uint8_t*>(img.row(y)), y, 0);
  TIFFClose(t);
  const std::string s = testing::ReadFile(path);
  return Bytes(s.begin(), s.end());
}

// ---- helpers ----

std::array<int, 3> Pixel(const Image& img, int x, int y) {
  const uint8_t* p = img.row(y) + 3 * x;
  return {p[0], p[1], p[2]};
}

void ExpectNear(std::array<int, 3> got, std::array<int, 3> want, int tol, const std::string& what) {
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(got[c], want[c], tol) << what << " channel " << c;
}

Image MustDecode(const Bytes& bytes, const DecodeOptions& options = {}) {
  auto d = DecodeImage(bytes, options);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return d.ok() ? d->image : Image();
}

// ---- formats ----

TEST(Decode, DetectsFormatsByContent) {
  const Image img = Gradient(16, 8);
  EXPECT_EQ(DetectImageFormat(EncodeTestJpeg(img)), ImageFormat::kJpeg);
  EXPECT_EQ(DetectImageFormat(EncodePng(img.rgb.data(), 16, 8, PNG_FORMAT_RGB)), ImageFormat::kPng);
  EXPECT_EQ(DetectImageFormat(EncodeWebpLossless(img)), ImageFormat::kWebp);
  EXPECT_EQ(DetectImageFormat(EncodeGif(16, 8, false)), ImageFormat::kGif);
  EXPECT_EQ(DetectImageFormat(EncodeBmp(img)), ImageFormat::kBmp);
  EXPECT_EQ(DetectImageFormat(EncodeTiff(img, 1)), ImageFormat::kTiff);
  const std::string text = "hello, not an image";
  EXPECT_EQ(DetectImageFormat(Bytes(text.begin(), text.end())), ImageFormat::kUnknown);
}

TEST(Decode, FileNameDoesNotMatter) {
  const std::string path = testing::MakeTempDir() + "/really_a_png.jpg";
  const Image img = Gradient(9, 7);
  const Bytes png = EncodePng(img.rgb.data(), 9, 7, PNG_FORMAT_RGB);
  testing::WriteFile(path, std::string(png.begin(), png.end()));
  auto d = DecodeImageFile(path);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->format, ImageFormat::kPng);
  EXPECT_EQ(d->image.rgb, img.rgb);
}

TEST(Decode, LosslessFormatsRoundTripExactly) {
  const Image img = Gradient(37, 23);
  EXPECT_EQ(MustDecode(EncodePng(img.rgb.data(), 37, 23, PNG_FORMAT_RGB)).rgb, img.rgb);
  EXPECT_EQ(MustDecode(EncodeWebpLossless(img)).rgb, img.rgb);
  EXPECT_EQ(MustDecode(EncodeBmp(img)).rgb, img.rgb);
  EXPECT_EQ(MustDecode(EncodeBmp(img, /*top_down=*/true)).rgb, img.rgb);  // a negative height is valid
  EXPECT_EQ(MustDecode(EncodeTiff(img, 1)).rgb, img.rgb);
}

TEST(Decode, JpegVariants) {
  const Image img = Quadrants(64, 32);
  for (JpegKind kind : {JpegKind::kRgb, JpegKind::kProgressive}) {
    const Image d = MustDecode(EncodeTestJpeg(img, kind));
    ASSERT_EQ(d.width, 64);
    ExpectNear(Pixel(d, 8, 8), {255, 0, 0}, 3, "red quadrant");
    ExpectNear(Pixel(d, 56, 24), {255, 255, 255}, 3, "white quadrant");
  }
  const Image gray = MustDecode(EncodeTestJpeg(Gradient(32, 32), JpegKind::kGray));
  for (int x = 0; x < 32; ++x) {
    auto p = Pixel(gray, x, 5);
    EXPECT_EQ(p[0], p[1]);
    EXPECT_EQ(p[1], p[2]);
  }
  // CMYK stored as (c, m, y, 255) and read the Adobe way (inverted): nk = 255, channel = 255 − (255 − s) = s.
  const Image cmyk = MustDecode(EncodeTestJpeg(Quadrants(64, 32), JpegKind::kCmyk));
  ExpectNear(Pixel(cmyk, 8, 8), {255, 0, 0}, 3, "CMYK red");
  ExpectNear(Pixel(cmyk, 40, 8), {0, 255, 0}, 3, "CMYK green");
}

TEST(Decode, PngModesConvertLikePillow) {
  // Gray → replicated.
  const uint8_t gray[4] = {0, 100, 200, 255};
  const Image g = MustDecode(EncodePng(gray, 2, 2, PNG_FORMAT_GRAY));
  EXPECT_EQ(Pixel(g, 1, 0), (std::array<int, 3>{100, 100, 100}));
  // RGBA → alpha dropped, not composited: a transparent pixel keeps its colour.
  const uint8_t rgba[8] = {200, 10, 10, 0, 1, 2, 3, 128};
  const Image a = MustDecode(EncodePng(rgba, 2, 1, PNG_FORMAT_RGBA));
  EXPECT_EQ(Pixel(a, 0, 0), (std::array<int, 3>{200, 10, 10}));
  EXPECT_EQ(Pixel(a, 1, 0), (std::array<int, 3>{1, 2, 3}));
  // Gray + alpha.
  const uint8_t ga[4] = {77, 0, 150, 255};
  EXPECT_EQ(Pixel(MustDecode(EncodePng(ga, 2, 1, PNG_FORMAT_GA)), 0, 0), (std::array<int, 3>{77, 77, 77}));
  // Palette → palette colours.
  const uint8_t palette[6] = {10, 20, 30, 200, 100, 50};
  const uint8_t idx[4] = {0, 1, 1, 0};
  const Image p = MustDecode(EncodePng(idx, 2, 2, PNG_FORMAT_RGB | PNG_FORMAT_FLAG_COLORMAP, palette, 2));
  EXPECT_EQ(Pixel(p, 1, 0), (std::array<int, 3>{200, 100, 50}));
  EXPECT_EQ(Pixel(p, 1, 1), (std::array<int, 3>{10, 20, 30}));
}

TEST(Decode, Png16BitKeepsTheHighByte) {
  // 16-bit through libpng's classic writer, so the stored values are exactly these.
  const uint16_t values[3] = {0x1234, 0xABCD, 0xFF00};
  std::vector<uint8_t> row = {0x12, 0x34, 0xAB, 0xCD, 0xFF, 0x00};
  Bytes out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep d, png_size_t n) {
        auto* o = static_cast<Bytes*>(png_get_io_ptr(p));
        o->insert(o->end(), d, d + n);
      },
      nullptr);
  png_set_IHDR(png, info, 1, 1, 16, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_row(png, row.data());
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  (void)values;
  EXPECT_EQ(Pixel(MustDecode(out), 0, 0), (std::array<int, 3>{0x12, 0xAB, 0xFF}));
}

TEST(Decode, GifFirstFrameIncludingInterlaced) {
  for (bool interlace : {false, true}) {
    const Image d = MustDecode(EncodeGif(20, 10, interlace));
    ASSERT_EQ(d.width, 20);
    ASSERT_EQ(d.height, 10);
    EXPECT_EQ(Pixel(d, 2, 2), (std::array<int, 3>{255, 0, 0}));
    EXPECT_EQ(Pixel(d, 15, 2), (std::array<int, 3>{0, 255, 0}));
    EXPECT_EQ(Pixel(d, 2, 8), (std::array<int, 3>{0, 0, 255}));
    EXPECT_EQ(Pixel(d, 15, 8), (std::array<int, 3>{255, 255, 255}));
  }
}

// ---- orientation ----

// Where the red (top-left in storage) quadrant ends up for each EXIF orientation, as Pillow's
// exif_transpose places it: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.
constexpr int kRedCorner[9] = {0, 0, 1, 3, 2, 0, 1, 3, 2};

TEST(Orientation, JpegExifOrientationsAllEight) {
  const Image img = Quadrants(64, 32);
  for (int o = 1; o <= 8; ++o) {
    auto d = DecodeImage(EncodeTestJpeg(img, JpegKind::kRgb, o));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->orientation, o);
    const bool swapped = o >= 5;
    ASSERT_EQ(d->image.width, swapped ? 32 : 64) << "orientation " << o;
    ASSERT_EQ(d->image.height, swapped ? 64 : 32) << "orientation " << o;
    const int w = d->image.width, h = d->image.height;
    const int corner = kRedCorner[o];
    const int x = corner % 2 ? w - 4 : 3, y = corner / 2 ? h - 4 : 3;
    ExpectNear(Pixel(d->image, x, y), {255, 0, 0}, 4, "orientation " + std::to_string(o));
  }
}

TEST(Orientation, CanBeTurnedOffAndTiffUsesItsOwnTag) {
  DecodeOptions raw;
  raw.apply_exif_orientation = false;
  auto d = DecodeImage(EncodeTestJpeg(Quadrants(64, 32), JpegKind::kRgb, 6), raw);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->image.width, 64);
  const Image t = MustDecode(EncodeTiff(Quadrants(16, 8), 6));
  ASSERT_EQ(t.width, 8);
  ASSERT_EQ(t.height, 16);
  EXPECT_EQ(Pixel(t, 7, 0), (std::array<int, 3>{255, 0, 0}));  // 90° clockwise: top-left → top-right
}

// ---- bad input ----

void ExpectDecodeError(const Bytes& bytes, const std::string& needle, const DecodeOptions& options = {}) {
  auto d = DecodeImage(bytes, options);
  ASSERT_FALSE(d.ok()) << "expected an error containing \"" << needle << "\"";
  EXPECT_NE(d.status().message().find(needle), std::string::npos) << d.status().ToString();
}

TEST(BadInput, EmptyTextAndTruncated) {
  ExpectDecodeError({}, "empty");
  const std::string text = "GIF? no. just text";
  ExpectDecodeError(Bytes(text.begin(), text.end()), "not an image");
  const Image img = Gradient(64, 48);
  Bytes jpeg = EncodeTestJpeg(img);
  jpeg.resize(jpeg.size() / 2);
  ExpectDecodeError(jpeg, "JPEG");
  Bytes png = EncodePng(img.rgb.data(), 64, 48, PNG_FORMAT_RGB);
  png.resize(png.size() / 2);
  ExpectDecodeError(png, "PNG");
  Bytes webp = EncodeWebpLossless(img);
  webp.resize(webp.size() / 2);
  ExpectDecodeError(webp, "WebP");
  Bytes gif = EncodeGif(64, 48, false);
  gif.resize(gif.size() / 2);
  ExpectDecodeError(gif, "GIF");
  Bytes bmp = EncodeBmp(img);
  bmp.resize(bmp.size() / 2);
  ExpectDecodeError(bmp, "BMP");
}

TEST(BadInput, AbsurdDimensionsAreRefusedBeforeAllocating) {
  // JPEG: patch the SOF0 frame header to 60000 × 60000 (3.6 gigapixels).
  Bytes jpeg = EncodeTestJpeg(Gradient(16, 16));
  for (size_t i = 0; i + 9 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {
      jpeg[i + 5] = 0xEA, jpeg[i + 6] = 0x60, jpeg[i + 7] = 0xEA, jpeg[i + 8] = 0x60;
      break;
    }
  }
  ExpectDecodeError(jpeg, "megapixels");
  // BMP and GIF headers carry plain sizes too.
  Bytes bmp = EncodeBmp(Gradient(4, 4));
  bmp[18] = 0x00, bmp[19] = 0x00, bmp[20] = 0x01;  // width 65536
  bmp[22] = 0x00, bmp[23] = 0x00, bmp[24] = 0x01;  // height 65536
  ExpectDecodeError(bmp, "BMP");
  Bytes gif = EncodeGif(4, 4, false);
  gif[6] = 0xFF, gif[7] = 0xFF, gif[8] = 0xFF, gif[9] = 0xFF;
  ExpectDecodeError(gif, "megapixels");
  // The limit is configurable.
  DecodeOptions small;
  small.max_pixels = 100;
  ExpectDecodeError(EncodePng(Gradient(32, 32).rgb.data(), 32, 32, PNG_FORMAT_RGB), "above the limit", small);
}

TEST(BadInput, RandomDamageNeverCrashes) {
  const Image img = Gradient(40, 30);
  const std::vector<Bytes> originals = {EncodeTestJpeg(img),
                                        EncodeTestJpeg(img, JpegKind::kProgressive),
                                        EncodePng(img.rgb.data(), 40, 30, PNG_FORMAT_RGB),
                                        EncodeWebpLossless(img),
                                        EncodeGif(40, 30, true),
                                        EncodeBmp(img),
                                        EncodeTiff(img, 1)};
  std::mt19937 rng(7);
  for (const Bytes& original : originals) {
    for (int round = 0; round < 40; ++round) {
      Bytes b = original;
      if (round % 2 == 0) {
        b.resize(rng() % b.size());
      } else {
        for (int k = 0; k < 6; ++k) b[rng() % b.size()] = static_cast<uint8_t>(rng());
      }
      auto d = DecodeImage(b);
      if (d.ok()) {
        EXPECT_EQ(d->image.rgb.size(), size_t(d->image.width) * d->image.height * 3);
      } else {
        EXPECT_FALSE(d.status().message().empty());
      }
    }
  }
}

// ---- resizing and preprocessing ----

TEST(Resize, RegionEqualsCropOfFullResize) {
  const Image img = Gradient(97, 61);
  const struct {
    int w, h, left, top, rw, rh;
  } cases[] = {
      {224, 140, 10, 5, 100, 100}, {40, 30, 0, 0, 40, 30}, {97, 200, 3, 50, 90, 20}, {300, 61, 100, 0, 50, 61}};
  for (const auto& c : cases) {
    const Image full = Resize(img, c.w, c.h);
    const Image region = ResizeRegion(img, c.w, c.h, c.left, c.top, c.rw, c.rh);
    ASSERT_EQ(region.width, c.rw);
    ASSERT_EQ(region.height, c.rh);
    for (int y = 0; y < c.rh; ++y) {
      ASSERT_EQ(0, std::memcmp(region.row(y), full.row(c.top + y) + 3 * c.left, 3 * c.rw)) << "row " << y;
    }
  }
}

TEST(Resize, IdentityAndConstantImages) {
  const Image img = Gradient(50, 40);
  EXPECT_EQ(Resize(img, 50, 40).rgb, img.rgb);
  Image flat(13, 9);
  std::fill(flat.rgb.begin(), flat.rgb.end(), 137);
  for (const auto& [w, h] : {std::pair{224, 155}, std::pair{5, 3}, std::pair{13, 300}}) {
    const Image r = Resize(flat, w, h);
    for (uint8_t v : r.rgb) ASSERT_EQ(v, 137);
  }
}

TEST(Preprocess, AnyShapeBecomesTheModelsSquare) {
  for (const auto& [w, h] : {std::pair{7, 5}, std::pair{1, 1}, std::pair{224, 224}, std::pair{640, 427},
                             std::pair{1, 5000}, std::pair{5000, 2}}) {
    for (Preprocessing::Fit fit : {Preprocessing::Fit::kCenterCrop, Preprocessing::Fit::kStretch}) {
      for (ResampleFilter filter : {ResampleFilter::kBicubic, ResampleFilter::kBilinear}) {
        Preprocessing p = Preprocessing::Clip(224);
        p.fit = fit;
        p.filter = filter;
        const Image out = ResizeForModel(Gradient(w, h), p);
        EXPECT_EQ(out.width, 224);
        EXPECT_EQ(out.height, 224);
      }
    }
  }
}

TEST(Preprocess, StretchKeepsTheWholePictureAndCropKeepsTheMiddle) {
  // Left half black, right half white, four times wider than high: stretched, both halves stay;
  // centre-cropped, the middle quarter is all that is left, half black and half white.
  Image img(400, 100);
  for (int y = 0; y < 100; ++y) {
    for (int x = 0; x < 400; ++x) std::fill_n(img.row(y) + 3 * x, 3, x < 200 ? 0 : 255);
  }
  Preprocessing p = Preprocessing::Clip(20);
  p.fit = Preprocessing::Fit::kStretch;
  const Image stretched = ResizeForModel(img, p);
  EXPECT_EQ(stretched.row(10)[0], 0);
  EXPECT_EQ(stretched.row(10)[3 * 19], 255);
  EXPECT_EQ(stretched.row(10)[3 * 4], 0);
  p.fit = Preprocessing::Fit::kCenterCrop;
  const Image cropped = ResizeForModel(img, p);
  EXPECT_EQ(cropped.row(10)[3 * 5], 0);     // source column 35 of 80
  EXPECT_EQ(cropped.row(10)[3 * 15], 255);  // source column 45 of 80
}

TEST(Preprocess, BilinearIsATriangleFilter) {
  // Doubling a two-pixel row with Pillow's BILINEAR: centres at 0.25 and 0.75 of each source pixel
  // weigh their neighbours 3:1, so 0 and 200 become 0, 50, 150, 200 (edges clamp).
  Image img(2, 1);
  img.rgb = {0, 0, 0, 200, 200, 200};
  const Image up = Resize(img, 4, 1, ResampleFilter::kBilinear);
  EXPECT_EQ(up.rgb[0], 0);
  EXPECT_EQ(up.rgb[3], 50);
  EXPECT_EQ(up.rgb[6], 150);
  EXPECT_EQ(up.rgb[9], 200);
  // Bicubic overshoots nothing here but weighs differently.
  EXPECT_NE(Resize(img, 4, 1, ResampleFilter::kBicubic).rgb[3], 50);
}

TEST(Preprocess, NormalisesWithClipsMeanAndStd) {
  Image img(2, 1);
  img.rgb = {0, 0, 0, 255, 255, 255};
  std::vector<float> chw(6);
  Normalize(img, Preprocessing::Clip(2), chw.data());
  EXPECT_NEAR(chw[0], -0.48145466f / 0.26862954f, 1e-6);
  EXPECT_NEAR(chw[1], (1.0f - 0.48145466f) / 0.26862954f, 1e-6);
  EXPECT_NEAR(chw[2], -0.4578275f / 0.26130258f, 1e-6);
  EXPECT_NEAR(chw[5], (1.0f - 0.40821073f) / 0.27577711f, 1e-6);
}

TEST(Preprocess, NormalisesWithTheModelsMeanAndStd) {
  Image img(1, 1);
  img.rgb = {0, 255, 51};
  Preprocessing p = Preprocessing::Clip(1);
  p.mean = {0.5f, 0.5f, 0.5f};
  p.std = {0.5f, 0.5f, 0.5f};
  std::vector<float> chw(3);
  Normalize(img, p, chw.data());
  EXPECT_FLOAT_EQ(chw[0], -1.0f);
  EXPECT_FLOAT_EQ(chw[1], 1.0f);
  EXPECT_NEAR(chw[2], -0.6f, 1e-6);
}

TEST(Preprocess, PreprocessImageReportsBadBytes) {
  std::vector<float> chw(3 * 224 * 224);
  EXPECT_FALSE(PreprocessImage({}, Preprocessing::Clip(224), chw.data()).ok());
  const Bytes png = EncodePng(Gradient(30, 20).rgb.data(), 30, 20, PNG_FORMAT_RGB);
  EXPECT_TRUE(PreprocessImage(png, Preprocessing::Clip(224), chw.data()).ok());
}

TEST(Jpeg, EncodesWhatDecodesBackClosely) {
  const Image img = Quadrants(64, 48);
  auto bytes = EncodeJpeg(img, 95);
  ASSERT_TRUE(bytes.ok());
  const Image d = MustDecode(*bytes);
  ASSERT_EQ(d.width, 64);
  ExpectNear(Pixel(d, 50, 40), {255, 255, 255}, 3, "white quadrant");
  EXPECT_FALSE(EncodeJpeg(Image(), 90).ok());
  EXPECT_FALSE(EncodeJpeg(img, 0).ok());
}

TEST(Jpeg, ScaledDecodeForThumbnailsKeepsBothSidesAboveTheMinimum) {
  const Image img = Quadrants(640, 480);
  auto bytes = EncodeJpeg(img, 95);
  ASSERT_TRUE(bytes.ok());
  struct Case {
    int min_side, width, height;
  };
  for (const Case& c : {Case{0, 640, 480}, Case{100, 160, 120}, Case{130, 320, 240}, Case{60, 80, 60}, Case{10, 80, 60},
                        Case{300, 640, 480}, Case{240, 320, 240}}) {
    DecodeOptions options;
    options.min_side = c.min_side;
    auto d = DecodeImage(*bytes, options);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->image.width, c.width) << "min_side " << c.min_side;
    EXPECT_EQ(d->image.height, c.height) << "min_side " << c.min_side;
    EXPECT_EQ(d->stored_width, c.width);
    EXPECT_EQ(d->width, 640) << "the picture's own size, whatever was decoded";
    EXPECT_EQ(d->height, 480);
    ExpectNear(Pixel(d->image, d->image.width * 3 / 4, d->image.height * 3 / 4), {255, 255, 255}, 4,
               "white quadrant at min_side " + std::to_string(c.min_side));
  }
}

TEST(Webp, ScaledDecodeKeepsBothSidesAboveTheMinimumAndTheSize) {
  const Image img = Quadrants(640, 480);
  const Bytes webp = EncodeWebpLossless(img);
  for (const auto& [min_side, width] : std::vector<std::pair<int, int>>{{0, 640}, {100, 160}, {130, 320}, {10, 80}}) {
    DecodeOptions options;
    options.min_side = min_side;
    auto d = DecodeImage(webp, options);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->image.width, width) << "min_side " << min_side;
    EXPECT_EQ(d->image.height, width * 3 / 4) << "min_side " << min_side;
    EXPECT_EQ(d->width, 640);
    EXPECT_EQ(d->height, 480);
    ExpectNear(Pixel(d->image, d->image.width * 3 / 4, d->image.height * 3 / 4), {255, 255, 255}, 4,
               "white quadrant at min_side " + std::to_string(min_side));
  }
  Bytes truncated = webp;
  truncated.resize(truncated.size() / 2);
  DecodeOptions scaled;
  scaled.min_side = 100;
  EXPECT_FALSE(DecodeImage(truncated, scaled).ok());
}

TEST(Png, WritesWhatItReadsBack) {
  const std::string path = testing::MakeTempDir() + "/out.png";
  const Image img = Gradient(31, 17);
  ASSERT_TRUE(WritePng(img, path).ok());
  auto d = DecodeImageFile(path);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->image.rgb, img.rgb);
  EXPECT_FALSE(WritePng(img, "/nonexistent/dir/x.png").ok());
}

}  // namespace
}  // namespace imgsearch
