#include "model/model_files.h"

#include "base/file.h"

namespace imgsearch::model {

Result<nlohmann::json> ReadJsonFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileText(path, 16u << 20));
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(path + ": not valid JSON: " + e.what());
  }
}

Result<nlohmann::json> ReadJsonObject(const std::string& path) {
  ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFile(path));
  if (!j.is_object()) return Status::Corruption(path + ": expected a JSON object");
  return j;
}

std::string StringOr(const nlohmann::json& j, const char* key, const std::string& fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

bool BoolOr(const nlohmann::json& j, const char* key, bool fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

Result<int> PositiveInt(const nlohmann::json& j, const char* key, const std::string& path, std::string_view name) {
  auto it = j.is_object() ? j.find(key) : j.end();
  if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() <= 0 || it->get<int64_t>() > (1 << 24)) {
    return Status::InvalidArgument(path + ": " + std::string(name.empty() ? key : name) +
                                   " must be a positive integer");
  }
  return it->get<int>();
}

Status RequireFile(const std::string& path, std::string_view why) {
  if (FileExists(path)) return Status::Ok();
  return Status::NotFound("missing file " + path + (why.empty() ? "" : " (" + std::string(why) + ")"));
}

Result<std::string> WeightsIn(const std::string& dir) {
  for (const char* name : {"model.safetensors", "pytorch_model.bin"}) {
    if (FileExists(dir + "/" + name)) return dir + "/" + name;
  }
  return Status::NotFound("missing file " + dir + "/model.safetensors (or pytorch_model.bin)");
}

Result<Activation> ParseActivation(const nlohmann::json& value, const std::string& path, std::string_view field) {
  const std::string name = value.is_string() ? value.get<std::string>() : "";
  if (name == "quick_gelu") return Activation::kQuickGelu;
  if (name == "gelu") return Activation::kGelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return Activation::kGeluTanh;
  return Status::Unsupported(path + ": " + std::string(field) + " " + value.dump() +
                             " (supported: quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)");
}

}  // namespace imgsearch::model
