#include "store/sqlite_catalog.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/text.h"
#include "store/collection_meta.h"

namespace imgsearch::store {

namespace {

// An image row, and the frame times stored with its content's vectors (a video's).
constexpr const char* kImageColumns =
    "id, path, size_bytes, mtime_ns, content_hash, width, height, format, capture_time, indexed_at_ms, status, "
    "error, (SELECT times FROM vectors WHERE hash = images.content_hash)";

ImageRecord ReadImage(const Statement& s) {
  ImageRecord r;
  r.id = s.Int(0);
  r.path = s.Text(1);
  r.size_bytes = s.Int(2);
  r.mtime_ns = s.Int(3);
  r.content_hash = s.Text(4);
  r.width = static_cast<int>(s.Int(5));
  r.height = static_cast<int>(s.Int(6));
  r.format = s.Text(7);
  r.capture_time = s.OptionalText(8);
  r.indexed_at_ms = s.Int(9);
  r.status = s.Int(10) == static_cast<int>(ImageStatus::kFailed) ? ImageStatus::kFailed : ImageStatus::kIndexed;
  r.error = s.Text(11);
  r.frame_times = FloatsOf(s.Blob(12));
  return r;
}

std::span<const uint8_t> BlobOf(std::span<const float> v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)};
}

// Images and videos in use whose content has no text yet: the text stage's work, taken newest
// first (what was just added is what people look for).
constexpr const char* kPendingTexts =
    "FROM vectors v WHERE v.released_at_ms IS NULL AND NOT EXISTS (SELECT 1 FROM texts t WHERE "
    "t.hash = v.hash) AND EXISTS (SELECT 1 FROM images i WHERE i.content_hash = v.hash AND i.status = 1)";
const std::string kPendingTextCount = std::string("(SELECT COUNT(*) ") + kPendingTexts + ")";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Migrations from version i to i + 1, applied in order in one transaction each.
constexpr const char* kMigrations[] = {
    // 0 → 1
    R"sql(
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE vectors(
      id INTEGER PRIMARY KEY,
      hash TEXT NOT NULL UNIQUE,
      dim INTEGER NOT NULL,
      data BLOB NOT NULL);
    CREATE TABLE images(
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      path TEXT NOT NULL UNIQUE,
      size_bytes INTEGER NOT NULL,
      mtime_ns INTEGER NOT NULL,
      content_hash TEXT NOT NULL DEFAULT '',
      width INTEGER NOT NULL DEFAULT 0,
      height INTEGER NOT NULL DEFAULT 0,
      format TEXT NOT NULL DEFAULT '',
      capture_time TEXT,
      indexed_at_ms INTEGER NOT NULL,
      status INTEGER NOT NULL,
      error TEXT NOT NULL DEFAULT '');
    CREATE INDEX images_by_hash ON images(content_hash);
    CREATE INDEX images_by_status ON images(status);
    CREATE TABLE changes(seq INTEGER PRIMARY KEY AUTOINCREMENT, image_id INTEGER NOT NULL);
    )sql",
    // 1 → 2: vectors no image uses are kept for a grace period (catalog_backend.h)
    R"sql(
    ALTER TABLE vectors ADD COLUMN released_at_ms INTEGER;
    CREATE INDEX vectors_released ON vectors(released_at_ms) WHERE released_at_ms IS NOT NULL;
    )sql",
    // 2 → 3: videos. A video's content has one vector per sampled frame (data holds them one after
    // another) and the frames' times (float32 seconds, in the same order); NULL for a still image.
    R"sql(
    ALTER TABLE vectors ADD COLUMN times BLOB;
    )sql",
    // 3 → 4: the text images show, searchable by any part of a word (FTS5's trigram tokenizer).
    R"sql(
    CREATE TABLE texts(
      id INTEGER PRIMARY KEY,
      hash TEXT NOT NULL UNIQUE,
      languages TEXT NOT NULL,
      text TEXT NOT NULL,
      words TEXT NOT NULL);
    CREATE VIRTUAL TABLE texts_fts USING fts5(text, content='texts', content_rowid='id', tokenize='trigram');
    CREATE TRIGGER texts_added AFTER INSERT ON texts BEGIN
      INSERT INTO texts_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER texts_removed AFTER DELETE ON texts BEGIN
      INSERT INTO texts_fts(texts_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    CREATE TRIGGER texts_changed AFTER UPDATE ON texts BEGIN
      INSERT INTO texts_fts(texts_fts, rowid, text) VALUES ('delete', old.id, old.text);
      INSERT INTO texts_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER vectors_removed AFTER DELETE ON vectors BEGIN
      DELETE FROM texts WHERE hash = old.hash;
    END;
    )sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

// What every write does after touching an image row: release the vector its old content left
// without any image (kept for the collection's grace period, then deleted), and append the image
// to the change log.
class ChangeRecorder {
 public:
  static Result<ChangeRecorder> Prepare(Database* db) {
    ASSIGN_OR_RETURN(Statement release, db->Prepare("UPDATE vectors SET released_at_ms = ?2 WHERE hash = ?1 AND "
                                                    "released_at_ms IS NULL AND NOT EXISTS "
                                                    "(SELECT 1 FROM images WHERE content_hash = ?1)"));
    // Only what no image uses, whatever the mark says: a writer of an older imgsearch reuses
    // vectors without clearing it (such marks are cleared first).
    ASSIGN_OR_RETURN(Statement unmark,
                     db->Prepare("UPDATE vectors SET released_at_ms = NULL WHERE released_at_ms IS NOT "
                                 "NULL AND EXISTS (SELECT 1 FROM images WHERE content_hash = "
                                 "vectors.hash)"));
    ASSIGN_OR_RETURN(Statement purge, db->Prepare("DELETE FROM vectors WHERE released_at_ms <= ? AND NOT EXISTS "
                                                  "(SELECT 1 FROM images WHERE content_hash = vectors.hash)"));
    ASSIGN_OR_RETURN(Statement keep,
                     db->Prepare(std::string("SELECT value FROM meta WHERE key = '") + kKeepRemovedKey + "'"));
    ASSIGN_OR_RETURN(Statement log, db->Prepare("INSERT INTO changes(image_id) VALUES (?)"));
    return ChangeRecorder(std::move(release), std::move(unmark), std::move(purge), std::move(keep), std::move(log));
  }

  // `released_hash`: content the image no longer has (empty: none).
  Status Record(int64_t image_id, const std::string& released_hash) {
    if (!released_hash.empty()) released_.push_back(released_hash);
    log_change_.Bind(1, image_id);
    return log_change_.Run();
  }

  // Releases the vectors this transaction left without any image, and deletes those released longer
  // ago than the grace period. Run once every row of the transaction is written: a later row of
  // the same batch may be a copy reusing the vector.
  Status ReleaseOrphans() {
    const int64_t now = NowMs();
    for (const std::string& hash : released_) {
      release_.Bind(1, std::string_view(hash)).Bind(2, now);
      RETURN_IF_ERROR(release_.Run());
    }
    released_.clear();
    ASSIGN_OR_RETURN(bool stored, keep_removed_.Step());
    const std::chrono::milliseconds keep =
        KeepRemovedFrom(stored ? std::optional<std::string>(keep_removed_.Text(0)) : std::nullopt);
    keep_removed_.Reset();
    RETURN_IF_ERROR(unmark_.Run());
    purge_.Bind(1, now - keep.count());
    return purge_.Run();
  }

 private:
  ChangeRecorder(Statement release, Statement unmark, Statement purge, Statement keep, Statement log)
      : release_(std::move(release)),
        unmark_(std::move(unmark)),
        purge_(std::move(purge)),
        keep_removed_(std::move(keep)),
        log_change_(std::move(log)) {}
  Statement release_;
  Statement unmark_;
  Statement purge_;
  Statement keep_removed_;
  Statement log_change_;
  std::vector<std::string> released_;
};

}  // namespace

constexpr const char* kCatalogFile = "catalog.db";
constexpr const char* kSnapshotFile = "ann.hnsw";
constexpr const char* kLockFile = "LOCK";

// An exclusive advisory lock on DIR/LOCK, so that two processes never write one collection. The
// holder writes its process id and command line into the file, so a refusal can name it.
class DirLock {
 public:
  static Result<std::unique_ptr<DirLock>> Acquire(const std::string& dir) {
    const std::string path = dir + "/" + kLockFile;
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Status::IoError("cannot open " + path + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      char holder[512] = {};
      const ssize_t n = ::pread(fd, holder, sizeof(holder) - 1, 0);
      ::close(fd);
      std::string who = n > 0 ? std::string(holder, static_cast<size_t>(n)) : "";
      while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
      return Status::Unavailable("collection " + dir + " is being written by another imgsearch process" +
                                 (who.empty() ? "" : " (" + who + ")") +
                                 "; stop it first (search, list and stats can read the collection meanwhile)");
    }
    // "pid 1234: imgsearch serve --db …", for the message above in another process.
    std::string me = "pid " + std::to_string(::getpid()) + ":";
    // /proc files report no size: read until the end.
    if (std::ifstream cmdline("/proc/self/cmdline", std::ios::binary); cmdline) {
      std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
      std::replace(args.begin(), args.end(), '\0', ' ');
      me += " " + args;
    }
    me.resize(std::min<size_t>(me.size(), 500));
    if (::ftruncate(fd, 0) == 0 && ::pwrite(fd, me.data(), me.size(), 0) < 0) {
      // The lock holds without its note; only the message above is poorer.
    }
    return std::unique_ptr<DirLock>(new DirLock(fd));
  }
  ~DirLock() { ::close(fd_); }

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

static bool CatalogExists(const std::string& dir) {
  std::error_code ec;
  return std::filesystem::exists(dir + "/" + kCatalogFile, ec);
}

Result<std::unique_ptr<SqliteCatalog>> SqliteCatalog::Open(const std::string& dir, const CollectionOptions& options) {
  if (!CatalogExists(dir)) {
    if (options.read_only || !options.create_if_missing) {
      return Status::NotFound("no collection at " + dir + " (index some images into it first)");
    }
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status::IoError("cannot create " + dir + ": " + ec.message());
  }
  std::unique_ptr<DirLock> lock;
  if (!options.read_only) {
    ASSIGN_OR_RETURN(lock, DirLock::Acquire(dir));
  }
  const std::string path = dir + "/" + kCatalogFile;
  const Database::Mode mode = options.read_only ? Database::Mode::kReadOnly : Database::Mode::kReadWrite;
  ASSIGN_OR_RETURN(Database writer, Database::Open(path, mode));
  ASSIGN_OR_RETURN(Database reader, Database::Open(path, Database::Mode::kReadOnly));
  std::unique_ptr<SqliteCatalog> catalog(
      new SqliteCatalog(dir, options.read_only, std::move(lock), std::move(writer), std::move(reader)));
  RETURN_IF_ERROR(catalog->Migrate());
  return catalog;
}

SqliteCatalog::SqliteCatalog(std::string dir, bool read_only, std::unique_ptr<DirLock> lock, Database writer,
                             Database reader)
    : dir_(std::move(dir)),
      read_only_(read_only),
      lock_(std::move(lock)),
      writer_(std::move(writer)),
      reader_(std::move(reader)) {}

SqliteCatalog::~SqliteCatalog() = default;

std::string SqliteCatalog::SnapshotPath() const { return dir_ + "/" + kSnapshotFile; }

Status SqliteCatalog::Migrate() {
  std::lock_guard<std::mutex> lock(write_mu_);
  ASSIGN_OR_RETURN(Statement version_stmt, writer_.Prepare("PRAGMA user_version"));
  ASSIGN_OR_RETURN(bool row, version_stmt.Step());
  int version = row ? static_cast<int>(version_stmt.Int(0)) : 0;
  if (version > kSchemaVersion) {
    return Status::Unsupported(writer_.path() + " has schema version " + std::to_string(version) +
                               ", newer than this imgsearch understands (" + std::to_string(kSchemaVersion) +
                               "); upgrade imgsearch");
  }
  if (version < kSchemaVersion && read_only_) {
    return Status::Unsupported(writer_.path() + " has schema version " + std::to_string(version) +
                               ", older than this imgsearch reads (" + std::to_string(kSchemaVersion) +
                               "); reading never changes it: run `imgsearch index --db " + dir_ +
                               "` (or watch, or serve) once to upgrade it");
  }
  while (version < kSchemaVersion) {
    ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(&writer_));
    RETURN_IF_ERROR(writer_.Exec(kMigrations[version]));
    RETURN_IF_ERROR(writer_.Exec("PRAGMA user_version = " + std::to_string(version + 1)));
    RETURN_IF_ERROR(txn.Commit());
    ++version;
  }
  schema_version_ = version;
  return Status::Ok();
}

Result<std::optional<std::string>> SqliteCatalog::GetMeta(const std::string& key) {
  std::lock_guard<std::mutex> lock(read_mu_);
  ASSIGN_OR_RETURN(Statement s, reader_.Prepare("SELECT value FROM meta WHERE key = ?"));
  s.Bind(1, std::string_view(key));
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(s.Text(0));
}

Status SqliteCatalog::UpdateMeta(
    const std::string& key,
    const std::function<Result<std::optional<std::string>>(const std::optional<std::string>&)>& change) {
  std::lock_guard<std::mutex> lock(write_mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(&writer_));
  ASSIGN_OR_RETURN(Statement get, writer_.Prepare("SELECT value FROM meta WHERE key = ?"));
  get.Bind(1, std::string_view(key));
  ASSIGN_OR_RETURN(bool row, get.Step());
  const std::optional<std::string> stored = row ? std::optional<std::string>(get.Text(0)) : std::nullopt;
  get.Reset();
  ASSIGN_OR_RETURN(std::optional<std::string> value, change(stored));
  if (!value) return Status::Ok();  // the transaction rolls back: nothing was written
  ASSIGN_OR_RETURN(Statement put, writer_.Prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)"));
  put.Bind(1, std::string_view(key)).Bind(2, std::string_view(*value));
  RETURN_IF_ERROR(put.Run());
  return txn.Commit();
}

Result<ModelIdentity> SqliteCatalog::ReadModel() {
  ModelIdentity stored;
  ASSIGN_OR_RETURN(std::optional<std::string> id, GetMeta("model_id"));
  ASSIGN_OR_RETURN(std::optional<std::string> name, GetMeta("model_name"));
  ASSIGN_OR_RETURN(std::optional<std::string> dim, GetMeta("dim"));
  ASSIGN_OR_RETURN(std::optional<std::string> source, GetMeta(kModelSourceKey));
  if (!id || !dim) return stored;
  stored.id = *id;
  stored.name = name.value_or("");
  stored.source = source.value_or("");
  try {
    stored.dim = std::stoi(*dim);
  } catch (const std::exception&) {
    return Status::Corruption(dir_ + ": stored dimension \"" + *dim + "\" is not a number");
  }
  return stored;
}

Result<ModelIdentity> SqliteCatalog::BindModel(const ModelIdentity& model) {
  {
    // The folder's lock makes this process the only writer: no other binds meanwhile.
    std::lock_guard<std::mutex> lock(write_mu_);
    ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(&writer_));
    ASSIGN_OR_RETURN(Statement put, writer_.Prepare("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)"));
    for (const auto& [key, value] : {std::pair<std::string, std::string>{"model_id", model.id},
                                     {"model_name", model.name},
                                     {"dim", std::to_string(model.dim)}}) {
      put.Bind(1, std::string_view(key)).Bind(2, std::string_view(value));
      RETURN_IF_ERROR(put.Run());
    }
    RETURN_IF_ERROR(txn.Commit());
  }
  return ReadModel();
}

Result<std::vector<int64_t>> SqliteCatalog::Upsert(std::span<const ImageUpsert> batch, int dim) {
  std::lock_guard<std::mutex> lock(write_mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(&writer_));
  ASSIGN_OR_RETURN(Statement put_vector,
                   writer_.Prepare("INSERT INTO vectors(hash, dim, data, times) VALUES (?, ?, ?, ?) ON CONFLICT(hash) "
                                   "DO UPDATE SET dim = excluded.dim, data = excluded.data, times = excluded.times, "
                                   "released_at_ms = NULL"));
  // A kept vector taken again is in use again.
  ASSIGN_OR_RETURN(Statement reuse_vector,
                   writer_.Prepare("UPDATE vectors SET released_at_ms = NULL WHERE hash = ? RETURNING 1"));
  ASSIGN_OR_RETURN(Statement old_hash, writer_.Prepare("SELECT content_hash FROM images WHERE path = ?"));
  ASSIGN_OR_RETURN(
      Statement put_image,
      writer_.Prepare(
          "INSERT INTO images(path, size_bytes, mtime_ns, content_hash, width, height, format, capture_time, "
          "indexed_at_ms, status, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
          "ON CONFLICT(path) DO UPDATE SET size_bytes = excluded.size_bytes, mtime_ns = excluded.mtime_ns, "
          "content_hash = excluded.content_hash, width = excluded.width, height = excluded.height, "
          "format = excluded.format, capture_time = excluded.capture_time, indexed_at_ms = excluded.indexed_at_ms, "
          "status = excluded.status, error = excluded.error RETURNING id"));
  ASSIGN_OR_RETURN(ChangeRecorder changes, ChangeRecorder::Prepare(&writer_));

  std::vector<int64_t> ids;
  ids.reserve(batch.size());
  const int64_t now = NowMs();
  for (const ImageUpsert& u : batch) {
    const ImageRecord& r = u.record;
    if (r.path.empty()) return Status::InvalidArgument("image path is empty");
    const bool indexed = r.status == ImageStatus::kIndexed;
    if (indexed) {
      if (r.content_hash.empty()) return Status::InvalidArgument(r.path + ": an indexed image needs a content hash");
      if (!u.embedding.empty()) {
        RETURN_IF_ERROR(CheckEmbeddingShape(u, dim));
        put_vector.Bind(1, std::string_view(r.content_hash)).Bind(2, int64_t{dim}).BindBlob(3, BlobOf(u.embedding));
        if (r.frame_times.empty()) {
          put_vector.BindNull(4);
        } else {
          put_vector.BindBlob(4, BlobOf(r.frame_times));
        }
        RETURN_IF_ERROR(put_vector.Run());
      } else {
        reuse_vector.Bind(1, std::string_view(r.content_hash));
        ASSIGN_OR_RETURN(bool exists, reuse_vector.Step());
        reuse_vector.Reset();
        if (!exists) {
          return Status::InvalidArgument(r.path + ": no embedding given and none stored for its content");
        }
      }
    }
    old_hash.Bind(1, std::string_view(r.path));
    ASSIGN_OR_RETURN(bool had_row, old_hash.Step());
    const std::string previous_hash = had_row ? old_hash.Text(0) : std::string();
    old_hash.Reset();

    put_image.Bind(1, std::string_view(r.path))
        .Bind(2, r.size_bytes)
        .Bind(3, r.mtime_ns)
        .Bind(4, std::string_view(r.content_hash))
        .Bind(5, int64_t{r.width})
        .Bind(6, int64_t{r.height})
        .Bind(7, std::string_view(r.format))
        .Bind(8, r.capture_time)
        .Bind(9, now)
        .Bind(10, int64_t{static_cast<int>(r.status)})
        .Bind(11, std::string_view(indexed ? std::string_view() : std::string_view(r.error)));
    ASSIGN_OR_RETURN(bool got_id, put_image.Step());
    if (!got_id) return Status::Internal("upsert returned no id for " + r.path);
    const int64_t id = put_image.Int(0);
    put_image.Reset();
    ids.push_back(id);
    RETURN_IF_ERROR(changes.Record(id, previous_hash != r.content_hash ? previous_hash : std::string()));
  }
  RETURN_IF_ERROR(changes.ReleaseOrphans());
  RETURN_IF_ERROR(txn.Commit());
  return ids;
}

Result<std::vector<int64_t>> SqliteCatalog::Remove(std::span<const std::string> paths) {
  std::lock_guard<std::mutex> lock(write_mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(&writer_));
  ASSIGN_OR_RETURN(Statement del, writer_.Prepare("DELETE FROM images WHERE path = ? RETURNING id, content_hash"));
  ASSIGN_OR_RETURN(ChangeRecorder changes, ChangeRecorder::Prepare(&writer_));
  std::vector<int64_t> removed;
  for (const std::string& path : paths) {
    del.Bind(1, std::string_view(path));
    ASSIGN_OR_RETURN(bool row, del.Step());
    if (!row) {
      del.Reset();
      continue;
    }
    const int64_t id = del.Int(0);
    const std::string hash = del.Text(1);
    RETURN_IF_ERROR(del.Run());
    removed.push_back(id);
    RETURN_IF_ERROR(changes.Record(id, hash));
  }
  RETURN_IF_ERROR(changes.ReleaseOrphans());
  RETURN_IF_ERROR(txn.Commit());
  return removed;
}

Result<std::optional<int64_t>> SqliteCatalog::Move(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> lock(write_mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(&writer_));
  ASSIGN_OR_RETURN(Statement taken, writer_.Prepare("SELECT 1 FROM images WHERE path = ?"));
  taken.Bind(1, std::string_view(to));
  ASSIGN_OR_RETURN(bool exists, taken.Step());
  if (exists && from != to) return Status::InvalidArgument("cannot move " + from + " to " + to + ": already indexed");
  ASSIGN_OR_RETURN(Statement move, writer_.Prepare("UPDATE images SET path = ? WHERE path = ? RETURNING id"));
  move.Bind(1, std::string_view(to)).Bind(2, std::string_view(from));
  ASSIGN_OR_RETURN(bool row, move.Step());
  if (!row) return std::optional<int64_t>();
  const int64_t id = move.Int(0);
  RETURN_IF_ERROR(move.Run());
  ASSIGN_OR_RETURN(ChangeRecorder changes, ChangeRecorder::Prepare(&writer_));
  RETURN_IF_ERROR(changes.Record(id, ""));
  RETURN_IF_ERROR(txn.Commit());
  return std::optional<int64_t>(id);
}

Result<std::optional<ImageRecord>> SqliteCatalog::GetById(int64_t id) {
  std::lock_guard<std::mutex> lock(read_mu_);
  ASSIGN_OR_RETURN(Statement s, reader_.Prepare(std::string("SELECT ") + kImageColumns + " FROM images WHERE id = ?"));
  s.Bind(1, id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<ImageRecord>();
  return std::optional<ImageRecord>(ReadImage(s));
}

Result<std::optional<ImageRecord>> SqliteCatalog::GetByPath(const std::string& path) {
  std::lock_guard<std::mutex> lock(read_mu_);
  ASSIGN_OR_RETURN(Statement s,
                   reader_.Prepare(std::string("SELECT ") + kImageColumns + " FROM images WHERE path = ?"));
  s.Bind(1, std::string_view(path));
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<ImageRecord>();
  return std::optional<ImageRecord>(ReadImage(s));
}

Result<std::vector<float>> SqliteCatalog::GetVectors(int64_t id) {
  std::lock_guard<std::mutex> lock(read_mu_);
  ASSIGN_OR_RETURN(Statement s, reader_.Prepare("SELECT v.data, v.dim, v.times FROM images i JOIN vectors v ON "
                                                "v.hash = i.content_hash WHERE i.id = ? AND i.status = ?"));
  s.Bind(1, id).Bind(2, int64_t{static_cast<int>(ImageStatus::kIndexed)});
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return Status::NotFound("no indexed image with id " + std::to_string(id));
  std::vector<float> v = StoredVectors(s.Blob(0), s.Int(1), s.Blob(2).size() / sizeof(float));
  if (v.empty()) {
    return Status::Corruption(reader_.path() + ": the vector of image " + std::to_string(id) + " has the wrong size");
  }
  return v;
}

Result<bool> SqliteCatalog::HasVector(const std::string& hash) {
  std::lock_guard<std::mutex> lock(read_mu_);
  ASSIGN_OR_RETURN(Statement s, reader_.Prepare(std::string("SELECT 1 FROM vectors WHERE hash = ?1 AND "
                                                            "(released_at_ms IS NULL OR released_at_ms > ?2 - "
                                                            "COALESCE((SELECT CAST(value AS INTEGER) FROM meta "
                                                            "WHERE key = '") +
                                                kKeepRemovedKey + "'), ?3) + ?4)"));
  s.Bind(1, std::string_view(hash))
      .Bind(2, NowMs())
      .Bind(3, int64_t{kDefaultKeepRemoved.count()})
      .Bind(4, int64_t{kKeptVectorMarginMs});
  return s.Step();
}

int64_t SqliteCatalog::FileBytes(const char* name) const {
  std::error_code ec;
  const auto n = std::filesystem::file_size(dir_ + "/" + name, ec);
  return ec ? 0 : static_cast<int64_t>(n);
}

Result<BackendCounts> SqliteCatalog::Counts() {
  BackendCounts c;
  {
    std::lock_guard<std::mutex> lock(read_mu_);
    ASSIGN_OR_RETURN(Statement s,
                     reader_.Prepare(std::string("SELECT (SELECT COUNT(*) FROM images WHERE status = ?1), "
                                                 "(SELECT COUNT(*) FROM images WHERE status = ?2), "
                                                 "(SELECT COUNT(*) FROM vectors WHERE released_at_ms IS NULL), "
                                                 "(SELECT COUNT(*) FROM vectors WHERE released_at_ms IS NOT NULL), "
                                                 "(SELECT value FROM meta WHERE key = '") +
                                     kKeepRemovedKey +
                                     "'), "
                                     // One statement, one snapshot: the counts by format add up to the first.
                                     "(SELECT json_group_object(format, n) FROM (SELECT format, COUNT(*) AS n "
                                     "FROM images WHERE status = ?1 GROUP BY format)), "
                                     "(SELECT COUNT(*) FROM texts t JOIN vectors v ON v.hash = t.hash WHERE "
                                     "v.released_at_ms IS NULL), " +
                                     kPendingTextCount));
    s.Bind(1, int64_t{static_cast<int>(ImageStatus::kIndexed)})
        .Bind(2, int64_t{static_cast<int>(ImageStatus::kFailed)});
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) {
      c.indexed = s.Int(0);
      c.failed = s.Int(1);
      c.distinct_vectors = s.Int(2);
      c.kept_vectors = s.Int(3);
      c.keep_removed = KeepRemovedFrom(s.IsNull(4) ? std::nullopt : std::optional<std::string>(s.Text(4)));
      c.texts_read = s.Int(6);
      c.texts_pending = s.Int(7);
      if (!s.IsNull(5)) {
        const nlohmann::json formats = nlohmann::json::parse(s.Text(5), nullptr, /*allow_exceptions=*/false);
        if (formats.is_object()) {
          for (const auto& [format, n] : formats.items()) c.formats[format] = n.is_number() ? n.get<int64_t>() : 0;
        }
      }
    }
  }
  for (const char* f : {"catalog.db", "catalog.db-wal", "catalog.db-shm"}) c.database_bytes += FileBytes(f);
  c.schema_version = schema_version_;
  return c;
}

Status SqliteCatalog::ForEach(const std::function<bool(const ImageRecord&)>& visit, std::optional<ImageStatus> status,
                              const std::string& under) {
  std::lock_guard<std::mutex> lock(read_mu_);
  std::string sql = std::string("SELECT ") + kImageColumns + " FROM images WHERE 1";
  if (status) sql += " AND status = " + std::to_string(static_cast<int>(*status));
  // "under" is the path itself or anything below it: the range [under/, under0) of the path index
  // ('0' follows '/' in byte order).
  if (!under.empty()) sql += " AND (path = ?1 OR (path >= ?2 AND path < ?3))";
  sql += " ORDER BY path";
  ASSIGN_OR_RETURN(Statement s, reader_.Prepare(sql));
  if (!under.empty()) {
    const std::string dir = under.back() == '/' ? under.substr(0, under.size() - 1) : under;
    s.Bind(1, std::string_view(dir)).Bind(2, std::string_view(dir + "/")).Bind(3, std::string_view(dir + "0"));
  }
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row || !visit(ReadImage(s))) break;
  }
  return Status::Ok();
}

Status SqliteCatalog::ReadConsistently(const std::function<Status()>& fn) {
  RETURN_IF_ERROR(reader_.Exec("BEGIN"));
  Status st = fn();
  (void)reader_.Exec("COMMIT");  // a read transaction: nothing to lose
  return st;
}

Result<int64_t> SqliteCatalog::LastSeqLocked() {
  // The log's prefix may be gone; AUTOINCREMENT keeps the largest value ever drawn.
  ASSIGN_OR_RETURN(Statement s,
                   reader_.Prepare("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? s.Int(0) : 0;
}

Result<int64_t> SqliteCatalog::LastSeq() {
  std::lock_guard<std::mutex> lock(read_mu_);
  return LastSeqLocked();
}

namespace {

// An image row and its vectors: kImageColumns of `i` (the frame times last) then v.data, v.dim.
constexpr const char* kImageWithVector =
    "SELECT i.id, i.path, i.size_bytes, i.mtime_ns, i.content_hash, i.width, i.height, i.format, i.capture_time, "
    "i.indexed_at_ms, i.status, i.error, v.times, v.data, v.dim FROM images i LEFT JOIN vectors v ON v.hash = "
    "i.content_hash ";

// The vectors read by a kImageWithVector statement; empty when missing or of the wrong size.
std::vector<float> VectorOf(const Statement& s) {
  return StoredVectors(s.Blob(13), s.Int(14), s.Blob(12).size() / sizeof(float));
}

}  // namespace

Result<std::vector<TextJob>> SqliteCatalog::PendingTexts(int limit) {
  std::lock_guard<std::mutex> lock(read_mu_);
  ASSIGN_OR_RETURN(Statement s, reader_.Prepare(std::string("SELECT v.hash, (SELECT i.path FROM images i WHERE "
                                                            "i.content_hash = v.hash AND i.status = 1 ORDER BY i.id "
                                                            "LIMIT 1), v.times ") +
                                                kPendingTexts + " ORDER BY v.id DESC LIMIT ?"));
  s.Bind(1, int64_t{limit});
  std::vector<TextJob> jobs;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    jobs.push_back({s.Text(0), s.Text(1), FloatsOf(s.Blob(2))});
  }
  return jobs;
}

Status SqliteCatalog::PutTexts(std::span<const ContentText> texts) {
  std::lock_guard<std::mutex> lock(write_mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(&writer_));
  // Only for content still stored: its vector may have been purged while the text was read.
  ASSIGN_OR_RETURN(Statement put,
                   writer_.Prepare("INSERT INTO texts(hash, languages, text, words) SELECT ?1, ?2, ?3, ?4 WHERE EXISTS "
                                   "(SELECT 1 FROM vectors WHERE hash = ?1) ON CONFLICT(hash) DO UPDATE SET "
                                   "languages = excluded.languages, text = excluded.text, words = excluded.words"));
  for (const ContentText& t : texts) {
    if (t.content_hash.empty()) return Status::InvalidArgument("a text to store has no content hash");
    const std::string words = WordsJson(t.text);
    put.Bind(1, std::string_view(t.content_hash))
        .Bind(2, std::string_view(t.languages))
        .Bind(3, std::string_view(t.text.text))
        .Bind(4, std::string_view(words));
    RETURN_IF_ERROR(put.Run());
  }
  return txn.Commit();
}

Result<std::optional<ContentText>> SqliteCatalog::GetText(int64_t id) {
  std::lock_guard<std::mutex> lock(read_mu_);
  ASSIGN_OR_RETURN(Statement s,
                   reader_.Prepare("SELECT t.hash, t.languages, t.text, t.words FROM images i JOIN texts t "
                                   "ON t.hash = i.content_hash WHERE i.id = ?"));
  s.Bind(1, id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<ContentText>();
  return std::optional<ContentText>(ContentText{s.Text(0), s.Text(1), TextFromJson(s.Text(2), s.Text(3))});
}

Result<std::vector<TextCandidate>> SqliteCatalog::SearchText(std::span<const std::string> words, int limit) {
  // FTS5 trigram queries: each word of three characters or more as a quoted string (any part of
  // the text, any case), all required; shorter words are checked by the caller.
  std::string match;
  for (const std::string& w : words) {
    if (Utf8Length(w) < 3) continue;
    std::string quoted = "\"";
    for (char c : w) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
    match += (match.empty() ? "" : " AND ") + quoted + "\"";
  }
  if (match.empty()) return std::vector<TextCandidate>();
  std::lock_guard<std::mutex> lock(read_mu_);
  ASSIGN_OR_RETURN(Statement s,
                   reader_.Prepare("SELECT i.id, t.text, -bm25(texts_fts) FROM texts_fts JOIN texts t ON t.id = "
                                   "texts_fts.rowid JOIN images i ON i.content_hash = t.hash AND i.status = 1 WHERE "
                                   "texts_fts MATCH ? ORDER BY bm25(texts_fts), i.id LIMIT ?"));
  s.Bind(1, std::string_view(match)).Bind(2, int64_t{limit});
  std::vector<TextCandidate> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back({s.Int(0), s.Text(1), s.Double(2)});
  }
  return out;
}

Result<int64_t> SqliteCatalog::ReadIndexed(
    const std::function<Status(const ImageRecord&, std::span<const float>)>& visit) {
  std::lock_guard<std::mutex> lock(read_mu_);
  int64_t seq = 0;
  RETURN_IF_ERROR(ReadConsistently([&]() -> Status {
    ASSIGN_OR_RETURN(seq, LastSeqLocked());
    ASSIGN_OR_RETURN(Statement s, reader_.Prepare(std::string(kImageWithVector) + "WHERE i.status = " +
                                                  std::to_string(static_cast<int>(ImageStatus::kIndexed))));
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return Status::Ok();
      const ImageRecord r = ReadImage(s);
      const std::vector<float> v = VectorOf(s);
      if (v.empty()) return Status::Corruption(reader_.path() + ": indexed image " + r.path + " has no valid vector");
      RETURN_IF_ERROR(visit(r, v));
    }
  }));
  return seq;
}

Result<int64_t> SqliteCatalog::ReadIndexedRecords(const std::function<void(const ImageRecord&)>& visit) {
  std::lock_guard<std::mutex> lock(read_mu_);
  int64_t seq = 0;
  RETURN_IF_ERROR(ReadConsistently([&]() -> Status {
    ASSIGN_OR_RETURN(seq, LastSeqLocked());
    ASSIGN_OR_RETURN(Statement s,
                     reader_.Prepare(std::string("SELECT ") + kImageColumns + " FROM images WHERE status = " +
                                     std::to_string(static_cast<int>(ImageStatus::kIndexed))));
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return Status::Ok();
      visit(ReadImage(s));
    }
  }));
  return seq;
}

Result<ChangeSet> SqliteCatalog::ChangesSince(int64_t seq) {
  std::lock_guard<std::mutex> lock(read_mu_);
  ChangeSet out;
  out.last_seq = seq;
  RETURN_IF_ERROR(ReadConsistently([&]() -> Status {
    ASSIGN_OR_RETURN(const int64_t last, LastSeqLocked());
    if (last <= seq) return Status::Ok();
    ASSIGN_OR_RETURN(Statement first, reader_.Prepare("SELECT MIN(seq) FROM changes"));
    ASSIGN_OR_RETURN(bool got, first.Step());
    // Values are contiguous: the log holds every change after `seq` iff it starts at seq + 1 or before.
    if (!got || first.IsNull(0) || first.Int(0) > seq + 1) {
      out.incomplete = true;
      return Status::Ok();
    }
    ASSIGN_OR_RETURN(Statement ids, reader_.Prepare("SELECT DISTINCT image_id FROM changes WHERE seq > ? ORDER BY 1"));
    ids.Bind(1, seq);
    std::vector<int64_t> touched;
    while (true) {
      ASSIGN_OR_RETURN(bool row, ids.Step());
      if (!row) break;
      touched.push_back(ids.Int(0));
    }
    ASSIGN_OR_RETURN(Statement get, reader_.Prepare(std::string(kImageWithVector) + "WHERE i.id = ?"));
    for (int64_t id : touched) {
      get.Bind(1, id);
      ASSIGN_OR_RETURN(bool row, get.Step());
      if (row) {
        out.changed.push_back(ReadImage(get));
        out.vectors.push_back(VectorOf(get));
      } else {
        out.removed.push_back(id);
      }
      get.Reset();
    }
    out.last_seq = last;
    return Status::Ok();
  }));
  return out;
}

Status SqliteCatalog::PurgeReleased() {
  std::lock_guard<std::mutex> lock(write_mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(&writer_));
  ASSIGN_OR_RETURN(ChangeRecorder changes, ChangeRecorder::Prepare(&writer_));
  RETURN_IF_ERROR(changes.ReleaseOrphans());
  return txn.Commit();
}

Status SqliteCatalog::ForgetChangesUpTo(int64_t seq) {
  std::lock_guard<std::mutex> lock(write_mu_);
  ASSIGN_OR_RETURN(Statement s, writer_.Prepare("DELETE FROM changes WHERE seq <= ?"));
  s.Bind(1, seq);
  return s.Run();
}

bool SqliteCatalog::WaitForChanges(std::chrono::milliseconds timeout, const std::atomic<bool>& stop) {
  const auto until = std::chrono::steady_clock::now() + std::min(timeout, std::chrono::milliseconds(500));
  while (!stop && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return true;
}

Status SqliteCatalog::CheckIntegrity() {
  std::lock_guard<std::mutex> lock(read_mu_);
  ASSIGN_OR_RETURN(Statement check, reader_.Prepare("PRAGMA integrity_check"));
  ASSIGN_OR_RETURN(bool row, check.Step());
  if (!row || check.Text(0) != "ok") {
    return Status::Corruption(reader_.path() + ": integrity check failed: " + (row ? check.Text(0) : "no answer"));
  }
  ASSIGN_OR_RETURN(Statement orphans, reader_.Prepare("SELECT COUNT(*) FROM images i WHERE i.status = ? AND NOT EXISTS "
                                                      "(SELECT 1 FROM vectors v WHERE v.hash = i.content_hash)"));
  orphans.Bind(1, int64_t{static_cast<int>(ImageStatus::kIndexed)});
  ASSIGN_OR_RETURN(bool got, orphans.Step());
  if (got && orphans.Int(0) != 0) {
    return Status::Corruption(reader_.path() + ": " + std::to_string(orphans.Int(0)) +
                              " indexed images have no vector");
  }
  return Status::Ok();
}

}  // namespace imgsearch::store

namespace imgsearch {

Result<std::unique_ptr<Collection>> OpenCollection(const std::string& dir, const ModelIdentity* model,
                                                   const CollectionOptions& options) {
  // Commands that do not embed (model null) never create a collection.
  if (model == nullptr && !options.read_only && !store::CatalogExists(dir)) {
    return Status::NotFound("no collection at " + dir);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<store::SqliteCatalog> catalog, store::SqliteCatalog::Open(dir, options));
  return store::OpenCollectionOver(std::move(catalog), model, options);
}

}  // namespace imgsearch
