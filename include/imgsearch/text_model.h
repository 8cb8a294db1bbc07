// Text towers trained to map text into an image model's embedding space: queries in 50+ languages
// against a collection embedded by that image model. Two layouts, as their authors publish them:
//   sentence-transformers (`sentence-transformers/clip-ViT-B-32-multilingual-v1`): DistilBERT,
//     mean pooling, a Dense layer; into CLIP ViT-B/32's space;
//   M-CLIP (`M-CLIP/XLM-Roberta-Large-Vit-B-32` and siblings): XLM-RoBERTa, mean pooling,
//     `LinearTransformation`; into the space of the CLIP model its name gives.
//
//   ASSIGN_OR_RETURN(auto text, imgsearch::TextModel::Load("hub/clip-ViT-B-32-multilingual-v1"));
//   std::vector<float> query(text->embedding_dim());
//   RETURN_IF_ERROR(text->EncodeTexts({"ein rotes Auto im Schnee"}, query.data()));
//
// Embeddings are L2-normalised. A loaded model is immutable and may be used from several threads.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "imgsearch/clip.h"
#include "imgsearch/status.h"

namespace imgsearch {

struct TextModelInfo {
  std::string family;     // "sentence-transformers" or "m-clip"
  std::string base;       // the transformer: "distilbert" or "xlm-roberta"
  std::string tokenizer;  // e.g. "BERT WordPiece"
  std::string dir;
  std::string source;  // the hub name it was pulled as, else the folder's absolute path
  std::string weights_path;
  uint64_t weights_bytes = 0;
  std::string dtype;
  int64_t n_params = 0;
  TowerInfo tower;
  int vocab_size = 0;
  int max_tokens = 0;  // longer texts are cut (their ending is dropped)
  int embedding_dim = 0;
  std::string fingerprint;
};

class TextModel {
 public:
  // Loads a sentence-transformers folder (modules.json, config.json, weights, vocab.txt,
  // 1_Pooling/, 2_Dense/) or an M-CLIP folder (config.json with model_type "M-CLIP", weights,
  // sentencepiece.bpe.model). Weights are model.safetensors or pytorch_model.bin.
  static Result<std::unique_ptr<TextModel>> Load(const std::string& dir, const ModelOptions& options = {});

  // True when `dir` looks like a text-only model (so an image model's loader can say so).
  static bool LooksLikeTextModel(const std::string& dir);

  ~TextModel();
  TextModel(const TextModel&) = delete;
  TextModel& operator=(const TextModel&) = delete;

  const TextModelInfo& info() const;
  int embedding_dim() const;

  // The ids the transformer takes: [CLS] … [SEP] or <s> … </s>.
  std::vector<int32_t> Tokenize(std::string_view text) const;

  // Writes texts.size() rows of embedding_dim() floats to `out`, L2-normalised.
  Status EncodeTexts(std::span<const std::string> texts, float* out) const;

 private:
  struct Impl;
  explicit TextModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace imgsearch
