// The PostgreSQL backend of the collection core (pg_backend.cc), and the writes it shares with the
// workers (a worker writes its results and completes its jobs in one transaction).
#pragma once

#include <pqxx/pqxx>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "imgsearch/collection.h"
#include "scaleout/pg.h"

namespace imgsearch::scaleout {

// The images columns RecordOf reads, in order: the last is the frame times stored with the
// content's vectors (a video's).
inline constexpr const char* kImageColumns =
    "i.id, i.path, i.size_bytes, i.mtime_ns, i.content_hash, i.width, i.height, i.format, i.capture_time, "
    "i.indexed_at_ms, i.status, i.error, (SELECT times FROM imgsearch.vectors WHERE hash = i.content_hash)";
inline constexpr int kImageColumnCount = 13;

ImageRecord RecordOf(const pqxx::row& row);
std::vector<float> VectorOf(const pqxx::field& field);

// Takes kChangeLock for the rest of `w` (every change-sequence write must).
void LockChanges(pqxx::work& w);
// Wakes the search nodes when `w` commits.
void NotifyChanges(pqxx::work& w);

// The collection's writes, inside `w` after LockChanges. Invalid input throws StatusError.
std::vector<int64_t> WriteUpserts(pqxx::work& w, std::span<const ImageUpsert> batch, int dim);
std::vector<int64_t> WriteRemovals(pqxx::work& w, std::span<const std::string> paths);

// The PostgreSQL collection (after the schema is migrated).
Result<std::unique_ptr<Collection>> OpenPgCollection(std::shared_ptr<PgClient> client, const ModelIdentity* model,
                                                     const CollectionOptions& options);

}  // namespace imgsearch::scaleout
