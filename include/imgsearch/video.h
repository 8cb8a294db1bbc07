// Videos: frames sampled by time and at scene changes (FFmpeg's libavformat, libavcodec and
// libswscale), each one embedded like a photo. A video is one item with many vectors, each with
// its time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "imgsearch/image.h"
#include "imgsearch/status.h"

namespace imgsearch {

// Where a video's bytes are: a file (read as needed: a video may be far larger than memory), or
// bytes already in memory (an upload, a file fetched over HTTP). Exactly one is set.
struct VideoSource {
  std::string path;
  std::span<const uint8_t> bytes;
};

struct VideoOptions {
  // At least one frame every `interval_s` seconds of video (a key frame up to 10% late stands in
  // for one: decoding a GOP to be a few frames earlier would cost far more)...
  double interval_s = 2.0;
  // ...and at most this many frames per video: a longer video is covered evenly (the interval grows
  // to duration / max_frames). Scene changes add frames within the same budget.
  int max_frames = 200;
  // A frame differing from the last sampled one by more than this (mean absolute difference of
  // small grey thumbnails, 0..1) is a scene change and is sampled too; ≤ 0: no scene detection.
  double scene_threshold = 0.12;
  // Frames are scaled (aspect ratio kept) so their shorter side is `min_side` when larger; 0: full
  // size. The model needs only a few hundred pixels; scaling in swscale is far cheaper than later.
  int min_side = 0;
  // Frames of more pixels are refused before decoding, as images are (DecodeOptions::max_pixels).
  uint64_t max_pixels = 100'000'000;
  // Reading one video gives up after this long (a hostile or broken file must not hold a decoder).
  std::chrono::milliseconds time_limit{std::chrono::minutes(5)};
  // When set and true, reading stops soon (kUnavailable), also in the middle of decoding a GOP.
  const std::atomic<bool>* cancel = nullptr;
};

struct VideoInfo {
  ImageFormat format = ImageFormat::kUnknown;  // the container (kMp4, kWebm, …)
  std::string codec;                           // FFmpeg's name of the video codec ("h264", "vp9", …)
  int width = 0;                               // as displayed: pixel aspect ratio and rotation applied
  int height = 0;
  double duration_s = 0;                    // 0 when the container does not say (a streamed file)
  std::optional<std::string> capture_time;  // the container's creation time (UTC), "YYYY-MM-DDTHH:MM:SS"
};

struct VideoFrame {
  double time_s = 0;  // presentation time from the start of the video
  Image image;        // RGB, rotated as displayed, scaled per VideoOptions::min_side
};

// Samples `source`'s frames per `options`, calling `on_frame` for each in time order (an error it
// returns stops sampling and is returned). Decodes only what it needs: key frames, plus the frames
// leading to a sample where key frames are too far apart. Every failure — not a video, no video
// stream, a codec FFmpeg cannot decode, a damaged or truncated file, absurd dimensions, the time
// limit (time spent in `on_frame` does not count) — is a Status naming the problem; a file with no
// video stream (audio in a video container) is kNotFound; a video that yields no frame at all is an
// error too. Several threads may sample videos at once (each call has its own demuxer and decoder).
Result<VideoInfo> SampleVideo(const VideoSource& source, const VideoOptions& options,
                              const std::function<Status(VideoFrame frame)>& on_frame);

// The frame shown at `time_s` (clamped to the video), rotated as displayed and scaled per
// options.min_side (thumbnails).
Result<VideoFrame> VideoFrameAt(const VideoSource& source, double time_s, const VideoOptions& options = {});

// The frames shown at each of `times_s` (seconds, ascending; each clamped to the video), handed to
// `on_frame` in turn (an error it returns stops and is returned), from one opening of the video:
// each is decoded from the key frame at or before it, or on from the frame before when no key
// frame lies between (frames a few seconds apart in a long GOP are not decoded from its start each
// time). Frames are as VideoFrameAt's, one per time asked for, in that order. Fails as SampleVideo
// does; returns the video's header.
Result<VideoInfo> VideoFramesAt(const VideoSource& source, std::span<const double> times_s, const VideoOptions& options,
                                const std::function<Status(VideoFrame frame)>& on_frame);

// Reads the container's header only: format, codec, size, duration, creation time.
Result<VideoInfo> ProbeVideo(const VideoSource& source, const VideoOptions& options = {});

}  // namespace imgsearch
