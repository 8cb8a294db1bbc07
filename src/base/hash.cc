#include "base/hash.h"

#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

namespace imgsearch {

namespace {

std::string Hex(XXH128_hash_t h) {
  char hex[33];
  std::snprintf(hex, sizeof(hex), "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return hex;
}

}  // namespace

std::string ContentHash(std::span<const uint8_t> bytes) { return Hex(XXH3_128bits(bytes.data(), bytes.size())); }

Result<std::string> ContentHashOf(const RegularFile& file, std::span<const uint8_t> prefix) {
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(), &XXH3_freeState);
  XXH3_128bits_reset(state.get());
  XXH3_128bits_update(state.get(), prefix.data(), prefix.size());
  std::vector<uint8_t> buffer(size_t{1} << 20);
  off_t at = static_cast<off_t>(prefix.size());
  while (true) {
    const ssize_t n = ::pread(file.fd(), buffer.data(), buffer.size(), at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IoError("cannot read " + file.path() + ": " + std::strerror(errno));
    if (n == 0) break;
    XXH3_128bits_update(state.get(), buffer.data(), static_cast<size_t>(n));
    at += n;
  }
  return Hex(XXH3_128bits_digest(state.get()));
}

Result<std::string> ContentHashOfFile(const std::string& path) {
  ASSIGN_OR_RETURN(RegularFile file, RegularFile::Open(path));
  return ContentHashOf(file);
}

}  // namespace imgsearch
