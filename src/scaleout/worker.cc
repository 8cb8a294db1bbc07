// The worker: the ingest pipeline, fed with the jobs it claims from the queue, reading files
// through the deployment's shares and URLs, and writing each batch's results and the jobs'
// completion in one transaction (PgJobQueue::Complete, through the PostgreSQL backend's writes).
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <thread>

#include "imgsearch/scaleout.h"
#include "ingest/pipeline.h"
#include "ingest/text_stage.h"
#include "scaleout/pg.h"
#include "scaleout/pg_backend.h"
#include "scaleout/pg_job_queue.h"
#include "scaleout/sources.h"

namespace imgsearch {

namespace scaleout {
namespace {

using Clock = std::chrono::steady_clock;

std::string DefaultName() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  return std::string(host) + ":" + std::to_string(::getpid());
}

class Worker final : public ingest::ResultWriter {
 public:
  Worker(std::unique_ptr<PgJobQueue> queue, std::unique_ptr<Collection> collection, const ClipModel& model,
         const WorkerOptions& options)
      : queue_(std::move(queue)),
        collection_(std::move(collection)),
        model_(model),
        options_(options),
        name_(options.name.empty() ? DefaultName() : options.name),
        sources_(options.path_maps) {}

  // The source: claims jobs while the pipeline has room for them (a claimed job's lease runs while
  // it waits), until `stop`; then finishes what it holds.
  Result<WorkerReport> Run(const std::atomic<bool>& stop, const std::function<void(const WorkerReport&)>& on_batch) {
    start_ = Clock::now();
    RETURN_IF_ERROR(queue_->Register(name_));
    RETURN_IF_ERROR(RefreshRoots());
    spdlog::info("worker {} waiting for jobs", name_);
    ingest::PipelineOptions po;
    po.decode = options_.decode;
    po.video = options_.video;
    po.batch_size = options_.batch_size;
    po.decode_threads = options_.decode_threads;
    po.read = [this](const ingest::WorkItem& item) -> Result<ingest::FileContent> {
      const Job& job = std::any_cast<const Job&>(item.token);
      const std::shared_ptr<const std::vector<CollectionRoot>> roots = Roots();
      return sources_.Read(job.path, job.mtime_ns, *roots);
    };
    po.writer = this;
    po.on_written = [&] {
      if (on_batch) on_batch(Report());
    };
    ingest::Pipeline pipeline(model_, collection_.get(), po);
    std::unique_ptr<TextRecognition> text;
    if (options_.text.enabled) {
      TextOptions to = options_.text;
      to.busy = [&pipeline] { return pipeline.Snapshot().in_flight > 0; };
      ASSIGN_OR_RETURN(text, ingest::StartTextRecognition(collection_.get(), to, [this](const std::string& path) {
                         return sources_.Read(path, 0, *Roots());
                       }));
    }
    Status st = Feed(pipeline, stop);
    if (text != nullptr) text->Stop();
    pipeline.StopRetrying();  // stopping: a write waiting for the database gives up (its jobs' leases run out)
    pipeline.Flush();
    if (st.ok()) st = pipeline.status();
    RETURN_IF_ERROR(st);
    return Report();
  }

  Status Write(std::span<ingest::PreparedFile> batch) override {
    ASSIGN_OR_RETURN(Completion done, queue_->Complete(name_, batch, collection_->model().dim));
    std::lock_guard<std::mutex> lock(report_mu_);
    report_.jobs += done.jobs;
    report_.failed += done.failed;
    report_.retried += done.retried;
    report_.superseded += done.superseded;
    for (const ingest::PreparedFile& f : batch) {
      if (f.kind == ingest::PreparedFile::kUpsert && f.embedded) ++report_.embedded;
    }
    return Status::Ok();
  }

 private:
  Status Feed(ingest::Pipeline& pipeline, const std::atomic<bool>& stop) {
    const int64_t room = 2 * static_cast<int64_t>(std::max(1, options_.batch_size));
    auto idle = std::chrono::milliseconds(50);
    auto last_seen = Clock::now(), last_roots = Clock::now(), last_renewal = Clock::now();
    const auto renew_every = std::chrono::duration<double>(options_.lease_seconds / 3);
    while (!stop) {
      RETURN_IF_ERROR(pipeline.status());
      if (Clock::now() - last_renewal > renew_every) {
        // The jobs in flight may take longer than a lease (a long video, a slow model): held on.
        RETURN_IF_ERROR(queue_->ExtendLeases(name_, options_.lease_seconds));
        last_renewal = Clock::now();
      }
      if (pipeline.Snapshot().in_flight >= room) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      if (Clock::now() - last_roots > std::chrono::seconds(30)) {
        RETURN_IF_ERROR(RefreshRoots());
        last_roots = Clock::now();
      }
      ASSIGN_OR_RETURN(std::vector<Job> jobs, queue_->Claim(name_, options_.batch_size, options_.lease_seconds));
      if (jobs.empty()) {
        if (Clock::now() - last_seen > std::chrono::seconds(10)) {
          RETURN_IF_ERROR(queue_->Heartbeat(name_, 0));
          last_seen = Clock::now();
        }
        for (auto slept = std::chrono::milliseconds(0); slept < idle && !stop; slept += std::chrono::milliseconds(10)) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        idle = std::min(idle * 2, std::chrono::milliseconds(1000));
        continue;
      }
      idle = std::chrono::milliseconds(50);
      last_seen = Clock::now();
      for (Job& job : jobs) {
        ingest::WorkItem item;
        item.file = {job.path, job.size_bytes, job.mtime_ns};
        item.look_up_existing = true;
        if (job.attempts > options_.max_attempts) {
          // Every attempt so far ended without a result: a file that crashes workers, or one that
          // stayed unreachable.
          item.fail_unread = "gave up after " + std::to_string(job.attempts - 1) + " attempts: " +
                             (job.last_error.empty() ? std::string("the workers handling it stopped before finishing")
                                                     : job.last_error);
        }
        item.token = std::move(job);
        if (!pipeline.Submit(std::move(item))) return pipeline.status();
      }
    }
    return Status::Ok();
  }

  Status RefreshRoots() {
    ASSIGN_OR_RETURN(std::vector<CollectionRoot> roots, collection_->Roots());
    std::lock_guard<std::mutex> lock(roots_mu_);
    roots_ = std::make_shared<const std::vector<CollectionRoot>>(std::move(roots));
    return Status::Ok();
  }

  std::shared_ptr<const std::vector<CollectionRoot>> Roots() {
    std::lock_guard<std::mutex> lock(roots_mu_);
    return roots_;
  }

  WorkerReport Report() {
    std::lock_guard<std::mutex> lock(report_mu_);
    WorkerReport r = report_;
    r.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    return r;
  }

  const std::unique_ptr<PgJobQueue> queue_;
  const std::unique_ptr<Collection> collection_;
  const ClipModel& model_;
  const WorkerOptions options_;
  const std::string name_;
  const FileSources sources_;
  std::mutex roots_mu_;
  std::shared_ptr<const std::vector<CollectionRoot>> roots_;  // guarded by roots_mu_; swapped whole
  Clock::time_point start_;
  std::mutex report_mu_;
  WorkerReport report_;  // guarded by report_mu_
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
  scaleout::Worker worker(std::make_unique<scaleout::PgJobQueue>(client), std::move(collection), model, options);
  return worker.Run(stop, on_batch);
}

}  // namespace imgsearch
