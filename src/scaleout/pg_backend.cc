// The PostgreSQL backend of the collection core: rows and vectors in the database, shared by every
// process of a scale-out deployment; the change feed is the database's change sequence, with
// NOTIFY to wake search nodes.
#include "scaleout/pg_backend.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "base/text.h"
#include "store/catalog_backend.h"
#include "store/collection_meta.h"

namespace imgsearch::scaleout {

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
  if (!row[12].is_null()) r.frame_times = VectorOf(row[12]);
  return r;
}

std::vector<float> VectorOf(const pqxx::field& field) {
  const pqxx::binarystring bytes(field);
  return store::FloatsOf({bytes.data(), bytes.size()});
}

void LockChanges(pqxx::work& w) { w.exec_params("SELECT pg_advisory_xact_lock($1)", kChangeLock); }

void NotifyChanges(pqxx::work& w) { w.exec_params("SELECT pg_notify($1, '')", std::string(kChangesChannel)); }

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The database's clock in milliseconds: every writer marks and expires releases by the same clock.
constexpr const char* kDbNowMs = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
// Images and videos in use whose content has no text yet (the text stage's work).
constexpr const char* kPendingTexts =
    "FROM imgsearch.vectors v WHERE v.released_at_ms IS NULL AND NOT EXISTS (SELECT 1 FROM "
    "imgsearch.texts t WHERE t.hash = v.hash) AND EXISTS (SELECT 1 FROM imgsearch.images i WHERE i.content_hash = "
    "v.hash AND i.status = 1)";

// Releases the vectors of `hashes` that no image has any more, then deletes those released longer
// ago than the collection's grace period that no image uses (store/catalog_backend.h): checked
// again by the DELETE, a statement of its own, which sees the images other writers committed
// meanwhile (the release's own check may not).
void ReleaseVectors(pqxx::work& w, const std::vector<std::string>& hashes) {
  for (const std::string& hash : hashes) {
    w.exec_params(std::string("UPDATE imgsearch.vectors SET released_at_ms = ") + kDbNowMs +
                      " WHERE hash = $1 AND released_at_ms IS NULL AND NOT EXISTS "
                      "(SELECT 1 FROM imgsearch.images WHERE content_hash = $1)",
                  hash);
  }
  // Marks an older imgsearch left on vectors it reused are cleared (it does not clear them).
  w.exec(
      "UPDATE imgsearch.vectors v SET released_at_ms = NULL WHERE released_at_ms IS NOT NULL AND EXISTS "
      "(SELECT 1 FROM imgsearch.images i WHERE i.content_hash = v.hash)");
  const pqxx::result keep =
      w.exec_params("SELECT value FROM imgsearch.meta WHERE key = $1", std::string(store::kKeepRemovedKey));
  const auto stored = keep.empty() ? std::nullopt : std::optional<std::string>(keep[0][0].as<std::string>());
  w.exec_params(std::string("DELETE FROM imgsearch.vectors v WHERE released_at_ms <= ") + kDbNowMs +
                    " - $1 AND NOT EXISTS (SELECT 1 FROM imgsearch.images i WHERE i.content_hash = v.hash)",
                store::KeepRemovedFrom(stored).count());
}

}  // namespace

std::vector<int64_t> WriteUpserts(pqxx::work& w, std::span<const ImageUpsert> batch, int dim) {
  std::vector<int64_t> ids;
  ids.reserve(batch.size());
  std::vector<std::string> released;  // content the rows no longer have
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
        if (Status st = store::CheckEmbeddingShape(u, dim); !st.ok()) throw StatusError{st};
        w.exec_params(
            "INSERT INTO imgsearch.vectors(hash, dim, data, times) VALUES ($1, $2, $3, NULLIF($4, ''::bytea)) "
            "ON CONFLICT (hash) DO UPDATE SET dim = EXCLUDED.dim, data = EXCLUDED.data, times = EXCLUDED.times, "
            "released_at_ms = NULL",
            r.content_hash, dim, pqxx::binarystring(u.embedding.data(), u.embedding.size() * sizeof(float)),
            pqxx::binarystring(r.frame_times.data(), r.frame_times.size() * sizeof(float)));
      } else if (w.exec_params("UPDATE imgsearch.vectors SET released_at_ms = NULL WHERE hash = $1 RETURNING 1",
                               r.content_hash)
                     .empty()) {  // a kept vector taken again is in use again
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
    if (!old.empty() && old[0][0].as<std::string>() != r.content_hash) released.push_back(old[0][0].as<std::string>());
  }
  // Once every row is written: a later row of the batch may be a copy reusing a released vector.
  ReleaseVectors(w, released);
  return ids;
}

std::vector<int64_t> WriteRemovals(pqxx::work& w, std::span<const std::string> paths) {
  std::vector<int64_t> removed;
  std::vector<std::string> released;
  for (const std::string& path : paths) {
    const pqxx::result r =
        w.exec_params("DELETE FROM imgsearch.images WHERE path = $1 RETURNING id, content_hash", path);
    if (r.empty()) continue;
    const int64_t id = r[0][0].as<int64_t>();
    w.exec_params(
        "INSERT INTO imgsearch.removed(image_id, seq) VALUES ($1, nextval('imgsearch.change_seq')) "
        "ON CONFLICT (image_id) DO UPDATE SET seq = EXCLUDED.seq",
        id);
    released.push_back(r[0][1].as<std::string>());
    removed.push_back(id);
  }
  ReleaseVectors(w, released);
  return removed;
}

namespace {

// The newest change-sequence value committed (see pg.h for why nothing below it can still appear).
int64_t LastSeqIn(pqxx::transaction_base& t) {
  return t
      .exec(
          "SELECT greatest((SELECT coalesce(max(seq), 0) FROM imgsearch.images), "
          "(SELECT coalesce(max(seq), 0) FROM imgsearch.removed))")[0][0]
      .as<int64_t>();
}

class PgBackend final : public store::CatalogBackend {
 public:
  PgBackend(std::shared_ptr<PgClient> client, std::string collection_id, std::string index_cache_dir)
      : client_(std::move(client)),
        where_(SafeUrl(client_->url())),
        collection_id_(std::move(collection_id)),
        index_cache_dir_(std::move(index_cache_dir)) {}

  ~PgBackend() override {
    receiver_.reset();  // before the connection it listens on
    listener_.reset();
  }

  const std::string& where() const override { return where_; }
  bool sole_writer() const override { return false; }
  // workers, watchers and other nodes write too
  std::string SnapshotPath() const override {
    if (index_cache_dir_.empty() || collection_id_.empty()) return "";
    return index_cache_dir_ + "/" + collection_id_ + ".hnsw";
  }
  bool may_write_snapshot() const override { return true; }  // a cache of this machine's, not the database

  Result<ModelIdentity> ReadModel() override {
    ModelIdentity stored;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::read_transaction t(c);
      stored = ReadModelIn(t);
    }));
    return stored;
  }

  Result<ModelIdentity> BindModel(const ModelIdentity& model) override {
    ModelIdentity stored;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      w.exec("LOCK TABLE imgsearch.meta IN SHARE ROW EXCLUSIVE MODE");  // two first users bind one model
      stored = ReadModelIn(w);
      if (stored.dim != 0) return;
      for (const auto& [key, value] : {std::pair<std::string, std::string>{"model_id", model.id},
                                       {"model_name", model.name},
                                       {"dim", std::to_string(model.dim)}}) {
        w.exec_params("INSERT INTO imgsearch.meta(key, value) VALUES ($1, $2)", key, value);
      }
      w.commit();
      stored = model;
    }));
    return stored;
  }

  Result<std::optional<std::string>> GetMeta(const std::string& key) override {
    std::optional<std::string> value;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::nontransaction t(c);
      const pqxx::result r = t.exec_params("SELECT value FROM imgsearch.meta WHERE key = $1", key);
      value = r.empty() ? std::nullopt : std::optional<std::string>(r[0][0].as<std::string>());
    }));
    return value;
  }

  Status UpdateMeta(
      const std::string& key,
      const std::function<Result<std::optional<std::string>>(const std::optional<std::string>&)>& change) override {
    return client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      w.exec("LOCK TABLE imgsearch.meta IN SHARE ROW EXCLUSIVE MODE");  // read, decide and write as one
      const pqxx::result r = w.exec_params("SELECT value FROM imgsearch.meta WHERE key = $1", key);
      const std::optional<std::string> stored =
          r.empty() ? std::nullopt : std::optional<std::string>(r[0][0].as<std::string>());
      Result<std::optional<std::string>> value = change(stored);
      if (!value.ok()) throw StatusError{value.status()};
      if (!*value) return;
      w.exec_params(
          "INSERT INTO imgsearch.meta(key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = "
          "EXCLUDED.value",
          key, **value);
      w.commit();
    });
  }

  Result<std::vector<int64_t>> Upsert(std::span<const ImageUpsert> batch, int dim) override {
    std::vector<int64_t> ids;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      LockChanges(w);
      ids = WriteUpserts(w, batch, dim);
      NotifyChanges(w);
      w.commit();
    }));
    return ids;
  }

  Result<std::vector<int64_t>> Remove(std::span<const std::string> paths) override {
    std::vector<int64_t> removed;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      LockChanges(w);
      removed = WriteRemovals(w, paths);
      if (!removed.empty()) NotifyChanges(w);
      w.commit();
    }));
    return removed;
  }

  Status PurgeReleased() override {
    return client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      ReleaseVectors(w, {});
      w.commit();
    });
  }

  Result<std::optional<int64_t>> Move(const std::string& from, const std::string& to) override {
    std::optional<int64_t> moved;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      LockChanges(w);
      if (from != to && !w.exec_params("SELECT 1 FROM imgsearch.images WHERE path = $1", to).empty()) {
        throw StatusError{Status::InvalidArgument("cannot move " + from + " to " + to + ": already indexed")};
      }
      const pqxx::result r = w.exec_params(
          "UPDATE imgsearch.images SET path = $2, seq = nextval('imgsearch.change_seq') WHERE path = $1 RETURNING id",
          from, to);
      moved = r.empty() ? std::nullopt : std::optional<int64_t>(r[0][0].as<int64_t>());
      if (!moved) return;
      NotifyChanges(w);
      w.commit();
    }));
    return moved;
  }

  Result<std::optional<ImageRecord>> GetById(int64_t id) override {
    return GetOne(std::string("SELECT ") + kImageColumns + " FROM imgsearch.images i WHERE i.id = $1",
                  std::to_string(id));
  }

  Result<std::optional<ImageRecord>> GetByPath(const std::string& path) override {
    return GetOne(std::string("SELECT ") + kImageColumns + " FROM imgsearch.images i WHERE i.path = $1", path);
  }

  Result<std::vector<float>> GetVectors(int64_t id) override {
    std::vector<float> v;
    bool found = false;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::nontransaction t(c);
      const pqxx::result r = t.exec_params(
          "SELECT v.data, v.dim, length(v.times) / 4 FROM imgsearch.images i JOIN imgsearch.vectors v ON "
          "v.hash = i.content_hash WHERE i.id = $1 AND i.status = 1",
          id);
      found = !r.empty();
      if (found) {
        const pqxx::binarystring data(r[0][0]);
        v = store::StoredVectors({data.data(), data.size()}, r[0][1].as<int64_t>(),
                                 r[0][2].is_null() ? 0 : r[0][2].as<size_t>());
        if (v.empty())
          throw StatusError{Status::Corruption("the vectors of image " + std::to_string(id) + " have the wrong size")};
      }
    }));
    if (!found) return Status::NotFound("image " + std::to_string(id) + " has no embedding");
    return v;
  }

  Result<bool> HasVector(const std::string& hash) override {
    bool found = false;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::nontransaction t(c);
      // A kept vector near its deletion is not offered (store::kKeptVectorMarginMs).
      found = !t.exec_params(
                    std::string("SELECT 1 FROM imgsearch.vectors WHERE hash = $1 AND (released_at_ms IS NULL "
                                "OR released_at_ms > ") +
                        kDbNowMs + " - coalesce((SELECT value::bigint FROM imgsearch.meta WHERE key = $2), $3) + $4)",
                    hash, std::string(store::kKeepRemovedKey), kDefaultKeepRemoved.count(), store::kKeptVectorMarginMs)
                   .empty();
    }));
    return found;
  }

  Result<std::vector<TextJob>> PendingTexts(int limit) override {
    std::vector<TextJob> jobs;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      jobs.clear();
      pqxx::nontransaction t(c);
      // In random order: workers reading texts at once mostly take different contents.
      for (const pqxx::row& r : t.exec_params(std::string("SELECT v.hash, (SELECT i.path FROM imgsearch.images i WHERE "
                                                          "i.content_hash = v.hash AND i.status = 1 ORDER BY i.id "
                                                          "LIMIT 1), v.times ") +
                                                  kPendingTexts + " ORDER BY random() LIMIT $1",
                                              limit)) {
        jobs.push_back(
            {r[0].as<std::string>(), r[1].as<std::string>(), r[2].is_null() ? std::vector<float>() : VectorOf(r[2])});
      }
    }));
    return jobs;
  }

  Status PutTexts(std::span<const ContentText> texts) override {
    for (const ContentText& t : texts) {
      if (t.content_hash.empty()) return Status::InvalidArgument("a text to store has no content hash");
    }
    return client_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      for (const ContentText& t : texts) {
        // Only for content still stored: its vectors may have been purged while the text was read.
        w.exec_params(
            "INSERT INTO imgsearch.texts (hash, languages, text, words) SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 "
            "FROM imgsearch.vectors WHERE hash = $1) ON CONFLICT (hash) DO UPDATE SET languages = excluded.languages, "
            "text = excluded.text, words = excluded.words",
            t.content_hash, t.languages, t.text.text, store::WordsJson(t.text));
      }
      w.commit();
    });
  }

  Result<std::optional<ContentText>> GetText(int64_t id) override {
    std::optional<ContentText> out;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::nontransaction t(c);
      const pqxx::result r = t.exec_params(
          "SELECT t.hash, t.languages, t.text, t.words FROM imgsearch.images i JOIN imgsearch.texts t ON t.hash = "
          "i.content_hash WHERE i.id = $1",
          id);
      out.reset();
      if (!r.empty()) {
        out = ContentText{r[0][0].as<std::string>(), r[0][1].as<std::string>(),
                          store::TextFromJson(r[0][2].as<std::string>(), r[0][3].as<std::string>())};
      }
    }));
    return out;
  }

  Result<std::vector<store::TextCandidate>> SearchText(std::span<const std::string> words, int limit) override {
    // Each word of three characters or more as an ILIKE pattern (the trigram index serves it).
    std::vector<std::string> patterns;
    std::string joined;
    for (const std::string& word : words) {
      if (Utf8Length(word) < 3) continue;
      std::string pattern = "%";
      for (char ch : word) {
        if (ch == '%' || ch == '_' || ch == '\\') pattern += '\\';
        pattern += ch;
      }
      patterns.push_back(pattern + "%");
      joined += (joined.empty() ? "" : " ") + word;
    }
    std::vector<store::TextCandidate> out;
    if (patterns.empty()) return out;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      out.clear();
      pqxx::nontransaction t(c);
      // Ranked by pg_trgm's word similarity where the extension is there (pg.cc), else by how
      // much of the text the words are.
      if (trigrams_ < 0) trigrams_ = t.exec("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").empty() ? 0 : 1;
      // The patterns are quoted by libpq (their number varies, so they are not parameters).
      std::string sql = std::string("SELECT i.id, t.text, ") +
                        (trigrams_ == 1 ? "word_similarity($1, t.text)" : "length($1)::float / (1 + length(t.text))") +
                        " FROM imgsearch.texts t JOIN imgsearch.images i ON i.content_hash = t.hash AND i.status = 1 "
                        "WHERE true";
      for (const std::string& p : patterns) sql += " AND t.text ILIKE " + t.quote(p);
      sql += " ORDER BY 3 DESC, i.id LIMIT $2";
      for (const pqxx::row& r : t.exec_params(sql, joined, limit)) {
        out.push_back({r[0].as<int64_t>(), r[1].as<std::string>(), r[2].as<double>()});
      }
    }));
    return out;
  }

  Result<store::BackendCounts> Counts() override {
    store::BackendCounts s;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      Snapshot t(c);
      const pqxx::row r = t.exec(
          "SELECT count(*) FILTER (WHERE status = 1), count(*) FILTER (WHERE status = 2), "
          "(SELECT count(*) FROM imgsearch.vectors WHERE released_at_ms IS NULL), "
          "(SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON "
          "n.oid = c.relnamespace WHERE n.nspname = 'imgsearch' AND c.relkind = 'r'), "
          "(SELECT value FROM imgsearch.meta WHERE key = 'schema_version'), "
          "(SELECT count(*) FROM imgsearch.vectors WHERE released_at_ms IS NOT NULL), "
          "(SELECT value FROM imgsearch.meta WHERE key = '" +
          std::string(store::kKeepRemovedKey) +
          "'), (SELECT count(*) FROM imgsearch.texts t JOIN imgsearch.vectors v ON v.hash = t.hash WHERE "
          "v.released_at_ms IS NULL), (SELECT count(*) " +
          kPendingTexts + ") FROM imgsearch.images")[0];
      s.indexed = r[0].as<int64_t>();
      s.failed = r[1].as<int64_t>();
      s.distinct_vectors = r[2].as<int64_t>();
      s.database_bytes = r[3].as<int64_t>();
      s.schema_version = std::stoi(r[4].as<std::string>());
      s.kept_vectors = r[5].as<int64_t>();
      s.keep_removed =
          store::KeepRemovedFrom(r[6].is_null() ? std::nullopt : std::optional<std::string>(r[6].as<std::string>()));
      s.texts_read = r[7].as<int64_t>();
      s.texts_pending = r[8].as<int64_t>();
      for (const pqxx::row& f :
           t.exec("SELECT format, count(*) FROM imgsearch.images WHERE status = 1 GROUP BY format")) {
        s.formats[f[0].as<std::string>()] = f[1].as<int64_t>();
      }
    }));
    return s;
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

  // Pages by id in one snapshot. After a lost connection it resumes where it stopped in a newer
  // snapshot, and returns the first snapshot's sequence value: the changes replayed from there
  // cover whatever the two disagree on.
  Result<int64_t> ReadIndexed(const std::function<Status(const ImageRecord&, std::span<const float>)>& visit) override {
    int64_t seq = -1, after = 0;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      Snapshot t(c);
      if (seq < 0) seq = LastSeqIn(t);
      while (true) {
        const pqxx::result r =
            t.exec_params(std::string("SELECT ") + kImageColumns +
                              ", v.data FROM imgsearch.images i JOIN imgsearch.vectors v ON v.hash = i.content_hash "
                              "WHERE i.status = 1 AND i.id > $1 ORDER BY i.id LIMIT 4096",
                          after);
        for (const pqxx::row& row : r) {
          const ImageRecord rec = RecordOf(row);
          if (Status st = visit(rec, VectorOf(row[kImageColumnCount])); !st.ok()) throw StatusError{st};
          after = rec.id;
        }
        if (r.size() < 4096) break;
      }
    }));
    return seq;
  }

  Result<int64_t> ReadIndexedRecords(const std::function<void(const ImageRecord&)>& visit) override {
    int64_t seq = -1, after = 0;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      Snapshot t(c);
      if (seq < 0) seq = LastSeqIn(t);
      while (true) {
        const pqxx::result r = t.exec_params(std::string("SELECT ") + kImageColumns +
                                                 " FROM imgsearch.images i WHERE i.status = 1 AND i.id > $1 "
                                                 "ORDER BY i.id LIMIT 10000",
                                             after);
        for (const pqxx::row& row : r) {
          const ImageRecord rec = RecordOf(row);
          visit(rec);
          after = rec.id;
        }
        if (r.size() < 10000) break;
      }
    }));
    return seq;
  }

  Result<store::ChangeSet> ChangesSince(int64_t seq) override {
    store::ChangeSet out;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      Snapshot t(c);
      out = {};
      out.last_seq = std::max(seq, LastSeqIn(t));
      if (out.last_seq <= seq) return;
      for (const pqxx::row& row :
           t.exec_params(std::string("SELECT ") + kImageColumns +
                             ", v.data FROM imgsearch.images i LEFT JOIN imgsearch.vectors v ON v.hash = "
                             "i.content_hash WHERE i.seq > $1 AND i.seq <= $2",
                         seq, out.last_seq)) {
        out.changed.push_back(RecordOf(row));
        out.vectors.push_back(row[kImageColumnCount].is_null() ? std::vector<float>()
                                                               : VectorOf(row[kImageColumnCount]));
      }
      for (const pqxx::row& row :
           t.exec_params("SELECT image_id FROM imgsearch.removed WHERE seq > $1 AND seq <= $2", seq, out.last_seq)) {
        out.removed.push_back(row[0].as<int64_t>());
      }
    }));
    return out;
  }

  Result<int64_t> LastSeq() override {
    int64_t seq = 0;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::read_transaction t(c);
      seq = LastSeqIn(t);
    }));
    return seq;
  }

  // Deletions stay recorded (one small row per image ever removed): other search nodes may be behind.
  Status ForgetChangesUpTo(int64_t) override { return Status::Ok(); }

  // Listens on its own connection; after a lost one, reconnects (waiting a second) at the next call.
  bool WaitForChanges(std::chrono::milliseconds timeout, const std::atomic<bool>& stop) override {
    const auto until = std::chrono::steady_clock::now() + timeout;
    try {
      if (listener_ == nullptr) {
        listener_ = OpenConnection(client_->url());
        receiver_ = std::make_unique<Receiver>(*listener_, &notified_);
      }
      while (!stop && !notified_.exchange(false) && std::chrono::steady_clock::now() < until) {
        listener_->await_notification(0, 200'000);
      }
    } catch (const std::exception& e) {
      spdlog::warn("following changes in {}: {}; reconnecting", where_, e.what());
      receiver_.reset();
      listener_.reset();
      for (int i = 0; i < 10 && !stop; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return true;
  }

  Status CheckIntegrity() override {
    int64_t missing = 0;
    RETURN_IF_ERROR(client_->Run([&](pqxx::connection& c) {
      pqxx::read_transaction t(c);
      missing = t.exec(
                     "SELECT count(*) FROM imgsearch.images i WHERE i.status = 1 AND NOT EXISTS "
                     "(SELECT 1 FROM imgsearch.vectors v WHERE v.hash = i.content_hash)")[0][0]
                    .as<int64_t>();
    }));
    if (missing > 0)
      return Status::Corruption(where_ + ": " + std::to_string(missing) + " indexed images have no vector");
    return Status::Ok();
  }

 private:
  struct Receiver final : pqxx::notification_receiver {
    Receiver(pqxx::connection& c, std::atomic<bool>* flag) : notification_receiver(c, kChangesChannel), flag(flag) {}
    void operator()(const std::string&, int) override { *flag = true; }
    std::atomic<bool>* flag;
  };

  // The bound model as stored, read within `t` (dim 0: none).
  ModelIdentity ReadModelIn(pqxx::transaction_base& t) const {
    ModelIdentity stored;
    for (const pqxx::row& row :
         t.exec_params("SELECT key, value FROM imgsearch.meta WHERE key IN ('model_id', 'model_name', 'dim', $1)",
                       std::string(store::kModelSourceKey))) {
      const std::string key = row[0].as<std::string>(), value = row[1].as<std::string>();
      if (key == "model_id") stored.id = value;
      if (key == "model_name") stored.name = value;
      if (key == store::kModelSourceKey) stored.source = value;
      if (key == "dim") {
        try {
          stored.dim = std::stoi(value);
        } catch (const std::exception&) {
          throw StatusError{Status::Corruption(where_ + ": stored dimension \"" + value + "\" is not a number")};
        }
      }
    }
    return stored;
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

  const std::shared_ptr<PgClient> client_;
  const std::string where_;
  const std::string collection_id_;  // names the index snapshot
  const std::string index_cache_dir_;
  // The change feed's listening connection: used by the core's follower thread only.
  std::unique_ptr<pqxx::connection> listener_;
  std::unique_ptr<Receiver> receiver_;
  std::atomic<bool> notified_{false};
  std::atomic<int> trigrams_{-1};  // pg_trgm installed: 1, not: 0, not asked yet (first text search): -1
};

}  // namespace

Result<std::unique_ptr<Collection>> OpenPgCollection(std::shared_ptr<PgClient> client, const ModelIdentity* model,
                                                     const CollectionOptions& options) {
  const std::string where = SafeUrl(client->url());
  // A name for this collection that outlives renames of the database (index snapshots use it),
  // made by the first writer; reading never writes.
  std::string collection_id;
  RETURN_IF_ERROR(client->Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    if (!options.read_only) {
      w.exec(
          "INSERT INTO imgsearch.meta(key, value) VALUES ('collection_id', md5(random()::text || "
          "clock_timestamp()::text)) ON CONFLICT (key) DO NOTHING");
    }
    const pqxx::result r = w.exec("SELECT value FROM imgsearch.meta WHERE key = 'collection_id'");
    collection_id = r.empty() ? "" : r[0][0].as<std::string>();
    if (!options.read_only) w.commit();
  }));
  auto backend = std::make_unique<PgBackend>(client, collection_id, options.index_cache_dir);
  if (model == nullptr && (options.read_only || !options.create_if_missing)) {
    ASSIGN_OR_RETURN(ModelIdentity stored, backend->ReadModel());
    if (stored.dim == 0) return Status::NotFound("no collection at " + where + " (index some images into it first)");
  }
  return store::OpenCollectionOver(std::move(backend), model, options);
}

}  // namespace imgsearch::scaleout
