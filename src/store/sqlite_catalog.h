// The SQLite catalog: the embedded collection's backend, in one folder. One row per image, one
// vector per distinct content, a change log that lets the in-memory index catch up from its last
// snapshot, and the model the vectors came from. A writer holds the folder's LOCK file.
//
// Folder: catalog.db (+ -wal, -shm), ann.hnsw (+ .meta, .lock: the core's snapshot), LOCK.
// Schema (PRAGMA user_version = kSchemaVersion):
//   meta(key, value)                      model_id, model_name, dim, roots, keep_removed_ms
//   vectors(id, hash UNIQUE, dim, data,   float32 little-endian × dim (a video: × dim per frame, the
//           released_at_ms, times)        frames' times in `times`, float32 seconds); released_at_ms
//                                         set while no image has the content (the grace period)
//   images(id, path UNIQUE, size_bytes, mtime_ns, content_hash, width, height, format,
//          capture_time, indexed_at_ms, status, error)
//   changes(seq AUTOINCREMENT, image_id)  every write that changes what search sees; a prefix is
//                                         dropped once a snapshot holds it, so seq values are
//                                         contiguous and the newest is sqlite_sequence's
//   texts(id, hash UNIQUE, languages,     the text a content shows (imgsearch/ocr.h), deleted with
//         text, words)                    its vector; words: WordsJson
//   texts_fts(text)                       FTS5 over texts.text with the trigram tokenizer (any
//                                         part of a word, any case), kept by triggers
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "imgsearch/collection.h"
#include "store/catalog_backend.h"
#include "store/sqlite.h"

namespace imgsearch::store {

inline constexpr int kSchemaVersion = 4;

class DirLock;

class SqliteCatalog final : public CatalogBackend {
 public:
  // Opens (creating when allowed) the catalog in `dir`; a writer first takes the folder's lock.
  static Result<std::unique_ptr<SqliteCatalog>> Open(const std::string& dir, const CollectionOptions& options);
  ~SqliteCatalog() override;

  const std::string& where() const override { return dir_; }
  bool sole_writer() const override { return !read_only_; }
  std::string SnapshotPath() const override;
  bool may_write_snapshot() const override { return !read_only_; }

  Result<ModelIdentity> ReadModel() override;
  Result<ModelIdentity> BindModel(const ModelIdentity& model) override;
  Result<std::optional<std::string>> GetMeta(const std::string& key) override;
  Status UpdateMeta(
      const std::string& key,
      const std::function<Result<std::optional<std::string>>(const std::optional<std::string>&)>& change) override;

  Result<std::vector<int64_t>> Upsert(std::span<const ImageUpsert> batch, int dim) override;
  Result<std::vector<int64_t>> Remove(std::span<const std::string> paths) override;
  Result<std::optional<int64_t>> Move(const std::string& from, const std::string& to) override;

  Result<std::optional<ImageRecord>> GetById(int64_t id) override;
  Result<std::optional<ImageRecord>> GetByPath(const std::string& path) override;
  Result<std::vector<float>> GetVectors(int64_t id) override;
  Result<bool> HasVector(const std::string& hash) override;
  Result<BackendCounts> Counts() override;
  Status ForEach(const std::function<bool(const ImageRecord&)>& visit, std::optional<ImageStatus> status,
                 const std::string& under) override;

  Result<std::vector<TextJob>> PendingTexts(int limit) override;
  Status PutTexts(std::span<const ContentText> texts) override;
  Result<std::optional<ContentText>> GetText(int64_t id) override;
  Result<std::vector<TextCandidate>> SearchText(std::span<const std::string> words, int limit) override;

  Result<int64_t> ReadIndexed(const std::function<Status(const ImageRecord&, std::span<const float>)>& visit) override;
  Result<int64_t> ReadIndexedRecords(const std::function<void(const ImageRecord&)>& visit) override;
  Result<ChangeSet> ChangesSince(int64_t seq) override;
  Result<int64_t> LastSeq() override;
  Status ForgetChangesUpTo(int64_t seq) override;
  Status PurgeReleased() override;
  // Another process writes through its own connection: look again every half second.
  bool WaitForChanges(std::chrono::milliseconds timeout, const std::atomic<bool>& stop) override;

  Status CheckIntegrity() override;

 private:
  SqliteCatalog(std::string dir, bool read_only, std::unique_ptr<DirLock> lock, Database writer, Database reader);
  Status Migrate();
  int64_t FileBytes(const char* name) const;
  // Runs `fn` inside one read transaction on the reading connection (read_mu_ held throughout).
  Status ReadConsistently(const std::function<Status()>& fn);
  Result<int64_t> LastSeqLocked();

  const std::string dir_;
  const bool read_only_;
  std::unique_ptr<DirLock> lock_;
  std::mutex write_mu_;
  Database writer_;  // guarded by write_mu_
  std::mutex read_mu_;
  Database reader_;  // guarded by read_mu_
  int schema_version_ = 0;
};

}  // namespace imgsearch::store
