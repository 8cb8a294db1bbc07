#include "server/files.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "base/file.h"
#include "base/hash.h"
#include "imgsearch/video.h"
#include "ingest/pipeline.h"
#include "ingest/scanner.h"

namespace imgsearch::server {

namespace {

// Where the descriptor really points, every symbolic link resolved.
std::string ResolvedPath(int fd) {
  char link[64];
  std::snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  char target[PATH_MAX + 1];
  const ssize_t n = ::readlink(link, target, PATH_MAX);
  if (n <= 0) return "";
  return std::string(target, static_cast<size_t>(n));
}

}  // namespace

std::vector<std::string> FileGate::RealRoots(bool refresh) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (refresh || real_roots_.empty() || now - loaded_ > std::chrono::seconds(10)) {
    auto roots = collection_->Roots();
    if (roots.ok()) {
      real_roots_.clear();
      for (const CollectionRoot& r : *roots) {
        // The real path recorded with the root, never where the root leads now: a root swapped for a
        // link to elsewhere must not widen what is served. A root recorded before real paths were
        // kept is resolved the first time this server sees it, and that answer is kept.
        std::string real = r.real_path;
        if (real.empty()) {
          auto [it, inserted] = legacy_real_.try_emplace(r.path, "");
          if (inserted) it->second = RealPath(r.path);
          real = it->second;
        }
        if (!real.empty()) real_roots_.push_back(real);
      }
      loaded_ = now;
    }
  }
  return real_roots_;
}

OpenFile::~OpenFile() {
  if (fd_ >= 0) ::close(fd_);
}

Result<size_t> OpenFile::ReadAt(uint64_t offset, uint8_t* out, size_t n) const {
  while (true) {
    const ssize_t got = ::pread(fd_, out, n, static_cast<off_t>(offset));
    if (got >= 0) return static_cast<size_t>(got);
    if (errno != EINTR) return Status::IoError("cannot read " + path_ + ": " + std::strerror(errno));
  }
}

Result<std::shared_ptr<OpenFile>> FileGate::Open(const std::string& path) {
  // O_NONBLOCK: a FIFO put in an image's place must not hang the request.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return Status::NotFound(path + " no longer exists");
    return Status::IoError("cannot open " + path + ": " + std::strerror(errno));
  }
  auto file = std::shared_ptr<OpenFile>(new OpenFile(fd, path, 0));
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Status::IoError("cannot stat " + path + ": " + std::strerror(errno));
  const std::string real = ResolvedPath(fd);
  auto inside = [&](const std::vector<std::string>& roots) {
    return std::any_of(roots.begin(), roots.end(), [&](const std::string& r) { return IsUnder(real, r); });
  };
  if (real.empty() || (!inside(RealRoots(false)) && !inside(RealRoots(true)))) {
    return Status::PermissionDenied(path + " resolves to a place outside the indexed folders");
  }
  if (!S_ISREG(st.st_mode)) return Status::PermissionDenied(path + " is not a regular file");
  file->size_ = static_cast<uint64_t>(st.st_size);
  return file;
}

Result<std::vector<uint8_t>> FileGate::Read(const std::string& path, size_t max_bytes) {
  ASSIGN_OR_RETURN(std::shared_ptr<OpenFile> file, Open(path));
  if (file->size() > max_bytes) {
    return Status::ResourceExhausted(path + " is larger than " + std::to_string(max_bytes) + " bytes");
  }
  std::vector<uint8_t> bytes(file->size());
  size_t done = 0;
  while (done < bytes.size()) {
    ASSIGN_OR_RETURN(const size_t n, file->ReadAt(done, bytes.data() + done, bytes.size() - done));
    if (n == 0) break;  // shrank while reading
    done += n;
  }
  bytes.resize(done);
  return bytes;
}

int ThumbnailCache::RoundSize(int requested) {
  for (int s : kSizes) {
    if (requested <= s) return s;
  }
  return kSizes[std::size(kSizes) - 1];
}

ThumbnailCache::ThumbnailCache(std::string dir, FileGate* gate, DecodeOptions decode, uint64_t max_bytes)
    : dir_(std::move(dir)),
      gate_(gate),
      decode_(decode),
      decode_slots_(static_cast<std::ptrdiff_t>(std::clamp(std::thread::hardware_concurrency(), 1u, 1024u))),
      max_bytes_(max_bytes) {
  pruner_ = std::thread([this] { PruneLoop(); });
}

ThumbnailCache::~ThumbnailCache() {
  {
    std::lock_guard<std::mutex> lock(prune_mu_);
    stopping_ = true;
  }
  prune_cv_.notify_all();
  pruner_.join();
}

void ThumbnailCache::PruneLoop() {
  std::unique_lock<std::mutex> lock(prune_mu_);
  while (true) {
    prune_cv_.wait(lock, [&] { return stopping_ || prune_wanted_; });
    if (stopping_) return;
    prune_wanted_ = false;
    lock.unlock();
    Prune();
    lock.lock();
  }
}

void ThumbnailCache::Prune() {
  namespace fs = std::filesystem;
  struct Entry {
    fs::file_time_type time;
    uint64_t size;
    fs::path path;
  };
  std::vector<Entry> entries;
  uint64_t total = 0;
  std::error_code ec;
  // A thumbnail written while the folder is being read may be missed by the scan: what Make adds
  // from here on is counted on top, so the count can run over (and only prunes again) but never under.
  added_since_scan_ = 0;
  for (fs::recursive_directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    // Only finished thumbnails: files being written end in .tmp<pid>.
    if (!it->is_regular_file(ec) || it->path().extension() != ".jpg") continue;
    const uint64_t size = it->file_size(ec);
    const fs::file_time_type time = it->last_write_time(ec);
    if (ec) {
      ec.clear();
      continue;
    }
    entries.push_back({time, size, it->path()});
    total += size;
  }
  if (max_bytes_ > 0 && total > max_bytes_) {
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.time < b.time; });
    const uint64_t target = max_bytes_ / 10 * 8;
    for (const Entry& e : entries) {
      if (total <= target) break;
      if (fs::remove(e.path, ec)) {
        total -= e.size;
        ++evicted_;
      }
    }
  }
  bytes_ = total + added_since_scan_.load();
  if (max_bytes_ > 0 && bytes_ > max_bytes_) {
    std::lock_guard<std::mutex> lock(prune_mu_);
    prune_wanted_ = true;  // made during the scan: look again (an idle cache converges on its exact size)
  }
}

Result<std::string> ThumbnailCache::Get(const ImageRecord& record, int requested, std::optional<double> time_s) {
  return GetScaled(record, RoundSize(requested), 85, ThumbnailName(record, requested, time_s), time_s);
}

std::string ThumbnailCache::ThumbnailName(const ImageRecord& record, int size, std::optional<double> time_s) {
  const std::string rounded = std::to_string(RoundSize(size));
  if (!IsVideoFormat(record.format)) return rounded;
  return rounded + "-t" + std::to_string(std::llround(time_s.value_or(-1) * 1000));
}

std::string ThumbnailCache::PixelsTag(const ImageRecord& record, const std::string& what) {
  return record.content_hash + "-v" + std::to_string(kPixelsVersion) + "-" + what;
}

Result<std::string> ThumbnailCache::GetView(const ImageRecord& record) {
  return GetScaled(record, kViewSize, 90, "view", std::nullopt);
}

Result<std::string> ThumbnailCache::GetScaled(const ImageRecord& record, int size, int quality, const std::string& name,
                                              std::optional<double> time_s) {
  if (record.content_hash.size() < 3) return Status::InvalidArgument("image " + record.path + " has no content hash");
  const std::string path = dir_ + "/" + record.content_hash.substr(0, 2) + "/" + PixelsTag(record, name) + ".jpg";
  auto read_cached = [&]() -> std::optional<std::string> {
    auto cached = ReadFileText(path, size_t{64} << 20);
    if (!cached.ok()) return std::nullopt;
    ++hits_;
    if (max_bytes_ > 0) ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);  // recently used: evicted last
    return std::move(*cached);
  };
  if (auto cached = read_cached()) return std::move(*cached);
  {
    // One maker per thumbnail; the others wait for it and then read what it wrote.
    std::unique_lock<std::mutex> lock(mu_);
    bool waited = false;
    while (in_progress_.count(path) != 0) {
      cv_.wait(lock);
      waited = true;
    }
    if (waited || FileExists(path)) {
      lock.unlock();
      if (auto cached = read_cached()) return std::move(*cached);
      lock.lock();
    }
    in_progress_.insert(path);
  }
  Result<std::string> made = Make(record, size, quality, path, time_s);
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_progress_.erase(path);
  }
  cv_.notify_all();
  return made;
}

Result<Image> ThumbnailCache::Picture(const ImageRecord& record, int size, std::optional<double> time_s,
                                      bool* content_matches) {
  if (IsVideoFormat(record.format)) {
    ASSIGN_OR_RETURN(std::shared_ptr<OpenFile> file, gate_->Open(record.path));
    // Hashing a whole video for every frame asked for would cost more than the frame: the file's
    // size (and the gate's checks) stand for its content.
    *content_matches = file->size() == static_cast<uint64_t>(record.size_bytes);
    double t = time_s.value_or(0);
    if (!time_s && !record.frame_times.empty()) t = record.frame_times[record.frame_times.size() / 2];
    VideoOptions options;
    options.max_pixels = decode_.max_pixels;
    options.min_side = size;  // the shorter side at `size` is more than the longer side needs
    // A page of video results asks for many frames at once, each holding a decode slot: a file too
    // slow to give one up quickly (a very long GOP, no index) fails this one request instead.
    options.time_limit = std::chrono::seconds(20);
    auto frame = VideoFrameAt(VideoSource{.path = file->DescriptorPath()}, t, options);
    if (!frame.ok()) return frame.status().WithContext(record.path);
    return std::move(frame->image);
  }
  ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, gate_->Read(record.path, kMaxFileBytes));
  DecodeOptions options = decode_;
  options.min_side = size;
  // The result's longer side is `size`: a preview (RAW, HEIF) whose longer side reaches it will
  // do, which for a 3:2 picture means a shorter side of two thirds of it.
  options.preview_min_side = (2 * size + 2) / 3;
  auto decoded = DecodeImage(bytes, options);
  if (!decoded.ok()) return decoded.status().WithContext(record.path);
  *content_matches = ContentHash(bytes) == record.content_hash;
  return std::move(decoded->image);
}

Result<std::string> ThumbnailCache::Make(const ImageRecord& record, int size, int quality,
                                         const std::string& cache_path, std::optional<double> time_s) {
  std::vector<uint8_t> jpeg;
  bool content_matches = false;
  {
    decode_slots_.acquire();
    struct Release {
      std::counting_semaphore<1024>* slots;
      ~Release() { slots->release(); }
    } release{&decode_slots_};
    ASSIGN_OR_RETURN(const Image full, Picture(record, size, time_s, &content_matches));
    const double scale = std::min(1.0, static_cast<double>(size) / std::max(full.width, full.height));
    const int w = std::max(1, static_cast<int>(full.width * scale + 0.5));
    const int h = std::max(1, static_cast<int>(full.height * scale + 0.5));
    const Image thumb = w == full.width && h == full.height ? full : Resize(full, w, h);
    ASSIGN_OR_RETURN(jpeg, EncodeJpeg(thumb, quality));
  }
  std::string out(jpeg.begin(), jpeg.end());
  ++made_;

  // Cached only when the file still holds the content the catalog knows (else it changed after
  // it was indexed, and its new hash will name its thumbnail once the watcher catches up).
  if (content_matches) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(cache_path).parent_path(), ec);
    const std::string tmp = cache_path + ".tmp" + std::to_string(::getpid());
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      f.write(out.data(), static_cast<std::streamsize>(out.size()));
      if (!f) ec = std::make_error_code(std::errc::io_error);
    }
    if (!ec) std::filesystem::rename(tmp, cache_path, ec);
    if (ec) {
      std::filesystem::remove(tmp, ec);  // a cache that cannot be written only costs time
    } else {
      added_since_scan_ += out.size();
      if ((bytes_ += out.size()) > max_bytes_ && max_bytes_ > 0) {
        {
          std::lock_guard<std::mutex> lock(prune_mu_);
          prune_wanted_ = true;
        }
        prune_cv_.notify_one();
      }
    }
  }
  return out;
}

const char* MimeTypeOf(const std::string& format) {
  const ImageFormatInfo* info = FormatInfo(format);
  return info != nullptr ? info->mime_type : "application/octet-stream";
}

}  // namespace imgsearch::server
