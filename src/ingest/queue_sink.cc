// The scale-out sink: new and changed files become jobs that workers embed.
#include "ingest/pipeline.h"

namespace imgsearch::ingest {

namespace {
constexpr size_t kEnqueueBatch = 256;
}  // namespace

bool QueueSink::Submit(WorkItem item) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!status_.ok()) return false;
  pending_.push_back({std::move(item.file.path), item.file.size_bytes, item.file.mtime_ns});
  if (pending_.size() >= kEnqueueBatch) status_ = EnqueueLocked();
  return status_.ok();
}

void QueueSink::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  if (status_.ok()) status_ = EnqueueLocked();
}

Status QueueSink::EnqueueLocked() {
  if (pending_.empty()) return Status::Ok();
  RETURN_IF_ERROR(queue_->Enqueue(pending_));
  queued_ += static_cast<int64_t>(pending_.size());
  pending_.clear();
  return Status::Ok();
}

Status QueueSink::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void QueueSink::AddTo(SyncReport* report) const {
  std::lock_guard<std::mutex> lock(mu_);
  report->queued += queued_;
}

PipelineStats QueueSink::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  PipelineStats s;
  s.queued = static_cast<int64_t>(pending_.size());
  s.in_flight = s.queued;
  s.done = queued_;
  return s;
}

}  // namespace imgsearch::ingest
