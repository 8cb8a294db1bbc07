// The job queue in PostgreSQL: `index` and `watch` enqueue new and changed files; workers claim
// them with a lease, and complete them by writing their results through the PostgreSQL backend in
// the same transaction that deletes the jobs.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "imgsearch/ingest.h"
#include "ingest/pipeline.h"
#include "scaleout/pg.h"

namespace imgsearch::scaleout {

// One claimed job: a file in the state it was enqueued, and the lease's identity.
struct Job {
  int64_t id = 0;
  std::string path;
  int64_t size_bytes = 0;
  int64_t mtime_ns = 0;
  int64_t generation = 0;  // bumped when the file changes: a result for an older one is not written
  int attempts = 0;        // including this one
  std::string last_error;
};

// What completing a batch did.
struct Completion {
  int64_t jobs = 0;        // finished: written, removed or dropped
  int64_t failed = 0;      // of those, recorded as failed
  int64_t retried = 0;     // handed back for later
  int64_t superseded = 0;  // not written: the file changed (a newer job has it), or the lease ran out
};

class PgJobQueue final : public JobQueue {
 public:
  explicit PgJobQueue(std::shared_ptr<PgClient> client) : client_(std::move(client)) {}

  Status Enqueue(std::span<const FileJob> jobs) override;
  Result<QueueStats> Stats() override;

  // The worker's side. `worker` names the lease holder.
  Status Register(const std::string& worker);
  // Says the worker is alive, with the jobs it finished since it last said so.
  Status Heartbeat(const std::string& worker, int64_t jobs_done);
  // Up to `n` jobs whose time has come, leased to `worker` for `lease_seconds`.
  Result<std::vector<Job>> Claim(const std::string& worker, int n, double lease_seconds);
  // Renews the leases `worker` still holds for another `lease_seconds`: a live worker keeps a job
  // however long it takes (a long video); a stopped one stops renewing, and its jobs go to others.
  Status ExtendLeases(const std::string& worker, double lease_seconds);
  // In one transaction: writes the results of the jobs `worker` still holds (same generation, its
  // lease), deletes those jobs, hands back the ones to retry (with a growing delay) and records a
  // heartbeat. Each file's token is its Job. Files not written are turned into kDrop (superseded)
  // or kRetry. `dim` is the collection's.
  Result<Completion> Complete(const std::string& worker, std::span<ingest::PreparedFile> batch, int dim);

 private:
  std::shared_ptr<PgClient> client_;
};

}  // namespace imgsearch::scaleout
