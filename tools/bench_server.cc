// Load benchmark of `imgsearch serve`.
//
//   bench_server make --model DIR --out DIR [--n 10000]
//       writes N small JPEGs to DIR/photos and a collection DIR/db holding them, bound to the model,
//       with synthetic clustered embeddings (real files and thumbnails, real model for the text
//       queries; only the image vectors are made up, which costs search nothing different).
//   bench_server load --url http://127.0.0.1:8080 [--clients 50] [--seconds 30] [--mix 4,3,3]
//       that many concurrent clients, each with a keep-alive connection, mixing text searches
//       (every text new, so every one reaches the model), "more like this" and thumbnails;
//       prints one JSON object: requests, errors, QPS, p50/p99 latency overall and per kind.
#include <httplib.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/hash.h"
#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/image.h"
#include "imgsearch/ingest.h"
#include "ingest/pipeline.h"
#include "synthetic_vectors.h"

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
namespace fs = std::filesystem;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

int Make(const std::string& model_dir, const std::string& out, int n) {
  auto model = imgsearch::ClipModel::Load(model_dir);
  if (!model.ok()) {
    std::fprintf(stderr, "bench_server: %s\n", model.status().ToString().c_str());
    return 2;
  }
  const imgsearch::ModelIdentity identity = imgsearch::IdentityOf(**model);
  const std::string photos = fs::absolute(out).string() + "/photos";
  fs::create_directories(photos);
  auto collection = imgsearch::OpenCollection(out + "/db", &identity);
  if (!collection.ok()) {
    std::fprintf(stderr, "bench_server: %s\n", collection.status().ToString().c_str());
    return 2;
  }
  const std::vector<imgsearch::CollectionRoot> roots = {{photos, fs::canonical(photos).string()}};
  if (!(*collection)->AddRoots(roots, imgsearch::RootChange::kAccept).ok()) return 2;
  imgsearch::tools::ClusteredVectors vectors(identity.dim, std::max(1, n / 50), 7);
  std::mt19937 rng(11);
  std::vector<imgsearch::ImageUpsert> batch;
  for (int i = 0; i < n; ++i) {
    // 320×240 with a few coloured blocks: small files whose thumbnails cost a real decode.
    imgsearch::Image img(320, 240);
    const uint8_t base[3] = {static_cast<uint8_t>(rng()), static_cast<uint8_t>(rng()), static_cast<uint8_t>(rng())};
    for (int y = 0; y < img.height; ++y) {
      for (int x = 0; x < img.width; ++x) {
        uint8_t* p = img.row(y) + 3 * x;
        for (int c = 0; c < 3; ++c) p[c] = static_cast<uint8_t>(base[c] + ((x / 40 + y / 30) * (c + 1) * 13) + i);
      }
    }
    auto jpeg = imgsearch::EncodeJpeg(img, 85);
    if (!jpeg.ok()) return 2;
    char name[64];
    std::snprintf(name, sizeof(name), "/%03d/img%06d.jpg", i / 1000, i);
    const std::string path = photos + name;
    fs::create_directories(fs::path(path).parent_path());
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr || std::fwrite(jpeg->data(), 1, jpeg->size(), f) != jpeg->size()) return 2;
    std::fclose(f);
    struct stat st {};
    ::stat(path.c_str(), &st);
    imgsearch::ImageUpsert u;
    u.record.path = path;
    u.record.size_bytes = st.st_size;
    u.record.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
    u.record.content_hash = imgsearch::ContentHash(*jpeg);
    u.record.width = img.width;
    u.record.height = img.height;
    u.record.format = "jpeg";
    u.embedding = vectors.Next(0.6f);
    batch.push_back(std::move(u));
    if (batch.size() == 500 || i == n - 1) {
      auto ids = (*collection)->Upsert(batch);
      if (!ids.ok()) {
        std::fprintf(stderr, "bench_server: %s\n", ids.status().ToString().c_str());
        return 2;
      }
      batch.clear();
    }
  }
  if (!(*collection)->Checkpoint().ok()) return 2;
  std::printf("{\"images\": %d, \"photos\": \"%s\", \"db\": \"%s/db\"}\n", n, photos.c_str(), out.c_str());
  return 0;
}

struct Sample {
  int kind;
  double ms;
  bool ok;
};

int Load(const std::string& url, int clients, double seconds, const std::vector<int>& mix) {
  httplib::Client probe(url);
  auto status = probe.Get("/api/status");
  if (!status || status->status != 200) {
    std::fprintf(stderr, "bench_server: no server at %s\n", url.c_str());
    return 2;
  }
  const int64_t n_images = json::parse(status->body)["collection"]["indexed"].get<int64_t>();
  if (n_images == 0) {
    std::fprintf(stderr, "bench_server: the collection is empty\n");
    return 2;
  }
  const char* kKinds[] = {"text", "similar", "thumbnail"};
  const char* kWords[] = {"red",   "car",    "snow",  "dog",    "beach", "mountain", "city", "night",
                          "child", "flower", "river", "bridge", "cat",   "forest",   "sky",  "boat"};
  std::mutex mu;
  std::vector<Sample> samples;
  std::atomic<int64_t> transport_errors{0};
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937 rng(static_cast<uint32_t>(c) * 7919u + 1);
      httplib::Client client(url);
      client.set_keep_alive(true);
      client.set_read_timeout(std::chrono::seconds(60));
      std::vector<Sample> mine;
      const int total = mix[0] + mix[1] + mix[2];
      int64_t counter = 0;
      auto last_end = Clock::now();
      while (Clock::now() < end) {
        const int r = static_cast<int>(rng() % static_cast<uint32_t>(total));
        const int kind = r < mix[0] ? 0 : r < mix[0] + mix[1] ? 1 : 2;
        const int64_t id = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(n_images));
        const auto t0 = Clock::now();
        const double gap_ms = std::chrono::duration<double, std::milli>(t0 - last_end).count();
        httplib::Result res = [&] {
          if (kind == 0) {
            // A new text every time: no query cache can answer it.
            const std::string q = std::string("a ") + kWords[rng() % 16] + " " + kWords[rng() % 16] + " and " +
                                  kWords[rng() % 16] + " #" + std::to_string(c) + "." + std::to_string(counter++);
            return client.Post("/api/search", json{{"q", q}, {"k", 20}}.dump(), "application/json");
          }
          if (kind == 1) return client.Get("/api/images/" + std::to_string(id) + "/similar?k=20");
          return client.Get("/api/images/" + std::to_string(id) + "/thumbnail?size=256");
        }();
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (!res) {
          ++transport_errors;
          std::lock_guard<std::mutex> lock(mu);
          std::fprintf(
              stderr,
              "bench_server: %s request failed after %.0f ms (%.0f ms after the previous), %.1f s into the run: %s\n",
              kKinds[kind], ms, gap_ms, std::chrono::duration<double>(Clock::now() - start).count(),
              httplib::to_string(res.error()).c_str());
        }
        mine.push_back({kind, ms, res && res->status == 200});
        last_end = Clock::now();
      }
      std::lock_guard<std::mutex> lock(mu);
      samples.insert(samples.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  json out;
  std::vector<double> all;
  int64_t errors = 0;
  for (int k = 0; k < 3; ++k) {
    std::vector<double> ms;
    int64_t kind_errors = 0;
    for (const Sample& s : samples) {
      if (s.kind != k) continue;
      ms.push_back(s.ms);
      if (!s.ok) ++kind_errors;
    }
    out["by_kind"][kKinds[k]] = {{"requests", ms.size()},
                                 {"errors", kind_errors},
                                 {"qps", ms.size() / elapsed},
                                 {"p50_ms", Percentile(ms, 0.5)},
                                 {"p99_ms", Percentile(ms, 0.99)}};
    all.insert(all.end(), ms.begin(), ms.end());
    errors += kind_errors;
  }
  out["clients"] = clients;
  out["seconds"] = elapsed;
  out["collection_images"] = n_images;
  out["requests"] = all.size();
  out["errors"] = errors;
  out["transport_errors"] = transport_errors.load();
  out["qps"] = all.size() / elapsed;
  out["p50_ms"] = Percentile(all, 0.5);
  out["p99_ms"] = Percentile(all, 0.99);
  auto after = probe.Get("/api/status");
  if (after && after->status == 200) out["server"] = json::parse(after->body)["server"];
  std::printf("%s\n", out.dump(2).c_str());
  return errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"load benchmark of imgsearch serve"};
  app.require_subcommand(1);
  std::string model, out, url = "http://127.0.0.1:8080";
  int n = 10'000, clients = 50;
  double seconds = 30;
  std::vector<int> mix = {4, 3, 3};
  CLI::App* make = app.add_subcommand("make", "write a benchmark collection with real files");
  make->add_option("--model", model, "the model the server will run")->required();
  make->add_option("--out", out, "folder to write (photos/ and db/)")->required();
  make->add_option("--n", n, "images")->capture_default_str();
  CLI::App* load = app.add_subcommand("load", "run concurrent clients against a server");
  load->add_option("--url", url)->capture_default_str();
  load->add_option("--clients", clients)->capture_default_str()->check(CLI::Range(1, 1000));
  load->add_option("--seconds", seconds)->capture_default_str()->check(CLI::Range(1.0, 3600.0));
  load->add_option("--mix", mix, "weights of text search, similar, thumbnail")->expected(3)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (make->parsed()) return Make(model, out, n);
  if (mix[0] + mix[1] + mix[2] <= 0 || *std::min_element(mix.begin(), mix.end()) < 0) {
    std::fprintf(stderr, "bench_server: --mix needs three non-negative weights, not all zero\n");
    return 2;
  }
  return Load(url, clients, seconds, mix);
}
