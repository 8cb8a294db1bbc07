// The API's requests, parsed and validated: everything a client can send is checked here, and
// every mistake becomes an error that names the field and what is wrong with it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "imgsearch/collection.h"
#include "imgsearch/status.h"

namespace imgsearch::server {

struct SearchTerm {
  enum class Kind { kText, kImage, kSimilar };
  Kind kind = Kind::kText;
  std::string text;            // kText
  std::vector<uint8_t> image;  // kImage: encoded image bytes
  int64_t id = 0;              // kSimilar
  float weight = 1.0f;
};

struct SearchRequest {
  std::vector<SearchTerm> terms;
  SearchOptions options;
};

struct Limits {
  int max_k = 1000;  // k + offset
};

// Query-string parameters (GET /api/search, GET /api/images/{id}/similar): q, k, offset,
// min_score, under, after, before, format, exact. `allow_q` is false for /similar.
using Params = std::multimap<std::string, std::string>;
Result<SearchRequest> ParseSearchParams(const Params& params, const Limits& limits, bool allow_q = true);

// A JSON body (POST /api/search):
//   {"q": "text", "terms": [{"text": "dog", "weight": 1}, {"image": "<base64>"}, {"id": 12, "weight": -0.5}],
//    "image": "<base64>", "similar": 12, "k": 20, "offset": 0, "min_score": 0.2, "under": "/photos/2023",
//    "after": "2023-01-01", "before": 1700000000, "formats": ["jpeg"], "exact": false}
Result<SearchRequest> ParseSearchJson(const std::string& body, const Limits& limits);

// A multipart form (POST /api/search from a browser or curl -F): "image" file parts, and the same
// fields as the JSON body as text parts (or the whole JSON body in a "query" part).
struct FormPart {
  std::string name;
  std::string content;
  std::string filename;
};
Result<SearchRequest> ParseSearchForm(const std::vector<FormPart>& parts, const Limits& limits);

// "2023-05-01", "2023-05-01T12:30", "2023-05-01T12:30:15Z" (UTC) or Unix seconds.
Result<int64_t> ParseTime(const std::string& text, const std::string& field);

// Standard base64, with or without padding; a "data:…;base64," prefix is skipped.
Result<std::vector<uint8_t>> DecodeBase64(const std::string& text, const std::string& field);

// The HTTP status for an error status: 400, 403, 404, 413, 500, …
int HttpStatusOf(const Status& status);

}  // namespace imgsearch::server
