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

// A regular file open for reading, closed on destruction. Opening never waits (a FIFO put in a
// file's place is refused, not waited on) and anything but a regular file is refused. Move-only.
class RegularFile {
 public:
  static Result<RegularFile> Open(const std::string& path);

  RegularFile(RegularFile&& other) noexcept : fd_(other.fd_), size_(other.size_), path_(std::move(other.path_)) {
    other.fd_ = -1;
  }
  RegularFile& operator=(RegularFile&&) = delete;
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;
  ~RegularFile();

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }  // when opened
  // Up to `n` bytes at `offset` (fewer at the end).
  Result<std::vector<uint8_t>> ReadAt(uint64_t offset, size_t n) const;
  const std::string& path() const { return path_; }
  // A name of this very descriptor (/proc/self/fd/N) for a library that opens files by name: it
  // reaches the file opened here, whatever the path leads to meanwhile.
  std::string DescriptorPath() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  RegularFile(int fd, uint64_t size, std::string path) : fd_(fd), size_(size), path_(std::move(path)) {}
  int fd_;
  uint64_t size_;
  std::string path_;
};

bool FileExists(const std::string& path);

}  // namespace imgsearch
