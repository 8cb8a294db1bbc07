// Writes camera RAW files for tests and benchmarks (no Debian package writes one): a DNG holding a
// picture's linear light sampled through an RGGB colour filter at 16 bits, with a colour matrix that
// makes the camera's colour space linear sRGB (developed, it looks like the picture), and, as
// cameras write them, optionally a JPEG preview in IFD0 with the sensor data in a sub-IFD.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "imgsearch/image.h"

namespace imgsearch::tools {

// A little-endian TIFF of one or more IFDs, each followed by the values that do not fit in its
// entries, then each IFD's data. StripOffsets (273) is pointed at the IFD's data; SubIFDs (330) at
// the next IFD.
class TiffWriter {
 public:
  using Bytes = std::vector<uint8_t>;

  // Starts a new IFD whose strip holds `data`.
  void NewIfd(Bytes data) { ifds_.push_back({{}, std::move(data)}); }

  void Add(uint16_t tag, uint16_t type, uint32_t count, Bytes value) {
    ifds_.back().entries.push_back({tag, type, count, std::move(value)});
  }
  void Short(uint16_t tag, const std::vector<uint16_t>& v) {
    Bytes b;
    for (uint16_t x : v) b.insert(b.end(), {static_cast<uint8_t>(x), static_cast<uint8_t>(x >> 8)});
    Add(tag, 3, static_cast<uint32_t>(v.size()), b);
  }
  void Long(uint16_t tag, uint32_t v) { Add(tag, 4, 1, Le32(v)); }
  void Byte(uint16_t tag, const Bytes& v) { Add(tag, 1, static_cast<uint32_t>(v.size()), v); }
  void Ascii(uint16_t tag, const std::string& s) {
    Bytes b(s.begin(), s.end());
    b.push_back(0);
    Add(tag, 2, static_cast<uint32_t>(b.size()), b);
  }
  // RATIONAL (type 5) or SRATIONAL (type 10) values, numerator and denominator.
  void Rational(uint16_t tag, uint16_t type, const std::vector<std::pair<int32_t, int32_t>>& v) {
    Bytes b;
    for (auto [n, d] : v) {
      Append(&b, Le32(static_cast<uint32_t>(n)));
      Append(&b, Le32(static_cast<uint32_t>(d)));
    }
    Add(tag, type, static_cast<uint32_t>(v.size()), b);
  }

  Bytes Build() {
    // Where each IFD, its values and its data go.
    std::vector<uint32_t> ifd_at(ifds_.size()), data_at(ifds_.size());
    uint32_t at = 8;
    for (size_t i = 0; i < ifds_.size(); ++i) {
      Ifd& ifd = ifds_[i];
      std::sort(ifd.entries.begin(), ifd.entries.end(), [](const Entry& a, const Entry& b) { return a.tag < b.tag; });
      ifd_at[i] = at;
      at += 2 + 12 * static_cast<uint32_t>(ifd.entries.size()) + 4;
      for (const Entry& e : ifd.entries) {
        if (e.value.size() > 4) at += Padded(e.value.size());
      }
    }
    for (size_t i = 0; i < ifds_.size(); ++i) {
      data_at[i] = at;
      at += Padded(ifds_[i].data.size());
    }
    Bytes out = {'I', 'I', 42, 0};
    Append(&out, Le32(8));
    for (size_t i = 0; i < ifds_.size(); ++i) {
      Ifd& ifd = ifds_[i];
      Bytes extra;
      uint32_t extra_at = ifd_at[i] + 2 + 12 * static_cast<uint32_t>(ifd.entries.size()) + 4;
      out.push_back(static_cast<uint8_t>(ifd.entries.size()));
      out.push_back(static_cast<uint8_t>(ifd.entries.size() >> 8));
      for (Entry& e : ifd.entries) {
        if (e.tag == 273) e.value = Le32(data_at[i]);
        if (e.tag == 330 && i + 1 < ifds_.size()) e.value = Le32(ifd_at[i + 1]);
        Append(&out, {static_cast<uint8_t>(e.tag), static_cast<uint8_t>(e.tag >> 8), static_cast<uint8_t>(e.type),
                      static_cast<uint8_t>(e.type >> 8)});
        Append(&out, Le32(e.count));
        if (e.value.size() <= 4) {
          Bytes v = e.value;
          v.resize(4, 0);
          Append(&out, v);
        } else {
          Append(&out, Le32(extra_at + static_cast<uint32_t>(extra.size())));
          Append(&extra, e.value);
          extra.resize(Padded(extra.size()), 0);
        }
      }
      Append(&out, Le32(0));  // the next IFD: chained through SubIFDs instead
      Append(&out, extra);
    }
    for (const Ifd& ifd : ifds_) {
      Append(&out, ifd.data);
      out.resize(Padded(out.size()), 0);
    }
    return out;
  }

 private:
  struct Entry {
    uint16_t tag, type;
    uint32_t count;
    Bytes value;
  };
  struct Ifd {
    std::vector<Entry> entries;
    Bytes data;
  };
  static uint32_t Padded(size_t n) { return static_cast<uint32_t>(n + (n & 1)); }
  static Bytes Le32(uint32_t v) {
    return {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
            static_cast<uint8_t>(v >> 24)};
  }
  static void Append(Bytes* out, const Bytes& b) { out->insert(out->end(), b.begin(), b.end()); }
  std::vector<Ifd> ifds_;
};

struct DngOptions {
  int orientation = 1;  // TIFF orientation tag of the raw image
  // The sensor size the file declares (0: the picture's): a lie, for tests of absurd files.
  int declared_width = 0;
  int declared_height = 0;
  // A JPEG preview of the picture in IFD0 (the raw data then in a sub-IFD), as cameras write.
  std::vector<uint8_t> preview_jpeg;
  int preview_width = 0;
  int preview_height = 0;
};

inline std::vector<uint8_t> MakeDng(const Image& picture, const DngOptions& options = {}) {
  const int w = picture.width & ~1, h = picture.height & ~1;
  std::vector<uint8_t> sensor(static_cast<size_t>(w) * h * 2);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const int channel = (y % 2 == 0) ? (x % 2 == 0 ? 0 : 1) : (x % 2 == 0 ? 1 : 2);
      const double linear = std::pow(picture.row(y)[3 * x + channel] / 255.0, 2.2);
      const auto v = static_cast<uint16_t>(std::lround(linear * 60000));
      sensor[2 * (static_cast<size_t>(y) * w + x)] = static_cast<uint8_t>(v);
      sensor[2 * (static_cast<size_t>(y) * w + x) + 1] = static_cast<uint8_t>(v >> 8);
    }
  }
  TiffWriter t;
  const bool preview = !options.preview_jpeg.empty();
  // The tags DNG wants in IFD0, whichever image IFD0 holds.
  auto camera_tags = [&] {
    t.Ascii(271, "imgsearch");
    t.Ascii(272, "test camera");
    t.Short(274, {static_cast<uint16_t>(options.orientation)});
    t.Byte(50706, {1, 4, 0, 0});
    t.Byte(50707, {1, 1, 0, 0});
    t.Ascii(50708, "imgsearch test camera");
    // XYZ (D65) to linear sRGB, in 1/10000.
    t.Rational(50721, 10,
               {{32405, 10000},
                {-15371, 10000},
                {-4985, 10000},
                {-9693, 10000},
                {18760, 10000},
                {416, 10000},
                {556, 10000},
                {-2040, 10000},
                {10572, 10000}});
    t.Rational(50728, 5, {{1, 1}, {1, 1}, {1, 1}});
    t.Short(50778, {21});  // D65
  };
  if (preview) {
    t.NewIfd(options.preview_jpeg);
    t.Long(254, 1);  // a reduced-resolution image
    t.Long(256, static_cast<uint32_t>(options.preview_width));
    t.Long(257, static_cast<uint32_t>(options.preview_height));
    t.Short(258, {8, 8, 8});
    t.Short(259, {7});  // JPEG
    t.Short(262, {6});  // YCbCr
    t.Long(273, 0);
    t.Short(277, {3});
    t.Long(278, static_cast<uint32_t>(options.preview_height));
    t.Long(279, static_cast<uint32_t>(options.preview_jpeg.size()));
    t.Short(284, {1});
    t.Long(330, 0);  // SubIFDs: the raw image
    camera_tags();
  }
  t.NewIfd(sensor);
  t.Long(254, 0);
  t.Long(256, static_cast<uint32_t>(options.declared_width > 0 ? options.declared_width : w));
  t.Long(257, static_cast<uint32_t>(options.declared_height > 0 ? options.declared_height : h));
  t.Short(258, {16});
  t.Short(259, {1});
  t.Short(262, {32803});  // colour filter array
  t.Long(273, 0);
  t.Short(277, {1});
  t.Long(278, static_cast<uint32_t>(h));
  t.Long(279, static_cast<uint32_t>(sensor.size()));
  t.Short(284, {1});
  t.Short(33421, {2, 2});
  t.Byte(33422, {0, 1, 1, 2});
  t.Long(50717, 60000);  // WhiteLevel
  if (!preview) camera_tags();
  return t.Build();
}

}  // namespace imgsearch::tools
