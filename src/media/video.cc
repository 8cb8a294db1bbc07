// Videos through FFmpeg: libavformat demuxes (MP4/QuickTime, Matroska/WebM, AVI only, and animated
// PNGs for DecodeApngFirstFrame: the demuxer is chosen from the detected container, never probed,
// so a playlist or an image sequence cannot make FFmpeg open other files), libavcodec decodes,
// libswscale converts to RGB and scales.
//
// How frames are chosen. Let I = max(interval_s, duration / max_frames): time samples at least I
// apart cover the video within the budget. The demuxer is read in order and mostly key
// frames are decoded:
//  - A key frame is decoded when it is due as a time sample (≥ I after the last sample), or as a
//    scene check: when it comes sooner than the stream's usual key frame spacing (encoders put key
//    frames at cuts), or else at most every I / 4; and only while the budget has room for a scene
//    sample beyond the time samples the rest of the video still needs. Other key frames are
//    skipped undecoded, and where the index shows whole GOPs before the next wanted time, the
//    demuxer seeks past them.
//  - Non-key packets are dropped undecoded (the demuxer still reads them: AVDISCARD_NONKEY would
//    skip their bytes, but FFmpeg 5.1's MP4 demuxer then gives the next key frames wrong times),
//    except in a GOP that a time sample falls inside: when the next key frame (from the index, or
//    the spacing of key frames seen so far) comes more than 10% of I after the time wanted, the
//    GOP's frames are decoded up to the frame that reaches it. A key frame up to 10% of I late
//    stands in for a time sample: decoding a GOP to be a few frames earlier would cost far more.
//  - A frame is a scene change when its 16×16 grey thumbnail differs from the last sample's by
//    more than scene_threshold. Frames decoded in a GOP are checked every I / 4.
// The decoder is drained after each key frame decoded on its own (a decoder holds frames back for
// reordering) so decisions use the frames already seen; at most a frame or two is alive at a time.
// A video of unknown duration is sampled every interval_s until max_frames.
extern "C" {  // FFmpeg's headers declare C functions without saying so
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <vector>

#include "imgsearch/video.h"
#include "media/decoders.h"
#include "media/exif.h"
#include "media/ffmpeg.h"

namespace imgsearch {

namespace {

using Clock = std::chrono::steady_clock;
using media::AvError;
using media::FramePtr;
using media::PacketPtr;
using media::SilenceFfmpeg;

struct FormatClose {
  void operator()(AVFormatContext* c) const { avformat_close_input(&c); }
};
struct AvioFree {
  void operator()(AVIOContext* c) const {
    av_freep(&c->buffer);
    avio_context_free(&c);
  }
};
struct SwsFree {
  void operator()(SwsContext* c) const { sws_freeContext(c); }
};
using SwsPtr = std::unique_ptr<SwsContext, SwsFree>;

// Bytes in memory, read through a custom AVIOContext.
struct MemoryReader {
  std::span<const uint8_t> bytes;
  size_t pos = 0;

  static int Read(void* opaque, uint8_t* buf, int size) {
    auto* r = static_cast<MemoryReader*>(opaque);
    const size_t n = std::min(static_cast<size_t>(size), r->bytes.size() - r->pos);
    if (n == 0) return AVERROR_EOF;
    std::memcpy(buf, r->bytes.data() + r->pos, n);
    r->pos += n;
    return static_cast<int>(n);
  }
  static int64_t Seek(void* opaque, int64_t offset, int whence) {
    auto* r = static_cast<MemoryReader*>(opaque);
    const auto size = static_cast<int64_t>(r->bytes.size());
    if ((whence & AVSEEK_SIZE) != 0) return size;
    int64_t to = offset;
    switch (whence & ~AVSEEK_FORCE) {
      case SEEK_SET: break;
      case SEEK_CUR: to += static_cast<int64_t>(r->pos); break;
      case SEEK_END: to += size; break;
      default: return AVERROR(EINVAL);
    }
    if (to < 0 || to > size) return AVERROR(EINVAL);
    r->pos = static_cast<size_t>(to);
    return to;
  }
};

const char* DemuxerName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kMp4:
    case ImageFormat::kMov: return "mov";
    case ImageFormat::kMatroska:
    case ImageFormat::kWebm: return "matroska";
    case ImageFormat::kAvi: return "avi";
    case ImageFormat::kPng: return "apng";  // only for DecodeApngFirstFrame
    default: return nullptr;
  }
}

// The first bytes of the source, for DetectImageFormat.
Result<std::vector<uint8_t>> Head(const VideoSource& source) {
  if (source.path.empty()) {
    return std::vector<uint8_t>(source.bytes.begin(),
                                source.bytes.begin() + std::min(source.bytes.size(), kDetectBytes));
  }
  std::ifstream in(source.path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open the file");
  std::vector<uint8_t> head(kDetectBytes);
  in.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  if (in.bad()) return Status::IoError("cannot read the file");
  head.resize(static_cast<size_t>(in.gcount()));
  return head;
}

// "2024-05-01T10:20:30.000000Z" (or with a space) → "2024-05-01T10:20:30".
std::optional<std::string> CaptureTime(const AVDictionary* metadata) {
  const AVDictionaryEntry* e = av_dict_get(metadata, "creation_time", nullptr, 0);
  if (e == nullptr || std::strlen(e->value) < 19) return std::nullopt;
  std::string t(e->value, 19);
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    const bool ok = i == 4 || i == 7     ? c == '-'
                    : i == 10            ? c == 'T' || c == ' '
                    : i == 13 || i == 16 ? c == ':'
                                         : c >= '0' && c <= '9';
    if (!ok) return std::nullopt;
  }
  t[10] = 'T';
  return t;
}

// Clockwise rotation (0, 90, 180, 270) the stream's display matrix asks for.
int RotationDegrees(const AVStream* st) {
  size_t size = 0;
  const uint8_t* matrix = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &size);
  if (matrix == nullptr || size < 9 * sizeof(int32_t)) return 0;
  // av_display_rotation_get is counter-clockwise; the nearest quarter turn (mirroring ignored, as
  // FFmpeg 5.1's own player does).
  const double ccw = av_display_rotation_get(reinterpret_cast<const int32_t*>(matrix));
  if (std::isnan(ccw)) return 0;
  const int quarter = static_cast<int>(std::lround(-ccw / 90.0));
  return ((quarter % 4) + 4) % 4 * 90;
}

// Times within this are the same (timestamps are rounded to the stream's time base).
constexpr double kSameTime = 0.001;

// An open video: the demuxer on the chosen stream, and its decoder.
class OpenVideo {
 public:
  // `animated_png`: a PNG is read too, as an animation (DecodeApngFirstFrame); else only videos.
  static Result<std::unique_ptr<OpenVideo>> Open(const VideoSource& source, const VideoOptions& options,
                                                 bool skip_nonref, bool animated_png = false);
  OpenVideo(const OpenVideo&) = delete;
  OpenVideo& operator=(const OpenVideo&) = delete;
  ~OpenVideo() {
    codec_.reset();
    format_.reset();  // before the AVIOContext it reads through
  }

  const VideoInfo& info() const { return info_; }
  AVFormatContext* format() { return format_.get(); }
  AVCodecContext* codec() { return codec_.get(); }
  AVStream* stream() { return format_->streams[stream_index_]; }
  int stream_index() const { return stream_index_; }
  // The time limit has passed, or the caller cancelled (VideoOptions::cancel).
  bool TimeUp() const { return Clock::now() >= deadline_ || Cancelled(); }
  bool Cancelled() const { return options_.cancel != nullptr && options_.cancel->load(); }
  // Time spent outside the decoding (the caller's on_frame, waiting for room further down its
  // pipeline) does not count against the limit.
  void NotCounting(Clock::duration spent) { deadline_ += spent; }
  Status TimeLimitError() const {
    if (Cancelled()) return Status::Unavailable("stopped before the video was read");
    return Status::ResourceExhausted("reading the video took longer than the limit of " +
                                     std::to_string(time_limit_.count()) + " ms");
  }

  // Seconds from the start of the stream; NaN for an unknown timestamp.
  double Seconds(int64_t ts) const {
    if (ts == AV_NOPTS_VALUE) return std::numeric_limits<double>::quiet_NaN();
    return static_cast<double>(ts - start_ts_) * av_q2d(time_base_);
  }
  int64_t Timestamp(double seconds) const {
    const double ticks = std::clamp(seconds / av_q2d(time_base_), -1e15, 1e15);  // an absurd time stays an int64
    return start_ts_ + std::llround(ticks);
  }

  // The time of the first key frame of the index after `seconds`; NaN when the index has none.
  double NextKeyFrame(double seconds) {
    const int i = av_index_search_timestamp(stream(), Timestamp(seconds) + 1, 0);
    if (i < 0) return std::numeric_limits<double>::quiet_NaN();
    const AVIndexEntry* e = avformat_index_get_entry(stream(), i);
    return e != nullptr ? Seconds(e->timestamp) : std::numeric_limits<double>::quiet_NaN();
  }
  // The time of the index's last key frame at or before `seconds`; NaN when none.
  double KeyFrameAtOrBefore(double seconds) {
    const int i = av_index_search_timestamp(stream(), Timestamp(seconds), AVSEEK_FLAG_BACKWARD);
    if (i < 0) return std::numeric_limits<double>::quiet_NaN();
    const AVIndexEntry* e = avformat_index_get_entry(stream(), i);
    return e != nullptr ? Seconds(e->timestamp) : std::numeric_limits<double>::quiet_NaN();
  }
  bool HasIndex() { return avformat_index_get_entries_count(stream()) > 0; }
  // Whether the index holds every key frame: it had entries when the file was opened and has
  // gained none since (a Matroska file without cues gains them as it is read).
  bool IndexComplete() {
    const int n = avformat_index_get_entries_count(stream());
    return n > 0 && n == index_entries_at_open_;
  }

  // The frame's presentation time; frames without one continue from the previous. The packet's
  // time comes first: best_effort_timestamp second-guesses it from the history of timestamps,
  // which skipped packets make look faulty.
  double FrameTime(const AVFrame* frame) {
    const double t = Seconds(frame->pts != AV_NOPTS_VALUE ? frame->pts : frame->best_effort_timestamp);
    if (!std::isnan(t)) last_frame_time_ = t;
    return last_frame_time_;
  }

  // RGB, scaled per options.min_side (and the sample aspect ratio), rotated as displayed.
  Result<Image> ToRgb(const AVFrame* frame);
  // A 16×16 grey thumbnail, for scene detection.
  Result<std::array<uint8_t, 256>> Thumbnail(const AVFrame* frame);

 private:
  OpenVideo(const VideoOptions& options)
      : options_(options), time_limit_(options.time_limit), deadline_(Clock::now() + options.time_limit) {}
  static int Interrupt(void* opaque) { return static_cast<OpenVideo*>(opaque)->TimeUp() ? 1 : 0; }
  Status OpenInput(const VideoSource& source, ImageFormat format);
  Status OpenDecoder(bool skip_nonref);
  Status CheckFrame(const AVFrame* frame) const;

  VideoOptions options_;
  std::chrono::milliseconds time_limit_;
  Clock::time_point deadline_;
  MemoryReader memory_;
  std::unique_ptr<AVIOContext, AvioFree> avio_;
  std::unique_ptr<AVFormatContext, FormatClose> format_;
  media::CodecPtr codec_;
  int stream_index_ = -1;
  int index_entries_at_open_ = 0;
  AVRational time_base_{1, 1};
  int64_t start_ts_ = 0;
  int rotation_ = 0;
  AVRational sample_aspect_{1, 1};
  double last_frame_time_ = 0;
  SwsPtr rgb_sws_, thumb_sws_;
  VideoInfo info_;
};

Status OpenVideo::OpenInput(const VideoSource& source, ImageFormat format) {
  const AVInputFormat* demuxer = av_find_input_format(DemuxerName(format));
  if (demuxer == nullptr) return Status::Unsupported("this FFmpeg has no demuxer for the container");
  AVFormatContext* ctx = avformat_alloc_context();
  if (ctx == nullptr) return Status::ResourceExhausted("cannot allocate a demuxer");
  ctx->interrupt_callback = {&OpenVideo::Interrupt, this};
  AVDictionary* demux_options = nullptr;
  std::string url;
  if (source.path.empty()) {
    memory_.bytes = source.bytes;
    constexpr int kBufferBytes = 64 * 1024;
    auto* buffer = static_cast<uint8_t*>(av_malloc(kBufferBytes));
    if (buffer != nullptr) {
      avio_.reset(
          avio_alloc_context(buffer, kBufferBytes, 0, &memory_, &MemoryReader::Read, nullptr, &MemoryReader::Seek));
      if (!avio_) av_free(buffer);
    }
    if (!avio_) {
      avformat_free_context(ctx);
      return Status::ResourceExhausted("cannot allocate a reader");
    }
    ctx->pb = avio_.get();
  } else {
    // "file:" so that a colon in the name is not read as a protocol; and no other protocol.
    url = "file:" + source.path;
    av_dict_set(&demux_options, "protocol_whitelist", "file", 0);
  }
  int err = avformat_open_input(&ctx, url.c_str(), demuxer, &demux_options);  // frees ctx on failure
  av_dict_free(&demux_options);
  if (err < 0) {
    if (TimeUp()) return TimeLimitError();
    return Status::Corruption("cannot read the container: " + AvError(err));
  }
  format_.reset(ctx);

  // The video stream: not a cover picture; the default one, then the largest.
  for (unsigned i = 0; i < ctx->nb_streams; ++i) {
    const AVStream* st = ctx->streams[i];
    if (st->codecpar->codec_type != AVMEDIA_TYPE_VIDEO || (st->disposition & AV_DISPOSITION_ATTACHED_PIC) != 0) {
      continue;
    }
    auto rank = [](const AVStream* s) {
      return std::pair((s->disposition & AV_DISPOSITION_DEFAULT) != 0,
                       int64_t{s->codecpar->width} * s->codecpar->height);
    };
    if (stream_index_ < 0 || rank(st) > rank(ctx->streams[stream_index_])) stream_index_ = static_cast<int>(i);
  }
  // kNotFound: nothing here to index (an audio file in a video container).
  if (stream_index_ < 0) return Status::NotFound("no video stream (audio only?)");
  // Headers without the frame size (rare) need a look at the first packets.
  if (stream()->codecpar->width <= 0 || stream()->codecpar->height <= 0) {
    err = avformat_find_stream_info(ctx, nullptr);
    if (err < 0) {
      if (TimeUp()) return TimeLimitError();
      return Status::Corruption("cannot read the video stream's parameters: " + AvError(err));
    }
  }
  for (unsigned i = 0; i < ctx->nb_streams; ++i) {
    if (static_cast<int>(i) != stream_index_) ctx->streams[i]->discard = AVDISCARD_ALL;
  }

  AVStream* st = stream();
  index_entries_at_open_ = avformat_index_get_entries_count(st);
  time_base_ = st->time_base;
  if (time_base_.num <= 0 || time_base_.den <= 0) return Status::Corruption("the video stream has no time base");
  if (st->start_time != AV_NOPTS_VALUE) {
    start_ts_ = st->start_time;
  } else if (ctx->start_time != AV_NOPTS_VALUE) {
    start_ts_ = av_rescale_q(ctx->start_time, AV_TIME_BASE_Q, time_base_);
  }
  rotation_ = RotationDegrees(st);
  const AVRational sar = st->codecpar->sample_aspect_ratio;
  if (sar.num > 0 && sar.den > 0 && av_q2d(sar) > 0.1 && av_q2d(sar) < 10) sample_aspect_ = sar;

  info_.format = format;
  info_.codec = avcodec_get_name(st->codecpar->codec_id);
  const int64_t width = st->codecpar->width, height = st->codecpar->height;
  RETURN_IF_ERROR(media::CheckDimensions(width, height, DecodeOptions{.max_pixels = options_.max_pixels})
                      .WithContext("video frame size"));
  const auto shown_width = static_cast<int>(std::lround(static_cast<double>(width) * av_q2d(sample_aspect_)));
  info_.width = rotation_ % 180 == 0 ? shown_width : static_cast<int>(height);
  info_.height = rotation_ % 180 == 0 ? static_cast<int>(height) : shown_width;
  // A duration past a year is a damaged header, not a video: treated as unknown.
  double duration = ctx->duration != AV_NOPTS_VALUE ? static_cast<double>(ctx->duration) / AV_TIME_BASE : 0;
  if (duration <= 0 && st->duration != AV_NOPTS_VALUE)
    duration = static_cast<double>(st->duration) * av_q2d(time_base_);
  info_.duration_s = std::isfinite(duration) && duration > 0 && duration < 365.0 * 86400 ? duration : 0;
  info_.capture_time = CaptureTime(ctx->metadata);
  return Status::Ok();
}

Status OpenVideo::OpenDecoder(bool skip_nonref) {
  const AVCodecParameters* par = stream()->codecpar;
  const AVCodec* decoder = avcodec_find_decoder(par->codec_id);
  if (decoder == nullptr && par->codec_id == AV_CODEC_ID_NONE) {
    return Status::Unsupported("a video codec FFmpeg does not know");
  }
  if (decoder == nullptr) return Status::Unsupported("no decoder for the " + info_.codec + " codec");
  codec_.reset(avcodec_alloc_context3(decoder));
  if (!codec_) return Status::ResourceExhausted("cannot allocate a decoder");
  int err = avcodec_parameters_to_context(codec_.get(), par);
  if (err < 0) return Status::Corruption("bad codec parameters: " + AvError(err));
  codec_->pkt_timebase = time_base_;
  // The decoder refuses frames past the pixel limit before allocating them (a stream may change
  // size after its header).
  codec_->max_pixels = static_cast<int64_t>(std::min<uint64_t>(options_.max_pixels, INT64_MAX));
  // One thread: most of the decoding here is single key frames (drained one at a time, which
  // frame threads cannot overlap), and SampleVideo runs on several threads at once. Measured on
  // 1080p H.264 (2 cores): two frame threads were no faster with 2 s GOPs, 20% slower with 20 s.
  codec_->thread_count = 1;
  // B-frames are never references: skipping them in a GOP decoded up to a time costs a frame or
  // two of accuracy and saves much of the work.
  if (skip_nonref) codec_->skip_frame = AVDISCARD_NONREF;
  err = avcodec_open2(codec_.get(), decoder, nullptr);
  if (err < 0) return Status::Unsupported("cannot open the " + info_.codec + " decoder: " + AvError(err));
  return Status::Ok();
}

Result<std::unique_ptr<OpenVideo>> OpenVideo::Open(const VideoSource& source, const VideoOptions& options,
                                                   bool skip_nonref, bool animated_png) {
  SilenceFfmpeg();
  if (!source.path.empty() && !source.bytes.empty()) {
    return Status::InvalidArgument("a video source is a path or bytes, not both");
  }
  ASSIGN_OR_RETURN(std::vector<uint8_t> head, Head(source));
  if (head.empty()) return Status::InvalidArgument("empty file (0 bytes)");
  const ImageFormat format = DetectImageFormat(head);
  if (!IsVideoFormat(format) && !(animated_png && format == ImageFormat::kPng)) {
    if (format == ImageFormat::kUnknown) return Status::InvalidArgument("not a video (unrecognised content)");
    return Status::InvalidArgument(std::string("not a video: an image (") + FormatInfo(format)->display_name + ")");
  }
  std::unique_ptr<OpenVideo> video(new OpenVideo(options));
  RETURN_IF_ERROR(video->OpenInput(source, format).WithContext(FormatInfo(format)->display_name));
  RETURN_IF_ERROR(video->OpenDecoder(skip_nonref).WithContext(FormatInfo(format)->display_name));
  return video;
}

Status OpenVideo::CheckFrame(const AVFrame* frame) const {
  RETURN_IF_ERROR(media::CheckDimensions(frame->width, frame->height, DecodeOptions{.max_pixels = options_.max_pixels})
                      .WithContext("video frame"));
  const auto format = static_cast<AVPixelFormat>(frame->format);
  if (sws_isSupportedInput(format) == 0) {
    const char* name = av_get_pix_fmt_name(format);
    return Status::Unsupported(std::string("pixel format ") + (name != nullptr ? name : "unknown") +
                               " cannot be converted");
  }
  return Status::Ok();
}

// swscale's BT.601 default is wrong for HD video (BT.709); the frame says which matrix and range.
void SetColorspace(SwsContext* sws, const AVFrame* frame) {
  const int space = frame->colorspace != AVCOL_SPC_UNSPECIFIED ? frame->colorspace
                    : frame->height >= 720                     ? AVCOL_SPC_BT709
                                                               : AVCOL_SPC_SMPTE170M;
  int* inv_table = nullptr;
  int* table = nullptr;
  int src_range = 0, dst_range = 0, brightness = 0, contrast = 0, saturation = 0;
  if (sws_getColorspaceDetails(sws, &inv_table, &src_range, &table, &dst_range, &brightness, &contrast, &saturation) <
      0) {
    return;  // an RGB or grey source: no matrix to set
  }
  if (frame->color_range == AVCOL_RANGE_JPEG) src_range = 1;
  sws_setColorspaceDetails(sws, sws_getCoefficients(space), src_range, table, dst_range, brightness, contrast,
                           saturation);
}

Result<Image> OpenVideo::ToRgb(const AVFrame* frame) {
  RETURN_IF_ERROR(CheckFrame(frame));
  const int src_w = frame->width, src_h = frame->height;
  double w = src_w * av_q2d(sample_aspect_), h = src_h;
  const double shorter = std::min(w, h);
  if (options_.min_side > 0 && shorter > options_.min_side) {
    w *= options_.min_side / shorter;
    h *= options_.min_side / shorter;
  }
  const int dst_w = std::max(1, static_cast<int>(std::lround(w)));
  const int dst_h = std::max(1, static_cast<int>(std::lround(h)));
  const bool downscale = dst_w < src_w || dst_h < src_h;
  rgb_sws_.reset(sws_getCachedContext(rgb_sws_.release(), src_w, src_h, static_cast<AVPixelFormat>(frame->format),
                                      dst_w, dst_h, AV_PIX_FMT_RGB24, downscale ? SWS_AREA : SWS_BICUBIC, nullptr,
                                      nullptr, nullptr));
  if (!rgb_sws_) return Status::Internal("cannot set up the conversion to RGB");
  SetColorspace(rgb_sws_.get(), frame);
  // swscale's SIMD paths write whole aligned blocks: into a padded buffer, then the rows copied.
  uint8_t* dst[4] = {};
  int dst_stride[4] = {};
  const int size = av_image_alloc(dst, dst_stride, dst_w, dst_h, AV_PIX_FMT_RGB24, 64);
  if (size < 0) return Status::ResourceExhausted("cannot allocate a frame");
  std::unique_ptr<uint8_t, decltype(&av_free)> owned(dst[0], &av_free);
  sws_scale(rgb_sws_.get(), frame->data, frame->linesize, 0, src_h, dst, dst_stride);
  Image image(dst_w, dst_h);
  for (int y = 0; y < dst_h; ++y) std::memcpy(image.row(y), dst[0] + static_cast<size_t>(y) * dst_stride[0], dst_w * 3);
  // EXIF orientations 6, 3, 8 are the clockwise quarter turns.
  switch (rotation_) {
    case 90: return media::ApplyOrientation(image, 6);
    case 180: return media::ApplyOrientation(image, 3);
    case 270: return media::ApplyOrientation(image, 8);
    default: return image;
  }
}

Result<std::array<uint8_t, 256>> OpenVideo::Thumbnail(const AVFrame* frame) {
  RETURN_IF_ERROR(CheckFrame(frame));
  thumb_sws_.reset(sws_getCachedContext(thumb_sws_.release(), frame->width, frame->height,
                                        static_cast<AVPixelFormat>(frame->format), 16, 16, AV_PIX_FMT_GRAY8, SWS_AREA,
                                        nullptr, nullptr, nullptr));
  if (!thumb_sws_) return Status::Internal("cannot set up the thumbnail conversion");
  alignas(64) uint8_t gray[16 * 64];  // rows padded for swscale's SIMD
  uint8_t* dst[4] = {gray};
  int dst_stride[4] = {64};
  sws_scale(thumb_sws_.get(), frame->data, frame->linesize, 0, frame->height, dst, dst_stride);
  std::array<uint8_t, 256> thumb;
  for (int y = 0; y < 16; ++y) std::memcpy(thumb.data() + 16 * y, gray + 64 * y, 16);
  return thumb;
}

double ThumbnailDifference(const std::array<uint8_t, 256>& a, const std::array<uint8_t, 256>& b) {
  int sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += std::abs(a[i] - b[i]);
  return sum / (255.0 * a.size());
}

// Feeds packets to the decoder and hands each decoded frame to `on_frame`.
class FrameSink {
 public:
  FrameSink(OpenVideo& video, std::function<Status(AVFrame*)> on_frame)
      : video_(video), on_frame_(std::move(on_frame)), frame_(av_frame_alloc()) {}

  bool ok() const { return frame_ != nullptr; }
  int frames() const { return frames_; }
  const std::string& last_error() const { return last_error_; }

  // A packet the decoder rejects is skipped (a damaged frame need not end the video); the error is
  // kept for the message should no frame come out at all.
  Status Send(const AVPacket* packet) {
    const int err = avcodec_send_packet(video_.codec(), packet);
    if (err < 0 && err != AVERROR_EOF) last_error_ = AvError(err);
    return Receive();
  }
  // Outputs every frame the decoder holds back, then resets it for the next key frame.
  Status Drain() {
    Status st = Send(nullptr);
    Reset();
    return st;
  }
  // Drops what the decoder holds (before a seek).
  void Reset() {
    avcodec_flush_buffers(video_.codec());
    held_ = false;
  }
  // Called from on_frame: no more frames are taken out of the decoder until Resume (which takes
  // them); no packet may be sent meanwhile.
  void Hold() { held_ = true; }
  Status Resume() {
    held_ = false;
    return Receive();
  }

 private:
  Status Receive() {
    while (!held_) {
      const int err = avcodec_receive_frame(video_.codec(), frame_.get());
      if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return Status::Ok();
      if (err < 0) {
        last_error_ = AvError(err);
        return Status::Ok();
      }
      ++frames_;
      Status st = on_frame_(frame_.get());
      av_frame_unref(frame_.get());
      RETURN_IF_ERROR(st);
      if (video_.TimeUp()) return video_.TimeLimitError();
    }
    return Status::Ok();
  }

  OpenVideo& video_;
  std::function<Status(AVFrame*)> on_frame_;
  FramePtr frame_;
  int frames_ = 0;
  bool held_ = false;
  std::string last_error_;
};

Status NoFrameError(const FrameSink& sink) {
  return Status::Corruption("no frame could be decoded" +
                            (sink.last_error().empty() ? std::string() : " (" + sink.last_error() + ")"));
}

// The frame selection described at the top of the file.
class Sampler {
 public:
  Sampler(OpenVideo& video, const VideoOptions& options, const std::function<Status(VideoFrame)>& on_frame)
      : video_(video), options_(options), on_frame_(on_frame) {
    const double duration = video.info().duration_s;
    interval_ = options.interval_s;
    // Frames lie in [0, duration): samples at 0, I, 2I, … number at most max_frames.
    if (duration > 0) interval_ = std::max(interval_, duration / options.max_frames);
    late_ = 0.1 * interval_;
    scene_check_gap_ = interval_ / 4;
  }

  Status Run() {
    PacketPtr packet(av_packet_alloc());
    FrameSink sink(video_, [this](AVFrame* frame) { return OnFrame(frame); });
    if (!packet || !sink.ok()) return Status::ResourceExhausted("cannot allocate a frame");
    // Until the first key frame everything is decoded (a file cut mid-GOP, or one whose key
    // frames are not marked, still yields frames).
    bool whole_gop = true;
    double next_key = std::numeric_limits<double>::quiet_NaN();  // the current GOP's end
    double last_key = std::numeric_limits<double>::quiet_NaN();
    double key_spacing = std::numeric_limits<double>::quiet_NaN();
    double longest_key_spacing = 0;
    double last_seek = -std::numeric_limits<double>::infinity();
    while (count_ < options_.max_frames) {
      if (video_.TimeUp()) return video_.TimeLimitError();
      const int err = av_read_frame(video_.format(), packet.get());
      if (err == AVERROR_EOF) break;
      if (err < 0) {
        if (video_.TimeUp()) return video_.TimeLimitError();
        return Status::Corruption("cannot read a packet: " + AvError(err));
      }
      std::unique_ptr<AVPacket, decltype(&av_packet_unref)> unref(packet.get(), &av_packet_unref);
      if (packet->stream_index != video_.stream_index()) continue;
      const bool key = (packet->flags & AV_PKT_FLAG_KEY) != 0;
      if (!key) {
        // Inside a GOP a time sample falls in: decoded until the frames reach past the time (the
        // decoder's output lags a few packets behind, so `target_` may be a little stale: a
        // frame or two more is decoded, never fewer).
        if (!whole_gop) continue;
        if (!std::isnan(next_key) && next_key <= target_ + late_) {
          whole_gop = false;
          continue;
        }
        RETURN_IF_ERROR(sink.Send(packet.get()));
        continue;
      }

      if (whole_gop) RETURN_IF_ERROR(sink.Drain());  // the last GOP's frames, so `target_` is current
      if (count_ >= options_.max_frames) break;
      const double t = video_.Seconds(packet->pts != AV_NOPTS_VALUE ? packet->pts : packet->dts);
      if (std::isnan(t)) {  // no timestamp to decide by: decoded
        whole_gop = false;
        RETURN_IF_ERROR(sink.Send(packet.get()));
        RETURN_IF_ERROR(sink.Drain());
        continue;
      }
      // A key frame sooner than the stream's usual spacing is most likely an encoder's reaction to
      // a cut: worth a scene check whenever it comes.
      bool early_key = false;
      if (!std::isnan(last_key) && t > last_key) {
        key_spacing = t - last_key;
        early_key = key_spacing < 0.75 * longest_key_spacing;
        longest_key_spacing = std::max(longest_key_spacing, key_spacing);
      }
      last_key = t;
      // This GOP's end: the next key frame in the index, else as far as the last GOP was long,
      // else the end of the video; unknown (infinite) in a file without index or duration.
      next_key = video_.NextKeyFrame(t);
      if (std::isnan(next_key)) {
        const double duration = video_.info().duration_s;
        if (duration > 0 && (video_.HasIndex() || std::isnan(key_spacing))) {
          next_key = duration;  // the last GOP
        } else {
          next_key = !std::isnan(key_spacing) ? t + key_spacing : std::numeric_limits<double>::infinity();
        }
      }
      const bool time_due = t >= target_ - kSameTime;
      const double target_after = time_due ? NextTarget(t) : target_;
      const bool scene_due = SceneChecksWanted(t) && (early_key || t >= last_check_ + scene_check_gap_);
      whole_gop = next_key > target_after + late_;
      if (whole_gop) {
        RETURN_IF_ERROR(sink.Send(packet.get()));
      } else if (time_due || scene_due) {
        RETURN_IF_ERROR(sink.Send(packet.get()));
        RETURN_IF_ERROR(sink.Drain());
      } else if (video_.HasIndex()) {
        // Nothing wanted in this GOP: past every GOP before the next wanted time at once.
        const double wanted = SceneChecksWanted(t) ? std::min(target_, last_check_ + scene_check_gap_) : target_;
        const double seek_to = std::isfinite(wanted) ? video_.KeyFrameAtOrBefore(wanted + late_)
                                                     : std::numeric_limits<double>::quiet_NaN();
        if (std::isfinite(seek_to) && seek_to > next_key + kSameTime && seek_to > last_seek) {
          last_seek = seek_to;
          last_key = std::numeric_limits<double>::quiet_NaN();  // the next key frame's distance is no GOP's
          const int seek_err =
              av_seek_frame(video_.format(), video_.stream_index(), video_.Timestamp(seek_to), AVSEEK_FLAG_BACKWARD);
          if (seek_err < 0 && video_.TimeUp()) return video_.TimeLimitError();
        }
      }
    }
    if (whole_gop) RETURN_IF_ERROR(sink.Drain());
    if (count_ == 0) {
      if (video_.TimeUp()) return video_.TimeLimitError();
      return NoFrameError(sink);
    }
    return Status::Ok();
  }

 private:
  // The time sample after one taken at `t`: on the interval's grid, so that samples a frame or a
  // key frame late do not push every later one (gaps stay within I plus one sample's lateness,
  // never drifting), but never sooner than half an interval after `t`.
  double NextTarget(double t) const {
    const double on_grid = target_ + interval_;
    return std::isfinite(on_grid) && on_grid >= t + 0.5 * interval_ ? on_grid : t + interval_;
  }

  // Whether a scene sample at `t` would still leave room for the time samples after it.
  bool SceneChecksWanted(double t) const {
    if (options_.scene_threshold <= 0) return false;
    const double duration = video_.info().duration_s;
    const double needed_after = duration > 0 ? std::floor(std::max(0.0, duration - t) / interval_) : 1;
    return count_ + 1 + needed_after <= options_.max_frames;
  }

  Status OnFrame(AVFrame* frame) {
    const double t = video_.FrameTime(frame);
    if (t <= last_sample_ || count_ >= options_.max_frames) return Status::Ok();
    const bool time_due = t >= target_ - kSameTime;
    const bool check =
        options_.scene_threshold > 0 && (time_due || frame->key_frame != 0 || t >= last_check_ + scene_check_gap_);
    if (!time_due && !check) return Status::Ok();
    std::array<uint8_t, 256> thumb{};
    bool scene = false;
    if (check) {
      ASSIGN_OR_RETURN(thumb, video_.Thumbnail(frame));
      last_check_ = t;
      scene = !time_due && has_thumb_ && SceneChecksWanted(t) &&
              ThumbnailDifference(thumb, last_thumb_) > options_.scene_threshold;
    }
    if (!time_due && !scene) return Status::Ok();
    ASSIGN_OR_RETURN(Image image, video_.ToRgb(frame));
    last_sample_ = t;
    target_ = time_due ? NextTarget(t) : t + interval_;
    last_thumb_ = thumb;
    has_thumb_ = check;
    ++count_;
    const auto handed = Clock::now();
    Status st = on_frame_(VideoFrame{.time_s = t, .image = std::move(image)});
    video_.NotCounting(Clock::now() - handed);
    return st;
  }

  OpenVideo& video_;
  const VideoOptions& options_;
  const std::function<Status(VideoFrame)>& on_frame_;
  double interval_;
  double late_;                                               // how late a key frame may stand in for a time sample
  double scene_check_gap_;                                    // the least time between scene checks
  double target_ = -std::numeric_limits<double>::infinity();  // the next time sample's time
  double last_sample_ = -std::numeric_limits<double>::infinity();
  double last_check_ = -std::numeric_limits<double>::infinity();
  std::array<uint8_t, 256> last_thumb_{};
  bool has_thumb_ = false;
  int count_ = 0;
};

// The frame shown at each of a rising series of times (VideoFramesAt): the last frame whose time
// is at most the time asked for (or the first after a seek, should none be), decoded from the key
// frame at or before it, or on from the previous time's when no key frame lies between. The first
// frame past a time (or the frame at the time itself) ends the decoding for it; the frames the
// decoder has after it are left there for the next time.
class FramesAt {
 public:
  explicit FramesAt(OpenVideo& video)
      : video_(video),
        sink_(video, [this](AVFrame* frame) { return OnFrame(frame); }),
        shown_(av_frame_alloc()),
        ahead_(av_frame_alloc()),
        packet_(av_packet_alloc()) {}

  Result<VideoFrame> At(double time_s) {
    if (!sink_.ok() || !shown_ || !ahead_ || !packet_) return Status::ResourceExhausted("cannot allocate a frame");
    const double duration = video_.info().duration_s;
    target_ = std::max(0.0, duration > 0 ? std::min(time_s, duration) : time_s);
    reached_ = false;
    if (!Continues()) {
      // Nothing read since the file was opened: the demuxer is at the start already, and the first
      // frame needs no seek (which can fail where no frame is known to be a key frame, as in an
      // animated PNG whose first frame blends over the canvas).
      const bool at_start = !decoding_ && !have_;
      if (!(at_start && target_ <= kSameTime) &&
          av_seek_frame(video_.format(), video_.stream_index(), video_.Timestamp(target_), AVSEEK_FLAG_BACKWARD) < 0) {
        if (video_.TimeUp()) return video_.TimeLimitError();
        // A failed seek may have moved the demuxer (read ahead, flushed): from the start, unless
        // nothing was read since the file was opened (it is there already).
        if (!at_start &&
            av_seek_frame(video_.format(), video_.stream_index(), video_.Timestamp(0), AVSEEK_FLAG_BACKWARD) < 0) {
          return Status::Corruption("cannot seek to the frame at " + std::to_string(target_) + " s, nor to the start");
        }
      }
      sink_.Reset();
      have_ = has_ahead_ = false;
      decoding_ = true;
    } else {
      if (has_ahead_ && ahead_time_ <= target_ + kSameTime) TakeAhead();
      reached_ = std::abs(shown_time_ - target_) <= kSameTime;
      if (!has_ahead_ && !reached_) RETURN_IF_ERROR(sink_.Resume());  // the frames the decoder had after it
    }
    while (!has_ahead_ && !reached_ && decoding_) {
      if (video_.TimeUp()) return video_.TimeLimitError();
      const int err = av_read_frame(video_.format(), packet_.get());
      if (err == AVERROR_EOF) {
        RETURN_IF_ERROR(sink_.Drain());
        decoding_ = false;  // the next time seeks
        break;
      }
      if (err < 0) {
        if (video_.TimeUp()) return video_.TimeLimitError();
        return Status::Corruption("cannot read a packet: " + AvError(err));
      }
      std::unique_ptr<AVPacket, decltype(&av_packet_unref)> unref(packet_.get(), &av_packet_unref);
      if (packet_->stream_index != video_.stream_index()) continue;
      RETURN_IF_ERROR(sink_.Send(packet_.get()));
    }
    if (!have_) return NoFrameError(sink_);
    ASSIGN_OR_RETURN(Image image, video_.ToRgb(shown_.get()));
    return VideoFrame{.time_s = shown_time_, .image = std::move(image)};
  }

 private:
  // The time of the last frame out of the decoder.
  double LastOut() const { return has_ahead_ ? ahead_time_ : shown_time_; }

  // Whether decoding on from the last time reaches `target_` sooner than a seek: nothing before
  // it is wanted again, and no key frame is known to lie between. Where the index is missing or
  // still growing as the file is read (Matroska without cues), a key frame may lie between
  // unknown: a target more than kFarAhead away is sought (a seek reads on without decoding).
  bool Continues() {
    if (!decoding_ || !have_ || target_ < shown_time_ - kSameTime) return false;
    const double last_out = LastOut();
    const double key = video_.KeyFrameAtOrBefore(target_);
    if (!std::isnan(key) && key > last_out + kSameTime) return false;
    return video_.IndexComplete() || target_ - last_out <= kFarAhead;
  }

  static constexpr double kFarAhead = 5.0;  // seconds

  void TakeAhead() {
    av_frame_unref(shown_.get());
    av_frame_move_ref(shown_.get(), ahead_.get());
    shown_time_ = ahead_time_;
    has_ahead_ = false;
  }

  Status OnFrame(AVFrame* frame) {
    const double t = video_.FrameTime(frame);
    if (have_ && t > target_ + kSameTime) {
      av_frame_unref(ahead_.get());
      av_frame_move_ref(ahead_.get(), frame);
      ahead_time_ = t;
      has_ahead_ = true;
      sink_.Hold();
      return Status::Ok();
    }
    av_frame_unref(shown_.get());
    av_frame_move_ref(shown_.get(), frame);
    shown_time_ = t;
    have_ = true;
    // The frame at the very time asked for (frames come out in time order): no need to see the next.
    if (t >= target_ - kSameTime) {
      reached_ = true;
      sink_.Hold();
    }
    return Status::Ok();
  }

  OpenVideo& video_;
  FrameSink sink_;
  FramePtr shown_;  // the last frame at or before the target
  FramePtr ahead_;  // the first frame past it
  PacketPtr packet_;
  double target_ = 0;
  double shown_time_ = 0;
  double ahead_time_ = 0;
  bool have_ = false;
  bool has_ahead_ = false;
  bool reached_ = false;   // shown_ is at the target itself
  bool decoding_ = false;  // the demuxer and decoder are mid-stream (since a seek)
};

}  // namespace

Result<VideoInfo> ProbeVideo(const VideoSource& source, const VideoOptions& options) {
  auto video = OpenVideo::Open(source, options, false);
  if (!video.ok()) return video.status();
  return (*video)->info();
}

Result<VideoInfo> SampleVideo(const VideoSource& source, const VideoOptions& options,
                              const std::function<Status(VideoFrame frame)>& on_frame) {
  if (options.max_frames < 1) return Status::InvalidArgument("max_frames must be at least 1");
  if (!(options.interval_s > 0) || !std::isfinite(options.interval_s)) {
    return Status::InvalidArgument("interval_s must be a positive number of seconds");
  }
  auto video = OpenVideo::Open(source, options, true);
  if (!video.ok()) return video.status();
  Sampler sampler(**video, options, on_frame);
  Status st = sampler.Run();
  if (!st.ok()) return st.WithContext(FormatInfo((*video)->info().format)->display_name);
  return (*video)->info();
}

Result<VideoFrame> VideoFrameAt(const VideoSource& source, double time_s, const VideoOptions& options) {
  std::optional<VideoFrame> shown;
  const double times[] = {time_s};
  Result<VideoInfo> info = VideoFramesAt(source, times, options, [&](VideoFrame frame) {
    shown = std::move(frame);
    return Status::Ok();
  });
  if (!info.ok()) return info.status();
  return std::move(*shown);
}

Result<VideoInfo> VideoFramesAt(const VideoSource& source, std::span<const double> times_s, const VideoOptions& options,
                                const std::function<Status(VideoFrame frame)>& on_frame) {
  for (size_t i = 0; i < times_s.size(); ++i) {
    if (!std::isfinite(times_s[i])) return Status::InvalidArgument("a frame time is not a number of seconds");
    if (i > 0 && times_s[i] < times_s[i - 1]) return Status::InvalidArgument("frame times must be in ascending order");
  }
  auto video = OpenVideo::Open(source, options, false);
  if (!video.ok()) return video.status();
  FramesAt frames(**video);
  const auto fail = [&](const Status& st) { return st.WithContext(FormatInfo((*video)->info().format)->display_name); };
  for (const double t : times_s) {
    Result<VideoFrame> frame = frames.At(t);
    if (!frame.ok()) return fail(frame.status());
    const auto handed = Clock::now();
    Status st = on_frame(std::move(*frame));
    (*video)->NotCounting(Clock::now() - handed);
    RETURN_IF_ERROR(st);
  }
  return (*video)->info();
}

namespace media {

Result<RawDecode> DecodeApngFirstFrame(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  VideoOptions video_options;
  video_options.max_pixels = options.max_pixels;
  auto video = OpenVideo::Open(VideoSource{.bytes = bytes}, video_options, false, /*animated_png=*/true);
  if (!video.ok()) return video.status();
  FramesAt frames(**video);
  ASSIGN_OR_RETURN(VideoFrame frame, frames.At(0));
  RawDecode out;
  out.image = std::move(frame.image);
  return out;
}

}  // namespace media

}  // namespace imgsearch
