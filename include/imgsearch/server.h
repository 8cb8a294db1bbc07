// The search server: a JSON API over HTTP and the web page, on top of a model, a collection and
// (optionally) a folder watcher that keeps the collection up to date.
//
//   ServerOptions options;
//   options.port = 8080;
//   ASSIGN_OR_RETURN(auto server, SearchServer::Start(model.get(), collection.get(), watcher.get(), options));
//   ...
//   server->Stop();
//
// The API is described in the README and served at /api.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/image.h"
#include "imgsearch/ingest.h"
#include "imgsearch/text_model.h"

namespace imgsearch {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see SearchServer::port)
  // Bearer token required by the endpoints that change something or reveal more than search does
  // (POST /api/rescan, GET /metrics). Empty: no token.
  std::string token;
  // Where thumbnails are cached (made on first request, kept by content hash), and how large the
  // cache may grow before the least recently used are deleted (0: no limit).
  std::string thumbnail_dir;
  uint64_t thumbnail_cache_bytes = uint64_t{1} << 30;
  int http_threads = 64;  // connections served at once (each keep-alive connection holds one)
  // A connection must send each request's line and headers within header_timeout_s (of opening, or
  // of its previous answer), and its body within body_timeout_s; one client (IP address) may keep at
  // most max_connections_per_client open that sent nothing for a second. Slow or greedy clients
  // cannot take every thread.
  double header_timeout_s = 10;
  double body_timeout_s = 60;
  int max_connections_per_client = 16;
  size_t max_body_bytes = size_t{32} << 20;
  int max_k = 1000;                       // largest k + offset a search may ask for
  DecodeOptions decode;                   // for uploaded query images
  int max_text_batch = 64;                // concurrent text queries encoded in one model call
  size_t text_cache_entries = 4096;       // recently encoded query texts kept
  JobQueue* queue = nullptr;              // scale-out: its depth and workers go into status and metrics
  const TextModel* text_model = nullptr;  // query texts through this tower (see SearcherOptions)
  TextRecognition* text = nullptr;        // the text stage, when this process runs one: its progress in status
};

// Ok when a server could listen on host:port now (port 0: any), else kUnavailable saying so: what
// serve checks before it creates or opens anything.
Status CheckCanListen(const std::string& host, int port);

class SearchServer {
 public:
  // Binds the port and starts serving in the background. `watcher` may be null (no live folders;
  // /api/rescan then answers 409). The model, collection and watcher must outlive the server.
  static Result<std::unique_ptr<SearchServer>> Start(const ClipModel* model, Collection* collection,
                                                     FolderWatcher* watcher, const ServerOptions& options);
  virtual ~SearchServer() = default;

  virtual int port() const = 0;
  // Stops accepting, lets requests in progress finish. Idempotent.
  virtual void Stop() = 0;
};

}  // namespace imgsearch
