// Bringing folders into a collection: scan, diff against the catalog, embed what is new.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/image.h"
#include "imgsearch/ocr.h"
#include "imgsearch/video.h"

namespace imgsearch {

struct ScanOptions {
  bool include_hidden = false;  // names starting with "."
  bool follow_symlinks = false;
  std::vector<std::string> exclude_names = {"@eaDir", "node_modules", ".git", "#recycle", "$RECYCLE.BIN"};
  std::vector<std::string> include_globs;  // e.g. "*.jpg"; empty: every file (images are detected by content)
  std::vector<std::string> exclude_globs;
  std::vector<std::string> exclude_paths;  // absolute folders never entered (the collection's own folder)
  // A recorded folder that is missing or empty normally keeps its images (offline: an unmounted
  // drive or share is not a deletion, and they return without being embedded again). True: it
  // loses them, as when it was emptied or removed on purpose.
  bool forget_missing = false;
};

// A file for a worker to embed (scale-out mode).
struct FileJob {
  std::string path;
  int64_t size_bytes = 0;
  int64_t mtime_ns = 0;
};

struct QueueStats {
  int64_t pending = 0;   // waiting for a worker
  int64_t leased = 0;    // being embedded
  int64_t retrying = 0;  // handed back after an error, waiting for their next attempt
  struct Worker {
    std::string name;
    double seen_seconds_ago = 0;
    int64_t jobs_done = 0;
  };
  std::vector<Worker> workers;  // seen in the last minute
};

// Where `index` and `watch` put new and changed files when workers embed them (imgsearch/scaleout.h).
class JobQueue {
 public:
  virtual ~JobQueue() = default;
  // Adds or refreshes jobs (one per path); a job whose file is unchanged is left as it is.
  virtual Status Enqueue(std::span<const FileJob> jobs) = 0;
  // How many jobs wait, and who works on them.
  virtual Result<QueueStats> Stats() = 0;
};

struct SyncOptions {
  ScanOptions scan;
  DecodeOptions decode;
  VideoOptions video;
  int batch_size = 32;
  int decode_threads = 0;  // 0: one per core
  // Set: new and changed files become jobs for workers instead of being embedded here (renames
  // and deletions are still applied directly).
  JobQueue* queue = nullptr;
  // Called now and then with files done and total, for progress display.
  std::function<void(int64_t done, int64_t total)> on_progress;
};

// A folder (or file) whose indexed images are kept as they were because it could not be seen: a
// folder that cannot be read, a root that is missing or empty (an unmounted drive), a root that
// now leads elsewhere. Its images stay searchable, marked offline, until it can be seen again.
struct UnavailableFolder {
  std::string path;
  std::string reason;  // the warning, naming the path and why
};

struct SyncReport {
  int64_t scanned = 0;    // files looked at
  int64_t unchanged = 0;  // same size and mtime: not read
  int64_t added = 0;
  int64_t updated = 0;  // content changed (re-embedded) or touched (same content)
  int64_t moved = 0;    // renamed or moved: kept their embedding
  int64_t removed = 0;
  int64_t embedded = 0;  // images that went through the model
  int64_t queued = 0;    // files handed to workers as jobs (scale-out mode)
  int64_t failed = 0;
  std::vector<std::pair<std::string, std::string>> failures;  // path, reason
  std::vector<std::string> warnings;           // what was not scanned, and why (an unreadable folder, a swapped root)
  std::vector<UnavailableFolder> unavailable;  // of the scopes reconciled (their reasons are warnings too)
  double seconds = 0;
  double decode_seconds = 0, encode_seconds = 0, write_seconds = 0;  // busy time per pipeline stage
};

// What the ingest pipeline is doing (for progress displays and the server's status).
struct PipelineStats {
  int64_t queued = 0;     // files waiting to be read and decoded
  int64_t decoded = 0;    // images waiting for the encoder
  int64_t encoded = 0;    // results waiting to be written
  int64_t in_flight = 0;  // submitted and not yet written
  int64_t done = 0;       // files that reached their outcome
  int64_t embedded = 0;
  int64_t failed = 0;
  double images_per_s = 0;                                           // over the last ten seconds
  double decode_seconds = 0, encode_seconds = 0, write_seconds = 0;  // busy time per stage (decode: all threads)
  double uptime_seconds = 0;
  // Why writes are failing and being retried (the disk full, the database unreachable); empty while
  // they succeed. Nothing is lost meanwhile: the batch waits and is written once they succeed.
  std::string write_error;
};

// Makes the collection hold exactly the images under `roots`: new and changed files embedded,
// renames and copies recognised by content (never embedded again), deleted files removed. Files
// that are not images (by content) are ignored; images that cannot be read are recorded as failed.
Result<SyncReport> SyncFolders(std::span<const std::string> roots, const ClipModel& model, Collection* collection,
                               const SyncOptions& options = {});

struct WatchOptions {
  SyncOptions sync;
  // > 0: no inotify; rescan every this many seconds.
  double poll_seconds = 0;
  // Rescan period when inotify cannot cover a folder (watch limit, network filesystem).
  double fallback_poll_seconds = 60;
  // A file is taken once it was closed after writing and then left alone this long.
  int quiet_ms = 400;
  // A file still open for writing is taken anyway after this long without events.
  int open_write_timeout_ms = 30'000;
};

struct WatchStats {
  std::vector<std::string> roots;
  std::string mode;                            // "inotify", "polling" or "inotify+polling"
  std::vector<std::string> notes;              // why polling is in use, files that could not be read, …
  std::vector<UnavailableFolder> unavailable;  // as the last reconciliation of each found them
  int64_t watched_folders = 0;
  int64_t pending_paths = 0;  // changed paths waiting for their quiet time
  int64_t rescans = 0;        // full reconciliations since start: polling, overflow, Rescan()
  PipelineStats pipeline;
  SyncReport totals;  // everything done since start, the start-up reconciliation included
};

// Follows folders live: reconciles them with the collection at start, then applies every change
// (inotify, or periodic rescans where inotify cannot cover a folder) through the ingest pipeline.
class FolderWatcher {
 public:
  // Returns once the watches are in place; the start-up reconciliation runs in the background.
  static Result<std::unique_ptr<FolderWatcher>> Start(std::span<const std::string> roots, const ClipModel& model,
                                                      Collection* collection, const WatchOptions& options = {});
  virtual ~FolderWatcher() = default;
  // Stops watching and drains: every change seen so far is written. Idempotent.
  virtual void Stop() = 0;
  // Reconciles a root (or everything, when empty) now, as after a missed event.
  virtual Status Rescan(const std::string& root = "") = 0;
  // True when nothing is pending or in flight (the collection matches the last events seen).
  virtual bool Idle() const = 0;
  virtual WatchStats Stats() const = 0;
  // The folders whose images are offline now (WatchStats::unavailable, without the rest).
  virtual std::vector<UnavailableFolder> Unavailable() const = 0;
  // Set when the watcher stopped by itself (the collection could not be written).
  virtual Status error() const = 0;
};

struct TextOptions {
  bool enabled = true;
  TextReaderOptions reader;  // languages, data folder, limits
  int threads = 0;           // readers; 0: one per core, at most four
  // Pictures (and video frames) larger than this are not read (as DecodeOptions::max_pixels).
  uint64_t max_pixels = 100'000'000;
  // True while the process is embedding: readers then start no new picture, so that embedding never
  // waits for text (a picture being read finishes, at low priority). Unset: never busy.
  std::function<bool()> busy;
};

struct TextStats {
  bool enabled = false;
  std::string languages;
  int64_t read = 0;         // contents whose text is read (the collection's count)
  int64_t pending = 0;      // images and videos waiting (the collection's count)
  int64_t done = 0;         // read since start
  int64_t failed = 0;       // could not be read since start (tried again at the next start)
  double images_per_s = 0;  // over the last minute
  std::string error;        // why the stage stopped, if it did
};

// Reads the text images show (imgsearch/ocr.h) into the collection, as a stage of its own beside
// the embedding pipeline: images are searchable by what they look like as soon as they are
// embedded, and gain their text when it is read. Works through every image and video whose content
// has no text yet (an existing collection gains text without embedding anything again), then waits
// for more; a video's text is read from its embedded frames, each word with its frame's time. Its
// readers run at a low priority and pause while the process embeds (TextOptions::busy), so
// embedding never waits for them. Reads local files (ingest/text_stage.h takes another reader).
class TextRecognition {
 public:
  // kNotFound (naming the package) when a language asked for is not installed; null (after a
  // warning) when only the default language's data is missing: images are still indexed.
  static Result<std::unique_ptr<TextRecognition>> Start(Collection* collection, const TextOptions& options = {});
  virtual ~TextRecognition() = default;
  // Looks for new work now rather than at the next poll (after a write).
  virtual void Wake() = 0;
  // Stops after the images being read (what was read is kept; a video cut short is read again
  // next time). Idempotent.
  virtual void Stop() = 0;
  // True when nothing is waiting or being read.
  virtual bool Idle() const = 0;
  virtual TextStats Stats() const = 0;
};

// Re-embeds every image of the collection in `dir` with `model` (after a model change). Builds the
// new collection beside the old one and swaps them only when it is complete.
Result<SyncReport> ReindexCollection(const std::string& dir, const ClipModel& model, const SyncOptions& options = {});

// Brings every image of `from` into `to` (a collection bound to `model`) by embedding it again,
// and records `from`'s folders in `to`. With options.queue, the files become jobs for workers.
Result<SyncReport> ReembedInto(Collection* from, Collection* to, const ClipModel& model,
                               const SyncOptions& options = {});

// The collection's identity for a model.
ModelIdentity IdentityOf(const ClipModel& model);

}  // namespace imgsearch
