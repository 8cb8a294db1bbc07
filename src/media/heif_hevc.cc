// HEVC pictures in HEIF files decoded by FFmpeg's libavcodec instead of libde265, registered with
// libheif as a decoder plugin that outranks libde265's (priority 100). libheif still parses the
// file, assembles grids from their tiles, converts to RGB and applies the transformations; only the
// HEVC decoding moves. HEVC decoding is exact, so both decoders give the same samples; FFmpeg's is
// the faster one (docs/performance.md, "Decoding by format").
//
// libheif hands a plugin the item's parameter sets and slices as NAL units, each behind a 4-byte
// big-endian length; libavcodec takes them as an Annex B byte stream (start codes) in one packet.
#include <libheif/heif.h>
#include <libheif/heif_plugin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "media/decoders.h"
#include "media/ffmpeg.h"

extern "C" {
#include <libavutil/pixdesc.h>
}

namespace imgsearch::media {

namespace {

const heif_error kSuccess = {heif_error_Ok, heif_suberror_Unspecified, "Success"};

// Above libde265's 100: the plugin with the larger value decodes.
constexpr int kPriority = 120;

// The pixel limit of the decode running on this thread (ScopedHevcPixelLimit), 0 for none.
thread_local uint64_t t_max_pixels = 0;
// The limits of every decode in progress: a grid's tiles, which libheif decodes on threads of its
// own, are held to the largest (all decodes in a process normally share one).
std::mutex limits_mutex;
std::multiset<uint64_t> live_limits;

uint64_t PixelLimit() {
  if (t_max_pixels != 0) return t_max_pixels;
  const std::lock_guard lock(limits_mutex);
  return live_limits.empty() ? DecodeOptions{}.max_pixels : *live_limits.rbegin();
}

// libheif frees the decoder before it copies an error's message, so messages live here: one
// thread decodes one picture at a time, and libheif copies the text on that thread right after.
thread_local std::string t_error;

struct HevcDecoder {
  std::vector<uint8_t> annex_b;
  bool strict = false;
};

heif_error Failure(heif_error_code code, heif_suberror_code subcode, std::string message) {
  t_error = std::move(message);
  return {code, subcode, t_error.c_str()};
}

const char* PluginName() { return "FFmpeg HEVC decoder (imgsearch)"; }

int SupportsFormat(heif_compression_format format) {
  return format == heif_compression_HEVC && avcodec_find_decoder(AV_CODEC_ID_HEVC) != nullptr ? kPriority : 0;
}

heif_error NewDecoder(void** decoder) {
  *decoder = new HevcDecoder();
  return kSuccess;
}

void FreeDecoder(void* decoder) { delete static_cast<HevcDecoder*>(decoder); }

void SetStrictDecoding(void* decoder, int flag) { static_cast<HevcDecoder*>(decoder)->strict = flag != 0; }

heif_error PushData(void* decoder, const void* data, size_t size) {
  auto& out = static_cast<HevcDecoder*>(decoder)->annex_b;
  const auto* bytes = static_cast<const uint8_t*>(data);
  size_t pos = 0;
  while (pos < size) {
    if (size - pos < 4) {
      return Failure(heif_error_Decoder_plugin_error, heif_suberror_End_of_data, "HEVC data cut inside a NAL length");
    }
    const size_t length = (size_t{bytes[pos]} << 24) | (size_t{bytes[pos + 1]} << 16) | (size_t{bytes[pos + 2]} << 8) |
                          size_t{bytes[pos + 3]};
    pos += 4;
    if (length > size - pos) {
      return Failure(heif_error_Decoder_plugin_error, heif_suberror_End_of_data, "HEVC data cut inside a NAL unit");
    }
    static constexpr uint8_t kStartCode[] = {0, 0, 0, 1};
    out.insert(out.end(), std::begin(kStartCode), std::end(kStartCode));
    out.insert(out.end(), bytes + pos, bytes + pos + length);
    pos += length;
  }
  return kSuccess;
}

struct Layout {
  heif_colorspace colorspace = heif_colorspace_undefined;
  heif_chroma chroma = heif_chroma_undefined;
  int bits = 0;  // 0: a format libheif does not take
  int planes = 0;
  int shift_x = 0;  // chroma subsampling, as log2
  int shift_y = 0;
};

// The libheif layout of an FFmpeg HEVC output format: planar, little-endian, grey or three
// components, 8 to 16 bits. FFmpeg names an RGB-coded stream (matrix 0: lossless HEIF) "gbrp", its
// planes in coding order (G, B, R), which is what libheif expects as Y, Cb, Cr with matrix 0.
Layout LayoutOf(AVPixelFormat format) {
  const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(format);
  Layout l;
  if (d == nullptr ||
      (d->flags & (AV_PIX_FMT_FLAG_BE | AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_BITSTREAM | AV_PIX_FMT_FLAG_HWACCEL |
                   AV_PIX_FMT_FLAG_FLOAT | AV_PIX_FMT_FLAG_ALPHA)) != 0 ||
      ((d->flags & AV_PIX_FMT_FLAG_PLANAR) == 0 && d->nb_components > 1) ||
      (d->nb_components != 1 && d->nb_components != 3)) {
    return l;
  }
  const int bits = d->comp[0].depth;
  unsigned planes = 0;  // each component in a plane of its own
  for (int c = 0; c < d->nb_components; ++c) {
    if (d->comp[c].depth != bits || d->comp[c].plane >= d->nb_components || d->comp[c].shift != 0) return l;
    planes |= 1u << d->comp[c].plane;
  }
  if (planes != (1u << d->nb_components) - 1) return l;
  if (bits < 8 || bits > 16) return l;
  l.shift_x = d->log2_chroma_w;
  l.shift_y = d->log2_chroma_h;
  if (d->nb_components == 1) {
    l.colorspace = heif_colorspace_monochrome;
    l.chroma = heif_chroma_monochrome;
  } else if (l.shift_x == 1 && l.shift_y == 1) {
    l.chroma = heif_chroma_420;
  } else if (l.shift_x == 1 && l.shift_y == 0) {
    l.chroma = heif_chroma_422;
  } else if (l.shift_x == 0 && l.shift_y == 0) {
    l.chroma = heif_chroma_444;
  } else {
    return l;
  }
  if (d->nb_components == 3) l.colorspace = heif_colorspace_YCbCr;
  l.bits = bits;
  l.planes = d->nb_components;
  return l;
}

// The decoded frame as a libheif image, with the stream's colour description (as libde265's
// plugin gives it: libheif prefers the file's own nclx box when there is one).
heif_error ToHeifImage(const AVFrame& frame, heif_image** out) {
  const Layout layout = LayoutOf(static_cast<AVPixelFormat>(frame.format));
  if (layout.bits == 0) {
    const char* name = av_get_pix_fmt_name(static_cast<AVPixelFormat>(frame.format));
    return Failure(heif_error_Unsupported_feature, heif_suberror_Unsupported_color_conversion,
                   std::string("HEVC pixel format ") + (name != nullptr ? name : "unknown") + " is not supported");
  }
  heif_image* image = nullptr;
  heif_error e = heif_image_create(frame.width, frame.height, layout.colorspace, layout.chroma, &image);
  if (e.code != heif_error_Ok) return e;
  static constexpr heif_channel kChannels[] = {heif_channel_Y, heif_channel_Cb, heif_channel_Cr};
  const int shift_x = layout.shift_x, shift_y = layout.shift_y;
  const size_t sample_bytes = layout.bits > 8 ? 2 : 1;
  for (int p = 0; p < layout.planes; ++p) {
    const int w = p == 0 ? frame.width : (frame.width + (1 << shift_x) - 1) >> shift_x;
    const int h = p == 0 ? frame.height : (frame.height + (1 << shift_y) - 1) >> shift_y;
    e = heif_image_add_plane(image, kChannels[p], w, h, layout.bits);
    if (e.code != heif_error_Ok) {
      heif_image_release(image);
      return e;
    }
    int stride = 0;
    uint8_t* dst = heif_image_get_plane(image, kChannels[p], &stride);
    for (int y = 0; y < h; ++y) {
      std::memcpy(dst + static_cast<size_t>(y) * stride, frame.data[p] + static_cast<ptrdiff_t>(y) * frame.linesize[p],
                  sample_bytes * static_cast<size_t>(w));
    }
  }
  heif_color_profile_nclx* nclx = heif_nclx_color_profile_alloc();
  if (nclx != nullptr) {
    // Values H.273 does not define are left as libheif's "unspecified" (the setters refuse them).
    heif_nclx_color_profile_set_color_primaries(nclx, static_cast<uint16_t>(frame.color_primaries));
    heif_nclx_color_profile_set_transfer_characteristics(nclx, static_cast<uint16_t>(frame.color_trc));
    heif_nclx_color_profile_set_matrix_coefficients(nclx, static_cast<uint16_t>(frame.colorspace));
    nclx->full_range_flag = frame.color_range == AVCOL_RANGE_JPEG ? 1 : 0;
    heif_image_set_nclx_color_profile(image, nclx);
    heif_nclx_color_profile_free(nclx);
  }
  *out = image;
  return kSuccess;
}

// Allocates a picture unless it has more pixels than the limit `context->opaque` points to.
int GetBuffer(AVCodecContext* context, AVFrame* frame, int flags) {
  const uint64_t limit = *static_cast<const uint64_t*>(context->opaque);
  if (static_cast<uint64_t>(std::max(frame->width, 0)) * static_cast<uint64_t>(std::max(frame->height, 0)) > limit) {
    return AVERROR(ERANGE);
  }
  return avcodec_default_get_buffer2(context, frame, flags);
}

heif_error Decode(void* decoder, heif_image** out) {
  *out = nullptr;  // also when an exception ends the decode
  const auto& hevc = *static_cast<HevcDecoder*>(decoder);
  SilenceFfmpeg();
  const AVCodec* codec = avcodec_find_decoder(AV_CODEC_ID_HEVC);
  CodecPtr context(codec != nullptr ? avcodec_alloc_context3(codec) : nullptr);
  if (!context)
    return Failure(heif_error_Memory_allocation_error, heif_suberror_Unspecified, "cannot allocate an HEVC decoder");
  // Refused before allocating the picture (a stream's own size need not be the item's), in the
  // allocation itself: FFmpeg's own max_pixels check counts the picture's padded width. Its slack
  // here bounds what the decoder allocates from the stream's header.
  uint64_t limit = PixelLimit();
  context->opaque = &limit;
  context->get_buffer2 = GetBuffer;
  context->max_pixels = static_cast<int64_t>(std::min<uint64_t>(limit, INT64_MAX / 2) * 2);
  // A crop at the left or top that is not a multiple of 32 or 64 pixels is applied exactly (FFmpeg
  // rounds it down otherwise, for aligned planes).
  context->flags |= AV_CODEC_FLAG_UNALIGNED;
  // One thread: ingest decodes a picture per core already, and libheif decodes a grid's tiles in
  // parallel.
  context->thread_count = 1;
  if (hevc.strict) context->err_recognition = AV_EF_EXPLODE;
  int err = avcodec_open2(context.get(), codec, nullptr);
  if (err < 0)
    return Failure(heif_error_Decoder_plugin_error, heif_suberror_Unspecified,
                   "cannot open FFmpeg's HEVC decoder: " + AvError(err));
  PacketPtr packet(av_packet_alloc());
  FramePtr frame(av_frame_alloc());
  if (!packet || !frame)
    return Failure(heif_error_Memory_allocation_error, heif_suberror_Unspecified, "cannot allocate an HEVC frame");
  if (hevc.annex_b.size() > static_cast<size_t>(INT32_MAX)) {
    return Failure(heif_error_Decoder_plugin_error, heif_suberror_Unspecified, "HEVC item larger than 2 GB");
  }
  // The packet borrows the bytes: send_packet copies what it keeps of a packet without a buffer.
  packet->data = const_cast<uint8_t*>(hevc.annex_b.data());
  packet->size = static_cast<int>(hevc.annex_b.size());
  err = avcodec_send_packet(context.get(), packet.get());
  if (err >= 0) err = avcodec_send_packet(context.get(), nullptr);  // no more: the frame comes out
  if (err >= 0) err = avcodec_receive_frame(context.get(), frame.get());
  const uint64_t pixels =
      static_cast<uint64_t>(std::max(context->width, 0)) * static_cast<uint64_t>(std::max(context->height, 0));
  if (err < 0 && pixels > limit) {
    return Failure(heif_error_Memory_allocation_error, heif_suberror_Security_limit_exceeded,
                   "the HEVC picture is " + std::to_string(context->width) + "x" + std::to_string(context->height) +
                       ", more than the limit of " + std::to_string(limit) + " pixels");
  }
  if (err == AVERROR_EOF || err == AVERROR(EAGAIN)) {
    return Failure(heif_error_Decoder_plugin_error, heif_suberror_Unspecified, "the HEVC data holds no picture");
  }
  if (err < 0)
    return Failure(heif_error_Decoder_plugin_error, heif_suberror_Unspecified, "damaged HEVC data: " + AvError(err));
  if (frame->decode_error_flags != 0 || (frame->flags & AV_FRAME_FLAG_CORRUPT) != 0) {
    return Failure(heif_error_Decoder_plugin_error, heif_suberror_Unspecified,
                   "damaged HEVC data: the picture is incomplete");
  }
  return ToHeifImage(*frame, out);
}

// libheif's callbacks are C: no exception may cross them.
template <auto Callback, typename... Args>
heif_error NoThrow(Args... args) {
  try {
    return Callback(args...);
  } catch (const std::bad_alloc&) {
    return Failure(heif_error_Memory_allocation_error, heif_suberror_Unspecified, "out of memory");
  }
}

const heif_decoder_plugin kPlugin = {
    .plugin_api_version = 3,
    .get_plugin_name = PluginName,
    .init_plugin = nullptr,
    .deinit_plugin = nullptr,
    .does_support_format = SupportsFormat,
    .new_decoder = NoThrow<NewDecoder, void**>,
    .free_decoder = FreeDecoder,
    .push_data = NoThrow<PushData, void*, const void*, size_t>,
    .decode_image = NoThrow<Decode, void*, heif_image**>,
    .set_strict_decoding = SetStrictDecoding,
    .id_name = "imgsearch-ffmpeg-hevc",
};

}  // namespace

ScopedHevcPixelLimit::ScopedHevcPixelLimit(uint64_t max_pixels) : previous_(t_max_pixels) {
  static std::once_flag registered;
  std::call_once(registered, [] { heif_register_decoder_plugin(&kPlugin); });
  t_max_pixels = max_pixels;
  const std::lock_guard lock(limits_mutex);
  live_limits.insert(max_pixels);
}

ScopedHevcPixelLimit::~ScopedHevcPixelLimit() {
  {
    const std::lock_guard lock(limits_mutex);
    live_limits.erase(live_limits.find(t_max_pixels));
  }
  t_max_pixels = previous_;
}

}  // namespace imgsearch::media
