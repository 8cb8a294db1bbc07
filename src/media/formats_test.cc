// The formats decoded through other libraries (HEIF/HEIC and AVIF, JPEG XL, camera RAW, animated
// WebP), on files the real encoders write from the golden photographs, each compared with what the
// format's reference decoder makes of the same file: `heif-convert`, `djxl`, `dcraw_emu -w`.
#include <gtest/gtest.h>
#include <lcms2.h>
#include <libheif/heif.h>
#include <png.h>
#include <webp/encode.h>
#include <webp/mux.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "dng_writer.h"
#include "imgsearch/image.h"
#include "media/decoders.h"
#include "media/exif.h"
#include "test_util.h"

// x265, which libheif encodes HEVC with in WriteOrientedHeic, keeps a few buffers for the life of
// the process; libheif 1.15's dav1d plugin leaks a picture reference on a damaged AV1 stream.
extern "C" const char* __lsan_default_suppressions() { return "leak:libx265.so\nleak:libdav1d.so\n"; }

namespace imgsearch {
namespace {

using Bytes = std::vector<uint8_t>;
using testing::RunCommand;

Bytes ReadBytes(const std::string& path) {
  const std::string s = testing::ReadFile(path);
  return {s.begin(), s.end()};
}

DecodedImage MustDecodeFile(const std::string& path, const DecodeOptions& options = {}) {
  auto d = DecodeImageFile(path, options);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return d.ok() ? std::move(*d) : DecodedImage{};
}

// Runs a reference tool; fails the test with its output when it does not succeed.
bool RunTool(std::vector<std::string> argv) {
  argv[0] = "/usr/bin/" + argv[0];  // where Debian installs them (scripts/setup does)
  const testing::CommandResult r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 0) << argv[0] << ": " << r.out << r.err;
  return r.exit_code == 0;
}

struct Difference {
  int max = 0;
  double mean = 0;
};

Difference Compare(const Image& a, const Image& b) {
  Difference d;
  EXPECT_GT(a.width, 0);
  EXPECT_GT(b.width, 0);
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  if (a.width != b.width || a.height != b.height || a.rgb.empty()) return {255, 255};
  double sum = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) {
    const int diff = std::abs(int{a.rgb[i]} - int{b.rgb[i]});
    d.max = std::max(d.max, diff);
    sum += diff;
  }
  d.mean = sum / static_cast<double>(a.rgb.size());
  return d;
}

// The bar for a decoder: the crop the model sees from our decode equals the crop of the
// reference decoder's output within ±3 per channel, 0.5 on average.
void ExpectSameModelCrop(const Image& ours, const Image& reference, const std::string& what) {
  ASSERT_GT(ours.width, 0) << what;
  ASSERT_GT(reference.width, 0) << what;
  const Difference d =
      Compare(ResizeForModel(ours, Preprocessing::Clip(224)), ResizeForModel(reference, Preprocessing::Clip(224)));
  EXPECT_LE(d.max, 3) << what;
  EXPECT_LE(d.mean, 0.5) << what;
}

// A binary PPM (P6) as dcraw_emu and djxl write it; 16-bit samples rounded to 8 bits.
Image ReadPpm(const std::string& path) {
  const std::string s = testing::ReadFile(path);
  int w = 0, h = 0, max = 0, consumed = 0;
  if (std::sscanf(s.c_str(), "P6 %d %d %d%n", &w, &h, &max, &consumed) != 3 || (max != 255 && max != 65535)) {
    return {};
  }
  Image img(w, h);
  const size_t start = static_cast<size_t>(consumed) + 1;
  const size_t bytes_per_sample = max == 255 ? 1 : 2;
  if (s.size() < start + img.rgb.size() * bytes_per_sample) return {};
  const auto* p = reinterpret_cast<const uint8_t*>(s.data() + start);
  for (size_t i = 0; i < img.rgb.size(); ++i) {
    img.rgb[i] =
        bytes_per_sample == 1 ? p[i] : static_cast<uint8_t>(((p[2 * i] << 8 | p[2 * i + 1]) * 255 + 32767) / 65535);
  }
  return img;
}

// A 16-bit RGB PNG whose samples are the 8-bit image's scaled to 16 bits plus a little detail in
// the low byte, so that the encoders store more than 8 bits.
void WritePng16(const Image& img, const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_set_IHDR(png, info, img.width, img.height, 16, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  std::vector<uint8_t> row(static_cast<size_t>(img.width) * 6);
  for (int y = 0; y < img.height; ++y) {
    for (int i = 0; i < img.width * 3; ++i) {
      const int v = img.row(y)[i] * 257 + ((i + y) % 97) - 48;
      const uint16_t s = static_cast<uint16_t>(std::clamp(v, 0, 65535));
      row[2 * i] = static_cast<uint8_t>(s >> 8);
      row[2 * i + 1] = static_cast<uint8_t>(s & 0xFF);
    }
    png_write_row(png, row.data());
  }
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  std::fclose(f);
}

// Camera RAW files: tools/dng_writer.h.
using tools::DngOptions;
using tools::MakeDng;

class Formats : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTempDir(); }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir_;
};

TEST_F(Formats, HeicAndAvifMatchLibheifsOwnDecode) {
  REQUIRE_GOLDEN(golden);
  // PNG sources are rewritten without their colour profile: heif-convert cannot write a PNG with
  // astronaut.png's (libpng refuses it as "known incorrect").
  ASSERT_TRUE(WritePng(MustDecodeFile(golden + "/images/astronaut.png").image, Path("astronaut.png")).ok());
  ASSERT_TRUE(WritePng(MustDecodeFile(golden + "/images/camera.png").image, Path("camera.png")).ok());
  for (const std::string& source : {golden + "/images/rocket.jpg", Path("astronaut.png"), Path("camera.png")}) {
    const std::string name = std::filesystem::path(source).filename();
    for (const bool avif : {false, true}) {
      const std::string out = Path(name + (avif ? ".avif" : ".heic"));
      std::vector<std::string> enc = {"heif-enc", "-q", "90", "-o", out, source};
      if (avif) enc.insert(enc.begin() + 1, "-A");
      if (!RunTool(enc)) continue;
      ASSERT_TRUE(RunTool({"heif-convert", out, out + ".png"}));
      const DecodedImage ours = MustDecodeFile(out);
      EXPECT_EQ(ours.format, avif ? ImageFormat::kAvif : ImageFormat::kHeif) << out;
      ExpectSameModelCrop(ours.image, MustDecodeFile(out + ".png").image, out);
      // And it is the photograph (lossy, so only close).
      const Image original = MustDecodeFile(source).image;
      EXPECT_LE(Compare(ours.image, original).mean, 6.0) << out;
    }
  }
}

// Encodes `picture` as HEVC through libheif's API with the orientation written as HEIF's own
// transformation boxes (irot, imir), as phones write their photos.
// `pictures` encoded as HEVC through libheif's API, the first the primary image, with the
// orientation written as HEIF's own transformation boxes (irot, imir), as phones write their
// photos; `thumbnail_of_first` makes the second picture the first's thumbnail (whatever its size).
void WriteHeic(const std::vector<Image>& pictures, int orientation, const std::string& path,
               bool thumbnail_of_first = false) {
  heif_context* ctx = heif_context_alloc();
  heif_encoder* encoder = nullptr;
  ASSERT_EQ(heif_context_get_encoder_for_format(ctx, heif_compression_HEVC, &encoder).code, heif_error_Ok);
  heif_encoder_set_lossy_quality(encoder, 92);
  heif_encoding_options* options = heif_encoding_options_alloc();
  options->image_orientation = static_cast<heif_orientation>(orientation);
  std::vector<heif_image_handle*> handles;
  for (const Image& picture : pictures) {
    heif_image* image = nullptr;
    ASSERT_EQ(
        heif_image_create(picture.width, picture.height, heif_colorspace_RGB, heif_chroma_interleaved_RGB, &image).code,
        heif_error_Ok);
    heif_image_add_plane(image, heif_channel_interleaved, picture.width, picture.height, 8);
    int stride = 0;
    uint8_t* plane = heif_image_get_plane(image, heif_channel_interleaved, &stride);
    for (int y = 0; y < picture.height; ++y) std::memcpy(plane + y * stride, picture.row(y), 3 * size_t(picture.width));
    heif_image_handle* handle = nullptr;
    EXPECT_EQ(heif_context_encode_image(ctx, image, encoder, options, &handle).code, heif_error_Ok);
    handles.push_back(handle);
    heif_image_release(image);
  }
  if (thumbnail_of_first) {
    EXPECT_EQ(heif_context_assign_thumbnail(ctx, handles[0], handles[1]).code, heif_error_Ok);
  }
  EXPECT_EQ(heif_context_write_to_file(ctx, path.c_str()).code, heif_error_Ok);
  for (heif_image_handle* h : handles) heif_image_handle_release(h);
  heif_encoding_options_free(options);
  heif_encoder_release(encoder);
  heif_context_free(ctx);
}

TEST_F(Formats, HeifTransformationsAreAppliedAndExifOrientationIgnored) {
  REQUIRE_GOLDEN(golden);
  DecodeOptions stored;
  stored.apply_exif_orientation = false;
  const Image sensor = MustDecodeFile(golden + "/images/chelsea_exif6.jpg", stored).image;
  for (const int orientation : {3, 6, 8, 2}) {
    const std::string out = Path("oriented" + std::to_string(orientation) + ".heic");
    WriteHeic({sensor}, orientation, out);
    ASSERT_TRUE(RunTool({"heif-convert", out, out + ".png"}));
    const DecodedImage ours = MustDecodeFile(out);
    ExpectSameModelCrop(ours.image, MustDecodeFile(out + ".png").image, out);
    EXPECT_EQ(ours.width, ours.image.width);
    // The same turn as the same EXIF orientation gives.
    EXPECT_LE(Compare(ours.image, media::ApplyOrientation(sensor, orientation)).mean, 6.0) << out;
  }
  // heif-enc 1.15 copies a JPEG's EXIF (orientation 6 here) without turning it into HEIF boxes:
  // the HEIF rule is that EXIF orientation is ignored, and libheif's own decode shows it unturned.
  const std::string out = Path("exif6.heic");
  ASSERT_TRUE(RunTool({"heif-enc", "-q", "92", "-o", out, golden + "/images/chelsea_exif6.jpg"}));
  ASSERT_TRUE(RunTool({"heif-convert", out, out + ".png"}));
  const DecodedImage ours = MustDecodeFile(out);
  EXPECT_EQ(ours.image.width, sensor.width);
  // (heif-convert copies the EXIF into its PNG: read that PNG as stored.)
  ExpectSameModelCrop(ours.image, MustDecodeFile(out + ".png", stored).image, out);
}

TEST_F(Formats, DeepHeicIsBroughtToEightBits) {
  REQUIRE_GOLDEN(golden);
  const Image picture = MustDecodeFile(golden + "/images/astronaut.png").image;
  WritePng16(picture, Path("deep.png"));
  ASSERT_GT(picture.width, 0);
  for (const char* bits : {"10", "12"}) {
    const std::string out = Path(std::string("deep") + bits + ".heic");
    ASSERT_TRUE(RunTool({"heif-enc", "-b", bits, "-q", "95", "-o", out, Path("deep.png")}));
    const testing::CommandResult info = RunCommand({"/usr/bin/heif-info", out});
    const DecodedImage ours = MustDecodeFile(out);
    EXPECT_LE(Compare(ours.image, picture).mean, 4.0) << out << "\n" << info.out;
  }
}

// HEVC is decoded by FFmpeg (media/heif_hevc.cc), which must give exactly libde265's samples:
// `heif-convert` (another process, where libheif has only libde265) is the reference. Same size
// (the conformance window of odd sizes), chroma layouts, bit depths, grey, turned pictures, and
// lossless RGB-coded ones (matrix 0, which FFmpeg names "gbrp").
TEST_F(Formats, HevcDecodedByFfmpegEqualsLibde265) {
  REQUIRE_GOLDEN(golden);
  { const media::ScopedHevcPixelLimit registered(DecodeOptions{}.max_pixels); }
  const heif_decoder_descriptor* decoders[8] = {};
  const int n = heif_get_decoder_descriptors(heif_compression_HEVC, decoders, 8);
  ASSERT_GE(n, 2) << "libde265 and FFmpeg";
  EXPECT_STREQ(heif_decoder_descriptor_get_id_name(decoders[0]), "imgsearch-ffmpeg-hevc");

  const Image rocket = MustDecodeFile(golden + "/images/rocket.jpg").image;
  const Image odd = Resize(rocket, 333, 251);
  ASSERT_TRUE(WritePng(odd, Path("odd.png")).ok());
  WritePng16(MustDecodeFile(golden + "/images/astronaut.png").image, Path("deep.png"));
  struct Case {
    std::vector<std::string> encode;
    bool deep = false;
  };
  const std::vector<Case> cases = {
      {{"heif-enc", "-q", "50", "-o", Path("rocket.heic"), golden + "/images/rocket.jpg"}},
      {{"heif-enc", "-q", "80", "-o", Path("odd.heic"), Path("odd.png")}},
      {{"heif-enc", "-q", "80", "-o", Path("grey.heic"), golden + "/images/camera.png"}},  // an 8-bit grey PNG
      {{"heif-enc", "-q", "80", "-p", "chroma=444", "-o", Path("full-chroma.heic"), Path("odd.png")}},
      {{"heif-enc", "-L", "-p", "chroma=444", "--matrix_coefficients=0", "-o", Path("lossless.heic"), Path("odd.png")}},
      {{"heif-enc", "-b", "10", "-q", "90", "-o", Path("deep10.heic"), Path("deep.png")}, true},
      {{"heif-enc", "-b", "12", "-q", "90", "-o", Path("deep12.heic"), Path("deep.png")}, true},
  };
  std::vector<std::pair<std::string, bool>> files;
  for (const Case& c : cases) {
    if (RunTool(c.encode)) files.emplace_back(c.encode[c.encode.size() - 2], c.deep);
  }
  WriteHeic({rocket}, 6, Path("turned.heic"));
  files.emplace_back(Path("turned.heic"), false);
  DecodeOptions stored;  // heif-convert copies a file's EXIF into its PNG: read that as stored
  stored.apply_exif_orientation = false;
  for (const auto& [file, deep] : files) {
    ASSERT_TRUE(RunTool({"heif-convert", file, file + ".png"}));
    const Image ours = MustDecodeFile(file).image;
    // 10 and 12 bits reach 8 through heif-convert's 16-bit PNG, rounded twice.
    EXPECT_LE(Compare(ours, MustDecodeFile(file + ".png", stored).image).max, deep ? 1 : 0) << file;
  }
  // And the RGB-coded one is the picture (libheif 1.15's own round trip rounds by at most 1).
  EXPECT_LE(Compare(MustDecodeFile(Path("lossless.heic")).image, odd).max, 1);
}

TEST_F(Formats, HeifThumbnailStandsInOnlyWhenLargeEnough) {
  REQUIRE_GOLDEN(golden);
  const std::string out = Path("thumb.heic");
  ASSERT_TRUE(RunTool({"heif-enc", "-t", "480", "-q", "90", "-o", out, golden + "/images/rocket.jpg"}));
  DecodeOptions small;
  small.preview_min_side = 300;
  const DecodedImage thumb = MustDecodeFile(out, small);
  EXPECT_EQ(thumb.image.width, 480);
  EXPECT_EQ(thumb.width, 640);  // the picture's own size is still reported
  DecodeOptions large;
  large.preview_min_side = 400;
  EXPECT_EQ(MustDecodeFile(out, large).image.width, 640);
  EXPECT_EQ(MustDecodeFile(out).image.width, 640);
  // A crafted "thumbnail" larger than its picture (or past the pixel limit) is never decoded instead.
  const Image astronaut = MustDecodeFile(golden + "/images/astronaut.png").image;
  WriteHeic({Resize(astronaut, 64, 64), astronaut}, 1, Path("fake-thumb.heic"), /*thumbnail_of_first=*/true);
  DecodeOptions any_preview;
  any_preview.preview_min_side = 32;
  const DecodedImage fake = MustDecodeFile(Path("fake-thumb.heic"), any_preview);
  EXPECT_EQ(fake.image.width, 64);
  EXPECT_EQ(fake.width, 64);
}

TEST_F(Formats, JpegXlMatchesDjxlAtEveryDepth) {
  REQUIRE_GOLDEN(golden);
  const Image picture = MustDecodeFile(golden + "/images/astronaut.png").image;
  WritePng16(picture, Path("deep.png"));
  // 8-bit lossless and lossy, 16-bit, and a lossless JPEG transcode that keeps EXIF orientation 6.
  struct Case {
    std::string source, name;
    std::vector<std::string> flags;
  };
  const std::vector<Case> cases = {{golden + "/images/astronaut.png", "lossless.jxl", {"-d", "0"}},
                                   {golden + "/images/coffee.png", "lossy.jxl", {"-d", "1"}},
                                   {Path("deep.png"), "deep.jxl", {"-d", "0"}},
                                   {golden + "/images/chelsea_exif6.jpg", "transcoded.jxl", {}}};
  for (const Case& c : cases) {
    const std::string out = Path(c.name);
    std::vector<std::string> argv = {"cjxl", c.source, out};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    ASSERT_TRUE(RunTool(argv));
    ASSERT_TRUE(RunTool({"djxl", out, out + ".ppm"}));
    const DecodedImage ours = MustDecodeFile(out);
    EXPECT_EQ(ours.format, ImageFormat::kJxl);
    ExpectSameModelCrop(ours.image, ReadPpm(out + ".ppm"), out);
  }
  const DecodedImage turned = MustDecodeFile(Path("transcoded.jxl"));
  const DecodedImage upright = MustDecodeFile(golden + "/images/chelsea_exif6.jpg");
  EXPECT_EQ(turned.orientation, 6);
  // libjxl's own inverse DCT and upsampling, not libjpeg's: close, not identical.
  EXPECT_LE(Compare(turned.image, upright.image).max, 4) << "a lossless transcode decodes to the same picture";
  DecodeOptions stored;
  stored.apply_exif_orientation = false;
  EXPECT_EQ(MustDecodeFile(Path("transcoded.jxl"), stored).image.width, upright.image.height);
}

TEST_F(Formats, LossyJpegXlWithAColourProfileComesOutInSrgb) {
  // A PNG carrying a wide-gamut ICC profile (Display P3 primaries, gamma 2.2), encoded lossily: cjxl
  // keeps the profile, and libjxl gives linear light for such a file unless asked for sRGB.
  cmsCIExyY white = {0.3127, 0.3290, 1.0};
  cmsCIExyYTRIPLE primaries = {{0.680, 0.320, 1.0}, {0.265, 0.690, 1.0}, {0.150, 0.060, 1.0}};
  cmsToneCurve* gamma = cmsBuildGamma(nullptr, 2.2);
  cmsToneCurve* curves[3] = {gamma, gamma, gamma};
  cmsHPROFILE profile = cmsCreateRGBProfile(&white, &primaries, curves);
  cmsUInt32Number icc_size = 0;
  cmsSaveProfileToMem(profile, nullptr, &icc_size);
  std::vector<uint8_t> icc(icc_size);
  cmsSaveProfileToMem(profile, icc.data(), &icc_size);
  cmsCloseProfile(profile);
  cmsFreeToneCurve(gamma);
  Image picture(256, 256);
  for (int y = 0; y < 256; ++y) {
    for (int x = 0; x < 256; ++x) {
      uint8_t* p = picture.row(y) + 3 * x;
      p[0] = static_cast<uint8_t>(x), p[1] = 128, p[2] = static_cast<uint8_t>(y);
    }
  }
  FILE* f = std::fopen(Path("p3.png").c_str(), "wb");
  ASSERT_NE(f, nullptr);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_set_IHDR(png, info, 256, 256, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_set_iCCP(png, info, "P3", 0, icc.data(), icc_size);
  png_write_info(png, info);
  for (int y = 0; y < 256; ++y) png_write_row(png, picture.row(y));
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  std::fclose(f);
  ASSERT_TRUE(RunTool({"cjxl", Path("p3.png"), Path("p3.jxl"), "-d", "1"}));
  // In sRGB the mid-gray green channel stays near the middle (linear light would put it near 56).
  const Image decoded = MustDecodeFile(Path("p3.jxl")).image;
  ASSERT_EQ(decoded.width, 256);
  EXPECT_NEAR(decoded.row(128)[3 * 128 + 1], 128, 30);
  EXPECT_LE(Compare(decoded, picture).mean, 20.0);
}

TEST_F(Formats, FloatJpegXl) {
  // A PFM (32-bit float) gradient, encoded losslessly as float samples.
  const int w = 64, h = 48;
  std::string pfm = "PF\n" + std::to_string(w) + " " + std::to_string(h) + "\n-1.0\n";
  Image expected(w, h);
  for (int y = h - 1; y >= 0; --y) {  // PFM rows run bottom to top
    for (int x = 0; x < w; ++x) {
      const float rgb[3] = {x / float(w - 1), y / float(h - 1), 0.5f};
      pfm.append(reinterpret_cast<const char*>(rgb), sizeof(rgb));
    }
  }
  testing::WriteFile(Path("float.pfm"), pfm);
  ASSERT_TRUE(RunTool({"cjxl", Path("float.pfm"), Path("float.jxl"), "-d", "0"}));
  ASSERT_TRUE(RunTool({"djxl", Path("float.jxl"), Path("out.pfm")}));
  // djxl's float samples (a PFM: rows bottom to top, big-endian when the scale is positive), rounded
  // to 8 bits.
  const std::string out = testing::ReadFile(Path("out.pfm"));
  int rw = 0, rh = 0, consumed = 0;
  float scale = 0;
  ASSERT_EQ(std::sscanf(out.c_str(), "PF %d %d %f%n", &rw, &rh, &scale, &consumed), 3);
  ASSERT_EQ(out.size(), static_cast<size_t>(consumed) + 1 + size_t(rw) * rh * 12);
  Image reference(rw, rh);
  for (int y = 0; y < rh; ++y) {
    for (int i = 0; i < rw * 3; ++i) {
      float v;
      uint8_t b[4];
      std::memcpy(b, out.data() + consumed + 1 + (size_t(rh - 1 - y) * rw * 3 + i) * 4, 4);
      if (scale > 0) std::swap(b[0], b[3]), std::swap(b[1], b[2]);
      std::memcpy(&v, b, 4);
      reference.row(y)[i] = static_cast<uint8_t>(std::lround(std::clamp(v, 0.0f, 1.0f) * 255));
    }
  }
  const Difference d = Compare(MustDecodeFile(Path("float.jxl")).image, reference);
  EXPECT_LE(d.max, 3);
  EXPECT_LE(d.mean, 0.5);
}

TEST_F(Formats, DngIsDevelopedAsDcrawEmuDevelopsIt) {
  REQUIRE_GOLDEN(golden);
  const Image picture = MustDecodeFile(golden + "/images/astronaut.png").image;
  for (const int orientation : {1, 6}) {
    const std::string out = Path("camera" + std::to_string(orientation) + ".dng");
    testing::WriteFile(out, [&] {
      const Bytes b = MakeDng(picture, {.orientation = orientation});
      return std::string(b.begin(), b.end());
    }());
    ASSERT_TRUE(RunTool({"dcraw_emu", "-w", out}));
    const Image reference = ReadPpm(out + ".ppm");
    ASSERT_GT(reference.width, 0) << "cannot read " << out << ".ppm";
    const DecodedImage ours = MustDecodeFile(out);
    EXPECT_EQ(ours.format, ImageFormat::kRaw);
    const Difference d = Compare(ours.image, reference);
    EXPECT_LE(d.mean, 12.0) << out;
    if (orientation == 1) {
      EXPECT_LE(Compare(ours.image, picture).mean, 40.0) << "the developed DNG is the picture";
    }
  }
  // Turned as the file says: a quarter turn swaps the sides.
  EXPECT_EQ(MustDecodeFile(Path("camera6.dng")).image.width, MustDecodeFile(Path("camera1.dng")).image.height);
}

TEST_F(Formats, RawPreviewStandsInWhenLargeEnoughForTheModel) {
  REQUIRE_GOLDEN(golden);
  const Image picture = MustDecodeFile(golden + "/images/astronaut.png").image;  // 512 × 512
  for (const int side : {480, 320}) {
    auto jpeg = EncodeJpeg(Resize(picture, side, side), 92);
    ASSERT_TRUE(jpeg.ok());
    const Bytes dng =
        MakeDng(picture, {.orientation = 6, .preview_jpeg = *jpeg, .preview_width = side, .preview_height = side});
    auto full = DecodeImage(dng);
    ASSERT_TRUE(full.ok()) << full.status().ToString();
    EXPECT_EQ(full->image.width, 512) << "developed from the sensor data";
    auto for_model = DecodeImage(dng, ForModelInput({}, Preprocessing::Clip(224)));
    ASSERT_TRUE(for_model.ok()) << for_model.status().ToString();
    // The preview when its shorter side is at least twice the model's input, turned as the raw image.
    EXPECT_EQ(for_model->image.width, side >= 448 ? side : 512) << side;
    EXPECT_EQ(for_model->width, 512);
    EXPECT_EQ(for_model->orientation, side >= 448 ? 6 : 1);
    EXPECT_LE(Compare(ResizeForModel(for_model->image, Preprocessing::Clip(224)),
                      ResizeForModel(full->image, Preprocessing::Clip(224)))
                  .mean,
              40.0);
  }
}

TEST_F(Formats, DetectedByContentNeverByName) {
  REQUIRE_GOLDEN(golden);
  ASSERT_TRUE(RunTool({"heif-enc", "-q", "50", "-o", Path("a.heic"), golden + "/images/rocket.jpg"}));
  ASSERT_TRUE(RunTool({"cjxl", golden + "/images/coffee_tiny.png", Path("a.jxl")}));
  std::filesystem::rename(Path("a.heic"), Path("really-a-heic.jpg"));
  std::filesystem::rename(Path("a.jxl"), Path("really-a-jxl.png"));
  EXPECT_EQ(MustDecodeFile(Path("really-a-heic.jpg")).format, ImageFormat::kHeif);
  EXPECT_EQ(MustDecodeFile(Path("really-a-jxl.png")).format, ImageFormat::kJxl);
  const Bytes dng = MakeDng(Image(8, 8));
  EXPECT_EQ(DetectImageFormat(dng), ImageFormat::kRaw);
  EXPECT_STREQ(ImageFormatName(ImageFormat::kRaw), "raw");
  EXPECT_FALSE(BrowserDisplays("heif"));
  EXPECT_FALSE(BrowserDisplays("raw"));
  EXPECT_TRUE(BrowserDisplays("avif"));
}

// ---- bad input ----

// Rewrites every "ispe" box (an item's declared size) of a HEIF file: heif-enc writes a grid
// holding one tile, each with its own.
void SetIspe(Bytes* heif, uint32_t width, uint32_t height) {
  const std::string_view s(reinterpret_cast<const char*>(heif->data()), heif->size());
  int found = 0;
  for (size_t at = s.find("ispe"); at != std::string_view::npos && at + 16 <= s.size(); at = s.find("ispe", at + 4)) {
    ++found;
    for (int i = 0; i < 4; ++i) {
      (*heif)[at + 8 + i] = static_cast<uint8_t>(width >> (24 - 8 * i));
      (*heif)[at + 12 + i] = static_cast<uint8_t>(height >> (24 - 8 * i));
    }
  }
  EXPECT_GT(found, 0);
}

TEST_F(Formats, HugeDeclaredSizesAreRefusedBeforeAllocating) {
  REQUIRE_GOLDEN(golden);
  ASSERT_TRUE(RunTool({"heif-enc", "-q", "50", "-o", Path("a.heic"), golden + "/images/rocket.jpg"}));
  Bytes heic = ReadBytes(Path("a.heic"));
  SetIspe(&heic, 60000, 60000);
  auto r = DecodeImage(heic);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();

  // A picture larger than its declared size: the HEVC decoder holds it to the limit before
  // allocating it.
  heic = ReadBytes(Path("a.heic"));
  SetIspe(&heic, 64, 64);
  DecodeOptions small_limit;
  small_limit.max_pixels = 100'000;  // above 64×64, below the stream's 640×427
  r = DecodeImage(heic, small_limit);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().ToString().find("more than the limit of 100000 pixels"), std::string::npos)
      << r.status().ToString();

  // A DNG declaring a 3.6-gigapixel sensor over a few bytes of data.
  const Bytes dng = MakeDng(Image(8, 8), {.declared_width = 60000, .declared_height = 60000});
  r = DecodeImage(dng);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().ToString().find("camera RAW"), std::string::npos) << r.status().ToString();

  // The megapixel limit applies to every format.
  DecodeOptions tight;
  tight.max_pixels = 10'000;
  for (const Bytes& file : {ReadBytes(Path("a.heic")), MakeDng(MustDecodeFile(golden + "/images/coffee.png").image)}) {
    r = DecodeImage(file, tight);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
  }
}

TEST_F(Formats, DamagedFilesFailWithTheDecodersReason) {
  REQUIRE_GOLDEN(golden);
  ASSERT_TRUE(RunTool({"heif-enc", "-q", "50", "-o", Path("a.heic"), golden + "/images/rocket.jpg"}));
  ASSERT_TRUE(RunTool({"heif-enc", "-A", "-q", "50", "-o", Path("a.avif"), golden + "/images/rocket.jpg"}));
  ASSERT_TRUE(RunTool({"cjxl", golden + "/images/rocket.jpg", Path("a.jxl")}));
  const Bytes dng = MakeDng(MustDecodeFile(golden + "/images/coffee.png").image);
  for (const Bytes& file : {ReadBytes(Path("a.heic")), ReadBytes(Path("a.avif")), ReadBytes(Path("a.jxl")), dng}) {
    const ImageFormat format = DetectImageFormat(file);
    for (const double keep : {0.02, 0.5, 0.9}) {
      const Bytes cut(file.begin(), file.begin() + static_cast<ptrdiff_t>(file.size() * keep));
      auto r = DecodeImage(cut);
      if (format == ImageFormat::kRaw && keep > 0.5) continue;  // libraw reads a short strip as black rows
      EXPECT_FALSE(r.ok()) << ImageFormatName(format) << " cut to " << keep;
      if (!r.ok()) {
        EXPECT_FALSE(r.status().message().empty());
      }
    }
    // Flipped bytes: an error or an image, never a crash.
    std::mt19937 rng(7);
    for (int round = 0; round < 30; ++round) {
      Bytes damaged = file;
      for (int i = 0; i < 8; ++i) damaged[rng() % damaged.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
      (void)DecodeImage(damaged);
    }
  }
}

// An animated PNG (APNG, as the ffmpeg command writes it: the first frame is also the picture
// every PNG reader sees) is its first frame.
TEST_F(Formats, AnimatedPngIsItsFirstFrame) {
  for (int frame = 0; frame < 3; ++frame) {
    Image img(32, 24);
    for (size_t i = 0; i < img.rgb.size(); i += 3) img.rgb[i + (frame == 0 ? 0 : 2)] = 255;  // red, then blue
    ASSERT_TRUE(WritePng(img, Path("frame" + std::to_string(frame) + ".png")).ok());
  }
  ASSERT_TRUE(RunTool({"ffmpeg", "-nostdin", "-v", "error", "-framerate", "2", "-i", Path("frame%d.png"), "-plays", "0",
                       "-f", "apng", Path("animated.png")}));
  const Bytes file = ReadBytes(Path("animated.png"));
  const std::string chunks(file.begin(), file.end());
  ASSERT_NE(chunks.find("acTL"), std::string::npos) << "not animated: the test proves nothing";
  ASSERT_NE(chunks.find("fdAT"), std::string::npos) << "one frame only: the test proves nothing";
  const DecodedImage d = MustDecodeFile(Path("animated.png"));
  EXPECT_EQ(d.format, ImageFormat::kPng);
  ASSERT_EQ(d.image.width, 32);
  ASSERT_EQ(d.image.height, 24);
  for (size_t i = 0; i < d.image.rgb.size(); i += 3) {
    ASSERT_EQ(d.image.rgb[i], 255) << i;
    ASSERT_EQ(d.image.rgb[i + 2], 0) << i;
  }
}

// An animated PNG written chunk by chunk (no encoder at hand writes one whose default image is not
// part of its animation): a red default image, then a blue first frame; or, with `default_is_frame`,
// the red default image as frame 0 and the blue one after it. Frames blend as `blend_op` says
// (0: source; 1: over, which FFmpeg's demuxer does not count as a key frame). An eXIf chunk with
// orientation 6 comes before the image data.
Bytes HandWrittenApng(bool default_is_frame, uint8_t blend_op) {
  const uint32_t w = 32, h = 24;
  const auto be32 = [](Bytes* out, uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<uint8_t>(v >> shift));
  };
  const auto chunk = [&](Bytes* out, const char* type, const Bytes& data) {
    be32(out, static_cast<uint32_t>(data.size()));
    Bytes typed(type, type + 4);
    typed.insert(typed.end(), data.begin(), data.end());
    out->insert(out->end(), typed.begin(), typed.end());
    be32(out, static_cast<uint32_t>(crc32(0, typed.data(), static_cast<uInt>(typed.size()))));
  };
  const auto compressed = [&](uint8_t r, uint8_t g, uint8_t b) {
    Bytes raw;
    for (uint32_t y = 0; y < h; ++y) {
      raw.push_back(0);  // filter: none
      for (uint32_t x = 0; x < w; ++x) raw.insert(raw.end(), {r, g, b});
    }
    uLongf n = compressBound(raw.size());
    Bytes z(n);
    EXPECT_EQ(compress(z.data(), &n, raw.data(), raw.size()), Z_OK);
    z.resize(n);
    return z;
  };
  const auto frame_control = [&](uint32_t sequence) {
    Bytes f;
    for (uint32_t v : {sequence, w, h, 0u, 0u}) be32(&f, v);  // sequence, size, offset
    f.insert(f.end(), {0, 1, 0, 10, 0, blend_op});            // 1/10 s; dispose none
    return f;
  };
  Bytes ihdr, actl;
  for (uint32_t v : {w, h}) be32(&ihdr, v);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit RGB
  be32(&actl, default_is_frame ? 2 : 1);     // frames
  be32(&actl, 0);                            // plays: forever
  Bytes fdat;
  be32(&fdat, default_is_frame ? 2 : 1);
  const Bytes blue = compressed(0, 0, 255);
  fdat.insert(fdat.end(), blue.begin(), blue.end());

  Bytes file = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  chunk(&file, "IHDR", ihdr);
  chunk(&file, "acTL", actl);
  // A big-endian TIFF block, IFD0 at 8 with one entry: Orientation (0x0112, SHORT, 1) = 6.
  chunk(&file, "eXIf", {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0});
  if (default_is_frame) chunk(&file, "fcTL", frame_control(0));
  chunk(&file, "IDAT", compressed(255, 0, 0));
  chunk(&file, "fcTL", frame_control(default_is_frame ? 1 : 0));
  chunk(&file, "fdAT", fdat);
  chunk(&file, "IEND", {});
  return file;
}

TEST(AnimatedPng, DefaultImageOutsideTheAnimationGivesTheFirstFrame) {
  for (const auto& [default_is_frame, blend_op] : {std::pair{false, 0}, {false, 1}, {true, 0}, {true, 1}}) {
    SCOPED_TRACE(std::string(default_is_frame ? "default image is frame 0" : "default image outside the animation") +
                 ", blend_op " + std::to_string(blend_op));
    const Bytes file = HandWrittenApng(default_is_frame, static_cast<uint8_t>(blend_op));
    auto d = DecodeImage(file);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->format, ImageFormat::kPng);
    EXPECT_EQ(d->orientation, 6);   // the eXIf chunk, whichever decoder read the pixels
    ASSERT_EQ(d->image.width, 24);  // 32×24 stored, turned a quarter by the orientation
    ASSERT_EQ(d->image.height, 32);
    // Browsers show the animation: its frame 0 is the default image only when a fcTL precedes IDAT.
    const uint8_t red = default_is_frame ? 255 : 0, blue = default_is_frame ? 0 : 255;
    for (size_t i = 0; i < d->image.rgb.size(); i += 3) {
      ASSERT_EQ(d->image.rgb[i], red) << i;
      ASSERT_EQ(d->image.rgb[i + 2], blue) << i;
    }
  }
}

TEST(AnimatedWebp, FirstFrameIsThePicture) {
  // Two frames: red, then blue.
  WebPAnimEncoderOptions anim_options;
  ASSERT_TRUE(WebPAnimEncoderOptionsInit(&anim_options));
  WebPAnimEncoder* enc = WebPAnimEncoderNew(32, 24, &anim_options);
  ASSERT_NE(enc, nullptr);
  WebPConfig config;
  ASSERT_TRUE(WebPConfigInit(&config));
  config.lossless = 1;
  for (int frame = 0; frame < 2; ++frame) {
    WebPPicture pic;
    ASSERT_TRUE(WebPPictureInit(&pic));
    pic.width = 32;
    pic.height = 24;
    pic.use_argb = 1;
    ASSERT_TRUE(WebPPictureAlloc(&pic));
    for (int i = 0; i < 32 * 24; ++i) pic.argb[i] = frame == 0 ? 0xFFFF0000u : 0xFF0000FFu;
    ASSERT_TRUE(WebPAnimEncoderAdd(enc, &pic, frame * 100, &config));
    WebPPictureFree(&pic);
  }
  WebPAnimEncoderAdd(enc, nullptr, 200, nullptr);
  WebPData data;
  WebPDataInit(&data);
  ASSERT_TRUE(WebPAnimEncoderAssemble(enc, &data));
  WebPAnimEncoderDelete(enc);
  const Bytes file(data.bytes, data.bytes + data.size);
  WebPDataClear(&data);
  auto d = DecodeImage(file);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->image.width, 32);
  EXPECT_EQ(d->image.rgb[0], 255);
  EXPECT_EQ(d->image.rgb[2], 0);
}

}  // namespace
}  // namespace imgsearch
