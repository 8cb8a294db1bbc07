// What every collection records beside its images, whatever stores it: the model it is bound to
// and the folders it was built from.
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "imgsearch/collection.h"

namespace imgsearch::store {

// Ok when `wanted` is the model the collection at `where` was built with (`stored`); otherwise
// the refusal naming both, ending with `remedy`.
Status CheckSameModel(const ModelIdentity& stored, const ModelIdentity& wanted, const std::string& where,
                      const std::string& remedy);

// The recorded folders, stored as a JSON list of {"path", "real_path"} (or, as written before real
// paths were kept, of path strings).
Result<std::vector<CollectionRoot>> ParseRoots(const std::string& json, const std::string& where);
std::string RootsJson(const std::vector<CollectionRoot>& roots);

// Adds the folders `roots` lacks (sorted by path), fills in missing real paths, and applies
// `change` to a folder that now leads elsewhere. Sets *changed when anything is to be written.
Status MergeRoots(std::vector<CollectionRoot>* roots, std::span<const CollectionRoot> add, RootChange change,
                  bool* changed);

// Where the bound model loads from (ModelIdentity::source), updated by each writer that has it.
inline constexpr const char* kModelSourceKey = "model_source";

// How long vectors of removed content are kept (catalog_backend.h), in milliseconds.
inline constexpr const char* kKeepRemovedKey = "keep_removed_ms";
// The period a stored value means (kDefaultKeepRemoved when none, or not a count of milliseconds).
std::chrono::milliseconds KeepRemovedFrom(const std::optional<std::string>& stored);

}  // namespace imgsearch::store
