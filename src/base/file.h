// File helpers: whole-file reads and read-only memory maps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "imgsearch/status.h"

namespace imgsearch {

// Files larger than this are not read (the pipeline records them as failed).
inline constexpr size_t kMaxFileBytes = size_t{1} << 30;

// Reads a whole file. `max_bytes` guards against reading something absurd by mistake.
Result<std::vector<uint8_t>> ReadFileBytes(const std::string& path, size_t max_bytes = size_t{1} << 31);

// The first `n` bytes of a file (the whole file when it is shorter).
Result<std::vector<uint8_t>> ReadFilePrefix(const std::string& path, size_t n);

Result<std::string> ReadFileText(const std::string& path, size_t max_bytes = size_t{1} << 30);

// A read-only private mapping of a whole file. Move-only; unmaps on destruction.
class MappedFile {
 public:
  static Result<MappedFile> Open(const std::string& path);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

  // Drops the pages wholly inside [p, p + n_bytes) from memory; reading them maps them in again.
  void Release(const void* p, size_t n_bytes) const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size) : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

bool FileExists(const std::string& path);

}  // namespace imgsearch
