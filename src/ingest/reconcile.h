// Comparing parts of the disk with the catalog and applying the difference: renames and deletes
// directly, new and changed files through the pipeline.
#pragma once

#include <atomic>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "imgsearch/collection.h"
#include "imgsearch/ingest.h"
#include "ingest/pipeline.h"
#include "ingest/scanner.h"

namespace imgsearch::ingest {

class Reconciler {
 public:
  Reconciler(Collection* collection, Sink* pipeline, const ScanOptions& scan)
      : collection_(collection), pipeline_(pipeline), scan_(scan) {}

  // Makes the catalog match the disk within each scope: a root, or a folder or file below one (a
  // scope that no longer exists on disk removes what the catalog holds under it). Renames and
  // deletes are applied before returning; new and changed files are submitted to the pipeline
  // (call Pipeline::Flush to wait for them). Counts go to `report`.
  Status Reconcile(std::span<const std::string> scopes, SyncReport* report);

  // Once *stop is true, Reconcile submits nothing more (what it skips is found by the next
  // reconciliation, so nothing is lost).
  void set_stop(const std::atomic<bool>* stop) { stop_ = stop; }

  // The same for an explicit file list against an explicit catalog view.
  Status Apply(const std::map<std::string, FileInfo>& on_disk,
               const std::unordered_map<std::string, ImageRecord>& known, SyncReport* report);

 private:
  // With the catalog mutex held: applies renames and deletes, returns the files to submit.
  Status Diff(const std::map<std::string, FileInfo>& on_disk, const std::unordered_map<std::string, ImageRecord>& known,
              SyncReport* report, std::vector<WorkItem>* work);
  Status Submit(std::vector<WorkItem>& work);
  // kPermissionDenied when the recorded root holding `scope` now leads somewhere other than where
  // it led when recorded (a folder swapped for a link): such a scope is neither scanned nor emptied.
  Status CheckRootLeadsWhereRecorded(const std::string& scope, std::span<const CollectionRoot> roots) const;
  // The recorded root holding `scope` when it is missing or empty (unless ScanOptions::forget_missing):
  // its images are then kept, offline. Empty otherwise.
  std::string OfflineRoot(const std::string& scope, std::span<const CollectionRoot> roots) const;

  Collection* collection_;
  Sink* pipeline_;
  const std::atomic<bool>* stop_ = nullptr;
  const ScanOptions& scan_;
};

}  // namespace imgsearch::ingest
