// The in-memory search structure: an HNSW graph (hnswlib) whose stored vectors also serve exact
// search, plus what filters need to know about each image. An image is one point labelled with its
// id; a video one point per sampled frame, frame f labelled id + (f << kFrameShift) (frame 0 is
// the id itself). Searches return items: a video once, at its best frame, with its other matches.
//
// Not thread-safe by itself: the collection core guards it with a shared mutex (searches shared,
// changes exclusive). hnswlib stays inside vector_index.cc: its 0.6 headers define globals and may
// be included by one translation unit only.
#pragma once

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "imgsearch/collection.h"

namespace imgsearch::store {

struct ImageMeta {
  std::string path;
  int64_t time_s = 0;  // capture time if known, else mtime
  std::string format;
  int width = 0;
  int height = 0;
  std::vector<float> frame_times;  // a video's (ImageRecord::frame_times); empty for an image
  size_t frames() const { return std::max<size_t>(1, frame_times.size()); }
};

// Image ids stay below 2^kFrameShift; a video has fewer than 2^(63 − kFrameShift) frames.
inline constexpr int kFrameShift = 40;

ImageMeta MetaOf(const ImageRecord& record);

// `v` scaled to unit length; empty when it is zero or not finite.
std::vector<float> Normalised(std::vector<float> v);
// Each row of `dim` values in `v` scaled to unit length; empty when any is zero or not finite, or
// `v` is not whole rows.
std::vector<float> NormalisedRows(std::vector<float> v, int dim);

// An item found: its best frame (0 for an image), and its other frames that matched, best first.
struct ItemMatch {
  int64_t id = 0;
  float score = 0;
  size_t frame = 0;
  std::vector<std::pair<size_t, float>> other_frames;
};

class VectorIndex {
 public:
  VectorIndex(int dim, const IndexParams& params);
  ~VectorIndex();

  int dim() const { return dim_; }
  int64_t size() const { return static_cast<int64_t>(meta_.size()); }  // items (not frames)
  bool Contains(int64_t id) const { return meta_.contains(id); }
  const ImageMeta* Meta(int64_t id) const;
  // Whether the searchable item `id` passes `filter` (any item passes an empty one).
  bool Passes(int64_t id, const SearchFilter& filter) const;

  // Inserts or replaces; `vectors` holds meta.frames() rows.
  void Put(int64_t id, std::span<const float> vectors, ImageMeta meta);
  // The same for many; the graph insertions run on all cores. `vectors` holds metas[i].frames()
  // rows for each id in turn.
  void PutBatch(std::span<const int64_t> ids, std::span<const float> vectors, std::vector<ImageMeta> metas);
  void UpdateMeta(int64_t id, ImageMeta meta);
  // After Load: makes `id`, present in the loaded graph, searchable again. False if it is not there.
  bool AttachMeta(int64_t id, ImageMeta meta);
  void Erase(int64_t id);

  // The best `n` items passing `filter`, best first. Uses the graph unless `exact` or the
  // candidates are few enough (IndexParams::exact_below) to scan.
  std::vector<ItemMatch> Search(std::span<const float> query, size_t n, const SearchFilter& filter, bool exact) const;

  // Writes the graph to `path` (with a checksum in `path`.meta, recording `change_seq`).
  Status Save(const std::string& path, int64_t change_seq) const;
  // Loads a snapshot written by Save; fails (without crashing) on a missing, damaged or
  // mismatched file. Returns the recorded change_seq. Metadata must be filled afterwards.
  Result<int64_t> Load(const std::string& path);

  // The stored vectors of `id` (one row per frame), or empty.
  std::vector<float> VectorOf(int64_t id) const;
  // The items with points in the graph (not deleted), sorted; for integrity checks.
  std::vector<int64_t> GraphIds() const;
  int64_t graph_bytes() const;

 private:
  struct ScoredLabel {
    uint64_t label;
    float score;
  };
  // The best `n` points (frames), best first.
  std::vector<ScoredLabel> SearchExact(std::span<const float> query, size_t n, const SearchFilter& filter) const;
  std::vector<ScoredLabel> SearchGraph(std::span<const float> query, size_t n, const SearchFilter& filter) const;
  // Every point passing `filter` scored once, kept per item: the best `n` items with their best
  // frames (what a scan of a collection with videos needs; without, SearchExact's labels are items).
  std::vector<ItemMatch> SearchExactItems(std::span<const float> query, size_t n, const SearchFilter& filter) const;
  void Reserve(size_t n);
  // Marks the points of `id` from frame `first` on deleted.
  void EraseFrames(int64_t id, size_t first);
  // Sets (or with nullopt, removes) the metadata of `id`, keeping the counts below.
  void SetMeta(int64_t id, std::optional<ImageMeta> meta);

  struct Graph;

  int dim_;
  IndexParams params_;
  std::unique_ptr<Graph> g_;
  std::unordered_map<int64_t, ImageMeta> meta_;  // one entry per live (searchable) image
  int64_t videos_ = 0;                           // of meta_'s entries
  int64_t points_ = 0;                           // live points: meta_'s frames
};

// A collection's search over `index` (which the caller keeps from changing meanwhile): checks the
// query and options, then returns the page of hits they ask for. `index` may be null (nothing
// indexed yet).
Result<std::vector<SearchHit>> SearchIndex(const VectorIndex* index, int dim, std::span<const float> query,
                                           const SearchOptions& options);

}  // namespace imgsearch::store
