// Live watch: inotify over every folder of the roots (periodic rescans where it cannot cover
// them), changed paths debounced, then reconciled through the ingest pipeline.
//
// Two threads: the event thread reads inotify and records which paths changed; the apply thread
// takes the paths whose quiet time has passed and reconciles them with the catalog. The catalog
// is the only state that survives a restart, and the start-up reconciliation compares it with the
// disk, so whatever is pending when the process stops is picked up at the next start.
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <unordered_map>

#include "imgsearch/ingest.h"
#include "ingest/pipeline.h"
#include "ingest/reconcile.h"
#include "ingest/scanner.h"

namespace imgsearch {

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr uint32_t kWatchMask = IN_CREATE | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO |
                                IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW |
                                IN_EXCL_UNLINK;

// Filesystems whose changes made on other machines inotify never sees.
const char* RemoteFilesystem(const std::string& path) {
  struct statfs s {};
  if (::statfs(path.c_str(), &s) != 0) return nullptr;
  switch (static_cast<uint64_t>(s.f_type)) {
    case 0x6969: return "NFS";
    case 0xFF534D42: return "CIFS";
    case 0xFE534D42: return "SMB2";
    case 0x517B: return "SMB";
    case 0x01021997: return "9p";
    case 0x00C36400: return "Ceph";
    case 0x65735546: return "FUSE";
    default: return nullptr;
  }
}

std::string MaxUserWatches() {
  std::ifstream in("/proc/sys/fs/inotify/max_user_watches");
  std::string v;
  in >> v;
  return v.empty() ? "?" : v;
}

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

class Watcher final : public FolderWatcher {
 public:
  Watcher(const std::vector<CollectionRoot>& recorded, const ClipModel& model, Collection* collection,
          const WatchOptions& options)
      : roots_(ingest::PathsOf(recorded)),
        options_(options),
        pipeline_(ingest::MakeSink(model, collection, options.sync)),
        reconciler_(collection, pipeline_.get(), options_.sync.scan) {
    reconciler_.set_stop(&stopping_);
    for (const CollectionRoot& r : recorded) real_roots_[r.path] = r.real_path;
  }

  ~Watcher() override {
    Stop();
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  Status Init() {
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) return Status::IoError(std::string("eventfd: ") + std::strerror(errno));
    const auto now = Clock::now();
    if (options_.poll_seconds > 0) {
      for (const std::string& r : roots_) poll_due_[r] = now + Period();
      notes_.push_back("polling every " + Seconds(options_.poll_seconds) + " (--poll)");
    } else {
      inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
      if (inotify_fd_ < 0) {
        Fallback("", std::string("inotify is unavailable (") + std::strerror(errno) + ")");
      } else {
        std::lock_guard<std::mutex> lock(mu_);
        for (const std::string& r : roots_) {
          if (const char* fs_name = RemoteFilesystem(r)) {
            FallbackLocked(r, r + " is on " + fs_name + ", where inotify misses changes made elsewhere");
            continue;
          }
          AddWatchTreeLocked(r, r);
        }
      }
    }
    events_thread_ = std::thread([this] { EventLoop(); });
    apply_thread_ = std::thread([this] { ApplyLoop(); });
    return Status::Ok();
  }

  void Stop() override {
    if (stopping_.exchange(true)) {
      if (apply_thread_.joinable()) apply_thread_.join();
      return;
    }
    if (wake_fd_ >= 0) {
      const uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
    }
    cv_.notify_all();
    if (events_thread_.joinable()) events_thread_.join();
    if (apply_thread_.joinable()) apply_thread_.join();
  }

  Status Rescan(const std::string& root) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (root.empty()) {
      for (const std::string& r : roots_) MarkLocked(r, false);
    } else {
      const std::string r = NormalisePath(root);
      const bool known = std::any_of(roots_.begin(), roots_.end(), [&](const std::string& x) { return IsUnder(r, x); });
      if (!known) return Status::InvalidArgument(r + " is not under a watched folder");
      MarkLocked(r, false);
    }
    ++rescans_;
    // Due now, not after the quiet time.
    for (auto& [path, p] : pending_) p.last = Clock::now() - std::chrono::hours(1);
    cv_.notify_all();
    return Status::Ok();
  }

  bool Idle() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return started_ && !busy_ && pending_.empty() && pipeline_->Snapshot().in_flight == 0;
  }

  WatchStats Stats() const override {
    WatchStats s;
    s.pipeline = pipeline_->Snapshot();
    std::lock_guard<std::mutex> lock(mu_);
    s.roots = roots_;
    const bool any_inotify = inotify_fd_ >= 0 && !wd_path_.empty();
    s.mode = any_inotify ? (poll_due_.empty() ? "inotify" : "inotify+polling") : "polling";
    s.notes = notes_;
    s.unavailable = unavailable_;
    s.watched_folders = static_cast<int64_t>(wd_path_.size());
    s.pending_paths = static_cast<int64_t>(pending_.size());
    s.rescans = rescans_;
    s.totals = totals_;
    pipeline_->AddTo(&s.totals);
    return s;
  }

  std::vector<UnavailableFolder> Unavailable() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return unavailable_;
  }

  Status error() const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_.ok()) return error_;
    return pipeline_->status();
  }

 private:
  struct Pending {
    Clock::time_point last;
    bool writing = false;  // created or modified and not yet closed
  };

  static std::string Seconds(double s) { return fmt::format("{:g} s", s); }

  const std::string* RootOf(const std::string& path) const {
    for (const std::string& r : roots_) {
      if (IsUnder(path, r)) return &r;
    }
    return nullptr;
  }

  void Fallback(const std::string& root, const std::string& why) {
    std::lock_guard<std::mutex> lock(mu_);
    FallbackLocked(root, why);
  }

  // Rescans `root` (every root when empty) periodically from now on.
  void FallbackLocked(const std::string& root, const std::string& why) {
    const std::string note = why + "; rescanning " + (root.empty() ? "every folder" : root) + " every " +
                             Seconds(options_.fallback_poll_seconds);
    spdlog::warn("{}", note);
    notes_.push_back(note);
    for (const std::string& r : roots_) {
      if (root.empty() || r == root) poll_due_.emplace(r, Clock::now() + Period());
    }
  }

  std::chrono::milliseconds Period() const {
    const double s = options_.poll_seconds > 0 ? options_.poll_seconds : options_.fallback_poll_seconds;
    return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
  }

  // Watches `dir` and every folder below it that a scan would enter.
  void AddWatchTreeLocked(const std::string& dir, const std::string& root) {
    if (poll_due_.contains(root) || inotify_fd_ < 0) return;
    const int wd = ::inotify_add_watch(inotify_fd_, dir.c_str(), kWatchMask);
    if (wd < 0) {
      if (errno == ENOSPC) {
        FallbackLocked(root, "the inotify watch limit is reached (fs.inotify.max_user_watches = " + MaxUserWatches() +
                                 "; raise it with sysctl to watch " + root + " live)");
      } else if (errno != ENOENT && errno != ENOTDIR) {
        spdlog::warn("cannot watch {}: {}", dir, std::strerror(errno));
      }
      return;
    }
    wd_path_[wd] = dir;
    std::error_code ec;
    for (fs::directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end; !ec && it != end;
         it.increment(ec)) {
      const std::string child = it->path().string();
      const bool is_dir = options_.sync.scan.follow_symlinks ? it->is_directory(ec) : IsDirectory(child);
      if (is_dir && !ingest::Excluded(child, root, true, options_.sync.scan)) AddWatchTreeLocked(child, root);
    }
  }

  void RemoveWatchTreeLocked(const std::string& dir) {
    for (auto it = wd_path_.begin(); it != wd_path_.end();) {
      if (IsUnder(it->second, dir)) {
        ::inotify_rm_watch(inotify_fd_, it->first);
        it = wd_path_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void MarkLocked(const std::string& path, bool writing) {
    Pending& p = pending_[path];
    p.last = Clock::now();
    p.writing = writing;
  }

  void EventLoop() {
    alignas(struct inotify_event) char buf[64 * 1024];
    std::unordered_map<uint32_t, std::string> moved_from;  // cookie → path, to pair renames
    while (!stopping_) {
      pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {inotify_fd_, POLLIN, 0}};
      const int n = ::poll(fds, inotify_fd_ >= 0 ? 2 : 1, 1000);
      if (n < 0 && errno != EINTR) break;
      if (stopping_ || inotify_fd_ < 0 || n <= 0 || !(fds[1].revents & POLLIN)) continue;
      const ssize_t len = ::read(inotify_fd_, buf, sizeof(buf));
      if (len <= 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      for (ssize_t off = 0; off < len;) {
        const auto* e = reinterpret_cast<const struct inotify_event*>(buf + off);
        off += static_cast<ssize_t>(sizeof(struct inotify_event) + e->len);
        HandleLocked(*e, &moved_from);
      }
      if (moved_from.size() > 10'000) moved_from.clear();
      cv_.notify_all();
    }
  }

  void HandleLocked(const struct inotify_event& e, std::unordered_map<uint32_t, std::string>* moved_from) {
    if (e.mask & IN_Q_OVERFLOW) {
      const std::string note = "inotify queue overflowed; rescanning every folder";
      spdlog::warn("{}", note);
      notes_.push_back(note);
      ++rescans_;
      for (const std::string& r : roots_) MarkLocked(r, false);
      return;
    }
    auto wd_it = wd_path_.find(e.wd);
    if (wd_it == wd_path_.end()) return;
    const std::string dir = wd_it->second;
    if (e.mask & IN_IGNORED) {
      wd_path_.erase(wd_it);
      return;
    }
    if (e.mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
      if (std::find(roots_.begin(), roots_.end(), dir) != roots_.end()) {
        spdlog::warn("watched folder {} was {}; its images are removed until it comes back", dir,
                     (e.mask & IN_DELETE_SELF) ? "deleted" : "moved away");
        RemoveWatchTreeLocked(dir);
        missing_roots_.insert(dir);
        MarkLocked(dir, false);
      }
      return;
    }
    if (e.len == 0) return;
    const std::string path = dir == "/" ? "/" + std::string(e.name) : dir + "/" + e.name;
    const std::string* root = RootOf(path);
    if (root == nullptr) return;
    const bool is_dir = (e.mask & IN_ISDIR) != 0;
    if (ingest::Excluded(path, *root, is_dir, options_.sync.scan)) return;
    if (is_dir) {
      if (e.mask & (IN_DELETE | IN_MOVED_FROM)) RemoveWatchTreeLocked(path);
      if (e.mask & (IN_CREATE | IN_MOVED_TO)) AddWatchTreeLocked(path, *root);
      MarkLocked(path, false);
    } else {
      MarkLocked(path, (e.mask & (IN_CREATE | IN_MODIFY)) != 0 && !(e.mask & IN_CLOSE_WRITE));
    }
    // Both ends of a rename become due together, so the reconciler sees the move as one.
    if (e.mask & IN_MOVED_FROM) (*moved_from)[e.cookie] = path;
    if (e.mask & IN_MOVED_TO) {
      auto it = moved_from->find(e.cookie);
      if (it != moved_from->end()) {
        auto p = pending_.find(it->second);
        if (p != pending_.end()) p->second.last = pending_[path].last;
        moved_from->erase(it);
      }
    }
  }

  // Paths due for reconciliation now: quiet long enough (or stuck open too long), polled roots
  // whose period is over, vanished roots that are back.
  // Closed and quiet long enough, or left open for writing too long.
  bool Ready(const Pending& p, Clock::time_point now) const {
    const int ms = p.writing ? options_.open_write_timeout_ms : options_.quiet_ms;
    return now - p.last >= std::chrono::milliseconds(ms);
  }

  std::vector<std::string> TakeDueLocked() {
    const auto now = Clock::now();
    std::vector<std::string> due;
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (Ready(it->second, now)) {
        due.push_back(it->first);
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [root, when] : poll_due_) {
      if (now >= when) {
        due.push_back(root);
        when = now + Period();
        ++rescans_;
      }
    }
    for (auto it = missing_roots_.begin(); it != missing_roots_.end();) {
      if (IsDirectory(*it) && !LeadsElsewhereLocked(*it)) {
        spdlog::warn("watched folder {} is back", *it);
        AddWatchTreeLocked(*it, *it);
        due.push_back(*it);
        it = missing_roots_.erase(it);
      } else {
        ++it;
      }
    }
    // A scope below another one is covered by it.
    std::sort(due.begin(), due.end());
    std::vector<std::string> scopes;
    for (const std::string& p : due) {
      if (scopes.empty() || !IsUnder(p, scopes.back())) scopes.push_back(p);
    }
    return scopes;
  }

  void ApplyLoop() {
    {
      SyncReport report;
      const Status st = reconciler_.Reconcile(roots_, &report);
      std::lock_guard<std::mutex> lock(mu_);
      Merge(roots_, report);
      if (!st.ok()) error_ = st;
      started_ = true;
    }
    auto last_root_check = Clock::now();
    while (!stopping_) {
      std::vector<std::string> scopes;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(50));
        if (stopping_) break;
        if (!error_.ok() || !pipeline_->status().ok()) continue;
        if (Clock::now() - last_root_check < std::chrono::seconds(1) && !HasDueLocked()) continue;
        last_root_check = Clock::now();
        scopes = TakeDueLocked();
        busy_ = !scopes.empty();
      }
      if (scopes.empty()) continue;
      SyncReport report;
      const Status st = reconciler_.Reconcile(scopes, &report);
      std::lock_guard<std::mutex> lock(mu_);
      Merge(scopes, report);
      if (!st.ok() && error_.ok()) {
        error_ = st;
        spdlog::error("watch stopped: {}", st.ToString());
      }
      busy_ = false;
    }
    pipeline_->StopRetrying();
    pipeline_->Flush();
  }

  // True when root `root` came back as a link to another place: it is not watched through the link
  // (a rescan asked for explicitly still reports it, with the reason, in the notes).
  bool LeadsElsewhereLocked(const std::string& root) {
    if (options_.sync.scan.follow_symlinks) return false;
    const auto real = real_roots_.find(root);
    if (real == real_roots_.end()) return false;
    const std::string why = ingest::MovedRootReason({root, real->second});
    if (why.empty()) return false;
    const std::string note = why + ": not watched";
    if (std::find(notes_.begin(), notes_.end(), note) == notes_.end()) {
      spdlog::warn("{}", note);
      notes_.push_back(note);
    }
    return true;
  }

  bool HasDueLocked() const {
    const auto now = Clock::now();
    return std::any_of(pending_.begin(), pending_.end(), [&](const auto& p) { return Ready(p.second, now); });
  }

  // Adds what reconciling `scopes` found: what is unavailable under them now replaces what was.
  void Merge(std::span<const std::string> scopes, const SyncReport& r) {
    totals_.scanned += r.scanned;
    totals_.unchanged += r.unchanged;
    totals_.moved += r.moved;
    totals_.removed += r.removed;
    std::erase_if(unavailable_, [&](const UnavailableFolder& u) {
      return std::any_of(scopes.begin(), scopes.end(), [&](const std::string& s) { return IsUnder(u.path, s); });
    });
    unavailable_.insert(unavailable_.end(), r.unavailable.begin(), r.unavailable.end());
    // Other warnings are shown with the status until the watcher stops; the same warning once.
    for (const std::string& w : r.warnings) {
      const bool is_unavailable = std::any_of(r.unavailable.begin(), r.unavailable.end(),
                                              [&](const UnavailableFolder& u) { return u.reason == w; });
      if (is_unavailable || notes_.size() >= 50 || std::find(notes_.begin(), notes_.end(), w) != notes_.end()) continue;
      notes_.push_back(w);
    }
  }

  const std::vector<std::string> roots_;
  const WatchOptions options_;
  std::unique_ptr<ingest::Sink> pipeline_;  // the pipeline, or the job queue in scale-out mode
  ingest::Reconciler reconciler_;
  int inotify_fd_ = -1;
  int wake_fd_ = -1;
  std::thread events_thread_, apply_thread_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mu_;  // guards what follows
  std::condition_variable cv_;
  std::unordered_map<int, std::string> wd_path_;
  std::map<std::string, Pending> pending_;
  std::map<std::string, Clock::time_point> poll_due_;  // roots rescanned periodically → next rescan
  std::set<std::string> missing_roots_;
  std::map<std::string, std::string> real_roots_;  // root → where it led when recorded (set before threads start)
  std::vector<std::string> notes_;
  std::vector<UnavailableFolder> unavailable_;  // guarded by mu_
  SyncReport totals_;
  int64_t rescans_ = 0;
  bool started_ = false;
  bool busy_ = false;
  Status error_;
};

}  // namespace

Result<std::unique_ptr<FolderWatcher>> FolderWatcher::Start(std::span<const std::string> roots_in,
                                                            const ClipModel& model, Collection* collection,
                                                            const WatchOptions& options) {
  if (roots_in.empty()) return Status::InvalidArgument("no folder to watch");
  ASSIGN_OR_RETURN(const std::vector<CollectionRoot> recorded,
                   ingest::RecordRoots(roots_in, collection, options.sync.scan));
  auto watcher = std::make_unique<Watcher>(recorded, model, collection, options);
  RETURN_IF_ERROR(watcher->Init());
  return std::unique_ptr<FolderWatcher>(std::move(watcher));
}

}  // namespace imgsearch
