// Durations as people write them on a command line.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace imgsearch {

// A duration as people write it on a command line: a whole number and a unit, "30d", "12h",
// "90m", "45s", "500ms" (or "0" alone); nullopt for anything else, and for more than 100 years.
std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text);

// `d` the way ParseDuration reads it back, in its largest whole unit ("30d", "90m", "0").
std::string FormatDuration(std::chrono::milliseconds d);

}  // namespace imgsearch
