// Synthetic images and vectors for the store tests and the crash writer.
#pragma once

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "imgsearch/collection.h"

namespace imgsearch::store::testing {

inline std::vector<float> RandomUnit(int dim, std::mt19937* rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(dim);
  double sq = 0;
  for (float& x : v) {
    x = d(*rng);
    sq += x * x;
  }
  for (float& x : v) x /= static_cast<float>(std::sqrt(sq));
  return v;
}

inline ImageUpsert MakeImage(const std::string& path, std::vector<float> embedding, const std::string& hash,
                             const std::string& format = "jpeg") {
  ImageUpsert u;
  u.record.path = path;
  u.record.size_bytes = 1000;
  u.record.mtime_ns = int64_t{1'600'000'000} * 1'000'000'000;
  u.record.content_hash = hash;
  u.record.width = 640;
  u.record.height = 480;
  u.record.format = format;
  u.record.status = ImageStatus::kIndexed;
  u.embedding = std::move(embedding);
  return u;
}

inline ModelIdentity TestModel(int dim = 16) { return {"test-model-" + std::to_string(dim), "test", dim}; }

}  // namespace imgsearch::store::testing
