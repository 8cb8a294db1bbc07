// Base64 (RFC 4648), for images and file names carried in JSON.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "imgsearch/status.h"

namespace imgsearch {

// Standard alphabet, padded.
std::string EncodeBase64(std::string_view bytes);

// Standard or URL-safe alphabet, with or without padding, line breaks ignored; a "data:…;base64,"
// prefix is skipped. Errors name `field`.
Result<std::vector<uint8_t>> DecodeBase64(std::string_view text, std::string_view field);

}  // namespace imgsearch
