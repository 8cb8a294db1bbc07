// The PostgreSQL collection: rows and vectors in the database, the ANN index in this process's
// memory, kept current by following the change sequence.
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include "base/rw_mutex.h"
#include "imgsearch/scaleout.h"
#include "scaleout/pg.h"
#include "scaleout/pg_store.h"
#include "store/collection_meta.h"
#include "store/vector_index.h"

namespace imgsearch {

namespace scaleout {

ImageRecord RecordOf(const pqxx::row& row) {
  ImageRecord r;
  r.id = row[0].as<int64_t>();
  r.path = row[1].as<std::string>();
  r.size_bytes = row[2].as<int64_t>();
  r.mtime_ns = row[3].as<int64_t>();
  r.content_hash = row[4].as<std::string>();
  r.width = row[5].as<int>();
  r.height = row[6].as<int>();
  r.format = row[7].as<std::string>();
  if (!row[8].is_null()) r.capture_time = row[8].as<std::string>();
  r.indexed_at_ms = row[9].as<int64_t>();
  r.status = row[10].as<int>() == static_cast<int>(ImageStatus::kFailed) ? ImageStatus::kFailed : ImageStatus::kIndexed;
  r.error = row[11].as<std::string>();
  return r;
}

std::vector<float> VectorOf(const pqxx::field& field) {
  const pqxx::binarystring bytes(field);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

void LockChanges(pqxx::work& w) { w.exec_params("SELECT pg_advisory_xact_lock($1)", kChangeLock); }

void NotifyChanges(pqxx::work& w) { w.exec_params("SELECT pg_notify($1, '')", std::string(kChangesChannel)); }

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Drops the vector of `hash` when no image has that content any more.
void ReleaseVector(pqxx::work& w, const std::string& hash) {
  w.exec_params(
      "DELETE FROM imgsearch.vectors WHERE hash = $1 AND NOT EXISTS "
      "(SELECT 1 FROM imgsearch.images WHERE content_hash = $1)",
      hash);
}

}  // namespace

std::vector<int64_t> WriteUpserts(pqxx::work& w, std::span<const ImageUpsert> batch, int dim) {
  std::vector<int64_t> ids;
  ids.reserve(batch.size());
  const int64_t now = NowMs();
  for (const ImageUpsert& u : batch) {
    const ImageRecord& r = u.record;
    if (r.path.empty()) throw StatusError{Status::InvalidArgument("image path is empty")};
    const bool indexed = r.status == ImageStatus::kIndexed;
    if (indexed) {
      if (r.content_hash.empty()) {
        throw StatusError{Status::InvalidArgument(r.path + ": an indexed image needs a content hash")};
      }
      if (!u.embedding.empty()) {
        if (static_cast<int>(u.embedding.size()) != dim) {
          throw StatusError{Status::InvalidArgument(r.path + ": embedding has " + std::to_string(u.embedding.size()) +
                                                    " dimensions, the collection " + std::to_string(dim))};
        }
        w.exec_params(
            "INSERT INTO imgsearch.vectors(hash, dim, data) VALUES ($1, $2, $3) "
            "ON CONFLICT (hash) DO UPDATE SET dim = EXCLUDED.dim, data = EXCLUDED.data",
            r.content_hash, dim, pqxx::binarystring(u.embedding.data(), u.embedding.size() * sizeof(float)));
      } else if (w.exec_params("SELECT 1 FROM imgsearch.vectors WHERE hash = $1", r.content_hash).empty()) {
        throw StatusError{Status::InvalidArgument(r.path + ": no embedding given and none stored for its content")};
      }
    }
    const pqxx::result old = w.exec_params("SELECT content_hash FROM imgsearch.images WHERE path = $1", r.path);
    const pqxx::result id = w.exec_params(
        "INSERT INTO imgsearch.images(path, size_bytes, mtime_ns, content_hash, width, height, format, capture_time, "
        "indexed_at_ms, status, error, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, NULLIF($8, ''), $9, $10, $11, "
        "nextval('imgsearch.change_seq')) ON CONFLICT (path) DO UPDATE SET size_bytes = EXCLUDED.size_bytes, "
        "mtime_ns = EXCLUDED.mtime_ns, content_hash = EXCLUDED.content_hash, width = EXCLUDED.width, "
        "height = EXCLUDED.height, format = EXCLUDED.format, capture_time = EXCLUDED.capture_time, "
        "indexed_at_ms = EXCLUDED.indexed_at_ms, status = EXCLUDED.status, error = EXCLUDED.error, seq = EXCLUDED.seq "
        "RETURNING id",
        r.path, r.size_bytes, r.mtime_ns, r.content_hash, r.width, r.height, r.format, r.capture_time.value_or(""), now,
        static_cast<int>(r.status), indexed ? std::string() : r.error);
    ids.push_back(id[0][0].as<int64_t>());
    if (!old.empty() && old[0][0].as<std::string>() != r.content_hash) ReleaseVector(w, old[0][0].as<std::string>());
  }
  return ids;
}

std::vector<int64_t> WriteRemovals(pqxx::work& w, std::span<const std::string> paths) {
  std::vector<int64_t> removed;
  for (const std::string& path : paths) {
    const pqxx::result r =
        w.exec_params("DELETE FROM imgsearch.images WHERE path = $1 RETURNING id, content_hash", path);
    if (r.empty()) continue;
    const int64_t id = r[0][0].as<int64_t>();
    w.exec_params(
        "INSERT INTO imgsearch.removed(image_id, seq) VALUES ($1, nextval('imgsearch.change_seq')) "
        "ON CONFLICT (image_id) DO UPDATE SET seq = EXCLUDED.seq",
        id);
    ReleaseVector(w, r[0][1].as<std::string>());
    removed.push_back(id);
  }
  return removed;
}

namespace {

// The newest change-sequence value committed (see pg.h for why nothing below it can still appear).
int64_t LastSeq(pqxx::transaction_base& t) {
  return t
      .exec(
          "SELECT greatest((SELECT coalesce(max(seq), 0) FROM imgsearch.images), "
          "(SELECT coalesce(max(seq), 0) FROM imgsearch.removed))")[0][0]
      .as<int64_t>();
}

using Snapshot = pqxx::transaction<pqxx::repeatable_read, pqxx::read_only>;

class PgCollection final : public Collection {
 public:
  PgCollection(std::shared_ptr<PgClient> client, ModelIdentity model, std::string collection_id,
               const CollectionOptions& options)
      : client_(std::move(client)),
        options_(options),
        model_(std::move(model)),
        collection_id_(std::move(collection_id)) {}

  ~PgCollection() override {
    stop_ = true;
    if (follower_.joinable()) follower_.join();
    if (loaded_ && changes_since_save_ > 0) {
      if (Status st = SaveSnapshot(); !st.ok()) spdlog::warn("could not snapshot the search index: {}", st.ToString());
    }
  }

  Result<std::vector<int64_t>> Upsert(std::span<const ImageUpsert> batch) override {
    RETURN_IF_ERROR(CheckWritable());
    for (const ImageUpsert& u : batch) {
      if (u.record.status == ImageStatus::kIndexed && !u.embedding.empty() && store::Normalised(u.embedding).empty()) {
        return Status::InvalidArgument(u.record.path + ": embedding is zero or not finite");
      }
    }
    std::vector<int64_t> ids;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      LockChanges(w);
      ids = WriteUpserts(w, batch, model_.dim);
      NotifyChanges(w);
      w.commit();
    }));
    RETURN_IF_ERROR(CatchUpIfLoaded());
    return ids;
  }

  Result<int64_t> Remove(std::span<const std::string> paths) override {
    RETURN_IF_ERROR(CheckWritable());
    size_t n = 0;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      LockChanges(w);
      n = WriteRemovals(w, paths).size();
      if (n > 0) NotifyChanges(w);
      w.commit();
    }));
    RETURN_IF_ERROR(CatchUpIfLoaded());
    return static_cast<int64_t>(n);
  }

  Status Move(const std::string& from, const std::string& to) override {
    RETURN_IF_ERROR(CheckWritable());
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      LockChanges(w);
      if (from != to && !w.exec_params("SELECT 1 FROM imgsearch.images WHERE path = $1", to).empty()) {
        throw StatusError{Status::InvalidArgument("cannot move " + from + " to " + to + ": already indexed")};
      }
      const pqxx::result r = w.exec_params(
          "UPDATE imgsearch.images SET path = $2, seq = nextval('imgsearch.change_seq') WHERE path = $1 RETURNING id",
          from, to);
      if (r.empty()) throw StatusError{Status::NotFound("cannot move " + from + ": not in the collection")};
      NotifyChanges(w);
      w.commit();
    }));
    return CatchUpIfLoaded();
  }

  Result<std::optional<ImageRecord>> GetById(int64_t id) override {
    return GetOne(std::string("SELECT ") + kImageColumns + " FROM imgsearch.images i WHERE i.id = $1",
                  std::to_string(id));
  }

  Result<std::optional<ImageRecord>> GetByPath(const std::string& path) override {
    return GetOne(std::string("SELECT ") + kImageColumns + " FROM imgsearch.images i WHERE i.path = $1", path);
  }

  Result<std::vector<float>> GetEmbedding(int64_t id) override {
    std::vector<float> v;
    bool found = false;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::nontransaction t(c);
      const pqxx::result r = t.exec_params(
          "SELECT v.data FROM imgsearch.images i JOIN imgsearch.vectors v ON v.hash = i.content_hash "
          "WHERE i.id = $1 AND i.status = 1",
          id);
      found = !r.empty();
      if (found) v = VectorOf(r[0][0]);
    }));
    if (!found) return Status::NotFound("image " + std::to_string(id) + " has no embedding");
    return v;
  }

  Result<bool> HasEmbeddingFor(const std::string& hash) override {
    bool found = false;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::nontransaction t(c);
      found = !t.exec_params("SELECT 1 FROM imgsearch.vectors WHERE hash = $1", hash).empty();
    }));
    return found;
  }

  Result<int64_t> Count() override {
    ASSIGN_OR_RETURN(CollectionStats s, Counts());
    return s.indexed + s.failed;
  }

  Status ForEach(const std::function<bool(const ImageRecord&)>& visit, std::optional<ImageStatus> status,
                 const std::string& under) override {
    // Pages in path order (keyset), each its own short read.
    const bool everywhere = under.empty() || under == "/";
    const std::string lo = under + "/", hi = under + "0";  // '0' follows '/' in byte order
    const int wanted = status ? static_cast<int>(*status) : -1;
    std::string after;
    bool first = true;
    while (true) {
      std::vector<ImageRecord> page;
      RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
        pqxx::nontransaction t(c);
        const pqxx::result r =
            t.exec_params(std::string("SELECT ") + kImageColumns +
                              " FROM imgsearch.images i WHERE ($1 OR i.path > $2) AND ($3 < 0 OR i.status = $3) AND "
                              "($4 OR i.path = $5 OR (i.path >= $6 AND i.path < $7)) ORDER BY i.path LIMIT 2000",
                          first, after, wanted, everywhere, under, lo, hi);
        page.clear();
        for (const pqxx::row& row : r) page.push_back(RecordOf(row));
      }));
      for (const ImageRecord& r : page) {
        if (!visit(r)) return Status::Ok();
      }
      if (page.size() < 2000) return Status::Ok();
      after = page.back().path;
      first = false;
    }
  }

  Status Warm() override { return EnsureIndex(); }

  Result<std::vector<SearchHit>> Search(std::span<const float> query, const SearchOptions& o) override {
    RETURN_IF_ERROR(EnsureIndex());
    std::shared_lock<RwMutex> lock(index_mu_);
    return store::SearchIndex(index_.get(), model_.dim, query, o);
  }

  Result<std::vector<CollectionRoot>> Roots() override {
    std::optional<std::string> stored;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::nontransaction t(c);
      const pqxx::result r = t.exec("SELECT value FROM imgsearch.meta WHERE key = 'roots'");
      stored = r.empty() ? std::nullopt : std::optional<std::string>(r[0][0].as<std::string>());
    }));
    if (!stored) return std::vector<CollectionRoot>();
    return store::ParseRoots(*stored, SafeUrl(client_->url()));
  }

  Status AddRoots(std::span<const CollectionRoot> add, RootChange change) override {
    RETURN_IF_ERROR(CheckWritable());
    return client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      w.exec("INSERT INTO imgsearch.meta(key, value) VALUES ('roots', '[]') ON CONFLICT (key) DO NOTHING");
      const std::string stored =
          w.exec("SELECT value FROM imgsearch.meta WHERE key = 'roots' FOR UPDATE")[0][0].as<std::string>();
      Result<std::vector<CollectionRoot>> roots = store::ParseRoots(stored, SafeUrl(client_->url()));
      if (!roots.ok()) throw StatusError{roots.status()};
      bool changed = false;
      if (Status merged = store::MergeRoots(&*roots, add, change, &changed); !merged.ok()) throw StatusError{merged};
      if (!changed) return;
      w.exec_params("UPDATE imgsearch.meta SET value = $1 WHERE key = 'roots'", store::RootsJson(*roots));
      w.commit();
    });
  }

  Result<CollectionStats> Stats() override {
    ASSIGN_OR_RETURN(CollectionStats s, Counts());
    s.model = model_;
    s.index_params = options_.index;
    std::shared_lock<RwMutex> lock(index_mu_);
    s.index_bytes = index_ != nullptr ? index_->graph_bytes() : 0;
    s.index_kind = index_ != nullptr && index_->size() > options_.index.exact_below ? "hnsw" : "exact";
    return s;
  }

  // The index lives in memory only (rebuilt from the database at start): nothing to write.
  Status Checkpoint() override { return Status::Ok(); }

  Status CheckIntegrity() override {
    int64_t missing = 0;
    std::vector<int64_t> ids;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      Snapshot t(c);
      missing = t.exec(
                     "SELECT count(*) FROM imgsearch.images i WHERE i.status = 1 AND NOT EXISTS "
                     "(SELECT 1 FROM imgsearch.vectors v WHERE v.hash = i.content_hash)")[0][0]
                    .as<int64_t>();
      ids.clear();
      for (const pqxx::row& row : t.exec("SELECT id FROM imgsearch.images WHERE status = 1 ORDER BY id")) {
        ids.push_back(row[0].as<int64_t>());
      }
    }));
    if (missing > 0) return Status::Corruption(std::to_string(missing) + " indexed images have no vector");
    RETURN_IF_ERROR(CatchUpIfLoaded());
    std::shared_lock<RwMutex> lock(index_mu_);
    if (index_ == nullptr) return Status::Ok();
    std::vector<int64_t> graph = index_->GraphIds();
    std::sort(graph.begin(), graph.end());
    if (graph != ids) {
      return Status::Corruption("the search index holds " + std::to_string(graph.size()) + " images, the database " +
                                std::to_string(ids.size()));
    }
    return Status::Ok();
  }

  const ModelIdentity& model() const override { return model_; }

 private:
  Status CheckWritable() const {
    if (options_.read_only)
      return Status::InvalidArgument("the collection at " + SafeUrl(client_->url()) + " is open read-only");
    if (model_.dim <= 0)
      return Status::InvalidArgument("the collection at " + SafeUrl(client_->url()) +
                                     " has no model; open it with one");
    return Status::Ok();
  }

  Result<std::optional<ImageRecord>> GetOne(const std::string& sql, const std::string& arg) {
    std::optional<ImageRecord> out;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::nontransaction t(c);
      const pqxx::result r = t.exec_params(sql, arg);
      out = r.empty() ? std::nullopt : std::optional<ImageRecord>(RecordOf(r[0]));
    }));
    return out;
  }

  Result<CollectionStats> Counts() {
    CollectionStats s;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      Snapshot t(c);
      const pqxx::row r = t.exec(
          "SELECT count(*) FILTER (WHERE status = 1), count(*) FILTER (WHERE status = 2), "
          "(SELECT count(*) FROM imgsearch.vectors), "
          "(SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON "
          "n.oid = c.relnamespace WHERE n.nspname = 'imgsearch' AND c.relkind = 'r'), "
          "(SELECT value FROM imgsearch.meta WHERE key = 'schema_version') FROM imgsearch.images")[0];
      s.indexed = r[0].as<int64_t>();
      s.failed = r[1].as<int64_t>();
      s.distinct_vectors = r[2].as<int64_t>();
      s.database_bytes = r[3].as<int64_t>();
      s.schema_version = std::stoi(r[4].as<std::string>());
    }));
    return s;
  }

  // Builds the index (from the cached snapshot and the changes since, else from every vector in
  // one snapshot of the database), then starts following the changes.
  Status EnsureIndex() {
    if (loaded_) return Status::Ok();
    std::lock_guard<std::mutex> loading(load_mu_);
    if (loaded_) return Status::Ok();
    if (model_.dim <= 0) return Status::Ok();  // no model bound yet: nothing can be indexed
    const std::string path = SnapshotPath();
    std::error_code ec;
    if (!path.empty() && std::filesystem::exists(path + ".meta", ec)) {
      if (Status st = LoadFromSnapshot(path); st.ok()) {
        loaded_ = true;
        follower_ = std::thread([this] { Follow(); });
        return Status::Ok();
      } else {
        spdlog::warn("search index snapshot {} not usable ({}); building the index from the database", path,
                     st.message());
      }
    }
    RETURN_IF_ERROR(LoadFromDatabase());
    loaded_ = true;
    changes_since_save_ = 1;  // worth a snapshot
    if (!path.empty()) {
      if (Status st = SaveSnapshot(); !st.ok()) spdlog::warn("could not snapshot the search index: {}", st.ToString());
    }
    follower_ = std::thread([this] { Follow(); });
    return Status::Ok();
  }

  Status LoadFromDatabase() {
    std::unique_ptr<store::VectorIndex> index;
    int64_t seq = 0;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      index = std::make_unique<store::VectorIndex>(model_.dim, options_.index);
      Snapshot t(c);
      seq = LastSeq(t);
      int64_t after = 0;
      while (true) {
        const pqxx::result r =
            t.exec_params(std::string("SELECT ") + kImageColumns +
                              ", v.data FROM imgsearch.images i JOIN imgsearch.vectors v ON v.hash = i.content_hash "
                              "WHERE i.status = 1 AND i.id > $1 ORDER BY i.id LIMIT 4096",
                          after);
        std::vector<int64_t> ids;
        std::vector<float> vectors;
        std::vector<store::ImageMeta> metas;
        for (const pqxx::row& row : r) {
          const ImageRecord rec = RecordOf(row);
          std::vector<float> v = store::Normalised(VectorOf(row[kImageColumnCount]));
          if (static_cast<int>(v.size()) != model_.dim) {
            throw StatusError{Status::Corruption("the vector of " + rec.path + " has " + std::to_string(v.size()) +
                                                 " dimensions, the collection " + std::to_string(model_.dim))};
          }
          ids.push_back(rec.id);
          vectors.insert(vectors.end(), v.begin(), v.end());
          metas.push_back(store::MetaOf(rec));
        }
        index->PutBatch(ids, vectors, std::move(metas));
        if (r.size() < 4096) break;
        after = ids.back();
      }
    }));
    const int64_t n = index->size();
    {
      std::unique_lock<RwMutex> lock(index_mu_);
      index_ = std::move(index);
    }
    std::lock_guard<std::mutex> lock(catch_up_mu_);
    applied_seq_ = seq;
    spdlog::info("search index built from {}: {} images", SafeUrl(client_->url()), n);
    return Status::Ok();
  }

  // The snapshot's graph, every indexed image's metadata, then the changes made since it was taken.
  Status LoadFromSnapshot(const std::string& path) {
    auto index = std::make_unique<store::VectorIndex>(model_.dim, options_.index);
    int64_t seq = 0;
    {
      SnapshotLock lock(path, LOCK_SH);
      ASSIGN_OR_RETURN(seq, index->Load(path));
    }
    int64_t indexed = 0;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      Snapshot t(c);
      if (seq > LastSeq(t)) throw StatusError{Status::Corruption("it is ahead of the database (a restored backup?)")};
      indexed = 0;
      int64_t after = 0;
      while (true) {
        const pqxx::result r = t.exec_params(std::string("SELECT ") + kImageColumns +
                                                 " FROM imgsearch.images i WHERE i.status = 1 AND i.id > $1 "
                                                 "ORDER BY i.id LIMIT 10000",
                                             after);
        for (const pqxx::row& row : r) {
          const ImageRecord rec = RecordOf(row);
          index->AttachMeta(rec.id, store::MetaOf(rec));
          after = rec.id;
          ++indexed;
        }
        if (r.size() < 10000) break;
      }
    }));
    {
      std::unique_lock<RwMutex> lock(index_mu_);
      index_ = std::move(index);
    }
    {
      std::lock_guard<std::mutex> lock(catch_up_mu_);
      applied_seq_ = seq;
      changes_since_save_ = 0;
    }
    RETURN_IF_ERROR(CatchUp());
    // The graph must now hold exactly the indexed images.
    ASSIGN_OR_RETURN(CollectionStats counts, Counts());
    {
      std::shared_lock<RwMutex> lock(index_mu_);
      if (index_->size() != counts.indexed || static_cast<int64_t>(index_->GraphIds().size()) != counts.indexed) {
        return Status::Corruption("after catching up it holds " + std::to_string(index_->size()) +
                                  " images, the database " + std::to_string(counts.indexed));
      }
    }
    spdlog::info("search index loaded from {} ({} images, {} changes replayed)", path, counts.indexed,
                 changes_since_save_.load());
    return Status::Ok();
  }

  std::string SnapshotPath() const {
    if (options_.index_cache_dir.empty() || collection_id_.empty()) return "";
    return options_.index_cache_dir + "/" + collection_id_ + ".hnsw";
  }

  // Writes the index as of applied_seq_ (no change is applied meanwhile).
  Status SaveSnapshot() {
    const std::string path = SnapshotPath();
    if (path.empty()) return Status::Ok();
    std::error_code ec;
    std::filesystem::create_directories(options_.index_cache_dir, ec);
    if (ec) return Status::IoError("cannot create " + options_.index_cache_dir + ": " + ec.message());
    std::lock_guard<std::mutex> lock(catch_up_mu_);
    std::shared_lock<RwMutex> index_lock(index_mu_);
    SnapshotLock file_lock(path, LOCK_EX);  // search nodes on one machine share the cache
    RETURN_IF_ERROR(index_->Save(path, applied_seq_));
    changes_since_save_ = 0;
    return Status::Ok();
  }

  // An advisory lock on PATH.lock for as long as it lives.
  class SnapshotLock {
   public:
    SnapshotLock(const std::string& path, int how)
        : fd_(::open((path + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
      if (fd_ >= 0) ::flock(fd_, how);
    }
    ~SnapshotLock() {
      if (fd_ >= 0) ::close(fd_);
    }

   private:
    int fd_;
  };

  Status CatchUpIfLoaded() {
    if (!loaded_) return Status::Ok();
    return CatchUp();
  }

  // Applies every change committed after applied_seq_.
  Status CatchUp() {
    std::lock_guard<std::mutex> lock(catch_up_mu_);
    int64_t upper = 0;
    std::vector<ImageRecord> records;
    std::vector<std::vector<float>> vectors;
    std::vector<int64_t> removed;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      Snapshot t(c);
      upper = LastSeq(t);
      records.clear();
      vectors.clear();
      removed.clear();
      if (upper <= applied_seq_) return;
      for (const pqxx::row& row :
           t.exec_params(std::string("SELECT ") + kImageColumns +
                             ", v.data FROM imgsearch.images i LEFT JOIN imgsearch.vectors v ON v.hash = "
                             "i.content_hash WHERE i.seq > $1 AND i.seq <= $2",
                         applied_seq_, upper)) {
        records.push_back(RecordOf(row));
        vectors.push_back(row[kImageColumnCount].is_null() ? std::vector<float>() : VectorOf(row[kImageColumnCount]));
      }
      for (const pqxx::row& row :
           t.exec_params("SELECT image_id FROM imgsearch.removed WHERE seq > $1 AND seq <= $2", applied_seq_, upper)) {
        removed.push_back(row[0].as<int64_t>());
      }
    }));
    if (upper <= applied_seq_) return Status::Ok();
    {
      std::unique_lock<RwMutex> index_lock(index_mu_);
      for (int64_t id : removed) index_->Erase(id);
      for (size_t i = 0; i < records.size(); ++i) {
        std::vector<float> v = store::Normalised(std::move(vectors[i]));
        if (records[i].status != ImageStatus::kIndexed || static_cast<int>(v.size()) != model_.dim) {
          index_->Erase(records[i].id);
        } else {
          index_->Put(records[i].id, v, store::MetaOf(records[i]));
        }
      }
    }
    applied_seq_ = upper;
    changes_since_save_ += static_cast<int64_t>(records.size() + removed.size());
    return Status::Ok();
  }

  // Listens for change notifications (and checks every few seconds regardless); after a lost
  // connection, reconnects with backoff and catches up from the last applied sequence value.
  void Follow() {
    struct Receiver final : pqxx::notification_receiver {
      Receiver(pqxx::connection& c, std::atomic<bool>* flag) : notification_receiver(c, kChangesChannel), flag(flag) {}
      void operator()(const std::string&, int) override { *flag = true; }
      std::atomic<bool>* flag;
    };
    std::atomic<bool> notified{false};
    while (!stop_) {
      std::unique_ptr<pqxx::connection> conn;
      try {
        conn = OpenConnection(client_->url());
        Receiver receiver(*conn, &notified);
        auto last_check = std::chrono::steady_clock::now() - std::chrono::hours(1);  // catch up at once
        while (!stop_) {
          const bool due = std::chrono::steady_clock::now() - last_check > std::chrono::seconds(5);
          if (notified.exchange(false) || due) {
            if (Status st = CatchUp(); !st.ok()) spdlog::warn("search index: {}", st.ToString());
            last_check = std::chrono::steady_clock::now();
            if (changes_since_save_ >= options_.index.snapshot_every) {
              if (Status st = SaveSnapshot(); !st.ok())
                spdlog::warn("could not snapshot the search index: {}", st.ToString());
            }
          }
          conn->await_notification(0, 200'000);
        }
      } catch (const std::exception& e) {
        spdlog::warn("following changes in {}: {}; reconnecting", SafeUrl(client_->url()), e.what());
        conn.reset();
        for (int i = 0; i < 10 && !stop_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }

  const std::shared_ptr<PgClient> client_;
  const CollectionOptions options_;
  const ModelIdentity model_;
  const std::string collection_id_;  // names the index snapshot

  std::mutex load_mu_;
  std::atomic<bool> loaded_{false};
  std::mutex catch_up_mu_;
  int64_t applied_seq_ = 0;                     // guarded by catch_up_mu_
  std::atomic<int64_t> changes_since_save_{0};  // changes applied since the last snapshot
  mutable RwMutex index_mu_;
  std::unique_ptr<store::VectorIndex> index_;  // guarded by index_mu_
  std::atomic<bool> stop_{false};
  std::thread follower_;
};

class PgJobQueue final : public JobQueue {
 public:
  explicit PgJobQueue(std::shared_ptr<PgClient> client) : client_(std::move(client)) {}

  Status Enqueue(std::span<const FileJob> jobs) override {
    if (jobs.empty()) return Status::Ok();
    std::vector<std::string> paths, sizes, mtimes;
    for (const FileJob& j : jobs) {
      paths.push_back(j.path);
      sizes.push_back(std::to_string(j.size_bytes));
      mtimes.push_back(std::to_string(j.mtime_ns));
    }
    return client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      // A job already waiting for the same file state is left alone (its lease too); a changed
      // file gets a new generation, so a worker holding the old one does not write its result.
      w.exec_params(
          "INSERT INTO imgsearch.jobs(path, size_bytes, mtime_ns) "
          "SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) "
          "ON CONFLICT (path) DO UPDATE SET size_bytes = EXCLUDED.size_bytes, mtime_ns = EXCLUDED.mtime_ns, "
          "generation = imgsearch.jobs.generation + 1, enqueued_at = now(), not_before = now(), attempts = 0, "
          "lease_owner = NULL, lease_until = NULL, last_error = NULL "
          "WHERE imgsearch.jobs.size_bytes <> EXCLUDED.size_bytes OR imgsearch.jobs.mtime_ns <> EXCLUDED.mtime_ns",
          ArrayLiteral(paths), ArrayLiteral(sizes), ArrayLiteral(mtimes));
      w.commit();
    });
  }

  Result<QueueStats> Stats() override {
    QueueStats s;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      Snapshot t(c);
      const pqxx::row r = t.exec(
          "SELECT count(*) FILTER (WHERE (lease_until IS NULL OR lease_until < now()) AND not_before <= now()), "
          "count(*) FILTER (WHERE lease_until >= now()), "
          "count(*) FILTER (WHERE (lease_until IS NULL OR lease_until < now()) AND not_before > now()) "
          "FROM imgsearch.jobs")[0];
      s.pending = r[0].as<int64_t>();
      s.leased = r[1].as<int64_t>();
      s.retrying = r[2].as<int64_t>();
      s.workers.clear();
      for (const pqxx::row& w :
           t.exec("SELECT name, extract(epoch FROM now() - last_seen)::float8, jobs_done FROM imgsearch.workers "
                  "WHERE last_seen > now() - interval '1 minute' ORDER BY name")) {
        s.workers.push_back({w[0].as<std::string>(), w[1].as<double>(), w[2].as<int64_t>()});
      }
    }));
    return s;
  }

 private:
  std::shared_ptr<PgClient> client_;
};

}  // namespace

Result<std::unique_ptr<Collection>> OpenPgCollection(std::shared_ptr<PgClient> client, const ModelIdentity* model,
                                                     const CollectionOptions& options) {
  ModelIdentity stored;
  std::string collection_id;
  // The model and the collection id as stored, read within `t`.
  auto read_meta = [&](pqxx::transaction_base& t) {
    stored = {};
    for (const pqxx::row& row : t.exec(
             "SELECT key, value FROM imgsearch.meta WHERE key IN ('model_id', 'model_name', 'dim', 'collection_id')")) {
      const std::string key = row[0].as<std::string>(), value = row[1].as<std::string>();
      if (key == "model_id") stored.id = value;
      if (key == "model_name") stored.name = value;
      if (key == "collection_id") collection_id = value;
      if (key == "dim") {
        try {
          stored.dim = std::stoi(value);
        } catch (const std::exception&) {
          throw StatusError{
              Status::Corruption(SafeUrl(client->url()) + ": stored dimension \"" + value + "\" is not a number")};
        }
      }
    }
  };
  if (options.read_only) {
    // Reading never writes: no collection id is made, no model bound.
    RETURN_IF_ERROR(client->Run([&](pqxx::connection& c) {
      pqxx::read_transaction t(c);
      read_meta(t);
    }));
    if (stored.dim == 0) {
      return model == nullptr
                 ? Status::NotFound("no collection at " + SafeUrl(client->url()) + " (index some images into it first)")
                 : Status::InvalidArgument(SafeUrl(client->url()) + " has no model yet");
    }
    if (model != nullptr)
      RETURN_IF_ERROR(store::CheckSameModel(stored, *model, SafeUrl(client->url()), "use that model"));
    return std::unique_ptr<Collection>(
        std::make_unique<PgCollection>(std::move(client), stored, std::move(collection_id), options));
  }
  RETURN_IF_ERROR(client->Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    w.exec("LOCK TABLE imgsearch.meta IN SHARE ROW EXCLUSIVE MODE");  // two first users bind one model
    // A name for this collection that outlives renames of the database (index snapshots use it).
    w.exec(
        "INSERT INTO imgsearch.meta(key, value) VALUES ('collection_id', md5(random()::text || "
        "clock_timestamp()::text)) ON CONFLICT (key) DO NOTHING");
    read_meta(w);
    if (model == nullptr || stored.dim != 0) w.commit();  // keeps the collection id
    if (model == nullptr) return;
    if (stored.dim == 0) {
      for (const auto& [key, value] : {std::pair<std::string, std::string>{"model_id", model->id},
                                       {"model_name", model->name},
                                       {"dim", std::to_string(model->dim)}}) {
        w.exec_params("INSERT INTO imgsearch.meta(key, value) VALUES ($1, $2)", key, value);
      }
      w.commit();
      stored = *model;
    } else if (Status st = store::CheckSameModel(stored, *model, SafeUrl(client->url()), "use that model"); !st.ok()) {
      throw StatusError{st};
    }
  }));
  if (model == nullptr && stored.dim == 0 && !options.create_if_missing) {
    return Status::NotFound("no collection at " + SafeUrl(client->url()) + " (index some images into it first)");
  }
  return std::unique_ptr<Collection>(
      std::make_unique<PgCollection>(std::move(client), stored, std::move(collection_id), options));
}

}  // namespace scaleout

bool IsPostgresUrl(const std::string& location) {
  return location.starts_with("postgresql://") || location.starts_with("postgres://");
}

std::string RedactedLocation(const std::string& location) { return scaleout::SafeUrl(location); }

Result<QueueStats> QueueStatsAt(const std::string& url) {
  if (!IsPostgresUrl(url)) return Status::InvalidArgument("no job queue in " + url + ": not a postgresql:// URL");
  auto client = std::make_shared<scaleout::PgClient>(url, scaleout::RetryFor());
  RETURN_IF_ERROR(scaleout::MigrateSchema(client.get(), kPgSchemaVersion).status());
  return scaleout::PgJobQueue(client).Stats();
}

Result<Store> OpenStore(const std::string& location, const ModelIdentity* model, const CollectionOptions& options) {
  Store store;
  if (!IsPostgresUrl(location)) {
    ASSIGN_OR_RETURN(store.collection, OpenCollection(location, model, options));
    return store;
  }
  auto client = std::make_shared<scaleout::PgClient>(
      location, options.wait_for_database ? std::chrono::hours(24 * 365) : scaleout::RetryFor());
  if (options.read_only) {
    RETURN_IF_ERROR(scaleout::CheckSchemaForReading(client.get()));
  } else {
    RETURN_IF_ERROR(scaleout::MigrateSchema(client.get(), kPgSchemaVersion).status());
  }
  ASSIGN_OR_RETURN(store.collection, scaleout::OpenPgCollection(client, model, options));
  store.queue = std::make_unique<scaleout::PgJobQueue>(client);
  return store;
}

}  // namespace imgsearch
