// WebP (libwebp), GIF (giflib, first frame), BMP (stb_image) and TIFF (libtiff).
#include <gif_lib.h>
#include <stb/stb_image.h>
#include <tiffio.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include <algorithm>
#include <cstdarg>
#include <cstring>
#include <memory>

#include "media/decoders.h"

namespace imgsearch::media {

// ---- WebP -------------------------------------------------------------------------------------

Result<RawDecode> DecodeWebp(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  WebPBitstreamFeatures features;
  if (WebPGetFeatures(bytes.data(), bytes.size(), &features) != VP8_STATUS_OK) {
    return Status::Corruption("cannot read the header (truncated or corrupt)");
  }
  RETURN_IF_ERROR(CheckDimensions(features.width, features.height, options));
  RawDecode out;
  // With min_side, a still picture is scaled down in the decoder by 2, 4 or 8 (libwebp's
  // rescaler averages the pixels it drops) while its shorter side stays ≥ min_side, as JPEGs are.
  const int denom = features.has_animation ? 1 : ReductionFactor(features.width, features.height, options.min_side);
  if (denom > 1) {
    out.image = Image(features.width / denom, features.height / denom);
    out.full_width = features.width;
    out.full_height = features.height;
    WebPDecoderConfig config;
    if (!WebPInitDecoderConfig(&config)) return Status::Internal("libwebp version mismatch");
    config.options.use_scaling = 1;
    config.options.scaled_width = out.image.width;
    config.options.scaled_height = out.image.height;
    config.output.colorspace = MODE_RGB;
    config.output.is_external_memory = 1;
    config.output.u.RGBA.rgba = out.image.rgb.data();
    config.output.u.RGBA.stride = out.image.width * 3;
    config.output.u.RGBA.size = out.image.rgb.size();
    const VP8StatusCode status = WebPDecode(bytes.data(), bytes.size(), &config);
    WebPFreeDecBuffer(&config.output);
    if (status != VP8_STATUS_OK) return Status::Corruption("pixel data is truncated or corrupt");
  } else {
    out.image = Image(features.width, features.height);
  }
  WebPData data{bytes.data(), bytes.size()};
  if (features.has_animation) {
    // The first frame on its canvas (transparent where the frame does not reach), as Pillow reads
    // an animation; alpha then dropped.
    WebPAnimDecoderOptions anim_options;
    if (!WebPAnimDecoderOptionsInit(&anim_options)) return Status::Internal("libwebp version mismatch");
    anim_options.color_mode = MODE_RGBA;
    anim_options.use_threads = 0;
    std::unique_ptr<WebPAnimDecoder, void (*)(WebPAnimDecoder*)> anim(WebPAnimDecoderNew(&data, &anim_options),
                                                                      WebPAnimDecoderDelete);
    uint8_t* rgba = nullptr;
    int timestamp = 0;
    WebPAnimInfo info;
    if (!anim || !WebPAnimDecoderGetInfo(anim.get(), &info) || static_cast<int>(info.canvas_width) != features.width ||
        static_cast<int>(info.canvas_height) != features.height ||
        !WebPAnimDecoderGetNext(anim.get(), &rgba, &timestamp)) {
      return Status::Corruption("the first frame is truncated or corrupt");
    }
    const size_t n = static_cast<size_t>(features.width) * features.height;
    for (size_t i = 0; i < n; ++i) std::memcpy(out.image.rgb.data() + 3 * i, rgba + 4 * i, 3);
  } else if (denom == 1 && WebPDecodeRGBInto(bytes.data(), bytes.size(), out.image.rgb.data(), out.image.rgb.size(),
                                             features.width * 3) == nullptr) {
    // RGB output drops alpha without compositing, as Pillow's convert("RGB") does.
    return Status::Corruption("pixel data is truncated or corrupt");
  }
  if (WebPDemuxer* demux = WebPDemux(&data)) {
    WebPChunkIterator chunk;
    if (WebPDemuxGetChunk(demux, "EXIF", 1, &chunk)) {
      const uint8_t* p = chunk.chunk.bytes;
      size_t n = chunk.chunk.size;
      if (n > 6 && std::memcmp(p, "Exif\0\0", 6) == 0) {
        p += 6;
        n -= 6;
      }
      out.exif.assign(p, p + n);
      WebPDemuxReleaseChunkIterator(&chunk);
    }
    WebPDemuxDelete(demux);
  }
  return out;
}

// ---- GIF --------------------------------------------------------------------------------------

namespace {

struct GifReader {
  std::span<const uint8_t> bytes;
  size_t pos = 0;
};

int GifRead(GifFileType* gif, GifByteType* out, int n) {
  auto* r = static_cast<GifReader*>(gif->UserData);
  const size_t take = std::min(static_cast<size_t>(n), r->bytes.size() - r->pos);
  std::memcpy(out, r->bytes.data() + r->pos, take);
  r->pos += take;
  return static_cast<int>(take);
}

struct GifCloser {
  void operator()(GifFileType* gif) const {
    int err = 0;
    DGifCloseFile(gif, &err);
  }
};

Status GifError(const char* what, int code) {
  const char* message = GifErrorString(code);
  return Status::Corruption(std::string(what) + ": " + (message ? message : "unknown error"));
}

}  // namespace

Result<RawDecode> DecodeGif(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  GifReader reader{bytes, 0};
  int err = 0;
  std::unique_ptr<GifFileType, GifCloser> gif(DGifOpen(&reader, GifRead, &err));
  if (!gif) return GifError("cannot read the header", err);
  RETURN_IF_ERROR(CheckDimensions(gif->SWidth, gif->SHeight, options));

  int transparent = -1;
  GifRecordType record;
  do {
    if (DGifGetRecordType(gif.get(), &record) == GIF_ERROR) return GifError("reading a record", gif->Error);
    if (record == EXTENSION_RECORD_TYPE) {
      int code = 0;
      GifByteType* ext = nullptr;
      if (DGifGetExtension(gif.get(), &code, &ext) == GIF_ERROR) return GifError("reading an extension", gif->Error);
      if (code == GRAPHICS_EXT_FUNC_CODE && ext != nullptr && ext[0] >= 4 && (ext[1] & 1)) transparent = ext[4];
      while (ext != nullptr) {
        if (DGifGetExtensionNext(gif.get(), &ext) == GIF_ERROR) return GifError("reading an extension", gif->Error);
      }
    } else if (record == TERMINATE_RECORD_TYPE) {
      return Status::Corruption("no image in the file");
    }
  } while (record != IMAGE_DESC_RECORD_TYPE);

  if (DGifGetImageDesc(gif.get()) == GIF_ERROR) return GifError("reading the image descriptor", gif->Error);
  const GifImageDesc& desc = gif->Image;
  const ColorMapObject* map = desc.ColorMap ? desc.ColorMap : gif->SColorMap;
  if (map == nullptr) return Status::Corruption("the first frame has no colour table");
  if (desc.Width <= 0 || desc.Height <= 0 || desc.Left < 0 || desc.Top < 0 || desc.Left + desc.Width > gif->SWidth ||
      desc.Top + desc.Height > gif->SHeight) {
    return Status::Corruption("the first frame lies outside the logical screen");
  }

  // The canvas outside the first frame shows the transparent (else the background) colour.
  std::vector<uint8_t> indices(static_cast<size_t>(gif->SWidth) * gif->SHeight,
                               static_cast<uint8_t>(transparent >= 0 ? transparent : gif->SBackGroundColor));
  std::vector<GifPixelType> line(static_cast<size_t>(desc.Width));
  auto read_row = [&](int y) -> Status {
    if (DGifGetLine(gif.get(), line.data(), desc.Width) == GIF_ERROR) return GifError("reading pixels", gif->Error);
    std::memcpy(indices.data() + static_cast<size_t>(desc.Top + y) * gif->SWidth + desc.Left, line.data(), line.size());
    return Status::Ok();
  };
  if (desc.Interlace) {
    constexpr int kOffsets[] = {0, 4, 2, 1};
    constexpr int kSteps[] = {8, 8, 4, 2};
    for (int pass = 0; pass < 4; ++pass) {
      for (int y = kOffsets[pass]; y < desc.Height; y += kSteps[pass]) RETURN_IF_ERROR(read_row(y));
    }
  } else {
    for (int y = 0; y < desc.Height; ++y) RETURN_IF_ERROR(read_row(y));
  }

  RawDecode out;
  out.image = Image(gif->SWidth, gif->SHeight);
  for (size_t i = 0; i < indices.size(); ++i) {
    const int idx = indices[i] < map->ColorCount ? indices[i] : 0;
    out.image.rgb[3 * i + 0] = map->Colors[idx].Red;
    out.image.rgb[3 * i + 1] = map->Colors[idx].Green;
    out.image.rgb[3 * i + 2] = map->Colors[idx].Blue;
  }
  return out;
}

// ---- BMP --------------------------------------------------------------------------------------

namespace {

uint32_t ReadLe(std::span<const uint8_t> b, size_t at, int n) {
  uint32_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[at + i];
  return v;
}

// stb_image reads past the end of a cut-off uncompressed BMP as zeros; Pillow calls that file
// truncated, and so do we.
Status CheckBmpComplete(std::span<const uint8_t> b) {
  if (b.size() < 26) return Status::Corruption("header is truncated");
  const uint32_t data_offset = ReadLe(b, 10, 4);
  const uint32_t header_size = ReadLe(b, 14, 4);
  int64_t width = 0, height = 0;
  uint32_t bpp = 0, compression = 0;
  if (header_size == 12) {  // OS/2 BITMAPCOREHEADER
    width = ReadLe(b, 18, 2);
    height = ReadLe(b, 20, 2);
    bpp = ReadLe(b, 24, 2);
  } else {
    if (b.size() < 34) return Status::Corruption("header is truncated");
    width = static_cast<int32_t>(ReadLe(b, 18, 4));
    height = static_cast<int32_t>(ReadLe(b, 22, 4));
    bpp = ReadLe(b, 28, 2);
    compression = ReadLe(b, 30, 4);
  }
  if (compression != 0 && compression != 3) return Status::Ok();  // RLE: its length is in its codes
  const uint64_t row_bytes = (static_cast<uint64_t>(width < 0 ? -width : width) * bpp + 31) / 32 * 4;
  const uint64_t needed = data_offset + row_bytes * static_cast<uint64_t>(height < 0 ? -height : height);
  if (needed > b.size()) {
    return Status::Corruption("file is truncated (" + std::to_string(b.size()) + " of " + std::to_string(needed) +
                              " bytes)");
  }
  return Status::Ok();
}

}  // namespace

Result<RawDecode> DecodeBmp(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) return Status::ResourceExhausted("file too large");
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, comps = 0;
  if (!stbi_info_from_memory(bytes.data(), len, &w, &h, &comps)) {
    return Status::Corruption(std::string("") + stbi_failure_reason());
  }
  // A negative height is a top-down BMP (valid; stb_image flips it when loading), not a bad size.
  RETURN_IF_ERROR(CheckDimensions(w, h < 0 ? -static_cast<int64_t>(h) : h, options));
  RETURN_IF_ERROR(CheckBmpComplete(bytes));
  stbi_uc* pixels = stbi_load_from_memory(bytes.data(), len, &w, &h, &comps, 3);
  if (pixels == nullptr) return Status::Corruption(std::string("") + stbi_failure_reason());
  RawDecode out;
  out.image = Image(w, h);
  std::memcpy(out.image.rgb.data(), pixels, out.image.rgb.size());
  stbi_image_free(pixels);
  return out;
}

// ---- TIFF -------------------------------------------------------------------------------------

namespace {

struct TiffReader {
  std::span<const uint8_t> bytes;
  toff_t pos = 0;
  std::string error;
};

tsize_t TiffRead(thandle_t h, tdata_t buf, tsize_t n) {
  auto* r = static_cast<TiffReader*>(h);
  if (r->pos >= r->bytes.size()) return 0;
  const size_t take = std::min(static_cast<size_t>(n), static_cast<size_t>(r->bytes.size() - r->pos));
  std::memcpy(buf, r->bytes.data() + r->pos, take);
  r->pos += take;
  return static_cast<tsize_t>(take);
}
tsize_t TiffWrite(thandle_t, tdata_t, tsize_t) { return 0; }
toff_t TiffSeek(thandle_t h, toff_t off, int whence) {
  auto* r = static_cast<TiffReader*>(h);
  toff_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? r->pos : r->bytes.size();
  r->pos = base + off;
  return r->pos;
}
int TiffClose(thandle_t) { return 0; }
toff_t TiffSize(thandle_t h) { return static_cast<TiffReader*>(h)->bytes.size(); }
int TiffMap(thandle_t, tdata_t*, toff_t*) { return 0; }
void TiffUnmap(thandle_t, tdata_t, toff_t) {}

int TiffOnError(TIFF*, void* user, const char* module, const char* fmt, va_list ap) {
  auto* r = static_cast<TiffReader*>(user);
  if (r->error.empty()) {
    char buf[512];
    std::vsnprintf(buf, sizeof(buf), fmt, ap);
    r->error = std::string(module ? module : "") + (module ? ": " : "") + buf;
  }
  return 1;
}
int TiffOnWarning(TIFF*, void*, const char*, const char*, va_list) { return 1; }

struct TiffCloser {
  void operator()(TIFF* t) const { TIFFClose(t); }
};

}  // namespace

Result<RawDecode> DecodeTiff(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  TiffReader reader{bytes, 0, {}};
  TIFFOpenOptions* opts = TIFFOpenOptionsAlloc();
  TIFFOpenOptionsSetErrorHandlerExtR(opts, TiffOnError, &reader);
  TIFFOpenOptionsSetWarningHandlerExtR(opts, TiffOnWarning, &reader);
  std::unique_ptr<TIFF, TiffCloser> tif(TIFFClientOpenExt("memory", "rm", &reader, TiffRead, TiffWrite, TiffSeek,
                                                          TiffClose, TiffSize, TiffMap, TiffUnmap, opts));
  TIFFOpenOptionsFree(opts);
  if (!tif) return Status::Corruption("" + (reader.error.empty() ? "cannot read the header" : reader.error));
  uint32_t w = 0, h = 0;
  TIFFGetField(tif.get(), TIFFTAG_IMAGEWIDTH, &w);
  TIFFGetField(tif.get(), TIFFTAG_IMAGELENGTH, &h);
  RETURN_IF_ERROR(CheckDimensions(w, h, options));
  uint16_t orientation = ORIENTATION_TOPLEFT;
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_ORIENTATION, &orientation);
  // Read rows in stored order; the orientation is applied afterwards like any EXIF orientation.
  TIFFSetField(tif.get(), TIFFTAG_ORIENTATION, ORIENTATION_TOPLEFT);
  std::vector<uint32_t> raster(static_cast<size_t>(w) * h);
  if (!TIFFReadRGBAImageOriented(tif.get(), w, h, raster.data(), ORIENTATION_TOPLEFT, 0)) {
    return Status::Corruption("" + (reader.error.empty() ? "cannot decode the pixels" : reader.error));
  }
  RawDecode out;
  out.image = Image(static_cast<int>(w), static_cast<int>(h));
  for (size_t i = 0; i < raster.size(); ++i) {
    out.image.rgb[3 * i + 0] = static_cast<uint8_t>(TIFFGetR(raster[i]));
    out.image.rgb[3 * i + 1] = static_cast<uint8_t>(TIFFGetG(raster[i]));
    out.image.rgb[3 * i + 2] = static_cast<uint8_t>(TIFFGetB(raster[i]));
  }
  out.tiff_orientation = orientation;
  return out;
}

}  // namespace imgsearch::media
