// Where a collection's rows live: the system of record under the collection core. Two backends
// implement it: SQLite in a folder (sqlite_catalog.cc, the embedded collection) and PostgreSQL
// (scaleout/pg_backend.cc, shared by many processes). The collection core (collection_core.cc)
// holds everything else once: the in-memory search index, its snapshot, following the change
// sequence, rebuilding, validation and model binding.
//
// The change sequence: every write that changes what search sees draws a new, larger sequence
// value for the image it touches, and a reader that has seen value S has seen everything below S.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "imgsearch/collection.h"

namespace imgsearch::store {

// What changed after a sequence value, up to and including `last_seq`.
struct ChangeSet {
  int64_t last_seq = 0;
  std::vector<ImageRecord> changed;         // images written (indexed or failed), as they are now
  std::vector<std::vector<float>> vectors;  // for each of `changed`: its stored vector, empty when none
  std::vector<int64_t> removed;             // images that are gone
  // True when the backend no longer holds every change since the value asked for (the log was
  // trimmed by a checkpoint of another process): the reader must rebuild from the rows instead.
  bool incomplete = false;
};

struct BackendCounts {
  int64_t indexed = 0;
  int64_t failed = 0;
  int64_t distinct_vectors = 0;            // in use
  int64_t kept_vectors = 0;                // released, kept for the grace period
  std::map<std::string, int64_t> formats;  // indexed images by format ("jpeg", "heif", …)
  std::chrono::milliseconds keep_removed = kDefaultKeepRemoved;
  int64_t database_bytes = 0;
  int schema_version = 0;
  int64_t texts_read = 0;
  int64_t texts_pending = 0;
};

// An image whose content's text holds the words searched for: the text, and the backend's
// relevance (larger is better).
struct TextCandidate {
  int64_t id = 0;
  std::string text;
  double relevance = 0;
};

// The time of the frame of a video's text (TextFromJson) showing the most of `query`'s words (the
// earliest of equals); nullopt when no word carries a time, or no frame shows any of them.
std::optional<double> MomentOfWords(const RecognizedText& text, std::span<const std::string> query);

// The words of a text query: split at spaces and control characters, the punctuation at each
// word's ends dropped ("4471," → "4471"), empty ones skipped.
std::vector<std::string> QueryWords(std::string_view words);
// The words of `text` (as read) that hold one of `query` (QueryWords; a query word of fewer than
// three characters only as the whole word), in any ASCII case.
std::vector<std::string> MatchedWords(const std::string& text, std::span<const std::string> query);
// Whether `text` holds every one of `query`, in any ASCII case (the full-text index checks longer
// words in any case; this is for the short ones it cannot).
bool HoldsAll(const std::string& text, std::span<const std::string> query);
// RecognizedText::words as stored ([[text, x, y, width, height, confidence], …], a video's words
// with their frame's time after the confidence) and back.
std::string WordsJson(const RecognizedText& text);
RecognizedText TextFromJson(std::string text, const std::string& words_json);

// Released vectors: a vector no image uses any more is not deleted at once but marked with the time
// it was released; an image taking that content again clears the mark (its vector is reused, not
// recomputed), and every write transaction deletes the vectors released longer ago than the
// collection's grace period (collection_meta.h: kKeepRemovedKey) and that no image uses (whatever
// the mark: a writer of an older imgsearch reuses vectors without clearing it). HasVector does not
// offer a vector within kKeptVectorMarginMs of its deletion: the pipeline would count on a vector
// that another write may delete before its own.
inline constexpr int64_t kKeptVectorMarginMs = 10 * 60 * 1000;

// Stored vectors: an image's content has one, a video's one per sampled frame, stored one after
// another with the frames' times beside them (ImageRecord::frame_times).
// The float32 values of a blob (empty for NULL or an empty one).
std::vector<float> FloatsOf(std::span<const uint8_t> blob);
// The rows of a stored vector blob of `frames` frames (0: a still image, one row); empty when the
// blob is missing or of another size.
std::vector<float> StoredVectors(std::span<const uint8_t> blob, int64_t dim, size_t frames);
// An upsert's embedding has one row of `dim` per frame (one for an image) and finite frame times.
Status CheckEmbeddingShape(const ImageUpsert& upsert, int dim);
class CatalogBackend {
 public:
  virtual ~CatalogBackend() = default;

  // The collection's location for messages: its folder, or its URL without the password.
  virtual const std::string& where() const = 0;
  // True when this process is the only writer (it holds the collection's lock): the core then
  // keeps its index current from its own writes, loads it at open and trims the change log at
  // each snapshot. Otherwise other processes write too, and the core follows their changes.
  virtual bool sole_writer() const = 0;
  // Where the index snapshot lives (the core adds nothing to the name); empty: no snapshots.
  virtual std::string SnapshotPath() const = 0;
  // False when the snapshot lives beside the rows and this open is read-only (reading never
  // writes); a private cache (search nodes' --index-cache) is always written.
  virtual bool may_write_snapshot() const = 0;

  // The model the collection is bound to (dim 0: none yet).
  virtual Result<ModelIdentity> ReadModel() = 0;
  // Binds `model` if no model is bound yet (atomically: two first writers bind one); returns the
  // model bound now, which the caller compares with `model`.
  virtual Result<ModelIdentity> BindModel(const ModelIdentity& model) = 0;

  virtual Result<std::optional<std::string>> GetMeta(const std::string& key) = 0;
  // Reads `key`, passes its value to `change` and writes what that returns (nullopt: nothing to
  // write), in one transaction that no other writer interleaves with.
  virtual Status UpdateMeta(
      const std::string& key,
      const std::function<Result<std::optional<std::string>>(const std::optional<std::string>&)>& change) = 0;

  // Writes, each in one transaction. `dim` is the bound model's.
  virtual Result<std::vector<int64_t>> Upsert(std::span<const ImageUpsert> batch, int dim) = 0;
  // The ids removed; unknown paths are ignored.
  virtual Result<std::vector<int64_t>> Remove(std::span<const std::string> paths) = 0;
  // Deletes the released vectors past the grace period now (every write does it too), as after
  // the period was shortened.
  virtual Status PurgeReleased() = 0;
  // The id moved, or nullopt when `from` is unknown; kInvalidArgument when `to` is taken.
  virtual Result<std::optional<int64_t>> Move(const std::string& from, const std::string& to) = 0;

  virtual Result<std::optional<ImageRecord>> GetById(int64_t id) = 0;
  virtual Result<std::optional<ImageRecord>> GetByPath(const std::string& path) = 0;
  // kNotFound when `id` is not an indexed image. One row of `dim`, or a video's rows (StoredVectors).
  virtual Result<std::vector<float>> GetVectors(int64_t id) = 0;
  virtual Result<bool> HasVector(const std::string& content_hash) = 0;
  virtual Result<BackendCounts> Counts() = 0;
  // As Collection::ForEach.
  virtual Status ForEach(const std::function<bool(const ImageRecord&)>& visit, std::optional<ImageStatus> status,
                         const std::string& under) = 0;

  // Text shown in images (Collection's methods of the same names).
  virtual Result<std::vector<TextJob>> PendingTexts(int limit) = 0;
  virtual Status PutTexts(std::span<const ContentText> texts) = 0;
  virtual Result<std::optional<ContentText>> GetText(int64_t id) = 0;
  // Indexed images whose content's text holds every one of `words` of three characters or more
  // (QueryWords; shorter ones are the caller's to check), most relevant first, at most `limit`.
  virtual Result<std::vector<TextCandidate>> SearchText(std::span<const std::string> words, int limit) = 0;

  // The index's feed. Each call reads one consistent state.
  // Every indexed image with its stored vector; returns the sequence value of that state.
  virtual Result<int64_t> ReadIndexed(
      const std::function<Status(const ImageRecord&, std::span<const float>)>& visit) = 0;
  // Every indexed image (without vectors: for metadata after loading a snapshot); returns the
  // sequence value of that state.
  virtual Result<int64_t> ReadIndexedRecords(const std::function<void(const ImageRecord&)>& visit) = 0;
  virtual Result<ChangeSet> ChangesSince(int64_t seq) = 0;
  virtual Result<int64_t> LastSeq() = 0;
  // The changes up to `seq` are in a snapshot: a backend may drop them (only a sole writer asks).
  virtual Status ForgetChangesUpTo(int64_t seq) = 0;
  // Returns within about `timeout` (sooner when `stop` turns true, or when another process signals
  // a change); true when a change may have happened.
  virtual bool WaitForChanges(std::chrono::milliseconds timeout, const std::atomic<bool>& stop) = 0;

  // The backend's own checks (storage integrity, every indexed image has a vector).
  virtual Status CheckIntegrity() = 0;
};

// The collection over `backend`: binds or checks `model` (null: whatever the collection has),
// then loads the search index (at once when this process is the sole writer, else at the first
// search or Warm).
Result<std::unique_ptr<Collection>> OpenCollectionOver(std::unique_ptr<CatalogBackend> backend,
                                                       const ModelIdentity* model, const CollectionOptions& options);

}  // namespace imgsearch::store
