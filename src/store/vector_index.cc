#include "store/vector_index.h"

#include <fcntl.h>
#include <unistd.h>

// hnswlib 0.6's SSE path prefetches one element past the end of neighbour lists (an out-of-bounds
// read that AddressSanitizer reports); without manual vectorisation those prefetches go away, and
// the distance comes from our own AVX2 kernel below instead.
#define NO_MANUAL_VECTORIZATION
#include <hnswlib/hnswlib.h>
#include <immintrin.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <queue>
#include <thread>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "base/file.h"

namespace imgsearch::store {

namespace {

constexpr int kSnapshotFormat = 1;
// A video hit lists at most this many other matching moments.
constexpr size_t kMaxMoments = 8;

using Internal = hnswlib::tableint;

// Unix seconds of "YYYY-MM-DDTHH:MM:SS" (EXIF has no zone; read as UTC), or nullopt.
std::optional<int64_t> ParseIsoSeconds(const std::string& s) {
  std::tm tm{};
  if (s.size() < 19 || std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                                   &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm));
}

using Label = hnswlib::labeltype;

Label LabelOf(int64_t id, size_t frame) { return static_cast<Label>(id) | (static_cast<Label>(frame) << kFrameShift); }
int64_t IdOf(Label label) { return static_cast<int64_t>(label & ((Label{1} << kFrameShift) - 1)); }
size_t FrameOf(Label label) { return static_cast<size_t>(label >> kFrameShift); }

// A bounded selection of the best `n` (highest score).
class TopN {
 public:
  explicit TopN(size_t n) : n_(n) {}
  void Offer(Label id, float score) {
    if (n_ == 0) return;
    if (heap_.size() < n_) {
      heap_.push({score, id});
    } else if (score > heap_.top().first) {
      heap_.pop();
      heap_.push({score, id});
    }
  }
  template <typename Scored>
  std::vector<Scored> Take() {
    std::vector<Scored> out;
    out.reserve(heap_.size());
    while (!heap_.empty()) {
      out.push_back({heap_.top().second, heap_.top().first});
      heap_.pop();
    }
    std::reverse(out.begin(), out.end());
    return out;
  }

 private:
  size_t n_;
  std::priority_queue<std::pair<float, Label>, std::vector<std::pair<float, Label>>, std::greater<>> heap_;
};

Result<uint64_t> HashFile(const std::string& path) {
  ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  return static_cast<uint64_t>(XXH3_64bits(file.data(), file.size()));
}

// Inner-product "distance" 1 − a·b for unit vectors, with AVX2 + FMA (the build's floor).
float InnerProductDistance(const void* a_in, const void* b_in, const void* param) {
  const auto* a = static_cast<const float*>(a_in);
  const auto* b = static_cast<const float*>(b_in);
  const size_t n = *static_cast<const size_t*>(param);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  const __m256 acc = _mm256_add_ps(acc0, acc1);
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  sum = _mm_hadd_ps(sum, sum);
  sum = _mm_hadd_ps(sum, sum);
  float dot = _mm_cvtss_f32(sum);
  for (; i < n; ++i) dot += a[i] * b[i];
  return 1.0f - dot;
}

class InnerProductSpace final : public hnswlib::SpaceInterface<float> {
 public:
  explicit InnerProductSpace(int dim) : dim_(static_cast<size_t>(dim)) {}
  size_t get_data_size() override { return dim_ * sizeof(float); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return InnerProductDistance; }
  void* get_dist_func_param() override { return &dim_; }

 private:
  size_t dim_;
};

}  // namespace

struct VectorIndex::Graph {
  explicit Graph(int dim) : space(dim) {}
  InnerProductSpace space;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> hnsw;
};

ImageMeta MetaOf(const ImageRecord& r) {
  ImageMeta m;
  m.path = r.path;
  m.format = r.format;
  m.width = r.width;
  m.height = r.height;
  std::optional<int64_t> captured = r.capture_time ? ParseIsoSeconds(*r.capture_time) : std::nullopt;
  m.time_s = captured ? *captured : r.mtime_ns / 1'000'000'000;
  m.frame_times = r.frame_times;
  return m;
}

VectorIndex::VectorIndex(int dim, const IndexParams& params)
    : dim_(dim), params_(params), g_(std::make_unique<Graph>(dim)) {
  g_->hnsw = std::make_unique<hnswlib::HierarchicalNSW<float>>(&g_->space, 1024, params_.m, params_.ef_construction);
}

VectorIndex::~VectorIndex() = default;

const ImageMeta* VectorIndex::Meta(int64_t id) const {
  auto it = meta_.find(id);
  return it == meta_.end() ? nullptr : &it->second;
}

void VectorIndex::Reserve(size_t n) {
  if (n <= g_->hnsw->max_elements_) return;
  g_->hnsw->resizeIndex(std::max(n, g_->hnsw->max_elements_ * 2));
}

void VectorIndex::Put(int64_t id, std::span<const float> vectors, ImageMeta meta) {
  std::vector<ImageMeta> metas;
  metas.push_back(std::move(meta));
  PutBatch(std::span<const int64_t>(&id, 1), vectors, std::move(metas));
}

void VectorIndex::PutBatch(std::span<const int64_t> ids, std::span<const float> vectors, std::vector<ImageMeta> metas) {
  // Every frame of every item: its label and its row.
  std::vector<std::pair<Label, const float*>> points;
  size_t row = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    for (size_t f = 0; f < metas[i].frames(); ++f, ++row) {
      points.emplace_back(LabelOf(ids[i], f), vectors.data() + row * dim_);
    }
  }
  Reserve(g_->hnsw->cur_element_count + points.size());
  // hnswlib may insert distinct labels concurrently, not the same label twice.
  const bool distinct = std::unordered_set<int64_t>(ids.begin(), ids.end()).size() == ids.size();
  const size_t n_threads = points.size() < 256 || !distinct ? 1 : std::max(1u, std::thread::hardware_concurrency());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < points.size();) g_->hnsw->addPoint(points[i].second, points[i].first);
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < n_threads; ++t) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < ids.size(); ++i) {
    EraseFrames(ids[i], metas[i].frames());  // a video that now has fewer frames
    SetMeta(ids[i], std::move(metas[i]));
  }
}

void VectorIndex::SetMeta(int64_t id, std::optional<ImageMeta> meta) {
  if (auto it = meta_.find(id); it != meta_.end()) {
    videos_ -= it->second.frame_times.empty() ? 0 : 1;
    points_ -= static_cast<int64_t>(it->second.frames());
    meta_.erase(it);
  }
  if (!meta) return;
  videos_ += meta->frame_times.empty() ? 0 : 1;
  points_ += static_cast<int64_t>(meta->frames());
  meta_.emplace(id, std::move(*meta));
}

void VectorIndex::EraseFrames(int64_t id, size_t first) {
  // Frames are labelled 0, 1, …: the points of `id` end at the first label the graph never had.
  for (size_t f = first;; ++f) {
    auto it = g_->hnsw->label_lookup_.find(LabelOf(id, f));
    if (it == g_->hnsw->label_lookup_.end()) break;
    if (!g_->hnsw->isMarkedDeleted(it->second)) g_->hnsw->markDelete(LabelOf(id, f));
  }
}

void VectorIndex::UpdateMeta(int64_t id, ImageMeta meta) {
  auto it = meta_.find(id);
  if (it != meta_.end()) SetMeta(id, std::move(meta));
}

bool VectorIndex::AttachMeta(int64_t id, ImageMeta meta) {
  auto it = g_->hnsw->label_lookup_.find(LabelOf(id, 0));
  if (it == g_->hnsw->label_lookup_.end() || g_->hnsw->isMarkedDeleted(it->second)) return false;
  SetMeta(id, std::move(meta));
  return true;
}

void VectorIndex::Erase(int64_t id) {
  // No early return without metadata: a point loaded from a snapshot has none until attached.
  SetMeta(id, std::nullopt);
  EraseFrames(id, 0);
}

bool VectorIndex::Passes(int64_t id, const SearchFilter& filter) const {
  if (filter.empty()) return true;
  const ImageMeta* m = Meta(id);
  if (m == nullptr) return false;
  if (!filter.under.empty()) {
    const std::string& u = filter.under;
    if (m->path.compare(0, u.size(), u) != 0) return false;
    // "/photos/a" holds "/photos/a/x.jpg", not "/photos/ab.jpg".
    if (u.back() != '/' && m->path.size() > u.size() && m->path[u.size()] != '/') return false;
  }
  if (filter.after_s && m->time_s < *filter.after_s) return false;
  if (filter.before_s && m->time_s >= *filter.before_s) return false;
  if (!filter.formats.empty() &&
      std::find(filter.formats.begin(), filter.formats.end(), m->format) == filter.formats.end()) {
    return false;
  }
  return true;
}

std::vector<VectorIndex::ScoredLabel> VectorIndex::SearchExact(std::span<const float> query, size_t n,
                                                               const SearchFilter& filter) const {
  TopN top(n);
  const size_t count = g_->hnsw->cur_element_count;
  for (Internal i = 0; i < count; ++i) {
    if (g_->hnsw->isMarkedDeleted(i)) continue;
    const Label label = g_->hnsw->getExternalLabel(i);
    if (!Passes(IdOf(label), filter)) continue;
    const float dist =
        g_->hnsw->fstdistfunc_(query.data(), g_->hnsw->getDataByInternalId(i), g_->hnsw->dist_func_param_);
    top.Offer(label, 1.0f - dist);
  }
  return top.Take<ScoredLabel>();
}

// hnswlib's search (greedy descent through the upper layers, then a best-first search of the base
// layer with a beam of ef), except that points failing the filter are walked through but never
// returned, exactly as hnswlib treats deleted points. The filter thus applies inside the search.
std::vector<VectorIndex::ScoredLabel> VectorIndex::SearchGraph(std::span<const float> query, size_t n,
                                                               const SearchFilter& filter) const {
  const auto& g = *g_->hnsw;
  if (g.cur_element_count == 0 || g.enterpoint_node_ == static_cast<Internal>(-1)) return {};
  const void* q = query.data();
  auto distance = [&](Internal i) { return g.fstdistfunc_(q, g.getDataByInternalId(i), g.dist_func_param_); };
  auto excluded = [&](Internal i) { return g.isMarkedDeleted(i) || !Passes(IdOf(g.getExternalLabel(i)), filter); };

  Internal current = g.enterpoint_node_;
  float current_dist = distance(current);
  for (int level = g.maxlevel_; level > 0; --level) {
    bool changed = true;
    while (changed) {
      changed = false;
      const auto* list = reinterpret_cast<const unsigned int*>(g.get_linklist(current, level));
      const int size = g.getListCount(const_cast<unsigned int*>(list));
      const auto* neighbours = reinterpret_cast<const Internal*>(list + 1);
      for (int i = 0; i < size; ++i) {
        const float d = distance(neighbours[i]);
        if (d < current_dist) {
          current_dist = d;
          current = neighbours[i];
          changed = true;
        }
      }
    }
  }

  const size_t ef = std::max<size_t>(static_cast<size_t>(params_.ef_search), n);
  using Pair = std::pair<float, Internal>;
  std::priority_queue<Pair> top;                                          // worst on top
  std::priority_queue<Pair, std::vector<Pair>, std::greater<>> frontier;  // closest on top
  hnswlib::VisitedList* visited = g.visited_list_pool_->getFreeVisitedList();
  hnswlib::vl_type* mark = visited->mass;
  const hnswlib::vl_type tag = visited->curV;

  float bound = std::numeric_limits<float>::max();
  if (!excluded(current)) {
    top.emplace(current_dist, current);
    bound = current_dist;
  }
  frontier.emplace(current_dist, current);
  mark[current] = tag;
  while (!frontier.empty()) {
    const Pair node = frontier.top();
    if (node.first > bound && top.size() == ef) break;
    frontier.pop();
    const auto* list = reinterpret_cast<const unsigned int*>(g.get_linklist0(node.second));
    const int size = g.getListCount(const_cast<unsigned int*>(list));
    const auto* neighbours = reinterpret_cast<const Internal*>(list + 1);
    for (int i = 0; i < size; ++i) {
      const Internal c = neighbours[i];
      if (mark[c] == tag) continue;
      mark[c] = tag;
      const float d = distance(c);
      if (top.size() < ef || d < bound) {
        frontier.emplace(d, c);
        if (!excluded(c)) top.emplace(d, c);
        if (top.size() > ef) top.pop();
        if (!top.empty()) bound = top.top().first;
      }
    }
  }
  g.visited_list_pool_->releaseVisitedList(visited);

  std::vector<ScoredLabel> out;
  while (!top.empty()) {
    out.push_back({g.getExternalLabel(top.top().second), 1.0f - top.top().first});
    top.pop();
  }
  std::reverse(out.begin(), out.end());
  if (out.size() > n) out.resize(n);
  return out;
}

std::vector<ItemMatch> VectorIndex::SearchExactItems(std::span<const float> query, size_t n,
                                                     const SearchFilter& filter) const {
  std::unordered_map<int64_t, ItemMatch> best;
  const size_t count = g_->hnsw->cur_element_count;
  for (Internal i = 0; i < count; ++i) {
    if (g_->hnsw->isMarkedDeleted(i)) continue;
    const Label label = g_->hnsw->getExternalLabel(i);
    const int64_t id = IdOf(label);
    if (!Passes(id, filter)) continue;
    const float score =
        1.0f - g_->hnsw->fstdistfunc_(query.data(), g_->hnsw->getDataByInternalId(i), g_->hnsw->dist_func_param_);
    auto [it, added] = best.try_emplace(id, ItemMatch{id, score, FrameOf(label), {}});
    if (added) continue;
    ItemMatch& m = it->second;
    if (score > m.score) {
      m.other_frames.emplace_back(m.frame, m.score);
      m.score = score;
      m.frame = FrameOf(label);
    } else {
      m.other_frames.emplace_back(FrameOf(label), score);
    }
  }
  std::vector<ItemMatch> items;
  items.reserve(best.size());
  for (auto& [id, m] : best) items.push_back(std::move(m));
  auto by_score = [](const ItemMatch& a, const ItemMatch& b) {
    return a.score > b.score || (a.score == b.score && a.id < b.id);  // ties in a stable order
  };
  const size_t keep = std::min(n, items.size());
  std::partial_sort(items.begin(), items.begin() + static_cast<ptrdiff_t>(keep), items.end(), by_score);
  items.resize(keep);
  for (ItemMatch& m : items) {
    std::sort(m.other_frames.begin(), m.other_frames.end(),
              [](const auto& a, const auto& b) { return a.second > b.second; });
    if (m.other_frames.size() > kMaxMoments) m.other_frames.resize(kMaxMoments);
  }
  return items;
}

std::vector<ItemMatch> VectorIndex::Search(std::span<const float> query, size_t n, const SearchFilter& filter,
                                           bool exact) const {
  // What a scan costs is its points (a video has one per frame), not its items.
  bool scan = exact || points_ <= params_.exact_below;
  if (!scan && !filter.empty()) {
    // A selective filter leaves few candidates: scanning them is exact and cheaper than a graph
    // walk that must step over most points.
    int64_t passing = 0;
    for (const auto& [id, meta] : meta_) {
      if (Passes(id, filter) && (passing += static_cast<int64_t>(meta.frames())) > params_.exact_below) break;
    }
    scan = passing <= params_.exact_below;
  }
  // A scan with videos keeps each item's best frames in one pass; without, its points are items.
  if (scan && videos_ > 0) return SearchExactItems(query, n, filter);
  // Points are frames: a video's many frames may take several of the best `want` points. Ask for
  // more until `n` items are found or no point is left (without videos, the first pass does); a
  // few more than `n` from the start give a video hit its other moments.
  const size_t points = g_->hnsw->cur_element_count;
  for (size_t want = n + kMaxMoments;; want *= 4) {
    const std::vector<ScoredLabel> found = scan ? SearchExact(query, want, filter) : SearchGraph(query, want, filter);
    std::vector<ItemMatch> items;
    std::unordered_map<int64_t, size_t> at;  // id → its entry in items
    for (const ScoredLabel& p : found) {
      const int64_t id = IdOf(p.label);
      auto [it, added] = at.emplace(id, items.size());
      if (added) {
        items.push_back({id, p.score, FrameOf(p.label), {}});
      } else {
        items[it->second].other_frames.emplace_back(FrameOf(p.label), p.score);
      }
    }
    if (items.size() >= n || found.size() < want || want >= points) {
      if (items.size() > n) items.resize(n);
      return items;
    }
  }
}

std::vector<float> VectorIndex::VectorOf(int64_t id) const {
  const ImageMeta* meta = Meta(id);
  const size_t frames = meta != nullptr ? meta->frames() : 1;
  std::vector<float> out;
  out.reserve(frames * static_cast<size_t>(dim_));
  for (size_t f = 0; f < frames; ++f) {
    auto it = g_->hnsw->label_lookup_.find(LabelOf(id, f));
    if (it == g_->hnsw->label_lookup_.end() || g_->hnsw->isMarkedDeleted(it->second)) return {};
    const auto* p = reinterpret_cast<const float*>(g_->hnsw->getDataByInternalId(it->second));
    out.insert(out.end(), p, p + dim_);
  }
  return out;
}

std::vector<int64_t> VectorIndex::GraphIds() const {
  std::vector<int64_t> ids;
  for (const auto& [label, internal] : g_->hnsw->label_lookup_) {
    if (!g_->hnsw->isMarkedDeleted(internal) && FrameOf(label) == 0) ids.push_back(IdOf(label));
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

int64_t VectorIndex::graph_bytes() const {
  return static_cast<int64_t>(g_->hnsw->max_elements_ * g_->hnsw->size_data_per_element_);
}

Status VectorIndex::Save(const std::string& path, int64_t change_seq) const {
  const std::string tmp = path + ".tmp";
  try {
    g_->hnsw->saveIndex(tmp);
  } catch (const std::exception& e) {
    return Status::IoError("cannot write " + tmp + ": " + e.what());
  }
  // hnswlib does not check its writes: a full disk leaves a short file. Its size must be what
  // saveIndex writes (the header, level 0, then each element's upper links with their length).
  const auto& h = *g_->hnsw;
  uint64_t expected = sizeof(h.offsetLevel0_) + sizeof(h.max_elements_) + sizeof(h.cur_element_count) +
                      sizeof(h.size_data_per_element_) + sizeof(h.label_offset_) + sizeof(h.offsetData_) +
                      sizeof(h.maxlevel_) + sizeof(h.enterpoint_node_) + sizeof(h.maxM_) + sizeof(h.maxM0_) +
                      sizeof(h.M_) + sizeof(h.mult_) + sizeof(h.ef_construction_) +
                      static_cast<uint64_t>(h.cur_element_count) * h.size_data_per_element_;
  for (size_t i = 0; i < h.cur_element_count; ++i) {
    expected +=
        sizeof(unsigned int) + (h.element_levels_[i] > 0 ? h.size_links_per_element_ * h.element_levels_[i] : 0);
  }
  std::error_code size_ec;
  const uint64_t written = std::filesystem::file_size(tmp, size_ec);
  if (size_ec || written != expected) {
    std::filesystem::remove(tmp, size_ec);
    return Status::IoError("cannot write the index snapshot " + path + ": " + std::to_string(written) + " of " +
                           std::to_string(expected) + " bytes written (is the disk full?)");
  }
  if (const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
    const bool synced = ::fsync(fd) == 0;
    ::close(fd);
    if (!synced) return Status::IoError("cannot write the index snapshot " + path + ": " + std::strerror(errno));
  }
  ASSIGN_OR_RETURN(uint64_t hash, HashFile(tmp));
  nlohmann::json meta = {{"format", kSnapshotFormat},
                         {"change_seq", change_seq},
                         {"dim", dim_},
                         {"m", params_.m},
                         {"bytes", std::filesystem::file_size(tmp)},
                         {"xxh3", hash}};
  const std::string meta_tmp = path + ".meta.tmp";
  std::error_code ec_ignored;
  {
    std::ofstream out(meta_tmp, std::ios::trunc);
    out << meta.dump() << "\n";
    out.flush();
    if (!out.good()) {
      out.close();
      std::filesystem::remove(tmp, ec_ignored);
      std::filesystem::remove(meta_tmp, ec_ignored);
      return Status::IoError("cannot write " + meta_tmp + " (is the disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (!ec) std::filesystem::rename(meta_tmp, path + ".meta", ec);
  if (ec) return Status::IoError("cannot install the index snapshot " + path + ": " + ec.message());
  return Status::Ok();
}

Result<int64_t> VectorIndex::Load(const std::string& path) {
  auto meta_text = ReadFileText(path + ".meta", 1 << 20);
  if (!meta_text.ok()) return meta_text.status();
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(*meta_text);
    if (meta.at("format").get<int>() != kSnapshotFormat) return Status::Unsupported("snapshot format differs");
    if (meta.at("dim").get<int>() != dim_ || meta.at("m").get<int>() != params_.m) {
      return Status::InvalidArgument("snapshot was built with other parameters");
    }
  } catch (const std::exception& e) {
    return Status::Corruption(path + ".meta: " + e.what());
  }
  std::error_code ec;
  const uint64_t bytes = std::filesystem::file_size(path, ec);
  if (ec || bytes != meta.value("bytes", uint64_t{0})) return Status::Corruption(path + ": size differs from its meta");
  ASSIGN_OR_RETURN(uint64_t hash, HashFile(path));
  if (hash != meta.value("xxh3", uint64_t{0})) return Status::Corruption(path + ": checksum mismatch");
  try {
    g_->hnsw = std::make_unique<hnswlib::HierarchicalNSW<float>>(&g_->space, path);
  } catch (const std::exception& e) {
    return Status::Corruption(path + ": " + e.what());
  }
  meta_.clear();
  videos_ = points_ = 0;
  return meta.value("change_seq", int64_t{0});
}

std::vector<float> Normalised(std::vector<float> v) {
  const int dim = static_cast<int>(v.size());
  return NormalisedRows(std::move(v), dim);
}

std::vector<float> NormalisedRows(std::vector<float> v, int dim) {
  const auto d = static_cast<size_t>(dim);
  if (dim <= 0 || v.empty() || v.size() % d != 0) return {};
  for (size_t at = 0; at < v.size(); at += d) {
    double sq = 0;
    for (size_t i = at; i < at + d; ++i) sq += static_cast<double>(v[i]) * v[i];
    if (sq <= 0 || !std::isfinite(sq)) return {};
    const float inv = static_cast<float>(1.0 / std::sqrt(sq));
    for (size_t i = at; i < at + d; ++i) v[i] *= inv;
  }
  return v;
}

Result<std::vector<SearchHit>> SearchIndex(const VectorIndex* index, int dim, std::span<const float> query,
                                           const SearchOptions& o) {
  if (static_cast<int>(query.size()) != dim && index != nullptr) {
    return Status::InvalidArgument("query has " + std::to_string(query.size()) + " dimensions, the collection " +
                                   std::to_string(dim));
  }
  if (o.k < 1 || o.k > 10'000) return Status::InvalidArgument("k must be between 1 and 10000");
  if (o.offset < 0 || o.offset > 100'000) return Status::InvalidArgument("offset must be between 0 and 100000");
  if (index == nullptr) return std::vector<SearchHit>();  // nothing indexed yet
  const std::vector<float> q = Normalised({query.begin(), query.end()});
  if (q.empty()) return Status::InvalidArgument("query vector is zero");
  const std::vector<ItemMatch> found =
      index->Search(q, static_cast<size_t>(o.k) + static_cast<size_t>(o.offset), o.filter, o.exact);
  std::vector<SearchHit> hits;
  for (size_t i = static_cast<size_t>(o.offset); i < found.size(); ++i) {
    const ItemMatch& match = found[i];
    if (match.score < o.min_score) break;
    const ImageMeta* m = index->Meta(match.id);
    if (m == nullptr) continue;
    SearchHit hit{.id = match.id, .path = m->path, .score = match.score, .width = m->width, .height = m->height};
    if (!m->frame_times.empty()) {
      auto time_of = [&](size_t frame) { return frame < m->frame_times.size() ? m->frame_times[frame] : 0.0; };
      hit.time_s = time_of(match.frame);
      for (const auto& [frame, score] : match.other_frames) {
        if (score < o.min_score || hit.moments.size() >= kMaxMoments) break;
        hit.moments.push_back({time_of(frame), score});
      }
    }
    hits.push_back(std::move(hit));
  }
  return hits;
}

}  // namespace imgsearch::store
