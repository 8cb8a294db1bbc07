#include "model/config.h"

#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "base/file.h"

namespace imgsearch::clip {

namespace {

// Counts layers by the highest "<prefix>N." index present.
int CountLayers(const SafetensorsFile& st, const std::string& prefix) {
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

Result<std::vector<int64_t>> ShapeOf(const SafetensorsFile& st, const std::string& name, size_t rank) {
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
                           TowerConfig* tower) {
  if (!j.is_object()) return Status::Ok();
  auto read_int = [&](const char* key, int* out) -> Status {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return Status::Ok();
    if (!it->is_number_integer() || it->get<int64_t>() <= 0) {
      return Status::InvalidArgument(path + ": " + section + "." + key + " must be a positive integer");
    }
    *out = it->get<int>();
    return Status::Ok();
  };
  if (section == "text_config") {
    RETURN_IF_ERROR(read_int("num_attention_heads", &tower->n_head));
  }
  if (auto it = j.find("layer_norm_eps"); it != j.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() <= 0) {
      return Status::InvalidArgument(path + ": " + section + ".layer_norm_eps must be a positive number");
    }
    tower->layer_norm_eps = it->get<float>();
  }
  if (auto it = j.find("hidden_act"); it != j.end() && !it->is_null()) {
    const std::string act = it->is_string() ? it->get<std::string>() : "";
    if (act == "quick_gelu") {
      tower->activation = Activation::kQuickGelu;
    } else if (act == "gelu") {
      tower->activation = Activation::kGelu;
    } else {
      return Status::Unsupported(path + ": " + section + ".hidden_act " + it->dump() +
                                 " (supported: quick_gelu, gelu)");
    }
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

}  // namespace

Result<ModelFiles> ResolveModelFiles(const std::string& dir_in) {
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (!FileExists(dir)) return Status::NotFound("model directory " + dir + " does not exist");
  if (!FileExists(dir + "/model.safetensors") && FileExists(dir + "/0_CLIPModel")) {
    dir += "/0_CLIPModel";  // sentence-transformers layout
  }
  ModelFiles files;
  files.dir = dir;
  files.config_json = dir + "/config.json";
  files.weights = dir + "/model.safetensors";
  files.vocab_json = dir + "/vocab.json";
  files.merges_txt = dir + "/merges.txt";
  if (!FileExists(files.weights)) {
    if (FileExists(dir + "/pytorch_model.bin")) {
      return Status::Unsupported(dir +
                                 " holds pytorch_model.bin but no model.safetensors; imgsearch reads only "
                                 "safetensors (convert it, or pull the model with `imgsearch model pull`)");
    }
    return Status::NotFound("missing file " + files.weights);
  }
  for (const std::string* f : {&files.vocab_json, &files.merges_txt}) {
    if (!FileExists(*f)) return Status::NotFound("missing file " + *f);
  }
  if (!FileExists(files.config_json)) files.config_json.clear();  // optional: shapes say enough
  return files;
}

Result<ClipConfig> DeriveConfig(const SafetensorsFile& st, const std::string& config_json_path) {
  ClipConfig c;
  ASSIGN_OR_RETURN(auto tok, ShapeOf(st, "text_model.embeddings.token_embedding.weight", 2));
  ASSIGN_OR_RETURN(auto tpos, ShapeOf(st, "text_model.embeddings.position_embedding.weight", 2));
  ASSIGN_OR_RETURN(auto tfc1, ShapeOf(st, "text_model.encoder.layers.0.mlp.fc1.weight", 2));
  ASSIGN_OR_RETURN(auto tproj, ShapeOf(st, "text_projection.weight", 2));
  c.vocab_size = static_cast<int>(tok[0]);
  c.text.width = static_cast<int>(tok[1]);
  c.text.n_positions = static_cast<int>(tpos[0]);
  c.text.mlp_width = static_cast<int>(tfc1[0]);
  c.text.n_layers = CountLayers(st, "text_model.encoder.layers.");
  c.projection_dim = static_cast<int>(tproj[0]);

  ASSIGN_OR_RETURN(auto cls, ShapeOf(st, "vision_model.embeddings.class_embedding", 1));
  ASSIGN_OR_RETURN(auto patch, ShapeOf(st, "vision_model.embeddings.patch_embedding.weight", 4));
  ASSIGN_OR_RETURN(auto vpos, ShapeOf(st, "vision_model.embeddings.position_embedding.weight", 2));
  ASSIGN_OR_RETURN(auto vfc1, ShapeOf(st, "vision_model.encoder.layers.0.mlp.fc1.weight", 2));
  c.vision.width = static_cast<int>(cls[0]);
  c.vision.n_positions = static_cast<int>(vpos[0]);
  c.vision.mlp_width = static_cast<int>(vfc1[0]);
  c.vision.n_layers = CountLayers(st, "vision_model.encoder.layers.");
  c.patch_size = static_cast<int>(patch[2]);
  if (patch[1] != 3 || patch[2] != patch[3] || patch[0] != cls[0]) {
    return Status::InvalidArgument(st.path() +
                                   ": tensor vision_model.embeddings.patch_embedding.weight should be "
                                   "[width, 3, patch, patch]");
  }
  const int grid = static_cast<int>(std::lround(std::sqrt(static_cast<double>(c.vision.n_positions - 1))));
  if (grid * grid + 1 != c.vision.n_positions) {
    return Status::InvalidArgument(st.path() + ": tensor vision_model.embeddings.position_embedding.weight has " +
                                   std::to_string(c.vision.n_positions) + " rows, not a square grid plus one");
  }
  c.image_size = grid * c.patch_size;
  // Heads are 64 wide unless config.json says otherwise for the text tower. The vision tower always
  // has width // 64 heads: OpenAI's CLIP constructor computes that itself and ignores any setting,
  // and the reference embeddings are made that way (real checkpoints agree: 768 → 12, 1024 → 16).
  c.text.n_head = std::max(1, c.text.width / 64);
  c.vision.n_head = std::max(1, c.vision.width / 64);

  if (!config_json_path.empty()) {
    ASSIGN_OR_RETURN(std::string text, ReadFileText(config_json_path, 16u << 20));
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      return Status::Corruption(config_json_path + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) return Status::Corruption(config_json_path + ": expected a JSON object");
    if (auto it = j.find("text_config"); it != j.end()) {
      RETURN_IF_ERROR(ApplyTowerOverrides(*it, config_json_path, "text_config", &c.text));
    }
    if (auto it = j.find("vision_config"); it != j.end()) {
      RETURN_IF_ERROR(ApplyTowerOverrides(*it, config_json_path, "vision_config", &c.vision));
    }
  }
  if (c.text.n_layers == 0 || c.vision.n_layers == 0) {
    return Status::InvalidArgument(st.path() + ": no transformer layers found");
  }
  RETURN_IF_ERROR(CheckHeads(st.path() + ": text tower", c.text));
  RETURN_IF_ERROR(CheckHeads(st.path() + ": vision tower", c.vision));
  return c;
}

}  // namespace imgsearch::clip
