// imgsearch index: make a collection hold exactly the images in some folders.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>

#include "commands.h"
#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/ingest.h"

namespace imgsearch::cli {

RunFn AddIndexCommand(CLI::App& root) {
  struct Flags {
    std::string db;
    std::string model;
    std::vector<std::string> paths;
    std::vector<std::string> include, exclude;
    bool hidden = false;
    bool follow_symlinks = false;
    int threads = 0;
    double max_megapixels = 100;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("index", "add, update and remove images so the collection matches folders");
  app->add_option("--db", f->db, "collection directory (created if missing)")->required();
  app->add_option("--model", f->model, "model directory (default: $IMGSEARCH_MODEL)");
  app->add_option("paths", f->paths, "folders (or files) to index")->required();
  app->add_option("--include", f->include, "only file names matching these globs (e.g. '*.jpg')");
  app->add_option("--exclude", f->exclude, "skip file names matching these globs");
  app->add_flag("--hidden", f->hidden, "include hidden files and folders");
  app->add_flag("--follow-symlinks", f->follow_symlinks, "follow symbolic links to folders");
  app->add_option("--threads", f->threads, "threads for the model (0: all cores)");
  app->add_option("--max-megapixels", f->max_megapixels, "record larger images as failed without decoding them")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 10000.0));
  return [f] {
    auto model = LoadModel(f->model, f->threads);
    if (!model.ok()) return ReportError(model.status(), kExitUsage);
    const ModelIdentity identity = IdentityOf(**model);
    auto collection = OpenCollection(f->db, &identity);
    if (!collection.ok()) return ReportError(collection.status(), kExitUsage);

    SyncOptions options;
    options.scan.include_hidden = f->hidden;
    options.scan.follow_symlinks = f->follow_symlinks;
    options.scan.include_globs = f->include;
    options.scan.exclude_globs = f->exclude;
    options.decode.max_pixels = static_cast<uint64_t>(f->max_megapixels * 1e6);
    const bool tty = ::isatty(2) != 0;
    const auto start = std::chrono::steady_clock::now();
    auto last = start;
    options.on_progress = [&](int64_t done, int64_t total) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last < std::chrono::milliseconds(tty ? 200 : 5000) && done != total) return;
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
    for (const auto& [path, reason] : r.failures) std::printf("failed: %s: %s\n", path.c_str(), reason.c_str());
    return r.failed > 0 ? kExitSomeFailed : kExitOk;
  };
}

}  // namespace imgsearch::cli

namespace imgsearch::cli {

RunFn AddReindexCommand(CLI::App& root) {
  struct Flags {
    std::string db, model;
    int threads = 0;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("reindex", "re-embed every image of a collection with another model");
  app->add_option("--db", f->db, "collection directory")->required();
  app->add_option("--model", f->model, "the new model (default: $IMGSEARCH_MODEL)");
  app->add_option("--threads", f->threads, "threads for the model (0: all cores)");
  return [f] {
    auto model = LoadModel(f->model, f->threads);
    if (!model.ok()) return ReportError(model.status(), kExitUsage);
    auto report = ReindexCollection(f->db, **model);
    if (!report.ok()) return ReportError(report.status(), kExitUsage);
    std::printf("re-embedded %lld images in %.1fs (%lld failed)\n", static_cast<long long>(report->embedded),
                report->seconds, static_cast<long long>(report->failed));
    for (const auto& [path, reason] : report->failures) std::printf("failed: %s: %s\n", path.c_str(), reason.c_str());
    return report->failed > 0 ? kExitSomeFailed : kExitOk;
  };
}

}  // namespace imgsearch::cli
