#include "store/catalog_backend.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>

#include <nlohmann/json.hpp>

namespace imgsearch::store {

std::vector<float> FloatsOf(std::span<const uint8_t> blob) {
  if (blob.size() < sizeof(float)) return {};  // also NULL: no pointer to copy from
  std::vector<float> v(blob.size() / sizeof(float));
  std::memcpy(v.data(), blob.data(), v.size() * sizeof(float));
  return v;
}

std::vector<float> StoredVectors(std::span<const uint8_t> blob, int64_t dim, size_t frames) {
  const size_t rows = std::max<size_t>(1, frames);
  if (dim <= 0 || blob.size() != rows * static_cast<size_t>(dim) * sizeof(float)) return {};
  return FloatsOf(blob);
}

Status CheckEmbeddingShape(const ImageUpsert& u, int dim) {
  const std::vector<float>& times = u.record.frame_times;
  const size_t rows = std::max<size_t>(1, times.size());
  if (u.embedding.size() != rows * static_cast<size_t>(dim)) {
    return Status::InvalidArgument(u.record.path + ": embedding has " + std::to_string(u.embedding.size()) +
                                   " values, the collection takes " + std::to_string(dim) + " per " +
                                   (times.empty() ? "image" : "frame (" + std::to_string(times.size()) + " frames)"));
  }
  for (float t : times) {
    if (!std::isfinite(t) || t < 0) return Status::InvalidArgument(u.record.path + ": a frame time is not valid");
  }
  return Status::Ok();
}

namespace {

bool IsAsciiPunct(unsigned char c) { return c < 0x80 && !std::isalnum(c); }

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// A word of three characters or more matches any part of a word; a shorter one (a, 9) only a whole
// word, else it would mark most of the text. Both lowered.
bool WordMatches(const std::string& lowered_word, const std::string& lowered_query_word) {
  return lowered_query_word.size() >= 3 ? lowered_word.find(lowered_query_word) != std::string::npos
                                        : lowered_word == lowered_query_word;
}

std::vector<std::string> Lowered(std::span<const std::string> words) {
  std::vector<std::string> out;
  for (const std::string& w : words) out.push_back(AsciiLower(w));
  return out;
}

}  // namespace

std::vector<std::string> QueryWords(std::string_view words) {
  // Spaces and control characters (NUL among them) separate words.
  auto separates = [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7F; };
  std::vector<std::string> out;
  size_t i = 0;
  while (i < words.size()) {
    while (i < words.size() && separates(words[i])) ++i;
    size_t end = i;
    while (end < words.size() && !separates(words[end])) ++end;
    size_t b = i, e = end;
    while (b < e && IsAsciiPunct(static_cast<unsigned char>(words[b]))) ++b;
    while (e > b && IsAsciiPunct(static_cast<unsigned char>(words[e - 1]))) --e;
    if (e > b) out.emplace_back(words.substr(b, e - b));
    i = end;
  }
  return out;
}

std::vector<std::string> MatchedWords(const std::string& text, std::span<const std::string> query) {
  const std::vector<std::string> lowered_query = Lowered(query);
  std::vector<std::string> out;
  for (const std::string& word : QueryWords(text)) {
    const std::string lowered = AsciiLower(word);
    const bool hit = std::any_of(lowered_query.begin(), lowered_query.end(),
                                 [&](const std::string& q) { return WordMatches(lowered, q); });
    if (hit && std::find(out.begin(), out.end(), word) == out.end()) out.push_back(word);
  }
  return out;
}

std::optional<double> MomentOfWords(const RecognizedText& text, std::span<const std::string> query) {
  const std::vector<std::string> lowered_query = Lowered(query);
  // Per frame time, which of the query's words it shows.
  std::map<double, std::vector<bool>> shown;
  for (const RecognizedWord& w : text.words) {
    if (!w.time_s) continue;
    std::vector<bool>& found = shown.try_emplace(*w.time_s, lowered_query.size(), false).first->second;
    for (const std::string& piece : QueryWords(w.text)) {  // as MatchedWords splits the text ("12," is "12")
      const std::string lowered = AsciiLower(piece);
      for (size_t q = 0; q < lowered_query.size(); ++q) found[q] = found[q] || WordMatches(lowered, lowered_query[q]);
    }
  }
  std::optional<double> best;
  long most = 0;                             // a frame showing none of the words is no moment
  for (const auto& [time, found] : shown) {  // in time order: the earliest of equals stays
    const long n = std::count(found.begin(), found.end(), true);
    if (n > most) {
      most = n;
      best = time;
    }
  }
  return best;
}

bool HoldsAll(const std::string& text, std::span<const std::string> query) {
  const std::string lowered = AsciiLower(text);
  return std::all_of(query.begin(), query.end(),
                     [&](const std::string& q) { return lowered.find(AsciiLower(q)) != std::string::npos; });
}

std::string WordsJson(const RecognizedText& text) {
  nlohmann::json words = nlohmann::json::array();
  for (const RecognizedWord& w : text.words) {
    words.push_back({w.text, w.x, w.y, w.width, w.height, std::round(w.confidence * 10) / 10});
    if (w.time_s) words.back().push_back(*w.time_s);  // a video's: its frame's time (as stored with its vector)
  }
  return words.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

RecognizedText TextFromJson(std::string text, const std::string& words_json) {
  RecognizedText out;
  out.text = std::move(text);
  const nlohmann::json words = nlohmann::json::parse(words_json, nullptr, /*allow_exceptions=*/false);
  if (!words.is_array()) return out;
  for (const nlohmann::json& w : words) {
    if (!w.is_array() || w.size() < 6 || !w[0].is_string()) continue;
    bool numbers = true;
    for (size_t k = 1; k < 6; ++k) numbers = numbers && w[k].is_number();
    if (!numbers) continue;
    out.words.push_back({w[0].get<std::string>(), w[1].get<int>(), w[2].get<int>(), w[3].get<int>(), w[4].get<int>(),
                         w[5].get<float>()});
    // A video's: its frame's time (a word whose time is unreadable keeps its box).
    if (w.size() > 6 && w[6].is_number() && std::isfinite(w[6].get<double>()) && w[6].get<double>() >= 0) {
      out.words.back().time_s = w[6].get<double>();
    }
  }
  return out;
}

}  // namespace imgsearch::store
