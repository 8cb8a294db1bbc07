// The embedded collection: the SQLite catalog as the system of record, the ANN index in memory.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <shared_mutex>

#include "base/rw_mutex.h"
#include "imgsearch/collection.h"
#include "store/catalog.h"
#include "store/collection_meta.h"
#include "store/vector_index.h"

namespace imgsearch {

const char* ImageStatusName(ImageStatus status) { return status == ImageStatus::kIndexed ? "indexed" : "failed"; }

namespace store {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCatalogFile = "catalog.db";
constexpr const char* kSnapshotFile = "ann.hnsw";
constexpr const char* kLockFile = "LOCK";
constexpr const char* kRootsKey = "roots";  // meta: JSON list of the indexed folders

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

class LocalCollection final : public Collection {
 public:
  LocalCollection(std::string dir, std::unique_ptr<Catalog> catalog, std::unique_ptr<DirLock> lock, ModelIdentity model,
                  const CollectionOptions& options)
      : dir_(std::move(dir)),
        options_(options),
        catalog_(std::move(catalog)),
        lock_(std::move(lock)),
        model_(std::move(model)) {}

  ~LocalCollection() override {
    if (!options_.read_only && changes_since_snapshot_ > 0) {
      Status st = Checkpoint();
      if (!st.ok()) spdlog::warn("could not snapshot the index of {}: {}", dir_, st.ToString());
    }
  }

  Status Init() {
    if (model_.dim <= 0) return Status::Ok();  // an empty collection with no model yet
    index_ = std::make_unique<VectorIndex>(model_.dim, options_.index);
    // A reader opening while another process writes must build its index from one state.
    RETURN_IF_ERROR(catalog_->BeginConsistentRead());
    Status st = LoadIndex();
    catalog_->EndConsistentRead();
    return st;
  }

  Status LoadIndex() {
    if (!std::filesystem::exists(dir_ + "/" + kSnapshotFile + ".meta")) return Rebuild();  // new, or never snapshotted
    if (Status st = LoadSnapshot(); !st.ok()) {
      spdlog::warn("index snapshot of {} not usable ({}); rebuilding it from the catalog", dir_, st.message());
      RETURN_IF_ERROR(Rebuild());
    }
    return Status::Ok();
  }

  Result<std::vector<int64_t>> Upsert(std::span<const ImageUpsert> batch) override {
    RETURN_IF_ERROR(CheckWritable());
    for (const ImageUpsert& u : batch) {
      if (u.record.status == ImageStatus::kIndexed && !u.embedding.empty() && Normalised(u.embedding).empty()) {
        return Status::InvalidArgument(u.record.path + ": embedding is zero or not finite");
      }
    }
    std::lock_guard<std::mutex> writer(write_mu_);
    ASSIGN_OR_RETURN(std::vector<int64_t> ids, catalog_->Upsert(batch, model_.dim));
    std::vector<std::vector<float>> stored(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].record.status == ImageStatus::kIndexed && batch[i].embedding.empty()) {
        ASSIGN_OR_RETURN(stored[i], catalog_->GetEmbedding(ids[i]));  // shared content: reuse its vector
      }
    }
    std::vector<int64_t> put_ids;
    std::vector<float> put_vectors;
    std::vector<ImageMeta> put_metas;
    for (size_t i = 0; i < batch.size(); ++i) {
      const ImageUpsert& u = batch[i];
      if (u.record.status != ImageStatus::kIndexed) continue;
      ImageRecord r = u.record;
      r.id = ids[i];
      const std::vector<float> v = Normalised(u.embedding.empty() ? stored[i] : u.embedding);
      put_ids.push_back(ids[i]);
      put_vectors.insert(put_vectors.end(), v.begin(), v.end());
      put_metas.push_back(MetaOf(r));
    }
    {
      std::unique_lock<RwMutex> lock(index_mu_);
      for (size_t i = 0; i < batch.size(); ++i) {
        if (batch[i].record.status != ImageStatus::kIndexed) index_->Erase(ids[i]);
      }
      index_->PutBatch(put_ids, put_vectors, std::move(put_metas));
    }
    RETURN_IF_ERROR(NoteChanges(static_cast<int64_t>(batch.size())));
    return ids;
  }

  Result<int64_t> Remove(std::span<const std::string> paths) override {
    RETURN_IF_ERROR(CheckWritable());
    std::lock_guard<std::mutex> writer(write_mu_);
    ASSIGN_OR_RETURN(std::vector<int64_t> ids, catalog_->Remove(paths));
    {
      std::unique_lock<RwMutex> lock(index_mu_);
      for (int64_t id : ids) index_->Erase(id);
    }
    RETURN_IF_ERROR(NoteChanges(static_cast<int64_t>(ids.size())));
    return static_cast<int64_t>(ids.size());
  }

  Status Move(const std::string& from, const std::string& to) override {
    RETURN_IF_ERROR(CheckWritable());
    std::lock_guard<std::mutex> writer(write_mu_);
    ASSIGN_OR_RETURN(std::optional<int64_t> id, catalog_->Move(from, to));
    if (!id) return Status::NotFound("cannot move " + from + ": not in the collection");
    ASSIGN_OR_RETURN(std::optional<ImageRecord> record, catalog_->GetById(*id));
    if (record) {
      std::unique_lock<RwMutex> lock(index_mu_);
      index_->UpdateMeta(*id, MetaOf(*record));
    }
    return NoteChanges(1);
  }

  Result<std::optional<ImageRecord>> GetById(int64_t id) override { return catalog_->GetById(id); }
  Result<std::optional<ImageRecord>> GetByPath(const std::string& path) override { return catalog_->GetByPath(path); }
  Result<std::vector<float>> GetEmbedding(int64_t id) override { return catalog_->GetEmbedding(id); }
  Result<bool> HasEmbeddingFor(const std::string& hash) override { return catalog_->HasVector(hash); }

  Result<int64_t> Count() override {
    ASSIGN_OR_RETURN(int64_t indexed, catalog_->CountByStatus(ImageStatus::kIndexed));
    ASSIGN_OR_RETURN(int64_t failed, catalog_->CountByStatus(ImageStatus::kFailed));
    return indexed + failed;
  }

  Status ForEach(const std::function<bool(const ImageRecord&)>& visit, std::optional<ImageStatus> status,
                 const std::string& under) override {
    return catalog_->ForEach(visit, status, under);
  }

  Status Warm() override { return Status::Ok(); }  // the index is loaded when the collection opens

  Result<std::vector<SearchHit>> Search(std::span<const float> query, const SearchOptions& o) override {
    std::shared_lock<RwMutex> lock(index_mu_);
    return SearchIndex(index_.get(), model_.dim, query, o);
  }

  Result<std::vector<CollectionRoot>> Roots() override {
    ASSIGN_OR_RETURN(std::optional<std::string> stored, catalog_->GetMeta(kRootsKey));
    if (!stored) return std::vector<CollectionRoot>();
    return ParseRoots(*stored, dir_);
  }

  Status AddRoots(std::span<const CollectionRoot> add, RootChange change) override {
    RETURN_IF_ERROR(CheckWritable());
    std::lock_guard<std::mutex> writer(write_mu_);
    ASSIGN_OR_RETURN(std::vector<CollectionRoot> roots, Roots());
    bool changed = false;
    RETURN_IF_ERROR(MergeRoots(&roots, add, change, &changed));
    if (!changed) return Status::Ok();
    return catalog_->SetMeta(kRootsKey, RootsJson(roots));
  }

  Result<CollectionStats> Stats() override {
    CollectionStats s;
    ASSIGN_OR_RETURN(s.indexed, catalog_->CountByStatus(ImageStatus::kIndexed));
    ASSIGN_OR_RETURN(s.failed, catalog_->CountByStatus(ImageStatus::kFailed));
    ASSIGN_OR_RETURN(s.distinct_vectors, catalog_->CountVectors());
    s.model = model_;
    s.schema_version = catalog_->schema_version();
    for (const char* f : {"catalog.db", "catalog.db-wal", "catalog.db-shm"}) s.database_bytes += FileBytes(f);
    s.index_bytes = FileBytes(kSnapshotFile);
    s.index_params = options_.index;
    std::shared_lock<RwMutex> lock(index_mu_);
    s.index_kind = index_ != nullptr && index_->size() > options_.index.exact_below ? "hnsw" : "exact";
    return s;
  }

  Status Checkpoint() override {
    if (options_.read_only || index_ == nullptr) return Status::Ok();
    std::lock_guard<std::mutex> writer(write_mu_);
    return CheckpointLocked();
  }

  Status CheckIntegrity() override {
    RETURN_IF_ERROR(catalog_->CheckIntegrity());
    std::vector<int64_t> catalog_ids;
    RETURN_IF_ERROR(catalog_->ForEach(
        [&](const ImageRecord& r) {
          catalog_ids.push_back(r.id);
          return true;
        },
        ImageStatus::kIndexed));
    std::sort(catalog_ids.begin(), catalog_ids.end());
    std::shared_lock<RwMutex> lock(index_mu_);
    const std::vector<int64_t> graph_ids = index_ ? index_->GraphIds() : std::vector<int64_t>();
    if (graph_ids != catalog_ids) {
      return Status::Corruption(dir_ + ": the index holds " + std::to_string(graph_ids.size()) +
                                " images, the catalog " + std::to_string(catalog_ids.size()));
    }
    return Status::Ok();
  }

  const ModelIdentity& model() const override { return model_; }

 private:
  Status CheckWritable() const {
    if (options_.read_only) return Status::InvalidArgument("collection " + dir_ + " is open read-only");
    if (index_ == nullptr) return Status::InvalidArgument("collection " + dir_ + " has no model; open it with one");
    return Status::Ok();
  }

  int64_t FileBytes(const char* name) const {
    std::error_code ec;
    const auto n = fs::file_size(dir_ + "/" + name, ec);
    return ec ? 0 : static_cast<int64_t>(n);
  }

  // Called with write_mu_ held after every write.
  Status NoteChanges(int64_t n) {
    ASSIGN_OR_RETURN(applied_seq_, catalog_->LastChangeSeq());
    changes_since_snapshot_ += n;
    if (changes_since_snapshot_ >= options_.index.snapshot_every) return CheckpointLocked();
    return Status::Ok();
  }

  Status CheckpointLocked() {
    {
      std::shared_lock<RwMutex> lock(index_mu_);
      RETURN_IF_ERROR(index_->Save(dir_ + "/" + kSnapshotFile, applied_seq_));
    }
    changes_since_snapshot_ = 0;
    return catalog_->ForgetChangesUpTo(applied_seq_);
  }

  Status LoadSnapshot() {
    ASSIGN_OR_RETURN(int64_t seq, index_->Load(dir_ + "/" + kSnapshotFile));
    // Searchable again: every indexed image the loaded graph holds.
    RETURN_IF_ERROR(catalog_->ForEach(
        [&](const ImageRecord& r) {
          index_->AttachMeta(r.id, MetaOf(r));
          return true;
        },
        ImageStatus::kIndexed));
    // Catch up with the writes made after the snapshot.
    std::vector<int64_t> changed;
    int64_t last = seq;
    RETURN_IF_ERROR(catalog_->ChangesSince(seq, &changed, &last));
    for (int64_t id : changed) RETURN_IF_ERROR(Refresh(id));
    applied_seq_ = last;
    changes_since_snapshot_ = static_cast<int64_t>(changed.size());
    // The graph must now hold exactly the indexed images.
    ASSIGN_OR_RETURN(int64_t indexed, catalog_->CountByStatus(ImageStatus::kIndexed));
    if (index_->size() != indexed || static_cast<int64_t>(index_->GraphIds().size()) != indexed) {
      return Status::Corruption("snapshot does not match the catalog after catch-up");
    }
    spdlog::info("loaded the index of {} ({} images, {} changes replayed)", dir_, indexed, changed.size());
    return Status::Ok();
  }

  Status Refresh(int64_t id) {
    ASSIGN_OR_RETURN(std::optional<ImageRecord> r, catalog_->GetById(id));
    if (!r || r->status != ImageStatus::kIndexed) {
      index_->Erase(id);
      return Status::Ok();
    }
    ASSIGN_OR_RETURN(std::vector<float> v, catalog_->GetEmbedding(id));
    index_->Put(id, Normalised(std::move(v)), MetaOf(*r));
    return Status::Ok();
  }

  Status Rebuild() {
    index_ = std::make_unique<VectorIndex>(model_.dim, options_.index);
    ASSIGN_OR_RETURN(applied_seq_, catalog_->LastChangeSeq());
    Status bad;
    std::vector<int64_t> ids;
    std::vector<float> vectors;
    std::vector<ImageMeta> metas;
    auto flush = [&] {
      index_->PutBatch(ids, vectors, std::move(metas));
      ids.clear();
      vectors.clear();
      metas.clear();
    };
    RETURN_IF_ERROR(catalog_->ForEachIndexed([&](const ImageRecord& r, std::span<const float> v) {
      if (static_cast<int>(v.size()) != model_.dim) {
        bad = Status::Corruption(dir_ + ": vector of " + r.path + " has " + std::to_string(v.size()) + " dimensions");
        return;
      }
      const std::vector<float> n = Normalised({v.begin(), v.end()});
      ids.push_back(r.id);
      vectors.insert(vectors.end(), n.begin(), n.end());
      metas.push_back(MetaOf(r));
      if (ids.size() >= 4096) flush();
    }));
    RETURN_IF_ERROR(bad);
    flush();
    changes_since_snapshot_ = index_->size() > 0 ? 1 : 0;  // worth a snapshot on close
    if (!options_.read_only && index_->size() > options_.index.exact_below) return CheckpointLocked();
    return Status::Ok();
  }

  const std::string dir_;
  const CollectionOptions options_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<DirLock> lock_;
  const ModelIdentity model_;

  std::mutex write_mu_;                 // one writer at a time: catalog write and index update stay in order
  int64_t applied_seq_ = 0;             // guarded by write_mu_
  int64_t changes_since_snapshot_ = 0;  // guarded by write_mu_

  mutable RwMutex index_mu_;
  std::unique_ptr<VectorIndex> index_;  // guarded by index_mu_ (the pointer is set before sharing)
};

}  // namespace
}  // namespace store

Result<std::unique_ptr<Collection>> OpenCollection(const std::string& dir, const ModelIdentity* model,
                                                   const CollectionOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool exists = fs::exists(dir + "/" + store::kCatalogFile, ec);
  if (!exists) {
    if (options.read_only || !options.create_if_missing) {
      return Status::NotFound("no collection at " + dir + " (index some images into it first)");
    }
    if (model == nullptr) return Status::NotFound("no collection at " + dir);
    fs::create_directories(dir, ec);
    if (ec) return Status::IoError("cannot create " + dir + ": " + ec.message());
  }
  std::unique_ptr<store::DirLock> lock;
  if (!options.read_only) {
    ASSIGN_OR_RETURN(lock, store::DirLock::Acquire(dir));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<store::Catalog> catalog,
                   store::Catalog::Open(dir + "/" + store::kCatalogFile, options.read_only));

  ModelIdentity stored;
  ASSIGN_OR_RETURN(std::optional<std::string> id, catalog->GetMeta("model_id"));
  ASSIGN_OR_RETURN(std::optional<std::string> name, catalog->GetMeta("model_name"));
  ASSIGN_OR_RETURN(std::optional<std::string> dim, catalog->GetMeta("dim"));
  if (id && dim) {
    stored.id = *id;
    stored.name = name.value_or("");
    try {
      stored.dim = std::stoi(*dim);
    } catch (const std::exception&) {
      return Status::Corruption(dir + ": stored dimension \"" + *dim + "\" is not a number");
    }
  }
  if (model != nullptr) {
    if (stored.dim == 0) {
      if (options.read_only) return Status::InvalidArgument(dir + " has no model yet");
      RETURN_IF_ERROR(catalog->SetMeta("model_id", model->id));
      RETURN_IF_ERROR(catalog->SetMeta("model_name", model->name));
      RETURN_IF_ERROR(catalog->SetMeta("dim", std::to_string(model->dim)));
      stored = *model;
    } else {
      RETURN_IF_ERROR(store::CheckSameModel(stored, *model, dir,
                                            "use that model, or re-embed everything with `imgsearch reindex`"));
    }
  }
  auto collection = std::make_unique<store::LocalCollection>(dir, std::move(catalog), std::move(lock), stored, options);
  RETURN_IF_ERROR(collection->Init());
  return std::unique_ptr<Collection>(std::move(collection));
}

}  // namespace imgsearch
