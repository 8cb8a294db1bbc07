// The ingest pipeline: files in, catalog rows and vectors out.
//
//   Submit ──▶ [work] ──▶ decode pool (read, hash, decode, preprocess)
//          ──▶ [pixels] ──▶ encoder (batches by size or deadline)
//          ──▶ [writes] ──▶ writer (one transaction per batch)
//
// Each [queue] is bounded, so a burst makes Submit wait instead of growing memory. Every submitted
// file ends in exactly one outcome: written (indexed, or failed with a reason), removed (it is no
// longer an image), or dropped because it changed or vanished after it was read (whoever changed
// it submits it again).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/bounded_queue.h"
#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/ingest.h"
#include "ingest/scanner.h"

namespace imgsearch::ingest {

// XXH3-128 of a file's bytes, as hex: the identity of its content.
std::string ContentHash(std::span<const uint8_t> bytes);

// One file to bring into the collection.
struct WorkItem {
  FileInfo file;                        // as scanned
  std::optional<ImageRecord> existing;  // the catalog's record for this path, if any
  std::string hash;                     // content hash when the caller already read the file
  bool moved = false;                   // the catalog row was just moved here (a rename)
};

struct PipelineOptions {
  DecodeOptions decode;
  int batch_size = 32;
  int decode_threads = 0;                         // 0: one per core
  std::chrono::milliseconds batch_deadline{100};  // a partial batch waits at most this long
};

// The pipeline settings of a sync or watch.
PipelineOptions PipelineOptionsOf(const SyncOptions& options);

class Pipeline {
 public:
  Pipeline(const ClipModel& model, Collection* collection, const PipelineOptions& options);
  ~Pipeline();  // drains and stops
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Queues a file, waiting while the pipeline is full. A file already in flight with the same
  // size and mtime is not queued twice. False once the pipeline has stopped (on a write error).
  bool Submit(WorkItem item);
  // Waits until everything submitted so far has reached its outcome.
  void Flush();
  // The first error that stopped the pipeline (a failed write), or Ok.
  Status status() const;

  // Held by whoever compares the catalog with the disk while the writer commits, so a commit
  // never lands between the comparison and the changes made from it.
  std::mutex& catalog_mutex() { return catalog_mu_; }

  // Counters since construction.
  void AddTo(SyncReport* report) const;
  PipelineStatus Snapshot() const;

 private:
  struct Decoded;
  struct Write;

  void DecodeLoop();
  void EncodeLoop();
  void WriteLoop();
  void Encode(std::vector<Decoded>& batch);
  void Finish(const std::string& path, int64_t n = 1);
  void Fail(Status status);

  const ClipModel& model_;
  Collection* collection_;
  const PipelineOptions options_;

  BoundedQueue<WorkItem> work_;
  BoundedQueue<Decoded> pixels_;
  BoundedQueue<Write> writes_;
  std::vector<std::thread> decoders_;
  std::thread encoder_, writer_;
  std::atomic<int> decoders_left_{0};

  std::mutex catalog_mu_;

  mutable std::mutex mu_;  // guards what follows
  std::condition_variable idle_;
  std::map<std::string, std::pair<int64_t, int64_t>> in_flight_;  // path → size, mtime
  int64_t submitted_ = 0, finished_ = 0;
  Status status_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, int64_t>> recent_;  // (when, embedded so far)

  std::atomic<int64_t> added_{0}, updated_{0}, failed_{0}, embedded_{0}, removed_{0}, dropped_{0};
  std::atomic<int64_t> decode_ns_{0}, encode_ns_{0}, write_ns_{0};
  mutable std::mutex failures_mu_;
  std::vector<std::pair<std::string, std::string>> failures_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace imgsearch::ingest
