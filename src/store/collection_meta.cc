#include "store/collection_meta.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>

#include "base/text.h"

namespace imgsearch::store {

namespace {

// The precision a model identity's suffix names, and the weights' identity without it.
struct Precision {
  std::string_view tag;
  std::string weights;
  std::string description;
};

Precision PrecisionOf(const std::string& id) {
  for (const auto& [suffix, description] :
       {std::pair{kInt8IdentitySuffix, "--precision int8 (8-bit activations, a CPU with AVX512_VNNI)"},
        std::pair{kInt8Act7IdentitySuffix, "--precision int8 with 7-bit activations (a CPU without AVX512_VNNI)"}}) {
    if (id.ends_with(suffix)) return {suffix, id.substr(0, id.size() - suffix.size()), description};
  }
  return {"", id, "fp32, bf16 or auto"};
}

}  // namespace

Status CheckSameModel(const ModelIdentity& stored, const ModelIdentity& wanted, const std::string& where,
                      const std::string& remedy) {
  if (stored.id == wanted.id && stored.dim == wanted.dim) return Status::Ok();
  const Precision was = PrecisionOf(stored.id), is = PrecisionOf(wanted.id);
  if (was.tag != is.tag && was.weights == is.weights) {
    return Status::InvalidArgument("collection " + where + " was indexed with " + was.description + ", not " +
                                   is.description +
                                   ": int8 embeddings differ from the others by up to 1% of cosine, too much to "
                                   "share a collection; " +
                                   remedy);
  }
  const std::string from = stored.source.empty() ? "" : ", from " + stored.source;
  return Status::InvalidArgument("collection " + where + " was built with model " + stored.name + " (" + stored.id +
                                 ", " + std::to_string(stored.dim) + " dimensions" + from + "), not " + wanted.name +
                                 " (" + wanted.id + ", " + std::to_string(wanted.dim) + "); " + remedy);
}

namespace {

// Paths are bytes. One that is not UTF-8 cannot be a JSON string; it is kept as hex instead.
void PutPath(nlohmann::json* j, const char* key, const std::string& path) {
  if (IsValidUtf8(path)) {
    (*j)[key] = path;
    return;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : path) {
    hex += kHex[c >> 4];
    hex += kHex[c & 15];
  }
  (*j)[std::string(key) + "_hex"] = hex;
}

Result<std::string> GetPath(const nlohmann::json& j, const std::string& key) {
  if (j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  const std::string hex_key = key + "_hex";
  if (!j.contains(hex_key)) return std::string();
  if (!j[hex_key].is_string() || j[hex_key].get_ref<const std::string&>().size() % 2 != 0) {
    return Status::Corruption(hex_key + " is not a hex string");
  }
  const std::string& hex = j[hex_key].get_ref<const std::string&>();
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    const auto digit = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
    out += static_cast<char>(digit(hex[i]) * 16 + digit(hex[i + 1]));
  }
  return out;
}

}  // namespace

Result<std::vector<CollectionRoot>> ParseRoots(const std::string& json, const std::string& where) {
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return Status::Corruption(where + ": the recorded folders are not a JSON list");
  std::vector<CollectionRoot> roots;
  for (const nlohmann::json& r : j) {
    if (r.is_string()) {
      roots.push_back({r.get<std::string>(), ""});
    } else if (r.is_object()) {
      auto path = GetPath(r, "path");
      auto real = GetPath(r, "real_path");
      if (!path.ok() || !real.ok() || path->empty()) {
        return Status::Corruption(where + ": a recorded folder has no readable path");
      }
      roots.push_back({*path, *real});
    } else {
      return Status::Corruption(where + ": a recorded folder is neither a path nor {\"path\", \"real_path\"}");
    }
  }
  return roots;
}

std::string RootsJson(const std::vector<CollectionRoot>& roots) {
  nlohmann::json j = nlohmann::json::array();
  for (const CollectionRoot& r : roots) {
    nlohmann::json entry = nlohmann::json::object();
    PutPath(&entry, "path", r.path);
    PutPath(&entry, "real_path", r.real_path);
    j.push_back(std::move(entry));
  }
  return j.dump();
}

Status MergeRoots(std::vector<CollectionRoot>* roots, std::span<const CollectionRoot> add, RootChange change,
                  bool* changed) {
  *changed = false;
  for (const CollectionRoot& a : add) {
    auto it = std::find_if(roots->begin(), roots->end(), [&](const CollectionRoot& r) { return r.path == a.path; });
    if (it == roots->end()) {
      roots->push_back(a);
      *changed = true;
    } else if (!a.real_path.empty() && it->real_path != a.real_path) {
      if (!it->real_path.empty() && change == RootChange::kRefuse) {
        return Status::PermissionDenied("folder " + a.path + " now leads to " + a.real_path + ", not to " +
                                        it->real_path + " as when it was indexed (replaced by a link, or moved); " +
                                        "with --follow-symlinks the new place is accepted");
      }
      it->real_path = a.real_path;
      *changed = true;
    }
  }
  std::sort(roots->begin(), roots->end(),
            [](const CollectionRoot& x, const CollectionRoot& y) { return x.path < y.path; });
  return Status::Ok();
}

std::chrono::milliseconds KeepRemovedFrom(const std::optional<std::string>& stored) {
  if (!stored) return kDefaultKeepRemoved;
  int64_t ms = 0;
  const auto [end, ec] = std::from_chars(stored->data(), stored->data() + stored->size(), ms);
  if (ec != std::errc() || end != stored->data() + stored->size() || ms < 0) return kDefaultKeepRemoved;
  return std::chrono::milliseconds(ms);
}

}  // namespace imgsearch::store
