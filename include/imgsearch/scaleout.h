// Scale-out mode: the collection and a job queue in PostgreSQL; any number of workers embed, any
// number of search nodes answer queries from an in-memory index fed by the change sequence.
//
//   imgsearch watch  --store postgresql://db/photos /srv/photos     # enqueues new and changed files
//   imgsearch worker --store postgresql://db/photos --threads 8     # as many as you like, anywhere
//   imgsearch serve  --store postgresql://db/photos                 # search nodes behind a balancer
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/image.h"
#include "imgsearch/ingest.h"
#include "imgsearch/video.h"

namespace imgsearch {

// The schema this binary writes. Older databases are migrated when opened; newer ones are refused.
inline constexpr int kPgSchemaVersion = 5;

// True for "postgresql://…" and "postgres://…".
bool IsPostgresUrl(const std::string& location);

// The location for messages: a URL's password replaced by ***.
std::string RedactedLocation(const std::string& location);

// Makes every PostgreSQL operation of this process that is waiting for an unreachable database give
// up now (kUnavailable), so that a process asked to stop during an outage can. Irreversible.
void StopWaitingForDatabase();

// A collection and, for PostgreSQL, its job queue.
struct Store {
  std::unique_ptr<Collection> collection;
  std::unique_ptr<JobQueue> queue;  // null for an embedded collection
};

// Opens a PostgreSQL URL (applying schema migrations) or an embedded collection folder. With
// PostgreSQL the in-memory search index is built on the first search and then follows every change
// any process writes (LISTEN/NOTIFY, and a catch-up from the change sequence after reconnecting);
// lost connections are retried with backoff.
Result<Store> OpenStore(const std::string& location, const ModelIdentity* model, const CollectionOptions& options = {});

// What a worker reads a job's file from when its path is not visible as it is: a local folder
// (another mount point of the same share) or an http(s) URL.
struct PathMap {
  std::string prefix;  // a folder as the enqueuer sees it, e.g. /srv/photos
  std::string target;  // e.g. /mnt/photos or https://files.example.com/photos
};

struct WorkerOptions {
  std::string name;  // empty: host:pid
  int batch_size = 32;
  int decode_threads = 0;      // 0: one per core
  double lease_seconds = 120;  // a job not finished in this time is given to another worker
  int max_attempts = 5;        // then the image is recorded as failed with the last reason
  DecodeOptions decode;
  VideoOptions video;
  std::vector<PathMap> path_maps;
  // Text in images: the worker also reads the text of the images embedded (by any process) whose
  // text is not read yet, at a low priority and never while it has jobs in flight
  // (TextRecognition); text.enabled false: it does not.
  TextOptions text;
};

struct WorkerReport {
  int64_t jobs = 0;        // jobs finished (written, dropped or failed)
  int64_t embedded = 0;    // images that went through the model
  int64_t failed = 0;      // images recorded as failed
  int64_t retried = 0;     // jobs handed back for later (file server unreachable, share not mounted)
  int64_t superseded = 0;  // results not written: the file changed meanwhile, or the lease was lost
  double seconds = 0;
};

// Claims batches of jobs (FOR UPDATE SKIP LOCKED, with a lease), embeds them and writes the results
// and the job's completion in one transaction, until `stop` becomes true. `on_batch` (optional) is
// called with the totals after every batch.
Result<WorkerReport> RunWorker(const std::string& url, const ClipModel& model, const WorkerOptions& options,
                               const std::atomic<bool>& stop,
                               const std::function<void(const WorkerReport&)>& on_batch = {});

// The queue of the PostgreSQL store at `url`.
Result<QueueStats> QueueStatsAt(const std::string& url);

struct MigrateReport {
  int64_t indexed = 0;
  int64_t failed = 0;
  int64_t vectors = 0;
};
// Copies the embedded collection in `dir` into PostgreSQL, vectors included (nothing is embedded
// again). Images already there are replaced; the source is only read.
Result<MigrateReport> MigrateCollection(const std::string& dir, const std::string& url);

}  // namespace imgsearch
