#include "ingest/scanner.h"

#include <fnmatch.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <utility>

#include "base/text.h"

namespace imgsearch::ingest {

namespace fs = std::filesystem;

namespace {

bool MatchesAny(const std::vector<std::string>& globs, const std::string& name) {
  return std::any_of(globs.begin(), globs.end(),
                     [&](const std::string& g) { return ::fnmatch(g.c_str(), name.c_str(), FNM_CASEFOLD) == 0; });
}

bool SkipName(const std::string& name, const ScanOptions& o) {
  if (!o.include_hidden && !name.empty() && name[0] == '.') return true;
  return std::find(o.exclude_names.begin(), o.exclude_names.end(), name) != o.exclude_names.end();
}

bool IsExcludedPath(const std::string& path, const ScanOptions& o) {
  return std::any_of(o.exclude_paths.begin(), o.exclude_paths.end(),
                     [&](const std::string& p) { return IsUnder(path, p); });
}

}  // namespace

std::optional<FileInfo> StatFile(const std::string& path, bool follow) {
  struct stat st {};
  if ((follow ? ::stat(path.c_str(), &st) : ::lstat(path.c_str(), &st)) != 0) return std::nullopt;
  if (!S_ISREG(st.st_mode)) return std::nullopt;
  FileInfo f;
  f.path = path;
  f.size_bytes = st.st_size;
  f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  return f;
}

Result<CollectionRoot> ResolveRoot(const std::string& folder) {
  CollectionRoot root{NormalisePath(folder), ""};
  std::error_code ec;
  if (!fs::is_directory(root.path, ec)) {
    return Status::NotFound("folder " + root.path + " does not exist (or is not a folder)");
  }
  root.real_path = RealPath(root.path);
  if (root.real_path.empty()) return Status::NotFound("folder " + root.path + " cannot be resolved");
  return root;
}

std::string MovedRootReason(const CollectionRoot& root) {
  if (root.real_path.empty()) return "";
  const std::string now = RealPath(root.path);
  if (now.empty() || now == root.real_path) return "";
  return "folder " + root.path + " now leads to " + now + ", not to " + root.real_path +
         " as when it was indexed (replaced by a link, or moved)";
}

std::vector<std::string> PathsOf(std::span<const CollectionRoot> roots) {
  std::vector<std::string> paths;
  for (const CollectionRoot& r : roots) paths.push_back(r.path);
  return paths;
}

Result<std::vector<CollectionRoot>> RecordRoots(std::span<const std::string> folders, Collection* collection,
                                                const ScanOptions& options) {
  std::vector<CollectionRoot> roots;
  for (const std::string& f : folders) {
    ASSIGN_OR_RETURN(CollectionRoot root, ResolveRoot(f));
    roots.push_back(std::move(root));
  }
  std::sort(roots.begin(), roots.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  roots.erase(std::unique(roots.begin(), roots.end(), [](const auto& a, const auto& b) { return a.path == b.path; }),
              roots.end());
  RETURN_IF_ERROR(collection->AddRoots(roots, options.follow_symlinks ? RootChange::kAccept : RootChange::kRefuse));
  return roots;
}

bool Excluded(const std::string& path, const std::string& root, bool is_dir, const ScanOptions& o) {
  if (!IsUnder(path, root) || path.size() == root.size()) return false;
  if (IsExcludedPath(path, o)) return true;
  size_t start = root == "/" ? 1 : root.size() + 1;
  std::string name;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    name = path.substr(start, end - start);
    if (!name.empty() && SkipName(name, o)) return true;
    start = end + 1;
  }
  if (is_dir) return false;
  if (!o.include_globs.empty() && !MatchesAny(o.include_globs, name)) return true;
  return MatchesAny(o.exclude_globs, name);
}

Result<std::vector<FileInfo>> ScanTree(const std::string& root_in, const ScanOptions& o, ScanNotes* notes) {
  const std::string root = NormalisePath(root_in);
  std::error_code ec;
  const fs::file_status status = fs::status(root, ec);
  if (ec || !fs::exists(status)) return Status::NotFound("folder " + root + " does not exist");
  std::vector<FileInfo> files;
  if (fs::is_regular_file(status)) {
    if (std::optional<FileInfo> f = StatFile(root, true)) files.push_back(std::move(*f));
    return files;
  }
  if (!fs::is_directory(status)) return Status::InvalidArgument(root + " is neither a folder nor a file");

  // Depth first, one folder at a time, so that a folder that cannot be read is noted by name.
  std::set<std::pair<dev_t, ino_t>> seen;  // folders entered
  auto enter = [&](const std::string& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return true;  // its listing will say why
    return seen.emplace(st.st_dev, st.st_ino).second;
  };
  auto unreadable = [&](const std::string& dir, const std::string& why) {
    notes->unreadable.push_back({dir, "cannot read folder " + EscapeForDisplay(dir) + ": " + why +
                                          "; the images indexed from it are kept as they were"});
  };
  std::vector<std::string> pending{root};
  enter(root);
  while (!pending.empty()) {
    const std::string dir = std::move(pending.back());
    pending.pop_back();
    fs::directory_iterator it(dir, ec);
    if (ec) {
      unreadable(dir, ec.message());
      ec.clear();
      continue;
    }
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (ec) break;
      const std::string path = it->path().string();
      const std::string name = it->path().filename().string();
      if (SkipName(name, o) || IsExcludedPath(path, o)) continue;
      std::error_code e;
      const bool link = it->is_symlink(e);
      if (link && !o.follow_symlinks) continue;
      const fs::file_status target = it->status(e);  // follows a link
      if (e) {
        if (e == std::errc::no_such_file_or_directory || e == std::errc::not_a_directory)
          continue;  // broken link, gone
        // Cannot be examined (no search permission on the folder, an I/O error, a loop of links, a
        // name too long): what was indexed there is kept, not taken for deleted.
        notes->unreadable.push_back({path, "cannot read " + EscapeForDisplay(path, 300) + ": " + e.message() +
                                               "; what was indexed there is kept as it was"});
        continue;
      }
      if (fs::is_directory(target)) {
        if (!enter(path)) {
          if (link) notes->warnings.push_back(EscapeForDisplay(path) + " leads to a folder already scanned; skipped");
          continue;
        }
        pending.push_back(path);
        continue;
      }
      if (!fs::is_regular_file(target)) continue;
      if (!o.include_globs.empty() && !MatchesAny(o.include_globs, name)) continue;
      if (MatchesAny(o.exclude_globs, name)) continue;
      if (std::optional<FileInfo> f = StatFile(path, o.follow_symlinks)) files.push_back(std::move(*f));
    }
    if (ec) {
      unreadable(dir, ec.message());  // failed part way: what it did list is kept too
      ec.clear();
    }
  }
  std::sort(files.begin(), files.end(), [](const FileInfo& a, const FileInfo& b) { return a.path < b.path; });
  return files;
}

}  // namespace imgsearch::ingest
