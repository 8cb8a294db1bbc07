#include "model/text_tokenizer.h"

#include <algorithm>

#include "model/tokenizer.h"

namespace imgsearch::model {

// In sentencepiece_tokenizer.cc.
Result<std::unique_ptr<TextTokenizer>> LoadSentencePieceTokenizer(const ModelFiles& files, int context_length);

namespace {

class ClipBpe final : public TextTokenizer {
 public:
  ClipBpe(Tokenizer bpe, int context_length) : bpe_(std::move(bpe)), context_length_(context_length) {}

  std::vector<int32_t> Encode(std::string_view text) const override { return bpe_.Encode(text, context_length_); }
  int32_t id_limit() const override {
    return std::max({static_cast<int32_t>(bpe_.vocab_size()), bpe_.sot_id() + 1, bpe_.eot_id() + 1});
  }
  bool pads() const override { return false; }

 private:
  Tokenizer bpe_;
  int context_length_;
};

}  // namespace

Result<std::unique_ptr<TextTokenizer>> LoadTokenizer(const ModelFiles& files, int context_length) {
  if (context_length < 2) {
    return Status::InvalidArgument(files.dir + ": a text context of " + std::to_string(context_length) +
                                   " tokens cannot hold a text");
  }
  if (files.tokenizer == TokenizerKind::kClipBpe) {
    ASSIGN_OR_RETURN(Tokenizer bpe, Tokenizer::Load(files.vocab_json, files.merges_txt));
    return std::unique_ptr<TextTokenizer>(std::make_unique<ClipBpe>(std::move(bpe), context_length));
  }
  return LoadSentencePieceTokenizer(files, context_length);
}

}  // namespace imgsearch::model
