#include "scaleout/sources.h"

#include <algorithm>
#include <filesystem>

#include "imgsearch/paths.h"

namespace imgsearch::scaleout {

namespace {

bool IsUrl(const std::string& s) { return s.starts_with("http://") || s.starts_with("https://"); }

std::string EscapePath(const std::string& path) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace

FileSources::FileSources(std::vector<PathMap> maps) : maps_(std::move(maps)) {
  for (PathMap& m : maps_) {
    while (m.prefix.size() > 1 && m.prefix.back() == '/') m.prefix.pop_back();
    while (m.target.size() > 1 && m.target.back() == '/') m.target.pop_back();
  }
  // The longest prefix wins.
  std::sort(maps_.begin(), maps_.end(),
            [](const PathMap& a, const PathMap& b) { return a.prefix.size() > b.prefix.size(); });
}

std::string FileSources::Locate(const std::string& path) const {
  for (const PathMap& m : maps_) {
    if (!IsUnder(path, m.prefix)) continue;
    const std::string rest = path.substr(m.prefix.size());
    return IsUrl(m.target) ? m.target + EscapePath(rest) : m.target + rest;
  }
  return path;
}

Result<ingest::FileContent> FileSources::Read(const std::string& path, int64_t mtime_ns,
                                              const std::vector<CollectionRoot>& roots) const {
  const std::string where = Locate(path);
  if (IsUrl(where)) {
    auto response = http_.Get(where);
    if (!response.ok()) return Status::Unavailable(response.status().message());
    if (response->code == 404 || response->code == 410) return Status::NotFound(where + " is gone");
    if (response->code != 200) {
      return Status::Unavailable("HTTP " + std::to_string(response->code) + " from " + where);
    }
    ingest::FileContent content;
    content.stat = {path, static_cast<int64_t>(response->body.size()), mtime_ns};
    content.bytes.assign(response->body.begin(), response->body.end());
    return content;
  }
  Result<ingest::FileContent> content = ingest::ReadLocalFile(where);
  if (content.ok()) content->stat.path = path;  // the job's path, wherever it was read from
  if (content.ok() || content.status().code() != StatusCode::kNotFound) return content;
  // Gone, or is the whole folder not visible from here (a share not mounted on this machine)?
  for (const CollectionRoot& root : roots) {
    if (!IsUnder(path, root.path)) continue;
    const std::string local_root = Locate(root.path);
    std::error_code ec;
    if (!std::filesystem::exists(local_root, ec)) {
      return Status::Unavailable(local_root + " (holding " + path +
                                 ") is not there on this machine; mount it, or map it with --map");
    }
  }
  return content;
}

}  // namespace imgsearch::scaleout
