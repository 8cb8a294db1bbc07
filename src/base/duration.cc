#include "imgsearch/duration.h"

#include <charconv>
#include <cstdint>
#include <iterator>

namespace imgsearch {

namespace {

struct DurationUnit {
  std::string_view suffix;
  int64_t ms;
};
// Longest suffix first where one ends another ("ms" before "s").
constexpr DurationUnit kDurationUnits[] = {{"ms", 1},        {"s", 1000},       {"m", 60'000},
                                           {"h", 3'600'000}, {"d", 86'400'000}, {"w", 604'800'000}};

}  // namespace

std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  if (text == "0") return std::chrono::milliseconds(0);
  for (const DurationUnit& unit : kDurationUnits) {
    if (!text.ends_with(unit.suffix)) continue;
    const std::string_view number = text.substr(0, text.size() - unit.suffix.size());
    if (number.empty() || number.size() > 12) return std::nullopt;
    int64_t n = 0;
    const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), n);
    if (ec != std::errc() || end != number.data() + number.size() || n < 0) return std::nullopt;
    constexpr int64_t kMaxMs = int64_t{100} * 365 * 86'400'000;
    if (n > kMaxMs / unit.ms) return std::nullopt;
    return std::chrono::milliseconds(n * unit.ms);
  }
  return std::nullopt;
}

std::string FormatDuration(std::chrono::milliseconds d) {
  const int64_t ms = d.count();
  if (ms == 0) return "0";
  for (auto it = std::rbegin(kDurationUnits); it != std::rend(kDurationUnits); ++it) {
    if (ms % it->ms == 0) return std::to_string(ms / it->ms) + std::string(it->suffix);
  }
  return std::to_string(ms) + "ms";
}

}  // namespace imgsearch
