#include "scaleout/sources.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

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
  if (IsUrl(where)) return Fetch(where, path, mtime_ns);
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

Result<ingest::FileContent> FileSources::Fetch(const std::string& url, const std::string& path,
                                               int64_t mtime_ns) const {
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
  if (ec) return Status::Unavailable("no folder for temporary files: " + ec.message());
  std::string temp = (dir / "imgsearch-fetch-XXXXXX").string();
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) {
    return Status::Unavailable("cannot create a temporary file in " + dir.string() + ": " + std::strerror(errno));
  }
  // Nameless from the start: whatever ends the process, nothing is left behind. The file is
  // written and read through its descriptor's name, closed however this returns.
  ::unlink(temp.c_str());
  const std::unique_ptr<const int, void (*)(const int*)> closer(&fd, [](const int* f) { ::close(*f); });
  const std::string held = "/proc/self/fd/" + std::to_string(fd);
  const Result<long> http = http_.Download(url, held, {});
  Result<ingest::FileContent> content = Status::Unavailable("");
  if (!http.ok()) {
    // Tried again later (the server, or the temporary folder: full?).
    content = Status::Unavailable(http.status().message() + " (into a temporary file in " + dir.string() + ")");
  } else if (*http == 404 || *http == 410) {
    content = Status::NotFound(url + " is gone");
  } else if (*http != 200) {
    content = Status::Unavailable("HTTP " + std::to_string(*http) + " from " + url);
  } else {
    content = ingest::ReadLocalFile(held);  // a video keeps a descriptor of its own
    if (!content.ok()) {
      return Status(content.status().code(), "reading what " + url + " sent: " + content.status().message());
    }
  }
  if (!content.ok()) return content;
  content->stat.path = path;
  content->stat.mtime_ns = mtime_ns;
  return content;
}

}  // namespace imgsearch::scaleout
