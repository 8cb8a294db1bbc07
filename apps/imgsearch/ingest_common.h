// What index, watch and serve share: the ingestion flags, and following a watcher until a signal.
#pragma once

#include <signal.h>

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/ingest.h"

namespace imgsearch::cli {

struct IngestFlags {
  std::string db;
  std::string model;
  std::vector<std::string> include, exclude;
  bool hidden = false;
  bool follow_symlinks = false;
  bool offline = false;
  int threads = 0;
  int decode_threads = 0;
  int batch = 32;
  double max_megapixels = 100;
};

// Adds --db, --model, --offline and the scan, decode and batching flags (not the folders).
void AddIngestFlags(CLI::App* app, IngestFlags* f);
SyncOptions SyncOptionsOf(const IngestFlags& f);

// The model (pulled on first use unless --offline) and the collection bound to it.
struct IngestTarget {
  std::unique_ptr<ClipModel> model;
  std::unique_ptr<Collection> collection;
};
Result<IngestTarget> OpenIngestTarget(const IngestFlags& f);

struct WatchFlags {
  double poll = 0;
  int quiet_ms = 400;
};
void AddWatchFlags(CLI::App* app, WatchFlags* f);
WatchOptions WatchOptionsOf(const IngestFlags& ingest, const WatchFlags& watch);

// "watching 2 folders (inotify, 40 folders watched); Ctrl-C to stop"
void PrintWatching(const FolderWatcher& watcher);

// Blocks SIGINT and SIGTERM in this thread and every thread started after (they are then taken by
// FollowUntilStopped); returns the set.
sigset_t BlockStopSignals();

// Prints what the watcher does (the end of the start-up reconciliation, activity, failures) until
// one of `signals` arrives or the watcher fails; then stops it and prints the totals. Returns the
// exit code. With no watcher, only waits for the signal.
int FollowUntilStopped(FolderWatcher* watcher, Collection* collection, const sigset_t& signals);

}  // namespace imgsearch::cli
