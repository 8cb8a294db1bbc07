// The Searcher: what every search means, decided once for every front end.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "base/text.h"
#include "imgsearch/search.h"
#include "search/query_encoder.h"

namespace imgsearch {

namespace {

using Clock = std::chrono::steady_clock;

// Reciprocal rank fusion's constant (Cormack et al. 2009): a list's item at rank r adds
// weight / (60 + r).
constexpr double kRrfK = 60;
// How deep each ranking is read for fusion, whatever the page: the deepest page a request may ask
// for (RequestLimits::max_k).
constexpr int kFusionDepth = 1000;
// Images showing a negative contains term's words that are left out, at most.
constexpr int kMaxTextMatches = 10'000;
// How much deeper the query vector's ranking is read to make up for what negative terms leave out
// (the collection answers at most 10,000).
constexpr size_t kMaxExtraDepth = 8'000;

// Adds weight · v / |v| to `sum`.
void AddScaled(std::vector<float>* sum, std::span<const float> v, float weight) {
  double sq = 0;
  for (float x : v) sq += static_cast<double>(x) * x;
  if (sq <= 0) return;
  const float scale = weight / static_cast<float>(std::sqrt(sq));
  for (size_t i = 0; i < v.size(); ++i) (*sum)[i] += scale * v[i];
}

// The item "more like this" leaves out: the request's only term besides words shown, a positive
// stored item.
std::optional<int64_t> SelfOf(const SearchRequest& request) {
  const SearchTerm* only = nullptr;
  for (const SearchTerm& t : request.terms) {
    if (t.kind == SearchTerm::Kind::kContains) continue;
    if (only != nullptr) return std::nullopt;
    only = &t;
  }
  if (only != nullptr && only->kind == SearchTerm::Kind::kItem && only->weight > 0) return only->id;
  return std::nullopt;
}

}  // namespace

class Searcher::Impl {
 public:
  Impl(const ClipModel* model, Collection* collection, const SearcherOptions& options)
      : model_(model), collection_(collection), options_(options) {
    if (model_ != nullptr) {
      encoder_ = std::make_unique<search::QueryEncoder>(*model_, options.text_model, options.max_text_batch,
                                                        options.text_cache_entries);
    }
  }

  Result<std::vector<float>> QueryVector(const SearchRequest& request) {
    if (request.terms.empty())
      return Status::InvalidArgument("nothing to search for: give q (text), an image, or similar (an image id)");
    const int dim = collection_->model().dim;
    std::vector<float> sum(static_cast<size_t>(dim), 0.0f);
    for (const SearchTerm& t : request.terms) {
      if (t.kind == SearchTerm::Kind::kContains) continue;  // words shown: the full-text index's
      ASSIGN_OR_RETURN(const std::vector<float> e, Embed(t));
      if (static_cast<int>(e.size()) != dim) {
        return Status::InvalidArgument("the query has " + std::to_string(e.size()) +
                                       " dimensions but the collection's vectors have " + std::to_string(dim) +
                                       " (a model other than the collection's)");
      }
      AddScaled(&sum, e, t.weight);
    }
    double sq = 0;
    for (float x : sum) sq += static_cast<double>(x) * x;
    if (sq < 1e-12) return Status::InvalidArgument("the query terms cancel out (their weighted sum is zero)");
    const float inv = static_cast<float>(1.0 / std::sqrt(sq));
    for (float& x : sum) x *= inv;
    return sum;
  }

  Result<SearchResponse> Search(const SearchRequest& request) {
    const auto start = Clock::now();
    SearchResponse response;
    std::vector<float> query;  // empty: only words shown
    if (HasVectorTerms(request)) {
      ASSIGN_OR_RETURN(query, QueryVector(request));
    }
    ASSIGN_OR_RETURN(TextLists text, FindText(request));
    if (text.lists.empty() && text.excluded.empty() && !query.empty()) {
      ASSIGN_OR_RETURN(response.hits, VectorSearch(request, query, request.options));
    } else {
      ASSIGN_OR_RETURN(response.hits, Fuse(request, query, std::move(text)));
    }
    if (model_ != nullptr && options_.text_model == nullptr && model_->info().has_match_probability &&
        request.terms.size() == 1 && request.terms[0].kind == SearchTerm::Kind::kText && request.terms[0].weight > 0) {
      for (SearchHit& h : response.hits) h.probability = model_->MatchProbability(h.score);
    }
    response.took_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    return response;
  }

  SearcherStats Stats() const { return encoder_ ? encoder_->Stats() : SearcherStats{}; }

 private:
  Result<std::vector<float>> Embed(const SearchTerm& t) {
    if (t.kind != SearchTerm::Kind::kItem && encoder_ == nullptr) {
      return Status::InvalidArgument("text and image query terms need a model (--model DIR or IMGSEARCH_MODEL)");
    }
    switch (t.kind) {
      case SearchTerm::Kind::kText: return encoder_->EncodeText(t.text);
      case SearchTerm::Kind::kImage: {
        auto decoded = DecodeImage(t.image, ForModelInput(options_.decode, encoder_->preprocessing()));
        if (!decoded.ok()) return QueryImageError(decoded.status(), "the uploaded image");
        return encoder_->EncodeImage(decoded->image);
      }
      case SearchTerm::Kind::kImageFile: {
        auto decoded = DecodeImageFile(t.path, ForModelInput(options_.decode, encoder_->preprocessing()));
        if (!decoded.ok()) return QueryImageError(decoded.status(), "the query image " + EscapeForDisplay(t.path, 200));
        return encoder_->EncodeImage(decoded->image);
      }
      case SearchTerm::Kind::kItem: return StoredEmbedding(t.id, t.time_s);
      case SearchTerm::Kind::kContains: break;  // never embedded (QueryVector skips it)
    }
    return Status::Internal("unknown search term kind");
  }

  static bool HasVectorTerms(const SearchRequest& request) {
    return std::any_of(request.terms.begin(), request.terms.end(),
                       [](const SearchTerm& t) { return t.kind != SearchTerm::Kind::kContains; });
  }

  // The page `o` asks for of the ranking by `query` (a text or image query, "more like this"): how
  // every search without text in images is answered.
  Result<std::vector<SearchHit>> VectorSearch(const SearchRequest& request, std::span<const float> query,
                                              SearchOptions o) {
    const std::optional<int64_t> self = SelfOf(request);
    const int offset = o.offset;
    const int k = o.k;
    // Pages are cut from the ranking without the item itself: search from the top, one more, skip.
    if (self) {
      o.k += o.offset + 1;
      o.offset = 0;
    }
    ASSIGN_OR_RETURN(std::vector<SearchHit> hits, collection_->Search(query, o));
    if (self) {
      std::erase_if(hits, [&](const SearchHit& h) { return h.id == *self; });
      const size_t skip = std::min(hits.size(), static_cast<size_t>(offset));
      hits.erase(hits.begin(), hits.begin() + static_cast<ptrdiff_t>(skip));
      if (hits.size() > static_cast<size_t>(k)) hits.resize(static_cast<size_t>(k));
    }
    return hits;
  }

  // Text shown in images, for a request: a ranked list per contains term and per positive text
  // term that some image's words match, and the images a negative contains term leaves out.
  struct TextLists {
    struct List {
      float weight;
      std::vector<TextMatch> matches;
      std::string words;  // the term's
    };
    std::vector<List> lists;
    std::set<int64_t> excluded;
  };

  Result<TextLists> FindText(const SearchRequest& request) {
    TextLists out;
    const SearchOptions& o = request.options;
    for (const SearchTerm& t : request.terms) {
      const bool contains = t.kind == SearchTerm::Kind::kContains;
      if (!contains && !(t.kind == SearchTerm::Kind::kText && t.weight > 0)) continue;
      if (contains && t.weight < 0) {
        ASSIGN_OR_RETURN(const std::vector<TextMatch> shown,
                         collection_->SearchText(t.text, o.filter, kMaxTextMatches));
        for (const TextMatch& m : shown) out.excluded.insert(m.id);
        continue;
      }
      ASSIGN_OR_RETURN(std::vector<TextMatch> matches, collection_->SearchText(t.text, o.filter, kFusionDepth));
      if (!matches.empty()) out.lists.push_back({std::abs(t.weight), std::move(matches), t.text});
    }
    return out;
  }

  // The page the request asks for of the fused ranking: each list (the query vector's, and
  // `text`'s) adds its weight over (60 + rank) to the items in it, ranks from 1. Every list is read
  // to the same depth whatever the page, so that pages follow one order.
  Result<std::vector<SearchHit>> Fuse(const SearchRequest& request, std::span<const float> query, TextLists text) {
    const SearchOptions& o = request.options;
    std::map<int64_t, double> fused;
    std::map<int64_t, SearchHit> found;
    if (!query.empty()) {
      SearchOptions head = o;
      head.offset = 0;
      // Deeper by what the negative terms leave out, so that pages stay full.
      head.k = kFusionDepth + static_cast<int>(std::min<size_t>(text.excluded.size(), kMaxExtraDepth));
      ASSIGN_OR_RETURN(std::vector<SearchHit> ranked, VectorSearch(request, query, head));
      size_t rank = 0;
      for (SearchHit& h : ranked) {
        if (text.excluded.contains(h.id)) continue;
        fused[h.id] += 1.0 / (kRrfK + static_cast<double>(++rank));
        found[h.id] = std::move(h);
        if (rank == static_cast<size_t>(kFusionDepth)) break;
      }
    }
    const std::optional<int64_t> self = SelfOf(request);
    // Videos only words found, and those words: each is shown at the frame showing them.
    std::map<int64_t, std::string> videos_by_words;
    for (const TextLists::List& list : text.lists) {
      size_t rank = 0;
      for (const TextMatch& m : list.matches) {
        if (text.excluded.contains(m.id) || (self && m.id == *self)) continue;
        auto [it, added] = found.try_emplace(m.id);
        SearchHit& h = it->second;
        if (added) {
          ASSIGN_OR_RETURN(std::optional<ImageRecord> r, collection_->GetById(m.id));
          if (!r) {  // removed meanwhile
            found.erase(it);
            continue;
          }
          if (!r->frame_times.empty()) videos_by_words[m.id];
          h.id = m.id;
          h.path = r->path;
          h.width = r->width;
          h.height = r->height;
          // Its similarity to the query vector, or (words only) how well the words match.
          h.score = m.score;
          if (!query.empty()) {
            ASSIGN_OR_RETURN(const std::vector<float> e, collection_->GetEmbedding(m.id));
            h.score = Dot(query, e);
          }
        }
        fused[m.id] += list.weight / (kRrfK + static_cast<double>(++rank));
        if (auto v = videos_by_words.find(m.id); v != videos_by_words.end()) v->second += " " + list.words;
        for (const std::string& w : m.words) {
          if (std::find(h.words.begin(), h.words.end(), w) == h.words.end()) h.words.push_back(w);
        }
      }
    }
    std::vector<std::pair<double, int64_t>> order;
    for (const auto& [id, score] : fused) {
      // The score floor is the query vector's: images their words found stay.
      const SearchHit& h = found[id];
      if (h.words.empty() && h.score < o.min_score) continue;
      order.emplace_back(score, id);
    }
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    std::vector<SearchHit> hits;
    for (size_t i = static_cast<size_t>(o.offset); i < order.size() && hits.size() < static_cast<size_t>(o.k); ++i) {
      hits.push_back(std::move(found[order[i].second]));
    }
    // A video the query vector did not find (its moment would be the best-matching frame's) is at
    // the frame showing the most of the words; without its text (gone meanwhile), at none.
    for (SearchHit& h : hits) {
      const auto v = videos_by_words.find(h.id);
      if (h.time_s || v == videos_by_words.end()) continue;
      if (Result<std::optional<double>> t = collection_->TextMoment(h.id, v->second); t.ok()) h.time_s = *t;
    }
    return hits;
  }

  static float Dot(std::span<const float> a, std::span<const float> b) {
    double sum = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) sum += static_cast<double>(a[i]) * b[i];
    return static_cast<float>(sum);
  }

  // A query image that cannot be used is the caller's mistake (400), unless a limit refused it.
  static Status QueryImageError(const Status& s, const std::string& what) {
    const StatusCode code = s.code() == StatusCode::kResourceExhausted || s.code() == StatusCode::kNotFound
                                ? s.code()
                                : StatusCode::kInvalidArgument;
    return Status(code, what + " cannot be used: " + s.message());
  }

  Result<std::vector<float>> StoredEmbedding(int64_t id, std::optional<double> time_s) {
    ASSIGN_OR_RETURN(const std::optional<ImageRecord> r, collection_->GetById(id));
    if (!r) return Status::NotFound("no image with id " + std::to_string(id));
    if (r->status != ImageStatus::kIndexed) {
      return Status::InvalidArgument("image " + std::to_string(id) + " could not be read when indexed (" +
                                     EscapeForDisplay(r->error, 300) + "), so it has no embedding");
    }
    return collection_->GetEmbedding(id, time_s);
  }

  const ClipModel* model_;
  Collection* collection_;
  const SearcherOptions options_;
  std::unique_ptr<search::QueryEncoder> encoder_;  // null without a model
};

Searcher::Searcher(const ClipModel* model, Collection* collection, const SearcherOptions& options)
    : impl_(std::make_unique<Impl>(model, collection, options)) {}

Searcher::~Searcher() = default;

Result<SearchResponse> Searcher::Search(const SearchRequest& request) { return impl_->Search(request); }

Result<std::vector<float>> Searcher::QueryVector(const SearchRequest& request) { return impl_->QueryVector(request); }

SearcherStats Searcher::Stats() const { return impl_->Stats(); }

}  // namespace imgsearch
