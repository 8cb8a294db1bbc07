#include "model/tokenizer.h"

#include <limits>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "model/text_clean.h"

namespace imgsearch::model {

namespace {

constexpr std::string_view kSot = "<|startoftext|>";
constexpr std::string_view kEot = "<|endoftext|>";
constexpr std::u32string_view kSot32 = U"<|startoftext|>";
constexpr std::u32string_view kEot32 = U"<|endoftext|>";
constexpr std::u32string_view kContractions[] = {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256, 257, ...
void BuildByteSymbols(std::string (&symbols)[256]) {
  auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const char32_t code = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
    symbols[b] = ToUtf8(std::u32string(1, code));
  }
}

// Splits a UTF-8 string into code-point-sized substrings.
std::vector<std::string> Utf8Chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

bool StartsWith(std::u32string_view text, size_t pos, std::u32string_view prefix) {
  return text.substr(pos, prefix.size()) == prefix;
}

}  // namespace

Result<Tokenizer> Tokenizer::Load(const std::string& vocab_path, const std::string& merges_path) {
  ASSIGN_OR_RETURN(std::string vocab_text, ReadFileText(vocab_path));
  std::unordered_map<std::string, int32_t> vocab;
  try {
    const nlohmann::json j = nlohmann::json::parse(vocab_text);
    if (!j.is_object()) return Status::Corruption(vocab_path + ": expected a JSON object of token → id");
    vocab.reserve(j.size());
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
          it.value().get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return Status::Corruption(vocab_path + ": token " + it.key() + " has no valid integer id");
      }
      vocab.emplace(it.key(), it.value().get<int32_t>());
    }
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(vocab_path + ": not valid JSON: " + e.what());
  }

  ASSIGN_OR_RETURN(std::string merges_text, ReadFileText(merges_path));
  std::vector<std::pair<std::string, std::string>> merges;
  size_t line_no = 0;
  for (size_t pos = 0; pos < merges_text.size();) {
    size_t end = merges_text.find('\n', pos);
    if (end == std::string::npos) end = merges_text.size();
    std::string line = merges_text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos) {
      return Status::Corruption(merges_path + ": line " + std::to_string(line_no) + " is not a pair \"a b\"");
    }
    merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  auto tokenizer = FromData(std::move(vocab), merges);
  if (!tokenizer.ok()) return tokenizer.status().WithContext(vocab_path);
  return tokenizer;
}

Result<Tokenizer> Tokenizer::FromData(std::unordered_map<std::string, int32_t> vocab,
                                      const std::vector<std::pair<std::string, std::string>>& merges) {
  Tokenizer t;
  t.vocab_ = std::move(vocab);
  BuildByteSymbols(t.byte_symbol_);
  auto sot = t.vocab_.find(std::string(kSot));
  auto eot = t.vocab_.find(std::string(kEot));
  if (sot == t.vocab_.end() || eot == t.vocab_.end()) {
    return Status::Corruption("vocabulary lacks the special tokens <|startoftext|> and <|endoftext|>");
  }
  t.sot_id_ = sot->second;
  t.eot_id_ = eot->second;
  for (int b = 0; b < 256; ++b) {
    if (!t.vocab_.contains(t.byte_symbol_[b]) || !t.vocab_.contains(t.byte_symbol_[b] + "</w>")) {
      return Status::Corruption("vocabulary lacks the byte token for byte " + std::to_string(b));
    }
  }
  t.merge_rank_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    // Like the reference, merges whose result is not in the vocabulary are never used.
    if (!t.vocab_.contains(merges[i].first + merges[i].second)) continue;
    t.merge_rank_.emplace(merges[i].first + " " + merges[i].second, static_cast<int32_t>(i));
  }
  return t;
}

std::vector<std::u32string> Tokenizer::Split(std::u32string_view text) {
  std::vector<std::u32string> pieces;
  size_t i = 0;
  while (i < text.size()) {
    const char32_t c = text[i];
    size_t len = 0;
    if (StartsWith(text, i, kSot32)) {
      len = kSot32.size();
    } else if (StartsWith(text, i, kEot32)) {
      len = kEot32.size();
    } else {
      for (std::u32string_view contraction : kContractions) {
        if (StartsWith(text, i, contraction)) {
          len = contraction.size();
          break;
        }
      }
    }
    if (len == 0) {
      if (IsLetter(c)) {
        while (i + len < text.size() && IsLetter(text[i + len])) ++len;
      } else if (IsNumber(c)) {
        len = 1;
      } else if (!IsSpace(c)) {
        while (i + len < text.size() && !IsSpace(text[i + len]) && !IsLetter(text[i + len]) &&
               !IsNumber(text[i + len])) {
          ++len;
        }
      } else {
        ++i;  // whitespace separates pieces and is dropped
        continue;
      }
    }
    pieces.emplace_back(text.substr(i, len));
    i += len;
  }
  return pieces;
}

void Tokenizer::Bpe(const std::string& piece, std::vector<int32_t>* ids) const {
  std::vector<std::string> word = Utf8Chars(piece);
  word.back() += "</w>";
  while (word.size() > 1) {
    int32_t best_rank = std::numeric_limits<int32_t>::max();
    size_t best = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = merge_rank_.find(word[i] + " " + word[i + 1]);
      if (it != merge_rank_.end() && it->second < best_rank) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank == std::numeric_limits<int32_t>::max()) break;
    // Merge every occurrence of the best pair, left to right.
    const std::string first = word[best];
    const std::string second = word[best + 1];
    std::vector<std::string> merged;
    merged.reserve(word.size());
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(word[i]);
        ++i;
      }
    }
    word.swap(merged);
  }
  for (const std::string& symbol : word) {
    auto it = vocab_.find(symbol);
    // Every symbol is a byte symbol or a merge result checked against the vocabulary at load.
    if (it != vocab_.end()) ids->push_back(it->second);
  }
}

std::vector<int32_t> Tokenizer::EncodeRaw(std::string_view text) const {
  std::vector<int32_t> ids;
  for (const std::u32string& piece : Split(CleanText(text))) {
    if (piece == kSot32) {
      ids.push_back(sot_id_);
      continue;
    }
    if (piece == kEot32) {
      ids.push_back(eot_id_);
      continue;
    }
    std::string encoded;
    for (unsigned char byte : ToUtf8(piece)) encoded += byte_symbol_[byte];
    Bpe(encoded, &ids);
  }
  return ids;
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, int context_length) const {
  std::vector<int32_t> ids;
  ids.push_back(sot_id_);
  const std::vector<int32_t> body = EncodeRaw(text);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(eot_id_);
  if (context_length > 0 && ids.size() > static_cast<size_t>(context_length)) {
    ids.resize(static_cast<size_t>(context_length));
    ids.back() = eot_id_;
  }
  return ids;
}

}  // namespace imgsearch::model
