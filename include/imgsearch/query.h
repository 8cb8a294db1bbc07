// Queries as rclip writes them: several terms, each text, an image or an indexed image ("more like
// this"), with weights and signs. The query vector is the normalised sum of the signed, weighted,
// normalised term embeddings.
//
//   imgsearch search --db D "golden retriever" + "0.5:beach" - people + ./dog.jpg
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/image.h"

namespace imgsearch {

struct QueryTerm {
  enum class Kind { kText, kImageFile, kImageBytes, kSimilar };
  Kind kind = Kind::kText;
  std::string text;            // kText
  std::string path;            // kImageFile
  std::vector<uint8_t> bytes;  // kImageBytes
  int64_t id = 0;              // kSimilar: an indexed image
  float weight = 1.0f;         // negative for "-" terms
};

// Parses command-line terms: separate arguments joined by "+" and "-" tokens; a term may start with
// a weight "W:" (e.g. "0.5:beach"); a term naming an existing file is an image.
Result<std::vector<QueryTerm>> ParseQueryArgs(std::span<const std::string> args);

// The normalised sum of the normalised embeddings, each scaled by its weight. Fails when the sum is
// zero (terms that cancel out) or the embeddings differ in length.
Result<std::vector<float>> CombineQueryEmbeddings(std::span<const std::vector<float>> embeddings,
                                                  std::span<const float> weights);

// Embeds every term and combines them. `collection` is needed for kSimilar terms; `model` may be
// null when every term is kSimilar (stored vectors need no model).
Result<std::vector<float>> BuildQueryVector(std::span<const QueryTerm> terms, const ClipModel* model,
                                            Collection* collection, const DecodeOptions& decode = {});

}  // namespace imgsearch
