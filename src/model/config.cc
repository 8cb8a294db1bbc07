#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "imgsearch/hub.h"
#include "model/model_files.h"

namespace imgsearch::model {

namespace {

// Counts layers by the highest "<prefix>N." index present.
int CountLayers(const CheckpointFile& st, const std::string& prefix) {
  std::set<int> indices;
  for (const auto& [name, info] : st.tensors()) {
    if (name.rfind(prefix, 0) != 0) continue;
    const size_t begin = prefix.size();
    const size_t dot = name.find('.', begin);
    if (dot == std::string::npos || dot == begin) continue;
    try {
      indices.insert(std::stoi(name.substr(begin, dot - begin)));
    } catch (const std::exception&) {
      continue;
    }
  }
  return indices.empty() ? 0 : *indices.rbegin() + 1;
}

Result<std::vector<int64_t>> ShapeOf(const CheckpointFile& st, const std::string& name, size_t rank) {
  const TensorInfo* t = st.Find(name);
  if (t == nullptr) return Status::NotFound(st.path() + ": missing tensor " + name);
  if (t->shape.size() != rank) {
    return Status::InvalidArgument(st.path() + ": tensor " + name + " has rank " + std::to_string(t->shape.size()) +
                                   ", expected " + std::to_string(rank));
  }
  for (int64_t d : t->shape) {
    if (d <= 0 || d > (int64_t{1} << 24)) {
      return Status::InvalidArgument(st.path() + ": tensor " + name + " has an absurd dimension " + std::to_string(d));
    }
  }
  return t->shape;
}

Status ApplyTowerOverrides(const nlohmann::json& j, const std::string& path, const std::string& section,
                           bool read_vision_heads, TowerConfig* tower) {
  if (!j.is_object()) return Status::Ok();
  if (section == "text_config" || read_vision_heads) {
    if (auto it = j.find("num_attention_heads"); it != j.end() && !it->is_null()) {
      ASSIGN_OR_RETURN(tower->n_head, PositiveInt(j, "num_attention_heads", path, section + ".num_attention_heads"));
    }
  }
  if (auto it = j.find("layer_norm_eps"); it != j.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() <= 0) {
      return Status::InvalidArgument(path + ": " + section + ".layer_norm_eps must be a positive number");
    }
    tower->layer_norm_eps = it->get<float>();
  }
  if (auto it = j.find("hidden_act"); it != j.end() && !it->is_null()) {
    ASSIGN_OR_RETURN(tower->activation, ParseActivation(*it, path, section + ".hidden_act"));
  }
  return Status::Ok();
}

Status CheckHeads(const std::string& where, const TowerConfig& t) {
  if (t.n_head <= 0 || t.width % t.n_head != 0) {
    return Status::InvalidArgument(where + ": width " + std::to_string(t.width) + " is not divisible by " +
                                   std::to_string(t.n_head) + " heads");
  }
  return Status::Ok();
}

// The family config.json's model_type names; without config.json, CLIP (its shapes say the rest).
// Sets *naflex for SigLIP 2's NaFlex checkpoints.
Result<Family> DetectFamily(const std::string& config_json, bool* naflex) {
  if (config_json.empty()) return Family::kClip;
  ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonObject(config_json));
  const std::string type = StringOr(j, "model_type", "");
  if (type.empty() || type == "clip") return Family::kClip;
  if (type == "siglip") return Family::kSiglip;
  if (type == "siglip2") {
    *naflex = true;
    return Family::kSiglip;
  }
  if (type == "M-CLIP" || type == "distilbert" || type == "xlm-roberta" || type == "bert") {
    return Status::InvalidArgument(config_json + ": a text-only model (model_type \"" + type +
                                   "\"), not an image model: use it with --text-model beside the image model it "
                                   "was trained against");
  }
  return Status::Unsupported(config_json + ": model_type \"" + type +
                             "\" is not a family imgsearch runs (supported: clip, siglip, siglip2)");
}

// SigLIP ships spiece.model (SiglipTokenizer), SigLIP 2 tokenizer.model (GemmaTokenizer);
// tokenizer_config.json's tokenizer_class says which when both could apply.
Status ResolveSiglipTokenizer(ModelFiles* files) {
  std::string tokenizer_class;
  if (!files->tokenizer_config.empty()) {
    ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonObject(files->tokenizer_config));
    tokenizer_class = StringOr(j, "tokenizer_class", "");
  }
  const std::string spiece = files->dir + "/spiece.model";
  const std::string gemma = files->dir + "/tokenizer.model";
  if (tokenizer_class.rfind("Siglip", 0) == 0 || (tokenizer_class.empty() && FileExists(spiece))) {
    files->tokenizer = TokenizerKind::kSiglipUnigram;
    files->sentencepiece = spiece;
    return RequireFile(spiece, "SigLIP's SentencePiece tokenizer");
  }
  if (tokenizer_class.rfind("Gemma", 0) == 0 || (tokenizer_class.empty() && FileExists(gemma))) {
    files->tokenizer = TokenizerKind::kGemmaBpe;
    files->sentencepiece = gemma;
    return RequireFile(gemma, "SigLIP 2's Gemma SentencePiece tokenizer");
  }
  if (!tokenizer_class.empty()) {
    return Status::Unsupported(files->tokenizer_config + ": tokenizer_class \"" + tokenizer_class +
                               "\" is not one imgsearch runs for SigLIP (supported: SiglipTokenizer, GemmaTokenizer)");
  }
  return Status::NotFound("missing file " + spiece + " or " + gemma + " (the SigLIP model's tokenizer)");
}

}  // namespace

std::string ModelSource(const std::string& dir) {
  std::ifstream in(dir + "/" + kModelManifest);
  if (in) {
    const nlohmann::json manifest = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (manifest.is_object() && manifest.contains("name") && manifest["name"].is_string()) {
      return manifest["name"].get<std::string>();
    }
  }
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(dir, ec);
  return ec ? dir : absolute.lexically_normal().string();
}

const char* FamilyName(Family family) { return family == Family::kSiglip ? "siglip" : "clip"; }

const char* ActivationName(Activation activation) {
  switch (activation) {
    case Activation::kQuickGelu: return "quick_gelu";
    case Activation::kGelu: return "gelu";
    case Activation::kGeluTanh: return "gelu_pytorch_tanh";
  }
  return "?";
}

const char* TokenizerName(TokenizerKind kind) {
  switch (kind) {
    case TokenizerKind::kClipBpe: return "CLIP byte-level BPE";
    case TokenizerKind::kSiglipUnigram: return "SigLIP SentencePiece (unigram)";
    case TokenizerKind::kGemmaBpe: return "Gemma SentencePiece (BPE)";
    case TokenizerKind::kBertWordPiece: return "BERT WordPiece";
    case TokenizerKind::kXlmrUnigram: return "XLM-RoBERTa SentencePiece (unigram)";
  }
  return "?";
}

Result<ModelFiles> ResolveModelFiles(const std::string& dir_in) {
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (!FileExists(dir)) return Status::NotFound("model directory " + dir + " does not exist");
  if (!WeightsIn(dir).ok() && FileExists(dir + "/0_CLIPModel")) {
    dir += "/0_CLIPModel";  // sentence-transformers layout
  }
  if (FileExists(dir + "/modules.json") && FileExists(dir + "/vocab.txt")) {
    return Status::InvalidArgument(dir +
                                   " holds a sentence-transformers text model, not an image model: use it with "
                                   "--text-model beside the image model it was trained against");
  }
  ModelFiles files;
  files.dir = dir;
  files.config_json = dir + "/config.json";
  if (!FileExists(files.config_json)) files.config_json.clear();
  if (FileExists(dir + "/tokenizer_config.json")) files.tokenizer_config = dir + "/tokenizer_config.json";
  if (FileExists(dir + "/preprocessor_config.json")) files.preprocessor_config = dir + "/preprocessor_config.json";
  ASSIGN_OR_RETURN(files.family, DetectFamily(files.config_json, &files.naflex));
  ASSIGN_OR_RETURN(files.weights, WeightsIn(dir));
  if (files.family == Family::kSiglip) {
    if (files.config_json.empty()) return Status::NotFound("missing file " + dir + "/config.json");
    RETURN_IF_ERROR(ResolveSiglipTokenizer(&files));
    return files;
  }
  files.tokenizer = TokenizerKind::kClipBpe;
  files.vocab_json = dir + "/vocab.json";
  files.merges_txt = dir + "/merges.txt";
  for (const std::string* f : {&files.vocab_json, &files.merges_txt}) RETURN_IF_ERROR(RequireFile(*f));
  return files;
}

namespace {

// CLIP: a class token, patches + 1 positions; heads 64 wide unless config.json says otherwise for
// the text tower. The vision tower always has width // 64 heads: OpenAI's CLIP constructor computes
// that itself and ignores any setting, and the reference embeddings are made that way (real
// checkpoints agree: 768 → 12, 1024 → 16).
Status DeriveClip(const CheckpointFile& st, ModelConfig* c) {
  ASSIGN_OR_RETURN(auto tproj, ShapeOf(st, "text_projection.weight", 2));
  ASSIGN_OR_RETURN(auto cls, ShapeOf(st, "vision_model.embeddings.class_embedding", 1));
  c->projection_dim = static_cast<int>(tproj[0]);
  if (cls[0] != c->vision.width) {
    return Status::InvalidArgument(st.path() + ": tensor vision_model.embeddings.class_embedding has " +
                                   std::to_string(cls[0]) + " values for a tower " + std::to_string(c->vision.width) +
                                   " wide");
  }
  c->text.n_head = std::max(1, c->text.width / 64);
  c->vision.n_head = std::max(1, c->vision.width / 64);
  return Status::Ok();
}

// SigLIP: no class token; image features are the attention-pooling head's output (vision width),
// text features `text_model.head`'s; heads default to 12 as SiglipConfig's do, GELU (tanh) and
// LayerNorm eps 1e-6 likewise.
Status DeriveSiglip(const CheckpointFile& st, ModelConfig* c) {
  ASSIGN_OR_RETURN(auto head, ShapeOf(st, "text_model.head.weight", 2));
  ASSIGN_OR_RETURN(auto probe, ShapeOf(st, "vision_model.head.probe", 3));
  c->projection_dim = static_cast<int>(head[0]);
  if (probe[2] != c->vision.width) {
    return Status::InvalidArgument(st.path() + ": tensor vision_model.head.probe is " + std::to_string(probe[2]) +
                                   " wide for a tower " + std::to_string(c->vision.width) + " wide");
  }
  if (c->projection_dim != c->vision.width) {
    return Status::InvalidArgument(st.path() + ": text features of " + std::to_string(c->projection_dim) +
                                   " dimensions cannot be compared with image features of " +
                                   std::to_string(c->vision.width));
  }
  for (TowerConfig* t : {&c->text, &c->vision}) {
    t->n_head = 12;
    t->layer_norm_eps = 1e-6f;
    t->activation = Activation::kGeluTanh;
  }
  return Status::Ok();
}

}  // namespace

Result<ModelConfig> DeriveConfig(const CheckpointFile& st, const ModelFiles& files) {
  ModelConfig c;
  c.family = files.family;
  const bool clip = c.family == Family::kClip;
  ASSIGN_OR_RETURN(auto tok, ShapeOf(st, "text_model.embeddings.token_embedding.weight", 2));
  ASSIGN_OR_RETURN(auto tpos, ShapeOf(st, "text_model.embeddings.position_embedding.weight", 2));
  ASSIGN_OR_RETURN(auto tfc1, ShapeOf(st, "text_model.encoder.layers.0.mlp.fc1.weight", 2));
  c.vocab_size = static_cast<int>(tok[0]);
  c.text.width = static_cast<int>(tok[1]);
  c.text.n_positions = static_cast<int>(tpos[0]);
  c.text.mlp_width = static_cast<int>(tfc1[0]);
  c.text.n_layers = CountLayers(st, "text_model.encoder.layers.");

  // A convolution [width, 3, p, p]; NaFlex's Linear layer [width, p·p·3].
  c.naflex = files.naflex;
  const char* patch_name = "vision_model.embeddings.patch_embedding.weight";
  ASSIGN_OR_RETURN(auto patch, ShapeOf(st, patch_name, c.naflex ? 2 : 4));
  ASSIGN_OR_RETURN(auto vpos, ShapeOf(st, "vision_model.embeddings.position_embedding.weight", 2));
  ASSIGN_OR_RETURN(auto vfc1, ShapeOf(st, "vision_model.encoder.layers.0.mlp.fc1.weight", 2));
  c.vision.width = static_cast<int>(patch[0]);
  c.vision.n_positions = static_cast<int>(vpos[0]);
  c.vision.mlp_width = static_cast<int>(vfc1[0]);
  c.vision.n_layers = CountLayers(st, "vision_model.encoder.layers.");
  if (c.naflex) {
    c.patch_size = static_cast<int>(std::lround(std::sqrt(static_cast<double>(patch[1]) / 3)));
    if (3 * int64_t{c.patch_size} * c.patch_size != patch[1]) {
      return Status::InvalidArgument(st.path() + ": tensor " + patch_name + " takes " + std::to_string(patch[1]) +
                                     " values per patch, not 3 · patch² (NaFlex's [width, patch · patch · 3])");
    }
  } else {
    c.patch_size = static_cast<int>(patch[2]);
    if (patch[1] != 3 || patch[2] != patch[3]) {
      return Status::InvalidArgument(st.path() + ": tensor " + patch_name + " should be [width, 3, patch, patch]");
    }
  }
  const int n_patches = c.vision.n_positions - (clip ? 1 : 0);
  const int grid = static_cast<int>(std::lround(std::sqrt(static_cast<double>(std::max(n_patches, 0)))));
  if (grid == 0 || grid * grid != n_patches) {
    return Status::InvalidArgument(st.path() + ": tensor vision_model.embeddings.position_embedding.weight has " +
                                   std::to_string(c.vision.n_positions) + " rows, not a square grid" +
                                   (clip ? " plus one" : ""));
  }
  c.image_size = grid * c.patch_size;
  RETURN_IF_ERROR(clip ? DeriveClip(st, &c) : DeriveSiglip(st, &c));

  if (!files.config_json.empty()) {
    ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonObject(files.config_json));
    if (auto it = j.find("text_config"); it != j.end()) {
      RETURN_IF_ERROR(ApplyTowerOverrides(*it, files.config_json, "text_config", !clip, &c.text));
    }
    if (auto it = j.find("vision_config"); it != j.end()) {
      RETURN_IF_ERROR(ApplyTowerOverrides(*it, files.config_json, "vision_config", !clip, &c.vision));
      if (auto size = it->find("patch_size"); c.naflex && size != it->end() && *size != c.patch_size) {
        return Status::InvalidArgument(files.config_json + ": vision_config.patch_size " + size->dump() +
                                       " differs from the " + std::to_string(c.patch_size) +
                                       "-pixel patches the patch embedding takes");
      }
      // The input size may exceed grid · patch (so400m: 384 px, 27 patches of 14): the patch
      // convolution leaves the remainder out.
      if (auto size = it->find("image_size"); size != it->end() && size->is_number_integer()) {
        const int64_t px = size->get<int64_t>();
        if (px < c.patch_size || px > 8192 || px / c.patch_size != c.grid()) {
          return Status::InvalidArgument(files.config_json + ": vision_config.image_size " + std::to_string(px) +
                                         " does not make the " + std::to_string(c.grid()) + "×" +
                                         std::to_string(c.grid()) + " patches of " + std::to_string(c.patch_size) +
                                         " pixels the position embeddings hold");
        }
        c.image_size = static_cast<int>(px);
      }
    }
  }
  if (c.text.n_layers == 0 || c.vision.n_layers == 0) {
    return Status::InvalidArgument(st.path() + ": no transformer layers found");
  }
  RETURN_IF_ERROR(CheckHeads(st.path() + ": text tower", c.text));
  RETURN_IF_ERROR(CheckHeads(st.path() + ": vision tower", c.vision));
  return c;
}

Result<Preprocessing> DerivePreprocessing(const ModelConfig& c, const ModelFiles& files) {
  Preprocessing p = Preprocessing::Clip(c.image_size);
  if (c.family == Family::kClip) return p;  // OpenAI CLIP's, whatever a preprocessor_config.json says
  // SiglipImageProcessor: straight to size × size, mean and std 0.5, BICUBIC (SigLIP) or BILINEAR
  // (SigLIP 2, whose checkpoints say so in preprocessor_config.json).
  p.fit = Preprocessing::Fit::kStretch;
  p.mean = {0.5f, 0.5f, 0.5f};
  p.std = {0.5f, 0.5f, 0.5f};
  p.filter = files.tokenizer == TokenizerKind::kGemmaBpe ? ResampleFilter::kBilinear : ResampleFilter::kBicubic;
  if (c.naflex) {
    // Siglip2ImageProcessor: aspect ratio kept, at most max_num_patches (256 unless configured).
    p.fit = Preprocessing::Fit::kPatchBudget;
    p.patch_size = c.patch_size;
    p.max_patches = 256;
    p.size = 16 * c.patch_size;  // the largest square within 256 patches
  }
  if (files.preprocessor_config.empty()) return p;
  const std::string& path = files.preprocessor_config;
  ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonObject(path));
  // Steps imgsearch always takes: a configuration that turns one off, or rescales by another factor,
  // is refused rather than silently computed otherwise.
  for (const char* step : {"do_resize", "do_rescale", "do_normalize"}) {
    if (auto it = j.find(step); it != j.end() && it->is_boolean() && !it->get<bool>()) {
      return Status::Unsupported(path + ": " + step + " false (imgsearch always resizes, rescales and normalises)");
    }
  }
  if (auto it = j.find("rescale_factor");
      it != j.end() && it->is_number() && std::abs(it->get<double>() - 1.0 / 255) > 1e-9) {
    return Status::Unsupported(path + ": rescale_factor " + it->dump() + " (supported: 1/255)");
  }
  if (auto it = j.find("resample"); it != j.end() && !it->is_null()) {
    // PIL.Image.Resampling: 2 BILINEAR, 3 BICUBIC.
    if (*it == 2) {
      p.filter = ResampleFilter::kBilinear;
    } else if (*it == 3) {
      p.filter = ResampleFilter::kBicubic;
    } else {
      return Status::Unsupported(path + ": resample " + it->dump() + " (supported: 2 bilinear, 3 bicubic)");
    }
  }
  for (const auto& [key, out] : {std::pair{"image_mean", &p.mean}, std::pair{"image_std", &p.std}}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_array() || it->size() != 3 ||
        !std::all_of(it->begin(), it->end(), [](const auto& v) { return v.is_number(); })) {
      return Status::InvalidArgument(path + ": " + key + " must be three numbers");
    }
    for (int i = 0; i < 3; ++i) (*out)[i] = (*it)[i].template get<float>();
  }
  if (std::any_of(p.std.begin(), p.std.end(), [](float v) { return !(v > 0); })) {
    return Status::InvalidArgument(path + ": image_std must be positive");
  }
  if (c.naflex) {
    if (auto it = j.find("patch_size"); it != j.end() && !it->is_null() && *it != c.patch_size) {
      return Status::InvalidArgument(path + ": patch_size " + it->dump() + " differs from the model's " +
                                     std::to_string(c.patch_size));
    }
    if (auto it = j.find("max_num_patches"); it != j.end() && !it->is_null()) {
      constexpr int64_t kMaxPatches = 16384;
      if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > kMaxPatches) {
        return Status::InvalidArgument(path + ": max_num_patches " + it->dump() + " (expected 1 to " +
                                       std::to_string(kMaxPatches) + ")");
      }
      p.max_patches = it->get<int>();
    }
    // The side of the largest square within the budget: what "twice the model's input" means when
    // choosing a preview or a reduced JPEG decode.
    p.size = c.patch_size * static_cast<int>(std::sqrt(static_cast<double>(p.max_patches)));
    return p;
  }
  if (auto it = j.find("size"); it != j.end() && it->is_object()) {
    auto side = [&](const char* key) {
      auto v = it->find(key);
      return v != it->end() && v->is_number_integer() ? v->get<int64_t>() : int64_t{c.image_size};
    };
    const int64_t h = side("height"), w = side("width");
    if (h != c.image_size || w != c.image_size) {
      return Status::InvalidArgument(path + ": size " + std::to_string(w) + "×" + std::to_string(h) +
                                     " differs from the " + std::to_string(c.image_size) +
                                     " pixels the position embeddings cover");
    }
  }
  return p;
}

}  // namespace imgsearch::model
