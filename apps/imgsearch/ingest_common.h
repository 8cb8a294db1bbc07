// What index, watch and serve share: the ingestion flags, and following a watcher until a signal.
#pragma once

#include <signal.h>

#include <CLI/CLI.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/ingest.h"
#include "imgsearch/video.h"

namespace imgsearch::cli {

// Where the collection is: --db DIR (embedded) or --store postgresql://… ($IMGSEARCH_STORE).
struct StoreFlags {
  std::string db;
  std::string store;
};
// Adds --db and --store; exactly one must be given (checked by LocationOf).
void AddStoreFlags(CLI::App* app, StoreFlags* f, const std::string& db_help = "collection directory");
// The location the flags name: the --db folder or the --store URL.
Result<std::string> LocationOf(const StoreFlags& f);
// The model a command on that collection loads: `model_flag` (--model) when given, else the model
// the collection records it was built with, else "" (ResolveModel's defaults then apply).
std::string ModelFor(const StoreFlags& f, const std::string& model_flag);

struct IngestFlags : StoreFlags {
  bool embed_local = false;
  std::string model;
  std::vector<std::string> include, exclude;
  bool hidden = false;
  bool follow_symlinks = false;
  bool forget_missing = false;
  std::string keep_removed;  // a duration (base/text.h); empty: as the collection has it
  bool offline = false;
  std::string precision = "auto";
  int threads = 0;
  int decode_threads = 0;
  int batch = 32;
  double max_megapixels = 100;
  VideoOptions video;
  bool no_ocr = false;
  std::string ocr_lang = "eng";
  int ocr_threads = 0;
};

// The text stage for a command that writes `collection` (null with --no-ocr, or without the default
// language's data). Its readers start no picture while `busy` (the process embedding) says so.
Result<std::unique_ptr<TextRecognition>> StartTextStage(const IngestFlags& f, Collection* collection,
                                                        std::function<bool()> busy = {});

// --video-interval and --video-max-frames (index, watch, serve, worker).
void AddVideoFlags(CLI::App* app, VideoOptions* video);
// --no-ocr, --ocr-lang and --ocr-threads (index, watch, serve, worker).
void AddTextFlags(CLI::App* app, bool* no_ocr, std::string* languages, int* threads);

// Adds --db/--store, --embed-local, --model, --offline and the scan, decode and batching flags (not
// the folders).
void AddIngestFlags(CLI::App* app, IngestFlags* f);

// The model (pulled on first use unless --offline) and the collection bound to it.
struct IngestTarget {
  std::unique_ptr<ClipModel> model;
  std::unique_ptr<Collection> collection;
  std::unique_ptr<JobQueue> queue;  // scale-out: where new files go (unless --embed-local)
};
// `options` for the collection (watch and serve wait out a database outage however long it lasts).
Result<IngestTarget> OpenIngestTarget(const IngestFlags& f, const CollectionOptions& options = {});

// Ok when every path exists (or --forget-missing, which accepts missing ones), else kNotFound naming
// the first that does not: checked before anything is created.
Status CheckPathsExist(const std::vector<std::string>& paths, const IngestFlags& f);

// The sync options of the flags; with a target that has a queue, files become jobs.
SyncOptions SyncOptionsOf(const IngestFlags& f, const IngestTarget* target = nullptr);

struct WatchFlags {
  double poll = 0;
  int quiet_ms = 400;
};
void AddWatchFlags(CLI::App* app, WatchFlags* f);
WatchOptions WatchOptionsOf(const IngestFlags& ingest, const WatchFlags& watch, const IngestTarget* target);

// "watching 2 folders (inotify, 40 folders watched); Ctrl-C to stop"
void PrintWatching(const FolderWatcher& watcher);

// Blocks SIGINT and SIGTERM in this thread and every thread started after (they are then taken by
// FollowUntilStopped); returns the set.
sigset_t BlockStopSignals();

// While it lives, a stop signal (of `signals`, blocked) ends the process at once: for the start-up
// of watch and serve, when nothing is in flight yet but the model, the collection or a database
// that is down may take long. Destroy it before FollowUntilStopped takes the signals over.
class StartupSignalGuard {
 public:
  explicit StartupSignalGuard(const sigset_t& signals);
  ~StartupSignalGuard();
  StartupSignalGuard(const StartupSignalGuard&) = delete;
  StartupSignalGuard& operator=(const StartupSignalGuard&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Prints what the watcher does (the end of the start-up reconciliation, activity, failures) until
// one of `signals` arrives or the watcher fails; then stops it and prints the totals. Returns the
// exit code. With no watcher, only waits for the signal.
int FollowUntilStopped(FolderWatcher* watcher, Collection* collection, const sigset_t& signals);

}  // namespace imgsearch::cli
