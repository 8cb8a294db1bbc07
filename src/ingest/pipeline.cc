#include "ingest/pipeline.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>

#include "base/file.h"
#include "base/hash.h"

namespace imgsearch::ingest {

namespace {

using Clock = std::chrono::steady_clock;

int64_t NanosSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count();
}

ImageRecord BaseRecord(const FileInfo& f, const std::string& hash) {
  ImageRecord r;
  r.path = f.path;
  r.size_bytes = f.size_bytes;
  r.mtime_ns = f.mtime_ns;
  r.content_hash = hash;
  return r;
}

}  // namespace

std::unique_ptr<Sink> MakeSink(const ClipModel& model, Collection* collection, const SyncOptions& options) {
  if (options.queue != nullptr) return std::make_unique<QueueSink>(options.queue);
  return std::make_unique<Pipeline>(model, collection, PipelineOptionsOf(options));
}

PipelineOptions PipelineOptionsOf(const SyncOptions& o) {
  PipelineOptions p;
  p.decode = o.decode;
  p.video = o.video;
  p.batch_size = o.batch_size;
  p.decode_threads = o.decode_threads;
  return p;
}

Pipeline::Pipeline(const ClipModel& model, Collection* collection, const PipelineOptions& options)
    : model_(model),
      collection_(collection),
      options_(options),
      work_(static_cast<size_t>(std::max(64, 2 * options.batch_size))),
      pixels_(static_cast<size_t>(2 * std::max(1, options.batch_size))),
      writes_(static_cast<size_t>(4 * std::max(1, options.batch_size))) {
  if (options_.writer == nullptr) own_writer_ = std::make_unique<CollectionWriter>(collection_, &catalog_mu_);
  result_writer_ = options_.writer != nullptr ? options_.writer : own_writer_.get();
  int n = options_.decode_threads;
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  decoders_left_ = n;
  for (int i = 0; i < n; ++i) decoders_.emplace_back([this] { DecodeLoop(); });
  encoder_ = std::thread([this] { EncodeLoop(); });
  writer_ = std::thread([this] { WriteLoop(); });
}

Pipeline::~Pipeline() {
  closing_ = true;  // a write being retried gives up: what it held is found again by the next reconciliation
  work_.Close();
  for (std::thread& t : decoders_) t.join();
  encoder_.join();
  writer_.join();
}

bool Pipeline::Submit(WorkItem item) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!status_.ok()) return false;
    auto it = in_flight_.find(item.file.path);
    const std::pair<int64_t, int64_t> key{item.file.size_bytes, item.file.mtime_ns};
    if (it != in_flight_.end() && it->second == key && !item.moved) return true;  // already on its way
    in_flight_[item.file.path] = key;
    ++submitted_;
  }
  const std::string path = item.file.path;
  if (!work_.Push(std::move(item))) {
    Finish(path);
    return false;
  }
  return true;
}

void Pipeline::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_.wait(lock, [&] { return finished_ == submitted_; });
}

Status Pipeline::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void Pipeline::Finish(const std::string& path, int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_.erase(path);
  finished_ += n;
  if (finished_ == submitted_) idle_.notify_all();
}

void Pipeline::Fail(Status status) {
  spdlog::error("ingest stopped: {}", status.ToString());
  std::lock_guard<std::mutex> lock(mu_);
  if (status_.ok()) status_ = std::move(status);
}

Result<FileContent> ReadLocalFile(const std::string& path) {
  FileContent content;
  // Stat right before reading: the writer compares with this to catch later changes.
  std::optional<FileInfo> now = StatFile(path);
  if (!now) return Status::NotFound(path + " is gone");
  content.stat = std::move(*now);
  ASSIGN_OR_RETURN(RegularFile file, RegularFile::Open(path));
  ASSIGN_OR_RETURN(content.bytes, file.ReadAt(0, kDetectBytes));
  if (IsVideoFormat(DetectImageFormat(content.bytes))) {
    content.file = std::make_shared<const RegularFile>(std::move(file));
  } else if (content.bytes.size() == kDetectBytes) {
    // The rest from the same descriptor: the file that was checked, even if the name is gone.
    if (file.size() > kMaxFileBytes) {
      return Status::ResourceExhausted("the file is " + std::to_string(file.size()) +
                                       " bytes, more than the limit of " + std::to_string(kMaxFileBytes));
    }
    ASSIGN_OR_RETURN(content.bytes, file.ReadAt(0, file.size()));
  }
  return content;
}

bool IsVideo(const FileContent& content) {
  return content.file != nullptr || IsVideoFormat(DetectImageFormat(content.bytes));
}

VideoSource VideoSourceOf(const FileContent& content) {
  return content.file != nullptr ? VideoSource{.path = content.file->DescriptorPath()}
                                 : VideoSource{.bytes = content.bytes};
}

namespace {

// A video's frames, sampled into the model's input: `out` (the video's record) becomes its last
// part; the parts before it go to `emit_part`.
void PrepareVideo(const FileContent& content, ImageFormat format, const PrepareOptions& options,
                  const Preprocessing& pre, Collection* collection, const std::function<void(PreparedFile)>& emit_part,
                  PreparedFile& out) {
  const VideoSource source = VideoSourceOf(content);
  VideoOptions video = options.video;
  video.max_pixels = options.decode.max_pixels;
  video.cancel = options.stop;
  // Frames reach the model through the same resize as photos; sampling them at twice the model's
  // input (as reduced decoding does for JPEGs) keeps that resize's averaging and is far cheaper.
  video.min_side = 2 * pre.size;
  ImageRecord& r = out.upsert.record;
  auto describe = [&](const VideoInfo& info) {
    r.width = info.width;
    r.height = info.height;
    r.format = ImageFormatName(format);
    r.capture_time = info.capture_time;
    r.status = ImageStatus::kIndexed;
  };
  // No video stream: nothing to index (audio in a video container). Stopping: tried again later.
  auto fail_video = [&](const Status& why) {
    if (why.code() == StatusCode::kNotFound) {
      out.kind = out.was_known ? PreparedFile::kRemove : PreparedFile::kDrop;
    } else if (why.code() == StatusCode::kUnavailable) {
      out.kind = PreparedFile::kRetry;
      out.retry = why;
    } else {
      r.status = ImageStatus::kFailed;
      r.error = why.message();
    }
  };
  Result<bool> known_content = collection->HasEmbeddingFor(r.content_hash);
  if (known_content.ok() && *known_content) {  // a copy of a video already embedded
    Result<VideoInfo> info = ProbeVideo(source, video);
    if (!info.ok()) {
      fail_video(info.status());
      return;
    }
    describe(*info);
    return;
  }
  const auto per_part = static_cast<size_t>(std::max(1, options.frames_per_part));
  const auto floats = static_cast<size_t>(pre.input_floats());
  PreparedFile part;
  auto start_part = [&] {
    part = PreparedFile();
    part.upsert.record.path = r.path;
    part.last_part = false;
  };
  start_part();
  Result<VideoInfo> info = SampleVideo(source, video, [&](VideoFrame frame) -> Status {
    if (options.stop != nullptr && *options.stop) return Status::Unavailable("stopping before it was read whole");
    part.upsert.record.frame_times.push_back(static_cast<float>(frame.time_s));
    part.pixels.resize(part.pixels.size() + floats);
    Normalize(ResizeForModel(frame.image, pre), pre, part.pixels.data() + part.pixels.size() - floats);
    if (part.upsert.record.frame_times.size() == per_part) {
      emit_part(std::move(part));
      out.after_parts = true;
      start_part();
    }
    return Status::Ok();
  });
  if (!info.ok()) {  // the parts handed on already are dropped with this outcome
    fail_video(info.status());
    return;
  }
  describe(*info);
  out.pixels = std::move(part.pixels);
  r.frame_times = std::move(part.upsert.record.frame_times);
}

}  // namespace

PreparedFile PrepareFile(const WorkItem& item, const FileReader& read, const PrepareOptions& options,
                         const Preprocessing& pre, Collection* collection,
                         const std::function<void(PreparedFile)>& emit_part) {
  PreparedFile out;
  out.upsert.record = BaseRecord(item.file, item.hash);
  out.moved = item.moved;
  out.token = item.token;
  auto retry = [&](Status why) {
    out.kind = PreparedFile::kRetry;
    out.retry = std::move(why);
    return std::move(out);
  };
  std::optional<ImageRecord> old = item.existing;
  if (item.look_up_existing) {
    Result<std::optional<ImageRecord>> known = collection->GetByPath(item.file.path);
    if (!known.ok()) return retry(known.status());
    old = std::move(*known);
  }
  out.was_known = old.has_value();
  auto same_content = [&](const std::string& hash) {
    return old && old->content_hash == hash && old->status == ImageStatus::kIndexed;
  };
  auto keep_description = [&] {
    out.upsert.record.width = old->width;
    out.upsert.record.height = old->height;
    out.upsert.record.format = old->format;
    out.upsert.record.capture_time = old->capture_time;
  };
  auto fail = [&](std::string why) {
    out.upsert.record.status = ImageStatus::kFailed;
    out.upsert.record.error = std::move(why);
    return std::move(out);
  };

  if (!item.fail_unread.empty()) return fail(item.fail_unread);
  if (!item.hash.empty() && same_content(item.hash)) {
    keep_description();  // renamed or touched: nothing to read
    return out;
  }
  Result<FileContent> content = read(item);
  if (!content.ok()) {
    if (content.status().code() == StatusCode::kNotFound) {
      out.kind = PreparedFile::kDrop;  // gone already; its removal is someone else's event
      return out;
    }
    if (content.status().code() == StatusCode::kUnavailable) return retry(content.status());
    return fail(content.status().message());
  }
  out.upsert.record.size_bytes = content->stat.size_bytes;
  out.upsert.record.mtime_ns = content->stat.mtime_ns;
  std::vector<uint8_t>& bytes = content->bytes;
  std::string hash;
  if (content->file == nullptr) {
    hash = ContentHash(bytes);
  } else {
    Result<std::string> streamed = ContentHashOf(*content->file, bytes);
    if (!streamed.ok()) return fail(streamed.status().message());
    hash = std::move(*streamed);
  }
  out.upsert.record.content_hash = hash;
  const ImageFormat format = DetectImageFormat(bytes);
  if (!bytes.empty() && format == ImageFormat::kUnknown) {
    out.kind = out.was_known ? PreparedFile::kRemove : PreparedFile::kDrop;  // not an image (any more)
    return out;
  }
  if (same_content(hash)) {
    keep_description();
    return out;
  }
  if (IsVideoFormat(format)) {
    PrepareVideo(*content, format, options, pre, collection, emit_part, out);
    return out;
  }
  Result<DecodedImage> decoded = DecodeImage(bytes, ForModelInput(options.decode, pre));
  bytes = {};
  if (!decoded.ok()) return fail(decoded.status().message());
  ImageRecord& r = out.upsert.record;
  r.width = decoded->width;
  r.height = decoded->height;
  r.format = ImageFormatName(decoded->format);
  r.capture_time = decoded->capture_time;
  r.status = ImageStatus::kIndexed;
  Result<bool> known_content = collection->HasEmbeddingFor(hash);
  if (known_content.ok() && *known_content) return out;  // a copy of something already embedded
  out.pixels.resize(static_cast<size_t>(pre.input_floats()));
  Normalize(ResizeForModel(decoded->image, pre), pre, out.pixels.data());
  return out;
}

void Pipeline::DecodeLoop() {
  const Preprocessing& pre = model_.preprocessing();
  const FileReader read =
      options_.read ? options_.read : [](const WorkItem& item) { return ReadLocalFile(item.file.path); };
  const PrepareOptions prepare{.decode = options_.decode,
                               .video = options_.video,
                               .frames_per_part = std::max(1, options_.batch_size),
                               .stop = &closing_};
  while (std::optional<WorkItem> item = work_.Pop()) {
    const auto t0 = Clock::now();
    // Parts are told apart by their number, not their path: the same path may be in flight twice
    // (a file that grew while it was read is queued again).
    const uint64_t video = ++videos_;
    const auto emit_part = [&](PreparedFile part) {
      part.video = video;
      ReserveImages(ImagesIn(part));
      pixels_.Push(std::move(part));
    };
    PreparedFile p = PrepareFile(*item, read, prepare, pre, collection_, emit_part);
    p.video = video;
    decode_ns_ += NanosSince(t0);
    // A video's last part follows its earlier parts through the encoder, pixels or not, so that
    // it reaches the writer after them.
    if (!p.pixels.empty() || p.after_parts) {
      ReserveImages(ImagesIn(p));
      pixels_.Push(std::move(p));
    } else {
      writes_.Push(std::move(p));
    }
  }
  if (--decoders_left_ == 0) pixels_.Close();
}

void Pipeline::EncodeLoop() {
  std::vector<PreparedFile> batch;
  const size_t batch_size = static_cast<size_t>(std::max(1, options_.batch_size));
  size_t images = 0;  // in `batch` (a video's part counts its frames)
  while (true) {
    std::optional<PreparedFile> d;
    if (batch.empty()) {
      d = pixels_.Pop();
      if (!d) break;  // closed and drained
    } else {
      d = pixels_.PopUntil(Clock::now() + options_.batch_deadline);
      if (!d) {
        Encode(batch);  // deadline passed (or the queue closed) with a partial batch
        images = 0;
        if (pixels_.closed()) break;
        continue;
      }
    }
    const size_t n = ImagesIn(*d);
    if (!batch.empty() && images + n > batch_size) {
      Encode(batch);
      images = 0;
    }
    batch.push_back(std::move(*d));
    images += n;
    if (images >= batch_size) {
      Encode(batch);
      images = 0;
    }
  }
  if (!batch.empty()) Encode(batch);
  writes_.Close();
}

Status EmbedPrepared(const ClipModel& model, std::span<PreparedFile* const> files) {
  const auto image_floats = static_cast<size_t>(model.preprocessing().input_floats());
  const auto dim = static_cast<size_t>(model.embedding_dim());
  std::vector<size_t> first(files.size() + 1, 0);  // each file's first image in the batch
  for (size_t i = 0; i < files.size(); ++i) first[i + 1] = first[i] + files[i]->pixels.size() / image_floats;
  const size_t images = first.back();
  if (images == 0) return Status::Ok();
  std::vector<float> pixels(images * image_floats);
  for (size_t i = 0; i < files.size(); ++i) {
    std::copy(files[i]->pixels.begin(), files[i]->pixels.end(), pixels.begin() + first[i] * image_floats);
    files[i]->pixels = {};
  }
  std::vector<float> out(images * dim);
  const Status st = model.EncodeImages(pixels.data(), static_cast<int>(images), out.data());
  for (size_t i = 0; i < files.size(); ++i) {
    ImageUpsert& u = files[i]->upsert;
    if (st.ok()) {
      u.embedding.assign(out.begin() + first[i] * dim, out.begin() + first[i + 1] * dim);
    } else {
      u.record.status = ImageStatus::kFailed;
      u.record.error = "the model failed: " + st.message();
    }
  }
  return st;
}

size_t Pipeline::ImagesIn(const PreparedFile& file) const {
  return file.pixels.size() / static_cast<size_t>(model_.preprocessing().input_floats());
}

void Pipeline::ReserveImages(size_t n) {
  const size_t cap = 2 * static_cast<size_t>(std::max(1, options_.batch_size));
  std::unique_lock<std::mutex> lock(images_mu_);
  // Alone, a part may hold more than the cap (a batch of frames never does); then it waits for none.
  images_cv_.wait(lock, [&] { return images_waiting_ == 0 || images_waiting_ + n <= cap; });
  images_waiting_ += n;
}

void Pipeline::ReleaseImages(size_t n) {
  {
    std::lock_guard<std::mutex> lock(images_mu_);
    images_waiting_ -= n;
  }
  images_cv_.notify_all();
}

void Pipeline::Encode(std::vector<PreparedFile>& batch) {
  if (batch.empty()) return;
  const auto t0 = Clock::now();
  std::vector<PreparedFile*> files;
  size_t images = 0;
  for (PreparedFile& f : batch) {
    files.push_back(&f);
    images += ImagesIn(f);
  }
  const Status st = EmbedPrepared(model_, files);
  ReleaseImages(images);
  encode_ns_ += NanosSince(t0);
  for (PreparedFile& f : batch) {
    f.embedded = st.ok();
    writes_.Push(std::move(f));
  }
  batch.clear();
}

Status CollectionWriter::Write(std::span<PreparedFile> batch) {
  std::vector<ImageUpsert> upserts;
  std::vector<std::string> removals;
  std::lock_guard<std::mutex> lock(*catalog_mu_);
  for (PreparedFile& f : batch) {
    if (f.kind == PreparedFile::kRemove) {
      removals.push_back(f.upsert.record.path);
    } else if (f.kind == PreparedFile::kUpsert) {
      // The file must still be what was read; otherwise a newer event brings it back.
      std::optional<FileInfo> now = StatFile(f.upsert.record.path);
      if (!now || now->size_bytes != f.upsert.record.size_bytes || now->mtime_ns != f.upsert.record.mtime_ns) {
        f.kind = PreparedFile::kDrop;
        continue;
      }
      // A copy of content embedded elsewhere, whose vector went with that image meanwhile (an
      // earlier batch removed or changed it): not embedded now; the next reconciliation does it.
      if (f.upsert.record.status == ImageStatus::kIndexed && f.upsert.embedding.empty()) {
        Result<bool> known = collection_->HasEmbeddingFor(f.upsert.record.content_hash);
        if (known.ok() && !*known) {
          f.kind = PreparedFile::kRetry;
          f.retry = Status::Unavailable("the image it copies was removed meanwhile");
          continue;
        }
      }
      upserts.push_back(f.upsert);
    }
  }
  if (!upserts.empty()) RETURN_IF_ERROR(collection_->Upsert(upserts).status());
  if (!removals.empty()) RETURN_IF_ERROR(collection_->Remove(removals).status());
  return Status::Ok();
}

Status Pipeline::WriteWithRetries(std::span<PreparedFile> batch) {
  Status st = result_writer_->Write(batch);
  auto pause = std::chrono::milliseconds(500);
  while (!st.ok() && !closing_ &&
         (st.code() == StatusCode::kIoError || st.code() == StatusCode::kResourceExhausted ||
          st.code() == StatusCode::kUnavailable)) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (write_error_ != st.message()) spdlog::warn("writing failed ({}); retrying until it succeeds", st.message());
      write_error_ = st.message();
    }
    for (auto slept = std::chrono::milliseconds(0); slept < pause && !closing_;
         slept += std::chrono::milliseconds(50)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    pause = std::min(pause * 2, std::chrono::milliseconds(8000));
    st = result_writer_->Write(batch);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (st.ok() && !write_error_.empty()) {
    spdlog::info("writing works again");
    write_error_.clear();
  }
  return st;
}

std::optional<PreparedFile> Pipeline::JoinParts(PreparedFile file) {
  auto it = parts_.find(file.video);
  if (!file.last_part) {
    if (it == parts_.end()) {
      parts_.emplace(file.video, std::move(file));
      return std::nullopt;
    }
    PreparedFile& joined = it->second;
    ImageUpsert& u = joined.upsert;
    if (file.upsert.record.status == ImageStatus::kFailed && u.record.status != ImageStatus::kFailed) {
      u.record.status = ImageStatus::kFailed;  // the model failed on this part
      u.record.error = file.upsert.record.error;
    }
    u.embedding.insert(u.embedding.end(), file.upsert.embedding.begin(), file.upsert.embedding.end());
    u.record.frame_times.insert(u.record.frame_times.end(), file.upsert.record.frame_times.begin(),
                                file.upsert.record.frame_times.end());
    joined.embedded = joined.embedded && file.embedded;
    return std::nullopt;
  }
  if (it == parts_.end()) return file;
  PreparedFile before = std::move(it->second);
  parts_.erase(it);
  ImageRecord& r = file.upsert.record;
  if (r.status != ImageStatus::kIndexed) return file;  // the video failed: its parts go with it
  if (before.upsert.record.status == ImageStatus::kFailed) {
    r.status = ImageStatus::kFailed;
    r.error = before.upsert.record.error;
    r.frame_times.clear();
    file.upsert.embedding.clear();
    return file;
  }
  file.upsert.embedding.insert(file.upsert.embedding.begin(), before.upsert.embedding.begin(),
                               before.upsert.embedding.end());
  r.frame_times.insert(r.frame_times.begin(), before.upsert.record.frame_times.begin(),
                       before.upsert.record.frame_times.end());
  file.embedded = before.embedded && file.embedded;
  return file;
}

void Pipeline::WriteLoop() {
  while (std::optional<PreparedFile> first = writes_.Pop()) {
    // Take whatever else is ready: one transaction for all of it (a video once all its parts came).
    std::vector<PreparedFile> batch;
    if (std::optional<PreparedFile> whole = JoinParts(std::move(*first))) batch.push_back(std::move(*whole));
    while (batch.size() < 256) {
      std::optional<PreparedFile> more = writes_.TryPop();
      if (!more) break;
      if (std::optional<PreparedFile> whole = JoinParts(std::move(*more))) batch.push_back(std::move(*whole));
    }
    if (batch.empty()) continue;
    const auto t0 = Clock::now();
    bool ok = status().ok();
    if (ok) {
      Status st = WriteWithRetries(batch);
      ok = st.ok();
      if (!ok) Fail(st);
    }
    if (ok) {
      for (const PreparedFile& f : batch) {
        switch (f.kind) {
          case PreparedFile::kDrop: ++dropped_; break;
          case PreparedFile::kRetry:
            ++retried_;
            spdlog::warn("{}: {}; will try again later", f.upsert.record.path, f.retry.message());
            break;
          case PreparedFile::kRemove: ++removed_; break;
          case PreparedFile::kUpsert:
            if (f.upsert.record.status == ImageStatus::kFailed) {
              ++failed_;
              std::lock_guard<std::mutex> lock(failures_mu_);
              failures_.emplace_back(f.upsert.record.path, f.upsert.record.error);
            } else if (!f.moved) {
              ++(f.was_known ? updated_ : added_);
            }
            if (f.embedded) ++embedded_;
            break;
        }
      }
    }
    write_ns_ += NanosSince(t0);
    {
      std::lock_guard<std::mutex> lock(mu_);
      const auto now = Clock::now();
      recent_.emplace_back(now, embedded_.load());
      while (recent_.size() > 1 && now - recent_.front().first > std::chrono::seconds(10)) recent_.pop_front();
    }
    if (!ok) work_.Close();  // nothing more can be written; let everything drain
    for (const PreparedFile& f : batch) Finish(f.upsert.record.path);
    if (ok && options_.on_written) options_.on_written();
  }
}

void Pipeline::AddTo(SyncReport* report) const {
  report->added += added_;
  report->updated += updated_;
  report->failed += failed_;
  report->embedded += embedded_;
  report->removed += removed_;
  std::lock_guard<std::mutex> lock(failures_mu_);
  report->failures.insert(report->failures.end(), failures_.begin(), failures_.end());
}

PipelineStats Pipeline::Snapshot() const {
  PipelineStats s;
  s.queued = static_cast<int64_t>(work_.size());
  s.decoded = static_cast<int64_t>(pixels_.size());
  s.encoded = static_cast<int64_t>(writes_.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.in_flight = submitted_ - finished_;
    s.write_error = write_error_;
    s.done = finished_;
    // Throughput over the last ten seconds of writes.
    const auto now = Clock::now();
    if (!recent_.empty() && now - recent_.back().first < std::chrono::seconds(10)) {
      const double span = std::chrono::duration<double>(now - recent_.front().first).count();
      if (span > 0.5) s.images_per_s = (recent_.back().second - recent_.front().second) / span;
    }
  }
  s.embedded = embedded_;
  s.failed = failed_;
  s.decode_seconds = decode_ns_ * 1e-9;
  s.encode_seconds = encode_ns_ * 1e-9;
  s.write_seconds = write_ns_ * 1e-9;
  const double up = std::chrono::duration<double>(Clock::now() - start_).count();
  s.uptime_seconds = up;
  return s;
}

}  // namespace imgsearch::ingest
