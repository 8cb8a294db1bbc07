#include "model/text_tokenizer.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "model/tokenizer.h"

namespace imgsearch::model {

// In sentencepiece_tokenizer.cc and wordpiece_tokenizer.cc.
Result<std::unique_ptr<TextTokenizer>> LoadSentencePieceTokenizer(const ModelFiles& files, int context_length);
Result<std::unique_ptr<TextTokenizer>> LoadWordPieceTokenizer(const ModelFiles& files, int context_length);

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

Result<std::vector<AddedToken>> ReadAddedTokens(const nlohmann::json& j, const std::string& path) {
  std::vector<AddedToken> added;
  auto it = j.find("added_tokens_decoder");
  if (it == j.end() || !it->is_object()) return added;
  for (const auto& [key, value] : it->items()) {
    if (!value.is_object() || !value.contains("content") || !value["content"].is_string()) continue;
    AddedToken t;
    try {
      t.id = std::stoi(key);
    } catch (const std::exception&) {
      return Status::Corruption(path + ": added token id \"" + key + "\" is not a number");
    }
    if (t.id < 0 || t.id >= (1 << 24)) {
      return Status::Corruption(path + ": added token id " + key + " is out of range");
    }
    t.content = ToUtf32(value["content"].get<std::string>());
    t.lstrip = value.contains("lstrip") && value["lstrip"].is_boolean() && value["lstrip"].get<bool>();
    t.rstrip = value.contains("rstrip") && value["rstrip"].is_boolean() && value["rstrip"].get<bool>();
    if (!t.content.empty() && t.id >= 0) added.push_back(std::move(t));
  }
  std::stable_sort(added.begin(), added.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  return added;
}

Result<std::unique_ptr<TextTokenizer>> LoadTokenizer(const ModelFiles& files, int context_length) {
  if (context_length < 2) {
    return Status::InvalidArgument(files.dir + ": a text context of " + std::to_string(context_length) +
                                   " tokens cannot hold a text");
  }
  if (files.tokenizer == TokenizerKind::kClipBpe) {
    ASSIGN_OR_RETURN(Tokenizer bpe, Tokenizer::Load(files.vocab_json, files.merges_txt));
    return std::unique_ptr<TextTokenizer>(std::make_unique<ClipBpe>(std::move(bpe), context_length));
  }
  if (files.tokenizer == TokenizerKind::kBertWordPiece) return LoadWordPieceTokenizer(files, context_length);
  return LoadSentencePieceTokenizer(files, context_length);
}

}  // namespace imgsearch::model
