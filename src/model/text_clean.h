// Text normalisation in front of CLIP's BPE, as the reference tokenizer does it.
#pragma once

#include <string>
#include <string_view>

namespace imgsearch::clip {

// Python's html.unescape: numeric and HTML5 named character references, including the legacy
// forms without a trailing semicolon and the longest-prefix rule.
std::string HtmlUnescape(std::string_view text);

// The reference's cleaning: html.unescape twice, Unicode NFC, runs of whitespace collapsed to one
// space, leading and trailing whitespace stripped, lower-cased (full Unicode case mapping).
// Invalid UTF-8 bytes become U+FFFD.
std::u32string CleanText(std::string_view text);

// Classification used by CLIP's split pattern.
bool IsLetter(char32_t c);  // \p{L}
bool IsNumber(char32_t c);  // \p{N}
bool IsSpace(char32_t c);   // \s

std::string ToUtf8(std::u32string_view text);

}  // namespace imgsearch::clip
