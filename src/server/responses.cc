// What every handler answers with.
#include <cstdio>

#include "base/base64.h"
#include "base/text.h"
#include "imgsearch/paths.h"
#include "server/http_status.h"
#include "server/routes.h"

namespace imgsearch::server {

void SendJson(Res& res, const json& body, int status) {
  res.status = status;
  // Text that is not UTF-8 (a message quoting a file name) is replaced rather than failing the
  // response; paths themselves go through AddPath, which loses nothing.
  res.set_content(DumpJson(body), "application/json");
}

void SendError(Res& res, const Status& status) {
  // An error is never cached, whatever validators a handler set before it failed.
  res.headers.erase("ETag");
  res.headers.erase("Cache-Control");
  res.set_header("Cache-Control", "no-store");
  SendJson(res, json{{"error", status.message()}}, HttpStatusOf(status));
}

Result<int64_t> PathId(const Req& req) {
  const std::string text = req.matches[1];
  if (text.empty() || text.size() > 18) return Status::NotFound("no image " + EscapeForDisplay(text, 40));
  return std::stoll(text);
}

std::string TimeParam(double seconds) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.3f", seconds);
  std::string t = text;
  while (t.back() == '0') t.pop_back();
  if (t.back() == '.') t.pop_back();
  return t;
}

Result<ImageRecord> RecordOf(Collection* collection, int64_t id) {
  ASSIGN_OR_RETURN(std::optional<ImageRecord> r, collection->GetById(id));
  if (!r) return Status::NotFound("no image with id " + std::to_string(id));
  return std::move(*r);
}

OfflineFolders::OfflineFolders(const ServerContext& c) {
  if (c.watcher != nullptr) folders_ = c.watcher->Unavailable();
}

void OfflineFolders::Mark(json* j, const std::string& path) const {
  for (const UnavailableFolder& f : folders_) {
    if (IsUnder(path, f.path)) {
      (*j)["offline"] = true;
      return;
    }
  }
}

}  // namespace imgsearch::server
