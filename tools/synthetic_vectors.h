// Synthetic embeddings for benchmarks: clustered, normalised vectors (the shape of real CLIP
// embeddings: many near neighbours).
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace imgsearch::tools {

// Cluster centres on the sphere; points are centre + noise, renormalised.
class ClusteredVectors {
 public:
  ClusteredVectors(int dim, int clusters, uint64_t seed) : dim_(dim), rng_(seed) {
    for (int i = 0; i < clusters; ++i) centres_.push_back(Unit(Gaussian(1.0f)));
  }
  std::vector<float> Next(float spread) {
    const std::vector<float>& c = centres_[rng_() % centres_.size()];
    std::vector<float> noise = Gaussian(spread / std::sqrt(static_cast<float>(dim_)));
    for (int i = 0; i < dim_; ++i) noise[i] += c[i];
    return Unit(std::move(noise));
  }

 private:
  std::vector<float> Gaussian(float sd) {
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(dim_);
    for (float& x : v) x = d(rng_);
    return v;
  }
  static std::vector<float> Unit(std::vector<float> v) {
    double sq = 0;
    for (float x : v) sq += x * x;
    for (float& x : v) x /= static_cast<float>(std::sqrt(sq));
    return v;
  }
  int dim_;
  std::mt19937_64 rng_;
  std::vector<std::vector<float>> centres_;
};

}  // namespace imgsearch::tools
