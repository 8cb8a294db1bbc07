// imgsearch index / watch / reindex: bring folders into a collection, once or live.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <thread>

#include "commands.h"
#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/ingest.h"
#include "imgsearch/scaleout.h"
#include "ingest_common.h"

namespace imgsearch::cli {

namespace {

void PrintFailures(const SyncReport& r) {
  for (const auto& [path, reason] : r.failures) std::printf("failed: %s: %s\n", path.c_str(), reason.c_str());
}

// Waits until the text stage has read every image, showing its progress.
void WaitForText(TextRecognition* text, bool tty) {
  text->Wake();
  const auto start = std::chrono::steady_clock::now();
  auto last = start;
  auto failing_since = start;
  while (!text->Idle()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const auto now = std::chrono::steady_clock::now();
    // The collection cannot be asked for work (its database away): the text is read next time.
    if (text->Stats().error.empty()) failing_since = now;
    if (now - failing_since > std::chrono::seconds(30)) {
      std::fprintf(stderr, "imgsearch: warning: text in images not read: %s\n", text->Stats().error.c_str());
      break;
    }
    if (now - last < std::chrono::milliseconds(tty ? 500 : 10'000)) continue;
    last = now;
    const TextStats s = text->Stats();
    std::fprintf(
        stderr,
        tty ? "\rreading text in images: %lld read, %lld to go   " : "reading text in images: %lld read, %lld to go\n",
        static_cast<long long>(s.done), static_cast<long long>(s.pending));
  }
  if (tty && std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(500)) std::fprintf(stderr, "\n");
  const TextStats s = text->Stats();
  text->Stop();
  if (s.done > 0 || s.failed > 0) {
    std::printf("text read in %lld images in %.1fs%s\n", static_cast<long long>(s.done),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                s.failed > 0 ? (" (" + std::to_string(s.failed) + " could not be read)").c_str() : "");
  }
}

}  // namespace

RunFn AddIndexCommand(CLI::App& root) {
  struct Flags : IngestFlags {
    std::vector<std::string> paths;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("index", "add, update and remove images so the collection matches folders");
  AddIngestFlags(app, f.get());
  app->add_option("paths", f->paths, "folders to index")->required();
  return [f] {
    if (Status st = CheckPathsExist(f->paths, *f); !st.ok()) return ReportError(st);
    auto target = OpenIngestTarget(*f);
    if (!target.ok()) return ReportError(target.status());

    SyncOptions options = SyncOptionsOf(*f, &*target);
    // Text is read here when images are embedded here (else by the workers that embed them), once
    // they are: the readers are made ready first, so that a missing language stops nothing midway.
    std::unique_ptr<TextRecognition> text;
    std::atomic<bool> embedding{true};
    if (options.queue == nullptr) {
      auto started = StartTextStage(*f, target->collection.get(), [&embedding] { return embedding.load(); });
      if (!started.ok()) return ReportError(started.status());
      text = std::move(*started);
    }
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
    auto report = SyncFolders(f->paths, *target->model, target->collection.get(), options);
    embedding = false;
    if (tty) std::fprintf(stderr, "\n");
    if (!report.ok()) return ReportError(report.status());
    const SyncReport& r = *report;
    std::printf(
        "%lld files scanned in %.1fs: %lld added, %lld updated, %lld moved, %lld removed, %lld unchanged, "
        "%lld failed (%lld embedded%s)\n",
        static_cast<long long>(r.scanned), r.seconds, static_cast<long long>(r.added),
        static_cast<long long>(r.updated), static_cast<long long>(r.moved), static_cast<long long>(r.removed),
        static_cast<long long>(r.unchanged), static_cast<long long>(r.failed), static_cast<long long>(r.embedded),
        r.queued > 0 ? (", " + std::to_string(r.queued) + " queued for workers").c_str() : "");
    const double busy = r.decode_seconds + r.encode_seconds + r.write_seconds;
    if (r.embedded > 0 && busy > 0) {
      std::printf("time in stages: decode %.0f%%, encode %.0f%%, write %.0f%% (decode summed over threads)\n",
                  100 * r.decode_seconds / busy, 100 * r.encode_seconds / busy, 100 * r.write_seconds / busy);
    }
    PrintFailures(r);
    if (text != nullptr) WaitForText(text.get(), tty);
    return r.failed > 0 ? kExitSomeFailed : kExitOk;
  };
}

RunFn AddWatchCommand(CLI::App& root) {
  struct Flags : IngestFlags, WatchFlags {
    std::vector<std::string> paths;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("watch", "index folders, then follow every change until interrupted");
  AddIngestFlags(app, f.get());
  AddWatchFlags(app, f.get());
  app->add_option("paths", f->paths, "folders to watch")->required();
  return [f] {
    if (Status st = CheckPathsExist(f->paths, *f); !st.ok()) return ReportError(st);
    const sigset_t signals = BlockStopSignals();
    auto guard = std::make_unique<StartupSignalGuard>(signals);
    auto target = OpenIngestTarget(*f, {.wait_for_database = true});
    if (!target.ok()) return ReportError(target.status());
    // Declared before the stage, which asks it while it runs.
    std::atomic<FolderWatcher*> following{nullptr};  // set once started: until then it is busy
    std::unique_ptr<TextRecognition> text;
    if (target->queue == nullptr || f->embed_local) {
      auto started = StartTextStage(*f, target->collection.get(), [&following] {
        FolderWatcher* w = following.load();
        return w == nullptr || !w->Idle();
      });
      if (!started.ok()) return ReportError(started.status());
      text = std::move(*started);
    }
    auto watcher =
        FolderWatcher::Start(f->paths, *target->model, target->collection.get(), WatchOptionsOf(*f, *f, &*target));
    if (!watcher.ok()) return ReportError(watcher.status());
    following = watcher->get();
    PrintWatching(**watcher);
    guard.reset();
    const int exit_code = FollowUntilStopped(watcher->get(), target->collection.get(), signals);
    if (text != nullptr) text->Stop();  // before the watcher it asks goes
    return exit_code;
  };
}

RunFn AddReindexCommand(CLI::App& root) {
  struct Flags : StoreFlags {
    std::string model, to, precision = "auto";
    int threads = 0;
    bool embed_local = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("reindex", "re-embed every image of a collection with another model");
  AddStoreFlags(app, f.get());
  app->add_option("--to", f->to,
                  "with --store: the database that receives the re-embedded collection (postgresql://…, empty or "
                  "already bound to the new model)");
  app->add_flag("--embed-local", f->embed_local, "with --store: embed here instead of leaving it to workers");
  app->add_option("--model", f->model, "the new model: folder or hub name");
  AddPrecisionFlag(app, &f->precision);
  app->add_option("--threads", f->threads, "threads for the model (0: all cores)");
  return [f] {
    auto location = LocationOf(*f);
    if (!location.ok()) return ReportError(location.status());
    if (f->store.empty() && (!f->to.empty() || f->embed_local)) {
      return ReportError(
          Status::InvalidArgument("--to and --embed-local go with --store (a folder is re-embedded in "
                                  "place)"));
    }
    if (!f->store.empty() && !IsPostgresUrl(f->to)) {
      return ReportError(
          Status::InvalidArgument("reindex --store needs --to postgresql://… (a database for the "
                                  "re-embedded collection; switch to it once it is complete)"));
    }
    if (!f->store.empty() && f->to == f->store) {
      return ReportError(Status::InvalidArgument("--to must be another database than --store"));
    }
    auto options = ModelOptionsFor(f->precision, f->threads);
    if (!options.ok()) return ReportError(options.status());
    auto model = LoadModel(f->model, *options);
    if (!model.ok()) return ReportError(model.status());
    Result<SyncReport> report = Status::Internal("not run");
    if (f->store.empty()) {
      report = ReindexCollection(f->db, **model);
    } else {
      auto from = OpenStore(f->store, nullptr, {.read_only = true, .create_if_missing = false});
      if (!from.ok()) return ReportError(from.status());
      const ModelIdentity identity = IdentityOf(**model);
      auto to = OpenStore(f->to, &identity);
      if (!to.ok()) return ReportError(to.status());
      SyncOptions options;
      if (!f->embed_local) options.queue = to->queue.get();
      report = ReembedInto(from->collection.get(), to->collection.get(), **model, options);
    }
    if (!report.ok()) return ReportError(report.status());
    if (report->queued > 0) {
      std::printf(
          "queued %lld images for workers with the new model in %s; switch to it once `imgsearch stats "
          "--store` shows the queue empty\n",
          static_cast<long long>(report->queued), RedactedLocation(f->to).c_str());
      return kExitOk;
    }
    std::printf("re-embedded %lld images in %.1fs (%lld failed)\n", static_cast<long long>(report->embedded),
                report->seconds, static_cast<long long>(report->failed));
    PrintFailures(*report);
    return report->failed > 0 ? kExitSomeFailed : kExitOk;
  };
}

}  // namespace imgsearch::cli
