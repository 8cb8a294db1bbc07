// Search: GET and POST /api/search, and "more like this" for one image.
#include <cmath>

#include "server/routes.h"

namespace imgsearch::server {

namespace {

SearchFields FieldsOf(const httplib::Params& params) { return {params.begin(), params.end()}; }

json HitJson(const SearchHit& h, const OfflineFolders& offline) {
  const std::string id = std::to_string(h.id);
  json j{{"id", h.id},
         {"score", h.score},
         {"width", h.width},
         {"height", h.height},
         {"url", "/api/images/" + id},
         {"view_url", "/api/images/" + id + "/view"},
         {"thumbnail", "/api/images/" + id + "/thumbnail"}};
  if (h.probability) j["probability"] = *h.probability;
  if (!h.words.empty()) j["words"] = h.words;  // found by the text it shows: the words that matched
  if (h.time_s) {  // a video: its best moment (the thumbnail shows that frame), and the others
    j["time"] = *h.time_s;
    j["thumbnail"] = "/api/images/" + id + "/thumbnail?t=" + TimeParam(*h.time_s);
    json moments = json::array();
    for (const Moment& m : h.moments) moments.push_back({{"time", m.time_s}, {"score", m.score}});
    j["moments"] = std::move(moments);
  }
  AddPath(&j, h.path);
  offline.Mark(&j, h.path);
  return j;
}

void Answer(ServerContext& c, const Result<SearchRequest>& request, Res& res) {
  if (!request.ok()) return SendError(res, request.status());
  Result<SearchResponse> response = c.searcher->Search(*request);
  if (!response.ok()) return SendError(res, response.status());
  json results = json::array();
  const OfflineFolders offline(c);
  for (const SearchHit& h : response->hits) results.push_back(HitJson(h, offline));
  SendJson(res, json{{"results", std::move(results)},
                     {"k", request->options.k},
                     {"offset", request->options.offset},
                     {"took_ms", std::round(response->took_ms * 100) / 100}});
}

}  // namespace

std::vector<Route> SearchRoutes(ServerContext& c) {
  const std::vector<std::string> options = {"k", "offset", "min_score", "under", "after", "before", "format", "exact"};
  std::vector<std::string> params = {"q", "contains", "similar"};
  params.insert(params.end(), options.begin(), options.end());
  std::vector<std::string> similar_options = {"t"};
  similar_options.insert(similar_options.end(), options.begin(), options.end());
  return {
      {.method = "GET",
       .pattern = "/api/search",
       .name = "search",
       .params = params,
       .about = "Search by text (q), by words the images show (contains), or by an indexed image (similar=ID, or "
                "ID@SECONDS for a video's moment). Results: id, path, score, width, height, url, view_url, thumbnail; "
                "words (the words shown that matched, when the text in the image found it); a video's also time "
                "(seconds, its best moment) and moments (its other matching ones).",
       .handle = [&c](const Req& req, Res& res) { Answer(c, ParseSearchQuery(FieldsOf(req.params), c.limits), res); }},
      {.method = "POST",
       .pattern = "/api/search",
       .name = "search",
       .body =
           "JSON {q, contains, terms: [{text|image (base64)|id (with time for a video's moment)|contains, weight}], "
           "image, similar, "
           "k, offset, min_score, under, "
           "after, before, formats, exact} or multipart/form-data with image file parts and the same fields",
       .about = "Weighted positive and negative terms: texts, uploaded images and indexed images.",
       .handle =
           [&c](const Req& req, Res& res) {
             if (req.is_multipart_form_data()) {
               // Terms, their weights and each option once: more parts than that is not a search.
               const size_t max_parts = 2 * static_cast<size_t>(c.limits.max_terms) + 16;
               if (req.files.size() > max_parts) {
                 return SendError(res,
                                  Status::InvalidArgument("the form has " + std::to_string(req.files.size()) +
                                                          " parts; a search has at most " + std::to_string(max_parts)));
               }
               std::vector<FormPart> parts;
               for (const auto& [name, part] : req.files) parts.push_back({part.name, part.content, part.filename});
               return Answer(c, ParseSearchForm(parts, c.limits), res);
             }
             const std::string type = req.get_header_value("Content-Type");
             if (type.rfind("application/json", 0) != 0 && !type.empty()) {
               return SendError(res, Status::Unsupported("send application/json or multipart/form-data, not " + type));
             }
             Answer(c, ParseSearchJson(req.body, c.limits), res);
           }},
      {.method = "GET",
       .pattern = "/api/images/{id}/similar",
       .name = "similar",
       .params = similar_options,
       .about = "More like this (the image itself left out); for a video, t (seconds) names the moment (without "
                "it, the video as a whole).",
       .handle =
           [&c](const Req& req, Res& res) {
             auto id = PathId(req);
             if (!id.ok()) return SendError(res, id.status());
             // The moment is a term of the path's item: "ID@t", as similar= takes it.
             std::string item = std::to_string(*id);
             SearchFields fields;
             for (const auto& [key, value] : req.params) {
               if (key == "t") {
                 item += "@" + value;
               } else {
                 fields.emplace_back(key, value);
               }
             }
             auto request = ParseSearchQuery(fields, c.limits, /*allow_terms=*/false);
             if (request.ok()) {
               auto with_item = ParseSearchQuery({{"similar", item}}, c.limits);
               if (!with_item.ok()) return SendError(res, with_item.status());
               request->terms = std::move(with_item->terms);
             }
             Answer(c, request, res);
           }},
  };
}

}  // namespace imgsearch::server
