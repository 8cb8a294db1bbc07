#include "imgsearch/path_display.h"

#include "base/base64.h"
#include "base/text.h"

namespace imgsearch {

void AddPath(nlohmann::json* object, const std::string& path) {
  if (IsValidUtf8(path)) {
    (*object)["path"] = path;
    return;
  }
  (*object)["path"] = EscapeForDisplay(path);
  (*object)["path_bytes"] = EncodeBase64(path);
}

std::string ForTerminal(const std::string& text) { return EscapeForDisplay(text); }

std::string DumpJson(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace imgsearch
