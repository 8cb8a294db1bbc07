#include "imgsearch/query.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdlib>

namespace imgsearch {

namespace {

bool IsRegularFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// "0.5:beach" → (0.5, "beach"); no numeric prefix → (1, term).
std::pair<float, std::string> SplitWeight(const std::string& term) {
  const size_t colon = term.find(':');
  if (colon == std::string::npos || colon == 0 || colon > 16) return {1.0f, term};
  const std::string number = term.substr(0, colon);
  if (number.find_first_not_of("0123456789.") != std::string::npos) return {1.0f, term};
  char* end = nullptr;
  const float w = std::strtof(number.c_str(), &end);
  if (end != number.c_str() + number.size() || !std::isfinite(w)) return {1.0f, term};
  return {w, term.substr(colon + 1)};
}

void AddScaled(std::vector<float>* sum, std::span<const float> v, float weight) {
  double sq = 0;
  for (float x : v) sq += static_cast<double>(x) * x;
  if (sq <= 0) return;
  const float scale = weight / static_cast<float>(std::sqrt(sq));
  for (size_t i = 0; i < v.size(); ++i) (*sum)[i] += scale * v[i];
}

}  // namespace

Result<std::vector<QueryTerm>> ParseQueryArgs(std::span<const std::string> args) {
  std::vector<QueryTerm> terms;
  float sign = 1.0f;
  bool operator_pending = false;
  for (const std::string& arg : args) {
    if (arg == "+" || arg == "-") {
      if (operator_pending) return Status::InvalidArgument("query has two operators in a row at \"" + arg + "\"");
      sign = arg == "-" ? -1.0f : 1.0f;
      operator_pending = true;
      continue;
    }
    if (!terms.empty() && !operator_pending) {
      return Status::InvalidArgument("query terms must be joined by + or -: one is missing before \"" + arg + "\"");
    }
    auto [weight, body] = SplitWeight(arg);
    if (body.empty()) return Status::InvalidArgument("empty query term \"" + arg + "\"");
    QueryTerm t;
    t.weight = sign * weight;
    if (IsRegularFile(body)) {
      t.kind = QueryTerm::Kind::kImageFile;
      t.path = body;
    } else {
      t.text = body;
    }
    terms.push_back(std::move(t));
    operator_pending = false;
    sign = 1.0f;
  }
  if (operator_pending) return Status::InvalidArgument("query ends with an operator");
  return terms;
}

Result<std::vector<float>> CombineQueryEmbeddings(std::span<const std::vector<float>> embeddings,
                                                  std::span<const float> weights) {
  if (embeddings.empty()) return Status::InvalidArgument("empty query: give text, an image or an image id");
  if (weights.size() != embeddings.size()) return Status::Internal("one weight per query term expected");
  std::vector<float> sum(embeddings[0].size(), 0.0f);
  for (size_t i = 0; i < embeddings.size(); ++i) {
    if (embeddings[i].size() != sum.size()) {
      return Status::InvalidArgument("query terms have embeddings of different dimensions");
    }
    AddScaled(&sum, embeddings[i], weights[i]);
  }
  double sq = 0;
  for (float x : sum) sq += static_cast<double>(x) * x;
  if (sq < 1e-12) return Status::InvalidArgument("the query terms cancel out (their weighted sum is zero)");
  const float inv = static_cast<float>(1.0 / std::sqrt(sq));
  for (float& x : sum) x *= inv;
  return sum;
}

Result<std::vector<float>> BuildQueryVector(std::span<const QueryTerm> terms, const ClipModel* model,
                                            Collection* collection, const DecodeOptions& decode) {
  if (terms.empty()) return Status::InvalidArgument("empty query: give text, an image or an image id");
  if (model == nullptr && collection == nullptr)
    return Status::InvalidArgument("a query needs a model or a collection");
  const int dim = model != nullptr ? model->embedding_dim() : collection->model().dim;
  std::vector<std::vector<float>> embeddings;
  std::vector<float> weights;
  std::vector<float> pixels;
  for (const QueryTerm& t : terms) {
    if (model == nullptr && t.kind != QueryTerm::Kind::kSimilar) {
      return Status::InvalidArgument("text and image query terms need a model (--model DIR or IMGSEARCH_MODEL)");
    }
    std::vector<float> emb(static_cast<size_t>(dim));
    switch (t.kind) {
      case QueryTerm::Kind::kText: {
        RETURN_IF_ERROR(model->EncodeTexts(std::vector<std::string>{t.text}, emb.data()));
        break;
      }
      case QueryTerm::Kind::kImageFile:
      case QueryTerm::Kind::kImageBytes: {
        auto decoded =
            t.kind == QueryTerm::Kind::kImageFile ? DecodeImageFile(t.path, decode) : DecodeImage(t.bytes, decode);
        if (!decoded.ok()) return decoded.status().WithContext("query image");
        const int size = model->image_size();
        pixels.resize(3 * static_cast<size_t>(size) * size);
        NormalizeForClip(ResizeAndCropForClip(decoded->image, size), pixels.data());
        RETURN_IF_ERROR(model->EncodeImages(pixels.data(), 1, emb.data()));
        break;
      }
      case QueryTerm::Kind::kSimilar: {
        if (collection == nullptr) return Status::InvalidArgument("an image id needs a collection");
        auto stored = collection->GetEmbedding(t.id);
        if (!stored.ok()) return stored.status();
        if (static_cast<int>(stored->size()) != dim) {
          return Status::InvalidArgument("image " + std::to_string(t.id) + " has a vector of another dimension");
        }
        emb = std::move(*stored);
        break;
      }
    }
    embeddings.push_back(std::move(emb));
    weights.push_back(t.weight);
  }
  return CombineQueryEmbeddings(embeddings, weights);
}

}  // namespace imgsearch
