// The ingest pipeline: files in, catalog rows and vectors out.
//
//   source ──Submit──▶ [work] ──▶ decode pool (read, hash, decode, preprocess; a video's frames)
//          ──▶ [pixels] ──▶ encoder (batches by size or deadline)
//          ──▶ [writes] ──▶ writer (one transaction per batch)
//
// A video goes through in parts of at most batch_size frames, so that a long one never holds more
// than a batch of frames in memory: the decoder hands each part on as soon as it is sampled, and
// the writer joins a video's parts into one write when its last part arrives.
//
// Each [queue] is bounded, so a burst makes Submit wait instead of growing memory. Every submitted
// file ends in exactly one outcome: written (indexed, or failed with a reason), removed (it is no
// longer an image), dropped because it changed or vanished after it was read (whoever changed it
// submits it again), or handed back to be tried later (its storage could not be reached).
//
// Two things are pluggable, so one pipeline serves both deployments: how a file is read (the local
// filesystem; a worker's shares and URLs) and where results go (the collection; in scale-out, the
// collection and the jobs' completion in one transaction). The sources differ more and stay
// outside: the scanner, watcher and reconciler submit locally; a worker submits the jobs it claims.
#pragma once

#include <any>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
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
#include "base/file.h"
#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/ingest.h"
#include "imgsearch/video.h"
#include "ingest/scanner.h"

namespace imgsearch::ingest {

// One file to bring into the collection.
struct WorkItem {
  FileInfo file;                        // as scanned
  std::optional<ImageRecord> existing;  // the catalog's record for this path, if any
  bool look_up_existing = false;        // the source does not know it: PrepareFile asks the collection
  std::string hash;                     // content hash when the caller already read the file
  bool moved = false;                   // the catalog row was just moved here (a rename)
  std::string fail_unread;              // not empty: record the file as failed for this reason, unread
  std::any token;                       // the source's, handed to the writer with the outcome (a job)
};

// A file's bytes as read for ingestion, with its size and mtime taken right before reading.
struct FileContent {
  FileInfo stat;
  std::vector<uint8_t> bytes;
  // Set when `bytes` holds only the file's first kDetectBytes: a video, read where it lies as
  // needed rather than all into memory, through this descriptor (the file that was checked).
  std::shared_ptr<const RegularFile> file;
};
// Whether `content` is a video's (read where it lies, or whole: from a worker's HTTP share), and
// where the video's bytes are then.
bool IsVideo(const FileContent& content);
VideoSource VideoSourceOf(const FileContent& content);
// Reads a file for ingestion: kNotFound when it is gone, kUnavailable when its storage cannot be
// reached now (the file is then tried again later, not recorded as failed).
using FileReader = std::function<Result<FileContent>(const WorkItem& item)>;
// Reads from the local filesystem: the whole file, or a video's first bytes and its path.
Result<FileContent> ReadLocalFile(const std::string& path);

// What reading one file leads to.
struct PreparedFile {
  // kRemove: no longer an image; kDrop: gone, or changed since it was read; kRetry: try again later.
  enum Kind { kUpsert, kRemove, kDrop, kRetry } kind = kUpsert;
  ImageUpsert upsert;      // record.path names the file for every kind
  bool was_known = false;  // the catalog had a row for the path
  bool moved = false;      // counted as a move by the reconciler already
  // The model's input (Preprocessing::input_floats() per image; a video: per frame, the frames'
  // times in upsert.record.frame_times); empty: nothing to embed.
  std::vector<float> pixels;
  // False for a part of a video that more parts follow (pixels and frame times only); the writer
  // joins them with the last part, which carries the record.
  bool last_part = true;
  bool after_parts = false;  // the last part of a video whose earlier parts were handed on
  uint64_t video = 0;        // a video's parts share this number, unique within the pipeline
  bool embedded = false;     // went through the model
  Status retry;              // kRetry: why
  std::any token;            // WorkItem::token
};

// How files are read into the model's input.
struct PrepareOptions {
  DecodeOptions decode;
  VideoOptions video;
  int frames_per_part = 32;  // a video's frames are handed on in parts of at most this many
  // Set: the pipeline is stopping, and a video being sampled is handed back (kRetry) soon, also in
  // the middle of a GOP (VideoOptions::cancel).
  const std::atomic<bool>* stop = nullptr;
};

// Reads, hashes and decodes one file and prepares its pixels for a model that sees images through
// `pre`: the whole per-file half of ingestion (the other half is the model and the write). A file
// whose content is unchanged, or already embedded elsewhere in `collection`, gets no pixels. A
// video's frames are sampled; every full part is passed to `emit_part` as it is made, and the
// returned file is the video's last part.
PreparedFile PrepareFile(const WorkItem& item, const FileReader& read, const PrepareOptions& options,
                         const Preprocessing& pre, Collection* collection,
                         const std::function<void(PreparedFile)>& emit_part);

// Runs the model once over the files' pixels (an image each, or a part of a video's frames): each
// gets its embedding, or (when the model fails) becomes a failure with the reason. The pixels are
// released. Returns the model's status.
Status EmbedPrepared(const ClipModel& model, std::span<PreparedFile* const> files);

// Where the pipeline's results go: one call per batch, in one transaction. It may turn a file into
// kDrop (changed since it was read; superseded) or kRetry; every other kind is its outcome once
// Write returns Ok. An error stops the pipeline.
class ResultWriter {
 public:
  virtual ~ResultWriter() = default;
  virtual Status Write(std::span<PreparedFile> batch) = 0;
};

// Writes into the collection, skipping files that changed on disk since they were read (a newer
// event brings them back) and files to retry (their rows stay as they are). Holds `catalog_mu`
// while it checks and writes (see Sink::catalog_mutex).
class CollectionWriter final : public ResultWriter {
 public:
  CollectionWriter(Collection* collection, std::mutex* catalog_mu) : collection_(collection), catalog_mu_(catalog_mu) {}
  Status Write(std::span<PreparedFile> batch) override;

 private:
  Collection* collection_;
  std::mutex* catalog_mu_;
};

struct PipelineOptions {
  DecodeOptions decode;
  VideoOptions video;
  int batch_size = 32;
  int decode_threads = 0;                         // 0: one per core
  std::chrono::milliseconds batch_deadline{100};  // a partial batch waits at most this long
  FileReader read;                                // empty: the local filesystem
  ResultWriter* writer = nullptr;                 // null: a CollectionWriter into the pipeline's collection
  // Called on the writer thread after each batch is written (progress reports).
  std::function<void()> on_written;
};

// The pipeline settings of a sync or watch.
PipelineOptions PipelineOptionsOf(const SyncOptions& options);

// Where the reconciler sends new and changed files: the pipeline below (embedded in this process)
// or a job queue (embedded by workers).
class Sink {
 public:
  virtual ~Sink() = default;
  // Queues a file, waiting while the sink is full. A file already in flight with the same size
  // and mtime is not queued twice. False once the sink has stopped (on a write error).
  virtual bool Submit(WorkItem item) = 0;
  // The caller has submitted all it has for now: a sink that batches sends what it holds.
  virtual void SubmitDone() {}
  // Waits until everything submitted so far has reached its outcome.
  virtual void Flush() = 0;
  // The first error that stopped the sink (a failed write), or Ok.
  virtual Status status() const = 0;
  // Stopping: a write being retried (the disk full, the database down) gives up instead of waiting
  // for the cure, so that Flush returns; what it held is found again by the next reconciliation.
  virtual void StopRetrying() {}
  // Counters since construction.
  virtual void AddTo(SyncReport* report) const = 0;
  virtual PipelineStats Snapshot() const = 0;

  // Held by whoever compares the catalog with the disk while the sink writes, so a write never
  // lands between the comparison and the changes made from it.
  std::mutex& catalog_mutex() { return catalog_mu_; }

 protected:
  std::mutex catalog_mu_;
};

// The sink `options` ask for: a QueueSink when options.queue is set, else a Pipeline.
std::unique_ptr<Sink> MakeSink(const ClipModel& model, Collection* collection, const SyncOptions& options);

// Turns files into jobs for workers (scale-out mode), in batches.
class QueueSink final : public Sink {
 public:
  explicit QueueSink(JobQueue* queue) : queue_(queue) {}
  ~QueueSink() override { Flush(); }

  bool Submit(WorkItem item) override;
  void SubmitDone() override { Flush(); }
  void Flush() override;
  Status status() const override;
  void AddTo(SyncReport* report) const override;
  PipelineStats Snapshot() const override;

 private:
  Status EnqueueLocked();

  JobQueue* queue_;
  mutable std::mutex mu_;  // guards what follows
  std::vector<FileJob> pending_;
  int64_t queued_ = 0;
  Status status_;
};

class Pipeline final : public Sink {
 public:
  Pipeline(const ClipModel& model, Collection* collection, const PipelineOptions& options);
  ~Pipeline() override;  // drains and stops
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  bool Submit(WorkItem item) override;
  void Flush() override;
  Status status() const override;
  void StopRetrying() override { closing_ = true; }
  void AddTo(SyncReport* report) const override;
  PipelineStats Snapshot() const override;

 private:
  void DecodeLoop();
  void EncodeLoop();
  void WriteLoop();
  void Encode(std::vector<PreparedFile>& batch);
  void Finish(const std::string& path, int64_t n = 1);
  // The images (a video's part counts its frames) between the decoders and the encoder are at most
  // twice a batch: a decoder waits here before handing more on, so that a long video's parts
  // cannot pile up in memory while the model is busy.
  void ReserveImages(size_t n);
  void ReleaseImages(size_t n);
  size_t ImagesIn(const PreparedFile& file) const;
  // The writer's side of a video's parts: keeps a part that more follow (nullopt), or returns the
  // last part joined with the ones before it.
  std::optional<PreparedFile> JoinParts(PreparedFile file);
  void Fail(Status status);

  const ClipModel& model_;
  Collection* collection_;
  const PipelineOptions options_;

  BoundedQueue<WorkItem> work_;
  BoundedQueue<PreparedFile> pixels_;
  BoundedQueue<PreparedFile> writes_;
  std::vector<std::thread> decoders_;
  std::thread encoder_, writer_;
  std::atomic<int> decoders_left_{0};
  std::mutex images_mu_;
  std::condition_variable images_cv_;
  size_t images_waiting_ = 0;  // guarded by images_mu_

  mutable std::mutex mu_;  // guards what follows
  std::condition_variable idle_;
  std::map<std::string, std::pair<int64_t, int64_t>> in_flight_;  // path → size, mtime
  int64_t submitted_ = 0, finished_ = 0;
  Status status_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, int64_t>> recent_;  // (when, embedded so far)

  // Writes `batch`, retrying with a growing pause while the failure is one that time can cure (the
  // disk full, the database unreachable) and the pipeline is not closing.
  Status WriteWithRetries(std::span<PreparedFile> batch);

  std::atomic<bool> closing_{false};
  std::string write_error_;                   // guarded by mu_
  std::unique_ptr<ResultWriter> own_writer_;  // when options_.writer is null
  ResultWriter* result_writer_;
  std::atomic<int64_t> added_{0}, updated_{0}, failed_{0}, embedded_{0}, removed_{0}, dropped_{0}, retried_{0};
  std::atomic<int64_t> decode_ns_{0}, encode_ns_{0}, write_ns_{0};
  mutable std::mutex failures_mu_;
  std::vector<std::pair<std::string, std::string>> failures_;
  std::map<uint64_t, PreparedFile>
      parts_;  // videos' parts waiting for their last, by PreparedFile::video (writer thread only)
  std::atomic<uint64_t> videos_{0};  // numbers PreparedFile::video
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace imgsearch::ingest
