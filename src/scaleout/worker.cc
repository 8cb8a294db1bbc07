// The worker: claim jobs, read and decode their files, embed, write results and complete the jobs
// in one transaction.
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <thread>

#include "base/http_client.h"
#include "imgsearch/scaleout.h"
#include "ingest/pipeline.h"
#include "ingest/scanner.h"
#include "scaleout/pg.h"
#include "scaleout/pg_store.h"
#include "scaleout/sources.h"

namespace imgsearch {

namespace scaleout {
namespace {

using Clock = std::chrono::steady_clock;

// A worker says it is alive, with the jobs it finished since it last said so.
constexpr const char* kHeartbeatSql =
    "UPDATE imgsearch.workers SET last_seen = now(), jobs_done = jobs_done + $2 WHERE name = $1";

struct Job {
  int64_t id = 0;
  std::string path;
  int64_t size_bytes = 0;
  int64_t mtime_ns = 0;
  int64_t generation = 0;
  int attempts = 0;
  std::string last_error;
};

// What becomes of one job.
struct Outcome {
  ingest::PreparedFile file;
  Status retry;  // not Ok: hand the job back for later (the reason)
};

std::string DefaultName() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  return std::string(host) + ":" + std::to_string(::getpid());
}

class Worker {
 public:
  Worker(std::shared_ptr<PgClient> client, std::unique_ptr<Collection> collection, const ClipModel& model,
         const WorkerOptions& options)
      : client_(std::move(client)),
        collection_(std::move(collection)),
        model_(model),
        options_(options),
        name_(options.name.empty() ? DefaultName() : options.name),
        sources_(options.path_maps) {}

  Result<WorkerReport> Run(const std::atomic<bool>& stop, const std::function<void(const WorkerReport&)>& on_batch) {
    const auto start = Clock::now();
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      w.exec_params(
          "INSERT INTO imgsearch.workers(name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET started_at = now(), "
          "last_seen = now()",
          name_);
      w.commit();
    }));
    spdlog::info("worker {} waiting for jobs", name_);
    auto idle = std::chrono::milliseconds(50);
    auto last_seen = Clock::now();
    Batch current;
    bool have = false;
    while (true) {
      if (!have) {
        if (stop) break;
        ASSIGN_OR_RETURN(current, Fetch());
        if (current.jobs.empty()) {
          if (Clock::now() - last_seen > std::chrono::seconds(10)) {
            RETURN_IF_ERROR(Heartbeat(0));
            last_seen = Clock::now();
          }
          std::this_thread::sleep_for(idle);
          idle = std::min(idle * 2, std::chrono::milliseconds(1000));
          continue;
        }
      }
      idle = std::chrono::milliseconds(50);
      // The next batch is claimed and read on the decode threads while this one is embedded and
      // written, as the local pipeline overlaps its stages. Once stopping, nothing more is claimed
      // and the batch in hand is finished.
      std::future<Result<Batch>> next;
      if (!stop) next = std::async(std::launch::async, [this] { return Fetch(); });
      Embed(current.outcomes);
      Status st = Complete(current.jobs, current.outcomes);
      have = false;
      if (next.valid()) {
        Result<Batch> fetched = next.get();
        if (!fetched.ok()) {
          if (st.ok()) st = fetched.status();
        } else if (!fetched->jobs.empty()) {
          current = std::move(*fetched);
          have = true;
        }
      }
      RETURN_IF_ERROR(st);
      last_seen = Clock::now();
      report_.seconds = std::chrono::duration<double>(Clock::now() - start).count();
      if (on_batch) on_batch(report_);
    }
    report_.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return report_;
  }

 private:
  struct Batch {
    std::vector<Job> jobs;
    std::vector<Outcome> outcomes;
  };

  // Claims a batch and reads its files.
  Result<Batch> Fetch() {
    if (Clock::now() - last_roots_ > std::chrono::seconds(30)) {
      ASSIGN_OR_RETURN(roots_, collection_->Roots());
      last_roots_ = Clock::now();
    }
    Batch b;
    ASSIGN_OR_RETURN(b.jobs, Claim());
    if (!b.jobs.empty()) b.outcomes = Prepare(b.jobs);
    return b;
  }

  Result<std::vector<Job>> Claim() {
    std::vector<Job> jobs;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      const pqxx::result r = w.exec_params(
          "UPDATE imgsearch.jobs j SET lease_owner = $2, lease_until = now() + make_interval(secs => $3), "
          "attempts = j.attempts + 1 FROM (SELECT id FROM imgsearch.jobs WHERE not_before <= now() AND "
          "(lease_until IS NULL OR lease_until < now()) ORDER BY not_before, id LIMIT $1 FOR UPDATE SKIP LOCKED) c "
          "WHERE j.id = c.id RETURNING j.id, j.path, j.size_bytes, j.mtime_ns, j.generation, j.attempts, "
          "coalesce(j.last_error, '')",
          options_.batch_size, name_, options_.lease_seconds);
      w.commit();
      jobs.clear();
      for (const pqxx::row& row : r) {
        jobs.push_back({row[0].as<int64_t>(), row[1].as<std::string>(), row[2].as<int64_t>(), row[3].as<int64_t>(),
                        row[4].as<int64_t>(), row[5].as<int>(), row[6].as<std::string>()});
      }
    }));
    return jobs;
  }

  // Reads and decodes every job's file on the decode threads.
  std::vector<Outcome> Prepare(const std::vector<Job>& jobs) {
    std::vector<Outcome> out(jobs.size());
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i = next++; i < jobs.size(); i = next++) out[i] = PrepareOne(jobs[i]);
    };
    int n = options_.decode_threads > 0 ? options_.decode_threads
                                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    n = std::min<int>(n, static_cast<int>(jobs.size()));
    std::vector<std::thread> threads;
    for (int t = 1; t < n; ++t) threads.emplace_back(work);
    work();
    for (std::thread& t : threads) t.join();
    return out;
  }

  Outcome PrepareOne(const Job& job) {
    Outcome o;
    ingest::WorkItem item;
    item.file = {job.path, job.size_bytes, job.mtime_ns};
    if (job.attempts > options_.max_attempts) {
      // Every attempt so far ended without a result: a file that crashes workers, or one that
      // stayed unreachable.
      o.file.upsert.record.path = job.path;
      o.file.upsert.record.size_bytes = job.size_bytes;
      o.file.upsert.record.mtime_ns = job.mtime_ns;
      o.file.upsert.record.status = ImageStatus::kFailed;
      o.file.upsert.record.error =
          "gave up after " + std::to_string(job.attempts - 1) + " attempts: " +
          (job.last_error.empty() ? std::string("the workers handling it stopped before finishing") : job.last_error);
      return o;
    }
    auto existing = collection_->GetByPath(job.path);
    if (!existing.ok()) {
      o.retry = existing.status();
      return o;
    }
    item.existing = *existing;
    Status unavailable;
    auto read = [&](const std::string&) -> Result<ingest::FileContent> {
      Result<ingest::FileContent> content = sources_.Read(job.path, job.mtime_ns, roots_);
      if (!content.ok() && content.status().code() == StatusCode::kUnavailable) unavailable = content.status();
      return content;
    };
    o.file = ingest::PrepareFile(item, read, options_.decode, model_.image_size(), collection_.get());
    o.retry = unavailable;
    return o;
  }

  void Embed(std::vector<Outcome>& outcomes) {
    std::vector<ingest::PreparedFile*> files;
    for (Outcome& o : outcomes) {
      if (o.retry.ok() && !o.file.pixels.empty()) files.push_back(&o.file);
    }
    if (ingest::EmbedPrepared(model_, files).ok()) report_.embedded += static_cast<int64_t>(files.size());
  }

  // Writes the results of the jobs this worker still holds (same generation, same lease) and
  // deletes those jobs, all in one transaction; hands back the ones to retry.
  Status Complete(const std::vector<Job>& jobs, const std::vector<Outcome>& outcomes) {
    WorkerReport delta;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      delta = {};
      pqxx::work w(c);
      LockChanges(w);
      std::vector<ImageUpsert> upserts;
      std::vector<std::string> removals;
      for (size_t i = 0; i < jobs.size(); ++i) {
        const Job& job = jobs[i];
        const Outcome& o = outcomes[i];
        const ImageUpsert& u = o.file.upsert;
        if (o.retry.ok() && o.file.kind == ingest::PreparedFile::kUpsert && u.record.status == ImageStatus::kIndexed &&
            u.embedding.empty() &&
            w.exec_params("SELECT 1 FROM imgsearch.vectors WHERE hash = $1", u.record.content_hash).empty()) {
          // It was a copy of an image that has since been removed with its vector: embed it again.
          w.exec_params(
              "UPDATE imgsearch.jobs SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND generation = $2 AND "
              "lease_owner = $3",
              job.id, job.generation, name_);
          ++delta.retried;
          continue;
        }
        if (!o.retry.ok()) {
          const double backoff = std::min(600.0, 5.0 * (1 << std::min(job.attempts, 7)));
          w.exec_params(
              "UPDATE imgsearch.jobs SET lease_owner = NULL, lease_until = NULL, last_error = $4, "
              "not_before = now() + make_interval(secs => $5) WHERE id = $1 AND generation = $2 AND lease_owner = $3",
              job.id, job.generation, name_, o.retry.message(), backoff);
          ++delta.retried;
          continue;
        }
        if (w.exec_params(
                 "DELETE FROM imgsearch.jobs WHERE id = $1 AND generation = $2 AND lease_owner = $3 RETURNING id",
                 job.id, job.generation, name_)
                .empty()) {
          ++delta.superseded;  // the file changed since (a newer job has it), or the lease ran out
          continue;
        }
        ++delta.jobs;
        if (o.file.kind == ingest::PreparedFile::kRemove) {
          removals.push_back(job.path);
        } else if (o.file.kind == ingest::PreparedFile::kUpsert) {
          upserts.push_back(o.file.upsert);
          if (o.file.upsert.record.status == ImageStatus::kFailed) ++delta.failed;
        }
      }
      if (!upserts.empty()) WriteUpserts(w, upserts, collection_->model().dim);
      if (!removals.empty()) WriteRemovals(w, removals);
      if (!upserts.empty() || !removals.empty()) NotifyChanges(w);
      w.exec_params(kHeartbeatSql, name_, delta.jobs);
      w.commit();
    }));
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (!outcomes[i].retry.ok())
        spdlog::warn("{}: {}; will try again later", jobs[i].path, outcomes[i].retry.message());
    }
    report_.jobs += delta.jobs;
    report_.failed += delta.failed;
    report_.retried += delta.retried;
    report_.superseded += delta.superseded;
    return Status::Ok();
  }

  Status Heartbeat(int64_t jobs) {
    return client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      w.exec_params(kHeartbeatSql, name_, jobs);
      w.commit();
    });
  }

  std::shared_ptr<PgClient> client_;
  std::unique_ptr<Collection> collection_;
  const ClipModel& model_;
  const WorkerOptions options_;
  const std::string name_;
  const FileSources sources_;
  std::vector<CollectionRoot> roots_;  // only Fetch uses these (one at a time)
  Clock::time_point last_roots_ = Clock::now() - std::chrono::hours(1);
  WorkerReport report_;
};

}  // namespace
}  // namespace scaleout

Result<WorkerReport> RunWorker(const std::string& url, const ClipModel& model, const WorkerOptions& options,
                               const std::atomic<bool>& stop,
                               const std::function<void(const WorkerReport&)>& on_batch) {
  if (!IsPostgresUrl(url)) return Status::InvalidArgument("a worker needs --store postgresql://…, not " + url);
  if (options.batch_size < 1) return Status::InvalidArgument("batch size must be at least 1");
  // A worker outlives database restarts: it waits for the server as long as it takes.
  auto client = std::make_shared<scaleout::PgClient>(url, std::chrono::hours(24 * 365));
  RETURN_IF_ERROR(scaleout::MigrateSchema(client.get(), kPgSchemaVersion).status());
  const ModelIdentity identity = IdentityOf(model);
  ASSIGN_OR_RETURN(std::unique_ptr<Collection> collection, scaleout::OpenPgCollection(client, &identity, {}));
  scaleout::Worker worker(client, std::move(collection), model, options);
  return worker.Run(stop, on_batch);
}

}  // namespace imgsearch
