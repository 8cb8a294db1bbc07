// The shape of a CLIP model: derived from the checkpoint's tensor shapes, with config.json supplying
// what shapes cannot tell (head count, layer-norm epsilon, activation).
#pragma once

#include <string>

#include "imgsearch/status.h"
#include "model/safetensors.h"

namespace imgsearch::clip {

enum class Activation { kQuickGelu, kGelu };

struct TowerConfig {
  int width = 0;
  int n_layers = 0;
  int n_head = 0;
  int mlp_width = 0;
  int n_positions = 0;  // text: context length; vision: patches + 1
  float layer_norm_eps = 1e-5f;
  Activation activation = Activation::kQuickGelu;

  int head_dim() const { return width / n_head; }
};

struct ClipConfig {
  TowerConfig text;
  TowerConfig vision;
  int vocab_size = 0;
  int patch_size = 0;
  int image_size = 0;  // pixels per side
  int projection_dim = 0;

  int grid() const { return image_size / patch_size; }
};

// The files that make up a model. Accepts a Hugging Face CLIPModel directory or a
// sentence-transformers folder whose model lives in 0_CLIPModel/.
struct ModelFiles {
  std::string dir;  // the directory that holds the files
  std::string config_json;
  std::string weights;
  std::string vocab_json;
  std::string merges_txt;
};

Result<ModelFiles> ResolveModelFiles(const std::string& dir);

// Derives the architecture from `weights` and the overrides in `config_json_path` (may be empty).
Result<ClipConfig> DeriveConfig(const SafetensorsFile& weights, const std::string& config_json_path);

}  // namespace imgsearch::clip
