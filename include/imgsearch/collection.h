// The collection: every image imgsearch knows, its embedding, and search over them.
//
// The embedded implementation (OpenCollection) keeps one directory: a SQLite catalog in WAL mode
// (the system of record: one row per image, one vector per distinct content) and an HNSW index
// in memory, snapshotted beside it and rebuilt from the catalog when missing, stale or damaged.
// Every method is thread-safe; searches run concurrently and never wait for a writer's commit.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "imgsearch/ocr.h"
#include "imgsearch/status.h"

namespace imgsearch {

enum class ImageStatus { kIndexed = 1, kFailed = 2 };

const char* ImageStatusName(ImageStatus status);

// What the collection stores about one file.
struct ImageRecord {
  int64_t id = 0;
  std::string path;
  int64_t size_bytes = 0;
  int64_t mtime_ns = 0;
  std::string content_hash;  // hex; identical content shares one embedding
  int width = 0;             // after EXIF orientation
  int height = 0;
  std::string format;                       // "jpeg", "png", …
  std::optional<std::string> capture_time;  // EXIF DateTimeOriginal, ISO 8601
  int64_t indexed_at_ms = 0;                // when the row was last written (Unix ms)
  ImageStatus status = ImageStatus::kIndexed;
  std::string error;  // why it failed, for kFailed
  // A video's sampled frames: the time (seconds from its start) of each of its vectors, in order.
  // Empty for a still image (one vector). Stored with the vectors: identical content shares them.
  std::vector<float> frame_times;
};

// One write: an indexed image with its embedding, or a failure with its reason.
struct ImageUpsert {
  ImageRecord record;  // id is ignored: the path identifies the image
  // Required for kIndexed unless the content hash already has one: the model's dimension floats,
  // or for a video one row of them per record.frame_times entry.
  std::vector<float> embedding;
};

// The model a collection's vectors come from. Opening a collection with another model is refused.
// End the identity of a model computing in int8 (IdentityOf, imgsearch/ingest.h), with 8-bit
// activations or 7-bit ones: their embeddings differ from the others' too much to share a collection.
inline constexpr std::string_view kInt8IdentitySuffix = "+int8";
inline constexpr std::string_view kInt8Act7IdentitySuffix = "+int8a7";

struct ModelIdentity {
  std::string id;  // a hash of the weights, with kInt8IdentitySuffix for --precision int8
  std::string name;
  int dim = 0;
  // Where it loads from (ModelInfo::source): recorded by writers, so that later commands find the
  // model the collection was built with; empty in collections recorded before it was kept.
  std::string source;
};

// The text an image shows (imgsearch/ocr.h), read once per content as embeddings are: copies and
// renames share it, and it goes when the content's embedding goes.
struct ContentText {
  std::string content_hash;
  std::string languages;  // what it was read with ("eng+deu")
  RecognizedText text;
};

// An image or video whose text is still to be read: its content, a file that has it, and for a
// video the times of its embedded frames (the frames whose text is read).
struct TextJob {
  std::string content_hash;
  std::string path;
  std::vector<float> frame_times;
};

// An image showing the words searched for: how well they match (0..1, best first), and the words
// it shows that matched.
struct TextMatch {
  int64_t id = 0;
  float score = 0;
  std::vector<std::string> words;
};

struct SearchFilter {
  std::string under;                 // path prefix (a folder); empty: everywhere
  std::optional<int64_t> after_s;    // capture time (else mtime) ≥ this, Unix seconds
  std::optional<int64_t> before_s;   // capture time (else mtime) < this
  std::vector<std::string> formats;  // empty: any
  bool empty() const { return under.empty() && !after_s && !before_s && formats.empty(); }
};

struct SearchOptions {
  int k = 10;
  int offset = 0;
  float min_score = -std::numeric_limits<float>::infinity();
  SearchFilter filter;
  bool exact = false;  // brute force instead of the ANN index
};

// A moment of a video that matches a query.
struct Moment {
  double time_s = 0;
  float score = 0;
};

struct SearchHit {
  int64_t id = 0;
  std::string path;
  float score = 0;  // cosine similarity: the ranking score everywhere
  int width = 0;
  int height = 0;
  // SigLIP models, for a query of one text: the model's probability that the text matches the
  // image, sigmoid(score · exp(logit_scale) + logit_bias). Absent for CLIP and for other queries.
  std::optional<float> probability;
  // A video: the time of its best-matching frame (whose score is `score`), and its other matching
  // moments, best first (a video is one hit however many of its frames match).
  std::optional<double> time_s;
  std::vector<Moment> moments;
  // Words the image shows that matched the query's (text read from it), when it was found by them.
  std::vector<std::string> words;
};

struct IndexParams {
  int m = 16;  // HNSW graph degree
  int ef_construction = 200;
  int ef_search = 96;           // raised to k + offset when that is larger
  int exact_below = 20'000;     // collections (or filtered subsets) this small are searched exactly
  int snapshot_every = 50'000;  // changes between automatic snapshots of the ANN index
};

struct CollectionOptions {
  bool read_only = false;
  bool create_if_missing = true;
  IndexParams index;
  // PostgreSQL collections: true for long-running roles (watch, serve), which wait as long as it
  // takes for an unreachable database; others give up after $IMGSEARCH_PG_RETRY_SECONDS (60).
  bool wait_for_database = false;
  // PostgreSQL collections: a folder where the in-memory search index is snapshotted (on close and
  // every IndexParams::snapshot_every changes), so a restart loads it and replays the changes since
  // instead of rebuilding from every vector. Empty: no snapshots.
  std::string index_cache_dir;
  // Writers: how long the embedding of content no image has any more (removed, or changed) is
  // kept, so that the same content coming back under any path is linked again instead of embedded
  // again (an unmounted drive, a folder moved while nothing watched). Stored with the collection,
  // so every writer keeps the same; unset: as stored (kDefaultKeepRemoved when never set).
  std::optional<std::chrono::milliseconds> keep_removed;
};

inline constexpr std::chrono::milliseconds kDefaultKeepRemoved = std::chrono::hours(24 * 30);

// A folder the collection's images come from: as it was given (the images' paths start with it)
// and where it led, every link followed, when it was recorded. Files are served only from inside
// the real paths, and a folder that later leads elsewhere (replaced by a link, say) is not scanned.
struct CollectionRoot {
  std::string path;
  std::string real_path;  // empty in collections recorded before imgsearch kept it
};

// What AddRoots does with a folder already recorded that now leads somewhere else.
enum class RootChange {
  kRefuse,  // kPermissionDenied, naming both places: someone may have swapped the folder for a link
  kAccept,  // record the new place (the user asked for it: --follow-symlinks, or a migration)
};

struct CollectionStats {
  int64_t indexed = 0;
  int64_t failed = 0;
  int64_t distinct_vectors = 0;            // embeddings in use (identical files share one)
  int64_t kept_vectors = 0;                // embeddings of removed content, kept for `keep_removed`
  std::map<std::string, int64_t> formats;  // indexed images by format (ImageFormatName: "jpeg", "heif", …)
  std::chrono::milliseconds keep_removed = kDefaultKeepRemoved;
  int64_t texts_read = 0;     // contents whose text was read (whether or not they show any)
  int64_t texts_pending = 0;  // images and videos whose text is still to be read
  ModelIdentity model;
  int64_t database_bytes = 0;
  int64_t index_bytes = 0;
  std::string index_kind;  // "hnsw" or "exact"
  IndexParams index_params;
  int schema_version = 0;
};

class Collection {
 public:
  virtual ~Collection() = default;

  // Writes a batch in one transaction; returns the ids in order.
  virtual Result<std::vector<int64_t>> Upsert(std::span<const ImageUpsert> batch) = 0;
  // Removes by path; unknown paths are ignored. Returns how many were removed.
  virtual Result<int64_t> Remove(std::span<const std::string> paths) = 0;
  // A rename: the image keeps its id and embedding.
  virtual Status Move(const std::string& from, const std::string& to) = 0;

  virtual Result<std::optional<ImageRecord>> GetById(int64_t id) = 0;
  virtual Result<std::optional<ImageRecord>> GetByPath(const std::string& path) = 0;
  // The stored embedding of an indexed image; of a video, the frame nearest `time_s`, or without a
  // time the mean of its frames (normalised): the video as a whole.
  virtual Result<std::vector<float>> GetEmbedding(int64_t id, std::optional<double> time_s = std::nullopt) = 0;
  // Every stored vector of an indexed image as written: one, or a video's frames one after another
  // (in the order of its record's frame_times).
  virtual Result<std::vector<float>> GetVectors(int64_t id) = 0;
  // True when some image with this content already has an embedding (no need to embed again).
  virtual Result<bool> HasEmbeddingFor(const std::string& content_hash) = 0;

  virtual Result<int64_t> Count() = 0;
  // Visits every image in path order (only those with `status`, and only `under` a path — the
  // path itself or anything below it — when given); stop by returning false.
  virtual Status ForEach(const std::function<bool(const ImageRecord&)>& visit,
                         std::optional<ImageStatus> status = std::nullopt, const std::string& under = "") = 0;

  // Makes the search index ready now rather than at the first search (a search node over PostgreSQL
  // builds or loads it on first use), so that a server answers its first search quickly.
  virtual Status Warm() = 0;

  // `query` must be L2-normalised and of the model's dimension.
  virtual Result<std::vector<SearchHit>> Search(std::span<const float> query, const SearchOptions& options) = 0;

  // Text shown in images. Still images (not videos) whose content's text is not read yet, at most
  // `limit`, each with one of its files.
  virtual Result<std::vector<TextJob>> PendingTexts(int limit) = 0;
  // Stores texts read (replacing what their contents had); contents gone meanwhile are skipped.
  virtual Status PutTexts(std::span<const ContentText> texts) = 0;
  // The text read from an image's content; nullopt when none was read (yet).
  virtual Result<std::optional<ContentText>> GetText(int64_t id) = 0;
  // Searchable images whose text holds every word of `words` (anywhere, in any case: "voice"
  // matches "INVOICE"; words of fewer than three characters must appear too but do not find
  // images on their own), passing `filter`, best first, at most `limit`.
  virtual Result<std::vector<TextMatch>> SearchText(std::string_view words, const SearchFilter& filter, int limit) = 0;
  // For a video whose text was read: the time of the frame showing the most of `words` (the
  // earliest of equals; matched as SearchText does); nullopt for an image, or none read.
  virtual Result<std::optional<double>> TextMoment(int64_t id, std::string_view words) = 0;

  // The folders whose images this collection holds, as `index` and `watch` recorded them. Files are
  // served (by the server) only from inside their real paths.
  virtual Result<std::vector<CollectionRoot>> Roots() = 0;
  // Records folders (absolute, normalised). A folder already known keeps its entry; one recorded
  // without its real path gains it; one recorded with another real path follows `change`.
  virtual Status AddRoots(std::span<const CollectionRoot> roots, RootChange change) = 0;

  virtual Result<CollectionStats> Stats() = 0;
  // Writes the ANN snapshot now (also done on close and every snapshot_every changes).
  virtual Status Checkpoint() = 0;
  // Full check: SQLite integrity, every indexed image has a vector, the index holds exactly them.
  virtual Status CheckIntegrity() = 0;

  virtual const ModelIdentity& model() const = 0;
};

// Opens the embedded collection in `dir`. `model` null: open whatever model the collection has
// (for commands that do not embed, like stats and list); otherwise it must match, or the
// collection is new and is bound to it.
Result<std::unique_ptr<Collection>> OpenCollection(const std::string& dir, const ModelIdentity* model,
                                                   const CollectionOptions& options = {});

}  // namespace imgsearch
