// Text-only towers over BERT-style post-LN transformers (text_model.h): sentence-transformers'
// DistilBERT + mean pooling + Dense, and M-CLIP's XLM-RoBERTa + mean pooling + LinearTransformation,
// as their upstream code computes them:
//   DistilBERT:  x = LayerNorm(word[id] + position[t]), eps 1e-12;
//   XLM-RoBERTa: x = LayerNorm(word[id] + position[2 + t] + token_type[0]), eps from config.json;
//   then post-LN blocks (GELU), the mean over the tokens ([CLS]/<s> and [SEP]/</s> included), the
//   projection. A text is never padded: texts of one length are batched together, so no attention
//   mask is needed.
#include <algorithm>
#include <cmath>
#include <mutex>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "imgsearch/text_model.h"
#include "kernels/cpu.h"
#include "kernels/ops.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/model_files.h"
#include "model/text_tokenizer.h"
#include "model/transformer.h"
#include "model/weights.h"

namespace imgsearch {

namespace {

using model::Activation;
using model::BlockNames;
using model::BlockWeights;
using model::BoolOr;
using model::CheckpointFile;
using model::LayerNormWeights;
using model::LinearWeights;
using model::ParseActivation;
using model::PositiveInt;
using model::ReadJsonFile;
using model::ReadJsonObject;
using model::RequireFile;
using model::StringOr;
using model::TensorStore;
using model::TowerConfig;
using model::WeightsIn;

enum class Base { kDistilBert, kXlmRoberta };

// Tokens one forward pass holds at most (64 queries of 128 tokens).
constexpr size_t kMaxTokensPerPass = 8192;

constexpr BlockNames kDistilBertBlockNames = {"sa_layer_norm",   "attention.q_lin",   "attention.k_lin",
                                              "attention.v_lin", "attention.out_lin", "output_layer_norm",
                                              "ffn.lin1",        "ffn.lin2"};
constexpr BlockNames kBertBlockNames = {
    "attention.output.LayerNorm", "attention.self.query", "attention.self.key", "attention.self.value",
    "attention.output.dense",     "output.LayerNorm",     "intermediate.dense", "output.dense"};

struct TowerSpec {
  Base base = Base::kDistilBert;
  std::string prefix;  // of the transformer's tensors in the checkpoint
  TowerConfig tower;
  int vocab_size = 0;
  int position_offset = 0;  // XLM-RoBERTa's positions start after the padding index
  int projection_in = 0, projection_out = 0;
  bool projection_bias = false;
  bool projection_tanh = false;  // sentence-transformers' Dense activation: Identity or Tanh
};

// sentence-transformers: modules.json names Transformer → Pooling (mean) → Dense; config.json is
// DistilBERT's.
Status ResolveSentenceTransformers(const std::string& dir, model::ModelFiles* files, TowerSpec* spec,
                                   std::string* dense_dir) {
  ASSIGN_OR_RETURN(nlohmann::json modules, ReadJsonFile(dir + "/modules.json"));
  if (!modules.is_array()) return Status::Corruption(dir + "/modules.json: expected a list of modules");
  std::vector<std::string> types;
  std::string pooling_dir;
  for (const auto& m : modules) {
    if (!m.is_object() || !m.contains("type") || !m["type"].is_string()) {
      return Status::Corruption(dir + "/modules.json: a module without a type");
    }
    const std::string type = m["type"];
    const std::string path = StringOr(m, "path", "");
    if (path.find("..") != std::string::npos) return Status::Corruption(dir + "/modules.json: bad path " + path);
    if (type.ends_with(".Transformer")) {
      types.push_back("Transformer");
    } else if (type.ends_with(".Pooling")) {
      types.push_back("Pooling");
      pooling_dir = dir + "/" + path;
    } else if (type.ends_with(".Dense")) {
      types.push_back("Dense");
      if (!dense_dir->empty()) return Status::Unsupported(dir + "/modules.json: more than one Dense layer");
      *dense_dir = dir + "/" + path;
    } else if (type.ends_with(".Normalize")) {
      types.push_back("Normalize");  // imgsearch normalises every embedding anyway
    } else {
      return Status::Unsupported(dir + "/modules.json: module " + type +
                                 " (supported: Transformer, Pooling, Dense, Normalize)");
    }
  }
  if (types.size() < 2 || types[0] != "Transformer" || types[1] != "Pooling") {
    return Status::Unsupported(dir + "/modules.json: expected a Transformer then a Pooling module");
  }
  ASSIGN_OR_RETURN(nlohmann::json pooling, ReadJsonFile(pooling_dir + "/config.json"));
  for (const char* mode : {"pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                           "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"}) {
    if (BoolOr(pooling, mode, false)) {
      return Status::Unsupported(pooling_dir + "/config.json: " + mode +
                                 " (imgsearch pools by the mean of the tokens)");
    }
  }
  if (!BoolOr(pooling, "pooling_mode_mean_tokens", false)) {
    return Status::Unsupported(pooling_dir + "/config.json: pooling_mode_mean_tokens is not set");
  }

  files->config_json = dir + "/config.json";
  ASSIGN_OR_RETURN(nlohmann::json config, ReadJsonFile(files->config_json));
  const std::string type = StringOr(config, "model_type", "");
  if (type != "distilbert") {
    return Status::Unsupported(files->config_json + ": model_type \"" + type +
                               "\" under sentence-transformers (supported: distilbert)");
  }
  if (BoolOr(config, "sinusoidal_pos_embds", false)) {
    return Status::Unsupported(files->config_json + ": sinusoidal position embeddings");
  }
  spec->base = Base::kDistilBert;
  ASSIGN_OR_RETURN(spec->tower.n_head, PositiveInt(config, "n_heads", files->config_json));
  ASSIGN_OR_RETURN(spec->tower.activation,
                   ParseActivation(StringOr(config, "activation", "gelu"), files->config_json, "activation"));
  spec->tower.layer_norm_eps = 1e-12f;  // DistilBERT's, fixed in its code

  files->tokenizer = model::TokenizerKind::kBertWordPiece;
  files->vocab_txt = dir + "/vocab.txt";
  RETURN_IF_ERROR(RequireFile(files->vocab_txt));
  if (FileExists(dir + "/tokenizer_config.json")) files->tokenizer_config = dir + "/tokenizer_config.json";
  spec->tower.n_positions = 512;
  if (FileExists(dir + "/sentence_bert_config.json")) {
    ASSIGN_OR_RETURN(nlohmann::json st, ReadJsonFile(dir + "/sentence_bert_config.json"));
    if (st.is_object()) {
      files->lower_case_text = BoolOr(st, "do_lower_case", false);
      if (st.contains("max_seq_length") && st["max_seq_length"].is_number_integer()) {
        spec->tower.n_positions = std::max(2, st["max_seq_length"].get<int>());
      }
    }
  }
  return Status::Ok();
}

// M-CLIP: config.json { model_type "M-CLIP", modelBase, numDims, transformerDimensions }; the
// XLM-RoBERTa base's config.json is read from the folder modelBase names, when there is one.
Status ResolveMclip(const std::string& dir, const nlohmann::json& config, model::ModelFiles* files, TowerSpec* spec) {
  spec->base = Base::kXlmRoberta;
  spec->prefix = "transformer.";
  ASSIGN_OR_RETURN(spec->projection_out, PositiveInt(config, "numDims", files->config_json));
  spec->projection_bias = true;
  spec->tower.layer_norm_eps = 1e-5f;
  spec->tower.activation = Activation::kGelu;
  spec->tower.n_head = 0;  // from the base's config.json, else width / 64 (XLM-R base and large)
  const std::string base = StringOr(config, "modelBase", "");
  const std::string base_config = dir + "/" + base + "/config.json";
  if (!base.empty() && base.find("..") == std::string::npos && FileExists(base_config)) {
    ASSIGN_OR_RETURN(nlohmann::json b, ReadJsonFile(base_config));
    if (b.is_object()) {
      ASSIGN_OR_RETURN(spec->tower.n_head, PositiveInt(b, "num_attention_heads", base_config));
      if (b.contains("layer_norm_eps") && b["layer_norm_eps"].is_number()) {
        spec->tower.layer_norm_eps = b["layer_norm_eps"].get<float>();
        if (!(spec->tower.layer_norm_eps > 0)) {
          return Status::InvalidArgument(base_config + ": layer_norm_eps must be a positive number");
        }
      }
      ASSIGN_OR_RETURN(spec->tower.activation,
                       ParseActivation(StringOr(b, "hidden_act", "gelu"), base_config, "hidden_act"));
      const std::string type = StringOr(b, "model_type", "xlm-roberta");
      if (type != "xlm-roberta" && type != "roberta") {
        return Status::Unsupported(base_config + ": model_type \"" + type + "\" (supported: xlm-roberta)");
      }
    }
  }
  files->tokenizer = model::TokenizerKind::kXlmrUnigram;
  files->sentencepiece = dir + "/sentencepiece.bpe.model";
  RETURN_IF_ERROR(RequireFile(files->sentencepiece));
  if (FileExists(dir + "/tokenizer_config.json")) files->tokenizer_config = dir + "/tokenizer_config.json";
  return Status::Ok();
}

struct TowerWeights {
  const float* word = nullptr;
  const float* position = nullptr;
  const float* token_type = nullptr;  // XLM-RoBERTa: row 0
  LayerNormWeights embedding_ln;
  std::vector<BlockWeights> blocks;
  LinearWeights projection;
};

// Shapes from the checkpoint; the rest of `spec` from the configs.
Status DeriveShapes(const CheckpointFile& st, TowerSpec* spec) {
  const std::string& p = spec->prefix;
  const auto* word = st.Find(p + "embeddings.word_embeddings.weight");
  const auto* position = st.Find(p + "embeddings.position_embeddings.weight");
  if (word == nullptr || position == nullptr || word->shape.size() != 2 || position->shape.size() != 2) {
    return Status::NotFound(st.path() + ": missing tensor " + p + "embeddings.word_embeddings.weight or " + p +
                            "embeddings.position_embeddings.weight");
  }
  spec->vocab_size = static_cast<int>(word->shape[0]);
  spec->tower.width = static_cast<int>(word->shape[1]);
  const int n_positions = static_cast<int>(position->shape[0]);
  const std::string layers = p + (spec->base == Base::kDistilBert ? "transformer.layer." : "encoder.layer.");
  const std::string fc1 = spec->base == Base::kDistilBert ? ".ffn.lin1.weight" : ".intermediate.dense.weight";
  const auto* mlp = st.Find(layers + "0" + fc1);
  if (mlp == nullptr || mlp->shape.size() != 2)
    return Status::NotFound(st.path() + ": missing tensor " + layers + "0" + fc1);
  spec->tower.mlp_width = static_cast<int>(mlp->shape[0]);
  int n_layers = 0;
  while (st.Find(layers + std::to_string(n_layers) + fc1) != nullptr) ++n_layers;
  spec->tower.n_layers = n_layers;
  if (spec->tower.n_head == 0) spec->tower.n_head = std::max(1, spec->tower.width / 64);
  if (spec->tower.width % spec->tower.n_head != 0) {
    return Status::InvalidArgument(st.path() + ": width " + std::to_string(spec->tower.width) +
                                   " is not divisible by " + std::to_string(spec->tower.n_head) + " heads");
  }
  if (spec->base == Base::kXlmRoberta) {
    spec->position_offset = 2;  // padding index 1, positions from 2
  }
  // The positions a text may use: at most the table's, and sentence-transformers' max_seq_length.
  spec->tower.n_positions = std::min(spec->tower.n_positions > 0 ? spec->tower.n_positions : n_positions,
                                     n_positions - spec->position_offset);
  if (spec->tower.n_positions < 2) return Status::InvalidArgument(st.path() + ": too few position embeddings");
  spec->tower.post_ln = true;
  spec->projection_in = spec->tower.width;
  return Status::Ok();
}

}  // namespace

struct TextModel::Impl {
  TowerSpec spec;
  std::unique_ptr<TensorStore> store;
  std::unique_ptr<TensorStore> dense_store;  // sentence-transformers' 2_Dense/
  TowerWeights w;
  std::unique_ptr<model::TextTokenizer> tokenizer;
  TextModelInfo info;
  std::once_flag ready;  // the blocks' weights, readied on the first query (TensorStore::Prepare)

  Status PrepareOnce() {
    return model::ReadyOnce(
        ready, [this] { store->Prepare(w.blocks, model::WeightForm::kFp32); }, "the text model");
  }

  Result<TowerWeights> LoadWeights() {
    TowerWeights t;
    const TowerSpec& s = spec;
    const std::string& p = s.prefix;
    const int width = s.tower.width;
    ASSIGN_OR_RETURN(t.word, store->Get(p + "embeddings.word_embeddings.weight", {s.vocab_size, width}));
    const int table = static_cast<int>(store->file().Find(p + "embeddings.position_embeddings.weight")->shape[0]);
    ASSIGN_OR_RETURN(t.position, store->Get(p + "embeddings.position_embeddings.weight", {table, width}));
    if (s.base == Base::kXlmRoberta) {
      const auto* types = store->file().Find(p + "embeddings.token_type_embeddings.weight");
      if (types == nullptr || types->shape.size() != 2 || types->shape[0] < 1) {
        return Status::NotFound(store->file().path() + ": missing tensor " + p +
                                "embeddings.token_type_embeddings.weight");
      }
      ASSIGN_OR_RETURN(t.token_type,
                       store->Get(p + "embeddings.token_type_embeddings.weight", {types->shape[0], width}));
    }
    ASSIGN_OR_RETURN(t.embedding_ln, store->Norm(p + "embeddings.LayerNorm", width));
    const bool distil = s.base == Base::kDistilBert;
    for (int i = 0; i < s.tower.n_layers; ++i) {
      const std::string prefix = p + (distil ? "transformer.layer." : "encoder.layer.") + std::to_string(i);
      ASSIGN_OR_RETURN(BlockWeights b, store->Block(prefix, s.tower, distil ? kDistilBertBlockNames : kBertBlockNames));
      t.blocks.push_back(b);
    }
    if (distil) {
      TensorStore* dense = dense_store ? dense_store.get() : nullptr;
      if (dense == nullptr) {
        t.projection = {};  // no Dense layer: the pooled state is the embedding
      } else {
        ASSIGN_OR_RETURN(t.projection, dense->Linear("linear", s.projection_in, s.projection_out, s.projection_bias));
      }
    } else {
      ASSIGN_OR_RETURN(t.projection, store->Linear("LinearTransformation", s.projection_in, s.projection_out, true));
    }
    return t;
  }

  // Texts of one length, as one batch.
  void EncodeGroup(std::span<const std::vector<int32_t>> seqs, std::span<const int> group, float* out) const {
    const TowerConfig& c = spec.tower;
    const int width = c.width;
    const int n = static_cast<int>(group.size());
    const int len = static_cast<int>(seqs[group[0]].size());
    std::vector<float> x(static_cast<size_t>(n) * len * width);
    for (int b = 0; b < n; ++b) {
      const std::vector<int32_t>& ids = seqs[group[b]];
      for (int t = 0; t < len; ++t) {
        const float* tok = w.word + int64_t{ids[t]} * width;
        const float* pos = w.position + int64_t{t + spec.position_offset} * width;
        float* row = x.data() + (int64_t{b} * len + t) * width;
        for (int i = 0; i < width; ++i) row[i] = tok[i] + pos[i] + (w.token_type ? w.token_type[i] : 0.0f);
      }
    }
    kernels::LayerNorm(x.data(), w.embedding_ln.gamma, w.embedding_ln.beta, x.data(), n * len, width, c.layer_norm_eps);
    model::BlockScratch scratch;
    for (const BlockWeights& block : w.blocks) {
      model::TransformerBlock(block, c, x.data(), n, len, /*causal=*/false, &scratch);
    }
    std::vector<float> pooled(static_cast<size_t>(n) * width, 0.0f);
    for (int b = 0; b < n; ++b) {
      float* dst = pooled.data() + int64_t{b} * width;
      for (int t = 0; t < len; ++t) {
        const float* row = x.data() + (int64_t{b} * len + t) * width;
        for (int i = 0; i < width; ++i) dst[i] += row[i];
      }
      for (int i = 0; i < width; ++i) dst[i] /= static_cast<float>(len);
    }
    const int dim = info.embedding_dim;
    std::vector<float> projected(static_cast<size_t>(n) * dim);
    if (w.projection.weight != nullptr || w.projection.weight_bf16 != nullptr) {
      model::ApplyLinear(w.projection, pooled.data(), n, projected.data());
      if (spec.projection_tanh) {
        for (float& v : projected) v = std::tanh(v);
      }
    } else {
      projected = pooled;
    }
    for (int b = 0; b < n; ++b) {
      float* dst = out + int64_t{group[b]} * dim;
      std::copy_n(projected.data() + int64_t{b} * dim, dim, dst);
      kernels::L2Normalize(dst, dim);
    }
  }
};

TextModel::TextModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TextModel::~TextModel() = default;

bool TextModel::LooksLikeTextModel(const std::string& dir) {
  if (FileExists(dir + "/modules.json") && FileExists(dir + "/vocab.txt")) return true;
  auto config = ReadJsonFile(dir + "/config.json");
  return config.ok() && StringOr(*config, "model_type", "") == "M-CLIP";
}

Result<std::unique_ptr<TextModel>> TextModel::Load(const std::string& dir_in, const ModelOptions& options) {
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (!FileExists(dir)) return Status::NotFound("model directory " + dir + " does not exist");
  auto impl = std::make_unique<Impl>();
  TowerSpec& spec = impl->spec;
  model::ModelFiles files;
  files.dir = dir;
  std::string dense_dir;
  if (FileExists(dir + "/modules.json")) {
    RETURN_IF_ERROR(ResolveSentenceTransformers(dir, &files, &spec, &dense_dir));
    impl->info.family = "sentence-transformers";
  } else {
    files.config_json = dir + "/config.json";
    RETURN_IF_ERROR(RequireFile(files.config_json));
    ASSIGN_OR_RETURN(nlohmann::json config, ReadJsonFile(files.config_json));
    const std::string type = StringOr(config, "model_type", "");
    if (type != "M-CLIP") {
      return Status::Unsupported(dir +
                                 " is not a text model imgsearch runs (a sentence-transformers folder with "
                                 "modules.json, or an M-CLIP folder whose config.json says model_type "
                                 "\"M-CLIP\"; found model_type \"" +
                                 type + "\")");
    }
    RETURN_IF_ERROR(ResolveMclip(dir, config, &files, &spec));
    impl->info.family = "m-clip";
  }
  ASSIGN_OR_RETURN(files.weights, WeightsIn(dir));
  ASSIGN_OR_RETURN(CheckpointFile st, CheckpointFile::Open(files.weights));
  const uint64_t weights_bytes = st.file_size();
  impl->info.fingerprint = st.Fingerprint();
  RETURN_IF_ERROR(DeriveShapes(st, &spec));
  if (!dense_dir.empty()) {
    ASSIGN_OR_RETURN(nlohmann::json dense, ReadJsonObject(dense_dir + "/config.json"));
    ASSIGN_OR_RETURN(const int in, PositiveInt(dense, "in_features", dense_dir + "/config.json"));
    ASSIGN_OR_RETURN(spec.projection_out, PositiveInt(dense, "out_features", dense_dir + "/config.json"));
    if (in != spec.tower.width) {
      return Status::InvalidArgument(dense_dir + "/config.json: in_features " + std::to_string(in) +
                                     " differs from the transformer's width " + std::to_string(spec.tower.width));
    }
    spec.projection_bias = BoolOr(dense, "bias", true);
    const std::string act = StringOr(dense, "activation_function", "torch.nn.modules.activation.Tanh");
    if (act.ends_with(".Tanh")) {
      spec.projection_tanh = true;
    } else if (!act.ends_with(".Identity")) {
      return Status::Unsupported(dense_dir + "/config.json: activation_function " + act +
                                 " (supported: Tanh, Identity)");
    }
    ASSIGN_OR_RETURN(std::string dense_weights, WeightsIn(dense_dir));
    ASSIGN_OR_RETURN(CheckpointFile dense_st, CheckpointFile::Open(dense_weights));
    impl->dense_store = std::make_unique<TensorStore>(std::move(dense_st));
  } else if (spec.base == Base::kDistilBert) {
    spec.projection_out = spec.tower.width;
  }
  impl->store = std::make_unique<TensorStore>(std::move(st));
  ASSIGN_OR_RETURN(impl->w, impl->LoadWeights());
  ASSIGN_OR_RETURN(impl->tokenizer, model::LoadTokenizer(files, spec.tower.n_positions));
  if (impl->tokenizer->id_limit() > spec.vocab_size) {
    return Status::InvalidArgument(dir + ": the tokenizer's ids reach " +
                                   std::to_string(impl->tokenizer->id_limit() - 1) + " but the word embedding has " +
                                   std::to_string(spec.vocab_size) + " rows");
  }
  if (options.n_threads > 0) kernels::SetNumThreads(options.n_threads);  // else as the image model set it

  TextModelInfo& info = impl->info;
  info.base = spec.base == Base::kDistilBert ? "distilbert" : "xlm-roberta";
  info.tokenizer = model::TokenizerName(files.tokenizer);
  info.dir = dir;
  info.source = model::ModelSource(dir);
  info.weights_path = files.weights;
  info.dtype = impl->store->dtype_name();
  info.n_params = impl->store->n_params() + (impl->dense_store ? impl->dense_store->n_params() : 0);
  info.tower = {spec.tower.width,
                spec.tower.n_layers,
                spec.tower.n_head,
                spec.tower.mlp_width,
                spec.tower.n_positions,
                spec.tower.layer_norm_eps,
                model::ActivationName(spec.tower.activation)};
  info.vocab_size = spec.vocab_size;
  info.max_tokens = spec.tower.n_positions;
  info.embedding_dim = spec.projection_out;
  info.weights_bytes = weights_bytes;
  return std::unique_ptr<TextModel>(new TextModel(std::move(impl)));
}

const TextModelInfo& TextModel::info() const { return impl_->info; }
int TextModel::embedding_dim() const { return impl_->info.embedding_dim; }

std::vector<int32_t> TextModel::Tokenize(std::string_view text) const { return impl_->tokenizer->Encode(text); }

Status TextModel::EncodeTexts(std::span<const std::string> texts, float* out) const {
  std::vector<std::vector<int32_t>> seqs;
  seqs.reserve(texts.size());
  for (const std::string& text : texts) {
    seqs.push_back(Tokenize(text));
    for (int32_t id : seqs.back()) {
      if (id < 0 || id >= impl_->spec.vocab_size) {
        return Status::InvalidArgument("token id " + std::to_string(id) + " is outside the vocabulary of " +
                                       std::to_string(impl_->spec.vocab_size));
      }
    }
  }
  std::vector<int> order(seqs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return seqs[a].size() < seqs[b].size(); });
  RETURN_IF_ERROR(impl_->PrepareOnce());
  for (size_t begin = 0; begin < order.size();) {
    // One length per pass, and at most kMaxTokensPerPass tokens: the activations' memory is bounded
    // whatever the number of concurrent queries.
    const size_t len = seqs[order[begin]].size();
    const size_t max_texts = std::max<size_t>(1, kMaxTokensPerPass / len);
    size_t end = begin + 1;
    while (end < order.size() && end - begin < max_texts && seqs[order[end]].size() == len) ++end;
    impl_->EncodeGroup(seqs, std::span<const int>(order).subspan(begin, end - begin), out);
    begin = end;
  }
  return Status::Ok();
}

}  // namespace imgsearch
