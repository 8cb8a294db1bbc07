// The identity of a file's content.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/file.h"
#include "imgsearch/status.h"

namespace imgsearch {

// XXH3-128 of the bytes, as 32 hex digits. Identical content shares one embedding.
std::string ContentHash(std::span<const uint8_t> bytes);

// ContentHash of a file's whole content, read a piece at a time (a video may not fit in memory).
// `prefix`: the file's first bytes, already read (they are not read again).
Result<std::string> ContentHashOf(const RegularFile& file, std::span<const uint8_t> prefix = {});
Result<std::string> ContentHashOfFile(const std::string& path);

}  // namespace imgsearch
