#include "scaleout/pg_job_queue.h"

#include <algorithm>

#include "scaleout/pg_backend.h"

namespace imgsearch::scaleout {
namespace {

constexpr const char* kHeartbeatSql =
    "UPDATE imgsearch.workers SET last_seen = now(), jobs_done = jobs_done + $2 WHERE name = $1";

}  // namespace

Status PgJobQueue::Enqueue(std::span<const FileJob> jobs) {
  if (jobs.empty()) return Status::Ok();
  std::vector<std::string> paths, sizes, mtimes;
  for (const FileJob& j : jobs) {
    paths.push_back(j.path);
    sizes.push_back(std::to_string(j.size_bytes));
    mtimes.push_back(std::to_string(j.mtime_ns));
  }
  return client_->Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    // A job already waiting for the same file state is left alone (its lease too); a changed
    // file gets a new generation, so a worker holding the old one does not write its result.
    w.exec_params(
        "INSERT INTO imgsearch.jobs(path, size_bytes, mtime_ns) "
        "SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) "
        "ON CONFLICT (path) DO UPDATE SET size_bytes = EXCLUDED.size_bytes, mtime_ns = EXCLUDED.mtime_ns, "
        "generation = imgsearch.jobs.generation + 1, enqueued_at = now(), not_before = now(), attempts = 0, "
        "lease_owner = NULL, lease_until = NULL, last_error = NULL "
        "WHERE imgsearch.jobs.size_bytes <> EXCLUDED.size_bytes OR imgsearch.jobs.mtime_ns <> EXCLUDED.mtime_ns",
        ArrayLiteral(paths), ArrayLiteral(sizes), ArrayLiteral(mtimes));
    w.commit();
  });
}

Result<QueueStats> PgJobQueue::Stats() {
  QueueStats s;
  RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
    Snapshot t(c);
    const pqxx::row r = t.exec(
        "SELECT count(*) FILTER (WHERE (lease_until IS NULL OR lease_until < now()) AND not_before <= now()), "
        "count(*) FILTER (WHERE lease_until >= now()), "
        "count(*) FILTER (WHERE (lease_until IS NULL OR lease_until < now()) AND not_before > now()) "
        "FROM imgsearch.jobs")[0];
    s.pending = r[0].as<int64_t>();
    s.leased = r[1].as<int64_t>();
    s.retrying = r[2].as<int64_t>();
    s.workers.clear();
    for (const pqxx::row& w :
         t.exec("SELECT name, extract(epoch FROM now() - last_seen)::float8, jobs_done FROM imgsearch.workers "
                "WHERE last_seen > now() - interval '1 minute' ORDER BY name")) {
      s.workers.push_back({w[0].as<std::string>(), w[1].as<double>(), w[2].as<int64_t>()});
    }
  }));
  return s;
}

Status PgJobQueue::Register(const std::string& worker) {
  return client_->Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    w.exec_params(
        "INSERT INTO imgsearch.workers(name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET started_at = now(), "
        "last_seen = now()",
        worker);
    w.commit();
  });
}

Status PgJobQueue::Heartbeat(const std::string& worker, int64_t jobs_done) {
  return client_->Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    w.exec_params(kHeartbeatSql, worker, jobs_done);
    w.commit();
  });
}

Status PgJobQueue::ExtendLeases(const std::string& worker, double lease_seconds) {
  return client_->Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    w.exec_params(
        "UPDATE imgsearch.jobs SET lease_until = now() + make_interval(secs => $2) WHERE lease_owner = $1 AND "
        "lease_until >= now()",
        worker, lease_seconds);
    w.commit();
  });
}

Result<std::vector<Job>> PgJobQueue::Claim(const std::string& worker, int n, double lease_seconds) {
  std::vector<Job> jobs;
  RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    const pqxx::result r = w.exec_params(
        "UPDATE imgsearch.jobs j SET lease_owner = $2, lease_until = now() + make_interval(secs => $3), "
        "attempts = j.attempts + 1 FROM (SELECT id FROM imgsearch.jobs WHERE not_before <= now() AND "
        "(lease_until IS NULL OR lease_until < now()) ORDER BY not_before, id LIMIT $1 FOR UPDATE SKIP LOCKED) c "
        "WHERE j.id = c.id RETURNING j.id, j.path, j.size_bytes, j.mtime_ns, j.generation, j.attempts, "
        "coalesce(j.last_error, '')",
        n, worker, lease_seconds);
    w.commit();
    jobs.clear();
    for (const pqxx::row& row : r) {
      jobs.push_back({row[0].as<int64_t>(), row[1].as<std::string>(), row[2].as<int64_t>(), row[3].as<int64_t>(),
                      row[4].as<int64_t>(), row[5].as<int>(), row[6].as<std::string>()});
    }
  }));
  return jobs;
}

Result<Completion> PgJobQueue::Complete(const std::string& worker, std::span<ingest::PreparedFile> batch, int dim) {
  using ingest::PreparedFile;
  Completion done;
  // Decided inside the transaction, applied to `batch` once it commits (a lost connection runs it again).
  std::vector<PreparedFile::Kind> kinds;
  std::vector<Status> reasons;
  RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
    done = {};
    kinds.assign(batch.size(), PreparedFile::kDrop);
    reasons.assign(batch.size(), Status::Ok());
    pqxx::work w(c);
    LockChanges(w);
    std::vector<ImageUpsert> upserts;
    std::vector<std::string> removals;
    for (size_t i = 0; i < batch.size(); ++i) {
      const PreparedFile& f = batch[i];
      const Job& job = std::any_cast<const Job&>(f.token);
      const ImageUpsert& u = f.upsert;
      Status retry = f.kind == PreparedFile::kRetry ? f.retry : Status::Ok();
      double backoff = std::min(600.0, 5.0 * (1 << std::min(job.attempts, 7)));
      if (retry.ok() && f.kind == PreparedFile::kUpsert && u.record.status == ImageStatus::kIndexed &&
          u.embedding.empty() &&
          w.exec_params("SELECT 1 FROM imgsearch.vectors WHERE hash = $1", u.record.content_hash).empty()) {
        // It was a copy of an image that has since been removed with its vector: embed it again.
        retry = Status::Unavailable("the image it copies was removed meanwhile; embedding it again");
        backoff = 0;
      }
      if (!retry.ok()) {
        w.exec_params(
            "UPDATE imgsearch.jobs SET lease_owner = NULL, lease_until = NULL, last_error = $4, "
            "not_before = now() + make_interval(secs => $5) WHERE id = $1 AND generation = $2 AND lease_owner = $3",
            job.id, job.generation, worker, retry.message(), backoff);
        kinds[i] = PreparedFile::kRetry;
        reasons[i] = retry;
        ++done.retried;
        continue;
      }
      if (w.exec_params("DELETE FROM imgsearch.jobs WHERE id = $1 AND generation = $2 AND lease_owner = $3 "
                        "RETURNING id",
                        job.id, job.generation, worker)
              .empty()) {
        ++done.superseded;  // kDrop
        continue;
      }
      ++done.jobs;
      kinds[i] = f.kind;
      if (f.kind == PreparedFile::kRemove) {
        removals.push_back(job.path);
      } else if (f.kind == PreparedFile::kUpsert) {
        upserts.push_back(u);
        if (u.record.status == ImageStatus::kFailed) ++done.failed;
      }
    }
    if (!upserts.empty()) WriteUpserts(w, upserts, dim);
    if (!removals.empty()) WriteRemovals(w, removals);
    if (!upserts.empty() || !removals.empty()) NotifyChanges(w);
    w.exec_params(kHeartbeatSql, worker, done.jobs);
    w.commit();
  }));
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i].kind = kinds[i];
    if (!reasons[i].ok()) batch[i].retry = reasons[i];
  }
  return done;
}

}  // namespace imgsearch::scaleout
