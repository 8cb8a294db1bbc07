// imgsearch index / watch / reindex: bring folders into a collection, once or live.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/ingest.h"

namespace imgsearch::cli {

namespace {

// Flags shared by index and watch.
struct IngestFlags {
  std::string db;
  std::string model;
  std::vector<std::string> paths;
  std::vector<std::string> include, exclude;
  bool hidden = false;
  bool follow_symlinks = false;
  bool offline = false;
  int threads = 0;
  int decode_threads = 0;
  int batch = 32;
  double max_megapixels = 100;
};

void AddIngestFlags(CLI::App* app, IngestFlags* f) {
  app->add_option("--db", f->db, "collection directory (created if missing)")->required();
  app->add_option("--model", f->model,
                  "model folder or hub name (default: $IMGSEARCH_MODEL, then openai/clip-vit-base-patch32, "
                  "downloaded on first use)");
  app->add_flag("--offline", f->offline, "never download a model");
  app->add_option("paths", f->paths, "folders (or files) to index")->required();
  app->add_option("--include", f->include, "only file names matching these globs (e.g. '*.jpg')");
  app->add_option("--exclude", f->exclude, "skip file names matching these globs");
  app->add_flag("--hidden", f->hidden, "include hidden files and folders");
  app->add_flag("--follow-symlinks", f->follow_symlinks, "follow symbolic links to folders");
  app->add_option("--threads", f->threads, "threads for the model (0: all cores)");
  app->add_option("--decode-threads", f->decode_threads, "threads decoding images (0: one per core)");
  app->add_option("--batch", f->batch, "images per model call")->capture_default_str()->check(CLI::Range(1, 1024));
  app->add_option("--max-megapixels", f->max_megapixels, "record larger images as failed without decoding them")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 10000.0));
}

SyncOptions SyncOptionsOf(const IngestFlags& f) {
  SyncOptions options;
  options.scan.include_hidden = f.hidden;
  options.scan.follow_symlinks = f.follow_symlinks;
  options.scan.include_globs = f.include;
  options.scan.exclude_globs = f.exclude;
  // The collection may live inside a folder it indexes; its files are never images to index.
  options.scan.exclude_paths = {std::filesystem::absolute(f.db).lexically_normal().string()};
  while (options.scan.exclude_paths[0].size() > 1 && options.scan.exclude_paths[0].back() == '/') {
    options.scan.exclude_paths[0].pop_back();
  }
  options.decode.max_pixels = static_cast<uint64_t>(f.max_megapixels * 1e6);
  options.batch_size = f.batch;
  options.decode_threads = f.decode_threads;
  return options;
}

void PrintFailures(const SyncReport& r) {
  for (const auto& [path, reason] : r.failures) std::printf("failed: %s: %s\n", path.c_str(), reason.c_str());
}

}  // namespace

RunFn AddIndexCommand(CLI::App& root) {
  auto f = std::make_shared<IngestFlags>();
  CLI::App* app = root.add_subcommand("index", "add, update and remove images so the collection matches folders");
  AddIngestFlags(app, f.get());
  return [f] {
    auto model = LoadModel(f->model, {.n_threads = f->threads}, {.pull_if_missing = true, .offline = f->offline});
    if (!model.ok()) return ReportError(model.status(), kExitUsage);
    const ModelIdentity identity = IdentityOf(**model);
    auto collection = OpenCollection(f->db, &identity);
    if (!collection.ok()) return ReportError(collection.status(), kExitUsage);

    SyncOptions options = SyncOptionsOf(*f);
    const bool tty = ::isatty(2) != 0;
    const auto start = std::chrono::steady_clock::now();
    auto last = start;
    options.on_progress = [&](int64_t done, int64_t total) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last < std::chrono::milliseconds(tty ? 200 : 5000) && done != total) return;
      if (done == 0 && total == 0) return;
      last = now;
      const double s = std::chrono::duration<double>(now - start).count();
      const double rate = s > 0 ? done / s : 0;
      const double eta = rate > 0 ? (total - done) / rate : 0;
      std::fprintf(stderr,
                   tty ? "\r%lld/%lld files  %.1f files/s  ETA %.0fs   " : "%lld/%lld files, %.1f files/s, ETA %.0fs\n",
                   static_cast<long long>(done), static_cast<long long>(total), rate, eta);
    };
    auto report = SyncFolders(f->paths, **model, collection->get(), options);
    if (tty) std::fprintf(stderr, "\n");
    if (!report.ok()) return ReportError(report.status(), kExitUsage);
    const SyncReport& r = *report;
    std::printf(
        "%lld files scanned in %.1fs: %lld added, %lld updated, %lld moved, %lld removed, %lld unchanged, "
        "%lld failed (%lld embedded)\n",
        static_cast<long long>(r.scanned), r.seconds, static_cast<long long>(r.added),
        static_cast<long long>(r.updated), static_cast<long long>(r.moved), static_cast<long long>(r.removed),
        static_cast<long long>(r.unchanged), static_cast<long long>(r.failed), static_cast<long long>(r.embedded));
    const double busy = r.decode_seconds + r.encode_seconds + r.write_seconds;
    if (r.embedded > 0 && busy > 0) {
      std::printf("time in stages: decode %.0f%%, encode %.0f%%, write %.0f%% (decode summed over threads)\n",
                  100 * r.decode_seconds / busy, 100 * r.encode_seconds / busy, 100 * r.write_seconds / busy);
    }
    PrintFailures(r);
    return r.failed > 0 ? kExitSomeFailed : kExitOk;
  };
}

RunFn AddWatchCommand(CLI::App& root) {
  struct Flags : IngestFlags {
    double poll = 0;
    int quiet_ms = 400;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("watch", "index folders, then follow every change until interrupted");
  AddIngestFlags(app, f.get());
  app->add_option("--poll", f->poll, "rescan every SECONDS instead of using inotify (network filesystems)")
      ->check(CLI::Range(0.1, 86400.0));
  app->add_option("--quiet-ms", f->quiet_ms, "how long a changed file must stay untouched before it is read")
      ->capture_default_str()
      ->check(CLI::Range(0, 60'000));
  return [f] {
    // SIGINT and SIGTERM are taken here, by sigtimedwait; every thread started later inherits the mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    auto model = LoadModel(f->model, {.n_threads = f->threads}, {.pull_if_missing = true, .offline = f->offline});
    if (!model.ok()) return ReportError(model.status(), kExitUsage);
    const ModelIdentity identity = IdentityOf(**model);
    auto collection = OpenCollection(f->db, &identity);
    if (!collection.ok()) return ReportError(collection.status(), kExitUsage);
    WatchOptions options;
    options.sync = SyncOptionsOf(*f);
    options.poll_seconds = f->poll;
    options.quiet_ms = f->quiet_ms;
    auto watcher = FolderWatcher::Start(f->paths, **model, collection->get(), options);
    if (!watcher.ok()) return ReportError(watcher.status(), kExitUsage);

    WatchStatus s = (*watcher)->Describe();
    std::printf("watching %zu folder%s (%s, %lld folders watched); Ctrl-C to stop\n", s.roots.size(),
                s.roots.size() == 1 ? "" : "s", s.mode.c_str(), static_cast<long long>(s.watched_folders));
    std::fflush(stdout);
    SyncReport shown;
    size_t failures_shown = 0;
    bool was_idle = false;
    bool reconciled = false;
    int exit_code = kExitOk;
    while (true) {
      timespec wait{1, 0};
      const int sig = sigtimedwait(&signals, nullptr, &wait);
      if (sig == SIGINT || sig == SIGTERM) {
        std::printf("stopping: finishing the images in flight\n");
        std::fflush(stdout);
        break;
      }
      if (Status err = (*watcher)->error(); !err.ok()) {
        ReportError(err, kExitUsage);
        exit_code = kExitUsage;
        break;
      }
      s = (*watcher)->Describe();
      const SyncReport& t = s.totals;
      for (; failures_shown < t.failures.size(); ++failures_shown) {
        std::printf("failed: %s: %s\n", t.failures[failures_shown].first.c_str(),
                    t.failures[failures_shown].second.c_str());
      }
      const bool idle = (*watcher)->Idle();
      if (idle && !reconciled) {
        reconciled = true;
        auto stats = (*collection)->Stats();
        std::printf("initial scan done: %lld images indexed, %lld failed; following changes\n",
                    static_cast<long long>(stats.ok() ? stats->indexed : 0),
                    static_cast<long long>(stats.ok() ? stats->failed : 0));
        std::fflush(stdout);
      }
      const bool changed = t.added != shown.added || t.updated != shown.updated || t.moved != shown.moved ||
                           t.removed != shown.removed || t.failed != shown.failed;
      if (changed && (idle || !was_idle)) {
        std::time_t now = std::time(nullptr);
        char when[16];
        std::strftime(when, sizeof(when), "%H:%M:%S", std::localtime(&now));
        std::printf("%s  %lld added, %lld updated, %lld moved, %lld removed, %lld failed%s", when,
                    static_cast<long long>(t.added - shown.added), static_cast<long long>(t.updated - shown.updated),
                    static_cast<long long>(t.moved - shown.moved), static_cast<long long>(t.removed - shown.removed),
                    static_cast<long long>(t.failed - shown.failed), idle ? "; up to date\n" : "");
        if (!idle) {
          std::printf("; %lld in flight, %.1f images/s\n", static_cast<long long>(s.pipeline.in_flight),
                      s.pipeline.images_per_s);
        }
        std::fflush(stdout);
        shown = t;
      }
      was_idle = idle;
    }
    (*watcher)->Stop();
    s = (*watcher)->Describe();
    std::printf("stopped: %lld added, %lld updated, %lld moved, %lld removed, %lld failed since start\n",
                static_cast<long long>(s.totals.added), static_cast<long long>(s.totals.updated),
                static_cast<long long>(s.totals.moved), static_cast<long long>(s.totals.removed),
                static_cast<long long>(s.totals.failed));
    return exit_code;
  };
}

RunFn AddReindexCommand(CLI::App& root) {
  struct Flags {
    std::string db, model;
    int threads = 0;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("reindex", "re-embed every image of a collection with another model");
  app->add_option("--db", f->db, "collection directory")->required();
  app->add_option("--model", f->model, "the new model: folder or hub name");
  app->add_option("--threads", f->threads, "threads for the model (0: all cores)");
  return [f] {
    auto model = LoadModel(f->model, {.n_threads = f->threads});
    if (!model.ok()) return ReportError(model.status(), kExitUsage);
    auto report = ReindexCollection(f->db, **model);
    if (!report.ok()) return ReportError(report.status(), kExitUsage);
    std::printf("re-embedded %lld images in %.1fs (%lld failed)\n", static_cast<long long>(report->embedded),
                report->seconds, static_cast<long long>(report->failed));
    PrintFailures(*report);
    return report->failed > 0 ? kExitSomeFailed : kExitOk;
  };
}

}  // namespace imgsearch::cli
