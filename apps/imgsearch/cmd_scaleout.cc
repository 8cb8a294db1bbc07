// imgsearch worker / migrate: the scale-out roles that exist only with PostgreSQL.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "commands.h"
#include "imgsearch/scaleout.h"
#include "ingest_common.h"

namespace imgsearch::cli {

RunFn AddWorkerCommand(CLI::App& root) {
  struct Flags {
    std::string store, model, name, precision = "auto";
    std::vector<std::string> maps;
    bool offline = false;
    int threads = 0, decode_threads = 0, batch = 32, max_attempts = 5;
    double lease_seconds = 120, max_megapixels = 100;
    VideoOptions video;
    bool no_ocr = false;
    std::string ocr_lang = "eng";
    int ocr_threads = 0;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("worker", "embed the images other imgsearch processes queued in PostgreSQL");
  app->add_option("--store", f->store, "the collection in PostgreSQL: postgresql://…")
      ->envname("IMGSEARCH_STORE")
      ->required();
  app->add_option("--model", f->model,
                  "model folder or hub name (must be the collection's; default: the one it records)");
  app->add_flag("--offline", f->offline, "never download a model");
  AddPrecisionFlag(app, &f->precision);
  app->add_option("--threads", f->threads, "threads for the model (0: all cores)");
  app->add_option("--decode-threads", f->decode_threads, "threads decoding images (0: one per core)");
  app->add_option("--batch", f->batch, "jobs claimed (and images per model call) at a time")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app->add_option("--lease-seconds", f->lease_seconds,
                  "a claimed batch not finished in this time goes to another worker")
      ->capture_default_str()
      ->check(CLI::Range(5.0, 86400.0));
  app->add_option("--max-attempts", f->max_attempts, "after this many attempts an image is recorded as failed")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app->add_option("--map", f->maps,
                  "PREFIX=TARGET: read files queued under PREFIX from TARGET instead, a folder (another mount of the "
                  "share) or an http(s) URL; repeatable");
  app->add_option("--name", f->name, "how this worker is shown in status (default: host:pid)");
  app->add_option("--max-megapixels", f->max_megapixels, "record larger images as failed without decoding them")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 10000.0));
  AddVideoFlags(app, &f->video);
  AddTextFlags(app, &f->no_ocr, &f->ocr_lang, &f->ocr_threads);
  return [f] {
    if (!IsPostgresUrl(f->store)) {
      return ReportError(Status::InvalidArgument("--store must be a postgresql:// URL, not \"" + f->store + "\""));
    }
    WorkerOptions options;
    options.name = f->name;
    options.batch_size = f->batch;
    options.decode_threads = f->decode_threads;
    options.lease_seconds = f->lease_seconds;
    options.max_attempts = f->max_attempts;
    options.decode.max_pixels = static_cast<uint64_t>(f->max_megapixels * 1e6);
    options.video = f->video;
    options.text.enabled = !f->no_ocr;
    options.text.reader.languages = f->ocr_lang;
    options.text.threads = f->ocr_threads;
    options.text.max_pixels = options.decode.max_pixels;
    for (const std::string& m : f->maps) {
      const size_t eq = m.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == m.size() || m[0] != '/') {
        return ReportError(Status::InvalidArgument("--map \"" + m + "\": expected /FOLDER=TARGET"));
      }
      options.path_maps.push_back({m.substr(0, eq), m.substr(eq + 1)});
    }
    const sigset_t signals = BlockStopSignals();
    auto model_options = ModelOptionsFor(f->precision, f->threads);
    if (!model_options.ok()) return ReportError(model_options.status());
    auto model = LoadModel(ModelFor(StoreFlags{.db = "", .store = f->store}, f->model), *model_options,
                           {.pull_if_missing = true, .offline = f->offline});
    if (!model.ok()) return ReportError(model.status());

    std::atomic<bool> stop{false};
    std::atomic<bool> stop_requested{false};
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&signals, &sig);
      stop_requested = !stop;
      stop = true;
      StopWaitingForDatabase();
    });
    std::printf("worker started on %s; Ctrl-C to stop after the batch in hand\n", RedactedLocation(f->store).c_str());
    std::fflush(stdout);
    auto last_print = std::chrono::steady_clock::now();
    int64_t printed_jobs = 0;
    auto report = RunWorker(f->store, **model, options, stop, [&](const WorkerReport& r) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last_print < std::chrono::seconds(5)) return;
      const double s = std::chrono::duration<double>(now - last_print).count();
      std::printf("%lld jobs done (%lld embedded, %lld failed, %lld to retry), %.1f jobs/s\n",
                  static_cast<long long>(r.jobs), static_cast<long long>(r.embedded), static_cast<long long>(r.failed),
                  static_cast<long long>(r.retried), (r.jobs - printed_jobs) / s);
      std::fflush(stdout);
      printed_jobs = r.jobs;
      last_print = now;
    });
    if (!stop) {
      stop = true;
      pthread_kill(waiter.native_handle(), SIGTERM);  // wake the waiter: the worker ended by itself
    }
    waiter.join();
    if (!report.ok() && stop_requested && report.status().code() == StatusCode::kUnavailable) {
      std::printf("stopped while waiting for the database\n");
      return kExitOk;
    }
    if (!report.ok()) return ReportError(report.status());
    std::printf("stopped: %lld jobs done (%lld embedded, %lld failed, %lld handed back, %lld superseded) in %.1fs\n",
                static_cast<long long>(report->jobs), static_cast<long long>(report->embedded),
                static_cast<long long>(report->failed), static_cast<long long>(report->retried),
                static_cast<long long>(report->superseded), report->seconds);
    return kExitOk;
  };
}

RunFn AddMigrateCommand(CLI::App& root) {
  struct Flags {
    std::string from, to;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand(
      "migrate", "copy an embedded collection into PostgreSQL (vectors included; nothing re-embedded)");
  app->add_option("--from", f->from, "the embedded collection's folder")->required();
  app->add_option("--to", f->to, "postgresql://… (the same model, or an empty database)")->required();
  return [f] {
    const auto start = std::chrono::steady_clock::now();
    auto report = MigrateCollection(f->from, f->to);
    if (!report.ok()) return ReportError(report.status());
    std::printf("copied %lld indexed and %lld failed images (%lld distinct vectors) to %s in %.1fs\n",
                static_cast<long long>(report->indexed), static_cast<long long>(report->failed),
                static_cast<long long>(report->vectors), RedactedLocation(f->to).c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return kExitOk;
  };
}

}  // namespace imgsearch::cli
