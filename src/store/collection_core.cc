// The collection core: one implementation of Collection over any catalog backend. The backend
// holds the rows; the core holds the in-memory search index and keeps it equal to them by
// following the change sequence, snapshots it, rebuilds it when the snapshot is missing, stale or
// damaged, checks what is written and binds the model.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include "base/rw_mutex.h"
#include "base/text.h"
#include "store/catalog_backend.h"
#include "store/collection_meta.h"
#include "store/vector_index.h"

namespace imgsearch {

const char* ImageStatusName(ImageStatus status) { return status == ImageStatus::kIndexed ? "indexed" : "failed"; }

namespace store {
namespace {

constexpr const char* kRootsKey = "roots";  // meta: JSON list of the indexed folders
// Text matches read from the backend for one search at least (before filters).
constexpr int kTextCandidates = 1000;
// With a filter, which the backend does not apply: more, so that a narrow one still finds its few.
constexpr int kFilteredTextCandidates = 20'000;

// An advisory lock on PATH.lock for as long as it lives: processes that share a snapshot (search
// nodes on one machine, or a reader beside the writer) never read one half written. A reader
// does not create the lock file (reading never writes); without it there is no writer to wait for.
class SnapshotLock {
 public:
  SnapshotLock(const std::string& path, bool exclusive)
      : fd_(::open((path + ".lock").c_str(), exclusive ? O_RDWR | O_CREAT | O_CLOEXEC : O_RDONLY | O_CLOEXEC, 0644)) {
    if (fd_ >= 0) ::flock(fd_, exclusive ? LOCK_EX : LOCK_SH);
  }
  ~SnapshotLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  SnapshotLock(const SnapshotLock&) = delete;
  SnapshotLock& operator=(const SnapshotLock&) = delete;

 private:
  int fd_;
};

class CollectionCore final : public Collection {
 public:
  CollectionCore(std::unique_ptr<CatalogBackend> backend, ModelIdentity model, const CollectionOptions& options)
      : backend_(std::move(backend)), options_(options), model_(std::move(model)) {}

  ~CollectionCore() override {
    stop_ = true;
    if (follower_.joinable()) follower_.join();
    if (loaded_ && changes_since_save_ > 0) {
      if (Status st = SaveSnapshot(); !st.ok()) {
        spdlog::warn("could not snapshot the search index of {}: {}", backend_->where(), st.ToString());
      }
    }
  }

  Result<std::vector<int64_t>> Upsert(std::span<const ImageUpsert> batch) override {
    RETURN_IF_ERROR(CheckWritable());
    for (const ImageUpsert& u : batch) {
      if (u.record.status != ImageStatus::kIndexed || u.embedding.empty()) continue;
      RETURN_IF_ERROR(CheckEmbeddingShape(u, model_.dim));
      if (NormalisedRows(u.embedding, model_.dim).empty()) {
        return Status::InvalidArgument(u.record.path + ": embedding is zero or not finite");
      }
    }
    ASSIGN_OR_RETURN(std::vector<int64_t> ids, backend_->Upsert(batch, model_.dim));
    RETURN_IF_ERROR(CatchUpIfLoaded());
    return ids;
  }

  Result<int64_t> Remove(std::span<const std::string> paths) override {
    RETURN_IF_ERROR(CheckWritable());
    ASSIGN_OR_RETURN(std::vector<int64_t> ids, backend_->Remove(paths));
    RETURN_IF_ERROR(CatchUpIfLoaded());
    return static_cast<int64_t>(ids.size());
  }

  Status Move(const std::string& from, const std::string& to) override {
    RETURN_IF_ERROR(CheckWritable());
    ASSIGN_OR_RETURN(std::optional<int64_t> id, backend_->Move(from, to));
    if (!id) return Status::NotFound("cannot move " + from + ": not in the collection");
    return CatchUpIfLoaded();
  }

  Result<std::optional<ImageRecord>> GetById(int64_t id) override { return backend_->GetById(id); }
  Result<std::optional<ImageRecord>> GetByPath(const std::string& path) override { return backend_->GetByPath(path); }
  Result<std::vector<float>> GetVectors(int64_t id) override { return backend_->GetVectors(id); }

  Result<std::vector<float>> GetEmbedding(int64_t id, std::optional<double> time_s) override {
    ASSIGN_OR_RETURN(std::vector<float> rows, backend_->GetVectors(id));
    const auto dim = static_cast<size_t>(model_.dim);
    if (rows.size() == dim) return rows;
    ASSIGN_OR_RETURN(std::optional<ImageRecord> record, backend_->GetById(id));
    if (!record || record->frame_times.size() * dim != rows.size()) {
      return Status::NotFound("no indexed image with id " + std::to_string(id));  // changed meanwhile
    }
    const std::vector<float>& times = record->frame_times;
    if (time_s) {  // the frame nearest the time
      size_t best = 0;
      for (size_t f = 1; f < times.size(); ++f) {
        if (std::abs(times[f] - *time_s) < std::abs(times[best] - *time_s)) best = f;
      }
      return std::vector<float>(rows.begin() + static_cast<ptrdiff_t>(best * dim),
                                rows.begin() + static_cast<ptrdiff_t>((best + 1) * dim));
    }
    std::vector<float> mean(dim, 0.0f);  // the video as a whole
    const std::vector<float> unit = NormalisedRows(std::move(rows), model_.dim);
    for (size_t i = 0; i < unit.size(); ++i) mean[i % dim] += unit[i];
    std::vector<float> v = Normalised(std::move(mean));
    if (v.empty()) return Status::InvalidArgument("the frames of video " + std::to_string(id) + " cancel out");
    return v;
  }
  Result<bool> HasEmbeddingFor(const std::string& hash) override { return backend_->HasVector(hash); }

  Result<int64_t> Count() override {
    ASSIGN_OR_RETURN(BackendCounts c, backend_->Counts());
    return c.indexed + c.failed;
  }

  Status ForEach(const std::function<bool(const ImageRecord&)>& visit, std::optional<ImageStatus> status,
                 const std::string& under) override {
    return backend_->ForEach(visit, status, under);
  }

  Status Warm() override { return EnsureIndex(); }

  Result<std::vector<SearchHit>> Search(std::span<const float> query, const SearchOptions& o) override {
    RETURN_IF_ERROR(EnsureIndex());
    std::shared_lock<RwMutex> lock(index_mu_);
    return SearchIndex(index_.get(), model_.dim, query, o);
  }

  Result<std::vector<TextJob>> PendingTexts(int limit) override {
    if (limit <= 0) return std::vector<TextJob>();
    return backend_->PendingTexts(limit);
  }

  Status PutTexts(std::span<const ContentText> texts) override {
    if (options_.read_only) {
      return Status::InvalidArgument("the collection at " + backend_->where() + " is open read-only");
    }
    if (texts.empty()) return Status::Ok();
    return backend_->PutTexts(texts);
  }

  Result<std::optional<ContentText>> GetText(int64_t id) override { return backend_->GetText(id); }

  Result<std::vector<TextMatch>> SearchText(std::string_view words, const SearchFilter& filter, int limit) override {
    const std::vector<std::string> query = QueryWords(words);
    std::vector<TextMatch> out;
    if (query.empty() || limit <= 0) return out;
    RETURN_IF_ERROR(EnsureIndex());
    // The backend ranks every match; the filter, the short words and what is searchable now are
    // applied here, so a page of `limit` may need more candidates than that.
    const int wanted = filter.empty() ? std::max(limit * 4, kTextCandidates) : kFilteredTextCandidates;
    ASSIGN_OR_RETURN(const std::vector<TextCandidate> candidates, backend_->SearchText(query, std::max(limit, wanted)));
    // The backend matched the words of three characters or more (in any case, any script); the
    // shorter ones are checked here.
    std::vector<std::string> short_words;
    for (const std::string& w : query) {
      if (Utf8Length(w) < 3) short_words.push_back(w);
    }
    double best = 0;
    for (const TextCandidate& c : candidates) best = std::max(best, c.relevance);
    std::shared_lock<RwMutex> lock(index_mu_);
    for (const TextCandidate& c : candidates) {
      if (index_ == nullptr || !index_->Contains(c.id) || !index_->Passes(c.id, filter)) continue;
      if (!HoldsAll(c.text, short_words)) continue;
      // Relative to the best match: 1 for it, less for weaker ones (bm25 has no fixed scale).
      const float score = best > 0 ? static_cast<float>(std::max(0.0, c.relevance) / best) : 1.0f;
      out.push_back({c.id, score, MatchedWords(c.text, query)});
      if (out.size() == static_cast<size_t>(limit)) break;
    }
    return out;
  }

  Result<std::optional<double>> TextMoment(int64_t id, std::string_view words) override {
    ASSIGN_OR_RETURN(const std::optional<ContentText> text, backend_->GetText(id));
    if (!text) return std::optional<double>();
    return MomentOfWords(text->text, QueryWords(words));
  }

  Result<std::vector<CollectionRoot>> Roots() override {
    ASSIGN_OR_RETURN(std::optional<std::string> stored, backend_->GetMeta(kRootsKey));
    if (!stored) return std::vector<CollectionRoot>();
    return ParseRoots(*stored, backend_->where());
  }

  Status AddRoots(std::span<const CollectionRoot> add, RootChange change) override {
    RETURN_IF_ERROR(CheckWritable());
    return backend_->UpdateMeta(kRootsKey,
                                [&](const std::optional<std::string>& stored) -> Result<std::optional<std::string>> {
                                  std::vector<CollectionRoot> roots;
                                  if (stored) {
                                    ASSIGN_OR_RETURN(roots, ParseRoots(*stored, backend_->where()));
                                  }
                                  bool changed = false;
                                  RETURN_IF_ERROR(MergeRoots(&roots, add, change, &changed));
                                  if (!changed) return std::optional<std::string>();
                                  return std::optional<std::string>(RootsJson(roots));
                                });
  }

  Result<CollectionStats> Stats() override {
    ASSIGN_OR_RETURN(BackendCounts c, backend_->Counts());
    CollectionStats s;
    s.indexed = c.indexed;
    s.failed = c.failed;
    s.distinct_vectors = c.distinct_vectors;
    s.kept_vectors = c.kept_vectors;
    s.formats = std::move(c.formats);
    s.keep_removed = c.keep_removed;
    s.texts_read = c.texts_read;
    s.texts_pending = c.texts_pending;
    s.database_bytes = c.database_bytes;
    s.schema_version = c.schema_version;
    s.model = model_;
    s.index_params = options_.index;
    std::error_code ec;
    const std::string snapshot = backend_->SnapshotPath();
    const auto snapshot_bytes = snapshot.empty() ? 0 : std::filesystem::file_size(snapshot, ec);
    std::shared_lock<RwMutex> lock(index_mu_);
    // In memory when loaded; else what the snapshot takes (stats need not load the index).
    s.index_bytes = index_ != nullptr ? index_->graph_bytes() : ec ? 0 : static_cast<int64_t>(snapshot_bytes);
    const int64_t size = index_ != nullptr ? index_->size() : c.indexed;
    s.index_kind = size > options_.index.exact_below ? "hnsw" : "exact";
    return s;
  }

  Status Checkpoint() override {
    if (!loaded_) return Status::Ok();
    return SaveSnapshot();
  }

  // The index is compared with the catalog as of one state: the rows read in one snapshot, the
  // index caught up to exactly that state (other processes writing meanwhile: read again).
  Status CheckIntegrity() override {
    RETURN_IF_ERROR(backend_->CheckIntegrity());
    RETURN_IF_ERROR(EnsureIndex());
    for (int attempt = 0;; ++attempt) {
      std::vector<int64_t> ids;
      ASSIGN_OR_RETURN(const int64_t seq,
                       backend_->ReadIndexedRecords([&](const ImageRecord& r) { ids.push_back(r.id); }));
      RETURN_IF_ERROR(CatchUp());
      std::lock_guard<std::mutex> applying(catch_up_mu_);
      if (applied_seq_ != seq) {  // written meanwhile
        if (attempt < 20) continue;
        return Status::Unavailable(backend_->where() + " kept changing while it was checked; try again");
      }
      std::sort(ids.begin(), ids.end());
      std::shared_lock<RwMutex> lock(index_mu_);
      std::vector<int64_t> graph = index_ ? index_->GraphIds() : std::vector<int64_t>();
      std::sort(graph.begin(), graph.end());
      if (graph != ids) {
        return Status::Corruption(backend_->where() + ": the search index holds " + std::to_string(graph.size()) +
                                  " images, the catalog " + std::to_string(ids.size()));
      }
      return Status::Ok();
    }
  }

  const ModelIdentity& model() const override { return model_; }

  // The sole writer loads at once: it keeps the index current as it writes and snapshots it.
  Status Open() { return backend_->sole_writer() ? EnsureIndex() : Status::Ok(); }

 private:
  Status CheckWritable() const {
    if (options_.read_only)
      return Status::InvalidArgument("the collection at " + backend_->where() + " is open read-only");
    if (model_.dim <= 0) {
      return Status::InvalidArgument("the collection at " + backend_->where() + " has no model; open it with one");
    }
    return Status::Ok();
  }

  // Builds the index once: from the snapshot and the changes since, else from every vector.
  // Others' changes are then followed in the background.
  Status EnsureIndex() {
    if (loaded_) return Status::Ok();
    std::lock_guard<std::mutex> loading(load_mu_);
    if (loaded_) return Status::Ok();
    if (model_.dim <= 0) return Status::Ok();  // no model bound yet: nothing can be indexed
    const std::string path = backend_->SnapshotPath();
    std::error_code ec;
    bool from_snapshot = false;
    if (!path.empty() && std::filesystem::exists(path + ".meta", ec)) {
      if (Status st = LoadSnapshot(path); st.ok()) {
        from_snapshot = true;
      } else {
        spdlog::warn("search index snapshot {} not usable ({}); building the index from {}", path, st.message(),
                     backend_->where());
      }
    }
    if (!from_snapshot) {
      std::lock_guard<std::mutex> lock(catch_up_mu_);
      RETURN_IF_ERROR(RebuildLocked());
    }
    loaded_ = true;
    if (!from_snapshot && !path.empty() && changes_since_save_ > 0 && Worth()) {
      if (Status st = SaveSnapshot(); !st.ok()) {
        spdlog::warn("could not snapshot the search index of {}: {}", backend_->where(), st.ToString());
      }
    }
    if (!backend_->sole_writer()) follower_ = std::thread([this] { Follow(); });
    return Status::Ok();
  }

  // A collection small enough to be searched exactly is rebuilt faster than a snapshot is read; a
  // shared cache (search nodes) is always written, so that the next node starts from it.
  bool Worth() const {
    std::shared_lock<RwMutex> lock(index_mu_);
    return !backend_->sole_writer() || index_->size() > options_.index.exact_below;
  }

  // Called with catch_up_mu_ held: no change is applied meanwhile.
  Status RebuildLocked() {
    auto index = std::make_unique<VectorIndex>(model_.dim, options_.index);
    std::vector<int64_t> ids;
    std::vector<float> vectors;
    std::vector<ImageMeta> metas;
    auto flush = [&] {
      index->PutBatch(ids, vectors, std::move(metas));
      ids.clear();
      vectors.clear();
      metas.clear();
    };
    ASSIGN_OR_RETURN(
        const int64_t seq, backend_->ReadIndexed([&](const ImageRecord& r, std::span<const float> v) -> Status {
          const ImageMeta meta = MetaOf(r);
          if (v.size() != meta.frames() * static_cast<size_t>(model_.dim)) {
            return Status::Corruption(backend_->where() + ": the vectors of " + r.path + " hold " +
                                      std::to_string(v.size()) + " values, not " + std::to_string(meta.frames()) +
                                      " of the collection's " + std::to_string(model_.dim) + " dimensions");
          }
          const std::vector<float> n = NormalisedRows({v.begin(), v.end()}, model_.dim);
          ids.push_back(r.id);
          vectors.insert(vectors.end(), n.begin(), n.end());
          metas.push_back(meta);
          if (vectors.size() >= 4096 * static_cast<size_t>(model_.dim)) flush();
          return Status::Ok();
        }));
    flush();
    const int64_t n = index->size();
    {
      std::unique_lock<RwMutex> lock(index_mu_);
      index_ = std::move(index);
    }
    applied_seq_ = seq;
    changes_since_save_ = n > 0 ? 1 : 0;  // worth a snapshot
    spdlog::info("search index built from {}: {} images", backend_->where(), n);
    return Status::Ok();
  }

  // The snapshot's graph, every indexed image's metadata, then the changes made since it was taken.
  Status LoadSnapshot(const std::string& path) {
    auto index = std::make_unique<VectorIndex>(model_.dim, options_.index);
    int64_t seq = 0;
    {
      SnapshotLock lock(path, /*exclusive=*/false);
      ASSIGN_OR_RETURN(seq, index->Load(path));
    }
    ASSIGN_OR_RETURN(const int64_t last, backend_->LastSeq());
    if (seq > last) return Status::Corruption("it is ahead of the catalog (a restored backup?)");
    RETURN_IF_ERROR(
        backend_->ReadIndexedRecords([&](const ImageRecord& r) { index->AttachMeta(r.id, MetaOf(r)); }).status());
    {
      // The graph and the sequence value it holds change together: a catch-up running meanwhile
      // applies to one or the other pair, never to a mix.
      std::lock_guard<std::mutex> lock(catch_up_mu_);
      {
        std::unique_lock<RwMutex> index_lock(index_mu_);
        index_ = std::move(index);
      }
      applied_seq_ = seq;
      changes_since_save_ = 0;
    }
    ASSIGN_OR_RETURN(int64_t replayed, CatchUpChanges(/*rebuild_on_gap=*/false));
    // The graph must now hold exactly the indexed images. Others may write between the catch-up and
    // the count: while changes keep coming, catch up and count again.
    BackendCounts counts;
    for (int attempt = 0;; ++attempt) {
      ASSIGN_OR_RETURN(counts, backend_->Counts());
      int64_t held = 0;
      {
        std::shared_lock<RwMutex> lock(index_mu_);
        held = index_->size();
        if (held == counts.indexed && static_cast<int64_t>(index_->GraphIds().size()) == counts.indexed) break;
      }
      ASSIGN_OR_RETURN(const int64_t more, CatchUpChanges(/*rebuild_on_gap=*/false));
      replayed += more;
      if (more == 0 || attempt == 5) {
        return Status::Corruption("after catching up it holds " + std::to_string(held) + " images, the catalog " +
                                  std::to_string(counts.indexed));
      }
    }
    spdlog::info("search index loaded from {} ({} images, {} changes replayed)", path, counts.indexed, replayed);
    return Status::Ok();
  }

  // Writes the index as of applied_seq_ (no change is applied meanwhile); a sole writer then lets
  // the backend forget the changes the snapshot holds.
  Status SaveSnapshot() {
    const std::string path = backend_->SnapshotPath();
    if (path.empty() || !backend_->may_write_snapshot()) return Status::Ok();
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    if (ec) return Status::IoError("cannot create the folder of " + path + ": " + ec.message());
    std::lock_guard<std::mutex> lock(catch_up_mu_);
    {
      std::shared_lock<RwMutex> index_lock(index_mu_);
      SnapshotLock file_lock(path, /*exclusive=*/true);
      RETURN_IF_ERROR(index_->Save(path, applied_seq_));
    }
    changes_since_save_ = 0;
    if (backend_->sole_writer()) return backend_->ForgetChangesUpTo(applied_seq_);
    return Status::Ok();
  }

  Status CatchUpIfLoaded() {
    if (!loaded_) return Status::Ok();
    RETURN_IF_ERROR(CatchUp());
    if (backend_->sole_writer() && changes_since_save_ >= options_.index.snapshot_every) {
      // The write itself is done: a snapshot that cannot be written now (the disk full) is tried
      // again later, and the change log keeps what it would have held.
      if (Status st = SaveSnapshot(); !st.ok()) {
        spdlog::warn("could not snapshot the search index of {}: {}", backend_->where(), st.ToString());
      }
    }
    return Status::Ok();
  }

  Status CatchUp() { return CatchUpChanges(/*rebuild_on_gap=*/true).status(); }

  // Applies every change committed after applied_seq_; returns how many images it touched. When
  // the backend has forgotten some of them (another process's checkpoint), reloads instead.
  Result<int64_t> CatchUpChanges(bool rebuild_on_gap) {
    std::unique_lock<std::mutex> lock(catch_up_mu_);
    ASSIGN_OR_RETURN(ChangeSet changes, backend_->ChangesSince(applied_seq_));
    if (changes.incomplete) {
      if (!rebuild_on_gap) return Status::Corruption("the changes since it was taken are no longer recorded");
      lock.unlock();
      RETURN_IF_ERROR(Reload());
      return int64_t{0};
    }
    if (changes.last_seq <= applied_seq_) return int64_t{0};
    // Vectors and metadata prepared outside the exclusive lock; searches wait only for the graph.
    std::vector<int64_t> put_ids;
    std::vector<float> put_vectors;
    std::vector<ImageMeta> put_metas;
    std::vector<std::pair<int64_t, ImageMeta>> renamed;  // same vector, new metadata
    std::vector<int64_t> erase = changes.removed;
    {
      std::shared_lock<RwMutex> index_lock(index_mu_);
      for (size_t i = 0; i < changes.changed.size(); ++i) {
        const ImageRecord& r = changes.changed[i];
        std::vector<float> v = NormalisedRows(std::move(changes.vectors[i]), model_.dim);
        const size_t frames = std::max<size_t>(1, r.frame_times.size());
        if (r.status != ImageStatus::kIndexed || v.size() != frames * static_cast<size_t>(model_.dim)) {
          erase.push_back(r.id);
        } else if (index_->Contains(r.id) && index_->VectorOf(r.id) == v) {
          renamed.emplace_back(r.id, MetaOf(r));
        } else {
          put_ids.push_back(r.id);
          put_vectors.insert(put_vectors.end(), v.begin(), v.end());
          put_metas.push_back(MetaOf(r));
        }
      }
    }
    {
      std::unique_lock<RwMutex> index_lock(index_mu_);
      for (int64_t id : erase) index_->Erase(id);
      for (auto& [id, meta] : renamed) index_->UpdateMeta(id, std::move(meta));
      index_->PutBatch(put_ids, put_vectors, std::move(put_metas));
    }
    applied_seq_ = changes.last_seq;
    const auto n = static_cast<int64_t>(changes.changed.size() + changes.removed.size());
    changes_since_save_ += n;
    return n;
  }

  // After the writer trimmed the change log past this index: the snapshot it wrote before trimming
  // holds everything up to where it trimmed, so loading it and the changes since is enough (and
  // reads no vector); without a usable one, the index is rebuilt from every row.
  Status Reload() {
    // One reload at a time; one that waited finds the work done (and must not install an older
    // snapshot over an index already past it).
    std::lock_guard<std::mutex> reloading(reload_mu_);
    {
      std::lock_guard<std::mutex> lock(catch_up_mu_);
      ASSIGN_OR_RETURN(ChangeSet changes, backend_->ChangesSince(applied_seq_));
      if (!changes.incomplete) return Status::Ok();
    }
    const std::string path = backend_->SnapshotPath();
    std::error_code ec;
    if (!path.empty() && std::filesystem::exists(path + ".meta", ec)) {
      const Status st = LoadSnapshot(path);
      if (st.ok()) return st;
      spdlog::info("reloading the search index of {} from its snapshot: {}; rebuilding it", backend_->where(),
                   st.message());
    } else {
      spdlog::info("{} was checkpointed by its writer past this index; rebuilding it", backend_->where());
    }
    std::lock_guard<std::mutex> lock(catch_up_mu_);
    return RebuildLocked();
  }

  // Follows other processes' changes (their signal, or a look every few seconds regardless) and
  // snapshots the index every snapshot_every changes. A catch-up that fails (the database down, a
  // rebuild that cannot read) is tried again after a pause that grows to a minute.
  void Follow() {
    auto pause = std::chrono::seconds(0);
    while (!stop_) {
      if (pause.count() == 0) {
        backend_->WaitForChanges(std::chrono::seconds(5), stop_);
      } else {
        for (auto waited = std::chrono::milliseconds(0); waited < pause && !stop_;
             waited += std::chrono::milliseconds(100)) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      }
      if (stop_) break;
      if (Status st = CatchUp(); !st.ok()) {
        pause = std::min<std::chrono::seconds>(std::max(pause * 2, std::chrono::seconds(1)), std::chrono::seconds(60));
        spdlog::warn("search index of {}: {} (trying again in {} s)", backend_->where(), st.ToString(), pause.count());
        continue;
      }
      pause = std::chrono::seconds(0);
      if (changes_since_save_ >= options_.index.snapshot_every) {
        if (Status st = SaveSnapshot(); !st.ok()) {
          spdlog::warn("could not snapshot the search index of {}: {}", backend_->where(), st.ToString());
        }
      }
    }
  }

  const std::unique_ptr<CatalogBackend> backend_;
  const CollectionOptions options_;
  const ModelIdentity model_;

  std::mutex load_mu_;
  std::atomic<bool> loaded_{false};
  std::mutex reload_mu_;                        // Reload, one at a time (taken before catch_up_mu_)
  std::mutex catch_up_mu_;                      // applying changes and saving snapshots, one at a time
  int64_t applied_seq_ = 0;                     // guarded by catch_up_mu_
  std::atomic<int64_t> changes_since_save_{0};  // changes applied since the last snapshot
  mutable RwMutex index_mu_;
  std::unique_ptr<VectorIndex> index_;  // guarded by index_mu_
  std::atomic<bool> stop_{false};
  std::thread follower_;
};

}  // namespace

Result<std::unique_ptr<Collection>> OpenCollectionOver(std::unique_ptr<CatalogBackend> backend,
                                                       const ModelIdentity* model, const CollectionOptions& options) {
  const std::string where = backend->where();
  ASSIGN_OR_RETURN(ModelIdentity stored, backend->ReadModel());
  if (model != nullptr) {
    if (stored.dim == 0) {
      if (options.read_only) return Status::InvalidArgument(where + " has no model yet");
      ASSIGN_OR_RETURN(stored, backend->BindModel(*model));
    }
    RETURN_IF_ERROR(CheckSameModel(stored, *model, where,
                                   "use that model and precision, or re-embed everything with `imgsearch reindex`"));
    // The place recorded stays while it still holds the model (writers on other machines, with
    // their own folders, do not take turns replacing it); recorded when missing or gone.
    std::error_code ec;
    const bool recorded_gone =
        stored.source.empty() || (stored.source.starts_with('/') && !std::filesystem::exists(stored.source, ec));
    if (!options.read_only && !model->source.empty() && model->source != stored.source && recorded_gone) {
      RETURN_IF_ERROR(backend->UpdateMeta(kModelSourceKey, [&](const std::optional<std::string>&) {
        return Result<std::optional<std::string>>(std::optional<std::string>(model->source));
      }));
      stored.source = model->source;
    }
  }
  if (options.keep_removed && !options.read_only) {
    if (*options.keep_removed < std::chrono::milliseconds(0)) {
      return Status::InvalidArgument("the time removed content is kept cannot be negative");
    }
    const std::string value = std::to_string(options.keep_removed->count());
    bool changed = false;
    RETURN_IF_ERROR(backend->UpdateMeta(kKeepRemovedKey, [&](const std::optional<std::string>& now) {
      changed = now != value;
      return Result<std::optional<std::string>>(changed ? std::optional<std::string>(value) : std::nullopt);
    }));
    if (changed) RETURN_IF_ERROR(backend->PurgeReleased());  // a shorter period applies at once
  }
  auto collection = std::make_unique<CollectionCore>(std::move(backend), std::move(stored), options);
  RETURN_IF_ERROR(collection->Open());
  return std::unique_ptr<Collection>(std::move(collection));
}

}  // namespace store
}  // namespace imgsearch
