// imgsearch search, stats, list and duplicates: reading a collection.
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>
#include <optional>

#include "commands.h"
#include "imgsearch/collection.h"
#include "imgsearch/duration.h"
#include "imgsearch/ingest.h"
#include "imgsearch/path_display.h"
#include "imgsearch/paths.h"
#include "imgsearch/scaleout.h"
#include "imgsearch/search.h"
#include "ingest_common.h"
#include "json_out.h"

namespace imgsearch::cli {

namespace {

Result<std::unique_ptr<Collection>> OpenForReading(const StoreFlags& where, const ClipModel* model) {
  ASSIGN_OR_RETURN(const std::string location, LocationOf(where));
  CollectionOptions options;
  options.read_only = true;  // searching never waits for, nor blocks, a running index or serve
  options.create_if_missing = false;
  std::optional<ModelIdentity> identity;
  if (model != nullptr) identity = IdentityOf(*model);
  ASSIGN_OR_RETURN(Store store, OpenStore(location, identity ? &*identity : nullptr, options));
  return std::move(store.collection);
}

// "1:02.5": a time in a video as people read it (h:mm:ss.s past an hour).
std::string ClockTime(double seconds) {
  const auto tenths = static_cast<int64_t>(std::llround(seconds * 10));
  const int64_t s = tenths / 10, h = s / 3600, m = (s / 60) % 60;
  char out[48];
  if (h > 0) {
    std::snprintf(out, sizeof(out), "%lld:%02lld:%02lld.%lld", static_cast<long long>(h), static_cast<long long>(m),
                  static_cast<long long>(s % 60), static_cast<long long>(tenths % 10));
  } else {
    std::snprintf(out, sizeof(out), "%lld:%02lld.%lld", static_cast<long long>(m), static_cast<long long>(s % 60),
                  static_cast<long long>(tenths % 10));
  }
  return out;
}

void PrintHits(const std::vector<SearchHit>& hits, bool json) {
  for (const SearchHit& h : hits) {
    if (json) {
      nlohmann::json j = {{"id", h.id}};
      AddPath(&j, h.path);
      j["score"] = h.score;
      if (h.probability) j["probability"] = *h.probability;
      if (!h.words.empty()) j["words"] = h.words;
      j["width"] = h.width;
      j["height"] = h.height;
      if (h.time_s) {
        j["time"] = *h.time_s;
        j["moments"] = nlohmann::json::array();
        for (const Moment& m : h.moments) j["moments"].push_back({{"time", m.time_s}, {"score", m.score}});
      }
      std::printf("%s\n", DumpJson(j).c_str());
      continue;
    }
    std::string where = ForTerminal(h.path);
    if (h.time_s) {
      where += " @ " + ClockTime(*h.time_s);
      for (size_t i = 0; i < h.moments.size() && i < 3; ++i) {
        where += (i == 0 ? " (also " : ", ") + ClockTime(h.moments[i].time_s);
      }
      if (!h.moments.empty()) where += ")";
    }
    if (!h.words.empty()) {
      where += "  [shows:";
      for (const std::string& w : h.words) where += " " + ForTerminal(w);
      where += "]";
    }
    if (h.probability) {
      std::printf("%.4f  match %5.1f%%  %s\n", h.score, 100.0 * *h.probability, where.c_str());
    } else {
      std::printf("%.4f  %s\n", h.score, where.c_str());
    }
  }
}

}  // namespace

RunFn AddSearchCommand(CLI::App& root) {
  struct Flags : StoreFlags {
    std::string model, text_model, precision = "auto";
    std::vector<std::string> query, images, formats;
    std::vector<std::string> similar;
    // Options are read as text and given to the search layer, which checks them as it checks the
    // API's: the same rules and the same messages everywhere.
    std::string k, offset, min_score, under, after, before;
    std::vector<std::string> contains;
    bool exact = false, json = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("search", "find images by text, by image, or like an indexed image");
  AddStoreFlags(app, f.get());
  app->add_option(
      "--model", f->model,
      "model folder or hub name (default: the model the collection was built with); not needed for --similar");
  AddPrecisionFlag(app, &f->precision);
  app->add_option("--text-model", f->text_model,
                  "a text model (folder or hub name) for the query texts, mapping into the collection's space, "
                  "e.g. sentence-transformers/clip-ViT-B-32-multilingual-v1 for queries in 50+ languages");
  app->add_option("query", f->query,
                  "terms joined by + and -, each optionally weighted W:term; a term naming a file is an image, "
                  "e.g. \"golden retriever\" + 0.5:beach - people + ./dog.jpg");
  app->add_option("--image", f->images, "add an image file as a query term");
  app->add_option("--similar", f->similar,
                  "add an indexed image (by id; ID@SECONDS for a video's moment) as a query term: more like this");
  app->add_option("--contains", f->contains,
                  "images showing these words (text read from them; any part of a word, any case), alone or mixed "
                  "with the other terms");
  app->add_option("-k", f->k, "results per page (default 10, at most 1000 with --offset)");
  app->add_option("--offset", f->offset, "results to skip (pagination)");
  app->add_option("--min-score", f->min_score, "only results at least this similar (cosine, -1 to 1)");
  app->add_option("--under", f->under, "only images under this folder");
  app->add_option("--after", f->after,
                  "only images taken (else modified) at or after this time: 2024-05-01, 2024-05-01T13:45:00 (UTC) "
                  "or Unix seconds");
  app->add_option("--before", f->before, "only images taken (else modified) before this time");
  app->add_option("--format", f->formats, "only these formats (jpeg or jpg, png, webp, gif, bmp, tiff or tif)");
  app->add_flag("--exact", f->exact, "exact search instead of the ANN index");
  app->add_flag("--json", f->json, "JSON lines: id, path, score, width, height");
  return [f] {
    SearchFields options;
    for (auto [key, value] :
         {std::pair{"k", &f->k}, std::pair{"offset", &f->offset}, std::pair{"min_score", &f->min_score},
          std::pair{"after", &f->after}, std::pair{"before", &f->before}}) {
      if (!value->empty()) options.emplace_back(key, *value);
    }
    // A relative folder is relative to where the command runs.
    if (!f->under.empty()) options.emplace_back("under", NormalisePath(f->under));
    for (const std::string& format : f->formats) options.emplace_back("format", format);
    if (f->exact) options.emplace_back("exact", "true");
    for (const std::string& words : f->contains) options.emplace_back("contains", words);
    auto request = ParseSearchArgs(f->query, f->images, f->similar, options);
    if (!request.ok()) return ReportError(request.status());

    std::unique_ptr<ClipModel> model;
    if (NeedsModel(*request)) {
      auto options = ModelOptionsFor(f->precision, 0);
      if (!options.ok()) return ReportError(options.status());
      auto loaded = LoadModel(ModelFor(*f, f->model), *options);
      if (!loaded.ok()) return ReportError(loaded.status());
      model = std::move(loaded).value();
    }
    auto collection = OpenForReading(*f, model.get());
    if (!collection.ok()) return ReportError(collection.status());
    std::unique_ptr<TextModel> text_model;
    if (!f->text_model.empty() && model) {
      auto loaded = LoadTextModel(f->text_model, *model);
      if (!loaded.ok()) return ReportError(loaded.status());
      text_model = std::move(loaded).value();
    }
    Searcher searcher(model.get(), collection->get(), SearcherOptions{.text_model = text_model.get()});
    auto response = searcher.Search(*request);
    if (!response.ok()) return ReportError(response.status());
    PrintHits(response->hits, f->json);
    return kExitOk;
  };
}

RunFn AddStatsCommand(CLI::App& root) {
  struct Flags : StoreFlags {
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("stats", "what a collection holds: counts, model, disk use, index");
  AddStoreFlags(app, f.get());
  app->add_flag("--json", f->json, "one JSON object");
  return [f] {
    auto collection = OpenForReading(*f, nullptr);
    if (!collection.ok()) return ReportError(collection.status());
    auto s = (*collection)->Stats();
    if (!s.ok()) return ReportError(s.status());
    std::optional<QueueStats> queue;
    if (!f->store.empty()) {
      auto q = QueueStatsAt(f->store);
      if (!q.ok()) return ReportError(q.status());
      queue = *q;
    }
    // The failures with their reasons (the first ones; `list --status failed` has them all).
    constexpr size_t kShownFailures = 20;
    std::vector<std::pair<std::string, std::string>> failures;
    Status listed = (*collection)
                        ->ForEach(
                            [&](const ImageRecord& r) {
                              failures.emplace_back(r.path, r.error);
                              return failures.size() < kShownFailures;
                            },
                            ImageStatus::kFailed);
    if (!listed.ok()) return ReportError(listed);
    if (f->json) {
      nlohmann::json j = {
          {"indexed", s->indexed},
          {"failed", s->failed},
          {"distinct_vectors", s->distinct_vectors},
          {"kept_vectors", s->kept_vectors},
          {"formats", s->formats},
          {"keep_removed", FormatDuration(s->keep_removed)},
          {"model", {{"id", s->model.id}, {"name", s->model.name}, {"dim", s->model.dim}, {"source", s->model.source}}},
          {"database_bytes", s->database_bytes},
          {"index_bytes", s->index_bytes},
          {"index",
           {{"kind", s->index_kind},
            {"m", s->index_params.m},
            {"ef_construction", s->index_params.ef_construction},
            {"ef_search", s->index_params.ef_search},
            {"exact_below", s->index_params.exact_below}}},
          {"schema_version", s->schema_version},
          {"text", {{"read", s->texts_read}, {"pending", s->texts_pending}}},
          {"failures", nlohmann::json::array()}};
      for (const auto& [path, error] : failures) {
        nlohmann::json failure;
        AddPath(&failure, path);
        failure["error"] = error;
        j["failures"].push_back(std::move(failure));
      }
      if (queue) {
        j["queue"] = {{"pending", queue->pending},
                      {"leased", queue->leased},
                      {"retrying", queue->retrying},
                      {"workers", nlohmann::json::array()}};
        for (const QueueStats::Worker& w : queue->workers) {
          j["queue"]["workers"].push_back(
              {{"name", w.name}, {"seen_seconds_ago", w.seen_seconds_ago}, {"jobs_done", w.jobs_done}});
        }
      }
      std::printf("%s\n", DumpJson(j).c_str());
      return kExitOk;
    }
    std::printf("collection  %s\n", RedactedLocation(f->db.empty() ? f->store : f->db).c_str());
    std::printf("images      %lld indexed, %lld failed\n", static_cast<long long>(s->indexed),
                static_cast<long long>(s->failed));
    if (!s->formats.empty()) {
      std::string by_format;
      for (const auto& [format, n] : s->formats) {
        by_format += (by_format.empty() ? "" : ", ") + std::to_string(n) + " " + format;
      }
      std::printf("formats     %s\n", by_format.c_str());
    }
    std::printf("vectors     %lld distinct (identical files share one)", static_cast<long long>(s->distinct_vectors));
    if (s->kept_vectors > 0) {
      std::printf("; %lld of removed images kept for %s", static_cast<long long>(s->kept_vectors),
                  FormatDuration(s->keep_removed).c_str());
    }
    std::printf("\n");
    std::printf("text        read in %lld images%s\n", static_cast<long long>(s->texts_read),
                s->texts_pending > 0 ? ("; " + std::to_string(s->texts_pending) +
                                        " still to read (the next index, watch or serve --watch)")
                                           .c_str()
                                     : "");
    std::printf("model       %s (%s, %d dimensions)%s\n", s->model.name.c_str(), s->model.id.c_str(), s->model.dim,
                s->model.source.empty() ? "" : (", from " + ForTerminal(s->model.source)).c_str());
    if (queue) {
      std::printf("database    %.1f MB in PostgreSQL\n", s->database_bytes / 1e6);
      std::printf("queue       %lld waiting, %lld being embedded, %lld to retry; %zu workers seen in the last minute\n",
                  static_cast<long long>(queue->pending), static_cast<long long>(queue->leased),
                  static_cast<long long>(queue->retrying), queue->workers.size());
      for (const QueueStats::Worker& w : queue->workers) {
        std::printf("worker      %s: %lld jobs done, seen %.0fs ago\n", w.name.c_str(),
                    static_cast<long long>(w.jobs_done), w.seen_seconds_ago);
      }
    } else {
      std::printf("disk        catalog %.1f MB, index snapshot %.1f MB\n", s->database_bytes / 1e6,
                  s->index_bytes / 1e6);
    }
    std::printf("index       %s (HNSW M=%d, ef_construction=%d, ef_search=%d; exact below %d images)\n",
                s->index_kind.c_str(), s->index_params.m, s->index_params.ef_construction, s->index_params.ef_search,
                s->index_params.exact_below);
    std::printf("schema      version %d\n", s->schema_version);
    for (const auto& [path, error] : failures) {
      std::printf("failed      %s: %s\n", ForTerminal(path).c_str(), ForTerminal(error).c_str());
    }
    if (s->failed > static_cast<int64_t>(failures.size())) {
      std::printf("            … and %lld more (imgsearch list --status failed)\n",
                  static_cast<long long>(s->failed - static_cast<int64_t>(failures.size())));
    }
    return kExitOk;
  };
}

RunFn AddListCommand(CLI::App& root) {
  struct Flags : StoreFlags {
    std::string status;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand(
      "list", "every image the collection knows, one per line: id (for search --similar), state, path");
  AddStoreFlags(app, f.get());
  app->add_option("--status", f->status, "only indexed or failed images")->check(CLI::IsMember({"indexed", "failed"}));
  app->add_flag("--json", f->json, "JSON lines: id, path, status, error");
  return [f] {
    auto collection = OpenForReading(*f, nullptr);
    if (!collection.ok()) return ReportError(collection.status());
    std::optional<ImageStatus> status;
    if (f->status == "indexed") status = ImageStatus::kIndexed;
    if (f->status == "failed") status = ImageStatus::kFailed;
    Status st =
        (*collection)
            ->ForEach(
                [&](const ImageRecord& r) {
                  // Names are bytes: JSON keeps them exactly (path_bytes), lines escape them so
                  // that a newline or an escape sequence in a name cannot forge or hide a line.
                  if (f->json) {
                    nlohmann::json j = {{"id", r.id}};
                    AddPath(&j, r.path);
                    j["status"] = ImageStatusName(r.status);
                    j["error"] = r.error;
                    std::printf("%s\n", DumpJson(j).c_str());
                  } else if (r.status == ImageStatus::kFailed) {
                    std::printf("%8lld  failed   %s  (%s)\n", static_cast<long long>(r.id), ForTerminal(r.path).c_str(),
                                ForTerminal(r.error).c_str());
                  } else {
                    std::printf("%8lld  indexed  %s\n", static_cast<long long>(r.id), ForTerminal(r.path).c_str());
                  }
                  return true;
                },
                status);
    return st.ok() ? kExitOk : ReportError(st);
  };
}

RunFn AddDuplicatesCommand(CLI::App& root) {
  struct Flags : StoreFlags {
    float min_score = 0.95f;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("duplicates", "groups of images whose embeddings are near-identical");
  AddStoreFlags(app, f.get());
  app->add_option("--min-score", f->min_score, "how similar counts as a duplicate (cosine)")->capture_default_str();
  app->add_flag("--json", f->json, "one JSON object per group");
  return [f] {
    auto collection = OpenForReading(*f, nullptr);
    if (!collection.ok()) return ReportError(collection.status());
    Collection& c = **collection;
    std::vector<int64_t> ids;
    std::map<int64_t, std::string> paths;
    Status st = c.ForEach(
        [&](const ImageRecord& r) {
          ids.push_back(r.id);
          paths[r.id] = r.path;
          return true;
        },
        ImageStatus::kIndexed);
    if (!st.ok()) return ReportError(st);
    // Union-find over the pairs above the threshold.
    std::map<int64_t, int64_t> parent;
    for (int64_t id : ids) parent[id] = id;
    auto find = [&](int64_t x) {
      while (parent[x] != x) x = parent[x] = parent[parent[x]];
      return x;
    };
    SearchOptions options;
    options.k = 50;
    options.min_score = f->min_score;
    for (int64_t id : ids) {
      auto v = c.GetEmbedding(id);
      if (!v.ok()) return ReportError(v.status());
      auto hits = c.Search(*v, options);
      if (!hits.ok()) return ReportError(hits.status());
      for (const SearchHit& h : *hits) {
        if (h.id != id) parent[find(h.id)] = find(id);
      }
    }
    std::map<int64_t, std::vector<int64_t>> groups;
    for (int64_t id : ids) groups[find(id)].push_back(id);
    int n_groups = 0;
    for (const auto& [rep, members] : groups) {
      if (members.size() < 2) continue;
      ++n_groups;
      if (f->json) {
        nlohmann::json j = nlohmann::json::array();
        for (int64_t id : members) {
          nlohmann::json image = {{"id", id}};
          AddPath(&image, paths[id]);
          j.push_back(std::move(image));
        }
        std::printf("%s\n", DumpJson(nlohmann::json{{"images", j}}).c_str());
      } else {
        for (int64_t id : members) std::printf("%s\n", ForTerminal(paths[id]).c_str());
        std::printf("\n");
      }
    }
    if (!f->json) std::fprintf(stderr, "%d groups of near-duplicates (cosine >= %.3f)\n", n_groups, f->min_score);
    return kExitOk;
  };
}

}  // namespace imgsearch::cli
