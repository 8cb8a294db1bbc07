#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "imgsearch/clip.h"
#include "imgsearch/hub.h"
#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "model/config.h"
#include "model/encoders.h"
#include "model/text_tokenizer.h"
#include "model/weights.h"

namespace imgsearch {

namespace {

// Images per forward pass: bounds the activations' memory whatever batch the caller hands in.
constexpr int kMaxImagesPerPass = 32;

TowerInfo DescribeTower(const model::TowerConfig& t) {
  TowerInfo info;
  info.width = t.width;
  info.n_layers = t.n_layers;
  info.n_head = t.n_head;
  info.mlp_width = t.mlp_width;
  info.n_positions = t.n_positions;
  info.layer_norm_eps = t.layer_norm_eps;
  info.activation = model::ActivationName(t.activation);
  return info;
}

}  // namespace

double MeasureGemmGflops(int m, int k, int n, double min_seconds) {
  std::vector<float> x(static_cast<size_t>(m) * k, 0.5f), w(static_cast<size_t>(n) * k, 0.25f);
  std::vector<float> y(static_cast<size_t>(m) * n);
  // The weights as the encoders hold them: packed where that pays.
  const size_t packed_bytes = kernels::PackedWeightBytes(kernels::WeightType::kF32, k, n);
  std::vector<float> packed((packed_bytes + sizeof(float) - 1) / sizeof(float));
  if (packed_bytes > 0) kernels::PackWeights(kernels::WeightType::kF32, w.data(), k, n, packed.data());
  const float* weights = packed_bytes > 0 ? packed.data() : w.data();
  const kernels::Layout layout = packed_bytes > 0 ? kernels::Layout::kPacked : kernels::Layout::kRows;
  kernels::Linear(x.data(), weights, nullptr, y.data(), m, k, n, layout);  // warm-up: JIT and caches
  const auto start = std::chrono::steady_clock::now();
  int reps = 0;
  double elapsed = 0;
  do {
    kernels::Linear(x.data(), weights, nullptr, y.data(), m, k, n, layout);
    ++reps;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < min_seconds);
  return 2.0 * m * k * n * reps / elapsed / 1e9;
}

double VisionFlopsPerImage(const ModelInfo& info) {
  const double w = info.vision.width;
  // Patches (a remainder of the side is left out; NaFlex: the most an image has) + a class token.
  const double grid = info.image_size / info.patch_size;
  const double n_patches = info.max_patches > 0 ? info.max_patches : grid * grid;
  const double t = n_patches + (info.family == "clip" ? 1 : 0);
  const double patch = 2.0 * n_patches * 3 * info.patch_size * info.patch_size * w;
  const double per_layer = 2.0 * t * w * 3 * w                         // q, k, v
                           + 2.0 * 2 * t * t * w                       // scores and weighted sum
                           + 2.0 * t * w * w                           // output projection
                           + 2.0 * 2 * t * w * info.vision.mlp_width;  // MLP
  return patch + info.vision.n_layers * per_layer + 2.0 * w * info.embedding_dim;
}

Result<Precision> ParsePrecision(std::string_view name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16") return Precision::kBf16;
  if (name == "auto") return Precision::kAuto;
  if (name == "int8") return Precision::kInt8;
  return Status::InvalidArgument("unknown precision \"" + std::string(name) + "\" (expected fp32, bf16, int8 or auto)");
}

struct ClipModel::Impl {
  model::ModelConfig config;
  std::unique_ptr<model::ModelWeights> weights;
  std::unique_ptr<model::TextTokenizer> tokenizer;
  Preprocessing preprocessing;
  ModelInfo info;
};

ClipModel::ClipModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ClipModel::~ClipModel() = default;

Result<std::unique_ptr<ClipModel>> ClipModel::Load(const std::string& dir, const ModelOptions& options) {
  ASSIGN_OR_RETURN(model::ModelFiles files, model::ResolveModelFiles(dir));
  ASSIGN_OR_RETURN(model::CheckpointFile st, model::CheckpointFile::Open(files.weights));
  auto impl = std::make_unique<Impl>();
  ASSIGN_OR_RETURN(impl->config, model::DeriveConfig(st, files));
  ASSIGN_OR_RETURN(impl->preprocessing, model::DerivePreprocessing(impl->config, files));
  const uint64_t weights_bytes = st.file_size();
  const std::string fingerprint = st.Fingerprint();
  // bf16 where asked for, or chosen by auto, and the CPU computes it natively.
  const bool native_bf16 = kernels::NativeBf16();
  if (options.precision == Precision::kBf16 && !native_bf16) {
    return Status::Unsupported(std::string("precision bf16 needs a CPU with AVX512_BF16 or AMX-BF16") +
                               (kernels::IsaLimitedToAvx2() ? " and kernels not capped to AVX2 (IMGSEARCH_MAX_ISA)"
                                                            : ", which this one lacks") +
                               ": use fp32 or auto");
  }
  const bool int8 = options.precision == Precision::kInt8;
  const bool bf16 = native_bf16 && (options.precision == Precision::kBf16 || options.precision == Precision::kAuto);
  impl->preprocessing.reduced_decode = options.precision == Precision::kAuto || int8;
  const model::WeightForm form = int8   ? model::WeightForm::kInt8
                                 : bf16 ? model::WeightForm::kBf16
                                        : model::WeightForm::kFp32;
  ASSIGN_OR_RETURN(impl->weights, model::ModelWeights::Load(std::move(st), impl->config, form));
  impl->config.logit_scale = impl->weights->logit_scale();
  impl->config.logit_bias = impl->weights->logit_bias();
  ASSIGN_OR_RETURN(impl->tokenizer, model::LoadTokenizer(files, impl->config.text.n_positions));
  if (impl->tokenizer->id_limit() > impl->config.vocab_size) {
    return Status::InvalidArgument(files.dir + ": the tokenizer's ids reach " +
                                   std::to_string(impl->tokenizer->id_limit() - 1) + " but the token embedding has " +
                                   std::to_string(impl->config.vocab_size) + " rows");
  }

  kernels::SetNumThreads(options.n_threads);

  const model::ModelConfig& c = impl->config;
  ModelInfo& info = impl->info;
  info.family = model::FamilyName(c.family);
  info.tokenizer = model::TokenizerName(files.tokenizer);
  info.dir = files.dir;
  info.source = model::ModelSource(files.dir);
  info.weights_path = files.weights;
  info.weights_bytes = weights_bytes;
  info.dtype = impl->weights->dtype_name();
  info.n_params = impl->weights->n_params();
  info.text = DescribeTower(c.text);
  info.vision = DescribeTower(c.vision);
  info.vocab_size = c.vocab_size;
  info.image_size = c.image_size;
  info.patch_size = c.patch_size;
  info.max_patches = impl->preprocessing.max_patches;
  info.embedding_dim = c.projection_dim;
  info.has_match_probability = c.family == model::Family::kSiglip;
  info.logit_scale = c.logit_scale;
  info.logit_bias = c.logit_bias;
  info.fingerprint = fingerprint;
  info.isa = kernels::DescribeIsa();
  info.precision = int8 ? "int8" : bf16 ? "bf16" : "fp32";
  info.activation_bits = int8 ? (kernels::Int8Levels() == 127 ? 8 : 7) : 0;
  spdlog::debug("loaded {}: {} params ({}), kernels {} {}, {} threads", files.dir, info.n_params, info.dtype, info.isa,
                info.precision, kernels::NumThreads());
  return std::unique_ptr<ClipModel>(new ClipModel(std::move(impl)));
}

const ModelInfo& ClipModel::info() const { return impl_->info; }
int ClipModel::embedding_dim() const { return impl_->config.projection_dim; }
int ClipModel::image_size() const { return impl_->config.image_size; }
int ClipModel::context_length() const { return impl_->config.text.n_positions; }

const Preprocessing& ClipModel::preprocessing() const { return impl_->preprocessing; }

float ClipModel::MatchProbability(float cosine) const {
  if (!impl_->info.has_match_probability) return cosine;
  const double logit = cosine * std::exp(static_cast<double>(impl_->config.logit_scale)) + impl_->config.logit_bias;
  return static_cast<float>(1.0 / (1.0 + std::exp(-logit)));
}

std::vector<int32_t> ClipModel::Tokenize(std::string_view text) const { return impl_->tokenizer->Encode(text); }

Status ClipModel::EncodeTokens(std::span<const std::vector<int32_t>> token_ids, float* out) const {
  std::vector<std::span<const int32_t>> seqs(token_ids.begin(), token_ids.end());
  ASSIGN_OR_RETURN(const model::TextWeights* weights, impl_->weights->text());
  return model::EncodeTextBatch(impl_->config, *weights, seqs, out);
}

Status ClipModel::EncodeTexts(std::span<const std::string> texts, float* out) const {
  std::vector<std::vector<int32_t>> ids;
  ids.reserve(texts.size());
  for (const std::string& text : texts) ids.push_back(Tokenize(text));
  return EncodeTokens(ids, out);
}

Status ClipModel::EncodeImages(const float* inputs, int n_images, float* out) const {
  if (n_images < 0) return Status::InvalidArgument("negative image count");
  const int64_t input_floats = impl_->preprocessing.input_floats();
  ASSIGN_OR_RETURN(const model::VisionWeights* weights, impl_->weights->vision());
  for (int begin = 0; begin < n_images; begin += kMaxImagesPerPass) {
    const int n = std::min(kMaxImagesPerPass, n_images - begin);
    RETURN_IF_ERROR(model::EncodeImageBatch(impl_->config, *weights, inputs + begin * input_floats, input_floats, n,
                                            out + int64_t{begin} * embedding_dim()));
  }
  return Status::Ok();
}

}  // namespace imgsearch
