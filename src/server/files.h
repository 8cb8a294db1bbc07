// What the server reads from disk on a client's behalf: indexed images (only from inside the
// collection's folders) and their thumbnails (made once, cached by content).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "imgsearch/collection.h"
#include "imgsearch/image.h"

namespace imgsearch::server {

// A file the gate let through: read it by offset (the descriptor stays valid however the path
// changes afterwards).
class OpenFile {
 public:
  ~OpenFile();
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
  uint64_t size() const { return size_; }
  // Up to `n` bytes at `offset`; 0 at the end.
  Result<size_t> ReadAt(uint64_t offset, uint8_t* out, size_t n) const;
  // A name of this very descriptor (/proc/self/fd/N) for a library that opens files by name (FFmpeg
  // reading a video): it reaches the file the gate checked, wherever its path leads meanwhile.
  std::string DescriptorPath() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  friend class FileGate;
  OpenFile(int fd, std::string path, uint64_t size) : fd_(fd), path_(std::move(path)), size_(size) {}
  int fd_;
  std::string path_;
  uint64_t size_;
};

// Hands out files only when they resolve — every symbolic link followed, by the kernel, on the
// descriptor actually opened — to a regular file inside one of the collection's roots. A stored
// path that now leads elsewhere (a symlink swapped in, a folder renamed to point outside) is refused.
class FileGate {
 public:
  explicit FileGate(Collection* collection) : collection_(collection) {}

  // kPermissionDenied outside the roots or not a regular file, kNotFound when it is gone.
  Result<std::shared_ptr<OpenFile>> Open(const std::string& path);
  // The whole file (at most max_bytes, else kResourceExhausted).
  Result<std::vector<uint8_t>> Read(const std::string& path, size_t max_bytes);

 private:
  // The roots with their symbolic links resolved; re-read from the collection when a path is not
  // under any of them (another process may have indexed a new folder).
  std::vector<std::string> RealRoots(bool refresh);

  Collection* collection_;
  std::mutex mu_;
  std::vector<std::string> real_roots_;
  std::map<std::string, std::string> legacy_real_;  // roots recorded without a real path → resolved once
  std::chrono::steady_clock::time_point loaded_{};
};

// Thumbnails: the image scaled so its longer side is `size` (never enlarged), as JPEG, cached in
// `dir` under its content hash (a renamed image keeps its thumbnail; a changed one gets a new one).
// Concurrent requests for the same thumbnail make it once. The cache is kept under `max_bytes` (0:
// no limit): when it grows past, a background thread deletes the least recently used thumbnails
// down to 80% of the limit (a cache hit refreshes the file's time).
struct ThumbnailStats {
  int64_t made = 0;    // made on request
  int64_t cached = 0;  // served from the cache
  uint64_t bytes = 0;  // in the cache folder, as of the last scan plus what was added since
  int64_t evicted = 0;
};

class ThumbnailCache {
 public:
  // Sizes are rounded up to one of these, so the cache holds a bounded number of variants.
  static constexpr int kSizes[] = {64, 128, 256, 512, 1024};
  static int RoundSize(int requested);

  ThumbnailCache(std::string dir, FileGate* gate, DecodeOptions decode, uint64_t max_bytes);
  ~ThumbnailCache();
  ThumbnailCache(const ThumbnailCache&) = delete;
  ThumbnailCache& operator=(const ThumbnailCache&) = delete;

  // The JPEG bytes of the thumbnail of `record` at RoundSize(size); of a video, its frame at
  // `time_s` (without one, its middle sampled frame).
  Result<std::string> Get(const ImageRecord& record, int size, std::optional<double> time_s = std::nullopt);
  // What names that thumbnail among the pictures of `record` (PixelsTag's `what`): "256", or for a
  // video's frame "256-t12500", the time in milliseconds (the times a client may send for one frame
  // do not multiply the cache).
  static std::string ThumbnailName(const ImageRecord& record, int size, std::optional<double> time_s);

  // Renditions: what a browser shows of a format it cannot display (HEIF, JPEG XL, RAW, TIFF), a
  // JPEG whose longer side is at most kViewSize, cached beside the thumbnails under the same limit.
  static constexpr int kViewSize = 4096;
  // Part of every cached file's name and ETag: raised when decoding changes what an image looks
  // like, so that neither this cache nor browsers keep pictures made the old way.
  static constexpr int kPixelsVersion = 2;
  // What names a cached picture of `record` (its file name without ".jpg", its ETag): the content
  // hash, kPixelsVersion and `what` ("256", "view").
  static std::string PixelsTag(const ImageRecord& record, const std::string& what);
  Result<std::string> GetView(const ImageRecord& record);

  ThumbnailStats Stats() const { return {made_, hits_, bytes_, evicted_}; }

 private:
  // The cached JPEG of `record` (a video: its frame at `time_s`) scaled to `size`, made (once,
  // whoever else asks meanwhile) if absent.
  Result<std::string> GetScaled(const ImageRecord& record, int size, int quality, const std::string& name,
                                std::optional<double> time_s);
  Result<std::string> Make(const ImageRecord& record, int size, int quality, const std::string& cache_path,
                           std::optional<double> time_s);
  // The picture of `record` to scale: the image (a preview will do when its longer side reaches
  // `size`), or a video's frame; `content_matches` tells whether the file still holds the content
  // the catalog knows (only then is the result cached under its hash).
  Result<Image> Picture(const ImageRecord& record, int size, std::optional<double> time_s, bool* content_matches);
  void PruneLoop();
  void Prune();

  const std::string dir_;
  FileGate* gate_;
  const DecodeOptions decode_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> in_progress_;  // cache paths being made
  std::atomic<int64_t> made_{0}, hits_{0}, evicted_{0};

  // Decoding a large image takes its pixels in memory (a 49-megapixel photo: 150 MB): at most one
  // per core at a time, so that many thumbnail requests at once cannot multiply that.
  std::counting_semaphore<1024> decode_slots_;
  const uint64_t max_bytes_;
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> added_since_scan_{0};  // written by Make while a scan may be missing it
  std::mutex prune_mu_;
  std::condition_variable prune_cv_;
  bool prune_wanted_ = true;  // guarded by prune_mu_; the first scan measures the cache
  bool stopping_ = false;     // guarded by prune_mu_
  std::thread pruner_;
};

// "image/jpeg" for ImageRecord::format "jpeg", and so on.
const char* MimeTypeOf(const std::string& format);

}  // namespace imgsearch::server
