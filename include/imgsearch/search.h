// The search layer: one request, one meaning, whichever front end it came through.
//
// A search is a weighted mix of terms (texts, images, stored items: "more like this") and options
// (k, offset, min score, filters, exact). The command line, a query string, a JSON body and a
// multipart form are each turned into the same SearchRequest by a parser here, validated once, and
// answered by a Searcher, which decides everything a search means: how terms are embedded and
// combined, that "more like this" leaves the item itself out, what a score is, which errors a bad
// term gets. The CLI and the server are thin adapters over it.
//
//   ASSIGN_OR_RETURN(SearchRequest request, ParseSearchQuery({{"q", "a red car"}, {"k", "5"}}));
//   Searcher searcher(model.get(), collection.get());
//   ASSIGN_OR_RETURN(SearchResponse response, searcher.Search(request));
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/image.h"
#include "imgsearch/status.h"
#include "imgsearch/text_model.h"

namespace imgsearch {

struct SearchTerm {
  enum class Kind {
    kText,       // words: embedded by the model's text tower
    kImage,      // an encoded image (an upload): embedded by the image tower
    kImageFile,  // an image file on this machine (the command line)
    kItem,       // a stored item by id: its stored embedding ("more like this")
    kContains,   // words the image shows (text read from it): ranked by the full-text index and fused
                 // with the other terms' ranking; a negative weight leaves out images showing them
  };
  Kind kind = Kind::kText;
  std::string text;              // kText, kContains
  std::vector<uint8_t> image;    // kImage
  std::string path;              // kImageFile
  int64_t id = 0;                // kItem
  std::optional<double> time_s;  // kItem, a video: the moment (its frame nearest this time)
  float weight = 1.0f;           // non-zero, |w| ≤ 100; negative pushes results away
};

struct SearchRequest {
  std::vector<SearchTerm> terms;
  SearchOptions options;
};

// What any request may ask for. The same limits apply to every front end.
struct RequestLimits {
  int max_k = 1000;  // k + offset
  int max_terms = 32;
  int max_text_chars = 2000;  // Unicode characters per text term (the model reads the first 77 tokens)
};

// Key/value text fields, in order: a query string, form fields, or the command line's flags named
// as the query string names them (k, offset, min_score, under, after, before, format, exact; terms
// q, contains (words the images show) and similar: an image id, or a video's moment "ID@SECONDS").
// Values must be UTF-8.
using SearchFields = std::vector<std::pair<std::string, std::string>>;

// GET /api/search and the command line's options. `allow_terms` false: only options (the
// /similar endpoint, whose term is in the path); then an empty term list is not an error.
Result<SearchRequest> ParseSearchQuery(const SearchFields& fields, const RequestLimits& limits = {},
                                       bool allow_terms = true);

// A JSON body:
//   {"q": "text", "terms": [{"text": "dog", "weight": 1}, {"image": "<base64>"}, {"id": 12, "weight": -0.5},
//    {"id": 7, "time": 12.5}, {"contains": "invoice 4471", "weight": 1}], "contains": "words",
//    "image": "<base64>", "similar": 12, "k": 20, "offset": 0, "min_score": 0.2, "under": "/photos/2023",
//    "after": "2023-01-01", "before": 1700000000, "formats": ["jpeg"], "exact": false}
Result<SearchRequest> ParseSearchJson(std::string_view body, const RequestLimits& limits = {});

// A multipart form: "image" file parts (each optionally followed by an "image_weight" part), the
// text fields of the query string, or the whole JSON body in a "query" part.
struct FormPart {
  std::string name;
  std::string content;
  std::string filename;
};
Result<SearchRequest> ParseSearchForm(const std::vector<FormPart>& parts, const RequestLimits& limits = {});

// The command line: terms as separate arguments joined by "+" and "-", each optionally weighted
// "W:term" ("golden retriever" + 0.5:beach - people + ./dog.jpg; a term naming an existing file is
// an image), then `images` (files) and `items` (ids, or "ID@SECONDS" for a video's moment) as more
// positive terms, then the options.
Result<SearchRequest> ParseSearchArgs(std::span<const std::string> args, std::span<const std::string> images,
                                      std::span<const std::string> items, const SearchFields& options,
                                      const RequestLimits& limits = {});

// "2023-05-01", "2023-05-01T12:30", "2023-05-01T12:30:15Z" (UTC; a real calendar date) or Unix
// seconds. Errors name `field`.
Result<int64_t> ParseSearchTime(std::string_view text, std::string_view field);

// Canonical format names ("jpg" → "jpeg", "tif" → "tiff", any case); an error for unknown ones.
Result<std::string> CanonicalFormat(std::string_view name, std::string_view field = "format");

struct SearchResponse {
  std::vector<SearchHit> hits;
  double took_ms = 0;
};

struct SearcherOptions {
  int max_text_batch = 64;           // concurrent text queries embedded in one model call
  size_t text_cache_entries = 4096;  // recently embedded query texts kept
  DecodeOptions decode;              // for query images
  // Query texts go through this text tower (e.g. a multilingual one) instead of the model's own
  // text tower; it must map into the collection's space (same dimension). Not owned.
  const TextModel* text_model = nullptr;
};

struct SearcherStats {
  int64_t texts = 0;         // texts asked for
  int64_t cache_hits = 0;    // of which answered from the cache
  int64_t text_batches = 0;  // model calls for texts
  int64_t images = 0;
  int64_t image_batches = 0;
  int64_t largest_batch = 0;
};

// Answers search requests over one collection. Thread-safe: texts asked by concurrent searches are
// embedded together in one model call, recent texts come from a cache, uploaded images are batched
// likewise. `model` may be null when every term is a stored item (no model is needed then).
class Searcher {
 public:
  Searcher(const ClipModel* model, Collection* collection, const SearcherOptions& options = {});
  ~Searcher();
  Searcher(const Searcher&) = delete;
  Searcher& operator=(const Searcher&) = delete;

  // The query vector is the normalised sum of the terms' normalised embeddings, each scaled by its
  // weight; scores are cosine similarities to it. Text shown in images joins in: images showing a
  // contains term's words, and images showing every word of a text term (so that typing the words
  // on a sign finds it even with a model that cannot read), are ranked by the full-text index, and
  // the rankings are fused by reciprocal rank (each list's weight over 60 + rank); such hits say
  // which words matched. Without text matches the ranking is the query vector's alone. A request of
  // only contains terms ranks by the full-text index (scores: its relevance, 0..1). A request that is a single positive
  // stored item
  // ("more like this") leaves that item out of the ranking, and pages are cut after leaving it out.
  Result<SearchResponse> Search(const SearchRequest& request);

  // Just the query vector (what Search ranks by).
  Result<std::vector<float>> QueryVector(const SearchRequest& request);

  SearcherStats Stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// True when the request needs a model (a text or image term), false when it holds only stored items
// and words shown.
bool NeedsModel(const SearchRequest& request);

}  // namespace imgsearch
