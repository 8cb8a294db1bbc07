// Talking to PostgreSQL: connections that come back after a restart, the schema and its migrations.
//
// Schema `imgsearch` (version in meta.schema_version):
//   meta(key, value)                          schema_version, model_id, model_name, dim, roots
//   vectors(hash, dim, data)                  float32 little-endian × dim, one per distinct content
//   images(id, path, …, status, error, seq)   seq: the change sequence value of the last write
//   removed(image_id, seq)                    deletions, for search nodes catching up
//   jobs(id, path, size_bytes, mtime_ns, generation, not_before, attempts, lease_owner,
//        lease_until, last_error)             the work queue
//   workers(name, started_at, last_seen, …)   (v2) who is working
//
// Every write that changes what search sees takes the transaction-level advisory lock kChangeLock
// before drawing from change_seq, so sequence values commit in order and a reader that has seen
// seq S has seen everything below S.
#pragma once

#include <pqxx/pqxx>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "imgsearch/status.h"

namespace imgsearch::scaleout {

inline constexpr int64_t kChangeLock = 0x696d677365617201;  // "imgsear" 01
inline constexpr int64_t kSchemaLock = 0x696d677365617202;
inline constexpr const char* kChangesChannel = "imgsearch_changes";

// A read of one consistent state of the database.
using Snapshot = pqxx::transaction<pqxx::repeatable_read, pqxx::read_only>;

// Thrown inside PgClient::Run callbacks to return a Status.
struct StatusError {
  Status status;
};

// The URL with any password replaced by ***, for messages.
std::string SafeUrl(const std::string& url);

// `values` as a PostgreSQL array literal ({"a","b\"c"}), for ANY($1) and unnest($1).
std::string ArrayLiteral(const std::vector<std::string>& values);

// One connection attempt (5 s timeout, notices off); throws pqxx::broken_connection on failure.
std::unique_ptr<pqxx::connection> OpenConnection(const std::string& url);

// True for failures that a new connection may cure: a broken connection, the server shutting down
// or starting up, serialization failures and deadlocks.
bool Retryable(const std::exception& e);

// How long commands wait for an unreachable database: $IMGSEARCH_PG_RETRY_SECONDS, else 60 s.
// (Workers and search nodes' change feeds wait as long as it takes.)
std::chrono::seconds RetryFor();

// A pool of connections to one database. Run() hands a callback a live connection; when the
// connection breaks (or the server restarts) the callback runs again on a new one, backing off
// from 50 ms to 2 s, for up to retry_for in total (then: kUnavailable).
class PgClient {
 public:
  explicit PgClient(std::string url, std::chrono::seconds retry_for = std::chrono::seconds(60));
  ~PgClient();

  const std::string& url() const { return url_; }

  // The callback may throw pqxx errors (retried when Retryable, else a Status) or StatusError.
  Status Run(const std::function<void(pqxx::connection&)>& fn);

 private:
  std::unique_ptr<pqxx::connection> Take();
  void Give(std::unique_ptr<pqxx::connection> c);

  const std::string url_;
  const std::chrono::seconds retry_for_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;  // guarded by mu_
  int open_ = 0;                                         // connections out or idle; guarded by mu_
};

// Brings the schema to `target` (≤ kPgSchemaVersion), or refuses when the database is newer.
// Returns the version found before.
Result<int> MigrateSchema(PgClient* client, int target);

// For a read-only open, which never writes: Ok when the schema is this version's; kNotFound when
// there is none; kUnsupported, naming both versions, when it is older or newer.
Status CheckSchemaForReading(PgClient* client);

}  // namespace imgsearch::scaleout
