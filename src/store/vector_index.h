// The in-memory search structure: an HNSW graph (hnswlib; labels are image ids) whose stored
// vectors also serve exact search, plus what filters need to know about each image.
//
// Not thread-safe by itself: the collection core guards it with a shared mutex (searches shared,
// changes exclusive). hnswlib stays inside vector_index.cc: its 0.6 headers define globals and may
// be included by one translation unit only.
#pragma once

#include <memory>
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
};

ImageMeta MetaOf(const ImageRecord& record);

// `v` scaled to unit length; empty when it is zero or not finite.
std::vector<float> Normalised(std::vector<float> v);

struct ScoredId {
  int64_t id;
  float score;
};

class VectorIndex {
 public:
  VectorIndex(int dim, const IndexParams& params);
  ~VectorIndex();

  int dim() const { return dim_; }
  int64_t size() const { return static_cast<int64_t>(meta_.size()); }
  bool Contains(int64_t id) const { return meta_.contains(id); }
  const ImageMeta* Meta(int64_t id) const;

  // Inserts or replaces.
  void Put(int64_t id, std::span<const float> vector, ImageMeta meta);
  // The same for many; the graph insertions run on all cores. `vectors` holds ids.size() rows.
  void PutBatch(std::span<const int64_t> ids, std::span<const float> vectors, std::vector<ImageMeta> metas);
  void UpdateMeta(int64_t id, ImageMeta meta);
  // After Load: makes `id`, present in the loaded graph, searchable again. False if it is not there.
  bool AttachMeta(int64_t id, ImageMeta meta);
  void Erase(int64_t id);

  // The best `n` matches passing `filter`, best first. Uses the graph unless `exact` or the
  // candidates are few enough (IndexParams::exact_below) to scan.
  std::vector<ScoredId> Search(std::span<const float> query, size_t n, const SearchFilter& filter, bool exact) const;
  std::vector<ScoredId> SearchExact(std::span<const float> query, size_t n, const SearchFilter& filter) const;

  // Writes the graph to `path` (with a checksum in `path`.meta, recording `change_seq`).
  Status Save(const std::string& path, int64_t change_seq) const;
  // Loads a snapshot written by Save; fails (without crashing) on a missing, damaged or
  // mismatched file. Returns the recorded change_seq. Metadata must be filled afterwards.
  Result<int64_t> Load(const std::string& path);

  // The stored vector of `id`, or empty.
  std::vector<float> VectorOf(int64_t id) const;
  // Labels present in the graph (not deleted); for integrity checks.
  std::vector<int64_t> GraphIds() const;
  int64_t graph_bytes() const;

 private:
  bool Passes(int64_t id, const SearchFilter& filter) const;
  std::vector<ScoredId> SearchGraph(std::span<const float> query, size_t n, const SearchFilter& filter) const;
  void Reserve(size_t n);

  struct Graph;

  int dim_;
  IndexParams params_;
  std::unique_ptr<Graph> g_;
  std::unordered_map<int64_t, ImageMeta> meta_;  // one entry per live (searchable) image
};

// A collection's search over `index` (which the caller keeps from changing meanwhile): checks the
// query and options, then returns the page of hits they ask for. `index` may be null (nothing
// indexed yet).
Result<std::vector<SearchHit>> SearchIndex(const VectorIndex* index, int dim, std::span<const float> query,
                                           const SearchOptions& options);

}  // namespace imgsearch::store
