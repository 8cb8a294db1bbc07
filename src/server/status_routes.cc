// The server's state: one report, gathered once per request and rendered as JSON (/api/status,
// which the page's status panel shows) or in the Prometheus text format (/metrics); /healthz; and
// the rescan a client may ask for.
#include <cmath>
#include <optional>
#include <set>

#include "server/routes.h"

namespace imgsearch::server {

namespace {

constexpr size_t kFailuresShown = 20;

struct Failure {
  std::optional<int64_t> id;  // known once the collection has recorded it
  std::string path;
  std::string reason;
};

struct StatusReport {
  std::optional<CollectionStats> collection;
  Status collection_error;
  std::vector<std::string> roots;
  ModelIdentity identity;
  ModelInfo model;
  std::optional<TextModelInfo> text_model;
  std::optional<WatchStats> ingest;  // when folders are watched
  bool ingest_idle = false;
  Status ingest_error;
  std::vector<Failure> failures;    // this run's newest first, then older ones from the collection
  std::optional<QueueStats> queue;  // scale-out
  Status queue_error;
  bool scaleout = false;
  SearcherStats queries;
  ThumbnailStats thumbnails;
  int64_t requests = 0;
  double uptime_s = 0;
  bool auth = false;
  std::optional<TextStats> text;
};

StatusReport Gather(ServerContext& c, bool with_failures) {
  StatusReport r;
  if (auto stats = c.collection->Stats(); stats.ok()) {
    r.collection = *stats;
  } else {
    r.collection_error = stats.status();
  }
  if (auto roots = c.collection->Roots(); roots.ok()) {
    for (const CollectionRoot& root : *roots) r.roots.push_back(root.path);
  }
  r.identity = c.collection->model();
  r.model = c.model->info();
  if (c.options->text_model != nullptr) r.text_model = c.options->text_model->info();
  std::set<std::string> listed;
  if (c.watcher != nullptr) {
    r.ingest = c.watcher->Stats();
    r.ingest_idle = c.watcher->Idle();
    r.ingest_error = c.watcher->error();
    const auto& recent = r.ingest->totals.failures;
    for (auto it = recent.rbegin(); with_failures && it != recent.rend() && r.failures.size() < kFailuresShown; ++it) {
      if (listed.insert(it->first).second) r.failures.push_back({std::nullopt, it->first, it->second});
    }
  }
  if (with_failures && r.failures.size() < kFailuresShown && r.collection && r.collection->failed > 0) {
    (void)c.collection->ForEach(
        [&](const ImageRecord& rec) {
          if (listed.insert(rec.path).second) r.failures.push_back({rec.id, rec.path, rec.error});
          return r.failures.size() < kFailuresShown;
        },
        ImageStatus::kFailed);
  }
  if (c.options->queue != nullptr) {
    r.scaleout = true;
    if (auto q = c.options->queue->Stats(); q.ok()) {
      r.queue = *q;
    } else {
      r.queue_error = q.status();
    }
  }
  if (c.options->text != nullptr) r.text = c.options->text->Stats();
  r.queries = c.searcher->Stats();
  r.thumbnails = c.thumbnails->Stats();
  r.requests = c.metrics->total();
  r.uptime_s = std::chrono::duration<double>(Clock::now() - c.started).count();
  r.auth = !c.options->token.empty();
  return r;
}

json ToJson(const StatusReport& r) {
  json j;
  if (r.collection) {
    const CollectionStats& s = *r.collection;
    int64_t videos = 0;  // of `indexed`
    for (const auto& [format, n] : s.formats) videos += IsVideoFormat(format) ? n : 0;
    j["collection"] = {{"indexed", s.indexed},
                       {"videos", videos},
                       {"failed", s.failed},
                       {"distinct_vectors", s.distinct_vectors},
                       {"kept_vectors", s.kept_vectors},
                       {"formats", s.formats},
                       {"index_kind", s.index_kind},
                       {"database_bytes", s.database_bytes},
                       {"index_bytes", s.index_bytes},
                       {"schema_version", s.schema_version}};
    // Text in images: what the collection holds, and this process's stage when it runs one.
    json text = {{"read", s.texts_read}, {"pending", s.texts_pending}, {"running", r.text.has_value()}};
    if (r.text) {
      text["languages"] = r.text->languages;
      text["done"] = r.text->done;
      text["failed"] = r.text->failed;
      text["images_per_s"] = r.text->images_per_s;
      if (!r.text->error.empty()) text["error"] = r.text->error;
    }
    j["text"] = text;
  } else {
    j["collection"] = {{"error", r.collection_error.ToString()}};
  }
  j["roots"] = json::array();
  for (const std::string& root : r.roots) {
    json entry;
    AddPath(&entry, root);
    j["roots"].push_back(entry["path"]);
  }
  j["model"] = {{"name", r.identity.name},
                {"id", r.identity.id},
                {"dim", r.model.embedding_dim},
                {"dir", r.model.dir},
                {"isa", r.model.isa},
                {"precision", r.model.precision},
                {"image_size", r.model.image_size},
                {"max_patches", r.model.max_patches},
                {"params", r.model.n_params},
                {"family", r.model.family}};
  if (r.text_model) {
    // Query texts go through this tower instead of the model's own.
    j["text_model"] = {{"name", r.text_model->source},    {"family", r.text_model->family},
                       {"base", r.text_model->base},      {"dim", r.text_model->embedding_dim},
                       {"dir", r.text_model->dir},        {"max_tokens", r.text_model->max_tokens},
                       {"params", r.text_model->n_params}};
  }
  if (r.ingest) {
    const WatchStats& w = *r.ingest;
    const PipelineStats& p = w.pipeline;
    j["ingest"] = {{"mode", w.mode},
                   {"roots", w.roots},
                   {"notes", w.notes},
                   {"unavailable", json::array()},
                   {"idle", r.ingest_idle},
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
    if (!r.ingest_error.ok()) j["ingest"]["error"] = r.ingest_error.ToString();
    if (!p.write_error.empty()) j["ingest"]["write_error"] = p.write_error;
    for (const UnavailableFolder& u : w.unavailable) {
      json entry{{"reason", u.reason}};
      AddPath(&entry, u.path);
      j["ingest"]["unavailable"].push_back(std::move(entry));
    }
  } else {
    j["ingest"] = nullptr;
  }
  j["failures"] = json::array();
  for (const Failure& f : r.failures) {
    json entry{{"reason", f.reason}};
    if (f.id) entry["id"] = *f.id;
    AddPath(&entry, f.path);
    j["failures"].push_back(std::move(entry));
  }
  j["queue"] = nullptr;
  if (r.queue) {
    json workers = json::array();
    for (const QueueStats::Worker& w : r.queue->workers) {
      workers.push_back(
          {{"name", w.name}, {"seen_seconds_ago", std::round(w.seen_seconds_ago)}, {"jobs_done", w.jobs_done}});
    }
    j["queue"] = {{"pending", r.queue->pending},
                  {"leased", r.queue->leased},
                  {"retrying", r.queue->retrying},
                  {"workers", workers}};
  } else if (r.scaleout) {
    j["queue"] = {{"error", r.queue_error.ToString()}};
  }
  j["server"] = {{"version", IMGSEARCH_VERSION},
                 {"uptime_s", std::round(r.uptime_s)},
                 {"requests", r.requests},
                 {"auth", r.auth},
                 {"query_texts", r.queries.texts},
                 {"query_text_cache_hits", r.queries.cache_hits},
                 {"query_text_batches", r.queries.text_batches},
                 {"query_largest_batch", r.queries.largest_batch},
                 {"query_images", r.queries.images},
                 {"thumbnails_made", r.thumbnails.made},
                 {"thumbnails_cached", r.thumbnails.cached},
                 {"thumbnail_cache_bytes", r.thumbnails.bytes},
                 {"thumbnails_evicted", r.thumbnails.evicted}};
  return j;
}

std::string ToPrometheus(const StatusReport& r) {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help,
                    std::initializer_list<std::pair<std::string, double>> samples) {
    out += PromHeader(name, type, help);
    for (const auto& [labels, value] : samples) out += PromLine(name, labels, value);
  };
  auto d = [](auto v) { return static_cast<double>(v); };
  if (r.collection) {
    const CollectionStats& s = *r.collection;
    metric("imgsearch_images", "gauge", "Images in the collection by state.",
           {{"state=\"indexed\"", d(s.indexed)}, {"state=\"failed\"", d(s.failed)}});
    metric("imgsearch_distinct_vectors", "gauge", "Stored embeddings (one per distinct content).",
           {{"", d(s.distinct_vectors)}});
    metric("imgsearch_kept_vectors", "gauge", "Embeddings of removed images, kept for the grace period.",
           {{"", d(s.kept_vectors)}});
    out += PromHeader("imgsearch_images_by_format", "gauge", "Indexed images by format.");
    for (const auto& [format, n] : s.formats) {
      out += PromLine("imgsearch_images_by_format", "format=\"" + format + "\"", d(n));
    }
    metric("imgsearch_database_bytes", "gauge", "Size of the catalog files.", {{"", d(s.database_bytes)}});
  }
  if (r.ingest) {
    const WatchStats& w = *r.ingest;
    const PipelineStats& p = w.pipeline;
    metric("imgsearch_ingest_queue", "gauge", "Files waiting in each ingestion stage.",
           {{"stage=\"pending\"", d(w.pending_paths)},
            {"stage=\"decode\"", d(p.queued)},
            {"stage=\"encode\"", d(p.decoded)},
            {"stage=\"write\"", d(p.encoded)}});
    metric("imgsearch_ingest_images_per_second", "gauge", "Images embedded per second (last 10 s).",
           {{"", p.images_per_s}});
    metric("imgsearch_ingest_total", "counter", "Files handled since start, by outcome.",
           {{"outcome=\"added\"", d(w.totals.added)},
            {"outcome=\"updated\"", d(w.totals.updated)},
            {"outcome=\"moved\"", d(w.totals.moved)},
            {"outcome=\"removed\"", d(w.totals.removed)},
            {"outcome=\"failed\"", d(w.totals.failed)},
            {"outcome=\"embedded\"", d(w.totals.embedded)}});
    metric("imgsearch_ingest_stage_busy_seconds_total", "counter", "Busy time per pipeline stage.",
           {{"stage=\"decode\"", p.decode_seconds},
            {"stage=\"encode\"", p.encode_seconds},
            {"stage=\"write\"", p.write_seconds}});
  }
  if (r.queue) {
    metric("imgsearch_queue_jobs", "gauge", "Scale-out jobs by state.",
           {{"state=\"pending\"", d(r.queue->pending)},
            {"state=\"leased\"", d(r.queue->leased)},
            {"state=\"retrying\"", d(r.queue->retrying)}});
    metric("imgsearch_workers", "gauge", "Workers seen in the last minute.", {{"", d(r.queue->workers.size())}});
  }
  metric(
      "imgsearch_query_texts_total", "counter", "Query texts embedded or served from the cache.",
      {{"source=\"model\"", d(r.queries.texts - r.queries.cache_hits)}, {"source=\"cache\"", d(r.queries.cache_hits)}});
  metric("imgsearch_query_batches_total", "counter", "Model calls made for queries.",
         {{"kind=\"text\"", d(r.queries.text_batches)}, {"kind=\"image\"", d(r.queries.image_batches)}});
  metric("imgsearch_thumbnails_total", "counter", "Thumbnails made or served from the cache.",
         {{"source=\"made\"", d(r.thumbnails.made)}, {"source=\"cache\"", d(r.thumbnails.cached)}});
  metric("imgsearch_thumbnail_cache_bytes", "gauge", "Size of the thumbnail cache.", {{"", d(r.thumbnails.bytes)}});
  metric("imgsearch_uptime_seconds", "gauge", "Seconds since the server started.", {{"", r.uptime_s}});
  return out;
}

}  // namespace

std::vector<Route> StatusRoutes(ServerContext& c) {
  return {
      {.method = "GET",
       .pattern = "/api/status",
       .name = "status",
       .about = "Counts by state, ingestion queues and throughput, recent failures, model, index.",
       .handle = [&c](const Req&, Res& res) { SendJson(res, ToJson(Gather(c, /*with_failures=*/true))); }},
      {.method = "GET",
       .pattern = "/healthz",
       .name = "healthz",
       .about = "200 when serving; 503 when ingestion has stopped on an error, or its writes are failing and "
                "being retried (searches are still answered).",
       .handle =
           [&c](const Req&, Res& res) {
             const Status err = c.watcher != nullptr ? c.watcher->error() : Status::Ok();
             if (!err.ok()) {
               return SendJson(res, json{{"status", "ingestion stopped"}, {"error", err.ToString()}}, 503);
             }
             const std::string failing = c.watcher != nullptr ? c.watcher->Stats().pipeline.write_error : "";
             if (!failing.empty()) {
               return SendJson(res, json{{"status", "writes failing, retrying"}, {"error", failing}}, 503);
             }
             SendJson(res, json{{"status", "ok"}});
           }},
      {.method = "GET",
       .pattern = "/metrics",
       .name = "metrics",
       .about = "Prometheus text format.",
       .auth = true,
       .handle =
           [&c](const Req&, Res& res) {
             res.set_content(c.metrics->Render() + ToPrometheus(Gather(c, /*with_failures=*/false)),
                             "text/plain; version=0.0.4");
           }},
      {.method = "POST",
       .pattern = "/api/rescan",
       .name = "rescan",
       .body = "optional JSON {path}",
       .about = "Reconcile a watched folder (or all) with the disk now.",
       .auth = true,
       .handle =
           [&c](const Req& req, Res& res) {
             if (c.watcher == nullptr) {
               return SendJson(res, json{{"error", "no folders are watched (start serve with --watch FOLDER)"}}, 409);
             }
             std::string path;
             if (!req.body.empty()) {
               const json j = json::parse(req.body, nullptr, false);
               if (j.is_discarded() || !j.is_object()) {
                 return SendError(
                     res, Status::InvalidArgument("the body must be a JSON object like {\"path\": \"/photos\"}"));
               }
               for (const auto& [key, value] : j.items()) {
                 if (key != "path") {
                   return SendError(res, Status::InvalidArgument("unknown field \"" + key + "\" (path)"));
                 }
                 if (!value.is_string() || value.get<std::string>().empty() || value.get<std::string>()[0] != '/') {
                   return SendError(res, Status::InvalidArgument("path must be an absolute folder path"));
                 }
                 path = value.get<std::string>();
               }
             }
             const Status s = c.watcher->Rescan(path);
             if (!s.ok()) return SendError(res, s);
             SendJson(res, json{{"rescanning", path.empty() ? json(c.watcher->Stats().roots) : json::array({path})}},
                      202);
           }},
  };
}

}  // namespace imgsearch::server
