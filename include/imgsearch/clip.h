// The inference engine for contrastive image-text models, CLIP and SigLIP (SigLIP 2's fixed-resolution
// and NaFlex checkpoints included): tokenizer, text encoder and vision encoder behind one facade.
//
//   ASSIGN_OR_RETURN(auto model, imgsearch::ClipModel::Load("hub/clip-vit-base-patch32"));
//   std::vector<float> text(model->embedding_dim());
//   RETURN_IF_ERROR(model->EncodeTexts({"a red car in the snow"}, text.data()));
//
// Every embedding is L2-normalised. A loaded model is immutable: the Encode* methods may be called
// from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "imgsearch/image.h"
#include "imgsearch/status.h"

namespace imgsearch {

enum class Precision {
  kFp32,  // fp32 everywhere: matches the reference to ~1e-6 of cosine
  kBf16,  // bfloat16 weights and GEMM inputs, fp32 sums, LayerNorm, softmax and residuals; needs
          // native bf16 (AVX512_BF16 or AMX)
  kAuto,  // bf16 where the CPU has native bf16, fp32 elsewhere; JPEG and WebP decoded at reduced scale
  kInt8,  // the transformer blocks' weights in int8 (per output feature), activations quantised per
          // token as they enter each layer, int32 sums (VNNI where present); reduced decoding as auto.
          // Only when asked for: `imgsearch model check` tells how close it comes to fp32.
};

// Parses "fp32", "bf16", "int8" or "auto".
Result<Precision> ParsePrecision(std::string_view name);

struct ModelOptions {
  Precision precision = Precision::kFp32;
  int n_threads = 0;  // 0: all cores
};

struct TowerInfo {
  int width = 0;
  int n_layers = 0;
  int n_head = 0;
  int mlp_width = 0;
  int n_positions = 0;
  float layer_norm_eps = 0;
  std::string activation;  // "quick_gelu", "gelu" or "gelu_pytorch_tanh"
};

struct ModelInfo {
  std::string family;     // "clip" or "siglip"
  std::string tokenizer;  // e.g. "CLIP byte-level BPE", "Gemma SentencePiece (BPE)"
  std::string dir;        // the directory the files were read from
  // What finds this model again from any working directory (a collection records it): the hub
  // name it was pulled as, else the folder's absolute path.
  std::string source;
  std::string weights_path;  // model.safetensors
  uint64_t weights_bytes = 0;
  std::string dtype;  // of the checkpoint: F32, F16 or BF16
  int64_t n_params = 0;
  TowerInfo text;
  TowerInfo vision;
  int vocab_size = 0;
  int image_size = 0;  // pixels per side of the model's input (NaFlex: of the square its positions cover)
  int patch_size = 0;
  int max_patches = 0;  // SigLIP 2 NaFlex: patches per image at most, aspect ratio kept; 0 otherwise
  int embedding_dim = 0;
  bool has_match_probability = false;  // SigLIP: MatchProbability() is the model's own score
  float logit_scale = 0;               // SigLIP's, as stored (the score uses exp(logit_scale))
  float logit_bias = 0;
  std::string fingerprint;  // identifies the weights: a hash of the header, size and sampled data
  std::string isa;          // the instruction set the kernels use
  std::string precision;    // what the GEMMs compute in
  // int8: the bits activations are quantised to, 8 (AVX512_VNNI), or 7 where the CPU's int8 GEMM
  // adds pairs of products in 16 bits; 0 otherwise.
  int activation_bits = 0;
};

// Times the engine's fp32 GEMM on an m×k · k×n problem for at least `min_seconds` and returns the
// rate in GFLOPS: the ceiling the encoders are measured against.
double MeasureGemmGflops(int m, int k, int n, double min_seconds = 1.0);

// Floating-point operations to encode one image (multiply-adds counted as two).
double VisionFlopsPerImage(const ModelInfo& info);

class ClipModel {
 public:
  // Loads a Hugging Face CLIPModel directory (config.json, model.safetensors, vocab.json,
  // merges.txt), a sentence-transformers folder with the model in 0_CLIPModel/, or a SiglipModel
  // directory (config.json, model.safetensors, spiece.model or tokenizer.model, tokenizer_config.json,
  // preprocessor_config.json). config.json's model_type names the family.
  static Result<std::unique_ptr<ClipModel>> Load(const std::string& dir, const ModelOptions& options = {});

  ~ClipModel();
  ClipModel(const ClipModel&) = delete;
  ClipModel& operator=(const ClipModel&) = delete;

  const ModelInfo& info() const;
  int embedding_dim() const;
  int image_size() const;
  int context_length() const;

  // What the image processor of the model's family does before EncodeImages.
  const Preprocessing& preprocessing() const;

  // SigLIP's probability that a text matches an image, sigmoid(cosine · exp(logit_scale) +
  // logit_bias); for CLIP, which has no such score, the cosine itself.
  float MatchProbability(float cosine) const;

  // The ids the text tower takes: CLIP's [SOT] + BPE + [EOT] (at most context_length() long);
  // SigLIP's SentencePiece ids + EOS, padded to context_length().
  std::vector<int32_t> Tokenize(std::string_view text) const;

  // Writes texts.size() rows of embedding_dim() floats to `out`.
  Status EncodeTexts(std::span<const std::string> texts, float* out) const;
  Status EncodeTokens(std::span<const std::vector<int32_t>> token_ids, float* out) const;

  // `inputs` holds n_images images of preprocessing().input_floats() floats each, as image.h's
  // ResizeForModel and Normalize make them. Writes n_images rows of embedding_dim() floats to `out`.
  Status EncodeImages(const float* inputs, int n_images, float* out) const;

 private:
  struct Impl;
  explicit ClipModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace imgsearch
