// imgsearch serve: the search API and web page over a collection, following folders live.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "commands.h"
#include "imgsearch/paths.h"
#include "imgsearch/server.h"
#include "ingest_common.h"

namespace imgsearch::cli {

namespace {

// "8080", ":8080", "0.0.0.0:8080", "[::1]:8080" → host, port.
Result<std::pair<std::string, int>> ParseListen(const std::string& text) {
  std::string host = "127.0.0.1";
  std::string port = text;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Status::InvalidArgument("--listen: expected [IPv6]:PORT, got \"" + text + "\"");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else if (const size_t colon = text.rfind(':'); colon != std::string::npos) {
    if (colon > 0) host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535) {
    return Status::InvalidArgument("--listen: \"" + port + "\" is not a port number (0-65535)");
  }
  return std::make_pair(host, static_cast<int>(p));
}

bool IsLoopback(const std::string& host) { return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0; }

}  // namespace

RunFn AddServeCommand(CLI::App& root) {
  struct Flags : IngestFlags, WatchFlags {
    std::vector<std::string> watch;
    std::string listen = "127.0.0.1:8080";
    std::string token;
    std::string text_model;
    std::string thumbnails;
    std::string index_cache = CacheDir("indexes");
    double thumbnail_cache_mb = 1024;
    int http_threads = 64;
    double header_timeout = 10;
    int max_connections_per_client = 16;
    int query_batch = 64;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("serve", "serve the search API and web page, following folders live");
  AddIngestFlags(app, f.get());
  AddWatchFlags(app, f.get());
  app->add_option("--watch", f->watch, "a folder to index and follow (repeat for several)");
  app->add_option("--listen", f->listen, "address and port to serve on (0.0.0.0:PORT for every interface)")
      ->capture_default_str();
  app->add_option("--token", f->token,
                  "bearer token required for /api/rescan and /metrics (default: $IMGSEARCH_TOKEN)");
  app->add_option("--text-model", f->text_model,
                  "a text model (folder or hub name) for query texts, mapping into the collection's space, "
                  "e.g. sentence-transformers/clip-ViT-B-32-multilingual-v1 for queries in 50+ languages");
  app->add_option("--thumbnails", f->thumbnails,
                  "thumbnail cache folder (default: DB/thumbnails; with --store ~/.cache/imgsearch/thumbnails)");
  app->add_option("--index-cache", f->index_cache,
                  "with --store: where the search index is snapshotted, so a restart replays only the changes "
                  "since (\"none\": rebuild from the database at every start)")
      ->capture_default_str();
  app->add_option("--thumbnail-cache-mb", f->thumbnail_cache_mb,
                  "delete the least recently used thumbnails beyond this size (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e9));
  app->add_option("--http-threads", f->http_threads, "connections served at once")
      ->capture_default_str()
      ->check(CLI::Range(4, 4096));
  app->add_option("--header-timeout", f->header_timeout,
                  "seconds a connection has to send each request's headers (then it is closed)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app->add_option("--max-connections-per-client", f->max_connections_per_client,
                  "connections one IP address may keep open without sending a request (more are closed)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app->add_option("--query-batch", f->query_batch, "concurrent query texts embedded in one model call (1: one by one)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  return [f] {
    auto listen = ParseListen(f->listen);
    if (!listen.ok()) return ReportError(listen.status());
    // Nothing is created (the collection, its folder) before the inputs are known to be good.
    if (Status st = CheckPathsExist(f->watch, *f); !st.ok()) return ReportError(st);
    if (Status st = CheckCanListen(listen->first, listen->second); !st.ok()) return ReportError(st);
    if (f->token.empty()) {
      if (const char* env = std::getenv("IMGSEARCH_TOKEN")) f->token = env;
    }
    const sigset_t signals = BlockStopSignals();
    auto guard = std::make_unique<StartupSignalGuard>(signals);

    auto target = OpenIngestTarget(
        *f, {.wait_for_database = true, .index_cache_dir = f->index_cache == "none" ? "" : f->index_cache});
    if (!target.ok()) return ReportError(target.status());
    const ClipModel* model = target->model.get();
    Collection* collection = target->collection.get();
    std::unique_ptr<TextModel> text_model;
    if (!f->text_model.empty()) {
      auto loaded = LoadTextModel(f->text_model, *model, {.pull_if_missing = true, .offline = f->offline});
      if (!loaded.ok()) return ReportError(loaded.status());
      text_model = std::move(loaded).value();
    }

    if (!f->store.empty()) {
      // A search node builds its index from the database before answering (later changes follow).
      if (Status warm = collection->Warm(); !warm.ok()) return ReportError(warm);
      auto stats = collection->Stats();
      if (stats.ok()) std::printf("search index ready: %lld images\n", static_cast<long long>(stats->indexed));
    }

    // Text is read wherever images are embedded: here when this server watches folders.
    // Declared before the stage, which asks it while it runs.
    std::atomic<FolderWatcher*> following{nullptr};  // set once started: until then it is busy
    std::unique_ptr<TextRecognition> text;
    if (!f->watch.empty() && (target->queue == nullptr || f->embed_local)) {
      auto started = StartTextStage(*f, collection, [&following] {
        FolderWatcher* w = following.load();
        return w == nullptr || !w->Idle();
      });
      if (!started.ok()) return ReportError(started.status());
      text = std::move(*started);
    }
    std::unique_ptr<FolderWatcher> watcher;
    if (!f->watch.empty()) {
      auto started = FolderWatcher::Start(f->watch, *model, collection, WatchOptionsOf(*f, *f, &*target));
      if (!started.ok()) return ReportError(started.status());
      watcher = std::move(*started);
      following = watcher.get();
    }

    ServerOptions options;
    options.host = listen->first;
    options.port = listen->second;
    options.token = f->token;
    options.thumbnail_dir = !f->thumbnails.empty() ? f->thumbnails
                            : !f->db.empty()       ? f->db + "/thumbnails"
                                                   : CacheDir("thumbnails");
    options.thumbnail_cache_bytes = static_cast<uint64_t>(f->thumbnail_cache_mb * (1 << 20));
    options.http_threads = f->http_threads;
    options.header_timeout_s = f->header_timeout;
    options.max_connections_per_client = f->max_connections_per_client;
    options.max_text_batch = f->query_batch;
    options.decode = SyncOptionsOf(*f).decode;
    options.queue = target->queue.get();
    options.text_model = text_model.get();
    options.text = text.get();
    auto server = SearchServer::Start(model, collection, watcher.get(), options);
    if (!server.ok()) {
      if (text) text->Stop();
      if (watcher) watcher->Stop();
      return ReportError(server.status());
    }
    const std::string shown_host =
        options.host.find(':') != std::string::npos ? "[" + options.host + "]" : options.host;
    std::printf("serving http://%s:%d/ (API at /api)%s\n", shown_host.c_str(), (*server)->port(),
                f->token.empty() ? "" : "; rescan and metrics need the bearer token");
    if (!IsLoopback(options.host)) {
      std::printf("note: listening beyond this machine: anyone who can reach it can search and view the images%s\n",
                  f->token.empty() ? " (and rescan: set --token)" : "");
    }
    if (watcher) {
      PrintWatching(*watcher);
    } else {
      std::printf("no folders watched (add --watch FOLDER to index and follow one); Ctrl-C to stop\n");
    }
    std::fflush(stdout);
    guard.reset();
    const int exit_code = FollowUntilStopped(watcher.get(), collection, signals);
    (*server)->Stop();
    if (text != nullptr) text->Stop();
    return exit_code;
  };
}

}  // namespace imgsearch::cli
