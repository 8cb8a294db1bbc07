#include "store/catalog_backend.h"

#include <cmath>
#include <cstring>

namespace imgsearch::store {

std::vector<float> FloatsOf(std::span<const uint8_t> blob) {
  if (blob.size() < sizeof(float)) return {};  // also NULL: no pointer to copy from
  std::vector<float> v(blob.size() / sizeof(float));
  std::memcpy(v.data(), blob.data(), v.size() * sizeof(float));
  return v;
}

std::vector<float> StoredVectors(std::span<const uint8_t> blob, int64_t dim, size_t frames) {
  const size_t rows = std::max<size_t>(1, frames);
  if (dim <= 0 || blob.size() != rows * static_cast<size_t>(dim) * sizeof(float)) return {};
  return FloatsOf(blob);
}

Status CheckEmbeddingShape(const ImageUpsert& u, int dim) {
  const std::vector<float>& times = u.record.frame_times;
  const size_t rows = std::max<size_t>(1, times.size());
  if (u.embedding.size() != rows * static_cast<size_t>(dim)) {
    return Status::InvalidArgument(u.record.path + ": embedding has " + std::to_string(u.embedding.size()) +
                                   " values, the collection takes " + std::to_string(dim) + " per " +
                                   (times.empty() ? "image" : "frame (" + std::to_string(times.size()) + " frames)"));
  }
  for (float t : times) {
    if (!std::isfinite(t) || t < 0) return Status::InvalidArgument(u.record.path + ": a frame time is not valid");
  }
  return Status::Ok();
}

}  // namespace imgsearch::store
