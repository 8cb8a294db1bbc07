// The SQLite catalog: one row per image, one vector per distinct content, a change log that lets
// the in-memory ANN index catch up from its last snapshot, and the model the vectors came from.
//
// Schema (PRAGMA user_version = kSchemaVersion):
//   meta(key, value)                      model_id, model_name, dim
//   vectors(id, hash UNIQUE, dim, data)   float32 little-endian × dim
//   images(id, path UNIQUE, size_bytes, mtime_ns, content_hash, width, height, format,
//          capture_time, indexed_at_ms, status, error)
//   changes(seq, image_id)                every write that changes what search sees
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "imgsearch/collection.h"
#include "store/sqlite.h"

namespace imgsearch::store {

inline constexpr int kSchemaVersion = 1;

class Catalog {
 public:
  static Result<std::unique_ptr<Catalog>> Open(const std::string& path, bool read_only);

  int schema_version() const { return schema_version_; }

  Result<std::optional<std::string>> GetMeta(const std::string& key);
  Status SetMeta(const std::string& key, const std::string& value);

  // Writes in one transaction. Returns the image ids, and appends their change records.
  Result<std::vector<int64_t>> Upsert(std::span<const ImageUpsert> batch, int dim);
  // Returns the ids removed.
  Result<std::vector<int64_t>> Remove(std::span<const std::string> paths);
  // Returns the id moved, or nullopt when `from` is unknown. Fails if `to` is taken.
  Result<std::optional<int64_t>> Move(const std::string& from, const std::string& to);

  Result<std::optional<ImageRecord>> GetById(int64_t id);
  Result<std::optional<ImageRecord>> GetByPath(const std::string& path);
  Result<std::vector<float>> GetEmbedding(int64_t id);
  Result<bool> HasVector(const std::string& hash);

  Result<int64_t> CountByStatus(ImageStatus status);
  Result<int64_t> CountVectors();
  Status ForEach(const std::function<bool(const ImageRecord&)>& visit, std::optional<ImageStatus> status,
                 const std::string& under = "");

  // Every indexed image with its vector, for building the index.
  Status ForEachIndexed(const std::function<void(const ImageRecord&, std::span<const float>)>& visit);
  // The ids changed after `seq`, and the newest seq.
  Status ChangesSince(int64_t seq, std::vector<int64_t>* ids, int64_t* last_seq);
  Result<int64_t> LastChangeSeq();
  Status ForgetChangesUpTo(int64_t seq);

  Status CheckIntegrity();

  // Reads between these two see one consistent state of the catalog, whatever another process
  // commits meanwhile (a read transaction on the reading connection).
  Status BeginConsistentRead();
  void EndConsistentRead();

 private:
  Catalog(Database writer, Database reader) : writer_(std::move(writer)), reader_(std::move(reader)) {}
  Status Migrate(bool read_only);

  std::mutex write_mu_;
  Database writer_;  // guarded by write_mu_
  std::mutex read_mu_;
  Database reader_;  // guarded by read_mu_
  int schema_version_ = 0;
};

}  // namespace imgsearch::store
