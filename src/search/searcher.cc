// The Searcher: what every search means, decided once for every front end.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "base/text.h"
#include "imgsearch/search.h"
#include "search/query_encoder.h"

namespace imgsearch {

namespace {

using Clock = std::chrono::steady_clock;

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
    ASSIGN_OR_RETURN(const std::vector<float> query, QueryVector(request));
    const std::optional<int64_t> self = SelfOf(request);
    // Pages are cut from the ranking without the item itself: search from the top, one more, skip.
    SearchOptions o = request.options;
    if (self) {
      o.k += o.offset + 1;
      o.offset = 0;
    }
    SearchResponse response;
    ASSIGN_OR_RETURN(response.hits, collection_->Search(query, o));
    if (self) {
      std::vector<SearchHit>& hits = response.hits;
      std::erase_if(hits, [&](const SearchHit& h) { return h.id == *self; });
      const size_t skip = std::min(hits.size(), static_cast<size_t>(request.options.offset));
      hits.erase(hits.begin(), hits.begin() + static_cast<ptrdiff_t>(skip));
      if (hits.size() > static_cast<size_t>(request.options.k)) hits.resize(static_cast<size_t>(request.options.k));
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
    }
    return Status::Internal("unknown search term kind");
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
