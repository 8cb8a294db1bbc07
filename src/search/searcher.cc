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
// How deep each ranking is read for fusion (more when the page asked for goes deeper).
constexpr int kFusionDepth = 100;
// Images showing a negative contains term's words that are left out, at most.
constexpr int kMaxTextMatches = 10'000;

// Adds weight · v / |v| to `sum`.
void AddScaled(std::vector<float>* sum, std::span<const float> v, float weight) {
  double sq = 0;
  for (float x : v) sq += static_cast<double>(x) * x;
  if (sq <= 0) return;
  const float scale = weight / static_cast<float>(std::sqrt(sq));
  for (size_t i = 0; i < v.size(); ++i) (*sum)[i] += scale * v[i];
}

// The item "more like this" leaves out: the request's only term, a positive stored item.
std::optional<int64_t> SelfOf(const SearchRequest& request) {
  if (request.terms.size() == 1 && request.terms[0].kind == SearchTerm::Kind::kItem && request.terms[0].weight > 0) {
    return request.terms[0].id;
  }
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
    if (HasVectorTerms(request)) {
      ASSIGN_OR_RETURN(response.hits, VectorSearch(request));
    }
    ASSIGN_OR_RETURN(const bool fused, FuseTextMatches(request, &response.hits));
    if (!fused && model_ != nullptr && options_.text_model == nullptr && model_->info().has_match_probability &&
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

  // The page the query vector ranks (a text or image query, "more like this"): how every search
  // without text in images is answered.
  Result<std::vector<SearchHit>> VectorSearch(const SearchRequest& request, int depth = 0) {
    ASSIGN_OR_RETURN(const std::vector<float> query, QueryVector(request));
    const std::optional<int64_t> self = SelfOf(request);
    // Pages are cut from the ranking without the item itself: search from the top, one more, skip.
    SearchOptions o = request.options;
    if (depth > 0) {  // the head of the ranking, for fusion
      o.k = depth;
      o.offset = 0;
    }
    const int offset = o.offset;
    const int k = o.k;
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

  // Text shown in images: fuses the full-text matches of the request's contains terms and text
  // terms with the query vector's ranking (`hits`, the page asked for), by reciprocal rank. False
  // (and `hits` untouched) when no image shows the words.
  Result<bool> FuseTextMatches(const SearchRequest& request, std::vector<SearchHit>* hits) {
    struct List {
      float weight;
      std::vector<TextMatch> matches;
    };
    std::vector<List> lists;
    std::set<int64_t> excluded;
    const SearchOptions& o = request.options;
    const int depth = std::max(kFusionDepth, o.k + o.offset);
    for (const SearchTerm& t : request.terms) {
      const bool contains = t.kind == SearchTerm::Kind::kContains;
      if (!contains && !(t.kind == SearchTerm::Kind::kText && t.weight > 0)) continue;
      if (contains && t.weight < 0) {
        ASSIGN_OR_RETURN(const std::vector<TextMatch> shown,
                         collection_->SearchText(t.text, o.filter, kMaxTextMatches));
        for (const TextMatch& m : shown) excluded.insert(m.id);
        continue;
      }
      ASSIGN_OR_RETURN(std::vector<TextMatch> matches, collection_->SearchText(t.text, o.filter, depth));
      if (!matches.empty()) lists.push_back({std::abs(t.weight), std::move(matches)});
    }
    const bool vector_terms = HasVectorTerms(request);
    if (lists.empty() && excluded.empty() && vector_terms) return false;

    // Fused scores: each list's weight over (60 + rank), ranks from 1.
    std::map<int64_t, double> fused;
    std::map<int64_t, SearchHit> found;
    std::vector<float> query;
    if (vector_terms) {
      ASSIGN_OR_RETURN(query, QueryVector(request));
      ASSIGN_OR_RETURN(std::vector<SearchHit> head, VectorSearch(request, depth));
      for (size_t i = 0; i < head.size(); ++i) {
        fused[head[i].id] += 1.0 / (kRrfK + static_cast<double>(i + 1));
        found[head[i].id] = std::move(head[i]);
      }
    }
    for (const List& list : lists) {
      for (size_t i = 0; i < list.matches.size(); ++i) {
        const TextMatch& m = list.matches[i];
        fused[m.id] += list.weight / (kRrfK + static_cast<double>(i + 1));
        auto [it, added] = found.try_emplace(m.id);
        SearchHit& h = it->second;
        if (added) {
          ASSIGN_OR_RETURN(std::optional<ImageRecord> r, collection_->GetById(m.id));
          if (!r) {  // removed meanwhile
            found.erase(it);
            fused.erase(m.id);
            continue;
          }
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
        for (const std::string& w : m.words) {
          if (std::find(h.words.begin(), h.words.end(), w) == h.words.end()) h.words.push_back(w);
        }
      }
    }
    std::vector<std::pair<double, int64_t>> order;
    const std::optional<int64_t> self = SelfOf(request);
    for (const auto& [id, score] : fused) {
      if (excluded.contains(id) || (self && id == *self)) continue;
      // The score floor is the query vector's: images the words found stay when they match them.
      const SearchHit& h = found[id];
      if (h.words.empty() && h.score < o.min_score) continue;
      order.emplace_back(score, id);
    }
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    hits->clear();
    for (size_t i = static_cast<size_t>(o.offset); i < order.size() && hits->size() < static_cast<size_t>(o.k); ++i) {
      hits->push_back(std::move(found[order[i].second]));
    }
    return true;
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
