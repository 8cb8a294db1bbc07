// Benchmark of the embedded collection on synthetic, clustered, normalised vectors (the shape of
// real CLIP embeddings: many near neighbours). Prints one JSON object:
//   insert rate, checkpoint and reopen time, ANN recall@k against exact search, query latency
//   (p50/p99, ANN and exact), bytes per vector on disk and in memory.
//
//   bench_collection --n 100000 [--dim 512] [--queries 500] [--k 10] [--dir DIR] [--ef 96] [--m 16]
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <set>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "imgsearch/collection.h"
#include "synthetic_vectors.h"

namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

int64_t PeakRssBytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

int64_t DirBytes(const std::string& dir) {
  int64_t total = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.is_regular_file()) total += static_cast<int64_t>(e.file_size());
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"benchmark the embedded collection"};
  int64_t n = 100'000;
  int dim = 512, queries = 500, k = 10, clusters = 0, ef = 96, m = 16, batch = 1000;
  std::string dir;
  app.add_option("--n", n, "vectors")->capture_default_str();
  app.add_option("--dim", dim, "dimensions")->capture_default_str();
  app.add_option("--queries", queries, "queries to time")->capture_default_str();
  app.add_option("--k", k, "results per query")->capture_default_str();
  app.add_option("--clusters", clusters, "clusters (default n / 100)");
  app.add_option("--ef", ef, "HNSW ef_search")->capture_default_str();
  app.add_option("--m", m, "HNSW M")->capture_default_str();
  app.add_option("--batch", batch, "images per write transaction")->capture_default_str();
  app.add_option("--dir", dir, "collection directory (default: a fresh temporary one, removed after)");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);
  if (clusters <= 0) clusters = static_cast<int>(std::max<int64_t>(10, n / 100));
  const bool temporary = dir.empty();
  if (temporary)
    dir = (std::filesystem::temp_directory_path() / ("bench-collection-" + std::to_string(getpid()))).string();
  std::filesystem::remove_all(dir);

  using namespace imgsearch;
  const ModelIdentity model{"bench", "bench", dim};
  CollectionOptions options;
  options.index.ef_search = ef;
  options.index.m = m;
  options.index.exact_below = 0;           // measure the ANN path whatever the size
  options.index.snapshot_every = 1 << 30;  // one explicit checkpoint, timed separately
  nlohmann::ordered_json out;
  out["n"] = n;
  out["dim"] = dim;
  out["m"] = m;
  out["ef_search"] = ef;

  imgsearch::tools::ClusteredVectors gen(dim, clusters, 42);
  const int64_t rss_before = PeakRssBytes();
  {
    auto c = OpenCollection(dir, &model, options);
    if (!c.ok()) {
      std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
      return 1;
    }
    const auto start = Clock::now();
    for (int64_t done = 0; done < n;) {
      std::vector<ImageUpsert> rows;
      for (int i = 0; i < batch && done < n; ++i, ++done) {
        ImageUpsert u;
        u.record.path = "/bench/" + std::to_string(done / 1000) + "/" + std::to_string(done) + ".jpg";
        u.record.size_bytes = 100'000;
        u.record.mtime_ns = done;
        u.record.content_hash = std::to_string(done);
        u.record.format = "jpeg";
        u.embedding = gen.Next(0.6f);
        rows.push_back(std::move(u));
      }
      auto ids = (*c)->Upsert(rows);
      if (!ids.ok()) {
        std::fprintf(stderr, "%s\n", ids.status().ToString().c_str());
        return 1;
      }
    }
    const double insert_s = Seconds(start);
    out["insert_per_s"] = n / insert_s;
    const auto cp = Clock::now();
    if (Status st = (*c)->Checkpoint(); !st.ok()) {
      std::fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
    out["checkpoint_s"] = Seconds(cp);
    out["memory_bytes_per_vector"] = static_cast<double>(PeakRssBytes() - rss_before) / n;
  }
  out["disk_bytes_per_vector"] = static_cast<double>(DirBytes(dir)) / n;

  const auto open_start = Clock::now();
  CollectionOptions reopen = options;
  reopen.read_only = true;
  auto c = OpenCollection(dir, &model, reopen);
  if (!c.ok()) {
    std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
    return 1;
  }
  out["open_s"] = Seconds(open_start);

  std::vector<double> ann_ms, exact_ms;
  int64_t found = 0, relevant = 0;
  for (int q = 0; q < queries; ++q) {
    const std::vector<float> query = gen.Next(0.8f);
    SearchOptions o;
    o.k = k;
    auto t = Clock::now();
    auto ann = (*c)->Search(query, o);
    ann_ms.push_back(Seconds(t) * 1e3);
    o.exact = true;
    t = Clock::now();
    auto exact = (*c)->Search(query, o);
    exact_ms.push_back(Seconds(t) * 1e3);
    if (!ann.ok() || !exact.ok()) return 1;
    std::set<int64_t> truth;
    for (const SearchHit& h : *exact) truth.insert(h.id);
    for (const SearchHit& h : *ann) found += truth.count(h.id);
    relevant += static_cast<int64_t>(truth.size());
  }
  out["recall_at_k"] = static_cast<double>(found) / std::max<int64_t>(1, relevant);
  out["k"] = k;
  out["ann_ms_p50"] = Percentile(ann_ms, 0.5);
  out["ann_ms_p99"] = Percentile(ann_ms, 0.99);
  out["exact_ms_p50"] = Percentile(exact_ms, 0.5);
  std::printf("%s\n", out.dump().c_str());
  c = Status::Internal("closed");
  if (temporary) std::filesystem::remove_all(dir);
  return 0;
}
