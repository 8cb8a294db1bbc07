#include "ingest_common.h"

#include "imgsearch/paths.h"

#include <pthread.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>

#include "commands.h"
#include "imgsearch/duration.h"
#include "imgsearch/path_display.h"
#include "imgsearch/scaleout.h"

namespace imgsearch::cli {

void AddStoreFlags(CLI::App* app, StoreFlags* f, const std::string& db_help) {
  app->add_option("--db", f->db, db_help);
  app->add_option("--store", f->store, "the collection in PostgreSQL (scale-out mode): postgresql://…")
      ->envname("IMGSEARCH_STORE");
}

Result<std::string> LocationOf(const StoreFlags& f) {
  if (!f.db.empty() && !f.store.empty()) {
    return Status::InvalidArgument("give --db (a folder) or --store (PostgreSQL), not both (is IMGSEARCH_STORE set?)");
  }
  if (!f.store.empty()) {
    if (!IsPostgresUrl(f.store)) {
      return Status::InvalidArgument("--store must be a postgresql:// URL, not \"" + f.store + "\"");
    }
    return f.store;
  }
  if (f.db.empty()) return Status::InvalidArgument("where is the collection? give --db DIR or --store postgresql://…");
  if (IsPostgresUrl(f.db)) return Status::InvalidArgument("--db takes a folder; give a PostgreSQL URL with --store");
  return f.db;
}

std::string ModelFor(const StoreFlags& f, const std::string& model_flag) {
  if (!model_flag.empty()) return model_flag;
  const Result<std::string> location = LocationOf(f);
  if (!location.ok()) return "";
  // Read-only, never created: a look at what is recorded (none yet: the defaults).
  Result<Store> store = OpenStore(*location, nullptr, {.read_only = true, .create_if_missing = false});
  if (!store.ok()) return "";
  const std::string source = store->collection->model().source;
  // A folder recorded on another machine (scale-out) or since moved: the defaults, as before it was
  // recorded; a model name is looked up (or pulled) by name anywhere.
  std::error_code ec;
  if (source.starts_with('/') && !std::filesystem::is_directory(source, ec)) return "";
  return source;
}

void AddIngestFlags(CLI::App* app, IngestFlags* f) {
  AddStoreFlags(app, f, "collection directory (created if missing)");
  app->add_flag("--embed-local", f->embed_local,
                "with --store: embed new images in this process instead of leaving them to workers");
  app->add_option("--model", f->model,
                  "model folder or hub name (default: the model the collection was built with, else "
                  "$IMGSEARCH_MODEL, else openai/clip-vit-base-patch32, downloaded on first use)");
  app->add_flag("--offline", f->offline, "never download a model");
  app->add_option("--include", f->include, "only file names matching these globs (e.g. '*.jpg')");
  app->add_option("--exclude", f->exclude, "skip file names matching these globs");
  app->add_flag("--hidden", f->hidden, "include hidden files and folders");
  app->add_flag("--follow-symlinks", f->follow_symlinks,
                "follow symbolic links (each folder is scanned once, however many links lead to it)");
  app->add_flag("--forget-missing", f->forget_missing,
                "a folder that is missing or empty loses its images (without it they are kept, offline: an "
                "unmounted drive is not a deletion)");
  app->add_option("--keep-removed", f->keep_removed,
                  "how long the embeddings of removed images are kept, so the same content coming back under "
                  "any name is not embedded again: 30d (the default), 12h, 0 to drop them at once; stored with "
                  "the collection");
  AddPrecisionFlag(app, &f->precision);
  app->add_option("--threads", f->threads, "threads for the model (0: all cores)");
  app->add_option("--decode-threads", f->decode_threads, "threads decoding images (0: one per core)");
  app->add_option("--batch", f->batch, "images per model call")->capture_default_str()->check(CLI::Range(1, 1024));
  app->add_option("--max-megapixels", f->max_megapixels, "record larger images as failed without decoding them")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 10000.0));
  AddVideoFlags(app, &f->video);
  AddTextFlags(app, &f->no_ocr, &f->ocr_lang, &f->ocr_threads);
}

void AddTextFlags(CLI::App* app, bool* no_ocr, std::string* languages, int* threads) {
  app->add_flag("--no-ocr", *no_ocr, "do not read the text images show (searching by the words in them)");
  app->add_option("--ocr-lang", *languages,
                  "languages of the text in images, Tesseract's names joined by + (eng+deu); each needs its data "
                  "package (tesseract-ocr-deu, …)")
      ->capture_default_str();
  app->add_option("--ocr-threads", *threads,
                  "threads reading text (0: one per core, at most 4; at a low priority, never while embedding)")
      ->check(CLI::Range(0, 64));
}

Result<std::unique_ptr<TextRecognition>> StartTextStage(const IngestFlags& f, Collection* collection,
                                                        std::function<bool()> busy) {
  if (f.no_ocr) return std::unique_ptr<TextRecognition>();
  TextOptions options;
  options.busy = std::move(busy);
  options.reader.languages = f.ocr_lang;
  options.threads = f.ocr_threads;
  options.max_pixels = static_cast<uint64_t>(f.max_megapixels * 1e6);
  return TextRecognition::Start(collection, options);
}

void AddVideoFlags(CLI::App* app, VideoOptions* video) {
  app->add_option("--video-interval", video->interval_s,
                  "seconds between the frames sampled from a video (scene changes add more)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app->add_option("--video-max-frames", video->max_frames,
                  "at most this many frames per video: a longer one is sampled evenly")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
}

Status CheckPathsExist(const std::vector<std::string>& paths, const IngestFlags& f) {
  if (f.forget_missing) return Status::Ok();
  for (const std::string& p : paths) {
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) {
      return Status::NotFound(ForTerminal(p) +
                              " does not exist (nothing was created; with --forget-missing the "
                              "images indexed from it are dropped)");
    }
  }
  return Status::Ok();
}

SyncOptions SyncOptionsOf(const IngestFlags& f, const IngestTarget* target) {
  SyncOptions options;
  if (target != nullptr && !f.embed_local) options.queue = target->queue.get();
  options.scan.include_hidden = f.hidden;
  options.scan.follow_symlinks = f.follow_symlinks;
  options.scan.forget_missing = f.forget_missing;
  options.scan.include_globs = f.include;
  options.scan.exclude_globs = f.exclude;
  // The collection may live inside a folder it indexes; its files are never images to index.
  if (!f.db.empty()) {
    options.scan.exclude_paths = {NormalisePath(f.db)};
    while (options.scan.exclude_paths[0].size() > 1 && options.scan.exclude_paths[0].back() == '/') {
      options.scan.exclude_paths[0].pop_back();
    }
  }
  options.decode.max_pixels = static_cast<uint64_t>(f.max_megapixels * 1e6);
  options.video = f.video;
  options.batch_size = f.batch;
  options.decode_threads = f.decode_threads;
  return options;
}

Result<IngestTarget> OpenIngestTarget(const IngestFlags& f, const CollectionOptions& options) {
  ASSIGN_OR_RETURN(const std::string location, LocationOf(f));
  if (f.embed_local && f.store.empty()) return Status::InvalidArgument("--embed-local goes with --store");
  CollectionOptions with_keep = options;
  if (!f.keep_removed.empty()) {
    with_keep.keep_removed = ParseDuration(f.keep_removed);
    if (!with_keep.keep_removed) {
      return Status::InvalidArgument("--keep-removed takes a duration such as 30d, 12h or 0, not \"" + f.keep_removed +
                                     "\"");
    }
  }
  IngestTarget t;
  ASSIGN_OR_RETURN(const ModelOptions model_options, ModelOptionsFor(f.precision, f.threads));
  ASSIGN_OR_RETURN(t.model,
                   LoadModel(ModelFor(f, f.model), model_options, {.pull_if_missing = true, .offline = f.offline}));
  const ModelIdentity identity = IdentityOf(*t.model);
  ASSIGN_OR_RETURN(Store store, OpenStore(location, &identity, with_keep));
  t.collection = std::move(store.collection);
  t.queue = std::move(store.queue);
  return t;
}

void PrintWatching(const FolderWatcher& watcher) {
  const WatchStats s = watcher.Stats();
  std::printf("watching %zu folder%s (%s, %lld folders watched); Ctrl-C to stop\n", s.roots.size(),
              s.roots.size() == 1 ? "" : "s", s.mode.c_str(), static_cast<long long>(s.watched_folders));
  std::fflush(stdout);
}

void AddWatchFlags(CLI::App* app, WatchFlags* f) {
  app->add_option("--poll", f->poll, "rescan every SECONDS instead of using inotify (network filesystems)")
      ->check(CLI::Range(0.1, 86400.0));
  app->add_option("--quiet-ms", f->quiet_ms, "how long a changed file must stay untouched before it is read")
      ->capture_default_str()
      ->check(CLI::Range(0, 60'000));
}

WatchOptions WatchOptionsOf(const IngestFlags& ingest, const WatchFlags& watch, const IngestTarget* target) {
  WatchOptions options;
  options.sync = SyncOptionsOf(ingest, target);
  options.poll_seconds = watch.poll;
  options.quiet_ms = watch.quiet_ms;
  return options;
}

sigset_t BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

StartupSignalGuard::StartupSignalGuard(const sigset_t& signals)
    : thread_([this, signals] {
        while (!done_) {
          timespec wait{0, 100'000'000};
          const int sig = sigtimedwait(&signals, nullptr, &wait);
          if (sig == SIGINT || sig == SIGTERM) {
            std::fprintf(stderr, "imgsearch: stopped while starting\n");
            std::_Exit(kExitOk);
          }
        }
      }) {}

StartupSignalGuard::~StartupSignalGuard() {
  done_ = true;
  thread_.join();
}

int FollowUntilStopped(FolderWatcher* watcher, Collection* collection, const sigset_t& signals) {
  if (watcher == nullptr) {
    while (true) {
      const int sig = sigwaitinfo(&signals, nullptr);
      if (sig == SIGINT || sig == SIGTERM) {
        StopWaitingForDatabase();
        return kExitOk;
      }
    }
  }
  WatchStats s;
  SyncReport shown;
  size_t failures_shown = 0;
  bool was_idle = false;
  bool reconciled = false;
  int exit_code = kExitOk;
  while (true) {
    timespec wait{1, 0};
    const int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGINT || sig == SIGTERM) {
      StopWaitingForDatabase();  // an outage must not keep us from stopping
      std::printf("stopping: finishing the images in flight\n");
      std::fflush(stdout);
      break;
    }
    if (Status err = watcher->error(); !err.ok()) {
      exit_code = ReportError(err);
      break;
    }
    s = watcher->Stats();
    const SyncReport& t = s.totals;
    for (; failures_shown < t.failures.size(); ++failures_shown) {
      std::printf("failed: %s: %s\n", t.failures[failures_shown].first.c_str(),
                  t.failures[failures_shown].second.c_str());
    }
    const bool idle = watcher->Idle();
    if (idle && !reconciled) {
      reconciled = true;
      auto stats = collection->Stats();
      const std::string queued = t.queued > 0 ? ", " + std::to_string(t.queued) + " queued for workers" : "";
      std::printf("initial scan done: %lld images indexed, %lld failed%s; following changes\n",
                  static_cast<long long>(stats.ok() ? stats->indexed : 0),
                  static_cast<long long>(stats.ok() ? stats->failed : 0), queued.c_str());
      shown.queued = t.queued;  // said just now
      std::fflush(stdout);
    }
    const bool changed = t.added != shown.added || t.updated != shown.updated || t.moved != shown.moved ||
                         t.removed != shown.removed || t.failed != shown.failed || t.queued != shown.queued;
    if (changed && (idle || !was_idle)) {
      std::time_t now = std::time(nullptr);
      char when[16];
      std::strftime(when, sizeof(when), "%H:%M:%S", std::localtime(&now));
      const std::string queued =
          t.queued != shown.queued ? ", " + std::to_string(t.queued - shown.queued) + " queued for workers" : "";
      std::printf("%s  %lld added, %lld updated, %lld moved, %lld removed, %lld failed%s%s", when,
                  static_cast<long long>(t.added - shown.added), static_cast<long long>(t.updated - shown.updated),
                  static_cast<long long>(t.moved - shown.moved), static_cast<long long>(t.removed - shown.removed),
                  static_cast<long long>(t.failed - shown.failed), queued.c_str(), idle ? "; up to date\n" : "");
      if (!idle) {
        std::printf("; %lld in flight, %.1f images/s\n", static_cast<long long>(s.pipeline.in_flight),
                    s.pipeline.images_per_s);
      }
      std::fflush(stdout);
      shown = t;
    }
    was_idle = idle;
  }
  watcher->Stop();
  s = watcher->Stats();
  if (s.totals.queued > 0)
    std::printf("queued for workers since start: %lld\n", static_cast<long long>(s.totals.queued));
  std::printf("stopped: %lld added, %lld updated, %lld moved, %lld removed, %lld failed since start\n",
              static_cast<long long>(s.totals.added), static_cast<long long>(s.totals.updated),
              static_cast<long long>(s.totals.moved), static_cast<long long>(s.totals.removed),
              static_cast<long long>(s.totals.failed));
  return exit_code;
}

}  // namespace imgsearch::cli
