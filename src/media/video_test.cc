// Videos: detection, probing, sampling by time and at scene changes, frames at a time, rotation,
// scaling and bad input, on videos the ffmpeg command makes from slides this test draws (skipped
// when ffmpeg is not installed).
#include "imgsearch/video.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include <unistd.h>

#include "base/file.h"
#include "test_util.h"

namespace imgsearch {
namespace {

namespace fs = std::filesystem;

// Four slides, each shown for kSlideSeconds (60 frames at 25 fps): cuts at 2.4, 4.8 and 7.2 s of a
// 9.6 s video. Each is a colour under its own noise, so that a cut costs an encoder a whole new
// picture (x264 then puts a key frame there, as at a cut in real footage) and the mean colours
// differ by more than the default scene threshold.
constexpr double kSlideSeconds = 2.4;
constexpr double kDuration = 9.6;
constexpr int kSlides = 4;
constexpr uint8_t kSlideColours[kSlides][3] = {{200, 40, 40}, {40, 190, 40}, {40, 40, 200}, {215, 215, 215}};
constexpr int kWidth = 320, kHeight = 240;

Image Slide(int i) {
  Image img(kWidth, kHeight);
  std::mt19937 rng(i);
  for (size_t p = 0; p < img.rgb.size(); p += 3) {
    const int noise = static_cast<int>(rng() % 61) - 30;
    for (int c = 0; c < 3; ++c) img.rgb[p + c] = static_cast<uint8_t>(std::clamp(kSlideColours[i][c] + noise, 0, 255));
  }
  return img;
}

std::array<double, 3> MeanColour(const Image& image) {
  std::array<double, 3> sum{};
  for (size_t p = 0; p < image.rgb.size(); p += 3) {
    for (int c = 0; c < 3; ++c) sum[c] += image.rgb[p + c];
  }
  for (double& v : sum) v /= static_cast<double>(image.rgb.size() / 3);
  return sum;
}

// Runs ffmpeg quietly; fails the test with its stderr when it fails.
bool Ffmpeg(const std::string& ffmpeg, std::vector<std::string> args) {
  args.insert(args.begin(), {ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"});
  const testing::CommandResult r = testing::RunCommand(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0;
}

std::vector<uint8_t> Bytes(const std::string& path) {
  auto bytes = ReadFileBytes(path);
  EXPECT_TRUE(bytes.ok()) << path;
  return bytes.ok() ? *bytes : std::vector<uint8_t>{};
}

int SlideAt(double t) { return std::clamp(static_cast<int>(t / kSlideSeconds), 0, kSlides - 1); }

// The mean colour is the slide's, within what YUV 4:2:0 and lossy codecs change.
::testing::AssertionResult ShowsSlide(const Image& image, int slide) {
  const std::array<double, 3> mean = MeanColour(image);
  for (int c = 0; c < 3; ++c) {
    if (std::abs(mean[c] - kSlideColours[slide][c]) > 12) {
      return ::testing::AssertionFailure()
             << "mean colour (" << mean[0] << "," << mean[1] << "," << mean[2] << ") is not slide " << slide << "'s";
    }
  }
  return ::testing::AssertionSuccess();
}

struct Sampled {
  VideoInfo info;
  std::vector<VideoFrame> frames;
};

Sampled Sample(const VideoSource& source, const VideoOptions& options = {}) {
  Sampled out;
  auto info = SampleVideo(source, options, [&](VideoFrame frame) {
    out.frames.push_back(std::move(frame));
    return Status::Ok();
  });
  EXPECT_TRUE(info.ok()) << info.status().ToString();
  if (info.ok()) out.info = *info;
  return out;
}

class VideoTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ffmpeg_ = testing::FindProgram("ffmpeg");
    if (!ffmpeg_) return;
    // Key frames every 2 s, and at the cuts (as an encoder's scene detection puts them in real
    // footage; x264's does not see these cuts).
    const std::vector<std::string> x264 = {"-c:v", "libx264", "-preset",           "veryfast",
                                           "-g",   "50",      "-force_key_frames", "2.4,4.8,7.2"};
    auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
      a.insert(a.end(), b.begin(), b.end());
      return a;
    };
    const std::vector<std::pair<std::string, std::vector<std::string>>> videos = {
        {"slides.mp4", with(x264, {"-metadata", "creation_time=2024-05-01T10:20:30.000000Z"})},
        // One GOP for the whole video and no key frames at cuts: every sample is decoded up to.
        {"long_gop.mp4", {"-c:v", "libx264", "-preset", "veryfast", "-g", "250", "-sc_threshold", "0"}},
        {"slides.webm", {"-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "50"}},
        {"slides.mkv", x264},
        {"slides.avi", {"-c:v", "mpeg4", "-q:v", "3", "-g", "50", "-force_key_frames", "2.4,4.8,7.2"}},
        {"slides.mov", x264},
        // The moov box first (a truncated copy still has its index).
        {"faststart.mp4", with(x264, {"-movflags", "+faststart"})},
    };
    // Made once per build for every test process (each makes them in seconds); the slides' pixels
    // are part of the recipe.
    std::string recipe;
    for (int i = 0; i < kSlides; ++i) {
      const Image slide = Slide(i);
      recipe.append(slide.rgb.begin(), slide.rgb.end());
    }
    for (const auto& [name, codec] : videos) {
      recipe += "\n" + name;
      for (const std::string& a : codec) recipe += " " + a;
    }
    const std::string shared = testing::SharedInputDir("videos", recipe, [&](const std::string& dir) {
      std::vector<std::string> inputs;
      std::string concat;
      for (int i = 0; i < kSlides; ++i) {
        const std::string png = dir + "/slide" + std::to_string(i) + ".png";
        if (!WritePng(Slide(i), png).ok()) return false;
        for (const char* a : {"-loop", "1", "-framerate", "25", "-t"}) inputs.push_back(a);
        inputs.push_back(std::to_string(kSlideSeconds));
        inputs.push_back("-i");
        inputs.push_back(png);
        concat += "[" + std::to_string(i) + ":v]";
      }
      concat += "concat=n=" + std::to_string(kSlides) + ":v=1:a=0,format=yuv420p";
      for (const auto& [name, codec] : videos) {
        std::vector<std::string> args = inputs;
        args.insert(args.end(), {"-filter_complex", concat});
        args.insert(args.end(), codec.begin(), codec.end());
        args.push_back(dir + "/" + name);
        if (!Ffmpeg(*ffmpeg_, args)) return false;
      }
      return true;
    });
    ASSERT_FALSE(shared.empty()) << "the test videos could not be made";
    // Each test writes beside them: a directory of its own, with copies.
    dir_ = testing::MakeTempDir();
    for (const auto& entry : std::filesystem::directory_iterator(shared)) {
      std::filesystem::copy_file(entry.path(), dir_ + "/" + entry.path().filename().string());
    }
  }

  void SetUp() override {
    if (!ffmpeg_) GTEST_SKIP() << "ffmpeg is not on PATH: the test videos cannot be made";
  }

  static std::string Path(const std::string& name) { return dir_ + "/" + name; }

  // Time samples at least every interval (a key frame up to 10% late may stand in), colours right.
  static void ExpectCovered(const Sampled& s, double interval = 2.0) {
    ASSERT_FALSE(s.frames.empty());
    EXPECT_LT(s.frames.front().time_s, 0.05);
    double last = -1;
    for (const VideoFrame& f : s.frames) {
      EXPECT_GT(f.time_s, last) << "frames out of order";
      if (last >= 0) {
        EXPECT_LE(f.time_s - last, 1.1 * interval + 0.05) << "gap before " << f.time_s;
      }
      last = f.time_s;
      EXPECT_TRUE(ShowsSlide(f.image, SlideAt(f.time_s))) << "at " << f.time_s;
    }
    EXPECT_GE(last, s.info.duration_s - 1.1 * interval - 0.05);
  }

  static inline std::optional<std::string> ffmpeg_;
  static inline std::string dir_;
};

TEST_F(VideoTest, DetectsEachContainer) {
  const std::map<std::string, ImageFormat> expected = {
      {"slides.mp4", ImageFormat::kMp4}, {"slides.webm", ImageFormat::kWebm}, {"slides.mkv", ImageFormat::kMatroska},
      {"slides.avi", ImageFormat::kAvi}, {"slides.mov", ImageFormat::kMov},   {"faststart.mp4", ImageFormat::kMp4},
  };
  for (const auto& [name, format] : expected) {
    std::vector<uint8_t> bytes = Bytes(Path(name));
    bytes.resize(std::min(bytes.size(), kDetectBytes));
    EXPECT_EQ(DetectImageFormat(bytes), format) << name;
    EXPECT_TRUE(IsVideoFormat(format));
  }
}

TEST(VideoDetect, MagicNumbers) {
  auto detect = [](std::string s) { return DetectImageFormat({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); };
  const std::string pad(32, '\0');
  EXPECT_EQ(detect(std::string("\0\0\0\x18"
                               "ftypqt  \0\0\0\0qt  ",
                               20) +
                   pad),
            ImageFormat::kMov);
  EXPECT_EQ(detect(std::string("\0\0\0\x18"
                               "ftyp3gp5\0\0\0\0isom",
                               20) +
                   pad),
            ImageFormat::kMp4);
  EXPECT_EQ(detect(std::string("\0\0\0\x18"
                               "ftypXYZW\0\0\0\0mp42",
                               20) +
                   pad),
            ImageFormat::kMp4);
  // Audio: the major brand decides, whatever the compatible ones.
  EXPECT_EQ(detect(std::string("\0\0\0\x1C"
                               "ftypM4A \0\0\0\0M4A mp42isom",
                               28) +
                   pad),
            ImageFormat::kUnknown);
  // Still images keep their formats.
  EXPECT_EQ(detect(std::string("\0\0\0\x18"
                               "ftypheic\0\0\0\0mif1heic",
                               24) +
                   pad),
            ImageFormat::kHeif);
  EXPECT_EQ(detect(std::string("\0\0\0\x1C"
                               "ftypavif\0\0\0\0avifmif1miaf",
                               28) +
                   pad),
            ImageFormat::kAvif);
  EXPECT_EQ(detect(std::string("\0\0\0\x18"
                               "ftypcrx \0\0\0\0isomcrx ",
                               24) +
                   pad),
            ImageFormat::kRaw);
  // QuickTime without "ftyp".
  EXPECT_EQ(detect(std::string("\0\0\0\x08wide\0\0\0\0mdat", 16) + pad), ImageFormat::kMov);
  EXPECT_EQ(detect(std::string("\0\0\x01\0moov", 8) + pad), ImageFormat::kMov);
  // EBML: DocType "webm" / "matroska" / something else.
  const std::string ebml("\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\xF7\x81\x01", 13);
  EXPECT_EQ(detect(ebml + "\x42\x82\x84webm" + pad), ImageFormat::kWebm);
  EXPECT_EQ(detect(ebml + "\x42\x82\x88matroska" + pad), ImageFormat::kMatroska);
  EXPECT_EQ(detect(ebml +
                   "\x42\x82\x84"
                   "abcd" +
                   pad),
            ImageFormat::kUnknown);
  EXPECT_EQ(detect(ebml + "\x42\x82\xFFwebm"), ImageFormat::kUnknown);  // a size past the data
  EXPECT_EQ(detect(std::string("RIFF\0\0\0\0AVI LIST", 16) + pad), ImageFormat::kAvi);
  EXPECT_EQ(detect(std::string("RIFF\0\0\0\0WEBPVP8 ", 16) + pad), ImageFormat::kWebp);
}

TEST_F(VideoTest, DecodeImageNamesAVideo) {
  auto decoded = DecodeImage(Bytes(Path("slides.mp4")));
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("a video (MP4 video)"), std::string::npos) << decoded.status().message();
}

TEST_F(VideoTest, ProbesEachContainer) {
  const std::map<std::string, std::string> codecs = {{"slides.mp4", "h264"},
                                                     {"slides.webm", "vp9"},
                                                     {"slides.mkv", "h264"},
                                                     {"slides.avi", "mpeg4"},
                                                     {"slides.mov", "h264"}};
  for (const auto& [name, codec] : codecs) {
    auto info = ProbeVideo({.path = Path(name)});
    ASSERT_TRUE(info.ok()) << name << ": " << info.status().ToString();
    EXPECT_EQ(info->codec, codec) << name;
    EXPECT_EQ(info->width, kWidth) << name;
    EXPECT_EQ(info->height, kHeight) << name;
    EXPECT_NEAR(info->duration_s, kDuration, 0.1) << name;
  }
  auto info = ProbeVideo({.path = Path("slides.mp4")});
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->format, ImageFormat::kMp4);
  EXPECT_EQ(info->capture_time, "2024-05-01T10:20:30");
}

TEST_F(VideoTest, SamplesEachContainerByTimeWithTheRightPictures) {
  for (const char* name : {"slides.mp4", "long_gop.mp4", "slides.webm", "slides.mkv", "slides.avi", "slides.mov"}) {
    SCOPED_TRACE(name);
    const Sampled s = Sample({.path = Path(name)}, {.scene_threshold = 0});
    ExpectCovered(s);
    EXPECT_LE(s.frames.size(), 7u);  // 0, 2, 4, 6, 8 give or take a key frame
  }
}

TEST_F(VideoTest, SamplesSceneChangesNearTheCut) {
  // mp4: x264 put key frames at the cuts; long_gop.mp4: decoded through, thumbnails every I / 4.
  for (const char* name : {"slides.mp4", "long_gop.mp4", "slides.mkv", "slides.avi"}) {
    SCOPED_TRACE(name);
    const Sampled s = Sample({.path = Path(name)});
    ExpectCovered(s);
    for (int cut = 1; cut < kSlides; ++cut) {
      const double at = cut * kSlideSeconds;
      const bool near = std::any_of(s.frames.begin(), s.frames.end(),
                                    [&](const VideoFrame& f) { return f.time_s >= at && f.time_s <= at + 0.65; });
      EXPECT_TRUE(near) << "no frame just after the cut at " << at;
    }
  }
}

TEST_F(VideoTest, MaxFramesSpreadsEvenly) {
  for (int max_frames : {1, 3, 4}) {
    const Sampled s = Sample({.path = Path("slides.mp4")}, {.max_frames = max_frames});
    ASSERT_EQ(s.frames.size(), static_cast<size_t>(max_frames));
    const double interval = s.info.duration_s / max_frames;
    for (size_t i = 0; i < s.frames.size(); ++i) {
      EXPECT_NEAR(s.frames[i].time_s, i * interval, 0.1 * interval + 0.1) << max_frames << " frames";
      EXPECT_TRUE(ShowsSlide(s.frames[i].image, SlideAt(s.frames[i].time_s)));
    }
  }
}

TEST_F(VideoTest, BytesInMemoryAsAFile) {
  for (const char* name : {"slides.mp4", "slides.webm", "slides.avi"}) {
    SCOPED_TRACE(name);
    const std::vector<uint8_t> bytes = Bytes(Path(name));
    const Sampled from_file = Sample({.path = Path(name)});
    const Sampled from_memory = Sample({.bytes = bytes});
    ASSERT_EQ(from_memory.frames.size(), from_file.frames.size());
    for (size_t i = 0; i < from_file.frames.size(); ++i) {
      EXPECT_EQ(from_memory.frames[i].time_s, from_file.frames[i].time_s);
      EXPECT_EQ(from_memory.frames[i].image.rgb, from_file.frames[i].image.rgb);
    }
    auto frame = VideoFrameAt({.bytes = bytes}, 6.0);
    ASSERT_TRUE(frame.ok()) << frame.status().ToString();
    EXPECT_TRUE(ShowsSlide(frame->image, 2));
  }
}

TEST_F(VideoTest, StreamedMatroskaWithoutDurationOrIndex) {
  // Written as a live stream, Matroska has neither a duration nor cues: sampled as it comes, every 2 s.
  const testing::CommandResult r =
      testing::RunCommand({*ffmpeg_, "-nostdin", "-loglevel", "error", "-i", Path("slides.mkv"), "-c", "copy", "-live",
                           "1", "-f", "matroska", "-"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(r.out.data()), r.out.size());
  auto info = ProbeVideo({.bytes = bytes});
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->duration_s, 0);
  Sampled s = Sample({.bytes = bytes});
  s.info.duration_s = kDuration;  // for ExpectCovered's check of the end
  ExpectCovered(s);
}

TEST_F(VideoTest, FrameAtATime) {
  for (const char* name : {"slides.mp4", "long_gop.mp4", "slides.webm", "slides.avi"}) {
    SCOPED_TRACE(name);
    for (double t : {-5.0, 0.0, 1.0, 2.38, 2.42, 6.0, 9.0, 9.99, 100.0}) {
      auto frame = VideoFrameAt({.path = Path(name)}, t);
      ASSERT_TRUE(frame.ok()) << frame.status().ToString();
      const double clamped = std::clamp(t, 0.0, kDuration - 0.04);  // the last frame's time
      EXPECT_NEAR(frame->time_s, clamped, 0.045) << "at " << t;
      EXPECT_TRUE(ShowsSlide(frame->image, SlideAt(clamped))) << "at " << t;
      EXPECT_EQ(frame->image.width, kWidth);
    }
  }
}

TEST_F(VideoTest, FramesAtTimesFromOneOpeningEqualEachOnItsOwn) {
  // One GOP (every time after the first decoded on from the one before), GOPs of 2 s with key
  // frames at the cuts (seeks and decoding on mixed), VP9 and MPEG-4 Part 2.
  const std::vector<double> times = {-1.0, 0.0, 0.5, 1.0, 2.38, 2.42, 2.42, 3.0, 4.7, 6.0, 9.99, 100.0};
  for (const char* name : {"long_gop.mp4", "slides.mp4", "slides.webm", "slides.avi"}) {
    SCOPED_TRACE(name);
    std::vector<VideoFrame> frames;
    auto info = VideoFramesAt({.path = Path(name)}, times, {}, [&](VideoFrame frame) {
      frames.push_back(std::move(frame));
      return Status::Ok();
    });
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->width, kWidth);
    ASSERT_EQ(frames.size(), times.size());
    for (size_t i = 0; i < times.size(); ++i) {
      const double clamped = std::clamp(times[i], 0.0, kDuration - 0.04);  // the last frame's time
      EXPECT_NEAR(frames[i].time_s, clamped, 0.045) << "at " << times[i];
      EXPECT_TRUE(ShowsSlide(frames[i].image, SlideAt(clamped))) << "at " << times[i];
      auto alone = VideoFrameAt({.path = Path(name)}, times[i]);
      ASSERT_TRUE(alone.ok()) << alone.status().ToString();
      EXPECT_EQ(frames[i].time_s, alone->time_s) << "at " << times[i];
      EXPECT_TRUE(frames[i].image.rgb == alone->image.rgb) << "at " << times[i];
    }
  }
  // A live Matroska stream, without cues: its index grows as it is read (times more than a few
  // seconds ahead are sought, the rest decoded on).
  const testing::CommandResult live =
      testing::RunCommand({*ffmpeg_, "-nostdin", "-loglevel", "error", "-i", Path("slides.mkv"), "-c", "copy", "-live",
                           "1", "-f", "matroska", "-"});
  ASSERT_EQ(live.exit_code, 0) << live.err;
  const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(live.out.data()), live.out.size());
  const std::vector<double> spread = {0.5, 1.0, 3.0, 9.0, 9.5};
  size_t next = 0;
  auto streamed = VideoFramesAt({.bytes = bytes}, spread, {}, [&](VideoFrame frame) {
    const double t = spread[next++];
    EXPECT_NEAR(frame.time_s, t, 0.045) << "at " << t;
    EXPECT_TRUE(ShowsSlide(frame.image, SlideAt(t))) << "at " << t;
    return Status::Ok();
  });
  ASSERT_TRUE(streamed.ok()) << streamed.status().ToString();
  EXPECT_EQ(next, spread.size());
  // Times out of order, or not numbers, are the caller's mistake; on_frame's error stops it.
  const auto ignore = [](VideoFrame) { return Status::Ok(); };
  const std::vector<double> backwards = {2.0, 1.0};
  EXPECT_EQ(VideoFramesAt({.path = Path("slides.mp4")}, backwards, {}, ignore).status().code(),
            StatusCode::kInvalidArgument);
  const std::vector<double> nan = {std::nan("")};
  EXPECT_EQ(VideoFramesAt({.path = Path("slides.mp4")}, nan, {}, ignore).status().code(), StatusCode::kInvalidArgument);
  int calls = 0;
  auto stopped = VideoFramesAt({.path = Path("slides.mp4")}, times, {},
                               [&](VideoFrame) { return ++calls == 2 ? Status::Unavailable("enough") : Status::Ok(); });
  EXPECT_EQ(stopped.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(calls, 2);
  // Cancelled: stops at once, with kUnavailable (SampleVideo alike).
  const std::atomic<bool> cancel{true};
  const VideoOptions cancelled{.cancel = &cancel};
  EXPECT_EQ(VideoFramesAt({.path = Path("long_gop.mp4")}, times, cancelled, ignore).status().code(),
            StatusCode::kUnavailable);
  EXPECT_EQ(SampleVideo({.path = Path("long_gop.mp4")}, cancelled, ignore).status().code(), StatusCode::kUnavailable);
}

TEST_F(VideoTest, ScalesTheShorterSide) {
  const Sampled s = Sample({.path = Path("slides.mp4")}, {.min_side = 120});
  ASSERT_FALSE(s.frames.empty());
  for (const VideoFrame& f : s.frames) {
    EXPECT_EQ(f.image.width, 160);
    EXPECT_EQ(f.image.height, 120);
  }
  EXPECT_EQ(s.info.width, kWidth);  // the video's own size
  auto frame = VideoFrameAt({.path = Path("slides.mp4")}, 1.0, {.min_side = 480});
  ASSERT_TRUE(frame.ok());
  EXPECT_EQ(frame->image.width, kWidth);  // never enlarged
}

TEST_F(VideoTest, RotationFromTheDisplayMatrix) {
  // Top half red, bottom half blue: which way it is turned shows.
  Image img(kWidth, kHeight);
  for (int y = 0; y < kHeight; ++y) {
    for (int x = 0; x < kWidth; ++x) std::memcpy(img.row(y) + 3 * x, kSlideColours[y < kHeight / 2 ? 0 : 2], 3);
  }
  ASSERT_TRUE(WritePng(img, Path("halves.png")).ok());
  ASSERT_TRUE(Ffmpeg(*ffmpeg_, {"-loop", "1", "-framerate", "25", "-t", "1", "-i", Path("halves.png"), "-c:v",
                                "libx264", "-pix_fmt", "yuv420p", Path("upright.mp4")}));
  // FFmpeg 5.1 writes this tag into the track header's matrix (ffprobe: displaymatrix, rotation=90).
  ASSERT_TRUE(
      Ffmpeg(*ffmpeg_, {"-i", Path("upright.mp4"), "-c", "copy", "-metadata:s:v:0", "rotate=90", Path("rotated.mp4")}));
  auto info = ProbeVideo({.path = Path("rotated.mp4")});
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->width, kHeight);
  EXPECT_EQ(info->height, kWidth);
  const Sampled s = Sample({.path = Path("rotated.mp4")}, {.min_side = 120});
  ASSERT_FALSE(s.frames.empty());
  const Image& f = s.frames[0].image;
  ASSERT_EQ(f.width, 120);
  ASSERT_EQ(f.height, 160);
  // The way ffmpeg itself shows it (it rotates by the matrix unless told not to).
  ASSERT_TRUE(Ffmpeg(*ffmpeg_, {"-i", Path("rotated.mp4"), "-frames:v", "1", Path("shown.png")}));
  auto shown = DecodeImageFile(Path("shown.png"));
  ASSERT_TRUE(shown.ok());
  ASSERT_EQ(shown->image.width, kHeight);
  for (auto [x, y] : {std::pair{10, 80}, std::pair{110, 80}}) {
    const uint8_t* ours = f.row(y) + 3 * x;
    const uint8_t* theirs = shown->image.row(2 * y) + 3 * (2 * x);
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(ours[c], theirs[c], 30) << "at " << x << "," << y;
  }
  EXPECT_GT(std::abs(f.row(80)[0] - f.row(80)[3 * 110]), 100) << "left and right differ: a quarter turn";
}

// The failure's message contains `text`.
void ExpectFails(const Result<VideoInfo>& r, const std::string& text) {
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(text), std::string::npos) << r.status().ToString();
}

Result<VideoInfo> SampleAll(const VideoSource& source, const VideoOptions& options = {}) {
  return SampleVideo(source, options, [](VideoFrame) { return Status::Ok(); });
}

TEST_F(VideoTest, BadInputIsAnError) {
  ExpectFails(SampleAll({}), "empty file (0 bytes)");
  std::ofstream(Path("empty.mp4")).close();
  ExpectFails(SampleAll({.path = Path("empty.mp4")}), "empty file (0 bytes)");
  ExpectFails(SampleAll({.path = Path("missing.mp4")}), "cannot open");
  ExpectFails(SampleAll({.path = Path("slide0.png")}), "not a video: an image (PNG)");

  // A valid "ftyp" box, then noise.
  std::string noise(
      "\0\0\0\x18"
      "ftypisom\0\0\0\0isommp42",
      24);
  std::mt19937 rng(5);
  for (int i = 0; i < 100'000; ++i) noise.push_back(static_cast<char>(rng()));
  const std::span<const uint8_t> noise_bytes(reinterpret_cast<const uint8_t*>(noise.data()), noise.size());
  ExpectFails(SampleAll({.bytes = noise_bytes}), "MP4 video");
  ExpectFails(ProbeVideo({.bytes = noise_bytes}), "MP4 video");

  // Truncated: the moov box at the end is missing; with the moov box first, the frames are.
  for (const char* name : {"slides.mp4", "faststart.mp4"}) {
    std::vector<uint8_t> bytes = Bytes(Path(name));
    bytes.resize(bytes.size() / 2);
    auto r = SampleAll({.bytes = bytes});
    if (std::string(name) == "slides.mp4") {
      ExpectFails(r, "cannot read the container");
    } else {
      // What is there is sampled; what is not is not invented.
      Sampled s = Sample({.bytes = bytes});
      EXPECT_FALSE(s.frames.empty());
      EXPECT_LT(s.frames.back().time_s, 9.0);
    }
  }
  for (const std::string half : {"half.webm", "half.avi", "half.mkv"}) {
    std::vector<uint8_t> bytes = Bytes(Path("slides" + half.substr(4)));
    bytes.resize(bytes.size() / 2);
    auto r = SampleAll({.bytes = bytes});  // frames up to the cut, or an error: never a crash
    if (!r.ok()) {
      EXPECT_FALSE(r.status().message().empty());
    }
  }

  // Audio only: an .m4a is not a video at all; an audio-only .mp4 has no video stream.
  ASSERT_TRUE(Ffmpeg(*ffmpeg_, {"-f", "lavfi", "-i", "sine=duration=1", Path("a.m4a")}));
  ExpectFails(SampleAll({.path = Path("a.m4a")}), "not a video");
  ASSERT_TRUE(Ffmpeg(*ffmpeg_, {"-f", "lavfi", "-i", "sine=duration=1", Path("a.mp4")}));
  ExpectFails(SampleAll({.path = Path("a.mp4")}), "no video stream");
  ExpectFails(ProbeVideo({.path = Path("a.mp4")}), "no video stream");

  // A codec FFmpeg does not know: the Matroska's codec id renamed (same length).
  std::vector<uint8_t> unknown = Bytes(Path("slides.mkv"));
  const std::string avc = "V_MPEG4/ISO/AVC";
  auto at = std::search(unknown.begin(), unknown.end(), avc.begin(), avc.end());
  ASSERT_NE(at, unknown.end());
  std::copy_n("V_MPEG4/ISO/QQQ", avc.size(), at);
  auto unknown_codec = SampleAll({.bytes = unknown});
  ASSERT_FALSE(unknown_codec.ok());
  EXPECT_EQ(unknown_codec.status().code(), StatusCode::kUnsupported);
  ExpectFails(unknown_codec, "Matroska video: a video codec FFmpeg does not know");

  // Frames past the pixel limit are refused before decoding.
  auto limited = SampleAll({.path = Path("slides.mp4")}, {.max_pixels = 10'000});
  ASSERT_FALSE(limited.ok());
  EXPECT_EQ(limited.status().code(), StatusCode::kResourceExhausted) << limited.status().ToString();

  // The time limit.
  auto late = SampleAll({.path = Path("long_gop.mp4")}, {.time_limit = std::chrono::milliseconds(1)});
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), StatusCode::kResourceExhausted);
  ExpectFails(late, "limit of 1 ms");

  // An error from the callback stops sampling and is returned.
  int calls = 0;
  auto stopped = SampleVideo({.path = Path("slides.mp4")}, {}, [&](VideoFrame) {
    ++calls;
    return Status::Unavailable("the embedder went away");
  });
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(stopped.status().code(), StatusCode::kUnavailable);
}

TEST_F(VideoTest, DamagedBytesNeverCrash) {
  // Bytes overwritten here and there (in the header, the index, the frames): frames or an error.
  for (const char* name : {"slides.mp4", "faststart.mp4", "slides.webm", "slides.avi"}) {
    const std::vector<uint8_t> original = Bytes(Path(name));
    for (unsigned seed = 0; seed < 12; ++seed) {
      std::vector<uint8_t> bytes = original;
      std::mt19937 rng(seed);
      for (int i = 0; i < 30; ++i) bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
      auto r = SampleAll({.bytes = bytes}, {.time_limit = std::chrono::seconds(20)});
      if (!r.ok()) {
        EXPECT_FALSE(r.status().message().empty()) << name << " " << seed;
      }
    }
  }
}

TEST_F(VideoTest, SeveralThreadsAtOnce) {
  std::vector<std::thread> threads;
  std::vector<size_t> counts(4);
  for (size_t i = 0; i < counts.size(); ++i) {
    threads.emplace_back(
        [&, i] { counts[i] = Sample({.path = Path(i % 2 ? "slides.webm" : "slides.mp4")}).frames.size(); });
  }
  for (std::thread& t : threads) t.join();
  for (size_t c : counts) EXPECT_GT(c, 4u);
}

// Extraction cost per sampled frame on 1080p H.264, GOPs of 2 s and 20 s (not a timed assertion):
//   video_test --gtest_also_run_disabled_tests --gtest_filter='*Timing*'
TEST_F(VideoTest, DISABLED_Timing1080p) {
  for (int gop : {60, 600}) {
    const std::string path = Path("v1080_g" + std::to_string(gop) + ".mp4");
    ASSERT_TRUE(Ffmpeg(*ffmpeg_, {"-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-t", "60", "-c:v", "libx264",
                                  "-preset", "veryfast", "-g", std::to_string(gop), path}));
    for (double scene : {0.12, 0.0}) {
      const auto start = std::chrono::steady_clock::now();
      const Sampled s = Sample({.path = path}, {.scene_threshold = scene, .min_side = 448});
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      std::printf("GOP %d frames, scene threshold %.2f: %zu frames in %.0f ms, %.1f ms per frame\n", gop, scene,
                  s.frames.size(), ms, ms / std::max<size_t>(1, s.frames.size()));
    }
    // The text stage's reading of the sampled frames again (every 2 s, at most 1200 px): from one
    // opening, against one VideoFrameAt each.
    std::vector<double> times;
    for (double t = 0; t < 60; t += 2) times.push_back(t);
    const VideoOptions text{.min_side = 1200};
    auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(VideoFramesAt({.path = path}, times, text, [](VideoFrame) { return Status::Ok(); }).ok());
    const double together = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    start = std::chrono::steady_clock::now();
    for (double t : times) ASSERT_TRUE(VideoFrameAt({.path = path}, t, text).ok());
    const double alone = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("GOP %d frames, %zu frames at given times: %.0f ms from one opening, %.0f ms one at a time\n", gop,
                times.size(), together, alone);
  }
}

}  // namespace
}  // namespace imgsearch
