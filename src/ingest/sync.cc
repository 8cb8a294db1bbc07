// One-shot folder sync: diff the files on disk against the catalog and apply the difference.
#include <spdlog/spdlog.h>
#include <xxhash.h>

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "base/file.h"
#include "imgsearch/ingest.h"
#include "ingest/scanner.h"

namespace imgsearch {

namespace {

using ingest::FileInfo;

constexpr size_t kMaxFileBytes = size_t{1} << 30;

std::string HashHex(std::span<const uint8_t> bytes) {
  const XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  char hex[33];
  std::snprintf(hex, sizeof(hex), "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return hex;
}

ImageRecord BaseRecord(const FileInfo& f, const std::string& hash) {
  ImageRecord r;
  r.path = f.path;
  r.size_bytes = f.size_bytes;
  r.mtime_ns = f.mtime_ns;
  r.content_hash = hash;
  return r;
}

void Describe(const DecodedImage& d, ImageRecord* r) {
  r->width = d.image.width;
  r->height = d.image.height;
  r->format = ImageFormatName(d.format);
  r->capture_time = d.capture_time;
  r->status = ImageStatus::kIndexed;
}

// A file that needs writing: new, changed, or a copy of known content.
struct Pending {
  FileInfo file;
  std::string hash;
  std::optional<ImageRecord> existing;
  bool moved = false;  // arrived here by a rename we already applied
};

class Syncer {
 public:
  Syncer(const ClipModel& model, Collection* collection, const SyncOptions& options, SyncReport* report)
      : model_(model), collection_(collection), options_(options), report_(report) {}

  Status Run(std::span<const std::string> roots_in) {
    std::vector<std::string> roots;
    for (const std::string& r : roots_in) roots.push_back(ingest::NormaliseRoot(r));

    std::map<std::string, FileInfo> on_disk;
    std::vector<std::string> warnings;
    for (const std::string& root : roots) {
      ASSIGN_OR_RETURN(std::vector<FileInfo> files, ingest::ScanTree(root, options_.scan, &warnings));
      for (FileInfo& f : files) on_disk.emplace(f.path, std::move(f));
    }
    for (const std::string& w : warnings) spdlog::warn("{}", w);
    report_->scanned = static_cast<int64_t>(on_disk.size());

    std::unordered_map<std::string, ImageRecord> known;
    RETURN_IF_ERROR(collection_->ForEach([&](const ImageRecord& r) {
      for (const std::string& root : roots) {
        if (ingest::IsUnder(r.path, root)) {
          known.emplace(r.path, r);
          break;
        }
      }
      return true;
    }));

    return Reconcile(on_disk, known);
  }

  // Makes the collection's `known` records match the files `on_disk`.
  Status Reconcile(const std::map<std::string, FileInfo>& on_disk,
                   const std::unordered_map<std::string, ImageRecord>& known) {
    // Files whose size or mtime changed (or that are new) are read and hashed; the rest are not.
    std::vector<Pending> pending;
    std::vector<std::string> gone;  // known paths that are no longer images on disk
    for (const auto& [path, r] : known) {
      if (!on_disk.contains(path)) gone.push_back(path);
    }
    for (const auto& [path, f] : on_disk) {
      auto it = known.find(path);
      if (it != known.end() && it->second.size_bytes == f.size_bytes && it->second.mtime_ns == f.mtime_ns) {
        ++report_->unchanged;
        continue;
      }
      auto bytes = ReadFileBytes(path, kMaxFileBytes);
      if (!bytes.ok()) {
        if (bytes.status().code() == StatusCode::kNotFound) continue;  // deleted while we scanned
        RETURN_IF_ERROR(RecordFailure(f, "", bytes.status().message()));
        continue;
      }
      if (DetectImageFormat(*bytes) == ImageFormat::kUnknown && !bytes->empty()) {
        if (it != known.end()) gone.push_back(path);  // replaced by something that is not an image
        continue;
      }
      Pending p{f, HashHex(*bytes), std::nullopt};
      if (it != known.end()) p.existing = it->second;
      pending.push_back(std::move(p));
    }

    // A file gone from disk whose content turns up at a new path was renamed or moved.
    std::unordered_multimap<std::string, std::string> gone_by_hash;
    for (const std::string& path : gone) {
      const ImageRecord& r = known.at(path);
      if (r.status == ImageStatus::kIndexed && !on_disk.contains(path)) gone_by_hash.emplace(r.content_hash, path);
    }
    std::set<std::string> moved_away;
    for (Pending& p : pending) {
      if (p.existing) continue;
      auto it = gone_by_hash.find(p.hash);
      if (it == gone_by_hash.end()) continue;
      RETURN_IF_ERROR(collection_->Move(it->second, p.file.path));
      ASSIGN_OR_RETURN(std::optional<ImageRecord> moved, collection_->GetByPath(p.file.path));
      p.existing = moved;
      p.moved = true;
      moved_away.insert(it->second);
      gone_by_hash.erase(it);
      ++report_->moved;
    }
    std::vector<std::string> to_remove;
    for (const std::string& path : gone) {
      if (!moved_away.contains(path)) to_remove.push_back(path);
    }
    if (!to_remove.empty()) {
      ASSIGN_OR_RETURN(int64_t removed, collection_->Remove(to_remove));
      report_->removed += removed;
    }

    return Apply(pending);
  }

 private:
  Status RecordFailure(const FileInfo& f, const std::string& hash, const std::string& reason) {
    ImageUpsert u;
    u.record = BaseRecord(f, hash);
    u.record.status = ImageStatus::kFailed;
    u.record.error = reason;
    ++report_->failed;
    report_->failures.emplace_back(f.path, reason);
    return Write({u});
  }

  Status Write(std::vector<ImageUpsert> batch) {
    if (batch.empty()) return Status::Ok();
    auto ids = collection_->Upsert(batch);
    return ids.ok() ? Status::Ok() : ids.status();
  }

  Status Apply(std::vector<Pending>& pending) {
    const int size = model_.image_size();
    const int dim = model_.embedding_dim();
    const size_t image_floats = 3 * static_cast<size_t>(size) * size;
    std::vector<ImageUpsert> to_embed, ready;
    std::vector<float> pixels;
    int64_t done = 0;
    const int64_t total = static_cast<int64_t>(pending.size());

    auto flush_embeddings = [&]() -> Status {
      if (to_embed.empty()) return Status::Ok();
      std::vector<float> out(to_embed.size() * static_cast<size_t>(dim));
      RETURN_IF_ERROR(model_.EncodeImages(pixels.data(), static_cast<int>(to_embed.size()), out.data()));
      for (size_t i = 0; i < to_embed.size(); ++i) {
        to_embed[i].embedding.assign(out.begin() + i * dim, out.begin() + (i + 1) * dim);
      }
      report_->embedded += static_cast<int64_t>(to_embed.size());
      RETURN_IF_ERROR(Write(std::move(to_embed)));
      to_embed.clear();
      pixels.clear();
      return Status::Ok();
    };

    for (Pending& p : pending) {
      const bool was_known = p.existing.has_value();
      ImageUpsert u;
      u.record = BaseRecord(p.file, p.hash);
      if (was_known && p.existing->content_hash == p.hash && p.existing->status == ImageStatus::kIndexed) {
        // Touched, or moved here: same content, nothing to embed.
        u.record.width = p.existing->width;
        u.record.height = p.existing->height;
        u.record.format = p.existing->format;
        u.record.capture_time = p.existing->capture_time;
        ready.push_back(std::move(u));
        if (!p.moved) ++report_->updated;
      } else {
        auto bytes = ReadFileBytes(p.file.path, kMaxFileBytes);
        Result<DecodedImage> decoded = bytes.ok() ? DecodeImage(*bytes, options_.decode) : bytes.status();
        if (!decoded.ok()) {
          RETURN_IF_ERROR(RecordFailure(p.file, p.hash, decoded.status().message()));
        } else {
          Describe(*decoded, &u.record);
          ASSIGN_OR_RETURN(bool known_content, collection_->HasEmbeddingFor(p.hash));
          if (known_content) {
            ready.push_back(std::move(u));  // a copy of something already embedded
          } else {
            pixels.resize((to_embed.size() + 1) * image_floats);
            NormalizeForClip(ResizeAndCropForClip(decoded->image, size),
                             pixels.data() + to_embed.size() * image_floats);
            to_embed.push_back(std::move(u));
          }
          ++(was_known ? report_->updated : report_->added);
        }
      }
      if (static_cast<int>(to_embed.size()) >= options_.batch_size) RETURN_IF_ERROR(flush_embeddings());
      if (static_cast<int>(ready.size()) >= 256) {
        RETURN_IF_ERROR(Write(std::move(ready)));
        ready.clear();
      }
      ++done;
      if (options_.on_progress) options_.on_progress(done, total);
    }
    RETURN_IF_ERROR(flush_embeddings());
    return Write(std::move(ready));
  }

  const ClipModel& model_;
  Collection* collection_;
  const SyncOptions& options_;
  SyncReport* report_;
};

}  // namespace

Result<SyncReport> ReindexCollection(const std::string& dir, const ClipModel& model, const SyncOptions& options) {
  namespace fs = std::filesystem;
  const auto start = std::chrono::steady_clock::now();
  // Held open (read-write, any model) for the whole run: no other process may write meanwhile.
  auto old = OpenCollection(dir, nullptr, CollectionOptions{.read_only = false, .create_if_missing = false});
  if (!old.ok()) return old.status();
  std::map<std::string, FileInfo> files;
  RETURN_IF_ERROR((*old)->ForEach([&](const ImageRecord& r) {
    FileInfo f;
    struct stat st {};
    if (::stat(r.path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      f.path = r.path;
      f.size_bytes = st.st_size;
      f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
      files.emplace(r.path, f);
    }
    return true;
  }));

  const std::string staging = dir + ".reindex";
  std::error_code ec;
  fs::remove_all(staging, ec);
  SyncReport report;
  {
    const ModelIdentity identity = IdentityOf(model);
    auto fresh = OpenCollection(staging, &identity);
    if (!fresh.ok()) return fresh.status();
    Syncer syncer(model, fresh->get(), options, &report);
    RETURN_IF_ERROR(syncer.Reconcile(files, {}));
    report.scanned = static_cast<int64_t>(files.size());
  }
  // Swap the directories: the old collection stays intact until the new one is complete.
  old = Status::Internal("closed");
  const std::string retired = dir + ".old";
  fs::remove_all(retired, ec);
  fs::rename(dir, retired, ec);
  if (ec) return Status::IoError("cannot move " + dir + " aside: " + ec.message());
  fs::rename(staging, dir, ec);
  if (ec) {
    fs::rename(retired, dir);
    return Status::IoError("cannot install the re-embedded collection: " + ec.message());
  }
  fs::remove_all(retired, ec);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

ModelIdentity IdentityOf(const ClipModel& model) {
  const ModelInfo& info = model.info();
  std::string name = info.dir;
  const size_t slash = name.find_last_of('/');
  if (slash != std::string::npos && slash + 1 < name.size()) name = name.substr(slash + 1);
  return {info.fingerprint, name, info.embedding_dim};
}

Result<SyncReport> SyncFolders(std::span<const std::string> roots, const ClipModel& model, Collection* collection,
                               const SyncOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  SyncReport report;
  Syncer syncer(model, collection, options, &report);
  RETURN_IF_ERROR(syncer.Run(roots));
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace imgsearch
