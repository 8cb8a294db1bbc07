// Walking folders: regular files with their size and mtime, skipping what users never mean to index.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "imgsearch/ingest.h"
#include "imgsearch/paths.h"

namespace imgsearch::ingest {

struct FileInfo {
  std::string path;  // absolute, normalised
  int64_t size_bytes = 0;
  int64_t mtime_ns = 0;
};

// Size and mtime of `path` if it is a regular file (following a final symlink when `follow`).
std::optional<FileInfo> StatFile(const std::string& path, bool follow = true);

// A folder to record: normalised, with its real path now. kNotFound when it does not exist.
Result<CollectionRoot> ResolveRoot(const std::string& folder);

// Why `root` must not be scanned or watched now: it leads somewhere other than its recorded real
// path (a folder swapped for a link, or moved). Empty when it leads where recorded, when nothing
// was recorded, or when it is gone (a vanished root is the scan's business).
std::string MovedRootReason(const CollectionRoot& root);

// The roots' paths, in order.
std::vector<std::string> PathsOf(std::span<const CollectionRoot> roots);

// Records `folders` in the collection with their real paths. A folder recorded earlier that now
// leads elsewhere is refused (kPermissionDenied) unless `options.follow_symlinks`.
// Returns them sorted by path, without repeats.
Result<std::vector<CollectionRoot>> RecordRoots(std::span<const std::string> folders, Collection* collection,
                                                const ScanOptions& options);

// What a scan could not see, so that the caller does not take it for deleted.
struct ScanNotes {
  std::vector<std::string> warnings;  // for the user: each names a path and why
  // Folders that could not be listed, entries that could not be examined (permission, I/O error,
  // name too long); not repeated in `warnings`.
  std::vector<UnavailableFolder> unreadable;
};

// Files under `root` (or `root` itself when it is a file), in path order. Folders that cannot be
// read are noted, not fatal. With options.follow_symlinks, each folder (by device and inode) is
// scanned once, however many links lead to it: loops end, and no file is listed twice through them.
Result<std::vector<FileInfo>> ScanTree(const std::string& root, const ScanOptions& options, ScanNotes* notes);

// True when the scan would skip `path` (below `root`): a hidden or excluded folder on the way, or
// (for files) a name the globs exclude.
bool Excluded(const std::string& path, const std::string& root, bool is_dir, const ScanOptions& options);

}  // namespace imgsearch::ingest
