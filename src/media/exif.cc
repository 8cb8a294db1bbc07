#include "media/exif.h"

#include <libexif/exif-data.h>

#include <cstring>
#include <vector>

namespace imgsearch::media {

ExifFields ParseExif(std::span<const uint8_t> tiff_block) {
  ExifFields fields;
  if (tiff_block.size() < 8 || tiff_block.size() > (64u << 20)) return fields;
  std::vector<uint8_t> data(6 + tiff_block.size());
  std::memcpy(data.data(), "Exif\0\0", 6);
  std::memcpy(data.data() + 6, tiff_block.data(), tiff_block.size());
  ExifData* ed = exif_data_new();
  if (ed == nullptr) return fields;
  exif_data_unset_option(ed, EXIF_DATA_OPTION_FOLLOW_SPECIFICATION);  // read as is, fix nothing
  exif_data_load_data(ed, data.data(), static_cast<unsigned int>(data.size()));
  const ExifByteOrder order = exif_data_get_byte_order(ed);
  if (ExifEntry* e = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION)) {
    if (e->format == EXIF_FORMAT_SHORT && e->components >= 1 && e->size >= 2) {
      const int v = exif_get_short(e->data, order);
      if (v >= 1 && v <= 8) fields.orientation = v;
    }
  }
  ExifEntry* date = exif_content_get_entry(ed->ifd[EXIF_IFD_EXIF], EXIF_TAG_DATE_TIME_ORIGINAL);
  if (date == nullptr) date = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_DATE_TIME);
  if (date != nullptr && date->format == EXIF_FORMAT_ASCII && date->size >= 19) {
    std::string s(reinterpret_cast<const char*>(date->data), 19);
    // "YYYY:MM:DD HH:MM:SS" → ISO 8601; all-zero or blank dates mean "unknown".
    bool digits_ok = true;
    for (int i : {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18}) digits_ok &= s[i] >= '0' && s[i] <= '9';
    if (digits_ok && s.compare(0, 4, "0000") != 0) {
      s[4] = '-';
      s[7] = '-';
      s[10] = 'T';
      fields.capture_time = s;
    }
  }
  exif_data_unref(ed);
  return fields;
}

Image ApplyOrientation(const Image& in, int orientation) {
  if (orientation <= 1 || orientation > 8) return in;
  const int w = in.width;
  const int h = in.height;
  const bool swap = orientation >= 5;
  Image out(swap ? h : w, swap ? w : h);
  for (int y = 0; y < out.height; ++y) {
    uint8_t* dst = out.row(y);
    for (int x = 0; x < out.width; ++x) {
      int sx = x, sy = y;
      switch (orientation) {
        case 2: sx = w - 1 - x; break;  // FLIP_LEFT_RIGHT
        case 3:
          sx = w - 1 - x;
          sy = h - 1 - y;
          break;                        // ROTATE_180
        case 4: sy = h - 1 - y; break;  // FLIP_TOP_BOTTOM
        case 5:
          sx = y;
          sy = x;
          break;  // TRANSPOSE
        case 6:
          sx = y;
          sy = h - 1 - x;
          break;  // ROTATE_270 (90° clockwise)
        case 7:
          sx = w - 1 - y;
          sy = h - 1 - x;
          break;  // TRANSVERSE
        case 8:
          sx = w - 1 - y;
          sy = x;
          break;  // ROTATE_90 (90° counter-clockwise)
      }
      std::memcpy(dst + 3 * x, in.row(sy) + 3 * sx, 3);
    }
  }
  return out;
}

}  // namespace imgsearch::media
