// Every front end's parser, over one set of field rules and one validation.
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

#include "base/base64.h"
#include "base/text.h"
#include "imgsearch/image.h"
#include "imgsearch/search.h"

namespace imgsearch {

namespace {

using json = nlohmann::json;

Status Bad(const std::string& message) { return Status::InvalidArgument(message); }

std::string Quoted(std::string_view text) { return "\"" + EscapeForDisplay(text, 80) + "\""; }

Result<int64_t> ParseInteger(std::string_view text, std::string_view field) {
  const std::string f(field);
  if (text.empty()) return Bad(f + " is empty");
  const std::string s(text);
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    return Bad(f + " must be an integer, not " + Quoted(text));
  }
  if (used != s.size()) return Bad(f + " must be an integer, not " + Quoted(text));
  return v;
}

Result<double> ParseNumber(std::string_view text, std::string_view field) {
  const std::string s(text);
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    return Bad(std::string(field) + " must be a number, not " + Quoted(text));
  }
  if (used != s.size() || !std::isfinite(v)) return Bad(std::string(field) + " must be a number, not " + Quoted(text));
  return v;
}

Result<bool> ParseBool(std::string_view text, std::string_view field) {
  if (text == "1" || text == "true" || text == "yes") return true;
  if (text == "0" || text == "false" || text == "no") return false;
  return Bad(std::string(field) + " must be true or false, not " + Quoted(text));
}

Status CheckUtf8(std::string_view text, std::string_view field) {
  if (IsValidUtf8(text)) return Status::Ok();
  return Bad(std::string(field) + " is not valid UTF-8 text");
}

Result<float> ParseWeight(double w, std::string_view where) {
  if (!std::isfinite(w) || w == 0 || std::abs(w) > 100) {
    return Bad(std::string(where) + " must be non-zero and between -100 and 100");
  }
  return static_cast<float>(w);
}

// Words to embed (kText), or words the images show (kContains).
SearchTerm TextTerm(std::string text, float weight = 1.0f, SearchTerm::Kind kind = SearchTerm::Kind::kText) {
  SearchTerm t;
  t.kind = kind;
  t.text = std::move(text);
  t.weight = weight;
  return t;
}

SearchTerm ContainsTerm(std::string words, float weight = 1.0f) {
  return TextTerm(std::move(words), weight, SearchTerm::Kind::kContains);
}

SearchTerm ItemTerm(int64_t id, float weight = 1.0f, std::optional<double> time_s = std::nullopt) {
  SearchTerm t;
  t.kind = SearchTerm::Kind::kItem;
  t.id = id;
  t.time_s = time_s;
  t.weight = weight;
  return t;
}

Result<double> ParseMoment(double t, std::string_view field) {
  if (!std::isfinite(t) || t < 0 || t > 1e7) return Bad(std::string(field) + " must be a time in seconds from 0");
  return t;
}

// "12" (an image) or "12@34.5" (a video's moment, in seconds).
Result<SearchTerm> ParseItemRef(std::string_view text, std::string_view field) {
  const size_t at = text.find('@');
  ASSIGN_OR_RETURN(const int64_t id, ParseInteger(text.substr(0, at), field));
  if (at == std::string_view::npos) return ItemTerm(id);
  ASSIGN_OR_RETURN(const double t, ParseNumber(text.substr(at + 1), std::string(field) + "'s time"));
  ASSIGN_OR_RETURN(const double time_s, ParseMoment(t, std::string(field) + "'s time"));
  return ItemTerm(id, 1.0f, time_s);
}

SearchTerm ImageTerm(std::vector<uint8_t> bytes, float weight = 1.0f) {
  SearchTerm t;
  t.kind = SearchTerm::Kind::kImage;
  t.image = std::move(bytes);
  t.weight = weight;
  return t;
}

// The options every search shares, from text values. kNotFound for a key that is not an option.
Status ApplyOption(const std::string& key, std::string_view value, const RequestLimits& limits, SearchOptions* o) {
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
    std::string under(value);
    while (under.size() > 1 && under.back() == '/') under.pop_back();
    o->filter.under = under;
  } else if (key == "after") {
    ASSIGN_OR_RETURN(o->filter.after_s, ParseSearchTime(value, "after"));
  } else if (key == "before") {
    ASSIGN_OR_RETURN(o->filter.before_s, ParseSearchTime(value, "before"));
  } else if (key == "format" || key == "formats") {
    size_t start = 0;
    while (start <= value.size()) {
      const size_t comma = std::min(value.find(',', start), value.size());
      const std::string_view name = value.substr(start, comma - start);
      if (!name.empty()) {
        ASSIGN_OR_RETURN(std::string f, CanonicalFormat(name, key));
        if (std::find(o->filter.formats.begin(), o->filter.formats.end(), f) == o->filter.formats.end()) {
          o->filter.formats.push_back(std::move(f));
        }
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

// A text field: a term (q, similar) when `terms_allowed`, else an option. kNotFound for a key
// that is neither.
Status ApplyField(const std::string& key, std::string_view value, const RequestLimits& limits, bool terms_allowed,
                  SearchRequest* r) {
  RETURN_IF_ERROR(CheckUtf8(key, "a field name"));
  RETURN_IF_ERROR(CheckUtf8(value, key));
  if (terms_allowed && key == "q") {
    if (value.empty()) return Bad("q is empty: type something to search for");
    r->terms.push_back(TextTerm(std::string(value)));
    return Status::Ok();
  }
  if (terms_allowed && key == "contains") {
    r->terms.push_back(ContainsTerm(std::string(value)));
    return Status::Ok();
  }
  if (terms_allowed && key == "similar") {
    ASSIGN_OR_RETURN(SearchTerm item, ParseItemRef(value, "similar"));
    r->terms.push_back(std::move(item));
    return Status::Ok();
  }
  return ApplyOption(key, value, limits, &r->options);
}

// The rules every request follows, whichever parser made it.
Status Validate(const SearchRequest& r, const RequestLimits& limits, bool terms_required) {
  const SearchOptions& o = r.options;
  if (int64_t{o.k} + o.offset > limits.max_k) {
    return Bad("k + offset must not exceed " + std::to_string(limits.max_k));
  }
  if (o.filter.after_s && o.filter.before_s && *o.filter.after_s >= *o.filter.before_s) {
    return Bad("after must be earlier than before");
  }
  if (r.terms.empty()) {
    if (!terms_required) return Status::Ok();
    return Bad("nothing to search for: give q (text), an image, or similar (an image id)");
  }
  if (r.terms.size() > static_cast<size_t>(limits.max_terms)) {
    return Bad("at most " + std::to_string(limits.max_terms) + " query terms");
  }
  for (const SearchTerm& t : r.terms) {
    if (t.weight == 0 || !std::isfinite(t.weight) || std::abs(t.weight) > 100) {
      return Bad("a term's weight must be non-zero and between -100 and 100");
    }
    if (t.kind == SearchTerm::Kind::kText && Utf8Length(t.text) > static_cast<size_t>(limits.max_text_chars)) {
      return Bad("a text term is limited to " + std::to_string(limits.max_text_chars) +
                 " characters (the model reads the first 77 tokens)");
    }
    if (t.kind == SearchTerm::Kind::kContains) {
      if (Utf8Length(t.text) > static_cast<size_t>(limits.max_text_chars)) {
        return Bad("contains is limited to " + std::to_string(limits.max_text_chars) + " characters");
      }
      const bool has_word = std::any_of(t.text.begin(), t.text.end(), [](char c) {
        return static_cast<unsigned char>(c) >= 0x80 || std::isalnum(static_cast<unsigned char>(c));
      });
      if (!has_word) return Bad("contains needs words the images show, like \"invoice 4471\"");
    }
  }
  return Status::Ok();
}

Result<SearchTerm> ParseTermJson(const json& t, const std::string& where) {
  if (!t.is_object()) return Bad(where + " must be an object like {\"text\": \"…\", \"weight\": 1}");
  SearchTerm term;
  int kinds = 0;
  std::optional<double> time_s;
  for (const auto& [key, value] : t.items()) {
    if (key == "text") {
      if (!value.is_string() || value.get_ref<const std::string&>().empty())
        return Bad(where + ".text must be a non-empty string");
      term = TextTerm(value.get<std::string>(), term.weight);
      ++kinds;
    } else if (key == "image") {
      if (!value.is_string()) return Bad(where + ".image must be a base64 string");
      ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, DecodeBase64(value.get_ref<const std::string&>(), where + ".image"));
      term = ImageTerm(std::move(bytes), term.weight);
      ++kinds;
    } else if (key == "contains") {
      if (!value.is_string() || value.get_ref<const std::string&>().empty())
        return Bad(where + ".contains must be a non-empty string (words the images show)");
      term = ContainsTerm(value.get<std::string>(), term.weight);
      ++kinds;
    } else if (key == "id") {
      if (!value.is_number_integer()) return Bad(where + ".id must be an integer image id");
      term = ItemTerm(value.get<int64_t>(), term.weight);
      ++kinds;
    } else if (key == "time") {
      if (!value.is_number()) return Bad(where + ".time must be a number of seconds");
      ASSIGN_OR_RETURN(time_s, ParseMoment(value.get<double>(), where + ".time"));
    } else if (key == "weight") {
      if (!value.is_number()) return Bad(where + ".weight must be a number");
    } else {
      return Bad("unknown field " + where + "." + EscapeForDisplay(key, 80) +
                 " (text, image, id, contains, time, weight)");
    }
  }
  if (kinds != 1) return Bad(where + " must have exactly one of text, image, id or contains");
  if (time_s) {
    if (term.kind != SearchTerm::Kind::kItem) return Bad(where + ".time goes with an id (a video's moment)");
    term.time_s = time_s;
  }
  if (t.contains("weight")) {
    ASSIGN_OR_RETURN(term.weight, ParseWeight(t["weight"].get<double>(), where + ".weight"));
  }
  return term;
}

// A JSON scalar as the text the option rules read.
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

bool IsRegularFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// "0.5:beach" → (0.5, "beach"); no numeric prefix → (1, term).
std::pair<float, std::string> SplitWeight(const std::string& term) {
  const size_t colon = term.find(':');
  if (colon == std::string::npos || colon == 0 || colon > 16) return {1.0f, term};
  const std::string number = term.substr(0, colon);
  if (number.find_first_not_of("0123456789.") != std::string::npos) return {1.0f, term};
  char* end = nullptr;
  const float w = std::strtof(number.c_str(), &end);
  if (end != number.c_str() + number.size() || !std::isfinite(w)) return {1.0f, term};
  return {w, term.substr(colon + 1)};
}

}  // namespace

Result<int64_t> ParseSearchTime(std::string_view text_in, std::string_view field_in) {
  const std::string text(text_in);
  const std::string field(field_in);
  if (!text.empty() && (std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '-') &&
      text.find_first_not_of("-0123456789") == std::string::npos && text.find('-', 1) == std::string::npos) {
    return ParseInteger(text, field);
  }
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  int used = 0;
  const int n = std::sscanf(text.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &used);
  if (n != 3) {
    return Bad(field + " must be a date (2023-05-01, 2023-05-01T12:30:00) or Unix seconds, not " + Quoted(text));
  }
  std::string rest = text.substr(static_cast<size_t>(used));
  if (!rest.empty() && (rest[0] == 'T' || rest[0] == ' ')) {
    int used2 = 0;
    if (std::sscanf(rest.c_str() + 1, "%2d:%2d%n", &h, &mi, &used2) != 2) {
      return Bad(field + ": cannot read the time in " + Quoted(text));
    }
    rest = rest.substr(1 + static_cast<size_t>(used2));
    if (!rest.empty() && rest[0] == ':') {
      int used3 = 0;
      if (std::sscanf(rest.c_str() + 1, "%2d%n", &s, &used3) != 1) return Bad(field + ": cannot read the seconds");
      rest = rest.substr(1 + static_cast<size_t>(used3));
    }
  }
  if (rest == "Z") rest.clear();
  if (!rest.empty()) return Bad(field + ": unexpected " + Quoted(rest) + " after the date");
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  const time_t t = ::timegm(&tm);
  // A real calendar date: timegm normalises 2023-02-30 to March 2nd; converting back tells.
  std::tm back{};
  const bool valid = mo >= 1 && mo <= 12 && d >= 1 && h <= 23 && mi <= 59 && s <= 59 && ::gmtime_r(&t, &back) &&
                     back.tm_mday == d && back.tm_mon == mo - 1;
  if (!valid) return Bad(field + ": " + Quoted(text) + " is not a valid date");
  return static_cast<int64_t>(t);
}

Result<std::string> CanonicalFormat(std::string_view name, std::string_view field) {
  std::string f(name);
  std::transform(f.begin(), f.end(), f.begin(), [](unsigned char c) { return std::tolower(c); });
  static constexpr std::array<std::pair<const char*, const char*>, 7> kAliases = {{{"jpg", "jpeg"},
                                                                                   {"tif", "tiff"},
                                                                                   {"jpe", "jpeg"},
                                                                                   {"heic", "heif"},
                                                                                   {"jpegxl", "jxl"},
                                                                                   {"dng", "raw"},
                                                                                   {"jpeg-xl", "jxl"}}};
  for (const auto& [alias, canonical] : kAliases) {
    if (f == alias) f = canonical;
  }
  std::string known;
  if (FormatInfo(f) != nullptr) return f;
  for (const ImageFormatInfo& format : kImageFormats) known += std::string(known.empty() ? "" : ", ") + format.name;
  return Bad("unknown " + std::string(field) + " " + Quoted(name) + " (" + known + ")");
}

Result<SearchRequest> ParseSearchQuery(const SearchFields& fields, const RequestLimits& limits, bool allow_terms) {
  SearchRequest r;
  for (const auto& [key, value] : fields) {
    const Status s = ApplyField(key, value, limits, allow_terms, &r);
    if (s.code() == StatusCode::kNotFound) {
      return Bad("unknown parameter " + Quoted(key) + " (" + (allow_terms ? "q, contains, similar, " : "") +
                 "k, offset, min_score, under, after, before, format, exact)");
    }
    RETURN_IF_ERROR(s);
  }
  RETURN_IF_ERROR(Validate(r, limits, allow_terms));
  return r;
}

namespace {

// Thrown by the parser callback below to stop a body that is larger than any request could be.
struct JsonTooLarge {
  std::string why;
};

}  // namespace

Result<SearchRequest> ParseSearchJson(std::string_view body, const RequestLimits& limits) {
  // The document is checked while it is parsed, so that a body of millions of tiny values is refused
  // after a few thousand instead of being built in memory first (each value costs tens of bytes).
  const size_t max_values = 64 + 16 * static_cast<size_t>(std::max(0, limits.max_terms));
  size_t values = 0;
  const json::parser_callback_t bound = [&](int depth, json::parse_event_t, json&) {
    if (depth > 4) throw JsonTooLarge{"the body nests deeper than a search request does"};
    if (++values > max_values) {
      throw JsonTooLarge{"the body holds more values than a search request of at most " +
                         std::to_string(limits.max_terms) + " query terms can"};
    }
    return true;
  };
  json j;
  try {
    j = json::parse(body, bound, /*allow_exceptions=*/false);
  } catch (const JsonTooLarge& e) {
    return Bad(e.why);
  }
  if (j.is_discarded()) return Bad("the body is not valid JSON");
  if (!j.is_object()) return Bad("the body must be a JSON object like {\"q\": \"a red car\"}");
  SearchRequest r;
  for (const auto& [key, value] : j.items()) {
    if (key == "q") {
      if (!value.is_string() || value.get_ref<const std::string&>().empty()) return Bad("q must be a non-empty string");
      r.terms.push_back(TextTerm(value.get<std::string>()));
    } else if (key == "image") {
      if (!value.is_string()) return Bad("image must be a base64 string");
      ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, DecodeBase64(value.get_ref<const std::string&>(), "image"));
      r.terms.push_back(ImageTerm(std::move(bytes)));
    } else if (key == "similar") {
      if (!value.is_number_integer()) return Bad("similar must be an integer image id");
      r.terms.push_back(ItemTerm(value.get<int64_t>()));
    } else if (key == "contains") {
      if (!value.is_string() || value.get_ref<const std::string&>().empty()) {
        return Bad("contains must be a non-empty string (words the images show)");
      }
      r.terms.push_back(ContainsTerm(value.get<std::string>()));
    } else if (key == "terms") {
      if (!value.is_array()) return Bad("terms must be a list of {\"text\"|\"image\"|\"id\": …, \"weight\": w}");
      if (value.size() > static_cast<size_t>(limits.max_terms)) {
        return Bad("at most " + std::to_string(limits.max_terms) + " query terms");
      }
      for (size_t i = 0; i < value.size(); ++i) {
        ASSIGN_OR_RETURN(SearchTerm t, ParseTermJson(value[i], "terms[" + std::to_string(i) + "]"));
        r.terms.push_back(std::move(t));
      }
    } else if (key == "formats" && value.is_array()) {
      for (const json& f : value) {
        if (!f.is_string()) return Bad("formats must be a list of strings");
        RETURN_IF_ERROR(ApplyOption("format", f.get_ref<const std::string&>(), limits, &r.options));
      }
    } else {
      if (value.is_null()) continue;  // an option left unset
      ASSIGN_OR_RETURN(const std::string text, ScalarText(value, key));
      const Status s = ApplyOption(key, text, limits, &r.options);
      if (s.code() == StatusCode::kNotFound) {
        return Bad("unknown field " + Quoted(key) +
                   " (q, contains, terms, image, similar, k, offset, min_score, under, after, before, formats, exact)");
      }
      RETURN_IF_ERROR(s);
    }
  }
  RETURN_IF_ERROR(Validate(r, limits, /*terms_required=*/true));
  return r;
}

Result<SearchRequest> ParseSearchForm(const std::vector<FormPart>& parts, const RequestLimits& limits) {
  SearchRequest r;
  SearchFields fields;
  for (const FormPart& p : parts) {
    if (p.name == "query") {
      ASSIGN_OR_RETURN(SearchRequest base, ParseSearchJson(p.content, limits));
      r.options = base.options;
      for (SearchTerm& t : base.terms) r.terms.push_back(std::move(t));
    } else if (p.name == "image") {
      if (p.content.empty()) {
        return Bad("the uploaded image" + (p.filename.empty() ? "" : " " + Quoted(p.filename)) + " is empty");
      }
      r.terms.push_back(ImageTerm({p.content.begin(), p.content.end()}));
    } else if (p.name == "image_weight") {
      ASSIGN_OR_RETURN(const double w, ParseNumber(p.content, "image_weight"));
      if (r.terms.empty() || r.terms.back().kind != SearchTerm::Kind::kImage) {
        return Bad("image_weight must follow an image part");
      }
      ASSIGN_OR_RETURN(r.terms.back().weight, ParseWeight(w, "image_weight"));
    } else {
      fields.emplace_back(p.name, p.content);
    }
  }
  for (const auto& [key, value] : fields) {
    // An empty form field leaves its option (or the text) unset; an empty "similar" is an error.
    if (value.empty() && key != "similar") continue;
    const Status s = ApplyField(key, value, limits, /*terms_allowed=*/true, &r);
    if (s.code() == StatusCode::kNotFound) {
      return Bad(
          "unknown form field " + Quoted(key) +
          " (image, image_weight, query, q, contains, similar, k, offset, min_score, under, after, before, format, "
          "exact)");
    }
    RETURN_IF_ERROR(s);
  }
  RETURN_IF_ERROR(Validate(r, limits, /*terms_required=*/true));
  return r;
}

Result<SearchRequest> ParseSearchArgs(std::span<const std::string> args, std::span<const std::string> images,
                                      std::span<const std::string> items, const SearchFields& options,
                                      const RequestLimits& limits) {
  SearchRequest r;
  float sign = 1.0f;
  bool operator_pending = false;
  for (const std::string& arg : args) {
    RETURN_IF_ERROR(CheckUtf8(arg, "a query term"));
    if (arg == "+" || arg == "-") {
      if (operator_pending) return Bad("query has two operators in a row at " + Quoted(arg));
      sign = arg == "-" ? -1.0f : 1.0f;
      operator_pending = true;
      continue;
    }
    if (!r.terms.empty() && !operator_pending) {
      return Bad("query terms must be joined by + or -: one is missing before " + Quoted(arg));
    }
    auto [weight, body] = SplitWeight(arg);
    if (body.empty()) return Bad("empty query term " + Quoted(arg));
    SearchTerm t;
    if (IsRegularFile(body)) {
      t.kind = SearchTerm::Kind::kImageFile;
      t.path = body;
    } else {
      t = TextTerm(body);
    }
    ASSIGN_OR_RETURN(t.weight, ParseWeight(sign * weight, "the weight of " + Quoted(arg)));
    r.terms.push_back(std::move(t));
    operator_pending = false;
    sign = 1.0f;
  }
  if (operator_pending) return Bad("query ends with an operator");
  for (const std::string& image : images) {
    SearchTerm t;
    t.kind = SearchTerm::Kind::kImageFile;
    t.path = image;
    r.terms.push_back(std::move(t));
  }
  for (const std::string& item : items) {
    ASSIGN_OR_RETURN(SearchTerm t, ParseItemRef(item, "--similar"));
    r.terms.push_back(std::move(t));
  }
  for (const auto& [key, value] : options) {
    if (key == "contains") {  // --contains: a term, not an option
      RETURN_IF_ERROR(CheckUtf8(value, "--contains"));
      if (value.empty()) return Bad("--contains is empty: give the words the images show");
      r.terms.push_back(ContainsTerm(value));
      continue;
    }
    const Status s = ApplyField(key, value, limits, /*terms_allowed=*/false, &r);
    if (s.code() == StatusCode::kNotFound) return Status::Internal("no search option " + Quoted(key));
    RETURN_IF_ERROR(s);
  }
  RETURN_IF_ERROR(Validate(r, limits, /*terms_required=*/true));
  return r;
}

bool NeedsModel(const SearchRequest& request) {
  return std::any_of(request.terms.begin(), request.terms.end(), [](const SearchTerm& t) {
    return t.kind != SearchTerm::Kind::kItem && t.kind != SearchTerm::Kind::kContains;
  });
}

}  // namespace imgsearch
