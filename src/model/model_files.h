// Reading the files of a model folder: its JSON configurations and their fields, the files it must
// hold, which weights file it has. Shared by the image models' resolver (config.cc) and the text
// towers (text_tower.cc); every error names the file, and the field where there is one.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "imgsearch/status.h"
#include "model/config.h"

namespace imgsearch::model {

// The JSON in `path`, of any type (modules.json is a list); "PATH: not valid JSON: …" when it does
// not parse.
Result<nlohmann::json> ReadJsonFile(const std::string& path);

// ReadJsonFile, which must hold an object: "PATH: expected a JSON object" otherwise.
Result<nlohmann::json> ReadJsonObject(const std::string& path);

// j[key] when `j` is an object holding a string (a boolean) there, else `fallback`: a field of
// another type reads as absent, and the checks after say what is missing.
std::string StringOr(const nlohmann::json& j, const char* key, const std::string& fallback);
bool BoolOr(const nlohmann::json& j, const char* key, bool fallback);

// j[key], an integer from 1 to 2^24; otherwise "PATH: NAME must be a positive integer", NAME being
// `name` where given (a section's field, "text_config.num_attention_heads"), else `key`.
Result<int> PositiveInt(const nlohmann::json& j, const char* key, const std::string& path, std::string_view name = {});

// NotFound "missing file PATH (WHY)" unless `path` exists; without `why`, no parenthesis.
Status RequireFile(const std::string& path, std::string_view why = {});

// dir/model.safetensors, else dir/pytorch_model.bin (a torch.save checkpoint, read without running
// its pickle: torch_checkpoint.h); NotFound naming both when neither is there.
Result<std::string> WeightsIn(const std::string& dir);

// An activation by its Hugging Face name: quick_gelu, gelu, and the tanh approximation as gelu_new
// or gelu_pytorch_tanh. Otherwise Unsupported "PATH: FIELD VALUE (supported: …)".
Result<Activation> ParseActivation(const nlohmann::json& value, const std::string& path, std::string_view field);

}  // namespace imgsearch::model
