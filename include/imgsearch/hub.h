// Models on disk: pulling them from the Hugging Face hub, the local cache, and how every command
// finds the model it should use.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "imgsearch/status.h"

namespace imgsearch {

// The model imgsearch uses when none is named.
inline constexpr const char* kDefaultModelName = "openai/clip-vit-base-patch32";

// Models known to work (any CLIP or SigLIP repository does), and text models for --text-model.
inline constexpr const char* kKnownModels[] = {
    "openai/clip-vit-base-patch32",
    "sentence-transformers/clip-ViT-B-32",
    "openai/clip-vit-base-patch16",
    "openai/clip-vit-large-patch14",
    "google/siglip-base-patch16-224",
    "google/siglip-so400m-patch14-384",
    "google/siglip2-base-patch32-256",
    "google/siglip2-base-patch16-224",
    "google/siglip2-large-patch16-256",
    "google/siglip2-so400m-patch14-384",
    "google/siglip2-base-patch16-naflex",  // NaFlex: any aspect ratio, up to 256 patches
    "google/siglip2-so400m-patch16-naflex",
    "sentence-transformers/clip-ViT-B-32-multilingual-v1",  // text, into openai/clip-vit-base-patch32's space
    "M-CLIP/XLM-Roberta-Large-Vit-B-32",                    // text, likewise
};

// In a pulled model's folder: what was pulled ({"name", "revision", "bytes", "pulled_at"}).
inline constexpr const char* kModelManifest = "imgsearch-model.json";

// $XDG_CACHE_HOME/imgsearch/models, else ~/.cache/imgsearch/models.
std::string DefaultModelCache();

struct PullProgress {
  std::string file;
  int64_t file_bytes_done = 0, file_bytes_total = 0;
  int64_t bytes_done = 0, bytes_total = 0;  // all files of the model
};

struct PullOptions {
  std::string cache_dir;  // empty: DefaultModelCache()
  std::string endpoint;   // empty: $HF_ENDPOINT, else https://huggingface.co
  std::string token;      // empty: $HF_TOKEN, else $HUGGING_FACE_HUB_TOKEN (for gated or private repositories)
  std::string revision = "main";
  int retries = 5;  // per file, resuming where the connection broke
  std::function<void(const PullProgress&)> on_progress;
};

// Downloads `name` ("org/repo") from the hub into the cache: only the files its kind (CLIP, SigLIP,
// SigLIP 2, or a multilingual text tower: sentence-transformers' or M-CLIP's) needs (config, weights
// (model.safetensors, else pytorch_model.bin), tokenizer, image processor), each checked
// against the hub's SHA-256 (or git blob hash), installed atomically. Interrupted downloads resume
// from where they stopped. Proxies are taken from the usual environment variables (https_proxy,
// no_proxy, …). Returns the model folder.
Result<std::string> PullModel(const std::string& name, const PullOptions& options = {});

struct CachedModel {
  std::string name;  // "org/repo"
  std::string dir;
  std::string revision;  // the commit it was pulled at
  int64_t bytes = 0;
  std::string pulled_at;  // ISO 8601
};

std::vector<CachedModel> ListCachedModels(const std::string& cache_dir = "");

// The folder a pulled model lives in (whether or not it is there yet).
std::string CachedModelDir(const std::string& name, const std::string& cache_dir = "");

struct ResolveOptions {
  bool pull_if_missing = false;  // fetch the model when it is named (or the default) and not cached
  bool offline = false;          // never touch the network
  PullOptions pull;
  std::string flag_name = "--model";  // the option `flag` came from, for messages
};

// The model folder a command should load: `flag` (a folder or a model name), else
// $IMGSEARCH_MODEL (the same), else the default model in the cache. A name missing from the cache
// is pulled when allowed; otherwise the error says how to pull it or where to put the files.
Result<std::string> ResolveModel(const std::string& flag, const ResolveOptions& options = {});

}  // namespace imgsearch
