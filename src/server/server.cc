// The HTTP server: routes, authentication, JSON responses, the web page.
#include "imgsearch/server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/text.h"
#include "imgsearch/search.h"
#include "ingest/scanner.h"
#include "server/files.h"
#include "server/http_status.h"
#include "server/metrics.h"

namespace imgsearch {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

#include "web_assets.inc"  // kWebAssets: the page's files, embedded at build time

// The API's self-description, served at /api (the README has the same, with examples).
const char* const kApiDoc = R"json({
  "endpoints": [
    {"method": "GET", "path": "/api/search", "params": ["q", "similar", "k", "offset", "min_score", "under", "after", "before", "format", "exact"],
     "about": "Search by text (q) or by an indexed image (similar=ID). Results: id, path, score, width, height, url, thumbnail."},
    {"method": "POST", "path": "/api/search",
     "body": "JSON {q, terms: [{text|image (base64)|id, weight}], image, similar, k, offset, min_score, under, after, before, formats, exact} or multipart/form-data with image file parts and the same fields",
     "about": "Weighted positive and negative terms: texts, uploaded images and indexed images."},
    {"method": "GET", "path": "/api/images/{id}", "about": "The image file itself."},
    {"method": "GET", "path": "/api/images/{id}/info", "about": "What the collection knows about the image."},
    {"method": "GET", "path": "/api/images/{id}/thumbnail", "params": ["size"], "about": "A JPEG thumbnail; size (longest side) is rounded up to 64, 128, 256, 512 or 1024; cached."},
    {"method": "GET", "path": "/api/images/{id}/similar", "params": ["k", "offset", "min_score", "under", "after", "before", "format", "exact"], "about": "More like this (the image itself left out)."},
    {"method": "GET", "path": "/api/status", "about": "Counts by state, ingestion queues and throughput, recent failures, model, index."},
    {"method": "POST", "path": "/api/rescan", "body": "optional JSON {path}", "auth": true, "about": "Reconcile a watched folder (or all) with the disk now."},
    {"method": "GET", "path": "/healthz", "about": "200 when serving; 503 when ingestion has stopped on an error."},
    {"method": "GET", "path": "/metrics", "auth": true, "about": "Prometheus text format."}
  ],
  "errors": "4xx/5xx with JSON {\"error\": \"what is wrong\"}",
  "auth": "endpoints marked auth need 'Authorization: Bearer TOKEN' when the server was started with a token"
})json";

thread_local Clock::time_point t_request_start{};

std::string RouteOf(const std::string& path) {
  if (path == "/api/search") return "search";
  if (path == "/api/status") return "status";
  if (path == "/api/rescan") return "rescan";
  if (path == "/healthz") return "healthz";
  if (path == "/metrics") return "metrics";
  if (path == "/api") return "api";
  if (path.rfind("/api/images/", 0) == 0) {
    if (path.ends_with("/thumbnail")) return "thumbnail";
    if (path.ends_with("/similar")) return "similar";
    if (path.ends_with("/info")) return "info";
    return "image";
  }
  if (path.rfind("/api/", 0) == 0) return "unknown";
  return "page";
}

const char* ReasonOf(int status) {
  switch (status) {
    case 400: return "bad request";
    case 401: return "a bearer token is required (Authorization: Bearer TOKEN)";
    case 403: return "forbidden";
    case 404: return "no such endpoint or resource (see /api)";
    case 405: return "method not allowed";
    case 413: return "the request body is too large";
    case 415: return "unsupported content type";
    default: return status >= 500 ? "internal error" : "request failed";
  }
}

SearchFields FieldsOf(const httplib::Params& params) { return {params.begin(), params.end()}; }

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

class Server final : public SearchServer {
 public:
  Server(const ClipModel* model, Collection* collection, FolderWatcher* watcher, const ServerOptions& options)
      : model_(model),
        collection_(collection),
        watcher_(watcher),
        options_(options),
        searcher_(model, collection,
                  SearcherOptions{.max_text_batch = options.max_text_batch,
                                  .text_cache_entries = options.text_cache_entries,
                                  .decode = options.decode}),
        gate_(collection),
        thumbnails_(options.thumbnail_dir, &gate_, options.decode, options.thumbnail_cache_bytes),
        started_(Clock::now()) {
    limits_.max_k = options.max_k;
  }

  ~Server() override { Stop(); }

  Status Init() {
    const int threads = std::max(4, options_.http_threads);
    http_.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
    http_.set_payload_max_length(options_.max_body_bytes);
    // SO_REUSEADDR (a restart may bind while old connections linger) but not the library's default
    // SO_REUSEPORT, which would let a second server take the same port silently. The socket is
    // remembered to raise its backlog below.
    http_.set_socket_options([this](int sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
      listen_socket_ = sock;
    });
    http_.set_keep_alive_max_count(1000);
    http_.set_read_timeout(std::chrono::seconds(30));
    http_.set_write_timeout(std::chrono::seconds(30));
    Routes();
    if (options_.port == 0) {
      port_ = http_.bind_to_any_port(options_.host);
      if (port_ <= 0) return Status::Unavailable("cannot listen on " + options_.host + " (any port)");
    } else {
      if (!http_.bind_to_port(options_.host, options_.port)) {
        return Status::Unavailable("cannot listen on " + options_.host + ":" + std::to_string(options_.port) +
                                   " (in use, or not an address of this machine)");
      }
      port_ = options_.port;
    }
    // Debian's compiled cpp-httplib listens with a backlog of 5: a burst of new connections (a page
    // loading its thumbnails, 50 clients starting at once) overflows it and the connections that do
    // not fit fail after a second. Listening again on a listening socket only changes the backlog.
    if (listen_socket_ >= 0) ::listen(listen_socket_, SOMAXCONN);
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    return Status::Ok();
  }

  int port() const override { return port_; }

  void Stop() override {
    if (stopped_.exchange(true)) return;
    http_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  using Req = httplib::Request;
  using Res = httplib::Response;

  static void SendJson(Res& res, const json& j, int status = 200) {
    res.status = status;
    res.set_content(j.dump(), "application/json");
  }

  static void SendError(Res& res, const Status& s) {
    SendJson(res, json{{"error", s.message()}}, server::HttpStatusOf(s));
  }

  bool Authorized(const Req& req, Res& res) const {
    if (options_.token.empty()) return true;
    const std::string header = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (header.rfind(prefix, 0) == 0 && ConstantTimeEquals(header.substr(prefix.size()), options_.token)) return true;
    res.set_header("WWW-Authenticate", "Bearer");
    SendJson(res,
             json{{"error",
                   header.empty() ? "this endpoint needs 'Authorization: Bearer TOKEN'" : "the bearer token is wrong"}},
             401);
    return false;
  }

  static Result<int64_t> IdOf(const Req& req) {
    const std::string text = req.matches[1];
    if (text.size() > 18) return Status::NotFound("no image " + text);
    return std::stoll(text);
  }

  // The record of the image the path's {id} names.
  Result<ImageRecord> RecordOf(const Req& req) {
    ASSIGN_OR_RETURN(const int64_t id, IdOf(req));
    return Record(id);
  }

  Result<ImageRecord> Record(int64_t id) {
    ASSIGN_OR_RETURN(std::optional<ImageRecord> r, collection_->GetById(id));
    if (!r) return Status::NotFound("no image with id " + std::to_string(id));
    return std::move(*r);
  }

  static json HitJson(const SearchHit& h) {
    const std::string id = std::to_string(h.id);
    return json{{"id", h.id},
                {"path", h.path},
                {"score", h.score},
                {"width", h.width},
                {"height", h.height},
                {"url", "/api/images/" + id},
                {"thumbnail", "/api/images/" + id + "/thumbnail"}};
  }

  static json RecordJson(const ImageRecord& r) {
    const std::string id = std::to_string(r.id);
    json j{{"id", r.id},
           {"path", r.path},
           {"size_bytes", r.size_bytes},
           {"mtime_s", r.mtime_ns / 1'000'000'000},
           {"width", r.width},
           {"height", r.height},
           {"format", r.format},
           {"capture_time", r.capture_time ? json(*r.capture_time) : json(nullptr)},
           {"status", ImageStatusName(r.status)},
           {"indexed_at_ms", r.indexed_at_ms},
           {"url", "/api/images/" + id},
           {"thumbnail", "/api/images/" + id + "/thumbnail"}};
    if (r.status == ImageStatus::kFailed) j["error"] = r.error;
    return j;
  }

  Result<json> RunSearch(const SearchRequest& request) {
    ASSIGN_OR_RETURN(const SearchResponse response, searcher_.Search(request));
    json results = json::array();
    for (const SearchHit& h : response.hits) results.push_back(HitJson(h));
    return json{{"results", std::move(results)},
                {"k", request.options.k},
                {"offset", request.options.offset},
                {"took_ms", std::round(response.took_ms * 100) / 100}};
  }

  void HandleSearch(Result<SearchRequest> request, Res& res) {
    if (!request.ok()) return SendError(res, request.status());
    Result<json> out = RunSearch(*request);
    if (!out.ok()) return SendError(res, out.status());
    SendJson(res, *out);
  }

  json StatusJson() {
    json j;
    auto stats = collection_->Stats();
    if (stats.ok()) {
      j["collection"] = {{"indexed", stats->indexed},
                         {"failed", stats->failed},
                         {"distinct_vectors", stats->distinct_vectors},
                         {"index_kind", stats->index_kind},
                         {"database_bytes", stats->database_bytes},
                         {"index_bytes", stats->index_bytes},
                         {"schema_version", stats->schema_version}};
    } else {
      j["collection"] = {{"error", stats.status().ToString()}};
    }
    auto roots = collection_->Roots();
    j["roots"] = roots.ok() ? json(*roots) : json::array();
    const ModelInfo& info = model_->info();
    j["model"] = {{"name", collection_->model().name},
                  {"id", collection_->model().id},
                  {"dim", info.embedding_dim},
                  {"dir", info.dir},
                  {"isa", info.isa},
                  {"precision", info.precision},
                  {"image_size", info.image_size},
                  {"params", info.n_params}};

    // Recent failures: this run's first (with reasons), then older ones from the collection.
    json failures = json::array();
    std::set<std::string> listed;
    if (watcher_ != nullptr) {
      const WatchStatus w = watcher_->Describe();
      const PipelineStatus& p = w.pipeline;
      j["ingest"] = {{"mode", w.mode},
                     {"roots", w.roots},
                     {"notes", w.notes},
                     {"idle", watcher_->Idle()},
                     {"watched_folders", w.watched_folders},
                     {"pending", w.pending_paths},
                     {"queued", p.queued},
                     {"decoded", p.decoded},
                     {"encoded", p.encoded},
                     {"in_flight", p.in_flight},
                     {"images_per_s", std::round(p.images_per_s * 10) / 10},
                     {"rescans", w.rescans},
                     {"since_start",
                      {{"added", w.totals.added},
                       {"updated", w.totals.updated},
                       {"moved", w.totals.moved},
                       {"removed", w.totals.removed},
                       {"failed", w.totals.failed},
                       {"embedded", w.totals.embedded}}}};
      const Status err = watcher_->error();
      if (!err.ok()) j["ingest"]["error"] = err.ToString();
      for (auto it = w.totals.failures.rbegin(); it != w.totals.failures.rend() && failures.size() < 20; ++it) {
        if (listed.insert(it->first).second) failures.push_back({{"path", it->first}, {"reason", it->second}});
      }
    } else {
      j["ingest"] = nullptr;
    }
    if (failures.size() < 20 && stats.ok() && stats->failed > 0) {
      (void)collection_->ForEach(
          [&](const ImageRecord& r) {
            if (listed.insert(r.path).second) {
              failures.push_back({{"id", r.id}, {"path", r.path}, {"reason", r.error}});
            }
            return failures.size() < 20;
          },
          ImageStatus::kFailed);
    }
    j["failures"] = std::move(failures);
    j["queue"] = nullptr;
    if (options_.queue != nullptr) {
      auto q = options_.queue->Describe();
      if (q.ok()) {
        json workers = json::array();
        for (const QueueStatus::Worker& w : q->workers) {
          workers.push_back(
              {{"name", w.name}, {"seen_seconds_ago", std::round(w.seen_seconds_ago)}, {"jobs_done", w.jobs_done}});
        }
        j["queue"] = {{"pending", q->pending}, {"leased", q->leased}, {"retrying", q->retrying}, {"workers", workers}};
      } else {
        j["queue"] = {{"error", q.status().ToString()}};
      }
    }
    const SearcherStats q = searcher_.stats();
    j["server"] = {{"version", IMGSEARCH_VERSION},
                   {"uptime_s", std::round(std::chrono::duration<double>(Clock::now() - started_).count())},
                   {"requests", metrics_.total()},
                   {"auth", !options_.token.empty()},
                   {"query_texts", q.texts},
                   {"query_text_cache_hits", q.cache_hits},
                   {"query_text_batches", q.text_batches},
                   {"query_largest_batch", q.largest_batch},
                   {"query_images", q.images},
                   {"thumbnails_made", thumbnails_.made()},
                   {"thumbnails_cached", thumbnails_.hits()},
                   {"thumbnail_cache_bytes", thumbnails_.bytes()},
                   {"thumbnails_evicted", thumbnails_.evicted()}};
    return j;
  }

  std::string MetricsText() {
    using server::PromHeader;
    using server::PromLine;
    std::string out = metrics_.Render();
    auto stats = collection_->Stats();
    if (stats.ok()) {
      out += PromHeader("imgsearch_images", "gauge", "Images in the collection by state.");
      out += PromLine("imgsearch_images", "state=\"indexed\"", static_cast<double>(stats->indexed));
      out += PromLine("imgsearch_images", "state=\"failed\"", static_cast<double>(stats->failed));
      out += PromHeader("imgsearch_distinct_vectors", "gauge", "Stored embeddings (one per distinct content).");
      out += PromLine("imgsearch_distinct_vectors", "", static_cast<double>(stats->distinct_vectors));
      out += PromHeader("imgsearch_database_bytes", "gauge", "Size of the catalog files.");
      out += PromLine("imgsearch_database_bytes", "", static_cast<double>(stats->database_bytes));
    }
    if (watcher_ != nullptr) {
      const WatchStatus w = watcher_->Describe();
      const PipelineStatus& p = w.pipeline;
      out += PromHeader("imgsearch_ingest_queue", "gauge", "Files waiting in each ingestion stage.");
      out += PromLine("imgsearch_ingest_queue", "stage=\"pending\"", static_cast<double>(w.pending_paths));
      out += PromLine("imgsearch_ingest_queue", "stage=\"decode\"", static_cast<double>(p.queued));
      out += PromLine("imgsearch_ingest_queue", "stage=\"encode\"", static_cast<double>(p.decoded));
      out += PromLine("imgsearch_ingest_queue", "stage=\"write\"", static_cast<double>(p.encoded));
      out += PromHeader("imgsearch_ingest_images_per_second", "gauge", "Images embedded per second (last 10 s).");
      out += PromLine("imgsearch_ingest_images_per_second", "", p.images_per_s);
      out += PromHeader("imgsearch_ingest_total", "counter", "Files handled since start, by outcome.");
      for (const auto& [name, v] : {std::pair<const char*, int64_t>{"added", w.totals.added},
                                    {"updated", w.totals.updated},
                                    {"moved", w.totals.moved},
                                    {"removed", w.totals.removed},
                                    {"failed", w.totals.failed},
                                    {"embedded", w.totals.embedded}}) {
        out += PromLine("imgsearch_ingest_total", std::string("outcome=\"") + name + "\"", static_cast<double>(v));
      }
      out += PromHeader("imgsearch_ingest_stage_busy_seconds_total", "counter", "Busy time per pipeline stage.");
      out += PromLine("imgsearch_ingest_stage_busy_seconds_total", "stage=\"decode\"", p.decode_seconds);
      out += PromLine("imgsearch_ingest_stage_busy_seconds_total", "stage=\"encode\"", p.encode_seconds);
      out += PromLine("imgsearch_ingest_stage_busy_seconds_total", "stage=\"write\"", p.write_seconds);
    }
    if (options_.queue != nullptr) {
      if (auto jobs = options_.queue->Describe(); jobs.ok()) {
        out += PromHeader("imgsearch_queue_jobs", "gauge", "Scale-out jobs by state.");
        out += PromLine("imgsearch_queue_jobs", "state=\"pending\"", static_cast<double>(jobs->pending));
        out += PromLine("imgsearch_queue_jobs", "state=\"leased\"", static_cast<double>(jobs->leased));
        out += PromLine("imgsearch_queue_jobs", "state=\"retrying\"", static_cast<double>(jobs->retrying));
        out += PromHeader("imgsearch_workers", "gauge", "Workers seen in the last minute.");
        out += PromLine("imgsearch_workers", "", static_cast<double>(jobs->workers.size()));
      }
    }
    const SearcherStats q = searcher_.stats();
    out += PromHeader("imgsearch_query_texts_total", "counter", "Query texts embedded or served from the cache.");
    out += PromLine("imgsearch_query_texts_total", "source=\"model\"", static_cast<double>(q.texts - q.cache_hits));
    out += PromLine("imgsearch_query_texts_total", "source=\"cache\"", static_cast<double>(q.cache_hits));
    out += PromHeader("imgsearch_query_batches_total", "counter", "Model calls made for queries.");
    out += PromLine("imgsearch_query_batches_total", "kind=\"text\"", static_cast<double>(q.text_batches));
    out += PromLine("imgsearch_query_batches_total", "kind=\"image\"", static_cast<double>(q.image_batches));
    out += PromHeader("imgsearch_thumbnails_total", "counter", "Thumbnails made or served from the cache.");
    out += PromLine("imgsearch_thumbnails_total", "source=\"made\"", static_cast<double>(thumbnails_.made()));
    out += PromLine("imgsearch_thumbnails_total", "source=\"cache\"", static_cast<double>(thumbnails_.hits()));
    out += PromHeader("imgsearch_thumbnail_cache_bytes", "gauge", "Size of the thumbnail cache.");
    out += PromLine("imgsearch_thumbnail_cache_bytes", "", static_cast<double>(thumbnails_.bytes()));
    out += PromHeader("imgsearch_uptime_seconds", "gauge", "Seconds since the server started.");
    out += PromLine("imgsearch_uptime_seconds", "", std::chrono::duration<double>(Clock::now() - started_).count());
    return out;
  }

  // Sets the validators; true (and 304) when the client's copy (If-None-Match) is current.
  static bool NotModified(const Req& req, Res& res, const std::string& etag) {
    const std::string quoted = "\"" + etag + "\"";
    res.set_header("ETag", quoted);
    res.set_header("Cache-Control", "private, max-age=3600");
    if (req.get_header_value("If-None-Match") != quoted) return false;
    res.status = 304;
    return true;
  }

  void Routes() {
    http_.set_pre_routing_handler([](const Req&, Res&) {
      t_request_start = Clock::now();
      return httplib::Server::HandlerResponse::Unhandled;
    });
    http_.set_logger([this](const Req& req, const Res& res) {
      const double seconds = t_request_start == Clock::time_point{}
                                 ? -1
                                 : std::chrono::duration<double>(Clock::now() - t_request_start).count();
      t_request_start = {};
      metrics_.Observe(RouteOf(req.path), res.status, seconds);
      spdlog::info("{} {} {} {:.1f} ms", req.method, req.path, res.status, seconds * 1000);
    });
    http_.set_error_handler([](const Req&, Res& res) {
      if (res.body.empty()) SendJson(res, json{{"error", ReasonOf(res.status)}}, res.status);
    });
    http_.set_exception_handler([](const Req&, Res& res, std::exception_ptr ep) {
      std::string what = "unknown";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      spdlog::error("request failed with an exception: {}", what);
      SendJson(res, json{{"error", "internal error: " + what}}, 500);
    });

    // The page.
    for (const WebAsset& asset : kWebAssets) {
      const std::string path = std::string(asset.path) == "/index.html" ? "/" : asset.path;
      http_.Get(path, [&asset](const Req&, Res& res) {
        res.set_header("Cache-Control", "no-cache");
        res.set_content(asset.data, asset.size, asset.mime);
      });
    }

    http_.Get("/api", [](const Req&, Res& res) { res.set_content(kApiDoc, "application/json"); });
    http_.Get("/healthz", [this](const Req&, Res& res) {
      const Status err = watcher_ != nullptr ? watcher_->error() : Status::Ok();
      if (err.ok()) return SendJson(res, json{{"status", "ok"}});
      SendJson(res, json{{"status", "ingestion stopped"}, {"error", err.ToString()}}, 503);
    });
    http_.Get("/metrics", [this](const Req& req, Res& res) {
      if (!Authorized(req, res)) return;
      res.set_content(MetricsText(), "text/plain; version=0.0.4");
    });
    http_.Get("/api/status", [this](const Req&, Res& res) { SendJson(res, StatusJson()); });

    http_.Get("/api/search",
              [this](const Req& req, Res& res) { HandleSearch(ParseSearchQuery(FieldsOf(req.params), limits_), res); });
    http_.Post("/api/search", [this](const Req& req, Res& res) {
      const std::string type = req.get_header_value("Content-Type");
      if (req.is_multipart_form_data()) {
        std::vector<FormPart> parts;
        for (const auto& [name, part] : req.files) parts.push_back({part.name, part.content, part.filename});
        return HandleSearch(ParseSearchForm(parts, limits_), res);
      }
      if (type.rfind("application/json", 0) != 0 && !type.empty()) {
        return SendError(res, Status::Unsupported("send application/json or multipart/form-data, not " + type));
      }
      HandleSearch(ParseSearchJson(req.body, limits_), res);
    });

    http_.Get(R"(/api/images/(\d+))", [this](const Req& req, Res& res) {
      Result<ImageRecord> r = RecordOf(req);
      if (!r.ok()) return SendError(res, r.status());
      if (NotModified(req, res, r->content_hash)) return;
      auto file = gate_.Open(r->path);
      if (!file.ok()) return SendError(res, file.status());
      const std::string name = r->path.substr(r->path.find_last_of('/') + 1);
      res.set_header("Content-Disposition", "inline; filename=\"" + name + "\"");
      // Streamed from the descriptor the gate checked, in pieces: large files cost no memory.
      const uint64_t size = (*file)->size();
      res.set_content_provider(size, server::MimeTypeOf(r->format),
                               [opened = std::move(*file)](size_t offset, size_t length, httplib::DataSink& sink) {
                                 uint8_t buffer[64 << 10];
                                 auto n = opened->ReadAt(offset, buffer, std::min(length, sizeof(buffer)));
                                 if (!n.ok() || *n == 0) return false;  // failed or shrank: the connection is closed
                                 return sink.write(reinterpret_cast<const char*>(buffer), *n);
                               });
    });
    http_.Get(R"(/api/images/(\d+)/info)", [this](const Req& req, Res& res) {
      Result<ImageRecord> r = RecordOf(req);
      if (!r.ok()) return SendError(res, r.status());
      SendJson(res, RecordJson(*r));
    });
    http_.Get(R"(/api/images/(\d+)/thumbnail)", [this](const Req& req, Res& res) {
      int size = 256;
      for (const auto& [key, value] : req.params) {
        if (key != "size") return SendError(res, Status::InvalidArgument("unknown parameter \"" + key + "\" (size)"));
        char* end = nullptr;
        const long v = std::strtol(value.c_str(), &end, 10);
        if (value.empty() || *end != '\0' || v < 16 || v > 1024) {
          return SendError(res, Status::InvalidArgument("size must be a number of pixels from 16 to 1024"));
        }
        size = static_cast<int>(v);
      }
      Result<ImageRecord> r = RecordOf(req);
      if (!r.ok()) return SendError(res, r.status());
      if (r->status != ImageStatus::kIndexed) {
        return SendError(res, Status::NotFound("image " + std::to_string(r->id) + " could not be read: " + r->error));
      }
      if (NotModified(req, res, r->content_hash + "-" + std::to_string(server::ThumbnailCache::RoundSize(size)))) {
        return;
      }
      auto thumb = thumbnails_.Get(*r, size);
      if (!thumb.ok()) return SendError(res, thumb.status());
      res.set_content(std::move(*thumb), "image/jpeg");
    });
    http_.Get(R"(/api/images/(\d+)/similar)", [this](const Req& req, Res& res) {
      auto id = IdOf(req);
      if (!id.ok()) return SendError(res, id.status());
      auto request = ParseSearchQuery(FieldsOf(req.params), limits_, /*allow_terms=*/false);
      if (request.ok()) request->terms.push_back(SearchTerm{.kind = SearchTerm::Kind::kItem, .id = *id});
      HandleSearch(std::move(request), res);
    });

    http_.Post("/api/rescan", [this](const Req& req, Res& res) {
      if (!Authorized(req, res)) return;
      if (watcher_ == nullptr) {
        return SendJson(res, json{{"error", "no folders are watched (start serve with --watch FOLDER)"}}, 409);
      }
      std::string path;
      if (!req.body.empty()) {
        const json j = json::parse(req.body, nullptr, false);
        if (j.is_discarded() || !j.is_object())
          return SendError(res, Status::InvalidArgument("the body must be a JSON object like {\"path\": \"/photos\"}"));
        for (const auto& [key, value] : j.items()) {
          if (key != "path") return SendError(res, Status::InvalidArgument("unknown field \"" + key + "\" (path)"));
          if (!value.is_string() || value.get<std::string>().empty() || value.get<std::string>()[0] != '/') {
            return SendError(res, Status::InvalidArgument("path must be an absolute folder path"));
          }
          path = value.get<std::string>();
        }
      }
      const Status s = watcher_->Rescan(path);
      if (!s.ok()) return SendError(res, s);
      SendJson(res, json{{"rescanning", path.empty() ? json(watcher_->Describe().roots) : json::array({path})}}, 202);
    });
  }

  const ClipModel* model_;
  Collection* collection_;
  FolderWatcher* watcher_;
  const ServerOptions options_;
  RequestLimits limits_;
  Searcher searcher_;
  server::FileGate gate_;
  server::ThumbnailCache thumbnails_;
  server::RequestMetrics metrics_;
  const Clock::time_point started_;

  httplib::Server http_;
  int port_ = 0;
  int listen_socket_ = -1;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
};

}  // namespace

Result<std::unique_ptr<SearchServer>> SearchServer::Start(const ClipModel* model, Collection* collection,
                                                          FolderWatcher* watcher, const ServerOptions& options) {
  if (model == nullptr || collection == nullptr)
    return Status::InvalidArgument("the server needs a model and a collection");
  if (options.thumbnail_dir.empty()) return Status::InvalidArgument("no thumbnail folder given");
  auto server = std::make_unique<Server>(model, collection, watcher, options);
  RETURN_IF_ERROR(server->Init());
  return std::unique_ptr<SearchServer>(std::move(server));
}

}  // namespace imgsearch
