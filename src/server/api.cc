#include "server/api.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <set>

#include <nlohmann/json.hpp>

namespace imgsearch::server {

namespace {

using json = nlohmann::json;

Status Bad(const std::string& message) { return Status::InvalidArgument(message); }

Result<int64_t> ParseInteger(const std::string& text, const std::string& field) {
  if (text.empty()) return Bad(field + " is empty");
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    return Bad(field + " must be an integer, not \"" + text + "\"");
  }
  if (used != text.size()) return Bad(field + " must be an integer, not \"" + text + "\"");
  return v;
}

Result<double> ParseNumber(const std::string& text, const std::string& field) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    return Bad(field + " must be a number, not \"" + text + "\"");
  }
  if (used != text.size() || !std::isfinite(v)) return Bad(field + " must be a number, not \"" + text + "\"");
  return v;
}

Result<bool> ParseBool(const std::string& text, const std::string& field) {
  if (text == "1" || text == "true" || text == "yes") return true;
  if (text == "0" || text == "false" || text == "no") return false;
  return Bad(field + " must be true or false, not \"" + text + "\"");
}

// The options every search shares, from text values (query string or form fields).
Status ApplyOption(const std::string& key, const std::string& value, const Limits& limits, SearchOptions* o) {
  if (key == "k") {
    ASSIGN_OR_RETURN(const int64_t k, ParseInteger(value, "k"));
    if (k < 1 || k > limits.max_k) return Bad("k must be between 1 and " + std::to_string(limits.max_k));
    o->k = static_cast<int>(k);
  } else if (key == "offset") {
    ASSIGN_OR_RETURN(const int64_t offset, ParseInteger(value, "offset"));
    if (offset < 0 || offset >= limits.max_k) {
      return Bad("offset must be between 0 and " + std::to_string(limits.max_k - 1));
    }
    o->offset = static_cast<int>(offset);
  } else if (key == "min_score") {
    ASSIGN_OR_RETURN(const double s, ParseNumber(value, "min_score"));
    if (s < -1 || s > 1) return Bad("min_score must be between -1 and 1");
    o->min_score = static_cast<float>(s);
  } else if (key == "under") {
    if (!value.empty() && value[0] != '/') return Bad("under must be an absolute folder path");
    std::string under = value;
    while (under.size() > 1 && under.back() == '/') under.pop_back();
    o->filter.under = under;
  } else if (key == "after") {
    ASSIGN_OR_RETURN(o->filter.after_s, ParseTime(value, "after"));
  } else if (key == "before") {
    ASSIGN_OR_RETURN(o->filter.before_s, ParseTime(value, "before"));
  } else if (key == "format" || key == "formats") {
    static const std::set<std::string> kKnown = {"jpeg", "png", "webp", "gif", "bmp", "tiff"};
    size_t start = 0;
    while (start <= value.size()) {
      const size_t comma = std::min(value.find(',', start), value.size());
      std::string f = value.substr(start, comma - start);
      std::transform(f.begin(), f.end(), f.begin(), [](unsigned char c) { return std::tolower(c); });
      if (f == "jpg") f = "jpeg";
      if (f == "tif") f = "tiff";
      if (!f.empty()) {
        if (kKnown.count(f) == 0) return Bad("unknown format \"" + f + "\" (jpeg, png, webp, gif, bmp, tiff)");
        o->filter.formats.push_back(f);
      }
      start = comma + 1;
    }
  } else if (key == "exact") {
    ASSIGN_OR_RETURN(o->exact, ParseBool(value, "exact"));
  } else {
    return Status::NotFound(key);
  }
  return Status::Ok();
}

Status CheckRange(const SearchOptions& o, const Limits& limits) {
  if (int64_t{o.k} + o.offset > limits.max_k) {
    return Bad("k + offset must not exceed " + std::to_string(limits.max_k));
  }
  if (o.filter.after_s && o.filter.before_s && *o.filter.after_s >= *o.filter.before_s) {
    return Bad("after must be earlier than before");
  }
  return Status::Ok();
}

Result<float> WeightOf(const json& term, const std::string& where) {
  if (!term.contains("weight")) return 1.0f;
  const json& w = term["weight"];
  if (!w.is_number() || !std::isfinite(w.get<double>())) return Bad(where + ".weight must be a number");
  const double v = w.get<double>();
  if (v == 0 || std::abs(v) > 100) return Bad(where + ".weight must be non-zero and between -100 and 100");
  return static_cast<float>(v);
}

Result<SearchTerm> ParseTermJson(const json& t, const std::string& where) {
  if (!t.is_object()) return Bad(where + " must be an object like {\"text\": \"…\", \"weight\": 1}");
  SearchTerm term;
  int kinds = 0;
  for (const auto& [key, value] : t.items()) {
    if (key == "text") {
      if (!value.is_string() || value.get<std::string>().empty())
        return Bad(where + ".text must be a non-empty string");
      term.kind = SearchTerm::Kind::kText;
      term.text = value.get<std::string>();
      ++kinds;
    } else if (key == "image") {
      if (!value.is_string()) return Bad(where + ".image must be a base64 string");
      term.kind = SearchTerm::Kind::kImage;
      ASSIGN_OR_RETURN(term.image, DecodeBase64(value.get<std::string>(), where + ".image"));
      ++kinds;
    } else if (key == "id") {
      if (!value.is_number_integer()) return Bad(where + ".id must be an integer image id");
      term.kind = SearchTerm::Kind::kSimilar;
      term.id = value.get<int64_t>();
      ++kinds;
    } else if (key != "weight") {
      return Bad("unknown field " + where + "." + key + " (text, image, id, weight)");
    }
  }
  if (kinds != 1) return Bad(where + " must have exactly one of text, image or id");
  ASSIGN_OR_RETURN(term.weight, WeightOf(t, where));
  return term;
}

// A JSON scalar as the text ApplyOption reads.
Result<std::string> ScalarText(const json& v, const std::string& key) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return std::string(v.get<bool>() ? "true" : "false");
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.9g", v.get<double>());
    return std::string(buf);
  }
  return Bad(key + " must be a string or a number");
}

// A text field of a query string or a form: a term (q, similar) when `terms_allowed`, else an
// option. kNotFound for a key that is neither.
Status ApplyField(const std::string& key, const std::string& value, const Limits& limits, bool terms_allowed,
                  SearchRequest* r) {
  if (terms_allowed && key == "q") {
    if (value.empty()) return Bad("q is empty: type something to search for");
    r->terms.push_back(SearchTerm{SearchTerm::Kind::kText, value, {}, 0, 1.0f});
    return Status::Ok();
  }
  if (terms_allowed && key == "similar") {
    ASSIGN_OR_RETURN(const int64_t id, ParseInteger(value, "similar"));
    r->terms.push_back(SearchTerm{SearchTerm::Kind::kSimilar, {}, {}, id, 1.0f});
    return Status::Ok();
  }
  return ApplyOption(key, value, limits, &r->options);
}

Status CheckHasTerms(const SearchRequest& r) {
  if (r.terms.empty()) return Bad("nothing to search for: give q (text), an image, or similar (an image id)");
  if (r.terms.size() > 32) return Bad("at most 32 query terms");
  for (const SearchTerm& t : r.terms) {
    // The model reads 77 tokens; a longer text only costs tokenising time.
    if (t.kind == SearchTerm::Kind::kText && t.text.size() > 2000) {
      return Bad("a text term is limited to 2000 characters (the model reads the first 77 tokens)");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<int64_t> ParseTime(const std::string& text, const std::string& field) {
  if (!text.empty() && (std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '-') &&
      text.find_first_not_of("-0123456789") == std::string::npos && text.find('-', 1) == std::string::npos) {
    return ParseInteger(text, field);
  }
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  int used = 0;
  const int n = std::sscanf(text.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &used);
  if (n != 3)
    return Bad(field + " must be a date (2023-05-01, 2023-05-01T12:30:00) or Unix seconds, not \"" + text + "\"");
  std::string rest = text.substr(static_cast<size_t>(used));
  if (!rest.empty() && (rest[0] == 'T' || rest[0] == ' ')) {
    int used2 = 0;
    if (std::sscanf(rest.c_str() + 1, "%2d:%2d%n", &h, &mi, &used2) != 2) {
      return Bad(field + ": cannot read the time in \"" + text + "\"");
    }
    rest = rest.substr(1 + static_cast<size_t>(used2));
    if (!rest.empty() && rest[0] == ':') {
      int used3 = 0;
      if (std::sscanf(rest.c_str() + 1, "%2d%n", &s, &used3) != 1) return Bad(field + ": cannot read the seconds");
      rest = rest.substr(1 + static_cast<size_t>(used3));
    }
  }
  if (rest == "Z") rest.clear();
  if (!rest.empty()) return Bad(field + ": unexpected \"" + rest + "\" after the date");
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) {
    return Bad(field + ": \"" + text + "\" is not a valid date");
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return static_cast<int64_t>(::timegm(&tm));
}

Result<std::vector<uint8_t>> DecodeBase64(const std::string& text_in, const std::string& field) {
  std::string_view text = text_in;
  if (text.substr(0, 5) == "data:") {
    const size_t comma = text.find(',');
    if (comma == std::string_view::npos || text.substr(0, comma).find(";base64") == std::string_view::npos) {
      return Bad(field + ": a data URL must be base64 (data:image/…;base64,…)");
    }
    text.remove_prefix(comma + 1);
  }
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::vector<uint8_t> out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  size_t padding = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n' || c == '\r' || c == ' ') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const int v = value(c);
    if (v < 0 || padding > 0) return Bad(field + " is not valid base64 (at character " + std::to_string(i) + ")");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xFF));
    }
  }
  if (bits >= 6 || padding > 2) return Bad(field + " is not valid base64 (wrong length)");
  if (out.empty()) return Bad(field + " is empty");
  return out;
}

Result<SearchRequest> ParseSearchParams(const Params& params, const Limits& limits, bool allow_q) {
  SearchRequest r;
  for (const auto& [key, value] : params) {
    const Status s = ApplyField(key, value, limits, allow_q, &r);
    if (s.code() == StatusCode::kNotFound) {
      return Bad("unknown parameter \"" + key + "\" (" + (allow_q ? "q, similar, " : "") +
                 "k, offset, min_score, under, after, before, format, exact)");
    }
    RETURN_IF_ERROR(s);
  }
  RETURN_IF_ERROR(CheckRange(r.options, limits));
  if (allow_q) RETURN_IF_ERROR(CheckHasTerms(r));
  return r;
}

Result<SearchRequest> ParseSearchJson(const std::string& body, const Limits& limits) {
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("the body is not valid JSON");
  if (!j.is_object()) return Bad("the body must be a JSON object like {\"q\": \"a red car\"}");
  SearchRequest r;
  for (const auto& [key, value] : j.items()) {
    if (key == "q") {
      if (!value.is_string() || value.get<std::string>().empty()) return Bad("q must be a non-empty string");
      r.terms.push_back(SearchTerm{SearchTerm::Kind::kText, value.get<std::string>(), {}, 0, 1.0f});
    } else if (key == "image") {
      if (!value.is_string()) return Bad("image must be a base64 string");
      SearchTerm t{SearchTerm::Kind::kImage, {}, {}, 0, 1.0f};
      ASSIGN_OR_RETURN(t.image, DecodeBase64(value.get<std::string>(), "image"));
      r.terms.push_back(std::move(t));
    } else if (key == "similar") {
      if (!value.is_number_integer()) return Bad("similar must be an integer image id");
      r.terms.push_back(SearchTerm{SearchTerm::Kind::kSimilar, {}, {}, value.get<int64_t>(), 1.0f});
    } else if (key == "terms") {
      if (!value.is_array()) return Bad("terms must be a list of {\"text\"|\"image\"|\"id\": …, \"weight\": w}");
      for (size_t i = 0; i < value.size(); ++i) {
        ASSIGN_OR_RETURN(SearchTerm t, ParseTermJson(value[i], "terms[" + std::to_string(i) + "]"));
        r.terms.push_back(std::move(t));
      }
    } else if (key == "formats" && value.is_array()) {
      for (const json& f : value) {
        if (!f.is_string()) return Bad("formats must be a list of strings");
        RETURN_IF_ERROR(ApplyOption("format", f.get<std::string>(), limits, &r.options));
      }
    } else {
      if (value.is_null()) continue;  // an option left unset
      ASSIGN_OR_RETURN(const std::string text, ScalarText(value, key));
      const Status s = ApplyOption(key, text, limits, &r.options);
      if (s.code() == StatusCode::kNotFound) {
        return Bad("unknown field \"" + key +
                   "\" (q, terms, image, similar, k, offset, min_score, under, after, before, formats, exact)");
      }
      RETURN_IF_ERROR(s);
    }
  }
  RETURN_IF_ERROR(CheckRange(r.options, limits));
  RETURN_IF_ERROR(CheckHasTerms(r));
  return r;
}

Result<SearchRequest> ParseSearchForm(const std::vector<FormPart>& parts, const Limits& limits) {
  SearchRequest r;
  Params fields;
  for (const FormPart& p : parts) {
    if (p.name == "query") {
      ASSIGN_OR_RETURN(SearchRequest base, ParseSearchJson(p.content, limits));
      r.options = base.options;
      for (SearchTerm& t : base.terms) r.terms.push_back(std::move(t));
    } else if (p.name == "image") {
      if (p.content.empty())
        return Bad("the uploaded image" + (p.filename.empty() ? "" : " " + p.filename) + " is empty");
      r.terms.push_back(SearchTerm{SearchTerm::Kind::kImage, {}, {p.content.begin(), p.content.end()}, 0, 1.0f});
    } else if (p.name == "image_weight") {
      ASSIGN_OR_RETURN(const double w, ParseNumber(p.content, "image_weight"));
      if (r.terms.empty() || r.terms.back().kind != SearchTerm::Kind::kImage) {
        return Bad("image_weight must follow an image part");
      }
      r.terms.back().weight = static_cast<float>(w);
    } else {
      fields.emplace(p.name, p.content);
    }
  }
  for (const auto& [key, value] : fields) {
    // An empty form field leaves its option (or the text) unset; an empty "similar" is an error.
    if (value.empty() && key != "similar") continue;
    const Status s = ApplyField(key, value, limits, /*terms_allowed=*/true, &r);
    if (s.code() == StatusCode::kNotFound) {
      return Bad(
          "unknown form field \"" + key +
          "\" (image, image_weight, query, q, similar, k, offset, min_score, under, after, before, format, exact)");
    }
    RETURN_IF_ERROR(s);
  }
  RETURN_IF_ERROR(CheckRange(r.options, limits));
  RETURN_IF_ERROR(CheckHasTerms(r));
  return r;
}

int HttpStatusOf(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kCorruption: return 422;  // well-formed request, unreadable content (an image)
    case StatusCode::kUnsupported: return 415;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kPermissionDenied: return 403;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kResourceExhausted: return 413;
    case StatusCode::kIoError:
    case StatusCode::kInternal: return 500;
  }
  return 500;
}

}  // namespace imgsearch::server
