// Writing JSON lines quickly: strings through nlohmann::json, floats in their shortest form that
// reads back to the same float.
#pragma once

#include <charconv>
#include <cstdint>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

namespace imgsearch::cli {

inline void AppendFloatArray(std::string* out, std::span<const float> values) {
  out->push_back('[');
  char buf[32];
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out->push_back(',');
    auto r = std::to_chars(buf, buf + sizeof(buf), values[i]);
    out->append(buf, r.ptr);
  }
  out->push_back(']');
}

inline std::string JsonString(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace imgsearch::cli
