// Text normalisation in front of the tokenizers, as the reference tokenizers do it.
#pragma once

#include <string>
#include <string_view>

namespace imgsearch::model {

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

// UTF-8 to code points; each byte of an invalid sequence becomes U+FFFD.
std::u32string ToUtf32(std::string_view text);

// Python's `"".join(ch.lower() for ch in text)`: full Unicode case mapping of each character on its
// own (so a final sigma stays σ, as in Hugging Face's per-character lower-casing).
std::u32string LowerEachCharacter(std::u32string_view text);

// Unicode NFC, or NFD with `decompose` (the text unchanged if ICU fails).
std::u32string NormalizeUnicode(std::u32string_view text, bool decompose);

}  // namespace imgsearch::model
