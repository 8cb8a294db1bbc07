// The shape of a model: its family, read from config.json, and its sizes, derived from the
// checkpoint's tensor shapes with config.json supplying what shapes cannot tell (head counts,
// layer-norm epsilon, activation).
//
// Families share one transformer and differ in a few named places:
//   CLIP   (model_type "clip"):   class token, pre-LayerNorm, causal text pooled at EOT, projections.
//   SigLIP (model_type "siglip"): no class token, attention-pooling head on images, bidirectional
//          text over all 64 positions pooled at the last one through `head`; SigLIP 2's
//          fixed-resolution checkpoints are this family with a Gemma tokenizer; its NaFlex ones
//          (model_type "siglip2") too, with a Linear patch embedding over images of any aspect ratio
//          and position embeddings resized to each image's patch grid.
#pragma once

#include <array>
#include <string>

#include "imgsearch/image.h"
#include "imgsearch/status.h"
#include "kernels/ops.h"
#include "model/checkpoint.h"

namespace imgsearch::model {

enum class Family { kClip, kSiglip };

const char* FamilyName(Family family);

using Activation = kernels::Activation;

const char* ActivationName(Activation activation);

struct TowerConfig {
  int width = 0;
  int n_layers = 0;
  int n_head = 0;
  int mlp_width = 0;
  int n_positions = 0;  // text: context length; vision: patches (+ 1 with a class token)
  float layer_norm_eps = 1e-5f;
  Activation activation = Activation::kQuickGelu;
  // BERT-style blocks: x = ln1(x + attn(x)); x = ln2(x + mlp(x)). Otherwise pre-LN:
  // x += attn(ln1(x)); x += mlp(ln2(x)).
  bool post_ln = false;

  int head_dim() const { return width / n_head; }
};

// How text becomes token ids.
enum class TokenizerKind {
  kClipBpe,        // vocab.json + merges.txt
  kSiglipUnigram,  // spiece.model, SigLIP's canonicalisation, </s> appended and padded
  kGemmaBpe,       // tokenizer.model (byte-fallback BPE), <eos> appended, padded with <pad>
  kBertWordPiece,  // vocab.txt: [CLS] … [SEP] (DistilBERT, BERT)
  kXlmrUnigram,    // sentencepiece.bpe.model with fairseq's ids: <s> … </s> (XLM-RoBERTa)
};

const char* TokenizerName(TokenizerKind kind);

struct ModelConfig {
  Family family = Family::kClip;
  TowerConfig text;
  TowerConfig vision;
  int vocab_size = 0;
  int patch_size = 0;
  int image_size = 0;  // pixels per side
  int projection_dim = 0;
  // SigLIP's match probability: sigmoid(cosine · exp(logit_scale) + logit_bias).
  float logit_scale = 0;
  float logit_bias = 0;
  // SigLIP 2 NaFlex: patches are rows of p·p·3 values fed through a Linear layer, each image has its
  // own patch grid, and image_size is the side of the square the position embeddings cover.
  bool naflex = false;

  int grid() const { return image_size / patch_size; }
  bool class_token() const { return family == Family::kClip; }
};

// The files that make up a model. Accepts a Hugging Face CLIPModel or SiglipModel directory, or a
// sentence-transformers folder whose model lives in 0_CLIPModel/.
struct ModelFiles {
  std::string dir;  // the directory that holds the files
  Family family = Family::kClip;
  bool naflex = false;      // SigLIP 2 NaFlex (model_type "siglip2")
  std::string config_json;  // empty when absent (CLIP only: shapes say enough)
  std::string weights;      // model.safetensors, else pytorch_model.bin
  TokenizerKind tokenizer = TokenizerKind::kClipBpe;
  std::string vocab_json;           // CLIP BPE
  std::string merges_txt;           // CLIP BPE
  std::string sentencepiece;        // spiece.model, tokenizer.model or sentencepiece.bpe.model
  std::string vocab_txt;            // WordPiece
  bool lower_case_text = false;     // sentence-transformers' do_lower_case: text lower-cased first
  std::string tokenizer_config;     // tokenizer_config.json, empty when absent
  std::string preprocessor_config;  // preprocessor_config.json, empty when absent
};

Result<ModelFiles> ResolveModelFiles(const std::string& dir);

// What finds the model in `dir` again from any working directory (a collection records it): the hub
// name it was pulled as (its manifest), else the folder's absolute path.
std::string ModelSource(const std::string& dir);

// Derives the architecture from `weights` and config.json.
Result<ModelConfig> DeriveConfig(const CheckpointFile& weights, const ModelFiles& files);

// What the model's image processor does: CLIP's resize-and-crop, or SigLIP's straight resize with
// the filter, mean and std of preprocessor_config.json.
Result<Preprocessing> DerivePreprocessing(const ModelConfig& config, const ModelFiles& files);

}  // namespace imgsearch::model
