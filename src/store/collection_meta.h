// What every collection records beside its images, whatever stores it: the model it is bound to
// and the folders it was built from.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "imgsearch/collection.h"

namespace imgsearch::store {

// Ok when `wanted` is the model the collection at `where` was built with (`stored`); otherwise
// the refusal naming both, ending with `remedy`.
Status CheckSameModel(const ModelIdentity& stored, const ModelIdentity& wanted, const std::string& where,
                      const std::string& remedy);

// The recorded folders, stored as a JSON list of strings.
Result<std::vector<std::string>> ParseRoots(const std::string& json, const std::string& where);

// Adds the folders `roots` lacks and sorts them; false when none was new.
bool MergeRoots(std::vector<std::string>* roots, std::span<const std::string> add);

}  // namespace imgsearch::store
