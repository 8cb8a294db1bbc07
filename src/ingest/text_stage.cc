// The text stage (imgsearch/ingest.h: TextRecognition): a coordinator asks the collection for images
// and videos without text and writes what was read; readers, at a low priority (nice 10), decode
// each picture at the size text recognition wants and read it (a video: the frames that were
// embedded, from one opening of the file), starting none while the process is embedding
// (TextOptions::busy). Writing from the coordinator keeps a low-priority thread from ever holding
// the catalog's write lock while the embedding pipeline waits for it.
#include <sys/resource.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <thread>

#include "imgsearch/ingest.h"
#include "imgsearch/video.h"
#include "ingest/pipeline.h"
#include "ingest/text_stage.h"

namespace imgsearch {

namespace {

using Clock = std::chrono::steady_clock;

// How often the coordinator looks for work when nothing woke it: soon while there is work, less
// and less often while there is none (each look scans the collection for contents without text).
constexpr std::chrono::milliseconds kPoll{2000};
constexpr std::chrono::milliseconds kIdlePoll{30000};
// Texts written per transaction (and at least this often, in seconds).
constexpr size_t kWriteBatch = 16;
constexpr auto kWriteEvery = std::chrono::seconds(2);
// The readers' nice value, and how often a reader held back by the embedding looks again.
constexpr int kReaderNice = 10;
constexpr std::chrono::milliseconds kBusyRecheck{200};
// A picture that could not be read is tried again after this long.
constexpr auto kRetryAfter = std::chrono::minutes(10);
// The rate in Stats is over this long.
constexpr auto kRateWindow = std::chrono::minutes(1);
// The collection's text counts are refreshed at least this often while work remains.
constexpr auto kCountEvery = std::chrono::seconds(10);
// Decoding: a JPEG may be decoded at a reduced scale as long as its shorter side stays this large
// (text recognition scales to TextReaderOptions::max_side anyway).
constexpr int kDecodeMinSide = 1200;

struct Outcome {
  std::string content_hash;
  std::string path;
  Result<RecognizedText> text;
};

class TextStage final : public TextRecognition {
 public:
  TextStage(Collection* collection, TextOptions options, ingest::PathReader read,
            std::vector<std::unique_ptr<TextReader>> readers)
      : collection_(collection), options_(std::move(options)), read_(std::move(read)) {
    for (auto& reader : readers) {
      readers_.emplace_back([this, r = std::move(reader)]() mutable { ReadLoop(std::move(r)); });
    }
    coordinator_ = std::thread([this] { Coordinate(); });
  }

  ~TextStage() override { Stop(); }

  void Wake() override {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
    ++wakes_;
    cv_.notify_all();
  }

  void Stop() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ && !coordinator_.joinable()) return;
      stopping_ = true;
      stop_flag_ = true;
      cv_.notify_all();
    }
    if (coordinator_.joinable()) coordinator_.join();
    for (std::thread& t : readers_) {
      if (t.joinable()) t.join();
    }
  }

  bool Idle() const override {
    std::lock_guard<std::mutex> lock(mu_);
    // Idle only as of a look at the collection begun after the last Wake.
    return jobs_.empty() && busy_ == 0 && outcomes_.empty() && last_pending_ == 0 && looked_after_ == wakes_;
  }

  TextStats Stats() const override {
    TextStats s;
    s.enabled = true;
    s.languages = options_.reader.languages;
    std::lock_guard<std::mutex> lock(mu_);
    s.read = last_read_;
    s.pending = last_pending_;
    s.done = done_;
    s.failed = failed_;
    s.error = error_;
    const auto now = Clock::now();
    int64_t recent = 0;  // of the last minute's reads, which finished_at_ holds (and a few older)
    for (const auto& t : finished_at_) recent += now - t <= kRateWindow ? 1 : 0;
    const double span = std::min(std::chrono::duration<double>(kRateWindow).count(),
                                 std::chrono::duration<double>(now - started_).count());
    s.images_per_s = span > 0 ? static_cast<double>(recent) / span : 0;
    return s;
  }

 private:
  // Finds work, hands it to the readers and writes their results, until stopped.
  void Coordinate() {
    std::vector<ContentText> to_write;
    auto last_write = Clock::now();
    while (true) {
      std::vector<Outcome> outcomes;
      bool want_jobs = false;
      bool stopping = false;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, poll_, [&] {
          return stopping_ || woken_ || !outcomes_.empty() || (jobs_.empty() && busy_ == 0 && refill_);
        });
        stopping = stopping_;
        outcomes.assign(std::make_move_iterator(outcomes_.begin()), std::make_move_iterator(outcomes_.end()));
        outcomes_.clear();
        want_jobs = !stopping && jobs_.size() < readers_.size();
        woken_ = false;
        refill_ = false;
      }
      for (Outcome& o : outcomes) {
        if (o.text.ok()) {
          // In flight until written: a look meanwhile must not hand it out again.
          to_write.push_back({o.content_hash, options_.reader.languages, std::move(*o.text)});
        } else {
          // Tried again after a while (a share not mounted yet, a file being written); a file that
          // vanished is removed by the watcher meanwhile.
          in_flight_.erase(o.content_hash);
          given_up_[o.content_hash] = Clock::now();
          spdlog::warn("text recognition: {}: {}", o.path, o.text.status().message());
        }
      }
      if (!to_write.empty() &&
          (stopping || to_write.size() >= kWriteBatch || Clock::now() - last_write >= kWriteEvery || want_jobs)) {
        if (Status st = collection_->PutTexts(to_write); !st.ok()) {
          // Kept and written with the next batch (the disk full, the database away).
          spdlog::warn("text recognition: could not store {} texts: {}", to_write.size(), st.message());
        } else {
          for (const ContentText& t : to_write) in_flight_.erase(t.content_hash);
          to_write.clear();
        }
        last_write = Clock::now();
      }
      if (stopping) break;
      if (want_jobs) FetchJobs();
    }
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.clear();
  }

  void FetchJobs() {
    std::erase_if(given_up_, [](const auto& entry) { return Clock::now() - entry.second >= kRetryAfter; });
    int64_t wakes = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      wakes = wakes_;
    }
    const int want = static_cast<int>(readers_.size()) * 4;
    const int asked = want + static_cast<int>(in_flight_.size() + given_up_.size());
    Result<std::vector<TextJob>> jobs = collection_->PendingTexts(asked);
    // The counts (for progress and Idle) cost a scan: taken when the work may be running out, and
    // now and then otherwise.
    std::optional<Result<CollectionStats>> stats;
    if (!jobs.ok() || static_cast<int>(jobs->size()) < asked || Clock::now() - counted_at_ >= kCountEvery) {
      stats = collection_->Stats();
      counted_at_ = Clock::now();
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (!jobs.ok()) {
      error_ = jobs.status().message();
      return;
    }
    looked_after_ = wakes;
    error_.clear();
    if (stats && stats->ok()) {
      last_read_ = (*stats)->texts_read;
      last_pending_ = (*stats)->texts_pending;
    }
    // A full answer means more is waiting, whatever the last count said.
    if (static_cast<int>(jobs->size()) >= asked) last_pending_ = std::max<int64_t>(last_pending_, 1);
    // Nothing new: look again later and later; work found: soon again.
    poll_ = jobs->size() > in_flight_.size() + given_up_.size() ? kPoll : std::min(kIdlePoll, poll_ * 2);
    int added = 0;
    for (TextJob& job : *jobs) {
      if (added >= want) break;
      if (in_flight_.contains(job.content_hash) || given_up_.contains(job.content_hash)) continue;
      in_flight_.insert(job.content_hash);
      jobs_.push_back(std::move(job));
      ++added;
    }
    // Everything left has been given up on this run: nothing to wait for.
    if (added == 0 && busy_ == 0 && stats && stats->ok()) {
      last_pending_ = std::max<int64_t>(0, (*stats)->texts_pending - static_cast<int64_t>(given_up_.size()));
    }
    cv_.notify_all();
  }

  void ReadLoop(std::unique_ptr<TextReader> reader) {
    // A low priority: other work on the machine comes first, and the readers still progress beside
    // it (SCHED_IDLE would starve them for as long as anything else runs, and a thread cannot
    // raise its priority back without privileges).
    if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kReaderNice) != 0) {
      spdlog::debug("text recognition: could not lower the readers' priority");
    }
    while (true) {
      TextJob job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        // No new picture while the process embeds: it has the cores.
        while (!stopping_ && (jobs_.empty() || Embedding())) cv_.wait_for(lock, kBusyRecheck);
        if (stopping_) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
        ++busy_;
      }
      Outcome o{job.content_hash, job.path, ReadOne(reader.get(), job)};
      std::lock_guard<std::mutex> lock(mu_);
      --busy_;
      if (stop_flag_) return;  // a read cut short by Stop is not the picture's text: read again next time
      if (o.text.ok()) {
        ++done_;
        finished_at_.push_back(Clock::now());
        while (finished_at_.front() < finished_at_.back() - kRateWindow) finished_at_.pop_front();
      } else {
        ++failed_;
      }
      if (jobs_.empty()) refill_ = true;
      outcomes_.push_back(std::move(o));
      cv_.notify_all();
    }
  }

  // Whether the process is embedding (the readers then start nothing new). Under mu_.
  bool Embedding() const { return options_.busy && options_.busy(); }

  Result<RecognizedText> ReadOne(TextReader* reader, const TextJob& job) {
    ASSIGN_OR_RETURN(ingest::FileContent content, read_(job.path));
    const bool video = ingest::IsVideo(content);
    if (video != !job.frame_times.empty()) {
      // Replaced by another kind of file since it was embedded: read once its new content is.
      return Status::Unavailable(std::string("changed into ") + (video ? "a video" : "a still image") +
                                 " since it was embedded");
    }
    if (video) return ReadVideo(reader, content, job.frame_times);
    DecodeOptions decode;
    decode.max_pixels = options_.max_pixels;
    decode.min_side = kDecodeMinSide;
    ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImage(content.bytes, decode));
    content = {};
    ASSIGN_OR_RETURN(RecognizedText text, reader->Read(decoded.image, &stop_flag_));
    ScaleBoxes(text.words, decoded.width, decoded.image.width);
    return text;
  }

  // A video's text: its embedded frames' (at `frame_times`), one after another, each word with its
  // frame's time; a frame showing the same text as the one before adds nothing (the words keep
  // their first time). Between frames, the reader waits while the process embeds.
  Result<RecognizedText> ReadVideo(TextReader* reader, const ingest::FileContent& content,
                                   std::span<const float> frame_times) {
    const VideoSource source = ingest::VideoSourceOf(content);
    VideoOptions options;
    options.max_pixels = options_.max_pixels;
    options.min_side = kDecodeMinSide;
    options.cancel = &stop_flag_;
    const std::vector<double> times(frame_times.begin(), frame_times.end());
    RecognizedText out;
    std::string last;                                  // the last frame's text that was kept
    std::vector<std::pair<size_t, int>> frame_widths;  // per frame kept: its first word, its width
    size_t next = 0;
    const auto read_frame = [&](VideoFrame frame) -> Status {
      const double time_s = times[next++];
      if (!WaitWhileEmbedding()) return Status::Unavailable("stopping");
      ASSIGN_OR_RETURN(RecognizedText text, reader->Read(frame.image, &stop_flag_));
      if (text.empty() || text.text == last) return Status::Ok();
      last = text.text;
      out.text += (out.text.empty() ? "" : "\n") + text.text;
      frame_widths.emplace_back(out.words.size(), frame.image.width);
      for (RecognizedWord& w : text.words) {
        w.time_s = time_s;
        out.words.push_back(std::move(w));
      }
      return Status::Ok();
    };
    ASSIGN_OR_RETURN(const VideoInfo info, VideoFramesAt(source, times, options, read_frame));
    // Boxes in the video's own pixels, as displayed (frames were decoded at a reduced scale).
    for (size_t f = 0; f < frame_widths.size(); ++f) {
      const size_t end = f + 1 < frame_widths.size() ? frame_widths[f + 1].first : out.words.size();
      ScaleBoxes(std::span(out.words).subspan(frame_widths[f].first, end - frame_widths[f].first), info.width,
                 frame_widths[f].second);
    }
    return out;
  }

  // Boxes read from a picture `read_width` wide into one `width` wide.
  static void ScaleBoxes(std::span<RecognizedWord> words, int width, int read_width) {
    if (read_width <= 0 || width == read_width) return;
    const double scale = static_cast<double>(width) / read_width;
    for (RecognizedWord& w : words) {
      w.x = static_cast<int>(std::lround(w.x * scale));
      w.y = static_cast<int>(std::lround(w.y * scale));
      w.width = static_cast<int>(std::lround(w.width * scale));
      w.height = static_cast<int>(std::lround(w.height * scale));
    }
  }

  // Waits while the process embeds; false when stopping.
  bool WaitWhileEmbedding() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_ && Embedding()) cv_.wait_for(lock, kBusyRecheck);
    return !stopping_;
  }

  Collection* const collection_;
  const TextOptions options_;
  const ingest::PathReader read_;
  const Clock::time_point started_ = Clock::now();
  std::atomic<bool> stop_flag_{false};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool woken_ = true;          // look at once
  int64_t wakes_ = 0;          // Wake calls
  int64_t looked_after_ = -1;  // the Wake calls before the last look at the collection began
  bool refill_ = false;        // a reader ran out of work
  std::deque<TextJob> jobs_;
  std::vector<Outcome> outcomes_;
  int busy_ = 0;
  int64_t done_ = 0;
  int64_t failed_ = 0;
  int64_t last_read_ = 0;
  int64_t last_pending_ = 1;  // not known to be idle before the first look
  std::string error_;
  std::deque<Clock::time_point> finished_at_;

  // The coordinator's own.
  std::chrono::milliseconds poll_ = kPoll;
  Clock::time_point counted_at_;
  std::set<std::string> in_flight_;                    // handed to readers, or read and not yet written
  std::map<std::string, Clock::time_point> given_up_;  // could not be read, and when

  std::vector<std::thread> readers_;
  std::thread coordinator_;
};

}  // namespace

Result<std::unique_ptr<TextRecognition>> TextRecognition::Start(Collection* collection, const TextOptions& options) {
  return ingest::StartTextRecognition(collection, options, ingest::ReadLocalFile);
}

Result<std::unique_ptr<TextRecognition>> ingest::StartTextRecognition(Collection* collection,
                                                                      const TextOptions& options, PathReader read) {
  if (!options.enabled) return Status::InvalidArgument("text recognition is turned off");
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const int threads = options.threads > 0 ? options.threads : static_cast<int>(std::min(4u, cores));
  std::vector<std::unique_ptr<TextReader>> readers;
  for (int i = 0; i < threads; ++i) {
    Result<std::unique_ptr<TextReader>> reader = TextReader::Open(options.reader);
    // Languages asked for must be there; without the default's data, images are still indexed.
    if (!reader.ok() && reader.status().code() == StatusCode::kNotFound &&
        options.reader.languages == TextReaderOptions().languages) {
      spdlog::warn("text in images is not read: {} (or pass --no-ocr)", reader.status().message());
      return std::unique_ptr<TextRecognition>();
    }
    RETURN_IF_ERROR(reader.status());
    readers.push_back(std::move(*reader));
  }
  return std::unique_ptr<TextRecognition>(new TextStage(collection, options, std::move(read), std::move(readers)));
}

}  // namespace imgsearch
