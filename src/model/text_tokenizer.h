// Text → the token ids a text tower takes, whichever tokenizer its family uses:
//   CLIP's byte-level BPE (model/tokenizer.h): [SOT] … [EOT], at most the context long, not padded.
//   SigLIP's SentencePiece unigram: canonicalised (punctuation removed, whitespace collapsed,
//     lower-cased), "▁" prepended, </s> appended, padded with </s> to the context.
//   SigLIP 2's Gemma SentencePiece (byte-fallback BPE): <eos> appended, padded with <pad>.
// Each reproduces the Hugging Face slow tokenizer of its family id for id.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "imgsearch/status.h"
#include "model/config.h"

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

}  // namespace imgsearch::model
