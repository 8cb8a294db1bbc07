// libFuzzer harness for the search request parsers: every front end's input (a JSON body, a query
// string's fields, a form's parts) must end in a request or a clear error, never a crash, a hang
// or unbounded memory. The input's first byte picks the parser; the rest is its input.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "imgsearch/search.h"

namespace {

// Splits `text` at `sep` (at most `max` pieces).
std::vector<std::string> Split(std::string_view text, char sep, size_t max) {
  std::vector<std::string> out;
  while (out.size() + 1 < max) {
    const size_t at = text.find(sep);
    if (at == std::string_view::npos) break;
    out.emplace_back(text.substr(0, at));
    text.remove_prefix(at + 1);
  }
  out.emplace_back(text);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace imgsearch;
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const RequestLimits limits;
  switch (data[0] % 3) {
    case 0:
      (void)ParseSearchJson(input, limits);
      break;
    case 1: {  // "key=value&key=value", as a query string arrives after decoding
      SearchFields fields;
      for (const std::string& pair : Split(input, '&', 64)) {
        const std::vector<std::string> kv = Split(pair, '=', 2);
        fields.emplace_back(kv[0], kv.size() > 1 ? kv[1] : "");
      }
      (void)ParseSearchQuery(fields, limits, /*allow_terms=*/true);
      (void)ParseSearchQuery(fields, limits, /*allow_terms=*/false);
      break;
    }
    case 2: {  // parts "name\x1ffilename\x1fcontent" separated by \x1e
      std::vector<FormPart> parts;
      for (const std::string& part : Split(input, '\x1e', 64)) {
        const std::vector<std::string> f = Split(part, '\x1f', 3);
        parts.push_back({f[0], f.size() > 2 ? f[2] : "", f.size() > 1 ? f[1] : ""});
      }
      (void)ParseSearchForm(parts, limits);
      break;
    }
  }
  return 0;
}
