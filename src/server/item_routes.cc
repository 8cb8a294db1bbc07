// One image: its file (streamed from the descriptor the gate checked), what the collection knows
// about it, and its thumbnail.
#include <cmath>
#include <cstdio>

#include "base/text.h"
#include "server/routes.h"

namespace imgsearch::server {

namespace {

json RecordJson(const ImageRecord& r) {
  const std::string id = std::to_string(r.id);
  json j{{"id", r.id},
         {"size_bytes", r.size_bytes},
         {"mtime_s", r.mtime_ns / 1'000'000'000},
         {"width", r.width},
         {"height", r.height},
         {"format", r.format},
         {"capture_time", r.capture_time ? json(*r.capture_time) : json(nullptr)},
         {"status", ImageStatusName(r.status)},
         {"indexed_at_ms", r.indexed_at_ms},
         {"url", "/api/images/" + id},
         {"original_url", "/api/images/" + id},
         {"view_url", "/api/images/" + id + "/view"},
         {"browser_displays", BrowserDisplays(r.format)},
         {"thumbnail", "/api/images/" + id + "/thumbnail"}};
  if (IsVideoFormat(r.format)) {
    j["video"] = true;
    j["frame_times"] = r.frame_times;  // the moments sampled and embedded, in seconds
  }
  AddPath(&j, r.path);
  if (r.status == ImageStatus::kFailed) j["error"] = r.error;
  return j;
}

// Content-Disposition for a file name of any bytes: an ASCII fallback (quotes, backslashes and
// anything unusual replaced) and the exact name percent-encoded (RFC 6266, RFC 5987).
std::string ContentDisposition(const std::string& name) {
  std::string ascii, encoded;
  for (const unsigned char ch : name) {
    ascii += ch >= 0x20 && ch < 0x7F && ch != '"' && ch != '\\' && ch != ';' ? static_cast<char>(ch) : '_';
    if (std::isalnum(ch) || ch == '.' || ch == '-' || ch == '_' || ch == '~') {
      encoded += static_cast<char>(ch);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", ch);
      encoded += buf;
    }
  }
  return "inline; filename=\"" + ascii + "\"; filename*=UTF-8''" + encoded;
}

// Sets the validators; true (and 304) when the client's copy (If-None-Match) is current.
bool NotModified(const Req& req, Res& res, const std::string& etag) {
  const std::string quoted = "\"" + etag + "\"";
  res.set_header("ETag", quoted);
  res.set_header("Cache-Control", "private, max-age=3600");
  if (req.get_header_value("If-None-Match") != quoted) return false;
  res.status = 304;
  return true;
}

Result<ImageRecord> PathRecord(ServerContext& c, const Req& req) {
  ASSIGN_OR_RETURN(const int64_t id, PathId(req));
  return RecordOf(c.collection, id);
}

// What is made from an image's pixels (a thumbnail, a rendition) exists only for one that decoded.
Status Decodable(const ImageRecord& r) {
  if (r.status == ImageStatus::kIndexed) return Status::Ok();
  return Status::NotFound("image " + std::to_string(r.id) + " could not be read: " + r.error);
}

// The file itself, streamed from the descriptor the gate checked, in pieces: large files cost no
// memory.
void SendOriginal(ServerContext& c, const ImageRecord& r, Res& res) {
  auto file = c.gate->Open(r.path);
  if (!file.ok()) return SendError(res, file.status());
  res.set_header("Content-Disposition", ContentDisposition(r.path.substr(r.path.find_last_of('/') + 1)));
  res.set_header("Accept-Ranges", "bytes");  // cpp-httplib answers ranges; players look for this to seek
  const uint64_t size = (*file)->size();
  res.set_content_provider(size, MimeTypeOf(r.format),
                           [opened = std::move(*file)](size_t offset, size_t length, httplib::DataSink& sink) {
                             uint8_t buffer[64 << 10];
                             auto n = opened->ReadAt(offset, buffer, std::min(length, sizeof(buffer)));
                             if (!n.ok() || *n == 0) return false;  // failed or shrank: the connection is closed
                             return sink.write(reinterpret_cast<const char*>(buffer), *n);
                           });
}

}  // namespace

std::vector<Route> ItemRoutes(ServerContext& c) {
  return {
      {.method = "GET",
       .pattern = "/api/images/{id}",
       .name = "image",
       .about = "The image file itself (original_url).",
       .handle =
           [&c](const Req& req, Res& res) {
             Result<ImageRecord> r = PathRecord(c, req);
             if (!r.ok()) return SendError(res, r.status());
             if (NotModified(req, res, r->content_hash)) return;
             SendOriginal(c, *r, res);
           }},
      {.method = "GET",
       .pattern = "/api/images/{id}/view",
       .name = "view",
       .about = "What a browser can show (view_url): the file itself when browsers display its format, else a JPEG "
                "rendition (longer side at most 4096, made once and cached with the thumbnails).",
       .handle =
           [&c](const Req& req, Res& res) {
             Result<ImageRecord> r = PathRecord(c, req);
             if (!r.ok()) return SendError(res, r.status());
             if (BrowserDisplays(r->format)) {
               if (NotModified(req, res, r->content_hash)) return;
               return SendOriginal(c, *r, res);
             }
             if (Status readable = Decodable(*r); !readable.ok()) return SendError(res, readable);
             if (NotModified(req, res, ThumbnailCache::PixelsTag(*r, "view"))) return;
             auto view = c.thumbnails->GetView(*r);
             if (!view.ok()) return SendError(res, view.status());
             res.set_content(std::move(*view), "image/jpeg");
           }},
      {.method = "GET",
       .pattern = "/api/images/{id}/info",
       .name = "info",
       .about =
           "What the collection knows about the image; text: the words it shows (when read), with their "
           "boxes [text, x, y, width, height, confidence] in the picture's pixels (a video's: in its frame at the time "
           "that follows, in seconds).",
       .handle =
           [&c](const Req& req, Res& res) {
             Result<ImageRecord> r = PathRecord(c, req);
             if (!r.ok()) return SendError(res, r.status());
             json j = RecordJson(*r);
             if (Result<std::optional<ContentText>> text = c.collection->GetText(r->id); text.ok() && *text) {
               json words = json::array();
               for (const RecognizedWord& w : (*text)->text.words) {
                 words.push_back({w.text, w.x, w.y, w.width, w.height, w.confidence});
                 if (w.time_s) words.back().push_back(*w.time_s);
               }
               j["text"] = {{"text", (*text)->text.text}, {"languages", (*text)->languages}, {"words", words}};
             }
             OfflineFolders(c).Mark(&j, r->path);
             SendJson(res, j);
           }},
      {.method = "GET",
       .pattern = "/api/images/{id}/thumbnail",
       .name = "thumbnail",
       .params = {"size", "t"},
       .about = "A JPEG thumbnail; size (longest side) is rounded up to 64, 128, 256, 512 or 1024; for a video, "
                "t (seconds) picks the frame (default: its middle sampled frame); cached.",
       .handle =
           [&c](const Req& req, Res& res) {
             int size = 256;
             std::optional<double> time_s;
             for (const auto& [key, value] : req.params) {
               char* end = nullptr;
               if (key == "size") {
                 const long v = std::strtol(value.c_str(), &end, 10);
                 if (value.empty() || *end != '\0' || v < 16 || v > 1024) {
                   return SendError(res, Status::InvalidArgument("size must be a number of pixels from 16 to 1024"));
                 }
                 size = static_cast<int>(v);
               } else if (key == "t") {
                 const double v = std::strtod(value.c_str(), &end);
                 if (value.empty() || *end != '\0' || !std::isfinite(v) || v < 0 || v > 1e7) {
                   return SendError(res, Status::InvalidArgument("t must be a time in seconds from 0"));
                 }
                 time_s = v;
               } else {
                 return SendError(
                     res, Status::InvalidArgument("unknown parameter \"" + EscapeForDisplay(key, 80) + "\" (size, t)"));
               }
             }
             Result<ImageRecord> r = PathRecord(c, req);
             if (!r.ok()) return SendError(res, r.status());
             if (Status readable = Decodable(*r); !readable.ok()) return SendError(res, readable);
             if (NotModified(req, res,
                             ThumbnailCache::PixelsTag(*r, ThumbnailCache::ThumbnailName(*r, size, time_s)))) {
               return;
             }
             auto thumb = c.thumbnails->Get(*r, size, time_s);
             if (!thumb.ok()) return SendError(res, thumb.status());
             res.set_content(std::move(*thumb), "image/jpeg");
           }},
  };
}

}  // namespace imgsearch::server
