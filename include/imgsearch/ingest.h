// Bringing folders into a collection: scan, diff against the catalog, embed what is new.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/image.h"

namespace imgsearch {

struct ScanOptions {
  bool include_hidden = false;  // names starting with "."
  bool follow_symlinks = false;
  std::vector<std::string> exclude_names = {"@eaDir", "node_modules", ".git", "#recycle", "$RECYCLE.BIN"};
  std::vector<std::string> include_globs;  // e.g. "*.jpg"; empty: every file (images are detected by content)
  std::vector<std::string> exclude_globs;
};

struct SyncOptions {
  ScanOptions scan;
  DecodeOptions decode;
  int batch_size = 32;
  // Called now and then with files done and total, for progress display.
  std::function<void(int64_t done, int64_t total)> on_progress;
};

struct SyncReport {
  int64_t scanned = 0;    // files looked at
  int64_t unchanged = 0;  // same size and mtime: not read
  int64_t added = 0;
  int64_t updated = 0;  // content changed (re-embedded) or touched (same content)
  int64_t moved = 0;    // renamed or moved: kept their embedding
  int64_t removed = 0;
  int64_t embedded = 0;  // images that went through the model
  int64_t failed = 0;
  std::vector<std::pair<std::string, std::string>> failures;  // path, reason
  double seconds = 0;
};

// Makes the collection hold exactly the images under `roots`: new and changed files embedded,
// renames and copies recognised by content (never embedded again), deleted files removed. Files
// that are not images (by content) are ignored; images that cannot be read are recorded as failed.
Result<SyncReport> SyncFolders(std::span<const std::string> roots, const ClipModel& model, Collection* collection,
                               const SyncOptions& options = {});

// Re-embeds every image of the collection in `dir` with `model` (after a model change). Builds the
// new collection beside the old one and swaps them only when it is complete.
Result<SyncReport> ReindexCollection(const std::string& dir, const ClipModel& model, const SyncOptions& options = {});

// The collection's identity for a model.
ModelIdentity IdentityOf(const ClipModel& model);

}  // namespace imgsearch
