// One-shot folder sync and re-embedding, built from the reconciler and the pipeline.
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "base/file.h"
#include "base/hash.h"
#include "imgsearch/ingest.h"
#include "ingest/pipeline.h"
#include "ingest/reconcile.h"

#include "base/text.h"
#include "ingest/scanner.h"

namespace imgsearch {

namespace ingest {

namespace {

bool SameStat(const ImageRecord& r, const FileInfo& f) {
  return r.size_bytes == f.size_bytes && r.mtime_ns == f.mtime_ns;
}

}  // namespace

Status Reconciler::CheckRootLeadsWhereRecorded(const std::string& scope, std::span<const CollectionRoot> roots) const {
  if (scan_.follow_symlinks) return Status::Ok();
  for (const CollectionRoot& root : roots) {
    if (!IsUnder(scope, root.path)) continue;
    if (const std::string why = MovedRootReason(root); !why.empty()) {
      return Status::PermissionDenied(why +
                                      ": not scanned; run index on it with --follow-symlinks to accept the new "
                                      "place");
    }
  }
  return Status::Ok();
}

std::string Reconciler::OfflineRoot(const std::string& scope, std::span<const CollectionRoot> roots) const {
  if (scan_.forget_missing) return "";
  for (const CollectionRoot& root : roots) {
    if (!IsUnder(scope, root.path)) continue;
    std::error_code ec;
    if (!std::filesystem::is_directory(root.path, ec)) return root.path;
    std::filesystem::directory_iterator it(root.path, ec);
    if (!ec && it == std::filesystem::directory_iterator()) return root.path;
  }
  return "";
}

Status Reconciler::Reconcile(std::span<const std::string> scopes, SyncReport* report) {
  std::map<std::string, FileInfo> on_disk;
  std::unordered_map<std::string, ImageRecord> known;
  std::vector<std::string> warnings;
  std::vector<UnavailableFolder> unavailable;
  ASSIGN_OR_RETURN(const std::vector<CollectionRoot> roots, collection_->Roots());
  std::unique_lock<std::mutex> lock(pipeline_->catalog_mutex());
  for (const std::string& scope : scopes) {
    if (Status moved = CheckRootLeadsWhereRecorded(scope, roots); !moved.ok()) {
      unavailable.push_back({scope, moved.message()});
      continue;  // neither scanned through the link nor emptied: the catalog is left alone
    }
    ScanNotes notes;
    auto files = ScanTree(scope, scan_, &notes);
    warnings.insert(warnings.end(), notes.warnings.begin(), notes.warnings.end());
    if (files.ok()) {
      for (FileInfo& f : *files) on_disk.emplace(f.path, std::move(f));
    } else if (files.status().code() != StatusCode::kNotFound) {
      unavailable.push_back({scope, files.status().message()});
      continue;  // cannot tell what is there: leave the catalog alone
    }
    std::vector<const ImageRecord*> in_scope;
    RETURN_IF_ERROR(collection_->ForEach(
        [&](const ImageRecord& r) {
          in_scope.push_back(&known.emplace(r.path, r).first->second);
          return true;
        },
        std::nullopt, scope));
    // What could not be seen is not deleted: it stays as it was (its stat as recorded).
    auto keep = [&](const ImageRecord& r) { on_disk.emplace(r.path, FileInfo{r.path, r.size_bytes, r.mtime_ns}); };
    if (const std::string offline = OfflineRoot(scope, roots); !offline.empty() && !in_scope.empty()) {
      for (const ImageRecord* r : in_scope) keep(*r);
      unavailable.push_back(
          {offline, "folder " + EscapeForDisplay(offline) + " is missing or empty: its " +
                        std::to_string(in_scope.size()) +
                        " images are kept, offline (a drive or share that is not mounted is not a deletion; they "
                        "return without being embedded again). If it was emptied or removed on purpose, run "
                        "`imgsearch index --forget-missing " +
                        EscapeForDisplay(offline) + "`"});
      continue;
    }
    for (const UnavailableFolder& folder : notes.unreadable) {
      for (const ImageRecord* r : in_scope) {
        if (IsUnder(r->path, folder.path) && !on_disk.contains(r->path)) keep(*r);
      }
      unavailable.push_back(folder);
    }
  }
  for (const UnavailableFolder& u : unavailable) warnings.push_back(u.reason);
  for (const std::string& w : warnings) {
    spdlog::warn("{}", w);
    report->warnings.push_back(w);
  }
  report->unavailable.insert(report->unavailable.end(), unavailable.begin(), unavailable.end());
  report->scanned += static_cast<int64_t>(on_disk.size());
  std::vector<WorkItem> work;
  RETURN_IF_ERROR(Diff(on_disk, known, report, &work));
  lock.unlock();
  return Submit(work);
}

Status Reconciler::Apply(const std::map<std::string, FileInfo>& on_disk,
                         const std::unordered_map<std::string, ImageRecord>& known, SyncReport* report) {
  std::vector<WorkItem> work;
  {
    std::lock_guard<std::mutex> lock(pipeline_->catalog_mutex());
    RETURN_IF_ERROR(Diff(on_disk, known, report, &work));
  }
  return Submit(work);
}

Status Reconciler::Submit(std::vector<WorkItem>& work) {
  for (WorkItem& item : work) {
    if (stop_ != nullptr && *stop_) break;
    if (!pipeline_->Submit(std::move(item))) return pipeline_->status();
  }
  pipeline_->SubmitDone();
  return pipeline_->status();
}

Status Reconciler::Diff(const std::map<std::string, FileInfo>& on_disk,
                        const std::unordered_map<std::string, ImageRecord>& known, SyncReport* report,
                        std::vector<WorkItem>* work_out) {
  std::vector<WorkItem>& work = *work_out;
  {
    std::vector<const ImageRecord*> gone;  // known paths no longer on disk
    for (const auto& [path, r] : known) {
      if (!on_disk.contains(path)) gone.push_back(&r);
    }
    for (const auto& [path, f] : on_disk) {
      auto it = known.find(path);
      if (it != known.end() && SameStat(it->second, f)) {
        ++report->unchanged;
        continue;
      }
      WorkItem item{.file = f};
      if (it != known.end()) item.existing = it->second;
      work.push_back(std::move(item));
    }

    // A vanished file whose content turns up at a new path was renamed or moved: keep its row and
    // embedding. Only new files of the same size as a vanished one are worth hashing to find out.
    std::unordered_multimap<int64_t, const ImageRecord*> gone_by_size;
    for (const ImageRecord* r : gone) {
      if (r->status == ImageStatus::kIndexed) gone_by_size.emplace(r->size_bytes, r);
    }
    std::set<std::string> moved_away;
    for (WorkItem& item : work) {
      if (item.existing || gone_by_size.empty()) continue;
      auto [first, last] = gone_by_size.equal_range(item.file.size_bytes);
      if (first == last) continue;
      Result<std::string> hash = ContentHashOfFile(item.file.path);
      if (!hash.ok()) continue;  // the pipeline will report it
      item.hash = std::move(*hash);
      for (auto it = first; it != last; ++it) {
        if (it->second->content_hash != item.hash) continue;
        RETURN_IF_ERROR(collection_->Move(it->second->path, item.file.path));
        ASSIGN_OR_RETURN(item.existing, collection_->GetByPath(item.file.path));
        item.moved = true;
        moved_away.insert(it->second->path);
        gone_by_size.erase(it);
        ++report->moved;
        break;
      }
    }
    std::vector<std::string> to_remove;
    for (const ImageRecord* r : gone) {
      if (!moved_away.contains(r->path)) to_remove.push_back(r->path);
    }
    if (!to_remove.empty()) {
      ASSIGN_OR_RETURN(int64_t removed, collection_->Remove(to_remove));
      report->removed += removed;
    }
  }
  return Status::Ok();
}

}  // namespace ingest

namespace {

// Runs `reconcile` with a pipeline, reporting progress until everything submitted is written.
Result<SyncReport> RunSync(const ClipModel& model, Collection* collection, const SyncOptions& options,
                           const std::function<Status(ingest::Reconciler&, SyncReport*)>& reconcile) {
  const auto start = std::chrono::steady_clock::now();
  SyncReport report;
  std::unique_ptr<ingest::Sink> sink = ingest::MakeSink(model, collection, options);
  ingest::Sink& pipeline = *sink;
  ingest::Reconciler reconciler(collection, &pipeline, options.scan);
  std::atomic<bool> done{false};
  std::thread progress;
  if (options.on_progress) {
    progress = std::thread([&] {
      while (!done) {
        const PipelineStats s = pipeline.Snapshot();
        options.on_progress(s.done, s.done + s.in_flight);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  Status st = reconcile(reconciler, &report);
  pipeline.Flush();
  done = true;
  if (progress.joinable()) progress.join();
  if (st.ok()) st = pipeline.status();
  if (!st.ok()) return st;
  pipeline.AddTo(&report);
  if (options.on_progress) {
    const PipelineStats s = pipeline.Snapshot();
    options.on_progress(s.done, s.done);
  }
  const PipelineStats s = pipeline.Snapshot();
  report.decode_seconds = s.decode_seconds;
  report.encode_seconds = s.encode_seconds;
  report.write_seconds = s.write_seconds;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace

Result<SyncReport> SyncFolders(std::span<const std::string> roots_in, const ClipModel& model, Collection* collection,
                               const SyncOptions& options) {
  // --forget-missing names folders that may be gone: they are scopes to empty, not roots to record.
  std::vector<std::string> present, gone;
  for (const std::string& path : roots_in) {
    std::error_code ec;
    const bool exists = std::filesystem::exists(path, ec);
    (options.scan.forget_missing && !exists && !ec ? gone : present).push_back(path);
  }
  ASSIGN_OR_RETURN(const std::vector<CollectionRoot> recorded, ingest::RecordRoots(present, collection, options.scan));
  std::vector<std::string> roots = ingest::PathsOf(recorded);
  for (const std::string& path : gone) roots.push_back(NormalisePath(path));
  return RunSync(model, collection, options,
                 [&](ingest::Reconciler& r, SyncReport* report) { return r.Reconcile(roots, report); });
}

Result<SyncReport> ReembedInto(Collection* from, Collection* to, const ClipModel& model, const SyncOptions& options) {
  std::map<std::string, ingest::FileInfo> files;
  RETURN_IF_ERROR(from->ForEach([&](const ImageRecord& r) {
    if (std::optional<ingest::FileInfo> f = ingest::StatFile(r.path)) {
      files.emplace(r.path, std::move(*f));
    } else if (options.queue != nullptr) {
      files.emplace(r.path, ingest::FileInfo{r.path, r.size_bytes, r.mtime_ns});  // maybe only the workers see it
    }
    return true;
  }));
  ASSIGN_OR_RETURN(const std::vector<CollectionRoot> roots, from->Roots());
  RETURN_IF_ERROR(to->AddRoots(roots, RootChange::kAccept));
  ASSIGN_OR_RETURN(SyncReport report, RunSync(model, to, options, [&](ingest::Reconciler& r, SyncReport* rep) {
                     rep->scanned = static_cast<int64_t>(files.size());
                     return r.Apply(files, {}, rep);
                   }));
  // The text images show does not depend on the model: it comes along (for the contents embedded
  // here; what workers embed later is read again).
  // (The ids first: a visitor must not call back into the collection it visits.)
  std::vector<int64_t> ids;
  std::set<std::string> seen;
  RETURN_IF_ERROR(from->ForEach(
      [&](const ImageRecord& r) {
        if (seen.insert(r.content_hash).second) ids.push_back(r.id);
        return true;
      },
      ImageStatus::kIndexed));
  std::vector<ContentText> texts;
  for (const int64_t id : ids) {
    ASSIGN_OR_RETURN(std::optional<ContentText> text, from->GetText(id));
    if (text) texts.push_back(std::move(*text));
    if (texts.size() >= 256) {
      RETURN_IF_ERROR(to->PutTexts(texts));
      texts.clear();
    }
  }
  RETURN_IF_ERROR(to->PutTexts(texts));
  return report;
}

Result<SyncReport> ReindexCollection(const std::string& dir, const ClipModel& model, const SyncOptions& options) {
  namespace fs = std::filesystem;
  // Held open (read-write, any model) for the whole run: no other process may write meanwhile.
  auto old = OpenCollection(dir, nullptr, CollectionOptions{.read_only = false, .create_if_missing = false});
  if (!old.ok()) return old.status();

  const std::string staging = dir + ".reindex";
  std::error_code ec;
  fs::remove_all(staging, ec);
  Result<SyncReport> report = Status::Internal("not run");
  {
    const ModelIdentity identity = IdentityOf(model);
    auto kept = (*old)->Stats();  // the grace period for removed content carries over
    if (!kept.ok()) return kept.status();
    auto fresh = OpenCollection(staging, &identity, {.keep_removed = kept->keep_removed});
    if (!fresh.ok()) return fresh.status();
    report = ReembedInto(old->get(), fresh->get(), model, options);
    if (!report.ok()) return report.status();
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
  return report;
}

ModelIdentity IdentityOf(const ClipModel& model) {
  const ModelInfo& info = model.info();
  std::string name = info.dir;
  const size_t slash = name.find_last_of('/');
  if (slash != std::string::npos && slash + 1 < name.size()) name = name.substr(slash + 1);
  // int8 embeddings stay within cosine 0.99 of fp32, not the 0.999 that lets fp32, bf16 and auto
  // share a collection: they are another identity (one for each activation width), kept apart.
  if (info.activation_bits > 0) {
    const std::string_view suffix = info.activation_bits == 8 ? kInt8IdentitySuffix : kInt8Act7IdentitySuffix;
    return {info.fingerprint + std::string(suffix), name, info.embedding_dim, info.source};
  }
  return {info.fingerprint, name, info.embedding_dim, info.source};
}

}  // namespace imgsearch
