// The identity of a file's content.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace imgsearch {

// XXH3-128 of the bytes, as 32 hex digits. Identical content shares one embedding.
std::string ContentHash(std::span<const uint8_t> bytes);

}  // namespace imgsearch
