// BERT's WordPiece tokenizer (DistilBertTokenizer / BertTokenizer, Hugging Face's slow one), id for
// id:
//   1. Added tokens ([CLS], [SEP], … typed in the text) become their ids; the rest is:
//   2. cleaned: NUL, U+FFFD and control characters dropped, whitespace made a space; CJK ideographs
//      set apart by spaces; Unicode NFC; split on whitespace;
//   3. lower-cased with accents stripped when the vocabulary is uncased (do_lower_case);
//   4. split around each punctuation character (ASCII symbols and Unicode P*);
//   5. each word greedily cut into the longest vocabulary pieces ("##" marks a continuation); a word
//      with a piece missing, or longer than 100 characters, becomes one [UNK];
//   6. [CLS] ids [SEP], the ids cut to fit the context.
#include <unicode/uchar.h>

#include <algorithm>
#include <fstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "model/text_clean.h"
#include "model/text_tokenizer.h"

namespace imgsearch::model {

namespace {

constexpr size_t kMaxWordChars = 100;

bool IsBertWhitespace(char32_t c) {
  return c == U' ' || c == U'\t' || c == U'\n' || c == U'\r' ||
         u_charType(static_cast<UChar32>(c)) == U_SPACE_SEPARATOR;
}

bool IsBertControl(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR:
    case U_PRIVATE_USE_CHAR:
    case U_SURROGATE:
    case U_UNASSIGNED:  // Cn: Python's category() says "Cn", which starts with "C"
      return true;
    default: return false;
  }
}

bool IsBertPunctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  return u_ispunct(static_cast<UChar32>(c));
}

bool IsCjkIdeograph(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

class WordPieceTokenizer final : public TextTokenizer {
 public:
  explicit WordPieceTokenizer(int context_length) : context_length_(context_length) {}

  Status Load(const ModelFiles& files) {
    std::ifstream in(files.vocab_txt);
    if (!in) return Status::NotFound("cannot read " + files.vocab_txt);
    std::string line;
    for (int32_t id = 0; std::getline(in, line); ++id) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      vocab_[ToUtf32(line)] = id;  // a repeated line takes the later id, as upstream's dict does
      n_ids_ = id + 1;
    }
    for (const char* name : {"[CLS]", "[SEP]", "[UNK]"}) {
      if (!vocab_.contains(ToUtf32(name))) return Status::InvalidArgument(files.vocab_txt + " has no " + name);
    }
    cls_ = vocab_.at(U"[CLS]");
    sep_ = vocab_.at(U"[SEP]");
    unk_ = vocab_.at(U"[UNK]");
    if (!files.tokenizer_config.empty()) {
      ASSIGN_OR_RETURN(std::string text, ReadFileText(files.tokenizer_config, 16u << 20));
      const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object()) return Status::Corruption(files.tokenizer_config + ": expected a JSON object");
      auto flag = [&](const char* key, bool fallback) {
        auto it = j.find(key);
        return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
      };
      lower_case_ = flag("do_lower_case", lower_case_);
      chinese_chars_ = flag("tokenize_chinese_chars", chinese_chars_);
      // strip_accents: null follows do_lower_case.
      auto it = j.find("strip_accents");
      strip_accents_ = it != j.end() && it->is_boolean() ? it->get<bool>() : lower_case_;
      ASSIGN_OR_RETURN(added_, ReadAddedTokens(j, files.tokenizer_config));
    }
    // BERT's special tokens are never split, listed in the config or not.
    for (const char* name : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
      auto it = vocab_.find(ToUtf32(name));
      const bool listed =
          std::any_of(added_.begin(), added_.end(), [&](const AddedToken& t) { return t.content == ToUtf32(name); });
      if (it != vocab_.end() && !listed) added_.push_back({it->first, it->second, false, false});
    }
    std::stable_sort(added_.begin(), added_.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
    lower_case_text_ = files.lower_case_text;
    return Status::Ok();
  }

  std::vector<int32_t> Encode(std::string_view text) const override {
    std::u32string u = ToUtf32(text);
    if (lower_case_text_) u = LowerEachCharacter(u);
    std::vector<int32_t> ids;
    SplitOnAddedTokens(
        added_, u, [&](std::u32string_view piece) { EncodeText(piece, &ids); }, [&](int32_t id) { ids.push_back(id); });
    if (ids.size() > static_cast<size_t>(context_length_ - 2)) ids.resize(context_length_ - 2);
    ids.insert(ids.begin(), cls_);
    ids.push_back(sep_);
    return ids;
  }

  int32_t id_limit() const override {
    int32_t limit = n_ids_;
    for (const AddedToken& t : added_) limit = std::max(limit, t.id + 1);
    return limit;
  }

  bool pads() const override { return false; }

 private:
  void EncodeText(std::u32string_view text, std::vector<int32_t>* ids) const {
    std::u32string cleaned;
    for (char32_t c : text) {
      if (c == 0 || c == 0xFFFD || IsBertControl(c)) continue;
      if (IsBertWhitespace(c)) {
        cleaned.push_back(U' ');
      } else if (chinese_chars_ && IsCjkIdeograph(c)) {
        cleaned += U' ';
        cleaned.push_back(c);
        cleaned += U' ';
      } else {
        cleaned.push_back(c);
      }
    }
    cleaned = NormalizeUnicode(cleaned, /*decompose=*/false);
    std::u32string word;
    auto flush = [&] {
      if (!word.empty()) WordPieces(word, ids);
      word.clear();
    };
    for (char32_t c : Normalise(cleaned)) {
      if (IsSpace(c)) {
        flush();
      } else if (IsBertPunctuation(c)) {
        flush();
        word.push_back(c);
        flush();
      } else {
        word.push_back(c);
      }
    }
    flush();
  }

  // Lower-casing and accent stripping of an uncased vocabulary (upstream does it word by word; the
  // result is the same over the whole text).
  std::u32string Normalise(const std::u32string& text) const {
    std::u32string out = lower_case_ ? LowerEachCharacter(text) : text;
    if (!strip_accents_) return out;
    std::u32string stripped;
    for (char32_t c : NormalizeUnicode(out, /*decompose=*/true)) {
      if (u_charType(static_cast<UChar32>(c)) != U_NON_SPACING_MARK) stripped.push_back(c);
    }
    return stripped;
  }

  void WordPieces(const std::u32string& word, std::vector<int32_t>* ids) const {
    if (word.size() > kMaxWordChars) {
      ids->push_back(unk_);
      return;
    }
    std::vector<int32_t> pieces;
    for (size_t start = 0; start < word.size();) {
      size_t end = word.size();
      int32_t found = -1;
      for (; end > start; --end) {
        std::u32string piece = word.substr(start, end - start);
        if (start > 0) piece.insert(0, U"##");
        auto it = vocab_.find(piece);
        if (it != vocab_.end()) {
          found = it->second;
          break;
        }
      }
      if (found < 0) {
        ids->push_back(unk_);
        return;
      }
      pieces.push_back(found);
      start = end;
    }
    ids->insert(ids->end(), pieces.begin(), pieces.end());
  }

  int context_length_;
  std::unordered_map<std::u32string, int32_t> vocab_;
  std::vector<AddedToken> added_;
  int32_t n_ids_ = 0;
  int32_t cls_ = 0, sep_ = 0, unk_ = 0;
  bool lower_case_ = true;  // BertTokenizer's default
  bool strip_accents_ = true;
  bool chinese_chars_ = true;
  bool lower_case_text_ = false;  // sentence-transformers' own do_lower_case, before the tokenizer
};

}  // namespace

Result<std::unique_ptr<TextTokenizer>> LoadWordPieceTokenizer(const ModelFiles& files, int context_length) {
  auto tokenizer = std::make_unique<WordPieceTokenizer>(context_length);
  RETURN_IF_ERROR(tokenizer->Load(files));
  return std::unique_ptr<TextTokenizer>(std::move(tokenizer));
}

}  // namespace imgsearch::model
