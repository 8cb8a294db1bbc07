// Text → the token ids a text tower takes, whichever tokenizer its family uses:
//   CLIP's byte-level BPE (model/tokenizer.h): [SOT] … [EOT], at most the context long, not padded.
//   SigLIP's SentencePiece unigram: canonicalised (punctuation removed, whitespace collapsed,
//     lower-cased), "▁" prepended, </s> appended, padded with </s> to the context.
//   SigLIP 2's Gemma SentencePiece (byte-fallback BPE): <eos> appended, padded with <pad>.
//   BERT's WordPiece (multilingual DistilBERT): [CLS] … [SEP].
//   XLM-RoBERTa's SentencePiece with fairseq's ids (M-CLIP): <s> … </s>.
// Each reproduces the Hugging Face slow tokenizer of its family id for id.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "imgsearch/status.h"
#include "model/config.h"
#include "model/text_clean.h"

namespace imgsearch::model {

class TextTokenizer {
 public:
  virtual ~TextTokenizer() = default;

  // The ids for `text`, special tokens and padding included, at most `context_length` long.
  virtual std::vector<int32_t> Encode(std::string_view text) const = 0;

  // One more than the highest id Encode can return: checked against the token embedding's rows.
  virtual int32_t id_limit() const = 0;

  // True when every sequence is padded to the context (the model attends to the padding).
  virtual bool pads() const = 0;
};

// The tokenizer `files` name, for sequences of at most `context_length` ids.
Result<std::unique_ptr<TextTokenizer>> LoadTokenizer(const ModelFiles& files, int context_length);

// A token of tokenizer_config.json's added_tokens_decoder: typed in a text, it is that id, whatever
// the vocabulary would make of its characters (Hugging Face splits text around these first).
struct AddedToken {
  std::u32string content;
  int32_t id = 0;
  bool lstrip = false;  // whitespace before it goes with it
  bool rstrip = false;  // whitespace after it goes with it
};

// The added tokens of a parsed tokenizer_config.json, longest first; `path` names it in errors.
Result<std::vector<AddedToken>> ReadAddedTokens(const nlohmann::json& tokenizer_config, const std::string& path);

// Calls `text_piece(std::u32string_view)` for the text between added tokens and `token(int32_t)`
// for each added token, in order. At a position the longest added token wins.
template <typename TextFn, typename TokenFn>
void SplitOnAddedTokens(const std::vector<AddedToken>& added, std::u32string_view text, TextFn text_piece,
                        TokenFn token) {
  size_t begin = 0;  // start of the pending text piece
  for (size_t i = 0; i < text.size();) {
    const AddedToken* match = nullptr;
    for (const AddedToken& t : added) {
      if (text.substr(i, t.content.size()) == t.content) {
        match = &t;
        break;
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    size_t end = i;
    if (match->lstrip) {
      while (end > begin && IsSpace(text[end - 1])) --end;
    }
    if (end > begin) text_piece(text.substr(begin, end - begin));
    token(match->id);
    i += match->content.size();
    if (match->rstrip) {
      while (i < text.size() && IsSpace(text[i])) ++i;
    }
    begin = i;
  }
  if (begin < text.size()) text_piece(text.substr(begin));
}

}  // namespace imgsearch::model
