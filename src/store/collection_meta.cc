#include "store/collection_meta.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace imgsearch::store {

Status CheckSameModel(const ModelIdentity& stored, const ModelIdentity& wanted, const std::string& where,
                      const std::string& remedy) {
  if (stored.id == wanted.id && stored.dim == wanted.dim) return Status::Ok();
  return Status::InvalidArgument("collection " + where + " was built with model " + stored.name + " (" + stored.id +
                                 ", " + std::to_string(stored.dim) + " dimensions), not " + wanted.name + " (" +
                                 wanted.id + ", " + std::to_string(wanted.dim) + "); " + remedy);
}

Result<std::vector<std::string>> ParseRoots(const std::string& json, const std::string& where) {
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return Status::Corruption(where + ": the recorded folders are not a JSON list");
  std::vector<std::string> roots;
  for (const nlohmann::json& r : j) {
    if (!r.is_string()) return Status::Corruption(where + ": a recorded folder is not a string");
    roots.push_back(r.get<std::string>());
  }
  return roots;
}

bool MergeRoots(std::vector<std::string>* roots, std::span<const std::string> add) {
  const size_t before = roots->size();
  for (const std::string& r : add) {
    if (std::find(roots->begin(), roots->end(), r) == roots->end()) roots->push_back(r);
  }
  if (roots->size() == before) return false;
  std::sort(roots->begin(), roots->end());
  return true;
}

}  // namespace imgsearch::store
